//! How the archive's rows read: the column lists of each table, the conversions between
//! SQLite's signed integers and the protocol's unsigned ones, and a row's fields parsed
//! into the typed records the rest of the crate uses.

use mqchat_proto::body::{ContactState, Role};
use mqchat_proto::{DeviceId, GroupId, MessageId, PacketKind, SipAddress, UserId};
use rusqlite::Row;

use super::{Author, ConversationRow, EventRow, Membership, ParticipantRow};

/// The stored contact state of two users who accepted each other.
pub(crate) const CONTACT_ACCEPTED: i64 = 3;

/// A stored integer as the protocol's unsigned one (SQLite's are signed; none stored is
/// negative).
pub(super) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A protocol integer as SQLite's signed one, saturating (sequence numbers and times stay
/// far below it).
pub(super) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn user_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<UserId> {
    let text: String = row.get(idx)?;
    UserId::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn contact_state(v: i64) -> ContactState {
    match v {
        1 => ContactState::Outgoing,
        2 => ContactState::Incoming,
        3 => ContactState::Accepted,
        _ => ContactState::None,
    }
}

pub(super) const PARTICIPANT_COLS: &str = "p.user_id, p.peer, p.delivered, p.read, p.contact, p.change, p.role, p.state, p.since_seq, p.until_seq, p.muted_until";
pub(super) const PARTICIPANT_N: usize = 11;
pub(super) const CONVERSATION_COLS: &str = "c.id, c.last_seq, c.last_ts, c.first_seq, c.group_id, c.deleted, c.history_all, c.sip, c.sip_delivered";
pub(super) const CONVERSATION_N: usize = 9;
pub(super) const EVENT_COLS: &str = "conv, seq, ts, sender, sender_device, client_id, kind, packet";

pub(super) fn participant(row: &Row<'_>, at: usize) -> rusqlite::Result<ParticipantRow> {
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

pub(super) fn conversation(row: &Row<'_>, at: usize) -> rusqlite::Result<ConversationRow> {
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

pub(super) fn event(row: &Row<'_>) -> rusqlite::Result<EventRow> {
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
