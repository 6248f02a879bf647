include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

fn main() {
    let _v = tenant_db::values!(customers::table, customers::id = 1_i64, customers::tenant_id = uuid::Uuid::nil());
}
