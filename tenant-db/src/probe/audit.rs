//! The second half of the scope check: expressions whose contents the type system cannot see.
//!
//! [`ScopeSafe`](super::ScopeSafe) checks an expression against a probe source, which refuses
//! every diesel subquery built outside the scope. Two kinds of expression pass any source by
//! construction, because their contents are not in their type: raw SQL text
//! (`diesel::dsl::sql`, `SqlLiteral`, `UncheckedBind`) and type-erased parts (a boxed select
//! used as a subquery, a union of boxed selects, a `Box<dyn BoxableExpression>`). diesel marks
//! exactly these, and nothing built only from typed nodes, as having no static query id; so
//! does an `eq_any` list (its SQL varies with the backend), for which [`list`](crate::list) is
//! the checked form.
//!
//! [`audit!`] asserts, when the code is compiled, that an expression type handed to a scoped
//! query has a static query id. It is a constant evaluated when the calling code is
//! instantiated: it fails `cargo build` and `cargo test` for any code that can run, but not
//! `cargo check`, which does not instantiate generic code. It sits in each public method, so
//! that the compiler's note names the caller's line. tenant-db's own nodes
//! ([`ScopedSubquery`](crate::ScopedSubquery), [`unscoped_expr`](crate::unscoped_expr), ...)
//! have a static query id and tell diesel not to cache a statement whose text can vary.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryId};

/// `audit!(Type)`: fails the build where `Type` (an expression handed to a scoped query) holds
/// something its type does not show. See the module docs.
macro_rules! audit {
    ($expr:ty) => {
        const {
            assert!(
                <$expr as ::diesel::query_builder::QueryId>::HAS_STATIC_QUERY_ID,
                "tenant-db cannot check this expression: it contains raw SQL \
                 (`diesel::dsl::sql`), a boxed query or boxed expression, or a list given to \
                 `eq_any`/`ne_all`. Build subqueries from the scope \
                 (`scope.query(table)...into_subquery()`), write lists as \
                 `col.eq_any(tenant_db::list(values))`, and mark deliberate raw SQL with \
                 `tenant_db::unscoped_expr(...)`. The expression's type is named below."
            )
        }
    };
}
pub(crate) use audit;

/// For tenant-db's nodes that wrap a part whose SQL can vary between values of one type (a
/// boxed query, raw text): tells diesel not to cache the statement by its type.
pub(crate) fn uncacheable_unless_static<Q: QueryId, DB: Backend>(out: &mut AstPass<'_, '_, DB>) {
    if !Q::HAS_STATIC_QUERY_ID {
        out.unsafe_to_cache_prepared();
    }
}
