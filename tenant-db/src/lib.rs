#![doc = include_str!("../../README.md")]
//!
//! # Crate map
//!
//! - [`TenantDb`] / [`TenantTx`]: the pool and one tenant transaction.
//! - [`TenantScope`]: the branded token queries are built from; [`Scoped`] (select),
//!   [`ScopedInsert`] (with upserts: [`ScopedStatement::on_conflict`]), [`ScopedUpdate`],
//!   [`ScopedDelete`], [`ScopedStatement`] (writes).
//! - [`TenantTable`], [`GlobalTable`] (derive them), [`TenantValues`] (derive it, or
//!   [`values!`]), [`NonTenantColumn`].
//! - [`exists`], [`ScopedSubquery`]: subqueries that stay in the scope.
//! - [`rls`]: the row-level-security SQL for a tenant table; [`roles`]: the owner and
//!   application roles.
//! - [`admin`]: audited admin and support access to a tenant.
//! - [`lifecycle`]: onboarding, export, import and deletion of one tenant.
//! - [`placement`]: pool, bridge and silo placements across servers, the directory, the
//!   router, and online moves.
//! - [`provision`]: roles, database and grants, idempotent.
//! - [`registry`]: the tables the derives declare, for migrations, the doctor and tools.
//! - [`doctor`]: audits a live database against these rules; [`redteam`]: attacks it as the
//!   application role.
//!
//! There are no optional features.

// The derives expand to `::tenant_db::…`; this lets the crate's own tests use them.
extern crate self as tenant_db;

pub mod admin;
pub mod context;
pub mod doctor;
mod error;
pub mod flight;
pub mod guard;
mod hint;
pub mod identity;
mod insert;
mod key;
pub mod lifecycle;
pub mod limits;
pub mod placement;
mod predicate;
mod probe;
pub mod provision;
mod query;
pub mod redteam;
pub mod registry;
pub mod rls;
pub mod roles;
mod run;
mod scope;
pub mod seal;
mod sealed;
pub mod session;
mod table;
mod tables;
pub mod telemetry;
mod tenant_id;
mod tx;
pub mod usage;
pub mod values;
mod write;

/// diesel, as tenant-db uses it (for `values!`).
pub use diesel;
pub use error::{Error, MixedTenants, Result};
pub use hint::UseTxScope;
pub use identity::{Provenance, Tenant, Verified};
pub use insert::{
    ConflictKey, DoNothing, DoUpdate, DoUpdateOf, Excluded, InsertOf, InsertRows, NoConflict,
    NoReturning, OnConflict, Returning, RowsOf, ScopedDoUpdate, ScopedInsert, ScopedOnConflict,
    Upsert, WithTenant, excluded,
};
pub use key::{KeyType, TenantValue};
pub use predicate::TenantEq;
pub use probe::{
    AndTenant, InScopeSource, List, ListExpr, OnlyScopedSubqueries, Paren, ScopeSafe, ScopedExists,
    ScopedScalar, ScopedSubquery, ScopedSubselect, UnscopedExpr, exists, list, scalar,
    unscoped_expr,
};
pub use query::{
    Applied, ApplyScope, ExistsFuture, ExistsQuery, FirstFuture, ScopeJoin, Scoped,
    ScopedJoinTarget, SourceKind, TenantAssign, TenantFilter,
};
pub use run::{LoadOne, LoadRows, Loads, RowStream, SqlKeyed, StreamFuture, Streamed};
pub use scope::TenantScope;
pub use seal::TENANT_SETTING;
pub use table::{
    Classified, ColumnNames, ColumnRole, DEFAULT_TENANT_COLUMN, GlobalTable, NonTenantColumn,
    TenantTable, assert_global, assert_tenant_field, kind, role,
};
pub use tenant_db_derive::{GlobalTable, TenantTable, TenantValues};
pub use tenant_id::{KeyKind, MAX_TEXT_KEY_LEN, ParseTenantIdError, TenantId};
pub use tx::{TenantDb, TenantDbBuilder, TenantTx, TxFn};
pub use values::{Assign, AssignOf, TenantValues, Values, assign};
pub use write::{
    ChangesetOf, DeleteOp, ExactlyOne, ExecuteFuture, ManyRows, Narrowed, ScopedDelete,
    ScopedStatement, ScopedUpdate, UpdateOp,
};

/// The usual imports: diesel's expression methods and `OptionalExtension`, tenant-db's types.
pub mod prelude {
    pub use crate::hint::PlainQueryHint as _;
    pub use crate::{
        GlobalTable, Tenant, TenantDb, TenantId, TenantScope, TenantTable, TenantTx, TenantValues,
    };
    pub use diesel::prelude::{
        BoolExpressionMethods, ExpressionMethods, JoinOnDsl, NullableExpressionMethods,
        OptionalExtension, PgTextExpressionMethods, SelectableHelper, TextExpressionMethods,
    };
}
