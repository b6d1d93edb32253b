//! Issue 15's floods as benchmarks: a flood of failed logins (`login.rs`) and a flood of
//! messages from one device (`message.rs`), each against a `mqchat serve` of its own
//! process, so that the memory and CPU read from `/proc` are the server's alone while the
//! attackers and the bystanders run here.
//!
//! What is shared: the server's memory (`VmRSS`, `VmHWM`) sampled while a flood runs, the
//! accounts written into the store before the server starts, and the server's log lines
//! read back afterwards.

pub mod login;
pub mod message;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use mqchat_proto::{DeviceId, UserId};
use mqchat_store::{Durability, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::mqchat;

/// A process's memory at one moment, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Resident set (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// The largest resident set since the process started (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// Threads (`Threads`).
    pub threads: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(Memory {
        rss_kib: status_kib(&text, "VmRSS:").with_context(|| format!("no VmRSS in {path}"))?,
        hwm_kib: status_kib(&text, "VmHWM:").with_context(|| format!("no VmHWM in {path}"))?,
        threads: status_value(&text, "Threads:")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no Threads in {path}"))?,
    })
}

/// The value of a `Name:   1234 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status_value(status, name)?
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// The text after `name` on its line of `/proc/<pid>/status`, trimmed.
fn status_value<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    Some(status.lines().find_map(|l| l.strip_prefix(name))?.trim())
}

/// KiB as MiB, for people.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The server's resident set, sampled on a fixed period until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(Duration, Memory)>>,
}

impl Sampler {
    /// Starts sampling `pid` every `every`; times are from now.
    pub fn start(pid: u32, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                match memory(pid) {
                    Ok(m) => samples.push((start.elapsed(), m)),
                    // The server is gone: the workload notices and says so.
                    Err(_) => break,
                }
            }
            samples
        });
        Self { stop, task }
    }

    /// Stops, returning (time since start, memory) samples.
    pub async fn stop(self) -> Vec<(Duration, Memory)> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The largest resident set and thread count in each whole second, (second, RSS KiB,
/// threads): a timeline short enough to print.
pub fn per_second_peaks(samples: &[(Duration, Memory)]) -> Vec<(u64, u64, u64)> {
    let mut peaks: Vec<(u64, u64, u64)> = Vec::new();
    for (t, m) in samples {
        let second = t.as_secs();
        match peaks.last_mut() {
            Some((s, rss, threads)) if *s == second => {
                *rss = (*rss).max(m.rss_kib);
                *threads = (*threads).max(m.threads);
            }
            _ => peaks.push((second, m.rss_kib, m.threads)),
        }
    }
    peaks
}

/// An account to create before the server starts.
#[derive(Clone, Debug)]
pub struct Account {
    /// The user id.
    pub user: String,
    /// Its password (argon2id in the store), if it has one.
    pub password: Option<String>,
    /// Devices to create, each with a token.
    pub devices: Vec<String>,
}

/// Creates the accounts in the data directory's store, returning each account's device
/// tokens in order. Setup, not measured: unsynced commits.
pub fn add_accounts(data_dir: &Path, accounts: &[Account]) -> anyhow::Result<Vec<Vec<String>>> {
    let mut store = Store::open(&mqchat::database(data_dir), Durability::Normal)?;
    let now = mqchat::now_ms();
    accounts
        .iter()
        .map(|account| {
            let user = UserId::parse(&account.user)?;
            store.add_user(&user, account.password.as_deref(), now)?;
            account
                .devices
                .iter()
                .map(|device| Ok(store.add_device(&user, &DeviceId::parse(device)?, now)?))
                .collect()
        })
        .collect()
}

/// Runs `task` on a runtime of its own, on a thread of its own, and returns its result
/// through the receiver. The attackers run so: their tasks never queue in front of the
/// measured clients' tasks (they still share the CPU, as an attacker on the same machine
/// would), so what the measured clients see is the server's doing.
pub fn apart<F, Fut, T>(name: &str, task: F) -> anyhow::Result<oneshot::Receiver<T>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (done, result) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(runtime.block_on(task()));
        })?;
    Ok(result)
}

/// The value of `key=` in a log line of the server (tracing's text format: `key=value`
/// fields after the message).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Lines of the server's log that contain `message`.
fn log_lines<'a>(log: &'a str, message: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    log.lines().filter(move |l| l.contains(message))
}

/// Values that tasks add to (plain data: a panic elsewhere cannot leave them broken).
#[derive(Debug)]
pub struct Samples<T>(Mutex<Vec<T>>);

impl<T> Default for Samples<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T: Clone> Samples<T> {
    /// Adds one.
    pub fn push(&self, value: T) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(value);
    }

    /// A copy of all.
    pub fn all(&self) -> Vec<T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Sorted microseconds of durations (for [`crate::load::Percentiles`]).
pub fn sorted_us(durations: impl IntoIterator<Item = Duration>) -> Vec<u32> {
    let mut v: Vec<u32> = durations
        .into_iter()
        .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let status = "Name:\tmqchat\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n";
        assert_eq!(status_value(status, "Threads:"), Some("9"));
        assert_eq!(status_kib(status, "VmRSS:"), Some(40_960));
        assert_eq!(status_kib(status, "VmHWM:"), Some(51_234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS:\tlots kB\n", "VmRSS:"), None);
    }

    #[test]
    fn peaks_per_second() {
        let ms = Duration::from_millis;
        let m = |rss_kib, threads| Memory {
            rss_kib,
            hwm_kib: 0,
            threads,
        };
        let samples = [
            (ms(0), m(10, 9)),
            (ms(500), m(30, 8)),
            (ms(900), m(20, 12)),
            (ms(1_100), m(5, 3)),
            (ms(3_000), m(7, 4)),
        ];
        assert_eq!(
            per_second_peaks(&samples),
            [(0, 30, 12), (1, 5, 3), (3, 7, 4)]
        );
    }

    #[test]
    fn log_fields() {
        let line = "2026-11-25T10:00:00.000Z  WARN mqchat_hub::throttle: failed logins: \
                    attempts from this address wait source=127.0.0.1 failures=42 \
                    refused_meanwhile=7 wait_ms=60000";
        assert_eq!(field(line, "failures"), Some("42"));
        assert_eq!(field(line, "source"), Some("127.0.0.1"));
        assert_eq!(field(line, "refused"), None);
        assert_eq!(field(line, "user"), None);
    }
}
