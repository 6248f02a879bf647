//! One flight: a transaction's last statement goes out with its `COMMIT`, without waiting for
//! the statement's reply in between.
//!
//! A transaction already opens in one flight: `BEGIN; SELECT tenant_db.enter(…)` is one
//! message, and the first statement follows it on the same connection before the reply (see
//! [`TenantDb::transaction`](crate::TenantDb::transaction)). Its end costs another round trip
//! when the closure's last statement is awaited and only then `COMMIT` is sent. Mark the last
//! statement ([`TenantTx::last`](crate::TenantTx::last), or open the transaction with
//! [`TenantDb::single`](crate::TenantDb::single)) and `COMMIT` goes out right behind it:
//! a transaction of one statement is one round trip.
//!
//! # Why `COMMIT` cannot overtake the statement
//!
//! The danger is a `COMMIT` that reaches the server before the statement: the statement would
//! then run outside its transaction, without its tenant. On one connection the server runs
//! messages in the order they are written, so what matters is the order in which they are
//! written. diesel-async writes a prepared statement's `Bind`/`Execute` only after taking the
//! connection's statement cache (an async mutex that serves waiters first come, first served)
//! and either finding the statement there or preparing it (`Parse`, one round trip, with the
//! cache still held); it writes the `Bind`/`Execute` in the same poll that releases the cache.
//! The `COMMIT` is itself such a statement, made and first polled after the last statement's
//! first poll: it queues for the cache behind it, on a hit and on a miss alike, and so is
//! written after it. Two paths write something before taking the cache, and both are kept out:
//!
//! - a statement that binds a type diesel-async must look up first (a custom enum, an
//!   extension's type) sends that lookup, then waits for the cache: such a statement is
//!   awaited before `COMMIT` is sent ([`binds_builtin_types`]);
//! - other statements of the transaction still in flight (futures joined with the last one)
//!   could be written after the `COMMIT`: the last statement goes out with `COMMIT` only if it
//!   is the only statement of the transaction not yet finished, and no statement may be made
//!   after it (it fails with a refusal, and sends nothing).
//!
//! A streamed read (`load_stream`) never takes `COMMIT` along: its rows are read after its
//! future is done, and `COMMIT`'s reply would wait behind them; it is sent at the end, as usual.
//! An error of the client's on the last statement (no row for `first`, a row it cannot decode)
//! does not undo the `COMMIT` behind it: the statement ran, and the transaction committed.
//!
//! If the `BEGIN` message failed (the tenant was refused), the transaction is aborted: the
//! statement fails and the `COMMIT` ends the transaction as a rollback. If the connection dies
//! in the flight, every part of it fails and the pool discards the connection. If the
//! statement's future is dropped after the flight went out, nobody knows whether it committed:
//! the transaction returns [`Error::NotCommitted`](crate::Error::NotCommitted) and the
//! connection is closed.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::pg::{PgMetadataLookup, PgTypeMetadata};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel_async::AsyncPgConnection;
use futures_util::future::{BoxFuture, Either, Ready, ready};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

/// How a tenant transaction ends (see [`TxState::end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The transaction is open; the driver commits or rolls back.
    Open,
    /// The last statement and `COMMIT` went out; their outcome is not known (yet).
    InFlight,
    /// `COMMIT` went out with the last statement and succeeded.
    Committed,
    /// The last statement failed; the `COMMIT` behind it ended the transaction as a rollback.
    RolledBack,
    /// The `COMMIT` failed: the transaction is over, the connection's state is not trusted.
    Failed,
}

impl End {
    fn from_u8(v: u8) -> End {
        match v {
            0 => End::Open,
            1 => End::InFlight,
            2 => End::Committed,
            3 => End::RolledBack,
            _ => End::Failed,
        }
    }
}

/// The state one tenant transaction shares with its statements.
#[derive(Debug, Default)]
pub(crate) struct TxState {
    /// Set by the escape hatches: their statements may change the session.
    unscoped: AtomicBool,
    /// The next statement is the transaction's last.
    last: AtomicBool,
    /// The last statement was made: no other may follow.
    closed: AtomicBool,
    /// Statements made and neither finished nor dropped.
    pending: AtomicUsize,
    /// An [`End`], as a number.
    end: AtomicU8,
    /// `COMMIT` may not go out with a statement: the transaction's owner runs statements of its
    /// own after the closure (the admin scope).
    hold: AtomicBool,
    /// Rows the transaction's loads returned.
    rows: std::sync::atomic::AtomicU64,
}

impl TxState {
    /// A transaction whose first statement is its last ([`TenantDb::single`]).
    ///
    /// [`TenantDb::single`]: crate::TenantDb::single
    pub(crate) fn single() -> Self {
        let state = TxState::default();
        state.last.store(true, Ordering::SeqCst);
        state
    }

    pub(crate) fn mark_unscoped(&self) {
        self.unscoped.store(true, Ordering::SeqCst);
    }

    pub(crate) fn unscoped(&self) -> bool {
        self.unscoped.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_last(&self) {
        self.last.store(true, Ordering::SeqCst);
    }

    pub(crate) fn hold_commit(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Rows the transaction's loads returned so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    pub(crate) fn end(&self) -> End {
        End::from_u8(self.end.load(Ordering::SeqCst))
    }

    fn set_end(&self, end: End) {
        self.end.store(end as u8, Ordering::SeqCst);
    }
}

/// Why a statement was refused after the transaction's last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this statement follows the transaction's last statement (`TenantTx::last`, `TenantDb::single`); it was not sent"
)]
pub struct AfterLast;

/// `COMMIT`, as a prepared statement (so that it queues for the statement cache behind the
/// last statement; see the module docs).
#[derive(Debug, Clone, Copy, QueryId)]
struct Commit;

impl QueryFragment<Pg> for Commit {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("COMMIT");
        Ok(())
    }
}

/// Prepares (and caches) the `COMMIT` statement on a new connection: executed outside a
/// transaction it only warns.
pub(crate) async fn prepare_commit(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel_async::RunQueryDsl::execute(Commit, conn)
        .await
        .map(drop)
}

/// A type lookup that only notes that one was asked for.
struct NoteLookups(bool);

impl PgMetadataLookup for NoteLookups {
    fn lookup_type(&mut self, _type_name: &str, _schema: Option<&str>) -> PgTypeMetadata {
        self.0 = true;
        PgTypeMetadata::new(0, 0)
    }
}

/// Whether every value `query` binds has a built-in type, so that diesel-async sends nothing
/// (no type lookup) before the statement itself. A query whose binds cannot be collected counts
/// as not built-in.
pub(crate) fn binds_builtin_types(query: &dyn QueryFragment<Pg>) -> bool {
    let mut binds = RawBytesBindCollector::<Pg>::new();
    let mut lookups = NoteLookups(false);
    query.collect_binds(&mut binds, &mut lookups, &Pg).is_ok() && !lookups.0
}

/// Counts a statement as pending for as long as it lives unfinished.
struct Pending<'t>(&'t TxState);

impl<'t> Pending<'t> {
    fn new(state: &'t TxState) -> Self {
        state.pending.fetch_add(1, Ordering::SeqCst);
        Pending(state)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A last statement's flight.
struct Last<'t, O> {
    conn: &'t AsyncPgConnection,
    state: &'t TxState,
    /// Whether `COMMIT` may go out with it (decided when it is made, rechecked at its first
    /// poll).
    eligible: bool,
    started: bool,
    commit: Option<BoxFuture<'t, QueryResult<usize>>>,
    committed: Option<QueryResult<usize>>,
    output: Option<O>,
}

pin_project_lite::pin_project! {
    /// The future of a scoped statement: the statement running (with `COMMIT` behind it when
    /// it is the transaction's last), or tenant-db's refusal to send it.
    #[must_use = "futures do nothing unless polled"]
    pub struct Guarded<'t, F: Future> {
        #[pin]
        inner: Either<Ready<F::Output>, F>,
        pending: Option<Pending<'t>>,
        last: Option<Last<'t, F::Output>>,
        // Counts the rows of the output into the transaction (loads of `Vec`s).
        rows: Option<fn(&F::Output) -> usize>,
    }
}

impl<F: Future> std::fmt::Debug for Guarded<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("last", &self.last.is_some())
            .finish_non_exhaustive()
    }
}

impl<'t, F, T> Guarded<'t, F>
where
    F: Future<Output = QueryResult<T>>,
{
    /// A statement that fails with `error` and sends nothing.
    pub(crate) fn refused(error: diesel::result::Error) -> Self {
        Guarded {
            inner: Either::Left(ready(Err(error))),
            pending: None,
            last: None,
            rows: None,
        }
    }

    /// `statement`, made by `run` on `conn` for the transaction `state` (refused after the
    /// last statement).
    pub(crate) fn new<Q: QueryFragment<Pg>>(
        state: &'t TxState,
        conn: &'t AsyncPgConnection,
        query: Q,
        run: impl FnOnce(Q) -> F,
    ) -> Self {
        if state.closed.load(Ordering::SeqCst) {
            return Guarded::refused(diesel::result::Error::QueryBuilderError(Box::new(
                AfterLast,
            )));
        }
        let last = state.last.swap(false, Ordering::SeqCst).then(|| {
            state.closed.store(true, Ordering::SeqCst);
            Last {
                conn,
                state,
                eligible: !state.hold.load(Ordering::SeqCst) && binds_builtin_types(&query),
                started: false,
                commit: None,
                committed: None,
                output: None,
            }
        });
        Guarded {
            pending: Some(Pending::new(state)),
            inner: Either::Right(run(query)),
            last,
            rows: None,
        }
    }

    /// Never sends `COMMIT` with this statement, even when it is the last: a stream's rows are
    /// read after the statement's future is done, and `COMMIT`'s reply waits behind them.
    pub(crate) fn without_flight(mut self) -> Self {
        if let Some(last) = self.last.as_mut() {
            last.eligible = false;
        }
        self
    }

    /// Counts the rows `rows` finds in the statement's output, for the usage metrics.
    pub(crate) fn counting(mut self, rows: fn(&F::Output) -> usize) -> Self {
        self.rows = Some(rows);
        self
    }
}

/// The rows of a load's output.
pub(crate) fn rows_of<U>(output: &QueryResult<Vec<U>>) -> usize {
    output.as_ref().map_or(0, Vec::len)
}

/// Adds the rows of a statement's `output` to its transaction's count.
fn count<O>(rows: Option<fn(&O) -> usize>, pending: &Option<Pending<'_>>, output: &O) {
    if let (Some(rows), Some(pending)) = (rows, pending) {
        pending
            .0
            .rows
            .fetch_add(rows(output) as u64, Ordering::Relaxed);
    }
}

impl<F, T> Future for Guarded<'_, F>
where
    F: Future<Output = QueryResult<T>>,
{
    type Output = QueryResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(last) = this.last.as_mut() else {
            let output = ready!(this.inner.poll(cx));
            count(*this.rows, this.pending, &output);
            *this.pending = None;
            return Poll::Ready(output);
        };
        if !last.started {
            last.started = true;
            if let Poll::Ready(output) = this.inner.as_mut().poll(cx) {
                // Finished before anything could follow it (a refusal, an error before
                // sending): the transaction stays open, the driver ends it.
                count(*this.rows, this.pending, &output);
                *this.pending = None;
                return Poll::Ready(output);
            }
            if last.eligible && last.state.pending.load(Ordering::SeqCst) == 1 {
                last.state.set_end(End::InFlight);
                let mut conn = last.conn;
                let mut commit = diesel_async::RunQueryDsl::execute(Commit, &mut conn);
                match commit.as_mut().poll(cx) {
                    Poll::Ready(done) => last.committed = Some(done),
                    Poll::Pending => last.commit = Some(commit),
                }
            }
        }
        if last.output.is_none()
            && let Poll::Ready(output) = this.inner.poll(cx)
        {
            last.output = Some(output);
        }
        if let Some(commit) = last.commit.as_mut()
            && let Poll::Ready(done) = commit.as_mut().poll(cx)
        {
            last.committed = Some(done);
            last.commit = None;
        }
        if last.commit.is_some() {
            return Poll::Pending;
        }
        let Some(output) = last.output.take() else {
            return Poll::Pending;
        };
        count(*this.rows, this.pending, &output);
        *this.pending = None;
        match (last.committed.take(), output) {
            // Not sent with COMMIT: the driver ends the transaction.
            (None, output) => Poll::Ready(output),
            (Some(Ok(_)), Ok(value)) => {
                last.state.set_end(End::Committed);
                Poll::Ready(Ok(value))
            }
            (Some(Err(e)), Ok(_)) => {
                last.state.set_end(End::Failed);
                Poll::Ready(Err(e))
            }
            // A database error aborted the transaction: the COMMIT behind it rolled back.
            (Some(Ok(_)), Err(e @ diesel::result::Error::DatabaseError(..))) => {
                last.state.set_end(End::RolledBack);
                Poll::Ready(Err(e))
            }
            // An error of the client's (no row for `first`, a row it cannot decode): the
            // statement ran and the COMMIT behind it committed.
            (Some(Ok(_)), Err(e)) => {
                last.state.set_end(End::Committed);
                Poll::Ready(Err(e))
            }
            (Some(Err(_)), Err(e)) => {
                last.state.set_end(End::Failed);
                Poll::Ready(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::binds_builtin_types;
    use diesel::{ExpressionMethods, IntoSql};

    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "mood"))]
    struct MoodSql;

    #[derive(Debug, diesel::expression::AsExpression)]
    #[diesel(sql_type = MoodSql)]
    struct Happy;

    impl diesel::serialize::ToSql<MoodSql, diesel::pg::Pg> for Happy {
        fn to_sql<'b>(
            &'b self,
            out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
        ) -> diesel::serialize::Result {
            use std::io::Write;
            out.write_all(b"happy")?;
            Ok(diesel::serialize::IsNull::No)
        }
    }

    #[test]
    fn a_custom_type_bind_is_not_builtin() {
        let builtin = diesel::select(7_i64.into_sql::<diesel::sql_types::BigInt>());
        assert!(binds_builtin_types(&builtin));
        let custom = diesel::select(Happy.into_sql::<MoodSql>().is_null());
        assert!(!binds_builtin_types(&custom));
    }
}
