//! The two roles tenant-db expects: an **owner** that runs migrations and owns the tables, and
//! an **application** role that the service connects as.
//!
//! The application role is `NOSUPERUSER NOBYPASSRLS`, owns nothing, gets only `SELECT`,
//! `INSERT`, `UPDATE`, `DELETE` on tables (no `TRUNCATE`, `REFERENCES` or `TRIGGER`) and
//! `USAGE` on sequences, and has `idle_in_transaction_session_timeout` set so that a stuck
//! transaction cannot hold locks (or a tenant's context) for long. `doctor` checks all of it.
//!
//! ```
//! let sql = tenant_db::roles::create_roles_sql("app_owner", "app", "60s");
//! assert!(sql.contains("NOBYPASSRLS"));
//! let grants = tenant_db::roles::grants_sql("app_owner", "app", "public");
//! assert!(!grants.contains("TRUNCATE"));
//! ```

use crate::rls::{quote_ident, quote_literal};

/// SQL (run as a superuser or a `CREATEROLE` role) that creates the owner and application
/// roles if they are missing and (re)applies their attributes. `idle_timeout` is a PostgreSQL
/// interval such as `60s`. Set passwords separately.
pub fn create_roles_sql(owner: &str, app: &str, idle_timeout: &str) -> String {
    let (o, a) = (quote_ident(owner), quote_ident(app));
    format!(
        "DO $tenant_db$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {owner_lit}) THEN
             CREATE ROLE {o} LOGIN;
           END IF;
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {app_lit}) THEN
             CREATE ROLE {a} LOGIN;
           END IF;
         END $tenant_db$;
         ALTER ROLE {o} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
         ALTER ROLE {a} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
         ALTER ROLE {a} SET idle_in_transaction_session_timeout = {timeout};
",
        owner_lit = quote_literal(owner),
        app_lit = quote_literal(app),
        timeout = quote_literal(idle_timeout),
    )
}

/// SQL (run as the owner, after the migrations) that grants the application role what it
/// needs in `schema`, now and for tables the owner creates later, and nothing more.
pub fn grants_sql(owner: &str, app: &str, schema: &str) -> String {
    let (o, a, s) = (quote_ident(owner), quote_ident(app), quote_ident(schema));
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {a};
         REVOKE CREATE ON SCHEMA {s} FROM {a};
         REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {a};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {a};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s}
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s}
             GRANT USAGE ON SEQUENCES TO {a};
"
    )
}
