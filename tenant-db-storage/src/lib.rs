//! Tenant-scoped object storage over [`object_store`].
//!
//! - [`TenantPath`] is built only from a tenant context (a verified
//!   [`Tenant`](tenant_db::Tenant) or a transaction's scope): `tenants/<kind>/<tenant>/<relative>`.
//!   The relative part is refused if it could leave that prefix or mean something else than it
//!   shows: `..` and `.`, empty segments, an absolute path, backslashes, `%` (percent-encoded
//!   separators), control characters, and Unicode characters that look like a slash.
//! - [`TenantStore`] reads, writes, deletes and lists only such paths (a listing never leaves
//!   the tenant's prefix).
//! - [`UrlSigner`] signs `(method, path, expiry)` with HMAC-SHA256 under the tenant's own key
//!   ([`KeyPurpose::SignedUrl`]), and verifies a URL against the tenant its path names: another
//!   tenant's path, a changed path, method or expiry, and an expired URL are refused.

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenant_db::identity::{KeyPurpose, MasterKey, TenantContext};
use tenant_db::{KeyKind, TenantId};

/// The root of every tenant's objects.
pub const ROOT: &str = "tenants";

/// The longest relative path accepted, in bytes.
pub const MAX_RELATIVE_LEN: usize = 1024;

/// Why a relative path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty, or an empty segment (`a//b`, a trailing `/`).
    #[error("the path is empty or has an empty segment")]
    EmptySegment,
    /// Starts with `/`.
    #[error("the path is absolute")]
    Absolute,
    /// A `.` or `..` segment.
    #[error("the path has a `.` or `..` segment")]
    DotSegment,
    /// A character that is, encodes or looks like a separator, or a control character.
    #[error("the path has a forbidden character at byte {0}")]
    ForbiddenCharacter(usize),
    /// Longer than [`MAX_RELATIVE_LEN`].
    #[error("the path is too long")]
    TooLong,
}

/// Characters that look like a path separator.
const LOOKALIKE_SLASHES: &[char] = &[
    '\u{2215}', '\u{2044}', '\u{FF0F}', '\u{29F8}', '\u{29F9}', '\u{FE68}', '\u{FF3C}', '\u{2216}',
    '\u{1735}', '\u{2571}', '\u{2572}', '\u{27CB}', '\u{27CD}', '\u{3033}',
];

fn check_relative(relative: &str) -> Result<(), PathError> {
    if relative.len() > MAX_RELATIVE_LEN {
        return Err(PathError::TooLong);
    }
    if relative.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if let Some((at, _)) = relative
        .char_indices()
        .find(|(_, c)| matches!(c, '\\' | '%') || c.is_control() || LOOKALIKE_SLASHES.contains(c))
    {
        return Err(PathError::ForbiddenCharacter(at));
    }
    for segment in relative.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// An object path of one tenant: `tenants/<kind>/<tenant>/<relative>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantPath {
    tenant: TenantId,
    path: Path,
    /// Made in an admin transaction: it may be used there, never signed to outlive it.
    admin: bool,
}

impl TenantPath {
    /// The object `relative` (`reports/2026/q3.csv`) of the context's tenant.
    pub fn new<C: TenantContext + ?Sized>(context: &C, relative: &str) -> Result<Self, PathError> {
        let mut path = Self::of(context.context_tenant(), relative)?;
        path.admin = context.context_provenance() == tenant_db::Provenance::Admin;
        Ok(path)
    }

    fn of(tenant: TenantId, relative: &str) -> Result<Self, PathError> {
        check_relative(relative)?;
        let rendered = format!("{}/{}", tenant_root(&tenant), relative);
        let path = Path::parse(&rendered).map_err(|_| PathError::ForbiddenCharacter(0))?;
        if path.as_ref() != rendered {
            return Err(PathError::ForbiddenCharacter(0));
        }
        Ok(TenantPath {
            tenant,
            path,
            admin: false,
        })
    }

    /// The tenant this path belongs to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The full object path.
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

/// `tenants/<kind>/<tenant>`.
fn tenant_root(tenant: &TenantId) -> String {
    format!("{ROOT}/{}/{tenant}", tenant.kind().name())
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The store failed (not found, permissions, I/O).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A relative path was refused.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// An object store that only takes [`TenantPath`]s.
#[derive(Debug, Clone)]
pub struct TenantStore {
    inner: Arc<dyn ObjectStore>,
}

impl TenantStore {
    /// Wraps `store` (S3, GCS, Azure, local files, memory).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        TenantStore { inner: store }
    }

    /// Writes `bytes` at `path`.
    pub async fn put(&self, path: &TenantPath, bytes: Bytes) -> Result<(), StorageError> {
        self.inner.put(&path.path, bytes.into()).await?;
        Ok(())
    }

    /// Reads the object at `path`.
    pub async fn get(&self, path: &TenantPath) -> Result<Bytes, StorageError> {
        Ok(self.inner.get(&path.path).await?.bytes().await?)
    }

    /// Deletes the object at `path`.
    pub async fn delete(&self, path: &TenantPath) -> Result<(), StorageError> {
        self.inner.delete(&path.path).await?;
        Ok(())
    }

    /// The context's objects under `prefix` (`""` for all of them).
    pub async fn list<C: TenantContext + ?Sized>(
        &self,
        context: &C,
        prefix: &str,
    ) -> Result<Vec<TenantPath>, StorageError> {
        let tenant = context.context_tenant();
        let root = tenant_root(&tenant);
        let under = if prefix.is_empty() {
            Path::parse(&root).map_err(|_| PathError::ForbiddenCharacter(0))?
        } else {
            TenantPath::of(tenant, prefix)?.path
        };
        let metas: Vec<_> = self.inner.list(Some(&under)).try_collect().await?;
        let mut out = Vec::new();
        for meta in metas {
            let full = meta.location.as_ref();
            // The store lists by prefix; keep exactly this tenant's objects.
            if let Some(relative) = full.strip_prefix(&format!("{root}/")) {
                out.push(TenantPath::of(tenant, relative)?);
            }
        }
        Ok(out)
    }
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedUrlError {
    /// The path is not a tenant object path.
    #[error("not a tenant object path")]
    BadPath,
    /// The signature does not verify (another tenant's path, or a changed path, method or
    /// expiry).
    #[error("the URL's signature does not verify")]
    BadSignature,
    /// The URL has expired.
    #[error("the URL has expired")]
    Expired,
    /// Asked to sign a path made in an admin transaction.
    #[error("a path made in an admin transaction is not signed: the URL would outlive the grant")]
    AdminContext,
}

/// Signs and verifies URLs to tenant objects, under each tenant's own key.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    master: MasterKey,
}

/// The parts of a signed URL: put them in the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Seconds since the epoch after which the URL is refused.
    pub expires: u64,
    /// The signature, lower-case hex.
    pub sig: String,
}

impl UrlSigner {
    /// A signer whose per-tenant keys derive from `master`.
    pub fn new(master: MasterKey) -> Self {
        UrlSigner { master }
    }

    /// Signs `method` on `path` until `ttl` from now. Refused for a path made in an admin
    /// transaction ([`SignedUrlError::AdminContext`]): the URL would outlive the grant and its
    /// audit.
    pub fn sign(
        &self,
        method: &str,
        path: &TenantPath,
        ttl: Duration,
    ) -> Result<Signature, SignedUrlError> {
        if path.admin {
            return Err(SignedUrlError::AdminContext);
        }
        let expires = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_add(ttl.as_secs());
        let sig = self.master.sign(
            &path.tenant,
            KeyPurpose::SignedUrl,
            &parts(method, path.path.as_ref(), &expires.to_be_bytes()),
        );
        Ok(Signature { expires, sig })
    }

    /// Verifies a request for `method` on `path` (as it appears in the URL, `tenants/…`) with
    /// `signature`; returns the tenant path it may access.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        signature: &Signature,
    ) -> Result<TenantPath, SignedUrlError> {
        let mut segments = path.splitn(4, '/');
        let (Some(ROOT), Some(kind), Some(id), Some(relative)) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(SignedUrlError::BadPath);
        };
        let kind = KeyKind::from_name(kind).ok_or(SignedUrlError::BadPath)?;
        let tenant = TenantId::parse_as(kind, id).map_err(|_| SignedUrlError::BadPath)?;
        let object = TenantPath::of(tenant, relative).map_err(|_| SignedUrlError::BadPath)?;
        if object.path.as_ref() != path {
            return Err(SignedUrlError::BadPath);
        }
        let expires = signature.expires.to_be_bytes();
        if !self.master.verify(
            &tenant,
            KeyPurpose::SignedUrl,
            &parts(method, path, &expires),
            &signature.sig,
        ) {
            return Err(SignedUrlError::BadSignature);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        if now >= signature.expires {
            return Err(SignedUrlError::Expired);
        }
        Ok(object)
    }
}

/// What a URL's signature covers.
fn parts<'a>(method: &'a str, path: &'a str, expires: &'a [u8; 8]) -> [&'a [u8]; 4] {
    [
        b"tenant-db signed url v1",
        method.as_bytes(),
        path.as_bytes(),
        expires,
    ]
}
