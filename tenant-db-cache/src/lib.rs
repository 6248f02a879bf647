//! A tenant-scoped cache on Redis.
//!
//! - [`CacheKey`] is built only from a tenant context (a verified
//!   [`Tenant`](tenant_db::Tenant) or a transaction's scope): `…:t:<kind>:<tenant>:<namespace>:<key>`,
//!   with `:`, `%` and Redis glob characters in every part percent-escaped, so no namespace or key
//!   can spell another tenant's prefix.
//! - [`TenantCache`] takes only such keys: get, set with a TTL, delete, read-through, and
//!   [`invalidate_tenant`](TenantCache::invalidate_tenant), which deletes one tenant's entries
//!   with `SCAN` over its prefix (never `KEYS *`).
//! - Each value is stored with its tenant, and checked on the way back: a value that belongs to
//!   another tenant (a poisoned or mis-written key) is an error, never an answer.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tenant_db::TenantId;
use tenant_db::identity::TenantContext;

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Redis refused or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value could not be (de)serialized.
    #[error("cache value: {0}")]
    Value(String),
    /// The stored value belongs to another tenant than its key.
    #[error("the cached value under this key belongs to another tenant")]
    ForeignValue,
    /// A TTL of zero.
    #[error("a cache entry needs a TTL of at least one second")]
    ZeroTtl,
}

/// Percent-escapes `%`, `:` and the characters Redis patterns give a meaning to.
fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            '%' | ':' | '*' | '?' | '[' | ']' | '\\' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The key prefix of `tenant`'s entries (before the namespace).
fn tenant_prefix(tenant: &TenantId) -> String {
    format!(
        "t:{}:{}:",
        tenant.kind().name(),
        escape(&tenant.to_string())
    )
}

/// A cache key of one tenant. Built only from a tenant context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    tenant: TenantId,
    rendered: String,
}

impl CacheKey {
    /// The key `key` in `namespace` for the context's tenant.
    pub fn new<C: TenantContext + ?Sized>(context: &C, namespace: &str, key: &str) -> Self {
        let tenant = context.context_tenant();
        CacheKey {
            rendered: format!(
                "{}{}:{}",
                tenant_prefix(&tenant),
                escape(namespace),
                escape(key)
            ),
            tenant,
        }
    }

    /// The tenant this key belongs to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The key as stored (after the cache's prefix).
    pub fn as_str(&self) -> &str {
        &self.rendered
    }
}

/// What is stored: the value and its tenant.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    tenant: String,
    value: T,
}

/// A Redis cache whose every key belongs to one tenant.
#[derive(Clone)]
pub struct TenantCache {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for TenantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TenantCache {
    /// Connects to `url`; every key is stored under `prefix` (your service's name, say).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let conn = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(TenantCache {
            conn,
            prefix: format!("{}:", escape(prefix)),
        })
    }

    fn full(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.rendered)
    }

    /// The value under `key`, if any (and if it is this tenant's).
    pub async fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Option<T>, CacheError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = conn.get(self.full(key)).await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let stored: Stored<T> =
            serde_json::from_slice(&raw).map_err(|e| CacheError::Value(e.to_string()))?;
        if stored.tenant != tenant_tag(&key.tenant) {
            return Err(CacheError::ForeignValue);
        }
        Ok(Some(stored.value))
    }

    /// Stores `value` under `key` for `ttl` (at least a second).
    pub async fn set<T: Serialize>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let secs = ttl.as_secs();
        if secs == 0 {
            return Err(CacheError::ZeroTtl);
        }
        let bytes = serde_json::to_vec(&Stored {
            tenant: tenant_tag(&key.tenant),
            value,
        })
        .map_err(|e| CacheError::Value(e.to_string()))?;
        let mut conn = self.conn.clone();
        let () = conn.set_ex(self.full(key), bytes, secs).await?;
        Ok(())
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let n: i64 = conn.del(self.full(key)).await?;
        Ok(n > 0)
    }

    /// The cached value, or `load`'s, stored for `ttl`.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: Duration,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<CacheError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let value = load().await?;
        self.set(key, &value, ttl).await?;
        Ok(value)
    }

    /// Deletes every entry of the context's tenant (`SCAN` over its prefix, then `UNLINK`);
    /// returns how many.
    pub async fn invalidate_tenant<C: TenantContext + ?Sized>(
        &self,
        context: &C,
    ) -> Result<u64, CacheError> {
        let pattern = format!(
            "{}{}*",
            self.prefix,
            tenant_prefix(&context.context_tenant())
        );
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// How a value records its tenant.
fn tenant_tag(tenant: &TenantId) -> String {
    format!("{}:{tenant}", tenant.kind().name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_db::Tenant;

    #[test]
    fn no_key_part_can_spell_another_tenants_prefix() {
        let a =
            Tenant::assume_verified(TenantId::parse_text("a").unwrap_or_else(|e| panic!("{e}")));
        let b =
            Tenant::assume_verified(TenantId::parse_text("b").unwrap_or_else(|e| panic!("{e}")));
        let b_key = CacheKey::new(&b, "projects", "1");
        // Every way A could try to write B's key.
        for (ns, key) in [
            ("projects", "1"),
            ("x", "t:text:b:projects:1"),
            ("t:text:b:projects", "1"),
            ("", "b:projects:1"),
            ("*", "*"),
            ("projects%3A1", ""),
        ] {
            let k = CacheKey::new(&a, ns, key);
            assert_ne!(k.as_str(), b_key.as_str());
            assert!(k.as_str().starts_with("t:text:a:"), "{}", k.as_str());
            assert_eq!(k.as_str().matches(':').count(), 4, "{}", k.as_str());
        }
        // Text keys may hold `:` themselves: escaped.
        let colon = Tenant::assume_verified(
            TenantId::parse_text("org:1").unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(
            CacheKey::new(&colon, "n", "k").as_str(),
            "t:text:org%3A1:n:k"
        );
    }
}
