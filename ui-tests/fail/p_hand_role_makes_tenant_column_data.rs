include!("../schema.rs");
// The derive already gave `customers::tenant_id` its role; a second role does not compile.
impl tenant_db::ColumnRole for customers::tenant_id { type Role = tenant_db::role::Data; }
fn main() {}
