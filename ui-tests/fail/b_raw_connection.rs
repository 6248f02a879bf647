include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn f(db: TenantDb, t: TenantId) {
    let _ = db.transaction(t, async |mut tx| {
        let conn: &mut diesel_async::AsyncPgConnection = tx.conn();
        let _ = conn;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
