//! Push end to end (spec 7.13): devices register UnifiedPush endpoints on a local HTTP
//! distributor, and messages through the real broker wake exactly the devices that are away
//! or in the background.
//!
//! Negative checks never sleep: pushes go through one dispatcher worker in order, so after
//! a push that must not happen, a push that must happen is sent; when that one has arrived,
//! the other would have arrived first.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Device, WAIT};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mqchat_proto::{DeviceId, MessageId, Registry, UserId};
use mqchat_store::{Durability, Store};
use mqchat_testkit::TestServer;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// A UnifiedPush distributor: records every POST (path, JSON body) and answers with the
/// status set for the path (201 by default), after the path's gate opens if it has one.
struct Distributor {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<(String, Value)>,
    status: Arc<Mutex<HashMap<String, u16>>>,
    gates: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Distributor {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, received) = mpsc::unbounded_channel();
        let status: Arc<Mutex<HashMap<String, u16>>> = Arc::default();
        let gates: Arc<Mutex<HashMap<String, Arc<Notify>>>> = Arc::default();
        let (status2, gates2) = (status.clone(), gates.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, status, gates) = (tx.clone(), status2.clone(), gates2.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (tx, status, gates) = (tx.clone(), status.clone(), gates.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json: Value =
                                serde_json::from_slice(&body).unwrap_or(json!({"raw": body.len()}));
                            let _ = tx.send((path.clone(), json));
                            let gate = gates.lock().expect("lock").get(&path).cloned();
                            if let Some(gate) = gate {
                                gate.notified().await;
                            }
                            let code = *status.lock().expect("lock").get(&path).unwrap_or(&201);
                            let mut response = Response::new(Full::new(Bytes::new()));
                            *response.status_mut() =
                                StatusCode::from_u16(code).unwrap_or(StatusCode::CREATED);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            status,
            gates,
        }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("http://{}/up/{name}", self.addr)
    }

    /// The next push received: (endpoint name, body).
    async fn next(&mut self) -> (String, Value) {
        let (path, body) = tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("a push in time")
            .expect("distributor running");
        (path.trim_start_matches("/up/").to_owned(), body)
    }
}

async fn server() -> TestServer {
    let server = TestServer::start_with(|c| {
        c.push.unified_push.enabled = true;
        c.push.unified_push.allow_plain_http = true;
        c.push.allow_private_endpoints = true;
        // One worker: pushes leave in order (see the module's comment).
        c.push.workers = 1;
        c.push.coalesce_window_ms = 300;
        c.push.initial_backoff_ms = 50;
    })
    .await
    .expect("server");
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").expect("user");
    }
    server
}

struct Ids(u64);

impl Ids {
    fn next(&mut self) -> String {
        self.0 += 1;
        MessageId::new(self.0).expect("id").to_string()
    }
}

/// A device that is connected (presence published) and has subscribed its inbox.
async fn online(server: &TestServer, user: &str, device: &str) -> Device {
    let mut d = Device::login(server, user, device).await;
    d.inbox(user, device).await;
    let presence = Registry::with_core()
        .from_json(&json!({"type": "presence", "availability": "available"}))
        .expect("valid")
        .encode();
    assert!(
        d.publish_raw(&format!("mq/pr/{user}/{device}"), presence, true)
            .await
    );
    d
}

/// Sends a request and waits for its ack.
async fn acked(d: &mut Device, user: &str, device: &str, packet: Value) {
    assert!(d.publish(&format!("mq/up/{user}/{device}"), packet).await);
    loop {
        let (topic, reply) = d.receive().await;
        if topic == format!("mq/in/{user}/r/{device}") {
            assert_eq!(reply["type"], json!("ack"), "{reply}");
            return;
        }
    }
}

async fn register(d: &mut Device, user: &str, device: &str, endpoint: &str, ids: &mut Ids) {
    let packet = json!({"type": "push-register", "id": ids.next(), "provider": "unified-push", "address": endpoint});
    acked(d, user, device, packet).await;
}

async fn say(from: &mut Device, user: &str, to: &str, text: &str, ids: &mut Ids) {
    let packet = json!({"type": "message", "id": ids.next(), "conv": to, "text": text});
    assert!(from.publish(&format!("mq/up/{user}/phone"), packet).await);
}

/// Registers `device` of `user`, then disconnects it (its presence goes offline).
async fn away(server: &TestServer, user: &str, device: &str, endpoint: &str, ids: &mut Ids) {
    let mut d = online(server, user, device).await;
    register(&mut d, user, device, endpoint, ids).await;
    let offline = Registry::with_core()
        .from_json(&json!({"type": "presence", "availability": "offline", "last-active": 1}))
        .expect("valid")
        .encode();
    assert!(
        d.publish_raw(&format!("mq/pr/{user}/{device}"), offline, true)
            .await
    );
}

#[tokio::test]
async fn messages_wake_devices_that_are_away_or_in_the_background() {
    let server = server().await;
    let mut up = Distributor::start().await;
    let mut ids = Ids(1000);
    let mut alice = online(&server, "alice", "phone").await;

    // bob's only device is away: one push per message, no text.
    away(&server, "bob", "phone", &up.endpoint("bob-phone"), &mut ids).await;
    say(&mut alice, "alice", "bob", "Hi", &mut ids).await;
    let (to, body) = up.next().await;
    assert_eq!(to, "bob-phone");
    assert_eq!(body, json!({"conversation": "alice", "seq": 1, "count": 1}));

    // carol's phone is online and in the foreground: no push; in the background: a push.
    let mut carol = online(&server, "carol", "phone").await;
    register(
        &mut carol,
        "carol",
        "phone",
        &up.endpoint("carol-phone"),
        &mut ids,
    )
    .await;
    say(&mut alice, "alice", "carol", "Online?", &mut ids).await;
    let (_, got) = carol.receive().await;
    assert_eq!(got["text"], json!("Online?"));
    acked(
        &mut carol,
        "carol",
        "phone",
        json!({"type": "client-state", "id": ids.next(), "active": false}),
    )
    .await;
    say(&mut alice, "alice", "carol", "Background?", &mut ids).await;
    let (to, body) = up.next().await;
    assert_eq!(
        (to.as_str(), &body["seq"]),
        ("carol-phone", &json!(2)),
        "no push for the first"
    );
    // Still delivered over MQTT too.
    let (_, got) = carol.receive().await;
    assert_eq!(got["text"], json!("Background?"));

    // Muted: nothing; the next push (after unmuting) is the next one seen.
    acked(&mut carol, "carol", "phone", json!({"type": "mute", "id": ids.next(), "conv": "alice", "until": 9_007_199_254_740_991_u64})).await;
    say(&mut alice, "alice", "carol", "muted", &mut ids).await;
    let _ = carol.receive().await;
    acked(
        &mut carol,
        "carol",
        "phone",
        json!({"type": "mute", "id": ids.next(), "conv": "alice", "until": 0}),
    )
    .await;
    say(&mut alice, "alice", "carol", "unmuted", &mut ids).await;
    let (to, body) = up.next().await;
    assert_eq!((to.as_str(), &body["seq"]), ("carol-phone", &json!(4)));

    // Coalescing: a burst to bob gives at most two pushes, covering the three messages.
    for text in ["one", "two", "three"] {
        say(&mut alice, "alice", "bob", text, &mut ids).await;
    }
    let (to, first) = up.next().await;
    assert_eq!(to, "bob-phone");
    let mut count = first["count"].as_u64().expect("count");
    let mut last = first["seq"].clone();
    if count < 3 {
        let (to, second) = up.next().await;
        assert_eq!(to, "bob-phone");
        count += second["count"].as_u64().expect("count");
        last = second["seq"].clone();
    }
    assert_eq!((count, last), (3, json!(4)));
    server.stop().await;
}

#[tokio::test]
async fn invalid_targets_are_removed_and_outages_do_not_delay_delivery() {
    let server = server().await;
    let mut up = Distributor::start().await;
    let mut ids = Ids(2000);
    let mut alice = online(&server, "alice", "phone").await;

    // The distributor says bob's laptop endpoint is gone: the hub forgets it.
    up.status
        .lock()
        .expect("lock")
        .insert("/up/bob-laptop".into(), 410);
    away(
        &server,
        "bob",
        "laptop",
        &up.endpoint("bob-laptop"),
        &mut ids,
    )
    .await;
    say(&mut alice, "alice", "bob", "Hi laptop", &mut ids).await;
    assert_eq!(up.next().await.0, "bob-laptop");
    let store = Store::open(&server.config().database(), Durability::Normal).expect("store");
    let (bob, laptop) = (
        UserId::parse("bob").expect("valid"),
        DeviceId::parse("laptop").expect("valid"),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.push_target(&bob, &laptop).expect("query").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "target not removed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // carol's tablet is away and its distributor hangs; her phone, online, still gets the
    // message while the push is stuck.
    let gate = Arc::new(Notify::new());
    up.gates
        .lock()
        .expect("lock")
        .insert("/up/carol-tablet".into(), gate.clone());
    away(
        &server,
        "carol",
        "tablet",
        &up.endpoint("carol-tablet"),
        &mut ids,
    )
    .await;
    let mut phone = online(&server, "carol", "phone").await;
    say(&mut alice, "alice", "carol", "Are you there?", &mut ids).await;
    assert_eq!(up.next().await.0, "carol-tablet", "the push is under way");
    let (_, got) = phone.receive().await;
    assert_eq!(got["text"], json!("Are you there?"));
    gate.notify_one();
    server.stop().await;
}
