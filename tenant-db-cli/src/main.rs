//! The `tenant-db` command; see the crate docs.

fn main() -> std::process::ExitCode {
    tenant_db_cli::run()
}
