//! Delivered and read markers the device owes the hub (spec section 9).
//!
//! Markers are cumulative, so only the highest value per conversation matters. A `delivered`
//! marker after received events waits a short delay to cover a burst with one packet; markers
//! the application asks for go out at once, or at the next connection while offline. A `read`
//! marker raises `delivered` too, so a lower `delivered` is not sent after it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use mqchat_proto::{ConversationRef, Moment};

/// A marker to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Everything up to `up_to` reached a device of this user.
    Delivered {
        /// The conversation.
        conv: ConversationRef,
        /// The highest sequence number covered.
        up_to: u64,
    },
    /// The user saw everything up to `up_to`.
    Read {
        /// The conversation.
        conv: ConversationRef,
        /// The highest sequence number covered.
        up_to: u64,
        /// Tell only the user's own devices.
        private: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Due {
    up_to: u64,
    at: Moment,
}

/// The markers owed, and the highest `delivered` value already sent per conversation.
#[derive(Debug)]
pub(crate) struct Receipts {
    delay: Duration,
    sent: HashMap<ConversationRef, u64>,
    delivered: BTreeMap<ConversationRef, Due>,
    read: BTreeMap<ConversationRef, (u64, bool)>,
}

impl Receipts {
    /// Owes nothing; automatic `delivered` markers wait `delay` for more events.
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            sent: HashMap::new(),
            delivered: BTreeMap::new(),
            read: BTreeMap::new(),
        }
    }

    fn owe_delivered(&mut self, conv: &ConversationRef, up_to: u64, at: Moment) {
        let due = self
            .delivered
            .entry(conv.clone())
            .or_insert(Due { up_to, at });
        due.up_to = due.up_to.max(up_to);
        due.at = due.at.min(at);
    }

    /// Events from others up to `up_to` were received at `now`: owe a `delivered` after
    /// the delay (not pushed back by later events, so a steady stream still gets markers).
    pub fn received(&mut self, conv: &ConversationRef, up_to: u64, now: Moment) {
        self.owe_delivered(conv, up_to, now + self.delay);
    }

    /// The application marks `conv` delivered up to `up_to`: owe it now.
    pub fn mark_delivered(&mut self, conv: &ConversationRef, up_to: u64, now: Moment) {
        self.owe_delivered(conv, up_to, now);
    }

    /// The application marks `conv` read up to `up_to`: owe it now.
    pub fn mark_read(&mut self, conv: &ConversationRef, up_to: u64, private: bool) {
        let read = self.read.entry(conv.clone()).or_insert((up_to, private));
        if up_to >= read.0 {
            *read = (up_to, private);
        }
    }

    /// Takes the markers to publish at `now`: every `read`, and each `delivered` whose delay
    /// is over and that is above what was already sent.
    pub fn take(&mut self, now: Moment) -> Vec<Marker> {
        self.take_where(|due| due.at <= now)
    }

    /// Takes every marker owed, delayed or not (the device is closing).
    pub fn take_all(&mut self) -> Vec<Marker> {
        self.take_where(|_| true)
    }

    fn take_where(&mut self, ready: impl Fn(&Due) -> bool) -> Vec<Marker> {
        let mut out = Vec::new();
        for (conv, (up_to, private)) in std::mem::take(&mut self.read) {
            let sent = self.sent.entry(conv.clone()).or_default();
            *sent = (*sent).max(up_to);
            out.push(Marker::Read {
                conv,
                up_to,
                private,
            });
        }
        let ready: Vec<ConversationRef> = self
            .delivered
            .iter()
            .filter(|(_, due)| ready(due))
            .map(|(conv, _)| conv.clone())
            .collect();
        for conv in ready {
            let Some(due) = self.delivered.remove(&conv) else {
                continue;
            };
            let sent = self.sent.entry(conv.clone()).or_default();
            if due.up_to > *sent {
                *sent = due.up_to;
                out.push(Marker::Delivered {
                    conv,
                    up_to: due.up_to,
                });
            }
        }
        out
    }

    /// When the next `delivered` becomes due.
    pub fn next_deadline(&self) -> Option<Moment> {
        self.delivered.values().map(|due| due.at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(s: &str) -> ConversationRef {
        ConversationRef::parse(s).expect("valid conv")
    }

    enum Step {
        Received(&'static str, u64, u64),
        MarkDelivered(&'static str, u64, u64),
        MarkRead(&'static str, u64),
        /// Take at this time (ms), expecting these markers ("d bob 3", "r bob 3").
        Take(u64, &'static [&'static str]),
    }
    use Step::*;

    fn run(steps: &[Step]) {
        let t0 = Moment::ZERO;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = Receipts::new(Duration::from_millis(200));
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Received(c, up_to, ms) => r.received(&conv(c), up_to, at(ms)),
                MarkDelivered(c, up_to, ms) => r.mark_delivered(&conv(c), up_to, at(ms)),
                MarkRead(c, up_to) => r.mark_read(&conv(c), up_to, false),
                Take(ms, expected) => {
                    let got: Vec<String> = r
                        .take(at(ms))
                        .into_iter()
                        .map(|m| match m {
                            Marker::Delivered { conv, up_to } => format!("d {conv} {up_to}"),
                            Marker::Read { conv, up_to, .. } => format!("r {conv} {up_to}"),
                        })
                        .collect();
                    assert_eq!(got, expected, "step {i}");
                }
            }
        }
    }

    #[test]
    fn bursts_share_one_marker() {
        run(&[
            Received("bob", 1, 0),
            Received("bob", 2, 50),
            Take(150, &[]),
            Received("bob", 3, 190),
            Take(200, &["d bob 3"]),
            Take(1000, &[]),
        ]);
    }

    #[test]
    fn conversations_are_independent() {
        run(&[
            Received("bob", 4, 0),
            Received("carol", 9, 100),
            Take(200, &["d bob 4"]),
            Take(300, &["d carol 9"]),
        ]);
    }

    #[test]
    fn explicit_markers_go_at_once() {
        run(&[
            Received("bob", 2, 0),
            MarkDelivered("bob", 1, 10),
            Take(10, &["d bob 2"]),
            MarkRead("bob", 5),
            Take(20, &["r bob 5"]),
            // A read raised delivered: lower delivered markers are not sent.
            Received("bob", 4, 30),
            Take(500, &[]),
            Received("bob", 6, 600),
            Take(800, &["d bob 6"]),
        ]);
    }

    #[test]
    fn closing_takes_everything() {
        let t0 = Moment::ZERO;
        let mut r = Receipts::new(Duration::from_millis(200));
        r.received(&conv("bob"), 3, t0);
        assert!(r.take(t0).is_empty());
        assert_eq!(
            r.take_all(),
            [Marker::Delivered {
                conv: conv("bob"),
                up_to: 3
            }]
        );
    }

    #[test]
    fn deadline() {
        let t0 = Moment::ZERO;
        let mut r = Receipts::new(Duration::from_millis(200));
        assert_eq!(r.next_deadline(), None);
        r.received(&conv("bob"), 1, t0);
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_millis(200)));
    }
}
