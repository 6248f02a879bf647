include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// `DO UPDATE` cannot move the existing row to another tenant.
async fn f(db: TenantDb, t: Tenant, other: uuid::Uuid) {
    let _ = db.transaction(t, async |mut tx| {
        tx.scope().insert(customers::table)
            .values(NewCustomer { id: 1, name: "x".into() })
            .on_conflict(customers::id)
            .do_update()
            .set(customers::tenant_id.eq(other))
            .execute(&mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
