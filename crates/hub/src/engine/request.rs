//! Requests (spec section 8), answered on the sender's reply topic: profile (spec 7.6), sync
//! (7.9) and history (7.10) are here; groups (7.11), devices (7.12) and client state, push
//! and mute (7.13) have modules of their own.

use mqchat_proto::body::{
    Ack, Body, ConversationEntry, History, HistoryResult, Profile, Sync, SyncResult, limits,
};
use mqchat_proto::upstream::Inbound;
use mqchat_proto::{ConversationRef, ErrorCode, Packet, PacketKind, Timestamp, Topic, UserId};
use mqchat_store::archive::Position;
use mqchat_store::{ConversationRow, ParticipantRow, ProfileRow, Store, StoreError, Tx};

use super::{Engine, Failure, Target, Turn, body, conv_name, refuse, window};
use crate::render::event_for;
use crate::{Outbound, Qos};

impl Engine {
    pub(super) fn request(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<(), Failure> {
        let tx = &mut *turn.tx;
        let reply = match inbound.packet.kind {
            PacketKind::PROFILE => {
                let change = body::<Profile>(inbound)?;
                let user = &inbound.sender.user;
                let (retained, ack) = self.set_profile(tx, turn.now.wall, user, &change)?;
                turn.out.publishes.push(retained);
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
            PacketKind::GROUP_CREATE | PacketKind::GROUP_ADMIN | PacketKind::GROUP_JOIN => {
                self.group_request(turn, inbound)?
            }
            PacketKind::GROUP_INFO => self.group_info(tx, inbound)?,
            PacketKind::DEVICE_LIST => self.device_list(tx, inbound)?,
            PacketKind::DEVICE_REVOKE => self.device_revoke(turn, inbound)?,
            PacketKind::CLIENT_STATE | PacketKind::PUSH_REGISTER | PacketKind::PUSH_UNREGISTER => {
                self.device_setting(turn, inbound)?
            }
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
        turn.out.publishes.push(self.reply(inbound, &reply));
        Ok(())
    }

    fn set_profile(
        &self,
        tx: &Tx<'_>,
        now: Timestamp,
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
            ts: Some(now.unix_ms()),
        };
        tx.set_profile(user, &stored)?;
        let mut ack = Ack::default().to_packet();
        ack.seq = Some(stored.version);
        ack.ts = Some(now.unix_ms());
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
}

fn entry_size(entry: &ConversationEntry) -> usize {
    64 + entry.last.as_ref().map_or(0, |p| p.encode().len())
}
