//! The dispatcher: a bounded queue of pushes per device, workers that send them, coalescing,
//! retries with exponential backoff, counters, and a channel of targets found invalid.
//!
//! Enqueuing ([`Dispatcher::push`]) takes a lock for a few map operations and never waits on
//! the network, so a provider outage cannot slow message delivery down.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Senders;
use crate::config::PushConfig;
use crate::model::{Device, Notification, Outcome, Target};

/// How many invalid-target reports wait for the caller before new ones are dropped (logged).
const INVALID_CHANNEL: usize = 1024;

/// A target the provider reported gone: the caller should delete it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTarget {
    /// The device's key as given to [`Dispatcher::push`].
    pub device: String,
    /// The target that was refused.
    pub target: Target,
    /// The provider's reason.
    pub reason: String,
}

/// What [`Dispatcher::push`] did with a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// Queued as a new push.
    Queued,
    /// Folded into a push already waiting for the same device.
    Coalesced,
    /// Queued, and the oldest waiting push was dropped to make room.
    DroppedOldest,
    /// The dispatcher is shut down.
    Closed,
}

/// Counters since the dispatcher started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Notifications handed to `push`.
    pub enqueued: u64,
    /// Notifications folded into a waiting push.
    pub coalesced: u64,
    /// Pushes the provider accepted.
    pub sent: u64,
    /// Pushes given up (permanent failure, or retries exhausted).
    pub failed: u64,
    /// Pushes whose target was invalid.
    pub invalid: u64,
    /// Pushes dropped because the queue was full.
    pub dropped: u64,
    /// Tries that will be (or were) retried.
    pub retried: u64,
    /// Pushes waiting now (not counting those being sent).
    pub queued: usize,
    /// Pushes being sent now.
    pub in_flight: usize,
}

#[derive(Debug, Default)]
struct Counters {
    enqueued: AtomicU64,
    coalesced: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    invalid: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    capacity: usize,
    window: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// One push waiting for its device.
#[derive(Debug)]
struct Entry {
    /// Order of arrival, for dropping the oldest.
    id: u64,
    device: Device,
    notification: Notification,
    due: Instant,
    /// Tries made so far.
    attempts: u32,
}

#[derive(Debug, Default)]
struct Queue {
    entries: HashMap<String, Entry>,
    /// (due, id, device key): the next push to send first.
    by_due: BTreeSet<(Instant, u64, String)>,
    /// id → device key: the oldest first.
    by_age: BTreeMap<u64, String>,
    /// When each device's last push left, for the coalescing window.
    last_sent: HashMap<String, Instant>,
    next_id: u64,
    in_flight: usize,
}

impl Queue {
    fn insert(&mut self, entry: Entry) {
        let key = entry.device.key.clone();
        self.by_due.insert((entry.due, entry.id, key.clone()));
        self.by_age.insert(entry.id, key.clone());
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.by_due.remove(&(entry.due, entry.id, key.to_owned()));
        self.by_age.remove(&entry.id);
        Some(entry)
    }

    fn drop_oldest(&mut self) -> Option<Entry> {
        let key = self.by_age.values().next()?.clone();
        self.remove(&key)
    }

    /// Moves a waiting entry's due time (the sorted set is keyed by it).
    fn reschedule(&mut self, key: &str, due: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            self.by_due.remove(&(entry.due, entry.id, key.to_owned()));
            entry.due = due;
            self.by_due.insert((due, entry.id, key.to_owned()));
        }
    }

    /// The first entry that is due, or when the next one will be.
    fn pop_due(&mut self, now: Instant, window: Duration) -> Result<Entry, Option<Instant>> {
        let Some((due, _, key)) = self.by_due.first().cloned() else {
            return Err(None);
        };
        if due > now {
            return Err(Some(due));
        }
        let Some(entry) = self.remove(&key) else {
            return Err(None);
        };
        if self.last_sent.len() > 2 * self.entries.len() + 1024 {
            self.last_sent.retain(|_, sent| *sent + window > now);
        }
        self.last_sent.insert(key, now);
        self.in_flight += 1;
        Ok(entry)
    }
}

/// Folds `newer` into the waiting push: the newest event's details and the summed count.
fn merge(into: &mut Notification, newer: Notification) {
    let count = into.count.saturating_add(newer.count);
    // A ringing call is not replaced by what followed it: the device must show the call.
    if !into.call || newer.call {
        *into = newer;
    }
    into.count = count;
}

struct Shared {
    senders: Senders,
    settings: Settings,
    queue: Mutex<Queue>,
    wake: Notify,
    counters: Counters,
    closed: AtomicBool,
    invalid: mpsc::Sender<InvalidTarget>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A worker that panicked mid-update leaves maps that are still consistent enough to
        // keep sending; pushing must go on.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Queues pushes and sends them in the background.
pub struct Dispatcher {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("settings", &self.shared.settings)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let workers = self
            .workers
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for worker in workers.iter() {
            worker.abort();
        }
    }
}

impl Dispatcher {
    /// Starts the workers on the current tokio runtime (it must be called from within one).
    /// The receiver reports targets that providers found invalid, for the caller to delete.
    pub fn start(senders: Senders, config: &PushConfig) -> (Self, mpsc::Receiver<InvalidTarget>) {
        let settings = Settings {
            capacity: config.queue_size.max(1),
            window: Duration::from_millis(config.coalesce_window_ms),
            max_attempts: config.max_attempts.max(1),
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
        };
        let (invalid, invalid_rx) = mpsc::channel(INVALID_CHANNEL);
        let shared = Arc::new(Shared {
            senders,
            settings,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            invalid,
        });
        let workers = (0..config.workers.max(1))
            .map(|_| tokio::spawn(work(shared.clone())))
            .collect();
        let workers = Mutex::new(workers);
        (Dispatcher { shared, workers }, invalid_rx)
    }

    /// The senders, e.g. for the Web Push public key.
    pub fn senders(&self) -> &Senders {
        &self.shared.senders
    }

    /// Queues a notification for a device; never waits. Within the coalescing window after
    /// the device's last push, notifications are folded into one push carrying their count.
    pub fn push(&self, device: Device, notification: Notification) -> Enqueued {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Enqueued::Closed;
        }
        shared.counters.enqueued.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut queue = shared.queue();
        if let Some(entry) = queue.entries.get_mut(&device.key) {
            merge(&mut entry.notification, notification);
            entry.device = device;
            shared.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            return Enqueued::Coalesced;
        }
        let mut result = Enqueued::Queued;
        if queue.entries.len() >= shared.settings.capacity
            && let Some(dropped) = queue.drop_oldest()
        {
            let total = shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                device = %dropped.device.key,
                dropped_total = total,
                capacity = shared.settings.capacity,
                "push: queue full, dropped the oldest push"
            );
            result = Enqueued::DroppedOldest;
        }
        let due = match queue.last_sent.get(&device.key) {
            Some(sent) => (*sent + shared.settings.window).max(now),
            None => now,
        };
        let id = queue.next_id;
        queue.next_id += 1;
        queue.insert(Entry {
            id,
            device,
            notification,
            due,
            attempts: 0,
        });
        drop(queue);
        shared.wake.notify_one();
        result
    }

    /// The counters, and the queue's length now.
    pub fn stats(&self) -> Stats {
        let counters = &self.shared.counters;
        let queue = self.shared.queue();
        Stats {
            enqueued: counters.enqueued.load(Ordering::Relaxed),
            coalesced: counters.coalesced.load(Ordering::Relaxed),
            sent: counters.sent.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            invalid: counters.invalid.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            retried: counters.retried.load(Ordering::Relaxed),
            queued: queue.entries.len(),
            in_flight: queue.in_flight,
        }
    }

    /// Stops taking pushes ([`push`](Self::push) answers [`Enqueued::Closed`]); workers finish
    /// the send they are in and stop. Pushes still waiting are dropped (and logged).
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_waiters();
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for worker in workers {
            let _ = worker.await;
        }
        let waiting = self.shared.queue().entries.len();
        if waiting > 0 {
            tracing::info!(waiting, "push: shut down with pushes still queued");
        }
    }
}

async fn work(shared: Arc<Shared>) {
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        // Registered before looking at the queue, so a push made in between still wakes us.
        let notified = shared.wake.notified();
        let next = shared
            .queue()
            .pop_due(Instant::now(), shared.settings.window);
        match next {
            Ok(entry) => send(&shared, entry).await,
            Err(Some(due)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = notified => {}
                }
            }
            Err(None) => notified.await,
        }
    }
}

async fn send(shared: &Shared, mut entry: Entry) {
    entry.attempts += 1;
    let outcome = shared
        .senders
        .send(
            &entry.device.target,
            entry.device.preview,
            &entry.notification,
        )
        .await;
    let counters = &shared.counters;
    let key = entry.device.key.clone();
    match outcome {
        Outcome::Delivered => {
            counters.sent.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(device = %key, target = ?entry.device.target, "push: sent");
        }
        Outcome::Invalid { reason } => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::info!(device = %key, target = ?entry.device.target, %reason, "push: target invalid");
            let report = InvalidTarget {
                device: key.clone(),
                target: entry.device.target.clone(),
                reason,
            };
            if let Err(mpsc::error::TrySendError::Full(report)) = shared.invalid.try_send(report) {
                tracing::warn!(device = %report.device, "push: invalid-target report dropped (nobody reads them)");
            }
        }
        Outcome::Failed { reason } => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %key, target = ?entry.device.target, %reason, "push: failed");
        }
        Outcome::Retry { after, reason } if entry.attempts >= shared.settings.max_attempts => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %key, attempts = entry.attempts, ?after, %reason, "push: giving up after retries");
        }
        Outcome::Retry { after, reason } => {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            let delay = backoff(&shared.settings, entry.attempts, after);
            tracing::info!(device = %key, attempt = entry.attempts, ?delay, %reason, "push: will retry");
            requeue(shared, entry, Instant::now() + delay);
            return;
        }
    }
    shared.queue().in_flight -= 1;
}

/// Puts a push back to be tried at `due`, folding in anything that arrived for the device
/// meanwhile.
fn requeue(shared: &Shared, mut entry: Entry, due: Instant) {
    let mut queue = shared.queue();
    queue.in_flight -= 1;
    let key = entry.device.key.clone();
    if let Some(newer) = queue.entries.get_mut(&key) {
        // The waiting push is newer: it keeps its details, adds our count, and waits for
        // the backoff too.
        newer.notification.count = newer
            .notification
            .count
            .saturating_add(entry.notification.count);
        newer.attempts = newer.attempts.max(entry.attempts);
        let later = newer.due.max(due);
        queue.reschedule(&key, later);
    } else {
        entry.due = due;
        queue.insert(entry);
    }
    drop(queue);
    shared.wake.notify_one();
}

/// Exponential backoff with up to 25 % jitter, capped; never shorter than the provider's
/// `Retry-After`.
fn backoff(settings: &Settings, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let base = settings
        .initial_backoff
        .saturating_mul(1 << exponent)
        .min(settings.max_backoff);
    let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
    let delay = (base + jitter).min(settings.max_backoff.max(base));
    delay.max(retry_after.unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            capacity: 10,
            window: Duration::from_secs(1),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let settings = settings();
        let within = |attempts, low_ms, high_ms| {
            let delay = backoff(&settings, attempts, None);
            assert!(
                delay >= Duration::from_millis(low_ms) && delay <= Duration::from_millis(high_ms),
                "attempt {attempts}: {delay:?}"
            );
        };
        within(1, 100, 125);
        within(2, 200, 250);
        within(3, 400, 500);
        within(5, 1000, 1000);
        within(30, 1000, 1000);
        assert_eq!(
            backoff(&settings, 1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn merging_keeps_the_newest_and_sums_counts() {
        let mut waiting = Notification::new("alice", 3);
        merge(&mut waiting, Notification::new("bob", 9).with_preview("hi"));
        assert_eq!(waiting.conversation, "bob");
        assert_eq!(waiting.seq, 9);
        assert_eq!(waiting.count, 2);
        assert_eq!(waiting.preview.as_deref(), Some("hi"));
        let mut call = Notification::new("carol", 4).for_call();
        merge(&mut call, Notification::new("bob", 10));
        assert_eq!(
            (call.conversation.as_str(), call.call, call.count),
            ("carol", true, 2)
        );
    }

    #[test]
    fn queue_order_and_dropping() {
        let now = Instant::now();
        let mut queue = Queue::default();
        for (id, key, delay) in [(0, "a", 50), (1, "b", 0), (2, "c", 10)] {
            queue.insert(Entry {
                id,
                device: Device {
                    key: key.into(),
                    target: Target::UnifiedPush {
                        endpoint: "https://x".into(),
                    },
                    preview: false,
                },
                notification: Notification::new("n", 1),
                due: now + Duration::from_millis(delay),
                attempts: 0,
            });
        }
        let window = settings().window;
        let first = queue.pop_due(now, window).map(|entry| entry.device.key);
        assert_eq!(first, Ok("b".to_owned()));
        assert_eq!(
            queue.pop_due(now, window).map(|entry| entry.id),
            Err(Some(now + Duration::from_millis(10)))
        );
        assert_eq!(
            queue.drop_oldest().map(|entry| entry.device.key),
            Some("a".into())
        );
        assert_eq!(queue.entries.len(), 1);
        assert_eq!(queue.by_due.len(), 1);
        assert_eq!(queue.by_age.len(), 1);
        assert_eq!(queue.in_flight, 1);
    }
}
