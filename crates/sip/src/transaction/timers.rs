//! Timer values (RFC 3261 17.1.1.1 and table 4) and the set of running timers of a machine.

use std::time::Duration;

/// T1 (round-trip estimate), T2 (maximum retransmission interval for non-INVITE requests and
/// INVITE responses) and T4 (maximum time a message stays in the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timing {
    /// 64 × T1: the transaction timeout (Timers B, F, H, J, L, M).
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// The RFC 3261 / 6026 timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

/// Running timers: each with its deadline (and, for the retransmission timers, the current
/// interval).
#[derive(Debug, Clone, Default)]
pub(crate) struct Running {
    timers: Vec<(Timer, Duration, Duration)>,
}

impl Running {
    /// Starts (or restarts) a timer firing `interval` after `now`.
    pub(crate) fn start(&mut self, timer: Timer, now: Duration, interval: Duration) {
        self.stop(timer);
        self.timers.push((timer, now + interval, interval));
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.timers.retain(|(t, _, _)| *t != timer);
    }

    pub(crate) fn clear(&mut self) {
        self.timers.clear();
    }

    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.timers.iter().map(|(_, at, _)| *at).min()
    }

    /// Removes and returns the earliest timer due at `now` with its interval.
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<(Timer, Duration)> {
        let (i, _) = self
            .timers
            .iter()
            .enumerate()
            .filter(|(_, (_, at, _))| *at <= now)
            .min_by_key(|(_, (_, at, _))| *at)?;
        let (timer, _, interval) = self.timers.remove(i);
        Some((timer, interval))
    }

    #[cfg(test)]
    pub(crate) fn is_running(&self, timer: Timer) -> bool {
        self.timers.iter().any(|(t, _, _)| *t == timer)
    }
}
