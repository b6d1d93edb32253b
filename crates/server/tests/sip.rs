//! A call end to end through the real broker, with plain MQTT devices (rumqttc, not the SDK)
//! playing the SIP user agents (spec 7.14, 19): alice calls bob, whose phone and laptop both
//! ring; the laptop answers, the phone is cancelled, alice hangs up, and both users get the
//! call record. Devices may not use the gateway's topics.

mod common;

use common::Device;

use mqchat_proto::body::{Body, Sip};
use mqchat_sip::{Message, Method};
use mqchat_testkit::TestServer;
use serde_json::{Value, json};

async fn sip_server() -> TestServer {
    let server = TestServer::start_with(|c| {
        c.sip.enabled = true;
        c.sip.listen_udp = Some(([127, 0, 0, 1], 0).into());
        c.sip.listen_tcp = Some(([127, 0, 0, 1], 0).into());
    })
    .await
    .expect("server");
    for user in ["alice", "bob"] {
        server.add_user(user, "pw").expect("user");
    }
    server
}

/// A device logged in, subscribed to its inbox, present (so the hub counts it connected),
/// and sure the hub has seen its presence: a request sent after it has been answered.
async fn online(server: &TestServer, user: &str, device: &str) -> Device {
    let mut d = Device::login(server, user, device).await;
    d.inbox(user, device).await;
    let presence = d
        .registry
        .from_json(&json!({"type": "presence", "availability": "available"}))
        .expect("valid")
        .encode();
    assert!(
        d.publish_raw(&format!("mq/pr/{user}/{device}"), presence, true)
            .await
    );
    assert!(
        d.publish(
            &format!("mq/up/{user}/{device}"),
            json!({"type": "sync", "id": "0a03zkqvpmqs1"})
        )
        .await
    );
    loop {
        let (topic, packet) = d.receive().await;
        if topic.ends_with(&format!("/r/{device}")) && packet["type"] == "sync-result" {
            return d;
        }
    }
}

/// Sends a SIP message as a `sip` packet on the device's upstream topic.
async fn send(d: &mut Device, user: &str, device: &str, message: &str) {
    let payload = Sip::new(message).to_packet().encode();
    assert!(
        d.publish_raw(&format!("mq/up/{user}/{device}"), payload, false)
            .await
    );
}

/// The next SIP message the device receives (skipping other packets, which are returned).
async fn next_sip(d: &mut Device, others: &mut Vec<Value>) -> Message {
    loop {
        let (_, packet) = d.receive().await;
        if packet["type"] == "sip" {
            let text = packet["message"].as_str().expect("text");
            return Message::parse(text.as_bytes()).expect("valid SIP from the hub");
        }
        others.push(packet);
    }
}

/// The call record the device receives.
async fn record(d: &mut Device, seen: &[Value]) -> Value {
    if let Some(found) = seen.iter().find(|p| p["type"] == "call") {
        return found.clone();
    }
    loop {
        let (_, packet) = d.receive().await;
        if packet["type"] == "call" {
            return packet;
        }
    }
}

fn answer(request: &Message, code: u16, device: &str) -> String {
    let mut response = Message::response(request, code, "");
    if code > 100 {
        response.set_to_tag(&format!("tag-{device}"));
    }
    response.insert_header("Contact", &format!("<sip:bob@localhost;gr={device}>"));
    String::from_utf8(response.to_bytes()).expect("utf-8")
}

fn request(method: &str, uri: &str, cseq: u32, to_tag: Option<&str>, body: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/MQTT phone.alice.invalid;branch=z9hG4bK{method}{cseq}\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@localhost>{to_tag}\r\nFrom: <sip:alice@localhost>;tag=ta\r\n\
         Call-ID: e2e-1@phone.alice.invalid\r\nCSeq: {cseq} {method}\r\nContact: <sip:alice@localhost;gr=phone>\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_call_between_two_users_through_the_real_broker() {
    let server = sip_server().await;
    let mut alice = online(&server, "alice", "phone").await;
    let mut phone = online(&server, "bob", "phone").await;
    let mut laptop = online(&server, "bob", "laptop").await;
    let (mut a_seen, mut p_seen, mut l_seen) = (Vec::new(), Vec::new(), Vec::new());

    let sdp = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    send(
        &mut alice,
        "alice",
        "phone",
        &request("INVITE", "sip:bob@localhost", 1, None, sdp),
    )
    .await;
    let on_phone = next_sip(&mut phone, &mut p_seen).await;
    let on_laptop = next_sip(&mut laptop, &mut l_seen).await;
    for fork in [&on_phone, &on_laptop] {
        assert_eq!(fork.method(), Some(&Method::Invite));
        assert_eq!(fork.vias()[0].host, "hub.localhost");
        assert!(String::from_utf8_lossy(&fork.body).contains("m=audio"));
    }

    send(&mut phone, "bob", "phone", &answer(&on_phone, 180, "phone")).await;
    assert_eq!(next_sip(&mut alice, &mut a_seen).await.code(), Some(180));
    send(
        &mut laptop,
        "bob",
        "laptop",
        &answer(&on_laptop, 200, "laptop"),
    )
    .await;
    assert_eq!(next_sip(&mut alice, &mut a_seen).await.code(), Some(200));
    let cancel = next_sip(&mut phone, &mut p_seen).await;
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    send(&mut phone, "bob", "phone", &answer(&on_phone, 487, "phone")).await;
    assert_eq!(
        next_sip(&mut phone, &mut p_seen).await.method(),
        Some(&Method::Ack)
    );

    let gruu = "sip:bob@localhost;gr=laptop";
    send(
        &mut alice,
        "alice",
        "phone",
        &request("ACK", gruu, 1, Some("tag-laptop"), ""),
    )
    .await;
    assert_eq!(
        next_sip(&mut laptop, &mut l_seen).await.method(),
        Some(&Method::Ack)
    );
    send(
        &mut alice,
        "alice",
        "phone",
        &request("BYE", gruu, 2, Some("tag-laptop"), ""),
    )
    .await;
    let bye = next_sip(&mut laptop, &mut l_seen).await;
    assert_eq!(bye.method(), Some(&Method::Bye));
    send(&mut laptop, "bob", "laptop", &answer(&bye, 200, "laptop")).await;
    let ok = next_sip(&mut alice, &mut a_seen).await;
    assert_eq!(
        (ok.code(), ok.cseq().map(|c| c.method)),
        (Some(200), Some(Method::Bye))
    );

    let for_alice = record(&mut alice, &a_seen).await;
    assert_eq!(for_alice["conv"], "bob");
    assert_eq!(for_alice["outcome"], "answered");
    assert_eq!(for_alice["from"], "alice");
    let for_bob = record(&mut laptop, &l_seen).await;
    assert_eq!(for_bob["conv"], "alice");
    assert_eq!(for_bob["answered-by"], "laptop");
    assert!(for_bob["duration"].as_u64().is_some());
    // The phone's copy too: every device of bob has the record.
    assert_eq!(record(&mut phone, &p_seen).await["outcome"], "answered");
    server.stop().await;
}

#[tokio::test]
async fn devices_may_not_use_the_gateway_topics() {
    let server = sip_server().await;
    let mut mallory = online(&server, "alice", "phone").await;
    assert!(
        !mallory.subscribe("mq/gw/sip/out").await,
        "reading the gateway's topic"
    );
    assert!(!mallory.subscribe("$share/x/mq/gw/+/in").await);
    let mut forged = Sip::new(
        "MESSAGE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKf\r\nTo: <sip:bob@localhost>\r\n\
         From: <sip:boss@example.net>;tag=1\r\nCall-ID: f\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi",
    );
    forged.peer = Some("pbx".into());
    forged.source = Some("udp:10.0.0.1:5060".into());
    assert!(
        !mallory
            .publish_raw("mq/gw/sip/in", forged.to_packet().encode(), false)
            .await,
        "publishing as the gateway"
    );
    // Through the upstream topic the same packet is refused by the hub: gateway fields.
    let payload = forged.to_packet().encode();
    assert!(
        mallory
            .publish_raw("mq/up/alice/phone", payload, false)
            .await
    );
    let (topic, error) = mallory.receive().await;
    assert_eq!(topic, "mq/in/alice/r/phone");
    assert_eq!(
        (error["type"].as_str(), error["code"].as_u64()),
        (Some("error"), Some(2))
    );
    server.stop().await;
}
