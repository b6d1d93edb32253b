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
identifier!(
    /// The name of a SIP gateway (a topic level of `{root}/gw/{name}/in|out`): 1 to 16 bytes
    /// of `[a-z0-9_-]`, starting with a letter or digit.
    GatewayName, "gateway name", 16, b"_-"
);

/// A SIP address outside mqchat, in its canonical form `sip:{user}@{host}[:{port}]`: the
/// external party of a conversation reached through the SIP gateway (spec sections 2 and 19).
///
/// The user part is case-sensitive and holds RFC 3261 unreserved characters, `%` escapes and
/// `&=+$,`; the host is a lower-case name or IPv4 address, or an IPv6 reference in brackets;
/// a port is present only when it is not 5060. No URI parameters, no headers, no password.
/// At most 128 bytes in all.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipAddress(Arc<str>);

impl SipAddress {
    /// The maximum length in bytes, `sip:` included.
    pub const MAX_LEN: usize = 128;

    /// Parses and validates the canonical text form.
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        let kind = "sip address";
        let len = value.len();
        if len > Self::MAX_LEN || len < "sip:a@b".len() {
            return Err(IdentityError::Length {
                kind,
                max: Self::MAX_LEN,
                len,
            });
        }
        let bad = |at: usize| IdentityError::Character {
            kind,
            value: value[..value.floor_char_boundary(Self::MAX_LEN)].to_owned(),
            at,
        };
        let rest = value.strip_prefix("sip:").ok_or_else(|| bad(0))?;
        let at_sign = rest.find('@').ok_or_else(|| bad(len))?;
        let (user, host_port) = (&rest[..at_sign], &rest[at_sign + 1..]);
        let user_ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,".contains(&b);
        if user.is_empty() {
            return Err(bad(4));
        }
        if let Some(i) = user.bytes().position(|b| !user_ok(b)) {
            return Err(bad(4 + i));
        }
        let host_at = 4 + at_sign + 1;
        let (host, port) = if host_port.starts_with('[') {
            let close = host_port.find(']').ok_or_else(|| bad(len))?;
            let inner = &host_port[1..close];
            let ipv6_ok =
                |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b':' || b == b'.';
            if inner.is_empty() || !inner.bytes().all(ipv6_ok) {
                return Err(bad(host_at + 1));
            }
            (
                &host_port[..=close],
                host_port[close + 1..].strip_prefix(':'),
            )
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(bad(host_at));
        }
        if !host.starts_with('[') {
            // Labels of [a-z0-9-], neither starting nor ending with `-`, separated by dots.
            let label_ok = |label: &str| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            if !host.split('.').all(label_ok) {
                return Err(bad(host_at));
            }
        }
        let port_at = host_at + host.len() + 1;
        match port {
            None if host.len() == host_port.len() => {}
            None => return Err(bad(port_at - 1)),
            Some(port) => {
                let canonical = port.parse::<u16>().ok().filter(|p| *p != 0 && *p != 5060);
                if canonical.map(|p| p.to_string()).as_deref() != Some(port) {
                    return Err(bad(port_at));
                }
            }
        }
        Ok(Self(Arc::from(value)))
    }

    /// The address as text (`sip:carol@example.net`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user part (before the `@`).
    pub fn user(&self) -> &str {
        let rest = &self.0[4..];
        rest.split_once('@').map_or(rest, |(user, _)| user)
    }

    /// The host, with the port if any (after the `@`).
    pub fn host_port(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, host)| host)
    }
}

impl fmt::Display for SipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SipAddress({:?})", &*self.0)
    }
}

impl std::str::FromStr for SipAddress {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

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
/// user (or by oneself, for notes to self); a group by its id; a conversation with an address
/// outside mqchat by that SIP address. On the wire (text) a group is `#` followed by the group
/// id, a direct conversation the bare user id, an external one `sip:user@host`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum ConversationRef {
    /// The one-to-one conversation with this user.
    Direct(UserId),
    /// The group conversation.
    Group(GroupId),
    /// The conversation with an address outside mqchat, through the SIP gateway.
    Sip(SipAddress),
}

impl ConversationRef {
    /// Parses the wire text form.
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        if let Some(group) = value.strip_prefix('#') {
            return Ok(Self::Group(GroupId::parse(group)?));
        }
        if value.starts_with("sip:") {
            return Ok(Self::Sip(SipAddress::parse(value)?));
        }
        Ok(Self::Direct(UserId::parse(value)?))
    }

    /// The user, if this is a direct conversation.
    pub fn peer(&self) -> Option<&UserId> {
        match self {
            Self::Direct(user) => Some(user),
            Self::Group(_) | Self::Sip(_) => None,
        }
    }
}

impl fmt::Display for ConversationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(user) => f.write_str(user.as_str()),
            Self::Group(group) => write!(f, "#{group}"),
            Self::Sip(address) => f.write_str(address.as_str()),
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

    fn check_sip(input: &str, ok: bool) {
        assert_eq!(
            SipAddress::parse(input).is_ok(),
            ok,
            "sip address {input:?}"
        );
        if ok {
            let conv = ConversationRef::parse(input).expect("valid");
            assert_eq!(conv.to_string(), input);
            assert!(conv.peer().is_none());
        }
    }

    #[test]
    fn sip_addresses() {
        check_sip("sip:carol@example.net", true);
        check_sip("sip:Carol.Smith@example.net", true);
        check_sip("sip:+15551234567@gw.example.net", true);
        check_sip("sip:carol@192.0.2.7:5070", true);
        check_sip("sip:carol@[2001:db8::7]", true);
        check_sip("sip:carol@[2001:db8::7]:5061", true);
        check_sip("sip:a%20b@example.net", true);
        check_sip("sip:carol@Example.net", false);
        check_sip("sip:carol@example.net:5060", false);
        check_sip("sip:carol@example.net:05070", false);
        check_sip("sip:carol@example.net:0", false);
        check_sip("sip:carol@example.net:", false);
        check_sip("sip:carol@example.net;transport=udp", false);
        check_sip("sip:carol@example.net?subject=x", false);
        check_sip("sip:carol:secret@example.net", false);
        check_sip("sip:example.net", false);
        check_sip("sip:@example.net", false);
        check_sip("sip:carol@", false);
        check_sip("sip:carol@.example.net", false);
        check_sip("sip:carol@example-.net", false);
        check_sip("sip:carol@ex--ample.net", true);
        check_sip("sips:carol@example.net", false);
        check_sip("SIP:carol@example.net", false);
        check_sip("sip:ca rol@example.net", false);
        check_sip("sip:carol@[::g]", false);
        check_sip(&format!("sip:{}@example.net", "c".repeat(112)), true);
        check_sip(&format!("sip:{}@example.net", "c".repeat(113)), false);
        let address = SipAddress::parse("sip:carol@example.net:5070").expect("valid");
        assert_eq!(address.user(), "carol");
        assert_eq!(address.host_port(), "example.net:5070");
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
