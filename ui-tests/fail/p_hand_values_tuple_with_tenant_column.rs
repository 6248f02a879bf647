include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// Assignments built by hand are checked like any others.
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let moved = tenant_db::Values::new((tenant_db::assign(customers::tenant_id, uuid::Uuid::nil()),));
        Ok(s.update(customers::table).set(moved).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
