diesel::table! { customers (id) { id -> BigInt, org -> Uuid, } }
#[derive(tenant_db::TenantTable)]
#[diesel(table_name = customers)]
pub struct Customer { pub id: i64, pub org: uuid::Uuid }
fn main() {}
