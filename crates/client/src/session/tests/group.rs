//! Groups: requests answered by their group event, invitations, joining through a history
//! window, rosters asked for when missing, receipts, and no markers outside membership.

use mqchat_proto::body::{Body, GroupCreate, GroupJoin, JoinAction};

use super::*;

const CREW: &str = "#crew";

fn group(name: &str) -> ConversationRef {
    ConversationRef::parse(name).expect("valid group")
}

#[test]
fn a_created_group_keeps_its_roster_from_its_events() {
    let mut d = Device::connected();
    let now = d.now();
    let create = GroupCreate {
        name: "Crew".into(),
        invite: vec![mqchat_proto::UserId::parse("bob").expect("valid")],
        ..GroupCreate::default()
    };
    d.session
        .group_change(create.to_packet(), now)
        .expect("valid");
    assert_eq!(
        d.drain(),
        [
            r##"pub mq/up/alice/phone q1 {"type":"group-create","name":"Crew","invite":["bob"],"id":"#1"}"##
        ]
    );
    d.hub(
        DURABLE,
        r##"{"type":"group-event","id":"#1","conv":"#crew","seq":1,"ts":1,"from":"alice","device":"phone","action":"created","role":"owner","name":"Crew"}"##,
    );
    d.hub(
        DURABLE,
        r##"{"type":"group-event","conv":"#crew","seq":2,"ts":1,"from":"alice","device":"phone","action":"invited","user":"bob","name":"Crew"}"##,
    );
    // The ack that follows the copy finds nothing waiting.
    d.hub(
        REPLIES,
        r##"{"type":"ack","id":"#1","conv":"#crew","seq":1,"ts":1}"##,
    );
    d.hub(
        DURABLE,
        r##"{"type":"group-event","conv":"#crew","seq":3,"ts":2,"from":"bob","action":"joined","user":"bob","role":"member"}"##,
    );
    assert_eq!(
        d.drain(),
        [
            "answer #1 sent #crew seq=1 dup=false",
            "event group #crew#1 by=alice own=true Created -",
            "event group #crew#2 by=alice own=true Invited bob",
            "event group #crew#3 by=bob own=false Joined bob",
        ]
    );
    let mut packet = Message::text("Hi all").to_packet();
    packet.conv = Some(group(CREW));
    let now = d.now();
    d.session.send(packet, now).expect("valid");
    d.drain();
    d.hub(
        DURABLE,
        r##"{"type":"message","id":"#2","conv":"#crew","seq":4,"ts":3,"from":"alice","device":"phone","text":"Hi all"}"##,
    );
    d.hub(
        DURABLE,
        r##"{"type":"delivered","conv":"#crew","ts":4,"from":"bob","up-to":4}"##,
    );
    let now = d.now();
    match d.session.receipt(group(CREW), Seq::new(4), now) {
        Ok(Ok(r)) => assert_eq!((r.n_delivered(), r.n_read(), r.n_total()), (1, 0, 1)),
        other => panic!("no receipt at once: {other:?}"),
    }
    d.hub(
        DURABLE,
        r##"{"type":"read","conv":"#crew","ts":5,"from":"bob","up-to":4}"##,
    );
    d.advance(1000);
    assert_eq!(
        d.drain(),
        [
            "answer #2 sent #crew seq=4 dup=false",
            r##"event message #crew#4 from=alice own=true "Hi all""##,
            "event delivered #crew by=bob 4",
            "event read #crew by=bob 4 own=false",
            // The joined event came from bob: it is owed a delivered marker.
            r##"pub mq/up/alice/phone q1 {"type":"delivered","conv":"#crew","up-to":3}"##,
        ]
    );
    let now = d.now();
    match d.session.receipt(group(CREW), Seq::new(4), now) {
        Ok(Ok(r)) => assert_eq!((r.n_delivered(), r.n_read(), r.n_total()), (1, 1, 1)),
        other => panic!("no receipt at once: {other:?}"),
    }
}

#[test]
fn an_invitee_joins_through_its_history_window() {
    let mut d = Device::connected();
    d.hub(
        DURABLE,
        r##"{"type":"group-event","conv":"#crew","seq":5,"ts":1,"from":"bob","action":"invited","user":"alice","name":"Crew"}"##,
    );
    d.advance(1000);
    // An invitation: no delivered marker (alice is not a member yet), no roster.
    assert_eq!(d.drain(), [r##"event invitation #crew#5 by=bob "Crew""##]);

    let now = d.now();
    let mut accept = GroupJoin {
        action: JoinAction::Accept,
    }
    .to_packet();
    accept.conv = Some(group(CREW));
    d.session.group_change(accept, now).expect("valid");
    d.drain();
    d.hub(
        DURABLE,
        r##"{"type":"group-event","id":"#1","conv":"#crew","seq":9,"ts":2,"from":"alice","device":"phone","action":"joined","user":"alice","role":"member"}"##,
    );
    // 6 to 8 happened between the invitation and the joining: history says so by leaving
    // them out.
    assert_eq!(
        d.drain(),
        [
            r##"pub mq/up/alice/phone q1 {"type":"history","conv":"#crew","after":5,"limit":100,"id":"#2"}"##
        ]
    );
    d.hub(
        REPLIES,
        r##"{"type":"history-result","id":"#2","conv":"#crew","events":[{"type":"group-event","id":"#1","conv":"#crew","seq":9,"ts":2,"from":"alice","device":"phone","action":"joined","user":"alice","role":"member"}],"last-seq":9}"##,
    );
    assert_eq!(
        d.drain(),
        [
            "answer #1 sent #crew seq=9 dup=false",
            "event group #crew#9 by=alice own=true Joined alice",
            // Now a member without a roster: it asks for one.
            r##"pub mq/up/alice/phone q1 {"type":"group-info","conv":"#crew","id":"#3"}"##,
        ]
    );
    d.hub(
        REPLIES,
        r##"{"type":"group-info-result","id":"#3","conv":"#crew","seq":9,"name":"Crew","members":[{"user":"alice","role":"member","since":9},{"user":"bob","role":"owner","since":1,"delivered":9,"read":8},{"user":"carol","role":"admin","since":3,"read":9}]}"##,
    );
    d.hub(
        DURABLE,
        r##"{"type":"message","id":"0000000000009","conv":"#crew","seq":10,"ts":3,"from":"alice","device":"laptop","text":"Hello"}"##,
    );
    d.hub(
        DURABLE,
        r##"{"type":"read","conv":"#crew","ts":4,"from":"carol","up-to":10}"##,
    );
    d.drain();
    let now = d.now();
    match d.session.receipt(group(CREW), Seq::new(10), now) {
        Ok(Ok(r)) => assert_eq!((r.n_delivered(), r.n_read(), r.n_total()), (1, 1, 2)),
        other => panic!("no receipt at once: {other:?}"),
    }

    // Removed: the removal is an event from bob, but no marker goes to a group alice left.
    d.hub(
        DURABLE,
        r##"{"type":"group-event","conv":"#crew","seq":11,"ts":5,"from":"bob","action":"removed","user":"alice"}"##,
    );
    d.advance(1000);
    assert_eq!(
        d.drain(),
        ["event group #crew#11 by=bob own=false Removed alice"]
    );
}

#[test]
fn receipts_wait_for_a_roster_and_refusals_reach_the_caller() {
    let mut d = Device::connected();
    let now = d.now();
    let Ok(Err(id)) = d.session.receipt(group(CREW), Seq::new(3), now) else {
        panic!("a group without a roster needs a request");
    };
    assert_eq!(d.name(id), "#1");
    d.drain();
    d.hub(
        REPLIES,
        r##"{"type":"group-info-result","id":"#1","conv":"#crew","seq":7,"name":"Crew","history":"all","members":[{"user":"alice","role":"owner","since":1},{"user":"bob","role":"member","since":5,"read":3},{"user":"dave","role":"member","invited":true,"since":6}]}"##,
    );
    assert_eq!(
        d.drain(),
        ["answer #1 receipt #crew#3 read 1/1 delivered 1/1"]
    );
    let now = d.now();
    let mut leave = GroupJoin {
        action: JoinAction::Leave,
    }
    .to_packet();
    leave.conv = Some(group(CREW));
    d.session.group_change(leave, now).expect("valid");
    d.drain();
    d.hub(
        REPLIES,
        r##"{"type":"error","id":"#2","conv":"#crew","code":7,"detail":"the owner transfers ownership or deletes the group first"}"##,
    );
    assert_eq!(
        d.drain(),
        [
            "answer #2 error: the hub refused the packet: forbidden (the owner transfers ownership or deletes the group first)"
        ]
    );
    // Only group requests that change a group go this way.
    let now = d.now();
    assert!(d.session.group_change(message("x"), now).is_err());
}
