include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// A value computed by a subquery that was not built from the scope: it would read any
// tenant's rows, so it does not compile.
async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        let foreign = orders::table
            .filter(orders::id.eq(2))
            .select(orders::customer_id)
            .single_value()
            .assume_not_null();
        tx.scope().update(customers::table)
            .filter(customers::id.eq(1))
            .set(tenant_db::values!(customers::table, customers::id = foreign))
            .execute(&mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
