//! Property tests: generated messages survive print → parse unchanged; arbitrary and mutated
//! bytes never panic the parser or the framer.

use mqchat_sip::{
    CSeq, Framer, Limits, Message, Method, NameAddr, Params, Scheme, StartLine, Transport, Uri, Via,
};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,6}){0,3}",
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn params(max: usize) -> impl Strategy<Value = Params> {
    params_named(token(), max)
}

/// URI parameter names allow fewer characters than header parameter names.
fn uri_params(max: usize) -> impl Strategy<Value = Params> {
    params_named("[A-Za-z0-9_.!~*'()-]{1,10}", max)
}

fn params_named(name: impl Strategy<Value = String>, max: usize) -> impl Strategy<Value = Params> {
    prop::collection::vec((name, prop::option::of("[A-Za-z0-9.:_-]{1,10}")), 0..max).prop_map(
        |ps| {
            let mut params = Params::default();
            for (n, v) in ps {
                if !params.has(&n) {
                    params.set(&n, v.as_deref());
                }
            }
            params
        },
    )
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        prop_oneof![Just(Scheme::Sip), Just(Scheme::Sips)],
        prop::option::of("[A-Za-z0-9_.!~*'()%&=+$,-]{1,12}"),
        host(),
        prop::option::of(any::<u16>()),
        uri_params(3),
        prop::collection::vec(("[a-z]{1,6}", "[A-Za-z0-9]{0,6}"), 0..2),
    )
        .prop_map(|(scheme, user, host, port, params, headers)| Uri {
            scheme,
            user,
            password: None,
            host,
            port,
            params,
            headers,
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (prop::option::of("[ -~]{0,16}"), uri(), params(3)).prop_map(|(display, uri, params)| {
        NameAddr {
            display,
            uri,
            params,
        }
    })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![
            Just(Transport::Udp),
            Just(Transport::Tcp),
            Just(Transport::Mqtt),
            Just(Transport::Tls)
        ],
        host(),
        prop::option::of(any::<u16>()),
        "[A-Za-z0-9]{1,20}",
        params(3),
    )
        .prop_map(|(transport, host, port, branch, extra)| {
            let mut via = Via::new(transport, &host, port, &format!("z9hG4bK{branch}"));
            for p in extra.0 {
                if !via.params.has(&p.name) {
                    via.params.set(&p.name, p.value.as_deref());
                }
            }
            via
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Options),
        Just(Method::Message),
        "[A-Z]{3,10}".prop_map(|m| Method::parse(&m).unwrap_or(Method::Info)),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            (method(), uri()).prop_map(|(method, uri)| StartLine::Request { method, uri }),
            (100u16..700, "[ -~]{0,20}").prop_map(|(code, reason)| StartLine::Response {
                code,
                reason: reason.trim_start().to_string()
            }),
        ],
        prop::collection::vec(via(), 1..4),
        name_addr(),
        name_addr(),
        "[A-Za-z0-9.!%*_+~-]{1,20}(@[a-z0-9.]{1,10})?",
        any::<u32>(),
        prop::collection::vec(name_addr(), 0..3),
        prop::collection::vec(
            (
                "X-[A-Za-z0-9-]{1,10}",
                "[!-~]([ -~]{0,30}[!-~])?".prop_filter("no folding", |v| !v.contains("  ")),
            ),
            0..4,
        ),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(start, vias, from, to, call_id, seq, routes, extra, body)| {
                let cseq_method = match &start {
                    StartLine::Request { method, .. } => method.clone(),
                    StartLine::Response { .. } => Method::Invite,
                };
                let mut m = Message {
                    start,
                    headers: Default::default(),
                    body: Vec::new(),
                };
                for v in &vias {
                    m.insert_header("Via", &v.to_string());
                }
                m.insert_header("From", &from.to_string());
                m.insert_header("To", &to.to_string());
                m.insert_header("Call-ID", &call_id);
                m.insert_header(
                    "CSeq",
                    &CSeq {
                        seq,
                        method: cseq_method,
                    }
                    .to_string(),
                );
                for r in &routes {
                    m.insert_header("Route", &r.to_string());
                }
                for (n, v) in &extra {
                    m.insert_header(n, v);
                }
                m.insert_header("Content-Length", &body.len().to_string());
                m.set_body("application/octet-stream", body);
                m
            },
        )
}

fn valid_bytes() -> Vec<u8> {
    b"INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\nf: \"A\" <sip:a@b>;tag=1\r\nt: <sip:bob@localhost>\r\ni: c@h\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1>\r\nRoute: <sip:p;lr>, <sip:q;lr>\r\nMax-Forwards: 70\r\nl: 3\r\n\r\nabc".to_vec()
}

proptest! {
    #[test]
    fn printed_messages_parse_back_unchanged(m in message()) {
        let bytes = m.to_bytes();
        let parsed = Message::parse(&bytes);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, String::from_utf8_lossy(&bytes));
        let parsed = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(&parsed, &m);
        prop_assert_eq!(parsed.to_bytes(), bytes);
        // Typed accessors agree with what was put in.
        prop_assert_eq!(parsed.vias().len(), m.headers.get_all("Via").count());
    }

    #[test]
    fn uris_and_addresses_round_trip(u in uri(), a in name_addr()) {
        prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
        prop_assert_eq!(NameAddr::parse_as(&a.to_string(), "To"), Ok(a));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(&bytes);
        let _ = Message::parse_syntax(&bytes, &Limits::default());
        let mut f = Framer::default();
        f.push(&bytes);
        while let Ok(Some(m)) = f.next_message() {
            let _ = Message::parse(&m);
        }
    }

    #[test]
    fn mutated_messages_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = valid_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(m) = Message::parse(&bytes) {
            // Whatever parses prints to something that parses to the same message.
            let again = Message::parse(&m.to_bytes());
            prop_assert!(again.is_ok());
            let _ = (m.vias(), m.contacts(), m.routes(), m.from(), m.to(), m.cseq());
            let _ = Message::response(&m, 200, "");
        }
    }
}
