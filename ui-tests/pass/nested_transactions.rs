include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// A transaction for tenant A that opens one for tenant B (a batch job moving between tenants,
// say): each closure uses its own scope, and both compile.
async fn copy_names(db: TenantDb, a: Tenant, b: Tenant) -> Result<usize, Error> {
    db.transaction(a, async |mut tx_a| {
        let names: Vec<String> = tx_a.scope().query(customers::table).select(customers::name).load(&mut tx_a).await?;
        let written = db
            .transaction(b, async |mut tx_b| {
                let s = tx_b.scope();
                let mut n = 0;
                for (i, name) in names.iter().enumerate() {
                    n += s
                        .insert(customers::table)
                        .values(tenant_db::values!(customers::table, customers::id = i as i64, customers::name = name.as_str()))
                        .execute(&mut tx_b)
                        .await?;
                }
                Ok::<_, Error>(n)
            })
            .await?;
        Ok(written)
    })
    .await
}

fn main() {
    fn assert_send<F: std::future::Future + Send + 'static>(_: F) {}
    let _ = |db: TenantDb, a: Tenant, b: Tenant| assert_send(copy_names(db, a, b));
}
