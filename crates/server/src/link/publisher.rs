//! The publisher task: it sends the hub's publishes, then acknowledges the inputs they
//! came from, then reports the delivered events back to the worker, then evicts revoked
//! devices and queues the pushes. [`Sink`] is where it sends: an MQTT client, or the
//! embedded broker by function call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use mqchat_broker::Broker;
use mqchat_hub::{ConversationKey, Outbound, Qos};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::{Semaphore, mpsc};

use super::{Ack, Evictor, Work};
use crate::push::Pusher;

/// Where the publisher sends the hub's publishes and acknowledgements.
#[derive(Clone)]
pub(super) enum Sink {
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
    pub(super) async fn end_subscriptions(&self, client_prefix: &str, filter_prefix: &str) {
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

    pub(super) async fn publish(&self, o: Outbound) -> Result<(), String> {
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
            Self::Embedded { broker, .. } => broker
                .publish(&o.topic, o.payload.into(), o.qos, o.retain)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Nothing more will be acknowledged.
    pub(super) fn close(&self) {
        if let Self::Embedded { window, .. } = self {
            window.close();
        }
    }

    pub(super) async fn ack(&self, acks: &[Ack]) {
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

/// `pending` counts PUBLISHes received and not yet fully handled: it goes down only here,
/// once their effects are published and they are acknowledged, so shutdown can wait for it.
pub(super) async fn run_publisher(
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
