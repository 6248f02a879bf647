//! Audited admin and support access: acting for a tenant without the tenant's token, never
//! silently.
//!
//! An [`AdminGrant`] names the **actor**, the **reason** (a ticket or free text; a grant
//! without one does not compile, and one a reader would not see — empty, blank, invisible or
//! reordering characters — is refused), the **target** tenant, and an **expiry**.
//! [`TenantDb::admin_transaction`] is the only door besides
//! [`Tenant::assume_verified`](crate::Tenant::assume_verified) to a tenant transaction without
//! a token. It first commits a `granted` row to the append-only table `tenant_db.admin_audit`
//! (who, for whom, why, until when, as which database role), in its own transaction, so that
//! nothing the closure does to its transaction (an escape hatch that ends it, a panic, a
//! dropped future) takes the access off the record. Then it opens the transaction for the
//! grant's tenant ([`Provenance::Admin`]), writes an `opened` row in it, runs your closure,
//! and writes a `closed` row naming the tables the transaction read or wrote and the outcome.
//! When the closure fails its work is rolled back to a savepoint and the rows are still
//! committed. The tables are those whose statistics moved (sequential and index scans,
//! inserted, updated and deleted rows): a `TABLESAMPLE` or TID scan is not counted.
//!
//! The application role reads audit rows and writes them only through
//! `tenant_db.admin_audit_write` (which sets the id, the time and the database role itself);
//! it holds no `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE` on the table, and a trigger refuses
//! updates, deletes and truncation for every role ([`setup_sql`]). The owner, as the owner of
//! any table, can disable that trigger: keep the owner role for migrations.
//!
//! ```no_run
//! # include!("../doctest_schema.rs");
//! # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
//! # #[diesel(table_name = notes)]
//! # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
//! use std::time::Duration;
//! use tenant_db::admin::{AdminGrant, Reason};
//!
//! # async fn demo(db: tenant_db::TenantDb, customer: tenant_db::TenantId) -> Result<(), Box<dyn std::error::Error>> {
//! let grant = AdminGrant::for_tenant(
//!     "alice@support",
//!     Reason::ticket("SUP-1234")?,
//!     customer,
//!     Duration::from_secs(15 * 60),
//! )?;
//! let bodies: Vec<String> = db
//!     .admin_transaction(&grant, async |mut tx| {
//!         let s = tx.scope();
//!         Ok::<_, tenant_db::Error>(s.query(notes::table).select(notes::body).load(&mut tx).await?)
//!     })
//!     .await?;
//! # Ok(()) }
//! # fn main() {}
//! ```
//!
//! [`Provenance::Admin`]: crate::Provenance::Admin

use crate::rls::quote_ident;
use crate::{Error, Provenance, Tenant, TenantDb, TenantId, TenantTx, TxFn};
use diesel::sql_types::{Array, BigInt, Bool, Double, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::{Duration, SystemTime};

/// The longest a grant may last.
pub const MAX_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest reason or actor kept, in characters.
pub const MAX_TEXT: usize = 1000;

/// Why a grant could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The actor is empty.
    #[error("an admin grant names its actor")]
    NoActor,
    /// The reason is empty.
    #[error("an admin grant gives a reason (a ticket or a sentence)")]
    NoReason,
    /// The actor or the reason is longer than [`MAX_TEXT`] characters, or holds control
    /// characters.
    #[error(
        "the {0} must be at most {MAX_TEXT} visible characters, none of them control or invisible"
    )]
    BadText(&'static str),
    /// The validity is zero or longer than [`MAX_VALIDITY`].
    #[error("an admin grant lasts more than nothing and at most {} hours", MAX_VALIDITY.as_secs() / 3600)]
    Validity,
    /// The grant expired.
    #[error("the admin grant expired")]
    Expired,
    /// A grant to read every tenant cannot open a tenant transaction (use [`read_all`]), nor
    /// a tenant's grant read every tenant.
    #[error(
        "this admin grant is not for that: a tenant's grant acts for its tenant, an all-tenants grant only reads"
    )]
    ReadOnlyGrant,
}

/// Why an admin acts: a ticket, or a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// A ticket of your tracker (`SUP-1234`): recorded as `ticket:SUP-1234`.
    pub fn ticket(id: &str) -> Result<Reason, AdminError> {
        Ok(Reason(format!(
            "ticket:{}",
            text("reason", id, AdminError::NoReason)?
        )))
    }

    /// A reason in words.
    pub fn text(why: &str) -> Result<Reason, AdminError> {
        Ok(Reason(text("reason", why, AdminError::NoReason)?))
    }

    /// The reason as recorded.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that print as nothing or reorder what follows: zero-width and joiner
/// characters, bidirectional controls, the byte-order mark, the soft hyphen, and the fillers
/// that look like a blank.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// `value` trimmed, if it says something a reader sees: at least one letter or digit, at most
/// [`MAX_TEXT`] characters, no control character, nothing invisible or reordering.
fn text(what: &'static str, value: &str, empty: AdminError) -> Result<String, AdminError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(empty);
    }
    if value.chars().count() > MAX_TEXT || value.chars().any(|c| c.is_control() || invisible(c)) {
        return Err(AdminError::BadText(what));
    }
    if !value.chars().any(char::is_alphanumeric) {
        return Err(empty);
    }
    Ok(value.to_string())
}

/// What the audit keeps of an error: printable, at most [`MAX_TEXT`] characters.
fn outcome_text(error: &str) -> String {
    let printable: String = error
        .chars()
        .map(|c| {
            if c.is_control() || invisible(c) {
                ' '
            } else {
                c
            }
        })
        .take(MAX_TEXT)
        .collect();
    format!("error: {printable}")
}

/// Who may act, for whom, why, until when. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminGrant {
    actor: String,
    reason: Reason,
    /// `None`: every tenant, read only.
    tenant: Option<TenantId>,
    expires_at: SystemTime,
}

impl AdminGrant {
    /// A grant for `actor` to act for `tenant`, for `reason`, for `valid_for` from now (at
    /// most [`MAX_VALIDITY`]).
    pub fn for_tenant(
        actor: &str,
        reason: Reason,
        tenant: TenantId,
        valid_for: Duration,
    ) -> Result<AdminGrant, AdminError> {
        Self::new(actor, reason, Some(tenant), valid_for)
    }

    /// A grant for `actor` to read every tenant's rows, never write, for `reason`, for
    /// `valid_for` from now: see [`read_all`].
    pub fn all_tenants_read_only(
        actor: &str,
        reason: Reason,
        valid_for: Duration,
    ) -> Result<AdminGrant, AdminError> {
        Self::new(actor, reason, None, valid_for)
    }

    fn new(
        actor: &str,
        reason: Reason,
        tenant: Option<TenantId>,
        valid_for: Duration,
    ) -> Result<AdminGrant, AdminError> {
        if valid_for.is_zero() || valid_for > MAX_VALIDITY {
            return Err(AdminError::Validity);
        }
        Ok(AdminGrant {
            actor: text("actor", actor, AdminError::NoActor)?,
            reason,
            tenant,
            expires_at: SystemTime::now() + valid_for,
        })
    }

    /// The actor.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The reason.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The tenant the grant acts for; `None` for every tenant, read only.
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant
    }

    /// When the grant expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// The audit table's name.
pub const AUDIT_TABLE: &str = "tenant_db.admin_audit";

/// SQL (run as the owner, after [`crate::seal::setup_sql`]) that creates the append-only
/// audit table `tenant_db.admin_audit` and lets application role `app` insert and read it.
/// Idempotent.
pub fn setup_sql(app: &str) -> Result<String, crate::rls::NameError> {
    let app = crate::rls::ident("role", app)?;
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS tenant_db.admin_audit (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             access_id uuid NOT NULL,
             event text NOT NULL,
             at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
             actor text NOT NULL CHECK (actor <> ''),
             reason text NOT NULL CHECK (reason <> ''),
             tenant text NOT NULL,
             expires_at timestamptz NOT NULL,
             db_user text NOT NULL DEFAULT session_user,
             tables text[],
             outcome text
         );
         ALTER TABLE tenant_db.admin_audit DROP CONSTRAINT IF EXISTS admin_audit_event_check;
         ALTER TABLE tenant_db.admin_audit ADD CONSTRAINT admin_audit_event_check
             CHECK (event IN ('opened', 'closed', 'granted'));
         CREATE INDEX IF NOT EXISTS admin_audit_at ON tenant_db.admin_audit (at);
         CREATE OR REPLACE FUNCTION tenant_db.admin_audit_append_only() RETURNS trigger
             LANGUAGE plpgsql SET search_path = pg_catalog AS $tenant_db$
         BEGIN
             RAISE EXCEPTION 'tenant_db.admin_audit is append-only: % refused', TG_OP
                 USING ERRCODE = 'insufficient_privilege';
         END $tenant_db$;
         DROP TRIGGER IF EXISTS append_only ON tenant_db.admin_audit;
         CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON tenant_db.admin_audit
             FOR EACH ROW EXECUTE FUNCTION tenant_db.admin_audit_append_only();
         DROP TRIGGER IF EXISTS append_only_truncate ON tenant_db.admin_audit;
         CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON tenant_db.admin_audit
             FOR EACH STATEMENT EXECUTE FUNCTION tenant_db.admin_audit_append_only();
         CREATE OR REPLACE FUNCTION tenant_db.admin_audit_write(
                 access uuid, event text, actor text, reason text, tenant text,
                 expires_at timestamptz, tables text[], outcome text) RETURNS void
             LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $tenant_db$
         BEGIN
             IF event NOT IN ('granted', 'opened', 'closed') THEN
                 RAISE EXCEPTION 'tenant_db.admin_audit_write: unknown event %', event
                     USING ERRCODE = 'invalid_parameter_value';
             END IF;
             INSERT INTO tenant_db.admin_audit
                 (access_id, event, actor, reason, tenant, expires_at, tables, outcome)
                 VALUES (access, event, actor, reason, tenant, expires_at, tables, outcome);
         END $tenant_db$;
         REVOKE ALL ON FUNCTION tenant_db.admin_audit_write(uuid, text, text, text, text, timestamptz, text[], text) FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION tenant_db.admin_audit_write(uuid, text, text, text, text, timestamptz, text[], text) TO {app};
         REVOKE ALL ON tenant_db.admin_audit FROM PUBLIC;
         REVOKE ALL ON tenant_db.admin_audit FROM {app};
         GRANT SELECT ON tenant_db.admin_audit TO {app};
"
    ))
}

/// The role that owns the all-tenants views of analyst role `analyst`: `<analyst>_views`,
/// refused when PostgreSQL would cut it (an analyst name over 57 bytes).
pub fn views_role(analyst: &str) -> Result<String, crate::rls::NameError> {
    crate::rls::check_name("analyst role", analyst)?;
    let views = format!("{analyst}_views");
    crate::rls::check_name("views role", &views)?;
    Ok(views)
}

/// The schema of the all-tenants views.
pub const ALL_TENANTS_SCHEMA: &str = "tenant_db_all";

/// SQL (run as the owner, after [`setup_sql`], with the roles [`Provision::analyst`] creates)
/// that lets role `analyst` read every tenant's rows of `registry`'s tenant tables, read only
/// and audited, and nothing else: one view per tenant table in schema `tenant_db_all`, owned
/// by [`views_role`] (`BYPASSRLS`, cannot log in), showing rows only in a transaction that
/// [`read_all`] entered with a committed `granted` audit row; and the functions that record
/// and enter such a grant. The application role gets none of it. Idempotent.
///
/// [`Provision::analyst`]: crate::provision::Provision::analyst
pub fn read_all_setup_sql(
    registry: &crate::registry::Registry,
    analyst: &str,
) -> Result<String, crate::rls::NameError> {
    let (a, v) = (quote_ident(analyst), quote_ident(&views_role(analyst)?));
    let secret = crate::seal::secret_name("'all'");
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS tenant_db_all;
         REVOKE ALL ON SCHEMA tenant_db_all FROM PUBLIC;
         GRANT USAGE, CREATE ON SCHEMA tenant_db_all TO {v};
         GRANT USAGE ON SCHEMA tenant_db_all TO {a};
         CREATE OR REPLACE FUNCTION tenant_db.reads_all_tenants() RETURNS boolean
             LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $tenant_db$
         BEGIN
             RETURN statement_timestamp() <> transaction_timestamp()
                 AND current_setting('transaction_read_only') = 'on'
                 AND coalesce(current_setting({secret}, true), '') <> '';
         END $tenant_db$;
         REVOKE ALL ON FUNCTION tenant_db.reads_all_tenants() FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION tenant_db.reads_all_tenants() TO PUBLIC;
         CREATE OR REPLACE FUNCTION tenant_db.request_all_access(actor text, reason text, valid_for interval)
             RETURNS uuid LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $tenant_db$
         DECLARE access uuid := gen_random_uuid();
         BEGIN
             IF coalesce(btrim(actor), '') = '' OR coalesce(btrim(reason), '') = '' THEN
                 RAISE EXCEPTION 'an all-tenants grant names its actor and its reason'
                     USING ERRCODE = 'invalid_parameter_value';
             END IF;
             IF valid_for IS NULL OR valid_for <= interval '0' OR valid_for > interval '24 hours' THEN
                 RAISE EXCEPTION 'an all-tenants grant lasts more than nothing and at most 24 hours'
                     USING ERRCODE = 'invalid_parameter_value';
             END IF;
             INSERT INTO tenant_db.admin_audit (access_id, event, actor, reason, tenant, expires_at)
                 VALUES (access, 'granted', btrim(actor), btrim(reason), '*', clock_timestamp() + valid_for);
             RETURN access;
         END $tenant_db$;
         REVOKE ALL ON FUNCTION tenant_db.request_all_access(text, text, interval) FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION tenant_db.request_all_access(text, text, interval) TO {a};
         CREATE OR REPLACE FUNCTION tenant_db.enter_all(access uuid) RETURNS void
             LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $tenant_db$
         BEGIN
             IF statement_timestamp() <> transaction_timestamp() THEN
                 RAISE EXCEPTION 'tenant_db.enter_all runs only in the first statement of a transaction'
                     USING ERRCODE = 'insufficient_privilege';
             END IF;
             PERFORM 1 FROM tenant_db.admin_audit g
                 WHERE g.access_id = access AND g.event = 'granted' AND g.tenant = '*'
                   AND g.db_user = session_user AND g.expires_at > clock_timestamp();
             IF NOT FOUND THEN
                 RAISE EXCEPTION 'no committed, unexpired all-tenants grant % for %', access, session_user
                     USING ERRCODE = 'insufficient_privilege';
             END IF;
             PERFORM set_config('transaction_read_only', 'on', true);
             PERFORM set_config({secret}, access::text, true);
         END $tenant_db$;
         REVOKE ALL ON FUNCTION tenant_db.enter_all(uuid) FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION tenant_db.enter_all(uuid) TO {a};
"
    );
    for table in registry.tenant_tables() {
        let (schema, name) = table.schema_and_name();
        let view = format!(
            "tenant_db_all.{}",
            quote_ident(&schema.map_or(name.clone(), |s| format!("{s}.{name}")))
        );
        sql.push_str(&format!(
            "GRANT SELECT ON {table} TO {v};
             DROP VIEW IF EXISTS {view};
             CREATE VIEW {view} WITH (security_barrier) AS
                 SELECT * FROM {table} WHERE (SELECT tenant_db.reads_all_tenants());
             ALTER VIEW {view} OWNER TO {v};
             REVOKE ALL ON {view} FROM PUBLIC;
             GRANT SELECT ON {view} TO {a};
",
            table = table.name()
        ));
    }
    Ok(sql)
}

/// Reads every tenant's rows under `grant` (made with [`AdminGrant::all_tenants_read_only`]),
/// on `conn`, a connection as the analyst role: first commits a `granted` audit row (so a
/// transaction rolled back afterwards is on the record all the same), then runs `f` in a
/// read-only transaction entered with it, where the views of `tenant_db_all`
/// ([`read_all_setup_sql`]) show every tenant's rows. Outside such a transaction they show
/// nothing, and writing is refused.
pub async fn read_all<T>(
    conn: &mut AsyncPgConnection,
    grant: &AdminGrant,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    if grant.tenant.is_some() {
        return Err(Error::Admin(AdminError::ReadOnlyGrant));
    }
    let left = grant
        .expires_at
        .duration_since(SystemTime::now())
        .map_err(|_| Error::Admin(AdminError::Expired))?;
    #[derive(diesel::QueryableByName)]
    struct Access {
        #[diesel(sql_type = Text)]
        access: String,
    }
    let access: Access = diesel::sql_query(
        "SELECT tenant_db.request_all_access($1, $2, make_interval(secs => $3))::text AS access",
    )
    .bind::<Text, _>(&grant.actor)
    .bind::<Text, _>(grant.reason.as_str())
    .bind::<Double, _>(left.as_secs_f64())
    .get_result(conn)
    .await?;
    let begin = format!(
        "BEGIN; SELECT tenant_db.enter_all({}::uuid)",
        crate::rls::quote_literal(&access.access)
    );
    if let Err(e) = diesel_async::SimpleAsyncConnection::batch_execute(conn, &begin).await {
        let _ = diesel_async::SimpleAsyncConnection::batch_execute(conn, "ROLLBACK").await;
        return Err(e.into());
    }
    let result = f(conn).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    diesel_async::SimpleAsyncConnection::batch_execute(conn, end).await?;
    result
}

/// One row of the audit table, as [`recent`] reads it.
#[derive(Clone, Debug, PartialEq, Eq, diesel::QueryableByName)]
pub struct AuditRow {
    /// The access both rows of one admin transaction share.
    #[diesel(sql_type = Text)]
    pub access_id: String,
    /// `opened` or `closed`.
    #[diesel(sql_type = Text)]
    pub event: String,
    /// When, as the server's clock tells (ISO 8601, UTC).
    #[diesel(sql_type = Text)]
    pub at: String,
    /// Who.
    #[diesel(sql_type = Text)]
    pub actor: String,
    /// Why.
    #[diesel(sql_type = Text)]
    pub reason: String,
    /// For whom.
    #[diesel(sql_type = Text)]
    pub tenant: String,
    /// Until when the grant held.
    #[diesel(sql_type = Text)]
    pub expires_at: String,
    /// The database role that wrote the row.
    #[diesel(sql_type = Text)]
    pub db_user: String,
    /// On `closed`: the tables the transaction read or wrote.
    #[diesel(sql_type = Nullable<Text>)]
    pub tables: Option<String>,
    /// On `closed`: `ok`, or `error: …` when the closure failed and its work was rolled back.
    #[diesel(sql_type = Nullable<Text>)]
    pub outcome: Option<String>,
}

/// The most recent `limit` audit rows, newest first, read on `conn` (any role that may read
/// the audit table).
pub async fn recent(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<AuditRow>, Error> {
    Ok(diesel::sql_query(
        "SELECT access_id::text, event,
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at,
                actor, reason, tenant,
                to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS expires_at,
                db_user, array_to_string(tables, ',') AS tables, outcome
         FROM tenant_db.admin_audit ORDER BY id DESC LIMIT $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit.max(0))
    .load(conn)
    .await?)
}

#[derive(diesel::QueryableByName)]
struct Done {
    #[diesel(sql_type = Bool)]
    #[allow(dead_code)]
    done: bool,
}

/// How much the transaction has touched each table so far (`pg_stat_xact_user_tables`), the
/// audit table aside. The view also counts what earlier transactions of the same connection
/// did while the server had not flushed their statistics yet, so an access's tables are what
/// grew between its two rows.
const TOUCHED: &str = "SELECT relid::int8 AS relid,
        quote_ident(schemaname) || '.' || quote_ident(relname) AS name,
        seq_scan + coalesce(idx_scan, 0) + n_tup_ins + n_tup_upd + n_tup_del AS touched
    FROM pg_catalog.pg_stat_xact_user_tables WHERE schemaname <> 'tenant_db'";

#[derive(diesel::QueryableByName)]
struct Touched {
    #[diesel(sql_type = BigInt)]
    relid: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    touched: i64,
}

async fn touched(mut conn: &AsyncPgConnection) -> Result<Vec<Touched>, Error> {
    Ok(diesel::sql_query(TOUCHED).load(&mut conn).await?)
}

/// Writes one audit row in the transaction on `conn`; a `closed` row lists `tables`.
async fn record(
    mut conn: &AsyncPgConnection,
    access: uuid::Uuid,
    event: &str,
    grant: &AdminGrant,
    closed: Option<(&str, Vec<String>)>,
) -> Result<(), Error> {
    let (outcome, tables) = closed.map_or((None, None), |(o, t)| (Some(o), Some(t)));
    diesel::sql_query(
        "SELECT tenant_db.admin_audit_write($1::uuid, $2, $3, $4, $5, pg_catalog.to_timestamp($6),
                                             $7, $8) IS NULL AS done",
    )
    .bind::<Text, _>(access.to_string())
    .bind::<Text, _>(event)
    .bind::<Text, _>(&grant.actor)
    .bind::<Text, _>(grant.reason.as_str())
    .bind::<Text, _>(grant.tenant.map_or("*".to_string(), |t| t.to_string()))
    .bind::<Double, _>(
        grant
            .expires_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    )
    .bind::<Nullable<Array<Text>>, _>(tables)
    .bind::<Nullable<Text>, _>(outcome)
    .get_result::<Done>(&mut conn)
    .await?;
    Ok(())
}

/// The tables whose counters grew from `before` to `after`, sorted.
fn grown(before: &[Touched], after: Vec<Touched>) -> Vec<String> {
    let mut names: Vec<String> = after
        .into_iter()
        .filter(|a| {
            let was = before
                .iter()
                .find(|b| b.relid == a.relid)
                .map_or(0, |b| b.touched);
            a.touched > was
        })
        .map(|a| a.name)
        .collect();
    names.sort();
    names
}

impl TenantDb {
    /// Runs `f` in one transaction for the grant's tenant, audited (see the module docs).
    /// Refused with [`AdminError::Expired`] once the grant has expired.
    // Not an `async fn`: the returned future must be declared `Send`.
    #[allow(clippy::manual_async_fn)]
    pub fn admin_transaction<'a, R, E, F>(
        &'a self,
        grant: &'a AdminGrant,
        f: F,
    ) -> impl Future<Output = Result<R, E>> + Send + 'a
    where
        for<'t> F: AsyncFnOnce(TenantTx<'t>) -> Result<R, E>
            + TxFn<TenantTx<'t>, Result<R, E>, Fut: Send>
            + Send
            + 'a,
        E: From<Error> + std::fmt::Display + Send + 'a,
        R: Send + 'a,
    {
        async move {
            if SystemTime::now() >= grant.expires_at {
                return Err(E::from(Error::Admin(AdminError::Expired)));
            }
            let Some(tenant) = grant.tenant else {
                return Err(E::from(Error::Admin(AdminError::ReadOnlyGrant)));
            };
            let access = uuid::Uuid::new_v4();
            // On the record before anything is read, in its own committed transaction: what
            // the closure does to its own transaction (an escape hatch that ends it, a panic,
            // a dropped future) cannot take it back.
            {
                // Within the tenant's share of the pool, like its transaction.
                let _share = self.share(&tenant).await.map_err(E::from)?;
                let pooled = self
                    .pool()
                    .get()
                    .await
                    .map_err(|e| E::from(Error::from(e)))?;
                record(&pooled, access, "granted", grant, None)
                    .await
                    .map_err(E::from)?;
            }
            let tenant = Tenant::verified(tenant, Provenance::Admin);
            let outcome: Result<R, E> = self
                .transaction(tenant, async move |tx: TenantTx<'_>| {
                    let conn = tx.shared_conn();
                    let before = touched(conn).await?;
                    record(conn, access, "opened", grant, None).await?;
                    savepoint(conn, "SAVEPOINT tenant_db_admin").await?;
                    // The record below must be part of this transaction.
                    tx.hold_commit();
                    let result = f(tx).await;
                    let outcome = match &result {
                        Ok(_) => None,
                        Err(e) => Some(outcome_text(&e.to_string())),
                    };
                    if outcome.is_some() {
                        savepoint(conn, "ROLLBACK TO SAVEPOINT tenant_db_admin").await?;
                    }
                    let outcome = outcome.unwrap_or_else(|| "ok".to_string());
                    let tables = grown(&before, touched(conn).await?);
                    record(conn, access, "closed", grant, Some((&outcome, tables))).await?;
                    Ok::<_, E>(result)
                })
                .await?;
            outcome
        }
    }
}

/// Runs a savepoint statement on `conn`.
async fn savepoint(conn: &AsyncPgConnection, sql: &str) -> Result<(), Error> {
    let mut conn = conn;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Touched, grown};

    fn touched(relid: i64, name: &str, touched: i64) -> Touched {
        Touched {
            relid,
            name: name.to_string(),
            touched,
        }
    }

    #[test]
    fn an_access_lists_the_tables_whose_own_counters_grew() {
        // `a` was touched before the access (counters not flushed yet) and not during it;
        // `b` grew; `c` is new. Each is compared with its own earlier counter only.
        let before = [touched(1, "a", 5), touched(2, "b", 1)];
        let after = vec![touched(3, "c", 1), touched(2, "b", 3), touched(1, "a", 5)];
        assert_eq!(grown(&before, after), ["b", "c"]);
        assert!(grown(&before, vec![touched(1, "a", 5)]).is_empty());
    }
}
