//! Jobs end to end through the real Redis (127.0.0.1:6379, a stream named for this test run,
//! deleted afterwards) and the real database as the application role: a sealed job comes back
//! as its verified tenant and writes that tenant's row; a forged, relabelled or expired envelope
//! is refused by the worker and writes nothing.

#![allow(clippy::unwrap_used, missing_docs)]

use serde_json::json;
use std::time::Duration;
use tenant_db::identity::MasterKey;
use tenant_db::identity::envelope::{self, EnvelopeError};
use tenant_db::{Error, Provenance, Tenant, TenantDb};
use tenant_db_jobs::RedisQueue;
use tenant_db_tests::schema::*;

/// The Redis server (`TENANT_DB_REDIS_URL`, default the local one).
fn redis_url() -> String {
    std::env::var("TENANT_DB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Deletes a test's stream when the test ends, whether it passed or not.
struct DropStream(String);

impl Drop for DropStream {
    fn drop(&mut self) {
        if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&self.0).query(&mut conn);
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct NewName {
    id: i64,
    name: String,
}

async fn db() -> TenantDb {
    let url = tenant_db_tests::provision(DATABASE, &schema_sql(), TENANT_TABLES)
        .await
        .unwrap();
    assert!(url.contains(tenant_db_tests::APP_ROLE));
    TenantDb::connect(&url, 2).unwrap()
}

/// What the worker does with one delivery: open, then write for the envelope's tenant.
async fn handle(db: &TenantDb, master: &MasterKey, bytes: &[u8]) -> Result<Tenant, EnvelopeError> {
    let job: envelope::Opened<NewName> = envelope::open(master, bytes)?;
    let tenant = job.tenant();
    let new = job.into_payload();
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(NewCustomer {
                id: new.id,
                name: new.name,
                email: None,
            })
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    Ok(tenant)
}

async fn names(db: &TenantDb, tenant: Tenant) -> Vec<String> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(
            s.query(customers::table)
                .order(customers::id)
                .select(customers::name)
                .load(&mut tx)
                .await?,
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn sealed_jobs_run_for_their_tenant_and_forged_ones_are_refused() {
    let db = db().await;
    let master = MasterKey::new(&[21; 32]).unwrap();
    let stream = format!("tenant-db-test:jobs:{}", uuid::Uuid::new_v4());
    let _cleanup = DropStream(stream.clone());
    let queue = RedisQueue::connect(&redis_url(), &stream, "workers")
        .await
        .unwrap();
    let (a, b) = (new_tenant(), new_tenant());

    let a_job = envelope::seal(
        &master,
        &a,
        &NewName {
            id: 1,
            name: "from a's job".into(),
        },
        Duration::from_secs(60),
    )
    .unwrap();
    // Relabelled for b: a's envelope with b's tenant.
    let mut relabelled: serde_json::Value = serde_json::from_slice(&a_job).unwrap();
    relabelled["tenant"] = json!(b.id().to_string());
    // Forged: a MAC under another master.
    let forger = MasterKey::new(&[22; 32]).unwrap();
    let forged = envelope::seal(
        &forger,
        &b,
        &NewName {
            id: 2,
            name: "forged".into(),
        },
        Duration::from_secs(60),
    )
    .unwrap();

    queue.enqueue(&a_job).await.unwrap();
    queue
        .enqueue(&serde_json::to_vec(&relabelled).unwrap())
        .await
        .unwrap();
    queue.enqueue(&forged).await.unwrap();
    queue.enqueue(b"not an envelope").await.unwrap();

    let delivered = queue
        .receive("worker-1", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 4);
    let mut outcomes = Vec::new();
    for d in &delivered {
        outcomes.push(
            handle(&db, &master, &d.envelope)
                .await
                .map(|t| (t.id(), t.provenance())),
        );
        queue.ack(&d.id).await.unwrap();
    }
    assert_eq!(
        outcomes,
        vec![
            Ok((a.id(), Provenance::JobEnvelope)),
            Err(EnvelopeError::BadMac),
            Err(EnvelopeError::BadMac),
            Err(EnvelopeError::Malformed),
        ]
    );
    // Acknowledged: nothing is delivered again.
    assert!(
        queue
            .receive("worker-1", 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(names(&db, a).await, vec!["from a's job".to_string()]);
    assert!(
        names(&db, b).await.is_empty(),
        "nothing may be written for b"
    );
    queue.destroy().await.unwrap();
}

/// The entries delivered to a group and not yet acknowledged.
async fn pending(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> i64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("workers")
        .query_async(conn)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING count {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

#[tokio::test]
async fn the_queue_reconnects_acknowledges_and_is_deleted() {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("tenant-db-test:jobs:{}", uuid::Uuid::new_v4());
    let _cleanup = DropStream(stream.clone());
    let queue = RedisQueue::connect(&redis_url(), &stream, "workers")
        .await
        .unwrap();
    assert_eq!(
        format!("{queue:?}"),
        format!("RedisQueue {{ stream: {stream:?}, group: \"workers\", .. }}")
    );
    // A second worker (or a restart) joins the existing group.
    let again = RedisQueue::connect(&redis_url(), &stream, "workers")
        .await
        .unwrap();

    queue.enqueue(b"one").await.unwrap();
    let delivered = again
        .receive("worker-2", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(pending(&mut conn, &stream).await, 1);
    again.ack(&delivered[0].id).await.unwrap();
    assert_eq!(
        pending(&mut conn, &stream).await,
        0,
        "ack left the entry pending"
    );

    queue.destroy().await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "destroy left the stream");

    // A key of another type where the stream should be: an error, not a queue.
    let _: () = redis::cmd("SET")
        .arg(&stream)
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    let wrong = RedisQueue::connect(&redis_url(), &stream, "workers").await;
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(wrong.is_err(), "connected to a key that is not a stream");
}
