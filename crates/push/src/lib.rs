//! Push notifications for devices that are not connected: senders that speak each provider's
//! protocol, and a dispatcher that queues, coalesces and retries without ever blocking the
//! caller.
//!
//! # Providers
//!
//! - **FCM HTTP v1** ([`FcmSender`]): the service account's OAuth 2 flow (an RS256 JWT
//!   assertion with `iss`, `scope` = `firebase.messaging`, `aud` = `token_uri`, `iat`, `exp`,
//!   exchanged at `token_uri` for an access token that is cached until five minutes before
//!   it expires), then `POST /v1/projects/{project}/messages:send` with a data-only message,
//!   Android priority high, and the APNs headers FCM passes on to iOS devices.
//! - **APNs** ([`ApnsSender`]): HTTP/2 only, `POST /3/device/{token}` on the production or
//!   sandbox host, authenticated by a provider token (an ES256 JWT with `kid` and `iss` = team
//!   id, signed with the `.p8` key and reused for 40 minutes), with `apns-topic`,
//!   `apns-push-type` (`background`, or `alert` with a preview), `apns-priority` (5 or 10),
//!   `apns-collapse-id` and `apns-expiration`.
//! - **Web Push** ([`WebPushSender`]): RFC 8030 delivery to the subscription's endpoint with
//!   `TTL`, `Urgency` and `Topic` headers; the payload encrypted per RFC 8291 (`aes128gcm`,
//!   RFC 8188: ephemeral P-256 ECDH, HKDF with the subscription's auth secret, one padded
//!   record); the request signed with VAPID (RFC 8292: an ES256 JWT whose `aud` is the
//!   endpoint's origin, `exp` 12 hours ahead, `sub` the operator's contact, sent as
//!   `Authorization: vapid t=…, k=…`).
//! - **UnifiedPush** ([`UnifiedPushSender`]): the JSON payload POSTed to the distributor's
//!   endpoint with a `TTL` header.
//!
//! # What a device receives
//!
//! By default only `{"conversation", "seq", "count"}`: enough for the app to wake up and
//! sync, nothing a push service could read. A device whose user opted in
//! ([`Device::preview`]) also gets `preview`, the message text cut to
//! [`PREVIEW_MAX_CHARS`](payload::PREVIEW_MAX_CHARS) characters.
//!
//! # Outcomes
//!
//! Every send ends in an [`Outcome`]: delivered; the target is invalid and must be deleted
//! (FCM `UNREGISTERED`, APNs 410 and `BadDeviceToken`, 404 and 410 elsewhere); retry later, after the provider's `Retry-After` when it gave one (429,
//! `QUOTA_EXCEEDED`, `UNAVAILABLE`, 5xx, timeouts, refused connections); or failed for good (any other refusal, with the
//! provider's reason).
//!
//! # Dispatcher
//!
//! [`Dispatcher::push`] queues a notification for a device and returns at once (a lock and a
//! few map operations; no network). Workers send in the background:
//!
//! - **Coalescing**: a device's first push leaves at once; notifications arriving within
//!   `coalesce_window_ms` after it are folded into one push that leaves when the window ends,
//!   carrying the newest event and the sum of the counts.
//! - **Bounded queue**: at most `queue_size` devices wait; past that the oldest waiting push
//!   is dropped, counted and logged.
//! - **Retries**: a retryable outcome is tried again after an exponential backoff (from
//!   `initial_backoff_ms`, doubling, with jitter, capped by `max_backoff_ms`) and never before
//!   the provider's `Retry-After`, up to `max_attempts` tries.
//! - **Reports**: [`Stats`] counts enqueued, coalesced, sent, failed, invalid, dropped and
//!   retried pushes; targets found invalid arrive on the [`InvalidTarget`] channel for the
//!   caller to delete.
//!
//! # What the tests verify
//!
//! Each provider is tested against a local HTTPS server (a certificate generated per run,
//! trusted through `extra_ca_file`) that checks requests the way the provider documents them,
//! with an implementation other than the sender's (ring): FCM's token endpoint verifies the
//! RS256 assertion and its claims, its send endpoint the bearer token, path and message
//! schema; the APNs server requires HTTP/2 and verifies the ES256 provider token, `kid`,
//! `iss` and the headers; the Web Push server verifies the VAPID JWT (signature, `aud`, `exp`)
//! and decrypts the body with the subscription's private key to the exact payload. The RFC
//! 8291 Appendix A example is reproduced byte for byte.
//!
//! # Configuration
//!
//! [`PushConfig`] is the `[push]` table of the server's TOML file. Endpoints given by devices
//! must be `https` (UnifiedPush may allow `http` for a distributor on a trusted network) and
//! reach a public address: loopback, private, link-local and other special ranges are
//! refused, as literals and after name resolution, unless `allow_private_endpoints` is set.
//! TLS uses rustls with the system's root certificates plus an optional extra CA file.

mod apns;
mod config;
mod dispatcher;
mod ece;
mod endpoint;
mod error;
mod fcm;
mod guard;
mod http;
mod jwt;
mod model;
pub mod payload;
mod unified_push;
mod web_push;

pub use apns::ApnsSender;
pub use config::{ApnsConfig, FcmConfig, PushConfig, UnifiedPushConfig, WebPushConfig};
pub use dispatcher::{Dispatcher, Enqueued, InvalidTarget, Stats};
pub use error::ConfigError;
pub use fcm::FcmSender;
pub use model::{ApnsEnvironment, Device, Notification, Outcome, Target};
pub use unified_push::UnifiedPushSender;
pub use web_push::WebPushSender;

use crate::http::{HttpClient, Reach, Trust, Versions};

/// The configured senders, one per provider.
#[derive(Debug)]
pub struct Senders {
    fcm: Option<FcmSender>,
    apns: Option<ApnsSender>,
    web_push: Option<WebPushSender>,
    unified_push: Option<UnifiedPushSender>,
}

impl Senders {
    /// Builds the senders the configuration enables, reading their credential files.
    pub fn from_config(config: &PushConfig) -> Result<Self, ConfigError> {
        let trust = Trust::load(config.extra_ca_file.as_deref())?;
        let timeout = config.request_timeout();
        // Operator-configured URLs may be anywhere; device-registered endpoints must be
        // public unless the operator allowed private addresses.
        let operator = HttpClient::new(
            &trust,
            Versions::Any {
                allow_plain_http: false,
            },
            Reach::Anywhere,
            timeout,
        );
        let devices = Reach::Public {
            allow_private: config.allow_private_endpoints,
        };
        let fcm = match &config.fcm {
            Some(fcm) => Some(FcmSender::new(fcm, operator, config.ttl())?),
            None => None,
        };
        let apns = match &config.apns {
            Some(apns) => {
                let http = HttpClient::new(&trust, Versions::Http2Only, Reach::Anywhere, timeout);
                Some(ApnsSender::new(apns, http, config.ttl())?)
            }
            None => None,
        };
        let web_push = match &config.web_push {
            Some(web) => {
                let versions = Versions::Any {
                    allow_plain_http: false,
                };
                let http = HttpClient::new(&trust, versions, devices, timeout);
                Some(WebPushSender::new(web, http, config)?)
            }
            None => None,
        };
        let unified_push = config.unified_push.enabled.then(|| {
            let versions = Versions::Any {
                allow_plain_http: config.unified_push.allow_plain_http,
            };
            let http = HttpClient::new(&trust, versions, devices, timeout);
            UnifiedPushSender::new(http, config)
        });
        Ok(Senders {
            fcm,
            apns,
            web_push,
            unified_push,
        })
    }

    /// The Web Push sender, if configured (its public key is what web apps subscribe with).
    pub fn web_push(&self) -> Option<&WebPushSender> {
        self.web_push.as_ref()
    }

    /// Sends one notification to one target through its provider.
    pub async fn send(
        &self,
        target: &Target,
        preview: bool,
        notification: &Notification,
    ) -> Outcome {
        match target {
            Target::WebPush {
                endpoint,
                p256dh,
                auth,
            } => match &self.web_push {
                Some(sender) => {
                    sender
                        .send(endpoint, p256dh, auth, preview, notification)
                        .await
                }
                None => not_configured("Web Push"),
            },
            Target::UnifiedPush { endpoint } => match &self.unified_push {
                Some(sender) => sender.send(endpoint, preview, notification).await,
                None => not_configured("UnifiedPush"),
            },
            Target::Fcm { token } => match &self.fcm {
                Some(sender) => sender.send(token, preview, notification).await,
                None => not_configured("FCM"),
            },
            Target::Apns {
                token,
                topic,
                environment,
            } => match &self.apns {
                Some(sender) => {
                    let topic = topic.as_deref();
                    sender
                        .send(token, topic, *environment, preview, notification)
                        .await
                }
                None => not_configured("APNs"),
            },
        }
    }
}

fn not_configured(provider: &str) -> Outcome {
    Outcome::failed(format!("{provider} is not configured on this server"))
}
