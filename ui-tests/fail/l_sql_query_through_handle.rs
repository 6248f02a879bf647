include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn f(db: TenantDb, t: TenantId) {
    let _ = db.transaction(t, async |mut tx| {
        diesel_async::RunQueryDsl::execute(diesel::sql_query("DELETE FROM customers"), &mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
