include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
diesel::table! { invoices (id) { id -> BigInt, tenant_id -> Uuid, total -> BigInt, } }
// The model leaves the tenant column out; the table still has it.
#[derive(Queryable, Selectable, tenant_db::GlobalTable)]
#[diesel(table_name = invoices)]
pub struct InvoiceTotal { pub id: i64, pub total: i64 }
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<i64>, Error> {
    db.transaction(t, async |mut tx| Ok(tx.scope().query(invoices::table).select(invoices::total).load(&mut tx).await?)).await
}
fn main() { reach(f) }
