//! diesel migrations with tenant-db's row-level security applied in the same run.
//!
//! [`run`] connects as the owner role, runs the pending embedded migrations, then applies, in
//! one transaction, the RLS set-up of every registered tenant table and the application
//! role's grants ([`tenant_db::provision::apply_sql`]). A service's whole set-up (with
//! `diesel_migrations` as a dependency, for `embed_migrations!`):
//!
//! ```no_run
//! use tenant_db::provision::Provision;
//! use tenant_db::registry::Registry;
//! use diesel_migrations::{EmbeddedMigrations, embed_migrations};
//!
//! const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../examples/migrations");
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let urls = Provision::new("app", "app_owner", "app_user")
//!     .run("postgres://postgres@127.0.0.1:5432/postgres")
//!     .await?;
//! tenant_db_migrate::run(&urls, MIGRATIONS, &Registry::collected()?).await?;
//! let db = tenant_db::TenantDb::connect(&urls.app_url, 16)?;
//! # Ok(()) }
//! ```
//!
//! Migrations run through diesel-async's `AsyncMigrationHarness`, which blocks a worker of a
//! multi-threaded tokio runtime while it runs; on a current-thread runtime [`run`] returns
//! [`MigrateError::Runtime`] instead.

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection};
use tenant_db::provision::Provisioned;
use tenant_db::registry::Registry;

use diesel_migrations::MigrationHarness;

/// The advisory lock (one-key form) a run holds on its database while it migrates.
const MIGRATION_LOCK: i64 = 0x7465_6e61_6e74_0002;

/// What went wrong in [`run`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Connecting, or applying the RLS set-up and grants, failed.
    #[error(transparent)]
    TenantDb(#[from] tenant_db::Error),
    /// A migration failed (it is rolled back; the ones before it stay applied).
    #[error("migration failed: {0}")]
    Migration(String),
    /// Not on a multi-threaded tokio runtime (see the crate docs).
    #[error(
        "tenant-db-migrate needs a multi-threaded tokio runtime (diesel's migration harness blocks a worker); \
         use #[tokio::main] or #[tokio::test(flavor = \"multi_thread\")]"
    )]
    Runtime,
}

/// What [`run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The versions of the migrations this run applied, in order (empty when none was
    /// pending).
    pub applied: Vec<String>,
    /// The tenant tables whose RLS set-up was applied.
    pub tenant_tables: Vec<String>,
}

/// Runs the pending `migrations` as the owner of `urls`, then applies the RLS set-up of every
/// tenant table of `registry` and the application role's grants on schema `public`.
pub async fn run<S>(
    urls: &Provisioned,
    migrations: S,
    registry: &Registry,
) -> Result<Migrated, MigrateError>
where
    S: MigrationSource<Pg> + Send,
{
    let conn = AsyncPgConnection::establish(&urls.owner_url)
        .await
        .map_err(tenant_db::Error::from)?;
    run_on(
        conn,
        migrations,
        registry,
        &urls.owner,
        &urls.app,
        "public",
        urls.analyst.as_deref(),
    )
    .await
}

/// [`run`] on an open connection as the owner role `owner`, granting `app` in `schema`, and
/// setting up the all-tenants views of `analyst`, if any.
pub async fn run_on<S>(
    conn: AsyncPgConnection,
    migrations: S,
    registry: &Registry,
    owner: &str,
    app: &str,
    schema: &str,
    analyst: Option<&str>,
) -> Result<Migrated, MigrateError>
where
    S: MigrationSource<Pg> + Send,
{
    if !matches!(
        tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread)
    ) {
        return Err(MigrateError::Runtime);
    }
    // One migration of a database at a time (two instances starting together, say): the
    // DDL of two concurrent runs collides ("tuple concurrently updated", duplicate types).
    // Held by this connection's session, released when the run ends and the connection closes.
    let mut conn = conn;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
    )
    .await
    .map_err(tenant_db::Error::from)?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(migrations)
        .map_err(|e| MigrateError::Migration(e.to_string()))?
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    let mut conn = harness.into_inner();
    tenant_db::provision::apply(&mut conn, registry, owner, app, schema, analyst).await?;
    Ok(Migrated {
        applied,
        tenant_tables: registry
            .tenant_tables()
            .map(|t| t.name().to_string())
            .collect(),
    })
}
