//! Process and file-system helpers shared by the throwaway server and the PgBouncer harness:
//! running commands, the user PostgreSQL's programs run as, private directories and free ports.
//!
//! PostgreSQL's programs and PgBouncer refuse to run as root. When the tests run as root, they
//! run as the `postgres` user instead (through `setpriv`, from util-linux), and the directories
//! they write to belong to that user.

use crate::SetupError;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `cmd` to completion; a non-zero exit is an error carrying its standard error.
pub(crate) fn run(what: &str, cmd: &mut Command) -> Result<Output, SetupError> {
    let out = cmd
        .output()
        .map_err(|e| SetupError(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(SetupError(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// The owner of `/proc/self`: the current (effective) user and group.
fn current_user() -> Result<std::fs::Metadata, SetupError> {
    std::fs::metadata("/proc/self")
        .map_err(|e| SetupError(format!("read the current user from /proc/self: {e}")))
}

/// The current (effective) user id.
pub(crate) fn current_uid() -> Result<u32, SetupError> {
    current_user().map(|m| m.uid())
}

/// The user and group PostgreSQL's programs and PgBouncer run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceUser {
    /// User id.
    pub(crate) uid: u32,
    /// Group id.
    pub(crate) gid: u32,
    /// Whether commands must switch to it: the tests run as root and this is `postgres`.
    pub(crate) switch: bool,
}

impl ServiceUser {
    /// `postgres` when the current user is root, the current user otherwise.
    pub(crate) fn get() -> Result<Self, SetupError> {
        let me = current_user()?;
        if me.uid() != 0 {
            return Ok(Self {
                uid: me.uid(),
                gid: me.gid(),
                switch: false,
            });
        }
        let id = |flag: &str| -> Result<u32, SetupError> {
            let what = format!("id {flag} postgres (PostgreSQL's programs refuse to run as root)");
            let out = run(&what, Command::new("id").args([flag, "postgres"]))?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|e| SetupError(format!("{what}: {e}")))
        };
        Ok(Self {
            uid: id("-u")?,
            gid: id("-g")?,
            switch: true,
        })
    }

    /// A command running `program` as this user.
    pub(crate) fn command(&self, program: &Path) -> Command {
        self.command_with(program, &[])
    }

    /// A command running `program` as this user, killed with `SIGKILL` when the thread that
    /// spawns it ends (which includes the whole process ending, however it ends).
    pub(crate) fn command_killed_with_parent(&self, program: &Path) -> Command {
        self.command_with(program, &["--pdeathsig", "KILL"])
    }

    fn command_with(&self, program: &Path, setpriv: &[&str]) -> Command {
        if !self.switch && setpriv.is_empty() {
            return Command::new(program);
        }
        let mut cmd = Command::new("setpriv");
        if self.switch {
            cmd.args([
                format!("--reuid={}", self.uid),
                format!("--regid={}", self.gid),
                "--init-groups".to_string(),
            ]);
        }
        cmd.args(setpriv).arg("--").arg(program);
        cmd
    }

    /// Gives `path` to this user (a no-op when no switch is needed).
    pub(crate) fn chown(&self, path: &Path) -> Result<(), SetupError> {
        if !self.switch {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| SetupError(format!("give {} to the postgres user: {e}", path.display())))
    }

    /// Creates `path` (not its parents), mode `0700`, owned by this user; fails if anything is
    /// already there.
    pub(crate) fn create_private_dir(&self, path: &Path) -> Result<(), SetupError> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| SetupError(format!("create {}: {e}", path.display())))?;
        self.chown(path)
    }

    /// Checks that `path` is a directory (not a link to one), owned by this user, that no one
    /// else may read or write.
    pub(crate) fn check_private_dir(&self, path: &Path) -> Result<(), SetupError> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| SetupError(format!("inspect {}: {e}", path.display())))?;
        if meta.is_dir() && meta.uid() == self.uid && meta.permissions().mode() & 0o077 == 0 {
            Ok(())
        } else {
            Err(SetupError(format!(
                "{} is not a private directory of user {} (mode 0700); remove it",
                path.display(),
                self.uid
            )))
        }
    }
}

/// A loopback port nothing listens on right now (the system's pick for port 0).
pub(crate) fn free_port() -> Result<u16, SetupError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SetupError(format!("find a free loopback port: {e}")))
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(log) => {
            let all: Vec<&str> = log.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}
