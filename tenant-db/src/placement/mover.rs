//! Online moves of one tenant between placements.
//!
//! A move, step by step (each step is recorded in `tenant_db_placement.moves`):
//!
//! 1. **started**: the move is recorded; the source is the tenant's placement in the directory.
//! 2. **prepared**: the target is fenced (`incoming`: no one enters the tenant there) and
//!    emptied of the tenant's leftovers; the source captures the keys of the tenant's rows
//!    written from now on (a trigger per registered table, logging into
//!    `tenant_db.captured`).
//! 3. **copied**: every row of the tenant, read from one snapshot of the source (the
//!    lifecycle export), is written to the target (the lifecycle import, checked against the
//!    export's manifest).
//! 4. **caught_up**: the captured keys are replayed, in rounds, until few are left: each key's
//!    current row is read from the source and upserted at the target, or deleted there when it
//!    is gone.
//! 5. **frozen**: the directory marks the tenant frozen (routers hold its new transactions);
//!    the mover takes the tenant's lock at the source exclusively, which waits for the
//!    tenant's open transactions there to end and stops new ones (see [`super::fence`]). The
//!    last captured keys are replayed, then every table's row count and checksum are compared
//!    on both sides. Other tenants are not affected.
//! 6. **switched**: the source fences the tenant (`moved`): the commit point. Then the
//!    directory points at the target, the target's fence is lifted, and the lock is released;
//!    the transactions that waited are refused with [`Error::Moved`] and their retries go to
//!    the target. The write pause ends here.
//! 7. **cleaned**: the capture stops and the tenant's rows are deleted from the source (which
//!    keeps its fence, so that no out-of-date client can write there again).
//!
//! A mover that stops anywhere (killed, or its connections lost) leaves the tenant served by
//! the source until the commit point and by the target after it; [`Mover::resume`] finishes
//! the move and [`Mover::rollback`] undoes it (before the commit point only). Between the commit
//! point and the lifting of the target's fence (two statements), a stopped mover leaves the
//! tenant refused at both until resumed: never writable in two places.
//!
//! Rows are compared by their primary key: every registered tenant table needs one. Both
//! placements need the same tables (run the migrations at the target first). A move between
//! two schemas of one database is refused (the fences are per database).

use super::{Directory, Placement, PlacementError, url_with_database};
use crate::lifecycle::{self, TableCount};
use crate::placement::fence::{LOCK_CLASS, lock_key_sql, repair_sql};
use crate::registry::Registry;
use crate::rls::{quote_ident, quote_literal};
use crate::seal::Begin;
use crate::tables::{self, TableInfo};
use crate::tx::in_tenant;
use crate::{Error, TenantId};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A step of a move (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MoveStep {
    /// Recorded.
    Started,
    /// Target fenced and emptied, capture on.
    Prepared,
    /// Snapshot copied.
    Copied,
    /// Captured writes replayed until few were left.
    CaughtUp,
    /// Writes frozen, last writes replayed, counts and checksums equal.
    Frozen,
    /// Served by the target.
    Switched,
    /// Source emptied, move finished.
    Cleaned,
}

impl MoveStep {
    /// Every step, in order.
    pub const ALL: [MoveStep; 7] = [
        MoveStep::Started,
        MoveStep::Prepared,
        MoveStep::Copied,
        MoveStep::CaughtUp,
        MoveStep::Frozen,
        MoveStep::Switched,
        MoveStep::Cleaned,
    ];

    /// Its name: `started`, `prepared`, `copied`, `caught_up`, `frozen`, `switched`,
    /// `cleaned`.
    pub const fn name(self) -> &'static str {
        match self {
            MoveStep::Started => "started",
            MoveStep::Prepared => "prepared",
            MoveStep::Copied => "copied",
            MoveStep::CaughtUp => "caught_up",
            MoveStep::Frozen => "frozen",
            MoveStep::Switched => "switched",
            MoveStep::Cleaned => "cleaned",
        }
    }

    /// The step [`name`](MoveStep::name) gives.
    pub fn from_name(name: &str) -> Option<MoveStep> {
        MoveStep::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for MoveStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A step done, for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The step just done.
    pub step: MoveStep,
    /// What it did, in words.
    pub detail: String,
}

/// What a move did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveReport {
    /// Rows copied from the snapshot, per table.
    pub copied: Vec<TableCount>,
    /// Captured keys replayed (during the catch-up and the freeze).
    pub replayed: u64,
    /// Of those, replayed while frozen.
    pub replayed_frozen: u64,
    /// From marking the tenant frozen to releasing it: the tenant's write pause.
    pub pause: Duration,
}

/// Moves tenants between placements (see the [module docs](self)), connected as the owner of
/// every database involved and of the control database.
pub struct Mover {
    directory: Directory,
    control_url: String,
    servers: BTreeMap<String, String>,
    registry: Registry,
    freeze_below: usize,
    max_rounds: usize,
    freeze_timeout: Duration,
    keep_source: bool,
}

impl std::fmt::Debug for Mover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mover")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(diesel::QueryableByName)]
struct MoveRow {
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    target: String,
    #[diesel(sql_type = Text)]
    step: String,
}

#[derive(diesel::QueryableByName)]
struct FenceRow {
    #[diesel(sql_type = Nullable<Text>)]
    state: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct CapturedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    key: String,
}

#[derive(diesel::QueryableByName)]
struct KeyedLine {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(diesel::QueryableByName, PartialEq, Eq, Debug)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Text)]
    sum: String,
}

type Report<'a> = dyn FnMut(&Progress) + Send + 'a;

fn failed(why: impl std::fmt::Display) -> Error {
    PlacementError::Move(why.to_string()).into()
}

impl Mover {
    /// A mover recording its moves in the directory at `control_url` (as its owner), moving
    /// the tables of `registry`.
    pub fn new(control_url: &str, registry: Registry) -> Result<Self, Error> {
        Ok(Mover {
            directory: Directory::connect(control_url, 2)?,
            control_url: control_url.to_string(),
            servers: BTreeMap::new(),
            registry,
            freeze_below: 200,
            max_rounds: 100,
            freeze_timeout: Duration::from_secs(5),
            keep_source: false,
        })
    }

    /// Server `name`, reached as the tables' owner by `owner_url`, whose database is the
    /// server's shared one.
    pub fn server(mut self, name: &str, owner_url: &str) -> Self {
        self.servers.insert(name.to_string(), owner_url.to_string());
        self
    }

    /// Freeze once a catch-up round replays fewer keys than this (default 200); a move whose
    /// rounds stay larger for [`max_rounds`](Mover::max_rounds) fails before freezing (the
    /// tenant stays where it is; resume it later).
    pub fn freeze_below(mut self, keys: usize) -> Self {
        self.freeze_below = keys;
        self
    }

    /// At most this many catch-up rounds before the freeze (default 100).
    pub fn max_rounds(mut self, rounds: usize) -> Self {
        self.max_rounds = rounds.max(1);
        self
    }

    /// How long the freeze may wait for the tenant's open transactions at the source
    /// (default 5 s); past it, the freeze is given up, the tenant released, and the move
    /// fails (resumable).
    pub fn freeze_timeout(mut self, timeout: Duration) -> Self {
        self.freeze_timeout = timeout;
        self
    }

    /// Keep the tenant's rows at the source after the switch (default: delete them); run
    /// [`cleanup`](Mover::cleanup) later.
    pub fn keep_source(mut self, keep: bool) -> Self {
        self.keep_source = keep;
        self
    }

    /// Moves `tenant` from its placement to `target` (see the [module docs](self)), reporting
    /// each step to `progress`.
    pub async fn move_to(
        &self,
        tenant: &TenantId,
        target: &Placement,
        progress: &mut Report<'_>,
    ) -> Result<MoveReport, Error> {
        self.check_server(target)?;
        let source = self
            .directory
            .get(tenant)
            .await?
            .ok_or_else(|| PlacementError::NotPlaced(tenant.to_string()))?
            .placement;
        self.check_server(&source)?;
        if source.server() == target.server() && source.database() == target.database() {
            return Err(failed(format!(
                "{source} and {target} are one database: a move goes to another database \
                 (another server, or a silo)"
            )));
        }
        // Refused before anything is recorded or changed; the move then goes on on the same
        // connections.
        let mut src = self.connect(&source).await?;
        let mut dst = self.connect(target).await?;
        let infos = self.tables(&mut src, &mut dst).await?;
        check_target(&mut dst, &infos, tenant, target).await?;
        let mut control = self.control().await?;
        let inserted = diesel::sql_query(
            "INSERT INTO tenant_db_placement.moves (tenant_key, key_kind, source, target, step)
             VALUES ($1, $2, $3, $4, 'started') ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .bind::<Text, _>(source.to_string())
        .bind::<Text, _>(target.to_string())
        .execute(&mut control)
        .await?;
        if inserted == 0 {
            return Err(failed(format!(
                "a move of tenant {tenant} is under way: resume it or roll it back"
            )));
        }
        progress(&Progress {
            step: MoveStep::Started,
            detail: format!("{source} -> {target}"),
        });
        self.run(
            tenant,
            (&source, src),
            (target, dst),
            &mut control,
            progress,
        )
        .await
    }

    /// Finishes the move of `tenant` that stopped (see the [module docs](self)).
    pub async fn resume(
        &self,
        tenant: &TenantId,
        progress: &mut Report<'_>,
    ) -> Result<MoveReport, Error> {
        let mut control = self.control().await?;
        let (source, target) = self.recorded(&mut control, tenant).await?;
        let src = self.connect(&source).await?;
        let dst = self.connect(&target).await?;
        self.run(
            tenant,
            (&source, src),
            (&target, dst),
            &mut control,
            progress,
        )
        .await
    }

    /// Undoes the move of `tenant` that stopped before its commit point: the tenant stays at
    /// the source, the target loses what was copied. After the commit point it refuses; move
    /// the tenant back instead.
    pub async fn rollback(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut control = self.control().await?;
        let (source, target) = self.recorded(&mut control, tenant).await?;
        let mut src = self.connect(&source).await?;
        if fence_of(&mut src, tenant).await?.as_deref() == Some("moved") {
            return Err(failed(format!(
                "the move of tenant {tenant} passed its commit point: it is served by {target}; \
                 resume it, then move the tenant back"
            )));
        }
        src.batch_execute(repair_sql()).await?;
        let mut dst = self.connect(&target).await?;
        dst.batch_execute(repair_sql()).await?;
        // Rows at an unfenced target were not copied there by this move (it fences first).
        if fence_of(&mut dst, tenant).await?.is_some() {
            lifecycle::delete_in(&mut dst, &self.registry, tenant, Some(1000), true).await?;
            set_fence(&mut dst, tenant, Some("moved")).await?;
        }
        self.stop_capture(&mut src, tenant).await?;
        diesel::sql_query(
            "UPDATE tenant_db_placement.directory SET state = 'active', updated_at = now()
             WHERE tenant_key = $1 AND key_kind = $2",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .execute(&mut control)
        .await?;
        self.finish(&mut control, tenant).await
    }

    /// Deletes the tenant's rows from the source of its switched move and ends the move (what
    /// [`move_to`](Mover::move_to) does last unless told to
    /// [`keep_source`](Mover::keep_source)).
    pub async fn cleanup(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut control = self.control().await?;
        let (source, _) = self.recorded(&mut control, tenant).await?;
        let mut src = self.connect(&source).await?;
        if fence_of(&mut src, tenant).await?.as_deref() != Some("moved") {
            return Err(failed(format!(
                "the move of tenant {tenant} has not switched: nothing to clean up"
            )));
        }
        self.stop_capture(&mut src, tenant).await?;
        lifecycle::delete_in(&mut src, &self.registry, tenant, Some(1000), true).await?;
        self.finish(&mut control, tenant).await
    }

    async fn finish(
        &self,
        control: &mut AsyncPgConnection,
        tenant: &TenantId,
    ) -> Result<(), Error> {
        diesel::sql_query(
            "DELETE FROM tenant_db_placement.moves WHERE tenant_key = $1 AND key_kind = $2",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .execute(control)
        .await?;
        Ok(())
    }

    async fn recorded(
        &self,
        control: &mut AsyncPgConnection,
        tenant: &TenantId,
    ) -> Result<(Placement, Placement), Error> {
        let rows: Vec<MoveRow> = diesel::sql_query(
            "SELECT source, target, step FROM tenant_db_placement.moves
             WHERE tenant_key = $1 AND key_kind = $2",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .load(control)
        .await?;
        let row = <[MoveRow]>::first(&rows)
            .ok_or_else(|| failed(format!("no move of tenant {tenant} is under way")))?;
        MoveStep::from_name(&row.step)
            .ok_or_else(|| failed(format!("unknown move step `{}`", row.step)))?;
        Ok((row.source.parse()?, row.target.parse()?))
    }

    async fn step(
        &self,
        control: &mut AsyncPgConnection,
        tenant: &TenantId,
        step: MoveStep,
        detail: String,
        progress: &mut Report<'_>,
    ) -> Result<(), Error> {
        diesel::sql_query(
            "UPDATE tenant_db_placement.moves SET step = $3, updated_at = now()
             WHERE tenant_key = $1 AND key_kind = $2",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .bind::<Text, _>(step.name())
        .execute(control)
        .await?;
        progress(&Progress { step, detail });
        Ok(())
    }

    /// The move from `prepared` on; every step is idempotent, so a resumed move runs it too.
    async fn run(
        &self,
        tenant: &TenantId,
        (source, mut src): (&Placement, AsyncPgConnection),
        (target, mut dst): (&Placement, AsyncPgConnection),
        control: &mut AsyncPgConnection,
        progress: &mut Report<'_>,
    ) -> Result<MoveReport, Error> {
        let mut report = MoveReport::default();
        if fence_of(&mut src, tenant).await?.as_deref() != Some("moved") {
            src.batch_execute(repair_sql()).await?;
            dst.batch_execute(repair_sql()).await?;
            set_state(control, tenant, "active").await?;
            let infos = self.tables(&mut src, &mut dst).await?;

            // Prepared.
            let left = check_target(&mut dst, &infos, tenant, target).await?;
            set_fence(&mut dst, tenant, Some("incoming")).await?;
            if left > 0 {
                lifecycle::delete_in(&mut dst, &self.registry, tenant, Some(1000), true).await?;
            }
            self.start_capture(&mut src, &infos, tenant).await?;
            self.step(
                control,
                tenant,
                MoveStep::Prepared,
                format!("{target} fenced, capture on at {source}"),
                progress,
            )
            .await?;

            // Copied.
            let mut exported = Vec::new();
            let manifest =
                lifecycle::export_in(&mut src, &self.registry, tenant, &mut exported, true).await?;
            lifecycle::import_in(&mut dst, &self.registry, tenant, exported.as_slice(), true)
                .await?;
            drop(exported);
            let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
            report.copied = manifest.tables;
            self.step(
                control,
                tenant,
                MoveStep::Copied,
                format!("{rows} rows"),
                progress,
            )
            .await?;

            // Caught up.
            // The freeze waits until a round is small: its length is what is left then.
            let mut last = u64::MAX;
            for _ in 0..self.max_rounds {
                last = replay(&mut src, &mut dst, &infos, tenant).await?;
                report.replayed += last;
                if (last as usize) < self.freeze_below {
                    break;
                }
            }
            if (last as usize) >= self.freeze_below {
                return Err(failed(format!(
                    "tenant {tenant}'s writes outpace the catch-up ({last} keys in the last of \
                     {} rounds): not frozen, still served by {source}; resume later",
                    self.max_rounds
                )));
            }
            self.step(
                control,
                tenant,
                MoveStep::CaughtUp,
                format!("{} captured keys replayed", report.replayed),
                progress,
            )
            .await?;

            // Frozen.
            set_state(control, tenant, "frozen").await?;
            let frozen_at = Instant::now();
            let frozen = self.freeze(&mut src, &mut dst, &infos, tenant).await;
            let n = match frozen {
                Ok(n) => n,
                Err(e) => {
                    let _ = unlock(&mut src, tenant).await;
                    let _ = set_state(control, tenant, "active").await;
                    return Err(e);
                }
            };
            report.replayed += n;
            report.replayed_frozen = n;
            self.step(
                control,
                tenant,
                MoveStep::Frozen,
                format!("{n} keys replayed while frozen; counts and checksums equal"),
                progress,
            )
            .await?;

            // The commit point.
            set_fence(&mut src, tenant, Some("moved")).await?;
            self.switch(control, &mut dst, tenant, target).await?;
            unlock(&mut src, tenant).await?;
            report.pause = frozen_at.elapsed();
        } else {
            self.switch(control, &mut dst, tenant, target).await?;
        }
        self.step(
            control,
            tenant,
            MoveStep::Switched,
            format!(
                "served by {target}; write pause {:.1} ms",
                report.pause.as_secs_f64() * 1000.0
            ),
            progress,
        )
        .await?;
        if !self.keep_source {
            self.stop_capture(&mut src, tenant).await?;
            let deleted =
                lifecycle::delete_in(&mut src, &self.registry, tenant, Some(1000), true).await?;
            let rows: u64 = deleted.tables.iter().map(|t| t.rows).sum();
            self.finish(control, tenant).await?;
            progress(&Progress {
                step: MoveStep::Cleaned,
                detail: format!("{rows} rows deleted from {source}"),
            });
        }
        Ok(report)
    }

    /// Directory to the target, then the target's fence lifted.
    async fn switch(
        &self,
        control: &mut AsyncPgConnection,
        dst: &mut AsyncPgConnection,
        tenant: &TenantId,
        target: &Placement,
    ) -> Result<(), Error> {
        diesel::sql_query(
            "UPDATE tenant_db_placement.directory
             SET placement = $3, state = 'active', updated_at = now()
             WHERE tenant_key = $1 AND key_kind = $2",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .bind::<Text, _>(target.to_string())
        .execute(control)
        .await?;
        set_fence(dst, tenant, None).await
    }

    /// Takes the tenant's lock at the source, replays what is left, compares both sides.
    /// Returns the keys replayed.
    async fn freeze(
        &self,
        src: &mut AsyncPgConnection,
        dst: &mut AsyncPgConnection,
        infos: &[TableInfo],
        tenant: &TenantId,
    ) -> Result<u64, Error> {
        src.batch_execute(&format!(
            "SET lock_timeout = {}",
            self.freeze_timeout.as_millis().max(1)
        ))
        .await?;
        let locked = diesel::sql_query(format!(
            "SELECT pg_catalog.pg_advisory_lock({LOCK_CLASS}, {})",
            lock_key_sql("$1", "$2")
        ))
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .execute(src)
        .await;
        src.batch_execute("RESET lock_timeout").await?;
        locked.map_err(|e| {
            failed(format!(
                "the freeze waited longer than {:?} for tenant {tenant}'s open transactions \
                 ({e}); released, try again",
                self.freeze_timeout
            ))
        })?;
        // No transaction of the tenant is open at the source now: every change it made is
        // captured and visible. Round by round until none is left.
        let mut n = 0;
        loop {
            let round = replay(src, dst, infos, tenant).await?;
            n += round;
            if round == 0 {
                break;
            }
        }
        for info in infos {
            // Both sides at once: this is inside the tenant's write pause.
            let (a, b) = futures_util::future::join(
                checksum(src, info, tenant),
                checksum(dst, info, tenant),
            )
            .await;
            let (a, b) = (a?, b?);
            if a != b {
                return Err(failed(format!(
                    "{}: the source has {} rows (checksum {}), the target {} (checksum {}); released, \
                     nothing switched",
                    info.name, a.n, a.sum, b.n, b.sum
                )));
            }
        }
        Ok(n)
    }

    /// Every registered tenant table, read at both ends (which must agree on its columns).
    async fn tables(
        &self,
        src: &mut AsyncPgConnection,
        dst: &mut AsyncPgConnection,
    ) -> Result<Vec<TableInfo>, Error> {
        let mut infos = Vec::new();
        for t in self.registry.tenant_tables() {
            let column = t.tenant_column().unwrap_or_default();
            let at_source = tables::read(src, t.name(), column)
                .await
                .map_err(|e| failed(format!("{} at the source: {e}", t.name())))?;
            let at_target = tables::read(dst, t.name(), column).await.map_err(|e| {
                failed(format!(
                    "{} at the target: {e} (run the migrations there first)",
                    t.name()
                ))
            })?;
            if at_source.key.is_empty() {
                return Err(failed(format!(
                    "{} has no primary key: a move compares rows by it",
                    t.name()
                )));
            }
            let columns = |i: &TableInfo| {
                let mut c: Vec<(String, String)> = i
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.ty.clone()))
                    .collect();
                c.sort();
                c
            };
            if columns(&at_source) != columns(&at_target) || at_source.key != at_target.key {
                return Err(failed(format!(
                    "{} differs between the source and the target (columns or primary key)",
                    t.name()
                )));
            }
            infos.push(at_source);
        }
        if infos.is_empty() {
            return Err(failed("no tenant table is registered: nothing to move"));
        }
        Ok(tables::fk_order(infos, |t| t))
    }

    async fn start_capture(
        &self,
        src: &mut AsyncPgConnection,
        infos: &[TableInfo],
        tenant: &TenantId,
    ) -> Result<(), Error> {
        diesel::sql_query(
            "INSERT INTO tenant_db.capturing (tenant_key, key_kind) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .execute(src)
        .await?;
        let mut sql = String::new();
        for info in infos {
            let mut args = vec![
                quote_literal(&info.name),
                quote_literal(&info.column),
                quote_literal(info.kind.name()),
            ];
            args.extend(info.key.iter().map(|k| quote_literal(k)));
            sql.push_str(&format!(
                "CREATE OR REPLACE TRIGGER tenant_db_capture
                     AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW
                     EXECUTE FUNCTION tenant_db.capture({});\n",
                info.name,
                args.join(", ")
            ));
        }
        // The triggers wait for the tables' open writes (which the snapshot copy then sees),
        // and hold up other writes while they wait: not for long.
        let mut tries = 0;
        loop {
            let outcome = src
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL lock_timeout = '2s'; {sql} COMMIT"
                ))
                .await;
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = src.batch_execute("ROLLBACK").await;
                    tries += 1;
                    if tries >= 5 {
                        return Err(failed(format!(
                            "could not add the capture triggers at the source: {e}"
                        )));
                    }
                }
            }
        }
    }

    async fn stop_capture(
        &self,
        src: &mut AsyncPgConnection,
        tenant: &TenantId,
    ) -> Result<(), Error> {
        src.batch_execute(&format!(
            "BEGIN;
             DELETE FROM tenant_db.capturing WHERE tenant_key = {t} AND key_kind = {k};
             DELETE FROM tenant_db.captured WHERE tenant_key = {t} AND key_kind = {k};
             COMMIT",
            t = quote_literal(&tenant.to_string()),
            k = quote_literal(tenant.kind().name()),
        ))
        .await?;
        // The triggers go with the last move from this database; a busy table keeps its
        // trigger (it logs nothing while no tenant is captured) until the next move's end.
        let mut drop = String::from("BEGIN; SET LOCAL lock_timeout = '1s';\n");
        drop.push_str("LOCK TABLE tenant_db.capturing IN SHARE MODE;\n");
        for t in self.registry.tenant_tables() {
            drop.push_str(&crate::rls::do_block(&format!(
                " BEGIN
                     IF NOT EXISTS (SELECT FROM tenant_db.capturing) THEN
                         DROP TRIGGER IF EXISTS tenant_db_capture ON {};
                     END IF;
                 END ",
                t.name()
            )));
        }
        drop.push_str("COMMIT");
        if src.batch_execute(&drop).await.is_err() {
            let _ = src.batch_execute("ROLLBACK").await;
        }
        Ok(())
    }

    fn check_server(&self, placement: &Placement) -> Result<(), Error> {
        if self.servers.contains_key(placement.server()) {
            Ok(())
        } else {
            Err(PlacementError::UnknownServer(placement.server().to_string()).into())
        }
    }

    async fn control(&self) -> Result<AsyncPgConnection, Error> {
        Ok(AsyncPgConnection::establish(&self.control_url).await?)
    }

    /// A connection as the owner to `placement`'s database, in its schema for a bridge, with
    /// the time zone fixed so that rows print alike on every server.
    async fn connect(&self, placement: &Placement) -> Result<AsyncPgConnection, Error> {
        let base = self
            .servers
            .get(placement.server())
            .ok_or_else(|| PlacementError::UnknownServer(placement.server().to_string()))?;
        let url = match placement.database() {
            Some(db) => url_with_database(base, db)?,
            None => base.clone(),
        };
        let mut conn = AsyncPgConnection::establish(&url).await?;
        let mut setup = String::from("SET TimeZone = 'UTC'; SET extra_float_digits = 3;");
        if let Some(schema) = placement.schema() {
            setup.push_str(&format!(
                " SET search_path TO {}, public;",
                quote_ident(schema)
            ));
        }
        conn.batch_execute(&setup).await?;
        Ok(conn)
    }
}

/// The tenant's rows at the target, which must be none unless the target is fenced (rows a
/// stopped move copied): rows at an unfenced target may be live, and are never overwritten.
async fn check_target(
    dst: &mut AsyncPgConnection,
    infos: &[TableInfo],
    tenant: &TenantId,
    target: &Placement,
) -> Result<i64, Error> {
    let left = count_rows(dst, infos, tenant).await?;
    if left > 0 && fence_of(dst, tenant).await?.is_none() {
        return Err(failed(format!(
            "tenant {tenant} has {left} rows at {target}, where it is not fenced: they may be \
             live; refusing to overwrite them"
        )));
    }
    Ok(left)
}

async fn set_state(
    control: &mut AsyncPgConnection,
    tenant: &TenantId,
    state: &str,
) -> Result<(), Error> {
    diesel::sql_query(
        "UPDATE tenant_db_placement.directory SET state = $3, updated_at = now()
         WHERE tenant_key = $1 AND key_kind = $2 AND state <> $3",
    )
    .bind::<Text, _>(tenant.to_string())
    .bind::<Text, _>(tenant.kind().name())
    .bind::<Text, _>(state)
    .execute(control)
    .await?;
    Ok(())
}

async fn fence_of(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
) -> Result<Option<String>, Error> {
    let row: FenceRow = diesel::sql_query(
        "SELECT (SELECT state FROM tenant_db.fences WHERE tenant_key = $1 AND key_kind = $2) AS state",
    )
    .bind::<Text, _>(tenant.to_string())
    .bind::<Text, _>(tenant.kind().name())
    .get_result(conn)
    .await?;
    Ok(row.state)
}

async fn set_fence(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    fence: Option<&str>,
) -> Result<(), Error> {
    diesel::sql_query("SELECT tenant_db.set_fence($1, $2, $3)")
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .bind::<Nullable<Text>, _>(fence)
        .execute(conn)
        .await?;
    Ok(())
}

async fn unlock(conn: &mut AsyncPgConnection, tenant: &TenantId) -> Result<(), Error> {
    diesel::sql_query(format!(
        "SELECT pg_catalog.pg_advisory_unlock({LOCK_CLASS}, {})",
        lock_key_sql("$1", "$2")
    ))
    .bind::<Text, _>(tenant.to_string())
    .bind::<Text, _>(tenant.kind().name())
    .execute(conn)
    .await?;
    Ok(())
}

async fn count_rows(
    conn: &mut AsyncPgConnection,
    infos: &[TableInfo],
    tenant: &TenantId,
) -> Result<i64, Error> {
    in_tenant(
        conn,
        Begin::new(tenant).for_move(true),
        false,
        async |conn| {
            let mut n = 0;
            for info in infos {
                n += tables::rows_of(conn, info, tenant).await?;
            }
            Ok(n)
        },
    )
    .await
}

/// The row count of the tenant's rows of `info`'s table and the sum of a 60-bit hash (MD5) of
/// each row's JSON: equal multisets of rows give equal sums, in any order, without sorting
/// (the comparison runs inside the tenant's write pause).
async fn checksum(
    conn: &mut AsyncPgConnection,
    info: &TableInfo,
    tenant: &TenantId,
) -> Result<Sum, Error> {
    let sql = format!(
        "SELECT count(*)::int8 AS n,
                coalesce(sum(('x' || substr(md5(to_jsonb(t)::text), 1, 15))::bit(60)::int8::numeric), 0)::text
                  AS sum
         FROM {} t WHERE {}",
        info.name,
        info.is_tenant(tenant)
    );
    in_tenant(
        conn,
        Begin::new(tenant).for_move(true),
        false,
        async |conn| Ok(diesel::sql_query(sql).get_result(conn).await?),
    )
    .await
}

/// `(pk columns of t)` and the same columns of the records `r` decoded from a JSON array of
/// keys bound as `$1`.
fn keys_match(info: &TableInfo) -> String {
    let cols = |prefix: &str| {
        info.key
            .iter()
            .map(|k| format!("{prefix}.{}", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "({}) IN (SELECT {} FROM jsonb_array_elements($1::jsonb) AS k(v),
                  jsonb_populate_record(NULL::{}, k.v) AS r)",
        cols("t"),
        cols("r"),
        info.name
    )
}

/// The JSON key of a row of `info`'s table `t`, as the capture trigger writes it.
fn key_of(info: &TableInfo) -> String {
    format!(
        "jsonb_build_object({})::text",
        info.key
            .iter()
            .map(|k| format!("{}, t.{}", quote_literal(k), quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// At most this many captured changes per replay.
const ROUND: i64 = 20_000;

/// Replays the captured changes visible now (at most [`ROUND`]): each key's current row is
/// upserted at the target (parents first), or deleted there when the source has none
/// (children first), one statement per table; then those changes are removed from the
/// capture. Returns how many keys.
///
/// Changes are taken by what is visible, not after a position: a change's id is drawn when
/// its transaction writes, and a transaction that drew a lower id may commit after one that
/// drew a higher (a position would skip it for good). A change replayed twice is harmless.
async fn replay(
    src: &mut AsyncPgConnection,
    dst: &mut AsyncPgConnection,
    infos: &[TableInfo],
    tenant: &TenantId,
) -> Result<u64, Error> {
    let captured: Vec<CapturedRow> = diesel::sql_query(
        "SELECT id, table_name, key::text AS key FROM tenant_db.captured
         WHERE tenant_key = $1 AND key_kind = $2 ORDER BY id LIMIT $3",
    )
    .bind::<Text, _>(tenant.to_string())
    .bind::<Text, _>(tenant.kind().name())
    .bind::<BigInt, _>(ROUND)
    .load(src)
    .await?;
    if captured.is_empty() {
        return Ok(0);
    }
    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in &captured {
        keys.entry(&c.table_name).or_default().insert(&c.key);
    }
    let n: usize = keys.values().map(BTreeSet::len).sum();
    // The source's rows for those keys, from one snapshot.
    let mut present: BTreeMap<&str, Vec<KeyedLine>> = BTreeMap::new();
    in_tenant(
        src,
        Begin::new(tenant)
            .modes("ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .for_move(true),
        false,
        async |conn| {
            for info in infos {
                let Some(k) = keys.get(info.name.as_str()) else {
                    continue;
                };
                let array = format!("[{}]", k.iter().copied().collect::<Vec<_>>().join(","));
                let rows: Vec<KeyedLine> = diesel::sql_query(format!(
                    "SELECT {} AS key, to_jsonb(t)::text AS line FROM {} t WHERE {} AND {}",
                    key_of(info),
                    info.name,
                    info.is_tenant(tenant),
                    keys_match(info)
                ))
                .bind::<Text, _>(array)
                .load(conn)
                .await?;
                present.insert(info.name.as_str(), rows);
            }
            Ok(())
        },
    )
    .await?;
    in_tenant(dst, Begin::new(tenant).for_move(true), true, async |conn| {
        for info in infos {
            let rows = present
                .get(info.name.as_str())
                .map_or(&[][..], Vec::as_slice);
            if !rows.is_empty() {
                let array = format!(
                    "[{}]",
                    rows.iter()
                        .map(|r| r.line.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                upsert(conn, info, &array).await?;
            }
        }
        for info in infos.iter().rev() {
            let Some(k) = keys.get(info.name.as_str()) else {
                continue;
            };
            let kept: BTreeSet<&str> = present
                .get(info.name.as_str())
                .into_iter()
                .flatten()
                .map(|r| r.key.as_str())
                .collect();
            let gone: Vec<&str> = k.iter().copied().filter(|k| !kept.contains(k)).collect();
            if gone.is_empty() {
                continue;
            }
            diesel::sql_query(format!(
                "DELETE FROM {} t WHERE {}",
                info.name,
                keys_match(info)
            ))
            .bind::<Text, _>(format!("[{}]", gone.join(",")))
            .execute(conn)
            .await?;
        }
        Ok(())
    })
    .await?;
    let ids: Vec<i64> = captured.iter().map(|c| c.id).collect();
    diesel::sql_query("DELETE FROM tenant_db.captured WHERE id = ANY($1)")
        .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
        .execute(src)
        .await?;
    Ok(n as u64)
}

/// Upserts the rows of the JSON array `rows` into `info`'s table.
async fn upsert(conn: &mut AsyncPgConnection, info: &TableInfo, rows: &str) -> Result<(), Error> {
    let columns: Vec<String> = info
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    let key: Vec<String> = info.key.iter().map(|k| quote_ident(k)).collect();
    let rest: Vec<&String> = columns.iter().filter(|c| !key.contains(c)).collect();
    let action = if rest.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!(
            "DO UPDATE SET ({}) = ROW({})",
            rest.iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            rest.iter()
                .map(|c| format!("EXCLUDED.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let list = columns.join(", ");
    diesel::sql_query(format!(
        "INSERT INTO {table} ({list}) OVERRIDING SYSTEM VALUE
         SELECT {list} FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)
         ON CONFLICT ({key}) {action}",
        table = info.name,
        key = key.join(", ")
    ))
    .bind::<Text, _>(rows)
    .execute(conn)
    .await?;
    Ok(())
}
