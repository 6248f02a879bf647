//! Verified tenants: [`Tenant`], a [`TenantId`] with the proof of where it came from.
//!
//! A tenant id is only as trustworthy as its source. [`TenantDb::transaction`] takes a
//! [`Tenant`], and a `Tenant` exists only when one of tenant-db's doors produced it:
//!
//! - a verified token ([`TokenVerifier::verify`], [`Provenance::Token`]);
//! - a job envelope sealed under the tenant's key ([`envelope::open`],
//!   [`Provenance::JobEnvelope`]);
//! - an audited admin grant ([`crate::admin`], [`Provenance::Admin`]);
//! - [`Tenant::assume_verified`], the named escape hatch for trusted internal callers
//!   (a migration, a scheduled job that iterates over the tenant directory), greppable like
//!   `unscoped_*` ([`Provenance::Assumed`]).
//!
//! A [`TenantId`] parsed from a header, a body or a URL is a plain value: it cannot open a
//! transaction, and the compiler says where a `Tenant` comes from.
//!
//! [`TenantDb::transaction`]: crate::TenantDb::transaction

use crate::TenantId;

pub mod envelope;
mod keys;
mod token;

pub use keys::{KeyPurpose, MIN_MASTER_LEN, MasterKey, MasterKeyError};
pub use token::{
    DEFAULT_TENANT_CLAIM, MAX_LEEWAY, TokenAlgorithm, TokenError, TokenVerifier,
    TokenVerifierBuilder, VerifiedToken, VerifierConfigError, VerifyingKey,
};

/// A tenant whose identity was verified: what a transaction acts for.
///
/// ```
/// use tenant_db::{Provenance, Tenant, TenantId};
/// // A scheduled job that reads the tenant directory, a trusted internal caller:
/// let id: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse()?;
/// let tenant = Tenant::assume_verified(id);
/// assert_eq!((tenant.id(), tenant.provenance()), (id, Provenance::Assumed));
/// # Ok::<(), tenant_db::ParseTenantIdError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tenant {
    id: TenantId,
    provenance: Provenance,
}

/// Where a [`Tenant`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provenance {
    /// A token whose signature, expiry, issuer and audience were verified.
    Token,
    /// A job envelope whose MAC, under the tenant's own key, verified
    /// ([`envelope::open`]).
    JobEnvelope,
    /// [`Tenant::assume_verified`]: a trusted internal caller vouched for it.
    Assumed,
    /// An audited admin grant ([`TenantDb::admin_transaction`](crate::TenantDb::admin_transaction)).
    Admin,
}

impl Tenant {
    /// A tenant verified by one of tenant-db's doors.
    pub(crate) fn verified(id: TenantId, provenance: Provenance) -> Self {
        Tenant { id, provenance }
    }

    /// **Escape hatch.** Vouches for `id` without verifying it: for trusted internal callers
    /// only (migrations, jobs that iterate over your tenant directory, tests), never for an id
    /// that came with a request. Greppable, like `unscoped_*`; the tenant's
    /// [`provenance`](Tenant::provenance) says [`Provenance::Assumed`].
    pub fn assume_verified(id: TenantId) -> Self {
        Tenant {
            id,
            provenance: Provenance::Assumed,
        }
    }

    /// The tenant's id.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// Where this tenant came from.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }
}

impl AsRef<TenantId> for Tenant {
    fn as_ref(&self) -> &TenantId {
        &self.id
    }
}

impl AsRef<TenantId> for TenantId {
    fn as_ref(&self) -> &TenantId {
        self
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.id.fmt(f)
    }
}

/// What [`TenantDb::transaction`](crate::TenantDb::transaction) accepts as its tenant: a
/// [`Tenant`] (or a reference to one). Sealed: a [`TenantId`] or a string is not one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a verified tenant",
    label = "a transaction acts only for a verified `tenant_db::Tenant`",
    note = "verify the request's token with `tenant_db::identity::TokenVerifier::verify` and use \
            the `Tenant` it returns; for trusted \
            internal callers only (migrations, directory jobs, tests), \
            `tenant_db::Tenant::assume_verified(id)` is the named escape hatch"
)]
pub trait Verified: crate::sealed::VerifiedTenant {
    /// The verified tenant.
    fn tenant(&self) -> Tenant;
    /// The context sealed next to the tenant ([`Tenant::with_context`]), if any.
    fn context(&self) -> Option<&crate::context::Context> {
        None
    }
}

impl crate::sealed::VerifiedTenant for Tenant {}
impl crate::sealed::VerifiedTenant for &Tenant {}
impl Verified for Tenant {
    fn tenant(&self) -> Tenant {
        *self
    }
}
impl Verified for &Tenant {
    fn tenant(&self) -> Tenant {
        **self
    }
}

/// A tenant context: a verified [`Tenant`], or a transaction's [`TenantScope`](crate::TenantScope).
/// What tenant-db builds outside the database for one tenant (job envelopes, cache keys,
/// object paths, signed URLs) is built from one of these, never from a bare [`TenantId`].
/// Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenant context",
    label = "envelopes, cache keys and object paths are built from a verified tenant or a scope",
    note = "pass the request's `tenant_db::Tenant` (or `tx.scope()`), not a tenant id"
)]
pub trait TenantContext: crate::sealed::ContextTenant {
    /// The context's tenant.
    fn context_tenant(&self) -> TenantId;
    /// Where the context's tenant came from.
    fn context_provenance(&self) -> Provenance;
}

impl crate::sealed::ContextTenant for Tenant {}
impl crate::sealed::ContextTenant for crate::TenantScope<'_> {}
impl TenantContext for Tenant {
    fn context_tenant(&self) -> TenantId {
        self.id
    }
    fn context_provenance(&self) -> Provenance {
        self.provenance
    }
}
impl TenantContext for crate::TenantScope<'_> {
    fn context_tenant(&self) -> TenantId {
        self.tenant_id()
    }
    fn context_provenance(&self) -> Provenance {
        self.provenance()
    }
}

#[cfg(test)]
mod tests {
    use super::{Provenance, Tenant, Verified};
    use crate::TenantId;

    #[test]
    fn a_tenant_shows_its_id_and_has_no_context_of_its_own() -> Result<(), crate::ParseTenantIdError>
    {
        let id = TenantId::parse_int("42")?;
        let tenant = Tenant::assume_verified(id);
        assert_eq!(tenant.to_string(), id.to_string());
        assert_eq!(tenant.to_string(), "42");
        assert_eq!(tenant.provenance(), Provenance::Assumed);
        assert!(Verified::context(&tenant).is_none());
        assert!(Verified::context(&&tenant).is_none());
        Ok(())
    }
}
