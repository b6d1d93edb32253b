//! The SDK's error: one opaque type queried with `is_*` methods, so that no dependency's
//! error type (rumqttc's, tokio's) becomes part of the public API. The error underneath (an
//! I/O, TLS or MQTT error) is kept as [`std::error::Error::source`], not copied into the
//! message: print the chain (anyhow's `{:#}`) to show both.

use std::fmt;
use std::sync::Arc;

use mqchat_proto::ErrorCode;

/// Why a call failed.
///
/// Ask what kind of failure it is with [`Error::is_auth`], [`Error::is_unreachable`],
/// [`Error::is_timeout`], [`Error::is_closed`], [`Error::is_invalid`] and
/// [`Error::refused`]; its `Display` explains it for logs, and its `source` is the error
/// underneath, when there is one.
#[derive(Clone)]
pub struct Error {
    kind: Kind,
}

#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum Kind {
    /// The configuration or an argument is not valid. The caller is at fault.
    #[error("invalid: {what}")]
    Invalid {
        what: String,
        /// Why, when another library said so (a CA file that cannot be read, rustls).
        #[source]
        cause: Option<Cause>,
    },
    /// The broker refused the credentials or the client id.
    #[error("the server refused the login: {0}")]
    Auth(String),
    /// The broker could not be reached, or refused the connection for another reason.
    #[error("cannot connect to the server{}", what.as_deref().map(|w| format!(": {w}")).unwrap_or_default())]
    Unreachable {
        /// What the SDK knows of it (the broker's refusal, a connect timeout).
        what: Option<String>,
        /// The connection's error (rumqttc's, with the I/O, TLS or WebSocket error inside).
        #[source]
        cause: Option<Cause>,
    },
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

/// The error underneath one of the SDK's, shared so that [`Error`] stays `Clone`.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self { kind }
    }

    pub(crate) fn invalid(what: impl fmt::Display) -> Self {
        Self::new(Kind::Invalid {
            what: what.to_string(),
            cause: None,
        })
    }

    /// The caller's configuration is not valid, as `cause` says.
    pub(crate) fn invalid_because(
        what: impl fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(Kind::Invalid {
            what: what.to_string(),
            cause: Some(Arc::new(cause)),
        })
    }

    /// The broker could not be reached: `what` the SDK knows, `cause` the error underneath.
    pub(crate) fn unreachable(what: Option<String>, cause: Option<Cause>) -> Self {
        Self::new(Kind::Unreachable { what, cause })
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

    /// The message with the error underneath, on one line: the `reason` of
    /// [`Event::Disconnected`](crate::Event::Disconnected) and of log lines.
    pub(crate) fn explain(&self) -> String {
        match std::error::Error::source(self) {
            Some(cause) => format!("{self}: {cause}"),
            None => self.to_string(),
        }
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
        matches!(self.kind, Kind::Unreachable { .. })
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
        matches!(self.kind, Kind::Invalid { .. })
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

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

    #[test]
    fn the_error_underneath_is_the_source_and_not_repeated() {
        use std::error::Error as _;
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Error::unreachable(None, Some(Arc::new(io)));
        assert!(e.is_unreachable());
        assert_eq!(e.to_string(), "cannot connect to the server");
        let source = e.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
        let e = Error::invalid_because("CA file ca.pem", std::io::Error::other("gone"));
        assert_eq!(e.to_string(), "invalid: CA file ca.pem");
        assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("gone"));
        assert!(Error::invalid("x").source().is_none());
    }
}
