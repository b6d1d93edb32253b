//! Conversations and their participants: the direct conversation of two users, each
//! user's side of a conversation (markers, contact state, mute), and the change tokens
//! that sync follows.

use mqchat_proto::body::{ContactState, Role};
use mqchat_proto::{GroupId, SipAddress, UserId};
use rusqlite::{OptionalExtension, params};

use super::row::{
    CONVERSATION_COLS, PARTICIPANT_COLS, PARTICIPANT_N, conversation, i, participant,
};
use super::{Membership, Tx};
use crate::StoreError;

/// A conversation's row id.
pub type ConvId = i64;

/// A conversation's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRow {
    /// Row id.
    pub id: ConvId,
    /// Last sequence number (0: no events).
    pub last_seq: u64,
    /// Time of the last event.
    pub last_ts: Option<u64>,
    /// First sequence number still kept.
    pub first_seq: u64,
    /// The group id, for a group conversation.
    pub group: Option<GroupId>,
    /// A deleted group: no more events.
    pub deleted: bool,
    /// A group whose new members read the whole history.
    pub history_all: bool,
    /// The SIP address, for a user's conversation with someone outside mqchat.
    pub sip: Option<SipAddress>,
    /// The SIP party's delivered marker (conversations with a SIP address).
    pub sip_delivered: u64,
}

/// One user's side of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantRow {
    /// The user.
    pub user: UserId,
    /// For direct conversations, the other user (the name this user sees).
    pub peer: Option<UserId>,
    /// Delivered marker.
    pub delivered: u64,
    /// Read marker.
    pub read: u64,
    /// Contact state towards the peer.
    pub contact: ContactState,
    /// Change token of the last change.
    pub change: u64,
    /// Role in a group.
    pub role: Role,
    /// Membership state.
    pub state: Membership,
    /// Sequence number of the event that made them a member (or invited them).
    pub since: u64,
    /// Sequence number of the event that ended their membership.
    pub until: Option<u64>,
    /// No pushes for this conversation before this time (ms; 0: not muted).
    pub muted_until: u64,
}

impl Tx<'_> {
    /// The newest time any stored event has (0 for an empty store): where a hub's stamps
    /// resume after a restart.
    pub fn newest_event_time(&self) -> Result<u64, StoreError> {
        let newest: i64 = self.tx.query_row(
            "SELECT coalesce(max(last_ts), 0) FROM conversations",
            [],
            |r| r.get(0),
        )?;
        Ok(super::row::u(newest))
    }

    /// The direct conversation between `a` and `b` (possibly the same user), created with its
    /// participants when `create` and it does not exist.
    pub fn direct(
        &self,
        a: &UserId,
        b: &UserId,
        create: bool,
    ) -> Result<Option<ConversationRow>, StoreError> {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let found = self
            .tx
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations c WHERE user_a = ?1 AND user_b = ?2"
            ))?
            .query_row([lo.as_str(), hi.as_str()], |r| conversation(r, 0))
            .optional()?;
        if found.is_some() || !create {
            return Ok(found);
        }
        let id: ConvId = self.tx.query_row(
            "INSERT INTO conversations (user_a, user_b) VALUES (?1, ?2) RETURNING id",
            [lo.as_str(), hi.as_str()],
            |r| r.get(0),
        )?;
        let change = self.next_change()?;
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO participants (user_id, conv, peer, change) VALUES (?1, ?2, ?3, ?4)",
        )?;
        insert.execute(params![lo.as_str(), id, hi.as_str(), i(change)])?;
        if lo != hi {
            insert.execute(params![hi.as_str(), id, lo.as_str(), i(change)])?;
        }
        Ok(Some(ConversationRow {
            id,
            last_seq: 0,
            last_ts: None,
            first_seq: 1,
            group: None,
            deleted: false,
            history_all: false,
            sip: None,
            sip_delivered: 0,
        }))
    }

    /// A conversation by id.
    pub fn conversation(&self, conv: ConvId) -> Result<Option<ConversationRow>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations c WHERE id = ?1"
            ))?
            .query_row([conv], |r| conversation(r, 0))
            .optional()?)
    }

    /// Every participant of a conversation.
    pub fn participants(&self, conv: ConvId) -> Result<Vec<ParticipantRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {PARTICIPANT_COLS} FROM participants p WHERE conv = ?1 ORDER BY user_id"
        ))?;
        let rows = stmt.query_map([conv], |r| participant(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One user's side of a conversation.
    pub fn participant(
        &self,
        conv: ConvId,
        user: &UserId,
    ) -> Result<Option<ParticipantRow>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {PARTICIPANT_COLS} FROM participants p WHERE conv = ?1 AND user_id = ?2"
            ))?
            .query_row(params![conv, user.as_str()], |r| participant(r, 0))
            .optional()?)
    }

    /// Sets a participant's markers (the caller has checked they only move forward) and
    /// marks the conversation changed for every participant.
    pub fn set_markers(
        &self,
        conv: ConvId,
        user: &UserId,
        delivered: u64,
        read: u64,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE participants SET delivered = ?3, read = ?4 WHERE conv = ?1 AND user_id = ?2")?
            .execute(params![conv, user.as_str(), i(delivered), i(read)])?;
        self.touch(conv)
    }

    /// Sets a group member's delivered and read markers and marks the conversation changed
    /// for that member only: in a group, a member's markers appear in no other member's
    /// sync entry (others see them in the roster), so touching every member's row, as
    /// [`Tx::set_markers`] does, would cost a write per member for every marker.
    pub fn set_own_markers(
        &self,
        conv: ConvId,
        user: &UserId,
        delivered: u64,
        read: u64,
    ) -> Result<(), StoreError> {
        let change = self.next_change()?;
        self.tx
            .prepare_cached(
                "UPDATE participants SET delivered = ?3, read = ?4, change = ?5 WHERE conv = ?1 AND user_id = ?2",
            )?
            .execute(params![conv, user.as_str(), i(delivered), i(read), i(change)])?;
        Ok(())
    }

    /// Sets a participant's contact state and marks the conversation changed.
    pub fn set_contact(
        &self,
        conv: ConvId,
        user: &UserId,
        state: ContactState,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE participants SET contact = ?3 WHERE conv = ?1 AND user_id = ?2",
            )?
            .execute(params![conv, user.as_str(), state as i64])?;
        self.touch(conv)
    }

    /// Sets a participant's mute and marks the conversation changed for them (so their
    /// other devices learn it by sync).
    pub fn set_mute(&self, conv: ConvId, user: &UserId, until: u64) -> Result<(), StoreError> {
        let change = self.next_change()?;
        self.tx
            .prepare_cached(
                "UPDATE participants SET muted_until = ?3, change = ?4 WHERE conv = ?1 AND user_id = ?2",
            )?
            .execute(params![conv, user.as_str(), i(until), i(change)])?;
        Ok(())
    }

    /// The conversations of `user` changed after (ascending) or before (descending) a change
    /// token, at most `limit` of them, and whether more remain.
    pub fn changed_conversations(
        &self,
        user: &UserId,
        bound: u64,
        newest_first: bool,
        limit: usize,
    ) -> Result<(Vec<(ParticipantRow, ConversationRow)>, bool), StoreError> {
        let sql = if newest_first {
            format!(
                "SELECT {PARTICIPANT_COLS}, {CONVERSATION_COLS} FROM participants p JOIN conversations c ON c.id = p.conv
                 WHERE p.user_id = ?1 AND p.change < ?2 ORDER BY p.change DESC LIMIT ?3"
            )
        } else {
            format!(
                "SELECT {PARTICIPANT_COLS}, {CONVERSATION_COLS} FROM participants p JOIN conversations c ON c.id = p.conv
                 WHERE p.user_id = ?1 AND p.change > ?2 ORDER BY p.change LIMIT ?3"
            )
        };
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![user.as_str(), i(bound), limit as i64 + 1], |r| {
            Ok((participant(r, 0)?, conversation(r, PARTICIPANT_N)?))
        })?;
        let mut out: Vec<_> = rows.collect::<Result<_, _>>()?;
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::GroupProfile;
    use crate::archive::tests::{setup, user};

    #[test]
    fn direct_conversations_are_one_per_pair() {
        let (_dir, mut store) = setup();
        let tx = store.transaction().expect("tx");
        assert_eq!(
            tx.direct(&user("alice"), &user("bob"), false)
                .expect("query"),
            None
        );
        let a = tx
            .direct(&user("alice"), &user("bob"), true)
            .expect("create")
            .expect("created");
        let b = tx
            .direct(&user("bob"), &user("alice"), true)
            .expect("find")
            .expect("found");
        assert_eq!(a, b);
        let parts = tx.participants(a.id).expect("participants");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].peer, Some(user("bob")));
        let own = tx
            .direct(&user("alice"), &user("alice"), true)
            .expect("self")
            .expect("created");
        assert_eq!(tx.participants(own.id).expect("participants").len(), 1);
    }

    #[test]
    fn change_tokens_order_conversations() {
        let (_dir, mut store) = setup();
        store.add_user(&user("carol"), None, 1).expect("add");
        let tx = store.transaction().expect("tx");
        let ab = tx
            .direct(&user("alice"), &user("bob"), true)
            .expect("create")
            .expect("created")
            .id;
        let ac = tx
            .direct(&user("alice"), &user("carol"), true)
            .expect("create")
            .expect("created")
            .id;
        tx.set_markers(ab, &user("alice"), 0, 0).expect("touch ab");
        let ids = |(rows, _): (Vec<(ParticipantRow, ConversationRow)>, bool)| {
            rows.iter().map(|r| r.1.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(tx
                .changed_conversations(&user("alice"), 0, false, 10)
                .expect("asc")),
            vec![ac, ab]
        );
        assert_eq!(
            ids(tx
                .changed_conversations(&user("alice"), u64::MAX >> 1, true, 10)
                .expect("desc")),
            vec![ab, ac]
        );
        let (page, more) = tx
            .changed_conversations(&user("alice"), 0, false, 1)
            .expect("page");
        assert!(more);
        let (rest, more) = tx
            .changed_conversations(&user("alice"), page[0].0.change, false, 1)
            .expect("page");
        assert!(!more);
        assert_eq!(rest[0].1.id, ab);
    }

    #[test]
    fn own_markers_change_only_the_member() {
        let (_dir, mut store) = setup();
        let tx = store.transaction().expect("tx");
        let profile = GroupProfile {
            name: "g".into(),
            avatar: None,
            description: None,
            history_all: false,
        };
        let group = tx
            .create_group(&GroupId::parse("crew").expect("gid"), &profile)
            .expect("group");
        for name in ["alice", "bob"] {
            tx.set_membership(
                group.id,
                &user(name),
                Role::Member,
                Membership::Member,
                1,
                None,
            )
            .expect("member");
        }
        let change_of = |name: &str| {
            tx.participant(group.id, &user(name))
                .expect("query")
                .expect("member")
        };
        let (alice, bob) = (change_of("alice"), change_of("bob"));
        tx.set_own_markers(group.id, &user("alice"), 3, 2)
            .expect("markers");
        let (alice_after, bob_after) = (change_of("alice"), change_of("bob"));
        assert_eq!((alice_after.delivered, alice_after.read), (3, 2));
        assert!(alice_after.change > alice.change);
        assert_eq!(bob_after.change, bob.change);
        assert_eq!((bob_after.delivered, bob_after.read), (0, 0));
    }
}
