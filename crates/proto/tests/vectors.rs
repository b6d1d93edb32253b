//! Checks every test vector under `tests/vectors/` both ways: the CBOR decodes to the JSON
//! meaning and the JSON encodes to the same CBOR; upstream vectors take the given route;
//! invalid vectors produce their error code.

// Tests read the vector files; the library itself never does IO.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mqchat_proto::upstream::{self, Route};
use mqchat_proto::{ErrorCode, Packet, Registry, Topic, TopicRoot};
use serde_json::Value;

const DEFAULT_MAX_PAYLOAD: usize = 65_536;

fn vectors(kind: &str) -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(kind);
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let text = std::fs::read_to_string(&path).expect("readable vector");
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no vectors in {}", dir.display());
    out
}

fn bytes(vector: &Value) -> Vec<u8> {
    field_bytes(vector, "cbor").expect("every vector has cbor")
}

/// A hex field of a vector (whitespace ignored), if present.
fn field_bytes(vector: &Value, field: &str) -> Option<Vec<u8>> {
    let hex_text: String = vector.get(field)?.as_str()?.split_whitespace().collect();
    Some(hex::decode(hex_text).expect("hex"))
}

fn route_name(route: Route) -> &'static str {
    match route {
        Route::Event => "event",
        Route::Marker => "marker",
        Route::Signal => "signal",
        Route::Request => "request",
        Route::Sip => "sip",
    }
}

#[test]
fn valid_vectors_round_trip() {
    let registry = Registry::with_core();
    let root = TopicRoot::default();
    for (path, vector) in vectors("valid") {
        let name = path.display();
        let cbor = bytes(&vector);
        // `canonical`, when present, is the deterministic encoding of a `cbor` in another.
        let deterministic = field_bytes(&vector, "canonical").unwrap_or_else(|| cbor.clone());
        assert_eq!(
            vector.get("canonical").is_some(),
            deterministic != cbor,
            "{name}: `canonical` is given exactly when `cbor` is in another encoding"
        );
        let packet = Packet::decode(&cbor).unwrap_or_else(|e| panic!("{name}: {e}"));
        registry
            .validate(&packet)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            registry.to_json(&packet),
            vector["packet"],
            "{name}: CBOR decodes to another meaning"
        );
        let from_json = registry
            .from_json(&vector["packet"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hex::encode(from_json.encode()),
            hex::encode(&deterministic),
            "{name}: JSON encodes to other bytes"
        );
        assert_eq!(
            hex::encode(packet.encode()),
            hex::encode(&deterministic),
            "{name}: decoding does not yield the deterministic encoding"
        );
        assert_eq!(
            Packet::decode(&deterministic).as_ref(),
            Ok(&packet),
            "{name}: `canonical` decodes to another packet"
        );

        let topic = vector["topic"].as_str().expect("topic");
        let parsed = root
            .parse_topic(topic)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        match (parsed, vector.get("route")) {
            (Topic::Upstream { .. }, Some(route)) => {
                let inbound = upstream::accept(&registry, &root, topic, &cbor, DEFAULT_MAX_PAYLOAD)
                    .unwrap_or_else(|e| panic!("{name}: refused: {}", e.detail));
                assert_eq!(Some(route_name(inbound.route)), route.as_str(), "{name}");
                assert_eq!(
                    inbound.packet.encode(),
                    deterministic,
                    "{name}: the hub would store and forward another form"
                );
            }
            (Topic::Upstream { .. }, None) => {
                panic!("{name}: upstream vectors must give their route")
            }
            (_, Some(_)) => panic!("{name}: only upstream vectors have a route"),
            (_, None) => {}
        }
    }
}

#[test]
fn invalid_vectors_are_refused_with_their_code() {
    let registry = Registry::with_core();
    let root = TopicRoot::default();
    for (path, vector) in vectors("invalid") {
        let name = path.display();
        let cbor = bytes(&vector);
        let topic = vector["topic"].as_str().expect("topic");
        let max = vector
            .get("max-payload")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_MAX_PAYLOAD, |m| m as usize);
        let expected = ErrorCode::from_name(vector["error"].as_str().expect("error"))
            .unwrap_or_else(|| panic!("{name}: unknown error name"));
        match upstream::accept(&registry, &root, topic, &cbor, max) {
            Ok(_) => panic!("{name}: accepted"),
            Err(rejection) => assert_eq!(rejection.code, expected, "{name}: {}", rejection.detail),
        }
    }
}

#[test]
fn every_core_type_has_a_vector() {
    let registry = Registry::with_core();
    let covered: BTreeSet<String> = vectors("valid")
        .iter()
        .filter_map(|(_, v)| v["packet"]["type"].as_str().map(str::to_owned))
        .collect();
    for provider in registry.providers() {
        assert!(
            covered.contains(provider.name()),
            "no valid vector for {}",
            provider.name()
        );
    }
    let codes: BTreeSet<String> = vectors("invalid")
        .iter()
        .filter_map(|(_, v)| v["error"].as_str().map(str::to_owned))
        .collect();
    for code in [
        "malformed",
        "invalid",
        "too-large",
        "wrong-topic",
        "unsupported",
    ] {
        assert!(codes.contains(code), "no invalid vector for {code}");
    }
}

#[test]
fn spec_examples_match_the_vectors() {
    // Every hex example in the spec is a vector's bytes, so the document cannot drift.
    let spec = include_str!("../../../docs/PROTOCOL.md");
    let mut found = 0;
    for (path, vector) in vectors("valid") {
        let marker = format!(
            "vectors/valid/{}",
            path.file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
        );
        if let Some(at) = spec.find(&marker) {
            let cbor = vector["cbor"].as_str().expect("cbor");
            let section = &spec[at..spec.floor_char_boundary(at + 4000)];
            assert!(
                section.contains(cbor),
                "{marker}: the spec's example bytes differ from the vector"
            );
            found += 1;
        }
    }
    assert!(
        found >= 10,
        "the spec should show at least 10 vectors, shows {found}"
    );
    assert!(
        ErrorCode::ALL
            .iter()
            .all(|c| spec.contains(&format!("| {} | `{}` |", c.0, c))),
        "error table incomplete"
    );
}
