//! PgBouncer in transaction-pooling mode on a loopback port, for the tests that run through it.
//!
//! [`start`] installs Debian's `pgbouncer` package if it is missing (as root, with `apt-get`),
//! writes a configuration under the system temp directory and starts the daemon, unless one
//! started earlier is still listening. It forwards every database to the server behind
//! [`admin_url`](crate::admin_url) with `auth_type = trust` for the test roles.
//!
//! One server connection per database and user (`default_pool_size = 1`): every client shares
//! one server session, the harshest case for a leak. It also keeps Debian's PgBouncer 1.18,
//! which does not track prepared statements, usable with diesel-async: a statement's prepare
//! and execute cannot land on different server connections.

use crate::SetupError;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The port PgBouncer listens on (`TENANT_DB_PGBOUNCER_PORT`, default 6543).
pub fn port() -> u16 {
    std::env::var("TENANT_DB_PGBOUNCER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6543)
}

/// `postgres://user@127.0.0.1:port/database` through PgBouncer.
pub fn url_for(user: &str, database: &str) -> String {
    format!("postgres://{user}@127.0.0.1:{}/{database}", port())
}

fn listening() -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port())),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn run(what: &str, cmd: &mut Command) -> Result<(), SetupError> {
    let out = cmd
        .output()
        .map_err(|e| SetupError(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SetupError(format!(
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn binary() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Installs the package if needed and starts PgBouncer; `users` may connect through it.
pub fn start(users: &[&str]) -> Result<(), SetupError> {
    if listening() {
        return Ok(());
    }
    let binary = match binary() {
        Some(b) => b,
        None => {
            let install = || {
                run(
                    "apt-get install pgbouncer",
                    Command::new("apt-get")
                        .args(["install", "-y", "-q", "pgbouncer"])
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                )
            };
            if install().is_err() {
                run(
                    "apt-get update",
                    Command::new("apt-get").args(["update", "-q"]),
                )?;
                install()?;
            }
            binary().ok_or_else(|| SetupError("pgbouncer is not installed".into()))?
        }
    };
    let dir = std::env::temp_dir().join(format!("tenant-db-pgbouncer-{}", port()));
    std::fs::create_dir_all(&dir).map_err(|e| SetupError(format!("create {dir:?}: {e}")))?;
    let (server_host, server_port) = crate::server_address();
    let userlist: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
    let ini = format!(
        "[databases]\n\
         * = host={server_host} port={server_port}\n\
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
         logfile = {dir}/pgbouncer.log\n\
         pidfile = {dir}/pgbouncer.pid\n",
        port = port(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("userlist.txt"), userlist)
        .and_then(|()| std::fs::write(dir.join("pgbouncer.ini"), ini))
        .map_err(|e| SetupError(format!("write the configuration: {e}")))?;
    // PgBouncer refuses to run as root: drop to the `postgres` user, which must be able to
    // write its log and pid file.
    let mut cmd = Command::new(&binary);
    cmd.arg("-d");
    if is_root() {
        run("chmod", Command::new("chmod").arg("0777").arg(&dir))?;
        cmd.args(["-u", "postgres"]);
    }
    run("start pgbouncer", cmd.arg(dir.join("pgbouncer.ini")))?;
    for _ in 0..50 {
        if listening() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(SetupError(format!(
        "pgbouncer did not start listening on 127.0.0.1:{}; see {}/pgbouncer.log",
        port(),
        dir.display()
    )))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}
