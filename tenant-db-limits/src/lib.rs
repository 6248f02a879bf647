//! Per-tenant request limits for tenant-db (see [`tenant_db::limits`] for tiers, pool shares and
//! statement timeouts).
//!
//! Two [`RateLimit`] implementations, both keyed by the verified tenant and configured by
//! [`Tiers`]:
//!
//! - [`LocalLimiter`]: in this process, GCRA (`governor`): a tier allows `requests_per_second`
//!   sustained and `burst` at once. Each process counts alone: N processes allow N times the
//!   rate.
//! - [`RedisLimiter`]: shared by every process through Redis: one key per tenant per one-second
//!   window, incremented (and given its expiry) by one atomic script; a tier allows
//!   `requests_per_second` per window. If Redis cannot answer, the check fails with
//!   [`LimitCheckError::Unavailable`] (the edge answers 503): a limiter that lets everything
//!   through when its store is down limits nothing when it matters.
//!
//! Over the limit, [`RateLimit::check`] returns [`Limited::Rate`] with the time to wait;
//! `tenant-db-axum` answers it with 429 and `Retry-After`.

mod local;
mod redis_limiter;

pub use local::LocalLimiter;
pub use redis_limiter::{RedisLimiter, RedisLimiterError};
pub use tenant_db::limits::{LimitCheckError, Limited, RateLimit, Tiers};
