//! The router: each tenant transaction on the tenant's placement.

use super::directory_impl::CHANNEL;
use super::{Directory, Placed, PlacedState, Placement, PlacementError, url_with_database};
use crate::{Error, TenantDb, TenantId, TenantTx, TxFn};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Settings for a [`Router`]; start with [`Router::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `.build()`"]
pub struct RouterBuilder {
    directory_url: String,
    servers: BTreeMap<String, String>,
    replicas: BTreeMap<String, String>,
    pool_size: usize,
    silo_pool_size: usize,
    max_silo_pools: usize,
    silo_idle: Duration,
    cache_ttl: Duration,
    freeze_wait: Duration,
    listen: bool,
}

impl RouterBuilder {
    /// Server `name` (as placements name it), reached as the application role by `app_url`,
    /// whose database is the server's shared one (pool and bridge placements); silos on it
    /// use the same URL with their database.
    pub fn server(mut self, name: &str, app_url: &str) -> Self {
        self.servers.insert(name.to_string(), app_url.to_string());
        self
    }

    /// A streaming replica of server `name`, reached as the application role by `app_url` (to
    /// the shared database; silos on it use the same URL with their database), for
    /// [`read_transaction`](Router::read_transaction).
    pub fn replica(mut self, name: &str, app_url: &str) -> Self {
        self.replicas.insert(name.to_string(), app_url.to_string());
        self
    }

    /// Connections per shared database (default 10).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Connections per silo database (default 2).
    pub fn silo_pool_size(mut self, size: usize) -> Self {
        self.silo_pool_size = size;
        self
    }

    /// At most this many silo pools open at once (default 32): opening one more closes the
    /// least recently used.
    pub fn max_silo_pools(mut self, max: usize) -> Self {
        self.max_silo_pools = max.max(1);
        self
    }

    /// A silo pool unused this long is closed (default 5 minutes).
    pub fn silo_idle(mut self, idle: Duration) -> Self {
        self.silo_idle = idle;
        self
    }

    /// How long a directory entry is trusted without hearing of a change (default 30 s).
    /// Changes are heard through `LISTEN` at once; this bounds how long a router that missed
    /// one (its listening connection was down) keeps an old entry. An old entry never sends
    /// a transaction to the wrong database: the database refuses a tenant it does not hold
    /// ([`Error::Moved`]), and the router then reads the entry again.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long a new transaction of a frozen tenant waits for its move to finish before it
    /// goes ahead anyway (default 5 s); the databases decide where it may run.
    pub fn freeze_wait(mut self, wait: Duration) -> Self {
        self.freeze_wait = wait;
        self
    }

    /// Whether to `LISTEN` for directory changes (default: yes; needs a tokio runtime).
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Builds the router; connections are opened when first needed.
    pub fn build(self) -> Result<Router, Error> {
        for url in self.servers.values().chain(self.replicas.values()) {
            url_with_database(url, "check")?;
        }
        if let Some(unknown) = self
            .replicas
            .keys()
            .find(|r| !self.servers.contains_key(*r))
        {
            return Err(
                PlacementError::UnknownServer(format!("{unknown} (a replica's server)")).into(),
            );
        }
        let directory = Directory::connect(&self.directory_url, 2)?;
        let inner = Arc::new(Inner {
            directory,
            servers: self.servers,
            replicas: self.replicas,
            cache: Mutex::new(HashMap::new()),
            pools: Mutex::new(Pools {
                open: HashMap::new(),
                swept: Instant::now(),
            }),
            pool_size: self.pool_size,
            silo_pool_size: self.silo_pool_size,
            max_silo_pools: self.max_silo_pools,
            silo_idle: self.silo_idle,
            cache_ttl: self.cache_ttl,
            freeze_wait: self.freeze_wait,
            listening: AtomicBool::new(false),
        });
        if self.listen {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                PlacementError::Invalid(
                    "a listening router is built inside a tokio runtime (or call `.listen(false)`)"
                        .to_string(),
                )
            })?;
            let weak = Arc::downgrade(&inner);
            let url = self.directory_url;
            runtime.spawn(async move { listen(weak, url).await });
        }
        Ok(Router { inner })
    }
}

/// Opens each tenant transaction on the tenant's placement (see the [module docs](super)).
///
/// ```no_run
/// # include!("../../doctest_schema.rs");
/// # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
/// # #[diesel(table_name = notes)]
/// # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
/// # async fn demo(tenant: tenant_db::Tenant) -> Result<(), tenant_db::Error> {
/// let router = tenant_db::placement::Router::builder("postgres://app@control/control")
///     .server("a", "postgres://app@db-a/app")
///     .server("b", "postgres://app@db-b/app")
///     .build()?;
/// // The same closure as with `TenantDb::transaction`, wherever the tenant lives.
/// let n: i64 = router
///     .transaction(tenant, async |mut tx| {
///         let scope = tx.scope();
///         Ok::<_, tenant_db::Error>(scope.query(notes::table).count().get_result(&mut tx).await?)
///     })
///     .await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("servers", &self.inner.servers.keys().collect::<Vec<_>>())
            .field("pools", &self.pools())
            .finish()
    }
}

struct Inner {
    directory: Directory,
    servers: BTreeMap<String, String>,
    replicas: BTreeMap<String, String>,
    cache: Mutex<HashMap<TenantId, (Placed, Instant)>>,
    pools: Mutex<Pools>,
    pool_size: usize,
    silo_pool_size: usize,
    max_silo_pools: usize,
    silo_idle: Duration,
    cache_ttl: Duration,
    freeze_wait: Duration,
    listening: AtomicBool,
}

/// A server, for a silo its database, and whether it is the server's replica.
type PoolKey = (String, Option<String>, bool);

/// The open pools, and when idle silo pools were last looked for.
struct Pools {
    open: HashMap<PoolKey, PoolEntry>,
    swept: Instant,
}

struct PoolEntry {
    db: TenantDb,
    last_used: Instant,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Router {
    /// Settings for a router reading the directory at `directory_url` (as a role that may read
    /// it: see [`directory::setup_sql`](super::directory::setup_sql)).
    pub fn builder(directory_url: &str) -> RouterBuilder {
        RouterBuilder {
            directory_url: directory_url.to_string(),
            servers: BTreeMap::new(),
            replicas: BTreeMap::new(),
            pool_size: 10,
            silo_pool_size: 2,
            max_silo_pools: 32,
            silo_idle: Duration::from_secs(300),
            cache_ttl: Duration::from_secs(30),
            freeze_wait: Duration::from_secs(5),
            listen: true,
        }
    }

    /// Runs `f` in one transaction for `tenant` on the tenant's placement: exactly
    /// [`TenantDb::transaction`], on the pool of the tenant's server and database, in its
    /// schema for a bridge placement. A transaction never spans two databases.
    ///
    /// When the database refuses the tenant because it moved (or is moving) away, the result
    /// is [`Error::Moved`] (nothing ran) and the router forgets the tenant's entry: retry, and
    /// the transaction goes to the new placement. A tenant without an entry is
    /// [`PlacementError::NotPlaced`].
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
        self.run(tenant, false, false, f)
    }

    /// [`TenantDb::single`](crate::TenantDb::single) at the tenant's placement: a transaction
    /// of one statement, sent with `COMMIT` in one flight.
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
        self.run(tenant, false, true, f)
    }

    /// Runs `f` in one `READ ONLY` transaction for `tenant` on the streaming replica of the
    /// tenant's server (given with [`RouterBuilder::replica`]), or on the server itself when
    /// it has none. RLS applies there as on the server, and so do the fences: a replica that
    /// has not yet replayed a move's end refuses the tenant at the target ([`Error::Moved`])
    /// rather than show it without its rows, and serves the source's rows as they were until
    /// it replays the fence there.
    ///
    /// A replica lags its server: a transaction here may not see what a transaction on the
    /// server committed just before (typically milliseconds on a local network; as long as
    /// the replica is behind, after a burst of writes or a pause in replay). Read your own
    /// writes with [`transaction`](Router::transaction).
    pub fn read_transaction<'a, V, R, E, F>(
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
        self.run(tenant, true, false, f)
    }

    fn run<'a, V, R, E, F>(
        &'a self,
        tenant: V,
        read_only: bool,
        single: bool,
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
        let verified = tenant.tenant();
        async move {
            let id = verified.id();
            let placed = self.resolve(&id).await.map_err(E::from)?;
            let db = self
                .pool_for(&placed.placement, read_only)
                .map_err(E::from)?;
            let moved = AtomicBool::new(false);
            let options = crate::tx::TxOptions {
                modes: if read_only { "READ ONLY" } else { "" },
                schema: placed.placement.schema(),
                moved: Some(&moved),
                single,
            };
            let outcome = db.transaction_in(verified, options, f).await;
            if moved.load(Ordering::Relaxed) {
                self.forget(&id);
            }
            outcome
        }
    }

    /// The tenant's directory entry: cached, else read; while it is frozen by a move, waits
    /// (reading it again) up to the freeze wait, then returns it as it is.
    pub async fn resolve(&self, tenant: &TenantId) -> Result<Placed, Error> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.freeze_wait;
        loop {
            let cached = locked(&inner.cache)
                .get(tenant)
                .filter(|(_, at)| at.elapsed() < inner.cache_ttl)
                .map(|(p, _)| p.clone());
            let placed = match cached {
                Some(p) => p,
                None => {
                    let p = inner
                        .directory
                        .get(tenant)
                        .await?
                        .ok_or_else(|| PlacementError::NotPlaced(tenant.to_string()))?;
                    locked(&inner.cache).insert(*tenant, (p.clone(), Instant::now()));
                    p
                }
            };
            if placed.state == PlacedState::Active || Instant::now() >= deadline {
                return Ok(placed);
            }
            self.forget(tenant);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drops the cached entry of `tenant`.
    pub fn forget(&self, tenant: &TenantId) {
        locked(&self.inner.cache).remove(tenant);
    }

    /// Whether the router is listening for directory changes now.
    pub fn listening(&self) -> bool {
        self.inner.listening.load(Ordering::Relaxed)
    }

    /// The pool of `placement`'s server (or its replica, when `replica` and it has one) and
    /// database, opened if needed.
    fn pool_for(&self, placement: &Placement, replica: bool) -> Result<TenantDb, Error> {
        let inner = &self.inner;
        let server = placement.server();
        let replica_url = inner.replicas.get(server).filter(|_| replica);
        let base = match replica_url {
            Some(url) => url,
            None => inner
                .servers
                .get(server)
                .ok_or_else(|| PlacementError::UnknownServer(server.to_string()))?,
        };
        let key: PoolKey = (
            server.to_string(),
            placement.database().map(str::to_string),
            replica_url.is_some(),
        );
        let mut guard = locked(&inner.pools);
        let now = Instant::now();
        // Idle silo pools close (their open transactions keep their own handle); looked for
        // at most twice per idle period, not on every transaction.
        if now.duration_since(guard.swept) >= inner.silo_idle / 2 {
            guard.swept = now;
            guard.open.retain(|(_, db, _), e| {
                db.is_none() || now.duration_since(e.last_used) < inner.silo_idle
            });
        }
        let pools = &mut guard.open;
        if let Some(entry) = pools.get_mut(&key) {
            entry.last_used = now;
            return Ok(entry.db.clone());
        }
        let db = match &key.1 {
            None => TenantDb::connect(base, inner.pool_size)?,
            Some(database) => {
                let silos = pools.keys().filter(|(_, d, _)| d.is_some()).count();
                if silos >= inner.max_silo_pools
                    && let Some(oldest) = pools
                        .iter()
                        .filter(|((_, d, _), _)| d.is_some())
                        .min_by_key(|(_, e)| e.last_used)
                        .map(|(k, _)| k.clone())
                {
                    pools.remove(&oldest);
                }
                TenantDb::connect(&url_with_database(base, database)?, inner.silo_pool_size)?
            }
        };
        pools.insert(
            key,
            PoolEntry {
                db: db.clone(),
                last_used: now,
            },
        );
        Ok(db)
    }

    /// The open pools of the servers: server and, for a silo, database.
    pub fn pools(&self) -> Vec<(String, Option<String>)> {
        self.open(false)
    }

    /// The open pools of the replicas: server and, for a silo, database.
    pub fn replica_pools(&self) -> Vec<(String, Option<String>)> {
        self.open(true)
    }

    fn open(&self, replicas: bool) -> Vec<(String, Option<String>)> {
        let mut keys: Vec<_> = locked(&self.inner.pools)
            .open
            .keys()
            .filter(|(_, _, r)| *r == replicas)
            .map(|(s, d, _)| (s.clone(), d.clone()))
            .collect();
        keys.sort();
        keys
    }
}

/// Listens for directory changes and forgets the entries they name, until the router is
/// gone. A lost connection forgets every entry and listens again.
async fn listen(router: std::sync::Weak<Inner>, url: String) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    loop {
        if router.strong_count() == 0 {
            return;
        }
        if let Ok(mut conn) = AsyncPgConnection::establish(&url).await
            && conn
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
        {
            if let Some(inner) = router.upgrade() {
                locked(&inner.cache).clear();
                inner.listening.store(true, Ordering::Relaxed);
            }
            let mut stream = std::pin::pin!(conn.notifications_stream());
            loop {
                let next = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
                let Some(inner) = router.upgrade() else {
                    return;
                };
                match next {
                    // Quiet: check the router is still there.
                    Err(_) => continue,
                    Ok(Some(Ok(n))) => {
                        let forgotten = n.payload.split_once(':').and_then(|(kind, key)| {
                            super::directory_impl::tenant_of(kind, key).ok()
                        });
                        match forgotten {
                            Some(t) => {
                                locked(&inner.cache).remove(&t);
                            }
                            None => locked(&inner.cache).clear(),
                        }
                    }
                    Ok(_) => {
                        inner.listening.store(false, Ordering::Relaxed);
                        locked(&inner.cache).clear();
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
