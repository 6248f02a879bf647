include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

fn main() {
    let _q = tenant_db::Scoped {
        query: customers::table,
        scope: unimplemented!(),
        table: std::marker::PhantomData::<customers::table>,
    };
}
