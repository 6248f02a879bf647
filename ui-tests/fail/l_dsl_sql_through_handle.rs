include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        let n: Vec<String> = diesel_async::RunQueryDsl::load(diesel::dsl::sql::<diesel::sql_types::Text>("SELECT name FROM customers"), &mut tx).await?;
        Ok::<_, Error>(n)
    }).await;
}
fn main() {}
