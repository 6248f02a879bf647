//! A schema and a cluster of PostgreSQL servers for the placement tests: the main server and
//! throwaway ones started for the test, each with the same roles and tables, a control
//! database with the directory, and helpers for silos and bridge schemas. Everything the
//! cluster creates is dropped (databases) or stopped and removed (servers) when it is dropped.

#![allow(missing_docs)]

use crate::SetupError;
use crate::server::Throwaway;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tenant_db::placement::{Mover, RouterBuilder};
use tenant_db::provision::Provision;
use tenant_db::registry::Registry;
use tenant_db::{TenantTable, TenantValues};

pub mod schema {
    diesel::table! {
        docs (tenant_id, id) {
            tenant_id -> Uuid,
            id -> BigInt,
            body -> Text,
        }
    }

    diesel::table! {
        lines (tenant_id, id) {
            tenant_id -> Uuid,
            id -> BigInt,
            doc_id -> BigInt,
            n -> Integer,
        }
    }
}
use schema::*;

#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable, TenantTable)]
#[diesel(table_name = docs)]
pub struct Doc {
    pub tenant_id: uuid::Uuid,
    pub id: i64,
    pub body: String,
}

#[derive(TenantValues)]
#[diesel(table_name = docs)]
pub struct NewDoc {
    pub id: i64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable, TenantTable)]
#[diesel(table_name = lines)]
pub struct Line {
    pub tenant_id: uuid::Uuid,
    pub id: i64,
    pub doc_id: i64,
    pub n: i32,
}

#[derive(TenantValues)]
#[diesel(table_name = lines)]
pub struct NewLine {
    pub id: i64,
    pub doc_id: i64,
    pub n: i32,
}

/// The two tables.
pub fn registry() -> Registry {
    match Registry::new()
        .tenant::<docs::table>()
        .and_then(|r| r.tenant::<lines::table>())
    {
        Ok(r) => r,
        Err(e) => panic!("the placement schema registers: {e}"),
    }
}

/// The tables, with composite keys and a composite foreign key.
pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS docs (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS lines (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    doc_id bigint NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, doc_id) REFERENCES docs (tenant_id, id) ON DELETE CASCADE
);";

pub const OWNER: &str = "tdbp_owner";
pub const APP: &str = "tdbp_app";

/// One server of the cluster.
pub struct Server {
    pub name: String,
    /// Superuser URL to its `postgres` database.
    pub admin_url: String,
    /// The owner's URL to the shared database.
    pub owner_url: String,
    /// The application role's URL to the shared database.
    pub app_url: String,
    pub port: u16,
    throwaway: Option<Throwaway>,
}

impl Server {
    /// Superuser URL to `database` on this server.
    pub fn admin_url_for(&self, database: &str) -> String {
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .unwrap_or((&self.admin_url, ""));
        format!("{base}/{database}")
    }
}

/// The servers, a shared database on each, and a control database on the first.
pub struct Cluster {
    pub servers: Vec<Server>,
    /// The shared databases' name (the same on every server).
    pub database: String,
    pub control_owner_url: String,
    pub control_app_url: String,
    silos: std::sync::Mutex<Vec<(usize, String)>>,
    replicas: Vec<Throwaway>,
    /// The file naming the test process that owns the cluster (see [`reap_orphans`]).
    owner: std::path::PathBuf,
}

fn step<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(format!("{what}: {e}")))
}

async fn tables(owner_url: &str, schema: Option<&str>) -> Result<(), SetupError> {
    let mut owner = step(
        "connect as owner",
        AsyncPgConnection::establish(owner_url).await,
    )?;
    let schema_name = schema.unwrap_or("public");
    if let Some(schema) = schema {
        let schema = tenant_db::rls::quote_ident(schema);
        step(
            "bridge schema",
            owner
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
                ))
                .await,
        )?;
    }
    step("tables", owner.batch_execute(DDL).await)?;
    step(
        "rls",
        tenant_db::provision::apply(&mut owner, &registry(), OWNER, APP, schema_name, None).await,
    )
}

/// Where a cluster's servers live: `<temp dir>/tenant-db-placement-<run>-<server>`, next to
/// `tenant-db-placement-<run>.owner`, which holds the id of the test process that started it.
fn cluster_path(run: &str, rest: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tenant-db-placement-{run}{rest}"))
}

/// Drops `database` on the server at `admin` (a superuser URL), whoever is connected to it.
async fn drop_database(admin: &str, database: &str) {
    if let Ok(mut conn) = AsyncPgConnection::establish(admin).await {
        let _ = conn
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                tenant_db::rls::quote_ident(database)
            ))
            .await;
    }
}

/// Stops a throwaway server and removes its directory.
fn discard(t: &Throwaway) {
    let _ = t.stop();
    let _ = std::fs::remove_dir_all(t.dir());
}

/// Cleans up after clusters whose test process is gone (killed mid-test, by a timeout say, so
/// that `Drop` never ran): stops their servers, removes their directories and drops their
/// databases on the main server. A cluster whose process still runs is left alone.
async fn reap_orphans() {
    // Whether a process runs is read from /proc: without it (not Linux), nothing is reaped
    // rather than every cluster.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        let Some(run) = name
            .strip_prefix("tenant-db-placement-")
            .and_then(|r| r.strip_suffix(".owner"))
        else {
            continue;
        };
        let owner = cluster_path(run, ".owner");
        let pid = std::fs::read_to_string(&owner).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty() || std::path::Path::new("/proc").join(pid).exists() {
            continue;
        }
        let prefix = format!("tenant-db-placement-{run}-");
        for dir in names.iter().filter(|n| n.starts_with(&prefix)) {
            discard(&Throwaway::in_dir(std::env::temp_dir().join(dir)));
        }
        let admin = crate::admin_url();
        if let (Some(short), Ok(mut conn)) =
            (run.get(..10), AsyncPgConnection::establish(&admin).await)
        {
            #[derive(diesel::QueryableByName)]
            struct Name {
                #[diesel(sql_type = diesel::sql_types::Text)]
                datname: String,
            }
            let left: Vec<Name> = diesel_async::RunQueryDsl::load(
                diesel::sql_query(
                    "SELECT datname::text FROM pg_catalog.pg_database WHERE datname LIKE $1",
                )
                .bind::<diesel::sql_types::Text, _>(format!("tdbp\\_{short}%")),
                &mut conn,
            )
            .await
            .unwrap_or_default();
            for db in left {
                drop_database(&admin, &db.datname).await;
            }
        }
        let _ = std::fs::remove_file(owner);
    }
}

impl Cluster {
    /// The main server (`a`) and `extra` throwaway servers (`b`, `c`, …). Clusters left by
    /// killed test processes are cleaned up first.
    pub async fn start(extra: usize) -> Result<Cluster, SetupError> {
        reap_orphans().await;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("tdbp_{}", &run[..10]);
        let owner = cluster_path(&run, ".owner");
        step(
            "record the cluster's owner",
            std::fs::write(&owner, std::process::id().to_string()),
        )?;
        let mut cluster = Cluster {
            servers: Vec::new(),
            database: database.clone(),
            control_owner_url: String::new(),
            control_app_url: String::new(),
            silos: std::sync::Mutex::new(Vec::new()),
            replicas: Vec::new(),
            owner,
        };
        let mut admins = vec![("a".to_string(), crate::admin_url(), None)];
        for i in 0..extra {
            let name = ((b'b' + i as u8) as char).to_string();
            let throwaway = Throwaway::in_dir(cluster_path(&run, &format!("-{name}")));
            // Registered before it starts: a failed start is still cleaned up.
            let running = throwaway.start_or_reuse();
            admins.push((name, String::new(), Some(throwaway)));
            let running = running?;
            if let Some(last) = admins.last_mut() {
                last.1 = running.url;
            }
        }
        for (name, admin_url, throwaway) in admins {
            let urls = Provision::new(&database, OWNER, APP).run(&admin_url).await;
            let port = admin_url
                .rsplit_once(':')
                .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
                .unwrap_or(5432);
            cluster.servers.push(Server {
                name,
                admin_url,
                owner_url: String::new(),
                app_url: String::new(),
                port,
                throwaway,
            });
            let urls = step("provision", urls)?;
            // Provisioned by a superuser: the tenant locks are the owner's alone.
            if !urls.tenant_locks_guarded {
                return Err(SetupError(format!(
                    "provisioning left the tenant locks open on server {}",
                    cluster.servers.len()
                )));
            }
            tables(&urls.owner_url, None).await?;
            if let Some(server) = cluster.servers.last_mut() {
                server.owner_url = urls.owner_url;
                server.app_url = urls.app_url;
            }
        }
        let control = step(
            "provision the control database",
            Provision::new(&format!("{database}_control"), OWNER, APP)
                .run(&crate::admin_url())
                .await,
        )?;
        let mut owner = step(
            "connect to the control database",
            AsyncPgConnection::establish(&control.owner_url).await,
        )?;
        let directory = step(
            "directory SQL",
            tenant_db::placement::directory::setup_sql(APP),
        )?;
        step("directory", owner.batch_execute(&directory).await)?;
        cluster.control_owner_url = control.owner_url;
        cluster.control_app_url = control.app_url;
        Ok(cluster)
    }

    pub fn server(&self, name: &str) -> &Server {
        match self.servers.iter().find(|s| s.name == name) {
            Some(s) => s,
            None => panic!("no server {name}"),
        }
    }

    /// A silo database `database` on `server`, with the tables.
    pub async fn prepare_silo(&self, server: &str, database: &str) -> Result<(), SetupError> {
        let index = self.servers.iter().position(|s| s.name == server);
        let s = self.server(server);
        if let Ok(mut silos) = self.silos.lock()
            && let Some(index) = index
        {
            silos.push((index, database.to_string()));
        }
        let urls = step(
            "provision the silo",
            Provision::new(database, OWNER, APP).run(&s.admin_url).await,
        )?;
        tables(&urls.owner_url, None).await
    }

    /// A bridge schema `schema` in `server`'s shared database, with the tables.
    pub async fn prepare_bridge(&self, server: &str, schema: &str) -> Result<(), SetupError> {
        tables(&self.server(server).owner_url, Some(schema)).await
    }

    /// Starts a streaming replica of throwaway server `of`; returns its superuser URL and the
    /// application role's URL to the shared database on it.
    pub fn start_replica(&mut self, of: &str) -> Result<(String, String), SetupError> {
        let (port, app_url) = {
            let s = self.server(of);
            (s.port, s.app_url.clone())
        };
        let dir = self
            .servers
            .iter()
            .find_map(|s| s.throwaway.as_ref().filter(|_| s.name == of))
            .map(|t| t.dir().with_extension("replica"))
            .ok_or_else(|| SetupError(format!("{of} is not a throwaway server")))?;
        let replica = Throwaway::in_dir(dir);
        let running = replica.start_replica_of(port);
        self.replicas.push(replica);
        let running = running?;
        let app_url = app_url.replace(&format!(":{port}/"), &format!(":{}/", running.port));
        Ok((running.url, app_url))
    }

    /// A router over every server, reading the directory as the application role.
    pub fn router(&self) -> RouterBuilder {
        let mut builder = tenant_db::placement::Router::builder(&self.control_app_url);
        for s in &self.servers {
            builder = builder.server(&s.name, &s.app_url);
        }
        builder
    }

    /// A mover over every server, as the owner.
    pub fn mover(&self) -> Mover {
        let mut mover = match Mover::new(&self.control_owner_url, registry()) {
            Ok(m) => m,
            Err(e) => panic!("a mover: {e}"),
        };
        for s in &self.servers {
            mover = mover.server(&s.name, &s.owner_url);
        }
        mover
    }

    /// `--control URL --server NAME=URL…` for `tenant-db placement`.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["--control".to_string(), self.control_owner_url.clone()];
        for s in &self.servers {
            args.push("--server".to_string());
            args.push(format!("{}={}", s.name, s.owner_url));
        }
        args
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut drops: Vec<(String, String)> = Vec::new();
        if let Some(a) = self.servers.first() {
            drops.push((a.admin_url.clone(), self.database.clone()));
            drops.push((a.admin_url.clone(), format!("{}_control", self.database)));
        }
        if let Ok(silos) = self.silos.lock() {
            for (index, db) in silos.iter() {
                if let Some(s) = self.servers.get(*index)
                    && s.throwaway.is_none()
                {
                    drops.push((s.admin_url.clone(), db.clone()));
                }
            }
        }
        // The drops need a runtime of their own: this may run inside one.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for (admin, db) in drops {
                    drop_database(&admin, &db).await;
                }
            });
        })
        .join();
        for t in &self.replicas {
            discard(t);
        }
        for t in self.servers.iter().filter_map(|s| s.throwaway.as_ref()) {
            discard(t);
        }
        let _ = std::fs::remove_file(&self.owner);
    }
}

/// What the placement tests share: placements, tenants, rows through a router, rows as the
/// superuser sees them.
#[allow(clippy::unwrap_used)]
pub mod helpers {
    use super::NewDoc;
    use super::schema::docs;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use std::collections::BTreeMap;
    use tenant_db::placement::{Placement, Router};
    use tenant_db::{Error, Tenant, TenantId};

    pub fn p(text: &str) -> Placement {
        text.parse().unwrap()
    }

    pub fn tenant() -> Tenant {
        Tenant::assume_verified(TenantId::new_random())
    }

    pub async fn insert_docs(
        router: &Router,
        t: Tenant,
        label: &str,
        ids: std::ops::RangeInclusive<i64>,
    ) {
        router
            .transaction(t, async |mut tx| {
                let s = tx.scope();
                let rows: Vec<NewDoc> = ids
                    .clone()
                    .map(|id| NewDoc {
                        id,
                        body: format!("{label} doc {id}"),
                    })
                    .collect();
                s.insert(docs::table).values(rows).execute(&mut tx).await?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
    }

    pub async fn bodies(router: &Router, t: Tenant) -> Result<Vec<String>, Error> {
        router
            .transaction(t, async |mut tx| {
                let s = tx.scope();
                Ok::<_, Error>(
                    s.query(docs::table)
                        .select(docs::body)
                        .order(docs::id)
                        .load(&mut tx)
                        .await?,
                )
            })
            .await
    }

    #[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct PerTenant {
        #[diesel(sql_type = Text)]
        pub tenant: String,
        #[diesel(sql_type = BigInt)]
        pub n: i64,
    }

    /// The rows of `table` per tenant, read as the superuser (no RLS) from `url`.
    pub async fn physical(url: &str, table: &str) -> BTreeMap<String, i64> {
        let mut conn = AsyncPgConnection::establish(url).await.unwrap();
        let rows: Vec<PerTenant> = diesel::sql_query(format!(
            "SELECT tenant_id::text AS tenant, count(*)::int8 AS n FROM {table} GROUP BY 1"
        ))
        .load(&mut conn)
        .await
        .unwrap();
        rows.into_iter().map(|r| (r.tenant, r.n)).collect()
    }
}
