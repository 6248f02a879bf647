//! The throwaway server `admin_url` falls back on when no server answers: started from the
//! installed PostgreSQL in its private directory, reused by a second call, stopped at the end.
//!
//! These tests use a directory of their own and probe addresses where nothing listens; they
//! never touch the shared throwaway server nor the server at the default address.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::path::{Path, PathBuf};
use tenant_db_tests::server::{self, Located, Throwaway};

/// Stops the test's server and removes its directory, even when an assertion fails.
struct Cleanup(Throwaway);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.stop();
        let _ = std::fs::remove_dir_all(self.0.dir());
    }
}

/// `127.0.0.1:<port>` where nothing listens.
fn nothing_listens() -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    assert!(!server::answers(&address));
    address
}

#[derive(diesel::QueryableByName)]
struct DataDirectory {
    #[diesel(sql_type = diesel::sql_types::Text)]
    data_directory: String,
}

async fn data_directory(url: &str) -> PathBuf {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let row: DataDirectory = diesel::sql_query("SHOW data_directory")
        .get_result(&mut conn)
        .await
        .unwrap();
    PathBuf::from(row.data_directory)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap()
}

#[tokio::test]
async fn a_throwaway_server_is_started_where_none_answers_then_reused_then_stopped() {
    if let Err(e) = server::bindir(None) {
        // Machines that reach a remote server through TENANT_DB_ADMIN_URL need no local
        // PostgreSQL; the fallback cannot be tested there.
        eprintln!("skipped: {e}");
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "tenant-db-postgres-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let cleanup = Cleanup(Throwaway::in_dir(&dir));
    let throwaway = &cleanup.0;
    let probe = nothing_listens();

    let located = server::locate(&probe, throwaway).unwrap();
    let Located::Throwaway(first) = located else {
        panic!("nothing answers at {probe}, yet: {located:?}");
    };
    assert!(first.started);
    assert_eq!(
        first.url,
        format!("postgres://postgres@127.0.0.1:{}/postgres", first.port)
    );
    assert_eq!(first.data_dir, dir.join("data"));
    assert_eq!(
        canonical(&data_directory(&first.url).await),
        canonical(&dir.join("data"))
    );

    // A second caller (another test binary would do the same) reuses it.
    let again = server::locate(&probe, throwaway).unwrap();
    let Located::Throwaway(second) = again else {
        panic!("the second call must reuse the throwaway server: {again:?}");
    };
    assert!(!second.started);
    assert_eq!(
        (second.url.as_str(), second.port),
        (first.url.as_str(), first.port)
    );

    assert!(throwaway.stop().unwrap(), "it was running");
    assert!(!server::answers(&format!("127.0.0.1:{}", first.port)));
    assert!(AsyncPgConnection::establish(&first.url).await.is_err());
    assert!(!throwaway.stop().unwrap(), "already stopped");
}

#[test]
fn an_address_that_answers_is_used_as_is_and_nothing_is_started() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!(
        "tenant-db-postgres-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let located = server::locate(&address, &Throwaway::in_dir(&dir)).unwrap();
    assert_eq!(
        located,
        Located::Answering {
            url: format!("postgres://postgres@{address}/postgres")
        }
    );
    assert!(!dir.exists());
}
