//! Per-conversation ordering of durable events: duplicates are dropped by (conversation,
//! sequence number), events after a gap are held until history fills it (spec section 13).
//!
//! For each conversation the device knows the highest sequence number it holds contiguously.
//! A live event at that number plus one is delivered; at or below it, it is a duplicate; above
//! it, the event is held and the caller is asked to fetch `history` after the contiguous
//! number. The first event seen in a conversation with no local state is the starting point,
//! except while a catch-up is under way: the catch-up says where such a conversation starts
//! (it may have begun while the device was away), so its events wait for it.

use std::collections::{BTreeMap, HashMap};

use mqchat_proto::{ConversationRef, Packet};

/// What to do with a live event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Already held or delivered: drop it.
    Duplicate,
    /// Deliver these events, in this order (the event itself, then any held ones it unblocked).
    Deliver(Vec<Packet>),
    /// The event is held behind a gap. `fetch_after` asks the caller to request history after
    /// that sequence number; `None` when a fetch is already under way.
    Held {
        /// Request history after this sequence number.
        fetch_after: Option<u64>,
    },
}

/// The result of a page of history applied to a conversation.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fill {
    /// Events to deliver, in order.
    pub deliver: Vec<Packet>,
    /// Request the next page after this sequence number.
    pub fetch_after: Option<u64>,
}

/// One conversation's position.
#[derive(Debug, Default)]
struct Cursor {
    /// The highest sequence number held contiguously.
    contiguous: u64,
    /// The highest sequence number known to exist (from live events or a sync result).
    known: u64,
    /// Events after a gap, waiting for it to be filled.
    held: BTreeMap<u64, Packet>,
    /// A history request for this conversation is in flight.
    fetching: bool,
    /// No position yet: its events wait for the catch-up under way to say where it starts.
    awaiting: bool,
}

impl Cursor {
    /// The sequence number that comes next. Saturates: sequence numbers come from the
    /// network, and stay below 2^53 only if the hub keeps to the spec.
    fn next(&self) -> u64 {
        self.contiguous.saturating_add(1)
    }

    /// Moves held events that are now contiguous into `out`.
    fn release(&mut self, out: &mut Vec<Packet>) {
        loop {
            let next = self.next();
            let Some(entry) = self.held.first_entry() else {
                break;
            };
            let seq = *entry.key();
            if seq <= self.contiguous {
                entry.remove();
            } else if seq == next {
                out.push(entry.remove());
                self.contiguous = seq;
            } else {
                break;
            }
        }
    }

    /// Takes `to` as held contiguously: held events up to it are delivered in order.
    fn skip_to(&mut self, to: u64, out: &mut Vec<Packet>) {
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            if seq > to {
                break;
            }
            let packet = entry.remove();
            if seq > self.contiguous {
                self.contiguous = seq;
                out.push(packet);
            }
        }
        self.contiguous = self.contiguous.max(to);
    }

    /// Gives up on the missing events: delivers everything held, in order, and forgets what
    /// was known to exist beyond it.
    fn skip_gaps(&mut self, out: &mut Vec<Packet>) {
        for (seq, packet) in std::mem::take(&mut self.held) {
            if seq > self.contiguous {
                self.contiguous = seq;
                out.push(packet);
            }
        }
        self.known = self.contiguous;
    }

    /// Starts a fetch if events are missing and none is under way. A conversation awaiting
    /// the catch-up has no position to fetch after.
    fn next_fetch(&mut self) -> Option<u64> {
        if self.fetching || self.awaiting || self.known <= self.contiguous {
            return None;
        }
        self.fetching = true;
        Some(self.contiguous)
    }
}

/// The positions of every conversation the device has seen.
#[derive(Debug, Default)]
pub(crate) struct Timelines {
    convs: HashMap<ConversationRef, Cursor>,
}

impl Timelines {
    /// The highest sequence number held contiguously in `conv` (0 when unknown).
    pub fn contiguous(&self, conv: &ConversationRef) -> u64 {
        self.convs.get(conv).map_or(0, |c| c.contiguous)
    }

    /// Whether the device has a position in `conv` to fetch after (or a fetch that will
    /// give it one).
    pub fn positioned(&self, conv: &ConversationRef) -> bool {
        self.convs
            .get(conv)
            .is_some_and(|c| !c.awaiting && (c.contiguous > 0 || c.fetching))
    }

    /// Whether events of `conv` are missing or held: markers wait until they are delivered.
    pub fn busy(&self, conv: &ConversationRef) -> bool {
        self.convs
            .get(conv)
            .is_some_and(|c| c.fetching || c.awaiting || !c.held.is_empty())
    }

    /// Every conversation's position, for a device that keeps them across restarts.
    pub fn positions(&self) -> impl Iterator<Item = (&ConversationRef, u64)> {
        self.convs
            .iter()
            .filter(|(_, c)| c.contiguous > 0)
            .map(|(conv, c)| (conv, c.contiguous))
    }

    /// Restores a position kept from an earlier run: the device holds `conv` up to `seq`.
    pub fn restore(&mut self, conv: ConversationRef, seq: u64) {
        if seq > 0 {
            self.convs.insert(
                conv,
                Cursor {
                    contiguous: seq,
                    known: seq,
                    ..Cursor::default()
                },
            );
        }
    }

    /// Admits a live event with sequence number `seq` (at least 1). `catching_up`: a
    /// catch-up is under way, so an event of a conversation without a position waits for it
    /// rather than becoming the starting point.
    pub fn admit(
        &mut self,
        conv: &ConversationRef,
        seq: u64,
        packet: Packet,
        catching_up: bool,
    ) -> Admission {
        let Some(cursor) = self.convs.get_mut(conv) else {
            if catching_up && seq > 1 {
                let mut cursor = Cursor {
                    known: seq,
                    awaiting: true,
                    ..Cursor::default()
                };
                cursor.held.insert(seq, packet);
                self.convs.insert(conv.clone(), cursor);
                return Admission::Held { fetch_after: None };
            }
            self.convs.insert(
                conv.clone(),
                Cursor {
                    contiguous: seq,
                    known: seq,
                    ..Cursor::default()
                },
            );
            return Admission::Deliver(vec![packet]);
        };
        if seq <= cursor.contiguous || cursor.held.contains_key(&seq) {
            return Admission::Duplicate;
        }
        cursor.known = cursor.known.max(seq);
        if seq == cursor.next() {
            cursor.contiguous = seq;
            let mut out = vec![packet];
            cursor.release(&mut out);
            return Admission::Deliver(out);
        }
        cursor.held.insert(seq, packet);
        Admission::Held {
            fetch_after: cursor.next_fetch(),
        }
    }

    /// Notes from a sync result that `conv` has events up to `last_seq`. Returns where to
    /// fetch history from, if events are missing and no fetch is under way. Unknown
    /// conversations are left to the caller (there is no starting point to fetch after).
    pub fn catch_up(&mut self, conv: &ConversationRef, last_seq: u64) -> Option<u64> {
        let cursor = self.convs.get_mut(conv)?;
        cursor.known = cursor.known.max(last_seq);
        cursor.next_fetch()
    }

    /// Marks a fetch for a conversation without a position as under way (a sync result says
    /// it has events up to `last_seq`), so live events that arrive meanwhile are held rather
    /// than taken as the starting point.
    pub fn begin_fetch(&mut self, conv: &ConversationRef, last_seq: u64) {
        let cursor = self.convs.entry(conv.clone()).or_default();
        cursor.fetching = true;
        cursor.awaiting = false;
        cursor.known = cursor.known.max(last_seq);
    }

    /// The catch-up is over: conversations still waiting for it (it did not list them, so
    /// nothing before what arrived live is new) start at their first held event. Returns,
    /// per conversation, the events to deliver and where to fetch a gap among the held ones.
    pub fn end_catch_up(&mut self) -> Vec<(ConversationRef, Fill)> {
        let mut out = Vec::new();
        for (conv, cursor) in &mut self.convs {
            if !cursor.awaiting {
                continue;
            }
            cursor.awaiting = false;
            if let Some(&first) = cursor.held.keys().next() {
                cursor.contiguous = first.saturating_sub(1);
            }
            let mut deliver = Vec::new();
            cursor.release(&mut deliver);
            let fetch_after = cursor.next_fetch();
            out.push((
                conv.clone(),
                Fill {
                    deliver,
                    fetch_after,
                },
            ));
        }
        out
    }

    /// Applies a page of history (events in ascending order). `more` says whether the hub
    /// has more in that direction; `first_kept` is the first sequence number retention kept.
    pub fn fill(
        &mut self,
        conv: &ConversationRef,
        events: Vec<Packet>,
        more: bool,
        first_kept: Option<u64>,
    ) -> Fill {
        let cursor = self.convs.entry(conv.clone()).or_default();
        cursor.fetching = false;
        let before = cursor.contiguous;
        let mut out = Vec::new();
        // A conversation first met through history starts at the page's first event.
        if cursor.contiguous == 0 {
            let first = events.iter().filter_map(|p| p.seq).min();
            let start = first.into_iter().chain(cursor.held.keys().copied()).min();
            if let Some(start) = start {
                cursor.contiguous = start.saturating_sub(1);
            }
        }
        // Events removed by retention can never be had: start after them.
        if let Some(first_kept) = first_kept.filter(|&f| f > cursor.next()) {
            cursor.contiguous = first_kept.saturating_sub(1);
        }
        for packet in events {
            let Some(seq) = packet.seq else { continue };
            cursor.known = cursor.known.max(seq);
            // A page answers for the range it covers (spec section 13): numbers missing
            // before one of its events are events this reader may not see (a group's
            // events before the reader joined), so the gap is filled.
            if seq > cursor.next() {
                cursor.skip_to(seq - 1, &mut out);
            }
            if seq == cursor.next() {
                cursor.contiguous = seq;
                cursor.held.remove(&seq);
                out.push(packet);
                cursor.release(&mut out);
            }
        }
        cursor.release(&mut out);
        let progressed = cursor.contiguous > before;
        let missing = cursor.known > cursor.contiguous;
        // Fetch on while pages make progress; a page that does not means the missing events
        // cannot be had (the hub has no more of them), so what is held is delivered.
        let fetch_after = if missing && more && progressed {
            cursor.next_fetch()
        } else {
            if missing {
                cursor.skip_gaps(&mut out);
            }
            None
        };
        self.forget_if_empty(conv);
        Fill {
            deliver: out,
            fetch_after,
        }
    }

    /// A fetch failed (error reply or timeout): delivers what is held, giving up the gap.
    pub fn abandon(&mut self, conv: &ConversationRef) -> Vec<Packet> {
        let Some(cursor) = self.convs.get_mut(conv) else {
            return Vec::new();
        };
        cursor.fetching = false;
        let mut out = Vec::new();
        cursor.skip_gaps(&mut out);
        self.forget_if_empty(conv);
        out
    }

    /// Forgets a conversation that history found nothing in, so that its next live event
    /// is taken as the starting point rather than fetched from the very beginning.
    fn forget_if_empty(&mut self, conv: &ConversationRef) {
        let empty = self
            .convs
            .get(conv)
            .is_some_and(|c| c.contiguous == 0 && c.held.is_empty() && !c.fetching);
        if empty {
            self.convs.remove(conv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqchat_proto::PacketKind;

    fn conv() -> ConversationRef {
        ConversationRef::parse("bob").expect("valid")
    }

    fn event(seq: u64) -> Packet {
        let mut p = Packet::new(PacketKind::MESSAGE);
        p.conv = Some(conv());
        p.seq = Some(seq);
        p
    }

    fn seqs(packets: &[Packet]) -> Vec<u64> {
        packets.iter().filter_map(|p| p.seq).collect()
    }

    /// What `admit` did, in short: "d1,2" delivered 1 and 2; "dup"; "held@3" held and fetch
    /// after 3; "held" held with a fetch already under way.
    fn admit(t: &mut Timelines, seq: u64) -> String {
        match t.admit(&conv(), seq, event(seq), false) {
            Admission::Duplicate => "dup".into(),
            Admission::Deliver(p) => format!("d{}", join(&seqs(&p))),
            Admission::Held {
                fetch_after: Some(n),
            } => format!("held@{n}"),
            Admission::Held { fetch_after: None } => "held".into(),
        }
    }

    fn join(seqs: &[u64]) -> String {
        seqs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn check_live(input: &[u64], expected: &[&str]) {
        let mut t = Timelines::default();
        let got: Vec<String> = input.iter().map(|&s| admit(&mut t, s)).collect();
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn live_events() {
        check_live(&[1, 2, 3], &["d1", "d2", "d3"]);
        check_live(&[5, 6], &["d5", "d6"]);
        check_live(&[1, 1, 2, 1], &["d1", "dup", "d2", "dup"]);
        check_live(&[1, 3, 4, 3], &["d1", "held@1", "held", "dup"]);
        check_live(&[1, 3, 2], &["d1", "held@1", "d2,3"]);
        check_live(&[1, 4, 3, 2, 5], &["d1", "held@1", "held", "d2,3,4", "d5"]);
        // Out-of-spec numbers from the network do not overflow.
        let max = u64::MAX;
        check_live(&[max, max, 1], &[&format!("d{max}"), "dup", "dup"]);
        check_live(&[1, max], &["d1", "held@1"]);
    }

    fn check_fill(
        live: &[u64],
        page: &[u64],
        more: bool,
        first_kept: Option<u64>,
        deliver: &[u64],
        next: Option<u64>,
    ) -> Timelines {
        let mut t = Timelines::default();
        for &s in live {
            admit(&mut t, s);
        }
        let fill = t.fill(
            &conv(),
            page.iter().map(|&s| event(s)).collect(),
            more,
            first_kept,
        );
        assert_eq!(seqs(&fill.deliver), deliver, "live {live:?} page {page:?}");
        assert_eq!(fill.fetch_after, next, "live {live:?} page {page:?}");
        t
    }

    #[test]
    fn history_fills_gaps() {
        // The whole gap in one page, then the held events.
        check_fill(&[1, 5], &[2, 3, 4], false, None, &[2, 3, 4, 5], None);
        // The page overlaps what is held and what was delivered.
        check_fill(
            &[2, 5, 6],
            &[1, 2, 3, 4, 5],
            false,
            None,
            &[3, 4, 5, 6],
            None,
        );
        // Part of the gap, more to come: fetch the next page.
        check_fill(&[1, 9], &[2, 3], true, None, &[2, 3], Some(3));
        // No progress: give up the gap and deliver what is held.
        check_fill(&[1, 9], &[], false, None, &[9], None);
        check_fill(&[1, 9], &[1], true, None, &[9], None);
        // Retention removed the missing events.
        check_fill(&[1, 9], &[7, 8], false, Some(7), &[7, 8, 9], None);
        // Numbers a page skips are events this reader may not see (a group before joining).
        check_fill(&[1, 9], &[5, 6, 7], true, None, &[5, 6, 7], Some(7));
        check_fill(&[1, 4, 9], &[6], false, None, &[4, 6, 9], None);
    }

    #[test]
    fn history_starts_unknown_conversations() {
        let mut t = Timelines::default();
        t.begin_fetch(&conv(), 0);
        // A live event arriving during the fetch is held, not taken as the start.
        assert_eq!(admit(&mut t, 12), "held");
        let fill = t.fill(&conv(), vec![event(10), event(11)], false, None);
        assert_eq!(seqs(&fill.deliver), [10, 11, 12]);
        assert_eq!(admit(&mut t, 13), "d13");
        // Nothing found: the next live event is the starting point, not a gap from 0.
        let other = ConversationRef::parse("carol").expect("valid");
        t.begin_fetch(&other, 0);
        assert!(t.fill(&other, Vec::new(), false, None).deliver.is_empty());
        assert!(!t.positioned(&other));
        assert!(matches!(
            t.admit(&other, 40, event(40), false),
            Admission::Deliver(_)
        ));
    }

    #[test]
    fn catch_up_fetches_missing_events() {
        let mut t = Timelines::default();
        assert_eq!(t.catch_up(&conv(), 4), None, "unknown conversation");
        admit(&mut t, 1);
        assert_eq!(t.catch_up(&conv(), 1), None, "nothing missing");
        assert_eq!(t.catch_up(&conv(), 4), Some(1));
        assert_eq!(t.catch_up(&conv(), 5), None, "already fetching");
        let fill = t.fill(&conv(), vec![event(2), event(3)], true, None);
        assert_eq!(fill.fetch_after, Some(3));
        let fill = t.fill(&conv(), vec![event(4), event(5)], false, None);
        assert_eq!((seqs(&fill.deliver), fill.fetch_after), (vec![4, 5], None));
        assert_eq!(admit(&mut t, 5), "dup");
        assert_eq!(admit(&mut t, 6), "d6");
    }

    #[test]
    fn abandon_delivers_held_events() {
        let mut t = Timelines::default();
        admit(&mut t, 1);
        admit(&mut t, 4);
        admit(&mut t, 5);
        assert_eq!(seqs(&t.abandon(&conv())), [4, 5]);
        assert_eq!(t.contiguous(&conv()), 5);
        assert_eq!(admit(&mut t, 6), "d6");
        // An unknown conversation whose first fetch failed is forgotten.
        let other = ConversationRef::parse("carol").expect("valid");
        t.begin_fetch(&other, 0);
        assert!(t.abandon(&other).is_empty());
        assert!(!t.positioned(&other));
    }

    #[test]
    fn a_catch_up_places_conversations_it_lists() {
        let mut t = Timelines::default();
        let admit_during = |t: &mut Timelines, seq: u64| {
            matches!(
                t.admit(&conv(), seq, event(seq), true),
                Admission::Held { fetch_after: None }
            )
        };
        // Queued live events of a conversation begun while away wait for the catch-up.
        assert!(admit_during(&mut t, 8));
        assert!(admit_during(&mut t, 9));
        assert!(t.busy(&conv()) && !t.positioned(&conv()));
        // It lists the conversation: fetched from the start (by time), held events after.
        t.begin_fetch(&conv(), 9);
        let fill = t.fill(&conv(), vec![event(1), event(2)], true, None);
        assert_eq!(
            (seqs(&fill.deliver), fill.fetch_after),
            (vec![1, 2], Some(2))
        );
        let fill = t.fill(&conv(), (3..=7).map(event).collect(), false, None);
        assert_eq!(seqs(&fill.deliver), [3, 4, 5, 6, 7, 8, 9]);
        assert!(!t.busy(&conv()));
    }

    #[test]
    fn a_catch_up_that_does_not_list_a_conversation_starts_it_live() {
        let mut t = Timelines::default();
        // The very first event needs no catch-up to place it.
        let other = ConversationRef::parse("carol").expect("valid");
        assert!(matches!(
            t.admit(&other, 1, event(1), true),
            Admission::Deliver(_)
        ));
        t.admit(&conv(), 20, event(20), true);
        t.admit(&conv(), 21, event(21), true);
        t.admit(&conv(), 23, event(23), true);
        let ended = t.end_catch_up();
        assert_eq!(ended.len(), 1);
        let (c, fill) = &ended[0];
        assert_eq!(c, &conv());
        assert_eq!(
            (seqs(&fill.deliver), fill.fetch_after),
            (vec![20, 21], Some(21))
        );
        assert!(t.end_catch_up().is_empty());
    }

    #[test]
    fn restored_positions() {
        let mut t = Timelines::default();
        t.restore(conv(), 7);
        t.restore(ConversationRef::parse("carol").expect("valid"), 0);
        assert_eq!(t.positions().collect::<Vec<_>>(), [(&conv(), 7)]);
        assert_eq!(admit(&mut t, 7), "dup");
        assert_eq!(admit(&mut t, 9), "held@7");
    }
}
