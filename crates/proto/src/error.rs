//! Errors: the wire error codes of the spec, and the decoding errors that map onto them.

use std::fmt;

/// An error code as carried in an error reply (packet type 9, key 8).
///
/// Codes are stable: a code is never reused for another meaning. Receivers treat an unknown
/// code like [`ErrorCode::INTERNAL`] for display, and keep the number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// The code's name in the spec (kebab case), if it is a known code.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }

            /// The code with the given spec name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// Every code the spec defines, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$name,)*];
        }
    };
}

codes! {
    /// The payload is not a packet: not CBOR, not a map, a key that is not an unsigned
    /// integer, a duplicate key, no type, or nesting too deep.
    MALFORMED = 1, "malformed";
    /// A field has the wrong type, a value out of range, or a required field is missing.
    INVALID = 2, "invalid";
    /// The payload is larger than the hub accepts.
    TOO_LARGE = 3, "too-large";
    /// The packet type cannot be sent on this topic or in this direction.
    WRONG_TOPIC = 4, "wrong-topic";
    /// The packet type is a request the hub does not know, or an unknown type that cannot be
    /// routed (it has no conversation).
    UNSUPPORTED = 5, "unsupported";
    /// The user named as the conversation or target does not exist.
    NO_SUCH_USER = 6, "no-such-user";
    /// The sender is not allowed to do this.
    FORBIDDEN = 7, "forbidden";
    /// The conversation or event referred to does not exist.
    NOT_FOUND = 8, "not-found";
    /// The action does not fit the current state (e.g. accepting a request never made).
    CONFLICT = 9, "conflict";
    /// Too many packets; retry later.
    RATE_LIMITED = 10, "rate-limited";
    /// The hub failed; retry later. Nothing was stored.
    INTERNAL = 11, "internal";
    /// An invitation or acceptance would pass the maximum group size.
    GROUP_FULL = 32, "group-full";
    /// A message to a SIP address was stored but the SIP peer refused it or never answered.
    NOT_DELIVERED = 80, "not-delivered";
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "ErrorCode({}, {name})", self.0),
            None => write!(f, "ErrorCode({})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "error-{}", self.0),
        }
    }
}

/// A field with a value the schema does not allow. The peer that sent it is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {key} ({name}): {problem}")]
pub struct FieldError {
    /// The field's integer key.
    pub key: u32,
    /// The field's name in the spec.
    pub name: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl FieldError {
    /// A field error with the given problem.
    pub fn new(key: u32, name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            name,
            problem: problem.into(),
        }
    }
}

/// Why bytes could not be decoded as a packet, or a packet does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not well-formed CBOR, or bytes after the packet.
    #[error("not well-formed CBOR: {0}")]
    Cbor(String),
    /// The top-level item is not a map.
    #[error("a packet must be a CBOR map")]
    NotMap,
    /// A map key that is not an unsigned integer below 2^32.
    #[error("map keys must be unsigned integers below 2^32")]
    Key,
    /// The same key twice.
    #[error("key {0} appears twice")]
    DuplicateKey(u32),
    /// Key 0 (the packet type) is missing.
    #[error("the packet has no type (key 0)")]
    NoType,
    /// Arrays, maps and tags nest deeper than this many levels, the packet's map included.
    #[error("the packet nests deeper than {0} levels")]
    TooDeep(usize),
    /// A map inside a value has the same key twice.
    #[error("a map inside the packet has the same key twice")]
    NestedDuplicateKey,
    /// A field has the wrong type or value.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A packet of another type was asked for.
    #[error("expected a packet of type {expected}, got {actual}")]
    Kind {
        /// The type asked for.
        expected: u32,
        /// The type found.
        actual: u32,
    },
}

impl DecodeError {
    /// The wire error code a hub replies with for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Cbor(_)
            | Self::NotMap
            | Self::Key
            | Self::DuplicateKey(_)
            | Self::NoType
            | Self::TooDeep(_)
            | Self::NestedDuplicateKey => ErrorCode::MALFORMED,
            Self::Field(_) | Self::Kind { .. } => ErrorCode::INVALID,
        }
    }
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(e: minicbor::decode::Error) -> Self {
        Self::Cbor(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in ErrorCode::ALL {
            let name = code.name().expect("known code has a name");
            assert!(seen.insert(name), "duplicate name {name}");
            assert_eq!(ErrorCode::from_name(name), Some(code));
        }
        assert_eq!(ErrorCode(999).name(), None);
        assert_eq!(ErrorCode(999).to_string(), "error-999");
    }
}
