diesel::table! { customers (id) { id -> BigInt, tenant_id -> Text, } }
#[derive(tenant_db::TenantTable)]
#[diesel(table_name = customers)]
pub struct Customer { pub id: i64, pub tenant_id: String }
fn main() {}
