//! Attacks on the tenant the database trusts: statements inside a tenant transaction that try
//! to switch the tenant RLS enforces (`set_config` through a declared SQL function or an
//! escape hatch, `SET LOCAL`, replaying another transaction's seal, entering again, ending the
//! transaction early), to reach the seal's key, or to leave a changed session behind for the
//! next transaction on the pooled connection.
//!
//! They run as the application role (RLS is the only wall for the `unscoped_*` escape
//! hatches); the scoped one runs as a `BYPASSRLS` role too. Each must end with no row of
//! another tenant visible, and no connection serving the next transaction in the state the
//! attack left it.

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel::sql_types::{Bool, Text};
use tenant_db::{Error, Tenant, TenantDb};
use tenant_db_tests::schema::*;

diesel::define_sql_function! {
    /// PostgreSQL's `set_config`, declared the way any user can declare a function.
    fn set_config(name: Text, value: Text, is_local: Bool) -> Text;
}

/// What happened to a statement run in a transaction that always rolls back (its fields are
/// read through `Debug`, in failure messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Attempt {
    /// The statement ran, touching this many rows.
    Allowed(usize),
    /// The database refused it.
    Refused(Error),
    /// The transaction itself failed.
    Setup(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Setup(e)
    }
}

fn only(t: Tenant) -> Vec<String> {
    vec![t.to_string()]
}

#[tokio::test]
async fn set_config_in_a_scoped_query_is_refused_before_it_is_sent() {
    for db in [db_with_rls(2).await, db_without_rls(2).await] {
        let (a, b) = two_tenants(&db).await;
        for is_local in [true, false] {
            let outcome = db
                .transaction(a, async |mut tx| {
                    let s = tx.scope();
                    let _: Vec<String> = s
                        .query(customers::table)
                        .select(set_config("app.current_tenant", b.to_string(), is_local))
                        .limit(1)
                        .load(&mut tx)
                        .await?;
                    visible(&mut tx).await
                })
                .await;
            match outcome {
                Err(Error::Refused(refused)) => assert_eq!(
                    refused.reason,
                    tenant_db::guard::Refusal::SessionFunction("set_config")
                ),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn set_config_through_the_escape_hatch_does_not_switch_the_tenant() {
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let seen = db
        .transaction(a, async |mut tx| {
            tx.unscoped_load::<_, Seen>(diesel::sql_query(format!(
                "SELECT set_config('app.current_tenant', '{b}', true) AS tenant"
            )))
            .await?;
            visible(&mut tx).await
        })
        .await
        .unwrap();
    assert_eq!(seen, only(a), "the forged tenant was trusted");
}

#[tokio::test]
async fn a_session_level_tenant_does_not_reach_the_next_transaction() {
    let pool = pool_of_one(&app_url().await);
    let db = TenantDb::from_pool(pool.clone());
    let (a, b) = two_tenants(&db).await;
    let c = new_tenant();
    seed(&db, c, "c").await;
    let before = state(&pool).await.pid;
    db.transaction(a, async |mut tx| {
        Ok::<_, Error>(
            tx.unscoped_load::<_, Seen>(diesel::sql_query(format!(
                "SELECT set_config('app.current_tenant', '{b}', false) AS tenant"
            )))
            .await?,
        )
    })
    .await
    .unwrap();
    // The changed connection was closed, not pooled.
    let after = state(&pool).await;
    assert_ne!(
        after.pid, before,
        "the changed connection went back to the pool"
    );
    assert!(clean(&after));
    let seen = db
        .transaction(c, async |mut tx| visible(&mut tx).await)
        .await
        .unwrap();
    assert_eq!(seen, only(c));
}

#[tokio::test]
async fn set_local_through_the_escape_hatch_does_not_switch_the_tenant() {
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let seen = db
        .transaction(a, async |mut tx| {
            tx.unscoped_execute(diesel::sql_query(format!(
                "SET LOCAL app.current_tenant = '{b}'"
            )))
            .await?;
            visible(&mut tx).await
        })
        .await
        .unwrap();
    assert_eq!(seen, only(a), "the forged tenant was trusted");
}

#[derive(diesel::QueryableByName, Debug, Clone)]
struct Setting {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    setting: String,
}

#[tokio::test]
async fn replaying_every_setting_another_transaction_can_see_does_not_switch_the_tenant() {
    // Every setting B's transaction can list (the tenant's included), replayed inside A's.
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let listings = [
        "SELECT name, setting FROM pg_settings WHERE context = 'user' AND name NOT LIKE 'transaction_%'",
        "SELECT name, setting FROM pg_show_all_settings() WHERE context = 'user' AND name NOT LIKE 'transaction_%'",
    ];
    let mut captured: Vec<Setting> = Vec::new();
    for sql in listings {
        let rows: Vec<Setting> = db
            .transaction(b, async |mut tx| {
                Ok::<_, Error>(tx.unscoped_load(diesel::sql_query(sql)).await?)
            })
            .await
            .unwrap();
        captured.extend(rows);
    }
    // The secret setting is never listed (custom settings are not); the plain one is known.
    assert!(
        captured.iter().all(|s| !s.name.starts_with("tenant_db.")),
        "a tenant_db setting was listed"
    );
    let mut user_settable = captured;
    user_settable.push(Setting {
        name: tenant_db::TENANT_SETTING.into(),
        setting: b.to_string(),
    });
    let seen = db
        .transaction(a, async |mut tx| {
            for s in &user_settable {
                tx.unscoped_load::<_, Seen>(
                    diesel::sql_query("SELECT set_config($1, $2, true) AS tenant")
                        .bind::<Text, _>(s.name.clone())
                        .bind::<Text, _>(s.setting.clone()),
                )
                .await?;
            }
            visible(&mut tx).await
        })
        .await
        .unwrap();
    assert_eq!(seen, only(a), "a replayed setting was trusted");
}

#[tokio::test]
async fn entering_again_inside_the_transaction_is_refused() {
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let outcome = db
        .transaction(a, async |mut tx| {
            tx.unscoped_execute(diesel::sql_query(format!("SELECT tenant_db.enter('{b}')")))
                .await?;
            visible(&mut tx).await
        })
        .await;
    assert!(outcome.is_err(), "a second enter was accepted: {outcome:?}");
}

#[tokio::test]
async fn the_secret_name_and_the_functions_are_out_of_reach() {
    let db = db_with_rls(2).await;
    let (a, _b) = two_tenants(&db).await;
    for sql in [
        "SELECT pg_sequence_last_value('tenant_db.seal_name'::regclass)::text AS tenant",
        "SELECT last_value::text AS tenant FROM tenant_db.seal_name",
        "SELECT setval('tenant_db.seal_name', 1)::text AS tenant",
        "SELECT nextval('tenant_db.seal_name')::text AS tenant",
        "ALTER SEQUENCE tenant_db.seal_name RESTART",
        "CREATE OR REPLACE FUNCTION tenant_db.current_tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$",
        "CREATE FUNCTION tenant_db.peek() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$",
    ] {
        let outcome = db
            .transaction(a, async |mut tx| {
                Ok::<_, Error>(tx.unscoped_execute(diesel::sql_query(sql)).await?)
            })
            .await;
        assert!(outcome.is_err(), "{sql} was allowed: {outcome:?}");
    }
    // The catalog view of sequences shows the application role no value.
    let shown: Vec<Seen> = db
        .transaction(a, async |mut tx| {
            Ok::<_, Error>(
                tx.unscoped_load(diesel::sql_query(
                    "SELECT coalesce(last_value::text, '') AS tenant FROM pg_sequences
                     WHERE schemaname = 'tenant_db' AND sequencename = 'seal_name'",
                ))
                .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].tenant, "");
}

#[tokio::test]
async fn ending_the_transaction_early_leaves_no_tenant() {
    // `COMMIT` through the escape hatch: what follows runs outside tenant-db's transaction.
    // Neither a `SET LOCAL` there nor an `enter` in an implicit transaction is trusted.
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let outcome = db
        .transaction(a, async |mut tx| {
            tx.unscoped_execute(diesel::sql_query("COMMIT")).await?;
            #[derive(diesel::QueryableByName, Debug)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            // One statement, its own implicit transaction: enter, then read.
            let same_statement: Vec<Count> = tx
                .unscoped_load(diesel::sql_query(format!(
                    "SELECT (SELECT count(*) FROM customers) AS n, tenant_db.enter('{b}') AS x"
                )))
                .await?;
            tx.unscoped_execute(diesel::sql_query("BEGIN")).await?;
            let _ = tx
                .unscoped_execute(diesel::sql_query(format!(
                    "SET LOCAL app.current_tenant = '{b}'"
                )))
                .await;
            Ok::<_, Error>((same_statement, visible(&mut tx).await?))
        })
        .await;
    if let Ok((same_statement, later)) = outcome {
        assert!(
            same_statement.iter().all(|c| c.n == 0),
            "{same_statement:?}"
        );
        assert!(later.is_empty(), "saw {later:?}");
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn a_connection_that_ran_an_escape_hatch_is_closed() {
    let pool = pool_of_one(&app_url().await);
    let db = TenantDb::from_pool(pool.clone());
    let a = new_tenant();
    // Session state of every kind, some of which no query can see (the seed of `random()`),
    // and a statement that changes nothing: each connection is closed all the same.
    for sql in [
        "PREPARE tenant_db_attack AS SELECT 1",
        "SET search_path = pg_catalog",
        "LISTEN tenant_db_attack",
        "DECLARE tenant_db_attack CURSOR WITH HOLD FOR SELECT 1",
        "SELECT pg_advisory_lock(4711)",
        "SELECT set_config('myapp.last_customer', 'secret-of-a', false)",
        "SELECT setseed(0.5)",
        "DEALLOCATE ALL",
        "SELECT 1",
    ] {
        let before = state(&pool).await.pid;
        db.transaction(a, async |mut tx| {
            Ok::<_, Error>(tx.unscoped_execute(diesel::sql_query(sql)).await?)
        })
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let after = state(&pool).await;
        assert_ne!(
            after.pid, before,
            "{sql}: the connection went back to the pool"
        );
    }
    // What the first connections left is gone: the lock was released with its backend, and
    // the custom setting is unset on the new one.
    let left: Vec<Count> = db
        .transaction(a, async |mut tx| {
            Ok::<_, Error>(
                tx.unscoped_load(diesel::sql_query(
                    "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4711)
                          + (CASE WHEN coalesce(current_setting('myapp.last_customer', true), '') = ''
                                  THEN 0 ELSE 1 END) AS n",
                ))
                .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(left[0].n, 0);
    // A transaction of scoped statements keeps its connection.
    let before = state(&pool).await.pid;
    db.transaction(a, async |mut tx| {
        let s = tx.scope();
        let names: Vec<String> = s
            .query(customers::table)
            .select(customers::name)
            .load(&mut tx)
            .await?;
        Ok::<_, Error>(names)
    })
    .await
    .unwrap();
    assert_eq!(state(&pool).await.pid, before);
}

#[tokio::test]
async fn the_application_role_cannot_shadow_tables_or_switch_roles() {
    let db = db_with_rls(2).await;
    let a = new_tenant();
    for sql in [
        "CREATE TEMP TABLE customers (tenant_id uuid, id bigint, name text, email text)",
        "SET ROLE tenant_db_owner",
        "CREATE TABLE public.shadow (x int)",
        "CREATE FUNCTION public.shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ] {
        let outcome: Result<(), Attempt> = db
            .transaction(a, async |mut tx| {
                Err(match tx.unscoped_execute(diesel::sql_query(sql)).await {
                    Ok(rows) => Attempt::Allowed(rows),
                    Err(e) => Attempt::Refused(e.into()),
                })
            })
            .await;
        match outcome {
            Err(Attempt::Refused(_)) => {}
            other => panic!("{sql} was allowed: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_application_role_cannot_write_global_tables() {
    let db = db_with_rls(2).await;
    let a = new_tenant();
    for sql in [
        "INSERT INTO countries VALUES ('XX', 'Nowhere')",
        "UPDATE countries SET name = 'Renamed' WHERE code = 'FR'",
        "DELETE FROM countries WHERE code = 'JP'",
    ] {
        // The transaction always rolls back, so that a write that wrongly succeeds leaves the
        // shared data as it was.
        let outcome: Result<(), Attempt> = db
            .transaction(a, async |mut tx| {
                Err(match tx.unscoped_execute(diesel::sql_query(sql)).await {
                    Ok(rows) => Attempt::Allowed(rows),
                    Err(e) => Attempt::Refused(e.into()),
                })
            })
            .await;
        match outcome {
            Err(Attempt::Refused(_)) => {}
            other => panic!("{sql} was allowed: {other:?}"),
        }
    }
}
