//! Any bytes: decoding, validating and rendering never panic; whatever decodes re-encodes,
//! in the deterministic encoding, to bytes that decode to the same packet and encode to
//! themselves; the nesting limit the hub applies refuses exactly the packets that nest too
//! deep; and the JSON rendering round-trips to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqchat_proto::encoding::MAX_NESTING;
use mqchat_proto::{DecodeError, Packet, Registry};

fuzz_target!(|data: &[u8]| {
    let registry = Registry::with_core();
    let limited = Packet::decode_within(data, MAX_NESTING);
    match Packet::decode(data) {
        Ok(packet) => {
            // The deeper decoder's packet is the hub's unless the hub's limit refused it.
            match &limited {
                Ok(same) => assert_eq!(same, &packet),
                Err(e) => assert_eq!(e, &DecodeError::TooDeep(MAX_NESTING)),
            }
            let _ = registry.validate(&packet);
            let json = registry.to_json(&packet);
            let encoded = packet.encode();
            let again = Packet::decode(&encoded).expect("an encoded packet decodes");
            assert_eq!(again, packet);
            assert_eq!(again.encode(), encoded, "the encoding is deterministic");
            let from_json = registry.from_json(&json).expect("a rendered packet parses back");
            assert_eq!(registry.to_json(&from_json), json, "JSON rendering must be lossless");
        }
        Err(DecodeError::TooDeep(_)) => {
            assert!(matches!(limited, Err(DecodeError::TooDeep(MAX_NESTING))));
        }
        Err(e) => assert!(limited.is_err(), "the hub's decoder accepted what failed: {e}"),
    }
});
