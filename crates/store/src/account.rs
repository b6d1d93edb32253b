//! Accounts and devices: creation, listing, disabling, deletion; password and device-token
//! checks for authentication.
//!
//! Passwords are stored as argon2id PHC strings. Device tokens are 32 random bytes shown once
//! as `mqt_` and 64 hex digits; only their SHA-256 is stored (a token has full entropy, so a
//! fast hash suffices and reconnect storms stay cheap).

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
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
    /// A new device id, but the user has as many devices as allowed.
    #[error("too many devices")]
    TooManyDevices,
}

/// Whether a successful login's write reached the store.
#[derive(Debug)]
pub enum LoginWrite {
    /// The device is registered and its last-seen time is current.
    Recorded,
    /// The write failed (a full disk, a read-only file system): the login stands on what
    /// the store could read, and the device's row waits for its next login.
    Failed(StoreError),
}

/// A live session that administration ended: the device's broker session must close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// The row's id (increasing).
    pub id: i64,
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Why: `disabled`, `deleted`, `password` or `revoked`.
    pub reason: String,
}

/// Records the end of the live sessions of `user`'s devices that match `which` (an SQL
/// condition on `devices`), in the caller's transaction.
fn end_sessions(
    tx: &rusqlite::Transaction<'_>,
    user: &UserId,
    reason: &str,
    which: &str,
    now: u64,
) -> Result<(), StoreError> {
    let now = to_i64(now);
    tx.execute(
        &format!(
            "INSERT INTO session_ends (user_id, device_id, reason, at)
             SELECT user_id, id, ?2, ?3 FROM devices WHERE user_id = ?1 AND {which}"
        ),
        params![user.as_str(), reason, now],
    )?;
    Ok(())
}

/// An account as a login sees it.
#[derive(Clone, Debug)]
struct Account {
    password_hash: Option<String>,
    disabled: bool,
}

/// What the store knows of the account and device named at CONNECT
/// ([`Store::login_record`]).
#[derive(Clone, Debug)]
pub struct LoginRecord {
    account: Option<Account>,
    token_hash: Option<Vec<u8>>,
    revoked: bool,
}

/// The first look at a secret ([`LoginRecord::check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Decided without hashing: whether the secret is right (a device token is checked
    /// with SHA-256, which costs nothing).
    Decided(bool),
    /// A password, to be checked with [`verify_password`] against this PHC string (`None`:
    /// no such user or no password; the check then runs against a fixed hash, so that the
    /// answer takes as long as for a real account).
    Password(Option<String>),
}

impl LoginRecord {
    /// Whether the user exists.
    pub fn user_exists(&self) -> bool {
        self.account.is_some()
    }

    /// Looks at the secret: a device token is checked at once; a password needs
    /// [`verify_password`], which is slow on purpose.
    pub fn check(&self, secret: &str) -> Credentials {
        if secret.starts_with(TOKEN_PREFIX) {
            let ok = !self.revoked
                && self
                    .token_hash
                    .as_deref()
                    .is_some_and(|stored| constant_time_eq(stored, &token_hash(secret)));
            return Credentials::Decided(ok);
        }
        Credentials::Password(
            self.account
                .as_ref()
                .and_then(|account| account.password_hash.clone()),
        )
    }

    /// The verdict on a login whose secret was found right (`true`) or wrong: disabled
    /// accounts and revoked devices are refused only to holders of the right secret, so
    /// that the refusal reveals nothing to others.
    pub fn admit(&self, secret_ok: bool) -> Result<(), AuthFailure> {
        match &self.account {
            Some(account) if secret_ok => {
                if account.disabled {
                    Err(AuthFailure::Disabled)
                } else if self.revoked {
                    Err(AuthFailure::Revoked)
                } else {
                    Ok(())
                }
            }
            _ => Err(AuthFailure::BadCredentials),
        }
    }
}

/// A fixed argon2id hash that no password matches, verified when the account has no
/// password hash so that every password check costs the same.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        // Hashing a fixed string with a fixed salt cannot fail; the fallback keeps the
        // function total (an empty hash then parses as nothing, read as "no match").
        Argon2::default()
            .hash_password_with_salt(b"mqchat decoy", b"mqchat decoy salt")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Computes the decoy hash now (it is computed once, at the first password check of an
/// unknown user otherwise): a server calls it at start, so that its memory peak is there
/// and not in the middle of a flood of failed logins.
pub fn prepare_decoy() {
    decoy_hash();
}

/// Verifies a password against a stored PHC string (`None`: against a decoy, always
/// false). Slow on purpose (argon2id with 19 MiB of memory): a server runs it on a bounded
/// pool of threads, each with its own [`PasswordMemory`]. `Err`: the stored hash is not a
/// PHC string of argon2 (a damaged store).
pub fn verify_password(hash: Option<&str>, password: &str) -> Result<bool, String> {
    PasswordMemory::default().verify(hash, password)
}

/// The working memory of password checks, kept by a thread that checks many: argon2 needs
/// its whole memory cost (19 MiB by default) for every check, and allocating it anew each
/// time leaves every thread's allocator holding several such blocks.
#[derive(Default)]
pub struct PasswordMemory {
    blocks: Vec<argon2::Block>,
}

impl std::fmt::Debug for PasswordMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordMemory")
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl PasswordMemory {
    /// [`verify_password`] in this memory.
    pub fn verify(&mut self, hash: Option<&str>, password: &str) -> Result<bool, String> {
        let (hash, real) = match hash {
            Some(hash) => (hash, true),
            None => (decoy_hash(), false),
        };
        match self.check(hash, password) {
            Ok(ok) => Ok(ok && real),
            Err(e) if real => Err(e),
            Err(_) => Ok(false),
        }
    }

    fn check(&mut self, hash: &str, password: &str) -> Result<bool, String> {
        let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
        let algorithm =
            argon2::Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| e.to_string())?;
        let version = match parsed.version {
            Some(v) => argon2::Version::try_from(v).map_err(|e| e.to_string())?,
            None => argon2::Version::default(),
        };
        let params = argon2::Params::try_from(&parsed).map_err(|e| e.to_string())?;
        let salt = parsed.salt.ok_or("no salt")?;
        let expected = parsed.hash.ok_or("no hash")?;
        let blocks = params.block_count();
        if self.blocks.len() < blocks {
            self.blocks.resize(blocks, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        argon2::Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt.as_ref(),
                &mut out,
                &mut self.blocks[..blocks],
            )
            .map_err(|e| e.to_string())?;
        Ok(constant_time_eq(&out, expected.as_bytes()))
    }
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
    /// The devices that logged in with the old password have their live sessions ended.
    pub fn set_password(
        &mut self,
        user: &UserId,
        password: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        let hash = password.map(hash_password).transpose()?;
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![user.as_str(), hash],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        end_sessions(
            &tx,
            user,
            "password",
            "password_login = 1 AND revoked_at IS NULL",
            now,
        )?;
        tx.commit()?;
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
    /// Disabling ends the user's live sessions (see [`Store::session_ends_after`]).
    pub fn set_disabled(
        &mut self,
        user: &UserId,
        disabled: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE users SET disabled = ?2 WHERE id = ?1",
            params![user.as_str(), disabled],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        if disabled {
            end_sessions(&tx, user, "disabled", "revoked_at IS NULL", now)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes an account and its devices. Its conversations stay, for the other side.
    /// Deleting ends the user's live sessions (see [`Store::session_ends_after`]).
    pub fn delete_user(&mut self, user: &UserId, now: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        end_sessions(&tx, user, "deleted", "revoked_at IS NULL", now)?;
        let n = tx.execute("DELETE FROM users WHERE id = ?1", [user.as_str()])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        tx.commit()?;
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
        let tx = self.conn.transaction()?;
        revoke(&tx, user, device, now)?;
        tx.execute(
            "INSERT INTO session_ends (user_id, device_id, reason, at) VALUES (?1, ?2, 'revoked', ?3)",
            params![user.as_str(), device.as_str(), to_i64(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The live sessions administration ended after the row `after` (0: all kept), oldest
    /// first, at most `limit`. A running server closes them (issue 15).
    pub fn session_ends_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<SessionEnd>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, user_id, device_id, reason FROM session_ends WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (id, user, device, reason) = row?;
            let user = UserId::parse(&user).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let device =
                DeviceId::parse(&device).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(SessionEnd {
                id,
                user,
                device,
                reason,
            })
        })
        .collect()
    }

    /// The newest ended-session row (0 if none): where a server that starts begins to
    /// watch (sessions ended before it started died with the previous process).
    pub fn last_session_end(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM session_ends", [], |r| {
                r.get(0)
            })?)
    }

    /// Forgets ended-session rows older than `before` (ms).
    pub fn prune_session_ends(&mut self, before: u64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM session_ends WHERE at < ?1", [to_i64(before)])?)
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
    /// registered (if new, and if the user has fewer than `max_devices` devices that are not
    /// revoked) and its last-seen time updated.
    ///
    /// This verifies a password on the calling thread. A server takes the steps apart
    /// instead ([`Store::login_record`], [`LoginRecord::check`], [`verify_password`] on a
    /// bounded pool, [`Store::record_login`]), so that no lock is held while hashing.
    pub fn authenticate(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        secret: &str,
        max_devices: usize,
        now: u64,
    ) -> Result<Result<(), AuthFailure>, StoreError> {
        let record = self.login_record(user, device)?;
        let verdict = match record.check(secret) {
            Credentials::Decided(verdict) => verdict,
            Credentials::Password(hash) => verify_password(hash.as_deref(), secret)
                .map_err(|e| StoreError::Corrupt(format!("password hash of {user}: {e}")))?,
        };
        match record.admit(verdict) {
            Ok(()) => {
                let password = !secret.starts_with(TOKEN_PREFIX);
                Ok(self
                    .record_login(user, device, max_devices, password, now)?
                    .map(|_| ()))
            }
            Err(failure) => Ok(Err(failure)),
        }
    }

    /// What a login needs to know of an account and device: one quick read, no hashing.
    pub fn login_record(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<LoginRecord, StoreError> {
        let account: Option<(Option<String>, bool)> = self
            .conn
            .prepare_cached("SELECT password_hash, disabled FROM users WHERE id = ?1")?
            .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let device_row: Option<(Option<Vec<u8>>, Option<i64>)> = match account {
            None => None,
            Some(_) => self
                .conn
                .prepare_cached(
                    "SELECT token_hash, revoked_at FROM devices WHERE user_id = ?1 AND id = ?2",
                )?
                .query_row(params![user.as_str(), device.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?,
        };
        Ok(LoginRecord {
            account: account.map(|(password_hash, disabled)| Account {
                password_hash,
                disabled,
            }),
            token_hash: device_row.as_ref().and_then(|(hash, _)| hash.clone()),
            revoked: matches!(device_row, Some((_, Some(_)))),
        })
    }

    /// Registers the device of a successful login (if new) and updates its last-seen time.
    /// A new device id is refused with [`AuthFailure::TooManyDevices`] when the user already
    /// has `max_devices` devices that are not revoked. The decision needs only reads: when the
    /// write then fails (a full disk), the login stands and the answer says so
    /// ([`LoginWrite::Failed`]).
    pub fn record_login(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        max_devices: usize,
        password: bool,
        now: u64,
    ) -> Result<Result<LoginWrite, AuthFailure>, StoreError> {
        let known: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND id = ?2)")?
            .query_row([user.as_str(), device.as_str()], |r| r.get(0))?;
        if !known {
            let active: i64 = self
                .conn
                .prepare_cached(
                    "SELECT count(*) FROM devices WHERE user_id = ?1 AND revoked_at IS NULL",
                )?
                .query_row([user.as_str()], |r| r.get(0))?;
            if usize::try_from(active).unwrap_or(usize::MAX) >= max_devices {
                return Ok(Err(AuthFailure::TooManyDevices));
            }
        }
        let sql = if known {
            "UPDATE devices SET last_seen = ?3, password_login = ?4 WHERE user_id = ?1 AND id = ?2"
        } else {
            "INSERT INTO devices (user_id, id, created_at, last_seen, password_login)
             VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (user_id, id) DO UPDATE SET last_seen = ?3, password_login = ?4"
        };
        let written = self.conn.prepare_cached(sql).and_then(|mut statement| {
            statement.execute(params![
                user.as_str(),
                device.as_str(),
                to_i64(now),
                password
            ])
        });
        Ok(Ok(match written {
            Ok(_) => LoginWrite::Recorded,
            Err(e) => LoginWrite::Failed(e.into()),
        }))
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

    /// A store that cannot write (here a read-only connection; a full disk answers the same
    /// way) still decides logins on what it reads: known and new devices within the cap are
    /// admitted with the write reported as failed, and the cap still refuses.
    #[test]
    fn a_login_the_store_cannot_record_still_stands() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("alice"), Some("pw"), 1).expect("add");
        let recorded = store
            .record_login(&user("alice"), &device("phone"), 2, true, 5)
            .expect("store");
        assert!(matches!(recorded, Ok(LoginWrite::Recorded)), "{recorded:?}");
        store
            .conn
            .pragma_update(None, "query_only", true)
            .expect("read only");
        for new in ["phone", "laptop"] {
            let answer = store
                .record_login(&user("alice"), &device(new), 2, true, 6)
                .expect("decided on reads");
            assert!(
                matches!(answer, Ok(LoginWrite::Failed(_))),
                "{new}: {answer:?}"
            );
        }
        // The laptop was not recorded: the phone is the only device, so a third id passes the
        // cap of 2 too, while a cap of 1 refuses it.
        assert!(matches!(
            store.record_login(&user("alice"), &device("tablet"), 2, true, 7),
            Ok(Ok(LoginWrite::Failed(_)))
        ));
        assert!(matches!(
            store.record_login(&user("alice"), &device("tablet"), 1, true, 7),
            Ok(Err(AuthFailure::TooManyDevices))
        ));
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
            s.authenticate(&user(u), &device("phone"), p, 10, 5)
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
        store
            .set_disabled(&user("alice"), true, 9)
            .expect("disable");
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
            s.authenticate(&user("bob"), &device(d), t, 10, 3)
                .expect("db")
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
            .authenticate(&user("carol"), &device("old"), "pw", 10, 3)
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
        store.delete_user(&user("dave"), 9).expect("delete");
        assert!(store.users().expect("list").is_empty());
        assert!(store.devices(&user("dave")).expect("list").is_empty());
        assert!(matches!(
            store.delete_user(&user("dave"), 9),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn new_device_ids_stop_at_the_cap_and_known_or_revoked_ones_do_not_count() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("erin"), Some("pw"), 1).expect("add");
        let login = |s: &mut Store, d: &str| {
            s.authenticate(&user("erin"), &device(d), "pw", 2, 3)
                .expect("db")
        };
        assert_eq!(login(&mut store, "a"), Ok(()));
        assert_eq!(login(&mut store, "b"), Ok(()));
        assert_eq!(login(&mut store, "c"), Err(AuthFailure::TooManyDevices));
        assert_eq!(
            login(&mut store, "a"),
            Ok(()),
            "a known device still logs in"
        );
        store
            .revoke_device(&user("erin"), &device("b"), 4)
            .expect("revoke");
        assert_eq!(
            login(&mut store, "c"),
            Ok(()),
            "a revoked device frees its place"
        );
        assert_eq!(store.devices(&user("erin")).expect("list").len(), 3);
    }

    #[test]
    fn a_password_check_without_a_hash_runs_against_the_decoy_and_fails() {
        assert_eq!(verify_password(None, ""), Ok(false));
        assert_eq!(verify_password(None, "mqchat decoy"), Ok(false));
        let hash = hash_password("right").expect("hash");
        assert_eq!(verify_password(Some(&hash), "right"), Ok(true));
        assert_eq!(verify_password(Some(&hash), "wrong"), Ok(false));
        assert!(verify_password(Some("not a phc string"), "x").is_err());
        // One memory for many checks, of different costs.
        let mut memory = PasswordMemory::default();
        let cheap = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 1, 1, None).expect("params"),
        )
        .hash_password(b"small")
        .expect("hash")
        .to_string();
        for _ in 0..2 {
            assert_eq!(memory.verify(Some(&cheap), "small"), Ok(true));
            assert_eq!(memory.verify(Some(&hash), "right"), Ok(true));
            assert_eq!(memory.verify(Some(&cheap), "wrong"), Ok(false));
            assert_eq!(memory.verify(None, "right"), Ok(false));
        }
    }

    #[test]
    fn administration_ends_the_sessions_it_affects() {
        let (_dir, mut store) = test_store();
        store.add_user(&user("fay"), Some("pw"), 1).expect("add");
        let token = store
            .add_device(&user("fay"), &device("tablet"), 1)
            .expect("token");
        let login = |s: &mut Store, d: &str, secret: &str| {
            s.authenticate(&user("fay"), &device(d), secret, 10, 2)
                .expect("db")
        };
        assert_eq!(login(&mut store, "phone", "pw"), Ok(()));
        assert_eq!(login(&mut store, "tablet", &token), Ok(()));
        let start = store.last_session_end().expect("last");
        let ended = |s: &Store, after| -> Vec<(String, String)> {
            s.session_ends_after(after, 100)
                .expect("ends")
                .into_iter()
                .map(|e| (e.device.to_string(), e.reason))
                .collect()
        };
        store
            .set_password(&user("fay"), Some("new"), 3)
            .expect("passwd");
        assert_eq!(
            ended(&store, start),
            [("phone".to_owned(), "password".to_owned())],
            "the token device keeps its session"
        );
        let after_passwd = store.last_session_end().expect("last");
        store
            .revoke_device(&user("fay"), &device("tablet"), 4)
            .expect("revoke");
        store.set_disabled(&user("fay"), true, 5).expect("disable");
        assert_eq!(
            ended(&store, after_passwd),
            [
                ("tablet".to_owned(), "revoked".to_owned()),
                ("phone".to_owned(), "disabled".to_owned())
            ]
        );
        assert_eq!(store.prune_session_ends(5).expect("prune"), 2);
        assert_eq!(ended(&store, 0).len(), 1);
    }
}
