include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

fn main() {
    let t: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse().unwrap();
    let _scope = tenant_db::TenantScope::new(t);
}
