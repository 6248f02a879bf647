//! [`Authenticated`]: the extractor that verifies the request's token and yields its tenant.

use crate::TenantHint;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::sync::Arc;
use tenant_db::identity::{TokenError, TokenVerifier, VerifiedToken};
use tenant_db::limits::{LimitCheckError, Limited, RateLimit};
use tenant_db::{Tenant, TenantId};

/// The edge's configuration: the token verifier, and the tenant hint requests must agree with.
/// Put it in your router state and expose it with `FromRef`.
#[derive(Debug, Clone)]
pub struct TenantAuth {
    verifier: Arc<TokenVerifier>,
    hint: TenantHint,
    limiter: Option<Arc<dyn RateLimit>>,
}

impl TenantAuth {
    /// Requests are authenticated with `verifier`, without a hint.
    pub fn new(verifier: TokenVerifier) -> Self {
        TenantAuth {
            verifier: Arc::new(verifier),
            hint: TenantHint::None,
            limiter: None,
        }
    }

    /// Each authenticated request counts against its tenant's rate (`tenant_db_limits`'
    /// `LocalLimiter` or `RedisLimiter`): over it, 429 with `Retry-After`; a limiter that
    /// cannot answer, 503.
    pub fn limit(mut self, limiter: Arc<dyn RateLimit>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Requests must also name their tenant this way, and agree with the token.
    pub fn hint(mut self, hint: TenantHint) -> Self {
        self.hint = hint;
        self
    }
}

/// A request whose bearer token was verified: its tenant, and the token's claims.
#[derive(Debug, Clone)]
pub struct Authenticated {
    token: VerifiedToken,
}

impl Authenticated {
    /// The verified tenant, for [`TenantDb::transaction`](tenant_db::TenantDb::transaction).
    pub fn tenant(&self) -> Tenant {
        self.token.tenant()
    }

    /// The token's claims (`sub`, roles, …).
    pub fn claims(&self) -> &Map<String, Value> {
        self.token.claims()
    }
}

/// Why a request was not authenticated. The response says only the category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No `Authorization: Bearer …` header: 401.
    #[error("no bearer token")]
    MissingToken,
    /// The token was refused (malformed, expired, badly signed, wrong issuer or audience): 401.
    #[error("{0}")]
    InvalidToken(TokenError),
    /// The token names no valid tenant: 403.
    #[error("{0}")]
    NoTenant(TokenError),
    /// The request's tenant hint is missing or names another tenant than the token: 403.
    #[error("the request's tenant hint does not name the token's tenant")]
    TenantMismatch,
    /// The tenant is over its tier's request rate: 429 with `Retry-After`.
    #[error(transparent)]
    Limited(Limited),
    /// The rate limiter could not answer: 503 with `Retry-After: 1`.
    #[error("{0}")]
    LimiterUnavailable(String),
}

impl AuthRejection {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRejection::MissingToken | AuthRejection::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            AuthRejection::NoTenant(_) | AuthRejection::TenantMismatch => StatusCode::FORBIDDEN,
            AuthRejection::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthRejection::LimiterUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::info!(rejection = ?self, status = status.as_u16(), "request not authenticated");
        let word = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::TOO_MANY_REQUESTS => "too many requests, retry",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable, retry",
            _ => "forbidden",
        };
        let body = serde_json::json!({ "error": word });
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        match &self {
            AuthRejection::Limited(limited) => {
                headers.insert(
                    header::RETRY_AFTER,
                    crate::retry_after(limited.retry_after()),
                );
            }
            AuthRejection::LimiterUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    TenantAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = TenantAuth::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthRejection::MissingToken)?
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(AuthRejection::InvalidToken(TokenError::Malformed))?;
        let token = auth.verifier.verify(token).map_err(|e| match e {
            TokenError::MissingTenantClaim | TokenError::InvalidTenantClaim(_) => {
                AuthRejection::NoTenant(e)
            }
            other => AuthRejection::InvalidToken(other),
        })?;
        let tenant = token.tenant().id();
        if let Some(hint) = auth.hint.read(parts) {
            let agrees = hint
                .and_then(|h| TenantId::parse_as(tenant.kind(), &h).ok())
                .is_some_and(|h| h == tenant);
            if !agrees {
                return Err(AuthRejection::TenantMismatch);
            }
        }
        if let Some(limiter) = &auth.limiter {
            limiter.check(&tenant).await.map_err(|e| match e {
                LimitCheckError::Limited(limited) => AuthRejection::Limited(limited),
                other => AuthRejection::LimiterUnavailable(other.to_string()),
            })?;
        }
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant));
        Ok(Authenticated { token })
    }
}

#[cfg(test)]
mod tests {
    use super::AuthRejection;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    #[test]
    fn rejections_that_may_be_retried_say_when() {
        let limited = tenant_db::limits::Limited::Rate {
            tenant: tenant_db::TenantId::new_random(),
            tier: String::from("free"),
            retry_after: std::time::Duration::from_secs(3),
        };
        let cases = [
            (AuthRejection::MissingToken, StatusCode::UNAUTHORIZED, None),
            (AuthRejection::TenantMismatch, StatusCode::FORBIDDEN, None),
            (
                AuthRejection::Limited(limited),
                StatusCode::TOO_MANY_REQUESTS,
                Some("3"),
            ),
            (
                AuthRejection::LimiterUnavailable(String::from("no answer from Redis")),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("1"),
            ),
        ];
        for (rejection, status, retry) in cases {
            let what = format!("{rejection:?}");
            let response = rejection.into_response();
            let got = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok());
            assert_eq!((response.status(), got), (status, retry), "{what}");
        }
    }
}
