//! [`TenantId`]: which tenant a transaction acts for.

use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The identity of a tenant: a UUID, a positive integer or a short text key (a slug), as the
/// schema's tenant columns hold it (see [`KeyKind`]).
///
/// Build it from a *verified* source (a signed token's claim, your tenant directory), never from
/// an unverified header or URL segment. Parsing is strict: each tenant has exactly one spelling,
/// and anything else is an error.
///
/// ```
/// use tenant_db::{KeyKind, TenantId};
/// let id: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse()?;
/// assert_eq!(id.to_string(), "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01");
/// assert!("' OR 1=1 --".parse::<TenantId>().is_err());
///
/// let account = TenantId::parse_int("4711")?;
/// assert_eq!(account.as_i64(), Some(4711));
/// assert!(TenantId::parse_int("0047").is_err());
///
/// let org = TenantId::parse_as(KeyKind::Text, "acme-eu")?;
/// assert_eq!(org.as_text(), Some("acme-eu"));
/// assert!(TenantId::parse_text("").is_err());
/// # Ok::<(), tenant_db::ParseTenantIdError>(())
/// ```
///
/// A tenant id of one kind never matches a tenant column of another: a query on a table keyed
/// by `bigint` in a transaction opened for a UUID is refused before it is sent
/// ([`Refusal::KeyType`](crate::guard::Refusal::KeyType)), and RLS finds no tenant for that
/// table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(Key);

/// The kinds of tenant key, one per family of column types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A `uuid` column; the nil UUID is refused.
    Uuid,
    /// A `bigint` or `integer` column; ids are positive (`1` to `i64::MAX`), written in
    /// decimal without sign or leading zeros.
    Int,
    /// A `text` or `varchar` column: 1 to 63 bytes of ASCII letters, digits, `-`, `_`, `.` and
    /// `:`, starting with a letter or a digit.
    Text,
}

impl KeyKind {
    /// The name the database functions use for this kind (`uuid`, `int`, `text`).
    pub const fn name(self) -> &'static str {
        match self {
            KeyKind::Uuid => "uuid",
            KeyKind::Int => "int",
            KeyKind::Text => "text",
        }
    }

    /// The kind [`name`](KeyKind::name) gives; `None` for any other string.
    pub fn from_name(name: &str) -> Option<KeyKind> {
        [KeyKind::Uuid, KeyKind::Int, KeyKind::Text]
            .into_iter()
            .find(|kind| kind.name() == name)
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Uuid(Uuid),
    Int(i64),
    Text(TextKey),
}

/// The longest text key, in bytes.
pub const MAX_TEXT_KEY_LEN: usize = 63;

/// A text key, inline so that [`TenantId`] stays `Copy`: `len` bytes of `bytes` are used, the
/// rest are zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct TextKey {
    len: u8,
    bytes: [u8; MAX_TEXT_KEY_LEN],
}

impl TextKey {
    fn as_str(&self) -> &str {
        // Only ASCII is ever stored (see `TenantId::from_text`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseTenantIdError {
    /// The input was empty (or only whitespace).
    #[error("the tenant id is empty")]
    Empty,
    /// The input is longer than any tenant id of its kind; its length is given.
    #[error("the tenant id is too long ({0} bytes)")]
    TooLong(usize),
    /// The input is not a UUID.
    #[error("the tenant id is not a UUID")]
    NotAUuid,
    /// The nil UUID is reserved: it never names a tenant.
    #[error("the nil UUID is not a tenant id")]
    Nil,
    /// The input is not a positive decimal integer without sign or leading zeros.
    #[error("the tenant id is not a positive decimal integer without sign or leading zeros")]
    NotAnInteger,
    /// The integer is 0, negative, or larger than `i64::MAX`.
    #[error("the tenant id is out of range (1 to {})", i64::MAX)]
    OutOfRange,
    /// The text key has a character other than ASCII letters, digits, `-`, `_`, `.`, `:` (or
    /// does not start with a letter or a digit) at the given byte offset.
    #[error("the tenant id has a character not allowed in a text key at byte {0}")]
    InvalidCharacter(usize),
}

/// The longest accepted UUID spelling: `urn:uuid:` plus the hyphenated form.
const MAX_UUID_LEN: usize = 45;
/// The longest decimal spelling of `i64::MAX`.
const MAX_INT_LEN: usize = 19;

impl TenantId {
    /// Wraps a UUID. The nil UUID is refused: it never names a tenant.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, ParseTenantIdError> {
        if uuid.is_nil() {
            Err(ParseTenantIdError::Nil)
        } else {
            Ok(TenantId(Key::Uuid(uuid)))
        }
    }

    /// Wraps an integer key. Keys are positive: 0 and negative numbers are refused.
    pub fn from_i64(id: i64) -> Result<Self, ParseTenantIdError> {
        if id > 0 {
            Ok(TenantId(Key::Int(id)))
        } else {
            Err(ParseTenantIdError::OutOfRange)
        }
    }

    /// Wraps a text key, exactly as given (see [`KeyKind::Text`] for what is allowed).
    pub fn from_text(key: &str) -> Result<Self, ParseTenantIdError> {
        let bytes = key.as_bytes();
        if bytes.is_empty() {
            return Err(ParseTenantIdError::Empty);
        }
        if bytes.len() > MAX_TEXT_KEY_LEN {
            return Err(ParseTenantIdError::TooLong(bytes.len()));
        }
        let allowed = |(i, b): (usize, &u8)| {
            b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'-' | b'_' | b'.' | b':'))
        };
        if let Some((at, _)) = bytes.iter().enumerate().find(|c| !allowed(*c)) {
            return Err(ParseTenantIdError::InvalidCharacter(at));
        }
        let mut text = TextKey {
            len: 0,
            bytes: [0; MAX_TEXT_KEY_LEN],
        };
        text.bytes[..bytes.len()].copy_from_slice(bytes);
        text.len =
            u8::try_from(bytes.len()).map_err(|_| ParseTenantIdError::TooLong(bytes.len()))?;
        Ok(TenantId(Key::Text(text)))
    }

    /// A new random tenant id (UUID v4), for provisioning a tenant.
    pub fn new_random() -> Self {
        TenantId(Key::Uuid(Uuid::new_v4()))
    }

    /// Parses `s` as a tenant id of `kind`. Surrounding whitespace is ignored.
    pub fn parse_as(kind: KeyKind, s: &str) -> Result<Self, ParseTenantIdError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseTenantIdError::Empty);
        }
        match kind {
            KeyKind::Uuid => {
                if s.len() > MAX_UUID_LEN {
                    return Err(ParseTenantIdError::TooLong(s.len()));
                }
                TenantId::from_uuid(Uuid::try_parse(s).map_err(|_| ParseTenantIdError::NotAUuid)?)
            }
            KeyKind::Int => {
                if s.len() > MAX_INT_LEN + 1 {
                    return Err(ParseTenantIdError::TooLong(s.len()));
                }
                if !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') && s != "0" {
                    return Err(ParseTenantIdError::NotAnInteger);
                }
                TenantId::from_i64(s.parse().map_err(|_| ParseTenantIdError::OutOfRange)?)
            }
            KeyKind::Text => TenantId::from_text(s),
        }
    }

    /// Parses an integer key ([`parse_as`](TenantId::parse_as) with [`KeyKind::Int`]).
    pub fn parse_int(s: &str) -> Result<Self, ParseTenantIdError> {
        TenantId::parse_as(KeyKind::Int, s)
    }

    /// Parses a text key ([`parse_as`](TenantId::parse_as) with [`KeyKind::Text`]).
    pub fn parse_text(s: &str) -> Result<Self, ParseTenantIdError> {
        TenantId::parse_as(KeyKind::Text, s)
    }

    /// Parses raw bytes (from a header, say) as a tenant id of `kind`; non-UTF-8 input is an
    /// error of that kind.
    pub fn parse_bytes_as(kind: KeyKind, bytes: &[u8]) -> Result<Self, ParseTenantIdError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => TenantId::parse_as(kind, s),
            Err(e) => Err(match kind {
                KeyKind::Uuid => ParseTenantIdError::NotAUuid,
                KeyKind::Int => ParseTenantIdError::NotAnInteger,
                KeyKind::Text => ParseTenantIdError::InvalidCharacter(e.valid_up_to()),
            }),
        }
    }

    /// Parses raw bytes as a UUID tenant id; non-UTF-8 input is [`ParseTenantIdError::NotAUuid`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ParseTenantIdError> {
        TenantId::parse_bytes_as(KeyKind::Uuid, bytes)
    }

    /// The kind of key this is.
    pub fn kind(&self) -> KeyKind {
        match self.0 {
            Key::Uuid(_) => KeyKind::Uuid,
            Key::Int(_) => KeyKind::Int,
            Key::Text(_) => KeyKind::Text,
        }
    }

    /// The UUID inside, if this is a UUID key.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self.0 {
            Key::Uuid(uuid) => Some(uuid),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer key.
    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            Key::Int(id) => Some(id),
            _ => None,
        }
    }

    /// The text inside, if this is a text key.
    pub fn as_text(&self) -> Option<&str> {
        match &self.0 {
            Key::Text(text) => Some(text.as_str()),
            _ => None,
        }
    }

    /// The UUID, by reference, for binding.
    pub(crate) fn uuid_ref(&self) -> Option<&Uuid> {
        match &self.0 {
            Key::Uuid(uuid) => Some(uuid),
            _ => None,
        }
    }

    /// The integer, by reference, for binding.
    pub(crate) fn int_ref(&self) -> Option<&i64> {
        match &self.0 {
            Key::Int(id) => Some(id),
            _ => None,
        }
    }
}

impl FromStr for TenantId {
    type Err = ParseTenantIdError;

    /// Parses a UUID tenant id; for other kinds use [`TenantId::parse_as`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::parse_as(KeyKind::Uuid, s)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Key::Uuid(uuid) => uuid.hyphenated().fmt(f),
            Key::Int(id) => id.fmt(f),
            Key::Text(text) => f.write_str(text.as_str()),
        }
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({}:{self})", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [KeyKind; 3] = [KeyKind::Uuid, KeyKind::Int, KeyKind::Text];

    proptest! {
        /// Any string, as any kind: a typed error, or a tenant id of that kind that prints in
        /// its one spelling and parses back to itself; never a panic.
        #[test]
        fn any_string_parses_or_is_a_typed_error(s in any::<String>(), k in 0..3usize) {
            let kind = KINDS[k];
            match TenantId::parse_as(kind, &s) {
                Ok(id) => {
                    prop_assert_eq!(id.kind(), kind);
                    prop_assert_eq!(TenantId::parse_as(kind, &id.to_string()), Ok(id));
                    if kind != KeyKind::Uuid {
                        prop_assert_eq!(id.to_string(), s.trim());
                    }
                }
                Err(ParseTenantIdError::TooLong(n)) => prop_assert_eq!(n, s.trim().len()),
                Err(_) => {}
            }
        }

        /// Strings made of the characters keys use, so that many parse.
        #[test]
        fn key_like_strings_round_trip(s in "[0-9a-zA-Z:._-]{0,70}", k in 0..3usize) {
            let kind = KINDS[k];
            if let Ok(id) = TenantId::parse_as(kind, &s) {
                prop_assert_eq!(id.to_string(), s.clone());
                prop_assert_eq!(TenantId::parse_as(kind, &s), Ok(id));
            }
        }

        /// Every positive integer parses back from its decimal spelling; nothing else does.
        #[test]
        fn integers_round_trip(n in any::<i64>()) {
            let parsed = TenantId::parse_int(&n.to_string());
            if n > 0 {
                prop_assert_eq!(parsed.map(|t| t.as_i64()), Ok(Some(n)));
            } else {
                prop_assert!(parsed.is_err());
            }
        }

        /// Any bytes, including non-UTF-8 ones.
        #[test]
        fn any_bytes_parse_or_are_a_typed_error(
            b in prop::collection::vec(any::<u8>(), 0..128),
            k in 0..3usize,
        ) {
            let _ = TenantId::parse_bytes_as(KINDS[k], &b);
        }

        /// SQL-looking input wrapped around a valid id is refused, for every kind.
        #[test]
        fn injection_around_a_valid_id_is_refused(
            prefix in "('|;|--| OR |/\\*)[ -~]{0,8}",
            id in any::<u128>().prop_filter("nil", |v| *v != 0),
        ) {
            let valid = uuid::Uuid::from_u128(id).to_string();
            let number = (id % (i64::MAX as u128)).max(1).to_string();
            // A text key may hold `-`, `.`, `:` (never quotes, inner spaces, `;`, `/`, `*`), and
            // parsing ignores surrounding whitespace: `--` (or `-- ` after the id) is part of a
            // key, bound as a value like the rest.
            let text_allows = prefix
                .trim()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            for (kind, valid) in [(KeyKind::Uuid, &valid), (KeyKind::Int, &number), (KeyKind::Text, &valid)] {
                if kind == KeyKind::Text && (text_allows || prefix.trim().is_empty()) {
                    continue;
                }
                let before = format!("{prefix}{valid}");
                let after = format!("{valid}{prefix}");
                prop_assert!(TenantId::parse_as(kind, &before).is_err());
                prop_assert!(TenantId::parse_as(kind, &after).is_err());
            }
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

    #[test]
    fn every_uuid_spelling_names_one_tenant_and_longer_input_is_refused() {
        let plain = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01";
        let spellings = [
            plain.to_string(),
            plain.to_uppercase(),
            plain.replace('-', ""),
            format!("{{{plain}}}"),
            // The longest spelling (45 bytes) is still a UUID.
            format!("urn:uuid:{plain}"),
            format!("  urn:uuid:{plain}\n"),
        ];
        for s in &spellings {
            assert_eq!(
                s.parse::<TenantId>().map(|t| t.to_string()).as_deref(),
                Ok(plain),
                "{s:?}"
            );
        }
        let longer = format!("urn:uuid:{plain}0");
        assert_eq!(
            longer.parse::<TenantId>(),
            Err(ParseTenantIdError::TooLong(46))
        );
        assert_eq!(
            format!("urn:uuid:{plain}")
                .parse::<TenantId>()
                .map(|t| t.as_uuid()),
            Ok(plain.parse().ok())
        );
    }

    #[test]
    fn integer_keys_have_one_spelling() {
        use ParseTenantIdError::*;
        assert_eq!(
            TenantId::parse_int("9223372036854775807").map(|t| t.as_i64()),
            Ok(Some(i64::MAX))
        );
        assert_eq!(
            TenantId::parse_int(" 42 ").map(|t| t.to_string()),
            Ok("42".into())
        );
        for (input, err) in [
            ("", Empty),
            ("0", OutOfRange),
            ("9223372036854775808", OutOfRange),
            ("99999999999999999999", OutOfRange),
            ("999999999999999999999", TooLong(21)),
            ("042", NotAnInteger),
            ("00", NotAnInteger),
            ("-1", NotAnInteger),
            ("+1", NotAnInteger),
            ("1e3", NotAnInteger),
            ("1_000", NotAnInteger),
            ("4 2", NotAnInteger),
            ("١٢", NotAnInteger),
        ] {
            assert_eq!(TenantId::parse_int(input), Err(err), "{input:?}");
        }
        assert_eq!(TenantId::from_i64(0), Err(OutOfRange));
        assert_eq!(TenantId::from_i64(-7), Err(OutOfRange));
        assert_eq!(TenantId::from_i64(7).map(|t| t.kind()), Ok(KeyKind::Int));
        assert_eq!(
            TenantId::parse_bytes_as(KeyKind::Int, &[0x34, 0xff]),
            Err(NotAnInteger)
        );
    }

    #[test]
    fn text_keys_are_short_slugs() {
        use ParseTenantIdError::*;
        let max = "a".repeat(MAX_TEXT_KEY_LEN);
        assert_eq!(
            TenantId::parse_text(&max).map(|t| t.to_string()),
            Ok(max.clone())
        );
        for ok in ["acme", "Acme-EU", "org:42", "a.b_c-d", "7", "0"] {
            let id = TenantId::parse_text(ok);
            assert_eq!(
                id.map(|t| t.as_text().map(str::to_string)),
                Ok(Some(ok.to_string()))
            );
        }
        for (input, err) in [
            ("", Empty),
            ("  ", Empty),
            ("-acme", InvalidCharacter(0)),
            (".acme", InvalidCharacter(0)),
            ("ac me", InvalidCharacter(2)),
            ("acme'", InvalidCharacter(4)),
            ("acme\0", InvalidCharacter(4)),
            ("acmé", InvalidCharacter(3)),
            ("a/b", InvalidCharacter(1)),
            ("a%", InvalidCharacter(1)),
        ] {
            assert_eq!(TenantId::parse_text(input), Err(err), "{input:?}");
        }
        let long = "a".repeat(MAX_TEXT_KEY_LEN + 1);
        assert_eq!(
            TenantId::parse_text(&long),
            Err(TooLong(MAX_TEXT_KEY_LEN + 1))
        );
        assert_eq!(TenantId::from_text(" acme"), Err(InvalidCharacter(0)));
        assert_eq!(
            TenantId::parse_bytes_as(KeyKind::Text, b"ab\xff"),
            Err(InvalidCharacter(2))
        );
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in KINDS {
            assert_eq!(KeyKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(KeyKind::from_name("UUID"), None);
        assert_eq!(KeyKind::from_name(""), None);
    }

    #[test]
    fn kinds_never_compare_equal() {
        let text = TenantId::parse_text("42");
        let int = TenantId::parse_int("42");
        assert!(text.is_ok() && int.is_ok());
        assert_ne!(text, int);
        let uuid = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01";
        assert_ne!(TenantId::parse_text(uuid), uuid.parse::<TenantId>());
        assert_eq!(
            format!("{:?}", TenantId::parse_int("42")),
            "Ok(TenantId(int:42))"
        );
        assert_eq!(
            int.map(|t| (t.as_uuid(), t.as_text().is_none())),
            Ok((None, true))
        );
        assert_eq!(text.map(|t| (t.as_uuid(), t.as_i64())), Ok((None, None)));
    }

    /// What the scope binds: the key of the tenant's own kind, and nothing for the others.
    #[test]
    fn binding_refs_give_the_key_of_its_own_kind_only() -> Result<(), super::ParseTenantIdError> {
        let int = TenantId::parse_int("42")?;
        let uuid: TenantId = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse()?;
        let text = TenantId::parse_text("acme")?;
        assert_eq!(int.int_ref(), Some(&42));
        assert_eq!(
            (int.uuid_ref(), uuid.int_ref(), text.int_ref()),
            (None, None, None)
        );
        assert_eq!(uuid.uuid_ref(), uuid.as_uuid().as_ref());
        assert!(uuid.uuid_ref().is_some() && text.uuid_ref().is_none());
        Ok(())
    }
}
