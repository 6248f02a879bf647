//! The database layer: RLS as the application role, and no tenant context left on a pooled
//! connection after commit, rollback or panic.

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenant_db::{Error, TenantDb};

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = Text)]
    tenant: String,
}

async fn tenants_visible(conn: &mut AsyncPgConnection) -> Vec<String> {
    let rows: Vec<Row> =
        diesel::sql_query("SELECT DISTINCT tenant_id::text AS tenant FROM customers ORDER BY 1")
            .load(conn)
            .await
            .expect("select");
    rows.into_iter().map(|r| r.tenant).collect()
}

#[tokio::test]
async fn raw_sql_as_app_role_sees_only_what_rls_allows() {
    let url = app_url().await;
    let db = TenantDb::connect(&url, 2).unwrap();
    let (a, b) = two_tenants(&db).await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();

    // No setting at all: nothing.
    assert!(tenants_visible(&mut conn).await.is_empty());
    // Empty setting (what a finished SET LOCAL leaves behind): nothing, and no error.
    conn.batch_execute("BEGIN; SET LOCAL app.current_tenant = 'x'; COMMIT;")
        .await
        .unwrap();
    conn.batch_execute("SET app.current_tenant = ''")
        .await
        .unwrap();
    assert!(tenants_visible(&mut conn).await.is_empty());
    // Another tenant's id in the plain setting: nothing (only a sealed tenant counts).
    conn.batch_execute(&format!("SET app.current_tenant = '{b}'"))
        .await
        .unwrap();
    assert!(tenants_visible(&mut conn).await.is_empty());
    conn.batch_execute("RESET app.current_tenant")
        .await
        .unwrap();
    // A transaction that enters B in its first message: only B.
    conn.batch_execute(&tenant_db::seal::begin_sql(&b.id()))
        .await
        .unwrap();
    assert_eq!(tenants_visible(&mut conn).await, vec![b.to_string()]);
    // Writing a row for another tenant is refused by WITH CHECK.
    let foreign = diesel::sql_query(format!(
        "INSERT INTO customers (tenant_id, id, name) VALUES ('{a}', 777, 'smuggled')"
    ))
    .execute(&mut conn)
    .await;
    assert!(
        foreign.is_err(),
        "WITH CHECK must refuse a foreign tenant id"
    );
    conn.batch_execute("ROLLBACK").await.unwrap();
    conn.batch_execute(&tenant_db::seal::begin_sql(&b.id()))
        .await
        .unwrap();
    // Moving one of B's rows to A is refused too.
    let moved = diesel::sql_query(format!(
        "UPDATE customers SET tenant_id = '{a}' WHERE id = 1"
    ))
    .execute(&mut conn)
    .await;
    assert!(
        moved.is_err(),
        "WITH CHECK must refuse moving a row to another tenant"
    );
    conn.batch_execute("ROLLBACK").await.unwrap();

    // Through the escape hatch inside a tenant transaction, RLS still applies.
    let seen: Vec<Row> = load_raw(
        &db,
        a,
        "SELECT DISTINCT tenant_id::text AS tenant FROM customers",
    )
    .await;
    assert_eq!(
        seen,
        vec![Row {
            tenant: a.to_string()
        }]
    );
}

#[tokio::test]
async fn the_policy_reads_the_tenant_setting_once_per_statement() {
    #[derive(diesel::QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let db = TenantDb::connect(&app_url().await, 1).unwrap();
    let (a, _b) = two_tenants(&db).await;
    let plan: Vec<PlanLine> =
        load_raw(&db, a, "EXPLAIN SELECT * FROM orders WHERE customer_id = 1").await;
    let text = plan
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n");
    // The setting is read once per statement (an InitPlan), not once per row (a SubPlan).
    assert!(text.contains("InitPlan"), "{text}");
    assert!(!text.contains("SubPlan"), "{text}");
}

#[tokio::test]
async fn app_role_is_not_privileged() {
    let mut conn = AsyncPgConnection::establish(&app_url().await)
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Priv {
        #[diesel(sql_type = Bool)]
        rolsuper: bool,
        #[diesel(sql_type = Bool)]
        rolbypassrls: bool,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        owned: i64,
    }
    let p: Priv = diesel::sql_query(
        "SELECT rolsuper, rolbypassrls,
                (SELECT count(*) FROM pg_tables WHERE tableowner = current_user) AS owned
         FROM pg_roles WHERE rolname = current_user",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(!p.rolsuper && !p.rolbypassrls && p.owned == 0);
}

#[tokio::test]
async fn the_app_role_cannot_hold_a_transaction_open_while_idle() {
    // Provisioning gives the application role an idle-in-transaction timeout (60s by
    // default): a transaction a crashed task left open ends, and its locks with it.
    let mut conn = AsyncPgConnection::establish(&app_url().await)
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let s: Setting =
        diesel::sql_query("SELECT current_setting('idle_in_transaction_session_timeout') AS value")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(s.value, "1min");
    // Roles outlive a run: check the set-up on roles made now, in a transaction rolled back.
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url())
        .await
        .unwrap();
    let stem = format!("tdb_idle_{}", uuid::Uuid::new_v4().simple());
    let (owner, app) = (format!("{stem}_owner"), format!("{stem}_app"));
    admin
        .batch_execute(&format!(
            "BEGIN; {}",
            tenant_db::roles::create_roles_sql(&owner, &app, "7s").unwrap()
        ))
        .await
        .unwrap();
    let set: Setting = diesel::sql_query(format!(
        "SELECT coalesce(array_to_string(s.setconfig, ','), '') AS value
         FROM pg_roles r LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0
         WHERE r.rolname = '{app}'"
    ))
    .get_result(&mut admin)
    .await
    .unwrap();
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(set.value, "idle_in_transaction_session_timeout=7s");
}

#[tokio::test]
async fn without_the_statement_cache_nothing_is_prepared_on_the_server() {
    use diesel::dsl::count_star;
    use diesel::{ExpressionMethods, QueryDsl};
    use keyed::customers;
    let url = app_url().await;
    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    for (cache, expect_some) in [(false, false), (true, true)] {
        let pool = TenantDb::builder(url.clone())
            .max_size(1)
            .prepared_statement_cache(cache)
            .build_unscoped_pool()
            .unwrap();
        let mut conn = pool.get().await.unwrap();
        for _ in 0..2 {
            customers::table
                .select(count_star())
                .filter(customers::id.eq(1))
                .get_result::<i64>(&mut *conn)
                .await
                .unwrap();
        }
        // This query is prepared too (unnamed statements are not used), and not counted.
        let p: Prepared = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements
             WHERE statement NOT LIKE '%pg_prepared_statements%'",
        )
        .get_result(&mut *conn)
        .await
        .unwrap();
        assert_eq!(
            p.n > 0,
            expect_some,
            "statement cache {cache}: {} prepared",
            p.n
        );
    }
}

#[tokio::test]
async fn tenant_setting_is_gone_after_commit_rollback_and_panic_on_a_pool_of_one() {
    let url = app_url().await;
    let pool = pool_of_one(&url);
    let db = TenantDb::from_pool(pool.clone());
    let (a, b) = two_tenants(&db).await;

    for (i, tenant) in [a, b, a, b].into_iter().enumerate() {
        // Commit.
        let rows: Vec<Row> = load_raw(
            &db,
            tenant,
            "SELECT current_setting('app.current_tenant') AS tenant",
        )
        .await;
        let seen = rows
            .into_iter()
            .next()
            .map(|r| r.tenant)
            .unwrap_or_default();
        assert_eq!(
            seen,
            tenant.to_string(),
            "round {i}: the transaction sees its own tenant"
        );
        let after = state(&pool).await;
        assert!(clean(&after), "round {i}: after commit {after:?}");

        // Rollback.
        let r: Result<(), Error> = db
            .transaction(tenant, async |_tx| {
                Err(Error::Query(diesel::result::Error::RollbackTransaction))
            })
            .await;
        assert!(r.is_err());
        let after = state(&pool).await;
        assert!(clean(&after), "round {i}: after rollback {after:?}");

        // Panic inside the closure, in a task.
        let db2 = db.clone();
        let joined = tokio::spawn(async move {
            let _: Result<(), Error> = db2
                .transaction(tenant, async |_tx| -> Result<(), Error> { panic!("boom") })
                .await;
        })
        .await;
        assert!(joined.is_err(), "the task panicked");
        let after = state(&pool).await;
        assert!(clean(&after), "round {i}: after panic {after:?}");
    }
}

/// Runs `SELECT … WHERE canary.f_leak(email)` for `tenant` on a direct connection as `url`'s
/// role, and returns what `f_leak` was shown. As in PostgreSQL's `rowsecurity` regression
/// suite, `f_leak` is a near-free (`COST 0.0000001`), non-LEAKPROOF function that records every
/// value it sees: the planner would love to run it first, and RLS must not let it. The owner
/// creates it (the application role can create neither functions nor temporary tables); it
/// records into `canary.seen`, tagged with the backend that saw the value.
async fn values_a_leaky_filter_sees(url: &str, tenant: tenant_db::Tenant) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Seen {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        v: Option<String>,
    }
    let mut owner = AsyncPgConnection::establish(&tenant_db_tests::url_for(
        tenant_db_tests::OWNER_ROLE,
        DATABASE,
    ))
    .await
    .unwrap();
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242003);
             CREATE SCHEMA IF NOT EXISTS canary;
             CREATE TABLE IF NOT EXISTS canary.seen (pid int NOT NULL, v text);
             CREATE OR REPLACE FUNCTION canary.f_leak(text) RETURNS boolean LANGUAGE plpgsql
                 COST 0.0000001 AS $$
                 BEGIN INSERT INTO canary.seen VALUES (pg_backend_pid(), $1); RETURN true; END $$;
             GRANT USAGE ON SCHEMA canary TO {app}, {no_rls};
             GRANT SELECT, INSERT, DELETE ON canary.seen TO {app}, {no_rls};
             SELECT pg_advisory_unlock(4242003);",
            app = tenant_db_tests::APP_ROLE,
            no_rls = tenant_db_tests::NO_RLS_ROLE,
        ))
        .await
        .unwrap();
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    // A recycled backend id must not bring an earlier run's values along.
    conn.batch_execute("DELETE FROM canary.seen WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    conn.batch_execute(&tenant_db::seal::begin_sql(&tenant.id()))
        .await
        .unwrap();
    conn.batch_execute("SELECT id FROM customers WHERE canary.f_leak(email); COMMIT;")
        .await
        .unwrap();
    let seen: Vec<Seen> =
        diesel::sql_query("SELECT v FROM canary.seen WHERE pid = pg_backend_pid() ORDER BY v")
            .load(&mut conn)
            .await
            .unwrap();
    seen.into_iter().filter_map(|s| s.v).collect()
}

#[tokio::test]
async fn the_policy_runs_before_a_cheap_leaky_user_filter() {
    let url = app_url().await;
    let db = TenantDb::connect(&url, 2).unwrap();
    let (a, _b) = two_tenants(&db).await;
    // As the application role: the leaky filter is shown tenant A's rows and nothing else.
    assert_eq!(
        values_a_leaky_filter_sees(&url, a).await,
        vec!["a1@x", "a2@x", "a3@x"]
    );
    // The negative control: as the BYPASSRLS role the same canary sees other tenants' rows,
    // so the check above can catch a leak.
    let no_rls = tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DATABASE);
    let seen = values_a_leaky_filter_sees(&no_rls, a).await;
    assert!(seen.iter().any(|v| v.starts_with('b')), "{seen:?}");
}

#[tokio::test]
async fn the_first_statement_of_every_transaction_already_sees_its_tenant() {
    // BEGIN and the tenant setting travel in one message ahead of the caller's statements;
    // on a pool of one connection alternating between tenants, the very first statement of
    // each transaction must see its own tenant and only its own rows.
    let url = app_url().await;
    let db = TenantDb::from_pool(pool_of_one(&url));
    let (a, b) = two_tenants(&db).await;
    for i in 0..100 {
        let tenant = if i % 2 == 0 { a } else { b };
        let rows: Vec<Row> = load_raw(
            &db,
            tenant,
            "SELECT current_setting('app.current_tenant') || ':' ||
                    (SELECT string_agg(DISTINCT tenant_id::text, ',') FROM customers) AS tenant",
        )
        .await;
        let expected = format!("{tenant}:{tenant}");
        assert_eq!(rows[0].tenant, expected, "transaction {i}");
    }
}
