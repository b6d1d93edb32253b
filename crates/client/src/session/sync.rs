//! Catching up with the hub (spec sections 11 and 13): the change token to sync from, what
//! a sync after a reconnect says is missing, and the history requests that fetch it, for a
//! reconnect and for gaps in live traffic alike.

use mqchat_proto::ConversationRef;
use mqchat_proto::body::{Body, History, HistoryResult, Sync, SyncResult};

use super::pending::Expect;
use super::{Now, Session};

/// Events fetched per history request.
const FILL_PAGE: u64 = 100;

/// How far (in milliseconds) before its first connection a device looks for conversations
/// it did not know, when it has only its own clock to go by (which may be ahead of the
/// hub's).
const CLOCK_SLACK_MS: u64 = 300_000;

impl Session {
    fn catch_up_pending(&self) -> bool {
        self.pending
            .unconfirmed()
            .any(|(_, e)| matches!(e.expect, Expect::Baseline | Expect::CatchUp))
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
                let query = Sync {
                    after: Some(after),
                    ..Sync::default()
                };
                self.request(query.to_packet(), Expect::CatchUp, now);
            }
            None => self.request_baseline(now),
        }
    }

    /// A page of what changed: fetches the events missing from each conversation, and asks
    /// for the next page or keeps the token to sync from next time.
    pub(super) fn catch_up_page(&mut self, result: SyncResult, now: Now) {
        for entry in &result.conversations {
            if self.timelines.knows(&entry.conv) {
                if let Some(after) = self.timelines.catch_up(&entry.conv, entry.last_seq) {
                    self.fetch(entry.conv.clone(), after, now);
                }
            } else if entry.last_seq > 0 {
                // A conversation the device has not seen: no position to fetch after, so it
                // fetches what was stored since the device last heard from the hub.
                let since = match (self.last_hub_ts, self.first_connected_ms) {
                    (Some(ts), _) => ts,
                    (None, Some(ms)) => ms.saturating_sub(CLOCK_SLACK_MS),
                    (None, None) => 0,
                };
                self.timelines.begin_fetch(&entry.conv);
                let query = History {
                    since: Some(since),
                    limit: Some(FILL_PAGE),
                    ..History::default()
                };
                self.request_fill(entry.conv.clone(), query, now);
            }
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
        if let Some(after) = fill.fetch_after {
            self.fetch(conv, after, now);
        }
    }
}
