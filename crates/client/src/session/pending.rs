//! Upstream packets waiting for the hub's answer, keyed by their client message id: what a
//! reply resolves, what times out, and what is resent after a reconnect (spec sections 8, 9
//! and 13).
//!
//! Every upstream packet with an id gets exactly one answer: its copy on the sender's durable
//! inbox (a new event), an `ack` (a duplicate event, a profile change), a result (sync,
//! history) or an `error`. Until then the packet stays here, encoded, and is resent with its
//! original id on every new connection; the hub deduplicates.

use std::collections::BTreeMap;

use mqchat_proto::body::{
    Ack, Body, DeviceListResult, ErrorReply, GroupInfoResult, HistoryResult, SyncResult,
};
use mqchat_proto::{
    ConversationRef, DeviceIdentity, GroupId, MessageId, Moment, Packet, PacketKind, Seq, Timestamp,
};

use crate::event::Sent;

/// What answers a pending packet, and who wants the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A conversation event: confirmed by its own copy or a duplicate `ack`.
    Event {
        /// The conversation it was sent to.
        conv: ConversationRef,
    },
    /// A profile change: confirmed by an `ack` carrying the new version.
    Profile,
    /// The application's `sync`.
    Sync,
    /// The application's `history`.
    History,
    /// The session's own newest-first `sync`, for the hub's current change token.
    Baseline,
    /// The session's own `sync` after a reconnect, for what changed while it was away.
    CatchUp,
    /// The session's own `history`, to fill a gap in a conversation.
    Fill {
        /// The conversation with the gap.
        conv: ConversationRef,
    },
    /// A group request that changes the group (create, admin, join): confirmed by an
    /// `ack`, or by the copy of the group event it made on the durable inbox.
    GroupChange,
    /// A request answered by a plain `ack` (device-revoke, push-register, push-unregister,
    /// mute).
    Done,
    /// The application's `device-list`.
    Devices,
    /// The session's own `client-state` (spec 7.13).
    ClientState,
    /// A `group-info` request.
    GroupInfo {
        /// The group asked about.
        group: GroupId,
        /// Who wants the answer.
        purpose: InfoFor,
    },
}

/// Who asked for a group's roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InfoFor {
    /// The application's `group_info`.
    App,
    /// The application's `receipt` for this sequence number.
    Receipt(u64),
    /// The session, to keep receipts (a group it has no roster of).
    Session,
}

impl Expect {
    /// Whether the application waits for this answer (the others are the session's own).
    pub fn is_app(&self) -> bool {
        matches!(
            self,
            Self::Event { .. }
                | Self::Profile
                | Self::Sync
                | Self::History
                | Self::GroupChange
                | Self::Done
                | Self::Devices
                | Self::GroupInfo {
                    purpose: InfoFor::App | InfoFor::Receipt(_),
                    ..
                }
        )
    }
}

/// A packet waiting for its answer.
#[derive(Debug)]
pub(crate) struct Entry {
    /// What answers it.
    pub expect: Expect,
    /// The encoded packet, resent as it is after a reconnect.
    pub payload: Vec<u8>,
    /// When to give up waiting; `None` waits for as long as the session lives. For a
    /// packet the hub refused as `rate-limited` ([`Entry::held`] above 0): when to send it
    /// again.
    pub deadline: Option<Moment>,
    /// How many times in a row the hub answered `rate-limited`: the packet waits, unsent,
    /// until its deadline, then goes again with the same id (spec 13).
    pub held: u32,
}

/// What a reply on the device's reply topic means for the packet it answers.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    /// The event is stored (a duplicate `ack`).
    Sent(Sent),
    /// The profile change is stored with this version.
    Version(u64),
    /// A sync result.
    Sync(SyncResult),
    /// A history result.
    History(HistoryResult),
    /// A group-info result, as of the group's event `seq`.
    GroupInfo(GroupInfoResult, u64),
    /// The request was carried out.
    Done,
    /// The user's devices.
    Devices(DeviceListResult),
    /// The hub refused the packet.
    Refused(ErrorReply),
    /// The reply does not fit the request: the hub broke the protocol.
    Unexpected(String),
}

/// Reads `reply`, the answer to the packet `id` that expects `expect`.
pub(crate) fn read_reply(expect: &Expect, id: MessageId, reply: &Packet) -> Reply {
    let unexpected = |what: &str| Reply::Unexpected(format!("{what} in answer to {id}"));
    match (reply.kind, expect) {
        (PacketKind::ERROR, _) => match ErrorReply::from_packet(reply) {
            Ok(error) => Reply::Refused(error),
            Err(e) => Reply::Unexpected(format!("unreadable error reply: {e}")),
        },
        (PacketKind::ACK, Expect::Event { conv }) => {
            let Some(seq) = reply.seq else {
                return unexpected("an ack without a sequence number");
            };
            let duplicate = Ack::from_packet(reply).is_ok_and(|ack| ack.duplicate);
            Reply::Sent(Sent {
                id,
                conv: reply.conv.clone().unwrap_or_else(|| conv.clone()),
                seq: Seq::new(seq),
                ts: Timestamp::from_unix_ms(reply.ts.unwrap_or(0)),
                duplicate,
            })
        }
        (PacketKind::ACK, Expect::GroupChange) => match (&reply.conv, reply.seq) {
            (Some(conv @ ConversationRef::Group(_)), Some(seq)) => Reply::Sent(Sent {
                id,
                conv: conv.clone(),
                seq: Seq::new(seq),
                ts: Timestamp::from_unix_ms(reply.ts.unwrap_or(0)),
                duplicate: Ack::from_packet(reply).is_ok_and(|ack| ack.duplicate),
            }),
            _ => unexpected("a group ack without a group and a sequence number"),
        },
        (PacketKind::GROUP_INFO_RESULT, Expect::GroupInfo { .. }) => {
            match GroupInfoResult::from_packet(reply) {
                Ok(result) => Reply::GroupInfo(result, reply.seq.unwrap_or(0)),
                Err(e) => Reply::Unexpected(format!("unreadable group-info result: {e}")),
            }
        }
        (PacketKind::ACK, Expect::Done | Expect::ClientState) => Reply::Done,
        (PacketKind::DEVICE_LIST_RESULT, Expect::Devices) => {
            match DeviceListResult::from_packet(reply) {
                Ok(result) => Reply::Devices(result),
                Err(e) => Reply::Unexpected(format!("unreadable device list: {e}")),
            }
        }
        (PacketKind::ACK, Expect::Profile) => match reply.seq {
            Some(version) => Reply::Version(version),
            None => unexpected("a profile ack without a version"),
        },
        (PacketKind::SYNC_RESULT, Expect::Sync | Expect::Baseline | Expect::CatchUp) => {
            match SyncResult::from_packet(reply) {
                Ok(result) => Reply::Sync(result),
                Err(e) => Reply::Unexpected(format!("unreadable sync result: {e}")),
            }
        }
        (PacketKind::HISTORY_RESULT, Expect::History | Expect::Fill { .. }) => {
            match HistoryResult::from_packet(reply) {
                Ok(result) => Reply::History(result),
                Err(e) => Reply::Unexpected(format!("unreadable history result: {e}")),
            }
        }
        (kind, _) => unexpected(&format!("a packet of type {}", kind.0)),
    }
}

/// The packets waiting for answers, in id order (which is the order they were made in).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    entries: BTreeMap<MessageId, Entry>,
}

impl Pending {
    /// Adds a packet. A packet already pending under the same id is kept as it is: sending
    /// the same id twice is a resend.
    pub fn insert(&mut self, id: MessageId, entry: Entry) -> bool {
        if self.entries.contains_key(&id) {
            return false;
        }
        self.entries.insert(id, entry);
        true
    }

    /// Removes and returns the packet with this id.
    pub fn remove(&mut self, id: MessageId) -> Option<Entry> {
        self.entries.remove(&id)
    }

    /// Everything to resend on a new connection, oldest first.
    pub fn unconfirmed(&self) -> impl Iterator<Item = (MessageId, &Entry)> {
        self.entries.iter().map(|(id, entry)| (*id, entry))
    }

    /// If `event` (from the durable inbox, or a history page) is this device's own copy of a
    /// pending event, removes it and returns the confirmation.
    pub fn confirm_copy(&mut self, event: &Packet, me: &DeviceIdentity) -> Option<Sent> {
        let id = event.id?;
        if event.device.as_ref() != Some(&me.device) || event.from.as_ref() != Some(&me.user) {
            return None;
        }
        let seq = event.seq?;
        let conv = event.conv.clone()?;
        if !matches!(
            self.entries.get(&id)?.expect,
            Expect::Event { .. } | Expect::GroupChange
        ) {
            return None;
        }
        self.entries.remove(&id);
        Some(Sent {
            id,
            conv,
            seq: Seq::new(seq),
            ts: Timestamp::from_unix_ms(event.ts.unwrap_or(0)),
            duplicate: false,
        })
    }

    /// Removes and returns the packets whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Moment) -> Vec<(MessageId, Entry)> {
        let due: Vec<MessageId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|e| (id, e)))
            .collect()
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Moment> {
        self.entries.values().filter_map(|e| e.deadline).min()
    }

    /// Removes everything (the session is closing).
    pub fn drain(&mut self) -> Vec<(MessageId, Entry)> {
        std::mem::take(&mut self.entries).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use mqchat_proto::ErrorCode;

    fn id(n: u64) -> MessageId {
        MessageId::new(n).expect("valid id")
    }

    fn conv(s: &str) -> ConversationRef {
        ConversationRef::parse(s).expect("valid conv")
    }

    fn me() -> DeviceIdentity {
        DeviceIdentity::parse_client_id("alice:phone").expect("valid")
    }

    /// A packet from its JSON rendering, as in the spec's test vectors.
    fn packet(json: &str) -> Packet {
        let value: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
        mqchat_proto::Registry::with_core()
            .from_json(&value)
            .expect("valid packet JSON")
    }

    fn check(expect: Expect, reply: &str, expected: Reply) {
        assert_eq!(
            read_reply(&expect, id(7), &packet(reply)),
            expected,
            "{reply}"
        );
    }

    #[test]
    fn replies() {
        let sent = |conv_name: &str, seq, duplicate| {
            Reply::Sent(Sent {
                id: id(7),
                conv: conv(conv_name),
                seq: Seq::new(seq),
                ts: Timestamp::from_unix_ms(1000),
                duplicate,
            })
        };
        let event = || Expect::Event { conv: conv("bob") };
        check(
            event(),
            r#"{"type":"ack","id":"0000000000007","conv":"bob","seq":42,"ts":1000,"duplicate":true}"#,
            sent("bob", 42, true),
        );
        check(
            event(),
            r#"{"type":"ack","id":"0000000000007","seq":3,"ts":1000}"#,
            sent("bob", 3, false),
        );
        check(
            event(),
            r#"{"type":"ack","id":"0000000000007","duplicate":true}"#,
            Reply::Unexpected("an ack without a sequence number in answer to 0000000000007".into()),
        );
        check(
            Expect::Profile,
            r#"{"type":"ack","id":"0000000000007","seq":3,"ts":1000}"#,
            Reply::Version(3),
        );
        check(
            event(),
            r#"{"type":"error","id":"0000000000007","conv":"bob","code":6,"detail":"no such user"}"#,
            Reply::Refused(ErrorReply {
                code: ErrorCode::NO_SUCH_USER,
                detail: Some("no such user".into()),
                about: None,
            }),
        );
        check(
            Expect::Sync,
            r#"{"type":"sync-result","id":"0000000000007","conversations":[],"token":5}"#,
            Reply::Sync(SyncResult {
                token: 5,
                ..SyncResult::default()
            }),
        );
        check(
            Expect::Fill { conv: conv("bob") },
            r#"{"type":"history-result","id":"0000000000007","conv":"bob","events":[],"more":true}"#,
            Reply::History(HistoryResult {
                more: true,
                ..HistoryResult::default()
            }),
        );
        check(
            Expect::Profile,
            r#"{"type":"sync-result","id":"0000000000007","conversations":[],"token":5}"#,
            Reply::Unexpected("a packet of type 11 in answer to 0000000000007".into()),
        );
    }

    fn entry(expect: Expect, deadline: Option<Moment>) -> Entry {
        Entry {
            expect,
            payload: Vec::new(),
            deadline,
            held: 0,
        }
    }

    #[test]
    fn resend_order_and_expiry() {
        let t0 = Moment::ZERO;
        let mut pending = Pending::default();
        assert!(pending.insert(id(3), entry(Expect::Event { conv: conv("bob") }, None)));
        assert!(pending.insert(
            id(1),
            entry(Expect::Sync, Some(t0 + Duration::from_secs(10)))
        ));
        assert!(pending.insert(
            id(2),
            entry(Expect::Profile, Some(t0 + Duration::from_secs(5)))
        ));
        assert!(
            !pending.insert(id(3), entry(Expect::Profile, None)),
            "same id twice"
        );
        let order: Vec<u64> = pending.unconfirmed().map(|(i, _)| i.get()).collect();
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(pending.next_deadline(), Some(t0 + Duration::from_secs(5)));
        let expired: Vec<u64> = pending
            .expire(t0 + Duration::from_secs(5))
            .iter()
            .map(|(i, _)| i.get())
            .collect();
        assert_eq!(expired, [2]);
        assert_eq!(pending.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(pending.expire(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(pending.drain().len(), 2);
        assert!(pending.unconfirmed().next().is_none());
    }

    #[test]
    fn own_copies_confirm_events() {
        let mut pending = Pending::default();
        pending.insert(id(7), entry(Expect::Event { conv: conv("bob") }, None));
        pending.insert(id(8), entry(Expect::Profile, None));
        // Another device's copy, a peer's event, a non-event entry: no confirmation.
        let cases = [
            (
                r#"{"type":"message","id":"0000000000007","conv":"bob","seq":4,"ts":1000,"from":"alice","device":"laptop","text":"x"}"#,
                None,
            ),
            (
                r#"{"type":"message","id":"0000000000007","conv":"bob","seq":4,"ts":1000,"text":"x"}"#,
                None,
            ),
            (
                r#"{"type":"message","id":"0000000000008","conv":"bob","seq":4,"ts":1000,"from":"alice","device":"phone","text":"x"}"#,
                None,
            ),
            (
                r#"{"type":"message","id":"0000000000007","conv":"bob","seq":4,"ts":1000,"from":"alice","device":"phone","text":"x"}"#,
                Some(4),
            ),
            (
                r#"{"type":"message","id":"0000000000007","conv":"bob","seq":4,"ts":1000,"from":"alice","device":"phone","text":"x"}"#,
                None,
            ),
        ];
        for (json, expected) in cases {
            let got = pending
                .confirm_copy(&packet(json), &me())
                .map(|s| s.seq.get());
            assert_eq!(got, expected, "{json}");
        }
    }
}
