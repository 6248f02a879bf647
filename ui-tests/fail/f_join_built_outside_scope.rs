include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |tx| {
        let _q = tx.scope().query(orders::table.inner_join(customers::table));
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
