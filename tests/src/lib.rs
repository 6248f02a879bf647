//! Set-up shared by the integration tests and the examples: creates the database, the owner and
//! application roles, the schema with its RLS policies, and returns the application role's URL.
//!
//! Each process provisions fresh databases, dropped when it ends (see [`fresh`]); the roles
//! are shared, their set-up idempotent and serialised with advisory locks, so concurrent test
//! binaries can call [`provision`] at once.

pub mod fault;
pub mod fresh;
mod keyed_schema;
mod os;
pub mod pgbouncer;
pub mod placement;
pub mod server;

/// The test schema keyed by `uuid`, in database `tenant_db_test`.
#[allow(missing_docs)]
pub mod schema {
    crate::keyed_schema! {
        sql: Uuid,
        key: uuid::Uuid,
        column_type: "uuid",
        database: "tenant_db_test",
        new_tenant: TenantId::new_random,
        row_key: |t| t.as_uuid(),
    }
}

/// The test schema keyed by `bigint`, in database `tenant_db_test_bigint`.
#[allow(missing_docs)]
pub mod schema_bigint {
    crate::keyed_schema! {
        sql: BigInt,
        key: i64,
        column_type: "bigint",
        database: "tenant_db_test_bigint",
        // Random positive ids, so that test runs do not meet each other's rows.
        new_tenant: || match TenantId::from_i64(
            i64::try_from(uuid::Uuid::new_v4().as_u128() >> 65).unwrap_or(i64::MAX).max(1),
        ) {
            Ok(t) => t,
            Err(e) => panic!("a positive id is a tenant id: {e}"),
        },
        row_key: |t| t.as_i64(),
    }
}

/// The test schema keyed by `text`, in database `tenant_db_test_text`.
#[allow(missing_docs)]
pub mod schema_text {
    crate::keyed_schema! {
        sql: Text,
        key: String,
        column_type: "text",
        database: "tenant_db_test_text",
        new_tenant: || match TenantId::from_text(&format!("org-{}", uuid::Uuid::new_v4().simple())) {
            Ok(t) => t,
            Err(e) => panic!("a slug is a tenant id: {e}"),
        },
        row_key: |t| t.as_text().map(str::to_string),
    }
}

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The superuser URL used only to create roles and the database: `TENANT_DB_ADMIN_URL` if it
/// is set; else `postgres://postgres@<address>/postgres` if a server answers at
/// `TENANT_DB_DEFAULT_ADDR` (default `127.0.0.1:5432`); else a throwaway server's, started
/// from the installed PostgreSQL (or reused) and left running, as [`server`] explains.
///
/// Resolved once per process.
pub fn admin_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(server::resolve_admin_url).clone()
}

/// The owner role: runs migrations and owns the tables.
pub const OWNER_ROLE: &str = "tenant_db_owner";
/// The application role: not superuser, not `BYPASSRLS`, owns nothing.
pub const APP_ROLE: &str = "tenant_db_app";
/// A role the test suite alone uses to check the compile-time layer with RLS out of the way:
/// the application role's grants, plus `BYPASSRLS`. Never give it to an application.
pub const NO_RLS_ROLE: &str = "tenant_db_no_rls";

/// `host[:port]` of the server behind `admin_url`.
fn admin_host() -> String {
    let admin = admin_url();
    let rest = admin.split_once("://").map_or(admin.as_str(), |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() {
        server::DEFAULT_ADDRESS.to_string()
    } else {
        host.to_string()
    }
}

/// The database `admin_url` connects to (`postgres` if it names none).
pub(crate) fn admin_database() -> String {
    let admin = admin_url();
    let rest = admin.split_once("://").map_or(admin.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let database = rest
        .split_once('/')
        .map_or("", |(_, d)| d.split('?').next().unwrap_or_default());
    if database.is_empty() {
        "postgres".to_string()
    } else {
        database.to_string()
    }
}

/// `admin_url` with the user and database replaced (`database`'s fresh database once
/// provisioned, see [`fresh`]).
pub fn url_for(user: &str, database: &str) -> String {
    url_at(user, &admin_host(), database)
}

/// `postgres://user@address/database`, with `database`'s fresh database once provisioned (see
/// [`fresh`]): the one spelling of a test URL, for the server and for what stands in front of
/// it (PgBouncer, the fault proxy).
pub(crate) fn url_at(user: &str, address: &str, database: &str) -> String {
    format!("postgres://{user}@{address}/{}", fresh::database(database))
}

/// The host and port of the server behind `admin_url`.
pub fn server_address() -> (String, u16) {
    let host = admin_host();
    match host.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(5432)),
        None => (host.to_string(), 5432),
    }
}

/// `admin_url` with the database replaced: the superuser, connected to `database` (its fresh
/// database once provisioned, see [`fresh`]).
pub fn admin_url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap_or((&admin, ""));
    format!("{base}/{}", fresh::database(database))
}

/// A set-up failure, with the step that failed.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SetupError {}

fn step<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(format!("{what}: {e}")))
}

/// Creates (if missing) the roles, and `database`'s fresh database for this process (see
/// [`fresh`]), then applies the sealed tenant setting and
/// `schema_sql` as the owner, and grants the application role (and the test-only `BYPASSRLS`
/// role) reads everywhere and writes on `tenant_tables` (quoted names). Returns the
/// application role's URL.
pub async fn provision(
    database: &str,
    schema_sql: &str,
    tenant_tables: &[&str],
) -> Result<String, SetupError> {
    // One provisioning at a time in this process: concurrent tests that provision the same
    // database would race on its catalog ("tuple concurrently updated").
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    // The test-only role that bypasses RLS; it may connect to the database like the
    // application role.
    let mut admin = step(
        "connect as admin",
        AsyncPgConnection::establish(&admin_url()).await,
    )?;
    step(
        "test-only role",
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{NO_RLS_ROLE}') THEN
                     CREATE ROLE {NO_RLS_ROLE} LOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE;
                   END IF;
                 EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;
                 END $$;"
            ))
            .await,
    )?;
    fresh::sweep(&mut admin).await;
    let fresh = fresh::register(database)?;
    let urls = step(
        "provision",
        tenant_db::provision::Provision::new(&fresh, OWNER_ROLE, APP_ROLE)
            .also_connect(NO_RLS_ROLE)
            .run(&admin_url())
            .await,
    )?;

    let mut owner = step(
        "connect as owner",
        AsyncPgConnection::establish(&urls.owner_url).await,
    )?;
    step(
        "lock schema",
        owner
            .batch_execute("SELECT pg_advisory_lock(4242002)")
            .await,
    )?;
    let sql = || -> Result<String, tenant_db::rls::NameError> {
        let writes: String = tenant_tables
            .iter()
            .flat_map(|table| {
                [APP_ROLE, NO_RLS_ROLE]
                    .map(|role| tenant_db::roles::tenant_table_write_sql_for(role, table))
            })
            .collect::<Result<_, _>>()?;
        Ok(format!(
            "{}{schema_sql}
             REVOKE ALL ON SCHEMA public FROM PUBLIC;
             {}{}{}{}{writes}",
            tenant_db::seal::setup_sql(),
            tenant_db::admin::setup_sql(APP_ROLE)?,
            tenant_db::lifecycle::setup_sql(APP_ROLE)?,
            tenant_db::roles::grants_sql(OWNER_ROLE, APP_ROLE, "public")?,
            tenant_db::roles::grants_sql(OWNER_ROLE, NO_RLS_ROLE, "public")?,
        ))
    };
    let sql = step("schema SQL", sql())?;
    let applied = owner.batch_execute(&sql).await;
    let _ = owner
        .batch_execute("SELECT pg_advisory_unlock(4242002)")
        .await;
    step("apply schema", applied)?;
    Ok(urls.app_url)
}
