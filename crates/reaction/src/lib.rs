//! Reactions (an emoji on a message) as an mqchat extension: packet type 128.
//!
//! This crate uses only the public API of `mqchat-proto`, the same way any third party would
//! add a packet type: a schema, a provider registered into the caller's registry, and a typed
//! body. A hub that has not registered it still archives and delivers reactions, because
//! unknown types are routed by their envelope; one that has registered it also validates
//! them.

use mqchat_proto::body::Body;
use mqchat_proto::{
    FieldError, FieldSpec, FieldType, Fields, PacketKind, Registry, Routing, SchemaProvider,
};

/// The packet type number, from the spec's registry of extensions.
pub const KIND: PacketKind = PacketKind(128);

/// The longest reaction, in bytes (a few emoji with modifiers).
pub const MAX_EMOJI_BYTES: usize = 32;

const SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(
        8,
        "to",
        FieldType::Uint {
            min: 1,
            max: (1 << 53) - 1,
        },
    ),
    FieldSpec::required(
        9,
        "emoji",
        FieldType::Text {
            max_bytes: MAX_EMOJI_BYTES,
        },
    ),
    FieldSpec::optional(10, "remove", FieldType::Bool),
];

fn check(packet: &mqchat_proto::Packet) -> Result<(), FieldError> {
    let emoji = packet.body().text(9)?.unwrap_or_default();
    if emoji.is_empty() || emoji.chars().any(char::is_whitespace) {
        return Err(FieldError::new(
            9,
            "emoji",
            "must be non-empty with no whitespace",
        ));
    }
    if packet.conv.is_none() {
        return Err(FieldError::new(
            2,
            "conv",
            "a reaction belongs to a conversation",
        ));
    }
    Ok(())
}

/// The reaction provider: durable (archived and synced like a message).
pub const PROVIDER: SchemaProvider = SchemaProvider {
    kind: KIND,
    name: "reaction",
    routing: Routing::Event,
    schema: SCHEMA,
    check: Some(check),
};

/// Adds the reaction type to a registry.
pub fn register(registry: &mut Registry) -> Result<(), mqchat_proto::provider::RegistryError> {
    registry.register(PROVIDER)
}

/// A reaction to the event with sequence number `to` in the same conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    /// The sequence number of the event reacted to.
    pub to: u64,
    /// The emoji.
    pub emoji: String,
    /// Withdraw this reaction rather than add it.
    pub remove: bool,
}

impl Body for Reaction {
    const KIND: PacketKind = KIND;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let to = f
            .uint(8)?
            .ok_or_else(|| FieldError::new(8, "to", "is required"))?;
        let emoji = f
            .text(9)?
            .ok_or_else(|| FieldError::new(9, "emoji", "is required"))?;
        Ok(Self {
            to,
            emoji: emoji.to_owned(),
            remove: f.bool(10)?.unwrap_or(false),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.to);
        f.set_text(9, &self.emoji);
        if self.remove {
            f.set_bool(10, true);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqchat_proto::{ConversationRef, Packet};

    fn registry() -> Registry {
        let mut registry = Registry::with_core();
        register(&mut registry).expect("128 is free in the core registry");
        registry
    }

    #[test]
    fn registers_like_a_core_type() {
        let registry = registry();
        assert_eq!(registry.kind_named("reaction"), Some(KIND));
        assert_eq!(
            registry.provider(KIND).map(|p| p.routing()),
            Some(Routing::Event)
        );
        let mut again = registry.clone();
        assert!(
            register(&mut again).is_err(),
            "registering twice is refused"
        );
    }

    #[test]
    fn round_trips_through_cbor_and_json() {
        let registry = registry();
        let mut packet = Reaction {
            to: 42,
            emoji: "👍".into(),
            remove: false,
        }
        .to_packet();
        packet.conv = Some(ConversationRef::parse("bob").expect("valid"));
        let bytes = packet.encode();
        let decoded = registry.decode(&bytes).expect("valid");
        assert_eq!(Reaction::from_packet(&decoded).expect("typed").emoji, "👍");
        let json = registry.to_json(&decoded);
        assert_eq!(
            json,
            serde_json::json!({"type": "reaction", "conv": "bob", "to": 42, "emoji": "👍"})
        );
        assert_eq!(registry.from_json(&json).expect("valid").encode(), bytes);
    }

    #[test]
    fn validates_only_when_registered() {
        let mut packet = Reaction {
            to: 1,
            emoji: "not one".into(),
            remove: false,
        }
        .to_packet();
        packet.conv = Some(ConversationRef::parse("bob").expect("valid"));
        let bytes = packet.encode();
        assert!(registry().decode(&bytes).is_err());
        // A registry without the extension passes the unknown type on untouched.
        let plain = Registry::with_core()
            .decode(&bytes)
            .expect("unknown types are opaque");
        assert_eq!(plain.encode(), bytes);
        assert_eq!(Registry::with_core().to_json(&plain)["type"], 128);
        let _: Packet = plain;
    }
}
