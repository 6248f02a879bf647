//! [`keyed_schema!`]: the test schema, for one tenant key type: two tenant tables with
//! composite keys, one global table.

/// Declares the test schema with tenant columns of SQL type `$sql` (diesel's name), Rust type
/// `$key`, column type `$column_type`, in database `$database`.
#[macro_export]
macro_rules! keyed_schema {
    (
        sql: $sql:ident,
        key: $key:ty,
        column_type: $column_type:literal,
        database: $database:literal,
        new_tenant: $new_tenant:expr,
        row_key: $row_key:expr $(,)?
    ) => {
        use tenant_db::{GlobalTable, Tenant, TenantId, TenantTable, TenantValues};

        /// The Rust type of the tenant columns.
        pub type Key = $key;
        /// The SQL type of the tenant columns.
        pub type KeySql = diesel::sql_types::$sql;
        /// The database this schema lives in.
        pub const DATABASE: &str = $database;

        /// A new tenant id of this schema's key kind, unused so far.
        pub fn new_tenant_id() -> TenantId {
            let f: fn() -> TenantId = $new_tenant;
            f()
        }

        /// A new tenant of this schema's key kind, unused so far. Tests open transactions for
        /// it without a token: it is vouched for with the escape hatch
        /// `Tenant::assume_verified`.
        pub fn new_tenant() -> Tenant {
            Tenant::assume_verified(new_tenant_id())
        }

        /// The value the tenant column holds for `tenant`.
        pub fn row_key<T: AsRef<TenantId>>(tenant: &T) -> Key {
            let tenant = tenant.as_ref();
            let f: fn(&TenantId) -> Option<Key> = $row_key;
            match f(tenant) {
                Some(key) => key,
                None => panic!("{tenant:?} is not a key of this schema"),
            }
        }

        diesel::table! {
            customers (tenant_id, id) {
                tenant_id -> $sql,
                id -> BigInt,
                name -> Text,
                email -> Nullable<Text>,
            }
        }

        diesel::table! {
            orders (tenant_id, id) {
                tenant_id -> $sql,
                id -> BigInt,
                customer_id -> BigInt,
                total_cents -> BigInt,
                country_code -> Text,
            }
        }

        diesel::table! {
            countries (code) {
                code -> Text,
                name -> Text,
            }
        }

        diesel::joinable!(orders -> countries (country_code));
        diesel::allow_tables_to_appear_in_same_query!(customers, orders, countries);

        /// A customer row.
        #[derive(Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, TenantTable)]
        #[diesel(table_name = customers)]
        pub struct Customer {
            pub tenant_id: Key,
            pub id: i64,
            pub name: String,
            pub email: Option<String>,
        }

        /// A new customer: no tenant column, tenant-db fills it.
        #[derive(Debug, Clone, diesel::Insertable, diesel::AsChangeset, TenantValues)]
        #[diesel(table_name = customers)]
        pub struct NewCustomer {
            pub id: i64,
            pub name: String,
            pub email: Option<String>,
        }

        /// An order row.
        #[derive(Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, TenantTable)]
        #[diesel(table_name = orders)]
        pub struct Order {
            pub tenant_id: Key,
            pub id: i64,
            pub customer_id: i64,
            pub total_cents: i64,
            pub country_code: String,
        }

        /// A new order.
        #[derive(Debug, Clone, diesel::Insertable, TenantValues)]
        #[diesel(table_name = orders)]
        pub struct NewOrder {
            pub id: i64,
            pub customer_id: i64,
            pub total_cents: i64,
            pub country_code: String,
        }

        /// A country: shared reference data.
        #[derive(Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, GlobalTable)]
        #[diesel(table_name = countries)]
        pub struct Country {
            pub code: String,
            pub name: String,
        }

        /// The tenant tables, quoted, for write grants.
        pub const TENANT_TABLES: &[&str] = &["\"customers\"", "\"orders\""];

        /// The DDL, run as the owner role; RLS and tenant indexes come from `tenant_db::rls`.
        pub fn schema_sql() -> String {
            let rls =
                |sql: Result<String, diesel::result::Error>| sql.unwrap_or_else(|e| format!("-- {e}"));
            format!(
                "CREATE TABLE IF NOT EXISTS countries (code text PRIMARY KEY, name text NOT NULL);
                 INSERT INTO countries VALUES ('FR', 'France'), ('JP', 'Japan') ON CONFLICT DO NOTHING;
                 CREATE TABLE IF NOT EXISTS customers (
                     tenant_id {column_type} NOT NULL, id bigint NOT NULL, name text NOT NULL, email text,
                     PRIMARY KEY (tenant_id, id));
                 CREATE TABLE IF NOT EXISTS orders (
                     tenant_id {column_type} NOT NULL, id bigint NOT NULL, customer_id bigint NOT NULL,
                     total_cents bigint NOT NULL, country_code text NOT NULL REFERENCES countries (code),
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id));
                 CREATE INDEX IF NOT EXISTS orders_tenant_customer ON orders (tenant_id, customer_id);
                 {}{}",
                rls(tenant_db::rls::migration_sql::<customers::table>()),
                rls(tenant_db::rls::migration_sql::<orders::table>()),
                column_type = $column_type,
            )
        }
    };
}
