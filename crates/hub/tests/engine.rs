//! The hub's pipeline against a real SQLite store: each test sends upstream packets (as JSON,
//! through the same registry the spec's vectors use) and checks what every topic receives.

mod common;

use std::time::Duration;

use mqchat_hub::{Engine, HubConfig, Outbound, Qos, RateConfig, Upstream};
use mqchat_proto::UserId;
use serde_json::{Value, json};

use common::{Hub, wall};

/// A hub whose users are alice, bob, carol, dave and erin, whose wall clock starts at 1 s
/// (so the first batch is stamped 2000).
type Fixture = Hub;

impl Hub {
    fn new() -> Self {
        let users = ["alice", "bob", "carol", "dave", "erin"];
        Self::with(&users, HubConfig::default(), 1_000)
    }

    /// Sends packets (JSON) from `user:device`; returns (topic, JSON) of every publish.
    fn send_as(&mut self, user: &str, device: &str, packets: &[Value]) -> Vec<(String, Value)> {
        let topic = format!("mq/up/{user}/{device}");
        let batch: Vec<Upstream> = packets.iter().map(|p| self.upstream(&topic, p)).collect();
        self.raw(batch)
    }

    /// Sends packets from several devices in one batch (one transaction), as if they arrived
    /// at the same moment.
    fn send_together(&mut self, packets: &[(&str, Value)]) -> Vec<(String, Value)> {
        let batch = packets
            .iter()
            .map(|(user, p)| self.upstream(format!("mq/up/{user}/phone"), p))
            .collect();
        self.raw(batch)
    }

    fn send(&mut self, user: &str, packet: Value) -> Vec<(String, Value)> {
        self.send_as(user, "phone", &[packet])
    }

    /// Sends a packet from `user:phone` that the hub refuses: the code of its error reply.
    fn refused(&mut self, user: &str, packet: Value) -> Value {
        self.send(user, packet)[0].1["code"].clone()
    }

    fn raw(&mut self, batch: Vec<Upstream>) -> Vec<(String, Value)> {
        let publishes = self.publishes(batch);
        publishes.iter().map(|o| self.show(o)).collect()
    }

    /// Processes a batch; returns the publishes as they would go out.
    fn publishes(&mut self, batch: Vec<Upstream>) -> Vec<Outbound> {
        self.process(&batch).publishes
    }

    /// A presence PUBLISH handled on its own at wall time `wall_ms`.
    fn presence_at(&mut self, topic: &str, payload: &[u8], wall_ms: u64) -> Option<Outbound> {
        self.engine
            .presence(&mut self.store, topic, payload, wall(wall_ms))
    }

    /// A payload given in hex (whitespace ignored) from `user:phone`.
    fn send_hex(&mut self, user: &str, payload: &str) -> Vec<Outbound> {
        self.publishes(vec![Upstream {
            topic: format!("mq/up/{user}/phone"),
            payload: hex::decode(payload.split_whitespace().collect::<String>()).expect("test hex"),
        }])
    }

    fn show(&self, o: &Outbound) -> (String, Value) {
        let packet = mqchat_proto::Packet::decode(&o.payload).expect("hub output decodes");
        let mut json = self.registry.to_json(&packet);
        if o.qos == Qos::AtMostOnce {
            json["qos0"] = json!(true);
        }
        if o.retain {
            json["retained"] = json!(true);
        }
        (o.topic.clone(), json)
    }
}

fn msg(id: &str, conv: &str, text: &str) -> Value {
    json!({"type": "message", "id": id, "conv": conv, "text": text})
}

const ID1: &str = "0a03zkqvpmqs1";
const ID2: &str = "0a03zkqvpmqs2";
const ID3: &str = "0a03zkqvpmqs3";

#[test]
fn message_is_sequenced_stored_and_delivered_to_both_sides() {
    let mut f = Fixture::new();
    let out = f.send("alice", msg(ID1, "bob", "Hi"));
    assert_eq!(
        out,
        vec![
            (
                "mq/in/alice/d".into(),
                json!({"type": "message", "id": ID1, "conv": "bob", "seq": 1, "ts": 2000, "from": "alice", "device": "phone", "text": "Hi"})
            ),
            (
                "mq/in/bob/d".into(),
                json!({"type": "message", "conv": "alice", "seq": 1, "ts": 2000, "text": "Hi"})
            ),
        ]
    );
    let out = f.send("bob", msg(ID1, "alice", "Hello"));
    assert_eq!(
        out[0].1["seq"], 2,
        "one sequence per conversation, whoever sends"
    );
}

/// Rate limits run on the monotonic clock: the wall clock stepping back an hour between two
/// bursts changes nothing of what passes. Stamps never go back (spec 11): what is stored
/// while the clock is behind keeps the newest stamp, so `history` `since` misses nothing.
#[test]
fn a_wall_clock_stepping_back_leaves_rates_alone_and_stamps_never_go_back() {
    let config = HubConfig {
        rates: RateConfig {
            device_per_sec: 1,
            device_burst: 2,
            ..RateConfig::default()
        },
        ..HubConfig::default()
    };
    let start = 1_765_000_000_000;
    let mut f = Fixture::with(&["alice", "bob"], config, start);
    // (seq, ts) of what alice's devices see stored, and the codes of the refusals.
    let burst = |f: &mut Fixture, ids: &[&str]| {
        let packets: Vec<Value> = ids.iter().map(|id| msg(id, "bob", "Hi")).collect();
        let out = f.send_as("alice", "phone", &packets);
        let seen = |topic: &str, field: &str| -> Vec<u64> {
            out.iter()
                .filter(|(t, _)| t == topic)
                .filter_map(|(_, v)| v[field].as_u64())
                .collect()
        };
        let stored = seen("mq/in/alice/d", "seq")
            .into_iter()
            .zip(seen("mq/in/alice/d", "ts"))
            .collect::<Vec<_>>();
        (stored, seen("mq/in/alice/r/phone", "code"))
    };
    assert_eq!(
        burst(&mut f, &[ID1, ID2, ID3]),
        (vec![(1, start + 1000), (2, start + 1000)], vec![10]),
        "the burst, then rate-limited"
    );
    f.step_wall_back(Duration::from_secs(3_600));
    assert_eq!(
        burst(&mut f, &["0a03zkqvpmqs4", "0a03zkqvpmqs5"]),
        (vec![(3, start + 1000)], vec![10]),
        "one second later one more passes, with the newest stamp, not the clock's"
    );
    // The clock catches up: stamps follow it again.
    f.now.wall = mqchat_proto::Timestamp::from_unix_ms(start + 10_000);
    assert_eq!(
        burst(&mut f, &["0a03zkqvpmqs6"]),
        (vec![(4, start + 11_000)], vec![]),
        "past the newest stamp, the wall clock again"
    );
    // A restarted hub resumes from the newest stored stamp, whatever its clock says.
    f.engine = mqchat_hub::Engine::new(HubConfig::default());
    f.step_wall_back(Duration::from_secs(3_600));
    let (stored, _) = burst(&mut f, &["0a03zkqvpmqs7"]);
    assert_eq!(stored, vec![(5, start + 11_000)], "after a restart");
}

#[test]
fn duplicates_are_acknowledged_not_stored() {
    let mut f = Fixture::new();
    f.send("alice", msg(ID1, "bob", "Hi"));
    let out = f.send("alice", msg(ID1, "bob", "Hi"));
    assert_eq!(
        out,
        vec![(
            "mq/in/alice/r/phone".into(),
            json!({"type": "ack", "id": ID1, "conv": "bob", "seq": 1, "ts": 2000, "duplicate": true})
        )]
    );
    // The same id from another device is another message.
    let out = f.send_as("alice", "laptop", &[msg(ID1, "bob", "Hi")]);
    assert_eq!(out[0].1["seq"], 2);
    // Within one batch, too.
    let out = f.send_as(
        "alice",
        "phone",
        &[msg(ID2, "bob", "a"), msg(ID2, "bob", "a")],
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[2].1["duplicate"], true);
}

#[test]
fn refusals_go_to_the_sender_only() {
    let mut f = Fixture::new();
    let out = f.send("alice", msg(ID1, "nobody", "Hi"));
    assert_eq!(
        out,
        vec![(
            "mq/in/alice/r/phone".into(),
            json!({"type": "error", "id": ID1, "conv": "nobody", "code": 6, "detail": "no user \"nobody\"", "about": 1})
        )]
    );
    assert_eq!(
        f.refused("alice", msg(ID1, "#team", "Hi")),
        8,
        "no such group"
    );
    let out = f.raw(vec![Upstream {
        topic: "mq/up/alice/phone".into(),
        payload: vec![0xff],
    }]);
    assert_eq!(out[0].0, "mq/in/alice/r/phone");
    assert_eq!(out[0].1["code"], 1);
    let out = f.raw(vec![Upstream {
        topic: "mq/up/alice/phone".into(),
        payload: vec![0; 70_000],
    }]);
    assert_eq!(out[0].1["code"], 3);
    // Not an upstream topic: nobody to answer.
    let out = f.raw(vec![Upstream {
        topic: "mq/in/bob/d".into(),
        payload: vec![0xa0],
    }]);
    assert!(out.is_empty());
    // A refused packet in a batch does not stop the others.
    let out = f.send_as(
        "alice",
        "phone",
        &[msg(ID1, "nobody", "x"), msg(ID2, "bob", "y")],
    );
    assert_eq!(out.len(), 3);
    assert_eq!(out[1].1["seq"], 1);
}

#[test]
fn markers_move_forward_and_reach_the_right_inboxes() {
    let mut f = Fixture::new();
    for id in [ID1, ID2, ID3] {
        f.send("alice", msg(id, "bob", "m"));
    }
    let out = f.send(
        "bob",
        json!({"type": "delivered", "conv": "alice", "up-to": 2}),
    );
    assert_eq!(
        out,
        vec![(
            "mq/in/alice/d".into(),
            json!({"type": "delivered", "conv": "bob", "ts": 5000, "up-to": 2})
        )]
    );
    assert!(
        f.send(
            "bob",
            json!({"type": "delivered", "conv": "alice", "up-to": 1})
        )
        .is_empty(),
        "backwards is ignored"
    );
    let out = f.send("bob", json!({"type": "read", "conv": "alice", "up-to": 99}));
    assert_eq!(
        out,
        vec![
            (
                "mq/in/alice/d".into(),
                json!({"type": "read", "conv": "bob", "ts": 7000, "up-to": 3})
            ),
            (
                "mq/in/bob/d".into(),
                json!({"type": "read", "conv": "alice", "ts": 7000, "from": "bob", "device": "phone", "up-to": 3})
            ),
        ],
        "clamped to the last sequence number; synced to bob's devices"
    );
    let packet = json!({"type": "delivered", "conv": "nobody", "up-to": 1});
    assert_eq!(f.refused("alice", packet), 6);
    assert_eq!(
        f.refused(
            "alice",
            json!({"type": "read", "conv": "carol", "up-to": 1})
        ),
        8,
        "no conversation with carol"
    );
}

#[test]
fn private_read_tells_the_peer_only_delivered() {
    let mut f = Fixture::new();
    f.send("alice", msg(ID1, "bob", "m"));
    let out = f.send(
        "bob",
        json!({"type": "read", "conv": "alice", "up-to": 1, "private": true}),
    );
    assert_eq!(
        out[0],
        (
            "mq/in/alice/d".into(),
            json!({"type": "delivered", "conv": "bob", "ts": 3000, "up-to": 1})
        )
    );
    assert_eq!(out[1].0, "mq/in/bob/d");
    assert_eq!(out[1].1["private"], true);
}

#[test]
fn chat_states_need_a_conversation_and_stay_ephemeral() {
    let mut f = Fixture::new();
    let typing = json!({"type": "chat-state", "conv": "bob", "state": "composing"});
    assert_eq!(f.refused("alice", typing.clone()), 7);
    f.send("alice", msg(ID1, "bob", "Hi"));
    let out = f.send("alice", typing);
    assert_eq!(
        out,
        vec![(
            "mq/in/bob/e".into(),
            json!({"type": "chat-state", "conv": "alice", "state": "composing", "qos0": true})
        )]
    );
}

#[test]
fn contact_requests_follow_the_state_machine() {
    let mut f = Fixture::new();
    let out = f.send(
        "alice",
        json!({"type": "contact", "id": ID1, "conv": "bob", "action": "request", "note": "hi"}),
    );
    assert_eq!(
        out[1],
        (
            "mq/in/bob/d".into(),
            json!({"type": "contact", "conv": "alice", "seq": 1, "ts": 2000, "action": "request", "note": "hi"})
        )
    );
    assert_eq!(
        f.refused(
            "alice",
            json!({"type": "contact", "id": ID2, "conv": "bob", "action": "request"})
        ),
        9,
        "already asked"
    );
    assert!(
        !f.store
            .may_see_presence(
                &UserId::parse("alice").expect("valid"),
                &UserId::parse("bob").expect("valid")
            )
            .expect("query")
    );
    let out = f.send(
        "bob",
        json!({"type": "contact", "id": ID1, "conv": "alice", "action": "accept"}),
    );
    assert_eq!(out.len(), 2);
    assert!(
        f.store
            .may_see_presence(
                &UserId::parse("alice").expect("valid"),
                &UserId::parse("bob").expect("valid")
            )
            .expect("query")
    );
    let packet = json!({"type": "contact", "id": ID3, "conv": "alice", "action": "request"});
    assert_eq!(f.refused("alice", packet), 2);
}

#[test]
fn profile_changes_merge_and_are_retained() {
    let mut f = Fixture::new();
    let out = f.send(
        "alice",
        json!({"type": "profile", "id": ID1, "name": "Alice", "status": "hi"}),
    );
    assert_eq!(
        out,
        vec![
            (
                "mq/pf/alice".into(),
                json!({"type": "profile", "seq": 1, "ts": 2000, "name": "Alice", "status": "hi", "retained": true})
            ),
            (
                "mq/in/alice/r/phone".into(),
                json!({"type": "ack", "id": ID1, "seq": 1, "ts": 2000})
            ),
        ]
    );
    let out = f.send("alice", json!({"type": "profile", "id": ID2, "status": ""}));
    assert_eq!(
        out[0].1,
        json!({"type": "profile", "seq": 2, "ts": 3000, "name": "Alice", "retained": true})
    );
    assert_eq!(f.engine.profiles(&mut f.store).expect("profiles").len(), 1);
}

#[test]
fn sync_lists_changed_conversations_with_markers() {
    let mut f = Fixture::new();
    f.send("alice", msg(ID1, "bob", "one"));
    f.send("alice", msg(ID2, "bob", "two"));
    f.send("carol", msg(ID1, "alice", "hey"));
    f.send("bob", json!({"type": "read", "conv": "alice", "up-to": 1}));
    let out = f.send("alice", json!({"type": "sync", "id": ID3}));
    let result = &out[0].1;
    assert_eq!(out[0].0, "mq/in/alice/r/phone");
    let convs = result["conversations"].as_array().expect("array");
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[0]["conv"], "carol");
    assert_eq!(convs[0]["unread"], 1);
    assert_eq!(convs[1]["conv"], "bob", "the read marker changed it last");
    assert_eq!(convs[1]["peer-read"], 1);
    assert_eq!(convs[1]["last"]["text"], "two");
    assert_eq!(convs[1]["last"]["from"], "alice");
    assert!(
        convs[1].get("unread").is_none(),
        "own messages are not unread"
    );
    let token = result["token"].as_u64().expect("token");
    let out = f.send("alice", json!({"type": "sync", "id": ID3, "after": token}));
    assert_eq!(out[0].1["conversations"], json!([]));
    let out = f.send(
        "alice",
        json!({"type": "sync", "id": ID3, "newest-first": true, "limit": 1}),
    );
    assert_eq!(out[0].1["conversations"][0]["conv"], "bob");
    assert_eq!(out[0].1["more"], true);
}

#[test]
fn history_pages_both_ways() {
    let mut f = Fixture::new();
    let ids = [
        "0a03zkqvpmqa1",
        "0a03zkqvpmqa2",
        "0a03zkqvpmqa3",
        "0a03zkqvpmqa4",
        "0a03zkqvpmqa5",
    ];
    for (n, id) in ids.iter().enumerate() {
        let from = if n % 2 == 0 { "alice" } else { "bob" };
        let to = if n % 2 == 0 { "bob" } else { "alice" };
        f.send(from, msg(id, to, &format!("m{n}")));
    }
    let seqs = |out: &[(String, Value)]| -> Vec<u64> {
        out[0].1["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect()
    };
    let out = f.send(
        "bob",
        json!({"type": "history", "id": ID1, "conv": "alice", "after": 1, "limit": 2}),
    );
    assert_eq!(seqs(&out), vec![2, 3]);
    assert_eq!(out[0].1["more"], true);
    assert_eq!(out[0].1["conv"], "alice");
    assert_eq!(out[0].1["last-seq"], 5);
    let out = f.send(
        "bob",
        json!({"type": "history", "id": ID1, "conv": "alice", "limit": 2}),
    );
    assert_eq!(seqs(&out), vec![4, 5]);
    assert_eq!(
        out[0].1["events"][1]["from"],
        json!(null),
        "alice's message to bob has no from"
    );
    assert_eq!(
        out[0].1["events"][0]["from"], "bob",
        "bob's own message carries from"
    );
    let out = f.send(
        "bob",
        json!({"type": "history", "id": ID1, "conv": "alice", "before": 4, "limit": 10}),
    );
    assert_eq!(seqs(&out), vec![1, 2, 3]);
    assert_eq!(out[0].1.get("more"), None);
    let out = f.send(
        "bob",
        json!({"type": "history", "id": ID1, "conv": "carol"}),
    );
    assert_eq!(out[0].1["events"], json!([]));
}

/// `{0: kind, 1: ID1, 2: "bob", 99: [[...[0]...]]}` in hex, nesting `levels` levels in all.
fn nested(kind: &str, levels: usize) -> String {
    format!(
        "a4 00{kind} 01 1b 05007f9df76a5f21 02 63 626f62 18 63 {} 00",
        "81".repeat(levels - 1)
    )
}

#[test]
fn too_deep_packets_are_refused_with_their_envelope_and_nothing_kept() {
    let mut f = Fixture::new();
    let limit = mqchat_proto::encoding::MAX_NESTING;
    // A message, an unknown event type and an unknown signal, one level too deep, and the
    // 50,000 levels that once reached the archive.
    for (kind, levels, about) in [
        ("01", limit + 1, 1),
        ("191388", limit + 1, 5000),
        ("191388", 50_000, 5000),
    ] {
        let out = f.send_hex("alice", &nested(kind, levels));
        let shown: Vec<_> = out.iter().map(|o| f.show(o)).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(shown[0].0, "mq/in/alice/r/phone");
        assert_eq!(
            shown[0].1,
            json!({"type": "error", "id": ID1, "conv": "bob", "code": 1, "about": about,
                   "detail": format!("the packet nests deeper than {limit} levels")})
        );
    }
    let signal = "a4 00 19 1388 02 63 626f62 07 f5 18 63".to_owned() + &"81".repeat(limit) + "00";
    let out = f.send_hex("alice", &signal);
    assert_eq!(out.len(), 1);
    assert_eq!(f.show(&out[0]).1["code"], 1);
    // Nothing was stored: the conversation does not exist, and the next event is the first.
    let out = f.send("bob", json!({"type": "sync", "id": ID2}));
    assert_eq!(out[0].1["conversations"], json!([]));
    let out = f.send("alice", msg(ID3, "bob", "Hi"));
    assert_eq!(out[0].1["seq"], 1);
    // At the limit, the packet is an event like any other.
    let out = f.send_hex("alice", &nested("191388", limit));
    assert_eq!(f.show(&out[1]).1["seq"], 2);
}

#[test]
fn refusals_carry_the_envelope_that_could_be_read() {
    let mut f = Fixture::new();
    // An invalid conversation: id and type still come back.
    let out = f.send_hex(
        "alice",
        "a4 00 01 01 1b 05007f9df76a5f21 02 63 424f42 08 62 4869",
    );
    assert_eq!(out.len(), 1);
    let (topic, reply) = f.show(&out[0]);
    assert_eq!(topic, "mq/in/alice/r/phone");
    assert_eq!(
        (
            &reply["id"],
            &reply["conv"],
            &reply["about"],
            &reply["code"]
        ),
        (&json!(ID1), &Value::Null, &json!(1), &json!(2))
    );
    // Malformed as a whole (key 8 twice): all three.
    let out = f.send_hex(
        "alice",
        "a5 00 01 01 1b 05007f9df76a5f21 02 63 626f62 08 61 61 08 61 62",
    );
    let reply = f.show(&out[0]).1;
    assert_eq!(
        (
            &reply["id"],
            &reply["conv"],
            &reply["about"],
            &reply["code"]
        ),
        (&json!(ID1), &json!("bob"), &json!(1), &json!(1))
    );
}

#[test]
fn other_encodings_are_accepted_and_forwarded_deterministic() {
    let mut f = Fixture::new();
    // {_ 0: 1, 1: ID1 (in 9 bytes), 2: (_ "b", "ob"), 8: (_ "H", "i"),
    //   99: [_ {_ "b": 1.5 (double), "a": 24 (in 3 bytes)}, (_ h'01', h'02')]}
    let out = f.send_hex(
        "alice",
        "bf 00 01 01 1b 05007f9df76a5f21 02 7f 61 62 62 6f62 ff 08 7f 61 48 61 69 ff
         18 63 9f bf 61 62 fb 3ff8000000000000 61 61 19 0018 ff 5f 41 01 41 02 ff ff ff",
    );
    let canonical_99 = "18 63 82 a2 61 61 18 18 61 62 f9 3e00 42 0102";
    let delivered: Vec<_> = out
        .iter()
        .map(|o| (o.topic.as_str(), hex::encode(&o.payload)))
        .collect();
    let expected = |s: &str| s.replace(' ', "");
    assert_eq!(
        delivered,
        vec![
            (
                "mq/in/alice/d",
                expected(&format!(
                    "a9 00 01 01 1b 05007f9df76a5f21 02 63 626f62 03 01 04 19 07d0 05 65 616c696365 06 65 70686f6e65 08 62 4869 {canonical_99}"
                ))
            ),
            (
                "mq/in/bob/d",
                expected(&format!(
                    "a6 00 01 02 65 616c696365 03 01 04 19 07d0 08 62 4869 {canonical_99}"
                ))
            ),
        ]
    );
    // The archive holds the same form: a history page carries it.
    let history = json!({"type": "history", "id": ID2, "conv": "alice"});
    let out = f.publishes(vec![Upstream {
        topic: "mq/up/bob/phone".into(),
        payload: f
            .registry
            .from_json(&history)
            .expect("test packet")
            .encode(),
    }]);
    let page = hex::encode(&out[0].payload);
    assert!(page.contains(&expected(canonical_99)), "{page}");
}

#[test]
fn unknown_types_are_routed_by_envelope_and_kept_whole() {
    let mut f = Fixture::new();
    let reaction = json!({"type": 128, "id": ID1, "conv": "bob", "unknown": {"8": "182a", "9": "64f09f918d", "200": "f5"}});
    let out = f.send("alice", reaction);
    assert_eq!(
        out[1],
        (
            "mq/in/bob/d".into(),
            json!({"type": 128, "conv": "alice", "seq": 1, "ts": 2000, "unknown": {"8": "182a", "9": "64f09f918d", "200": "f5"}})
        )
    );
    let out = f.send(
        "alice",
        json!({"type": 1501, "conv": "bob", "ephemeral": true, "unknown": {"8": "01"}}),
    );
    assert_eq!(out[0].0, "mq/in/bob/e");
}

#[test]
fn outbox_redelivers_what_was_not_confirmed() {
    let mut f = Fixture::new();
    let batch = [f.upstream("mq/up/alice/phone", &msg(ID1, "bob", "Hi"))];
    let output = f.process_unconfirmed(&batch);
    assert_eq!(output.delivered.len(), 1);
    // The hub dies before confirming: at restart the deliveries come again.
    let again = f.engine.recover(&mut f.store).expect("recover");
    assert_eq!(again.publishes, output.publishes);
    f.engine
        .confirm(&mut f.store, &again.delivered)
        .expect("confirm");
    assert!(
        f.engine
            .recover(&mut f.store)
            .expect("recover")
            .publishes
            .is_empty()
    );
}

/// Behind a broker that checks passwords itself (Mosquitto's password file) the hub never
/// registers devices: their presence must stay.
#[test]
fn presence_of_unregistered_devices_is_kept() {
    let mut f = Fixture::new();
    let online = f.encoded(&json!({"type": "presence", "availability": "available"}));
    assert_eq!(f.presence_at("mq/pr/alice/laptop", &online, 79), None);
}

#[test]
fn presence_wills_are_stamped_and_garbage_cleared() {
    let mut f = Fixture::new();
    f.store
        .add_device(&user("alice"), &device("phone"), 1)
        .expect("device");
    let will = f.encoded(&json!({"type": "presence", "availability": "offline"}));
    let stamped = f
        .presence_at("mq/pr/alice/phone", &will, 77)
        .expect("stamped");
    assert!(stamped.retain);
    assert_eq!(
        f.show(&stamped).1,
        json!({"type": "presence", "ts": 77, "availability": "offline", "last-active": 77, "retained": true})
    );
    assert_eq!(
        f.presence_at("mq/pr/alice/phone", &stamped.payload, 78),
        None,
        "no loop on its own stamp"
    );
    let online = f.encoded(&json!({"type": "presence", "availability": "available"}));
    assert_eq!(f.presence_at("mq/pr/alice/phone", &online, 79), None);
    let cleared = f
        .presence_at("mq/pr/alice/phone", b"garbage", 80)
        .expect("cleared");
    assert!(cleared.payload.is_empty() && cleared.retain);
    assert_eq!(f.presence_at("mq/pr/alice/phone", &[], 81), None);
}

fn user(s: &str) -> UserId {
    UserId::parse(s).expect("valid")
}

fn device(s: &str) -> mqchat_proto::DeviceId {
    mqchat_proto::DeviceId::parse(s).expect("valid")
}

#[test]
fn devices_are_listed_and_revoked() {
    let mut f = Fixture::new();
    for d in ["phone", "laptop"] {
        f.store
            .add_device(&user("alice"), &device(d), 5)
            .expect("device");
    }
    f.store
        .add_device(&user("bob"), &device("tablet"), 5)
        .expect("device");
    let out = f.send("alice", json!({"type": "device-list", "id": ID1}));
    assert_eq!(
        out,
        vec![(
            "mq/in/alice/r/phone".to_owned(),
            json!({"type": "device-list-result", "id": ID1, "devices": [
                {"device-id": "laptop", "created": 5, "token": true},
                {"device-id": "phone", "created": 5, "token": true}
            ]})
        )]
    );

    // alice revokes her laptop from her phone: ack, presence cleared, session evicted.
    let revoke = json!({"type": "device-revoke", "id": ID2, "device-id": "laptop"});
    let output = f.process_unconfirmed(&[f.upstream("mq/up/alice/phone", &revoke)]);
    assert_eq!(output.publishes.len(), 2);
    let clear = &output.publishes[0];
    assert_eq!(clear.topic, "mq/pr/alice/laptop");
    assert!(clear.payload.is_empty() && clear.retain);
    assert_eq!(
        f.show(&output.publishes[1]),
        (
            "mq/in/alice/r/phone".to_owned(),
            json!({"type": "ack", "id": ID2})
        )
    );
    assert_eq!(output.evict.len(), 1);
    assert_eq!(output.evict[0].to_string(), "alice:laptop");
    let revoked = f.store.devices(&user("alice")).expect("list");
    assert!(
        revoked
            .iter()
            .any(|d| d.id == device("laptop") && d.revoked_at == Some(f.now.wall.unix_ms()))
    );

    // The list no longer shows it; revoking it again, or bob's device, is not-found.
    let out = f.send("alice", json!({"type": "device-list", "id": ID3}));
    assert_eq!(
        out[0].1["devices"],
        json!([{"device-id": "phone", "created": 5, "token": true}])
    );
    for name in ["laptop", "tablet", "nothing"] {
        let out = f.send(
            "alice",
            json!({"type": "device-revoke", "id": ID1, "device-id": name}),
        );
        assert_eq!(out.len(), 1, "{name}");
        assert_eq!(out[0].1["type"], json!("error"), "{name}");
        assert_eq!(out[0].1["code"], json!(8), "{name}");
    }
    assert!(
        f.store
            .device_active(&user("bob"), &device("tablet"))
            .expect("query")
    );

    // A presence the revoked laptop publishes later (its will) is cleared, not stamped.
    let will = f.encoded(&json!({"type": "presence", "availability": "offline"}));
    let cleared = f
        .presence_at("mq/pr/alice/laptop", &will, 99)
        .expect("cleared");
    assert!(cleared.payload.is_empty() && cleared.retain);
}

mod groups {
    use super::*;

    /// What `user` received on `topic` in `out`.
    fn to<'a>(out: &'a [(String, Value)], topic: &str) -> Vec<&'a Value> {
        out.iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, v)| v)
            .collect()
    }

    /// Creates a group of alice (owner), bob and carol (members); returns its conv name.
    fn team(f: &mut Fixture) -> String {
        let out = f.send("alice", json!({"type": "group-create", "id": "0a03zkqvpmqg1", "name": "Team", "invite": ["bob", "carol"]}));
        let ack = to(&out, "mq/in/alice/r/phone")[0];
        assert_eq!(ack["type"], "ack", "{out:?}");
        let conv = ack["conv"].as_str().expect("group conv").to_owned();
        assert!(conv.starts_with('#'));
        let invitation = to(&out, "mq/in/bob/d")[0];
        assert_eq!(
            (invitation["action"].as_str(), invitation["name"].as_str()),
            (Some("invited"), Some("Team"))
        );
        let out = f.send_together(&[
            ("bob", json!({"type": "group-join", "id": "0a03zkqvpmqj1", "conv": conv, "action": "accept"})),
            ("carol", json!({"type": "group-join", "id": "0a03zkqvpmqj2", "conv": conv, "action": "accept"})),
        ]);
        assert_eq!(
            out.iter()
                .filter(|(t, v)| t.ends_with("/r/phone") && v["type"] == "ack")
                .count(),
            2,
            "both accepts land: {out:?}"
        );
        conv
    }

    fn info(f: &mut Fixture, user: &str, conv: &str) -> Value {
        let out = f.send(
            user,
            json!({"type": "group-info", "id": "0a03zkqvpmqi1", "conv": conv}),
        );
        out[0].1.clone()
    }

    #[test]
    fn create_invite_accept_and_fan_out() {
        let mut f = Fixture::new();
        let conv = team(&mut f);
        let roster = info(&mut f, "bob", &conv);
        assert_eq!(roster["type"], "group-info-result");
        let members: Vec<(&str, &str)> = roster["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["user"].as_str().unwrap_or(""),
                    m["role"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            members,
            vec![("alice", "owner"), ("bob", "member"), ("carol", "member")]
        );

        let out = f.send("bob", msg("0a03zkqvpmqm1", &conv, "hello team"));
        for user in ["alice", "bob", "carol"] {
            let got = to(&out, &format!("mq/in/{user}/d"));
            assert_eq!(got.len(), 1, "{user}: {out:?}");
            assert_eq!(
                (got[0]["from"].as_str(), got[0]["conv"].as_str()),
                (Some("bob"), Some(conv.as_str()))
            );
        }
        assert!(to(&out, "mq/in/dave/d").is_empty());

        // Every member pages the same ordered history from their joining on.
        let page = |f: &mut Fixture, user: &str| -> Vec<(u64, String)> {
            let out = f.send(
                user,
                json!({"type": "history", "id": "0a03zkqvpmqh1", "conv": conv, "after": 0}),
            );
            out[0].1["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| {
                    (
                        e["seq"].as_u64().unwrap_or(0),
                        e["action"]
                            .as_str()
                            .or(e["text"].as_str())
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect()
        };
        let alice = page(&mut f, "alice");
        assert_eq!(
            alice.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>(),
            vec![
                "created",
                "invited",
                "invited",
                "joined",
                "joined",
                "hello team"
            ]
        );
        let bob = page(&mut f, "bob");
        assert_eq!(bob, alice[3..].to_vec(), "bob reads from his joining on");
    }

    #[test]
    fn typing_and_markers_in_groups() {
        let mut f = Fixture::new();
        let conv = team(&mut f);
        let out = f.send(
            "bob",
            json!({"type": "chat-state", "conv": conv, "state": "composing"}),
        );
        let mut topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort();
        assert_eq!(topics, vec!["mq/in/alice/e", "mq/in/carol/e"]);
        let out = f.send("alice", msg("0a03zkqvpmqm1", &conv, "who climbs Saturday?"));
        let seq = out[0].1["seq"].as_u64().expect("seq");
        // carol reads: only the author (alice) and carol's own devices hear of it.
        let out = f.send("carol", json!({"type": "read", "conv": conv, "up-to": seq}));
        let mut topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort();
        assert_eq!(topics, vec!["mq/in/alice/d", "mq/in/carol/d"], "{out:?}");
        assert_eq!(to(&out, "mq/in/alice/d")[0]["from"], "carol");
        let roster = info(&mut f, "alice", &conv);
        let read_by = roster["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["read"].as_u64() >= Some(seq))
            .count();
        assert_eq!(
            read_by, 1,
            "read by 1 of 3 (the author's own marker does not count)"
        );
    }

    #[test]
    fn group_ids_follow_the_engines_seed() {
        let gid = |seed: u64| {
            let mut f = Fixture::new();
            f.engine = Engine::new(HubConfig {
                seed,
                ..HubConfig::default()
            });
            let out = f.send(
                "alice",
                json!({"type": "group-create", "id": "0a03zkqvpmqg1", "name": "Team"}),
            );
            let ack = to(&out, "mq/in/alice/r/phone")[0];
            ack["conv"].as_str().expect("group conv").to_owned()
        };
        assert_eq!(gid(7), gid(7), "the same seed, the same ids");
        assert_ne!(gid(7), gid(8));
    }

    /// (topic, type, up-to, from, private) of each publish.
    fn markers(out: &[(String, Value)]) -> Vec<(String, String, u64, String, bool)> {
        out.iter()
            .map(|(t, v)| {
                (
                    t.clone(),
                    v["type"].as_str().unwrap_or("").to_owned(),
                    v["up-to"].as_u64().unwrap_or(0),
                    v["from"].as_str().unwrap_or("").to_owned(),
                    v["private"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    #[test]
    fn group_markers_reach_the_authors_they_newly_cover() {
        let mut f = Fixture::new();
        let conv = team(&mut f);
        let out = f.send("alice", msg("0a03zkqvpmqm1", &conv, "one"));
        let one = out[0].1["seq"].as_u64().expect("seq");
        let out = f.send("bob", msg("0a03zkqvpmqm2", &conv, "two"));
        let two = out[0].1["seq"].as_u64().expect("seq");
        let row = |t: &str, kind: &str, up_to: u64, from: &str, private: bool| {
            (
                t.to_owned(),
                kind.to_owned(),
                up_to,
                from.to_owned(),
                private,
            )
        };
        let out = f.send(
            "carol",
            json!({"type": "delivered", "conv": conv, "up-to": one}),
        );
        assert_eq!(
            markers(&out),
            vec![row("mq/in/alice/d", "delivered", one, "carol", false)]
        );
        assert_eq!(out[0].1["conv"], conv.as_str());
        // A private read: the authors it newly covers learn `delivered`, carol's devices
        // the read.
        let out = f.send(
            "carol",
            json!({"type": "read", "conv": conv, "up-to": two, "private": true}),
        );
        assert_eq!(
            markers(&out),
            vec![
                row("mq/in/bob/d", "delivered", two, "carol", false),
                row("mq/in/carol/d", "read", two, "carol", true),
            ]
        );
        let out = f.send("carol", json!({"type": "read", "conv": conv, "up-to": two}));
        assert!(out.is_empty(), "nothing moves: {out:?}");
        // bob reads both: alice learns `read` (not also `delivered`), bob is no author
        // to himself.
        let out = f.send("bob", json!({"type": "read", "conv": conv, "up-to": two}));
        assert_eq!(
            markers(&out),
            vec![
                row("mq/in/alice/d", "read", two, "bob", false),
                row("mq/in/bob/d", "read", two, "bob", false),
            ]
        );
        let out = f.send("dave", json!({"type": "read", "conv": conv, "up-to": two}));
        assert_eq!(out[0].1["code"], 7, "not a member: {out:?}");
    }

    #[test]
    fn outsiders_and_removed_members_are_refused_and_hear_nothing() {
        let mut f = Fixture::new();
        let conv = team(&mut f);
        let out = f.send("dave", msg("0a03zkqvpmqm1", &conv, "let me in"));
        assert_eq!((out.len(), out[0].1["code"].as_u64()), (1, Some(7)));
        for (user, packet) in [
            (
                "dave",
                json!({"type": "group-info", "id": "0a03zkqvpmqi1", "conv": conv}),
            ),
            (
                "dave",
                json!({"type": "history", "id": "0a03zkqvpmqh1", "conv": conv}),
            ),
            // A member tries admin actions.
            (
                "bob",
                json!({"type": "group-admin", "id": "0a03zkqvpmqa1", "conv": conv, "action": "remove", "user": "carol"}),
            ),
            (
                "bob",
                json!({"type": "group-admin", "id": "0a03zkqvpmqa2", "conv": conv, "action": "role", "user": "bob", "role": "admin"}),
            ),
        ] {
            assert_eq!(f.refused(user, packet.clone()), 7, "{user}: {packet}");
        }
        // The owner removes carol: she learns it, then hears nothing more and cannot send.
        let out = f.send("alice", json!({"type": "group-admin", "id": "0a03zkqvpmqa3", "conv": conv, "action": "remove", "user": "carol"}));
        assert_eq!(to(&out, "mq/in/carol/d")[0]["action"], "removed");
        let out = f.send("bob", msg("0a03zkqvpmqm2", &conv, "without carol"));
        assert!(to(&out, "mq/in/carol/d").is_empty(), "{out:?}");
        for packet in [
            msg("0a03zkqvpmqm3", &conv, "still here?"),
            json!({"type": "chat-state", "conv": conv, "state": "composing"}),
        ] {
            assert_eq!(f.refused("carol", packet.clone()), 7, "{packet}");
        }
        // Group events cannot be forged by anyone.
        let packet =
            json!({"type": "group-event", "conv": conv, "action": "joined", "user": "dave"});
        assert_eq!(f.refused("alice", packet), 4);
    }

    #[test]
    fn roles_ownership_profile_leave_and_delete() {
        let mut f = Fixture::new();
        let conv = team(&mut f);
        let admin = |action: &str, user: Option<&str>| {
            let mut p = json!({"type": "group-admin", "id": "0a03zkqvpmqb1", "conv": conv, "action": action});
            if let Some(u) = user {
                p["user"] = json!(u);
            }
            p
        };
        let mut next_id = 10;
        let mut send_admin = |f: &mut Fixture, who: &str, mut p: Value| {
            next_id += 1;
            p["id"] = json!(format!("0a03zkqvpmq{next_id}"));
            f.send(who, p)
        };
        let mut promote = admin("role", Some("bob"));
        promote["role"] = json!("admin");
        let out = send_admin(&mut f, "alice", promote);
        assert_eq!(to(&out, "mq/in/carol/d")[0]["action"], "role");
        // bob, now admin, invites dave; dave declines; bob invites erin; erin accepts.
        send_admin(&mut f, "bob", admin("invite", Some("dave")));
        let out = f.send(
            "dave",
            json!({"type": "group-join", "id": "0a03zkqvpmqd1", "conv": conv, "action": "decline"}),
        );
        assert_eq!(to(&out, "mq/in/dave/d")[0]["action"], "declined");
        let out = send_admin(&mut f, "bob", admin("invite", Some("erin")));
        assert_eq!(to(&out, "mq/in/erin/d")[0]["action"], "invited");
        let out = send_admin(&mut f, "bob", admin("invite", Some("erin")));
        assert_eq!(out[0].1["code"], 9, "already invited");
        // dave never was a member: his history is his invitation, not what followed it.
        let out = f.send(
            "dave",
            json!({"type": "history", "id": "0a03zkqvpmqh1", "conv": conv, "after": 0}),
        );
        let seen: Vec<(Value, Value)> = out[0].1["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| (e["action"].clone(), e["user"].clone()))
            .collect();
        assert_eq!(seen, [(json!("invited"), json!("dave"))]);
        // bob may not remove alice; alice transfers ownership to bob.
        let out = send_admin(&mut f, "bob", admin("remove", Some("alice")));
        assert_eq!(out[0].1["code"], 7);
        let leave =
            json!({"type": "group-join", "id": "0a03zkqvpmqd2", "conv": conv, "action": "leave"});
        assert_eq!(f.refused("alice", leave), 7, "the owner cannot just leave");
        send_admin(&mut f, "alice", admin("transfer", Some("bob")));
        let roster = info(&mut f, "carol", &conv);
        let role = |u: &str| {
            roster["members"]
                .as_array()
                .expect("m")
                .iter()
                .find(|m| m["user"] == u)
                .map(|m| m["role"].clone())
        };
        assert_eq!(
            (role("bob"), role("alice")),
            (Some(json!("owner")), Some(json!("admin")))
        );
        let mut rename = admin("update", None);
        rename["name"] = json!("Climbers");
        send_admin(&mut f, "alice", rename);
        assert_eq!(info(&mut f, "carol", &conv)["name"], "Climbers");
        let out = f.send(
            "carol",
            json!({"type": "group-join", "id": "0a03zkqvpmqd3", "conv": conv, "action": "leave"}),
        );
        assert_eq!(to(&out, "mq/in/carol/d")[0]["action"], "left");
        let out = send_admin(&mut f, "alice", admin("delete", None));
        assert_eq!(out[0].1["code"], 7, "only the owner deletes");
        let out = send_admin(&mut f, "bob", admin("delete", None));
        assert_eq!(to(&out, "mq/in/alice/d")[0]["action"], "deleted");
        assert_eq!(
            f.refused("alice", msg("0a03zkqvpmqm9", &conv, "anyone?")),
            8,
            "a deleted group is gone"
        );
    }

    #[test]
    fn resent_requests_are_answered_once_and_size_is_limited() {
        let mut f = Fixture::new();
        f.engine = Engine::new(HubConfig {
            max_group_members: 3,
            ..HubConfig::default()
        });
        let create = json!({"type": "group-create", "id": "0a03zkqvpmqg1", "name": "Small", "invite": ["bob"]});
        let first = f.send("alice", create.clone());
        let again = f.send("alice", create);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1["duplicate"], true);
        assert_eq!(
            again[0].1["conv"],
            first
                .iter()
                .find(|(t, _)| t.ends_with("/r/phone"))
                .expect("ack")
                .1["conv"]
        );
        let conv = again[0].1["conv"].as_str().expect("conv").to_owned();
        let invite = |u: &str, id: &str| json!({"type": "group-admin", "id": id, "conv": conv, "action": "invite", "user": u});
        let out = f.send("alice", invite("carol", "0a03zkqvpmqa1"));
        assert_eq!(out.last().expect("ack").1["type"], "ack");
        assert_eq!(
            f.refused("alice", invite("dave", "0a03zkqvpmqa2")),
            32,
            "group-full"
        );
        let too_many = json!({"type": "group-create", "id": "0a03zkqvpmqg2", "name": "Big", "invite": ["bob", "carol", "dave"]});
        assert_eq!(f.send("alice", too_many)[0].1["code"], 32);
    }

    #[test]
    fn sync_lists_groups_with_their_names() {
        let mut f = Fixture::new();
        let conv = team(&mut f);
        f.send("alice", msg("0a03zkqvpmqm1", &conv, "hi all"));
        let out = f.send("carol", json!({"type": "sync", "id": "0a03zkqvpmqs9"}));
        let entries = out[0].1["conversations"].as_array().expect("entries");
        let group = entries
            .iter()
            .find(|e| e["conv"] == conv.as_str())
            .expect("the group is listed");
        assert_eq!(
            (group["last"]["text"].as_str(), group["unread"].as_u64()),
            (Some("hi all"), Some(1))
        );
    }
}

mod push {
    use super::*;
    use mqchat_hub::Output;

    impl Hub {
        /// Sends one packet from `user:device` and returns the whole output.
        fn output(&mut self, user: &str, device: &str, packet: Value) -> Output {
            let batch = [self.upstream(format!("mq/up/{user}/{device}"), &packet)];
            self.process(&batch)
        }

        /// Sends a packet from `user:phone` that the hub must acknowledge.
        fn acked(&mut self, user: &str, packet: Value) {
            let out = self.output(user, "phone", packet);
            let reply = out.publishes.last().map(|o| self.show(o).1);
            assert_eq!(
                reply.as_ref().map(|r| &r["type"]),
                Some(&json!("ack")),
                "{reply:?}"
            );
        }

        fn add_devices(&mut self, devices: &[(&str, &str)]) {
            for (u, d) in devices {
                self.store
                    .add_device(&user(u), &device(d), 1)
                    .expect("device");
            }
        }

        fn presence(&mut self, user: &str, device: &str, availability: &str) {
            let presence =
                json!({"type": "presence", "availability": availability, "last-active": 1});
            let batch = [self.upstream(format!("mq/pr/{user}/{device}"), &presence)];
            self.process(&batch);
        }

        /// (user:device, conversation, seq, preview) of every push `packet` from alice causes.
        fn pushes(
            &mut self,
            from: &str,
            packet: Value,
        ) -> Vec<(String, String, u64, Option<String>)> {
            self.output(from, "phone", packet)
                .pushes
                .into_iter()
                .map(|p| {
                    (
                        format!("{}:{}", p.user, p.device),
                        p.conversation.to_string(),
                        p.seq,
                        p.preview,
                    )
                })
                .collect()
        }
    }

    fn register(preview: bool) -> Value {
        json!({"type": "push-register", "id": ID1, "provider": "fcm", "address": "tok-bob", "preview": preview})
    }

    #[test]
    fn pushes_go_to_devices_that_are_away_or_in_the_background() {
        let mut f = Fixture::new();
        f.add_devices(&[("alice", "phone"), ("bob", "phone"), ("bob", "laptop")]);
        f.acked("bob", register(false));
        // alice registers too: her own messages never wake her devices.
        f.acked("alice", json!({"type": "push-register", "id": ID1, "provider": "unified-push", "address": "https://up.example/a"}),
        );

        // bob's phone has never connected: one push, no text.
        assert_eq!(
            f.pushes("alice", msg(ID1, "bob", "Hi")),
            [("bob:phone".into(), "alice".into(), 1, None)]
        );
        // Connected and active (in the foreground): none. The laptop has no target.
        f.presence("bob", "phone", "available");
        assert!(
            f.pushes("alice", msg(ID2, "bob", "Still there?"))
                .is_empty()
        );
        // In the background: pushed again.
        f.acked(
            "bob",
            json!({"type": "client-state", "id": ID2, "active": false}),
        );
        assert_eq!(f.pushes("alice", msg(ID3, "bob", "Hello?")).len(), 1);
        // Reconnecting makes it active; going offline makes it pushable.
        f.presence("bob", "phone", "offline");
        f.presence("bob", "phone", "available");
        assert!(
            f.pushes("alice", msg("0a03zkqvpmqs4", "bob", "x"))
                .is_empty()
        );
        f.presence("bob", "phone", "offline");

        // Previews only when the device asked for them.
        f.acked("bob", register(true));
        assert_eq!(
            f.pushes("alice", msg("0a03zkqvpmqs5", "bob", "Lunch?")),
            [("bob:phone".into(), "alice".into(), 5, Some("Lunch?".into()))]
        );

        // Muted until later: nothing; the mute shows in bob's sync; unmuted: pushed again.
        f.acked(
            "bob",
            json!({"type": "mute", "id": ID3, "conv": "alice", "until": 9_007_199_254_740_991_u64}),
        );
        assert!(
            f.pushes("alice", msg("0a03zkqvpmqs6", "bob", "muted"))
                .is_empty()
        );
        let sync = f.send("bob", json!({"type": "sync", "id": ID1}));
        assert_eq!(
            sync[0].1["conversations"][0]["muted-until"],
            json!(9_007_199_254_740_991_u64)
        );
        f.acked(
            "bob",
            json!({"type": "mute", "id": ID3, "conv": "alice", "until": 0}),
        );
        assert_eq!(
            f.pushes("alice", msg("0a03zkqvpmqs7", "bob", "back")).len(),
            1
        );

        // Markers and chat states never push.
        assert!(
            f.pushes("alice", json!({"type": "read", "conv": "bob", "up-to": 1}))
                .is_empty()
        );

        // Unregistered: nothing.
        f.acked("bob", json!({"type": "push-unregister", "id": ID2}));
        assert!(
            f.pushes("alice", msg("0a03zkqvpmqs8", "bob", "gone"))
                .is_empty()
        );
    }

    #[test]
    fn contact_requests_and_invitations_push_other_group_events_do_not() {
        let mut f = Fixture::new();
        f.add_devices(&[("alice", "phone"), ("bob", "phone"), ("carol", "phone")]);
        f.acked("bob", register(false));
        f.acked(
            "carol",
            json!({"type": "push-register", "id": ID1, "provider": "fcm", "address": "tok-carol"}),
        );
        assert_eq!(
            f.pushes(
                "alice",
                json!({"type": "contact", "id": ID1, "conv": "bob", "action": "request"})
            ),
            [("bob:phone".into(), "alice".into(), 1, None)]
        );
        // bob's acceptance does not wake alice (no target) nor bob.
        assert!(
            f.pushes(
                "bob",
                json!({"type": "contact", "id": ID2, "conv": "alice", "action": "accept"})
            )
            .is_empty()
        );
        // A group with bob invited: bob is woken by his invitation, carol by hers.
        let out = f.output(
            "alice",
            "phone",
            json!({"type": "group-create", "id": ID3, "name": "Climbing", "invite": ["bob", "carol"]}),
        );
        let mut woken: Vec<String> = out.pushes.iter().map(|p| p.user.to_string()).collect();
        woken.sort();
        assert_eq!(woken, ["bob", "carol"]);
        let gid = out.pushes[0].conversation.to_string();
        // bob joins: no push for that; a message to the group wakes bob (member), not carol
        // (only invited).
        assert!(
            f.pushes(
                "bob",
                json!({"type": "group-join", "id": ID1, "conv": gid, "action": "accept"})
            )
            .is_empty()
        );
        let pushes = f.pushes("alice", msg("0a03zkqvpmqs9", &gid, "Sunday?"));
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].0, "bob:phone");
        assert_eq!(pushes[0].1, gid);

        // A revoked device is never pushed.
        f.acked(
            "bob",
            json!({"type": "device-revoke", "id": ID2, "device-id": "phone"}),
        );
        assert!(
            f.pushes("alice", msg("0a03zkqvpmqsa", &gid, "anyone?"))
                .is_empty()
        );
    }
}
