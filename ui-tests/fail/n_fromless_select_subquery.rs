include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// A FROM-less `SELECT (subquery)` wrapped around an unscoped subquery.
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let inner = orders::table.select(orders::customer_id).single_value().assume_not_null();
        Ok(s.query(customers::table).filter(customers::id.eq_any(diesel::select(inner))).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
