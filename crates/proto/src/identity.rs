//! Identities: user, device and group ids, the MQTT client id, and conversation references.
//!
//! Each is parsed once at the edge; a value of these types is always valid, so the rest of
//! the code never re-checks a string. The character sets keep ids safe as MQTT topic levels
//! (no `/`, `+`, `#`, `$`) and unambiguous inside the client id `{user}:{device}`.

use std::fmt;
use std::sync::Arc;

/// Why a string is not a valid identifier. The peer that sent it is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Empty, or longer than the kind's maximum length in bytes.
    #[error("{kind} must be 1 to {max} bytes long, got {len}")]
    Length {
        /// Which kind of identifier.
        kind: &'static str,
        /// The maximum length in bytes.
        max: usize,
        /// The length that was given.
        len: usize,
    },
    /// A character outside the kind's alphabet, or a bad first character.
    #[error("{kind} {value:?} has a character that is not allowed at byte {at}")]
    Character {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected value (truncated to its maximum length).
        value: String,
        /// Byte offset of the first bad character.
        at: usize,
    },
    /// A client id that is not `{user}:{device}`.
    #[error("client id {0:?} is not of the form user:device")]
    ClientId(String),
}

/// Checks `value` against an alphabet: a first character in `[a-z0-9]`, the rest in
/// `[a-z0-9]` or `extra`.
fn check(kind: &'static str, value: &str, max: usize, extra: &[u8]) -> Result<(), IdentityError> {
    let len = value.len();
    if len == 0 || len > max {
        return Err(IdentityError::Length { kind, max, len });
    }
    let first_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    for (at, b) in value.bytes().enumerate() {
        let ok = first_ok(b) || (at > 0 && extra.contains(&b));
        if !ok {
            let mut shown = value.to_owned();
            shown.truncate(value.floor_char_boundary(max));
            return Err(IdentityError::Character {
                kind,
                value: shown,
                at,
            });
        }
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $extra:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The maximum length in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses and validates an identifier.
            pub fn parse(value: &str) -> Result<Self, IdentityError> {
                check($kind, value, $max, $extra)?;
                Ok(Self(Arc::from(value)))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A user id: 1 to 32 bytes of `[a-z0-9._-]`, starting with a letter or digit.
    /// It is the MQTT username and a topic level.
    UserId, "user id", 32, b"._-"
);
identifier!(
    /// A device id, unique within its user: 1 to 16 bytes of `[a-z0-9_-]`, starting with a
    /// letter or digit.
    DeviceId, "device id", 16, b"_-"
);
identifier!(
    /// A group id: 1 to 32 bytes of `[a-z0-9._-]`, starting with a letter or digit.
    GroupId, "group id", 32, b"._-"
);

/// An authenticated device: the pair carried by the MQTT client id `{user}:{device}`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct DeviceIdentity {
    /// The account.
    pub user: UserId,
    /// The device within the account.
    pub device: DeviceId,
}

impl DeviceIdentity {
    /// Builds an identity from parts already parsed.
    pub fn new(user: UserId, device: DeviceId) -> Self {
        Self { user, device }
    }

    /// Parses an MQTT client id of the form `{user}:{device}`.
    pub fn parse_client_id(client_id: &str) -> Result<Self, IdentityError> {
        let (user, device) = client_id
            .split_once(':')
            .ok_or_else(|| IdentityError::ClientId(client_id.to_owned()))?;
        Ok(Self {
            user: UserId::parse(user)?,
            device: DeviceId::parse(device)?,
        })
    }

    /// Checks the pair a device presents at CONNECT: the username must be the client id's
    /// user. Returns the identity the broker and the hub will trust from then on.
    pub fn from_connect(username: &str, client_id: &str) -> Result<Self, IdentityError> {
        let identity = Self::parse_client_id(client_id)?;
        if identity.user.as_str() != username {
            return Err(IdentityError::ClientId(client_id.to_owned()));
        }
        Ok(identity)
    }

    /// The MQTT client id, `{user}:{device}`.
    pub fn client_id(&self) -> String {
        format!("{}:{}", self.user, self.device)
    }
}

impl fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.device)
    }
}

/// A conversation as one participant sees it: a direct conversation is named by the other
/// user (or by oneself, for notes to self); a group by its id. On the wire (text) a group is
/// `#` followed by the group id, a direct conversation the bare user id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum ConversationRef {
    /// The one-to-one conversation with this user.
    Direct(UserId),
    /// The group conversation.
    Group(GroupId),
}

impl ConversationRef {
    /// Parses the wire text form.
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        match value.strip_prefix('#') {
            Some(group) => Ok(Self::Group(GroupId::parse(group)?)),
            None => Ok(Self::Direct(UserId::parse(value)?)),
        }
    }

    /// The user, if this is a direct conversation.
    pub fn peer(&self) -> Option<&UserId> {
        match self {
            Self::Direct(user) => Some(user),
            Self::Group(_) => None,
        }
    }
}

impl fmt::Display for ConversationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(user) => f.write_str(user.as_str()),
            Self::Group(group) => write!(f, "#{group}"),
        }
    }
}

impl std::str::FromStr for ConversationRef {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_user(input: &str, ok: bool) {
        assert_eq!(UserId::parse(input).is_ok(), ok, "user id {input:?}");
    }

    #[test]
    fn user_ids() {
        check_user("alice", true);
        check_user("a", true);
        check_user("0day", true);
        check_user("j.doe_2-x", true);
        check_user(&"a".repeat(32), true);
        check_user(&"a".repeat(33), false);
        check_user("", false);
        check_user("Alice", false);
        check_user(".alice", false);
        check_user("_hub", false);
        check_user("al/ice", false);
        check_user("al+ce", false);
        check_user("al#ce", false);
        check_user("al:ce", false);
        check_user("$sys", false);
        check_user("al ice", false);
        check_user("élise", false);
    }

    #[test]
    fn device_ids() {
        assert!(DeviceId::parse("phone").is_ok());
        assert!(DeviceId::parse("web-1_a").is_ok());
        assert!(DeviceId::parse("web.1").is_err());
        assert!(DeviceId::parse(&"d".repeat(17)).is_err());
    }

    #[test]
    fn client_ids() {
        let id = DeviceIdentity::parse_client_id("alice:phone").expect("valid");
        assert_eq!(id.user.as_str(), "alice");
        assert_eq!(id.device.as_str(), "phone");
        assert_eq!(id.client_id(), "alice:phone");
        assert!(DeviceIdentity::parse_client_id("alice").is_err());
        assert!(DeviceIdentity::parse_client_id("alice:").is_err());
        assert!(DeviceIdentity::parse_client_id("alice:ph:one").is_err());
        assert!(DeviceIdentity::from_connect("alice", "alice:phone").is_ok());
        assert!(DeviceIdentity::from_connect("mallory", "alice:phone").is_err());
    }

    #[test]
    fn conversation_refs() {
        assert_eq!(
            ConversationRef::parse("bob").expect("valid"),
            ConversationRef::Direct(UserId::parse("bob").expect("valid"))
        );
        let group = ConversationRef::parse("#team").expect("valid");
        assert_eq!(group.to_string(), "#team");
        assert!(group.peer().is_none());
        assert!(ConversationRef::parse("#").is_err());
        assert!(ConversationRef::parse("##a").is_err());
    }

    #[test]
    fn long_bad_value_is_truncated_in_error() {
        let err = UserId::parse(&format!("{}/", "é".repeat(40))).expect_err("invalid");
        assert!(matches!(err, IdentityError::Length { .. }));
        let err = UserId::parse("ab/c").expect_err("invalid");
        assert_eq!(
            err,
            IdentityError::Character {
                kind: "user id",
                value: "ab/c".into(),
                at: 2
            }
        );
    }
}
