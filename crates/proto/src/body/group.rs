//! Group chat (spec 7.11): creation, the hub's group events, administration, joining and
//! leaving, and the roster.

use super::{Body, choice, limits, required};
use crate::error::FieldError;
use crate::identity::UserId;
use crate::packet::{Fields, Packet, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

/// The most users a group-create may invite at once.
pub const MAX_INITIAL_INVITES: usize = 256;
const DESCRIPTION_BYTES: usize = 1024;

const ROLES: &[&str] = &["member", "admin", "owner"];
const HISTORY: &[&str] = &["joined", "all"];
const EVENT_ACTIONS: &[&str] = &[
    "created",
    "invited",
    "joined",
    "declined",
    "cancelled",
    "left",
    "removed",
    "role",
    "updated",
    "deleted",
    "owner",
];
const ADMIN_ACTIONS: &[&str] = &[
    "invite", "cancel", "remove", "role", "transfer", "update", "delete",
];
const JOIN_ACTIONS: &[&str] = &["accept", "decline", "leave"];

const NAME: FieldType = FieldType::Text {
    max_bytes: limits::NAME_BYTES,
};
const NAME_REQUIRED: FieldSpec = FieldSpec::required(8, "name", NAME);
const AVATAR: FieldType = FieldType::Text {
    max_bytes: limits::AVATAR_BYTES,
};
const DESCRIPTION: FieldType = FieldType::Text {
    max_bytes: DESCRIPTION_BYTES,
};

fn needs_group(packet: &Packet) -> Result<(), FieldError> {
    match packet.conv {
        Some(crate::ConversationRef::Group(_)) => Ok(()),
        _ => Err(FieldError::new(2, "conv", "must be a group (#id)")),
    }
}

/// A group's name, where given, must not be empty (key 8 in group-create, 11 in group-admin).
fn non_empty_name_at(packet: &Packet, key: u32) -> Result<(), FieldError> {
    match packet.body().text(key)? {
        Some("") => Err(FieldError::new(key, "name", "must not be empty")),
        _ => Ok(()),
    }
}

fn non_empty_name(packet: &Packet) -> Result<(), FieldError> {
    non_empty_name_at(packet, 8)
}

pub(super) const GROUP_CREATE: SchemaProvider = SchemaProvider {
    kind: PacketKind::GROUP_CREATE,
    name: "group-create",
    routing: Routing::Request,
    schema: &[
        NAME_REQUIRED,
        FieldSpec::optional(9, "avatar", AVATAR),
        FieldSpec::optional(10, "description", DESCRIPTION),
        FieldSpec::optional(
            11,
            "invite",
            FieldType::Users {
                max_items: MAX_INITIAL_INVITES,
            },
        ),
        FieldSpec::optional(12, "history", FieldType::Choice(HISTORY)),
    ],
    check: Some(non_empty_name),
};

pub(super) const GROUP_EVENT: SchemaProvider = SchemaProvider {
    kind: PacketKind::GROUP_EVENT,
    name: "group-event",
    routing: Routing::Reply,
    schema: &[
        FieldSpec::required(8, "action", FieldType::Choice(EVENT_ACTIONS)),
        FieldSpec::optional(9, "user", FieldType::User),
        FieldSpec::optional(10, "role", FieldType::Choice(ROLES)),
        FieldSpec::optional(11, "name", NAME),
        FieldSpec::optional(12, "avatar", AVATAR),
        FieldSpec::optional(13, "description", DESCRIPTION),
        FieldSpec::optional(14, "history", FieldType::Choice(HISTORY)),
    ],
    check: None,
};

fn check_admin(packet: &Packet) -> Result<(), FieldError> {
    needs_group(packet)?;
    let body = packet.body();
    let action = choice(body, 8, "action", ADMIN_ACTIONS.len())?.unwrap_or(0);
    let needs_user = matches!(action, 0..=4);
    if needs_user && !body.contains(9) {
        return Err(FieldError::new(9, "user", "this action needs a user"));
    }
    if action == 3 && !matches!(body.uint(10)?, Some(0 | 1)) {
        return Err(FieldError::new(
            10,
            "role",
            "a role change needs role member or admin",
        ));
    }
    non_empty_name_at(packet, 11)
}

pub(super) const GROUP_ADMIN: SchemaProvider = SchemaProvider {
    kind: PacketKind::GROUP_ADMIN,
    name: "group-admin",
    routing: Routing::Request,
    schema: &[
        FieldSpec::required(8, "action", FieldType::Choice(ADMIN_ACTIONS)),
        FieldSpec::optional(9, "user", FieldType::User),
        FieldSpec::optional(10, "role", FieldType::Choice(ROLES)),
        FieldSpec::optional(11, "name", NAME),
        FieldSpec::optional(12, "avatar", AVATAR),
        FieldSpec::optional(13, "description", DESCRIPTION),
        FieldSpec::optional(14, "history", FieldType::Choice(HISTORY)),
    ],
    check: Some(check_admin),
};

pub(super) const GROUP_JOIN: SchemaProvider = SchemaProvider {
    kind: PacketKind::GROUP_JOIN,
    name: "group-join",
    routing: Routing::Request,
    schema: &[FieldSpec::required(
        8,
        "action",
        FieldType::Choice(JOIN_ACTIONS),
    )],
    check: Some(needs_group),
};

pub(super) const GROUP_INFO: SchemaProvider = SchemaProvider {
    kind: PacketKind::GROUP_INFO,
    name: "group-info",
    routing: Routing::Request,
    schema: &[],
    check: Some(needs_group),
};

const MEMBER_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(9, "user", FieldType::User),
    FieldSpec::required(10, "role", FieldType::Choice(ROLES)),
    FieldSpec::optional(11, "invited", FieldType::Bool),
    FieldSpec::optional(
        12,
        "since",
        FieldType::Uint {
            min: 0,
            max: limits::MAX_SAFE,
        },
    ),
    FieldSpec::optional(
        13,
        "delivered",
        FieldType::Uint {
            min: 0,
            max: limits::MAX_SAFE,
        },
    ),
    FieldSpec::optional(
        14,
        "read",
        FieldType::Uint {
            min: 0,
            max: limits::MAX_SAFE,
        },
    ),
];

pub(super) const GROUP_INFO_RESULT: SchemaProvider = SchemaProvider {
    kind: PacketKind::GROUP_INFO_RESULT,
    name: "group-info-result",
    routing: Routing::Reply,
    schema: &[
        FieldSpec::required(8, "name", NAME),
        FieldSpec::optional(9, "avatar", AVATAR),
        FieldSpec::optional(10, "description", DESCRIPTION),
        FieldSpec::optional(11, "history", FieldType::Choice(HISTORY)),
        FieldSpec::required(
            12,
            "members",
            FieldType::Maps {
                schema: MEMBER_SCHEMA,
                max_items: 100_000,
            },
        ),
    ],
    check: None,
};

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Role {
    /// A member.
    #[default]
    Member = 0,
    /// An admin: may invite, remove members, change the profile.
    Admin = 1,
    /// The owner: everything, including deleting the group.
    Owner = 2,
}

impl Role {
    /// The role with this wire number.
    pub fn from_index(i: usize) -> Self {
        [Self::Member, Self::Admin, Self::Owner][i.min(2)]
    }
}

/// Which history new members may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HistoryVisibility {
    /// From their joining on.
    #[default]
    Joined = 0,
    /// Everything.
    All = 1,
}

fn history_of(f: &Fields, key: u32) -> Result<Option<HistoryVisibility>, FieldError> {
    Ok(choice(f, key, "history", HISTORY.len())?.map(|i| {
        if i == 1 {
            HistoryVisibility::All
        } else {
            HistoryVisibility::Joined
        }
    }))
}

fn text_of(f: &Fields, key: u32) -> Result<Option<String>, FieldError> {
    Ok(f.text(key)?.map(str::to_owned))
}

fn user_of(f: &Fields, key: u32, name: &'static str) -> Result<Option<UserId>, FieldError> {
    f.text(key)?
        .map(|u| UserId::parse(u).map_err(|e| FieldError::new(key, name, e.to_string())))
        .transpose()
}

fn set_text(f: &mut Fields, key: u32, value: &Option<String>) {
    if let Some(v) = value {
        f.set_text(key, v);
    }
}

/// The fields group events and admin requests share (keys 9 to 14).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct Details {
    user: Option<UserId>,
    role: Option<Role>,
    name: Option<String>,
    avatar: Option<String>,
    description: Option<String>,
    history: Option<HistoryVisibility>,
}

impl Details {
    fn read(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            user: user_of(f, 9, "user")?,
            role: choice(f, 10, "role", ROLES.len())?.map(Role::from_index),
            name: text_of(f, 11)?,
            avatar: text_of(f, 12)?,
            description: text_of(f, 13)?,
            history: history_of(f, 14)?,
        })
    }

    fn write(&self, f: &mut Fields) {
        if let Some(user) = &self.user {
            f.set_text(9, user.as_str());
        }
        if let Some(role) = self.role {
            f.set_uint(10, role as u64);
        }
        set_text(f, 11, &self.name);
        set_text(f, 12, &self.avatar);
        set_text(f, 13, &self.description);
        if let Some(h) = self.history {
            f.set_uint(14, h as u64);
        }
    }
}

/// Creates a group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupCreate {
    /// Name.
    pub name: String,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Users to invite at once.
    pub invite: Vec<UserId>,
    /// Which history new members read.
    pub history: HistoryVisibility,
}

impl Body for GroupCreate {
    const KIND: PacketKind = PacketKind::GROUP_CREATE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let invite = f
            .texts(11)?
            .unwrap_or_default()
            .into_iter()
            .map(|u| UserId::parse(u).map_err(|e| FieldError::new(11, "invite", e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: required(f.text(8), 8, "name")?.to_owned(),
            avatar: text_of(f, 9)?,
            description: text_of(f, 10)?,
            invite,
            history: history_of(f, 12)?.unwrap_or_default(),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(8, &self.name);
        set_text(&mut f, 9, &self.avatar);
        set_text(&mut f, 10, &self.description);
        if !self.invite.is_empty() {
            f.set_texts(11, &self.invite);
        }
        if self.history == HistoryVisibility::All {
            f.set_uint(12, 1);
        }
        f
    }
}

/// What a group event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum GroupAction {
    Created = 0,
    Invited = 1,
    Joined = 2,
    Declined = 3,
    Cancelled = 4,
    Left = 5,
    Removed = 6,
    Role = 7,
    Updated = 8,
    Deleted = 9,
    Owner = 10,
}

const ALL_EVENT_ACTIONS: [GroupAction; 11] = [
    GroupAction::Created,
    GroupAction::Invited,
    GroupAction::Joined,
    GroupAction::Declined,
    GroupAction::Cancelled,
    GroupAction::Left,
    GroupAction::Removed,
    GroupAction::Role,
    GroupAction::Updated,
    GroupAction::Deleted,
    GroupAction::Owner,
];

/// A change to a group, made by the hub (the actor is the envelope's `from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEvent {
    /// What happened.
    pub action: GroupAction,
    /// Whom it concerns.
    pub user: Option<UserId>,
    /// Their new role.
    pub role: Option<Role>,
    /// The group's name (created, updated; invited, for the invitee).
    pub name: Option<String>,
    /// Avatar (created, updated).
    pub avatar: Option<String>,
    /// Description (created, updated).
    pub description: Option<String>,
    /// History setting (created, updated).
    pub history: Option<HistoryVisibility>,
}

impl GroupEvent {
    /// An event with only an action and a user.
    pub fn new(action: GroupAction, user: Option<UserId>) -> Self {
        Self {
            action,
            user,
            role: None,
            name: None,
            avatar: None,
            description: None,
            history: None,
        }
    }
}

impl Body for GroupEvent {
    const KIND: PacketKind = PacketKind::GROUP_EVENT;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let action =
            ALL_EVENT_ACTIONS[required(choice(f, 8, "action", EVENT_ACTIONS.len()), 8, "action")?];
        let d = Details::read(f)?;
        Ok(Self {
            action,
            user: d.user,
            role: d.role,
            name: d.name,
            avatar: d.avatar,
            description: d.description,
            history: d.history,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.action as u64);
        Details {
            user: self.user.clone(),
            role: self.role,
            name: self.name.clone(),
            avatar: self.avatar.clone(),
            description: self.description.clone(),
            history: self.history,
        }
        .write(&mut f);
        f
    }
}

/// An administrative action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum AdminAction {
    Invite = 0,
    Cancel = 1,
    Remove = 2,
    Role = 3,
    Transfer = 4,
    Update = 5,
    Delete = 6,
}

const ALL_ADMIN_ACTIONS: [AdminAction; 7] = [
    AdminAction::Invite,
    AdminAction::Cancel,
    AdminAction::Remove,
    AdminAction::Role,
    AdminAction::Transfer,
    AdminAction::Update,
    AdminAction::Delete,
];

/// An administrative request on a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAdmin {
    /// What to do.
    pub action: AdminAction,
    /// To whom.
    pub user: Option<UserId>,
    /// The new role (role changes).
    pub role: Option<Role>,
    /// New name (update).
    pub name: Option<String>,
    /// New avatar (update; empty clears).
    pub avatar: Option<String>,
    /// New description (update; empty clears).
    pub description: Option<String>,
    /// New history setting (update).
    pub history: Option<HistoryVisibility>,
}

impl GroupAdmin {
    /// An action on a user.
    pub fn on(action: AdminAction, user: UserId) -> Self {
        Self {
            action,
            user: Some(user),
            role: None,
            name: None,
            avatar: None,
            description: None,
            history: None,
        }
    }
}

impl Body for GroupAdmin {
    const KIND: PacketKind = PacketKind::GROUP_ADMIN;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let action =
            ALL_ADMIN_ACTIONS[required(choice(f, 8, "action", ADMIN_ACTIONS.len()), 8, "action")?];
        let d = Details::read(f)?;
        Ok(Self {
            action,
            user: d.user,
            role: d.role,
            name: d.name,
            avatar: d.avatar,
            description: d.description,
            history: d.history,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.action as u64);
        Details {
            user: self.user.clone(),
            role: self.role,
            name: self.name.clone(),
            avatar: self.avatar.clone(),
            description: self.description.clone(),
            history: self.history,
        }
        .write(&mut f);
        f
    }
}

/// Answering an invitation, or leaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinAction {
    /// Accept the invitation.
    Accept = 0,
    /// Decline the invitation.
    Decline = 1,
    /// Leave the group.
    Leave = 2,
}

/// A group-join request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupJoin {
    /// What to do.
    pub action: JoinAction,
}

impl Body for GroupJoin {
    const KIND: PacketKind = PacketKind::GROUP_JOIN;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let action = [JoinAction::Accept, JoinAction::Decline, JoinAction::Leave]
            [required(choice(f, 8, "action", JOIN_ACTIONS.len()), 8, "action")?];
        Ok(Self { action })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.action as u64);
        f
    }
}

/// A group-info request (its body is empty; the envelope names the group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GroupInfo;

impl Body for GroupInfo {
    const KIND: PacketKind = PacketKind::GROUP_INFO;

    fn from_fields(_: &Fields) -> Result<Self, FieldError> {
        Ok(Self)
    }

    fn to_fields(&self) -> Fields {
        Fields::new()
    }
}

/// One member (or invited user) in a roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// Invited, not yet a member.
    pub invited: bool,
    /// The sequence number of their joined (or invited) event.
    pub since: u64,
    /// Their delivered marker.
    pub delivered: u64,
    /// Their read marker.
    pub read: u64,
}

/// The current state of a group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupInfoResult {
    /// Name.
    pub name: String,
    /// Avatar.
    pub avatar: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// History setting.
    pub history: HistoryVisibility,
    /// Members and invited users.
    pub members: Vec<Member>,
}

impl Body for GroupInfoResult {
    const KIND: PacketKind = PacketKind::GROUP_INFO_RESULT;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let members = required(f.maps(12), 12, "members")?
            .into_iter()
            .map(|raw| {
                let m = Fields::decode(raw)
                    .map_err(|e| FieldError::new(12, "members", e.to_string()))?;
                Ok(Member {
                    user: user_of(&m, 9, "user")?
                        .ok_or_else(|| FieldError::new(9, "user", "is required"))?,
                    role: Role::from_index(required(
                        choice(&m, 10, "role", ROLES.len()),
                        10,
                        "role",
                    )?),
                    invited: m.bool(11)?.unwrap_or(false),
                    since: m.uint(12)?.unwrap_or(0),
                    delivered: m.uint(13)?.unwrap_or(0),
                    read: m.uint(14)?.unwrap_or(0),
                })
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(Self {
            name: required(f.text(8), 8, "name")?.to_owned(),
            avatar: text_of(f, 9)?,
            description: text_of(f, 10)?,
            history: history_of(f, 11)?.unwrap_or_default(),
            members,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(8, &self.name);
        set_text(&mut f, 9, &self.avatar);
        set_text(&mut f, 10, &self.description);
        if self.history == HistoryVisibility::All {
            f.set_uint(11, 1);
        }
        let members = self.members.iter().map(|m| {
            let mut e = Fields::new();
            e.set_text(9, m.user.as_str());
            e.set_uint(10, m.role as u64);
            if m.invited {
                e.set_bool(11, true);
            }
            for (k, v) in [(12, m.since), (13, m.delivered), (14, m.read)] {
                if v != 0 {
                    e.set_uint(k, v);
                }
            }
            e.encode()
        });
        f.set_maps(12, members.collect::<Vec<_>>().into_iter());
        f
    }
}
