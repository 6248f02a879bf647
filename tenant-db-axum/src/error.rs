//! [`HttpError`]: tenant-db's errors as HTTP responses that reveal nothing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// A handler's error: tenant-db's [`Error`](tenant_db::Error) (`?` converts it), answered
/// with a status and a one-word body. The error itself is logged, never sent: no SQL, no
/// constraint names, nothing about another tenant's rows.
///
/// | error | status |
/// |---|---|
/// | no row (`NotFound`) | 404 |
/// | serialization failure (`SerializationFailure`) | 409, `Retry-After: 1` |
/// | no connection (pool exhausted, database down) | 503, `Retry-After: 1` |
/// | a tenant limit (`Limited`: rate, pool share) | 429, `Retry-After` as the limit says |
/// | anything else | 500 |
#[derive(Debug)]
pub struct HttpError(pub tenant_db::Error);

impl From<tenant_db::Error> for HttpError {
    fn from(err: tenant_db::Error) -> Self {
        HttpError(err)
    }
}

impl From<DieselError> for HttpError {
    fn from(err: DieselError) -> Self {
        HttpError(err.into())
    }
}

impl HttpError {
    /// The status this error is answered with, and whether the client may retry.
    pub fn status(&self) -> (StatusCode, bool) {
        match &self.0 {
            tenant_db::Error::Query(DieselError::NotFound) => (StatusCode::NOT_FOUND, false),
            tenant_db::Error::Query(DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                _,
            )) => (StatusCode::CONFLICT, true),
            tenant_db::Error::Pool(_) => (StatusCode::SERVICE_UNAVAILABLE, true),
            tenant_db::Error::Limited(_) => (StatusCode::TOO_MANY_REQUESTS, true),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, false),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, retry) = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, status = status.as_u16(), "request failed");
        } else {
            tracing::info!(error = %self.0, status = status.as_u16(), "request failed");
        }
        let word = match status {
            StatusCode::NOT_FOUND => "not found",
            StatusCode::CONFLICT => "conflict, retry",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable, retry",
            StatusCode::TOO_MANY_REQUESTS => "too many requests, retry",
            _ => "internal error",
        };
        let mut response =
            (status, serde_json::json!({ "error": word }).to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let tenant_db::Error::Limited(limited) = &self.0 {
            headers.insert(
                header::RETRY_AFTER,
                crate::retry_after(limited.retry_after()),
            );
        } else if retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Status, body and `Retry-After` of `err` as a response.
    async fn answer(err: tenant_db::Error) -> (StatusCode, String, Option<String>) {
        let response = HttpError(err).into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        (status, body, retry)
    }

    #[tokio::test]
    async fn each_error_has_its_status_word_and_retry() {
        let tenant = tenant_db::TenantId::new_random();
        let cases = [
            (
                tenant_db::Error::Query(DieselError::NotFound),
                StatusCode::NOT_FOUND,
                "not found",
                None,
            ),
            (
                tenant_db::Error::Query(DieselError::DatabaseError(
                    DatabaseErrorKind::SerializationFailure,
                    Box::new(String::from("could not serialize access to tenant globex")),
                )),
                StatusCode::CONFLICT,
                "conflict, retry",
                Some("1"),
            ),
            (
                tenant_db::Error::Pool(String::from("timed out")),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable, retry",
                Some("1"),
            ),
            (
                tenant_db::Error::Limited(Box::new(tenant_db::limits::Limited::Rate {
                    tenant,
                    tier: String::from("free"),
                    retry_after: std::time::Duration::from_secs(7),
                })),
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests, retry",
                Some("7"),
            ),
            (
                tenant_db::Error::Doctor(String::from("SELECT secret FROM globex")),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                None,
            ),
        ];
        for (err, status, word, retry) in cases {
            let what = format!("{err:?}");
            let (s, body, r) = answer(err).await;
            assert_eq!(
                (s, body, r.as_deref()),
                (status, format!(r#"{{"error":"{word}"}}"#), retry),
                "{what}"
            );
        }
    }
}
