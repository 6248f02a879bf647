// Only tenant-db's prelude is imported: a plain diesel query points at the scope, not at
// importing diesel's `QueryDsl`.
use tenant_db::prelude::*;
diesel::table! { customers (id) { id -> BigInt, tenant_id -> Uuid, name -> Text, } }
#[derive(diesel::Queryable, tenant_db::TenantTable)]
#[diesel(table_name = customers)]
#[allow(dead_code)]
pub struct Customer { pub id: i64, pub tenant_id: uuid::Uuid, pub name: String }
async fn f(db: TenantDb, t: Tenant) -> Result<(), tenant_db::Error> {
    db.transaction(t, async |mut tx| {
        let _rows = customers::table.filter(customers::id.eq(1)).load(&mut tx);
        Ok(())
    }).await
}
fn main() { let _ = f; }
