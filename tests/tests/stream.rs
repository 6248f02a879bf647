//! Streaming reads (`load_stream`): the rows of this tenant only, read inside the transaction;
//! a stream dropped midway, or a transaction dropped while streaming, leaves a clean connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use futures_util::StreamExt;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::schema::*;

async fn many(db: &TenantDb, tenant: Tenant, tag: &str) {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        let rows: Vec<NewCustomer> = (100..400)
            .map(|id| NewCustomer {
                id,
                name: format!("{tag}{id}"),
                email: None,
            })
            .collect();
        s.insert(customers::table)
            .values(rows)
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stream_reads_this_tenants_rows_and_can_be_dropped_midway() {
    let pool = pool_of_one(&app_url().await);
    let db = TenantDb::from_pool(pool.clone());
    let (a, b) = (new_tenant(), new_tenant());
    many(&db, a, "a").await;
    many(&db, b, "b").await;
    // The whole stream: A's 300 rows, nothing of B's.
    let names: Vec<String> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let mut rows = s
                .query(customers::table)
                .select(customers::name)
                .order(customers::id)
                .load_stream::<String>(&mut tx)
                .await?;
            let mut names = Vec::new();
            while let Some(name) = rows.next().await {
                names.push(name?);
            }
            Ok::<_, Error>(names)
        })
        .await
        .unwrap();
    assert_eq!(names.len(), 300);
    assert!(names.iter().all(|n| n.starts_with('a')), "{names:?}");
    // Dropped after five rows: the transaction goes on (another statement, a commit).
    let (first, count) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let mut rows = s
                .query(customers::table)
                .select(customers::name)
                .order(customers::id)
                .load_stream::<String>(&mut tx)
                .await?;
            let mut first = Vec::new();
            for _ in 0..5 {
                first.push(rows.next().await.expect("a row")?);
            }
            drop(rows);
            let count: i64 = s
                .query(customers::table)
                .count()
                .get_result(&mut tx)
                .await?;
            Ok::<_, Error>((first, count))
        })
        .await
        .unwrap();
    assert_eq!(first, ["a100", "a101", "a102", "a103", "a104"]);
    assert_eq!(count, 300);
    let after = state(&pool).await;
    assert!(clean(&after), "{after:?}");
    // A transaction dropped while its stream is half read: the pool replaces the connection.
    let db2 = db.clone();
    let (read, wait) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        db2.transaction(a, async |mut tx| {
            let s = tx.scope();
            let mut rows = s
                .query(customers::table)
                .select(customers::name)
                .load_stream::<String>(&mut tx)
                .await?;
            let _ = rows.next().await;
            let _ = read.send(());
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        })
        .await
    });
    wait.await.unwrap();
    task.abort();
    let _ = task.await;
    let after = state(&pool).await;
    assert!(clean(&after), "{after:?}");
    let n: i64 = db
        .single(b, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .count()
                    .get_result(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(n, 300);
}
