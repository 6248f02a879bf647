//! The HTTP edge of [tenant-db] for [axum]: the verified tenant is an extractor, tenant-db's
//! errors are responses, and each request runs in a span that carries its tenant.
//!
//! ```no_run
//! use axum::extract::{Path, State};
//! use axum::{Json, Router, routing::get};
//! use tenant_db::identity::{MasterKey, TokenVerifier, VerifyingKey};
//! use tenant_db::{KeyKind, TenantDb};
//! use tenant_db_axum::{Authenticated, HttpError, TenantAuth, TenantHint};
//!
//! # diesel::table! { notes (tenant_id, id) { tenant_id -> Uuid, id -> BigInt, body -> Text, } }
//! # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
//! # #[diesel(table_name = notes)]
//! # struct Note { tenant_id: uuid::Uuid, id: i64, body: String }
//! #[derive(Clone, axum::extract::FromRef)]
//! struct App { db: TenantDb, auth: TenantAuth }
//!
//! // One endpoint: the tenant comes from the verified token, the query from its scope.
//! async fn note(State(db): State<TenantDb>, auth: Authenticated, Path(id): Path<i64>)
//!     -> Result<Json<String>, HttpError> {
//!     use tenant_db::prelude::*;
//!     Ok(Json(db.transaction(auth.tenant(), async |mut tx| {
//!         let s = tx.scope();
//!         Ok::<_, tenant_db::Error>(
//!             s.query(notes::table).filter(notes::id.eq(id)).select(notes::body).first(&mut tx).await?)
//!     }).await?))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = TokenVerifier::builder(KeyKind::Uuid)
//!     .key(VerifyingKey::per_tenant(MasterKey::new(&[7; 32])?))
//!     .audience("notes")
//!     .build()?;
//! let app = App {
//!     db: TenantDb::connect("postgres://app@127.0.0.1/notes", 8)?,
//!     auth: TenantAuth::new(verifier).hint(TenantHint::header("x-tenant-id")),
//! };
//! let router: Router = Router::new()
//!     .route("/notes/{id}", get(note))
//!     .layer(axum::middleware::from_fn(tenant_db_axum::request_scope))
//!     .with_state(app);
//! # let _ = router; Ok(()) }
//! ```
//!
//! **Why the transaction is per handler, not a middleware.** A tenant transaction is a closure
//! whose scope is branded with the transaction's lifetime: nothing built from it can outlive the
//! closure, which is what makes a query for the wrong tenant impossible to write. A middleware
//! would have to hand the transaction to the handler through request extensions, which are
//! `'static`: the brand could not cross. So the middleware does what can be done per request
//! (the span, the one-tenant-per-request check), the extractor verifies the tenant, and the
//! handler opens its transaction in one line.
//!
//! [tenant-db]: tenant_db
//! [axum]: axum

mod auth;
mod error;
mod hint;
mod request;

pub use auth::{AuthRejection, Authenticated, TenantAuth};
pub use error::HttpError;
pub use hint::TenantHint;
pub use request::{request_scope, strict_request_scope};

/// A `Retry-After` value: whole seconds, rounded up, at least 1.
fn retry_after(wait: std::time::Duration) -> axum::http::HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    axum::http::HeaderValue::from(seconds.max(1))
}
