include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
diesel::table! { invoices (id) { id -> BigInt, tenant_id -> Uuid, owner -> Uuid, } }
// Classified by hand with a tenant column whose role is data: not a tenant table.
impl tenant_db::ColumnRole for invoices::owner { type Role = tenant_db::role::Data; }
impl tenant_db::Classified for invoices::table { type Kind = tenant_db::kind::Tenant<invoices::owner>; }
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<i64>, Error> {
    db.transaction(t, async |mut tx| Ok(tx.scope().query(invoices::table).select(invoices::id).load(&mut tx).await?)).await
}
fn main() { reach(f) }
