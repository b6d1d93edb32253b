//! Client state, push targets, mutes, and which devices a new event must wake (spec 7.13).
//! The hub decides; the caller sends (the engine does no I/O).

use mqchat_proto::body::{
    Ack, Availability, Body, Call, CallOutcome, ClientState, Contact, ContactAction, GroupAction,
    GroupEvent, Message, Mute, Presence, PushRegister, PushTarget,
};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{ConversationRef, DeviceId, ErrorCode, Packet, PacketKind, Timestamp, UserId};
use mqchat_store::{ConvId, EventRow, Membership, ParticipantRow, StoreError, Tx};

use crate::engine::{Engine, Failure, Output, Target, Turn, body, conv_name, refuse};

/// One push the hub asks for: wake `device` of `user` about `conversation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The user.
    pub user: UserId,
    /// Their device.
    pub device: DeviceId,
    /// Where it is woken.
    pub target: PushTarget,
    /// The conversation, as the user names it.
    pub conversation: ConversationRef,
    /// The new event's sequence number.
    pub seq: u64,
    /// The message text, for devices that registered with `preview`.
    pub preview: Option<String>,
    /// A call is ringing for this device (spec 19): wake it at once.
    pub call: bool,
}

/// What a new event tells `reader`, if it is worth a push: `Some(text)` for a message,
/// `Some(None)` for a contact request or an invitation of the reader.
fn notable(event: &EventRow, packet: &Packet, reader: &UserId) -> Option<Option<String>> {
    match event.kind {
        PacketKind::MESSAGE => Some(Message::from_packet(packet).ok().map(|m| m.text)),
        PacketKind::CONTACT => Contact::from_packet(packet)
            .ok()
            .filter(|c| c.action == ContactAction::Request)
            .map(|_| None),
        PacketKind::GROUP_EVENT => GroupEvent::from_packet(packet)
            .ok()
            .filter(|g| g.action == GroupAction::Invited && g.user.as_ref() == Some(reader))
            .map(|_| None),
        // A missed call wakes the callee (the caller is the author, never a candidate).
        PacketKind::CALL => Call::from_packet(packet)
            .ok()
            .filter(|c| c.outcome == CallOutcome::Missed)
            .map(|_| None),
        _ => None,
    }
}

impl Engine {
    /// The pushes a newly delivered event calls for. `extra` is a non-member who receives it
    /// too (the invitee of an invitation).
    pub(crate) fn pushes(
        &self,
        tx: &Tx<'_>,
        conv: ConvId,
        event: &EventRow,
        participants: &[ParticipantRow],
        extra: Option<&UserId>,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        if !matches!(
            event.kind,
            PacketKind::MESSAGE | PacketKind::CONTACT | PacketKind::GROUP_EVENT | PacketKind::CALL
        ) {
            return Ok(());
        }
        let candidates = tx.push_candidates(conv, &event.sender, event.ts)?;
        if candidates.is_empty() {
            return Ok(());
        }
        let Some(row) = tx.conversation(conv)? else {
            return Ok(());
        };
        let Ok(packet) = Packet::decode(&event.packet) else {
            return Ok(());
        };
        for (user, device) in candidates {
            let Some(reader) = participants.iter().find(|p| p.user == user) else {
                continue;
            };
            if reader.state != Membership::Member && Some(&user) != extra {
                continue;
            }
            let (Some(text), Some(name)) =
                (notable(event, &packet, &user), conv_name(&row, reader))
            else {
                continue;
            };
            out.pushes.push(Push {
                user,
                device: device.device,
                target: device.target,
                conversation: name,
                seq: event.seq,
                preview: text.filter(|_| device.preview),
                call: false,
            });
        }
        Ok(())
    }

    /// The sending device's own settings, acknowledged: `client-state` (whether it is
    /// active), `push-register` (its push target) and `push-unregister`.
    pub(crate) fn device_setting(
        &self,
        turn: &Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<Packet, Failure> {
        let (user, device) = (&inbound.sender.user, &inbound.sender.device);
        let now = turn.now.wall.unix_ms();
        match inbound.packet.kind {
            PacketKind::CLIENT_STATE => {
                let state = body::<ClientState>(inbound)?;
                turn.tx.set_active(user, device, state.active, now)?;
            }
            PacketKind::PUSH_REGISTER => {
                let register = body::<PushRegister>(inbound)?;
                let target = &register.target;
                turn.tx
                    .set_push_target(user, device, target, register.preview, now)?;
                tracing::info!(user = %user, device = %device, provider = target.provider_name(), "push target registered");
            }
            _ => {
                turn.tx.remove_push_target(user, device)?;
            }
        }
        Ok(Ack::default().to_packet())
    }

    /// `mute`: sets the user's mute of the envelope's conversation.
    pub(crate) fn mute(&self, tx: &Tx<'_>, inbound: &Inbound) -> Result<Packet, Failure> {
        let mute = body::<Mute>(inbound)?;
        let user = &inbound.sender.user;
        let conv = match self.target(tx, inbound)? {
            Target::Direct(peer) => tx.direct(user, &peer, true)?.map(|c| c.id),
            Target::Group {
                conv, me: Some(me), ..
            } if matches!(me.state, Membership::Member | Membership::Invited) => Some(conv.id),
            Target::Group { gid, .. } => {
                return Err(refuse(
                    inbound,
                    ErrorCode::FORBIDDEN,
                    format!("not a member of #{gid}"),
                ));
            }
            Target::Sip(address) => tx.sip_conversation(user, &address, true)?.map(|c| c.id),
        };
        let Some(conv) = conv else {
            return Err(refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                "no such conversation",
            ));
        };
        tx.set_mute(conv, user, mute.until)?;
        Ok(Ack::default().to_packet())
    }

    /// A presence PUBLISH: records whether the device is connected.
    pub(crate) fn presence_state(
        &self,
        tx: &Tx<'_>,
        now: Timestamp,
        topic_user: &UserId,
        device: &DeviceId,
        presence: &Presence,
    ) {
        let connected = presence.availability != Availability::Offline;
        if let Err(e) = tx.set_connected(topic_user, device, connected, now.unix_ms()) {
            tracing::error!(user = %topic_user, device = %device, error = %e, "could not record a device's connection");
        }
    }
}
