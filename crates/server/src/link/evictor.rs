//! Revoked devices' broker sessions, removed by MQTT session takeover (spec 7.12): the
//! publisher evicts the devices a packet revoked, and `session_ends` those that
//! administration ended.

use std::time::Duration;

use mqchat_hub::HubCredentials;
use mqchat_proto::DeviceIdentity;
use rumqttc::v5::{AsyncClient, Event};

use crate::tls::BrokerTarget;

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

    /// An evictor that takes sessions over at `broker` with the hub's `credentials`.
    pub(super) fn new(broker: BrokerTarget, credentials: HubCredentials) -> Self {
        Self {
            broker,
            credentials,
        }
    }

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
