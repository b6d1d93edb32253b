//! Groups through the SDK (spec 7.11): five users create, invite, accept, chat, type,
//! read, leave, are removed, promoted and renamed, and all see the same history; two
//! accepts at once both land; the group limit; and the attacks, refused with an error and
//! delivered to no one.

use mqchat_client::{Client, Event, Events, GroupUpdate, HistoryQuery, Receipt};
use mqchat_proto::body::{Body, GroupAction, GroupCreate, GroupEvent, Message, Role, State};
use mqchat_proto::{ConversationRef, ErrorCode, GroupId, Seq, UserId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet as MqttPacket, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};

use mqchat_testkit::within;

use crate::common::*;

/// A user's device with a log of every group event and message it was told, in order.
struct Member {
    name: &'static str,
    client: Client,
    events: Events,
    /// (seq, what) of each durable event of the group under test.
    log: Vec<(Seq, String)>,
    group: Option<GroupId>,
}

impl Member {
    async fn connect(server: &TestServer, name: &'static str) -> anyhow::Result<Self> {
        let (client, events) = connect(server, name, "phone").await?;
        Ok(Self {
            name,
            client,
            events,
            log: Vec::new(),
            group: None,
        })
    }

    fn record(&mut self, event: &Event) {
        let (group, seq, what) = match event {
            Event::Message {
                conv: ConversationRef::Group(group),
                seq,
                from,
                message,
                ..
            } => (group, *seq, format!("{from}: {}", message.text)),
            Event::Group {
                group,
                seq,
                by,
                change,
                ..
            } => (group, *seq, describe(by, change)),
            Event::Invitation { group, seq, by, .. } => {
                (group, *seq, format!("{by} invited {}", self.name))
            }
            _ => return,
        };
        if self.group.as_ref().is_none_or(|g| g == group) {
            self.log.push((seq, what));
        }
    }

    /// Waits for the first event `pick` accepts, logging the group's events on the way.
    async fn wait<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let name = self.name;
        let found = within(&format!("{what} for {name}"), async {
            while let Some(event) = self.events.next().await {
                self.record(&event);
                if let Some(found) = pick(&event) {
                    return Some(found);
                }
            }
            None
        })
        .await;
        found.unwrap_or_else(|| panic!("{name}: the events ended before {what}"))
    }

    /// Waits for the group event of `action` concerning `user`.
    async fn wait_change(&mut self, action: GroupAction, user: &str) -> Seq {
        let what = format!("{action:?} {user}");
        self.wait(&what, |e| match e {
            Event::Group { seq, change, .. }
                if change.action == action
                    && change.user.as_ref().map(UserId::as_str) == Some(user) =>
            {
                Some(*seq)
            }
            _ => None,
        })
        .await
    }

    /// Waits for a group message with this text; returns its seq.
    async fn wait_text(&mut self, text: &str) -> Seq {
        self.wait(&format!("message {text:?}"), |e| match e {
            Event::Message { seq, message, .. } if message.text == text => Some(*seq),
            _ => None,
        })
        .await
    }

    async fn invitation(&mut self) -> (GroupId, UserId, String) {
        self.wait("an invitation", |e| match e {
            Event::Invitation {
                group, by, name, ..
            } => Some((group.clone(), by.clone(), name.clone())),
            _ => None,
        })
        .await
    }
}

fn describe(by: &UserId, change: &GroupEvent) -> String {
    let user = change.user.as_ref().map_or("-", UserId::as_str);
    let mut text = format!("{by} {:?} {user}", change.action);
    if let Some(role) = change.role {
        text.push_str(&format!(" {role:?}"));
    }
    if let Some(name) = &change.name {
        text.push_str(&format!(" {name:?}"));
    }
    text
}

async fn server_with_five() -> anyhow::Result<TestServer> {
    let server = server().await?;
    for name in ["dave", "erin"] {
        server.add_user(name, PASSWORD)?;
    }
    Ok(server)
}

fn refused(result: Result<impl std::fmt::Debug, mqchat_client::Error>) -> Option<ErrorCode> {
    match result {
        Ok(ok) => panic!("accepted: {ok:?}"),
        Err(e) => e.refused(),
    }
}

fn group_conv(group: &GroupId) -> ConversationRef {
    ConversationRef::Group(group.clone())
}

/// Waits until `receipt` of alice's message says what `done` wants, asking again after
/// each marker alice is told.
async fn receipt_when(
    alice: &mut Member,
    conv: &ConversationRef,
    seq: Seq,
    done: impl Fn(&Receipt) -> bool,
) -> Receipt {
    loop {
        let receipt = alice
            .client
            .receipt(conv.clone(), seq)
            .await
            .expect("receipt");
        if done(&receipt) {
            return receipt;
        }
        alice
            .wait("a marker", |e| {
                matches!(e, Event::Delivered { .. } | Event::Read { .. }).then_some(())
            })
            .await;
    }
}

#[tokio::test]
async fn five_users_share_one_ordered_group() -> anyhow::Result<()> {
    let server = server_with_five().await?;
    let mut alice = Member::connect(&server, "alice").await?;
    let mut bob = Member::connect(&server, "bob").await?;
    let mut carol = Member::connect(&server, "carol").await?;
    let mut dave = Member::connect(&server, "dave").await?;
    let mut erin = Member::connect(&server, "erin").await?;

    let created = alice
        .client
        .create_group(GroupCreate {
            name: "Crew".into(),
            description: Some("Weekend climbing".into()),
            avatar: Some("https://example.org/crew.png".into()),
            invite: vec![user("bob"), user("carol"), user("dave")],
            ..GroupCreate::default()
        })
        .await?;
    let gid = created.group;
    let conv = group_conv(&gid);
    for m in [&mut alice, &mut bob, &mut carol, &mut dave, &mut erin] {
        m.group = Some(gid.clone());
    }
    for m in [&mut bob, &mut carol, &mut dave] {
        let (group, by, name) = m.invitation().await;
        assert_eq!(
            (group, by, name.as_str()),
            (gid.clone(), user("alice"), "Crew")
        );
    }
    // An invited user may look at the group before answering.
    let info = dave.client.group(&gid).info().await?;
    assert_eq!(
        (info.name.as_str(), info.description.as_deref()),
        ("Crew", Some("Weekend climbing"))
    );
    assert!(info.member(&user("dave")).is_some_and(|m| m.invited));
    bob.client.group(&gid).accept().await?;
    carol.client.group(&gid).accept().await?;
    dave.client.group(&gid).decline().await?;
    dave.wait_change(GroupAction::Declined, "dave").await;
    alice.client.group(&gid).invite(&user("erin")).await?;
    erin.invitation().await;
    erin.client.group(&gid).accept().await?;
    alice.wait_change(GroupAction::Joined, "erin").await;

    // Roles and profile: alice promotes bob, bob (an admin now) renames the group.
    alice
        .client
        .group(&gid)
        .set_role(&user("bob"), Role::Admin)
        .await?;
    bob.wait_change(GroupAction::Role, "bob").await;
    bob.client.group(&gid).rename("Crew 2").await?;
    bob.client
        .group(&gid)
        .update(GroupUpdate::description("Climbing, mostly"))
        .await?;

    // Messages, typing and receipts.
    let hello = alice
        .client
        .send(conv.clone(), Message::text("hello all"))
        .await?;
    for m in [&mut bob, &mut carol, &mut erin] {
        assert_eq!(m.wait_text("hello all").await, hello.seq);
    }
    carol
        .client
        .chat_state(conv.clone(), State::Composing)
        .await?;
    for m in [&mut alice, &mut bob, &mut erin] {
        let from = m
            .wait("carol typing", |e| match e {
                Event::ChatState {
                    conv: c,
                    from,
                    state: State::Composing,
                } if *c == conv => Some(from.clone()),
                _ => None,
            })
            .await;
        assert_eq!(from, user("carol"));
    }
    bob.client.mark_read(conv.clone(), hello.seq, false).await?;
    carol
        .client
        .mark_read(conv.clone(), hello.seq, false)
        .await?;
    // erin's client marks it delivered by itself; bob and carol read it.
    let receipt = receipt_when(&mut alice, &conv, hello.seq, |r| {
        r.n_read() == 2 && r.n_delivered() == 3
    })
    .await;
    assert_eq!(receipt.n_total(), 3, "bob, carol and erin: {receipt:?}");
    let read_by: Vec<&str> = receipt
        .members
        .iter()
        .filter(|m| m.read)
        .map(|m| m.user.as_str())
        .collect();
    assert_eq!(read_by, ["bob", "carol"]);
    // The hub's roster has the same markers.
    let info = alice.client.group(&gid).info().await?;
    assert_eq!(info.name, "Crew 2");
    assert!(
        info.member(&user("bob"))
            .is_some_and(|m| m.read >= hello.seq && m.role == Role::Admin)
    );

    let reply = bob
        .client
        .send(conv.clone(), Message::text("hi alice"))
        .await?;
    assert_eq!(reply.seq, hello.seq.next());

    // carol leaves, alice removes erin; each learns of it, then hears nothing more.
    carol.client.group(&gid).leave().await?;
    alice.client.group(&gid).remove(&user("erin")).await?;
    erin.wait_change(GroupAction::Removed, "erin").await;
    alice
        .client
        .send(conv.clone(), Message::text("bye"))
        .await?;
    alice.wait_text("bye").await;
    bob.wait_text("bye").await;
    // After bob's demotion by alice, two members remain.
    alice
        .client
        .group(&gid)
        .set_role(&user("bob"), Role::Member)
        .await?;
    let info = alice.client.group(&gid).info().await?;
    let members: Vec<(&str, Role, bool)> = info
        .members
        .iter()
        .map(|m| (m.user.as_str(), m.role, m.invited))
        .collect();
    assert_eq!(
        members,
        [("alice", Role::Owner, false), ("bob", Role::Member, false)]
    );
    assert_eq!(info.n_members(), 2);

    // The barrier for carol and erin: a direct message each sends arrives after anything
    // of the group the hub published to them before.
    for m in [&mut carol, &mut erin] {
        m.client
            .send(conv_of("alice"), Message::text("still there?"))
            .await?;
        m.wait_text("still there?").await;
    }

    // Everyone saw the same events in the same order, from their joining until they left.
    let joined = |m: &Member| {
        m.log
            .iter()
            .find(|(_, what)| {
                what.ends_with(&format!("Joined {} Member", m.name)) || what.contains("Created")
            })
            .map(|(seq, _)| *seq)
            .expect("a start")
    };
    let alice_log = alice.log.clone();
    for m in [&bob, &carol, &erin] {
        let start = joined(m);
        let end = m.log.last().map(|(seq, _)| *seq).expect("events");
        let expected: Vec<_> = alice_log
            .iter()
            .filter(|(seq, _)| (start..=end).contains(seq))
            .cloned()
            .collect();
        let seen: Vec<_> = m
            .log
            .iter()
            .filter(|(seq, _)| *seq >= start)
            .cloned()
            .collect();
        assert_eq!(seen, expected, "{} saw the group differently", m.name);
    }
    assert!(
        carol
            .log
            .last()
            .is_some_and(|(_, w)| w == "carol Left carol"),
        "{:?}",
        carol.log
    );
    assert!(
        erin.log
            .last()
            .is_some_and(|(_, w)| w == "alice Removed erin"),
        "{:?}",
        erin.log
    );
    // dave saw only his invitation, and his own answer.
    let dave_saw: Vec<&str> = dave.log.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(dave_saw, ["alice invited dave", "dave Declined dave"]);
    // alice's live view is the hub's history, with nothing missing or repeated.
    let history = alice
        .client
        .history(
            conv.clone(),
            HistoryQuery {
                after: Some(Seq::NONE),
                limit: Some(500),
                ..HistoryQuery::default()
            },
        )
        .await?;
    let stored: Vec<u64> = history.events.iter().filter_map(|p| p.seq).collect();
    let live: Vec<u64> = alice_log.iter().map(|(seq, _)| seq.get()).collect();
    assert_eq!(&stored[..live.len()], &live[..]);
    // Each lists the groups they are in: carol left, dave declined, erin was removed.
    for m in [&bob, &carol, &dave, &erin] {
        let names: Vec<String> = m
            .client
            .groups()
            .await?
            .into_iter()
            .map(|g| g.name)
            .collect();
        let expected: &[&str] = if m.name == "bob" { &["Crew 2"] } else { &[] };
        assert_eq!(names, expected, "{}", m.name);
    }
    for m in [alice, bob, carol, dave, erin] {
        m.client.close().await?;
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn simultaneous_accepts_all_land() -> anyhow::Result<()> {
    let server = server_with_five().await?;
    let alice = Member::connect(&server, "alice").await?;
    let mut invitees = Vec::new();
    for name in ["bob", "carol", "dave", "erin"] {
        invitees.push(Member::connect(&server, name).await?);
    }
    let created = alice
        .client
        .create_group(GroupCreate {
            name: "Race".into(),
            invite: ["bob", "carol", "dave", "erin"].map(user).to_vec(),
            ..GroupCreate::default()
        })
        .await?;
    let gid = created.group;
    for m in &mut invitees {
        m.invitation().await;
    }
    // Every accept is sent before any answer is awaited.
    let accepts: Vec<_> = invitees
        .iter()
        .map(|m| {
            let client = m.client.clone();
            let gid = gid.clone();
            tokio::spawn(async move { client.group(&gid).accept().await })
        })
        .collect();
    let mut seqs = Vec::new();
    for accept in accepts {
        seqs.push(accept.await??.seq);
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 4, "each accept is its own event: {seqs:?}");
    let info = alice.client.group(&gid).info().await?;
    assert_eq!(info.n_members(), 5);
    assert!(info.members.iter().all(|m| !m.invited));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn ownership_moves_and_the_group_ends() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.max_group_members = 3).await?;
    for name in ["alice", "bob", "carol", "dave"] {
        server.add_user(name, PASSWORD)?;
    }
    let alice = Member::connect(&server, "alice").await?;
    let mut bob = Member::connect(&server, "bob").await?;
    let mut carol = Member::connect(&server, "carol").await?;
    let too_many = alice
        .client
        .create_group(GroupCreate {
            name: "Big".into(),
            invite: ["bob", "carol", "dave"].map(user).to_vec(),
            ..GroupCreate::default()
        })
        .await;
    assert_eq!(refused(too_many), Some(ErrorCode::GROUP_FULL));
    let gid = alice
        .client
        .create_group(GroupCreate {
            name: "Small".into(),
            invite: vec![user("bob"), user("carol")],
            ..GroupCreate::default()
        })
        .await?
        .group;
    assert_eq!(
        refused(alice.client.group(&gid).invite(&user("dave")).await),
        Some(ErrorCode::GROUP_FULL)
    );
    bob.invitation().await;
    carol.invitation().await;
    bob.client.group(&gid).accept().await?;
    carol.client.group(&gid).accept().await?;
    // The owner cannot just leave; after a transfer she can.
    assert_eq!(
        refused(alice.client.group(&gid).leave().await),
        Some(ErrorCode::FORBIDDEN)
    );
    alice
        .client
        .group(&gid)
        .transfer_ownership(&user("bob"))
        .await?;
    bob.wait_change(GroupAction::Owner, "bob").await;
    let info = bob.client.group(&gid).info().await?;
    assert_eq!(info.owner(), Some(&user("bob")));
    assert_eq!(
        info.member(&user("alice")).map(|m| m.role),
        Some(Role::Admin)
    );
    alice.client.group(&gid).leave().await?;
    bob.client.group(&gid).delete().await?;
    let seq = carol
        .wait("the deletion", |e| match e {
            Event::Group {
                seq, change, by, ..
            } if change.action == GroupAction::Deleted => {
                assert_eq!(*by, user("bob"));
                Some(*seq)
            }
            _ => None,
        })
        .await;
    assert!(seq > Seq::new(1));
    assert_eq!(
        refused(
            carol
                .client
                .send(group_conv(&gid), Message::text("hello?"))
                .await
        ),
        Some(ErrorCode::NOT_FOUND)
    );
    server.stop().await;
    Ok(())
}

/// A plain MQTT 5 client, for what the SDK would not send.
struct Raw {
    client: AsyncClient,
    eventloop: rumqttc::v5::EventLoop,
}

impl Raw {
    async fn login(server: &TestServer, user: &str, device: &str) -> Self {
        let addr = server.tcp_addr();
        let mut options = MqttOptions::new(
            format!("{user}:{device}"),
            addr.ip().to_string(),
            addr.port(),
        );
        options.set_credentials(user, PASSWORD);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        loop {
            match tokio::time::timeout(WAIT, eventloop.poll())
                .await
                .expect("connected in time")
                .expect("connected")
            {
                MqttEvent::Incoming(MqttPacket::ConnAck(_)) => break,
                _ => continue,
            }
        }
        Self { client, eventloop }
    }

    async fn next(&mut self) -> MqttPacket {
        loop {
            match tokio::time::timeout(WAIT, self.eventloop.poll())
                .await
                .expect("a packet in time")
                .expect("connected")
            {
                MqttEvent::Incoming(packet) => return packet,
                MqttEvent::Outgoing(_) => {}
            }
        }
    }

    /// Whether the broker grants the subscription.
    async fn subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queued");
        loop {
            if let MqttPacket::SubAck(ack) = self.next().await {
                return ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
            }
        }
    }

    /// Publishes `payload` upstream and returns the hub's reply (its JSON rendering).
    async fn request(&mut self, topic: &str, payload: Vec<u8>) -> serde_json::Value {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queued");
        loop {
            if let MqttPacket::Publish(p) = self.next().await {
                let packet = mqchat_proto::Packet::decode(&p.payload).expect("a packet");
                return mqchat_proto::Registry::with_core().to_json(&packet);
            }
        }
    }
}

#[tokio::test]
async fn attacks_on_a_group_are_refused_and_reach_no_one() -> anyhow::Result<()> {
    let server = server_with_five().await?;
    let mut alice = Member::connect(&server, "alice").await?;
    let mut bob = Member::connect(&server, "bob").await?;
    let mut carol = Member::connect(&server, "carol").await?;
    let mut mallory = Member::connect(&server, "dave").await?;
    let gid = alice
        .client
        .create_group(GroupCreate {
            name: "Private".into(),
            invite: vec![user("bob"), user("carol")],
            ..GroupCreate::default()
        })
        .await?
        .group;
    let conv = group_conv(&gid);
    for m in [&mut alice, &mut bob, &mut carol, &mut mallory] {
        m.group = Some(gid.clone());
    }
    bob.invitation().await;
    carol.invitation().await;
    bob.client.group(&gid).accept().await?;
    carol.client.group(&gid).accept().await?;
    alice
        .client
        .send(conv.clone(), Message::text("members only"))
        .await?;
    carol.wait_text("members only").await;
    alice.client.group(&gid).remove(&user("carol")).await?;
    for m in [&mut alice, &mut bob, &mut carol] {
        m.wait_change(GroupAction::Removed, "carol").await;
    }

    let forbidden = Some(ErrorCode::FORBIDDEN);
    // A stranger: writes, reads, joins uninvited, types.
    let m = &mallory.client;
    assert_eq!(
        refused(m.send(conv.clone(), Message::text("let me in")).await),
        forbidden
    );
    assert_eq!(refused(m.group(&gid).info().await), forbidden);
    assert_eq!(
        refused(m.history(conv.clone(), HistoryQuery::default()).await),
        forbidden
    );
    assert_eq!(refused(m.group(&gid).accept().await), forbidden);
    assert_eq!(
        refused(m.group(&gid).invite(&user("dave")).await),
        forbidden
    );
    m.chat_state(conv.clone(), State::Composing).await?;
    let code = mallory
        .wait("the refused chat state", |e| match e {
            Event::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::FORBIDDEN);
    // A removed member keeps sending.
    assert_eq!(
        refused(
            carol
                .client
                .send(conv.clone(), Message::text("I'm back"))
                .await
        ),
        forbidden
    );
    assert_eq!(
        refused(carol.client.group(&gid).accept().await),
        Some(ErrorCode::CONFLICT)
    );
    // A plain member tries what admins do.
    let b = &bob.client;
    assert_eq!(
        refused(b.group(&gid).invite(&user("dave")).await),
        forbidden
    );
    assert_eq!(
        refused(b.group(&gid).remove(&user("alice")).await),
        forbidden
    );
    assert_eq!(
        refused(b.group(&gid).set_role(&user("bob"), Role::Admin).await),
        forbidden
    );
    assert_eq!(refused(b.group(&gid).rename("Mine now").await), forbidden);
    assert_eq!(
        refused(b.group(&gid).transfer_ownership(&user("bob")).await),
        forbidden
    );
    assert_eq!(refused(b.group(&gid).delete().await), forbidden);
    // Forging a membership event: the SDK will not send one, and the hub refuses it raw.
    let mut forged = GroupEvent::new(GroupAction::Joined, Some(user("dave"))).to_packet();
    forged.conv = Some(conv.clone());
    forged.id = Some(mqchat_proto::MessageId::new(1 << 40).expect("valid id"));
    let local = b.send_packet(forged.clone()).await;
    assert!(
        local.as_ref().is_err_and(mqchat_client::Error::is_invalid),
        "{local:?}"
    );
    let mut raw = Raw::login(&server, "bob", "raw").await;
    assert!(raw.subscribe("mq/in/bob/r/raw").await);
    let reply = raw.request("mq/up/bob/raw", forged.encode()).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_u64()),
        (Some("error"), Some(u64::from(ErrorCode::WRONG_TOPIC.0))),
        "{reply}"
    );
    // Snooping on another member's inbox, where the group's traffic goes.
    for filter in [
        "mq/in/alice/d",
        "mq/in/alice/e",
        "mq/in/alice/#",
        "mq/in/+/d",
        "mq/in/#",
        "mq/#",
        "#",
        "$share/x/mq/in/alice/d",
        "mq/up/alice/+",
    ] {
        assert!(
            !raw.subscribe(filter).await,
            "bob may not subscribe to {filter}"
        );
    }

    // Nothing reached anyone: the next thing each member sees of the group is this.
    alice
        .client
        .send(conv.clone(), Message::text("still private"))
        .await?;
    for m in [&mut alice, &mut bob] {
        m.log.clear();
        m.wait_text("still private").await;
        let seen: Vec<&str> = m.log.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(seen, ["alice: still private"], "{}", m.name);
    }
    let info = alice.client.group(&gid).info().await?;
    assert_eq!(
        info.members
            .iter()
            .map(|m| m.user.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    // carol and the stranger got nothing of it: a direct message each sends is the next
    // thing they receive.
    for m in [&mut carol, &mut mallory] {
        m.log.clear();
        m.client
            .send(conv_of("alice"), Message::text("ping"))
            .await?;
        m.wait(&format!("{}'s own ping", m.name), |e| match e {
            Event::Message { message, .. } if message.text == "ping" => Some(()),
            Event::Message { message, .. } => panic!("received {:?}", message.text),
            _ => None,
        })
        .await;
        assert!(m.log.is_empty(), "{}: {:?}", m.name, m.log);
    }
    server.stop().await;
    Ok(())
}

fn conv_of(name: &str) -> ConversationRef {
    conv(name)
}

#[tokio::test]
async fn direct_receipts_come_from_the_peer_markers() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = Member::connect(&server, "alice").await?;
    let mut bob = Member::connect(&server, "bob").await?;
    let sent = alice
        .client
        .send(conv_of("bob"), Message::text("Hi"))
        .await?;
    bob.wait_text("Hi").await;
    bob.client
        .mark_read(conv_of("alice"), sent.seq, false)
        .await?;
    let receipt = receipt_when(&mut alice, &conv_of("bob"), sent.seq, |r| r.n_read() == 1).await;
    assert_eq!(
        (
            receipt.n_delivered(),
            receipt.n_total(),
            receipt.members[0].user.as_str()
        ),
        (1, 1, "bob")
    );
    server.stop().await;
    Ok(())
}
