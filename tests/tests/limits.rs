//! Per-tenant limits on a real pool: a tenant holds at most its tier's share of the pool (its
//! further transactions wait, or fail fast) while other tenants go on; each tier's statement
//! timeout is set in the first message; usage metrics carry bounded tenant labels, and a noisy
//! neighbour raises an event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tenant_db::limits::{Limited, SharePolicy, Tiers};
use tenant_db::telemetry::RequestScope;
use tenant_db::{Error, Tenant, TenantDb};
use tenant_db_tests::schema::*;

fn tiers(noisy: Tenant, share: usize, timeout_ms: Option<u64>) -> Tiers {
    let timeout = timeout_ms.map_or(String::new(), |ms| {
        format!(", \"statement_timeout_ms\": {ms}")
    });
    Tiers::from_json(&format!(
        r#"{{"default_tier": "pro", "tiers": {{
            "free": {{"requests_per_second": 5, "burst": 5, "max_connections": {share}{timeout}}},
            "pro": {{"requests_per_second": 500, "burst": 500, "max_connections": 8}}}},
            "tenants": {{"{}": "free"}}}}"#,
        noisy.id()
    ))
    .unwrap()
}

async fn db(tiers: Tiers, policy: SharePolicy) -> TenantDb {
    TenantDb::builder(app_url().await)
        .max_size(4)
        .tiers(tiers)
        .share_policy(policy)
        .build()
        .unwrap()
}

/// Runs `n` transactions of `tenant` at once, each holding its connection for `hold`; returns
/// how many ran at the same time at most.
async fn concurrency(db: &TenantDb, tenant: Tenant, n: usize, hold: Duration) -> usize {
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (db, now, max) = (db.clone(), now.clone(), max.clone());
            tokio::spawn(async move {
                db.transaction(tenant, async |mut tx| {
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(running, Ordering::SeqCst);
                    let s = tx.scope();
                    let n: i64 = s
                        .query(customers::table)
                        .count()
                        .get_result(&mut tx)
                        .await?;
                    tokio::time::sleep(hold).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Error>(n)
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    max.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_tenant_holds_at_most_its_share_and_the_others_go_on() {
    let noisy = new_tenant();
    let quiet = new_tenant();
    let db = db(tiers(noisy, 1, None), SharePolicy::Wait).await;
    // Four transactions of the noisy tenant, on a pool of four: one at a time.
    let flood = {
        let db = db.clone();
        tokio::spawn(async move { concurrency(&db, noisy, 4, Duration::from_millis(150)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Meanwhile the quiet tenant gets connections (up to its own share) at once.
    let quiet_max = concurrency(&db, quiet, 3, Duration::from_millis(50)).await;
    assert!(
        !flood.is_finished(),
        "the flood ended before the quiet tenant ran"
    );
    assert_eq!(flood.await.unwrap(), 1);
    assert_eq!(quiet_max, 3);
    // Without tiers, the same flood takes the pool.
    let plain = TenantDb::connect(&app_url().await, 4).unwrap();
    assert!(concurrency(&plain, noisy, 4, Duration::from_millis(100)).await > 1);
}

#[tokio::test]
async fn fail_fast_refuses_a_tenant_over_its_share() {
    let noisy = new_tenant();
    let quiet = new_tenant();
    let db = db(tiers(noisy, 1, None), SharePolicy::FailFast).await;
    let (hold, held) = tokio::sync::oneshot::channel::<()>();
    let (started, start) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let db = db.clone();
        tokio::spawn(async move {
            db.transaction(noisy, async |_tx| {
                let _ = started.send(());
                let _ = held.await;
                Ok::<_, Error>(())
            })
            .await
        })
    };
    start.await.unwrap();
    let refused = db
        .transaction(noisy, async |_tx| Ok::<_, Error>(()))
        .await
        .expect_err("a second connection for a tenant with a share of one");
    match refused {
        Error::Limited(limited) => match *limited {
            Limited::PoolShare {
                tenant,
                max,
                ref tier,
            } => {
                assert_eq!((tenant, max, tier.as_str()), (noisy.id(), 1, "free"));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    db.transaction(quiet, async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap();
    hold.send(()).unwrap();
    holder.await.unwrap().unwrap();
    db.transaction(noisy, async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap();
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement_timeout: String,
}

#[tokio::test]
async fn each_tier_has_its_statement_timeout() {
    let noisy = new_tenant();
    let quiet = new_tenant();
    let db = db(tiers(noisy, 2, Some(150)), SharePolicy::Wait).await;
    let show = async |tenant: Tenant| {
        db.single(tenant, async |mut tx| {
            let rows: Vec<Setting> = tx
                .unscoped_load(diesel::sql_query("SHOW statement_timeout"))
                .await?;
            Ok::<_, Error>(rows.into_iter().next().map(|s| s.statement_timeout))
        })
        .await
        .unwrap()
    };
    assert_eq!(show(noisy).await.as_deref(), Some("150ms"));
    assert_eq!(show(quiet).await.as_deref(), Some("0"));
    let sleep = async |tenant: Tenant| {
        db.transaction(tenant, async |mut tx| {
            tx.unscoped_execute(diesel::sql_query("SELECT pg_sleep(0.4)"))
                .await?;
            Ok::<_, Error>(())
        })
        .await
    };
    let e = sleep(noisy)
        .await
        .expect_err("a statement past its tier's timeout");
    assert!(e.to_string().contains("statement timeout"), "{e}");
    sleep(quiet).await.unwrap();
    // The next transaction on the same pool has its own tier's setting.
    assert_eq!(show(quiet).await.as_deref(), Some("0"));
}

#[tokio::test]
async fn usage_metrics_have_bounded_labels_and_flag_a_noisy_neighbour() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let db = TenantDb::builder(app_url().await)
        .max_size(4)
        .usage(Duration::from_secs(3600), 1)
        .build()
        .unwrap();
    let (first, second, third) = (new_tenant(), new_tenant(), new_tenant());
    // The first tenant seen gets the one label: it has three customers.
    seed(&db, first, "f").await;
    for tenant in [first, second, third] {
        for _ in 0..3 {
            db.transaction(tenant, async |mut tx| {
                let s = tx.scope();
                let _: i64 = s
                    .query(customers::table)
                    .count()
                    .get_result(&mut tx)
                    .await?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        }
    }
    // The noisy one holds its connections much longer.
    for _ in 0..3 {
        db.transaction(third, async |_tx| {
            tokio::time::sleep(Duration::from_millis(60)).await;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    }
    let _ = db
        .transaction(second, async |_tx| {
            Err::<(), _>(Error::Doctor("nope".into()))
        })
        .await;
    // A statement's error the closure swallowed: the transaction did not commit.
    let swallowed = db
        .transaction(second, async |mut tx| {
            let s = tx.scope();
            for _ in 0..2 {
                let _ = s
                    .insert(customers::table)
                    .values(new_customer(1, "twice"))
                    .execute(&mut tx)
                    .await;
            }
            Ok::<_, Error>(())
        })
        .await;
    assert!(
        matches!(swallowed, Err(Error::NotCommitted(_))),
        "{swallowed:?}"
    );
    // A second tenant in a strict request: refused.
    let refused = RequestScope::strict()
        .run(async {
            db.transaction(second, async |_tx| Ok::<_, Error>(()))
                .await
                .unwrap();
            db.transaction(third, async |_tx| Ok::<_, Error>(())).await
        })
        .await;
    assert!(
        matches!(refused, Err(Error::MixedTenants(_))),
        "{refused:?}"
    );
    let loaded: Vec<String> = db
        .transaction(first, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .select(customers::name)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(loaded.len(), 3);
    db.usage().close_window();
    let events = db.usage().noisy_neighbours();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].tenant, third.id());
    // After the window, the label goes to the tenant that used the most.
    assert_eq!(db.usage().label(&third.id()), third.id().to_string());
    assert_eq!(db.usage().label(&first.id()), "other");

    let mut labels = std::collections::BTreeMap::<(String, String), u64>::new();
    // Errors of the tenants labelled `other`, by kind.
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_string())
                .unwrap_or_default()
        };
        let tenant = label("tenant");
        if let metrics_util::debugging::DebugValue::Counter(n) = value {
            if key.name() == "tenant_db_transaction_errors_total" && tenant == "other" {
                *kinds.entry(label("kind")).or_default() += n;
            }
            *labels.entry((key.name().to_string(), tenant)).or_default() += n;
        }
    }
    let first_label = first.id().to_string();
    // One tenant named (the first seen), the others as `other`.
    assert_eq!(
        labels[&("tenant_db_transactions_total".into(), first_label.clone())],
        5
    );
    assert_eq!(
        labels[&("tenant_db_transactions_total".into(), "other".into())],
        13
    );
    assert_eq!(
        labels[&("tenant_db_transaction_errors_total".into(), "other".into())],
        3
    );
    // The closure's own error, a swallowed statement error, a refusal: each its kind.
    assert_eq!(
        kinds,
        [("not_committed", 1), ("other", 1), ("refused", 1)]
            .map(|(k, n)| (k.to_string(), n))
            .into()
    );
    // The other two never had a label of their own (other tests' pools record too).
    for tenant in [second, third] {
        assert!(
            !labels.contains_key(&(
                "tenant_db_transactions_total".into(),
                tenant.id().to_string()
            )),
            "{labels:?}"
        );
    }
    // The rows its load returned (counts with `get_result` are not counted).
    assert_eq!(
        labels[&(
            "tenant_db_rows_returned_total".into(),
            first.id().to_string()
        )],
        3
    );
    assert!(labels.contains_key(&(
        "tenant_db_noisy_neighbour_events_total".into(),
        third.id().to_string()
    )));
}
