//! Faults inside a tenant transaction: the future dropped at every await point (by poll
//! count, by timeout, by aborting its task) and panics. After each, the next checkout of the
//! pool's only connection has no open transaction and no tenant setting, and the two writes of
//! the transaction are either both there (it committed) or both absent.

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::schema::*;

/// Polls the inner future at most `left` times, then gives up and drops it.
struct CancelAfterPolls<F> {
    inner: Pin<Box<F>>,
    left: usize,
}

impl<F: Future> Future for CancelAfterPolls<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.inner.as_mut().poll(cx).map(Some)
    }
}

/// The transaction under test: two inserts named `k{k}` for tenant `tenant`.
fn two_writes(
    db: &TenantDb,
    tenant: Tenant,
    k: i64,
) -> impl Future<Output = Result<(), Error>> + Send + '_ {
    db.transaction(tenant, async move |mut tx| {
        let s = tx.scope();
        for id in [1000 + 2 * k, 1001 + 2 * k] {
            s.insert(customers::table)
                .values(NewCustomer {
                    id,
                    name: format!("k{k}"),
                    email: None,
                })
                .execute(&mut tx)
                .await?;
        }
        Ok(())
    })
}

/// How many rows named `k{k}` tenant `tenant` has.
async fn rows_named(db: &TenantDb, tenant: Tenant, k: i64) -> i64 {
    db.transaction(tenant, async move |mut tx| {
        let s = tx.scope();
        s.query(customers::table)
            .filter(customers::name.eq(format!("k{k}")))
            .count()
            .get_result::<i64>(&mut tx)
            .await
            .map_err(Error::from)
    })
    .await
    .unwrap()
}

/// A pool of one connection, a tenant, and what the cancelled (or completed) transactions
/// left behind.
struct Harness {
    pool: diesel_async::pooled_connection::deadpool::Pool<diesel_async::AsyncPgConnection>,
    db: TenantDb,
    tenant: Tenant,
    pid: i32,
    completed: usize,
    cancelled: usize,
    /// Cancellations after which the pool had to replace the connection: the transaction was
    /// open when the future was dropped.
    replaced: usize,
}

impl Harness {
    async fn new() -> Self {
        let pool = pool_of_one(&app_url().await);
        let pid = state(&pool).await.pid;
        Harness {
            db: TenantDb::from_pool(pool.clone()),
            pool,
            tenant: new_tenant(),
            pid,
            completed: 0,
            cancelled: 0,
            replaced: 0,
        }
    }

    /// Checks the state after attempt `k` (`done`: the future ran to completion with Ok).
    async fn check(&mut self, k: i64, done: bool) {
        let after = state(&self.pool).await;
        assert!(clean(&after), "attempt {k}: next checkout {after:?}");
        let rows = rows_named(&self.db, self.tenant, k).await;
        if done {
            self.completed += 1;
            assert_eq!(rows, 2, "attempt {k}: completed but rows missing");
        } else {
            self.cancelled += 1;
            assert!(
                rows == 0 || rows == 2,
                "attempt {k}: half-applied ({rows} rows)"
            );
            if after.pid != self.pid {
                self.replaced += 1;
            }
        }
        self.pid = after.pid;
    }
}

#[tokio::test]
async fn dropped_at_every_await_point() {
    let mut h = Harness::new().await;
    let mut k = 0;
    // Poll budgets 1, 2, 3, … until the transaction completes within its budget.
    for polls in 1.. {
        k += 1;
        let outcome = CancelAfterPolls {
            inner: Box::pin(two_writes(&h.db, h.tenant, k)),
            left: polls,
        }
        .await;
        let done = matches!(outcome, Some(Ok(())));
        h.check(k, done).await;
        if done {
            break;
        }
        assert!(polls < 10_000, "the transaction never completed");
    }
    assert_eq!(h.completed, 1);
    assert!(
        h.replaced >= 3,
        "the sweep must drop the future inside the transaction (after BEGIN, between the \
         writes, during COMMIT); only {} of {} cancellations did",
        h.replaced,
        h.cancelled
    );
}

#[tokio::test]
async fn cancelled_by_timeouts_and_aborted_tasks() {
    let mut h = Harness::new().await;
    let (db, tenant) = (h.db.clone(), h.tenant);
    let mut k = 10_000;
    // Deadlines from 0 to 4 ms in 100 µs steps, by timeout and by aborting a spawned task.
    for step in 0..40_u64 {
        let deadline = Duration::from_micros(step * 100);
        k += 1;
        let done = matches!(
            tokio::time::timeout(deadline, two_writes(&db, tenant, k)).await,
            Ok(Ok(()))
        );
        h.check(k, done).await;

        k += 1;
        let db2 = db.clone();
        let task = tokio::spawn(async move { two_writes(&db2, tenant, k).await });
        tokio::time::sleep(deadline).await;
        task.abort();
        let done = matches!(task.await, Ok(Ok(())));
        h.check(k, done).await;
    }
    assert_eq!(h.completed + h.cancelled, 80);
}

#[tokio::test]
async fn panics_roll_back_and_leave_the_pool_clean() {
    let h = Harness::new().await;
    let (pool, db, tenant) = (&h.pool, h.db.clone(), h.tenant);
    // Panic before any write, after one write, and after both.
    for (k, writes_before_panic) in [(20_001_i64, 0), (20_002, 1), (20_003, 2)] {
        let db2 = db.clone();
        let joined = tokio::spawn(async move {
            let _: Result<(), Error> = db2
                .transaction(tenant, async move |mut tx| {
                    let s = tx.scope();
                    for id in (0..writes_before_panic).map(|i| 3 * k + i) {
                        s.insert(customers::table)
                            .values(NewCustomer {
                                id,
                                name: format!("k{k}"),
                                email: None,
                            })
                            .execute(&mut tx)
                            .await?;
                    }
                    panic!("boom after {writes_before_panic} writes");
                })
                .await;
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        let after = state(pool).await;
        assert!(clean(&after), "after a panic: {after:?}");
        assert_eq!(rows_named(&db, tenant, k).await, 0, "rolled back");
    }
}
