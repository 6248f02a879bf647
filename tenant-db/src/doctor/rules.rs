//! The audit rules, as pure functions over a catalog [`Snapshot`].

use super::catalog::{Policy, Snapshot, Table};
use super::probe::Outcome;
use super::{Finding, Rule};
use crate::KeyType;
use crate::rls::{policy_sql_for, quote_ident, quote_literal};
use crate::seal::TENANT_SETTING;

/// A table the audit treats as a tenant table, with its tenant column.
pub(crate) struct TenantTableRef<'a> {
    pub(crate) table: &'a Table,
    pub(crate) column: String,
    /// Registered from code: its policies must be exactly the generated ones.
    pub(crate) registered: bool,
}

impl TenantTableRef<'_> {
    fn name(&self) -> String {
        qualified(self.table)
    }

    /// The tenant column's type as the catalogue prints it, and whether it is `NOT NULL`.
    pub(crate) fn column_type(&self) -> Option<(&str, bool)> {
        let at = self.table.column(&self.column)?;
        Some((
            self.table.column_types.get(at)?.as_str(),
            *self.table.column_not_null.get(at)?,
        ))
    }

    /// The tenant column's key type, if it can be a tenant column.
    pub(crate) fn key(&self) -> Option<KeyType> {
        self.column_type()
            .and_then(|(ty, _)| KeyType::from_column_type(ty))
    }
}

/// What a generated policy compares a column with: the sealed tenant ([`policy_sql_for`]), or
/// a sealed context value ([`context_policy_sql_for`](crate::rls::context_policy_sql_for)).
#[derive(Clone, Copy)]
enum Reader<'a> {
    Tenant,
    Context(&'a str),
}

/// The condition [`policy_sql_for`] (or a context policy) writes, as PostgreSQL prints it back
/// (`pg_get_expr`), for a column of catalogue type `ty` printed as `column` (quoted or not).
fn generated_condition(column: &str, ty: &str, key: KeyType, reader: Reader<'_>) -> String {
    let (call, alias) = match reader {
        Reader::Tenant => (
            match key {
                KeyType::Uuid => "(tenant_db.current_tenant())::uuid".to_string(),
                KeyType::BigInt => "(tenant_db.current_tenant('int'::text))::bigint".to_string(),
                KeyType::Integer => "(tenant_db.current_tenant('int'::text))::integer".to_string(),
                KeyType::Text => "tenant_db.current_tenant('text'::text)".to_string(),
            },
            "current_tenant",
        ),
        Reader::Context(name) => {
            let read = format!("tenant_db.context({}::text)", quote_literal(name));
            (
                match key {
                    KeyType::Text => read,
                    other => format!("({read})::{}", other.sql_name()),
                },
                "context",
            )
        }
    };
    // A varchar column is compared as text.
    let left = if ty == "text" || key != KeyType::Text {
        column.to_string()
    } else {
        format!("({column})::text")
    };
    format!("({left} = ( SELECT {call} AS {alias}))")
}

/// The ways PostgreSQL may print the condition on `column`: with the column quoted, and, for a
/// name that needs no quotes, bare. Compared whole, so a look-alike name (a schema or column
/// called `tenant_db"` or `tenant_id"`) matches neither.
fn generated_conditions_of(
    column: &str,
    ty: &str,
    key: KeyType,
    reader: Reader<'_>,
) -> Vec<String> {
    let mut forms = vec![generated_condition(&quote_ident(column), ty, key, reader)];
    let simple = column
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if simple {
        forms.push(generated_condition(column, ty, key, reader));
    }
    forms
}

/// [`generated_conditions_of`] the tenant condition.
fn generated_conditions(column: &str, ty: &str, key: KeyType) -> Vec<String> {
    generated_conditions_of(column, ty, key, Reader::Tenant)
}

/// Whether policy `p` is a context policy as [`context_policy_sql_for`] writes it on some
/// column of `table`: restrictive, every command, every role, the same condition in `USING`
/// and `WITH CHECK`.
///
/// [`context_policy_sql_for`]: crate::rls::context_policy_sql_for
fn is_context_policy(p: &Policy, table: &Table) -> bool {
    let Some(name) = p.name.strip_prefix("tenant_db_context_") else {
        return false;
    };
    if crate::context::check_name(name).is_err()
        || p.permissive
        || p.command != "*"
        || !p.to_public
        || p.using != p.with_check
    {
        return false;
    }
    let Some(using) = &p.using else {
        return false;
    };
    table
        .columns
        .iter()
        .zip(&table.column_types)
        .zip(&table.column_not_null)
        .any(|((column, ty), not_null)| {
            *not_null
                && KeyType::from_column_type(ty).is_some_and(|key| {
                    generated_conditions_of(column, ty, key, Reader::Context(name)).contains(using)
                })
        })
}

/// A registered tenant table's policies, against the two [`policy_sql_for`] generates:
/// `tenant_db_isolation` (restrictive, every command, every role, the tenant condition in
/// `USING` and `WITH CHECK`) and `tenant_db_access` (permissive, every command, every role,
/// `true`), and no other but context policies as
/// [`context_policy_sql_for`](crate::rls::context_policy_sql_for) writes them (restrictive:
/// they only narrow).
fn drift_rules(t: &TenantTableRef<'_>, snap: &Snapshot, out: &mut Vec<Finding>) {
    let (Some((ty, _)), Some(key)) = (t.column_type(), t.key()) else {
        // Its column type is its own finding, whose fix regenerates the policies.
        return;
    };
    if !t.registered {
        return;
    }
    let conditions = generated_conditions(&t.column, ty, key);
    let truth = vec!["true".to_string()];
    let expected = [
        ("tenant_db_isolation", false, &conditions),
        ("tenant_db_access", true, &truth),
    ];
    let is = |e: &Option<String>, forms: &[String]| e.as_ref().is_some_and(|e| forms.contains(e));
    let mut differences = Vec::new();
    let mut extra = Vec::new();
    let policies = snap.policies.iter().filter(|p| p.table == t.table.oid);
    for (name, permissive, cond) in expected {
        match policies.clone().find(|p| p.name == name) {
            None => differences.push(format!("policy {name} is missing")),
            Some(p) => {
                let same = p.permissive == permissive
                    && p.command == "*"
                    && p.to_public
                    && is(&p.using, cond)
                    && is(&p.with_check, cond);
                if !same {
                    differences.push(format!("policy {name} was changed"));
                }
            }
        }
    }
    let others = policies.filter(|p| expected.iter().all(|(name, ..)| p.name != *name));
    for p in others.filter(|p| !is_context_policy(p, t.table)) {
        differences.push(format!("policy {} is not one tenant-db generates", p.name));
        extra.push(format!(
            "DROP POLICY {} ON {};\n",
            quote_ident(&p.name),
            t.name()
        ));
    }
    if !differences.is_empty() {
        out.push(finding(
            Rule::PolicyDrift,
            t.name(),
            differences.join("; "),
            format!(
                "{}{}",
                extra.concat(),
                policy_sql_for(&t.name(), &t.column, key)
            ),
        ));
    }
}

/// `"schema"."name"` of a table, always quoted.
pub(crate) fn qualified(table: &Table) -> String {
    qualified_name(&table.schema, &table.name)
}

/// `"schema"."name"`, always quoted.
pub(crate) fn qualified_name(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Column names, quoted and comma-separated.
fn quote_idents(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a policy expression compares the tenant column with the tenant setting. The text says
/// only this much; whether a policy lets rows through is the probe's to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Condition {
    /// Not a tenant condition on this column.
    None,
    /// `current_setting` outside a scalar subquery: evaluated for every row.
    PerRow,
    /// `col = (SELECT … current_setting(…) …)`: fails closed, but trusts a setting any
    /// statement of the transaction can change.
    Forgeable,
    /// `col = (SELECT tenant_db.current_tenant() …)`: sealed, once per statement.
    Sound,
}

/// How `pg_get_expr` prints the sealed tenant's call for a column of type `key`; for a column
/// of no key type (reported by its own rule), any kind's call.
fn sealed_call(key: Option<KeyType>) -> String {
    match key {
        Some(KeyType::Uuid) => "tenant_db.current_tenant()".to_string(),
        Some(other) => format!("tenant_db.current_tenant('{}'::text)", other.kind().name()),
        None => crate::seal::CURRENT_TENANT_CALL.to_string(),
    }
}

/// Classifies a policy expression (as `pg_get_expr` prints it) for tenant column `column` of
/// type `key`. A call of the sealed tenant of another key kind is no tenant condition: it
/// never matches (its tenant is unset).
pub(crate) fn classify(expr: &str, column: &str, key: Option<KeyType>) -> Condition {
    let lower = expr.to_lowercase();
    let setting = format!("current_setting('{TENANT_SETTING}'");
    let sealed = lower.contains(&sealed_call(key));
    if !(sealed || lower.contains(&setting)) || !mentions_identifier(&lower, &column.to_lowercase())
    {
        Condition::None
    } else if !lower.contains("select ") {
        Condition::PerRow
    } else if !sealed {
        Condition::Forgeable
    } else {
        Condition::Sound
    }
}

/// Whether `ident` occurs in `text` as a whole identifier (quoted or not).
fn mentions_identifier(text: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(ident).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + ident.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The commands a policy covers, and what each reads: `r` select and `d` delete read `USING`,
/// `a` insert reads `WITH CHECK`, `w` update reads both (`WITH CHECK` defaulting to `USING`).
const COMMANDS: [(char, &str); 4] = [
    ('r', "SELECT"),
    ('a', "INSERT"),
    ('w', "UPDATE"),
    ('d', "DELETE"),
];

/// The condition a policy puts on command `command`, or `None` if it does not cover it.
fn condition_for(
    policy: &Policy,
    command: char,
    column: &str,
    key: Option<KeyType>,
) -> Option<Condition> {
    if !(policy.command == "*" || policy.command.starts_with(command)) {
        return None;
    }
    let of = |e: Option<&str>| e.map_or(Condition::None, |e| classify(e, column, key));
    let using = of(policy.using.as_deref());
    let check = of(policy.with_check.as_deref().or(policy.using.as_deref()));
    Some(match command {
        'a' => check,
        'w' => using.min(check),
        _ => using,
    })
}

fn finding(rule: Rule, table: String, detail: String, fix: String) -> Finding {
    Finding {
        rule,
        table,
        tables: Vec::new(),
        detail,
        fix,
    }
}

/// The tenant column is of a key type tenant-db binds, and `NOT NULL`.
fn column_rules(t: &TenantTableRef<'_>, out: &mut Vec<Finding>) {
    let Some((ty, not_null)) = t.column_type() else {
        return;
    };
    let column = quote_ident(&t.column);
    if KeyType::from_column_type(ty).is_none() {
        out.push(finding(
            Rule::TenantColumnType,
            t.name(),
            format!(
                "tenant column `{}` is `{ty}`; tenant-db binds tenants as uuid, bigint, integer \
                 or text (varchar)",
                t.column
            ),
            // The policy that compares the column blocks the change: dropped and made again
            // for a text key, in the same transaction.
            format!(
                "DROP POLICY IF EXISTS tenant_db_isolation ON {name};\n\
                 ALTER TABLE {name} ALTER COLUMN {column} TYPE text USING {column}::text;\n{}",
                policy_sql_for(&t.name(), &t.column, KeyType::Text),
                name = t.name()
            ),
        ));
    }
    if !not_null {
        out.push(finding(
            Rule::TenantColumnType,
            t.name(),
            format!(
                "tenant column `{}` allows NULL: such a row belongs to no tenant",
                t.column
            ),
            format!(
                "ALTER TABLE {} ALTER COLUMN {column} SET NOT NULL;",
                t.name()
            ),
        ));
    }
}

/// The key type the table's policies will compare with: the column's, or `text` when the
/// column's type is fixed to text by its own finding.
fn fixed_key(t: &TenantTableRef<'_>) -> KeyType {
    t.key().unwrap_or(KeyType::Text)
}

/// What the policies' text says is wrong with the table's tenant condition, if anything.
fn policy_text_problem(t: &TenantTableRef<'_>, snap: &Snapshot) -> Option<(Rule, String)> {
    let policies: Vec<&Policy> = snap
        .policies
        .iter()
        .filter(|p| p.table == t.table.oid && p.applies_to_app)
        .collect();
    // For each command, the best condition among the restrictive policies covering it.
    let mut weakest: Option<(Condition, &str, Option<&str>)> = None;
    for (command, label) in COMMANDS {
        let best = policies
            .iter()
            .filter(|p| !p.permissive)
            .filter_map(|p| {
                condition_for(p, command, &t.column, t.key()).map(|c| (c, p.name.as_str()))
            })
            .max_by_key(|(c, _)| *c);
        let (condition, name) = best.map_or((Condition::None, None), |(c, n)| (c, Some(n)));
        if condition != Condition::Sound && weakest.is_none_or(|(w, _, _)| condition < w) {
            weakest = Some((condition, label, name));
        }
    }
    let (condition, label, name) = weakest?;
    let uncovered: Vec<&str> = COMMANDS
        .iter()
        .filter(|(command, _)| {
            !policies.iter().any(|p| {
                !p.permissive
                    && condition_for(p, *command, &t.column, t.key()) == Some(Condition::Sound)
            })
        })
        .map(|(_, label)| *label)
        .collect();
    let name = name.unwrap_or_default();
    Some(match condition {
        Condition::PerRow => (
            Rule::PolicyPerRow,
            format!("policy `{name}` reads the tenant setting for every row ({label})"),
        ),
        Condition::Forgeable => (
            Rule::PolicyTrustsForgeableSetting,
            format!(
                "policy `{name}` reads `{TENANT_SETTING}` directly, which any statement of the \
                 transaction can change"
            ),
        ),
        _ => {
            if let Some(p) = policies.iter().find(|p| {
                p.permissive
                    && COMMANDS.iter().any(|(c, _)| {
                        condition_for(p, *c, &t.column, t.key())
                            .is_some_and(|c| c != Condition::None)
                    })
            }) {
                (
                    Rule::TenantPolicyPermissive,
                    format!(
                        "the tenant condition is only in permissive policy `{}`",
                        p.name
                    ),
                )
            } else {
                (
                    Rule::NoRestrictivePolicy,
                    format!(
                        "no restrictive policy compares `{}` with the sealed tenant of its key \
                         type for {}",
                        t.column,
                        uncovered.join(", ")
                    ),
                )
            }
        }
    })
}

/// RLS enabled and forced, and the tenant condition sound: by the probe first, the text
/// second. One finding for the table's policies, the others folded into its detail.
fn rls_rules(
    t: &TenantTableRef<'_>,
    snap: &Snapshot,
    probe: Option<&Outcome>,
    out: &mut Vec<Finding>,
) {
    let name = t.name();
    let fix = policy_sql_for(&name, &t.column, fixed_key(t));
    let mut owner_side = Vec::new();
    if t.table.owner_bypasses {
        owner_side.push((
            Rule::OwnerBypassesRls,
            format!(
                "the owner `{}` is a superuser or has BYPASSRLS: FORCE ROW LEVEL SECURITY does \
                 not apply to it, so migrations and jobs running as the owner see every tenant; \
                 give the table an owner that is neither",
                t.table.owner
            ),
        ));
    } else if !t.table.force {
        owner_side.push((
            Rule::RlsNotForced,
            "row-level security is not forced (the table owner bypasses it)".to_string(),
        ));
    }
    // The policy problem: RLS off, else what the probe saw, else what the text says.
    let mut causes: Vec<(Rule, String)> = Vec::new();
    if !t.table.rls {
        causes.push((
            Rule::RlsDisabled,
            "row-level security is not enabled".into(),
        ));
    }
    if let Some(p) = probe.filter(|p| p.found()) {
        let (rule, lines) = if !p.without_tenant.is_empty() {
            (Rule::PolicyFailsOpen, &p.without_tenant)
        } else if !p.foreign_reads.is_empty() {
            (Rule::CrossTenantRead, &p.foreign_reads)
        } else {
            (Rule::CrossTenantWrite, &p.foreign_writes)
        };
        let mut seen: Vec<&String> = lines.iter().collect();
        for more in [&p.without_tenant, &p.foreign_reads, &p.foreign_writes] {
            seen.extend(more.iter().filter(|l| !lines.contains(l)));
        }
        causes.push((
            rule,
            format!(
                "probed: {}",
                seen.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    causes.extend(policy_text_problem(t, snap));
    let policy_side = causes.first().map(|(rule, first)| {
        let also: Vec<&str> = causes[1..].iter().map(|(_, d)| d.as_str()).collect();
        let detail = if also.is_empty() {
            first.clone()
        } else {
            format!("{first}; also: {}", also.join("; "))
        };
        (*rule, detail)
    });
    let mut found: Vec<(Rule, String)> = owner_side;
    found.extend(policy_side);
    if t.table.is_partition && !found.is_empty() {
        let what: Vec<String> = found.into_iter().map(|(_, d)| d).collect();
        out.push(finding(
            Rule::PartitionWithoutPolicy,
            name,
            format!(
                "a partition is queried directly without its parent's policies: {}",
                what.join("; ")
            ),
            fix,
        ));
        return;
    }
    for (rule, detail) in found {
        let fix = if rule == Rule::OwnerBypassesRls {
            format!("ALTER TABLE {name} OWNER TO {};", owner_to(snap))
        } else {
            fix.clone()
        };
        out.push(finding(rule, name.clone(), detail, fix));
    }
}

/// The owner fixes propose: the role tenant-db's migrations ran as (owner of the `tenant_db`
/// schema, bound by `FORCE`), or a placeholder.
fn owner_to(snap: &Snapshot) -> String {
    snap.migration_owner
        .as_deref()
        .map_or_else(|| "<owner_role>".to_string(), quote_ident)
}

/// Whether the app role may write any of `columns` of `table`.
fn writable(table: &Table, columns: &[String]) -> bool {
    columns.iter().any(|c| {
        table
            .column(c)
            .and_then(|at| table.column_writable.get(at))
            .copied()
            .unwrap_or(false)
    })
}

/// Whether the server makes `column`'s values (`Some(true)`), never does (`Some(false)`), or
/// the audit cannot tell (`None`).
fn server_generated(table: &Table, column: &str) -> Option<bool> {
    table
        .column(column)
        .and_then(|at| table.column_server_generated.get(at).copied())
        .unwrap_or(Some(false))
}

/// An index leads with the tenant column; unique keys and foreign keys the app role can write
/// include it.
fn key_rules(
    t: &TenantTableRef<'_>,
    tenants: &[TenantTableRef<'_>],
    snap: &Snapshot,
    out: &mut Vec<Finding>,
) {
    let name = t.name();
    let col = quote_ident(&t.column);
    let indexes: Vec<_> = snap
        .indexes
        .iter()
        .filter(|i| i.table == t.table.oid)
        .collect();
    if !indexes.iter().any(|i| i.columns.first() == Some(&t.column)) {
        out.push(finding(
            Rule::NoTenantIndex,
            name.clone(),
            format!("no index leads with `{}`", t.column),
            format!("CREATE INDEX ON {name} ({col});"),
        ));
    }
    for index in indexes
        .iter()
        .filter(|i| i.unique && !i.columns.contains(&t.column))
    {
        // A key the app role cannot write, or whose one column the server generates, cannot
        // be probed with a chosen value.
        if !writable(t.table, &index.columns) {
            continue;
        }
        let generated = match index.columns.as_slice() {
            [only] => server_generated(t.table, only),
            _ => Some(false),
        };
        if generated == Some(true) {
            continue;
        }
        let unsure = if generated.is_none() {
            " (its column has a default the audit cannot judge: if the server always makes \
             the value and the application never sets it, this is harmless)"
        } else {
            ""
        };
        let columns = format!("{col}, {}", quote_idents(&index.columns));
        let fix = if index.columns.iter().any(|c| c == "<expr>") {
            format!(
                "-- recreate unique index {} with {col} first (it has expression columns)",
                quote_ident(&index.name)
            )
        } else if let Some(constraint) = &index.constraint {
            let kind = if index.primary {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            };
            format!(
                "ALTER TABLE {name} DROP CONSTRAINT {c};\nALTER TABLE {name} ADD CONSTRAINT {c} {kind} ({columns});",
                c = quote_ident(constraint)
            )
        } else {
            format!(
                "DROP INDEX {schema}.{i};\nCREATE UNIQUE INDEX {i} ON {name} ({columns});",
                schema = quote_ident(&t.table.schema),
                i = quote_ident(&index.name)
            )
        };
        out.push(finding(
            Rule::UniqueWithoutTenant,
            name.clone(),
            format!(
                "unique index `{}` on ({}) omits `{}`{unsure}",
                index.name,
                index.columns.join(", "),
                t.column
            ),
            fix,
        ));
    }
    for fk in snap.foreign_keys.iter().filter(|k| k.table == t.table.oid) {
        // A foreign key to a global table needs no tenant column; one to a tenant table must
        // pair the two tenant columns, or it can reference (and so probe) another tenant's row.
        let Some(target) = tenants.iter().find(|r| r.table.oid == fk.references) else {
            continue;
        };
        let paired = fk
            .columns
            .iter()
            .zip(&fk.referenced_columns)
            .any(|(c, r)| *c == t.column && *r == target.column);
        if paired || !writable(t.table, &fk.columns) {
            continue;
        }
        // Keep the pairs that do not reference the tenant column, and pair the tenant columns.
        let (own, referenced): (Vec<String>, Vec<String>) = fk
            .columns
            .iter()
            .zip(&fk.referenced_columns)
            .filter(|(c, r)| **c != t.column && **r != target.column)
            .map(|(c, r)| (c.clone(), r.clone()))
            .unzip();
        out.push(finding(
            Rule::ForeignKeyWithoutTenant,
            name.clone(),
            format!(
                "foreign key `{}` ({}) → {} ({}) does not pair `{}` with `{}`",
                fk.name,
                fk.columns.join(", "),
                target.name(),
                fk.referenced_columns.join(", "),
                t.column,
                target.column
            ),
            format!(
                "ALTER TABLE {name} DROP CONSTRAINT {};\n\
                 ALTER TABLE {name} ADD FOREIGN KEY ({col}, {}) REFERENCES {} ({}, {});",
                quote_ident(&fk.name),
                quote_idents(&own),
                target.name(),
                quote_ident(&target.column),
                quote_idents(&referenced),
            ),
        ));
    }
}

/// `REVOKE` statements for the privileges among `wanted` that the app role holds on `table`,
/// one per grantee they come through (the role itself, `PUBLIC`, or a role it inherits from).
fn revoke_sql(table: &Table, wanted: &[&str]) -> Option<(String, String)> {
    let mut by_grantee: Vec<(String, Vec<String>)> = Vec::new();
    for (privilege, grantee) in table.held(wanted) {
        match by_grantee.iter_mut().find(|(g, _)| g == grantee) {
            Some((_, privileges)) => privileges.push(privilege.to_string()),
            None => by_grantee.push((grantee.to_string(), vec![privilege.to_string()])),
        }
    }
    if by_grantee.is_empty() {
        return None;
    }
    let mut held: Vec<String> = by_grantee.iter().flat_map(|(_, p)| p.clone()).collect();
    held.sort();
    held.dedup();
    let sql = by_grantee
        .iter_mut()
        .map(|(grantee, privileges)| {
            privileges.sort();
            let to = if grantee == "PUBLIC" {
                "PUBLIC".to_string()
            } else {
                quote_ident(grantee)
            };
            format!(
                "REVOKE {} ON {} FROM {to};",
                privileges.join(", "),
                qualified(table)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let through: Vec<&str> = by_grantee.iter().map(|(g, _)| g.as_str()).collect();
    Some((
        format!("{} (granted to {})", held.join(", "), through.join(", ")),
        sql,
    ))
}

/// The app role: no superuser, no `BYPASSRLS`, owns no tenant table, no risky privileges.
fn role_rules(
    tenants: &[TenantTableRef<'_>],
    others: &[&Table],
    snap: &Snapshot,
    out: &mut Vec<Finding>,
) {
    let role = &snap.role;
    let r = quote_ident(&role.name);
    if role.superuser {
        out.push(finding(
            Rule::AppRoleSuperuser,
            String::new(),
            format!("the application role `{}` is a superuser", role.name),
            format!("ALTER ROLE {r} NOSUPERUSER;"),
        ));
        // A superuser bypasses everything below; saying so per table adds nothing.
        return;
    }
    if role.bypass_rls {
        out.push(finding(
            Rule::AppRoleBypassRls,
            String::new(),
            format!("the application role `{}` has BYPASSRLS", role.name),
            format!("ALTER ROLE {r} NOBYPASSRLS;"),
        ));
    }
    // Through membership in the owner, the owner's finding says it (and its fix ends both).
    let owner_member = snap
        .migration_owner
        .as_ref()
        .is_some_and(|o| snap.memberships.iter().any(|m| &m.name == o));
    if role.tenant_locks && !owner_member {
        let owner = snap.migration_owner.as_deref().unwrap_or("<owner>");
        out.push(finding(
            Rule::AppRoleTenantLocks,
            String::new(),
            format!(
                "the application role `{}` may take two-key advisory locks, tenant-db's tenant locks",
                role.name
            ),
            format!(
                "{}\n{}",
                crate::placement::fence::lock_guard_sql(owner)
                    .unwrap_or_else(|e| format!("-- {e}")),
                crate::placement::fence::lock_revoke_sql(&role.name)
                    .unwrap_or_else(|e| format!("-- {e}"))
            ),
        ));
    }
    // Through membership: `SET ROLE` (or inheritance) gives the app role what the other role
    // has. One finding per privileged role, naming the chain; the fix revokes its first link.
    let chain = |m: &crate::doctor::catalog::Membership| {
        std::iter::once(role.name.as_str())
            .chain(m.path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let revoke = |m: &crate::doctor::catalog::Membership| {
        let first = m
            .path
            .first()
            .map(String::as_str)
            .unwrap_or(m.name.as_str());
        format!("REVOKE {} FROM {r};", quote_ident(first))
    };
    if let Some(m) = snap.memberships.iter().find(|m| m.superuser) {
        out.push(finding(
            Rule::AppRoleSuperuser,
            String::new(),
            format!(
                "the application role is a member of superuser role `{}` ({}): SET ROLE \
                 bypasses everything",
                m.name,
                chain(m)
            ),
            revoke(m),
        ));
        return;
    }
    if let Some(m) = snap.memberships.iter().find(|m| m.bypass_rls) {
        out.push(finding(
            Rule::AppRoleBypassRls,
            String::new(),
            format!(
                "the application role is a member of BYPASSRLS role `{}` ({}): SET ROLE \
                 turns every policy off",
                m.name,
                chain(m)
            ),
            revoke(m),
        ));
    }
    // Owning a table through membership is one problem per owner role, whatever the number
    // of tables.
    let mut through: Vec<(&crate::doctor::catalog::Membership, Vec<String>)> = Vec::new();
    for t in tenants {
        let name = t.name();
        if t.table.app_owns {
            if let Some(m) = snap.memberships.iter().find(|m| m.name == t.table.owner) {
                match through.iter_mut().find(|(seen, _)| seen.name == m.name) {
                    Some((_, tables)) => tables.push(name),
                    None => through.push((m, vec![name])),
                }
            } else {
                out.push(finding(
                    Rule::AppRoleOwnsTable,
                    name.clone(),
                    format!("the application role `{}` owns the table", role.name),
                    format!("ALTER TABLE {name} OWNER TO {};", owner_to(snap)),
                ));
            }
        } else if let Some((held, sql)) =
            revoke_sql(t.table, &["TRUNCATE", "REFERENCES", "TRIGGER"])
        {
            out.push(finding(
                Rule::AppRolePrivilege,
                name.clone(),
                format!("the application role `{}` holds {held}", role.name),
                sql,
            ));
        }
    }
    for table in others.iter().filter(|t| t.app_owns) {
        if let Some(m) = snap.memberships.iter().find(|m| m.name == table.owner) {
            match through.iter_mut().find(|(seen, _)| seen.name == m.name) {
                Some((_, tables)) => tables.push(qualified(table)),
                None => through.push((m, vec![qualified(table)])),
            }
        }
    }
    // A member of a definer function's owner can replace the function's body, which then
    // runs with the owner's rights for every caller.
    let mut definers: Vec<(&crate::doctor::catalog::Membership, Vec<String>)> = Vec::new();
    for f in &snap.definer_functions {
        if let Some(m) = snap.memberships.iter().find(|m| m.name == f.owner) {
            match definers.iter_mut().find(|(seen, _)| seen.name == m.name) {
                Some((_, functions)) => functions.push(f.signature.clone()),
                None => definers.push((m, vec![f.signature.clone()])),
            }
        }
    }
    for (m, _) in &definers {
        if !through.iter().any(|(seen, _)| seen.name == m.name) {
            through.push((m, Vec::new()));
        }
    }
    for (m, tables) in through {
        let functions = definers
            .iter()
            .find(|(seen, _)| seen.name == m.name)
            .map(|(_, f)| f.join(", "));
        let owned = match (tables.is_empty(), functions) {
            (false, Some(f)) => format!(
                "{} and of SECURITY DEFINER function(s) {f}",
                tables.join(", ")
            ),
            (true, Some(f)) => {
                format!("SECURITY DEFINER function(s) {f} (it can replace their bodies)")
            }
            (_, None) => tables.join(", "),
        };
        let mut f = finding(
            Rule::AppRoleOwnsTable,
            if tables.len() == 1 {
                tables[0].clone()
            } else {
                String::new()
            },
            format!(
                "the application role is a member of `{}` ({}), the owner of {owned}",
                m.name,
                chain(m),
            ),
            revoke(m),
        );
        if tables.len() > 1 {
            f.tables = tables;
        }
        out.push(f);
    }
}

/// Tables that are neither tenant nor global, and global tables the app role can write.
fn classification_rules(
    unclassified: &[&Table],
    globals: &[&Table],
    snap: &Snapshot,
    out: &mut Vec<Finding>,
) {
    let role = &snap.role.name;
    // Owning a table through membership is the role's finding.
    let through = |t: &Table| t.app_owns && snap.memberships.iter().any(|m| m.name == t.owner);
    let unclassified = unclassified.iter().filter(|t| !through(t));
    let globals = globals.iter().filter(|t| !through(t));
    for table in unclassified.filter(|t| t.app_reads || t.app_writes) {
        let name = qualified(table);
        let how = if table.app_owns {
            "owns"
        } else if table.app_writes {
            "can read and write"
        } else {
            "can read"
        };
        let fix = if table.app_owns {
            format!("ALTER TABLE {name} OWNER TO {};", owner_to(snap))
        } else {
            revoke_sql(
                table,
                &[
                    "SELECT",
                    "INSERT",
                    "UPDATE",
                    "DELETE",
                    "TRUNCATE",
                    "REFERENCES",
                    "TRIGGER",
                ],
            )
            .map_or_else(
                || format!("REVOKE ALL ON {name} FROM {};", quote_ident(role)),
                |(_, sql)| sql,
            )
        };
        out.push(finding(
            Rule::UnclassifiedTable,
            name.clone(),
            format!(
                "the application role {how} {name}, which has no tenant column and is not \
                 declared global: every tenant reads all of it (declare it with --global-table \
                 if that is meant, or add a tenant column)"
            ),
            fix,
        ));
    }
    for table in globals.filter(|t| t.app_writes) {
        let name = qualified(table);
        let (detail, fix) = if table.app_owns {
            (
                format!("the application role owns global table {name}"),
                format!("ALTER TABLE {name} OWNER TO {};", owner_to(snap)),
            )
        } else {
            match revoke_sql(table, &["INSERT", "UPDATE", "DELETE", "TRUNCATE"]) {
                Some((held, sql)) => (
                    format!(
                        "the application role holds {held} on global table {name}: one tenant's request changes what every tenant reads"
                    ),
                    sql,
                ),
                None => continue,
            }
        };
        out.push(finding(Rule::GlobalTableWritable, name, detail, fix));
    }
}

/// Whether a function body runs SQL text it builds (`EXECUTE` in PL/pgSQL): it can reach any
/// table.
fn runs_dynamic_sql(language: &str, source: &str) -> bool {
    language == "plpgsql" && mentions_identifier(&source.to_lowercase(), "execute")
}

/// Views over tenant tables run as the invoker; `SECURITY DEFINER` functions do not read them
/// with rights the app role lacks, and set their `search_path`.
fn bypass_rules(tenants: &[TenantTableRef<'_>], snap: &Snapshot, out: &mut Vec<Finding>) {
    let mut flagged = std::collections::BTreeSet::new();
    for v in &snap.views {
        let Some(t) = tenants.iter().find(|t| t.table.oid == v.table) else {
            continue;
        };
        if v.security_invoker || !flagged.insert(v.view.clone()) {
            continue;
        }
        let (detail, fix) = if v.materialized {
            (
                format!(
                    "materialized view `{}` stores rows of {} for every tenant; RLS does not apply to it",
                    v.view,
                    t.name()
                ),
                format!(
                    "REVOKE ALL ON {} FROM {};",
                    v.view,
                    quote_ident(&snap.role.name)
                ),
            )
        } else {
            (
                format!(
                    "view `{}` reads {} with its owner's rights, not the caller's",
                    v.view,
                    t.name()
                ),
                format!("ALTER VIEW {} SET (security_invoker = true);", v.view),
            )
        };
        out.push(finding(
            Rule::ViewWithoutSecurityInvoker,
            v.view.clone(),
            detail,
            fix,
        ));
    }
    for f in &snap.definer_functions {
        let source = f.source.to_lowercase();
        let dynamic = runs_dynamic_sql(&f.language, &f.source);
        let reached: Vec<&TenantTableRef<'_>> = tenants
            .iter()
            .filter(|t| dynamic || mentions_identifier(&source, &t.table.name.to_lowercase()))
            .collect();
        // Its owner reads a table without its policies if it bypasses RLS, or owns the table
        // and RLS is not forced on it. Otherwise the policies bind the function as they bind
        // the app role.
        let unbound: Vec<String> = reached
            .iter()
            .filter(|t| f.owner_bypasses || f.owns_unforced.contains(&t.table.oid))
            .map(|t| t.name())
            .collect();
        if !unbound.is_empty() {
            let how = if dynamic {
                "runs SQL it builds (EXECUTE), so it reaches every table, including"
            } else {
                "reads"
            };
            let why = if f.owner_bypasses {
                "its owner bypasses RLS".to_string()
            } else {
                "its owner owns them and RLS is not forced".to_string()
            };
            let mut found = finding(
                Rule::SecurityDefinerReadsTenantTable,
                if unbound.len() == 1 {
                    unbound[0].clone()
                } else {
                    String::new()
                },
                format!(
                    "SECURITY DEFINER function `{}` (owner `{}`) {how} {} with its owner's \
                     rights, and {why}",
                    f.signature,
                    f.owner,
                    unbound.join(", ")
                ),
                format!("ALTER FUNCTION {} SECURITY INVOKER;", f.signature),
            );
            if unbound.len() > 1 {
                found.tables = unbound;
            }
            out.push(found);
        }
        if !f.sets_search_path {
            out.push(finding(
                Rule::DefinerWithoutSearchPath,
                String::new(),
                format!(
                    "SECURITY DEFINER function `{}` (owner `{}`) does not set search_path: an \
                     object the caller creates earlier in the path runs with the owner's rights",
                    f.signature, f.owner
                ),
                format!(
                    "ALTER FUNCTION {} SET search_path = pg_catalog, {}, pg_temp;",
                    f.signature,
                    quote_ident(&f.schema)
                ),
            ));
        }
    }
}

/// Runs every rule over the tenant tables `tenants`, the tables `unclassified` and `globals`,
/// and the probe's outcomes.
pub(crate) fn run(
    tenants: &[TenantTableRef<'_>],
    unclassified: &[&Table],
    globals: &[&Table],
    snap: &Snapshot,
    probes: &[Outcome],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let others: Vec<&Table> = unclassified.iter().chain(globals).copied().collect();
    role_rules(tenants, &others, snap, &mut out);
    for t in tenants {
        column_rules(t, &mut out);
        let probe = probes.iter().find(|p| p.table == t.table.oid);
        rls_rules(t, snap, probe, &mut out);
        drift_rules(t, snap, &mut out);
        key_rules(t, tenants, snap, &mut out);
    }
    if !snap.role.superuser {
        // A superuser reads and writes everything; its own finding says so.
        classification_rules(unclassified, globals, snap, &mut out);
    }
    bypass_rules(tenants, snap, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::{Condition, KeyType, classify, generated_conditions};

    #[test]
    fn only_a_restrictive_context_policy_on_a_not_null_key_column_is_kept() {
        use super::super::catalog::{Policy, Table};
        let table = Table {
            columns: vec!["tenant_id".into(), "owner_id".into(), "note".into()],
            column_types: vec!["uuid".into(), "bigint".into(), "bigint".into()],
            column_not_null: vec![true, true, false],
            ..Table::default()
        };
        // As PostgreSQL 15 prints `context_policy_sql_for`'s condition (checked on a live
        // server by `tests/tests/context.rs`).
        let on = |column: &str, name: &str| {
            Some(format!(
                "({column} = ( SELECT (tenant_db.context('{name}'::text))::bigint AS context))"
            ))
        };
        let policy = Policy {
            name: "tenant_db_context_user".into(),
            permissive: false,
            command: "*".into(),
            to_public: true,
            using: on("owner_id", "user"),
            with_check: on("owner_id", "user"),
            ..Policy::default()
        };
        assert!(super::is_context_policy(&policy, &table));
        type Change = fn(&mut Policy);
        let changed: [(&str, Change); 9] = [
            ("permissive", |p| p.permissive = true),
            ("one command", |p| p.command = "r".into()),
            ("some roles", |p| p.to_public = false),
            ("check differs", |p| p.with_check = Some("true".into())),
            ("no check", |p| p.with_check = None),
            ("no using", |p| {
                p.using = None;
                p.with_check = None;
            }),
            ("not a context policy", |p| {
                p.name = "tenant_db_contextuser".into()
            }),
            ("bad name", |p| p.name = "tenant_db_context_User".into()),
            ("another name", |p| p.name = "tenant_db_context_role".into()),
        ];
        for (what, change) in changed {
            let mut p = policy.clone();
            change(&mut p);
            assert!(!super::is_context_policy(&p, &table), "{what}");
        }
        // A nullable column, a column the table does not have, a true condition.
        for using in [on("note", "user"), on("other", "user"), Some("true".into())] {
            let p = Policy {
                using: using.clone(),
                with_check: using,
                ..policy.clone()
            };
            assert!(!super::is_context_policy(&p, &table), "{:?}", p.using);
        }
    }

    #[test]
    fn only_a_name_that_needs_no_quotes_has_a_bare_form() {
        for (column, forms) in [
            ("tenant_id", 2),
            ("_org$1", 2),
            ("tenant Id", 1),
            ("Tenant", 1),
            ("2fa", 1),
            ("\u{e9}t\u{e9}", 1),
        ] {
            assert_eq!(
                generated_conditions(column, "uuid", KeyType::Uuid).len(),
                forms,
                "{column}"
            );
        }
    }

    #[test]
    fn generated_conditions_read_as_postgresql_prints_them() {
        // `pg_get_expr` of the policies `policy_sql_for` creates, on PostgreSQL 15.
        for (column, ty, key, printed) in [
            (
                "tenant_id",
                "uuid",
                KeyType::Uuid,
                "(tenant_id = ( SELECT (tenant_db.current_tenant())::uuid AS current_tenant))",
            ),
            (
                "Tenant Id",
                "bigint",
                KeyType::BigInt,
                "(\"Tenant Id\" = ( SELECT (tenant_db.current_tenant('int'::text))::bigint AS current_tenant))",
            ),
            (
                "select",
                "integer",
                KeyType::Integer,
                "(\"select\" = ( SELECT (tenant_db.current_tenant('int'::text))::integer AS current_tenant))",
            ),
            (
                "tenant_id",
                "text",
                KeyType::Text,
                "(tenant_id = ( SELECT tenant_db.current_tenant('text'::text) AS current_tenant))",
            ),
            (
                "tenant_id",
                "character varying(64)",
                KeyType::Text,
                "((tenant_id)::text = ( SELECT tenant_db.current_tenant('text'::text) AS current_tenant))",
            ),
        ] {
            assert!(
                generated_conditions(column, ty, key).contains(&printed.to_string()),
                "{printed}"
            );
        }
        // Look-alikes print with an extra quote, and match nothing.
        for printed in [
            "(\"tenant_id\"\"\" = ( SELECT (tenant_db.current_tenant())::uuid AS current_tenant))",
            "(tenant_id = ( SELECT (\"tenant_db\"\"\".current_tenant())::uuid AS current_tenant))",
        ] {
            assert!(
                !generated_conditions("tenant_id", "uuid", KeyType::Uuid)
                    .contains(&printed.to_string()),
                "{printed}"
            );
        }
    }

    #[test]
    fn classifies_policy_forms() {
        let sound = "(tenant_id = ( SELECT (tenant_db.current_tenant())::uuid AS current_tenant))";
        assert_eq!(
            classify(sound, "tenant_id", Some(KeyType::Uuid)),
            Condition::Sound
        );
        assert_eq!(
            classify(sound, "org_id", Some(KeyType::Uuid)),
            Condition::None
        );
        let forgeable = "(tenant_id = ( SELECT (NULLIF(current_setting('app.current_tenant'::text, true), ''::text))::uuid AS \"nullif\"))";
        assert_eq!(
            classify(forgeable, "tenant_id", Some(KeyType::Uuid)),
            Condition::Forgeable
        );
        let per_row = "(tenant_id = (current_setting('app.current_tenant'::text, true))::uuid)";
        assert_eq!(
            classify(per_row, "tenant_id", Some(KeyType::Uuid)),
            Condition::PerRow
        );
        let open = "((current_setting('app.current_tenant'::text, true) IS NULL) OR (tenant_id = ( SELECT (current_setting('app.current_tenant'::text, true))::uuid AS current_setting)))";
        // Whether it lets rows through is the probe's to find; the text says it trusts the
        // setting.
        assert_eq!(
            classify(open, "tenant_id", Some(KeyType::Uuid)),
            Condition::Forgeable
        );
        assert_eq!(
            classify("true", "tenant_id", Some(KeyType::Uuid)),
            Condition::None
        );
        // `tenant_id` inside a longer identifier is not the tenant column.
        let other = "(other_tenant_id = ( SELECT (current_setting('app.current_tenant'::text, true))::uuid AS x))";
        assert_eq!(
            classify(other, "tenant_id", Some(KeyType::Uuid)),
            Condition::None
        );
        // Other key types: their own kind's call, cast to the column's type.
        let bigint = "(account_id = ( SELECT (tenant_db.current_tenant('int'::text))::bigint AS current_tenant))";
        assert_eq!(
            classify(bigint, "account_id", Some(KeyType::BigInt)),
            Condition::Sound
        );
        assert_eq!(
            classify(bigint, "account_id", Some(KeyType::Text)),
            Condition::None
        );
        assert_eq!(
            classify(bigint, "account_id", Some(KeyType::Uuid)),
            Condition::None
        );
        let text = "(slug = ( SELECT tenant_db.current_tenant('text'::text) AS current_tenant))";
        assert_eq!(
            classify(text, "slug", Some(KeyType::Text)),
            Condition::Sound
        );
        assert_eq!(
            classify(text, "slug", Some(KeyType::Integer)),
            Condition::None
        );
        assert_eq!(
            classify(sound, "tenant_id", Some(KeyType::Text)),
            Condition::None
        );
        assert_eq!(classify(text, "slug", None), Condition::Sound);
    }
}
