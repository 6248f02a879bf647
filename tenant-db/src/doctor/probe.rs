//! The probe: tests the policies of each tenant table as the application role, inside
//! transactions that are always rolled back, instead of reading their text.
//!
//! For each tenant table the app role can read, and each tenant state (unset; empty, as after
//! a transaction that used `SET LOCAL`; a random tenant that owns no row; each sampled real
//! tenant), one transaction:
//!
//! 1. counts the real rows of other tenants the app role sees (at most 100 are looked at);
//! 2. evaluates every policy that applies to the app role on a made-up row of another tenant
//!    (its other columns NULL), and combines them as PostgreSQL does (any permissive policy
//!    and every restrictive one), so that an empty table is probed too;
//! 3. where the app role may insert and the table has no triggers of its own, inserts a row of
//!    another tenant whose other columns are NULL. PostgreSQL checks the policies' `WITH
//!    CHECK` before the table's `NOT NULL` constraints, so a rejected row raises the policy's
//!    error, and an accepted one raises a `NOT NULL` error without being written. Only a table
//!    whose every column but the tenant may be NULL, and whose policies accept the row, gets
//!    a row version, which the rollback removes.
//!
//! Nothing is committed, no default is evaluated (no sequence moves), no trigger of the
//! table's own runs, and no statistics are gathered.

use super::TIMEOUTS;
use super::catalog::{Policy, Snapshot, Table};
use super::rules::{TenantTableRef, qualified};
use crate::rls::{quote_ident, quote_literal};
use crate::seal::TENANT_SETTING;
use crate::{Error, KeyType, TenantId};
use diesel::sql_types::{Array, BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// At most this many sampled tenants are tried per table.
const SAMPLED_TENANTS: usize = 5;

/// What a probe of one table saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The table's oid.
    pub(crate) table: i64,
    /// With no tenant (unset or empty): what was visible or accepted.
    pub(crate) without_tenant: Vec<String>,
    /// With a tenant set: rows of other tenants visible.
    pub(crate) foreign_reads: Vec<String>,
    /// With a tenant set: a row of another tenant accepted.
    pub(crate) foreign_writes: Vec<String>,
    /// What could not be tried, and why.
    pub(crate) skipped: Vec<String>,
    /// Another session held the table past the lock timeout: its remaining states are not
    /// tried.
    locked: bool,
}

impl Outcome {
    /// Files what `state` showed: with no tenant, under `without_tenant`; with one, under
    /// `foreign_reads` or `foreign_writes`.
    fn record(&mut self, state: &State, write: bool, what: String) {
        match (state.tenant(), write) {
            (None, _) => self.without_tenant.push(what),
            (Some(_), false) => self.foreign_reads.push(what),
            (Some(_), true) => self.foreign_writes.push(what),
        }
    }

    pub(crate) fn found(&self) -> bool {
        !(self.without_tenant.is_empty()
            && self.foreign_reads.is_empty()
            && self.foreign_writes.is_empty())
    }
}

/// A tenant state a probe transaction runs in.
#[derive(Debug, Clone)]
enum State {
    Unset,
    Empty,
    Random(TenantId),
    Sampled(TenantId),
    /// A random tenant, with every other setting the policies read set to `on`: any
    /// statement can set them, so a policy must not open on them.
    Forged(TenantId, Vec<String>),
}

impl State {
    fn tenant(&self) -> Option<&TenantId> {
        match self {
            State::Unset | State::Empty => None,
            State::Random(t) | State::Sampled(t) | State::Forged(t, _) => Some(t),
        }
    }

    fn describe(&self) -> String {
        match self {
            State::Unset => "with the tenant unset".into(),
            State::Empty => "with the tenant setting empty (as after a SET LOCAL)".into(),
            State::Random(t) => format!("as a tenant that owns no row ({t})"),
            State::Sampled(t) => format!("as tenant {t}"),
            State::Forged(t, names) => format!(
                "as a tenant that owns no row ({t}) with {} set to 'on' (any statement can set it)",
                names.join(", ")
            ),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Sample {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(diesel::QueryableByName)]
struct Passes {
    #[diesel(sql_type = Array<Bool>)]
    passes: Vec<bool>,
}

/// The policies of `table` that apply to the app role for a command: `r` (select) reads
/// `USING`, `a` (insert) reads `WITH CHECK` (an `ALL` policy without one: its `USING`).
fn policies_for<'a>(
    snap: &'a Snapshot,
    table: &Table,
    command: char,
) -> Vec<(&'a Policy, &'a str)> {
    snap.policies
        .iter()
        .filter(|p| p.table == table.oid && p.applies_to_app)
        .filter(|p| p.command == "*" || p.command.starts_with(command))
        .filter_map(|p| {
            let expr = match command {
                'a' => p.with_check.as_deref().or(p.using.as_deref()),
                _ => p.using.as_deref(),
            };
            expr.map(|e| (p, e))
        })
        .collect()
}

/// How PostgreSQL combines per-policy results: some permissive policy and every restrictive
/// one. Returns whether the row passes and the policies that let it: the restrictive ones
/// (each passed it), or the passing permissive ones when no restrictive policy applies.
fn combine(policies: &[(&Policy, &str)], passes: &[bool]) -> (bool, Vec<String>) {
    let permissive = policies
        .iter()
        .zip(passes)
        .any(|((p, _), ok)| p.permissive && *ok);
    let restrictive_ok = policies
        .iter()
        .zip(passes)
        .all(|((p, _), ok)| p.permissive || *ok);
    let restrictive: Vec<String> = policies
        .iter()
        .filter(|(p, _)| !p.permissive)
        .map(|(p, _)| p.name.clone())
        .collect();
    let named = if restrictive.is_empty() {
        policies
            .iter()
            .zip(passes)
            .filter(|((p, _), ok)| p.permissive && **ok)
            .map(|((p, _), _)| p.name.clone())
            .collect()
    } else {
        restrictive
    };
    (permissive && restrictive_ok, named)
}

fn responsible(named: &[String], restrictive: bool) -> String {
    let list = named
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if list.is_empty() {
        String::new()
    } else if restrictive {
        format!(" (restrictive policy {list} lets it through)")
    } else {
        format!(" (no restrictive policy applies; permissive {list} lets it through)")
    }
}

/// A value of `key`'s type that no real tenant is likely to have.
fn random_tenant(key: KeyType) -> Option<TenantId> {
    let bits = uuid::Uuid::new_v4().as_u128();
    match key {
        KeyType::Uuid => Some(TenantId::new_random()),
        KeyType::BigInt => {
            TenantId::from_i64(4_000_000_000_000 + (bits % 1_000_000_000_000) as i64).ok()
        }
        KeyType::Integer => TenantId::from_i64(1_500_000_000 + (bits % 500_000_000) as i64).ok(),
        KeyType::Text => TenantId::from_text(&format!("tenant-db-probe-{:x}", bits >> 64)).ok(),
    }
}

/// The setting names the table's policies read (`current_setting('name'…)`), to empty them
/// all in the empty state.
fn settings_read(policies: &[&Policy]) -> Vec<String> {
    let mut names = vec![TENANT_SETTING.to_string()];
    for p in policies {
        for expr in [p.using.as_deref(), p.with_check.as_deref()]
            .into_iter()
            .flatten()
        {
            for (at, _) in expr.match_indices("current_setting('") {
                let rest = &expr[at + "current_setting('".len()..];
                if let Some(end) = rest.find('\'') {
                    let name = rest[..end].to_string();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
    }
    names
}

/// The statements that open a probe transaction in `state`, as the app role: one message, so
/// that `tenant_db.enter` runs in the transaction's first statement.
fn begin(snap: &Snapshot, state: &State, settings: &[String]) -> String {
    let mut sql = format!(
        "BEGIN; SET LOCAL ROLE {}; {TIMEOUTS}",
        quote_ident(&snap.role.name)
    );
    match state {
        State::Unset => {}
        State::Empty => {
            for name in settings {
                sql.push_str(&format!(
                    " SELECT pg_catalog.set_config({}, '', true);",
                    quote_literal(name)
                ));
            }
        }
        State::Random(t) | State::Sampled(t) | State::Forged(t, _) => {
            if snap.has_enter {
                sql.push_str(&format!(
                    " SELECT tenant_db.enter({}, '{}');",
                    quote_literal(&t.to_string()),
                    t.kind().name()
                ));
            } else {
                sql.push_str(&format!(
                    " SELECT pg_catalog.set_config('{TENANT_SETTING}', {}, true);",
                    quote_literal(&t.to_string())
                ));
            }
            if let State::Forged(_, names) = state {
                for name in names {
                    sql.push_str(&format!(
                        " SELECT pg_catalog.set_config({}, 'on', true);",
                        quote_literal(name)
                    ));
                }
            }
        }
    }
    sql
}

/// A made-up row of `table` whose tenant column is `tenant` and whose other columns are NULL,
/// as a derived table named like the table (so that policy expressions resolve against it).
fn made_up_row(t: &TenantTableRef<'_>, tenant: &TenantId) -> String {
    let columns: Vec<String> = t
        .table
        .columns
        .iter()
        .zip(&t.table.column_types)
        .map(|(c, ty)| {
            let value = if *c == t.column {
                quote_literal(&tenant.to_string())
            } else {
                "NULL".into()
            };
            format!("{value}::{ty} AS {}", quote_ident(c))
        })
        .collect();
    format!(
        "(SELECT {}) AS {}",
        columns.join(", "),
        quote_ident(&t.table.name)
    )
}

/// Evaluates each policy expression over `source` (a derived table named like the table):
/// whether any of its rows passes it.
async fn evaluate(
    conn: &mut AsyncPgConnection,
    policies: &[(&Policy, &str)],
    source: &str,
) -> Result<Vec<bool>, diesel::result::Error> {
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let each: Vec<String> = policies
        .iter()
        .map(|(_, e)| format!("coalesce(bool_or(coalesce(({e}), false)), false)"))
        .collect();
    let sql = format!("SELECT ARRAY[{}] AS passes FROM {source}", each.join(", "));
    diesel::sql_query(sql)
        .load::<Passes>(conn)
        .await
        .map(|rows| {
            rows.into_iter()
                .next()
                .map(|r| r.passes)
                .unwrap_or_default()
        })
}

/// Opens the savepoint every probe statement runs in, so that a failing one leaves the
/// transaction usable.
async fn savepoint(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    conn.batch_execute("SAVEPOINT tenant_db_probe").await
}

/// Undoes whatever the probe statement did (an accepted insert included).
async fn undo(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    conn.batch_execute("ROLLBACK TO SAVEPOINT tenant_db_probe")
        .await
}

/// Evaluates the policies over `source` in a savepoint.
async fn evaluate_safely(
    conn: &mut AsyncPgConnection,
    policies: &[(&Policy, &str)],
    source: &str,
) -> Result<Result<Vec<bool>, diesel::result::Error>, diesel::result::Error> {
    savepoint(conn).await?;
    let out = evaluate(conn, policies, source).await;
    undo(conn).await?;
    Ok(out)
}

/// What an insert of another tenant's row told.
enum Write {
    Accepted,
    Refused,
    Unknown(String),
}

fn classify_write(result: Result<usize, diesel::result::Error>) -> Write {
    use diesel::result::{DatabaseErrorKind, Error as E};
    match result {
        Ok(_) => Write::Accepted,
        Err(E::DatabaseError(kind, info)) => {
            if info.message().contains("row-level security policy") {
                Write::Refused
            } else if matches!(
                kind,
                DatabaseErrorKind::NotNullViolation | DatabaseErrorKind::CheckViolation
            ) {
                // Checked after the policies: the policies accepted the row.
                Write::Accepted
            } else {
                Write::Unknown(info.message().to_string())
            }
        }
        Err(other) => Write::Unknown(other.to_string()),
    }
}

/// The insert of a row of `tenant` whose other columns are NULL (no default evaluated).
fn insert_sql(t: &TenantTableRef<'_>, tenant: &TenantId) -> String {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for ((c, ty), generated) in t
        .table
        .columns
        .iter()
        .zip(&t.table.column_types)
        .zip(&t.table.column_generated)
    {
        if *generated {
            continue;
        }
        columns.push(quote_ident(c));
        values.push(if *c == t.column {
            format!("{}::{ty}", quote_literal(&tenant.to_string()))
        } else {
            format!("NULL::{ty}")
        });
    }
    format!(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
        qualified(t.table),
        columns.join(", "),
        values.join(", ")
    )
}

/// Probes one state of one table inside the open transaction.
async fn probe_state(
    conn: &mut AsyncPgConnection,
    snap: &Snapshot,
    t: &TenantTableRef<'_>,
    key: KeyType,
    state: &State,
    out: &mut Outcome,
) -> Result<(), Error> {
    let name = qualified(t.table);
    let col = quote_ident(&t.column);
    let Some((ty, _)) = t.column_type() else {
        return Ok(());
    };
    let foreign_cond = match state.tenant() {
        None => "true".to_string(),
        Some(tenant) => format!(
            "{col} IS DISTINCT FROM {}::{ty}",
            quote_literal(&tenant.to_string())
        ),
    };
    let reads = policies_for(snap, t.table, 'r');
    let inserts = policies_for(snap, t.table, 'a');

    // 1. Real rows of other tenants.
    savepoint(conn).await?;
    let rows = diesel::sql_query(format!(
        "SELECT count(*)::int8 AS n FROM (SELECT 1 FROM {name} WHERE {foreign_cond} LIMIT 100) s"
    ))
    .load::<Count>(conn)
    .await;
    undo(conn).await?;
    match rows {
        Ok(rows) => {
            let n = <[Count]>::first(&rows).map_or(0, |c| c.n);
            if n > 0 {
                let source = format!(
                    "(SELECT * FROM {name} WHERE {foreign_cond} LIMIT 100) AS {}",
                    quote_ident(&t.table.name)
                );
                let named = match evaluate_safely(conn, &reads, &source).await? {
                    Ok(passes) => combine(&reads, &passes).1,
                    Err(_) => Vec::new(),
                };
                let restrictive = reads.iter().any(|(p, _)| !p.permissive);
                let count = if n >= 100 {
                    "100 or more".to_string()
                } else {
                    n.to_string()
                };
                let whose = if state.tenant().is_some() {
                    " of other tenants"
                } else {
                    ""
                };
                out.record(
                    state,
                    false,
                    format!(
                        "{}, the application role sees {count} row(s){whose}{}",
                        state.describe(),
                        responsible(&named, restrictive)
                    ),
                );
            }
        }
        Err(e) => {
            out.locked = e.to_string().contains("lock timeout");
            out.skipped
                .push(format!("{}: reading failed: {e}", state.describe()));
            if out.locked {
                return Ok(());
            }
        }
    }

    // 2. A made-up row of another tenant, against the policies (RLS on and binding the role).
    // The policies bind the role: RLS on, and forced if the role owns the table.
    let bound = t.table.rls && (t.table.force || !t.table.app_owns);
    let Some(other) = random_tenant(key) else {
        return Ok(());
    };
    if bound {
        let source = made_up_row(t, &other);
        match evaluate_safely(conn, &reads, &source).await? {
            Ok(passes) => {
                let (visible, named) = combine(&reads, &passes);
                if visible {
                    let restrictive = reads.iter().any(|(p, _)| !p.permissive);
                    out.record(
                        state,
                        false,
                        format!(
                            "{}, a row of another tenant passes the read policies{}",
                            state.describe(),
                            responsible(&named, restrictive)
                        ),
                    );
                }
            }
            Err(e) => out.skipped.push(format!(
                "{}: evaluating the read policies failed: {e}",
                state.describe()
            )),
        }
    }

    // 3. An insert of another tenant's row.
    if !t.table.app_inserts {
        return Ok(());
    }
    if t.table.has_triggers {
        out.skipped.push(format!(
            "writes not tried on {name}: it has triggers of its own, which an insert would run"
        ));
        return Ok(());
    }
    let insert = insert_sql(t, &other);
    savepoint(conn).await?;
    let result = diesel::sql_query(insert).execute(conn).await;
    undo(conn).await?;
    match classify_write(result) {
        Write::Refused => {}
        Write::Accepted => {
            let source = made_up_row(t, &other);
            let named = match evaluate_safely(conn, &inserts, &source).await? {
                Ok(passes) => combine(&inserts, &passes).1,
                Err(_) => Vec::new(),
            };
            let restrictive = inserts.iter().any(|(p, _)| !p.permissive);
            let what = format!(
                "{}, an insert of a row of another tenant is accepted{}",
                state.describe(),
                responsible(&named, restrictive)
            );
            out.record(state, true, what);
        }
        Write::Unknown(why) => out.skipped.push(format!(
            "{}: the insert could not be judged: {why}",
            state.describe()
        )),
    }
    Ok(())
}

/// Tenants of `t` the connected role can see (up to five), then those the caller named.
async fn sample(
    conn: &mut AsyncPgConnection,
    t: &TenantTableRef<'_>,
    key: KeyType,
    named: &[String],
) -> Result<Vec<TenantId>, Error> {
    let col = quote_ident(&t.column);
    let sql = format!(
        "SELECT DISTINCT v::text AS v FROM (SELECT {col} AS v FROM {} WHERE {col} IS NOT NULL LIMIT 1000) s LIMIT {SAMPLED_TENANTS}",
        qualified(t.table)
    );
    // Read-only, rolled back, and under the probe's timeouts.
    // Read-only, rolled back, and under the probe's timeouts; a role that cannot read the
    // table (or waits too long for it) samples nothing.
    conn.batch_execute(&format!("BEGIN READ ONLY; {TIMEOUTS}"))
        .await?;
    let seen: Vec<Sample> = diesel::sql_query(sql).load(conn).await.unwrap_or_default();
    conn.batch_execute("ROLLBACK").await?;
    let mut out: Vec<TenantId> = Vec::new();
    for v in seen.into_iter().map(|s| s.v).chain(named.iter().cloned()) {
        if let Ok(id) = TenantId::parse_as(key.kind(), &v)
            && key.accepts(&id)
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Probes every tenant table in `tenants` the app role can read.
pub(crate) async fn run(
    conn: &mut AsyncPgConnection,
    snap: &Snapshot,
    tenants: &[TenantTableRef<'_>],
    named_tenants: &[String],
) -> Result<(Vec<Outcome>, Vec<String>), Error> {
    let mut notes = Vec::new();
    if snap.role.superuser || snap.role.bypass_rls {
        // No policy applies to it; its own finding says so.
        return Ok((Vec::new(), notes));
    }
    let mut plans = Vec::new();
    for t in tenants {
        let Some(key) = t.key() else { continue };
        if !t.table.app_reads {
            continue;
        }
        let all: Vec<&Policy> = snap
            .policies
            .iter()
            .filter(|p| p.table == t.table.oid)
            .collect();
        let settings = settings_read(&all);
        let mut states = vec![State::Empty];
        states.extend(random_tenant(key).map(State::Random));
        let others: Vec<String> = settings
            .iter()
            .filter(|n| n.as_str() != TENANT_SETTING)
            .cloned()
            .collect();
        if !others.is_empty() {
            states.extend(random_tenant(key).map(|t| State::Forged(t, others)));
        }
        states.extend(
            sample(conn, t, key, named_tenants)
                .await?
                .into_iter()
                .map(State::Sampled),
        );
        let out = Outcome {
            table: t.table.oid,
            ..Outcome::default()
        };
        plans.push((t, key, settings, states, out));
    }
    // A setting is truly unset (NULL, not '') only until a transaction of the session sets it:
    // every table is probed unset first, on a connection that has not set one yet.
    let fresh = settings_unset(conn, plans.iter().flat_map(|(_, _, s, _, _)| s.iter())).await?;
    if !fresh.is_empty() {
        notes.push(format!(
            "the connection had already set {}: the unset state was probed as empty; audit on a \
             new connection",
            fresh.join(", ")
        ));
    }
    for (t, key, settings, _, out) in &mut plans {
        run_state(conn, snap, t, *key, &State::Unset, settings, out).await?;
    }
    for (t, key, settings, states, out) in &mut plans {
        for state in states.iter() {
            if out.locked {
                break;
            }
            run_state(conn, snap, t, *key, state, settings, out).await?;
        }
    }
    Ok((
        plans.into_iter().map(|(_, _, _, _, out)| out).collect(),
        notes,
    ))
}

/// Probes `state` in one transaction, always rolled back.
async fn run_state(
    conn: &mut AsyncPgConnection,
    snap: &Snapshot,
    t: &TenantTableRef<'_>,
    key: KeyType,
    state: &State,
    settings: &[String],
    out: &mut Outcome,
) -> Result<(), Error> {
    conn.batch_execute(&begin(snap, state, settings))
        .await
        .map_err(|e| probe_error(snap, e))?;
    let result = probe_state(conn, snap, t, key, state, out).await;
    let rolled_back = conn.batch_execute("ROLLBACK").await;
    result?;
    rolled_back?;
    Ok(())
}

/// The settings among `names` this session has already set (they read `''`, not NULL).
async fn settings_unset<'a>(
    conn: &mut AsyncPgConnection,
    names: impl Iterator<Item = &'a String>,
) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = names.cloned().collect();
    names.sort();
    names.dedup();
    let set: Vec<Sample> = diesel::sql_query(
        "SELECT n AS v FROM unnest($1::text[]) AS n WHERE current_setting(n, true) IS NOT NULL",
    )
    .bind::<Array<Text>, _>(names)
    .load(conn)
    .await?;
    Ok(set.into_iter().map(|s| s.v).collect())
}

fn probe_error(snap: &Snapshot, e: diesel::result::Error) -> Error {
    Error::Doctor(format!(
        "cannot probe the policies as the application role `{}` ({e}); connect as that role, \
         or as a role that may SET ROLE to it, or pass --no-probe",
        snap.role.name
    ))
}

#[cfg(test)]
mod tests {
    use super::random_tenant;
    use crate::KeyType;

    #[test]
    fn a_made_up_tenant_is_far_from_real_ids_and_fits_its_column() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let big = random_tenant(KeyType::BigInt)
                .and_then(|t| t.as_i64())
                .expect("a bigint tenant");
            assert!(
                (4_000_000_000_000..5_000_000_000_000).contains(&big),
                "{big}"
            );
            // An `integer` column takes it, with room to spare: above any sequence's early ids.
            let int = random_tenant(KeyType::Integer)
                .and_then(|t| t.as_i64())
                .expect("an integer tenant");
            assert!((1_500_000_000..2_000_000_000).contains(&int), "{int}");
            assert!(i32::try_from(int).is_ok());
            let text = random_tenant(KeyType::Text).and_then(|t| t.as_text().map(str::to_owned));
            assert!(text.is_some_and(|t| t.starts_with("tenant-db-probe-")));
            assert!(random_tenant(KeyType::Uuid).is_some_and(|t| t.as_uuid().is_some()));
            seen.insert(big);
        }
        // Drawn afresh each time, not one fixed value.
        assert!(seen.len() > 190, "{}", seen.len());
    }
}
