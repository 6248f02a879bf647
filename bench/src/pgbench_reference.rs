//! The limit, measured next to us on every run: pgbench (a C client) against the same
//! database, running the raw point read (as the role without RLS, the tenant in the `WHERE`
//! clause) and the tenant transaction sent as one pipelined flight (as the application role
//! under RLS: `BEGIN`, `tenant_db.enter`, the point read and `COMMIT` in one message), side by
//! side in alternating rounds, at 1 and 8 clients.

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
        .args(["-n", "-M", "simple", "-T", &seconds.to_string()])
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
        "\\set id random(1, {})\nBEGIN \\; SELECT tenant_db.enter('{t}', 'uuid') \\; \
         SELECT id, title FROM items WHERE id = :id \\; COMMIT;\n",
        crate::ROWS_PER_TENANT
    );
    let raw_url = tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DATABASE);
    let app_url = tenant_db_tests::url_for(tenant_db_tests::APP_ROLE, DATABASE);
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
