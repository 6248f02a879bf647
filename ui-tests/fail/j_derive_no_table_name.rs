#[derive(tenant_db::TenantTable)]
pub struct Customer { pub id: i64, pub tenant_id: uuid::Uuid }
fn main() {}
