//! The row-level-security SQL for tenant tables (see the README, "How the three layers work").
//!
//! [`policy_sql`] produces, for one tenant table, idempotent SQL that enables and forces RLS
//! and creates two policies:
//!
//! - `tenant_db_access`, **permissive**, for all commands: grants access (RLS grants nothing
//!   without a permissive policy);
//! - `tenant_db_isolation`, **restrictive**, for all commands, `USING` and `WITH CHECK`:
//!   `tenant_col = (SELECT tenant_db.current_tenant()::uuid)`. Being restrictive, it is AND-ed
//!   with every permissive policy, including ones added later; the scalar subquery is
//!   evaluated once per statement (an InitPlan); `tenant_db.current_tenant()` returns the
//!   tenant the transaction was opened for, sealed so that no later statement can change it
//!   (see [`crate::seal`]), or NULL, which matches nothing.

use crate::{KeyType, TenantTable};
use diesel::Table;
use diesel::pg::Pg;
use diesel::query_builder::{QueryBuilder, QueryFragment};

/// The SQL expression the isolation policy compares a `uuid` tenant column with (see
/// [`KeyType::current_tenant_expr`] for the others).
pub const CURRENT_TENANT_EXPR: &str = KeyType::Uuid.current_tenant_expr();

/// The quoted, schema-qualified (if declared so) name of table `T`, as diesel writes it.
pub fn table_name<T>() -> Result<String, diesel::result::Error>
where
    T: Table + Default,
    T::FromClause: QueryFragment<Pg>,
{
    let mut builder = diesel::pg::PgQueryBuilder::default();
    T::default().from_clause().to_sql(&mut builder, &Pg)?;
    Ok(builder.finish())
}

/// Quotes an SQL string literal, as PostgreSQL's own `quote_literal` does: text with a
/// backslash becomes an escape string, `E'…'` with the backslashes doubled, which reads the
/// same whatever `standard_conforming_strings` says (any role may turn it off for itself, and
/// in a plain `'…'` a backslash then escapes the quote after it). The text must not contain
/// NUL, which PostgreSQL cannot hold (it refuses the statement); [`literal`] checks that.
pub fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Quotes an SQL identifier. The name must be 1 to 63 bytes without NUL; [`ident`] checks
/// that.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The longest name PostgreSQL keeps (`NAMEDATALEN - 1` bytes): it cuts longer ones, silently,
/// so two long names that share their first 63 bytes would name one role.
pub const MAX_NAME_BYTES: usize = 63;

/// A name or text a SQL builder refused: PostgreSQL would not hold it as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// An empty name.
    #[error("the {what} name is empty")]
    Empty {
        /// What the name names (`role`, `schema`, …).
        what: &'static str,
    },
    /// A NUL character, which PostgreSQL text and names cannot hold.
    #[error("the {what} {text:?} contains a NUL character, which PostgreSQL cannot hold")]
    Nul {
        /// What the text is.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A name longer than [`MAX_NAME_BYTES`], which PostgreSQL would cut.
    #[error(
        "the {what} name {name:?} is {len} bytes; PostgreSQL keeps {MAX_NAME_BYTES} and would \
         cut it silently"
    )]
    TooLong {
        /// What the name names.
        what: &'static str,
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// Checks that PostgreSQL keeps `name` (a `what`: role, schema, database…) as given: 1 to
/// [`MAX_NAME_BYTES`] bytes, no NUL.
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::Empty { what })
    } else if name.contains('\0') {
        Err(NameError::Nul {
            what,
            text: name.to_string(),
        })
    } else if name.len() > MAX_NAME_BYTES {
        Err(NameError::TooLong {
            what,
            name: name.to_string(),
            len: name.len(),
        })
    } else {
        Ok(())
    }
}

/// [`quote_ident`] of a checked name ([`check_name`]).
pub fn ident(what: &'static str, name: &str) -> Result<String, NameError> {
    check_name(what, name)?;
    Ok(quote_ident(name))
}

/// [`quote_literal`] of text without NUL.
pub fn literal(what: &'static str, text: &str) -> Result<String, NameError> {
    if text.contains('\0') {
        return Err(NameError::Nul {
            what,
            text: text.to_string(),
        });
    }
    Ok(quote_literal(text))
}

/// `DO <tag><body><tag>;` with a dollar-quote tag that cannot end the body early: the body
/// holds quoted names and literals from callers, and one that contained the tag (`$tenant_db$`
/// in a role name) would otherwise close the body and be read as SQL of its own.
pub(crate) fn do_block(body: &str) -> String {
    let mut n = 0_u64;
    loop {
        let tag = if n == 0 {
            "$tenant_db$".to_string()
        } else {
            format!("$tenant_db{n}$")
        };
        // The tag must first occur where it closes the body (not inside it, nor across the
        // body's end and the closing tag).
        let closed = format!("{body}{tag}");
        if closed.find(&tag) == Some(body.len()) {
            return format!("DO {tag}{body}{tag};\n");
        }
        n += 1;
    }
}

/// Splits `"a"."b"` (diesel's quoting) into its unquoted parts.
pub(crate) fn split_quoted(quoted: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = quoted.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', _) => in_quotes = !in_quotes,
            ('.', false) => parts.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// The RLS SQL for table `table` (already quoted) with tenant column `column` (unquoted) of
/// type `key`.
pub fn policy_sql_for(table: &str, column: &str, key: KeyType) -> String {
    let col = quote_ident(column);
    let current = key.current_tenant_expr();
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS tenant_db_isolation ON {table};\n\
         CREATE POLICY tenant_db_isolation ON {table} AS RESTRICTIVE FOR ALL TO PUBLIC \
         USING ({col} = {current}) WITH CHECK ({col} = {current});\n\
         DROP POLICY IF EXISTS tenant_db_access ON {table};\n\
         CREATE POLICY tenant_db_access ON {table} AS PERMISSIVE FOR ALL TO PUBLIC \
         USING (true) WITH CHECK (true);\n"
    )
}

/// The RLS SQL for tenant table `T`; run it as the tables' owner, in a migration.
pub fn policy_sql<T>() -> Result<String, diesel::result::Error>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    Ok(policy_sql_for(
        &table_name::<T>()?,
        <T::TenantColumn as diesel::Column>::NAME,
        T::KEY_TYPE,
    ))
}

/// The name of the policy [`context_policy_sql`] creates for context `name`.
pub fn context_policy_name(name: &str) -> String {
    format!("tenant_db_context_{name}")
}

/// The condition a context policy puts on column `column` (unquoted) of type `key`: the
/// column equals the sealed context value `name` (see [`crate::context`]), read once per
/// statement, cast to the column's type; NULL, which matches nothing, when the transaction
/// was opened without it.
pub fn context_condition_for(
    column: &str,
    key: KeyType,
    name: &str,
) -> Result<String, crate::Error> {
    crate::context::check_name(name)?;
    let cast = match key {
        KeyType::Text => String::new(),
        other => format!("::{}", other.sql_name()),
    };
    Ok(format!(
        "{} = (SELECT tenant_db.context({}){cast})",
        quote_ident(column),
        quote_literal(name)
    ))
}

/// A second restrictive policy on table `table` (already quoted): rows whose column `column`
/// (unquoted, of type `key`) equals the context value `name`, for reads and writes. Being
/// restrictive, it is AND-ed with the tenant policy: a row must be of the transaction's tenant
/// and of its context.
pub fn context_policy_sql_for(
    table: &str,
    column: &str,
    key: KeyType,
    name: &str,
) -> Result<String, crate::Error> {
    let condition = context_condition_for(column, key, name)?;
    let policy = quote_ident(&context_policy_name(name));
    Ok(format!(
        "DROP POLICY IF EXISTS {policy} ON {table};\n\
         CREATE POLICY {policy} ON {table} AS RESTRICTIVE FOR ALL TO PUBLIC \
         USING ({condition}) WITH CHECK ({condition});\n"
    ))
}

/// [`context_policy_sql_for`] column `C` of a tenant table: per-user rows inside a tenant,
/// say, with `rls::context_policy_sql::<docs::owner_id>("user")` and transactions opened with
/// [`Tenant::with_context`](crate::Tenant::with_context). Run it after [`migration_sql`], as
/// the tables' owner. `C` is `uuid`, `bigint`, `integer` or `text`, `NOT NULL`.
pub fn context_policy_sql<C>(name: &str) -> Result<String, crate::Error>
where
    C: diesel::Column<SqlType: crate::sealed::KeySql>,
    C::Table: TenantTable,
    <C::Table as diesel::QuerySource>::FromClause: QueryFragment<Pg>,
{
    context_policy_sql_for(
        &table_name::<C::Table>()?,
        C::NAME,
        <C::SqlType as crate::sealed::KeySql>::KEY_TYPE,
        name,
    )
}

/// An index that leads with the tenant column, created only if the table has none yet (a
/// primary key `(tenant_id, id)` already is one). `table` is quoted, `column` is not.
pub fn tenant_index_sql_for(table: &str, column: &str) -> String {
    do_block(&format!(
        " BEGIN\n\
           IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a\n\
                            ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]\n\
                          WHERE i.indrelid = {table_lit}::regclass AND a.attname = {column_lit}) THEN\n\
             EXECUTE format('CREATE INDEX ON %s (%I)', {table_lit}, {column_lit});\n\
           END IF;\n\
         END ",
        table_lit = quote_literal(table),
        column_lit = quote_literal(column),
    ))
}

/// Everything a migration needs for tenant table `T`, as one idempotent script: the sealed
/// tenant setting's functions ([`seal::setup_sql`](crate::seal::setup_sql), shared by all
/// tables), RLS enabled and forced, the two policies of [`policy_sql`], and an index leading
/// with the tenant column.
///
/// Put its output in a migration (`diesel migration generate`, then paste it into `up.sql`),
/// or run it from a Rust migration. Keys are yours to get right, and `doctor` checks them:
/// primary and unique keys, and foreign keys to tenant tables, include the tenant column.
pub fn migration_sql<T>() -> Result<String, diesel::result::Error>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    let table = table_name::<T>()?;
    let column = <T::TenantColumn as diesel::Column>::NAME;
    Ok(format!(
        "{}{}{}",
        crate::seal::setup_sql(),
        policy_sql_for(&table, column, T::KEY_TYPE),
        tenant_index_sql_for(&table, column)
    ))
}

/// Composite keys for tenant table `T`, tenant column first, for a migration: build them with
/// [`primary_key`](CompositeKeys::primary_key), [`unique`](CompositeKeys::unique) and
/// [`foreign_key`](CompositeKeys::foreign_key), naming the columns without the tenant column,
/// then take the SQL with [`sql`](CompositeKeys::sql).
///
/// A foreign key that includes the tenant column can only point at a parent of the same tenant:
/// inserting a child that names another tenant's parent fails as the application role and as
/// a role that bypasses RLS alike, with the message a missing parent gets (it does not tell
/// whether the other tenant's parent exists). A unique key that leads with the tenant column
/// cannot reveal another tenant's values by a violation.
///
/// ```
/// # include!("../doctest_schema.rs");
/// # #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
/// # #[diesel(table_name = notes)]
/// # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
/// # fn main() -> Result<(), diesel::result::Error> {
/// let sql = tenant_db::rls::composite_keys::<notes::table>()
///     .primary_key(notes::id)
///     .unique((notes::body,))
///     .sql()?;
/// assert_eq!(
///     sql,
///     "ALTER TABLE \"notes\" ADD PRIMARY KEY (\"tenant_id\", \"id\");\n\
///      ALTER TABLE \"notes\" ADD UNIQUE (\"tenant_id\", \"body\");\n"
/// );
/// # Ok(()) }
/// ```
pub fn composite_keys<T>() -> CompositeKeys<T>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    CompositeKeys {
        keys: Vec::new(),
        table: std::marker::PhantomData,
    }
}

/// The keys [`composite_keys`] builds.
#[derive(Debug)]
#[must_use = "call `.sql()`"]
pub struct CompositeKeys<T> {
    keys: Vec<Key>,
    table: std::marker::PhantomData<T>,
}

#[derive(Debug)]
enum Key {
    Primary(Vec<&'static str>),
    Unique(Vec<&'static str>),
    Foreign {
        columns: Vec<&'static str>,
        parent: Result<String, String>,
        parent_tenant: &'static str,
        parent_columns: Vec<&'static str>,
    },
}

impl<T> CompositeKeys<T>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    /// `PRIMARY KEY (tenant_col, columns…)`.
    pub fn primary_key<K: crate::ConflictKey<T>>(mut self, columns: K) -> Self {
        let _ = columns;
        self.keys.push(Key::Primary(K::names()));
        self
    }

    /// `UNIQUE (tenant_col, columns…)`.
    pub fn unique<K: crate::ConflictKey<T>>(mut self, columns: K) -> Self {
        let _ = columns;
        self.keys.push(Key::Unique(K::names()));
        self
    }

    /// `FOREIGN KEY (tenant_col, columns…) REFERENCES parent (parent_tenant_col,
    /// parent_columns…)`: `parent` is another tenant table, `parent_columns` its key without
    /// its tenant column (the same number of columns as `columns`).
    pub fn foreign_key<K, P, PK>(mut self, columns: K, parent: P, parent_columns: PK) -> Self
    where
        K: crate::ConflictKey<T>,
        P: TenantTable,
        P::FromClause: QueryFragment<Pg>,
        PK: crate::ConflictKey<P>,
    {
        let _ = (columns, parent, parent_columns);
        self.keys.push(Key::Foreign {
            columns: K::names(),
            parent: table_name::<P>().map_err(|e| e.to_string()),
            parent_tenant: <P::TenantColumn as diesel::Column>::NAME,
            parent_columns: PK::names(),
        });
        self
    }

    /// The SQL: one `ALTER TABLE … ADD …` per key. Run it once, in the migration that creates
    /// the table (a table has one primary key).
    pub fn sql(self) -> Result<String, diesel::result::Error> {
        let table = table_name::<T>()?;
        let tenant = <T::TenantColumn as diesel::Column>::NAME;
        let list = |columns: &[&str], tenant: &str| {
            std::iter::once(tenant)
                .chain(columns.iter().copied())
                .map(quote_ident)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = String::new();
        for key in &self.keys {
            let clause = match key {
                Key::Primary(columns) => format!("PRIMARY KEY ({})", list(columns, tenant)),
                Key::Unique(columns) => format!("UNIQUE ({})", list(columns, tenant)),
                Key::Foreign {
                    columns,
                    parent,
                    parent_tenant,
                    parent_columns,
                } => {
                    if columns.len() != parent_columns.len() {
                        return Err(diesel::result::Error::QueryBuilderError(
                            format!(
                                "a foreign key of {} column(s) cannot reference {} column(s)",
                                columns.len(),
                                parent_columns.len()
                            )
                            .into(),
                        ));
                    }
                    let parent = parent
                        .clone()
                        .map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))?;
                    format!(
                        "FOREIGN KEY ({}) REFERENCES {parent} ({})",
                        list(columns, tenant),
                        list(parent_columns, parent_tenant)
                    )
                }
            };
            sql.push_str(&format!("ALTER TABLE {table} ADD {clause};\n"));
        }
        Ok(sql)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_do_block_tag_never_occurs_in_its_body() {
        for body in [
            " BEGIN END ",
            " '$tenant_db$' ",
            " '$tenant_db$$tenant_db1$' ",
            " ends with $tenant_db",
            "$tenant_db1",
        ] {
            let sql = super::do_block(body);
            let tag_end = sql[3..].find('$').map(|i| i + 4).unwrap_or(0);
            let tag_end = sql[tag_end..]
                .find('$')
                .map(|i| i + tag_end + 1)
                .unwrap_or(0);
            let tag = &sql[3..tag_end];
            let inside = &sql[tag_end..sql.len() - tag.len() - 2];
            assert_eq!(inside, body, "{sql}");
            assert_eq!(
                format!("{inside}{tag}").find(tag),
                Some(inside.len()),
                "{sql}"
            );
        }
        assert_eq!(super::do_block(" x "), "DO $tenant_db$ x $tenant_db$;\n");
    }

    #[test]
    fn policy_is_restrictive_and_fail_closed() {
        let sql = super::policy_sql_for("\"notes\"", "tenant_id", super::KeyType::Uuid);
        assert!(sql.contains("FORCE ROW LEVEL SECURITY"));
        assert!(sql.contains("AS RESTRICTIVE FOR ALL"));
        assert!(sql.contains(
            "USING (\"tenant_id\" = (SELECT tenant_db.current_tenant()::uuid)) WITH CHECK (\"tenant_id\" = (SELECT tenant_db.current_tenant()::uuid))"
        ));
        let sql = super::policy_sql_for("\"ledgers\"", "account_id", super::KeyType::BigInt);
        assert!(sql.contains(
            "USING (\"account_id\" = (SELECT tenant_db.current_tenant('int')::bigint)) WITH CHECK (\"account_id\" = (SELECT tenant_db.current_tenant('int')::bigint))"
        ));
    }
}
