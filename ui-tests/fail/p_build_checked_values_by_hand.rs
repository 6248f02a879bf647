include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let moved = tenant_db::__private::Checked::__new(customers::table, (customers::tenant_id.eq(uuid::Uuid::nil()),));
        Ok(s.update(customers::table).set(moved).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
