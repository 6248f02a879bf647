diesel::table! { customers (id) { id -> BigInt, tenant_id -> Uuid, } }
#[derive(tenant_db::TenantTable)]
#[diesel(table_name = customers)]
#[tenant(column = tenant_id, column = tenant_id)]
pub struct Customer { pub id: i64, pub tenant_id: uuid::Uuid }
fn main() {}
