//! The hub's connection to the broker and the worker that runs the engine.
//!
//! Three parts, connected by channels:
//! - the **link task** polls rumqttc's event loop and forwards every PUBLISH it receives;
//! - the **worker thread** owns the store's writer; it takes what has arrived (up to
//!   [`MAX_BATCH`]), runs it through the engine in one transaction, and hands the result on;
//! - the **publisher task** sends the hub's publishes, then acknowledges the inputs (manual
//!   acks: an input is acknowledged only after its effects are committed and published),
//!   then reports the delivered events back to the worker, which removes them from the
//!   outbox.
//!
//! The inbound channel is unbounded on purpose: the broker's in-flight window for the hub's
//! session bounds it, and a bounded channel here would close a cycle of bounded channels
//! (event loop → worker → publisher → event loop) that could deadlock under load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mqchat_hub::{Engine, HubCredentials, Outbound, Qos, Upstream};
use mqchat_proto::DeviceIdentity;
use mqchat_store::{ConvId, Store};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{mpsc, oneshot};

/// The hub's broker username; no user id can start with `_`.
pub(crate) const HUB_USERNAME: &str = "_hub";

/// Most packets processed in one store transaction.
const MAX_BATCH: usize = 512;

/// What the worker hands to the publisher.
struct Work {
    publishes: Vec<Outbound>,
    acks: Vec<Publish>,
    delivered: Vec<(ConvId, u64)>,
    evict: Vec<DeviceIdentity>,
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
        broker: SocketAddr,
        credentials: &HubCredentials,
        engine: Engine,
        mut store: Store,
    ) -> Result<Self, String> {
        let root = engine.config().root.clone();
        let mut options = MqttOptions::new(
            format!("{HUB_USERNAME}-1"),
            broker.ip().to_string(),
            broker.port(),
        );
        options
            .set_credentials(&credentials.username, &credentials.secret)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
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

        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel::<Publish>();
        let (work_tx, work_rx) = mpsc::channel::<Work>(64);
        let (confirm_tx, confirm_rx) = mpsc::unbounded_channel::<Vec<(ConvId, u64)>>();
        let pending = Arc::new(AtomicUsize::new(0));

        let (ready_tx, ready_rx) = oneshot::channel();
        let link_task = tokio::spawn(run_link(eventloop, inbound_tx, ready_tx, pending.clone()));
        for filter in [
            format!("$share/mqchat/{root}/up/+/+"),
            format!("$share/mqchat/{root}/pr/+/+"),
        ] {
            client
                .subscribe(filter, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
        }
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
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
            })
            .await
            .map_err(|_| "publisher not running".to_owned())?;
        let evictor = Evictor {
            broker,
            credentials: credentials.clone(),
        };
        let publisher = tokio::spawn(run_publisher(
            client.clone(),
            work_rx,
            confirm_tx,
            pending.clone(),
            evictor,
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

/// How many subscriptions the hub makes (upstream and presence).
const SUBSCRIPTIONS: usize = 2;

async fn run_link(
    mut eventloop: EventLoop,
    inbound: mpsc::UnboundedSender<Publish>,
    ready: oneshot::Sender<Result<(), String>>,
    pending: Arc<AtomicUsize>,
) {
    let mut ready = Some(ready);
    let mut subacks = 0;
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(rumqttc::v5::Incoming::Publish(publish))) => {
                failures = 0;
                pending.fetch_add(1, Ordering::SeqCst);
                if inbound.send(publish).is_err() {
                    return;
                }
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
                if subacks == SUBSCRIPTIONS
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(if refused {
                        Err("subscription refused".into())
                    } else {
                        Ok(())
                    });
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => failures = 0,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                failures += 1;
                tracing::error!(error = %e, "hub link to the broker failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(50)))).await;
            }
        }
    }
}

fn run_worker(
    engine: Engine,
    mut store: Store,
    mut inbound: mpsc::UnboundedReceiver<Publish>,
    work: mpsc::Sender<Work>,
    mut confirmations: mpsc::UnboundedReceiver<Vec<(ConvId, u64)>>,
) {
    while let Some(first) = inbound.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbound.try_recv() {
                Ok(publish) => batch.push(publish),
                Err(_) => break,
            }
        }
        let now = crate::now_ms();
        // Upstream packets and presence alike: the engine tells them apart by topic.
        let upstream: Vec<Upstream> = batch
            .iter()
            .map(|publish| Upstream {
                topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                payload: publish.payload.to_vec(),
            })
            .collect();
        let output = engine.process(&mut store, now, &upstream);
        let sent = work.blocking_send(Work {
            publishes: output.publishes,
            acks: batch,
            delivered: output.delivered,
            evict: output.evict,
        });
        if sent.is_err() {
            break;
        }
        let mut done = Vec::new();
        while let Ok(confirmed) = confirmations.try_recv() {
            done.extend(confirmed);
        }
        if let Err(e) = engine.confirm(&mut store, &done) {
            tracing::error!(error = %e, "could not clear the outbox; events will be delivered again at restart");
        }
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
) {
    while let Some(Work {
        publishes,
        acks,
        delivered,
        evict,
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
        for publish in &acks {
            let _ = client.ack(publish).await;
        }
        pending.fetch_sub(acks.len(), Ordering::SeqCst);
        if ok && !delivered.is_empty() {
            let _ = confirmations.send(delivered);
        }
        for device in evict {
            tokio::spawn(evictor.clone().evict(device));
        }
    }
}

/// Removes revoked devices' broker sessions by MQTT session takeover (spec 7.12): connect
/// with the device's client id, clean start and no session expiry, then disconnect. Any
/// broker closes the device's connection and discards its session and queue.
#[derive(Clone, Debug)]
struct Evictor {
    broker: SocketAddr,
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
        let mut options = MqttOptions::new(
            device.client_id(),
            self.broker.ip().to_string(),
            self.broker.port(),
        );
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
