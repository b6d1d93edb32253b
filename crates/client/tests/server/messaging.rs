//! Messages, receipts, chat states, resends and requests.

use std::time::Duration;

use mqchat_client::{Event, HistoryQuery};
use mqchat_proto::body::{Body, Message, State, Sync};
use mqchat_proto::{
    ConversationRef, ErrorCode, MessageId, PacketKind, Registry, Seq, Timestamp, UserId,
};

use crate::common::*;

/// The position `n` after `seq`.
fn after(seq: Seq, n: u64) -> Seq {
    Seq::new(seq.get() + n)
}

#[tokio::test]
async fn message_round_trip_with_receipts() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut alice_events) = connect(&server, "alice", "phone").await?;
    let (bob, mut bob_events) = connect(&server, "bob", "phone").await?;

    let sent = alice.send(conv("bob"), Message::text("Hi")).await?;
    assert_eq!(sent.conv, conv("bob"));
    assert!(!sent.duplicate);
    assert!(
        sent.seq >= Seq::new(1) && sent.ts > Timestamp::EPOCH,
        "{sent:?}"
    );

    // Bob receives it with the same sequence number, named from his side.
    let got = expect_incoming(&mut bob_events).await;
    assert_eq!(
        got,
        (conv("alice"), sent.seq, user("alice"), "Hi".to_owned())
    );

    // Alice's own copy is an event too.
    let own = expect_message(&mut alice_events).await;
    assert_eq!(
        own,
        (conv("bob"), sent.seq, user("alice"), true, "Hi".to_owned())
    );

    // Bob's client marks it delivered by itself; alice hears of it.
    let delivered = expect(&mut alice_events, "a delivered marker", |e| match e {
        Event::Delivered { conv, by, up_to } if conv.to_string() == "bob" => {
            Some((by.user()?.clone(), up_to))
        }
        _ => None,
    })
    .await;
    assert_eq!(delivered, (user("bob"), sent.seq));

    // Bob reads it: alice is told, and so are bob's own devices.
    bob.mark_read(conv("alice"), sent.seq, false).await?;
    let read = expect(&mut alice_events, "a read marker", |e| match e {
        Event::Read { by, up_to, own, .. } => Some((by, up_to, own)),
        _ => None,
    })
    .await;
    assert_eq!(read, (user("bob"), sent.seq, false));
    let own_read = expect(&mut bob_events, "bob's own read marker", |e| match e {
        Event::Read {
            conv, up_to, own, ..
        } => Some((conv, up_to, own)),
        _ => None,
    })
    .await;
    assert_eq!(own_read, (conv("alice"), sent.seq, true));

    alice.close().await?;
    bob.close().await?;
    server.stop().await;
    Ok(())
}

async fn expect_chat_state(events: &mut mqchat_client::Events) -> (ConversationRef, UserId, State) {
    expect(events, "a chat state", |e| match e {
        Event::ChatState { conv, from, state } => Some((conv, from, state)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn chat_state_reaches_the_peer() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    let (_bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    alice.send(conv("bob"), Message::text("Hi")).await?;
    alice.chat_state(conv("bob"), State::Composing).await?;
    let state = expect_chat_state(&mut bob_events).await;
    assert_eq!(state, (conv("alice"), user("alice"), State::Composing));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn inactive_clients_miss_chat_states() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    let (bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    alice.send(conv("bob"), Message::text("Hi")).await?;
    expect_incoming(&mut bob_events).await;

    bob.set_active(false).await?;
    // A request answered after bob's UNSUBSCRIBE, on the same connection: the broker has
    // handled the UNSUBSCRIBE by then.
    bob.sync(Sync::default()).await?;
    alice.chat_state(conv("bob"), State::Composing).await?;
    alice
        .send(conv("bob"), Message::text("typed while away"))
        .await?;
    let (_, _, _, text) = expect_incoming(&mut bob_events).await;
    assert_eq!(text, "typed while away");

    bob.set_active(true).await?;
    bob.sync(Sync::default()).await?;
    alice.chat_state(conv("bob"), State::Paused).await?;
    let state = expect_chat_state(&mut bob_events).await;
    assert_eq!(
        state.2,
        State::Paused,
        "the chat state sent while inactive was dropped"
    );
    server.stop().await;
    Ok(())
}

/// Spec section 8: a signal to a user with whom no conversation exists yet is refused, so
/// that strangers cannot send typing notifications. It had no id: the refusal is an event.
#[tokio::test]
async fn a_chat_state_to_a_stranger_is_refused() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut alice_events) = connect(&server, "alice", "phone").await?;
    alice.chat_state(conv("bob"), State::Composing).await?;
    let refused = expect(&mut alice_events, "the refusal", |e| match e {
        Event::Error { id, code, .. } => Some((id, code)),
        _ => None,
    })
    .await;
    assert_eq!(refused, (None, ErrorCode::FORBIDDEN));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_resent_message_is_archived_once() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    let (_bob, mut bob_events) = connect(&server, "bob", "phone").await?;

    let mut packet = Message::text("once").to_packet();
    packet.conv = Some(conv("bob"));
    packet.id = Some(MessageId::new(0x0123_4567_89ab)?);
    let first = alice.send_packet(packet.clone()).await?;
    let second = alice.send_packet(packet).await?;
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!((second.id, second.seq), (first.id, first.seq));

    // Bob gets it once: the next message after it is the next one sent.
    let next = alice.send(conv("bob"), Message::text("next")).await?;
    assert_eq!(next.seq, after(first.seq, 1));
    let got: Vec<(Seq, String)> = [
        expect_incoming(&mut bob_events).await,
        expect_incoming(&mut bob_events).await,
    ]
    .into_iter()
    .map(|(_, seq, _, text)| (seq, text))
    .collect();
    assert_eq!(got, [(first.seq, "once".into()), (next.seq, "next".into())]);
    server.stop().await;
    Ok(())
}

/// Also the broker fault of `REFERENCE.md`: messages published right after the device's
/// DISCONNECT must not be acknowledged on the old socket and lost.
#[tokio::test]
async fn messages_sent_while_offline_arrive_on_reconnect() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    // Bob's device has a session, then goes away properly.
    let (bob, _bob_events) = connect(&server, "bob", "phone").await?;
    bob.close().await?;

    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        sent.push(alice.send(conv("bob"), Message::text(text)).await?.seq);
    }

    let (_bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let (_, seq, _, text) = expect_incoming(&mut bob_events).await;
        got.push((seq, text));
    }
    let expected: Vec<(Seq, String)> = sent
        .into_iter()
        .zip(["one", "two", "three"].map(String::from))
        .collect();
    assert_eq!(got, expected);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn sends_during_a_network_cut_go_out_on_reconnect() -> anyhow::Result<()> {
    let server = server().await?;
    let relay = Relay::start(server.tcp_addr()).await?;
    let (alice, mut alice_events) =
        mqchat_client::Client::connect(config_at(&relay.url(), &server, "alice", "phone")).await?;
    let (_bob, mut bob_events) = connect(&server, "bob", "phone").await?;

    relay.cut();
    expect(&mut alice_events, "a disconnection", |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let sent =
        tokio::time::timeout(WAIT, alice.send(conv("bob"), Message::text("still here"))).await??;
    expect(&mut alice_events, "the reconnection", |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    let got = expect_incoming(&mut bob_events).await;
    assert_eq!(
        got,
        (conv("alice"), sent.seq, user("alice"), "still here".into())
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn events_missed_during_a_cut_arrive_once_and_in_order() -> anyhow::Result<()> {
    let server = server().await?;
    let relay = Relay::start(server.tcp_addr()).await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    let (_bob, mut bob_events) =
        mqchat_client::Client::connect(config_at(&relay.url(), &server, "bob", "phone")).await?;
    let first = alice.send(conv("bob"), Message::text("before")).await?;
    expect_incoming(&mut bob_events).await;

    relay.cut();
    expect(&mut bob_events, "a disconnection", |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let mut sent = Vec::new();
    for text in ["a", "b", "c"] {
        sent.push(alice.send(conv("bob"), Message::text(text)).await?.seq);
    }
    let last = alice.send(conv("bob"), Message::text("after")).await?;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(expect_incoming(&mut bob_events).await.1);
    }
    assert_eq!(
        got,
        [
            after(first.seq, 1),
            after(first.seq, 2),
            after(first.seq, 3),
            last.seq
        ]
    );
    server.stop().await;
    Ok(())
}

/// With a clean start the broker forgets what it queued for the device while the network
/// was down: only the catch-up sync after reconnecting (spec section 13) brings it back.
#[tokio::test]
async fn catch_up_fetches_what_a_lost_session_missed() -> anyhow::Result<()> {
    let server = server().await?;
    let relay = Relay::start(server.tcp_addr()).await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    let bob_config = config_at(&relay.url(), &server, "bob", "phone")
        .clean_start(true)
        .reconnect_backoff(Duration::from_secs(1), Duration::from_secs(1));
    let (bob, mut bob_events) = mqchat_client::Client::connect(bob_config).await?;
    let first = alice.send(conv("bob"), Message::text("before")).await?;
    expect_incoming(&mut bob_events).await;
    // Answered after the client's own first sync (same connection, same reply topic): the
    // client knows where to catch up from.
    bob.sync(Sync::default()).await?;

    relay.cut();
    expect(&mut bob_events, "a disconnection", |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let mut sent = Vec::new();
    for text in ["a", "b", "c"] {
        sent.push(alice.send(conv("bob"), Message::text(text)).await?.seq);
    }
    let session_present = expect(&mut bob_events, "the reconnection", |e| match e {
        Event::Connected { session_present } => Some(session_present),
        _ => None,
    })
    .await;
    assert!(!session_present);
    let mut got = Vec::new();
    for _ in 0..3 {
        let (_, seq, _, text) = expect_incoming(&mut bob_events).await;
        got.push((seq, text));
    }
    assert_eq!(
        got,
        [
            (after(first.seq, 1), "a".to_owned()),
            (after(first.seq, 2), "b".to_owned()),
            (after(first.seq, 3), "c".to_owned())
        ]
    );
    assert_eq!(
        sent,
        [
            after(first.seq, 1),
            after(first.seq, 2),
            after(first.seq, 3)
        ]
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_message_to_nobody_is_refused() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _events) = connect(&server, "alice", "phone").await?;
    let err = alice
        .send(conv("nobody"), Message::text("hello?"))
        .await
        .expect_err("no such user");
    assert_eq!(err.refused(), Some(ErrorCode::NO_SUCH_USER), "{err}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn history_and_sync() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _events) = connect(&server, "alice", "phone").await?;
    let one = alice.send(conv("carol"), Message::text("one")).await?;
    let two = alice.send(conv("carol"), Message::text("two")).await?;

    let page = alice
        .history(
            conv("carol"),
            HistoryQuery {
                after: Some(Seq::NONE),
                ..HistoryQuery::default()
            },
        )
        .await?;
    let seqs: Vec<Option<u64>> = page.events.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, [Some(one.seq.get()), Some(two.seq.get())]);
    let text = Message::from_packet(&page.events[1])?.text;
    assert_eq!(text, "two");

    let changes = alice.sync(Sync::default()).await?;
    let entry = changes
        .conversations
        .iter()
        .find(|c| c.conv == conv("carol"))
        .expect("carol's conversation changed");
    assert_eq!(entry.last_seq, two.seq);
    assert!(changes.token >= entry.change);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn extension_packets_pass_through() -> anyhow::Result<()> {
    let server = server().await?;
    let mut registry = Registry::with_core();
    mqchat_reaction::register(&mut registry)?;
    let (alice, _alice_events) = mqchat_client::Client::connect(
        config(&server, "alice", "phone").registry(registry.clone()),
    )
    .await?;
    let (_bob, mut bob_events) =
        mqchat_client::Client::connect(config(&server, "bob", "phone").registry(registry)).await?;
    let hi = alice.send(conv("bob"), Message::text("Hi")).await?;
    let mut reaction = mqchat_reaction::Reaction {
        to: hi.seq.get(),
        emoji: "👍".into(),
        remove: false,
    }
    .to_packet();
    reaction.conv = Some(conv("bob"));
    let sent = alice.send_packet(reaction).await?;
    assert_eq!(sent.seq, after(hi.seq, 1));
    let packet = expect(&mut bob_events, "the reaction", |e| match e {
        Event::Other { packet } if packet.kind == mqchat_reaction::KIND => Some(packet),
        _ => None,
    })
    .await;
    assert_eq!(packet.seq, Some(sent.seq.get()));
    let reaction = mqchat_reaction::Reaction::from_packet(&packet)?;
    assert_eq!((reaction.to, reaction.emoji.as_str()), (hi.seq.get(), "👍"));
    assert_ne!(packet.kind, PacketKind::MESSAGE);
    server.stop().await;
    Ok(())
}
