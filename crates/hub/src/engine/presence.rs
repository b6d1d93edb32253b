//! Presence (spec section 10): what devices publish on their presence topics, recorded as
//! connection state, stamped with the hub's time when it is a will, cleared when invalid.

use mqchat_proto::body::{Availability, Body, Presence};
use mqchat_proto::{DeviceId, Now, Packet, PacketKind, Timestamp, Topic, UserId};
use mqchat_store::{Store, Tx};

use super::Engine;
use crate::{Outbound, Qos};

impl Engine {
    /// Handles a PUBLISH seen on a presence topic (spec section 10) in a transaction of its
    /// own; [`Engine::process`] does the same for presence PUBLISHes in its batches.
    pub fn presence(
        &self,
        store: &mut Store,
        topic: &str,
        payload: &[u8],
        now: Now,
    ) -> Option<Outbound> {
        let Ok(Topic::Presence { user, device }) = self.config.root.parse_topic(topic) else {
            return None;
        };
        let tx = match store.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "store failed on a presence");
                return None;
            }
        };
        let out = self.presence_in(&tx, topic, &user, &device, payload, now.wall);
        if let Err(e) = tx.commit() {
            tracing::error!(error = %e, "store failed on a presence");
        }
        out
    }

    /// A presence PUBLISH: records whether the device is connected; an `offline` without
    /// `last-active` (a will) is replaced by one stamped with the hub's time; a payload that
    /// is not a presence, or the presence of a revoked device, is cleared. Returns the
    /// publish to make, if any.
    pub(super) fn presence_in(
        &self,
        tx: &Tx<'_>,
        topic: &str,
        user: &UserId,
        device: &DeviceId,
        payload: &[u8],
        now: Timestamp,
    ) -> Option<Outbound> {
        if payload.is_empty() {
            return None;
        }
        let clear = Outbound {
            topic: topic.to_owned(),
            payload: Vec::new(),
            qos: Qos::AtLeastOnce,
            retain: true,
        };
        match tx.device_revoked(user, device) {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(user = %user, device = %device, "clearing the presence of a revoked device");
                return Some(clear);
            }
            Err(e) => {
                tracing::error!(user = %user, device = %device, error = %e, "store failed checking a presence");
            }
        }
        // Held to the limits of what the hub takes upstream: this copy stays retained.
        let decoded = Packet::decode_within(payload, mqchat_proto::encoding::MAX_NESTING)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                self.config
                    .registry
                    .validate(&p)
                    .map_err(|e| e.to_string())?;
                if p.kind == PacketKind::PRESENCE {
                    Presence::from_packet(&p).map_err(|e| e.to_string())
                } else {
                    Err("not a presence".into())
                }
            });
        if let Ok(presence) = &decoded {
            self.presence_state(tx, now, user, device, presence);
        }
        match decoded {
            Ok(presence)
                if presence.availability == Availability::Offline
                    && presence.last_active.is_none() =>
            {
                let mut stamped = Presence {
                    last_active: Some(now.unix_ms()),
                    ..presence
                }
                .to_packet();
                stamped.ts = Some(now.unix_ms());
                Some(Outbound {
                    payload: stamped.encode(),
                    ..clear
                })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(user = %user, device = %device, error = %e, "clearing an invalid presence");
                Some(clear)
            }
        }
    }
}
