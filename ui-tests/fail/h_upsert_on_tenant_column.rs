include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// The conflict key names the tenant column: tenant-db puts it first itself, and a key that
// is only the tenant column would match any row of the tenant.
async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        tx.scope().insert(customers::table)
            .values(NewCustomer { id: 1, name: "x".into() })
            .on_conflict(customers::tenant_id)
            .do_nothing()
            .execute(&mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
