//! One user, several devices: carbons, read markers across devices, a device that was away
//! when markers moved, and a new device with no state at all.

use mqchat_client::{Client, Conversation, HistoryQuery, Seq};
use mqchat_proto::ConversationRef;
use mqchat_proto::body::{Body, Message, Sync};

use crate::view::{Archive, Device, send_many};
use mqchat_testkit::sdk::{config, conv, server};

/// Messages each sender sends in the first round.
const N: usize = 20;

/// Alice has a phone, a laptop and a tablet; bob and carol one phone each. Everything
/// alice sends from one device, and everything she receives, is on all three, in order,
/// with its sequence number. She reads on the laptop: every device of hers hears of it, the
/// tablet (away then, with no broker session to queue it) from the sync when it returns,
/// and bob sees that she read. A new device with no state lists her conversations and
/// pages their history: the same view, with the right unread counts and markers.
#[tokio::test]
async fn every_device_of_a_user_has_the_same_view() -> anyhow::Result<()> {
    let server = server().await?;
    let archive = Archive::new();
    let phone = Device::connect(config(&server, "alice", "phone")).await?;
    let laptop = Device::connect(config(&server, "alice", "laptop")).await?;
    let mut tablet = Device::connect(config(&server, "alice", "tablet")).await?;
    let bob = Device::connect(config(&server, "bob", "phone")).await?;
    let carol = Device::connect(config(&server, "carol", "phone")).await?;
    tablet.client().sync(Sync::default()).await?;

    // Four senders at once, two of them alice's devices.
    let (a, b, c, d) = tokio::join!(
        send_many(phone.client(), &archive, "bob", "alice's phone to bob", N),
        send_many(
            laptop.client(),
            &archive,
            "carol",
            "alice's laptop to carol",
            N
        ),
        send_many(bob.client(), &archive, "alice", "bob to alice", N),
        send_many(carol.client(), &archive, "alice", "carol to alice", N),
    );
    a?;
    b?;
    c?;
    d?;
    for device in [&phone, &laptop, &tablet] {
        device.wait_complete(&archive, &["bob", "carol"]).await;
        device.assert_complete(&archive, &["bob", "carol"]);
    }
    bob.wait_complete(&archive, &["alice"]).await;
    carol.wait_complete(&archive, &["alice"]).await;

    // The tablet's app is closed; its next start will be clean (no broker session).
    let tablet_state = tablet.close().await?;

    // Alice reads both conversations on her laptop, carol reads hers; then bob writes again.
    let last = |peer: &str| {
        archive
            .conversation("alice", peer)
            .last()
            .map_or(0, |e| e.0)
    };
    let (bob_last, carol_last) = (last("bob"), last("carol"));
    laptop
        .client()
        .mark_read(conv("bob"), Seq::new(bob_last), false)
        .await?;
    laptop
        .client()
        .mark_read(conv("carol"), Seq::new(carol_last), false)
        .await?;
    carol
        .client()
        .mark_read(conv("alice"), Seq::new(carol_last), false)
        .await?;

    let read_everywhere = |v: &crate::view::View| {
        v.read_by("bob", "alice") == Some(bob_last)
            && v.read_by("carol", "alice") == Some(carol_last)
            && v.read_by("carol", "carol") == Some(carol_last)
    };
    for device in [&phone, &laptop] {
        device.wait_for("the read markers", read_everywhere).await;
        let view = device.view();
        assert!(
            view.reads
                .iter()
                .filter(|(_, by, _, _)| by == "alice")
                .all(|(_, _, _, own)| *own),
            "{}: alice's reads are her own: {:?}",
            device.name,
            view.reads
        );
    }
    bob.wait_for("alice's read marker", |v| {
        v.reads
            .iter()
            .any(|r| *r == ("alice".to_owned(), "alice".to_owned(), bob_last, false))
    })
    .await;
    send_many(bob.client(), &archive, "alice", "bob again", 5).await?;

    // The tablet comes back clean: only the sync can tell it what moved while it was away.
    tablet
        .restart(
            config(&server, "alice", "tablet")
                .clean_start(true)
                .resume(tablet_state),
        )
        .await?;
    tablet.wait_for("the read markers", read_everywhere).await;
    for device in [&phone, &laptop, &tablet] {
        device.wait_complete(&archive, &["bob", "carol"]).await;
        device.assert_complete(&archive, &["bob", "carol"]);
    }

    // A new device with no state: its conversation list and history give the same view.
    let desk = Device::connect(config(&server, "alice", "desk").clean_start(true)).await?;
    let entries = conversations(desk.client()).await?;
    let names: Vec<String> = entries.iter().map(|e| e.conv.to_string()).collect();
    assert_eq!(names, ["bob", "carol"], "newest first");
    let bob_entry = &entries[0];
    assert_eq!(
        (
            bob_entry.last_seq.get(),
            bob_entry.read.get(),
            bob_entry.unread
        ),
        (bob_last + 5, bob_last, 5),
        "bob: last, read, unread"
    );
    let carol_entry = &entries[1];
    assert_eq!(
        (
            carol_entry.read.get(),
            carol_entry.unread,
            carol_entry.peer_read.get(),
        ),
        (carol_last, 0, carol_last),
        "carol: read, unread, carol's read"
    );
    for peer in ["bob", "carol"] {
        let backward = history_backward(desk.client(), conv(peer)).await?;
        let forward = history_forward(desk.client(), conv(peer)).await?;
        let expected = archive.conversation("alice", peer);
        assert_eq!(backward, expected, "{peer}, paged backward");
        assert_eq!(forward, expected, "{peer}, paged forward");
    }
    // Its live view starts where the history ends.
    assert!(desk.view().messages.is_empty());
    send_many(carol.client(), &archive, "alice", "welcome", 1).await?;
    desk.wait_for("the next message", |v| v.count("carol") == 1)
        .await;
    assert_eq!(
        desk.view().messages["carol"][0].seq,
        carol_last + 1,
        "the first live event"
    );
    server.stop().await;
    Ok(())
}

/// Every conversation, newest first, a page of one at a time.
async fn conversations(client: &Client) -> anyhow::Result<Vec<Conversation>> {
    let mut out: Vec<Conversation> = Vec::new();
    loop {
        let page = client
            .sync(Sync {
                newest_first: true,
                before: out.last().map(|e| e.change),
                limit: Some(1),
                ..Sync::default()
            })
            .await?;
        out.extend(page.conversations);
        if !page.more {
            return Ok(out);
        }
    }
}

/// (seq, sender, text) of an event as the user received it.
fn event(conv: &ConversationRef, packet: &mqchat_proto::Packet) -> (u64, String, String) {
    let from = packet
        .from
        .clone()
        .or_else(|| conv.peer().cloned())
        .map(|u| u.to_string())
        .unwrap_or_default();
    let text = Message::from_packet(packet)
        .map(|m| m.text)
        .unwrap_or_default();
    (packet.seq.unwrap_or(0), from, text)
}

/// The whole history, paged backward from the newest, seven at a time.
async fn history_backward(
    client: &Client,
    conv: ConversationRef,
) -> anyhow::Result<Vec<(u64, String, String)>> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = client
            .history(
                conv.clone(),
                HistoryQuery {
                    before: before.map(Seq::new),
                    limit: Some(7),
                    ..HistoryQuery::default()
                },
            )
            .await?;
        let mut events: Vec<_> = page.events.iter().map(|p| event(&conv, p)).collect();
        before = events.first().map(|e| e.0);
        events.append(&mut out);
        out = events;
        if !page.more {
            return Ok(out);
        }
    }
}

/// The whole history, paged forward from the start, seven at a time.
async fn history_forward(
    client: &Client,
    conv: ConversationRef,
) -> anyhow::Result<Vec<(u64, String, String)>> {
    let mut out: Vec<(u64, String, String)> = Vec::new();
    loop {
        let page = client
            .history(
                conv.clone(),
                HistoryQuery {
                    after: Some(Seq::new(out.last().map_or(0, |e| e.0))),
                    limit: Some(7),
                    ..HistoryQuery::default()
                },
            )
            .await?;
        out.extend(page.events.iter().map(|p| event(&conv, p)));
        if !page.more {
            return Ok(out);
        }
    }
}
