//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong in tenant-db.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A tenant id could not be parsed (it must be a UUID).
    #[error("invalid tenant id: {0}")]
    InvalidTenantId(#[from] crate::tenant_id::ParseTenantIdError),
    /// No connection could be taken from the pool (timeout, closed pool, connect failure).
    #[error("could not get a database connection: {0}")]
    Pool(String),
    /// The database rejected a statement, or a query failed.
    #[error("database error: {0}")]
    Query(diesel::result::Error),
    /// tenant-db refused to send a scoped statement (see [`guard`](crate::guard)).
    #[error(transparent)]
    Refused(crate::guard::RefusedStatement),
    /// A direct connection (not from the pool) could not be made.
    #[error("could not connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A [`RequestScope::strict`](crate::telemetry::RequestScope::strict) request tried to
    /// open a transaction for a second tenant.
    #[error(transparent)]
    MixedTenants(Box<MixedTenants>),
    /// The audit could not run as asked (an application role that does not exist, say).
    #[error("{0}")]
    Doctor(String),
    /// Two registrations of one table disagree (see [`crate::registry`]).
    #[error("{0}")]
    Registry(String),
    /// An admin grant was refused (see [`crate::admin`]).
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The red-team check could not run (see [`crate::redteam`]).
    #[error("{0}")]
    RedTeam(String),
    /// An export, import or deletion could not run, or found something wrong (see
    /// [`crate::lifecycle`]); nothing was committed.
    #[error("{0}")]
    Lifecycle(String),
    /// Provisioning could not run as asked (a database URL it cannot use, say).
    #[error("{0}")]
    Provision(String),
    /// The database refused the tenant because it is not placed there (it moved, or is moving
    /// in), or was frozen by a move while the transaction waited (see
    /// [`crate::placement`]). Nothing ran; retry the transaction: a
    /// [`Router`](crate::placement::Router) sends it to the tenant's placement.
    #[error("{0}")]
    Moved(String),
    /// A placement, the directory or a move could not be used as asked (see
    /// [`crate::placement`]).
    #[error(transparent)]
    Placement(#[from] crate::placement::PlacementError),
    /// The transaction did not commit although its closure returned `Ok`: its last statement,
    /// sent with `COMMIT` ([`TenantTx::last`](crate::TenantTx::last),
    /// [`TenantDb::single`](crate::TenantDb::single)), failed and the closure went on, or
    /// `COMMIT` failed, or the statement's future was dropped in flight (then whether it
    /// committed is not known, and the connection is closed).
    #[error("the transaction did not commit: {0}")]
    NotCommitted(&'static str),
    /// The tenant hit one of its tier's limits (see [`crate::limits`]): nothing ran.
    #[error(transparent)]
    Limited(Box<crate::limits::Limited>),
    /// A role, schema or database name (or other text) a SQL builder cannot put into SQL as
    /// given (see [`crate::rls::check_name`]).
    #[error(transparent)]
    Name(#[from] crate::rls::NameError),
    /// A context name or value was refused (see [`crate::context`]).
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        match err {
            diesel::result::Error::QueryBuilderError(inner) => {
                match inner.downcast::<crate::guard::RefusedStatement>() {
                    Ok(refused) => Error::Refused(*refused),
                    Err(other) => Error::Query(diesel::result::Error::QueryBuilderError(other)),
                }
            }
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                info,
            ) if info.message().starts_with(crate::placement::fence::REFUSAL) => {
                Error::Moved(info.message().to_string())
            }
            other => Error::Query(other),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Error::Pool(err.to_string())
    }
}

/// A request scope's second tenant (see [`Error::MixedTenants`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("this request already acted for tenant {first}; a transaction for {second} was refused")]
pub struct MixedTenants {
    /// The request's first tenant.
    pub first: crate::TenantId,
    /// The tenant refused.
    pub second: crate::TenantId,
}

/// `Result` with tenant-db's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
