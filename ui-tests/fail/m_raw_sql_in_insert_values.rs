include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
// The inserted value copies another tenant's data into this tenant.
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.insert(customers::table)
            .values(tenant_db::values!(customers::table, customers::id = 9_i64,
                customers::name = sql::<Text>("(SELECT string_agg(name, ',') FROM customers)")))
            .execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
