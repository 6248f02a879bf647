// Every row belongs to a tenant: the tenant column cannot be NULL.
diesel::table! { customers (id) { id -> BigInt, tenant_id -> Nullable<Uuid>, } }
#[derive(tenant_db::TenantTable)]
#[diesel(table_name = customers)]
pub struct Customer { pub id: i64, pub tenant_id: Option<uuid::Uuid> }
fn main() {}
