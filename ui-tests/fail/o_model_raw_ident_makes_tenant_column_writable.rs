include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
diesel::table! { invoices (id) { id -> BigInt, tenant_id -> Uuid, total -> BigInt, } }
// A second field mapped to the tenant column through a raw identifier.
#[derive(Queryable, tenant_db::TenantTable)]
#[diesel(table_name = invoices)]
#[allow(dead_code)]
pub struct Invoice { pub id: i64, pub tenant_id: uuid::Uuid, #[diesel(column_name = r#tenant_id)] pub owner: uuid::Uuid, pub total: i64 }
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(invoices::table)
            .set(tenant_db::values!(invoices::table, invoices::tenant_id = uuid::Uuid::nil()))
            .execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
