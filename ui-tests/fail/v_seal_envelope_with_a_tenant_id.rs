// A job envelope is sealed for a verified tenant or a transaction's scope, never for a tenant
// id read from somewhere.
use tenant_db::identity::{MasterKey, envelope};
use tenant_db::TenantId;

fn main() {
    let master = MasterKey::new(&[1; 32]).unwrap();
    let id: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse().unwrap();
    let _ = envelope::seal(&master, &id, &"job", std::time::Duration::from_secs(60));
}
