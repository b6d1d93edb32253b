//! Packets: a CBOR map with small unsigned integer keys. Keys 0 to 7 are the envelope, shared
//! by every packet type; keys from 8 up are the type's body.
//!
//! The envelope is parsed into typed fields. The body is kept as raw CBOR items, one per key,
//! each in the deterministic encoding (see [`crate::encoding`]: a value a conforming sender
//! wrote is kept byte for byte), so that a hub or client forwarding a packet passes on keys
//! (and whole packet types) it does not know unchanged. Typed views of the body live in
//! [`crate::body`]; schemas and JSON rendering in [`crate::provider`].

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use crate::encoding::{self, MAX_NESTING_DECODED};
use crate::error::{DecodeError, FieldError};
use crate::id::MessageId;
use crate::identity::{ConversationRef, DeviceId, UserId};

/// A packet type number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PacketKind(pub u32);

impl PacketKind {
    /// A text message (durable conversation event).
    pub const MESSAGE: Self = Self(1);
    /// A chat state: composing, paused, ... (ephemeral).
    pub const CHAT_STATE: Self = Self(2);
    /// Delivered marker (cumulative).
    pub const DELIVERED: Self = Self(3);
    /// Read marker (cumulative).
    pub const READ: Self = Self(4);
    /// Contact request and its answers (durable conversation event).
    pub const CONTACT: Self = Self(5);
    /// A device's presence (retained on the presence topic).
    pub const PRESENCE: Self = Self(6);
    /// A user's profile (set through the hub, retained on the profile topic).
    pub const PROFILE: Self = Self(7);
    /// The hub's acknowledgement of a request.
    pub const ACK: Self = Self(8);
    /// The hub's error reply.
    pub const ERROR: Self = Self(9);
    /// Sync request: which conversations changed.
    pub const SYNC: Self = Self(10);
    /// Sync result.
    pub const SYNC_RESULT: Self = Self(11);
    /// History request: a page of one conversation.
    pub const HISTORY: Self = Self(12);
    /// History result.
    pub const HISTORY_RESULT: Self = Self(13);
    /// Creates a group.
    pub const GROUP_CREATE: Self = Self(32);
    /// A change to a group (made by the hub, archived in the group).
    pub const GROUP_EVENT: Self = Self(33);
    /// An administrative action on a group.
    pub const GROUP_ADMIN: Self = Self(34);
    /// Accepting or declining an invitation, or leaving.
    pub const GROUP_JOIN: Self = Self(35);
    /// Asks for a group's roster and profile.
    pub const GROUP_INFO: Self = Self(36);
    /// A group's roster and profile.
    pub const GROUP_INFO_RESULT: Self = Self(37);
    /// Asks for the sender's own devices.
    pub const DEVICE_LIST: Self = Self(64);
    /// The sender's devices.
    pub const DEVICE_LIST_RESULT: Self = Self(65);
    /// Revokes one of the sender's devices.
    pub const DEVICE_REVOKE: Self = Self(66);
    /// The sending device's app went to the background or came back.
    pub const CLIENT_STATE: Self = Self(67);
    /// Registers the sending device's push target.
    pub const PUSH_REGISTER: Self = Self(68);
    /// Removes the sending device's push target.
    pub const PUSH_UNREGISTER: Self = Self(69);
    /// Mutes a conversation for the user until a time.
    pub const MUTE: Self = Self(70);
    /// One SIP message between a device (or the SIP gateway) and the hub.
    pub const SIP: Self = Self(80);
    /// The record of a call (made by the hub, archived in the conversation).
    pub const CALL: Self = Self(81);
    /// The range reserved for group packets (32 to 63).
    pub const GROUP_RANGE: std::ops::RangeInclusive<u32> = 32..=63;
    /// First number third parties may use without registering (1024 and up).
    pub const PRIVATE_USE_START: u32 = 1024;
}

/// Envelope keys.
pub mod key {
    /// Packet type.
    pub const TYPE: u32 = 0;
    /// Client message id (or the id of the request a reply answers).
    pub const ID: u32 = 1;
    /// Conversation, as the reader sees it.
    pub const CONV: u32 = 2;
    /// Sequence number in the conversation (set by the hub).
    pub const SEQ: u32 = 3;
    /// Timestamp, milliseconds since the Unix epoch (set by the hub, or by the device on
    /// presence).
    pub const TS: u32 = 4;
    /// Sender user (set by the hub; see the spec for when it is omitted).
    pub const FROM: u32 = 5;
    /// Sender device (set by the hub on copies to the sender's own devices).
    pub const DEVICE: u32 = 6;
    /// Ephemeral flag, for packet types the hub does not know.
    pub const EPHEMERAL: u32 = 7;
    /// The first body key.
    pub const BODY_START: u32 = 8;
}

/// Decoded packets nested inside a packet (history pages, conversation lists) may nest only
/// this deep; it bounds work on hostile input.
pub const MAX_DEPTH: usize = 4;

/// The body of a packet, or any mqchat map: integer keys to raw CBOR items, in key order,
/// each in the deterministic encoding (spec 5).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Fields {
    entries: Vec<(u32, Box<[u8]>)>,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.entries {
            map.entry(k, &HexBytes(v));
        }
        map.finish()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl std::fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn field_err(key: u32, problem: &str) -> FieldError {
    FieldError::new(key, "", problem)
}

impl Fields {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys and raw CBOR values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.entries.iter().map(|(k, v)| (*k, &**v))
    }

    /// The raw CBOR item under `key`.
    pub fn raw(&self, key: u32) -> Option<&[u8]> {
        self.entries
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| &*self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: u32) -> bool {
        self.raw(key).is_some()
    }

    /// Sets `key` to a raw CBOR item, which must be exactly one well-formed item; it is kept
    /// in the deterministic encoding, like every value of a decoded map.
    pub fn insert_raw(&mut self, key: u32, raw: impl AsRef<[u8]>) -> Result<(), DecodeError> {
        let raw = raw.as_ref();
        let (value, end) = encoding::canonical(raw, 0, 1, MAX_NESTING_DECODED)?;
        if end != raw.len() {
            return Err(DecodeError::Cbor("trailing bytes after the item".into()));
        }
        self.put(key, value.into_boxed_slice());
        Ok(())
    }

    /// Sets `key` to raw bytes known to be one well-formed CBOR item.
    fn put(&mut self, key: u32, raw: Box<[u8]>) {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = raw,
            Err(i) => self.entries.insert(i, (key, raw)),
        }
    }

    fn put_with(
        &mut self,
        key: u32,
        write: impl FnOnce(&mut Encoder<&mut Vec<u8>>) -> Result<(), Infallible>,
    ) {
        let mut buf = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = write(&mut Encoder::new(&mut buf));
        self.put(key, buf.into_boxed_slice());
    }

    /// Removes `key`, returning whether it was present.
    pub fn remove(&mut self, key: u32) -> bool {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => {
                self.entries.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Sets a text field.
    pub fn set_text(&mut self, key: u32, value: &str) {
        self.put_with(key, |e| e.str(value).map(drop));
    }

    /// Sets an unsigned integer field.
    pub fn set_uint(&mut self, key: u32, value: u64) {
        self.put_with(key, |e| e.u64(value).map(drop));
    }

    /// Sets a boolean field.
    pub fn set_bool(&mut self, key: u32, value: bool) {
        self.put_with(key, |e| e.bool(value).map(drop));
    }

    /// Sets an array of texts (e.g. user ids).
    pub fn set_texts<S: AsRef<str>>(&mut self, key: u32, values: &[S]) {
        self.put_with(key, |e| {
            e.array(values.len() as u64)?;
            for v in values {
                e.str(v.as_ref())?;
            }
            Ok(())
        });
    }

    /// Sets an array of maps (packets or other mqchat maps).
    pub fn set_maps<'a>(&mut self, key: u32, values: impl ExactSizeIterator<Item = Vec<u8>> + 'a) {
        let mut buf = Vec::new();
        let _ = Encoder::new(&mut buf).array(values.len() as u64);
        for v in values {
            buf.extend_from_slice(&v);
        }
        self.put(key, buf.into_boxed_slice());
    }

    /// Reads a text field.
    pub fn text(&self, key: u32) -> Result<Option<&str>, FieldError> {
        self.read(key, "a text string", |d| d.str())
    }

    /// Reads an unsigned integer field.
    pub fn uint(&self, key: u32) -> Result<Option<u64>, FieldError> {
        self.read(key, "an unsigned integer", |d| match d.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64(),
            _ => Err(minicbor::decode::Error::message("not an unsigned integer")),
        })
    }

    /// Reads a boolean field.
    pub fn bool(&self, key: u32) -> Result<Option<bool>, FieldError> {
        self.read(key, "a boolean", |d| d.bool())
    }

    /// Reads an array of texts.
    pub fn texts(&self, key: u32) -> Result<Option<Vec<&str>>, FieldError> {
        self.read(key, "an array of text strings", |d| {
            let mut out = Vec::new();
            match d.array()? {
                Some(n) => {
                    for _ in 0..n {
                        out.push(d.str()?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        out.push(d.str()?);
                    }
                    d.skip()?;
                }
            }
            Ok(out)
        })
    }

    /// Reads an array of maps, returning each map's raw bytes.
    pub fn maps(&self, key: u32) -> Result<Option<Vec<&[u8]>>, FieldError> {
        self.read(key, "an array of maps", |d| {
            let input = d.input();
            let mut out = Vec::new();
            let definite = d.array()?;
            let mut remaining = definite;
            loop {
                match remaining {
                    Some(0) => break,
                    Some(ref mut n) => *n -= 1,
                    None if d.datatype()? == Type::Break => break,
                    None => {}
                }
                if !matches!(d.datatype()?, Type::Map | Type::MapIndef) {
                    return Err(minicbor::decode::Error::message("not a map"));
                }
                let start = d.position();
                d.skip()?;
                out.push(&input[start..d.position()]);
            }
            Ok(out)
        })
    }

    fn read<'a, T>(
        &'a self,
        key: u32,
        expected: &str,
        f: impl FnOnce(&mut Decoder<'a>) -> Result<T, minicbor::decode::Error>,
    ) -> Result<Option<T>, FieldError> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        let mut d = Decoder::new(raw);
        match f(&mut d) {
            Ok(v) if d.position() == raw.len() => Ok(Some(v)),
            _ => Err(field_err(key, &format!("must be {expected}"))),
        }
    }

    /// Decodes a map from `d` into fields, checking keys, each value rewritten in the
    /// deterministic encoding and nesting at most `max_nesting` levels, the map being level 1.
    /// Used for packets and nested maps.
    pub(crate) fn decode_map(d: &mut Decoder<'_>, max_nesting: usize) -> Result<Self, DecodeError> {
        let input = d.input();
        let len = match d.datatype()? {
            Type::Map | Type::MapIndef => d.map()?,
            _ => return Err(DecodeError::NotMap),
        };
        let mut fields = Self::new();
        let mut remaining = len;
        loop {
            match remaining {
                Some(0) => break,
                Some(ref mut n) => *n -= 1,
                None if d.datatype()? == Type::Break => {
                    d.skip()?;
                    break;
                }
                None => {}
            }
            let key = match d.datatype()? {
                Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                    u32::try_from(d.u64()?).map_err(|_| DecodeError::Key)?
                }
                _ => {
                    // Still check well-formedness so the error names the real problem.
                    d.skip()?;
                    return Err(DecodeError::Key);
                }
            };
            let (raw, end) = encoding::canonical(input, d.position(), 1, max_nesting)?;
            d.set_position(end);
            let raw = raw.into_boxed_slice();
            match fields.entries.binary_search_by_key(&key, |(k, _)| *k) {
                Ok(_) => return Err(DecodeError::DuplicateKey(key)),
                Err(i) => fields.entries.insert(i, (key, raw)),
            }
        }
        Ok(fields)
    }

    /// Decodes one complete map (no trailing bytes), nesting at most
    /// [`MAX_NESTING_DECODED`] levels.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_within(bytes, MAX_NESTING_DECODED)
    }

    fn decode_within(bytes: &[u8], max_nesting: usize) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let fields = Self::decode_map(&mut d, max_nesting)?;
        if d.position() != bytes.len() {
            return Err(DecodeError::Cbor("trailing bytes after the map".into()));
        }
        Ok(fields)
    }

    /// Encodes as a CBOR map in key order.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf =
            Vec::with_capacity(1 + self.entries.iter().map(|(_, v)| v.len() + 3).sum::<usize>());
        self.encode_into(&mut buf, 0);
        buf
    }

    fn encode_into(&self, buf: &mut Vec<u8>, extra_entries: u64) {
        let _ = Encoder::new(&mut *buf).map(self.entries.len() as u64 + extra_entries);
        for (k, v) in &self.entries {
            let _ = Encoder::new(&mut *buf).u32(*k);
            buf.extend_from_slice(v);
        }
    }
}

type Infallible = minicbor::encode::Error<std::convert::Infallible>;

/// A packet: the typed envelope and the raw body.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Packet {
    /// Packet type (key 0).
    pub kind: PacketKind,
    /// Client message id, or the id of the request a reply answers (key 1).
    pub id: Option<MessageId>,
    /// The conversation, as the reader sees it (key 2).
    pub conv: Option<ConversationRef>,
    /// Sequence number in the conversation (key 3).
    pub seq: Option<u64>,
    /// Timestamp in milliseconds since the Unix epoch (key 4).
    pub ts: Option<u64>,
    /// Sender user (key 5).
    pub from: Option<UserId>,
    /// Sender device (key 6).
    pub device: Option<DeviceId>,
    /// Ephemeral flag for extension types (key 7); encoded only when true.
    pub ephemeral: bool,
    body: Fields,
}

impl Packet {
    /// An empty packet of the given type.
    pub fn new(kind: PacketKind) -> Self {
        Self {
            kind,
            id: None,
            conv: None,
            seq: None,
            ts: None,
            from: None,
            device: None,
            ephemeral: false,
            body: Fields::new(),
        }
    }

    /// A packet of the given type with a body. Body keys must be 8 or more.
    pub fn with_body(kind: PacketKind, body: Fields) -> Result<Self, FieldError> {
        let mut packet = Self::new(kind);
        packet.set_body(body)?;
        Ok(packet)
    }

    /// Replaces the body. Body keys must be 8 or more.
    pub fn set_body(&mut self, body: Fields) -> Result<(), FieldError> {
        if let Some((k, _)) = body.iter().find(|(k, _)| *k < key::BODY_START) {
            return Err(FieldError::new(
                k,
                "",
                "body keys start at 8; 0 to 7 are the envelope",
            ));
        }
        self.body = body;
        Ok(())
    }

    /// The body fields (keys 8 and up).
    pub fn body(&self) -> &Fields {
        &self.body
    }

    /// Decodes a packet from its CBOR bytes, nesting at most [`MAX_NESTING_DECODED`] levels
    /// (what every receiver accepts, spec 5).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_within(bytes, MAX_NESTING_DECODED)
    }

    /// Decodes a packet nesting at most `max_nesting` levels, its map being level 1: the hub
    /// takes [`encoding::MAX_NESTING`] from devices and its gateway.
    pub fn decode_within(bytes: &[u8], max_nesting: usize) -> Result<Self, DecodeError> {
        Self::from_fields(Fields::decode_within(bytes, max_nesting)?)
    }

    /// Splits a decoded map into envelope and body.
    pub(crate) fn from_fields(mut all: Fields) -> Result<Self, DecodeError> {
        let kind = all.uint(key::TYPE)?.ok_or(DecodeError::NoType)?;
        let kind = u32::try_from(kind).map_err(|_| field_err(key::TYPE, "must be below 2^32"))?;
        let id = match all.uint(key::ID)? {
            Some(v) => Some(MessageId::new(v).map_err(|e| field_err(key::ID, &e.to_string()))?),
            None => None,
        };
        let conv = match all.text(key::CONV)? {
            Some(v) => {
                Some(ConversationRef::parse(v).map_err(|e| field_err(key::CONV, &e.to_string()))?)
            }
            None => None,
        };
        let seq = all.uint(key::SEQ)?;
        if seq == Some(0) {
            return Err(field_err(key::SEQ, "sequence numbers start at 1").into());
        }
        let ts = all.uint(key::TS)?;
        let from = match all.text(key::FROM)? {
            Some(v) => Some(UserId::parse(v).map_err(|e| field_err(key::FROM, &e.to_string()))?),
            None => None,
        };
        let device = match all.text(key::DEVICE)? {
            Some(v) => {
                Some(DeviceId::parse(v).map_err(|e| field_err(key::DEVICE, &e.to_string()))?)
            }
            None => None,
        };
        let ephemeral = all.bool(key::EPHEMERAL)?.unwrap_or(false);
        all.entries.retain(|(k, _)| *k >= key::BODY_START);
        Ok(Self {
            kind: PacketKind(kind),
            id,
            conv,
            seq,
            ts,
            from,
            device,
            ephemeral,
            body: all,
        })
    }

    /// Encodes the packet: a definite-length map, keys in ascending order, integers in their
    /// shortest form (the deterministic encoding of RFC 8949 section 4.2.1 for these keys).
    pub fn encode(&self) -> Vec<u8> {
        let mut envelope = Fields::new();
        envelope.set_uint(key::TYPE, u64::from(self.kind.0));
        if let Some(id) = self.id {
            envelope.set_uint(key::ID, id.get());
        }
        if let Some(conv) = &self.conv {
            envelope.set_text(key::CONV, &conv.to_string());
        }
        if let Some(seq) = self.seq {
            envelope.set_uint(key::SEQ, seq);
        }
        if let Some(ts) = self.ts {
            envelope.set_uint(key::TS, ts);
        }
        if let Some(from) = &self.from {
            envelope.set_text(key::FROM, from.as_str());
        }
        if let Some(device) = &self.device {
            envelope.set_text(key::DEVICE, device.as_str());
        }
        if self.ephemeral {
            envelope.set_bool(key::EPHEMERAL, true);
        }
        let mut buf = Vec::with_capacity(64);
        envelope.encode_into(&mut buf, self.body.len() as u64);
        for (k, v) in self.body.iter() {
            let _ = Encoder::new(&mut buf).u32(k);
            buf.extend_from_slice(v);
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("test hex")
    }

    #[test]
    fn envelope_round_trip() {
        let mut p = Packet::new(PacketKind::MESSAGE);
        p.id = Some(MessageId::new(1).expect("valid"));
        p.conv = Some(ConversationRef::parse("bob").expect("valid"));
        let mut body = Fields::new();
        body.set_text(8, "Hi");
        let p = Packet { body, ..p };
        let bytes = p.encode();
        assert_eq!(bytes, hex("a4 00 01 01 01 02 63626f62 08 624869"));
        assert_eq!(Packet::decode(&bytes), Ok(p));
    }

    #[test]
    fn unknown_body_keys_survive_byte_for_byte() {
        // {0: 1, 8: "Hi", 99: [1, {"x": h'00'}]}
        let bytes = hex("a3 00 01 08 624869 1863 82 01 a1 6178 4100");
        let p = Packet::decode(&bytes).expect("valid");
        assert_eq!(p.encode(), bytes);
    }

    /// Decodes `input` and encodes the packet again: `expected`, the deterministic encoding.
    fn normalises(input: &str, expected: &str) {
        let p = Packet::decode(&hex(input)).expect(input);
        assert_eq!(
            hex::encode(p.encode()),
            expected.replace(' ', ""),
            "{input}"
        );
    }

    #[test]
    fn other_encodings_are_accepted_and_normalised() {
        // Indefinite lengths: the map, text in the envelope and the body, unknown values.
        normalises("bf 00 01 08 624869 ff", "a2 00 01 08 624869");
        normalises(
            "bf 00 01 02 7f 62 626f 61 62 ff 08 7f 61 48 61 69 ff ff",
            "a3 00 01 02 63626f62 08 624869",
        );
        normalises(
            "a2 00 19 1388 1863 9f 5f 41 00 ff bf 02 00 01 00 ff ff",
            "a2 00 19 1388 1863 82 41 00 a2 01 00 02 00",
        );
        // Shortest heads, keys in order, floats in their shortest width.
        normalises(
            "a2 18 08 62 4869 00 1b 0000000000000001",
            "a2 00 01 08 624869",
        );
        normalises("a2 00 01 1863 fb 3ff8000000000000", "a2 00 01 1863 f9 3e00");
        // Deeper levels count from the packet's map; nested packets are checked again.
        let deepest = format!("a2 00 01 08 {} 00", "81".repeat(MAX_NESTING_DECODED - 1));
        normalises(&deepest, &deepest);
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, DecodeError)] = &[
            ("", DecodeError::Cbor(String::new())),
            ("01", DecodeError::NotMap),
            ("a1 08 01", DecodeError::NoType),
            ("a2 00 01 00 02", DecodeError::DuplicateKey(0)),
            ("a2 00 01 20 01", DecodeError::Key),
            ("a2 00 01 6161 01", DecodeError::Key),
            ("a1 00 01 00", DecodeError::Cbor(String::new())),
            ("a2 00 01 08", DecodeError::Cbor(String::new())),
            ("a2 00 01 03 00", DecodeError::Field(field_err(3, ""))),
            ("a2 00 01 02 63424f42", DecodeError::Field(field_err(2, ""))),
            (
                "a2 00 01 01 1b8000000000000000",
                DecodeError::Field(field_err(1, "")),
            ),
            ("a1 00 20", DecodeError::Field(field_err(0, ""))),
            ("a2 00 01 08 62 c328", DecodeError::Cbor(String::new())),
            ("a2 00 01 08 7f 41 48 ff", DecodeError::Cbor(String::new())),
            (
                "a2 00 01 08 a2 01 00 01 00",
                DecodeError::NestedDuplicateKey,
            ),
            ("a2 00 01 08 c1 c1 c1 ff", DecodeError::Cbor(String::new())),
        ];
        for (input, expected) in cases {
            let err = Packet::decode(&hex(input)).expect_err(input);
            assert_eq!(
                std::mem::discriminant(&err),
                std::mem::discriminant(expected),
                "{input}: {err}"
            );
            if let (DecodeError::Field(a), DecodeError::Field(b)) = (&err, expected) {
                assert_eq!(a.key, b.key, "{input}");
            }
        }
    }

    #[test]
    fn nesting_is_limited_from_the_packets_map() {
        let at = |levels: usize| hex(&format!("a2 00 01 08 {} 00", "81".repeat(levels - 1)));
        let limit = crate::encoding::MAX_NESTING;
        assert!(Packet::decode_within(&at(limit), limit).is_ok());
        assert_eq!(
            Packet::decode_within(&at(limit + 1), limit),
            Err(DecodeError::TooDeep(limit))
        );
        assert!(Packet::decode(&at(MAX_NESTING_DECODED)).is_ok());
        assert_eq!(
            Packet::decode(&at(MAX_NESTING_DECODED + 1)),
            Err(DecodeError::TooDeep(MAX_NESTING_DECODED))
        );
        assert_eq!(
            Packet::decode(&hex(&format!("a1 00 {}", "81".repeat(50_000)))),
            Err(DecodeError::TooDeep(MAX_NESTING_DECODED))
        );
    }

    #[test]
    fn with_body_refuses_envelope_keys() {
        let mut body = Fields::new();
        body.set_uint(3, 1);
        assert!(Packet::with_body(PacketKind::MESSAGE, body).is_err());
    }

    #[test]
    fn insert_raw_checks_one_item() {
        let mut f = Fields::new();
        assert!(f.insert_raw(9, vec![0x01]).is_ok());
        assert!(f.insert_raw(9, vec![0x01, 0x02]).is_err());
        assert!(f.insert_raw(9, vec![0x62, 0x48]).is_err());
        assert!(f.insert_raw(9, vec![0x9f, 0x18, 0x01, 0xff]).is_ok());
        assert_eq!(f.raw(9), Some(&[0x81, 0x01][..]));
    }
}
