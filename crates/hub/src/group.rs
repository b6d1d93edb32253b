//! Group administration (spec 7.11): creation, invitations, answers and leaving, roles,
//! ownership, the group's profile, deletion, and the roster. Every change is a
//! `group-event` appended to the group's conversation and delivered like a message.

use mqchat_proto::body::{
    Ack, AdminAction, Body, GroupAction, GroupAdmin, GroupCreate, GroupEvent, GroupInfoResult,
    GroupJoin, HistoryVisibility, JoinAction, Member, Role,
};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{
    ConversationRef, DeviceIdentity, ErrorCode, GroupId, MessageId, Packet, PacketKind, Timestamp,
    UserId,
};
use mqchat_store::{ConversationRow, GroupProfile, Membership, ParticipantRow, StoreError, Tx};
use rand::RngExt;
use rand::rngs::StdRng;

use crate::engine::{Engine, Failure, Output, Target, Turn, body, refuse};

/// Letters and digits that cannot be confused when read aloud or typed.
const GROUP_ID_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const GROUP_ID_LEN: usize = 10;

fn new_group_id(tx: &Tx<'_>, rng: &mut StdRng) -> Result<GroupId, StoreError> {
    loop {
        let bytes: [u8; GROUP_ID_LEN] = rng.random();
        let text: String = bytes
            .iter()
            .map(|b| char::from(GROUP_ID_ALPHABET[usize::from(*b) % GROUP_ID_ALPHABET.len()]))
            .collect();
        // The alphabet fits the group id syntax, so parsing cannot fail.
        let Ok(gid) = GroupId::parse(&text) else {
            continue;
        };
        if tx.group(&gid)?.is_none() {
            return Ok(gid);
        }
    }
}

fn history_setting(all: bool) -> HistoryVisibility {
    if all {
        HistoryVisibility::All
    } else {
        HistoryVisibility::Joined
    }
}

/// The ack for a request that produced the event `seq` in group `gid`.
fn ack(inbound: &Inbound, gid: &GroupId, seq: u64, now: Timestamp) -> Packet {
    let mut ack = Ack::default().to_packet();
    ack.id = inbound.packet.id;
    ack.conv = Some(ConversationRef::Group(gid.clone()));
    ack.seq = Some(seq);
    ack.ts = Some(now.unix_ms());
    ack
}

impl Engine {
    /// Appends a group event made by `actor` (with the request's id, if it is the request's
    /// own event) and returns its sequence number. Delivery is the caller's, after it has
    /// updated memberships, so that the right people receive it.
    fn append_group_event(
        &self,
        tx: &Tx<'_>,
        now: Timestamp,
        conv: &ConversationRow,
        actor: &DeviceIdentity,
        client_id: Option<MessageId>,
        event: &GroupEvent,
    ) -> Result<u64, StoreError> {
        let mut packet = event.to_packet();
        packet.conv = conv.group.clone().map(ConversationRef::Group);
        packet.id = client_id;
        tx.append(
            conv.id,
            now.unix_ms(),
            &actor.user,
            &actor.device,
            client_id,
            PacketKind::GROUP_EVENT,
            &packet.encode(),
        )
    }

    /// A group request (create, admin or join), answered from the archive when it is resent.
    pub(crate) fn group_request(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<Packet, Failure> {
        if let Some(ack) = self.duplicate(turn.tx, inbound)? {
            return Ok(ack);
        }
        match inbound.packet.kind {
            PacketKind::GROUP_CREATE => self.group_create(turn, inbound),
            PacketKind::GROUP_ADMIN => self.group_admin(turn, inbound),
            _ => self.group_join(turn, inbound),
        }
    }

    fn occupancy(&self, tx: &Tx<'_>, conv: &ConversationRow) -> Result<usize, StoreError> {
        Ok(tx
            .participants(conv.id)?
            .iter()
            .filter(|p| p.state != Membership::Former)
            .count())
    }

    fn group_create(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<Packet, Failure> {
        let (tx, now, out) = (&mut *turn.tx, turn.now, &mut *turn.out);
        let create: GroupCreate = body(inbound)?;
        let actor = &inbound.sender;
        let mut invitees: Vec<UserId> = Vec::new();
        for user in create.invite {
            if user == actor.user || invitees.contains(&user) {
                continue;
            }
            if !tx.user_exists(&user, true)? {
                return Err(refuse(
                    inbound,
                    ErrorCode::NO_SUCH_USER,
                    format!("no user {:?}", user.as_str()),
                ));
            }
            invitees.push(user);
        }
        if !invitees.is_empty() {
            self.charge(inbound, |rates| {
                rates.invitations(&actor.user, invitees.len(), now.at)
            })?;
        }
        if 1 + invitees.len() > self.config().max_group_members {
            return Err(refuse(
                inbound,
                ErrorCode::GROUP_FULL,
                format!(
                    "a group has at most {} members",
                    self.config().max_group_members
                ),
            ));
        }
        let gid = new_group_id(tx, self.rng())?;
        let profile = GroupProfile {
            name: create.name.clone(),
            avatar: create.avatar.clone().filter(|a| !a.is_empty()),
            description: create.description.clone().filter(|d| !d.is_empty()),
            history_all: create.history == HistoryVisibility::All,
        };
        let conv = tx.create_group(&gid, &profile)?;
        let created = GroupEvent {
            role: Some(Role::Owner),
            name: Some(profile.name.clone()),
            avatar: profile.avatar.clone(),
            description: profile.description.clone(),
            history: Some(create.history),
            ..GroupEvent::new(GroupAction::Created, None)
        };
        let seq =
            self.append_group_event(tx, now.wall, &conv, actor, inbound.packet.id, &created)?;
        tx.set_membership(
            conv.id,
            &actor.user,
            Role::Owner,
            Membership::Member,
            seq,
            None,
        )?;
        self.deliver(tx, conv.id, seq, None, out)?;
        for user in invitees {
            self.invite(tx, now.wall, &conv, &profile, actor, None, &user, out)?;
        }
        Ok(ack(inbound, &gid, seq, now.wall))
    }

    #[allow(clippy::too_many_arguments)]
    fn invite(
        &self,
        tx: &Tx<'_>,
        now: Timestamp,
        conv: &ConversationRow,
        profile: &GroupProfile,
        actor: &DeviceIdentity,
        client_id: Option<MessageId>,
        user: &UserId,
        out: &mut Output,
    ) -> Result<u64, StoreError> {
        let event = GroupEvent {
            name: Some(profile.name.clone()),
            ..GroupEvent::new(GroupAction::Invited, Some(user.clone()))
        };
        let seq = self.append_group_event(tx, now, conv, actor, client_id, &event)?;
        tx.set_membership(conv.id, user, Role::Member, Membership::Invited, seq, None)?;
        self.deliver(tx, conv.id, seq, Some(user), out)?;
        Ok(seq)
    }

    fn group_admin(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<Packet, Failure> {
        let (tx, now, out) = (&mut *turn.tx, turn.now, &mut *turn.out);
        let admin: GroupAdmin = body(inbound)?;
        let (gid, conv, profile, me) = self.membership(tx, inbound)?;
        let actor = &inbound.sender;
        let id = inbound.packet.id;
        let forbid = |what: &str| {
            Err(refuse(
                inbound,
                ErrorCode::FORBIDDEN,
                format!("{what} in #{gid}"),
            ))
        };
        let is_owner = me.role == Role::Owner;
        let is_admin = me.role >= Role::Admin;
        if !is_admin {
            return forbid("only admins may do this");
        }
        // The user the action is about, and their participation, if any.
        let target = match &admin.user {
            Some(user) => Some((user.clone(), tx.participant(conv.id, user)?)),
            None => None,
        };
        let conflict = |what: String| Err(refuse(inbound, ErrorCode::CONFLICT, what));
        let seq = match (admin.action, target) {
            (AdminAction::Invite, Some((user, p))) => {
                if matches!(&p, Some(p) if p.state != Membership::Former) {
                    return conflict(format!("{user} is already in #{gid} or invited"));
                }
                if !tx.user_exists(&user, true)? {
                    return Err(refuse(
                        inbound,
                        ErrorCode::NO_SUCH_USER,
                        format!("no user {:?}", user.as_str()),
                    ));
                }
                self.charge(inbound, |rates| rates.invitations(&actor.user, 1, now.at))?;
                if self.occupancy(tx, &conv)? >= self.config().max_group_members {
                    return Err(refuse(
                        inbound,
                        ErrorCode::GROUP_FULL,
                        format!("#{gid} is full"),
                    ));
                }
                self.invite(tx, now.wall, &conv, &profile, actor, id, &user, out)?
            }
            (AdminAction::Cancel, Some((user, Some(p)))) if p.state == Membership::Invited => {
                let event = GroupEvent::new(GroupAction::Cancelled, Some(user.clone()));
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                // Never a member: `until` = `since` keeps their window to the invitation.
                tx.set_membership(
                    conv.id,
                    &user,
                    Role::Member,
                    Membership::Former,
                    p.since,
                    Some(p.since),
                )?;
                self.deliver(tx, conv.id, seq, Some(&user), out)?;
                seq
            }
            (AdminAction::Remove, Some((user, Some(p)))) if p.state == Membership::Member => {
                if user == actor.user {
                    return conflict("to leave, use group-join leave".into());
                }
                if p.role == Role::Owner || (p.role == Role::Admin && !is_owner) {
                    return forbid("only the owner may remove an admin, and nobody the owner");
                }
                let event = GroupEvent::new(GroupAction::Removed, Some(user.clone()));
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                // Delivered while still a member, so the removed user learns of it.
                self.deliver(tx, conv.id, seq, None, out)?;
                tx.set_membership(
                    conv.id,
                    &user,
                    Role::Member,
                    Membership::Former,
                    p.since,
                    Some(seq),
                )?;
                seq
            }
            (AdminAction::Role, Some((user, Some(p)))) if p.state == Membership::Member => {
                let role = admin.role.unwrap_or(Role::Member);
                if p.role == Role::Owner || role == Role::Owner {
                    return forbid("ownership changes only by transfer");
                }
                if p.role == Role::Admin && role == Role::Member && !is_owner && user != actor.user
                {
                    return forbid("only the owner may demote an admin");
                }
                let event = GroupEvent {
                    role: Some(role),
                    ..GroupEvent::new(GroupAction::Role, Some(user.clone()))
                };
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                tx.set_membership(conv.id, &user, role, Membership::Member, p.since, None)?;
                self.deliver(tx, conv.id, seq, None, out)?;
                seq
            }
            (AdminAction::Transfer, Some((user, Some(p)))) if p.state == Membership::Member => {
                if !is_owner {
                    return forbid("only the owner may transfer ownership");
                }
                if user == actor.user {
                    return conflict("already the owner".into());
                }
                let event = GroupEvent {
                    role: Some(Role::Owner),
                    ..GroupEvent::new(GroupAction::Owner, Some(user.clone()))
                };
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                tx.set_membership(
                    conv.id,
                    &user,
                    Role::Owner,
                    Membership::Member,
                    p.since,
                    None,
                )?;
                tx.set_membership(
                    conv.id,
                    &actor.user,
                    Role::Admin,
                    Membership::Member,
                    me.since,
                    None,
                )?;
                self.deliver(tx, conv.id, seq, None, out)?;
                seq
            }
            (AdminAction::Update, _) => {
                let merge = |old: Option<String>, new: &Option<String>| match new {
                    None => old,
                    Some(v) if v.is_empty() => None,
                    Some(v) => Some(v.clone()),
                };
                let updated = GroupProfile {
                    name: admin.name.clone().unwrap_or_else(|| profile.name.clone()),
                    avatar: merge(profile.avatar.clone(), &admin.avatar),
                    description: merge(profile.description.clone(), &admin.description),
                    history_all: admin
                        .history
                        .map_or(profile.history_all, |h| h == HistoryVisibility::All),
                };
                tx.set_group_profile(conv.id, &updated)?;
                let event = GroupEvent {
                    name: admin.name.clone(),
                    avatar: admin.avatar.clone(),
                    description: admin.description.clone(),
                    history: admin.history,
                    ..GroupEvent::new(GroupAction::Updated, None)
                };
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                self.deliver(tx, conv.id, seq, None, out)?;
                seq
            }
            (AdminAction::Delete, _) => {
                if !is_owner {
                    return forbid("only the owner may delete the group");
                }
                let event = GroupEvent::new(GroupAction::Deleted, None);
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                self.deliver(tx, conv.id, seq, None, out)?;
                for p in tx.participants(conv.id)? {
                    if p.state != Membership::Former {
                        tx.set_membership(
                            conv.id,
                            &p.user,
                            p.role,
                            Membership::Former,
                            p.since,
                            Some(seq),
                        )?;
                    }
                }
                tx.delete_group(conv.id)?;
                seq
            }
            (action, Some((user, _))) => {
                return conflict(format!(
                    "{action:?} does not fit {user}'s membership of #{gid}"
                ));
            }
            (action, None) => {
                return Err(refuse(
                    inbound,
                    ErrorCode::INVALID,
                    format!("{action:?} needs a user"),
                ));
            }
        };
        Ok(ack(inbound, &gid, seq, now.wall))
    }

    fn group_join(&self, turn: &mut Turn<'_, '_>, inbound: &Inbound) -> Result<Packet, Failure> {
        let (tx, now, out) = (&mut *turn.tx, turn.now, &mut *turn.out);
        let join: GroupJoin = body(inbound)?;
        let Target::Group { gid, conv, me, .. } = self.target(tx, inbound)? else {
            return Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "group-join needs a group conversation",
            ));
        };
        let actor = &inbound.sender;
        let id = inbound.packet.id;
        let state = me.as_ref().map(|p| p.state);
        let seq = match (join.action, me) {
            (JoinAction::Accept, Some(p)) if p.state == Membership::Invited => {
                let members = tx
                    .participants(conv.id)?
                    .iter()
                    .filter(|p| p.state == Membership::Member)
                    .count();
                if members >= self.config().max_group_members {
                    return Err(refuse(
                        inbound,
                        ErrorCode::GROUP_FULL,
                        format!("#{gid} is full"),
                    ));
                }
                let event = GroupEvent {
                    role: Some(Role::Member),
                    ..GroupEvent::new(GroupAction::Joined, Some(actor.user.clone()))
                };
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                tx.set_membership(
                    conv.id,
                    &actor.user,
                    Role::Member,
                    Membership::Member,
                    seq,
                    None,
                )?;
                self.deliver(tx, conv.id, seq, None, out)?;
                seq
            }
            (JoinAction::Decline, Some(p)) if p.state == Membership::Invited => {
                let event = GroupEvent::new(GroupAction::Declined, Some(actor.user.clone()));
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                // Never a member: `until` = `since` keeps their window to the invitation.
                tx.set_membership(
                    conv.id,
                    &actor.user,
                    Role::Member,
                    Membership::Former,
                    p.since,
                    Some(p.since),
                )?;
                self.deliver(tx, conv.id, seq, Some(&actor.user), out)?;
                seq
            }
            (JoinAction::Leave, Some(p)) if p.state == Membership::Member => {
                if p.role == Role::Owner {
                    return Err(refuse(
                        inbound,
                        ErrorCode::FORBIDDEN,
                        "the owner transfers ownership or deletes the group first",
                    ));
                }
                let event = GroupEvent::new(GroupAction::Left, Some(actor.user.clone()));
                let seq = self.append_group_event(tx, now.wall, &conv, actor, id, &event)?;
                self.deliver(tx, conv.id, seq, None, out)?;
                tx.set_membership(
                    conv.id,
                    &actor.user,
                    Role::Member,
                    Membership::Former,
                    p.since,
                    Some(seq),
                )?;
                seq
            }
            (action, _) => {
                let code = if state.is_none() {
                    ErrorCode::FORBIDDEN
                } else {
                    ErrorCode::CONFLICT
                };
                return Err(refuse(
                    inbound,
                    code,
                    format!("{action:?} does not fit your membership of #{gid} ({state:?})"),
                ));
            }
        };
        Ok(ack(inbound, &gid, seq, now.wall))
    }

    pub(crate) fn group_info(&self, tx: &mut Tx<'_>, inbound: &Inbound) -> Result<Packet, Failure> {
        let Target::Group {
            gid,
            conv,
            profile,
            me,
        } = self.target(tx, inbound)?
        else {
            return Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "group-info needs a group conversation",
            ));
        };
        if !matches!(
            me,
            Some(ParticipantRow {
                state: Membership::Member | Membership::Invited,
                ..
            })
        ) {
            return Err(refuse(
                inbound,
                ErrorCode::FORBIDDEN,
                format!("not a member of #{gid}"),
            ));
        }
        let members = tx
            .participants(conv.id)?
            .into_iter()
            .filter(|p| p.state != Membership::Former)
            .map(|p| Member {
                user: p.user,
                role: p.role,
                invited: p.state == Membership::Invited,
                since: p.since,
                delivered: p.delivered,
                read: p.read,
            })
            .collect();
        let mut result = GroupInfoResult {
            name: profile.name,
            avatar: profile.avatar,
            description: profile.description,
            history: history_setting(profile.history_all),
            members,
        }
        .to_packet();
        result.seq = Some(conv.last_seq);
        Ok(result)
    }
}
