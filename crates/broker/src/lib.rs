//! The embedded MQTT broker: rmqtt in-process, with mqchat's authentication and access rules
//! as hooks.
//!
//! This is the only crate that depends on rmqtt (pinned: its 0.x API moves). Everything
//! else sees [`Broker`] and the [`Gatekeeper`] trait the broker calls for every CONNECT,
//! PUBLISH and SUBSCRIBE. Listeners: MQTT over TCP and over WebSocket for devices, the same
//! two over TLS (`tls.rs`: certificates replaced without a restart), and a loopback TCP
//! listener for MQTT clients of the server itself (the SIP gateway, session takeovers, a
//! hub that is not in-process), with a large in-flight window.
//!
//! The hub in the same process does not need an MQTT connection: a [`Consumer`] given at
//! start takes the publishes on its topics as the broker accepts them (after the access
//! checks, in each publisher's order), and [`Broker::publish`] routes the hub's publishes
//! straight into the broker's sessions. No encoding, decoding, socket write or PUBACK on
//! the way in or out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mqchat_proto::Qos;
use rmqtt::codec::v5::{PublishAckReason, PublishProperties, SubscribeAckReason};
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{
    AuthResult, CodecPublish, From, FromType, Id, LastWill, Publish, PublishAclResult,
    PublishResult, QoS, SubscribeAclResult, Unsubscribe,
};
use tokio::task::JoinHandle;

mod deadline;
mod drops;
mod resume;
mod tls;

pub use tls::{TlsError, TlsFiles, check_files};

/// The answer to a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Let it in; a superuser skips the publish and subscribe checks.
    Allow {
        /// Whether it is a superuser (the hub).
        superuser: bool,
    },
    /// CONNACK "bad user name or password".
    BadCredentials,
    /// CONNACK "not authorized". (rmqtt 0.24 cannot send "server busy" or "quota exceeded":
    /// its authentication result has no such codes, and it does not run the CONNACK hook
    /// for refusals.)
    NotAuthorized,
}

/// A CONNECT, as the [`Gatekeeper`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Connect<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The user name.
    pub username: Option<&'a str>,
    /// The password.
    pub password: Option<&'a [u8]>,
    /// Where it came from.
    pub peer: Option<SocketAddr>,
    /// Whether it came through the loopback listener for the server's own clients (not a
    /// device listener).
    pub internal: bool,
}

/// What the broker asks for every connection, publish and subscription. Implementations may
/// block briefly (they are called from the connection's task); slow work belongs on a
/// blocking thread inside the implementation.
#[async_trait]
pub trait Gatekeeper: Send + Sync + 'static {
    /// Decides a CONNECT.
    async fn authenticate(&self, connect: Connect<'_>) -> Admission;
    /// Decides a PUBLISH (or a CONNECT's will) by a non-superuser.
    async fn may_publish(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        retain: bool,
        payload: &[u8],
    ) -> bool;
    /// Decides a SUBSCRIBE filter by a non-superuser (a `$share/{group}/` prefix removed).
    async fn may_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool;
}

/// The in-process consumer of the hub's topics (the hub of `mqchat serve`).
///
/// The broker calls [`Consumer::wants`] for every accepted PUBLISH and hands those it wants
/// to [`Consumer::take`] on the publisher's connection task, after the access checks and
/// before the PUBACK: a publisher's packets arrive in the order it sent them, and a slow
/// consumer slows its publishers (back-pressure) instead of growing a queue. Wills are
/// taken too (their topic is checked at CONNECT). The publish is still routed to its MQTT
/// subscribers, if any (presence has some: the user's contacts).
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Whether a topic is the consumer's. Called for every accepted PUBLISH: keep it cheap.
    fn wants(&self, topic: &str) -> bool;
    /// Takes an accepted publish on one of its topics. It may wait, which holds the
    /// publisher's connection (its PUBACK and its next packets) until it returns. `false`:
    /// the consumer has stopped and did not take it; a device's publish is then refused
    /// (MQTT 5: PUBACK "implementation specific error"), so its client keeps it to send
    /// again.
    async fn take(&self, topic: &str, payload: Bytes) -> bool;
}

/// Why an in-process publish was not routed.
#[derive(Debug, thiserror::Error)]
#[error("broker could not route a publish on {topic}: {reason}")]
pub struct PublishError {
    /// The topic.
    pub topic: String,
    /// Why.
    pub reason: String,
}

/// Topic aliases per device connection and direction (MQTT 5): a device's upstream and
/// presence topics, and the inboxes, replies and presence it receives most. The broker
/// assigns its aliases to the first topics it delivers on a connection and keeps them.
pub const TOPIC_ALIASES: u16 = 16;

/// Listener and session settings.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// MQTT over TCP for devices; `None` disables it.
    pub tcp: Option<SocketAddr>,
    /// MQTT over WebSocket for devices; `None` disables it.
    pub ws: Option<SocketAddr>,
    /// MQTT over TLS for devices; `None` disables it. Needs `certificate`.
    pub tls: Option<SocketAddr>,
    /// MQTT over WebSocket over TLS for devices; `None` disables it. Needs `certificate`.
    pub wss: Option<SocketAddr>,
    /// The TLS listeners' certificate chain and key.
    pub certificate: Option<TlsFiles>,
    /// The largest MQTT packet a device may send. Keep it above the hub's maximum payload so
    /// that oversize payloads reach the hub and get an error reply.
    pub max_packet_size: u32,
    /// How long a session lives after its device disconnects (MQTT 3.1.1 clients, and the
    /// cap for MQTT 5 clients).
    pub session_expiry: Duration,
    /// Messages queued for one offline session; beyond it the oldest are dropped (sync
    /// recovers them).
    pub max_queue: usize,
    /// How long a new connection has for its TLS or WebSocket handshake and its whole
    /// CONNECT before it is closed (the first bytes through the `deadline` watcher).
    pub connect_timeout: Duration,
    /// Subscriptions one device connection may hold (beyond: SUBACK "quota exceeded").
    pub max_subscriptions: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            ws: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            tls: None,
            wss: None,
            certificate: None,
            max_packet_size: 256 * 1024,
            session_expiry: Duration::from_secs(7 * 24 * 3600),
            max_queue: 1000,
            connect_timeout: Duration::from_secs(10),
            max_subscriptions: 5_000,
        }
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A listener could not bind (address in use, permission).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A TLS listener could not start (its certificate or key, or its socket).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A TLS listener is asked for without a certificate.
    #[error("a TLS listener needs a certificate and a key")]
    NoCertificate,
    /// A plugin failed to start.
    #[error("broker plugin {name}: {reason}")]
    Plugin {
        /// The plugin.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// A running embedded broker.
pub struct Broker {
    scx: ServerContext,
    /// Who the broker says in-process publishes come from (the hub).
    publisher: Id,
    tcp: Option<SocketAddr>,
    ws: Option<SocketAddr>,
    internal: SocketAddr,
    server: JoinHandle<()>,
    secure: Option<tls::SecureListeners>,
    /// The CONNECT deadline watcher (`None` where it cannot run).
    deadline: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("tcp", &self.tcp)
            .field("ws", &self.ws)
            .field("tls", &self.tls_addr())
            .field("wss", &self.wss_addr())
            .field("internal", &self.internal)
            .finish()
    }
}

struct Hooks {
    gate: Arc<dyn Gatekeeper>,
    consumer: Option<Arc<dyn Consumer>>,
    arrivals: Arc<deadline::Arrivals>,
    drops: Arc<drops::Drops>,
}

/// The listener id of the loopback listener for the server's own clients.
const INTERNAL_LISTENER: u16 = 3;

/// What makes a PUBLISH a protocol error, after which the connection is closed (MQTT 5
/// 1.5.4-2 and 3.3.2-2, 3.1.1 1.5.3-2 and 3.3.2-2): a topic name with a wildcard or NUL
/// character, a topic alias of 0 or above the maximum granted (3.3.2-8, 3.3.2-9). rmqtt
/// 0.24 accepts them.
fn protocol_error(publish: &Publish) -> Option<(PublishAckReason, &'static str)> {
    if publish.topic.contains(['+', '#', '\0']) {
        return Some((
            PublishAckReason::TopicNameInvalid,
            "a topic name may not hold wildcards or NUL",
        ));
    }
    let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
    if alias.is_some_and(|alias| alias.get() > TOPIC_ALIASES) {
        return Some((
            PublishAckReason::ImplementationSpecificError,
            "topic alias above the maximum granted",
        ));
    }
    None
}

fn text(s: &Option<bytestring::ByteString>) -> Option<&str> {
    s.as_ref().map(|s| &**s)
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientConnect(connect) => {
                if let Some(peer) = connect.id().remote_addr {
                    self.arrivals.arrived(peer, std::time::Instant::now());
                }
                (true, acc)
            }
            Parameter::ClientAuthenticate(connect) => {
                let username = connect.username().map(|u| &**u);
                let client_id = connect.client_id();
                let id = connect.id();
                let request = Connect {
                    client_id,
                    username,
                    password: connect.password().map(|p| &p[..]),
                    peer: id.remote_addr,
                    internal: id.lid == INTERNAL_LISTENER,
                };
                let result = match self.gate.authenticate(request).await {
                    Admission::Allow { superuser: true } => AuthResult::Allow(true, None),
                    Admission::Allow { superuser: false } => {
                        // The broker publishes a will without asking the publish hook, so
                        // its topic is checked here, as its owner's publish: a device may
                        // leave a will only where it may publish itself.
                        let will = connect.last_will().map(|will| match will {
                            LastWill::V3(will) => {
                                (will.topic.clone(), will.retain, will.message.clone())
                            }
                            LastWill::V5(will) => {
                                (will.topic.clone(), will.retain, will.message.clone())
                            }
                        });
                        match will {
                            Some((topic, retain, message))
                                if !self
                                    .gate
                                    .may_publish(client_id, username, &topic, retain, &message)
                                    .await =>
                            {
                                tracing::warn!(
                                    client_id = &**client_id,
                                    topic = &*topic,
                                    "connection refused: its will is on a topic it may not publish to"
                                );
                                AuthResult::NotAuthorized
                            }
                            _ => AuthResult::Allow(false, None),
                        }
                    }
                    Admission::BadCredentials => AuthResult::BadUsernameOrPassword,
                    Admission::NotAuthorized => AuthResult::NotAuthorized,
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, sub) => {
                let allowed = self
                    .gate
                    .may_subscribe(
                        &session.id.client_id,
                        text(&session.id.username),
                        &sub.topic_filter,
                    )
                    .await;
                let result = if allowed {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                if let Some((code, reason)) = protocol_error(publish) {
                    tracing::warn!(
                        client_id = &*session.id.client_id,
                        topic = &*publish.topic,
                        reason,
                        "connection closed: a PUBLISH that breaks MQTT"
                    );
                    let result = PublishResult::reason_code(code, Some(reason.into()), true);
                    return (
                        false,
                        Some(HookResult::PublishAclResult(PublishAclResult(result))),
                    );
                }
                let allowed = self
                    .gate
                    .may_publish(
                        &session.id.client_id,
                        text(&session.id.username),
                        &publish.topic,
                        publish.retain,
                        &publish.payload,
                    )
                    .await;
                // Refused publishes are dropped; MQTT 5 publishers get PUBACK "not authorized".
                let taken = match &self.consumer {
                    Some(consumer) if allowed && consumer.wants(&publish.topic) => {
                        consumer.take(&publish.topic, publish.payload.clone()).await
                    }
                    _ => true,
                };
                let result = if !allowed {
                    PublishAclResult::rejected(false, None)
                } else if !taken {
                    PublishAclResult(PublishResult::reason_code(
                        PublishAckReason::ImplementationSpecificError,
                        Some("the hub has stopped".into()),
                        false,
                    ))
                } else {
                    PublishAclResult::allow()
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            // The publishes that skip the access hook: wills (checked at CONNECT) and those
            // of superusers (the SIP gateway, a hub connected over MQTT).
            Parameter::MessagePublish(session, from, publish) => {
                if let Some(consumer) = &self.consumer
                    && consumer.wants(&publish.topic)
                {
                    let unchecked = matches!(from.typ(), FromType::LastWill)
                        || match session {
                            Some(session) => session.superuser().await.unwrap_or(false),
                            None => false,
                        };
                    // Wills and superusers' publishes cannot be refused here; the consumer
                    // logs what it could not take.
                    if unchecked {
                        consumer.take(&publish.topic, publish.payload.clone()).await;
                    }
                }
                (true, acc)
            }
            Parameter::MessageDropped(to, _, publish, reason) => {
                // Without a recipient it is a refused publish, which the ACL hook logs.
                if let Some(to) = to {
                    self.drops.dropped(
                        std::time::Instant::now(),
                        &to.client_id,
                        &publish.topic,
                        reason,
                    );
                }
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

fn bind_error(addr: SocketAddr, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Bind {
        addr,
        reason: e.to_string(),
    }
}

impl Broker {
    /// Starts the broker and returns once every listener is bound (so port 0 is resolved).
    ///
    /// With a `consumer`, the publishes it wants are handed to it in-process (see
    /// [`Consumer`]).
    pub async fn start(
        config: BrokerConfig,
        gate: Arc<dyn Gatekeeper>,
        consumer: Option<Arc<dyn Consumer>>,
    ) -> Result<Self, BrokerError> {
        // The busy check refuses connections when the machine is loaded (easy on 2 cores);
        // mqchat sheds load elsewhere.
        let scx = ServerContext::new()
            .busy_check_enable(false)
            .plugins_config_map_add(
                "rmqtt-retainer",
                "storage.type = \"ram\"\nretained_message_ttl = \"0s\"",
            )
            .plugins_config_map_add("rmqtt-shared-subscription", "strategy = \"round_robin\"")
            .build()
            .await;
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| BrokerError::Plugin {
                name: "rmqtt-retainer",
                reason: e.to_string(),
            })?;
        rmqtt_shared_subscription::register(&scx, true, false)
            .await
            .map_err(|e| BrokerError::Plugin {
                name: "rmqtt-shared-subscription",
                reason: e.to_string(),
            })?;

        // rmqtt alone resends a resumed session's unacknowledged deliveries newest first.
        {
            let mut shared = scx.extends.shared_mut().await;
            let inner = std::mem::replace(
                &mut *shared,
                Box::new(rmqtt::shared::DefaultShared::new(None)),
            );
            *shared = Box::new(resume::InOrder(inner));
        }

        let register = scx.extends.hook_mgr().register();
        let arrivals = Arc::new(deadline::Arrivals::default());
        let drops = Arc::new(drops::Drops::default());
        let mut kinds = vec![
            Type::ClientConnect,
            Type::ClientAuthenticate,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::MessageDropped,
        ];
        if consumer.is_some() {
            kinds.push(Type::MessagePublish);
        }
        for kind in kinds {
            let hooks = Hooks {
                gate: gate.clone(),
                consumer: consumer.clone(),
                arrivals: arrivals.clone(),
                drops: drops.clone(),
            };
            register.add_priority(kind, 100, Box::new(hooks)).await;
        }
        register.start().await;

        let device_listener = |name: &str, addr: SocketAddr| {
            Builder::new()
                .name(name)
                .laddr(addr)
                .allow_anonymous(false)
                .nodelay(true)
                .max_packet_size(config.max_packet_size)
                .session_expiry_interval(config.session_expiry)
                .max_session_expiry_interval(config.session_expiry)
                // Queued messages live as long as their session (which the session expiry
                // bounds), and deliveries carry no Message Expiry Interval property (5 bytes
                // on every PUBLISH to an MQTT 5 device).
                .message_expiry_interval(Duration::ZERO)
                // MQTT 5 topic aliases both ways: a device may alias its upstream topic, and
                // a device that accepts aliases (Topic Alias Maximum in its CONNECT) gets its
                // inbox topics aliased after their first delivery on each connection.
                .max_topic_aliases(TOPIC_ALIASES)
                .max_mqueue_len(config.max_queue)
                .handshake_timeout(config.connect_timeout)
                .max_subscriptions(config.max_subscriptions)
                // A server restarted after a crash must get its port back at once, not after
                // the dead process's connections leave TIME_WAIT.
                .reuseaddr(Some(true))
        };
        let mut server = MqttServer::new(scx.clone());
        let mut tcp = None;
        if let Some(addr) = config.tcp {
            let listener = device_listener("tcp", addr)
                .bind()
                .and_then(|l| l.tcp())
                .map_err(|e| bind_error(addr, e))?;
            tcp = Some(listener.local_addr().map_err(|e| bind_error(addr, e))?);
            server = server.listener_by_id(listener, 1);
        }
        let mut ws = None;
        if let Some(addr) = config.ws {
            let listener = device_listener("ws", addr)
                .bind()
                .and_then(|l| l.ws())
                .map_err(|e| bind_error(addr, e))?;
            ws = Some(listener.local_addr().map_err(|e| bind_error(addr, e))?);
            server = server.listener_by_id(listener, 2);
        }
        let internal_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let internal = Builder::new()
            .name("hub")
            .laddr(internal_addr)
            .allow_anonymous(false)
            .nodelay(true)
            .max_packet_size(16 * 1024 * 1024)
            .max_inflight(std::num::NonZeroU16::new(1024).unwrap_or(std::num::NonZeroU16::MIN))
            .max_mqueue_len(1_000_000)
            .handshake_timeout(config.connect_timeout)
            .session_expiry_interval(config.session_expiry)
            .message_expiry_interval(Duration::ZERO)
            .bind()
            .and_then(|l| l.tcp())
            .map_err(|e| bind_error(internal_addr, e))?;
        let internal_addr = internal
            .local_addr()
            .map_err(|e| bind_error(internal_addr, e))?;
        let server = server.listener_by_id(internal, INTERNAL_LISTENER).build();
        let mut wanted = Vec::new();
        if let Some(addr) = config.tls {
            wanted.push((tls::Secure::Mqtt, addr));
        }
        if let Some(addr) = config.wss {
            wanted.push((tls::Secure::WebSocket, addr));
        }
        let secure = match (wanted.is_empty(), config.certificate) {
            (true, _) => None,
            (false, None) => return Err(BrokerError::NoCertificate),
            (false, Some(files)) => {
                // Listener ids from 16: room below for the plain listeners.
                let template = device_listener("tls", SocketAddr::from(([127, 0, 0, 1], 0)));
                Some(tls::SecureListeners::start(
                    &scx, template, files, &wanted, 16,
                )?)
            }
        };
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "broker stopped");
            }
        });
        let mut listeners = vec![internal_addr];
        listeners.extend(tcp.iter().chain(&ws));
        if let Some(secure) = &secure {
            let kinds = [tls::Secure::Mqtt, tls::Secure::WebSocket];
            listeners.extend(kinds.into_iter().filter_map(|kind| secure.addr(kind)));
        }
        let deadline = deadline::spawn(listeners, config.connect_timeout, arrivals);
        // A client id no device or MQTT client can have (`$` is not in the id grammar).
        let publisher = Id::new(scx.node.id(), 0, None, None, "$in-process".into(), None);
        Ok(Self {
            scx,
            publisher,
            tcp,
            ws,
            internal: internal_addr,
            server,
            secure,
            deadline,
        })
    }

    /// The bound MQTT/TCP address for devices.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The bound MQTT/WebSocket address for devices.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws
    }

    /// The bound MQTT/TLS address for devices.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.secure.as_ref().and_then(|s| s.addr(tls::Secure::Mqtt))
    }

    /// The bound MQTT/WebSocket/TLS address for devices.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.secure
            .as_ref()
            .and_then(|s| s.addr(tls::Secure::WebSocket))
    }

    /// Reads the certificate chain and key again and serves new TLS connections with them;
    /// connections already made keep theirs. On an error the TLS listeners go on with the
    /// certificate they had. Without TLS listeners, does nothing.
    pub async fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.secure {
            Some(secure) => secure.reload().await,
            None => Ok(()),
        }
    }

    /// The loopback address the hub connects to.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal
    }

    /// Routes a publish from the in-process hub to its subscribers' sessions (online or
    /// not), storing it first when it is retained. Returns once every subscriber's session
    /// has it queued: the broker's equivalent of a PUBACK.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: Qos,
        retain: bool,
    ) -> Result<(), PublishError> {
        let publish = Publish::from(CodecPublish {
            dup: false,
            retain,
            qos: match qos {
                Qos::AtMostOnce => QoS::AtMostOnce,
                Qos::AtLeastOnce => QoS::AtLeastOnce,
            },
            topic: topic.into(),
            packet_id: None,
            payload,
            // Not `None`: rmqtt 0.24 puts the topic alias it assigns for an MQTT 5 recipient
            // into the properties, and with none it sends an empty topic and no alias.
            properties: Some(PublishProperties::default()),
        });
        let from = From::from_system(self.publisher.clone());
        SessionState::forwards(&self.scx, from, publish, false, None)
            .await
            .map_err(|e| PublishError {
                topic: topic.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Stops accepting connections (the listening sockets close).
    pub async fn stop_accepting(&self) {
        if let Some(secure) = &self.secure {
            secure.stop_accepting().await;
        }
        self.server.abort();
        if let Some(deadline) = &self.deadline {
            deadline.abort();
        }
        while !self.server.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    /// Closes every live connection except those whose client id starts with `keep`
    /// (the hub's own, so it can finish its work).
    pub async fn disconnect_all(&self, keep: &str) {
        let ids: Vec<_> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|entry| entry.id())
            .collect();
        for id in ids {
            if id.client_id.starts_with(keep) {
                continue;
            }
            let mut entry = self.scx.extends.shared().await.entry(id);
            let _ = entry.kick(true, true, true).await;
        }
    }

    /// Ends the subscriptions whose filter starts with `filter_prefix` in every session
    /// (connected or not) whose client id starts with `client_prefix`; returns how many. A
    /// user who is no longer someone's contact stops receiving their presence at once.
    pub async fn end_subscriptions(&self, client_prefix: &str, filter_prefix: &str) -> usize {
        let ids: Vec<_> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|entry| entry.id())
            .filter(|id| id.client_id.starts_with(client_prefix))
            .collect();
        let mut ended = 0;
        for id in ids {
            let entry = self.scx.extends.shared().await.entry(id);
            let Some(subscriptions) = entry.subscriptions().await else {
                continue;
            };
            for sub in subscriptions {
                if !sub.topic.starts_with(filter_prefix) {
                    continue;
                }
                let unsubscribe = Unsubscribe {
                    topic_filter: sub.topic.clone(),
                    shared_group: sub.opts.shared_group().cloned(),
                };
                match entry.unsubscribe(&unsubscribe).await {
                    Ok(true) => ended += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(client_id = &*sub.clientid, filter = &*sub.topic, error = %e, "could not end a subscription");
                    }
                }
            }
        }
        ended
    }

    /// Closes one device's connection and removes its session (a revoked device).
    pub async fn kick(&self, client_id: &str) {
        let ids: Vec<_> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|entry| entry.id())
            .filter(|id| &*id.client_id == client_id)
            .collect();
        for id in ids {
            let mut entry = self.scx.extends.shared().await.entry(id);
            let _ = entry.kick(true, true, true).await;
        }
    }
}
