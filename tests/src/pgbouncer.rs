//! PgBouncer in transaction-pooling mode on a loopback port, private to the test binary that
//! starts it.
//!
//! [`PgBouncer::start`] installs Debian's `pgbouncer` package if it is missing (as root, with
//! `apt-get`), writes a configuration in a private directory under the system temp directory
//! and starts its own `pgbouncer` process, listening on `127.0.0.1` on a port the system picked
//! as free (or on `TENANT_DB_PGBOUNCER_PORT`). It forwards every database to the server behind
//! [`admin_url`](crate::admin_url), with `auth_type = trust` for the users given.
//!
//! It never uses a listener it did not start. Before [`PgBouncer::start`] returns, it connects
//! through the new process to a database alias that only this configuration has (a random
//! name), and checks that the server reached that way is the one `admin_url` reaches: the same
//! `system_identifier` and the same postmaster start time.
//!
//! Dropping the [`PgBouncer`] kills the process and removes its directory. For tests that
//! cannot hold it, [`shared`] keeps one instance for the whole test binary: it is never dropped,
//! but the process is started through `setpriv --pdeathsig KILL` from a thread that lives as
//! long as the instance, so the kernel kills it when the test binary exits, whichever way it
//! exits. Directories left behind by test binaries that are gone are removed by the next start.
//!
//! One server connection per database and user (`default_pool_size = 1`): every client shares
//! one server session, the harshest case for a leak. It also keeps Debian's PgBouncer 1.18,
//! which does not track prepared statements, usable with diesel-async: a statement's prepare
//! and execute cannot land on different server connections.
//!
//! PgBouncer refuses to run as root: when the tests run as root, it runs as the `postgres`
//! user, which owns its directory.
//!
//! # Environment
//!
//! - `TENANT_DB_PGBOUNCER_PORT`: listen on this port instead of a free one ([`Port::from_env`]).
//!   Starting fails if something else already listens there.
//! - `TENANT_DB_ADMIN_URL` and `TENANT_DB_DEFAULT_ADDR`: the server it forwards to, through
//!   [`admin_url`](crate::admin_url) (see [`server`](crate::server)).
//! - `TMPDIR`: the system temp directory (default `/tmp`), through [`std::env::temp_dir`].

use crate::SetupError;
use crate::os::{self, ServiceUser};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Names of the private directories: `<temp dir>/tenant-db-pgbouncer-<pid of the test binary>-<random>`.
const DIR_PREFIX: &str = "tenant-db-pgbouncer-";

/// How long [`PgBouncer::start`] waits for its process to serve.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The port PgBouncer listens on, on `127.0.0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// One the system picks as free.
    Free,
    /// This one; starting fails if something else listens there.
    Fixed(u16),
}

impl Port {
    /// `TENANT_DB_PGBOUNCER_PORT` if it is set, else [`Port::Free`].
    pub fn from_env() -> Result<Self, SetupError> {
        match std::env::var("TENANT_DB_PGBOUNCER_PORT") {
            Ok(p) => p
                .trim()
                .parse()
                .map(Self::Fixed)
                .map_err(|e| SetupError(format!("TENANT_DB_PGBOUNCER_PORT={p:?}: {e}"))),
            Err(_) => Ok(Self::Free),
        }
    }
}

/// A running PgBouncer process of this test binary; dropping it kills the process and removes
/// its directory.
#[derive(Debug)]
pub struct PgBouncer {
    port: u16,
    child: Child,
    dir: PathBuf,
    /// The database alias only this instance's configuration has.
    check_database: String,
    /// The thread that spawned the process.
    parent: Option<Parent>,
}

/// The thread a `pgbouncer` process was spawned from: the process gets `SIGKILL` when the
/// thread ends, which it does when `stop` is dropped (or when the test binary exits).
#[derive(Debug)]
struct Parent {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Parent {
    fn end(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// The one instance [`shared`] hands out.
static SHARED: tokio::sync::OnceCell<PgBouncer> = tokio::sync::OnceCell::const_new();

/// One PgBouncer for every test of this binary, started by the first call (with `users`; later
/// calls get the same instance whatever `users` they pass). It runs until the binary exits.
pub async fn shared(users: &[&str]) -> Result<&'static PgBouncer, SetupError> {
    SHARED.get_or_try_init(|| PgBouncer::start(users)).await
}

impl PgBouncer {
    /// Starts PgBouncer on [`Port::from_env`]; `users` may connect through it. See the module
    /// docs.
    pub async fn start(users: &[&str]) -> Result<Self, SetupError> {
        Self::start_on(Port::from_env()?, users).await
    }

    /// Starts PgBouncer on `port`; `users` (at least one) may connect through it.
    pub async fn start_on(port: Port, users: &[&str]) -> Result<Self, SetupError> {
        let Some(check_user) = users.first().map(|u| u.to_string()) else {
            return Err(SetupError("PgBouncer needs at least one user".into()));
        };
        let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let (admin, binary) = blocking(|| Ok((crate::admin_url(), installed()?))).await?;
        let expected = identity(&admin).await.map_err(|e| {
            SetupError(format!(
                "connect to the server behind admin_url ({admin}): {e}"
            ))
        })?;
        // A free port may be taken between the pick and the start: pick again.
        let attempts = if port == Port::Free { 3 } else { 1 };
        let mut failure = SetupError("PgBouncer did not start".into());
        for _ in 0..attempts {
            let port = match port {
                Port::Free => os::free_port()?,
                Port::Fixed(port) => port,
            };
            let (binary, users) = (binary.clone(), users.clone());
            let mut bouncer = blocking(move || Self::launch(&binary, port, &users)).await?;
            match bouncer.verify(&check_user, &expected).await {
                Ok(()) => return Ok(bouncer),
                Err(e) => failure = e, // Dropping `bouncer` stops it.
            }
        }
        Err(failure)
    }

    /// The port it listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the `pgbouncer` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its private directory (configuration and `pgbouncer.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres://user@127.0.0.1:port/database` through this PgBouncer (`database`'s fresh
    /// database once provisioned, see [`fresh`](crate::fresh)).
    pub fn url_for(&self, user: &str, database: &str) -> String {
        crate::url_at(user, &format!("127.0.0.1:{}", self.port), database)
    }

    /// Writes the configuration in a new private directory and spawns the process.
    fn launch(binary: &Path, port: u16, users: &[String]) -> Result<Self, SetupError> {
        let user = ServiceUser::get()?;
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        user.create_private_dir(&dir)?;
        let check_database = format!("tenant_db_check_{}", uuid::Uuid::new_v4().simple());
        let spawned = write_config(&dir, port, users, &check_database)
            .and_then(|ini| spawn_with_parent(user.command_killed_with_parent(binary), &dir, &ini));
        match spawned {
            Ok((child, parent)) => Ok(Self {
                port,
                child,
                dir,
                check_database,
                parent: Some(parent),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Waits until this process serves the check alias, and checks that it reaches the server
    /// `expected` describes.
    async fn verify(&mut self, user: &str, expected: &Identity) -> Result<(), SetupError> {
        let url = self.url_for(user, &self.check_database);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            let attempt = tokio::time::timeout(Duration::from_secs(2), identity(&url)).await;
            match attempt {
                Ok(Ok(found)) => {
                    self.check_alive()?;
                    return if found == *expected {
                        Ok(())
                    } else {
                        Err(SetupError(format!(
                            "PgBouncer on 127.0.0.1:{} reaches server {found}, not the server \
                             behind admin_url ({expected})",
                            self.port
                        )))
                    };
                }
                Ok(Err(e)) if Instant::now() >= deadline => {
                    return Err(self.failure(&format!("connect through it: {e}")));
                }
                Err(_) if Instant::now() >= deadline => {
                    return Err(self.failure("no answer through it"));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn check_alive(&mut self) -> Result<(), SetupError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(self.failure(&format!("it exited ({status}); is the port taken?")))
            }
            Err(e) => Err(self.failure(&format!("wait for it: {e}"))),
        }
    }

    fn failure(&self, what: &str) -> SetupError {
        SetupError(format!(
            "PgBouncer on 127.0.0.1:{}: {what}\n{}",
            self.port,
            os::log_tail(&self.dir.join("pgbouncer.log"), 10)
        ))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(parent) = self.parent.take() {
            parent.end();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `pgbouncer.ini` and `userlist.txt` in `dir`; returns the configuration's path.
fn write_config(
    dir: &Path,
    port: u16,
    users: &[String],
    check_database: &str,
) -> Result<PathBuf, SetupError> {
    let (server_host, server_port) = crate::server_address();
    let server = format!("host={server_host} port={server_port}");
    let userlist: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
    let ini = format!(
        "[databases]\n\
         {check_database} = {server} dbname={admin_database}\n\
         * = {server}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {dir}/userlist.txt\n\
         pool_mode = transaction\n\
         default_pool_size = 1\n\
         max_client_conn = 200\n\
         ignore_startup_parameters = extra_float_digits,options\n\
         logfile = {dir}/pgbouncer.log\n",
        admin_database = crate::admin_database(),
        dir = dir.display(),
    );
    let path = dir.join("pgbouncer.ini");
    std::fs::write(dir.join("userlist.txt"), userlist)
        .and_then(|()| std::fs::write(&path, ini))
        .map_err(|e| SetupError(format!("write the PgBouncer configuration: {e}")))?;
    Ok(path)
}

/// Spawns `cmd ini` from a thread of its own, which lives until the returned [`Parent`] ends:
/// the process's parent-death signal fires when that thread ends.
fn spawn_with_parent(
    mut cmd: Command,
    dir: &Path,
    ini: &Path,
) -> Result<(Child, Parent), SetupError> {
    cmd.arg(ini)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (child_tx, child_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pgbouncer-parent".into())
        .spawn(move || {
            let _ = child_tx.send(cmd.spawn());
            let _ = stop_rx.recv();
        })
        .map_err(|e| SetupError(format!("start the PgBouncer parent thread: {e}")))?;
    let spawned = child_rx
        .recv()
        .map_err(|e| SetupError(format!("start pgbouncer: {e}")))
        .and_then(|r| r.map_err(|e| SetupError(format!("start pgbouncer (via setpriv): {e}"))));
    let parent = Parent {
        stop: stop_tx,
        thread,
    };
    match spawned {
        Ok(child) => Ok((child, parent)),
        Err(e) => {
            parent.end();
            Err(e)
        }
    }
}

/// Removes the private directories of test binaries that are no longer running. Only names
/// of this exact form are touched (other tools, or older versions of this harness, use the
/// same prefix).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(owner_pid) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The test binary's pid in a private directory's name, `<DIR_PREFIX><pid>-<32 hex digits>`.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(DIR_PREFIX)?.split_once('-')?;
    let random_ok = random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let pid_ok = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    if random_ok && pid_ok {
        pid.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn only_this_harness_directory_names_are_swept() {
        let random = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            owner_pid(&format!("tenant-db-pgbouncer-42-{random}")),
            Some(42)
        );
        // The older harness's `tenant-db-pgbouncer-<port>`, and anything else.
        assert_eq!(owner_pid("tenant-db-pgbouncer-6543"), None);
        assert_eq!(owner_pid("tenant-db-pgbouncer-6543-x"), None);
        assert_eq!(owner_pid(&format!("tenant-db-pgbouncer--{random}")), None);
        assert_eq!(owner_pid(&format!("tenant-db-postgres-42-{random}")), None);
    }
}

/// The installed `pgbouncer` binary, after installing Debian's package if there is none.
///
/// Tests of one binary install it one at a time, and `apt-get` waits for the package lock
/// that another process (another test binary) holds, instead of failing at once.
fn installed() -> Result<PathBuf, SetupError> {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(binary) = binary() {
        return Ok(binary);
    }
    const WAIT_FOR_LOCK: [&str; 2] = ["-o", "DPkg::Lock::Timeout=300"];
    let install = || {
        os::run(
            "apt-get install pgbouncer",
            Command::new("apt-get")
                .args(WAIT_FOR_LOCK)
                .args(["install", "-y", "-q", "pgbouncer"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        os::run(
            "apt-get update",
            Command::new("apt-get")
                .args(WAIT_FOR_LOCK)
                .args(["update", "-q"]),
        )?;
        install()?;
    }
    binary().ok_or_else(|| SetupError("pgbouncer is not installed".into()))
}

fn binary() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Which server a connection reaches.
#[derive(Debug, PartialEq, Eq, diesel::QueryableByName)]
struct Identity {
    #[diesel(sql_type = diesel::sql_types::Text)]
    system_identifier: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    started: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "system_identifier {}, started at epoch {}",
            self.system_identifier, self.started
        )
    }
}

/// The identity of the server `url` reaches (in a transaction: PgBouncer keeps it on one
/// server connection).
async fn identity(url: &str) -> Result<Identity, String> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    conn.batch_execute("BEGIN")
        .await
        .map_err(|e| e.to_string())?;
    let found = diesel::sql_query(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text AS system_identifier,
                extract(epoch FROM pg_postmaster_start_time())::text AS started",
    )
    .get_result(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    conn.batch_execute("COMMIT")
        .await
        .map_err(|e| e.to_string())?;
    Ok(found)
}

/// The server identity check, for tests: whether `url` and `admin_url` reach the same server.
pub async fn reaches_admin_server(url: &str) -> Result<bool, SetupError> {
    let admin = blocking(|| Ok(crate::admin_url())).await?;
    let (a, b) = (identity(&admin).await, identity(url).await);
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(a == b),
        (Err(e), _) | (_, Err(e)) => Err(SetupError(format!("identify the server: {e}"))),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SetupError> + Send + 'static,
) -> Result<T, SetupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SetupError(format!("set-up task: {e}")))?
}
