//! [`LocalLimiter`]: GCRA in this process.

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use tenant_db::TenantId;
use tenant_db::limits::{LimitCheckError, Limited, RateLimit, Tiers};

type Keyed = RateLimiter<TenantId, DefaultKeyedStateStore<TenantId>, DefaultClock>;

/// Checks between two sweeps of tenants whose state is back to full.
const SWEEP_EVERY: u64 = 4096;

/// A per-tenant GCRA limiter in this process: one keyed `governor` limiter per tier.
pub struct LocalLimiter {
    tiers: Tiers,
    limiters: BTreeMap<String, Keyed>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("tiers", &self.limiters.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalLimiter {
    /// A limiter for `tiers`.
    pub fn new(tiers: Tiers) -> Self {
        let names: Vec<String> = tiers_names(&tiers);
        let limiters = names
            .into_iter()
            .filter_map(|name| {
                let limits = tiers.tier(&name)?.limits().clone();
                let rate = NonZeroU32::new(limits.requests_per_second)?;
                let burst = NonZeroU32::new(limits.burst)?;
                Some((
                    name,
                    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                ))
            })
            .collect();
        LocalLimiter {
            tiers,
            limiters,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `tenant`.
    pub fn check_now(&self, tenant: &TenantId) -> Result<(), Limited> {
        let tier = self.tiers.tier_of(tenant);
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limiter in self.limiters.values() {
                limiter.retain_recent();
            }
        }
        // `Tiers` validated every tier, so each has its limiter.
        let Some(limiter) = self.limiters.get(tier.name()) else {
            return Ok(());
        };
        limiter
            .check_key(tenant)
            .map_err(|not_until| Limited::Rate {
                tenant: *tenant,
                tier: tier.name().to_string(),
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

/// Every tier's name.
fn tiers_names(tiers: &Tiers) -> Vec<String> {
    tiers.names().map(str::to_string).collect()
}

impl RateLimit for LocalLimiter {
    fn check<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Result<(), LimitCheckError>> + Send + 'a>> {
        let outcome = self.check_now(tenant).map_err(LimitCheckError::Limited);
        Box::pin(std::future::ready(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tenant_db::limits::TierLimits;

    #[test]
    fn a_tenant_gets_its_burst_then_waits_and_others_are_not_counted() {
        let tiers = Tiers::single(
            "free",
            TierLimits {
                requests_per_second: 2,
                burst: 3,
                max_connections: 1,
                statement_timeout_ms: None,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let limiter = LocalLimiter::new(tiers);
        assert!(format!("{limiter:?}").contains("free"));
        let (a, b) = (TenantId::new_random(), TenantId::new_random());
        for _ in 0..3 {
            assert!(limiter.check_now(&a).is_ok());
        }
        match limiter.check_now(&a) {
            Err(Limited::Rate {
                retry_after, tier, ..
            }) => {
                assert_eq!(tier, "free");
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500));
            }
            other => panic!("not limited: {other:?}"),
        }
        assert!(limiter.check_now(&b).is_ok());
        std::thread::sleep(Duration::from_millis(520));
        assert!(limiter.check_now(&a).is_ok());
    }
}
