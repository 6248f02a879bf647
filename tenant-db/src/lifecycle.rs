//! A tenant's life: onboarding, export, import, deletion, over every registered tenant table.
//!
//! Everything here runs **as the application role, in transactions entered for the tenant**:
//! the rows it reads, writes or deletes are the tenant's because row-level security says so,
//! not only because a `WHERE` clause does. These are the building blocks of moving a tenant
//! between databases.
//!
//! - [`onboard`]: records the tenant in the directory `tenant_db.tenants` and runs your seed,
//!   in one transaction, once: a second call (or a concurrent one) does nothing.
//! - [`export`]: every row of the tenant, table by table in foreign-key order (referenced
//!   tables first), as JSON lines `{"table": "…", "row": {…}}`, read from one snapshot
//!   (`REPEATABLE READ READ ONLY`) and streamed; then one line
//!   `{"manifest": {"format": 1, "tenant": "…", "tables": [{"table": "…", "rows": n}, …],
//!   "sha256": "…"}}`, whose checksum covers every line before it.
//! - [`import`]: reads such an export into a tenant (the same id or another, in this database
//!   or another) that has no rows yet, in one transaction: the tenant column of every row
//!   becomes the target tenant, only registered tables are written, and nothing is committed
//!   unless the counts and the checksum match the manifest.
//! - [`delete`]: every row of the tenant, children first, in one transaction or in batches of
//!   a given size (each its own transaction, so a large tenant does not hold locks for long;
//!   run it again to resume), then counts what is left, which must be nothing.
//!
//! Serial or identity columns keep their exported values on import; the sequences behind them
//! are not advanced (the application role may use them, not set them): advance them as the
//! owner if new rows of other tenants would collide.

use crate::registry::Registry;
use crate::rls::{quote_ident, quote_literal};
use crate::seal::Begin;
use crate::tables::{self, TableInfo};
use crate::tx::in_tenant;
use crate::{Error, Tenant, TenantDb, TenantId, TenantTx, TxFn};
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};

/// The export format's version.
pub const FORMAT: u32 = 1;

/// SQL (run as the owner, after [`crate::seal::setup_sql`]) that creates the tenant directory
/// `tenant_db.tenants`: one row per onboarded tenant, visible only in that tenant's
/// transactions. Idempotent.
pub fn setup_sql(app: &str) -> Result<String, crate::rls::NameError> {
    let app = crate::rls::ident("role", app)?;
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS tenant_db.tenants (
             tenant text NOT NULL,
             kind text NOT NULL,
             onboarded_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
             PRIMARY KEY (tenant, kind)
         );
         ALTER TABLE tenant_db.tenants ENABLE ROW LEVEL SECURITY;
         ALTER TABLE tenant_db.tenants FORCE ROW LEVEL SECURITY;
         DROP POLICY IF EXISTS tenant_db_isolation ON tenant_db.tenants;
         CREATE POLICY tenant_db_isolation ON tenant_db.tenants AS RESTRICTIVE FOR ALL TO PUBLIC
             USING (tenant = tenant_db.current_tenant(kind))
             WITH CHECK (tenant = tenant_db.current_tenant(kind));
         DROP POLICY IF EXISTS tenant_db_access ON tenant_db.tenants;
         CREATE POLICY tenant_db_access ON tenant_db.tenants AS PERMISSIVE FOR ALL TO PUBLIC
             USING (true) WITH CHECK (true);
         REVOKE ALL ON tenant_db.tenants FROM PUBLIC;
         REVOKE ALL ON tenant_db.tenants FROM {app};
         GRANT SELECT, INSERT, DELETE ON tenant_db.tenants TO {app};
"
    ))
}

/// What [`onboard`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Onboarded {
    /// The tenant was new: recorded, and seeded.
    Created,
    /// The tenant was already onboarded: nothing ran.
    Existing,
}

#[derive(diesel::QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Bool)]
    #[allow(dead_code)]
    inserted: bool,
}

/// Records `tenant` in the directory and runs `seed` in the same tenant transaction, unless
/// the tenant is already there. A failing seed rolls the whole onboarding back.
// Not an `async fn`: the returned future must be declared `Send`.
#[allow(clippy::manual_async_fn)]
pub fn onboard<'a, E, F>(
    db: &'a TenantDb,
    tenant: Tenant,
    seed: F,
) -> impl Future<Output = Result<Onboarded, E>> + Send + 'a
where
    for<'t> F: AsyncFnOnce(TenantTx<'t>) -> Result<(), E>
        + TxFn<TenantTx<'t>, Result<(), E>, Fut: Send>
        + Send
        + 'a,
    E: From<Error> + Send + 'a,
{
    db.transaction(tenant, async move |tx: TenantTx<'_>| {
        let mut conn = tx.shared_conn();
        let id = tx.tenant_id();
        // Waits for a concurrent onboarding of the same tenant, then finds its row.
        let new: Option<Inserted> = diesel::sql_query(
            "INSERT INTO tenant_db.tenants (tenant, kind) VALUES ($1, $2)
             ON CONFLICT DO NOTHING RETURNING true AS inserted",
        )
        .bind::<Text, _>(id.to_string())
        .bind::<Text, _>(id.kind().name())
        .get_result(&mut conn)
        .await
        .map(Some)
        .or_else(|e| match e {
            diesel::result::Error::NotFound => Ok(None),
            e => Err(Error::from(e)),
        })?;
        if new.is_none() {
            return Ok(Onboarded::Existing);
        }
        seed(tx).await?;
        Ok(Onboarded::Created)
    })
}

/// The last line of an export.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The exported tenant.
    pub tenant: String,
    /// Each table, in the order exported, with its row count.
    pub tables: Vec<TableCount>,
    /// SHA-256 (hex) of every line before the manifest, each with its `\n`.
    pub sha256: String,
}

/// A table and how many rows of the tenant it held.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableCount {
    /// The table, quoted as registered.
    pub table: String,
    /// Its rows.
    pub rows: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ManifestLine {
    manifest: Manifest,
}

#[derive(serde::Deserialize)]
struct RowLine {
    table: String,
    row: serde_json::Value,
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// The registered tenant tables, read from the catalogue, referenced tables first.
async fn tenant_tables(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
) -> Result<Vec<TableInfo>, Error> {
    let mut infos = Vec::new();
    for t in registry.tenant_tables() {
        let column = t.tenant_column().unwrap_or_default();
        let info = tables::read(conn, t.name(), column)
            .await
            .map_err(|e| Error::Lifecycle(format!("{}: {e}", t.name())))?;
        infos.push(info);
    }
    if infos.is_empty() {
        return Err(Error::Lifecycle(
            "no tenant table is registered".to_string(),
        ));
    }
    Ok(tables::fk_order(infos, |t| t))
}

/// Writes every row of `tenant` in the registered tenant tables to `out` (see the module
/// docs), on `conn`, a connection as the application role. Returns the manifest it wrote.
pub async fn export<W: Write + Send>(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
    tenant: Tenant,
    out: W,
) -> Result<Manifest, Error> {
    export_in(conn, registry, &tenant.id(), out, false).await
}

/// [`export`] of `id`, entered with `tenant_db.enter_for_move` (as the owner) when `for_move`.
pub(crate) async fn export_in<W: Write + Send>(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
    id: &TenantId,
    mut out: W,
    for_move: bool,
) -> Result<Manifest, Error> {
    let infos = tenant_tables(conn, registry).await?;
    let id = *id;
    let io = |e: std::io::Error| Error::Lifecycle(format!("cannot write the export: {e}"));
    in_tenant(
        conn,
        Begin::new(&id)
            .for_move(for_move)
            .modes("ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        false,
        async |conn| {
            let mut hash = Sha256::new();
            let mut counts = Vec::new();
            for info in &infos {
                let sql = format!(
                    "SELECT json_build_object('table', {}::text, 'row', to_jsonb(t))::text AS line
                     FROM {} t WHERE {}{}",
                    quote_literal(&info.name),
                    info.name,
                    info.is_tenant(&id),
                    info.order_by()
                );
                let mut rows = 0u64;
                let mut stream = diesel::sql_query(sql).load_stream::<Line>(conn).await?;
                while let Some(line) = stream.next().await {
                    let line = line?.line;
                    hash.update(line.as_bytes());
                    hash.update(b"\n");
                    writeln!(out, "{line}").map_err(io)?;
                    rows += 1;
                }
                counts.push(TableCount {
                    table: info.name.clone(),
                    rows,
                });
            }
            let manifest = Manifest {
                format: FORMAT,
                tenant: id.to_string(),
                tables: counts,
                sha256: hex(&hash.finalize()),
            };
            let line = serde_json::to_string(&ManifestLine {
                manifest: manifest.clone(),
            })
            .map_err(|e| Error::Lifecycle(e.to_string()))?;
            writeln!(out, "{line}").map_err(io)?;
            out.flush().map_err(io)?;
            Ok(manifest)
        },
    )
    .await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Imports an export from `input` into `tenant` (see the module docs), on `conn`, a
/// connection as the application role. Refuses a tenant that already has rows.
pub async fn import<R: BufRead + Send>(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
    tenant: Tenant,
    input: R,
) -> Result<Manifest, Error> {
    import_in(conn, registry, &tenant.id(), input, false).await
}

/// [`import`] into `id`, entered with `tenant_db.enter_for_move` (as the owner) when
/// `for_move`.
pub(crate) async fn import_in<R: BufRead + Send>(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
    id: &TenantId,
    input: R,
    for_move: bool,
) -> Result<Manifest, Error> {
    let infos = tenant_tables(conn, registry).await?;
    let id = *id;
    let bad = |why: String| Error::Lifecycle(format!("not a valid export: {why}"));
    in_tenant(
        conn,
        Begin::new(&id).for_move(for_move),
        true,
        async |conn| {
            for info in &infos {
                if tables::rows_of(conn, info, &id).await? > 0 {
                    return Err(Error::Lifecycle(format!(
                        "tenant {id} already has rows in {}: import into a tenant with none",
                        info.name
                    )));
                }
            }
            let mut hash = Sha256::new();
            let mut counts: Vec<TableCount> = Vec::new();
            let mut manifest = None;
            // Rows go in by batches of one table (the file's order is kept).
            let mut batch: Vec<serde_json::Value> = Vec::new();
            let mut batch_table: Option<&TableInfo> = None;
            for (number, line) in input.lines().enumerate() {
                let line = line.map_err(|e| bad(format!("line {}: {e}", number + 1)))?;
                if manifest.is_some() {
                    return Err(bad("lines after the manifest".to_string()));
                }
                if line.starts_with("{\"manifest\"") {
                    let m: ManifestLine =
                        serde_json::from_str(&line).map_err(|e| bad(format!("manifest: {e}")))?;
                    manifest = Some(m.manifest);
                    continue;
                }
                hash.update(line.as_bytes());
                hash.update(b"\n");
                let row: RowLine = serde_json::from_str(&line)
                    .map_err(|e| bad(format!("line {}: {e}", number + 1)))?;
                let Some(info) = infos.iter().find(|i| i.name == row.table) else {
                    return Err(bad(format!(
                        "line {}: {} is not a registered tenant table",
                        number + 1,
                        row.table
                    )));
                };
                if let Some(table) = batch_table
                    && (table.name != info.name || batch.len() >= BATCH)
                {
                    insert_rows(conn, table, std::mem::take(&mut batch)).await?;
                }
                batch_table = Some(info);
                batch.push(retarget(info, &id, row.row)?);
                match counts.last_mut() {
                    Some(last) if last.table == info.name => last.rows += 1,
                    _ => counts.push(TableCount {
                        table: info.name.clone(),
                        rows: 1,
                    }),
                }
            }
            if let Some(table) = batch_table
                && !batch.is_empty()
            {
                insert_rows(conn, table, batch).await?;
            }
            let Some(manifest) = manifest else {
                return Err(bad("no manifest: the export is incomplete".to_string()));
            };
            if manifest.format != FORMAT {
                return Err(bad(format!(
                    "format {} (this reads {FORMAT})",
                    manifest.format
                )));
            }
            if manifest.sha256 != hex(&hash.finalize()) {
                return Err(bad("the checksum does not match".to_string()));
            }
            let expected: Vec<&TableCount> =
                manifest.tables.iter().filter(|t| t.rows > 0).collect();
            if expected.iter().copied().ne(counts.iter()) {
                return Err(bad("the row counts do not match the manifest".to_string()));
            }
            diesel::sql_query(
            "INSERT INTO tenant_db.tenants (tenant, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(id.to_string())
        .bind::<Text, _>(id.kind().name())
        .execute(conn)
        .await?;
            Ok(manifest)
        },
    )
    .await
}

/// Rows per `INSERT` of an import.
const BATCH: usize = 500;

/// An exported row of `info`'s table, made `tenant`'s whatever the file says.
fn retarget(
    info: &TableInfo,
    tenant: &TenantId,
    row: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    let serde_json::Value::Object(mut row) = row else {
        return Err(Error::Lifecycle(
            "not a valid export: a row is not an object".to_string(),
        ));
    };
    row.insert(
        info.column.clone(),
        serde_json::Value::String(tenant.to_string()),
    );
    Ok(serde_json::Value::Object(row))
}

/// Inserts `rows` (retargeted) into `info`'s table, in one statement.
async fn insert_rows(
    conn: &mut AsyncPgConnection,
    info: &TableInfo,
    rows: Vec<serde_json::Value>,
) -> Result<(), Error> {
    let columns: Vec<String> = info
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    let list = columns.join(", ");
    diesel::sql_query(format!(
        "INSERT INTO {table} ({list}) OVERRIDING SYSTEM VALUE
         SELECT {list} FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)",
        table = info.name
    ))
    .bind::<Text, _>(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// What [`delete`] removed, per table (children first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Each table and the rows deleted from it.
    pub tables: Vec<TableCount>,
}

/// Deletes every row of `tenant` from the registered tenant tables and its directory row, on
/// `conn`, a connection as the application role: in one transaction (`batch` `None`), or in
/// transactions of at most `batch` rows each. Then counts what is left of the tenant, and
/// fails if anything is.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
    tenant: Tenant,
    batch: Option<u64>,
) -> Result<Deleted, Error> {
    delete_in(conn, registry, &tenant.id(), batch, false).await
}

/// [`delete`] of `id`, entered with `tenant_db.enter_for_move` (as the owner) when
/// `for_move`.
pub(crate) async fn delete_in(
    conn: &mut AsyncPgConnection,
    registry: &Registry,
    id: &TenantId,
    batch: Option<u64>,
    for_move: bool,
) -> Result<Deleted, Error> {
    let mut infos = tenant_tables(conn, registry).await?;
    infos.reverse();
    let id = *id;
    let mut deleted = Deleted::default();
    match batch {
        None => {
            in_tenant(
                conn,
                Begin::new(&id).for_move(for_move),
                true,
                async |conn| {
                    for info in &infos {
                        let n = diesel::sql_query(format!(
                            "DELETE FROM {} WHERE {}",
                            info.name,
                            info.is_tenant(&id)
                        ))
                        .execute(conn)
                        .await?;
                        deleted.tables.push(TableCount {
                            table: info.name.clone(),
                            rows: n as u64,
                        });
                    }
                    Ok(())
                },
            )
            .await?
        }
        Some(size) => {
            let size = size.max(1);
            for info in &infos {
                let mut total = 0u64;
                loop {
                    let n = in_tenant(
                        conn,
                        Begin::new(&id).for_move(for_move),
                        true,
                        async |conn| {
                            Ok(diesel::sql_query(format!(
                                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                                 SELECT ctid FROM {table} WHERE {cond} LIMIT {size}))",
                                table = info.name,
                                cond = info.is_tenant(&id),
                            ))
                            .execute(conn)
                            .await?)
                        },
                    )
                    .await?;
                    total += n as u64;
                    if (n as u64) < size {
                        break;
                    }
                }
                deleted.tables.push(TableCount {
                    table: info.name.clone(),
                    rows: total,
                });
            }
        }
    }
    // Verified: nothing of the tenant is left, and it leaves the directory.
    in_tenant(conn, Begin::new(&id).for_move(for_move), true, async |conn| {
        for info in &infos {
            let n = tables::rows_of(conn, info, &id).await?;
            if n != 0 {
                return Err(Error::Lifecycle(format!(
                    "{n} rows of tenant {id} are left in {}: written while deleting (run it again), or \
                     kept by a policy or trigger",
                    info.name
                )));
            }
        }
        diesel::sql_query("DELETE FROM tenant_db.tenants WHERE tenant = $1 AND kind = $2")
            .bind::<Text, _>(id.to_string())
            .bind::<Text, _>(id.kind().name())
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    Ok(deleted)
}
