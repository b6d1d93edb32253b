//! Web Push: RFC 8030 delivery to a browser's push service, the payload encrypted for the
//! subscription (RFC 8291) and the request signed by the application server (VAPID, RFC 8292).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use p256::SecretKey;
use p256::ecdsa::SigningKey;
use serde_json::json;
use tokio::sync::Mutex;

use crate::config::{PushConfig, WebPushConfig};
use crate::ece;
use crate::endpoint::{self, Endpoint};
use crate::error::ConfigError;
use crate::http::HttpClient;
use crate::jwt::{b64url, b64url_decode, sign_es256, unix_now};
use crate::model::{Notification, Outcome};
use crate::payload::Payload;

/// How long a VAPID token is valid: RFC 8292 allows at most 24 hours.
const VAPID_LIFETIME_SECS: u64 = 12 * 3600;
/// A cached token is replaced when it has less than this left.
const VAPID_MARGIN_SECS: u64 = 3600;

/// Sends to Web Push subscriptions.
pub struct WebPushSender {
    http: HttpClient,
    key: SigningKey,
    /// The application server key browsers subscribe with (`k=`), base64url.
    public_key: String,
    subject: String,
    ttl: Duration,
    allow_private: bool,
    /// VAPID tokens per push-service origin, with their expiry.
    tokens: Mutex<HashMap<String, (String, u64)>>,
}

impl std::fmt::Debug for WebPushSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushSender")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl WebPushSender {
    pub(crate) fn new(
        config: &WebPushConfig,
        http: HttpClient,
        push: &PushConfig,
    ) -> Result<Self, ConfigError> {
        let secret = parse_vapid_key(&config.vapid_private_key)?;
        if !(config.subject.starts_with("mailto:") || config.subject.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "web_push.subject",
                "must be a mailto: or https: URL",
            ));
        }
        let public_key = b64url(&secret.public_key().to_sec1_bytes());
        Ok(WebPushSender {
            http,
            key: SigningKey::from(secret),
            public_key,
            subject: config.subject.clone(),
            ttl: push.ttl(),
            allow_private: push.allow_private_endpoints,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The VAPID public key (base64url, uncompressed point): the `applicationServerKey` web
    /// apps pass to `pushManager.subscribe`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Sends `notification` to the subscription.
    pub async fn send(
        &self,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        preview: bool,
        notification: &Notification,
    ) -> Outcome {
        let endpoint = match Endpoint::parse(endpoint, false, self.allow_private) {
            Ok(endpoint) => endpoint,
            Err(reason) => return Outcome::invalid(reason),
        };
        let (Some(ua_public), Some(auth)) = (b64url_decode(p256dh), b64url_decode(auth)) else {
            return Outcome::invalid("subscription keys are not base64url");
        };
        let payload = Payload::new(notification, preview);
        let sender = match ece::Sender::random() {
            Ok(sender) => sender,
            Err(error) => return Outcome::retry(None, error.to_string()),
        };
        let body = match ece::encrypt(&payload.body(), &ua_public, &auth, sender, true) {
            Ok(body) => body,
            Err(ece::EceError::Random) => return Outcome::retry(None, "no randomness"),
            Err(error @ ece::EceError::TooLarge(_)) => return Outcome::failed(error.to_string()),
            Err(error) => return Outcome::invalid(error.to_string()),
        };
        let token = self.vapid_token(&endpoint.origin()).await;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(endpoint.uri)
            .header(
                http::header::AUTHORIZATION,
                format!("vapid t={token}, k={}", self.public_key),
            )
            .header(http::header::CONTENT_ENCODING, "aes128gcm")
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header("ttl", self.ttl.as_secs().to_string())
            .header(
                "urgency",
                if payload.preview.is_some() {
                    "high"
                } else {
                    "normal"
                },
            );
        if let Some(key) = &payload.collapse_key {
            request = request.header("topic", endpoint::topic(key));
        }
        match request.body(Full::new(Bytes::from(body))) {
            Ok(request) => endpoint::deliver(&self.http, request).await,
            Err(error) => Outcome::failed(format!("request: {error}")),
        }
    }

    /// A VAPID JWT for the push service at `origin`, reused until an hour before it expires.
    async fn vapid_token(&self, origin: &str) -> String {
        let now = unix_now();
        let mut tokens = self.tokens.lock().await;
        if let Some((token, exp)) = tokens.get(origin)
            && *exp > now + VAPID_MARGIN_SECS
        {
            return token.clone();
        }
        let exp = now + VAPID_LIFETIME_SECS;
        let token = sign_es256(
            &self.key,
            &json!({"typ": "JWT", "alg": "ES256"}),
            &json!({"aud": origin, "exp": exp, "sub": self.subject}),
        );
        // Subscriptions of one server go to a handful of push services; this stays small.
        tokens.retain(|_, (_, exp)| *exp > now);
        tokens.insert(origin.to_owned(), (token.clone(), exp));
        token
    }
}

/// A PEM key (PKCS#8 or SEC 1), or the raw 32-byte scalar in base64url.
fn parse_vapid_key(text: &str) -> Result<SecretKey, ConfigError> {
    let text = text.trim();
    let what = "web_push.vapid_private_key";
    if text.starts_with("-----BEGIN") {
        return SecretKey::from_pem(text)
            .or_else(|_| SecretKey::from_sec1_pem(text))
            .map_err(|_| ConfigError::invalid(what, "not a P-256 private key in PEM"));
    }
    let raw = b64url_decode(text)
        .ok_or_else(|| ConfigError::invalid(what, "neither PEM nor base64url"))?;
    SecretKey::from_slice(&raw)
        .map_err(|_| ConfigError::invalid(what, "not a 32-byte P-256 private key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey as _;
    use p256::pkcs8::LineEnding;

    #[test]
    fn vapid_keys_in_each_form() {
        let secret = SecretKey::from_slice(&[7u8; 32]).unwrap_or_else(|_| panic!("scalar"));
        let raw = b64url(&secret.to_bytes());
        let pkcs8 = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default();
        let sec1 = secret
            .to_sec1_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default();
        for text in [raw.as_str(), &format!("{raw}="), &pkcs8, &sec1] {
            let parsed = parse_vapid_key(text).map(|key| key.to_bytes());
            assert_eq!(parsed.ok(), Some(secret.to_bytes()), "{text}");
        }
        assert!(parse_vapid_key("AAAA").is_err());
        assert!(
            parse_vapid_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
