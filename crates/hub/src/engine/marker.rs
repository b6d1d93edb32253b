//! Markers (spec section 9): a reader's `delivered` and `read` in a conversation, moved
//! forward only, and told to whom they concern.

use mqchat_proto::body::{Body, Delivered, Read};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{ConversationRef, ErrorCode, Packet, PacketKind, SipAddress};
use mqchat_store::{ParticipantRow, Tx};

use super::{Engine, Failure, Output, Target, body, refuse, window};

/// A core marker's meaning: (is it `read`, up to, private); `None` for other types.
fn marker_of(inbound: &Inbound) -> Result<Option<(bool, u64, bool)>, Failure> {
    Ok(match inbound.packet.kind {
        PacketKind::READ => {
            let read: Read = body(inbound)?;
            Some((true, read.up_to, read.private))
        }
        PacketKind::DELIVERED => Some((false, body::<Delivered>(inbound)?.up_to, false)),
        _ => None,
    })
}

/// Where a participant's markers move to (spec section 9: forward only, clamped to the
/// conversation, `read` raising `delivered`); `None` if they do not move.
fn advance(me: &ParticipantRow, last_seq: u64, is_read: bool, up_to: u64) -> Option<(u64, u64)> {
    let up_to = up_to.min(last_seq);
    let read = if is_read { me.read.max(up_to) } else { me.read };
    let delivered = me.delivered.max(up_to).max(read);
    (read != me.read || delivered != me.delivered).then_some((delivered, read))
}

impl Engine {
    /// A marker in a conversation with a SIP address: the reader's own state only (the
    /// outside party has no markers to be told).
    fn sip_marker(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        address: &SipAddress,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let sender = &inbound.sender;
        let missing = || {
            refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {address}"),
            )
        };
        let Some(conv) = tx.sip_conversation(&sender.user, address, false)? else {
            return Err(missing());
        };
        let Some(me) = tx.participant(conv.id, &sender.user)? else {
            return Err(missing());
        };
        let Some((is_read, up_to, private)) = marker_of(inbound)? else {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                "extension markers do not reach SIP addresses",
            ));
        };
        let Some((delivered, read)) = advance(&me, conv.last_seq, is_read, up_to) else {
            return Ok(());
        };
        tx.set_markers(conv.id, &sender.user, delivered, read)?;
        if read > me.read {
            let mut own = Read {
                up_to: read,
                private,
            }
            .to_packet();
            own.conv = Some(ConversationRef::Sip(address.clone()));
            own.ts = Some(now);
            own.from = Some(sender.user.clone());
            own.device = Some(sender.device.clone());
            out.publishes.push(self.durable(&sender.user, &own));
        }
        Ok(())
    }

    pub(super) fn marker(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let peer = match self.target(tx, inbound)? {
            Target::Direct(peer) => peer,
            Target::Group { .. } => return self.group_marker(tx, now, inbound, out),
            Target::Sip(address) => return self.sip_marker(tx, now, inbound, &address, out),
        };
        let sender = &inbound.sender;
        let Some(conv) = tx.direct(&sender.user, &peer, false)? else {
            return Err(refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {peer}"),
            ));
        };
        let Some(me) = tx.participant(conv.id, &sender.user)? else {
            return Err(refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {peer}"),
            ));
        };
        let Some((is_read, up_to, private)) = marker_of(inbound)? else {
            // An extension marker: the hub knows no semantics for it, so it only passes it
            // on to the peer, like a durable signal.
            let mut packet = inbound.packet.clone();
            packet.conv = Some(ConversationRef::Direct(sender.user.clone()));
            packet.ts = Some(now);
            packet.id = None;
            if peer != sender.user {
                out.publishes.push(self.durable(&peer, &packet));
            }
            return Ok(());
        };
        let Some((delivered, read)) = advance(&me, conv.last_seq, is_read, up_to) else {
            return Ok(());
        };
        tx.set_markers(conv.id, &sender.user, delivered, read)?;
        let to_peer = |kind: PacketKind, value: u64| {
            let mut packet = marker_packet(kind, value);
            packet.conv = Some(ConversationRef::Direct(sender.user.clone()));
            packet.ts = Some(now);
            packet
        };
        if peer != sender.user {
            if read > me.read && !private {
                out.publishes
                    .push(self.durable(&peer, &to_peer(PacketKind::READ, read)));
            } else if delivered > me.delivered {
                out.publishes
                    .push(self.durable(&peer, &to_peer(PacketKind::DELIVERED, delivered)));
            }
        }
        if read > me.read {
            let mut own = Read {
                up_to: read,
                private,
            }
            .to_packet();
            own.conv = Some(ConversationRef::Direct(peer.clone()));
            own.ts = Some(now);
            own.from = Some(sender.user.clone());
            own.device = Some(sender.device.clone());
            out.publishes.push(self.durable(&sender.user, &own));
        }
        Ok(())
    }

    /// A member's marker in a group: recorded, and delivered to the authors of the events it
    /// newly covers and (read) to the member's own devices (spec section 9).
    fn group_marker(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let (gid, conv, _, me) = self.membership(tx, inbound)?;
        let sender = &inbound.sender;
        let Some((is_read, up_to, private)) = marker_of(inbound)? else {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                "extension markers are not supported in groups",
            ));
        };
        let Some((delivered, read)) = advance(&me, conv.last_seq, is_read, up_to) else {
            return Ok(());
        };
        tx.set_own_markers(conv.id, &sender.user, delivered, read)?;
        let name = ConversationRef::Group(gid);
        let to_author = |kind: PacketKind, value: u64| {
            let mut packet = marker_packet(kind, value);
            packet.conv = Some(name.clone());
            packet.ts = Some(now);
            packet.from = Some(sender.user.clone());
            packet
        };
        // Only events in the member's window, and not the hub's group events, have authors
        // to tell.
        let floor = window(&conv, &me).0.saturating_sub(1);
        let skip = PacketKind::GROUP_EVENT;
        let told_read = if read > me.read && !private {
            tx.authors(conv.id, me.read.max(floor), read, &sender.user, skip)?
        } else {
            Vec::new()
        };
        for author in &told_read {
            out.publishes
                .push(self.durable(author, &to_author(PacketKind::READ, read)));
        }
        if delivered > me.delivered {
            for author in tx.authors(
                conv.id,
                me.delivered.max(floor),
                delivered,
                &sender.user,
                skip,
            )? {
                if !told_read.contains(&author) {
                    out.publishes
                        .push(self.durable(&author, &to_author(PacketKind::DELIVERED, delivered)));
                }
            }
        }
        if read > me.read {
            let mut own = Read {
                up_to: read,
                private,
            }
            .to_packet();
            own.conv = Some(name);
            own.ts = Some(now);
            own.from = Some(sender.user.clone());
            own.device = Some(sender.device.clone());
            out.publishes.push(self.durable(&sender.user, &own));
        }
        Ok(())
    }
}

fn marker_packet(kind: PacketKind, up_to: u64) -> Packet {
    match kind {
        PacketKind::READ => Read {
            up_to,
            private: false,
        }
        .to_packet(),
        _ => Delivered { up_to }.to_packet(),
    }
}
