//! `doctor`: audits a live database against the rules tenant-db relies on, and says for each
//! finding which table, which rule, why it matters and the SQL that fixes it.
//!
//! The tenant tables are the ones you [`register`](DoctorConfig::register) and every table of
//! the audited schemas that has a tenant column ([`tenant_columns`](DoctorConfig::tenant_columns),
//! default `tenant_id`), so it also audits a database whose code it has never seen. The
//! application role defaults to the connected role: run it with your application's URL.
//!
//! It probes the policies rather than reading them: as the application role, in transactions
//! it always rolls back, it looks for rows of other tenants with the tenant unset, empty,
//! random, forged and set to sampled real tenants, evaluates the policies on a made-up row of
//! another tenant, and tries an insert that PostgreSQL refuses before writing (the README says
//! exactly what it does and how to turn it off with [`DoctorConfig::probe`]). Every other
//! table the role can reach must be declared global ([`DoctorConfig::global_tables`]). Each
//! table's fixes come as one transaction ([`Report::fixes`]).
//!
//! ```no_run
//! # include!("../../doctest_schema.rs");
//! # #[derive(diesel::Queryable, tenant_db::TenantTable)]
//! # #[diesel(table_name = notes)]
//! # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
//! # async fn demo() -> Result<(), tenant_db::Error> {
//! use tenant_db::doctor::{DoctorConfig, audit_url};
//! let config = DoctorConfig::default().register::<notes::table>()?;
//! let report = audit_url("postgres://app@127.0.0.1/app", &config).await?;
//! for finding in &report.findings {
//!     eprintln!("{}: {} ({})\n  fix: {}", finding.rule, finding.table, finding.detail, finding.fix);
//! }
//! assert!(report.is_clean());
//! # Ok(()) }
//! # fn main() {}
//! ```

mod catalog;
mod fixes;
mod probe;
mod rules;

use crate::registry::Registry;
use crate::{Error, TenantTable};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::fmt;

/// A rule the audit checks. Each finding names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// Row-level security is not enabled on a tenant table.
    RlsDisabled,
    /// Row-level security is enabled but not forced, so the table owner bypasses it.
    RlsNotForced,
    /// The table's owner is a superuser or has `BYPASSRLS`: `FORCE` does not apply to it.
    OwnerBypassesRls,
    /// No restrictive policy for all commands compares the tenant column with the setting.
    NoRestrictivePolicy,
    /// The tenant condition is only in a permissive policy, which any other permissive policy
    /// widens (permissive policies are OR-ed).
    TenantPolicyPermissive,
    /// Probed: with the tenant unset or empty, the application role sees rows or may write
    /// them.
    PolicyFailsOpen,
    /// Probed: with a tenant set, the application role sees rows of other tenants.
    CrossTenantRead,
    /// Probed: with a tenant set, the application role may insert a row of another tenant.
    CrossTenantWrite,
    /// The tenant policy calls `current_setting` for every row instead of once per statement.
    PolicyPerRow,
    /// The tenant policy reads the tenant setting directly instead of through the sealed
    /// `tenant_db.current_tenant()`: any statement of the transaction can change it.
    PolicyTrustsForgeableSetting,
    /// No index leads with the tenant column.
    NoTenantIndex,
    /// The tenant column is of a type tenant-db does not bind tenants as (it is `uuid`,
    /// `bigint`, `integer`, `text` or `varchar`), or allows NULL.
    TenantColumnType,
    /// A unique key omits the tenant column: a violation reveals another tenant's row.
    UniqueWithoutTenant,
    /// A foreign key to a tenant table does not pair the tenant columns: it can reference
    /// another tenant's row.
    ForeignKeyWithoutTenant,
    /// The application role is a superuser.
    AppRoleSuperuser,
    /// The application role has `BYPASSRLS`.
    AppRoleBypassRls,
    /// The application role may take two-key advisory locks, the form tenant-db's tenant locks
    /// take (see [`crate::placement::fence`]).
    AppRoleTenantLocks,
    /// The application role owns a tenant table, or is a member of the owner of a table or
    /// of a `SECURITY DEFINER` function it can call.
    AppRoleOwnsTable,
    /// The application role holds `TRUNCATE`, `REFERENCES` or `TRIGGER` on a tenant table.
    AppRolePrivilege,
    /// A view over a tenant table runs with its owner's rights (no `security_invoker`), or a
    /// materialized view stores every tenant's rows.
    ViewWithoutSecurityInvoker,
    /// A `SECURITY DEFINER` function reads a tenant table with rights its policies do not
    /// bind (its owner bypasses RLS, or owns the table and RLS is not forced).
    SecurityDefinerReadsTenantTable,
    /// A `SECURITY DEFINER` function the application role can call does not set its
    /// `search_path`.
    DefinerWithoutSearchPath,
    /// A partition of a tenant table lacks its own RLS or tenant policy; queried directly,
    /// the parent's policies do not apply.
    PartitionWithoutPolicy,
    /// The application role can read or write a table that has no tenant column and is not
    /// declared global.
    UnclassifiedTable,
    /// The application role can write a global table (or diesel's migrations table).
    GlobalTableWritable,
    /// A registered tenant table's policies differ from what tenant-db generates for it
    /// (`tenant-db rls-sql`): a policy missing, changed, or added by hand.
    PolicyDrift,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 26] = [
        Rule::RlsDisabled,
        Rule::RlsNotForced,
        Rule::OwnerBypassesRls,
        Rule::NoRestrictivePolicy,
        Rule::TenantPolicyPermissive,
        Rule::PolicyFailsOpen,
        Rule::CrossTenantRead,
        Rule::CrossTenantWrite,
        Rule::PolicyPerRow,
        Rule::PolicyTrustsForgeableSetting,
        Rule::PolicyDrift,
        Rule::NoTenantIndex,
        Rule::TenantColumnType,
        Rule::UniqueWithoutTenant,
        Rule::ForeignKeyWithoutTenant,
        Rule::AppRoleSuperuser,
        Rule::AppRoleBypassRls,
        Rule::AppRoleTenantLocks,
        Rule::AppRoleOwnsTable,
        Rule::AppRolePrivilege,
        Rule::ViewWithoutSecurityInvoker,
        Rule::SecurityDefinerReadsTenantTable,
        Rule::DefinerWithoutSearchPath,
        Rule::PartitionWithoutPolicy,
        Rule::UnclassifiedTable,
        Rule::GlobalTableWritable,
    ];

    /// The rule's stable identifier (`rls-disabled`, …), as printed and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Rule::RlsDisabled => "rls-disabled",
            Rule::RlsNotForced => "rls-not-forced",
            Rule::OwnerBypassesRls => "owner-bypasses-rls",
            Rule::NoRestrictivePolicy => "no-restrictive-policy",
            Rule::TenantPolicyPermissive => "tenant-policy-permissive",
            Rule::PolicyFailsOpen => "policy-fails-open",
            Rule::CrossTenantRead => "cross-tenant-read",
            Rule::CrossTenantWrite => "cross-tenant-write",
            Rule::PolicyPerRow => "policy-per-row",
            Rule::PolicyTrustsForgeableSetting => "policy-trusts-forgeable-setting",
            Rule::NoTenantIndex => "no-tenant-index",
            Rule::TenantColumnType => "tenant-column-type",
            Rule::UniqueWithoutTenant => "unique-without-tenant",
            Rule::ForeignKeyWithoutTenant => "foreign-key-without-tenant",
            Rule::AppRoleSuperuser => "app-role-superuser",
            Rule::AppRoleBypassRls => "app-role-bypassrls",
            Rule::AppRoleTenantLocks => "app-role-tenant-locks",
            Rule::AppRoleOwnsTable => "app-role-owns-table",
            Rule::AppRolePrivilege => "app-role-privilege",
            Rule::ViewWithoutSecurityInvoker => "view-without-security-invoker",
            Rule::SecurityDefinerReadsTenantTable => "security-definer-reads-tenant-table",
            Rule::DefinerWithoutSearchPath => "definer-without-search-path",
            Rule::PartitionWithoutPolicy => "partition-without-policy",
            Rule::UnclassifiedTable => "unclassified-table",
            Rule::GlobalTableWritable => "global-table-writable",
            Rule::PolicyDrift => "policy-drift",
        }
    }

    /// Why the rule matters, in a sentence.
    pub fn why(self) -> &'static str {
        match self {
            Rule::RlsDisabled => {
                "without RLS, any query that forgets the tenant filter reads every tenant's rows"
            }
            Rule::RlsNotForced => {
                "the table owner bypasses RLS unless it is forced; a migration or job running as the owner sees every tenant"
            }
            Rule::OwnerBypassesRls => {
                "a superuser or BYPASSRLS owner ignores every policy, forced or not; only an owner without them is bound by FORCE"
            }
            Rule::NoRestrictivePolicy => {
                "RLS isolates tenants only through a restrictive policy on the tenant column, for reads and writes"
            }
            Rule::TenantPolicyPermissive => {
                "permissive policies are OR-ed: the next permissive policy anyone adds (for reporting, say) widens access to every tenant"
            }
            Rule::PolicyFailsOpen => {
                "a request that runs without a tenant set must see nothing, not everything"
            }
            Rule::CrossTenantRead => "a tenant's request reads another tenant's rows",
            Rule::CrossTenantWrite => {
                "a tenant's request writes rows into another tenant, which that tenant then reads as its own"
            }
            Rule::PolicyPerRow => {
                "current_setting outside a scalar subquery runs for every row and keeps the policy off the index; and ''::uuid errors after a SET LOCAL"
            }
            Rule::PolicyTrustsForgeableSetting => {
                "any statement of the transaction can set app.current_tenant (set_config through a declared SQL function, SET LOCAL through an escape hatch) and switch the tenant RLS enforces; tenant_db.current_tenant() checks a seal only the transaction's first statement can make"
            }
            Rule::NoTenantIndex => {
                "every tenant query filters on the tenant column; without an index leading with it, each one scans all tenants' rows"
            }
            Rule::TenantColumnType => {
                "tenant-db binds the tenant as the column's type; another type (char(n) pads, numeric compares loosely) or a NULL tenant makes rows no tenant or the wrong tenant can see"
            }
            Rule::UniqueWithoutTenant => {
                "a unique violation tells one tenant that another tenant has a row with that value"
            }
            Rule::ForeignKeyWithoutTenant => {
                "a foreign key that ignores the tenant lets a row point at, and probe for, another tenant's row"
            }
            Rule::AppRoleSuperuser => "a superuser bypasses RLS and every grant",
            Rule::AppRoleBypassRls => "BYPASSRLS turns every policy off for the application",
            Rule::AppRoleTenantLocks => {
                "with two-key advisory locks, any session can take a tenant's lock: exclusively, freezing that tenant's transactions for as long as it likes; shared, holding up its move"
            }
            Rule::AppRoleOwnsTable => {
                "an owner can disable RLS, drop policies, and bypasses unforced RLS"
            }
            Rule::AppRolePrivilege => {
                "TRUNCATE ignores RLS and empties every tenant; REFERENCES and TRIGGER let the role probe or act on rows it cannot see"
            }
            Rule::ViewWithoutSecurityInvoker => {
                "a view checks RLS as its owner unless it has security_invoker; a materialized view is not covered by RLS at all"
            }
            Rule::SecurityDefinerReadsTenantTable => {
                "a SECURITY DEFINER function runs as its owner; if the policies do not bind the owner, any caller reads every tenant through it"
            }
            Rule::DefinerWithoutSearchPath => {
                "a SECURITY DEFINER function resolves unqualified names through the caller's search_path, so the caller chooses what runs with the owner's rights"
            }
            Rule::PartitionWithoutPolicy => {
                "a partition queried by name is checked against its own policies, not its parent's"
            }
            Rule::UnclassifiedTable => {
                "a table with no tenant column is read unfiltered by every tenant; tenant-db refuses to query an unclassified table, and the database should not serve one either"
            }
            Rule::GlobalTableWritable => {
                "a global table is shared by every tenant: a write from one tenant's request changes what all of them read"
            }
            Rule::PolicyDrift => {
                "the table is registered from code, so its policies should be exactly the ones tenant-db generates; a hand edit is where isolation quietly erodes"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One problem found: the rule, the table (quoted, schema-qualified; empty for findings about
/// the role or a function), what was seen (naming the policy, role or function), and the SQL
/// that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule that fails.
    pub rule: Rule,
    /// The one table (or view) concerned; empty for findings about the role or a function, or
    /// when several tables are concerned (then see `tables`).
    pub table: String,
    /// The tables concerned when there are several (a function that reaches many).
    pub tables: Vec<String>,
    /// What the audit saw.
    pub detail: String,
    /// The SQL that fixes it, or a pointer to the finding of the same table whose fix also
    /// fixes this one. [`Report::fixes`] holds each table's fix as one transaction.
    pub fix: String,
}

/// The fix for one table (or, with an empty `table`, for the role and functions): one
/// transaction, so that an interrupted or failing fix changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The table the fix is for; empty for role and function fixes.
    pub table: String,
    /// `BEGIN; …; COMMIT;`, to run as the tables' owner (or a superuser for role changes).
    pub sql: String,
}

/// The outcome of an audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The application role the audit checked.
    pub app_role: String,
    /// The tenant tables audited (quoted, schema-qualified), with their tenant columns.
    pub tenant_tables: Vec<(String, String)>,
    /// What is wrong; empty when the database is set up right.
    pub findings: Vec<Finding>,
    /// The fixes, one transaction per table.
    pub fixes: Vec<Fix>,
    /// What the probe could not try, and why (a table with triggers is not written to, say).
    pub notes: Vec<String>,
}

impl Report {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Every fix, as one script of transactions (one per table).
    pub fn fix_script(&self) -> String {
        self.fixes
            .iter()
            .map(|f| f.sql.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorConfig {
    /// The schemas to audit (default `public`).
    pub schemas: Vec<String>,
    /// Column names that make a table a tenant table (default `tenant_id`).
    pub tenant_columns: Vec<String>,
    /// The application role to check (default: the connected role).
    pub app_role: Option<String>,
    /// Tables registered from code: `(schema, table, tenant column)`.
    pub registered: Vec<(String, String, String)>,
    /// Global tables: every tenant may read them, none may write them. `table` (looked up in
    /// the audited schemas) or `schema.table`. diesel's `__diesel_schema_migrations` is always
    /// global.
    pub global_tables: Vec<String>,
    /// Whether to probe the policies as the application role (default true); see the
    /// module docs.
    pub probe: bool,
    /// Tenants to probe as, besides those the connected role can see (as text: a UUID, a
    /// number, a text key).
    pub sample_tenants: Vec<String>,
}

impl Default for DoctorConfig {
    fn default() -> Self {
        DoctorConfig {
            schemas: vec!["public".into()],
            tenant_columns: vec!["tenant_id".into()],
            app_role: None,
            registered: Vec::new(),
            global_tables: Vec::new(),
            probe: true,
            sample_tenants: Vec::new(),
        }
    }
}

impl DoctorConfig {
    /// Registers tenant table `T` (its tenant column may have any name). A table declared
    /// without a schema is looked up in the first audited schema.
    pub fn register<T>(self) -> Result<Self, Error>
    where
        T: TenantTable,
        T::FromClause: QueryFragment<Pg>,
    {
        Ok(self.registry(&Registry::new().tenant::<T>()?))
    }

    /// Declares global table `T` (derived with `GlobalTable`).
    pub fn global<T>(self) -> Result<Self, Error>
    where
        T: crate::GlobalTable + Default,
        T::FromClause: QueryFragment<Pg>,
    {
        Ok(self.registry(&Registry::new().global::<T>()?))
    }

    /// Registers every table of `registry` (see [`crate::registry`]): its tenant tables with
    /// their columns, its global tables as global. Registered tenant tables are also checked
    /// for drift: policies that differ from what [`crate::rls`] generates.
    pub fn registry(mut self, registry: &Registry) -> Self {
        for table in registry.tables() {
            let (schema, name) = table.schema_and_name();
            match (table.tenant_column(), schema) {
                (Some(column), schema) => {
                    // A table declared without a schema is looked up in the first audited one.
                    let schema =
                        schema.unwrap_or_else(|| self.schemas.first().cloned().unwrap_or_default());
                    self.registered.push((schema, name, column.to_string()));
                }
                (None, Some(schema)) => self.global_tables.push(format!("{schema}.{name}")),
                (None, None) => self.global_tables.push(name),
            }
        }
        self
    }
}

/// The limits every transaction of the audit runs under: a table another session holds (the
/// catalog functions lock the tables they describe) is given up on, not waited for.
pub(crate) const TIMEOUTS: &str =
    "SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '2s';";

/// diesel's migrations table: global, read by nobody's request, written by migrations only.
const DIESEL_MIGRATIONS: &str = "__diesel_schema_migrations";

/// Audits the database behind `conn`.
///
/// Fails (exit status 2 in the CLI) when there is nothing to audit: a schema, a registered
/// table or a declared global table that does not exist, or no tenant table at all.
pub async fn audit(conn: &mut AsyncPgConnection, config: &DoctorConfig) -> Result<Report, Error> {
    conn.batch_execute(&format!("BEGIN READ ONLY; {TIMEOUTS}"))
        .await?;
    let snap = catalog::read(conn, &config.schemas, config.app_role.as_deref()).await;
    conn.batch_execute("ROLLBACK").await?;
    let snap = snap?;
    for (schema, table, _) in &config.registered {
        if !snap
            .tables
            .iter()
            .any(|t| t.schema == *schema && t.name == *table)
        {
            return Err(Error::Doctor(format!(
                "registered tenant table {} is not in the database: run the migrations, or \
                 audit the schema that holds it (--schema)",
                rules::qualified_name(schema, table)
            )));
        }
    }
    let names = |g: &str, table: &catalog::Table| match g.split_once('.') {
        Some((schema, name)) => schema == table.schema && name == table.name,
        None => g == table.name,
    };
    for g in &config.global_tables {
        if !snap.tables.iter().any(|t| names(g, t)) {
            return Err(Error::Doctor(format!(
                "global table `{g}` is not in schema(s) {}",
                config.schemas.join(", ")
            )));
        }
    }
    let is_global = |table: &catalog::Table| {
        table.name == DIESEL_MIGRATIONS || config.global_tables.iter().any(|g| names(g, table))
    };
    let mut tenants = Vec::new();
    let mut unclassified = Vec::new();
    let mut globals = Vec::new();
    for table in &snap.tables {
        let registered = config
            .registered
            .iter()
            .find(|(s, t, _)| *s == table.schema && *t == table.name)
            .map(|(_, _, c)| c.clone());
        let is_registered = registered.is_some();
        let discovered = || {
            config
                .tenant_columns
                .iter()
                .find(|c| table.columns.contains(c))
                .cloned()
        };
        if let Some(column) = registered.or_else(discovered) {
            tenants.push(rules::TenantTableRef {
                table,
                column,
                registered: is_registered,
            });
        } else if is_global(table) {
            globals.push(table);
        } else {
            unclassified.push(table);
        }
    }
    if tenants.is_empty() {
        // A gate that audited nothing must not pass.
        return Err(Error::Doctor(format!(
            "nothing to audit: no table in schema(s) {} has a tenant column ({}); name the \
             schemas with --schema and the column with --tenant-column",
            config.schemas.join(", "),
            config.tenant_columns.join(", ")
        )));
    }
    let (probes, mut notes) = if config.probe {
        probe::run(conn, &snap, &tenants, &config.sample_tenants).await?
    } else {
        (Vec::new(), Vec::new())
    };
    notes.extend(probes.iter().flat_map(|p| p.skipped.iter().cloned()));
    let mut findings = rules::run(&tenants, &unclassified, &globals, &snap, &probes);
    findings.sort_by(|a, b| (a.rule, &a.table).cmp(&(b.rule, &b.table)));
    let fixes = fixes::collect(&mut findings);
    Ok(Report {
        app_role: snap.role.name.clone(),
        tenant_tables: tenants
            .iter()
            .map(|t| (rules::qualified(t.table), t.column.clone()))
            .collect(),
        findings,
        fixes,
        notes,
    })
}

/// Connects to `database_url` and audits it.
pub async fn audit_url(database_url: &str, config: &DoctorConfig) -> Result<Report, Error> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    audit(&mut conn, config).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_quoted_names() {
        assert_eq!(crate::rls::split_quoted("\"notes\""), vec!["notes"]);
        assert_eq!(
            crate::rls::split_quoted("\"app\".\"we\"\"ird.name\""),
            vec!["app", "we\"ird.name"]
        );
    }

    #[test]
    fn rule_ids_are_unique() {
        let ids: std::collections::BTreeSet<_> = super::Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), super::Rule::ALL.len());
    }
}
