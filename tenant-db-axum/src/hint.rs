//! [`TenantHint`]: where a request says which tenant it is for, besides its token.

use axum::http::HeaderName;
use axum::http::request::Parts;

/// Where a request names its tenant besides the token (a header, the subdomain, a path
/// segment). When one is configured, it must name the token's tenant: a request whose hint is
/// missing or names another tenant is refused with 403.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantHint {
    /// No hint: the token alone names the tenant.
    #[default]
    None,
    /// A header, such as `X-Tenant-Id`.
    Header(HeaderName),
    /// The first label of the `Host` header under `base_domain` (`acme.example.com` under
    /// `example.com`).
    Subdomain {
        /// The domain tenants are subdomains of.
        base_domain: String,
    },
    /// The path segment at this index (`/t/{tenant}/…` is index 1).
    PathSegment(usize),
}

impl TenantHint {
    /// A header hint; a name that is not a valid header name gives a hint no request has, so
    /// every request is refused (fail closed).
    pub fn header(name: &str) -> Self {
        match HeaderName::try_from(name) {
            Ok(name) => TenantHint::Header(name),
            Err(_) => TenantHint::Header(HeaderName::from_static("x-tenant-db-invalid-hint")),
        }
    }

    /// The hint's value in this request: `None` when no hint is configured, `Some(None)` when
    /// one is configured and the request lacks it.
    pub(crate) fn read(&self, parts: &Parts) -> Option<Option<String>> {
        match self {
            TenantHint::None => None,
            TenantHint::Header(name) => Some(
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            ),
            TenantHint::Subdomain { base_domain } => Some(
                parts
                    .headers
                    .get(axum::http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|host| {
                        let host = host.split(':').next().unwrap_or(host);
                        let label = host.strip_suffix(base_domain.as_str())?.strip_suffix('.')?;
                        (!label.is_empty() && !label.contains('.')).then(|| label.to_string())
                    }),
            ),
            TenantHint::PathSegment(index) => Some(
                parts
                    .uri
                    .path()
                    .split('/')
                    .nth(index + 1)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TenantHint;

    fn read(hint: &TenantHint, host: &str, path: &str) -> Option<Option<String>> {
        let request = axum::http::Request::builder()
            .uri(path)
            .header(axum::http::header::HOST, host)
            .body(())
            .map(|r| r.into_parts().0);
        request.ok().and_then(|parts| hint.read(&parts))
    }

    #[test]
    fn a_subdomain_hint_is_one_label_under_the_base_domain() {
        let hint = TenantHint::Subdomain {
            base_domain: "example.com".into(),
        };
        let cases = [
            ("acme.example.com", Some("acme")),
            ("acme.example.com:8443", Some("acme")),
            // Two labels, none, or another domain: no hint.
            ("eu.acme.example.com", None),
            (".example.com", None),
            ("example.com", None),
            ("acme.example.org", None),
            ("acmeexample.com", None),
        ];
        for (host, want) in cases {
            assert_eq!(
                read(&hint, host, "/"),
                Some(want.map(str::to_string)),
                "{host}"
            );
        }
        assert_eq!(
            read(&TenantHint::PathSegment(1), "x", "/t/acme/items"),
            Some(Some("acme".into()))
        );
        assert_eq!(
            read(&TenantHint::PathSegment(1), "x", "/t//items"),
            Some(None)
        );
        assert_eq!(read(&TenantHint::None, "acme.example.com", "/"), None);
    }
}
