//! The broker's questions, answered by the hub's [`Gate`]: on the connection's task when the
//! access rules alone decide, on blocking threads when the store is needed (SQLite must not
//! stall the broker's connection tasks), and logins through [`Logins`] (passwords on its
//! bounded pool).

use std::sync::Arc;

use async_trait::async_trait;
use mqchat_broker::{Admission as BrokerAdmission, Connect, Gatekeeper};
use mqchat_hub::{Admission, Door, Gate};
use mqchat_proto::{Access, DeviceIdentity, Topic};

use crate::login::Logins;

pub(crate) struct BrokerGate {
    gate: Arc<Gate>,
    logins: Arc<Logins>,
    /// The largest presence payload a device may publish (it is retained).
    max_presence: usize,
}

impl BrokerGate {
    pub(crate) fn new(logins: Arc<Logins>, max_presence: usize) -> Self {
        Self {
            gate: logins.gate().clone(),
            logins,
            max_presence,
        }
    }

    async fn decide(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        access: Access,
    ) -> bool {
        let Some(identity) = username.and_then(|u| DeviceIdentity::from_connect(u, client_id).ok())
        else {
            tracing::warn!(
                client_id,
                topic,
                "access denied: connection has no device identity"
            );
            return false;
        };
        // Only the contact rule needs the store: everything else is decided here, without
        // a trip to a blocking thread per PUBLISH.
        if let Some(allowed) = self.gate.authorize_at_once(&identity, access, topic) {
            return allowed;
        }
        let gate = self.gate.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || gate.authorize(&identity, access, &topic))
            .await
            .unwrap_or(false)
    }
}

#[async_trait]
impl Gatekeeper for BrokerGate {
    async fn authenticate(&self, connect: Connect<'_>) -> BrokerAdmission {
        let door = if connect.internal {
            Door::Internal
        } else {
            Door::Device
        };
        let admission = self
            .logins
            .decide(
                connect.client_id,
                connect.username,
                connect.password,
                connect.peer,
                door,
            )
            .await;
        broker_admission(&admission)
    }

    async fn may_publish(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        retain: bool,
        payload: &[u8],
    ) -> bool {
        // A presence goes from the device to its readers through the broker alone (the
        // hub only stamps it), so it is checked here: its size, and that it is a packet
        // (nesting within spec 5's limit). An empty payload clears a retained presence.
        if let Ok(Topic::Presence { .. }) = self.gate.root().parse_topic(topic)
            && !payload.is_empty()
        {
            if payload.len() > self.max_presence {
                tracing::warn!(
                    client_id,
                    topic,
                    size = payload.len(),
                    max = self.max_presence,
                    "presence refused: larger than max_presence_bytes"
                );
                return false;
            }
            if let Err(e) = mqchat_proto::Packet::decode(payload) {
                tracing::warn!(client_id, topic, error = %e, "presence refused: not a packet");
                return false;
            }
        }
        self.decide(client_id, username, topic, Access::Publish { retain })
            .await
    }

    async fn may_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.decide(client_id, username, filter, Access::Subscribe)
            .await
    }
}

/// The broker's CONNACK for the gate's answer.
pub(crate) fn broker_admission(admission: &Admission) -> BrokerAdmission {
    match admission {
        Admission::Device(_) => BrokerAdmission::Allow { superuser: false },
        Admission::Hub => BrokerAdmission::Allow { superuser: true },
        Admission::BadCredentials => BrokerAdmission::BadCredentials,
        // The hub logged which limit refused it; rmqtt has no better CONNACK code for it.
        Admission::NotAuthorized | Admission::Throttled | Admission::TooManyDevices => {
            BrokerAdmission::NotAuthorized
        }
    }
}
