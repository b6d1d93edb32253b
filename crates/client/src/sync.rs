//! Which conversations changed, as the application asks the hub (spec section 11): the page
//! a [`Client::sync`](crate::Client::sync) answers ([`SyncPage`]), each conversation with
//! typed positions and times where the `sync-result` packet carries numbers. The query
//! ([`Sync`](mqchat_proto::body::Sync)) is in change tokens, which stay numbers.

use mqchat_proto::body::{ContactState, ConversationEntry, SyncResult};
use mqchat_proto::{ConversationRef, Packet, Seq, Timestamp};

/// A page of the conversations that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncPage {
    /// The conversations, in the order asked for.
    pub conversations: Vec<Conversation>,
    /// More conversations match: ask again from the last one's change token.
    pub more: bool,
    /// The hub's current change token: after listing newest first, pass it as `after`
    /// later to get what changed since.
    pub token: u64,
}

impl From<SyncResult> for SyncPage {
    fn from(result: SyncResult) -> Self {
        Self {
            conversations: result
                .conversations
                .into_iter()
                .map(Conversation::from)
                .collect(),
            more: result.more,
            token: result.token,
        }
    }
}

/// One conversation as a sync lists it: where it stands and where this user stands in it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conversation {
    /// The conversation.
    pub conv: ConversationRef,
    /// Its last position.
    pub last_seq: Seq,
    /// When its last event was stored.
    pub last_ts: Option<Timestamp>,
    /// This entry's change token: pass the greatest seen as the next query's `after`.
    pub change: u64,
    /// The last event, as the user would have received it.
    pub last: Option<Packet>,
    /// How many events from others come after the user's read marker.
    pub unread: u64,
    /// The user's delivered marker.
    pub delivered: Seq,
    /// The user's read marker.
    pub read: Seq,
    /// The peer's delivered marker (direct conversations).
    pub peer_delivered: Seq,
    /// The peer's read marker (direct conversations).
    pub peer_read: Seq,
    /// The first position still kept (older events were removed by retention).
    pub first_seq: Option<Seq>,
    /// The contact relationship (direct conversations).
    pub contact: ContactState,
    /// The user muted the conversation until then
    /// ([`Client::MUTED_FOREVER`](crate::Client::MUTED_FOREVER) for good).
    pub muted_until: Option<Timestamp>,
}

impl From<ConversationEntry> for Conversation {
    fn from(entry: ConversationEntry) -> Self {
        Self {
            conv: entry.conv,
            last_seq: Seq::new(entry.last_seq),
            last_ts: entry.last_ts.map(Timestamp::from_unix_ms),
            change: entry.change,
            last: entry.last,
            unread: entry.unread,
            delivered: Seq::new(entry.delivered),
            read: Seq::new(entry.read),
            peer_delivered: Seq::new(entry.peer_delivered),
            peer_read: Seq::new(entry.peer_read),
            first_seq: entry.first_seq.map(Seq::new),
            contact: entry.contact,
            muted_until: entry.muted_until.map(Timestamp::from_unix_ms),
        }
    }
}
