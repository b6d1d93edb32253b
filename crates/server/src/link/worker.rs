//! The worker thread: it owns the store's writer, gathers what has arrived into batches
//! (as the [`Batcher`] decides), runs each through the engine in one transaction, and
//! hands the result to the publisher.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mqchat_hub::{ConversationKey, Engine, Upstream};
use mqchat_proto::{Cadence, Moment};
use mqchat_store::Store;
use tokio::sync::mpsc;

use super::batch::{Batcher, Next};
use super::{Ack, Input, Work};
use crate::clock::Clock;

pub(super) fn run_worker(
    mut engine: Engine,
    mut store: Store,
    mut inbound: mpsc::UnboundedReceiver<Input>,
    work: mpsc::Sender<Work>,
    mut confirmations: mpsc::UnboundedReceiver<Vec<(ConversationKey, u64)>>,
) {
    // Deliveries the broker has taken, not yet cleared from the outbox: cleared in the next
    // batch's transaction, or on their own at a tick without packets. They only matter after
    // a crash (an event still in the outbox is delivered again at start).
    let mut done: Vec<(ConversationKey, u64)> = Vec::new();
    let mut batcher = Batcher::new();
    let clock = Clock::start();
    let mut failures = StoreFailures::new(store.path());
    while !batcher.stopped()
        && let Some(first) = inbound.blocking_recv()
    {
        let mut upstream: Vec<Upstream> = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        let mut tick = false;
        let mut next = Some(first);
        batcher.handle_start(clock.at());
        loop {
            while let Some(input) = next.take() {
                match input {
                    // Upstream packets and presence alike: the engine tells them apart by
                    // topic.
                    Input::Publish(publish, ack) => {
                        upstream.push(publish);
                        acks.push(ack);
                        batcher.handle_packet();
                    }
                    Input::Tick => tick = true,
                    Input::Stop => batcher.handle_stop(),
                }
                if batcher.wants_more() {
                    next = inbound.try_recv().ok();
                }
            }
            match batcher.poll_next() {
                Next::WaitUntil(until) => {
                    let wait = until.saturating_since(clock.at());
                    if wait > Duration::ZERO {
                        std::thread::sleep(wait);
                    }
                    next = inbound.try_recv().ok();
                }
                Next::Commit => break,
            }
        }
        if tick {
            let output = engine.tick(&mut store, clock.now());
            failures.note(output.store_failure.as_deref(), clock.at());
            let busy = !output.publishes.is_empty() || !output.pushes.is_empty();
            if busy
                && work
                    .blocking_send(Work {
                        publishes: output.publishes,
                        acks: Vec::new(),
                        delivered: output.delivered,
                        evict: Vec::new(),
                        pushes: output.pushes,
                        presence_ended: Vec::new(),
                    })
                    .is_err()
            {
                break;
            }
        }
        while let Ok(confirmed) = confirmations.try_recv() {
            done.extend(confirmed);
        }
        if upstream.is_empty() {
            if tick && !done.is_empty() {
                if let Err(e) = engine.confirm(&mut store, &done) {
                    tracing::error!(error = %e, "could not clear the outbox; events will be delivered again at restart");
                }
                done.clear();
            }
            continue;
        }
        let output = engine.process_and_confirm(&mut store, clock.now(), &upstream, &done);
        failures.note(output.store_failure.as_deref(), clock.at());
        done.clear();
        let root = &engine.config().root;
        let presence_ended = output
            .presence_ended
            .iter()
            .map(|(reader, owner)| (format!("{reader}:"), format!("{root}/pr/{owner}/")))
            .collect();
        let sent = work.blocking_send(Work {
            publishes: output.publishes,
            acks,
            delivered: output.delivered,
            evict: output.evict,
            pushes: output.pushes,
            presence_ended,
        });
        if sent.is_err() {
            break;
        }
        batcher.handle_handed_on(clock.at());
    }
    while let Ok(confirmed) = confirmations.try_recv() {
        done.extend(confirmed);
    }
    if let Err(e) = engine.confirm(&mut store, &done) {
        tracing::error!(error = %e, "could not clear the outbox; events will be delivered again at restart");
    }
    if let Err(e) = store.checkpoint() {
        tracing::error!(error = %e, "store checkpoint at shutdown failed");
    }
    tracing::debug!("hub worker stopped");
}

/// The store's write failures (a full disk, say), logged once a minute with the free space of
/// the data directory's file system, and once when writing works again: never a line per
/// packet.
struct StoreFailures {
    dir: PathBuf,
    cadence: Cadence,
}

impl StoreFailures {
    fn new(database: &Path) -> Self {
        Self {
            dir: database
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            cadence: Cadence::new(Duration::from_secs(60)),
        }
    }

    /// Notes a batch's outcome: `error` when the store failed in it. Returns the failed
    /// batches a line was logged for, if one was.
    fn note(&mut self, error: Option<&str>, at: Moment) -> Option<u64> {
        let Some(error) = error else {
            if self.cadence.reset() {
                tracing::info!("the store writes again");
            }
            return None;
        };
        let failed_batches = self.cadence.occurred(at)?;
        let free = match free_space(&self.dir) {
            Ok(bytes) => format!("{} MiB", bytes >> 20),
            Err(e) => format!("unknown ({e})"),
        };
        tracing::error!(
            error,
            free,
            dir = %self.dir.display(),
            failed_batches,
            "the store cannot write (is the disk full?): devices get `internal` and send again; logged once a minute"
        );
        Some(failed_batches)
    }
}

/// The bytes an unprivileged process may still write on the file system holding `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_logged_once_a_minute_and_the_recovery_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut failures = StoreFailures::new(&dir.path().join("mqchat.db"));
        assert!(free_space(dir.path()).expect("statvfs") > 0);
        let at = |s: u64| Moment::from_millis(s * 1000);
        let full = Some("database or disk is full");
        assert_eq!(failures.note(full, at(0)), Some(1));
        assert_eq!(failures.note(full, at(30)), None, "not logged again");
        assert_eq!(failures.note(full, at(61)), Some(2), "a minute later");
        assert_eq!(failures.note(None, at(62)), None, "recovered");
        assert!(!failures.cadence.reset(), "the recovery was said once");
        assert_eq!(
            failures.note(full, at(63)),
            Some(1),
            "a new failure is logged at once"
        );
    }
}
