include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
diesel::table! { invoices (id) { id -> BigInt, tenant_id -> Uuid, total -> BigInt, } }
// Declared global, this tenant table would be read unfiltered by every tenant.
#[derive(Queryable, Selectable, tenant_db::GlobalTable)]
#[diesel(table_name = invoices)]
pub struct Invoice { pub id: i64, pub tenant_id: uuid::Uuid, pub total: i64 }
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Invoice>, Error> {
    db.transaction(t, async |mut tx| Ok(tx.scope().query(invoices::table).load(&mut tx).await?)).await
}
fn main() { reach(f) }
