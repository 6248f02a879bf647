//! [`FairQueue`]: jobs served round-robin across tenants, with a per-tenant concurrency cap.

use std::collections::{HashMap, VecDeque};
use tenant_db::TenantId;

/// Pending jobs per tenant, handed out one tenant at a time in turn.
///
/// [`take`](FairQueue::take) takes the next tenant in the ring that has a job and fewer than
/// `cap` jobs running, and moves it to the back of the ring: with `n` tenants waiting, each
/// gets one job in every `n` handed out, however many the others queued. Call
/// [`done`](FairQueue::done) when a job finishes.
///
/// ```
/// use tenant_db::TenantId;
/// use tenant_db_jobs::FairQueue;
/// let (noisy, quiet) = (TenantId::from_i64(1)?, TenantId::from_i64(2)?);
/// let mut q = FairQueue::new(4);
/// for i in 0..1000 { q.push(noisy, i); }
/// q.push(quiet, -1);
/// let first_two: Vec<_> = [q.take(), q.take()].into_iter().flatten().map(|(_, j)| j).collect();
/// assert!(first_two.contains(&-1)); // the quiet tenant's job is second at worst
/// # Ok::<(), tenant_db::ParseTenantIdError>(())
/// ```
#[derive(Debug)]
pub struct FairQueue<J> {
    cap: usize,
    pending: HashMap<TenantId, VecDeque<J>>,
    running: HashMap<TenantId, usize>,
    /// Tenants with pending jobs, in the order they are served.
    ring: VecDeque<TenantId>,
}

impl<J> FairQueue<J> {
    /// A queue where each tenant runs at most `cap` jobs at once (at least 1).
    pub fn new(cap: usize) -> Self {
        FairQueue {
            cap: cap.max(1),
            pending: HashMap::new(),
            running: HashMap::new(),
            ring: VecDeque::new(),
        }
    }

    /// Queues `job` for `tenant`.
    pub fn push(&mut self, tenant: TenantId, job: J) {
        let queue = self.pending.entry(tenant).or_default();
        if queue.is_empty() {
            self.ring.push_back(tenant);
        }
        queue.push_back(job);
    }

    /// The next job to run, if a tenant with pending jobs is under its cap; counts it as
    /// running.
    pub fn take(&mut self) -> Option<(TenantId, J)> {
        for _ in 0..self.ring.len() {
            let tenant = self.ring.pop_front()?;
            let running = self.running.get(&tenant).copied().unwrap_or(0);
            if running >= self.cap {
                self.ring.push_back(tenant);
                continue;
            }
            let Some(queue) = self.pending.get_mut(&tenant) else {
                continue;
            };
            let Some(job) = queue.pop_front() else {
                self.pending.remove(&tenant);
                continue;
            };
            if queue.is_empty() {
                self.pending.remove(&tenant);
            } else {
                self.ring.push_back(tenant);
            }
            *self.running.entry(tenant).or_default() += 1;
            return Some((tenant, job));
        }
        None
    }

    /// A job of `tenant` finished.
    pub fn done(&mut self, tenant: TenantId) {
        if let Some(running) = self.running.get_mut(&tenant) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                self.running.remove(&tenant);
            }
        }
    }

    /// Jobs waiting (not running).
    pub fn pending(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }

    /// Jobs of `tenant` running now.
    pub fn running(&self, tenant: TenantId) -> usize {
        self.running.get(&tenant).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::FairQueue;

    use crate::tenant_for_tests as t;

    #[test]
    fn tenants_take_turns_whatever_they_queued() {
        let mut q = FairQueue::new(100);
        for i in 0..1000 {
            q.push(t(1), i);
        }
        for i in 0..3 {
            q.push(t(2), 10_000 + i);
        }
        q.push(t(3), 20_000);
        let order: Vec<i64> = (0..8)
            .filter_map(|_| q.take())
            .map(|(tenant, _)| tenant.as_i64().unwrap_or(0))
            .collect();
        assert_eq!(order, vec![1, 2, 3, 1, 2, 1, 2, 1]);
        assert_eq!(q.pending(), 1000 + 4 - 8);
    }

    #[test]
    fn a_tenant_at_its_cap_waits_and_others_go_on() {
        let mut q = FairQueue::new(2);
        for i in 0..10 {
            q.push(t(1), i);
        }
        q.push(t(2), 100);
        let a = q.take();
        let b = q.take();
        let c = q.take();
        assert_eq!(
            [a, b, c].map(|x| x.map(|(t, j)| (t.as_i64(), j))),
            [Some((Some(1), 0)), Some((Some(2), 100)), Some((Some(1), 1))]
        );
        // Tenant 1 runs 2 (its cap): nothing more until one finishes.
        assert_eq!(q.running(t(1)), 2);
        assert!(q.take().is_none());
        q.done(t(1));
        // One finished: one more may start, and then the cap holds again.
        assert_eq!(q.running(t(1)), 1);
        assert_eq!(q.take().map(|(_, j)| j), Some(2));
        assert_eq!(q.running(t(1)), 2);
        assert!(q.take().is_none(), "a tenant went over its cap");
        q.done(t(2));
        q.done(t(2));
        assert_eq!(q.running(t(2)), 0);
    }

    #[test]
    fn order_within_a_tenant_is_kept_and_nothing_is_lost() {
        let mut q = FairQueue::new(1000);
        for n in 1..=5 {
            for i in 0..(n * 7) {
                q.push(t(n), (n, i));
            }
        }
        let mut seen: Vec<(i64, i64)> = Vec::new();
        while let Some((_, job)) = q.take() {
            seen.push(job);
        }
        assert_eq!(seen.len(), (1..=5).map(|n| n * 7).sum::<i64>() as usize);
        for n in 1..=5 {
            let mine: Vec<i64> = seen
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(mine, (0..n * 7).collect::<Vec<_>>());
        }
        assert_eq!(q.pending(), 0);
    }
}
