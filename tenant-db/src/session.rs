//! What a transaction may leave on its connection for the next one, and the check that keeps
//! a changed connection out of the pool.
//!
//! A statement can change session state that outlives its transaction: a setting made with
//! `SET` or `set_config(…, false)` (the role, the search path, anything), a prepared statement
//! made with `PREPARE` (which could take the name of one the connection's statement cache will
//! run later), a cursor `WITH HOLD`, a `LISTEN`, a temporary table (which would shadow a real
//! one for the next transaction). Scoped statements cannot do any of this (they are built from
//! diesel's nodes, and tenant-db refuses the functions that change session state, see
//! [`crate::guard`]); the escape hatches can. So after a transaction that used one, tenant-db
//! checks the session, and a connection that is not as it was is closed, not pooled.
//!
//! The tenant setting itself needs no check: a later transaction replaces it, and outside the
//! transaction that sealed it, it is trusted nowhere (see [`crate::seal`]).

use crate::seal::{TENANT_SEAL_SETTING, TENANT_SETTING};
use diesel::QueryableByName;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// True when the session holds nothing a transaction may have left: no setting changed at
/// session level (beyond the time zone and encoding diesel sets when it connects), no role
/// switched, no SQL-level prepared statement, held cursor, `LISTEN`, temporary schema, or tenant
/// setting.
const CLEAN_SQL: &str = "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_settings
                          WHERE source = 'session' AND name NOT IN ('TimeZone', 'client_encoding'))
   AND current_user = session_user
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_listening_channels())
   AND pg_catalog.pg_my_temp_schema() = 0
   AND coalesce(pg_catalog.current_setting($1, true), '') = ''
   AND coalesce(pg_catalog.current_setting($2, true), '') = '' AS clean";

#[derive(QueryableByName)]
struct Clean {
    #[diesel(sql_type = Bool)]
    clean: bool,
}

/// Whether the connection's session is as a fresh connection's (see [`CLEAN_SQL`]); an error
/// counts as not clean.
pub(crate) async fn is_clean(conn: &mut AsyncPgConnection) -> bool {
    let checked: Result<Clean, _> = diesel::sql_query(CLEAN_SQL)
        .bind::<diesel::sql_types::Text, _>(TENANT_SETTING)
        .bind::<diesel::sql_types::Text, _>(TENANT_SEAL_SETTING)
        .get_result(conn)
        .await;
    checked.is_ok_and(|c| c.clean)
}
