//! Any bytes: decoding, validating and rendering never panic; whatever decodes re-encodes to
//! bytes that decode to the same packet; and the JSON rendering round-trips to the same JSON.
//! (Raw body values are kept byte for byte, so a non-canonical input re-encodes
//! non-canonically, while JSON is canonical: compare meanings, not bytes.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqchat_proto::{Packet, Registry};

fuzz_target!(|data: &[u8]| {
    let registry = Registry::with_core();
    if let Ok(packet) = Packet::decode(data) {
        let _ = registry.validate(&packet);
        let json = registry.to_json(&packet);
        let encoded = packet.encode();
        let again = Packet::decode(&encoded).expect("an encoded packet decodes");
        assert_eq!(again, packet);
        let from_json = registry.from_json(&json).expect("a rendered packet parses back");
        assert_eq!(registry.to_json(&from_json), json, "JSON rendering must be lossless");
    }
});
