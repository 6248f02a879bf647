include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

#[derive(Insertable, tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct Smuggler { pub id: i64, pub tenant_id: uuid::Uuid, pub name: String }
fn main() {}
