//! Further transaction-local context next to the tenant (the user a request acts for, say),
//! sealed like the tenant: set in the transaction's first message only, read by policies
//! through `tenant_db.context('<name>')`, gone when the transaction ends.
//!
//! ```no_run
//! # include!("../doctest_schema.rs");
//! # async fn demo(db: tenant_db::TenantDb, tenant: tenant_db::Tenant, user_id: i64) -> Result<(), Box<dyn std::error::Error>> {
//! use tenant_db::context::Context;
//! // `user_id` comes from the same verified token as `tenant`.
//! let context = Context::new().set("user", user_id.to_string())?;
//! db.transaction(tenant.with_context(&context), async |mut tx| {
//!     // Policies made with `rls::context_policy_sql` see user `user_id`, whatever
//!     // this closure sets with `set_config` or `SET LOCAL`.
//!     Ok::<_, tenant_db::Error>(())
//! })
//! .await?;
//! # Ok(()) }
//! # fn main() {}
//! ```
//!
//! # How it is sealed
//!
//! Each value lives in a setting whose name is built from the same secret as the tenant's
//! ([`crate::seal`]): `tenant_db.s<secret>_c_<name>`. `tenant_db.enter_context(names,
//! values)` (`SECURITY DEFINER`) sets them, only in the first message of a transaction and only
//! after `tenant_db.enter`; tenant-db sends it in that message, after `enter`. The reader,
//! `tenant_db.context(name)`, returns NULL in the first message (as `current_tenant` does) and
//! when the value is unset, so a policy comparing a column with it matches nothing then: a
//! transaction opened without the context sees no rows of a table that requires it. Each value
//! is also copied to `app.<name>`, for logs; no policy should trust that copy.
//!
//! Values are set by the service, from what it verified (a token's subject, say): the seal
//! keeps code inside the transaction from changing them, not a service from choosing them.

use crate::{Tenant, TenantId};

/// The longest context name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// The longest context value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// Why a context name or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A name must be 1 to 32 of `a-z`, `0-9`, `_`, starting with a letter, and not
    /// `current_tenant`.
    #[error(
        "context name {0:?} is not 1 to {MAX_NAME_LEN} of a-z, 0-9 and _ starting with a letter \
         (and not current_tenant)"
    )]
    Name(String),
    /// A value is never empty (empty reads as unset).
    #[error("the value of context {0:?} is empty")]
    Empty(String),
    /// PostgreSQL text cannot hold a NUL character.
    #[error("the value of context {0:?} contains a NUL character")]
    Nul(String),
    /// A value is at most [`MAX_VALUE_LEN`] bytes.
    #[error("the value of context {0:?} is longer than {MAX_VALUE_LEN} bytes")]
    TooLong(String),
    /// Each name is set once.
    #[error("context {0:?} is set twice")]
    Repeated(String),
}

/// Checks a context name (see [`ContextError::Name`]).
pub fn check_name(name: &str) -> Result<(), ContextError> {
    let bytes = name.as_bytes();
    let shaped = matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
    if shaped && name != "current_tenant" {
        Ok(())
    } else {
        Err(ContextError::Name(name.to_string()))
    }
}

/// Named values sealed into a transaction next to its tenant (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    values: Vec<(String, String)>,
}

impl Context {
    /// No values.
    pub fn new() -> Self {
        Context::default()
    }

    /// Adds `name = value`: the name checked by [`check_name`], the value non-empty, without
    /// NUL, at most [`MAX_VALUE_LEN`] bytes; each name once.
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Result<Self, ContextError> {
        check_name(name)?;
        let value = value.into();
        let refused: Option<fn(String) -> ContextError> = if value.is_empty() {
            Some(ContextError::Empty)
        } else if value.contains('\0') {
            Some(ContextError::Nul)
        } else if value.len() > MAX_VALUE_LEN {
            Some(ContextError::TooLong)
        } else if self.get(name).is_some() {
            Some(ContextError::Repeated)
        } else {
            None
        };
        if let Some(error) = refused {
            return Err(error(name.to_string()));
        }
        self.values.push((name.to_string(), value));
        Ok(self)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The statement that seals the values, for the first message after `enter` (`None` when
    /// there are none).
    pub(crate) fn enter_sql(&self) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        let array = |items: &mut dyn Iterator<Item = &String>| {
            items
                .map(|s| crate::rls::quote_literal(s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(format!(
            "SELECT tenant_db.enter_context(ARRAY[{}]::text[], ARRAY[{}]::text[])",
            array(&mut self.values.iter().map(|(n, _)| n)),
            array(&mut self.values.iter().map(|(_, v)| v)),
        ))
    }
}

/// A verified tenant with a [`Context`]: what [`Tenant::with_context`] returns, accepted
/// wherever a [`Tenant`] opens a transaction.
#[derive(Debug, Clone, Copy)]
pub struct InContext<'c> {
    tenant: Tenant,
    context: &'c Context,
}

impl Tenant {
    /// This tenant with `context` sealed into its transactions (see [`crate::context`]).
    pub fn with_context(self, context: &Context) -> InContext<'_> {
        InContext {
            tenant: self,
            context,
        }
    }
}

impl InContext<'_> {
    /// The tenant's id.
    pub fn id(&self) -> TenantId {
        self.tenant.id()
    }
}

impl crate::sealed::VerifiedTenant for InContext<'_> {}
impl crate::Verified for InContext<'_> {
    fn tenant(&self) -> Tenant {
        self.tenant
    }
    fn context(&self) -> Option<&Context> {
        Some(self.context)
    }
}

/// The `tenant_db` functions that seal and read context values (part of
/// [`seal::setup_sql`](crate::seal::setup_sql)).
pub(crate) fn setup_sql() -> String {
    let name = crate::seal::secret_name("'c_' OPERATOR(pg_catalog.||) names[i]");
    let read = crate::seal::secret_name("'c_' OPERATOR(pg_catalog.||) name");
    format!(
        r#"CREATE OR REPLACE FUNCTION tenant_db.enter_context(names text[], vals text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $tenant_db$
BEGIN
    IF pg_catalog.statement_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.transaction_timestamp() THEN
        RAISE EXCEPTION 'tenant_db.enter_context runs only in the first statement of a transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF COALESCE(NULLIF(pg_catalog.current_setting({uuid}, true), ''),
                NULLIF(pg_catalog.current_setting({int}, true), ''),
                NULLIF(pg_catalog.current_setting({text}, true), '')) IS NULL THEN
        RAISE EXCEPTION 'tenant_db.enter_context runs after tenant_db.enter'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_catalog.cardinality(names) IS DISTINCT FROM pg_catalog.cardinality(vals) THEN
        RAISE EXCEPTION 'tenant_db.enter_context: one value per name'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(names) LOOP
        IF names[i] IS NULL OR names[i] OPERATOR(pg_catalog.!~) '^[a-z][a-z0-9_]{{0,{max_rest}}}$'
            OR names[i] OPERATOR(pg_catalog.=) 'current_tenant'
            OR vals[i] IS NULL OR vals[i] OPERATOR(pg_catalog.=) '' THEN
            RAISE EXCEPTION 'tenant_db.enter_context: bad name or empty value'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM pg_catalog.set_config({name}, vals[i], true);
        PERFORM pg_catalog.set_config('app.' OPERATOR(pg_catalog.||) names[i], vals[i], true);
    END LOOP;
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.enter_context(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.enter_context(text[], text[]) TO PUBLIC;
CREATE OR REPLACE FUNCTION tenant_db.context(name text) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
AS $tenant_db$
BEGIN
    RETURN CASE
        WHEN pg_catalog.statement_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.transaction_timestamp()
        THEN NULLIF(pg_catalog.current_setting({read}, true), '')
    END;
END
$tenant_db$;
REVOKE ALL ON FUNCTION tenant_db.context(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_db.context(text) TO PUBLIC;
"#,
        uuid = crate::seal::secret_name("'uuid'"),
        int = crate::seal::secret_name("'int'"),
        text = crate::seal::secret_name("'text'"),
        max_rest = MAX_NAME_LEN - 1,
    )
}

#[cfg(test)]
mod tests {
    use super::{Context, ContextError, MAX_NAME_LEN, MAX_VALUE_LEN};

    #[test]
    fn names_are_short_lowercase_words() {
        for good in ["user", "u", "role_2", &"a".repeat(MAX_NAME_LEN)] {
            assert!(super::check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "User",
            "2fa",
            "_x",
            "a.b",
            "a-b",
            "a b",
            "é",
            "current_tenant",
            "x'",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert_eq!(
                super::check_name(bad),
                Err(ContextError::Name(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn values_are_checked_and_set_once() {
        let user = |v: &str| Context::new().set("user", v);
        assert_eq!(user(""), Err(ContextError::Empty("user".into())));
        assert_eq!(user("a\0b"), Err(ContextError::Nul("user".into())));
        assert_eq!(
            user(&"x".repeat(MAX_VALUE_LEN + 1)),
            Err(ContextError::TooLong("user".into()))
        );
        assert!(user(&"x".repeat(MAX_VALUE_LEN)).is_ok());
        assert_eq!(
            user("1").and_then(|c| c.set("user", "2")),
            Err(ContextError::Repeated("user".into()))
        );
        let both = Context::new()
            .set("user", "1")
            .and_then(|c| c.set("role", "it's"));
        assert_eq!(both.as_ref().map(|c| c.get("role")), Ok(Some("it's")));
        assert_eq!(both.as_ref().map(|c| c.is_empty()), Ok(false));
        assert_eq!(
            both.map(|c| c.enter_sql()),
            Ok(Some(
                "SELECT tenant_db.enter_context(ARRAY['user', 'role']::text[], \
                 ARRAY['1', 'it''s']::text[])"
                    .to_string()
            ))
        );
        assert_eq!(Context::new().enter_sql(), None);
        assert!(Context::new().is_empty());
    }
}
