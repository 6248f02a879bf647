//! Writes by key that must find exactly one row of the tenant (`execute_one`): another
//! tenant's id is `NotFound` (and a `WARN` on `tenant_db::not_found`), not a silent zero; more
//! than one row is an error that rolls the transaction back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use std::sync::{Arc, Mutex};
use tenant_db::prelude::*;
use tenant_db::{Error, ManyRows};
use tenant_db_tests::schema::*;

/// Collects the messages of `WARN` events on target `tenant_db::not_found`.
#[derive(Clone, Default)]
struct NotFoundEvents(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NotFoundEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "tenant_db::not_found" {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push_str(&format!("{}={v:?} ", f.name()));
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

#[tokio::test]
async fn a_write_by_key_finds_exactly_one_row_of_the_tenant_or_says_so() {
    use tracing_subscriber::layer::SubscriberExt;
    let events = NotFoundEvents::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    // B has customer 3 with no orders; A has one too. A's write by key on its own id: Ok.
    db.transaction(a, async |mut tx| {
        let s = tx.scope();
        s.update(customers::table)
            .filter(customers::id.eq(1))
            .set(tenant_db::values!(
                customers::table,
                customers::name = "one"
            ))
            .execute_one(&mut tx)
            .await?;
        s.delete(customers::table)
            .filter(customers::id.eq(3))
            .execute_one(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    // An id A does not have (B's only): NotFound, and a WARN naming A.
    let missing = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.eq(3))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "guessed"
                ))
                .execute_one(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::Query(diesel::result::Error::NotFound)),
        "{missing}"
    );
    let deleted = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.delete(customers::table)
                .filter(customers::id.eq(3))
                .execute_one(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(deleted, Error::Query(diesel::result::Error::NotFound)),
        "{deleted}"
    );
    let seen = events.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|e| e.contains(&a.id().to_string())),
        "{seen:?}"
    );
    // B's row 3 is untouched.
    let name: String = db
        .transaction(b, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .filter(customers::id.eq(3))
                    .select(customers::name)
                    .first(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(name, "c3");
    // More than one row: an error, and the transaction rolls back.
    let many = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.le(2))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "many"
                ))
                .execute_one(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(
        many.to_string().contains(&ManyRows { rows: 2 }.to_string()),
        "{many}"
    );
    let names: Vec<String> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .select(customers::name)
                    .order(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(names, ["one", "c2"]);
}
