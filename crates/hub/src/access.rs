//! Who may connect, publish and subscribe: the broker's hooks ask the [`Gate`], which
//! checks credentials against the store and applies [`mqchat_proto::authorize`], resolving
//! its contact rule against the store. Every refused publish or subscription is logged with
//! user, device, action and topic; failed logins are counted by the [`Throttle`], which
//! logs a burst once.
//!
//! A login is taken apart so that nothing slow happens under the store's lock:
//! [`Gate::begin_login`] reads the account (and decides token logins, throttled sources and
//! hub logins at once); a password is verified by the caller on a bounded pool
//! ([`PasswordCheck::hash`], `mqchat_store::verify_password`); [`Gate::finish_login`]
//! records the verdict. Each step takes a [`Now`]: the throttle runs on its monotonic part,
//! the store records logins at its wall part.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use mqchat_proto::{Access, Cadence, Decision, DeviceIdentity, Moment, Now, Principal, TopicRoot};
use mqchat_store::{AuthFailure, Credentials, LoginRecord, LoginWrite, Store, StoreError};

use crate::throttle::{Source, Throttle, ThrottleConfig, Wait};

/// The hub's own broker account: a username no user id can take (user ids start with a
/// letter or digit) and a secret.
#[derive(Clone)]
pub struct HubCredentials {
    /// Username, e.g. `_hub`.
    pub username: String,
    /// Password.
    pub secret: String,
}

impl std::fmt::Debug for HubCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The answer to a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A device, with its identity.
    Device(DeviceIdentity),
    /// The hub itself: a superuser.
    Hub,
    /// Wrong or unknown credentials (CONNACK "bad user name or password").
    BadCredentials,
    /// Credentials fine, but not allowed (disabled account, revoked device, client id not
    /// `{user}:{device}`, the hub's account on a device listener): CONNACK "not
    /// authorized".
    NotAuthorized,
    /// Too many failed logins from its address or on its user: not checked; try later
    /// (MQTT 5 CONNACK "server busy").
    Throttled,
    /// A new device id, but the user has as many devices as allowed (MQTT 5 CONNACK
    /// "quota exceeded").
    TooManyDevices,
}

/// Which door a CONNECT came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// A device listener of the embedded broker: devices only, never the hub's account.
    Device,
    /// The embedded broker's loopback listener for the server's own clients: the hub's
    /// account only.
    Internal,
    /// An external broker asking over HTTP: devices and the hub.
    Broker,
}

/// A CONNECT to decide.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The MQTT client id.
    pub client_id: &'a str,
    /// The MQTT user name.
    pub username: Option<&'a str>,
    /// The MQTT password (a password or a device token).
    pub password: Option<&'a [u8]>,
    /// The address it came from, when known.
    pub source: Option<IpAddr>,
    /// The listener.
    pub door: Door,
}

/// Limits on logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins per source and per user ([`Throttle`]).
    pub throttle: ThrottleConfig,
    /// Devices (not revoked) a user may have; a new device id beyond it is refused.
    pub max_devices: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            throttle: ThrottleConfig::default(),
            max_devices: 100,
        }
    }
}

/// The first step of a login ([`Gate::begin_login`]).
#[derive(Debug)]
pub enum Login {
    /// Decided at once.
    Done(Admission),
    /// A password to verify (slow, on the caller's bounded pool), then
    /// [`Gate::finish_login`].
    Verify(PasswordCheck),
}

/// A password login waiting for its verification.
#[derive(Debug)]
pub struct PasswordCheck {
    identity: DeviceIdentity,
    source: Source,
    record: LoginRecord,
    hash: Option<String>,
}

impl PasswordCheck {
    /// The stored hash to verify the password against (`None`: none, verify against the
    /// decoy so that the answer takes as long).
    pub fn hash(&self) -> Option<&str> {
        self.hash.as_deref()
    }

    /// Where the attempt came from (the pool shares its threads fairly among sources).
    pub fn source(&self) -> Source {
        self.source
    }
}

/// Authentication and authorization for the broker.
#[derive(Debug)]
pub struct Gate {
    store: Mutex<Store>,
    throttle: Mutex<Throttle>,
    root: TopicRoot,
    hub: HubCredentials,
    max_devices: usize,
    /// Logins the store could not record, logged once a minute at most.
    unrecorded: Mutex<Cadence>,
}

impl Gate {
    /// A gate over its own connection to the store.
    pub fn new(store: Store, root: TopicRoot, hub: HubCredentials, limits: LoginLimits) -> Self {
        Self {
            store: Mutex::new(store),
            throttle: Mutex::new(Throttle::new(limits.throttle)),
            root,
            hub,
            max_devices: limits.max_devices,
            unrecorded: Mutex::new(Cadence::new(Duration::from_secs(60))),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the connection inconsistent (SQLite
        // transactions roll back), so a poisoned lock is still usable.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // The throttle's tables stay consistent between statements.
        self.throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides a CONNECT on the calling thread, password hashing included: for tools and
    /// tests. A server uses [`Gate::begin_login`] and [`Gate::finish_login`] with its own
    /// bounded pool between them.
    pub fn authenticate(&self, attempt: &Attempt<'_>, now: Now) -> Admission {
        match self.begin_login(attempt, now) {
            Login::Done(admission) => admission,
            Login::Verify(check) => {
                let password = attempt
                    .password
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .unwrap_or_default();
                let verified = mqchat_store::verify_password(check.hash(), password);
                self.finish_login(check, verified, now)
            }
        }
    }

    /// The first step of a login: decides the hub's logins, malformed ones, throttled
    /// sources and device tokens at once (a read of the store, no hashing); a password
    /// comes back as [`Login::Verify`]. Blocking (SQLite): run it off the async threads.
    pub fn begin_login(&self, attempt: &Attempt<'_>, now: Now) -> Login {
        let client_id = attempt.client_id;
        let source = Source::of(attempt.source);
        let password = attempt.password.and_then(|p| std::str::from_utf8(p).ok());
        if attempt.username == Some(self.hub.username.as_str()) {
            return Login::Done(self.hub_login(attempt, password, source, now));
        }
        if attempt.door == Door::Internal {
            tracing::warn!(client_id, source = %source, "refused a device login on the internal listener");
            return Login::Done(Admission::NotAuthorized);
        }
        let Some(username) = attempt.username else {
            tracing::debug!(client_id, "refused connection without username");
            return Login::Done(Admission::BadCredentials);
        };
        let identity = match DeviceIdentity::from_connect(username, client_id) {
            Ok(identity) => identity,
            Err(e) => {
                tracing::debug!(client_id, username, error = %e, "refused connection: client id");
                return Login::Done(Admission::NotAuthorized);
            }
        };
        let Some(password) = password else {
            tracing::debug!(user = %identity.user, device = %identity.device, "refused connection without password");
            return Login::Done(Admission::BadCredentials);
        };
        let is_password = !password.starts_with(mqchat_store::account::TOKEN_PREFIX);
        if let Err(wait) = self
            .throttle()
            .admit(source, Some(&identity.user), is_password, now.at)
        {
            let (who, until) = match wait {
                Wait::Source(until) => ("address", until),
                Wait::User(until) => ("user", until),
            };
            let wait_ms = until.saturating_since(now.at).as_millis();
            tracing::debug!(user = %identity.user, source = %source, who, wait_ms, "login throttled");
            return Login::Done(Admission::Throttled);
        }
        let record = self.store().login_record(&identity.user, &identity.device);
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(user = %identity.user, error = %e, "store failed during authentication");
                return Login::Done(Admission::NotAuthorized);
            }
        };
        match record.check(password) {
            Credentials::Decided(ok) => {
                Login::Done(self.conclude(&identity, source, &record, (Ok(ok), false), now))
            }
            Credentials::Password(hash) => Login::Verify(PasswordCheck {
                identity,
                source,
                record,
                hash,
            }),
        }
    }

    /// The last step of a password login, with the verification's result.
    pub fn finish_login(
        &self,
        check: PasswordCheck,
        verified: Result<bool, String>,
        now: Now,
    ) -> Admission {
        self.conclude(
            &check.identity,
            check.source,
            &check.record,
            (verified, true),
            now,
        )
    }

    /// `password`: whether the secret was the password (not a device token).
    fn conclude(
        &self,
        identity: &DeviceIdentity,
        source: Source,
        record: &LoginRecord,
        (verified, password): (Result<bool, String>, bool),
        now: Now,
    ) -> Admission {
        let ok = match verified {
            Ok(ok) => ok,
            Err(e) => {
                tracing::error!(user = %identity.user, error = %e, "stored password hash is damaged");
                return Admission::NotAuthorized;
            }
        };
        let result = match record.admit(ok) {
            Ok(()) => self.store().record_login(
                &identity.user,
                &identity.device,
                self.max_devices,
                password,
                now.wall.unix_ms(),
            ),
            Err(failure) => Ok(Err(failure)),
        };
        match result {
            Ok(Ok(written)) => {
                if let LoginWrite::Failed(e) = written {
                    self.log_unrecorded(identity, &e, now.at);
                }
                self.throttle().succeeded(&identity.user);
                Admission::Device(identity.clone())
            }
            Ok(Err(AuthFailure::BadCredentials)) => {
                tracing::debug!(user = %identity.user, device = %identity.device, source = %source, "refused connection: bad credentials");
                let user = record.user_exists().then_some(&identity.user);
                self.throttle().failed(source, user, now.at);
                Admission::BadCredentials
            }
            Ok(Err(AuthFailure::TooManyDevices)) => {
                tracing::warn!(user = %identity.user, device = %identity.device, max = self.max_devices, "refused connection: a new device id, and the user has as many devices as allowed");
                Admission::TooManyDevices
            }
            Ok(Err(failure)) => {
                tracing::info!(user = %identity.user, device = %identity.device, reason = %failure, "refused connection");
                Admission::NotAuthorized
            }
            Err(e) => {
                tracing::error!(user = %identity.user, error = %e, "store failed during authentication");
                Admission::NotAuthorized
            }
        }
    }

    /// Logs a login the store could not record (a full disk, say), at most once a minute:
    /// the device is admitted on what the store could read.
    fn log_unrecorded(&self, identity: &DeviceIdentity, error: &StoreError, at: Moment) {
        let due = self
            .unrecorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .occurred(at);
        if let Some(logins) = due {
            tracing::error!(user = %identity.user, device = %identity.device, %error, logins, "cannot record a login in the store (is the disk full?); admitted on what the store could read (logged once a minute)");
        }
    }

    fn hub_login(
        &self,
        attempt: &Attempt<'_>,
        password: Option<&str>,
        source: Source,
        now: Now,
    ) -> Admission {
        let client_id = attempt.client_id;
        if attempt.door == Door::Device {
            tracing::warn!(client_id, source = %source, "refused the hub's account on a device listener");
            return Admission::NotAuthorized;
        }
        if self.throttle().admit(source, None, true, now.at).is_err() {
            return Admission::Throttled;
        }
        let ok =
            password.is_some_and(|p| constant_time_eq(p.as_bytes(), self.hub.secret.as_bytes()));
        // The hub connects as itself, and briefly as a revoked device's client id to
        // take over and discard that device's session (spec 7.12).
        let hub_client = client_id.starts_with(&self.hub.username)
            || DeviceIdentity::parse_client_id(client_id).is_ok();
        if ok && hub_client {
            return Admission::Hub;
        }
        tracing::warn!(client_id, source = %source, "refused hub login");
        self.throttle().failed(source, None, now.at);
        Admission::BadCredentials
    }

    /// The topic root.
    pub fn root(&self) -> &TopicRoot {
        &self.root
    }

    /// The hub's own broker username: a broker that authenticated a client under this name
    /// authenticated the hub (no user id can take it), which may do anything.
    pub fn hub_username(&self) -> &str {
        &self.hub.username
    }

    /// Decides a publish or subscribe by a device when the rules alone decide it (every
    /// topic but another user's presence), without blocking; `None` when the answer depends
    /// on the store (the contact rule): then ask [`Gate::authorize`] on a blocking thread.
    /// Refusals are logged like [`Gate::authorize`]'s.
    pub fn authorize_at_once(
        &self,
        identity: &DeviceIdentity,
        access: Access,
        topic: &str,
    ) -> Option<bool> {
        let principal = Principal::Device(identity.clone());
        match mqchat_proto::authorize(&self.root, &principal, access, topic) {
            Decision::Allow => Some(true),
            Decision::Deny(denial) => {
                log_denial(identity, access, topic, &denial.to_string());
                Some(false)
            }
            Decision::IfContact(_) => None,
        }
    }

    /// Decides a publish or subscribe by a device. Blocking (SQLite, for the contact rule);
    /// [`Gate::authorize_at_once`] answers the other cases without blocking.
    pub fn authorize(&self, identity: &DeviceIdentity, access: Access, topic: &str) -> bool {
        let principal = Principal::Device(identity.clone());
        let decision = mqchat_proto::authorize(&self.root, &principal, access, topic);
        let (allowed, reason) = match decision {
            Decision::Allow => (true, String::new()),
            Decision::Deny(denial) => (false, denial.to_string()),
            Decision::IfContact(owner) => {
                match self.store().may_see_presence(&identity.user, &owner) {
                    Ok(true) => (true, String::new()),
                    Ok(false) => (
                        false,
                        format!("{owner} has not accepted {} as a contact", identity.user),
                    ),
                    Err(e) => (false, format!("store failed: {e}")),
                }
            }
        };
        if !allowed {
            log_denial(identity, access, topic, &reason);
        }
        allowed
    }

    /// Opens the store for the gate's own connection (a separate connection from the hub's
    /// writer, so that logins do not wait for batches).
    pub fn open(
        path: &std::path::Path,
        root: TopicRoot,
        hub: HubCredentials,
        limits: LoginLimits,
    ) -> Result<Self, StoreError> {
        let store = Store::open(path, mqchat_store::Durability::Full)?;
        Ok(Self::new(store, root, hub, limits))
    }
}

fn log_denial(identity: &DeviceIdentity, access: Access, topic: &str, reason: &str) {
    let action = match access {
        Access::Publish { retain: true } => "publish (retain)",
        Access::Publish { retain: false } => "publish",
        Access::Subscribe => "subscribe",
    };
    tracing::warn!(user = %identity.user, device = %identity.device, action, topic, reason, "access denied");
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> (tempfile::TempDir, Gate) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(
            &dir.path().join("gate.db"),
            mqchat_store::Durability::Normal,
        )
        .expect("store");
        let hub = HubCredentials {
            username: "_hub".into(),
            secret: "s".into(),
        };
        (
            dir,
            Gate::new(store, TopicRoot::default(), hub, LoginLimits::default()),
        )
    }

    #[test]
    fn the_rules_decide_at_once_and_only_the_contact_rule_needs_the_store() {
        let (_dir, gate) = gate();
        let alice = DeviceIdentity::from_connect("alice", "alice:phone").expect("identity");
        let publish = Access::Publish { retain: false };
        assert_eq!(
            gate.authorize_at_once(&alice, publish, "mq/up/alice/phone"),
            Some(true)
        );
        assert_eq!(
            gate.authorize_at_once(&alice, publish, "mq/up/bob/phone"),
            Some(false),
            "another user's upstream"
        );
        assert_eq!(
            gate.authorize_at_once(&alice, Access::Subscribe, "mq/in/alice/d"),
            Some(true)
        );
        assert_eq!(
            gate.authorize_at_once(&alice, Access::Subscribe, "mq/in/bob/d"),
            Some(false)
        );
        // Someone else's presence depends on the contact state in the store.
        assert_eq!(
            gate.authorize_at_once(&alice, Access::Subscribe, "mq/pr/bob/+"),
            None
        );
        assert!(!gate.authorize(&alice, Access::Subscribe, "mq/pr/bob/+"));
        assert!(gate.authorize(&alice, Access::Subscribe, "mq/pr/alice/+"));
    }
}
