include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Vec<String>>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let names = customers::table.select(customers::name).into_boxed();
        Ok(s.query(customers::table).select(diesel::dsl::array(names)).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
