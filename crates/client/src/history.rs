//! A conversation's history as the application asks for it (spec section 11): which events
//! ([`HistoryQuery`]) and the page the hub answers ([`HistoryPage`]), with typed positions
//! and times where the `history` packets carry numbers.

use mqchat_proto::body::{History, HistoryResult};
use mqchat_proto::{Packet, Seq, Timestamp};

/// Which events of a conversation to ask for. With `after`, the events after that position,
/// oldest first ([`Seq::NONE`] for the start); with `since`, those stored at or after that
/// time, oldest first; with `before`, or with none of them, the newest events before that
/// position (or the end). A page always lists its events oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Forward from this position (exclusive).
    pub after: Option<Seq>,
    /// Backward from this position (exclusive).
    pub before: Option<Seq>,
    /// At most this many events (the hub may return fewer).
    pub limit: Option<u64>,
    /// Forward from this time (inclusive).
    pub since: Option<Timestamp>,
}

impl From<HistoryQuery> for History {
    fn from(query: HistoryQuery) -> Self {
        Self {
            after: query.after.map(Seq::get),
            before: query.before.map(Seq::get),
            limit: query.limit,
            since: query.since.map(Timestamp::unix_ms),
        }
    }
}

/// A page of a conversation's events, in ascending sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The events, as the asking user would have received them.
    pub events: Vec<Packet>,
    /// More events exist in the direction asked.
    pub more: bool,
    /// The first position still kept (older events were removed by retention).
    pub first_seq: Option<Seq>,
    /// The conversation's last position.
    pub last_seq: Option<Seq>,
    /// Events between the position asked for and the first returned were removed by
    /// retention: no device can get them any more.
    pub truncated: bool,
}

impl From<HistoryResult> for HistoryPage {
    fn from(result: HistoryResult) -> Self {
        Self {
            events: result.events,
            more: result.more,
            first_seq: result.first_seq.map(Seq::new),
            last_seq: result.last_seq.map(Seq::new),
            truncated: result.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_travels_as_numbers() {
        let query = HistoryQuery {
            after: Some(Seq::new(4)),
            limit: Some(10),
            since: Some(Timestamp::from_unix_ms(1_000)),
            ..HistoryQuery::default()
        };
        let body = History::from(query);
        assert_eq!(
            (body.after, body.before, body.limit, body.since),
            (Some(4), None, Some(10), Some(1_000))
        );
        let page = HistoryPage::from(HistoryResult {
            first_seq: Some(2),
            last_seq: Some(9),
            ..HistoryResult::default()
        });
        assert_eq!(
            (page.first_seq, page.last_seq, page.more),
            (Some(Seq::new(2)), Some(Seq::new(9)), false)
        );
    }
}
