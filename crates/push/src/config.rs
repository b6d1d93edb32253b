//! Configuration, as it appears under `[push]` in the server's TOML file.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ApnsEnvironment;

/// Push settings. Every provider is optional: a server without any sends no pushes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Firebase Cloud Messaging (HTTP v1).
    pub fcm: Option<FcmConfig>,
    /// Apple Push Notification service (token-based authentication).
    pub apns: Option<ApnsConfig>,
    /// Web Push with VAPID.
    pub web_push: Option<WebPushConfig>,
    /// UnifiedPush distributors.
    pub unified_push: UnifiedPushConfig,
    /// Pushes waiting to be sent at most; past that the oldest is dropped (and counted).
    pub queue_size: usize,
    /// At most one push per device per this many milliseconds; the ones in between are
    /// folded into the next, which carries their count.
    pub coalesce_window_ms: u64,
    /// Concurrent sends.
    pub workers: usize,
    /// Tries per push, the first included, before it counts as failed.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubled each time, capped by `max_backoff_ms`,
    /// never shorter than the provider's `Retry-After`.
    pub initial_backoff_ms: u64,
    /// Longest delay between two tries, in milliseconds (a provider's `Retry-After` may be
    /// longer and is honoured).
    pub max_backoff_ms: u64,
    /// Deadline of one HTTP exchange with a provider, in milliseconds.
    pub request_timeout_ms: u64,
    /// How long a provider keeps a push for an unreachable device, in seconds.
    pub ttl_secs: u64,
    /// Allows device-registered endpoints (Web Push, UnifiedPush) on loopback, private,
    /// link-local and other non-public addresses. Off by default, so that a device cannot
    /// make the server send requests into its own network; turn it on for a distributor on
    /// the local network.
    pub allow_private_endpoints: bool,
    /// Extra PEM certificate authorities to trust besides the system's (a TLS-inspecting
    /// proxy, a self-hosted push service).
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            fcm: None,
            apns: None,
            web_push: None,
            unified_push: UnifiedPushConfig::default(),
            queue_size: 10_000,
            coalesce_window_ms: 2_000,
            workers: 4,
            max_attempts: 5,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            request_timeout_ms: 10_000,
            ttl_secs: 86_400,
            allow_private_endpoints: false,
            extra_ca_file: None,
        }
    }
}

impl PushConfig {
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
}

/// FCM HTTP v1 with a Google service account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service-account JSON key file downloaded from the Firebase console.
    pub service_account: PathBuf,
    /// The Firebase project id; the key file's `project_id` when absent.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Base URL of the FCM API.
    #[serde(default = "default_fcm_url")]
    pub base_url: String,
    /// Overrides the key file's `token_uri` (the OAuth 2 token endpoint).
    #[serde(default)]
    pub token_uri: Option<String>,
}

fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".into()
}

/// APNs with a token-signing key (`.p8`) from the Apple developer account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `AuthKey_XXXXXXXXXX.p8` file (PKCS#8 P-256 private key, PEM).
    pub key: PathBuf,
    /// The key's 10-character id (the JWT's `kid`).
    pub key_id: String,
    /// The 10-character team id (the JWT's `iss`).
    pub team_id: String,
    /// The app's bundle id, used as `apns-topic` unless a target names its own.
    pub topic: String,
    /// Default environment of targets that do not say.
    #[serde(default)]
    pub environment: ApnsEnvironment,
    /// Base URL of the production service.
    #[serde(default = "default_apns_production")]
    pub production_url: String,
    /// Base URL of the development service.
    #[serde(default = "default_apns_sandbox")]
    pub sandbox_url: String,
}

fn default_apns_production() -> String {
    "https://api.push.apple.com".into()
}

fn default_apns_sandbox() -> String {
    "https://api.sandbox.push.apple.com".into()
}

/// Web Push's application server identity (VAPID, RFC 8292).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    /// The P-256 private key: PEM (PKCS#8 or SEC 1), or the raw 32-byte scalar in base64url
    /// as web-push tools print it. Browsers subscribe with the matching public key.
    pub vapid_private_key: String,
    /// A `mailto:` or `https:` contact for the push service's operator (the JWT's `sub`).
    pub subject: String,
}

/// UnifiedPush: a plain POST to the distributor's endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnifiedPushConfig {
    /// Sends to UnifiedPush endpoints when true.
    pub enabled: bool,
    /// Allows `http://` endpoints (a self-hosted distributor on a trusted network).
    pub allow_plain_http: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_file() {
        let config: PushConfig = toml::from_str("").unwrap_or_default();
        assert_eq!(config, PushConfig::default());
        let text = r#"
            queue_size = 100
            coalesce_window_ms = 500
            [fcm]
            service_account = "/etc/mqchat/firebase.json"
            [apns]
            key = "/etc/mqchat/AuthKey_ABC123DEFG.p8"
            key_id = "ABC123DEFG"
            team_id = "DEF123GHIJ"
            topic = "com.example.chat"
            environment = "sandbox"
            [web_push]
            vapid_private_key = "abc"
            subject = "mailto:ops@example.com"
            [unified_push]
            enabled = true
        "#;
        let config: PushConfig = match toml::from_str(text) {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(config.queue_size, 100);
        assert_eq!(config.workers, 4);
        let apns = config.apns.unwrap_or_else(|| panic!("apns"));
        assert_eq!(apns.environment, ApnsEnvironment::Sandbox);
        assert_eq!(apns.production_url, "https://api.push.apple.com");
        let fcm = config.fcm.unwrap_or_else(|| panic!("fcm"));
        assert_eq!(fcm.base_url, "https://fcm.googleapis.com");
        assert!(config.unified_push.enabled);
        assert!(toml::from_str::<PushConfig>("queue = 3").is_err());
    }
}
