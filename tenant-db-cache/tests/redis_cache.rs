//! The cache on the real Redis (127.0.0.1:6379), under a prefix unique to this run and deleted
//! afterwards: tenant A cannot read, overwrite, invalidate or be served tenant B's entries.

#![allow(clippy::unwrap_used, missing_docs)]

use redis::AsyncCommands;
use std::time::Duration;
use tenant_db::{Tenant, TenantId};
use tenant_db_cache::{CacheError, CacheKey, TenantCache};

/// The Redis server (`TENANT_DB_REDIS_URL`, default the local one).
fn redis_url() -> String {
    std::env::var("TENANT_DB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}
const TTL: Duration = Duration::from_secs(60);

fn tenant() -> Tenant {
    Tenant::assume_verified(TenantId::new_random())
}

struct Run {
    cache: TenantCache,
    prefix: String,
    raw: redis::aio::MultiplexedConnection,
}

async fn run() -> Run {
    let prefix = format!("tenant-db-test-{}", uuid::Uuid::new_v4().simple());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    // The premise: a real Redis answers.
    let pong: String = redis::cmd("PING").query_async(&mut raw).await.unwrap();
    assert_eq!(pong, "PONG");
    Run {
        cache: TenantCache::connect(&redis_url(), &prefix).await.unwrap(),
        prefix,
        raw,
    }
}

impl Run {
    async fn keys(&mut self) -> Vec<String> {
        let mut keys: Vec<String> = self.raw.keys(format!("{}:*", self.prefix)).await.unwrap();
        keys.sort();
        keys
    }
    async fn cleanup(mut self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            let _: i64 = self.raw.del(keys).await.unwrap();
        }
    }
}

#[tokio::test]
async fn get_set_delete_and_read_through_stay_in_one_tenant() {
    let mut r = run().await;
    let (a, b) = (tenant(), tenant());
    let a_key = CacheKey::new(&a, "projects", "1");
    let b_key = CacheKey::new(&b, "projects", "1");
    r.cache.set(&b_key, &"b's project", TTL).await.unwrap();
    assert_eq!(
        r.cache.get::<String>(&a_key).await.unwrap(),
        None,
        "A reads B's entry"
    );
    r.cache.set(&a_key, &"a's project", TTL).await.unwrap();
    assert_eq!(
        r.cache.get::<String>(&b_key).await.unwrap().as_deref(),
        Some("b's project")
    );
    assert!(r.cache.delete(&a_key).await.unwrap());
    assert!(
        !r.cache.delete(&a_key).await.unwrap(),
        "a key already deleted did not exist"
    );
    // Debug names the prefix, never a connection detail or a value.
    let shown = format!("{:?}", r.cache);
    assert!(
        shown.starts_with("TenantCache") && !shown.contains("project"),
        "{shown}"
    );
    assert_eq!(
        r.cache.get::<String>(&b_key).await.unwrap().as_deref(),
        Some("b's project")
    );
    // Read-through: loads once, then serves the cached value.
    let mut loads = 0;
    for _ in 0..2 {
        let v: Result<i64, CacheError> = r
            .cache
            .get_or_load(&a_key, TTL, || {
                loads += 1;
                async { Ok(41 + 1) }
            })
            .await;
        assert_eq!(v.unwrap(), 42);
    }
    assert_eq!(loads, 1);
    assert!(matches!(
        r.cache.set(&a_key, &1, Duration::from_millis(500)).await,
        Err(CacheError::ZeroTtl)
    ));
    let ttl: i64 = r
        .raw
        .ttl(format!("{}:{}", r.prefix, a_key.as_str()))
        .await
        .unwrap();
    assert!((1..=60).contains(&ttl), "{ttl}");
    r.cleanup().await;
}

#[tokio::test]
async fn invalidating_one_tenant_leaves_the_others() {
    let mut r = run().await;
    let (a, b) = (tenant(), tenant());
    for i in 0..1200 {
        r.cache
            .set(&CacheKey::new(&a, "n", &i.to_string()), &i, TTL)
            .await
            .unwrap();
    }
    for i in 0..3 {
        r.cache
            .set(&CacheKey::new(&b, "n", &i.to_string()), &i, TTL)
            .await
            .unwrap();
    }
    // A key of A whose parts look like B's prefix is still A's.
    let sneaky = CacheKey::new(&a, &format!("t:uuid:{}", b.id()), "*");
    r.cache.set(&sneaky, &"a", TTL).await.unwrap();
    assert_eq!(r.cache.invalidate_tenant(&a).await.unwrap(), 1201);
    assert_eq!(r.keys().await.len(), 3);
    for i in 0..3 {
        assert_eq!(
            r.cache
                .get::<i64>(&CacheKey::new(&b, "n", &i.to_string()))
                .await
                .unwrap(),
            Some(i)
        );
    }
    r.cleanup().await;
}

#[tokio::test]
async fn a_value_of_another_tenant_under_this_tenants_key_is_refused() {
    let mut r = run().await;
    let (a, b) = (tenant(), tenant());
    let a_key = CacheKey::new(&a, "projects", "1");
    let b_key = CacheKey::new(&b, "projects", "1");
    r.cache.set(&b_key, &"b's secret", TTL).await.unwrap();
    // Poison: copy B's stored bytes under A's key, bypassing the cache.
    let b_full = format!("{}:{}", r.prefix, b_key.as_str());
    let a_full = format!("{}:{}", r.prefix, a_key.as_str());
    let bytes: Vec<u8> = r.raw.get(&b_full).await.unwrap();
    let () = r.raw.set(&a_full, bytes).await.unwrap();
    assert!(matches!(
        r.cache.get::<String>(&a_key).await,
        Err(CacheError::ForeignValue)
    ));
    r.cleanup().await;
}
