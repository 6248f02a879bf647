include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
diesel::table! { invoices (id) { id -> BigInt, tenant_id -> Uuid, total -> BigInt, } }
// Classified by hand as global: the check the derive runs applies where the table is read.
impl tenant_db::Classified for invoices::table { type Kind = tenant_db::kind::Global; }
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<i64>, Error> {
    db.transaction(t, async |mut tx| Ok(tx.scope().query(invoices::table).select(invoices::total).load(&mut tx).await?)).await
}
fn main() { reach(f) }
