include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let probe = orders::table.filter(orders::customer_id.eq(42)).into_boxed();
        Ok(s.query(customers::table).filter(diesel::dsl::exists(probe)).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
