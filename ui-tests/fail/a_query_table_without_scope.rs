include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        let rows: Vec<Customer> = diesel_async::RunQueryDsl::load(customers::table, &mut tx).await?;
        Ok::<_, Error>(rows)
    }).await;
}
fn main() {}
