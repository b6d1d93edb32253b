//! The session against a simulated hub: packets in as the hub would send them, outputs
//! checked as short text lines. No sockets, no sleeps: time is virtual, from `Moment::ZERO`
//! (and `T0_MS` on the wall clock).

use std::time::Duration;

use mqchat_proto::body::{Availability, Body, History, Message, Presence, Profile, State};
use mqchat_proto::{ConversationRef, DeviceIdentity, MessageId, Packet, Registry, TopicRoot};

use super::*;

mod call;
mod catch_up;
mod group;

const T0_MS: u64 = 1_790_000_000_000;

/// A session and a virtual clock, with ids shown as `#1`, `#2`, ... in order of appearance.
struct Device {
    session: Session,
    registry: Registry,
    elapsed_ms: u64,
    ids: Vec<MessageId>,
}

impl Device {
    fn new(catch_up: bool) -> Self {
        Self::with(|settings| settings.catch_up = catch_up)
    }

    fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let registry = Registry::with_core();
        let mut settings = Settings {
            identity: DeviceIdentity::parse_client_id("alice:phone").expect("valid"),
            root: TopicRoot::default(),
            registry: registry.clone(),
            auto_delivered: true,
            delivered_delay: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
            catch_up: false,
            presence: Presence::new(Availability::Available),
            ids_after: None,
            resume: None,
            sip_domain: "example.org".into(),
            seed: 1,
            id_seed: 2,
        };
        adjust(&mut settings);
        Self {
            session: Session::new(settings),
            registry,
            elapsed_ms: 0,
            ids: Vec::new(),
        }
    }

    /// A device that connected (new session) and whose subscriptions were acknowledged.
    fn connected() -> Self {
        let mut d = Self::new(false);
        d.session.handle_connected(false, d.now());
        d.session.handle_subscribe_sent(1);
        d.session.handle_suback(1, &[true, true, true]);
        d.drain();
        d
    }

    fn now(&self) -> Now {
        Now {
            at: Moment::from_millis(self.elapsed_ms),
            wall: Timestamp::from_unix_ms(T0_MS + self.elapsed_ms),
        }
    }

    fn advance(&mut self, ms: u64) {
        self.elapsed_ms += ms;
        let now = self.now();
        self.session.handle_timeout(now);
    }

    fn name(&mut self, id: MessageId) -> String {
        let index = match self.ids.iter().position(|&i| i == id) {
            Some(i) => i,
            None => {
                self.ids.push(id);
                self.ids.len() - 1
            }
        };
        format!("#{}", index + 1)
    }

    /// A packet rendered as compact JSON, its id shown by name.
    fn json(&mut self, payload: &[u8]) -> String {
        if payload.is_empty() {
            return "(empty)".into();
        }
        let mut packet = Packet::decode(payload).expect("the session encodes valid packets");
        let id = packet.id.take().map(|id| self.name(id));
        let mut json = self.registry.to_json(&packet);
        if let (Some(id), Some(obj)) = (id, json.as_object_mut()) {
            obj.insert("id".into(), id.into());
        }
        json.to_string()
    }

    /// Every output since the last call, one line each.
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(output) = self.session.poll() {
            let line = match output {
                Output::Publish(t) => {
                    let q = if t.qos == Qos::AtLeastOnce { 1 } else { 0 };
                    let r = if t.retain { " retain" } else { "" };
                    format!("pub {} q{q}{r} {}", t.topic, self.json(&t.payload))
                }
                Output::Subscribe(filters) => {
                    let f: Vec<String> = filters
                        .iter()
                        .map(|(f, q)| format!("{f}:{}", if *q == Qos::AtLeastOnce { 1 } else { 0 }))
                        .collect();
                    format!("sub {}", f.join(" "))
                }
                Output::Unsubscribe(filters) => format!("unsub {}", filters.join(" ")),
                Output::Event(event) => format!("event {}", show_event(&event)),
                Output::Answer { id, answer } => {
                    let name = self.name(id);
                    let answer = match answer {
                        Ok(Answer::Sent(s)) => {
                            format!("sent {} seq={} dup={}", s.conv, s.seq, s.duplicate)
                        }
                        Ok(Answer::Version(v)) => format!("version {v}"),
                        Ok(Answer::Done) => "done".to_owned(),
                        Ok(Answer::Devices(d)) => format!("devices n={}", d.len()),
                        Ok(Answer::Sync(r)) => format!("sync token={}", r.token),
                        Ok(Answer::History(r)) => format!("history n={}", r.events.len()),
                        Ok(Answer::Group(g)) => format!(
                            "group {} {:?} members={} seq={}",
                            g.id,
                            g.name,
                            g.members.len(),
                            g.last_seq
                        ),
                        Ok(Answer::Receipt(r)) => format!(
                            "receipt {}#{} read {}/{} delivered {}/{}",
                            r.conv,
                            r.seq,
                            r.n_read(),
                            r.n_total(),
                            r.n_delivered(),
                            r.n_total()
                        ),
                        Err(e) => format!("error: {e}"),
                    };
                    format!("answer {name} {answer}")
                }
            };
            out.push(line);
        }
        out
    }

    /// The hub publishes `json` (a packet's JSON rendering, ids by name) on `topic`.
    fn hub(&mut self, topic: &str, json: &str) {
        let mut json = json.to_owned();
        for (i, id) in self.ids.iter().enumerate().rev() {
            json = json.replace(&format!("\"#{}\"", i + 1), &format!("\"{id}\""));
        }
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let packet = self.registry.from_json(&value).expect("valid packet JSON");
        self.raw(topic, &packet.encode());
    }

    fn raw(&mut self, topic: &str, payload: &[u8]) {
        let now = self.now();
        self.session.handle_publish(topic, payload, now);
    }
}

fn show_event(event: &Event) -> String {
    match event {
        Event::Connected { session_present } => format!("connected present={session_present}"),
        Event::Disconnected { reason } => format!("disconnected {reason}"),
        Event::Refused { reason } => format!("refused {reason}"),
        Event::Message {
            conv,
            seq,
            from,
            own,
            message,
            ..
        } => format!(
            "message {conv}#{seq} from={from} own={own} {:?}",
            message.text
        ),
        Event::ChatState { conv, from, state } => format!("chat-state {conv} {from} {state:?}"),
        Event::Delivered { conv, by, up_to } => format!("delivered {conv} by={by} {up_to}"),
        Event::Read {
            conv,
            by,
            up_to,
            own,
        } => format!("read {conv} by={by} {up_to} own={own}"),
        Event::Contact {
            conv,
            seq,
            from,
            contact,
            ..
        } => format!("contact {conv}#{seq} from={from} {:?}", contact.action),
        Event::Presence {
            user,
            device,
            presence,
        } => format!(
            "presence {user}/{device} {:?}",
            presence.as_ref().map(|p| p.availability)
        ),
        Event::Profile {
            user,
            version,
            profile,
        } => format!("profile {user} v{version} {:?}", profile.name),
        Event::Error { id, code, .. } => format!("error {id:?} {code}"),
        Event::Other { packet } => format!("other type {}", packet.kind.0),
        Event::Invitation {
            group,
            seq,
            by,
            name,
            ..
        } => format!("invitation #{group}#{seq} by={by} {name:?}"),
        Event::Group {
            group,
            seq,
            by,
            own,
            change,
            ..
        } => format!(
            "group #{group}#{seq} by={by} own={own} {:?} {}",
            change.action,
            change.user.as_ref().map_or("-", |u| u.as_str())
        ),
        Event::IncomingCall { call, from, .. } => format!("incoming-call {call} from={from}"),
        Event::CallRinging { call } => format!("call-ringing {call}"),
        Event::CallAnswered { call, .. } => format!("call-answered {call}"),
        Event::CallEnded { call, reason } => format!("call-ended {call} {reason}"),
        Event::CallRecord {
            conv,
            seq,
            own,
            record,
            ..
        } => format!(
            "call-record {conv}#{seq} own={own} {} {:?}",
            record.outcome.name(),
            record.duration
        ),
    }
}

fn bob() -> ConversationRef {
    ConversationRef::parse("bob").expect("valid")
}

fn message(text: &str) -> Packet {
    let mut packet = Message::text(text).to_packet();
    packet.conv = Some(bob());
    packet
}

const DURABLE: &str = "mq/in/alice/d";
const REPLIES: &str = "mq/in/alice/r/phone";

#[test]
fn first_connection() {
    let mut d = Device::new(true);
    assert_eq!(d.session.readiness(), &Readiness::Waiting);
    let now = d.now();
    d.session.handle_connected(false, now);
    assert_eq!(
        d.drain(),
        [
            "event connected present=false",
            "sub mq/in/alice/d:1 mq/in/alice/e:0 mq/in/alice/r/phone:1",
            r#"pub mq/pr/alice/phone q1 retain {"type":"presence","ts":1790000000000,"availability":"available"}"#,
            r##"pub mq/up/alice/phone q1 {"type":"sync","limit":1,"newest-first":true,"id":"#1"}"##,
        ]
    );
    assert_eq!(d.session.readiness(), &Readiness::Waiting);
    d.session.handle_subscribe_sent(7);
    d.session.handle_suback(7, &[true, true, true]);
    assert_eq!(d.session.readiness(), &Readiness::Ready);
    assert_eq!(
        d.json(&d.session.will().payload.clone()),
        r#"{"type":"presence","availability":"offline"}"#
    );
}

#[test]
fn refused_subscription_fails_the_first_connection() {
    let mut d = Device::new(false);
    let now = d.now();
    d.session.handle_connected(false, now);
    d.session.handle_subscribe_sent(1);
    d.session.handle_suback(1, &[false, true, true]);
    assert_eq!(
        d.session.readiness(),
        &Readiness::Refused("the broker refused the subscription to mq/in/alice/d".into())
    );
}

#[test]
fn send_is_confirmed_by_the_own_copy() {
    let mut d = Device::connected();
    let now = d.now();
    let id = d.session.send(message("Hi"), now).expect("valid");
    assert_eq!(
        d.drain(),
        [r##"pub mq/up/alice/phone q1 {"type":"message","conv":"bob","text":"Hi","id":"#1"}"##]
    );
    assert_eq!(d.name(id), "#1");
    d.hub(
        DURABLE,
        r##"{"type":"message","id":"#1","conv":"bob","seq":1,"ts":5,"from":"alice","device":"phone","text":"Hi"}"##,
    );
    assert_eq!(
        d.drain(),
        [
            "answer #1 sent bob seq=1 dup=false",
            r#"event message bob#1 from=alice own=true "Hi""#,
        ]
    );
    // A copy from another of alice's devices is an event, not a confirmation.
    d.hub(
        DURABLE,
        r#"{"type":"message","id":"0000000000009","conv":"bob","seq":2,"ts":6,"from":"alice","device":"laptop","text":"Yo"}"#,
    );
    assert_eq!(
        d.drain(),
        [r#"event message bob#2 from=alice own=true "Yo""#]
    );
    // Own events owe no delivered marker.
    d.advance(1000);
    assert!(d.drain().is_empty());
}

#[test]
fn replies_resolve_or_reject() {
    let mut d = Device::connected();
    let now = d.now();
    d.session.send(message("a"), now).expect("valid");
    d.session.send(message("b"), now).expect("valid");
    d.session
        .set_profile(
            &Profile {
                name: Some("Alice".into()),
                ..Profile::default()
            },
            now,
        )
        .expect("valid");
    d.drain();
    d.hub(
        REPLIES,
        r##"{"type":"ack","id":"#1","conv":"bob","seq":4,"ts":5,"duplicate":true}"##,
    );
    d.hub(
        REPLIES,
        r##"{"type":"error","id":"#2","conv":"bob","code":7,"detail":"not a contact"}"##,
    );
    d.hub(REPLIES, r##"{"type":"ack","id":"#3","seq":3,"ts":5}"##);
    // Late and unmatched replies: an error is reported, an ack ignored.
    d.hub(REPLIES, r##"{"type":"ack","id":"#1","seq":4,"ts":5}"##);
    d.hub(REPLIES, r#"{"type":"error","conv":"bob","code":2}"#);
    assert_eq!(
        d.drain(),
        [
            "answer #1 sent bob seq=4 dup=true",
            "answer #2 error: the hub refused the packet: forbidden (not a contact)",
            "answer #3 version 3",
            "event error None invalid",
        ]
    );
}

#[test]
fn a_rate_limited_message_waits_and_goes_again_with_its_id_until_stored() {
    let mut d = Device::connected();
    let now = d.now();
    d.session.send(message("Hi"), now).expect("valid");
    let sent =
        r##"pub mq/up/alice/phone q1 {"type":"message","conv":"bob","text":"Hi","id":"#1"}"##;
    assert_eq!(d.drain(), [sent]);
    let limited = r##"{"type":"error","id":"#1","conv":"bob","about":1,"code":10}"##;
    d.hub(REPLIES, limited);
    assert!(
        d.drain().is_empty(),
        "the application is not told: it keeps waiting"
    );
    d.advance(999);
    assert!(d.drain().is_empty(), "held for a second");
    d.advance(1);
    assert_eq!(d.drain(), [sent]);
    // A second refusal in a row holds it twice as long.
    d.hub(REPLIES, limited);
    d.advance(1_999);
    assert!(d.drain().is_empty());
    d.advance(1);
    assert_eq!(d.drain(), [sent]);
    d.hub(
        DURABLE,
        r##"{"type":"message","id":"#1","conv":"bob","seq":1,"ts":5,"from":"alice","device":"phone","text":"Hi"}"##,
    );
    assert_eq!(
        d.drain(),
        [
            "answer #1 sent bob seq=1 dup=false",
            r#"event message bob#1 from=alice own=true "Hi""#,
        ]
    );
    d.advance(120_000);
    assert!(d.drain().is_empty(), "nothing more once stored");
}

#[test]
fn offline_sends_go_out_on_connect_with_their_ids() {
    let mut d = Device::connected();
    d.session.handle_disconnected("gone".into());
    let now = d.now();
    d.session.send(message("one"), now).expect("valid");
    d.session.send(message("two"), now).expect("valid");
    d.session
        .chat_state(bob(), State::Composing)
        .expect("valid");
    assert_eq!(d.drain(), ["event disconnected gone"]);
    d.advance(60_000);
    // The broker kept the session: no subscriptions, presence and both events again.
    let now = d.now();
    d.session.handle_connected(true, now);
    assert_eq!(
        d.drain(),
        [
            "event connected present=true",
            r#"pub mq/pr/alice/phone q1 retain {"type":"presence","ts":1790000060000,"availability":"available"}"#,
            r##"pub mq/up/alice/phone q1 {"type":"message","conv":"bob","text":"one","id":"#1"}"##,
            r##"pub mq/up/alice/phone q1 {"type":"message","conv":"bob","text":"two","id":"#2"}"##,
        ]
    );
    // Dropped again before confirmation: resent again, same ids.
    d.session.handle_disconnected("again".into());
    let now = d.now();
    d.session.handle_connected(true, now);
    let lines = d.drain();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r##""text":"one","id":"#1""##)),
        "{lines:?}"
    );
}

#[test]
fn duplicates_are_dropped_and_gaps_filled() {
    let mut d = Device::connected();
    let msg = |seq: u64| {
        format!(r#"{{"type":"message","conv":"bob","seq":{seq},"ts":{seq},"text":"m{seq}"}}"#)
    };
    d.hub(DURABLE, &msg(1));
    d.hub(DURABLE, &msg(1));
    d.hub(DURABLE, &msg(4));
    d.hub(DURABLE, &msg(5));
    assert_eq!(
        d.drain(),
        [
            r#"event message bob#1 from=bob own=false "m1""#,
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"bob","after":1,"limit":100,"id":"#1"}"##,
        ]
    );
    d.hub(
        REPLIES,
        &format!(
            r##"{{"type":"history-result","id":"#1","conv":"bob","events":[{},{}],"last-seq":5}}"##,
            msg(2),
            msg(3)
        ),
    );
    assert_eq!(
        d.drain(),
        [
            r#"event message bob#2 from=bob own=false "m2""#,
            r#"event message bob#3 from=bob own=false "m3""#,
            r#"event message bob#4 from=bob own=false "m4""#,
            r#"event message bob#5 from=bob own=false "m5""#,
        ]
    );
    // One delivered marker covers the burst, once its delay is over.
    d.advance(199);
    assert!(d.drain().is_empty());
    d.advance(1);
    assert_eq!(
        d.drain(),
        [r#"pub mq/up/alice/phone q1 {"type":"delivered","conv":"bob","up-to":5}"#]
    );
}

#[test]
fn a_fetch_is_asked_again_until_answered_and_given_up_only_when_refused() {
    let mut d = Device::connected();
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":1,"text":"a"}"#,
    );
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":3,"text":"c"}"#,
    );
    d.drain();
    // No answer in time (a hub restarting, a lost reply): asked again, nothing given up.
    d.advance(10_000);
    assert_eq!(
        d.drain(),
        [
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"bob","after":1,"limit":100,"id":"#2"}"##,
            r#"pub mq/up/alice/phone q1 {"type":"delivered","conv":"bob","up-to":1}"#,
        ]
    );
    // The late answer to the first request is ignored.
    d.hub(
        REPLIES,
        r##"{"type":"history-result","id":"#1","conv":"bob","events":[]}"##,
    );
    assert!(d.drain().is_empty());
    // The hub cannot answer now: asked again a second later.
    d.hub(
        REPLIES,
        r##"{"type":"error","id":"#2","conv":"bob","code":11}"##,
    );
    assert!(d.drain().is_empty());
    d.advance(1_000);
    assert_eq!(
        d.drain(),
        [
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"bob","after":1,"limit":100,"id":"#3"}"##
        ]
    );
    // A refusal for good: the gap is given up and what is held delivered.
    d.hub(
        REPLIES,
        r##"{"type":"error","id":"#3","conv":"bob","code":7}"##,
    );
    assert_eq!(d.drain(), [r#"event message bob#3 from=bob own=false "c""#]);
}

#[test]
fn history_pages_confirm_lost_own_copies() {
    let mut d = Device::connected();
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":1,"text":"a"}"#,
    );
    let now = d.now();
    d.session.send(message("b"), now).expect("valid");
    // The own copy (seq 2) is lost; seq 3 reveals the gap, history brings the copy back.
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":3,"text":"c"}"#,
    );
    d.drain();
    d.hub(
        REPLIES,
        r##"{"type":"history-result","id":"#2","conv":"bob","events":[{"type":"message","id":"#1","conv":"bob","seq":2,"from":"alice","device":"phone","text":"b"}]}"##,
    );
    assert_eq!(
        d.drain(),
        [
            "answer #1 sent bob seq=2 dup=false",
            r#"event message bob#2 from=alice own=true "b""#,
            r#"event message bob#3 from=bob own=false "c""#,
        ]
    );
}

#[test]
fn markers_chat_states_contacts() {
    let mut d = Device::connected();
    d.hub(
        DURABLE,
        r#"{"type":"delivered","conv":"bob","ts":1,"up-to":3}"#,
    );
    d.hub(DURABLE, r#"{"type":"read","conv":"bob","ts":1,"up-to":3}"#);
    d.hub(
        DURABLE,
        r#"{"type":"read","conv":"bob","ts":1,"from":"alice","device":"laptop","up-to":2}"#,
    );
    d.hub(
        "mq/in/alice/e",
        r#"{"type":"chat-state","conv":"bob","state":"composing"}"#,
    );
    d.hub(
        DURABLE,
        r#"{"type":"contact","conv":"bob","seq":1,"ts":1,"action":"request","note":"hi"}"#,
    );
    d.hub(DURABLE, r#"{"type":200,"conv":"bob","seq":2,"ts":1}"#);
    assert_eq!(
        d.drain(),
        [
            "event delivered bob by=bob 3",
            "event read bob by=bob 3 own=false",
            "event read bob by=alice 2 own=true",
            "event chat-state bob bob Composing",
            "event contact bob#1 from=bob Request",
            "event other type 200",
        ]
    );
}

#[test]
fn explicit_markers_and_offline_markers() {
    let mut d = Device::connected();
    let now = d.now();
    d.session
        .mark_read(bob(), Seq::new(7), true, now)
        .expect("valid");
    assert_eq!(
        d.drain(),
        [r#"pub mq/up/alice/phone q1 {"type":"read","conv":"bob","up-to":7,"private":true}"#]
    );
    assert!(d.session.mark_delivered(bob(), Seq::new(0), now).is_err());
    d.session.handle_disconnected("x".into());
    d.session
        .mark_read(bob(), Seq::new(9), false, now)
        .expect("valid");
    d.drain();
    let now = d.now();
    d.session.handle_connected(true, now);
    let lines = d.drain();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(r#"pub mq/up/alice/phone q1 {"type":"read","conv":"bob","up-to":9}"#)
    );
}

#[test]
fn presence_and_profiles() {
    let mut d = Device::connected();
    d.hub(
        "mq/pr/bob/phone",
        r#"{"type":"presence","ts":1,"availability":"away"}"#,
    );
    d.raw("mq/pr/bob/tablet", b"");
    d.hub(
        "mq/pf/bob",
        r#"{"type":"profile","seq":3,"ts":1,"name":"Bob"}"#,
    );
    assert_eq!(
        d.drain(),
        [
            "event presence bob/phone Some(Away)",
            "event presence bob/tablet None",
            r#"event profile bob v3 Some("Bob")"#,
        ]
    );
    let now = d.now();
    d.session
        .set_presence(Presence::new(Availability::Busy), now)
        .expect("valid");
    assert_eq!(
        d.drain(),
        [
            r#"pub mq/pr/alice/phone q1 retain {"type":"presence","ts":1790000000000,"availability":"busy"}"#
        ]
    );
}

#[test]
fn malformed_input_is_skipped() {
    let mut d = Device::connected();
    for (topic, payload) in [
        (DURABLE, &b"\xff\x00"[..]),
        (DURABLE, b""),
        (DURABLE, b"\xa1\x00\x01"),
        ("mq/in/alice/e", b"\xa1\x00\x02"),
        (REPLIES, b"\x01"),
        ("mq/pr/bob/phone", b"\xa2\x00\x06\x08\x09"),
        ("mq/pf/bob", b"\xa2\x00\x07\x08\x01"),
        ("elsewhere/x", b"\xa1\x00\x01"),
        ("mq/in/carol/d", b"\xa1\x00\x01"),
        ("mq/in/alice/r/laptop", b"\xa1\x00\x08"),
    ] {
        d.raw(topic, payload);
    }
    assert!(d.drain().is_empty());
}

#[test]
fn requests_time_out_and_close_fails_waiters() {
    let mut d = Device::connected();
    let now = d.now();
    d.session
        .sync(&mqchat_proto::body::Sync::default(), now)
        .expect("valid");
    d.session
        .history(bob(), &History::default(), now)
        .expect("valid");
    d.session.send(message("x"), now).expect("valid");
    d.drain();
    d.advance(10_000);
    assert_eq!(
        d.drain(),
        [
            "answer #1 error: no answer from the server in time",
            "answer #2 error: no answer from the server in time",
        ]
    );
    // The send has no deadline; closing fails it and says goodbye.
    let now = d.now();
    d.session
        .mark_read(bob(), Seq::new(1), false, now)
        .expect("valid");
    d.drain();
    assert!(d.session.close(now));
    assert_eq!(
        d.drain(),
        [
            "answer #3 error: the client is closed",
            r#"pub mq/pr/alice/phone q1 retain {"type":"presence","ts":1790000010000,"availability":"offline","last-active":1790000010000}"#,
        ]
    );
    assert!(
        d.session
            .send(message("y"), now)
            .is_err_and(|e| e.is_closed())
    );
}

#[test]
fn invalid_packets_are_refused_before_sending() {
    let mut d = Device::connected();
    let now = d.now();
    let too_long = message(&"x".repeat(20_000));
    assert!(d.session.send(too_long, now).is_err_and(|e| e.is_invalid()));
    assert!(
        d.session
            .send(Message::text("no conv").to_packet(), now)
            .is_err()
    );
    let marker = mqchat_proto::body::Delivered { up_to: 1 }.to_packet();
    assert!(d.session.send(marker, now).is_err_and(|e| e.is_invalid()));
    let mut extension = Packet::new(mqchat_proto::PacketKind(1500));
    extension.conv = Some(bob());
    assert!(d.session.send(extension.clone(), now).is_ok());
    assert!(d.session.signal(extension.clone()).is_err());
    extension.ephemeral = true;
    assert!(d.session.signal(extension).is_ok());
}

#[test]
fn inactive_devices_drop_ephemeral_subscriptions() {
    let mut d = Device::connected();
    let now = d.now();
    let bob_user = mqchat_proto::UserId::parse("bob").expect("valid");
    d.session.watch_presence(&bob_user, true).expect("open");
    assert_eq!(d.drain(), ["sub mq/pr/bob/+:0"]);
    d.session.set_active(false, now).expect("open");
    // The hub hears of it too (spec 7.13), so that it pushes to this device meanwhile.
    assert_eq!(
        d.drain(),
        [
            "unsub mq/in/alice/e mq/pr/bob/+",
            r##"pub mq/up/alice/phone q1 {"type":"client-state","active":false,"id":"#1"}"##
        ]
    );
    d.hub(REPLIES, r##"{"type":"ack","id":"#1"}"##);
    // Reconnecting in the background: the hub takes a new connection for active, so the
    // device says again that it is not.
    d.session.handle_disconnected("cut".into());
    d.session.handle_connected(true, now);
    let out = d.drain();
    assert!(
        out.iter()
            .any(|o| o.contains(r#""type":"client-state","active":false"#)),
        "{out:?}"
    );
    d.session.set_active(true, now).expect("open");
    let out = d.drain();
    assert_eq!(out[0], "sub mq/in/alice/e:0 mq/pr/bob/+:0");
    assert!(
        out.iter()
            .any(|o| o.contains(r#""type":"client-state","active":true"#)),
        "{out:?}"
    );
}

#[test]
fn reconnects_catch_up_from_the_change_token() {
    let mut d = Device::new(true);
    let now = d.now();
    d.session.handle_connected(false, now);
    d.drain();
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#1","conversations":[],"token":50}"##,
    );
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":1,"ts":100,"text":"a"}"#,
    );
    d.drain();
    d.session.handle_disconnected("x".into());
    let now = d.now();
    d.session.handle_connected(true, now);
    let lines = d.drain();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(r##"pub mq/up/alice/phone q1 {"type":"sync","after":50,"id":"#2"}"##)
    );
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#2","conversations":[{"conv":"bob","last-seq":3,"change":60},{"conv":"carol","last-seq":2,"change":61}],"token":61}"##,
    );
    assert_eq!(
        d.drain(),
        [
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"bob","after":1,"limit":100,"id":"#3"}"##,
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"carol","limit":100,"since":100,"id":"#4"}"##,
        ]
    );
    d.hub(
        REPLIES,
        r##"{"type":"history-result","id":"#4","conv":"carol","events":[{"type":"message","conv":"carol","seq":2,"ts":150,"text":"new"}]}"##,
    );
    assert_eq!(
        d.drain(),
        [r#"event message carol#2 from=carol own=false "new""#]
    );
    // The next reconnect syncs after the new token.
    d.session.handle_disconnected("x".into());
    let now = d.now();
    d.session.handle_connected(true, now);
    let lines = d.drain();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""type":"sync","after":61"#)),
        "{lines:?}"
    );
}

#[test]
fn ids_resume_after_the_last_one() {
    // An id from a clock an hour ahead of this device's.
    let last = MessageId::new((T0_MS + 3_600_000 - mqchat_proto::id::EPOCH_UNIX_MS) << 22)
        .expect("in range");
    let mut d = Device::with(|s| s.ids_after = Some(last));
    let now = d.now();
    let id = d.session.send(message("x"), now).expect("valid");
    assert!(id > last);
}
