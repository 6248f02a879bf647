//! `tenant-db` built with the placement tests' models: the tests run `placement promote`
//! through it, and kill it.

fn main() -> std::process::ExitCode {
    tenant_db_cli::run_with(
        std::env::args_os(),
        Ok(tenant_db_tests::placement::registry()),
    )
}
