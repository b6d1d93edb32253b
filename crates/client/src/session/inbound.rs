//! What arrives from the broker: packets on the device's inbox, reply, presence and profile
//! topics, decoded with the registry and turned into events and answers.
//!
//! Nothing here trusts the network: a payload that does not decode, or decodes to something
//! the protocol does not allow where it arrived, is logged and skipped.

use mqchat_proto::body::{
    Body, ChatState, Contact, Delivered, GroupAction, GroupEvent, Presence, Profile, Read,
};
use mqchat_proto::{
    ConversationRef, DeviceId, ErrorCode, InboxBranch, MessageId, Packet, PacketKind, Seq,
    Timestamp, Topic, UserId,
};

use super::markers::Kind;
use super::pending::{Entry, Expect, InfoFor, Reply, read_reply};
use super::timeline::Admission;
use super::{Answer, Now, Output, Session};
use crate::error::Error;
use crate::event::{Event, Party};
use crate::group::Member;

impl Session {
    /// A PUBLISH arrived from the broker.
    pub fn handle_publish(&mut self, topic: &str, payload: &[u8], now: Now) {
        let topic = match self.root.parse_topic(topic) {
            Ok(topic) => topic,
            Err(e) => {
                tracing::warn!(topic, "skipping a message outside the topic tree: {e}");
                return;
            }
        };
        match topic {
            Topic::Inbox { user, branch } if user == self.me.user => match branch {
                InboxBranch::Durable => self.on_durable(payload, now),
                InboxBranch::Ephemeral => self.on_ephemeral(payload),
                InboxBranch::Device(device) if device == self.me.device => {
                    self.on_reply(payload, now);
                }
                InboxBranch::Device(device) => {
                    tracing::warn!(%device, "skipping a reply for another device");
                }
            },
            Topic::Presence { user, device } => self.on_presence(user, device, payload),
            Topic::Profile { user } => self.on_profile(user, payload),
            other => tracing::warn!(?other, "skipping a message on a topic not subscribed to"),
        }
    }

    fn decode(&self, place: &str, payload: &[u8]) -> Option<Packet> {
        match self.registry.decode(payload) {
            Ok(packet) => Some(packet),
            Err(e) => {
                tracing::warn!("skipping a malformed packet on the {place}: {e}");
                None
            }
        }
    }

    /// Who sent `packet` in `conv`: `from` when present, else the peer of a direct
    /// conversation (spec section 5, "When `from` is present").
    fn sender(conv: &ConversationRef, packet: &Packet) -> Option<UserId> {
        let sender = packet.from.clone().or_else(|| conv.peer().cloned());
        if sender.is_none() {
            tracing::warn!(%conv, "skipping a packet without a sender");
        }
        sender
    }

    fn on_durable(&mut self, payload: &[u8], now: Now) {
        let Some(packet) = self.decode("durable inbox", payload) else {
            return;
        };
        let Some(conv) = packet.conv.clone() else {
            tracing::warn!(
                kind = packet.kind.0,
                "skipping a durable packet without a conversation"
            );
            return;
        };
        match packet.seq {
            Some(seq) => self.admit(conv, seq, packet, now),
            None => self.on_marker(conv, packet),
        }
    }

    /// A live conversation event: in order, deduplicated, gaps filled first.
    fn admit(&mut self, conv: ConversationRef, seq: u64, packet: Packet, now: Now) {
        let catching_up = self.catching_up();
        match self.timelines.admit(&conv, seq, packet, catching_up) {
            Admission::Duplicate => tracing::debug!(%conv, seq, "dropping a duplicate event"),
            Admission::Deliver(events) => self.deliver_events(&conv, events, now),
            Admission::Held {
                fetch_after: Some(after),
            } => {
                tracing::debug!(%conv, seq, after, "gap before an event: fetching history");
                self.fetch(conv, after, now);
            }
            Admission::Held { fetch_after: None } => {}
        }
    }

    /// Delivers events of `conv`, in order: confirms this device's own pending events,
    /// tells the application, and owes a `delivered` marker for events from others.
    pub(super) fn deliver_events(&mut self, conv: &ConversationRef, events: Vec<Packet>, now: Now) {
        let mut from_others = false;
        for packet in events {
            if let Some(ts) = packet.ts {
                self.last_hub_ts = Some(self.last_hub_ts.map_or(ts, |last| last.max(ts)));
            }
            if let Some(sent) = self.pending.confirm_copy(&packet, &self.me) {
                self.out.push_back(Output::Answer {
                    id: sent.id,
                    answer: Ok(Answer::Sent(sent)),
                });
            }
            let own = packet.from.as_ref() == Some(&self.me.user);
            from_others |= !own;
            if let Some(event) = self.conversation_event(conv, packet, own) {
                self.emit(event);
            }
        }
        let group = match conv {
            ConversationRef::Group(group) => Some(group),
            ConversationRef::Direct(_) | ConversationRef::Sip(_) => None,
        };
        let wants_markers = group.is_none_or(|g| self.groups.wants_markers(g));
        if from_others && self.auto_delivered && wants_markers {
            let up_to = self.timelines.contiguous(conv);
            self.receipts.received(conv, up_to, now.at);
        }
        if let Some(group) = group {
            self.want_roster(group, now);
        }
    }

    fn conversation_event(
        &mut self,
        conv: &ConversationRef,
        packet: Packet,
        own: bool,
    ) -> Option<Event> {
        let seq = packet.seq?;
        // The application sees them typed (the session keeps numbers).
        let at = Seq::new(seq);
        let ts = Timestamp::from_unix_ms(packet.ts.unwrap_or(0));
        // A call record names its other party by the conversation, which may be a SIP
        // address outside mqchat: it needs no sender.
        if packet.kind == PacketKind::CALL {
            return Some(Event::CallRecord {
                record: typed::<mqchat_proto::body::Call>(&packet)?.into(),
                conv: conv.clone(),
                seq: at,
                ts,
                own,
            });
        }
        // A message from the outside party of a conversation with a SIP address has no
        // `from`: the conversation names its sender (spec section 19).
        if let (ConversationRef::Sip(address), None, PacketKind::MESSAGE) =
            (conv, &packet.from, packet.kind)
        {
            return Some(Event::Message {
                message: typed(&packet)?,
                conv: conv.clone(),
                seq: at,
                ts,
                from: Party::Sip(address.clone()),
                own: false,
                packet,
            });
        }
        let from = Self::sender(conv, &packet)?;
        let conv = conv.clone();
        let event = match packet.kind {
            PacketKind::GROUP_EVENT => {
                let ConversationRef::Group(group) = &conv else {
                    tracing::warn!(%conv, "skipping a group event outside a group");
                    return None;
                };
                let change = typed::<GroupEvent>(&packet)?;
                self.groups.event(&self.me.user, group, seq, &from, &change);
                let invited_me = change.action == GroupAction::Invited
                    && change.user.as_ref() == Some(&self.me.user);
                if invited_me {
                    Event::Invitation {
                        group: group.clone(),
                        seq: at,
                        ts,
                        by: from,
                        name: change.name.unwrap_or_default(),
                    }
                } else {
                    Event::Group {
                        group: group.clone(),
                        seq: at,
                        ts,
                        by: from,
                        own,
                        change,
                    }
                }
            }
            PacketKind::MESSAGE => Event::Message {
                message: typed(&packet)?,
                conv,
                seq: at,
                ts,
                from: Party::User(from),
                own,
                packet,
            },
            PacketKind::CONTACT => Event::Contact {
                contact: typed::<Contact>(&packet)?,
                conv,
                seq: at,
                from,
                own,
            },
            _ => Event::Other { packet },
        };
        Some(event)
    }

    fn on_marker(&mut self, conv: ConversationRef, packet: Packet) {
        let (kind, up_to) = match packet.kind {
            PacketKind::DELIVERED => match typed::<Delivered>(&packet) {
                Some(marker) => (Kind::Delivered, marker.up_to),
                None => return,
            },
            PacketKind::READ => match typed::<Read>(&packet) {
                Some(marker) => (Kind::Read, marker.up_to),
                None => return,
            },
            _ => {
                self.emit(Event::Other { packet });
                return;
            }
        };
        // In a conversation with a SIP address, a marker without `from` is the outside
        // party's (its answer to the SIP MESSAGE, spec section 19).
        let by = match (&conv, &packet.from) {
            (ConversationRef::Sip(address), None) => Some(Party::Sip(address.clone())),
            _ => Self::sender(&conv, &packet).map(Party::User),
        };
        if let Some(by) = by {
            if let (ConversationRef::Group(group), Party::User(user)) = (&conv, &by)
                && *user != self.me.user
            {
                self.groups.marker(group, user, kind, up_to);
            }
            self.tell_marker(&conv, &by, kind, up_to);
        }
    }

    /// Tells the application of a marker if it moved, once the events it covers are
    /// delivered.
    pub(super) fn tell_marker(
        &mut self,
        conv: &ConversationRef,
        by: &Party,
        kind: Kind,
        up_to: u64,
    ) {
        let Some(event) = self.markers.moved(&self.me.user, conv, by, kind, up_to) else {
            return;
        };
        if self.timelines.busy(conv) {
            self.markers.wait(conv, event);
        } else {
            self.emit(event);
        }
    }

    /// Tells the markers that waited for `conv`'s events, once none are missing.
    pub(super) fn release_markers(&mut self, conv: &ConversationRef) {
        if !self.timelines.busy(conv) {
            for event in self.markers.release(conv) {
                self.emit(event);
            }
        }
    }

    fn on_ephemeral(&mut self, payload: &[u8]) {
        let Some(packet) = self.decode("ephemeral inbox", payload) else {
            return;
        };
        if packet.kind != PacketKind::CHAT_STATE {
            self.emit(Event::Other { packet });
            return;
        }
        let Some(conv) = packet.conv.clone() else {
            tracing::warn!("skipping a chat state without a conversation");
            return;
        };
        let (Some(body), Some(from)) = (typed::<ChatState>(&packet), Self::sender(&conv, &packet))
        else {
            return;
        };
        self.emit(Event::ChatState {
            conv,
            from,
            state: body.state,
        });
    }

    fn on_presence(&mut self, user: UserId, device: DeviceId, payload: &[u8]) {
        // An empty retained message clears the presence (a removed device).
        let presence = if payload.is_empty() {
            None
        } else {
            let Some(packet) = self.decode("presence topic", payload) else {
                return;
            };
            let Some(presence) = typed::<Presence>(&packet) else {
                return;
            };
            Some(presence)
        };
        self.emit(Event::Presence {
            user,
            device,
            presence: presence.map(crate::presence::Presence::from),
        });
    }

    fn on_profile(&mut self, user: UserId, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let Some(packet) = self.decode("profile topic", payload) else {
            return;
        };
        let Some(profile) = typed::<Profile>(&packet) else {
            return;
        };
        self.emit(Event::Profile {
            user,
            version: packet.seq.unwrap_or(0),
            profile,
        });
    }

    fn on_reply(&mut self, payload: &[u8], now: Now) {
        let Some(packet) = self.decode("reply topic", payload) else {
            return;
        };
        if packet.kind == PacketKind::SIP {
            self.on_sip(&packet, now);
            return;
        }
        let pending = packet
            .id
            .and_then(|id| Some((id, self.pending.remove(id)?)));
        match pending {
            Some((id, entry)) => {
                let reply = read_reply(&entry.expect, id, &packet);
                self.resolve(id, entry, reply, now);
            }
            None if packet.kind == PacketKind::ERROR => self.unmatched_error(&packet),
            None => tracing::debug!(
                kind = packet.kind.0,
                id = ?packet.id,
                "ignoring a reply to nothing pending (a late answer to a resend)"
            ),
        }
    }

    /// An error reply to a packet without an id (a marker, a chat state), or to one no
    /// longer pending.
    fn unmatched_error(&mut self, packet: &Packet) {
        let Some(error) = typed::<mqchat_proto::body::ErrorReply>(packet) else {
            return;
        };
        tracing::warn!(code = %error.code, detail = ?error.detail, "the hub refused a packet");
        self.emit(Event::Error {
            id: packet.id,
            code: error.code,
            detail: error.detail,
        });
    }

    fn resolve(&mut self, id: MessageId, entry: Entry, reply: Reply, now: Now) {
        if let Reply::Refused(error) = &reply
            && error.code == ErrorCode::RATE_LIMITED
            && matches!(entry.expect, Expect::Event { .. } | Expect::GroupChange)
        {
            self.hold(id, entry, now);
            return;
        }
        if let Reply::Refused(error) = &reply
            && !entry.expect.is_app()
            && matches!(error.code, ErrorCode::INTERNAL | ErrorCode::RATE_LIMITED)
        {
            tracing::debug!(code = %error.code, "the hub cannot answer now; asking again later");
            self.retry_later(entry, now);
            return;
        }
        match (entry.expect, reply) {
            (Expect::Baseline, Reply::Sync(result)) => {
                self.token = Some(self.token.map_or(result.token, |t| t.max(result.token)));
                self.settle();
            }
            (Expect::CatchUp, Reply::Sync(result)) => self.catch_up_page(result, now),
            (Expect::Fill { conv }, Reply::History(result)) => self.filled(conv, result, now),
            (Expect::GroupInfo { group, purpose }, Reply::GroupInfo(result, seq)) => {
                self.groups.roster(&self.me.user, &group, &result, seq);
                let answer = match purpose {
                    InfoFor::Session => return,
                    InfoFor::App => Answer::Group(crate::group::Group {
                        id: group,
                        name: result.name,
                        avatar: result.avatar,
                        description: result.description,
                        history: result.history,
                        members: result.members.into_iter().map(Member::from).collect(),
                        last_seq: Seq::new(seq),
                    }),
                    InfoFor::Receipt(at) => match self.groups.receipt(&self.me.user, &group, at) {
                        Some(receipt) => Answer::Receipt(receipt),
                        None => {
                            let what = "no roster after a group-info answer";
                            self.out.push_back(Output::Answer {
                                id,
                                answer: Err(Error::protocol(what)),
                            });
                            return;
                        }
                    },
                };
                self.out.push_back(Output::Answer {
                    id,
                    answer: Ok(answer),
                });
            }
            (Expect::ClientState, Reply::Done) => {}
            (
                expect @ (Expect::Baseline
                | Expect::ClientState
                | Expect::CatchUp
                | Expect::Fill { .. }
                | Expect::GroupInfo {
                    purpose: InfoFor::Session,
                    ..
                }),
                reply,
            ) => {
                let error = match reply {
                    Reply::Refused(e) => Error::hub_refused(e.code, e.detail),
                    other => Error::protocol(format!("{other:?}")),
                };
                self.fail(id, expect, error, now);
            }
            (_, reply) => {
                let answer = match reply {
                    Reply::Sent(sent) => Ok(Answer::Sent(sent)),
                    Reply::Version(version) => Ok(Answer::Version(version)),
                    Reply::Sync(result) => Ok(Answer::Sync(result)),
                    Reply::History(result) => Ok(Answer::History(result)),
                    Reply::GroupInfo(..) => Err(Error::protocol("an unexpected group-info result")),
                    Reply::Done => Ok(Answer::Done),
                    Reply::Devices(result) => Ok(Answer::Devices(result.devices)),
                    Reply::Refused(e) => Err(Error::hub_refused(e.code, e.detail)),
                    Reply::Unexpected(what) => {
                        tracing::warn!("{what}");
                        Err(Error::protocol(what))
                    }
                };
                self.out.push_back(Output::Answer { id, answer });
            }
        }
    }
}

/// The typed body of a packet the registry accepted; `None`, logged, if it does not fit.
fn typed<B: Body>(packet: &Packet) -> Option<B> {
    match B::from_packet(packet) {
        Ok(body) => Some(body),
        Err(e) => {
            tracing::warn!(
                kind = packet.kind.0,
                "skipping a packet that does not fit its type: {e}"
            );
            None
        }
    }
}
