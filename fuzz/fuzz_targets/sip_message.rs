//! Any bytes: SIP parsing and stream framing never panic; whatever parses prints to bytes
//! that parse to the same message (Content-Length aside, which printing always restates),
//! and a response can be built from any parsed request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqchat_sip::{Framer, Limits, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let printed = message.to_bytes();
        let mut again = Message::parse(&printed).expect("a printed message parses");
        let mut original = message.clone();
        original.remove_header("Content-Length");
        again.remove_header("Content-Length");
        assert_eq!(again, original);
        let _ = (message.vias(), message.contacts(), message.routes(), message.record_routes());
        if message.is_request() {
            let mut response = Message::response(&message, 200, "");
            response.set_to_tag("fuzz");
            Message::parse(&response.to_bytes()).expect("a response to a valid request parses");
        }
    }
    let _ = Message::parse_syntax(data, &Limits::default());
    let mut framer = Framer::default();
    framer.push(data);
    while let Ok(Some(frame)) = framer.next_message() {
        let _ = Message::parse(&frame);
    }
});
