// An admin grant names its reason: leaving it out does not compile.
use std::time::Duration;
use tenant_db::admin::AdminGrant;

fn main() {
    let customer = tenant_db::TenantId::new_random();
    let _grant = AdminGrant::for_tenant("alice@support", customer, Duration::from_secs(600));
}
