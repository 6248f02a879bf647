include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn f(db: TenantDb, t: TenantId) {
    let q = db.transaction(t, async |tx| {
        Ok::<_, Error>(tx.scope().query(customers::table))
    }).await;
    let _ = q;
}
fn main() {}
