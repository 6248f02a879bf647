include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

use std::sync::Mutex;
static SAVED: Mutex<Option<tenant_db::TenantScope<'static>>> = Mutex::new(None);
async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |tx| {
        *SAVED.lock().unwrap() = Some(tx.scope());
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
