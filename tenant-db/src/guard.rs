//! The run-time check of what goes into a scoped statement: each caller-supplied part (a
//! filter, a selection, an ordering, a grouping, a join condition, a `RETURNING` list, each
//! written value), read as PostgreSQL reads it.
//!
//! The compiler refuses raw SQL and subqueries that were not built from the scope; it cannot
//! tell `set_config` from `lower`, nor see the text inside a custom node (a hand-written
//! `QueryFragment`, an `infix_operator!`, a function's `sql_name`). So when a part is added to
//! a scoped query, tenant-db renders it alone and refuses it if it:
//!
//! - calls a function that changes the session beyond the transaction or reaches outside the
//!   database ([`SESSION_FUNCTIONS`]: `set_config`, session advisory locks, `dblink*`,
//!   server-side large-object file access);
//! - contains a comment, a semicolon or an unterminated quote, or closes a parenthesis it did
//!   not open (`") OR ("`, balanced overall, would still OR the tenant filter away): diesel's
//!   own nodes never write these, and each can take text out of the parentheses that keep it
//!   under the tenant filter.
//!
//! The verdict travels with the query (in its copy of the scope); running a refused query is
//! an [`Error::Refused`](crate::Error::Refused), and nothing is sent. The escape hatches
//! (`unscoped_*`) are not checked: they are the named way around tenant-db.

use crate::scope::TenantScope;
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{QueryBuilder, QueryFragment};
use futures_util::future::{Either, Ready, ready};
use std::future::Future;

/// Functions a scoped statement may not call: their effects outlive the transaction (a
/// session-level setting, a session advisory lock, an open `dblink` connection) or reach
/// outside the database.
pub const SESSION_FUNCTIONS: &[&str] = &[
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "dblink",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_disconnect",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_close",
    "dblink_send_query",
    "dblink_get_result",
    "lo_import",
    "lo_export",
];

/// Why tenant-db refused to send a scoped statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The statement calls a function whose effects outlive the transaction.
    #[error("it calls `{0}`, whose effects outlive the transaction")]
    SessionFunction(&'static str),
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
}

/// A scoped statement tenant-db refused to send, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tenant-db refused to send a scoped statement: {reason}")]
pub struct RefusedStatement {
    /// Why.
    pub reason: Refusal,
}

/// The future of a scoped statement: the statement running, or tenant-db's refusal to send it.
pub type Guarded<F> = Either<Ready<<F as Future>::Output>, F>;

/// Runs `query` with `run` unless a part of it was refused (the verdict is in `scope`).
pub(crate) fn guarded<Q, F, T>(
    scope: TenantScope<'_>,
    query: Q,
    run: impl FnOnce(Q) -> F,
) -> Guarded<F>
where
    F: Future<Output = QueryResult<T>>,
{
    match scope.refusal() {
        None => Either::Right(run(query)),
        Some(reason) => Either::Left(ready(Err(diesel::result::Error::QueryBuilderError(
            Box::new(RefusedStatement { reason }),
        )))),
    }
}

/// Renders `part` alone and reads it (see the module docs). A part diesel cannot render on its
/// own passes: the statement it joins fails to render the same way when it runs.
pub(crate) fn check_part<E: QueryFragment<Pg>>(part: &E) -> Option<Refusal> {
    let mut builder = diesel::pg::PgQueryBuilder::default();
    part.to_sql(&mut builder, &Pg).ok()?;
    lint(&builder.finish()).err()
}

/// Reads `sql` as PostgreSQL's lexer would (strings, quoted identifiers, dollar quotes,
/// parameters, comments) and refuses what the module docs list.
pub fn lint(sql: &str) -> Result<(), Refusal> {
    let bytes = sql.as_bytes();
    let mut depth: usize = 0;
    let mut i = 0;
    // The last identifier seen, if nothing but whitespace followed it: a `(` makes it a call.
    let mut last_ident: Option<String> = None;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' => {
                i = skip_quoted(bytes, i, b'\'')?;
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
            b'(' => {
                if let Some(name) = last_ident.take()
                    && let Some(f) = SESSION_FUNCTIONS.iter().find(|f| **f == name)
                {
                    return Err(Refusal::SessionFunction(f));
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
                last_ident = Some(sql[start..i].to_lowercase());
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
