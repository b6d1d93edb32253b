//! Groups as the application sees them (spec section 7.11): the handle that changes, reads
//! and leaves one ([`GroupHandle`]), a group's current profile and members, the changes an
//! application asks for, and the receipts of the messages it sent.

use mqchat_proto::body::{
    self, AdminAction, Body, GroupAdmin, GroupJoin, HistoryVisibility, JoinAction, Message, Role,
};
use mqchat_proto::{ConversationRef, GroupId, Packet, Seq, UserId};

use crate::client::{Client, unexpected};
use crate::driver::Command;
use crate::error::Error;
use crate::event::Sent;
use crate::history::{HistoryPage, HistoryQuery};
use crate::session::Answer;

/// One group, as this device acts on it: made by [`Client::group`]. Each change resolves
/// with the group event it made (like [`Client::send`], it waits for the connection while
/// offline and is resent with the same id after a reconnect; the hub applies it once).
///
/// ```no_run
/// # async fn run(client: mqchat_client::Client, id: mqchat_client::GroupId) -> Result<(), mqchat_client::Error> {
/// use mqchat_client::UserId;
///
/// let group = client.group(&id);
/// group.invite(&UserId::parse("bob").expect("a user id")).await?;
/// group.rename("Climbing").await?;
/// println!("{} members", group.info().await?.n_members());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GroupHandle<'a> {
    client: &'a Client,
    id: GroupId,
}

impl<'a> GroupHandle<'a> {
    pub(crate) fn new(client: &'a Client, id: GroupId) -> Self {
        Self { client, id }
    }

    /// The group.
    pub fn id(&self) -> &GroupId {
        &self.id
    }

    /// The group's conversation (`#id`), for [`Client::send`], [`Client::history`] and the
    /// other conversation calls.
    pub fn conv(&self) -> ConversationRef {
        ConversationRef::Group(self.id.clone())
    }

    /// Sends a text message to the group: [`Client::send`] to its conversation.
    pub async fn send(&self, message: Message) -> Result<Sent, Error> {
        self.client.send(self.conv(), message).await
    }

    /// Asks the hub for a page of the group's events: [`Client::history`] of its
    /// conversation (members read what the group's history setting shows them).
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, Error> {
        self.client.history(self.conv(), query).await
    }

    /// Asks the hub for the group's current profile, members, roles and markers (members
    /// and invited users may ask; others get `forbidden`, a deleted or unknown group
    /// `not-found`).
    pub async fn info(&self) -> Result<Group, Error> {
        let group = self.id.clone();
        match self
            .client
            .ask(|reply| Command::GroupInfo(group, reply))
            .await?
        {
            Answer::Group(group) => Ok(group),
            other => Err(unexpected(&other)),
        }
    }

    /// Invites `user` (admins and the owner). The invitation reaches the user as
    /// [`Event::Invitation`](crate::Event::Invitation); a full group refuses it with
    /// `group-full`.
    pub async fn invite(&self, user: &UserId) -> Result<Sent, Error> {
        self.admin(GroupAdmin::on(AdminAction::Invite, user.clone()))
            .await
    }

    /// Withdraws `user`'s invitation (admins and the owner).
    pub async fn cancel_invitation(&self, user: &UserId) -> Result<Sent, Error> {
        self.admin(GroupAdmin::on(AdminAction::Cancel, user.clone()))
            .await
    }

    /// Removes (kicks) `user`: admins remove members, the owner removes admins too. The
    /// removed user receives nothing more from the group.
    pub async fn remove(&self, user: &UserId) -> Result<Sent, Error> {
        self.admin(GroupAdmin::on(AdminAction::Remove, user.clone()))
            .await
    }

    /// Promotes `user` to admin ([`Role::Admin`]) or demotes them to member
    /// ([`Role::Member`]) (admins and the owner; only the owner demotes another admin).
    /// Ownership changes only by [`GroupHandle::transfer_ownership`].
    pub async fn set_role(&self, user: &UserId, role: Role) -> Result<Sent, Error> {
        let admin = GroupAdmin {
            role: Some(role),
            ..GroupAdmin::on(AdminAction::Role, user.clone())
        };
        self.admin(admin).await
    }

    /// Makes the member `user` the owner (the owner only); this user becomes an admin.
    pub async fn transfer_ownership(&self, user: &UserId) -> Result<Sent, Error> {
        self.admin(GroupAdmin::on(AdminAction::Transfer, user.clone()))
            .await
    }

    /// Changes the group's name, avatar, description or history setting (admins and the
    /// owner).
    pub async fn update(&self, update: GroupUpdate) -> Result<Sent, Error> {
        let admin = GroupAdmin {
            action: AdminAction::Update,
            user: None,
            role: None,
            name: update.name,
            avatar: update.avatar,
            description: update.description,
            history: update.history,
        };
        self.admin(admin).await
    }

    /// Renames the group (admins and the owner).
    pub async fn rename(&self, name: &str) -> Result<Sent, Error> {
        self.update(GroupUpdate::name(name)).await
    }

    /// Deletes the group (the owner only): every member is told, and nothing more can be
    /// sent to it.
    pub async fn delete(&self) -> Result<Sent, Error> {
        let admin = GroupAdmin {
            action: AdminAction::Delete,
            user: None,
            role: None,
            name: None,
            avatar: None,
            description: None,
            history: None,
        };
        self.admin(admin).await
    }

    /// Accepts this user's invitation: they become a member and read the group from here
    /// on (or all of it, if the group says so).
    pub async fn accept(&self) -> Result<Sent, Error> {
        self.join(JoinAction::Accept).await
    }

    /// Declines this user's invitation.
    pub async fn decline(&self) -> Result<Sent, Error> {
        self.join(JoinAction::Decline).await
    }

    /// Leaves the group. The owner transfers ownership or deletes the group first
    /// (`forbidden` otherwise).
    pub async fn leave(&self) -> Result<Sent, Error> {
        self.join(JoinAction::Leave).await
    }

    async fn admin(&self, admin: GroupAdmin) -> Result<Sent, Error> {
        self.change(admin.to_packet()).await
    }

    async fn join(&self, action: JoinAction) -> Result<Sent, Error> {
        self.change(GroupJoin { action }.to_packet()).await
    }

    async fn change(&self, mut packet: Packet) -> Result<Sent, Error> {
        packet.conv = Some(self.conv());
        self.client.group_change(packet).await
    }
}

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
    pub last_seq: Seq,
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

/// A member or invited user of a group, with their role and markers, as the hub answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// Invited, not yet a member.
    pub invited: bool,
    /// The sequence number of their `joined` (or `invited`) event.
    pub since: Seq,
    /// Their delivered marker.
    pub delivered: Seq,
    /// Their read marker.
    pub read: Seq,
}

impl From<body::Member> for Member {
    fn from(member: body::Member) -> Self {
        Self {
            user: member.user,
            role: member.role,
            invited: member.invited,
            since: Seq::new(member.since),
            delivered: Seq::new(member.delivered),
            read: Seq::new(member.read),
        }
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
    pub seq: Seq,
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
    /// `user`'s state for message `seq`, from their markers.
    pub(crate) fn new(user: UserId, delivered: u64, read: u64, seq: u64) -> Self {
        Self {
            user,
            delivered: delivered.max(read) >= seq,
            read: read >= seq,
        }
    }
}
