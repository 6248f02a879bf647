// An object path is built from a verified tenant or a transaction's scope, never from a tenant
// id read from somewhere.
use tenant_db::TenantId;
use tenant_db_storage::TenantPath;

fn main() {
    let id: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse().unwrap();
    let _ = TenantPath::new(&id, "reports/q3.csv");
}
