//! [`Dispatcher`]: a worker pool that takes jobs from a [`FairQueue`].

use crate::FairQueue;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tenant_db::TenantId;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

struct State<J> {
    queue: FairQueue<J>,
    closed: bool,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    wake: Notify,
}

/// Runs submitted jobs on a pool of worker tasks, round-robin across tenants with a per-tenant
/// concurrency cap (see [`FairQueue`]): one tenant's ten thousand queued jobs wait their turn
/// behind another tenant's one.
pub struct Dispatcher<J> {
    shared: Arc<Shared<J>>,
}

impl<J> Clone for Dispatcher<J> {
    fn clone(&self) -> Self {
        Dispatcher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<J> std::fmt::Debug for Dispatcher<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

impl<J: Send + 'static> Dispatcher<J> {
    /// A dispatcher where each tenant runs at most `cap` jobs at once.
    pub fn new(cap: usize) -> Self {
        Dispatcher {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: FairQueue::new(cap),
                    closed: false,
                }),
                wake: Notify::new(),
            }),
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State<J>) -> R) -> R {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// Queues `job` for `tenant` (for example the tenant of an opened envelope).
    pub fn submit(&self, tenant: TenantId, job: J) {
        self.with_state(|s| s.queue.push(tenant, job));
        self.shared.wake.notify_waiters();
    }

    /// No more jobs: workers finish what is queued, then stop.
    pub fn close(&self) {
        self.with_state(|s| s.closed = true);
        self.shared.wake.notify_waiters();
    }

    /// Starts `workers` tasks that run `handler` on each job.
    pub fn spawn_workers<F, Fut>(&self, workers: usize, handler: F) -> Vec<JoinHandle<()>>
    where
        F: Fn(TenantId, J) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        (0..workers)
            .map(|_| {
                let this = self.clone();
                let handler = handler.clone();
                tokio::spawn(async move { this.work(handler).await })
            })
            .collect()
    }

    async fn work<F, Fut>(&self, handler: F)
    where
        F: Fn(TenantId, J) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            // Registered before looking, so a submit or a finished job between the look and
            // the wait still wakes this worker.
            let woken = self.shared.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (next, stop) = self.with_state(|s| {
                let next = s.queue.take();
                let stop = next.is_none() && s.closed && s.queue.pending() == 0;
                (next, stop)
            });
            match next {
                Some((tenant, job)) => {
                    handler(tenant, job).await;
                    self.with_state(|s| s.queue.done(tenant));
                    self.shared.wake.notify_waiters();
                }
                None if stop => return,
                None => woken.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dispatcher;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tenant_db::TenantId;

    use crate::tenant_for_tests as t;

    /// Waits for the workers to stop; one still running after 20 s fails the test (a hang
    /// here is a worker that never stops).
    async fn joined(workers: Vec<tokio::task::JoinHandle<()>>) {
        for w in workers {
            let stopped = tokio::time::timeout(Duration::from_secs(20), w).await;
            assert!(
                matches!(stopped, Ok(Ok(()))),
                "a worker did not stop: {stopped:?}"
            );
        }
    }

    #[tokio::test]
    async fn workers_on_an_empty_queue_wait_for_jobs_until_closed() {
        let d = Dispatcher::new(1);
        let ran: Arc<Mutex<Vec<usize>>> = Arc::default();
        let record = ran.clone();
        let workers = d.spawn_workers(2, move |_tenant: TenantId, job: usize| {
            let record = record.clone();
            async move {
                if let Ok(mut r) = record.lock() {
                    r.push(job);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            workers.iter().all(|w| !w.is_finished()),
            "a worker stopped on an empty queue that was not closed"
        );
        d.submit(t(1), 7);
        d.close();
        joined(workers).await;
        assert_eq!(ran.lock().map(|r| r.clone()).unwrap_or_default(), vec![7]);
    }

    #[test]
    fn debug_names_the_type_only() {
        let d: Dispatcher<String> = Dispatcher::new(1);
        d.submit(t(1), "secret payload".to_owned());
        assert_eq!(format!("{d:?}"), "Dispatcher { .. }");
    }

    #[tokio::test]
    async fn every_job_runs_and_a_quiet_tenant_is_not_stuck_behind_a_flood() {
        let order: Arc<Mutex<Vec<(i64, usize)>>> = Arc::default();
        let d = Dispatcher::new(1);
        for i in 0..200 {
            d.submit(t(1), i);
        }
        d.submit(t(2), 0);
        let record = order.clone();
        let workers = d.spawn_workers(2, move |tenant: TenantId, job: usize| {
            let record = record.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(100)).await;
                if let Ok(mut o) = record.lock() {
                    o.push((tenant.as_i64().unwrap_or(0), job));
                }
            }
        });
        d.close();
        joined(workers).await;
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order.len(), 201);
        let quiet_at = order.iter().position(|(tenant, _)| *tenant == 2);
        assert!(
            quiet_at.is_some_and(|at| at <= 2),
            "quiet job ran at {quiet_at:?}"
        );
        // The flood ran in order (cap 1: one at a time).
        let flood: Vec<usize> = order
            .iter()
            .filter(|(t, _)| *t == 1)
            .map(|(_, j)| *j)
            .collect();
        assert_eq!(flood, (0..200).collect::<Vec<_>>());
    }
}
