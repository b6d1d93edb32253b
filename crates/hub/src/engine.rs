//! The upstream pipeline (spec section 8): identify, check, authorize, deduplicate, sequence
//! and commit, then deliver. One batch of PUBLISHes is one store transaction (group
//! commit), with a savepoint per packet so that a refused packet changes nothing.

use mqchat_proto::body::{
    Ack, Availability, Body, Contact, ContactState, ConversationEntry, Delivered, History,
    HistoryResult, Presence, Profile, Read, Sync, SyncResult, limits,
};
use mqchat_proto::upstream::{self, Inbound, Rejection, Route};
use mqchat_proto::{
    ConversationRef, DeviceIdentity, ErrorCode, GroupId, InboxBranch, Packet, PacketKind, Registry,
    Topic, TopicRoot, UserId,
};
use mqchat_store::archive::Position;
use mqchat_store::{
    Author, ConvId, ConversationRow, EventRow, GroupProfile, Membership, ParticipantRow,
    ProfileRow, Store, StoreError, Tx,
};

use crate::push::Push;
use crate::rate::{Exceeded, RateConfig, RateLimits};
use crate::render::{decode_stored, event_for, render};
use crate::sip::Proxy;
use crate::{Outbound, Qos};
use std::sync::Mutex;

/// The hub's settings.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The topic root.
    pub root: TopicRoot,
    /// The packet types the hub validates (others pass through by envelope).
    pub registry: Registry,
    /// The largest upstream payload accepted, in bytes.
    pub max_payload: usize,
    /// The largest reply (history and sync results) the hub builds, in bytes.
    pub max_reply_bytes: usize,
    /// The most members (and invited users) a group may have.
    pub max_group_members: usize,
    /// The SIP proxy's settings; `None`: no SIP (spec 19).
    pub sip: Option<crate::sip::SipConfig>,
    /// Rate limits on what devices send.
    pub rates: RateConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            root: TopicRoot::default(),
            registry: Registry::with_core(),
            max_payload: 65_536,
            max_reply_bytes: 256 * 1024,
            max_group_members: 1000,
            sip: None,
            rates: RateConfig::default(),
        }
    }
}

/// One PUBLISH received by the hub.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Publishes to send, in order.
    pub publishes: Vec<Outbound>,
    /// Stored events whose delivery is among `publishes`: confirm them with
    /// [`Engine::confirm`] once the broker has them, so they leave the outbox.
    pub delivered: Vec<(ConvId, u64)>,
    /// Devices revoked by this batch: their broker sessions must be removed (spec 7.12).
    pub evict: Vec<DeviceIdentity>,
    /// Devices to wake through their push service (spec 7.13), once `publishes` are out.
    pub pushes: Vec<Push>,
    /// (reader, owner): the reader is no longer the owner's contact, so the reader's
    /// subscriptions to the owner's presence must end (spec 4, 16).
    pub presence_ended: Vec<(UserId, UserId)>,
}

/// Why one packet was not applied.
pub(crate) enum Failure {
    Refused(Rejection),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn rejection(inbound: &Inbound, code: ErrorCode, detail: impl Into<String>) -> Rejection {
    Rejection {
        sender: Some(inbound.sender.clone()),
        code,
        detail: detail.into(),
        id: inbound.packet.id,
        conv: inbound.packet.conv.clone(),
        about: Some(inbound.packet.kind),
    }
}

/// The typed body of an upstream packet; a body that does not fit is refused as `invalid`.
pub(crate) fn body<B: Body>(inbound: &Inbound) -> Result<B, Failure> {
    B::from_packet(&inbound.packet).map_err(|e| refuse(inbound, ErrorCode::INVALID, e.to_string()))
}

/// A core marker's meaning: (is it `read`, up to, private); `None` for other types.
fn marker_of(inbound: &Inbound) -> Result<Option<(bool, u64, bool)>, Failure> {
    Ok(match inbound.packet.kind {
        PacketKind::READ => {
            let read: Read = body(inbound)?;
            Some((true, read.up_to, read.private))
        }
        PacketKind::DELIVERED => Some((false, body::<Delivered>(inbound)?.up_to, false)),
        _ => None,
    })
}

/// Where a participant's markers move to (spec section 9: forward only, clamped to the
/// conversation, `read` raising `delivered`); `None` if they do not move.
fn advance(me: &ParticipantRow, last_seq: u64, is_read: bool, up_to: u64) -> Option<(u64, u64)> {
    let up_to = up_to.min(last_seq);
    let read = if is_read { me.read.max(up_to) } else { me.read };
    let delivered = me.delivered.max(up_to).max(read);
    (read != me.read || delivered != me.delivered).then_some((delivered, read))
}

pub(crate) fn refuse(inbound: &Inbound, code: ErrorCode, detail: impl Into<String>) -> Failure {
    Failure::Refused(rejection(inbound, code, detail))
}

/// The hub's logic. Holds configuration and the SIP proxy's transactions; everything else
/// is in the store.
#[derive(Debug)]
pub struct Engine {
    config: HubConfig,
    proxy: Mutex<Proxy>,
    rates: Mutex<RateLimits>,
}

impl Engine {
    /// An engine with this configuration.
    pub fn new(config: HubConfig) -> Self {
        // SIP branches, tags and Call-IDs must not repeat across restarts.
        Self {
            rates: Mutex::new(RateLimits::new(&config.rates)),
            config,
            proxy: Proxy::new(rand::random()),
        }
    }

    /// Charges the rate limits; a packet over one is refused with `rate-limited`.
    pub(crate) fn charge(
        &self,
        inbound: &Inbound,
        charge: impl FnOnce(&mut RateLimits) -> Result<(), Exceeded>,
    ) -> Result<(), Failure> {
        self.rates(charge)
            .map_err(|exceeded| refuse(inbound, ErrorCode::RATE_LIMITED, exceeded.to_string()))
    }

    fn rates(
        &self,
        charge: impl FnOnce(&mut RateLimits) -> Result<(), Exceeded>,
    ) -> Result<(), Exceeded> {
        // One thread (the worker) takes the lock; a panic elsewhere leaves the buckets whole.
        let mut rates = self
            .rates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        charge(&mut rates)
    }

    pub(crate) fn proxy(&self) -> &Mutex<Proxy> {
        &self.proxy
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn inbox(&self, user: &UserId, branch: InboxBranch) -> String {
        self.config.root.topic(&Topic::Inbox {
            user: user.clone(),
            branch,
        })
    }

    /// Processes a batch of upstream PUBLISHes at time `now` (ms since the Unix epoch), in
    /// one transaction. Refused packets produce error replies; if the commit itself fails,
    /// every packet of the batch that asked for an answer gets `internal`.
    pub fn process(&self, store: &mut Store, now: u64, batch: &[Upstream]) -> Output {
        self.process_and_confirm(store, now, batch, &[])
    }

    /// [`Engine::process`], also removing from the outbox, in the same transaction, the
    /// events whose delivery the broker has taken since the last call (what
    /// [`Engine::confirm`] does in a transaction of its own): one commit, and one disk
    /// sync, per batch instead of two. If the transaction fails they stay in the outbox
    /// (and are delivered again at the next start).
    pub fn process_and_confirm(
        &self,
        store: &mut Store,
        now: u64,
        batch: &[Upstream],
        delivered: &[(ConvId, u64)],
    ) -> Output {
        match self.process_in_tx(store, now, batch, delivered) {
            Ok(output) => output,
            Err(e) => {
                tracing::error!(error = %e, n = batch.len(), "store transaction failed; answering internal");
                let mut output = Output::default();
                output
                    .publishes
                    .extend(batch.iter().filter_map(|input| self.internal_error(input)));
                output
            }
        }
    }

    fn process_in_tx(
        &self,
        store: &mut Store,
        now: u64,
        batch: &[Upstream],
        delivered: &[(ConvId, u64)],
    ) -> Result<Output, StoreError> {
        let mut tx = store.transaction()?;
        tx.outbox_done(delivered)?;
        let mut output = Output::default();
        for input in batch {
            if let Ok(Topic::Presence { user, device }) = self.config.root.parse_topic(&input.topic)
            {
                output.publishes.extend(self.presence_in(
                    &tx,
                    &input.topic,
                    &user,
                    &device,
                    &input.payload,
                    now,
                ));
                continue;
            }
            if let Ok(Topic::Gateway { .. }) = self.config.root.parse_topic(&input.topic) {
                let mut local = Output::default();
                let result = tx.item(|tx| {
                    self.sip_from_gateway(tx, now, &input.topic, &input.payload, &mut local)
                });
                match result {
                    Ok(()) => {
                        output.publishes.extend(local.publishes);
                        output.delivered.extend(local.delivered);
                        output.pushes.extend(local.pushes);
                    }
                    Err(e) => {
                        tracing::error!(topic = %input.topic, error = %e, "store failed on a gateway packet")
                    }
                }
                continue;
            }
            let result = tx.item(|tx| {
                let mut local = Output::default();
                self.handle(tx, now, input, &mut local)?;
                Ok::<_, Failure>(local)
            });
            match result {
                Ok(local) => {
                    output.publishes.extend(local.publishes);
                    output.delivered.extend(local.delivered);
                    output.evict.extend(local.evict);
                    output.pushes.extend(local.pushes);
                    output.presence_ended.extend(local.presence_ended);
                }
                Err(Failure::Refused(rejection)) => {
                    // Rate-limited packets are logged per burst by the rate limits; the
                    // others are bounded by them.
                    if rejection.code == ErrorCode::RATE_LIMITED {
                        tracing::debug!(
                            sender = rejection.sender.as_ref().map(ToString::to_string),
                            detail = %rejection.detail,
                            "rate-limited upstream packet"
                        );
                    } else {
                        tracing::info!(
                            sender = rejection.sender.as_ref().map(ToString::to_string),
                            topic = %input.topic,
                            code = %rejection.code,
                            detail = %rejection.detail,
                            "refused upstream packet"
                        );
                    }
                    if rejection.sender.is_some() {
                        output.publishes.push(self.error_reply(&rejection));
                    }
                }
                Err(Failure::Store(e)) => {
                    tracing::error!(topic = %input.topic, error = %e, "store failed on one packet");
                    output.publishes.extend(self.internal_error(input));
                }
            }
        }
        tx.commit()?;
        Ok(output)
    }

    /// The `internal` error reply for a packet the hub failed to store, if it asked for an
    /// answer.
    fn internal_error(&self, input: &Upstream) -> Option<Outbound> {
        let inbound = upstream::accept(
            &self.config.registry,
            &self.config.root,
            &input.topic,
            &input.payload,
            self.config.max_payload,
        )
        .ok()?;
        inbound.packet.id?;
        Some(self.error_reply(&rejection(
            &inbound,
            ErrorCode::INTERNAL,
            "the hub could not store this; retry",
        )))
    }

    fn error_reply(&self, rejection: &Rejection) -> Outbound {
        let topic = match &rejection.sender {
            Some(sender) => self.inbox(&sender.user, InboxBranch::Device(sender.device.clone())),
            None => String::new(),
        };
        Outbound {
            topic,
            payload: rejection.to_packet().encode(),
            qos: Qos::AtLeastOnce,
            retain: false,
        }
    }

    pub(crate) fn reply(&self, inbound: &Inbound, packet: &Packet) -> Outbound {
        Outbound {
            topic: self.inbox(
                &inbound.sender.user,
                InboxBranch::Device(inbound.sender.device.clone()),
            ),
            payload: packet.encode(),
            qos: Qos::AtLeastOnce,
            retain: false,
        }
    }

    fn handle(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        input: &Upstream,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let accepted = upstream::accept(
            &self.config.registry,
            &self.config.root,
            &input.topic,
            &input.payload,
            self.config.max_payload,
        );
        let inbound = match accepted {
            Ok(inbound) => inbound,
            Err(mut rejection) => {
                // Refused packets count against their sender's rate too: a flood of
                // malformed packets costs the hub as much as one of messages.
                if let Some(sender) = &rejection.sender
                    && let Err(exceeded) = self.rates(|rates| rates.packet(sender, now))
                {
                    rejection.code = ErrorCode::RATE_LIMITED;
                    rejection.detail = exceeded.to_string();
                }
                return Err(Failure::Refused(rejection));
            }
        };
        self.charge(&inbound, |rates| rates.packet(&inbound.sender, now))?;
        match inbound.route {
            Route::Event => self.event(tx, now, &inbound, out),
            Route::Marker => self.marker(tx, now, &inbound, out),
            Route::Signal => self.signal(tx, &inbound, out),
            Route::Request => self.request(tx, now, &inbound, out),
            Route::Sip => self.sip_from_device(tx, now, &inbound, out),
        }
    }

    /// The conversation a packet names, resolved from the sender's side.
    pub(crate) fn target(&self, tx: &Tx<'_>, inbound: &Inbound) -> Result<Target, Failure> {
        match &inbound.packet.conv {
            Some(ConversationRef::Direct(peer)) => {
                if tx.user_exists(peer, true)? {
                    Ok(Target::Direct(peer.clone()))
                } else {
                    Err(refuse(
                        inbound,
                        ErrorCode::NO_SUCH_USER,
                        format!("no user {:?}", peer.as_str()),
                    ))
                }
            }
            Some(ConversationRef::Group(gid)) => match tx.group(gid)? {
                Some((conv, profile)) if !conv.deleted => {
                    let me = tx.participant(conv.id, &inbound.sender.user)?;
                    Ok(Target::Group {
                        gid: gid.clone(),
                        conv,
                        profile,
                        me,
                    })
                }
                _ => Err(refuse(
                    inbound,
                    ErrorCode::NOT_FOUND,
                    format!("no group #{gid}"),
                )),
            },
            Some(ConversationRef::Sip(address)) => Ok(Target::Sip(address.clone())),
            None => Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "a conversation is required",
            )),
        }
    }

    /// The sender's membership of the group a packet names, which must be current.
    pub(crate) fn membership(
        &self,
        tx: &Tx<'_>,
        inbound: &Inbound,
    ) -> Result<(GroupId, ConversationRow, GroupProfile, ParticipantRow), Failure> {
        match self.target(tx, inbound)? {
            Target::Group {
                gid,
                conv,
                profile,
                me: Some(me),
            } if me.state == Membership::Member => Ok((gid, conv, profile, me)),
            Target::Group { gid, .. } => Err(refuse(
                inbound,
                ErrorCode::FORBIDDEN,
                format!("not a member of #{gid}"),
            )),
            Target::Direct(_) | Target::Sip(_) => Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "this needs a group conversation",
            )),
        }
    }

    /// The answer to a resent event: its stored `conv`, `seq` and `ts`.
    pub(crate) fn duplicate(
        &self,
        tx: &Tx<'_>,
        inbound: &Inbound,
    ) -> Result<Option<Packet>, Failure> {
        let Some(id) = inbound.packet.id else {
            return Ok(None);
        };
        let Some(stored) = tx.find_duplicate(&inbound.sender.user, &inbound.sender.device, id)?
        else {
            return Ok(None);
        };
        let mut ack = Ack { duplicate: true }.to_packet();
        ack.id = Some(id);
        ack.conv = match tx.conversation(stored.conv)?.and_then(|c| c.group) {
            Some(gid) => Some(ConversationRef::Group(gid)),
            None => inbound.packet.conv.clone(),
        };
        ack.seq = Some(stored.seq);
        ack.ts = Some(stored.ts);
        Ok(Some(ack))
    }

    fn event(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let sender = &inbound.sender;
        let Some(id) = inbound.packet.id else {
            return Err(refuse(inbound, ErrorCode::INVALID, "an event needs an id"));
        };
        if let Some(ack) = self.duplicate(tx, inbound)? {
            out.publishes.push(self.reply(inbound, &ack));
            return Ok(());
        }
        let (conv, contact_change) = match self.target(tx, inbound)? {
            Target::Direct(peer) => {
                let Some(conv) = tx.direct(&sender.user, &peer, true)? else {
                    return Err(Failure::Store(StoreError::NotFound(format!(
                        "conversation {}/{peer}",
                        sender.user
                    ))));
                };
                let change = if inbound.packet.kind == PacketKind::CONTACT {
                    Some((self.contact_change(tx, now, inbound, &conv, &peer)?, peer))
                } else {
                    None
                };
                (conv, change)
            }
            Target::Group { .. } => (self.membership(tx, inbound)?.1, None),
            Target::Sip(address) => return self.event_to_sip(tx, now, inbound, &address, out),
        };
        let packet = inbound.packet.encode();
        let seq = tx.append(
            conv.id,
            now,
            &sender.user,
            &sender.device,
            Some(id),
            inbound.packet.kind,
            &packet,
        )?;
        if let Some(((mine, theirs), peer)) = contact_change {
            let before = tx
                .participant(conv.id, &sender.user)?
                .map(|p| p.contact)
                .unwrap_or_default();
            tx.set_contact(conv.id, &sender.user, mine)?;
            tx.set_contact(conv.id, &peer, theirs)?;
            if before == ContactState::Accepted && mine != ContactState::Accepted {
                out.presence_ended.push((sender.user.clone(), peer.clone()));
                out.presence_ended.push((peer, sender.user.clone()));
            }
        }
        // The event as just stored: delivered without reading it back.
        let event = EventRow {
            conv: conv.id,
            seq,
            ts: now,
            sender: Author::User(sender.user.clone()),
            sender_device: sender.device.clone(),
            client_id: Some(id),
            kind: inbound.packet.kind,
            packet,
        };
        self.deliver_event(tx, &conv, &event, None, out)?;
        Ok(())
    }

    /// An event to a SIP address (spec 19): a text message, stored in the sender's
    /// conversation with the address, then sent through the gateway as a SIP MESSAGE.
    fn event_to_sip(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        address: &mqchat_proto::SipAddress,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let sender = &inbound.sender;
        if inbound.packet.kind != PacketKind::MESSAGE {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                format!("only text messages reach {address}"),
            ));
        }
        let routed = self.sip().is_some_and(|sip| {
            mqchat_sip::Uri::parse(address.as_str())
                .ok()
                .and_then(|uri| self.peer_for(sip, &uri))
                .is_some()
        });
        if !routed {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                format!("this hub has no SIP gateway route to {address}"),
            ));
        }
        let message: mqchat_proto::body::Message = body(inbound)?;
        let Some(conv) = tx.sip_conversation(&sender.user, address, true)? else {
            return Err(Failure::Store(StoreError::NotFound(format!(
                "conversation {}/{address}",
                sender.user
            ))));
        };
        let seq = tx.append(
            conv.id,
            now,
            &sender.user,
            &sender.device,
            inbound.packet.id,
            inbound.packet.kind,
            &inbound.packet.encode(),
        )?;
        self.deliver(tx, conv.id, seq, None, out)?;
        self.message_out(
            now,
            sender,
            inbound.packet.id,
            conv.id,
            seq,
            address,
            &message.text,
            out,
        );
        Ok(())
    }

    /// A marker in a conversation with a SIP address: the reader's own state only (the
    /// outside party has no markers to be told).
    fn sip_marker(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        address: &mqchat_proto::SipAddress,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let sender = &inbound.sender;
        let missing = || {
            refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {address}"),
            )
        };
        let Some(conv) = tx.sip_conversation(&sender.user, address, false)? else {
            return Err(missing());
        };
        let Some(me) = tx.participant(conv.id, &sender.user)? else {
            return Err(missing());
        };
        let Some((is_read, up_to, private)) = marker_of(inbound)? else {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                "extension markers do not reach SIP addresses",
            ));
        };
        let Some((delivered, read)) = advance(&me, conv.last_seq, is_read, up_to) else {
            return Ok(());
        };
        tx.set_markers(conv.id, &sender.user, delivered, read)?;
        if read > me.read {
            let mut own = Read {
                up_to: read,
                private,
            }
            .to_packet();
            own.conv = Some(ConversationRef::Sip(address.clone()));
            own.ts = Some(now);
            own.from = Some(sender.user.clone());
            own.device = Some(sender.device.clone());
            out.publishes.push(self.durable(&sender.user, &own));
        }
        Ok(())
    }

    fn contact_change(
        &self,
        tx: &Tx<'_>,
        now: u64,
        inbound: &Inbound,
        conv: &ConversationRow,
        peer: &UserId,
    ) -> Result<
        (
            mqchat_proto::body::ContactState,
            mqchat_proto::body::ContactState,
        ),
        Failure,
    > {
        if *peer == inbound.sender.user {
            return Err(refuse(
                inbound,
                ErrorCode::INVALID,
                "one cannot be one's own contact",
            ));
        }
        let contact: Contact = body(inbound)?;
        let state = tx
            .participant(conv.id, &inbound.sender.user)?
            .map(|p| p.contact)
            .unwrap_or_default();
        let change = state.apply(contact.action).ok_or_else(|| {
            refuse(
                inbound,
                ErrorCode::CONFLICT,
                format!(
                    "{:?} is not possible in contact state {state:?}",
                    contact.action
                ),
            )
        })?;
        if contact.action == mqchat_proto::body::ContactAction::Request {
            self.charge(inbound, |rates| {
                rates.contact_request(&inbound.sender.user, now)
            })?;
        }
        Ok(change)
    }

    /// Publishes a stored event to the durable inbox of every member, and of `extra` (an
    /// invited or removed user the event concerns).
    pub(crate) fn deliver(
        &self,
        tx: &Tx<'_>,
        conv: ConvId,
        seq: u64,
        extra: Option<&UserId>,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        let (Some(row), Some(event)) = (tx.conversation(conv)?, tx.event(conv, seq)?) else {
            return Ok(());
        };
        self.deliver_event(tx, &row, &event, extra, out)
    }

    /// [`Engine::deliver`] of an event the caller has in hand, in conversation `row` (whose
    /// sequence numbers may be older than the event: only its identity and kind are used).
    pub(crate) fn deliver_event(
        &self,
        tx: &Tx<'_>,
        row: &ConversationRow,
        event: &EventRow,
        extra: Option<&UserId>,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        let participants = tx.participants(event.conv)?;
        // Decoded once for all readers; in a group every reader but the author gets the
        // same bytes, so those are encoded once too.
        if let Some(stored) = decode_stored(event) {
            let mut others_copy: Option<Vec<u8>> = None;
            for participant in &participants {
                if participant.state != Membership::Member && Some(&participant.user) != extra {
                    continue;
                }
                let Some(name) = conv_name(row, participant) else {
                    continue;
                };
                if row.group.is_some() && event.sender.user() != Some(&participant.user) {
                    let payload = others_copy.get_or_insert_with(|| {
                        render(&stored, event, &participant.user, &name).encode()
                    });
                    out.publishes.push(Outbound {
                        topic: self.inbox(&participant.user, InboxBranch::Durable),
                        payload: payload.clone(),
                        qos: Qos::AtLeastOnce,
                        retain: false,
                    });
                    continue;
                }
                let packet = render(&stored, event, &participant.user, &name);
                out.publishes.push(self.durable(&participant.user, &packet));
            }
        }
        out.delivered.push((event.conv, event.seq));
        self.pushes(tx, event.conv, event, &participants, extra, out)
    }

    fn marker(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let peer = match self.target(tx, inbound)? {
            Target::Direct(peer) => peer,
            Target::Group { .. } => return self.group_marker(tx, now, inbound, out),
            Target::Sip(address) => return self.sip_marker(tx, now, inbound, &address, out),
        };
        let sender = &inbound.sender;
        let Some(conv) = tx.direct(&sender.user, &peer, false)? else {
            return Err(refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {peer}"),
            ));
        };
        let Some(me) = tx.participant(conv.id, &sender.user)? else {
            return Err(refuse(
                inbound,
                ErrorCode::NOT_FOUND,
                format!("no conversation with {peer}"),
            ));
        };
        let Some((is_read, up_to, private)) = marker_of(inbound)? else {
            // An extension marker: the hub knows no semantics for it, so it only passes it
            // on to the peer, like a durable signal.
            let mut packet = inbound.packet.clone();
            packet.conv = Some(ConversationRef::Direct(sender.user.clone()));
            packet.ts = Some(now);
            packet.id = None;
            if peer != sender.user {
                out.publishes.push(self.durable(&peer, &packet));
            }
            return Ok(());
        };
        let Some((delivered, read)) = advance(&me, conv.last_seq, is_read, up_to) else {
            return Ok(());
        };
        tx.set_markers(conv.id, &sender.user, delivered, read)?;
        let to_peer = |kind: PacketKind, value: u64| {
            let mut packet = marker_packet(kind, value);
            packet.conv = Some(ConversationRef::Direct(sender.user.clone()));
            packet.ts = Some(now);
            packet
        };
        if peer != sender.user {
            if read > me.read && !private {
                out.publishes
                    .push(self.durable(&peer, &to_peer(PacketKind::READ, read)));
            } else if delivered > me.delivered {
                out.publishes
                    .push(self.durable(&peer, &to_peer(PacketKind::DELIVERED, delivered)));
            }
        }
        if read > me.read {
            let mut own = Read {
                up_to: read,
                private,
            }
            .to_packet();
            own.conv = Some(ConversationRef::Direct(peer.clone()));
            own.ts = Some(now);
            own.from = Some(sender.user.clone());
            own.device = Some(sender.device.clone());
            out.publishes.push(self.durable(&sender.user, &own));
        }
        Ok(())
    }

    /// A member's marker in a group: recorded, and delivered to the authors of the events it
    /// newly covers and (read) to the member's own devices (spec section 9).
    fn group_marker(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let (gid, conv, _, me) = self.membership(tx, inbound)?;
        let sender = &inbound.sender;
        let Some((is_read, up_to, private)) = marker_of(inbound)? else {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                "extension markers are not supported in groups",
            ));
        };
        let Some((delivered, read)) = advance(&me, conv.last_seq, is_read, up_to) else {
            return Ok(());
        };
        tx.set_own_markers(conv.id, &sender.user, delivered, read)?;
        let name = ConversationRef::Group(gid);
        let to_author = |kind: PacketKind, value: u64| {
            let mut packet = marker_packet(kind, value);
            packet.conv = Some(name.clone());
            packet.ts = Some(now);
            packet.from = Some(sender.user.clone());
            packet
        };
        // Only events in the member's window, and not the hub's group events, have authors
        // to tell.
        let floor = window(&conv, &me).0.saturating_sub(1);
        let skip = PacketKind::GROUP_EVENT;
        let told_read = if read > me.read && !private {
            tx.authors(conv.id, me.read.max(floor), read, &sender.user, skip)?
        } else {
            Vec::new()
        };
        for author in &told_read {
            out.publishes
                .push(self.durable(author, &to_author(PacketKind::READ, read)));
        }
        if delivered > me.delivered {
            for author in tx.authors(
                conv.id,
                me.delivered.max(floor),
                delivered,
                &sender.user,
                skip,
            )? {
                if !told_read.contains(&author) {
                    out.publishes
                        .push(self.durable(&author, &to_author(PacketKind::DELIVERED, delivered)));
                }
            }
        }
        if read > me.read {
            let mut own = Read {
                up_to: read,
                private,
            }
            .to_packet();
            own.conv = Some(name);
            own.ts = Some(now);
            own.from = Some(sender.user.clone());
            own.device = Some(sender.device.clone());
            out.publishes.push(self.durable(&sender.user, &own));
        }
        Ok(())
    }

    pub(crate) fn durable(&self, user: &UserId, packet: &Packet) -> Outbound {
        Outbound {
            topic: self.inbox(user, InboxBranch::Durable),
            payload: packet.encode(),
            qos: Qos::AtLeastOnce,
            retain: false,
        }
    }

    fn signal(&self, tx: &mut Tx<'_>, inbound: &Inbound, out: &mut Output) -> Result<(), Failure> {
        let sender = &inbound.sender;
        let peer = match self.target(tx, inbound)? {
            Target::Direct(peer) => peer,
            Target::Group { .. } => {
                let (gid, conv, _, _) = self.membership(tx, inbound)?;
                let mut packet = inbound.packet.clone();
                packet.conv = Some(ConversationRef::Group(gid));
                packet.from = Some(sender.user.clone());
                packet.id = None;
                let payload = packet.encode();
                for member in tx.participants(conv.id)? {
                    if member.state == Membership::Member && member.user != sender.user {
                        out.publishes.push(Outbound {
                            topic: self.inbox(&member.user, InboxBranch::Ephemeral),
                            payload: payload.clone(),
                            qos: Qos::AtMostOnce,
                            retain: false,
                        });
                    }
                }
                return Ok(());
            }
            Target::Sip(address) => {
                return Err(refuse(
                    inbound,
                    ErrorCode::UNSUPPORTED,
                    format!("chat states do not reach {address}"),
                ));
            }
        };
        if peer == sender.user {
            return Ok(());
        }
        if tx.direct(&sender.user, &peer, false)?.is_none() {
            return Err(refuse(
                inbound,
                ErrorCode::FORBIDDEN,
                format!("no conversation with {peer} yet"),
            ));
        }
        let mut packet = inbound.packet.clone();
        packet.conv = Some(ConversationRef::Direct(sender.user.clone()));
        packet.id = None;
        out.publishes.push(Outbound {
            topic: self.inbox(&peer, InboxBranch::Ephemeral),
            payload: packet.encode(),
            qos: Qos::AtMostOnce,
            retain: false,
        });
        Ok(())
    }

    fn request(
        &self,
        tx: &mut Tx<'_>,
        now: u64,
        inbound: &Inbound,
        out: &mut Output,
    ) -> Result<(), Failure> {
        let reply = match inbound.packet.kind {
            PacketKind::PROFILE => {
                let change = body::<Profile>(inbound)?;
                let (retained, ack) = self.set_profile(tx, now, &inbound.sender.user, &change)?;
                out.publishes.push(retained);
                ack
            }
            PacketKind::SYNC => {
                let query = body::<Sync>(inbound)?;
                self.sync(tx, &inbound.sender.user, &query)?.to_packet()
            }
            PacketKind::HISTORY => {
                let query = body::<History>(inbound)?;
                let user = &inbound.sender.user;
                let (conv, name, window) = match self.target(tx, inbound)? {
                    Target::Direct(peer) => (
                        tx.direct(user, &peer, false)?,
                        ConversationRef::Direct(peer),
                        (1, u64::MAX >> 1),
                    ),
                    Target::Group {
                        gid,
                        conv,
                        me: Some(me),
                        ..
                    } => {
                        let window = window(&conv, &me);
                        (Some(conv), ConversationRef::Group(gid), window)
                    }
                    Target::Group { gid, .. } => {
                        return Err(refuse(
                            inbound,
                            ErrorCode::FORBIDDEN,
                            format!("not a member of #{gid}"),
                        ));
                    }
                    Target::Sip(address) => (
                        tx.sip_conversation(user, &address, false)?,
                        ConversationRef::Sip(address),
                        (1, u64::MAX >> 1),
                    ),
                };
                self.history(tx, user, conv, &name, window, &query)?
                    .to_packet()
            }
            PacketKind::GROUP_CREATE => self.group_create(tx, now, inbound, out)?,
            PacketKind::GROUP_ADMIN => self.group_admin(tx, now, inbound, out)?,
            PacketKind::GROUP_JOIN => self.group_join(tx, now, inbound, out)?,
            PacketKind::GROUP_INFO => self.group_info(tx, inbound)?,
            PacketKind::DEVICE_LIST => self.device_list(tx, inbound)?,
            PacketKind::DEVICE_REVOKE => self.device_revoke(tx, now, inbound, out)?,
            PacketKind::CLIENT_STATE => self.client_state(tx, now, inbound)?,
            PacketKind::PUSH_REGISTER => self.push_register(tx, now, inbound)?,
            PacketKind::PUSH_UNREGISTER => self.push_unregister(tx, inbound)?,
            PacketKind::MUTE => self.mute(tx, inbound)?,
            other => {
                return Err(refuse(
                    inbound,
                    ErrorCode::UNSUPPORTED,
                    format!("no handler for request type {}", other.0),
                ));
            }
        };
        let mut reply = reply;
        reply.id = inbound.packet.id;
        if matches!(
            reply.kind,
            PacketKind::HISTORY_RESULT | PacketKind::GROUP_INFO_RESULT
        ) {
            reply.conv = inbound.packet.conv.clone();
        }
        out.publishes.push(self.reply(inbound, &reply));
        Ok(())
    }

    fn set_profile(
        &self,
        tx: &Tx<'_>,
        now: u64,
        user: &UserId,
        change: &Profile,
    ) -> Result<(Outbound, Packet), StoreError> {
        let current = tx.profile(user)?;
        let merge = |old: Option<String>, new: &Option<String>| match new {
            None => old,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(v.clone()),
        };
        let stored = ProfileRow {
            name: merge(current.name, &change.name),
            avatar: merge(current.avatar, &change.avatar),
            status: merge(current.status, &change.status),
            version: current.version + 1,
            ts: Some(now),
        };
        tx.set_profile(user, &stored)?;
        let mut ack = Ack::default().to_packet();
        ack.seq = Some(stored.version);
        ack.ts = Some(now);
        Ok((self.profile_publish(user, &stored), ack))
    }

    fn profile_publish(&self, user: &UserId, stored: &ProfileRow) -> Outbound {
        let mut packet = Profile {
            name: stored.name.clone(),
            avatar: stored.avatar.clone(),
            status: stored.status.clone(),
        }
        .to_packet();
        packet.seq = Some(stored.version);
        packet.ts = stored.ts;
        Outbound {
            topic: self
                .config
                .root
                .topic(&Topic::Profile { user: user.clone() }),
            payload: packet.encode(),
            qos: Qos::AtLeastOnce,
            retain: true,
        }
    }

    fn sync(&self, tx: &Tx<'_>, user: &UserId, query: &Sync) -> Result<SyncResult, StoreError> {
        let limit = query
            .limit
            .map_or(100, |l| l as usize)
            .min(limits::PAGE_ITEMS);
        let token = tx.change_token()?;
        let bound = if query.newest_first {
            query.before.unwrap_or(u64::MAX >> 1)
        } else {
            query.after.unwrap_or(0)
        };
        let (rows, mut more) = tx.changed_conversations(user, bound, query.newest_first, limit)?;
        let mut result = SyncResult {
            conversations: Vec::with_capacity(rows.len()),
            more: false,
            token,
        };
        let mut budget = self.config.max_reply_bytes.saturating_sub(64);
        for (me, conv) in rows {
            let entry = self.entry(tx, user, &me, &conv)?;
            let size = entry_size(&entry);
            if size > budget && !result.conversations.is_empty() {
                more = true;
                break;
            }
            budget = budget.saturating_sub(size);
            result.conversations.push(entry);
        }
        result.more = more;
        Ok(result)
    }

    fn entry(
        &self,
        tx: &Tx<'_>,
        user: &UserId,
        me: &ParticipantRow,
        conv: &ConversationRow,
    ) -> Result<ConversationEntry, StoreError> {
        let name = conv_name(conv, me).unwrap_or_else(|| ConversationRef::Direct(user.clone()));
        let (floor, ceil) = window(conv, me);
        let last_seq = conv.last_seq.min(ceil);
        let mut entry = ConversationEntry::new(name.clone(), me.change);
        entry.last_seq = last_seq;
        entry.last_ts = conv.last_ts;
        entry.delivered = me.delivered;
        entry.read = me.read;
        entry.contact = me.contact;
        entry.first_seq = (conv.first_seq > 1).then_some(conv.first_seq);
        entry.muted_until = (me.muted_until > 0).then_some(me.muted_until);
        if last_seq > 0 {
            let last = tx.event(conv.id, last_seq)?;
            entry.last_ts = last.as_ref().map(|e| e.ts);
            entry.last = last.and_then(|e| event_for(&e, user, &name));
            let after = me.read.max(floor.saturating_sub(1));
            entry.unread = tx.unread(conv.id, user, after, ceil, PacketKind::GROUP_EVENT)?;
        }
        if conv.sip.is_some() {
            entry.peer_delivered = conv.sip_delivered;
        }
        if let Some(peer) = me.peer.as_ref().filter(|p| *p != user)
            && let Some(other) = tx.participant(conv.id, peer)?
        {
            entry.peer_delivered = other.delivered;
            entry.peer_read = other.read;
        }
        Ok(entry)
    }

    fn history(
        &self,
        tx: &Tx<'_>,
        user: &UserId,
        conv: Option<ConversationRow>,
        name: &ConversationRef,
        window: (u64, u64),
        query: &History,
    ) -> Result<HistoryResult, StoreError> {
        let Some(conv) = conv else {
            return Ok(HistoryResult {
                last_seq: Some(0),
                ..HistoryResult::default()
            });
        };
        let limit = query
            .limit
            .map_or(50, |l| l as usize)
            .min(limits::PAGE_ITEMS);
        let mut truncated = false;
        let position = match (query.after, query.before, query.since) {
            (Some(after), _, _) => {
                if after + 1 < conv.first_seq {
                    truncated = true;
                    Position::After(conv.first_seq - 1)
                } else {
                    Position::After(after)
                }
            }
            (_, Some(before), _) => Position::Before(before),
            (_, _, Some(since)) => Position::Since(since),
            (None, None, None) => Position::Before(u64::MAX >> 1),
        };
        let backward = matches!(position, Position::Before(_));
        let (events, mut more) = tx.events(conv.id, position, window, limit)?;
        let mut rendered: Vec<Packet> = events
            .iter()
            .filter_map(|e| event_for(e, user, name))
            .collect();
        let mut budget = self.config.max_reply_bytes.saturating_sub(64);
        let mut keep = 0;
        // Keep the events nearest the starting point within the byte budget.
        let order: Box<dyn Iterator<Item = &Packet>> = if backward {
            Box::new(rendered.iter().rev())
        } else {
            Box::new(rendered.iter())
        };
        for packet in order {
            let size = packet.encode().len() + 4;
            if size > budget && keep > 0 {
                more = true;
                break;
            }
            budget = budget.saturating_sub(size);
            keep += 1;
        }
        if backward {
            rendered.drain(..rendered.len() - keep);
        } else {
            rendered.truncate(keep);
        }
        Ok(HistoryResult {
            events: rendered,
            more,
            first_seq: Some(conv.first_seq),
            last_seq: Some(conv.last_seq.min(window.1)),
            truncated,
        })
    }

    /// Removes delivered events from the outbox (after the broker accepted their publishes).
    pub fn confirm(
        &self,
        store: &mut Store,
        delivered: &[(ConvId, u64)],
    ) -> Result<(), StoreError> {
        if delivered.is_empty() {
            return Ok(());
        }
        let tx = store.transaction()?;
        tx.outbox_done(delivered)?;
        tx.commit()
    }

    /// The deliveries of events committed but never handed to the broker (after a crash).
    pub fn recover(&self, store: &mut Store) -> Result<Output, StoreError> {
        let tx = store.transaction()?;
        let mut output = Output::default();
        for (conv, seq) in tx.outbox(100_000)? {
            self.deliver(&tx, conv, seq, None, &mut output)?;
        }
        tx.commit()?;
        Ok(output)
    }

    /// The retained profile of every user who has one, to publish at startup (the embedded
    /// broker keeps retained messages in memory only).
    pub fn profiles(&self, store: &mut Store) -> Result<Vec<Outbound>, StoreError> {
        let users = store.users()?;
        let tx = store.transaction()?;
        let mut out = Vec::new();
        for user in users {
            let profile = tx.profile(&user.id)?;
            if profile.version > 0 {
                out.push(self.profile_publish(&user.id, &profile));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Handles a PUBLISH seen on a presence topic (spec section 10) in a transaction of its
    /// own; [`Engine::process`] does the same for presence PUBLISHes in its batches.
    pub fn presence(
        &self,
        store: &mut Store,
        topic: &str,
        payload: &[u8],
        now: u64,
    ) -> Option<Outbound> {
        let Ok(Topic::Presence { user, device }) = self.config.root.parse_topic(topic) else {
            return None;
        };
        let tx = match store.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "store failed on a presence");
                return None;
            }
        };
        let out = self.presence_in(&tx, topic, &user, &device, payload, now);
        if let Err(e) = tx.commit() {
            tracing::error!(error = %e, "store failed on a presence");
        }
        out
    }

    /// A presence PUBLISH: records whether the device is connected; an `offline` without
    /// `last-active` (a will) is replaced by one stamped with the hub's time; a payload that
    /// is not a presence, or the presence of a revoked device, is cleared. Returns the
    /// publish to make, if any.
    fn presence_in(
        &self,
        tx: &Tx<'_>,
        topic: &str,
        user: &UserId,
        device: &mqchat_proto::DeviceId,
        payload: &[u8],
        now: u64,
    ) -> Option<Outbound> {
        if payload.is_empty() {
            return None;
        }
        let clear = Outbound {
            topic: topic.to_owned(),
            payload: Vec::new(),
            qos: Qos::AtLeastOnce,
            retain: true,
        };
        match tx.device_revoked(user, device) {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(user = %user, device = %device, "clearing the presence of a revoked device");
                return Some(clear);
            }
            Err(e) => {
                tracing::error!(user = %user, device = %device, error = %e, "store failed checking a presence");
            }
        }
        // Held to the limits of what the hub takes upstream: this copy stays retained.
        let decoded = Packet::decode_within(payload, mqchat_proto::encoding::MAX_NESTING)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                self.config
                    .registry
                    .validate(&p)
                    .map_err(|e| e.to_string())?;
                if p.kind == PacketKind::PRESENCE {
                    Presence::from_packet(&p).map_err(|e| e.to_string())
                } else {
                    Err("not a presence".into())
                }
            });
        if let Ok(presence) = &decoded {
            self.presence_state(tx, now, user, device, presence);
        }
        match decoded {
            Ok(presence)
                if presence.availability == Availability::Offline
                    && presence.last_active.is_none() =>
            {
                let mut stamped = Presence {
                    last_active: Some(now),
                    ..presence
                }
                .to_packet();
                stamped.ts = Some(now);
                Some(Outbound {
                    payload: stamped.encode(),
                    ..clear
                })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(user = %user, device = %device, error = %e, "clearing an invalid presence");
                Some(clear)
            }
        }
    }
}

/// What a packet's conversation names, from the sender's side. One lives per packet, so the
/// size difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    /// A direct conversation with this (existing) user.
    Direct(UserId),
    /// A group, with the sender's participation if any.
    Group {
        gid: GroupId,
        conv: ConversationRow,
        profile: GroupProfile,
        me: Option<ParticipantRow>,
    },
    /// The sender's conversation with a SIP address.
    Sip(mqchat_proto::SipAddress),
}

/// How `participant` names `conv`.
pub(crate) fn conv_name(
    conv: &ConversationRow,
    participant: &ParticipantRow,
) -> Option<ConversationRef> {
    match (&conv.group, &conv.sip) {
        (Some(gid), _) => Some(ConversationRef::Group(gid.clone())),
        (None, Some(address)) => Some(ConversationRef::Sip(address.clone())),
        (None, None) => participant.peer.clone().map(ConversationRef::Direct),
    }
}

/// The first and last sequence numbers `me` may read in `conv` (spec 7.11, History).
pub(crate) fn window(conv: &ConversationRow, me: &ParticipantRow) -> (u64, u64) {
    const END: u64 = u64::MAX >> 1;
    if conv.group.is_none() {
        return (1, END);
    }
    let floor = if conv.history_all { 1 } else { me.since };
    match me.state {
        Membership::Member => (floor, END),
        Membership::Invited => (me.since, me.since),
        // An invitation declined or cancelled ends where it began (`until` = `since`): such
        // a user was never a member and reads only the invitation.
        Membership::Former if me.until == Some(me.since) => (me.since, me.since),
        Membership::Former => (floor, me.until.unwrap_or(me.since)),
    }
}

fn marker_packet(kind: PacketKind, up_to: u64) -> Packet {
    match kind {
        PacketKind::READ => Read {
            up_to,
            private: false,
        }
        .to_packet(),
        _ => Delivered { up_to }.to_packet(),
    }
}

fn entry_size(entry: &ConversationEntry) -> usize {
    64 + entry.last.as_ref().map_or(0, |p| p.encode().len())
}
