//! The security suite (issue 15): attacks on `mqchat serve` through MQTT clients (rumqttc,
//! and raw sockets where a client library would not misbehave on purpose), each checking
//! that nothing reaches the victim, nothing is stored that should not be, bystanders are
//! unaffected and memory stays bounded.
//!
//! Negative checks never sleep: after an attack, a legitimate packet follows the same way,
//! and once it has arrived, anything the attack had let through would have arrived first.

mod common;

use std::time::Instant;

use common::{Device, WAIT, attempt, raw_connect, server_with};
use mqchat_testkit::TestServer;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, Incoming};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Message ids `0a03zkqvpm` followed by three base-32 digits of `n`.
fn id(n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let tail: String = [n >> 10, n >> 5, n]
        .iter()
        .map(|d| DIGITS[(d & 31) as usize] as char)
        .collect();
    format!("0a03zkqvpm{tail}")
}

#[tokio::test]
async fn new_device_ids_beyond_the_cap_are_refused_at_connect() {
    let server = server_with(|c| c.limits.max_devices_per_user = 3).await;
    for device in ["a", "b", "c"] {
        assert_eq!(attempt(&server, "mallory", device, "pw").await, Ok(()));
    }
    assert_eq!(
        attempt(&server, "mallory", "d", "pw").await,
        Err(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        attempt(&server, "mallory", "a", "pw").await,
        Ok(()),
        "a known device still logs in"
    );
    server.revoke_device("mallory", "b").await.expect("revoke");
    assert_eq!(attempt(&server, "mallory", "d", "pw").await, Ok(()));
    server.stop().await;
}

/// A connection that sends nothing, one byte, or the first bytes of a CONNECT (up to the
/// protocol level) and then stops is closed at the connect timeout; a device whose session
/// is older than the timeout is not.
#[tokio::test]
async fn a_connect_that_stops_early_is_closed() {
    let server = server_with(|c| c.limits.connect_timeout_secs = 1).await;
    let mut bystander = Device::login(&server, "bob", "phone").await;
    // A CONNECT's fixed header, protocol name and level.
    let start = [0x10, 20, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04];
    let mut sockets = Vec::new();
    for sent in [0, 1, start.len()] {
        for _ in 0..20 {
            let mut socket = tokio::net::TcpStream::connect(server.tcp_addr())
                .await
                .expect("connect");
            socket
                .write_all(&start[..sent])
                .await
                .expect("part of a CONNECT");
            sockets.push((sent, socket));
        }
    }
    for (sent, mut socket) in sockets {
        let mut byte = [0u8; 8];
        let read = tokio::time::timeout(WAIT, socket.read(&mut byte))
            .await
            .unwrap_or_else(|_| panic!("a socket that sent {sent} bytes is still open"));
        assert!(matches!(read, Ok(0) | Ok(4) | Err(_)), "closed: {read:?}");
    }
    assert!(bystander.subscribe("mq/pf/+").await, "the session lives on");
    assert_eq!(attempt(&server, "alice", "phone", "pw").await, Ok(()));
    server.stop().await;
}

#[tokio::test]
async fn the_internal_listener_refuses_devices() {
    let server = server_with(|_| {}).await;
    let internal = server.internal_addr();
    let code = raw_connect(internal.ip(), internal, "alice", "phone", "pw").await;
    assert_eq!(code, 5, "not authorized, with the right password");
    let token = server.add_device_token("alice", "tablet").expect("token");
    let code = raw_connect(internal.ip(), internal, "alice", "tablet", &token).await;
    assert_eq!(code, 5, "not authorized, with a device token");
    server.stop().await;
}

#[tokio::test]
async fn presence_and_subscriptions_are_bounded() {
    let server = server_with(|c| {
        c.limits.max_presence_bytes = 1000;
        c.limits.max_subscriptions = 8;
    })
    .await;
    let mut mallory = Device::login(&server, "mallory", "phone").await;
    mallory.inbox("mallory", "phone").await;
    // A presence with an unknown key holding 5,000 bytes: {0: 6, 8: 1, 999: h'0707…'}.
    let mut big = vec![
        0xa3, 0x00, 0x06, 0x08, 0x01, 0x19, 0x03, 0xe7, 0x59, 0x13, 0x88,
    ];
    big.extend(std::iter::repeat_n(7u8, 5000));
    assert!(big.len() > 5000);
    assert!(
        !mallory.publish_raw("mq/pr/mallory/phone", big, true).await,
        "refused"
    );
    // A small presence nested deeper than spec 5 allows: {0: 6, 8: 1, 999: [[[…0…]]]}.
    let mut deep = vec![0xa3, 0x00, 0x06, 0x08, 0x01, 0x19, 0x03, 0xe7];
    deep.extend(std::iter::repeat_n(0x81u8, 40));
    deep.push(0x00);
    assert!(
        !mallory.publish_raw("mq/pr/mallory/phone", deep, true).await,
        "too deep"
    );
    let small = mallory
        .registry
        .from_json(&json!({"type": "presence", "availability": "away"}))
        .expect("presence")
        .encode();
    assert!(
        mallory
            .publish_raw("mq/pr/mallory/phone", small, true)
            .await
    );
    // A new reader of mallory's presence finds only the small one retained.
    let mut tablet = Device::login(&server, "mallory", "tablet").await;
    assert!(tablet.subscribe("mq/pr/mallory/+").await);
    let (topic, presence) = tablet.receive().await;
    assert_eq!(
        (topic.as_str(), presence["availability"].as_str()),
        ("mq/pr/mallory/phone", Some("away"))
    );
    // Subscriptions: three for the inbox, then up to eight in all.
    for i in 0..5 {
        assert!(mallory.subscribe(&format!("mq/pr/mallory/x{i}")).await);
    }
    // Spec 3: the ninth is refused (0x80: rmqtt 0.24 has no 0x97 here), a foreign inbox as
    // not authorized, and the connection stays.
    assert_eq!(
        mallory.suback("mq/pr/mallory/x5").await,
        SubscribeReasonCode::Unspecified,
        "the ninth subscription is refused"
    );
    assert!(
        mallory.unsubscribe("mq/pr/mallory/x4").await,
        "still connected"
    );
    assert_eq!(
        mallory.suback("mq/in/bob/d").await,
        SubscribeReasonCode::NotAuthorized
    );
    assert!(mallory.subscribe("mq/pr/mallory/x5").await);
    server.stop().await;
}

/// Waits for the answer to the packet `id` that `device` sent: its own copy on the
/// durable inbox, an ack or an error on its reply topic.
async fn answer(device: &mut Device, id: &str) -> Value {
    loop {
        let (_, packet) = device.receive().await;
        if packet["id"] == id {
            return packet;
        }
    }
}

#[tokio::test]
async fn contact_requests_and_group_invitations_are_limited_per_hour() {
    let server = server_with(|c| {
        c.limits.contact_requests_per_hour = 3;
        c.limits.group_invitations_per_hour = 4;
    })
    .await;
    let mut mallory = Device::login(&server, "mallory", "phone").await;
    mallory.inbox("mallory", "phone").await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    let mut n = 0;
    let mut next = || {
        n += 1;
        id(n)
    };
    let mut requests = 0;
    for round in 0..4 {
        let request = next();
        assert!(
            mallory
                .publish(
                    "mq/up/mallory/phone",
                    json!({"type": "contact", "id": request, "conv": "bob", "action": "request"})
                )
                .await
        );
        let reply = answer(&mut mallory, &request).await;
        if round < 3 {
            assert_eq!(reply["type"], "contact", "request {round} stored: {reply}");
            requests += 1;
            let cancel = next();
            assert!(
                mallory
                    .publish(
                        "mq/up/mallory/phone",
                        json!({"type": "contact", "id": cancel, "conv": "bob", "action": "cancel"})
                    )
                    .await
            );
            assert_eq!(answer(&mut mallory, &cancel).await["type"], "contact");
        } else {
            assert_eq!(
                (reply["type"].as_str(), reply["code"].as_u64()),
                (Some("error"), Some(10)),
                "rate-limited: {reply}"
            );
            assert_eq!(reply["conv"], "bob", "the error names the conversation");
        }
    }
    // Bob saw three requests and three cancellations, nothing of the fourth: a message
    // from alice after it arrives next.
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    let sentinel = next();
    assert!(
        alice
            .publish(
                "mq/up/alice/phone",
                json!({"type": "message", "id": sentinel, "conv": "bob", "text": "after"})
            )
            .await
    );
    let mut seen = Vec::new();
    loop {
        let (_, packet) = bob.receive().await;
        if packet["text"] == "after" {
            break;
        }
        seen.push(packet["action"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(seen.iter().filter(|a| *a == "request").count(), requests);
    assert_eq!(seen.len(), 6, "{seen:?}");

    // Invitations: a group with three, then one more is fine, the next is not.
    let create = next();
    assert!(mallory.publish("mq/up/mallory/phone", json!({"type": "group-create", "id": create, "name": "Spam", "invite": ["bob", "carol", "alice"]})).await);
    let created = answer(&mut mallory, &create).await;
    assert_eq!(created["action"], "created", "{created}");
    let create = next();
    assert!(mallory.publish("mq/up/mallory/phone", json!({"type": "group-create", "id": create, "name": "More", "invite": ["bob", "carol"]})).await);
    let refused = answer(&mut mallory, &create).await;
    assert_eq!(refused["code"], 10, "{refused}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_flood_is_rate_limited_and_bystanders_lose_nothing() {
    let server = server_with(|c| {
        c.limits.device_packets_per_sec = 20;
        c.limits.device_packets_burst = 50;
    })
    .await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    let mut carol = Device::login(&server, "carol", "phone").await;
    carol.inbox("carol", "phone").await;
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;

    // Mallory floods bob with 600 messages as fast as her client sends them (the broker
    // paces her at four times her rate after the burst).
    const FLOOD: u32 = 600;
    let mut options = Device::options(&server, "mallory", "phone", "pw");
    options.set_outgoing_inflight_upper_limit(200);
    let (client, mut eventloop) = AsyncClient::new(options, 2_000);
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let registry = mqchat_proto::Registry::with_core();
        client
            .subscribe("mq/in/mallory/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        for n in 0..FLOOD {
            let packet = registry
                .from_json(
                    &json!({"type": "message", "id": id(n + 1), "conv": "bob", "text": "spam"}),
                )
                .expect("packet");
            client
                .publish(
                    "mq/up/mallory/phone",
                    QoS::AtLeastOnce,
                    false,
                    packet.encode(),
                )
                .await
                .expect("queue");
        }
        client
    });
    // Mallory's answers: her own copies (stored) and rate-limited errors.
    let (mut stored, mut limited) = (0u32, 0u32);
    let mut other_errors = Vec::new();
    let answers = tokio::spawn(async move {
        while stored + limited + (other_errors.len() as u32) < FLOOD {
            let event = tokio::time::timeout(WAIT, eventloop.poll())
                .await
                .expect("answers keep coming")
                .expect("connection");
            if let Event::Incoming(Incoming::Publish(p)) = event {
                let packet = mqchat_proto::Packet::decode(&p.payload).expect("packet");
                match mqchat_proto::Registry::with_core().to_json(&packet) {
                    v if v["type"] == "message" => stored += 1,
                    v if v["type"] == "error" && v["code"] == 10 => limited += 1,
                    v => other_errors.push(v),
                }
            }
        }
        (stored, limited, other_errors)
    });

    // Meanwhile alice and carol talk.
    for n in 0..20 {
        let message = json!({"type": "message", "id": id(5_000 + n), "conv": "carol", "text": format!("hello {n}")});
        assert!(alice.publish("mq/up/alice/phone", message).await);
    }
    let _client = flood.await.expect("flood");
    let (stored, limited, other) = answers.await.expect("answers");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(other.is_empty(), "{other:?}");
    assert!(limited > 0);
    let allowed = 50.0 + 20.0 * elapsed + 2.0;
    assert!(
        f64::from(stored) <= allowed,
        "{stored} stored in {elapsed:.1} s, at most {allowed:.0} allowed"
    );
    // Carol got all 20, in order.
    let mut texts = Vec::new();
    while texts.len() < 20 {
        let (_, packet) = carol.receive().await;
        if packet["type"] == "message" {
            texts.push(packet["text"].as_str().unwrap_or_default().to_owned());
        }
    }
    let expected: Vec<String> = (0..20).map(|n| format!("hello {n}")).collect();
    assert_eq!(texts, expected);
    // Bob got exactly what was stored of the flood: a message from alice comes after it.
    let sentinel = id(6_000);
    assert!(
        alice
            .publish(
                "mq/up/alice/phone",
                json!({"type": "message", "id": sentinel, "conv": "bob", "text": "after"})
            )
            .await
    );
    let mut from_mallory = 0;
    loop {
        let (_, packet) = bob.receive().await;
        if packet["text"] == "after" {
            break;
        }
        if packet["conv"] == "mallory" && packet["type"] == "message" {
            from_mallory += 1;
        }
    }
    assert_eq!(from_mallory, stored);
    server.stop().await;
}

/// Waits until `device`'s connection is closed by the server.
async fn closed(device: &mut Device) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, device.eventloop.poll()).await {
            Err(_) => panic!("still connected after {WAIT:?}"),
            Ok(Err(_)) => return,
            Ok(Ok(Event::Incoming(Incoming::Disconnect(_)))) => return,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn administration_ends_live_sessions_at_once() {
    let server = server_with(|_| {}).await;
    // Disabling alice closes both of her devices.
    let mut phone = Device::login(&server, "alice", "phone").await;
    let mut laptop = Device::login(&server, "alice", "laptop").await;
    server.disable_user("alice").expect("disable");
    closed(&mut phone).await;
    closed(&mut laptop).await;
    assert_eq!(
        attempt(&server, "alice", "phone", "pw").await,
        Err(ConnectReturnCode::NotAuthorized)
    );
    // Only a holder of the right password learns that the account is disabled.
    assert_eq!(
        attempt(&server, "alice", "phone", "wrong").await,
        Err(ConnectReturnCode::BadUserNamePassword)
    );

    // Revoking bob's tablet closes it and leaves his phone.
    let mut bob_phone = Device::login(&server, "bob", "phone").await;
    let mut bob_tablet = Device::login(&server, "bob", "tablet").await;
    server
        .revoke_device_in_store("bob", "tablet")
        .expect("revoke");
    closed(&mut bob_tablet).await;
    bob_phone.inbox("bob", "phone").await;

    // A new password closes carol's password session, not her device-token session.
    let token = server.add_device_token("carol", "watch").expect("token");
    let mut with_password = Device::login(&server, "carol", "phone").await;
    let mut with_token = Device::connect(Device::options(&server, "carol", "watch", &token))
        .await
        .expect("token login");
    server.set_password("carol", "new secret").expect("passwd");
    closed(&mut with_password).await;
    with_token.inbox("carol", "watch").await;
    assert_eq!(
        attempt(&server, "carol", "phone", "pw").await,
        Err(ConnectReturnCode::BadUserNamePassword)
    );

    // Deleting mallory closes her session.
    let mut mallory = Device::login(&server, "mallory", "phone").await;
    server.delete_user("mallory").expect("delete");
    closed(&mut mallory).await;
    server.stop().await;
}

#[tokio::test]
async fn presence_stops_when_a_contact_is_removed_also_in_a_resumed_session() {
    let server = server_with(|_| {}).await;
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    let bob_options = || {
        let mut options = Device::options(&server, "bob", "phone", "pw");
        options
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3_600));
        options
    };
    let mut bob = Device::connect(bob_options()).await.expect("bob");
    bob.inbox("bob", "phone").await;
    let mut carol = Device::login(&server, "carol", "phone").await;
    carol.inbox("carol", "phone").await;
    // Bob is a contact of alice and of carol.
    let mut n = 0;
    let mut next = || {
        n += 1;
        id(n)
    };
    for (asker, asker_name) in [(&mut alice, "alice"), (&mut carol, "carol")] {
        let request = next();
        assert!(
            asker
                .publish(
                    &format!("mq/up/{asker_name}/phone"),
                    json!({"type": "contact", "id": request, "conv": "bob", "action": "request"})
                )
                .await
        );
        answer(asker, &request).await;
        let accept = next();
        assert!(
            bob.publish(
                "mq/up/bob/phone",
                json!({"type": "contact", "id": accept, "conv": asker_name, "action": "accept"})
            )
            .await
        );
        answer(&mut bob, &accept).await;
    }
    assert!(bob.subscribe("mq/pr/alice/+").await);
    assert!(bob.subscribe("mq/pr/carol/+").await);
    let presence = |availability: &str| {
        mqchat_proto::Registry::with_core()
            .from_json(&json!({"type": "presence", "availability": availability}))
            .expect("presence")
            .encode()
    };
    assert!(
        alice
            .publish_raw("mq/pr/alice/phone", presence("available"), false)
            .await
    );
    let (topic, _) = next_presence(&mut bob).await;
    assert_eq!(topic, "mq/pr/alice/phone", "contacts see presence");

    // Alice removes bob.
    let remove = next();
    assert!(
        alice
            .publish(
                "mq/up/alice/phone",
                json!({"type": "contact", "id": remove, "conv": "bob", "action": "remove"})
            )
            .await
    );
    answer(&mut alice, &remove).await;
    loop {
        let (_, packet) = bob.receive().await;
        if packet["action"] == "remove" {
            break;
        }
    }
    // Once bob has seen the removal, alice's presence no longer reaches him: carol's,
    // published after, is the next presence he gets.
    assert!(
        alice
            .publish_raw("mq/pr/alice/phone", presence("away"), false)
            .await
    );
    assert!(
        carol
            .publish_raw("mq/pr/carol/phone", presence("busy"), false)
            .await
    );
    assert_eq!(next_presence(&mut bob).await.0, "mq/pr/carol/phone");

    // The same after bob resumes his persistent session.
    drop(bob);
    let mut bob = Device::connect(bob_options()).await.expect("bob again");
    assert!(
        alice
            .publish_raw("mq/pr/alice/phone", presence("busy"), false)
            .await
    );
    assert!(
        carol
            .publish_raw("mq/pr/carol/phone", presence("away"), false)
            .await
    );
    assert_eq!(next_presence(&mut bob).await.0, "mq/pr/carol/phone");
    assert!(
        !bob.subscribe("mq/pr/alice/+").await,
        "and he may not subscribe again"
    );
    server.stop().await;
}

async fn next_presence(device: &mut Device) -> (String, Value) {
    loop {
        let (topic, packet) = device.receive().await;
        if topic.contains("/pr/") {
            return (topic, packet);
        }
    }
}

/// A connection made by hand (MQTT 3.1.1 or 5), logged in as mallory: for packets a client
/// library would not send.
async fn raw_session(server: &TestServer, v5: bool) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(server.tcp_addr())
        .await
        .expect("connect");
    let field = |s: &str| {
        let mut out = (s.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    };
    let mut body = field("MQTT");
    body.extend_from_slice(&[if v5 { 5 } else { 4 }, 0xC2, 0, 60]);
    if v5 {
        body.push(0); // no properties
    }
    body.extend(field("mallory:raw"));
    body.extend(field("mallory"));
    body.extend(field("pw"));
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    stream.write_all(&packet).await.expect("write");
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.expect("CONNACK");
    let mut rest = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut rest).await.expect("CONNACK");
    assert_eq!((head[0], rest[1]), (0x20, 0), "accepted");
    stream
}

/// A QoS 1 PUBLISH by hand, with a topic alias property (MQTT 5) if given.
fn raw_publish(topic: &[u8], alias: Option<u16>, v5: bool) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic);
    body.extend_from_slice(&[0, 1]); // packet id
    if v5 {
        match alias {
            Some(alias) => {
                body.extend_from_slice(&[3, 0x23]);
                body.extend_from_slice(&alias.to_be_bytes());
            }
            None => body.push(0),
        }
    }
    // {0: 1, 2: "bob", 8: "x"}: not a valid message (no id), refused by the hub, which is
    // enough to tell a PUBACK from a closed connection.
    body.extend_from_slice(&[
        0xa3, 0x00, 0x01, 0x02, 0x63, b'b', b'o', b'b', 0x08, 0x61, b'x',
    ]);
    let mut packet = vec![0x32, body.len() as u8];
    packet.extend(body);
    packet
}

/// What the server answered: the first byte of its next packet, `None` if it closed the
/// connection (a DISCONNECT before the close counts as closing).
async fn next_packet_type(stream: &mut tokio::net::TcpStream) -> Option<u8> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(WAIT, stream.read(&mut byte))
        .await
        .expect("an answer in time")
    {
        Ok(0) | Err(_) => None,
        Ok(_) if byte[0] == 0xE0 => None,
        Ok(_) => Some(byte[0]),
    }
}

#[tokio::test]
async fn publishes_that_break_mqtt_close_the_connection() {
    let server = server_with(|_| {}).await;
    for v5 in [false, true] {
        let mut ok = raw_session(&server, v5).await;
        ok.write_all(&raw_publish(b"mq/up/mallory/raw", None, v5))
            .await
            .expect("write");
        assert_eq!(next_packet_type(&mut ok).await, Some(0x40), "a PUBACK");
        for topic in [
            &b"mq/up/mallory/r+w"[..],
            b"mq/up/mallory/#",
            b"mq/up/mallory/r\0w",
        ] {
            let mut bad = raw_session(&server, v5).await;
            bad.write_all(&raw_publish(topic, None, v5))
                .await
                .expect("write");
            assert_eq!(
                next_packet_type(&mut bad).await,
                None,
                "closed after {:?} (v5: {v5})",
                String::from_utf8_lossy(topic)
            );
        }
    }
    let mut aliased = raw_session(&server, true).await;
    aliased
        .write_all(&raw_publish(b"mq/up/mallory/raw", Some(17), true))
        .await
        .expect("write");
    assert_eq!(
        next_packet_type(&mut aliased).await,
        None,
        "a topic alias above the 16 granted closes the connection"
    );
    let mut aliased = raw_session(&server, true).await;
    aliased
        .write_all(&raw_publish(b"mq/up/mallory/raw", Some(16), true))
        .await
        .expect("write");
    assert_eq!(next_packet_type(&mut aliased).await, Some(0x40));
    server.stop().await;
}

#[tokio::test]
async fn refused_packets_count_against_the_rate_too() {
    let server = server_with(|c| {
        c.limits.device_packets_per_sec = 1;
        c.limits.device_packets_burst = 5;
    })
    .await;
    let mut mallory = Device::login(&server, "mallory", "phone").await;
    mallory.inbox("mallory", "phone").await;
    for _ in 0..10 {
        assert!(
            mallory
                .publish_raw("mq/up/mallory/phone", vec![0xff, 0x00], false)
                .await
        );
    }
    let mut codes = Vec::new();
    while codes.len() < 10 {
        let (topic, packet) = mallory.receive().await;
        assert_eq!(topic, "mq/in/mallory/r/phone");
        codes.push(packet["code"].as_u64().unwrap_or_default());
    }
    // The burst answers `malformed`; beyond it, `rate-limited` (one more `malformed` may
    // pass as the bucket refills while the broker paces mallory).
    assert_eq!(codes[..5], [1, 1, 1, 1, 1], "{codes:?}");
    assert!(
        codes[5..].iter().filter(|c| **c == 10).count() >= 3
            && codes.iter().all(|c| *c == 1 || *c == 10),
        "malformed, then rate-limited: {codes:?}"
    );
    server.stop().await;
}
