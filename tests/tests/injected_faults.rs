//! Faults injected at a chosen message by a proxy between the pool and PostgreSQL
//! ([`tenant_db_tests::fault`]), so that each path is taken every run, not when a race lets it:
//! a begin that fails on the server, a connection cut at the begin and in the middle of a
//! transaction, a connection that died while idle (with and without `verify_on_checkout`). And,
//! on the error path, the rollback that releases the transaction's locks before the call
//! returns.

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::fault::{Fault, Proxy};
use tenant_db_tests::schema::*;

/// A proxy and a pool of one connection through it, as the application role.
async fn through_proxy(verify_on_checkout: bool) -> (Proxy, TenantDb) {
    app_url().await;
    let proxy = Proxy::start().await.unwrap();
    let db = TenantDb::builder(proxy.url_for(tenant_db_tests::APP_ROLE, DATABASE))
        .max_size(1)
        .verify_on_checkout(verify_on_checkout)
        .build()
        .unwrap();
    (proxy, db)
}

/// How many customers `tenant` sees, through `db`.
async fn customers_of(db: &TenantDb, tenant: Tenant) -> Result<i64, Error> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(customers::table)
            .count()
            .get_result::<i64>(&mut tx)
            .await?)
    })
    .await
}

#[tokio::test]
async fn a_begin_that_fails_on_the_server_is_an_error_when_the_closure_sends_nothing() {
    let (proxy, db) = through_proxy(false).await;
    let tenant = new_tenant();
    // Warm the connection up: its set-up statements go through untouched.
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    // The server receives a call to a function that does not exist: the transaction is
    // aborted from its first statement, and a COMMIT would end it as a rollback.
    proxy.on(
        "tenant_db.enter(",
        Fault::Rewrite(b"tenant_db.nothing(".to_vec()),
    );
    let outcome = db
        .transaction(tenant, async |_tx| Ok::<_, Error>("committed"))
        .await;
    assert_eq!(proxy.fired(), 1, "the fault was applied");
    assert!(outcome.is_err(), "a failed begin returned {outcome:?}");
    // The same connection (or its replacement) serves the next transaction.
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    // A begin message the server cannot parse runs nothing: no transaction is open, so a
    // COMMIT would succeed (with a warning). The failed begin alone says it did not commit.
    proxy.on("BEGIN;", Fault::Rewrite(b"BEGIN".to_vec()));
    let outcome = db
        .transaction(tenant, async |_tx| Ok::<_, Error>("committed"))
        .await;
    assert_eq!(proxy.fired(), 2, "the fault was applied");
    assert!(outcome.is_err(), "an unparsable begin returned {outcome:?}");
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
}

#[tokio::test]
async fn a_connection_cut_at_the_begin_is_an_error_and_is_replaced() {
    let (proxy, db) = through_proxy(false).await;
    let tenant = new_tenant();
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    let before = proxy.accepted();
    proxy.on("tenant_db.enter(", Fault::Cut);
    let outcome = db
        .transaction(tenant, async |_tx| Ok::<_, Error>("committed"))
        .await;
    assert_eq!(proxy.fired(), 1);
    assert!(outcome.is_err(), "a cut begin returned {outcome:?}");
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    assert_eq!(
        proxy.accepted(),
        before + 1,
        "the dead connection was replaced"
    );
}

const MARKER: &str = "cut-mid-flight-marker";

#[tokio::test]
async fn a_connection_cut_mid_flight_commits_nothing() {
    let (proxy, db) = through_proxy(false).await;
    let tenant = new_tenant();
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    // The second insert never reaches the server.
    // Both inserts carry the marker in their parameters (the statement is prepared once).
    proxy.on(MARKER, Fault::Delay(std::time::Duration::ZERO));
    proxy.on(MARKER, Fault::Cut);
    let outcome = db
        .transaction(tenant, async |mut tx| {
            let s = tx.scope();
            for id in [1, 2] {
                s.insert(customers::table)
                    .values(NewCustomer {
                        id,
                        name: MARKER.into(),
                        email: None,
                    })
                    .execute(&mut tx)
                    .await?;
            }
            Ok::<_, Error>(())
        })
        .await;
    assert_eq!(
        proxy.fired(),
        2,
        "the first insert went through, the second was cut"
    );
    assert!(outcome.is_err(), "{outcome:?}");
    // Nothing of it committed: the first insert went with the transaction.
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
}

#[tokio::test]
async fn a_connection_that_died_idle_fails_one_request_without_verification() {
    let (proxy, db) = through_proxy(false).await;
    let tenant = new_tenant();
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    proxy.sever_all();
    // The client is not told: the proxy keeps its side open until it sends something.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        customers_of(&db, tenant).await.is_err(),
        "without verification the dead connection serves the next request"
    );
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    assert_eq!(
        proxy.accepted(),
        2,
        "the dead connection was replaced after failing"
    );
}

#[tokio::test]
async fn a_connection_that_died_idle_is_replaced_at_checkout_with_verification() {
    let (proxy, db) = through_proxy(true).await;
    let tenant = new_tenant();
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    let before = proxy.accepted();
    proxy.sever_all();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(customers_of(&db, tenant).await.unwrap(), 0);
    assert_eq!(
        proxy.accepted(),
        before + 1,
        "the checkout ping replaced it"
    );
}

/// A connection to the provisioned database as the superuser.
async fn admin() -> diesel_async::AsyncPgConnection {
    diesel_async::AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(DATABASE))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_error_rolls_back_before_the_call_returns_and_releases_its_locks() {
    let db = db_with_rls(1).await;
    let (a, _) = two_tenants(&db).await;
    let outcome = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.eq(1))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "locked"
                ))
                .execute(&mut tx)
                .await?;
            Err::<(), _>(Error::Query(diesel::result::Error::NotFound))
        })
        .await;
    assert!(
        matches!(outcome, Err(Error::Query(diesel::result::Error::NotFound))),
        "{outcome:?}"
    );
    // The pool still holds the connection: had the transaction stayed open, its row lock
    // would be held, and the update below would fail at once.
    let mut admin = admin().await;
    let tenant = a.id().to_string();
    admin
        .batch_execute(&format!(
            "SET lock_timeout = '100ms';
             BEGIN;
             SELECT 1 FROM customers WHERE tenant_id = '{tenant}' AND id = 1 FOR UPDATE;
             ROLLBACK;"
        ))
        .await
        .unwrap();
    let names = customer_names(&db, a, 1).await;
    assert_eq!(names, ["c1"], "the update was rolled back");
}
