include!("../schema.rs");
diesel::table! { accounts (id) { id -> BigInt, tenant_id -> Uuid, #[sql_name = "tenant_id"] owner_org -> Uuid, } }
#[derive(Queryable, tenant_db::TenantTable)]
#[diesel(table_name = accounts)]
#[allow(dead_code)]
pub struct Account { pub id: i64, pub tenant_id: uuid::Uuid, pub owner_org: uuid::Uuid }
// Refused where the struct is defined: `owner_org` is the tenant column.
#[derive(tenant_db::TenantValues)]
#[diesel(table_name = accounts)]
pub struct Move { pub owner_org: uuid::Uuid }
fn main() {}
