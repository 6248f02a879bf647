//! The performance airgap: a quiet tenant runs point reads, one at a time, while a noisy tenant
//! floods the same pool with heavy reads (every one of its rows, sorted) from many concurrent
//! tasks. The quiet tenant's p99 is reported as a ratio to its p99 alone, without tenant-db's
//! per-tenant limits (the noisy tenant may take the whole pool) and with them (the noisy
//! tenant's tier may hold two of the pool's eight connections, with a statement timeout).

use crate::schema::{Item, items};
use crate::{Failure, tenant};
use diesel::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tenant_db::limits::Tiers;
use tenant_db::{Error, Tenant, TenantDb};
use tenant_db_limits::LocalLimiter;

/// What the airgap measured (medians of the rounds).
pub(crate) struct Airgap {
    pub(crate) alone_p99: Duration,
    pub(crate) unfair_p99: Duration,
    pub(crate) fair_p99: Duration,
    /// The quiet tenant alone: p50 with the limits in place (not hit: its tier's share, the
    /// rate check, usage) over p50 on a pool without them.
    pub(crate) limits_cost_p50_ratio: f64,
}

impl Airgap {
    pub(crate) fn unfair_ratio(&self) -> f64 {
        self.unfair_p99.as_secs_f64() / self.alone_p99.as_secs_f64()
    }
    pub(crate) fn fair_ratio(&self) -> f64 {
        self.fair_p99.as_secs_f64() / self.alone_p99.as_secs_f64()
    }
}

/// The noisy tenant's concurrent tasks.
const FLOOD: usize = 32;
/// The pool both tenants share.
const POOL: usize = 8;

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get((v.len().saturating_sub(1)) * 99 / 100)
        .copied()
        .unwrap_or_default()
}

/// The quiet tenant's point reads for `run` (each through `limiter` first, when given).
async fn quiet_reads(
    db: &TenantDb,
    limiter: Option<&LocalLimiter>,
    quiet: Tenant,
    run: Duration,
) -> Result<Vec<Duration>, Failure> {
    let mut latencies = Vec::new();
    let end = Instant::now() + run;
    let mut i = 0_i64;
    while Instant::now() < end {
        i += 1;
        let id = i % crate::ROWS_PER_TENANT + 1;
        let started = Instant::now();
        if let Some(limiter) = limiter {
            limiter.check_now(&quiet.id())?;
        }
        let item: Item = db
            .single(quiet, async |mut tx| {
                let s = tx.scope();
                Ok::<_, Error>(
                    s.query(items::table)
                        .filter(items::id.eq(id))
                        .select(Item::as_select())
                        .first(&mut tx)
                        .await?,
                )
            })
            .await?;
        latencies.push(started.elapsed());
        if item.id != id {
            return Err(format!("wrong row {item:?}").into());
        }
    }
    Ok(latencies)
}

/// The noisy tenant's flood, until `stop`.
fn flood(
    db: &TenantDb,
    limiter: Option<&Arc<LocalLimiter>>,
    noisy: Tenant,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..FLOOD)
        .map(|_| {
            let (db, stop, limiter) = (db.clone(), stop.clone(), limiter.cloned());
            tokio::spawn(async move {
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Err(limited)) = limiter.as_ref().map(|l| l.check_now(&noisy.id())) {
                        tokio::time::sleep(limited.retry_after()).await;
                        continue;
                    }
                    let rows = db
                        .single(noisy, async |mut tx| {
                            let s = tx.scope();
                            Ok::<_, Error>(
                                s.query(items::table)
                                    .order((items::score.desc(), items::title))
                                    .select(Item::as_select())
                                    .load::<Item>(&mut tx)
                                    .await?
                                    .len(),
                            )
                        })
                        .await;
                    // Refusals and timeouts are what the limits are for; keep flooding.
                    if rows.is_ok() {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect()
}

/// The quiet tenant's p99 while the noisy tenant floods `db`.
async fn with_flood(
    db: &TenantDb,
    limiter: Option<&Arc<LocalLimiter>>,
    quiet: Tenant,
    noisy: Tenant,
    run: Duration,
) -> Result<Duration, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = flood(db, limiter, noisy, &stop);
    // Let the flood fill the pool first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let latencies = quiet_reads(db, limiter.map(|l| &**l), quiet, run).await;
    stop.store(true, Ordering::Relaxed);
    let mut flooded = 0;
    for t in tasks {
        flooded += t.await.unwrap_or(0);
    }
    if flooded == 0 {
        return Err("the noisy tenant's flood ran nothing".into());
    }
    Ok(p99(latencies?))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub(crate) async fn measure(app_url: &str, quick: bool) -> Result<Airgap, Failure> {
    let (quiet, noisy) = (tenant(1), tenant(2));
    let plain = TenantDb::builder(app_url).max_size(POOL).build()?;
    let tiers = Tiers::from_json(&format!(
        r#"{{"default_tier": "pro", "tiers": {{
            "free": {{"requests_per_second": 10, "burst": 10, "max_connections": 1, "statement_timeout_ms": 1000}},
            "pro": {{"requests_per_second": 1000000, "burst": 1000000, "max_connections": {POOL}}}}},
            "tenants": {{"{}": "free"}}}}"#,
        noisy.id()
    ))?;
    let limiter = Arc::new(LocalLimiter::new(tiers.clone()));
    let fair = TenantDb::builder(app_url)
        .max_size(POOL)
        .tiers(tiers)
        .build()?;
    let (rounds, run) = if quick {
        (1, Duration::from_secs(3))
    } else {
        (3, Duration::from_secs(8))
    };
    let (mut alone, mut unfair, mut fairs) = (Vec::new(), Vec::new(), Vec::new());
    let mut costs = Vec::new();
    // Warm both pools.
    quiet_reads(&plain, None, quiet, Duration::from_millis(300)).await?;
    quiet_reads(&fair, Some(&limiter), quiet, Duration::from_millis(300)).await?;
    for round in 0..rounds {
        // What the limits cost when they are not hit: the quiet tenant alone, on both pools,
        // in turns.
        let mut p50 = [Duration::ZERO; 2];
        for side in [round % 2, 1 - round % 2] {
            let mut v = if side == 0 {
                quiet_reads(&plain, None, quiet, run / 2).await?
            } else {
                quiet_reads(&fair, Some(&limiter), quiet, run / 2).await?
            };
            v.sort();
            p50[side] = v.get(v.len() / 2).copied().unwrap_or_default();
        }
        costs.push(p50[1].as_secs_f64() / p50[0].as_secs_f64());
        alone.push(p99(quiet_reads(&fair, Some(&limiter), quiet, run).await?));
        unfair.push(with_flood(&plain, None, quiet, noisy, run).await?);
        fairs.push(with_flood(&fair, Some(&limiter), quiet, noisy, run).await?);
    }
    costs.sort_by(f64::total_cmp);
    Ok(Airgap {
        limits_cost_p50_ratio: costs.get(costs.len() / 2).copied().unwrap_or(f64::NAN),
        alone_p99: median(alone),
        unfair_p99: median(unfair),
        fair_p99: median(fairs),
    })
}
