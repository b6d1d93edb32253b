//! `mqchat serve` as a library: the embedded broker, the hub and the store, wired together
//! and shut down cleanly. The CLI and the integration tests of every crate start servers
//! through [`Server::start`] (tests through the `TestServer` of the mqchat-testkit crate).
//!
//! ```text
//! devices ──► broker (rmqtt, in-process) ──tap──► worker thread ──► store
//!                   ▲                                 │ (engine)
//!                   └──── publisher task ◄── outbound ┘
//! ```
//!
//! The broker hands the hub the publishes on its topics by function call (the link's
//! `Tap`), and the hub's publishes go straight into the broker's sessions. The same hub
//! runs against an external broker as an ordinary MQTT client: [`Hub`] (`mqchat hub`), with
//! the HTTP endpoint of [`auth_http`] for the broker's authentication and authorization.
//! The worker thread owns the store's writer connection and processes upstream packets in
//! batches (one transaction each).

pub mod auth_http;
mod clock;
pub mod config;
mod gate;
mod hub;
mod link;
pub mod login;
mod pace;
pub mod push;
mod retention;
mod session_ends;
pub mod sip_gateway;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqchat_broker::{Broker, BrokerConfig};
use mqchat_hub::{Engine, Gate, HubConfig, HubCredentials};
use mqchat_proto::TopicRoot;
use mqchat_store::Store;

pub use config::{HubProcessConfig, ServerConfig};
pub use hub::Hub;

/// Creates the data directory if needed and takes its lock for `role`; when the previous
/// holder died, checks the database before anything writes to it.
pub(crate) fn take_data_dir(
    dir: &std::path::Path,
    database: &std::path::Path,
    role: &str,
) -> Result<mqchat_store::DirLock, StartError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StartError::Config(format!("data directory {}: {e}", dir.display())))?;
    let lock = mqchat_store::DirLock::acquire(dir, role).map_err(mqchat_store::StoreError::from)?;
    if let mqchat_store::LastStop::Unclean(previous) = lock.last_stop() {
        tracing::warn!(
            %previous,
            database = %database.display(),
            "the last server on this data directory did not stop cleanly: checking the database"
        );
        let took = Store::check_integrity(database)?;
        tracing::info!(took_ms = took.as_millis(), "the database is sound");
    }
    Ok(lock)
}

/// The largest history or sync result the hub builds for the embedded broker. rmqtt sends
/// an MQTT 5 device that announced no Maximum Packet Size nothing larger than the listener's
/// own packet limit (it drops the publish and closes the connection), so replies stay under
/// that limit, less room for the PUBLISH's header, topic and properties (issue 17).
fn reply_budget(max_packet_size: u32) -> usize {
    let limit = usize::try_from(max_packet_size).unwrap_or(usize::MAX);
    HubConfig::default()
        .max_reply_bytes
        .min(limit.saturating_sub(1024))
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    logins: Arc<login::Logins>,
    link: link::Link,
    session_ends: session_ends::SessionEnds,
    retention: Option<retention::RetentionJob>,
    pusher: Option<Arc<push::Pusher>>,
    sip: Option<sip_gateway::Gateway>,
    root: TopicRoot,
    /// Reloads the TLS listeners' certificate when its files change.
    tls_watch: Option<tls::Watcher>,
    /// This server's hold on its data directory, released last.
    lock: mqchat_store::DirLock,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The data directory or database could not be opened.
    #[error("store: {0}")]
    Store(#[from] mqchat_store::StoreError),
    /// A listener could not bind or the broker failed.
    #[error(transparent)]
    Broker(#[from] mqchat_broker::BrokerError),
    /// The hub could not connect to the broker.
    #[error("hub link: {0}")]
    Link(String),
}

impl Server {
    /// Opens the store, starts the broker and the hub, and returns once the hub is
    /// subscribed (devices may connect and publish).
    pub async fn start(config: &ServerConfig) -> Result<Self, StartError> {
        let root = TopicRoot::parse(&config.root).map_err(|e| StartError::Config(e.to_string()))?;
        let policy = config.retention().map_err(StartError::Config)?;
        if config.sip.enabled {
            config.sip.validate().map_err(StartError::Config)?;
        }
        let certificate = config.tls.files().map_err(StartError::Config)?;
        if certificate.is_none() && (config.listen_tls.is_some() || config.listen_wss.is_some()) {
            return Err(StartError::Config(
                "listen_tls and listen_wss need a certificate: [tls] cert and key \
                 (--tls-cert, --tls-key)"
                    .into(),
            ));
        }
        if let Some(files) = &certificate {
            mqchat_broker::check_files(files).map_err(|e| StartError::Config(e.to_string()))?;
        }
        let mut lock = take_data_dir(&config.data_dir, &config.database(), "mqchat serve")?;
        let store = Store::open(&config.database(), config.durability)?;
        store.check_tail()?;
        let secret: [u8; 24] = rand::random();
        let hub = HubCredentials {
            username: link::HUB_USERNAME.to_owned(),
            secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let gate = Arc::new(Gate::open(
            &config.database(),
            root.clone(),
            hub.clone(),
            config.limits.logins(),
        )?);
        let logins = Arc::new(
            login::Logins::start(gate, &config.limits.login_pool())
                .map_err(|e| StartError::Config(format!("cannot start the login threads: {e}")))?,
        );
        // The broker accepts packets a bit larger than the hub's limit, so that oversize
        // payloads reach the hub and get an error reply instead of a dropped connection.
        let max_packet_size = u32::try_from(config.max_payload + 64 * 1024).unwrap_or(u32::MAX);
        // The hub takes its topics' publishes from the broker in-process.
        // A device far above its packet rate is slowed where its packets come in (the hub
        // answers `rate-limited` to what gets through above the rate).
        let pacer = pace::Pacer::new(
            config
                .limits
                .device_packets_per_sec
                .saturating_mul(pace::PACE_FACTOR),
            config.limits.device_packets_burst,
        );
        let (tap, tap_end) = link::Tap::new(&root, config.sip.enabled, pacer);
        let broker = Broker::start(
            BrokerConfig {
                tcp: config.listen_tcp,
                ws: config.listen_ws,
                tls: config.listen_tls,
                wss: config.listen_wss,
                certificate: certificate.clone(),
                max_packet_size,
                session_expiry: Duration::from_secs(config.session_expiry_secs),
                max_queue: config.max_queue,
                connect_timeout: Duration::from_secs(config.limits.connect_timeout_secs.max(1)),
                max_subscriptions: config.limits.max_subscriptions,
            },
            Arc::new(gate::BrokerGate::new(
                logins.clone(),
                config.limits.max_presence_bytes,
            )),
            Some(tap),
        )
        .await?;
        let broker = Arc::new(broker);
        tls::warn_if_plain_on_network("listen_tcp", broker.tcp_addr());
        tls::warn_if_plain_on_network("listen_ws", broker.ws_addr());
        let tls_watch = match (&certificate, config.tls.interval()) {
            (Some(files), Some(every))
                if broker.tls_addr().is_some() || broker.wss_addr().is_some() =>
            {
                let broker = Arc::downgrade(&broker);
                Some(tls::Watcher::start(files.clone(), every, move || {
                    let broker = broker.upgrade();
                    async move {
                        match broker {
                            Some(broker) => broker.reload_tls().await.map_err(|e| e.to_string()),
                            None => Ok(()),
                        }
                    }
                }))
            }
            _ => None,
        };
        let engine = Engine::new(HubConfig {
            root: root.clone(),
            max_payload: config.max_payload,
            max_reply_bytes: reply_budget(max_packet_size),
            max_group_members: config.max_group_members,
            sip: config.sip.hub(),
            rates: config.limits.rates(),
            // Group ids and SIP identifiers must not repeat across restarts.
            seed: rand::random(),
            ..HubConfig::default()
        });
        let pusher = push::Pusher::start(&config.push, config.database(), config.durability)
            .map_err(|e| StartError::Config(format!("push: {e}")))?
            .map(Arc::new);
        let attach = link::Attach::Embedded {
            broker: broker.clone(),
            tap: tap_end,
            takeover: broker.internal_addr(),
        };
        let link = link::Link::start(attach, &hub, engine, store, pusher.clone())
            .await
            .map_err(StartError::Link)?;
        let session_ends = session_ends::SessionEnds::start(
            Store::open(&config.database(), config.durability)?,
            link.evictor(),
        )?;
        let sip = if config.sip.enabled {
            let internal = broker.internal_addr();
            let gateway = sip_gateway::Gateway::start(
                &config.sip,
                sip_gateway::GatewayLink {
                    broker: tls::BrokerTarget::plain(internal),
                    credentials: hub.clone(),
                    root: root.clone(),
                    wait_for_broker: false,
                },
            )
            .await;
            match gateway {
                Ok(gateway) => Some(gateway),
                Err(e) => {
                    link.stop().await;
                    return Err(StartError::Config(e));
                }
            }
        } else {
            None
        };
        let retention = retention::RetentionJob::start(
            Store::open(&config.database(), config.durability)?,
            policy,
            Duration::from_secs(config.retention_interval_secs),
        )
        .map_err(|e| StartError::Config(format!("cannot start the retention job: {e}")))?;
        tracing::info!(
            tcp = ?broker.tcp_addr(),
            ws = ?broker.ws_addr(),
            tls = ?broker.tls_addr(),
            wss = ?broker.wss_addr(),
            root = %root,
            data = %config.data_dir.display(),
            "mqchat is serving"
        );
        Ok(Self {
            broker,
            logins,
            link,
            session_ends,
            retention,
            pusher,
            sip,
            root,
            tls_watch,
            lock: {
                lock.serving();
                lock
            },
        })
    }

    /// The bound MQTT/TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.broker.tcp_addr()
    }

    /// The bound MQTT/WebSocket address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.broker.ws_addr()
    }

    /// The bound MQTT/TLS address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.broker.tls_addr()
    }

    /// The bound MQTT/WebSocket/TLS address.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.broker.wss_addr()
    }

    /// Reads the TLS certificate and key files again (SIGHUP): new TLS connections get the
    /// new certificate, connections already made keep theirs. On an error (logged and
    /// returned) the listeners keep the certificate they had.
    pub async fn reload_tls(&self) -> Result<(), String> {
        let reloaded = self.broker.reload_tls().await.map_err(|e| e.to_string());
        if let Err(e) = &reloaded {
            tracing::error!(error = %e, "the TLS certificate was not reloaded; the old one stays");
        }
        reloaded
    }

    /// The topic root.
    pub fn root(&self) -> &TopicRoot {
        &self.root
    }

    /// How many passwords the server has verified since it started (the rest of the login
    /// attempts were decided without hashing: tokens, throttled sources).
    pub fn password_checks(&self) -> u64 {
        self.logins.password_checks()
    }

    /// The embedded broker's loopback listener for the server's own clients (the SIP
    /// gateway, session takeovers); it takes only the hub's account.
    pub fn internal_addr(&self) -> SocketAddr {
        self.broker.internal_addr()
    }

    /// The SIP gateway's bound UDP address (when `[sip]` is enabled).
    pub fn sip_udp_addr(&self) -> Option<SocketAddr> {
        self.sip.as_ref().and_then(sip_gateway::Gateway::udp_addr)
    }

    /// The SIP gateway's bound TCP address (when `[sip]` is enabled).
    pub fn sip_tcp_addr(&self) -> Option<SocketAddr> {
        self.sip.as_ref().and_then(sip_gateway::Gateway::tcp_addr)
    }

    /// Closes a device's connection and session (after revoking it).
    pub async fn kick(&self, client_id: &str) {
        self.broker.kick(client_id).await;
    }

    /// Stops accepting connections, disconnects every device, lets the hub finish what it
    /// received, flushes the store, and returns.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no new connections");
        drop(self.tls_watch);
        self.broker.stop_accepting().await;
        self.session_ends.stop();
        if let Some(sip) = self.sip {
            sip.stop().await;
        }
        self.broker.disconnect_all(link::HUB_USERNAME).await;
        self.logins.stop();
        self.link.stop().await;
        if let Some(pusher) = self.pusher.and_then(|p| Arc::try_unwrap(p).ok()) {
            pusher.stop().await;
        }
        if let Some(job) = self.retention {
            let _ = tokio::task::spawn_blocking(move || job.stop()).await;
        }
        self.lock.release();
        tracing::info!("shut down");
    }
}
