//! Per-tenant limits: the performance airgap between tenants.
//!
//! One tenant's export or traffic spike must not take every pooled connection and every CPU
//! second from the others. Each tenant belongs to a **tier** (`free`, `pro`, `enterprise`, or
//! whatever your configuration names), and each tier has:
//!
//! - a **request rate** (`requests_per_second`, `burst`), enforced at the edge by a
//!   [`RateLimit`]: in process (`tenant_db_limits::LocalLimiter`, GCRA) or shared by every
//!   process (`tenant_db_limits::RedisLimiter`, one key per tenant per window). Over it, the
//!   request fails with [`Limited::Rate`] (the axum crate answers 429 with `Retry-After`);
//! - a **share of the pool** (`max_connections`): a tenant never holds more connections of a
//!   [`TenantDb`](crate::TenantDb) at once. Its further transactions wait in the tenant's own
//!   queue, first come first served, while other tenants' transactions go on; or, with
//!   [`SharePolicy::FailFast`], fail at once with [`Limited::PoolShare`];
//! - a **statement timeout** (`statement_timeout_ms`), set with `SET LOCAL` in the
//!   transaction's first message (no round trip of its own).
//!
//! ```
//! let tiers = tenant_db::limits::Tiers::from_json(r#"{
//!     "default_tier": "free",
//!     "tiers": {
//!         "free": { "requests_per_second": 5, "burst": 10, "max_connections": 2, "statement_timeout_ms": 2000 },
//!         "enterprise": { "requests_per_second": 500, "burst": 1000, "max_connections": 8 }
//!     },
//!     "tenants": { "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01": "enterprise" }
//! }"#)?;
//! let big: tenant_db::TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse()?;
//! assert_eq!(tiers.tier_of(&big).name(), "enterprise");
//! assert_eq!(tiers.tier_of(&tenant_db::TenantId::new_random()).limits().max_connections, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! When a limit is not hit it costs a map lookup and an uncontended semaphore per
//! transaction; the benchmark measures it (see the README).

use crate::TenantId;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One tier's limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Sustained requests per second a tenant of this tier may make (at least 1).
    pub requests_per_second: u32,
    /// Requests it may make at once above the sustained rate (at least 1; the Redis limiter
    /// counts `requests_per_second` per one-second window and ignores it).
    pub burst: u32,
    /// Connections of a pool it may hold at once (at least 1).
    pub max_connections: usize,
    /// `statement_timeout` of its transactions, in milliseconds (none: the server's).
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
}

/// The configuration [`Tiers`] is read from (any serde format; [`Tiers::from_json`] reads
/// JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The tier of a tenant `tenants` does not name.
    pub default_tier: String,
    /// Each tier's limits, by name.
    pub tiers: BTreeMap<String, TierLimits>,
    /// Tenants (as their ids print) of another tier than the default. A key that reads as more
    /// than one kind (`42`: an integer or a text key) applies to each.
    #[serde(default)]
    pub tenants: BTreeMap<String, String>,
}

/// Why a limits configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// Not valid JSON for [`LimitsConfig`].
    #[error("limits configuration: {0}")]
    Syntax(String),
    /// A tier is named (as the default, or for a tenant) but not defined.
    #[error("limits configuration: tier `{0}` is not defined")]
    UnknownTier(String),
    /// A tenant key is not a tenant id.
    #[error("limits configuration: `{0}` is not a tenant id")]
    BadTenant(String),
    /// A limit is larger than PostgreSQL accepts (a statement timeout over 2³¹−1 ms).
    #[error("limits configuration: tier `{tier}`: `{field}` is larger than PostgreSQL accepts")]
    TooLarge {
        /// The tier.
        tier: String,
        /// The field.
        field: &'static str,
    },
    /// A limit is zero.
    #[error("limits configuration: tier `{tier}`: `{field}` must be at least 1")]
    Zero {
        /// The tier.
        tier: String,
        /// The field.
        field: &'static str,
    },
}

/// A tier: its name and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    name: String,
    limits: TierLimits,
}

impl Tier {
    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tier's limits.
    pub fn limits(&self) -> &TierLimits {
        &self.limits
    }
}

/// Validated tiers, and which tenant is in which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    default: Arc<Tier>,
    tiers: BTreeMap<String, Arc<Tier>>,
    tenants: HashMap<TenantId, Arc<Tier>>,
}

impl Tiers {
    /// Reads and checks a JSON [`LimitsConfig`].
    pub fn from_json(json: &str) -> Result<Self, LimitsError> {
        let config: LimitsConfig =
            serde_json::from_str(json).map_err(|e| LimitsError::Syntax(e.to_string()))?;
        Self::from_config(config)
    }

    /// Checks `config`: every tier named is defined, every limit is at least 1, every tenant
    /// key is a tenant id (a UUID, a positive integer or a text key, as they print).
    pub fn from_config(config: LimitsConfig) -> Result<Self, LimitsError> {
        let mut tiers = BTreeMap::new();
        for (name, limits) in config.tiers {
            for (field, value) in [
                ("requests_per_second", u64::from(limits.requests_per_second)),
                ("burst", u64::from(limits.burst)),
                ("max_connections", limits.max_connections as u64),
                // PostgreSQL reads 0 as no timeout at all.
                (
                    "statement_timeout_ms",
                    limits.statement_timeout_ms.unwrap_or(1),
                ),
            ] {
                if value == 0 {
                    return Err(LimitsError::Zero { tier: name, field });
                }
            }
            if limits
                .statement_timeout_ms
                .is_some_and(|ms| ms > i32::MAX as u64)
            {
                return Err(LimitsError::TooLarge {
                    tier: name,
                    field: "statement_timeout_ms",
                });
            }
            let tier = Arc::new(Tier {
                name: name.clone(),
                limits,
            });
            tiers.insert(name, tier);
        }
        let find = |name: &str| {
            tiers
                .get(name)
                .cloned()
                .ok_or_else(|| LimitsError::UnknownTier(name.to_string()))
        };
        let default = find(&config.default_tier)?;
        let mut tenants = HashMap::new();
        for (tenant, tier) in config.tenants {
            let ids = parse_all(&tenant);
            if ids.is_empty() {
                return Err(LimitsError::BadTenant(tenant));
            }
            let tier = find(&tier)?;
            for id in ids {
                tenants.insert(id, tier.clone());
            }
        }
        Ok(Tiers {
            default,
            tiers,
            tenants,
        })
    }

    /// One tier for every tenant.
    pub fn single(name: &str, limits: TierLimits) -> Result<Self, LimitsError> {
        Self::from_config(LimitsConfig {
            default_tier: name.to_string(),
            tiers: BTreeMap::from([(name.to_string(), limits)]),
            tenants: BTreeMap::new(),
        })
    }

    /// `tenant`'s tier.
    pub fn tier_of(&self, tenant: &TenantId) -> &Tier {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// The tier named `name`, if defined.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.get(name).map(|t| &**t)
    }

    /// Every tier's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tiers.keys().map(String::as_str)
    }
}

/// Every tenant id `s` reads as: `42` is the integer tenant 42 and the text tenant `42`; a
/// UUID is the UUID tenant and the text tenant spelled the same. A tier given for `42` applies
/// to both (which kind the application uses is not known here).
fn parse_all(s: &str) -> Vec<TenantId> {
    [
        s.parse::<TenantId>().ok(),
        TenantId::parse_int(s).ok(),
        TenantId::parse_text(s).ok(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A limit a tenant hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Limited {
    /// Over its tier's request rate.
    #[error(
        "tenant {tenant} is over the request rate of its tier `{tier}`; retry after {retry_after:?}"
    )]
    Rate {
        /// The tenant.
        tenant: TenantId,
        /// Its tier.
        tier: String,
        /// When a request will be allowed again.
        retry_after: Duration,
    },
    /// Holds its tier's share of the pool, and the pool fails fast ([`SharePolicy::FailFast`]).
    #[error("tenant {tenant} holds all {max} connections its tier `{tier}` may hold")]
    PoolShare {
        /// The tenant.
        tenant: TenantId,
        /// Its tier.
        tier: String,
        /// Its tier's share.
        max: usize,
    },
}

impl Limited {
    /// How long the client should wait before retrying (at least one second for a pool share:
    /// when a connection frees up is not known).
    pub fn retry_after(&self) -> Duration {
        match self {
            Limited::Rate { retry_after, .. } => *retry_after,
            Limited::PoolShare { .. } => Duration::from_secs(1),
        }
    }
}

/// A per-tenant request limiter (see the module docs). Implemented by the `tenant-db-limits`
/// crate's limiters; object safe, so that an edge can hold any of them.
pub trait RateLimit: Send + Sync + std::fmt::Debug {
    /// Counts one request of `tenant`: `Err` when it is over its tier's rate.
    fn check<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Result<(), LimitCheckError>> + Send + 'a>>;
}

/// A limiter's answer other than yes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitCheckError {
    /// Over the limit.
    #[error(transparent)]
    Limited(Limited),
    /// The limiter could not decide (its store is unreachable). The edge refuses the request
    /// (503) rather than let it through unlimited.
    #[error("the rate limiter is unavailable: {0}")]
    Unavailable(String),
}

/// What a transaction does when its tenant already holds its share of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharePolicy {
    /// Waits in the tenant's own queue, first come first served (the default).
    #[default]
    Wait,
    /// Fails at once with [`Limited::PoolShare`].
    FailFast,
}

/// The pool shares of one [`TenantDb`](crate::TenantDb): a semaphore per tenant with
/// connections held or awaited.
#[derive(Debug)]
pub(crate) struct Shares {
    tiers: Tiers,
    policy: SharePolicy,
    held: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

/// A tenant's hold on one connection of its share; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct Share {
    _permit: OwnedSemaphorePermit,
}

/// Above this many tenants in the map, idle ones are dropped when a share is taken.
const SWEEP_ABOVE: usize = 1024;

impl Shares {
    pub(crate) fn new(tiers: Tiers, policy: SharePolicy) -> Self {
        Shares {
            tiers,
            policy,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    #[cfg(test)]
    fn held_len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Takes one connection of `tenant`'s share: waits for one, or fails fast.
    pub(crate) async fn take(&self, tenant: &TenantId) -> Result<Share, Limited> {
        let tier = self.tiers.tier_of(tenant);
        let max = tier.limits.max_connections;
        let semaphore = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.len() > SWEEP_ABOVE {
                // Idle: no permit out and nobody else holding the semaphore.
                held.retain(|_, s| Arc::strong_count(s) > 1);
            }
            held.entry(*tenant)
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        let permit = match self.policy {
            SharePolicy::Wait => semaphore.acquire_owned().await.ok(),
            SharePolicy::FailFast => semaphore.try_acquire_owned().ok(),
        };
        permit
            .map(|permit| Share { _permit: permit })
            .ok_or_else(|| Limited::PoolShare {
                tenant: *tenant,
                tier: tier.name.clone(),
                max,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> TierLimits {
        TierLimits {
            requests_per_second: 1,
            burst: 1,
            max_connections: max,
            statement_timeout_ms: None,
        }
    }

    #[test]
    fn configuration_is_checked() {
        let ok = r#"{"default_tier": "free", "tiers": {"free": {"requests_per_second": 1, "burst": 1, "max_connections": 1}, "pro": {"requests_per_second": 9, "burst": 9, "max_connections": 3, "statement_timeout_ms": 50}}, "tenants": {"42": "pro", "acme": "pro"}}"#;
        let tiers = Tiers::from_json(ok).unwrap_or_else(|e| panic!("{e}"));
        let int = TenantId::parse_int("42").unwrap_or_else(|e| panic!("{e}"));
        let text = TenantId::parse_text("acme").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tiers.tier_of(&int).name(), "pro");
        assert_eq!(tiers.tier_of(&text).limits().statement_timeout_ms, Some(50));
        assert_eq!(tiers.tier_of(&TenantId::new_random()).name(), "free");
        // `42` is also the text tenant `42`.
        let text_42 = TenantId::parse_text("42").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tiers.tier_of(&text_42).name(), "pro");
        for (bad, want) in [
            (
                ok.replace("\"default_tier\": \"free\"", "\"default_tier\": \"gold\""),
                "`gold` is not defined",
            ),
            (
                ok.replace("\"42\": \"pro\"", "\"42\": \"gold\""),
                "`gold` is not defined",
            ),
            (ok.replace("\"42\"", "\"\""), "is not a tenant id"),
            (
                ok.replace("\"max_connections\": 1", "\"max_connections\": 0"),
                "`max_connections` must be at least 1",
            ),
            (
                ok.replace("\"burst\": 9", "\"burst\": 0"),
                "`burst` must be at least 1",
            ),
            (
                ok.replace("\"requests_per_second\": 1,", "\"requests_per_second\": 0,"),
                "`requests_per_second` must be at least 1",
            ),
            (
                ok.replace("\"burst\": 1,", "\"burst\": 1, \"bursts\": 2,"),
                "unknown field",
            ),
            ("{".to_string(), "limits configuration"),
            (
                ok.replace(
                    "\"statement_timeout_ms\": 50",
                    "\"statement_timeout_ms\": 0",
                ),
                "`statement_timeout_ms` must be at least 1",
            ),
            (
                ok.replace(
                    "\"statement_timeout_ms\": 50",
                    "\"statement_timeout_ms\": 3000000000",
                ),
                "larger than PostgreSQL accepts",
            ),
        ] {
            let e = Tiers::from_json(&bad).expect_err(&bad);
            assert!(e.to_string().contains(want), "{e} for {bad}");
        }
    }

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_share_and_others_are_not_held() {
        let tiers = Tiers::single("t", limits(2)).unwrap_or_else(|e| panic!("{e}"));
        let shares = Shares::new(tiers.clone(), SharePolicy::FailFast);
        let (a, b) = (TenantId::new_random(), TenantId::new_random());
        let one = shares.take(&a).await;
        let two = shares.take(&a).await;
        assert!(one.is_ok() && two.is_ok());
        let three = shares.take(&a).await;
        assert!(
            matches!(three, Err(Limited::PoolShare { max: 2, .. })),
            "{three:?}"
        );
        assert!(shares.take(&b).await.is_ok());
        drop(one);
        assert!(shares.take(&a).await.is_ok());
        // Waiting: the third waits until one is given back.
        let shares = Arc::new(Shares::new(tiers, SharePolicy::Wait));
        let held = (shares.take(&a).await, shares.take(&a).await);
        let waiter = tokio::spawn({
            let shares = shares.clone();
            async move { shares.take(&a).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        assert!(shares.take(&b).await.is_ok());
        drop(held);
        assert!(waiter.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn idle_tenants_are_forgotten_past_the_sweep_and_held_shares_are_kept() {
        let tiers = Tiers::single("t", limits(1)).unwrap_or_else(|e| panic!("{e}"));
        let shares = Shares::new(tiers, SharePolicy::FailFast);
        let held_tenant = TenantId::new_random();
        let held = shares.take(&held_tenant).await;
        assert!(held.is_ok());
        for _ in 0..SWEEP_ABOVE {
            drop(shares.take(&TenantId::new_random()).await);
        }
        // Not swept until the map holds more than SWEEP_ABOVE tenants.
        assert_eq!(shares.held_len(), SWEEP_ABOVE + 1);
        drop(shares.take(&TenantId::new_random()).await);
        // Swept: the idle ones are gone, the held one (and the new one) are not.
        assert_eq!(shares.held_len(), 2);
        // The held tenant's share still holds.
        assert!(shares.take(&held_tenant).await.is_err());
        drop(held);
        assert!(shares.take(&held_tenant).await.is_ok());
    }

    #[test]
    fn retry_after() {
        let t = TenantId::new_random();
        let rate = Limited::Rate {
            tenant: t,
            tier: "free".into(),
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(rate.retry_after(), Duration::from_millis(1500));
        let share = Limited::PoolShare {
            tenant: t,
            tier: "free".into(),
            max: 1,
        };
        assert_eq!(share.retry_after(), Duration::from_secs(1));
    }
}
