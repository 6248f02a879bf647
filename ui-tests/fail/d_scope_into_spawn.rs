include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn f(db: TenantDb, t: TenantId) {
    let _ = db.transaction(t, async |tx| {
        let scope = tx.scope();
        tokio::spawn(async move {
            let _q = scope.query(customers::table);
        });
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
