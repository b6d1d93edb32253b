//! Time, in the two forms mqchat uses, defined once for every crate above this one.
//!
//! - [`Timestamp`]: a point on the wall clock, in milliseconds since the Unix epoch, as the
//!   protocol carries times (an event's `ts`, presence `since`, a call's `started`). It is what
//!   people read and what is stored; the wall clock can step back, so nothing waits on it.
//! - [`Moment`]: a point on a driver's monotonic clock, as the time since that driver's origin.
//!   Every deadline, timer and rate in a sans-IO core is a `Moment`: cores never read a clock,
//!   their driver passes both forms in, and tests drive cores on virtual time from
//!   [`Moment::ZERO`].
//!
//! This crate only converts: reading the clocks is the drivers' IO.

use std::fmt;
use std::ops::{Add, AddAssign};
#[allow(clippy::disallowed_types)]
use std::time::SystemTime;
use std::time::{Duration, UNIX_EPOCH};

/// A point on the wall clock: milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// The time `millis` milliseconds after the Unix epoch.
    pub const fn from_unix_ms(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch, as the protocol and the store carry it.
    pub const fn unix_ms(self) -> u64 {
        self.0
    }

    /// The same time as a [`SystemTime`] (the caller's clock reading). Converting is allowed
    /// here; reading the clock (`SystemTime::now`) stays forbidden by `clippy.toml`. Times before the epoch
    /// are the epoch; times past `u64::MAX` milliseconds saturate.
    #[allow(clippy::disallowed_types)]
    pub fn from_system(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// The same time as a [`SystemTime`], for formatting in a reader's zone.
    #[allow(clippy::disallowed_types)]
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// How long after `earlier` this is, or zero if it is not after it (the wall clock may
    /// have stepped back between the two readings).
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The time `by` later, saturating at the largest timestamp.
    pub fn saturating_add(self, by: Duration) -> Self {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms since the Unix epoch", self.0)
    }
}

/// A point on a driver's monotonic clock: the time since the driver's origin (the moment it
/// started). Two moments compare only when they come from the same driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(Duration);

impl Moment {
    /// The driver's origin: the start of virtual time in tests.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// The moment `elapsed` after the origin (a driver passes `origin.elapsed()`).
    pub const fn from_origin(elapsed: Duration) -> Self {
        Self(elapsed)
    }

    /// The moment `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The time since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this is, or zero if it is not after it.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The moment `by` later, or `None` past the largest moment.
    pub fn checked_add(self, by: Duration) -> Option<Self> {
        self.0.checked_add(by).map(Self)
    }
}

impl Add<Duration> for Moment {
    type Output = Self;

    /// The moment `by` later, saturating at the largest moment (a deadline that far off never
    /// comes, which is what its caller meant).
    fn add(self, by: Duration) -> Self {
        Self(self.0.saturating_add(by))
    }
}

impl AddAssign<Duration> for Moment {
    fn add_assign(&mut self, by: Duration) {
        *self = *self + by;
    }
}

/// One reading of both clocks, as a driver passes it to a core with each input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// The monotonic clock: for deadlines, timers and rates.
    pub at: Moment,
    /// The wall clock: for what is stamped, stored or shown.
    pub wall: Timestamp,
}

impl Now {
    /// A reading `by` later on both clocks (for tests on virtual time).
    pub fn advanced(self, by: Duration) -> Self {
        Self {
            at: self.at + by,
            wall: self.wall.saturating_add(by),
        }
    }
}

/// Something due at most once per interval (a log line about a recurring failure, say),
/// counting the occurrences in between.
#[derive(Clone, Debug)]
pub struct Cadence {
    every: Duration,
    /// When it was last due, while occurrences go on.
    last: Option<Moment>,
    /// Occurrences since then.
    count: u64,
}

impl Cadence {
    /// Due at the first occurrence, then at most once per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            count: 0,
        }
    }

    /// Counts an occurrence at `at`. When it is due (the first, or `every` after the last
    /// due one), returns how many occurred since the last due one, this one included.
    pub fn occurred(&mut self, at: Moment) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|last| at.saturating_since(last) < self.every)
        {
            return None;
        }
        self.last = Some(at);
        Some(std::mem::take(&mut self.count))
    }

    /// The occurrences stopped: the next one is due at once. Returns whether any was due
    /// since the last reset (to say, once, that the condition cleared).
    pub fn reset(&mut self) -> bool {
        self.count = 0;
        self.last.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cadence_is_due_once_per_interval_with_the_count_between() {
        let mut cadence = Cadence::new(Duration::from_secs(60));
        let at = |s: u64| Moment::from_millis(s * 1000);
        assert_eq!(cadence.occurred(at(0)), Some(1));
        assert_eq!(cadence.occurred(at(30)), None);
        assert_eq!(cadence.occurred(at(59)), None);
        assert_eq!(cadence.occurred(at(60)), Some(3));
        assert!(cadence.reset());
        assert!(!cadence.reset());
        assert_eq!(
            cadence.occurred(at(61)),
            Some(1),
            "due at once after a reset"
        );
    }

    #[test]
    fn a_timestamp_round_trips_through_system_time() {
        let t = Timestamp::from_unix_ms(1_765_000_000_123);
        assert_eq!(Timestamp::from_system(t.to_system()), t);
        assert_eq!(t.unix_ms(), 1_765_000_000_123);
    }

    #[test]
    fn a_time_before_the_epoch_is_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(Timestamp::from_system(before), Timestamp::EPOCH);
    }

    #[test]
    fn a_wall_clock_that_stepped_back_gives_no_negative_span() {
        let later = Timestamp::from_unix_ms(10_000);
        let earlier = Timestamp::from_unix_ms(4_000);
        assert_eq!(later.saturating_since(earlier), Duration::from_secs(6));
        assert_eq!(earlier.saturating_since(later), Duration::ZERO);
        assert_eq!(
            Timestamp::from_unix_ms(u64::MAX - 1).saturating_add(Duration::from_secs(1)),
            Timestamp::from_unix_ms(u64::MAX)
        );
    }

    #[test]
    fn moments_add_and_compare_on_virtual_time() {
        let start = Moment::ZERO;
        let later = start + Duration::from_millis(1_500);
        assert_eq!(later, Moment::from_millis(1_500));
        assert!(later > start);
        assert_eq!(later.saturating_since(start), Duration::from_millis(1_500));
        assert_eq!(start.saturating_since(later), Duration::ZERO);
        let far = Moment::from_origin(Duration::MAX);
        assert_eq!(far + Duration::from_secs(1), far);
        assert_eq!(far.checked_add(Duration::from_secs(1)), None);
        let now = Now {
            at: start,
            wall: Timestamp::from_unix_ms(7),
        }
        .advanced(Duration::from_millis(3));
        assert_eq!(now.at, Moment::from_millis(3));
        assert_eq!(now.wall, Timestamp::from_unix_ms(10));
        let mut m = start;
        m += Duration::from_secs(2);
        assert_eq!(m.since_origin(), Duration::from_secs(2));
    }
}
