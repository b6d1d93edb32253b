//! Archive retention: removing old events by age and/or by count per conversation.
//!
//! A conversation's kept events are always the contiguous range `first_seq..=last_seq`:
//! retention only moves `first_seq` forward and deletes what lies before it, so sync and
//! history can say exactly what is gone (spec section 11, "Retention"). Events still in the
//! outbox (committed, not yet handed to the broker) are never removed. Each pass is one
//! short write transaction with a bounded number of deletions, so the hub's writer never
//! waits long for it.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::{ConvId, Store, StoreError};

/// What to keep. `None` everywhere keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Remove events stored more than this long ago (ms).
    pub max_age_ms: Option<u64>,
    /// Keep at most this many of the newest events per conversation.
    pub max_events: Option<u64>,
}

impl RetentionPolicy {
    /// Whether the policy removes anything at all.
    pub fn is_active(&self) -> bool {
        self.max_age_ms.is_some() || self.max_events.is_some()
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// Conversations whose first kept event moved.
    pub conversations: u64,
    /// Events removed.
    pub events: u64,
    /// The pass stopped at its budget or candidate limit: run another.
    pub more: bool,
}

/// Conversations looked at in one pass.
const CANDIDATES: i64 = 256;

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Applies `policy` at time `now` (ms), removing at most `budget` events, in one
    /// transaction. Call again while [`RetentionPass::more`] is true.
    pub fn apply_retention(
        &mut self,
        policy: &RetentionPolicy,
        now: u64,
        budget: u64,
    ) -> Result<RetentionPass, StoreError> {
        let mut pass = RetentionPass::default();
        if !policy.is_active() || budget == 0 {
            return Ok(pass);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cutoff = policy.max_age_ms.map(|age| now.saturating_sub(age));
        // Conversations with too many events, or whose first kept event is too old.
        let mut candidates: Vec<(ConvId, u64, u64)> = Vec::new();
        if let Some(max) = policy.max_events {
            let mut stmt = tx.prepare_cached(
                "SELECT id, first_seq, last_seq FROM conversations
                 WHERE last_seq - first_seq + 1 > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![i(max), CANDIDATES], |r| {
                Ok((r.get(0)?, u(r.get(1)?), u(r.get(2)?)))
            })?;
            candidates.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        if let Some(cutoff) = cutoff {
            let mut stmt = tx.prepare_cached(
                "SELECT c.id, c.first_seq, c.last_seq FROM conversations c
                 JOIN events e ON e.conv = c.id AND e.seq = c.first_seq
                 WHERE e.ts < ?1 ORDER BY c.id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![i(cutoff), CANDIDATES], |r| {
                Ok((r.get(0)?, u(r.get(1)?), u(r.get(2)?)))
            })?;
            candidates.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        pass.more = candidates.len() as i64 >= CANDIDATES;
        candidates.sort_unstable();
        candidates.dedup_by_key(|c| c.0);

        let mut left = budget;
        for (conv, first, last) in candidates {
            if left == 0 {
                pass.more = true;
                break;
            }
            let mut keep_from = first;
            if let Some(max) = policy.max_events {
                keep_from = keep_from.max((last + 1).saturating_sub(max));
            }
            if let Some(cutoff) = cutoff {
                let newer: Option<i64> = tx
                    .prepare_cached(
                        "SELECT seq FROM events WHERE conv = ?1 AND seq >= ?2 AND ts >= ?3
                         ORDER BY seq LIMIT 1",
                    )?
                    .query_row(params![conv, i(first), i(cutoff)], |r| r.get(0))
                    .optional()?;
                keep_from = keep_from.max(newer.map_or(last + 1, u));
            }
            let pending: Option<i64> = tx
                .prepare_cached("SELECT MIN(seq) FROM outbox WHERE conv = ?1")?
                .query_row([conv], |r| r.get(0))?;
            if let Some(pending) = pending {
                keep_from = keep_from.min(u(pending));
            }
            if keep_from > first + left {
                keep_from = first + left;
                pass.more = true;
            }
            if keep_from <= first {
                continue;
            }
            let removed = tx
                .prepare_cached("DELETE FROM events WHERE conv = ?1 AND seq >= ?2 AND seq < ?3")?
                .execute(params![conv, i(first), i(keep_from)])?;
            tx.prepare_cached("UPDATE conversations SET first_seq = ?2 WHERE id = ?1")?
                .execute(params![conv, i(keep_from)])?;
            pass.conversations += 1;
            pass.events += removed as u64;
            left = left.saturating_sub(keep_from - first);
        }
        tx.commit()?;
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use mqchat_proto::{DeviceId, MessageId, PacketKind, UserId};

    use super::*;
    use crate::archive::Position;
    use crate::test_store;

    const DAY: u64 = 86_400_000;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid")
    }

    /// alice and bob with `n` events, the k-th (from 1) stored at day k.
    fn conversation(n: u64) -> (tempfile::TempDir, Store, ConvId) {
        let (dir, mut store) = test_store();
        for name in ["alice", "bob"] {
            store.add_user(&user(name), None, 1).expect("add");
        }
        let phone = DeviceId::parse("phone").expect("valid");
        let tx = store.transaction().expect("tx");
        let conv = tx
            .direct(&user("alice"), &user("bob"), true)
            .expect("create")
            .expect("created");
        for k in 1..=n {
            tx.append(
                conv.id,
                k * DAY,
                &user("alice"),
                &phone,
                Some(MessageId::new(k).expect("id")),
                PacketKind::MESSAGE,
                b"x",
            )
            .expect("append");
        }
        tx.outbox_done(&(1..=n).map(|k| (conv.id, k)).collect::<Vec<_>>())
            .expect("delivered");
        tx.commit().expect("commit");
        (dir, store, conv.id)
    }

    fn kept(store: &mut Store, conv: ConvId) -> (u64, Vec<u64>) {
        let tx = store.transaction().expect("tx");
        let first = tx
            .conversation(conv)
            .expect("query")
            .expect("exists")
            .first_seq;
        let (events, _) = tx
            .events(conv, Position::After(0), (0, u64::MAX >> 1), 1000)
            .expect("events");
        (first, events.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn by_count_keeps_the_newest() {
        let (_dir, mut store, conv) = conversation(10);
        let policy = RetentionPolicy {
            max_events: Some(4),
            ..RetentionPolicy::default()
        };
        let pass = store
            .apply_retention(&policy, 100 * DAY, 1000)
            .expect("pass");
        assert_eq!((pass.conversations, pass.events, pass.more), (1, 6, false));
        assert_eq!(kept(&mut store, conv), (7, vec![7, 8, 9, 10]));
        // Nothing more to do.
        let again = store
            .apply_retention(&policy, 100 * DAY, 1000)
            .expect("pass");
        assert_eq!(again, RetentionPass::default());
    }

    #[test]
    fn by_age_removes_what_is_older() {
        let (_dir, mut store, conv) = conversation(10);
        let policy = RetentionPolicy {
            max_age_ms: Some(3 * DAY),
            ..RetentionPolicy::default()
        };
        // At day 10.5, the cutoff is day 7.5: events of days 8, 9, 10 stay.
        let pass = store
            .apply_retention(&policy, 10 * DAY + DAY / 2, 1000)
            .expect("pass");
        assert_eq!(pass.events, 7);
        assert_eq!(kept(&mut store, conv), (8, vec![8, 9, 10]));
        // Everything old: the conversation is emptied, first_seq past the last.
        store
            .apply_retention(&policy, 50 * DAY, 1000)
            .expect("pass");
        assert_eq!(kept(&mut store, conv), (11, vec![]));
    }

    #[test]
    fn budget_splits_the_work_and_outbox_is_kept() {
        let (_dir, mut store, conv) = conversation(10);
        {
            // Event 11 is committed but never handed to the broker (still in the outbox).
            let tx = store.transaction().expect("tx");
            tx.append(
                conv,
                11 * DAY,
                &user("bob"),
                &DeviceId::parse("phone").expect("valid"),
                Some(MessageId::new(99).expect("id")),
                PacketKind::MESSAGE,
                b"y",
            )
            .expect("append");
            tx.commit().expect("commit");
        }
        let policy = RetentionPolicy {
            max_events: Some(1),
            ..RetentionPolicy::default()
        };
        let pass = store.apply_retention(&policy, 0, 3).expect("pass");
        assert_eq!((pass.events, pass.more), (3, true));
        assert_eq!(kept(&mut store, conv).0, 4);
        let pass = store.apply_retention(&policy, 0, 100).expect("pass");
        assert_eq!(pass.events, 7);
        assert_eq!(kept(&mut store, conv), (11, vec![11]));
        // Event 11 is still undelivered: it holds retention back, whatever comes after it.
        let tx = store.transaction().expect("tx");
        tx.append(
            conv,
            12 * DAY,
            &user("bob"),
            &DeviceId::parse("phone").expect("valid"),
            Some(MessageId::new(100).expect("id")),
            PacketKind::MESSAGE,
            b"z",
        )
        .expect("append");
        tx.commit().expect("commit");
        let pass = store.apply_retention(&policy, 0, 100).expect("pass");
        assert_eq!(pass.events, 0);
        assert_eq!(kept(&mut store, conv), (11, vec![11, 12]));
    }

    #[test]
    fn inactive_policy_does_nothing() {
        let (_dir, mut store, conv) = conversation(3);
        let pass = store
            .apply_retention(&RetentionPolicy::default(), 100 * DAY, 1000)
            .expect("pass");
        assert_eq!(pass, RetentionPass::default());
        assert_eq!(kept(&mut store, conv), (1, vec![1, 2, 3]));
    }
}
