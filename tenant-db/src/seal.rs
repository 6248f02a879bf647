//! The sealed tenant: the tenant RLS enforces is the one tenant-db opened the transaction for,
//! whatever any later statement of the transaction sets.
//!
//! # The problem
//!
//! Any role can set any `app.*` setting from any statement that can call a function
//! (`set_config` is reachable through `diesel::define_sql_function!`), or with `SET LOCAL`
//! through an escape hatch. A policy that trusts `current_setting('app.current_tenant')`
//! therefore trusts every statement of the transaction, not the one that chose the tenant.
//!
//! # The mechanism
//!
//! The tenant the policies trust lives in a transaction-local setting whose *name* is a secret
//! only the migration (owner) role can read. [`setup_sql`] creates, in a schema `tenant_db`
//! owned by that role:
//!
//! - `tenant_db.seal_name`: a sequence, readable by its owner only, whose value (60 random bits,
//!   drawn once) names the settings: `tenant_db.s<value>_<kind>`, one per key kind (`uuid`,
//!   `int`, `text`; see [`KeyKind`](crate::KeyKind));
//! - `tenant_db.enter(tenant, kind)` (`SECURITY DEFINER`): refuses unless it runs in the first
//!   message of its transaction (`statement_timestamp() = transaction_timestamp()`), checks that
//!   `tenant` is a key of that kind, then sets the secret setting of that kind to the tenant for
//!   the transaction (and `app.current_tenant`, for your logs; no policy trusts it);
//! - `tenant_db.current_tenant()` and `tenant_db.current_tenant(kind)` (`SECURITY DEFINER`,
//!   what the policies call once per statement): the secret setting of kind `uuid` (or `kind`),
//!   unless the statement is the first message of its transaction; NULL (no rows) when it is
//!   unset or empty. A transaction entered for a tenant of one kind has no tenant of any other
//!   kind, so tables keyed by another type show it nothing: a UUID is never read as a text key.
//!
//! tenant-db opens every transaction with one message,
//! `BEGIN; SELECT tenant_db.enter('…', '<kind>')`.
//!
//! # Why it is sound
//!
//! A statement can set a setting only by naming it, and PostgreSQL lists no custom setting that
//! no extension defines (`SHOW ALL`, `pg_settings` and `pg_show_all_settings()` leave them out),
//! so the application role, which cannot read the sequence, cannot name the secret setting:
//! only `enter` sets it, and `enter` does so only in the first message of a transaction (a later
//! statement of the same transaction has a later statement time). tenant-db sends that first
//! message itself, for the tenant the transaction was opened for; nothing a closure does runs
//! in it. So:
//!
//! - `set_config`/`SET LOCAL` of `app.current_tenant` inside the transaction: not the setting
//!   the policies read.
//! - Guessing the name: one guess per call, 2⁶⁰ names.
//! - Calling `enter` again: refused (not the first message).
//! - Ending tenant-db's transaction early (`COMMIT; BEGIN` through an escape hatch): the
//!   setting is transaction-local, so it is gone, and the new transaction's first message is
//!   the attacker's `BEGIN` alone, so `enter` cannot run in it; an implicit one-statement
//!   transaction that calls `enter` sets a tenant that `current_tenant()` refuses in that same
//!   statement, and that is gone after it.
//! - A session-level value left on a pooled connection: it would need the name.
//!
//! It needs no secret in the application and no writes, so it works on read replicas (the
//! sequence is replicated) and behind PgBouncer in transaction mode (one transaction stays on
//! one server connection). It assumes the application role cannot change these functions or
//! read the sequence: it is not their owner, not a member of the owner, and has no `CREATE` on
//! `tenant_db` (what `roles` sets up and `doctor` audits). The message boundary it relies on is
//! PostgreSQL's: every statement sent separately, including each statement diesel sends, gets
//! its own statement time; only a multi-statement simple query shares one, and tenant-db never
//! sends one on a caller's behalf. A leaked name is replaced with [`rotate_sql`].
//!
//! # Cost
//!
//! `current_tenant()` runs once per statement per tenant table (an InitPlan): a PL/pgSQL call
//! of one expression that reads one sequence value and one setting, no table and no hashing. Measured on the
//! server, it costs about 4 µs more than reading `app.current_tenant` directly (a first design,
//! an HMAC of the tenant under a key in a table, cost 9 µs more). The benchmark's RLS-cost
//! figures measure it next to the unsealed policy, on a 1000-row range and on a point read.

use crate::TenantId;

/// The transaction-local setting `enter` also sets to the tenant, for logs and for code that
/// wants to read it; no tenant-db policy trusts it (see the module docs).
pub const TENANT_SETTING: &str = "app.current_tenant";

/// The SQL call a tenant policy compares the tenant column with (before the cast to the
/// column's type): the sealed tenant, or NULL. Policies on columns of other key types call
/// `tenant_db.current_tenant('<kind>')` (see [`KeyType::current_tenant_expr`]).
///
/// [`KeyType::current_tenant_expr`]: crate::KeyType::current_tenant_expr
pub const CURRENT_TENANT_CALL: &str = "tenant_db.current_tenant(";

/// The statement that opens a tenant transaction for `tenant`: `BEGIN` and
/// `tenant_db.enter('<tenant>', '<kind>')`, one simple query message (so that both run before
/// anything else, with one statement time). [`TenantDb`](crate::TenantDb) sends it; it is
/// public for tools that open tenant transactions on connections of their own.
///
/// A [`TenantId`] prints as hex digits and hyphens, decimal digits, or a text key's letters,
/// digits and `-_.:`; it is quoted as a literal all the same.
pub fn begin_sql(tenant: &TenantId) -> String {
    begin_sql_with(tenant, "")
}

/// [`begin_sql`] with transaction modes after `BEGIN` (`ISOLATION LEVEL REPEATABLE READ READ
/// ONLY`; empty for none).
pub(crate) fn begin_sql_with(tenant: &TenantId, modes: &str) -> String {
    Begin::new(tenant).modes(modes).sql()
}

/// The first message of a tenant transaction, with its options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Begin<'a> {
    tenant: &'a TenantId,
    modes: &'a str,
    schema: Option<&'a str>,
    for_move: bool,
    statement_timeout_ms: Option<u64>,
    context: Option<&'a crate::context::Context>,
}

impl<'a> Begin<'a> {
    pub(crate) fn new(tenant: &'a TenantId) -> Self {
        Begin {
            tenant,
            modes: "",
            schema: None,
            for_move: false,
            statement_timeout_ms: None,
            context: None,
        }
    }

    /// Context values sealed after the tenant ([`crate::context`]), in the same message.
    pub(crate) fn context(mut self, context: Option<&'a crate::context::Context>) -> Self {
        self.context = context;
        self
    }

    /// `SET LOCAL statement_timeout` to `ms` milliseconds (a tier's limit), in the same
    /// message.
    pub(crate) fn statement_timeout(mut self, ms: Option<u64>) -> Self {
        self.statement_timeout_ms = ms;
        self
    }

    /// Transaction modes after `BEGIN`.
    pub(crate) fn modes(mut self, modes: &'a str) -> Self {
        self.modes = modes;
        self
    }

    /// A bridge placement's schema: `SET LOCAL search_path` to it (then `public`, for global
    /// tables), in the same message.
    pub(crate) fn schema(mut self, schema: Option<&'a str>) -> Self {
        self.schema = schema;
        self
    }

    /// Enters with `tenant_db.enter_for_move`, which only the owner may call: no placement
    /// checks (see [`crate::placement`]).
    pub(crate) fn for_move(mut self, for_move: bool) -> Self {
        self.for_move = for_move;
        self
    }

    pub(crate) fn sql(&self) -> String {
        let mut sql = if self.modes.is_empty() {
            "BEGIN".to_string()
        } else {
            format!("BEGIN {}", self.modes)
        };
        if let Some(ms) = self.statement_timeout_ms {
            sql.push_str(&format!("; SET LOCAL statement_timeout = {ms}"));
        }
        if let Some(schema) = self.schema {
            sql.push_str(&format!(
                "; SET LOCAL search_path TO {}, public",
                crate::rls::quote_ident(schema)
            ));
        }
        let function = if self.for_move {
            "enter_for_move"
        } else {
            "enter"
        };
        sql.push_str(&format!(
            "; SELECT tenant_db.{function}({}, '{}')",
            crate::rls::quote_literal(&self.tenant.to_string()),
            self.tenant.kind().name()
        ));
        if let Some(context) = self.context.and_then(crate::context::Context::enter_sql) {
            sql.push_str("; ");
            sql.push_str(&context);
        }
        sql
    }
}

/// The secret setting's name for key kind `kind` (a PL/pgSQL expression), as a PL/pgSQL
/// expression: `tenant_db.s<sequence value>_<kind>`. Every name is schema-qualified, so no
/// `search_path` can redirect it, and the functions that use it need no `SET` clause (which
/// would save and restore settings on each call).
pub(crate) fn secret_name(kind: &str) -> String {
    format!(
        "'tenant_db.s' OPERATOR(pg_catalog.||)
        pg_catalog.pg_sequence_last_value('tenant_db.seal_name'::pg_catalog.regclass)
        OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) {kind}"
    )
}

/// The body of `current_tenant`: the sealed tenant of key kind `kind`, unless the statement is
/// the first message of its transaction; NULL when unset or empty.
fn current_tenant_body(kind: &str) -> String {
    format!(
        "BEGIN
    RETURN CASE
        WHEN pg_catalog.statement_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.transaction_timestamp()
        THEN NULLIF(pg_catalog.current_setting({}, true), '')
    END;
END",
        secret_name(kind)
    )
}

/// The statements (PL/pgSQL, in a function with parameters `tenant` and `kind`) that check
/// that this is the first message of the transaction and that `tenant` is a key of `kind`,
/// then set the secret setting of that kind to it: the body of `tenant_db.set_tenant`, and
/// written out in `tenant_db.enter` too (a nested call costs a few microseconds a transaction).
fn set_tenant_body() -> String {
    format!(
        "    IF pg_catalog.statement_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.transaction_timestamp() THEN
        RAISE EXCEPTION 'tenant_db.enter runs only in the first statement of a transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF tenant IS NULL OR tenant OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'tenant_db.enter needs a tenant' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind OPERATOR(pg_catalog.=) 'uuid' THEN
        PERFORM tenant::pg_catalog.uuid;
    ELSIF kind OPERATOR(pg_catalog.=) 'int' THEN
        IF tenant::pg_catalog.int8 OPERATOR(pg_catalog.<=) 0 THEN
            RAISE EXCEPTION 'tenant_db.enter: integer tenants are positive'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF kind IS DISTINCT FROM 'text' THEN
        RAISE EXCEPTION 'tenant_db.enter: unknown key kind' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.set_config({enter_name}, tenant, true);
    PERFORM pg_catalog.set_config('{TENANT_SETTING}', tenant, true);
",
        enter_name = secret_name("kind"),
    )
}

/// A new random value for the secret name's sequence: 60 bits, from two random UUIDs.
const RANDOM_NAME: &str = "('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(
        pg_catalog.gen_random_uuid()::text OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::text),
        1, 15))::bit(60)::bigint";

/// Idempotent SQL, run as the tables' owner (in a migration), that creates the `tenant_db`
/// schema, the secret name (once; later runs keep it) and the functions described in the
/// module docs. [`migration_sql`](crate::rls::migration_sql) includes it.
pub fn setup_sql() -> String {
    format!(
        r#"CREATE SCHEMA IF NOT EXISTS tenant_db;
REVOKE ALL ON SCHEMA tenant_db FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_db TO PUBLIC;
CREATE SEQUENCE IF NOT EXISTS tenant_db.seal_name MINVALUE 1 MAXVALUE 9223372036854775807;
REVOKE ALL ON SEQUENCE tenant_db.seal_name FROM PUBLIC;
DO $tenant_db$
BEGIN
    IF pg_catalog.pg_sequence_last_value('tenant_db.seal_name'::pg_catalog.regclass) IS NULL THEN
        PERFORM pg_catalog.setval('tenant_db.seal_name'::pg_catalog.regclass, {RANDOM_NAME});
    END IF;
END
$tenant_db$;
DROP FUNCTION IF EXISTS tenant_db.seal(text, text);
DROP FUNCTION IF EXISTS tenant_db.enter(text);
CREATE OR REPLACE FUNCTION tenant_db.set_tenant(tenant text, kind text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $tenant_db$
BEGIN
{set_tenant}END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.set_tenant(text, text) FROM PUBLIC;
{fences}CREATE OR REPLACE FUNCTION tenant_db.enter(tenant text, kind text DEFAULT 'uuid') RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $tenant_db$
BEGIN
{placed}{set_tenant}END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.enter(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.enter(text, text) TO PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.current_tenant() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
AS $tenant_db$
{uuid_body}
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.current_tenant() TO PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.current_tenant(kind text) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
AS $tenant_db$
{kind_body}
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.current_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.current_tenant(text) TO PUBLIC;
{context}DROP TABLE IF EXISTS tenant_db.seal_key;
"#,
        set_tenant = set_tenant_body(),
        fences = crate::placement::fence::setup_sql(),
        placed = crate::placement::fence::placed_check(),
        uuid_body = current_tenant_body("'uuid'"),
        kind_body = current_tenant_body("kind"),
        context = crate::context::setup_sql(),
    )
}

/// SQL, run as the owner, that draws a new secret name (after a leak, or on a schedule).
/// Each later transaction uses the new name. A transaction open at that moment loses its
/// tenant for the statements it has left (they see no rows and write none: it fails closed),
/// so rotate when a few failed requests can be retried.
pub fn rotate_sql() -> String {
    format!(
        "SELECT pg_catalog.setval('tenant_db.seal_name'::pg_catalog.regclass, {RANDOM_NAME});\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn begin_is_one_message_that_enters_the_tenant_and_its_kind()
    -> Result<(), crate::ParseTenantIdError> {
        let cases = [
            (
                "7F1F2C1E-1111-4B5B-9A1A-5D2C0D4F8E01".parse()?,
                "'7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01', 'uuid'",
            ),
            (crate::TenantId::parse_int("42")?, "'42', 'int'"),
            (crate::TenantId::parse_text("acme:eu")?, "'acme:eu', 'text'"),
        ];
        for (tenant, args) in cases {
            assert_eq!(
                super::begin_sql(&tenant),
                format!("BEGIN; SELECT tenant_db.enter({args})")
            );
        }
        Ok(())
    }

    #[test]
    fn a_statement_timeout_rides_in_the_first_message() {
        let tenant = crate::TenantId::new_random();
        let sql = super::Begin::new(&tenant)
            .statement_timeout(Some(250))
            .sql();
        assert!(
            sql.starts_with("BEGIN; SET LOCAL statement_timeout = 250; SELECT tenant_db.enter("),
            "{sql}"
        );
        assert!(
            !super::Begin::new(&tenant)
                .sql()
                .contains("statement_timeout")
        );
    }

    #[test]
    fn setup_keeps_the_name_and_hides_it() {
        let sql = super::setup_sql();
        assert!(sql.contains("IS NULL THEN"));
        assert!(sql.contains("REVOKE ALL ON SEQUENCE tenant_db.seal_name FROM PUBLIC"));
        // `set_tenant`, `enter` (which writes `set_tenant`'s body out), both readers, and the
        // context's writer (its value and the three tenant kinds it checks) and reader name
        // the settings alike, with one expression.
        assert_eq!(
            sql.matches("pg_sequence_last_value('tenant_db.seal_name'")
                .count(),
            10
        );
        assert!(sql.contains(&super::secret_name("kind")));
        assert!(sql.contains(&super::secret_name("'uuid'")));
        assert!(super::rotate_sql().contains("setval"));
    }
}
