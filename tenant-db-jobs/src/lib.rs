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

pub use dispatch::Dispatcher;
pub use fair::FairQueue;
pub use redis_queue::{Delivery, JobError, RedisQueue};
