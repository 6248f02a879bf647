include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// Declaring the tenant column writable by hand would let an update move rows to another tenant.
impl tenant_db::NonTenantColumn for customers::tenant_id {}
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table)
            .set(tenant_db::values!(customers::table, customers::tenant_id = uuid::Uuid::nil()))
            .execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
