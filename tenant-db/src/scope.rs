//! [`TenantScope`]: the branded token every tenant query is built from.

use crate::TenantId;
use std::marker::PhantomData;

/// An invariant lifetime brand: `'t` can be neither shortened nor lengthened, so values branded
/// by one transaction never type-check in another.
pub(crate) type Brand<'t> = PhantomData<fn(&'t ()) -> &'t ()>;

/// Proof that a tenant transaction is open, for one tenant, for the brand `'t`.
///
/// Users cannot construct it: tenant-db creates it when [`TenantDb::transaction`] opens a
/// transaction, and hands it out through [`TenantTx::scope`]. Everything built from it carries
/// `'t`, so it cannot be moved into a spawned task, stored in a `static`, returned from the
/// transaction closure, or executed in another tenant's transaction.
///
/// [`TenantDb::transaction`]: crate::TenantDb::transaction
/// [`TenantTx::scope`]: crate::TenantTx::scope
#[derive(Clone, Copy, Debug)]
pub struct TenantScope<'t> {
    tenant: TenantId,
    brand: Brand<'t>,
}

impl<'t> TenantScope<'t> {
    pub(crate) fn new(tenant: TenantId) -> Self {
        TenantScope {
            tenant,
            brand: PhantomData,
        }
    }

    /// The tenant this scope acts for.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    pub(crate) fn brand(&self) -> Brand<'t> {
        self.brand
    }
}
