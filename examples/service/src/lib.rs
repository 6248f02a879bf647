//! A small projects-and-tasks API on tenant-db and axum: two tenant tables with a composite
//! foreign key, one global table (plans), list/create/get/update/delete, a join and a
//! group-by. Every handler takes the verified tenant from the token and opens one transaction.
#![allow(missing_docs)]

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use diesel::dsl::count;
use serde::{Deserialize, Serialize};
use tenant_db::identity::{MasterKey, TokenVerifier, VerifyingKey};
use tenant_db::prelude::*;
use tenant_db::{Error, KeyKind, values};
use tenant_db_axum::{Authenticated, HttpError, TenantAuth, TenantHint};

diesel::table! {
    plans (code) {
        code -> Text,
        name -> Text,
    }
}

diesel::table! {
    projects (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        name -> Text,
        plan_code -> Text,
    }
}

diesel::table! {
    tasks (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        project_id -> BigInt,
        title -> Text,
        done -> Bool,
    }
}

diesel::joinable!(projects -> plans (plan_code));
diesel::allow_tables_to_appear_in_same_query!(plans, projects, tasks);

#[derive(
    Debug, Serialize, Deserialize, PartialEq, diesel::Queryable, diesel::Selectable, GlobalTable,
)]
#[diesel(table_name = plans)]
pub struct Plan {
    pub code: String,
    pub name: String,
}

#[derive(
    Debug, Serialize, Deserialize, PartialEq, diesel::Queryable, diesel::Selectable, TenantTable,
)]
#[diesel(table_name = projects)]
pub struct Project {
    #[serde(skip)]
    pub tenant_id: uuid::Uuid,
    pub id: i64,
    pub name: String,
    pub plan_code: String,
}

#[derive(Debug, Deserialize, diesel::Insertable, TenantValues)]
#[diesel(table_name = projects)]
pub struct NewProject {
    pub id: i64,
    pub name: String,
    pub plan_code: String,
}

#[derive(Debug, Deserialize)]
pub struct Rename {
    pub name: String,
}

#[derive(
    Debug, Serialize, Deserialize, PartialEq, diesel::Queryable, diesel::Selectable, TenantTable,
)]
#[diesel(table_name = tasks)]
pub struct Task {
    #[serde(skip)]
    pub tenant_id: uuid::Uuid,
    pub id: i64,
    pub project_id: i64,
    pub title: String,
    pub done: bool,
}

#[derive(Debug, Deserialize, diesel::Insertable, TenantValues)]
#[diesel(table_name = tasks)]
pub struct NewTask {
    pub id: i64,
    pub title: String,
}

#[derive(Debug, Deserialize, diesel::Insertable, TenantValues)]
#[diesel(table_name = tasks)]
struct TaskRow {
    id: i64,
    project_id: i64,
    title: String,
}

/// The database the service uses.
pub const DATABASE: &str = "tenant_db_service";
/// The audience its tokens must name.
pub const AUDIENCE: &str = "projects-api";

/// The schema: tables, then RLS and tenant indexes from `tenant_db::rls::migration_sql`.
pub fn schema_sql() -> Result<String, diesel::result::Error> {
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS plans (code text PRIMARY KEY, name text NOT NULL);
         INSERT INTO plans VALUES ('free', 'Free'), ('team', 'Team') ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS projects (
             tenant_id uuid NOT NULL, id bigint NOT NULL, name text NOT NULL,
             plan_code text NOT NULL REFERENCES plans (code),
             PRIMARY KEY (tenant_id, id));
         CREATE TABLE IF NOT EXISTS tasks (
             tenant_id uuid NOT NULL, id bigint NOT NULL, project_id bigint NOT NULL,
             title text NOT NULL, done boolean NOT NULL DEFAULT false,
             PRIMARY KEY (tenant_id, id),
             FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id));
         {}{}",
        tenant_db::rls::migration_sql::<projects::table>()?,
        tenant_db::rls::migration_sql::<tasks::table>()?,
    ))
}

/// The tenant tables, for write grants.
pub const TENANT_TABLES: &[&str] = &["\"projects\"", "\"tasks\""];

#[derive(Clone, FromRef)]
pub struct App {
    pub db: TenantDb,
    pub auth: TenantAuth,
}

/// The verifier: HS256 with a key per tenant derived from `master`.
pub fn verifier(
    master: MasterKey,
) -> Result<TokenVerifier, tenant_db::identity::VerifierConfigError> {
    TokenVerifier::builder(KeyKind::Uuid)
        .key(VerifyingKey::per_tenant(master))
        .audience(AUDIENCE)
        .build()
}

/// The API.
pub fn router(db: TenantDb, verifier: TokenVerifier, hint: TenantHint) -> Router {
    router_with(db, TenantAuth::new(verifier).hint(hint))
}

/// The tiers the service runs with: requests per second, pool share and statement timeout
/// per tier (see `tenant_db::limits`).
pub const TIERS: &str = r#"{
    "default_tier": "free",
    "tiers": {
        "free": {"requests_per_second": 10, "burst": 20, "max_connections": 2, "statement_timeout_ms": 2000},
        "pro": {"requests_per_second": 100, "burst": 200, "max_connections": 4, "statement_timeout_ms": 10000},
        "enterprise": {"requests_per_second": 1000, "burst": 2000, "max_connections": 8}
    }
}"#;

/// The API with the edge `auth` (a rate limiter, a hint), and `/metrics` when `metrics` is
/// given: the usage metrics, as Prometheus text.
pub fn router_with_metrics(
    db: TenantDb,
    auth: TenantAuth,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Router {
    let api = router_with(db, auth);
    match metrics {
        Some(handle) => api.route(
            "/metrics",
            get(async move || handle.render()).with_state(()),
        ),
        None => api,
    }
}

fn router_with(db: TenantDb, auth: TenantAuth) -> Router {
    Router::new()
        .route("/plans", get(list_plans))
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{id}",
            get(get_project).put(rename_project).delete(delete_project),
        )
        .route("/projects/{id}/tasks", get(list_tasks).post(create_task))
        .route("/stats", get(stats))
        .layer(axum::middleware::from_fn(tenant_db_axum::request_scope))
        .with_state(App { db, auth })
}

type Reply<T> = Result<Json<T>, HttpError>;

async fn list_plans(State(db): State<TenantDb>, auth: Authenticated) -> Reply<Vec<Plan>> {
    Ok(Json(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(plans::table)
                    .order(plans::code)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await?,
    ))
}

async fn list_projects(State(db): State<TenantDb>, auth: Authenticated) -> Reply<Vec<Project>> {
    Ok(Json(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(projects::table)
                    .order(projects::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await?,
    ))
}

async fn create_project(
    State(db): State<TenantDb>,
    auth: Authenticated,
    Json(new): Json<NewProject>,
) -> Result<StatusCode, HttpError> {
    db.transaction(auth.tenant(), async |mut tx| {
        let s = tx.scope();
        s.insert(projects::table)
            .values(new)
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await?;
    Ok(StatusCode::CREATED)
}

async fn get_project(
    State(db): State<TenantDb>,
    auth: Authenticated,
    Path(id): Path<i64>,
) -> Reply<Project> {
    Ok(Json(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(projects::table)
                    .filter(projects::id.eq(id))
                    .first(&mut tx)
                    .await?,
            )
        })
        .await?,
    ))
}

/// 0 rows changed is this tenant's 404.
fn one_row(changed: usize) -> Result<StatusCode, HttpError> {
    match changed {
        0 => Err(diesel::result::Error::NotFound.into()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

async fn rename_project(
    State(db): State<TenantDb>,
    auth: Authenticated,
    Path(id): Path<i64>,
    Json(rename): Json<Rename>,
) -> Result<StatusCode, HttpError> {
    one_row(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.update(projects::table)
                    .filter(projects::id.eq(id))
                    .set(values!(
                        projects::table,
                        projects::name = rename.name.as_str()
                    ))
                    .execute(&mut tx)
                    .await?,
            )
        })
        .await?,
    )
}

async fn delete_project(
    State(db): State<TenantDb>,
    auth: Authenticated,
    Path(id): Path<i64>,
) -> Result<StatusCode, HttpError> {
    one_row(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            s.delete(tasks::table)
                .filter(tasks::project_id.eq(id))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(
                s.delete(projects::table)
                    .filter(projects::id.eq(id))
                    .execute(&mut tx)
                    .await?,
            )
        })
        .await?,
    )
}

/// A join: the project's tasks with the project's name.
async fn list_tasks(
    State(db): State<TenantDb>,
    auth: Authenticated,
    Path(id): Path<i64>,
) -> Reply<Vec<(String, String, bool)>> {
    Ok(Json(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            let project_exists: i64 = s
                .query(projects::table)
                .filter(projects::id.eq(id))
                .count()
                .get_result(&mut tx)
                .await?;
            if project_exists == 0 {
                return Err(Error::Query(diesel::result::Error::NotFound));
            }
            Ok(s.query(tasks::table)
                .inner_join(
                    projects::table.on(projects::id
                        .eq(tasks::project_id)
                        .and(projects::tenant_id.eq(tasks::tenant_id))),
                )
                .filter(tasks::project_id.eq(id))
                .select((projects::name, tasks::title, tasks::done))
                .order(tasks::id)
                .load(&mut tx)
                .await?)
        })
        .await?,
    ))
}

async fn create_task(
    State(db): State<TenantDb>,
    auth: Authenticated,
    Path(project): Path<i64>,
    Json(new): Json<NewTask>,
) -> Result<StatusCode, HttpError> {
    db.transaction(auth.tenant(), async |mut tx| {
        let s = tx.scope();
        // The project must be this tenant's: a 404, not a foreign-key error that would say
        // whether another tenant has it.
        let _: Project = s
            .query(projects::table)
            .filter(projects::id.eq(project))
            .first(&mut tx)
            .await?;
        s.insert(tasks::table)
            .values(TaskRow {
                id: new.id,
                project_id: project,
                title: new.title,
            })
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await?;
    Ok(StatusCode::CREATED)
}

/// A group-by: tasks per project.
async fn stats(State(db): State<TenantDb>, auth: Authenticated) -> Reply<Vec<(i64, i64)>> {
    Ok(Json(
        db.transaction(auth.tenant(), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(tasks::table)
                    .group_by(tasks::project_id)
                    .select((tasks::project_id, count(tasks::id)))
                    .order(tasks::project_id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await?,
    ))
}
