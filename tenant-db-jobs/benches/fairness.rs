//! Fair scheduling, measured: the quiet tenant's job latency (p50, p99) while a noisy tenant
//! floods the queue, with the fair dispatcher and with a first-in-first-out queue, each as a
//! ratio to the quiet tenant's latency alone. Same workers, same job cost, one run.
//!
//! Run: `cargo bench -p tenant-db-jobs --bench fairness`

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant_db::TenantId;
use tenant_db_jobs::Dispatcher;

const WORKERS: usize = 4;
const CAP: usize = 2;
const JOB: Duration = Duration::from_millis(2);
const FLOOD: usize = 2_000;
const QUIET_JOBS: usize = 60;
const QUIET_EVERY: Duration = Duration::from_millis(15);

fn tenant(n: i64) -> TenantId {
    match TenantId::from_i64(n) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

type Latencies = Arc<Mutex<Vec<Duration>>>;

/// One job: its tenant's latencies and when it was submitted.
struct Job {
    submitted: Instant,
    record: Option<Latencies>,
}

async fn work(_tenant: TenantId, job: Job) {
    tokio::time::sleep(JOB).await;
    if let Some(record) = job.record
        && let Ok(mut r) = record.lock()
    {
        r.push(job.submitted.elapsed());
    }
}

/// The quiet tenant's latencies: with a flood of the noisy tenant or not, fair or FIFO.
async fn scenario(flood: bool, fair: bool) -> Vec<Duration> {
    let quiet: Latencies = Arc::default();
    let (noisy_t, quiet_t) = (tenant(1), tenant(2));
    if fair {
        let d = Dispatcher::new(CAP);
        let workers = d.spawn_workers(WORKERS, work);
        if flood {
            for _ in 0..FLOOD {
                d.submit(
                    noisy_t,
                    Job {
                        submitted: Instant::now(),
                        record: None,
                    },
                );
            }
        }
        for _ in 0..QUIET_JOBS {
            d.submit(
                quiet_t,
                Job {
                    submitted: Instant::now(),
                    record: Some(quiet.clone()),
                },
            );
            tokio::time::sleep(QUIET_EVERY).await;
        }
        d.close();
        for w in workers {
            let _ = w.await;
        }
    } else {
        // First in, first out: the same workers on one shared queue.
        let queue: Arc<Mutex<VecDeque<Job>>> = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (queue, done) = (queue.clone(), done.clone());
                tokio::spawn(async move {
                    loop {
                        let job = queue.lock().ok().and_then(|mut q| q.pop_front());
                        match job {
                            Some(job) => work(noisy_t, job).await,
                            None if done.load(std::sync::atomic::Ordering::Relaxed) => return,
                            None => tokio::time::sleep(Duration::from_micros(200)).await,
                        }
                    }
                })
            })
            .collect();
        if flood && let Ok(mut q) = queue.lock() {
            for _ in 0..FLOOD {
                q.push_back(Job {
                    submitted: Instant::now(),
                    record: None,
                });
            }
        }
        for _ in 0..QUIET_JOBS {
            if let Ok(mut q) = queue.lock() {
                q.push_back(Job {
                    submitted: Instant::now(),
                    record: Some(quiet.clone()),
                });
            }
            tokio::time::sleep(QUIET_EVERY).await;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            let _ = w.await;
        }
    }
    let mut latencies = quiet.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "{WORKERS} workers, {JOB:?} per job, cap {CAP} per tenant; noisy tenant queues {FLOOD} jobs, \
         quiet tenant submits {QUIET_JOBS}, one every {QUIET_EVERY:?}"
    );
    let alone = scenario(false, true).await;
    let fair = scenario(true, true).await;
    let fifo = scenario(true, false).await;
    let base50 = percentile(&alone, 0.5).as_secs_f64();
    let base99 = percentile(&alone, 0.99).as_secs_f64();
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "quiet tenant's latency", "p50", "p99", "p50 ×", "p99 ×"
    );
    for (name, l) in [
        ("alone", &alone),
        ("noisy flood, fair", &fair),
        ("noisy flood, FIFO", &fifo),
    ] {
        let (p50, p99) = (percentile(l, 0.5), percentile(l, 0.99));
        println!(
            "{name:<28} {:>10.2?} {:>10.2?} {:>10.2} {:>10.2}",
            p50,
            p99,
            p50.as_secs_f64() / base50,
            p99.as_secs_f64() / base99
        );
    }
}
