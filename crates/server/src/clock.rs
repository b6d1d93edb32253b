//! The server's one way to read the time. The sans-IO cores (the hub's engine and gate, the
//! SIP gateway's core, the batcher, the pacer) never read a clock: their driver reads both
//! of its clocks at once into a [`Now`] and passes it with each input. Each driver starts
//! its own [`Clock`]; moments from two clocks are not compared, as no core takes both.

use std::time::{Instant, SystemTime};

use mqchat_proto::{Moment, Now, Timestamp};

/// A driver's clocks: its monotonic clock since its start, and the wall clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose monotonic origin is now.
    pub(crate) fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// One reading of both clocks.
    pub(crate) fn now(&self) -> Now {
        Now {
            at: self.at(),
            wall: Self::wall(),
        }
    }

    /// The monotonic clock: for deadlines, timers and rates.
    pub(crate) fn at(&self) -> Moment {
        Moment::from_origin(self.origin.elapsed())
    }

    /// The wall clock: for what is stamped, stored or shown.
    pub(crate) fn wall() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }
}
