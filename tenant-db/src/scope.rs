//! [`TenantScope`]: the branded token every tenant query is built from.

use crate::TenantId;
use crate::guard::{Refusal, Shape};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
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
    /// Where the transaction's tenant came from.
    provenance: crate::Provenance,
    brand: Brand<'t>,
    /// The first refusal of a part added to the query this copy of the scope belongs to (see
    /// [`crate::guard`]); the scope [`TenantTx::scope`](crate::TenantTx::scope) hands out has
    /// none.
    refused: Option<Refusal>,
}

impl<'t> TenantScope<'t> {
    pub(crate) fn new(tenant: TenantId, provenance: crate::Provenance) -> Self {
        TenantScope {
            tenant,
            provenance,
            brand: PhantomData,
            refused: None,
        }
    }

    /// This scope, with `part` (about to join a query built from it, as `shape`) checked.
    pub(crate) fn checked<E: QueryFragment<Pg>>(mut self, part: &E, shape: Shape) -> Self {
        if self.refused.is_none() {
            self.refused = crate::guard::check_part(part, shape);
        }
        self
    }

    /// This scope, with written `values` (about to join a statement built from it) checked.
    pub(crate) fn checked_values<T, W: crate::sealed::Writes<T>>(mut self, values: &W) -> Self {
        if self.refused.is_none() {
            self.refused = values.refusal();
        }
        self
    }

    /// Why a part of the query this copy belongs to was refused, if one was.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.refused
    }

    /// The tenant this scope acts for.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    /// Where the transaction's tenant came from.
    pub fn provenance(&self) -> crate::Provenance {
        self.provenance
    }

    pub(crate) fn brand(&self) -> Brand<'t> {
        self.brand
    }
}
