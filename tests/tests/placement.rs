//! Placement across real PostgreSQL servers: the main one and throwaway ones these tests start
//! (and stop): routing by the directory, fences, moves under concurrent writers, and a killed
//! mover at each step.
//!
//! `TENANT_DB_PLACEMENT_SOAK=1` moves a tenant of 100,000 rows instead of 3,000.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::collections::BTreeMap;
use std::time::Duration;
use tenant_db::placement::{
    ByTier, Directory, LeastLoaded, Placed, PlacedState, PlacementError, Router, SiloPerTenant,
};
use tenant_db::{Error, Tenant, TenantId};
use tenant_db_tests::placement::helpers::{bodies, insert_docs, p, physical, tenant};
use tenant_db_tests::placement::schema::{docs, lines};
use tenant_db_tests::placement::{Cluster, NewDoc, NewLine};

#[derive(QueryableByName)]
struct Port {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    port: i32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_runs_on_its_placement_across_three_servers() {
    let c = Cluster::start(2).await.unwrap();
    // Three servers, not one: each answers on its own port.
    let mut ports = Vec::new();
    for s in &c.servers {
        let mut conn = AsyncPgConnection::establish(&s.app_url).await.unwrap();
        let port: Port = diesel::sql_query("SELECT inet_server_port() AS port")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(port.port as u16, s.port, "{}", s.name);
        ports.push(port.port);
    }
    ports.dedup();
    assert_eq!(ports.len(), 3);

    let silo = format!("{}_silo", c.database);
    c.prepare_bridge("b", "t_bridge").await.unwrap();
    c.prepare_silo("c", &silo).await.unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let (pa, pb, br, si) = (tenant(), tenant(), tenant(), tenant());
    let placed = [
        (pa, "pool:a".to_string(), "pa"),
        (pb, "pool:b".to_string(), "pb"),
        (br, "bridge:b/t_bridge".to_string(), "br"),
        (si, format!("silo:c/{silo}"), "si"),
    ];
    for (t, placement, _) in &placed {
        directory.set(&t.id(), &p(placement)).await.unwrap();
    }
    // The directory lists every entry, by tenant, each active and of no tier.
    let mut expected: Vec<(TenantId, Placed)> = placed
        .iter()
        .map(|(t, placement, _)| {
            let entry = Placed {
                placement: p(placement),
                state: PlacedState::Active,
                tier: None,
            };
            (t.id(), entry)
        })
        .collect();
    expected.sort_by_key(|(t, _)| t.to_string());
    assert_eq!(directory.list().await.unwrap(), expected);
    // Nothing of its pool, whose URL carries the owner's credentials.
    assert_eq!(format!("{directory:?}"), "Directory { .. }");
    let router = c.router().build().unwrap();
    assert!(router.pools().is_empty(), "pools open lazily");
    // Its servers by name and its pools, never a URL.
    assert_eq!(
        format!("{router:?}"),
        r#"Router { servers: ["a", "b", "c"], pools: [] }"#
    );

    // The same ids for every tenant, each on its own placement.
    for (t, _, label) in &placed {
        insert_docs(&router, *t, label, 1..=3).await;
    }
    for (t, _, label) in &placed {
        let seen = bodies(&router, *t).await.unwrap();
        assert_eq!(
            seen,
            (1..=3)
                .map(|i| format!("{label} doc {i}"))
                .collect::<Vec<_>>()
        );
    }
    // Where the rows are, read past RLS as the superuser.
    let only = |t: &Tenant, n: i64| BTreeMap::from([(t.id().to_string(), n)]);
    let a = c.server("a");
    let b = c.server("b");
    let cs = c.server("c");
    assert_eq!(
        physical(&a.admin_url_for(&c.database), "docs").await,
        only(&pa, 3)
    );
    assert_eq!(
        physical(&b.admin_url_for(&c.database), "docs").await,
        only(&pb, 3)
    );
    assert_eq!(
        physical(&b.admin_url_for(&c.database), "t_bridge.docs").await,
        only(&br, 3)
    );
    assert_eq!(
        physical(&cs.admin_url_for(&c.database), "docs").await,
        BTreeMap::new()
    );
    assert_eq!(
        physical(&cs.admin_url_for(&silo), "docs").await,
        only(&si, 3)
    );

    // One pool per server and database: the pooled and the bridged tenant of b share one.
    assert_eq!(
        router.pools(),
        vec![
            ("a".to_string(), None),
            ("b".to_string(), None),
            ("c".to_string(), Some(silo.clone())),
        ]
    );

    // A tenant without an entry, and one on a server the router does not know.
    let nowhere = tenant();
    let err = bodies(&router, nowhere).await.unwrap_err();
    assert!(
        matches!(err, Error::Placement(PlacementError::NotPlaced(_))),
        "{err}"
    );
    let lost = tenant();
    directory.set(&lost.id(), &p("pool:zz")).await.unwrap();
    let err = bodies(&router, lost).await.unwrap_err();
    assert!(
        matches!(err, Error::Placement(PlacementError::UnknownServer(_))),
        "{err}"
    );

    // Moves that cannot be done are refused before anything changes: two schemas of one
    // database, an unknown server, and a target that holds rows of the tenant without a fence
    // (they may be live: never overwritten).
    let mover = c.mover();
    // Its servers by name, never their URLs (they carry the owner's credentials).
    assert_eq!(
        format!("{mover:?}"),
        r#"Mover { servers: ["a", "b", "c"], .. }"#
    );
    let mut progress = |_: &tenant_db::placement::Progress| {};
    let err = mover
        .move_to(&pb.id(), &p("bridge:b/t_bridge"), &mut progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("one database"), "{err}");
    let err = mover
        .move_to(&pb.id(), &p("pool:zz"), &mut progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Placement(PlacementError::UnknownServer(_))),
        "{err}"
    );
    directory.set(&pa.id(), &p("pool:b")).await.unwrap();
    router.forget(&pa.id());
    insert_docs(&router, pa, "stray", 7..=7).await;
    directory.set(&pa.id(), &p("pool:a")).await.unwrap();
    router.forget(&pa.id());
    let err = mover
        .move_to(&pa.id(), &p("pool:b"), &mut progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("may be live"), "{err}");
    assert_eq!(
        physical(&b.admin_url_for(&c.database), "docs")
            .await
            .get(&pa.id().to_string()),
        Some(&1),
        "the stray row is untouched"
    );
    let err = mover.rollback(&pa.id()).await.unwrap_err();
    assert!(err.to_string().contains("no move"), "{err}");

    // Silo pools are bounded and close when idle; shared ones stay.
    let silo2 = format!("{}_silo2", c.database);
    c.prepare_silo("c", &silo2).await.unwrap();
    let si2 = tenant();
    directory
        .set(&si2.id(), &p(&format!("silo:c/{silo2}")))
        .await
        .unwrap();
    let router = c
        .router()
        .max_silo_pools(1)
        .silo_idle(Duration::from_millis(300))
        .build()
        .unwrap();
    bodies(&router, si).await.unwrap();
    assert_eq!(router.pools(), vec![("c".to_string(), Some(silo.clone()))]);
    insert_docs(&router, si2, "si2", 1..=1).await;
    assert_eq!(router.pools(), vec![("c".to_string(), Some(silo2.clone()))]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    bodies(&router, pa).await.unwrap();
    assert_eq!(router.pools(), vec![("a".to_string(), None)]);
    assert_eq!(bodies(&router, si).await.unwrap().len(), 3);

    // The sweep closes only silo pools idle for the whole period: one used within it stays,
    // and a shared one stays however long it was idle.
    let router = c
        .router()
        .silo_idle(Duration::from_secs(2))
        .build()
        .unwrap();
    let shared = |s: &str| (s.to_string(), None);
    bodies(&router, pa).await.unwrap();
    bodies(&router, si).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    bodies(&router, pb).await.unwrap();
    assert_eq!(
        router.pools(),
        vec![
            shared("a"),
            shared("b"),
            ("c".to_string(), Some(silo.clone()))
        ],
        "swept after 1.2 s of a 2 s idle period"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    bodies(&router, pb).await.unwrap();
    assert_eq!(router.pools(), vec![shared("a"), shared("b")]);

    // The doctor and the red-team check cover every database in use: each server's shared
    // database with its bridge schema, and each silo; a server they were not given is an
    // error, not a database left out.
    let out = cli(
        &c,
        &["doctor", "--app-user", tenant_db_tests::placement::APP],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server `zz`"));
    directory.set(&lost.id(), &p("pool:a")).await.unwrap();
    let out = cli(
        &c,
        &["doctor", "--app-user", tenant_db_tests::placement::APP],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for site in ["== a (public)", "== b (public, t_bridge)", "== c (public)"] {
        assert!(text.contains(site), "{site}: {text}");
    }
    assert!(text.contains(&format!("== c/{silo} (public)")), "{text}");
    assert!(text.contains(&format!("== c/{silo2} (public)")), "{text}");
    let out = cli(
        &c,
        &["redteam", "--app-user", tenant_db_tests::placement::APP],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two tables in each of b's two schemas.
    assert!(
        text.contains("== b (public, t_bridge)\n64 of 64 attempts held"),
        "{text}"
    );
    assert_eq!(text.matches("== ").count(), 5, "{text}");
}

const CLASS: i32 = tenant_db::placement::fence::LOCK_CLASS;

/// Whether the application role may enter `t` at `url` (in a `modes` transaction).
async fn enters(url: &str, t: &TenantId, modes: &str) -> Result<(), String> {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let outcome = conn
        .batch_execute(&format!(
            "BEGIN {modes}; SELECT tenant_db.enter('{t}', 'uuid')"
        ))
        .await
        .map_err(|e| e.to_string());
    let _ = conn.batch_execute("ROLLBACK").await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refuses_a_tenant_it_does_not_hold_and_freezes_one_tenant_only() {
    let c = Cluster::start(0).await.unwrap();
    let a = c.server("a");
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let (t, other) = (tenant(), tenant());
    for x in [t, other] {
        directory.set(&x.id(), &p("pool:a")).await.unwrap();
    }
    let router = c.router().build().unwrap();
    insert_docs(&router, t, "t", 1..=2).await;
    insert_docs(&router, other, "other", 1..=2).await;
    let mut owner = AsyncPgConnection::establish(&a.owner_url).await.unwrap();

    // The application role can neither fence nor pass a fence.
    let mut app = AsyncPgConnection::establish(&a.app_url).await.unwrap();
    for sql in [
        format!("SELECT tenant_db.set_fence('{}', 'uuid', NULL)", t.id()),
        format!(
            "BEGIN; SELECT tenant_db.enter_for_move('{}', 'uuid')",
            t.id()
        ),
        format!("BEGIN; SELECT tenant_db.set_tenant('{}', 'uuid')", t.id()),
        "SELECT * FROM tenant_db.fences".to_string(),
        "SELECT * FROM tenant_db.captured".to_string(),
        "SELECT pg_catalog.setval('tenant_db.fence_version', 0)".to_string(),
    ] {
        let err = app.batch_execute(&sql).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
        let _ = app.batch_execute("ROLLBACK").await;
    }

    // Fenced: every transaction of the tenant is refused there, reads and writes alike,
    // before anything runs; the other tenant is not affected.
    owner
        .batch_execute(&format!(
            "SELECT tenant_db.set_fence('{}', 'uuid', 'moved')",
            t.id()
        ))
        .await
        .unwrap();
    let err = bodies(&router, t).await.unwrap_err();
    assert!(matches!(err, Error::Moved(_)), "{err}");
    let err = router
        .transaction(t, async |mut tx| {
            let s = tx.scope();
            s.insert(docs::table)
                .values(NewDoc {
                    id: 9,
                    body: "lost".into(),
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Moved(_)), "{err}");
    // The same write in one flight (with COMMIT behind it) is refused the same way.
    let err = router
        .single(t, async |mut tx| {
            let s = tx.scope();
            s.insert(docs::table)
                .values(NewDoc {
                    id: 10,
                    body: "lost in flight".into(),
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Moved(_)), "{err}");
    assert_eq!(
        physical(&a.admin_url_for(&c.database), "docs").await[&t.id().to_string()],
        2,
        "the refused write did not land"
    );
    assert!(
        enters(&a.app_url, &t.id(), "")
            .await
            .unwrap_err()
            .contains("not placed")
    );
    assert!(enters(&a.app_url, &t.id(), "READ ONLY").await.is_err());
    assert_eq!(bodies(&router, other).await.unwrap().len(), 2);
    owner
        .batch_execute(&format!(
            "SELECT tenant_db.set_fence('{}', 'uuid', NULL)",
            t.id()
        ))
        .await
        .unwrap();
    assert_eq!(bodies(&router, t).await.unwrap().len(), 2);

    // Frozen: the tenant's lock held exclusively holds its new transactions (and only its
    // own); when the freeze ends they are refused, to be retried where the tenant is.
    let key = format!("hashtext('uuid:' || '{}')", t.id());
    owner
        .batch_execute(&format!("SELECT pg_advisory_lock({CLASS}, {key})"))
        .await
        .unwrap();
    let held = {
        let router = router.clone();
        tokio::spawn(async move { bodies(&router, t).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the frozen tenant's transaction waits");
    assert_eq!(bodies(&router, other).await.unwrap().len(), 2);
    owner
        .batch_execute(&format!("SELECT pg_advisory_unlock({CLASS}, {key})"))
        .await
        .unwrap();
    let err = held.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Moved(_)), "{err}");
    assert_eq!(bodies(&router, t).await.unwrap().len(), 2);

    // Frozen in the directory: the router holds the tenant's new transactions until the move
    // ends (or its freeze wait runs out), and only that tenant's.
    let frozen = |state: &str| {
        format!(
            "UPDATE tenant_db_placement.directory SET state = '{state}' WHERE tenant_key = '{}'",
            t.id()
        )
    };
    let mut control = AsyncPgConnection::establish(&c.control_owner_url)
        .await
        .unwrap();
    control.batch_execute(&frozen("frozen")).await.unwrap();
    assert_eq!(
        directory.get(&t.id()).await.unwrap().unwrap().state,
        PlacedState::Frozen
    );
    router.forget(&t.id());
    let held = {
        let router = router.clone();
        tokio::spawn(async move { bodies(&router, t).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a frozen tenant's transaction is held");
    assert_eq!(bodies(&router, other).await.unwrap().len(), 2);
    control.batch_execute(&frozen("active")).await.unwrap();
    assert_eq!(held.await.unwrap().unwrap().len(), 2);
    control.batch_execute(&frozen("frozen")).await.unwrap();
    let impatient = c
        .router()
        .freeze_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(
        bodies(&impatient, t).await.unwrap().len(),
        2,
        "past the wait, it goes ahead"
    );
    control.batch_execute(&frozen("active")).await.unwrap();

    // A fence change not yet committed (or never: its mover died) is seen by every snapshot:
    // transactions at REPEATABLE READ or SERIALIZABLE, read-only too, whose snapshot may
    // predate it, are refused until it commits or is repaired. READ COMMITTED ones are not.
    // Fences changed and committed above: the counter agrees, such transactions go ahead.
    enters(&a.app_url, &other.id(), "ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let mut mover = AsyncPgConnection::establish(&a.owner_url).await.unwrap();
    mover
        .batch_execute(&format!(
            "BEGIN; SELECT tenant_db.set_fence('{}', 'uuid', 'moved')",
            TenantId::new_random()
        ))
        .await
        .unwrap();
    let o = other.id();
    for modes in [
        "ISOLATION LEVEL REPEATABLE READ",
        "ISOLATION LEVEL SERIALIZABLE",
        "ISOLATION LEVEL REPEATABLE READ READ ONLY",
    ] {
        let err = enters(&a.app_url, &o, modes).await.unwrap_err();
        assert!(err.contains("placement changed"), "{modes}: {err}");
    }
    enters(&a.app_url, &o, "").await.unwrap();
    enters(&a.app_url, &o, "READ ONLY").await.unwrap();
    mover.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        enters(&a.app_url, &o, "ISOLATION LEVEL REPEATABLE READ")
            .await
            .is_err()
    );
    owner
        .batch_execute(tenant_db::placement::fence::repair_sql())
        .await
        .unwrap();
    enters(&a.app_url, &o, "ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();

    // New tenants are placed by a policy: the least loaded server (a holds two tenants
    // here), the first listed on a tie, or by tier; a tenant already placed keeps its place.
    let policy =
        ByTier::new(LeastLoaded::new(["a", "b"])).tier("enterprise", SiloPerTenant::new("c"));
    let new: Vec<TenantId> = (0..4).map(|_| TenantId::new_random()).collect();
    assert_eq!(
        directory.place(&new[0], None, &policy).await.unwrap(),
        p("pool:b")
    );
    assert_eq!(
        directory
            .place(&new[1], Some("free"), &policy)
            .await
            .unwrap(),
        p("pool:b")
    );
    assert_eq!(
        directory.place(&new[2], None, &policy).await.unwrap(),
        p("pool:a")
    );
    let silo = directory
        .place(&new[3], Some("enterprise"), &policy)
        .await
        .unwrap();
    assert!(silo.to_string().starts_with("silo:c/t_"), "{silo}");
    assert_eq!(
        directory
            .place(&new[0], Some("enterprise"), &policy)
            .await
            .unwrap(),
        p("pool:b")
    );
    let placed = directory.get(&new[1]).await.unwrap().unwrap();
    assert_eq!(placed.tier.as_deref(), Some("free"));
}

/// What a writer's acknowledged writes left: id → body.
type Expected = BTreeMap<i64, String>;

/// Writes to `t` until `stop`: inserts (ids from `base`), and every few rows an update and a
/// delete of earlier rows; a write refused because the tenant moved is retried (nothing ran),
/// any other error fails the test. Returns what the acknowledged writes left, and the slowest
/// acknowledged transaction.
async fn writer(
    router: Router,
    t: Tenant,
    base: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Expected, Duration, u64) {
    let mut expected = Expected::new();
    let mut slowest = Duration::ZERO;
    let mut refusals = 0u64;
    let mut k = 0i64;
    while !std::sync::atomic::AtomicBool::load(&stop, std::sync::atomic::Ordering::Relaxed) {
        k += 1;
        let id = base + k;
        let body = format!("w{base}-{k}");
        // Each write: insert the new row; every 5th also updates the row 3 before it, every
        // 7th deletes the row 6 before it (both this writer's, both acknowledged before).
        let update = (k % 5 == 0)
            .then(|| base + k - 3)
            .filter(|i| expected.contains_key(i));
        let delete = (k % 7 == 0)
            .then(|| base + k - 6)
            .filter(|i| expected.contains_key(i));
        loop {
            let started = std::time::Instant::now();
            let outcome = router
                .transaction(t, async |mut tx| {
                    let s = tx.scope();
                    s.insert(docs::table)
                        .values(NewDoc {
                            id,
                            body: body.clone(),
                        })
                        .execute(&mut tx)
                        .await?;
                    if let Some(u) = update {
                        s.update(docs::table)
                            .filter(docs::id.eq(u))
                            .set(tenant_db::values!(
                                docs::table,
                                docs::body = format!("updated {u}")
                            ))
                            .execute(&mut tx)
                            .await?;
                    }
                    if let Some(d) = delete {
                        s.delete(docs::table)
                            .filter(docs::id.eq(d))
                            .execute(&mut tx)
                            .await?;
                    }
                    Ok::<_, Error>(())
                })
                .await;
            match outcome {
                Ok(()) => {
                    slowest = slowest.max(started.elapsed());
                    expected.insert(id, body.clone());
                    if let Some(u) = update {
                        expected.insert(u, format!("updated {u}"));
                    }
                    if let Some(d) = delete {
                        expected.remove(&d);
                    }
                    break;
                }
                Err(Error::Moved(_)) => {
                    refusals += 1;
                    continue;
                }
                Err(e) => panic!("writer {base}: {e}"),
            }
        }
    }
    (expected, slowest, refusals)
}

async fn all_docs(router: &Router, t: Tenant) -> Expected {
    let rows: Vec<(i64, String)> = router
        .transaction(t, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(docs::table)
                    .select((docs::id, docs::body))
                    .order(docs::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    let n = rows.len();
    let map: Expected = rows.into_iter().collect();
    assert_eq!(map.len(), n, "no id twice");
    map
}

async fn seed(router: &Router, t: Tenant, rows: i64) -> Expected {
    let mut expected = Expected::new();
    for start in (1..=rows).step_by(1000) {
        let end = (start + 999).min(rows);
        insert_docs(router, t, "seed", start..=end).await;
        router
            .transaction(t, async |mut tx| {
                let s = tx.scope();
                let lines: Vec<NewLine> = (start..=end)
                    .step_by(10)
                    .map(|d| NewLine {
                        id: d,
                        doc_id: d,
                        n: 1,
                    })
                    .collect();
                s.insert(lines::table)
                    .values(lines)
                    .execute(&mut tx)
                    .await?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        for id in start..=end {
            expected.insert(id, format!("seed doc {id}"));
        }
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_online_under_concurrent_writers_without_losing_a_row() {
    let rows: i64 = if std::env::var_os("TENANT_DB_PLACEMENT_SOAK").is_some() {
        100_000
    } else {
        3_000
    };
    let c = Cluster::start(2).await.unwrap();
    let silo = format!("{}_silo", c.database);
    c.prepare_silo("c", &silo).await.unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let (m, neighbour) = (tenant(), tenant());
    for x in [m, neighbour] {
        directory.set(&x.id(), &p("pool:a")).await.unwrap();
    }
    let router = c.router().pool_size(8).build().unwrap();
    let mut seeded = seed(&router, m, rows).await;
    insert_docs(&router, neighbour, "n", 1..=10).await;

    for (round, target) in [format!("silo:c/{silo}"), "pool:b".to_string()]
        .into_iter()
        .enumerate()
    {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for (i, t) in [m, m, neighbour].into_iter().enumerate() {
            let base = 1_000_000 * (1 + i as i64 + 10 * round as i64);
            writers.push(tokio::spawn(writer(router.clone(), t, base, stop.clone())));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A router that hears nothing (no LISTEN) keeps the old entry: the old database
        // refuses it once, it forgets the entry, and its retry goes to the new placement.
        let deaf = c
            .router()
            .listen(false)
            .cache_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        assert!(!deaf.listening());
        let before = bodies(&deaf, m).await.unwrap().len();
        assert!(before > 0);
        let mut steps = Vec::new();
        let report = c
            .mover()
            .move_to(&m.id(), &p(&target), &mut |pr| steps.push(pr.step))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut expected = std::mem::take(&mut seeded);
        let mut neighbour_expected = Expected::new();
        let mut neighbour_slowest = Duration::ZERO;
        let mut refusals = 0;
        for (i, w) in writers.into_iter().enumerate() {
            let (written, slowest, refused) = w.await.unwrap();
            refusals += refused;
            if i == 2 {
                neighbour_expected = written;
                neighbour_slowest = slowest;
            } else {
                assert!(written.len() > 10, "the writer wrote during the move");
                expected.extend(written);
            }
        }
        println!(
            "move {round} to {target}: {} rows copied, {} keys replayed ({} while frozen), \
             write pause {:.1} ms, {refusals} refused writes retried, the neighbour's slowest \
             write {:.1} ms",
            report.copied.iter().map(|t| t.rows).sum::<u64>(),
            report.replayed,
            report.replayed_frozen,
            report.pause.as_secs_f64() * 1000.0,
            neighbour_slowest.as_secs_f64() * 1000.0
        );
        assert!(
            report.replayed > 0,
            "writes made during the copy were caught up"
        );
        assert_eq!(
            steps,
            tenant_db::placement::MoveStep::ALL.to_vec(),
            "every step reported"
        );
        let refused = bodies(&deaf, m).await.map(|rows| rows.len());
        assert!(matches!(refused, Err(Error::Moved(_))), "{refused:?}");
        assert!(bodies(&deaf, m).await.is_ok());
        assert!(router.listening());
        // Every acknowledged write is there, once; nothing else is.
        let found = all_docs(&router, m).await;
        assert_eq!(found.len(), expected.len());
        assert!(
            found == expected,
            "the moved tenant's rows are exactly the acknowledged ones"
        );
        let neighbour_found = all_docs(&router, neighbour).await;
        for (id, body) in &neighbour_expected {
            assert_eq!(neighbour_found.get(id), Some(body));
        }
        // The rows live at the target only; the source keeps none.
        let (target_url, source_url) = if round == 0 {
            (
                c.server("c").admin_url_for(&silo),
                c.server("a").admin_url_for(&c.database),
            )
        } else {
            (
                c.server("b").admin_url_for(&c.database),
                c.server("c").admin_url_for(&silo),
            )
        };
        let key = m.id().to_string();
        assert_eq!(
            physical(&target_url, "docs").await.get(&key).copied(),
            Some(expected.len() as i64)
        );
        assert_eq!(physical(&source_url, "docs").await.get(&key), None);
        assert_eq!(
            physical(&source_url, "lines").await.get(&key),
            None,
            "children cleaned up too"
        );
        assert_eq!(
            directory.get(&m.id()).await.unwrap().unwrap().placement,
            p(&target)
        );
        seeded = expected;
    }
}

/// Runs `placement-cli placement <cluster args> <args>` to the end; returns its output.
fn cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_placement-cli"))
        .arg("placement")
        .args(c.cli_args())
        .args(args)
        .output()
        .unwrap()
}

/// Starts `promote … --hold-after step` and kills it (SIGKILL) once it holds there.
fn promote_and_kill(c: &Cluster, t: &TenantId, to: &str, step: &str) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_placement-cli"))
        .arg("placement")
        .args(c.cli_args())
        .args(["promote", &t.to_string(), "--to", to, "--hold-after", step])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let holding = format!("holding after {step}");
    while !lines.contains(&holding) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the mover never held after {step}: {lines:?} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lines
}

/// The placements (of `candidates`) where the application role may enter `t`.
async fn serving(c: &Cluster, t: &TenantId, candidates: &[&str]) -> Vec<String> {
    let mut serving = Vec::new();
    for placement in candidates {
        let server = c.server(p(placement).server());
        // The server drops a killed client's session (and its locks) when it notices.
        let mut outcome = enters(&server.app_url, t, "").await;
        for _ in 0..50 {
            match &outcome {
                Err(e) if e.contains("frozen") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    outcome = enters(&server.app_url, t, "").await;
                }
                _ => break,
            }
        }
        if outcome.is_ok() {
            serving.push(placement.to_string());
        }
    }
    serving
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mover_leaves_the_tenant_at_one_placement_and_the_move_resumes_or_rolls_back() {
    let c = Cluster::start(1).await.unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let m = tenant();
    directory.set(&m.id(), &p("pool:a")).await.unwrap();
    let router = c
        .router()
        .freeze_wait(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut expected = seed(&router, m, 300).await;
    // Killed right after recording the move, before touching the target: the rollback
    // leaves the target as it was, without a fence.
    promote_and_kill(&c, &m.id(), "pool:b", "started");
    let out = cli(&c, &["rollback", &m.id().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut b_admin = AsyncPgConnection::establish(&c.server("b").admin_url_for(&c.database))
        .await
        .unwrap();
    let fences: N = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM tenant_db.fences WHERE tenant_key = '{}'",
        m.id()
    ))
    .get_result(&mut b_admin)
    .await
    .unwrap();
    assert_eq!(fences.n, 0);
    assert!(all_docs(&router, m).await == expected);

    let mut at = "pool:a";
    let mut next_id = 10_000;
    for (i, step) in ["prepared", "copied", "caught_up", "frozen", "switched"]
        .into_iter()
        .enumerate()
    {
        let to = if at == "pool:a" { "pool:b" } else { "pool:a" };
        let lines = promote_and_kill(&c, &m.id(), to, step);
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{step}: "))),
            "{lines:?}"
        );

        // Killed: the tenant is served at exactly one placement, the source until the commit
        // point, the target after it; writes through the router land there.
        let expected_at = if step == "switched" { to } else { at };
        assert_eq!(
            serving(&c, &m.id(), &["pool:a", "pool:b"]).await,
            vec![expected_at.to_string()],
            "killed after {step}"
        );
        next_id += 1;
        let mut written = false;
        for _ in 0..20 {
            match router
                .transaction(m, async |mut tx| {
                    let s = tx.scope();
                    s.insert(docs::table)
                        .values(NewDoc {
                            id: next_id,
                            body: format!("after {step}"),
                        })
                        .execute(&mut tx)
                        .await?;
                    Ok::<_, Error>(())
                })
                .await
            {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(Error::Moved(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("after {step}: {e}"),
            }
        }
        assert!(written, "writable after a kill at {step}");
        expected.insert(next_id, format!("after {step}"));

        // Then resumed, or rolled back (before the commit point only).
        let resume = step == "switched" || i % 2 == 1;
        if step == "switched" {
            let out = cli(&c, &["rollback", &m.id().to_string()]);
            assert_eq!(out.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("commit point"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let action = if resume { "resume" } else { "rollback" };
        let out = cli(&c, &[action, &m.id().to_string()]);
        assert!(
            out.status.success(),
            "{action} after {step}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if resume {
            at = to;
        }
        assert_eq!(
            serving(&c, &m.id(), &["pool:a", "pool:b"]).await,
            vec![at.to_string()],
            "{action} after {step}"
        );
        assert_eq!(
            directory.get(&m.id()).await.unwrap().unwrap().placement,
            p(at)
        );
        let found = all_docs(&router, m).await;
        assert!(found == expected, "{action} after {step}: every row, once");
        let other = if at == "pool:a" { "b" } else { "a" };
        assert_eq!(
            physical(&c.server(other).admin_url_for(&c.database), "docs")
                .await
                .get(&m.id().to_string()),
            None,
            "{action} after {step}: nothing left at the other placement"
        );
    }
    // No move is left under way.
    let out = cli(&c, &["resume", &m.id().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let out = cli(&c, &["show", &m.id().to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{}\t{at}\tactive", m.id())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // --keep-source: the source keeps the rows, fenced, until `cleanup` deletes them.
    let to = if at == "pool:a" { "pool:b" } else { "pool:a" };
    let source = c.server(p(at).server()).admin_url_for(&c.database);
    let out = cli(
        &c,
        &["promote", &m.id().to_string(), "--to", to, "--keep-source"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        physical(&source, "docs").await.get(&m.id().to_string()),
        Some(&(expected.len() as i64))
    );
    assert_eq!(
        serving(&c, &m.id(), &["pool:a", "pool:b"]).await,
        vec![to.to_string()]
    );
    let out = cli(&c, &["cleanup", &m.id().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        physical(&source, "docs").await.get(&m.id().to_string()),
        None
    );
    assert!(all_docs(&router, m).await == expected);
}

#[derive(QueryableByName)]
struct Recovery {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    recovering: bool,
}

/// Whether `router`'s transaction (`read`: its read-only one) for `t` ran on a replica.
async fn on_replica(router: &Router, t: Tenant, read: bool) -> bool {
    let probe = async |mut tx: tenant_db::TenantTx<'_>| {
        let r: Vec<Recovery> = tx
            .unscoped_load(diesel::sql_query(
                "SELECT pg_is_in_recovery() AS recovering",
            ))
            .await?;
        Ok::<_, Error>(r[0].recovering)
    };
    if read {
        router.read_transaction(t, probe).await.unwrap()
    } else {
        router.transaction(t, probe).await.unwrap()
    }
}

/// Waits until `check` holds (the replica replays what the server committed).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_go_to_the_replica_when_asked_and_rls_and_fences_hold_there() {
    let mut c = Cluster::start(1).await.unwrap();
    let (replica_admin, replica_app) = c.start_replica("b").unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let (x, y, on_a) = (tenant(), tenant(), tenant());
    for t in [x, y] {
        directory.set(&t.id(), &p("pool:b")).await.unwrap();
    }
    directory.set(&on_a.id(), &p("pool:a")).await.unwrap();
    let router = c.router().replica("b", &replica_app).build().unwrap();
    for (t, label) in [(x, "x"), (y, "y"), (on_a, "on_a")] {
        insert_docs(&router, t, label, 1..=3).await;
    }
    let replica_docs = format!(
        "{}/{}",
        replica_admin.rsplit_once('/').unwrap().0,
        c.database
    );
    eventually("the replica has both tenants' rows", async || {
        physical(&replica_docs, "docs").await.len() == 2
    })
    .await;

    // Asked for, reads go to the replica; writes, and servers without one, to the server.
    assert!(on_replica(&router, x, true).await);
    assert!(!on_replica(&router, x, false).await);
    assert!(!on_replica(&router, on_a, true).await);
    assert_eq!(router.replica_pools(), vec![("b".to_string(), None)]);
    // RLS holds there: the same ids, each tenant its own rows.
    for (t, label) in [(x, "x"), (y, "y")] {
        let seen: Vec<String> = router
            .read_transaction(t, async |mut tx| {
                let s = tx.scope();
                Ok::<_, Error>(
                    s.query(docs::table)
                        .select(docs::body)
                        .order(docs::id)
                        .load(&mut tx)
                        .await?,
                )
            })
            .await
            .unwrap();
        assert_eq!(
            seen,
            (1..=3)
                .map(|i| format!("{label} doc {i}"))
                .collect::<Vec<_>>()
        );
    }
    // Read only, on the replica and on a server without one.
    for t in [x, on_a] {
        let err = router
            .read_transaction(t, async |mut tx| {
                let s = tx.scope();
                s.insert(docs::table)
                    .values(NewDoc {
                        id: 7,
                        body: "no".into(),
                    })
                    .execute(&mut tx)
                    .await?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("read-only transaction"), "{err}");
    }
    // A fence set on the server reaches the replica, which then refuses the tenant too.
    let mut owner = AsyncPgConnection::establish(&c.server("b").owner_url)
        .await
        .unwrap();
    owner
        .batch_execute(&format!(
            "SELECT tenant_db.set_fence('{}', 'uuid', 'moved')",
            x.id()
        ))
        .await
        .unwrap();
    eventually("the replica refuses the fenced tenant", async || {
        matches!(bodies_on_replica(&router, x).await, Err(Error::Moved(_)))
    })
    .await;
    assert!(bodies_on_replica(&router, y).await.is_ok());
}

async fn bodies_on_replica(router: &Router, t: Tenant) -> Result<Vec<String>, Error> {
    router
        .read_transaction(t, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(docs::table)
                    .select(docs::body)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
}

/// A cluster with one extra server, and one tenant placed on `pool:a` with `rows` documents.
struct OnA {
    c: Cluster,
    directory: Directory,
    m: Tenant,
    router: Router,
    expected: Expected,
}

async fn one_tenant_on_a(rows: i64) -> OnA {
    let c = Cluster::start(1).await.unwrap();
    let directory = Directory::connect(&c.control_owner_url, 1).unwrap();
    let m = tenant();
    directory.set(&m.id(), &p("pool:a")).await.unwrap();
    let router = c.router().build().unwrap();
    let expected = seed(&router, m, rows).await;
    OnA {
        c,
        directory,
        m,
        router,
        expected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_after_later_ones_were_caught_up_is_moved_too() {
    let OnA {
        c,
        m,
        router,
        mut expected,
        ..
    } = one_tenant_on_a(100).await;
    // Once the capture is on: a slow transaction writes first (its change drawn first) and
    // commits last, after a quick one whose change the catch-up replays before the freeze.
    let (start_tx, mut start_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (written_tx, written_rx) = std::sync::mpsc::channel::<()>();
    let slow = {
        let router = router.clone();
        tokio::spawn(async move {
            start_rx.recv().await.unwrap();
            router
                .transaction(m, async |mut tx| {
                    let s = tx.scope();
                    s.insert(docs::table)
                        .values(NewDoc {
                            id: 5001,
                            body: "slow".into(),
                        })
                        .execute(&mut tx)
                        .await?;
                    insert_docs(&router, m, "quick", 5002..=5002).await;
                    written_tx.send(()).unwrap();
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok::<_, Error>(())
                })
                .await
        })
    };
    let caught_up = std::sync::OnceLock::new();
    let caught = &caught_up;
    let mut progress = move |pr: &tenant_db::placement::Progress| {
        if pr.step == tenant_db::placement::MoveStep::Prepared {
            start_tx.send(()).unwrap();
            // The mover goes on once both are written (this blocks the test's own thread only).
            written_rx.recv().unwrap();
        }
        if pr.step == tenant_db::placement::MoveStep::CaughtUp {
            assert_eq!(caught.set(replayed_in(&pr.detail)), Ok(()));
        }
    };
    let report = c
        .mover()
        .move_to(&m.id(), &p("pool:b"), &mut progress)
        .await
        .unwrap();
    slow.await.unwrap().unwrap();
    assert!(
        report.replayed_frozen >= 1,
        "the slow change was replayed while frozen"
    );
    // The quick change was replayed by the catch-up; the report counts both parts.
    let caught_up = *caught_up.get().expect("the catch-up step was reported");
    assert!(
        caught_up >= 1,
        "the quick change was replayed before the freeze"
    );
    assert_eq!(report.replayed, caught_up + report.replayed_frozen);
    expected.insert(5001, "slow".to_string());
    expected.insert(5002, "quick doc 5002".to_string());
    assert!(all_docs(&router, m).await == expected);
}

/// The keys a catch-up step's detail says it replayed.
fn replayed_in(detail: &str) -> u64 {
    match detail
        .strip_suffix(" captured keys replayed")
        .map(str::parse)
    {
        Some(Ok(n)) => n,
        _ => panic!("not a catch-up detail: {detail:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catch_up_goes_on_until_a_round_is_small_enough_and_counts_what_it_replays() {
    // Three rows written once the capture is on: the first round replays their three keys,
    // which is not fewer than `freeze_below(3)`, so a second round runs (and finds nothing)
    // before the freeze. The report counts the three, none of them while frozen.
    let OnA {
        c,
        directory,
        m,
        router,
        mut expected,
    } = one_tenant_on_a(20).await;
    let (start_tx, mut start_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (written_tx, written_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let router = router.clone();
        tokio::spawn(async move {
            start_rx.recv().await.unwrap();
            insert_docs(&router, m, "during", 7001..=7003).await;
            written_tx.send(()).unwrap();
        })
    };
    let caught_up = std::sync::OnceLock::new();
    let caught = &caught_up;
    // While frozen, the directory says so (the router holds the tenant's transactions).
    let state = format!(
        "SELECT state FROM tenant_db_placement.directory WHERE tenant_key = '{}'",
        m.id()
    );
    let control = c.control_owner_url.clone();
    let frozen_state = std::sync::OnceLock::new();
    let seen = &frozen_state;
    let mut progress = move |pr: &tenant_db::placement::Progress| {
        if pr.step == tenant_db::placement::MoveStep::Prepared {
            start_tx.send(()).unwrap();
            written_rx.recv().unwrap();
        }
        if pr.step == tenant_db::placement::MoveStep::CaughtUp {
            assert_eq!(caught.set(replayed_in(&pr.detail)), Ok(()));
        }
        if pr.step == tenant_db::placement::MoveStep::Frozen {
            let out = std::process::Command::new("psql")
                .args([control.as_str(), "-Atc", state.as_str()])
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(seen.set(state), Ok(()));
        }
    };
    let report = c
        .mover()
        .freeze_below(3)
        .max_rounds(5)
        .move_to(&m.id(), &p("pool:b"), &mut progress)
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(caught_up.get(), Some(&3));
    assert_eq!((report.replayed, report.replayed_frozen), (3, 0));
    assert_eq!(frozen_state.get().map(String::as_str), Some("frozen"));
    let placed = directory.get(&m.id()).await.unwrap().unwrap();
    assert_eq!(
        (placed.placement, placed.state),
        (p("pool:b"), PlacedState::Active)
    );
    for id in 7001..=7003 {
        expected.insert(id, format!("during doc {id}"));
    }
    assert!(all_docs(&router, m).await == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_two_sides_differ_is_not_switched() {
    let OnA {
        c,
        directory,
        m,
        router,
        expected,
    } = one_tenant_on_a(50).await;
    // Something no capture sees (here a row the superuser writes at the target) makes the two
    // sides differ: the freeze's comparison refuses to switch.
    let target_admin = c.server("b").admin_url_for(&c.database);
    let stray = format!(
        "INSERT INTO docs (tenant_id, id, body) VALUES ('{}', 999999, 'stray')",
        m.id()
    );
    let mut progress = move |pr: &tenant_db::placement::Progress| {
        if pr.step == tenant_db::placement::MoveStep::CaughtUp {
            let out = std::process::Command::new("psql")
                .args([target_admin.as_str(), "-c", stray.as_str()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let err = c
        .mover()
        .move_to(&m.id(), &p("pool:b"), &mut progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing switched"), "{err}");
    assert_eq!(
        directory.get(&m.id()).await.unwrap().unwrap().placement,
        p("pool:a")
    );
    assert!(
        all_docs(&router, m).await == expected,
        "still served, unchanged, by the source"
    );
    c.mover().rollback(&m.id()).await.unwrap();

    // A catch-up that does not get small enough is not frozen: the move fails, the tenant stays.
    let err = c
        .mover()
        .freeze_below(0)
        .max_rounds(2)
        .move_to(&m.id(), &p("pool:b"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outpace the catch-up"), "{err}");
    assert_eq!(
        directory.get(&m.id()).await.unwrap().unwrap().placement,
        p("pool:a")
    );
    assert!(all_docs(&router, m).await == expected);
    c.mover().rollback(&m.id()).await.unwrap();
    assert_eq!(
        physical(&c.server("b").admin_url_for(&c.database), "docs")
            .await
            .get(&m.id().to_string()),
        None
    );
    assert!(all_docs(&router, m).await == expected);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_columns_differ_is_refused_and_a_finished_move_stops_its_capture() {
    let OnA {
        c,
        m,
        router,
        expected,
        ..
    } = one_tenant_on_a(20).await;
    // One more column at the target, the same primary key: refused before anything changes.
    let mut target = AsyncPgConnection::establish(&c.server("b").admin_url_for(&c.database))
        .await
        .unwrap();
    target
        .batch_execute("ALTER TABLE docs ADD COLUMN extra text")
        .await
        .unwrap();
    let err = c
        .mover()
        .move_to(&m.id(), &p("pool:b"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"docs\" differs between the source and the target"),
        "{err}"
    );
    target
        .batch_execute("ALTER TABLE docs DROP COLUMN extra")
        .await
        .unwrap();

    // Alike again, the move goes through. Once switched, the source refuses the tenant at
    // once (it is not placed there), not after waiting for the move's lock; afterwards nothing
    // of its capture is left at the source: no tenant captured, no captured key, no trigger.
    let source_app = c.server("a").app_url.clone();
    let id = m.id();
    let after_switch = std::sync::OnceLock::new();
    let seen = &after_switch;
    let mut progress = move |pr: &tenant_db::placement::Progress| {
        if pr.step == tenant_db::placement::MoveStep::Switched {
            let url = source_app.clone();
            let entered = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(enters(&url, &id, "; SET LOCAL lock_timeout = '2s'"))
            })
            .join()
            .unwrap();
            assert_eq!(seen.set(entered), Ok(()));
        }
    };
    c.mover()
        .move_to(&m.id(), &p("pool:b"), &mut progress)
        .await
        .unwrap();
    let entered = after_switch.get().expect("the switch was reported");
    assert!(
        matches!(entered, Err(e) if e.contains("is not placed in this database")),
        "{entered:?}"
    );
    assert!(all_docs(&router, m).await == expected);
    let mut source = AsyncPgConnection::establish(&c.server("a").admin_url_for(&c.database))
        .await
        .unwrap();
    let left = [
        "SELECT count(*)::int8 AS n FROM tenant_db.capturing",
        "SELECT count(*)::int8 AS n FROM tenant_db.captured",
        "SELECT count(*)::int8 AS n FROM pg_catalog.pg_trigger WHERE tgname = 'tenant_db_capture'",
    ];
    let mut counts = Vec::new();
    for sql in left {
        counts.push(count(&mut source, sql).await);
    }
    assert_eq!(counts, [0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_waits_out_open_writes_a_few_times_then_gives_up() {
    let OnA {
        c,
        directory,
        m,
        router,
        expected,
    } = one_tenant_on_a(20).await;
    let source_admin = c.server("a").admin_url_for(&c.database);
    // An open write on `docs` at the source (its lock), held until released.
    let mut writer = AsyncPgConnection::establish(&source_admin).await.unwrap();
    writer
        .batch_execute("BEGIN; LOCK TABLE docs IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();

    // Held throughout: the capture's triggers wait two seconds at a time, five times, and the
    // move gives up; the tenant stays where it was.
    let err = c
        .mover()
        .move_to(&m.id(), &p("pool:b"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("could not add the capture triggers at the source"),
        "{err}"
    );
    assert_eq!(
        directory.get(&m.id()).await.unwrap().unwrap().placement,
        p("pool:a")
    );
    c.mover().rollback(&m.id()).await.unwrap();

    // Released after the first wait ran out (the second attempt is seen waiting): the move
    // goes through.
    let release = tokio::spawn(async move {
        let mut watcher = AsyncPgConnection::establish(&source_admin).await.unwrap();
        let mut attempts = std::collections::BTreeSet::new();
        while attempts.len() < 2 {
            #[derive(QueryableByName)]
            struct Waiting {
                #[diesel(sql_type = diesel::sql_types::Text)]
                started: String,
            }
            let waiting: Vec<Waiting> = diesel::sql_query(
                "SELECT query_start::text AS started FROM pg_catalog.pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND pid <> pg_catalog.pg_backend_pid()
                   AND query LIKE '%TRIGGER tenant_db_capture%'",
            )
            .load(&mut watcher)
            .await
            .unwrap();
            attempts.extend(waiting.into_iter().map(|w| w.started));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        writer.batch_execute("COMMIT").await.unwrap();
    });
    c.mover()
        .move_to(&m.id(), &p("pool:b"), &mut |_| {})
        .await
        .unwrap();
    release.await.unwrap();
    assert_eq!(
        directory.get(&m.id()).await.unwrap().unwrap().placement,
        p("pool:b")
    );
    assert!(all_docs(&router, m).await == expected);
}

#[tokio::test]
async fn a_cluster_left_by_a_killed_test_is_cleaned_up_by_the_next() {
    // What a test killed mid-way (a timeout) leaves: its owner file naming a process that is
    // gone, a running server, and a database on the main server.
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let tmp = std::env::temp_dir();
    let owner = tmp.join(format!("tenant-db-placement-{run}.owner"));
    std::fs::write(&owner, dead.to_string()).unwrap();
    let left = tenant_db_tests::server::Throwaway::in_dir(
        tmp.join(format!("tenant-db-placement-{run}-b")),
    );
    let running = left.start_or_reuse().unwrap();
    let database = format!("tdbp_{}", &run[..10]);
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let exists = format!(
        "SELECT count(*)::int8 AS n FROM pg_catalog.pg_database WHERE datname = '{database}'"
    );
    assert_eq!(count(&mut admin, &exists).await, 1);
    // And a cluster whose process still runs (this one): a directory and a database.
    let live = uuid::Uuid::new_v4().simple().to_string();
    let live_owner = tmp.join(format!("tenant-db-placement-{live}.owner"));
    std::fs::write(&live_owner, std::process::id().to_string()).unwrap();
    let live_dir = tmp.join(format!("tenant-db-placement-{live}-b"));
    std::fs::create_dir(&live_dir).unwrap();
    let live_database = format!("tdbp_{}", &live[..10]);
    admin
        .batch_execute(&format!("CREATE DATABASE {live_database}"))
        .await
        .unwrap();
    let live_exists = format!(
        "SELECT count(*)::int8 AS n FROM pg_catalog.pg_database WHERE datname = '{live_database}'"
    );

    // The next cluster cleans up the first before it starts, and leaves the live one alone.
    let c = Cluster::start(0).await.unwrap();
    assert_eq!(
        count(&mut admin, &exists).await,
        0,
        "its database was dropped"
    );
    assert!(!left.dir().exists(), "its server's directory was removed");
    assert!(!owner.exists(), "its owner file was removed");
    assert!(
        AsyncPgConnection::establish(&running.url).await.is_err(),
        "its server was stopped"
    );
    assert_eq!(
        count(&mut admin, &live_exists).await,
        1,
        "a live cluster's database was dropped"
    );
    assert!(
        live_dir.exists() && live_owner.exists(),
        "a live cluster was removed"
    );
    admin
        .batch_execute(&format!("DROP DATABASE {live_database}"))
        .await
        .unwrap();
    std::fs::remove_dir(&live_dir).unwrap();
    std::fs::remove_file(&live_owner).unwrap();
    drop(c);
}
