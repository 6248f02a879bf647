include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// A boxed diesel subquery carries no tenant filter: it reads every tenant's orders.
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let every_tenant = orders::table.select(orders::customer_id).into_boxed();
        Ok(s.query(customers::table).filter(customers::id.eq_any(every_tenant)).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
