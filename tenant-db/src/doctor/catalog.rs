//! Reads what the audit needs from PostgreSQL's catalogs into plain structs.

use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A table (ordinary or partitioned) in an audited schema.
#[derive(Debug, Clone, diesel::QueryableByName)]
#[cfg_attr(test, derive(Default))]
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
    /// Whether each column is generated (`GENERATED ALWAYS AS (…) STORED`), in order.
    #[diesel(sql_type = Array<Bool>)]
    pub(crate) column_generated: Vec<bool>,
    /// Whether each column's value is made by the server when omitted: an identity column, or
    /// a default of `gen_random_uuid()`, `uuid_generate_v4()` or a sequence. `None` when the
    /// column has a default of another kind (the audit cannot tell), in order.
    #[diesel(sql_type = Array<Nullable<Bool>>)]
    pub(crate) column_server_generated: Vec<Option<bool>>,
    /// Whether the app role may write each column (`INSERT` or `UPDATE`), in order.
    #[diesel(sql_type = Array<Bool>)]
    pub(crate) column_writable: Vec<bool>,
    /// Every table privilege the app role holds (directly, through `PUBLIC`, or through a role
    /// it inherits from), with the grantee it comes through: `PRIVILEGE\tgrantee`, the grantee
    /// being a role name or `PUBLIC`. A privilege held only as a member of the owner has no
    /// grantee and is not listed.
    #[diesel(sql_type = Array<Text>)]
    pub(crate) grants: Vec<String>,
    /// Whether the app role can read the table (`SELECT`, however it holds it).
    #[diesel(sql_type = Bool)]
    pub(crate) app_reads: bool,
    /// Whether the app role can insert into the table.
    #[diesel(sql_type = Bool)]
    pub(crate) app_inserts: bool,
    /// Whether the app role can change the table (`INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`).
    #[diesel(sql_type = Bool)]
    pub(crate) app_writes: bool,
    /// Whether the app role is the owner or a member of it (`pg_has_role`, so through any
    /// chain of grants).
    #[diesel(sql_type = Bool)]
    pub(crate) app_owns: bool,
    /// Whether the table has triggers of its own (not constraint triggers).
    #[diesel(sql_type = Bool)]
    pub(crate) has_triggers: bool,
}

impl Table {
    /// The position of column `name` in `columns` (and every per-column list).
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The privileges among `wanted` that the app role holds, each with the grantees it comes
    /// through.
    pub(crate) fn held<'a>(
        &'a self,
        wanted: &'a [&str],
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.grants.iter().filter_map(move |g| {
            let (privilege, grantee) = g.split_once('\t')?;
            wanted.contains(&privilege).then_some((privilege, grantee))
        })
    }
}

/// A row-level-security policy.
#[derive(Debug, Clone, diesel::QueryableByName)]
#[cfg_attr(test, derive(Default))]
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
    /// Whether the policy names `PUBLIC` and no other role.
    #[diesel(sql_type = Bool)]
    pub(crate) to_public: bool,
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
    /// The primary-key or unique constraint the index backs, if any.
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) constraint: Option<String>,
    #[diesel(sql_type = Bool)]
    pub(crate) primary: bool,
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

/// A view or materialized view the app role can read, and a table it reads.
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

/// A `SECURITY DEFINER` function the app role can execute, in any schema.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct DefinerFunction {
    /// `schema.name(argument types)`, quoted where needed.
    #[diesel(sql_type = Text)]
    pub(crate) signature: String,
    /// The schema the function lives in.
    #[diesel(sql_type = Text)]
    pub(crate) schema: String,
    #[diesel(sql_type = Text)]
    pub(crate) owner: String,
    /// Whether the owner is a superuser or has `BYPASSRLS`.
    #[diesel(sql_type = Bool)]
    pub(crate) owner_bypasses: bool,
    /// The tables of the audited schemas the owner owns (or is a member of the owner of) whose
    /// RLS is not forced: the function reads those without their policies.
    #[diesel(sql_type = Array<BigInt>)]
    pub(crate) owns_unforced: Vec<i64>,
    #[diesel(sql_type = Text)]
    pub(crate) language: String,
    /// The body: `prosrc`, or the SQL-standard body (`BEGIN ATOMIC …`) as PostgreSQL prints it.
    #[diesel(sql_type = Text)]
    pub(crate) source: String,
    /// Whether the function sets its own `search_path`.
    #[diesel(sql_type = Bool)]
    pub(crate) sets_search_path: bool,
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
    /// May execute a two-key advisory-lock function (the form of tenant-db's tenant locks).
    #[diesel(sql_type = Bool)]
    pub(crate) tenant_locks: bool,
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
    /// The owner of the `tenant_db` schema (the role tenant-db's migrations ran as), if it
    /// exists and is neither superuser nor `BYPASSRLS`: the owner fixes propose.
    pub(crate) migration_owner: Option<String>,
    /// Whether `tenant_db.enter(text, text)` exists and the app role may call it.
    pub(crate) has_enter: bool,
}

/// The audited schemas that do not exist.
const MISSING_SCHEMAS: &str = "SELECT s AS name FROM unnest($1::text[]) AS s
WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s)";

#[derive(diesel::QueryableByName)]
struct SchemaName {
    #[diesel(sql_type = Text)]
    name: String,
}

const ROLE: &str =
    "SELECT r.rolname::text AS name, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls,
       coalesce((SELECT bool_or(has_function_privilege(r.oid, p.oid, 'EXECUTE')) FROM pg_proc p
                 WHERE p.pronamespace = 'pg_catalog'::regnamespace
                   AND p.proname LIKE 'pg%advisory%lock%' AND p.proname NOT LIKE '%unlock%'
                   AND p.proargtypes = '23 23'::oidvector), false) AS tenant_locks
     FROM pg_roles r WHERE r.rolname = coalesce($1, current_user)";

const TABLES: &str = "
SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name,
       c.relispartition AS is_partition, c.relrowsecurity AS rls,
       c.relforcerowsecurity AS force, pg_get_userbyid(c.relowner)::text AS owner,
       (SELECT o.rolsuper OR o.rolbypassrls FROM pg_roles o WHERE o.oid = c.relowner) AS owner_bypasses,
       coalesce(cols.columns, '{}') AS columns,
       coalesce(cols.column_types, '{}') AS column_types,
       coalesce(cols.column_not_null, '{}') AS column_not_null,
       coalesce(cols.column_generated, '{}') AS column_generated,
       coalesce(cols.column_server_generated, '{}') AS column_server_generated,
       coalesce(cols.column_writable, '{}') AS column_writable,
       ARRAY(SELECT DISTINCT acl.privilege_type || E'\\t' ||
                    CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee)::text END
             FROM aclexplode(c.relacl) acl
             WHERE acl.grantee = 0 OR pg_has_role($2, acl.grantee, 'USAGE')) AS grants,
       has_table_privilege($2, c.oid, 'SELECT') AS app_reads,
       has_table_privilege($2, c.oid, 'INSERT') AS app_inserts,
       has_table_privilege($2, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') AS app_writes,
       pg_has_role($2, c.relowner, 'MEMBER') AS app_owns,
       EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal) AS has_triggers
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
-- Every per-column list in one pass over the columns (NULL for a table with none).
CROSS JOIN LATERAL (
    SELECT array_agg(a.attname::text ORDER BY a.attnum) AS columns,
           array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS column_types,
           array_agg(a.attnotnull ORDER BY a.attnum) AS column_not_null,
           array_agg(a.attgenerated <> '' ORDER BY a.attnum) AS column_generated,
           array_agg(CASE
                WHEN a.attidentity <> '' THEN true
                WHEN d.adbin IS NULL THEN false
                WHEN pg_get_expr(d.adbin, d.adrelid)
                     ~* '^((public|pg_catalog)\\.)?(gen_random_uuid|uuid_generate_v[14]|nextval)\\('
                  THEN true
                END ORDER BY a.attnum) AS column_server_generated,
           array_agg(has_column_privilege($2, c.oid, a.attnum, 'INSERT')
                     OR has_column_privilege($2, c.oid, a.attnum, 'UPDATE') ORDER BY a.attnum)
             AS column_writable
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
) cols
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1)
ORDER BY n.nspname, c.relname";

const POLICIES: &str = "
SELECT p.polrelid::int8 AS table, p.polname::text AS name, p.polpermissive AS permissive,
       p.polcmd::text AS command,
       (0 = ANY(p.polroles) OR EXISTS (
            SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role($2, r, 'MEMBER'))) AS applies_to_app,
       p.polroles = '{0}'::oid[] AS to_public,
       pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1)";

const INDEXES: &str = "
SELECT i.indrelid::int8 AS table, ic.relname::text AS name, i.indisunique AS unique,
       (SELECT k.conname::text FROM pg_constraint k
        WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u')) AS constraint,
       i.indisprimary AS primary,
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
WHERE v.relkind IN ('v', 'm') AND has_table_privilege($1, v.oid, 'SELECT')";

/// `SECURITY DEFINER` functions the app role can execute, in every schema it can use (not
/// the system's, not an extension's, not tenant-db's own seal and context functions, which read
/// no table and name everything schema-qualified).
const DEFINER_FUNCTIONS: &str = "
SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS signature,
       n.nspname::text AS schema,
       pg_get_userbyid(p.proowner)::text AS owner,
       (SELECT o.rolsuper OR o.rolbypassrls FROM pg_roles o WHERE o.oid = p.proowner) AS owner_bypasses,
       ARRAY(SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND cn.nspname = ANY($2)
               AND NOT c.relforcerowsecurity AND pg_has_role(p.proowner, c.relowner, 'MEMBER'))
         AS owns_unforced,
       l.lanname::text AS language,
       coalesce(nullif(p.prosrc, ''), pg_get_function_sqlbody(p.oid), '') AS source,
       coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) cfg WHERE cfg ILIKE 'search_path=%'), false)
         AS sets_search_path
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE p.prosecdef
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND has_schema_privilege($1, n.oid, 'USAGE')
  AND has_function_privilege($1, p.oid, 'EXECUTE')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
  AND NOT (n.nspname = 'tenant_db'
           AND p.proname IN ('enter', 'set_tenant', 'current_tenant', 'enter_context', 'context'))
ORDER BY 1";

/// The `tenant_db` schema's owner when it is bound by `FORCE`, and whether the app role can
/// call `tenant_db.enter`.
const SEAL: &str = "
SELECT (SELECT pg_get_userbyid(s.nspowner)::text FROM pg_namespace s JOIN pg_roles o ON o.oid = s.nspowner
        WHERE s.nspname = 'tenant_db' AND NOT o.rolsuper AND NOT o.rolbypassrls) AS owner,
       coalesce(has_function_privilege($1, to_regprocedure('tenant_db.enter(text, text)'), 'EXECUTE'),
                false) AS has_enter";

#[derive(diesel::QueryableByName)]
struct Seal {
    #[diesel(sql_type = Nullable<Text>)]
    owner: Option<String>,
    #[diesel(sql_type = Bool)]
    has_enter: bool,
}

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
    let views = diesel::sql_query(VIEWS)
        .bind::<Text, _>(role.name.clone())
        .load(conn)
        .await?;
    let definer_functions = diesel::sql_query(DEFINER_FUNCTIONS)
        .bind::<Text, _>(role.name.clone())
        .bind::<Array<Text>, _>(schemas.clone())
        .load(conn)
        .await?;
    let seal: Vec<Seal> = diesel::sql_query(SEAL)
        .bind::<Text, _>(role.name.clone())
        .load(conn)
        .await?;
    let (migration_owner, has_enter) = seal
        .into_iter()
        .next()
        .map_or((None, false), |s| (s.owner, s.has_enter));
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
        migration_owner,
        has_enter,
    })
}
