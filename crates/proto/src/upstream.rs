//! The hub's edge: turning a PUBLISH on an upstream topic into a packet the hub can act on,
//! or into the error reply the spec says the device gets.
//!
//! Everything the hub checks before touching storage happens here, without IO: the topic
//! names the sender (never the payload), the size is bounded, the packet decodes (nesting at
//! most [`MAX_NESTING`] levels) and fits its schema, and its type may travel upstream with
//! the envelope fields its route needs. Envelope fields only the hub may set (`seq`, `ts`,
//! `from`, `device`) are dropped. A refusal carries the packet's `id`, `conv` and type
//! whenever they can be read, even from a payload refused as a whole (spec 14).

use minicbor::Decoder;
use minicbor::data::Type;

use crate::body::{Body, ErrorReply, GATEWAY_KEYS, Sip};
use crate::encoding::MAX_NESTING;
use crate::error::ErrorCode;
use crate::id::MessageId;
use crate::identity::{ConversationRef, DeviceIdentity, GatewayName};
use crate::packet::{Fields, Packet, PacketKind, key};
use crate::provider::{Registry, Routing};
use crate::topic::{GatewayDirection, Topic, TopicRoot};

/// The first packet type number outside the protocol's own (spec 7): registered extensions
/// from here to 1023, private use above.
const FIRST_EXTENSION: u32 = 128;

/// What the hub does with an accepted upstream packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Deduplicate, sequence, archive, deliver to durable inboxes.
    Event,
    /// Record as conversation state; deliver on durable inboxes.
    Marker,
    /// Forward to ephemeral inboxes; store nothing.
    Signal,
    /// Answer on the device's reply topic.
    Request,
    /// A SIP message for the hub's SIP proxy; never stored.
    Sip,
}

/// An upstream packet that passed every check that needs no storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The sending device, from the topic.
    pub sender: DeviceIdentity,
    /// The packet, with hub-only envelope fields removed.
    pub packet: Packet,
    /// How to handle it.
    pub route: Route,
    /// Whether a provider for the type is registered (else the body is opaque).
    pub known: bool,
}

/// A refused upstream packet: the reply to send, and to whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The device to answer on its reply topic; `None` when the topic named no device.
    pub sender: Option<DeviceIdentity>,
    /// The error code.
    pub code: ErrorCode,
    /// Why, for the log and the reply's detail.
    pub detail: String,
    /// The refused packet's id, if it could be read.
    pub id: Option<MessageId>,
    /// The refused packet's conversation, if it could be read.
    pub conv: Option<ConversationRef>,
    /// The refused packet's type, if it could be read.
    pub about: Option<PacketKind>,
}

impl Rejection {
    /// The error reply packet for the sender's reply topic.
    pub fn to_packet(&self) -> Packet {
        let mut packet = ErrorReply {
            code: self.code,
            detail: Some(self.detail.clone()),
            about: self.about.map(|k| k.0),
        }
        .to_packet();
        packet.id = self.id;
        packet.conv = self.conv.clone();
        packet
    }
}

/// Checks one PUBLISH received by the hub on an upstream topic.
pub fn accept(
    registry: &Registry,
    root: &TopicRoot,
    topic: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<Inbound, Rejection> {
    match root.parse_topic(topic) {
        Ok(Topic::Upstream { user, device }) => accept_payload(
            registry,
            DeviceIdentity::new(user, device),
            payload,
            max_payload,
        ),
        Ok(_) | Err(_) => Err(wrong_topic(topic)),
    }
}

/// The refusal of a PUBLISH whose topic is not an upstream topic: it names no device to
/// answer.
pub fn wrong_topic(topic: &str) -> Rejection {
    reject(
        None,
        ErrorCode::WRONG_TOPIC,
        format!("{topic:?} is not an upstream topic"),
    )
}

/// [`accept`] of a payload whose upstream topic the caller has parsed already and found to
/// name `sender`.
pub fn accept_payload(
    registry: &Registry,
    sender: DeviceIdentity,
    payload: &[u8],
    max_payload: usize,
) -> Result<Inbound, Rejection> {
    if payload.len() > max_payload {
        let detail = format!(
            "payload is {} bytes, at most {max_payload} accepted",
            payload.len()
        );
        return Err(salvage(sender, ErrorCode::TOO_LARGE, detail, payload));
    }
    let mut packet = match Packet::decode_within(payload, MAX_NESTING) {
        Ok(packet) => packet,
        Err(e) => return Err(salvage(sender, e.code(), e.to_string(), payload)),
    };
    let refuse = |code: ErrorCode, detail: String, packet: &Packet| Rejection {
        sender: Some(sender.clone()),
        code,
        detail,
        id: packet.id,
        conv: packet.conv.clone(),
        about: Some(packet.kind),
    };
    packet.seq = None;
    packet.ts = None;
    packet.from = None;
    packet.device = None;
    let provider = registry.provider(packet.kind);
    let route = match provider.map(|p| p.routing()) {
        Some(Routing::Event) => Route::Event,
        Some(Routing::Marker) => Route::Marker,
        Some(Routing::Signal) => Route::Signal,
        Some(Routing::Request) => Route::Request,
        Some(Routing::Sip) => Route::Sip,
        Some(Routing::Reply) => {
            return Err(refuse(
                ErrorCode::WRONG_TOPIC,
                "only the hub sends this packet type".into(),
                &packet,
            ));
        }
        Some(Routing::Presence) => {
            return Err(refuse(
                ErrorCode::WRONG_TOPIC,
                "presence goes on the device's presence topic".into(),
                &packet,
            ));
        }
        // The numbers below 128 are this protocol's own (spec 7): one the registry does
        // not know is reserved for a later version, and storing it now would give it a
        // meaning before that version does (spec 15).
        None if packet.kind.0 < FIRST_EXTENSION => {
            return Err(refuse(
                ErrorCode::UNSUPPORTED,
                format!(
                    "packet type {} is reserved for the protocol's own later use",
                    packet.kind.0
                ),
                &packet,
            ));
        }
        None if packet.conv.is_none() => {
            return Err(refuse(
                ErrorCode::UNSUPPORTED,
                "an unknown packet type needs a conversation".into(),
                &packet,
            ));
        }
        None if packet.ephemeral => Route::Signal,
        None => Route::Event,
    };
    let missing = |what: &str| format!("this packet type needs {what} upstream");
    match route {
        Route::Event if packet.id.is_none() || packet.conv.is_none() => {
            return Err(refuse(
                ErrorCode::INVALID,
                missing("an id and a conversation"),
                &packet,
            ));
        }
        Route::Marker | Route::Signal if packet.conv.is_none() => {
            return Err(refuse(
                ErrorCode::INVALID,
                missing("a conversation"),
                &packet,
            ));
        }
        Route::Request if packet.id.is_none() => {
            return Err(refuse(ErrorCode::INVALID, missing("an id"), &packet));
        }
        _ => {}
    }
    if let Err(e) = registry.validate(&packet) {
        return Err(refuse(ErrorCode::INVALID, e.to_string(), &packet));
    }
    if route == Route::Sip
        && let Some(key) = GATEWAY_KEYS
            .into_iter()
            .find(|k| packet.body().contains(*k))
    {
        return Err(refuse(
            ErrorCode::INVALID,
            format!("field {key} of a sip packet is set by the gateway only"),
            &packet,
        ));
    }
    Ok(Inbound {
        sender,
        packet,
        route,
        known: provider.is_some(),
    })
}

/// A SIP message the hub received from its gateway on `{root}/gw/{gateway}/in`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayInbound {
    /// The gateway, from the topic.
    pub gateway: GatewayName,
    /// The message, with the peer it came from and its source address.
    pub sip: Sip,
}

/// Checks one PUBLISH the hub received on a gateway's `in` topic (spec 7.14): the topic, the
/// size, a `sip` packet with `peer` and `source`. The gateway is the hub's own component, so
/// a refusal has no one to answer: the caller logs the returned reason.
pub fn accept_gateway(
    registry: &Registry,
    root: &TopicRoot,
    topic: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<GatewayInbound, String> {
    match root.parse_topic(topic) {
        Ok(Topic::Gateway {
            gateway,
            direction: GatewayDirection::In,
        }) => accept_gateway_payload(registry, gateway, payload, max_payload),
        _ => Err(format!("{topic:?} is not a gateway's in topic")),
    }
}

/// [`accept_gateway`] of a payload whose topic the caller has parsed already and found to be
/// the `in` topic of `gateway`.
pub fn accept_gateway_payload(
    registry: &Registry,
    gateway: GatewayName,
    payload: &[u8],
    max_payload: usize,
) -> Result<GatewayInbound, String> {
    if payload.len() > max_payload {
        return Err(format!(
            "payload is {} bytes, at most {max_payload} accepted",
            payload.len()
        ));
    }
    let packet = Packet::decode_within(payload, MAX_NESTING).map_err(|e| e.to_string())?;
    if packet.kind != PacketKind::SIP {
        return Err(format!("packet type {} on a gateway topic", packet.kind.0));
    }
    registry.validate(&packet).map_err(|e| e.to_string())?;
    let sip = Sip::from_packet(&packet).map_err(|e| e.to_string())?;
    if sip.peer.is_none() || sip.source.is_none() {
        return Err("a sip packet from the gateway needs peer and source".into());
    }
    Ok(GatewayInbound { gateway, sip })
}

/// The refusal of a payload that did not decode as a whole, with what can still be read of
/// its type, `id` and `conv` (spec 14): the top-level map is walked as far as it is
/// well-formed, and each of keys 0, 1 and 2 that appears once, with a valid value, is kept,
/// whatever is wrong elsewhere. Values are skipped without being rewritten (the walk is
/// iterative at any depth); the payload is at most the broker's maximum, so this is cheap.
fn salvage(sender: DeviceIdentity, code: ErrorCode, detail: String, payload: &[u8]) -> Rejection {
    let envelope = envelope_of(payload);
    let id = envelope.uint(key::ID).ok().flatten();
    let conv = envelope.text(key::CONV).ok().flatten();
    let kind = envelope.uint(key::TYPE).ok().flatten();
    Rejection {
        sender: Some(sender),
        code,
        detail,
        id: id.and_then(|id| MessageId::new(id).ok()),
        conv: conv.and_then(|conv| ConversationRef::parse(conv).ok()),
        about: kind.and_then(|k| u32::try_from(k).ok()).map(PacketKind),
    }
}

/// Keys 0 to 2 of a payload's top-level map that appear exactly once, as raw items.
fn envelope_of(payload: &[u8]) -> Fields {
    let mut d = Decoder::new(payload);
    let mut found: Vec<(u64, &[u8])> = Vec::new();
    let Ok(len) = d.map() else {
        return Fields::new();
    };
    let mut remaining = len;
    loop {
        match remaining {
            Some(0) => break,
            Some(ref mut n) => *n -= 1,
            None if matches!(d.datatype(), Ok(Type::Break) | Err(_)) => break,
            None => {}
        }
        let key = match d.datatype() {
            Ok(Type::U8 | Type::U16 | Type::U32 | Type::U64) => d.u64().ok(),
            _ => d.skip().ok().map(|()| u64::MAX),
        };
        let start = d.position();
        let (Some(key), Ok(())) = (key, d.skip()) else {
            break;
        };
        found.push((key, &payload[start..d.position()]));
    }
    let mut envelope = Fields::new();
    for k in [key::TYPE, key::ID, key::CONV] {
        if let [(_, raw)] = found
            .iter()
            .filter(|(f, _)| *f == u64::from(k))
            .collect::<Vec<_>>()[..]
        {
            // Skipped above as one well-formed item; the value's own checks come next.
            let _ = envelope.insert_raw(k, raw);
        }
    }
    envelope
}

fn reject(sender: Option<DeviceIdentity>, code: ErrorCode, detail: String) -> Rejection {
    Rejection {
        sender,
        code,
        detail,
        id: None,
        conv: None,
        about: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{ChatState, Delivered, Message, Presence, State, Sync};

    fn accept_at(topic: &str, packet: &Packet) -> Result<Inbound, Rejection> {
        accept(
            &Registry::with_core(),
            &TopicRoot::default(),
            topic,
            &packet.encode(),
            4096,
        )
    }

    fn code_of(topic: &str, packet: &Packet) -> ErrorCode {
        accept_at(topic, packet).expect_err("must be refused").code
    }

    fn message() -> Packet {
        let mut p = Message::text("Hi").to_packet();
        p.id = MessageId::new(77).ok();
        p.conv = ConversationRef::parse("bob").ok();
        p
    }

    const UP: &str = "mq/up/alice/phone";

    #[test]
    fn message_accepted_with_identity_from_topic() {
        let mut spoofed = message();
        spoofed.from = crate::UserId::parse("mallory").ok();
        spoofed.seq = Some(5);
        let inbound = accept_at(UP, &spoofed).expect("valid");
        assert_eq!(inbound.sender.to_string(), "alice:phone");
        assert_eq!(inbound.route, Route::Event);
        assert_eq!(inbound.packet.from, None);
        assert_eq!(inbound.packet.seq, None);
    }

    #[test]
    fn a_topic_parsed_by_the_caller_gives_what_its_text_gives() {
        let packet = message();
        let sender = DeviceIdentity::new(
            crate::UserId::parse("alice").expect("valid"),
            crate::DeviceId::parse("phone").expect("valid"),
        );
        let parsed = accept_payload(&Registry::with_core(), sender, &packet.encode(), 4096);
        assert_eq!(parsed, accept_at(UP, &packet));
        let topic = "mq/in/alice/d";
        assert_eq!(accept_at(topic, &packet), Err(wrong_topic(topic)));
    }

    #[test]
    fn routes() {
        let mut state = ChatState {
            state: State::Composing,
        }
        .to_packet();
        state.conv = ConversationRef::parse("bob").ok();
        assert_eq!(accept_at(UP, &state).expect("valid").route, Route::Signal);
        let mut marker = Delivered { up_to: 3 }.to_packet();
        marker.conv = ConversationRef::parse("bob").ok();
        assert_eq!(accept_at(UP, &marker).expect("valid").route, Route::Marker);
        let mut sync = Sync::default().to_packet();
        sync.id = MessageId::new(9).ok();
        assert_eq!(accept_at(UP, &sync).expect("valid").route, Route::Request);
    }

    #[test]
    fn unknown_types_route_by_envelope() {
        let mut p = Packet::new(PacketKind(5000));
        p.conv = ConversationRef::parse("bob").ok();
        p.id = MessageId::new(1).ok();
        assert_eq!(accept_at(UP, &p).expect("valid").route, Route::Event);
        p.ephemeral = true;
        assert_eq!(accept_at(UP, &p).expect("valid").route, Route::Signal);
        p.conv = None;
        assert_eq!(code_of(UP, &p), ErrorCode::UNSUPPORTED);
    }

    #[test]
    fn refusals() {
        let mut no_id = message();
        no_id.id = None;
        assert_eq!(code_of(UP, &no_id), ErrorCode::INVALID);
        assert_eq!(
            code_of(UP, &crate::body::Ack::default().to_packet()),
            ErrorCode::WRONG_TOPIC
        );
        let presence = Presence::new(crate::body::Availability::Available).to_packet();
        assert_eq!(code_of(UP, &presence), ErrorCode::WRONG_TOPIC);
        assert_eq!(code_of("mq/in/alice/d", &message()), ErrorCode::WRONG_TOPIC);
        let big = Message::text("x".repeat(5000));
        let mut big = big.to_packet();
        big.id = MessageId::new(1).ok();
        big.conv = ConversationRef::parse("bob").ok();
        let err = accept_at(UP, &big).expect_err("too large");
        assert_eq!(err.code, ErrorCode::TOO_LARGE);
        assert_eq!(
            err.sender.map(|s| s.to_string()).as_deref(),
            Some("alice:phone")
        );
        let err = accept(
            &Registry::with_core(),
            &TopicRoot::default(),
            UP,
            &[0xff],
            4096,
        )
        .expect_err("bad");
        assert_eq!(err.code, ErrorCode::MALFORMED);
    }

    #[test]
    fn sip_packets() {
        let sip = Sip::new("OPTIONS sip:bob@localhost SIP/2.0\r\n\r\n").to_packet();
        let inbound = accept_at(UP, &sip).expect("valid");
        assert_eq!(inbound.route, Route::Sip);
        let mut forged = Sip::new("OPTIONS sip:bob@localhost SIP/2.0\r\n\r\n");
        forged.peer = Some("pbx".into());
        assert_eq!(code_of(UP, &forged.to_packet()), ErrorCode::INVALID);
        let call = crate::body::Call {
            call_id: "x".into(),
            outcome: crate::body::CallOutcome::Missed,
            started: 1,
            answered: None,
            ended: 2,
            duration: None,
            answered_by: None,
            media: vec![],
        };
        let mut call = call.to_packet();
        call.conv = ConversationRef::parse("bob").ok();
        assert_eq!(code_of(UP, &call), ErrorCode::WRONG_TOPIC);
        // Nothing sent to a gateway topic passes the device edge.
        assert_eq!(code_of("mq/gw/sip/in", &sip), ErrorCode::WRONG_TOPIC);
    }

    #[test]
    fn gateway_packets() {
        let registry = Registry::with_core();
        let root = TopicRoot::default();
        let mut sip = Sip::new("MESSAGE sip:bob@localhost SIP/2.0\r\n\r\n");
        sip.peer = Some("pbx".into());
        sip.source = Some("udp:127.0.0.1:5070".into());
        let payload = sip.to_packet().encode();
        let inbound =
            accept_gateway(&registry, &root, "mq/gw/sip/in", &payload, 4096).expect("valid");
        assert_eq!(inbound.gateway.as_str(), "sip");
        assert_eq!(inbound.sip, sip);
        for topic in ["mq/gw/sip/out", "mq/up/alice/phone", "mq/gw/SIP/in"] {
            assert!(accept_gateway(&registry, &root, topic, &payload, 4096).is_err());
        }
        assert!(accept_gateway(&registry, &root, "mq/gw/sip/in", &payload, 10).is_err());
        let bare = Sip::new("MESSAGE sip:bob@localhost SIP/2.0\r\n\r\n");
        let bare = bare.to_packet().encode();
        assert!(accept_gateway(&registry, &root, "mq/gw/sip/in", &bare, 4096).is_err());
        let message = message().encode();
        assert!(accept_gateway(&registry, &root, "mq/gw/sip/in", &message, 4096).is_err());
    }

    /// The refusal of `payload` (hex) on alice's upstream topic, with a maximum of 4096 bytes:
    /// its code and what it says of the packet (id, conv, type); `_` for what it leaves out.
    fn refused(payload: &str, expected: &str) {
        let payload = hex::decode(payload.replace(' ', "")).expect("test hex");
        let r = accept(
            &Registry::with_core(),
            &TopicRoot::default(),
            UP,
            &payload,
            4096,
        )
        .expect_err("must be refused");
        let or_blank = |s: Option<String>| s.unwrap_or_else(|| "_".into());
        let got = format!(
            "{} {} {} {}",
            r.code,
            or_blank(r.id.map(|id| id.get().to_string())),
            or_blank(r.conv.map(|c| c.to_string())),
            or_blank(r.about.map(|k| k.0.to_string())),
        );
        let shown = hex::encode(&payload[..payload.len().min(40)]);
        assert_eq!(got, expected, "{shown}...: {}", r.detail);
    }

    #[test]
    fn refusals_carry_what_could_be_read() {
        // Envelope fields in error: the others still reach the reply.
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263424f42 08624869",
            "invalid 360428286627176252 _ 1",
        );
        refused("a4 0001 0100 0263626f62 08624869", "invalid _ bob 1");
        refused(
            "a4 0001 011b8000000000000000 0263626f62 08624869",
            "invalid _ bob 1",
        );
        refused("a4 0001 0143626f62 0263626f62 08624869", "invalid _ bob 1");
        refused(
            "a4 0001 011b05007f9df76a5f3c 0243626f62 08624869",
            "invalid 360428286627176252 _ 1",
        );
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263626f62 0300",
            "invalid 360428286627176252 bob 1",
        );
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263626f62 0701",
            "invalid 360428286627176252 bob 1",
        );
        refused(
            "a3 001b0000000100000000 011b05007f9df76a5f3c 0263626f62",
            "invalid 360428286627176252 bob _",
        );
        // Payloads refused as a whole: what comes before and after the fault is read.
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263626f62 0862c328",
            "malformed 360428286627176252 bob 1",
        );
        refused(
            "a5 0001 011b05007f9df76a5f3c 0263626f62 08624869 08624869",
            "malformed 360428286627176252 bob 1",
        );
        refused("a4 08624869 6174 00 0001 0263626f62", "malformed _ bob 1");
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263626f62 0861",
            "malformed 360428286627176252 bob 1",
        );
        refused(
            "a5 0001 011b05007f9df76a5f3c 0263626f62 08624869 00",
            "malformed 360428286627176252 bob 1",
        );
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08624869 00",
            "malformed 360428286627176252 bob 1",
        );
        refused(
            "bf 0001 011b05007f9df76a5f3c 027f62626f6162ff 0862c328 ff",
            "malformed 360428286627176252 bob 1",
        );
        refused(
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08a2010001 00",
            "malformed 360428286627176252 bob 1",
        );
        // Ambiguous or unreadable: left out.
        refused(
            "a4 0001 011b05007f9df76a5f3c 0100 0263626f62",
            "malformed _ bob 1",
        );
        refused("a3 0001 0001 0263626f62", "malformed _ bob _");
        refused(
            "a3 0001 011b05007f9df76a5f3c 02 5f",
            "malformed 360428286627176252 _ 1",
        );
        refused("83 0001 02", "malformed _ _ _");
        refused("ff", "malformed _ _ _");
        refused("a1 08 62 4869", "malformed _ _ _");
        // Too deep, in an unknown key or an unknown type: malformed, with the envelope.
        let deep = |kind: &str, levels: usize| {
            format!(
                "a4 00{kind} 011b05007f9df76a5f3c 0263626f62 1863 {} 00",
                "81".repeat(levels - 1)
            )
        };
        refused(
            &deep("01", MAX_NESTING + 1),
            "malformed 360428286627176252 bob 1",
        );
        refused(
            &deep("191388", MAX_NESTING + 1),
            "malformed 360428286627176252 bob 5000",
        );
        refused(
            &deep("191388", 4000),
            "malformed 360428286627176252 bob 5000",
        );
        let deepest = hex::decode(deep("191388", MAX_NESTING).replace(' ', "")).expect("hex");
        let registry = Registry::with_core();
        assert!(accept(&registry, &TopicRoot::default(), UP, &deepest, 4096).is_ok());
        // Too large: the envelope is still read.
        refused(
            &format!(
                "a4 0001 011b05007f9df76a5f3c 0263626f62 08791000{}",
                "78".repeat(4096)
            ),
            "too-large 360428286627176252 bob 1",
        );
        // Not on an upstream topic: no one to answer.
    }

    #[test]
    fn rejection_reply_carries_the_request() {
        let mut no_text = Packet::new(PacketKind::MESSAGE);
        no_text.id = MessageId::new(77).ok();
        no_text.conv = ConversationRef::parse("bob").ok();
        let err = accept_at(UP, &no_text).expect_err("no text");
        let reply = err.to_packet();
        assert_eq!(reply.id, MessageId::new(77).ok());
        let body = ErrorReply::from_packet(&reply).expect("typed");
        assert_eq!(body.code, ErrorCode::INVALID);
        assert_eq!(body.about, Some(1));
    }
}
