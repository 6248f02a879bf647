//! One flight: a transaction's last statement goes out with its `COMMIT`
//! (`TenantDb::single`, `TenantTx::last`). What must hold: the statement never runs outside
//! its transaction or before its tenant (on a statement-cache miss as on a hit), `COMMIT` is
//! really on the wire before the statement's reply (a transaction whose future is dropped
//! while its statement waits still commits), a failed begin or a dying connection commits
//! nothing, and nothing runs after the last statement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::time::Duration;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::schema::*;

/// A fresh pool of one connection: its first statements miss the statement cache.
async fn fresh_db() -> TenantDb {
    db_with_rls(1).await
}

async fn admin() -> AsyncPgConnection {
    app_url().await;
    AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(DATABASE))
        .await
        .unwrap()
}

/// The name of `tenant`'s customer `id`, read as the superuser (no RLS, no transaction of ours).
async fn name_of(tenant: Tenant, id: i64) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    use diesel_async::RunQueryDsl;
    let mut admin = admin().await;
    diesel::sql_query(format!(
        "SELECT name FROM customers WHERE tenant_id::text = '{}' AND id = {id}",
        tenant.id()
    ))
    .get_result::<Name>(&mut admin)
    .await
    .ok()
    .map(|n| n.name)
}

#[tokio::test]
async fn single_reads_and_writes_on_a_cache_miss_and_a_hit() {
    let db = fresh_db().await;
    let (a, _b) = two_tenants(&db_with_rls(2).await).await;
    // Twice on the same connection: the first time every statement (and COMMIT) is prepared
    // first, the second time they are cached. A statement that ran after COMMIT would run
    // without the tenant: the read would find nothing, the insert would fail the policy.
    for round in 0..2 {
        let name: String = db
            .single(a, async |mut tx| {
                let s = tx.scope();
                s.query(customers::table)
                    .filter(customers::id.eq(2))
                    .select(customers::name)
                    .first(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await
            .unwrap();
        assert_eq!(name, "c2", "round {round}");
        let id = 100 + round;
        let inserted = db
            .single(a, async |mut tx| {
                let s = tx.scope();
                s.insert(customers::table)
                    .values(new_customer(id, "flown"))
                    .execute(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await
            .unwrap();
        assert_eq!(inserted, 1, "round {round}");
        assert_eq!(name_of(a, id).await.as_deref(), Some("flown"));
        let updated = db
            .single(a, async |mut tx| {
                let s = tx.scope();
                s.update(customers::table)
                    .filter(customers::id.eq(id))
                    .set(tenant_db::values!(
                        customers::table,
                        customers::name = "landed"
                    ))
                    .execute(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await
            .unwrap();
        assert_eq!(updated, 1, "round {round}");
        assert_eq!(name_of(a, id).await.as_deref(), Some("landed"));
    }
    let after = state(&pool_of_one(&app_url().await)).await;
    assert!(clean(&after), "{after:?}");
}

/// A transaction whose update waits for a row lock another session holds: once the update is
/// on the server, the future is dropped, then the lock is released. With `COMMIT` already on
/// the wire the update commits; without it, the connection closes and it rolls back.
async fn dropped_while_waiting(db: &TenantDb, tenant: Tenant, id: i64, single: bool) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    let mut blocker = admin().await;
    let pid: Count = diesel::sql_query("SELECT pg_backend_pid()::bigint AS n")
        .get_result(&mut blocker)
        .await
        .unwrap();
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM customers WHERE tenant_id::text = '{}' AND id = {id} FOR UPDATE",
            tenant.id()
        ))
        .await
        .unwrap();
    let name = format!("dropped-{id}-{single}");
    let db2 = db.clone();
    let name2 = name.clone();
    let task = tokio::spawn(async move {
        let f = async |mut tx: TenantTx<'_>| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.eq(id))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = name2.clone()
                ))
                .execute(tx.last())
                .await
                .map_err(Error::from)
        };
        if single {
            db2.single(tenant, f).await
        } else {
            db2.transaction(tenant, f).await
        }
    });
    // Wait until the update waits for the blocker's lock.
    let mut waiting = false;
    for _ in 0..200 {
        let mut probe = admin().await;
        let c: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity
             WHERE {} = ANY (pg_blocking_pids(pid))",
            pid.n
        ))
        .get_result(&mut probe)
        .await
        .unwrap();
        if c.n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the update never waited for the lock");
    task.abort();
    let _ = task.await;
    blocker.batch_execute("COMMIT").await.unwrap();
    // The server finishes what it received.
    for _ in 0..100 {
        if name_of(tenant, id).await.as_deref() == Some(name.as_str()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn commit_is_on_the_wire_before_the_statement_replies() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    // A new connection has COMMIT prepared; the update is new to it (a statement-cache miss).
    assert!(
        dropped_while_waiting(&db, a, 1, true).await,
        "single, statement-cache miss: COMMIT was not sent with the statement"
    );
    // The connection was closed (its future was dropped in flight). Prepare the update on the
    // next one: then it is a statement-cache hit.
    db.single(a, async |mut tx| {
        let s = tx.scope();
        s.update(customers::table)
            .filter(customers::id.eq(3))
            .set(tenant_db::values!(
                customers::table,
                customers::name = "c3".to_string()
            ))
            .execute(&mut tx)
            .await
            .map_err(Error::from)
    })
    .await
    .unwrap();
    assert!(
        dropped_while_waiting(&db, a, 2, true).await,
        "single, statement-cache hit: COMMIT was not sent with the statement"
    );
    // `last()` in an ordinary transaction does the same.
    assert!(dropped_while_waiting(&db, a, 3, false).await);
    // The connection whose future was dropped in flight was not reused with a transaction open.
    let after = state(&pool_of_one(&app_url().await)).await;
    assert!(clean(&after), "{after:?}");
}

#[tokio::test]
async fn without_last_a_dropped_transaction_rolls_back() {
    // The control for the test above: the same drop, COMMIT not marked, nothing committed.
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let mut blocker = admin().await;
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM customers WHERE tenant_id::text = '{}' AND id = 1 FOR UPDATE",
            a.id()
        ))
        .await
        .unwrap();
    let db2 = db.clone();
    let task = tokio::spawn(async move {
        db2.transaction(a, async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.eq(1))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "never"
                ))
                .execute(&mut tx)
                .await
                .map_err(Error::from)
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let _ = task.await;
    blocker.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(name_of(a, 1).await.as_deref(), Some("c1"));
}

#[tokio::test]
async fn a_statement_after_the_last_is_refused_and_sends_nothing() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let second = db
        .single(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(200, "first"))
                .execute(&mut tx)
                .await?;
            let second = s
                .insert(customers::table)
                .values(new_customer(201, "second"))
                .execute(&mut tx)
                .await;
            let raw = tx
                .unscoped_execute(diesel::sql_query(
                    "INSERT INTO customers (tenant_id, id, name) VALUES \
                     (current_setting('app.current_tenant')::uuid, 202, 'raw')",
                ))
                .await;
            Ok::<_, Error>((second, raw))
        })
        .await
        .unwrap();
    for refused in [second.0, second.1] {
        let e = refused.expect_err("a statement after the last one ran");
        assert!(
            Error::from(e)
                .to_string()
                .contains("follows the transaction's last statement"),
            "not the refusal"
        );
    }
    assert_eq!(name_of(a, 200).await.as_deref(), Some("first"));
    assert_eq!(name_of(a, 201).await, None);
    assert_eq!(name_of(a, 202).await, None);
}

#[tokio::test]
async fn debug_shows_the_tenant_and_whether_a_statement_is_the_last() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let shown = db
        .transaction(a, async |mut tx| {
            assert_eq!(
                format!("{tx:?}"),
                format!("TenantTx {{ tenant: {:?} }}", a.id())
            );
            let s = tx.scope();
            let plain = s
                .query(customers::table)
                .select(customers::id)
                .load::<i64>(&mut tx);
            let plain_shown = format!("{plain:?}");
            plain.await?;
            let last = s
                .query(customers::table)
                .select(customers::id)
                .load::<i64>(tx.last());
            let last_shown = format!("{last:?}");
            last.await?;
            Ok::<_, Error>((plain_shown, last_shown))
        })
        .await
        .unwrap();
    assert_eq!(shown.0, "Guarded { last: false, .. }");
    assert_eq!(shown.1, "Guarded { last: true, .. }");
}

#[tokio::test]
async fn the_last_statement_commits_with_its_flight() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    // Statements before the last one, then the last: all in one transaction.
    db.transaction(a, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(new_customer(300, "before"))
            .execute(&mut tx)
            .await?;
        s.insert(customers::table)
            .values(new_customer(301, "last"))
            .execute(tx.last())
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(name_of(a, 300).await.as_deref(), Some("before"));
    assert_eq!(name_of(a, 301).await.as_deref(), Some("last"));
    // An error the closure returns after the last statement does not roll it back (documented).
    let e = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(302, "kept"))
                .execute(tx.last())
                .await?;
            Err::<(), _>(Error::Doctor("the closure's own error".into()))
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the closure's own error"));
    assert_eq!(name_of(a, 302).await.as_deref(), Some("kept"));
    // A last statement that fails: the transaction rolls back, earlier statements too; a closure
    // that swallows the error gets `NotCommitted`, not success.
    let e = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(303, "rolled back"))
                .execute(&mut tx)
                .await?;
            let _ = s
                .insert(customers::table)
                .values(new_customer(300, "duplicate key"))
                .execute(tx.last())
                .await;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotCommitted(_)), "{e}");
    assert!(e.to_string().contains("its last statement failed"), "{e}");
    assert_eq!(name_of(a, 303).await, None);
    let after = state(&pool_of_one(&app_url().await)).await;
    assert!(clean(&after), "{after:?}");
}

#[tokio::test]
async fn a_refused_tenant_commits_nothing() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let mut owner = owner().await;
    let kind = a.id().kind().name();
    owner
        .batch_execute(&format!(
            "SELECT tenant_db.set_fence('{}', '{kind}', 'moved')",
            a.id()
        ))
        .await
        .unwrap();
    let outcome = db
        .single(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(400, "behind a fence"))
                .execute(&mut tx)
                .await
                .map_err(Error::from)
        })
        .await;
    owner
        .batch_execute(&format!(
            "SELECT tenant_db.set_fence('{}', '{kind}', NULL)",
            a.id()
        ))
        .await
        .unwrap();
    assert!(matches!(outcome, Err(Error::Moved(_))), "{outcome:?}");
    assert_eq!(name_of(a, 400).await, None);
}

#[tokio::test]
async fn a_connection_that_dies_in_flight_commits_nothing() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    // A row that kills its own backend when inserted, after the insert reached the server and
    // before its COMMIT runs.
    let mut owner = owner().await;
    owner
        .batch_execute(
            "CREATE OR REPLACE FUNCTION flight_test_die() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_terminate_backend(pg_backend_pid());
                 PERFORM pg_sleep(5);
                 RETURN NEW;
             END $$;
             CREATE OR REPLACE TRIGGER flight_test_die BEFORE INSERT ON customers
                 FOR EACH ROW WHEN (NEW.name = 'tenant-db: die in flight')
                 EXECUTE FUNCTION flight_test_die();",
        )
        .await
        .unwrap();
    for round in 0..2 {
        let outcome = db
            .single(a, async |mut tx| {
                let s = tx.scope();
                s.insert(customers::table)
                    .values(new_customer(500 + round, "tenant-db: die in flight"))
                    .execute(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await;
        assert!(outcome.is_err(), "round {round}: {outcome:?}");
        assert_eq!(name_of(a, 500 + round).await, None);
        // The pool replaces the dead connection; the next transaction works.
        let n = db
            .single(a, async |mut tx| {
                let s = tx.scope();
                s.query(customers::table)
                    .count()
                    .get_result::<i64>(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}

/// A statement dropped in flight by the closure itself: the closure returns `Ok`, but whether
/// the transaction committed is not known, so it is an error and the connection is closed.
#[tokio::test]
async fn a_last_statement_dropped_in_flight_is_not_reported_committed() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let mut blocker = admin().await;
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM customers WHERE tenant_id::text = '{}' AND id = 3 FOR UPDATE",
            a.id()
        ))
        .await
        .unwrap();
    let outcome = db
        .single(a, async |mut tx| {
            let s = tx.scope();
            let update = s
                .update(customers::table)
                .filter(customers::id.eq(3))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "unknown"
                ))
                .execute(&mut tx);
            let _ = tokio::time::timeout(Duration::from_millis(200), update).await;
            Ok::<_, Error>(())
        })
        .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    assert!(
        matches!(outcome, Err(Error::NotCommitted(_))),
        "{outcome:?}"
    );
    // The connection did not go back to the pool.
    assert_eq!(db.status().size, 0, "{:?}", db.status());
}

/// A flight whose end is known, committed or rolled back, gives its connection back to the
/// pool: only an unknown end closes it.
#[tokio::test]
async fn a_flight_that_ended_as_known_keeps_its_connection() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    assert_eq!(db.status().size, 1, "{:?}", db.status());
    // Committed with the statement.
    db.single(a, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(new_customer(300, "kept"))
            .execute(&mut tx)
            .await
            .map_err(Error::from)
    })
    .await
    .unwrap();
    assert_eq!(name_of(a, 300).await.as_deref(), Some("kept"));
    assert_eq!(db.status().size, 1, "committed: {:?}", db.status());
    // Rolled back by the COMMIT behind a statement that failed (a duplicate key).
    let duplicate = db
        .single(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(300, "again"))
                .execute(&mut tx)
                .await
                .map_err(Error::from)
        })
        .await;
    assert!(duplicate.is_err(), "{duplicate:?}");
    assert_eq!(name_of(a, 300).await.as_deref(), Some("kept"));
    assert_eq!(db.status().size, 1, "rolled back: {:?}", db.status());
    // What the pool shows is what the handle shows.
    assert!(
        format!("{db:?}").starts_with("TenantDb { status: Status { max_size: 1, size: 1,"),
        "{db:?}"
    );
}

/// Statements joined with the last one: `COMMIT` waits for every other statement of the
/// transaction, whatever order they are polled in.
#[tokio::test]
async fn statements_joined_with_the_last_one_stay_inside_the_transaction() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    for round in 0..3_i64 {
        db.transaction(a, async |mut tx| {
            let s = tx.scope();
            let earlier = s
                .insert(customers::table)
                .values(new_customer(600 + 2 * round, "earlier"))
                .execute(&mut tx);
            let last = s
                .insert(customers::table)
                .values(new_customer(601 + 2 * round, "last"))
                .execute(tx.last());
            // The last one is polled first.
            let (l, e) = tokio::join!(last, earlier);
            l?;
            e?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(
            name_of(a, 600 + 2 * round).await.as_deref(),
            Some("earlier")
        );
        assert_eq!(name_of(a, 601 + 2 * round).await.as_deref(), Some("last"));
    }
}

/// A table with a column of a custom type: diesel-async looks the type up (a query of its own)
/// before it takes the statement cache, so `COMMIT` must not go out with such a statement.
#[allow(unreachable_pub)]
mod moods {
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "flight_mood"))]
    pub struct MoodSql;

    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        diesel::expression::AsExpression,
        diesel::deserialize::FromSqlRow,
    )]
    #[diesel(sql_type = MoodSql)]
    pub(crate) enum Mood {
        Calm,
        Busy,
    }

    impl diesel::serialize::ToSql<MoodSql, diesel::pg::Pg> for Mood {
        fn to_sql<'b>(
            &'b self,
            out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
        ) -> diesel::serialize::Result {
            use std::io::Write;
            out.write_all(match self {
                Mood::Calm => b"calm",
                Mood::Busy => b"busy",
            })?;
            Ok(diesel::serialize::IsNull::No)
        }
    }

    impl diesel::deserialize::FromSql<MoodSql, diesel::pg::Pg> for Mood {
        fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
            match bytes.as_bytes() {
                b"calm" => Ok(Mood::Calm),
                b"busy" => Ok(Mood::Busy),
                _ => Err("unknown mood".into()),
            }
        }
    }

    diesel::table! {
        use diesel::sql_types::*;
        use super::MoodSql;
        flight_moods (tenant_id, id) {
            tenant_id -> Uuid,
            id -> BigInt,
            mood -> MoodSql,
        }
    }

    #[derive(diesel::Insertable, tenant_db::TenantValues)]
    #[diesel(table_name = flight_moods)]
    pub(crate) struct NewMood {
        pub(crate) id: i64,
        pub(crate) mood: Mood,
    }

    #[derive(Debug, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
    #[diesel(table_name = flight_moods)]
    pub(crate) struct MoodRow {
        pub(crate) tenant_id: uuid::Uuid,
        pub(crate) id: i64,
        pub(crate) mood: Mood,
    }
}

#[tokio::test]
async fn a_statement_that_binds_a_custom_type_is_awaited_before_commit() {
    use moods::*;
    app_url().await;
    let mut owner = owner().await;
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242003);
             DO $$ BEGIN CREATE TYPE flight_mood AS ENUM ('calm', 'busy');
             EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             CREATE TABLE IF NOT EXISTS flight_moods (tenant_id uuid NOT NULL, id bigint NOT NULL,
                 mood flight_mood NOT NULL, PRIMARY KEY (tenant_id, id));
             {}
             GRANT SELECT ON flight_moods TO {app};
             {}
             SELECT pg_advisory_unlock(4242003);",
            tenant_db::rls::migration_sql::<flight_moods::table>().unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(
                tenant_db_tests::APP_ROLE,
                "\"flight_moods\""
            )
            .unwrap(),
            app = tenant_db_tests::APP_ROLE,
        ))
        .await
        .unwrap();
    let a = new_tenant();
    for id in 0..3 {
        // A new connection each time: its type cache is empty, so the type is looked up first.
        let db = fresh_db().await;
        db.single(a, async |mut tx| {
            let s = tx.scope();
            s.insert(flight_moods::table)
                .values(NewMood {
                    id,
                    mood: Mood::Busy,
                })
                .execute(&mut tx)
                .await
                .map_err(Error::from)
        })
        .await
        .unwrap();
        let rows: Vec<MoodRow> = db
            .single(a, async |mut tx| {
                let s = tx.scope();
                s.query(flight_moods::table)
                    .filter(flight_moods::mood.eq(Mood::Busy))
                    .select(MoodRow::as_select())
                    .load(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await
            .unwrap();
        assert_eq!(rows.len() as i64, id + 1, "{rows:?}");
        assert!(
            rows.iter().all(|r| r.mood == Mood::Busy
                && r.id <= id
                && r.tenant_id.to_string() == a.id().to_string()),
            "{rows:?}"
        );
    }
}

#[tokio::test]
async fn a_commit_that_fails_is_an_error() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let mut owner = owner().await;
    // A check deferred to COMMIT: the insert succeeds, its COMMIT fails.
    owner
        .batch_execute(
            "CREATE OR REPLACE FUNCTION flight_test_fail_at_commit() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
             DROP TRIGGER IF EXISTS flight_test_fail_at_commit ON customers;
             CREATE CONSTRAINT TRIGGER flight_test_fail_at_commit AFTER INSERT ON customers
                 DEFERRABLE INITIALLY DEFERRED
                 FOR EACH ROW WHEN (NEW.name = 'tenant-db: fail at commit')
                 EXECUTE FUNCTION flight_test_fail_at_commit();",
        )
        .await
        .unwrap();
    let before = tenant_db::telemetry::commits_in_flight();
    let outcome = db
        .single(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(700, "tenant-db: fail at commit"))
                .execute(&mut tx)
                .await
                .map_err(Error::from)
        })
        .await;
    let e = outcome.expect_err("a failed COMMIT was reported as success");
    assert!(e.to_string().contains("refused at commit"), "{e}");
    assert_eq!(name_of(a, 700).await, None);
    // A closure that swallows the error does not turn it into success.
    let outcome = db
        .single(a, async |mut tx| {
            let s = tx.scope();
            let _ = s
                .insert(customers::table)
                .values(new_customer(702, "tenant-db: fail at commit"))
                .execute(&mut tx)
                .await;
            Ok::<_, Error>(())
        })
        .await;
    assert!(
        matches!(outcome, Err(Error::NotCommitted(_))),
        "{outcome:?}"
    );
    assert_eq!(name_of(a, 702).await, None);
    // A transaction that committed in its flight is counted.
    db.single(a, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(new_customer(701, "counted"))
            .execute(&mut tx)
            .await
            .map_err(Error::from)
    })
    .await
    .unwrap();
    assert!(tenant_db::telemetry::commits_in_flight() > before);
}

/// A statement whose error the closure swallows aborts the transaction; a plain `COMMIT` would
/// then roll it back without an error. The transaction must not report `Ok`.
#[tokio::test]
async fn a_swallowed_error_is_not_reported_committed() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let outcome = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(800, "should not land"))
                .execute(&mut tx)
                .await?;
            let duplicate = s
                .insert(customers::table)
                .values(new_customer(1, "duplicate key"))
                .execute(&mut tx)
                .await;
            assert!(duplicate.is_err());
            Ok::<_, Error>(())
        })
        .await;
    assert!(
        matches!(outcome, Err(Error::NotCommitted(_))),
        "{outcome:?}"
    );
    assert_eq!(name_of(a, 800).await, None);
    // A savepoint the closure rolls back to (the admin scope does this) keeps the rest.
    db.transaction(a, async |mut tx| {
        tx.unscoped_execute(diesel::sql_query("SAVEPOINT s"))
            .await?;
        let s = tx.scope();
        let _ = s
            .insert(customers::table)
            .values(new_customer(1, "duplicate key"))
            .execute(&mut tx)
            .await;
        tx.unscoped_execute(diesel::sql_query("ROLLBACK TO SAVEPOINT s"))
            .await?;
        s.insert(customers::table)
            .values(new_customer(801, "kept"))
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(name_of(a, 801).await.as_deref(), Some("kept"));
    let after = state(&pool_of_one(&app_url().await)).await;
    assert!(clean(&after), "{after:?}");
}

/// The last statement's error can be the client's (no row for `first`): the statement ran and
/// the COMMIT behind it committed, so the transaction is not reported as rolled back.
#[tokio::test]
async fn a_last_read_that_finds_nothing_still_commits() {
    let db = fresh_db().await;
    let a = new_tenant();
    seed(&db, a, "a").await;
    let found = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(new_customer(810, "written"))
                .execute(&mut tx)
                .await?;
            let none: Option<String> = s
                .query(customers::table)
                .filter(customers::id.eq(9999))
                .select(customers::name)
                .first(tx.last())
                .await
                .optional()?;
            Ok::<_, Error>(none)
        })
        .await
        .unwrap();
    assert_eq!(found, None);
    assert_eq!(name_of(a, 810).await.as_deref(), Some("written"));
}

/// A stream marked last: its rows are read after the statement's future is done, so COMMIT
/// must not wait for them (it would wait behind rows nobody reads).
#[tokio::test]
async fn a_last_stream_of_many_rows_is_read_to_its_end() {
    use futures_util::StreamExt;
    let db = fresh_db().await;
    let a = new_tenant();
    let big = "x".repeat(200);
    db.transaction(a, async |mut tx| {
        let s = tx.scope();
        let rows: Vec<NewCustomer> = (1..=15_000).map(|i| new_customer(i, &big)).collect();
        s.insert(customers::table)
            .values(rows)
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        db.transaction(a, async |mut tx| {
            let s = tx.scope();
            let mut rows = s
                .query(customers::table)
                .select(customers::name)
                .load_stream::<String>(tx.last())
                .await?;
            let mut n = 0;
            while let Some(row) = rows.next().await {
                row?;
                n += 1;
            }
            Ok::<_, Error>(n)
        }),
    )
    .await
    .expect("the stream hung")
    .unwrap();
    assert_eq!(read, 15_000);
}
