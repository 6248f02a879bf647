include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Bool;
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.delete(customers::table).filter(sql::<Bool>("true --")).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
