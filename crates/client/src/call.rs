//! Calls (spec section 7.14): the handle of a call this device places or receives
//! ([`Call`]), how one ends ([`EndReason`]) and how to refuse one ([`Rejection`]).
//!
//! The SDK is a SIP user agent whose transport is the device's MQTT connection (in the
//! spirit of RFC 7118): it carries the signalling, and hands the SDP offers and answers to
//! the application, whose business the media is.

use std::fmt;
use std::sync::Arc;

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
