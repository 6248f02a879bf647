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
    /// Whether every attempt ran and held.
    pub fn is_clean(&self) -> bool {
        self.checks.iter().all(|c| c.outcome == Outcome::Held)
    }

    /// The attempts that crossed.
    pub fn crossings(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Crossed(_)))
    }

    /// Whether some attempt could not run.
    pub fn incomplete(&self) -> bool {
        self.checks
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
    let run = async {
        conn.batch_execute(&crate::seal::begin_sql(tenant)).await?;
        conn.batch_execute(sql).await?;
        conn.batch_execute("COMMIT").await
    };
    match run.await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            Err(e.to_string())
        }
    }
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
    // Seed A and B with the same row.
    let mut seeded = Vec::new();
    for p in &prepared {
        let (a, b) = pair(p.info.kind)?;
        let mut failed = None;
        for tenant in [a, b] {
            if let Err(e) = as_tenant(&mut conn, &tenant, &p.insert_sql(&tenant, 1)).await {
                failed = Some(e);
                break;
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
            // A fresh connection per state and table: nothing one attempt left can help the
            // next.
            let mut attacker = AsyncPgConnection::establish(app_url).await?;
            if state == State::SessionLeak {
                as_tenant(&mut attacker, &a, "SELECT 1")
                    .await
                    .map_err(Error::Doctor)?;
                attacker
                    .batch_execute(&format!(
                        "SET {} = {}",
                        crate::seal::TENANT_SETTING,
                        quote_literal(&a.to_string())
                    ))
                    .await?;
            }
            for op in Op::ALL {
                let outcome = attempt(&mut attacker, p, state, op, &a, &b).await;
                let _ = attacker.batch_execute("ROLLBACK").await;
                report.checks.push(Check {
                    table: p.info.name.clone(),
                    op,
                    state,
                    outcome,
                });
            }
        }
    }
    // Children first.
    for p in seeded.iter().rev() {
        let (a, b) = pair(p.info.kind)?;
        for tenant in [a, b] {
            let sql = format!(
                "DELETE FROM {} WHERE {}",
                p.info.name,
                p.info.is_tenant(&tenant)
            );
            if let Err(e) = as_tenant(&mut conn, &tenant, &sql).await {
                report
                    .leftovers
                    .push(format!("{} rows of tenant {tenant}: {e}", p.info.name));
            }
        }
    }
    Ok(report)
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

/// One attempt, in a transaction the caller rolls back.
async fn attempt(
    conn: &mut AsyncPgConnection,
    p: &Prepared,
    state: State,
    op: Op,
    a: &TenantId,
    b: &TenantId,
) -> Outcome {
    let begin = match state {
        State::NoTenant | State::SessionLeak => "BEGIN".to_string(),
        State::EmptySetting => format!("BEGIN; SET LOCAL {} = ''", crate::seal::TENANT_SETTING),
        State::OtherTenant => crate::seal::begin_sql(b),
    };
    if let Err(e) = conn.batch_execute(&begin).await {
        return Outcome::NotRun(format!("cannot begin: {e}"));
    }
    let table = &p.info.name;
    let of_a = p.info.is_tenant(a);
    match op {
        Op::Select => {
            // Without a tenant nothing at all is visible; with B, nothing of A.
            let filter = if state == State::OtherTenant {
                of_a
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
        Op::Insert => match diesel::sql_query(p.insert_sql(a, 2)).execute(conn).await {
            Ok(_) => Outcome::Crossed("a row of tenant A was inserted".to_string()),
            Err(e) if refused(&e) => Outcome::Held,
            // The policies let the row through; something after them refused it.
            Err(e) => Outcome::Crossed(format!("the policies let a row of tenant A through ({e})")),
        },
        Op::Update => {
            let column = quote_ident(&p.info.column);
            let sql = format!("UPDATE {table} SET {column} = {column} WHERE {of_a}");
            let changed = match diesel::sql_query(sql).execute(conn).await {
                Ok(0) => None,
                Ok(n) => Some(format!("{n} rows of tenant A updated")),
                Err(e) if refused(&e) => None,
                Err(e) => Some(format!("the policies let tenant A's rows be updated ({e})")),
            };
            if changed.is_some() || state != State::OtherTenant {
                return changed.map_or(Outcome::Held, Outcome::Crossed);
            }
            // B's own row, moved to A.
            let a_value = of_a.split_once(" = ").map_or("", |(_, v)| v).to_string();
            let sql = format!(
                "UPDATE {table} SET {column} = {a_value} WHERE {}",
                p.info.is_tenant(b)
            );
            match diesel::sql_query(sql).execute(conn).await {
                Ok(0) => Outcome::NotRun("tenant B's row is not visible to B".to_string()),
                Ok(n) => Outcome::Crossed(format!("{n} rows of tenant B moved to tenant A")),
                Err(e) if refused(&e) => Outcome::Held,
                Err(e) => Outcome::Crossed(format!("the policies let B's row move to A ({e})")),
            }
        }
        Op::Delete => {
            let sql = format!("DELETE FROM {table} WHERE {of_a}");
            match diesel::sql_query(sql).execute(conn).await {
                Ok(0) => Outcome::Held,
                Ok(n) => Outcome::Crossed(format!("{n} rows of tenant A deleted")),
                Err(e) if refused(&e) => Outcome::Held,
                // The statement reached A's rows; something after the policies stopped it.
                Err(e) => {
                    Outcome::Crossed(format!("the policies let tenant A's rows be deleted ({e})"))
                }
            }
        }
    }
}
