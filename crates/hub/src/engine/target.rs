//! Which conversation a packet names, resolved from its sender's side, and the sender's
//! membership of a group.

use mqchat_proto::upstream::Inbound;
use mqchat_proto::{ConversationRef, ErrorCode, GroupId, SipAddress, UserId};
use mqchat_store::{ConversationRow, GroupProfile, Membership, ParticipantRow, Tx};

use super::{Engine, Failure, refuse};

impl Engine {
    /// The conversation a packet names, resolved from the sender's side.
    pub(crate) fn target(&self, tx: &Tx<'_>, inbound: &Inbound) -> Result<Target, Failure> {
        match &inbound.packet.conv {
            Some(ConversationRef::Direct(peer)) => {
                if tx.user_exists(peer, true)? {
                    Ok(Target::Direct(peer.clone()))
                } else {
                    Err(refuse(
                        inbound,
                        ErrorCode::NO_SUCH_USER,
                        format!("no user {:?}", peer.as_str()),
                    ))
                }
            }
            Some(ConversationRef::Group(gid)) => match tx.group(gid)? {
                Some((conv, profile)) if !conv.deleted => {
                    let me = tx.participant(conv.id, &inbound.sender.user)?;
                    Ok(Target::Group {
                        gid: gid.clone(),
                        conv,
                        profile,
                        me,
                    })
                }
                _ => Err(refuse(
                    inbound,
                    ErrorCode::NOT_FOUND,
                    format!("no group #{gid}"),
                )),
            },
            Some(ConversationRef::Sip(address)) => Ok(Target::Sip(address.clone())),
            None => Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "a conversation is required",
            )),
        }
    }

    /// The sender's membership of the group a packet names, which must be current.
    pub(crate) fn membership(
        &self,
        tx: &Tx<'_>,
        inbound: &Inbound,
    ) -> Result<(GroupId, ConversationRow, GroupProfile, ParticipantRow), Failure> {
        match self.target(tx, inbound)? {
            Target::Group {
                gid,
                conv,
                profile,
                me: Some(me),
            } if me.state == Membership::Member => Ok((gid, conv, profile, me)),
            Target::Group { gid, .. } => Err(refuse(
                inbound,
                ErrorCode::FORBIDDEN,
                format!("not a member of #{gid}"),
            )),
            Target::Direct(_) | Target::Sip(_) => Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "this needs a group conversation",
            )),
        }
    }
}

/// What a packet's conversation names, from the sender's side. One lives per packet, so the
/// size difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    /// A direct conversation with this (existing) user.
    Direct(UserId),
    /// A group, with the sender's participation if any.
    Group {
        gid: GroupId,
        conv: ConversationRow,
        profile: GroupProfile,
        me: Option<ParticipantRow>,
    },
    /// The sender's conversation with a SIP address.
    Sip(SipAddress),
}

/// How `participant` names `conv`.
pub(crate) fn conv_name(
    conv: &ConversationRow,
    participant: &ParticipantRow,
) -> Option<ConversationRef> {
    match (&conv.group, &conv.sip) {
        (Some(gid), _) => Some(ConversationRef::Group(gid.clone())),
        (None, Some(address)) => Some(ConversationRef::Sip(address.clone())),
        (None, None) => participant.peer.clone().map(ConversationRef::Direct),
    }
}

/// The first and last sequence numbers `me` may read in `conv` (spec 7.11, History).
pub(crate) fn window(conv: &ConversationRow, me: &ParticipantRow) -> (u64, u64) {
    const END: u64 = u64::MAX >> 1;
    if conv.group.is_none() {
        return (1, END);
    }
    let floor = if conv.history_all { 1 } else { me.since };
    match me.state {
        Membership::Member => (floor, END),
        Membership::Invited => (me.since, me.since),
        // An invitation declined or cancelled ends where it began (`until` = `since`): such
        // a user was never a member and reads only the invitation.
        Membership::Former if me.until == Some(me.since) => (me.since, me.since),
        Membership::Former => (floor, me.until.unwrap_or(me.since)),
    }
}
