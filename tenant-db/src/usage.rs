//! Per-tenant usage of a [`TenantDb`](crate::TenantDb): metrics with bounded labels, and
//! noisy-neighbour events.
//!
//! Every transaction is recorded through the [`metrics`] facade (install any recorder, the
//! Prometheus exporter for one; without one, recording costs next to nothing):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tenant_db_transactions_total` | counter | `tenant`, `outcome` (`committed`, `rolled_back`, `failed`, `refused`, `limited`) |
//! | `tenant_db_transaction_errors_total` | counter | `tenant`, `kind` (`moved`, `refused`, `limited`, `not_committed`, `pool`, `database`, `other`) |
//! | `tenant_db_transaction_seconds` | histogram | `tenant` |
//! | `tenant_db_pool_wait_seconds` | histogram | `tenant` (waiting for the tenant's pool share and a connection) |
//! | `tenant_db_rows_returned_total` | counter | `tenant` (rows of `load` and `get_results`, where the count is free) |
//! | `tenant_db_noisy_neighbour_events_total` | counter | `tenant` |
//!
//! A label per tenant would be unbounded (10,000 tenants, 10,000 series per metric), so the
//! `tenant` label names only the `labelled` tenants that used the most connection time in the
//! last window (default 20; in the first window, the first ones seen), and says `other` for
//! the rest.
//!
//! **Noisy neighbours.** At the end of each window (default one minute), a tenant whose
//! connection time in the window is more than twice the median of the tenants active in it
//! (the lower median, so that one tenant against one quiet other counts) raises an event: a
//! `WARN` on target `tenant_db::noisy_neighbour`, the counter above, and an entry in
//! [`Usage::noisy_neighbours`].

use crate::TenantId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The label value of tenants outside the labelled ones.
pub const OTHER: &str = "other";

/// How many events [`Usage::noisy_neighbours`] keeps.
const KEPT_EVENTS: usize = 64;

/// A tenant that used more than twice the median connection time over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisyNeighbour {
    /// The tenant.
    pub tenant: TenantId,
    /// Its connection time in the window.
    pub busy: Duration,
    /// The median connection time of the tenants active in the window.
    pub median: Duration,
    /// How many tenants were active in the window.
    pub active: usize,
}

/// The usage of one [`TenantDb`](crate::TenantDb) (see the module docs).
#[derive(Debug)]
pub struct Usage {
    window: Duration,
    labelled: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Instant,
    busy: HashMap<TenantId, Duration>,
    labels: HashSet<TenantId>,
    events: VecDeque<NoisyNeighbour>,
}

/// One finished transaction, as [`Usage::record`] takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    pub(crate) tenant: TenantId,
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<&'static str>,
    /// From the request for a connection to the end.
    pub(crate) total: Duration,
    /// Waiting for the share and the connection.
    pub(crate) pool_wait: Duration,
    /// Rows its loads returned.
    pub(crate) rows: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Usage::new(Duration::from_secs(60), 20)
    }
}

impl Usage {
    /// Windows of `window`; at most `labelled` tenants named in labels.
    pub fn new(window: Duration, labelled: usize) -> Self {
        Usage {
            window,
            labelled,
            state: Mutex::new(State {
                started: Instant::now(),
                busy: HashMap::new(),
                labels: HashSet::new(),
                events: VecDeque::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `tenant` label `tenant`'s metrics carry now: its id, or [`OTHER`].
    pub fn label(&self, tenant: &TenantId) -> String {
        let mut state = self.state();
        Self::label_in(&mut state, self.labelled, tenant)
    }

    fn label_in(state: &mut State, labelled: usize, tenant: &TenantId) -> String {
        if state.labels.contains(tenant) {
            return tenant.to_string();
        }
        if state.labels.len() < labelled {
            state.labels.insert(*tenant);
            return tenant.to_string();
        }
        OTHER.to_string()
    }

    /// Records a finished transaction.
    pub(crate) fn record(&self, done: Finished) {
        let label = {
            let mut state = self.state();
            if state.started.elapsed() >= self.window {
                self.close(&mut state);
            }
            let connected = done.total.saturating_sub(done.pool_wait);
            *state.busy.entry(done.tenant).or_default() += connected;
            Self::label_in(&mut state, self.labelled, &done.tenant)
        };
        metrics::counter!("tenant_db_transactions_total", "tenant" => label.clone(), "outcome" => done.outcome)
            .increment(1);
        if let Some(kind) = done.error {
            metrics::counter!("tenant_db_transaction_errors_total", "tenant" => label.clone(), "kind" => kind)
                .increment(1);
        }
        metrics::histogram!("tenant_db_transaction_seconds", "tenant" => label.clone())
            .record(done.total.as_secs_f64());
        metrics::histogram!("tenant_db_pool_wait_seconds", "tenant" => label.clone())
            .record(done.pool_wait.as_secs_f64());
        if done.rows > 0 {
            metrics::counter!("tenant_db_rows_returned_total", "tenant" => label)
                .increment(done.rows);
        }
    }

    /// Ends the current window now: raises its noisy-neighbour events and labels its top
    /// tenants. Windows also end by themselves, at the first transaction after their end.
    pub fn close_window(&self) {
        let mut state = self.state();
        self.close(&mut state);
    }

    fn close(&self, state: &mut State) {
        let mut usage: Vec<(TenantId, Duration)> = state.busy.drain().collect();
        state.started = Instant::now();
        if usage.is_empty() {
            return;
        }
        usage.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        state.labels = usage.iter().take(self.labelled).map(|(t, _)| *t).collect();
        let active = usage.len();
        // The lower median: usage is sorted in decreasing order.
        let median = usage[active / 2].1;
        if active < 2 {
            return;
        }
        for (tenant, busy) in usage.iter().filter(|(_, b)| *b > median * 2) {
            let label = if state.labels.contains(tenant) {
                tenant.to_string()
            } else {
                OTHER.to_string()
            };
            tracing::warn!(
                target: "tenant_db::noisy_neighbour",
                tenant_id = %tenant,
                busy_ms = busy.as_secs_f64() * 1000.0,
                median_ms = median.as_secs_f64() * 1000.0,
                active,
                "a tenant used more than twice the median connection time"
            );
            metrics::counter!("tenant_db_noisy_neighbour_events_total", "tenant" => label)
                .increment(1);
            if state.events.len() == KEPT_EVENTS {
                state.events.pop_front();
            }
            state.events.push_back(NoisyNeighbour {
                tenant: *tenant,
                busy: *busy,
                median,
                active,
            });
        }
    }

    /// The latest noisy-neighbour events (at most 64), oldest first.
    pub fn noisy_neighbours(&self) -> Vec<NoisyNeighbour> {
        self.state().events.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(tenant: TenantId, ms: u64) -> Finished {
        Finished {
            tenant,
            outcome: "committed",
            error: None,
            total: Duration::from_millis(ms + 1),
            pool_wait: Duration::from_millis(1),
            rows: 0,
        }
    }

    #[test]
    fn labels_are_bounded_to_the_top_tenants() {
        let usage = Usage::new(Duration::from_secs(3600), 2);
        let t: Vec<TenantId> = (0..4).map(|_| TenantId::new_random()).collect();
        // First window: the first two seen are labelled.
        for (i, ms) in [(0, 1), (1, 1), (2, 50), (3, 40)] {
            usage.record(done(t[i], ms));
        }
        assert_eq!(usage.label(&t[0]), t[0].to_string());
        assert_eq!(usage.label(&t[2]), OTHER);
        // Then the two that used the most.
        usage.close_window();
        assert_eq!(usage.label(&t[2]), t[2].to_string());
        assert_eq!(usage.label(&t[3]), t[3].to_string());
        assert_eq!(usage.label(&t[0]), OTHER);
        assert_eq!(usage.label(&TenantId::new_random()), OTHER);
    }

    #[test]
    fn a_tenant_over_twice_the_median_is_a_noisy_neighbour() {
        let usage = Usage::new(Duration::from_secs(3600), 20);
        let (quiet, also_quiet, noisy) = (
            TenantId::new_random(),
            TenantId::new_random(),
            TenantId::new_random(),
        );
        for _ in 0..10 {
            usage.record(done(quiet, 10));
            usage.record(done(also_quiet, 12));
            usage.record(done(noisy, 30));
        }
        usage.close_window();
        let events = usage.noisy_neighbours();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].tenant, noisy);
        assert_eq!(events[0].median, Duration::from_millis(120));
        assert_eq!(events[0].active, 3);
        // Twice the median exactly is not over it; one tenant alone is nobody's neighbour.
        usage.record(done(quiet, 10));
        usage.record(done(noisy, 20));
        usage.close_window();
        usage.record(done(noisy, 500));
        usage.close_window();
        assert_eq!(usage.noisy_neighbours().len(), 1);
        // One against one quiet other counts (the lower median).
        usage.record(done(quiet, 10));
        usage.record(done(noisy, 21));
        usage.close_window();
        assert_eq!(usage.noisy_neighbours().len(), 2);
    }

    #[test]
    fn windows_end_by_themselves() {
        let usage = Usage::new(Duration::from_millis(20), 20);
        let (quiet, noisy) = (TenantId::new_random(), TenantId::new_random());
        usage.record(done(quiet, 1));
        usage.record(done(noisy, 50));
        std::thread::sleep(Duration::from_millis(30));
        usage.record(done(quiet, 1));
        assert_eq!(usage.noisy_neighbours().len(), 1);
    }
}
