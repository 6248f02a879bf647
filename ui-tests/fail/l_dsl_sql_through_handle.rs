include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn f(db: TenantDb, t: TenantId) {
    let _ = db.transaction(t, async |mut tx| {
        let n: Vec<String> = diesel_async::RunQueryDsl::load(diesel::dsl::sql::<diesel::sql_types::Text>("SELECT name FROM customers"), &mut tx).await?;
        Ok::<_, Error>(n)
    }).await;
}
fn main() {}
