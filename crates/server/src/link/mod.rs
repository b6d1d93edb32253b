//! The hub's connection to the broker and the worker that runs the engine.
//!
//! Two kinds of link: over MQTT (`mqchat hub` against any broker, [`mqtt`]), and in-process
//! (the embedded broker of `mqchat serve`, which hands the hub its topics' publishes through
//! a [`Tap`] and takes the hub's publishes by function call: no MQTT connection, encoding,
//! socket or PUBACK between them). Three parts, connected by channels:
//! - the **link task** (MQTT) polls rumqttc's event loop and forwards every PUBLISH it
//!   receives; in-process, the broker's connection tasks call the [`Tap`] instead;
//! - the **worker thread** ([`worker`]) owns the store's writer; it takes what has arrived
//!   (up to [`batch::MAX_BATCH`], waiting as the [`batch::Batcher`] decides), runs it
//!   through the engine in one transaction, and hands the result on;
//! - the **publisher task** ([`publisher`]) sends the hub's publishes, then acknowledges the
//!   inputs (manual acks: an input is acknowledged only after its effects are committed and
//!   their publishes were tried; a publish that failed leaves its events in the outbox,
//!   published again at the next start), then reports the delivered events back to the
//!   worker, which removes them
//!   from the outbox in its next batch's transaction (or in one of their own at a clock
//!   tick without packets), then has the [`Evictor`] remove revoked devices' sessions.
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

mod batch;
mod evictor;
mod mqtt;
mod publisher;
mod tap;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mqchat_broker::Broker;
use mqchat_hub::{ConversationKey, Engine, HubCredentials, Outbound, Push, Upstream};
use mqchat_proto::DeviceIdentity;
use mqchat_store::Store;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::mpsc;

pub(crate) use evictor::Evictor;
pub(crate) use mqtt::LinkOptions;
use publisher::{Sink, run_publisher};
pub(crate) use tap::{Tap, TapEnd};
use worker::run_worker;

use crate::push::Pusher;
use crate::tls::BrokerTarget;

/// The hub's broker username; no user id can start with `_`.
pub(crate) const HUB_USERNAME: &str = "_hub";

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

/// The hub attached to its broker: the link task (over MQTT), the worker thread and the
/// publisher task, stopped together by [`Link::stop`].
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
            Attach::Mqtt(link) => mqtt::connect(&link, credentials, &engine).await?,
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
        let evictor = Evictor::new(takeover, credentials.clone());
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
