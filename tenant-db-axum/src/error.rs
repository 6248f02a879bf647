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
/// | serialization failure or deadlock | 409, `Retry-After: 1` |
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
