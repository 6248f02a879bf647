//! The limit, measured next to us on every run: pgbench (a C client) against the same
//! database, running the raw point read (as the role without RLS, the tenant in the `WHERE`
//! clause) and a tenant transaction sent as one pipelined flight (as the application role
//! under RLS: `BEGIN`, `set_config` of the tenant, the point read and `COMMIT`, in pipeline
//! mode), side by side in alternating rounds, at 1 and 8 clients, both with prepared
//! statements.
//!
//! The flight reads `items_unsealed`: the same rows under the plain policy that trusts
//! `app.current_tenant`. tenant-db's sealed tenant cannot be sent this way (its `enter` must
//! share one simple-query message with `BEGIN`, which pgbench cannot pipeline), so the line is
//! the cheapest flight there is: a tenant transaction cannot do better. Before measuring, the
//! flight is run once and must return its row.

use crate::{DATABASE, Failure, tenant};
use std::process::Command;

/// What pgbench measured: the tenant flight's average latency at 1 client and throughput at
/// 8 clients, each as a ratio to the raw read's (medians of the rounds).
pub(crate) struct Reference {
    pub(crate) latency_1_ratio: f64,
    pub(crate) throughput_8_ratio: f64,
}

/// `latency average = … ms` and `tps = …` of one pgbench run.
fn run(url: &str, script: &str, clients: u32, seconds: u32) -> Result<(f64, f64), Failure> {
    let path = std::env::temp_dir().join(format!(
        "tenant-db-bench-{}-{}.sql",
        std::process::id(),
        script.len()
    ));
    std::fs::write(&path, script)?;
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-T", &seconds.to_string()])
        .args(["-c", &clients.to_string(), "-j", &clients.to_string(), "-f"])
        .arg(&path)
        .arg(url)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("pgbench: {}{text}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let number = |prefix: &str| -> Result<f64, Failure> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("pgbench printed no `{prefix}`: {text}").into())
    };
    Ok((number("latency average =")?, number("tps =")?))
}

/// The flight's statements, one by one through `psql` as the application role, must find the
/// row: a reference that reads nothing would measure less than the work.
fn reads_its_row(app_url: &str, tenant: &str) -> Result<(), Failure> {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", app_url])
        .args(["-c", "BEGIN"])
        .args([
            "-c",
            &format!("SELECT set_config('app.current_tenant', '{tenant}', true)"),
        ])
        .args(["-c", "SELECT count(*) FROM items_unsealed WHERE id = 1"])
        .args(["-c", "COMMIT"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() && text.lines().any(|l| l.trim() == "1") {
        Ok(())
    } else {
        Err(format!(
            "the pgbench reference flight does not read its row: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the reference, or `None` when pgbench is not installed.
pub(crate) fn measure(quick: bool) -> Result<Option<Reference>, Failure> {
    if Command::new("pgbench").arg("--version").output().is_err() {
        return Ok(None);
    }
    let t = tenant(1);
    let raw = format!(
        "\\set id random(1, {})\nSELECT id, title FROM items WHERE tenant_id = '{t}' AND id = :id;\n",
        crate::ROWS_PER_TENANT
    );
    let flight = format!(
        "\\set id random(1, {})\n\\startpipeline\nBEGIN;\n\
         SELECT set_config('app.current_tenant', '{t}', true);\n\
         SELECT id, title FROM items_unsealed WHERE id = :id;\nCOMMIT;\n\\endpipeline\n",
        crate::ROWS_PER_TENANT
    );
    let raw_url = tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DATABASE);
    let app_url = tenant_db_tests::url_for(tenant_db_tests::APP_ROLE, DATABASE);
    reads_its_row(&app_url, &t.to_string())?;
    let (rounds, seconds) = if quick { (1, 3) } else { (3, 8) };
    let (mut latency, mut throughput) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for clients in [1, 8] {
            // Alternate which side goes first.
            let sides = if round % 2 == 0 {
                [(&raw_url, &raw), (&app_url, &flight)]
            } else {
                [(&app_url, &flight), (&raw_url, &raw)]
            };
            let mut got = Vec::new();
            for (url, script) in sides {
                got.push((script == &flight, run(url, script, clients, seconds)?));
            }
            let side = |flight: bool| got.iter().find(|(f, _)| *f == flight).map(|(_, r)| *r);
            if let (Some(r), Some(f)) = (side(false), side(true)) {
                if clients == 1 {
                    latency.push(f.0 / r.0);
                } else {
                    throughput.push(f.1 / r.1);
                }
            }
        }
    }
    Ok(Some(Reference {
        latency_1_ratio: median(latency),
        throughput_8_ratio: median(throughput),
    }))
}
