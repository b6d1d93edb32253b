//! Catching up after a reconnect or a restart: conversations begun while away, markers
//! that moved meanwhile, and the state a device keeps across restarts.

use super::*;

/// A device that connected, learnt the hub's token (50) and holds bob's conversation up to
/// 1, then lost its connection and got it back (session kept): the catch-up is asked.
fn reconnected_device() -> Device {
    let mut d = Device::new(true);
    let now = d.now();
    d.session.handle_connected(false, now);
    d.drain();
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#1","conversations":[],"token":50}"##,
    );
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":1,"ts":100,"text":"a"}"#,
    );
    d.advance(200);
    d.drain();
    d.session.handle_disconnected("x".into());
    let now = d.now();
    d.session.handle_connected(true, now);
    let lines = d.drain();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains(r#""type":"sync","after":50"#)),
        "{lines:?}"
    );
    d
}

#[test]
fn markers_that_moved_while_away_are_told_after_the_events_they_cover() {
    let mut d = reconnected_device();
    // What the broker queued arrives before the sync's answer: bob's read marker, then an
    // event after a gap.
    d.hub(DURABLE, r#"{"type":"read","conv":"bob","ts":1,"up-to":1}"#);
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":3,"ts":300,"text":"c"}"#,
    );
    assert_eq!(
        d.drain(),
        [
            "event read bob by=bob 1 own=false",
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"bob","after":1,"limit":100,"id":"#3"}"##,
        ]
    );
    // The sync reports the markers now: bob's read (told already), bob's delivered, and
    // alice's own read made on another device while this one was away.
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#2","conversations":[{"conv":"bob","last-seq":3,"change":60,"read":2,"delivered":2,"peer-delivered":3,"peer-read":1}],"token":61}"##,
    );
    assert!(d.drain().is_empty(), "the markers wait for the events");
    assert_eq!(d.session.sync_state().token, Some(50), "not settled yet");
    d.hub(
        REPLIES,
        r##"{"type":"history-result","id":"#3","conv":"bob","events":[{"type":"message","conv":"bob","seq":2,"ts":200,"text":"b"}],"last-seq":3}"##,
    );
    assert_eq!(
        d.drain(),
        [
            r#"event message bob#2 from=bob own=false "b""#,
            r#"event message bob#3 from=bob own=false "c""#,
            "event read bob by=alice 2 own=true",
            "event delivered bob by=bob 3",
        ]
    );
    assert_eq!(d.session.sync_state().token, Some(61));
    // The same markers arriving live (queued by the broker) are not told again.
    d.hub(
        DURABLE,
        r#"{"type":"read","conv":"bob","ts":1,"from":"alice","device":"laptop","up-to":2}"#,
    );
    d.hub(
        DURABLE,
        r#"{"type":"delivered","conv":"bob","ts":1,"up-to":3}"#,
    );
    assert!(d.drain().is_empty());
}

#[test]
fn a_conversation_begun_while_away_is_fetched_from_its_start() {
    let mut d = reconnected_device();
    // The broker kept only the newest events of carol's new conversation.
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"carol","seq":7,"ts":700,"text":"c7"}"#,
    );
    assert!(
        d.drain().is_empty(),
        "held until the sync says where it starts"
    );
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#2","conversations":[{"conv":"carol","last-seq":7,"change":61,"read":0}],"token":61}"##,
    );
    assert_eq!(
        d.drain(),
        [
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"carol","limit":100,"since":100,"id":"#3"}"##
        ]
    );
    let events: Vec<String> = (1..=6)
        .map(|n| {
            format!(r#"{{"type":"message","conv":"carol","seq":{n},"ts":{n}00,"text":"c{n}"}}"#)
        })
        .collect();
    d.hub(
        REPLIES,
        &format!(
            r##"{{"type":"history-result","id":"#3","conv":"carol","events":[{}],"last-seq":7}}"##,
            events.join(",")
        ),
    );
    let lines = d.drain();
    let seqs: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("event message carol#"))
        .map(|l| &l[..1])
        .collect();
    assert_eq!(seqs, ["1", "2", "3", "4", "5", "6", "7"], "{lines:?}");
}

#[test]
fn a_conversation_the_catch_up_does_not_list_starts_with_its_live_events() {
    let mut d = reconnected_device();
    d.hub(
        DURABLE,
        r#"{"type":"message","conv":"carol","seq":9,"ts":900,"text":"c9"}"#,
    );
    assert!(d.drain().is_empty());
    // Stored after the sync's snapshot: nothing before it is new to this device.
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#2","conversations":[],"token":51}"##,
    );
    assert_eq!(
        d.drain(),
        [r#"event message carol#9 from=carol own=false "c9""#]
    );
}

#[test]
fn a_kept_state_resumes_where_the_device_stood() {
    let mut d = reconnected_device();
    d.hub(
        REPLIES,
        r##"{"type":"sync-result","id":"#2","conversations":[],"token":61}"##,
    );
    let now = d.now();
    d.session.send(message("x"), now).expect("valid");
    d.drain();
    let state = d.session.sync_state();
    assert_eq!(
        (state.token, state.hub_time, state.positions.get(&bob())),
        (
            Some(61),
            Some(Timestamp::from_unix_ms(100)),
            Some(&Seq::new(1))
        )
    );
    let last = state.last_id.expect("an id was made");

    // The next run starts from there: its first connection catches up rather than taking
    // a new starting point, and its ids come after.
    let mut next = Device::with(|s| {
        s.catch_up = true;
        s.resume = Some(state);
    });
    let now = next.now();
    next.session.handle_connected(true, now);
    let lines = next.drain();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains(r#""type":"sync","after":61"#)),
        "{lines:?}"
    );
    assert!(next.ids[0] > last);
    next.hub(
        DURABLE,
        r#"{"type":"message","conv":"bob","seq":1,"ts":100,"text":"a"}"#,
    );
    assert!(next.drain().is_empty(), "held already");
}
