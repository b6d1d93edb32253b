//! Device management by the user (spec 7.12): listing one's devices and revoking one.

use mqchat_proto::body::{Ack, Body, DeviceEntry, DeviceListResult, DeviceRevoke, MAX_DEVICES};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{DeviceIdentity, ErrorCode, Packet, Topic};
use mqchat_store::Tx;

use crate::engine::{Engine, Failure, Turn, body, refuse};
use crate::{Outbound, Qos};

impl Engine {
    /// The sender's devices that may connect.
    pub(crate) fn device_list(&self, tx: &Tx<'_>, inbound: &Inbound) -> Result<Packet, Failure> {
        let devices = tx
            .active_devices(&inbound.sender.user)?
            .into_iter()
            .take(MAX_DEVICES)
            .map(|d| DeviceEntry {
                device: d.id,
                created: d.created_at,
                last_login: d.last_seen,
                token: d.has_token,
            })
            .collect();
        Ok(DeviceListResult { devices }.to_packet())
    }

    /// Revokes one of the sender's devices: marks it revoked (the broker refuses it from
    /// now on), asks for its session to be removed, and clears its retained presence.
    pub(crate) fn device_revoke(
        &self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<Packet, Failure> {
        let request = body::<DeviceRevoke>(inbound)?;
        let user = &inbound.sender.user;
        let out = &mut *turn.out;
        if !turn
            .tx
            .revoke_device(user, &request.device, turn.now.wall.unix_ms())?
        {
            return Err(refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("{user} has no device {} that may connect", request.device),
            ));
        }
        tracing::info!(
            user = %user,
            device = %request.device,
            by = %inbound.sender.device,
            "device revoked"
        );
        out.publishes.push(Outbound {
            topic: self.config().root.topic(&Topic::Presence {
                user: user.clone(),
                device: request.device.clone(),
            }),
            payload: Vec::new(),
            qos: Qos::AtLeastOnce,
            retain: true,
        });
        out.evict.push(DeviceIdentity {
            user: user.clone(),
            device: request.device,
        });
        Ok(Ack::default().to_packet())
    }
}
