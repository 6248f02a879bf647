//! One fix per table: the statements of every finding on the table, each once, in one
//! transaction.

use super::{Finding, Fix, Rule};

/// The order a table's fixes run in: the tenant column's type before the policies that compare
/// it, then the rest in report order.
fn order(rule: Rule) -> usize {
    match rule {
        Rule::TenantColumnType => 0,
        other => {
            1 + Rule::ALL
                .iter()
                .position(|r| *r == other)
                .unwrap_or(Rule::ALL.len())
        }
    }
}

/// The statements of a fix (each ends with `;`, or is a comment line).
fn statements(fix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in fix.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with("--") && current.is_empty() {
            out.push(line.trim_start().to_string());
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
        if line.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Groups the findings' fixes by table into transactions; a finding whose statements an
/// earlier finding of the same table already holds points to it instead of repeating them.
pub(crate) fn collect(findings: &mut [Finding]) -> Vec<Fix> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (at, f) in findings.iter().enumerate() {
        match groups.iter_mut().find(|(table, _)| *table == f.table) {
            Some((_, members)) => members.push(at),
            None => groups.push((f.table.clone(), vec![at])),
        }
    }
    // Role and function fixes first: a membership revoked before the tables change hands.
    groups.sort_by_key(|(table, _)| !table.is_empty());
    let mut fixes = Vec::new();
    for (table, mut members) in groups {
        members.sort_by_key(|at| order(findings[*at].rule));
        let mut script: Vec<String> = Vec::new();
        let mut first_rule: Option<Rule> = None;
        for at in members {
            let own = statements(&findings[at].fix);
            let new: Vec<String> = own
                .iter()
                .filter(|s| !script.contains(s))
                .cloned()
                .collect();
            if let Some(rule) = first_rule.filter(|_| new.is_empty() && !own.is_empty()) {
                findings[at].fix = format!("-- fixed by the `{rule}` fix of this table");
            }
            first_rule.get_or_insert(findings[at].rule);
            script.extend(new);
        }
        if script.iter().all(|s| s.starts_with("--")) {
            continue;
        }
        fixes.push(Fix {
            table,
            sql: format!("BEGIN;\n{}\nCOMMIT;\n", script.join("\n")),
        });
    }
    fixes
}

#[cfg(test)]
mod tests {
    use super::{Finding, Rule, collect, statements};

    #[test]
    fn splits_statements_and_comments() {
        assert_eq!(
            statements("-- note\nALTER TABLE a\n  OWNER TO b;  \nDROP INDEX c;"),
            vec!["-- note", "ALTER TABLE a\n  OWNER TO b;", "DROP INDEX c;"]
        );
        // A comment line inside a statement stays in it; text without a `;` is kept.
        assert_eq!(
            statements("ALTER TABLE a\n-- why\nOWNER TO b;\n  -- last\nSELECT 1"),
            vec!["ALTER TABLE a\n-- why\nOWNER TO b;", "-- last", "SELECT 1"]
        );
        assert_eq!(statements("  \n"), Vec::<String>::new());
    }

    fn f(rule: Rule, table: &str, fix: &str) -> Finding {
        Finding {
            rule,
            table: table.into(),
            tables: Vec::new(),
            detail: String::new(),
            fix: fix.into(),
        }
    }

    #[test]
    fn one_transaction_per_table_role_first_column_type_first_statements_once() {
        let mut findings = vec![
            f(Rule::RlsDisabled, "t", "ENABLE;\nPOLICY;"),
            f(Rule::NoTenantIndex, "t", "INDEX;"),
            f(
                Rule::TenantColumnType,
                "t",
                "DROP;\nTYPE;\nENABLE;\nPOLICY;",
            ),
            f(Rule::RlsNotForced, "t", "ENABLE;\nPOLICY;"),
            f(Rule::AppRoleBypassRls, "", "REVOKE;"),
            f(Rule::NoRestrictivePolicy, "u", "-- only a comment"),
            f(Rule::UnclassifiedTable, "v", ""),
        ];
        let fixes = collect(&mut findings);
        let tables: Vec<&str> = fixes.iter().map(|f| f.table.as_str()).collect();
        assert_eq!(tables, vec!["", "t"]);
        assert_eq!(fixes[0].sql, "BEGIN;\nREVOKE;\nCOMMIT;\n");
        assert_eq!(
            fixes[1].sql,
            "BEGIN;\nDROP;\nTYPE;\nENABLE;\nPOLICY;\nINDEX;\nCOMMIT;\n"
        );
        // Covered by the column-type fix: they point at it; the index fix stays its own.
        assert_eq!(
            findings[0].fix,
            "-- fixed by the `tenant-column-type` fix of this table"
        );
        assert_eq!(findings[3].fix, findings[0].fix);
        assert_eq!(findings[1].fix, "INDEX;");
        assert_eq!(findings[2].fix, "DROP;\nTYPE;\nENABLE;\nPOLICY;");
        // A finding with no statement keeps its (empty) fix.
        assert_eq!(findings[6].fix, "");
    }

    #[test]
    fn the_rest_of_a_tables_statements_run_in_report_order() {
        // Given out of order: the script follows the rules' report order, not the findings'.
        let mut findings = vec![
            f(Rule::UniqueWithoutTenant, "t", "UNIQUE;"),
            f(Rule::NoTenantIndex, "t", "INDEX;"),
            f(Rule::RlsDisabled, "t", "ENABLE;"),
        ];
        let fixes = collect(&mut findings);
        assert_eq!(fixes.len(), 1);
        assert_eq!(fixes[0].sql, "BEGIN;\nENABLE;\nINDEX;\nUNIQUE;\nCOMMIT;\n");
    }
}
