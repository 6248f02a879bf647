include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, a: Tenant, b: Tenant) {
    let _ = db.transaction(a, async |tx_a| {
        let q_a = tx_a.scope().query(customers::table);
        db.transaction(b, async |mut tx_b| {
            let rows: Vec<Customer> = q_a.load(&mut tx_b).await?;
            Ok::<_, Error>(rows.len())
        }).await
    }).await;
}
fn main() {}
