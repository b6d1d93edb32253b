//! `mqchat hub`: the hub as its own process, an MQTT client of an external broker
//! (Mosquitto, EMQX, VerneMQ, rmqtt...), with the HTTP endpoint such brokers ask for
//! authentication and authorization.
//!
//! Same engine, store, link and worker as `mqchat serve`; the differences are the broker
//! (not started here), the hub's session (persistent, so upstream packets wait for the hub
//! while it restarts), and the start (it waits for the broker, retrying with a growing
//! pause).

use std::net::SocketAddr;
use std::sync::Arc;

use mqchat_hub::{Engine, Gate, HubConfig, HubCredentials};
use mqchat_proto::TopicRoot;
use mqchat_store::Store;

use crate::auth_http::AuthHttp;
use crate::config::HubProcessConfig;
use crate::{StartError, link, push, retention, tls};

/// A running hub.
#[derive(Debug)]
pub struct Hub {
    link: link::Link,
    session_ends: crate::session_ends::SessionEnds,
    pusher: Option<Arc<push::Pusher>>,
    http: Option<AuthHttp>,
    retention: Option<retention::RetentionJob>,
    sip: Option<crate::sip_gateway::Gateway>,
    root: TopicRoot,
    /// The HTTP endpoint's certificate, when it speaks HTTPS.
    certificate: Option<Arc<tls::Certificate>>,
    /// Reloads that certificate when its files change.
    tls_watch: Option<tls::Watcher>,
    /// This hub's hold on its data directory, released last.
    lock: mqchat_store::DirLock,
}

impl Hub {
    /// Opens the store, starts the HTTP endpoint, connects to the broker (waiting for it as
    /// long as it takes: wrap in a timeout or a select to give up), and returns once the
    /// hub's subscriptions are acknowledged. Refused credentials end the wait with an error.
    pub async fn start(config: &HubProcessConfig) -> Result<Self, StartError> {
        let root = TopicRoot::parse(&config.root).map_err(|e| StartError::Config(e.to_string()))?;
        let url = config.broker_address().map_err(StartError::Config)?;
        let broker = tls::BrokerTarget {
            host: url.host,
            port: url.port,
            tls: match url.tls {
                true => Some(
                    tls::client_config(config.broker_ca_file.as_deref())
                        .map_err(StartError::Config)?,
                ),
                false if config.broker_ca_file.is_some() => {
                    return Err(StartError::Config(
                        "broker_ca_file is for a mqtts:// broker".into(),
                    ));
                }
                false => None,
            },
        };
        let certificate = match config.tls.files().map_err(StartError::Config)? {
            Some(files) => Some(tls::Certificate::load(files).map_err(StartError::Config)?),
            None => None,
        };
        let policy = config.retention().map_err(StartError::Config)?;
        if config.sip.enabled {
            config.sip.validate().map_err(StartError::Config)?;
        }
        if !config.broker_username.starts_with('_') {
            return Err(StartError::Config(format!(
                "broker_username {:?} must start with '_' (user ids cannot, so it cannot \
                 collide with a user)",
                config.broker_username
            )));
        }
        if !config.client_id.starts_with(&config.broker_username) {
            return Err(StartError::Config(format!(
                "client_id {:?} must start with broker_username {:?}",
                config.client_id, config.broker_username
            )));
        }
        let secret = match (&config.broker_password, &config.broker_password_file) {
            (Some(_), Some(_)) => {
                return Err(StartError::Config(
                    "set broker_password or broker_password_file, not both".into(),
                ));
            }
            (Some(password), None) => password.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, None) => {
                let secret: [u8; 24] = rand::random();
                secret.iter().map(|b| format!("{b:02x}")).collect()
            }
        };
        if secret.is_empty() {
            return Err(StartError::Config(
                "the hub's broker password is empty".into(),
            ));
        }
        let mut lock = crate::take_data_dir(&config.data_dir, &config.database(), "mqchat hub")?;
        let store = Store::open(&config.database(), config.durability)?;
        store.check_tail()?;
        let credentials = HubCredentials {
            username: config.broker_username.clone(),
            secret,
        };
        let gate = Arc::new(Gate::open(
            &config.database(),
            root.clone(),
            credentials.clone(),
            config.limits.logins(),
        )?);
        let logins = Arc::new(
            crate::login::Logins::start(gate, &config.limits.login_pool())
                .map_err(|e| StartError::Config(format!("cannot start the login threads: {e}")))?,
        );
        let http = match config.http_listen {
            Some(addr) => Some(
                AuthHttp::start(addr, logins, certificate.clone())
                    .await
                    .map_err(|e| StartError::Config(format!("http_listen {addr}: {e}")))?,
            ),
            None => None,
        };
        if certificate.is_none() {
            tls::warn_if_plain_on_network("http_listen", http.as_ref().map(AuthHttp::addr));
        }
        let engine = Engine::new(HubConfig {
            root: root.clone(),
            max_payload: config.max_payload,
            max_group_members: config.max_group_members,
            sip: config.sip.hub(),
            rates: config.limits.rates(),
            // Group ids and SIP identifiers must not repeat across restarts.
            seed: rand::random(),
            ..HubConfig::default()
        });
        let options = link::LinkOptions {
            broker,
            client_id: config.client_id.clone(),
            shared: config.shared_subscription,
            session_expiry: Some(config.broker_session_expiry_secs),
            wait_for_broker: true,
        };
        let pusher = push::Pusher::start(&config.push, config.database(), config.durability)
            .map_err(|e| StartError::Config(format!("push: {e}")))?
            .map(Arc::new);
        let link = match link::Link::start(
            link::Attach::Mqtt(options.clone()),
            &credentials,
            engine,
            store,
            pusher.clone(),
        )
        .await
        {
            Ok(link) => link,
            Err(e) => {
                if let Some(http) = http {
                    http.stop().await;
                }
                return Err(StartError::Link(e));
            }
        };
        let sip = if config.sip.enabled {
            let gateway = crate::sip_gateway::Gateway::start(
                &config.sip,
                crate::sip_gateway::GatewayLink {
                    broker: options.broker.clone(),
                    credentials: credentials.clone(),
                    root: root.clone(),
                    wait_for_broker: true,
                },
            )
            .await;
            match gateway {
                Ok(gateway) => Some(gateway),
                Err(e) => {
                    link.stop().await;
                    if let Some(http) = http {
                        http.stop().await;
                    }
                    return Err(StartError::Config(e));
                }
            }
        } else {
            None
        };
        let retention = retention::RetentionJob::start(
            Store::open(&config.database(), config.durability)?,
            policy,
            std::time::Duration::from_secs(config.retention_interval_secs),
        )
        .map_err(|e| StartError::Config(format!("cannot start the retention job: {e}")))?;
        let session_ends = crate::session_ends::SessionEnds::start(
            Store::open(&config.database(), config.durability)?,
            link.evictor(),
        )?;
        tracing::info!(
            broker = %config.broker,
            client_id = %config.client_id,
            shared = config.shared_subscription,
            http = ?http.as_ref().map(AuthHttp::addr),
            root = %root,
            data = %config.data_dir.display(),
            "mqchat hub is running"
        );
        let tls_watch = match (&certificate, config.tls.interval()) {
            (Some(certificate), Some(every)) if http.is_some() => {
                let weak = Arc::downgrade(certificate);
                Some(tls::Watcher::start(
                    certificate.files().clone(),
                    every,
                    move || {
                        let reloaded = weak.upgrade().map_or(Ok(()), |c| c.reload());
                        std::future::ready(reloaded)
                    },
                ))
            }
            _ => None,
        };
        Ok(Self {
            link,
            session_ends,
            pusher,
            http,
            retention,
            sip,
            root,
            certificate,
            tls_watch,
            lock: {
                lock.serving();
                lock
            },
        })
    }

    /// The HTTP endpoint's bound address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(AuthHttp::addr)
    }

    /// Whether the HTTP endpoint speaks HTTPS.
    pub fn http_tls(&self) -> bool {
        self.certificate.is_some() && self.http.is_some()
    }

    /// Reads the HTTP endpoint's certificate and key files again (SIGHUP): new connections
    /// get the new certificate. On an error (logged and returned) the old one stays.
    pub fn reload_tls(&self) -> Result<(), String> {
        let reloaded = self.certificate.as_ref().map_or(Ok(()), |c| c.reload());
        if let Err(e) = &reloaded {
            tracing::error!(error = %e, "the TLS certificate was not reloaded; the old one stays");
        }
        reloaded
    }

    /// The topic root.
    pub fn root(&self) -> &TopicRoot {
        &self.root
    }

    /// The SIP gateway's bound UDP address (when `[sip]` is enabled).
    pub fn sip_udp_addr(&self) -> Option<SocketAddr> {
        self.sip
            .as_ref()
            .and_then(crate::sip_gateway::Gateway::udp_addr)
    }

    /// The SIP gateway's bound TCP address (when `[sip]` is enabled).
    pub fn sip_tcp_addr(&self) -> Option<SocketAddr> {
        self.sip
            .as_ref()
            .and_then(crate::sip_gateway::Gateway::tcp_addr)
    }

    /// Finishes what was received (up to 5 s), disconnects from the broker, flushes the
    /// store and stops the HTTP endpoint. What the broker still holds for the hub's session
    /// waits there for the next start.
    pub async fn shutdown(self) {
        tracing::info!("hub shutting down");
        self.session_ends.stop();
        drop(self.tls_watch);
        if let Some(sip) = self.sip {
            sip.stop().await;
        }
        self.link.stop().await;
        if let Some(pusher) = self.pusher.and_then(|p| Arc::try_unwrap(p).ok()) {
            pusher.stop().await;
        }
        if let Some(job) = self.retention {
            let _ = tokio::task::spawn_blocking(move || job.stop()).await;
        }
        if let Some(http) = self.http {
            http.stop().await;
        }
        self.lock.release();
        tracing::info!("hub shut down");
    }
}
