//! Where a device stands with the hub, for an application with storage to keep across
//! restarts ([`SyncState`]).

use std::collections::BTreeMap;

use mqchat_proto::{ConversationRef, MessageId, Seq, Timestamp};

/// Where a device stands: what it must keep to catch up after a restart (spec sections 11
/// and 13) instead of starting afresh.
///
/// [`Client::close`](crate::Client::close) returns it and
/// [`Client::sync_state`](crate::Client::sync_state) reads it at any time; store it, and
/// pass it to [`ClientConfig::resume`](crate::ClientConfig::resume) when the device connects
/// again. The first connection then syncs after `token` and fetches what each conversation
/// misses after its position, whatever the broker kept, lost or dropped meanwhile.
///
/// An application may also build one from its own storage ([`SyncState::new`], then set the
/// fields): a position is the highest sequence number it holds contiguously in a
/// conversation. The one value it cannot know by itself is `token`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncState {
    /// The hub's change token: every change up to it is covered by `positions`.
    pub token: Option<u64>,
    /// Per conversation, the highest sequence number held contiguously.
    pub positions: BTreeMap<ConversationRef, Seq>,
    /// The latest hub time seen on an event: conversations that begin while the device is
    /// away are fetched from there.
    pub hub_time: Option<Timestamp>,
    /// The last message id this device made: ids must never go back (spec section 6).
    pub last_id: Option<MessageId>,
}

impl SyncState {
    /// A device that knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}
