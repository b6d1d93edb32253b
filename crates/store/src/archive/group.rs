//! Groups: a group's conversation and profile, its deletion, and each user's membership
//! (role, invited, member or former, and the span of the history they may read).

use mqchat_proto::body::Role;
use mqchat_proto::{GroupId, UserId};
use rusqlite::{OptionalExtension, params};

use super::row::{CONVERSATION_COLS, CONVERSATION_N, conversation, i};
use super::{ConvId, ConversationRow, Tx};
use crate::StoreError;

/// A group's profile.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupProfile {
    /// Name.
    pub name: String,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Whether new members read the whole history (else from their joining on).
    pub history_all: bool,
}

/// A participant's membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// A member (every participant of a direct conversation is one).
    Member = 0,
    /// Invited to a group, not answered yet.
    Invited = 1,
    /// Left, removed, declined, or the group was deleted.
    Former = 2,
}

impl Tx<'_> {
    /// Creates a group conversation (no participants yet).
    pub fn create_group(
        &self,
        group: &GroupId,
        profile: &GroupProfile,
    ) -> Result<ConversationRow, StoreError> {
        let id: ConvId = self.tx.query_row(
            "INSERT INTO conversations (group_id, name, avatar, description, history_all) VALUES (?1, ?2, ?3, ?4, ?5)
             RETURNING id",
            params![group.as_str(), profile.name, profile.avatar, profile.description, profile.history_all],
            |r| r.get(0),
        )?;
        Ok(ConversationRow {
            id,
            last_seq: 0,
            last_ts: None,
            first_seq: 1,
            group: Some(group.clone()),
            deleted: false,
            history_all: profile.history_all,
            sip: None,
            sip_delivered: 0,
        })
    }

    /// A group conversation and its profile.
    pub fn group(
        &self,
        group: &GroupId,
    ) -> Result<Option<(ConversationRow, GroupProfile)>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS}, c.name, c.avatar, c.description, c.history_all FROM conversations c
                 WHERE group_id = ?1"
            ))?
            .query_row([group.as_str()], |r| {
                Ok((
                    conversation(r, 0)?,
                    GroupProfile {
                        name: r.get::<_, Option<String>>(CONVERSATION_N)?.unwrap_or_default(),
                        avatar: r.get(CONVERSATION_N + 1)?,
                        description: r.get(CONVERSATION_N + 2)?,
                        history_all: r.get(CONVERSATION_N + 3)?,
                    },
                ))
            })
            .optional()?)
    }

    /// Replaces a group's profile.
    pub fn set_group_profile(
        &self,
        conv: ConvId,
        profile: &GroupProfile,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE conversations SET name = ?2, avatar = ?3, description = ?4, history_all = ?5 WHERE id = ?1",
            )?
            .execute(params![conv, profile.name, profile.avatar, profile.description, profile.history_all])?;
        Ok(())
    }

    /// Marks a group deleted.
    pub fn delete_group(&self, conv: ConvId) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE conversations SET deleted = 1 WHERE id = ?1")?
            .execute([conv])?;
        self.touch(conv)
    }

    /// Sets a user's membership of a group (adding them as a participant if needed) and
    /// marks the conversation changed.
    pub fn set_membership(
        &self,
        conv: ConvId,
        user: &UserId,
        role: Role,
        state: Membership,
        since: u64,
        until: Option<u64>,
    ) -> Result<(), StoreError> {
        let change = self.next_change()?;
        self.tx
            .prepare_cached(
                "INSERT INTO participants (user_id, conv, role, state, since_seq, until_seq, change)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (user_id, conv) DO UPDATE SET role = ?3, state = ?4, since_seq = ?5, until_seq = ?6",
            )?
            .execute(params![user.as_str(), conv, role as i64, state as i64, i(since), until.map(i), i(change)])?;
        self.touch(conv)
    }
}

#[cfg(test)]
mod tests {
    use mqchat_proto::{DeviceId, PacketKind};

    use super::*;
    use crate::archive::Position;
    use crate::archive::tests::{setup, user};

    #[test]
    fn group_membership_and_windows() {
        let (_dir, mut store) = setup();
        let tx = store.transaction().expect("tx");
        let gid = GroupId::parse("g1").expect("valid");
        let profile = GroupProfile {
            name: "Team".into(),
            ..GroupProfile::default()
        };
        let conv = tx.create_group(&gid, &profile).expect("create").id;
        let phone = DeviceId::parse("phone").expect("valid");
        tx.set_membership(
            conv,
            &user("alice"),
            Role::Owner,
            Membership::Member,
            1,
            None,
        )
        .expect("owner");
        for n in 1..=4 {
            tx.append(
                conv,
                n,
                &user("alice"),
                &phone,
                None,
                PacketKind::MESSAGE,
                &[0xa0],
            )
            .expect("append");
        }
        tx.set_membership(
            conv,
            &user("bob"),
            Role::Member,
            Membership::Member,
            3,
            None,
        )
        .expect("bob");
        let (found, got) = tx.group(&gid).expect("query").expect("exists");
        assert_eq!(
            (found.id, found.last_seq, got.name.as_str()),
            (conv, 4, "Team")
        );
        let bob = tx
            .participant(conv, &user("bob"))
            .expect("query")
            .expect("bob");
        assert_eq!(
            (bob.role, bob.state, bob.since),
            (Role::Member, Membership::Member, 3)
        );
        let (events, _) = tx
            .events(conv, Position::After(0), (bob.since, u64::MAX >> 1), 10)
            .expect("page");
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(
            events[0].client_id, None,
            "hub-made events have no client id"
        );
        assert_eq!(
            tx.authors(conv, 0, 4, &user("bob"), PacketKind(33))
                .expect("authors"),
            vec![user("alice")]
        );
        assert!(
            tx.authors(conv, 0, 4, &user("alice"), PacketKind(33))
                .expect("authors")
                .is_empty()
        );
        tx.set_membership(
            conv,
            &user("bob"),
            Role::Member,
            Membership::Former,
            3,
            Some(4),
        )
        .expect("leave");
        assert_eq!(
            tx.participant(conv, &user("bob"))
                .expect("query")
                .expect("bob")
                .until,
            Some(4)
        );
        tx.delete_group(conv).expect("delete");
        assert!(tx.group(&gid).expect("query").expect("exists").0.deleted);
    }
}
