//! The link over MQTT (`mqchat hub` against any broker): the connection, the
//! subscriptions, and the link task that polls rumqttc's event loop and forwards every
//! PUBLISH it receives to the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mqchat_hub::{Engine, HubCredentials, Upstream};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::{mpsc, oneshot};

use super::publisher::Sink;
use super::{Ack, Attached, Input};
use crate::tls::BrokerTarget;

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

/// Connects to the broker over MQTT, starts the link task, and returns once the hub's
/// subscriptions are acknowledged.
pub(super) async fn connect(
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
    // Whether any start-up SUBACK refused a filter (each filter has its own SUBSCRIBE).
    let mut any_refused = false;
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
                any_refused |= refused;
                if subacks == state.filters.len()
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(if any_refused {
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
