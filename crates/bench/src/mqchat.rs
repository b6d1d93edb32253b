//! mqchat under test: the `mqchat serve` child process, its accounts, and the one-to-one
//! pairs of workload 1 speaking the wire protocol (docs/PROTOCOL.md) on raw MQTT clients.
//!
//! Pair i is user `a{i}` (sender) and `b{i}` (recipient), one device `phone` each,
//! authenticated with device tokens (SHA-256, not argon2: thousands of logins stay cheap).
//! The sender publishes a `message` on `mq/up/a{i}/phone`; the recipient gets it on
//! `mq/in/b{i}/d` and answers each with a `delivered` marker; the sender sees its stored copy
//! (the "sent" confirmation) and the forwarded marker on `mq/in/a{i}/d`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use mqchat_proto::body::{Availability, Body, Delivered, Message, Presence};
use mqchat_proto::{ConversationRef, DeviceId, IdGenerator, Packet, PacketKind, UserId};
use mqchat_store::{Durability, Store};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::{AsyncClient, Event, Incoming};
use tokio::task::JoinSet;

use crate::load::{Meter, Pacer, parse_stamp, stamp_text};
use crate::mqtt::{self, Connection, Login};
use crate::process::Guard;

/// The topic root the server uses by default.
pub const ROOT: &str = "mq";
/// The device id every simulated device uses.
pub const DEVICE: &str = "phone";

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A running `mqchat serve`, stopped (SIGTERM) when dropped.
#[derive(Debug)]
pub struct Server {
    guard: Guard,
    addr: SocketAddr,
}

impl Server {
    /// Starts `bin serve` on a free loopback port with its data in `data_dir`, and waits for
    /// its `mqchat listening: mqtt://ADDR ...` line. Logs go to `data_dir/server.log`.
    ///
    /// The throughput workloads run with the per-device and per-user packet rates off: a
    /// benchmark device sends 30 to 100 packets a second, above what the limits allow a
    /// person (README, "Limits"), and the figures measure the server's capacity. The flood
    /// benchmarks run with the defaults ([`Server::start_with`]).
    pub fn start(bin: &Path, data_dir: &Path, durability: &str) -> anyhow::Result<Self> {
        let config = data_dir.join("bench-limits.toml");
        std::fs::write(
            &config,
            "[limits]\ndevice_packets_per_sec = 0\nuser_packets_per_sec = 0\n",
        )?;
        Self::start_with(bin, data_dir, durability, Some(&config))
    }

    /// [`Server::start`] with the settings of a TOML file (`mqchat serve --config`); the
    /// data directory, listeners and durability given here take precedence over the file's.
    pub fn start_with(
        bin: &Path,
        data_dir: &Path,
        durability: &str,
        config: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let mut command = Guard::command(bin, None);
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-tcp", "127.0.0.1:0", "--listen-ws", "off"])
            .args(["--durability", durability])
            // The log is read back (the flood benchmarks count the server's own lines).
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log);
        let mut guard = Guard::spawn("mqchat serve", command)?;
        let stdout = guard.take_stdout().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .context("mqchat serve printed nothing within 60 s")?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("mqtt://"))
            .with_context(|| {
                format!(
                    "unexpected first line {line:?}; see {}",
                    data_dir.join("server.log").display()
                )
            })?
            .parse()?;
        Ok(Self { guard, addr })
    }

    /// The MQTT/TCP address for devices.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Fails if the server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.guard.check_running()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 20 s).
    pub fn stop(mut self) {
        self.guard.stop(Duration::from_secs(20));
    }
}

/// The database file of a data directory (as `mqchat serve` names it).
pub fn database(data_dir: &Path) -> PathBuf {
    data_dir.join("mqchat.db")
}

/// Creates users without passwords and one device each, returning each device's token.
/// Runs on the data directory directly, with unsynced commits (setup is not measured).
pub fn add_devices(data_dir: &Path, users: &[String]) -> anyhow::Result<Vec<String>> {
    let mut store = Store::open(&database(data_dir), Durability::Normal)?;
    let device = DeviceId::parse(DEVICE)?;
    let now = now_ms();
    users
        .iter()
        .map(|name| {
            let user = UserId::parse(name)?;
            store.add_user(&user, None, now)?;
            Ok(store.add_device(&user, &device, now)?)
        })
        .collect()
}

/// A device's login: persistent session, the offline-presence will of the spec.
pub fn login(user: &str, token: &str) -> Login {
    Login {
        client_id: format!("{user}:{DEVICE}"),
        username: user.to_owned(),
        password: token.to_owned(),
        persistent: true,
        will: Some((presence_topic(user), will_payload())),
    }
}

/// `{root}/up/{user}/{device}`.
pub fn up_topic(user: &str) -> String {
    format!("{ROOT}/up/{user}/{DEVICE}")
}

/// `{root}/in/{user}/d`.
pub fn inbox_topic(user: &str) -> String {
    format!("{ROOT}/in/{user}/d")
}

/// `{root}/in/{user}/r/{device}`.
pub fn reply_topic(user: &str) -> String {
    format!("{ROOT}/in/{user}/r/{DEVICE}")
}

/// `{root}/pr/{user}/{device}`.
pub fn presence_topic(user: &str) -> String {
    format!("{ROOT}/pr/{user}/{DEVICE}")
}

fn will_payload() -> Vec<u8> {
    Presence::new(Availability::Offline).to_packet().encode()
}

/// The presence a device publishes after connecting: available, with its clock.
pub fn available_payload() -> Vec<u8> {
    let mut packet = Presence::new(Availability::Available).to_packet();
    packet.ts = Some(now_ms());
    packet.encode()
}

/// The filters a device subscribes to (durable inbox and its reply topic).
pub fn device_filters(user: &str) -> Vec<(String, QoS)> {
    vec![
        (inbox_topic(user), QoS::AtLeastOnce),
        (reply_topic(user), QoS::AtLeastOnce),
    ]
}

/// Makes message ids for one device (time-ordered, random low bits).
#[derive(Debug)]
pub struct Ids(IdGenerator);

impl Ids {
    /// A generator.
    pub fn new() -> Self {
        Self(IdGenerator::new())
    }

    /// The next id.
    pub fn next(&mut self) -> mqchat_proto::MessageId {
        self.0.next(now_ms(), rand::random())
    }
}

impl Default for Ids {
    fn default() -> Self {
        Self::new()
    }
}

/// A text message from a device to `peer`.
pub fn message(ids: &mut Ids, peer: &ConversationRef, text: String) -> Vec<u8> {
    let mut packet = Message::text(text).to_packet();
    packet.id = Some(ids.next());
    packet.conv = Some(peer.clone());
    packet.encode()
}

/// A delivered marker: everything from `peer` up to `seq` arrived.
pub fn delivered(peer: &ConversationRef, seq: u64) -> Vec<u8> {
    let mut packet = Delivered { up_to: seq }.to_packet();
    packet.conv = Some(peer.clone());
    packet.encode()
}

/// Connects a device, subscribes it, and publishes its presence.
pub async fn connect_device(
    addr: SocketAddr,
    user: &str,
    token: &str,
    channel: usize,
) -> anyhow::Result<Connection> {
    let mut conn = mqtt::connect(mqtt::options(addr, &login(user, token)), channel).await?;
    conn.subscribe(&device_filters(user)).await?;
    conn.publish_and_wait(&presence_topic(user), available_payload(), true)
        .await?;
    Ok(conn)
}

/// User names of pair `i`.
pub fn pair_users(i: usize) -> (String, String) {
    (format!("a{i}"), format!("b{i}"))
}

/// Connects `tokens.len() / 2` pairs and starts their tasks (sender, sender's inbox,
/// recipient), which report to `meter` until the meter is dropped or the set is aborted.
pub async fn start_pairs(
    addr: SocketAddr,
    tokens: &[String],
    meter: &Arc<Meter>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    for i in 0..meter.pairs() {
        let (a, b) = pair_users(i);
        let recipient = connect_device(addr, &b, &tokens[2 * i + 1], 4096).await?;
        let sender = connect_device(addr, &a, &tokens[2 * i], 4096).await?;
        let (a_conv, b_conv) = (ConversationRef::parse(&a)?, ConversationRef::parse(&b)?);
        tasks.spawn(recipient_loop(
            recipient,
            b.clone(),
            a_conv,
            i,
            meter.clone(),
        ));
        let Connection { client, events, .. } = sender;
        tasks.spawn(sender_inbox_loop(events, i, meter.clone()));
        tasks.spawn(sender_loop(
            client,
            a,
            b_conv,
            meter.pacer(i),
            meter.clone(),
        ));
    }
    Ok(())
}

async fn sender_loop(
    client: AsyncClient,
    user: String,
    peer: ConversationRef,
    mut pacer: Pacer,
    meter: Arc<Meter>,
) {
    let topic = up_topic(&user);
    let mut ids = Ids::new();
    while let Some(stamp) = pacer.next().await {
        let payload = message(&mut ids, &peer, stamp_text(stamp));
        if client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            meter.error();
            return;
        }
        pacer.sent(stamp);
    }
}

fn text_stamp(packet: &Packet) -> Option<u64> {
    Message::from_packet(packet)
        .ok()
        .and_then(|m| parse_stamp(&m.text))
}

/// Counts an error reply, printing the first few.
fn reply_error(meter: &Meter, who: &str, publish: &Publish) {
    meter.error();
    let errors = meter
        .run()
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    if errors <= 3 {
        eprintln!(
            "mqchat-bench: {who} got an error reply: {:?}",
            Packet::decode(&publish.payload)
        );
    }
}

async fn recipient_loop(
    mut conn: Connection,
    user: String,
    peer: ConversationRef,
    index: usize,
    meter: Arc<Meter>,
) {
    let up = up_topic(&user);
    loop {
        let publish = match conn.events.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("mqchat-bench: {user}: connection failed: {e}");
                meter.error();
                return;
            }
        };
        let Ok(packet) = Packet::decode(&publish.payload) else {
            continue;
        };
        match packet.kind {
            PacketKind::MESSAGE => {
                if let (Some(stamp), Some(seq)) = (text_stamp(&packet), packet.seq) {
                    meter.delivered(index, stamp);
                    // The event loop is this task: never wait on the request channel here.
                    let marker = delivered(&peer, seq);
                    if conn
                        .client
                        .try_publish(up.as_str(), QoS::AtLeastOnce, false, marker)
                        .is_err()
                    {
                        meter.error();
                    }
                }
            }
            PacketKind::ERROR => reply_error(&meter, &user, &publish),
            _ => {}
        }
    }
}

async fn sender_inbox_loop(mut events: rumqttc::v5::EventLoop, index: usize, meter: Arc<Meter>) {
    let mut receipted = 0;
    loop {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("mqchat-bench: sender {index}: connection failed: {e}");
                meter.error();
                return;
            }
        };
        let Ok(packet) = Packet::decode(&publish.payload) else {
            continue;
        };
        match packet.kind {
            // The sender's own copy: the message is stored ("sent").
            PacketKind::MESSAGE if packet.from.is_some() => {
                if let Some(stamp) = text_stamp(&packet) {
                    meter.confirmed(stamp);
                }
            }
            PacketKind::DELIVERED => {
                if let Ok(marker) = Delivered::from_packet(&packet)
                    && marker.up_to > receipted
                {
                    meter.receipts(marker.up_to - receipted);
                    receipted = marker.up_to;
                }
            }
            PacketKind::ERROR => reply_error(&meter, "sender", &publish),
            _ => {}
        }
    }
}

/// Checks that `bin` exists and is executable-looking.
pub fn check_binary(bin: &Path) -> anyhow::Result<()> {
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p mqchat`",
            bin.display()
        );
    }
    Ok(())
}
