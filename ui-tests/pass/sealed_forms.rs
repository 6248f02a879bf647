// The forms issue-free code uses after sealing: lists, the named escape hatch, boxed scoped
// subqueries, value structs with diesel's field attributes, a global table with a
// `tenant_id` column that is not a tenant, and tenant-db's prelude alone.
use tenant_db::prelude::*;
use tenant_db::{Error, Tenant, TenantDb};

diesel::table! { customers (id) { id -> BigInt, tenant_id -> Uuid, name -> Text, email -> Nullable<Text>, } }
diesel::table! { orders (id) { id -> BigInt, tenant_id -> Uuid, customer_id -> BigInt, } }
diesel::table! { tenants (tenant_id) { tenant_id -> Uuid, plan -> Text, } }
diesel::joinable!(orders -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(customers, orders, tenants);

#[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
#[diesel(table_name = customers)]
#[allow(dead_code)]
pub struct Customer { pub id: i64, pub tenant_id: uuid::Uuid, pub name: String, pub email: Option<String> }

#[derive(diesel::Queryable, tenant_db::TenantTable)]
#[diesel(table_name = orders)]
#[allow(dead_code)]
pub struct Order { pub id: i64, pub tenant_id: uuid::Uuid, pub customer_id: i64 }

// A directory of tenants: global, and its `tenant_id` names a tenant, not an owner.
#[derive(diesel::Queryable, tenant_db::GlobalTable)]
#[diesel(table_name = tenants)]
#[global(unscoped_tenant_column)]
#[allow(dead_code)]
pub struct TenantRow { pub tenant_id: uuid::Uuid, pub plan: String }

pub struct Name(String);
impl From<Name> for String { fn from(n: Name) -> String { n.0 } }

#[derive(tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct Contact { pub email: Option<String> }

#[derive(tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct NewCustomer {
    pub id: i64,
    #[diesel(serialize_as = String)]
    pub name: Name,
    #[diesel(embed)]
    pub contact: Contact,
}

async fn handler(db: TenantDb, t: Tenant) -> Result<Vec<i64>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(NewCustomer { id: 1, name: Name("a".into()), contact: Contact { email: None } })
            .execute(&mut tx)
            .await?;
        let mut with_orders = s.query(orders::table).select(orders::customer_id).into_boxed();
        with_orders = with_orders.filter(orders::id.gt(0));
        let _plans: Vec<String> = s.query(tenants::table).select(tenants::plan).load(&mut tx).await?;
        let trusted = tenant_db::unscoped_expr(diesel::dsl::sql::<diesel::sql_types::Bool>("true"));
        Ok(s.query(customers::table)
            .filter(customers::id.eq_any(tenant_db::list(vec![1_i64, 2])))
            .or_filter(customers::id.eq_any(with_orders.into_subquery()))
            .filter(trusted)
            .select(customers::id)
            .load(&mut tx)
            .await?)
    })
    .await
}

fn main() {
    fn assert_send<F: std::future::Future + Send + 'static>(_: F) {}
    let _ = |db: TenantDb, t: Tenant| assert_send(handler(db, t));
    let db = TenantDb::connect("postgres://ui@127.0.0.1/ui", 1).expect("pool");
    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = Box::pin(handler(db, Tenant::assume_verified(tenant_db::TenantId::new_random())));
    drop(fut);
}
