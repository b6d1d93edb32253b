//! Deliveries to devices that rmqtt dropped, counted and logged so that no loss is silent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mqchat_proto::{Cadence, Moment};

/// Deliveries to devices that rmqtt dropped (a full queue, an expired session, a session
/// closed under a delivery), logged at most once a second with how many, so that a loss
/// is never silent and a flood of them never floods the log.
#[derive(Debug)]
pub(crate) struct Drops {
    /// The broker's start: the origin of the cadence's moments.
    origin: Instant,
    cadence: Mutex<Cadence>,
}

impl Default for Drops {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            cadence: Mutex::new(Cadence::new(Duration::from_secs(1))),
        }
    }
}

impl Drops {
    /// Counts a drop at `now`; logs and returns the count when a line is due.
    pub(crate) fn dropped(
        &self,
        now: Instant,
        to: &str,
        topic: &str,
        reason: &dyn std::fmt::Display,
    ) -> Option<u64> {
        let at = Moment::from_origin(now.saturating_duration_since(self.origin));
        let count = self
            .cadence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .occurred(at)?;
        tracing::warn!(
            count,
            to,
            topic,
            %reason,
            "the broker dropped deliveries to devices (count: since the last such line)"
        );
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_logged_at_most_once_a_second_with_their_count() {
        let drops = Drops::default();
        let start = drops.origin;
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(
            drops.dropped(at(0), "bob:phone", "mq/in/bob/d", &"queue full"),
            Some(1)
        );
        assert_eq!(
            drops.dropped(at(10), "bob:phone", "mq/in/bob/d", &"queue full"),
            None
        );
        assert_eq!(
            drops.dropped(at(999), "bob:phone", "mq/in/bob/d", &"queue full"),
            None
        );
        assert_eq!(
            drops.dropped(at(1_000), "bob:phone", "mq/in/bob/d", &"queue full"),
            Some(3)
        );
        assert_eq!(
            drops.dropped(at(5_000), "bob:laptop", "mq/in/bob/d", &"closed"),
            Some(1)
        );
    }
}
