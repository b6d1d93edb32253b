//! Calls through the session: the user agent's SIP travels as `sip` packets upstream and
//! back on the reply topic, is held back while offline, and call records become events.

use mqchat_proto::Body;
use mqchat_proto::body::Sip;
use mqchat_sip::Message as SipMessage;

use super::*;
use crate::call::CallTarget;

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";

/// The SIP message of every upstream `sip` packet among `lines`'s publishes, by first line.
fn sip_lines(d: &mut Device) -> (Vec<String>, Vec<String>) {
    let (mut sip, mut other) = (Vec::new(), Vec::new());
    while let Some(output) = d.session.poll() {
        match output {
            Output::Publish(t) => {
                assert_eq!(t.topic, "mq/up/alice/phone");
                assert_eq!(t.qos, Qos::AtLeastOnce);
                let packet = Packet::decode(&t.payload).expect("valid");
                let text = Sip::from_packet(&packet).expect("a sip packet").message;
                sip.push(text.lines().next().unwrap_or("").to_owned());
            }
            Output::Event(event) => other.push(show_event(&event)),
            other_output => panic!("unexpected {other_output:?}"),
        }
    }
    (sip, other)
}

#[test]
fn a_call_goes_upstream_and_answers_come_on_the_reply_topic() {
    let mut d = Device::connected();
    let now = d.now();
    let call = d
        .session
        .call(&CallTarget::parse("bob").expect("valid"), OFFER, now)
        .expect("a call");
    let (sip, events) = sip_lines(&mut d);
    assert_eq!(sip, ["INVITE sip:bob@example.org SIP/2.0"]);
    assert!(events.is_empty());
    assert_eq!(d.session.calls(), std::slice::from_ref(&call));
    // Bob's phone rings: the hub sends the 180 on alice's reply topic.
    let invite = d.session.calls.invite_of(&call).cloned().expect("the call");
    let mut ringing = SipMessage::response(&invite, 180, "");
    ringing.set_to_tag("b");
    let text = String::from_utf8(ringing.to_bytes()).expect("utf-8");
    d.raw("mq/in/alice/r/phone", &Sip::new(text).to_packet().encode());
    let (sip, events) = sip_lines(&mut d);
    assert!(sip.is_empty());
    assert_eq!(events, [format!("call-ringing {call}")]);
    // A reply-topic packet that is not SIP is logged and skipped.
    d.raw(
        "mq/in/alice/r/phone",
        &Sip::new("hello").to_packet().encode(),
    );
    assert_eq!(sip_lines(&mut d), (vec![], vec![]));
}

#[test]
fn offline_calls_go_out_on_the_reconnect() {
    let mut d = Device::connected();
    d.session.handle_disconnected("gone".into());
    d.drain();
    let now = d.now();
    d.session
        .call(&CallTarget::parse("bob").expect("valid"), OFFER, now)
        .expect("a call");
    assert_eq!(sip_lines(&mut d), (vec![], vec![]), "nothing while offline");
    d.advance(5_000);
    let now = d.now();
    d.session.handle_connected(true, now);
    let lines = d.drain();
    assert!(
        lines.iter().any(
            |l| l.starts_with("pub mq/up/alice/phone q1 {\"type\":\"sip\"")
                && l.contains("INVITE sip:bob@example.org")
        ),
        "{lines:?}"
    );
    // Closing cancels it.
    let now = d.now();
    assert!(d.session.close(now));
    let lines = d.drain();
    assert!(
        lines.iter().any(|l| l.contains("CANCEL sip:bob")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("call-ended")), "{lines:?}");
}

#[test]
fn call_records_are_events_of_their_conversation() {
    let mut d = Device::connected();
    d.hub(
        "mq/in/alice/d",
        r#"{"type":"call","conv":"bob","seq":3,"ts":1790000100000,"call-id":"c1@x","outcome":"answered","started":1790000000000,"answered":1790000004000,"ended":1790000094000,"duration":90000,"answered-by":"laptop","media":["audio"]}"#,
    );
    d.hub(
        "mq/in/alice/d",
        r#"{"type":"call","conv":"sip:carol@example.net","seq":1,"ts":1790000200000,"from":"alice","call-id":"c2@x","outcome":"missed","started":1790000190000,"ended":1790000200000}"#,
    );
    let lines: Vec<String> = d
        .drain()
        .into_iter()
        .filter(|l| l.starts_with("event"))
        .collect();
    assert_eq!(
        lines,
        [
            "event call-record bob#3 own=false answered Some(90s)",
            "event call-record sip:carol@example.net#1 own=true missed None",
        ]
    );
}

#[test]
fn messages_from_an_address_outside_mqchat() {
    let mut d = Device::connected();
    d.hub(
        "mq/in/alice/d",
        r#"{"type":"message","conv":"sip:carol@example.net","seq":1,"ts":1790000100000,"text":"Hi from SIP"}"#,
    );
    d.hub(
        "mq/in/alice/d",
        r#"{"type":"message","conv":"sip:carol@example.net","seq":2,"ts":1790000100001,"from":"alice","device":"laptop","text":"Hi back"}"#,
    );
    // The outside party's 2xx to the SIP MESSAGE moved its delivered marker.
    d.hub(
        "mq/in/alice/d",
        r#"{"type":"delivered","conv":"sip:carol@example.net","ts":1790000100002,"up-to":2}"#,
    );
    let lines: Vec<String> = d
        .drain()
        .into_iter()
        .filter(|l| l.starts_with("event"))
        .collect();
    assert_eq!(
        lines,
        [
            r#"event message sip:carol@example.net#1 from=sip:carol@example.net own=false "Hi from SIP""#,
            r#"event message sip:carol@example.net#2 from=alice own=true "Hi back""#,
            "event delivered sip:carol@example.net by=sip:carol@example.net 2",
        ]
    );
}
