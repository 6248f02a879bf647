//! The service attacked over HTTP, on a real database as the application role: for every
//! endpoint, tenant A's valid token on tenant B's ids gets 404 and changes nothing; forged,
//! expired, `alg: none`, wrong-audience and wrong-tenant-key tokens get 401; a hint that names
//! another tenant gets 403.

#![allow(clippy::unwrap_used, missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use tenant_db::identity::{KeyPurpose, MasterKey};
use tenant_db::{TenantDb, TenantId};
use tenant_db_axum::TenantHint;
use tenant_db_example_service::{AUDIENCE, TENANT_TABLES, router, schema_sql, verifier};
use tower::ServiceExt;

const DATABASE: &str = "tenant_db_service_test";
const MASTER: [u8; 32] = [11; 32];

async fn app(hint: TenantHint) -> Router {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let url = URL
        .get_or_init(|| async {
            tenant_db_tests::provision(DATABASE, &schema_sql().unwrap(), TENANT_TABLES)
                .await
                .unwrap()
        })
        .await;
    // The premise: the service's role is the restricted application role.
    assert!(url.contains(tenant_db_tests::APP_ROLE), "{url}");
    let db = TenantDb::connect(url, 4).unwrap();
    router(
        db,
        verifier(MasterKey::new(&MASTER).unwrap()).unwrap(),
        hint,
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(key)).unwrap()
}

fn key_of(tenant: &TenantId) -> [u8; 32] {
    MasterKey::new(&MASTER)
        .unwrap()
        .derive(tenant, KeyPurpose::Token)
}

fn token(tenant: &TenantId) -> String {
    signed(
        &json!({"tenant_id": tenant.to_string(), "aud": AUDIENCE, "exp": now() + 600}),
        &key_of(tenant),
    )
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    extra: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Tenant `t` with project `p` (plan free) and its task `p * 10`.
async fn seed(app: &Router, t: &TenantId, p: i64) {
    let tok = token(t);
    let (s, _) = call(
        app,
        Method::POST,
        "/projects",
        Some(&tok),
        Some(json!({"id": p, "name": format!("p{p}"), "plan_code": "free"})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        app,
        Method::POST,
        &format!("/projects/{p}/tasks"),
        Some(&tok),
        Some(json!({"id": p * 10, "title": format!("t{p}")})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
}

/// Everything tenant `t` can see, through the API.
async fn everything(app: &Router, t: &TenantId) -> Value {
    let tok = token(t);
    let mut all = Vec::new();
    for uri in ["/projects", "/stats"] {
        all.push(call(app, Method::GET, uri, Some(&tok), None, None).await.1);
    }
    for p in all[0].as_array().unwrap().clone() {
        let id = p["id"].as_i64().unwrap();
        all.push(
            call(
                app,
                Method::GET,
                &format!("/projects/{id}/tasks"),
                Some(&tok),
                None,
                None,
            )
            .await
            .1,
        );
    }
    Value::Array(all)
}

#[tokio::test]
async fn each_endpoint_works_for_its_own_tenant() {
    let app = app(TenantHint::None).await;
    let a = TenantId::new_random();
    seed(&app, &a, 1).await;
    let tok = token(&a);
    let get = |uri: &'static str| call(&app, Method::GET, uri, Some(&tok), None, None);
    assert_eq!(get("/plans").await.1[0]["code"], "free");
    assert_eq!(
        get("/projects").await.1,
        json!([{"id": 1, "name": "p1", "plan_code": "free"}])
    );
    assert_eq!(get("/projects/1").await.1["name"], "p1");
    assert_eq!(
        get("/projects/1/tasks").await.1,
        json!([["p1", "t1", false]])
    );
    assert_eq!(get("/stats").await.1, json!([[1, 1]]));
    let (s, _) = call(
        &app,
        Method::PUT,
        "/projects/1",
        Some(&tok),
        Some(json!({"name": "renamed"})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(get("/projects/1").await.1["name"], "renamed");
    let (s, _) = call(&app, Method::DELETE, "/projects/1", Some(&tok), None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(get("/projects/1").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_valid_token_on_another_tenants_ids_gets_404_and_changes_nothing() {
    let app = app(TenantHint::None).await;
    let a = TenantId::new_random();
    let b = TenantId::new_random();
    seed(&app, &a, 1).await;
    seed(&app, &b, 2).await;
    let before = everything(&app, &b).await;
    let a_tok = token(&a);
    let attempts: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/projects/2", None),
        (
            Method::PUT,
            "/projects/2",
            Some(json!({"name": "taken by a"})),
        ),
        (Method::DELETE, "/projects/2", None),
        (Method::GET, "/projects/2/tasks", None),
        (
            Method::POST,
            "/projects/2/tasks",
            Some(json!({"id": 99, "title": "smuggled"})),
        ),
    ];
    for (method, uri, body) in attempts {
        let (status, body) = call(&app, method.clone(), uri, Some(&a_tok), body, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(body, json!({"error": "not found"}), "{method} {uri}");
    }
    // A creating a project with B's id makes A's own project; B's is untouched.
    let (s, _) = call(
        &app,
        Method::POST,
        "/projects",
        Some(&a_tok),
        Some(json!({"id": 2, "name": "a's own 2", "plan_code": "team"})),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    // Lists show A's rows only.
    let listed = call(&app, Method::GET, "/projects", Some(&a_tok), None, None)
        .await
        .1;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed.as_array().unwrap().iter().all(|p| p["name"] != "p2"));
    assert_eq!(everything(&app, &b).await, before, "B's data changed");
}

#[tokio::test]
async fn bad_tokens_get_401_on_every_endpoint_and_a_disagreeing_hint_403() {
    let app = app(TenantHint::None).await;
    let a = TenantId::new_random();
    let b = TenantId::new_random();
    seed(&app, &b, 3).await;
    let before = everything(&app, &b).await;
    let claims = |tenant: &TenantId, aud: &str, exp: u64| json!({"tenant_id": tenant.to_string(), "aud": aud, "exp": exp});
    let none = {
        let t = token(&b);
        let payload = t.split('.').nth(1).unwrap().to_string();
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    let bad_tokens = [
        (
            "forged",
            signed(
                &claims(&b, AUDIENCE, now() + 600),
                b"some other secret, long enough!!",
            ),
        ),
        (
            "expired",
            signed(&claims(&b, AUDIENCE, now() - 3600), &key_of(&b)),
        ),
        ("alg none", none),
        (
            "wrong audience",
            signed(&claims(&b, "admin-api", now() + 600), &key_of(&b)),
        ),
        (
            "wrong tenant key",
            signed(&claims(&b, AUDIENCE, now() + 600), &key_of(&a)),
        ),
    ];
    let endpoints: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/plans", None),
        (Method::GET, "/projects", None),
        (
            Method::POST,
            "/projects",
            Some(json!({"id": 7, "name": "x", "plan_code": "free"})),
        ),
        (Method::GET, "/projects/3", None),
        (Method::PUT, "/projects/3", Some(json!({"name": "x"}))),
        (Method::DELETE, "/projects/3", None),
        (Method::GET, "/projects/3/tasks", None),
        (
            Method::POST,
            "/projects/3/tasks",
            Some(json!({"id": 8, "title": "x"})),
        ),
        (Method::GET, "/stats", None),
    ];
    for (what, tok) in &bad_tokens {
        for (method, uri, body) in &endpoints {
            let (status, _) = call(&app, method.clone(), uri, Some(tok), body.clone(), None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {method} {uri}");
        }
    }
    for (method, uri, body) in &endpoints {
        let (status, _) = call(&app, method.clone(), uri, None, body.clone(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no token: {method} {uri}");
    }
    assert_eq!(everything(&app, &b).await, before, "B's data changed");

    // With a header hint: A's token with B's id in the header is refused before any query.
    let hinted = app_with_hint().await;
    let b_id = b.to_string();
    for (method, uri, body) in &endpoints {
        let (status, _) = call(
            &hinted,
            method.clone(),
            uri,
            Some(&token(&a)),
            body.clone(),
            Some(("x-tenant-id", &b_id)),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "hint: {method} {uri}");
    }
    assert_eq!(everything(&app, &b).await, before, "B's data changed");
}

async fn app_with_hint() -> Router {
    app(TenantHint::header("x-tenant-id")).await
}
