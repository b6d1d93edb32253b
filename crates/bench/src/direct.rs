//! Workloads 1 and 5 on any system whose pairs report to a [`Meter`]: one-to-one messages
//! with a delivery receipt each, at saturation and at fixed offered rates, and the bytes on
//! the wire per message and receipt.
//!
//! A run is a warm-up, then a measured window: the server's CPU time is read from /proc at
//! both ends of the window, deliveries are counted when they arrive inside it, and the
//! latencies are those of messages sent inside it. After the window the senders stop and
//! the run drains: every message and receipt must arrive before the next run starts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::load::{Meter, Offer, Percentiles, Run};
use crate::process;

/// The figures of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    /// What was offered, for people ("saturation, 16 in flight per pair", "3000/s").
    pub label: String,
    /// The offered rate, for fixed-rate runs.
    pub offered_per_s: Option<f64>,
    /// Messages in flight per pair, for saturation runs.
    pub window: Option<u32>,
    /// Messages sent per second in the window.
    pub sent_per_s: f64,
    /// Messages delivered to their recipient per second in the window.
    pub delivered_per_s: f64,
    /// Delivery latency (sender's publish to recipient's receipt of it), µs.
    pub latency: Percentiles,
    /// mqchat only: latency of the "sent" confirmation (the stored copy back at the sender).
    pub confirm: Option<Percentiles>,
    /// Server CPU time per delivered message, µs.
    pub server_cpu_us_per_msg: f64,
    /// Server CPU use in the window, percent of one core.
    pub server_cpu_percent: f64,
    /// The load generator's CPU use in the window, percent of one core.
    pub loadgen_cpu_percent: f64,
    /// Server resident memory at the end of the window, KiB.
    pub server_rss_kib: u64,
    /// Error replies and failed connections.
    pub errors: u64,
    /// How far the senders fell behind their schedule at worst, ms.
    pub max_lag_ms: f64,
    /// Whether every message and receipt arrived after the window.
    pub drained: bool,
    /// /proc/loadavg when the run started.
    pub load_before: String,
}

/// Bytes on the wire per message and its receipt (workload 5).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireResult {
    /// Messages (each with its receipt) in the count.
    pub messages: u64,
    /// Client-to-server bytes per message.
    pub up_per_msg: f64,
    /// Server-to-client bytes per message.
    pub down_per_msg: f64,
    /// Both directions.
    pub total_per_msg: f64,
}

/// How long and how hard to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Each measured window.
    pub duration: Duration,
    /// Messages in flight per pair at saturation.
    pub window: u32,
    /// Fixed offered rates (messages/s in total) measured besides half the saturation rate.
    pub rates: Vec<f64>,
    /// The longest a run may take to drain.
    pub drain: Duration,
    /// Print a line per second of each run.
    pub timeline: bool,
}

/// The current 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What has to come back for a message to count as fully handled.
fn settled(run: &Run, confirmations: bool) -> bool {
    let sent = run.sent.load(Ordering::Relaxed);
    run.delivered.load(Ordering::Relaxed) >= sent
        && run.receipts.load(Ordering::Relaxed) >= sent
        && (!confirmations || run.confirmed.load(Ordering::Relaxed) >= sent)
}

async fn drain(run: &Run, confirmations: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if settled(run, confirmations) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settled(run, confirmations)
}

/// One run: `offer` for the warm-up and the window, then drain. `pid` is the server's.
/// `confirmations`: whether the system sends "sent" confirmations (mqchat).
pub async fn measure(
    meter: &Arc<Meter>,
    pid: u32,
    label: String,
    offer: Offer,
    plan: &Plan,
    confirmations: bool,
) -> anyhow::Result<RunResult> {
    let load_before = load_average();
    let run = meter.start(offer, plan.warmup, plan.duration);
    let timeline = plan
        .timeline
        .then(|| tokio::spawn(print_timeline(run.clone(), pid)));
    tokio::time::sleep_until(run.measure_from.into()).await;
    let (server0, own0, t0) = (process::usage(pid)?, process::own_usage()?, Instant::now());
    tokio::time::sleep_until(run.measure_to.into()).await;
    let (server1, own1, t1) = (process::usage(pid)?, process::own_usage()?, Instant::now());
    let drained = drain(&run, confirmations, plan.drain).await;
    meter.stop();
    if let Some(t) = timeline {
        t.abort();
    }
    let seconds = t1.duration_since(t0).as_secs_f64();
    let delivered = run.delivered_in_window.load(Ordering::Relaxed);
    let server_cpu = (server1.cpu - server0.cpu).as_secs_f64();
    let own_cpu = own1.cpu.saturating_sub(own0.cpu).as_secs_f64();
    let latency = run.latencies();
    let confirm = confirmations.then(|| Percentiles::of(&run.confirm_latencies()));
    Ok(RunResult {
        label,
        offered_per_s: match offer {
            Offer::Rate(r) => Some(r),
            _ => None,
        },
        window: match offer {
            Offer::Window(w) => Some(w),
            _ => None,
        },
        sent_per_s: run.sent_in_window.load(Ordering::Relaxed) as f64 / seconds,
        delivered_per_s: delivered as f64 / seconds,
        latency: Percentiles::of(&latency),
        confirm,
        server_cpu_us_per_msg: if delivered == 0 {
            0.0
        } else {
            server_cpu * 1e6 / delivered as f64
        },
        server_cpu_percent: server_cpu * 100.0 / seconds,
        loadgen_cpu_percent: own_cpu * 100.0 / seconds,
        server_rss_kib: server1.rss_kib,
        errors: run.errors.load(Ordering::Relaxed),
        max_lag_ms: run.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        drained,
        load_before,
    })
}

/// Every second until aborted: messages sent and delivered, the latency of what arrived,
/// the server's CPU use.
async fn print_timeline(run: Arc<Run>, pid: u32) {
    let start = Instant::now();
    let (mut sent, mut delivered) = (0, 0);
    let mut cpu = process::usage(pid).map(|u| u.cpu).unwrap_or_default();
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (s, d) = (
            run.sent.load(Ordering::Relaxed),
            run.delivered.load(Ordering::Relaxed),
        );
        let now_cpu = process::usage(pid).map(|u| u.cpu).unwrap_or_default();
        let recent = run.latencies_since(seen);
        seen += recent.len();
        let p = Percentiles::of(&recent);
        eprintln!(
            "  {:>5.1} s: sent {:>6}/s delivered {:>6}/s, window latency p50 {:.1} ms max {:.1} ms, server CPU {:.0}%",
            start.elapsed().as_secs_f64(),
            s - sent,
            d - delivered,
            f64::from(p.p50) / 1000.0,
            f64::from(p.max) / 1000.0,
            now_cpu.saturating_sub(cpu).as_secs_f64() * 100.0
        );
        (sent, delivered, cpu) = (s, d, now_cpu);
    }
}

/// Prints one run's figures on stderr as they come.
pub fn print_run(system: &str, r: &RunResult) {
    eprintln!(
        "{system}: {}: delivered {:.0}/s (sent {:.0}/s), latency p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms, \
         server {:.0} µs CPU/msg ({:.0}% of a core), RSS {} MiB, loadgen {:.0}%, errors {}, lag {:.1} ms{}",
        r.label,
        r.delivered_per_s,
        r.sent_per_s,
        f64::from(r.latency.p50) / 1000.0,
        f64::from(r.latency.p99) / 1000.0,
        f64::from(r.latency.p999) / 1000.0,
        r.server_cpu_us_per_msg,
        r.server_cpu_percent,
        r.server_rss_kib / 1024,
        r.loadgen_cpu_percent,
        r.errors,
        r.max_lag_ms,
        if r.drained { "" } else { ", NOT DRAINED" },
    );
}

/// Fixed rates above this multiple of the saturation rate are not run: they would only
/// measure a queue growing for the whole window, and take long to drain.
const OVERLOAD: f64 = 1.5;

/// Saturation, then half the saturation rate, then each fixed rate up to [`OVERLOAD`] times
/// the saturation rate.
pub async fn sequence(
    system: &str,
    meter: &Arc<Meter>,
    pid: u32,
    plan: &Plan,
    confirmations: bool,
) -> anyhow::Result<Vec<RunResult>> {
    let mut results = Vec::new();
    let saturation = measure(
        meter,
        pid,
        format!("saturation ({} in flight per pair)", plan.window),
        Offer::Window(plan.window),
        plan,
        confirmations,
    )
    .await
    .context("saturation run")?;
    print_run(system, &saturation);
    let max = saturation.delivered_per_s;
    results.push(saturation);
    let mut rates = vec![(max * 0.5, "50% of saturation".to_owned())];
    for &rate in &plan.rates {
        if rate <= max * 0.9 {
            rates.push((rate, format!("{rate:.0}/s offered")));
        } else if rate <= max * OVERLOAD {
            // Just above saturation: worth seeing how the queue and the latency grow.
            rates.push((rate, format!("{rate:.0}/s offered, above saturation")));
        } else {
            eprintln!(
                "{system}: {rate:.0}/s not run: more than {OVERLOAD}× the saturation rate ({max:.0}/s)"
            );
        }
    }
    for (rate, label) in rates {
        let rate = rate.max(1.0);
        let r = measure(meter, pid, label, Offer::Rate(rate), plan, confirmations)
            .await
            .with_context(|| format!("run at {rate:.0}/s"))?;
        print_run(system, &r);
        results.push(r);
    }
    Ok(results)
}

/// Workload 5: one message in flight per pair for `duration`, every receipt back, and the
/// server's socket counters on `port` before and after.
pub async fn wire_bytes(
    meter: &Arc<Meter>,
    port: u16,
    duration: Duration,
    confirmations: bool,
) -> anyhow::Result<WireResult> {
    let before = crate::wire::count(port)?;
    let run = meter.start(Offer::Window(1), Duration::ZERO, duration);
    tokio::time::sleep_until(run.measure_to.into()).await;
    let drained = drain(&run, confirmations, Duration::from_secs(60)).await;
    meter.stop();
    // The last receipts' TCP segments are counted once they are handed to the socket: give
    // the kernel a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = crate::wire::count(port)?;
    anyhow::ensure!(drained, "wire run did not drain");
    let n = run.delivered.load(Ordering::Relaxed);
    anyhow::ensure!(n > 0, "no message delivered in the wire run");
    let up = (after.received - before.received) as f64 / n as f64;
    let down = (after.sent - before.sent) as f64 / n as f64;
    Ok(WireResult {
        messages: n,
        up_per_msg: up,
        down_per_msg: down,
        total_per_msg: up + down,
    })
}
