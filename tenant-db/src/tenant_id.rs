//! [`TenantId`]: which tenant a transaction acts for.

use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The identity of a tenant: a UUID.
///
/// Build it from a *verified* source (a signed token's claim, your tenant directory), never from
/// an unverified header or URL segment. Parsing is strict: anything but a UUID is an error.
///
/// ```
/// use tenant_db::TenantId;
/// let id: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse()?;
/// assert_eq!(id.to_string(), "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01");
/// assert!("' OR 1=1 --".parse::<TenantId>().is_err());
/// # Ok::<(), tenant_db::ParseTenantIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TenantId(Uuid);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseTenantIdError {
    /// The input was empty (or only whitespace).
    #[error("the tenant id is empty")]
    Empty,
    /// The input is longer than any UUID spelling; its length is given.
    #[error("the tenant id is too long ({0} bytes)")]
    TooLong(usize),
    /// The input is not a UUID.
    #[error("the tenant id is not a UUID")]
    NotAUuid,
    /// The nil UUID is reserved: it never names a tenant.
    #[error("the nil UUID is not a tenant id")]
    Nil,
}

/// The longest accepted spelling: `urn:uuid:` plus the hyphenated form.
const MAX_LEN: usize = 45;

impl TenantId {
    /// Wraps a UUID. The nil UUID is refused: it never names a tenant.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, ParseTenantIdError> {
        if uuid.is_nil() {
            Err(ParseTenantIdError::Nil)
        } else {
            Ok(TenantId(uuid))
        }
    }

    /// A new random tenant id (UUID v4), for provisioning a tenant.
    pub fn new_random() -> Self {
        TenantId(Uuid::new_v4())
    }

    /// Parses raw bytes (from a header, say); non-UTF-8 input is [`ParseTenantIdError::NotAUuid`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ParseTenantIdError> {
        std::str::from_utf8(bytes)
            .map_err(|_| ParseTenantIdError::NotAUuid)?
            .parse()
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for TenantId {
    type Err = ParseTenantIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseTenantIdError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(ParseTenantIdError::TooLong(s.len()));
        }
        let uuid = Uuid::try_parse(s).map_err(|_| ParseTenantIdError::NotAUuid)?;
        TenantId::from_uuid(uuid)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl From<TenantId> for Uuid {
    fn from(id: TenantId) -> Uuid {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any string: a typed error or a tenant id that prints back in canonical form and
        /// parses to itself; never a panic.
        #[test]
        fn any_string_parses_or_is_a_typed_error(s in any::<String>()) {
            match s.parse::<TenantId>() {
                Ok(id) => {
                    prop_assert_eq!(id.to_string().parse::<TenantId>(), Ok(id));
                    prop_assert!(s.trim().len() <= MAX_LEN);
                }
                Err(ParseTenantIdError::TooLong(n)) => prop_assert_eq!(n, s.trim().len()),
                Err(_) => {}
            }
        }

        /// Any bytes, including non-UTF-8 ones.
        #[test]
        fn any_bytes_parse_or_are_a_typed_error(b in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = TenantId::parse_bytes(&b);
        }

        /// SQL-looking input wrapped around a valid id is refused.
        #[test]
        fn injection_around_a_valid_id_is_refused(
            prefix in "('|;|--| OR |/\\*)[ -~]{0,8}",
            id in any::<u128>().prop_filter("nil", |v| *v != 0),
        ) {
            let valid = uuid::Uuid::from_u128(id).to_string();
            let before = format!("{prefix}{valid}");
            let after = format!("{valid}{prefix}");
            prop_assert!(before.parse::<TenantId>().is_err());
            prop_assert!(after.parse::<TenantId>().is_err());
        }
    }

    #[test]
    fn parses_and_rejects() {
        let ok = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01";
        assert_eq!(
            ok.parse::<TenantId>().map(|t| t.to_string()).as_deref(),
            Ok(ok)
        );
        assert_eq!("".parse::<TenantId>(), Err(ParseTenantIdError::Empty));
        assert_eq!("   ".parse::<TenantId>(), Err(ParseTenantIdError::Empty));
        assert_eq!(
            "x".repeat(10_000).parse::<TenantId>(),
            Err(ParseTenantIdError::TooLong(10_000))
        );
        assert_eq!(
            "'; DROP TABLE t; --".parse::<TenantId>(),
            Err(ParseTenantIdError::NotAUuid)
        );
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<TenantId>(),
            Err(ParseTenantIdError::Nil)
        );
        assert_eq!(
            TenantId::parse_bytes(&[0xff, 0xfe]),
            Err(ParseTenantIdError::NotAUuid)
        );
        assert_eq!(
            TenantId::parse_bytes(ok.as_bytes())
                .map(|t| t.to_string())
                .as_deref(),
            Ok(ok)
        );
    }
}
