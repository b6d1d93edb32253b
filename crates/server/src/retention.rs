//! The hub's retention job: a thread with its own store connection that applies the
//! configured policy at start and then periodically, in short transactions.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use mqchat_store::{RetentionPass, RetentionPolicy, Store};

use crate::clock::Clock;

/// Events removed per transaction: small enough that the hub's writer never waits long.
const BUDGET: u64 = 5_000;

#[derive(Debug)]
pub(crate) struct RetentionJob {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl RetentionJob {
    /// Starts the job, or returns `None` when the policy keeps everything.
    pub(crate) fn start(
        store: Store,
        policy: RetentionPolicy,
        interval: Duration,
    ) -> std::io::Result<Option<Self>> {
        if !policy.is_active() {
            return Ok(None);
        }
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mqchat-retention".into())
            .spawn(move || run(store, policy, interval, &stopped))?;
        Ok(Some(Self { stop, thread }))
    }

    /// Stops the job (finishing the transaction under way) and waits for it.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(mut store: Store, policy: RetentionPolicy, interval: Duration, stop: &mpsc::Receiver<()>) {
    tracing::info!(?policy, every = ?interval, "archive retention is on");
    loop {
        let mut total = RetentionPass::default();
        loop {
            match store.apply_retention(&policy, Clock::wall().unix_ms(), BUDGET) {
                Ok(pass) => {
                    total.conversations += pass.conversations;
                    total.events += pass.events;
                    if !pass.more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "archive retention failed; trying again next time");
                    break;
                }
            }
            if !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                return;
            }
        }
        if total.events > 0 {
            tracing::info!(
                events = total.events,
                conversations = total.conversations,
                "archive retention removed old events"
            );
        }
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
