//! The archive and conversation state, used by the hub inside one write transaction per
//! batch of upstream packets (group commit).
//!
//! Every change a user should sync bumps the hub-wide change counter and stamps the user's
//! participant row with it (see the spec, section 11). Events are appended with the next
//! sequence number of their conversation and recorded in the outbox until the hub has
//! handed them to the broker.
//!
//! [`Tx`] and its savepoints and change tokens are here; its reads and writes are in one
//! module per subject, each with its own `impl Tx` block: `conversation` (conversations and
//! participants), `event` (events, deduplication, the outbox), `group`, `user` (existence,
//! profiles, devices), and `row` (how rows read).

mod conversation;
mod event;
mod group;
mod row;
mod user;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

pub use conversation::{ConvId, ConversationRow, ParticipantRow};
pub use event::{Author, EventRow, Position};
pub use group::{GroupProfile, Membership};
pub(crate) use row::CONTACT_ACCEPTED;
use row::{i, u};
pub use user::ProfileRow;

use crate::StoreError;

/// A write transaction.
#[derive(Debug)]
pub struct Tx<'c> {
    tx: Transaction<'c>,
    /// Where the count of stored events goes after a commit that stored some.
    counts: &'c mut crate::tail::CountFile,
    /// Whether this transaction stored an event.
    stored: std::cell::Cell<bool>,
}

impl<'c> Tx<'c> {
    pub(crate) fn begin(
        conn: &'c mut Connection,
        counts: &'c mut crate::tail::CountFile,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            tx: conn.transaction_with_behavior(TransactionBehavior::Immediate)?,
            counts,
            stored: std::cell::Cell::new(false),
        })
    }

    /// The transaction's connection, for the other modules of this crate.
    pub(crate) fn conn(&self) -> &Connection {
        &self.tx
    }

    /// Commits everything done in the transaction.
    pub fn commit(self) -> Result<(), StoreError> {
        let count = if self.stored.get() {
            let count: i64 = self
                .tx
                .prepare_cached("SELECT value FROM counters WHERE name = 'events'")?
                .query_row([], |r| r.get(0))?;
            Some(u64::try_from(count).unwrap_or(0))
        } else {
            None
        };
        self.tx.commit()?;
        if let Some(count) = count {
            self.counts.record(count);
        }
        Ok(())
    }

    /// Runs a statement without parameters through the statement cache (savepoints run
    /// twice per packet: prepared once, not parsed each time).
    fn run_cached(&self, sql: &str) -> Result<(), StoreError> {
        self.tx.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Runs `f` in a savepoint: if it fails, its changes are undone and the rest of the
    /// transaction goes on (one bad packet never spoils the batch it arrived in).
    pub fn item<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run_cached("SAVEPOINT item")?;
        match f(self) {
            Ok(v) => {
                self.run_cached("RELEASE item")?;
                Ok(v)
            }
            Err(e) => {
                self.run_cached("ROLLBACK TO item")?;
                self.run_cached("RELEASE item")?;
                Err(e)
            }
        }
    }

    /// The next change token: every change a user should sync is stamped with one.
    pub(crate) fn next_change(&self) -> Result<u64, StoreError> {
        let v: i64 = self
            .tx
            .prepare_cached(
                "UPDATE counters SET value = value + 1 WHERE name = 'change' RETURNING value",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(u(v))
    }

    /// The current change token.
    pub fn change_token(&self) -> Result<u64, StoreError> {
        let v: i64 = self.tx.query_row(
            "SELECT value FROM counters WHERE name = 'change'",
            [],
            |r| r.get(0),
        )?;
        Ok(u(v))
    }

    /// Marks every participant of `conv` as changed.
    pub(crate) fn touch(&self, conv: ConvId) -> Result<(), StoreError> {
        let change = self.next_change()?;
        self.tx
            .prepare_cached("UPDATE participants SET change = ?2 WHERE conv = ?1")?
            .execute(params![conv, i(change)])?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use mqchat_proto::{DeviceId, MessageId, PacketKind, UserId};

    use super::row::PARTICIPANT_COLS;
    use super::*;
    use crate::test_store;

    pub(super) const ALL: (u64, u64) = (0, u64::MAX >> 1);

    pub(super) fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid")
    }

    pub(super) fn setup() -> (tempfile::TempDir, crate::Store) {
        let (dir, mut store) = test_store();
        for name in ["alice", "bob"] {
            store.add_user(&user(name), None, 1).expect("add");
        }
        (dir, store)
    }

    /// Cached statements stay prepared: binding new values to a statement whose WHERE
    /// compares columns with parameters must not make SQLite parse and plan it again at the
    /// next use (issue 9: that cost 15 % of the server's CPU).
    #[test]
    fn cached_statements_are_not_prepared_again() {
        let (_dir, mut store) = test_store();
        let users: Vec<UserId> = (0..8).map(|n| user(&format!("u{n}"))).collect();
        for u in &users {
            store.add_user(u, None, 1).expect("add");
        }
        let phone = DeviceId::parse("phone").expect("valid");
        let mut tx = store.transaction().expect("tx");
        let mut convs = Vec::new();
        for pair in users.chunks(2) {
            let conv = tx.direct(&pair[0], &pair[1], true).expect("create");
            convs.push((conv.expect("created").id, pair[0].clone()));
        }
        let mut n = 0;
        for round in 0..3u64 {
            for (conv, sender) in &convs {
                n += 1;
                tx.item(|tx| {
                    tx.participants(*conv)?;
                    tx.push_candidates(*conv, &Author::User(sender.clone()), 1000 + round)?;
                    let id = MessageId::new(n).ok();
                    let seq =
                        tx.append(*conv, 1000 + round, sender, &phone, id, PacketKind(1), b"x")?;
                    tx.event(*conv, seq)?;
                    tx.set_markers(*conv, sender, seq, 0)
                })
                .expect("item");
            }
        }
        let participants = format!(
            "SELECT {PARTICIPANT_COLS} FROM participants p WHERE conv = ?1 ORDER BY user_id"
        );
        let stmt = tx.tx.prepare_cached(&participants).expect("cached");
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::Run), 12);
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn failed_items_roll_back_alone() {
        let (_dir, mut store) = setup();
        let mut tx = store.transaction().expect("tx");
        let r: Result<(), StoreError> = tx.item(|tx| {
            tx.direct(&user("alice"), &user("bob"), true)?;
            Err(StoreError::NotFound("forced".into()))
        });
        assert!(r.is_err());
        assert_eq!(
            tx.direct(&user("alice"), &user("bob"), false)
                .expect("query"),
            None
        );
        tx.item(|tx| tx.direct(&user("alice"), &user("bob"), true).map(drop))
            .expect("second item");
        tx.commit().expect("commit");
        let tx = store.transaction().expect("tx");
        assert!(
            tx.direct(&user("alice"), &user("bob"), false)
                .expect("query")
                .is_some()
        );
    }
}
