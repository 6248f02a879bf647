//! Tenant keys in SQL: the column types a tenant column may have ([`KeyType`]), how the scope's
//! tenant is bound for each, and [`TenantValue`], the bound tenant as an expression.
//!
//! The derive reads the tenant column's SQL type; tenant-db binds the scope's [`TenantId`] as
//! that type, and only if it is of the matching [`KeyKind`]. A mismatch (a UUID tenant on a
//! table keyed by `bigint`, an integer tenant too large for an `integer` column) is refused
//! before anything is sent: no conversion between kinds, so a text key never matches the text
//! of a UUID or of a number.

use crate::guard::{Refusal, refused};
use crate::{KeyKind, TenantId, TenantTable};
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{QueryResult, sql_types};
use std::marker::PhantomData;

/// The SQL type of a tenant column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// `uuid`.
    Uuid,
    /// `bigint` (`int8`).
    BigInt,
    /// `integer` (`int4`): integer keys up to `i32::MAX`.
    Integer,
    /// `text` or `varchar` (diesel's `Text`).
    Text,
}

impl KeyType {
    /// The kind of [`TenantId`] this column holds.
    pub const fn kind(self) -> KeyKind {
        match self {
            KeyType::Uuid => KeyKind::Uuid,
            KeyType::BigInt | KeyType::Integer => KeyKind::Int,
            KeyType::Text => KeyKind::Text,
        }
    }

    /// The type's name in SQL.
    pub const fn sql_name(self) -> &'static str {
        match self {
            KeyType::Uuid => "uuid",
            KeyType::BigInt => "bigint",
            KeyType::Integer => "integer",
            KeyType::Text => "text",
        }
    }

    /// The type of a column as the catalogue names it (`format_type`: `uuid`, `bigint`,
    /// `integer`, `text`, `character varying(…)`), if it can be a tenant column.
    pub fn from_column_type(name: &str) -> Option<KeyType> {
        match name {
            "uuid" => Some(KeyType::Uuid),
            "bigint" => Some(KeyType::BigInt),
            "integer" => Some(KeyType::Integer),
            "text" | "character varying" => Some(KeyType::Text),
            _ if name.starts_with("character varying(") => Some(KeyType::Text),
            _ => None,
        }
    }

    /// The expression the isolation policy compares a column of this type with: the sealed
    /// tenant of this kind (see [`crate::seal`]), once per statement, cast to the column's
    /// type; NULL, which matches nothing, when the transaction has no tenant of this kind.
    pub const fn current_tenant_expr(self) -> &'static str {
        match self {
            KeyType::Uuid => "(SELECT tenant_db.current_tenant()::uuid)",
            KeyType::BigInt => "(SELECT tenant_db.current_tenant('int')::bigint)",
            KeyType::Integer => "(SELECT tenant_db.current_tenant('int')::integer)",
            KeyType::Text => "(SELECT tenant_db.current_tenant('text'))",
        }
    }

    /// Whether a tenant id fits a column of this type.
    pub fn accepts(self, tenant: &TenantId) -> bool {
        match self {
            KeyType::Integer => tenant.as_i64().is_some_and(|id| i32::try_from(id).is_ok()),
            _ => tenant.kind() == self.kind(),
        }
    }

    /// Binds `tenant` as a value of this type, or refuses the statement
    /// ([`Refusal::KeyType`]) if it is of another kind or out of the type's range.
    pub(crate) fn push_bind<'b>(
        self,
        tenant: &'b TenantId,
        out: &mut AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        let refusal = || {
            Err(refused(Refusal::KeyType {
                column: self,
                tenant: tenant.kind(),
            }))
        };
        if !self.accepts(tenant) {
            return refusal();
        }
        match (self, tenant.uuid_ref(), tenant.int_ref(), tenant.as_text()) {
            (KeyType::Uuid, Some(uuid), _, _) => {
                out.push_bind_param::<sql_types::Uuid, uuid::Uuid>(uuid)
            }
            // An `integer` column compares with and takes a `bigint` parameter; the range was
            // checked above.
            (KeyType::BigInt | KeyType::Integer, _, Some(id), _) => {
                out.push_bind_param::<sql_types::BigInt, i64>(id)
            }
            (KeyType::Text, _, _, Some(text)) => out.push_bind_param::<sql_types::Text, str>(text),
            // `accepts` said yes, so this is never reached; refused all the same.
            _ => refusal(),
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// The scope's tenant as a value of table `T`'s tenant column: what an `INSERT` writes into it.
pub struct TenantValue<T> {
    tenant: TenantId,
    table: PhantomData<T>,
}

impl<T> TenantValue<T> {
    pub(crate) fn new(tenant: TenantId) -> Self {
        TenantValue {
            tenant,
            table: PhantomData,
        }
    }
}

impl<T> Clone for TenantValue<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for TenantValue<T> {}

impl<T> std::fmt::Debug for TenantValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TenantValue").field(&self.tenant).finish()
    }
}

impl<T: TenantTable> Expression for TenantValue<T> {
    type SqlType = <T::TenantColumn as Expression>::SqlType;
}

impl<T: TenantTable> QueryFragment<Pg> for TenantValue<T> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        T::KEY_TYPE.push_bind(&self.tenant, &mut out)
    }
}

impl<T: 'static> QueryId for TenantValue<T> {
    type QueryId = TenantValue<T>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: TenantTable, QS> AppearsOnTable<QS> for TenantValue<T> {}
impl<T: TenantTable, QS> SelectableExpression<QS> for TenantValue<T> {}
impl<T: TenantTable, GB> ValidGrouping<GB> for TenantValue<T> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

#[cfg(test)]
mod tests {
    use super::KeyType;
    use crate::{KeyKind, TenantId};

    #[test]
    fn each_type_takes_only_its_kind() -> Result<(), crate::ParseTenantIdError> {
        let uuid: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse()?;
        let small = TenantId::from_i64(i64::from(i32::MAX))?;
        let large = TenantId::from_i64(i64::from(i32::MAX) + 1)?;
        let text = TenantId::from_text("7")?;
        let cases = [
            (KeyType::Uuid, [true, false, false, false]),
            (KeyType::BigInt, [false, true, true, false]),
            (KeyType::Integer, [false, true, false, false]),
            (KeyType::Text, [false, false, false, true]),
        ];
        for (ty, expected) in cases {
            let got = [uuid, small, large, text].map(|t| ty.accepts(&t));
            assert_eq!(got, expected, "{ty}");
        }
        assert_eq!(KeyType::Integer.kind(), KeyKind::Int);
        Ok(())
    }

    #[test]
    fn a_type_prints_as_its_sql_name() {
        let printed = [
            KeyType::Uuid,
            KeyType::BigInt,
            KeyType::Integer,
            KeyType::Text,
        ]
        .map(|ty| ty.to_string());
        assert_eq!(printed, ["uuid", "bigint", "integer", "text"]);
    }

    #[test]
    fn a_tenant_value_shows_its_tenant() -> Result<(), crate::ParseTenantIdError> {
        let value = super::TenantValue::<()>::new(TenantId::from_i64(42)?);
        assert_eq!(format!("{value:?}"), "TenantValue(TenantId(int:42))");
        Ok(())
    }

    #[test]
    fn catalogue_names() {
        for (name, ty) in [
            ("uuid", Some(KeyType::Uuid)),
            ("bigint", Some(KeyType::BigInt)),
            ("integer", Some(KeyType::Integer)),
            ("text", Some(KeyType::Text)),
            ("character varying", Some(KeyType::Text)),
            ("character varying(64)", Some(KeyType::Text)),
            ("character(8)", None),
            ("smallint", None),
            ("numeric", None),
            ("uuid[]", None),
        ] {
            assert_eq!(KeyType::from_column_type(name), ty, "{name}");
        }
    }
}
