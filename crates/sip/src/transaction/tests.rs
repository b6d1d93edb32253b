//! Every timer path of the four machines, on virtual time.

use std::time::Duration;

use super::timers::Timer;
use super::*;
use crate::message::Message;

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const T4: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(method: &str) -> Message {
    let text = format!(
        "{method} sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nRoute: <sip:p.example.com;lr>\r\nFrom: <sip:a@example.net>;tag=f\r\nTo: <sip:bob@localhost>\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(text.as_bytes()).expect("valid request")
}

fn response(req: &Message, code: u16) -> Message {
    let mut r = Message::response(req, code, "");
    if code > 100 {
        r.set_to_tag("t");
    }
    r
}

fn sends(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_)))
        .count()
}

/// Fires the machine's timer each time it is due until `until`; returns the times at which
/// the request was resent and the actions of the last firing.
fn run_client(t: &mut ClientTransaction, until: Duration) -> (Vec<Duration>, Vec<Action>) {
    let mut resent = Vec::new();
    let mut last = Vec::new();
    while let Some(at) = t.next_timeout() {
        if at > until {
            break;
        }
        last = t.handle(ClientEvent::Timer, at);
        if sends(&last) > 0 {
            resent.push(at);
        }
    }
    (resent, last)
}

fn run_server(t: &mut ServerTransaction, until: Duration) -> (Vec<Duration>, Vec<Action>) {
    let mut resent = Vec::new();
    let mut last = Vec::new();
    while let Some(at) = t.next_timeout() {
        if at > until {
            break;
        }
        last = t.handle(ServerEvent::Timer, at);
        if sends(&last) > 0 {
            resent.push(at);
        }
    }
    (resent, last)
}

// ----- client INVITE -----

#[test]
fn timer_a_doubles_and_timer_b_times_out() {
    let invite = request("INVITE");
    let (mut t, actions) =
        ClientTransaction::start(invite.clone(), false, Timing::default(), ms(0));
    assert_eq!(actions, vec![Action::Send(invite)]);
    assert_eq!(t.state(), ClientState::Calling);
    let (resent, last) = run_client(&mut t, ms(100_000));
    // A fires at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (doubling, no cap); B at 32 s.
    assert_eq!(resent, [500, 1500, 3500, 7500, 15500, 31500].map(ms));
    assert_eq!(last, vec![Action::TimedOut, Action::Terminated]);
    assert!(t.is_terminated());
}

#[test]
fn reliable_invite_has_no_timer_a() {
    let (mut t, _) = ClientTransaction::start(request("INVITE"), true, Timing::default(), ms(0));
    assert!(!t.timer_running(Timer::A));
    assert_eq!(t.next_timeout(), Some(64 * T1));
    assert_eq!(
        t.handle(ClientEvent::Timer, 64 * T1),
        vec![Action::TimedOut, Action::Terminated]
    );
}

#[test]
fn provisional_stops_a_and_b() {
    let invite = request("INVITE");
    let (mut t, _) = ClientTransaction::start(invite.clone(), false, Timing::default(), ms(0));
    let ringing = response(&invite, 180);
    assert_eq!(
        t.handle(ClientEvent::Response(ringing.clone()), ms(100)),
        vec![Action::Deliver(ringing)]
    );
    assert_eq!(t.state(), ClientState::Proceeding);
    assert_eq!(
        t.next_timeout(),
        None,
        "Proceeding waits for the final response"
    );
}

#[test]
fn failure_is_acked_and_timer_d_ends() {
    let invite = request("INVITE");
    let (mut t, _) = ClientTransaction::start(invite.clone(), false, Timing::default(), ms(0));
    let busy = response(&invite, 486);
    let actions = t.handle(ClientEvent::Response(busy.clone()), ms(200));
    let Action::Send(ack) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(ack.method(), Some(&crate::Method::Ack));
    assert_eq!(ack.cseq().map(|c| c.seq), Some(7));
    assert_eq!(
        ack.to()
            .and_then(|t| t.tag().map(str::to_string))
            .as_deref(),
        Some("t")
    );
    assert_eq!(ack.headers.get("Via"), invite.headers.get("Via"));
    assert_eq!(ack.routes().len(), 1);
    assert_eq!(actions[1], Action::Deliver(busy.clone()));
    assert_eq!(t.state(), ClientState::Completed);
    // A retransmitted 486 is acknowledged again, not delivered.
    assert_eq!(
        t.handle(ClientEvent::Response(busy), ms(300)),
        vec![Action::Send(ack.clone())]
    );
    assert_eq!(t.next_timeout(), Some(ms(200) + Duration::from_secs(32)));
    assert_eq!(
        t.handle(ClientEvent::Timer, ms(32_200)),
        vec![Action::Terminated]
    );
}

#[test]
fn reliable_failure_terminates_at_once() {
    let invite = request("INVITE");
    let (mut t, _) = ClientTransaction::start(invite.clone(), true, Timing::default(), ms(0));
    let actions = t.handle(ClientEvent::Response(response(&invite, 404)), ms(10));
    assert_eq!(actions.last(), Some(&Action::Terminated));
    assert_eq!(sends(&actions), 1);
}

#[test]
fn success_enters_accepted_and_timer_m_ends() {
    let invite = request("INVITE");
    let (mut t, _) = ClientTransaction::start(invite.clone(), false, Timing::default(), ms(0));
    let ok = response(&invite, 200);
    assert_eq!(
        t.handle(ClientEvent::Response(ok.clone()), ms(100)),
        vec![Action::Deliver(ok.clone())]
    );
    assert_eq!(t.state(), ClientState::Accepted);
    // A retransmitted (or forked) 2xx still reaches the user, who acknowledges it.
    assert_eq!(
        t.handle(ClientEvent::Response(ok.clone()), ms(600)),
        vec![Action::Deliver(ok)]
    );
    assert_eq!(t.next_timeout(), Some(ms(100) + 64 * T1));
    assert_eq!(
        t.handle(ClientEvent::Timer, ms(100) + 64 * T1),
        vec![Action::Terminated]
    );
}

#[test]
fn transport_error_ends_the_client() {
    let (mut t, _) = ClientTransaction::start(request("INVITE"), false, Timing::default(), ms(0));
    assert_eq!(
        t.handle(ClientEvent::TransportError, ms(1)),
        vec![Action::TransportFailed, Action::Terminated]
    );
    let (mut t, _) = ClientTransaction::start(request("MESSAGE"), false, Timing::default(), ms(0));
    assert_eq!(
        t.handle(ClientEvent::TransportError, ms(1)),
        vec![Action::TransportFailed, Action::Terminated]
    );
}

// ----- client non-INVITE -----

#[test]
fn timer_e_caps_at_t2_and_timer_f_times_out() {
    let (mut t, _) = ClientTransaction::start(request("MESSAGE"), false, Timing::default(), ms(0));
    assert_eq!(t.state(), ClientState::Trying);
    let (resent, last) = run_client(&mut t, ms(100_000));
    // E: 0.5, 1.5, 3.5, 7.5 (interval capped at 4 s), 11.5, ... until F at 32 s.
    assert_eq!(
        resent,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
        .map(ms)
    );
    assert_eq!(last, vec![Action::TimedOut, Action::Terminated]);
}

#[test]
fn proceeding_retransmits_every_t2() {
    let message = request("MESSAGE");
    let (mut t, _) = ClientTransaction::start(message.clone(), false, Timing::default(), ms(0));
    t.handle(ClientEvent::Response(response(&message, 100)), ms(100));
    assert_eq!(t.state(), ClientState::Proceeding);
    let (resent, last) = run_client(&mut t, ms(100_000));
    assert_eq!(resent.first(), Some(&(ms(100) + T2)));
    assert!(resent.windows(2).all(|w| w[1] - w[0] == T2));
    assert_eq!(last, vec![Action::TimedOut, Action::Terminated]);
}

#[test]
fn final_response_then_timer_k() {
    let message = request("MESSAGE");
    let (mut t, _) = ClientTransaction::start(message.clone(), false, Timing::default(), ms(0));
    let ok = response(&message, 200);
    assert_eq!(
        t.handle(ClientEvent::Response(ok.clone()), ms(50)),
        vec![Action::Deliver(ok.clone())]
    );
    assert_eq!(t.state(), ClientState::Completed);
    assert_eq!(
        t.handle(ClientEvent::Response(ok), ms(60)),
        vec![],
        "retransmissions absorbed"
    );
    assert_eq!(t.next_timeout(), Some(ms(50) + T4));
    assert_eq!(
        t.handle(ClientEvent::Timer, ms(50) + T4),
        vec![Action::Terminated]
    );
    // Reliable: K is zero.
    let (mut t, _) = ClientTransaction::start(message.clone(), true, Timing::default(), ms(0));
    let actions = t.handle(ClientEvent::Response(response(&message, 403)), ms(1));
    assert_eq!(actions.last(), Some(&Action::Terminated));
}

#[test]
fn configured_timers_are_used() {
    let timing = Timing {
        t1: ms(100),
        t2: ms(400),
        t4: ms(1000),
    };
    let (mut t, _) = ClientTransaction::start(request("OPTIONS"), false, timing, ms(0));
    let (resent, _) = run_client(&mut t, ms(100_000));
    assert_eq!(&resent[..4], &[100, 300, 700, 1100].map(ms));
    assert!(t.is_terminated());
    assert_eq!(timing.timeout(), ms(6400));
}

// ----- server INVITE -----

#[test]
fn invite_server_answers_trying_and_absorbs_retransmissions() {
    let invite = request("INVITE");
    let (mut t, actions) = ServerTransaction::start(invite.clone(), false, Timing::default());
    let Action::Send(trying) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(trying.code(), Some(100));
    assert_eq!(t.state(), ServerState::Proceeding);
    assert_eq!(
        t.handle(ServerEvent::Request(invite.clone()), ms(10)),
        vec![Action::Send(trying.clone())]
    );
    let ringing = response(&invite, 180);
    assert_eq!(
        t.handle(ServerEvent::Respond(ringing.clone()), ms(20)),
        vec![Action::Send(ringing.clone())]
    );
    assert_eq!(
        t.handle(ServerEvent::Request(invite), ms(30)),
        vec![Action::Send(ringing)]
    );
}

#[test]
fn timer_g_retransmits_failure_until_timer_h() {
    let invite = request("INVITE");
    let (mut t, _) = ServerTransaction::start(invite.clone(), false, Timing::default());
    let busy = response(&invite, 486);
    assert_eq!(
        t.handle(ServerEvent::Respond(busy.clone()), ms(0)),
        vec![Action::Send(busy.clone())]
    );
    assert_eq!(t.state(), ServerState::Completed);
    // A retransmitted INVITE gets the 486 again.
    assert_eq!(
        t.handle(ServerEvent::Request(invite), ms(10)),
        vec![Action::Send(busy)]
    );
    let (resent, last) = run_server(&mut t, ms(100_000));
    assert_eq!(&resent[..5], &[500, 1500, 3500, 7500, 11500].map(ms));
    assert_eq!(last, vec![Action::TimedOut, Action::Terminated]);
}

#[test]
fn ack_confirms_and_timer_i_ends() {
    let invite = request("INVITE");
    let (mut t, _) = ServerTransaction::start(invite.clone(), false, Timing::default());
    let busy = response(&invite, 486);
    t.handle(ServerEvent::Respond(busy.clone()), ms(0));
    let ack = Message::ack_for(&invite, &busy);
    assert_eq!(t.handle(ServerEvent::Request(ack.clone()), ms(700)), vec![]);
    assert_eq!(t.state(), ServerState::Confirmed);
    assert!(!t.timer_running(Timer::G) && !t.timer_running(Timer::H));
    assert_eq!(
        t.handle(ServerEvent::Request(ack), ms(800)),
        vec![],
        "ACKs absorbed"
    );
    assert_eq!(t.next_timeout(), Some(ms(700) + T4));
    assert_eq!(
        t.handle(ServerEvent::Timer, ms(700) + T4),
        vec![Action::Terminated]
    );
}

#[test]
fn reliable_invite_server_has_no_timer_g_and_zero_timer_i() {
    let invite = request("INVITE");
    let (mut t, _) = ServerTransaction::start(invite.clone(), true, Timing::default());
    let busy = response(&invite, 486);
    t.handle(ServerEvent::Respond(busy.clone()), ms(0));
    assert!(!t.timer_running(Timer::G));
    assert!(t.timer_running(Timer::H));
    let actions = t.handle(
        ServerEvent::Request(Message::ack_for(&invite, &busy)),
        ms(5),
    );
    assert_eq!(actions, vec![Action::Terminated]);
}

#[test]
fn success_accepted_then_timer_l() {
    let invite = request("INVITE");
    let (mut t, _) = ServerTransaction::start(invite.clone(), false, Timing::default());
    let ok = response(&invite, 200);
    assert_eq!(
        t.handle(ServerEvent::Respond(ok.clone()), ms(0)),
        vec![Action::Send(ok.clone())]
    );
    assert_eq!(t.state(), ServerState::Accepted);
    assert_eq!(
        t.handle(ServerEvent::Request(invite.clone()), ms(10)),
        vec![],
        "INVITE retransmission absorbed"
    );
    assert_eq!(
        t.handle(ServerEvent::Respond(ok.clone()), ms(500)),
        vec![Action::Send(ok.clone())]
    );
    let ack = Message::ack_for(&invite, &ok);
    assert_eq!(
        t.handle(ServerEvent::Request(ack.clone()), ms(600)),
        vec![Action::Deliver(ack)]
    );
    assert_eq!(t.next_timeout(), Some(64 * T1));
    assert_eq!(
        t.handle(ServerEvent::Timer, 64 * T1),
        vec![Action::Terminated]
    );
}

#[test]
fn transport_error_ends_the_server() {
    let (mut t, _) = ServerTransaction::start(request("INVITE"), false, Timing::default());
    assert_eq!(
        t.handle(ServerEvent::TransportError, ms(1)),
        vec![Action::TransportFailed, Action::Terminated]
    );
}

// ----- server non-INVITE -----

#[test]
fn non_invite_server_trying_proceeding_completed_timer_j() {
    let message = request("MESSAGE");
    let (mut t, actions) = ServerTransaction::start(message.clone(), false, Timing::default());
    assert!(actions.is_empty(), "no 100 Trying for non-INVITE");
    assert_eq!(t.state(), ServerState::Trying);
    assert_eq!(
        t.handle(ServerEvent::Request(message.clone()), ms(1)),
        vec![],
        "absorbed in Trying"
    );
    let trying = response(&message, 100);
    t.handle(ServerEvent::Respond(trying.clone()), ms(2));
    assert_eq!(t.state(), ServerState::Proceeding);
    assert_eq!(
        t.handle(ServerEvent::Request(message.clone()), ms(3)),
        vec![Action::Send(trying)]
    );
    let ok = response(&message, 200);
    assert_eq!(
        t.handle(ServerEvent::Respond(ok.clone()), ms(4)),
        vec![Action::Send(ok.clone())]
    );
    assert_eq!(t.state(), ServerState::Completed);
    assert_eq!(
        t.handle(ServerEvent::Request(message), ms(5)),
        vec![Action::Send(ok)]
    );
    assert_eq!(t.next_timeout(), Some(ms(4) + 64 * T1));
    assert_eq!(
        t.handle(ServerEvent::Timer, ms(4) + 64 * T1),
        vec![Action::Terminated]
    );
}

#[test]
fn reliable_non_invite_server_terminates_on_final() {
    let message = request("BYE");
    let (mut t, _) = ServerTransaction::start(message.clone(), true, Timing::default());
    let actions = t.handle(ServerEvent::Respond(response(&message, 200)), ms(0));
    assert_eq!(actions.last(), Some(&Action::Terminated));
}

// ----- keys and 2xx retransmission -----

#[test]
fn keys_match_requests_responses_and_acks() {
    let invite = request("INVITE");
    let key = TransactionKey::for_request(&invite).expect("key");
    let busy = response(&invite, 486);
    assert_eq!(
        TransactionKey::for_request(&Message::ack_for(&invite, &busy)),
        Some(key.clone())
    );
    let cancel = Message::cancel_for(&invite);
    let cancel_key = TransactionKey::for_request(&cancel).expect("key");
    assert_ne!(cancel_key, key);
    assert_eq!(cancel_key.branch, key.branch);
    assert_eq!(
        TransactionKey::for_response(&busy),
        TransactionKey::for_sent_request(&invite)
    );
    let mut old = invite.clone();
    old.headers.set("Via", "SIP/2.0/UDP h;branch=1234");
    assert_eq!(TransactionKey::for_request(&old), None);
}

#[test]
fn success_retransmission_until_ack_or_give_up() {
    let invite = request("INVITE");
    let ok = response(&invite, 200);
    let mut r = SuccessRetransmission::start(ok.clone(), Timing::default(), ms(0));
    let mut sent = Vec::new();
    while let Some(at) = r.next_timeout() {
        match r.poll(at) {
            Retransmit::Send(m) => {
                assert_eq!(m, ok);
                sent.push(at);
            }
            Retransmit::GaveUp => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(&sent[..5], &[500, 1500, 3500, 7500, 11500].map(ms));
    assert!(r.is_done());
    let mut r = SuccessRetransmission::start(ok, Timing::default(), ms(0));
    assert_eq!(r.poll(ms(100)), Retransmit::Wait);
    r.ack();
    assert_eq!(r.next_timeout(), None);
    assert_eq!(r.poll(ms(600)), Retransmit::Done);
}
