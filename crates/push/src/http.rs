//! The HTTP client under every sender: hyper over rustls (HTTP/1.1 and HTTP/2 by ALPN, or
//! HTTP/2 only for APNs), with a deadline per request and a cap on the bytes read back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::error::ConfigError;
use crate::guard::{self, Resolver};

/// Providers answer with short JSON; anything longer is cut off and not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Which certificates the client trusts.
#[derive(Clone, Debug)]
pub(crate) struct Trust {
    roots: Arc<rustls::RootCertStore>,
}

impl Trust {
    /// The system's roots, plus the PEM certificates in `extra_ca_file` if given.
    pub fn load(extra_ca_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "push: a system root certificate could not be loaded");
        }
        let (_, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::warn!(ignored, "push: system root certificates ignored");
        }
        if let Some(path) = extra_ca_file {
            let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|error| ConfigError::invalid(path, error))?;
                roots
                    .add(cert)
                    .map_err(|error| ConfigError::invalid(path, error))?;
                added += 1;
            }
            if added == 0 {
                return Err(ConfigError::invalid(path, "no PEM certificate in the file"));
            }
        }
        Ok(Trust {
            roots: Arc::new(roots),
        })
    }
}

/// Which protocol versions a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Versions {
    /// HTTP/1.1 or HTTP/2, as ALPN settles; plain `http://` allowed when asked for.
    Any { allow_plain_http: bool },
    /// HTTPS with HTTP/2 only (APNs refuses HTTP/1.1).
    Http2Only,
}

/// Which addresses a client may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Any: URLs the operator configured (FCM, APNs, the token endpoint).
    Anywhere,
    /// Public addresses only, unless the operator allowed private ones: URLs from devices.
    Public { allow_private: bool },
}

/// A response, read whole (up to the cap).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The `Retry-After` header as a delay (seconds or an HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, SystemTime::now())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body as text, for log lines and failure reasons.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(200).collect()
    }
}

/// Why no response came back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("{0}")]
    NotPublic(guard::NotPublic),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
}

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(trust: &Trust, versions: Versions, reach: Reach, timeout: Duration) -> Self {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(trust.roots.clone())
                .with_no_client_auth()
        });
        // The ring provider supports the default versions; an error here is a build defect.
        let tls = match tls {
            Ok(tls) => tls,
            Err(error) => unreachable!("ring supports TLS 1.2 and 1.3: {error}"),
        };
        let allow_private = match reach {
            Reach::Anywhere => true,
            Reach::Public { allow_private } => allow_private,
        };
        let mut tcp = HttpConnector::new_with_resolver(Resolver::new(allow_private));
        // The TLS layer above decides which schemes are allowed.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
        let mut client = Client::builder(TokioExecutor::new());
        client.pool_idle_timeout(Duration::from_secs(90));
        let connector = match versions {
            Versions::Any { allow_plain_http } => {
                let builder = if allow_plain_http {
                    builder.https_or_http()
                } else {
                    builder.https_only()
                };
                builder.enable_http1().enable_http2().wrap_connector(tcp)
            }
            Versions::Http2Only => {
                client.http2_only(true);
                builder.https_only().enable_http2().wrap_connector(tcp)
            }
        };
        HttpClient {
            client: client.build(connector),
            timeout,
        }
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response, TransportError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                if guard::refused(&error) {
                    TransportError::NotPublic(guard::NotPublic)
                } else {
                    TransportError::Request(error_chain(&error))
                }
            })?;
            let (parts, body) = response.into_parts();
            // The status is the answer; a body too long or cut short only loses the detail.
            let body = match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    tracing::debug!(status = %parts.status, %error, "push: response body not read");
                    Bytes::new()
                }
            };
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
    }
}

/// hyper's errors say "client error (Connect)"; the cause below says which.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` is either delta-seconds or an IMF-fixdate (RFC 9110 section 10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let rest = value.split_once(", ")?.1;
    let mut fields = rest.split(' ');
    let day: u64 = fields.next()?.parse().ok()?;
    let month = match fields.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = fields.next()?.parse().ok()?;
    let mut clock = fields.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if fields.next()? != "GMT" || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, now_secs: u64, expected: Option<u64>) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
        assert_eq!(
            parse_retry_after(value, now),
            expected.map(Duration::from_secs),
            "{value}"
        );
    }

    #[test]
    fn retry_after_forms() {
        check("120", 0, Some(120));
        check(" 0 ", 0, Some(0));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        check("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 30, Some(30));
        check("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 + 30, Some(0));
        check("Thu, 01 Jan 1970 00:00:10 GMT", 0, Some(10));
        check("Tue, 29 Feb 2028 12:00:00 GMT", 1_835_438_400 - 5, Some(5));
        check("soon", 0, None);
        check("-5", 0, None);
        check("Sun, 06 Foo 1994 08:49:37 GMT", 0, None);
        check("Sun, 06 Nov 1994 08:49:37 UTC", 0, None);
    }
}
