//! The broker's questions, answered by the hub's [`Gate`]: on the connection's task when the
//! access rules alone decide, on blocking threads when the store is needed (password hashing
//! and SQLite must not stall the broker's connection tasks).

use std::sync::Arc;

use async_trait::async_trait;
use mqchat_broker::{Admission as BrokerAdmission, Gatekeeper};
use mqchat_hub::{Admission, Gate};
use mqchat_proto::{Access, DeviceIdentity};

pub(crate) struct BrokerGate {
    gate: Arc<Gate>,
}

impl BrokerGate {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
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
    async fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> BrokerAdmission {
        let gate = self.gate.clone();
        let (client_id, username, password) = (
            client_id.to_owned(),
            username.map(str::to_owned),
            password.map(<[u8]>::to_vec),
        );
        let admission = tokio::task::spawn_blocking(move || {
            gate.authenticate(
                &client_id,
                username.as_deref(),
                password.as_deref(),
                crate::now_ms(),
            )
        })
        .await
        .unwrap_or(Admission::NotAuthorized);
        match admission {
            Admission::Device(_) => BrokerAdmission::Allow { superuser: false },
            Admission::Hub => BrokerAdmission::Allow { superuser: true },
            Admission::BadCredentials => BrokerAdmission::BadCredentials,
            Admission::NotAuthorized => BrokerAdmission::NotAuthorized,
        }
    }

    async fn may_publish(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        retain: bool,
    ) -> bool {
        self.decide(client_id, username, topic, Access::Publish { retain })
            .await
    }

    async fn may_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.decide(client_id, username, filter, Access::Subscribe)
            .await
    }
}
