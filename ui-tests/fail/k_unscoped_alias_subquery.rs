include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// An alias of a tenant table used as diesel's own subquery reads every tenant's rows: refused
// (a subquery must be built from the scope).
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let o2 = diesel::alias!(orders as o2);
        let every_tenant = o2.select(o2.field(orders::customer_id));
        Ok(s.query(customers::table).filter(customers::id.eq_any(every_tenant)).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
