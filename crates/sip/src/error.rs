//! Why a SIP message, header or URI could not be parsed. Every variant is the sender's fault.

use thiserror::Error;

/// A SIP message, header value or URI that is not valid. Bad input is always an error,
/// never a panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message is larger than [`crate::Limits::max_message_bytes`].
    #[error("message too large (limit {limit} bytes)")]
    TooLarge { limit: usize },
    /// The message has more header fields than [`crate::Limits::max_headers`].
    #[error("too many header fields (limit {limit})")]
    TooManyHeaders { limit: usize },
    /// No empty line ends the header section.
    #[error("no empty line ends the header section")]
    Incomplete,
    /// The header section is not UTF-8.
    #[error("the start line or header section is not UTF-8")]
    NotUtf8,
    /// The request line or status line is malformed.
    #[error("bad start line: {0}")]
    BadStartLine(&'static str),
    /// The protocol version is not SIP/2.0 (a request gets 505).
    #[error("unsupported SIP version {0:?}")]
    BadVersion(String),
    /// A header line is not `name: value`.
    #[error("bad header line {line}: {reason}")]
    BadHeaderLine { line: usize, reason: &'static str },
    /// A header field's value does not match its grammar.
    #[error("bad {name} header: {reason}")]
    BadHeader { name: &'static str, reason: String },
    /// A header the message must have is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// Content-Length says more bytes than the message has (a truncated datagram).
    #[error("body truncated: Content-Length {declared}, {available} bytes present")]
    BodyTruncated { declared: usize, available: usize },
    /// A URI does not match its grammar.
    #[error("bad URI: {0}")]
    BadUri(&'static str),
    /// A URI scheme other than sip, sips and tel (a request gets 416).
    #[error("unsupported URI scheme {0:?}")]
    UnsupportedScheme(String),
}

impl ParseError {
    pub(crate) fn header(name: &'static str, reason: impl Into<String>) -> Self {
        ParseError::BadHeader {
            name,
            reason: reason.into(),
        }
    }
}
