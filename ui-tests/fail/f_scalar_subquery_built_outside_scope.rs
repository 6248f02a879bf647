include!("../schema.rs");
use tenant_db::prelude::*;
use tenant_db::{Error, Tenant, TenantDb};

// A scalar subquery in a selection must be built from the scope (`tenant_db::scalar`): diesel's
// own reads every tenant's orders.
async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |tx| {
        let raw = orders::table
            .filter(orders::customer_id.eq(customers::id))
            .count()
            .single_value();
        let _q = tx.scope().query(customers::table).select((customers::id, raw));
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
