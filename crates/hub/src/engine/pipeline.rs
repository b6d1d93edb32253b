//! The pipeline (spec section 8): identify, check, authorize, deduplicate, sequence and
//! commit, then deliver. One batch of PUBLISHes is one store transaction (group commit),
//! with a savepoint per packet so that a refused packet changes nothing; a refused packet is
//! answered with an error reply on its sender's reply topic.

use mqchat_proto::body::Body;
use mqchat_proto::upstream::{self, Inbound, Rejection, Route};
use mqchat_proto::{DeviceIdentity, ErrorCode, InboxBranch, Now, Packet, Topic};
use mqchat_store::{Store, StoreError};

use super::{ConversationKey, Engine, Output, Turn, Upstream, outbox_entries};
use crate::{Outbound, Qos};

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

pub(crate) fn refuse(inbound: &Inbound, code: ErrorCode, detail: impl Into<String>) -> Failure {
    Failure::Refused(rejection(inbound, code, detail))
}

impl Engine {
    /// Processes a batch of upstream PUBLISHes at time `now`, in one transaction. Refused packets produce error replies; if the commit itself fails,
    /// every packet of the batch that asked for an answer gets `internal`.
    pub fn process(&mut self, store: &mut Store, now: Now, batch: &[Upstream]) -> Output {
        self.process_and_confirm(store, now, batch, &[])
    }

    /// [`Engine::process`], also removing from the outbox, in the same transaction, the
    /// events whose delivery the broker has taken since the last call (what
    /// [`Engine::confirm`] does in a transaction of its own): one commit, and one disk
    /// sync, per batch instead of two. If the transaction fails they stay in the outbox
    /// (and are delivered again at the next start).
    pub fn process_and_confirm(
        &mut self,
        store: &mut Store,
        now: Now,
        batch: &[Upstream],
        delivered: &[(ConversationKey, u64)],
    ) -> Output {
        // Each topic is parsed here once; what it names is passed along from then on.
        let topics: Vec<Option<Topic>> = batch
            .iter()
            .map(|input| self.config.root.parse_topic(&input.topic).ok())
            .collect();
        match self.process_in_tx(store, now, batch, &topics, delivered) {
            Ok(output) => output,
            Err(e) => {
                tracing::debug!(error = %e, n = batch.len(), "store transaction failed; answering internal");
                let mut output = Output {
                    store_failure: Some(e.to_string()),
                    ..Output::default()
                };
                output.publishes.extend(
                    batch
                        .iter()
                        .zip(&topics)
                        .filter_map(|(input, topic)| self.internal_error(topic.as_ref(), input)),
                );
                output
            }
        }
    }

    fn process_in_tx(
        &mut self,
        store: &mut Store,
        now: Now,
        batch: &[Upstream],
        topics: &[Option<Topic>],
        delivered: &[(ConversationKey, u64)],
    ) -> Result<Output, StoreError> {
        let mut tx = store.transaction()?;
        let now = self.stamp_time(&tx, now)?;
        tx.outbox_done(&outbox_entries(delivered))?;
        let mut output = Output::default();
        for (input, topic) in batch.iter().zip(topics) {
            let result = match topic {
                Some(Topic::Presence { user, device }) => {
                    output.publishes.extend(self.presence_in(
                        &tx,
                        &input.topic,
                        user,
                        device,
                        &input.payload,
                        now.wall,
                    ));
                    continue;
                }
                Some(Topic::Gateway { gateway, direction }) => {
                    let mut local = Output::default();
                    let result = tx.item(|tx| {
                        let mut turn = Turn {
                            tx,
                            now,
                            out: &mut local,
                        };
                        self.sip_from_gateway(&mut turn, input, gateway, *direction)
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
                Some(Topic::Upstream { user, device }) => tx.item(|tx| {
                    let sender = DeviceIdentity::new(user.clone(), device.clone());
                    let mut local = Output::default();
                    let mut turn = Turn {
                        tx,
                        now,
                        out: &mut local,
                    };
                    self.handle(&mut turn, sender, &input.payload)?;
                    Ok::<_, Failure>(local)
                }),
                Some(Topic::Inbox { .. } | Topic::Profile { .. }) | None => {
                    Err(Failure::Refused(upstream::wrong_topic(&input.topic)))
                }
            };
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
                    tracing::debug!(topic = %input.topic, error = %e, "store failed on one packet");
                    output.store_failure = Some(e.to_string());
                    output
                        .publishes
                        .extend(self.internal_error(topic.as_ref(), input));
                }
            }
        }
        tx.commit()?;
        Ok(output)
    }

    /// The `internal` error reply for a packet the hub failed to store, if it asked for an
    /// answer.
    fn internal_error(&self, topic: Option<&Topic>, input: &Upstream) -> Option<Outbound> {
        let Some(Topic::Upstream { user, device }) = topic else {
            return None;
        };
        let sender = DeviceIdentity::new(user.clone(), device.clone());
        let inbound = upstream::accept_payload(
            &self.config.registry,
            sender,
            &input.payload,
            self.config.max_payload,
        )
        .ok()?;
        inbound.packet.id?;
        Some(self.error_reply(&rejection(
            &inbound,
            ErrorCode::INTERNAL,
            "the server cannot store right now; send it again",
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

    /// A PUBLISH on the upstream topic of `sender`: checked at the edge, charged to the
    /// sender's rates, and handed to its route.
    fn handle(
        &mut self,
        turn: &mut Turn<'_, '_>,
        sender: DeviceIdentity,
        payload: &[u8],
    ) -> Result<(), Failure> {
        let now = turn.now.at;
        let accepted = upstream::accept_payload(
            &self.config.registry,
            sender,
            payload,
            self.config.max_payload,
        );
        let inbound = match accepted {
            Ok(inbound) => inbound,
            Err(mut rejection) => {
                // Refused packets count against their sender's rate too: a flood of
                // malformed packets costs the hub as much as one of messages.
                if let Some(sender) = &rejection.sender
                    && let Err(exceeded) = self.rates.packet(sender, now)
                {
                    rejection.code = ErrorCode::RATE_LIMITED;
                    rejection.detail = exceeded.to_string();
                }
                return Err(Failure::Refused(rejection));
            }
        };
        self.charge(&inbound, |rates| rates.packet(&inbound.sender, now))?;
        match inbound.route {
            Route::Event => self.event(turn, &inbound),
            Route::Marker => self.marker(turn, &inbound),
            Route::Signal => self.signal(turn, &inbound),
            Route::Request => self.request(turn, &inbound),
            Route::Sip => self.sip_from_device(turn, &inbound),
        }
    }

    /// Removes delivered events from the outbox (after the broker accepted their publishes).
    pub fn confirm(
        &self,
        store: &mut Store,
        delivered: &[(ConversationKey, u64)],
    ) -> Result<(), StoreError> {
        if delivered.is_empty() {
            return Ok(());
        }
        let tx = store.transaction()?;
        tx.outbox_done(&outbox_entries(delivered))?;
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
}
