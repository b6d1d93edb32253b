//! Accounts and devices: creation, listing, disabling, deletion; password and device-token
//! checks for authentication.
//!
//! Passwords are stored as argon2id PHC strings. Device tokens are 32 random bytes shown once
//! as `mqt_` and 64 hex digits; only their SHA-256 is stored (a token has full entropy, so a
//! fast hash suffices and reconnect storms stay cheap).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use mqchat_proto::{DeviceId, UserId};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// The prefix that marks a password field as a device token.
pub const TOKEN_PREFIX: &str = "mqt_";

/// A user as listed by administration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The id.
    pub id: UserId,
    /// Whether the account is disabled (cannot connect).
    pub disabled: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// When it was created (ms since the Unix epoch).
    pub created_at: u64,
}

/// A device as listed by administration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device id.
    pub id: DeviceId,
    /// Whether it has a token.
    pub has_token: bool,
    /// When it was registered.
    pub created_at: u64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
    /// When it last connected.
    pub last_seen: Option<u64>,
}

/// Why a connection attempt was refused. Logged by the caller; the device only learns
/// "bad user name or password" or "not authorized".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No such user, wrong password, or wrong token.
    #[error("bad credentials")]
    BadCredentials,
    /// The account is disabled.
    #[error("account disabled")]
    Disabled,
    /// The device was revoked.
    #[error("device revoked")]
    Revoked,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn hash_password(password: &str) -> Result<String, StoreError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Store {
    /// Creates a user, with a password or none (then only device tokens can connect).
    pub fn add_user(
        &mut self,
        user: &UserId,
        password: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        let hash = password.map(hash_password).transpose()?;
        let inserted = self.conn.execute(
            "INSERT INTO users (id, password_hash, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
            params![user.as_str(), hash, to_i64(now)],
        )?;
        if inserted == 0 {
            return Err(StoreError::Exists(format!("user {user}")));
        }
        Ok(())
    }

    /// Sets (or, with `None`, removes) a user's password.
    pub fn set_password(
        &mut self,
        user: &UserId,
        password: Option<&str>,
    ) -> Result<(), StoreError> {
        let hash = password.map(hash_password).transpose()?;
        let n = self.conn.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![user.as_str(), hash],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        Ok(())
    }

    /// Every user, by id.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, disabled, password_hash IS NOT NULL, created_at FROM users ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (id, disabled, has_password, created_at) = row?;
            let id = UserId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(UserRecord {
                id,
                disabled,
                has_password,
                created_at: to_u64(created_at),
            })
        })
        .collect()
    }

    /// Whether the user exists (and is not disabled, when `active_only`).
    pub fn user_exists(&self, user: &UserId, active_only: bool) -> Result<bool, StoreError> {
        let disabled: Option<bool> = self
            .conn
            .prepare_cached("SELECT disabled FROM users WHERE id = ?1")?
            .query_row([user.as_str()], |r| r.get(0))
            .optional()?;
        Ok(matches!(disabled, Some(d) if !(d && active_only)))
    }

    /// Disables or re-enables an account.
    pub fn set_disabled(&mut self, user: &UserId, disabled: bool) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE users SET disabled = ?2 WHERE id = ?1",
            params![user.as_str(), disabled],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        Ok(())
    }

    /// Deletes an account and its devices. Its conversations stay, for the other side.
    pub fn delete_user(&mut self, user: &UserId) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM users WHERE id = ?1", [user.as_str()])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        Ok(())
    }

    /// Registers a device with a new token and returns the token (shown once). A device that
    /// exists gets a new token, replacing the old one, and is un-revoked.
    pub fn add_device(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        now: u64,
    ) -> Result<String, StoreError> {
        if !self.user_exists(user, false)? {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        let bytes: [u8; 32] = rand::random();
        let token: String = std::iter::once(TOKEN_PREFIX.to_owned())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .collect();
        self.conn.execute(
            "INSERT INTO devices (user_id, id, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, id) DO UPDATE SET token_hash = ?3, revoked_at = NULL",
            params![
                user.as_str(),
                device.as_str(),
                token_hash(&token),
                to_i64(now)
            ],
        )?;
        Ok(token)
    }

    /// A user's devices, by id, revoked ones included.
    pub fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        list_devices(&self.conn, user)
    }

    /// Revokes a device: its token stops working and it may not connect at all. Revoking a
    /// revoked device again changes nothing.
    pub fn revoke_device(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        now: u64,
    ) -> Result<(), StoreError> {
        let known = list_devices(&self.conn, user)?
            .iter()
            .any(|d| &d.id == device);
        if !known {
            return Err(StoreError::NotFound(format!("device {user}:{device}")));
        }
        revoke(&self.conn, user, device, now)?;
        Ok(())
    }

    /// Whether a device is registered and revoked. A device never registered is not: behind
    /// a broker with static credentials (Mosquitto's password file) devices connect without
    /// the hub's gate, so the hub never registers them.
    pub fn device_revoked(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        device_revoked(&self.conn, user, device)
    }

    /// Whether a device is registered and not revoked (its account may be disabled).
    pub fn device_active(&self, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
        device_active(&self.conn, user, device)
    }

    /// Checks the credentials a device presents at CONNECT: a device token (starting with
    /// `mqt_`) for exactly this device, or the user's password. On success the device is
    /// registered (if new) and its last-seen time updated.
    pub fn authenticate(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        secret: &str,
        now: u64,
    ) -> Result<Result<(), AuthFailure>, StoreError> {
        let account: Option<(Option<String>, bool)> = self
            .conn
            .prepare_cached("SELECT password_hash, disabled FROM users WHERE id = ?1")?
            .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((password_hash, disabled)) = account else {
            // Spend the same time as a real check so user ids cannot be probed by timing.
            let _ = hash_password(secret);
            return Ok(Err(AuthFailure::BadCredentials));
        };
        let device_row: Option<(Option<Vec<u8>>, Option<i64>)> = self
            .conn
            .prepare_cached(
                "SELECT token_hash, revoked_at FROM devices WHERE user_id = ?1 AND id = ?2",
            )?
            .query_row(params![user.as_str(), device.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let credentials_ok = if secret.starts_with(TOKEN_PREFIX) {
            matches!(&device_row, Some((Some(stored), None)) if constant_time_eq(stored, &token_hash(secret)))
        } else {
            match password_hash.as_deref().map(PasswordHash::new) {
                Some(Ok(parsed)) => Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok(),
                Some(Err(e)) => {
                    return Err(StoreError::Corrupt(format!("password hash of {user}: {e}")));
                }
                None => false,
            }
        };
        if !credentials_ok {
            return Ok(Err(AuthFailure::BadCredentials));
        }
        if disabled {
            return Ok(Err(AuthFailure::Disabled));
        }
        if matches!(device_row, Some((_, Some(_)))) {
            return Ok(Err(AuthFailure::Revoked));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO devices (user_id, id, created_at, last_seen) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (user_id, id) DO UPDATE SET last_seen = ?3",
            )?
            .execute(params![user.as_str(), device.as_str(), to_i64(now)])?;
        Ok(Ok(()))
    }

    /// Whether `reader` may see `owner`'s presence: themselves, or accepted contacts.
    pub fn may_see_presence(&self, reader: &UserId, owner: &UserId) -> Result<bool, StoreError> {
        if reader == owner {
            return Ok(true);
        }
        let contact: Option<i64> = self
            .conn
            .prepare_cached("SELECT contact FROM participants WHERE user_id = ?1 AND peer = ?2")?
            .query_row(params![owner.as_str(), reader.as_str()], |r| r.get(0))
            .optional()?;
        Ok(contact == Some(crate::archive::CONTACT_ACCEPTED))
    }
}

/// A user's devices, by id, revoked ones included.
pub(crate) fn list_devices(
    conn: &rusqlite::Connection,
    user: &UserId,
) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, token_hash IS NOT NULL, created_at, revoked_at, last_seen FROM devices
         WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([user.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    rows.map(|row| {
        let (id, has_token, created_at, revoked_at, last_seen) = row?;
        let id = DeviceId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(DeviceRecord {
            id,
            has_token,
            created_at: to_u64(created_at),
            revoked_at: revoked_at.map(to_u64),
            last_seen: last_seen.map(to_u64),
        })
    })
    .collect()
}

/// Whether a device is registered and not revoked.
pub(crate) fn device_active(
    conn: &rusqlite::Connection,
    user: &UserId,
    device: &DeviceId,
) -> Result<bool, StoreError> {
    let revoked: Option<Option<i64>> = conn
        .prepare_cached("SELECT revoked_at FROM devices WHERE user_id = ?1 AND id = ?2")?
        .query_row(params![user.as_str(), device.as_str()], |r| r.get(0))
        .optional()?;
    Ok(matches!(revoked, Some(None)))
}

/// Whether a device is registered and revoked (one never registered is not).
pub(crate) fn device_revoked(
    conn: &rusqlite::Connection,
    user: &UserId,
    device: &DeviceId,
) -> Result<bool, StoreError> {
    let revoked: Option<Option<i64>> = conn
        .prepare_cached("SELECT revoked_at FROM devices WHERE user_id = ?1 AND id = ?2")?
        .query_row(params![user.as_str(), device.as_str()], |r| r.get(0))
        .optional()?;
    Ok(matches!(revoked, Some(Some(_))))
}

/// Marks a device revoked and forgets its token. False if it does not exist or was revoked
/// already.
pub(crate) fn revoke(
    conn: &rusqlite::Connection,
    user: &UserId,
    device: &DeviceId,
    now: u64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE devices SET revoked_at = ?3, token_hash = NULL, connected = 0
         WHERE user_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        params![user.as_str(), device.as_str(), to_i64(now)],
    )?;
    crate::push::remove_target(conn, user, device)?;
    Ok(n > 0)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn password_login() {
        let (_dir, mut store) = test_store();
        store
            .add_user(&user("alice"), Some("secret"), 1)
            .expect("add");
        assert!(matches!(
            store.add_user(&user("alice"), None, 1),
            Err(StoreError::Exists(_))
        ));
        let check = |s: &mut Store, u: &str, p: &str| {
            s.authenticate(&user(u), &device("phone"), p, 5)
                .expect("db")
        };
        assert_eq!(check(&mut store, "alice", "secret"), Ok(()));
        assert_eq!(
            check(&mut store, "alice", "wrong"),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(
            check(&mut store, "nobody", "secret"),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(
            store.devices(&user("alice")).expect("list")[0].last_seen,
            Some(5)
        );
        store.set_disabled(&user("alice"), true).expect("disable");
        assert_eq!(
            check(&mut store, "alice", "secret"),
            Err(AuthFailure::Disabled)
        );
        assert_eq!(
            check(&mut store, "alice", "wrong"),
            Err(AuthFailure::BadCredentials)
        );
    }

    #[test]
    fn device_tokens() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("bob"), None, 1).expect("add");
        let token = store
            .add_device(&user("bob"), &device("laptop"), 2)
            .expect("token");
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 68);
        let auth = |s: &mut Store, d: &str, t: &str| {
            s.authenticate(&user("bob"), &device(d), t, 3).expect("db")
        };
        assert_eq!(auth(&mut store, "laptop", &token), Ok(()));
        assert_eq!(
            auth(&mut store, "phone", &token),
            Err(AuthFailure::BadCredentials),
            "token is per device"
        );
        assert_eq!(
            auth(&mut store, "laptop", "no-password-set"),
            Err(AuthFailure::BadCredentials)
        );
        store
            .revoke_device(&user("bob"), &device("laptop"), 4)
            .expect("revoke");
        assert_eq!(
            auth(&mut store, "laptop", &token),
            Err(AuthFailure::BadCredentials)
        );
        let listed = store.devices(&user("bob")).expect("list");
        assert_eq!(listed[0].revoked_at, Some(4));
        assert!(!listed[0].has_token);
    }

    #[test]
    fn revoked_device_cannot_use_the_password() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("carol"), Some("pw"), 1).expect("add");
        store
            .add_device(&user("carol"), &device("old"), 1)
            .expect("token");
        store
            .revoke_device(&user("carol"), &device("old"), 2)
            .expect("revoke");
        let got = store
            .authenticate(&user("carol"), &device("old"), "pw", 3)
            .expect("db");
        assert_eq!(got, Err(AuthFailure::Revoked));
    }

    #[test]
    fn delete_user_removes_devices() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("dave"), Some("pw"), 1).expect("add");
        store
            .add_device(&user("dave"), &device("a"), 1)
            .expect("token");
        store.delete_user(&user("dave")).expect("delete");
        assert!(store.users().expect("list").is_empty());
        assert!(store.devices(&user("dave")).expect("list").is_empty());
        assert!(matches!(
            store.delete_user(&user("dave")),
            Err(StoreError::NotFound(_))
        ));
    }
}
