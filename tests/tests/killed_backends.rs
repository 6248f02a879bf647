//! The server kills the application's backends (`pg_terminate_backend`, as on a restart or a
//! failover) while requests run: in-flight requests fail with typed errors, later requests
//! succeed without restarting anything, and no request ever sees another tenant's row.
//!
//! Alone in its binary: only its own connections (by `application_name`) are killed.

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::schema::*;

const APP_NAME: &str = "tenant_db_killed_backends";

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
    foreign_rows: AtomicUsize,
    kills: AtomicUsize,
}

/// One request: reads the tenant's customers through the scope and through raw SQL (where only
/// RLS filters) and counts rows of any other tenant.
async fn request(db: &TenantDb, tenant: Tenant) -> Result<usize, Error> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        let scoped: Vec<Customer> = s.query(customers::table).load(&mut tx).await?;
        #[derive(diesel::QueryableByName)]
        struct T {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            tenant_id: uuid::Uuid,
        }
        let raw: Vec<T> = tx
            .unscoped_load(diesel::sql_query("SELECT tenant_id FROM customers"))
            .await?;
        let own = row_key(&tenant);
        Ok(scoped.iter().filter(|c| c.tenant_id != own).count()
            + raw.iter().filter(|r| r.tenant_id != own).count())
    })
    .await
}

/// Terminates every backend of this test's pool; returns how many.
async fn kill_app_backends(admin: &mut AsyncPgConnection) -> usize {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let k: Killed = diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
         WHERE application_name = '{APP_NAME}'"
    ))
    .get_result(admin)
    .await
    .unwrap();
    usize::try_from(k.n).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backends_fail_typed_and_the_pool_recovers() {
    let url = format!("{}?application_name={APP_NAME}", app_url().await);
    let db = TenantDb::connect(&url, 4).unwrap();
    let (a, b) = two_tenants(&db).await;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));

    let killer = {
        let (counts, stop) = (counts.clone(), stop.clone());
        tokio::spawn(async move {
            let admin_url = tenant_db_tests::admin_url_for(DATABASE);
            let mut admin = AsyncPgConnection::establish(&admin_url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let k = kill_app_backends(&mut admin).await;
                counts.kills.fetch_add(k, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };

    // Four workers alternate tenants until enough requests failed (bounded either way).
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (db, counts) = (db.clone(), counts.clone());
            tokio::spawn(async move {
                for i in 0..1500 {
                    if counts.failed.load(Ordering::Relaxed) >= 20 {
                        break;
                    }
                    let tenant = if (w + i) % 2 == 0 { a } else { b };
                    match request(&db, tenant).await {
                        Ok(foreign) => {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                            counts.foreign_rows.fetch_add(foreign, Ordering::Relaxed);
                        }
                        // The typed errors a killed backend may surface as.
                        Err(Error::Query(_) | Error::Pool(_)) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => panic!("unexpected error: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();

    // The same process and pool serve every later request.
    for i in 0..20 {
        let tenant = if i % 2 == 0 { a } else { b };
        assert_eq!(request(&db, tenant).await.unwrap(), 0);
    }
    let (ok, failed, foreign, kills) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.foreign_rows.load(Ordering::Relaxed),
        counts.kills.load(Ordering::Relaxed),
    );
    println!("requests ok {ok}, failed {failed}; backends killed {kills}; foreign rows {foreign}");
    assert!(kills > 0, "no backend was killed");
    assert!(failed > 0, "no in-flight request was hit");
    assert_eq!(foreign, 0, "a request saw another tenant's row");
}
