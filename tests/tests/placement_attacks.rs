//! Attacks on the placement guarantees (fences, freezes, snapshots, session state), written as
//! the application role with ordinary code; each asserts that the guarantee held.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::time::Duration;
use tenant_db::placement::Directory;
use tenant_db::{Error, TenantId};
use tenant_db_tests::placement::Cluster;
use tenant_db_tests::placement::helpers::{bodies, insert_docs, p, tenant};

const CLASS: i32 = tenant_db::placement::fence::LOCK_CLASS;

#[derive(QueryableByName, Debug)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug)]
struct S {
    #[diesel(sql_type = Text)]
    s: String,
}

fn key(t: &TenantId) -> String {
    format!("hashtext('uuid:' || '{t}')")
}

/// ATTACK 1: the fence objects by other names, signatures and routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack1_fence_objects_by_other_routes() {
    let c = Cluster::start(0).await.unwrap();
    let a = c.server("a");
    let t = TenantId::new_random();
    let mut app = AsyncPgConnection::establish(&a.app_url).await.unwrap();
    let mut holes = Vec::new();
    // An owner session (a mover's freeze connection stands in) for the kill attempt.
    let mut owner_conn = AsyncPgConnection::establish(&a.owner_url).await.unwrap();
    owner_conn.batch_execute("SELECT 1").await.unwrap();
    for sql in [
        format!("SELECT tenant_db.set_fence('{t}', 'uuid', NULL::text)"),
        format!("SELECT tenant_db.set_fence(tenant => '{t}', kind => 'uuid', fence => NULL)"),
        format!("SELECT tenant_db.set_fence(VARIADIC ARRAY['{t}', 'uuid', NULL])"),
        "SELECT * FROM tenant_db.fence_epoch".to_string(),
        "UPDATE tenant_db.fence_epoch SET version = 0".to_string(),
        "SELECT last_value FROM tenant_db.fence_version".to_string(),
        "SELECT nextval('tenant_db.fence_version')".to_string(),
        "SELECT pg_sequence_last_value('tenant_db.seal_name'::regclass)".to_string(),
        "SELECT * FROM tenant_db.capturing".to_string(),
        format!("INSERT INTO tenant_db.capturing VALUES ('{t}', 'uuid')"),
        format!(
            "INSERT INTO tenant_db.captured (tenant_key, key_kind, table_name, key) \
             VALUES ('{t}', 'uuid', 'docs', '{{}}')"
        ),
        "DELETE FROM tenant_db.captured".to_string(),
        "DELETE FROM tenant_db.fences".to_string(),
        "TRUNCATE tenant_db.fences".to_string(),
        "COPY tenant_db.fences TO STDOUT".to_string(),
        // The capture trigger function on a table of the app's own (temp table).
        "CREATE TEMP TABLE x (tenant_id uuid, id bigint); \
         CREATE TRIGGER x AFTER INSERT ON x FOR EACH ROW \
         EXECUTE FUNCTION tenant_db.capture('docs', 'tenant_id', 'uuid', 'id')"
            .to_string(),
        // Functions of the owner by other schemas / overloads in a schema the app may create in.
        "CREATE SCHEMA evil".to_string(),
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'select 1'".to_string(),
        "CREATE OPERATOR public.= (leftarg = bigint, rightarg = bigint, function = int8ne)"
            .to_string(),
        // Redefine enter
        "CREATE OR REPLACE FUNCTION tenant_db.enter(tenant text, kind text) RETURNS void \
         LANGUAGE sql AS 'select'"
            .to_string(),
        "ALTER FUNCTION tenant_db.enter(text, text) OWNER TO tdbp_app".to_string(),
        "SELECT pg_advisory_unlock_all(); SELECT tenant_db.set_tenant('x','text')".to_string(),
        format!("BEGIN; SELECT set_config('app.current_tenant', '{t}', true); SELECT count(*) FROM docs"),
        // Kill or cancel the mover's (owner's) backend to break a freeze.
        "DO $$ BEGIN IF NOT (SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename = 'tdbp_owner') THEN RAISE EXCEPTION 'permission denied (false)'; END IF; END $$"
            .to_string(),
    ] {
        match app.batch_execute(&sql).await {
            Ok(()) => holes.push(format!("ALLOWED: {sql}")),
            Err(e) => {
                let e = e.to_string();
                if !(e.contains("permission denied") || e.contains("must be owner")) {
                    // Not a permission error: record to inspect.
                    eprintln!("refused otherwise: {sql}: {e}");
                }
            }
        }
        let _ = app.batch_execute("ROLLBACK").await;
    }
    // The set_config one succeeds at the SQL level; check it gives no rows of anyone.
    assert!(
        holes
            .iter()
            .all(|h| h.contains("set_config") || h.contains("TEMP")),
        "{holes:#?}"
    );
    eprintln!("attack1 allowed (inspect): {holes:#?}");
    // set_config of the public setting name: does it show the tenant's rows?
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let victim = tenant();
    directory.set(&victim.id(), &p("pool:a")).await.unwrap();
    let router = c.router().build().unwrap();
    insert_docs(&router, victim, "v", 1..=3).await;
    app.batch_execute(&format!(
        "BEGIN; SELECT set_config('app.current_tenant', '{}', true)",
        victim.id()
    ))
    .await
    .unwrap();
    let n: Vec<N> = diesel::sql_query("SELECT count(*)::int8 AS n FROM docs")
        .load(&mut app)
        .await
        .unwrap();
    assert_eq!(
        n[0].n, 0,
        "set_config of app.current_tenant reads the victim's rows"
    );
    owner_conn
        .batch_execute("SELECT 1")
        .await
        .expect("the app killed an owner backend");
}

/// ATTACK 4: a snapshot exported before a fence committed, imported with SET TRANSACTION
/// SNAPSHOT in the first message, enters the fenced tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack4_imported_old_snapshot_enters_a_fenced_tenant() {
    let c = Cluster::start(0).await.unwrap();
    let a = c.server("a");
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let t = tenant();
    directory.set(&t.id(), &p("pool:a")).await.unwrap();
    let router = c.router().build().unwrap();
    insert_docs(&router, t, "t", 1..=3).await;

    let mut exporter = AsyncPgConnection::establish(&a.app_url).await.unwrap();
    let snap: Vec<S> = {
        exporter
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await
            .unwrap();
        diesel::sql_query("SELECT pg_export_snapshot() AS s")
            .load(&mut exporter)
            .await
            .unwrap()
    };
    let snap = &snap[0].s;

    // The tenant leaves a: fence committed.
    let mut owner = AsyncPgConnection::establish(&a.owner_url).await.unwrap();
    owner
        .batch_execute(&format!(
            "SELECT tenant_db.set_fence('{}', 'uuid', 'moved')",
            t.id()
        ))
        .await
        .unwrap();
    assert!(matches!(bodies(&router, t).await, Err(Error::Moved(_))));

    let mut results = Vec::new();
    for modes in [
        "ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "ISOLATION LEVEL REPEATABLE READ",
        "ISOLATION LEVEL SERIALIZABLE",
    ] {
        let mut app = AsyncPgConnection::establish(&a.app_url).await.unwrap();
        let entered = app
            .batch_execute(&format!(
                "BEGIN {modes}; SET TRANSACTION SNAPSHOT '{snap}'; SELECT tenant_db.enter('{}', 'uuid')",
                t.id()
            ))
            .await;
        let seen = if let Err(e) = entered {
            Err(e.to_string())
        } else {
            diesel::sql_query("SELECT count(*)::int8 AS n FROM docs")
                .load::<N>(&mut app)
                .await
                .map(|r| r[0].n)
                .map_err(|e| e.to_string())
        };
        results.push((modes, seen));
        let _ = app.batch_execute("ROLLBACK").await;
    }
    let _ = exporter.batch_execute("ROLLBACK").await;
    for (modes, seen) in &results {
        assert!(
            seen.is_err(),
            "{modes} with an imported pre-fence snapshot entered the fenced tenant and read \
             {seen:?} rows"
        );
    }
}

/// ATTACK 6: an escape hatch changes the session (search_path, default isolation, read only)
/// hoping the next tenant on the pooled connection inherits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack6_session_changes_do_not_reach_the_next_tenant() {
    let c = Cluster::start(0).await.unwrap();
    c.prepare_bridge("a", "s1").await.unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let (b1, pool) = (tenant(), tenant());
    directory.set(&b1.id(), &p("bridge:a/s1")).await.unwrap();
    directory.set(&pool.id(), &p("pool:a")).await.unwrap();
    let router = c.router().pool_size(1).build().unwrap();
    insert_docs(&router, b1, "b1", 1..=2).await;
    insert_docs(&router, pool, "pool", 1..=2).await;
    router
        .transaction(b1, async |mut tx| {
            for s in [
                "SET search_path TO s1",
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                "DECLARE leak CURSOR WITH HOLD FOR SELECT body FROM docs",
                "PREPARE leakp AS SELECT body FROM s1.docs",
                "SELECT pg_advisory_lock(1)",
            ] {
                tx.unscoped_execute(diesel::sql_query(s)).await?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    let seen = router
        .transaction(pool, async |mut tx| {
            let r: Vec<S> = tx
                .unscoped_load(diesel::sql_query(
                    "SELECT current_setting('search_path') || '|' || current_setting('transaction_isolation') \
                     || '|' || (SELECT count(*) FROM pg_cursors WHERE name = 'leak')::text || '|' || (SELECT count(*) FROM pg_prepared_statements WHERE name = 'leakp')::text AS s",
                ))
                .await?;
            Ok::<_, Error>(r[0].s.clone())
        })
        .await
        .unwrap();
    assert!(
        !seen.contains("s1") && seen.contains("read committed") && seen.ends_with("|0|0"),
        "the next tenant inherited session state: {seen}"
    );
    assert_eq!(bodies(&router, pool).await.unwrap().len(), 2);
}

/// The application role cannot take a tenant's lock (any of the two-key advisory-lock
/// functions), from a plain connection or through a tenant transaction's escape hatch, so it
/// can neither freeze another tenant nor hold up its move; the one-key forms stay usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack2_the_application_role_cannot_take_a_tenant_lock() {
    let c = Cluster::start(0).await.unwrap();
    let a = c.server("a");
    let silo = format!("{}_s2", c.database);
    c.prepare_silo("a", &silo).await.unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let (attacker, victim) = (tenant(), tenant());
    directory.set(&attacker.id(), &p("pool:a")).await.unwrap();
    directory.set(&victim.id(), &p("pool:a")).await.unwrap();
    let router = c.router().build().unwrap();
    insert_docs(&router, victim, "v", 1..=2).await;
    let k = key(&victim.id());
    let mut app = AsyncPgConnection::establish(&a.app_url).await.unwrap();
    for f in [
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
    ] {
        let sql = format!("SELECT {f}({CLASS}, {k})");
        let err = app.batch_execute(&sql).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
        let err = router
            .transaction(attacker, async |mut tx| {
                tx.unscoped_execute(diesel::sql_query(sql.clone())).await?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("permission denied"),
            "{sql} in a transaction: {err}"
        );
    }
    app.batch_execute("SELECT pg_advisory_lock(42); SELECT pg_advisory_unlock(42)")
        .await
        .unwrap();
    // Nothing held: the victim runs, and moves.
    assert_eq!(bodies(&router, victim).await.unwrap().len(), 2);
    let mut progress = |_: &tenant_db::placement::Progress| {};
    c.mover()
        .freeze_timeout(Duration::from_secs(2))
        .move_to(&victim.id(), &p(&format!("silo:a/{silo}")), &mut progress)
        .await
        .unwrap();
    assert_eq!(bodies(&router, victim).await.unwrap().len(), 2);
}
