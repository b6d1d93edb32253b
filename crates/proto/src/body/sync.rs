//! Sync and history: how a device catches up, and how a device with no storage gets its
//! conversation list and pages of history from the hub.

use super::contact::CONTACT_STATES;
use super::{Body, ContactState, choice, limits, required};
use crate::error::FieldError;
use crate::identity::ConversationRef;
use crate::packet::{Fields, Packet, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const SEQ: FieldType = FieldType::Uint {
    min: 1,
    max: limits::MAX_SAFE,
};
const COUNT: FieldType = FieldType::Uint {
    min: 0,
    max: limits::MAX_SAFE,
};
const LIMIT: FieldType = FieldType::Uint {
    min: 1,
    max: limits::PAGE_ITEMS as u64,
};

const SYNC_SCHEMA: &[FieldSpec] = &[
    FieldSpec::optional(8, "after", COUNT),
    FieldSpec::optional(9, "before", COUNT),
    FieldSpec::optional(10, "limit", LIMIT),
    FieldSpec::optional(11, "newest-first", FieldType::Bool),
];

fn check_sync(packet: &Packet) -> Result<(), FieldError> {
    let body = packet.body();
    let newest_first = body.bool(11)?.unwrap_or(false);
    if newest_first && body.contains(8) {
        return Err(FieldError::new(
            8,
            "after",
            "not allowed with newest-first (use before)",
        ));
    }
    if !newest_first && body.contains(9) {
        return Err(FieldError::new(
            9,
            "before",
            "only allowed with newest-first (use after)",
        ));
    }
    Ok(())
}

pub(super) const SYNC: SchemaProvider = SchemaProvider {
    kind: PacketKind::SYNC,
    name: "sync",
    routing: Routing::Request,
    schema: SYNC_SCHEMA,
    check: Some(check_sync),
};

const ENTRY_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(2, "conv", FieldType::Conv),
    FieldSpec::optional(3, "last-seq", COUNT),
    FieldSpec::optional(4, "last-ts", COUNT),
    FieldSpec::required(8, "change", COUNT),
    FieldSpec::optional(9, "last", FieldType::Packet),
    FieldSpec::optional(10, "unread", COUNT),
    FieldSpec::optional(11, "delivered", COUNT),
    FieldSpec::optional(12, "read", COUNT),
    FieldSpec::optional(13, "peer-delivered", COUNT),
    FieldSpec::optional(14, "peer-read", COUNT),
    FieldSpec::optional(15, "first-seq", COUNT),
    FieldSpec::optional(16, "contact", FieldType::Choice(CONTACT_STATES)),
    FieldSpec::optional(17, "muted-until", COUNT),
];

const SYNC_RESULT_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(
        8,
        "conversations",
        FieldType::Maps {
            schema: ENTRY_SCHEMA,
            max_items: limits::PAGE_ITEMS,
        },
    ),
    FieldSpec::optional(9, "more", FieldType::Bool),
    FieldSpec::required(10, "token", COUNT),
];

pub(super) const SYNC_RESULT: SchemaProvider = SchemaProvider {
    kind: PacketKind::SYNC_RESULT,
    name: "sync-result",
    routing: Routing::Reply,
    schema: SYNC_RESULT_SCHEMA,
    check: None,
};

/// Asks which conversations changed: after a change token, oldest change first (a device
/// catching up), or newest first (a device with no storage listing its conversations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sync {
    /// Only conversations whose change token is greater (oldest-first mode).
    pub after: Option<u64>,
    /// Only conversations whose change token is smaller (newest-first mode).
    pub before: Option<u64>,
    /// At most this many conversations (the hub may return fewer).
    pub limit: Option<u64>,
    /// Newest change first.
    pub newest_first: bool,
}

impl Body for Sync {
    const KIND: PacketKind = PacketKind::SYNC;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            after: f.uint(8)?,
            before: f.uint(9)?,
            limit: f.uint(10)?,
            newest_first: f.bool(11)?.unwrap_or(false),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        set_opt(&mut f, 8, self.after);
        set_opt(&mut f, 9, self.before);
        set_opt(&mut f, 10, self.limit);
        if self.newest_first {
            f.set_bool(11, true);
        }
        f
    }
}

fn set_opt(f: &mut Fields, key: u32, value: Option<u64>) {
    if let Some(v) = value {
        f.set_uint(key, v);
    }
}

fn set_nonzero(f: &mut Fields, key: u32, value: u64) {
    if value != 0 {
        f.set_uint(key, value);
    }
}

/// One conversation in a sync result, as the asking user sees it. Zero means "none" for
/// sequence numbers and markers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationEntry {
    /// The conversation.
    pub conv: ConversationRef,
    /// The last sequence number in it.
    pub last_seq: u64,
    /// When the last event was stored (ms since the Unix epoch).
    pub last_ts: Option<u64>,
    /// The change token of this entry: pass the greatest seen as the next `after`.
    pub change: u64,
    /// The last event, as the user would have received it.
    pub last: Option<Packet>,
    /// Events from others after the user's read marker.
    pub unread: u64,
    /// The user's delivered marker.
    pub delivered: u64,
    /// The user's read marker.
    pub read: u64,
    /// The peer's delivered marker (direct conversations).
    pub peer_delivered: u64,
    /// The peer's read marker (direct conversations).
    pub peer_read: u64,
    /// The first sequence number still kept (older ones were removed by retention).
    pub first_seq: Option<u64>,
    /// The contact relationship (direct conversations).
    pub contact: ContactState,
    /// The user muted the conversation until this time (ms; see `MUTED_FOREVER`).
    pub muted_until: Option<u64>,
}

impl ConversationEntry {
    /// An entry with no events, markers or relationship.
    pub fn new(conv: ConversationRef, change: u64) -> Self {
        Self {
            conv,
            last_seq: 0,
            last_ts: None,
            change,
            last: None,
            unread: 0,
            delivered: 0,
            read: 0,
            peer_delivered: 0,
            peer_read: 0,
            first_seq: None,
            contact: ContactState::None,
            muted_until: None,
        }
    }

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let conv = required(f.text(2), 2, "conv")?;
        let conv =
            ConversationRef::parse(conv).map_err(|e| FieldError::new(2, "conv", e.to_string()))?;
        let last = match f.raw(9) {
            Some(raw) => {
                Some(Packet::decode(raw).map_err(|e| FieldError::new(9, "last", e.to_string()))?)
            }
            None => None,
        };
        let contact = choice(f, 16, "contact", CONTACT_STATES.len())?
            .map_or(ContactState::None, ContactState::from_index);
        Ok(Self {
            conv,
            last_seq: f.uint(3)?.unwrap_or(0),
            last_ts: f.uint(4)?,
            change: required(f.uint(8), 8, "change")?,
            last,
            unread: f.uint(10)?.unwrap_or(0),
            delivered: f.uint(11)?.unwrap_or(0),
            read: f.uint(12)?.unwrap_or(0),
            peer_delivered: f.uint(13)?.unwrap_or(0),
            peer_read: f.uint(14)?.unwrap_or(0),
            first_seq: f.uint(15)?,
            contact,
            muted_until: f.uint(17)?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(2, &self.conv.to_string());
        set_nonzero(&mut f, 3, self.last_seq);
        set_opt(&mut f, 4, self.last_ts);
        f.set_uint(8, self.change);
        if let Some(last) = &self.last {
            // An encoded packet is one well-formed item.
            let _ = f.insert_raw(9, last.encode());
        }
        set_nonzero(&mut f, 10, self.unread);
        set_nonzero(&mut f, 11, self.delivered);
        set_nonzero(&mut f, 12, self.read);
        set_nonzero(&mut f, 13, self.peer_delivered);
        set_nonzero(&mut f, 14, self.peer_read);
        set_opt(&mut f, 15, self.first_seq);
        if self.contact != ContactState::None {
            f.set_uint(16, self.contact as u64);
        }
        set_opt(&mut f, 17, self.muted_until);
        f
    }
}

/// The answer to a [`Sync`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncResult {
    /// The conversations, in the order asked for.
    pub conversations: Vec<ConversationEntry>,
    /// More conversations match: ask again from the last entry's change token.
    pub more: bool,
    /// The hub's current change token: after listing newest-first, pass it as `after` later
    /// to get what changed since.
    pub token: u64,
}

impl Body for SyncResult {
    const KIND: PacketKind = PacketKind::SYNC_RESULT;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let conversations = required(f.maps(8), 8, "conversations")?
            .into_iter()
            .map(|raw| {
                let nested = Fields::decode(raw)
                    .map_err(|e| FieldError::new(8, "conversations", e.to_string()))?;
                ConversationEntry::from_fields(&nested)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conversations,
            more: f.bool(9)?.unwrap_or(false),
            token: required(f.uint(10), 10, "token")?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_maps(
            8,
            self.conversations
                .iter()
                .map(|c| c.to_fields().encode())
                .collect::<Vec<_>>()
                .into_iter(),
        );
        if self.more {
            f.set_bool(9, true);
        }
        f.set_uint(10, self.token);
        f
    }
}

const HISTORY_SCHEMA: &[FieldSpec] = &[
    FieldSpec::optional(8, "after", COUNT),
    FieldSpec::optional(9, "before", SEQ),
    FieldSpec::optional(10, "limit", LIMIT),
    FieldSpec::optional(11, "since", COUNT),
];

fn check_history(packet: &Packet) -> Result<(), FieldError> {
    if packet.conv.is_none() {
        return Err(FieldError::new(
            2,
            "conv",
            "a history request needs a conversation",
        ));
    }
    let body = packet.body();
    if [8, 9, 11].iter().filter(|k| body.contains(**k)).count() > 1 {
        return Err(FieldError::new(
            8,
            "after",
            "give at most one of after, before and since",
        ));
    }
    Ok(())
}

pub(super) const HISTORY: SchemaProvider = SchemaProvider {
    kind: PacketKind::HISTORY,
    name: "history",
    routing: Routing::Request,
    schema: HISTORY_SCHEMA,
    check: Some(check_history),
};

const HISTORY_RESULT_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(
        8,
        "events",
        FieldType::Packets {
            max_items: limits::PAGE_ITEMS,
        },
    ),
    FieldSpec::optional(9, "more", FieldType::Bool),
    FieldSpec::optional(10, "first-seq", COUNT),
    FieldSpec::optional(11, "last-seq", COUNT),
    FieldSpec::optional(12, "truncated", FieldType::Bool),
];

pub(super) const HISTORY_RESULT: SchemaProvider = SchemaProvider {
    kind: PacketKind::HISTORY_RESULT,
    name: "history-result",
    routing: Routing::Reply,
    schema: HISTORY_RESULT_SCHEMA,
    check: None,
};

/// Asks for a page of one conversation's events (the envelope's `conv`). With `after`,
/// events after that sequence number, oldest first; with `since`, events stored at or after
/// that time, oldest first; with `before`, or with none of them, the newest events before
/// that sequence number (or the end), returned oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct History {
    /// Forward from this sequence number (exclusive); 0 means from the start.
    pub after: Option<u64>,
    /// Backward from this sequence number (exclusive).
    pub before: Option<u64>,
    /// At most this many events.
    pub limit: Option<u64>,
    /// Forward from this time (ms since the Unix epoch, inclusive).
    pub since: Option<u64>,
}

impl Body for History {
    const KIND: PacketKind = PacketKind::HISTORY;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            after: f.uint(8)?,
            before: f.uint(9)?,
            limit: f.uint(10)?,
            since: f.uint(11)?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        set_opt(&mut f, 8, self.after);
        set_opt(&mut f, 9, self.before);
        set_opt(&mut f, 10, self.limit);
        set_opt(&mut f, 11, self.since);
        f
    }
}

/// A page of events, always in ascending sequence order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HistoryResult {
    /// The events, as the asking user would have received them.
    pub events: Vec<Packet>,
    /// More events exist in the direction asked.
    pub more: bool,
    /// The first sequence number still kept.
    pub first_seq: Option<u64>,
    /// The last sequence number of the conversation.
    pub last_seq: Option<u64>,
    /// Events between the requested position and the first returned were removed by
    /// retention: the device cannot get them any more.
    pub truncated: bool,
}

impl Body for HistoryResult {
    const KIND: PacketKind = PacketKind::HISTORY_RESULT;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let events = required(f.maps(8), 8, "events")?
            .into_iter()
            .map(|raw| Packet::decode(raw).map_err(|e| FieldError::new(8, "events", e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            events,
            more: f.bool(9)?.unwrap_or(false),
            first_seq: f.uint(10)?,
            last_seq: f.uint(11)?,
            truncated: f.bool(12)?.unwrap_or(false),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_maps(
            8,
            self.events
                .iter()
                .map(Packet::encode)
                .collect::<Vec<_>>()
                .into_iter(),
        );
        if self.more {
            f.set_bool(9, true);
        }
        set_opt(&mut f, 10, self.first_seq);
        set_opt(&mut f, 11, self.last_seq);
        if self.truncated {
            f.set_bool(12, true);
        }
        f
    }
}
