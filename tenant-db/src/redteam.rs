//! A red-team check for your CI: attacks every tenant table of a live database as the
//! application role and reports anything that crosses tenants.
//!
//! [`run`] seeds two fixture tenants, A and B, with the same row in every table (overlapping
//! ids), then for each table, each of `select`, `insert`, `update`, `delete`, and each
//! [`State`] (no tenant set, the tenant setting empty, tenant B entered, a session-level `SET`
//! of A that a pooler would leak to the next client) tries to reach A's rows, each attempt in
//! a transaction that is rolled back. Afterwards it deletes the fixture rows. The
//! [`Report`] says which attempts crossed; `tenant-db redteam` exits 0 when none did, 1 when
//! one did, 2 when it could not run (a table it could not seed counts: an unseeded table
//! proves nothing).
//!
//! The fixture row of a table fills each `NOT NULL` column that has no default with a plain
//! value of its type (`1`, `'1'`, `false`, the first label of an enum, …), and the columns of
//! a foreign key with the same values as the referenced table's row, so tables are seeded
//! parents first. A table whose checks or triggers refuse such a row is reported as not
//! seeded, with the database's reason.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenant_db::Error> {
//! use tenant_db::redteam::{self, Target};
//! use tenant_db::registry::Registry;
//! let targets = Target::from_registry(&Registry::collected()?);
//! let report = redteam::run("postgres://app@127.0.0.1/app", &targets).await?;
//! assert!(report.is_clean(), "{report}");
//! # Ok(()) }
//! ```

use crate::registry::Registry;
use crate::rls::{quote_ident, quote_literal};
use crate::tables::{self, ColumnInfo, TableInfo};
use crate::{Error, KeyKind, TenantId};
use diesel::OptionalExtension;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::fmt;

/// A tenant table to attack: its quoted name and its tenant column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    table: String,
    column: String,
}

impl Target {
    /// Table `table` (quoted as SQL wants it: `"notes"`, `"app"."notes"`) with tenant column
    /// `column` (unquoted).
    pub fn new(table: &str, column: &str) -> Self {
        Target {
            table: table.to_string(),
            column: column.to_string(),
        }
    }

    /// Every tenant table of `registry`.
    pub fn from_registry(registry: &Registry) -> Vec<Target> {
        registry
            .tenant_tables()
            .filter_map(|t| Some(Target::new(t.name(), t.tenant_column()?)))
            .collect()
    }
}

/// What the attacking transaction has for a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing set: a fresh connection, a plain `BEGIN`.
    NoTenant,
    /// `app.current_tenant` set to `''` in the transaction.
    EmptySetting,
    /// Tenant B entered as tenant-db enters tenants.
    OtherTenant,
    /// A connection on which an earlier transaction entered A and committed, and a
    /// session-level `SET app.current_tenant` to A: what a pooler in transaction mode hands
    /// the next client.
    SessionLeak,
}

impl State {
    /// Every state, in report order.
    pub const ALL: [State; 4] = [
        State::NoTenant,
        State::EmptySetting,
        State::OtherTenant,
        State::SessionLeak,
    ];
}

/// The statement tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read A's rows (and, without a tenant, any row).
    Select,
    /// Insert a row of A.
    Insert,
    /// Update A's rows; with B entered, also move B's row to A.
    Update,
    /// Delete A's rows.
    Delete,
}

impl Op {
    /// Every statement, in report order.
    pub const ALL: [Op; 4] = [Op::Select, Op::Insert, Op::Update, Op::Delete];
}

/// What one attempt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing crossed.
    Held,
    /// Something crossed: what.
    Crossed(String),
    /// Not tried: why (the table could not be seeded, say).
    NotRun(String),
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The table.
    pub table: String,
    /// The statement.
    pub op: Op,
    /// The transaction's tenant state.
    pub state: State,
    /// What happened.
    pub outcome: Outcome,
}

/// Every attempt, and what could not be cleaned up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The attempts, table by table.
    pub checks: Vec<Check>,
    /// Fixture rows that could not be deleted afterwards, with the reason.
    pub leftovers: Vec<String>,
}

impl Report {
    /// Whether every attempt ran and held, and every fixture row was removed.
    pub fn is_clean(&self) -> bool {
        self.checks.iter().all(|c| c.outcome == Outcome::Held) && self.leftovers.is_empty()
    }

    /// The attempts that crossed.
    pub fn crossings(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Crossed(_)))
    }

    /// Whether some attempt could not run, or some fixture row could not be removed.
    pub fn incomplete(&self) -> bool {
        !self.leftovers.is_empty()
            || self
                .checks
                .iter()
                .any(|c| matches!(c.outcome, Outcome::NotRun(_)))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            match &c.outcome {
                Outcome::Held => {}
                Outcome::Crossed(what) => {
                    writeln!(f, "CROSSED {} {:?} {:?}: {what}", c.table, c.op, c.state)?
                }
                Outcome::NotRun(why) => {
                    writeln!(f, "not run {} {:?} {:?}: {why}", c.table, c.op, c.state)?
                }
            }
        }
        for leftover in &self.leftovers {
            writeln!(f, "left behind: {leftover}")?;
        }
        let held = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Held)
            .count();
        write!(f, "{held} of {} attempts held", self.checks.len())
    }
}

#[derive(diesel::QueryableByName)]
struct Values {
    #[diesel(sql_type = Array<Nullable<Text>>)]
    values: Vec<Option<String>>,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A target, read from the catalogue, with the values its foreign keys to tables that are
/// not attacked (global tables) take: an existing row of the referenced table.
struct Prepared {
    info: TableInfo,
    fixed: Vec<(String, String)>,
}

impl Prepared {
    /// The `INSERT` of a fixture row of `tenant`, with value number `n` in the other columns.
    fn insert_sql(&self, tenant: &TenantId, n: u8) -> String {
        let info = &self.info;
        let (mut names, mut values) = (Vec::new(), Vec::new());
        for c in &info.columns {
            let value = if c.name == info.column {
                format!("{}::{}", quote_literal(&tenant.to_string()), info.tenant_ty)
            } else if let Some((_, value)) = self.fixed.iter().find(|(n, _)| *n == c.name) {
                format!("{}::{}", quote_literal(value), c.ty)
            } else if c.needs_value {
                plain_value(c, n)
            } else {
                continue;
            };
            names.push(quote_ident(&c.name));
            values.push(value);
        }
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            info.name,
            names.join(", "),
            values.join(", ")
        )
    }
}

/// A value of column `c`'s type, numbered `n`.
fn plain_value(c: &ColumnInfo, n: u8) -> String {
    let ty = c.ty.as_str();
    let literal = if let Some(label) = &c.first_label {
        label.clone()
    } else if ty.ends_with("[]") {
        "{}".to_string()
    } else if ty == "boolean" {
        "false".to_string()
    } else if ty == "uuid" {
        format!("00000000-0000-4000-8000-{n:012}")
    } else if ty.starts_with("timestamp") || ty == "date" {
        format!("2000-01-0{n}")
    } else if ty.starts_with("time") {
        "00:00".to_string()
    } else if ty == "json" || ty == "jsonb" {
        "{}".to_string()
    } else if ty == "bytea" {
        format!("\\x0{n}")
    } else if ty == "interval" {
        format!("{n} day")
    } else if ty == "inet" || ty == "cidr" {
        format!("127.0.0.{n}")
    } else {
        n.to_string()
    };
    format!("{}::{}", quote_literal(&literal), ty)
}

async fn prepare(
    conn: &mut AsyncPgConnection,
    target: &Target,
    attacked: &[i64],
) -> Result<Prepared, String> {
    let info = tables::read(conn, &target.table, &target.column).await?;
    let mut fixed = Vec::new();
    for key in info
        .foreign_keys
        .iter()
        .filter(|k| !attacked.contains(&k.parent))
    {
        let sql = format!(
            "SELECT ARRAY[{}] AS values FROM {} LIMIT 1",
            key.referenced
                .iter()
                .map(|c| format!("{}::text", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", "),
            key.parent_name
        );
        let row: Option<Values> = diesel::sql_query(sql)
            .get_result(conn)
            .await
            .optional()
            .map_err(|e| e.to_string())?;
        let Some(row) = row else {
            return Err(format!("{} has no row to refer to", key.parent_name));
        };
        for (column, value) in key.columns.iter().zip(row.values) {
            if let Some(value) = value {
                fixed.push((column.clone(), value));
            }
        }
    }
    Ok(Prepared { info, fixed })
}

/// Two fresh tenants of `kind`.
fn fixture_tenants(kind: KeyKind) -> Result<(TenantId, TenantId), Error> {
    let one = || -> Result<TenantId, Error> {
        let random = uuid::Uuid::new_v4();
        Ok(match kind {
            KeyKind::Uuid => TenantId::from_uuid(random)?,
            // Positive and within `integer`, for tables keyed by either.
            KeyKind::Int => TenantId::from_i64(i64::from((random.as_u128() >> 97) as u32 | 1))?,
            KeyKind::Text => TenantId::from_text(&format!("redteam-{}", random.simple()))?,
        })
    };
    Ok((one()?, one()?))
}

/// Runs `sql` in a transaction for `tenant` and commits.
async fn as_tenant(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    sql: &str,
) -> Result<(), String> {
    crate::tx::in_tenant(conn, crate::seal::Begin::new(tenant), true, async |conn| {
        Ok(conn.batch_execute(sql).await?)
    })
    .await
    .map_err(|e| e.to_string())
}

/// Whether an error is the database refusing the write for RLS or privileges.
fn refused(e: &diesel::result::Error) -> bool {
    let text = e.to_string();
    text.contains("row-level security") || text.contains("permission denied")
}

/// Attacks `targets` as the role of `app_url` (the application role); see the module docs.
pub async fn run(app_url: &str, targets: &[Target]) -> Result<Report, Error> {
    if targets.is_empty() {
        return Err(Error::RedTeam(
            "no tenant table to attack: register your tables, or name them".to_string(),
        ));
    }
    let mut conn = AsyncPgConnection::establish(app_url).await?;
    let mut prepared = Vec::new();
    let mut report = Report::default();
    let mut attacked = Vec::new();
    for target in targets {
        if let Ok(oid) = tables::oid_of(&mut conn, &target.table).await {
            attacked.push(oid);
        }
    }
    for target in targets {
        match prepare(&mut conn, target, &attacked).await {
            Ok(p) => prepared.push(p),
            Err(why) => not_run(
                &mut report,
                &target.table,
                &format!("cannot read the table: {why}"),
            ),
        }
    }
    let prepared = tables::fk_order(prepared, |p| &p.info);
    let mut tenants = Vec::new();
    for kind in [KeyKind::Uuid, KeyKind::Int, KeyKind::Text] {
        tenants.push((kind, fixture_tenants(kind)?));
    }
    let pair = |kind: KeyKind| {
        tenants
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| *p)
            .ok_or_else(|| Error::RedTeam("no fixture tenant".to_string()))
    };
    // Seed A and B with the same row; remember every row written, to delete it afterwards.
    let mut seeded = Vec::new();
    let mut written: Vec<(&Prepared, TenantId)> = Vec::new();
    for p in &prepared {
        let (a, b) = pair(p.info.kind)?;
        let mut failed = None;
        for tenant in [a, b] {
            match as_tenant(&mut conn, &tenant, &p.insert_sql(&tenant, 1)).await {
                Ok(()) => written.push((p, tenant)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => seeded.push(p),
            Some(e) => not_run(&mut report, &p.info.name, &format!("cannot seed it: {e}")),
        }
    }
    for p in &seeded {
        let (a, b) = pair(p.info.kind)?;
        for state in State::ALL {
            // With another tenant entered, each fixture tenant is the victim in turn: a hole
            // that depends on how the ids compare shows whichever is larger.
            let pairs: &[(TenantId, TenantId)] = if state == State::OtherTenant {
                &[(a, b), (b, a)]
            } else {
                &[(a, b)]
            };
            let mut outcomes = vec![Outcome::Held; Op::ALL.len()];
            for &(victim, other) in pairs {
                // A fresh connection per state and table: nothing one attempt left can help
                // the next.
                let mut attacker = AsyncPgConnection::establish(app_url).await?;
                if state == State::SessionLeak {
                    as_tenant(&mut attacker, &victim, "SELECT 1")
                        .await
                        .map_err(Error::RedTeam)?;
                    attacker
                        .batch_execute(&format!(
                            "SET {} = {}",
                            crate::seal::TENANT_SETTING,
                            quote_literal(&victim.to_string())
                        ))
                        .await?;
                }
                for (i, op) in Op::ALL.into_iter().enumerate() {
                    let outcome = attempt(&mut attacker, p, state, op, &victim, &other).await;
                    let _ = attacker.batch_execute("ROLLBACK").await;
                    outcomes[i] =
                        worse(std::mem::replace(&mut outcomes[i], Outcome::Held), outcome);
                }
            }
            for (op, outcome) in Op::ALL.into_iter().zip(outcomes) {
                report.checks.push(Check {
                    table: p.info.name.clone(),
                    op,
                    state,
                    outcome,
                });
            }
        }
    }
    // Children first; then check that nothing is left, whatever the deletes said.
    for (p, tenant) in written.iter().rev() {
        let sql = format!(
            "DELETE FROM {} WHERE {}",
            p.info.name,
            p.info.is_tenant(tenant)
        );
        if let Err(e) = as_tenant(&mut conn, tenant, &sql).await {
            report
                .leftovers
                .push(format!("{} rows of tenant {tenant}: {e}", p.info.name));
            continue;
        }
        let left = count_as(&mut conn, tenant, p).await;
        match left {
            Ok(0) => {}
            Ok(n) => report.leftovers.push(format!(
                "{} rows of tenant {tenant}: {n} left after the delete",
                p.info.name
            )),
            Err(e) => report
                .leftovers
                .push(format!("{} rows of tenant {tenant}: {e}", p.info.name)),
        }
    }
    Ok(report)
}

/// The rows of `tenant` in `p`'s table, counted as that tenant.
async fn count_as(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    p: &Prepared,
) -> Result<i64, String> {
    crate::tx::in_tenant(conn, crate::seal::Begin::new(tenant), false, async |conn| {
        Ok(tables::rows_of(conn, &p.info, tenant).await?)
    })
    .await
    .map_err(|e| e.to_string())
}

/// The more telling of two outcomes: a crossing, else a failure to run, else held.
fn worse(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (c @ Outcome::Crossed(_), _) | (_, c @ Outcome::Crossed(_)) => c,
        (n @ Outcome::NotRun(_), _) | (_, n @ Outcome::NotRun(_)) => n,
        _ => Outcome::Held,
    }
}

fn not_run(report: &mut Report, table: &str, why: &str) {
    for state in State::ALL {
        for op in Op::ALL {
            report.checks.push(Check {
                table: table.to_string(),
                op,
                state,
                outcome: Outcome::NotRun(why.to_string()),
            });
        }
    }
}

/// One attempt, in a transaction the caller rolls back: `victim`'s rows are the target,
/// `other` is the tenant entered in [`State::OtherTenant`].
async fn attempt(
    conn: &mut AsyncPgConnection,
    p: &Prepared,
    state: State,
    op: Op,
    victim: &TenantId,
    other: &TenantId,
) -> Outcome {
    let begin = match state {
        State::NoTenant | State::SessionLeak => "BEGIN".to_string(),
        State::EmptySetting => format!("BEGIN; SET LOCAL {} = ''", crate::seal::TENANT_SETTING),
        State::OtherTenant => crate::seal::begin_sql(other),
    };
    if let Err(e) = conn.batch_execute(&begin).await {
        return Outcome::NotRun(format!("cannot begin: {e}"));
    }
    let table = &p.info.name;
    let column = quote_ident(&p.info.column);
    let of_victim = p.info.is_tenant(victim);
    let victim_value = of_victim
        .split_once(" = ")
        .map_or("", |(_, v)| v)
        .to_string();
    // The rows the transaction may rightly change: the entered tenant's own (unknown when it
    // may not read them).
    let own: Option<i64> = if state == State::OtherTenant {
        let sql = format!(
            "SELECT count(*) AS n FROM {table} WHERE {}",
            p.info.is_tenant(other)
        );
        // Under a savepoint: a refused count must not abort the attempt that follows.
        if let Err(e) = conn.batch_execute("SAVEPOINT tenant_db_redteam_own").await {
            return Outcome::NotRun(e.to_string());
        }
        match diesel::sql_query(sql).get_result::<Count>(conn).await {
            Ok(Count { n }) => Some(n),
            Err(e) if refused(&e) => {
                if let Err(e) = conn
                    .batch_execute("ROLLBACK TO SAVEPOINT tenant_db_redteam_own")
                    .await
                {
                    return Outcome::NotRun(e.to_string());
                }
                None
            }
            Err(e) => return Outcome::NotRun(e.to_string()),
        }
    } else {
        Some(0)
    };
    match op {
        Op::Select => {
            // Without a tenant nothing at all is visible; with another, nothing of the victim.
            let filter = if state == State::OtherTenant {
                of_victim
            } else {
                "true".to_string()
            };
            let sql = format!("SELECT count(*) AS n FROM {table} WHERE {filter}");
            match diesel::sql_query(sql).get_result::<Count>(conn).await {
                Ok(Count { n: 0 }) => Outcome::Held,
                Ok(Count { n }) => Outcome::Crossed(format!("{n} rows visible")),
                Err(e) if refused(&e) => Outcome::Held,
                Err(e) => Outcome::NotRun(e.to_string()),
            }
        }
        Op::Insert => match diesel::sql_query(p.insert_sql(victim, 2))
            .execute(conn)
            .await
        {
            Ok(_) => Outcome::Crossed("a row of the victim tenant was inserted".to_string()),
            Err(e) if refused(&e) => Outcome::Held,
            // The policies let the row through; something after them refused it.
            Err(e) => Outcome::Crossed(format!(
                "the policies let a row of the victim tenant through ({e})"
            )),
        },
        Op::Update => {
            let statements = [
                // The victim's rows, by their tenant (the SELECT policies apply: the WHERE
                // reads the column).
                (
                    format!("UPDATE {table} SET {column} = {column} WHERE {of_victim}"),
                    0,
                ),
                // Every row, reading no column: only the UPDATE policies apply; at most the
                // entered tenant's own rows may be touched, and none may become the victim's.
                (format!("UPDATE {table} SET {column} = {victim_value}"), 0),
            ];
            changes(conn, &statements, "updated").await
        }
        Op::Delete => {
            let mut statements = vec![(format!("DELETE FROM {table} WHERE {of_victim}"), 0)];
            // Reading no column, only the DELETE policies apply. Where the transaction has
            // rows of its own, deleting them may rightly fail on a foreign key, which would
            // say nothing: tried only where it may delete nothing at all.
            if own == Some(0) {
                statements.push((format!("DELETE FROM {table}"), 0));
            }
            changes(conn, &statements, "deleted").await
        }
    }
}

/// Runs each write of `statements` under a savepoint; one that changes more rows than its
/// allowance crosses. A refusal holds; any other error after the policies crosses too.
async fn changes(
    conn: &mut AsyncPgConnection,
    statements: &[(String, i64)],
    verb: &str,
) -> Outcome {
    for (sql, allowed) in statements {
        if let Err(e) = conn.batch_execute("SAVEPOINT tenant_db_redteam").await {
            return Outcome::NotRun(e.to_string());
        }
        match diesel::sql_query(sql).execute(conn).await {
            Ok(n) if (n as i64) <= *allowed => {}
            Ok(n) => {
                return Outcome::Crossed(format!("{n} rows {verb} by `{sql}`"));
            }
            Err(e) if refused(&e) => {}
            Err(e) => {
                return Outcome::Crossed(format!(
                    "the policies let `{sql}` reach the victim's rows ({e})"
                ));
            }
        }
        let _ = conn
            .batch_execute("ROLLBACK TO SAVEPOINT tenant_db_redteam")
            .await;
    }
    Outcome::Held
}

#[cfg(test)]
mod tests {
    use super::{Outcome, worse};

    #[test]
    fn a_crossing_outweighs_a_failure_to_run_which_outweighs_holding() {
        let (held, crossed, not_run) = (
            Outcome::Held,
            Outcome::Crossed("x".into()),
            Outcome::NotRun("y".into()),
        );
        for (a, b, expected) in [
            (&held, &held, &held),
            (&held, &not_run, &not_run),
            (&not_run, &held, &not_run),
            (&not_run, &crossed, &crossed),
            (&crossed, &not_run, &crossed),
            (&held, &crossed, &crossed),
        ] {
            assert_eq!(&worse(a.clone(), b.clone()), expected, "{a:?} {b:?}");
        }
    }
}
