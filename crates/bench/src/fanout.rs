//! Workload 2 (mqchat only): group fan-out.
//!
//! Users `g0` to `g{N-1}`, one device `phone` each, all connected to one `mqchat serve` as
//! the spec says (persistent session, durable inbox and reply topic, presence). Two groups:
//! `#fanout-big` with all N users and `#fanout-small` with the first M. `g0` owns both and is
//! the only sender; every other member's device receives each message on its durable inbox
//! and acknowledges delivery as section 9 allows (a `delivered` marker at once, or, within a
//! second of its previous one, covering the burst at the next second), and the hub forwards
//! those markers to `g0`, the author.
//!
//! 1. One message at a time to the big group: the time from the publish call until the last
//!    member's device has it, and every member's delivery time; then until every member's
//!    marker is back at the author. Repeated `rounds` times.
//! 2. Sustained to the small group: `g0` keeps `window` messages in flight (a message is in
//!    flight until every member has it), for a warm-up and a measured window: messages/s,
//!    copies delivered/s, per-copy latency, server CPU per delivered copy.
//!
//! The groups' membership is written into the store before the server starts, as the
//! accounts are: building a 1,000-member group through 999 joins would cost the hub about
//! half a million membership-event deliveries, which is not what this measures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mqchat_proto::body::{Body, Message, Role};
use mqchat_proto::{ConversationRef, GroupId, Packet, PacketKind, UserId};
use mqchat_store::{Durability, GroupProfile, Membership, Store};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::load::{Percentiles, parse_stamp, stamp_text};
use crate::mqchat::{self, Ids, Server};
use crate::mqtt::Connection;
use crate::process;

/// Connections opened at the same time while filling the server.
const CONNECT_CONCURRENCY: usize = 64;
/// How long a device waits before covering a burst with one marker (section 9 allows up to
/// a second).
const MARKER_DELAY: Duration = Duration::from_secs(1);
/// The longest wait for one round's deliveries or markers.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

const BIG: &str = "fanout-big";
const SMALL: &str = "fanout-small";

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Members of the big group (all online).
    pub members: usize,
    /// One-message rounds to the big group.
    pub rounds: usize,
    /// Members of the small group (the first of the big group's).
    pub small_members: usize,
    /// Messages in flight to the small group.
    pub window: u32,
    /// Warm-up of the sustained run.
    pub warmup: Duration,
    /// Measured window of the sustained run.
    pub duration: Duration,
}

/// One message to the big group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Round {
    /// From the publish call until the last member's device had it, ms.
    pub last_ms: f64,
    /// Per-member delivery times, µs.
    pub delivery_us: Percentiles,
    /// From the publish call until every member's marker was back at the author, ms.
    pub receipts_ms: f64,
}

/// The sustained run to the small group.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sustained {
    /// Members of the group.
    pub members: usize,
    /// Messages in flight (until every member has them).
    pub window: u32,
    /// Measured seconds.
    pub seconds: f64,
    /// Messages fully delivered per second (copies delivered / (members − 1) / seconds).
    pub messages_per_s: f64,
    /// Copies delivered to members' devices per second.
    pub copies_per_s: f64,
    /// Per-copy delivery latency, µs (copies delivered in the window).
    pub latency_us: Percentiles,
    /// Server CPU time per delivered copy, µs (markers and acks included).
    pub cpu_us_per_copy: f64,
    /// Server CPU time per message, µs.
    pub cpu_us_per_message: f64,
    /// Share of one core the server used.
    pub server_cores: f64,
    /// Load generator CPU, share of one core.
    pub generator_cores: f64,
    /// Copies missing once everything sent had time to arrive.
    pub missing: u64,
    /// Markers forwarded to the author during the run.
    pub receipts: u64,
}

/// Workload 2's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    /// UTC date and time of the start.
    pub date: String,
    /// The command that produced them.
    pub command: String,
    /// /proc/loadavg before the run.
    pub load_before: String,
    /// The server's durability mode.
    pub durability: String,
    /// Members of the big group.
    pub members: usize,
    /// Seconds to connect every member's device.
    pub connect_s: f64,
    /// One-message rounds to the big group.
    pub rounds: Vec<Round>,
    /// Every member's delivery time over all rounds, µs.
    pub delivery_us: Percentiles,
    /// Server CPU per delivered copy over the rounds, µs (fan-out, markers, forwarding).
    pub rounds_cpu_us_per_copy: f64,
    /// The sustained run.
    pub sustained: Sustained,
    /// Server resident memory at the end, KiB.
    pub server_rss_kib: u64,
    /// Errors (error replies, failed connections).
    pub errors: u64,
}

impl FanoutResult {
    /// The median of the rounds' "last member" times, ms.
    pub fn median_last_ms(&self) -> f64 {
        let mut v: Vec<f64> = self.rounds.iter().map(|r| r.last_ms).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
}

/// What the members' tasks report.
struct Shared {
    epoch: Instant,
    big: ConversationRef,
    small: ConversationRef,
    /// Copies of the big group's messages: (stamp, latency µs).
    big_copies: Mutex<Vec<(u64, u32)>>,
    big_count: AtomicU64,
    small_count: AtomicU64,
    /// Latencies of small-group copies received inside the measured window.
    small_latency: Mutex<Vec<u32>>,
    /// Measured window, µs since the epoch (0, 0: none).
    window_from: AtomicU64,
    window_to: AtomicU64,
    small_in_window: AtomicU64,
    /// Markers forwarded to the author, per group.
    big_receipts: AtomicU64,
    small_receipts: AtomicU64,
    errors: AtomicU64,
    arrived: Notify,
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn error(&self, what: &str) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("mqchat-bench: fanout: {what}");
        }
    }
}

fn group_conv(name: &str) -> anyhow::Result<ConversationRef> {
    Ok(ConversationRef::Group(GroupId::parse(name)?))
}

/// Creates the accounts and both groups' memberships in the store.
fn setup(data_dir: &Path, users: &[String], small: usize) -> anyhow::Result<Vec<String>> {
    let tokens = mqchat::add_devices(data_dir, users)?;
    let mut store = Store::open(&mqchat::database(data_dir), Durability::Normal)?;
    let tx = store.transaction()?;
    for (name, size) in [(BIG, users.len()), (SMALL, small)] {
        let profile = GroupProfile {
            name: name.to_owned(),
            avatar: None,
            description: None,
            history_all: false,
        };
        let conv = tx.create_group(&GroupId::parse(name)?, &profile)?;
        for (i, user) in users.iter().take(size).enumerate() {
            let role = if i == 0 { Role::Owner } else { Role::Member };
            tx.set_membership(
                conv.id,
                &UserId::parse(user)?,
                role,
                Membership::Member,
                1,
                None,
            )?;
        }
    }
    tx.commit()?;
    Ok(tokens)
}

/// Workload 2.
pub async fn fanout(bin: &Path, durability: &str, plan: &Plan) -> anyhow::Result<FanoutResult> {
    if plan.members < 2 || plan.small_members < 2 || plan.small_members > plan.members {
        bail!("need 2 <= small group <= big group");
    }
    mqchat::check_binary(bin)?;
    let dir = tempfile::Builder::new()
        .prefix("mqchat-fanout-")
        .tempdir()?;
    let users: Vec<String> = (0..plan.members).map(|i| format!("g{i}")).collect();
    let t = Instant::now();
    let tokens = setup(dir.path(), &users, plan.small_members)?;
    eprintln!(
        "fanout: {} accounts and two groups ({} and {} members) in {:.1} s",
        plan.members,
        plan.members,
        plan.small_members,
        t.elapsed().as_secs_f64()
    );
    let mut server = Server::start(bin, dir.path(), durability)?;
    let addr = server.addr();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        big: group_conv(BIG)?,
        small: group_conv(SMALL)?,
        big_copies: Mutex::new(Vec::new()),
        big_count: AtomicU64::new(0),
        small_count: AtomicU64::new(0),
        small_latency: Mutex::new(Vec::new()),
        window_from: AtomicU64::new(0),
        window_to: AtomicU64::new(0),
        small_in_window: AtomicU64::new(0),
        big_receipts: AtomicU64::new(0),
        small_receipts: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        arrived: Notify::new(),
    });

    // Every member's device, then the author's.
    let t = Instant::now();
    let mut tasks = JoinSet::new();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = JoinSet::new();
    for (user, token) in users.iter().zip(&tokens).skip(1) {
        let permit = gate.clone().acquire_owned().await?;
        let (user, token) = (user.clone(), token.clone());
        connecting.spawn(async move {
            let conn = mqchat::connect_device(addr, &user, &token, 256).await;
            drop(permit);
            conn.with_context(|| user.clone()).map(|c| (user, c))
        });
    }
    while let Some(done) = connecting.join_next().await {
        let (user, conn) = done??;
        tasks.spawn(member_loop(conn, user, shared.clone()));
    }
    let author = mqchat::connect_device(addr, &users[0], &tokens[0], 4096).await?;
    let Connection { client, events, .. } = author;
    tasks.spawn(author_inbox_loop(events, shared.clone()));
    let connect_s = t.elapsed().as_secs_f64();
    eprintln!(
        "fanout: {} devices connected in {connect_s:.1} s",
        plan.members
    );

    let mut result = FanoutResult {
        date: crate::utc_now(),
        load_before: crate::direct::load_average(),
        durability: durability.to_owned(),
        members: plan.members,
        connect_s,
        ..FanoutResult::default()
    };
    let outcome = measure(&client, &shared, plan, &mut server, &mut result).await;
    result.errors = shared.errors.load(Ordering::Relaxed);
    result.server_rss_kib = process::usage(server.pid())?.rss_kib;
    tasks.abort_all();
    server.stop();
    outcome?;
    Ok(result)
}

async fn measure(
    client: &AsyncClient,
    shared: &Arc<Shared>,
    plan: &Plan,
    server: &mut Server,
    result: &mut FanoutResult,
) -> anyhow::Result<()> {
    let topic = mqchat::up_topic("g0");
    let mut ids = Ids::new();
    let others = plan.members as u64 - 1;

    // 1. One message at a time to the big group.
    let before = process::usage(server.pid())?;
    for round in 0..plan.rounds {
        let copies_before = shared.big_count.load(Ordering::Relaxed);
        let receipts_before = shared.big_receipts.load(Ordering::Relaxed);
        let stamp = shared.now_us();
        let payload = mqchat::message(&mut ids, &shared.big, stamp_text(stamp));
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await?;
        let delivered = wait_until(shared, ROUND_TIMEOUT, || {
            shared.big_count.load(Ordering::Relaxed) >= copies_before + others
        })
        .await;
        server.check_running()?;
        if !delivered {
            bail!(
                "round {round}: {} of {others} copies within {} s",
                shared.big_count.load(Ordering::Relaxed) - copies_before,
                ROUND_TIMEOUT.as_secs()
            );
        }
        let mut times: Vec<u32> = lock(&shared.big_copies)
            .iter()
            .filter(|(s, _)| *s == stamp)
            .map(|(_, l)| *l)
            .collect();
        times.sort_unstable();
        let last_us = times.last().copied().unwrap_or(0);
        let receipted = wait_until(shared, ROUND_TIMEOUT, || {
            shared.big_receipts.load(Ordering::Relaxed) >= receipts_before + others
        })
        .await;
        if !receipted {
            bail!(
                "round {round}: {} of {others} markers back at the author within {} s",
                shared.big_receipts.load(Ordering::Relaxed) - receipts_before,
                ROUND_TIMEOUT.as_secs()
            );
        }
        let r = Round {
            last_ms: f64::from(last_us) / 1000.0,
            delivery_us: Percentiles::of(&times),
            receipts_ms: (shared.now_us() - stamp) as f64 / 1000.0,
        };
        eprintln!(
            "fanout: round {round}: last of {others} members after {:.1} ms (p50 {:.1} ms, \
             p99 {:.1} ms); every marker back after {:.1} ms",
            r.last_ms,
            f64::from(r.delivery_us.p50) / 1000.0,
            f64::from(r.delivery_us.p99) / 1000.0,
            r.receipts_ms
        );
        result.rounds.push(r);
        // The next round starts after the members' marker delay, so that each round's
        // markers are sent at once rather than held back.
        tokio::time::sleep(MARKER_DELAY).await;
    }
    let after = process::usage(server.pid())?;
    let mut all: Vec<u32> = lock(&shared.big_copies).iter().map(|(_, l)| *l).collect();
    all.sort_unstable();
    result.delivery_us = Percentiles::of(&all);
    let copies = (others * plan.rounds as u64).max(1);
    result.rounds_cpu_us_per_copy = (after.cpu - before.cpu).as_secs_f64() * 1e6 / copies as f64;

    // 2. Sustained to the small group.
    result.sustained = sustained(client, shared, plan, server, &mut ids).await?;
    Ok(())
}

async fn sustained(
    client: &AsyncClient,
    shared: &Arc<Shared>,
    plan: &Plan,
    server: &mut Server,
    ids: &mut Ids,
) -> anyhow::Result<Sustained> {
    let topic = mqchat::up_topic("g0");
    let others = plan.small_members as u64 - 1;
    let window = u64::from(plan.window.max(1));
    let start_copies = shared.small_count.load(Ordering::Relaxed);
    let receipts_before = shared.small_receipts.load(Ordering::Relaxed);
    let begin = shared.now_us();
    let from = begin + u64::try_from(plan.warmup.as_micros())?;
    let to = from + u64::try_from(plan.duration.as_micros())?;
    shared.window_from.store(from, Ordering::Relaxed);
    shared.window_to.store(to, Ordering::Relaxed);
    let mut sent = 0u64;
    let mut usage_from = None;
    let mut generator_from = None;
    while shared.now_us() < to {
        let now = shared.now_us();
        if usage_from.is_none() && now >= from {
            usage_from = Some(process::usage(server.pid())?);
            generator_from = Some(process::own_usage()?);
        }
        // Registered before the check, so that no arrival in between is missed.
        let notified = shared.arrived.notified();
        let copies = shared.small_count.load(Ordering::Relaxed) - start_copies;
        if sent * others < copies + window * others {
            let payload = mqchat::message(ids, &shared.small, stamp_text(now));
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                .await?;
            sent += 1;
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
    let usage_to = process::usage(server.pid())?;
    let generator_to = process::own_usage()?;
    let in_window = shared.small_in_window.load(Ordering::Relaxed);
    // Everything sent must arrive.
    let target = start_copies + sent * others;
    wait_until(shared, ROUND_TIMEOUT, || {
        shared.small_count.load(Ordering::Relaxed) >= target
    })
    .await;
    server.check_running()?;
    let missing = target.saturating_sub(shared.small_count.load(Ordering::Relaxed));
    let seconds = plan.duration.as_secs_f64();
    let cpu = usage_from.map_or(Duration::ZERO, |u| usage_to.cpu - u.cpu);
    let generator = generator_from.map_or(Duration::ZERO, |u| generator_to.cpu - u.cpu);
    let mut latency = lock(&shared.small_latency).clone();
    latency.sort_unstable();
    let copies_per_s = in_window as f64 / seconds;
    let s = Sustained {
        members: plan.small_members,
        window: plan.window,
        seconds,
        messages_per_s: copies_per_s / others as f64,
        copies_per_s,
        latency_us: Percentiles::of(&latency),
        cpu_us_per_copy: cpu.as_secs_f64() * 1e6 / (in_window.max(1)) as f64,
        cpu_us_per_message: cpu.as_secs_f64() * 1e6 * others as f64 / (in_window.max(1)) as f64,
        server_cores: cpu.as_secs_f64() / seconds,
        generator_cores: generator.as_secs_f64() / seconds,
        missing,
        receipts: shared.small_receipts.load(Ordering::Relaxed) - receipts_before,
    };
    eprintln!(
        "fanout: sustained to {} members: {:.0} messages/s, {:.0} copies/s, p50 {:.1} ms, \
         p99 {:.1} ms, server {:.1} µs CPU per copy, {missing} missing",
        s.members,
        s.messages_per_s,
        s.copies_per_s,
        f64::from(s.latency_us.p50) / 1000.0,
        f64::from(s.latency_us.p99) / 1000.0,
        s.cpu_us_per_copy
    );
    Ok(s)
}

/// Waits until `done` holds (checked whenever a member reports, and every 50 ms).
async fn wait_until(shared: &Shared, within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let notified = shared.arrived.notified();
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A member's device: records each group message, and acknowledges delivery with one
/// marker per conversation, at once or (within a second of its last marker) at the next
/// second.
async fn member_loop(mut conn: Connection, user: String, shared: Arc<Shared>) {
    let up = mqchat::up_topic(&user);
    let mut pending: HashMap<ConversationRef, u64> = HashMap::new();
    let mut last_marker = Instant::now() - MARKER_DELAY;
    let mut tick = tokio::time::interval(MARKER_DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let publish = tokio::select! {
            event = conn.events.poll() => match event {
                Ok(Event::Incoming(Incoming::Publish(p))) => p,
                Ok(_) => continue,
                Err(e) => {
                    shared.error(&format!("{user}: connection failed: {e}"));
                    return;
                }
            },
            _ = tick.tick() => {
                if !pending.is_empty() && last_marker.elapsed() >= MARKER_DELAY {
                    for (conv, seq) in pending.drain() {
                        send_marker(&conn.client, &up, &conv, seq, &shared);
                    }
                    last_marker = Instant::now();
                }
                continue;
            }
        };
        let Ok(packet) = Packet::decode(&publish.payload) else {
            shared.error(&format!("{user}: undecodable packet"));
            continue;
        };
        match packet.kind {
            PacketKind::MESSAGE => {
                let (Some(conv), Some(seq), Some(stamp)) = (
                    packet.conv.clone(),
                    packet.seq,
                    Message::from_packet(&packet)
                        .ok()
                        .and_then(|m| parse_stamp(&m.text)),
                ) else {
                    continue;
                };
                let now = shared.now_us();
                let latency = u32::try_from(now.saturating_sub(stamp)).unwrap_or(u32::MAX);
                if conv == shared.big {
                    lock(&shared.big_copies).push((stamp, latency));
                    shared.big_count.fetch_add(1, Ordering::Relaxed);
                } else if conv == shared.small {
                    let from = shared.window_from.load(Ordering::Relaxed);
                    let to = shared.window_to.load(Ordering::Relaxed);
                    if now >= from && now < to {
                        lock(&shared.small_latency).push(latency);
                        shared.small_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                    shared.small_count.fetch_add(1, Ordering::Relaxed);
                }
                shared.arrived.notify_waiters();
                if last_marker.elapsed() >= MARKER_DELAY && pending.is_empty() {
                    send_marker(&conn.client, &up, &conv, seq, &shared);
                    last_marker = Instant::now();
                } else {
                    let held = pending.entry(conv).or_insert(seq);
                    *held = (*held).max(seq);
                }
            }
            PacketKind::ERROR => shared.error(&format!(
                "{user} got an error reply: {:?}",
                Packet::decode(&publish.payload)
            )),
            _ => {}
        }
    }
}

fn send_marker(client: &AsyncClient, up: &str, conv: &ConversationRef, seq: u64, shared: &Shared) {
    // The event loop is this task: never wait on the request channel here.
    if client
        .try_publish(up, QoS::AtLeastOnce, false, mqchat::delivered(conv, seq))
        .is_err()
    {
        shared.error("a marker could not be queued");
    }
}

/// The author's inbox: its own copies, and the members' markers forwarded by the hub.
async fn author_inbox_loop(mut events: rumqttc::v5::EventLoop, shared: Arc<Shared>) {
    loop {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => {
                shared.error(&format!("author: connection failed: {e}"));
                return;
            }
        };
        let Ok(packet) = Packet::decode(&publish.payload) else {
            continue;
        };
        match packet.kind {
            PacketKind::DELIVERED | PacketKind::READ if packet.from.is_some() => {
                match packet.conv {
                    Some(ref c) if *c == shared.big => {
                        shared.big_receipts.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(ref c) if *c == shared.small => {
                        shared.small_receipts.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                shared.arrived.notify_waiters();
            }
            PacketKind::ERROR => shared.error(&format!(
                "author got an error reply: {:?}",
                Packet::decode(&publish.payload)
            )),
            _ => {}
        }
    }
}
