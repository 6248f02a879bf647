include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |tx| {
        let scope = tx.scope();
        tokio::spawn(async move {
            let _q = scope.query(customers::table);
        });
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
