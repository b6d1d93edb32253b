//! Running systems through the workloads, one at a time, and the whole comparison.
//!
//! Each system gets a fresh server, the same pairs, the same plan: saturation, half of it,
//! the fixed rates, then the wire-bytes run. Then the server stops before the next starts,
//! so that nothing else of ours competes for the two cores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::direct::{self, Plan};
use crate::load::Meter;
use crate::peer::{self, Kind};
use crate::report::{Results, SystemResult};
use crate::{mqchat, plain, profile, sessions, xmpp};

/// What to run.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The mqchat binary.
    pub bin: PathBuf,
    /// mqchat's durability mode.
    pub durability: String,
    /// User pairs.
    pub pairs: usize,
    /// Warm-up, window, rates.
    pub plan: Plan,
    /// Length of the wire-bytes run.
    pub wire: Duration,
}

/// Workloads 1 and 5 on mqchat.
pub async fn mqchat_direct(setup: &Setup) -> anyhow::Result<SystemResult> {
    mqchat::check_binary(&setup.bin)?;
    let dir = tempfile::Builder::new().prefix("mqchat-bench-").tempdir()?;
    let users: Vec<String> = (0..setup.pairs)
        .flat_map(|i| {
            let (a, b) = mqchat::pair_users(i);
            [a, b]
        })
        .collect();
    let tokens = mqchat::add_devices(dir.path(), &users)?;
    let mut server = mqchat::Server::start(&setup.bin, dir.path(), &setup.durability)?;
    let name = format!(
        "mqchat {} (durability {})",
        env!("CARGO_PKG_VERSION"),
        setup.durability
    );
    let storage = if setup.durability == "full" {
        "archive on SQLite (WAL); each batch's commit synced to disk before delivery"
    } else {
        "archive on SQLite (WAL); commits not synced (survive a crash of the process only)"
    }
    .to_owned();
    let meter = Meter::new(setup.pairs);
    let mut tasks = JoinSet::new();
    let outcome = async {
        mqchat::start_pairs(server.addr(), &tokens, &meter, &mut tasks).await?;
        let label = format!("mqchat ({})", setup.durability);
        let runs = direct::sequence(&label, &meter, server.pid(), &setup.plan, true).await?;
        let wire = direct::wire_bytes(&meter, server.addr().port(), setup.wire, true).await?;
        eprintln!("{label}: {:.0} B per message + receipt", wire.total_per_msg);
        anyhow::Ok((runs, wire))
    }
    .await;
    tasks.abort_all();
    // A server that crashed during the runs makes every figure suspect.
    let outcome = outcome.and_then(|o| server.check_running().map(|()| o));
    server.stop();
    Ok(SystemResult::from_outcome(name, storage, outcome))
}

/// Workloads 1 and 5 on a peer.
pub async fn peer_direct(kind: Kind, setup: &Setup) -> anyhow::Result<SystemResult> {
    let mut peer = peer::start(kind)?;
    let meter = Meter::new(setup.pairs);
    let mut tasks = JoinSet::new();
    let (name, storage) = (peer.name.clone(), peer.storage.clone());
    let outcome = async {
        if kind.is_xmpp() {
            xmpp::start_pairs(peer.addr, peer::XMPP_DOMAIN, &meter, &mut tasks).await?;
        } else {
            plain::start_pairs(peer.addr, &meter, &mut tasks).await?;
        }
        let runs = direct::sequence(&name, &meter, peer.pid(), &setup.plan, false).await?;
        let wire = direct::wire_bytes(&meter, peer.addr.port(), setup.wire, false).await?;
        eprintln!("{name}: {:.0} B per message + receipt", wire.total_per_msg);
        anyhow::Ok((runs, wire))
    }
    .await;
    tasks.abort_all();
    let outcome = outcome.and_then(|o| peer.check_running().map(|()| o));
    peer.stop();
    Ok(SystemResult::from_outcome(name, storage, outcome))
}

/// The most device connections one server process can hold under the open-file limit
/// `limit` (which it inherits from us), leaving room for its own files.
pub fn connection_cap(limit: u64) -> usize {
    usize::try_from(limit.saturating_sub(100)).unwrap_or(usize::MAX)
}

/// The steps at which workload 3 measures, up to `target`.
pub fn idle_steps(target: usize) -> Vec<usize> {
    let mut steps: Vec<usize> = [1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 50_000]
        .into_iter()
        .filter(|&s| s < target)
        .collect();
    steps.push(target);
    steps
}

/// Every workload on mqchat and every peer, in one run; results in `results`.
pub async fn compare(
    setup: &Setup,
    peers: &[Kind],
    idle: usize,
    storm: usize,
    fanout: Option<&crate::fanout::Plan>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let report = |r: &SystemResult| {
        if let Some(e) = &r.failure {
            eprintln!("{}: FAILED: {e}", r.name);
        }
    };
    let mine = mqchat_direct(setup).await?;
    report(&mine);
    let saturation = mine
        .runs
        .iter()
        .find(|r| r.window.is_some())
        .map_or(0.0, |r| r.delivered_per_s);
    results.systems.push(mine);
    if setup.durability == "full" {
        // The same without syncing: what the disk costs, and what is left for the CPU.
        let normal = Setup {
            durability: "normal".to_owned(),
            ..setup.clone()
        };
        let r = mqchat_direct(&normal).await?;
        report(&r);
        results.systems.push(r);
    }
    for &kind in peers {
        let r = match peer_direct(kind, setup).await {
            Ok(r) => r,
            Err(e) => SystemResult::failed(format!("{kind:?}"), String::new(), &e),
        };
        report(&r);
        results.systems.push(r);
    }
    if idle > 0 {
        for rmqtt_alone in [false, true] {
            let steps = idle_steps(idle);
            match sessions::idle(&setup.bin, &setup.durability, idle, &steps, rmqtt_alone).await {
                Ok(r) => results.idle.push(r),
                Err(e) => results.notes.push(format!("workload 3 failed: {e:#}")),
            }
        }
    }
    if profile::available() && saturation > 0.0 {
        // Profiled where a real deployment runs: well below saturation, at most 3,000/s.
        let rate = (saturation * 0.5).min(3000.0).round();
        match profile::profile(setup, rate, 5).await {
            Ok(p) => results.profile = Some(p),
            Err(e) => results.notes.push(format!("profile failed: {e:#}")),
        }
    } else {
        results
            .notes
            .push("perf is not available: no profile".to_owned());
    }
    if let Some(plan) = fanout {
        match crate::fanout::fanout(&setup.bin, &setup.durability, plan).await {
            Ok(mut r) => {
                r.command.clone_from(&results.command);
                results.fanout = Some(r);
            }
            Err(e) => results.notes.push(format!("workload 2 failed: {e:#}")),
        }
    }
    if storm > 0 {
        match sessions::storm(&setup.bin, &setup.durability, storm).await {
            Ok(r) => results.storm = Some(r),
            Err(e) => results.notes.push(format!("workload 4 failed: {e:#}")),
        }
    }
    Ok(())
}

/// Whether a peer's program is installed.
pub fn installed(kind: Kind) -> bool {
    let program = match kind {
        Kind::Mosquitto => "/usr/sbin/mosquitto",
        Kind::Rmqtt => return true,
        Kind::Prosody => "/usr/bin/prosody",
        Kind::Ejabberd => "/usr/sbin/ejabberdctl",
    };
    Path::new(program).exists()
}
