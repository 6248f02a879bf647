include!("../schema.rs");
use diesel::query_dsl::CombineDsl;
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let a = orders::table.select(orders::customer_id).into_boxed();
        let b = orders::table.select(orders::customer_id).into_boxed();
        Ok(s.query(customers::table).filter(customers::id.eq_any(a.union(b))).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
