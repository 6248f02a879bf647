//! The isolation cases again, through PgBouncer in transaction-pooling mode (started by the
//! test set-up): tenant context set with `set_config(…, true)` never crosses clients. A
//! negative control shows that a session-level `SET` does leak there, so this binary can see a
//! leak when there is one.
//!
//! The harness itself is tested last: PgBouncer is this binary's own process, never a
//! listener that was already there, it reaches the server behind `admin_url`, and it is gone
//! once dropped.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::pgbouncer::{self, PgBouncer, Port};
use tenant_db_tests::schema as keyed;
mod common;

/// This binary's PgBouncer up, with the database provisioned behind it.
async fn bouncer_url(user: &str) -> String {
    app_url().await;
    pgbouncer::shared(&[tenant_db_tests::APP_ROLE])
        .await
        .unwrap_or_else(|e| panic!("PgBouncer set-up failed: {e}"))
        .url_for(user, DATABASE)
}

async fn db(max_size: usize) -> tenant_db::TenantDb {
    // PgBouncer 1.18 does not track named prepared statements in transaction mode.
    tenant_db::TenantDb::builder(bouncer_url(tenant_db_tests::APP_ROLE).await)
        .max_size(max_size)
        .prepared_statement_cache(false)
        .build()
        .unwrap()
}

include!("isolation/cases.rs");

#[derive(diesel::QueryableByName, Debug)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    setting: Option<String>,
}

/// The tenant setting a client sees, read in a transaction of its own (outside one, PgBouncer
/// may send the prepare and the execute of one query to different server connections).
async fn setting_seen(conn: &mut diesel_async::AsyncPgConnection) -> Option<String> {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    conn.batch_execute("BEGIN").await.unwrap();
    let s: Setting =
        diesel::sql_query("SELECT current_setting('app.current_tenant', true) AS setting")
            .get_result(conn)
            .await
            .unwrap();
    conn.batch_execute("COMMIT").await.unwrap();
    s.setting.filter(|s| !s.is_empty())
}

#[tokio::test]
async fn session_set_leaks_across_clients_and_tenant_db_does_not() {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let url = bouncer_url(tenant_db_tests::APP_ROLE).await;
    let a = new_tenant();
    // Two clients sharing PgBouncer's one server connection for this database and user.
    let mut first = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    let mut second = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    second.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);

    // Negative control: a session-level SET outlives the transaction and reaches the other
    // client through the shared server connection.
    first
        .batch_execute(&format!("SET app.current_tenant = '{a}'"))
        .await
        .unwrap();
    let mut leaked = false;
    for _ in 0..20 {
        leaked |= setting_seen(&mut second).await.as_deref() == Some(&a.to_string());
    }
    assert!(
        leaked,
        "the control must show a session SET leaking through PgBouncer"
    );
    // Clean up the leaked setting on every server connection.
    for _ in 0..20 {
        first
            .batch_execute("RESET app.current_tenant")
            .await
            .unwrap();
        second
            .batch_execute("RESET app.current_tenant")
            .await
            .unwrap();
    }

    // tenant-db: the setting is transaction-local, so no other client ever sees it.
    let db = db(2).await;
    for _ in 0..20 {
        let seen_inside: Option<String> = db
            .transaction(a, async |mut tx| {
                #[derive(diesel::QueryableByName)]
                struct S {
                    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                    setting: Option<String>,
                }
                let s: Vec<S> = tx
                    .unscoped_load(diesel::sql_query(
                        "SELECT current_setting('app.current_tenant', true) AS setting",
                    ))
                    .await?;
                Ok::<_, tenant_db::Error>(s.into_iter().next().and_then(|s| s.setting))
            })
            .await
            .unwrap();
        assert_eq!(seen_inside, Some(a.to_string()));
        assert_eq!(
            setting_seen(&mut second).await,
            None,
            "tenant context leaked"
        );
    }
}

/// The port the harness used to take whatever listened on.
const OLD_DEFAULT_PORT: u16 = 6543;

#[tokio::test]
async fn the_shared_pgbouncer_reaches_the_admin_server() {
    let url = bouncer_url(tenant_db_tests::APP_ROLE).await;
    assert!(pgbouncer::reaches_admin_server(&url).await.unwrap());
}

#[tokio::test]
async fn a_listener_already_there_is_never_used_and_a_dropped_pgbouncer_is_gone() {
    app_url().await;
    let users = [tenant_db_tests::APP_ROLE];
    // A bare listener that accepts and never answers, on the old default port if it is free
    // (if it is not, something else already holds it, which is the same case).
    let squatter = std::net::TcpListener::bind(("127.0.0.1", OLD_DEFAULT_PORT))
        .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .unwrap();
    let squatted = squatter.local_addr().unwrap().port();

    let bouncer = PgBouncer::start_on(Port::Free, &users).await.unwrap();
    assert_ne!(bouncer.port(), squatted);
    assert_ne!(bouncer.port(), OLD_DEFAULT_PORT);
    let url = bouncer.url_for(tenant_db_tests::APP_ROLE, DATABASE);
    assert!(pgbouncer::reaches_admin_server(&url).await.unwrap());
    // The suite's own work goes through it: a tenant transaction as the application role.
    let db = tenant_db::TenantDb::builder(url)
        .max_size(1)
        .prepared_statement_cache(false)
        .build()
        .unwrap();
    let tenant = new_tenant();
    let seen = db
        .transaction(tenant, async |mut tx| {
            let rows: Vec<Setting> = tx
                .unscoped_load(diesel::sql_query(
                    "SELECT current_setting('app.current_tenant', true) AS setting",
                ))
                .await?;
            Ok::<_, tenant_db::Error>(rows.into_iter().next().and_then(|r| r.setting))
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(tenant.to_string()));
    drop(db);

    // Told to listen where the squatter is, it fails instead of using the squatter.
    let taken = PgBouncer::start_on(Port::Fixed(squatted), &users).await;
    let err = taken
        .expect_err("a taken port must not be used")
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{squatted}")), "{err}");
    drop(squatter);

    // Dropped: the process is gone, nothing listens on its port, its directory is removed.
    let (pid, port, dir) = (bouncer.pid(), bouncer.port(), bouncer.dir().to_path_buf());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(bouncer);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists());
}
