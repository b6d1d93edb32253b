//! Administration that takes effect at once: `mqchat user disable|delete|passwd` and
//! `mqchat device revoke` write the sessions they end into the store (another process, the
//! CLI, on the same database); this task reads the rows it has not seen, a few times a
//! second, and closes those devices' broker sessions by session takeover (the link's
//! [`Evictor`], which works with the embedded broker and with any external one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqchat_proto::DeviceIdentity;
use mqchat_store::{SessionEnd, Store, StoreError};

use crate::clock::Clock;
use crate::link::Evictor;

/// How often the store is read for ended sessions.
const INTERVAL: Duration = Duration::from_millis(250);

/// How long ended-session rows are kept (every server running then has seen them).
const KEEP_MS: u64 = 3_600_000;

/// Rows read at a time.
const PAGE: usize = 1_000;

/// The running watch.
#[derive(Debug)]
pub(crate) struct SessionEnds {
    task: tokio::task::JoinHandle<()>,
}

impl SessionEnds {
    /// Starts watching from the newest row now in the store (sessions ended before the
    /// server started ended with the previous process).
    pub(crate) fn start(store: Store, evictor: Evictor) -> Result<Self, StoreError> {
        let last = store.last_session_end()?;
        let store = Arc::new(Mutex::new(store));
        let task = tokio::spawn(watch(store, evictor, last));
        Ok(Self { task })
    }

    /// Stops watching.
    pub(crate) fn stop(self) {
        self.task.abort();
    }
}

async fn watch(store: Arc<Mutex<Store>>, evictor: Evictor, mut last: i64) {
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        ticker.tick().await;
        ticks += 1;
        let prune = ticks.is_multiple_of(240);
        let store = store.clone();
        let read = tokio::task::spawn_blocking(move || read(&store, last, prune)).await;
        let ends = match read {
            Ok(Ok(ends)) => ends,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the sessions administration ended");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "the watch of ended sessions failed");
                continue;
            }
        };
        for end in ends {
            last = last.max(end.id);
            let device = DeviceIdentity {
                user: end.user,
                device: end.device,
            };
            tracing::info!(device = %device, reason = %end.reason, "ending the device's live session");
            tokio::spawn(evictor.clone().evict(device));
        }
    }
}

fn read(store: &Mutex<Store>, after: i64, prune: bool) -> Result<Vec<SessionEnd>, StoreError> {
    // A panic while holding the lock leaves the connection usable (SQLite rolls back).
    let mut store = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if prune {
        store.prune_session_ends(Clock::wall().unix_ms().saturating_sub(KEEP_MS))?;
    }
    store.session_ends_after(after, PAGE)
}
