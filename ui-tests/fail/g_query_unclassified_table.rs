include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn f(db: TenantDb, t: TenantId) {
    let _ = db.transaction(t, async |tx| {
        let _q = tx.scope().query(audit::table);
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
