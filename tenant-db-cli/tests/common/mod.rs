//! Shared by the CLI's test binaries.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::process::Command;

/// Runs the `tenant-db` binary with `args` and no `DATABASE_URL`; returns its exit code, its
/// standard output and its standard error.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenant-db"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
