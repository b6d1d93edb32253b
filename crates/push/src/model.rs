//! The common model: where a device is reached, what it is told, and what the provider said.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where one device receives pushes: the provider and the device's address there.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Target {
    /// Firebase Cloud Messaging (Android, and iOS apps that go through Firebase).
    Fcm {
        /// The FCM registration token the app obtained from the Firebase SDK.
        token: String,
    },
    /// Apple Push Notification service.
    Apns {
        /// The device token, as hexadecimal text.
        token: String,
        /// The app's bundle id (`apns-topic`); the configured topic when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        /// Development builds get sandbox tokens, store builds production tokens.
        #[serde(default)]
        environment: ApnsEnvironment,
    },
    /// A browser's Web Push subscription (RFC 8030, encrypted per RFC 8291).
    WebPush {
        /// The push service URL from `PushSubscription.endpoint`.
        endpoint: String,
        /// The subscription's P-256 public key, base64url (uncompressed point, 65 bytes).
        p256dh: String,
        /// The subscription's 16-byte authentication secret, base64url.
        auth: String,
    },
    /// A UnifiedPush distributor's endpoint for this app instance.
    UnifiedPush {
        /// The URL the distributor gave the app.
        endpoint: String,
    },
}

impl Target {
    /// The provider's name, for logs and counters.
    pub fn provider(&self) -> &'static str {
        match self {
            Target::Fcm { .. } => "fcm",
            Target::Apns { .. } => "apns",
            Target::WebPush { .. } => "web-push",
            Target::UnifiedPush { .. } => "unified-push",
        }
    }
}

/// Tokens and keys are credentials of sorts: logs show the provider and a short prefix only.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = match self {
            Target::Fcm { token } | Target::Apns { token, .. } => token,
            Target::WebPush { endpoint, .. } | Target::UnifiedPush { endpoint } => endpoint,
        };
        let shown: String = address.chars().take(12).collect();
        write!(f, "{}:{shown}…", self.provider())
    }
}

/// APNs has two hosts; a token from one is refused by the other (`BadDeviceToken`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `api.push.apple.com`: App Store, TestFlight and ad hoc builds.
    #[default]
    Production,
    /// `api.sandbox.push.apple.com`: builds signed for development.
    Sandbox,
}

/// One device as the dispatcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The caller's name for the device (the hub uses its client id); coalescing is per key.
    pub key: String,
    /// Where it receives pushes.
    pub target: Target,
    /// Whether the user let this device show message text in notifications.
    pub preview: bool,
}

/// What happened in a conversation that the device should learn about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The conversation, as the device's user names it.
    pub conversation: String,
    /// The newest event's sequence number in that conversation.
    pub seq: u64,
    /// How many new events this notification stands for (coalescing adds them up).
    pub count: u32,
    /// Message text for devices that opted in; never sent to the others.
    pub preview: Option<String>,
    /// Notifications with the same key replace each other on the device (one per conversation).
    pub collapse_key: Option<String>,
    /// A call is ringing (spec 19): the device should show it at once, loudly.
    pub call: bool,
}

impl Notification {
    /// A notification for one new event, without preview text, collapsing per conversation.
    pub fn new(conversation: impl Into<String>, seq: u64) -> Self {
        let conversation = conversation.into();
        Notification {
            collapse_key: Some(conversation.clone()),
            conversation,
            seq,
            count: 1,
            preview: None,
            call: false,
        }
    }

    /// Marks it as a ringing call.
    pub fn for_call(mut self) -> Self {
        self.call = true;
        self
    }

    /// Sets the preview text.
    pub fn with_preview(mut self, text: impl Into<String>) -> Self {
        self.preview = Some(text.into());
        self
    }
}

/// The provider's answer to one push, sorted by what the caller must do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The provider accepted the push.
    Delivered,
    /// The target no longer exists (app uninstalled, token rotated, subscription gone): delete
    /// it. `reason` is the provider's word (`UNREGISTERED`, `BadDeviceToken`, `410`...).
    Invalid {
        /// The provider's reason.
        reason: String,
    },
    /// A passing failure (rate limit, outage, timeout): try again, not before `after` when the
    /// provider said so.
    Retry {
        /// The provider's `Retry-After`, if any.
        after: Option<Duration>,
        /// What failed.
        reason: String,
    },
    /// Trying again will not help (bad configuration, a message the provider refuses).
    Failed {
        /// The provider's reason, or ours.
        reason: String,
    },
}

impl Outcome {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Outcome::Invalid {
            reason: reason.into(),
        }
    }

    pub(crate) fn retry(after: Option<Duration>, reason: impl Into<String>) -> Self {
        Outcome::Retry {
            after,
            reason: reason.into(),
        }
    }

    pub(crate) fn failed(reason: impl Into<String>) -> Self {
        Outcome::Failed {
            reason: reason.into(),
        }
    }
}
