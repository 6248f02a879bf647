//! The audit rules, as pure functions over a catalog [`Snapshot`].

use super::catalog::{Policy, Snapshot, Table};
use super::{Finding, Rule};
use crate::KeyType;
use crate::rls::{policy_sql_for, quote_ident};
use crate::seal::TENANT_SETTING;

/// A table the audit treats as a tenant table, with its tenant column.
pub(crate) struct TenantTableRef<'a> {
    pub(crate) table: &'a Table,
    pub(crate) column: String,
}

impl TenantTableRef<'_> {
    fn name(&self) -> String {
        qualified(self.table)
    }

    /// The tenant column's type as the catalogue prints it, and whether it is `NOT NULL`.
    fn column_type(&self) -> Option<(&str, bool)> {
        let at = self.table.columns.iter().position(|c| *c == self.column)?;
        Some((
            self.table.column_types.get(at)?.as_str(),
            *self.table.column_not_null.get(at)?,
        ))
    }

    /// The tenant column's key type, if it can be a tenant column.
    fn key(&self) -> Option<KeyType> {
        self.column_type()
            .and_then(|(ty, _)| KeyType::from_column_type(ty))
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

/// How a policy expression compares the tenant column with the tenant setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    /// Not a tenant condition on this column.
    None,
    /// `col = (SELECT tenant_db.current_tenant() …)`: sealed, once per statement, fails closed.
    Sound,
    /// `col = (SELECT … current_setting(…) …)`: fails closed, but trusts a setting any
    /// statement of the transaction can change.
    Forgeable,
    /// A missing or empty setting can let rows through (`OR`, `IS NULL`, `COALESCE`, `CASE`).
    FailsOpen,
    /// `current_setting` outside a scalar subquery: evaluated for every row.
    PerRow,
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
        return Condition::None;
    }
    let opens = [
        " or ",
        "is null",
        "coalesce(",
        "is not distinct from",
        "case ",
    ];
    if opens.iter().any(|o| lower.contains(o)) {
        Condition::FailsOpen
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

/// The worst condition of a policy: both expressions count (an `ALL` policy without
/// `WITH CHECK` uses `USING` for both, as PostgreSQL does).
fn policy_condition(policy: &Policy, column: &str, key: Option<KeyType>) -> Condition {
    let using = policy.using.as_deref().map(|e| classify(e, column, key));
    let check = policy
        .with_check
        .as_deref()
        .map(|e| classify(e, column, key))
        .or(using);
    match (using, check) {
        (Some(u), Some(c)) => {
            for worst in [
                Condition::None,
                Condition::FailsOpen,
                Condition::PerRow,
                Condition::Forgeable,
            ] {
                if u == worst || c == worst {
                    return worst;
                }
            }
            Condition::Sound
        }
        _ => Condition::None,
    }
}

fn finding(rule: Rule, table: String, detail: String, fix: String) -> Finding {
    Finding {
        rule,
        table,
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
            format!(
                "-- change the column to one of those types, e.g.:\n\
                 ALTER TABLE {} ALTER COLUMN {column} TYPE text;\n",
                t.name()
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
                "ALTER TABLE {} ALTER COLUMN {column} SET NOT NULL;\n",
                t.name()
            ),
        ));
    }
}

/// RLS enabled and forced, and a sound restrictive tenant policy for all commands.
fn rls_rules(t: &TenantTableRef<'_>, snap: &Snapshot, out: &mut Vec<Finding>) {
    let name = t.name();
    let fix = policy_sql_for(&name, &t.column, t.key().unwrap_or(KeyType::Uuid));
    let policies: Vec<&Policy> = snap
        .policies
        .iter()
        .filter(|p| p.table == t.table.oid && p.applies_to_app)
        .collect();
    let restrictive: Vec<(Condition, &str)> = policies
        .iter()
        .filter(|p| !p.permissive && p.command == "*")
        .map(|p| (policy_condition(p, &t.column, t.key()), p.name.as_str()))
        .collect();
    let named = |c: Condition| {
        restrictive
            .iter()
            .find(|(rc, _)| *rc == c)
            .map(|(_, name)| name.to_string())
    };
    let mut found = Vec::new();
    if !t.table.rls {
        found.push((
            Rule::RlsDisabled,
            "row-level security is not enabled".to_string(),
        ));
    }
    if t.table.owner_bypasses {
        found.push((
            Rule::OwnerBypassesRls,
            format!(
                "the owner `{}` is a superuser or has BYPASSRLS: FORCE ROW LEVEL SECURITY does \
                 not apply to it, so migrations and jobs running as the owner see every tenant",
                t.table.owner
            ),
        ));
    } else if !t.table.force {
        found.push((
            Rule::RlsNotForced,
            "row-level security is not forced (the table owner bypasses it)".to_string(),
        ));
    }
    if named(Condition::Sound).is_none() {
        let permissive_tenant = policies
            .iter()
            .find(|p| p.permissive && policy_condition(p, &t.column, t.key()) != Condition::None);
        found.push(if let Some(policy) = named(Condition::FailsOpen) {
            (
                Rule::PolicyFailsOpen,
                format!("policy `{policy}` lets rows through when the tenant is unset"),
            )
        } else if let Some(policy) = named(Condition::PerRow) {
            (
                Rule::PolicyPerRow,
                format!("policy `{policy}` reads the tenant setting for every row"),
            )
        } else if let Some(policy) = named(Condition::Forgeable) {
            (
                Rule::PolicyTrustsForgeableSetting,
                format!(
                    "policy `{policy}` reads `{TENANT_SETTING}` directly, which any statement of \
                     the transaction can change"
                ),
            )
        } else if let Some(policy) = permissive_tenant {
            (
                Rule::TenantPolicyPermissive,
                format!(
                    "the tenant condition is only in permissive policy `{}`",
                    policy.name
                ),
            )
        } else {
            (
                Rule::NoRestrictivePolicy,
                format!(
                    "no restrictive policy for all commands compares `{}` with the sealed tenant \
                     of its key type in USING and WITH CHECK",
                    t.column
                ),
            )
        });
    }
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
            format!(
                "-- move the table to an owner that is neither superuser nor BYPASSRLS:\n\
                 ALTER TABLE {name} OWNER TO <owner_role>;\n"
            )
        } else {
            fix.clone()
        };
        out.push(finding(rule, name.clone(), detail, fix));
    }
}

/// An index leads with the tenant column; unique keys and foreign keys include it.
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
            format!("CREATE INDEX ON {name} ({col}); -- or make the primary key ({col}, id)"),
        ));
    }
    for index in indexes
        .iter()
        .filter(|i| i.unique && !i.columns.contains(&t.column))
    {
        out.push(finding(
            Rule::UniqueWithoutTenant,
            name.clone(),
            format!(
                "unique index `{}` on ({}) omits `{}`",
                index.name,
                index.columns.join(", "),
                t.column
            ),
            format!(
                "-- replace it with a key that leads with the tenant column, e.g.\n\
                 ALTER TABLE {name} ADD UNIQUE ({col}, {});",
                quote_idents(&index.columns)
            ),
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
        if !paired {
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
                    quote_idents(&fk.columns),
                    target.name(),
                    quote_ident(&target.column),
                    quote_idents(&fk.referenced_columns),
                ),
            ));
        }
    }
}

/// The app role: no superuser, no `BYPASSRLS`, owns no tenant table, no risky privileges.
fn role_rules(tenants: &[TenantTableRef<'_>], snap: &Snapshot, out: &mut Vec<Finding>) {
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
    for t in tenants {
        let name = t.name();
        if let Some(m) = snap.memberships.iter().find(|m| m.name == t.table.owner) {
            out.push(finding(
                Rule::AppRoleOwnsTable,
                name.clone(),
                format!(
                    "the application role is a member of the table's owner `{}` ({})",
                    m.name,
                    chain(m)
                ),
                revoke(m),
            ));
        } else if t.table.owner == role.name {
            out.push(finding(
                Rule::AppRoleOwnsTable,
                name.clone(),
                format!("the application role `{}` owns the table", role.name),
                format!("ALTER TABLE {name} OWNER TO <owner_role>;"),
            ));
        } else if !t.table.risky_privileges.is_empty() {
            let privileges = t.table.risky_privileges.join(", ");
            out.push(finding(
                Rule::AppRolePrivilege,
                name.clone(),
                format!("the application role `{}` holds {privileges}", role.name),
                format!("REVOKE {privileges} ON {name} FROM {r};"),
            ));
        }
    }
}

/// Views over tenant tables run as the invoker; `SECURITY DEFINER` functions do not read them.
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
                    "DROP MATERIALIZED VIEW {}; -- or keep it out of the app role's reach",
                    v.view
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
        let read: Vec<String> = tenants
            .iter()
            .filter(|t| mentions_identifier(&source, &t.table.name.to_lowercase()))
            .map(TenantTableRef::name)
            .collect();
        if !read.is_empty() {
            out.push(finding(
                Rule::SecurityDefinerReadsTenantTable,
                read.join(", "),
                format!(
                    "SECURITY DEFINER function `{}` reads {} with its owner's rights",
                    f.signature,
                    read.join(", ")
                ),
                format!("ALTER FUNCTION {} SECURITY INVOKER;", f.signature),
            ));
        }
    }
}

/// Runs every rule over the tenant tables `tenants`.
pub(crate) fn run(tenants: &[TenantTableRef<'_>], snap: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    role_rules(tenants, snap, &mut out);
    for t in tenants {
        column_rules(t, &mut out);
        rls_rules(t, snap, &mut out);
        key_rules(t, tenants, snap, &mut out);
    }
    bypass_rules(tenants, snap, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::{Condition, KeyType, classify};

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
        assert_eq!(
            classify(open, "tenant_id", Some(KeyType::Uuid)),
            Condition::FailsOpen
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
