//! FCM HTTP v1: a Google service account's OAuth 2 access token (an RS256 JWT assertion
//! exchanged at the token endpoint, cached until shortly before it expires), then
//! `POST /v1/projects/{project}/messages:send`.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use rsa::pkcs8::DecodePrivateKey as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::FcmConfig;
use crate::error::ConfigError;
use crate::http::{HttpClient, Response};
use crate::jwt::{sign_rs256, unix_now};
use crate::model::{Notification, Outcome};
use crate::payload::Payload;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A cached access token is replaced this long before Google says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a service-account key file that the flow needs.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    token_uri: String,
    #[serde(default)]
    project_id: Option<String>,
}

struct AccessToken {
    value: String,
    /// When to stop using it (the expiry less the margin).
    until: Instant,
}

/// Sends through FCM HTTP v1.
pub struct FcmSender {
    http: HttpClient,
    client_email: String,
    key: rsa::PrivateKey,
    token_uri: String,
    send_url: String,
    ttl: Duration,
    token: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for FcmSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmSender")
            .field("client_email", &self.client_email)
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

impl FcmSender {
    pub(crate) fn new(
        config: &FcmConfig,
        http: HttpClient,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let path: &Path = &config.service_account;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|error| {
            ConfigError::invalid(path, format!("not a service-account key: {error}"))
        })?;
        let key = rsa::PrivateKey::from_pkcs8_pem(&account.private_key)
            .map_err(|error| ConfigError::invalid(path, format!("private_key: {error}")))?;
        let project = config
            .project_id
            .clone()
            .or(account.project_id)
            .ok_or_else(|| {
                ConfigError::invalid("fcm.project_id", "missing (and not in the key file)")
            })?;
        let token_uri = config.token_uri.clone().unwrap_or(account.token_uri);
        let base = config.base_url.trim_end_matches('/');
        Ok(FcmSender {
            http,
            client_email: account.client_email,
            key,
            token_uri,
            send_url: format!("{base}/v1/projects/{project}/messages:send"),
            ttl,
            token: Mutex::new(None),
        })
    }

    /// Sends `notification` to the registration token.
    pub async fn send(&self, token: &str, preview: bool, notification: &Notification) -> Outcome {
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(outcome) => return outcome,
        };
        let payload = Payload::new(notification, preview);
        let body = message(token, &payload, self.ttl);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.send_url)
            .header(http::header::AUTHORIZATION, format!("Bearer {access}"))
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .body(Full::new(Bytes::from(body.to_string())));
        let request = match request {
            Ok(request) => request,
            Err(error) => return Outcome::failed(format!("FCM send URL: {error}")),
        };
        let response = match self.http.send(request).await {
            Ok(response) => response,
            Err(error) => return Outcome::retry(None, format!("FCM: {error}")),
        };
        if response.status == StatusCode::UNAUTHORIZED {
            // The token was revoked or expired early: fetch a new one next time.
            *self.token.lock().await = None;
        }
        classify(&response)
    }

    /// The cached access token, or a new one. The lock is held while fetching, so concurrent
    /// sends wait for one token request instead of each making their own.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.until
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<AccessToken, Outcome> {
        let now = unix_now();
        let assertion = sign_rs256(
            &self.key,
            &json!({"alg": "RS256", "typ": "JWT"}),
            &json!({
                "iss": self.client_email,
                "scope": SCOPE,
                "aud": self.token_uri,
                "iat": now,
                "exp": now + ASSERTION_LIFETIME_SECS,
            }),
        )
        .map_err(|error| Outcome::failed(format!("signing the OAuth assertion: {error}")))?;
        let form = format!(
            "grant_type={}&assertion={assertion}",
            form_encode(GRANT_TYPE)
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.token_uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|error| Outcome::failed(format!("token_uri: {error}")))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|error| Outcome::retry(None, format!("OAuth token endpoint: {error}")))?;
        if !response.status.is_success() {
            let reason = format!(
                "OAuth token endpoint: {} {}",
                response.status,
                response.snippet()
            );
            tracing::warn!(%reason, "push: FCM access token refused");
            return Err(
                if response.status.is_server_error()
                    || response.status == StatusCode::TOO_MANY_REQUESTS
                {
                    Outcome::retry(response.retry_after(), reason)
                } else {
                    // invalid_grant and friends: the key was revoked or the clock is off.
                    Outcome::failed(reason)
                },
            );
        }
        #[derive(Deserialize)]
        struct Grant {
            access_token: String,
            #[serde(default = "default_expiry")]
            expires_in: u64,
        }
        fn default_expiry() -> u64 {
            3600
        }
        let grant: Grant = serde_json::from_slice(&response.body).map_err(|error| {
            Outcome::failed(format!(
                "OAuth token endpoint answered without a token: {error}"
            ))
        })?;
        let lifetime = Duration::from_secs(grant.expires_in);
        // Short-lived tokens are used for half their life rather than not at all.
        let usable = lifetime.checked_sub(TOKEN_MARGIN).unwrap_or(lifetime / 2);
        Ok(AccessToken {
            value: grant.access_token,
            until: Instant::now() + usable,
        })
    }
}

/// The v1 message: data only, so the app decides what to show; high priority on Android so
/// it wakes a dozing device; for iOS through FCM a background push, or an alert when there is
/// a preview, with the APNs headers FCM passes on.
fn message(token: &str, payload: &Payload, ttl: Duration) -> Value {
    let mut android = json!({"priority": "high", "ttl": format!("{}s", ttl.as_secs())});
    let mut apns_headers = json!({
        "apns-expiration": (unix_now() + ttl.as_secs()).to_string(),
    });
    let alert = payload
        .preview
        .clone()
        .or_else(|| payload.call.then(|| "Incoming call".to_owned()));
    let aps = match &alert {
        Some(text) => {
            apns_headers["apns-push-type"] = json!("alert");
            apns_headers["apns-priority"] = json!("10");
            json!({"alert": {"body": text}, "sound": "default", "thread-id": payload.conversation})
        }
        None => {
            apns_headers["apns-push-type"] = json!("background");
            apns_headers["apns-priority"] = json!("5");
            json!({"content-available": 1})
        }
    };
    if let Some(key) = &payload.collapse_key {
        android["collapse_key"] = json!(key);
        apns_headers["apns-collapse-id"] = json!(crate::apns::collapse_id(key));
    }
    json!({
        "message": {
            "token": token,
            "data": payload.string_map(),
            "android": android,
            "apns": {"headers": apns_headers, "payload": {"aps": aps}},
        }
    })
}

/// Sorts FCM's answer by its documented error codes.
fn classify(response: &Response) -> Outcome {
    if response.status.is_success() {
        return Outcome::Delivered;
    }
    let json = response.json().unwrap_or(Value::Null);
    let error = &json["error"];
    let status = error["status"].as_str().unwrap_or_default();
    let code = error["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|detail| detail["errorCode"].as_str())
        .unwrap_or(status);
    let message = error["message"].as_str().unwrap_or_default();
    let reason = if code.is_empty() {
        format!("{} {}", response.status, response.snippet())
    } else {
        format!("{code}: {message}")
    };
    match (response.status, code) {
        (_, "UNREGISTERED") | (StatusCode::NOT_FOUND, _) => Outcome::invalid(reason),
        // The token belongs to another Firebase project: useless to us.
        (_, "SENDER_ID_MISMATCH") => Outcome::invalid(reason),
        (_, "QUOTA_EXCEEDED") | (StatusCode::TOO_MANY_REQUESTS, _) => {
            Outcome::retry(response.retry_after(), reason)
        }
        (_, "UNAVAILABLE" | "INTERNAL") => Outcome::retry(response.retry_after(), reason),
        (status, _) if status.is_server_error() => Outcome::retry(response.retry_after(), reason),
        // Our token was refused; a new one is fetched for the next try.
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED") => Outcome::retry(None, reason),
        // INVALID_ARGUMENT, THIRD_PARTY_AUTH_ERROR, PERMISSION_DENIED...
        _ => Outcome::failed(reason),
    }
}

/// `application/x-www-form-urlencoded` for the grant type (the assertion is base64url, which
/// needs no escaping).
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_type_is_form_encoded() {
        assert_eq!(
            form_encode(GRANT_TYPE),
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        );
    }

    #[test]
    fn data_only_by_default() {
        let payload = Payload::new(&Notification::new("alice", 5).with_preview("hi"), false);
        let body = message("tok", &payload, Duration::from_secs(60));
        let message = &body["message"];
        assert_eq!(message["token"], "tok");
        assert!(message.get("notification").is_none());
        assert_eq!(
            message["data"],
            json!({"conversation": "alice", "seq": "5", "count": "1"})
        );
        assert_eq!(message["android"]["priority"], "high");
        assert_eq!(message["android"]["ttl"], "60s");
        assert_eq!(message["android"]["collapse_key"], "alice");
        assert_eq!(message["apns"]["headers"]["apns-push-type"], "background");
        assert_eq!(message["apns"]["headers"]["apns-priority"], "5");
        assert_eq!(message["apns"]["payload"]["aps"]["content-available"], 1);
    }
}
