//! The per-request middleware: a span that carries the tenant, and the one-tenant check.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tenant_db::telemetry::RequestScope;
use tracing::Instrument;

/// Middleware (`axum::middleware::from_fn(request_scope)`): runs the request in a span
/// `http.request` (method, path, status, and the tenant the extractor verified) and in a
/// [`RequestScope`]: a handler that opens transactions for two tenants is flagged (a `WARN`
/// event and a counter).
pub async fn request_scope(request: Request, next: Next) -> Response {
    run(RequestScope::new(), request, next).await
}

/// Like [`request_scope`], but the second tenant's transaction is refused
/// ([`tenant_db::Error::MixedTenants`], answered 500).
pub async fn strict_request_scope(request: Request, next: Next) -> Response {
    run(RequestScope::strict(), request, next).await
}

async fn run(scope: RequestScope, request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        path = %request.uri().path(),
        tenant_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let recorded = span.clone();
    let response = scope.run(next.run(request)).instrument(span).await;
    recorded.record("status", response.status().as_u16());
    response
}
