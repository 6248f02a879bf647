include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// An alias of a table that is neither a tenant table nor a global table is refused like the
// table itself.
async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |tx| {
        let a2 = diesel::alias!(audit as a2);
        let _q = tx.scope().query(customers::table).inner_join(a2.on(a2.field(audit::id).eq(customers::id)));
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
