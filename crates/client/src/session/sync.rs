//! Catching up with the hub (spec sections 11 and 13): the change token to sync from, what
//! a sync after a reconnect says is missing, and the history requests that fetch it, for a
//! reconnect and for gaps in live traffic alike. The markers a sync result reports are told
//! when they moved.
//!
//! These requests are the session's own and nothing is given up on a timeout or a
//! temporary refusal: they are asked again, since giving up a gap would lose events.

use std::time::Duration;

use mqchat_proto::body::{Body, ConversationEntry, History, HistoryResult, Sync, SyncResult};
use mqchat_proto::{ConversationRef, MessageId, Packet};

use super::markers::Kind;
use super::pending::{Entry, Expect};
use super::{Now, Qos, Session};
use crate::event::Party;

/// Events fetched per history request.
const FILL_PAGE: u64 = 100;

/// How far (in milliseconds) before its first connection a device looks for conversations
/// it did not know, when it has only its own clock to go by (which may be ahead of the
/// hub's).
const CLOCK_SLACK_MS: u64 = 300_000;

/// How long to wait before asking again when the hub could not answer (`internal`,
/// `rate-limited`).
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The longest a packet refused as `rate-limited` waits before it goes again.
const MAX_HOLD: Duration = Duration::from_secs(60);

impl Session {
    fn catch_up_pending(&self) -> bool {
        self.pending
            .unconfirmed()
            .any(|(_, e)| matches!(e.expect, Expect::Baseline | Expect::CatchUp))
    }

    /// Whether a catch-up after a reconnect is under way.
    pub(super) fn catching_up(&self) -> bool {
        self.pending
            .unconfirmed()
            .any(|(_, e)| e.expect == Expect::CatchUp)
    }

    /// Asks again what one of the session's own requests asked, under a new id (a late
    /// answer to the old one is then ignored).
    pub(super) fn retry(&mut self, entry: Entry, now: Now) {
        match Packet::decode(&entry.payload) {
            Ok(packet) => {
                self.request(packet, entry.expect, now);
            }
            // The session encoded it: this cannot fail.
            Err(e) => tracing::error!("cannot decode a request to ask again: {e}"),
        }
    }

    /// Holds a conversation event or group change the hub refused as `rate-limited`: it
    /// waits, unsent, and goes again with the same id (the hub deduplicates) after a delay
    /// that doubles with each refusal in a row, from [`RETRY_DELAY`] up to
    /// [`MAX_HOLD`]. The application keeps waiting for its answer.
    pub(super) fn hold(&mut self, id: MessageId, entry: Entry, now: Now) {
        let held = entry.held.saturating_add(1);
        let delay = RETRY_DELAY
            .saturating_mul(1 << (held - 1).min(6))
            .min(MAX_HOLD);
        tracing::debug!(%id, held, ?delay, "the hub limits this device's rate; sending again later");
        self.pending.insert(
            id,
            Entry {
                deadline: Some(now.at + delay),
                held,
                ..entry
            },
        );
    }

    /// Sends a held packet again (or leaves it for the resend after the next connection).
    pub(super) fn send_again(&mut self, id: MessageId, entry: Entry) {
        let payload = entry.payload.clone();
        self.pending.insert(
            id,
            Entry {
                deadline: None,
                ..entry
            },
        );
        if self.connected {
            self.publish_upstream(payload, Qos::AtLeastOnce);
        }
    }

    /// Asks again after [`RETRY_DELAY`]: the request waits, unsent, until its deadline,
    /// when [`Session::handle_timeout`] retries it (or until a reconnect resends it).
    pub(super) fn retry_later(&mut self, entry: Entry, now: Now) {
        let Ok(packet) = Packet::decode(&entry.payload) else {
            return;
        };
        let Some(id) = packet.id else { return };
        self.pending.insert(
            id,
            Entry {
                deadline: Some(now.at + RETRY_DELAY),
                ..entry
            },
        );
    }

    /// Promotes the token to the one kept across restarts once nothing it covers is still
    /// being fetched.
    pub(super) fn settle(&mut self) {
        let fetching = self.pending.unconfirmed().any(|(_, e)| {
            matches!(
                e.expect,
                Expect::Baseline | Expect::CatchUp | Expect::Fill { .. }
            )
        });
        if !fetching {
            self.settled = self.token;
        }
    }

    /// From when to fetch a conversation the device did not know: the last hub time it saw,
    /// or by its own clock, a while before its first connection.
    fn since_bound(&self) -> u64 {
        match (self.last_hub_ts, self.first_connected_ms) {
            (Some(ts), _) => ts,
            (None, Some(ms)) => ms.saturating_sub(CLOCK_SLACK_MS),
            (None, None) => 0,
        }
    }

    /// Asks for the hub's current change token, the point to catch up from later.
    pub(super) fn request_baseline(&mut self, now: Now) {
        if self.catch_up_pending() {
            return;
        }
        let query = Sync {
            limit: Some(1),
            newest_first: true,
            ..Sync::default()
        };
        self.request(query.to_packet(), Expect::Baseline, now);
    }

    /// Asks what changed after the saved token.
    pub(super) fn start_catch_up(&mut self, now: Now) {
        if !self.catch_up || self.catch_up_pending() {
            return;
        }
        match self.token {
            Some(after) => {
                if self.catch_up_since.is_none() {
                    self.catch_up_since = Some(self.since_bound());
                }
                let query = Sync {
                    after: Some(after),
                    ..Sync::default()
                };
                self.request(query.to_packet(), Expect::CatchUp, now);
            }
            None => self.request_baseline(now),
        }
    }

    /// A page of what changed: fetches the events missing from each conversation, tells the
    /// markers that moved, and asks for the next page or keeps the token to sync from next
    /// time.
    pub(super) fn catch_up_page(&mut self, result: SyncResult, now: Now) {
        for entry in &result.conversations {
            if self.timelines.positioned(&entry.conv) {
                if let Some(after) = self.timelines.catch_up(&entry.conv, entry.last_seq) {
                    self.fetch(entry.conv.clone(), after, now);
                }
            } else if entry.last_seq > 0 {
                // A conversation the device has not seen: no position to fetch after, so it
                // fetches what was stored since the device last heard from the hub.
                let since = self.catch_up_since.unwrap_or_else(|| self.since_bound());
                self.timelines.begin_fetch(&entry.conv, entry.last_seq);
                let query = History {
                    since: Some(since),
                    limit: Some(FILL_PAGE),
                    ..History::default()
                };
                self.request_fill(entry.conv.clone(), query, now);
            }
            self.sync_markers(entry);
        }
        let last_change = result.conversations.last().map(|c| c.change);
        if result.more {
            self.token = last_change.or(self.token);
            self.start_catch_up(now);
        } else {
            self.token = [self.token, last_change, Some(result.token)]
                .into_iter()
                .flatten()
                .max();
            self.end_catch_up(now);
        }
    }

    /// The catch-up is over: conversations it did not place start with their live events.
    pub(super) fn end_catch_up(&mut self, now: Now) {
        self.catch_up_since = None;
        for (conv, fill) in self.timelines.end_catch_up() {
            self.deliver_events(&conv, fill.deliver, now);
            match fill.fetch_after {
                Some(after) => self.fetch(conv, after, now),
                None => self.release_markers(&conv),
            }
        }
        self.settle();
    }

    /// Tells the markers of a sync entry that moved: the user's own `read` (made on another
    /// device) and the peer's `delivered` and `read` of a direct conversation.
    fn sync_markers(&mut self, entry: &ConversationEntry) {
        let me = self.me.user.clone();
        if entry.read > 0 {
            self.tell_marker(
                &entry.conv,
                &Party::User(me.clone()),
                Kind::Read,
                entry.read,
            );
        }
        let peer = match &entry.conv {
            ConversationRef::Direct(peer) if *peer != me => Some(Party::User(peer.clone())),
            ConversationRef::Sip(address) => Some(Party::Sip(address.clone())),
            _ => None,
        };
        if let Some(peer) = peer {
            if entry.peer_read > 0 {
                self.tell_marker(&entry.conv, &peer, Kind::Read, entry.peer_read);
            }
            if entry.peer_delivered > 0 {
                self.tell_marker(&entry.conv, &peer, Kind::Delivered, entry.peer_delivered);
            }
        }
    }

    /// Requests history after `after` to fill a gap in `conv`.
    pub(super) fn fetch(&mut self, conv: ConversationRef, after: u64, now: Now) {
        let query = History {
            after: Some(after),
            limit: Some(FILL_PAGE),
            ..History::default()
        };
        self.request_fill(conv, query, now);
    }

    fn request_fill(&mut self, conv: ConversationRef, query: History, now: Now) {
        let mut packet = query.to_packet();
        packet.conv = Some(conv.clone());
        self.request(packet, Expect::Fill { conv }, now);
    }

    /// A page of history for a gap (or an unknown conversation) arrived.
    pub(super) fn filled(&mut self, conv: ConversationRef, result: HistoryResult, now: Now) {
        let fill = self
            .timelines
            .fill(&conv, result.events, result.more, result.first_seq);
        self.deliver_events(&conv, fill.deliver, now);
        match fill.fetch_after {
            Some(after) => self.fetch(conv, after, now),
            None => {
                self.release_markers(&conv);
                self.settle();
            }
        }
    }
}
