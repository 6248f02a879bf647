//! The tables a service declares: every `#[derive(TenantTable)]` and `#[derive(GlobalTable)]`
//! registers its table here, so that migrations ([`Registry::migration_sql`]), the doctor
//! ([`DoctorConfig::from_registry`](crate::doctor::DoctorConfig::from_registry)), tenant
//! export and deletion, and the red-team check all work from the same list, written once.
//!
//! [`Registry::collected`] gathers what the derives registered in every crate linked into the
//! running binary (with [`inventory`]); [`Registry::new`] with [`tenant`](Registry::tenant) and
//! [`global`](Registry::global) is the explicit list, for a binary that does not link the
//! models' crate or for a subset. An entry can only be made from a classified table, so the
//! registry says nothing the derives would not: a table is registered as tenant with its real
//! tenant column and key type, or as global.
//!
//! ```
//! # include!("../doctest_schema.rs");
//! #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
//! #[diesel(table_name = notes)]
//! struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
//!
//! # fn main() -> Result<(), tenant_db::Error> {
//! let registry = tenant_db::registry::Registry::collected()?;
//! let notes = registry.tenant_tables().find(|t| t.name() == "\"notes\"").expect("registered");
//! assert_eq!(notes.tenant_column(), Some("tenant_id"));
//! assert!(registry.migration_sql().contains("CREATE POLICY tenant_db_isolation ON \"notes\""));
//! # Ok(()) }
//! ```

use crate::rls::table_name;
use crate::{Error, GlobalTable, KeyType, TenantTable};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;

/// Re-exported for the derives, which register tables with `inventory::submit!`.
pub use inventory;

/// One table, as the derives register it. Made only by [`Entry::tenant`] and
/// [`Entry::global`], from a classified table.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    name: fn() -> Result<String, diesel::result::Error>,
    tenant: Option<(&'static str, KeyType)>,
    module: &'static str,
}

inventory::collect!(Entry);

impl Entry {
    /// The entry of tenant table `T`, derived in module `module` (`module_path!()`).
    pub const fn tenant<T>(module: &'static str) -> Entry
    where
        T: TenantTable,
        T::FromClause: QueryFragment<Pg>,
    {
        Entry {
            name: table_name::<T>,
            tenant: Some((T::TENANT_COLUMN, T::KEY_TYPE)),
            module,
        }
    }

    /// The entry of global table `T`, derived in module `module` (`module_path!()`).
    pub const fn global<T>(module: &'static str) -> Entry
    where
        T: GlobalTable,
        T::FromClause: QueryFragment<Pg>,
    {
        Entry {
            name: table_name::<T>,
            tenant: None,
            module,
        }
    }
}

/// A registered table, its name resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredTable {
    name: String,
    tenant: Option<(&'static str, KeyType)>,
}

impl RegisteredTable {
    /// The table's quoted name as diesel writes it (`"notes"`, or `"billing"."invoices"` for
    /// a table declared in a schema).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema (if the table declares one) and the table, unquoted.
    pub fn schema_and_name(&self) -> (Option<String>, String) {
        let mut parts = crate::rls::split_quoted(&self.name);
        let table = parts.pop().unwrap_or_default();
        (parts.pop(), table)
    }

    /// The tenant column, for a tenant table; `None` for a global table.
    pub fn tenant_column(&self) -> Option<&'static str> {
        self.tenant.map(|(c, _)| c)
    }

    /// The tenant column's type, for a tenant table.
    pub fn key_type(&self) -> Option<KeyType> {
        self.tenant.map(|(_, k)| k)
    }

    /// Whether rows of this table belong to tenants.
    pub fn is_tenant(&self) -> bool {
        self.tenant.is_some()
    }

    /// This tenant table's RLS policies and tenant index ([`crate::rls`]); empty for a global
    /// table.
    pub fn rls_sql(&self) -> String {
        match self.tenant {
            Some((column, key)) => format!(
                "{}{}",
                crate::rls::policy_sql_for(&self.name, column, key),
                crate::rls::tenant_index_sql_for(&self.name, column)
            ),
            None => String::new(),
        }
    }
}

/// A list of registered tables, sorted by name, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    tables: Vec<RegisteredTable>,
}

impl Registry {
    /// An empty registry, to list tables explicitly.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Every table the derives registered in the crates linked into this binary.
    ///
    /// A crate's registrations are linked only if the binary uses something of that crate; a
    /// binary that only runs migrations should name one of its models (or list the tables
    /// with [`Registry::new`]).
    pub fn collected() -> Result<Self, Error> {
        Self::collected_under("")
    }

    /// What the derives registered in module `module` and its submodules (`my_models`,
    /// `my_models::billing`; `""` for everything): for a binary that links the models of
    /// several databases.
    pub fn collected_under(module: &str) -> Result<Self, Error> {
        let mut registry = Registry::new();
        for entry in inventory::iter::<Entry> {
            let inside = module.is_empty()
                || entry
                    .module
                    .strip_prefix(module)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
            if inside {
                registry = registry.with(*entry)?;
            }
        }
        Ok(registry)
    }

    /// Adds tenant table `T`.
    pub fn tenant<T>(self) -> Result<Self, Error>
    where
        T: TenantTable,
        T::FromClause: QueryFragment<Pg>,
    {
        self.with(Entry::tenant::<T>(""))
    }

    /// Adds global table `T`.
    pub fn global<T>(self) -> Result<Self, Error>
    where
        T: GlobalTable,
        T::FromClause: QueryFragment<Pg>,
    {
        self.with(Entry::global::<T>(""))
    }

    /// Adds `entry`, once.
    pub fn with(mut self, entry: Entry) -> Result<Self, Error> {
        let table = RegisteredTable {
            name: (entry.name)()?,
            tenant: entry.tenant,
        };
        match self.tables.binary_search_by(|t| t.name.cmp(&table.name)) {
            Ok(i) if self.tables[i] == table => {}
            // One table, two classifications: two models of one table, derived differently.
            Ok(i) => {
                return Err(Error::Registry(format!(
                    "table {} is registered twice, differently ({:?} and {:?})",
                    table.name, self.tables[i].tenant, table.tenant
                )));
            }
            Err(i) => self.tables.insert(i, table),
        }
        Ok(self)
    }

    /// Every registered table, sorted by name.
    pub fn tables(&self) -> impl Iterator<Item = &RegisteredTable> {
        self.tables.iter()
    }

    /// The registered tenant tables.
    pub fn tenant_tables(&self) -> impl Iterator<Item = &RegisteredTable> {
        self.tables.iter().filter(|t| t.is_tenant())
    }

    /// The registered global tables.
    pub fn global_tables(&self) -> impl Iterator<Item = &RegisteredTable> {
        self.tables.iter().filter(|t| !t.is_tenant())
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The registered table named `name` (quoted as diesel writes it, or `schema.table` /
    /// `table` unquoted).
    pub fn get(&self, name: &str) -> Option<&RegisteredTable> {
        self.tables.iter().find(|t| {
            t.name == name || {
                let (schema, table) = t.schema_and_name();
                let schema = schema.as_deref().unwrap_or("public");
                name == table || name == format!("{schema}.{table}")
            }
        })
    }

    /// One idempotent script, run as the owner after the migrations: the sealed tenant
    /// setting's functions ([`crate::seal::setup_sql`]), then each tenant table's RLS
    /// policies and tenant index.
    pub fn migration_sql(&self) -> String {
        let mut sql = crate::seal::setup_sql();
        for table in self.tenant_tables() {
            sql.push_str(&table.rls_sql());
        }
        sql
    }

    /// SQL (run as the owner) that grants application role `app` writes on every registered
    /// tenant table ([`crate::roles::tenant_table_write_sql_for`]). Global tables stay
    /// read-only; grant writes on one with [`crate::roles::global_table_write_sql`].
    pub fn write_grants_sql(&self, app: &str) -> Result<String, crate::rls::NameError> {
        self.tenant_tables()
            .map(|t| crate::roles::tenant_table_write_sql_for(app, &t.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Registry;

    mod m {
        diesel::table! { only_in_m (tenant_id, id) { tenant_id -> Uuid, id -> BigInt, } }
        #[derive(diesel::Queryable, diesel::Selectable, crate::TenantTable)]
        #[diesel(table_name = only_in_m)]
        #[allow(dead_code)]
        struct Row {
            tenant_id: uuid::Uuid,
            id: i64,
        }
    }

    mod mm {
        diesel::table! { only_in_mm (tenant_id, id) { tenant_id -> BigInt, id -> BigInt, } }
        #[derive(diesel::Queryable, diesel::Selectable, crate::TenantTable)]
        #[diesel(table_name = only_in_mm)]
        #[allow(dead_code)]
        struct Row {
            tenant_id: i64,
            id: i64,
        }
        // The same SQL name as `m`'s table, keyed differently.
        pub(super) mod clash {
            diesel::table! { only_in_m (tenant_id, id) { tenant_id -> BigInt, id -> BigInt, } }
            #[derive(diesel::Queryable, diesel::Selectable, crate::TenantTable)]
            #[diesel(table_name = only_in_m)]
            #[allow(dead_code)]
            struct Row {
                tenant_id: i64,
                id: i64,
            }
        }
    }

    mod shared {
        diesel::table! { app.plans (code) { code -> Text, } }
        #[derive(diesel::Queryable, diesel::Selectable, crate::GlobalTable)]
        #[diesel(table_name = plans)]
        #[allow(dead_code)]
        struct Plan {
            code: String,
        }
    }

    #[test]
    fn a_registry_says_what_each_table_is() -> Result<(), crate::Error> {
        use crate::KeyType;
        let r = Registry::new()
            .tenant::<m::only_in_m::table>()?
            .tenant::<mm::only_in_mm::table>()?
            .global::<shared::plans::table>()?;
        assert!(!r.is_empty() && Registry::new().is_empty());
        assert_eq!(
            names(&r),
            ["\"app\".\"plans\"", "\"only_in_m\"", "\"only_in_mm\""]
        );
        let tenant: Vec<_> = r.tenant_tables().map(|t| t.name()).collect();
        assert_eq!(tenant, ["\"only_in_m\"", "\"only_in_mm\""]);
        let global: Vec<_> = r.global_tables().map(|t| t.name()).collect();
        assert_eq!(global, ["\"app\".\"plans\""]);

        let plans = r
            .get("app.plans")
            .ok_or(crate::Error::Registry("plans".into()))?;
        assert_eq!(
            plans.schema_and_name(),
            (Some("app".to_string()), "plans".to_string())
        );
        assert_eq!(
            (plans.tenant_column(), plans.key_type(), plans.is_tenant()),
            (None, None, false)
        );
        assert_eq!(plans.rls_sql(), "");
        let m = r
            .get("\"only_in_m\"")
            .ok_or(crate::Error::Registry("m".into()))?;
        assert_eq!(m.schema_and_name(), (None, "only_in_m".to_string()));
        assert_eq!(
            (m.tenant_column(), m.key_type(), m.is_tenant()),
            (Some("tenant_id"), Some(KeyType::Uuid), true)
        );
        assert!(
            m.rls_sql()
                .contains("CREATE POLICY tenant_db_isolation ON \"only_in_m\"")
        );
        assert!(m.rls_sql().contains("CREATE INDEX"));
        assert_eq!(
            r.get("only_in_mm").map(|t| t.key_type()),
            Some(Some(KeyType::BigInt))
        );
        assert_eq!(
            r.get("public.only_in_m").map(|t| t.name()),
            Some("\"only_in_m\"")
        );
        assert!(r.get("plans").is_some() && r.get("nothing").is_none());
        assert!(r.get("public.plans").is_none());

        let sql = r.migration_sql();
        assert!(sql.starts_with(&crate::seal::setup_sql()));
        assert!(sql.contains("ON \"only_in_m\"") && sql.contains("ON \"only_in_mm\""));
        assert!(!sql.contains("plans"));
        let grants = r.write_grants_sql("app").expect("a short name");
        assert!(
            grants.contains("ON \"only_in_m\" TO \"app\"")
                && grants.contains("ON \"only_in_mm\" TO \"app\"")
        );
        assert!(!grants.contains("plans"));
        // Everything this crate's tests registered: two of them clash.
        assert!(Registry::collected().is_err());
        Ok(())
    }

    fn names(r: &Registry) -> Vec<&str> {
        r.tables().map(|t| t.name()).collect()
    }

    #[test]
    fn a_module_holds_its_submodules_not_its_namesakes() -> Result<(), crate::Error> {
        let here = module_path!();
        assert_eq!(
            names(&Registry::collected_under(&format!("{here}::m"))?),
            ["\"only_in_m\""]
        );
        assert_eq!(
            names(&Registry::collected_under(&format!("{here}::mm::clash"))?),
            ["\"only_in_m\""]
        );
        assert_eq!(
            names(&Registry::collected_under(&format!("{here}::mm"))?),
            ["\"only_in_m\"", "\"only_in_mm\""]
        );
        // Together, `m`'s table and `clash`'s are one SQL table keyed two ways.
        assert!(Registry::collected_under(here).is_err());
        Ok(())
    }

    #[test]
    fn one_table_registered_twice_alike_is_kept_once_and_differently_is_an_error()
    -> Result<(), crate::Error> {
        let twice = Registry::new()
            .tenant::<m::only_in_m::table>()?
            .tenant::<m::only_in_m::table>()?;
        assert_eq!(names(&twice), ["\"only_in_m\""]);
        let err = twice.tenant::<mm::clash::only_in_m::table>().err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("registered twice, differently")),
            "a second, different registration was accepted"
        );
        Ok(())
    }
}
