//! [`RedisLimiter`]: one key per tenant per window, shared by every process.

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenant_db::TenantId;
use tenant_db::limits::{LimitCheckError, Limited, RateLimit, Tiers};

/// The window: one second.
const WINDOW_MS: u64 = 1000;

/// How long [`RedisLimiter::connect`] waits for Redis.
const CONNECT_WITHIN: Duration = Duration::from_secs(3);

/// How long a check waits for Redis before the request is refused.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Counts the request in `KEYS[1]` (the tenant's key for this window), giving the key its
/// expiry when it is new; returns -1 when the count is within `ARGV[1]`, else the
/// milliseconds left in the window (at least 1). One script, so that the count and the expiry are one
/// atomic step (a crash between an `INCR` and its `PEXPIRE` would leave a key that never
/// expires).
const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  elseif left == 0 then
    left = 1
  end
  return left
end
return -1
";

/// A per-tenant limiter shared by every process that uses the same Redis and prefix.
pub struct RedisLimiter {
    tiers: Tiers,
    prefix: String,
    conn: ConnectionManager,
    script: Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The Redis limiter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter: {0}")]
pub struct RedisLimiterError(#[from] redis::RedisError);

impl RedisLimiter {
    /// Connects to `url`; keys are `{prefix}:rate:{kind}:{tenant}:{window}`.
    pub async fn connect(url: &str, prefix: &str, tiers: Tiers) -> Result<Self, RedisLimiterError> {
        let client = redis::Client::open(url)?;
        // A check waits at most a second for Redis, and a lost connection is retried a few
        // times, not for minutes: the request is refused meanwhile (`Unavailable`).
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            CONNECT_WITHIN,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| {
            RedisLimiterError::from(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no answer from Redis",
            )))
        })??;
        Ok(RedisLimiter {
            tiers,
            prefix: prefix.to_string(),
            conn,
            script: Script::new(COUNT),
        })
    }

    /// The key `tenant`'s requests at `now_ms` (milliseconds since the epoch) count in.
    fn key(&self, tenant: &TenantId, now_ms: u64) -> String {
        format!(
            "{}:rate:{}:{}:{}",
            self.prefix,
            tenant.kind().name(),
            tenant,
            now_ms / WINDOW_MS
        )
    }

    /// Counts one request of `tenant`.
    pub async fn check_now(&self, tenant: &TenantId) -> Result<(), LimitCheckError> {
        let tier = self.tiers.tier_of(tenant);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(self.key(tenant, now_ms));
        invocation
            .arg(tier.limits().requests_per_second)
            .arg(WINDOW_MS);
        let answer = tokio::time::timeout(ANSWER_WITHIN, invocation.invoke_async::<i64>(&mut conn))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "no answer from Redis",
                )))
            });
        let left = answer.map_err(|e| {
            tracing::warn!(error = %e, "the Redis rate limiter cannot answer");
            LimitCheckError::Unavailable(e.to_string())
        })?;
        if left < 0 {
            return Ok(());
        }
        Err(LimitCheckError::Limited(Limited::Rate {
            tenant: *tenant,
            tier: tier.name().to_string(),
            retry_after: Duration::from_millis(left.unsigned_abs().max(1)),
        }))
    }
}

impl RateLimit for RedisLimiter {
    fn check<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Result<(), LimitCheckError>> + Send + 'a>> {
        Box::pin(self.check_now(tenant))
    }
}
