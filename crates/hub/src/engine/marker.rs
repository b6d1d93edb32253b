//! Markers (spec section 9): a reader's `delivered` and `read` in a conversation, moved
//! forward only, and told to those they concern. Direct, group and SIP conversations take
//! one path; what differs between them is data (an [`Audience`]).

use mqchat_proto::body::{Body, Delivered, Read};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{ConversationRef, ErrorCode, Packet, PacketKind, Timestamp, UserId};
use mqchat_store::{ConversationRow, ParticipantRow, StoreError, Tx};

use super::{Engine, Failure, Output, Target, Turn, body, refuse, window};

/// A core marker: `read` or `delivered`, up to a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    /// `read` (which raises `delivered` too); else `delivered`.
    is_read: bool,
    /// The last sequence number it covers.
    up_to: u64,
    /// A private `read`: the reader's own devices learn it, no one else does.
    private: bool,
}

/// A participant's two markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Markers {
    delivered: u64,
    read: u64,
}

impl Marker {
    /// The core marker a packet carries; `None` for an extension marker.
    fn of(inbound: &Inbound) -> Result<Option<Self>, Failure> {
        Ok(match inbound.packet.kind {
            PacketKind::READ => {
                let read: Read = body(inbound)?;
                Some(Self {
                    is_read: true,
                    up_to: read.up_to,
                    private: read.private,
                })
            }
            PacketKind::DELIVERED => Some(Self {
                is_read: false,
                up_to: body::<Delivered>(inbound)?.up_to,
                private: false,
            }),
            _ => None,
        })
    }

    /// Where markers at `before` move to (forward only, clamped to the conversation's
    /// `last_seq`, `read` raising `delivered`); `None` if they do not move.
    fn advance(self, before: Markers, last_seq: u64) -> Option<Markers> {
        let up_to = self.up_to.min(last_seq);
        let read = if self.is_read {
            before.read.max(up_to)
        } else {
            before.read
        };
        let after = Markers {
            delivered: before.delivered.max(up_to).max(read),
            read,
        };
        (after != before).then_some(after)
    }
}

/// Who learns that a reader's markers moved, beyond the reader's own devices: the one
/// difference between the kinds of conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Audience {
    /// A direct conversation: the peer (no one in a conversation with oneself). Extension
    /// markers, whose meaning the hub does not know, are passed on to them.
    Peer(UserId),
    /// A group: the authors of the events the markers newly cover, from sequence number
    /// `floor + 1` on (the member's window), the hub's group events aside.
    Authors { floor: u64 },
    /// A SIP address: the outside party has no markers to be told.
    Nobody,
}

impl Audience {
    /// The users to tell about a marker moving over `(after, up_to]`.
    fn concerned(
        &self,
        tx: &Tx<'_>,
        conv: &ConversationRow,
        reader: &UserId,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<UserId>, StoreError> {
        match self {
            Self::Peer(peer) if peer != reader => Ok(vec![peer.clone()]),
            Self::Authors { floor } => tx.authors(
                conv.id,
                after.max(*floor),
                up_to,
                reader,
                PacketKind::GROUP_EVENT,
            ),
            Self::Peer(_) | Self::Nobody => Ok(Vec::new()),
        }
    }

    /// The packet that tells one of them that `reader`'s marker of `kind` reached `up_to`
    /// in the conversation the reader calls `name`.
    fn told(
        &self,
        name: &ConversationRef,
        reader: &UserId,
        kind: PacketKind,
        up_to: u64,
        now: Timestamp,
    ) -> Packet {
        let mut packet = match kind {
            PacketKind::READ => Read {
                up_to,
                private: false,
            }
            .to_packet(),
            _ => Delivered { up_to }.to_packet(),
        };
        packet.ts = Some(now.unix_ms());
        match self {
            // The peer names the conversation by the reader, who is then implied.
            Self::Peer(_) => packet.conv = Some(ConversationRef::Direct(reader.clone())),
            Self::Authors { .. } | Self::Nobody => {
                packet.conv = Some(name.clone());
                packet.from = Some(reader.clone());
            }
        }
        packet
    }
}

/// The conversation a marker moves in, resolved from the reader's side.
struct Scope {
    /// The conversation as the reader names it.
    name: ConversationRef,
    conv: ConversationRow,
    me: ParticipantRow,
    audience: Audience,
}

impl Engine {
    /// A marker: recorded, told to its audience and (`read`) to the reader's own devices.
    pub(super) fn marker(&self, turn: &mut Turn<'_, '_>, inbound: &Inbound) -> Result<(), Failure> {
        let (tx, now, out) = (&mut *turn.tx, turn.now.wall, &mut *turn.out);
        let scope = self.marker_scope(tx, inbound)?;
        let reader = &inbound.sender.user;
        let Some(marker) = Marker::of(inbound)? else {
            return self.extension_marker(now, inbound, &scope.audience, out);
        };
        let before = Markers {
            delivered: scope.me.delivered,
            read: scope.me.read,
        };
        let Some(after) = marker.advance(before, scope.conv.last_seq) else {
            return Ok(());
        };
        if let Audience::Authors { .. } = scope.audience {
            // A member's markers show in no other member's sync entry: only the member's
            // own row changes.
            tx.set_own_markers(scope.conv.id, reader, after.delivered, after.read)?;
        } else {
            tx.set_markers(scope.conv.id, reader, after.delivered, after.read)?;
        }
        let read_moved = after.read > before.read;
        let told_read = if read_moved && !marker.private {
            scope
                .audience
                .concerned(tx, &scope.conv, reader, before.read, after.read)?
        } else {
            Vec::new()
        };
        for user in &told_read {
            let packet =
                scope
                    .audience
                    .told(&scope.name, reader, PacketKind::READ, after.read, now);
            out.publishes.push(self.durable(user, &packet));
        }
        if after.delivered > before.delivered {
            let concerned = scope.audience.concerned(
                tx,
                &scope.conv,
                reader,
                before.delivered,
                after.delivered,
            )?;
            // Who learns `read` knows `delivered` too.
            for user in concerned.iter().filter(|u| !told_read.contains(u)) {
                let packet = scope.audience.told(
                    &scope.name,
                    reader,
                    PacketKind::DELIVERED,
                    after.delivered,
                    now,
                );
                out.publishes.push(self.durable(user, &packet));
            }
        }
        if read_moved {
            let mut own = Read {
                up_to: after.read,
                private: marker.private,
            }
            .to_packet();
            own.conv = Some(scope.name);
            own.ts = Some(now.unix_ms());
            own.from = Some(reader.clone());
            own.device = Some(inbound.sender.device.clone());
            out.publishes.push(self.durable(reader, &own));
        }
        Ok(())
    }

    /// The conversation a marker names, with the reader's participation, which must exist
    /// (in a group: be current).
    fn marker_scope(&self, tx: &Tx<'_>, inbound: &Inbound) -> Result<Scope, Failure> {
        let reader = &inbound.sender.user;
        let (conv, name, audience) = match self.target(tx, inbound)? {
            Target::Group { .. } => {
                let (gid, conv, _, me) = self.membership(tx, inbound)?;
                // Only events in the member's window have authors to tell.
                let floor = window(&conv, &me).0.saturating_sub(1);
                return Ok(Scope {
                    name: ConversationRef::Group(gid),
                    conv,
                    me,
                    audience: Audience::Authors { floor },
                });
            }
            Target::Direct(peer) => (
                tx.direct(reader, &peer, false)?,
                ConversationRef::Direct(peer.clone()),
                Audience::Peer(peer),
            ),
            Target::Sip(address) => (
                tx.sip_conversation(reader, &address, false)?,
                ConversationRef::Sip(address),
                Audience::Nobody,
            ),
        };
        let missing = || {
            refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {name}"),
            )
        };
        let conv = conv.ok_or_else(missing)?;
        let me = tx.participant(conv.id, reader)?.ok_or_else(missing)?;
        Ok(Scope {
            name,
            conv,
            me,
            audience,
        })
    }

    /// An extension marker: the hub knows no meaning for it, so a peer gets it passed on like
    /// a durable signal, and the other audiences refuse it.
    fn extension_marker(
        &self,
        now: Timestamp,
        inbound: &Inbound,
        audience: &Audience,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let sender = &inbound.sender.user;
        let peer = match audience {
            Audience::Peer(peer) => peer,
            Audience::Authors { .. } => {
                return Err(refuse(
                    inbound,
                    ErrorCode::UNSUPPORTED,
                    "extension markers are not supported in groups",
                ));
            }
            Audience::Nobody => {
                return Err(refuse(
                    inbound,
                    ErrorCode::UNSUPPORTED,
                    "extension markers do not reach SIP addresses",
                ));
            }
        };
        if peer != sender {
            let mut packet = inbound.packet.clone();
            packet.conv = Some(ConversationRef::Direct(sender.clone()));
            packet.ts = Some(now.unix_ms());
            packet.id = None;
            out.publishes.push(self.durable(peer, &packet));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(delivered: u64, read: u64) -> Markers {
        Markers { delivered, read }
    }

    fn check(before: Markers, is_read: bool, up_to: u64, last_seq: u64, expected: Option<Markers>) {
        let marker = Marker {
            is_read,
            up_to,
            private: false,
        };
        assert_eq!(
            marker.advance(before, last_seq),
            expected,
            "{marker:?} from {before:?} in a conversation at {last_seq}"
        );
    }

    #[test]
    fn markers_move_forward_only_within_the_conversation() {
        check(markers(0, 0), false, 3, 10, Some(markers(3, 0)));
        check(markers(0, 0), true, 3, 10, Some(markers(3, 3)));
        check(markers(5, 2), true, 3, 10, Some(markers(5, 3)));
        check(markers(5, 2), false, 3, 10, None);
        check(markers(5, 2), true, 2, 10, None);
        check(markers(0, 0), true, 99, 10, Some(markers(10, 10)));
        check(markers(10, 10), false, 99, 10, None);
        check(markers(0, 0), false, 0, 10, None);
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("valid")
    }

    #[test]
    fn what_each_audience_is_told() {
        let alice = user("alice");
        let group =
            ConversationRef::Group(mqchat_proto::GroupId::parse("abcdefghjk").expect("valid"));
        let peer = Audience::Peer(user("bob"));
        let packet = peer.told(
            &ConversationRef::Direct(user("bob")),
            &alice,
            PacketKind::READ,
            7,
            Timestamp::from_unix_ms(9),
        );
        assert_eq!(packet.kind, PacketKind::READ);
        assert_eq!(packet.conv, Some(ConversationRef::Direct(alice.clone())));
        assert_eq!((packet.from, packet.ts), (None, Some(9)));
        let authors = Audience::Authors { floor: 0 };
        let nine = Timestamp::from_unix_ms(9);
        let packet = authors.told(&group, &alice, PacketKind::DELIVERED, 7, nine);
        assert_eq!(packet.kind, PacketKind::DELIVERED);
        assert_eq!(packet.conv, Some(group));
        assert_eq!((packet.from, packet.ts), (Some(alice), Some(9)));
    }
}
