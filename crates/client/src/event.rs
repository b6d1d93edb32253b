//! What the SDK tells the application: the events of its connection and conversations, and
//! the confirmation of a sent event.

use mqchat_proto::body::{Contact, GroupEvent, Message, Profile, State};
use mqchat_proto::{
    ConversationRef, DeviceId, ErrorCode, GroupId, MessageId, Packet, Seq, SipAddress, Timestamp,
    UserId,
};

use crate::call::{Call, CallRecord, EndReason};
use crate::presence::Presence;

/// The hub stored a conversation event this device sent: the "sent" receipt (spec section 9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The event's client message id.
    pub id: MessageId,
    /// The conversation, named from this user's side.
    pub conv: ConversationRef,
    /// The event's sequence number in the conversation.
    pub seq: Seq,
    /// When the hub stored it.
    pub ts: Timestamp,
    /// The hub had stored it already: this was a resend (the first copy's `seq` and `ts`).
    pub duplicate: bool,
}

/// A group made by [`Client::create_group`](crate::Client::create_group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// The new group's id, chosen by the hub.
    pub group: GroupId,
    /// The `created` group event, as for any event sent.
    pub sent: Sent,
}

impl Sent {
    /// The group, when the event belongs to one (a created group's id, for instance).
    pub fn group(&self) -> Option<&GroupId> {
        match &self.conv {
            ConversationRef::Group(group) => Some(group),
            ConversationRef::Direct(_) | ConversationRef::Sip(_) => None,
        }
    }
}

/// Who sent a message: a user of this server, or (in a conversation with a SIP address,
/// spec section 19) that address, outside mqchat.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    /// A user of this server.
    User(UserId),
    /// An address outside mqchat, reached through the server's SIP gateway.
    Sip(SipAddress),
}

impl Party {
    /// The user, if the party is one.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(user) => Some(user),
            Self::Sip(_) => None,
        }
    }

    /// The party as text: a user id, or `sip:user@host`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User(user) => user.as_str(),
            Self::Sip(address) => address.as_str(),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<UserId> for Party {
    fn eq(&self, other: &UserId) -> bool {
        self.user() == Some(other)
    }
}

/// Something that happened on the connection or in a conversation.
///
/// Durable events (`Message`, `Contact`, `Invitation`, `Group`, and sequenced extension
/// packets in `Other`) come in
/// sequence order per conversation, without duplicates: a gap is filled from the hub's
/// history before later events are delivered.
///
/// Markers (`Delivered`, `Read`) are told when they move forward, whether they arrive live
/// or a sync after a reconnect finds that they moved while the device was away, and after
/// the events they cover.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The connection to the broker is up (after `Client::connect` or a reconnect).
    Connected {
        /// The broker kept the device's session (subscriptions, queued messages).
        session_present: bool,
    },
    /// The connection dropped; the client reconnects by itself.
    Disconnected {
        /// Why, for logs.
        reason: String,
    },
    /// A reconnection was refused for this device's credentials: the device was revoked
    /// (spec 7.12), the password changed or the account was disabled. The client keeps
    /// trying with backoff; an application usually closes it and asks the user to sign in.
    Refused {
        /// The broker's answer, for logs.
        reason: String,
    },
    /// A text message.
    Message {
        /// The conversation, named from this user's side.
        conv: ConversationRef,
        /// Its sequence number in the conversation.
        seq: Seq,
        /// When the hub stored it.
        ts: Timestamp,
        /// The sender: a user, or the SIP address of a conversation with one.
        from: Party,
        /// Sent by this user (from this or another of their devices).
        own: bool,
        /// The message.
        message: Message,
        /// The whole packet, with any fields this version does not know.
        packet: Packet,
    },
    /// A participant's chat state (typing and so on).
    ChatState {
        /// The conversation.
        conv: ConversationRef,
        /// Whose state it is.
        from: UserId,
        /// The state.
        state: State,
    },
    /// A participant received the conversation's events up to `up_to`. In a group, the hub
    /// tells a member's markers only to the authors of the events they cover:
    /// `Client::receipt` adds them up per message.
    Delivered {
        /// The conversation.
        conv: ConversationRef,
        /// Who received them: a user, or the SIP address of a conversation with one (whose
        /// peer answered the SIP MESSAGE, spec section 19).
        by: Party,
        /// The highest sequence number covered.
        up_to: Seq,
    },
    /// A participant read the conversation up to `up_to`.
    Read {
        /// The conversation.
        conv: ConversationRef,
        /// Who read it.
        by: UserId,
        /// The highest sequence number covered.
        up_to: Seq,
        /// This user read it on one of their devices (clear the unread count).
        own: bool,
    },
    /// A contact request or answer.
    Contact {
        /// The direct conversation it belongs to.
        conv: ConversationRef,
        /// Its sequence number in the conversation.
        seq: Seq,
        /// Who sent it.
        from: UserId,
        /// Sent by this user.
        own: bool,
        /// The request or answer.
        contact: Contact,
    },
    /// This user was invited to a group (the group's `invited` event, as the invitee
    /// receives it). Answer with [`GroupHandle::accept`](crate::GroupHandle::accept) or
    /// [`GroupHandle::decline`](crate::GroupHandle::decline).
    Invitation {
        /// The group.
        group: GroupId,
        /// The event's sequence number in the group.
        seq: Seq,
        /// When the hub stored it.
        ts: Timestamp,
        /// Who invited.
        by: UserId,
        /// The group's name.
        name: String,
    },
    /// A change to a group this user is in (or was, for the change that ended it): it was
    /// created, someone was invited, joined, declined, left or was removed, a role or the
    /// owner changed, the profile was updated, the group was deleted. Every member sees
    /// the same changes in the same order, between the group's messages.
    Group {
        /// The group.
        group: GroupId,
        /// The event's sequence number in the group.
        seq: Seq,
        /// When the hub stored it.
        ts: Timestamp,
        /// Who made the change (for `joined`, `declined` and `left`, the user themselves).
        by: UserId,
        /// Made by this user.
        own: bool,
        /// What changed: `change.user` is whom it concerns, `change.role` their new role.
        change: GroupEvent,
    },
    /// A device's presence changed (or was there already when the watch began).
    Presence {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
        /// The presence; `None` when it was cleared (the device was removed).
        presence: Option<Presence>,
    },
    /// A user's profile (on watching, then on every change).
    Profile {
        /// The user.
        user: UserId,
        /// The profile's version.
        version: u64,
        /// The whole profile.
        profile: Profile,
    },
    /// The hub refused something that was not waiting for an answer (a marker, a chat state),
    /// or the broker refused a subscription.
    Error {
        /// The refused packet's id, when it had one.
        id: Option<MessageId>,
        /// What went wrong.
        code: ErrorCode,
        /// The hub's explanation, for logs.
        detail: Option<String>,
    },
    /// Someone calls this device: answer with `Client::answer`, refuse with
    /// `Client::reject`. Every device of the user rings; when one answers, the others end
    /// with [`EndReason::AnsweredElsewhere`]. An incoming call may come while another call
    /// is on: the application decides (rejecting it as busy, for instance).
    IncomingCall {
        /// The call.
        call: Call,
        /// The caller's address (`sip:alice@example.org`, or an address outside mqchat).
        from: String,
        /// The caller's display name, if the call gave one.
        name: Option<String>,
        /// The conversation with the caller: a user of this server, or the SIP address of
        /// one outside it (where the call's record goes); `None` for addresses that name
        /// neither.
        conv: Option<ConversationRef>,
        /// The caller's SDP offer.
        sdp: String,
    },
    /// A device of the callee rings (the first 180 or 183 of an outgoing call).
    CallRinging {
        /// The call.
        call: Call,
    },
    /// The callee answered an outgoing call: the call is on.
    CallAnswered {
        /// The call.
        call: Call,
        /// The callee's SDP answer.
        sdp: String,
    },
    /// A call ended (or never came about), and why. Told once per call, also when this
    /// device ended it.
    CallEnded {
        /// The call.
        call: Call,
        /// Why.
        reason: EndReason,
    },
    /// The record of a call between this user and `conv` (spec 7.14): made by the hub when
    /// the call ended, sequenced in the conversation like a message (and listed by
    /// `Client::history`, where [`CallRecord::from`] reads it).
    CallRecord {
        /// The conversation with the other party.
        conv: ConversationRef,
        /// Its sequence number in the conversation.
        seq: Seq,
        /// When the hub stored it.
        ts: Timestamp,
        /// This user placed the call.
        own: bool,
        /// The record: outcome, times, duration, the device that answered.
        record: CallRecord,
    },
    /// A packet of another type (an extension), decoded and checked with the registry.
    Other {
        /// The packet. For a sequenced extension event, `conv` and `seq` are set.
        packet: Packet,
    },
}
