//! The PostgreSQL server the tests and examples use, and a throwaway one for machines where
//! PostgreSQL is installed but no server answers.
//!
//! [`admin_url`](crate::admin_url) uses `TENANT_DB_ADMIN_URL` as is when it is set. Otherwise
//! it probes the default address ([`default_address`]) with a TCP connection: if something
//! answers, the URL is `postgres://postgres@<address>/postgres`; if nothing does, [`locate`]
//! starts (or reuses) a [`Throwaway`] server and the URL points at it, and one line on standard
//! error says so.
//!
//! # The throwaway server
//!
//! It is a cluster made with the newest installed `/usr/lib/postgresql/<version>/bin/initdb`
//! (`-A trust -U postgres`: any local user may connect as the superuser `postgres`, without a
//! password, over loopback), in a private directory under the system temp directory
//! (`tenant-db-postgres-<uid of the current user>`, mode `0700`, owned by the user the server
//! runs as). It listens
//! on `127.0.0.1`, on a port the system picked as free, and keeps its Unix sockets in that
//! directory; `fsync` is off. When the tests run as root, the server runs as the `postgres`
//! user, through `setpriv`.
//!
//! The first caller starts it and writes its port to a file in the directory; later callers,
//! in the same process or another one, take the same file lock, read the port, check that the
//! server there is the one whose data directory is in that directory, and reuse it.
//!
//! It is **left running** after the process that started it exits, so that the next test
//! binary or the next command reuses it; after a restart of the machine, the next caller
//! starts it again on the same data. Nothing stops it on its own: [`Throwaway::stop`] does,
//! and so does the command printed when it starts (`pg_ctl stop -D <dir>/data`, as the user
//! it runs as). Deleting the directory once it is stopped removes it for good.
//!
//! # Environment
//!
//! - `TENANT_DB_ADMIN_URL`: the superuser URL to use; when set, nothing is probed or started.
//! - `TENANT_DB_DEFAULT_ADDR`: the `host:port` probed when `TENANT_DB_ADMIN_URL` is unset
//!   (default `127.0.0.1:5432`). Pointing it at a port where nothing listens makes the tests
//!   use the throwaway server even on a machine whose main server is up.
//! - `TMPDIR`: the system temp directory (default `/tmp`), through [`std::env::temp_dir`].

use crate::SetupError;
use crate::os::{self, ServiceUser};
use std::fs::File;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The address probed when neither `TENANT_DB_ADMIN_URL` nor `TENANT_DB_DEFAULT_ADDR` is set.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:5432";

/// Where installed PostgreSQL versions keep their programs (Debian's layout).
const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// The `host:port` probed for a running server: `TENANT_DB_DEFAULT_ADDR`, default
/// [`DEFAULT_ADDRESS`].
pub fn default_address() -> String {
    std::env::var("TENANT_DB_DEFAULT_ADDR")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())
}

/// What [`locate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// Something accepts connections at the probed address; `url` connects to it as
    /// `postgres`.
    Answering {
        /// `postgres://postgres@<address>/postgres`.
        url: String,
    },
    /// Nothing answered: a throwaway server serves instead.
    Throwaway(Running),
}

impl Located {
    /// The superuser URL of the server found.
    pub fn url(&self) -> &str {
        match self {
            Self::Answering { url } => url,
            Self::Throwaway(running) => &running.url,
        }
    }
}

/// A running throwaway server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
    /// The port it listens on, on `127.0.0.1`.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Whether this call started it (`false`: it was already running and is reused).
    pub started: bool,
    /// A shell command that stops it.
    pub stop_command: String,
}

/// Whether something accepts TCP connections at `address` (`host:port`), within a second.
pub fn answers(address: &str) -> bool {
    address.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
    })
}

/// The server at `address` if one answers there, else `throwaway`, started if it is not
/// running.
pub fn locate(address: &str, throwaway: &Throwaway) -> Result<Located, SetupError> {
    if answers(address) {
        return Ok(Located::Answering {
            url: format!("postgres://postgres@{address}/postgres"),
        });
    }
    throwaway.start_or_reuse().map(Located::Throwaway)
}

/// The superuser URL for [`admin_url`](crate::admin_url): `TENANT_DB_ADMIN_URL`, else the
/// server at [`default_address`], else the default [`Throwaway`] server. Prints one line to
/// standard error (uncaptured by the test harness) when it uses the throwaway server, or when
/// it could not start it (the URL returned is then the default address's, and connecting to it
/// fails).
pub(crate) fn resolve_admin_url() -> String {
    if let Ok(url) = std::env::var("TENANT_DB_ADMIN_URL") {
        return url;
    }
    let address = default_address();
    match locate(&address, &Throwaway::new()) {
        Ok(Located::Answering { url }) => url,
        Ok(Located::Throwaway(running)) => {
            let (verb, when) = if running.started {
                ("started", "it is left running for later runs")
            } else {
                ("reusing", "started earlier and left running")
            };
            say(format_args!(
                "tenant-db: no PostgreSQL server at {address}; {verb} a throwaway server at \
                 127.0.0.1:{} (data in {}; {when}; stop it with `{}`)",
                running.port,
                running.data_dir.display(),
                running.stop_command,
            ));
            running.url
        }
        Err(e) => {
            say(format_args!(
                "tenant-db: no PostgreSQL server at {address}, and no throwaway server could \
                 be started: {}",
                e.0.replace('\n', " | ")
            ));
            format!("postgres://postgres@{address}/postgres")
        }
    }
}

/// Writes `line` to standard error directly: the test harness captures `eprintln!`, and
/// this line is meant for the person running the tests.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A throwaway PostgreSQL server living in a private directory (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throwaway {
    dir: PathBuf,
}

impl Default for Throwaway {
    fn default() -> Self {
        Self::new()
    }
}

impl Throwaway {
    /// The shared one: `<temp dir>/tenant-db-postgres-<uid of the current user>`.
    pub fn new() -> Self {
        let uid = os::current_uid().map_or_else(|_| "unknown".to_string(), |u| u.to_string());
        Self::in_dir(std::env::temp_dir().join(format!("tenant-db-postgres-{uid}")))
    }

    /// One living in `dir`, which it creates (its parent must exist).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Reuses the server if it is running, else starts it (creating the cluster first if
    /// needed).
    pub fn start_or_reuse(&self) -> Result<Running, SetupError> {
        let user = ServiceUser::get()?;
        let _lock = self.lock(&user)?;
        let bin = bindir(self.data_version().as_deref())?;
        if let Some(port) = self.recorded_port()
            && self.serves(&bin, port)
        {
            return Ok(self.running(&bin, &user, port, false));
        }
        if !self.data_dir().join("PG_VERSION").exists() {
            self.initdb(&bin, &user)?;
        }
        self.start(&bin, &user)
    }

    /// Starts a streaming replica of `primary` in this directory (made, the first time, by
    /// `pg_basebackup -R` from it), on a free port. Stop it with [`stop`](Throwaway::stop).
    pub fn start_replica_of(&self, primary_port: u16) -> Result<Running, SetupError> {
        let user = ServiceUser::get()?;
        let _lock = self.lock(&user)?;
        let bin = bindir(None)?;
        if let Some(port) = self.recorded_port()
            && self.serves(&bin, port)
        {
            return Ok(self.running(&bin, &user, port, false));
        }
        if !self.data_dir().join("PG_VERSION").exists() {
            let staging = self.dir.join("data.new");
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| SetupError(format!("remove {}: {e}", staging.display())))?;
            }
            os::run(
                "pg_basebackup the replica",
                user.command(&bin.join("pg_basebackup"))
                    .current_dir(&self.dir)
                    .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
                    .args(["--no-sync", "--checkpoint=fast", "-p"])
                    .arg(primary_port.to_string())
                    .arg("-D")
                    .arg(&staging),
            )?;
            std::fs::rename(&staging, self.data_dir())
                .map_err(|e| SetupError(format!("place the replica's data: {e}")))?;
        }
        self.start(&bin, &user)
    }

    /// Starts the cluster in the data directory on a free port, and records the port.
    fn start(&self, bin: &Path, user: &ServiceUser) -> Result<Running, SetupError> {
        // Running on a port that was not recorded (it is ours: it runs from our directory).
        if self.status(bin, user)? {
            self.pg_ctl(bin, user, "stop the unrecorded throwaway server", &["stop"])?;
        }
        let mut tries = 0;
        let port = loop {
            // The port may be taken between the pick and the start: pick again.
            let port = os::free_port()?;
            let options = format!("-p {port}");
            match self.pg_ctl(
                bin,
                user,
                "start the throwaway server",
                &["start", "-t", "60", "-o", &options],
            ) {
                Ok(()) => break port,
                Err(e) if tries >= 2 => {
                    return Err(SetupError(format!(
                        "{e}\n{}",
                        os::log_tail(&self.dir.join("server.log"), 20)
                    )));
                }
                Err(_) => tries += 1,
            }
        };
        self.record_port(port)?;
        if !self.serves(bin, port) {
            return Err(SetupError(format!(
                "the throwaway server started, but 127.0.0.1:{port} does not serve {}",
                self.data_dir().display()
            )));
        }
        Ok(self.running(bin, user, port, true))
    }

    /// Stops the server if it is running; returns whether it was.
    pub fn stop(&self) -> Result<bool, SetupError> {
        if !self.dir.exists() {
            return Ok(false);
        }
        let user = ServiceUser::get()?;
        let _lock = self.lock(&user)?;
        let bin = bindir(self.data_version().as_deref())?;
        let _ = std::fs::remove_file(self.dir.join("port"));
        if !self.status(&bin, &user)? {
            return Ok(false);
        }
        self.pg_ctl(&bin, &user, "stop the throwaway server", &["stop"])?;
        Ok(true)
    }

    fn running(&self, bin: &Path, user: &ServiceUser, port: u16, started: bool) -> Running {
        let pg_ctl = bin.join("pg_ctl");
        let data = self.data_dir();
        let stop_command = if user.switch {
            format!(
                "runuser -u postgres -- {} stop -D {}",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!("{} stop -D {}", pg_ctl.display(), data.display())
        };
        Running {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            data_dir: data,
            started,
            stop_command,
        }
    }

    /// Creates the directory if needed (complete with its lock file, under its final owner,
    /// then renamed into place, so no one sees it half made), checks it is private, and takes
    /// its lock, which is released when the returned file is closed.
    fn lock(&self, user: &ServiceUser) -> Result<File, SetupError> {
        let lock_path = self.dir.join("lock");
        if std::fs::symlink_metadata(&self.dir).is_err() {
            let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
            let staging = self.dir.with_file_name(format!(
                "{name}.new-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            user.create_private_dir(&staging)?;
            let made = File::create(staging.join("lock"))
                .map_err(|e| SetupError(format!("create the lock file: {e}")))
                .and_then(|_| {
                    std::fs::rename(&staging, &self.dir).or_else(|e| {
                        if self.dir.exists() {
                            Ok(()) // Another process made it first.
                        } else {
                            Err(SetupError(format!("create {}: {e}", self.dir.display())))
                        }
                    })
                });
            let _ = std::fs::remove_dir_all(&staging);
            made?;
        }
        user.check_private_dir(&self.dir)?;
        let file = File::open(&lock_path)
            .map_err(|e| SetupError(format!("open {}: {e}", lock_path.display())))?;
        file.lock()
            .map_err(|e| SetupError(format!("lock {}: {e}", lock_path.display())))?;
        Ok(file)
    }

    fn data_version(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir().join("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_string())
    }

    fn recorded_port(&self) -> Option<u16> {
        std::fs::read_to_string(self.dir.join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn record_port(&self, port: u16) -> Result<(), SetupError> {
        let staging = self.dir.join("port.new");
        std::fs::write(&staging, format!("{port}\n"))
            .and_then(|()| std::fs::rename(&staging, self.dir.join("port")))
            .map_err(|e| SetupError(format!("record the throwaway server's port: {e}")))
    }

    /// Whether the server answering on `port` runs from our data directory.
    fn serves(&self, bin: &Path, port: u16) -> bool {
        let out = Command::new(bin.join("psql"))
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-d", "postgres", "-c", "SHOW data_directory", "-p"])
            .arg(port.to_string())
            .env("PGCONNECT_TIMEOUT", "5")
            .output();
        let Ok(out) = out else { return false };
        let shown = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        out.status.success()
            && std::fs::canonicalize(shown).ok() == std::fs::canonicalize(self.data_dir()).ok()
    }

    /// Makes the cluster in a staging directory, configures it, then moves it into place, so
    /// an interrupted `initdb` is started over.
    fn initdb(&self, bin: &Path, user: &ServiceUser) -> Result<(), SetupError> {
        let staging = self.dir.join("data.new");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| SetupError(format!("remove {}: {e}", staging.display())))?;
        }
        os::run(
            "initdb the throwaway server",
            user.command(&bin.join("initdb"))
                .current_dir(&self.dir)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync", "-D"])
                .arg(&staging),
        )?;
        let quoted = self.dir.display().to_string().replace('\'', "''");
        std::fs::OpenOptions::new()
            .append(true)
            .open(staging.join("postgresql.conf"))
            .and_then(|mut conf| {
                writeln!(
                    conf,
                    "\n# tenant-db throwaway server\n\
                     listen_addresses = '127.0.0.1'\n\
                     unix_socket_directories = '{quoted}'\n\
                     fsync = off"
                )
            })
            .and_then(|()| std::fs::rename(&staging, self.data_dir()))
            .map_err(|e| SetupError(format!("configure the throwaway server: {e}")))
    }

    /// Whether `pg_ctl status` finds the server running.
    fn status(&self, bin: &Path, user: &ServiceUser) -> Result<bool, SetupError> {
        if !self.data_dir().exists() {
            return Ok(false);
        }
        let status = user
            .command(&bin.join("pg_ctl"))
            .current_dir(&self.dir)
            .arg("status")
            .arg("-D")
            .arg(self.data_dir())
            .output()
            .map_err(|e| SetupError(format!("pg_ctl status: {e}")))?
            .status;
        Ok(status.success())
    }

    fn pg_ctl(
        &self,
        bin: &Path,
        user: &ServiceUser,
        what: &str,
        args: &[&str],
    ) -> Result<(), SetupError> {
        os::run(
            what,
            user.command(&bin.join("pg_ctl"))
                .current_dir(&self.dir)
                .args(args)
                .args(["-w", "-m", "fast", "-l"])
                .arg(self.dir.join("server.log"))
                .arg("-D")
                .arg(self.data_dir()),
        )
        .map(drop)
    }
}

/// The `bin` directory of the installed PostgreSQL: `version`'s if given and installed, else
/// the newest that has `initdb`, `pg_ctl` and `psql`.
pub fn bindir(version: Option<&str>) -> Result<PathBuf, SetupError> {
    let complete = |bin: &Path| {
        ["initdb", "pg_ctl", "psql"]
            .iter()
            .all(|p| bin.join(p).is_file())
    };
    if let Some(v) = version {
        let bin = Path::new(INSTALL_ROOT).join(v).join("bin");
        if complete(&bin) {
            return Ok(bin);
        }
    }
    let entries = std::fs::read_dir(INSTALL_ROOT).map_err(|e| {
        SetupError(format!(
            "no PostgreSQL installed under {INSTALL_ROOT} ({e}); install the postgresql package \
             or set TENANT_DB_ADMIN_URL"
        ))
    })?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or_else(|| {
            SetupError(format!(
                "no {INSTALL_ROOT}/<version>/bin with initdb, pg_ctl and psql; install the \
                 postgresql package or set TENANT_DB_ADMIN_URL"
            ))
        })
}
