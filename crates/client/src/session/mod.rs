//! The device's side of the protocol, without IO: what a device does (spec section 13).
//!
//! In the manner of quinn-proto, a [`Session`] never touches a socket, a clock or a random
//! number generator. The driver feeds it commands from the application (`send`, `mark_read`,
//! ...), what happens on the connection (`handle_connected`, `handle_publish`, ...) and the
//! time (`handle_timeout`, at the moment `poll_timeout` named), each call with a [`Now`]:
//! proto's reading of the driver's monotonic clock (a `Moment` since its origin) and of the
//! wall clock. Randomness comes as seeds in [`Settings`]. The driver then takes the results
//! from [`Session::poll`]: MQTT publishes and subscriptions to make, events for the
//! application, and answers to the calls that wait for the hub.
//!
//! The parts are modules of their own: [`pending`] (upstream packets waiting for an answer,
//! resent on every connection), [`timeline`] (deduplication and gaps by sequence number),
//! [`receipt`] (markers owed), [`markers`] (markers told to the application),
//! [`subscription`] (what the broker should hold), [`sync`] (catching up after a reconnect,
//! filling gaps), [`group`] (standing, rosters and receipts in groups) and [`inbound`] (what
//! arrives from the broker).

mod call;
mod group;
mod inbound;
mod markers;
mod pending;
mod receipt;
mod subscription;
mod sync;
mod timeline;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use mqchat_proto::body::{
    Availability, Body, ChatState, ClientState, Delivered, DeviceEntry, DeviceList, History,
    HistoryResult, Presence, Profile, Read, State, Sync, SyncResult,
};
use mqchat_proto::{
    ConversationRef, DeviceIdentity, GroupId, IdGenerator, MessageId, Moment, Packet, PacketKind,
    Registry, Routing, Seq, Timestamp, Topic, TopicRoot, UserId,
};

use crate::error::Error;
use crate::event::{Event, Sent};
use crate::group::{Group, MemberReceipt, Receipt};
use crate::state::SyncState;
use crate::ua::{Local, UserAgent};
use group::Groups;
use markers::Markers;
use pending::{Entry, Expect, InfoFor, Pending};
use receipt::{Marker, Receipts};
use subscription::{Change, Subscriptions};
use timeline::Timelines;

/// The driver's reading of both clocks with each call: `at` (monotonic) for deadlines,
/// `wall` for message ids, presence and the events the session stamps.
pub(crate) use mqchat_proto::Now;

/// The protocol's delivery guarantee, which the session's publishes and subscriptions carry.
pub(crate) use mqchat_proto::Qos;

/// An MQTT publish to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transmit {
    /// The topic.
    pub topic: String,
    /// The encoded packet (or nothing, to clear a retained message).
    pub payload: Vec<u8>,
    /// The QoS level.
    pub qos: Qos,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// The successful answer to a call that waits for the hub.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    /// An event was stored.
    Sent(Sent),
    /// A profile change was stored with this version.
    Version(u64),
    /// A sync result.
    Sync(SyncResult),
    /// A history result.
    History(HistoryResult),
    /// A group's profile and members.
    Group(Group),
    /// Who received and read a message.
    Receipt(Receipt),
    /// The request was carried out.
    Done,
    /// The user's devices.
    Devices(Vec<DeviceEntry>),
}

/// What the session asks of the driver.
#[derive(Debug)]
pub(crate) enum Output {
    /// Publish this.
    Publish(Transmit),
    /// Subscribe to these filters (one SUBSCRIBE packet).
    Subscribe(Vec<(String, Qos)>),
    /// Unsubscribe from these filters.
    Unsubscribe(Vec<String>),
    /// Tell the application.
    Event(Event),
    /// Answer the call waiting for `id`.
    Answer {
        /// The message id of the packet the call sent.
        id: MessageId,
        /// The answer.
        answer: Result<Answer, Error>,
    },
}

/// Whether the first connection is ready for use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Not connected yet, or the subscriptions are not acknowledged yet.
    Waiting,
    /// Connected and subscribed.
    Ready,
    /// The broker refused one of the device's own subscriptions.
    Refused(String),
}

/// How the session behaves.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The device.
    pub identity: DeviceIdentity,
    /// The topic root.
    pub root: TopicRoot,
    /// The packet types it knows.
    pub registry: Registry,
    /// Send `delivered` markers by itself.
    pub auto_delivered: bool,
    /// How long those wait to cover a burst.
    pub delivered_delay: Duration,
    /// How long requests wait for an answer.
    pub request_timeout: Duration,
    /// Sync after reconnecting.
    pub catch_up: bool,
    /// The presence published on connecting.
    pub presence: Presence,
    /// The last message id the device used before, if it kept it.
    pub ids_after: Option<MessageId>,
    /// Where the device stood when it last ran, if the application kept it.
    pub resume: Option<SyncState>,
    /// The server's SIP domain (spec 7.14).
    pub sip_domain: String,
    /// Randomness for SIP identifiers (Call-IDs, tags, branches).
    pub seed: u64,
    /// Randomness for the low bits of message ids.
    pub id_seed: u64,
}

/// The device's protocol state.
#[derive(Debug)]
pub(crate) struct Session {
    me: DeviceIdentity,
    root: TopicRoot,
    registry: Registry,
    upstream: String,
    presence_topic: String,
    request_timeout: Duration,
    auto_delivered: bool,
    catch_up: bool,
    ids: IdGenerator,
    /// The random low bits of message ids (the session draws no randomness of its own).
    entropy: mqchat_sip::IdGen,
    /// The last message id made or sent, for [`SyncState::last_id`].
    last_id: Option<MessageId>,
    presence: Presence,
    pending: Pending,
    timelines: Timelines,
    receipts: Receipts,
    markers: Markers,
    groups: Groups,
    subscriptions: Subscriptions,
    calls: UserAgent,
    connected: bool,
    closed: bool,
    /// When the first connection came up, by the device's clock.
    first_connected_ms: Option<u64>,
    readiness: Readiness,
    /// SUBSCRIBE packets asked for on this connection and not yet acknowledged.
    unacknowledged: usize,
    /// The filters of SUBSCRIBE packets asked for, in order, until the driver reports their
    /// packet ids; then by packet id until their SUBACK.
    subscribe_order: VecDeque<Vec<String>>,
    subscribe_filters: HashMap<u16, Vec<String>>,
    /// The hub's change token after which to sync on the next reconnect.
    token: Option<u64>,
    /// The latest token whose changes are all fetched: `token` runs ahead of it while the
    /// events a catch-up found missing are being fetched. What [`SyncState`] keeps.
    settled: Option<u64>,
    /// The latest hub time seen on a durable event delivered to the application.
    last_hub_ts: Option<u64>,
    /// The catch-up under way fetches conversations the device did not know from this hub
    /// time, fixed when it began, before events queued meanwhile moved `last_hub_ts` on.
    catch_up_since: Option<u64>,
    out: VecDeque<Output>,
}

impl Session {
    /// A session that has not connected yet.
    pub fn new(settings: Settings) -> Self {
        let me = settings.identity;
        let root = settings.root;
        let resume = settings.resume.unwrap_or_default();
        let ids_after = [settings.ids_after, resume.last_id]
            .into_iter()
            .flatten()
            .max();
        let mut timelines = Timelines::default();
        for (conv, seq) in resume.positions {
            timelines.restore(conv, seq.get());
        }
        Self {
            upstream: root.topic(&Topic::Upstream {
                user: me.user.clone(),
                device: me.device.clone(),
            }),
            presence_topic: root.topic(&Topic::Presence {
                user: me.user.clone(),
                device: me.device.clone(),
            }),
            subscriptions: Subscriptions::new(&root, &me),
            calls: UserAgent::new(
                Local {
                    user: me.user.clone(),
                    device: me.device.clone(),
                    domain: settings.sip_domain,
                },
                settings.seed,
            ),
            registry: settings.registry,
            request_timeout: settings.request_timeout,
            auto_delivered: settings.auto_delivered,
            catch_up: settings.catch_up,
            ids: ids_after.map_or_else(IdGenerator::new, IdGenerator::resume_after),
            entropy: mqchat_sip::IdGen::new(settings.id_seed),
            last_id: ids_after,
            presence: settings.presence,
            pending: Pending::default(),
            timelines,
            receipts: Receipts::new(settings.delivered_delay),
            markers: Markers::default(),
            groups: Groups::default(),
            connected: false,
            closed: false,
            first_connected_ms: None,
            readiness: Readiness::Waiting,
            unacknowledged: 0,
            subscribe_order: VecDeque::new(),
            subscribe_filters: HashMap::new(),
            token: resume.token,
            settled: resume.token,
            // A device that kept a token but never saw an event fetches the conversations
            // that began while it was away from their start.
            last_hub_ts: resume
                .hub_time
                .map(Timestamp::unix_ms)
                .or(resume.token.map(|_| 0)),
            catch_up_since: None,
            out: VecDeque::new(),
            me,
            root,
        }
    }

    /// The next thing for the driver to do.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Moment> {
        let receipts = self
            .connected
            .then(|| self.receipts.next_deadline())
            .flatten();
        [
            self.pending.next_deadline(),
            receipts,
            self.calls.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the first connection is ready.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The wire form of the will: this device's presence, offline, retained.
    pub fn will(&self) -> Transmit {
        Transmit {
            topic: self.presence_topic.clone(),
            payload: Presence::new(Availability::Offline).to_packet().encode(),
            qos: Qos::AtLeastOnce,
            retain: true,
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed {
            return Err(Error::closed());
        }
        Ok(())
    }

    fn check(&self, packet: &Packet) -> Result<(), Error> {
        self.registry.validate(packet).map_err(Error::invalid)
    }

    fn publish(&mut self, topic: String, payload: Vec<u8>, qos: Qos, retain: bool) {
        self.out.push_back(Output::Publish(Transmit {
            topic,
            payload,
            qos,
            retain,
        }));
    }

    fn publish_upstream(&mut self, payload: Vec<u8>, qos: Qos) {
        self.publish(self.upstream.clone(), payload, qos, false);
    }

    fn emit(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// A new message id, after every id made or sent before.
    fn next_id(&mut self, now: Now) -> MessageId {
        // The high half of a SplitMix64 output is as random as the low one.
        let random = u32::try_from(self.entropy.next_u64() >> 32).unwrap_or_default();
        let id = self.ids.next(now.wall.unix_ms(), random);
        self.note_id(id);
        id
    }

    fn note_id(&mut self, id: MessageId) {
        self.last_id = Some(self.last_id.map_or(id, |last| last.max(id)));
    }

    /// Where the device stands, for the application to keep across restarts.
    pub fn sync_state(&self) -> SyncState {
        let mut state = SyncState::new();
        state.token = self.settled;
        state.positions = self
            .timelines
            .positions()
            .map(|(conv, seq)| (conv.clone(), Seq::new(seq)))
            .collect();
        state.hub_time = self.last_hub_ts.map(Timestamp::from_unix_ms);
        state.last_id = self.last_id;
        state
    }

    // ---- Commands from the application ----

    /// Sends a conversation event; the answer comes as [`Output::Answer`] with the returned
    /// id. Assigns an id if the packet has none; an id already pending is a resend, which
    /// waits for the same answer.
    pub fn send(&mut self, mut packet: Packet, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        match self.registry.provider(packet.kind).map(|p| p.routing()) {
            Some(Routing::Event) => {}
            None if !packet.ephemeral => {}
            _ => {
                return Err(Error::invalid(format!(
                    "packet type {} is not a conversation event",
                    packet.kind.0
                )));
            }
        }
        let Some(conv) = packet.conv.clone() else {
            return Err(Error::invalid("an event needs a conversation"));
        };
        self.check(&packet)?;
        strip_hub_fields(&mut packet);
        let id = match packet.id {
            Some(id) => id,
            None => self.next_id(now),
        };
        packet.id = Some(id);
        self.note_id(id);
        let payload = packet.encode();
        let entry = Entry {
            expect: Expect::Event { conv },
            payload: payload.clone(),
            deadline: None,
            held: 0,
        };
        if self.pending.insert(id, entry) && self.connected {
            self.publish_upstream(payload, Qos::AtLeastOnce);
        }
        Ok(id)
    }

    /// Sends an ephemeral packet (a chat state, or an extension type with `ephemeral` set).
    /// While offline it is dropped, as the broker would drop it.
    pub fn signal(&mut self, mut packet: Packet) -> Result<(), Error> {
        self.check_open()?;
        match self.registry.provider(packet.kind).map(|p| p.routing()) {
            Some(Routing::Signal) => {}
            None if packet.ephemeral => {}
            _ => {
                return Err(Error::invalid(format!(
                    "packet type {} is not an ephemeral signal",
                    packet.kind.0
                )));
            }
        }
        if packet.conv.is_none() {
            return Err(Error::invalid("a signal needs a conversation"));
        }
        self.check(&packet)?;
        strip_hub_fields(&mut packet);
        if self.connected {
            self.publish_upstream(packet.encode(), Qos::AtMostOnce);
        }
        Ok(())
    }

    /// Sends a chat state.
    pub fn chat_state(&mut self, conv: ConversationRef, state: State) -> Result<(), Error> {
        let mut packet = ChatState { state }.to_packet();
        packet.conv = Some(conv);
        self.signal(packet)
    }

    /// Marks `conv` delivered up to `up_to`, now or on the next connection.
    pub fn mark_delivered(
        &mut self,
        conv: ConversationRef,
        up_to: Seq,
        now: Now,
    ) -> Result<(), Error> {
        self.check_open()?;
        let up_to = check_marker(up_to)?;
        self.receipts.mark_delivered(&conv, up_to, now.at);
        self.flush_receipts(now.at);
        Ok(())
    }

    /// Marks `conv` read up to `up_to`, now or on the next connection.
    pub fn mark_read(
        &mut self,
        conv: ConversationRef,
        up_to: Seq,
        private: bool,
        now: Now,
    ) -> Result<(), Error> {
        self.check_open()?;
        let up_to = check_marker(up_to)?;
        self.receipts.mark_read(&conv, up_to, private);
        self.flush_receipts(now.at);
        Ok(())
    }

    /// Sets this device's presence, published now and on every connection.
    pub fn set_presence(&mut self, presence: Presence, now: Now) -> Result<(), Error> {
        self.check_open()?;
        self.check(&presence.to_packet())?;
        self.presence = presence;
        if self.connected {
            self.publish_presence(now);
        }
        Ok(())
    }

    fn publish_presence(&mut self, now: Now) {
        let mut packet = self.presence.to_packet();
        packet.ts = Some(now.wall.unix_ms());
        self.publish(
            self.presence_topic.clone(),
            packet.encode(),
            Qos::AtLeastOnce,
            true,
        );
    }

    /// Asks the hub to change the user's profile; answered with the new version.
    pub fn set_profile(&mut self, profile: &Profile, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        let packet = profile.to_packet();
        self.check(&packet)?;
        Ok(self.request(packet, Expect::Profile, now))
    }

    /// Asks the hub which conversations changed.
    pub fn sync(&mut self, query: &Sync, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        let packet = query.to_packet();
        self.check(&packet)?;
        Ok(self.request(packet, Expect::Sync, now))
    }

    /// Asks the hub for a page of a conversation's events.
    pub fn history(
        &mut self,
        conv: ConversationRef,
        query: &History,
        now: Now,
    ) -> Result<MessageId, Error> {
        self.check_open()?;
        let mut packet = query.to_packet();
        packet.conv = Some(conv);
        self.check(&packet)?;
        Ok(self.request(packet, Expect::History, now))
    }

    /// Sends a group request that changes a group (group-create, group-admin, group-join);
    /// answered with the [`Sent`] of the group event it made. Like an event, it waits for
    /// as long as the session lives and is resent on every connection: the hub
    /// deduplicates it by its id.
    pub fn group_change(&mut self, mut packet: Packet, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        if !matches!(
            packet.kind,
            PacketKind::GROUP_CREATE | PacketKind::GROUP_ADMIN | PacketKind::GROUP_JOIN
        ) {
            return Err(Error::invalid(format!(
                "packet type {} does not change a group",
                packet.kind.0
            )));
        }
        self.check(&packet)?;
        strip_hub_fields(&mut packet);
        let id = self.next_id(now);
        packet.id = Some(id);
        let payload = packet.encode();
        let entry = Entry {
            expect: Expect::GroupChange,
            payload: payload.clone(),
            deadline: None,
            held: 0,
        };
        if self.pending.insert(id, entry) && self.connected {
            self.publish_upstream(payload, Qos::AtLeastOnce);
        }
        Ok(id)
    }

    /// Asks the hub for a group's profile and members.
    pub fn group_info(&mut self, group: &GroupId, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        Ok(self.request_group_info(group, InfoFor::App, now))
    }

    fn request_group_info(&mut self, group: &GroupId, purpose: InfoFor, now: Now) -> MessageId {
        let mut packet = mqchat_proto::body::GroupInfo.to_packet();
        packet.conv = Some(ConversationRef::Group(group.clone()));
        if purpose == InfoFor::Session {
            self.groups.fetching(group);
        }
        let expect = Expect::GroupInfo {
            group: group.clone(),
            purpose,
        };
        self.request(packet, expect, now)
    }

    /// Asks for `group`'s roster if the session keeps receipts there and has none.
    pub(super) fn want_roster(&mut self, group: &GroupId, now: Now) {
        if self.groups.needs_roster(group) {
            self.request_group_info(group, InfoFor::Session, now);
        }
    }

    /// Who received and read this user's message `seq` in `conv`: at once from what the
    /// session knows (`Ok`), or once the group's roster has been asked for (`Err`, the id
    /// of the request to wait for).
    pub fn receipt(
        &mut self,
        conv: ConversationRef,
        seq: Seq,
        now: Now,
    ) -> Result<Result<Receipt, MessageId>, Error> {
        self.check_open()?;
        let seq = check_marker(seq)?;
        match &conv {
            ConversationRef::Group(group) => match self.groups.receipt(&self.me.user, group, seq) {
                Some(receipt) => Ok(Ok(receipt)),
                None => Ok(Err(self.request_group_info(
                    group,
                    InfoFor::Receipt(seq),
                    now,
                ))),
            },
            ConversationRef::Direct(peer) => {
                let members = if *peer == self.me.user {
                    Vec::new()
                } else {
                    let delivered = self.markers.told(&conv, peer, markers::Kind::Delivered);
                    let read = self.markers.told(&conv, peer, markers::Kind::Read);
                    vec![MemberReceipt::new(peer.clone(), delivered, read, seq)]
                };
                Ok(Ok(Receipt {
                    conv,
                    seq: Seq::new(seq),
                    members,
                }))
            }
            // A party outside mqchat is not a member with markers in the session.
            ConversationRef::Sip(_) => Ok(Ok(Receipt {
                conv,
                seq: Seq::new(seq),
                members: Vec::new(),
            })),
        }
    }

    fn request(&mut self, mut packet: Packet, expect: Expect, now: Now) -> MessageId {
        let id = self.next_id(now);
        packet.id = Some(id);
        let payload = packet.encode();
        let entry = Entry {
            expect,
            payload: payload.clone(),
            deadline: Some(now.at + self.request_timeout),
            held: 0,
        };
        self.pending.insert(id, entry);
        if self.connected {
            self.publish_upstream(payload, Qos::AtLeastOnce);
        }
        id
    }

    /// Starts or stops watching a user's presence (while active).
    pub fn watch_presence(&mut self, user: &UserId, watch: bool) -> Result<(), Error> {
        self.check_open()?;
        if self.subscriptions.watch_presence(user, watch) {
            self.apply_subscriptions();
        }
        Ok(())
    }

    /// Starts or stops watching a user's profile.
    pub fn watch_profile(&mut self, user: &UserId, watch: bool) -> Result<(), Error> {
        self.check_open()?;
        if self.subscriptions.watch_profile(user, watch) {
            self.apply_subscriptions();
        }
        Ok(())
    }

    /// Goes active or inactive (spec section 12). Going active again also syncs.
    pub fn set_active(&mut self, active: bool, now: Now) -> Result<(), Error> {
        self.check_open()?;
        if self.subscriptions.set_active(active) {
            self.apply_subscriptions();
            self.request(ClientState { active }.to_packet(), Expect::ClientState, now);
            if active && self.connected {
                self.start_catch_up(now);
            }
        }
        Ok(())
    }

    /// A request the hub answers with a plain `ack` (spec 7.12, 7.13).
    pub fn simple_request(&mut self, packet: Packet, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        self.check(&packet)?;
        Ok(self.request(packet, Expect::Done, now))
    }

    /// Asks for the user's devices.
    pub fn devices(&mut self, now: Now) -> Result<MessageId, Error> {
        self.check_open()?;
        Ok(self.request(DeviceList.to_packet(), Expect::Devices, now))
    }

    fn apply_subscriptions(&mut self) {
        if self.connected {
            let change = self.subscriptions.reconcile();
            self.request_change(change);
        }
    }

    fn request_change(&mut self, change: Change) {
        if !change.unsubscribe.is_empty() {
            self.out.push_back(Output::Unsubscribe(change.unsubscribe));
        }
        if !change.subscribe.is_empty() {
            let filters = change.subscribe.iter().map(|(f, _)| f.clone()).collect();
            self.subscribe_order.push_back(filters);
            self.unacknowledged += 1;
            self.out.push_back(Output::Subscribe(change.subscribe));
        }
    }

    /// Closes the session: fails every waiting call, sends the markers owed and publishes
    /// this device's presence as offline with its last-active time. Returns whether the
    /// connection is up, so that the driver sends DISCONNECT after these.
    pub fn close(&mut self, now: Now) -> bool {
        if self.closed {
            return false;
        }
        self.calls.close(now.at);
        self.pump_calls();
        self.closed = true;
        for (id, entry) in self.pending.drain() {
            if entry.expect.is_app() {
                self.out.push_back(Output::Answer {
                    id,
                    answer: Err(Error::closed()),
                });
            }
        }
        if !self.connected {
            return false;
        }
        let owed = self.receipts.take_all();
        self.publish_markers(owed);
        self.presence = Presence {
            availability: Availability::Offline,
            status: self.presence.status.take(),
            last_active: Some(now.wall.unix_ms()),
        };
        self.publish_presence(now);
        self.connected = false;
        true
    }

    // ---- The connection ----

    /// The broker accepted the connection.
    pub fn handle_connected(&mut self, session_present: bool, now: Now) {
        if self.closed {
            return;
        }
        self.connected = true;
        self.unacknowledged = 0;
        self.subscribe_order.clear();
        self.subscribe_filters.clear();
        self.emit(Event::Connected { session_present });
        let change = self.subscriptions.connected(session_present);
        self.request_change(change);
        self.publish_presence(now);
        let resend: Vec<Vec<u8>> = self
            .pending
            .unconfirmed()
            .map(|(_, entry)| entry.payload.clone())
            .collect();
        let state_pending = self
            .pending
            .unconfirmed()
            .any(|(_, entry)| entry.expect == Expect::ClientState);
        for payload in resend {
            self.publish_upstream(payload, Qos::AtLeastOnce);
        }
        // The hub takes a device that connects for active: one in the background says so.
        if !self.subscriptions.is_active() && !state_pending {
            self.request(
                ClientState { active: false }.to_packet(),
                Expect::ClientState,
                now,
            );
        }
        // A device that kept its state catches up on its first connection too.
        let reconnect = self.first_connected_ms.is_some() || self.token.is_some();
        self.first_connected_ms.get_or_insert(now.wall.unix_ms());
        if reconnect {
            self.start_catch_up(now);
        } else if self.catch_up {
            self.request_baseline(now);
        }
        self.flush_receipts(now.at);
        self.calls.resend(now.at);
        self.pump_calls();
        if self.unacknowledged == 0 && self.readiness == Readiness::Waiting {
            self.readiness = Readiness::Ready;
        }
    }

    /// The connection dropped (or a reconnect attempt failed).
    pub fn handle_disconnected(&mut self, reason: String) {
        if std::mem::replace(&mut self.connected, false) {
            self.emit(Event::Disconnected { reason });
        }
    }

    /// A reconnection was refused for the device's credentials.
    pub fn handle_refused(&mut self, reason: String) {
        self.emit(Event::Refused { reason });
    }

    /// The driver sent a SUBSCRIBE with this packet id (in the order they were asked for).
    pub fn handle_subscribe_sent(&mut self, pkid: u16) {
        if let Some(filters) = self.subscribe_order.pop_front() {
            self.subscribe_filters.insert(pkid, filters);
        }
    }

    /// The broker answered a SUBSCRIBE: `granted` per filter, in order.
    pub fn handle_suback(&mut self, pkid: u16, granted: &[bool]) {
        let filters = self.subscribe_filters.remove(&pkid).unwrap_or_default();
        for (i, _) in granted.iter().enumerate().filter(|(_, ok)| !**ok) {
            let filter = filters.get(i).map_or("a filter", String::as_str);
            let detail = format!("the broker refused the subscription to {filter}");
            tracing::warn!("{detail}");
            if self.readiness == Readiness::Waiting {
                self.readiness = Readiness::Refused(detail.clone());
            }
            self.emit(Event::Error {
                id: None,
                code: mqchat_proto::ErrorCode::FORBIDDEN,
                detail: Some(detail),
            });
        }
        self.unacknowledged = self.unacknowledged.saturating_sub(1);
        if self.connected && self.unacknowledged == 0 && self.readiness == Readiness::Waiting {
            self.readiness = Readiness::Ready;
        }
    }

    /// Time passed: requests time out (the session's own are asked again), delayed markers
    /// go out.
    pub fn handle_timeout(&mut self, now: Now) {
        for (id, entry) in self.pending.expire(now.at) {
            if entry.held > 0 {
                self.send_again(id, entry);
            } else if entry.expect.is_app() {
                self.fail(id, entry.expect, Error::timeout(), now);
            } else {
                self.retry(entry, now);
            }
        }
        self.flush_receipts(now.at);
        self.calls.handle_timeout(now.at);
        self.pump_calls();
    }

    fn flush_receipts(&mut self, at: Moment) {
        if self.connected {
            let owed = self.receipts.take(at);
            self.publish_markers(owed);
        }
    }

    fn publish_markers(&mut self, markers: Vec<Marker>) {
        for marker in markers {
            let packet = match marker {
                Marker::Delivered { conv, up_to } => {
                    let mut packet = Delivered { up_to }.to_packet();
                    packet.conv = Some(conv);
                    packet
                }
                Marker::Read {
                    conv,
                    up_to,
                    private,
                } => {
                    let mut packet = Read { up_to, private }.to_packet();
                    packet.conv = Some(conv);
                    packet
                }
            };
            self.publish_upstream(packet.encode(), Qos::AtLeastOnce);
        }
    }

    /// A pending packet failed for good: tell whoever waits for it.
    fn fail(&mut self, id: MessageId, expect: Expect, error: Error, now: Now) {
        match expect {
            Expect::Fill { conv } => {
                tracing::warn!(%conv, "could not fetch missing events: {error}");
                let events = self.timelines.abandon(&conv);
                self.deliver_events(&conv, events, now);
                self.release_markers(&conv);
                self.settle();
            }
            Expect::Baseline => tracing::warn!("could not sync: {error}"),
            Expect::ClientState => {
                tracing::warn!(
                    "the hub did not take the client state (pushes may differ): {error}"
                );
            }
            Expect::GroupInfo {
                group,
                purpose: InfoFor::Session,
            } => {
                tracing::debug!(%group, "could not fetch the group's roster: {error}");
                self.groups.fetch_failed(&group);
            }
            Expect::CatchUp => {
                tracing::warn!("could not sync: {error}");
                self.end_catch_up(now);
            }
            _ => self.out.push_back(Output::Answer {
                id,
                answer: Err(error),
            }),
        }
    }
}

/// Removes the envelope fields only the hub sets: the hub ignores them, so they would only
/// cost bytes.
fn strip_hub_fields(packet: &mut Packet) {
    packet.seq = None;
    packet.ts = None;
    packet.from = None;
    packet.device = None;
}

/// A marker's position as the session keeps it, unless it is [`Seq::NONE`].
fn check_marker(up_to: Seq) -> Result<u64, Error> {
    if up_to == Seq::NONE {
        return Err(Error::invalid("markers cover sequence numbers from 1"));
    }
    Ok(up_to.get())
}
