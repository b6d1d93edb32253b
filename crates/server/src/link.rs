//! The hub's connection to the broker and the worker that runs the engine.
//!
//! Three parts, connected by channels:
//! - the **link task** polls rumqttc's event loop and forwards every PUBLISH it receives;
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
//! The inbound channel is unbounded on purpose: the broker's in-flight window for the hub's
//! session bounds it, and a bounded channel here would close a cycle of bounded channels
//! (event loop → worker → publisher → event loop) that could deadlock under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mqchat_hub::{Engine, HubCredentials, Outbound, Push, Qos, Upstream};
use mqchat_proto::DeviceIdentity;
use mqchat_store::{ConvId, Store};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{mpsc, oneshot};

use crate::push::Pusher;

/// The hub's broker username; no user id can start with `_`.
pub(crate) const HUB_USERNAME: &str = "_hub";

/// Most packets processed in one store transaction.
const MAX_BATCH: usize = 512;

/// A PUBLISH received on a connection: the number of the connection (counted from 1 by
/// CONNACKs) and the packet.
type Received = (u64, Publish);

/// What the worker is given: a PUBLISH, or a tick of the clock (twice a second: for the SIP
/// proxy's timers, spec 19, and to commit the delivery confirmations held while no packet
/// comes).
// Nearly every input is a PUBLISH: boxing it would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Publish(Received),
    Tick,
}

/// What the worker hands to the publisher.
struct Work {
    publishes: Vec<Outbound>,
    acks: Vec<Received>,
    delivered: Vec<(ConvId, u64)>,
    evict: Vec<DeviceIdentity>,
    pushes: Vec<Push>,
}

/// How the hub connects to its broker.
#[derive(Clone, Debug)]
pub(crate) struct LinkOptions {
    /// Broker host name or address.
    pub(crate) host: String,
    /// Broker port.
    pub(crate) port: u16,
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
    /// The options for the embedded broker's internal listener.
    pub(crate) fn embedded(addr: std::net::SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
            client_id: format!("{HUB_USERNAME}-1"),
            shared: true,
            session_expiry: None,
            wait_for_broker: false,
        }
    }

    fn filters(&self, root: &mqchat_proto::TopicRoot) -> Vec<String> {
        let share = if self.shared { "$share/mqchat/" } else { "" };
        vec![
            format!("{share}{root}/up/+/+"),
            format!("{share}{root}/pr/+/+"),
        ]
    }
}

#[derive(Debug)]
pub(crate) struct Link {
    client: AsyncClient,
    link_task: tokio::task::JoinHandle<()>,
    publisher: tokio::task::JoinHandle<()>,
    worker: std::thread::JoinHandle<()>,
    pending: Arc<AtomicUsize>,
}

impl Link {
    /// Connects to the broker, subscribes, starts the worker, and returns once the
    /// subscriptions are acknowledged.
    pub(crate) async fn start(
        link: &LinkOptions,
        credentials: &HubCredentials,
        engine: Engine,
        mut store: Store,
        pusher: Option<Arc<Pusher>>,
    ) -> Result<Self, String> {
        let root = engine.config().root.clone();
        let mut options = MqttOptions::new(&link.client_id, &link.host, link.port);
        options
            .set_credentials(&credentials.username, &credentials.secret)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(link.session_expiry.is_none())
            .set_session_expiry_interval(link.session_expiry)
            .set_manual_acks(true)
            .set_max_packet_size(Some(16 * 1024 * 1024))
            .set_request_channel_capacity(4096);
        let (client, eventloop) = AsyncClient::new(options, 4096);

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

        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel::<Input>();
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
        let mut filters = link.filters(&root);
        if engine.config().sip.is_some() {
            filters.push(root.gateway_in_filter(link.shared.then_some("mqchat")));
        }
        let (work_tx, work_rx) = mpsc::channel::<Work>(64);
        let (confirm_tx, confirm_rx) = mpsc::unbounded_channel::<Vec<(ConvId, u64)>>();
        let pending = Arc::new(AtomicUsize::new(0));
        let connection = Arc::new(AtomicU64::new(0));

        let (ready_tx, ready_rx) = oneshot::channel();
        let link_task = tokio::spawn(run_link(
            eventloop,
            LinkState {
                client: client.clone(),
                filters,
                wait_for_broker: link.wait_for_broker,
                inbound: inbound_tx,
                pending: pending.clone(),
                connection: connection.clone(),
            },
            ready_tx,
        ));
        // An external hub waits for its broker as long as it takes (its caller decides when
        // to give up); the embedded broker is up already, so 10 s is a fault.
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

        work_tx
            .send(Work {
                publishes: startup.publishes,
                acks: Vec::new(),
                delivered: startup.delivered,
                evict: Vec::new(),
                pushes: Vec::new(),
            })
            .await
            .map_err(|_| "publisher not running".to_owned())?;
        let evictor = Evictor {
            host: link.host.clone(),
            port: link.port,
            credentials: credentials.clone(),
        };
        let publisher = tokio::spawn(run_publisher(
            client.clone(),
            work_rx,
            confirm_tx,
            pending.clone(),
            evictor,
            connection,
            pusher,
        ));
        let worker = std::thread::Builder::new()
            .name("mqchat-hub".into())
            .spawn(move || run_worker(engine, store, inbound_rx, work_tx, confirm_rx))
            .map_err(|e| format!("cannot start the hub worker: {e}"))?;
        Ok(Self {
            client,
            link_task,
            publisher,
            worker,
            pending,
        })
    }

    /// Waits (up to 5 s) until everything received has been processed and published, then
    /// disconnects and stops the worker, which flushes the store.
    pub(crate) async fn stop(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.pending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.client.disconnect().await;
        // The link task ends when the event loop reports the disconnection; dropping it
        // closes the inbound channel, which ends the worker, which ends the publisher.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.link_task).await;
        let worker = self.worker;
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.publisher).await;
    }
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
                if state
                    .inbound
                    .send(Input::Publish((connection, publish)))
                    .is_err()
                {
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
    engine: Engine,
    mut store: Store,
    mut inbound: mpsc::UnboundedReceiver<Input>,
    work: mpsc::Sender<Work>,
    mut confirmations: mpsc::UnboundedReceiver<Vec<(ConvId, u64)>>,
) {
    // Deliveries the broker has taken, not yet cleared from the outbox: cleared in the next
    // batch's transaction, or on their own at a tick without packets. They only matter after
    // a crash (an event still in the outbox is delivered again at start).
    let mut done: Vec<(ConvId, u64)> = Vec::new();
    while let Some(first) = inbound.blocking_recv() {
        let mut batch = Vec::new();
        let mut tick = false;
        let mut next = Some(first);
        while let Some(input) = next.take() {
            match input {
                Input::Publish(publish) => batch.push(publish),
                Input::Tick => tick = true,
            }
            if batch.len() < MAX_BATCH {
                next = inbound.try_recv().ok();
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
                    })
                    .is_err()
            {
                break;
            }
        }
        while let Ok(confirmed) = confirmations.try_recv() {
            done.extend(confirmed);
        }
        if batch.is_empty() {
            if tick && !done.is_empty() {
                if let Err(e) = engine.confirm(&mut store, &done) {
                    tracing::error!(error = %e, "could not clear the outbox; events will be delivered again at restart");
                }
                done.clear();
            }
            continue;
        }
        let now = crate::now_ms();
        // Upstream packets and presence alike: the engine tells them apart by topic.
        let upstream: Vec<Upstream> = batch
            .iter()
            .map(|(_, publish)| Upstream {
                topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                payload: publish.payload.to_vec(),
            })
            .collect();
        let output = engine.process_and_confirm(&mut store, now, &upstream, &done);
        done.clear();
        let sent = work.blocking_send(Work {
            publishes: output.publishes,
            acks: batch,
            delivered: output.delivered,
            evict: output.evict,
            pushes: output.pushes,
        });
        if sent.is_err() {
            break;
        }
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
    client: AsyncClient,
    mut work: mpsc::Receiver<Work>,
    confirmations: mpsc::UnboundedSender<Vec<(ConvId, u64)>>,
    pending: Arc<AtomicUsize>,
    evictor: Evictor,
    connection: Arc<AtomicU64>,
    pusher: Option<Arc<Pusher>>,
) {
    while let Some(Work {
        publishes,
        acks,
        delivered,
        evict,
        pushes,
    }) = work.recv().await
    {
        let mut ok = true;
        for o in publishes {
            let qos = match o.qos {
                Qos::AtMostOnce => QoS::AtMostOnce,
                Qos::AtLeastOnce => QoS::AtLeastOnce,
            };
            if let Err(e) = client.publish(o.topic, qos, o.retain, o.payload).await {
                tracing::error!(error = %e, "hub could not publish");
                ok = false;
            }
        }
        // An input from an earlier connection is not acknowledged: its packet id means
        // nothing (or another message) now, and the broker delivers it again.
        let current = connection.load(Ordering::SeqCst);
        for (received_on, publish) in &acks {
            if *received_on == current {
                let _ = client.ack(publish).await;
            }
        }
        pending.fetch_sub(acks.len(), Ordering::SeqCst);
        if ok && !delivered.is_empty() {
            let _ = confirmations.send(delivered);
        }
        for device in evict {
            tokio::spawn(evictor.clone().evict(device));
        }
        // After the MQTT deliveries: a push never delays them, and never overtakes them.
        if let Some(pusher) = &pusher {
            pusher.push(pushes);
        }
    }
}

/// Removes revoked devices' broker sessions by MQTT session takeover (spec 7.12): connect
/// with the device's client id, clean start and no session expiry, then disconnect. Any
/// broker closes the device's connection and discards its session and queue.
#[derive(Clone, Debug)]
struct Evictor {
    host: String,
    port: u16,
    credentials: HubCredentials,
}

impl Evictor {
    const ATTEMPTS: u32 = 5;

    async fn evict(self, device: DeviceIdentity) {
        for attempt in 1..=Self::ATTEMPTS {
            match tokio::time::timeout(Duration::from_secs(10), self.take_over(&device)).await {
                Ok(Ok(())) => {
                    tracing::info!(device = %device, "revoked device's session removed");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(device = %device, attempt, error = %e, "could not remove a revoked device's session");
                }
                Err(_) => {
                    tracing::warn!(device = %device, attempt, "removing a revoked device's session timed out");
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        tracing::error!(device = %device, "gave up removing a revoked device's session; it cannot reconnect, and the broker drops the session when it expires");
    }

    async fn take_over(&self, device: &DeviceIdentity) -> Result<(), String> {
        let mut options = MqttOptions::new(device.client_id(), &self.host, self.port);
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
