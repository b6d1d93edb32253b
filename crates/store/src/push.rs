//! Per-device client state (connected, active) and push targets (spec 7.13).

use mqchat_proto::body::PushTarget;
use mqchat_proto::{DeviceId, UserId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{StoreError, Tx};

/// A device the hub may push to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushDevice {
    /// The device.
    pub device: DeviceId,
    /// Connected (its last presence was not offline).
    pub connected: bool,
    /// Active (its app in the foreground, by its last client-state).
    pub active: bool,
    /// Where to push.
    pub target: PushTarget,
    /// Notifications may show message text.
    pub preview: bool,
}

fn target(row: &Row<'_>, at: usize) -> rusqlite::Result<PushTarget> {
    let provider: i64 = row.get(at)?;
    let address: String = row.get(at + 1)?;
    Ok(match provider {
        0 => PushTarget::Fcm { token: address },
        1 => PushTarget::Apns {
            token: address,
            topic: row.get(at + 2)?,
            sandbox: row.get(at + 3)?,
        },
        2 => PushTarget::WebPush {
            endpoint: address,
            p256dh: row.get::<_, Option<String>>(at + 4)?.unwrap_or_default(),
            auth: row.get::<_, Option<String>>(at + 5)?.unwrap_or_default(),
        },
        _ => PushTarget::UnifiedPush { endpoint: address },
    })
}

/// Removes a device's push target; false if it had none.
pub(crate) fn remove_target(
    conn: &Connection,
    user: &UserId,
    device: &DeviceId,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM push_targets WHERE user_id = ?1 AND device = ?2")?
        .execute(params![user.as_str(), device.as_str()])?;
    Ok(n > 0)
}

impl Tx<'_> {
    /// Registers a device of an existing user that the hub sees for the first time (behind
    /// an external broker with static credentials, devices are not registered at login).
    /// A revoked device stays revoked.
    fn ensure_device(&self, user: &UserId, device: &DeviceId, now: u64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO devices (user_id, id, created_at)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
                 ON CONFLICT (user_id, id) DO NOTHING",
            )?
            .execute(params![
                user.as_str(),
                device.as_str(),
                i64::try_from(now).unwrap_or(i64::MAX)
            ])?;
        Ok(())
    }

    /// Records a device's connection (from its presence) and, when it connects, makes it
    /// active again.
    pub fn set_connected(
        &self,
        user: &UserId,
        device: &DeviceId,
        connected: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        if connected {
            self.ensure_device(user, device, now)?;
        }
        self.conn()
            .prepare_cached(
                "UPDATE devices SET connected = ?3, active = CASE WHEN ?3 AND NOT connected THEN 1 ELSE active END
                 WHERE user_id = ?1 AND id = ?2",
            )?
            .execute(params![user.as_str(), device.as_str(), connected])?;
        Ok(())
    }

    /// Whether a device is registered and not revoked.
    pub fn device_active(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        crate::account::device_active(self.conn(), user, device)
    }

    /// Whether a device is registered and revoked; one never registered (behind a broker
    /// with static credentials the hub's gate never sees it) is not.
    pub fn device_revoked(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        crate::account::device_revoked(self.conn(), user, device)
    }

    /// Records a device's client state.
    pub fn set_active(
        &self,
        user: &UserId,
        device: &DeviceId,
        active: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        self.ensure_device(user, device, now)?;
        self.conn()
            .prepare_cached("UPDATE devices SET active = ?3 WHERE user_id = ?1 AND id = ?2")?
            .execute(params![user.as_str(), device.as_str(), active])?;
        Ok(())
    }

    /// Sets (or replaces) a device's push target.
    pub fn set_push_target(
        &self,
        user: &UserId,
        device: &DeviceId,
        target: &PushTarget,
        preview: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        self.ensure_device(user, device, now)?;
        let (address, topic, sandbox, p256dh, auth) = match target {
            PushTarget::Fcm { token } => (token, None, false, None, None),
            PushTarget::Apns {
                token,
                topic,
                sandbox,
            } => (token, topic.as_deref(), *sandbox, None, None),
            PushTarget::WebPush {
                endpoint,
                p256dh,
                auth,
            } => (
                endpoint,
                None,
                false,
                Some(p256dh.as_str()),
                Some(auth.as_str()),
            ),
            PushTarget::UnifiedPush { endpoint } => (endpoint, None, false, None, None),
        };
        self.conn()
            .prepare_cached(
                "INSERT INTO push_targets
                     (user_id, device, provider, address, topic, sandbox, p256dh, auth, preview, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (user_id, device) DO UPDATE SET provider = ?3, address = ?4, topic = ?5,
                     sandbox = ?6, p256dh = ?7, auth = ?8, preview = ?9, created_at = ?10",
            )?
            .execute(params![
                user.as_str(),
                device.as_str(),
                target.provider() as i64,
                address,
                topic,
                sandbox,
                p256dh,
                auth,
                preview,
                i64::try_from(now).unwrap_or(i64::MAX),
            ])?;
        Ok(())
    }

    /// Removes a device's push target; false if it had none.
    pub fn remove_push_target(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        remove_target(self.conn(), user, device)
    }

    /// The devices to push to for a new event in `conv` by `author` at time `at`: those of
    /// the other participants that have a push target and are not both connected and
    /// active, where the participant has not muted the conversation past `at`.
    pub fn push_candidates(
        &self,
        conv: crate::ConvId,
        author: &crate::Author,
        at: u64,
    ) -> Result<Vec<(UserId, PushDevice)>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT p.user_id, d.id, d.connected, d.active, t.provider, t.address, t.topic,
                    t.sandbox, t.p256dh, t.auth, t.preview
             FROM participants p
             JOIN push_targets t ON t.user_id = p.user_id
             JOIN devices d ON d.user_id = t.user_id AND d.id = t.device
             WHERE p.conv = ?1 AND p.user_id != ?2 AND p.muted_until <= ?3
               AND d.revoked_at IS NULL AND NOT (d.connected AND d.active)
             ORDER BY p.user_id, d.id",
        )?;
        let rows = stmt.query_map(
            params![conv, author.as_str(), i64::try_from(at).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    target(r, 4)?,
                    r.get(10)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (user, device, connected, active, target, preview) = row?;
            let corrupt = |e: mqchat_proto::IdentityError| StoreError::Corrupt(e.to_string());
            Ok((
                UserId::parse(&user).map_err(corrupt)?,
                PushDevice {
                    device: DeviceId::parse(&device).map_err(corrupt)?,
                    connected,
                    active,
                    target,
                    preview,
                },
            ))
        })
        .collect()
    }

    /// The user's devices that have a push target (revoked devices have none).
    pub fn push_devices(&self, user: &UserId) -> Result<Vec<PushDevice>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT d.id, d.connected, d.active, t.provider, t.address, t.topic, t.sandbox, t.p256dh,
                    t.auth, t.preview
             FROM push_targets t JOIN devices d ON d.user_id = t.user_id AND d.id = t.device
             WHERE t.user_id = ?1 AND d.revoked_at IS NULL ORDER BY d.id",
        )?;
        let rows = stmt.query_map([user.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                target(r, 3)?,
                r.get(9)?,
            ))
        })?;
        rows.map(|row| {
            let (device, connected, active, target, preview) = row?;
            Ok(PushDevice {
                device: DeviceId::parse(&device).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                connected,
                active,
                target,
                preview,
            })
        })
        .collect()
    }
}

impl crate::Store {
    /// Removes a push target the provider reported invalid, if it is still the same one
    /// (the device may have registered a new one meanwhile).
    pub fn drop_push_target(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        address: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM push_targets WHERE user_id = ?1 AND device = ?2 AND address = ?3",
            )?
            .execute(params![user.as_str(), device.as_str(), address])?;
        Ok(n > 0)
    }

    /// A device's push target, if it has one.
    pub fn push_target(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Option<(PushTarget, bool)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT provider, address, topic, sandbox, p256dh, auth, preview FROM push_targets
                 WHERE user_id = ?1 AND device = ?2",
            )?
            .query_row(params![user.as_str(), device.as_str()], |r| {
                Ok((target(r, 0)?, r.get(6)?))
            })
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid")
    }

    fn device(s: &str) -> DeviceId {
        DeviceId::parse(s).expect("valid")
    }

    #[test]
    fn targets_state_and_revocation() {
        let (_dir, mut store) = test_store();
        let alice = user("alice");
        store.add_user(&alice, Some("pw"), 1).expect("user");
        for d in ["phone", "laptop"] {
            store.add_device(&alice, &device(d), 1).expect("device");
        }
        let fcm = PushTarget::Fcm {
            token: "tok-1".into(),
        };
        let tx = store.transaction().expect("tx");
        tx.set_push_target(&alice, &device("phone"), &fcm, false, 5)
            .expect("set");
        tx.set_connected(&alice, &device("phone"), true, 5)
            .expect("state");
        tx.set_active(&alice, &device("phone"), false, 5)
            .expect("state");
        let devices = tx.push_devices(&alice).expect("list");
        assert_eq!(
            devices,
            vec![PushDevice {
                device: device("phone"),
                connected: true,
                active: false,
                target: fcm.clone(),
                preview: false,
            }]
        );
        // Disconnecting keeps the state; connecting again makes the device active.
        tx.set_connected(&alice, &device("phone"), false, 5)
            .expect("state");
        assert!(!tx.push_devices(&alice).expect("list")[0].active);
        tx.set_connected(&alice, &device("phone"), true, 5)
            .expect("state");
        assert!(tx.push_devices(&alice).expect("list")[0].active);
        // Replacing the target.
        let web = PushTarget::UnifiedPush {
            endpoint: "https://up.example/x".into(),
        };
        tx.set_push_target(&alice, &device("phone"), &web, true, 6)
            .expect("replace");
        tx.commit().expect("commit");
        assert_eq!(
            store.push_target(&alice, &device("phone")).expect("get"),
            Some((web.clone(), true))
        );
        // An invalid report for an older address changes nothing.
        assert!(
            !store
                .drop_push_target(&alice, &device("phone"), "tok-1")
                .expect("drop")
        );
        assert!(
            store
                .drop_push_target(&alice, &device("phone"), "https://up.example/x")
                .expect("drop")
        );
        assert_eq!(
            store.push_target(&alice, &device("phone")).expect("get"),
            None
        );
        // Revoking removes the target.
        let tx = store.transaction().expect("tx");
        tx.set_push_target(&alice, &device("laptop"), &fcm, false, 7)
            .expect("set");
        tx.commit().expect("commit");
        store
            .revoke_device(&alice, &device("laptop"), 8)
            .expect("revoke");
        assert_eq!(
            store.push_target(&alice, &device("laptop")).expect("get"),
            None
        );
    }
}
