//! Reconnect delays: exponential between a minimum and a maximum, with jitter so that many
//! devices dropped at once (a broker restart) do not all come back in the same instant.

use std::time::Duration;

/// The delay before each reconnect attempt.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next attempt: the attempt's ceiling (`min` doubled per failed
    /// attempt, at most `max`) scaled by a factor between 1/2 and 1 taken from `random`.
    pub fn next(&mut self, random: u32) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let fraction = 0.5 + 0.5 * f64::from(random) / f64::from(u32::MAX);
        ceiling.mul_f64(fraction)
    }

    /// A connection succeeded: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_maximum() {
        let mut b = Backoff::new(ms(100), ms(1000));
        let ceilings: Vec<Duration> = (0..6).map(|_| b.next(u32::MAX)).collect();
        assert_eq!(
            ceilings,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        b.reset();
        assert_eq!(b.next(u32::MAX), ms(100));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut b = Backoff::new(ms(100), ms(100));
        assert_eq!(b.next(0), ms(50));
        let d = b.next(u32::MAX / 2);
        assert!(d > ms(74) && d < ms(76), "{d:?}");
        // Many failures never overflow.
        for _ in 0..100 {
            assert!(b.next(7) <= ms(100));
        }
    }

    #[test]
    fn max_below_min_is_min() {
        let mut b = Backoff::new(ms(500), ms(100));
        assert_eq!(b.next(u32::MAX), ms(500));
    }
}
