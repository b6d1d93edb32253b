//! Parsing and printing whole messages: valid messages written in the spirit of the RFC 4475
//! torture tests (odd but legal), and invalid ones that must be refused with a typed error.

use mqchat_sip::{
    CSeq, Limits, Message, Method, NameAddr, ParseError, StartLine, Transport, Uri, Via,
};

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

#[track_caller]
fn parse(text: &str) -> Message {
    Message::parse(&crlf(text)).unwrap_or_else(|e| panic!("must parse: {e}\n{text}"))
}

#[track_caller]
fn refuse(text: &str) -> ParseError {
    match Message::parse(&crlf(text)) {
        Ok(m) => panic!("must not parse: {m:?}"),
        Err(e) => e,
    }
}

/// Printing a message and parsing it again gives the same message (printing states the
/// Content-Length, whether or not the message had that field).
#[track_caller]
fn round_trip(m: &Message) {
    let mut again = Message::parse(&m.to_bytes()).expect("a printed message parses");
    let mut m = m.clone();
    m.remove_header("Content-Length");
    again.remove_header("Content-Length");
    assert_eq!(again, m);
}

const INVITE: &str = "INVITE sip:bob@localhost SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnashds8;rport
Max-Forwards: 70
To: Bob <sip:bob@localhost>
From: \"Carol\" <sip:carol@example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314159 INVITE
Contact: <sip:carol@192.0.2.10:5070>
Content-Type: application/sdp
Content-Length: 5

v=0
";

#[test]
fn a_plain_invite() {
    let m = parse(INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(
        m.uri().map(|u| u.to_string()).as_deref(),
        Some("sip:bob@localhost")
    );
    let via = m.top_via().expect("a Via");
    assert_eq!(via.transport, Transport::Udp);
    assert_eq!(via.branch(), Some("z9hG4bKnashds8"));
    assert_eq!(m.call_id(), Some("a84b4c76e66710@pc33.example.net"));
    assert_eq!(
        m.cseq(),
        Some(CSeq {
            seq: 314159,
            method: Method::Invite
        })
    );
    assert_eq!(
        m.from()
            .and_then(|f| f.tag().map(str::to_string))
            .as_deref(),
        Some("1928301774")
    );
    assert_eq!(m.to().and_then(|t| t.display), Some("Bob".to_string()));
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(
        m.contact().map(|c| c.uri.to_string()).as_deref(),
        Some("sip:carol@192.0.2.10:5070")
    );
    assert_eq!(m.body, b"v=0\r\n");
    round_trip(&m);
}

#[test]
fn odd_but_legal_messages() {
    // Compact forms, odd case, folded lines, extra whitespace, multi-value headers in one
    // field, unknown headers, empty lines before the start line, LWS around colons.
    let m = parse(
        "\n\nOPTIONS sip:bob@localhost;transport=udp SIP/2.0
v:  SIP/2.0/UDP host1.example.com;branch=z9hG4bK-1 ,
   SIP / 2.0 / TCP host2.example.com:5061 ; branch = z9hG4bK-2
VIA: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK-3;received=2001:db8::1
f: sip:carol@example.net;tag=abc
t    : \"Bob, the \\\"builder\\\"\" <sip:bob@localhost>
i: weird-call-id<>:@host{}
cseq:
  8
  OPTIONS
m: <sip:c@host1.example.com>, \"Other\" <sip:c@h2>;q=0.5
Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>
X-Unknown-Header: kept as is ;; ,, <>
Max-Forwards: 0
l: 0

",
    );
    assert_eq!(m.vias().len(), 3);
    assert_eq!(m.vias()[1].transport, Transport::Tcp);
    assert_eq!(m.vias()[1].port, Some(5061));
    assert_eq!(m.vias()[2].received(), Some("2001:db8::1"));
    assert_eq!(
        m.from().map(|f| f.uri.to_string()).as_deref(),
        Some("sip:carol@example.net")
    );
    assert_eq!(
        m.to().and_then(|t| t.display).as_deref(),
        Some("Bob, the \"builder\"")
    );
    assert_eq!(m.call_id(), Some("weird-call-id<>:@host{}"));
    assert_eq!(m.cseq().map(|c| c.seq), Some(8));
    assert_eq!(m.contacts().len(), 2);
    assert_eq!(m.routes().len(), 2);
    assert_eq!(
        m.headers.get("x-unknown-header"),
        Some("kept as is ;; ,, <>")
    );
    assert_eq!(m.max_forwards(), Some(0));
    round_trip(&m);
}

#[test]
fn responses() {
    let m = parse(
        "SIP/2.0 180 Ringing, really ringing
Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnashds8
To: <sip:bob@localhost>;tag=bt
From: <sip:carol@example.net>;tag=ct
Call-ID: x
CSeq: 1 INVITE
Content-Length: 0

",
    );
    assert_eq!(m.code(), Some(180));
    assert!(
        matches!(&m.start, StartLine::Response { reason, .. } if reason == "Ringing, really ringing")
    );
    round_trip(&m);
    // A reason phrase may be empty; a response's CSeq names any method.
    let m = parse(
        "SIP/2.0 200 \nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nTo: <sip:b@h>\nFrom: <sip:a@h>;tag=1\nCall-ID: y\nCSeq: 2 BYE\n\n",
    );
    assert_eq!(m.code(), Some(200));
}

#[test]
fn content_length_is_honoured() {
    // Extra bytes after the declared body are discarded (datagram padding).
    let m = parse(&INVITE.replace("v=0\n", "v=0\nGARBAGE"));
    assert_eq!(m.body, b"v=0\r\n");
    // A body longer than the datagram is a truncated message.
    let e = refuse(&INVITE.replace("Content-Length: 5", "Content-Length: 400"));
    assert!(matches!(
        e,
        ParseError::BodyTruncated {
            declared: 400,
            available: 5
        }
    ));
    // Without Content-Length the rest of the datagram is the body.
    let m = parse(&INVITE.replace("Content-Length: 5\n", ""));
    assert_eq!(m.body, b"v=0\r\n");
    // Printing always states the real length.
    let mut m = parse(INVITE);
    m.body = b"longer body".to_vec();
    let printed = String::from_utf8(m.to_bytes()).expect("utf-8");
    assert!(printed.contains("Content-Length: 11\r\n"));
    round_trip(&m);
}

#[test]
fn invalid_messages_are_refused_with_a_reason() {
    type Check = fn(&ParseError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| *e == ParseError::Incomplete),
        (
            "INVITE sip:bob@localhost SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n",
            |e| *e == ParseError::Incomplete,
        ),
        ("INVITE  sip:bob@localhost SIP/2.0\n\n", |e| {
            matches!(e, ParseError::BadStartLine(_))
        }),
        (
            "INVITE sip:bob@localhost SIP/7.0\n\n",
            |e| matches!(e, ParseError::BadVersion(v) if v == "SIP/7.0"),
        ),
        ("INVITE http://example.com SIP/2.0\n\n", |e| {
            matches!(e, ParseError::UnsupportedScheme(_))
        }),
        ("INVITE sip:bob@local host SIP/2.0\n\n", |e| {
            matches!(e, ParseError::BadStartLine(_))
        }),
        ("SIP/2.0 99 Too Low\n\n", |e| {
            matches!(e, ParseError::BadStartLine(_))
        }),
        ("SIP/2.0 2000 OK\n\n", |e| {
            matches!(e, ParseError::BadStartLine(_))
        }),
        ("IN:VITE sip:a@b SIP/2.0\n\n", |e| {
            matches!(e, ParseError::BadStartLine(_))
        }),
        ("OPTIONS sip:a@b SIP/2.0\n continuation first\n\n", |e| {
            matches!(e, ParseError::BadHeaderLine { line: 2, .. })
        }),
        ("OPTIONS sip:a@b SIP/2.0\nno colon here\n\n", |e| {
            matches!(e, ParseError::BadHeaderLine { .. })
        }),
        ("OPTIONS sip:a@b SIP/2.0\nBad Name: x\n\n", |e| {
            matches!(e, ParseError::BadHeaderLine { .. })
        }),
        ("OPTIONS sip:a@b SIP/2.0\nTo: <sip:a@b>\n\n", |e| {
            *e == ParseError::MissingHeader("Via")
        }),
    ];
    for (text, ok) in cases {
        let e = refuse(text);
        assert!(ok(&e), "{text:?} gave {e:?}");
    }
    // Header-level errors on an otherwise complete INVITE.
    for (from, to, header) in [
        ("CSeq: 314159 INVITE", "CSeq: 314159 BYE", "CSeq"),
        ("CSeq: 314159 INVITE", "CSeq: -1 INVITE", "CSeq"),
        ("Max-Forwards: 70", "Max-Forwards: seventy", "Max-Forwards"),
        (
            "Call-ID: a84b4c76e66710@pc33.example.net",
            "Call-ID: a b",
            "Call-ID",
        ),
        (
            "To: Bob <sip:bob@localhost>",
            "To: Bob <sip:bob@localhost",
            "To",
        ),
        (
            "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnashds8;rport",
            "Via: SIP/2.0/UDP 192.0.2.10:99999",
            "Via",
        ),
        (
            "Content-Length: 5",
            "Content-Length: four",
            "Content-Length",
        ),
        (
            "Content-Length: 5",
            "Content-Length: 5\nContent-Length: 6",
            "Content-Length",
        ),
        (
            "Content-Type: application/sdp",
            "Content-Type: sdp",
            "Content-Type",
        ),
        (
            "Contact: <sip:carol@192.0.2.10:5070>",
            "Contact: <sip:carol@192.0.2.10:5070",
            "Contact",
        ),
    ] {
        let text = INVITE.replace(from, to);
        match refuse(&text) {
            ParseError::BadHeader { name, .. } => assert_eq!(name, header, "{to}"),
            other => panic!("{to}: {other:?}"),
        }
    }
    for missing in ["From", "To", "Call-ID", "CSeq"] {
        let text: String = INVITE
            .lines()
            .filter(|l| !l.starts_with(&format!("{missing}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(refuse(&text), ParseError::MissingHeader(missing));
    }
    // Not UTF-8 in the header section; control characters in a value.
    assert_eq!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n"),
        Err(ParseError::NotUtf8)
    );
    assert!(matches!(
        Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: a\x00b\r\n\r\n"),
        Err(ParseError::BadHeaderLine { .. })
    ));
}

#[test]
fn limits() {
    let limits = Limits {
        max_message_bytes: 100,
        max_headers: 5,
    };
    assert_eq!(
        Message::parse_with(&crlf(INVITE), &limits),
        Err(ParseError::TooLarge { limit: 100 })
    );
    let limits = Limits {
        max_message_bytes: 10_000,
        max_headers: 5,
    };
    assert_eq!(
        Message::parse_with(&crlf(INVITE), &limits),
        Err(ParseError::TooManyHeaders { limit: 5 })
    );
}

#[test]
fn syntax_only_parse_allows_answering_bad_requests() {
    let text = INVITE.replace("CSeq: 314159 INVITE", "CSeq: x INVITE");
    let m = Message::parse_syntax(&crlf(&text), &Limits::default()).expect("framing is fine");
    assert!(m.validate().is_err());
    let r = Message::response(&m, 400, "Bad CSeq");
    assert_eq!(r.headers.get("CSeq"), Some("x INVITE"));
}

#[test]
fn edits_of_a_proxy() {
    let mut m = parse(INVITE);
    let mut top = m.top_via().expect("via");
    top.set_received("198.51.100.7", 40001);
    m.set_top_via(&top);
    m.push_via(&Via::new(
        Transport::Mqtt,
        "hub.localhost",
        None,
        "z9hG4bKhub1",
    ));
    m.push_record_route(&NameAddr::new(
        Uri::parse("sip:gw.localhost;lr").expect("uri"),
    ));
    m.set_max_forwards(69);
    m.insert_header("Route", "<sip:next.example.com;lr>");
    assert_eq!(m.vias().len(), 2);
    assert_eq!(
        m.top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .as_deref(),
        Some("z9hG4bKhub1")
    );
    assert_eq!(m.vias()[1].received(), Some("198.51.100.7"));
    assert_eq!(m.vias()[1].rport(), Some(Some(40001)));
    assert_eq!(m.record_routes()[0].uri.to_string(), "sip:gw.localhost;lr");
    assert_eq!(
        m.pop_route().map(|r| r.uri.to_string()).as_deref(),
        Some("sip:next.example.com;lr")
    );
    assert_eq!(m.max_forwards(), Some(69));
    round_trip(&m);
    let popped = m.pop_via().expect("top via");
    assert_eq!(popped.transport, Transport::Mqtt);
    assert_eq!(m.remove_header("record-route"), 1);
    round_trip(&m);
}

#[test]
fn response_per_rfc3261_8_2_6() {
    let mut m = parse(INVITE);
    m.insert_header(
        "Record-Route",
        "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    );
    let mut r = Message::response(&m, 180, "");
    assert!(matches!(&r.start, StartLine::Response { code: 180, reason } if reason == "Ringing"));
    assert_eq!(
        r.headers.get_all("Via").collect::<Vec<_>>(),
        m.headers.get_all("Via").collect::<Vec<_>>()
    );
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), m.cseq());
    assert_eq!(r.from(), m.from());
    assert_eq!(r.record_routes().len(), 2);
    assert_eq!(r.to().and_then(|t| t.tag().map(str::to_string)), None);
    r.set_to_tag("bobtag");
    assert_eq!(
        r.to().and_then(|t| t.tag().map(str::to_string)).as_deref(),
        Some("bobtag")
    );
    round_trip(&r);
    let r = Message::response(&m, 486, "Busy Here");
    assert!(r.record_routes().is_empty());
    assert_eq!(r.code(), Some(486));
    let bytes = String::from_utf8(r.to_bytes()).expect("utf-8");
    assert!(bytes.starts_with("SIP/2.0 486 Busy Here\r\n"));
    assert!(bytes.ends_with("Content-Length: 0\r\n\r\n"));
}
