//! The tenant directory: tenant → placement, in a control database.

use super::{Placement, PlacementError, PlacementPolicy};
use crate::{Error, KeyKind, TenantId};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The `LISTEN` channel the directory notifies on each change, with `kind:tenant` as payload.
pub(crate) const CHANNEL: &str = "tenant_db_placement";

/// SQL (run as the control database's owner) that creates the directory: the schema
/// `tenant_db_placement` with the tables `directory` (one row per tenant) and `moves` (one row
/// per move under way), and a trigger that notifies routers of each change. `reader` (the
/// application role that routes) may read the directory and nothing else. Idempotent.
pub fn setup_sql(reader: &str) -> Result<String, crate::rls::NameError> {
    let reader = crate::rls::ident("role", reader)?;
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS tenant_db_placement;
REVOKE ALL ON SCHEMA tenant_db_placement FROM PUBLIC;
CREATE TABLE IF NOT EXISTS tenant_db_placement.directory (
    tenant_key text NOT NULL,
    key_kind text NOT NULL,
    placement text NOT NULL,
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'frozen')),
    tier text,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tenant_key, key_kind)
);
CREATE TABLE IF NOT EXISTS tenant_db_placement.moves (
    tenant_key text NOT NULL,
    key_kind text NOT NULL,
    source text NOT NULL,
    target text NOT NULL,
    step text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (tenant_key, key_kind)
);
CREATE OR REPLACE FUNCTION tenant_db_placement.notify() RETURNS trigger
    LANGUAGE plpgsql
AS $tenant_db$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_catalog.pg_notify('{CHANNEL}', OLD.key_kind || ':' || OLD.tenant_key);
    ELSE
        PERFORM pg_catalog.pg_notify('{CHANNEL}', NEW.key_kind || ':' || NEW.tenant_key);
    END IF;
    RETURN NULL;
END
$tenant_db$;
DROP TRIGGER IF EXISTS notify ON tenant_db_placement.directory;
CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON tenant_db_placement.directory
    FOR EACH ROW EXECUTE FUNCTION tenant_db_placement.notify();
REVOKE ALL ON ALL TABLES IN SCHEMA tenant_db_placement FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_db_placement TO {reader};
GRANT SELECT ON tenant_db_placement.directory TO {reader};
"
    ))
}

/// Whether the tenant's writes may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacedState {
    /// Serving.
    Active,
    /// A move is in its short write freeze: routers hold the tenant's new transactions.
    Frozen,
}

/// A tenant's directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Where it lives.
    pub placement: Placement,
    /// Whether a move has frozen it.
    pub state: PlacedState,
    /// Its tier, as the placement policy saw it.
    pub tier: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    tenant_key: String,
    #[diesel(sql_type = Text)]
    key_kind: String,
    #[diesel(sql_type = Text)]
    placement: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Text>)]
    tier: Option<String>,
}

impl Row {
    fn placed(&self) -> Result<Placed, Error> {
        Ok(Placed {
            placement: self.placement.parse()?,
            state: if self.state == "frozen" {
                PlacedState::Frozen
            } else {
                PlacedState::Active
            },
            tier: self.tier.clone(),
        })
    }

    fn tenant(&self) -> Result<TenantId, Error> {
        tenant_of(&self.key_kind, &self.tenant_key)
    }
}

/// The tenant a directory row names.
pub(crate) fn tenant_of(kind: &str, key: &str) -> Result<TenantId, Error> {
    let kind = KeyKind::from_name(kind).ok_or_else(|| {
        PlacementError::Invalid(format!("the directory names an unknown key kind `{kind}`"))
    })?;
    Ok(TenantId::parse_as(kind, key)?)
}

#[derive(diesel::QueryableByName)]
struct Moving {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    moving: bool,
}

#[derive(diesel::QueryableByName)]
struct Load {
    #[diesel(sql_type = Text)]
    placement: String,
    #[diesel(sql_type = BigInt)]
    tenants: i64,
}

/// The directory on a control database (see [`setup_sql`]).
#[derive(Clone)]
pub struct Directory {
    pool: Pool<AsyncPgConnection>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

const SELECT: &str = "SELECT tenant_key, key_kind, placement, state, tier
                      FROM tenant_db_placement.directory";

impl Directory {
    /// The directory of the control database at `url`, over at most `max_size` connections.
    /// Reading needs the reader role of [`setup_sql`]; changing it, the owner.
    pub fn connect(url: &str, max_size: usize) -> Result<Self, Error> {
        Ok(Directory {
            pool: crate::TenantDb::builder(url)
                .max_size(max_size)
                .build_unscoped_pool()?,
        })
    }

    async fn conn(
        &self,
    ) -> Result<
        deadpool::managed::Object<
            diesel_async::pooled_connection::AsyncDieselConnectionManager<AsyncPgConnection>,
        >,
        Error,
    > {
        Ok(self.pool.get().await?)
    }

    /// `tenant`'s entry, if it has one.
    pub async fn get(&self, tenant: &TenantId) -> Result<Option<Placed>, Error> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> =
            diesel::sql_query(format!("{SELECT} WHERE tenant_key = $1 AND key_kind = $2"))
                .bind::<Text, _>(tenant.to_string())
                .bind::<Text, _>(tenant.kind().name())
                .load(&mut *conn)
                .await?;
        <[Row]>::first(&rows).map(Row::placed).transpose()
    }

    /// Every entry, by tenant.
    pub async fn list(&self) -> Result<Vec<(TenantId, Placed)>, Error> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(format!("{SELECT} ORDER BY key_kind, tenant_key"))
            .load(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| Ok((r.tenant()?, r.placed()?)))
            .collect()
    }

    /// Every placement in use, with its number of tenants.
    pub async fn load(&self) -> Result<Vec<(Placement, u64)>, Error> {
        let mut conn = self.conn().await?;
        let rows: Vec<Load> = diesel::sql_query(
            "SELECT placement, count(*)::int8 AS tenants FROM tenant_db_placement.directory
             GROUP BY placement ORDER BY placement",
        )
        .load(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.placement.parse()?, r.tenants.max(0) as u64)))
            .collect()
    }

    /// Places a new tenant with `policy` (given the tenants per placement and the tenant's
    /// `tier`), and returns its placement; a tenant already placed keeps its placement.
    pub async fn place(
        &self,
        tenant: &TenantId,
        tier: Option<&str>,
        policy: &dyn PlacementPolicy,
    ) -> Result<Placement, Error> {
        if let Some(placed) = self.get(tenant).await? {
            return Ok(placed.placement);
        }
        let load = self.load().await?;
        let placement = policy.place(tenant, tier, &load)?;
        let mut conn = self.conn().await?;
        // A concurrent placement of the same tenant wins; this one reads it back.
        diesel::sql_query(
            "INSERT INTO tenant_db_placement.directory (tenant_key, key_kind, placement, tier)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .bind::<Text, _>(placement.to_string())
        .bind::<Nullable<Text>, _>(tier)
        .execute(&mut *conn)
        .await?;
        drop(conn);
        self.get(tenant)
            .await?
            .map(|p| p.placement)
            .ok_or_else(|| PlacementError::NotPlaced(tenant.to_string()).into())
    }

    /// Sets `tenant`'s placement without moving any rows: for a tenant with no rows yet, or
    /// to record where an operator put it. To move a tenant with its rows, use a
    /// [`Mover`](super::Mover), which refuses while a move of the tenant is under way.
    pub async fn set(&self, tenant: &TenantId, placement: &Placement) -> Result<(), Error> {
        let mut conn = self.conn().await?;
        let moving: Moving = diesel::sql_query(
            "SELECT EXISTS (SELECT FROM tenant_db_placement.moves
                            WHERE tenant_key = $1 AND key_kind = $2) AS moving",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .get_result(&mut *conn)
        .await?;
        if moving.moving {
            return Err(PlacementError::Move(format!(
                "tenant {tenant} is being moved: resume or roll the move back first"
            ))
            .into());
        }
        diesel::sql_query(
            "INSERT INTO tenant_db_placement.directory (tenant_key, key_kind, placement)
             VALUES ($1, $2, $3)
             ON CONFLICT (tenant_key, key_kind)
             DO UPDATE SET placement = EXCLUDED.placement, state = 'active', updated_at = now()",
        )
        .bind::<Text, _>(tenant.to_string())
        .bind::<Text, _>(tenant.kind().name())
        .bind::<Text, _>(placement.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Every database in use: the shared database of each of `servers` (with the bridge
    /// schemas placed in it) and every silo, for the doctor and the red-team check.
    pub async fn sites<'s>(
        &self,
        servers: impl IntoIterator<Item = &'s str>,
    ) -> Result<Vec<Site>, Error> {
        let mut sites: std::collections::BTreeMap<(String, Option<String>), Vec<String>> = servers
            .into_iter()
            .map(|s| ((s.to_string(), None), vec!["public".to_string()]))
            .collect();
        for (placement, _) in self.load().await? {
            let key = (
                placement.server().to_string(),
                placement.database().map(str::to_string),
            );
            let schemas = sites
                .entry(key)
                .or_insert_with(|| vec!["public".to_string()]);
            if let Some(schema) = placement.schema()
                && !schemas.iter().any(|s| s == schema)
            {
                schemas.push(schema.to_string());
            }
        }
        Ok(sites
            .into_iter()
            .map(|((server, database), schemas)| Site {
                server,
                database,
                schemas,
            })
            .collect())
    }
}

/// A database the directory uses (see [`Directory::sites`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The server.
    pub server: String,
    /// The silo's database, or `None` for the server's shared one.
    pub database: Option<String>,
    /// `public` and the bridge schemas in it.
    pub schemas: Vec<String>,
}

impl Site {
    /// `server_url` (the server's URL to its shared database) for this site's database.
    pub fn url(&self, server_url: &str) -> Result<String, Error> {
        Ok(match &self.database {
            Some(db) => super::url_with_database(server_url, db)?,
            None => server_url.to_string(),
        })
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.database {
            Some(db) => write!(f, "{}/{db}", self.server),
            None => write!(f, "{}", self.server),
        }
    }
}
