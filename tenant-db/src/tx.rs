//! [`TenantDb`] (the pool) and [`TenantTx`] (one tenant transaction).

use crate::flight::{End, Guarded, TxState};
use crate::limits::{SharePolicy, Shares, Tiers};
use crate::run::{LoadRows, Loads, SqlKeyed};
use crate::scope::TenantScope;
use crate::usage::{Finished, Usage};
use crate::{Error, TenantId};
use deadpool::managed::Object;
use diesel::connection::CacheSize;
use diesel::connection::TransactionDepthChange;
use diesel::pg::Pg;
use diesel::query_builder::{AsQuery, QueryFragment};
use diesel_async::SimpleAsyncConnection;
use diesel_async::methods::LoadQuery;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager,
};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;
use tracing::Instrument;

/// The closure type [`TenantDb::transaction`] accepts: an async closure over a [`TenantTx`] whose
/// future can be named, so that it can be required to be `Send`.
///
/// `AsyncFnOnce` alone cannot say that its future is `Send` on stable Rust; this trait (the same
/// device diesel-async uses for its transactions) names the future through `FnOnce`. Any
/// `async |tx| { … }` closure implements it; you never implement it by hand.
pub trait TxFn<T, R>: AsyncFnOnce(T) -> R + FnOnce(T) -> <Self as TxFn<T, R>>::Fut {
    /// The future the closure returns.
    type Fut: Future<Output = R>;
}

impl<F, T, Fut, R> TxFn<T, R> for F
where
    F: AsyncFnOnce(T) -> R + FnOnce(T) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// A database handle: a deadpool pool of `AsyncPgConnection`s that runs tenant transactions.
///
/// It never hands out a connection: work happens inside [`TenantDb::transaction`].
#[derive(Clone)]
pub struct TenantDb {
    pool: Pool<AsyncPgConnection>,
    /// Each tenant's share of the pool, when tiers are configured.
    shares: Option<Arc<Shares>>,
    usage: Arc<Usage>,
}

impl std::fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("status", &self.pool.status())
            .finish()
    }
}

/// Settings for [`TenantDb`]; start with [`TenantDb::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `.build()`"]
pub struct TenantDbBuilder {
    url: String,
    max_size: usize,
    statement_cache: bool,
    verify_on_checkout: bool,
    tiers: Option<Tiers>,
    share_policy: SharePolicy,
    usage_window: Duration,
    labelled_tenants: usize,
}

impl TenantDbBuilder {
    /// At most `max_size` connections (default 10).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Whether connections cache prepared statements (default: yes). Turn it off behind a
    /// connection pooler in transaction mode that does not track prepared statements
    /// (PgBouncer before 1.21, or without `max_prepared_statements`): a named statement
    /// prepared on one server connection does not exist on the next.
    pub fn prepared_statement_cache(mut self, enabled: bool) -> Self {
        self.statement_cache = enabled;
        self
    }

    /// Whether to ping a connection (`SELECT 1`) each time it is checked out (default: no).
    /// The ping costs a round trip per transaction; without it, a connection that died while
    /// idle (server restart) fails the one request that gets it, and is then replaced.
    pub fn verify_on_checkout(mut self, verify: bool) -> Self {
        self.verify_on_checkout = verify;
        self
    }

    /// Per-tenant limits (see [`crate::limits`]): each tenant holds at most its tier's
    /// `max_connections` of this pool at once, and its transactions run with its tier's
    /// `statement_timeout`. Without tiers, a tenant may hold the whole pool.
    pub fn tiers(mut self, tiers: Tiers) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// What a transaction does when its tenant holds its whole share (default: waits in the
    /// tenant's own queue).
    pub fn share_policy(mut self, policy: SharePolicy) -> Self {
        self.share_policy = policy;
        self
    }

    /// The window of usage metrics and noisy-neighbour events (default one minute), and how
    /// many tenants metrics name (default 20; see [`crate::usage`]).
    pub fn usage(mut self, window: Duration, labelled_tenants: usize) -> Self {
        self.usage_window = window;
        self.labelled_tenants = labelled_tenants;
        self
    }

    /// Builds the handle; connections are opened when first needed.
    pub fn build(self) -> Result<TenantDb, Error> {
        let shares = self
            .tiers
            .clone()
            .map(|tiers| Arc::new(Shares::new(tiers, self.share_policy)));
        let usage = Arc::new(Usage::new(self.usage_window, self.labelled_tenants));
        self.pool().map(|pool| TenantDb {
            pool,
            shares,
            usage,
        })
    }

    /// **Escape hatch.** The pool of raw connections [`build`](TenantDbBuilder::build) would
    /// wrap: any query runs on them, with no scope and no tenant. For wrapping with
    /// [`TenantDb::from_pool`] after adding to it, and for tests that inspect the state a
    /// transaction leaves on a connection. `grep unscoped` lists every use.
    pub fn build_unscoped_pool(self) -> Result<Pool<AsyncPgConnection>, Error> {
        self.pool()
    }

    fn pool(self) -> Result<Pool<AsyncPgConnection>, Error> {
        let mut config = ManagerConfig::default();
        // No ping on checkout (one round trip saved): a connection left in a transaction, or
        // one whose transaction manager failed, or whose socket closed, is still refused
        // (diesel-async's `is_broken`), and a connection that died idle fails its request
        // with a typed error and is replaced.
        config.recycling_method = if self.verify_on_checkout {
            RecyclingMethod::Verified
        } else {
            RecyclingMethod::Fast
        };
        let statement_cache = self.statement_cache;
        config.custom_setup = Box::new(move |url| {
            Box::pin(async move {
                let mut conn = <AsyncPgConnection as AsyncConnection>::establish(url).await?;
                if statement_cache {
                    // `COMMIT` prepared now, so that a transaction's last statement can take it
                    // along without waiting for its preparation (see `crate::flight`).
                    crate::flight::prepare_commit(&mut conn)
                        .await
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                } else {
                    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
                }
                Ok(conn)
            })
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(self.url, config);
        Pool::builder(manager)
            .max_size(self.max_size)
            .build()
            .map_err(|e| Error::Pool(e.to_string()))
    }
}

impl TenantDb {
    /// Settings for a pool of connections to `database_url`, which should name the
    /// application role (not superuser, not `BYPASSRLS`, not the tables' owner).
    pub fn builder(database_url: impl Into<String>) -> TenantDbBuilder {
        TenantDbBuilder {
            url: database_url.into(),
            max_size: 10,
            statement_cache: true,
            verify_on_checkout: false,
            tiers: None,
            share_policy: SharePolicy::Wait,
            usage_window: Duration::from_secs(60),
            labelled_tenants: 20,
        }
    }

    /// A handle over a pool of at most `max_size` connections to `database_url`, which should
    /// name the application role (not superuser, not `BYPASSRLS`, not the tables' owner).
    pub fn connect(database_url: &str, max_size: usize) -> Result<Self, Error> {
        Self::builder(database_url).max_size(max_size).build()
    }

    /// A handle over an existing pool.
    pub fn from_pool(pool: Pool<AsyncPgConnection>) -> Self {
        TenantDb {
            pool,
            shares: None,
            usage: Arc::new(Usage::default()),
        }
    }

    /// Per-tenant usage: metric labels and noisy-neighbour events (see [`crate::usage`]).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Runs `f` in one transaction for `tenant`.
    ///
    /// The transaction starts with `BEGIN` and `tenant_db.enter(tenant)`, which sets the tenant
    /// transaction-locally with a seal no later statement can forge (see [`crate::seal`]). It commits when `f` returns `Ok`
    /// and rolls back when it returns `Err`. If `f` panics, or the returned future is dropped
    /// before it completes, the connection still holds an open transaction; the pool sees that
    /// and closes it rather than reuse it, and the server rolls the transaction back.
    ///
    /// `f` gets a [`TenantTx`] branded with a fresh lifetime `'t`: queries built from its
    /// [`scope`](TenantTx::scope) cannot leave the closure or run in another transaction.
    ///
    /// `f` must be an async closure, `async |tx| { … }`: a closure that returns an `async`
    /// block, `|tx| async move { … }`, cannot borrow the transaction, and the compiler says so
    /// as `E0282` "type annotations needed" at the first use of `tx`. When nothing else names
    /// the closure's error type, say it in its last expression, `Ok::<_, tenant_db::Error>(…)`
    /// (otherwise `E0283`, "cannot satisfy `_: From<tenant_db::Error>`").
    ///
    /// ```no_run
    /// # include!("../doctest_schema.rs");
    /// # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
    /// # #[diesel(table_name = notes)]
    /// # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
    /// # async fn demo(db: tenant_db::TenantDb, tenant: tenant_db::Tenant) -> Result<(), tenant_db::Error> {
    /// let bodies: Vec<String> = db
    ///     .transaction(tenant, async |mut tx| {
    ///         let scope = tx.scope();
    ///         Ok::<_, tenant_db::Error>(scope.query(notes::table).select(notes::body).load(&mut tx).await?)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn transaction<'a, V, R, E, F>(
        &'a self,
        tenant: V,
        f: F,
    ) -> impl Future<Output = Result<R, E>> + Send + 'a
    where
        V: crate::Verified,
        for<'t> F: AsyncFnOnce(TenantTx<'t>) -> Result<R, E>
            + TxFn<TenantTx<'t>, Result<R, E>, Fut: Send>
            + Send
            + 'a,
        E: From<Error> + Send + 'a,
        R: Send + 'a,
    {
        self.transaction_in(tenant, TxOptions::default(), f)
    }

    /// A transaction of one statement, sent in one flight: `BEGIN` and the tenant, the
    /// statement, and `COMMIT` go out together, without waiting for a reply in between (see
    /// [`crate::flight`]). `f` is a transaction closure like [`transaction`]'s whose first
    /// statement is also its last: a second statement fails with a refusal and sends nothing.
    ///
    /// The statement commits with its flight: an `Err` the closure returns after it succeeded
    /// does not roll it back. When `COMMIT` cannot go with it (a statement that binds a custom
    /// type, say), it is sent after the reply, as in [`transaction`].
    ///
    /// ```no_run
    /// # include!("../doctest_schema.rs");
    /// # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
    /// # #[diesel(table_name = notes)]
    /// # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
    /// # async fn demo(db: tenant_db::TenantDb, tenant: tenant_db::Tenant) -> Result<(), tenant_db::Error> {
    /// use diesel::prelude::*;
    /// let body: String = db
    ///     .single(tenant, async |mut tx| {
    ///         let scope = tx.scope();
    ///         let body = scope.query(notes::table).filter(notes::id.eq(7)).select(notes::body);
    ///         Ok::<_, tenant_db::Error>(body.first(&mut tx).await?)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    ///
    /// [`transaction`]: TenantDb::transaction
    pub fn single<'a, V, R, E, F>(
        &'a self,
        tenant: V,
        f: F,
    ) -> impl Future<Output = Result<R, E>> + Send + 'a
    where
        V: crate::Verified,
        for<'t> F: AsyncFnOnce(TenantTx<'t>) -> Result<R, E>
            + TxFn<TenantTx<'t>, Result<R, E>, Fut: Send>
            + Send
            + 'a,
        E: From<Error> + Send + 'a,
        R: Send + 'a,
    {
        self.transaction_in(
            tenant,
            TxOptions {
                single: true,
                ..TxOptions::default()
            },
            f,
        )
    }

    /// [`transaction`](TenantDb::transaction) with `options`.
    // Not an `async fn`: the returned future must be declared `Send`.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn transaction_in<'a, V, R, E, F>(
        &'a self,
        tenant: V,
        options: TxOptions<'a>,
        f: F,
    ) -> impl Future<Output = Result<R, E>> + Send + 'a
    where
        V: crate::Verified,
        for<'t> F: AsyncFnOnce(TenantTx<'t>) -> Result<R, E>
            + TxFn<TenantTx<'t>, Result<R, E>, Fut: Send>
            + Send
            + 'a,
        E: From<Error> + Send + 'a,
        R: Send + 'a,
    {
        let context = tenant.context().filter(|c| !c.is_empty()).cloned();
        let verified = tenant.tenant();
        let tenant = verified.id();
        let span = tracing::info_span!(
            "tenant_db.transaction",
            tenant_id = %tenant,
            key_kind = %tenant.kind(),
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let recorded = span.clone();
        async move {
            let started = std::time::Instant::now();
            let mut pool_wait = Duration::ZERO;
            let mut kind = None;
            let mut rows = 0;
            let (result, outcome) = async {
                crate::telemetry::observe(tenant).map_err(|e| (E::from(e), "refused"))?;
                let tier = self.shares.as_ref().map(|s| s.tiers().tier_of(&tenant));
                let statement_timeout = tier.and_then(|t| t.limits().statement_timeout_ms);
                let _share = match &self.shares {
                    Some(shares) => Some(shares.take(&tenant).await.map_err(|limited| {
                        kind = Some("limited");
                        (E::from(Error::Limited(Box::new(limited))), "limited")
                    })?),
                    None => None,
                };
                let pooled = self.pool.get().await;
                pool_wait = started.elapsed();
                let mut pooled = pooled.map_err(|e| {
                    kind = Some("pool");
                    (E::from(Error::from(e)), "failed")
                })?;
                let conn: &mut AsyncPgConnection = &mut pooled;
                // The transaction counts as open before anything is sent: if this future is
                // dropped from here until COMMIT or ROLLBACK completes, the pool refuses the
                // connection.
                AnsiTransactionManager::transaction_manager_status_mut(conn)
                    .transaction_state()
                    .and_then(|s| s.change_transaction_depth(TransactionDepthChange::IncreaseDepth))
                    .map_err(|e| (E::from(Error::from(e)), "failed"))?;
                let state = if options.single {
                    TxState::single()
                } else {
                    TxState::default()
                };
                let (begun, outcome) = {
                    let shared: &AsyncPgConnection = conn;
                    let sql = crate::seal::Begin::new(&tenant)
                        .modes(options.modes)
                        .schema(options.schema)
                        .statement_timeout(statement_timeout)
                        .context(context.as_ref())
                        .sql();
                    let mut begin_conn = shared;
                    let mut begin =
                        pin!(SimpleAsyncConnection::batch_execute(&mut begin_conn, &sql));
                    // One poll puts `BEGIN; SELECT tenant_db.enter(…)` on the wire; the caller's
                    // first statement follows it on the same connection without waiting for the
                    // reply (one round trip saved). The server runs them in order, and if the
                    // begin fails the transaction is aborted, so that statement fails too.
                    let early = poll_fn(|cx| Poll::Ready(begin.as_mut().poll(cx))).await;
                    let outcome = f(TenantTx::new(shared, verified, &state)).await;
                    let begun = match early {
                        Poll::Ready(begun) => begun,
                        Poll::Pending => begin.await,
                    };
                    (begun, outcome)
                };
                let result = match state.end() {
                    End::Open => match (begun, outcome) {
                        (Ok(()), Ok(value)) => match commit(conn).await {
                            Ok(()) => Ok(value),
                            Err(e) => {
                                let _ = AnsiTransactionManager::rollback_transaction(conn).await;
                                if e.to_string().starts_with(ABORTED) {
                                    kind = Some("not_committed");
                                    Err((
                                        E::from(Error::NotCommitted(
                                            "a statement of the transaction failed, and the closure returned Ok",
                                        )),
                                        "rolled_back",
                                    ))
                                } else {
                                    Err((E::from(Error::from(e)), "failed"))
                                }
                            }
                        },
                        (begun, outcome) => {
                            // A failed rollback puts the transaction manager in error, and the
                            // pool then discards the connection.
                            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
                            ended(begun, outcome, options.moved, &mut kind)
                        }
                    },
                    // The last statement went out with COMMIT.
                    end => {
                        let closed = AnsiTransactionManager::transaction_manager_status_mut(conn)
                            .transaction_state()
                            .and_then(|s| {
                                s.change_transaction_depth(TransactionDepthChange::DecreaseDepth)
                            });
                        if end != End::Committed && end != End::RolledBack || closed.is_err() {
                            // The outcome, or the connection's state, is not known.
                            state.mark_unscoped();
                        }
                        if end == End::Committed {
                            crate::telemetry::committed_in_flight();
                        }
                        match (end, begun, outcome) {
                            (End::Committed, _, Ok(value)) => Ok(value),
                            (End::Committed, _, Err(e)) => Err((e, "failed")),
                            (_, begun @ Err(_), outcome) => ended(begun, outcome, options.moved, &mut kind),
                            (End::RolledBack, Ok(()), Ok(_)) => Err((
                                {
                                    kind = Some("not_committed");
                                    E::from(Error::NotCommitted(
                                        "its last statement failed, and the closure returned Ok",
                                    ))
                                },
                                "rolled_back",
                            )),
                            (_, Ok(()), Ok(_)) => Err((
                                {
                                    kind = Some("not_committed");
                                    E::from(Error::NotCommitted(
                                    "its last statement and COMMIT were dropped in flight, or COMMIT failed",
                                ))
                                },
                                "failed",
                            )),
                            (_, Ok(()), Err(e)) => Err((e, "rolled_back")),
                        }
                    }
                };
                rows = state.rows();
                // An escape hatch may have changed the session (see `crate::session`), or the
                // end of the transaction is not known: the connection is closed instead of
                // going back to the pool.
                if state.unscoped() {
                    drop(Object::take(pooled));
                }
                result
            }
            .await
            .map_or_else(|(e, outcome)| (Err(e), outcome), |v| (Ok(v), "committed"));
            let total = started.elapsed();
            recorded.record("outcome", outcome);
            recorded.record("duration_ms", total.as_secs_f64() * 1000.0);
            let error = match (outcome, kind) {
                ("committed", _) => None,
                (_, Some(kind)) => Some(kind),
                ("refused", None) => Some("refused"),
                // The closure's own error.
                ("rolled_back", None) => Some("other"),
                _ => Some("database"),
            };
            self.usage.record(Finished {
                tenant,
                outcome,
                error,
                total,
                pool_wait,
                rows,
            });
            result
        }
        .instrument(span)
    }

    /// The pool, for tenant-db's own statements outside tenant transactions.
    pub(crate) fn pool(&self) -> &Pool<AsyncPgConnection> {
        &self.pool
    }

    /// One connection of `tenant`'s share of the pool (see [`crate::limits`]), for tenant-db's
    /// own statements made for that tenant outside its transactions; `None` without tiers.
    pub(crate) async fn share(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::limits::Share>, Error> {
        match &self.shares {
            Some(shares) => Ok(Some(
                shares
                    .take(tenant)
                    .await
                    .map_err(|l| Error::Limited(Box::new(l)))?,
            )),
            None => Ok(None),
        }
    }

    /// Pool statistics (size, available connections), for metrics.
    pub fn status(&self) -> deadpool::managed::Status {
        self.pool.status()
    }
}

/// How PostgreSQL begins the error of a statement in a transaction an earlier error aborted.
const ABORTED: &str = "current transaction is aborted";

/// Commits the transaction on `conn`, unless an earlier statement failed and aborted it: then
/// `SELECT 1` fails (the same message, no extra round trip) and `COMMIT` does not run.
/// (A `COMMIT` of an aborted transaction rolls it back and reports no error: a closure that
/// swallowed a statement's error would otherwise be told its transaction committed.)
async fn commit(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    SimpleAsyncConnection::batch_execute(conn, "SELECT 1; COMMIT").await?;
    AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_state()
        .and_then(|s| s.change_transaction_depth(TransactionDepthChange::DecreaseDepth))
}

/// How [`TenantDb::transaction_in`] opens a transaction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TxOptions<'a> {
    /// Transaction modes after `BEGIN` (`READ ONLY`, or empty).
    pub(crate) modes: &'a str,
    /// A bridge placement's schema.
    pub(crate) schema: Option<&'a str>,
    /// Set when the database refused the tenant ([`Error::Moved`]).
    pub(crate) moved: Option<&'a AtomicBool>,
    /// The first statement is the last ([`TenantDb::single`]).
    pub(crate) single: bool,
}

/// The result of a transaction that did not commit: a failed begin is the cause of whatever
/// the closure saw.
fn ended<R, E: From<Error>>(
    begun: Result<(), diesel::result::Error>,
    outcome: Result<R, E>,
    moved: Option<&AtomicBool>,
    kind: &mut Option<&'static str>,
) -> Result<R, (E, &'static str)> {
    match begun {
        Err(e) => {
            let e = Error::from(e);
            *kind = Some("database");
            if let Error::Moved(_) = &e {
                *kind = Some("moved");
                if let Some(moved) = moved {
                    moved.store(true, Ordering::Relaxed);
                }
            }
            Err((E::from(e), "failed"))
        }
        Ok(()) => outcome.map_err(|e| (e, "rolled_back")),
    }
}

/// One open tenant transaction, branded `'t`.
///
/// Runs scoped queries (built from [`scope`](TenantTx::scope)) and nothing else; it implements
/// none of diesel's connection traits and never hands out its connection. The only ways to run
/// other SQL are the `unscoped_*` methods, named so that a reviewer sees them.
pub struct TenantTx<'t> {
    conn: &'t AsyncPgConnection,
    scope: TenantScope<'t>,
    state: &'t TxState,
    hint: crate::hint::UseTxScope,
}

impl std::fmt::Debug for TenantTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("tenant", &self.scope.tenant_id())
            .finish()
    }
}

impl<'t> TenantTx<'t> {
    fn new(conn: &'t AsyncPgConnection, tenant: crate::Tenant, state: &'t TxState) -> Self {
        TenantTx {
            conn,
            scope: TenantScope::new(tenant.id(), tenant.provenance()),
            state,
            hint: crate::hint::UseTxScope::default(),
        }
    }

    /// See [`UseTxScope`](crate::UseTxScope).
    pub(crate) fn hint(&self) -> &crate::hint::UseTxScope {
        &self.hint
    }

    /// See [`UseTxScope`](crate::UseTxScope).
    pub(crate) fn hint_mut(&mut self) -> &mut crate::hint::UseTxScope {
        &mut self.hint
    }

    /// The scope to build this transaction's queries from.
    pub fn scope(&self) -> TenantScope<'t> {
        self.scope
    }

    /// The tenant this transaction acts for.
    pub fn tenant_id(&self) -> TenantId {
        self.scope.tenant_id()
    }

    /// The connection itself, to run tenant-db's own statements in this transaction after
    /// the transaction handle is gone (see [`crate::admin`]).
    pub(crate) fn shared_conn(&self) -> &'t AsyncPgConnection {
        self.conn
    }

    /// Marks the next statement as the transaction's last: `COMMIT` goes out right behind it,
    /// without waiting for its reply (one round trip saved; see [`crate::flight`]). The
    /// transaction commits with that statement: an `Err` the closure returns afterwards does
    /// not roll it back, and a statement made after it fails with a refusal and sends nothing.
    ///
    /// ```no_run
    /// # include!("../doctest_schema.rs");
    /// # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
    /// # #[diesel(table_name = notes)]
    /// # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
    /// # async fn demo(db: tenant_db::TenantDb, tenant: tenant_db::Tenant) -> Result<(), tenant_db::Error> {
    /// use diesel::prelude::*;
    /// db.transaction(tenant, async |mut tx| {
    ///     let scope = tx.scope();
    ///     let body: String = scope.query(notes::table).filter(notes::id.eq(7)).select(notes::body).first(&mut tx).await?;
    ///     scope
    ///         .update(notes::table)
    ///         .filter(notes::id.eq(8))
    ///         .set(tenant_db::values!(notes::table, notes::body = body))
    ///         .execute(tx.last())
    ///         .await?;
    ///     Ok::<_, tenant_db::Error>(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn last(&mut self) -> &mut Self {
        self.state.mark_last();
        self
    }

    /// Keeps `COMMIT` to the end of the transaction whatever the closure marks as last: the
    /// transaction's owner runs statements of its own after the closure.
    pub(crate) fn hold_commit(&self) {
        self.state.hold_commit();
    }

    /// Makes `run` run `query` on this transaction's connection (see [`crate::flight`]).
    pub(crate) fn statement<'conn, Q, F, T>(
        &'conn mut self,
        query: Q,
        run: impl FnOnce(Q, &'conn mut &'t AsyncPgConnection) -> F,
    ) -> Guarded<'t, F>
    where
        Q: QueryFragment<Pg>,
        F: Future<Output = diesel::QueryResult<T>>,
    {
        let (state, conn) = (self.state, self.conn);
        Guarded::new(state, conn, query, |q| run(q, &mut self.conn))
    }

    /// **Escape hatch.** Executes any diesel statement (`diesel::sql_query`, a statement on an
    /// unclassified table, …) in this tenant transaction without tenant-db's compile-time checks.
    ///
    /// Row-level security still applies: the statement runs as the application role, in this
    /// transaction, whose tenant no statement can change (see [`crate::seal`]). Use it for what
    /// tenant-db cannot express yet, and keep it out of request paths that take user input.
    /// Because such a statement can change the session (`SET`, `PREPARE`, advisory locks, …),
    /// the connection is closed when the transaction ends instead of going back to the pool
    /// (see [`crate::session`]).
    pub fn unscoped_execute<'conn, 'q, Q>(
        &'conn mut self,
        query: Q,
    ) -> Guarded<'t, crate::write::ExecuteFuture<'t, 'conn, 'q>>
    where
        Q: QueryFragment<Pg> + Send + 'q,
    {
        self.state.mark_unscoped();
        self.statement(SqlKeyed(query), RunQueryDsl::execute)
    }

    /// **Escape hatch.** Loads rows of any diesel query without tenant-db's compile-time
    /// checks; see [`unscoped_execute`](TenantTx::unscoped_execute). RLS still applies, and the
    /// connection is closed when the transaction ends.
    pub fn unscoped_load<'conn, 'q, Q, U>(
        &'conn mut self,
        query: Q,
    ) -> LoadRows<'t, 'conn, 'q, Q::Query, U>
    where
        U: Send,
        Q: AsQuery,
        SqlKeyed<Q::Query>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        self.state.mark_unscoped();
        self.statement(SqlKeyed(query.as_query()), RunQueryDsl::load)
    }
}

/// Runs `f` on `conn` (a connection of tenant-db's tools, outside the pool) in a transaction
/// opened with `begin` (see [`crate::seal::Begin`]), then commits, or rolls back when `commit`
/// is false or anything fails.
pub(crate) async fn in_tenant<T>(
    conn: &mut AsyncPgConnection,
    begin: crate::seal::Begin<'_>,
    commit: bool,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    let outcome = match conn.batch_execute(&begin.sql()).await {
        Ok(()) => f(conn).await,
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(value) if commit => {
            conn.batch_execute("COMMIT").await?;
            Ok(value)
        }
        Ok(value) => {
            conn.batch_execute("ROLLBACK").await?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}
