//! Where mqchat's server spends its time: `perf` on the server process during a fixed-rate
//! run of workload 1. CPU samples (the `cpu-clock` software event, which works in virtual
//! machines without hardware counters) with DWARF call stacks give the inclusive share of
//! each part of the pipeline; syscall tracepoints give the system calls per delivered
//! message (fsync, socket writes, thread wake-ups).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::compare::Setup;
use crate::load::{Meter, Offer};
use crate::mqchat;

/// The parts of the server named in the profile: a label and the stack frames (substrings
/// of symbol names) that put a sample in it. A sample counts once per part, whatever its
/// depth: the shares are inclusive and overlap (parts nest).
const PARTS: &[(&str, &[&str])] = &[
    (
        "broker: rmqtt connection tasks",
        &["rmqtt::session::SessionState::run"],
    ),
    (
        "hub tap: publishes handed to the hub (on the connection tasks)",
        &["mqchat_server::link::tap::Tap"],
    ),
    (
        "broker: socket writes (one writev per packet)",
        &["rmqtt_net::stream::send"],
    ),
    (
        "broker: access checks (spawn_blocking per PUBLISH/SUBSCRIBE)",
        &[
            "mqchat_server::gate::BrokerGate",
            "mqchat_hub::access::Gate",
        ],
    ),
    (
        // `Broker::publish` is inlined into the publisher.
        "hub publisher: routing into the broker's sessions (or the MQTT link's event loop)",
        &[
            "mqchat_server::link::mqtt::run_link",
            "mqchat_server::link::publisher::run_publisher",
        ],
    ),
    (
        "hub worker: engine and store (one thread)",
        &["mqchat_server::link::worker::run_worker"],
    ),
    (
        "store: participants query",
        &["<impl mqchat_store::archive::Tx>::participants"],
    ),
    (
        "store: statements re-prepared at every step (sqlite3Reprepare)",
        &["sqlite3Reprepare"],
    ),
    (
        "store: SQL parsing (sqlite3RunParser)",
        &["sqlite3RunParser"],
    ),
    (
        "store: append event",
        &["<impl mqchat_store::archive::Tx>::append"],
    ),
    (
        "store: change tokens (touch, next_change)",
        &["Tx::touch", "Tx::next_change"],
    ),
    (
        "store: markers",
        &["<impl mqchat_store::archive::Tx>::set_markers"],
    ),
    (
        "store: commit (WAL write and fsync)",
        &["mqchat_store::archive::Tx::commit"],
    ),
    (
        "store: outbox confirmation",
        &["<impl mqchat_hub::engine::Engine>::confirm"],
    ),
    (
        "hub: rendering and encoding",
        &["mqchat_hub::render", "Packet::encode"],
    ),
    (
        "hub: edge check (decode, schema)",
        &["mqchat_proto::upstream::accept"],
    ),
    (
        "kernel: TCP send and receive",
        &["tcp_sendmsg", "tcp_recvmsg"],
    ),
    ("malloc and free", &["malloc", "cfree", "_int_free"]),
];

/// System calls counted per delivered message.
const SYSCALLS: &[&str] = &[
    "fsync",
    "fdatasync",
    "pwrite64",
    "writev",
    "write",
    "sendto",
    "recvfrom",
    "read",
    "futex",
    "epoll_wait",
];

/// One part's share of the server's CPU samples.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Share {
    /// The part.
    pub part: String,
    /// Percent of the server's samples (inclusive).
    pub percent: f64,
    /// The same in µs of server CPU per delivered message.
    pub us_per_msg: f64,
}

/// The profile of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    /// Offered rate, messages/s.
    pub rate: f64,
    /// Messages delivered while profiling.
    pub delivered: u64,
    /// Seconds profiled.
    pub seconds: f64,
    /// Server CPU per delivered message while profiling (perf adds some), µs.
    pub server_cpu_us_per_msg: f64,
    /// CPU samples taken.
    pub samples: usize,
    /// Inclusive shares of the named parts.
    pub shares: Vec<Share>,
    /// Busiest threads: name and percent of the samples.
    pub threads: Vec<(String, f64)>,
    /// System calls per delivered message.
    pub syscalls_per_msg: Vec<(String, f64)>,
}

/// Whether `perf` can sample here (it needs `perf_event_paranoid` ≤ 2 or root).
pub fn available() -> bool {
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Profiles mqchat's server for `seconds` during a run at `rate` messages/s.
pub async fn profile(setup: &Setup, rate: f64, seconds: u64) -> anyhow::Result<Profile> {
    if !available() {
        bail!("perf cannot sample here (install linux-perf; check perf_event_paranoid)");
    }
    mqchat::check_binary(&setup.bin)?;
    let dir = tempfile::Builder::new()
        .prefix("mqchat-profile-")
        .tempdir()?;
    let users: Vec<String> = (0..setup.pairs)
        .flat_map(|i| {
            let (a, b) = mqchat::pair_users(i);
            [a, b]
        })
        .collect();
    let tokens = mqchat::add_devices(dir.path(), &users)?;
    let server = mqchat::Server::start(&setup.bin, dir.path(), &setup.durability)?;
    let meter = Meter::new(setup.pairs);
    let mut tasks = JoinSet::new();
    let outcome = async {
        mqchat::start_pairs(server.addr(), &tokens, &meter, &mut tasks).await?;
        let window = Duration::from_secs(seconds + 2);
        let run = meter.start(Offer::Rate(rate), setup.plan.warmup, window);
        tokio::time::sleep_until(run.measure_from.into()).await;
        let pid = server.pid().to_string();
        let data = dir.path().join("perf.data");
        let stat = dir.path().join("perf-stat.csv");
        let events: Vec<String> = SYSCALLS
            .iter()
            .map(|s| format!("syscalls:sys_enter_{s}"))
            .collect();
        let cpu0 = crate::process::usage(server.pid())?.cpu;
        let delivered0 = run.delivered.load(Ordering::Relaxed);
        let secs = seconds.to_string();
        let mut record = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "499"])
            .args(["--call-graph", "dwarf,16384", "-p", &pid, "-o"])
            .arg(&data)
            .args(["--", "sleep", &secs])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        let mut counting = Command::new("perf")
            .args(["stat", "-x", ",", "-e", &events.join(","), "-p", &pid, "-o"])
            .arg(&stat)
            .args(["--", "sleep", &secs])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf stat")?;
        let (record, counting) =
            tokio::task::spawn_blocking(move || (record.wait(), counting.wait())).await?;
        let delivered = run.delivered.load(Ordering::Relaxed) - delivered0;
        let cpu = crate::process::usage(server.pid())?.cpu - cpu0;
        anyhow::ensure!(record?.success() && counting?.success(), "perf failed");
        anyhow::ensure!(delivered > 0, "nothing delivered while profiling");
        meter.stop();
        let server_cpu_us_per_msg = cpu.as_secs_f64() * 1e6 / delivered as f64;
        let (samples, shares, threads) =
            tokio::task::spawn_blocking(move || stack_shares(&data)).await??;
        let shares = shares
            .into_iter()
            .map(|(part, percent)| Share {
                part,
                percent,
                us_per_msg: percent / 100.0 * server_cpu_us_per_msg,
            })
            .collect();
        let syscalls_per_msg = syscall_counts(&stat)?
            .into_iter()
            .map(|(name, n)| (name, n as f64 / delivered as f64))
            .collect();
        anyhow::Ok(Profile {
            rate,
            delivered,
            seconds: seconds as f64,
            server_cpu_us_per_msg,
            samples,
            shares,
            threads,
            syscalls_per_msg,
        })
    }
    .await;
    tasks.abort_all();
    server.stop();
    outcome
}

type Shares = (usize, Vec<(String, f64)>, Vec<(String, f64)>);

/// Reads the recorded stacks (`perf script`) and computes each part's inclusive share and
/// each thread's share.
fn stack_shares(data: &Path) -> anyhow::Result<Shares> {
    let out = Command::new("perf")
        .args(["script", "-F", "comm,ip,sym", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = vec![0usize; PARTS.len()];
    let mut threads: std::collections::BTreeMap<String, usize> = Default::default();
    let mut samples = 0;
    // A sample is a line with the thread name, then one line per frame starting with a
    // tab, then a blank line.
    let mut frames: Vec<&str> = Vec::new();
    let mut flush = |frames: &mut Vec<&str>, samples: &mut usize| {
        let Some((comm, stack)) = frames.split_first() else {
            return;
        };
        *samples += 1;
        *threads.entry((*comm).to_owned()).or_default() += 1;
        for (i, (_, needles)) in PARTS.iter().enumerate() {
            if stack.iter().any(|f| needles.iter().any(|n| f.contains(n))) {
                counts[i] += 1;
            }
        }
        frames.clear();
    };
    for line in text.lines() {
        if line.starts_with('\t') {
            if !frames.is_empty() {
                frames.push(line.trim());
            }
        } else if line.trim().is_empty() {
            flush(&mut frames, &mut samples);
        } else {
            flush(&mut frames, &mut samples);
            frames.push(line.trim());
        }
    }
    flush(&mut frames, &mut samples);
    anyhow::ensure!(samples > 0, "perf recorded no samples");
    let percent = |n: usize| n as f64 * 100.0 / samples as f64;
    let shares = PARTS
        .iter()
        .zip(&counts)
        .map(|((part, _), &n)| ((*part).to_owned(), percent(n)))
        .collect();
    let mut threads: Vec<(String, f64)> =
        threads.into_iter().map(|(t, n)| (t, percent(n))).collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok((samples, shares, threads))
}

/// Reads `perf stat -x ,` output: count, unit, event name.
fn syscall_counts(path: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let count = fields.first()?.trim().parse::<u64>().ok()?;
            let name = fields.get(2)?.strip_prefix("syscalls:sys_enter_")?;
            Some((name.to_owned(), count))
        })
        .collect())
}
