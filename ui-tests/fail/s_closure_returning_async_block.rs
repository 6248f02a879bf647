include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// `|tx| async move { ... }` cannot borrow the transaction; the body must be `async |tx| { ... }`.
async fn f(db: TenantDb, t: Tenant) -> Result<i64, Error> {
    db.transaction(t, |mut tx| async move {
        let s = tx.scope();
        Ok(s.query(customers::table).count().get_result(&mut tx).await?)
    }).await
}
fn main() {}
