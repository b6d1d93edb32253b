//! The hub's connection to the broker and the worker that runs the engine.
//!
//! Two kinds of link: over MQTT (`mqchat hub` against any broker), and in-process (the
//! embedded broker of `mqchat serve`, which hands the hub its topics' publishes through a
//! [`Tap`] and takes the hub's publishes by function call: no MQTT connection, encoding,
//! socket or PUBACK between them). Three parts, connected by channels:
//! - the **link task** (MQTT) polls rumqttc's event loop and forwards every PUBLISH it
//!   receives; in-process, the broker's connection tasks call the [`Tap`] instead;
//! - the **worker thread** owns the store's writer; it takes what has arrived (up to
//!   [`MAX_BATCH`]), runs it through the engine in one transaction, and hands the result on;
//! - the **publisher task** sends the hub's publishes, then acknowledges the inputs (manual
//!   acks: an input is acknowledged only after its effects are committed and published),
//!   then reports the delivered events back to the worker, which removes them from the
//!   outbox in its next batch's transaction (or in one of their own at a clock tick
//!   without packets).
//!
//! The link survives broker restarts: rumqttc reconnects on the next poll (with a growing
//! pause), the subscriptions are made again after every CONNACK, and acknowledgements are
//! tagged with the connection they belong to, so an input received before a reconnection is
//! never acknowledged on the new connection (where its packet id may name another message);
//! the broker sends it again and the engine's deduplication makes that harmless.
//!
//! The inbound channel is unbounded on purpose: over MQTT the broker's in-flight window for
//! the hub's session bounds it, and a bounded channel here would close a cycle of bounded
//! channels (event loop → worker → publisher → event loop) that could deadlock under load.
//! In-process, the [`Tap`] bounds it with a semaphore whose permits the publisher gives back
//! once an input is handled: the publisher never waits for a device's connection (the
//! broker queues to sessions without waiting), so there is no cycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mqchat_broker::Broker;
use mqchat_hub::{ConversationKey, Engine, HubCredentials, Outbound, Push, Qos, Upstream};
use mqchat_proto::{DeviceIdentity, TopicRoot};
use mqchat_store::Store;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::push::Pusher;
use crate::tls::BrokerTarget;

/// The hub's broker username; no user id can start with `_`.
pub(crate) const HUB_USERNAME: &str = "_hub";

/// Most packets processed in one store transaction.
const MAX_BATCH: usize = 512;

/// Packets that arrive within this time of the previous batch are a stream, whose batches
/// the worker holds open for [`COMMIT_HOLD`].
const STREAM_GAP: Duration = Duration::from_millis(2);

/// How long a batch of a stream waits for more packets before its transaction (group
/// commit): well under a disk sync, and under a millisecond of latency.
const COMMIT_HOLD: Duration = Duration::from_micros(700);

/// A batch this big goes at once: it shares its commit enough.
const HOLD_BELOW: usize = 32;

/// Inputs handed over in-process and not yet handled, at most: beyond it the broker's
/// connection tasks wait (their devices' PUBACKs with them).
const TAP_WINDOW: usize = 4096;

/// How an input is acknowledged once its effects are committed and published.
// Over MQTT every input has the big variant: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Ack {
    /// Over MQTT: the number of the connection it came on (counted from 1 by CONNACKs) and
    /// the packet.
    Mqtt(u64, Publish),
    /// In-process: a permit of the [`Tap`]'s window goes back.
    Tap,
}

/// What the worker is given: a PUBLISH, a tick of the clock (twice a second: for the SIP
/// proxy's timers, spec 19, and to commit the delivery confirmations held while no packet
/// comes), or the end (in-process, where the broker keeps the inbound channel open).
// Nearly every input is a PUBLISH: boxing it would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Publish(Upstream, Ack),
    Tick,
    Stop,
}

/// What the worker hands to the publisher.
struct Work {
    publishes: Vec<Outbound>,
    acks: Vec<Ack>,
    delivered: Vec<(ConversationKey, u64)>,
    evict: Vec<DeviceIdentity>,
    pushes: Vec<Push>,
    /// Presence subscriptions to end: (the reader's client id prefix `{user}:`, the
    /// owner's presence topic prefix `{root}/pr/{owner}/`).
    presence_ended: Vec<(String, String)>,
}

/// How the hub connects to its broker.
#[derive(Clone, Debug)]
pub(crate) struct LinkOptions {
    /// The broker: host, port, and TLS settings for `mqtts://`.
    pub(crate) broker: BrokerTarget,
    /// The hub's MQTT client id (starts with its username).
    pub(crate) client_id: String,
    /// Subscribe through `$share/mqchat/` (several hubs share the load), or plainly (a
    /// broker without shared subscriptions; then only one hub may run).
    pub(crate) shared: bool,
    /// `Some(seconds)`: a persistent session (clean start off) that the broker keeps that
    /// long, so upstream packets published while the hub is away wait for it. `None`: a
    /// clean session (the embedded broker, which lives and dies with the hub).
    pub(crate) session_expiry: Option<u32>,
    /// Keep trying to connect at start (a separate hub process whose broker may come up
    /// later); otherwise the first failure is returned.
    pub(crate) wait_for_broker: bool,
}

impl LinkOptions {
    fn filters(&self, root: &mqchat_proto::TopicRoot) -> Vec<String> {
        let share = if self.shared { "$share/mqchat/" } else { "" };
        vec![
            format!("{share}{root}/up/+/+"),
            format!("{share}{root}/pr/+/+"),
        ]
    }
}

/// Where the hub's link goes.
pub(crate) enum Attach {
    /// An MQTT connection to a broker (`mqchat hub`).
    Mqtt(LinkOptions),
    /// The embedded broker, in-process (`mqchat serve`): it hands the hub its topics'
    /// publishes through the [`Tap`] whose other end is `tap`. `takeover` is its loopback
    /// listener, where revoked devices' sessions are taken over (spec 7.12).
    Embedded {
        broker: Arc<Broker>,
        tap: TapEnd,
        takeover: std::net::SocketAddr,
    },
}

/// The embedded broker's way into the hub: the broker calls it (as a
/// [`mqchat_broker::Consumer`]) with every accepted publish on the hub's topics, on the
/// publisher's connection task.
pub(crate) struct Tap {
    /// `{root}/`.
    prefix: String,
    /// Whether the SIP gateway's `{root}/gw/+/in` topics are the hub's too.
    gateway: bool,
    inbound: mpsc::UnboundedSender<Input>,
    window: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    /// Holds the publishes of a device far above its packet rate (`None`: no rate limit).
    pacer: Option<std::sync::Mutex<crate::pace::Pacer>>,
}

/// The hub's end of a [`Tap`], for [`Link::start`].
pub(crate) struct TapEnd {
    inbound_tx: mpsc::UnboundedSender<Input>,
    inbound_rx: mpsc::UnboundedReceiver<Input>,
    window: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for TapEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapEnd").finish_non_exhaustive()
    }
}

impl Tap {
    /// A tap for the hub's topics under `root` (with the gateway's when SIP is on), and its
    /// other end; `pacer` holds the publishes of devices far above their rate.
    pub(crate) fn new(
        root: &TopicRoot,
        gateway: bool,
        pacer: Option<crate::pace::Pacer>,
    ) -> (Arc<Self>, TapEnd) {
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let window = Arc::new(Semaphore::new(TAP_WINDOW));
        let pending = Arc::new(AtomicUsize::new(0));
        let tap = Self {
            prefix: format!("{root}/"),
            gateway,
            inbound: inbound_tx.clone(),
            window: window.clone(),
            pending: pending.clone(),
            pacer: pacer.map(std::sync::Mutex::new),
        };
        let end = TapEnd {
            inbound_tx,
            inbound_rx,
            window,
            pending,
        };
        (Arc::new(tap), end)
    }
}

#[async_trait]
impl mqchat_broker::Consumer for Tap {
    /// The topics the MQTT link subscribes to: `{root}/up/+/+`, `{root}/pr/+/+`, and
    /// `{root}/gw/+/in` with SIP. The engine checks each topic fully.
    fn wants(&self, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(&self.prefix) else {
            return false;
        };
        let mut levels = rest.split('/');
        match (levels.next(), levels.next(), levels.next(), levels.next()) {
            (Some("up" | "pr"), Some(_), Some(_), None) => true,
            (Some("gw"), Some(_), Some("in"), None) => self.gateway,
            _ => false,
        }
    }

    async fn take(&self, topic: &str, payload: bytes::Bytes) -> bool {
        // Devices are paced; the SIP gateway (one publisher for every SIP peer) is not.
        let device = !topic
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with("gw/"));
        if let Some(pacer) = self.pacer.as_ref().filter(|_| device) {
            // The pacer's table is consistent between statements.
            let hold = pacer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .hold(topic, std::time::Instant::now());
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
        }
        // The permit goes back when the publisher has handled the input (`Ack::Tap`). The
        // window is closed once the hub has stopped.
        match self.window.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => {
                tracing::warn!(topic, "publish arrived after the hub stopped; not taken");
                return false;
            }
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        let input = Input::Publish(
            Upstream {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            },
            Ack::Tap,
        );
        if self.inbound.send(input).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.window.add_permits(1);
            tracing::warn!(topic, "publish arrived after the hub stopped; not taken");
            return false;
        }
        true
    }
}

/// Where the publisher sends the hub's publishes and acknowledgements.
#[derive(Clone)]
enum Sink {
    Mqtt {
        client: AsyncClient,
        /// The number of the current connection.
        connection: Arc<AtomicU64>,
    },
    Embedded {
        broker: Arc<Broker>,
        window: Arc<Semaphore>,
    },
}

impl Sink {
    /// Ends the subscriptions under `filter_prefix` of every session whose client id starts
    /// with `client_prefix`: at once with the embedded broker; an external broker keeps
    /// them (docs/BROKERS.md).
    async fn end_subscriptions(&self, client_prefix: &str, filter_prefix: &str) {
        match self {
            Self::Embedded { broker, .. } => {
                let n = broker.end_subscriptions(client_prefix, filter_prefix).await;
                tracing::debug!(client_prefix, filter_prefix, n, "ended subscriptions");
            }
            Self::Mqtt { .. } => {
                tracing::debug!(
                    client_prefix,
                    filter_prefix,
                    "an external broker keeps the subscriptions until the device subscribes again"
                );
            }
        }
    }

    async fn publish(&self, o: Outbound) -> Result<(), String> {
        match self {
            Self::Mqtt { client, .. } => {
                let qos = match o.qos {
                    Qos::AtMostOnce => QoS::AtMostOnce,
                    Qos::AtLeastOnce => QoS::AtLeastOnce,
                };
                client
                    .publish(o.topic, qos, o.retain, o.payload)
                    .await
                    .map_err(|e| e.to_string())
            }
            Self::Embedded { broker, .. } => {
                let qos = match o.qos {
                    Qos::AtMostOnce => mqchat_broker::Qos::AtMostOnce,
                    Qos::AtLeastOnce => mqchat_broker::Qos::AtLeastOnce,
                };
                broker
                    .publish(&o.topic, o.payload.into(), qos, o.retain)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Nothing more will be acknowledged.
    fn close(&self) {
        if let Self::Embedded { window, .. } = self {
            window.close();
        }
    }

    async fn ack(&self, acks: &[Ack]) {
        match self {
            Self::Mqtt { client, connection } => {
                // An input from an earlier connection is not acknowledged: its packet id
                // means nothing (or another message) now, and the broker delivers it again.
                let current = connection.load(Ordering::SeqCst);
                for ack in acks {
                    if let Ack::Mqtt(received_on, publish) = ack
                        && *received_on == current
                    {
                        let _ = client.ack(publish).await;
                    }
                }
            }
            Self::Embedded { window, .. } => window.add_permits(acks.len()),
        }
    }
}

pub(crate) struct Link {
    /// Where the publisher sends (over MQTT: the client, disconnected at stop).
    sink: Sink,
    /// Where [`Input::Stop`] goes.
    inbound: mpsc::UnboundedSender<Input>,
    link_task: Option<tokio::task::JoinHandle<()>>,
    publisher: tokio::task::JoinHandle<()>,
    worker: std::thread::JoinHandle<()>,
    pending: Arc<AtomicUsize>,
    /// Closes devices' broker sessions (revoked by a packet, or ended by administration).
    evictor: Evictor,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("mqtt", &matches!(self.sink, Sink::Mqtt { .. }))
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Attaches the hub to its broker (over MQTT: connects, subscribes, and returns once
    /// the subscriptions are acknowledged), publishes what a previous run left, and starts
    /// the worker.
    pub(crate) async fn start(
        attach: Attach,
        credentials: &HubCredentials,
        engine: Engine,
        mut store: Store,
        pusher: Option<Arc<Pusher>>,
    ) -> Result<Self, String> {
        // Work left from a previous run: events committed but never handed to the broker,
        // and the retained profiles (the embedded broker keeps retained messages in memory).
        let mut startup = engine
            .recover(&mut store)
            .map_err(|e| format!("outbox: {e}"))?;
        startup.publishes.extend(
            engine
                .profiles(&mut store)
                .map_err(|e| format!("profiles: {e}"))?,
        );

        let Attached {
            sink,
            inbound_tx,
            inbound_rx,
            pending,
            link_task,
            takeover,
        } = match attach {
            Attach::Mqtt(link) => connect(&link, credentials, &engine).await?,
            Attach::Embedded {
                broker,
                tap,
                takeover,
            } => Attached {
                sink: Sink::Embedded {
                    broker,
                    window: tap.window,
                },
                inbound_tx: tap.inbound_tx,
                inbound_rx: tap.inbound_rx,
                pending: tap.pending,
                link_task: None,
                takeover: BrokerTarget::plain(takeover),
            },
        };
        {
            // A weak sender: the ticker must not keep the worker alive after the link ends.
            let ticks = inbound_tx.downgrade();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(500));
                loop {
                    interval.tick().await;
                    match ticks.upgrade() {
                        Some(tx) if tx.send(Input::Tick).is_ok() => {}
                        _ => break,
                    }
                }
            });
        }

        let (work_tx, work_rx) = mpsc::channel::<Work>(64);
        let (confirm_tx, confirm_rx) = mpsc::unbounded_channel::<Vec<(ConversationKey, u64)>>();
        work_tx
            .send(Work {
                publishes: startup.publishes,
                acks: Vec::new(),
                delivered: startup.delivered,
                evict: Vec::new(),
                pushes: Vec::new(),
                presence_ended: Vec::new(),
            })
            .await
            .map_err(|_| "publisher not running".to_owned())?;
        let evictor = Evictor {
            broker: takeover,
            credentials: credentials.clone(),
        };
        let publisher = tokio::spawn(run_publisher(
            sink.clone(),
            work_rx,
            confirm_tx,
            pending.clone(),
            evictor.clone(),
            pusher,
        ));
        let worker = std::thread::Builder::new()
            .name("mqchat-hub".into())
            .spawn(move || run_worker(engine, store, inbound_rx, work_tx, confirm_rx))
            .map_err(|e| format!("cannot start the hub worker: {e}"))?;
        Ok(Self {
            sink,
            inbound: inbound_tx,
            link_task,
            publisher,
            worker,
            pending,
            evictor,
        })
    }

    /// What closes devices' broker sessions.
    pub(crate) fn evictor(&self) -> Evictor {
        self.evictor.clone()
    }

    /// Waits (up to 5 s) until everything received has been processed and published, then
    /// disconnects (over MQTT) and stops the worker, which flushes the store.
    pub(crate) async fn stop(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.pending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Sink::Mqtt { client, .. } = &self.sink {
            let _ = client.disconnect().await;
        }
        // The link task ends when the event loop reports the disconnection. The worker ends
        // at the stop input (or when the inbound channel closes), which ends the publisher.
        if let Some(link_task) = self.link_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), link_task).await;
        }
        let _ = self.inbound.send(Input::Stop);
        drop(self.inbound);
        let worker = self.worker;
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.publisher).await;
    }
}

/// A link attached to its broker: where the hub's publishes go, where its inputs come
/// from, the count of inputs not yet handled, the MQTT link task, and the broker's address
/// for session takeovers.
struct Attached {
    sink: Sink,
    inbound_tx: mpsc::UnboundedSender<Input>,
    inbound_rx: mpsc::UnboundedReceiver<Input>,
    pending: Arc<AtomicUsize>,
    link_task: Option<tokio::task::JoinHandle<()>>,
    takeover: BrokerTarget,
}

/// Connects to the broker over MQTT, starts the link task, and returns once the hub's
/// subscriptions are acknowledged.
async fn connect(
    link: &LinkOptions,
    credentials: &HubCredentials,
    engine: &Engine,
) -> Result<Attached, String> {
    let root = engine.config().root.clone();
    let mut options = link.broker.options(&link.client_id);
    options
        .set_credentials(&credentials.username, &credentials.secret)
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(link.session_expiry.is_none())
        .set_session_expiry_interval(link.session_expiry)
        .set_manual_acks(true)
        .set_max_packet_size(Some(16 * 1024 * 1024))
        .set_request_channel_capacity(4096);
    let (client, eventloop) = AsyncClient::new(options, 4096);
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel::<Input>();
    let mut filters = link.filters(&root);
    if engine.config().sip.is_some() {
        filters.push(root.gateway_in_filter(link.shared.then_some("mqchat")));
    }
    let pending = Arc::new(AtomicUsize::new(0));
    let connection = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = oneshot::channel();
    let link_task = tokio::spawn(run_link(
        eventloop,
        LinkState {
            client: client.clone(),
            filters,
            wait_for_broker: link.wait_for_broker,
            inbound: inbound_tx.clone(),
            pending: pending.clone(),
            connection: connection.clone(),
        },
        ready_tx,
    ));
    // An external hub waits for its broker as long as it takes (its caller decides when
    // to give up).
    let ready = if link.wait_for_broker {
        Ok(ready_rx.await)
    } else {
        tokio::time::timeout(Duration::from_secs(10), ready_rx).await
    };
    match ready {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(_)) => return Err("the link stopped before subscribing".into()),
        Err(_) => {
            return Err(
                "the broker did not acknowledge the hub's subscriptions within 10 s".into(),
            );
        }
    }
    Ok(Attached {
        sink: Sink::Mqtt { client, connection },
        inbound_tx,
        inbound_rx,
        pending,
        link_task: Some(link_task),
        takeover: link.broker.clone(),
    })
}

/// What the link task works with.
struct LinkState {
    client: AsyncClient,
    filters: Vec<String>,
    wait_for_broker: bool,
    inbound: mpsc::UnboundedSender<Input>,
    pending: Arc<AtomicUsize>,
    /// The number of the current connection (incremented at each CONNACK).
    connection: Arc<AtomicU64>,
}

/// The pause before the `failures`-th reconnection attempt: 100 ms doubling up to 5 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.saturating_sub(1).min(6)).min(5000))
}

async fn run_link(
    mut eventloop: EventLoop,
    state: LinkState,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut subacks = 0;
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(rumqttc::v5::Incoming::Publish(publish))) => {
                failures = 0;
                state.pending.fetch_add(1, Ordering::SeqCst);
                let connection = state.connection.load(Ordering::SeqCst);
                let upstream = Upstream {
                    topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                    payload: publish.payload.to_vec(),
                };
                let input = Input::Publish(upstream, Ack::Mqtt(connection, publish));
                if state.inbound.send(input).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(rumqttc::v5::Incoming::ConnAck(connack))) => {
                failures = 0;
                let n = state.connection.fetch_add(1, Ordering::SeqCst) + 1;
                if n > 1 {
                    tracing::info!(
                        session_present = connack.session_present,
                        "hub reconnected to the broker"
                    );
                }
                // Subscribing again is harmless when the session survived and necessary
                // when it did not (a broker restarted without persistence). The requests
                // go through the client's queue, which this task drains: send them from
                // another task.
                let client = state.client.clone();
                let filters = state.filters.clone();
                tokio::spawn(async move {
                    for filter in filters {
                        if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                            tracing::error!(error = %e, "hub could not subscribe");
                        }
                    }
                });
            }
            Ok(Event::Incoming(rumqttc::v5::Incoming::SubAck(suback))) => {
                let refused = suback.return_codes.iter().any(|c| {
                    !matches!(
                        c,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    )
                });
                if refused {
                    tracing::error!(?suback, "the broker refused a hub subscription");
                }
                subacks += 1;
                if subacks == state.filters.len()
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(if refused {
                        Err("the broker refused the hub's subscription (check its ACL)".into())
                    } else {
                        Ok(())
                    });
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                let refused = matches!(e, rumqttc::v5::ConnectionError::ConnectionRefused(_));
                if (refused || !state.wait_for_broker)
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                failures = failures.saturating_add(1);
                let pause = backoff(failures);
                if ready.is_some() {
                    tracing::warn!(error = %e, retry_in = ?pause, "broker not reachable yet");
                } else {
                    tracing::error!(error = %e, retry_in = ?pause, "hub link to the broker failed; reconnecting");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn run_worker(
    mut engine: Engine,
    mut store: Store,
    mut inbound: mpsc::UnboundedReceiver<Input>,
    work: mpsc::Sender<Work>,
    mut confirmations: mpsc::UnboundedReceiver<Vec<(ConversationKey, u64)>>,
) {
    // Deliveries the broker has taken, not yet cleared from the outbox: cleared in the next
    // batch's transaction, or on their own at a tick without packets. They only matter after
    // a crash (an event still in the outbox is delivered again at start).
    let mut done: Vec<(ConversationKey, u64)> = Vec::new();
    let mut stop = false;
    // When the last batch was handed on: packets arriving soon after it are a stream.
    let mut last_batch: Option<Instant> = None;
    while !stop && let Some(first) = inbound.blocking_recv() {
        let mut upstream: Vec<Upstream> = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        let mut tick = false;
        let mut next = Some(first);
        let started = Instant::now();
        let mut hold = last_batch
            .is_some_and(|t| started.duration_since(t) < STREAM_GAP)
            .then_some(started + COMMIT_HOLD);
        loop {
            while let Some(input) = next.take() {
                match input {
                    // Upstream packets and presence alike: the engine tells them apart by
                    // topic.
                    Input::Publish(publish, ack) => {
                        upstream.push(publish);
                        acks.push(ack);
                    }
                    Input::Tick => tick = true,
                    Input::Stop => stop = true,
                }
                if !stop && upstream.len() < MAX_BATCH {
                    next = inbound.try_recv().ok();
                }
            }
            // Group commit in a stream of packets: a commit (a disk sync) shared by a few
            // more packets costs each of them less than one each, for a wait shorter than
            // the sync itself. A batch that is big already, or a quiet moment, goes at once.
            match hold.take() {
                Some(until) if !stop && !upstream.is_empty() && upstream.len() < HOLD_BELOW => {
                    let now = Instant::now();
                    if until > now {
                        std::thread::sleep(until - now);
                    }
                    next = inbound.try_recv().ok();
                }
                _ => break,
            }
        }
        if tick {
            let output = engine.tick(&mut store, crate::now_ms());
            let busy = !output.publishes.is_empty() || !output.pushes.is_empty();
            if busy
                && work
                    .blocking_send(Work {
                        publishes: output.publishes,
                        acks: Vec::new(),
                        delivered: output.delivered,
                        evict: Vec::new(),
                        pushes: output.pushes,
                        presence_ended: Vec::new(),
                    })
                    .is_err()
            {
                break;
            }
        }
        while let Ok(confirmed) = confirmations.try_recv() {
            done.extend(confirmed);
        }
        if upstream.is_empty() {
            if tick && !done.is_empty() {
                if let Err(e) = engine.confirm(&mut store, &done) {
                    tracing::error!(error = %e, "could not clear the outbox; events will be delivered again at restart");
                }
                done.clear();
            }
            continue;
        }
        let now = crate::now_ms();
        let output = engine.process_and_confirm(&mut store, now, &upstream, &done);
        done.clear();
        let root = &engine.config().root;
        let presence_ended = output
            .presence_ended
            .iter()
            .map(|(reader, owner)| (format!("{reader}:"), format!("{root}/pr/{owner}/")))
            .collect();
        let sent = work.blocking_send(Work {
            publishes: output.publishes,
            acks,
            delivered: output.delivered,
            evict: output.evict,
            pushes: output.pushes,
            presence_ended,
        });
        if sent.is_err() {
            break;
        }
        last_batch = Some(Instant::now());
    }
    while let Ok(confirmed) = confirmations.try_recv() {
        done.extend(confirmed);
    }
    if let Err(e) = engine.confirm(&mut store, &done) {
        tracing::error!(error = %e, "could not clear the outbox; events will be delivered again at restart");
    }
    if let Err(e) = store.checkpoint() {
        tracing::error!(error = %e, "store checkpoint at shutdown failed");
    }
    tracing::debug!("hub worker stopped");
}

/// `pending` counts PUBLISHes received and not yet fully handled: it goes down only here,
/// once their effects are published and they are acknowledged, so shutdown can wait for it.
async fn run_publisher(
    sink: Sink,
    mut work: mpsc::Receiver<Work>,
    confirmations: mpsc::UnboundedSender<Vec<(ConversationKey, u64)>>,
    pending: Arc<AtomicUsize>,
    evictor: Evictor,
    pusher: Option<Arc<Pusher>>,
) {
    while let Some(Work {
        publishes,
        acks,
        delivered,
        evict,
        pushes,
        presence_ended,
    }) = work.recv().await
    {
        let mut ok = true;
        for o in publishes {
            if let Err(e) = sink.publish(o).await {
                tracing::error!(error = %e, "hub could not publish");
                ok = false;
            }
        }
        sink.ack(&acks).await;
        pending.fetch_sub(acks.len(), Ordering::SeqCst);
        if ok && !delivered.is_empty() {
            let _ = confirmations.send(delivered);
        }
        for device in evict {
            tokio::spawn(evictor.clone().evict(device));
        }
        for (reader, owner) in presence_ended {
            sink.end_subscriptions(&reader, &owner).await;
        }
        // After the MQTT deliveries: a push never delays them, and never overtakes them.
        if let Some(pusher) = &pusher {
            pusher.push(pushes);
        }
    }
    // The worker has ended (stopped, or failed): publishers waiting for room give up
    // instead of waiting for permits that will never come back.
    sink.close();
}

/// Removes revoked devices' broker sessions by MQTT session takeover (spec 7.12): connect
/// with the device's client id, clean start and no session expiry, then disconnect. Any
/// broker closes the device's connection and discards its session and queue.
#[derive(Clone, Debug)]
pub(crate) struct Evictor {
    broker: BrokerTarget,
    credentials: HubCredentials,
}

impl Evictor {
    const ATTEMPTS: u32 = 5;

    pub(crate) async fn evict(self, device: DeviceIdentity) {
        for attempt in 1..=Self::ATTEMPTS {
            match tokio::time::timeout(Duration::from_secs(10), self.take_over(&device)).await {
                Ok(Ok(())) => {
                    tracing::info!(device = %device, "device's session removed");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(device = %device, attempt, error = %e, "could not remove a device's session");
                }
                Err(_) => {
                    tracing::warn!(device = %device, attempt, "removing a device's session timed out");
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        tracing::error!(device = %device, "gave up removing a device's session; it cannot log in again, and the broker drops the session when it expires");
    }

    async fn take_over(&self, device: &DeviceIdentity) -> Result<(), String> {
        let mut options = self.broker.options(&device.client_id());
        options
            .set_credentials(&self.credentials.username, &self.credentials.secret)
            .set_keep_alive(Duration::from_secs(10))
            .set_clean_start(true);
        let (client, mut eventloop) = AsyncClient::new(options, 4);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(rumqttc::v5::Incoming::ConnAck(ack))) => {
                    if ack.code != rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success {
                        return Err(format!("the broker refused the takeover: {:?}", ack.code));
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        client.disconnect().await.map_err(|e| e.to_string())?;
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mqchat_broker::Consumer;

    use super::*;

    fn tap(gateway: bool) -> (Arc<Tap>, TapEnd) {
        Tap::new(&TopicRoot::parse("mq").expect("valid root"), gateway, None)
    }

    #[test]
    fn the_tap_wants_what_the_mqtt_link_subscribes_to() {
        let (tap, _end) = tap(false);
        for topic in ["mq/up/alice/phone", "mq/pr/alice/phone", "mq/up//"] {
            assert!(tap.wants(topic), "{topic}");
        }
        for topic in [
            "mq/in/alice/d",
            "mq/up/alice",
            "mq/up/alice/phone/x",
            "mqx/up/alice/phone",
            "other/up/alice/phone",
            "mq/gw/sip/in",
            "mq/pf/alice",
        ] {
            assert!(!tap.wants(topic), "{topic}");
        }
        let (tap, _end) = self::tap(true);
        assert!(tap.wants("mq/gw/sip/in"));
        assert!(!tap.wants("mq/gw/sip/out"));
    }

    #[tokio::test]
    async fn the_tap_hands_publishes_over_in_order_and_refuses_once_the_hub_stopped() {
        let (tap, mut end) = tap(false);
        assert!(tap.take("mq/up/alice/phone", "one".into()).await);
        assert!(tap.take("mq/up/alice/phone", "two".into()).await);
        assert_eq!(end.pending.load(Ordering::SeqCst), 2);
        assert_eq!(end.window.available_permits(), TAP_WINDOW - 2);
        for expected in ["one", "two"] {
            match end.inbound_rx.recv().await {
                Some(Input::Publish(upstream, Ack::Tap)) => {
                    assert_eq!(upstream.topic, "mq/up/alice/phone");
                    assert_eq!(upstream.payload, expected.as_bytes());
                }
                _ => panic!("expected the publish {expected:?}"),
            }
        }
        // The publisher gives the permits back, then the worker ends: nothing more is
        // taken, and nobody waits for room that will never come.
        let sink = Sink::Embedded {
            broker: Arc::new(
                Broker::start(
                    mqchat_broker::BrokerConfig {
                        tcp: None,
                        ws: None,
                        ..mqchat_broker::BrokerConfig::default()
                    },
                    Arc::new(AllowNothing),
                    None,
                )
                .await
                .expect("broker"),
            ),
            window: end.window.clone(),
        };
        sink.ack(&[Ack::Tap, Ack::Tap]).await;
        assert_eq!(end.window.available_permits(), TAP_WINDOW);
        sink.close();
        assert!(!tap.take("mq/up/alice/phone", "three".into()).await);
        assert!(end.inbound_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_window_holds_the_publisher_back() {
        let (tap, end) = tap(false);
        let taken = end
            .window
            .acquire_many(u32::try_from(TAP_WINDOW).expect("fits"))
            .await
            .expect("open");
        let waiting = tokio::spawn({
            let tap = tap.clone();
            async move { tap.take("mq/up/alice/phone", "late".into()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits for room");
        drop(taken);
        assert!(waiting.await.expect("task"));
    }

    struct AllowNothing;

    #[async_trait]
    impl mqchat_broker::Gatekeeper for AllowNothing {
        async fn authenticate(&self, _: mqchat_broker::Connect<'_>) -> mqchat_broker::Admission {
            mqchat_broker::Admission::NotAuthorized
        }
        async fn may_publish(&self, _: &str, _: Option<&str>, _: &str, _: bool, _: &[u8]) -> bool {
            false
        }
        async fn may_subscribe(&self, _: &str, _: Option<&str>, _: &str) -> bool {
            false
        }
    }
}
