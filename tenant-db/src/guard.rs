//! The run-time check of what goes into a scoped statement: each caller-supplied part (a
//! filter, a selection, an ordering, a grouping, a join condition, a `RETURNING` list, each
//! written value), read as PostgreSQL reads it.
//!
//! The compiler refuses raw SQL and subqueries that were not built from the scope; it cannot
//! tell `set_config` from `lower`, nor see the text inside a custom node (a hand-written
//! `QueryFragment`, an `infix_operator!`, a function's `sql_name`). So when a part is added to
//! a scoped query, tenant-db renders it alone and refuses it if it:
//!
//! - calls a function whose effects outlive the transaction, that runs SQL given as text, or
//!   that reads or measures whole tables past the tenant ([`DENIED_FUNCTIONS`]: `set_config`,
//!   advisory locks, `dblink*`, `query_to_xml*`, `table_to_xml*`, `pg_stat_*`, …);
//! - holds a subquery that was not built from the scope: diesel checks an aggregate's
//!   `FILTER` and `ORDER BY` or a window's `PARTITION BY` against nothing, and a custom node's
//!   text is invisible to the compiler, so while a part is rendered for this check tenant-db's
//!   own subqueries render as a placeholder, and any `SELECT` (or `TABLE`, `VALUES`, `WITH`)
//!   left is refused;
//! - in a part that must be one expression (a filter, a join condition, a written value),
//!   holds a comma outside parentheses (text that would write a second assignment);
//! - contains a comment, a semicolon, an unterminated quote, an escape string (`E'…'`), a
//!   Unicode escape (`U&"…"`) or a backslash in a string, or closes a parenthesis it did not open (`") OR ("`, balanced
//!   overall, would still OR the tenant filter away): diesel's own nodes never write these,
//!   and each can take text out of the parentheses that keep it under the tenant filter, or
//!   spell a name this check would not recognise.
//!
//! The verdict travels with the query (in its copy of the scope); running a refused query is
//! an [`Error::Refused`](crate::Error::Refused), and nothing is sent. The escape hatches
//! (`unscoped_*`) are not checked: they are the named way around tenant-db.

use crate::run::SqlKeyed;
use crate::scope::TenantScope;
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{QueryBuilder, QueryFragment};
use std::future::Future;

/// Functions a scoped statement may not call: their effects outlive the transaction (a
/// session-level setting, a session advisory lock, an open `dblink` connection, the seed of
/// `random()`, a sequence's position), they read what an earlier transaction on the connection
/// left (`currval`, `lastval`), they run SQL given as text (`query_to_xml` and its family,
/// `ts_stat`, `ts_rewrite`: text the compiler never sees), they read a
/// whole table or database by name (`table_to_xml`, `database_to_xml`, …), they reveal
/// table-wide counts and sizes across tenants (`pg_stat_*`, `pg_*_size`), or they reach
/// outside the database (files, large objects, other backends). A name ending in `*` is a
/// prefix.
pub const DENIED_FUNCTIONS: &[&str] = &[
    "set_config",
    "pg_advisory*",
    "pg_try_advisory*",
    "dblink*",
    "query_to_xml*",
    "cursor_to_xml*",
    "table_to_xml*",
    "schema_to_xml*",
    "database_to_xml*",
    "pg_stat_*",
    "pg_statio_*",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_database_size",
    "pg_tablespace_size",
    "lo_*",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "ts_stat",
    "ts_rewrite",
    "setseed",
    "setval",
    "currval",
    "lastval",
];

/// The entry of [`DENIED_FUNCTIONS`] that `name` (lower case) matches, if any.
fn denied(name: &str) -> Option<&'static str> {
    DENIED_FUNCTIONS
        .iter()
        .copied()
        .find(|entry| match entry.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *entry,
        })
}

/// The keywords that start a query inside an expression. Subqueries tenant-db built from the
/// scope render as a placeholder while a part is checked (see [`checking`]), so any left is
/// one that was not.
const QUERY_KEYWORDS: &[&str] = &["select", "table", "values", "with"];

/// Why tenant-db refused to send a scoped statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The statement calls a function tenant-db refuses (see [`DENIED_FUNCTIONS`]; the entry
    /// it matched is given).
    #[error(
        "it calls a function tenant-db refuses (`{0}`): its effects outlive the transaction or reach past the tenant"
    )]
    SessionFunction(&'static str),
    /// A part holds a query (`SELECT`, `TABLE`, `VALUES`, `WITH`) that was not built from the
    /// scope: in an aggregate's `FILTER`, a window's `PARTITION BY`, a custom node's text.
    #[error("a part of it holds a subquery that was not built from the scope")]
    Subquery,
    /// A part that must be one expression (a filter, a join condition, a written value) holds a
    /// comma outside parentheses: text that writes a second assignment, say.
    #[error("a part of it that must be one expression holds a top-level comma")]
    NotOneExpression,
    /// The statement contains a comment (`--` or `/*`).
    #[error("it contains a comment")]
    Comment,
    /// The statement contains a semicolon.
    #[error("it contains a semicolon")]
    Semicolon,
    /// A part closes a parenthesis it did not open, or leaves one open.
    #[error("a part of it closes a parenthesis it did not open, or leaves one open")]
    UnbalancedParentheses,
    /// A quoted string or identifier is never closed.
    #[error("a quote is never closed")]
    UnterminatedQuote,
    /// A part uses an escape string (`E'…'`), a Unicode escape (`U&'…'`, `U&"…"`) or a
    /// backslash in a string: text whose meaning differs from its spelling (a quote that does
    /// not end the string, an identifier spelled with codes). diesel's own nodes never write
    /// them; values are bound.
    #[error(
        "it uses an escape string (E'...'), a Unicode escape (U&'...', U&\"...\") or a backslash in a string"
    )]
    EscapeSyntax,
    /// The transaction's tenant is of another kind than a tenant column of the statement (a
    /// UUID tenant on a table keyed by `bigint`, say), or out of its range (an integer tenant
    /// above `i32::MAX` on an `integer` column). No kind is converted into another.
    #[error(
        "its table's tenant column is {column}, and the transaction's tenant is a key of kind {tenant} or out of the column's range"
    )]
    KeyType {
        /// The tenant column's type.
        column: crate::KeyType,
        /// The kind of the transaction's tenant.
        tenant: crate::KeyKind,
    },
}

/// A scoped statement tenant-db refused to send, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tenant-db refused to send a scoped statement: {reason}")]
pub struct RefusedStatement {
    /// Why.
    pub reason: Refusal,
}

pub use crate::flight::Guarded;

/// The error a refused statement fails with.
pub(crate) fn refused(reason: Refusal) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(Box::new(RefusedStatement { reason }))
}

/// Runs `query` (as a [`SqlKeyed`] statement) in `tx` with `run` unless a part of it was
/// refused (the verdict is in `scope`).
pub(crate) fn guarded<'t, 'conn, Q, F, T>(
    tx: &'conn mut crate::TenantTx<'t>,
    scope: TenantScope<'_>,
    query: Q,
    run: impl FnOnce(SqlKeyed<Q>, &'conn mut &'t diesel_async::AsyncPgConnection) -> F,
) -> Guarded<'t, F>
where
    F: Future<Output = QueryResult<T>>,
    SqlKeyed<Q>: QueryFragment<Pg>,
{
    match scope.refusal() {
        None => tx.statement(SqlKeyed(query), run),
        Some(reason) => Guarded::refused(refused(reason)),
    }
}

/// What a part must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One expression: a filter, a join condition, a written value.
    Expression,
    /// A list of expressions: a selection, an ordering, a grouping, a `RETURNING` list.
    List,
}

thread_local! {
    /// Set while [`check_part`] renders a part: tenant-db's own subqueries (already checked
    /// when they were built) and escape hatches render as a placeholder instead of their
    /// text.
    static CHECKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The identifier a checked subquery or escape hatch renders as while a part is checked.
const PLACEHOLDER: &str = "tenant_db_checked";

/// Whether a part is being rendered for [`check_part`] on this thread.
fn checking() -> bool {
    CHECKING.with(std::cell::Cell::get)
}

/// For tenant-db's nodes whose text is checked on its own (a subquery built from the scope,
/// whose parts were checked as it was built; an escape hatch, checked when it is made):
/// renders the placeholder instead of the text while a part is being checked, and says
/// whether it did.
pub(crate) fn placeholder<DB: diesel::backend::Backend>(
    out: &mut diesel::query_builder::AstPass<'_, '_, DB>,
) -> bool {
    if checking() {
        out.push_sql(PLACEHOLDER);
        true
    } else {
        false
    }
}

/// Renders `part` alone and reads it (see the module docs). A part diesel cannot render on its
/// own passes: the statement it joins fails to render the same way when it runs.
pub(crate) fn check_part<E: QueryFragment<Pg>>(part: &E, shape: Shape) -> Option<Refusal> {
    let mut builder = diesel::pg::PgQueryBuilder::default();
    CHECKING.with(|c| c.set(true));
    let rendered = part.to_sql(&mut builder, &Pg);
    CHECKING.with(|c| c.set(false));
    rendered.ok()?;
    let read = match read(&builder.finish()) {
        Ok(read) => read,
        Err(refusal) => return Some(refusal),
    };
    if read.query {
        return Some(Refusal::Subquery);
    }
    if shape == Shape::Expression && read.top_level_comma {
        return Some(Refusal::NotOneExpression);
    }
    None
}

/// What [`read`] found in text that passed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Read {
    /// A query keyword (`SELECT`, …) outside quotes.
    pub(crate) query: bool,
    /// A comma outside parentheses and quotes.
    pub(crate) top_level_comma: bool,
}

/// Checks text an escape hatch carries: everything [`lint`] refuses, except subqueries, which
/// are what the escape hatch is for.
pub(crate) fn check_unscoped<E: QueryFragment<Pg>>(part: &E) -> Option<Refusal> {
    if checking() {
        return None;
    }
    let mut builder = diesel::pg::PgQueryBuilder::default();
    part.to_sql(&mut builder, &Pg).ok()?;
    lint(&builder.finish()).err()
}

/// Reads `sql` (see [`lint`]); on success, says what else it found.
fn read(sql: &str) -> Result<Read, Refusal> {
    let mut found = Read::default();
    scan(sql, &mut found).map(|()| found)
}

/// Reads `sql` as PostgreSQL's lexer would (strings, quoted identifiers, dollar quotes,
/// parameters, comments) and refuses a call to a [denied function](DENIED_FUNCTIONS), a
/// comment, a semicolon, an unterminated quote, or a parenthesis closed before it was opened
/// or left open.
pub fn lint(sql: &str) -> Result<(), Refusal> {
    scan(sql, &mut Read::default())
}

fn scan(sql: &str, found: &mut Read) -> Result<(), Refusal> {
    let bytes = sql.as_bytes();
    let mut depth: usize = 0;
    let mut i = 0;
    // The last identifier seen, if nothing but whitespace followed it: a `(` makes it a call.
    let mut last_ident: Option<String> = None;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            // `E'…'` (backslash escapes) and `U&'…'` / `U&"…"` (Unicode escapes): refused, not
            // modelled. A letter right before a quote can only be such a prefix (or `B`, `X`,
            // `N`, which change nothing here).
            b'\'' | b'"' if escape_prefix(bytes, i) => return Err(Refusal::EscapeSyntax),
            b'\'' => {
                let end = skip_quoted(bytes, i, b'\'')?;
                // With `standard_conforming_strings` off (a role can set it for itself), a
                // backslash escapes the quote after it: such a string would end elsewhere.
                if bytes[i..end].contains(&b'\\') {
                    return Err(Refusal::EscapeSyntax);
                }
                i = end;
                last_ident = None;
                continue;
            }
            b'"' => {
                let end = skip_quoted(bytes, i, b'"')?;
                last_ident = Some(sql[i + 1..end - 1].replace("\"\"", "\""));
                i = end;
                continue;
            }
            b'$' => {
                i = skip_dollar(sql, i)?;
                last_ident = None;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => return Err(Refusal::Comment),
            b'/' if bytes.get(i + 1) == Some(&b'*') => return Err(Refusal::Comment),
            b';' => return Err(Refusal::Semicolon),
            b',' => {
                if depth == 0 {
                    found.top_level_comma = true;
                }
                last_ident = None;
            }
            b'(' => {
                if let Some(name) = last_ident.take()
                    && let Some(entry) = denied(&name)
                {
                    return Err(Refusal::SessionFunction(entry));
                }
                depth += 1;
            }
            b')' => {
                depth = depth.checked_sub(1).ok_or(Refusal::UnbalancedParentheses)?;
                last_ident = None;
            }
            c if c.is_ascii_whitespace() => {}
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                let word = sql[start..i].to_lowercase();
                if QUERY_KEYWORDS.contains(&word.as_str()) {
                    found.query = true;
                }
                last_ident = Some(word);
                continue;
            }
            _ => last_ident = None,
        }
        i += 1;
    }
    if depth == 0 {
        Ok(())
    } else {
        Err(Refusal::UnbalancedParentheses)
    }
}

/// Whether the quote at `at` opens an escape string (`E'`, `e'`) or a Unicode escape (`U&'`,
/// `U&"`, any case).
fn escape_prefix(bytes: &[u8], at: usize) -> bool {
    let before = |n: usize| at.checked_sub(n).and_then(|i| bytes.get(i)).copied();
    let quote = bytes.get(at).copied();
    (quote == Some(b'\'') && matches!(before(1), Some(b'e' | b'E')))
        || (before(1) == Some(b'&') && matches!(before(2), Some(b'u' | b'U')))
}

/// From the opening `quote` at `start`, the index just past the closing one (a doubled quote
/// is part of the content).
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> Result<usize, Refusal> {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(Refusal::UnterminatedQuote)
}

/// From a `$` at `start`: past a parameter (`$1`), or past a dollar-quoted string
/// (`$tag$…$tag$`); a lone `$` is one character.
fn skip_dollar(sql: &str, start: usize) -> Result<usize, Refusal> {
    let bytes = sql.as_bytes();
    let mut i = start + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        return Ok(i);
    }
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b >= 0x80)
    {
        i += 1;
    }
    if bytes.get(i) != Some(&b'$') {
        return Ok(start + 1);
    }
    let tag = &sql[start..=i];
    match sql[i + 1..].find(tag) {
        Some(at) => Ok(i + 1 + at + tag.len()),
        None => Err(Refusal::UnterminatedQuote),
    }
}

#[cfg(test)]
mod tests {
    use super::{Refusal, lint};
    use proptest::prelude::*;

    #[test]
    fn what_diesel_writes_passes() {
        for sql in [
            r#"SELECT "customers"."id", "customers"."name" FROM "customers" WHERE (("customers"."tenant_id" = $1) AND (("customers"."name" = $2)))"#,
            r#"INSERT INTO "customers" ("tenant_id", "id") VALUES ($1, $2) ON CONFLICT ("tenant_id", "id") DO UPDATE SET "name" = excluded."name" WHERE "customers"."tenant_id" = $3"#,
            r#"SELECT lower("t"."name"), count(*) FROM "t" WHERE "t"."id" = ANY($1) GROUP BY lower("t"."name")"#,
            r#"SELECT EXISTS (SELECT 1 FROM "t" WHERE "t"."a" = 'it''s')"#,
            r#"SELECT $body$ -- not a comment ; $body$"#,
            r#"SELECT "weird "" name"(1)"#,
        ] {
            assert_eq!(lint(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn session_functions_are_refused_in_any_spelling() {
        for sql in [
            "SELECT set_config($1, $2, true)",
            "SELECT SET_CONFIG ($1, $2, false)",
            "SELECT pg_catalog.set_config($1, $2, false)",
            r#"SELECT "set_config"($1, $2, false)"#,
            r#"SELECT pg_catalog."set_config"($1, $2, false)"#,
            "SELECT 1 WHERE pg_try_advisory_lock(1)",
            "SELECT dblink_exec('x', 'y')",
            "SELECT query_to_xml($1, true, false, '')",
            "SELECT database_to_xml(false, true, '')",
            "SELECT pg_stat_get_live_tuples(to_regclass('customers'))",
            "SELECT pg_total_relation_size('customers')",
        ] {
            assert!(
                matches!(lint(sql), Err(Refusal::SessionFunction(_))),
                "{sql}"
            );
        }
        // The same names, not called, and look-alikes, pass.
        for sql in [
            r#"SELECT "set_config" FROM "t""#,
            "SELECT set_configuration($1)",
            "SELECT 'set_config($1)'",
        ] {
            assert_eq!(lint(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn text_that_could_break_out_is_refused() {
        let cases = [
            (
                "SELECT 1 WHERE ((true) OR (true) AND x = $1",
                Refusal::UnbalancedParentheses,
            ),
            (
                "SELECT 1 WHERE (true)) OR ((true)",
                Refusal::UnbalancedParentheses,
            ),
            ("SELECT 1 WHERE (true -- ) AND x = $1", Refusal::Comment),
            ("SELECT 1 WHERE (true /* ) */)", Refusal::Comment),
            ("SELECT 1; DELETE FROM t", Refusal::Semicolon),
            ("SELECT 'open", Refusal::UnterminatedQuote),
            (r#"SELECT "open"#, Refusal::UnterminatedQuote),
            ("SELECT $a$ open", Refusal::UnterminatedQuote),
        ];
        for (sql, want) in cases {
            assert_eq!(lint(sql), Err(want), "{sql}");
        }
    }

    #[test]
    fn escapes_that_change_what_text_means_are_refused() {
        for sql in [
            // `E'\''` is one quote to PostgreSQL: the parenthesis after it is code.
            r#"SELECT 1 WHERE (E'\'' IS NOT NULL)) OR ((true OR E'\'' IS NOT NULL OR COALESCE(true))"#,
            r#"SELECT e'\'' , "tenant_id" = $1 , "id" = 77 , "email" = E'\''"#,
            // A backslash in a plain string: an escape when standard_conforming_strings is off.
            r#"SELECT 1 WHERE ('\' IS NOT NULL)) OR ((true OR '\' IS NOT NULL)"#,
            r#"SELECT 'a\b'"#,
            // Names spelled with Unicode escapes: `set_config`, `pg_stat_get_live_tuples`.
            r#"SELECT pg_catalog.U&"set\005fconfig"($1, $2, false)"#,
            r#"SELECT u&"pg_stat_get_live_tuples"(1)"#,
            r#"SELECT U&'\0041'"#,
        ] {
            assert_eq!(lint(sql), Err(Refusal::EscapeSyntax), "{sql}");
        }
        // Plain strings, bit strings and identifiers ending in `e` before an operator pass.
        for sql in [
            "SELECT 'it''s', B'0101', X'1F', N'x'",
            r#"SELECT "name" = 'e' AND "table" <> 'E'"#,
            "SELECT a & b",
        ] {
            assert_eq!(lint(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn functions_that_run_text_or_read_session_state_are_refused() {
        for sql in [
            "SELECT ts_stat('SELECT to_tsvector(name) FROM customers')",
            "SELECT ts_rewrite($1::tsquery, 'SELECT a, b FROM t')",
            "SELECT setseed(0.5)",
            "SELECT setval('s', 1)",
            "SELECT currval('s')",
            "SELECT lastval()",
        ] {
            assert!(
                matches!(lint(sql), Err(Refusal::SessionFunction(_))),
                "{sql}"
            );
        }
    }

    #[test]
    fn queries_and_top_level_commas_are_found() {
        use super::{Read, read};
        assert_eq!(
            read(r#""t"."a" = ANY(tenant_db_checked)"#),
            Ok(Read::default())
        );
        assert_eq!(
            read(r#"EXISTS (SELECT 1 FROM "t")"#),
            Ok(Read {
                query: true,
                top_level_comma: false
            })
        );
        assert_eq!(
            read(r#"x = 1 OR y IN (TABLE "t")"#),
            Ok(Read {
                query: true,
                top_level_comma: false
            })
        );
        assert_eq!(
            read(r#"'moved', "tenant_id" = 'b'"#),
            Ok(Read {
                query: false,
                top_level_comma: true
            })
        );
        // Inside parentheses, quotes and quoted identifiers, neither counts.
        assert_eq!(
            read(r#"lower("select"), f(a, b), 'select, x'"#),
            Ok(Read {
                query: false,
                top_level_comma: true
            })
        );
        assert_eq!(read(r#"f(a, b) = 'select, x'"#), Ok(Read::default()));
    }

    #[test]
    fn a_minus_or_a_division_is_no_comment() {
        for sql in [
            r#"SELECT "t"."price" - 1 FROM "t""#,
            r#"SELECT "t"."price" / 2 FROM "t""#,
            r#"SELECT - "t"."price" FROM "t" WHERE "t"."a" -1 > 0"#,
        ] {
            assert_eq!(lint(sql), Ok(()), "{sql}");
        }
        assert_eq!(lint("SELECT 1 -- no"), Err(Refusal::Comment));
        assert_eq!(lint("SELECT 1 /* no */"), Err(Refusal::Comment));
        assert_eq!(lint("-- first"), Err(Refusal::Comment));
        assert_eq!(lint("/* first */"), Err(Refusal::Comment));
    }

    #[test]
    fn a_name_is_read_whole_whatever_it_starts_with() {
        // Functions of the application's own whose names end like a denied one: one word each,
        // not a denied name after a prefix the reader skipped.
        assert_eq!(lint("SELECT _set_config(1), ñset_config(2)"), Ok(()));
        assert_eq!(
            lint("SELECT _x, set_config($1, $2, true)"),
            Err(Refusal::SessionFunction("set_config"))
        );
    }

    #[test]
    fn quotes_are_read_as_postgresql_reads_them() {
        // An empty string ends where it ends; a doubled quote inside a string is content.
        assert_eq!(lint("SELECT '' = $1"), Ok(()));
        assert_eq!(lint("SELECT 'a'')' = $1, ''''"), Ok(()));
        // `&` before a quote is an operator unless a `U` comes before it.
        assert_eq!(lint(r#"SELECT "flags"&'1'"#), Ok(()));
        // A dollar-quoted string ends at its tag's next occurrence after the opening tag,
        // even an empty one right after it.
        assert_eq!(lint("SELECT $a$a$;$a$ = $1"), Ok(()));
        assert_eq!(lint("SELECT $$$$ = $1"), Ok(()));
        // A tag may hold an underscore; what follows the closing tag is code again (here the
        // name `b$` and a semicolon, not a second dollar quote).
        assert_eq!(lint("SELECT $q_1$ ; $q_1$ = $1"), Ok(()));
        assert_eq!(lint("SELECT $a$x$a$b$;$b$"), Err(Refusal::Semicolon));
        // An escape string is refused even with nothing escaped in it.
        assert_eq!(lint("SELECT E'abc'"), Err(Refusal::EscapeSyntax));
    }

    proptest! {
        /// Any text: a verdict, never a panic.
        #[test]
        fn any_text_gets_a_verdict(s in any::<String>()) {
            let _ = lint(&s);
        }

        /// Wrapping clean SQL in balanced parentheses keeps it clean; adding an unmatched
        /// parenthesis outside quotes never does.
        #[test]
        fn balance_is_what_counts(inner in "([a-z0-9 =,]|\\$[1-9]){0,20}") {
            let clean = format!("SELECT 1 WHERE ({inner})");
            prop_assert_eq!(lint(&clean), Ok(()));
            let open = format!("SELECT 1 WHERE (({inner})");
            prop_assert_eq!(lint(&open), Err(Refusal::UnbalancedParentheses));
        }
    }
}
