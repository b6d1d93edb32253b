//! Stored events as each reader sees them (spec section 8, step 6): the conversation named
//! from the reader's side, `from` only where it is not implied, `id` and `device` only on the
//! sender's own copies.

use mqchat_proto::{ConversationRef, Packet, PacketKind, UserId};
use mqchat_store::{Author, EventRow};

/// Renders `event` for `reader`, who names the conversation `conv`. `None` if the stored
/// packet no longer decodes (logged: the archive was written by this hub, so it means
/// corruption).
pub(crate) fn event_for(
    event: &EventRow,
    reader: &UserId,
    conv: &ConversationRef,
) -> Option<Packet> {
    decode_stored(event).map(|stored| render(&stored, event, reader, conv))
}

/// The stored packet of `event`, decoded; `None` (logged) if it does not decode.
pub(crate) fn decode_stored(event: &EventRow) -> Option<Packet> {
    match Packet::decode(&event.packet) {
        Ok(packet) => Some(packet),
        Err(e) => {
            tracing::error!(conv = event.conv, seq = event.seq, error = %e, "stored event does not decode");
            None
        }
    }
}

/// Renders `event`, whose stored packet decoded to `stored`, for `reader`, who names the
/// conversation `conv`.
pub(crate) fn render(
    stored: &Packet,
    event: &EventRow,
    reader: &UserId,
    conv: &ConversationRef,
) -> Packet {
    let mut packet = stored.clone();
    let own = event.sender.user() == Some(reader);
    packet.conv = Some(conv.clone());
    packet.seq = Some(event.seq);
    packet.ts = Some(event.ts);
    packet.from = match &event.sender {
        Author::User(sender) if own || matches!(conv, ConversationRef::Group(_)) => {
            Some(sender.clone())
        }
        _ => None,
    };
    // A call record was made by the hub, not sent by a device: no id, no device.
    let sent = own && event.kind != PacketKind::CALL;
    packet.id = if sent { event.client_id } else { None };
    packet.device = sent.then(|| event.sender_device.clone());
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqchat_proto::body::{Body, Message};
    use mqchat_proto::{DeviceId, MessageId, PacketKind};

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid")
    }

    #[test]
    fn own_and_peer_views() {
        let mut stored = Message::text("Hi").to_packet();
        stored.id = MessageId::new(7).ok();
        stored.conv = ConversationRef::parse("bob").ok();
        let event = EventRow {
            conv: 1,
            seq: 42,
            ts: 1000,
            sender: Author::User(user("alice")),
            sender_device: DeviceId::parse("phone").expect("valid"),
            client_id: MessageId::new(7).ok(),
            kind: PacketKind::MESSAGE,
            packet: stored.encode(),
        };
        let for_bob = event_for(
            &event,
            &user("bob"),
            &ConversationRef::Direct(user("alice")),
        )
        .expect("renders");
        assert_eq!(
            (for_bob.id, for_bob.from.as_ref(), for_bob.device.as_ref()),
            (None, None, None)
        );
        assert_eq!(for_bob.conv, Some(ConversationRef::Direct(user("alice"))));
        assert_eq!((for_bob.seq, for_bob.ts), (Some(42), Some(1000)));
        let for_alice = event_for(
            &event,
            &user("alice"),
            &ConversationRef::Direct(user("bob")),
        )
        .expect("renders");
        assert_eq!(for_alice.id, MessageId::new(7).ok());
        assert_eq!(for_alice.from, Some(user("alice")));
        assert_eq!(
            for_alice.device.map(|d| d.to_string()).as_deref(),
            Some("phone")
        );
    }
}
