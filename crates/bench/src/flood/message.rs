//! The message flood (issue 15): one device (`mallory`) sends messages to `victim` as fast
//! as its client can, QoS 1 with a large in-flight window, while a bystander pair (`alice`
//! and `bob`) talks at a steady rate, each message answered with a `delivered` marker.
//!
//! The bystanders are measured alone first (idle), then during the flood, then for a few
//! seconds after it; a message belongs to the phase in which it was sent. Latency runs from
//! the sender's publish call to the recipient's device, as in workload 1. Afterwards every
//! bystander message, its stored copy back at the sender, and its receipt must arrive:
//! what does not is lost.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mqchat_proto::body::{Body, Delivered, ErrorReply, Message};
use mqchat_proto::{ConversationRef, ErrorCode, Packet, PacketKind, UserId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, Incoming};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{Account, Sampler, Samples, mib};
use crate::load::{Percentiles, parse_stamp, stamp_text};
use crate::mqchat::{self, Ids, Server};
use crate::mqtt;
use crate::process::{self, Usage};

/// How often the server's memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Requests queued in mallory's client: small, so that the flood stops soon after its end
/// (what is queued is still sent).
const FLOOD_CHANNEL: usize = 64;

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The mqchat binary.
    pub bin: PathBuf,
    /// Its durability setting.
    pub durability: String,
    /// A settings file for `mqchat serve --config`.
    pub config: Option<PathBuf>,
    /// Bystander traffic before the idle window (not measured).
    pub warmup: Duration,
    /// The idle window and the flood, each.
    pub duration: Duration,
    /// Bystander traffic measured after the flood.
    pub after: Duration,
    /// Bystander messages per second, each way.
    pub rate: f64,
    /// The flooding client's in-flight window (the most it asks for; the broker may grant
    /// fewer).
    pub window: u16,
    /// How long to wait at the end for the bystanders' last messages and receipts.
    pub drain: Duration,
}

/// One direction of the bystander pair (sender to recipient).
#[derive(Debug, Default)]
struct Direction {
    /// Send stamps (µs since the run's epoch) of the messages handed to the client.
    sent: Samples<u64>,
    /// (stamp, latency µs) of each message the recipient's device received.
    delivered: Samples<(u64, u64)>,
    /// Sequence numbers of the sender's stored copies (its "sent" confirmations).
    stored: Samples<u64>,
    /// The highest `delivered` marker from the recipient that reached the sender.
    receipted_up_to: AtomicU64,
}

impl Direction {
    /// Whether everything sent has arrived, been stored and been receipted.
    fn complete(&self) -> bool {
        let sent = self.sent.all();
        let delivered: HashSet<u64> = self.delivered.all().iter().map(|(s, _)| *s).collect();
        let stored = self.stored.all();
        let up_to = self.receipted_up_to.load(Ordering::Relaxed);
        sent.iter().all(|s| delivered.contains(s))
            && stored.len() >= sent.len()
            && stored.iter().all(|&seq| seq <= up_to)
    }
}

/// Counters of one device's connection.
#[derive(Debug, Default)]
struct Device {
    /// Error replies, by code.
    errors: Samples<u16>,
    /// Times its connection failed (rumqttc reconnects at the next poll).
    connection_errors: AtomicU64,
}

/// The flooding device's counters; times are µs since the run's epoch.
#[derive(Debug, Default)]
struct Flooder {
    /// Publishes handed to the client.
    handed: AtomicU64,
    /// PUBACKs (success), by arrival.
    acked: Samples<u64>,
    /// PUBACKs with another reason.
    refused: AtomicU64,
    /// Its own copies of stored messages, by arrival (the broker drops some when her
    /// session's queue is full: she reads slower than the replies come).
    confirmed: Samples<u64>,
    /// `rate-limited` error replies, by arrival.
    rate_limited: Samples<u64>,
    /// Other error replies, by code.
    other_errors: Samples<u16>,
    connection_errors: AtomicU64,
    /// Messages from mallory that reached the victim's device (each one stored), by
    /// arrival.
    victim_received: Samples<u64>,
}

/// The bystanders' figures in one phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Phase {
    /// `idle`, `flood` or `after`.
    pub name: String,
    /// Its length, s.
    pub seconds: f64,
    /// Bystander messages sent in it (both ways).
    pub sent: usize,
    /// Of them, received by the other device.
    pub delivered: usize,
    /// Latency of those, µs.
    pub latency_us: Percentiles,
    /// Server CPU, s.
    pub server_cpu_s: f64,
    /// The load generator's CPU (this process: bystanders, flooder, victim), s.
    pub generator_cpu_s: f64,
    /// Server RSS at its end, KiB.
    pub server_rss_kib: u64,
    /// The largest server RSS sampled in it, KiB.
    pub server_peak_rss_kib: u64,
    /// Flood publishes acknowledged in it.
    pub flood_acked: usize,
    /// Flood messages that reached the victim in it (each one stored).
    pub flood_stored: usize,
    /// `rate-limited` replies to the flood in it.
    pub flood_rate_limited: usize,
}

/// The message flood's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageFlood {
    /// mqchat's durability setting.
    pub durability: String,
    /// The settings file, if any.
    pub config: Option<String>,
    /// Load average before the run.
    pub load_before: String,
    /// Bystander messages per second, each way.
    pub rate: f64,
    /// The in-flight window mallory's client asked for.
    pub window_asked: u16,
    /// The Receive Maximum in the server's CONNACK (absent: 65,535).
    pub window_granted: Option<u16>,
    /// Idle, flood, after.
    pub phases: Vec<Phase>,
    /// Bystander messages sent and never received.
    pub bystander_lost: usize,
    /// Bystander messages whose stored copy never reached the sender.
    pub bystander_unconfirmed: usize,
    /// Bystander messages whose receipt never reached the sender.
    pub bystander_unreceipted: usize,
    /// Bystander messages received more than once.
    pub bystander_duplicates: usize,
    /// Error replies to the bystanders, by code.
    pub bystander_errors: BTreeMap<u16, usize>,
    /// Bystander connection failures.
    pub bystander_connection_errors: u64,
    /// Publishes mallory's client was handed during the flood.
    pub flood_handed: u64,
    /// PUBACKs other than success.
    pub flood_puback_refused: u64,
    /// After the drain: mallory's messages that reached the victim (each one stored),
    /// her own copies of them, the `rate-limited` replies and other errors (by code) she got.
    pub flood_stored_total: usize,
    /// See `flood_stored_total`.
    pub flood_confirmed_total: usize,
    /// See `flood_stored_total`.
    pub flood_rate_limited_total: usize,
    /// See `flood_stored_total`.
    pub flood_other_errors: BTreeMap<u16, usize>,
    /// Mallory's connection failures.
    pub flood_connection_errors: u64,
    /// Seconds the bystanders' last messages and receipts took to arrive after the end.
    pub drain_s: f64,
}

/// Runs the message flood.
pub async fn run(plan: &Plan) -> anyhow::Result<MessageFlood> {
    let dir = tempfile::Builder::new()
        .prefix("mqchat-message-flood-")
        .tempdir()?;
    let names = ["alice", "bob", "mallory", "victim"];
    let accounts: Vec<Account> = names
        .iter()
        .map(|user| Account {
            user: (*user).to_owned(),
            password: None,
            devices: vec![mqchat::DEVICE.to_owned()],
        })
        .collect();
    let tokens: Vec<String> = super::add_accounts(dir.path(), &accounts)?
        .into_iter()
        .map(|mut t| t.remove(0))
        .collect();
    let load_before = crate::direct::load_average();
    let server = Server::start_with(
        &plan.bin,
        dir.path(),
        &plan.durability,
        plan.config.as_deref(),
    )?;
    let (pid, addr) = (server.pid(), server.addr());

    let epoch = Instant::now();
    let alice_to_bob = Arc::new(Direction::default());
    let bob_to_alice = Arc::new(Direction::default());
    let (alice_dev, bob_dev) = (Arc::new(Device::default()), Arc::new(Device::default()));
    let flooder = Arc::new(Flooder::default());
    let mut tasks = JoinSet::new();

    // Mallory and her victim run on a runtime of their own (see `super::apart`).
    let (ready, connected) = oneshot::channel();
    let (schedule, scheduled) = oneshot::channel();
    let (end_flood, flood_ended) = oneshot::channel::<()>();
    let flood_side = {
        let (flooder, window) = (flooder.clone(), plan.window);
        let (victim_token, mallory_token) = (tokens[3].clone(), tokens[2].clone());
        super::apart("flooder", move || async move {
            let connections = async {
                let victim = mqchat::connect_device(addr, "victim", &victim_token, 1024).await?;
                let mallory = connect_flooder(addr, &mallory_token, window).await?;
                anyhow::Ok((victim, mallory))
            };
            let (victim, (mallory, granted)) = match connections.await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(granted));
            let Ok(window) = scheduled.await else {
                return;
            };
            let victim = tokio::spawn(victim_loop(victim, flooder.clone(), epoch));
            let replies = tokio::spawn(flooder_events(mallory.events, flooder.clone(), epoch));
            flood(mallory.client, window, epoch, flooder).await;
            // Her replies and the victim's deliveries keep coming in until the end.
            let _ = flood_ended.await;
            victim.abort();
            replies.abort();
        })?
    };
    let window_granted = connected.await.context("the flooder's thread failed")??;

    let start = Instant::now() + Duration::from_millis(100);
    let idle_from = start + plan.warmup;
    let flood_from = idle_from + plan.duration;
    let flood_to = flood_from + plan.duration;
    let stop = flood_to + plan.after;
    for (user, token, peer, outgoing, incoming, device) in [
        (
            "alice",
            &tokens[0],
            "bob",
            &alice_to_bob,
            &bob_to_alice,
            &alice_dev,
        ),
        (
            "bob",
            &tokens[1],
            "alice",
            &bob_to_alice,
            &alice_to_bob,
            &bob_dev,
        ),
    ] {
        let conn = mqchat::connect_device(addr, user, token, 1024).await?;
        let peer = ConversationRef::parse(peer)?;
        let me = UserId::parse(user)?;
        tasks.spawn(bystander_events(
            conn.events,
            conn.client.clone(),
            me,
            peer.clone(),
            Bystander {
                incoming: incoming.clone(),
                outgoing: outgoing.clone(),
                device: device.clone(),
                epoch,
            },
        ));
        tasks.spawn(bystander_sender(
            conn.client,
            user.to_owned(),
            peer,
            plan.rate,
            (start, stop),
            epoch,
            outgoing.clone(),
            device.clone(),
        ));
    }
    let _ = schedule.send((flood_from, flood_to));
    eprintln!(
        "message-flood: bystanders at {}/s each way; flood from {:?} to {:?} (window {} asked, {:?} granted)",
        plan.rate,
        flood_from - start,
        flood_to - start,
        plan.window,
        window_granted
    );

    let sampled_from = Instant::now();
    let sampler = Sampler::start(pid, SAMPLE_EVERY);
    let boundaries = [idle_from, flood_from, flood_to, stop];
    let mut usage: Vec<(Usage, Usage)> = Vec::new();
    for at in boundaries {
        tokio::time::sleep_until(at.into()).await;
        usage.push((process::usage(pid)?, process::own_usage()?));
    }
    let ended = Instant::now();
    let deadline = ended + plan.drain;
    while !(alice_to_bob.complete() && bob_to_alice.complete()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_s = ended.elapsed().as_secs_f64();
    // The flood's last replies, if any are still coming.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = sampler.stop().await;
    let _ = end_flood.send(());
    let _ = flood_side.await;
    tasks.abort_all();
    server.stop();

    let stamp = |t: Instant| t.duration_since(epoch).as_micros() as u64;
    let phases = ["idle", "flood", "after"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (from, to) = (boundaries[i], boundaries[i + 1]);
            let window = (stamp(from), stamp(to));
            let in_window = |s: &u64| *s >= window.0 && *s < window.1;
            let mut sent = 0;
            let mut latencies = Vec::new();
            for direction in [&alice_to_bob, &bob_to_alice] {
                sent += direction.sent.all().iter().filter(|s| in_window(s)).count();
                let mut seen = HashSet::new();
                for (s, us) in direction.delivered.all() {
                    if in_window(&s) && seen.insert(s) {
                        latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
            }
            latencies.sort_unstable();
            let (server_from, own_from) = usage[i];
            let (server_to, own_to) = usage[i + 1];
            let peak = samples
                .iter()
                .filter(|(t, _)| {
                    let at = sampled_from + *t;
                    at >= from && at < to
                })
                .map(|(_, m)| m.rss_kib)
                .max()
                .unwrap_or(server_to.rss_kib);
            let count =
                |samples: &Samples<u64>| samples.all().iter().filter(|s| in_window(s)).count();
            Phase {
                name: (*name).to_owned(),
                seconds: to.duration_since(from).as_secs_f64(),
                sent,
                delivered: latencies.len(),
                latency_us: Percentiles::of(&latencies),
                server_cpu_s: (server_to.cpu - server_from.cpu).as_secs_f64(),
                generator_cpu_s: (own_to.cpu - own_from.cpu).as_secs_f64(),
                server_rss_kib: server_to.rss_kib,
                server_peak_rss_kib: peak,
                flood_acked: count(&flooder.acked),
                flood_stored: count(&flooder.victim_received),
                flood_rate_limited: count(&flooder.rate_limited),
            }
        })
        .collect();

    let (mut lost, mut unconfirmed, mut unreceipted, mut duplicates) = (0, 0, 0, 0);
    for direction in [&alice_to_bob, &bob_to_alice] {
        let sent = direction.sent.all();
        let delivered: Vec<u64> = direction.delivered.all().iter().map(|(s, _)| *s).collect();
        let distinct: HashSet<u64> = delivered.iter().copied().collect();
        lost += sent.iter().filter(|s| !distinct.contains(s)).count();
        duplicates += delivered.len() - distinct.len();
        let stored = direction.stored.all();
        unconfirmed += sent.len().saturating_sub(stored.len());
        let up_to = direction.receipted_up_to.load(Ordering::Relaxed);
        unreceipted += stored.iter().filter(|&&seq| seq > up_to).count()
            + sent.len().saturating_sub(stored.len());
    }
    let mut bystander_errors = BTreeMap::new();
    for code in alice_dev
        .errors
        .all()
        .into_iter()
        .chain(bob_dev.errors.all())
    {
        *bystander_errors.entry(code).or_insert(0) += 1;
    }
    let mut flood_other_errors = BTreeMap::new();
    for code in flooder.other_errors.all() {
        *flood_other_errors.entry(code).or_insert(0) += 1;
    }
    Ok(MessageFlood {
        durability: plan.durability.clone(),
        config: plan.config.as_ref().map(|p| p.display().to_string()),
        load_before,
        rate: plan.rate,
        window_asked: plan.window,
        window_granted,
        phases,
        bystander_lost: lost,
        bystander_unconfirmed: unconfirmed,
        bystander_unreceipted: unreceipted,
        bystander_duplicates: duplicates,
        bystander_errors,
        bystander_connection_errors: alice_dev.connection_errors.load(Ordering::Relaxed)
            + bob_dev.connection_errors.load(Ordering::Relaxed),
        flood_handed: flooder.handed.load(Ordering::Relaxed),
        flood_puback_refused: flooder.refused.load(Ordering::Relaxed),
        flood_stored_total: flooder.victim_received.all().len(),
        flood_confirmed_total: flooder.confirmed.all().len(),
        flood_rate_limited_total: flooder.rate_limited.all().len(),
        flood_other_errors,
        flood_connection_errors: flooder.connection_errors.load(Ordering::Relaxed),
        drain_s,
    })
}

/// A connected client without the extras of [`mqtt::Connection`].
struct Connection {
    client: AsyncClient,
    events: EventLoop,
}

/// Connects mallory with a large in-flight window and subscribes her inbox and reply
/// topic (her stored copies and the error replies); returns the Receive Maximum the server
/// granted.
async fn connect_flooder(
    addr: SocketAddr,
    token: &str,
    window: u16,
) -> anyhow::Result<(Connection, Option<u16>)> {
    let mut options = mqtt::options(addr, &mqchat::login("mallory", token));
    options.set_outgoing_inflight_upper_limit(window);
    let (client, mut events) = AsyncClient::new(options, FLOOD_CHANNEL);
    let granted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Event::Incoming(Incoming::ConnAck(ack)) = events.poll().await? {
                return anyhow::Ok(ack.properties.and_then(|p| p.receive_max));
            }
        }
    })
    .await
    .context("mallory: no CONNACK within 30 s")??;
    let mut conn = mqtt::Connection {
        client,
        events,
        session_present: false,
    };
    conn.subscribe(&mqchat::device_filters("mallory")).await?;
    Ok((
        Connection {
            client: conn.client,
            events: conn.events,
        },
        granted,
    ))
}

/// Mallory's publishes: as fast as the client takes them, from `from` to `to`.
async fn flood(
    client: AsyncClient,
    (from, to): (Instant, Instant),
    epoch: Instant,
    flooder: Arc<Flooder>,
) {
    tokio::time::sleep_until(from.into()).await;
    let topic = mqchat::up_topic("mallory");
    let Ok(victim) = ConversationRef::parse("victim") else {
        return;
    };
    let mut ids = Ids::new();
    while Instant::now() < to {
        let stamp = Instant::now().duration_since(epoch).as_micros() as u64;
        let payload = mqchat::message(&mut ids, &victim, stamp_text(stamp));
        if client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            return;
        }
        flooder.handed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Mallory's event loop: PUBACKs, her stored copies and the error replies.
async fn flooder_events(mut events: EventLoop, flooder: Arc<Flooder>, epoch: Instant) {
    let now = || Instant::now().duration_since(epoch).as_micros() as u64;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Incoming::PubAck(ack))) => match ack.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                    flooder.acked.push(now());
                }
                _ => {
                    flooder.refused.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let Ok(packet) = Packet::decode(&p.payload) else {
                    continue;
                };
                match packet.kind {
                    PacketKind::MESSAGE => flooder.confirmed.push(now()),
                    PacketKind::ERROR => match error_code(&packet) {
                        Some(ErrorCode::RATE_LIMITED) => flooder.rate_limited.push(now()),
                        code => flooder.other_errors.push(code.map_or(0, |c| c.0)),
                    },
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(_) => {
                flooder.connection_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn error_code(packet: &Packet) -> Option<ErrorCode> {
    ErrorReply::from_packet(packet).ok().map(|e| e.code)
}

/// The victim's device: counts mallory's messages and acknowledges them as a phone does,
/// with one cumulative `delivered` marker every half second at most.
async fn victim_loop(conn: mqtt::Connection, flooder: Arc<Flooder>, epoch: Instant) {
    let now = || Instant::now().duration_since(epoch).as_micros() as u64;
    let mqtt::Connection {
        client, mut events, ..
    } = conn;
    let up = mqchat::up_topic("victim");
    let Ok(mallory) = ConversationRef::parse("mallory") else {
        return;
    };
    let (mut highest, mut acknowledged) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    if let Ok(packet) = Packet::decode(&p.payload)
                        && packet.kind == PacketKind::MESSAGE
                    {
                        flooder.victim_received.push(now());
                        highest = highest.max(packet.seq.unwrap_or(0));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            _ = tick.tick() => {
                if highest > acknowledged {
                    let marker = mqchat::delivered(&mallory, highest);
                    if client.try_publish(up.as_str(), QoS::AtLeastOnce, false, marker).is_ok() {
                        acknowledged = highest;
                    }
                }
            }
        }
    }
}

/// What one bystander device reports to.
struct Bystander {
    /// Messages from the peer to this device.
    incoming: Arc<Direction>,
    /// Messages from this device to the peer.
    outgoing: Arc<Direction>,
    device: Arc<Device>,
    epoch: Instant,
}

/// A bystander's sender: `rate` messages per second to `peer`, on a fixed schedule
/// (open loop), from `from` to `to`.
#[allow(clippy::too_many_arguments)]
async fn bystander_sender(
    client: AsyncClient,
    user: String,
    peer: ConversationRef,
    rate: f64,
    (from, to): (Instant, Instant),
    epoch: Instant,
    outgoing: Arc<Direction>,
    device: Arc<Device>,
) {
    let topic = mqchat::up_topic(&user);
    let mut ids = Ids::new();
    let mut tick = tokio::time::interval_at(from.into(), Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= to {
            return;
        }
        let stamp = now.duration_since(epoch).as_micros() as u64;
        let payload = mqchat::message(&mut ids, &peer, stamp_text(stamp));
        if client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            device.connection_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        outgoing.sent.push(stamp);
    }
}

/// A bystander's event loop: the peer's messages (recorded and answered with a
/// `delivered` marker each), its own stored copies, the peer's markers, error replies.
async fn bystander_events(
    mut events: EventLoop,
    client: AsyncClient,
    me: UserId,
    peer: ConversationRef,
    report: Bystander,
) {
    let up = mqchat::up_topic(me.as_str());
    loop {
        let publish: Publish = match events.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => p,
            Ok(_) => continue,
            Err(_) => {
                report
                    .device
                    .connection_errors
                    .fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let now = Instant::now().duration_since(report.epoch).as_micros() as u64;
        let Ok(packet) = Packet::decode(&publish.payload) else {
            continue;
        };
        match packet.kind {
            PacketKind::MESSAGE if packet.from.as_ref() == Some(&me) => {
                if let Some(seq) = packet.seq {
                    report.outgoing.stored.push(seq);
                }
            }
            PacketKind::MESSAGE => {
                let stamp = Message::from_packet(&packet)
                    .ok()
                    .and_then(|m| parse_stamp(&m.text));
                if let (Some(stamp), Some(seq)) = (stamp, packet.seq) {
                    report
                        .incoming
                        .delivered
                        .push((stamp, now.saturating_sub(stamp)));
                    // This task is the event loop: never wait on the request channel here.
                    let marker = mqchat::delivered(&peer, seq);
                    if client
                        .try_publish(up.as_str(), QoS::AtLeastOnce, false, marker)
                        .is_err()
                    {
                        report
                            .device
                            .connection_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            PacketKind::DELIVERED if packet.from.as_ref() != Some(&me) => {
                if let Ok(marker) = Delivered::from_packet(&packet) {
                    report
                        .outgoing
                        .receipted_up_to
                        .fetch_max(marker.up_to, Ordering::Relaxed);
                }
            }
            PacketKind::ERROR => report
                .device
                .errors
                .push(error_code(&packet).map_or(0, |c| c.0)),
            _ => {}
        }
    }
}

impl MessageFlood {
    /// The figures for people, with the target.
    pub fn summary(&self) -> String {
        let ms = |us: u32| f64::from(us) / 1000.0;
        let mut out = format!(
            "message flood: bystanders alice<->bob at {}/s each way; mallory's window {} asked, {:?} granted; load before {}\n",
            self.rate, self.window_asked, self.window_granted, self.load_before
        );
        for p in &self.phases {
            let s = p.seconds.max(1e-9);
            out.push_str(&format!(
                "{:>5}: {:.0} s; bystanders {} sent, {} delivered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
                 flood {:.0} acked/s, {:.0} stored/s, {:.0} rate-limited/s; server CPU {:.0} %, \
                 RSS {:.1} MiB (peak {:.1}); generator CPU {:.0} %\n",
                p.name,
                p.seconds,
                p.sent,
                p.delivered,
                ms(p.latency_us.p50),
                ms(p.latency_us.p99),
                ms(p.latency_us.max),
                p.flood_acked as f64 / s,
                p.flood_stored as f64 / s,
                p.flood_rate_limited as f64 / s,
                100.0 * p.server_cpu_s / s,
                mib(p.server_rss_kib),
                mib(p.server_peak_rss_kib),
                100.0 * p.generator_cpu_s / s,
            ));
        }
        out.push_str(&format!(
            "bystanders: lost {}, unconfirmed {}, unreceipted {}, duplicates {}, errors {:?}, connection errors {}; drained in {:.1} s\n\
             flood: {} handed to the client, PUBACK refusals {}, stored {} in all (the victim received them; mallory got {} of her copies), rate-limited {} in all, other errors {:?}, connection errors {}\n",
            self.bystander_lost,
            self.bystander_unconfirmed,
            self.bystander_unreceipted,
            self.bystander_duplicates,
            self.bystander_errors,
            self.bystander_connection_errors,
            self.drain_s,
            self.flood_handed,
            self.flood_puback_refused,
            self.flood_stored_total,
            self.flood_confirmed_total,
            self.flood_rate_limited_total,
            self.flood_other_errors,
            self.flood_connection_errors,
        ));
        if let (Some(idle), Some(flood)) = (
            self.phases.iter().find(|p| p.name == "idle"),
            self.phases.iter().find(|p| p.name == "flood"),
        ) {
            let ratio = f64::from(flood.latency_us.p99) / f64::from(idle.latency_us.p99.max(1));
            let lossless = self.bystander_lost == 0
                && self.bystander_unconfirmed == 0
                && self.bystander_unreceipted == 0;
            out.push_str(&format!(
                "target: bystander p99 within 2x of idle: {:.2} ms vs {:.2} ms = {:.2}x: {}\n\
                 target: nothing of the bystanders lost: {}\n",
                ms(flood.latency_us.p99),
                ms(idle.latency_us.p99),
                ratio,
                if ratio <= 2.0 { "met" } else { "NOT met" },
                if lossless { "met" } else { "NOT met" },
            ));
        }
        out
    }
}
