//! Client state indication (spec section 12), measured: what an inactive device receives
//! during a busy typing conversation, next to an active one, while durable traffic flows to
//! both. The counts are MQTT packets read off the wire by a proxy in front of each device.
//!
//! Run `cargo test -p mqchat-client --test faults client_state -- --nocapture` for the
//! table.

use mqchat_client::Presence;
use mqchat_proto::body::{Availability, ContactAction, State, Sync};

use crate::proxy::{Proxy, Traffic};
use crate::view::{Archive, Device, send_many};
use mqchat_testkit::sdk::{config, config_at, conv, server, user};

/// Rounds of the conversation: each is a burst of chat states and a message.
const ROUNDS: usize = 20;
/// Chat states per round.
const TYPING: usize = 10;
/// Alice's presence changes every this many rounds.
const PRESENCE_EVERY: usize = 5;

#[tokio::test]
async fn client_state_indication_drops_chat_states_and_presence_only() -> anyhow::Result<()> {
    let server = server().await?;
    let archive = Archive::new();
    let alice = Device::connect(config(&server, "alice", "phone")).await?;
    let phone_network = Proxy::start(server.tcp_addr()).await?;
    let laptop_network = Proxy::start(server.tcp_addr()).await?;
    let phone = Device::connect(config_at(&phone_network.url(), &server, "bob", "phone")).await?;
    let laptop =
        Device::connect(config_at(&laptop_network.url(), &server, "bob", "laptop")).await?;

    // Contacts, so that bob may watch alice's presence.
    alice
        .client()
        .contact(user("bob"), ContactAction::Request, None)
        .await?;
    phone
        .client()
        .contact(user("alice"), ContactAction::Accept, None)
        .await?;
    for device in [&phone, &laptop] {
        device.client().watch_presence(&user("alice")).await?;
        device
            .wait_for("alice's presence", |v| !v.presence.is_empty())
            .await;
    }

    // The phone goes to the background. Its sync is answered after its UNSUBSCRIBE was
    // handled (same connection, in order).
    phone.client().set_active(false).await?;
    phone.client().sync(Sync::default()).await?;
    let before = [phone_network.traffic(), laptop_network.traffic()];
    let presence_before = [phone.view().presence.len(), laptop.view().presence.len()];

    // A busy conversation: alice types in bursts, sends, and now and then changes her
    // presence.
    let mut availability = Availability::Available;
    for round in 0..ROUNDS {
        for i in 0..TYPING {
            let state = if i % 2 == 0 {
                State::Composing
            } else {
                State::Paused
            };
            alice.client().chat_state(conv("bob"), state).await?;
        }
        send_many(
            alice.client(),
            &archive,
            "bob",
            &format!("round {round}"),
            1,
        )
        .await?;
        if round % PRESENCE_EVERY == PRESENCE_EVERY - 1 {
            availability = match availability {
                Availability::Available => Availability::Away,
                _ => Availability::Available,
            };
            alice
                .client()
                .set_presence(Presence::new(availability))
                .await?;
        }
    }
    let typed = ROUNDS * TYPING;
    let presence_changes = ROUNDS / PRESENCE_EVERY;
    // The active device sees all of it; both see every message.
    laptop
        .wait_for("every chat state and presence change", |v| {
            v.chat_states >= typed && v.presence.len() >= presence_before[1] + presence_changes
        })
        .await;
    // The last presence change travels with nothing after it: a message behind it shows
    // the inactive device had every chance to receive it.
    send_many(alice.client(), &archive, "bob", "the end", 1).await?;
    for device in [&phone, &laptop] {
        device.wait_complete(&archive, &["alice"]).await;
        device.assert_complete(&archive, &["alice"]);
    }
    let after = [phone_network.traffic(), laptop_network.traffic()];
    let inactive = after[0].since(&before[0]);
    let active = after[1].since(&before[1]);

    println!(
        "A busy conversation: {ROUNDS} messages plus one, {typed} chat states, {presence_changes} presence changes"
    );
    println!(
        "device (broker to device)  inbox d  inbox e  replies  presence  PUBLISH  packets  bytes"
    );
    for (name, t) in [
        ("bob:phone, inactive", &inactive),
        ("bob:laptop, active", &active),
    ] {
        println!("{name:<25}{}", row(t));
    }

    assert_eq!(phone.view().chat_states, 0);
    assert_eq!(phone.view().presence.len(), presence_before[0]);
    assert_eq!((inactive.publishes("e"), inactive.publishes("pr")), (0, 0));
    assert_eq!(active.publishes("e"), typed as u64);
    assert_eq!(active.publishes("pr"), presence_changes as u64);
    assert_eq!(
        inactive.publishes("d"),
        active.publishes("d"),
        "durable traffic is the same"
    );
    assert!(inactive.publishes("d") > ROUNDS as u64);

    // Active again: alice's current presence arrives at once (retained).
    phone.client().set_active(true).await?;
    phone
        .wait_for("alice's current presence", |v| {
            v.presence.len() > presence_before[0]
                && v.presence.last().map(|p| p.2) == Some(Some(availability))
        })
        .await;
    server.stop().await;
    Ok(())
}

fn row(t: &Traffic) -> String {
    let publishes: u64 = t.publishes.values().map(|(n, _)| n).sum();
    format!(
        "{:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>6}",
        t.publishes("d"),
        t.publishes("e"),
        t.publishes("r"),
        t.publishes("pr"),
        publishes,
        t.packets,
        t.bytes
    )
}
