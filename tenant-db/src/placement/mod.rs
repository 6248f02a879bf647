//! Where a tenant's data lives: pool, bridge and silo placements across PostgreSQL servers, a
//! directory, a router, and online moves between placements.
//!
//! - [`Placement`]: `pool:SERVER` (the shared tables of a server's database, with RLS),
//!   `bridge:SERVER/SCHEMA` (a schema of its own in that database, entered with
//!   `SET LOCAL search_path` in the transaction's first message; RLS stays on as a second
//!   wall), or `silo:SERVER/DATABASE` (a database of its own, with the same roles and RLS).
//! - [`Directory`]: tenant → placement, in a table on a control database
//!   ([`directory::setup_sql`]); new tenants are placed by a [`PlacementPolicy`].
//! - [`Router`]: opens each tenant transaction on the tenant's placement, from the verified
//!   tenant alone, with one pool per server and database (shared by the tenants placed there)
//!   and silo pools opened on first use and closed when idle. It caches the directory and
//!   hears changes through `LISTEN`.
//! - [`Mover`]: moves one tenant online (copy, catch up on the writes made meanwhile, freeze
//!   that tenant's writes briefly, verify counts and checksums, flip the directory), resumable
//!   and reversible after a crash at any step.
//! - [`fence`]: what every database enforces itself: a tenant is entered only where it is
//!   placed, whatever a client's directory says.

mod directory_impl;
pub mod fence;
mod mover;
mod policy;
mod router;

pub mod directory {
    //! The directory's SQL (see [`Directory`](super::Directory)).
    pub use super::directory_impl::setup_sql;
}

pub use directory_impl::{Directory, Placed, PlacedState, Site};
pub use mover::{MoveReport, MoveStep, Mover, Progress};
pub use policy::{ByTier, LeastLoaded, PlacementPolicy, SiloPerTenant};
pub use router::{Router, RouterBuilder};

use std::fmt;
use std::str::FromStr;

/// Where one tenant's rows live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// The shared tables of `server`'s database, isolated by RLS.
    Pool {
        /// A server name the [`Router`] knows.
        server: String,
    },
    /// Tables of its own in `schema` of `server`'s database, with RLS as a second wall.
    Bridge {
        /// A server name the [`Router`] knows.
        server: String,
        /// The tenant's schema.
        schema: String,
    },
    /// A database of its own on `server`, with the same roles and RLS.
    Silo {
        /// A server name the [`Router`] knows.
        server: String,
        /// The tenant's database.
        database: String,
    },
}

impl Placement {
    /// The server.
    pub fn server(&self) -> &str {
        match self {
            Placement::Pool { server }
            | Placement::Bridge { server, .. }
            | Placement::Silo { server, .. } => server,
        }
    }

    /// The database on the server, when it is not the server's shared one.
    pub fn database(&self) -> Option<&str> {
        match self {
            Placement::Silo { database, .. } => Some(database),
            _ => None,
        }
    }

    /// The bridge schema, if any.
    pub fn schema(&self) -> Option<&str> {
        match self {
            Placement::Bridge { schema, .. } => Some(schema),
            _ => None,
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Pool { server } => write!(f, "pool:{server}"),
            Placement::Bridge { server, schema } => write!(f, "bridge:{server}/{schema}"),
            Placement::Silo { server, database } => write!(f, "silo:{server}/{database}"),
        }
    }
}

impl FromStr for Placement {
    type Err = PlacementError;

    /// `pool:SERVER`, `bridge:SERVER/SCHEMA` or `silo:SERVER/DATABASE`. A server name is 1 to
    /// 63 ASCII letters, digits, `_` or `-`; a schema or database name 1 to 63 bytes, without
    /// NUL or `/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| PlacementError::Invalid(format!("placement `{s}`: {why}"));
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected pool:SERVER, bridge:SERVER/SCHEMA or silo:SERVER/DATABASE")
        })?;
        let server_name = |server: &str| -> Result<String, PlacementError> {
            if server.is_empty()
                || server.len() > 63
                || !server
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad(
                    "a server name is 1 to 63 ASCII letters, digits, `_` or `-`",
                ));
            }
            Ok(server.to_string())
        };
        let object_name = |name: &str| -> Result<String, PlacementError> {
            if name.is_empty() || name.len() > 63 || name.contains('\0') || name.contains('/') {
                return Err(bad(
                    "a schema or database name is 1 to 63 bytes, without NUL or `/`",
                ));
            }
            Ok(name.to_string())
        };
        match kind {
            "pool" => Ok(Placement::Pool {
                server: server_name(rest)?,
            }),
            "bridge" | "silo" => {
                let (server, name) = rest
                    .split_once('/')
                    .ok_or_else(|| bad("expected SERVER/NAME after the kind"))?;
                let (server, name) = (server_name(server)?, object_name(name)?);
                if kind == "bridge" {
                    if name.starts_with("pg_") || name == "tenant_db" || name == "public" {
                        return Err(bad(
                            "a bridge schema is not `public`, `tenant_db` or `pg_…`",
                        ));
                    }
                    Ok(Placement::Bridge {
                        server,
                        schema: name,
                    })
                } else {
                    Ok(Placement::Silo {
                        server,
                        database: name,
                    })
                }
            }
            _ => Err(bad("the kind is pool, bridge or silo")),
        }
    }
}

/// What can go wrong with placements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// A placement, a server name or a URL that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The tenant has no placement in the directory.
    #[error("tenant {0} has no placement in the directory")]
    NotPlaced(String),
    /// A placement names a server the router or mover was not given.
    #[error("unknown server `{0}`")]
    UnknownServer(String),
    /// The tenant's writes stayed frozen longer than the router waits.
    #[error("tenant {0} is frozen by a move; retry later")]
    Frozen(String),
    /// A move could not start, continue or finish; the tenant stays where the message says.
    #[error("{0}")]
    Move(String),
}

/// `url` with its database replaced (percent-encoded).
pub(crate) fn url_with_database(url: &str, database: &str) -> Result<String, PlacementError> {
    let bad = |why: String| PlacementError::Invalid(format!("cannot use server URL: {why}"));
    let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(bad("not a postgres:// URL".to_string()));
    }
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "dbname")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed.set_query(None);
    let encoded: String = url::form_urlencoded::byte_serialize(database.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    parsed.set_path(&format!("/{encoded}"));
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Placement, url_with_database};

    #[test]
    fn placements_print_and_parse_back() {
        for text in ["pool:a", "bridge:shard-2/acme", "silo:b/tenant_acme"] {
            let p: Placement = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(
            "silo:b/x".parse::<Placement>().unwrap().database(),
            Some("x")
        );
        assert_eq!(
            "bridge:b/x".parse::<Placement>().unwrap().schema(),
            Some("x")
        );
        assert_eq!("pool:b".parse::<Placement>().unwrap().server(), "b");
    }

    #[test]
    fn names_of_63_bytes_are_allowed() {
        let name = "x".repeat(63);
        for text in [
            format!("pool:{name}"),
            format!("silo:{name}/{name}"),
            format!("bridge:a/{name}"),
        ] {
            assert_eq!(text.parse::<Placement>().unwrap().to_string(), text);
        }
        assert!(
            format!("silo:a/{}", "x".repeat(64))
                .parse::<Placement>()
                .is_err()
        );
    }

    #[test]
    fn bad_placements_are_refused_with_a_reason() {
        let long = "x".repeat(64);
        for (text, why) in [
            ("pool", "expected pool:SERVER"),
            ("pool:", "server name"),
            ("pool:a b", "server name"),
            (&format!("pool:{long}") as &str, "server name"),
            ("silo:a", "SERVER/NAME"),
            ("silo:a/", "schema or database name"),
            ("silo:a/b/c", "schema or database name"),
            ("silo:a/b\0", "schema or database name"),
            ("bridge:a/public", "bridge schema"),
            ("bridge:a/tenant_db", "bridge schema"),
            ("bridge:a/pg_temp", "bridge schema"),
            ("shard:a", "kind is pool"),
        ] {
            let err = text.parse::<Placement>().unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_url_gets_the_database_and_keeps_the_rest() {
        assert_eq!(
            url_with_database(
                "postgres://app:pw@h:5433/shared?sslmode=require&dbname=x",
                "my db"
            )
            .unwrap(),
            "postgres://app:pw@h:5433/my%20db?sslmode=require"
        );
        assert!(url_with_database("mysql://h/d", "x").is_err());
    }
}
