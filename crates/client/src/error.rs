//! The SDK's error: one opaque type queried with `is_*` methods, so that no dependency's
//! error type (rumqttc's, tokio's) becomes part of the public API.

use std::fmt;

use mqchat_proto::ErrorCode;

/// Why a call failed.
///
/// Ask what kind of failure it is with [`Error::is_auth`], [`Error::is_unreachable`],
/// [`Error::is_timeout`], [`Error::is_closed`], [`Error::is_invalid`] and
/// [`Error::refused`]; its `Display` explains it for logs.
#[derive(Clone)]
pub struct Error {
    kind: Kind,
}

#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum Kind {
    /// The configuration or an argument is not valid. The caller is at fault.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The broker refused the credentials or the client id.
    #[error("the server refused the login: {0}")]
    Auth(String),
    /// The broker could not be reached, or refused the connection for another reason.
    #[error("cannot connect to the server: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("no answer from the server in time")]
    Timeout,
    /// The client is closed (by `close`, by dropping every handle, or its task ended).
    #[error("the client is closed")]
    Closed,
    /// The hub refused the packet with an error reply.
    #[error("the hub refused the packet: {code}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        code: ErrorCode,
        detail: Option<String>,
    },
    /// The hub answered something the protocol does not allow. The server is at fault.
    #[error("the hub broke the protocol: {0}")]
    Protocol(String),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self { kind }
    }

    pub(crate) fn invalid(what: impl fmt::Display) -> Self {
        Self::new(Kind::Invalid(what.to_string()))
    }

    pub(crate) fn closed() -> Self {
        Self::new(Kind::Closed)
    }

    pub(crate) fn timeout() -> Self {
        Self::new(Kind::Timeout)
    }

    pub(crate) fn protocol(what: impl fmt::Display) -> Self {
        Self::new(Kind::Protocol(what.to_string()))
    }

    pub(crate) fn hub_refused(code: ErrorCode, detail: Option<String>) -> Self {
        Self::new(Kind::Refused { code, detail })
    }

    /// The broker refused the login: wrong password, unknown or disabled account, a revoked
    /// device token, a client id that does not belong to the user, or a will on a topic the
    /// device may not publish to (a wrong topic root).
    pub fn is_auth(&self) -> bool {
        matches!(self.kind, Kind::Auth(_))
    }

    /// The broker could not be reached (network, DNS, timeout while connecting, WebSocket
    /// handshake) or refused the connection for a reason other than the login.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, Kind::Unreachable(_))
    }

    /// The hub did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
    }

    /// The client was closed before the call could complete.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }

    /// The configuration or an argument was not valid; nothing was sent.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid(_))
    }

    /// The hub answered in a way the protocol does not allow.
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }

    /// The code of the hub's error reply, when the hub refused the packet (spec section 14).
    pub fn refused(&self) -> Option<ErrorCode> {
        match self.kind {
            Kind::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The hub's explanation, when it refused the packet with one (English, for logs).
    pub fn detail(&self) -> Option<&str> {
        match &self.kind {
            Kind::Refused { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.kind, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = Error::hub_refused(ErrorCode::NO_SUCH_USER, Some("bob".into()));
        assert_eq!(e.refused(), Some(ErrorCode::NO_SUCH_USER));
        assert_eq!(e.detail(), Some("bob"));
        assert_eq!(
            e.to_string(),
            "the hub refused the packet: no-such-user (bob)"
        );
        assert_eq!(
            Error::hub_refused(ErrorCode(999), None).to_string(),
            "the hub refused the packet: error-999"
        );
        let e = Error::new(Kind::Auth("bad user name or password".into()));
        assert!(e.is_auth() && !e.is_unreachable() && e.refused().is_none());
        assert!(Error::closed().is_closed());
        assert!(Error::timeout().is_timeout());
        assert!(Error::invalid("x").is_invalid());
        assert!(Error::protocol("x").is_protocol());
    }
}
