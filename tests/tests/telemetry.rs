//! Telemetry: the span of every tenant transaction, and the request that mixes tenants.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use keyed::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tenant_db::prelude::*;
use tenant_db::telemetry::{RequestScope, mixed_tenant_requests};
use tenant_db::{Error, Tenant};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Fields = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct Capture {
    /// Closed spans: name and fields.
    spans: Arc<Mutex<Vec<(String, Fields)>>>,
    /// Events: level and fields.
    events: Arc<Mutex<Vec<(Level, Fields)>>>,
}

struct Visitor<'a>(&'a mut Fields);
impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Visitor(fields));
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .cloned()
                .unwrap_or_default();
            self.spans
                .lock()
                .unwrap()
                .push((span.name().to_string(), fields));
        }
    }
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields));
    }
}

/// One subscriber for the whole binary (a thread-local one races with callsites first reached
/// on the other test's thread). Each test filters what it captured by its own tenants.
fn capture() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(capture.clone()),
        );
        capture
    })
}

async fn count(db: &TenantDb, tenant: Tenant) -> Result<i64, Error> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(
            s.query(customers::table)
                .count()
                .get_result(&mut tx)
                .await?,
        )
    })
    .await
}

/// The spans named `tenant_db.transaction` of `tenant`, in the order they closed.
fn transactions(capture: &Capture, tenant: Tenant) -> Vec<Fields> {
    capture
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, f)| {
            name == "tenant_db.transaction" && f.get("tenant_id") == Some(&tenant.to_string())
        })
        .map(|(_, f)| f.clone())
        .collect()
}

#[tokio::test]
async fn every_transaction_has_a_span_with_its_tenant_outcome_and_duration() {
    let db = db_with_rls(2).await;
    let capture = capture();
    let (a, _b) = two_tenants(&db).await;
    // The seeding's spans come first.
    let seeded = transactions(capture, a).len();
    assert_eq!(count(&db, a).await.unwrap(), 3);
    let failed: Result<(), Error> = db
        .transaction(a, async |_tx| {
            Err(Error::Doctor("the closure failed".into()))
        })
        .await;
    assert!(failed.is_err());
    let spans = transactions(capture, a).split_off(seeded);
    assert_eq!(spans.len(), 2, "{spans:?}");
    for span in &spans {
        assert_eq!(span["tenant_id"], a.to_string());
        assert_eq!(span["key_kind"], "uuid");
        assert!(span["duration_ms"].parse::<f64>().unwrap() >= 0.0);
    }
    assert_eq!(spans[0]["outcome"], "committed");
    assert_eq!(spans[1]["outcome"], "rolled_back");
}

#[tokio::test]
async fn the_span_duration_is_the_transactions_time_in_milliseconds() {
    let db = db_with_rls(2).await;
    let a = new_tenant();
    let capture = capture();
    let started = std::time::Instant::now();
    db.transaction(a, async |_tx| {
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let outside = started.elapsed().as_secs_f64() * 1000.0;
    let spans = transactions(capture, a);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let ms: f64 = spans[0]["duration_ms"].parse().unwrap();
    assert!(
        (40.0..=outside).contains(&ms),
        "{ms} ms inside, {outside} ms outside"
    );
}

/// No other test of this binary sends a last statement, so the counter moves only here.
#[tokio::test]
async fn a_flight_is_counted_when_it_committed_and_only_then() {
    let db = db_with_rls(2).await;
    let a = new_tenant();
    let insert = |name: &'static str| {
        let db = db.clone();
        async move {
            db.single(a, async |mut tx| {
                let s = tx.scope();
                s.insert(customers::table)
                    .values(new_customer(1, name))
                    .execute(&mut tx)
                    .await
                    .map_err(Error::from)
            })
            .await
        }
    };
    let before = tenant_db::telemetry::commits_in_flight();
    insert("first").await.unwrap();
    assert_eq!(tenant_db::telemetry::commits_in_flight(), before + 1);
    // The same key again: the statement fails and the COMMIT behind it rolls back.
    insert("again").await.expect_err("a duplicate key");
    assert_eq!(tenant_db::telemetry::commits_in_flight(), before + 1);
}

#[tokio::test]
async fn a_request_that_mixes_tenants_is_flagged_or_refused_when_strict() {
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let capture = capture();
    let warnings = || {
        capture
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(level, f)| {
                *level == Level::WARN
                    && f.get("message").is_some_and(|m| m.contains("two tenants"))
                    && f.get("tenant_id") == Some(&b.to_string())
            })
            .count()
    };

    // One tenant, twice: nothing to flag.
    let before = mixed_tenant_requests();
    RequestScope::new()
        .run(async {
            count(&db, a).await.unwrap();
            count(&db, a).await.unwrap();
        })
        .await;
    assert_eq!(warnings(), 0);

    // Two tenants: both run, flagged once (the counter is process-wide; other tests may add).
    RequestScope::new()
        .run(async {
            assert_eq!(count(&db, a).await.unwrap(), 3);
            assert_eq!(count(&db, b).await.unwrap(), 3);
        })
        .await;
    assert_eq!(warnings(), 1);
    assert!(mixed_tenant_requests() > before);

    // Strict: the second tenant is refused before a connection is taken.
    let second = RequestScope::strict()
        .run(async {
            count(&db, a).await.unwrap();
            count(&db, b).await
        })
        .await;
    assert!(
        matches!(&second, Err(Error::MixedTenants(m)) if m.first == a.id() && m.second == b.id()),
        "{second:?}"
    );
    assert_eq!(warnings(), 2);
    assert_eq!(
        transactions(capture, b).last().unwrap()["outcome"],
        "refused"
    );

    // Outside a request scope, one task may serve many tenants (a job runner).
    count(&db, a).await.unwrap();
    count(&db, b).await.unwrap();
    assert_eq!(warnings(), 2);
}
