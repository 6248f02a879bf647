//! Tenant jobs: a job travels as a sealed envelope
//! ([`tenant_db::identity::envelope`]), so a worker gets its verified tenant back only by
//! opening it; [`RedisQueue`] carries envelopes through Redis Streams; [`FairQueue`] hands a
//! worker pool jobs round-robin across tenants, with a per-tenant concurrency cap, so that one
//! tenant's flood does not delay another tenant's job.
//!
//! Redis Streams is the broker because a service that caches in Redis already runs it, and its
//! consumer groups give at-least-once delivery with acknowledgement (`XREADGROUP`, `XACK`)
//! without another server.

mod dispatch;
mod fair;
mod redis_queue;

/// Integer tenant `n`, for the unit tests.
#[cfg(test)]
fn tenant_for_tests(n: i64) -> tenant_db::TenantId {
    match tenant_db::TenantId::from_i64(n) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

pub use dispatch::Dispatcher;
pub use fair::FairQueue;
pub use redis_queue::{Delivery, JobError, RedisQueue};
