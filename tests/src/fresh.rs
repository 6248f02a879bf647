//! A fresh database per test run.
//!
//! [`provision`](crate::provision) never reuses a database: the base name a test gives
//! (`tenant_db_test`) becomes `<base>_r<pid>_<start time>` for this process, created and
//! provisioned from nothing, so the provisioning code (roles, database, migrations, grants)
//! runs on every run and nothing an earlier run left can make a test pass. [`url_for`] and
//! [`admin_url_for`] name the same database for a base this process has provisioned.
//!
//! The database is dropped when the process ends, whichever way it ends: a watcher process
//! (`sh`, then PostgreSQL's `dropdb --force`) blocks on a pipe whose only writer is this
//! process, and the kernel closes it at exit. Databases of runs whose process is gone and that
//! are over an hour old (a watcher that never ran: no PostgreSQL client installed, a reboot)
//! are dropped by the next provisioning.
//!
//! Roles are cluster-wide and shared by concurrent test binaries: their names stay fixed, and
//! every run applies their set-up again.
//!
//! [`url_for`]: crate::url_for
//! [`admin_url_for`]: crate::admin_url_for

use crate::SetupError;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::collections::HashMap;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a database of a run that is gone must be before another run drops it.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// This process's suffix: `r<pid>_<start time, seconds, hex>`.
pub fn suffix() -> &'static str {
    static SUFFIX: OnceLock<String> = OnceLock::new();
    SUFFIX.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("r{}_{secs:x}", std::process::id())
    })
}

/// The bases provisioned by this process, with their databases.
fn names() -> std::sync::MutexGuard<'static, HashMap<String, String>> {
    static NAMES: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The database `base` names in this process: its fresh database once provisioned, else
/// `base` itself (a database a test created under that name).
pub fn database(base: &str) -> String {
    names()
        .get(base)
        .cloned()
        .unwrap_or_else(|| base.to_string())
}

/// Whether `name` is a fresh database of some run.
fn parse(name: &str) -> Option<(u32, u64)> {
    let (rest, secs) = name.rsplit_once('_')?;
    let (_, pid) = rest.rsplit_once("_r")?;
    Some((pid.parse().ok()?, u64::from_str_radix(secs, 16).ok()?))
}

/// Records `base`'s fresh database for this process (made up once) and starts its watcher,
/// which drops it when the process exits; the caller creates it (for tests that provision
/// with their own roles).
pub fn register(base: &str) -> Result<String, SetupError> {
    if let Some(name) = names().get(base) {
        return Ok(name.clone());
    }
    let name = format!("{base}_{}", suffix());
    tenant_db::rls::check_name("database", &name)
        .map_err(|e| SetupError(format!("fresh database for {base}: {e}")))?;
    watch(&name);
    names().insert(base.to_string(), name.clone());
    Ok(name)
}

/// Starts the process that drops `database` once this one has exited. Without a PostgreSQL
/// client, the sweep of a later run drops it.
fn watch(database: &str) {
    static PIPES: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());
    let Ok(bin) = crate::server::bindir(None) else {
        return;
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"cat >/dev/null; exec "$0" --if-exists --force --maintenance-db="$1" "$2""#)
        .arg(bin.join("dropdb"))
        .arg(crate::admin_url())
        .arg(database)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut child) = child
        && let Some(pipe) = child.stdin.take()
    {
        PIPES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(pipe);
        // The watcher outlives this process; its exit status is nobody's concern.
        std::thread::spawn(move || child.wait());
    }
}

#[derive(diesel::QueryableByName)]
struct Datname {
    #[diesel(sql_type = Text)]
    datname: String,
}

/// Drops the fresh databases of runs whose process is gone and that are over an hour old.
pub(crate) async fn sweep(admin: &mut AsyncPgConnection) {
    let Ok(found) = diesel::sql_query("SELECT datname::text AS datname FROM pg_database")
        .load::<Datname>(admin)
        .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for Datname { datname } in found {
        let Some((pid, started)) = parse(&datname) else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid.to_string()).exists();
        if !alive && now.saturating_sub(started) > LEFTOVER_AGE.as_secs() {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    tenant_db::rls::quote_ident(&datname)
                ))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_run_name_is_read_back_and_other_names_are_not() {
        let name = format!("tenant_db_test_{}", super::suffix());
        assert_eq!(
            super::parse(&name).map(|(pid, _)| pid),
            Some(std::process::id())
        );
        for other in ["tenant_db_test", "postgres", "a_r12_zz", "x_rabc_10"] {
            assert_eq!(super::parse(other), None, "{other}");
        }
    }
}
