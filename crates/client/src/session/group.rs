//! The groups this device has seen (spec sections 7.11 and 9): this user's standing in
//! each (so that no marker goes to a group it is only invited to or has left), the roster
//! (from the `created` event or a group-info answer, kept current by applying group events
//! in order), and each member's markers, from which receipts are computed.

use std::collections::{BTreeMap, HashMap};

use mqchat_proto::body::{GroupAction, GroupEvent, GroupInfoResult, HistoryVisibility, Role};
use mqchat_proto::{GroupId, Seq, UserId};

use super::markers::Kind;
use crate::group::{MemberReceipt, Receipt};

/// This user's standing in a group, as far as the device knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Invited, not yet answered.
    Invited,
    /// A member.
    Member,
    /// Declined, cancelled, left, removed, or the group was deleted.
    Former,
}

/// One member in a roster.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seat {
    role: Role,
    invited: bool,
    since: u64,
}

/// A group's profile and members as of the event `seq`.
#[derive(Clone, Debug)]
struct Roster {
    seq: u64,
    name: String,
    avatar: Option<String>,
    description: Option<String>,
    history: HistoryVisibility,
    seats: BTreeMap<UserId, Seat>,
}

impl Roster {
    fn from_info(info: &GroupInfoResult, seq: u64) -> Self {
        Self {
            seq,
            name: info.name.clone(),
            avatar: info.avatar.clone(),
            description: info.description.clone(),
            history: info.history,
            seats: info
                .members
                .iter()
                .map(|m| {
                    let seat = Seat {
                        role: m.role,
                        invited: m.invited,
                        since: m.since,
                    };
                    (m.user.clone(), seat)
                })
                .collect(),
        }
    }

    /// Applies the group event `seq`, made by `actor`.
    fn apply(&mut self, seq: u64, actor: &UserId, event: &GroupEvent) {
        if seq <= self.seq {
            return;
        }
        self.seq = seq;
        let user = event.user.clone();
        match (event.action, user) {
            (GroupAction::Invited, Some(user)) => {
                let seat = Seat {
                    role: Role::Member,
                    invited: true,
                    since: seq,
                };
                self.seats.insert(user, seat);
            }
            (GroupAction::Joined, Some(user)) => {
                let seat = Seat {
                    role: event.role.unwrap_or(Role::Member),
                    invited: false,
                    since: seq,
                };
                self.seats.insert(user, seat);
            }
            (
                GroupAction::Declined
                | GroupAction::Cancelled
                | GroupAction::Left
                | GroupAction::Removed,
                Some(user),
            ) => {
                self.seats.remove(&user);
            }
            (GroupAction::Role, Some(user)) => {
                if let (Some(seat), Some(role)) = (self.seats.get_mut(&user), event.role) {
                    seat.role = role;
                }
            }
            (GroupAction::Owner, Some(user)) => {
                if let Some(seat) = self.seats.get_mut(actor) {
                    seat.role = Role::Admin;
                }
                if let Some(seat) = self.seats.get_mut(&user) {
                    seat.role = Role::Owner;
                }
            }
            (GroupAction::Updated, _) => {
                let merge = |old: &mut Option<String>, new: &Option<String>| {
                    if let Some(v) = new {
                        *old = (!v.is_empty()).then(|| v.clone());
                    }
                };
                if let Some(name) = &event.name {
                    self.name.clone_from(name);
                }
                merge(&mut self.avatar, &event.avatar);
                merge(&mut self.description, &event.description);
                if let Some(history) = event.history {
                    self.history = history;
                }
            }
            (GroupAction::Deleted, _) => self.seats.clear(),
            _ => {}
        }
    }
}

/// What the device knows of one group.
#[derive(Debug, Default)]
struct Known {
    standing: Option<Standing>,
    roster: Option<Roster>,
    /// Group events that arrived while a roster was being fetched, to apply after it.
    queued: Vec<(u64, UserId, GroupEvent)>,
    fetching: bool,
    /// (delivered, read) per member, from live markers and rosters.
    markers: HashMap<UserId, (u64, u64)>,
}

impl Known {
    fn mark(&mut self, user: &UserId, delivered: u64, read: u64) {
        let entry = self.markers.entry(user.clone()).or_default();
        entry.1 = entry.1.max(read);
        entry.0 = entry.0.max(delivered).max(entry.1);
    }
}

/// Every group the device has seen.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    known: HashMap<GroupId, Known>,
}

impl Groups {
    /// The group event `seq` of `gid`, made by `actor`, was delivered to `me`.
    pub fn event(
        &mut self,
        me: &UserId,
        gid: &GroupId,
        seq: u64,
        actor: &UserId,
        event: &GroupEvent,
    ) {
        let known = self.known.entry(gid.clone()).or_default();
        if event.user.as_ref() == Some(me) {
            match event.action {
                GroupAction::Invited => known.standing = Some(Standing::Invited),
                GroupAction::Joined => {
                    known.standing = Some(Standing::Member);
                    // What happened between the invitation and the joining is not visible
                    // to this user: the roster must be asked for (unless it is already
                    // being asked for, and this event waits for the answer).
                    if !known.fetching {
                        known.roster = None;
                    }
                }
                GroupAction::Declined
                | GroupAction::Cancelled
                | GroupAction::Left
                | GroupAction::Removed => known.standing = Some(Standing::Former),
                _ => {}
            }
        }
        match event.action {
            GroupAction::Created => {
                if actor == me {
                    known.standing = Some(Standing::Member);
                }
                let mut seats = BTreeMap::new();
                seats.insert(
                    actor.clone(),
                    Seat {
                        role: Role::Owner,
                        invited: false,
                        since: seq,
                    },
                );
                known.roster = Some(Roster {
                    seq,
                    name: event.name.clone().unwrap_or_default(),
                    avatar: event.avatar.clone(),
                    description: event.description.clone(),
                    history: event.history.unwrap_or_default(),
                    seats,
                });
            }
            GroupAction::Deleted => known.standing = Some(Standing::Former),
            _ => {}
        }
        if known.fetching {
            known.queued.push((seq, actor.clone(), event.clone()));
        } else if let Some(roster) = &mut known.roster {
            roster.apply(seq, actor, event);
        }
    }

    /// Whether this user may send markers to `gid`: not when only invited or no longer a
    /// member (the hub would refuse them). Unknown groups are taken as joined.
    pub fn wants_markers(&self, gid: &GroupId) -> bool {
        self.known
            .get(gid)
            .and_then(|k| k.standing)
            .is_none_or(|s| s == Standing::Member)
    }

    /// Whether the session should ask for `gid`'s roster: it has none, is not asking, and
    /// this user is (as far as it knows) a member.
    pub fn needs_roster(&self, gid: &GroupId) -> bool {
        self.known.get(gid).is_none_or(|k| {
            k.roster.is_none() && !k.fetching && k.standing.is_none_or(|s| s == Standing::Member)
        })
    }

    /// The session asks for `gid`'s roster.
    pub fn fetching(&mut self, gid: &GroupId) {
        self.known.entry(gid.clone()).or_default().fetching = true;
    }

    /// The session's roster request failed: it asks again when needed.
    pub fn fetch_failed(&mut self, gid: &GroupId) {
        if let Some(known) = self.known.get_mut(gid) {
            known.fetching = false;
            known.queued.clear();
        }
    }

    /// A group-info answer, as of the group's event `seq`.
    pub fn roster(&mut self, me: &UserId, gid: &GroupId, info: &GroupInfoResult, seq: u64) {
        let known = self.known.entry(gid.clone()).or_default();
        known.fetching = false;
        for m in &info.members {
            known.mark(&m.user, m.delivered, m.read);
        }
        if known.roster.as_ref().is_none_or(|r| r.seq <= seq) {
            known.roster = Some(Roster::from_info(info, seq));
        }
        match info.members.iter().find(|m| m.user == *me) {
            Some(m) if m.invited => known.standing = Some(Standing::Invited),
            Some(_) => known.standing = Some(Standing::Member),
            None => {}
        }
        let queued = std::mem::take(&mut known.queued);
        if let Some(roster) = &mut known.roster {
            for (seq, actor, event) in &queued {
                roster.apply(*seq, actor, event);
            }
        }
    }

    /// A member's marker reached this device.
    pub fn marker(&mut self, gid: &GroupId, by: &UserId, kind: Kind, up_to: u64) {
        let known = self.known.entry(gid.clone()).or_default();
        match kind {
            Kind::Delivered => known.mark(by, up_to, 0),
            Kind::Read => known.mark(by, up_to, up_to),
        }
    }

    /// Who received and read `me`'s message `seq` in `gid`; `None` without a roster.
    pub fn receipt(&self, me: &UserId, gid: &GroupId, seq: u64) -> Option<Receipt> {
        let known = self.known.get(gid)?;
        let roster = known.roster.as_ref()?;
        let all = roster.history == HistoryVisibility::All;
        let members = roster
            .seats
            .iter()
            .filter(|(user, seat)| *user != me && !seat.invited && (all || seat.since < seq))
            .map(|(user, _)| {
                let (delivered, read) = known.markers.get(user).copied().unwrap_or_default();
                MemberReceipt::new(user.clone(), delivered, read, seq)
            })
            .collect();
        Some(Receipt {
            conv: mqchat_proto::ConversationRef::Group(gid.clone()),
            seq: Seq::new(seq),
            members,
        })
    }

    /// The group as this device knows it, with the markers it was told.
    #[cfg(test)]
    pub fn group(&self, gid: &GroupId) -> Option<crate::group::Group> {
        let known = self.known.get(gid)?;
        let roster = known.roster.as_ref()?;
        Some(crate::group::Group {
            id: gid.clone(),
            name: roster.name.clone(),
            avatar: roster.avatar.clone(),
            description: roster.description.clone(),
            history: roster.history,
            members: roster
                .seats
                .iter()
                .map(|(user, seat)| {
                    let (delivered, read) = known.markers.get(user).copied().unwrap_or_default();
                    crate::group::Member {
                        user: user.clone(),
                        role: seat.role,
                        invited: seat.invited,
                        since: Seq::new(seat.since),
                        delivered: Seq::new(delivered),
                        read: Seq::new(read),
                    }
                })
                .collect(),
            last_seq: Seq::new(roster.seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqchat_proto::body::Member;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user")
    }

    fn gid() -> GroupId {
        GroupId::parse("crew").expect("valid group")
    }

    fn event(action: GroupAction, who: Option<&str>) -> GroupEvent {
        GroupEvent::new(action, who.map(user))
    }

    /// Applies (seq, actor, action, user) events as alice; returns the roster in short
    /// ("alice owner", "bob invited", "carol admin").
    fn roster_after(steps: &[(u64, &str, GroupAction, Option<&str>)]) -> Vec<String> {
        let mut groups = Groups::default();
        let me = user("alice");
        for &(seq, actor, action, who) in steps {
            let mut e = event(action, who);
            if action == GroupAction::Role {
                e.role = Some(Role::Admin);
            }
            groups.event(&me, &gid(), seq, &user(actor), &e);
        }
        let group = groups.group(&gid()).expect("a roster");
        group
            .members
            .iter()
            .map(|m| {
                let state = if m.invited {
                    "invited"
                } else {
                    match m.role {
                        Role::Owner => "owner",
                        Role::Admin => "admin",
                        Role::Member => "member",
                    }
                };
                format!("{} {state}", m.user)
            })
            .collect()
    }

    #[test]
    fn events_keep_the_roster() {
        use GroupAction::*;
        assert_eq!(
            roster_after(&[
                (1, "alice", Created, None),
                (2, "alice", Invited, Some("bob")),
                (3, "alice", Invited, Some("carol")),
                (4, "bob", Joined, Some("bob")),
                (5, "carol", Declined, Some("carol")),
                (6, "alice", Role, Some("bob")),
            ]),
            ["alice owner", "bob admin"]
        );
        assert_eq!(
            roster_after(&[
                (1, "alice", Created, None),
                (2, "alice", Invited, Some("bob")),
                (3, "bob", Joined, Some("bob")),
                (4, "alice", Owner, Some("bob")),
                (5, "bob", Removed, Some("alice")),
                // An event already applied changes nothing.
                (3, "bob", Joined, Some("bob")),
            ]),
            ["bob owner"]
        );
    }

    #[test]
    fn standing_decides_markers_and_rosters() {
        let mut groups = Groups::default();
        let me = user("bob");
        assert!(groups.wants_markers(&gid()) && groups.needs_roster(&gid()));
        groups.event(
            &me,
            &gid(),
            2,
            &user("alice"),
            &event(GroupAction::Invited, Some("bob")),
        );
        assert!(!groups.wants_markers(&gid()) && !groups.needs_roster(&gid()));
        groups.event(
            &me,
            &gid(),
            5,
            &user("bob"),
            &event(GroupAction::Joined, Some("bob")),
        );
        assert!(groups.wants_markers(&gid()) && groups.needs_roster(&gid()));
        groups.fetching(&gid());
        assert!(!groups.needs_roster(&gid()));
        // An event while the roster is asked for is applied after it.
        groups.event(
            &me,
            &gid(),
            7,
            &user("carol"),
            &event(GroupAction::Left, Some("carol")),
        );
        let member = |name: &str, role, since| Member {
            user: user(name),
            role,
            invited: false,
            since,
            delivered: 6,
            read: 4,
        };
        let info = GroupInfoResult {
            name: "Crew".into(),
            members: vec![
                member("alice", Role::Owner, 1),
                member("bob", Role::Member, 5),
                member("carol", Role::Member, 3),
            ],
            ..GroupInfoResult::default()
        };
        groups.roster(&me, &gid(), &info, 6);
        let group = groups.group(&gid()).expect("roster");
        assert_eq!(group.n_members(), 2);
        assert_eq!(group.last_seq, Seq::new(7));
        groups.event(
            &me,
            &gid(),
            9,
            &user("alice"),
            &event(GroupAction::Removed, Some("bob")),
        );
        assert!(!groups.wants_markers(&gid()));
    }

    #[test]
    fn receipts_count_the_audience() {
        use GroupAction::*;
        let mut groups = Groups::default();
        let me = user("alice");
        let steps = [
            (1, "alice", Created, None),
            (2, "alice", Invited, Some("bob")),
            (3, "alice", Invited, Some("carol")),
            (4, "alice", Invited, Some("dave")),
            (5, "bob", Joined, Some("bob")),
            (6, "carol", Joined, Some("carol")),
            // alice's message is 7; dave joins after it.
            (8, "dave", Joined, Some("dave")),
        ];
        for (seq, actor, action, who) in steps {
            groups.event(&me, &gid(), seq, &user(actor), &event(action, who));
        }
        groups.marker(&gid(), &user("bob"), Kind::Read, 7);
        groups.marker(&gid(), &user("carol"), Kind::Delivered, 7);
        groups.marker(&gid(), &user("dave"), Kind::Read, 9);
        let receipt = groups.receipt(&me, &gid(), 7).expect("roster");
        let short: Vec<(String, bool, bool)> = receipt
            .members
            .iter()
            .map(|m| (m.user.to_string(), m.delivered, m.read))
            .collect();
        assert_eq!(
            short,
            [("bob".into(), true, true), ("carol".into(), true, false)]
        );
        assert_eq!(
            (receipt.n_read(), receipt.n_delivered(), receipt.n_total()),
            (1, 2, 2)
        );
        assert!(
            groups
                .receipt(&me, &GroupId::parse("other").expect("valid"), 7)
                .is_none()
        );
    }
}
