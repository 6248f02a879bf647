//! `tenant-db doctor`: the report, as a table or as JSON.

use tenant_db::doctor::Report;

pub(crate) fn to_json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "clean": report.is_clean(),
        "app_role": report.app_role,
        "tenant_tables": report.tenant_tables.iter()
            .map(|(table, column)| serde_json::json!({"table": table, "tenant_column": column}))
            .collect::<Vec<_>>(),
        "findings": report.findings.iter().map(|f| {
            let mut finding = serde_json::json!({
                "rule": f.rule.id(),
                "table": f.table,
                "detail": f.detail,
                "why": f.rule.why(),
                "fix": f.fix,
            });
            if !f.tables.is_empty() {
                finding["tables"] = serde_json::json!(f.tables);
            }
            finding
        }).collect::<Vec<_>>(),
        "fixes": report.fixes.iter()
            .map(|f| serde_json::json!({"table": f.table, "sql": f.sql}))
            .collect::<Vec<_>>(),
        "notes": report.notes,
    })
}

/// The width the human output wraps at: the terminal's, else `COLUMNS`, else 120.
fn width(table: &comfy_table::Table) -> u16 {
    table
        .width()
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(120)
        .max(60)
}

pub(crate) fn print_table(report: &Report) {
    let tables: Vec<String> = report
        .tenant_tables
        .iter()
        .map(|(t, c)| format!("{t} ({c})"))
        .collect();
    println!(
        "tenant-db doctor: application role `{}`; tenant tables: {}",
        report.app_role,
        if tables.is_empty() {
            "none found".to_string()
        } else {
            tables.join(", ")
        }
    );
    for note in &report.notes {
        println!("note: {note}");
    }
    if report.is_clean() {
        println!("no findings");
        return;
    }
    let mut table = comfy_table::Table::new();
    let width = width(&table);
    table
        .load_preset(comfy_table::presets::UTF8_FULL)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(["rule", "table", "finding and why it matters"]);
    for f in &report.findings {
        let target = if f.tables.is_empty() {
            f.table.clone()
        } else {
            f.tables.join("\n")
        };
        table.add_row([
            f.rule.id(),
            &target,
            &format!("{}\n({})", f.detail, f.rule.why()),
        ]);
    }
    println!("{table}");
    println!("{} finding(s)", report.findings.len());
    println!(
        "\nFixes, one transaction per table (run as the tables' owner; role changes as a superuser):\n"
    );
    println!("{}", report.fix_script());
}
