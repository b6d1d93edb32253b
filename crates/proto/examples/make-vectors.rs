//! Writes the test vectors under `crates/proto/tests/vectors/` from the definitions below.
//!
//! Vectors are committed files: `cargo test` checks every one both ways (CBOR to JSON and
//! back) and checks the invalid ones produce their error. Regenerate after a deliberate
//! change to the wire format, and review the diff:
//!
//! `cargo run -p mqchat-proto --example make-vectors -- crates/proto/tests/vectors`

// A tool, not the library: it writes files.
#![allow(clippy::disallowed_methods)]

use mqchat_proto::encoding::MAX_NESTING;
use mqchat_proto::{Packet, Registry};
use serde_json::{Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: make-vectors DIR")?;
    let registry = Registry::with_core();
    let valid_dir = std::path::Path::new(&dir).join("valid");
    let invalid_dir = std::path::Path::new(&dir).join("invalid");
    std::fs::create_dir_all(&valid_dir)?;
    std::fs::create_dir_all(&invalid_dir)?;
    for (name, description, topic, packet, route) in valid() {
        let encoded = registry
            .from_json(&packet)
            .map_err(|e| format!("{name}: {e}"))?
            .encode();
        let mut vector = json!({
            "description": description,
            "topic": topic,
            "cbor": hex(&encoded),
            "packet": packet,
        });
        if let Some(route) = route {
            vector["route"] = json!(route);
        }
        std::fs::write(
            valid_dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&vector)? + "\n",
        )?;
    }
    for (name, description, topic, cbor, packet, route) in other_encodings() {
        let canonical = registry
            .from_json(&packet)
            .map_err(|e| format!("{name}: {e}"))?
            .encode();
        let bytes = ::hex::decode(cbor.split_whitespace().collect::<String>())?;
        let decoded = Packet::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
        if registry.to_json(&decoded) != packet || decoded.encode() != canonical {
            return Err(format!("{name}: the bytes do not encode the packet").into());
        }
        let vector = json!({
            "description": description,
            "topic": topic,
            "cbor": cbor,
            "canonical": hex(&canonical),
            "packet": packet,
            "route": route,
        });
        std::fs::write(
            valid_dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&vector)? + "\n",
        )?;
    }
    let invalid = invalid()
        .into_iter()
        .map(|(name, description, topic, cbor, error, max)| {
            (name, description, topic, cbor.to_owned(), error, max)
        });
    for (name, description, topic, cbor, error, max_payload) in invalid.chain(too_deep()) {
        let mut vector =
            json!({ "description": description, "topic": topic, "cbor": cbor, "error": error });
        if let Some(max) = max_payload {
            vector["max-payload"] = json!(max);
        }
        std::fs::write(
            invalid_dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&vector)? + "\n",
        )?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const ID: &str = "0a03zkqvpmqsw";
const ID2: &str = "0a03zkqvpmqsx";
const TS: u64 = 1_790_000_000_000;

const SIP_INVITE: &str = "INVITE sip:bob@localhost SIP/2.0\r\n\
Via: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@localhost>\r\n\
From: <sip:alice@localhost>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@phone.alice.invalid\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@localhost;gr=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 94\r\n\
\r\n\
v=0\r\n\
o=alice 1 1 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\n";

const SIP_RINGING: &str = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bK776asdhds\r\n\
To: <sip:bob@localhost>;tag=a6c85cf\r\n\
From: <sip:alice@localhost>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@phone.alice.invalid\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@localhost;gr=phone>\r\n\
Content-Length: 0\r\n\
\r\n";

const SIP_MESSAGE_IN: &str = "MESSAGE sip:bob@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK.c1;received=192.0.2.20;rport=5060\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@localhost>\r\n\
From: <sip:carol@example.net>;tag=49583\r\n\
Call-ID: m1@192.0.2.20\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: 9\r\n\
\r\n\
Hello Bob";

const SIP_MESSAGE_OUT: &str = "MESSAGE sip:carol@example.net SIP/2.0\r\n\
Via: SIP/2.0/MQTT hub.localhost;branch=z9hG4bK.h7\r\n\
Max-Forwards: 70\r\n\
To: <sip:carol@example.net>\r\n\
From: <sip:bob@localhost>;tag=h7t\r\n\
Call-ID: 0a03zkqvpmqsw@hub.localhost\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: 8\r\n\
\r\n\
Hi Carol";

type Valid = (
    &'static str,
    &'static str,
    &'static str,
    Value,
    Option<&'static str>,
);

fn valid() -> Vec<Valid> {
    let up = "mq/up/alice/phone";
    let bob_up = "mq/up/bob/phone";
    vec![
        (
            "message-upstream",
            "alice's phone sends \"Hi\" to bob",
            up,
            json!({"type": "message", "id": ID, "conv": "bob", "text": "Hi"}),
            Some("event"),
        ),
        (
            "message-delivered",
            "the hub delivers it to bob's durable inbox: conv is the peer, no id, no from (the peer sent it)",
            "mq/in/bob/d",
            json!({"type": "message", "conv": "alice", "seq": 42, "ts": TS, "text": "Hi"}),
            None,
        ),
        (
            "message-own-copy",
            "the copy on alice's own durable inbox: the sent confirmation for the phone, the carbon for her other devices",
            "mq/in/alice/d",
            json!({"type": "message", "id": ID, "conv": "bob", "seq": 42, "ts": TS, "from": "alice", "device": "phone", "text": "Hi"}),
            None,
        ),
        (
            "message-reply-mentions",
            "a reply to event 41 mentioning carol, with non-ASCII text",
            up,
            json!({"type": "message", "id": ID2, "conv": "bob", "text": "Ça va, @carol? 👋", "reply-to": 41, "mentions": ["carol"]}),
            Some("event"),
        ),
        (
            "message-unknown-key",
            "a message with a body key this version does not know (99): kept and passed on unchanged",
            up,
            json!({"type": "message", "id": ID, "conv": "bob", "text": "Hi", "unknown": {"99": "a1617801"}}),
            Some("event"),
        ),
        (
            "message-to-self",
            "a note to self: the conversation is the sender's own user id",
            up,
            json!({"type": "message", "id": ID, "conv": "alice", "text": "buy milk"}),
            Some("event"),
        ),
        (
            "chat-state-upstream",
            "alice is typing to bob",
            up,
            json!({"type": "chat-state", "conv": "bob", "state": "composing"}),
            Some("signal"),
        ),
        (
            "chat-state-delivered",
            "bob's ephemeral inbox shows alice typing",
            "mq/in/bob/e",
            json!({"type": "chat-state", "conv": "alice", "state": "composing"}),
            None,
        ),
        (
            "chat-state-paused",
            "alice stopped typing",
            up,
            json!({"type": "chat-state", "conv": "bob", "state": "paused"}),
            Some("signal"),
        ),
        (
            "delivered-upstream",
            "bob's device received everything from alice up to 42",
            bob_up,
            json!({"type": "delivered", "conv": "alice", "up-to": 42}),
            Some("marker"),
        ),
        (
            "delivered-forwarded",
            "alice learns bob received up to 42",
            "mq/in/alice/d",
            json!({"type": "delivered", "conv": "bob", "ts": TS + 80, "up-to": 42}),
            None,
        ),
        (
            "read-upstream",
            "bob read up to 42",
            bob_up,
            json!({"type": "read", "conv": "alice", "up-to": 42}),
            Some("marker"),
        ),
        (
            "read-private-upstream",
            "bob read up to 42 but does not tell alice (his own devices still sync)",
            bob_up,
            json!({"type": "read", "conv": "alice", "up-to": 42, "private": true}),
            Some("marker"),
        ),
        (
            "read-forwarded",
            "alice learns bob read up to 42",
            "mq/in/alice/d",
            json!({"type": "read", "conv": "bob", "ts": TS + 5000, "up-to": 42}),
            None,
        ),
        (
            "read-own-devices",
            "bob's other devices learn he read up to 42 (seen across devices): from is bob himself",
            "mq/in/bob/d",
            json!({"type": "read", "conv": "alice", "ts": TS + 5000, "from": "bob", "device": "phone", "up-to": 42}),
            None,
        ),
        (
            "contact-request-upstream",
            "alice asks bob to become contacts",
            up,
            json!({"type": "contact", "id": ID, "conv": "bob", "action": "request", "note": "Hi Bob, it's Alice from the conference"}),
            Some("event"),
        ),
        (
            "contact-request-delivered",
            "bob receives the request as event 1 of the conversation",
            "mq/in/bob/d",
            json!({"type": "contact", "conv": "alice", "seq": 1, "ts": TS, "action": "request", "note": "Hi Bob, it's Alice from the conference"}),
            None,
        ),
        (
            "contact-accept-upstream",
            "bob accepts",
            bob_up,
            json!({"type": "contact", "id": ID2, "conv": "alice", "action": "accept"}),
            Some("event"),
        ),
        (
            "contact-decline-upstream",
            "bob declines",
            bob_up,
            json!({"type": "contact", "id": ID2, "conv": "alice", "action": "decline"}),
            Some("event"),
        ),
        (
            "contact-cancel-upstream",
            "alice withdraws her request",
            up,
            json!({"type": "contact", "id": ID2, "conv": "bob", "action": "cancel"}),
            Some("event"),
        ),
        (
            "contact-remove-upstream",
            "alice ends the contact relationship",
            up,
            json!({"type": "contact", "id": ID2, "conv": "bob", "action": "remove"}),
            Some("event"),
        ),
        (
            "presence-available",
            "alice's phone is available, retained on its presence topic",
            "mq/pr/alice/phone",
            json!({"type": "presence", "ts": TS, "availability": "available", "status": "At work"}),
            None,
        ),
        (
            "presence-will",
            "the will alice's phone registers at CONNECT: offline, no time",
            "mq/pr/alice/phone",
            json!({"type": "presence", "availability": "offline"}),
            None,
        ),
        (
            "presence-offline-stamped",
            "the hub replaces a will's offline with one stamped with the last-seen time",
            "mq/pr/alice/phone",
            json!({"type": "presence", "ts": TS, "availability": "offline", "last-active": TS}),
            None,
        ),
        (
            "profile-set-upstream",
            "alice sets her display name and clears her status (empty text clears)",
            up,
            json!({"type": "profile", "id": ID, "name": "Alice Liddell", "status": ""}),
            Some("request"),
        ),
        (
            "profile-retained",
            "the hub's retained profile for alice",
            "mq/pf/alice",
            json!({"type": "profile", "seq": 3, "ts": TS, "name": "Alice Liddell", "avatar": "https://example.org/a.png"}),
            None,
        ),
        (
            "ack-profile",
            "the hub confirms alice's profile change on her phone's reply topic",
            "mq/in/alice/r/phone",
            json!({"type": "ack", "id": ID, "seq": 3, "ts": TS}),
            None,
        ),
        (
            "ack-duplicate",
            "alice's phone resent a message the hub had already stored as 42",
            "mq/in/alice/r/phone",
            json!({"type": "ack", "id": ID, "conv": "bob", "seq": 42, "ts": TS, "duplicate": true}),
            None,
        ),
        (
            "error-invalid",
            "the hub refuses a message without text",
            "mq/in/alice/r/phone",
            json!({"type": "error", "id": ID, "conv": "bob", "code": 2, "detail": "field 8 (text): is required", "about": 1}),
            None,
        ),
        (
            "error-no-such-user",
            "the hub refuses a message to a user that does not exist",
            "mq/in/alice/r/phone",
            json!({"type": "error", "id": ID, "conv": "nobody", "code": 6, "detail": "no user \"nobody\"", "about": 1}),
            None,
        ),
        (
            "sync-upstream",
            "alice's phone asks what changed after token 1200",
            up,
            json!({"type": "sync", "id": ID, "after": 1200, "limit": 100}),
            Some("request"),
        ),
        (
            "sync-newest-first",
            "a device with no storage lists its 20 most recent conversations",
            up,
            json!({"type": "sync", "id": ID, "limit": 20, "newest-first": true}),
            Some("request"),
        ),
        (
            "sync-result",
            "two conversations changed; no more",
            "mq/in/alice/r/phone",
            json!({"type": "sync-result", "id": ID, "conversations": [
                {"conv": "bob", "last-seq": 42, "last-ts": TS, "change": 1250,
                 "last": {"type": "message", "conv": "bob", "seq": 42, "ts": TS, "from": "alice", "text": "Hi"},
                 "delivered": 40, "read": 40, "peer-delivered": 42, "contact": "accepted"},
                {"conv": "carol", "last-seq": 7, "last-ts": TS - 60000, "change": 1251,
                 "last": {"type": "message", "conv": "carol", "seq": 7, "ts": TS - 60000, "text": "Lunch?"},
                 "unread": 2, "delivered": 7, "read": 5, "peer-read": 3, "first-seq": 1}
            ], "token": 1251}),
            None,
        ),
        (
            "history-upstream",
            "alice's phone asks for bob's conversation after 40",
            up,
            json!({"type": "history", "id": ID, "conv": "bob", "after": 40, "limit": 50}),
            Some("request"),
        ),
        (
            "history-backward",
            "a device with no storage pages backwards from 41",
            up,
            json!({"type": "history", "id": ID, "conv": "bob", "before": 41, "limit": 2}),
            Some("request"),
        ),
        (
            "history-result",
            "two events, oldest first, more before them",
            "mq/in/alice/r/phone",
            json!({"type": "history-result", "id": ID, "conv": "bob", "events": [
                {"type": "message", "conv": "bob", "seq": 39, "ts": TS - 9000, "text": "Are you there?"},
                {"type": "message", "conv": "bob", "seq": 40, "ts": TS - 8000, "from": "alice", "text": "Yes!"}
            ], "more": true, "first-seq": 1, "last-seq": 42}),
            None,
        ),
        (
            "history-truncated",
            "asked after 3, but retention removed events up to 9",
            "mq/in/alice/r/phone",
            json!({"type": "history-result", "id": ID, "conv": "bob", "events": [
                {"type": "message", "conv": "bob", "seq": 10, "ts": TS - 99000, "text": "oldest kept"}
            ], "first-seq": 10, "last-seq": 10, "truncated": true}),
            None,
        ),
        (
            "unknown-type-durable",
            "a packet type this hub does not know (1500): routed as a durable event by its envelope, body kept",
            up,
            json!({"type": 1500, "id": ID, "conv": "bob", "unknown": {"8": "6a736f6d65206461746121"}}),
            Some("event"),
        ),
        (
            "nesting-limit",
            "a message whose unknown key 99 nests as deep as a packet may: 16 levels, the packet's map being the first",
            up,
            json!({"type": "message", "id": ID, "conv": "bob", "text": "Hi", "unknown": {"99": format!("{}00", "81".repeat(MAX_NESTING - 1))}}),
            Some("event"),
        ),
        (
            "unknown-type-ephemeral",
            "an unknown type flagged ephemeral: forwarded like a chat state",
            up,
            json!({"type": 1501, "conv": "bob", "ephemeral": true, "unknown": {"8": "01"}}),
            Some("signal"),
        ),
        (
            "group-create-upstream",
            "alice creates a group and invites bob and carol",
            up,
            json!({"type": "group-create", "id": ID, "name": "Climbing", "invite": ["bob", "carol"]}),
            Some("request"),
        ),
        (
            "group-event-created",
            "the created event, first of the group, on alice's durable inbox (her own: id and device)",
            "mq/in/alice/d",
            json!({"type": "group-event", "id": ID, "conv": "#k3v9q2mx7d", "seq": 1, "ts": TS, "from": "alice", "device": "phone", "action": "created", "role": "owner", "name": "Climbing"}),
            None,
        ),
        (
            "group-event-invited",
            "bob's invitation, with the group's name, on his durable inbox",
            "mq/in/bob/d",
            json!({"type": "group-event", "conv": "#k3v9q2mx7d", "seq": 2, "ts": TS, "from": "alice", "action": "invited", "user": "bob", "name": "Climbing"}),
            None,
        ),
        (
            "group-join-accept",
            "bob accepts",
            bob_up,
            json!({"type": "group-join", "id": ID2, "conv": "#k3v9q2mx7d", "action": "accept"}),
            Some("request"),
        ),
        (
            "group-admin-invite",
            "alice invites dave",
            up,
            json!({"type": "group-admin", "id": ID2, "conv": "#k3v9q2mx7d", "action": "invite", "user": "dave"}),
            Some("request"),
        ),
        (
            "group-admin-promote",
            "alice makes bob an admin",
            up,
            json!({"type": "group-admin", "id": ID2, "conv": "#k3v9q2mx7d", "action": "role", "user": "bob", "role": "admin"}),
            Some("request"),
        ),
        (
            "group-admin-update",
            "alice renames the group and clears its description",
            up,
            json!({"type": "group-admin", "id": ID2, "conv": "#k3v9q2mx7d", "action": "update", "name": "Climbing club", "description": ""}),
            Some("request"),
        ),
        (
            "group-message-delivered",
            "a message in the group as bob receives it: from is always set in groups",
            "mq/in/bob/d",
            json!({"type": "message", "conv": "#k3v9q2mx7d", "seq": 5, "ts": TS, "from": "carol", "text": "Saturday?"}),
            None,
        ),
        (
            "group-info-upstream",
            "bob asks for the roster",
            bob_up,
            json!({"type": "group-info", "id": ID2, "conv": "#k3v9q2mx7d"}),
            Some("request"),
        ),
        (
            "group-info-result",
            "the roster: alice owner, bob admin, carol invited",
            "mq/in/bob/r/phone",
            json!({"type": "group-info-result", "id": ID2, "conv": "#k3v9q2mx7d", "seq": 5, "name": "Climbing", "members": [
                {"user": "alice", "role": "owner", "since": 1, "delivered": 5, "read": 5},
                {"user": "bob", "role": "admin", "since": 3, "delivered": 5, "read": 4},
                {"user": "carol", "role": "member", "invited": true, "since": 2}
            ]}),
            None,
        ),
        (
            "device-list-upstream",
            "alice asks which devices she has",
            up,
            json!({"type": "device-list", "id": ID}),
            Some("request"),
        ),
        (
            "device-list-result",
            "alice's devices: a laptop with a device token, a phone that logs in with her password",
            "mq/in/alice/r/phone",
            json!({"type": "device-list-result", "id": ID, "devices": [
                {"device-id": "laptop", "created": 1789000000000_u64, "last-login": 1789999000000_u64, "token": true},
                {"device-id": "phone", "created": 1789500000000_u64, "last-login": 1790000000000_u64}
            ]}),
            None,
        ),
        (
            "device-revoke-upstream",
            "alice revokes her lost laptop",
            up,
            json!({"type": "device-revoke", "id": ID, "device-id": "laptop"}),
            Some("request"),
        ),
        (
            "client-state-upstream",
            "alice's phone app goes to the background",
            up,
            json!({"type": "client-state", "id": ID, "active": false}),
            Some("request"),
        ),
        (
            "push-register-fcm",
            "alice's phone registers its FCM token, without message previews",
            up,
            json!({"type": "push-register", "id": ID, "provider": "fcm", "address": "dQw4w9WgXcQ:APA91bH"}),
            Some("request"),
        ),
        (
            "push-register-apns",
            "an iPhone development build registers its APNs token and shows previews",
            up,
            json!({"type": "push-register", "id": ID, "provider": "apns", "address": "5e9a0d3c4f1b2a7e", "topic": "org.example.chat", "sandbox": true, "preview": true}),
            Some("request"),
        ),
        (
            "push-register-web-push",
            "a browser registers its Web Push subscription",
            up,
            json!({"type": "push-register", "id": ID, "provider": "web-push", "address": "https://push.example.net/wpush/v2/gAAAA",
                   "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                   "auth": "tBHItJI5svbpez7KI4CCXg"}),
            Some("request"),
        ),
        (
            "push-unregister-upstream",
            "alice's phone no longer wants pushes",
            up,
            json!({"type": "push-unregister", "id": ID}),
            Some("request"),
        ),
        (
            "mute-upstream",
            "alice mutes her conversation with bob until 1790003600000 (an hour)",
            up,
            json!({"type": "mute", "id": ID, "conv": "bob", "until": 1790003600000_u64}),
            Some("request"),
        ),
        (
            "sip-invite-upstream",
            "alice's phone calls bob: a SIP INVITE with an SDP offer, over MQTT to the hub",
            up,
            json!({"type": "sip", "message": SIP_INVITE}),
            Some("sip"),
        ),
        (
            "sip-ringing-to-device",
            "the hub forwards bob's 180 Ringing to alice's phone on its reply topic",
            "mq/in/alice/r/phone",
            json!({"type": "sip", "message": SIP_RINGING}),
            None,
        ),
        (
            "sip-gateway-in",
            "the gateway hands the hub a SIP MESSAGE from carol, received from peer pbx",
            "mq/gw/sip/in",
            json!({"type": "sip", "message": SIP_MESSAGE_IN, "peer": "pbx", "source": "udp:192.0.2.20:5060"}),
            None,
        ),
        (
            "sip-gateway-out",
            "the hub asks the gateway to send bob's reply to carol as a SIP MESSAGE",
            "mq/gw/sip/out",
            json!({"type": "sip", "message": SIP_MESSAGE_OUT, "destination": "udp:192.0.2.20:5060"}),
            None,
        ),
        (
            "call-answered-delivered",
            "the record of alice's call, answered on bob's phone after 4 s, 90 s long, as bob receives it",
            "mq/in/bob/d",
            json!({"type": "call", "conv": "alice", "seq": 43, "ts": TS + 94_000,
                   "call-id": "a84b4c76e66710@phone.alice.invalid", "outcome": "answered",
                   "started": TS, "answered": TS + 4_000, "ended": TS + 94_000,
                   "duration": 90_000, "answered-by": "phone", "media": ["audio"]}),
            None,
        ),
        (
            "call-missed-own-copy",
            "a call alice made that bob did not answer, as alice's devices receive it",
            "mq/in/alice/d",
            json!({"type": "call", "conv": "bob", "seq": 44, "ts": TS + 60_000, "from": "alice",
                   "call-id": "b5c3@phone.alice.invalid", "outcome": "missed",
                   "started": TS, "ended": TS + 60_000, "media": ["audio", "video"]}),
            None,
        ),
        (
            "message-sip-upstream",
            "bob answers carol, an address outside mqchat reached through the SIP gateway",
            bob_up,
            json!({"type": "message", "id": ID, "conv": "sip:carol@example.net", "text": "Hi Carol"}),
            Some("event"),
        ),
        (
            "message-sip-delivered",
            "carol's SIP MESSAGE as bob receives it, in his conversation with her address",
            "mq/in/bob/d",
            json!({"type": "message", "conv": "sip:carol@example.net", "seq": 1, "ts": TS, "text": "Hello Bob"}),
            None,
        ),
        (
            "reaction-as-unknown",
            "a reaction (registered extension 128) seen by a registry without the extension",
            up,
            json!({"type": 128, "id": ID, "conv": "bob", "unknown": {"8": "182a", "9": "64f09f918d"}}),
            Some("event"),
        ),
    ]
}

type OtherEncoding = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
    &'static str,
);

/// Packets in encodings other than the deterministic one: accepted, and encoded as
/// `canonical` by an encoder (and by a hub forwarding them).
fn other_encodings() -> Vec<OtherEncoding> {
    let up = "mq/up/alice/phone";
    vec![
        (
            "message-indefinite",
            "message-upstream with indefinite lengths: the map, and the conversation and text in chunks",
            up,
            "bf 00 01 01 1b05007f9df76a5f3c 02 7f 62626f 6162 ff 08 7f 6148 6169 ff ff",
            json!({"type": "message", "id": ID, "conv": "bob", "text": "Hi"}),
            "event",
        ),
        (
            "message-unknown-other-encoding",
            "unknown keys in other encodings: [_ {_ \"b\": 1.5 as a double, \"a\": 24 in 3 bytes}, (_ h'01', h'02')] and 1 in 9 bytes; keys 100 and 99 out of order",
            up,
            "a6 00 01 01 1b05007f9df76a5f3c 02 63626f62 08 624869 1864 1b0000000000000001 \
             1863 9f bf 6162 fb3ff8000000000000 6161 190018 ff 5f 4101 4102 ff ff",
            json!({"type": "message", "id": ID, "conv": "bob", "text": "Hi", "unknown": {"99": "82a2616118186162f93e00420102", "100": "01"}}),
            "event",
        ),
        (
            "unknown-type-indefinite",
            "an unknown ephemeral type whose body is in indefinite lengths: {_ 0: 1501, 2: \"bob\", 7: true, 8: [_ 1, [_ ], {_ }]}",
            up,
            "bf 00 1905dd 02 63626f62 07 f5 08 9f 01 9f ff bf ff ff ff",
            json!({"type": 1501, "conv": "bob", "ephemeral": true, "unknown": {"8": "830180a0"}}),
            "signal",
        ),
    ]
}

/// An invalid vector whose bytes are computed.
type Generated = (
    &'static str,
    &'static str,
    &'static str,
    String,
    &'static str,
    Option<usize>,
);

/// Invalid vectors too long to write out: nesting beyond the limit.
fn too_deep() -> Vec<Generated> {
    let up = "mq/up/alice/phone";
    let message = "a5 0001 011b05007f9df76a5f3c 0263626f62 08624869 1863";
    vec![
        (
            "too-deep",
            "a message whose unknown key 99 nests one level deeper than a packet may (17 levels)",
            up,
            format!("{message} {}00", "81".repeat(MAX_NESTING)),
            "malformed",
            None,
        ),
        (
            "too-deep-unknown-type",
            "an unknown type whose body nests 17 levels in maps ({0: {0: ...}})",
            up,
            format!(
                "a4 00191388 011b05007f9df76a5f3c 0263626f62 08 {}00",
                "a100".repeat(MAX_NESTING)
            ),
            "malformed",
            None,
        ),
        (
            "too-deep-hostile",
            "10,000 nested arrays in an unknown key: refused without exhausting any stack",
            up,
            format!("{message} {}00", "81".repeat(10_000)),
            "malformed",
            None,
        ),
    ]
}

type Invalid = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<usize>,
);

fn invalid() -> Vec<Invalid> {
    let up = "mq/up/alice/phone";
    vec![
        (
            "device-revoke-bad-id",
            "device-revoke naming \"A/B\", not a device id",
            up,
            "a3 001842 011b05007f9df76a5f3c 0863412f42",
            "invalid",
            None,
        ),
        (
            "device-revoke-no-device",
            "device-revoke without the device to revoke",
            up,
            "a2 001842 011b05007f9df76a5f3c",
            "invalid",
            None,
        ),
        (
            "push-register-plain-http",
            "a Web Push endpoint that is not https",
            up,
            "a4 001844 011b05007f9df76a5f3c 0802 09 71 687474703a2f2f31302e302e302e312f68",
            "invalid",
            None,
        ),
        (
            "mute-no-conv",
            "mute without the conversation",
            up,
            "a3 001846 011b05007f9df76a5f3c 0800",
            "invalid",
            None,
        ),
        (
            "not-cbor",
            "0xff alone is a break with nothing to end",
            up,
            "ff",
            "malformed",
            None,
        ),
        (
            "truncated",
            "a map announcing two entries that ends after one",
            up,
            "a2 0001",
            "malformed",
            None,
        ),
        (
            "not-a-map",
            "an array [1, \"Hi\"]",
            up,
            "82 01 624869",
            "malformed",
            None,
        ),
        (
            "text-key",
            "key \"t\" instead of an integer",
            up,
            "a2 0001 6174 624869",
            "malformed",
            None,
        ),
        (
            "negative-key",
            "key -1",
            up,
            "a2 0001 20 624869",
            "malformed",
            None,
        ),
        (
            "duplicate-key",
            "key 8 twice",
            up,
            "a4 0001 011b05007f9df76a5f3c 08624869 08624869",
            "malformed",
            None,
        ),
        (
            "no-type",
            "no key 0",
            up,
            "a2 011b05007f9df76a5f3c 08624869",
            "malformed",
            None,
        ),
        (
            "trailing-bytes",
            "a valid packet followed by one more byte",
            up,
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08624869 00",
            "malformed",
            None,
        ),
        (
            "message-no-id",
            "a message upstream needs an id (deduplication)",
            up,
            "a3 0001 0263626f62 08624869",
            "invalid",
            None,
        ),
        (
            "message-no-conv",
            "a message upstream needs a conversation",
            up,
            "a3 0001 011b05007f9df76a5f3c 08624869",
            "invalid",
            None,
        ),
        (
            "message-no-text",
            "a message needs text",
            up,
            "a3 0001 011b05007f9df76a5f3c 0263626f62",
            "invalid",
            None,
        ),
        (
            "message-text-bytes",
            "text must be a text string, not bytes",
            up,
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08424869",
            "invalid",
            None,
        ),
        (
            "conv-upper-case",
            "user ids are lower case",
            up,
            "a4 0001 011b05007f9df76a5f3c 0263426f62 08624869",
            "invalid",
            None,
        ),
        (
            "id-zero",
            "message id 0 is not valid",
            up,
            "a4 0001 0100 0263626f62 08624869",
            "invalid",
            None,
        ),
        (
            "id-top-bit",
            "message ids have the top bit clear",
            up,
            "a4 0001 011b8000000000000001 0263626f62 08624869",
            "invalid",
            None,
        ),
        (
            "seq-zero",
            "sequence numbers start at 1 (even though the hub drops seq upstream, it must decode)",
            up,
            "a5 0001 011b05007f9df76a5f3c 0263626f62 0300 08624869",
            "invalid",
            None,
        ),
        (
            "chat-state-unknown",
            "chat state 9 does not exist",
            up,
            "a3 0002 0263626f62 0809",
            "invalid",
            None,
        ),
        (
            "read-zero",
            "a read marker up to 0 marks nothing",
            up,
            "a3 0004 0263626f62 0800",
            "invalid",
            None,
        ),
        (
            "delivered-no-conv",
            "a marker needs a conversation",
            up,
            "a2 0003 08182a",
            "invalid",
            None,
        ),
        (
            "contact-group",
            "contact requests are between two users",
            up,
            "a4 0005 011b05007f9df76a5f3c 0265237465616d 0800",
            "invalid",
            None,
        ),
        (
            "history-two-positions",
            "after and before together",
            up,
            "a5 000c 011b05007f9df76a5f3c 0263626f62 0801 0905",
            "invalid",
            None,
        ),
        (
            "sync-before-oldest-first",
            "before is only for newest-first",
            up,
            "a3 000a 011b05007f9df76a5f3c 0905",
            "invalid",
            None,
        ),
        (
            "ack-upstream",
            "only the hub sends acks",
            up,
            "a2 0008 011b05007f9df76a5f3c",
            "wrong-topic",
            None,
        ),
        (
            "presence-upstream",
            "presence goes on the presence topic, not upstream",
            up,
            "a2 0006 0801",
            "wrong-topic",
            None,
        ),
        (
            "not-upstream-topic",
            "the hub only accepts packets on upstream topics",
            "mq/in/bob/d",
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08624869",
            "wrong-topic",
            None,
        ),
        (
            "unknown-no-conv",
            "an unknown type without a conversation cannot be routed",
            up,
            "a2 00 1905dc 01 1b05007f9df76a5f3c",
            "unsupported",
            None,
        ),
        (
            "group-event-upstream",
            "only the hub makes group events",
            up,
            "a3 001821 0265236b337639 0800",
            "wrong-topic",
            None,
        ),
        (
            "group-admin-invite-nobody",
            "an invitation needs a user",
            up,
            "a4 001822 011b05007f9df76a5f3c 0265236b337639 0800",
            "invalid",
            None,
        ),
        (
            "group-join-direct",
            "group-join needs a group conversation",
            up,
            "a4 001823 011b05007f9df76a5f3c 0263626f62 0800",
            "invalid",
            None,
        ),
        (
            "group-create-empty-name",
            "a group needs a name",
            up,
            "a3 001820 011b05007f9df76a5f3c 0860",
            "invalid",
            None,
        ),
        (
            "call-upstream",
            "only the hub makes call records",
            up,
            "a6 001851 0263626f62 0861 78 0901 0a00 0c01",
            "wrong-topic",
            None,
        ),
        (
            "sip-no-message",
            "a sip packet without its SIP message",
            up,
            "a1 001850",
            "invalid",
            None,
        ),
        (
            "sip-gateway-keys",
            "a device may not claim to be a gateway peer (key 9)",
            up,
            "a3 001850 08 6a4f5054494f4e53202a20 09 63706278",
            "invalid",
            None,
        ),
        (
            "conv-sip-default-port",
            "a SIP address with the default port 5060 is not in its canonical form",
            up,
            "a4 0001 011b05007f9df76a5f3c 02 781a7369703a6361726f6c406578616d706c652e6e65743a35303630 08624869",
            "invalid",
            None,
        ),
        (
            "conv-sip-upper-host",
            "the host of a SIP address conversation is lower case",
            up,
            "a4 0001 011b05007f9df76a5f3c 02 75 7369703a6361726f6c404578616d706c652e6e6574 08624869",
            "invalid",
            None,
        ),
        (
            "contact-sip",
            "contact requests are between mqchat users, not SIP addresses",
            up,
            "a4 0005 011b05007f9df76a5f3c 02 75 7369703a6361726f6c406578616d706c652e6e6574 0800",
            "invalid",
            None,
        ),
        (
            "nested-duplicate-key",
            "a message whose unknown key 99 is a map with key 1 twice (once in 2 bytes)",
            up,
            "a5 0001 011b05007f9df76a5f3c 0263626f62 08624869 1863 a2 01f5 1801f4",
            "malformed",
            None,
        ),
        (
            "text-not-utf8",
            "a message whose text is not UTF-8",
            up,
            "a4 0001 011b05007f9df76a5f3c 0263626f62 0862c328",
            "malformed",
            None,
        ),
        (
            "text-chunk-bytes",
            "an indefinite-length text with a byte string chunk",
            up,
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08 7f 4148 6169 ff",
            "malformed",
            None,
        ),
        (
            "too-large",
            "a payload over the hub's maximum (here set to 16 bytes)",
            up,
            "a4 0001 011b05007f9df76a5f3c 0263626f62 08624869",
            "too-large",
            Some(16),
        ),
    ]
}
