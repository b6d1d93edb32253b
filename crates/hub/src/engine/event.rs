//! Events (spec section 8, steps 4 to 6): deduplicated by the sender's id, sequenced,
//! stored, and delivered to the durable inbox of every member; contact changes (spec 7.4);
//! messages to SIP addresses (spec 19).

use mqchat_proto::body::{Ack, Body, Contact, ContactState};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{
    ConversationRef, ErrorCode, InboxBranch, Moment, Packet, PacketKind, SipAddress, UserId,
};
use mqchat_store::{Author, ConvId, ConversationRow, EventRow, Membership, StoreError, Tx};

use super::{ConversationKey, Engine, Failure, Output, Target, Turn, body, conv_name, refuse};
use crate::render::{decode_stored, render};
use crate::{Outbound, Qos};

impl Engine {
    /// The answer to a resent event: its stored `conv`, `seq` and `ts`.
    pub(crate) fn duplicate(
        &self,
        tx: &Tx<'_>,
        inbound: &Inbound,
    ) -> Result<Option<Packet>, Failure> {
        let Some(id) = inbound.packet.id else {
            return Ok(None);
        };
        let Some(stored) = tx.find_duplicate(&inbound.sender.user, &inbound.sender.device, id)?
        else {
            return Ok(None);
        };
        let mut ack = Ack { duplicate: true }.to_packet();
        ack.id = Some(id);
        ack.conv = match tx.conversation(stored.conv)?.and_then(|c| c.group) {
            Some(gid) => Some(ConversationRef::Group(gid)),
            None => inbound.packet.conv.clone(),
        };
        ack.seq = Some(stored.seq);
        ack.ts = Some(stored.ts);
        Ok(Some(ack))
    }

    pub(super) fn event(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<(), Failure> {
        let sender = &inbound.sender;
        let Some(id) = inbound.packet.id else {
            return Err(refuse(inbound, ErrorCode::INVALID, "an event needs an id"));
        };
        if let Some(ack) = self.duplicate(turn.tx, inbound)? {
            turn.out.publishes.push(self.reply(inbound, &ack));
            return Ok(());
        }
        let now = turn.now;
        let tx = &mut *turn.tx;
        let (conv, contact_change) = match self.target(tx, inbound)? {
            Target::Direct(peer) => {
                let Some(conv) = tx.direct(&sender.user, &peer, true)? else {
                    return Err(Failure::Store(StoreError::NotFound(format!(
                        "conversation {}/{peer}",
                        sender.user
                    ))));
                };
                let change = if inbound.packet.kind == PacketKind::CONTACT {
                    Some((
                        self.contact_change(tx, now.at, inbound, &conv, &peer)?,
                        peer,
                    ))
                } else {
                    None
                };
                (conv, change)
            }
            Target::Group { .. } => (self.membership(tx, inbound)?.1, None),
            Target::Sip(address) => return self.event_to_sip(turn, inbound, &address),
        };
        let packet = inbound.packet.encode();
        let ts = now.wall.unix_ms();
        let seq = tx.append(
            conv.id,
            ts,
            &sender.user,
            &sender.device,
            Some(id),
            inbound.packet.kind,
            &packet,
        )?;
        if let Some(((mine, theirs), peer)) = contact_change {
            let before = tx
                .participant(conv.id, &sender.user)?
                .map(|p| p.contact)
                .unwrap_or_default();
            tx.set_contact(conv.id, &sender.user, mine)?;
            tx.set_contact(conv.id, &peer, theirs)?;
            if before == ContactState::Accepted && mine != ContactState::Accepted {
                turn.out
                    .presence_ended
                    .push((sender.user.clone(), peer.clone()));
                turn.out.presence_ended.push((peer, sender.user.clone()));
            }
        }
        // The event as just stored: delivered without reading it back.
        let event = EventRow {
            conv: conv.id,
            seq,
            ts,
            sender: Author::User(sender.user.clone()),
            sender_device: sender.device.clone(),
            client_id: Some(id),
            kind: inbound.packet.kind,
            packet,
        };
        self.deliver_event(turn.tx, &conv, &event, None, turn.out)?;
        Ok(())
    }

    /// An event to a SIP address (spec 19): a text message, stored in the sender's
    /// conversation with the address, then sent through the gateway as a SIP MESSAGE.
    fn event_to_sip(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
        address: &SipAddress,
    ) -> Result<(), Failure> {
        let Turn { tx, now, out } = turn;
        let sender = &inbound.sender;
        if inbound.packet.kind != PacketKind::MESSAGE {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                format!("only text messages reach {address}"),
            ));
        }
        let routed = self.sip().is_some_and(|sip| {
            mqchat_sip::Uri::parse(address.as_str())
                .ok()
                .and_then(|uri| self.peer_for(&sip, &uri))
                .is_some()
        });
        if !routed {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                format!("this hub has no SIP gateway route to {address}"),
            ));
        }
        let message: mqchat_proto::body::Message = body(inbound)?;
        let Some(conv) = tx.sip_conversation(&sender.user, address, true)? else {
            return Err(Failure::Store(StoreError::NotFound(format!(
                "conversation {}/{address}",
                sender.user
            ))));
        };
        let seq = tx.append(
            conv.id,
            now.wall.unix_ms(),
            &sender.user,
            &sender.device,
            inbound.packet.id,
            inbound.packet.kind,
            &inbound.packet.encode(),
        )?;
        self.deliver(tx, conv.id, seq, None, out)?;
        self.message_out(
            now.at,
            sender,
            inbound.packet.id,
            conv.id,
            seq,
            address,
            &message.text,
            out,
        );
        Ok(())
    }

    fn contact_change(
        &mut self,
        tx: &Tx<'_>,
        now: Moment,
        inbound: &Inbound,
        conv: &ConversationRow,
        peer: &UserId,
    ) -> Result<(ContactState, ContactState), Failure> {
        if *peer == inbound.sender.user {
            return Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "one cannot be one's own contact",
            ));
        }
        let contact: Contact = body(inbound)?;
        let state = tx
            .participant(conv.id, &inbound.sender.user)?
            .map(|p| p.contact)
            .unwrap_or_default();
        let change = state.apply(contact.action).ok_or_else(|| {
            refuse(
                inbound,
                ErrorCode::CONFLICT,
                format!(
                    "{:?} is not possible in contact state {state:?}",
                    contact.action
                ),
            )
        })?;
        if contact.action == mqchat_proto::body::ContactAction::Request {
            self.charge(inbound, |rates| {
                rates.contact_request(&inbound.sender.user, now)
            })?;
        }
        Ok(change)
    }

    /// Publishes a stored event to the durable inbox of every member, and of `extra` (an
    /// invited or removed user the event concerns).
    pub(crate) fn deliver(
        &self,
        tx: &Tx<'_>,
        conv: ConvId,
        seq: u64,
        extra: Option<&UserId>,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        let (Some(row), Some(event)) = (tx.conversation(conv)?, tx.event(conv, seq)?) else {
            return Ok(());
        };
        self.deliver_event(tx, &row, &event, extra, out)
    }

    /// [`Engine::deliver`] of an event the caller has in hand, in conversation `row` (whose
    /// sequence numbers may be older than the event: only its identity and kind are used).
    pub(crate) fn deliver_event(
        &self,
        tx: &Tx<'_>,
        row: &ConversationRow,
        event: &EventRow,
        extra: Option<&UserId>,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        let participants = tx.participants(event.conv)?;
        // Decoded once for all readers; in a group every reader but the author gets the
        // same bytes, so those are encoded once too.
        if let Some(stored) = decode_stored(event) {
            let mut others_copy: Option<Vec<u8>> = None;
            for participant in &participants {
                if participant.state != Membership::Member && Some(&participant.user) != extra {
                    continue;
                }
                let Some(name) = conv_name(row, participant) else {
                    continue;
                };
                if row.group.is_some() && event.sender.user() != Some(&participant.user) {
                    let payload = others_copy.get_or_insert_with(|| {
                        render(&stored, event, &participant.user, &name).encode()
                    });
                    out.publishes.push(Outbound {
                        topic: self.inbox(&participant.user, InboxBranch::Durable),
                        payload: payload.clone(),
                        qos: Qos::AtLeastOnce,
                        retain: false,
                    });
                    continue;
                }
                let packet = render(&stored, event, &participant.user, &name);
                out.publishes.push(self.durable(&participant.user, &packet));
            }
        }
        out.delivered.push((ConversationKey(event.conv), event.seq));
        self.pushes(tx, event.conv, event, &participants, extra, out)
    }
}
