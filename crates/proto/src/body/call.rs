//! Calls and SIP signalling (types 80–81, spec 7.14): the `sip` packet that carries one SIP
//! message between a device (or the gateway) and the hub, and the hub's `call` record.

use super::{Body, choice, limits, required};
use crate::error::FieldError;
use crate::identity::DeviceId;
use crate::packet::{Fields, Packet, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

/// The largest SIP message a `sip` packet carries, in bytes.
pub const SIP_MESSAGE_BYTES: usize = 32 * 1024;
/// The longest SIP Call-ID a call record keeps, in bytes.
pub const CALL_ID_BYTES: usize = 256;
/// The most media kinds a call record lists.
pub const MAX_MEDIA: usize = 8;

const TIME: FieldType = FieldType::Uint {
    min: 0,
    max: limits::MAX_SAFE,
};
const ENDPOINT: FieldType = FieldType::Text { max_bytes: 128 };
const OUTCOMES: &[&str] = &[
    "answered",
    "missed",
    "declined",
    "busy",
    "cancelled",
    "failed",
];

/// The body keys only the gateway link sets (peer, source, destination).
pub const GATEWAY_KEYS: [u32; 3] = [9, 10, 11];

pub(super) const SIP: SchemaProvider = SchemaProvider {
    kind: PacketKind::SIP,
    name: "sip",
    routing: Routing::Sip,
    schema: &[
        FieldSpec::required(
            8,
            "message",
            FieldType::Text {
                max_bytes: SIP_MESSAGE_BYTES,
            },
        ),
        FieldSpec::optional(9, "peer", FieldType::Text { max_bytes: 64 }),
        FieldSpec::optional(10, "source", ENDPOINT),
        FieldSpec::optional(11, "destination", ENDPOINT),
    ],
    check: Some(non_empty_message),
};

fn non_empty_message(packet: &Packet) -> Result<(), FieldError> {
    match packet.body().text(8)? {
        Some("") => Err(FieldError::new(8, "message", "must not be empty")),
        _ => Ok(()),
    }
}

pub(super) const CALL: SchemaProvider = SchemaProvider {
    kind: PacketKind::CALL,
    name: "call",
    routing: Routing::Reply,
    schema: &[
        FieldSpec::required(
            8,
            "call-id",
            FieldType::Text {
                max_bytes: CALL_ID_BYTES,
            },
        ),
        FieldSpec::required(9, "outcome", FieldType::Choice(OUTCOMES)),
        FieldSpec::required(10, "started", TIME),
        FieldSpec::optional(11, "answered", TIME),
        FieldSpec::required(12, "ended", TIME),
        FieldSpec::optional(13, "duration", TIME),
        FieldSpec::optional(14, "answered-by", FieldType::Device),
        FieldSpec::optional(
            15,
            "media",
            FieldType::Texts {
                max_items: MAX_MEDIA,
                max_bytes: 32,
            },
        ),
    ],
    check: None,
};

/// One SIP message (a whole RFC 3261 request or response, CRLF line ends) on its way between
/// a device or the gateway and the hub.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sip {
    /// The SIP message text.
    pub message: String,
    /// Gateway → hub: the name of the configured SIP peer it came from.
    pub peer: Option<String>,
    /// Gateway → hub: where it came from, `transport:ip:port` (`udp:127.0.0.1:5070`).
    pub source: Option<String>,
    /// Hub → gateway: where to send a request, `transport:ip:port`.
    pub destination: Option<String>,
}

impl Sip {
    /// A `sip` packet body carrying `message` and nothing else.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

impl Body for Sip {
    const KIND: PacketKind = PacketKind::SIP;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let owned = |key| f.text(key).map(|t| t.map(str::to_owned));
        Ok(Self {
            message: required(f.text(8), 8, "message")?.to_owned(),
            peer: owned(9)?,
            source: owned(10)?,
            destination: owned(11)?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(8, &self.message);
        for (key, value) in [(9, &self.peer), (10, &self.source), (11, &self.destination)] {
            if let Some(value) = value {
                f.set_text(key, value);
            }
        }
        f
    }
}

/// How a call ended, as its record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// A callee's device answered; the call took place.
    Answered,
    /// The callee was told (a device rang, or was woken) but nobody answered: the caller
    /// gave up, the ringing timed out, or no device could be reached.
    Missed,
    /// The callee declined (603 from one of their devices).
    Declined,
    /// The callee was busy on every device that answered.
    Busy,
    /// The caller cancelled before any device of the callee rang.
    Cancelled,
    /// The call failed for another reason (an error response, the far end unreachable).
    Failed,
}

impl CallOutcome {
    const ALL: [Self; 6] = [
        Self::Answered,
        Self::Missed,
        Self::Declined,
        Self::Busy,
        Self::Cancelled,
        Self::Failed,
    ];

    /// The name used in JSON and logs.
    pub fn name(self) -> &'static str {
        OUTCOMES[self as usize]
    }
}

/// The record of one call, made by the hub when the call ends and archived in the
/// conversation between caller and callee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The SIP Call-ID of the call's INVITE.
    pub call_id: String,
    /// How it ended.
    pub outcome: CallOutcome,
    /// When the INVITE reached the hub (ms since the Unix epoch).
    pub started: u64,
    /// When the 2xx answer passed the hub, if it was answered.
    pub answered: Option<u64>,
    /// When it ended (BYE, final failure response, cancel or timeout).
    pub ended: u64,
    /// `ended - answered`, in milliseconds, if it was answered.
    pub duration: Option<u64>,
    /// The callee's device that answered, if a device of an mqchat user did.
    pub answered_by: Option<DeviceId>,
    /// The SDP media kinds of the offer (`audio`, `video`), in order.
    pub media: Vec<String>,
}

impl Body for Call {
    const KIND: PacketKind = PacketKind::CALL;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let outcome = required(choice(f, 9, "outcome", OUTCOMES.len()), 9, "outcome")?;
        let answered_by = match f.text(14)? {
            Some(text) => Some(
                DeviceId::parse(text)
                    .map_err(|e| FieldError::new(14, "answered-by", e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            call_id: required(f.text(8), 8, "call-id")?.to_owned(),
            outcome: CallOutcome::ALL[outcome],
            started: required(f.uint(10), 10, "started")?,
            answered: f.uint(11)?,
            ended: required(f.uint(12), 12, "ended")?,
            duration: f.uint(13)?,
            answered_by,
            media: f
                .texts(15)?
                .unwrap_or_default()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(8, &self.call_id);
        f.set_uint(9, self.outcome as u64);
        f.set_uint(10, self.started);
        if let Some(t) = self.answered {
            f.set_uint(11, t);
        }
        f.set_uint(12, self.ended);
        if let Some(d) = self.duration {
            f.set_uint(13, d);
        }
        if let Some(device) = &self.answered_by {
            f.set_text(14, device.as_str());
        }
        if !self.media.is_empty() {
            f.set_texts(15, &self.media);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    #[test]
    fn call_round_trips() {
        let call = Call {
            call_id: "a84b4c76e66710@pc33".into(),
            outcome: CallOutcome::Answered,
            started: 1_790_000_000_000,
            answered: Some(1_790_000_004_000),
            ended: 1_790_000_094_000,
            duration: Some(90_000),
            answered_by: DeviceId::parse("phone").ok(),
            media: vec!["audio".into()],
        };
        let packet = call.to_packet();
        Registry::with_core().validate(&packet).expect("valid");
        assert_eq!(Call::from_packet(&packet).expect("typed"), call);
        assert_eq!(CallOutcome::Missed.name(), "missed");
    }

    #[test]
    fn sip_round_trips() {
        let mut sip = Sip::new("OPTIONS sip:bob@localhost SIP/2.0\r\n\r\n");
        sip.peer = Some("pbx".into());
        let packet = sip.to_packet();
        Registry::with_core().validate(&packet).expect("valid");
        assert_eq!(Sip::from_packet(&packet).expect("typed"), sip);
        let empty = Sip::new("").to_packet();
        assert!(Registry::with_core().validate(&empty).is_err());
    }
}
