//! Provisioning: the owner and application roles, the database, and its privileges, created
//! if missing and (re)applied if present, so it can run on every deploy; then, as the owner,
//! the schema-level set-up of [`apply_sql`] after the migrations.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenant_db::Error> {
//! use tenant_db::provision::Provision;
//! // As a role that may create roles and databases:
//! let urls = Provision::new("app", "app_owner", "app_user")
//!     .run("postgres://postgres@127.0.0.1:5432/postgres")
//!     .await?;
//! // … run the migrations as `urls.owner_url`, then `apply_sql` (tenant-db-migrate does both),
//! // and serve with `TenantDb::connect(&urls.app_url, 16)`.
//! # Ok(()) }
//! ```
//!
//! Every step is idempotent and concurrent runs are serialised (an advisory lock on the admin
//! connection), so several services or test binaries may provision at once.

use crate::Error;
use crate::registry::Registry;
use crate::rls::{quote_ident, quote_literal};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// The advisory lock that serialises provisioning on one server.
const PROVISION_LOCK: i64 = 0x7465_6e61_6e74_0001;

/// What to provision: a database, its owner (migrations) and its application role.
#[derive(Clone, Debug)]
pub struct Provision {
    database: String,
    owner: String,
    app: String,
    idle_timeout: String,
    owner_password: Option<String>,
    app_password: Option<String>,
    analyst: Option<String>,
}

/// The URLs [`Provision::run`] made: the admin URL with the role and the database replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// The analyst role's name, if one was provisioned.
    pub analyst: Option<String>,
    /// The owner role's name.
    pub owner: String,
    /// The application role's name.
    pub app: String,
    /// The owner's URL: run the migrations with it.
    pub owner_url: String,
    /// The application role's URL: serve with it.
    pub app_url: String,
}

impl Provision {
    /// Database `database`, owned by role `owner`, served as role `app`.
    pub fn new(database: &str, owner: &str, app: &str) -> Self {
        Provision {
            database: database.to_string(),
            owner: owner.to_string(),
            app: app.to_string(),
            idle_timeout: "60s".to_string(),
            owner_password: None,
            app_password: None,
            analyst: None,
        }
    }

    /// Also an analyst role `role` (`LOGIN`, not `BYPASSRLS`) that may read every tenant
    /// through audited, read-only transactions ([`crate::admin::read_all`]), and the role
    /// that owns its views ([`crate::admin::views_role`]: `BYPASSRLS`, `NOLOGIN`, a role the
    /// owner may act as to create them). Needs a superuser to provision.
    pub fn analyst(mut self, role: &str) -> Self {
        self.analyst = Some(role.to_string());
        self
    }

    /// The application role's `idle_in_transaction_session_timeout` (default `60s`).
    pub fn idle_timeout(mut self, interval: &str) -> Self {
        self.idle_timeout = interval.to_string();
        self
    }

    /// Passwords for the two roles (set on every run; default: none, for `trust` or
    /// certificate authentication). They go into the returned URLs.
    pub fn passwords(mut self, owner: &str, app: &str) -> Self {
        self.owner_password = Some(owner.to_string());
        self.app_password = Some(app.to_string());
        self
    }

    /// The SQL that creates the roles and sets their attributes and passwords.
    fn roles_sql(&self) -> String {
        let mut sql = crate::roles::create_roles_sql(&self.owner, &self.app, &self.idle_timeout);
        for (role, password) in [
            (&self.owner, &self.owner_password),
            (&self.app, &self.app_password),
        ] {
            if let Some(password) = password {
                sql.push_str(&format!(
                    "ALTER ROLE {} PASSWORD {};\n",
                    quote_ident(role),
                    quote_literal(password)
                ));
            }
        }
        if let Some(analyst) = &self.analyst {
            let (a, v) = (
                quote_ident(analyst),
                quote_ident(&crate::admin::views_role(analyst)),
            );
            sql.push_str(&format!(
                "DO $tenant_db$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {a_lit}) THEN
                     CREATE ROLE {a} LOGIN;
                   END IF;
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {v_lit}) THEN
                     CREATE ROLE {v} NOLOGIN;
                   END IF;
                 END $tenant_db$;
                 ALTER ROLE {a} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                 ALTER ROLE {v} NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE;
                 GRANT {v} TO {o};
",
                a_lit = quote_literal(analyst),
                v_lit = quote_literal(&crate::admin::views_role(analyst)),
                o = quote_ident(&self.owner),
            ));
        }
        sql
    }

    /// Connects to `admin_url` (a superuser, or a role with `CREATEROLE` and `CREATEDB`) and
    /// creates or updates the roles, the database (owned by the owner role) and its
    /// privileges ([`crate::roles::database_sql`]).
    pub async fn run(&self, admin_url: &str) -> Result<Provisioned, Error> {
        let mut admin = AsyncPgConnection::establish(admin_url).await?;
        admin
            .batch_execute(&format!("SELECT pg_advisory_lock({PROVISION_LOCK})"))
            .await?;
        let created = self.create(&mut admin).await;
        let unlocked = admin
            .batch_execute(&format!("SELECT pg_advisory_unlock({PROVISION_LOCK})"))
            .await;
        created?;
        unlocked?;
        Ok(Provisioned {
            analyst: self.analyst.clone(),
            owner: self.owner.clone(),
            app: self.app.clone(),
            owner_url: with_role(
                admin_url,
                &self.owner,
                self.owner_password.as_deref(),
                &self.database,
            )?,
            app_url: with_role(
                admin_url,
                &self.app,
                self.app_password.as_deref(),
                &self.database,
            )?,
        })
    }

    async fn create(&self, admin: &mut AsyncPgConnection) -> Result<(), Error> {
        admin.batch_execute(&self.roles_sql()).await?;
        let owners: Vec<Owner> = diesel::sql_query(
            "SELECT pg_get_userbyid(datdba)::text AS owner FROM pg_database WHERE datname = $1",
        )
        .bind::<diesel::sql_types::Text, _>(&self.database)
        .load(admin)
        .await?;
        if let Some(Owner { owner }) = <[Owner]>::first(&owners) {
            // Another owner's database: its tables would not be the owner role's, and the
            // migrations and policies would fail or apply to the wrong role.
            if *owner != self.owner {
                return Err(Error::Provision(format!(
                    "database {} exists and is owned by {owner}, not {}: choose another \
                     database, or `ALTER DATABASE … OWNER TO` (and reassign its objects) first",
                    self.database, self.owner
                )));
            }
        } else {
            // Alone in its message: CREATE DATABASE cannot run in a transaction block.
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE {} OWNER {}",
                    quote_ident(&self.database),
                    quote_ident(&self.owner)
                ))
                .await?;
        }
        // One message, so one transaction: a role connecting meanwhile never finds its
        // `CONNECT` revoked.
        let mut privileges = crate::roles::database_sql(&self.database, &self.owner, &self.app);
        if let Some(analyst) = &self.analyst {
            privileges.push_str(&format!(
                "GRANT CONNECT ON DATABASE {} TO {};",
                quote_ident(&self.database),
                quote_ident(analyst)
            ));
        }
        admin.batch_execute(&privileges).await?;
        Ok(())
    }
}

#[derive(diesel::QueryableByName)]
struct Owner {
    #[diesel(sql_type = diesel::sql_types::Text)]
    owner: String,
}

/// `url` with its user, password and database replaced. Refuses what is not a
/// `postgres://` or `postgresql://` URL.
pub fn with_role(
    url: &str,
    role: &str,
    password: Option<&str>,
    database: &str,
) -> Result<String, Error> {
    let bad = |why: &str| Error::Provision(format!("cannot use database URL: {why}"));
    let mut parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(bad("not a postgres:// URL"));
    }
    parsed
        .set_username(role)
        .and_then(|()| parsed.set_password(password))
        .map_err(|()| bad("it has no host"))?;
    parsed.set_path(&format!("/{}", urlencode(database)));
    Ok(parsed.to_string())
}

/// Percent-encodes a path segment.
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The schema-level set-up, run as the owner after the migrations, in one transaction: the
/// sealed tenant's functions, every registered tenant table's policies and tenant index
/// ([`Registry::migration_sql`]), the admin audit table ([`crate::admin::setup_sql`]), the tenant directory
/// ([`crate::lifecycle::setup_sql`]), the
/// application role's read grants on `schema`
/// ([`crate::roles::grants_sql`]) and its writes on the registered tenant tables, and, with an
/// analyst role, its all-tenants views ([`crate::admin::read_all_setup_sql`]). Idempotent.
pub fn apply_sql(
    registry: &Registry,
    owner: &str,
    app: &str,
    schema: &str,
    analyst: Option<&str>,
) -> String {
    format!(
        "{}{}{}{}{}{}",
        registry.migration_sql(),
        crate::admin::setup_sql(app),
        crate::lifecycle::setup_sql(app),
        crate::roles::grants_sql(owner, app, schema),
        registry.write_grants_sql(app),
        analyst.map_or(String::new(), |a| crate::admin::read_all_setup_sql(
            registry, a
        )),
    )
}

/// Runs [`apply_sql`] on `owner`, a connection as the owner role, in one transaction.
pub async fn apply(
    owner_conn: &mut AsyncPgConnection,
    registry: &Registry,
    owner: &str,
    app: &str,
    schema: &str,
    analyst: Option<&str>,
) -> Result<(), Error> {
    owner_conn.batch_execute("BEGIN").await?;
    match owner_conn
        .batch_execute(&apply_sql(registry, owner, app, schema, analyst))
        .await
    {
        Ok(()) => Ok(owner_conn.batch_execute("COMMIT").await?),
        Err(e) => {
            let _ = owner_conn.batch_execute("ROLLBACK").await;
            Err(e.into())
        }
    }
}
