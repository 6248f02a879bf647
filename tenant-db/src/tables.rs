//! What the tools that work table by table ([`crate::redteam`], [`crate::lifecycle`]) read from
//! the catalogue about a tenant table: its columns, its primary key, its foreign keys, and
//! an order that puts referenced tables first.

use crate::KeyKind;
use crate::rls::quote_ident;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A column of a tenant table.
#[derive(Debug, diesel::QueryableByName)]
pub(crate) struct ColumnInfo {
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    /// As `format_type` prints it.
    #[diesel(sql_type = Text)]
    pub(crate) ty: String,
    /// `NOT NULL` without a default, identity or generation: an insert must give a value.
    #[diesel(sql_type = Bool)]
    pub(crate) needs_value: bool,
    /// A generated column: never inserted.
    #[diesel(sql_type = Bool)]
    pub(crate) generated: bool,
    /// The first label of an enum type.
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) first_label: Option<String>,
}

/// A foreign key of a tenant table.
#[derive(Debug, diesel::QueryableByName)]
pub(crate) struct ForeignKey {
    #[diesel(sql_type = BigInt)]
    pub(crate) parent: i64,
    /// The referenced table, as `regclass` prints it.
    #[diesel(sql_type = Text)]
    pub(crate) parent_name: String,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) columns: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) referenced: Vec<String>,
}

#[derive(diesel::QueryableByName)]
struct Oid {
    #[diesel(sql_type = BigInt)]
    oid: i64,
}

#[derive(diesel::QueryableByName)]
struct Names {
    #[diesel(sql_type = Array<Text>)]
    names: Vec<String>,
}

/// A tenant table, read from the catalogue.
#[derive(Debug)]
pub(crate) struct TableInfo {
    /// Quoted, as given.
    pub(crate) name: String,
    /// The tenant column, unquoted.
    pub(crate) column: String,
    pub(crate) oid: i64,
    pub(crate) columns: Vec<ColumnInfo>,
    /// The primary key's columns (empty without one).
    pub(crate) key: Vec<String>,
    pub(crate) foreign_keys: Vec<ForeignKey>,
    pub(crate) kind: KeyKind,
    /// The tenant column's type.
    pub(crate) tenant_ty: String,
}

const COLUMNS: &str = "
SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS ty,
       (a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '')
         AS needs_value,
       a.attgenerated <> '' AS generated,
       (SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = a.atttypid
        ORDER BY e.enumsortorder LIMIT 1) AS first_label
FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

const FOREIGN_KEYS: &str = "
SELECT k.confrelid::int8 AS parent, k.confrelid::regclass::text AS parent_name,
       ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY c(n, o)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = c.n ORDER BY c.o) AS columns,
       ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY c(n, o)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = c.n ORDER BY c.o) AS referenced
FROM pg_constraint k
WHERE k.conrelid = $1::regclass AND k.contype = 'f' AND k.confrelid <> k.conrelid";

const PRIMARY_KEY: &str = "
SELECT coalesce(ARRAY(SELECT a.attname::text FROM pg_index i
         CROSS JOIN unnest(i.indkey::int2[]) WITH ORDINALITY c(n, o)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = c.n
         WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY c.o), '{}') AS names";

/// The oid of `table` (quoted).
pub(crate) async fn oid_of(conn: &mut AsyncPgConnection, table: &str) -> Result<i64, String> {
    let oid: Oid = diesel::sql_query("SELECT $1::regclass::oid::int8 AS oid")
        .bind::<Text, _>(table)
        .get_result(conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(oid.oid)
}

/// Reads tenant table `table` (quoted) with tenant column `column`.
pub(crate) async fn read(
    conn: &mut AsyncPgConnection,
    table: &str,
    column: &str,
) -> Result<TableInfo, String> {
    let text = |e: diesel::result::Error| e.to_string();
    let oid = oid_of(conn, table).await?;
    let foreign_keys: Vec<ForeignKey> = diesel::sql_query(FOREIGN_KEYS)
        .bind::<Text, _>(table)
        .load(conn)
        .await
        .map_err(text)?;
    let columns: Vec<ColumnInfo> = diesel::sql_query(COLUMNS)
        .bind::<Text, _>(table)
        .load(conn)
        .await
        .map_err(text)?;
    let key: Names = diesel::sql_query(PRIMARY_KEY)
        .bind::<Text, _>(table)
        .get_result(conn)
        .await
        .map_err(text)?;
    let Some(tenant) = columns.iter().find(|c| c.name == column) else {
        return Err(format!("it has no column `{column}`"));
    };
    let Some(key_type) = crate::KeyType::from_column_type(&tenant.ty) else {
        return Err(format!(
            "its tenant column is `{}`, not a tenant key type",
            tenant.ty
        ));
    };
    Ok(TableInfo {
        name: table.to_string(),
        column: column.to_string(),
        oid,
        tenant_ty: tenant.ty.clone(),
        kind: key_type.kind(),
        key: key.names,
        foreign_keys,
        columns,
    })
}

impl TableInfo {
    /// `"column" = 'tenant'::type`.
    pub(crate) fn is_tenant(&self, tenant: &crate::TenantId) -> String {
        format!(
            "{} = {}::{}",
            quote_ident(&self.column),
            crate::rls::quote_literal(&tenant.to_string()),
            self.tenant_ty
        )
    }

    /// `ORDER BY` the primary key, or nothing.
    pub(crate) fn order_by(&self) -> String {
        if self.key.is_empty() {
            String::new()
        } else {
            format!(
                " ORDER BY {}",
                self.key
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The rows of `tenant` in `info`'s table, counted in the current transaction (as RLS lets it
/// see them).
pub(crate) async fn rows_of(
    conn: &mut AsyncPgConnection,
    info: &TableInfo,
    tenant: &crate::TenantId,
) -> Result<i64, diesel::result::Error> {
    let n: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {} WHERE {}",
        info.name,
        info.is_tenant(tenant)
    ))
    .get_result(conn)
    .await?;
    Ok(n.n)
}

/// Referenced tables first (among `items`), then by name; a cycle is broken at its first
/// table by name.
pub(crate) fn fk_order<T>(mut items: Vec<T>, info: impl Fn(&T) -> &TableInfo) -> Vec<T> {
    let mut ordered: Vec<T> = Vec::new();
    items.sort_by(|a, b| info(a).name.cmp(&info(b).name));
    while !items.is_empty() {
        let ready = items
            .iter()
            .position(|t| {
                let t = info(t);
                t.foreign_keys.iter().all(|k| {
                    !items
                        .iter()
                        .any(|o| info(o).oid == k.parent && info(o).oid != t.oid)
                })
            })
            .unwrap_or(0);
        ordered.push(items.remove(ready));
    }
    ordered
}
