include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let q = db.transaction(t, async |tx| {
        Ok::<_, Error>(tx.scope().query(customers::table))
    }).await;
    let _ = q;
}
fn main() {}
