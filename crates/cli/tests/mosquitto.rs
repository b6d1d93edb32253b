//! Mosquitto as the broker: `mqchat broker-config mosquitto` writes its files, the test
//! starts Mosquitto on loopback ports it holds ([`ReservedPort`]) and `mqchat hub` against
//! it, and Rust SDK clients chat through it: a message with receipts, presence, sync after
//! being offline, restarts of the broker and of the hub, the attacks Mosquitto's ACL must
//! refuse, and the hub and devices over TLS (a Mosquitto TLS listener with a test CA's
//! certificate).
//!
//! Mosquitto is a Debian package (`apt-get install -y mosquitto`, which scripts/test does
//! when it is missing); without it these tests fail, they do not skip. Every wait is for an
//! event (a port accepting, a printed line, an MQTT packet) with a deadline.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::MQCHAT;
use mqchat_client::{Client, ClientConfig, Event, Events, Seq};
use mqchat_proto::body::{ContactAction, Message};
use mqchat_proto::{ConversationRef, DeviceId, Registry, UserId};
use mqchat_testkit::sdk::{conv, expect, expect_incoming as incoming, user};
use mqchat_testkit::{Process, ReservedPort, Stderr, TestCa, WAIT, until, within};
use serde_json::json;
const USERS: [&str; 4] = ["alice", "bob", "carol", "mallory"];

/// Fails the test clearly when Mosquitto is not installed.
fn require_mosquitto() {
    match Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "mosquitto is not installed: run `apt-get install -y mosquitto` (scripts/test does)"
        ),
        Err(e) => panic!("cannot run mosquitto: {e}"),
    }
}

/// A port on 127.0.0.1 for a Mosquitto listener, held by the test for the deployment's
/// life. Mosquitto 2.0 cannot listen on port 0 (its `listener 0` is a Unix socket, `-p 0` is
/// refused; a WebSocket listener on port 0 binds every interface) and its log names the
/// configured port, not a bound one; it binds the held port beside the test's socket
/// (SO_REUSEADDR), and binds it again when it restarts.
fn reserved_port() -> ReservedPort {
    ReservedPort::new().expect("a port on 127.0.0.1")
}

/// Waits until something accepts connections on `addr`.
fn wait_for_port(addr: SocketAddr, what: &str) {
    until(&format!("{what} listening on {addr}"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
    });
}

fn mqchat(args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = MQCHAT.run(args, stdin);
    assert_eq!(code, 0, "mqchat {args:?} failed: {err}");
    out
}

/// Mosquitto, the hub and the users' broker passwords, in a temporary directory.
struct Deployment {
    dir: tempfile::TempDir,
    /// The MQTT listener's port.
    port: ReservedPort,
    /// The WebSocket listener's port.
    ws_port: ReservedPort,
    /// The TLS listener's port and the CA file that its certificate chains to.
    tls: Option<(ReservedPort, PathBuf)>,
    passwords: BTreeMap<String, String>,
    broker: Option<Process>,
    hub: Option<Process>,
}

impl Deployment {
    fn start() -> Self {
        Self::start_with_tls(false)
    }

    /// With `tls`, Mosquitto also listens for MQTT over TLS (a certificate from a test CA
    /// made now) and the hub connects to that listener, `mqtts://` with the CA file.
    fn start_with_tls(tls: bool) -> Self {
        require_mosquitto();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let data = data.to_str().expect("utf-8");
        for user in USERS {
            mqchat(
                &["user", "add", user, "--password-stdin", "--data-dir", data],
                Some(&format!("{user}-account-password\n")),
            );
        }
        let port = reserved_port();
        let ws_port = reserved_port();
        let out = dir.path().join("mosquitto");
        let mut args = vec![
            "broker-config".to_owned(),
            "mosquitto".to_owned(),
            "--data-dir".to_owned(),
            data.to_owned(),
            "--out".to_owned(),
            out.to_str().expect("utf-8").to_owned(),
            "--listen".to_owned(),
            port.addr().to_string(),
            "--listen-ws".to_owned(),
            ws_port.addr().to_string(),
        ];
        // Started as root, Mosquitto drops to the `mosquitto` user, which could not read
        // the test's files; as anyone else the setting is ignored.
        if let Ok(user) = std::env::var("USER").or_else(|_| whoami()) {
            args.extend(["--run-as".to_owned(), user]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let printed = mqchat(&args, None);
        let passwords: BTreeMap<String, String> = printed
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
            .collect();
        assert_eq!(
            passwords.keys().map(String::as_str).collect::<Vec<_>>(),
            USERS,
            "one broker password per user: {printed}"
        );
        let tls = tls.then(|| add_tls_listener(&out));
        let mut deployment = Self {
            dir,
            port,
            ws_port,
            tls,
            passwords,
            broker: None,
            hub: None,
        };
        if std::env::var("MQCHAT_TEST_BROKER_DEBUG").is_ok() {
            let conf = deployment.conf_dir().join("mosquitto.conf");
            let text = std::fs::read_to_string(&conf).expect("conf");
            std::fs::write(&conf, text.replace("log_type notice", "log_type all")).expect("conf");
        }
        deployment.start_broker();
        // The WebSocket listener came up on loopback only (`socket_domain`).
        wait_for_port(deployment.ws_port.addr(), "Mosquitto's WebSocket listener");
        deployment.start_hub();
        deployment
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("mosquitto")
    }

    fn start_broker(&mut self) {
        let mut command = Command::new("mosquitto");
        command
            .arg("-c")
            .arg(self.conf_dir().join("mosquitto.conf"));
        let log = Stderr::File(self.dir.path().join("mosquitto.log"));
        self.broker = Some(Process::start("mosquitto", command, log));
        wait_for_port(self.port.addr(), "Mosquitto");
    }

    fn stop_broker(&mut self) {
        let status = self.broker.take().expect("running").terminate();
        assert!(
            status.success(),
            "mosquitto exited with {status}: {}",
            self.broker_log()
        );
    }

    fn broker_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn start_hub(&mut self) {
        let mut command = MQCHAT.command(&["hub", "--config"]);
        command.arg(self.conf_dir().join("hub.toml")).env(
            "MQCHAT_LOG",
            std::env::var("MQCHAT_TEST_HUB_LOG").unwrap_or_else(|_| "warn".into()),
        );
        let process = Process::start("mqchat hub", command, Stderr::Inherit);
        process.line_with("mqchat hub running");
        self.hub = Some(process);
    }

    fn stop_hub(&mut self) {
        let status = self.hub.take().expect("running").terminate();
        assert!(status.success(), "mqchat hub exited with {status}");
    }

    /// The devices' URL: the TLS listener when there is one.
    fn url(&self) -> String {
        match &self.tls {
            Some((port, _)) => format!("mqtts://{}", port.addr()),
            None => format!("mqtt://{}", self.port.addr()),
        }
    }

    fn config(&self, user: &str, device: &str) -> ClientConfig {
        let config = ClientConfig::new(
            &self.url(),
            UserId::parse(user).expect("valid"),
            DeviceId::parse(device).expect("valid"),
            &self.passwords[user],
        )
        .expect("valid URL")
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
        match &self.tls {
            Some((_, ca_file)) => config.ca_file(ca_file),
            None => config,
        }
    }

    async fn connect(&self, user: &str, device: &str) -> (Client, Events) {
        Client::connect(self.config(user, device))
            .await
            .unwrap_or_else(|e| panic!("{user}:{device} cannot connect: {e}"))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // The hub first, so it does not log a lost broker.
        drop(self.hub.take());
        drop(self.broker.take());
        if std::thread::panicking() {
            eprintln!("--- mosquitto's log ---\n{}", self.broker_log());
        }
    }
}

/// Adds a TLS listener to the configuration in `dir` (a certificate for 127.0.0.1 from a
/// test CA made now) and points the hub's `hub.toml` at it; returns its port and the CA
/// file.
fn add_tls_listener(dir: &Path) -> (ReservedPort, PathBuf) {
    let ca = TestCa::new("mosquitto test CA").expect("a CA");
    let ca_file = dir.join("ca.pem");
    ca.write(&ca_file).expect("CA file");
    let files = mqchat_server::tls::TlsFiles {
        cert: dir.join("server-cert.pem"),
        key: dir.join("server-key.pem"),
    };
    ca.issue(&["127.0.0.1"])
        .expect("a certificate")
        .write(&files)
        .expect("certificate files");
    let port = reserved_port();
    let conf = dir.join("mosquitto.conf");
    let mut text = std::fs::read_to_string(&conf).expect("conf");
    text.push_str(&format!(
        "\nlistener {} 127.0.0.1\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n",
        port.port(),
        files.cert.display(),
        files.key.display()
    ));
    std::fs::write(&conf, text).expect("conf");
    let hub = dir.join("hub.toml");
    let text = std::fs::read_to_string(&hub).expect("hub.toml");
    let mut replaced = String::new();
    for line in text.lines() {
        if line.starts_with("broker = ") {
            replaced.push_str(&format!(
                "broker = \"mqtts://{}\"\nbroker_ca_file = \"{}\"\n",
                port.addr(),
                ca_file.display()
            ));
        } else {
            replaced.push_str(line);
            replaced.push('\n');
        }
    }
    assert!(replaced.contains("mqtts://"), "no broker line in {text}");
    std::fs::write(&hub, replaced).expect("hub.toml");
    (port, ca_file)
}

fn whoami() -> Result<String, std::env::VarError> {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or(std::env::VarError::NotPresent)
}

/// alice sends `text` to bob, and bob receives it: `sent` means the hub stored it and
/// answered, through whichever broker the deployment runs.
async fn alice_reaches_bob(
    alice: &Client,
    bob_events: &mut Events,
    text: &str,
) -> mqchat_client::Sent {
    let sent = alice
        .send(conv("bob"), Message::text(text))
        .await
        .expect("sent: the hub stored it");
    assert_eq!(
        incoming(bob_events).await,
        (conv("alice"), sent.seq, user("alice"), text.to_owned())
    );
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_and_devices_over_tls_to_mosquitto() {
    let deployment = Deployment::start_with_tls(true);
    assert!(deployment.url().starts_with("mqtts://"));
    let (alice, _alice_events) = deployment.connect("alice", "phone").await;
    let (_bob, mut bob_events) = deployment.connect("bob", "laptop").await;
    // `sent` means the hub (an mqtts:// client of Mosquitto) stored it and answered.
    alice_reaches_bob(&alice, &mut bob_events, "Hi Bob, over TLS").await;
    // A client that does not trust the test CA is refused.
    let stranger = ClientConfig::new(
        &deployment.url(),
        user("carol"),
        DeviceId::parse("phone").expect("valid"),
        &deployment.passwords["carol"],
    )
    .expect("valid URL")
    .connect_timeout(Duration::from_secs(5));
    match Client::connect(stranger).await {
        Ok(_) => panic!("connected without trusting the test CA"),
        Err(e) => assert!(e.is_unreachable() || e.is_invalid(), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_receipts_and_presence_through_mosquitto() {
    let deployment = Deployment::start();
    let (alice, mut alice_events) = deployment.connect("alice", "phone").await;
    let (bob, mut bob_events) = deployment.connect("bob", "laptop").await;

    let sent = alice_reaches_bob(&alice, &mut bob_events, "Hi Bob, via Mosquitto").await;
    let delivered = expect(&mut alice_events, "a delivered receipt", |e| match e {
        Event::Delivered { by, up_to, .. } => Some((by.user()?.clone(), up_to)),
        _ => None,
    })
    .await;
    assert_eq!(delivered, (user("bob"), sent.seq));
    bob.mark_read(conv("alice"), sent.seq, false)
        .await
        .expect("read marker");
    let read = expect(&mut alice_events, "a read receipt", |e| match e {
        Event::Read {
            by,
            up_to,
            own: false,
            ..
        } => Some((by, up_to)),
        _ => None,
    })
    .await;
    assert_eq!(read, (user("bob"), sent.seq));

    // Contacts, then presence: alice sees bob online (a retained message on his self
    // topic, through Mosquitto's `pattern read mq/pr/+/+`).
    alice
        .contact(user("bob"), ContactAction::Request, None)
        .await
        .expect("contact request");
    expect(&mut bob_events, "the contact request", |e| {
        matches!(e, Event::Contact { own: false, .. }).then_some(())
    })
    .await;
    bob.contact(user("alice"), ContactAction::Accept, None)
        .await
        .expect("accept");
    alice.watch_presence(&user("bob")).await.expect("watch");
    let presence = expect(&mut alice_events, "bob's presence", |e| match e {
        Event::Presence {
            user: u, presence, ..
        } if u == user("bob") => presence,
        _ => None,
    })
    .await;
    assert_eq!(
        presence.availability,
        mqchat_proto::body::Availability::Available
    );

    alice.close().await.expect("close");
    bob.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_being_offline_through_mosquitto() {
    let deployment = Deployment::start();
    let (alice, _alice_events) = deployment.connect("alice", "phone").await;
    let (bob, mut bob_events) = deployment.connect("bob", "phone").await;
    let first = alice
        .send(conv("bob"), Message::text("before"))
        .await
        .expect("sent");
    incoming(&mut bob_events).await;
    let state = bob.close().await.expect("close keeps the sync state");

    let mut seqs = vec![first.seq];
    for i in 0..3 {
        let sent = alice
            .send(conv("bob"), Message::text(format!("while away {i}")))
            .await
            .expect("sent");
        seqs.push(sent.seq);
    }
    // Bob's phone comes back with its sync state: the three arrive, once each, in order.
    let (_bob, mut bob_events) = Client::connect(deployment.config("bob", "phone").resume(state))
        .await
        .expect("reconnect");
    for (i, seq) in seqs[1..].iter().enumerate() {
        let (_, got_seq, from, text) = incoming(&mut bob_events).await;
        assert_eq!(
            (got_seq, from, text),
            (*seq, user("alice"), format!("while away {i}"))
        );
    }
    // A new device with no storage pages the history instead.
    let (carol_less, _events) = deployment.connect("bob", "tablet").await;
    let page = carol_less
        .history(conv("alice"), mqchat_client::HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.events.len(), 4, "{page:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_across_broker_and_hub_restarts() {
    let mut deployment = Deployment::start();
    let (alice, _alice_events) = deployment.connect("alice", "phone").await;
    let (_bob, mut bob_events) = deployment.connect("bob", "phone").await;
    alice
        .send(conv("bob"), Message::text("one"))
        .await
        .expect("sent");
    assert_eq!(incoming(&mut bob_events).await.3, "one");

    // Mosquitto restarts under a running hub: the hub reconnects by itself.
    deployment.stop_broker();
    deployment.start_broker();
    let Ok(sent) = tokio::time::timeout(WAIT, alice.send(conv("bob"), Message::text("two"))).await
    else {
        panic!(
            "not sent after the broker came back: {}",
            deployment.broker_log()
        );
    };
    let sent = sent.expect("sent");
    assert_eq!(
        incoming(&mut bob_events).await,
        (conv("alice"), sent.seq, user("alice"), "two".to_owned())
    );

    // The hub is down while alice writes; then Mosquitto restarts too. The upstream
    // packets wait in the hub's persistent session (kept in Mosquitto's persistence file),
    // and nothing is lost or doubled once both are back.
    deployment.stop_hub();
    let sending = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..5 {
                let sent = alice
                    .send(conv("bob"), Message::text(format!("queued {i}")))
                    .await
                    .expect("sent");
                seqs.push(sent.seq);
            }
            seqs
        })
    };
    deployment.stop_broker();
    deployment.start_broker();
    deployment.start_hub();
    let seqs = tokio::time::timeout(WAIT, sending)
        .await
        .expect("all five sent")
        .expect("task");
    let mut got = Vec::new();
    for _ in 0..5 {
        let (_, seq, _, text) = incoming(&mut bob_events).await;
        got.push((seq, text));
    }
    let expected: Vec<_> = seqs
        .iter()
        .enumerate()
        .map(|(i, seq)| (*seq, format!("queued {i}")))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        seqs,
        [3, 4, 5, 6, 7].map(Seq::new),
        "no gap and no duplicate in the archive"
    );
}

/// A raw MQTT 5 client, to try what the SDK never would.
struct Raw {
    client: rumqttc::v5::AsyncClient,
    packets: tokio::sync::mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
}

impl Raw {
    async fn connect(deployment: &Deployment, user: &str, client_id: &str) -> Self {
        let mut options =
            rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", deployment.port.port());
        options.set_credentials(user, &deployment.passwords[user]);
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 16);
        let (tx, packets) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let rumqttc::v5::Event::Incoming(packet) = event
                    && tx.send(packet).is_err()
                {
                    break;
                }
            }
        });
        let mut raw = Self { client, packets };
        raw.expect("CONNACK", |p| {
            matches!(p, rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_))
        })
        .await;
        raw
    }

    /// Subscribes to the device's own inbox.
    async fn inbox(&mut self, user: &str, device: &str) {
        for filter in [
            format!("mq/in/{user}/d"),
            format!("mq/in/{user}/r/{device}"),
        ] {
            self.client
                .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .expect("queued");
            self.expect("SUBACK", |p| {
                matches!(p, rumqttc::v5::mqttbytes::v5::Packet::SubAck(_))
            })
            .await;
        }
    }

    /// Publishes a packet (as JSON) on the device's upstream topic.
    async fn publish_json(&mut self, topic: &str, packet: serde_json::Value) {
        let payload = Registry::with_core()
            .from_json(&packet)
            .expect("test packet")
            .encode();
        self.client
            .publish(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("queued");
    }

    /// The next packet delivered whose JSON rendering `pick` accepts.
    async fn receive(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let registry = Registry::with_core();
        let mut found = None;
        self.expect(what, |p| match p {
            rumqttc::v5::mqttbytes::v5::Packet::Publish(publish) => {
                let json = mqchat_proto::Packet::decode(&publish.payload)
                    .map(|packet| registry.to_json(&packet))
                    .unwrap_or_default();
                let hit = pick(&json);
                if hit {
                    found = Some(json);
                }
                hit
            }
            _ => false,
        })
        .await;
        found.expect("picked")
    }

    async fn expect(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> bool,
    ) -> rumqttc::v5::mqttbytes::v5::Packet {
        within(what, async {
            while let Some(packet) = self.packets.recv().await {
                if pick(&packet) {
                    return packet;
                }
            }
            panic!("connection ended before {what}");
        })
        .await
    }
}

/// A group through Mosquitto with the SDK: alice creates it inviting bob and carol, they
/// accept, alice's message reaches both (fanned out by the hub to their inboxes), and an
/// outsider's message to the group is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_message_through_mosquitto() {
    use mqchat_proto::body::GroupCreate;

    let deployment = Deployment::start();
    let (alice, _alice_events) = deployment.connect("alice", "phone").await;
    let (bob, mut bob_events) = deployment.connect("bob", "phone").await;
    let (carol, mut carol_events) = deployment.connect("carol", "phone").await;
    let created = alice
        .create_group(GroupCreate {
            name: "Crew".into(),
            invite: vec![user("bob"), user("carol")],
            ..GroupCreate::default()
        })
        .await
        .expect("group created");
    let group = created.group;
    for (member, events) in [(&bob, &mut bob_events), (&carol, &mut carol_events)] {
        let invited = expect(events, "the invitation", |e| match e {
            Event::Invitation {
                group, by, name, ..
            } => Some((group, by, name)),
            _ => None,
        })
        .await;
        assert_eq!(invited, (group.clone(), user("alice"), "Crew".to_owned()));
        member
            .group(&group)
            .accept()
            .await
            .expect("invitation accepted");
    }

    let conv = ConversationRef::Group(group.clone());
    let sent = alice
        .send(conv.clone(), Message::text("hello crew"))
        .await
        .expect("sent to the group");
    for events in [&mut bob_events, &mut carol_events] {
        let got = incoming(events).await;
        assert_eq!(
            got,
            (
                conv.clone(),
                sent.seq,
                user("alice"),
                "hello crew".to_owned()
            )
        );
    }

    // An outsider cannot write to the group (nor subscribe to its members' inboxes, which
    // Mosquitto's ACL keeps to their owners).
    let mut mallory = Raw::connect(&deployment, "mallory", "mallory:raw").await;
    mallory.inbox("mallory", "raw").await;
    mallory
        .publish_json(
            "mq/up/mallory/raw",
            json!({"type": "message", "id": "0a03zkqvpmqc1", "conv": conv.to_string(), "text": "let me in"}),
        )
        .await;
    let refused = mallory
        .receive("the refusal", |e| e["type"] == "error")
        .await;
    assert!(refused["code"].as_u64().is_some(), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_refuses_spoofing_and_snooping() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};

    let deployment = Deployment::start();
    let (bob, _bob_events) = deployment.connect("bob", "phone").await;
    let (_carol, mut carol_events) = deployment.connect("carol", "phone").await;
    let mut alice = Raw::connect(&deployment, "alice", "alice:raw").await;

    // Alice publishes a message to carol on bob's upstream topic, to pass it off as his.
    let forged = Registry::with_core()
        .from_json(
            &json!({"type": "message", "id": "0a03zkqvpmqg1", "conv": "carol", "text": "I am bob"}),
        )
        .expect("packet")
        .encode();
    alice
        .client
        .publish("mq/up/bob/phone", QoS::AtLeastOnce, false, forged)
        .await
        .expect("queued");
    let puback = alice
        .expect("PUBACK", |p| matches!(p, Packet::PubAck(_)))
        .await;
    let Packet::PubAck(puback) = puback else {
        unreachable!("picked a PUBACK")
    };
    assert_eq!(puback.reason, PubAckReason::NotAuthorized);

    // Snooping: Mosquitto grants any subscription and applies its ACL at delivery, so
    // alice subscribes to bob's inbox (directly and by wildcard) and to the upstream topics
    // and must receive none of it.
    for filter in ["mq/in/bob/#", "mq/in/+/d", "mq/up/+/+", "mq/in/alice/#"] {
        alice
            .client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queued");
        alice
            .expect("SUBACK", |p| matches!(p, Packet::SubAck(_)))
            .await;
    }
    // Carol writes to bob, then to alice: the hub publishes bob's copy first, and Mosquitto
    // delivers to alice's connection in order, so by the time alice has her own message,
    // bob's would have reached her if the ACL let it.
    let (carol, _carol_events) = deployment.connect("carol", "laptop").await;
    carol
        .send(conv("bob"), Message::text("for bob only"))
        .await
        .expect("sent");
    carol
        .send(conv("alice"), Message::text("for alice"))
        .await
        .expect("sent");
    let Packet::Publish(publish) = alice
        .expect("a message in alice's inbox", |p| {
            matches!(p, Packet::Publish(_))
        })
        .await
    else {
        unreachable!("picked a PUBLISH")
    };
    assert_eq!(
        String::from_utf8_lossy(&publish.topic),
        "mq/in/alice/d",
        "the first message alice's connection got is her own"
    );

    // The barrier for the forgery: the real bob writes to carol; the forged message never
    // came before it.
    bob.send(conv("carol"), Message::text("the real bob"))
        .await
        .expect("sent");
    let (_, _, from, text) = incoming(&mut carol_events).await;
    assert_eq!((from, text.as_str()), (user("bob"), "the real bob"));

    // Nor can anyone write into an inbox, where only the hub writes.
    alice
        .client
        .publish("mq/in/carol/d", QoS::AtLeastOnce, false, vec![0xa0])
        .await
        .expect("queued");
    let Packet::PubAck(puback) = alice
        .expect("PUBACK", |p| matches!(p, Packet::PubAck(_)))
        .await
    else {
        unreachable!("picked a PUBACK")
    };
    assert_eq!(puback.reason, PubAckReason::NotAuthorized);

    // A wrong password does not get in.
    let mut options =
        rumqttc::v5::MqttOptions::new("alice:guess", "127.0.0.1", deployment.port.port());
    options.set_credentials("alice", "alice-account-password");
    let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 4);
    let refused = tokio::time::timeout(WAIT, eventloop.poll())
        .await
        .expect("an answer");
    assert!(
        matches!(
            refused,
            Err(rumqttc::v5::ConnectionError::ConnectionRefused(_))
        ),
        "the account password is not the broker password: {refused:?}"
    );
}

/// The generated files: Mosquitto accepts them (the deployment started), and a second run
/// keeps issued passwords, issues new users theirs, and drops disabled users.
#[test]
fn broker_config_is_idempotent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8");
    for user in ["alice", "bob"] {
        mqchat(
            &["user", "add", user, "--password-stdin", "--data-dir", data],
            Some("pw\n"),
        );
    }
    let config = |extra: &[&str]| {
        let mut args = vec![
            "broker-config",
            "mosquitto",
            "--data-dir",
            data,
            "--out",
            out,
        ];
        args.extend(extra);
        mqchat(&args, None)
    };
    let first = config(&[]);
    assert_eq!(first.lines().count(), 2, "{first}");
    let passwd =
        |out: &str| std::fs::read_to_string(Path::new(out).join("passwd")).expect("passwd");
    let before = passwd(out);
    let hub_before = std::fs::read_to_string(Path::new(out).join("hub.toml")).expect("hub.toml");

    mqchat(
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--data-dir",
            data,
        ],
        Some("pw\n"),
    );
    mqchat(&["user", "disable", "bob", "--data-dir", data], None);
    let second = config(&[]);
    assert!(second.starts_with("carol\tmqb_"), "{second}");
    assert_eq!(second.lines().count(), 1, "{second}");
    let after = passwd(out);
    let line = |text: &str, user: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .map(str::to_owned)
    };
    assert_eq!(line(&before, "alice"), line(&after, "alice"));
    assert_eq!(line(&before, "_hub"), line(&after, "_hub"));
    assert!(line(&after, "bob").is_none(), "{after}");
    assert!(line(&after, "carol").is_some(), "{after}");
    assert_eq!(
        hub_before,
        std::fs::read_to_string(Path::new(out).join("hub.toml")).expect("hub.toml")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(Path::new(out).join("passwd"))
            .expect("metadata")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let third = config(&["--reissue", "alice"]);
    assert!(third.starts_with("alice\tmqb_"), "{third}");
    assert_ne!(line(&after, "alice"), line(&passwd(out), "alice"));
}
