//! The archive and conversation state, used by the hub inside one write transaction per
//! batch of upstream packets (group commit).
//!
//! Every change a user should sync bumps the hub-wide change counter and stamps the user's
//! participant row with it (see the spec, section 11). Events are appended with the next
//! sequence number of their conversation and recorded in the outbox until the hub has
//! handed them to the broker.

use mqchat_proto::body::{ContactState, Role};
use mqchat_proto::{DeviceId, GroupId, MessageId, PacketKind, SipAddress, UserId};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::{DeviceRecord, StoreError};

/// A conversation's row id.
pub type ConvId = i64;

pub(crate) const CONTACT_ACCEPTED: i64 = 3;

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

    fn parse(text: &str) -> Result<Self, mqchat_proto::IdentityError> {
        if text.starts_with("sip:") {
            SipAddress::parse(text).map(Self::Sip)
        } else {
            UserId::parse(text).map(Self::User)
        }
    }
}

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

/// A user's profile.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProfileRow {
    /// Display name.
    pub name: Option<String>,
    /// Avatar reference.
    pub avatar: Option<String>,
    /// Status text.
    pub status: Option<String>,
    /// Version (0: never set).
    pub version: u64,
    /// When it was last changed.
    pub ts: Option<u64>,
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

/// A write transaction.
#[derive(Debug)]
pub struct Tx<'c> {
    tx: Transaction<'c>,
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn user_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<UserId> {
    let text: String = row.get(idx)?;
    UserId::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn contact_state(v: i64) -> ContactState {
    match v {
        1 => ContactState::Outgoing,
        2 => ContactState::Incoming,
        3 => ContactState::Accepted,
        _ => ContactState::None,
    }
}

const PARTICIPANT_COLS: &str = "p.user_id, p.peer, p.delivered, p.read, p.contact, p.change, p.role, p.state, p.since_seq, p.until_seq, p.muted_until";
const PARTICIPANT_N: usize = 11;
const CONVERSATION_COLS: &str = "c.id, c.last_seq, c.last_ts, c.first_seq, c.group_id, c.deleted, c.history_all, c.sip, c.sip_delivered";
pub(crate) const CONVERSATION_N: usize = 9;
const EVENT_COLS: &str = "conv, seq, ts, sender, sender_device, client_id, kind, packet";

fn participant(row: &Row<'_>, at: usize) -> rusqlite::Result<ParticipantRow> {
    let peer: Option<String> = row.get(at + 1)?;
    Ok(ParticipantRow {
        user: user_col(row, at)?,
        peer: peer.and_then(|p| UserId::parse(&p).ok()),
        delivered: u(row.get(at + 2)?),
        read: u(row.get(at + 3)?),
        contact: contact_state(row.get(at + 4)?),
        change: u(row.get(at + 5)?),
        role: Role::from_index(usize::try_from(row.get::<_, i64>(at + 6)?).unwrap_or(0)),
        state: match row.get::<_, i64>(at + 7)? {
            1 => Membership::Invited,
            2 => Membership::Former,
            _ => Membership::Member,
        },
        since: u(row.get(at + 8)?),
        until: row.get::<_, Option<i64>>(at + 9)?.map(u),
        muted_until: u(row.get(at + 10)?),
    })
}

fn conversation(row: &Row<'_>, at: usize) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: row.get(at)?,
        last_seq: u(row.get(at + 1)?),
        last_ts: row.get::<_, Option<i64>>(at + 2)?.map(u),
        first_seq: u(row.get(at + 3)?),
        group: row
            .get::<_, Option<String>>(at + 4)?
            .and_then(|g| GroupId::parse(&g).ok()),
        deleted: row.get(at + 5)?,
        history_all: row.get(at + 6)?,
        sip: row
            .get::<_, Option<String>>(at + 7)?
            .and_then(|a| SipAddress::parse(&a).ok()),
        sip_delivered: u(row.get(at + 8)?),
    })
}

fn event(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    let device: String = row.get(4)?;
    let bad = |idx, e: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    };
    Ok(EventRow {
        conv: row.get(0)?,
        seq: u(row.get(1)?),
        ts: u(row.get(2)?),
        sender: {
            let text: String = row.get(3)?;
            Author::parse(&text).map_err(|e| bad(3, e.to_string()))?
        },
        sender_device: DeviceId::parse(&device).map_err(|e| bad(4, e.to_string()))?,
        client_id: row
            .get::<_, Option<i64>>(5)?
            .map(|id| MessageId::new(u(id)).map_err(|e| bad(5, e.to_string())))
            .transpose()?,
        kind: PacketKind(u32::try_from(row.get::<_, i64>(6)?).unwrap_or(0)),
        packet: row.get(7)?,
    })
}

impl<'c> Tx<'c> {
    pub(crate) fn begin(conn: &'c mut Connection) -> Result<Self, StoreError> {
        Ok(Self {
            tx: conn.transaction_with_behavior(TransactionBehavior::Immediate)?,
        })
    }

    /// A user's devices that may connect, by id.
    pub fn active_devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut all = crate::account::list_devices(&self.tx, user)?;
        all.retain(|d| d.revoked_at.is_none());
        Ok(all)
    }

    /// Revokes one of a user's devices. False if it is unknown or revoked already.
    pub fn revoke_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: u64,
    ) -> Result<bool, StoreError> {
        crate::account::revoke(&self.tx, user, device, now)
    }

    /// The transaction's connection, for the other modules of this crate.
    pub(crate) fn conn(&self) -> &Connection {
        &self.tx
    }

    /// Commits everything done in the transaction.
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit()?;
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

    /// Whether a user exists (and is enabled, when `active_only`).
    pub fn user_exists(&self, user: &UserId, active_only: bool) -> Result<bool, StoreError> {
        let disabled: Option<bool> = self
            .tx
            .prepare_cached("SELECT disabled FROM users WHERE id = ?1")?
            .query_row([user.as_str()], |r| r.get(0))
            .optional()?;
        Ok(matches!(disabled, Some(d) if !(d && active_only)))
    }

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
        self.touch(conv)?;
        Ok(u(seq))
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

    /// A user's profile.
    pub fn profile(&self, user: &UserId) -> Result<ProfileRow, StoreError> {
        let row = self
            .tx
            .prepare_cached(
                "SELECT profile_name, profile_avatar, profile_status, profile_version, profile_ts FROM users WHERE id = ?1",
            )?
            .query_row([user.as_str()], |r| {
                Ok(ProfileRow {
                    name: r.get(0)?,
                    avatar: r.get(1)?,
                    status: r.get(2)?,
                    version: u(r.get(3)?),
                    ts: r.get::<_, Option<i64>>(4)?.map(u),
                })
            })
            .optional()?;
        row.ok_or_else(|| StoreError::NotFound(format!("user {user}")))
    }

    /// Stores a profile (the caller has merged the change), with the next version.
    pub fn set_profile(&self, user: &UserId, profile: &ProfileRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE users SET profile_name = ?2, profile_avatar = ?3, profile_status = ?4, profile_version = ?5,
                 profile_ts = ?6 WHERE id = ?1",
            )?
            .execute(params![
                user.as_str(),
                profile.name,
                profile.avatar,
                profile.status,
                i(profile.version),
                profile.ts.map(i)
            ])?;
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
    use crate::test_store;

    const ALL: (u64, u64) = (0, u64::MAX >> 1);

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid")
    }

    fn setup() -> (tempfile::TempDir, crate::Store) {
        let (dir, mut store) = test_store();
        for name in ["alice", "bob"] {
            store.add_user(&user(name), None, 1).expect("add");
        }
        (dir, store)
    }

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

    #[test]
    fn profiles_and_contacts() {
        let (_dir, mut store) = setup();
        let tx = store.transaction().expect("tx");
        assert_eq!(tx.profile(&user("alice")).expect("profile").version, 0);
        let p = ProfileRow {
            name: Some("Alice".into()),
            version: 1,
            ts: Some(9),
            ..ProfileRow::default()
        };
        tx.set_profile(&user("alice"), &p).expect("set");
        assert_eq!(tx.profile(&user("alice")).expect("profile"), p);
        let conv = tx
            .direct(&user("alice"), &user("bob"), true)
            .expect("create")
            .expect("created")
            .id;
        tx.set_contact(conv, &user("alice"), ContactState::Accepted)
            .expect("set");
        tx.set_contact(conv, &user("bob"), ContactState::Accepted)
            .expect("set");
        tx.commit().expect("commit");
        assert!(
            store
                .may_see_presence(&user("bob"), &user("alice"))
                .expect("query")
        );
        assert!(
            store
                .may_see_presence(&user("alice"), &user("alice"))
                .expect("query")
        );
    }

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
