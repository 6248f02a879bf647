//! `tenant-db`: operations on a tenant-db database.
//!
//! `tenant-db doctor --database-url URL [--app-role NAME] [--json]` audits a live database and
//! exits 0 when it is clean, 1 when anything is found, 2 when it cannot connect, the input is
//! bad, a named schema or global table does not exist, or it found no tenant table to audit.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tenant_db::doctor::{DoctorConfig, Report, audit_url};

#[derive(Parser)]
#[command(
    name = "tenant-db",
    version,
    about = "Operations on a tenant-db database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit a live database: RLS, policies, keys, the application role, views, functions.
    ///
    /// Exit status: 0 clean, 1 findings, 2 cannot connect, bad input, a missing schema, or no
    /// tenant table found (nothing audited).
    Doctor {
        /// The database to audit; connect as the application role, or name it with --app-role.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The application role to check (default: the role the URL connects as).
        #[arg(long)]
        app_role: Option<String>,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// A schema to audit (repeatable; default: public).
        #[arg(long = "schema", default_value = "public")]
        schemas: Vec<String>,
        /// A column name that makes a table a tenant table (repeatable; default: tenant_id).
        #[arg(long = "tenant-column", default_value = "tenant_id")]
        tenant_columns: Vec<String>,
        /// A global table, `table` or `schema.table` (repeatable): every tenant reads it, the
        /// application role writes none. A readable table that is neither tenant nor global is
        /// a finding.
        #[arg(long = "global-table")]
        global_tables: Vec<String>,
        /// A tenant to probe the policies as, besides those the connected role can see
        /// (repeatable).
        #[arg(long = "sample-tenant")]
        sample_tenants: Vec<String>,
        /// Do not probe the policies (read the catalogs only): no transaction is opened as the
        /// application role, and a policy that lets rows through is not found.
        #[arg(long)]
        no_probe: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor {
            database_url,
            app_role,
            json,
            schemas,
            tenant_columns,
            global_tables,
            sample_tenants,
            no_probe,
        } => {
            let config = DoctorConfig {
                schemas,
                tenant_columns,
                app_role,
                global_tables,
                sample_tenants,
                probe: !no_probe,
                ..DoctorConfig::default()
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("tenant-db doctor: cannot start: {e}");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(audit_url(&database_url, &config)) {
                Ok(report) => {
                    if json {
                        println!("{}", to_json(&report));
                    } else {
                        print_table(&report);
                    }
                    ExitCode::from(u8::from(!report.is_clean()))
                }
                Err(e) => {
                    eprintln!("tenant-db doctor: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn to_json(report: &Report) -> serde_json::Value {
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

fn print_table(report: &Report) {
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
