//! Push-service endpoints given by devices (Web Push, UnifiedPush): checked before use, and
//! their answers sorted the same way (RFC 8030 section 5 and 8).

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;

use crate::http::{HttpClient, Response, TransportError};
use crate::model::Outcome;

/// A URL a device registered, parsed. Devices choose these, so only absolute `https` URLs (or
/// `http` where the operator allowed it) with a host are used.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub uri: Uri,
}

impl Endpoint {
    pub fn parse(text: &str, allow_plain_http: bool, allow_private: bool) -> Result<Self, String> {
        let uri: Uri = text
            .parse()
            .map_err(|error| format!("endpoint is not a URL: {error}"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if allow_plain_http => {}
            Some(other) => return Err(format!("endpoint scheme {other} is not allowed")),
            None => return Err("endpoint is not an absolute URL".into()),
        }
        let host = uri.host().unwrap_or_default();
        if host.is_empty() {
            return Err("endpoint has no host".into());
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("endpoint carries user information".into());
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<std::net::IpAddr>()
            && !allow_private
            && !crate::guard::is_public(ip)
        {
            return Err(format!("endpoint address {ip} is not public"));
        }
        Ok(Endpoint { uri })
    }

    /// The origin (`https://host[:port]`), VAPID's audience. The default port is left out,
    /// as browsers serialise origins.
    pub fn origin(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or("https");
        let host = self.uri.host().unwrap_or_default();
        match self.uri.port_u16() {
            Some(443) if scheme == "https" => format!("{scheme}://{host}"),
            Some(80) if scheme == "http" => format!("{scheme}://{host}"),
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    }
}

/// Sends one push message and sorts the answer.
pub(crate) async fn deliver(http: &HttpClient, request: Request<Full<Bytes>>) -> Outcome {
    match http.send(request).await {
        Ok(response) => classify(&response),
        Err(error @ TransportError::NotPublic(_)) => Outcome::invalid(error.to_string()),
        Err(error) => Outcome::retry(None, error.to_string()),
    }
}

/// RFC 8030: 201 Created is success; 404 and 410 mean the subscription is gone; 429 asks to
/// slow down; 5xx are the service's trouble; any other 4xx is a request it will never take.
fn classify(response: &Response) -> Outcome {
    let status = response.status;
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reason = format!("{status} {}", response.snippet());
    match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => Outcome::invalid(reason),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
            Outcome::retry(response.retry_after(), reason)
        }
        status if status.is_server_error() => Outcome::retry(response.retry_after(), reason),
        _ => Outcome::failed(reason),
    }
}

/// RFC 8030 section 5.4: a `Topic` is at most 32 characters of the base64url alphabet. Longer
/// or other keys are hashed into that form, so equal keys still replace each other.
pub(crate) fn topic(collapse_key: &str) -> String {
    let fits = collapse_key.len() <= 32
        && !collapse_key.is_empty()
        && collapse_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        return collapse_key.to_owned();
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(collapse_key.as_bytes());
    let mut text = crate::jwt::b64url(&digest);
    text.truncate(32);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let origin =
            |text: &str, plain: bool| Endpoint::parse(text, plain, true).map(|e| e.origin());
        assert_eq!(
            origin("https://push.example.net/wpush/v2/abc", false),
            Ok("https://push.example.net".into())
        );
        assert_eq!(
            origin("https://push.example.net:443/x", false),
            Ok("https://push.example.net".into())
        );
        assert_eq!(
            origin("https://127.0.0.1:8443/x", false),
            Ok("https://127.0.0.1:8443".into())
        );
        assert_eq!(
            origin("http://ntfy.lan/up123", true),
            Ok("http://ntfy.lan".into())
        );
        assert!(origin("http://ntfy.lan/up123", false).is_err());
        assert!(origin("file:///etc/passwd", true).is_err());
        assert!(origin("/relative", true).is_err());
        assert!(origin("https://user:pw@host/x", true).is_err());
        assert!(origin("not a url", true).is_err());
        let public = |text: &str| Endpoint::parse(text, false, false).is_ok();
        assert!(public("https://push.example.net/x"));
        assert!(public("https://8.8.8.8/x"));
        assert!(!public("https://127.0.0.1:8443/x"));
        assert!(!public("https://[::1]/x"));
        assert!(!public("https://169.254.169.254/latest"));
        assert!(!public("https://10.0.0.7/x"));
    }

    #[test]
    fn topics() {
        assert_eq!(topic("alice"), "alice");
        assert_eq!(topic("g:team").len(), 32);
        assert_eq!(topic("g:team"), topic("g:team"));
        assert_ne!(topic("g:team"), topic("g:other"));
        assert_eq!(topic(&"x".repeat(40)).len(), 32);
    }
}
