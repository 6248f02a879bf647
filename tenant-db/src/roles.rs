//! The two roles tenant-db expects: an **owner** that runs migrations and owns the tables, and
//! an **application** role that the service connects as.
//!
//! The application role is `NOSUPERUSER NOBYPASSRLS`, owns nothing, and has
//! `idle_in_transaction_session_timeout` set so that a stuck transaction cannot hold locks (or
//! a tenant's context) for long. By default it may only **read** ([`grants_sql`]): writes are
//! granted table by table, to tenant tables ([`tenant_table_write_sql`], typed so that only a
//! [`TenantTable`](crate::TenantTable) compiles) or, named separately, to a global table
//! ([`global_table_write_sql`]). It never gets `TRUNCATE`, `REFERENCES` or `TRIGGER`, `CREATE`
//! on a schema, or `TEMPORARY` on the database ([`database_sql`]). `doctor` checks all of it.
//!
//! Every builder checks the names it is given ([`check_name`](crate::rls::check_name)): a
//! name PostgreSQL would cut (over 63 bytes) or cannot hold (NUL, empty) is a typed error, not
//! SQL that acts on another role.
//!
//! ```
//! let sql = tenant_db::roles::create_roles_sql("app_owner", "app", "60s")?;
//! assert!(sql.contains("NOBYPASSRLS"));
//! let grants = tenant_db::roles::grants_sql("app_owner", "app", "public")?;
//! assert!(!grants.contains("TRUNCATE") && !grants.contains("INSERT"));
//! let long = "r".repeat(64);
//! assert!(tenant_db::roles::create_roles_sql("app_owner", &long, "60s").is_err());
//! # Ok::<(), tenant_db::rls::NameError>(())
//! ```

use crate::TenantTable;
use crate::rls::{NameError, ident, literal, quote_ident, quote_literal, table_name};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;

/// SQL (run as a superuser or a `CREATEROLE` role) that creates the owner and application
/// roles if they are missing and (re)applies their attributes. `idle_timeout` is a PostgreSQL
/// interval such as `60s`. Set passwords separately.
pub fn create_roles_sql(owner: &str, app: &str, idle_timeout: &str) -> Result<String, NameError> {
    let (o, a) = (ident("role", owner)?, ident("role", app)?);
    Ok(format!(
        "{}{}ALTER ROLE {o} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
         ALTER ROLE {a} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
         ALTER ROLE {a} SET idle_in_transaction_session_timeout = {timeout};
",
        ensure_role_sql(owner, true)?,
        ensure_role_sql(app, true)?,
        timeout = literal("idle timeout", idle_timeout)?,
    ))
}

/// SQL that creates role `role` (`LOGIN` or `NOLOGIN`) if it is missing; its attributes are
/// set by the statements that follow it.
pub(crate) fn ensure_role_sql(role: &str, login: bool) -> Result<String, NameError> {
    let ident = ident("role", role)?;
    Ok(crate::rls::do_block(&format!(
        " BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN
             CREATE ROLE {ident} {login};
           END IF;
         END ",
        lit = quote_literal(role),
        login = if login { "LOGIN" } else { "NOLOGIN" },
    )))
}

/// SQL (run as a superuser or the database's owner) that closes database `database` to
/// everyone but the two roles, and keeps `TEMPORARY` from the application role: a temporary
/// table outlives the transaction that created it and, named like a real table, would be read
/// and written in its place by the next transaction on the same pooled connection.
pub fn database_sql(database: &str, owner: &str, app: &str) -> Result<String, NameError> {
    let (d, o, a) = (
        ident("database", database)?,
        ident("role", owner)?,
        ident("role", app)?,
    );
    Ok(format!(
        "REVOKE ALL ON DATABASE {d} FROM PUBLIC;
         GRANT CONNECT, CREATE ON DATABASE {d} TO {o};
         REVOKE ALL ON DATABASE {d} FROM {a};
         GRANT CONNECT ON DATABASE {d} TO {a};
"
    ))
}

/// SQL (run as the owner, after the migrations) that lets the application role **read** every
/// table of `schema`, now and later (global tables for good; tenant tables under RLS), and
/// nothing more: no writes, no `CREATE` on the schema, nothing on diesel's migrations table.
/// Grant writes with [`tenant_table_write_sql`].
pub fn grants_sql(owner: &str, app: &str, schema: &str) -> Result<String, NameError> {
    let (o, a, s) = (
        ident("role", owner)?,
        ident("role", app)?,
        ident("schema", schema)?,
    );
    let migrations = quote_literal(&format!(
        "{}.{}",
        quote_ident(schema),
        quote_ident("__diesel_schema_migrations")
    ));
    let revoke_migrations = crate::rls::do_block(&format!(
        " BEGIN
           IF to_regclass({migrations}) IS NOT NULL THEN
             EXECUTE format('REVOKE ALL ON %s FROM %I', {migrations}, {app_lit});
           END IF;
         END ",
        app_lit = quote_literal(app),
    ));
    Ok(format!(
        "GRANT USAGE ON SCHEMA {s} TO {a};
         REVOKE CREATE ON SCHEMA {s} FROM {a};
         REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {a};
         GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {a};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} REVOKE ALL ON TABLES FROM {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT ON TABLES TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE ON SEQUENCES TO {a};
         {revoke_migrations}"
    ))
}

/// SQL (run as the owner) that lets the application role write tenant table `table` (already
/// quoted): `INSERT`, `UPDATE`, `DELETE`, under its RLS policies.
pub fn tenant_table_write_sql_for(app: &str, table: &str) -> Result<String, NameError> {
    write_grant_sql(app, table)
}

/// SQL (run as the owner) that lets the application role write tenant table `T`; only tenant
/// tables compile.
pub fn tenant_table_write_sql<T>(app: &str) -> Result<String, crate::Error>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    Ok(tenant_table_write_sql_for(app, &table_name::<T>()?)?)
}

/// SQL (run as the owner) that lets the application role write **global** table `table`
/// (already quoted), which every tenant then changes for all: grant it only for data the
/// service really maintains, never for data a tenant's request should change.
pub fn global_table_write_sql(app: &str, table: &str) -> Result<String, NameError> {
    write_grant_sql(app, table)
}

/// The one write grant, for the two named forms above.
fn write_grant_sql(app: &str, table: &str) -> Result<String, NameError> {
    if table.is_empty() {
        return Err(NameError::Empty { what: "table" });
    }
    if table.contains('\0') {
        return Err(NameError::Nul {
            what: "table",
            text: table.to_string(),
        });
    }
    Ok(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {};\n",
        ident("role", app)?
    ))
}
