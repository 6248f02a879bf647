include!("../schema.rs");
use diesel_async::RunQueryDsl;
// A pool of raw connections, handed out by a method whose name does not say so.
async fn f() -> Result<Vec<Customer>, Box<dyn std::error::Error>> {
    let pool = tenant_db::TenantDb::builder("postgres://ui@127.0.0.1/ui").build_pool()?;
    let mut conn = pool.get().await?;
    Ok(customers::table.load(&mut conn).await?)
}
fn main() { let _ = f(); }
