//! The sealed tenant setting: the tenant RLS enforces is the one tenant-db opened the
//! transaction for, whatever any later statement of the transaction sets.
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
//! [`setup_sql`] creates, in a schema `tenant_db` owned by the migration (owner) role:
//!
//! - `tenant_db.seal_key`: a random 256-bit key, readable by its owner only; the seal of a
//!   tenant is HMAC-SHA256 under that key of `'tenant' ‖ 0 ‖ backend pid ‖ transaction start
//!   time ‖ tenant`;
//! - `tenant_db.enter(tenant)` (`SECURITY DEFINER`): refuses unless it runs in the first
//!   message of its transaction (`statement_timestamp() = transaction_timestamp()`), then sets
//!   `app.current_tenant` and its seal `app.tenant_seal` for the transaction;
//! - `tenant_db.current_tenant()` (`SECURITY DEFINER`, what the policies call once per
//!   statement): the tenant, if the seal matches it for this backend and this transaction and
//!   the statement is not the first message; NULL (no rows) otherwise.
//!
//! tenant-db opens every transaction with one message, `BEGIN; SELECT tenant_db.enter('…')`.
//!
//! # Why it is sound
//!
//! For `current_tenant()` to return tenant `T` in transaction `X` on backend `P`, the seal
//! setting must equal `HMAC(key, T, P, start(X))`. The application role cannot read the key,
//! so only `enter` computes such a value, and `enter` does it only in the first
//! message of `X` (a later statement of the same transaction has a later statement time).
//! tenant-db sends that first message itself, for the tenant the transaction was opened for;
//! nothing a closure does runs in it. So:
//!
//! - `set_config`/`SET LOCAL` of the tenant inside the transaction: the seal no longer
//!   matches; the policy sees NULL and shows no rows.
//! - Copying another transaction's setting and seal: they name another start time (and
//!   usually another backend): no match.
//! - Calling `enter` again: refused (not the first message).
//! - Ending tenant-db's transaction early (`COMMIT; BEGIN` through an escape hatch): the new
//!   transaction's first message is the attacker's `BEGIN` alone, so `enter` cannot run in it;
//!   an implicit one-statement transaction that calls `enter` gets a seal that
//!   `current_tenant()` refuses in that same statement, and that is gone after it.
//! - A session-level value (`set_config(…, false)`) left on a pooled connection: the next
//!   transaction's `enter` overrides it, and outside that transaction it matches nothing.
//!
//! It needs no secret in the application and no writes, so it works on read replicas (the key
//! table is replicated) and behind PgBouncer in transaction mode (one transaction stays on one
//! server connection). It assumes the application role cannot change these functions or read
//! the key: it is not their owner, not a member of the owner, and has no `CREATE` on
//! `tenant_db` (what `roles` sets up and `doctor` audits). The message boundary it relies on
//! is PostgreSQL's: every statement sent separately, including each statement diesel sends,
//! gets its own statement time; only a multi-statement simple query shares one, and tenant-db
//! never sends one on a caller's behalf.
//!
//! # Cost
//!
//! `current_tenant()` runs once per statement per tenant table (an InitPlan): a PL/pgSQL call
//! with a cached plan, one row read and two SHA-256 over a few dozen bytes, about 10 µs of
//! server time measured here. The benchmark's RLS-cost figures measure it next to the unsealed
//! policy, on a 1000-row range and on a point read.

/// The transaction-local setting holding the tenant id; the policies read it through
/// `tenant_db.current_tenant()`, never directly.
pub const TENANT_SETTING: &str = "app.current_tenant";

/// The transaction-local setting holding the seal of [`TENANT_SETTING`].
pub const TENANT_SEAL_SETTING: &str = "app.tenant_seal";

/// The SQL expression a tenant policy compares the tenant column with (before the cast to the
/// column's type): the sealed tenant, or NULL.
pub const CURRENT_TENANT_CALL: &str = "tenant_db.current_tenant()";

/// The statement that opens a tenant transaction: `BEGIN` and `tenant_db.enter`, one simple
/// query message (so that both run before anything else, with one statement time).
/// `tenant_literal` must already be a quoted SQL literal. [`TenantDb`](crate::TenantDb) sends
/// it; it is public for tools that open tenant transactions on connections of their own.
pub fn begin_sql(tenant_literal: &str) -> String {
    format!("BEGIN; SELECT tenant_db.enter({tenant_literal})")
}

/// `HMAC-SHA256(key, 'tenant' ‖ 0 ‖ backend pid ‖ transaction start ‖ value)`, base64, as a
/// PL/pgSQL expression over variables `inner_key` / `outer_key` (the key's HMAC pads) and
/// `value`. Every name is schema-qualified, so no `search_path` can redirect it, and the
/// functions that use it need no `SET` clause (which would save and restore settings on each
/// call).
const SEAL_EXPR: &str = "pg_catalog.encode(pg_catalog.sha256(outer_key OPERATOR(pg_catalog.||)
        pg_catalog.sha256(inner_key
            OPERATOR(pg_catalog.||) pg_catalog.convert_to('tenant', 'UTF8')
            OPERATOR(pg_catalog.||) '\\x00'::pg_catalog.bytea
            OPERATOR(pg_catalog.||) pg_catalog.int4send(pg_catalog.pg_backend_pid())
            OPERATOR(pg_catalog.||) pg_catalog.timestamptz_send(pg_catalog.transaction_timestamp())
            OPERATOR(pg_catalog.||) pg_catalog.convert_to(value, 'UTF8'))), 'base64')";

/// Idempotent SQL, run as the tables' owner (in a migration), that creates the `tenant_db`
/// schema, the seal key (once; later runs keep it) and the functions described in the module
/// docs. [`migration_sql`](crate::rls::migration_sql) includes it.
///
/// Both functions compute the seal inline, in PL/pgSQL (which keeps its plans for the
/// session), reading the key with one cached statement: measured on the server, a nested
/// function call for the seal cost four times as much as the seal itself.
pub fn setup_sql() -> String {
    format!(
        r#"CREATE SCHEMA IF NOT EXISTS tenant_db;
REVOKE ALL ON SCHEMA tenant_db FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_db TO PUBLIC;
CREATE TABLE IF NOT EXISTS tenant_db.seal_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_key bytea NOT NULL CHECK (octet_length(inner_key) = 64),
    outer_key bytea NOT NULL CHECK (octet_length(outer_key) = 64)
);
REVOKE ALL ON tenant_db.seal_key FROM PUBLIC;
DO $tenant_db$
DECLARE
    k bytea := decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
               || decode(repeat('00', 32), 'hex');
    i bytea := k;
    o bytea := k;
BEGIN
    -- HMAC's padded keys: the key xor 0x36 and xor 0x5c, byte by byte.
    FOR n IN 0..63 LOOP
        i := set_byte(i, n, get_byte(k, n) # 54);
        o := set_byte(o, n, get_byte(k, n) # 92);
    END LOOP;
    INSERT INTO tenant_db.seal_key (inner_key, outer_key) VALUES (i, o)
        ON CONFLICT (singleton) DO NOTHING;
END
$tenant_db$;
DROP FUNCTION IF EXISTS tenant_db.seal(text, text);
CREATE OR REPLACE FUNCTION tenant_db.enter(tenant text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $tenant_db$
DECLARE
    value text := tenant;
    inner_key bytea;
    outer_key bytea;
BEGIN
    IF pg_catalog.statement_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.transaction_timestamp() THEN
        RAISE EXCEPTION 'tenant_db.enter runs only in the first statement of a transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF value IS NULL OR value OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'tenant_db.enter needs a tenant' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k.inner_key, k.outer_key INTO inner_key, outer_key FROM tenant_db.seal_key k;
    PERFORM pg_catalog.set_config('{TENANT_SETTING}', value, true);
    PERFORM pg_catalog.set_config('{TENANT_SEAL_SETTING}', {SEAL_EXPR}, true);
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.enter(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.enter(text) TO PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.current_tenant() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
AS $tenant_db$
DECLARE
    value text := pg_catalog.current_setting('{TENANT_SETTING}', true);
    inner_key bytea;
    outer_key bytea;
BEGIN
    IF value IS NULL OR value OPERATOR(pg_catalog.=) ''
       OR pg_catalog.statement_timestamp() OPERATOR(pg_catalog.=) pg_catalog.transaction_timestamp()
    THEN
        RETURN NULL;
    END IF;
    SELECT k.inner_key, k.outer_key INTO inner_key, outer_key FROM tenant_db.seal_key k;
    IF pg_catalog.current_setting('{TENANT_SEAL_SETTING}', true) OPERATOR(pg_catalog.=) {SEAL_EXPR} THEN
        RETURN value;
    END IF;
    RETURN NULL;
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.current_tenant() TO PUBLIC;
"#
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn begin_is_one_message_that_enters_the_tenant() {
        assert_eq!(
            super::begin_sql("'7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01'"),
            "BEGIN; SELECT tenant_db.enter('7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01')"
        );
    }

    #[test]
    fn setup_keeps_the_key_and_hides_it() {
        let sql = super::setup_sql();
        assert!(sql.contains("ON CONFLICT (singleton) DO NOTHING"));
        assert!(sql.contains("REVOKE ALL ON tenant_db.seal_key FROM PUBLIC"));
        // The two functions seal alike, with one expression.
        assert_eq!(sql.matches(super::SEAL_EXPR).count(), 2);
    }
}
