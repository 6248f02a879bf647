//! Where new tenants go.

use super::{Placement, PlacementError};
use crate::TenantId;
use std::collections::BTreeMap;

/// Chooses a new tenant's placement (see [`Directory::place`](super::Directory::place)).
pub trait PlacementPolicy: Send + Sync {
    /// The placement for `tenant` of `tier`, given every placement in use with its number of
    /// tenants.
    fn place(
        &self,
        tenant: &TenantId,
        tier: Option<&str>,
        load: &[(Placement, u64)],
    ) -> Result<Placement, PlacementError>;
}

/// Pools on the server with the fewest tenants (the first listed on a tie).
#[derive(Clone, Debug)]
pub struct LeastLoaded {
    servers: Vec<String>,
}

impl LeastLoaded {
    /// Among `servers` (names the router knows).
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        LeastLoaded {
            servers: servers.into_iter().map(Into::into).collect(),
        }
    }
}

impl PlacementPolicy for LeastLoaded {
    fn place(
        &self,
        _tenant: &TenantId,
        _tier: Option<&str>,
        load: &[(Placement, u64)],
    ) -> Result<Placement, PlacementError> {
        let tenants = |server: &str| {
            load.iter()
                .filter(|(p, _)| p.server() == server)
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        self.servers
            .iter()
            .min_by_key(|s| tenants(s))
            .map(|server| Placement::Pool {
                server: server.clone(),
            })
            .ok_or_else(|| PlacementError::Invalid("LeastLoaded has no server".to_string()))
    }
}

/// A silo per tenant on one server, in a database named after the tenant: `t_` and the
/// tenant's letters and digits (lower case, others as `_`, at most 40), `_` and 8 hex digits of
/// a hash of the tenant, so that two tenants never share a name.
#[derive(Clone, Debug)]
pub struct SiloPerTenant {
    server: String,
}

impl SiloPerTenant {
    /// On `server`.
    pub fn new(server: impl Into<String>) -> Self {
        SiloPerTenant {
            server: server.into(),
        }
    }
}

/// A database or schema name for `tenant` (see [`SiloPerTenant`]).
pub(crate) fn name_for(tenant: &TenantId) -> String {
    use sha2::Digest;
    let text = tenant.to_string();
    let readable: String = text
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let hash = sha2::Sha256::digest(format!("{}:{text}", tenant.kind().name()).as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("t_{readable}_{hex}")
}

impl PlacementPolicy for SiloPerTenant {
    fn place(
        &self,
        tenant: &TenantId,
        _tier: Option<&str>,
        _load: &[(Placement, u64)],
    ) -> Result<Placement, PlacementError> {
        Ok(Placement::Silo {
            server: self.server.clone(),
            database: name_for(tenant),
        })
    }
}

/// A policy per tier (`free`, `pro`, `enterprise`, …, as your configuration names them), and
/// one for tenants of any other tier or none.
pub struct ByTier {
    tiers: BTreeMap<String, Box<dyn PlacementPolicy>>,
    otherwise: Box<dyn PlacementPolicy>,
}

impl std::fmt::Debug for ByTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByTier")
            .field("tiers", &self.tiers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ByTier {
    /// `otherwise` for tiers without a policy of their own.
    pub fn new(otherwise: impl PlacementPolicy + 'static) -> Self {
        ByTier {
            tiers: BTreeMap::new(),
            otherwise: Box::new(otherwise),
        }
    }

    /// `policy` for tenants of `tier`.
    pub fn tier(mut self, tier: &str, policy: impl PlacementPolicy + 'static) -> Self {
        self.tiers.insert(tier.to_string(), Box::new(policy));
        self
    }
}

impl PlacementPolicy for ByTier {
    fn place(
        &self,
        tenant: &TenantId,
        tier: Option<&str>,
        load: &[(Placement, u64)],
    ) -> Result<Placement, PlacementError> {
        tier.and_then(|t| self.tiers.get(t))
            .unwrap_or(&self.otherwise)
            .place(tenant, tier, load)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(s: &str) -> Placement {
        Placement::Pool {
            server: s.to_string(),
        }
    }

    #[test]
    fn least_loaded_counts_every_placement_on_a_server() {
        let t = TenantId::parse_int("7").unwrap();
        let policy = LeastLoaded::new(["a", "b", "c"]);
        let silo_on_b = Placement::Silo {
            server: "b".into(),
            database: "x".into(),
        };
        let load = [
            (pool("a"), 3),
            (pool("b"), 1),
            (silo_on_b, 1),
            (pool("c"), 2),
        ];
        assert_eq!(policy.place(&t, None, &load).unwrap(), pool("b"));
        let load = [(pool("a"), 3), (pool("b"), 3), (pool("c"), 2)];
        assert_eq!(policy.place(&t, None, &load).unwrap(), pool("c"));
        // A server with no tenants yet is the least loaded; ties go to the first listed.
        assert_eq!(policy.place(&t, None, &[]).unwrap(), pool("a"));
        assert!(
            LeastLoaded::new(Vec::<String>::new())
                .place(&t, None, &[])
                .is_err()
        );
    }

    #[test]
    fn tiers_choose_their_policy() {
        let t = TenantId::parse_text("Acme.Corp:EU").unwrap();
        let policy =
            ByTier::new(LeastLoaded::new(["a"])).tier("enterprise", SiloPerTenant::new("s"));
        assert_eq!(policy.place(&t, Some("free"), &[]).unwrap(), pool("a"));
        assert_eq!(policy.place(&t, None, &[]).unwrap(), pool("a"));
        let Placement::Silo { server, database } =
            policy.place(&t, Some("enterprise"), &[]).unwrap()
        else {
            panic!("not a silo")
        };
        assert_eq!(server, "s");
        assert!(database.starts_with("t_acme_corp_eu_"), "{database}");
        assert!(database.len() <= 63);
        // Two tenants whose readable parts agree still get two names.
        let other = TenantId::parse_text("acme-corp.eu").unwrap();
        assert_ne!(name_for(&t), name_for(&other));
        assert!(name_for(&TenantId::parse_text(&"x".repeat(63)).unwrap()).len() <= 63);
        assert_eq!(
            format!("{policy:?}"),
            r#"ByTier { tiers: ["enterprise"], .. }"#
        );
    }
}
