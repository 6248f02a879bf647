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
    also_connect: Vec<String>,
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
    /// Whether the two-key advisory-lock functions, with which any role could freeze a tenant
    /// or hold up its move, are now the owner's alone in the database
    /// ([`placement::fence::lock_guard_sql`](crate::placement::fence::lock_guard_sql)). Only a
    /// superuser can change them; provisioned by another role, this is `false`: run that SQL as
    /// a superuser.
    pub tenant_locks_guarded: bool,
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
            also_connect: Vec::new(),
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

    /// Lets existing role `role` connect to the database too (every other role's privileges
    /// on it are revoked).
    pub fn also_connect(mut self, role: &str) -> Self {
        self.also_connect.push(role.to_string());
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
    fn roles_sql(&self) -> Result<String, Error> {
        let mut sql = crate::roles::create_roles_sql(&self.owner, &self.app, &self.idle_timeout)?;
        // An existing application role keeps nothing that reaches past its grants.
        sql.push_str(&format!(
            "ALTER ROLE {o} NOREPLICATION;\nALTER ROLE {a} NOREPLICATION;\nREVOKE {o} FROM {a};\n",
            o = quote_ident(&self.owner),
            a = quote_ident(&self.app),
        ));
        for (role, password) in [
            (&self.owner, &self.owner_password),
            (&self.app, &self.app_password),
        ] {
            if let Some(password) = password {
                sql.push_str(&format!(
                    "ALTER ROLE {} PASSWORD {};\n",
                    quote_ident(role),
                    crate::rls::literal("password", password)?
                ));
            }
        }
        if let Some(analyst) = &self.analyst {
            let views = crate::admin::views_role(analyst)?;
            let (a, v) = (quote_ident(analyst), quote_ident(&views));
            sql.push_str(&crate::roles::ensure_role_sql(analyst, true)?);
            sql.push_str(&crate::roles::ensure_role_sql(&views, false)?);
            sql.push_str(&format!(
                "ALTER ROLE {a} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                 ALTER ROLE {v} NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE;
                 GRANT {v} TO {o};
",
                o = quote_ident(&self.owner),
            ));
        }
        Ok(sql)
    }

    /// Connects to `admin_url` (a superuser, or a role with `CREATEROLE` and `CREATEDB`) and
    /// creates or updates the roles, the database (owned by the owner role) and its
    /// privileges ([`crate::roles::database_sql`]).
    pub async fn run(&self, admin_url: &str) -> Result<Provisioned, Error> {
        checked_name("database", &self.database)?;
        let mut roles = vec![&self.owner, &self.app];
        roles.extend(&self.analyst);
        for role in roles.iter().copied().chain(&self.also_connect) {
            checked_name("role", role)?;
        }
        let views = self
            .analyst
            .as_deref()
            .map(crate::admin::views_role)
            .transpose()?;
        for (i, role) in roles.iter().enumerate() {
            if roles[..i].contains(role) || views.as_ref() == Some(*role) {
                return Err(Error::Provision(format!(
                    "role `{role}` is named twice: the owner, the application and the analyst \
                     roles are three different roles"
                )));
            }
        }
        // Before anything is created: a URL that cannot be rewritten fails here.
        let provisioned = Provisioned {
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
            tenant_locks_guarded: false,
        };
        let in_database = crate::placement::url_with_database(admin_url, &self.database)?;
        let mut admin = AsyncPgConnection::establish(admin_url).await?;
        admin
            .batch_execute(&format!("SELECT pg_advisory_lock({PROVISION_LOCK})"))
            .await?;
        let created = self.create(&mut admin).await;
        // In the database itself (function privileges are per database), still under the
        // lock: concurrent grants on one function collide ("tuple concurrently updated").
        let guarded = match created {
            Ok(()) => Ok(self.guard_locks(&in_database).await),
            Err(e) => Err(e),
        };
        let unlocked = admin
            .batch_execute(&format!("SELECT pg_advisory_unlock({PROVISION_LOCK})"))
            .await;
        let guarded = guarded?;
        unlocked?;
        Ok(Provisioned {
            tenant_locks_guarded: guarded,
            ..provisioned
        })
    }

    /// Leaves the two-key advisory-lock functions to the owner in the database at `url` (see
    /// [`lock_guard_sql`](crate::placement::fence::lock_guard_sql)); whether it could (only a
    /// superuser can).
    async fn guard_locks(&self, url: &str) -> bool {
        match AsyncPgConnection::establish(url).await {
            Ok(mut inside) => match crate::placement::fence::lock_guard_sql(&self.owner) {
                Ok(sql) => inside.batch_execute(&sql).await.is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    async fn create(&self, admin: &mut AsyncPgConnection) -> Result<(), Error> {
        admin.batch_execute(&self.roles_sql()?).await?;
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
        let mut privileges = crate::roles::database_sql(&self.database, &self.owner, &self.app)?;
        // Closed to every other role that was granted anything on it.
        let mut allowed: Vec<&str> = vec![&self.owner, &self.app];
        allowed.extend(self.analyst.as_deref());
        allowed.extend(self.also_connect.iter().map(String::as_str));
        privileges.push_str(&crate::rls::do_block(&format!(
            " DECLARE g record; BEGIN
               FOR g IN SELECT DISTINCT pg_get_userbyid(a.grantee) AS name
                        FROM pg_database d, aclexplode(d.datacl) a
                        WHERE d.datname = {db} AND a.grantee <> 0 LOOP
                 IF NOT g.name = ANY (ARRAY[{allowed}]::text[]) THEN
                   EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', {db}, g.name);
                 END IF;
               END LOOP;
             END ",
            db = quote_literal(&self.database),
            allowed = allowed
                .iter()
                .map(|r| quote_literal(r))
                .collect::<Vec<_>>()
                .join(", "),
        )));
        for role in &self.also_connect {
            privileges.push_str(&format!(
                "GRANT CONNECT ON DATABASE {} TO {};",
                quote_ident(&self.database),
                quote_ident(role)
            ));
        }
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
/// `postgres://` or `postgresql://` URL. Connection parameters in the query that would
/// override them (`user`, `password`, `dbname`, `passfile`) are dropped; a URL without a host
/// (a Unix socket, `postgresql:///db?host=/run/postgresql`) gets the role and the password as
/// query parameters.
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
    let mut kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| !matches!(k.as_ref(), "user" | "password" | "dbname" | "passfile"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed.set_query(None);
    parsed.set_path(&format!("/{}", urlencode(database)));
    if parsed.host_str().is_some_and(|h| !h.is_empty()) {
        parsed
            .set_username(role)
            .and_then(|()| parsed.set_password(password))
            .map_err(|()| bad("its user cannot be set"))?;
    } else {
        kept.push(("user".to_string(), role.to_string()));
        if let Some(password) = password {
            kept.push(("password".to_string(), password.to_string()));
        }
    }
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    Ok(parsed.to_string())
}

/// A role or database name PostgreSQL keeps as given: not empty, at most 63 bytes (longer
/// names are cut, so a second run would not find what the first created), no NUL.
fn checked_name(what: &'static str, name: &str) -> Result<(), Error> {
    Ok(crate::rls::check_name(what, name)?)
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
) -> Result<String, crate::rls::NameError> {
    Ok(format!(
        "{}{}{}{}{}{}",
        registry.migration_sql(),
        crate::admin::setup_sql(app)?,
        crate::lifecycle::setup_sql(app)?,
        crate::roles::grants_sql(owner, app, schema)?,
        registry.write_grants_sql(app)?,
        match analyst {
            Some(a) => crate::admin::read_all_setup_sql(registry, a)?,
            None => String::new(),
        },
    ))
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
    let sql = apply_sql(registry, owner, app, schema, analyst)?;
    owner_conn.batch_execute("BEGIN").await?;
    match owner_conn.batch_execute(&sql).await {
        Ok(()) => Ok(owner_conn.batch_execute("COMMIT").await?),
        Err(e) => {
            let _ = owner_conn.batch_execute("ROLLBACK").await;
            Err(e.into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Provision, with_role};

    #[tokio::test]
    async fn names_postgresql_cannot_hold_are_refused_before_anything_runs() {
        // Nothing listens on port 1: a refusal here comes before any connection.
        let url = "postgres://postgres@127.0.0.1:1/postgres";
        let long = "r".repeat(64);
        for p in [
            Provision::new(&long, "o", "a"),
            Provision::new("db", "o\0x", "a"),
            Provision::new("db", "o", ""),
            Provision::new("db", "o", "a").analyst(&long),
            Provision::new("db", "o", "a").also_connect(&long),
            Provision::new("db", "o", "a").also_connect("x\0"),
        ] {
            let e = p
                .run(url)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("PostgreSQL keeps 63")
                    || e.contains("NUL character")
                    || e.contains("name is empty"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_role_and_database_replace_whatever_the_url_says() {
        let cases = [
            (
                "postgres://admin:adminpw@db:5432/postgres?sslmode=require",
                "postgres://app@db:5432/app?sslmode=require",
            ),
            // Parameters that would override the user, password or database are dropped.
            (
                "postgres://127.0.0.1:5432/postgres?user=postgres&dbname=postgres&password=x&passfile=/p",
                "postgres://app@127.0.0.1:5432/app",
            ),
            // A socket URL has no host to carry the user: the query does.
            (
                "postgresql:///postgres?host=/var/run/postgresql&user=postgres",
                "postgresql:///app?host=%2Fvar%2Frun%2Fpostgresql&user=app",
            ),
        ];
        for (admin, app) in cases {
            assert_eq!(
                with_role(admin, "app", None, "app").unwrap(),
                app,
                "{admin}"
            );
        }
        assert_eq!(
            with_role("postgres://a@h/d", "o w", Some("p@ss/word"), "my db").unwrap(),
            "postgres://o%20w:p%40ss%2Fword@h/my%20db"
        );
        for bad in ["mysql://h/d", "not a url"] {
            assert!(with_role(bad, "app", None, "app").is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_are_checked_before_anything_is_created() {
        // Nothing listens there: each refusal comes before connecting.
        let admin = "postgres://postgres@127.0.0.1:1/postgres";
        let long = "x".repeat(64);
        for (provision, why) in [
            (Provision::new(&long, "o", "a"), "PostgreSQL keeps 63"),
            (Provision::new("d", &long, "a"), "PostgreSQL keeps 63"),
            (Provision::new("d", "o", ""), "name is empty"),
            (
                Provision::new("d", "o", "a").analyst(&"x".repeat(58)),
                "PostgreSQL keeps 63",
            ),
            (Provision::new("d", "same", "same"), "named twice"),
            (Provision::new("d", "o", "a").analyst("o"), "named twice"),
            (
                Provision::new("d", "o", "a_views").analyst("a"),
                "named twice",
            ),
            (Provision::new("d", "o", "a"), "could not connect"),
            // 63 bytes is PostgreSQL's limit, and allowed.
            (
                Provision::new(&"x".repeat(63), "o", "a"),
                "could not connect",
            ),
        ] {
            let err = provision.run(admin).await.unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
