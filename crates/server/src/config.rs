//! Server settings: what `mqchat serve` reads from its TOML file, environment and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything `mqchat serve` can be told. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// The topic root.
    pub root: String,
    /// MQTT over TCP for devices; empty to disable.
    pub listen_tcp: Option<SocketAddr>,
    /// MQTT over WebSocket for devices; empty to disable.
    pub listen_ws: Option<SocketAddr>,
    /// MQTT over TLS for devices (`mqtts://`, 8883 by convention); absent or `off`: none.
    /// Needs `[tls] cert` and `key`.
    #[serde(deserialize_with = "address_or_off")]
    pub listen_tls: Option<SocketAddr>,
    /// MQTT over WebSocket over TLS for devices (`wss://`); absent or `off`: none. Needs
    /// `[tls] cert` and `key`.
    #[serde(deserialize_with = "address_or_off")]
    pub listen_wss: Option<SocketAddr>,
    /// `[tls]`: the certificate of the TLS listeners, and how often its files are checked.
    pub tls: crate::tls::TlsConfig,
    /// The largest upstream payload the hub accepts, in bytes.
    pub max_payload: usize,
    /// Messages the broker queues for one offline session.
    pub max_queue: usize,
    /// How long the broker keeps a disconnected device's session, in seconds.
    pub session_expiry_secs: u64,
    /// `full` (every commit synced to disk) or `normal` (survives a process crash only).
    #[serde(deserialize_with = "durability")]
    pub durability: Durability,
    /// The most members (and invited users) of one group.
    pub max_group_members: usize,
    /// Archive retention: remove events older than this many days (absent: keep).
    pub retention_days: Option<u64>,
    /// Archive retention: keep at most this many of the newest events per conversation
    /// (absent: keep all).
    pub retention_max_events: Option<u64>,
    /// How often the hub applies retention, in seconds (also once at start).
    pub retention_interval_secs: u64,
    /// Push notifications (`[push]`): providers, credentials, queue and coalescing.
    pub push: mqchat_push::PushConfig,
    /// SIP (`[sip]`): the hub's SIP proxy and its gateway to SIP peers.
    pub sip: SipConfig,
    /// Limits that keep one client from harming others (`[limits]`).
    pub limits: Limits,
}

/// The SIP gateway's vocabulary, read here from `[sip]`.
pub use mqchat_gateway::{SipPeer, SipTransport, parse_ip_block, parse_sip_target};
pub use mqchat_store::Durability;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("mqchat-data"),
            root: mqchat_proto::TopicRoot::DEFAULT.to_owned(),
            listen_tcp: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            listen_ws: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            listen_tls: None,
            listen_wss: None,
            tls: crate::tls::TlsConfig::default(),
            max_payload: 65_536,
            max_queue: 1000,
            session_expiry_secs: 7 * 24 * 3600,
            durability: Durability::Full,
            max_group_members: 1000,
            retention_days: None,
            retention_max_events: None,
            retention_interval_secs: 3600,
            push: mqchat_push::PushConfig::default(),
            sip: SipConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; keys not given keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, toml_error::Error> {
        toml_error::parse(text)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("mqchat.db")
    }

    /// The archive retention policy these settings ask for.
    pub fn retention(&self) -> Result<mqchat_store::RetentionPolicy, String> {
        retention_policy(
            self.retention_days,
            self.retention_max_events,
            self.retention_interval_secs,
        )
    }
}

/// Everything `mqchat hub` (the hub as its own process, against an external broker) can be
/// told. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubProcessConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// The topic root.
    pub root: String,
    /// The broker, `mqtt://host:port` (port 1883 when absent) or `mqtts://host:port` (TLS,
    /// port 8883 when absent).
    pub broker: String,
    /// The CA certificates (PEM) a `mqtts://` broker's certificate must chain to; absent:
    /// the system's roots.
    pub broker_ca_file: Option<PathBuf>,
    /// The hub's MQTT username at the broker (must start with `_`, which no user id can).
    pub broker_username: String,
    /// The hub's MQTT password. When neither this nor `broker_password_file` is set, the hub
    /// makes up a random one at each start: enough when the broker asks this hub's HTTP
    /// endpoint, not for a broker with a password file.
    pub broker_password: Option<String>,
    /// A file whose first line is the hub's MQTT password (kept out of the main file).
    pub broker_password_file: Option<PathBuf>,
    /// The hub's MQTT client id; must start with `broker_username`. Give each hub of a
    /// cluster its own.
    pub client_id: String,
    /// Consume the upstream topics through `$share/mqchat/...` (several hubs can share the
    /// load); `false` for a broker without shared subscriptions.
    pub shared_subscription: bool,
    /// How long the broker keeps the hub's session (and the upstream packets waiting for
    /// it) while the hub is away, in seconds.
    pub broker_session_expiry_secs: u32,
    /// The HTTP endpoint brokers ask for authentication and authorization; `"off"` (or
    /// `""`) in TOML disables it.
    #[serde(deserialize_with = "address_or_off")]
    pub http_listen: Option<SocketAddr>,
    /// `[tls]`: with a certificate, the HTTP endpoint speaks HTTPS.
    pub tls: crate::tls::TlsConfig,
    /// The largest upstream payload the hub accepts, in bytes.
    pub max_payload: usize,
    /// `full` (every commit synced to disk) or `normal` (survives a process crash only).
    #[serde(deserialize_with = "durability")]
    pub durability: Durability,
    /// The most members (and invited users) of one group.
    pub max_group_members: usize,
    /// Archive retention, as for `serve`: remove events older than this many days.
    pub retention_days: Option<u64>,
    /// Archive retention, as for `serve`: keep at most this many events per conversation.
    pub retention_max_events: Option<u64>,
    /// How often retention runs, in seconds (also once at start).
    pub retention_interval_secs: u64,
    /// Push notifications (`[push]`), as for `mqchat serve`.
    pub push: mqchat_push::PushConfig,
    /// SIP (`[sip]`), as for `mqchat serve`.
    pub sip: SipConfig,
    /// Limits (`[limits]`), as for `mqchat serve` (the broker's own limits, such as the
    /// CONNECT timeout, are the external broker's to set).
    pub limits: Limits,
}

impl Default for HubProcessConfig {
    fn default() -> Self {
        let server = ServerConfig::default();
        Self {
            data_dir: server.data_dir,
            root: server.root,
            broker: "mqtt://127.0.0.1:1883".to_owned(),
            broker_ca_file: None,
            broker_username: "_hub".to_owned(),
            broker_password: None,
            broker_password_file: None,
            client_id: "_hub-1".to_owned(),
            shared_subscription: true,
            broker_session_expiry_secs: 24 * 3600,
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8090))),
            tls: crate::tls::TlsConfig::default(),
            max_payload: server.max_payload,
            durability: server.durability,
            max_group_members: server.max_group_members,
            retention_days: server.retention_days,
            retention_max_events: server.retention_max_events,
            retention_interval_secs: server.retention_interval_secs,
            push: server.push,
            sip: server.sip,
            limits: server.limits,
        }
    }
}

impl HubProcessConfig {
    /// Reads a TOML file; keys not given keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, toml_error::Error> {
        toml_error::parse(text)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("mqchat.db")
    }

    /// The archive retention policy these settings ask for.
    pub fn retention(&self) -> Result<mqchat_store::RetentionPolicy, String> {
        retention_policy(
            self.retention_days,
            self.retention_max_events,
            self.retention_interval_secs,
        )
    }

    /// The broker's host and port, and whether it speaks TLS, from `broker`.
    pub fn broker_address(&self) -> Result<BrokerUrl, String> {
        parse_broker_url(&self.broker)
    }
}

/// Limits that keep one client, or someone without an account, from harming others
/// (`[limits]`). The defaults are far above what a person or an app does; each refusal
/// is logged and, where the protocol has one, answered with an error.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Seconds a new connection has to complete its CONNECT (and TLS or WebSocket
    /// handshake) before it is closed.
    pub connect_timeout_secs: u64,
    /// Threads that verify passwords (argon2id, 19 MiB each while hashing).
    pub login_workers: usize,
    /// Password checks one address may have queued or running; beyond, refused as busy.
    pub login_queue_per_address: usize,
    /// Failed logins from one address after which its attempts wait (the wait doubles
    /// with each further failure).
    pub login_failures_per_address: u32,
    /// Failed logins on one user after which password attempts on it wait.
    pub login_failures_per_user: u32,
    /// The first wait after too many failures, in milliseconds.
    pub login_first_delay_ms: u64,
    /// The longest wait, in seconds.
    pub login_max_delay_secs: u64,
    /// Devices (not revoked) one user may have; a login with a new device id beyond it is
    /// refused (MQTT 5: CONNACK "quota exceeded").
    pub max_devices_per_user: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// The largest presence payload (retained by the broker), in bytes.
    pub max_presence_bytes: usize,
    /// Upstream packets one device may send per second, sustained.
    pub device_packets_per_sec: u32,
    /// Upstream packets one device may send at once (the bucket's size).
    pub device_packets_burst: u32,
    /// Upstream packets all devices of one user may send per second, sustained.
    pub user_packets_per_sec: u32,
    /// Upstream packets all devices of one user may send at once.
    pub user_packets_burst: u32,
    /// Contact requests one user may send per hour.
    pub contact_requests_per_hour: u32,
    /// Group invitations one user may send per hour (a group created with 10 invitations
    /// counts 10).
    pub group_invitations_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let logins = crate::login::LoginConfig::default();
        let throttle = mqchat_hub::throttle::ThrottleConfig::default();
        let rates = mqchat_hub::RateConfig::default();
        Self {
            connect_timeout_secs: 10,
            login_workers: logins.workers,
            login_queue_per_address: logins.queue_per_source,
            login_failures_per_address: throttle.source_failures,
            login_failures_per_user: throttle.user_failures,
            login_first_delay_ms: throttle.first_delay_ms,
            login_max_delay_secs: throttle.max_delay_ms / 1000,
            max_devices_per_user: mqchat_hub::LoginLimits::default().max_devices,
            max_subscriptions: 5_000,
            max_presence_bytes: 4_096,
            device_packets_per_sec: rates.device_per_sec,
            device_packets_burst: rates.device_burst,
            user_packets_per_sec: rates.user_per_sec,
            user_packets_burst: rates.user_burst,
            contact_requests_per_hour: rates.contact_requests_per_hour,
            group_invitations_per_hour: rates.group_invitations_per_hour,
        }
    }
}

impl Limits {
    /// The gate's login limits.
    pub fn logins(&self) -> mqchat_hub::LoginLimits {
        mqchat_hub::LoginLimits {
            throttle: mqchat_hub::throttle::ThrottleConfig {
                source_failures: self.login_failures_per_address.max(1),
                user_failures: self.login_failures_per_user.max(1),
                first_delay_ms: self.login_first_delay_ms,
                max_delay_ms: self.login_max_delay_secs.saturating_mul(1000),
                ..mqchat_hub::throttle::ThrottleConfig::default()
            },
            max_devices: self.max_devices_per_user,
        }
    }

    /// The password pool's settings.
    pub(crate) fn login_pool(&self) -> crate::login::LoginConfig {
        crate::login::LoginConfig {
            workers: self.login_workers.max(1),
            queue_per_source: self.login_queue_per_address.max(1),
        }
    }

    /// The hub's rate limits.
    pub fn rates(&self) -> mqchat_hub::RateConfig {
        mqchat_hub::RateConfig {
            device_per_sec: self.device_packets_per_sec,
            device_burst: self.device_packets_burst,
            user_per_sec: self.user_packets_per_sec,
            user_burst: self.user_packets_burst,
            contact_requests_per_hour: self.contact_requests_per_hour,
            group_invitations_per_hour: self.group_invitations_per_hour,
        }
    }
}

/// SIP settings (`[sip]`, spec section 19): the hub's SIP domain and its gateway to SIP
/// peers over UDP and TCP.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Turns the SIP proxy and the gateway on.
    pub enabled: bool,
    /// The SIP domain of the hub's users (`sip:bob@{domain}`).
    pub domain: String,
    /// The gateway's name, a level of its topics `{root}/gw/{name}/in|out`.
    pub gateway_name: String,
    /// The gateway's UDP listener (port 0: any free port), or `off`.
    #[serde(deserialize_with = "address_or_off")]
    pub listen_udp: Option<SocketAddr>,
    /// The gateway's TCP listener (port 0: any free port), or `off`.
    #[serde(deserialize_with = "address_or_off")]
    pub listen_tcp: Option<SocketAddr>,
    /// How long an incoming call rings before it is given up (480, missed), in seconds.
    pub ring_timeout_secs: u64,
    /// The gateway's RFC 3261 timer T1 (round-trip estimate), in milliseconds.
    pub t1_ms: u64,
    /// Timer T2 (longest retransmission interval), in milliseconds.
    pub t2_ms: u64,
    /// Timer T4 (longest time a message lives in the network), in milliseconds.
    pub t4_ms: u64,
    /// The SIP peers allowed to use the gateway (`[[sip.peers]]`).
    pub peers: Vec<SipPeer>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            domain: "localhost".to_owned(),
            gateway_name: "sip".to_owned(),
            listen_udp: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
            listen_tcp: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
            ring_timeout_secs: 60,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            peers: Vec::new(),
        }
    }
}

impl SipConfig {
    /// The hub's SIP proxy settings, when SIP is enabled (the configuration is valid).
    pub fn hub(&self) -> Option<mqchat_hub::SipConfig> {
        if !self.enabled {
            return None;
        }
        let peers = self
            .peers
            .iter()
            .filter_map(|peer| {
                Some(mqchat_hub::SipPeerRoute {
                    name: peer.name.clone(),
                    domains: peer
                        .domains
                        .iter()
                        .map(|d| d.to_ascii_lowercase())
                        .collect(),
                    outbound: peer.outbound.clone()?,
                })
            })
            .collect();
        Some(mqchat_hub::SipConfig {
            domain: self.domain.to_ascii_lowercase(),
            gateway: mqchat_proto::GatewayName::parse(&self.gateway_name).ok(),
            ring_timeout_ms: self.ring_timeout_secs.saturating_mul(1000),
            peers,
        })
    }

    /// Checks the settings the gateway relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.domain.is_empty() {
            return Err("sip.domain must not be empty".into());
        }
        mqchat_proto::GatewayName::parse(&self.gateway_name)
            .map_err(|e| format!("sip.gateway_name: {e}"))?;
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms || self.t4_ms == 0 {
            return Err(
                "sip timers: t1_ms and t4_ms must be positive, t2_ms at least t1_ms".into(),
            );
        }
        if self.ring_timeout_secs == 0 {
            return Err("sip.ring_timeout_secs must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for peer in &self.peers {
            if peer.name.is_empty() || peer.name.len() > 64 {
                return Err("sip.peers: every peer needs a name of 1 to 64 bytes".into());
            }
            if !names.insert(peer.name.as_str()) {
                return Err(format!("sip.peers: the name {:?} is used twice", peer.name));
            }
            for address in &peer.addresses {
                parse_ip_block(address).map_err(|e| format!("sip peer {}: {e}", peer.name))?;
            }
            if peer.username.is_some() != peer.password.is_some() {
                return Err(format!(
                    "sip peer {}: give both username and password, or neither",
                    peer.name
                ));
            }
            if peer.addresses.is_empty() && peer.username.is_none() {
                return Err(format!(
                    "sip peer {}: give addresses, credentials, or both",
                    peer.name
                ));
            }
            if let Some(outbound) = &peer.outbound {
                parse_sip_target(outbound).map_err(|e| format!("sip peer {}: {e}", peer.name))?;
            }
        }
        Ok(())
    }
}

/// Checks the retention settings (shared by `serve` and `hub`).
fn retention_policy(
    days: Option<u64>,
    max_events: Option<u64>,
    interval_secs: u64,
) -> Result<mqchat_store::RetentionPolicy, String> {
    if days == Some(0) {
        return Err("retention_days must be at least 1 (leave it out to keep everything)".into());
    }
    if max_events == Some(0) {
        return Err(
            "retention_max_events must be at least 1 (leave it out to keep everything)".into(),
        );
    }
    if interval_secs == 0 {
        return Err("retention_interval_secs must be at least 1".into());
    }
    Ok(mqchat_store::RetentionPolicy {
        max_age_ms: days.map(|d| d.saturating_mul(86_400_000)),
        max_events,
    })
}

/// `full` or `normal`.
fn durability<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Durability, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// An address, or `off` / empty for none.
fn address_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "" | "off" => Ok(None),
        addr => addr.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A broker's address, from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// MQTT over TLS (`mqtts://`).
    pub tls: bool,
}

/// Parses `mqtt://host:port`, `tcp://host:port` or `host:port` (port 1883 by default), or
/// `mqtts://host:port` or `ssl://host:port` (TLS, port 8883 by default); IPv6 addresses in
/// brackets.
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, String> {
    let (rest, tls) = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (rest, false),
        Some(("mqtts" | "ssl", rest)) => (rest, true),
        Some((scheme, _)) => {
            return Err(format!(
                "broker {url:?}: scheme {scheme:?} is not supported (use mqtt://host:port or \
                 mqtts://host:port)"
            ));
        }
        None => (url, false),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => (host, Some(port.strip_prefix(':').unwrap_or(port))),
            None => return Err(format!("broker {url:?}: unclosed '['")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("broker {url:?}: expected mqtt://host:port"));
    }
    let port = match port {
        None if tls => 8883,
        None => 1883,
        Some(p) => p
            .parse()
            .map_err(|_| format!("broker {url:?}: bad port {p:?}"))?,
    };
    Ok(BrokerUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// TOML parsing, kept behind a small module so the error type stays ours.
pub mod toml_error {
    /// A configuration file that does not parse.
    #[derive(Debug, thiserror::Error)]
    #[error("configuration: {0}")]
    pub struct Error(String);

    pub(super) fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
        toml::from_str(text).map_err(|e| Error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let c = ServerConfig::from_toml(
            "root = \"acme\"\nlisten_ws = \"127.0.0.1:0\"\ndurability = \"normal\"",
        )
        .expect("valid");
        assert_eq!(c.root, "acme");
        assert_eq!(c.listen_ws, Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.max_payload, 65_536);
        assert!(ServerConfig::from_toml("nonsense = 1").is_err());
    }

    #[test]
    fn retention_settings() {
        let none = ServerConfig::default().retention().expect("valid");
        assert!(!none.is_active());
        let c = ServerConfig::from_toml("retention_days = 30\nretention_max_events = 1000")
            .expect("valid");
        let policy = c.retention().expect("valid");
        assert_eq!(policy.max_age_ms, Some(30 * 86_400_000));
        assert_eq!(policy.max_events, Some(1000));
        let zero = ServerConfig::from_toml("retention_days = 0").expect("parses");
        assert!(zero.retention().is_err());
    }

    #[test]
    fn tls_settings() {
        let c = ServerConfig::from_toml(
            "listen_tls = \"0.0.0.0:8883\"\nlisten_wss = \"off\"\n[tls]\ncert = \"/etc/c.pem\"\nkey = \"/etc/k.pem\"",
        )
        .expect("valid");
        assert_eq!(c.listen_tls, Some(SocketAddr::from(([0, 0, 0, 0], 8883))));
        assert_eq!(c.listen_wss, None);
        assert_eq!(c.tls.reload_interval_secs, 5);
        let files = c.tls.files().expect("both").expect("given");
        assert_eq!(files.cert, PathBuf::from("/etc/c.pem"));
        let half = ServerConfig::from_toml("[tls]\ncert = \"/etc/c.pem\"").expect("parses");
        assert!(half.tls.files().is_err());
        assert!(ServerConfig::from_toml("[tls]\ncertificate = \"x\"").is_err());
        assert_eq!(ServerConfig::default().listen_tls, None);
        let hub =
            HubProcessConfig::from_toml("broker = \"mqtts://b\"\nbroker_ca_file = \"/ca.pem\"")
                .expect("valid");
        assert!(hub.broker_address().expect("valid").tls);
        assert_eq!(hub.broker_ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn hub_settings() {
        let c = HubProcessConfig::from_toml(
            "broker = \"mqtt://10.0.0.5:1884\"\nshared_subscription = false\nhttp_listen = \"127.0.0.1:0\"",
        )
        .expect("valid");
        assert_eq!(
            c.broker_address(),
            Ok(BrokerUrl {
                host: "10.0.0.5".to_owned(),
                port: 1884,
                tls: false
            })
        );
        assert!(!c.shared_subscription);
        assert_eq!(c.client_id, "_hub-1");
        assert_eq!(c.http_listen, Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert!(HubProcessConfig::from_toml("listen_tcp = \"x\"").is_err());
        let off = HubProcessConfig::from_toml("http_listen = \"off\"").expect("valid");
        assert_eq!(off.http_listen, None);
        assert!(HubProcessConfig::from_toml("http_listen = \"nowhere\"").is_err());
    }

    #[test]
    fn sip_settings() {
        let c = ServerConfig::from_toml(
            "[sip]\nenabled = true\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"off\"\n\n[[sip.peers]]\nname = \"pbx\"\naddresses = [\"127.0.0.1\", \"10.0.0.0/8\"]\ndomains = [\"example.net\"]\noutbound = \"udp:127.0.0.1:5070\"\n",
        )
        .expect("valid");
        assert!(c.sip.enabled);
        assert_eq!(c.sip.domain, "localhost");
        assert_eq!(c.sip.listen_tcp, None);
        assert_eq!(c.sip.peers[0].domains, ["example.net"]);
        assert_eq!(c.sip.validate(), Ok(()));
        let mut bad = c.sip.clone();
        bad.peers[0].addresses.push("10.0.0.0/33".into());
        assert!(bad.validate().is_err());
        let mut bad = c.sip.clone();
        bad.peers[0].outbound = Some("sctp:1.2.3.4:5".into());
        assert!(bad.validate().is_err());
        let mut bad = c.sip.clone();
        bad.peers[0].username = Some("u".into());
        assert!(bad.validate().is_err());
        let mut bad = c.sip;
        bad.gateway_name = "a/b".into();
        assert!(bad.validate().is_err());
        assert_eq!(
            parse_sip_target("tcp:[::1]:5061"),
            Ok((SipTransport::Tcp, "[::1]:5061".parse().expect("addr")))
        );
        assert_eq!(parse_ip_block("::1"), Ok(("::1".parse().expect("ip"), 128)));
        assert!(HubProcessConfig::from_toml("[sip]\nenabled = true").is_ok());
        assert!(ServerConfig::from_toml("[sip]\nnope = 1").is_err());
    }

    #[test]
    fn broker_urls() {
        let check = |url: &str, expected: Result<(&str, u16, bool), ()>| {
            assert_eq!(
                parse_broker_url(url).map_err(|_| ()),
                expected.map(|(h, port, tls)| BrokerUrl {
                    host: h.to_owned(),
                    port,
                    tls
                }),
                "{url}"
            );
        };
        check("mqtt://localhost:1883", Ok(("localhost", 1883, false)));
        check("mqtt://broker.example", Ok(("broker.example", 1883, false)));
        check("tcp://127.0.0.1:2000/", Ok(("127.0.0.1", 2000, false)));
        check("127.0.0.1:2000", Ok(("127.0.0.1", 2000, false)));
        check("mqtt://[::1]:1999", Ok(("::1", 1999, false)));
        check("mqtt://[::1]", Ok(("::1", 1883, false)));
        check("mqtts://host:9883", Ok(("host", 9883, true)));
        check("mqtts://host", Ok(("host", 8883, true)));
        check("ssl://[::1]", Ok(("::1", 8883, true)));
        check("ws://host:8083/mqtt", Err(()));
        check("mqtt://host:port", Err(()));
        check("mqtt://:1883", Err(()));
        check("mqtt://[::1", Err(()));
    }
}
