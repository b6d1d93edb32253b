//! Pacing in the embedded broker: a device that sends far above its packet rate is slowed
//! where its packets come in, before they cost the hub anything. The tap holds such a
//! device's publish for the time its rate asks, which holds its connection (rmqtt handles a
//! connection's packets one after the other), so it reads no more of that device's socket
//! meanwhile and TCP slows the sender down. The hub's own limit (`rate-limited`) still
//! answers what gets through above the rate; pacing only keeps a flood from taking the
//! server's CPU from everyone else.
//!
//! Sans-IO: the caller passes the time (on its monotonic clock) and does the waiting.

use std::collections::HashMap;
use std::time::Duration;

use mqchat_proto::Moment;

/// How many times its packet rate a device may send before it is paced.
pub const PACE_FACTOR: u32 = 4;

/// The longest a single publish is held.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// Per-device pacing: a bucket of `burst` refilled at `rate` per second.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    burst: u32,
    /// When each key's bucket is full again.
    full_at: HashMap<String, Moment>,
    calls: u32,
}

impl Pacer {
    /// A pacer at `rate` packets per second with `burst` at once; `None` for a rate of 0
    /// (no limit).
    pub(crate) fn new(rate: u32, burst: u32) -> Option<Self> {
        (rate > 0).then(|| Self {
            interval: Duration::from_secs(1) / rate,
            burst: burst.max(1),
            full_at: HashMap::new(),
            calls: 0,
        })
    }

    /// How long to hold a packet of `key` arriving at `now` (`None`: not at all). The
    /// packet is counted as sent when its hold ends.
    pub(crate) fn hold(&mut self, key: &str, now: Moment) -> Option<Duration> {
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(4096) {
            self.full_at.retain(|_, full| *full > now);
        }
        let full = self
            .full_at
            .get(key)
            .copied()
            .filter(|full| *full > now)
            .unwrap_or(now);
        let after = full + self.interval;
        let capacity = self.interval * self.burst;
        let hold = after
            .saturating_since(now)
            .saturating_sub(capacity)
            .min(MAX_HOLD);
        match self.full_at.get_mut(key) {
            Some(full) => *full = after,
            None => {
                self.full_at.insert(key.to_owned(), after);
            }
        }
        (!hold.is_zero()).then_some(hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_and_then_the_rate() {
        let mut pacer = Pacer::new(10, 3).expect("a rate");
        let t0 = Moment::from_millis(1_000);
        let holds: Vec<_> = (0..6).map(|_| pacer.hold("mq/up/a/p", t0)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(holds, [None, None, None, ms(100), ms(200), ms(300)]);
        assert_eq!(pacer.hold("mq/up/b/p", t0), None, "others are not held");
        // After a rest the bucket is full again.
        assert_eq!(pacer.hold("mq/up/a/p", t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_hold_is_at_most_a_second_and_a_rate_of_zero_is_none() {
        let mut pacer = Pacer::new(1, 1).expect("a rate");
        let t0 = Moment::from_millis(1_000);
        for _ in 0..5 {
            pacer.hold("k", t0);
        }
        assert_eq!(pacer.hold("k", t0), Some(MAX_HOLD));
        assert!(Pacer::new(0, 10).is_none());
    }
}
