//! Calls between mqchat users through the real server's SIP proxy, with the SDK on both
//! sides and no gateway (spec 7.14, 19): forking to every device of the callee, answered
//! elsewhere, BYE from either side, busy, decline, the caller cancelling, an offline or
//! unknown callee, the ringing timeout, a reconnect in the middle of a call, several calls
//! at once, and the call records in both users' histories.

use mqchat_client::{
    Call, CallRecord as Record, CallTarget, Client, EndReason, Event, Events, HistoryQuery,
    Rejection,
};
use mqchat_proto::body::{Call as CallBody, CallOutcome};
use mqchat_proto::{Body, ConversationRef, PacketKind};

use crate::common::*;

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
const ANSWER: &str = "v=0\r\no=bob 2 2 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\n";

/// A call target as an app parses it.
fn target(text: &str) -> anyhow::Result<CallTarget> {
    Ok(text.parse()?)
}

/// A server with SIP on (no gateway listeners) and the users alice, bob and carol.
async fn sip_server(ring_timeout_secs: u64) -> anyhow::Result<TestServer> {
    server_with(|config| {
        config.sip.enabled = true;
        config.sip.listen_udp = None;
        config.sip.listen_tcp = None;
        config.sip.ring_timeout_secs = ring_timeout_secs;
    })
    .await
}

/// A device's events, kept when a test waits for another one: a call's record and the
/// end of the call travel on different topics and may come in either order.
struct Device {
    events: Events,
    kept: Vec<Event>,
}

impl Device {
    fn new(events: Events) -> Self {
        Self {
            events,
            kept: Vec::new(),
        }
    }

    /// The first event, kept or new, that `pick` accepts.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        if let Some(i) = self.kept.iter().position(|e| pick(e).is_some()) {
            let event = self.kept.remove(i);
            return pick(&event).expect("picked");
        }
        let kept = &mut self.kept;
        expect(&mut self.events, what, |event| match pick(&event) {
            Some(found) => Some(found),
            None => {
                kept.push(event);
                None
            }
        })
        .await
    }
}

/// Connects `user`'s `device` and waits until the hub has taken it for connected (it
/// learns that from the device's presence, which it handles before the device's later
/// requests): calls reach only connected devices.
async fn device(server: &TestServer, user: &str, device: &str) -> anyhow::Result<(Client, Device)> {
    let (client, events) = connect(server, user, device).await?;
    client.devices().await?;
    Ok((client, Device::new(events)))
}

/// Waits for an incoming call: (call, from, conversation, SDP offer).
async fn incoming(events: &mut Device) -> (Call, String, Option<ConversationRef>, String) {
    events
        .expect("an incoming call", |e| match e {
            Event::IncomingCall {
                call,
                from,
                conv,
                sdp,
                ..
            } => Some((call.clone(), from.clone(), conv.clone(), sdp.clone())),
            _ => None,
        })
        .await
}

async fn ringing(events: &mut Device, call: &Call) {
    events
        .expect("ringing", |e| match e {
            Event::CallRinging { call: c } if c == call => Some(()),
            _ => None,
        })
        .await;
}

async fn answered(events: &mut Device, call: &Call) -> String {
    events
        .expect("the answer", |e| match e {
            Event::CallAnswered { call: c, sdp } if c == call => Some(sdp.clone()),
            _ => None,
        })
        .await
}

async fn ended(events: &mut Device, call: &Call) -> EndReason {
    events
        .expect("the end of the call", |e| match e {
            Event::CallEnded { call: c, reason } if c == call => Some(reason.clone()),
            _ => None,
        })
        .await
}

/// Waits for the record of `call`: (conversation, own, record).
async fn record(events: &mut Device, call: &Call) -> (ConversationRef, bool, Record) {
    events
        .expect("the call's record", |e| match e {
            Event::CallRecord {
                conv, own, record, ..
            } if record.call_id == call.call_id() => Some((conv.clone(), *own, record.clone())),
            _ => None,
        })
        .await
}

/// The call records in `client`'s history with `peer`.
async fn history_records(client: &Client, peer: &str) -> anyhow::Result<Vec<Record>> {
    let page = client.history(conv(peer), HistoryQuery::default()).await?;
    Ok(page
        .events
        .iter()
        .filter(|p| p.kind == PacketKind::CALL)
        .map(|p| Record::from(CallBody::from_packet(p).expect("a valid call record")))
        .collect())
}

#[tokio::test]
async fn every_device_rings_one_answers_the_other_stops_and_the_callee_hangs_up()
-> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (phone, mut phone_events) = device(&server, "bob", "phone").await?;
    let (_laptop, mut laptop_events) = device(&server, "bob", "laptop").await?;

    let call = alice.call(&target("bob")?, OFFER).await?;
    let (phone_call, from, caller, offer) = incoming(&mut phone_events).await;
    assert_eq!(
        (from.as_str(), caller, offer.as_str()),
        ("sip:alice@localhost", Some(conv("alice")), OFFER)
    );
    assert_eq!(phone_call.call_id(), call.call_id());
    let (laptop_call, ..) = incoming(&mut laptop_events).await;
    ringing(&mut alice_events, &call).await;

    phone.answer(&phone_call, ANSWER).await?;
    assert_eq!(answered(&mut alice_events, &call).await, ANSWER);
    assert_eq!(
        ended(&mut laptop_events, &laptop_call).await,
        EndReason::AnsweredElsewhere
    );
    assert_eq!(phone.calls().await?, std::slice::from_ref(&phone_call));

    phone.hangup(&phone_call).await?;
    assert_eq!(
        ended(&mut phone_events, &phone_call).await,
        EndReason::HungUp { local: true }
    );
    assert_eq!(
        ended(&mut alice_events, &call).await,
        EndReason::HungUp { local: false }
    );
    assert!(alice.calls().await?.is_empty());

    // One record, in both users' conversation, told to every device.
    let (peer, own, mine) = record(&mut alice_events, &call).await;
    assert_eq!((peer, own), (conv("bob"), true));
    assert_eq!(mine.outcome, CallOutcome::Answered);
    assert_eq!(mine.answered_by.as_ref().map(|d| d.as_str()), Some("phone"));
    assert_eq!(mine.media, ["audio"]);
    let duration = mine.duration.expect("an answered call has a duration");
    let answered = mine
        .answered
        .expect("an answered call has its answer's time");
    assert_eq!(answered.saturating_add(duration), mine.ended);
    for events in [&mut phone_events, &mut laptop_events] {
        let (peer, own, theirs) = record(events, &call).await;
        assert_eq!((peer, own), (conv("alice"), false));
        assert_eq!(theirs, mine);
    }
    assert_eq!(
        history_records(&alice, "bob").await?,
        std::slice::from_ref(&mine)
    );
    assert_eq!(history_records(&phone, "alice").await?, [mine]);
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_caller_hangs_up() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (bob, mut bob_events) = device(&server, "bob", "phone").await?;
    let call = alice.call(&target("bob")?, OFFER).await?;
    let (bob_call, ..) = incoming(&mut bob_events).await;
    bob.answer(&bob_call, ANSWER).await?;
    answered(&mut alice_events, &call).await;
    alice.hangup(&call).await?;
    assert_eq!(
        ended(&mut alice_events, &call).await,
        EndReason::HungUp { local: true }
    );
    assert_eq!(
        ended(&mut bob_events, &bob_call).await,
        EndReason::HungUp { local: false }
    );
    let (_, _, mine) = record(&mut alice_events, &call).await;
    assert_eq!(mine.outcome, CallOutcome::Answered);
    let (_, _, theirs) = record(&mut bob_events, &call).await;
    assert_eq!(theirs, mine);
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn busy_and_declined() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (phone, mut phone_events) = device(&server, "bob", "phone").await?;

    // Busy on bob's only device: alice hears busy.
    let call = alice.call(&target("bob")?, OFFER).await?;
    let (bob_call, ..) = incoming(&mut phone_events).await;
    phone.reject(&bob_call, Rejection::Busy).await?;
    assert_eq!(
        ended(&mut phone_events, &bob_call).await,
        EndReason::Busy { local: true }
    );
    assert_eq!(
        ended(&mut alice_events, &call).await,
        EndReason::Busy { local: false }
    );
    let (_, _, busy) = record(&mut alice_events, &call).await;
    assert_eq!(busy.outcome, CallOutcome::Busy);
    assert_eq!((busy.answered, busy.duration), (None, None));
    assert_eq!(record(&mut phone_events, &call).await.2, busy);

    // Declined on one of two devices: the call ends everywhere.
    let (_laptop, mut laptop_events) = device(&server, "bob", "laptop").await?;
    let call = alice.call(&target("bob")?, OFFER).await?;
    let (phone_call, ..) = incoming(&mut phone_events).await;
    let (laptop_call, ..) = incoming(&mut laptop_events).await;
    phone.reject(&phone_call, Rejection::Decline).await?;
    assert_eq!(
        ended(&mut alice_events, &call).await,
        EndReason::Declined { local: false }
    );
    assert_eq!(
        ended(&mut laptop_events, &laptop_call).await,
        EndReason::Declined { local: false }
    );
    let (_, _, declined) = record(&mut alice_events, &call).await;
    assert_eq!(declined.outcome, CallOutcome::Declined);
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_caller_cancels_and_the_callee_has_a_missed_call() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (_phone, mut phone_events) = device(&server, "bob", "phone").await?;
    let (_laptop, mut laptop_events) = device(&server, "bob", "laptop").await?;
    let call = alice.call(&target("bob")?, OFFER).await?;
    let (phone_call, ..) = incoming(&mut phone_events).await;
    let (laptop_call, ..) = incoming(&mut laptop_events).await;
    ringing(&mut alice_events, &call).await;
    alice.hangup(&call).await?;
    assert_eq!(
        ended(&mut alice_events, &call).await,
        EndReason::Cancelled { local: true }
    );
    for (events, bob_call) in [
        (&mut phone_events, &phone_call),
        (&mut laptop_events, &laptop_call),
    ] {
        assert_eq!(
            ended(events, bob_call).await,
            EndReason::Cancelled { local: false }
        );
        let (peer, own, missed) = record(events, &call).await;
        assert_eq!(
            (peer, own, missed.outcome),
            (conv("alice"), false, CallOutcome::Missed)
        );
    }
    let (_, own, missed) = record(&mut alice_events, &call).await;
    assert_eq!((own, missed.outcome), (true, CallOutcome::Missed));
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_offline_or_unknown_callee() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    // bob has no device connected (and none to wake): 480 at once, a missed call.
    let call = alice.call(&target("bob")?, OFFER).await?;
    let reason = ended(&mut alice_events, &call).await;
    assert!(
        matches!(reason, EndReason::Failed { code: 480, .. }),
        "{reason:?}"
    );
    let (peer, _, missed) = record(&mut alice_events, &call).await;
    assert_eq!((peer, missed.outcome), (conv("bob"), CallOutcome::Missed));
    // bob finds it when he comes.
    let (bob, _bob_events) = connect(&server, "bob", "phone").await?;
    assert_eq!(history_records(&bob, "alice").await?, [missed]);
    // Nobody called dave.
    let call = alice.call(&target("dave")?, OFFER).await?;
    let reason = ended(&mut alice_events, &call).await;
    assert!(
        matches!(reason, EndReason::Failed { code: 404, .. }),
        "{reason:?}"
    );
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn ringing_times_out() -> anyhow::Result<()> {
    let server = sip_server(2).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (_bob, mut bob_events) = device(&server, "bob", "phone").await?;
    let call = alice.call(&target("bob")?, OFFER).await?;
    let (bob_call, ..) = incoming(&mut bob_events).await;
    ringing(&mut alice_events, &call).await;
    let reason = ended(&mut alice_events, &call).await;
    assert!(
        matches!(reason, EndReason::Failed { code: 480, .. }),
        "{reason:?}"
    );
    assert_eq!(
        ended(&mut bob_events, &bob_call).await,
        EndReason::Cancelled { local: false }
    );
    let (_, _, missed) = record(&mut bob_events, &call).await;
    assert_eq!(missed.outcome, CallOutcome::Missed);
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_call_survives_a_reconnect() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let relay = Relay::start(server.tcp_addr()).await?;
    let (alice, alice_events) =
        Client::connect(config_at(&relay.url(), &server, "alice", "phone")).await?;
    let mut alice_events = Device::new(alice_events);
    let (bob, mut bob_events) = device(&server, "bob", "phone").await?;
    let call = alice.call(&target("bob")?, OFFER).await?;
    let (bob_call, ..) = incoming(&mut bob_events).await;
    bob.answer(&bob_call, ANSWER).await?;
    answered(&mut alice_events, &call).await;

    relay.cut();
    alice_events
        .expect("the reconnect", |e| {
            matches!(e, Event::Connected { .. }).then_some(())
        })
        .await;
    assert_eq!(alice.calls().await?, std::slice::from_ref(&call));
    // The dialog is still there: alice's BYE reaches bob's phone.
    alice.hangup(&call).await?;
    assert_eq!(
        ended(&mut bob_events, &bob_call).await,
        EndReason::HungUp { local: false }
    );
    let (_, _, answered) = record(&mut alice_events, &call).await;
    assert_eq!(answered.outcome, CallOutcome::Answered);
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_second_call_while_in_a_call() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (carol, mut carol_events) = device(&server, "carol", "phone").await?;
    let (bob, mut bob_events) = device(&server, "bob", "phone").await?;
    let first = alice.call(&target("bob")?, OFFER).await?;
    let (bob_first, ..) = incoming(&mut bob_events).await;
    bob.answer(&bob_first, ANSWER).await?;
    answered(&mut alice_events, &first).await;
    // carol calls bob meanwhile: the app decides, here busy.
    let second = carol.call(&target("sip:bob@localhost")?, OFFER).await?;
    let (bob_second, from, ..) = incoming(&mut bob_events).await;
    assert_eq!(from, "sip:carol@localhost");
    bob.reject(&bob_second, Rejection::Busy).await?;
    assert_eq!(
        ended(&mut carol_events, &second).await,
        EndReason::Busy { local: false }
    );
    // The first call goes on.
    assert_eq!(bob.calls().await?, std::slice::from_ref(&bob_first));
    bob.hangup(&bob_first).await?;
    assert_eq!(
        ended(&mut alice_events, &first).await,
        EndReason::HungUp { local: false }
    );
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_call_to_one_device() -> anyhow::Result<()> {
    let server = sip_server(60).await?;
    let (alice, mut alice_events) = device(&server, "alice", "phone").await?;
    let (_phone, phone_events) = device(&server, "bob", "phone").await?;
    let (laptop, mut laptop_events) = device(&server, "bob", "laptop").await?;
    // The GRUU of bob's laptop: only the laptop rings.
    let call = alice
        .call(&target("sip:bob@localhost;gr=laptop")?, OFFER)
        .await?;
    let (laptop_call, ..) = incoming(&mut laptop_events).await;
    laptop.answer(&laptop_call, ANSWER).await?;
    answered(&mut alice_events, &call).await;
    // The callee hangs up: its BYE's From is the GRUU alice called (RFC 3261 12.2.1.1).
    laptop.hangup(&laptop_call).await?;
    assert_eq!(
        ended(&mut alice_events, &call).await,
        EndReason::HungUp { local: false }
    );
    let (_, _, answered) = record(&mut alice_events, &call).await;
    assert_eq!(
        answered.answered_by.as_ref().map(|d| d.as_str()),
        Some("laptop")
    );
    assert!(
        phone_events
            .kept
            .iter()
            .all(|e| !matches!(e, Event::IncomingCall { .. }))
    );
    alice.close().await?;
    server.stop().await;
    Ok(())
}
