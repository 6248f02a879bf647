include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        let conn: &mut diesel_async::AsyncPgConnection = tx.conn();
        let _ = conn;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
