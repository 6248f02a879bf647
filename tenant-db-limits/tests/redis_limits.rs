//! The shared limiter on the real Redis (127.0.0.1:6379), under a prefix unique to this run and
//! deleted afterwards: two limiters (two processes) share each tenant's count, tenants do not
//! share theirs, and the window's key expires.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;
use tenant_db::TenantId;
use tenant_db::limits::{LimitCheckError, Limited, TierLimits, Tiers};
use tenant_db_limits::RedisLimiter;

fn redis_url() -> String {
    std::env::var("TENANT_DB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn tiers() -> Tiers {
    Tiers::from_json(
        r#"{"default_tier": "free", "tiers": {
            "free": {"requests_per_second": 5, "burst": 5, "max_connections": 1},
            "pro": {"requests_per_second": 50, "burst": 50, "max_connections": 4}}}"#,
    )
    .unwrap()
}

async fn raw() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The premise: a real Redis answers.
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(info.contains("redis_version"), "not a Redis server: {info}");
    conn
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_processes_share_a_tenants_count_and_tenants_do_not() {
    let mut conn = raw().await;
    let prefix = format!("tenant-db-test-{}", uuid::Uuid::new_v4().simple());
    let one = RedisLimiter::connect(&redis_url(), &prefix, tiers())
        .await
        .unwrap();
    let two = RedisLimiter::connect(&redis_url(), &prefix, tiers())
        .await
        .unwrap();
    assert!(format!("{one:?}").starts_with("RedisLimiter"), "{one:?}");
    let (a, b) = (TenantId::new_random(), TenantId::new_random());
    // Start at the beginning of a window, so that all ten fall in one.
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1000;
    tokio::time::sleep(Duration::from_millis((1000 - into as u64) % 1000 + 5)).await;
    let mut allowed = 0;
    let mut limited = None;
    for i in 0..10 {
        let limiter = if i % 2 == 0 { &one } else { &two };
        match limiter.check_now(&a).await {
            Ok(()) => allowed += 1,
            Err(LimitCheckError::Limited(l)) => limited = Some(l),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(allowed, 5, "the two limiters did not share the count");
    match limited {
        Some(Limited::Rate {
            retry_after, tier, ..
        }) => {
            assert_eq!(tier, "free");
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    // B has its own count.
    assert!(one.check_now(&b).await.is_ok());
    // One key per tenant per window, with an expiry.
    let mut found = keys(&mut conn, &prefix).await;
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    for key in &found {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 1000, "{key}: {ttl}");
    }
    // The next window allows A again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(two.check_now(&a).await.is_ok());
    // Keys expire by themselves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let left = keys(&mut conn, &prefix).await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn each_tier_has_its_rate() {
    let mut conn = raw().await;
    let prefix = format!("tenant-db-test-{}", uuid::Uuid::new_v4().simple());
    let pro = TenantId::new_random();
    let tiers = Tiers::from_config(tenant_db::limits::LimitsConfig {
        default_tier: "free".into(),
        tiers: [
            (
                "free".to_string(),
                TierLimits {
                    requests_per_second: 1,
                    burst: 1,
                    max_connections: 1,
                    statement_timeout_ms: None,
                },
            ),
            (
                "pro".to_string(),
                TierLimits {
                    requests_per_second: 100,
                    burst: 100,
                    max_connections: 1,
                    statement_timeout_ms: None,
                },
            ),
        ]
        .into(),
        tenants: [(pro.to_string(), "pro".to_string())].into(),
    })
    .unwrap();
    let limiter = RedisLimiter::connect(&redis_url(), &prefix, tiers)
        .await
        .unwrap();
    let free = TenantId::new_random();
    let mut free_ok = 0;
    let mut pro_ok = 0;
    for _ in 0..20 {
        free_ok += usize::from(limiter.check_now(&free).await.is_ok());
        pro_ok += usize::from(limiter.check_now(&pro).await.is_ok());
    }
    assert!(free_ok <= 2, "{free_ok}");
    assert_eq!(pro_ok, 20);
    let found = keys(&mut conn, &prefix).await;
    if !found.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(found)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_pass() {
    // Nothing listens on port 1.
    let outcome = RedisLimiter::connect("redis://127.0.0.1:1", "tenant-db-test", tiers()).await;
    assert!(outcome.is_err());
}

#[tokio::test]
async fn a_redis_that_stops_answering_refuses_the_request() {
    // A listener that accepts and never answers: the check times out as `Unavailable`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let outcome = RedisLimiter::connect(
        &format!("redis://127.0.0.1:{port}"),
        "tenant-db-test",
        tiers(),
    )
    .await;
    match outcome {
        Err(_) => {}
        Ok(limiter) => {
            let checked = limiter.check_now(&TenantId::new_random()).await;
            assert!(
                matches!(checked, Err(LimitCheckError::Unavailable(_))),
                "{checked:?}"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    accept.abort();
}
