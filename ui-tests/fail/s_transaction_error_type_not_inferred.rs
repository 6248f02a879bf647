include!("../schema.rs");
use tenant_db::{Tenant, TenantDb};
// Nothing says which error type the closure returns.
async fn f(db: TenantDb, t: Tenant) {
    let n = db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let n: i64 = s.query(customers::table).count().get_result(&mut tx).await?;
        Ok(n)
    }).await;
    let _ = n;
}
fn main() {}
