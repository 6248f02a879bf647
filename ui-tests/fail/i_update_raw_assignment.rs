include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant, other: uuid::Uuid) {
    let _ = db.transaction(t, async |mut tx| {
        tx.scope().update(customers::table)
            .set(customers::tenant_id.eq(other))
            .execute(&mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
