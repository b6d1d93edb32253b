//! Events: appended with their conversation's next sequence number and recorded in the
//! outbox until the broker has them, found again by their sender's message id
//! (deduplication), and read back in pages, unread counts and authors.

use mqchat_proto::{DeviceId, MessageId, PacketKind, SipAddress, UserId};
use rusqlite::{OptionalExtension, params};

use super::row::{EVENT_COLS, event, i, u, user_col};
use super::{ConvId, Tx};
use crate::StoreError;

/// Who wrote an event: a user, or someone outside mqchat through the SIP gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Author {
    /// An mqchat user.
    User(UserId),
    /// A SIP address.
    Sip(SipAddress),
}

impl Author {
    /// The user, if the author is one.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(user) => Some(user),
            Self::Sip(_) => None,
        }
    }

    /// As stored: the user id or the SIP address (which no user id can equal: it has `:`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::User(user) => user.as_str(),
            Self::Sip(address) => address.as_str(),
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self, mqchat_proto::IdentityError> {
        if text.starts_with("sip:") {
            SipAddress::parse(text).map(Self::Sip)
        } else {
            UserId::parse(text).map(Self::User)
        }
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    /// Conversation.
    pub conv: ConvId,
    /// Sequence number.
    pub seq: u64,
    /// When it was stored.
    pub ts: u64,
    /// Sender.
    pub sender: Author,
    /// Sending device.
    pub sender_device: DeviceId,
    /// The sender's message id (none for events the hub makes).
    pub client_id: Option<MessageId>,
    /// Packet type.
    pub kind: PacketKind,
    /// The packet as accepted (hub-only envelope fields removed).
    pub packet: Vec<u8>,
}

/// Where a history page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// After this sequence number, forward.
    After(u64),
    /// At or after this time, forward.
    Since(u64),
    /// Before this sequence number, backward (`u64::MAX`: from the end).
    Before(u64),
}

impl Tx<'_> {
    /// The stored event from this sender device with this client id, if any.
    pub fn find_duplicate(
        &self,
        sender: &UserId,
        device: &DeviceId,
        id: MessageId,
    ) -> Result<Option<EventRow>, StoreError> {
        self.find_duplicate_by(&Author::User(sender.clone()), device, id)
    }

    /// [`Tx::find_duplicate`] for any author.
    pub fn find_duplicate_by(
        &self,
        sender: &Author,
        device: &DeviceId,
        id: MessageId,
    ) -> Result<Option<EventRow>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events WHERE sender = ?1 AND sender_device = ?2 AND client_id = ?3"
            ))?
            .query_row(params![sender.as_str(), device.as_str(), i(id.get())], event)
            .optional()?)
    }

    /// Appends an event with the conversation's next sequence number, records it in the
    /// outbox, and marks the conversation changed for every participant. Returns the
    /// sequence number.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        conv: ConvId,
        ts: u64,
        sender: &UserId,
        device: &DeviceId,
        id: Option<MessageId>,
        kind: PacketKind,
        packet: &[u8],
    ) -> Result<u64, StoreError> {
        let author = Author::User(sender.clone());
        self.append_by(conv, ts, &author, device, id, kind, packet, false)
    }

    /// [`Tx::append`] for any author; a `quiet` event counts as unread for no one.
    #[allow(clippy::too_many_arguments)]
    pub fn append_by(
        &self,
        conv: ConvId,
        ts: u64,
        sender: &Author,
        device: &DeviceId,
        id: Option<MessageId>,
        kind: PacketKind,
        packet: &[u8],
        quiet: bool,
    ) -> Result<u64, StoreError> {
        let seq: i64 = self
            .tx
            .prepare_cached("UPDATE conversations SET last_seq = last_seq + 1, last_ts = ?2 WHERE id = ?1 RETURNING last_seq")?
            .query_row(params![conv, i(ts)], |r| r.get(0))?;
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO events ({EVENT_COLS}, quiet) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                conv,
                seq,
                i(ts),
                sender.as_str(),
                device.as_str(),
                id.map(|id| i(id.get())),
                i64::from(kind.0),
                packet,
                quiet
            ])?;
        self.tx
            .prepare_cached("INSERT INTO outbox (conv, seq) VALUES (?1, ?2)")?
            .execute(params![conv, seq])?;
        // Counted with the event, for the tail guard (crate::tail).
        self.tx
            .prepare_cached("UPDATE counters SET value = value + 1 WHERE name = 'events'")?
            .execute([])?;
        self.stored.set(true);
        self.touch(conv)?;
        Ok(u(seq))
    }

    /// A page of events, in ascending sequence order, and whether more remain in the
    /// direction asked.
    /// Only events within `window` (first and last sequence number the reader may see)
    /// are considered.
    pub fn events(
        &self,
        conv: ConvId,
        position: Position,
        window: (u64, u64),
        limit: usize,
    ) -> Result<(Vec<EventRow>, bool), StoreError> {
        let (sql, bound, backward) = match position {
            Position::After(seq) => ("seq > ?2 ORDER BY seq", i(seq), false),
            Position::Since(ts) => ("ts >= ?2 ORDER BY seq", i(ts), false),
            Position::Before(seq) => ("seq < ?2 ORDER BY seq DESC", i(seq), true),
        };
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE conv = ?1 AND seq >= ?4 AND seq <= ?5 AND {sql} LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![conv, bound, limit as i64 + 1, i(window.0), i(window.1)],
            event,
        )?;
        let mut out: Vec<EventRow> = rows.collect::<Result<_, _>>()?;
        let more = out.len() > limit;
        out.truncate(limit);
        if backward {
            out.reverse();
        }
        Ok((out, more))
    }

    /// One event.
    pub fn event(&self, conv: ConvId, seq: u64) -> Result<Option<EventRow>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events WHERE conv = ?1 AND seq = ?2"
            ))?
            .query_row(params![conv, i(seq)], event)
            .optional()?)
    }

    /// Events in `conv` after `read`, up to `until`, sent by someone other than `user`, not
    /// counting events of type `except` (the hub's own group events).
    pub fn unread(
        &self,
        conv: ConvId,
        user: &UserId,
        read: u64,
        until: u64,
        except: PacketKind,
    ) -> Result<u64, StoreError> {
        let n: i64 = self
            .tx
            .prepare_cached(
                "SELECT COUNT(*) FROM events
                 WHERE conv = ?1 AND seq > ?2 AND seq <= ?4 AND sender <> ?3 AND kind <> ?5 AND NOT quiet",
            )?
            .query_row(
                params![conv, i(read), user.as_str(), i(until), i64::from(except.0)],
                |r| r.get(0),
            )?;
        Ok(u(n))
    }

    /// The distinct senders of the events in `(after, up_to]`, other than `except`: the
    /// authors a member's moving marker concerns.
    /// Events of type `skip` (the hub's own group events) have no author to tell.
    pub fn authors(
        &self,
        conv: ConvId,
        after: u64,
        up_to: u64,
        except: &UserId,
        skip: PacketKind,
    ) -> Result<Vec<UserId>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT DISTINCT sender FROM events
             WHERE conv = ?1 AND seq > ?2 AND seq <= ?3 AND sender <> ?4 AND kind <> ?5 ORDER BY sender",
        )?;
        let rows = stmt.query_map(
            params![conv, i(after), i(up_to), except.as_str(), i64::from(skip.0)],
            |r| user_col(r, 0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Events still waiting in the outbox, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(ConvId, u64)>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT conv, seq FROM outbox ORDER BY conv, seq LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, u(r.get(1)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes events from the outbox once the broker has them.
    pub fn outbox_done(&self, done: &[(ConvId, u64)]) -> Result<(), StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("DELETE FROM outbox WHERE conv = ?1 AND seq = ?2")?;
        for (conv, seq) in done {
            stmt.execute(params![conv, i(*seq)])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::{ALL, setup, user};

    #[test]
    fn append_sequences_dedups_and_pages() {
        let (_dir, mut store) = setup();
        let tx = store.transaction().expect("tx");
        let conv = tx
            .direct(&user("alice"), &user("bob"), true)
            .expect("create")
            .expect("created")
            .id;
        let phone = DeviceId::parse("phone").expect("valid");
        for n in 1..=5u64 {
            let id = MessageId::new(100 + n).expect("valid");
            let seq = tx
                .append(
                    conv,
                    1000 + n,
                    &user("alice"),
                    &phone,
                    Some(id),
                    PacketKind::MESSAGE,
                    &[0xa0],
                )
                .expect("append");
            assert_eq!(seq, n);
        }
        let dup = tx
            .find_duplicate(&user("alice"), &phone, MessageId::new(103).expect("valid"))
            .expect("query");
        assert_eq!(dup.map(|e| e.seq), Some(3));
        let dup = tx.append(
            conv,
            1,
            &user("alice"),
            &phone,
            MessageId::new(103).ok(),
            PacketKind::MESSAGE,
            &[],
        );
        assert!(dup.is_err(), "the unique index refuses a second copy");
        let seqs = |(events, more): (Vec<EventRow>, bool)| {
            (events.iter().map(|e| e.seq).collect::<Vec<_>>(), more)
        };
        assert_eq!(
            seqs(tx.events(conv, Position::After(1), ALL, 2).expect("page")),
            (vec![2, 3], true)
        );
        assert_eq!(
            seqs(tx.events(conv, Position::After(3), ALL, 5).expect("page")),
            (vec![4, 5], false)
        );
        assert_eq!(
            seqs(
                tx.events(conv, Position::Before(u64::MAX), ALL, 2)
                    .expect("page")
            ),
            (vec![4, 5], true)
        );
        assert_eq!(
            seqs(tx.events(conv, Position::Before(2), ALL, 5).expect("page")),
            (vec![1], false)
        );
        assert_eq!(
            seqs(
                tx.events(conv, Position::Since(1004), ALL, 5)
                    .expect("page")
            ),
            (vec![4, 5], false)
        );
        assert_eq!(
            tx.unread(conv, &user("bob"), 2, u64::MAX >> 1, PacketKind(33))
                .expect("count"),
            3
        );
        assert_eq!(
            tx.unread(conv, &user("alice"), 0, u64::MAX >> 1, PacketKind(33))
                .expect("count"),
            0
        );
        assert_eq!(tx.outbox(10).expect("outbox").len(), 5);
        tx.outbox_done(&[(conv, 1), (conv, 2)]).expect("done");
        assert_eq!(
            tx.outbox(10).expect("outbox"),
            vec![(conv, 3), (conv, 4), (conv, 5)]
        );
    }
}
