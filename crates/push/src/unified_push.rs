//! UnifiedPush: the payload POSTed as is to the endpoint the device's distributor gave it.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::config::PushConfig;
use crate::endpoint::{self, Endpoint};
use crate::http::HttpClient;
use crate::model::{Notification, Outcome};
use crate::payload::Payload;

/// Sends to UnifiedPush endpoints.
#[derive(Debug)]
pub struct UnifiedPushSender {
    http: HttpClient,
    allow_plain_http: bool,
    allow_private: bool,
    ttl: Duration,
}

impl UnifiedPushSender {
    pub(crate) fn new(http: HttpClient, config: &PushConfig) -> Self {
        UnifiedPushSender {
            http,
            allow_plain_http: config.unified_push.allow_plain_http,
            allow_private: config.allow_private_endpoints,
            ttl: config.ttl(),
        }
    }

    /// Sends `notification` to `endpoint`.
    pub async fn send(
        &self,
        endpoint: &str,
        preview: bool,
        notification: &Notification,
    ) -> Outcome {
        let endpoint = match Endpoint::parse(endpoint, self.allow_plain_http, self.allow_private) {
            Ok(endpoint) => endpoint,
            // A device registered a URL we will never send to: drop it.
            Err(reason) => return Outcome::invalid(reason),
        };
        let payload = Payload::new(notification, preview);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(endpoint.uri)
            .header("ttl", self.ttl.as_secs().to_string())
            .header(
                "urgency",
                if payload.preview.is_some() {
                    "high"
                } else {
                    "normal"
                },
            )
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &payload.collapse_key {
            request = request.header("topic", endpoint::topic(key));
        }
        match request.body(Full::new(Bytes::from(payload.body()))) {
            Ok(request) => endpoint::deliver(&self.http, request).await,
            Err(error) => Outcome::failed(format!("request: {error}")),
        }
    }
}
