// Shared by every case: two tenant tables, a global table, an unclassified table.
#[allow(unused_imports)]
use diesel::prelude::*;
#[allow(unused_imports)]
use tenant_db::prelude::*;

diesel::table! { customers (id) { id -> BigInt, tenant_id -> Uuid, name -> Text, } }
diesel::table! { orders (id) { id -> BigInt, tenant_id -> Uuid, customer_id -> BigInt, } }
diesel::table! { countries (code) { code -> Text, name -> Text, } }
diesel::table! { audit (id) { id -> BigInt, message -> Text, } }
diesel::joinable!(orders -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(customers, orders, countries, audit);

#[derive(Queryable, Selectable, tenant_db::TenantTable)]
#[diesel(table_name = customers)]
#[allow(dead_code)]
pub struct Customer { pub id: i64, pub tenant_id: uuid::Uuid, pub name: String }

#[derive(Queryable, Selectable, tenant_db::TenantTable)]
#[diesel(table_name = orders)]
#[allow(dead_code)]
pub struct Order { pub id: i64, pub tenant_id: uuid::Uuid, pub customer_id: i64 }

#[derive(Queryable, Selectable, tenant_db::GlobalTable)]
#[diesel(table_name = countries)]
#[allow(dead_code)]
pub struct Country { pub code: String, pub name: String }

#[derive(Insertable, AsChangeset, tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct NewCustomer { pub id: i64, pub name: String }

/// Instantiates an async handler the way a running service does (its future is polled through
/// `dyn Future`), so that every compile-time check, including the ones that run when generic
/// code is instantiated, applies to the case.
#[allow(dead_code)]
pub fn reach<F, Fut>(f: F)
where
    F: FnOnce(tenant_db::TenantDb, tenant_db::Tenant) -> Fut,
    Fut: std::future::Future + Send + 'static,
{
    let db = tenant_db::TenantDb::connect("postgres://ui@127.0.0.1/ui", 1).expect("pool");
    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = Fut::Output> + Send>> =
        Box::pin(f(db, tenant_db::Tenant::assume_verified(tenant_db::TenantId::new_random())));
    drop(fut);
}
