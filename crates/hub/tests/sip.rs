//! The hub's SIP proxy (spec section 19) against a real SQLite store: devices and the
//! gateway send `sip` packets, the test plays the other user agents, and checks every SIP
//! message and call record the hub publishes.

mod common;

use std::time::Duration;

use mqchat_hub::{Engine, HubConfig, SipConfig, SipPeerRoute, Upstream};
use mqchat_proto::body::{Body, Sip};
use mqchat_proto::{GatewayName, Packet, PacketKind, UserId};
use mqchat_sip::{Message, Method};
use serde_json::{Value, json};

use common::Hub;

const RING_MS: u64 = 60_000;

/// A hub with SIP for domain `localhost`, a gateway `sip` and its peer `pbx`, and users
/// alice and bob.
type Fixture = Hub;

/// What the hub published: SIP messages by topic, and other packets as JSON.
#[derive(Debug, Default)]
struct Out {
    sip: Vec<(String, Message, Option<String>)>,
    packets: Vec<(String, Value)>,
    pushes: Vec<String>,
}

impl Out {
    /// The SIP messages published on `topic`.
    fn sip_to(&self, topic: &str) -> Vec<&Message> {
        self.sip
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, m, _)| m)
            .collect()
    }

    /// The one SIP message published on `topic`.
    fn one(&self, topic: &str) -> &Message {
        let found = self.sip_to(topic);
        assert_eq!(
            found.len(),
            1,
            "one SIP message on {topic}, got {:#?}",
            self.sip
        );
        found[0]
    }

    fn packets_to(&self, topic: &str) -> Vec<&Value> {
        self.packets
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, v)| v)
            .collect()
    }

    fn records(&self, topic: &str) -> Vec<&Value> {
        self.packets_to(topic)
            .into_iter()
            .filter(|v| v["type"] == "call")
            .collect()
    }
}

fn code(m: &Message) -> u16 {
    m.code().unwrap_or(0)
}

fn method(m: &Message) -> Option<Method> {
    m.method().cloned()
}

impl Hub {
    fn new() -> Self {
        let config = HubConfig {
            sip: Some(SipConfig {
                domain: "localhost".into(),
                gateway: GatewayName::parse("sip").ok(),
                ring_timeout_ms: RING_MS,
                peers: vec![SipPeerRoute {
                    name: "pbx".into(),
                    domains: vec!["example.net".into()],
                    outbound: "udp:192.0.2.20:5060".into(),
                }],
            }),
            ..HubConfig::default()
        };
        Self::with(&["alice", "bob"], config, 1_000_000)
    }

    fn run(&mut self, batch: Vec<Upstream>) -> Out {
        let output = self.process(&batch);
        self.collect(output)
    }

    fn collect(&self, output: mqchat_hub::Output) -> Out {
        let mut out = Out::default();
        for o in &output.publishes {
            let packet = Packet::decode(&o.payload).expect("hub output decodes");
            if packet.kind == PacketKind::SIP {
                let sip = Sip::from_packet(&packet).expect("sip body");
                let message = Message::parse(sip.message.as_bytes()).expect("hub sends valid SIP");
                out.sip.push((o.topic.clone(), message, sip.destination));
            } else {
                out.packets
                    .push((o.topic.clone(), self.registry.to_json(&packet)));
            }
        }
        out.pushes = output
            .pushes
            .iter()
            .map(|p| format!("{}:{} {} call={}", p.user, p.device, p.conversation, p.call))
            .collect();
        out
    }

    /// Runs the hub's clock `advance_ms` later.
    fn tick(&mut self, advance_ms: u64) -> Out {
        let output = self.tick_after(Duration::from_millis(advance_ms));
        self.collect(output)
    }

    fn online(&mut self, user: &str, device: &str) {
        let online = json!({"type": "presence", "availability": "available"});
        let batch = vec![self.upstream(format!("mq/pr/{user}/{device}"), &online)];
        self.run(batch);
    }

    fn packet(&mut self, user: &str, device: &str, packet: Value) -> Out {
        let batch = vec![self.upstream(format!("mq/up/{user}/{device}"), &packet)];
        self.run(batch)
    }

    /// A device sends a SIP message.
    fn sip(&mut self, user: &str, device: &str, message: &str) -> Out {
        let payload = Sip::new(message).to_packet().encode();
        self.run(vec![Upstream {
            topic: format!("mq/up/{user}/{device}"),
            payload,
        }])
    }

    /// alice's phone sends an INVITE for `call_id` to `to`.
    fn alice_calls(&mut self, call_id: &str, to: &str) -> Out {
        self.sip("alice", "phone", &invite(call_id, "alice", "phone", to))
    }

    /// A device sends a message built by the test.
    fn send(&mut self, user: &str, device: &str, message: &Message) -> Out {
        self.sip(
            user,
            device,
            &String::from_utf8(message.to_bytes()).expect("utf-8"),
        )
    }

    /// The gateway hands the hub a message from peer pbx.
    fn gateway(&mut self, message: &str) -> Out {
        self.run(vec![from_pbx(message)])
    }
}

/// What the gateway publishes for a message from peer pbx.
fn from_pbx(message: &str) -> Upstream {
    let mut body = Sip::new(message);
    body.peer = Some("pbx".into());
    body.source = Some("udp:192.0.2.20:5060".into());
    Upstream {
        topic: "mq/gw/sip/in".into(),
        payload: body.to_packet().encode(),
    }
}

fn invite(call_id: &str, from: &str, device: &str, to: &str) -> String {
    let sdp = "v=0\r\no=x 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
    format!(
        "INVITE {to} SIP/2.0\r\nVia: SIP/2.0/MQTT {device}.{from}.invalid;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nTo: <{to}>\r\nFrom: <sip:{from}@localhost>;tag=t{from}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@localhost;gr={device}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// A device's answer to a request it received (its own To tag, its GRUU as Contact).
fn answer(request: &Message, code: u16, device: &str) -> Message {
    let mut response = Message::response(request, code, "");
    if code > 100 {
        response.set_to_tag(&format!("tag-{device}"));
    }
    response.insert_header("Contact", &format!("<sip:bob@localhost;gr={device}>"));
    response
}

/// An in-dialog request from the caller to `target` (ACK or BYE).
fn in_dialog(method: &str, call_id: &str, target: &str, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bK{method}{call_id}\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@localhost>;tag={to_tag}\r\nFrom: <sip:alice@localhost>;tag=talice\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

const ALICE: &str = "mq/in/alice/r/phone";
const PHONE: &str = "mq/in/bob/r/phone";
const LAPTOP: &str = "mq/in/bob/r/laptop";

/// alice calls bob, whose phone and laptop are connected: returns the two forks.
fn ringing(f: &mut Fixture, call_id: &str) -> (Message, Message) {
    f.online("alice", "phone");
    f.online("bob", "phone");
    f.online("bob", "laptop");
    let out = f.alice_calls(call_id, "sip:bob@localhost");
    let phone = out.one(PHONE).clone();
    let laptop = out.one(LAPTOP).clone();
    assert!(out.sip_to(ALICE).is_empty(), "nothing back to alice yet");
    (phone, laptop)
}

#[test]
fn forks_to_every_connected_device_and_the_first_answer_wins() {
    let mut f = Fixture::new();
    let (phone, laptop) = ringing(&mut f, "c1");
    for (fork, gruu) in [
        (&phone, "sip:bob@localhost;gr=phone"),
        (&laptop, "sip:bob@localhost;gr=laptop"),
    ] {
        assert_eq!(fork.uri().map(ToString::to_string).as_deref(), Some(gruu));
        let vias = fork.vias();
        assert_eq!(vias.len(), 2, "the hub's Via on top of alice's");
        assert_eq!(vias[0].host, "hub.localhost");
        assert_eq!(vias[1].host, "phone.alice.invalid");
        assert_eq!(fork.max_forwards(), Some(69));
        assert!(String::from_utf8_lossy(&fork.body).contains("m=audio"));
    }
    assert_ne!(
        phone.top_via().expect("via").branch(),
        laptop.top_via().expect("via").branch()
    );

    // The phone rings: alice hears it, without the hub's Via.
    let out = f.send("bob", "phone", &answer(&phone, 180, "phone"));
    let ringing = out.one(ALICE);
    assert_eq!(code(ringing), 180);
    assert_eq!(ringing.vias().len(), 1);
    // The laptop answers: alice gets the 200, the phone a CANCEL.
    let out = f.send("bob", "laptop", &answer(&laptop, 200, "laptop"));
    assert_eq!(code(out.one(ALICE)), 200);
    let cancel = out.one(PHONE);
    assert_eq!(method(cancel), Some(Method::Cancel));
    assert_eq!(
        cancel.top_via().expect("via").branch(),
        phone.top_via().expect("via").branch()
    );
    assert_eq!(cancel.cseq().map(|c| c.seq), Some(1));
    // The phone's 487 is acknowledged by the hub and goes no further.
    let out = f.send("bob", "phone", &answer(&phone, 487, "phone"));
    assert_eq!(method(out.one(PHONE)), Some(Method::Ack));
    assert!(out.sip_to(ALICE).is_empty());
    // alice's ACK and BYE go to the laptop's GRUU.
    let out = f.sip(
        "alice",
        "phone",
        &in_dialog("ACK", "c1", "sip:bob@localhost;gr=laptop", "tag-laptop", 1),
    );
    assert_eq!(method(out.one(LAPTOP)), Some(Method::Ack));
    assert!(
        f.tick(90_000).sip.is_empty(),
        "an answered call does not ring out"
    );
    let out = f.sip(
        "alice",
        "phone",
        &in_dialog("BYE", "c1", "sip:bob@localhost;gr=laptop", "tag-laptop", 2),
    );
    let bye = out.one(LAPTOP).clone();
    assert_eq!(method(&bye), Some(Method::Bye));
    // The call record, in both users' histories.
    let bob = out.records("mq/in/bob/d");
    let alice = out.records("mq/in/alice/d");
    assert_eq!(bob.len(), 1);
    assert_eq!(alice.len(), 1);
    assert_eq!(bob[0]["outcome"], "answered");
    assert_eq!(bob[0]["conv"], "alice");
    assert_eq!(bob[0].get("from"), None);
    assert_eq!(alice[0]["conv"], "bob");
    assert_eq!(alice[0]["from"], "alice");
    assert_eq!(alice[0].get("id"), None);
    assert_eq!(bob[0]["answered-by"], "laptop");
    assert_eq!(bob[0]["duration"], json!(93_000));
    assert_eq!(bob[0]["media"], json!(["audio"]));
    // The 200 to the BYE returns to alice by its Via.
    let out = f.send("bob", "laptop", &answer(&bye, 200, "laptop"));
    assert_eq!(code(out.one(ALICE)), 200);
    // History has the record; the signalling was never stored.
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "history", "id": "0a03zkqvpmqs1", "conv": "alice"}),
    );
    let result = &out.packets_to(PHONE)[0];
    assert_eq!(result["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(result["events"][0]["type"], "call");
}

/// User ids may hold `..` and end in `-`, which DNS labels may not; the MQTT Via built from
/// them (`{device}.{user}.invalid`) must still route the answers back.
#[test]
fn users_whose_ids_are_not_host_names_can_call() {
    let mut f = Fixture::new();
    f.store
        .add_user(&UserId::parse("a..b-").expect("valid"), Some("pw"), 1)
        .expect("add");
    f.online("a..b-", "tab-");
    f.online("bob", "phone");
    let out = f.sip(
        "a..b-",
        "tab-",
        &invite("odd1", "a..b-", "tab-", "sip:bob@localhost"),
    );
    let fork = out.one(PHONE).clone();
    let out = f.send("bob", "phone", &answer(&fork, 180, "phone"));
    assert_eq!(code(out.one("mq/in/a..b-/r/tab-")), 180);
    let out = f.send("bob", "phone", &answer(&fork, 200, "phone"));
    assert_eq!(code(out.one("mq/in/a..b-/r/tab-")), 200);
}

#[test]
fn busy_everywhere_gives_486_and_a_busy_record() {
    let mut f = Fixture::new();
    let (phone, laptop) = ringing(&mut f, "c2");
    let out = f.send("bob", "phone", &answer(&phone, 480, "phone"));
    assert_eq!(method(out.one(PHONE)), Some(Method::Ack));
    assert!(out.sip_to(ALICE).is_empty(), "one branch is still pending");
    let out = f.send("bob", "laptop", &answer(&laptop, 486, "laptop"));
    assert_eq!(code(out.one(ALICE)), 486, "486 is preferred to 480");
    assert_eq!(out.records("mq/in/bob/d")[0]["outcome"], "busy");
}

#[test]
fn decline_cancels_the_other_devices() {
    let mut f = Fixture::new();
    let (phone, _laptop) = ringing(&mut f, "c3");
    let out = f.send("bob", "phone", &answer(&phone, 603, "phone"));
    assert_eq!(code(out.one(ALICE)), 603);
    assert_eq!(method(out.one(LAPTOP)), Some(Method::Cancel));
    assert_eq!(out.records("mq/in/alice/d")[0]["outcome"], "declined");
}

#[test]
fn caller_cancel_gets_487_and_a_missed_record() {
    let mut f = Fixture::new();
    let (phone, _laptop) = ringing(&mut f, "c4");
    f.send("bob", "phone", &answer(&phone, 180, "phone"));
    let cancel = "CANCEL sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bKc4\r\n\
                  Max-Forwards: 70\r\nTo: <sip:bob@localhost>\r\nFrom: <sip:alice@localhost>;tag=talice\r\n\
                  Call-ID: c4\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    let out = f.sip("alice", "phone", cancel);
    let codes: Vec<(u16, Option<Method>)> = out
        .sip_to(ALICE)
        .iter()
        .map(|m| (code(m), m.cseq().map(|c| c.method)))
        .collect();
    assert_eq!(
        codes,
        vec![(200, Some(Method::Cancel)), (487, Some(Method::Invite))]
    );
    assert_eq!(method(out.one(PHONE)), Some(Method::Cancel));
    assert_eq!(method(out.one(LAPTOP)), Some(Method::Cancel));
    let record = &out.records("mq/in/bob/d")[0];
    assert_eq!(record["outcome"], "missed");
    // A missed call counts as unread for bob, like a message.
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "sync", "id": "0a03zkqvpmqs1"}),
    );
    assert_eq!(out.packets_to(PHONE)[0]["conversations"][0]["unread"], 1);
    // A CANCEL for no call.
    let out = f.sip("alice", "phone", &cancel.replace("c4", "c404"));
    assert_eq!(code(out.one(ALICE)), 481);
}

#[test]
fn cancel_before_ringing_is_a_cancelled_record() {
    let mut f = Fixture::new();
    ringing(&mut f, "c5");
    let cancel = "CANCEL sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bKc5\r\n\
                  Max-Forwards: 70\r\nTo: <sip:bob@localhost>\r\nFrom: <sip:alice@localhost>;tag=talice\r\n\
                  Call-ID: c5\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    let out = f.sip("alice", "phone", cancel);
    assert_eq!(out.records("mq/in/alice/d")[0]["outcome"], "cancelled");
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "sync", "id": "0a03zkqvpmqs1"}),
    );
    assert_eq!(
        out.packets_to(PHONE)[0]["conversations"][0].get("unread"),
        None,
        "not a missed call"
    );
}

#[test]
fn unknown_user_404_and_nobody_reachable_480() {
    let mut f = Fixture::new();
    f.online("alice", "phone");
    let out = f.alice_calls("c6", "sip:nobody@localhost");
    assert_eq!(code(out.one(ALICE)), 404);
    assert!(out.packets.is_empty(), "no record for no one");
    let out = f.alice_calls("c7", "sip:bob@localhost");
    let response = out.one(ALICE);
    assert_eq!(code(response), 480);
    assert!(
        response
            .to()
            .and_then(|t| t.tag().map(str::to_owned))
            .is_some()
    );
    assert_eq!(out.records("mq/in/bob/d")[0]["outcome"], "missed");
    let out = f.alice_calls("c8", "sip:carol@nowhere.example");
    assert_eq!(code(out.one(ALICE)), 404, "no route to that domain");
}

#[test]
fn ringing_times_out_into_a_missed_call() {
    let mut f = Fixture::new();
    ringing(&mut f, "c9");
    assert!(f.tick(RING_MS / 2).sip.is_empty());
    let out = f.tick(RING_MS);
    assert_eq!(code(out.one(ALICE)), 480);
    assert_eq!(method(out.one(PHONE)), Some(Method::Cancel));
    assert_eq!(method(out.one(LAPTOP)), Some(Method::Cancel));
    assert_eq!(out.records("mq/in/bob/d")[0]["outcome"], "missed");
    assert_eq!(out.records("mq/in/alice/d")[0]["outcome"], "missed");
}

/// The ringing timeout runs on the monotonic clock: the wall clock stepping back ten minutes
/// does not keep a call ringing.
#[test]
fn a_wall_clock_stepping_back_does_not_stop_a_call_ringing_out() {
    let mut f = Fixture::new();
    ringing(&mut f, "c10");
    f.step_wall_back(Duration::from_secs(600));
    assert!(f.tick(RING_MS / 2).sip.is_empty());
    let out = f.tick(RING_MS);
    assert_eq!(code(out.one(ALICE)), 480);
    assert_eq!(out.records("mq/in/bob/d")[0]["outcome"], "missed");
}

#[test]
fn sleeping_devices_are_woken_and_forked_when_they_connect() {
    let mut f = Fixture::new();
    f.online("alice", "phone");
    f.packet(
        "bob",
        "phone",
        json!({"type": "push-register", "id": "0a03zkqvpmqs1", "provider": "fcm", "address": "tok"}),
    );
    let offline = f
        .registry
        .from_json(&json!({"type": "presence", "availability": "offline"}))
        .expect("valid")
        .encode();
    f.run(vec![Upstream {
        topic: "mq/pr/bob/phone".into(),
        payload: offline,
    }]);
    let out = f.alice_calls("c10", "sip:bob@localhost");
    assert!(
        out.sip.is_empty(),
        "no branch yet, no 480: the phone is being woken"
    );
    assert_eq!(out.pushes, vec!["bob:phone alice call=true".to_owned()]);
    f.online("bob", "phone");
    let out = f.tick(1000);
    let fork = out.one(PHONE);
    assert_eq!(method(fork), Some(Method::Invite));
    let out = f.send("bob", "phone", &answer(fork, 200, "phone"));
    assert_eq!(code(out.one(ALICE)), 200);
}

#[test]
fn message_from_a_sip_peer_becomes_a_chat_message_once() {
    let mut f = Fixture::new();
    let message = "MESSAGE sip:bob@localhost SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK.m1;received=192.0.2.20;rport=5060\r\n\
        Max-Forwards: 70\r\nTo: <sip:bob@localhost>\r\nFrom: \"Carol\" <sip:carol@Example.NET>;tag=49583\r\n\
        Call-ID: m1@192.0.2.20\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nHello Bob";
    let out = f.gateway(message);
    assert_eq!(
        out.packets_to("mq/in/bob/d"),
        vec![
            &json!({"type": "message", "conv": "sip:carol@example.net", "seq": 1, "ts": f.now.wall.unix_ms(), "text": "Hello Bob"})
        ]
    );
    let ok = out.one("mq/gw/sip/out");
    assert_eq!(code(ok), 200);
    assert_eq!(ok.top_via().expect("via").host, "192.0.2.20");
    // A retransmission is answered again and stored once.
    let out = f.gateway(message);
    assert_eq!(code(out.one("mq/gw/sip/out")), 200);
    assert!(out.packets.is_empty());
    // Other content types, unknown users.
    let out = f.gateway(
        &message
            .replace("text/plain", "application/json")
            .replace("m1@", "m2@"),
    );
    assert_eq!(code(out.one("mq/gw/sip/out")), 415);
    let out = f.gateway(&message.replace("sip:bob@localhost", "sip:zoe@localhost"));
    assert_eq!(code(out.one("mq/gw/sip/out")), 404);
}

#[test]
fn markers_in_a_sip_conversation_reach_the_readers_devices_only() {
    let mut f = Fixture::new();
    let conv = "sip:carol@example.net";
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "read", "conv": conv, "up-to": 1}),
    );
    assert_eq!(out.packets_to(PHONE)[0]["code"], 8, "no conversation yet");
    assert_eq!(
        out.packets_to(PHONE)[0]["detail"],
        "no conversation with sip:carol@example.net"
    );
    f.packet(
        "bob",
        "phone",
        json!({"type": "message", "id": "0a03zkqvpmqs1", "conv": conv, "text": "Hi Carol"}),
    );
    let out = f.packet(
        "bob",
        "laptop",
        json!({"type": "read", "conv": conv, "up-to": 1}),
    );
    assert!(out.sip.is_empty());
    assert_eq!(out.packets.len(), 1, "{:?}", out.packets);
    let read = out.packets_to("mq/in/bob/d")[0];
    assert_eq!(
        (
            &read["type"],
            &read["conv"],
            &read["up-to"],
            &read["from"],
            &read["device"]
        ),
        (
            &json!("read"),
            &json!(conv),
            &json!(1),
            &json!("bob"),
            &json!("laptop")
        )
    );
    let out = f.packet(
        "bob",
        "laptop",
        json!({"type": "delivered", "conv": conv, "up-to": 1}),
    );
    assert!(out.packets.is_empty(), "nothing moves");
}

#[test]
fn message_to_a_sip_address_goes_out_and_its_answer_comes_back() {
    let mut f = Fixture::new();
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "message", "id": "0a03zkqvpmqs1", "conv": "sip:carol@example.net", "text": "Hi Carol"}),
    );
    assert_eq!(
        out.packets_to("mq/in/bob/d")[0]["seq"],
        1,
        "stored and confirmed"
    );
    let (topic, request, destination) = &out.sip[0];
    assert_eq!(topic, "mq/gw/sip/out");
    assert_eq!(destination.as_deref(), Some("udp:192.0.2.20:5060"));
    assert_eq!(method(request), Some(Method::Message));
    assert_eq!(
        request.uri().map(ToString::to_string).as_deref(),
        Some("sip:carol@example.net")
    );
    assert_eq!(request.body, b"Hi Carol");
    assert_eq!(
        request.from().map(|f| f.uri.to_string()).as_deref(),
        Some("sip:bob@localhost")
    );
    // The peer's 200 moves the outside party's delivered marker.
    let ok = Message::response(request, 200, "");
    let out = f.gateway(&String::from_utf8(ok.to_bytes()).expect("utf-8"));
    let delivered = out.packets_to("mq/in/bob/d");
    assert_eq!(delivered[0]["type"], "delivered");
    assert_eq!(delivered[0]["conv"], "sip:carol@example.net");
    assert_eq!(delivered[0]["up-to"], 1);
    let sync = f.packet(
        "bob",
        "phone",
        json!({"type": "sync", "id": "0a03zkqvpmqs2"}),
    );
    assert_eq!(
        sync.packets_to(PHONE)[0]["conversations"][0]["peer-delivered"],
        1
    );
    // A refusal comes back to the sending device as not-delivered.
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "message", "id": "0a03zkqvpmqs3", "conv": "sip:carol@example.net", "text": "?"}),
    );
    let request = out.sip[0].1.clone();
    let out = f.gateway(
        &String::from_utf8(Message::response(&request, 404, "").to_bytes()).expect("utf-8"),
    );
    let error = out.packets_to(PHONE)[0];
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], 80);
    assert_eq!(error["id"], "0a03zkqvpmqs3");
    // No answer at all: not-delivered after 32 s.
    f.packet(
        "bob",
        "phone",
        json!({"type": "message", "id": "0a03zkqvpmqs4", "conv": "sip:carol@example.net", "text": "??"}),
    );
    let out = f.tick(33_000);
    assert_eq!(out.packets_to(PHONE)[0]["id"], "0a03zkqvpmqs4");
    // Without a route, nothing is stored.
    let out = f.packet(
        "bob",
        "phone",
        json!({"type": "message", "id": "0a03zkqvpmqs5", "conv": "sip:dan@elsewhere.org", "text": "x"}),
    );
    assert_eq!(out.packets_to(PHONE)[0]["code"], 5);
}

#[test]
fn a_call_from_outside_rings_bob_and_is_recorded_in_his_sip_conversation() {
    let mut f = Fixture::new();
    f.online("bob", "phone");
    let invite = "INVITE sip:bob@localhost SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK.i1;received=192.0.2.20;rport=5060\r\n\
        Max-Forwards: 70\r\nTo: <sip:bob@localhost>\r\nFrom: <sip:carol@example.net>;tag=c1\r\n\
        Call-ID: out1@192.0.2.20\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@192.0.2.20:5060>\r\nContent-Length: 0\r\n\r\n";
    let out = f.gateway(invite);
    let fork = out.one(PHONE).clone();
    let out = f.send("bob", "phone", &answer(&fork, 200, "phone"));
    let ok = out.one("mq/gw/sip/out");
    assert_eq!(code(ok), 200);
    assert_eq!(ok.top_via().expect("via").host, "192.0.2.20");
    // bob hangs up: the BYE goes to carol's Contact through the gateway, to where she is.
    let bye = "BYE sip:carol@192.0.2.20:5060 SIP/2.0\r\nVia: SIP/2.0/MQTT phone.bob.invalid;branch=z9hG4bKbye1\r\n\
        Max-Forwards: 70\r\nTo: <sip:carol@example.net>;tag=c1\r\nFrom: <sip:bob@localhost>;tag=tag-phone\r\n\
        Call-ID: out1@192.0.2.20\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    let out = f.sip("bob", "phone", bye);
    let (_, sent, destination) = out
        .sip
        .iter()
        .find(|(t, _, _)| t == "mq/gw/sip/out")
        .expect("BYE out");
    assert_eq!(method(sent), Some(Method::Bye));
    assert_eq!(destination.as_deref(), Some("udp:192.0.2.20:5060"));
    let record = &out.records("mq/in/bob/d")[0];
    assert_eq!(record["conv"], "sip:carol@example.net");
    assert_eq!(record["outcome"], "answered");
}

#[test]
fn bad_sip_is_refused_never_crashes() {
    let mut f = Fixture::new();
    f.online("alice", "phone");
    f.online("bob", "phone");
    // Not SIP at all.
    let out = f.sip("alice", "phone", "hello there");
    assert_eq!(out.packets_to(ALICE)[0]["code"], 2);
    // A Via that is not the sender's.
    let spoofed = invite("c11", "alice", "phone", "sip:bob@localhost")
        .replace("phone.alice.invalid", "laptop.bob.invalid");
    let out = f.sip("alice", "phone", &spoofed);
    assert_eq!(code(out.one(ALICE)), 400);
    assert!(out.sip_to(PHONE).is_empty());
    // A From that is not the sender.
    let forged = invite("c12", "alice", "phone", "sip:bob@localhost")
        .replace("From: <sip:alice@", "From: <sip:bob@");
    assert_eq!(code(f.sip("alice", "phone", &forged).one(ALICE)), 403);
    // No hops left; a loop.
    let tired = invite("c13", "alice", "phone", "sip:bob@localhost")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(code(f.sip("alice", "phone", &tired).one(ALICE)), 483);
    let looped = invite("c14", "alice", "phone", "sip:bob@localhost").replace(
        "Max-Forwards: 70",
        "Via: SIP/2.0/MQTT hub.localhost;branch=z9hG4bKold\r\nMax-Forwards: 70",
    );
    assert_eq!(code(f.sip("alice", "phone", &looped).one(ALICE)), 482);
    // The same Call-ID again from elsewhere is a merged request.
    f.alice_calls("c15", "sip:bob@localhost");
    let again = invite("c15", "alice", "phone", "sip:bob@localhost")
        .replace("branch=z9hG4bKc15", "branch=z9hG4bKother");
    assert_eq!(code(f.sip("alice", "phone", &again).one(ALICE)), 482);
    // A response without the hub's Via is dropped.
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bKx\r\nTo: <sip:a@localhost>;tag=1\r\n\
                 From: <sip:b@localhost>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(f.sip("bob", "phone", stray).sip.is_empty());
    // Devices may not send call records, nor gateway fields.
    let out = f.packet(
        "alice",
        "phone",
        json!({"type": "call", "conv": "bob", "call-id": "x", "outcome": "answered", "started": 1, "ended": 2}),
    );
    assert_eq!(out.packets_to(ALICE)[0]["code"], 4);
    let out = f.packet(
        "alice",
        "phone",
        json!({"type": "sip", "message": "OPTIONS x", "peer": "pbx"}),
    );
    assert_eq!(out.packets_to(ALICE)[0]["code"], 2);
    // The gateway's topic with garbage: logged and dropped.
    let out = f.run(vec![Upstream {
        topic: "mq/gw/sip/in".into(),
        payload: b"garbage".to_vec(),
    }]);
    assert!(out.sip.is_empty() && out.packets.is_empty());
    let out = f.gateway("not sip");
    assert!(out.sip.is_empty() && out.packets.is_empty());
    // OPTIONS to a user: 200 while a device is connected.
    let options = "OPTIONS sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bKo1\r\n\
        Max-Forwards: 70\r\nTo: <sip:bob@localhost>\r\nFrom: <sip:alice@localhost>;tag=1\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(code(f.sip("alice", "phone", options).one(ALICE)), 200);
}

#[test]
fn calls_interrupted_by_a_restart_are_still_recorded() {
    let mut f = Fixture::new();
    ringing(&mut f, "c16");
    // A new engine on the same store: the call is in the store, not in memory.
    f.engine = Engine::new(HubConfig {
        sip: Some(SipConfig::default()),
        ..HubConfig::default()
    });
    let out = f.tick(1000);
    assert_eq!(out.records("mq/in/bob/d")[0]["outcome"], "missed");
    assert!(f.tick(1000).packets.is_empty(), "recorded once");
}

#[test]
fn mangled_sip_never_panics_the_proxy() {
    let mut f = Fixture::new();
    f.online("alice", "phone");
    f.online("bob", "phone");
    let base = invite("c20", "alice", "phone", "sip:bob@localhost");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300u64 {
        let mut bytes = base.clone().into_bytes();
        match round % 3 {
            0 => bytes.truncate((next() as usize) % bytes.len()),
            1 => {
                for _ in 0..4 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = b" :;<>@\r\n=,"[(next() as usize) % 10];
                }
            }
            _ => {
                let at = (next() as usize) % bytes.len();
                bytes.splice(
                    at..at,
                    b"\r\nVia: SIP/2.0/MQTT hub.localhost;branch=z9hG4bKx"
                        .iter()
                        .copied(),
                );
            }
        }
        let text = String::from_utf8_lossy(&bytes).replace("c20", &format!("m{round}"));
        f.sip("alice", "phone", &text);
        f.gateway(&text);
        f.sip(
            "bob",
            "phone",
            &text.replacen("INVITE sip:bob@localhost SIP/2.0", "SIP/2.0 180 Ringing", 1),
        );
    }
    // Still working.
    let out = f.alice_calls("c21", "sip:bob@localhost");
    assert_eq!(method(out.one(PHONE)), Some(Method::Invite));
}

#[test]
fn a_call_to_an_outside_address_goes_through_the_gateway() {
    let mut f = Fixture::new();
    f.online("alice", "phone");
    let out = f.alice_calls("c30", "sip:carol@example.net");
    let (topic, sent, destination) = &out.sip[0];
    assert_eq!(topic, "mq/gw/sip/out");
    assert_eq!(destination.as_deref(), Some("udp:192.0.2.20:5060"));
    assert_eq!(
        sent.uri().map(ToString::to_string).as_deref(),
        Some("sip:carol@example.net")
    );
    let sent = sent.clone();
    // carol is busy: alice gets the 486; the gateway acknowledges its peer itself.
    let busy = Message::response(&sent, 486, "");
    let out = f.gateway(&String::from_utf8(busy.to_bytes()).expect("utf-8"));
    assert_eq!(code(out.one(ALICE)), 486);
    assert!(
        out.sip_to("mq/gw/sip/out").is_empty(),
        "no ACK from the hub"
    );
    let record = &out.records("mq/in/alice/d")[0];
    assert_eq!(record["conv"], "sip:carol@example.net");
    assert_eq!(record["outcome"], "busy");
    // alice cancels another call: the CANCEL goes to the same destination.
    f.alice_calls("c31", "sip:carol@example.net");
    let cancel = "CANCEL sip:carol@example.net SIP/2.0\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bKc31\r\n\
                  Max-Forwards: 70\r\nTo: <sip:carol@example.net>\r\nFrom: <sip:alice@localhost>;tag=talice\r\n\
                  Call-ID: c31\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    let out = f.sip("alice", "phone", cancel);
    let (_, sent, destination) = &out
        .sip
        .iter()
        .find(|(t, _, _)| t == "mq/gw/sip/out")
        .expect("CANCEL");
    assert_eq!(method(sent), Some(Method::Cancel));
    assert_eq!(destination.as_deref(), Some("udp:192.0.2.20:5060"));
    assert_eq!(out.records("mq/in/alice/d")[0]["outcome"], "cancelled");
}

#[test]
fn a_hub_without_sip_refuses_calls_and_sip_conversations() {
    let mut f = Fixture::new();
    f.engine = Engine::new(HubConfig::default());
    let out = f.alice_calls("c40", "sip:bob@localhost");
    assert_eq!(out.packets_to(ALICE)[0]["code"], 5);
    let out = f.packet(
        "alice",
        "phone",
        json!({"type": "message", "id": "0a03zkqvpmqs1", "conv": "sip:carol@example.net", "text": "x"}),
    );
    assert_eq!(out.packets_to(ALICE)[0]["code"], 5);
    let out = f.gateway("OPTIONS sip:bob@localhost SIP/2.0\r\n\r\n");
    assert!(out.sip.is_empty() && out.packets.is_empty(), "dropped");
    assert!(f.tick(1000).packets.is_empty());
}

#[test]
fn an_answered_call_interrupted_by_a_restart_is_recorded_as_answered() {
    let mut f = Fixture::new();
    let (_phone, laptop) = ringing(&mut f, "c17");
    f.send("bob", "laptop", &answer(&laptop, 200, "laptop"));
    f.engine = Engine::new(HubConfig {
        sip: Some(SipConfig::default()),
        ..HubConfig::default()
    });
    let out = f.tick(5000);
    let record = &out.records("mq/in/alice/d")[0];
    assert_eq!(record["outcome"], "answered");
    assert_eq!(record["duration"], json!(5000));
    assert_eq!(record["answered-by"], "laptop");
}
