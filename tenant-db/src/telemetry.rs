//! Telemetry: a `tracing` span per tenant transaction, and the check that one request acts for
//! one tenant.
//!
//! Every [`TenantDb::transaction`](crate::TenantDb::transaction) runs in a span
//! `tenant_db.transaction` with the fields `tenant_id`, `key_kind`, `outcome` (`committed`,
//! `rolled_back`, `failed`) and `duration_ms`.
//!
//! A request handler that opens transactions for two different tenants is almost always a bug
//! (a tenant id taken from the body after the token named another). Run the request in a
//! [`RequestScope`] (the axum integration does it for every request): the second tenant is then
//! flagged with a `WARN` event and the counter `tenant_db_mixed_tenant_requests_total` (through
//! the `metrics` facade, and [`mixed_tenant_requests`]), or refused with
//! [`Error::MixedTenants`](crate::Error::MixedTenants) in strict mode.

use crate::{Error, TenantId};
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// The name of the mixed-tenant counter.
pub const MIXED_TENANT_COUNTER: &str = "tenant_db_mixed_tenant_requests_total";

static MIXED: AtomicU64 = AtomicU64::new(0);

/// The name of the counter of transactions whose last statement went out with `COMMIT`.
pub const COMMITS_IN_FLIGHT_COUNTER: &str = "tenant_db_commits_in_flight_total";

static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// How many transactions, in this process, committed with their last statement in one flight
/// (see [`crate::flight`]).
pub fn commits_in_flight() -> u64 {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Counts a transaction that committed in its last statement's flight.
pub(crate) fn committed_in_flight() {
    IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(COMMITS_IN_FLIGHT_COUNTER).increment(1);
}

/// How many times, in this process, a request scope saw a second tenant.
pub fn mixed_tenant_requests() -> u64 {
    MIXED.load(Ordering::Relaxed)
}

struct RequestState {
    strict: bool,
    first: Cell<Option<TenantId>>,
}

tokio::task_local! {
    static REQUEST: RequestState;
}

/// One request (one task): the transactions opened inside [`run`](RequestScope::run) must all
/// be for one tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestScope {
    strict: bool,
}

impl RequestScope {
    /// A scope that flags a second tenant (a `WARN` event and a counter).
    pub fn new() -> Self {
        RequestScope { strict: false }
    }

    /// A scope that refuses a second tenant ([`Error::MixedTenants`]).
    pub fn strict() -> Self {
        RequestScope { strict: true }
    }

    /// Runs `request` in this scope. Tasks it spawns are outside it.
    pub async fn run<F: Future>(self, request: F) -> F::Output {
        REQUEST
            .scope(
                RequestState {
                    strict: self.strict,
                    first: Cell::new(None),
                },
                request,
            )
            .await
    }
}

/// Called when a transaction for `tenant` is about to open: notes the request's first tenant,
/// flags (or, strict, refuses) another one.
pub(crate) fn observe(tenant: TenantId) -> Result<(), Error> {
    REQUEST
        .try_with(|state| match state.first.get() {
            None => {
                state.first.set(Some(tenant));
                Ok(())
            }
            Some(first) if first == tenant => Ok(()),
            Some(first) => {
                MIXED.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(MIXED_TENANT_COUNTER).increment(1);
                tracing::warn!(
                    first_tenant = %first,
                    tenant_id = %tenant,
                    strict = state.strict,
                    "one request opened transactions for two tenants"
                );
                if state.strict {
                    Err(Error::MixedTenants(Box::new(crate::error::MixedTenants {
                        first,
                        second: tenant,
                    })))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap_or(Ok(()))
}
