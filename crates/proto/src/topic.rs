//! The topic tree: typed topics, formatted and parsed under a configurable root.
//!
//! ```text
//! {root}/up/{user}/{device}      device → hub      upstream packets
//! {root}/in/{user}/d             hub → user        durable inbox (QoS 1)
//! {root}/in/{user}/e             hub → user        ephemeral inbox (QoS 0: chat states)
//! {root}/in/{user}/r/{device}    hub → one device  replies: acks, errors, query results
//! {root}/pr/{user}/{device}      device → contacts presence (retained; will = offline)
//! {root}/pf/{user}               hub → everyone    profile (retained)
//! {root}/gw/{gateway}/in          gateway → hub     SIP from the outside world (hub-internal)
//! {root}/gw/{gateway}/out         hub → gateway     SIP to the outside world (hub-internal)
//! ```

use std::fmt;
use std::sync::Arc;

use crate::identity::{DeviceId, GatewayName, IdentityError, UserId};

/// Why a topic or root is not valid, or not one of mqchat's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The configured root is not 1 to 64 bytes of `/`-separated `[A-Za-z0-9_-]` levels.
    #[error("topic root {0:?} must be 1 to 64 bytes of levels of [A-Za-z0-9_-] separated by /")]
    Root(String),
    /// The topic is not under the root.
    #[error("topic is outside the root {root:?}")]
    OutsideRoot {
        /// The configured root.
        root: String,
    },
    /// Under the root, but not a topic of the tree.
    #[error("topic {0:?} is not an mqchat topic")]
    Unknown(String),
    /// A user or device level is not a valid id.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// The first level(s) of every mqchat topic, e.g. `mq` (the default) or `acme/chat`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicRoot(Arc<str>);

impl TopicRoot {
    /// The default root.
    pub const DEFAULT: &'static str = "mq";

    /// Parses a root: 1 to 64 bytes, levels of `[A-Za-z0-9_-]` separated by `/`.
    pub fn parse(root: &str) -> Result<Self, TopicError> {
        let level_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if root.is_empty() || root.len() > 64 || !root.split('/').all(level_ok) {
            return Err(TopicError::Root(root.to_owned()));
        }
        Ok(Self(Arc::from(root)))
    }

    /// The root as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Formats a topic under this root.
    pub fn topic(&self, topic: &Topic) -> String {
        let r = &self.0;
        match topic {
            Topic::Upstream { user, device } => format!("{r}/up/{user}/{device}"),
            Topic::Inbox {
                user,
                branch: InboxBranch::Durable,
            } => format!("{r}/in/{user}/d"),
            Topic::Inbox {
                user,
                branch: InboxBranch::Ephemeral,
            } => format!("{r}/in/{user}/e"),
            Topic::Inbox {
                user,
                branch: InboxBranch::Device(device),
            } => {
                format!("{r}/in/{user}/r/{device}")
            }
            Topic::Presence { user, device } => format!("{r}/pr/{user}/{device}"),
            Topic::Profile { user } => format!("{r}/pf/{user}"),
            Topic::Gateway {
                gateway,
                direction: GatewayDirection::In,
            } => format!("{r}/gw/{gateway}/in"),
            Topic::Gateway {
                gateway,
                direction: GatewayDirection::Out,
            } => format!("{r}/gw/{gateway}/out"),
        }
    }

    /// The filter the hub subscribes to for what every SIP gateway received, shared between
    /// hub instances through `$share/{group}/` (or plain when `group` is `None`).
    pub fn gateway_in_filter(&self, group: Option<&str>) -> String {
        match group {
            Some(group) => format!("$share/{group}/{}/gw/+/in", self.0),
            None => format!("{}/gw/+/in", self.0),
        }
    }

    /// The filter the hub subscribes to for all upstream traffic, shared between hub
    /// instances through `$share/{group}/`.
    pub fn upstream_share_filter(&self, group: &str) -> String {
        format!("$share/{group}/{}/up/+/+", self.0)
    }

    /// The filter matching every device's presence (the hub watches it to stamp last-seen).
    pub fn presence_filter(&self) -> String {
        format!("{}/pr/+/+", self.0)
    }

    /// Strips the root from a topic or filter, returning the levels below it.
    pub(crate) fn strip<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(&*self.0)?.strip_prefix('/')
    }

    /// Parses a concrete topic (no wildcards) into its typed form.
    pub fn parse_topic(&self, topic: &str) -> Result<Topic, TopicError> {
        let rest = self.strip(topic).ok_or_else(|| TopicError::OutsideRoot {
            root: self.0.to_string(),
        })?;
        let levels: Vec<&str> = rest.split('/').collect();
        let unknown = || TopicError::Unknown(topic.chars().take(200).collect());
        let parsed = match levels.as_slice() {
            ["up", user, device] => Topic::Upstream {
                user: UserId::parse(user)?,
                device: DeviceId::parse(device)?,
            },
            ["in", user, "d"] => Topic::Inbox {
                user: UserId::parse(user)?,
                branch: InboxBranch::Durable,
            },
            ["in", user, "e"] => Topic::Inbox {
                user: UserId::parse(user)?,
                branch: InboxBranch::Ephemeral,
            },
            ["in", user, "r", device] => Topic::Inbox {
                user: UserId::parse(user)?,
                branch: InboxBranch::Device(DeviceId::parse(device)?),
            },
            ["pr", user, device] => Topic::Presence {
                user: UserId::parse(user)?,
                device: DeviceId::parse(device)?,
            },
            ["pf", user] => Topic::Profile {
                user: UserId::parse(user)?,
            },
            ["gw", gateway, "in"] => Topic::Gateway {
                gateway: GatewayName::parse(gateway)?,
                direction: GatewayDirection::In,
            },
            ["gw", gateway, "out"] => Topic::Gateway {
                gateway: GatewayName::parse(gateway)?,
                direction: GatewayDirection::Out,
            },
            _ => return Err(unknown()),
        };
        Ok(parsed)
    }
}

impl fmt::Debug for TopicRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicRoot({:?})", &*self.0)
    }
}

impl fmt::Display for TopicRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for TopicRoot {
    fn default() -> Self {
        Self(Arc::from(Self::DEFAULT))
    }
}

/// One topic of the tree.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Topic {
    /// Where a device publishes packets for the hub.
    Upstream {
        /// The publishing user.
        user: UserId,
        /// The publishing device.
        device: DeviceId,
    },
    /// Where the hub publishes to a user's devices.
    Inbox {
        /// The receiving user.
        user: UserId,
        /// Which branch.
        branch: InboxBranch,
    },
    /// A device's presence, retained, written by the device (and its will).
    Presence {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// A user's profile, retained, written by the hub.
    Profile {
        /// The user.
        user: UserId,
    },
    /// Between the hub and its SIP gateway; only the hub's own clients use it.
    Gateway {
        /// The gateway's name.
        gateway: GatewayName,
        /// Which way.
        direction: GatewayDirection,
    },
}

/// The direction of a gateway topic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GatewayDirection {
    /// Gateway → hub: what the gateway received from SIP peers.
    In,
    /// Hub → gateway: what the gateway sends to SIP peers.
    Out,
}

/// The branches of a user's inbox.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum InboxBranch {
    /// Archived, sequenced events and markers (QoS 1). Always subscribed.
    Durable,
    /// Chat states (QoS 0, never archived). Unsubscribed while the app is in the background.
    Ephemeral,
    /// Replies to one device: acks, errors, query results (QoS 1).
    Device(DeviceId),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user")
    }
    fn device(s: &str) -> DeviceId {
        DeviceId::parse(s).expect("valid device")
    }

    fn check(root: &str, text: &str, topic: &Topic) {
        let root = TopicRoot::parse(root).expect("valid root");
        assert_eq!(root.topic(topic), text);
        assert_eq!(root.parse_topic(text).as_ref(), Ok(topic), "{text}");
    }

    #[test]
    fn round_trips() {
        let (a, p) = (user("alice"), device("phone"));
        check(
            "mq",
            "mq/up/alice/phone",
            &Topic::Upstream {
                user: a.clone(),
                device: p.clone(),
            },
        );
        check(
            "mq",
            "mq/in/alice/d",
            &Topic::Inbox {
                user: a.clone(),
                branch: InboxBranch::Durable,
            },
        );
        check(
            "mq",
            "mq/in/alice/e",
            &Topic::Inbox {
                user: a.clone(),
                branch: InboxBranch::Ephemeral,
            },
        );
        check(
            "acme/chat",
            "acme/chat/in/alice/r/phone",
            &Topic::Inbox {
                user: a.clone(),
                branch: InboxBranch::Device(p.clone()),
            },
        );
        check(
            "x",
            "x/pr/alice/phone",
            &Topic::Presence {
                user: a.clone(),
                device: p,
            },
        );
        check("mq", "mq/pf/alice", &Topic::Profile { user: a });
        let gateway = GatewayName::parse("sip").expect("valid");
        check(
            "mq",
            "mq/gw/sip/in",
            &Topic::Gateway {
                gateway: gateway.clone(),
                direction: GatewayDirection::In,
            },
        );
        check(
            "mq",
            "mq/gw/sip/out",
            &Topic::Gateway {
                gateway,
                direction: GatewayDirection::Out,
            },
        );
    }

    #[test]
    fn rejects() {
        let root = TopicRoot::default();
        for bad in [
            "mq/up/alice",
            "mq/up/alice/phone/x",
            "mq/in/alice/x",
            "mq/in/alice/r",
            "mq/zz/alice",
            "mq/up/Alice/phone",
            "mq/up/+/phone",
            "mq/pf/#",
            "mq/gw/sip",
            "mq/gw/sip/x",
            "mq/gw/+/in",
            "mqx/up/alice/phone",
            "other/up/alice/phone",
            "mq",
            "",
        ] {
            assert!(root.parse_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roots() {
        for ok in ["mq", "a/b", "A-b_9/c"] {
            assert!(TopicRoot::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/mq",
            "mq/",
            "a//b",
            "m+",
            "m#",
            "$SYS",
            &"a".repeat(65),
        ] {
            assert!(TopicRoot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn share_filter() {
        assert_eq!(
            TopicRoot::default().upstream_share_filter("hub"),
            "$share/hub/mq/up/+/+"
        );
    }
}
