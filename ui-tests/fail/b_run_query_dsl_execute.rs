include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        diesel_async::RunQueryDsl::execute(diesel::delete(customers::table), &mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
