//! The shape of the load, shared by every system under test: pacing senders (a fixed
//! offered rate, or a window of messages in flight), stamping messages with their send time,
//! and counting what arrives.
//!
//! A [`Meter`] holds the current [`Run`]. Each pair's sender task asks its [`Pacer`] when to
//! send the next message and gets a stamp (microseconds since the meter's epoch, written in
//! the message text); the recipient hands the stamp back with [`Meter::delivered`], which
//! records the latency. Latency is measured from the moment the message was handed to the
//! client library (not from its scheduled time); schedule lateness is reported separately,
//! so a generator that falls behind its schedule shows up instead of hiding queueing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

/// How the senders offer load during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Offer {
    /// No run: senders wait.
    Idle,
    /// This many messages per second in total, spread evenly over the pairs (open loop: the
    /// schedule does not depend on replies).
    Rate(f64),
    /// Each pair keeps this many messages sent and not yet delivered (closed loop: the
    /// saturation throughput).
    Window(u32),
}

/// One measurement: the offer, its time window, and what was counted.
#[derive(Debug)]
pub struct Run {
    /// The offer.
    pub offer: Offer,
    pairs: usize,
    /// When senders start.
    pub begin: Instant,
    /// Start of the measured window (after the warm-up).
    pub measure_from: Instant,
    /// End of the measured window; senders stop here.
    pub measure_to: Instant,
    permits: Vec<Semaphore>,
    /// Messages handed to the client library.
    pub sent: AtomicU64,
    /// Messages sent inside the measured window.
    pub sent_in_window: AtomicU64,
    /// Messages that reached their recipient.
    pub delivered: AtomicU64,
    /// Messages that reached their recipient inside the measured window.
    pub delivered_in_window: AtomicU64,
    /// Receipts that reached the original sender (cumulative receipts count every message
    /// they cover).
    pub receipts: AtomicU64,
    /// mqchat's "sent" confirmations (the sender's copy of its stored message).
    pub confirmed: AtomicU64,
    /// Errors reported by the server or the connections.
    pub errors: AtomicU64,
    /// The most a sender fell behind its schedule, in microseconds.
    pub max_lag_us: AtomicU64,
    latency: Mutex<Vec<u32>>,
    confirm_latency: Mutex<Vec<u32>>,
}

impl Run {
    fn new(offer: Offer, pairs: usize, warmup: Duration, duration: Duration) -> Self {
        let begin = Instant::now() + Duration::from_millis(20);
        let window = match offer {
            Offer::Window(w) => w as usize,
            _ => 0,
        };
        Self {
            offer,
            pairs,
            begin,
            measure_from: begin + warmup,
            measure_to: begin + warmup + duration,
            permits: (0..pairs).map(|_| Semaphore::new(window)).collect(),
            sent: AtomicU64::new(0),
            sent_in_window: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivered_in_window: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            max_lag_us: AtomicU64::new(0),
            latency: Mutex::new(Vec::new()),
            confirm_latency: Mutex::new(Vec::new()),
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.measure_to
    }

    /// Delivery latencies (µs) of messages sent in the window, sorted.
    pub fn latencies(&self) -> Vec<u32> {
        sorted(&self.latency)
    }

    /// Delivery latencies (µs) recorded after the first `skip`, sorted.
    pub fn latencies_since(&self, skip: usize) -> Vec<u32> {
        let mut v: Vec<u32> = lock(&self.latency).iter().skip(skip).copied().collect();
        v.sort_unstable();
        v
    }

    /// "Sent" confirmation latencies (µs) of messages sent in the window, sorted.
    pub fn confirm_latencies(&self) -> Vec<u32> {
        sorted(&self.confirm_latency)
    }
}

fn sorted(samples: &Mutex<Vec<u32>>) -> Vec<u32> {
    let mut v = lock(samples).clone();
    v.sort_unstable();
    v
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Samples are plain numbers: a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared clock, the current run, and the counters every task reports to.
#[derive(Debug)]
pub struct Meter {
    epoch: Instant,
    pairs: usize,
    current: watch::Sender<Arc<Run>>,
}

impl Meter {
    /// A meter for `pairs` pairs, idle.
    pub fn new(pairs: usize) -> Arc<Self> {
        let idle = Run::new(Offer::Idle, pairs, Duration::ZERO, Duration::ZERO);
        Arc::new(Self {
            epoch: Instant::now(),
            pairs,
            current: watch::channel(Arc::new(idle)).0,
        })
    }

    /// The number of pairs.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// The run in progress.
    pub fn run(&self) -> Arc<Run> {
        self.current.borrow().clone()
    }

    /// The stamp for this instant: microseconds since the epoch.
    pub fn stamp(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.epoch + Duration::from_micros(stamp)
    }

    /// A pacer for pair `index`.
    pub fn pacer(self: &Arc<Self>, index: usize) -> Pacer {
        Pacer {
            meter: self.clone(),
            index,
            runs: self.current.subscribe(),
            sent_in_run: (None, 0),
        }
    }

    /// Starts a run; returns it.
    pub fn start(&self, offer: Offer, warmup: Duration, duration: Duration) -> Arc<Run> {
        let run = Arc::new(Run::new(offer, self.pairs, warmup, duration));
        self.current.send_replace(run.clone());
        run
    }

    /// Ends the run in progress: senders go idle.
    pub fn stop(&self) {
        let idle = Run::new(Offer::Idle, self.pairs, Duration::ZERO, Duration::ZERO);
        self.current.send_replace(Arc::new(idle));
    }

    /// A message of pair `index` stamped `stamp` reached its recipient.
    pub fn delivered(&self, index: usize, stamp: u64) {
        let now = Instant::now();
        let run = self.run();
        run.delivered.fetch_add(1, Ordering::Relaxed);
        if run.in_window(now) {
            run.delivered_in_window.fetch_add(1, Ordering::Relaxed);
        }
        if run.in_window(self.instant(stamp)) {
            let us = self.stamp(now).saturating_sub(stamp);
            lock(&run.latency).push(u32::try_from(us).unwrap_or(u32::MAX));
        }
        if let Some(permits) = run.permits.get(index)
            && matches!(run.offer, Offer::Window(_))
        {
            permits.add_permits(1);
        }
    }

    /// The sender of pair `index` learned that its message stamped `stamp` was stored.
    pub fn confirmed(&self, stamp: u64) {
        let now = Instant::now();
        let run = self.run();
        run.confirmed.fetch_add(1, Ordering::Relaxed);
        if run.in_window(self.instant(stamp)) {
            let us = self.stamp(now).saturating_sub(stamp);
            lock(&run.confirm_latency).push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    }

    /// Receipts for `n` more messages reached their sender.
    pub fn receipts(&self, n: u64) {
        self.run().receipts.fetch_add(n, Ordering::Relaxed);
    }

    /// A server error reply or a connection failure.
    pub fn error(&self) {
        self.run().errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// When one pair's sender sends: a stamp per message, following the run's offer.
#[derive(Debug)]
pub struct Pacer {
    meter: Arc<Meter>,
    index: usize,
    runs: watch::Receiver<Arc<Run>>,
    /// The run this pacer last sent in, and how many messages it sent in it.
    sent_in_run: (Option<Arc<Run>>, u64),
}

impl Pacer {
    /// Waits for the next message's turn and returns its stamp; `None` once the meter is
    /// gone. The caller must call [`Pacer::sent`] after handing the message over.
    pub async fn next(&mut self) -> Option<u64> {
        loop {
            let run = self.runs.borrow_and_update().clone();
            if let Some(stamp) = self.turn(&run).await {
                return Some(stamp);
            }
            // The run is over (or idle): wait for the next one.
            self.runs.changed().await.ok()?;
        }
    }

    fn count_in(&self, run: &Arc<Run>) -> u64 {
        match &self.sent_in_run {
            (Some(r), n) if Arc::ptr_eq(r, run) => *n,
            _ => 0,
        }
    }

    /// The next turn within `run`, or `None` when the run has ended or changed.
    async fn turn(&mut self, run: &Arc<Run>) -> Option<u64> {
        match run.offer {
            Offer::Idle => None,
            Offer::Rate(rate) => {
                // Pair i sends at begin + (i / pairs + k) * interval, k = 0, 1, ...: the pairs
                // are staggered so that the total is smooth.
                let interval = Duration::from_secs_f64(run.pairs as f64 / rate.max(1e-3));
                let k = self.count_in(run);
                let at = run.begin
                    + interval.mul_f64(self.index as f64 / run.pairs as f64)
                    + interval.mul_f64(k as f64);
                if at >= run.measure_to {
                    return None;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = self.runs.changed() => return None,
                }
                let now = Instant::now();
                let lag = u64::try_from(now.saturating_duration_since(at).as_micros())
                    .unwrap_or(u64::MAX);
                run.max_lag_us.fetch_max(lag, Ordering::Relaxed);
                Some(self.meter.stamp(now))
            }
            Offer::Window(_) => {
                let permits = run.permits.get(self.index)?;
                tokio::select! {
                    permit = permits.acquire() => permit.ok()?.forget(),
                    _ = self.runs.changed() => return None,
                }
                if Instant::now() < run.begin {
                    tokio::time::sleep_until(run.begin.into()).await;
                }
                let now = Instant::now();
                if now >= run.measure_to {
                    return None;
                }
                Some(self.meter.stamp(now))
            }
        }
    }

    /// Records that the message stamped `stamp` was handed to the client library.
    pub fn sent(&mut self, stamp: u64) {
        let run = self.runs.borrow().clone();
        run.sent.fetch_add(1, Ordering::Relaxed);
        if run.in_window(self.meter.instant(stamp)) {
            run.sent_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.count_in(&run) + 1;
        self.sent_in_run = (Some(run), n);
    }
}

/// Latency percentiles of one run, in microseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: u32,
    /// 99th percentile.
    pub p99: u32,
    /// 99.9th percentile.
    pub p999: u32,
    /// Largest.
    pub max: u32,
}

impl Percentiles {
    /// From sorted samples.
    pub fn of(sorted: &[u32]) -> Self {
        let at = |q: f64| -> u32 {
            if sorted.is_empty() {
                return 0;
            }
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        Self {
            n: sorted.len(),
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// Writes a stamp as message text: ten lower-case hex digits (fixed width, so every
/// message of every system has the same size).
pub fn stamp_text(stamp: u64) -> String {
    format!("{:010x}", stamp & 0xff_ffff_ffff)
}

/// Reads a stamp back from message text.
pub fn parse_stamp(text: &str) -> Option<u64> {
    u64::from_str_radix(text.get(..10)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_at_fixed_width() {
        for stamp in [0, 1, 123_456_789, 0xff_ffff_ffff] {
            let text = stamp_text(stamp);
            assert_eq!(text.len(), 10);
            assert_eq!(parse_stamp(&text), Some(stamp));
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=1000).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.n, p.p50, p.p99, p.p999, p.max),
            (1000, 500, 990, 999, 1000)
        );
        assert_eq!(Percentiles::of(&[]).n, 0);
    }
}
