//! The server through plain MQTT clients (rumqttc used directly, not the SDK): the
//! end-to-end path, and the attacks the broker's ACL and the hub must refuse.
//!
//! Negative checks never sleep: after an attack, the attacker sends a legitimate message to
//! the same victim through the same hub; the hub processes in order, so when the victim has
//! received the legitimate one, anything the attack had let through would have arrived first.

mod common;

use common::{Device, WAIT};

use mqchat_proto::body::{Body, Message};
use mqchat_proto::{Packet, Registry};
use mqchat_testkit::TestServer;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, Incoming, MqttOptions};
use serde_json::{Value, json};

fn hi(id: &str, to: &str, text: &str) -> Value {
    json!({"type": "message", "id": id, "conv": to, "text": text})
}

async fn server_with_users() -> TestServer {
    let server = TestServer::start().await.expect("server");
    for user in ["alice", "bob", "mallory"] {
        server.add_user(user, "pw").expect("user");
    }
    server
}

#[tokio::test]
async fn message_round_trip_through_the_real_broker() {
    let server = server_with_users().await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    assert!(
        alice
            .publish("mq/up/alice/phone", hi("0a03zkqvpmqs1", "bob", "Hi"))
            .await
    );
    let (topic, got) = bob.receive().await;
    assert_eq!(topic, "mq/in/bob/d");
    assert_eq!(
        (
            got["text"].as_str(),
            got["conv"].as_str(),
            got["seq"].as_u64()
        ),
        (Some("Hi"), Some("alice"), Some(1))
    );
    let (topic, own) = alice.receive().await;
    assert_eq!(
        (topic.as_str(), own["id"].as_str(), own["device"].as_str()),
        ("mq/in/alice/d", Some("0a03zkqvpmqs1"), Some("phone"))
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_foreign_client_ids_are_refused() {
    let server = server_with_users().await;
    let refused = |r: Result<Device, ConnectionError>| match r {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected"),
    };
    let code = refused(Device::connect(Device::options(&server, "alice", "phone", "wrong")).await);
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let code = refused(Device::connect(Device::options(&server, "nobody", "phone", "pw")).await);
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let mut spoof = Device::options(&server, "mallory", "phone", "pw");
    spoof.set_client_id("alice:phone".into());
    assert_eq!(
        refused(Device::connect(spoof).await),
        ConnectReturnCode::NotAuthorized
    );
    // The hub's account is not usable on a device listener at all, whatever the secret.
    let mut hub = Device::options(&server, "_hub", "x", "guess");
    hub.set_client_id("_hub-2".into());
    assert_eq!(
        refused(Device::connect(hub).await),
        ConnectReturnCode::NotAuthorized
    );
    server.stop().await;
}

/// The broker publishes a will without the publish check, so its topic is checked at
/// CONNECT: a will on another user's upstream topic would otherwise become a message from
/// that user when the connection drops, and one on an inbox a forged delivery.
#[tokio::test]
async fn a_will_where_the_device_may_not_publish_is_refused_at_connect() {
    let server = server_with_users().await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    let forged = Registry::with_core()
        .from_json(&hi("0a03zkqvpmqs1", "bob", "sent by the will"))
        .expect("valid")
        .encode();
    for topic in [
        "mq/up/alice/phone",
        "mq/in/bob/d",
        "mq/pr/alice/phone",
        "mq/up/mallory",
    ] {
        let mut options = Device::options(&server, "mallory", "phone", "pw");
        options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
            topic,
            forged.clone(),
            QoS::AtLeastOnce,
            false,
            None,
        ));
        match Device::connect(options).await {
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized, "will on {topic}");
            }
            Err(e) => panic!("will on {topic}: unexpected error {e}"),
            Ok(_) => panic!("will on {topic}: connected"),
        }
    }
    // Her own upstream topic is hers to publish on, so a will there is a message from her
    // (sent when the connection drops), and it reaches bob like any other.
    let mut options = Device::options(&server, "mallory", "phone", "pw");
    options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "mq/up/mallory/phone",
        Registry::with_core()
            .from_json(&hi("0a03zkqvpmqs2", "bob", "her own will"))
            .expect("valid")
            .encode(),
        QoS::AtLeastOnce,
        false,
        None,
    ));
    let mallory = Device::connect(options).await.expect("own will accepted");
    drop(mallory);
    let (topic, got) = bob.receive().await;
    assert_eq!(topic, "mq/in/bob/d");
    assert_eq!(
        (got["conv"].as_str(), got["text"].as_str()),
        (Some("mallory"), Some("her own will"))
    );
    server.stop().await;
}

#[tokio::test]
async fn spoofing_and_snooping_are_denied_and_reach_no_one() {
    let server = server_with_users().await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    let mut mallory = Device::login(&server, "mallory", "phone").await;
    mallory.inbox("mallory", "phone").await;

    // Publishing as another user or device, or where only the hub writes.
    for topic in [
        "mq/up/alice/phone",
        "mq/up/mallory/laptop",
        "mq/in/bob/d",
        "mq/in/bob/r/phone",
    ] {
        assert!(
            !mallory
                .publish(topic, hi("0a03zkqvpmqs1", "bob", "spoofed"))
                .await,
            "publish to {topic}"
        );
    }
    // Another user's presence and profile, and retained messages on upstream.
    let presence = mallory
        .registry
        .from_json(&json!({"type": "presence", "availability": "available"}))
        .expect("valid")
        .encode();
    assert!(
        !mallory
            .publish_raw("mq/pr/bob/phone", presence.clone(), true)
            .await
    );
    assert!(
        !mallory
            .publish_raw("mq/pf/bob", presence.clone(), true)
            .await
    );
    assert!(!mallory.publish_raw("mq/pf/mallory", presence, true).await);
    let payload = mallory
        .registry
        .from_json(&hi("0a03zkqvpmqs2", "bob", "retained"))
        .expect("valid")
        .encode();
    assert!(
        !mallory
            .publish_raw("mq/up/mallory/phone", payload, true)
            .await
    );

    // Reading other users' traffic.
    for filter in [
        "mq/in/bob/d",
        "mq/in/bob/#",
        "mq/in/+/d",
        "#",
        "mq/#",
        "mq/up/+/+",
        "$share/x/mq/up/+/+",
        "mq/pr/bob/+",
        "mq/pr/+/+",
    ] {
        assert!(!mallory.subscribe(filter).await, "subscribe to {filter}");
    }
    assert!(mallory.subscribe("mq/pf/+").await, "profiles are public");

    // The barrier: a legitimate message to bob arrives, and it is the first thing he gets.
    assert!(
        mallory
            .publish("mq/up/mallory/phone", hi("0a03zkqvpmqs3", "bob", "legit"))
            .await
    );
    let (_, got) = bob.receive().await;
    assert_eq!(got["text"], "legit");
    assert_eq!(got["seq"], 1, "nothing else was stored in the conversation");
    server.stop().await;
}

#[tokio::test]
async fn bad_payloads_get_error_replies_and_harm_no_one() {
    let server = server_with_users().await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    let mut mallory = Device::login(&server, "mallory", "phone").await;
    mallory.inbox("mallory", "phone").await;

    assert!(
        mallory
            .publish_raw("mq/up/mallory/phone", vec![0xff, 0x00], false)
            .await
    );
    let (topic, err) = mallory.receive().await;
    assert_eq!(
        (topic.as_str(), err["type"].as_str(), err["code"].as_u64()),
        ("mq/in/mallory/r/phone", Some("error"), Some(1))
    );

    let big = Message::text("x".repeat(70_000));
    let mut packet = big.to_packet();
    packet.id = mqchat_proto::MessageId::new(5).ok();
    packet.conv = mqchat_proto::ConversationRef::parse("bob").ok();
    assert!(
        mallory
            .publish_raw("mq/up/mallory/phone", packet.encode(), false)
            .await
    );
    let (_, err) = mallory.receive().await;
    assert_eq!(err["code"], 3, "too large");

    assert!(
        mallory
            .publish(
                "mq/up/mallory/phone",
                json!({"type": "message", "id": "0a03zkqvpmqs4", "conv": "bob"})
            )
            .await
    );
    let (_, err) = mallory.receive().await;
    assert_eq!(
        (err["code"].as_u64(), err["id"].as_str()),
        (Some(2), Some("0a03zkqvpmqs4"))
    );

    assert!(
        mallory
            .publish(
                "mq/up/mallory/phone",
                hi("0a03zkqvpmqs5", "bob", "after the garbage")
            )
            .await
    );
    let (_, got) = bob.receive().await;
    assert_eq!(got["text"], "after the garbage");
    server.stop().await;
}

#[tokio::test]
async fn presence_needs_an_accepted_contact_and_the_will_marks_offline() {
    let server = server_with_users().await;
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    assert!(!alice.subscribe("mq/pr/bob/+").await, "not a contact yet");
    assert!(alice.publish("mq/up/alice/phone", json!({"type": "contact", "id": "0a03zkqvpmqs1", "conv": "bob", "action": "request"})).await);
    let (_, request) = bob.receive().await;
    assert_eq!(request["action"], "request");
    assert!(
        bob.publish(
            "mq/up/bob/phone",
            json!({"type": "contact", "id": "0a03zkqvpmqs1", "conv": "alice", "action": "accept"})
        )
        .await
    );
    let (_, accepted) = alice.receive().await;
    assert_eq!(
        accepted["action"], "request",
        "her own copy of the request came first"
    );
    let (_, accepted) = alice.receive().await;
    assert_eq!(accepted["action"], "accept");

    // Carol's phone with a will, connecting as bob's second device.
    let mut options = Device::options(&server, "bob", "tablet", "pw");
    let will = Registry::with_core()
        .from_json(&json!({"type": "presence", "availability": "offline"}))
        .expect("valid")
        .encode();
    options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "mq/pr/bob/tablet",
        will,
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let mut tablet = Device::connect(options).await.expect("tablet");
    let online = Registry::with_core()
        .from_json(&json!({"type": "presence", "availability": "available"}))
        .expect("valid")
        .encode();
    assert!(tablet.publish_raw("mq/pr/bob/tablet", online, true).await);

    assert!(
        alice.subscribe("mq/pr/bob/+").await,
        "contacts may see presence"
    );
    let (topic, presence) = alice.receive().await;
    assert_eq!(
        (topic.as_str(), presence["availability"].as_str()),
        ("mq/pr/bob/tablet", Some("available"))
    );
    // Abrupt drop: the broker publishes the will, the hub stamps it with last-seen.
    drop(tablet);
    let (_, will) = alice.receive().await;
    assert_eq!(will["availability"], "offline");
    let (_, stamped) = alice.receive().await;
    assert_eq!(stamped["availability"], "offline");
    assert!(stamped["last-active"].as_u64().is_some(), "{stamped}");
    server.stop().await;
}

#[tokio::test]
async fn mqtt_3_1_1_devices_talk_with_mqtt_5_devices() {
    let server = server_with_users().await;
    let addr = server.tcp_addr();
    let mut options =
        rumqttc::MqttOptions::new("bob:old-phone", addr.ip().to_string(), addr.port());
    options
        .set_credentials("bob", "pw")
        .set_max_packet_size(1 << 20, 1 << 20);
    let (old, mut old_loop) = rumqttc::AsyncClient::new(options, 10);
    old.subscribe("mq/in/bob/d", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("queue");
    loop {
        match tokio::time::timeout(WAIT, old_loop.poll())
            .await
            .expect("in time")
            .expect("connected")
        {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) => {
                assert!(matches!(
                    ack.return_codes[0],
                    rumqttc::mqttbytes::v4::SubscribeReasonCode::Success(_)
                ));
                break;
            }
            _ => continue,
        }
    }
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    assert!(
        alice
            .publish(
                "mq/up/alice/phone",
                hi("0a03zkqvpmqs1", "bob", "to an old client")
            )
            .await
    );
    let payload = loop {
        match tokio::time::timeout(WAIT, old_loop.poll())
            .await
            .expect("in time")
            .expect("connected")
        {
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => break p.payload,
            _ => continue,
        }
    };
    let got = Registry::with_core().to_json(&Packet::decode(&payload).expect("decodes"));
    assert_eq!(got["text"], "to an old client");

    // And back: the 3.1.1 device publishes upstream, the MQTT 5 device receives it.
    let reply = Registry::with_core()
        .from_json(&hi("0a03zkqvpmqs2", "alice", "hello from 3.1.1"))
        .expect("valid")
        .encode();
    old.publish(
        "mq/up/bob/old-phone",
        rumqttc::QoS::AtLeastOnce,
        false,
        reply,
    )
    .await
    .expect("queue");
    let driver = tokio::spawn(async move { while old_loop.poll().await.is_ok() {} });
    let (_, own_copy) = alice.receive().await;
    assert_eq!(
        (own_copy["text"].as_str(), own_copy["seq"].as_u64()),
        (Some("to an old client"), Some(1))
    );
    let (topic, got) = alice.receive().await;
    assert_eq!(
        (topic.as_str(), got["text"].as_str(), got["seq"].as_u64()),
        ("mq/in/alice/d", Some("hello from 3.1.1"), Some(2))
    );
    driver.abort();
    server.stop().await;
}

#[tokio::test]
async fn device_tokens_log_in_one_device_until_revoked() {
    let server = server_with_users().await;
    let token = server.add_device_token("alice", "tablet").expect("token");
    let mut tablet = Device::connect(Device::options(&server, "alice", "tablet", &token))
        .await
        .expect("token login");
    tablet.inbox("alice", "tablet").await;
    let other = Device::connect(Device::options(&server, "alice", "phone", &token)).await;
    assert!(
        matches!(
            other,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword
            ))
        ),
        "a token is for its own device only"
    );
    server
        .revoke_device("alice", "tablet")
        .await
        .expect("revoke");
    // The revoked device is disconnected and cannot come back, with the token or the password.
    while tokio::time::timeout(WAIT, tablet.eventloop.poll())
        .await
        .expect("disconnected in time")
        .is_ok()
    {}
    // Spec 3's table: the revoked token is a wrong secret; the right password on a revoked
    // device is "not authorized".
    for (secret, code) in [
        (token.as_str(), ConnectReturnCode::BadUserNamePassword),
        ("pw", ConnectReturnCode::NotAuthorized),
    ] {
        let again = Device::connect(Device::options(&server, "alice", "tablet", secret)).await;
        assert!(
            matches!(again, Err(ConnectionError::ConnectionRefused(c)) if c == code),
            "revoked device must not connect: {secret} gets {code:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn groups_fan_out_through_the_real_broker_and_exclude_removed_members() {
    let server = server_with_users().await;
    server.add_user("carol", "pw").expect("user");
    let mut devices = Vec::new();
    for user in ["alice", "bob", "carol", "mallory"] {
        let mut d = Device::login(&server, user, "phone").await;
        d.inbox(user, "phone").await;
        devices.push(d);
    }
    let [alice, bob, carol, mallory] = &mut devices[..] else {
        unreachable!("four devices")
    };
    assert!(alice.publish("mq/up/alice/phone", json!({"type": "group-create", "id": "0a03zkqvpmqg1", "name": "Crew", "invite": ["bob", "carol"]})).await);
    let (_, created) = alice.receive().await;
    assert_eq!(created["action"], "created");
    let conv = created["conv"].as_str().expect("group").to_owned();
    for member in [&mut *bob, &mut *carol] {
        let (_, invited) = member.receive().await;
        assert_eq!(
            (invited["action"].as_str(), invited["name"].as_str()),
            (Some("invited"), Some("Crew"))
        );
        let user = invited["user"].as_str().expect("invitee").to_owned();
        assert!(member.publish(&format!("mq/up/{user}/phone"), json!({"type": "group-join", "id": "0a03zkqvpmqj1", "conv": conv, "action": "accept"})).await);
    }
    // Each newcomer sees their own joining (and later ones); events before it are not theirs.
    loop {
        let (_, e) = carol.receive().await;
        if e["action"] == "joined" && e["user"] == "carol" {
            break;
        }
    }
    // An outsider can neither write to the group nor read it.
    assert!(
        mallory
            .publish(
                "mq/up/mallory/phone",
                hi("0a03zkqvpmqm1", &conv, "let me in")
            )
            .await
    );
    let (_, refused) = mallory.receive().await;
    assert_eq!(refused["code"], 7);
    // alice removes carol, then bob writes: carol must not get it.
    assert!(alice.publish("mq/up/alice/phone", json!({"type": "group-admin", "id": "0a03zkqvpmqa1", "conv": conv, "action": "remove", "user": "carol"})).await);
    loop {
        let (topic, e) = carol.receive().await;
        if topic == "mq/in/carol/d" && e["type"] == "group-event" && e["action"] == "removed" {
            assert_eq!(e["user"], "carol");
            break;
        }
        assert_ne!(
            e["type"], "message",
            "no group message before the removal: {e}"
        );
    }
    assert!(
        bob.publish("mq/up/bob/phone", hi("0a03zkqvpmqm2", &conv, "just us now"))
            .await
    );
    loop {
        let (_, e) = bob.receive().await;
        if e["text"] == "just us now" {
            break;
        }
    }
    // The barrier: carol writes to bob directly; when bob has it, any group message for her
    // would have reached her first (same hub, same order).
    assert!(
        carol
            .publish("mq/up/carol/phone", hi("0a03zkqvpmqm3", "bob", "am I out?"))
            .await
    );
    let (_, own) = carol.receive().await;
    assert_eq!(
        own["text"], "am I out?",
        "carol received nothing from the group after her removal"
    );
    server.stop().await;
}

/// Connects and returns the CONNACK's session-present flag, or the refusal.
async fn session_present(options: MqttOptions) -> Result<bool, ConnectionError> {
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("connect timed out")?
        {
            Event::Incoming(Incoming::ConnAck(ack)) => return Ok(ack.session_present),
            _ => continue,
        }
    }
}

fn persistent(mut options: MqttOptions) -> MqttOptions {
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(3600));
    options
}

#[tokio::test]
async fn a_user_revokes_a_device_which_loses_its_session_and_presence() {
    let server = server_with_users().await;
    let token = server.add_device_token("alice", "laptop").expect("token");
    let mut laptop = Device::connect(persistent(Device::options(
        &server, "alice", "laptop", &token,
    )))
    .await
    .expect("laptop");
    laptop.inbox("alice", "laptop").await;
    let available = Registry::with_core()
        .from_json(&json!({"type": "presence", "availability": "available"}))
        .expect("valid")
        .encode();
    assert!(
        laptop
            .publish_raw("mq/pr/alice/laptop", available, true)
            .await
    );

    let mut phone = Device::login(&server, "alice", "phone").await;
    phone.inbox("alice", "phone").await;
    assert!(phone.subscribe("mq/pr/alice/laptop").await);
    let (topic, retained) = phone.receive().await;
    assert_eq!(topic, "mq/pr/alice/laptop");
    assert_eq!(retained["availability"], json!("available"));

    assert!(
        phone
            .publish(
                "mq/up/alice/phone",
                json!({"type": "device-list", "id": "0a03zkqvpmqs1"})
            )
            .await
    );
    let (topic, list) = phone.receive().await;
    assert_eq!(topic, "mq/in/alice/r/phone");
    let ids: Vec<&Value> = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| &d["device-id"])
        .collect();
    assert_eq!(ids, [&json!("laptop"), &json!("phone")]);
    assert_eq!(list["devices"][0]["token"], json!(true));

    assert!(
        phone
            .publish(
                "mq/up/alice/phone",
                json!({"type": "device-revoke", "id": "0a03zkqvpmqs2", "device-id": "laptop"})
            )
            .await
    );
    // The phone sees the ack, and the laptop's presence cleared (an empty retained message;
    // a will from the closed connection may come and be cleared again).
    let (mut acked, mut cleared) = (false, false);
    while !(acked && cleared) {
        let (topic, packet) = phone.receive().await;
        match topic.as_str() {
            "mq/in/alice/r/phone" => {
                assert_eq!(packet, json!({"type": "ack", "id": "0a03zkqvpmqs2"}));
                acked = true;
            }
            "mq/pr/alice/laptop" => cleared = packet == json!({"raw": 0}),
            other => panic!("unexpected publish on {other}: {packet}"),
        }
    }
    // The laptop's connection is closed by the takeover...
    while tokio::time::timeout(WAIT, laptop.eventloop.poll())
        .await
        .expect("disconnected in time")
        .is_ok()
    {}
    // ...and it cannot come back.
    let again = session_present(persistent(Device::options(
        &server, "alice", "laptop", &token,
    )))
    .await;
    assert!(
        matches!(again, Err(ConnectionError::ConnectionRefused(_))),
        "revoked: {again:?}"
    );
    // Its session is gone: re-admitted by administration, it starts from nothing.
    let token = server.add_device_token("alice", "laptop").expect("token");
    let present = session_present(persistent(Device::options(
        &server, "alice", "laptop", &token,
    )))
    .await
    .expect("re-admitted");
    assert!(
        !present,
        "the revoked device's broker session must be removed"
    );
    server.stop().await;
}

#[tokio::test]
async fn retention_keeps_the_newest_events_and_history_says_what_is_gone() {
    let server = server_with_users().await;
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    for n in 1..=10u64 {
        let id = mqchat_proto::MessageId::new(1000 + n)
            .expect("id")
            .to_string();
        assert!(
            alice
                .publish("mq/up/alice/phone", hi(&id, "bob", &format!("m{n}")))
                .await
        );
        let (_, own) = alice.receive().await;
        assert_eq!(own["seq"], json!(n));
    }
    drop(alice);
    let dir = server.stop_keep().await;

    let server = TestServer::start_in_with(dir, |c| c.retention_max_events = Some(4))
        .await
        .expect("restart with retention");
    let mut bob = Device::login(&server, "bob", "phone").await;
    bob.inbox("bob", "phone").await;
    // The job runs at start, in the background: ask until it has run.
    let deadline = tokio::time::Instant::now() + WAIT;
    let result = loop {
        assert!(
            bob.publish(
                "mq/up/bob/phone",
                json!({"type": "history", "id": "0a03zkqvpmqs3", "conv": "alice", "after": 0})
            )
            .await
        );
        let (_, result) = bob.receive().await;
        if result["first-seq"] == json!(7) || tokio::time::Instant::now() > deadline {
            break result;
        }
    };
    assert_eq!(result["first-seq"], json!(7), "{result}");
    assert_eq!(result["truncated"], json!(true));
    assert_eq!(result["last-seq"], json!(10));
    let texts: Vec<&Value> = result["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["text"])
        .collect();
    assert_eq!(
        texts,
        [&json!("m7"), &json!("m8"), &json!("m9"), &json!("m10")]
    );
    // A cursor inside what is kept is not truncated; sync shows the first kept event.
    assert!(
        bob.publish(
            "mq/up/bob/phone",
            json!({"type": "history", "id": "0a03zkqvpmqs4", "conv": "alice", "after": 8})
        )
        .await
    );
    let (_, result) = bob.receive().await;
    assert_eq!(result["truncated"], Value::Null, "{result}");
    assert_eq!(result["events"].as_array().map(Vec::len), Some(2));
    assert!(
        bob.publish(
            "mq/up/bob/phone",
            json!({"type": "sync", "id": "0a03zkqvpmqs5"})
        )
        .await
    );
    let (_, sync) = bob.receive().await;
    assert_eq!(sync["conversations"][0]["first-seq"], json!(7), "{sync}");
    server.stop().await;
}

#[tokio::test]
async fn unacknowledged_deliveries_are_resent_in_their_order_after_a_reconnect() {
    let server = server_with_users().await;
    let mut options = persistent(Device::options(&server, "bob", "phone", "pw"));
    options.set_manual_acks(true);
    let mut bob = Device::connect(options.clone()).await.expect("bob");
    bob.inbox("bob", "phone").await;
    let mut alice = Device::login(&server, "alice", "phone").await;
    alice.inbox("alice", "phone").await;
    for i in 1..=5 {
        let id = format!("0a03zkqvpmqt{i}");
        let text = format!("number {i}");
        assert!(
            alice
                .publish("mq/up/alice/phone", hi(&id, "bob", &text))
                .await
        );
    }
    // bob's phone receives the five and acknowledges none before its connection drops.
    for i in 1..=5 {
        let (_, got) = bob.receive().await;
        assert_eq!(got["seq"].as_u64(), Some(i));
    }
    drop(bob);
    // Back with its session: the broker resends the five in their original order
    // (MQTT 5 section 4.6; rmqtt 0.24 alone resends them in reverse).
    let mut bob = Device::connect(options).await.expect("bob again");
    let mut seqs = Vec::new();
    for _ in 1..=5 {
        let (_, got) = bob.receive().await;
        seqs.push(got["seq"].as_u64().expect("a seq"));
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    server.stop().await;
}
