//! Groups as the application sees them (spec section 7.11): a group's current profile and
//! members, the changes an application asks for, and the receipts of the messages it sent.

use mqchat_proto::body::{HistoryVisibility, Member, Role};
use mqchat_proto::{ConversationRef, GroupId, UserId};

/// A group's current profile and members, as the hub answered a group-info request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Group {
    /// The group.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Its avatar reference (a URI), if set.
    pub avatar: Option<String>,
    /// Its description, if set.
    pub description: Option<String>,
    /// Which history new members may read.
    pub history: HistoryVisibility,
    /// Members and invited users, with their roles and markers.
    pub members: Vec<Member>,
    /// The sequence number of the group's last event when the hub answered.
    pub last_seq: u64,
}

impl Group {
    /// The group's conversation (`#id`).
    pub fn conv(&self) -> ConversationRef {
        ConversationRef::Group(self.id.clone())
    }

    /// A member or invited user.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user == *user)
    }

    /// The members who joined (invited users not counted).
    pub fn n_members(&self) -> usize {
        self.members.iter().filter(|m| !m.invited).count()
    }

    /// The owner.
    pub fn owner(&self) -> Option<&UserId> {
        self.members
            .iter()
            .find(|m| m.role == Role::Owner && !m.invited)
            .map(|m| &m.user)
    }
}

/// A change to a group's profile (admins and the owner): fields set replace the current
/// ones, an empty avatar or description clears it, fields left `None` stay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupUpdate {
    /// A new name (not empty).
    pub name: Option<String>,
    /// A new avatar reference; empty clears it.
    pub avatar: Option<String>,
    /// A new description; empty clears it.
    pub description: Option<String>,
    /// A new history setting for members who join later.
    pub history: Option<HistoryVisibility>,
}

impl GroupUpdate {
    /// A change of name only.
    pub fn name(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// A change of description only (empty clears it).
    pub fn description(description: impl Into<String>) -> Self {
        Self {
            description: Some(description.into()),
            ..Self::default()
        }
    }

    /// A change of avatar only (empty clears it).
    pub fn avatar(avatar: impl Into<String>) -> Self {
        Self {
            avatar: Some(avatar.into()),
            ..Self::default()
        }
    }
}

/// Who received and who read one message this user sent (spec section 9), from the
/// markers the hub delivered and the group's roster.
///
/// In a group the audience is the current members other than this user who could see the
/// message: those who joined before it (or all of them, when the group shows new members
/// its whole history). In a direct conversation it is the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The conversation.
    pub conv: ConversationRef,
    /// The message's sequence number.
    pub seq: u64,
    /// Each member of the audience, in user id order.
    pub members: Vec<MemberReceipt>,
}

impl Receipt {
    /// How many received it (reading it counts as receiving it).
    pub fn n_delivered(&self) -> usize {
        self.members.iter().filter(|m| m.delivered).count()
    }

    /// How many read it.
    pub fn n_read(&self) -> usize {
        self.members.iter().filter(|m| m.read).count()
    }

    /// The size of the audience: "read by [`n_read`](Self::n_read) of this".
    pub fn n_total(&self) -> usize {
        self.members.len()
    }
}

/// One member's state for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberReceipt {
    /// The member.
    pub user: UserId,
    /// A device of theirs received it.
    pub delivered: bool,
    /// They read it.
    pub read: bool,
}

impl MemberReceipt {
    pub(crate) fn new(user: UserId, delivered: u64, read: u64, seq: u64) -> Self {
        Self {
            user,
            delivered: delivered.max(read) >= seq,
            read: read >= seq,
        }
    }
}
