//! APNs: HTTP/2 to `/3/device/{token}` with a provider token, an ES256 JWT (`kid` = key id,
//! `iss` = team id, `iat`) signed with the team's `.p8` key and reused for 40 minutes (Apple
//! refuses tokens refreshed more often than every 20 minutes or older than 60).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use p256::SecretKey;
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::ApnsConfig;
use crate::error::ConfigError;
use crate::http::{HttpClient, Response};
use crate::jwt::{sign_es256, unix_now};
use crate::model::{ApnsEnvironment, Notification, Outcome};
use crate::payload::Payload;

/// How long one provider token is used.
const TOKEN_REUSE: Duration = Duration::from_secs(40 * 60);
/// `apns-collapse-id` may not exceed 64 bytes.
const MAX_COLLAPSE_ID: usize = 64;

struct ProviderToken {
    value: String,
    issued: Instant,
}

/// Sends through APNs with token-based authentication.
pub struct ApnsSender {
    http: HttpClient,
    key: SigningKey,
    key_id: String,
    team_id: String,
    topic: String,
    production_url: String,
    sandbox_url: String,
    ttl: Duration,
    token: Mutex<Option<ProviderToken>>,
}

impl std::fmt::Debug for ApnsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsSender")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl ApnsSender {
    pub(crate) fn new(
        config: &ApnsConfig,
        http: HttpClient,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let path: &Path = &config.key;
        let pem = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let secret = SecretKey::from_pem(pem.trim())
            .map_err(|_| ConfigError::invalid(path, "not a PKCS#8 P-256 private key (.p8)"))?;
        for (what, value) in [
            ("apns.key_id", &config.key_id),
            ("apns.team_id", &config.team_id),
        ] {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ConfigError::invalid(
                    what,
                    "must be the 10-character id from Apple",
                ));
            }
        }
        if config.topic.is_empty() {
            return Err(ConfigError::invalid(
                "apns.topic",
                "must be the app's bundle id",
            ));
        }
        Ok(ApnsSender {
            http,
            key: SigningKey::from(secret),
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            topic: config.topic.clone(),
            production_url: config.production_url.trim_end_matches('/').to_owned(),
            sandbox_url: config.sandbox_url.trim_end_matches('/').to_owned(),
            ttl,
            token: Mutex::new(None),
        })
    }

    /// Sends `notification` to the device token.
    pub async fn send(
        &self,
        device_token: &str,
        topic: Option<&str>,
        environment: ApnsEnvironment,
        preview: bool,
        notification: &Notification,
    ) -> Outcome {
        if device_token.is_empty() || !device_token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Outcome::invalid("BadDeviceToken (not hexadecimal)");
        }
        let payload = Payload::new(notification, preview);
        let base = match environment {
            ApnsEnvironment::Production => &self.production_url,
            ApnsEnvironment::Sandbox => &self.sandbox_url,
        };
        let (push_type, priority) = if payload.preview.is_some() || payload.call {
            ("alert", "10")
        } else {
            // Silent pushes must be priority 5; Apple throttles priority 10 ones.
            ("background", "5")
        };
        let provider_token = self.provider_token().await;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{base}/3/device/{device_token}"))
            .header(
                http::header::AUTHORIZATION,
                format!("bearer {provider_token}"),
            )
            .header("apns-topic", topic.unwrap_or(&self.topic))
            .header("apns-push-type", push_type)
            .header("apns-priority", priority)
            .header(
                "apns-expiration",
                (unix_now() + self.ttl.as_secs()).to_string(),
            )
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &payload.collapse_key {
            request = request.header("apns-collapse-id", collapse_id(key));
        }
        let request = match request.body(Full::new(Bytes::from(body(&payload).to_string()))) {
            Ok(request) => request,
            Err(error) => return Outcome::failed(format!("APNs request: {error}")),
        };
        let response = match self.http.send(request).await {
            Ok(response) => response,
            Err(error) => return Outcome::retry(None, format!("APNs: {error}")),
        };
        let outcome = classify(&response);
        if response.status == StatusCode::FORBIDDEN && matches!(&outcome, Outcome::Retry { .. }) {
            *self.token.lock().await = None;
        }
        outcome
    }

    /// The current provider token, signed anew once it is 40 minutes old.
    async fn provider_token(&self) -> String {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && fresh(token.issued.elapsed())
        {
            return token.value.clone();
        }
        let value = sign_es256(
            &self.key,
            &json!({"alg": "ES256", "kid": self.key_id}),
            &json!({"iss": self.team_id, "iat": unix_now()}),
        );
        *cached = Some(ProviderToken {
            value: value.clone(),
            issued: Instant::now(),
        });
        value
    }
}

/// Whether a provider token of this age is still used: Apple refuses tokens older than an
/// hour and rate-limits new ones issued within 20 minutes of the last.
fn fresh(age: Duration) -> bool {
    age < TOKEN_REUSE
}

/// The APNs JSON body: `aps` plus the payload's keys beside it.
fn body(payload: &Payload) -> Value {
    // A ringing call shows at once, with the text only for devices that allow previews.
    let alert = payload
        .preview
        .clone()
        .or_else(|| payload.call.then(|| "Incoming call".to_owned()));
    let aps = match &alert {
        Some(text) => json!({
            "alert": {"body": text},
            "sound": "default",
            "thread-id": payload.conversation,
            "mutable-content": 1,
        }),
        None => json!({"content-available": 1}),
    };
    let mut body = payload.json();
    body.insert("aps".into(), aps);
    Value::Object(body)
}

/// A collapse key that fits `apns-collapse-id`: kept when short enough, hashed otherwise.
pub(crate) fn collapse_id(key: &str) -> String {
    if key.len() <= MAX_COLLAPSE_ID {
        return key.to_owned();
    }
    use sha2::Digest as _;
    crate::jwt::b64url(&sha2::Sha256::digest(key.as_bytes()))
}

/// Sorts APNs' answer by status and `reason`.
fn classify(response: &Response) -> Outcome {
    if response.status == StatusCode::OK {
        return Outcome::Delivered;
    }
    let reason = response
        .json()
        .and_then(|json| json["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| response.snippet());
    let described = format!("{} {reason}", response.status.as_u16());
    match (response.status, reason.as_str()) {
        (StatusCode::GONE, _) => Outcome::invalid(described),
        (StatusCode::BAD_REQUEST, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
            Outcome::invalid(described)
        }
        // Our provider token aged out: a fresh one fixes it.
        (StatusCode::FORBIDDEN, "ExpiredProviderToken") => Outcome::retry(None, described),
        (StatusCode::TOO_MANY_REQUESTS, _) => Outcome::retry(response.retry_after(), described),
        (status, _) if status.is_server_error() => {
            Outcome::retry(response.retry_after(), described)
        }
        _ => Outcome::failed(described),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let silent = body(&Payload::new(&Notification::new("alice", 3), true));
        assert_eq!(
            silent,
            json!({"aps": {"content-available": 1}, "conversation": "alice", "seq": 3, "count": 1})
        );
        let alert = body(&Payload::new(
            &Notification::new("alice", 3).with_preview("hi"),
            true,
        ));
        assert_eq!(alert["aps"]["alert"]["body"], "hi");
        let call = body(&Payload::new(
            &Notification::new("alice", 3).for_call(),
            false,
        ));
        assert_eq!(call["aps"]["alert"]["body"], "Incoming call");
        assert_eq!(call["reason"], "call");
        assert_eq!(alert["preview"], "hi");
    }

    #[test]
    fn provider_tokens_live_between_20_and_60_minutes() {
        assert!(fresh(Duration::from_secs(20 * 60)));
        assert!(fresh(Duration::from_secs(39 * 60)));
        assert!(!fresh(Duration::from_secs(40 * 60)));
        assert!(!fresh(Duration::from_secs(60 * 60)));
    }

    #[test]
    fn collapse_ids_fit() {
        assert_eq!(collapse_id("alice"), "alice");
        assert!(collapse_id(&"x".repeat(100)).len() <= MAX_COLLAPSE_ID);
    }
}
