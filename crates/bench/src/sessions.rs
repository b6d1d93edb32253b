//! Workloads 3 and 4 (mqchat only): many idle devices with persistent sessions and
//! presence, and a reconnect storm of devices that sync at once.
//!
//! Each device is a user `c{i}` or `s{i}` with one device `phone`, logging in with a device
//! token, subscribing as the spec says (durable inbox and reply topic at QoS 1; ephemeral
//! inbox and its own devices' presence at QoS 0), and publishing its presence (retained).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mqchat_proto::body::{Body, History, HistoryResult, Sync, SyncResult};
use mqchat_proto::{ConversationRef, Packet, PacketKind};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::{Event, Incoming};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::load::Percentiles;
use crate::mqchat::{self, Ids, Server};
use crate::mqtt::{self, Connection};
use crate::process;

/// Connections opened at the same time while filling the server (not during the storm).
const CONNECT_CONCURRENCY: usize = 64;

/// One step of workload 3.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleStep {
    /// Idle devices connected.
    pub connections: usize,
    /// Server resident memory, KiB.
    pub server_rss_kib: u64,
    /// Server CPU time since it started, s.
    pub server_cpu_s: f64,
    /// Seconds since the first connection.
    pub elapsed_s: f64,
}

/// Workload 3's quiet period at the end.
pub const QUIET: Duration = Duration::from_secs(10);

/// Workload 3's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleResult {
    /// The server measured.
    pub server: String,
    /// Devices asked for.
    pub target: usize,
    /// Server RSS before any device connected (with all accounts created), KiB.
    pub baseline_rss_kib: u64,
    /// Measurements at each step.
    pub steps: Vec<IdleStep>,
    /// (RSS at the last step − baseline) / connections, KiB.
    pub rss_per_connection_kib: f64,
    /// Connections per second while filling (logins, subscriptions, presence).
    pub connects_per_s: f64,
    /// Devices still connected at the end (after a quiet period).
    pub still_connected: usize,
    /// Server CPU seconds spent in the quiet period (keep-alives, timers, mqchat's CONNECT
    /// deadline watcher), 0 in results from before it was measured.
    #[serde(default)]
    pub quiet_cpu_s: f64,
    /// What stopped it before the target, if anything.
    pub failure: Option<String>,
    /// The server's durability mode.
    pub durability: String,
}

/// Workload 4's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StormResult {
    /// Devices reconnecting at once.
    pub devices: usize,
    /// Seconds from the storm's start until every device had its CONNACK.
    pub all_connected_s: f64,
    /// Seconds from the storm's start until every device was synced.
    pub all_synced_s: f64,
    /// Per-device time from the storm's start to synced, ms.
    pub synced_ms: Percentiles,
    /// Devices whose broker session had survived (no resubscription needed).
    pub sessions_resumed: usize,
    /// Devices that got their waiting message from the broker's session queue.
    pub queued_delivered: usize,
    /// Devices that needed a history request (the message was not queued).
    pub history_requests: usize,
    /// Devices that failed (connection refused, timeout).
    pub failures: usize,
    /// Server CPU time during the storm, s.
    pub server_cpu_s: f64,
    /// Server resident memory after the storm, KiB.
    pub server_rss_kib: u64,
    /// The server's durability mode.
    pub durability: String,
    /// /proc/loadavg before the storm.
    pub load_before: String,
}

/// Every filter a device subscribes to while active.
fn active_filters(user: &str) -> Vec<(String, QoS)> {
    let mut filters = mqchat::device_filters(user);
    filters.push((format!("{}/in/{user}/e", mqchat::ROOT), QoS::AtMostOnce));
    filters.push((format!("{}/pr/{user}/+", mqchat::ROOT), QoS::AtMostOnce));
    filters
}

async fn connect_idle(addr: SocketAddr, user: String, token: String) -> anyhow::Result<Connection> {
    let mut conn = mqtt::connect(mqtt::options(addr, &mqchat::login(&user, &token)), 16).await?;
    if !conn.session_present {
        conn.subscribe(&active_filters(&user)).await?;
    }
    conn.publish_and_wait(
        &mqchat::presence_topic(&user),
        mqchat::available_payload(),
        true,
    )
    .await?;
    Ok(conn)
}

/// Keeps a connection alive (answering pings) until it fails; counts it while alive.
async fn hold(mut conn: Connection, alive: Arc<AtomicUsize>) {
    alive.fetch_add(1, Ordering::Relaxed);
    loop {
        if conn.events.poll().await.is_err() {
            break;
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The server of workload 3: mqchat, or the embedded broker alone (to tell its share of the
/// memory from the hub's).
#[derive(Debug)]
enum IdleServer {
    Mqchat(Server),
    Rmqtt(crate::peer::Peer),
}

impl IdleServer {
    fn pid(&self) -> u32 {
        match self {
            Self::Mqchat(s) => s.pid(),
            Self::Rmqtt(p) => p.pid(),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::Mqchat(s) => s.addr(),
            Self::Rmqtt(p) => p.addr,
        }
    }

    fn stop(self) {
        match self {
            Self::Mqchat(s) => s.stop(),
            Self::Rmqtt(p) => p.stop(),
        }
    }
}

/// Workload 3: connects `target` idle devices, measuring at each of `steps`; on mqchat, or
/// with `rmqtt_alone` on the embedded broker alone (no hub, no store, no access checks).
pub async fn idle(
    bin: &Path,
    durability: &str,
    target: usize,
    steps: &[usize],
    rmqtt_alone: bool,
) -> anyhow::Result<IdleResult> {
    let dir = tempfile::Builder::new().prefix("mqchat-idle-").tempdir()?;
    let names = users("c", target);
    let (server, tokens, name) = if rmqtt_alone {
        let peer = crate::peer::start(crate::peer::Kind::Rmqtt)?;
        let name = peer.name.clone();
        (
            IdleServer::Rmqtt(peer),
            vec!["bench".to_owned(); target],
            name,
        )
    } else {
        let t = Instant::now();
        let tokens = mqchat::add_devices(dir.path(), &names)?;
        eprintln!(
            "idle: {target} accounts created in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let server = Server::start(bin, dir.path(), durability)?;
        let name = format!(
            "mqchat {} (durability {durability})",
            env!("CARGO_PKG_VERSION")
        );
        (IdleServer::Mqchat(server), tokens, name)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = process::usage(server.pid())?;
    let alive = Arc::new(AtomicUsize::new(0));
    let mut holders = JoinSet::new();
    let mut result = IdleResult {
        server: name.clone(),
        target,
        baseline_rss_kib: baseline.rss_kib,
        steps: Vec::new(),
        rss_per_connection_kib: 0.0,
        connects_per_s: 0.0,
        still_connected: 0,
        quiet_cpu_s: 0.0,
        failure: None,
        durability: durability.to_owned(),
    };
    let start = Instant::now();
    let mut connected = 0;
    let mut connect_time = Duration::ZERO;
    for &step in steps.iter().filter(|&&s| s <= target) {
        let t = Instant::now();
        let outcome = fill(
            server.addr(),
            &names[connected..step],
            &tokens[connected..step],
            &alive,
            &mut holders,
        )
        .await;
        connect_time += t.elapsed();
        if let Err(e) = outcome {
            result.failure = Some(format!("after {connected} connections: {e:#}"));
            break;
        }
        connected = step;
        // Let the broker and the hub finish with the presence publishes.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let usage = process::usage(server.pid())?;
        let s = IdleStep {
            connections: alive.load(Ordering::Relaxed),
            server_rss_kib: usage.rss_kib,
            server_cpu_s: usage.cpu.as_secs_f64(),
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        eprintln!(
            "idle on {name}: {} devices connected, server RSS {} MiB, CPU {:.1} s, {:.0} s",
            s.connections,
            s.server_rss_kib / 1024,
            s.server_cpu_s,
            s.elapsed_s
        );
        result.steps.push(s);
    }
    if let Some(last) = result.steps.last()
        && last.connections > 0
    {
        result.rss_per_connection_kib =
            (last.server_rss_kib as f64 - baseline.rss_kib as f64) / last.connections as f64;
        result.connects_per_s = connected as f64 / connect_time.as_secs_f64();
    }
    // A quiet period: idle connections must stay up (keep-alive is 60 s).
    let before = process::usage(server.pid())?;
    tokio::time::sleep(QUIET).await;
    let after = process::usage(server.pid())?;
    result.quiet_cpu_s = after.cpu.saturating_sub(before.cpu).as_secs_f64();
    result.still_connected = alive.load(Ordering::Relaxed);
    holders.abort_all();
    server.stop();
    Ok(result)
}

async fn fill(
    addr: SocketAddr,
    names: &[String],
    tokens: &[String],
    alive: &Arc<AtomicUsize>,
    holders: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = JoinSet::new();
    for (user, token) in names.iter().zip(tokens) {
        let permit = gate.clone().acquire_owned().await?;
        let (user, token) = (user.clone(), token.clone());
        connecting.spawn(async move {
            let conn = connect_idle(addr, user.clone(), token).await;
            drop(permit);
            conn.with_context(|| user)
        });
        // Collect finished ones as we go, so a failure stops the fill early.
        while let Some(done) = connecting.try_join_next() {
            holders.spawn(hold(done??, alive.clone()));
        }
    }
    while let Some(done) = connecting.join_next().await {
        holders.spawn(hold(done??, alive.clone()));
    }
    Ok(())
}

/// What a storm device knows about its one conversation.
struct Device {
    user: String,
    token: String,
    /// The sync token saved from its last sync.
    token_after: u64,
}

/// Workload 4: `n` devices, each with a persistent session and a saved sync token, go
/// away; one message is sent to each; then all reconnect at once and sync as the spec's
/// section 13 says. Synced = the sync result is in and the message is held (from the
/// session queue, or fetched with history).
pub async fn storm(bin: &Path, durability: &str, n: usize) -> anyhow::Result<StormResult> {
    let dir = tempfile::Builder::new().prefix("mqchat-storm-").tempdir()?;
    let mut names = users("s", n);
    names.push("sx".to_owned());
    let mut tokens = mqchat::add_devices(dir.path(), &names)?;
    let sender_token = tokens.pop().context("sender token")?;
    names.pop();
    let server = Server::start(bin, dir.path(), durability)?;
    let addr = server.addr();

    // Phase 1: every device connects once, subscribes, syncs and saves its token, then
    // loses its connection (dropped, no DISCONNECT: the broker keeps the session).
    let t = Instant::now();
    let mut devices = Vec::with_capacity(n);
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut first = JoinSet::new();
    for (user, token) in names.iter().zip(&tokens) {
        let permit = gate.clone().acquire_owned().await?;
        let (user, token) = (user.clone(), token.clone());
        first.spawn(async move {
            let mut conn = connect_idle(addr, user.clone(), token.clone()).await?;
            let result = sync_once(&mut conn, &user, 0).await?;
            drop(permit);
            anyhow::Ok(Device {
                user,
                token,
                token_after: result.token,
            })
        });
    }
    while let Some(done) = first.join_next().await {
        devices.push(done??);
    }
    eprintln!(
        "storm: {n} devices connected, synced and dropped in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    wait_for_no_connections(addr.port()).await?;

    // Phase 2: one message waits for each device.
    send_to_all(addr, &sender_token, &names).await?;
    eprintln!("storm: one message sent to each device");

    // Phase 3: the storm.
    let load_before = crate::direct::load_average();
    let before = process::usage(server.pid())?;
    let start = Instant::now();
    let mut storm = JoinSet::new();
    for device in devices {
        storm.spawn(reconnect_and_sync(addr, device, start));
    }
    let mut synced = Vec::with_capacity(n);
    // Synced devices stay connected (their event loops turning) until the storm is over.
    let alive = Arc::new(AtomicUsize::new(0));
    let mut holders = JoinSet::new();
    let (mut connected_max, mut resumed, mut queued, mut history, mut failures) =
        (Duration::ZERO, 0, 0, 0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, storm.join_next()).await {
        match done {
            Ok(Ok(outcome)) => {
                holders.spawn(hold(outcome.conn, alive.clone()));
                connected_max = connected_max.max(outcome.connected);
                synced.push(u32::try_from(outcome.synced.as_millis()).unwrap_or(u32::MAX));
                resumed += usize::from(outcome.resumed);
                queued += usize::from(outcome.queued);
                history += usize::from(outcome.history);
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("storm: a device failed: {e:#}");
                }
            }
            Err(_) => failures += 1,
        }
    }
    failures += storm.len();
    storm.abort_all();
    let after = process::usage(server.pid())?;
    holders.abort_all();
    synced.sort_unstable();
    let result = StormResult {
        devices: n,
        all_connected_s: connected_max.as_secs_f64(),
        all_synced_s: f64::from(synced.last().copied().unwrap_or(0)) / 1000.0,
        synced_ms: Percentiles::of(&synced),
        sessions_resumed: resumed,
        queued_delivered: queued,
        history_requests: history,
        failures,
        server_cpu_s: (after.cpu - before.cpu).as_secs_f64(),
        server_rss_kib: after.rss_kib,
        durability: durability.to_owned(),
        load_before,
    };
    server.stop();
    Ok(result)
}

async fn wait_for_no_connections(port: u16) -> anyhow::Result<()> {
    for _ in 0..300 {
        if crate::wire::count(port)?.sockets == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("devices still connected 30 s after dropping them")
}

/// Sends one message to each of `peers` from user `sx`, waiting for every stored copy.
async fn send_to_all(addr: SocketAddr, token: &str, peers: &[String]) -> anyhow::Result<()> {
    let mut conn = mqtt::connect(mqtt::options(addr, &mqchat::login("sx", token)), 1024).await?;
    conn.subscribe(&mqchat::device_filters("sx")).await?;
    let up = mqchat::up_topic("sx");
    let mut ids = Ids::new();
    let (mut sent, mut stored) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while stored < peers.len() {
        if Instant::now() > deadline {
            bail!("only {stored} of {} messages stored in 600 s", peers.len());
        }
        // Up to 256 in flight.
        while sent < peers.len() && sent - stored < 256 {
            let peer = ConversationRef::parse(&peers[sent])?;
            let payload = mqchat::message(&mut ids, &peer, "are you there?".to_owned());
            conn.client
                .try_publish(up.as_str(), QoS::AtLeastOnce, false, payload)?;
            sent += 1;
        }
        if let Event::Incoming(Incoming::Publish(p)) = conn.events.poll().await?
            && let Ok(packet) = Packet::decode(&p.payload)
        {
            match packet.kind {
                PacketKind::MESSAGE => stored += 1,
                PacketKind::ERROR => bail!("the hub refused a message: {packet:?}"),
                _ => {}
            }
        }
    }
    Ok(())
}

fn sync_request(ids: &mut Ids, after: u64) -> (u64, Vec<u8>) {
    let mut packet = Sync {
        after: Some(after),
        limit: Some(100),
        ..Sync::default()
    }
    .to_packet();
    let id = ids.next();
    packet.id = Some(id);
    (id.get(), packet.encode())
}

/// Sends one sync and waits for its result.
async fn sync_once(conn: &mut Connection, user: &str, after: u64) -> anyhow::Result<SyncResult> {
    let mut ids = Ids::new();
    let (id, payload) = sync_request(&mut ids, after);
    conn.client
        .publish(mqchat::up_topic(user), QoS::AtLeastOnce, false, payload)
        .await?;
    let deadline = Duration::from_secs(120);
    tokio::time::timeout(deadline, async {
        loop {
            if let Event::Incoming(Incoming::Publish(p)) = conn.events.poll().await?
                && let Some(result) = reply::<SyncResult>(&p, id)?
            {
                return Ok(result);
            }
        }
    })
    .await
    .context("no sync result within 120 s")?
}

/// The typed reply to request `id`, if `p` is it; an error reply is an error.
fn reply<T: Body>(p: &Publish, id: u64) -> anyhow::Result<Option<T>> {
    let Ok(packet) = Packet::decode(&p.payload) else {
        return Ok(None);
    };
    if packet.id.map(|i| i.get()) != Some(id) {
        return Ok(None);
    }
    if packet.kind == PacketKind::ERROR {
        bail!("error reply: {packet:?}");
    }
    Ok(Some(T::from_packet(&packet)?))
}

struct Outcome {
    conn: Connection,
    connected: Duration,
    synced: Duration,
    resumed: bool,
    queued: bool,
    history: bool,
}

/// One device of the storm: connect, presence, sync after its token, history if the
/// waiting message did not come from the session queue.
async fn reconnect_and_sync(
    addr: SocketAddr,
    device: Device,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let user = device.user;
    let mut conn = mqtt::connect(
        mqtt::options(addr, &mqchat::login(&user, &device.token)),
        16,
    )
    .await?;
    let connected = start.elapsed();
    let resumed = conn.session_present;
    let mut early = Vec::new();
    if !resumed {
        early = conn.subscribe(&active_filters(&user)).await?;
    }
    let up = mqchat::up_topic(&user);
    conn.client.try_publish(
        mqchat::presence_topic(&user),
        QoS::AtLeastOnce,
        true,
        mqchat::available_payload(),
    )?;
    let mut ids = Ids::new();
    let (sync_id, payload) = sync_request(&mut ids, device.token_after);
    conn.client
        .try_publish(up.as_str(), QoS::AtLeastOnce, false, payload)?;
    let sender = ConversationRef::parse("sx")?;
    let mut held = 0;
    let mut queued = false;
    let mut history_id = None;
    let mut asked_history = false;
    let mut sync_done = false;
    let mut pending = early.into_iter();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let publish = match pending.next() {
            Some(p) => p,
            None => match tokio::time::timeout_at(deadline, conn.events.poll())
                .await
                .context("not synced within 600 s")??
            {
                Event::Incoming(Incoming::Publish(p)) => p,
                _ => continue,
            },
        };
        let Ok(packet) = Packet::decode(&publish.payload) else {
            continue;
        };
        if packet.kind == PacketKind::MESSAGE && packet.conv.as_ref() == Some(&sender) {
            held = held.max(packet.seq.unwrap_or(0));
            queued |= !sync_done;
        } else if let Some(result) = reply::<SyncResult>(&publish, sync_id)? {
            sync_done = true;
            if let Some(entry) = result.conversations.iter().find(|e| e.conv == sender)
                && entry.last_seq > held
            {
                let mut request = History {
                    after: Some(held),
                    limit: Some(100),
                    ..History::default()
                }
                .to_packet();
                let id = ids.next();
                request.id = Some(id);
                request.conv = Some(sender.clone());
                conn.client
                    .try_publish(up.as_str(), QoS::AtLeastOnce, false, request.encode())?;
                history_id = Some(id.get());
                asked_history = true;
            }
        } else if let Some(id) = history_id
            && let Some(result) = reply::<HistoryResult>(&publish, id)?
        {
            for event in &result.events {
                held = held.max(event.seq.unwrap_or(0));
            }
            history_id = None;
        }
        if sync_done && history_id.is_none() {
            break;
        }
    }
    let synced = start.elapsed();
    // Step 5 of the spec's device procedure: acknowledge what arrived.
    if held > 0 {
        let _ = conn.client.try_publish(
            up.as_str(),
            QoS::AtLeastOnce,
            false,
            mqchat::delivered(&sender, held),
        );
    }
    Ok(Outcome {
        conn,
        connected,
        synced,
        resumed,
        queued,
        history: asked_history,
    })
}
