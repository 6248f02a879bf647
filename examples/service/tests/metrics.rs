//! The service's `/metrics`: tenant-db's usage metrics rendered for Prometheus, the tenant label
//! bounded; and the edge's rate limit, answered with 429 and `Retry-After`.

#![allow(clippy::unwrap_used, missing_docs)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tenant_db::identity::{KeyPurpose, MasterKey};
use tenant_db::{TenantDb, TenantId};
use tenant_db_axum::TenantAuth;
use tenant_db_example_service::{
    AUDIENCE, TENANT_TABLES, TIERS, router_with_metrics, schema_sql, verifier,
};
use tower::ServiceExt;

const DATABASE: &str = "tenant_db_service_test";
const MASTER: [u8; 32] = [12; 32];

fn token(tenant: &TenantId) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"tenant_id": tenant.to_string(), "aud": AUDIENCE, "exp": exp, "sub": "u"});
    let key = MasterKey::new(&MASTER)
        .unwrap()
        .derive(tenant, KeyPurpose::Token);
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(&key)).unwrap()
}

#[tokio::test]
async fn metrics_are_rendered_with_bounded_labels_and_rates_are_limited() {
    let url = tenant_db_tests::provision(DATABASE, &schema_sql().unwrap(), TENANT_TABLES)
        .await
        .unwrap();
    let tiers = tenant_db::limits::Tiers::from_json(TIERS).unwrap();
    let db = TenantDb::builder(url)
        .max_size(4)
        .tiers(tiers.clone())
        .usage(std::time::Duration::from_secs(3600), 1)
        .build()
        .unwrap();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let auth = TenantAuth::new(verifier(MasterKey::new(&MASTER).unwrap()).unwrap())
        .limit(Arc::new(tenant_db_limits::LocalLimiter::new(tiers)));
    let app = router_with_metrics(db, auth, Some(handle));
    let get = async |uri: &str, token: Option<&str>| {
        let mut request = Request::builder().uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap(), retry)
    };
    let (a, b) = (TenantId::new_random(), TenantId::new_random());
    let (ta, tb) = (token(&a), token(&b));
    assert_eq!(get("/projects", Some(&ta)).await.0, StatusCode::OK);
    assert_eq!(get("/projects", Some(&tb)).await.0, StatusCode::OK);
    let (status, text, _) = get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    // One tenant named, the other counted as `other`.
    assert!(
        text.contains(&format!(
            "tenant_db_transactions_total{{tenant=\"{a}\",outcome=\"committed\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains("tenant_db_transactions_total{tenant=\"other\",outcome=\"committed\"} 1"),
        "{text}"
    );
    assert!(!text.contains(&b.to_string()), "{text}");
    assert!(text.contains("tenant_db_transaction_seconds"), "{text}");
    assert!(text.contains("tenant_db_pool_wait_seconds"), "{text}");
    // The free tier allows a burst of 20; the rest of a flood gets 429.
    let mut limited = None;
    for _ in 0..40 {
        let (status, _, retry) = get("/projects", Some(&ta)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = retry;
            break;
        }
    }
    assert_eq!(limited.as_deref(), Some("1"));
}
