include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |tx| {
        let _q = tx.scope().query(customers::table)
            .filter(diesel::dsl::exists(orders::table.filter(orders::customer_id.eq(customers::id))));
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
