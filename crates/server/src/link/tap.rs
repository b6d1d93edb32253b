//! The in-process link (`mqchat serve`): the embedded broker hands the hub its topics'
//! publishes through a [`Tap`], on the publishers' connection tasks, with no MQTT
//! connection, encoding, socket or PUBACK between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use mqchat_hub::Upstream;
use mqchat_proto::TopicRoot;
use tokio::sync::{Semaphore, mpsc};

use super::{Ack, Input};

/// Inputs handed over in-process and not yet handled, at most: beyond it the broker's
/// connection tasks wait (their devices' PUBACKs with them).
const TAP_WINDOW: usize = 4096;

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
    /// The pacer's clock.
    clock: crate::clock::Clock,
}

/// The hub's end of a [`Tap`], for [`Link::start`](super::Link::start).
pub(crate) struct TapEnd {
    pub(super) inbound_tx: mpsc::UnboundedSender<Input>,
    pub(super) inbound_rx: mpsc::UnboundedReceiver<Input>,
    pub(super) window: Arc<Semaphore>,
    pub(super) pending: Arc<AtomicUsize>,
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
            clock: crate::clock::Clock::start(),
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
                .hold(topic, self.clock.at());
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

#[cfg(test)]
mod tests {
    use mqchat_broker::{Broker, Consumer};

    use super::*;
    use crate::link::publisher::Sink;

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
