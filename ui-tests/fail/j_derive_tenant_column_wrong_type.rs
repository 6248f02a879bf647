// The tenant field's Rust type must hold the column's key type: `i64` cannot hold a `uuid`.
diesel::table! { customers (id) { id -> BigInt, tenant_id -> Uuid, } }
#[derive(tenant_db::TenantTable)]
#[diesel(table_name = customers)]
pub struct Customer { pub id: i64, pub tenant_id: i64 }
fn main() {}
