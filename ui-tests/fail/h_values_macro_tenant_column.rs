include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

fn main() {
    let _v = tenant_db::values!(customers::table, customers::id = 1_i64, customers::tenant_id = uuid::Uuid::nil());
}
