//! `tenant-db`: operations on a tenant-db database.
//!
//! - `tenant-db doctor --database-url URL [--app-role NAME] [--json]` audits a live database
//!   and exits 0 when it is clean, 1 when anything is found, 2 when it cannot connect, the
//!   input is bad, a named schema or global table does not exist, or it found no tenant table
//!   to audit.
//! - `tenant-db audit --database-url URL [--limit N] [--json]` lists recent admin access.
//! - `tenant-db redteam --database-url URL [--table T[:COLUMN]]…` attacks every tenant table as
//!   the application role (exit 0 held, 1 crossed, 2 could not run).
//! - `tenant-db rls-sql [--table T --column C --key-type K]` prints the row-level-security
//!   SQL of a migration.
//! - `tenant-db placement --control URL --server NAME=URL… show|set|promote|resume|rollback|cleanup`
//!   shows and changes the tenant directory and moves tenants online, printing each step
//!   (`promote TENANT --to silo:SERVER/DATABASE`).
//!
//! The installed command knows no models. Build it into the crate that holds yours and it
//! knows every table your derives register (the doctor checks them for drift, `rls-sql`
//! prints them):
//!
//! ```no_run
//! // src/bin/tenant-db.rs of your crate
//! fn main() -> std::process::ExitCode {
//!     tenant_db_cli::run()
//! }
//! ```

use clap::{Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::process::ExitCode;
use tenant_db::KeyType;
use tenant_db::doctor::{DoctorConfig, audit_url};
use tenant_db::registry::Registry;

mod audit;
mod doctor;
mod placement;

/// A runtime for one command.
fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))
}

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
    /// List recent admin access (the audit rows of `TenantDb::admin_transaction`), newest
    /// first.
    ///
    /// Exit status: 0 listed (possibly nothing), 2 cannot connect or read the audit table.
    Audit {
        /// The database; connect as a role that may read `tenant_db.admin_audit` (the
        /// application role or the owner).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// How many rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print one JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Attack every tenant table as the application role: seed two fixture tenants, then try
    /// to select, insert, update and delete the first one's rows with no tenant set, an empty
    /// setting, the second tenant entered, and a session-level setting a pooler would leak.
    ///
    /// Exit status: 0 nothing crossed, 1 something crossed, 2 cannot connect, nothing to
    /// attack, or a table that could not be seeded.
    Redteam {
        /// The database, as the application role.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// A tenant table, `table` or `schema.table`, with its tenant column after a colon
        /// (default `tenant_id`); repeatable. Registered tables are attacked too.
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Show and change the tenant directory, and move tenants between placements online.
    ///
    /// Exit status: 0 done, 1 refused or failed (the message says where the tenant is), 2 bad
    /// input.
    Placement {
        /// The control database holding the directory, as its owner.
        #[arg(long, env = "TENANT_DB_CONTROL_URL")]
        control: String,
        /// A server, `NAME=URL` (as the tables' owner, to its shared database); repeatable.
        #[arg(long = "server", value_parser = placement::parse_server)]
        servers: Vec<(String, String)>,
        /// The tenants' key kind: uuid, int or text.
        #[arg(long, default_value = "uuid")]
        key_kind: String,
        #[command(subcommand)]
        action: placement::Action,
    },
    /// Print the row-level-security SQL for a migration: for every tenant table this binary
    /// registers (the derives register them; build this command into your crate with
    /// `tenant_db_cli::run` to see yours), or for the table named with --table.
    ///
    /// Exit status: 0 printed, 2 bad input or nothing to print.
    RlsSql {
        /// A tenant table, `table` or `schema.table`, instead of the registered ones.
        #[arg(long, requires = "column")]
        table: Option<String>,
        /// The tenant column of --table.
        #[arg(long)]
        column: Option<String>,
        /// The tenant column's type: uuid, bigint, integer or text.
        #[arg(long, default_value = "uuid", value_parser = parse_key_type)]
        key_type: KeyType,
        /// Only the registered tables derived in this module and its submodules.
        #[arg(long)]
        module: Option<String>,
        /// Also grant this application role writes on the tables.
        #[arg(long)]
        app_role: Option<String>,
    },
}

fn parse_key_type(text: &str) -> Result<KeyType, String> {
    [
        KeyType::Uuid,
        KeyType::BigInt,
        KeyType::Integer,
        KeyType::Text,
    ]
    .into_iter()
    .find(|k| k.sql_name() == text)
    .ok_or_else(|| format!("`{text}` is not a tenant key type: uuid, bigint, integer or text"))
}

/// Parses the process's arguments and runs the command, with the tables the derives registered
/// in this binary. Returns the exit status.
pub fn run() -> ExitCode {
    run_with(std::env::args_os(), Registry::collected())
}

/// Runs the command line `args` (the first is the program's name) with `registry`, or reports
/// why the registry could not be collected.
pub fn run_with<I, T>(args: I, registry: Result<Registry, tenant_db::Error>) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match registry {
        Ok(registry) => dispatch(cli, registry),
        Err(e) => {
            eprintln!("tenant-db: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli, registry: Registry) -> ExitCode {
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
            }
            .registry(&registry);
            let runtime = match current_thread() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("tenant-db doctor: {e}");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(audit_url(&database_url, &config)) {
                Ok(report) => {
                    if json {
                        println!("{}", doctor::to_json(&report));
                    } else {
                        doctor::print_table(&report);
                    }
                    ExitCode::from(u8::from(!report.is_clean()))
                }
                Err(e) => {
                    eprintln!("tenant-db doctor: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Audit {
            database_url,
            limit,
            json,
        } => {
            let rows = current_thread().and_then(|runtime| {
                runtime
                    .block_on(async {
                        let mut conn = AsyncPgConnection::establish(&database_url).await?;
                        tenant_db::admin::recent(&mut conn, i64::from(limit)).await
                    })
                    .map_err(|e| e.to_string())
            });
            match rows {
                Ok(rows) => {
                    if json {
                        println!("{}", audit::to_json(&rows));
                    } else {
                        audit::print(&rows);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tenant-db audit: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Redteam {
            database_url,
            tables,
        } => {
            let mut targets = tenant_db::redteam::Target::from_registry(&registry);
            for spec in &tables {
                let (table, column) = spec.split_once(':').unwrap_or((spec, "tenant_id"));
                match quoted_table(table) {
                    Ok(table) if !column.is_empty() => {
                        targets.push(tenant_db::redteam::Target::new(&table, column))
                    }
                    _ => {
                        eprintln!("tenant-db redteam: `{spec}` is not `table[:column]`");
                        return ExitCode::from(2);
                    }
                }
            }
            let report = current_thread().and_then(|runtime| {
                runtime
                    .block_on(tenant_db::redteam::run(&database_url, &targets))
                    .map_err(|e| e.to_string())
            });
            match report {
                Ok(report) => {
                    println!("{report}");
                    for leftover in &report.leftovers {
                        eprintln!("tenant-db redteam: left behind: {leftover}");
                    }
                    if report.crossings().next().is_some() {
                        ExitCode::from(1)
                    } else if report.incomplete() {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("tenant-db redteam: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Placement {
            control,
            servers,
            key_kind,
            action,
        } => placement::run(
            placement::Options {
                control,
                servers,
                key_kind,
            },
            action,
            registry,
        ),
        Command::RlsSql {
            table,
            column,
            key_type,
            module,
            app_role,
        } => match rls_sql(
            &registry,
            table,
            column,
            key_type,
            module.as_deref(),
            app_role,
        ) {
            Ok(sql) => {
                print!("{sql}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tenant-db rls-sql: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `table` or `schema.table`, quoted.
fn quoted_table(table: &str) -> Result<String, ()> {
    if table.is_empty() || table.split('.').count() > 2 || table.split('.').any(str::is_empty) {
        return Err(());
    }
    Ok(table
        .split('.')
        .map(tenant_db::rls::quote_ident)
        .collect::<Vec<_>>()
        .join("."))
}

/// The SQL `rls-sql` prints.
fn rls_sql(
    registry: &Registry,
    table: Option<String>,
    column: Option<String>,
    key_type: KeyType,
    module: Option<&str>,
    app_role: Option<String>,
) -> Result<String, String> {
    let (mut sql, tables) = match (table, column) {
        (Some(table), Some(column)) => {
            if table.is_empty() || column.is_empty() || table.split('.').any(str::is_empty) {
                return Err(format!(
                    "`{table}` / `{column}` is not a table and a column"
                ));
            }
            let quoted = table
                .split('.')
                .map(tenant_db::rls::quote_ident)
                .collect::<Vec<_>>()
                .join(".");
            let sql = format!(
                "{}{}{}",
                tenant_db::seal::setup_sql(),
                tenant_db::rls::policy_sql_for(&quoted, &column, key_type),
                tenant_db::rls::tenant_index_sql_for(&quoted, &column)
            );
            (sql, vec![quoted])
        }
        _ => {
            let registry = match module {
                Some(module) => Registry::collected_under(module).map_err(|e| e.to_string())?,
                None => registry.clone(),
            };
            if registry.tenant_tables().next().is_none() {
                return Err(
                    "no tenant table is registered in this binary: name one with --table and \
                     --column, or build this command into the crate of your models \
                     (`fn main() -> ExitCode { tenant_db_cli::run() }`)"
                        .to_string(),
                );
            }
            let tables = registry
                .tenant_tables()
                .map(|t| t.name().to_string())
                .collect();
            (registry.migration_sql(), tables)
        }
    };
    if let Some(app) = app_role {
        for table in tables {
            sql.push_str(
                &tenant_db::roles::tenant_table_write_sql_for(&app, &table)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(sql)
}
