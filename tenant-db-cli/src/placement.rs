//! `tenant-db placement`: shows and changes the tenant directory, and moves tenants.

use clap::Subcommand;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tenant_db::doctor::{DoctorConfig, audit_url};
use tenant_db::placement::{Directory, MoveStep, Mover, Placement, Progress, Site};
use tenant_db::registry::Registry;
use tenant_db::rls::quote_ident;
use tenant_db::{KeyKind, TenantId};

#[derive(Subcommand)]
pub(crate) enum Action {
    /// Lists the directory (every tenant, or one), with the moves under way.
    Show {
        /// One tenant.
        tenant: Option<String>,
    },
    /// Records a tenant's placement without moving rows (a new tenant, or one placed by hand).
    Set {
        /// The tenant.
        tenant: String,
        /// `pool:SERVER`, `bridge:SERVER/SCHEMA` or `silo:SERVER/DATABASE`.
        placement: String,
    },
    /// Moves a tenant online to another placement (promotion, demotion, rebalancing), printing
    /// each step.
    #[command(alias = "demote", alias = "move")]
    Promote {
        /// The tenant.
        tenant: String,
        /// The target placement.
        #[arg(long = "to")]
        to: String,
        /// Keep the tenant's rows at the source (delete them later with `cleanup`).
        #[arg(long)]
        keep_source: bool,
        /// Stop and wait (without finishing) once this step is done: for rehearsing a mover
        /// that dies there. Resume or roll back afterwards.
        #[arg(long, value_parser = parse_step)]
        hold_after: Option<MoveStep>,
        /// How long the freeze may wait for the tenant's open transactions, in ms.
        #[arg(long, default_value_t = 5000)]
        freeze_timeout_ms: u64,
    },
    /// Finishes a move that stopped.
    Resume {
        /// The tenant.
        tenant: String,
    },
    /// Undoes a move that stopped before its commit point.
    Rollback {
        /// The tenant.
        tenant: String,
    },
    /// Deletes a moved tenant's rows from the source (after `promote --keep-source`).
    Cleanup {
        /// The tenant.
        tenant: String,
    },
    /// Audits every database in use (each server's shared one, with its bridge schemas, and
    /// every silo) with the doctor. Exit status 1 when any finding.
    Doctor {
        /// The application role, `NAME` or `NAME:PASSWORD`: the doctor connects as it (the
        /// servers' URLs are used with it), and probes the policies as it.
        #[arg(long)]
        app_user: String,
    },
    /// Runs the red-team check on every database in use, as the application role. Exit status
    /// 1 when anything crossed.
    Redteam {
        /// The application role, `NAME` or `NAME:PASSWORD`; the servers' URLs are used with it.
        #[arg(long)]
        app_user: String,
    },
}

/// `url` as `user` (`NAME` or `NAME:PASSWORD`), same database.
fn as_user(url: &str, user: &str) -> Result<String, String> {
    let (user, password) = match user.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (user, None),
    };
    let database = url::Url::parse(url)
        .map_err(|e| format!("{url}: {e}"))?
        .path()
        .trim_start_matches('/')
        .to_string();
    let database = url::form_urlencoded::parse(format!("d={database}").as_bytes())
        .next()
        .map(|(_, d)| d.into_owned())
        .unwrap_or_default();
    tenant_db::provision::with_role(url, user, password, &database).map_err(|e| e.to_string())
}

fn parse_step(text: &str) -> Result<MoveStep, String> {
    MoveStep::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = MoveStep::ALL.iter().map(|s| s.name()).collect();
        format!("`{text}` is not a step: {}", names.join(", "))
    })
}

/// `NAME=URL`.
pub(crate) fn parse_server(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_string(), url.to_string()))
        }
        _ => Err(format!("`{text}` is not NAME=URL")),
    }
}

pub(crate) struct Options {
    pub(crate) control: String,
    pub(crate) servers: Vec<(String, String)>,
    pub(crate) key_kind: String,
}

pub(crate) fn run(options: Options, action: Action, registry: Registry) -> ExitCode {
    let kind = match KeyKind::from_name(&options.key_kind) {
        Some(kind) => kind,
        None => {
            eprintln!(
                "tenant-db placement: `{}` is not a key kind: uuid, int or text",
                options.key_kind
            );
            return ExitCode::from(2);
        }
    };
    let tenant_of =
        |text: &str| TenantId::parse_as(kind, text).map_err(|e| format!("tenant `{text}`: {e}"));
    // Moves run their connections side by side, and `hold_after` blocks one worker.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tenant-db placement: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let servers = options.servers.clone();
    let sites = async || -> Result<Vec<(Site, String)>, String> {
        let directory = Directory::connect(&options.control, 1).map_err(|e| e.to_string())?;
        let sites = directory
            .sites(servers.iter().map(|(n, _)| n.as_str()))
            .await
            .map_err(|e| e.to_string())?;
        sites
            .into_iter()
            .map(|site| {
                let url = servers
                    .iter()
                    .find(|(n, _)| *n == site.server)
                    .ok_or_else(|| {
                        format!(
                            "the directory names server `{}`, not given with --server",
                            site.server
                        )
                    })?
                    .1
                    .clone();
                let url = site.url(&url).map_err(|e| e.to_string())?;
                Ok((site, url))
            })
            .collect()
    };
    let outcome: Result<bool, String> = runtime.block_on(async {
        let mover = || -> Result<Mover, String> {
            let mut mover =
                Mover::new(&options.control, registry.clone()).map_err(|e| e.to_string())?;
            for (name, url) in &options.servers {
                mover = mover.server(name, url);
            }
            Ok(mover)
        };
        let printer = |hold: Option<MoveStep>| {
            move |p: &Progress| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}: {}", p.step, p.detail);
                let _ = out.flush();
                if Some(p.step) == hold {
                    let _ = writeln!(out, "holding after {}", p.step);
                    let _ = out.flush();
                    drop(out);
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            }
        };
        match action {
            Action::Show { tenant } => {
                let directory =
                    Directory::connect(&options.control, 1).map_err(|e| e.to_string())?;
                let entries = match tenant {
                    Some(t) => {
                        let t = tenant_of(&t)?;
                        let placed = directory.get(&t).await.map_err(|e| e.to_string())?;
                        placed.map(|p| vec![(t, p)]).unwrap_or_default()
                    }
                    None => directory.list().await.map_err(|e| e.to_string())?,
                };
                for (t, p) in entries {
                    let state = match p.state {
                        tenant_db::placement::PlacedState::Active => "active",
                        tenant_db::placement::PlacedState::Frozen => "frozen",
                    };
                    println!(
                        "{t}\t{}\t{state}\t{}",
                        p.placement,
                        p.tier.as_deref().unwrap_or("-")
                    );
                }
                Ok(true)
            }
            Action::Doctor { app_user } => {
                let mut clean = true;
                for (site, url) in sites().await? {
                    let url = as_user(&url, &app_user)?;
                    let mut config = DoctorConfig {
                        schemas: site.schemas.clone(),
                        ..DoctorConfig::default()
                    }
                    .registry(&registry);
                    // The registered tables live in every bridge schema too.
                    let public: Vec<_> = config.registered.clone();
                    for schema in site.schemas.iter().skip(1) {
                        for (_, table, column) in &public {
                            config
                                .registered
                                .push((schema.clone(), table.clone(), column.clone()));
                        }
                    }
                    let report = audit_url(&url, &config)
                        .await
                        .map_err(|e| format!("{site}: {e}"))?;
                    println!("== {site} ({})", site.schemas.join(", "));
                    crate::doctor::print_table(&report);
                    clean &= report.is_clean();
                }
                Ok(clean)
            }
            Action::Redteam { app_user } => {
                let mut clean = true;
                for (site, url) in sites().await? {
                    let app_url = as_user(&url, &app_user)?;
                    let mut targets = Vec::new();
                    for schema in &site.schemas {
                        for t in registry.tenant_tables() {
                            let Some(column) = t.tenant_column() else {
                                continue;
                            };
                            let table = if schema == "public" {
                                t.name().to_string()
                            } else {
                                format!("{}.{}", quote_ident(schema), t.name())
                            };
                            targets.push(tenant_db::redteam::Target::new(&table, column));
                        }
                    }
                    let report = tenant_db::redteam::run(&app_url, &targets)
                        .await
                        .map_err(|e| format!("{site}: {e}"))?;
                    println!("== {site} ({})", site.schemas.join(", "));
                    println!("{report}");
                    clean &= report.is_clean();
                }
                Ok(clean)
            }
            Action::Set { tenant, placement } => {
                let t = tenant_of(&tenant)?;
                let p: Placement = placement
                    .parse()
                    .map_err(|e: tenant_db::placement::PlacementError| e.to_string())?;
                let directory =
                    Directory::connect(&options.control, 1).map_err(|e| e.to_string())?;
                directory.set(&t, &p).await.map_err(|e| e.to_string())?;
                println!("{t}\t{p}");
                Ok(true)
            }
            Action::Promote {
                tenant,
                to,
                keep_source,
                hold_after,
                freeze_timeout_ms,
            } => {
                let t = tenant_of(&tenant)?;
                let to: Placement = to
                    .parse()
                    .map_err(|e: tenant_db::placement::PlacementError| e.to_string())?;
                let mover = mover()?
                    .keep_source(keep_source)
                    .freeze_timeout(Duration::from_millis(freeze_timeout_ms));
                let report = mover
                    .move_to(&t, &to, &mut printer(hold_after))
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "moved {t} to {to}: {} rows copied, {} keys replayed, write pause {:.1} ms",
                    report.copied.iter().map(|c| c.rows).sum::<u64>(),
                    report.replayed,
                    report.pause.as_secs_f64() * 1000.0
                );
                Ok(true)
            }
            Action::Resume { tenant } => {
                let t = tenant_of(&tenant)?;
                mover()?
                    .resume(&t, &mut printer(None))
                    .await
                    .map_err(|e| e.to_string())?;
                println!("resumed {t}");
                Ok(true)
            }
            Action::Rollback { tenant } => {
                let t = tenant_of(&tenant)?;
                mover()?.rollback(&t).await.map_err(|e| e.to_string())?;
                println!("rolled back {t}");
                Ok(true)
            }
            Action::Cleanup { tenant } => {
                let t = tenant_of(&tenant)?;
                mover()?.cleanup(&t).await.map_err(|e| e.to_string())?;
                println!("cleaned up {t}");
                Ok(true)
            }
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tenant-db placement: {e}");
            ExitCode::from(1)
        }
    }
}
