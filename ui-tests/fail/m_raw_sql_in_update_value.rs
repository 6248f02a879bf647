include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table)
            .set(tenant_db::values!(customers::table, customers::name = sql::<Text>("'x' WHERE true --")))
            .execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
