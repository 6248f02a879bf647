//! Reads what the audit needs from PostgreSQL's catalogs into plain structs.

use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A table (ordinary or partitioned) in an audited schema.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct Table {
    #[diesel(sql_type = BigInt)]
    pub(crate) oid: i64,
    #[diesel(sql_type = Text)]
    pub(crate) schema: String,
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Bool)]
    pub(crate) is_partition: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) rls: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) force: bool,
    #[diesel(sql_type = Text)]
    pub(crate) owner: String,
    /// Whether the owner is a superuser or has `BYPASSRLS` (then `FORCE` changes nothing).
    #[diesel(sql_type = Bool)]
    pub(crate) owner_bypasses: bool,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) columns: Vec<String>,
    /// Each column's type (`format_type`), in the order of `columns`.
    #[diesel(sql_type = Array<Text>)]
    pub(crate) column_types: Vec<String>,
    /// Whether each column is `NOT NULL`, in the order of `columns`.
    #[diesel(sql_type = Array<Bool>)]
    pub(crate) column_not_null: Vec<bool>,
    /// The app role's `TRUNCATE`, `REFERENCES`, `TRIGGER` privileges on the table.
    #[diesel(sql_type = Array<Text>)]
    pub(crate) risky_privileges: Vec<String>,
}

/// A row-level-security policy.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct Policy {
    #[diesel(sql_type = BigInt)]
    pub(crate) table: i64,
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Bool)]
    pub(crate) permissive: bool,
    /// `*` (all), `r`, `a`, `w`, `d`.
    #[diesel(sql_type = Text)]
    pub(crate) command: String,
    /// Whether the policy applies to the app role (it names `PUBLIC`, or a role the app role
    /// is a member of).
    #[diesel(sql_type = Bool)]
    pub(crate) applies_to_app: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) using: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) with_check: Option<String>,
}

/// An index, with its key columns in order (`<expr>` for an expression column).
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct Index {
    #[diesel(sql_type = BigInt)]
    pub(crate) table: i64,
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Bool)]
    pub(crate) unique: bool,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) columns: Vec<String>,
}

/// A foreign key.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct ForeignKey {
    #[diesel(sql_type = BigInt)]
    pub(crate) table: i64,
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) columns: Vec<String>,
    #[diesel(sql_type = BigInt)]
    pub(crate) references: i64,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) referenced_columns: Vec<String>,
}

/// A view or materialized view, and a table it reads.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct ViewDependency {
    #[diesel(sql_type = Text)]
    pub(crate) view: String,
    #[diesel(sql_type = Bool)]
    pub(crate) materialized: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) security_invoker: bool,
    #[diesel(sql_type = BigInt)]
    pub(crate) table: i64,
}

/// A `SECURITY DEFINER` function and its source text.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct DefinerFunction {
    #[diesel(sql_type = Text)]
    pub(crate) signature: String,
    #[diesel(sql_type = Text)]
    pub(crate) source: String,
}

/// The app role's attributes.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct Role {
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Bool)]
    pub(crate) superuser: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) bypass_rls: bool,
}

/// A role the application role is a member of, directly or through other roles, with the
/// chain of memberships that leads to it (first the role the app role was granted).
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct Membership {
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    #[diesel(sql_type = Bool)]
    pub(crate) superuser: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) bypass_rls: bool,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) path: Vec<String>,
}

/// Every role `$1` is a member of, through any chain of grants (cycles stopped).
const MEMBERSHIPS: &str = "
WITH RECURSIVE up(oid, path) AS (
    SELECT m.roleid, ARRAY[r.rolname::text]
    FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
    WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1)
  UNION ALL
    SELECT m.roleid, up.path || r.rolname::text
    FROM up JOIN pg_auth_members m ON m.member = up.oid JOIN pg_roles r ON r.oid = m.roleid
    WHERE NOT r.rolname::text = ANY(up.path)
)
SELECT r.rolname::text AS name, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls,
       up.path AS path
FROM up JOIN pg_roles r ON r.oid = up.oid
ORDER BY array_length(up.path, 1), r.rolname";

/// Everything the rules look at.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) role: Role,
    pub(crate) memberships: Vec<Membership>,
    pub(crate) tables: Vec<Table>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) indexes: Vec<Index>,
    pub(crate) foreign_keys: Vec<ForeignKey>,
    pub(crate) views: Vec<ViewDependency>,
    pub(crate) definer_functions: Vec<DefinerFunction>,
}

/// The audited schemas that do not exist.
const MISSING_SCHEMAS: &str = "SELECT s AS name FROM unnest($1::text[]) AS s
WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s)";

#[derive(diesel::QueryableByName)]
struct SchemaName {
    #[diesel(sql_type = Text)]
    name: String,
}

const ROLE: &str = "SELECT rolname::text AS name, rolsuper AS superuser, rolbypassrls AS bypass_rls
     FROM pg_roles WHERE rolname = coalesce($1, current_user)";

const TABLES: &str = "
SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name,
       c.relispartition AS is_partition, c.relrowsecurity AS rls,
       c.relforcerowsecurity AS force, pg_get_userbyid(c.relowner)::text AS owner,
       (SELECT o.rolsuper OR o.rolbypassrls FROM pg_roles o WHERE o.oid = c.relowner) AS owner_bypasses,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns,
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS column_types,
       ARRAY(SELECT a.attnotnull FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS column_not_null,
       ARRAY(SELECT p FROM unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p
             WHERE has_table_privilege($2, c.oid, p)) AS risky_privileges
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1)
ORDER BY n.nspname, c.relname";

const POLICIES: &str = "
SELECT p.polrelid::int8 AS table, p.polname::text AS name, p.polpermissive AS permissive,
       p.polcmd::text AS command,
       (0 = ANY(p.polroles) OR EXISTS (
            SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role($2, r, 'MEMBER'))) AS applies_to_app,
       pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1)";

const INDEXES: &str = "
SELECT i.indrelid::int8 AS table, ic.relname::text AS name, i.indisunique AS unique,
       ARRAY(SELECT coalesce(a.attname::text, '<expr>')
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS columns
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1)";

const FOREIGN_KEYS: &str = "
SELECT k.conrelid::int8 AS table, k.conname::text AS name,
       ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS x(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.attnum
             ORDER BY x.ord) AS columns,
       k.confrelid::int8 AS references,
       ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS x(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.attnum
             ORDER BY x.ord) AS referenced_columns
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND n.nspname = ANY($1)";

const VIEWS: &str = "
SELECT DISTINCT format('%I.%I', vn.nspname, v.relname) AS view,
       v.relkind = 'm' AS materialized,
       coalesce(v.reloptions::text[] && ARRAY['security_invoker=true', 'security_invoker=on',
                                             'security_invoker=1', 'security_invoker=yes'],
                false) AS security_invoker,
       d.refobjid::int8 AS table
FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_rewrite r ON r.ev_class = v.oid
JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
                AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
WHERE v.relkind IN ('v', 'm')";

const DEFINER_FUNCTIONS: &str = "
SELECT p.oid::regprocedure::text AS signature, coalesce(p.prosrc, '') AS source
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND n.nspname = ANY($1)";

/// Reads the snapshot for `schemas`, with `app_role` (default: the connected role).
pub(crate) async fn read(
    conn: &mut AsyncPgConnection,
    schemas: &[String],
    app_role: Option<&str>,
) -> Result<Snapshot, crate::Error> {
    let schemas = schemas.to_vec();
    let roles: Vec<Role> = diesel::sql_query(ROLE)
        .bind::<Nullable<Text>, _>(app_role)
        .load(conn)
        .await?;
    let role = roles.into_iter().next().ok_or_else(|| {
        crate::Error::Doctor(format!(
            "the application role `{}` does not exist",
            app_role.unwrap_or("current_user")
        ))
    })?;
    let missing: Vec<SchemaName> = diesel::sql_query(MISSING_SCHEMAS)
        .bind::<Array<Text>, _>(schemas.clone())
        .load(conn)
        .await?;
    if let Some(schema) = missing.into_iter().next() {
        return Err(crate::Error::Doctor(format!(
            "schema `{}` does not exist",
            schema.name
        )));
    }
    let by_schema =
        |sql: &'static str| diesel::sql_query(sql).bind::<Array<Text>, _>(schemas.clone());
    let tables = by_schema(TABLES)
        .bind::<Text, _>(role.name.clone())
        .load(conn)
        .await?;
    let policies = by_schema(POLICIES)
        .bind::<Text, _>(role.name.clone())
        .load(conn)
        .await?;
    let indexes = by_schema(INDEXES).load(conn).await?;
    let foreign_keys = by_schema(FOREIGN_KEYS).load(conn).await?;
    let views = diesel::sql_query(VIEWS).load(conn).await?;
    let definer_functions = by_schema(DEFINER_FUNCTIONS).load(conn).await?;
    let memberships = diesel::sql_query(MEMBERSHIPS)
        .bind::<Text, _>(role.name.clone())
        .load(conn)
        .await?;
    Ok(Snapshot {
        role,
        memberships,
        tables,
        policies,
        indexes,
        foreign_keys,
        views,
        definer_functions,
    })
}
