//! The wall that keeps a tenant in one database: fences, and the per-tenant lock that freezes a
//! tenant's writes while it moves.
//!
//! Every database tenant-db sets up has a table `tenant_db.fences` of tenants that are **not
//! placed there**: `incoming` (a move is copying the tenant in) or `moved` (the tenant left).
//! `tenant_db.enter`, which opens every tenant transaction, refuses a fenced tenant, so a
//! router with an out-of-date directory, or any other client, cannot read or write a tenant
//! where it does not live. The refusal is a `serialization_failure` (SQLSTATE `40001`) whose
//! message starts with `tenant_db.placement:`; tenant-db reports it as
//! [`Error::Moved`](crate::Error::Moved): retry the transaction, and it goes to the tenant's
//! new placement.
//!
//! `enter` also takes a shared transaction-level advisory lock on the tenant
//! ([`lock_key_sql`]). A mover freezes the tenant in a database by taking that lock
//! exclusively: it waits for the tenant's open transactions there to end, and every
//! transaction that starts meanwhile waits for the freeze to end and is then refused as above
//! (its `BEGIN` ran before the fence it must not miss). Other tenants are not affected (a hash
//! collision between two tenants' keys makes the other one retry too). No other role may take
//! two-key advisory locks in the database ([`lock_guard_sql`], run by provisioning): otherwise
//! any session could freeze a tenant, or hold up its move, by taking its lock.
//!
//! Only the owner may change the fences (`tenant_db.set_fence`) or enter a fenced tenant
//! (`tenant_db.enter_for_move`, what a [`Mover`](super::Mover) copies and cleans up with); the
//! application role can neither, nor read the fences, nor the keys a move captures
//! (`tenant_db.capturing`, `tenant_db.captured`, written by the trigger function
//! `tenant_db.capture` while a move of the tenant from this database is under way).
//!
//! # Snapshots
//!
//! A `READ COMMITTED` transaction checks the fences after it holds the lock, with a snapshot
//! taken then, so it sees a fence committed during a freeze. A `REPEATABLE READ` or
//! `SERIALIZABLE` transaction reads with the snapshot its first statement took: one that may
//! predate a fence committed while `enter` ran, or any older one, imported in the same first
//! message with `SET TRANSACTION SNAPSHOT`. Such a transaction, read-only or not, compares a
//! counter no snapshot hides (the sequence `tenant_db.fence_version`, advanced before every
//! fence change commits) with the version its snapshot shows, and is refused when they
//! differ. A fence change that never commits (its mover was killed) leaves them differing
//! until [`repair_sql`] runs (the mover's resume and rollback run it): until then,
//! transactions at those isolation levels are refused, `READ COMMITTED` ones are not.

/// The advisory-lock class of tenant-db's tenant locks (`pg_advisory_lock(class, key)`):
/// `0x74646270`, "tdbp". Keep your own two-key advisory locks out of it.
pub const LOCK_CLASS: i32 = 0x7464_6270;

/// The advisory-lock functions that take a two-key lock (`(class, key)`, tenant-db's form).
const TWO_KEY_LOCKS: [&str; 8] = [
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
];

/// SQL, run as a superuser in a database, that leaves the two-key advisory-lock functions to
/// `owner` (and superusers) alone: any role could otherwise take a tenant's lock
/// exclusively (freezing that tenant's transactions for as long as it likes) or shared (holding
/// up its move). `tenant_db.enter` and the mover run as the owner. The one-key forms
/// (`pg_advisory_lock(bigint)`, …), a separate lock space, stay open to every role.
/// [`Provision`](crate::provision::Provision) runs it.
pub fn lock_guard_sql(owner: &str) -> Result<String, crate::rls::NameError> {
    let owner = crate::rls::ident("role", owner)?;
    let functions: Vec<String> = TWO_KEY_LOCKS
        .iter()
        .map(|f| format!("pg_catalog.{f}(integer, integer)"))
        .collect();
    let functions = functions.join(", ");
    Ok(format!(
        "REVOKE EXECUTE ON FUNCTION {functions} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {functions} TO {owner};"
    ))
}

/// SQL, run as a superuser, that revokes the two-key advisory-lock functions from `role`
/// itself (a grant [`lock_guard_sql`]'s revoke from PUBLIC leaves in place).
pub fn lock_revoke_sql(role: &str) -> Result<String, crate::rls::NameError> {
    let role = crate::rls::ident("role", role)?;
    let functions: Vec<String> = TWO_KEY_LOCKS
        .iter()
        .map(|f| format!("pg_catalog.{f}(integer, integer)"))
        .collect();
    Ok(format!(
        "REVOKE EXECUTE ON FUNCTION {} FROM {role};",
        functions.join(", ")
    ))
}

/// SQL for the second key of `tenant`'s lock, from SQL expressions for the tenant (`text`) and
/// its key kind (`text`).
pub(crate) fn lock_key_sql(tenant: &str, kind: &str) -> String {
    format!(
        "pg_catalog.hashtext({kind} OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) {tenant})"
    )
}

/// The message prefix of the database's refusals.
pub(crate) const REFUSAL: &str = "tenant_db.placement:";

/// The fences, their version, and the owner-only function that changes them. Part of
/// [`crate::seal::setup_sql`].
pub(crate) fn setup_sql() -> &'static str {
    "CREATE TABLE IF NOT EXISTS tenant_db.fences (
    tenant_key text NOT NULL,
    key_kind text NOT NULL,
    state text NOT NULL CHECK (state IN ('incoming', 'moved')),
    since timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tenant_key, key_kind)
);
REVOKE ALL ON tenant_db.fences FROM PUBLIC;
CREATE TABLE IF NOT EXISTS tenant_db.fence_epoch (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO tenant_db.fence_epoch (one, version) VALUES (true, 0) ON CONFLICT DO NOTHING;
REVOKE ALL ON tenant_db.fence_epoch FROM PUBLIC;
CREATE SEQUENCE IF NOT EXISTS tenant_db.fence_version MINVALUE 0 START 0;
REVOKE ALL ON SEQUENCE tenant_db.fence_version FROM PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.set_fence(tenant text, kind text, fence text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $tenant_db$
DECLARE
    next bigint;
BEGIN
    UPDATE tenant_db.fence_epoch SET version = version OPERATOR(pg_catalog.+) 1
        RETURNING version INTO next;
    IF fence IS NULL THEN
        DELETE FROM tenant_db.fences f
            WHERE f.tenant_key OPERATOR(pg_catalog.=) tenant AND f.key_kind OPERATOR(pg_catalog.=) kind;
    ELSE
        INSERT INTO tenant_db.fences (tenant_key, key_kind, state) VALUES (tenant, kind, fence)
            ON CONFLICT (tenant_key, key_kind)
            DO UPDATE SET state = EXCLUDED.state, since = pg_catalog.now();
    END IF;
    -- Not transactional: visible to every snapshot before this transaction commits.
    PERFORM pg_catalog.setval('tenant_db.fence_version'::pg_catalog.regclass, next);
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.set_fence(text, text, text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.enter_for_move(tenant text, kind text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $tenant_db$
BEGIN
    PERFORM tenant_db.set_tenant(tenant, kind);
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.enter_for_move(text, text) FROM PUBLIC;
CREATE TABLE IF NOT EXISTS tenant_db.capturing (
    tenant_key text NOT NULL,
    key_kind text NOT NULL,
    PRIMARY KEY (tenant_key, key_kind)
);
REVOKE ALL ON tenant_db.capturing FROM PUBLIC;
CREATE TABLE IF NOT EXISTS tenant_db.captured (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_key text NOT NULL,
    key_kind text NOT NULL,
    table_name text NOT NULL,
    key jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS captured_by_tenant ON tenant_db.captured (tenant_key, key_kind, id);
REVOKE ALL ON tenant_db.captured FROM PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.capture() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $tenant_db$
DECLARE
    r jsonb;
    k jsonb;
    i int;
BEGIN
    -- Arguments: the table as registered, its tenant column, the key kind, the primary key.
    FOREACH r IN ARRAY CASE TG_OP
        WHEN 'INSERT' THEN ARRAY[to_jsonb(NEW)]
        WHEN 'DELETE' THEN ARRAY[to_jsonb(OLD)]
        ELSE ARRAY[to_jsonb(OLD), to_jsonb(NEW)] END
    LOOP
        IF EXISTS (SELECT FROM tenant_db.capturing c
                   WHERE c.tenant_key = r ->> TG_ARGV[1] AND c.key_kind = TG_ARGV[2]) THEN
            k := '{}'::jsonb;
            FOR i IN 3 .. TG_NARGS - 1 LOOP
                k := k || jsonb_build_object(TG_ARGV[i], r -> TG_ARGV[i]);
            END LOOP;
            INSERT INTO tenant_db.captured (tenant_key, key_kind, table_name, key)
                VALUES (r ->> TG_ARGV[1], TG_ARGV[2], TG_ARGV[0], k);
        END IF;
    END LOOP;
    RETURN NULL;
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.capture() FROM PUBLIC;
"
}

/// The placement checks at the start of `tenant_db.enter` (PL/pgSQL, parameters `tenant` and
/// `kind`); see the module docs.
pub(crate) fn placed_check() -> String {
    let key = lock_key_sql("tenant", "kind");
    format!(
        "    IF NOT pg_catalog.pg_try_advisory_xact_lock_shared({LOCK_CLASS}, {key}) THEN
        PERFORM pg_catalog.pg_advisory_xact_lock_shared({LOCK_CLASS}, {key});
        RAISE EXCEPTION '{REFUSAL} tenant % was frozen by a move; retry the transaction', tenant
            USING ERRCODE = 'serialization_failure';
    END IF;
    -- `set_fence` gives the counter a value before it writes a fence: while it has none, no
    -- fence was ever written here, and the lookup (a query) is skipped.
    IF pg_catalog.pg_sequence_last_value('tenant_db.fence_version'::pg_catalog.regclass) IS NOT NULL THEN
        IF EXISTS (SELECT FROM tenant_db.fences f
                   WHERE f.tenant_key OPERATOR(pg_catalog.=) tenant
                     AND f.key_kind OPERATOR(pg_catalog.=) kind) THEN
            RAISE EXCEPTION '{REFUSAL} tenant % is not placed in this database; retry the transaction', tenant
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    -- Two IFs: the first is a simple expression (no query), all a READ COMMITTED transaction
    -- evaluates.
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        IF COALESCE(pg_catalog.pg_sequence_last_value('tenant_db.fence_version'::pg_catalog.regclass), 0)
               IS DISTINCT FROM (SELECT e.version FROM tenant_db.fence_epoch e) THEN
            RAISE EXCEPTION '{REFUSAL} a placement changed after this transaction''s snapshot; retry the transaction'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
"
    )
}

/// SQL (as the owner) that makes the fence version agree with the committed fences again
/// after a fence change that never committed (see the module docs).
pub fn repair_sql() -> &'static str {
    "SELECT pg_catalog.setval('tenant_db.fence_version'::pg_catalog.regclass,
         (SELECT e.version FROM tenant_db.fence_epoch e))"
}
