//! [`RedisQueue`]: sealed job envelopes through a Redis stream with a consumer group.

use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisError, Value};
use std::time::Duration;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// Redis refused or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A stream entry had no envelope field.
    #[error("stream entry {0} holds no envelope")]
    NoEnvelope(String),
}

/// One delivered entry: its stream id (to acknowledge) and the envelope's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The entry's id in the stream.
    pub id: String,
    /// The sealed envelope, to [`open`](tenant_db::identity::envelope::open).
    pub envelope: Vec<u8>,
}

/// A Redis stream of sealed job envelopes and the consumer group that reads it.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    stream: String,
    group: String,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// The entry field that holds the envelope.
const FIELD: &str = "envelope";

impl RedisQueue {
    /// Connects to `url` and creates `group` on `stream` (and the stream) if they are missing.
    pub async fn connect(url: &str, stream: &str, group: &str) -> Result<Self, JobError> {
        let client = redis::Client::open(url)?;
        let mut conn = ConnectionManager::new(client).await?;
        let created: Result<(), RedisError> = conn.xgroup_create_mkstream(stream, group, "0").await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        Ok(RedisQueue {
            conn,
            stream: stream.to_string(),
            group: group.to_string(),
        })
    }

    /// Appends a sealed envelope; returns its entry id.
    pub async fn enqueue(&self, envelope: &[u8]) -> Result<String, JobError> {
        let mut conn = self.conn.clone();
        Ok(conn.xadd(&self.stream, "*", &[(FIELD, envelope)]).await?)
    }

    /// Up to `count` new entries for `consumer`, waiting up to `block` for the first.
    pub async fn receive(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, JobError> {
        let mut conn = self.conn.clone();
        let options = StreamReadOptions::default()
            .group(&self.group, consumer)
            .count(count)
            .block(usize::try_from(block.as_millis()).unwrap_or(usize::MAX));
        let reply: StreamReadReply = conn
            .xread_options(&[&self.stream], &[">"], &options)
            .await?;
        let mut out = Vec::new();
        for key in reply.keys {
            for entry in key.ids {
                let envelope = match entry.map.get(FIELD) {
                    Some(Value::BulkString(bytes)) => bytes.clone(),
                    _ => return Err(JobError::NoEnvelope(entry.id)),
                };
                out.push(Delivery {
                    id: entry.id,
                    envelope,
                });
            }
        }
        Ok(out)
    }

    /// Acknowledges an entry: it is done and will not be delivered again.
    pub async fn ack(&self, id: &str) -> Result<(), JobError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.xack(&self.stream, &self.group, &[id]).await?;
        Ok(())
    }

    /// Deletes the stream (and its groups): for tests and teardown.
    pub async fn destroy(self) -> Result<(), JobError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(&self.stream).await?;
        Ok(())
    }
}
