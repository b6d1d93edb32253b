//! The subscriptions a device wants (spec sections 4 and 12) and those the broker's session
//! holds for it, and the changes that take one to the other.
//!
//! Always: the durable inbox and the device's reply topic. While active: the ephemeral inbox
//! and the presence of watched users. Watched profiles stay subscribed while inactive: they
//! change rarely and the broker keeps only the last one.

use std::collections::{BTreeMap, BTreeSet};

use mqchat_proto::{DeviceIdentity, InboxBranch, Topic, TopicRoot, UserId};

use super::Qos;

/// Subscriptions to add and remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Filters to subscribe to, with their QoS.
    pub subscribe: Vec<(String, Qos)>,
    /// Filters to unsubscribe from.
    pub unsubscribe: Vec<String>,
}

/// What the device wants to hear, and what the broker holds.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    root: TopicRoot,
    durable: String,
    replies: String,
    ephemeral: String,
    active: bool,
    presence: BTreeSet<UserId>,
    profiles: BTreeSet<UserId>,
    /// The filters the broker's session holds, as far as the device knows.
    held: BTreeMap<String, Qos>,
}

impl Subscriptions {
    /// The subscriptions of an active device that watches nobody.
    pub fn new(root: &TopicRoot, me: &DeviceIdentity) -> Self {
        let inbox = |branch| {
            root.topic(&Topic::Inbox {
                user: me.user.clone(),
                branch,
            })
        };
        Self {
            root: root.clone(),
            durable: inbox(InboxBranch::Durable),
            replies: inbox(InboxBranch::Device(me.device.clone())),
            ephemeral: inbox(InboxBranch::Ephemeral),
            active: true,
            presence: BTreeSet::new(),
            profiles: BTreeSet::new(),
            held: BTreeMap::new(),
        }
    }

    fn presence_filter(&self, user: &UserId) -> String {
        format!("{}/pr/{user}/+", self.root)
    }

    fn profile_filter(&self, user: &UserId) -> String {
        self.root.topic(&Topic::Profile { user: user.clone() })
    }

    /// The retained filters: presence and profiles, whose current value the broker sends on
    /// subscribing. Presence at QoS 0 (spec section 4): the broker must not queue stale
    /// changes for a device that is away, since the current value comes with every
    /// subscription.
    fn retained(&self) -> BTreeMap<String, Qos> {
        let mut out = BTreeMap::new();
        if self.active {
            for user in &self.presence {
                out.insert(self.presence_filter(user), Qos::AtMostOnce);
            }
        }
        for user in &self.profiles {
            out.insert(self.profile_filter(user), Qos::AtLeastOnce);
        }
        out
    }

    fn desired(&self) -> BTreeMap<String, Qos> {
        let mut out = self.retained();
        out.insert(self.durable.clone(), Qos::AtLeastOnce);
        out.insert(self.replies.clone(), Qos::AtLeastOnce);
        if self.active {
            out.insert(self.ephemeral.clone(), Qos::AtMostOnce);
        }
        out
    }

    /// A new connection. Without a kept session the broker holds nothing. Retained filters
    /// are subscribed to again either way, so that the current presence and profiles arrive
    /// even when they changed while the device was away.
    pub fn connected(&mut self, session_present: bool) -> Change {
        if !session_present {
            self.held.clear();
        }
        for filter in self.retained().keys() {
            self.held.remove(filter);
        }
        self.reconcile()
    }

    /// Whether the device is active (its app in the foreground).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Goes active or inactive; true if that changed anything.
    pub fn set_active(&mut self, active: bool) -> bool {
        std::mem::replace(&mut self.active, active) != active
    }

    /// Starts or stops watching a user's presence; true if that changed anything.
    pub fn watch_presence(&mut self, user: &UserId, watch: bool) -> bool {
        if watch {
            self.presence.insert(user.clone())
        } else {
            self.presence.remove(user)
        }
    }

    /// Starts or stops watching a user's profile; true if that changed anything.
    pub fn watch_profile(&mut self, user: &UserId, watch: bool) -> bool {
        if watch {
            self.profiles.insert(user.clone())
        } else {
            self.profiles.remove(user)
        }
    }

    /// The changes that make the broker hold what the device wants, assumed applied.
    pub fn reconcile(&mut self) -> Change {
        let desired = self.desired();
        let subscribe = desired
            .iter()
            .filter(|(filter, qos)| self.held.get(*filter) != Some(qos))
            .map(|(filter, qos)| (filter.clone(), *qos))
            .collect();
        let unsubscribe = self
            .held
            .keys()
            .filter(|filter| !desired.contains_key(*filter))
            .cloned()
            .collect();
        self.held = desired;
        Change {
            subscribe,
            unsubscribe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user")
    }

    fn subscriptions() -> Subscriptions {
        let me = DeviceIdentity::parse_client_id("alice:phone").expect("valid");
        Subscriptions::new(&TopicRoot::default(), &me)
    }

    /// A change in short: "+filter/qos" and "-filter", in order.
    fn show(change: Change) -> Vec<String> {
        let q = |qos: Qos| match qos {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        };
        change
            .subscribe
            .into_iter()
            .map(|(f, qos)| format!("+{f}/{}", q(qos)))
            .chain(change.unsubscribe.into_iter().map(|f| format!("-{f}")))
            .collect()
    }

    #[test]
    fn first_connection_subscribes_everything() {
        let mut s = subscriptions();
        assert_eq!(
            show(s.connected(false)),
            [
                "+mq/in/alice/d/1",
                "+mq/in/alice/e/0",
                "+mq/in/alice/r/phone/1"
            ]
        );
        // A kept session needs nothing more.
        assert!(show(s.connected(true)).is_empty());
    }

    #[test]
    fn watches_follow_the_active_state() {
        let mut s = subscriptions();
        s.connected(false);
        assert!(s.watch_presence(&user("bob"), true));
        assert!(!s.watch_presence(&user("bob"), true));
        assert!(s.watch_profile(&user("carol"), true));
        assert_eq!(show(s.reconcile()), ["+mq/pf/carol/1", "+mq/pr/bob/+/0"]);
        assert!(s.set_active(false));
        assert_eq!(show(s.reconcile()), ["-mq/in/alice/e", "-mq/pr/bob/+"]);
        // While inactive, a new watch is only remembered.
        s.watch_presence(&user("dave"), true);
        assert!(show(s.reconcile()).is_empty());
        assert!(s.set_active(true));
        assert_eq!(
            show(s.reconcile()),
            ["+mq/in/alice/e/0", "+mq/pr/bob/+/0", "+mq/pr/dave/+/0"]
        );
        s.watch_presence(&user("bob"), false);
        assert_eq!(show(s.reconcile()), ["-mq/pr/bob/+"]);
    }

    #[test]
    fn reconnects_refresh_retained_filters() {
        let mut s = subscriptions();
        s.connected(false);
        s.watch_presence(&user("bob"), true);
        s.watch_profile(&user("bob"), true);
        s.reconcile();
        assert_eq!(show(s.connected(true)), ["+mq/pf/bob/1", "+mq/pr/bob/+/0"]);
        assert_eq!(
            show(s.connected(false)),
            [
                "+mq/in/alice/d/1",
                "+mq/in/alice/e/0",
                "+mq/in/alice/r/phone/1",
                "+mq/pf/bob/1",
                "+mq/pr/bob/+/0"
            ]
        );
    }
}
