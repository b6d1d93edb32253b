//! The gateway's logic against simulated peers and a simulated hub, on virtual time.

use std::time::Duration;

use mqchat_proto::Moment;
use mqchat_proto::body::Sip;
use mqchat_sip::{Message, Method, Timing};

use super::{Core, CoreConfig, Output};
use crate::peers::{Peers, SipPeer};
use crate::remote::Remote;

const PBX: &str = "udp:127.0.0.1:5070";

/// The moment `n` ms after the driver's origin.
fn ms(n: u64) -> Moment {
    Moment::from_millis(n)
}

fn core_with(peers: Vec<SipPeer>) -> Core {
    Core::new(
        CoreConfig {
            realm: "localhost".into(),
            timing: Timing::default(),
            local_udp: Some("127.0.0.1:5060".parse().expect("addr")),
            local_tcp: Some("127.0.0.1:5060".parse().expect("addr")),
        },
        Peers::new(&peers).expect("valid peers"),
        7,
        "secret".into(),
    )
}

fn core() -> Core {
    core_with(vec![SipPeer {
        name: "pbx".into(),
        addresses: vec!["127.0.0.1".into()],
        domains: vec!["example.net".into()],
        outbound: Some(PBX.into()),
        ..SipPeer::default()
    }])
}

fn remote(text: &str) -> Remote {
    Remote::parse(text).expect("valid remote")
}

fn invite(branch: &str) -> String {
    format!(
        "INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:carol@example.net>;tag=c1\r\nTo: <sip:bob@localhost>\r\nCall-ID: call-1@example.net\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The messages sent to peers, parsed.
fn sent(out: &[Output]) -> Vec<(Remote, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes } => {
                // A 400 copies the malformed header it refuses: check the framing only.
                let limits = mqchat_sip::Limits::default();
                Some((
                    *to,
                    Message::parse_syntax(bytes, &limits).expect("the gateway sends SIP"),
                ))
            }
            Output::ToHub(_) => None,
        })
        .collect()
}

/// The packets for the hub, with their messages parsed.
fn to_hub(out: &[Output]) -> Vec<(Sip, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToHub(sip) => Some((
                sip.clone(),
                Message::parse(sip.message.as_bytes()).expect("the gateway forwards valid SIP"),
            )),
            Output::Send { .. } => None,
        })
        .collect()
}

fn hub(message: &Message, destination: Option<&str>) -> Sip {
    Sip {
        message: String::from_utf8(message.to_bytes()).expect("text"),
        destination: destination.map(str::to_owned),
        ..Sip::default()
    }
}

/// Runs the core's timers until `until`, collecting the outputs.
fn run_until(core: &mut Core, until: Moment) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(at) = core.next_timeout() {
        if at > until {
            break;
        }
        out.extend(core.tick(at));
    }
    out
}

#[test]
fn unknown_peers_get_403() {
    let mut core = core();
    let out = core.on_peer(
        remote("udp:10.9.9.9:5060"),
        invite("z9hG4bKx").as_bytes(),
        ms(0),
    );
    let sent = sent(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.code(), Some(403));
    assert_eq!(sent[0].0, remote("udp:10.9.9.9:5060"));
    assert!(to_hub(&out).is_empty());
}

#[test]
fn malformed_input_is_answered_400_or_dropped() {
    let mut core = core();
    let from = remote(PBX);
    let bad_cseq = invite("z9hG4bKb").replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    let out = core.on_peer(from, bad_cseq.as_bytes(), ms(0));
    assert_eq!(sent(&out)[0].1.code(), Some(400));
    assert!(to_hub(&out).is_empty());
    let old = invite("z9hG4bKv").replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia");
    assert_eq!(
        sent(&core.on_peer(from, old.as_bytes(), ms(0)))[0].1.code(),
        Some(505)
    );
    let tel = invite("z9hG4bKt").replace("INVITE sip:bob@localhost", "INVITE mailto:bob@localhost");
    assert_eq!(
        sent(&core.on_peer(from, tel.as_bytes(), ms(0)))[0].1.code(),
        Some(416)
    );
    for junk in [
        &b"\x00\x01garbage"[..],
        b"INVITE sip:bob@localhost SIP/2.0\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
    ] {
        assert!(core.on_peer(from, junk, ms(0)).is_empty());
    }
    assert_eq!(core.n_transactions(), 0);
}

#[test]
fn invite_from_a_peer_reaches_the_hub_once() {
    let mut core = core();
    let from = remote(PBX);
    let out = core.on_peer(from, invite("z9hG4bK1").as_bytes(), ms(0));
    let sent1 = sent(&out);
    assert_eq!(sent1.len(), 1);
    assert_eq!(sent1[0].1.code(), Some(100));
    let hub1 = to_hub(&out);
    assert_eq!(hub1.len(), 1);
    let (sip, message) = &hub1[0];
    assert_eq!(sip.peer.as_deref(), Some("pbx"));
    assert_eq!(sip.source.as_deref(), Some(PBX));
    let via = message.top_via().expect("via");
    assert_eq!(via.received(), Some("127.0.0.1"));
    assert_eq!(via.rport(), Some(Some(5070)));
    assert_eq!(
        message.record_routes()[0].uri.to_string(),
        "sip:127.0.0.1:5060;lr"
    );
    // The retransmission gets the 100 again and does not reach the hub.
    let out = core.on_peer(from, invite("z9hG4bK1").as_bytes(), ms(500));
    assert_eq!(sent(&out).len(), 1);
    assert!(to_hub(&out).is_empty());

    // The hub's 180 and 200 go back; the 200 is resent until the ACK.
    let mut ringing = Message::response(message, 180, "");
    ringing.set_to_tag("b1");
    let out = core.on_hub(&hub(&ringing, None), ms(600));
    assert_eq!(sent(&out)[0].1.code(), Some(180));
    assert_eq!(sent(&out)[0].0, from);
    let mut ok = Message::response(message, 200, "");
    ok.set_to_tag("b1");
    let out = core.on_hub(&hub(&ok, None), ms(1000));
    assert_eq!(sent(&out)[0].1.code(), Some(200));
    let resent = run_until(&mut core, ms(4600));
    let resent = sent(&resent);
    assert_eq!(resent.len(), 3, "at 1.5, 2.5 and 4.5 s");
    assert!(
        resent
            .iter()
            .all(|(to, m)| *to == from && m.code() == Some(200))
    );
    let ack = "ACK sip:bob@localhost;gr=phone SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack\r\nMax-Forwards: 70\r\nFrom: <sip:carol@example.net>;tag=c1\r\nTo: <sip:bob@localhost>;tag=b1\r\nCall-ID: call-1@example.net\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    let out = core.on_peer(from, ack.as_bytes(), ms(4700));
    assert_eq!(to_hub(&out)[0].1.method(), Some(&Method::Ack));
    let after = run_until(&mut core, ms(40_000));
    assert!(
        sent(&after).iter().all(|(_, m)| m.code() != Some(200)),
        "no 2xx after the ACK"
    );
}

#[test]
fn failure_is_retransmitted_until_the_ack_which_stays_here() {
    let mut core = core();
    let from = remote(PBX);
    let out = core.on_peer(from, invite("z9hG4bK2").as_bytes(), ms(0));
    let (_, message) = to_hub(&out).remove(0);
    let mut busy = Message::response(&message, 486, "");
    busy.set_to_tag("b2");
    let out = core.on_hub(&hub(&busy, None), ms(100));
    assert_eq!(sent(&out)[0].1.code(), Some(486));
    let resent = sent(&run_until(&mut core, ms(1700)));
    assert_eq!(resent.len(), 2, "Timer G at 0.6 and 1.6 s");
    let ack = Message::ack_for(
        &Message::parse(invite("z9hG4bK2").as_bytes()).expect("valid"),
        &busy,
    );
    let out = core.on_peer(from, &ack.to_bytes(), ms(1800));
    assert!(out.is_empty(), "the ACK of a failure is hop by hop");
    assert!(sent(&run_until(&mut core, ms(60_000))).is_empty());
    assert_eq!(core.n_transactions(), 0, "Timer I ended the transaction");
}

#[test]
fn digest_peers_are_challenged() {
    let mut core = core_with(vec![SipPeer {
        name: "roamer".into(),
        username: Some("carol".into()),
        password: Some("pw".into()),
        ..SipPeer::default()
    }]);
    let from = remote("udp:192.0.2.7:5060");
    let out = core.on_peer(from, invite("z9hG4bK3").as_bytes(), ms(0));
    let challenge = &sent(&out)[0].1;
    assert_eq!(challenge.code(), Some(407));
    let header = challenge
        .headers
        .get("Proxy-Authenticate")
        .expect("a challenge");
    let nonce = header
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce");
    let md5 = |s: String| {
        use md5::Digest as _;
        md5::Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let answer = |password: &str, branch: &str| {
        let ha1 = md5(format!("carol:localhost:{password}"));
        let ha2 = md5("INVITE:sip:bob@localhost".to_owned());
        let response = md5(format!("{ha1}:{nonce}:{ha2}"));
        invite(branch).replace(
            "Content-Length: 0",
            &format!("Proxy-Authorization: Digest username=\"carol\", realm=\"localhost\", nonce=\"{nonce}\", uri=\"sip:bob@localhost\", response=\"{response}\"\r\nContent-Length: 0"),
        )
    };
    let out = core.on_peer(from, answer("wrong", "z9hG4bK4").as_bytes(), ms(10));
    assert_eq!(sent(&out)[0].1.code(), Some(407));
    assert!(to_hub(&out).is_empty());
    let out = core.on_peer(from, answer("pw", "z9hG4bK5").as_bytes(), ms(20));
    assert_eq!(sent(&out)[0].1.code(), Some(100));
    assert_eq!(to_hub(&out)[0].0.peer.as_deref(), Some("roamer"));
}

#[test]
fn hub_requests_go_out_with_the_gateways_via_and_retransmissions() {
    let mut core = core();
    let message = Message::parse(b"MESSAGE sip:carol@example.net SIP/2.0\r\nVia: SIP/2.0/MQTT hub.localhost;branch=z9hG4bKhub1\r\nMax-Forwards: 69\r\nFrom: <sip:bob@localhost>;tag=b\r\nTo: <sip:carol@example.net>\r\nCall-ID: m1@localhost\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi").expect("valid");
    let out = core.on_hub(&hub(&message, Some(PBX)), ms(0));
    let (to, request) = sent(&out).remove(0);
    assert_eq!(to, remote(PBX));
    let vias = request.vias();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host, "127.0.0.1");
    assert_eq!(vias[0].port, Some(5060));
    assert!(vias[0].is_rfc3261_branch());
    assert_eq!(vias[1].branch(), Some("z9hG4bKhub1"));
    assert_eq!(
        sent(&run_until(&mut core, ms(1600))).len(),
        2,
        "Timer E at 0.5 and 1.5 s"
    );
    let ok = Message::response(&request, 200, "");
    let out = core.on_peer(to, &ok.to_bytes(), ms(1700));
    let (sip, answer) = to_hub(&out).remove(0);
    assert_eq!(sip.peer.as_deref(), Some("pbx"));
    assert_eq!(answer.vias().len(), 1, "the gateway's Via is popped");
    assert_eq!(
        answer
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
            .as_deref(),
        Some("z9hG4bKhub1")
    );

    // No answer at all: 408 to the hub after 64*T1.
    let mut second = message.clone();
    second
        .headers
        .set("Via", "SIP/2.0/MQTT hub.localhost;branch=z9hG4bKhub2");
    core.on_hub(&hub(&second, Some(PBX)), ms(2000));
    let out = run_until(&mut core, ms(2000 + 32_000));
    let timeouts = to_hub(&out);
    assert_eq!(timeouts.len(), 1);
    assert_eq!(timeouts[0].1.code(), Some(408));
    // A destination that is no peer's is refused.
    let out = core.on_hub(&hub(&message, Some("udp:198.51.100.1:5060")), ms(40_000));
    assert_eq!(to_hub(&out)[0].1.code(), Some(403));
    assert!(sent(&out).is_empty());
}

#[test]
fn hub_cancel_becomes_the_gateways_cancel() {
    let mut core = core();
    let invite = Message::parse(b"INVITE sip:carol@example.net SIP/2.0\r\nVia: SIP/2.0/MQTT hub.localhost;branch=z9hG4bKhubinv\r\nMax-Forwards: 69\r\nFrom: <sip:bob@localhost>;tag=b\r\nTo: <sip:carol@example.net>\r\nCall-ID: i1@localhost\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").expect("valid");
    let out = core.on_hub(&hub(&invite, Some(PBX)), ms(0));
    let (to, sent_invite) = sent(&out).remove(0);
    assert_eq!(sent_invite.record_routes().len(), 1);
    let ringing = {
        let mut r = Message::response(&sent_invite, 180, "");
        r.set_to_tag("c");
        r
    };
    let out = core.on_peer(to, &ringing.to_bytes(), ms(100));
    assert_eq!(to_hub(&out)[0].1.code(), Some(180));
    let cancel = Message::cancel_for(&invite);
    let out = core.on_hub(&hub(&cancel, Some(PBX)), ms(200));
    assert_eq!(
        to_hub(&out)[0].1.code(),
        Some(200),
        "the hub's CANCEL is answered here"
    );
    let (_, own_cancel) = sent(&out).remove(0);
    assert_eq!(own_cancel.method(), Some(&Method::Cancel));
    assert_eq!(own_cancel.top_via(), sent_invite.top_via());
    // The peer answers 200 to the CANCEL (absorbed) and 487 to the INVITE (ACKed, forwarded).
    let out = core.on_peer(
        to,
        &Message::response(&own_cancel, 200, "").to_bytes(),
        ms(300),
    );
    assert!(to_hub(&out).is_empty());
    let mut terminated = Message::response(&sent_invite, 487, "");
    terminated.set_to_tag("c");
    let out = core.on_peer(to, &terminated.to_bytes(), ms(400));
    assert_eq!(sent(&out)[0].1.method(), Some(&Method::Ack));
    assert_eq!(to_hub(&out)[0].1.code(), Some(487));
    // The hub's own ACK of the 487 is absorbed.
    let hub_ack = Message::ack_for(&invite, &terminated);
    assert!(core.on_hub(&hub(&hub_ack, Some(PBX)), ms(500)).is_empty());
}

#[test]
fn a_silent_hub_gets_the_peer_a_500_and_a_silent_peer_a_487_for_the_hub() {
    let mut core = core();
    let from = remote(PBX);
    let message = "MESSAGE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsilent\r\nMax-Forwards: 70\r\nFrom: <sip:carol@example.net>;tag=c\r\nTo: <sip:bob@localhost>\r\nCall-ID: s1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        to_hub(&core.on_peer(from, message.as_bytes(), ms(0))).len(),
        1
    );
    let out = run_until(&mut core, ms(301_000));
    assert_eq!(sent(&out)[0].1.code(), Some(500));

    let invite = Message::parse(b"INVITE sip:carol@example.net SIP/2.0\r\nVia: SIP/2.0/MQTT hub.localhost;branch=z9hG4bKhubc\r\nMax-Forwards: 69\r\nFrom: <sip:bob@localhost>;tag=b\r\nTo: <sip:carol@example.net>\r\nCall-ID: c9@localhost\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").expect("valid");
    let start = ms(400_000);
    let out = core.on_hub(&hub(&invite, Some(PBX)), start);
    let (to, sent_invite) = sent(&out).remove(0);
    let mut ringing = Message::response(&sent_invite, 180, "");
    ringing.set_to_tag("c");
    core.on_peer(to, &ringing.to_bytes(), start + Duration::from_millis(10));
    core.on_hub(
        &hub(&Message::cancel_for(&invite), Some(PBX)),
        start + Duration::from_millis(20),
    );
    // The peer answers neither the CANCEL nor the INVITE.
    let out = run_until(
        &mut core,
        start + Duration::from_millis(20) + Duration::from_secs(33),
    );
    let answers: Vec<_> = to_hub(&out)
        .into_iter()
        .filter_map(|(_, m)| m.code())
        .collect();
    assert!(answers.contains(&487), "{answers:?}");
    assert_eq!(core.n_transactions(), 0);
}
