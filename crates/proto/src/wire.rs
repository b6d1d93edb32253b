//! MQTT framing arithmetic, and the wire-size table of the spec computed from real packets.
//!
//! The table in `docs/PROTOCOL.md` is this module's [`size_table`] output, checked by a test,
//! so the figures in the spec are never typed by hand.

use crate::body::{Body, Delivered, Message};
use crate::id::IdGenerator;
use crate::identity::{ConversationRef, DeviceId, UserId};
use crate::packet::Packet;
use crate::topic::{InboxBranch, Topic, TopicRoot};

/// The MQTT protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.0.
    V5,
}

/// An MQTT delivery guarantee, as the hub, the embedded broker and the SDK publish with (none
/// of them uses QoS 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// QoS 0: at most once (chat states).
    AtMostOnce,
    /// QoS 1: at least once (everything else).
    AtLeastOnce,
}

/// Bytes of a variable byte integer (MQTT's remaining-length encoding).
pub fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Bytes of a PUBLISH packet on the wire: fixed header, topic, packet id (QoS 1 and 2),
/// properties (MQTT 5: their length field plus `properties_len` bytes), and payload.
pub fn publish_len(
    version: MqttVersion,
    topic_len: usize,
    payload_len: usize,
    qos: u8,
    properties_len: usize,
) -> usize {
    let packet_id = if qos > 0 { 2 } else { 0 };
    let properties = match version {
        MqttVersion::V311 => 0,
        MqttVersion::V5 => varint_len(properties_len) + properties_len,
    };
    let remaining = 2 + topic_len + packet_id + properties + payload_len;
    1 + varint_len(remaining) + remaining
}

/// Bytes of a PUBACK (both versions, success, no properties).
pub const PUBACK_LEN: usize = 4;

/// One row of the wire-size table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeRow {
    /// What the step is.
    pub step: &'static str,
    /// The topic it travels on.
    pub topic: String,
    /// The CBOR payload.
    pub payload: Vec<u8>,
}

impl SizeRow {
    /// PUBLISH bytes at QoS 1 for the given version, no properties.
    pub fn publish_len(&self, version: MqttVersion) -> usize {
        publish_len(version, self.topic.len(), self.payload.len(), 1, 0)
    }

    /// MQTT 5 PUBLISH bytes at QoS 1 once its topic has an alias on the connection: an
    /// empty topic and the Topic Alias property (3 bytes).
    pub fn aliased_len(&self) -> usize {
        publish_len(
            MqttVersion::V5,
            0,
            self.payload.len(),
            1,
            TOPIC_ALIAS_PROPERTY_LEN,
        )
    }
}

/// Bytes of the MQTT 5 Topic Alias property: its identifier and a two-byte alias.
pub const TOPIC_ALIAS_PROPERTY_LEN: usize = 3;

/// The packets of a one-to-one "Hi" from alice's phone to bob with bob's delivered marker,
/// under the default root, with realistic values (a 2026 timestamp, sequence number 42).
pub fn hi_exchange() -> Vec<SizeRow> {
    // Parsing these literals cannot fail; the unit test below runs this function.
    let user = |s: &str| UserId::parse(s).unwrap_or_else(|_| unreachable!("valid literal"));
    let (alice, bob) = (user("alice"), user("bob"));
    let phone = DeviceId::parse("phone").unwrap_or_else(|_| unreachable!("valid literal"));
    let root = TopicRoot::default();
    let ts = 1_790_000_000_000; // 2026-09-21
    let id = IdGenerator::new().next(ts - 35, 0x2a_5f3c);
    let hi = Message::text("Hi");

    let mut up = hi.to_packet();
    up.id = Some(id);
    up.conv = Some(ConversationRef::Direct(bob.clone()));

    let mut to_bob = hi.to_packet();
    to_bob.conv = Some(ConversationRef::Direct(alice.clone()));
    to_bob.seq = Some(42);
    to_bob.ts = Some(ts);

    let mut copy = to_bob.clone();
    copy.id = Some(id);
    copy.conv = Some(ConversationRef::Direct(bob.clone()));
    copy.from = Some(alice.clone());
    copy.device = Some(phone.clone());

    let mut delivered_up = Delivered { up_to: 42 }.to_packet();
    delivered_up.conv = Some(ConversationRef::Direct(alice.clone()));
    let mut delivered_down = Delivered { up_to: 42 }.to_packet();
    delivered_down.conv = Some(ConversationRef::Direct(bob.clone()));
    delivered_down.ts = Some(ts + 80);

    let topic = |t: Topic| root.topic(&t);
    let row = |step, t: Topic, p: &Packet| SizeRow {
        step,
        topic: topic(t),
        payload: p.encode(),
    };
    vec![
        row(
            "alice → hub: message",
            Topic::Upstream {
                user: alice.clone(),
                device: phone.clone(),
            },
            &up,
        ),
        row(
            "hub → bob: message",
            Topic::Inbox {
                user: bob.clone(),
                branch: InboxBranch::Durable,
            },
            &to_bob,
        ),
        row(
            "hub → alice's devices: sent copy",
            Topic::Inbox {
                user: alice.clone(),
                branch: InboxBranch::Durable,
            },
            &copy,
        ),
        row(
            "bob → hub: delivered",
            Topic::Upstream {
                user: bob,
                device: phone,
            },
            &delivered_up,
        ),
        row(
            "hub → alice: delivered",
            Topic::Inbox {
                user: alice,
                branch: InboxBranch::Durable,
            },
            &delivered_down,
        ),
    ]
}

/// Bytes of the whole [`hi_exchange`] on the wire, PUBACKs included.
pub fn exchange_total(version: MqttVersion) -> usize {
    let rows = hi_exchange();
    rows.iter().map(|r| r.publish_len(version)).sum::<usize>() + rows.len() * PUBACK_LEN
}

/// The wire-size table of the spec, as Markdown.
pub fn size_table() -> String {
    use std::fmt::Write;
    let rows = hi_exchange();
    let mut out = String::new();
    out.push_str(
        "| step | topic | CBOR payload | PUBLISH, MQTT 3.1.1 | PUBLISH, MQTT 5 | MQTT 5, topic alias |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    let (mut v3, mut v5, mut aliased) = (0, 0, 0);
    for r in &rows {
        let (a, b, c) = (
            r.publish_len(MqttVersion::V311),
            r.publish_len(MqttVersion::V5),
            r.aliased_len(),
        );
        v3 += a;
        v5 += b;
        aliased += c;
        let _ = writeln!(
            out,
            "| {} | `{}` | {} B | {a} B | {b} B | {c} B |",
            r.step,
            r.topic,
            r.payload.len()
        );
    }
    let acks = rows.len() * PUBACK_LEN;
    let _ = writeln!(
        out,
        "| PUBACKs ({} × {PUBACK_LEN} B) | | | {acks} B | {acks} B | {acks} B |",
        rows.len()
    );
    let _ = writeln!(
        out,
        "| **whole exchange** | | | **{} B** | **{} B** | **{} B** |",
        v3 + acks,
        v5 + acks,
        aliased + acks
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        // A QoS 0 PUBLISH of "a/b" with an empty payload: 0x30, len 5, 0x0003 "a/b".
        assert_eq!(publish_len(MqttVersion::V311, 3, 0, 0, 0), 7);
        assert_eq!(publish_len(MqttVersion::V5, 3, 0, 0, 0), 8);
        assert_eq!(publish_len(MqttVersion::V311, 3, 0, 1, 0), 9);
        // The remaining length grows to two bytes past 127.
        assert_eq!(publish_len(MqttVersion::V311, 10, 113, 1, 0), 1 + 1 + 127);
        assert_eq!(publish_len(MqttVersion::V311, 10, 114, 1, 0), 1 + 2 + 128);
        assert_eq!(varint_len(2_097_152), 4);
    }

    #[test]
    fn exchange_is_small() {
        let rows = hi_exchange();
        assert_eq!(rows.len(), 5);
        // The upstream "Hi" must stay far below XMPP's 152 B (the point of the design).
        assert!(rows[0].publish_len(MqttVersion::V311) < 60, "{rows:?}");
        for r in &rows {
            Packet::decode(&r.payload).expect("every sample decodes");
        }
    }

    #[test]
    fn spec_has_the_current_table() {
        let spec = include_str!("../../../docs/PROTOCOL.md");
        let table = size_table();
        assert!(
            spec.contains(&table),
            "docs/PROTOCOL.md's wire-size table is out of date; replace it with:\n{table}"
        );
        let readme = include_str!("../../../README.md");
        let total = exchange_total(MqttVersion::V311);
        assert!(
            readme.contains(&format!("costs {total} bytes")),
            "README.md should say the exchange costs {total} bytes"
        );
    }
}
