//! Raw MQTT 5 devices on rumqttc: the options every load generator uses, connecting, and
//! subscribing. No mqchat SDK: the workloads speak the wire protocol themselves, so that
//! the generator stays light and the same code drives a plain broker.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::NetworkOptions;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, Incoming, MqttOptions};

/// Session expiry a device asks for (seven days, as the spec recommends).
pub const SESSION_EXPIRY_SECS: u32 = 604_800;

/// Who connects, and how.
#[derive(Clone, Debug)]
pub struct Login {
    /// The MQTT client id (`user:device` for mqchat).
    pub client_id: String,
    /// The username.
    pub username: String,
    /// The password or device token.
    pub password: String,
    /// Clean start `false` with a session expiry (a persistent session), or a clean session.
    pub persistent: bool,
    /// The will: topic and payload, retained at QoS 1.
    pub will: Option<(String, Vec<u8>)>,
}

/// Outgoing QoS 1 publishes in flight per client. Brokers grant fewer (rmqtt 16, Mosquitto
/// 20), but the bound matters: without it rumqttc 0.25 allocates a slot for each of the
/// 65,535 packet ids up front, several megabytes per connection.
const INFLIGHT: u16 = 64;

/// rumqttc options for a device: TCP_NODELAY on (without it, loopback latencies are
/// dominated by Nagle's algorithm and delayed ACKs), 60 s keep-alive, generous connect
/// timeout (reconnect storms queue in the listen backlog).
pub fn options(addr: SocketAddr, login: &Login) -> MqttOptions {
    let mut options = MqttOptions::new(&login.client_id, addr.ip().to_string(), addr.port());
    options
        .set_credentials(&login.username, &login.password)
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(Some(1 << 20))
        .set_clean_start(!login.persistent)
        .set_outgoing_inflight_upper_limit(INFLIGHT)
        // As the SDK does: accept the broker's topic aliases for delivered topics.
        .set_topic_alias_max(Some(16))
        // TCP connect plus CONNACK (rumqttc's default is 5 s).
        .set_connection_timeout(120);
    if login.persistent {
        options.set_session_expiry_interval(Some(SESSION_EXPIRY_SECS));
    }
    if let Some((topic, payload)) = &login.will {
        options.set_last_will(LastWill::new(
            topic,
            payload.clone(),
            QoS::AtLeastOnce,
            true,
            None,
        ));
    }
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(120);
    options.set_network_options(network);
    options
}

/// A connected device: the client handle and the event loop its owner must poll.
pub struct Connection {
    /// Sends requests to the event loop.
    pub client: AsyncClient,
    /// The event loop.
    pub events: EventLoop,
    /// Whether the broker kept a session for this client id.
    pub session_present: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session_present", &self.session_present)
            .finish_non_exhaustive()
    }
}

/// Connects and waits for the CONNACK. `channel` bounds the requests queued in the client.
pub async fn connect(options: MqttOptions, channel: usize) -> anyhow::Result<Connection> {
    let id = options.client_id();
    let (client, mut events) = AsyncClient::new(options, channel);
    let connack = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => return Ok(ack),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .with_context(|| format!("{id}: no CONNACK within 180 s"))?
    .with_context(|| format!("{id}: connect"))?;
    Ok(Connection {
        client,
        events,
        session_present: connack.session_present,
    })
}

impl Connection {
    /// Subscribes to `filters` in one SUBSCRIBE and waits for the SUBACK; publishes that
    /// arrive meanwhile (a resumed session's queue) are returned.
    pub async fn subscribe(&mut self, filters: &[(String, QoS)]) -> anyhow::Result<Vec<Publish>> {
        let filters: Vec<Filter> = filters
            .iter()
            .map(|(f, qos)| Filter::new(f.clone(), *qos))
            .collect();
        self.client.subscribe_many(filters).await?;
        let mut early = Vec::new();
        let suback = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match self.events.poll().await? {
                    Event::Incoming(Incoming::SubAck(ack)) => return anyhow::Ok(ack),
                    Event::Incoming(Incoming::Publish(p)) => early.push(p),
                    _ => {}
                }
            }
        })
        .await
        .context("no SUBACK within 60 s")??;
        if let Some(code) = suback
            .return_codes
            .iter()
            .find(|c| !matches!(c, SubscribeReasonCode::Success(_)))
        {
            bail!("subscription refused: {code:?}");
        }
        Ok(early)
    }

    /// Publishes at QoS 1 and polls until the PUBACK; publishes that arrive meanwhile are
    /// returned.
    pub async fn publish_and_wait(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> anyhow::Result<Vec<Publish>> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await?;
        let mut early = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match self.events.poll().await? {
                    Event::Incoming(Incoming::PubAck(_)) => return anyhow::Ok(()),
                    Event::Incoming(Incoming::Publish(p)) => early.push(p),
                    _ => {}
                }
            }
        })
        .await
        .context("no PUBACK within 60 s")??;
        Ok(early)
    }
}
