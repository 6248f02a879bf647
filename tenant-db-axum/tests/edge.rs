//! The edge, attacked over HTTP (no socket: `oneshot` on the router): missing, malformed,
//! forged, expired, `alg: none`, wrong-audience and wrong-tenant-key tokens get 401; a token
//! without a tenant, or a hint that names another tenant, gets 403; errors reveal nothing.

#![allow(clippy::unwrap_used, missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tenant_db::identity::{KeyPurpose, MasterKey, TokenVerifier, VerifyingKey};
use tenant_db::{KeyKind, TenantId};
use tenant_db_axum::{Authenticated, HttpError, TenantAuth, TenantHint};
use tower::ServiceExt;

const ACME: &str = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01";
const GLOBEX: &str = "2b4c8d10-2222-4c6d-8e0f-1a2b3c4d5e6f";
const MASTER: [u8; 32] = [5; 32];

#[derive(Clone, FromRef)]
struct App {
    auth: TenantAuth,
}

async fn whoami(auth: Authenticated) -> String {
    format!("{} {}", auth.tenant().id(), auth.claims()["sub"])
}

fn router(hint: TenantHint) -> Router {
    router_with(TenantAuth::new(verifier()).hint(hint))
}

fn verifier() -> TokenVerifier {
    TokenVerifier::builder(KeyKind::Uuid)
        .key(VerifyingKey::per_tenant(MasterKey::new(&MASTER).unwrap()))
        .audience("api")
        .build()
        .unwrap()
}

fn router_with(auth: TenantAuth) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/t/{tenant}/whoami", get(whoami))
        .route(
            "/missing",
            get(async || -> Result<(), HttpError> { Err(diesel::result::Error::NotFound.into()) }),
        )
        .route(
            "/busy",
            get(async || -> Result<(), HttpError> {
                Err(tenant_db::Error::Pool("timed out waiting for a connection".into()).into())
            }),
        )
        .route(
            "/broken",
            get(async || -> Result<(), HttpError> {
                Err(tenant_db::Error::Doctor(
                    "SELECT secret FROM customers WHERE tenant_id = 'globex'".into(),
                )
                .into())
            }),
        )
        .route(
            "/share",
            get(async || -> Result<(), HttpError> {
                Err(
                    tenant_db::Error::Limited(Box::new(tenant_db::limits::Limited::PoolShare {
                        tenant: TenantId::new_random(),
                        tier: "free".into(),
                        max: 1,
                    }))
                    .into(),
                )
            }),
        )
        .layer(axum::middleware::from_fn(tenant_db_axum::request_scope))
        .with_state(App { auth })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token_with(claims: Value, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

/// A valid token for `tenant`, signed with that tenant's key.
fn token(tenant: &str) -> String {
    let id: TenantId = tenant.parse().unwrap();
    let key = MasterKey::new(&MASTER)
        .unwrap()
        .derive(&id, KeyPurpose::Token);
    token_with(
        json!({"tenant_id": tenant, "aud": "api", "exp": now() + 600, "sub": "u1"}),
        &key,
    )
}

async fn call(
    router: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::builder().uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let auth = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), auth)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_valid_token_yields_its_tenant() {
    let r = router(TenantHint::None);
    let (status, body, _) = call(&r, "/whoami", &[("authorization", &bearer(&token(ACME)))]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, format!("{ACME} \"u1\"").as_str())
    );
}

#[tokio::test]
async fn bad_tokens_get_401_and_say_nothing_more() {
    let r = router(TenantHint::None);
    let acme: TenantId = ACME.parse().unwrap();
    let acme_key = MasterKey::new(&MASTER)
        .unwrap()
        .derive(&acme, KeyPurpose::Token);
    let claims = |aud: &str, exp: i64, tenant: &str| json!({"tenant_id": tenant, "aud": aud, "exp": exp, "sub": "u1"});
    let none = {
        let valid = token(ACME);
        let mut parts: Vec<&str> = valid.split('.').collect();
        // {"alg":"none","typ":"JWT"}
        parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        format!("{}.{}.", parts[0], parts[1])
    };
    let cases = [
        ("no header", None),
        ("not bearer", Some(format!("Basic {}", token(ACME)))),
        ("garbage", Some(bearer("abc.def"))),
        ("alg none", Some(bearer(&none))),
        (
            "expired",
            Some(bearer(&token_with(
                claims("api", now() - 3600, ACME),
                &acme_key,
            ))),
        ),
        (
            "wrong audience",
            Some(bearer(&token_with(
                claims("admin", now() + 600, ACME),
                &acme_key,
            ))),
        ),
        (
            "forged with the master",
            Some(bearer(&token_with(
                claims("api", now() + 600, ACME),
                &MASTER,
            ))),
        ),
        (
            "another tenant's key",
            Some(bearer(&token_with(
                claims("api", now() + 600, GLOBEX),
                &acme_key,
            ))),
        ),
    ];
    for (what, authorization) in cases {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let (status, body, www) = call(&r, "/whoami", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(body, r#"{"error":"unauthorized"}"#, "{what}");
        assert!(www.is_some_and(|w| w.starts_with("Bearer")), "{what}");
    }
}

#[tokio::test]
async fn no_tenant_or_a_disagreeing_hint_gets_403() {
    let r = router(TenantHint::None);
    let acme: TenantId = ACME.parse().unwrap();
    let acme_key = MasterKey::new(&MASTER)
        .unwrap()
        .derive(&acme, KeyPurpose::Token);
    // A per-tenant key needs the tenant to find the key: no tenant claim is a 403.
    let no_tenant = token_with(json!({"aud": "api", "exp": now() + 600}), &acme_key);
    let (status, body, _) = call(&r, "/whoami", &[("authorization", &bearer(&no_tenant))]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#)
    );

    let ok = bearer(&token(ACME));
    let header_hint = router(TenantHint::header("x-tenant-id"));
    for (hint, expected) in [
        (Some(ACME), StatusCode::OK),
        (Some("7F1F2C1E-1111-4B5B-9A1A-5D2C0D4F8E01"), StatusCode::OK),
        (Some(GLOBEX), StatusCode::FORBIDDEN),
        (Some("not-a-tenant"), StatusCode::FORBIDDEN),
        (None, StatusCode::FORBIDDEN),
    ] {
        let mut headers = vec![("authorization", ok.as_str())];
        if let Some(h) = hint {
            headers.push(("x-tenant-id", h));
        }
        assert_eq!(
            call(&header_hint, "/whoami", &headers).await.0,
            expected,
            "{hint:?}"
        );
    }

    let subdomain = router(TenantHint::Subdomain {
        base_domain: "example.com".into(),
    });
    for (host, expected) in [
        (format!("{ACME}.example.com"), StatusCode::OK),
        (format!("{ACME}.example.com:8080"), StatusCode::OK),
        (format!("{GLOBEX}.example.com"), StatusCode::FORBIDDEN),
        (format!("{ACME}.evil.com"), StatusCode::FORBIDDEN),
        (format!("x.{ACME}.example.com"), StatusCode::FORBIDDEN),
        ("example.com".to_string(), StatusCode::FORBIDDEN),
    ] {
        let headers = [("authorization", ok.as_str()), ("host", host.as_str())];
        assert_eq!(
            call(&subdomain, "/whoami", &headers).await.0,
            expected,
            "{host}"
        );
    }

    let path = router(TenantHint::PathSegment(1));
    let headers = [("authorization", ok.as_str())];
    assert_eq!(
        call(&path, &format!("/t/{ACME}/whoami"), &headers).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&path, &format!("/t/{GLOBEX}/whoami"), &headers)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn errors_map_to_statuses_without_revealing_anything() {
    let r = router(TenantHint::None);
    let (status, body, _) = call(&r, "/missing", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#)
    );
    let response = r
        .clone()
        .oneshot(Request::builder().uri("/busy").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let (status, body, _) = call(&r, "/broken", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"internal error"}"#
        )
    );
    assert!(!body.contains("SELECT") && !body.contains("globex"));
}

type Fields = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, Fields)>>>);

struct Visitor<'a>(&'a mut BTreeMap<String, String>);
impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Visitor(fields));
        }
    }
    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<BTreeMap<String, String>>()
                .cloned()
                .unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .push((span.name().to_string(), fields));
        }
    }
}

/// One subscriber for the whole binary (a thread-local one races with callsites first reached
/// on the other tests' threads).
fn spans() -> &'static Spans {
    use tracing_subscriber::layer::SubscriberExt;
    static SPANS: std::sync::OnceLock<Spans> = std::sync::OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Spans::default();
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(spans.clone()),
        );
        spans
    })
}

#[tokio::test]
async fn each_request_runs_in_a_span_that_carries_its_tenant() {
    let spans = spans();
    let r = router(TenantHint::None);
    // GLOBEX: no other test of this binary gets a 200 for it.
    let (status, _, _) = call(&r, "/whoami", &[("authorization", &bearer(&token(GLOBEX)))]).await;
    assert_eq!(status, StatusCode::OK);
    let seen = spans.0.lock().unwrap().clone();
    let request = seen
        .iter()
        .find(|(name, f)| {
            name == "http.request" && f.get("tenant_id").map(String::as_str) == Some(GLOBEX)
        })
        .unwrap();
    assert_eq!(request.1["status"], "200");
    assert_eq!(request.1["path"], "/whoami");
}

#[derive(Debug)]
struct Down;

impl tenant_db::limits::RateLimit for Down {
    fn check<'a>(
        &'a self,
        _tenant: &'a TenantId,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<(), tenant_db::limits::LimitCheckError>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async {
            Err(tenant_db::limits::LimitCheckError::Unavailable(
                "connection refused".into(),
            ))
        })
    }
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() {
    let tiers = tenant_db::limits::Tiers::from_json(&format!(
        r#"{{"default_tier": "free", "tiers": {{
            "free": {{"requests_per_second": 1, "burst": 2, "max_connections": 1}},
            "pro": {{"requests_per_second": 100, "burst": 100, "max_connections": 1}}}},
            "tenants": {{"{GLOBEX}": "pro"}}}}"#
    ))
    .unwrap();
    let limiter = Arc::new(tenant_db_limits::LocalLimiter::new(tiers));
    let r = router_with(TenantAuth::new(verifier()).limit(limiter));
    let acme = bearer(&token(ACME));
    for _ in 0..2 {
        let (status, _, _) = call(&r, "/whoami", &[("authorization", &acme)]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let response = r
        .clone()
        .oneshot(
            Request::builder()
                .uri("/whoami")
                .header("authorization", &acme)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":"too many requests, retry"}"#);
    // Another tenant, in another tier, is not held back.
    let globex = bearer(&token(GLOBEX));
    for _ in 0..5 {
        let (status, _, _) = call(&r, "/whoami", &[("authorization", &globex)]).await;
        assert_eq!(status, StatusCode::OK);
    }
    // A pool share hit in a handler is a 429 too.
    let response = r
        .clone()
        .oneshot(
            Request::builder()
                .uri("/share")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    // A limiter that cannot answer refuses the request.
    let r = router_with(TenantAuth::new(verifier()).limit(Arc::new(Down)));
    let (status, body, _) = call(&r, "/whoami", &[("authorization", &acme)]).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"unavailable, retry"}"#
        )
    );
}
