//! The user agent against simulated peers: alice's phone calls bob, who has a phone and a
//! laptop. The test plays the hub as a forking proxy would (a Via of its own on requests,
//! popped from responses, its own CANCEL per branch). No sockets, no sleeps: time is virtual,
//! a moment from `Moment::ZERO` passed in.

use std::time::Duration;

use mqchat_proto::{DeviceId, Moment, UserId};
use mqchat_sip::{Message, Method, Transport, Via};

use super::dialog::Dialog;
use super::*;

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
const ANSWER: &str = "v=0\r\no=bob 2 2 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\n";

/// One device's user agent and what it produced.
struct Device {
    ua: UserAgent,
}

impl Device {
    fn new(user: &str, device: &str, seed: u64) -> Self {
        let me = Local {
            user: UserId::parse(user).expect("valid"),
            device: DeviceId::parse(device).expect("valid"),
            domain: "example.org".into(),
        };
        Self {
            ua: UserAgent::new(me, seed),
        }
    }

    /// Everything produced since the last call: messages sent, and events as short text.
    fn drain(&mut self) -> (Vec<Message>, Vec<String>) {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(output) = self.ua.poll() {
            match output {
                UaOutput::Send(text) => {
                    let message = Message::parse(text.as_bytes()).unwrap_or_else(|e| {
                        panic!("the user agent sent invalid SIP ({e}):\n{text}")
                    });
                    sent.push(message);
                }
                UaOutput::Event(event) => events.push(show(&event)),
            }
        }
        (sent, events)
    }

    /// The one message it sent, and its events.
    fn one(&mut self) -> (Message, Vec<String>) {
        let (mut sent, events) = self.drain();
        assert_eq!(
            sent.len(),
            1,
            "expected one message, got {}",
            summary(&sent)
        );
        (sent.remove(0), events)
    }

    /// Calls `to`, a target the tests know to be valid.
    fn call(&mut self, to: &str, sdp: &str, now: Moment) -> Result<Call, Error> {
        let to = CallTarget::parse(to).expect("valid");
        self.ua.call(&to, sdp, now)
    }

    fn take(&mut self, message: &Message, now: Moment) {
        let text = String::from_utf8(message.to_bytes()).expect("utf-8");
        self.ua.handle(&text, now);
    }
}

fn show(event: &Event) -> String {
    match event {
        Event::IncomingCall {
            from, conv, sdp, ..
        } => format!(
            "incoming from {from} conv={} sdp={}",
            conv.as_ref().map_or("-".into(), ToString::to_string),
            sdp == OFFER
        ),
        Event::CallRinging { .. } => "ringing".into(),
        Event::CallAnswered { sdp, .. } => format!("answered sdp={}", sdp == ANSWER),
        Event::CallEnded { reason, .. } => format!("ended: {reason:?}"),
        other => format!("{other:?}"),
    }
}

/// A message's first line, for assertions.
fn line(message: &Message) -> String {
    match &message.start {
        mqchat_sip::StartLine::Request { method, uri } => format!("{method} {uri}"),
        mqchat_sip::StartLine::Response { code, .. } => format!(
            "{code} {}",
            message
                .cseq()
                .map_or(String::new(), |c| c.method.to_string())
        ),
    }
}

fn summary(messages: &[Message]) -> String {
    messages.iter().map(line).collect::<Vec<_>>().join(", ")
}

fn lines(messages: &[Message]) -> Vec<String> {
    messages.iter().map(line).collect()
}

/// The hub forwards a request to a device on a branch of its own.
fn via_hub(request: &Message, branch: &str) -> Message {
    let mut forwarded = request.clone();
    forwarded.push_via(&Via::new(
        Transport::Mqtt,
        "hub.example.org",
        None,
        &format!("z9hG4bK{branch}"),
    ));
    forwarded
}

/// The hub forwards a response back: its Via comes off.
fn back(response: &Message) -> Message {
    let mut back = response.clone();
    back.pop_via();
    back
}

/// The hub's CANCEL of the branch on which it forwarded `invite` (RFC 3261 16.10), with a
/// Reason when another device answered.
fn hub_cancel(forwarded_invite: &Message, reason: Option<&str>) -> Message {
    let mut cancel = dialog::cancel(forwarded_invite);
    if let Some(reason) = reason {
        cancel.insert_header("Reason", reason);
    }
    cancel
}

struct Scene {
    t: Moment,
    alice: Device,
    phone: Device,
    laptop: Device,
}

impl Scene {
    fn new() -> Self {
        Self {
            t: Moment::ZERO,
            alice: Device::new("alice", "phone", 1),
            phone: Device::new("bob", "phone", 2),
            laptop: Device::new("bob", "laptop", 3),
        }
    }

    fn later(&mut self, secs: u64) -> Moment {
        self.t += Duration::from_secs(secs);
        self.t
    }

    /// alice calls bob; both of bob's devices ring. Returns the call, alice's INVITE and
    /// the INVITEs as forwarded to the phone and the laptop.
    fn ring(&mut self) -> (Call, Message, Message, Message) {
        let t = self.t;
        let call = self.alice.call("bob", OFFER, t).expect("a call");
        let (invite, events) = self.alice.one();
        assert!(events.is_empty());
        assert_eq!(line(&invite), "INVITE sip:bob@example.org");
        let to_phone = via_hub(&invite, "p");
        let to_laptop = via_hub(&invite, "l");
        for (device, forwarded) in [(&mut self.phone, &to_phone), (&mut self.laptop, &to_laptop)] {
            device.take(forwarded, t);
            let (ringing, events) = device.one();
            assert_eq!(line(&ringing), "180 INVITE");
            assert_eq!(
                events,
                ["incoming from sip:alice@example.org conv=alice sdp=true"]
            );
            self.alice.take(&back(&ringing), t);
        }
        let (sent, events) = self.alice.drain();
        assert!(sent.is_empty());
        assert_eq!(events, ["ringing"], "ringing is told once");
        (call, invite, to_phone, to_laptop)
    }

    fn bob_call(device: &mut Device) -> Call {
        let calls = device.ua.live_calls();
        assert_eq!(calls.len(), 1);
        calls[0].clone()
    }

    /// The phone answers; the laptop is cancelled as answered elsewhere; alice acks.
    fn answer(&mut self) -> (Call, Message, Message) {
        let (call, invite, _, to_laptop) = self.ring();
        let t = self.t;
        let phone_call = Self::bob_call(&mut self.phone);
        self.phone
            .ua
            .answer(&phone_call, ANSWER, t)
            .expect("answered");
        let (ok, _) = self.phone.one();
        assert_eq!(line(&ok), "200 INVITE");
        assert_eq!(ok.content_type().as_deref(), Some("application/sdp"));
        self.alice.take(&back(&ok), t);
        let (ack, events) = self.alice.one();
        assert_eq!(events, ["answered sdp=true"]);
        assert_eq!(line(&ack), "ACK sip:bob@example.org;gr=phone");
        self.phone.take(&via_hub(&ack, "a"), t);
        assert_eq!(self.phone.drain(), (vec![], vec![]));
        let cancel = hub_cancel(
            &to_laptop,
            Some("SIP ;cause=200 ;text=\"Call completed elsewhere\""),
        );
        self.laptop.take(&cancel, t);
        let (sent, events) = self.laptop.drain();
        assert_eq!(lines(&sent), ["200 CANCEL", "487 INVITE"]);
        assert_eq!(events, ["ended: AnsweredElsewhere"]);
        (call, invite, ok)
    }
}

#[test]
fn a_call_rings_everywhere_is_answered_and_hung_up() {
    let mut s = Scene::new();
    let (call, _, _) = s.answer();
    let t = s.later(90);
    s.alice.ua.hangup(&call, t).expect("hung up");
    let (bye, events) = s.alice.one();
    assert_eq!(events, ["ended: HungUp { local: true }"]);
    assert_eq!(line(&bye), "BYE sip:bob@example.org;gr=phone");
    assert_eq!(bye.cseq().map(|c| c.seq), Some(2));
    s.phone.take(&via_hub(&bye, "b"), t);
    let (ok, events) = s.phone.one();
    assert_eq!(line(&ok), "200 BYE");
    assert_eq!(events, ["ended: HungUp { local: false }"]);
    s.alice.take(&back(&ok), t);
    assert_eq!(s.alice.drain(), (vec![], vec![]));
    assert!(s.alice.ua.requests.is_empty(), "the BYE is answered");
    assert!(s.alice.ua.live_calls().is_empty() && s.phone.ua.live_calls().is_empty());
    // Both forget the call after a while.
    let t = s.later(60);
    s.alice.ua.handle_timeout(t);
    s.phone.ua.handle_timeout(t);
    assert!(s.alice.ua.outgoing.is_empty() && s.phone.ua.incoming.is_empty());
    assert_eq!(s.alice.ua.next_deadline(), None);
}

#[test]
fn the_callee_hangs_up() {
    let mut s = Scene::new();
    let (_, _, _) = s.answer();
    let t = s.t;
    let call = Scene::bob_call(&mut s.phone);
    s.phone.ua.hangup(&call, t).expect("hung up");
    let (bye, events) = s.phone.one();
    assert_eq!(events, ["ended: HungUp { local: true }"]);
    assert_eq!(line(&bye), "BYE sip:alice@example.org;gr=phone");
    s.alice.take(&via_hub(&bye, "b"), t);
    let (ok, events) = s.alice.one();
    assert_eq!(line(&ok), "200 BYE");
    assert_eq!(events, ["ended: HungUp { local: false }"]);
    // The same BYE again (a resend after a reconnect) gets the same answer, no new event.
    s.alice.take(&via_hub(&bye, "b"), t);
    let (again, events) = s.alice.one();
    assert_eq!(again, ok);
    assert!(events.is_empty());
}

#[test]
fn a_second_answer_from_another_fork_is_acknowledged_and_hung_up() {
    let mut s = Scene::new();
    let (_, _, _, _) = s.ring();
    let t = s.t;
    let phone_call = Scene::bob_call(&mut s.phone);
    let laptop_call = Scene::bob_call(&mut s.laptop);
    s.phone.ua.answer(&phone_call, ANSWER, t).expect("answered");
    s.laptop
        .ua
        .answer(&laptop_call, ANSWER, t)
        .expect("answered");
    let (first, _) = s.phone.one();
    let (second, _) = s.laptop.one();
    s.alice.take(&back(&first), t);
    let (_, events) = s.alice.one();
    assert_eq!(events, ["answered sdp=true"]);
    s.alice.take(&back(&second), t);
    let (sent, events) = s.alice.drain();
    assert_eq!(
        lines(&sent),
        [
            "ACK sip:bob@example.org;gr=laptop",
            "BYE sip:bob@example.org;gr=laptop"
        ]
    );
    assert!(events.is_empty(), "the call goes on with the phone");
    // The laptop's 2xx again: the same ACK, no second BYE.
    s.alice.take(&back(&second), t);
    let (ack, _) = s.alice.one();
    assert_eq!(ack, sent[0]);
    // The laptop takes the ACK, then the BYE.
    s.laptop.take(&via_hub(&sent[0], "a"), t);
    s.laptop.take(&via_hub(&sent[1], "b"), t);
    let (ok, events) = s.laptop.one();
    assert_eq!(line(&ok), "200 BYE");
    assert_eq!(events, ["ended: HungUp { local: false }"]);
    assert_eq!(s.alice.ua.live_calls().len(), 1);
}

#[test]
fn busy_and_declined() {
    for (rejection, code, caller, callee) in [
        (
            Rejection::Busy,
            "486 INVITE",
            "ended: Busy { local: false }",
            "ended: Busy { local: true }",
        ),
        (
            Rejection::Decline,
            "603 INVITE",
            "ended: Declined { local: false }",
            "ended: Declined { local: true }",
        ),
    ] {
        let mut s = Scene::new();
        let (_, invite, _, _) = s.ring();
        let t = s.t;
        let call = Scene::bob_call(&mut s.phone);
        s.phone.ua.reject(&call, rejection, t).expect("rejected");
        let (response, events) = s.phone.one();
        assert_eq!(line(&response), code);
        assert_eq!(events, [callee]);
        assert!(
            s.phone.ua.reject(&call, rejection, t).is_err(),
            "not ringing any more"
        );
        // (The hub would wait for the laptop; here it passes the answer on.)
        s.alice.take(&back(&response), t);
        let (ack, events) = s.alice.one();
        assert_eq!(events, [caller]);
        assert_eq!(line(&ack), "ACK sip:bob@example.org");
        assert_eq!(
            ack.top_via().and_then(|v| v.branch().map(str::to_owned)),
            invite.top_via().and_then(|v| v.branch().map(str::to_owned)),
            "the ACK of a failure is in the INVITE's transaction"
        );
    }
}

#[test]
fn failures_end_the_call_with_their_code() {
    for (code, expected) in [
        (404, "ended: Failed { code: 404, reason: \"Not Found\" }"),
        (
            480,
            "ended: Failed { code: 480, reason: \"Temporarily Unavailable\" }",
        ),
        (600, "ended: Busy { local: false }"),
    ] {
        let mut d = Device::new("alice", "phone", 9);
        let t = Moment::ZERO;
        d.call("sip:carol@example.net", OFFER, t).expect("a call");
        let (invite, _) = d.one();
        assert_eq!(line(&invite), "INVITE sip:carol@example.net");
        let mut response = Message::response(&invite, code, "");
        response.set_to_tag("x");
        d.take(&response, t);
        let (ack, events) = d.one();
        assert_eq!(line(&ack), "ACK sip:carol@example.net");
        assert_eq!(events, [expected]);
        // A retransmission of the final response is acknowledged again, nothing more.
        d.take(&response, t);
        let (_, events) = d.one();
        assert!(events.is_empty());
    }
}

#[test]
fn the_caller_cancels() {
    let mut s = Scene::new();
    let (call, invite, to_phone, to_laptop) = s.ring();
    let t = s.later(5);
    s.alice.ua.hangup(&call, t).expect("cancelled");
    let (cancel, events) = s.alice.one();
    assert_eq!(events, ["ended: Cancelled { local: true }"]);
    assert_eq!(line(&cancel), "CANCEL sip:bob@example.org");
    assert!(s.alice.ua.hangup(&call, t).is_err(), "ended already");
    // The hub answers the CANCEL, cancels each branch, and passes on a 487.
    let mut ok = Message::response(&cancel, 200, "");
    ok.set_to_tag("h");
    s.alice.take(&ok, t);
    for (device, forwarded) in [(&mut s.phone, &to_phone), (&mut s.laptop, &to_laptop)] {
        device.take(&hub_cancel(forwarded, None), t);
        let (sent, events) = device.drain();
        assert_eq!(lines(&sent), ["200 CANCEL", "487 INVITE"]);
        assert_eq!(events, ["ended: Cancelled { local: false }"]);
    }
    let mut terminated = Message::response(&invite, 487, "");
    terminated.set_to_tag("t");
    s.alice.take(&terminated, t);
    let (ack, events) = s.alice.one();
    assert_eq!(line(&ack), "ACK sip:bob@example.org");
    assert!(events.is_empty(), "told once");
    // A 2xx that crossed the CANCEL is acknowledged and hung up.
    let mut late = Message::response(&invite, 200, "");
    late.set_to_tag("late");
    late.insert_header("Contact", "<sip:bob@example.org;gr=phone>");
    late.set_body("application/sdp", ANSWER.as_bytes().to_vec());
    s.alice.take(&late, t);
    let (sent, events) = s.alice.drain();
    assert_eq!(
        lines(&sent),
        [
            "ACK sip:bob@example.org;gr=phone",
            "BYE sip:bob@example.org;gr=phone"
        ]
    );
    assert!(events.is_empty());
}

#[test]
fn a_bye_on_the_early_dialog_cancels() {
    let mut s = Scene::new();
    let (_, _, to_phone, _) = s.ring();
    let t = s.t;
    // The caller's BYE to the ringing phone, inside the early dialog of its 180.
    let call = Scene::bob_call(&mut s.phone);
    let tag = s.phone.ua.incoming[call.call_id()].tag.clone();
    let mut dialog = Dialog::from_answer(&to_phone, &{
        let mut r = Message::response(&to_phone, 180, "");
        r.set_to_tag(&tag);
        r
    })
    .expect("an early dialog");
    let bye = dialog.request(Method::Bye, &s.alice.ua.me, "z9hG4bKbye");
    s.phone.take(&via_hub(&bye, "b"), t);
    let (sent, events) = s.phone.drain();
    assert_eq!(lines(&sent), ["200 BYE", "487 INVITE"]);
    assert_eq!(events, ["ended: Cancelled { local: false }"]);
}

#[test]
fn timeouts() {
    // No response at all to the INVITE: given up after 32 s, with a CANCEL.
    let mut d = Device::new("alice", "phone", 5);
    let t = Moment::ZERO;
    d.call("bob", OFFER, t).expect("a call");
    d.drain();
    d.ua.handle_timeout(t + Duration::from_secs(31));
    assert_eq!(d.drain(), (vec![], vec![]));
    d.ua.handle_timeout(t + Duration::from_secs(32));
    let (cancel, events) = d.one();
    assert_eq!(line(&cancel), "CANCEL sip:bob@example.org");
    assert_eq!(
        events,
        ["ended: Failed { code: 408, reason: \"no answer in time\" }"]
    );

    // Ringing for ever: given up after three minutes.
    let mut s = Scene::new();
    let (_, _, _, _) = s.ring();
    let t = s.later(179);
    s.alice.ua.handle_timeout(t);
    assert_eq!(s.alice.drain(), (vec![], vec![]));
    let t = s.later(1);
    s.alice.ua.handle_timeout(t);
    let (cancel, events) = s.alice.one();
    assert_eq!(line(&cancel), "CANCEL sip:bob@example.org");
    assert_eq!(
        events,
        ["ended: Failed { code: 408, reason: \"no answer in time\" }"]
    );
    // The callee's side gives up too, with 480 so that the hub may try others.
    s.phone.ua.handle_timeout(t);
    let (response, events) = s.phone.one();
    assert_eq!(line(&response), "480 INVITE");
    assert_eq!(
        events,
        ["ended: Failed { code: 408, reason: \"not answered in time\" }"]
    );

    // An answer never acknowledged: the callee hangs up after 32 s.
    let mut s = Scene::new();
    s.ring();
    let t = s.t;
    let call = Scene::bob_call(&mut s.phone);
    s.phone.ua.answer(&call, ANSWER, t).expect("answered");
    s.phone.drain();
    let t = s.later(32);
    s.phone.ua.handle_timeout(t);
    let (bye, events) = s.phone.one();
    assert_eq!(line(&bye), "BYE sip:alice@example.org;gr=phone");
    assert_eq!(
        events,
        ["ended: Failed { code: 408, reason: \"the caller did not acknowledge the answer\" }"]
    );
}

#[test]
fn an_expires_header_limits_ringing() {
    let mut alice = Device::new("alice", "phone", 1);
    let mut bob = Device::new("bob", "phone", 2);
    let t = Moment::ZERO;
    alice.call("bob", OFFER, t).expect("a call");
    let (mut invite, _) = alice.one();
    invite.insert_header("Expires", "20");
    bob.take(&via_hub(&invite, "p"), t);
    bob.drain();
    bob.ua.handle_timeout(t + Duration::from_secs(20));
    let (response, _) = bob.one();
    assert_eq!(line(&response), "487 INVITE");
}

#[test]
fn hanging_up_before_the_ack_waits_for_it() {
    let mut s = Scene::new();
    s.ring();
    let t = s.t;
    let call = Scene::bob_call(&mut s.phone);
    s.phone.ua.answer(&call, ANSWER, t).expect("answered");
    let (ok, _) = s.phone.one();
    s.phone.ua.hangup(&call, t).expect("hung up");
    let (sent, events) = s.phone.drain();
    assert!(sent.is_empty(), "no BYE before the ACK (RFC 3261 15)");
    assert_eq!(events, ["ended: HungUp { local: true }"]);
    s.alice.take(&back(&ok), t);
    let (ack, _) = s.alice.one();
    s.phone.take(&via_hub(&ack, "a"), t);
    let (bye, events) = s.phone.one();
    assert_eq!(line(&bye), "BYE sip:alice@example.org;gr=phone");
    assert!(events.is_empty(), "told once");
    s.alice.take(&via_hub(&bye, "b"), t);
    let (_, events) = s.alice.one();
    assert_eq!(events, ["ended: HungUp { local: false }"]);
}

#[test]
fn requests_inside_and_outside_calls() {
    let mut s = Scene::new();
    let (_, _, ok) = s.answer();
    let t = s.t;
    let call = Scene::bob_call(&mut s.phone);
    let mut dialog = s.phone.ua.incoming[call.call_id()]
        .dialog
        .clone()
        .expect("a dialog");
    // The phone (played by the test) asks things inside the call.
    let ask = |method: Method, dialog: &mut Dialog, s: &mut Scene| {
        let branch = format!("z9hG4bK{}{}", method, dialog.local_cseq);
        let request = dialog.request(method, &s.phone.ua.me, &branch);
        s.alice.take(&via_hub(&request, &branch), t);
        let (response, events) = s.alice.one();
        assert!(events.is_empty());
        (request, response)
    };
    let (_, options) = ask(Method::Options, &mut dialog, &mut s);
    assert_eq!(line(&options), "200 OPTIONS");
    assert_eq!(options.headers.get("Allow"), Some(dialog::ALLOW));
    let (_, info) = ask(Method::Info, &mut dialog, &mut s);
    assert_eq!(line(&info), "405 INFO");
    let (_, other) = ask(Method::Extension("FOO".into()), &mut dialog, &mut s);
    assert_eq!(line(&other), "501 FOO");
    let (_, reinvite) = ask(Method::Invite, &mut dialog, &mut s);
    assert_eq!(line(&reinvite), "488 INVITE");
    // A request whose CSeq goes backwards (on a new branch: not a retransmission).
    dialog.local_cseq = 1;
    let (_, stale) = ask(Method::Options, &mut dialog, &mut s);
    assert_eq!(line(&stale), "500 OPTIONS");
    // A BYE for a dialog nobody has.
    let mut stranger = dialog.clone();
    stranger.remote.set_tag("nobody");
    stranger.local_cseq = 100;
    let bye = stranger.request(Method::Bye, &s.phone.ua.me, "z9hG4bKs");
    s.alice.take(&via_hub(&bye, "x"), t);
    let (response, _) = s.alice.one();
    assert_eq!(line(&response), "481 BYE");
    // OPTIONS and MESSAGE outside any call.
    let mut options = Message::request(Method::Options, s.alice.ua.me.gruu());
    for (name, value) in [
        ("Via", "SIP/2.0/MQTT hub.example.org;branch=z9hG4bKo"),
        ("From", "<sip:carol@example.net>;tag=c"),
        ("To", "<sip:alice@example.org>"),
        ("Call-ID", "o@x"),
        ("CSeq", "1 OPTIONS"),
    ] {
        options.insert_header(name, value);
    }
    s.alice.take(&options, t);
    let (response, _) = s.alice.one();
    assert_eq!(line(&response), "200 OPTIONS");
    assert!(response.to().is_some_and(|to| to.tag().is_some()));
    let _ = ok;
}

#[test]
fn bad_invites_are_refused() {
    let mut bob = Device::new("bob", "phone", 2);
    let t = Moment::ZERO;
    let base = |extra: &[(&str, &str)], body: Option<&str>| {
        let mut m = Message::request(
            Method::Invite,
            mqchat_sip::Uri::parse("sip:bob@example.org").expect("valid"),
        );
        for (name, value) in [
            ("Via", "SIP/2.0/MQTT hub.example.org;branch=z9hG4bKi"),
            ("From", "<sip:alice@example.org>;tag=a"),
            ("To", "<sip:bob@example.org>"),
            ("Call-ID", "i@x"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:alice@example.org;gr=phone>"),
        ] {
            m.insert_header(name, value);
        }
        for (name, value) in extra {
            m.insert_header(name, value);
        }
        if let Some(body) = body {
            m.set_body("application/sdp", body.as_bytes().to_vec());
        }
        m
    };
    bob.take(&base(&[], None), t);
    let (response, events) = bob.one();
    assert_eq!(line(&response), "488 INVITE");
    assert!(events.is_empty());
    bob.take(&base(&[("Require", "100rel")], Some(OFFER)), t);
    let (response, _) = bob.one();
    assert_eq!(line(&response), "420 INVITE");
    assert_eq!(response.headers.get("Unsupported"), Some("100rel"));
    // Text that is not SIP is dropped with a log line.
    bob.ua.handle("INVITE nonsense\r\n\r\n", t);
    bob.ua.handle("", t);
    assert_eq!(bob.drain(), (vec![], vec![]));
    // The application's own mistakes are errors, not messages.
    // (Bad call targets fail earlier, when parsed: `crate::call`'s tests.)
    assert!(bob.call("alice", "hello", t).is_err());
    let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(8000));
    assert!(bob.call("alice", &huge, t).is_err());
    assert!(bob.ua.answer(&Call::new("nope", false), ANSWER, t).is_err());
    assert_eq!(bob.drain(), (vec![], vec![]));
}

#[test]
fn a_retransmitted_invite_gets_the_last_response() {
    let mut s = Scene::new();
    let (_, _, to_phone, _) = s.ring();
    let t = s.t;
    s.phone.take(&to_phone, t);
    let (again, events) = s.phone.one();
    assert_eq!(line(&again), "180 INVITE");
    assert!(events.is_empty(), "rings once");
    // The same call on another branch (a loop) is refused.
    s.phone.take(&via_hub(&to_phone, "loop"), t);
    let (response, _) = s.phone.one();
    assert_eq!(line(&response), "482 INVITE");
}

#[test]
fn a_reconnect_sends_again_what_may_be_lost() {
    let mut s = Scene::new();
    let t = s.t;
    // Nothing answered the INVITE yet: it goes again, the same.
    let call = s.alice.call("bob", OFFER, t).expect("a call");
    let (invite, _) = s.alice.one();
    s.alice.ua.resend(t);
    let (again, _) = s.alice.one();
    assert_eq!(again, invite);
    // Ringing on the phone: its 180 goes again; answered: the 200 until the ACK.
    s.phone.take(&via_hub(&invite, "p"), t);
    let (ringing, _) = s.phone.one();
    s.phone.ua.resend(t);
    assert_eq!(s.phone.one().0, ringing);
    s.alice.take(&back(&ringing), t);
    s.alice.ua.resend(t);
    assert_eq!(s.alice.drain(), (vec![], vec!["ringing".to_owned()]));
    let phone_call = Scene::bob_call(&mut s.phone);
    s.phone.ua.answer(&phone_call, ANSWER, t).expect("answered");
    let (ok, _) = s.phone.one();
    s.phone.ua.resend(t);
    assert_eq!(s.phone.one().0, ok);
    s.alice.take(&back(&ok), t);
    let (ack, _) = s.alice.one();
    // A recent ACK goes again, with an OPTIONS asking whether the call is still on.
    s.alice.ua.resend(t);
    let (sent, _) = s.alice.drain();
    assert_eq!(sent[0], ack);
    assert_eq!(lines(&sent[1..]), ["OPTIONS sip:bob@example.org;gr=phone"]);
    s.phone.take(&via_hub(&ack, "a"), t);
    assert_eq!(s.phone.drain(), (vec![], vec![]));
    s.phone.take(&via_hub(&sent[1], "o"), t);
    let (still_on, _) = s.phone.one();
    assert_eq!(line(&still_on), "200 OPTIONS");
    s.alice.take(&back(&still_on), t);
    assert_eq!(s.alice.drain(), (vec![], vec![]), "the call goes on");
    // The hang-up's BYE goes again until answered.
    s.alice.ua.hangup(&call, t).expect("hung up");
    let (bye, _) = s.alice.one();
    let earlier = s.later(30);
    let t = s.later(10);
    s.alice.ua.handle_timeout(earlier);
    s.alice.ua.resend(t);
    assert_eq!(s.alice.one().0, bye);
    // The phone asks too; the call is over for alice: 481, and it ends there.
    s.phone.ua.resend(t);
    let (probe, _) = s.phone.one();
    assert_eq!(line(&probe), "OPTIONS sip:alice@example.org;gr=phone");
    s.alice.take(&via_hub(&probe, "p"), t);
    let (gone, _) = s.alice.one();
    assert_eq!(line(&gone), "481 OPTIONS");
    s.phone.take(&back(&gone), t);
    let (sent, events) = s.phone.drain();
    assert!(sent.is_empty());
    assert_eq!(
        events,
        ["ended: Failed { code: 481, reason: \"the call ended while this device was offline\" }"]
    );
    s.phone.ua.resend(t);
    assert_eq!(s.phone.drain(), (vec![], vec![]), "nothing more to resend");
}

#[test]
fn closing_ends_every_call() {
    let mut s = Scene::new();
    let (_, _, _) = s.answer();
    let t = s.t;
    // A second call rings on alice's phone meanwhile.
    let call = s.laptop.call("alice", OFFER, t).expect("a call");
    let (invite, _) = s.laptop.one();
    s.alice.take(&via_hub(&invite, "c"), t);
    s.alice.drain();
    s.alice.ua.close(t);
    let (sent, events) = s.alice.drain();
    let mut sent = lines(&sent);
    sent.sort();
    assert_eq!(sent, ["480 INVITE", "BYE sip:bob@example.org;gr=phone"]);
    assert_eq!(events.len(), 2);
    assert!(s.alice.ua.live_calls().is_empty());
    let _ = call;
}

/// Mangled SIP from the hub (which passes on what outside peers send) never panics the
/// user agent, whatever state its calls are in: each message of a whole call, with bytes
/// flipped, cut or repeated, is fed to both sides.
#[test]
fn mangled_messages_never_panic() {
    // A small deterministic generator: the test must be reproducible.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut s = Scene::new();
    let (call, invite, to_phone, _) = s.ring();
    let t = s.t;
    let phone_call = Scene::bob_call(&mut s.phone);
    s.phone.ua.answer(&phone_call, ANSWER, t).expect("answered");
    let (ok, _) = s.phone.one();
    let mut samples: Vec<Vec<u8>> = vec![invite.to_bytes(), to_phone.to_bytes(), ok.to_bytes()];
    s.alice.take(&back(&ok), t);
    let (ack, _) = s.alice.one();
    samples.push(ack.to_bytes());
    s.alice.ua.hangup(&call, t).expect("hung up");
    let (bye, _) = s.alice.one();
    samples.push(via_hub(&bye, "b").to_bytes());
    for round in 0..3000 {
        let mut bytes = samples[round % samples.len()].clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % bytes.len().max(1);
            match next() % 4 {
                0 => bytes[at] = next() as u8,
                1 => bytes.truncate(at),
                2 => bytes.insert(at, b"\r\n:;<>@\"="[(next() % 9) as usize]),
                _ => {
                    let end = (at + (next() as usize) % 40).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(at..at, copy);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        s.alice.ua.handle(&text, t);
        s.phone.ua.handle(&text, t);
        s.laptop.ua.handle(&text, t);
        s.alice.drain();
        s.phone.drain();
        s.laptop.drain();
    }
    s.alice.ua.handle_timeout(t + Duration::from_secs(600));
    s.phone.ua.handle_timeout(t + Duration::from_secs(600));
}
