//! Contact requests (invitations) and their answers.

use super::{Body, choice, limits, required};
use crate::error::FieldError;
use crate::packet::{Fields, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const ACTIONS: &[&str] = &["request", "accept", "decline", "cancel", "remove"];

/// The names of contact states, as sync results show them (key 16 of a conversation entry).
pub(crate) const CONTACT_STATES: &[&str] = &["none", "outgoing", "incoming", "accepted"];

const CONTACT_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(8, "action", FieldType::Choice(ACTIONS)),
    FieldSpec::optional(
        9,
        "note",
        FieldType::Text {
            max_bytes: limits::NOTE_BYTES,
        },
    ),
];

fn direct_only(packet: &crate::Packet) -> Result<(), FieldError> {
    match &packet.conv {
        Some(crate::ConversationRef::Direct(_)) | None => Ok(()),
        Some(crate::ConversationRef::Group(_) | crate::ConversationRef::Sip(_)) => Err(
            FieldError::new(2, "conv", "contact requests are between two users"),
        ),
    }
}

pub(super) const CONTACT: SchemaProvider = SchemaProvider {
    kind: PacketKind::CONTACT,
    name: "contact",
    routing: Routing::Event,
    schema: CONTACT_SCHEMA,
    check: Some(direct_only),
};

/// What a contact packet does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactAction {
    /// Ask the peer to become contacts (see each other's presence).
    Request = 0,
    /// Accept the peer's pending request.
    Accept = 1,
    /// Decline the peer's pending request.
    Decline = 2,
    /// Withdraw one's own pending request.
    Cancel = 3,
    /// End an accepted contact relationship.
    Remove = 4,
}

const ALL_ACTIONS: [ContactAction; 5] = [
    ContactAction::Request,
    ContactAction::Accept,
    ContactAction::Decline,
    ContactAction::Cancel,
    ContactAction::Remove,
];

/// The relationship between two users, from one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContactState {
    /// No relationship.
    #[default]
    None = 0,
    /// I asked; the peer has not answered.
    Outgoing = 1,
    /// The peer asked; I have not answered.
    Incoming = 2,
    /// Contacts: each sees the other's presence.
    Accepted = 3,
}

impl ContactState {
    pub(crate) fn from_index(i: usize) -> Self {
        [Self::None, Self::Outgoing, Self::Incoming, Self::Accepted][i.min(3)]
    }

    /// The state machine of the spec (7.4): `self` is the actor's state towards the peer.
    /// Returns the new states of the actor and of the peer, or `None` if the action does not
    /// fit the state (the hub answers `conflict`).
    pub fn apply(self, action: ContactAction) -> Option<(ContactState, ContactState)> {
        use ContactAction as A;
        use ContactState as S;
        match (self, action) {
            (S::None, A::Request) => Some((S::Outgoing, S::Incoming)),
            (S::Incoming, A::Request | A::Accept) => Some((S::Accepted, S::Accepted)),
            (S::Incoming, A::Decline) | (S::Outgoing, A::Cancel) | (S::Accepted, A::Remove) => {
                Some((S::None, S::None))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine() {
        use ContactAction as A;
        use ContactState as S;
        let cases = [
            (S::None, A::Request, Some((S::Outgoing, S::Incoming))),
            (S::None, A::Accept, None),
            (S::None, A::Remove, None),
            (S::Outgoing, A::Request, None),
            (S::Outgoing, A::Accept, None),
            (S::Outgoing, A::Cancel, Some((S::None, S::None))),
            (S::Incoming, A::Accept, Some((S::Accepted, S::Accepted))),
            (S::Incoming, A::Request, Some((S::Accepted, S::Accepted))),
            (S::Incoming, A::Decline, Some((S::None, S::None))),
            (S::Incoming, A::Cancel, None),
            (S::Accepted, A::Remove, Some((S::None, S::None))),
            (S::Accepted, A::Request, None),
            (S::Accepted, A::Decline, None),
        ];
        for (state, action, expected) in cases {
            assert_eq!(state.apply(action), expected, "{state:?} {action:?}");
        }
    }
}

/// A contact request or answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// What it does.
    pub action: ContactAction,
    /// An optional note ("Hi, it's Alice from the conference").
    pub note: Option<String>,
}

impl Body for Contact {
    const KIND: PacketKind = PacketKind::CONTACT;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let action = ALL_ACTIONS[required(choice(f, 8, "action", ACTIONS.len()), 8, "action")?];
        Ok(Self {
            action,
            note: f.text(9)?.map(str::to_owned),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.action as u64);
        if let Some(note) = &self.note {
            f.set_text(9, note);
        }
        f
    }
}
