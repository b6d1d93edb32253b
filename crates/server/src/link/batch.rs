//! The group-commit policy: how many inputs the worker puts in one store transaction, and
//! how long it waits for more before it commits.
//!
//! Sans-IO: the [`Batcher`] neither reads the clock nor waits. The worker tells it what
//! happens (`handle_*`, with the time on the worker's monotonic clock where the policy needs
//! it), asks it what to do next
//! ([`Batcher::wants_more`], [`Batcher::poll_next`]), and does the waiting itself.
//!
//! The rules: a batch takes what has arrived, up to [`MAX_BATCH`] packets. A batch that
//! starts within [`STREAM_GAP`] of the previous batch's hand-off belongs to a stream of
//! packets, and if it is still small (under [`HOLD_BELOW`] packets) it waits once, until
//! [`COMMIT_HOLD`] after its start, for more: a commit (a disk sync) shared by a few more
//! packets costs each of them less than one each, for a wait shorter than the sync itself.
//! A batch that is big already, a quiet moment, a batch without packets (clock ticks
//! only) and the last batch before the worker stops go at once.

use std::time::Duration;

use mqchat_proto::Moment;

/// Most packets processed in one store transaction.
pub(super) const MAX_BATCH: usize = 512;

/// Packets that arrive within this time of the previous batch are a stream, whose batches
/// the worker holds open for [`COMMIT_HOLD`].
pub(super) const STREAM_GAP: Duration = Duration::from_millis(2);

/// How long a batch of a stream waits for more packets before its transaction (group
/// commit): well under a disk sync, and under a millisecond of latency.
pub(super) const COMMIT_HOLD: Duration = Duration::from_micros(700);

/// A batch this big goes at once: it shares its commit enough.
pub(super) const HOLD_BELOW: usize = 32;

/// What the worker does once nothing more has arrived for the batch it is gathering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Wait until then, then take what has arrived meanwhile.
    WaitUntil(Moment),
    /// Run the batch now.
    Commit,
}

/// Decides the size of each batch and the wait before its commit; see the module's
/// documentation for the rules.
#[derive(Debug, Default)]
pub(super) struct Batcher {
    /// When the previous batch of packets was handed on: a batch that starts soon after
    /// it belongs to a stream.
    last_batch: Option<Moment>,
    /// Packets in the batch being gathered.
    n_packets: usize,
    /// Until when the batch being gathered may wait for more, while it has not waited.
    hold: Option<Moment>,
    /// The worker is stopping: the batch goes as it is, and it is the last.
    stopped: bool,
}

impl Batcher {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A batch begins: its first input arrived at `now`.
    pub(super) fn handle_start(&mut self, now: Moment) {
        self.n_packets = 0;
        self.hold = self
            .last_batch
            .is_some_and(|t| now.saturating_since(t) < STREAM_GAP)
            .then_some(now + COMMIT_HOLD);
    }

    /// The batch took one more packet.
    pub(super) fn handle_packet(&mut self) {
        self.n_packets += 1;
    }

    /// The worker was told to stop.
    pub(super) fn handle_stop(&mut self) {
        self.stopped = true;
    }

    /// The batch's packets were processed and handed on at `now`. Not called for a batch
    /// without packets: clock ticks alone make no stream.
    pub(super) fn handle_handed_on(&mut self, now: Moment) {
        self.last_batch = Some(now);
    }

    /// Whether the batch takes another input that has arrived already.
    pub(super) fn wants_more(&self) -> bool {
        !self.stopped && self.n_packets < MAX_BATCH
    }

    /// What to do once nothing more has arrived (or the batch is full). A batch waits at
    /// most once: after its wait, this says [`Next::Commit`].
    pub(super) fn poll_next(&mut self) -> Next {
        match self.hold.take() {
            Some(until) if !self.stopped && self.n_packets > 0 && self.n_packets < HOLD_BELOW => {
                Next::WaitUntil(until)
            }
            _ => Next::Commit,
        }
    }

    /// Whether the worker was told to stop.
    pub(super) fn stopped(&self) -> bool {
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch that starts `gap` after the previous one was handed on (`None`: the first
    /// batch), takes `n_packets`, and is stopped or not: what it does once nothing more
    /// arrives, with times counted from its start.
    fn check(gap: Option<Duration>, n_packets: usize, stop: bool, expected: Option<Duration>) {
        let base = Moment::from_millis(1_000);
        let mut batcher = Batcher::new();
        let start = match gap {
            Some(gap) => {
                batcher.handle_handed_on(base);
                base + gap
            }
            None => base,
        };
        batcher.handle_start(start);
        for _ in 0..n_packets {
            batcher.handle_packet();
        }
        if stop {
            batcher.handle_stop();
        }
        let expected = match expected {
            Some(wait) => Next::WaitUntil(start + wait),
            None => Next::Commit,
        };
        assert_eq!(
            batcher.poll_next(),
            expected,
            "gap {gap:?}, {n_packets} packets, stop {stop}"
        );
    }

    #[test]
    fn a_small_batch_of_a_stream_waits_once_until_the_hold_ends() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // The first batch, and batches after a quiet moment, go at once.
        check(None, 1, false, None);
        check(Some(STREAM_GAP), 1, false, None);
        check(Some(ms(500)), 1, false, None);
        // Soon after the previous batch: held from the batch's start.
        check(Some(Duration::ZERO), 1, false, Some(COMMIT_HOLD));
        check(Some(us(1999)), 1, false, Some(COMMIT_HOLD));
        check(Some(us(300)), HOLD_BELOW - 1, false, Some(COMMIT_HOLD));
        // Big enough to share a commit, or full: at once.
        check(Some(us(300)), HOLD_BELOW, false, None);
        check(Some(us(300)), MAX_BATCH, false, None);
        // Clock ticks alone are never held; neither is the last batch before a stop.
        check(Some(us(300)), 0, false, None);
        check(Some(us(300)), 1, true, None);
    }

    #[test]
    fn a_batch_waits_at_most_once() {
        let base = Moment::from_millis(1_000);
        let mut batcher = Batcher::new();
        batcher.handle_handed_on(base);
        let start = base + Duration::from_millis(1);
        batcher.handle_start(start);
        batcher.handle_packet();
        assert_eq!(batcher.poll_next(), Next::WaitUntil(start + COMMIT_HOLD));
        batcher.handle_packet();
        assert_eq!(batcher.poll_next(), Next::Commit);
    }

    #[test]
    fn the_gap_counts_from_the_last_hand_off_of_packets() {
        let base = Moment::from_millis(1_000);
        let mut batcher = Batcher::new();
        batcher.handle_handed_on(base);
        // A batch of clock ticks only, later: not handed on as packets, so the stream is
        // still timed from `base`.
        batcher.handle_start(base + Duration::from_millis(1));
        assert_eq!(batcher.poll_next(), Next::Commit);
        let late = base + STREAM_GAP + Duration::from_micros(1);
        batcher.handle_start(late);
        batcher.handle_packet();
        assert_eq!(batcher.poll_next(), Next::Commit);
        // Handed on: the next batch soon after is a stream's again.
        batcher.handle_handed_on(late);
        let soon = late + Duration::from_micros(100);
        batcher.handle_start(soon);
        batcher.handle_packet();
        assert_eq!(batcher.poll_next(), Next::WaitUntil(soon + COMMIT_HOLD));
    }

    #[test]
    fn a_batch_takes_up_to_the_maximum_and_nothing_after_a_stop() {
        let mut batcher = Batcher::new();
        batcher.handle_start(Moment::ZERO);
        for _ in 0..MAX_BATCH - 1 {
            batcher.handle_packet();
        }
        assert!(batcher.wants_more());
        batcher.handle_packet();
        assert!(!batcher.wants_more(), "full");
        // The next batch starts empty.
        batcher.handle_start(Moment::ZERO);
        assert!(batcher.wants_more());
        assert!(!batcher.stopped());
        batcher.handle_stop();
        assert!(!batcher.wants_more(), "stopped");
        assert!(batcher.stopped());
    }
}
