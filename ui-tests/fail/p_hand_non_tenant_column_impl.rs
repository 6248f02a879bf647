include!("../schema.rs");
// `NonTenantColumn` is implemented by tenant-db for data columns only.
impl tenant_db::NonTenantColumn for audit::message {}
fn main() {}
