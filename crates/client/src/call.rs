//! Calls (spec section 7.14): the handle of a call this device places or receives
//! ([`Call`]), how one ends ([`EndReason`]) and how to refuse one ([`Rejection`]).
//!
//! The SDK is a SIP user agent whose transport is the device's MQTT connection (in the
//! spirit of RFC 7118): it carries the signalling, and hands the SDP offers and answers to
//! the application, whose business the media is.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mqchat_proto::body::{self, CallOutcome};
use mqchat_proto::{DeviceId, SipAddress, Timestamp, UserId};
use mqchat_sip::{Scheme, Uri};

use crate::error::Error;

/// Whom [`Client::call`](crate::Client::call) calls: a user of this server (every device of
/// theirs rings) or a `sip:` URI (a user's device by its GRUU, `sip:bob@example.org;gr=phone`,
/// or an address outside mqchat, reached through the server's SIP gateway).
///
/// Parsed once ([`CallTarget::parse`], `str::parse`) or made from a [`UserId`] or a
/// [`SipAddress`], so a bad target fails before any call is placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallTarget(Target);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    User(UserId),
    Uri(Uri),
}

impl CallTarget {
    /// Parses a user id or a `sip:` URI (a `tel:` URI, or one without a host, is refused:
    /// [`Error::is_invalid`]).
    pub fn parse(target: &str) -> Result<Self, Error> {
        if let Ok(user) = UserId::parse(target) {
            return Ok(Self(Target::User(user)));
        }
        let uri = Uri::parse(target)
            .map_err(|e| Error::invalid(format!("call target {target:?}: {e}")))?;
        if uri.scheme == Scheme::Tel || uri.host.is_empty() {
            return Err(Error::invalid(format!(
                "call target {target:?}: use a user id or a sip: URI"
            )));
        }
        Ok(Self(Target::Uri(uri)))
    }

    /// The user called, when the target is a user id.
    pub fn user(&self) -> Option<&UserId> {
        match &self.0 {
            Target::User(user) => Some(user),
            Target::Uri(_) => None,
        }
    }

    /// The request URI of the INVITE: a user id is a user of `domain`, the server's SIP
    /// domain.
    pub(crate) fn uri(&self, domain: &str) -> Uri {
        match &self.0 {
            Target::User(user) => Uri::sip(Some(user.as_str()), domain),
            Target::Uri(uri) => uri.clone(),
        }
    }
}

impl From<UserId> for CallTarget {
    fn from(user: UserId) -> Self {
        Self(Target::User(user))
    }
}

impl From<SipAddress> for CallTarget {
    fn from(address: SipAddress) -> Self {
        // A SIP address is a `sip:` URI in canonical form, which `Uri` parses; the fallback
        // (never taken) writes the same text.
        let uri = Uri::parse(address.as_str())
            .unwrap_or_else(|_| Uri::sip(Some(address.user()), address.host_port()));
        Self(Target::Uri(uri))
    }
}

impl FromStr for CallTarget {
    type Err = Error;

    fn from_str(target: &str) -> Result<Self, Error> {
        Self::parse(target)
    }
}

impl fmt::Display for CallTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Target::User(user) => user.fmt(f),
            Target::Uri(uri) => uri.fmt(f),
        }
    }
}

/// One call of this device, outgoing ([`Client::call`](crate::Client::call)) or incoming
/// ([`Event::IncomingCall`](crate::Event::IncomingCall)). Cheap to clone; compare it with
/// the `call` of later events.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Call {
    call_id: Arc<str>,
    outgoing: bool,
}

impl Call {
    pub(crate) fn new(call_id: &str, outgoing: bool) -> Self {
        Self {
            call_id: Arc::from(call_id),
            outgoing,
        }
    }

    /// The SIP Call-ID: the call's record ([`Event::CallRecord`](crate::Event::CallRecord),
    /// `call-id`) carries the same.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Whether this device placed the call.
    pub fn is_outgoing(&self) -> bool {
        self.outgoing
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = if self.outgoing { "out" } else { "in" };
        write!(f, "Call({way} {})", self.call_id)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.call_id)
    }
}

/// The record of a call between this user and another party (spec 7.14), as
/// [`Event::CallRecord`](crate::Event::CallRecord) tells it; `From` reads one of the
/// `call` packets of [`Client::history`](crate::Client::history) too.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallRecord {
    /// The SIP Call-ID of the call's INVITE ([`Call::call_id`]).
    pub call_id: String,
    /// How it ended.
    pub outcome: CallOutcome,
    /// When the INVITE reached the hub.
    pub started: Timestamp,
    /// When the answer passed the hub, if it was answered.
    pub answered: Option<Timestamp>,
    /// When it ended (hang-up, final failure, cancel or timeout).
    pub ended: Timestamp,
    /// How long it was on (from the answer to the end), if it was answered.
    pub duration: Option<Duration>,
    /// The callee's device that answered, if a device of an mqchat user did.
    pub answered_by: Option<DeviceId>,
    /// The SDP media kinds of the offer (`audio`, `video`), in order.
    pub media: Vec<String>,
}

impl From<body::Call> for CallRecord {
    fn from(record: body::Call) -> Self {
        Self {
            call_id: record.call_id,
            outcome: record.outcome,
            started: Timestamp::from_unix_ms(record.started),
            answered: record.answered.map(Timestamp::from_unix_ms),
            ended: Timestamp::from_unix_ms(record.ended),
            duration: record.duration.map(Duration::from_millis),
            answered_by: record.answered_by,
            media: record.media,
        }
    }
}

/// How to refuse an incoming call ([`Client::reject`](crate::Client::reject)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Busy here (SIP 486): the caller hears busy; the user's other devices keep ringing.
    Busy,
    /// Declined (SIP 603): the user does not want the call; it stops ringing everywhere.
    Decline,
}

/// Why a call ended ([`Event::CallEnded`](crate::Event::CallEnded)). `local` is true when
/// this device did it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Hung up after the answer (a BYE).
    HungUp {
        /// This device hung up.
        local: bool,
    },
    /// Given up before the answer: the caller cancelled, or (`local`) this device did.
    Cancelled {
        /// This device cancelled.
        local: bool,
    },
    /// The callee is busy (486 or 600); `local` when this device answered busy.
    Busy {
        /// This device rejected the call as busy.
        local: bool,
    },
    /// The callee declined (603); `local` when this device declined, otherwise the caller
    /// was told so, or (callee side) another device of this user declined.
    Declined {
        /// This device declined the call.
        local: bool,
    },
    /// Another device of this user answered the call (callee side).
    AnsweredElsewhere,
    /// The call failed: an error response (404 unknown user, 480 nobody reachable, 408 no
    /// answer in time...), or no response or acknowledgement in time.
    Failed {
        /// The SIP status code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = |local: bool| if local { "by you" } else { "by the other side" };
        match self {
            Self::HungUp { local } => write!(f, "hung up {}", by(*local)),
            Self::Cancelled { local } => write!(f, "cancelled {}", by(*local)),
            Self::Busy { local: true } => f.write_str("rejected as busy"),
            Self::Busy { local: false } => f.write_str("busy"),
            Self::Declined { local: true } => f.write_str("declined"),
            Self::Declined { local: false } => f.write_str("declined by the other side"),
            Self::AnsweredElsewhere => f.write_str("answered on another device"),
            Self::Failed { code, reason } => write!(f, "failed: {code} {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_once_and_print_as_given() {
        let user = CallTarget::parse("bob").expect("a user id");
        assert_eq!(user.user().map(UserId::as_str), Some("bob"));
        assert_eq!(user.uri("example.org").to_string(), "sip:bob@example.org");
        for text in ["sip:bob@localhost;gr=laptop", "sip:carol@example.net:5070"] {
            let target: CallTarget = text.parse().expect("a sip: URI");
            assert_eq!((target.user(), target.to_string().as_str()), (None, text));
            assert_eq!(target.uri("example.org").to_string(), text);
        }
        let address = SipAddress::parse("sip:carol@[2001:db8::1]:5070").expect("valid");
        let target = CallTarget::from(address.clone());
        assert_eq!(target.to_string(), address.as_str());
        for bad in ["not a target!", "tel:+15551234567", "sip:", ""] {
            let e = CallTarget::parse(bad).expect_err(bad);
            assert!(
                e.is_invalid() && e.to_string().contains("call target"),
                "{e}"
            );
        }
    }
}
