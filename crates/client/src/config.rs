//! Connection settings: where the broker is, which device connects, and how the SDK behaves.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mqchat_proto::body::{Availability, Presence};
use mqchat_proto::{DeviceId, DeviceIdentity, MessageId, Registry, TopicRoot, UserId};

use crate::error::Error;
use crate::state::SyncState;

/// Where the broker listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// MQTT over TCP (`mqtt://host:port`), or over TLS (`mqtts://host:port`).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// TLS, the server's certificate checked for `host`.
        tls: bool,
    },
    /// MQTT over WebSocket (`ws://host:port/path`), or over TLS (`wss://...`); the URL is
    /// kept whole for the handshake.
    WebSocket {
        /// The URL.
        url: String,
        /// TLS, the server's certificate checked for the URL's host.
        tls: bool,
    },
}

impl Endpoint {
    /// Parses `mqtt://host[:port]` (or `tcp://`; port 1883 by default),
    /// `mqtts://host[:port]` (or `ssl://`; TLS, port 8883 by default),
    /// `ws://host[:port][/path]` (port 80 by default) or `wss://host[:port][/path]` (TLS,
    /// port 443 by default).
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::invalid(format!("broker URL {url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected mqtt://host:port or ws://host:port/path"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials go in the configuration, not the URL"));
        }
        let (default_port, tls) = match scheme {
            "mqtt" | "tcp" => (1883, false),
            "mqtts" | "ssl" => (8883, true),
            "ws" => (80, false),
            "wss" => (443, true),
            _ => return Err(bad("the scheme must be mqtt, mqtts, ws or wss")),
        };
        // Checked for WebSocket URLs too, though the handshake reads them from the URL.
        let (host, port) =
            split_host_port(authority, default_port).ok_or_else(|| bad("bad host or port"))?;
        if scheme.starts_with("ws") {
            let path = if path.is_empty() { "/" } else { path };
            return Ok(Self::WebSocket {
                url: format!("{scheme}://{authority}{path}"),
                tls,
            });
        }
        if !path.is_empty() && path != "/" {
            return Err(bad("an mqtt URL has no path"));
        }
        Ok(Self::Tcp { host, port, tls })
    }
}

/// Splits `host[:port]`, where the host may be a bracketed IPv6 address.
fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => default_port,
    };
    Some((host.to_owned(), port))
}

/// How to connect, and how the client behaves once connected.
///
/// Made with [`ClientConfig::new`] and adjusted with the builder-style setters, each of which
/// documents its default.
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) identity: DeviceIdentity,
    pub(crate) password: String,
    pub(crate) root: TopicRoot,
    pub(crate) keep_alive: Duration,
    pub(crate) session_expiry: Duration,
    pub(crate) clean_start: bool,
    pub(crate) registry: Registry,
    pub(crate) auto_delivered: bool,
    pub(crate) delivered_delay: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) presence: Presence,
    pub(crate) catch_up: bool,
    pub(crate) max_packet_size: u32,
    pub(crate) ids_after: Option<MessageId>,
    pub(crate) resume: Option<SyncState>,
    pub(crate) sip_domain: String,
    pub(crate) ca_file: Option<PathBuf>,
}

impl ClientConfig {
    /// Settings for the device `device` of `user`, logging in with `password` (or a device
    /// token) to the broker at `url`: `mqtt://host:port` for MQTT over TCP,
    /// `ws://host:port/path` for MQTT over WebSocket, and `mqtts://host:port` or
    /// `wss://host:port/path` for the same over TLS (1.2 or 1.3; the server's certificate
    /// must be valid for the URL's host and chain to a trusted root, see
    /// [`ClientConfig::ca_file`]).
    pub fn new(
        url: &str,
        user: UserId,
        device: DeviceId,
        password: impl Into<String>,
    ) -> Result<Self, Error> {
        Ok(Self {
            endpoint: Endpoint::parse(url)?,
            identity: DeviceIdentity::new(user, device),
            password: password.into(),
            root: TopicRoot::default(),
            keep_alive: Duration::from_secs(60),
            session_expiry: Duration::from_secs(7 * 24 * 3600),
            clean_start: false,
            registry: Registry::with_core(),
            auto_delivered: true,
            delivered_delay: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            presence: Presence::new(Availability::Available),
            catch_up: true,
            max_packet_size: 16 * 1024 * 1024,
            ids_after: None,
            resume: None,
            sip_domain: "localhost".into(),
            ca_file: None,
        })
    }

    /// For `mqtts://` and `wss://`: trust only the CA certificates in this PEM file (a
    /// private CA, a test CA). Default: the system's root certificates. Read when the
    /// client connects.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The topic root the server is configured with. Default `mq`.
    pub fn root(mut self, root: TopicRoot) -> Self {
        self.root = root;
        self
    }

    /// The MQTT keep-alive, 5 s to 18 h. Default 60 s (the spec suggests up to 300 s on
    /// mobile devices).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// How long the broker keeps the device's session after it disconnects. Default seven
    /// days.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// Start with a fresh broker session on the first connection (a device with no storage
    /// at all). Default `false`: the broker keeps subscriptions and queues messages while
    /// the device is away.
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    /// The packet types the client knows. Default [`Registry::with_core`]; register
    /// extension providers into it to have their packets checked (they arrive as
    /// [`Event::Other`](crate::Event::Other)).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Send a cumulative `delivered` marker after receiving events from others, once a
    /// burst is over. Default `true`.
    pub fn auto_delivered(mut self, auto: bool) -> Self {
        self.auto_delivered = auto;
        self
    }

    /// How long automatic `delivered` markers wait to cover a burst. Default 200 ms.
    pub fn delivered_delay(mut self, delay: Duration) -> Self {
        self.delivered_delay = delay;
        self
    }

    /// How long requests (history, sync, profile changes) wait for the hub's answer.
    /// Default 10 s. Sent events wait for their confirmation for as long as the client
    /// lives; wrap the call in a timeout to wait less.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long the first connection may take before `connect` fails. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The delays between reconnect attempts: from `min`, doubling up to `max`, with
    /// jitter. Default 500 ms to 30 s.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// The presence published on every connection until `set_presence` changes it.
    /// Default `available`.
    pub fn presence(mut self, presence: crate::Presence) -> Self {
        self.presence = presence.into();
        self
    }

    /// After a reconnect, ask the hub what changed while the device was away and fetch the
    /// missing events (spec section 13), rather than trusting the broker's queue. Default
    /// `true`.
    pub fn catch_up(mut self, catch_up: bool) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// The largest MQTT packet the client accepts (and tells the broker so). Default 16 MiB,
    /// enough for a full page of history.
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.max_packet_size = bytes;
        self
    }

    /// Makes message ids greater than `last`, the last id this device used (kept by the
    /// application across restarts, e.g. from [`Sent::id`](crate::Sent::id)). The hub takes
    /// a repeated id from the same device for a resend, so ids must never go back, even if
    /// the device's clock does. Default: ids from the clock alone.
    pub fn ids_after(mut self, last: MessageId) -> Self {
        self.ids_after = Some(last);
        self
    }

    /// Continues from where the device stood when it last ran ([`Client::close`] returns it,
    /// [`Client::sync_state`] reads it): the first connection catches up from there (spec
    /// section 13), so nothing the device missed meanwhile is lost, even what the broker
    /// did not keep, and nothing it had is delivered again. Also makes message ids greater
    /// than the last one it used. Default: a device that knows nothing, whose first
    /// connection is its starting point.
    ///
    /// [`Client::close`]: crate::Client::close
    /// [`Client::sync_state`]: crate::Client::sync_state
    pub fn resume(mut self, state: SyncState) -> Self {
        self.resume = Some(state);
        self
    }

    /// The server's SIP domain (its `[sip] domain`, spec 7.14): this user is
    /// `sip:{user}@{domain}` in calls, and a call to a bare user id goes to
    /// `sip:{id}@{domain}`. Default `localhost`, the server's default.
    pub fn sip_domain(mut self, domain: impl Into<String>) -> Self {
        self.sip_domain = domain.into();
        self
    }

    /// Checks the settings that cannot be checked as they are set.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let keep_alive = self.keep_alive.as_secs();
        if !(5..=u64::from(u16::MAX)).contains(&keep_alive) {
            return Err(Error::invalid("keep-alive must be 5 s to 65535 s"));
        }
        if self.backoff_min.is_zero() {
            return Err(Error::invalid(
                "the reconnect backoff minimum must be above zero",
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid("timeouts must be above zero"));
        }
        let domain_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if self.sip_domain.is_empty()
            || !self.sip_domain.chars().all(domain_ok)
            || mqchat_sip::Uri::parse(&format!("sip:{}", self.sip_domain)).is_err()
        {
            return Err(Error::invalid(format!(
                "the SIP domain {:?} is not a host name",
                self.sip_domain
            )));
        }
        if self.max_packet_size < 1024 {
            return Err(Error::invalid(
                "the maximum packet size must be at least 1 KiB",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("identity", &self.identity)
            .field("password", &"<hidden>")
            .field("root", &self.root)
            .field("keep_alive", &self.keep_alive)
            .field("session_expiry", &self.session_expiry)
            .field("clean_start", &self.clean_start)
            .field("registry", &self.registry)
            .field("auto_delivered", &self.auto_delivered)
            .field("request_timeout", &self.request_timeout)
            .field("catch_up", &self.catch_up)
            .field("sip_domain", &self.sip_domain)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Result<Endpoint, String> {
        Ok(Endpoint::Tcp {
            host: host.into(),
            port,
            tls: false,
        })
    }

    fn tls(host: &str, port: u16) -> Result<Endpoint, String> {
        Ok(Endpoint::Tcp {
            host: host.into(),
            port,
            tls: true,
        })
    }

    fn ws(url: &str) -> Result<Endpoint, String> {
        Ok(Endpoint::WebSocket {
            url: url.into(),
            tls: url.starts_with("wss:"),
        })
    }

    fn check(url: &str, expected: Result<Endpoint, String>) {
        let got = Endpoint::parse(url).map_err(|e| e.to_string());
        match expected {
            Ok(endpoint) => assert_eq!(got, Ok(endpoint), "{url}"),
            Err(fragment) => {
                let err = got.expect_err(url);
                assert!(err.contains(&fragment), "{url}: {err}");
            }
        }
    }

    #[test]
    fn urls() {
        check("mqtt://127.0.0.1:1883", tcp("127.0.0.1", 1883));
        check("mqtt://example.org", tcp("example.org", 1883));
        check("tcp://example.org:9/", tcp("example.org", 9));
        check("mqtt://[::1]:1884", tcp("::1", 1884));
        check("ws://127.0.0.1:8080/mqtt", ws("ws://127.0.0.1:8080/mqtt"));
        check("ws://example.org", ws("ws://example.org/"));
        check("ws://[::1]:80/x?y=1", ws("ws://[::1]:80/x?y=1"));
        check("mqtts://example.org", tls("example.org", 8883));
        check("ssl://127.0.0.1:9", tls("127.0.0.1", 9));
        check("wss://example.org", ws("wss://example.org/"));
        check(
            "wss://example.org:8084/mqtt",
            ws("wss://example.org:8084/mqtt"),
        );
        check("mqtts://example.org/x", Err("no path".into()));
        check("http://example.org", Err("scheme".into()));
        check("example.org:1883", Err("expected".into()));
        check("mqtt://:1883", Err("bad host".into()));
        check("mqtt://host:0", Err("bad host".into()));
        check("mqtt://host:x", Err("bad host".into()));
        check("mqtt://u:p@host", Err("credentials".into()));
        check("mqtt://host/path", Err("no path".into()));
    }

    #[test]
    fn validation() {
        let user = UserId::parse("alice").expect("valid");
        let device = DeviceId::parse("phone").expect("valid");
        let config = ClientConfig::new("mqtt://h", user, device, "pw").expect("valid");
        assert!(config.validate().is_ok());
        assert!(
            config
                .clone()
                .keep_alive(Duration::from_secs(1))
                .validate()
                .is_err()
        );
        assert!(
            config
                .clone()
                .request_timeout(Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(!format!("{config:?}").contains("pw"));
    }
}
