//! Logins without exhausting the server: the gate's first step on a blocking thread, the
//! password verification (argon2id, 19 MiB and tens of milliseconds each) on a fixed pool
//! of threads shared fairly among source addresses, then the gate's last step.
//!
//! The pool bounds both the memory (a few threads, each with one hash's memory, instead of
//! one blocking thread and allocator arena per attempt) and the CPU that password attempts
//! can take. Its queue is per source, served round robin, so that a flood from one address
//! delays a password login from another by about one hash per busy source; each source may
//! queue [`LoginConfig::queue_per_source`] checks, and more are refused at once as
//! throttled. Device-token logins never enter the pool.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};

use mqchat_hub::throttle::Source;
use mqchat_hub::{Admission, Attempt, Door, Gate, Login};
use tokio::sync::oneshot;

use crate::clock::Clock;

/// Settings of the password pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginConfig {
    /// Threads verifying passwords.
    pub workers: usize,
    /// Password checks one source may have waiting or running.
    pub queue_per_source: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            queue_per_source: 16,
        }
    }
}

struct Job {
    hash: Option<String>,
    password: String,
    reply: oneshot::Sender<Result<bool, String>>,
}

#[derive(Default)]
struct Queue {
    by_source: HashMap<Source, VecDeque<Job>>,
    /// Sources with jobs, in the order they are served.
    turn: VecDeque<Source>,
    stopped: bool,
}

impl Queue {
    fn next(&mut self) -> Option<Job> {
        let source = self.turn.pop_front()?;
        let jobs = self.by_source.get_mut(&source)?;
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.by_source.remove(&source);
        } else {
            self.turn.push_back(source);
        }
        job
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    per_source: usize,
    /// Passwords verified since the start.
    checked: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is consistent between statements; a panic elsewhere does not break it.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The password pool and the gate: decides CONNECTs.
pub struct Logins {
    gate: Arc<Gate>,
    /// The gate's clock: its throttle runs on it.
    clock: Clock,
    shared: Arc<Shared>,
    /// The pool's threads: they end after [`Logins::stop`].
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Logins {
    /// Starts the pool's threads.
    pub fn start(gate: Arc<Gate>, config: &LoginConfig) -> std::io::Result<Self> {
        mqchat_store::prepare_decoy();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            per_source: config.queue_per_source.max(1),
            checked: std::sync::atomic::AtomicU64::new(0),
        });
        let workers = (0..config.workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("mqchat-login-{i}"))
                    .spawn(move || work(&shared))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            gate,
            clock: Clock::start(),
            shared,
            workers,
        })
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// How many passwords the pool has verified since the start.
    pub fn password_checks(&self) -> u64 {
        self.shared
            .checked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Decides a CONNECT.
    pub async fn decide(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        peer: Option<SocketAddr>,
        door: Door,
    ) -> Admission {
        let (gate, clock) = (self.gate.clone(), self.clock);
        let (owned_client, owned_user, owned_password) = (
            client_id.to_owned(),
            username.map(str::to_owned),
            password.map(<[u8]>::to_vec),
        );
        let first = tokio::task::spawn_blocking(move || {
            let attempt = Attempt {
                client_id: &owned_client,
                username: owned_user.as_deref(),
                password: owned_password.as_deref(),
                source: peer.map(|p| p.ip()),
                door,
            };
            gate.begin_login(&attempt, clock.now())
        })
        .await;
        let check = match first {
            Ok(Login::Done(admission)) => return admission,
            Ok(Login::Verify(check)) => check,
            Err(e) => {
                tracing::error!(error = %e, "login task failed");
                return Admission::NotAuthorized;
            }
        };
        let password = password
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or_default()
            .to_owned();
        let Some(verdict) = self.verify(check.source(), check.hash(), password) else {
            tracing::debug!(client_id, source = %check.source(), "login refused: the address has too many password checks waiting");
            return Admission::Throttled;
        };
        let verified = verdict
            .await
            .unwrap_or_else(|_| Err("the password pool stopped".to_owned()));
        let gate = self.gate.clone();
        let clock = self.clock;
        tokio::task::spawn_blocking(move || gate.finish_login(check, verified, clock.now()))
            .await
            .unwrap_or(Admission::NotAuthorized)
    }

    /// Queues a verification; `None` when the source has its share queued already.
    fn verify(
        &self,
        source: Source,
        hash: Option<&str>,
        password: String,
    ) -> Option<oneshot::Receiver<Result<bool, String>>> {
        let (reply, verdict) = oneshot::channel();
        let mut queue = self.shared.queue();
        let jobs = queue.by_source.entry(source).or_default();
        if jobs.len() >= self.shared.per_source {
            return None;
        }
        let first = jobs.is_empty();
        jobs.push_back(Job {
            hash: hash.map(str::to_owned),
            password,
            reply,
        });
        if first {
            queue.turn.push_back(source);
        }
        drop(queue);
        self.shared.ready.notify_one();
        Some(verdict)
    }

    /// Stops the threads once they finish the checks they have taken; checks still queued
    /// are answered as failed (their connections are closing anyway).
    pub fn stop(&self) {
        self.shared.queue().stopped = true;
        self.shared.ready.notify_all();
    }
}

impl Drop for Logins {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(shared: &Shared) {
    // The thread's argon2 memory, allocated at its first check and kept.
    let mut memory = mqchat_store::PasswordMemory::default();
    loop {
        let job = {
            let mut queue = shared.queue();
            loop {
                if queue.stopped {
                    return;
                }
                if let Some(job) = queue.next() {
                    break job;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // A connection that went away while waiting needs no answer.
        if job.reply.is_closed() {
            continue;
        }
        let verdict = memory.verify(job.hash.as_deref(), &job.password);
        shared
            .checked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = job.reply.send(verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(i: u8) -> Source {
        Source::of(Some(std::net::IpAddr::from([192, 0, 2, i])))
    }

    fn job() -> (Job, oneshot::Receiver<Result<bool, String>>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            hash: None,
            password: String::new(),
            reply,
        };
        (job, rx)
    }

    #[test]
    fn sources_take_turns() {
        let mut queue = Queue::default();
        let mut keep = Vec::new();
        for (s, n) in [(1, 3), (2, 1), (3, 2)] {
            for _ in 0..n {
                let (job, rx) = job();
                keep.push(rx);
                let jobs = queue.by_source.entry(source(s)).or_default();
                if jobs.is_empty() {
                    queue.turn.push_back(source(s));
                }
                jobs.push_back(job);
            }
        }
        let mut order = Vec::new();
        while let Some(source) = queue.turn.front().copied() {
            queue.next().expect("a job");
            order.push(source.to_string());
        }
        assert_eq!(
            order,
            [
                "192.0.2.1",
                "192.0.2.2",
                "192.0.2.3",
                "192.0.2.1",
                "192.0.2.3",
                "192.0.2.1"
            ]
        );
        assert!(queue.by_source.is_empty());
    }
}
