//! Deliveries to devices that rmqtt dropped, counted and logged so that no loss is silent.

use std::time::{Duration, Instant};

/// Deliveries to devices that rmqtt dropped (a full queue, an expired session, a session
/// closed under a delivery), logged at most once a second with how many, so that a loss
/// is never silent and a flood of them never floods the log.
#[derive(Debug, Default)]
pub(crate) struct Drops {
    /// When the last line was logged, and how many drops came since.
    state: std::sync::Mutex<(Option<Instant>, u64)>,
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
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.1 += 1;
        let due = state
            .0
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1));
        if !due {
            return None;
        }
        let count = state.1;
        tracing::warn!(
            count,
            to,
            topic,
            %reason,
            "the broker dropped deliveries to devices (count: since the last such line)"
        );
        *state = (Some(now), 0);
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_logged_at_most_once_a_second_with_their_count() {
        let drops = Drops::default();
        let start = std::time::Instant::now();
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
