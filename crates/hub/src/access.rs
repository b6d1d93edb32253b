//! Who may connect, publish and subscribe: the broker's hooks ask the [`Gate`], which
//! checks credentials against the store and applies [`mqchat_proto::authorize`], resolving
//! its contact rule against the store. Every refusal is logged with user, device, action and
//! topic.

use std::sync::Mutex;

use mqchat_proto::{Access, Decision, DeviceIdentity, Principal, TopicRoot};
use mqchat_store::{AuthFailure, Store, StoreError};

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
    /// `{user}:{device}`): CONNACK "not authorized".
    NotAuthorized,
}

/// Authentication and authorization for the broker.
#[derive(Debug)]
pub struct Gate {
    store: Mutex<Store>,
    root: TopicRoot,
    hub: HubCredentials,
}

impl Gate {
    /// A gate over its own connection to the store.
    pub fn new(store: Store, root: TopicRoot, hub: HubCredentials) -> Self {
        Self {
            store: Mutex::new(store),
            root,
            hub,
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the connection inconsistent (SQLite
        // transactions roll back), so a poisoned lock is still usable.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides a CONNECT. Blocking (password hashing and SQLite): run it off the async
    /// threads.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        now: u64,
    ) -> Admission {
        let password = password.and_then(|p| std::str::from_utf8(p).ok());
        if username == Some(self.hub.username.as_str()) {
            let ok = password
                .is_some_and(|p| constant_time_eq(p.as_bytes(), self.hub.secret.as_bytes()));
            // The hub connects as itself, and briefly as a revoked device's client id to
            // take over and discard that device's session (spec 7.12).
            let hub_client = client_id.starts_with(&self.hub.username)
                || DeviceIdentity::parse_client_id(client_id).is_ok();
            if ok && hub_client {
                return Admission::Hub;
            }
            tracing::warn!(client_id, "refused hub login");
            return Admission::BadCredentials;
        }
        let Some(username) = username else {
            tracing::info!(client_id, "refused connection without username");
            return Admission::BadCredentials;
        };
        let identity = match DeviceIdentity::from_connect(username, client_id) {
            Ok(identity) => identity,
            Err(e) => {
                tracing::info!(client_id, username, error = %e, "refused connection: client id");
                return Admission::NotAuthorized;
            }
        };
        let Some(password) = password else {
            tracing::info!(user = %identity.user, device = %identity.device, "refused connection without password");
            return Admission::BadCredentials;
        };
        let result = self
            .store()
            .authenticate(&identity.user, &identity.device, password, now);
        match result {
            Ok(Ok(())) => Admission::Device(identity),
            Ok(Err(failure)) => {
                tracing::info!(user = %identity.user, device = %identity.device, reason = %failure, "refused connection");
                match failure {
                    AuthFailure::BadCredentials => Admission::BadCredentials,
                    _ => Admission::NotAuthorized,
                }
            }
            Err(e) => {
                tracing::error!(user = %identity.user, error = %e, "store failed during authentication");
                Admission::NotAuthorized
            }
        }
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
    ) -> Result<Self, StoreError> {
        let store = Store::open(path, mqchat_store::Durability::Full)?;
        Ok(Self::new(store, root, hub))
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
        (dir, Gate::new(store, TopicRoot::default(), hub))
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
