//! The session task: drives the sans-IO [`Session`] with commands from [`Client`] handles,
//! what the connection task reports, and timers; hands the session's publishes and
//! subscriptions to rumqttc and its answers to the calls waiting for them.
//!
//! This task never awaits rumqttc's request channel: requests go in with `try_*`, and what
//! does not fit waits in an outbox until the connection task has drained the channel. So a
//! full channel while offline never stops commands (`close` in particular) from being
//! handled.
//!
//! [`Client`]: crate::Client

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mqchat_proto::body::{History, Presence, Profile, State, Sync};
use mqchat_proto::{ConversationRef, GroupId, MessageId, Moment, Packet, Seq, Timestamp, UserId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill};
use rumqttc::v5::{AsyncClient, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;
use crate::call::{Call, CallTarget, Rejection};
use crate::config::{ClientConfig, Endpoint};
use crate::connection::{self, NetEvent};
use crate::error::Error;
use crate::event::Event;
use crate::session::{Answer, Now, Output, Qos, Readiness, Session, Settings, Transmit};
use crate::state::SyncState;
use crate::tls;

/// Where the session stood when it ended, for `Client::close` to return.
pub(crate) type FinalState = Arc<Mutex<Option<SyncState>>>;

/// Room in rumqttc's request channel.
const REQUEST_CAPACITY: usize = 256;

/// How long `close` waits for the DISCONNECT to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon to try again to hand over requests that did not fit rumqttc's channel.
const OUTBOX_RETRY: Duration = Duration::from_millis(10);

/// A reply channel for a call.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A call from a `Client` handle.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a conversation event; answered when the hub stored it.
    Send(Packet, Reply<Answer>),
    /// Send an ephemeral packet.
    Signal(Packet, Reply<()>),
    /// Send a chat state.
    ChatState(ConversationRef, State, Reply<()>),
    /// Mark delivered.
    MarkDelivered(ConversationRef, Seq, Reply<()>),
    /// Mark read.
    MarkRead(ConversationRef, Seq, bool, Reply<()>),
    /// Set this device's presence.
    SetPresence(Presence, Reply<()>),
    /// Change the profile; answered with the version.
    SetProfile(Profile, Reply<Answer>),
    /// Start or stop watching presence.
    WatchPresence(UserId, bool, Reply<()>),
    /// Start or stop watching a profile.
    WatchProfile(UserId, bool, Reply<()>),
    /// Go active or inactive.
    SetActive(bool, Reply<()>),
    /// Ask for a page of history.
    History(ConversationRef, History, Reply<Answer>),
    /// Ask what changed.
    Sync(Sync, Reply<Answer>),
    /// Send a group request that changes a group; answered with its group event.
    GroupChange(Packet, Reply<Answer>),
    /// Ask for a group's profile and members.
    GroupInfo(GroupId, Reply<Answer>),
    /// Ask who received and read a message.
    Receipt(ConversationRef, Seq, Reply<Answer>),
    /// Send a request the hub answers with a plain `ack`.
    Request(Packet, Reply<Answer>),
    /// Ask for the user's devices.
    Devices(Reply<Answer>),
    /// Read where the device stands.
    State(Reply<SyncState>),
    /// Place a call: target, SDP offer.
    Call(CallTarget, String, Reply<Call>),
    /// Answer a call with an SDP answer.
    Answer(Call, String, Reply<()>),
    /// Refuse a call.
    Reject(Call, Rejection, Reply<()>),
    /// Hang up a call.
    Hangup(Call, Reply<()>),
    /// List the calls under way.
    Calls(Reply<Vec<Call>>),
    /// Close the connection.
    Close(Reply<()>),
}

/// One request for rumqttc's channel.
#[derive(Debug)]
enum Request {
    Publish {
        topic: String,
        /// Shared, so that a retry does not copy it.
        payload: bytes::Bytes,
        qos: QoS,
        retain: bool,
    },
    Subscribe(Vec<(String, Qos)>),
    Unsubscribe(String),
    Disconnect,
}

/// Starts the two tasks and waits for the first connection to be ready.
pub(crate) async fn start(
    config: ClientConfig,
    final_state: FinalState,
) -> Result<
    (
        mpsc::UnboundedSender<Command>,
        mpsc::UnboundedReceiver<Event>,
    ),
    Error,
> {
    config.validate()?;
    let session = Session::new(Settings {
        identity: config.identity.clone(),
        root: config.root.clone(),
        registry: config.registry.clone(),
        auto_delivered: config.auto_delivered,
        delivered_delay: config.delivered_delay,
        request_timeout: config.request_timeout,
        catch_up: config.catch_up,
        presence: config.presence.clone(),
        ids_after: config.ids_after,
        resume: config.resume.clone(),
        sip_domain: config.sip_domain.clone(),
        seed: rand::random(),
        id_seed: rand::random(),
    });
    let options = mqtt_options(&config, session.will())?;
    let (mqtt, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let (net_tx, net_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let backoff = Backoff::new(config.backoff_min, config.backoff_max);
    tokio::spawn(connection::run(eventloop, net_tx, stop_rx, backoff));
    let driver = Driver {
        session,
        clock: Clock::start(),
        mqtt,
        commands: commands_rx,
        net: net_rx,
        stop: Some(stop_tx),
        events: events_tx,
        waiters: HashMap::new(),
        outbox: VecDeque::new(),
        ready: Some(ready_tx),
        closing: None,
        close_replies: Vec::new(),
        final_state,
    };
    tokio::spawn(driver.run());
    match tokio::time::timeout(config.connect_timeout, ready_rx).await {
        Ok(Ok(Ok(()))) => Ok((commands_tx, events_rx)),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(Error::closed()),
        // Dropping `commands_tx` closes the half-started client.
        Err(_) => Err(Error::unreachable(
            Some(format!("not connected within {:?}", config.connect_timeout)),
            None,
        )),
    }
}

/// Topic aliases the SDK accepts from the broker per connection (its inboxes, reply topic
/// and contacts' presence).
const TOPIC_ALIASES: u16 = 16;

fn mqtt_options(config: &ClientConfig, will: Transmit) -> Result<MqttOptions, Error> {
    let client_id = config.identity.client_id();
    let tls = || -> Result<TlsConfiguration, Error> {
        Ok(TlsConfiguration::Rustls(tls::client_config(
            config.ca_file.as_deref(),
        )?))
    };
    let mut options = match &config.endpoint {
        Endpoint::Tcp {
            host,
            port,
            tls: secure,
        } => {
            let mut options = MqttOptions::new(client_id, host.clone(), *port);
            if *secure {
                options.set_transport(Transport::tls_with_config(tls()?));
            }
            options
        }
        Endpoint::WebSocket { url, tls: secure } => {
            // rumqttc takes host and port from the URL for WebSocket; the port here is unused.
            let mut options = MqttOptions::new(client_id, url.clone(), 0);
            options.set_transport(match secure {
                true => Transport::wss_with_config(tls()?),
                false => Transport::Ws,
            });
            options
        }
    };
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    options
        .set_credentials(config.identity.user.as_str(), config.password.clone())
        // `ClientConfig::validate` checked it is at least 5 s, which rumqttc asserts.
        .set_keep_alive(config.keep_alive)
        .set_clean_start(config.clean_start)
        .set_session_expiry_interval(Some(secs(config.session_expiry)))
        .set_max_packet_size(Some(config.max_packet_size))
        // The broker may replace the inbox topics it delivers by MQTT 5 topic aliases (spec
        // section 3); rumqttc resolves them.
        .set_topic_alias_max(Some(TOPIC_ALIASES))
        .set_connection_timeout(config.connect_timeout.as_secs().max(1))
        .set_last_will(LastWill::new(
            will.topic,
            will.payload,
            QoS::AtLeastOnce,
            true,
            None,
        ));
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(config.connect_timeout.as_secs().max(1));
    options.set_network_options(network);
    Ok(options)
}

fn qos(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// The driver's clocks: the session's moments count from `origin`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    origin: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// A reading of both clocks, for the session.
    fn now(self) -> Now {
        Now {
            at: Moment::from_origin(self.origin.elapsed()),
            wall: Timestamp::from_system(SystemTime::now()),
        }
    }

    /// When the monotonic clock reaches `moment`.
    fn instant(self, moment: Moment) -> Instant {
        self.origin + moment.since_origin()
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct Driver {
    session: Session,
    clock: Clock,
    mqtt: AsyncClient,
    commands: mpsc::UnboundedReceiver<Command>,
    net: mpsc::UnboundedReceiver<NetEvent>,
    /// Tells the connection task to stop; dropped (which also stops it) when this task ends.
    stop: Option<oneshot::Sender<()>>,
    events: mpsc::UnboundedSender<Event>,
    waiters: HashMap<MessageId, Vec<Reply<Answer>>>,
    /// Requests that did not fit rumqttc's channel yet, in order.
    outbox: VecDeque<Request>,
    /// Answers `connect` once the first connection is ready or has failed.
    ready: Option<oneshot::Sender<Result<(), Error>>>,
    /// Closing: until when to wait for the DISCONNECT to be written.
    closing: Option<Instant>,
    close_replies: Vec<Reply<()>>,
    final_state: FinalState,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.pump();
            let deadline = self.session.poll_timeout().map(|at| self.clock.instant(at));
            tokio::select! {
                command = self.commands.recv(), if self.closing.is_none() => match command {
                    Some(command) => self.command(command),
                    // Every handle was dropped.
                    None => self.begin_close(),
                },
                event = self.net.recv() => match event {
                    Some(event) => {
                        if self.network(event) {
                            break;
                        }
                    }
                    // The connection task ended: nothing more can happen.
                    None => break,
                },
                () = sleep_until(deadline) => self.session.handle_timeout(self.clock.now()),
                // The connection task reports no progress on publishes: poll the channel.
                () = tokio::time::sleep(OUTBOX_RETRY), if !self.outbox.is_empty() => {}
                () = sleep_until(self.closing) => {
                    tracing::warn!("the DISCONNECT was not written in time; dropping the connection");
                    break;
                }
            }
        }
        self.finish();
    }

    /// Moves the session's output to rumqttc, the application and waiting calls.
    fn pump(&mut self) {
        while let Some(output) = self.session.poll() {
            match output {
                Output::Publish(transmit) => self.outbox.push_back(Request::Publish {
                    topic: transmit.topic,
                    payload: transmit.payload.into(),
                    qos: qos(transmit.qos),
                    retain: transmit.retain,
                }),
                Output::Subscribe(filters) => self.outbox.push_back(Request::Subscribe(filters)),
                Output::Unsubscribe(filters) => self
                    .outbox
                    .extend(filters.into_iter().map(Request::Unsubscribe)),
                Output::Event(event) => {
                    // The application may have dropped its `Events`; then nobody listens.
                    let _ = self.events.send(event);
                }
                Output::Answer { id, answer } => self.answer(id, answer),
            }
        }
        self.flush();
        if let Some(ready) = self.ready.take() {
            match self.session.readiness() {
                Readiness::Waiting => self.ready = Some(ready),
                Readiness::Ready => {
                    let _ = ready.send(Ok(()));
                }
                Readiness::Refused(detail) => {
                    let _ = ready.send(Err(Error::invalid(format!(
                        "{detail} (is the topic root right?)"
                    ))));
                }
            }
        }
    }

    fn answer(&mut self, id: MessageId, answer: Result<Answer, Error>) {
        let Some(mut waiters) = self.waiters.remove(&id) else {
            return;
        };
        // Calls that sent the same id twice wait for the same answer.
        let last = waiters.pop();
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
        }
        if let Some(waiter) = last {
            let _ = waiter.send(answer);
        }
    }

    /// Hands queued requests to rumqttc until its channel is full.
    fn flush(&mut self) {
        while let Some(request) = self.outbox.pop_front() {
            let sent = match &request {
                Request::Publish {
                    topic,
                    payload,
                    qos,
                    retain,
                } => self
                    .mqtt
                    .try_publish(topic.clone(), *qos, *retain, payload.clone()),
                Request::Subscribe(filters) => self.mqtt.try_subscribe_many(
                    filters.iter().map(|(f, q)| Filter::new(f.clone(), qos(*q))),
                ),
                Request::Unsubscribe(filter) => self.mqtt.try_unsubscribe(filter.clone()),
                Request::Disconnect => self.mqtt.try_disconnect(),
            };
            if sent.is_err() {
                self.outbox.push_front(request);
                break;
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.clock.now();
        let session = &mut self.session;
        match command {
            Command::Send(packet, reply) => match session.send(packet, now) {
                Ok(id) => self.waiters.entry(id).or_default().push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::SetProfile(profile, reply) => {
                let id = session.set_profile(&profile, now);
                self.wait(id, reply);
            }
            Command::History(conv, query, reply) => {
                let id = session.history(conv, &query, now);
                self.wait(id, reply);
            }
            Command::Sync(query, reply) => {
                let id = session.sync(&query, now);
                self.wait(id, reply);
            }
            Command::GroupChange(packet, reply) => {
                let id = session.group_change(packet, now);
                self.wait(id, reply);
            }
            Command::GroupInfo(group, reply) => {
                let id = session.group_info(&group, now);
                self.wait(id, reply);
            }
            Command::Request(packet, reply) => {
                let id = session.simple_request(packet, now);
                self.wait(id, reply);
            }
            Command::Devices(reply) => {
                let id = session.devices(now);
                self.wait(id, reply);
            }
            Command::Receipt(conv, seq, reply) => match session.receipt(conv, seq, now) {
                Ok(Ok(receipt)) => {
                    let _ = reply.send(Ok(Answer::Receipt(receipt)));
                }
                Ok(Err(id)) => self.wait(Ok(id), reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Signal(packet, reply) => {
                let _ = reply.send(session.signal(packet));
            }
            Command::ChatState(conv, state, reply) => {
                let _ = reply.send(session.chat_state(conv, state));
            }
            Command::MarkDelivered(conv, up_to, reply) => {
                let _ = reply.send(session.mark_delivered(conv, up_to, now));
            }
            Command::MarkRead(conv, up_to, private, reply) => {
                let _ = reply.send(session.mark_read(conv, up_to, private, now));
            }
            Command::SetPresence(presence, reply) => {
                let _ = reply.send(session.set_presence(presence, now));
            }
            Command::WatchPresence(user, watch, reply) => {
                let _ = reply.send(session.watch_presence(&user, watch));
            }
            Command::WatchProfile(user, watch, reply) => {
                let _ = reply.send(session.watch_profile(&user, watch));
            }
            Command::SetActive(active, reply) => {
                let _ = reply.send(session.set_active(active, now));
            }
            Command::State(reply) => {
                let _ = reply.send(Ok(session.sync_state()));
            }
            Command::Call(target, sdp, reply) => {
                let _ = reply.send(session.call(&target, &sdp, now));
            }
            Command::Answer(call, sdp, reply) => {
                let _ = reply.send(session.answer_call(&call, &sdp, now));
            }
            Command::Reject(call, why, reply) => {
                let _ = reply.send(session.reject_call(&call, why, now));
            }
            Command::Hangup(call, reply) => {
                let _ = reply.send(session.hangup(&call, now));
            }
            Command::Calls(reply) => {
                let _ = reply.send(Ok(session.calls()));
            }
            Command::Close(reply) => {
                self.close_replies.push(reply);
                self.begin_close();
            }
        }
    }

    fn wait(&mut self, id: Result<MessageId, Error>, reply: Reply<Answer>) {
        match id {
            Ok(id) => self.waiters.entry(id).or_default().push(reply),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Handles a network event; true when the connection task has ended for good.
    fn network(&mut self, event: NetEvent) -> bool {
        let now = self.clock.now();
        match event {
            NetEvent::Connected { session_present } => {
                self.session.handle_connected(session_present, now);
            }
            NetEvent::Lost { error, first } => {
                // Requests not yet handed over were meant for the lost connection; the
                // session makes new ones for the next.
                self.outbox.clear();
                self.session.handle_disconnected(error.explain());
                if first {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(error));
                    }
                    return true;
                }
                if self.closing.is_some() {
                    return true;
                }
                if error.is_auth() {
                    self.session.handle_refused(error.explain());
                }
            }
            NetEvent::Publish { topic, payload } => match std::str::from_utf8(&topic) {
                Ok(topic) => self.session.handle_publish(topic, &payload, now),
                Err(_) => tracing::warn!("skipping a message whose topic is not UTF-8"),
            },
            NetEvent::SubscribeSent(pkid) => self.session.handle_subscribe_sent(pkid),
            NetEvent::SubAck { pkid, granted } => self.session.handle_suback(pkid, &granted),
            NetEvent::DisconnectSent => return true,
        }
        false
    }

    /// Starts closing: the session says goodbye (presence offline), then DISCONNECT goes
    /// out behind it; without a connection the connection task is simply stopped.
    fn begin_close(&mut self) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some(Instant::now() + CLOSE_TIMEOUT);
        if self.session.close(self.clock.now()) {
            self.pump();
            self.outbox.push_back(Request::Disconnect);
            self.flush();
        } else if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.session
            .handle_disconnected("the connection task ended".into());
        self.session.close(self.clock.now());
        self.pump();
        // Every event is out: the state covers exactly what the application was told.
        if let Ok(mut slot) = self.final_state.lock() {
            *slot = Some(self.session.sync_state());
        }
        for (_, waiters) in self.waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(Error::closed()));
            }
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(Error::closed()));
        }
        for reply in self.close_replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
        // Any command still queued is answered by its reply channel closing: `is_closed`.
    }
}
