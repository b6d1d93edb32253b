//! Who may publish and subscribe where: the ACL rules of the spec as one function.
//!
//! The embedded broker's hooks and the HTTP auth endpoint for external brokers both call
//! [`authorize`], so there is one implementation of the rules. The function needs no
//! database: the only rule that depends on stored state (reading a contact's presence) comes
//! back as [`Decision::IfContact`] for the caller to resolve.

use std::fmt;

use crate::identity::DeviceIdentity;
use crate::topic::{Topic, TopicRoot};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An authenticated device.
    Device(DeviceIdentity),
    /// The hub: may publish and subscribe anywhere under the root.
    Hub,
}

/// What is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Publish to a topic, with or without the retain flag.
    Publish {
        /// The MQTT retain flag.
        retain: bool,
    },
    /// Subscribe with a topic filter (wildcards allowed; a `$share/{group}/` prefix is
    /// ignored).
    Subscribe,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Allowed only if the owner has accepted the asker as a contact (reading presence).
    IfContact(crate::identity::UserId),
    /// Refused, with the reason to log.
    Deny(Denial),
}

/// Why an access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The topic belongs to another user or device.
    NotOwner,
    /// Only the hub writes (or reads) this topic.
    HubOnly,
    /// The filter has a wildcard where it would reach other users' topics.
    Wildcard,
    /// The retain flag is not allowed on this topic.
    Retain,
    /// Not a topic of the mqchat tree.
    NotMqchat,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOwner => "topic belongs to another user or device",
            Self::HubOnly => "only the hub may use this topic",
            Self::Wildcard => "wildcard would reach other users' topics",
            Self::Retain => "retain is not allowed on this topic",
            Self::NotMqchat => "not an mqchat topic",
        })
    }
}

/// Decides whether `principal` may perform `access` on `topic` (a filter when subscribing).
pub fn authorize(root: &TopicRoot, principal: &Principal, access: Access, topic: &str) -> Decision {
    let device = match principal {
        Principal::Hub => return Decision::Allow,
        Principal::Device(device) => device,
    };
    match access {
        Access::Publish { retain } => authorize_publish(root, device, retain, topic),
        Access::Subscribe => authorize_subscribe(root, device, topic),
    }
}

fn authorize_publish(root: &TopicRoot, me: &DeviceIdentity, retain: bool, topic: &str) -> Decision {
    let owns =
        |user: &crate::UserId, device: &crate::DeviceId| *user == me.user && *device == me.device;
    match root.parse_topic(topic) {
        Ok(Topic::Upstream { user, device }) if owns(&user, &device) => {
            if retain {
                Decision::Deny(Denial::Retain)
            } else {
                Decision::Allow
            }
        }
        Ok(Topic::Presence { user, device }) if owns(&user, &device) => Decision::Allow,
        Ok(Topic::Upstream { .. } | Topic::Presence { .. }) => Decision::Deny(Denial::NotOwner),
        Ok(Topic::Inbox { .. } | Topic::Profile { .. } | Topic::Gateway { .. }) => {
            Decision::Deny(Denial::HubOnly)
        }
        Err(_) => Decision::Deny(Denial::NotMqchat),
    }
}

fn authorize_subscribe(root: &TopicRoot, me: &DeviceIdentity, filter: &str) -> Decision {
    let filter = strip_share(filter);
    let Some(rest) = root.strip(filter) else {
        return Decision::Deny(if filter.starts_with(['#', '+']) {
            Denial::Wildcard
        } else {
            Denial::NotMqchat
        });
    };
    let mut levels = rest.split('/');
    let branch = levels.next().unwrap_or_default();
    let owner = levels.next();
    let is_wild = |l: &str| l == "+" || l == "#";
    match (branch, owner) {
        ("#" | "+", _) => Decision::Deny(Denial::Wildcard),
        ("pf", _) => Decision::Allow,
        ("up" | "gw", _) => Decision::Deny(Denial::HubOnly),
        ("in" | "pr", None) => Decision::Deny(Denial::NotMqchat),
        ("in" | "pr", Some(owner)) if is_wild(owner) => Decision::Deny(Denial::Wildcard),
        ("in", Some(owner)) if owner == me.user.as_str() => Decision::Allow,
        ("in", Some(_)) => Decision::Deny(Denial::NotOwner),
        ("pr", Some(owner)) if owner == me.user.as_str() => Decision::Allow,
        ("pr", Some(owner)) => match crate::UserId::parse(owner) {
            Ok(owner) => Decision::IfContact(owner),
            Err(_) => Decision::Deny(Denial::NotMqchat),
        },
        _ => Decision::Deny(Denial::NotMqchat),
    }
}

/// Removes a `$share/{group}/` prefix, as brokers do before matching a shared subscription.
fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, inner)| inner)
}

/// One rule of the static ACL for brokers that only know `%u` (username) patterns, such as
/// Mosquitto's `pattern` lines or EMQX's file ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRule {
    /// `true` for write (publish), `false` for read (subscribe).
    pub write: bool,
    /// The topic pattern, with `%u` standing for the username.
    pub pattern: String,
}

/// The static ACL that approximates [`authorize`] with `%u` patterns. What it gives up: a
/// user's devices are not told apart (any device of alice may publish as any other), and
/// presence is readable by every authenticated user, not only contacts.
pub fn static_rules(root: &TopicRoot) -> Vec<StaticRule> {
    let rule = |write, p: &str| StaticRule {
        write,
        pattern: format!("{root}/{p}"),
    };
    vec![
        rule(true, "up/%u/+"),
        rule(true, "pr/%u/+"),
        rule(false, "in/%u/#"),
        rule(false, "pr/+/+"),
        rule(false, "pf/+"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserId;

    fn alice() -> Principal {
        Principal::Device(DeviceIdentity::parse_client_id("alice:phone").expect("valid"))
    }

    fn check(access: Access, topic: &str, expected: Decision) {
        let root = TopicRoot::default();
        assert_eq!(
            authorize(&root, &alice(), access, topic),
            expected,
            "{access:?} {topic}"
        );
    }

    const PUB: Access = Access::Publish { retain: false };
    const PUB_RETAIN: Access = Access::Publish { retain: true };
    const SUB: Access = Access::Subscribe;
    const ALLOW: Decision = Decision::Allow;
    fn deny(d: Denial) -> Decision {
        Decision::Deny(d)
    }

    #[test]
    fn publish() {
        check(PUB, "mq/up/alice/phone", ALLOW);
        check(PUB_RETAIN, "mq/up/alice/phone", deny(Denial::Retain));
        check(PUB, "mq/up/alice/tablet", deny(Denial::NotOwner));
        check(PUB, "mq/up/bob/phone", deny(Denial::NotOwner));
        check(PUB_RETAIN, "mq/pr/alice/phone", ALLOW);
        check(PUB, "mq/pr/alice/phone", ALLOW);
        check(PUB_RETAIN, "mq/pr/bob/phone", deny(Denial::NotOwner));
        check(PUB_RETAIN, "mq/pr/alice/tablet", deny(Denial::NotOwner));
        check(PUB_RETAIN, "mq/pf/alice", deny(Denial::HubOnly));
        check(PUB, "mq/in/bob/d", deny(Denial::HubOnly));
        check(PUB, "mq/in/alice/d", deny(Denial::HubOnly));
        check(PUB, "mq/in/alice/r/phone", deny(Denial::HubOnly));
        check(PUB, "mq/up/+/phone", deny(Denial::NotMqchat));
        check(PUB, "mq/gw/sip/in", deny(Denial::HubOnly));
        check(PUB, "mq/gw/sip/out", deny(Denial::HubOnly));
        check(PUB, "mq/gw/+/in", deny(Denial::NotMqchat));
        check(PUB, "other/topic", deny(Denial::NotMqchat));
        check(PUB, "$SYS/x", deny(Denial::NotMqchat));
    }

    #[test]
    fn subscribe() {
        check(SUB, "mq/in/alice/d", ALLOW);
        check(SUB, "mq/in/alice/e", ALLOW);
        check(SUB, "mq/in/alice/r/phone", ALLOW);
        check(SUB, "mq/in/alice/#", ALLOW);
        check(SUB, "mq/in/alice/+", ALLOW);
        check(SUB, "$share/g/mq/in/alice/d", ALLOW);
        check(SUB, "mq/in/bob/d", deny(Denial::NotOwner));
        check(SUB, "$share/g/mq/in/bob/d", deny(Denial::NotOwner));
        check(SUB, "mq/in/+/d", deny(Denial::Wildcard));
        check(SUB, "mq/in/#", deny(Denial::Wildcard));
        check(SUB, "mq/in", deny(Denial::NotMqchat));
        check(SUB, "mq/#", deny(Denial::Wildcard));
        check(SUB, "mq/+/alice/d", deny(Denial::Wildcard));
        check(SUB, "#", deny(Denial::Wildcard));
        check(SUB, "+/in/alice/d", deny(Denial::Wildcard));
        check(SUB, "mq/up/alice/phone", deny(Denial::HubOnly));
        check(SUB, "mq/up/+/+", deny(Denial::HubOnly));
        check(SUB, "mq/gw/sip/in", deny(Denial::HubOnly));
        check(SUB, "mq/gw/+/out", deny(Denial::HubOnly));
        check(SUB, "$share/g/mq/gw/#", deny(Denial::HubOnly));
        check(SUB, "mq/pr/alice/+", ALLOW);
        check(
            SUB,
            "mq/pr/bob/+",
            Decision::IfContact(UserId::parse("bob").expect("valid")),
        );
        check(
            SUB,
            "mq/pr/bob/laptop",
            Decision::IfContact(UserId::parse("bob").expect("valid")),
        );
        check(SUB, "mq/pr/+/+", deny(Denial::Wildcard));
        check(SUB, "mq/pr/BOB/+", deny(Denial::NotMqchat));
        check(SUB, "mq/pf/bob", ALLOW);
        check(SUB, "mq/pf/+", ALLOW);
        check(SUB, "$SYS/#", deny(Denial::NotMqchat));
        check(SUB, "other/#", deny(Denial::NotMqchat));
    }

    #[test]
    fn hub_may_do_anything() {
        let root = TopicRoot::default();
        for topic in ["mq/in/bob/d", "mq/pf/bob", "$share/hub/mq/up/+/+", "#"] {
            assert_eq!(authorize(&root, &Principal::Hub, PUB, topic), ALLOW);
            assert_eq!(authorize(&root, &Principal::Hub, SUB, topic), ALLOW);
        }
    }

    #[test]
    fn static_rules_cover_the_tree() {
        let rules = static_rules(&TopicRoot::default());
        assert!(rules.contains(&StaticRule {
            write: true,
            pattern: "mq/up/%u/+".into()
        }));
        assert!(rules.contains(&StaticRule {
            write: false,
            pattern: "mq/in/%u/#".into()
        }));
        assert!(!rules.iter().any(|r| r.write && r.pattern.contains("/in/")));
    }
}
