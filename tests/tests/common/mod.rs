//! Per-binary set-up: the provisioned database and a fresh pair of tenants per test.
#![allow(dead_code, unreachable_pub, missing_docs)]

use crate::keyed::*;
use tenant_db::{Tenant, TenantDb};

pub use crate::keyed::DATABASE;

/// Provisions the database once per test binary; returns the application role's URL.
pub async fn app_url() -> String {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let url = URL
        .get_or_try_init(|| async {
            tenant_db_tests::provision(DATABASE, &schema_sql(), TENANT_TABLES).await
        })
        .await;
    match url {
        Ok(url) => url.clone(),
        Err(e) => panic!("database set-up failed: {e}"),
    }
}

/// A connection to the provisioned database as the owner role (for tests' own schema and
/// fences).
pub async fn owner() -> diesel_async::AsyncPgConnection {
    use diesel_async::AsyncConnection;
    app_url().await;
    diesel_async::AsyncPgConnection::establish(&tenant_db_tests::url_for(
        tenant_db_tests::OWNER_ROLE,
        DATABASE,
    ))
    .await
    .expect("owner connection")
}

/// A pool as the application role: both layers (compile time and RLS) apply.
pub async fn db_with_rls(max_size: usize) -> TenantDb {
    TenantDb::connect(&app_url().await, max_size).expect("pool")
}

/// A pool as the `BYPASSRLS` test role: only the compile-time layer applies.
pub async fn db_without_rls(max_size: usize) -> TenantDb {
    app_url().await;
    let url = tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DATABASE);
    TenantDb::connect(&url, max_size).expect("pool")
}

/// Customer `id` named `name`, without an email.
pub fn new_customer(id: i64, name: &str) -> NewCustomer {
    NewCustomer {
        id,
        name: name.into(),
        email: None,
    }
}

/// Inserts [`new_customer`]`(id, name)` for `tenant`, in a transaction of its own.
pub async fn insert_customer(db: &TenantDb, tenant: Tenant, id: i64, name: &str) {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(new_customer(id, name))
            .execute(&mut tx)
            .await?;
        Ok::<_, tenant_db::Error>(())
    })
    .await
    .expect("a customer inserted in a tenant transaction");
}

/// Seeds the same ids and names for a tenant: customers 1..=3, orders 10, 11 (customer 1) and
/// 12 (customer 2); customer 3 has no orders.
pub async fn seed(db: &TenantDb, tenant: Tenant, tag: &str) {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        let customers: Vec<NewCustomer> = (1..=3)
            .map(|id| NewCustomer {
                id,
                name: format!("c{id}"),
                email: Some(format!("{tag}{id}@x")),
            })
            .collect();
        s.insert(customers::table)
            .values(customers)
            .execute(&mut tx)
            .await?;
        let orders = vec![
            NewOrder {
                id: 10,
                customer_id: 1,
                total_cents: 100,
                country_code: "FR".into(),
            },
            NewOrder {
                id: 11,
                customer_id: 1,
                total_cents: 250,
                country_code: "JP".into(),
            },
            NewOrder {
                id: 12,
                customer_id: 2,
                total_cents: 400,
                country_code: "FR".into(),
            },
        ];
        s.insert(orders::table)
            .values(orders)
            .execute(&mut tx)
            .await?;
        Ok::<_, tenant_db::Error>(())
    })
    .await
    .expect("seed");
}

/// Two fresh tenants with identical ids and values.
pub async fn two_tenants(db: &TenantDb) -> (Tenant, Tenant) {
    let a = new_tenant();
    let b = new_tenant();
    seed(db, a, "a").await;
    seed(db, b, "b").await;
    (a, b)
}

/// The names of `tenant`'s customers with id `id` (none, or the one), as the scope reads them.
pub async fn customer_names(db: &TenantDb, tenant: Tenant, id: i64) -> Vec<String> {
    use tenant_db::prelude::*;
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, tenant_db::Error>(
            s.query(customers::table)
                .filter(customers::id.eq(id))
                .select(customers::name)
                .load(&mut tx)
                .await?,
        )
    })
    .await
    .expect("customer names in a tenant transaction")
}

/// One text column named `tenant`, read through the escape hatch.
#[derive(diesel::QueryableByName, Debug, PartialEq)]
pub struct Seen {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tenant: String,
}

/// The tenants whose customers the escape hatch sees right now (RLS alone decides).
pub async fn visible(tx: &mut tenant_db::TenantTx<'_>) -> Result<Vec<String>, tenant_db::Error> {
    let rows: Vec<Seen> = tx
        .unscoped_load(diesel::sql_query(
            "SELECT DISTINCT tenant_id::text AS tenant FROM customers ORDER BY 1",
        ))
        .await?;
    Ok(rows.into_iter().map(|r| r.tenant).collect())
}

/// Runs raw SQL through the escape hatch inside a transaction for `tenant` (RLS applies).
pub async fn load_raw<U>(db: &TenantDb, tenant: Tenant, sql: &'static str) -> Vec<U>
where
    U: diesel::QueryableByName<diesel::pg::Pg> + Send + 'static,
{
    db.transaction(tenant, async |mut tx| {
        Ok::<_, tenant_db::Error>(tx.unscoped_load(diesel::sql_query(sql)).await?)
    })
    .await
    .expect("raw query in a tenant transaction")
}

#[derive(diesel::QueryableByName)]
struct Probe {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    setting: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// What the next checkout of a pooled connection finds.
#[derive(Debug)]
pub struct State {
    /// `app.current_tenant` as that connection sees it.
    pub setting: Option<String>,
    /// Whether the connection is inside a transaction block.
    pub in_tx: bool,
    /// The server process behind the connection (a new one means the pool replaced it).
    pub pid: i32,
}

/// Checks out a connection from `pool` and reports its state.
pub async fn state(
    pool: &diesel_async::pooled_connection::deadpool::Pool<diesel_async::AsyncPgConnection>,
) -> State {
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await.expect("checkout");
    let p: Probe = diesel::sql_query(
        "SELECT current_setting('app.current_tenant', true) AS setting, pg_backend_pid() AS pid",
    )
    .get_result(&mut *conn)
    .await
    .expect("probe");
    // SAVEPOINT succeeds only inside a transaction block.
    let in_tx = diesel::sql_query("SAVEPOINT tenant_db_probe")
        .execute(&mut *conn)
        .await
        .is_ok();
    State {
        setting: p.setting,
        in_tx,
        pid: p.pid,
    }
}

/// No transaction and no tenant setting.
pub fn clean(s: &State) -> bool {
    !s.in_tx && s.setting.as_deref().unwrap_or("").is_empty()
}

/// A pool of one connection to `url`, built exactly as `TenantDb` builds its pool.
pub fn pool_of_one(
    url: &str,
) -> diesel_async::pooled_connection::deadpool::Pool<diesel_async::AsyncPgConnection> {
    TenantDb::builder(url)
        .max_size(1)
        .build_unscoped_pool()
        .expect("pool")
}
