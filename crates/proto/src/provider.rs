//! Providers: one per packet type, registered in a [`Registry`] built by the caller.
//!
//! A provider owns everything about its type that does not need IO: its number and name, how
//! the hub routes it ([`Routing`]), its body schema (keys, names, value types, limits), and any
//! extra checks. From the schema the registry validates packets and renders them to JSON and
//! back, for every type alike. The core types are registered through [`Registry::register`],
//! the same call a third party uses for its own types; there is no global registry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{DecodeError, FieldError};
use crate::id::MessageId;
use crate::identity::{ConversationRef, DeviceId, UserId};
use crate::packet::{Fields, MAX_DEPTH, Packet, PacketKind, key};

/// How the hub treats a packet type arriving on a device's upstream topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Routing {
    /// A conversation event: deduplicated, sequenced, archived, then delivered to the durable
    /// inboxes of every participant. Upstream it needs `id` and `conv`.
    Event,
    /// A cumulative marker (delivered, read): recorded as conversation state, not sequenced,
    /// delivered on the durable inbox. Upstream it needs `conv`.
    Marker,
    /// An ephemeral signal (chat state): forwarded to the ephemeral inboxes, never stored.
    /// Upstream it needs `conv`.
    Signal,
    /// A request to the hub, answered on the sending device's reply topic. Upstream it needs
    /// `id`.
    Request,
    /// Sent by the hub only (acks, errors, results); refused upstream.
    Reply,
    /// Published by a device on its own presence topic; refused upstream.
    Presence,
    /// A SIP message for the hub's SIP proxy (spec 7.14): routed by its SIP headers, never
    /// stored. Upstream it needs neither `id` nor `conv`.
    Sip,
}

/// The value type of a field, with its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldType {
    /// UTF-8 text of at most this many bytes.
    Text {
        /// Maximum length in bytes.
        max_bytes: usize,
    },
    /// An unsigned integer in a range.
    Uint {
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A boolean.
    Bool,
    /// An unsigned integer naming one of these choices; JSON shows the name.
    Choice(&'static [&'static str]),
    /// A user id.
    User,
    /// A device id.
    Device,
    /// An array of user ids.
    Users {
        /// Maximum number of items.
        max_items: usize,
    },
    /// An array of texts.
    Texts {
        /// Maximum number of items.
        max_items: usize,
        /// Maximum length of each, in bytes.
        max_bytes: usize,
    },
    /// A conversation reference.
    Conv,
    /// One nested packet.
    Packet,
    /// An array of nested packets.
    Packets {
        /// Maximum number of items.
        max_items: usize,
    },
    /// An array of nested maps with their own schema.
    Maps {
        /// The nested maps' fields.
        schema: &'static [FieldSpec],
        /// Maximum number of items.
        max_items: usize,
    },
    /// Any CBOR item; JSON shows its bytes in hex.
    Any,
}

/// One field of a schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The integer key.
    pub key: u32,
    /// The name, kebab case, used in JSON.
    pub name: &'static str,
    /// The value type.
    pub ty: FieldType,
    /// Whether the field must be present.
    pub required: bool,
}

impl FieldSpec {
    /// An optional field.
    pub const fn optional(key: u32, name: &'static str, ty: FieldType) -> Self {
        Self {
            key,
            name,
            ty,
            required: false,
        }
    }

    /// A required field.
    pub const fn required(key: u32, name: &'static str, ty: FieldType) -> Self {
        Self {
            key,
            name,
            ty,
            required: true,
        }
    }
}

/// Everything the protocol layer knows about one packet type.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The type number.
    fn kind(&self) -> PacketKind;
    /// The type name, kebab case (`message`, `chat-state`).
    fn name(&self) -> &str;
    /// How the hub routes it.
    fn routing(&self) -> Routing;
    /// The body's fields (keys 8 and up).
    fn schema(&self) -> &[FieldSpec];
    /// Checks beyond the schema (e.g. fields that exclude each other). The schema has been
    /// checked already.
    fn check(&self, packet: &Packet) -> Result<(), FieldError> {
        let _ = packet;
        Ok(())
    }
}

/// A check beyond the schema, for [`SchemaProvider`].
pub type CheckFn = fn(&Packet) -> Result<(), FieldError>;

/// A provider described entirely by data: the usual way to define a packet type.
#[derive(Clone, Copy)]
pub struct SchemaProvider {
    /// The type number.
    pub kind: PacketKind,
    /// The type name.
    pub name: &'static str,
    /// How the hub routes it.
    pub routing: Routing,
    /// The body's fields.
    pub schema: &'static [FieldSpec],
    /// Extra checks, if any.
    pub check: Option<CheckFn>,
}

impl fmt::Debug for SchemaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaProvider")
            .field("kind", &self.kind.0)
            .field("name", &self.name)
            .finish()
    }
}

impl Provider for SchemaProvider {
    fn kind(&self) -> PacketKind {
        self.kind
    }
    fn name(&self) -> &str {
        self.name
    }
    fn routing(&self) -> Routing {
        self.routing
    }
    fn schema(&self) -> &[FieldSpec] {
        self.schema
    }
    fn check(&self, packet: &Packet) -> Result<(), FieldError> {
        self.check.map_or(Ok(()), |check| check(packet))
    }
}

/// Why a provider could not be registered. The registering code is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The number is taken.
    #[error("packet type {0} is already registered")]
    KindTaken(u32),
    /// The name is taken.
    #[error("packet type name {0:?} is already registered")]
    NameTaken(String),
    /// The schema is inconsistent.
    #[error("schema of {name:?}: {problem}")]
    Schema {
        /// The type's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

/// Why JSON could not be turned into a packet. The JSON's author is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// The set of providers a hub or client knows, keyed by packet type.
#[derive(Clone, Default)]
pub struct Registry {
    by_kind: BTreeMap<PacketKind, Arc<dyn Provider>>,
    by_name: BTreeMap<String, PacketKind>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_schema(name: &str, schema: &[FieldSpec], min_key: u32) -> Result<(), RegistryError> {
    let bad = |problem: String| RegistryError::Schema {
        name: name.to_owned(),
        problem,
    };
    let mut keys = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for spec in schema {
        if spec.key < min_key {
            return Err(bad(format!(
                "key {} of {:?} is below {min_key}",
                spec.key, spec.name
            )));
        }
        if !keys.insert(spec.key) {
            return Err(bad(format!("key {} used twice", spec.key)));
        }
        let reserved = min_key == key::BODY_START && ENVELOPE_NAMES.contains(&spec.name);
        if !is_kebab(spec.name) || reserved || spec.name == "unknown" {
            return Err(bad(format!(
                "field name {:?} is not kebab case or is reserved",
                spec.name
            )));
        }
        if !names.insert(spec.name) {
            return Err(bad(format!("field name {:?} used twice", spec.name)));
        }
        if let FieldType::Maps { schema, .. } = spec.ty {
            check_schema(name, schema, 0)?;
        }
    }
    Ok(())
}

const ENVELOPE_NAMES: &[&str] = &[
    "type",
    "id",
    "conv",
    "seq",
    "ts",
    "from",
    "device",
    "ephemeral",
];

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the core packet types of the spec.
    pub fn with_core() -> Self {
        let mut registry = Self::new();
        crate::body::register_core(&mut registry);
        registry
    }

    /// Adds a provider. Fails if its number or name is taken or its schema is inconsistent.
    pub fn register(&mut self, provider: impl Provider + 'static) -> Result<(), RegistryError> {
        let kind = provider.kind();
        let name = provider.name().to_owned();
        if self.by_kind.contains_key(&kind) {
            return Err(RegistryError::KindTaken(kind.0));
        }
        if self.by_name.contains_key(&name) {
            return Err(RegistryError::NameTaken(name));
        }
        if !is_kebab(&name) {
            return Err(RegistryError::Schema {
                name,
                problem: "type name is not kebab case".into(),
            });
        }
        check_schema(&name, provider.schema(), key::BODY_START)?;
        self.by_name.insert(name, kind);
        self.by_kind.insert(kind, Arc::new(provider));
        Ok(())
    }

    /// The provider for a type.
    pub fn provider(&self, kind: PacketKind) -> Option<&dyn Provider> {
        self.by_kind.get(&kind).map(|p| &**p)
    }

    /// The type with this name.
    pub fn kind_named(&self, name: &str) -> Option<PacketKind> {
        self.by_name.get(name).copied()
    }

    /// All registered providers, by type number.
    pub fn providers(&self) -> impl Iterator<Item = &dyn Provider> {
        self.by_kind.values().map(|p| &**p)
    }

    /// Decodes and validates a packet. Unknown types are returned unvalidated (their body is
    /// opaque and is passed on as it is).
    pub fn decode(&self, bytes: &[u8]) -> Result<Packet, DecodeError> {
        let packet = Packet::decode(bytes)?;
        self.validate(&packet)?;
        Ok(packet)
    }

    /// Checks a packet's body against its provider's schema and checks.
    pub fn validate(&self, packet: &Packet) -> Result<(), FieldError> {
        let Some(provider) = self.provider(packet.kind) else {
            return Ok(());
        };
        validate_fields(packet.body(), provider.schema())?;
        provider.check(packet)
    }

    /// Renders a packet as JSON for humans, logs and test vectors.
    pub fn to_json(&self, packet: &Packet) -> Value {
        self.packet_to_json(packet, 0)
    }

    fn packet_to_json(&self, packet: &Packet, depth: usize) -> Value {
        let mut out = Map::new();
        let provider = self.provider(packet.kind);
        out.insert(
            "type".into(),
            match provider {
                Some(p) => Value::from(p.name()),
                None => Value::from(packet.kind.0),
            },
        );
        if let Some(id) = packet.id {
            out.insert("id".into(), Value::from(id.to_string()));
        }
        if let Some(conv) = &packet.conv {
            out.insert("conv".into(), Value::from(conv.to_string()));
        }
        if let Some(seq) = packet.seq {
            out.insert("seq".into(), Value::from(seq));
        }
        if let Some(ts) = packet.ts {
            out.insert("ts".into(), Value::from(ts));
        }
        if let Some(from) = &packet.from {
            out.insert("from".into(), Value::from(from.as_str()));
        }
        if let Some(device) = &packet.device {
            out.insert("device".into(), Value::from(device.as_str()));
        }
        if packet.ephemeral {
            out.insert("ephemeral".into(), Value::Bool(true));
        }
        let schema = provider.map_or(&[][..], |p| p.schema());
        self.fields_to_json(packet.body(), schema, depth, &mut out);
        Value::Object(out)
    }

    fn fields_to_json(
        &self,
        fields: &Fields,
        schema: &[FieldSpec],
        depth: usize,
        out: &mut Map<String, Value>,
    ) {
        let mut unknown = Map::new();
        for (key, raw) in fields.iter() {
            let spec = schema.iter().find(|s| s.key == key);
            match spec.and_then(|s| self.value_to_json(fields, s, depth)) {
                Some(value) => {
                    out.insert(spec.map_or("", |s| s.name).to_owned(), value);
                }
                None => {
                    unknown.insert(key.to_string(), Value::from(hex(raw)));
                }
            }
        }
        if !unknown.is_empty() {
            out.insert("unknown".into(), Value::Object(unknown));
        }
    }

    /// Renders one known field; `None` when the value does not fit the schema, in which case
    /// it is shown raw under `unknown`.
    fn value_to_json(&self, fields: &Fields, spec: &FieldSpec, depth: usize) -> Option<Value> {
        let k = spec.key;
        Some(match spec.ty {
            FieldType::Text { .. } | FieldType::User | FieldType::Device | FieldType::Conv => {
                Value::from(fields.text(k).ok()??)
            }
            FieldType::Uint { .. } => Value::from(fields.uint(k).ok()??),
            FieldType::Bool => Value::from(fields.bool(k).ok()??),
            FieldType::Choice(names) => {
                let n = fields.uint(k).ok()??;
                Value::from(*names.get(usize::try_from(n).ok()?)?)
            }
            FieldType::Users { .. } | FieldType::Texts { .. } => {
                Value::from(fields.texts(k).ok()??)
            }
            FieldType::Any => Value::from(hex(fields.raw(k)?)),
            FieldType::Packet => {
                let raw = fields.raw(k)?;
                self.nested_packet_json(raw, depth)?
            }
            FieldType::Packets { .. } => {
                let items = fields.maps(k).ok()??;
                Value::Array(
                    items
                        .into_iter()
                        .map(|raw| self.nested_packet_json(raw, depth))
                        .collect::<Option<_>>()?,
                )
            }
            FieldType::Maps { schema, .. } => {
                let items = fields.maps(k).ok()??;
                let mut out = Vec::with_capacity(items.len());
                for raw in items {
                    let nested = Fields::decode(raw).ok()?;
                    let mut obj = Map::new();
                    self.fields_to_json(&nested, schema, depth + 1, &mut obj);
                    out.push(Value::Object(obj));
                }
                Value::Array(out)
            }
        })
    }

    fn nested_packet_json(&self, raw: &[u8], depth: usize) -> Option<Value> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let packet = Packet::decode(raw).ok()?;
        Some(self.packet_to_json(&packet, depth + 1))
    }

    /// Builds a packet from its JSON rendering (the inverse of [`Registry::to_json`]).
    pub fn from_json(&self, json: &Value) -> Result<Packet, JsonError> {
        self.packet_from_json(json, 0)
    }

    fn packet_from_json(&self, json: &Value, depth: usize) -> Result<Packet, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError("packets nest too deep".into()));
        }
        let obj = json
            .as_object()
            .ok_or_else(|| JsonError("a packet must be a JSON object".into()))?;
        let kind = match obj.get("type") {
            Some(Value::String(name)) => self
                .kind_named(name)
                .ok_or_else(|| JsonError(format!("unknown packet type name {name:?}")))?,
            Some(Value::Number(n)) => PacketKind(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| JsonError(format!("bad packet type {n}")))?,
            ),
            _ => return Err(JsonError("\"type\" must be a name or a number".into())),
        };
        let mut packet = Packet::new(kind);
        let text = |name: &str| -> Result<Option<&str>, JsonError> {
            match obj.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(JsonError(format!("{name:?} must be a string"))),
            }
        };
        let number = |name: &str| -> Result<Option<u64>, JsonError> {
            match obj.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| JsonError(format!("{name:?} must be an unsigned integer"))),
            }
        };
        let bad = |name: &str, e: &dyn fmt::Display| JsonError(format!("{name:?}: {e}"));
        packet.id = text("id")?
            .map(MessageId::parse)
            .transpose()
            .map_err(|e| bad("id", &e))?;
        packet.conv = text("conv")?
            .map(ConversationRef::parse)
            .transpose()
            .map_err(|e| bad("conv", &e))?;
        packet.seq = number("seq")?;
        packet.ts = number("ts")?;
        packet.from = text("from")?
            .map(UserId::parse)
            .transpose()
            .map_err(|e| bad("from", &e))?;
        packet.device = text("device")?
            .map(DeviceId::parse)
            .transpose()
            .map_err(|e| bad("device", &e))?;
        packet.ephemeral = match obj.get("ephemeral") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(JsonError("\"ephemeral\" must be a boolean".into())),
        };
        let schema = self.provider(kind).map_or(&[][..], |p| p.schema());
        let body = self.fields_from_json(obj, schema, ENVELOPE_NAMES, depth)?;
        packet
            .set_body(body)
            .map_err(|e| JsonError(e.to_string()))?;
        Ok(packet)
    }

    fn fields_from_json(
        &self,
        obj: &Map<String, Value>,
        schema: &[FieldSpec],
        skip: &[&str],
        depth: usize,
    ) -> Result<Fields, JsonError> {
        let mut fields = Fields::new();
        for (name, value) in obj {
            if skip.contains(&name.as_str()) {
                continue;
            }
            if name == "unknown" {
                let unknown = value
                    .as_object()
                    .ok_or_else(|| JsonError("\"unknown\" must be an object".into()))?;
                for (k, v) in unknown {
                    let key: u32 = k
                        .parse()
                        .map_err(|_| JsonError(format!("unknown key {k:?} is not a number")))?;
                    let raw = v.as_str().and_then(unhex).ok_or_else(|| {
                        JsonError(format!("unknown key {k}: value must be hex CBOR"))
                    })?;
                    fields
                        .insert_raw(key, raw)
                        .map_err(|e| JsonError(format!("unknown key {k}: {e}")))?;
                }
                continue;
            }
            let spec = schema
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| JsonError(format!("field {name:?} is not in the schema")))?;
            self.value_from_json(&mut fields, spec, value, depth)
                .map_err(|e| JsonError(format!("field {name:?}: {e}")))?;
        }
        Ok(fields)
    }

    fn value_from_json(
        &self,
        fields: &mut Fields,
        spec: &FieldSpec,
        value: &Value,
        depth: usize,
    ) -> Result<(), JsonError> {
        let k = spec.key;
        let wrong = |what: &str| JsonError(format!("must be {what}"));
        match spec.ty {
            FieldType::Text { .. } | FieldType::User | FieldType::Device | FieldType::Conv => {
                fields.set_text(k, value.as_str().ok_or_else(|| wrong("a string"))?);
            }
            FieldType::Uint { .. } => fields.set_uint(
                k,
                value.as_u64().ok_or_else(|| wrong("an unsigned integer"))?,
            ),
            FieldType::Bool => {
                fields.set_bool(k, value.as_bool().ok_or_else(|| wrong("a boolean"))?)
            }
            FieldType::Choice(names) => {
                let name = value.as_str().ok_or_else(|| wrong("a string"))?;
                let index = names
                    .iter()
                    .position(|n| *n == name)
                    .ok_or_else(|| wrong(&format!("one of {names:?}")))?;
                fields.set_uint(k, index as u64);
            }
            FieldType::Users { .. } | FieldType::Texts { .. } => {
                let items = value.as_array().ok_or_else(|| wrong("an array"))?;
                let texts = items
                    .iter()
                    .map(|v| v.as_str().ok_or_else(|| wrong("an array of strings")))
                    .collect::<Result<Vec<_>, _>>()?;
                fields.set_texts(k, &texts);
            }
            FieldType::Any => {
                let raw = value
                    .as_str()
                    .and_then(unhex)
                    .ok_or_else(|| wrong("hex CBOR"))?;
                fields
                    .insert_raw(k, raw)
                    .map_err(|e| JsonError(e.to_string()))?;
            }
            FieldType::Packet => {
                let packet = self.packet_from_json(value, depth + 1)?;
                fields
                    .insert_raw(k, packet.encode())
                    .map_err(|e| JsonError(e.to_string()))?;
            }
            FieldType::Packets { .. } => {
                let items = value.as_array().ok_or_else(|| wrong("an array"))?;
                let encoded = items
                    .iter()
                    .map(|v| self.packet_from_json(v, depth + 1).map(|p| p.encode()))
                    .collect::<Result<Vec<_>, _>>()?;
                fields.set_maps(k, encoded.into_iter());
            }
            FieldType::Maps { schema, .. } => {
                let items = value.as_array().ok_or_else(|| wrong("an array"))?;
                let mut encoded = Vec::with_capacity(items.len());
                for item in items {
                    let obj = item
                        .as_object()
                        .ok_or_else(|| wrong("an array of objects"))?;
                    encoded.push(self.fields_from_json(obj, schema, &[], depth + 1)?.encode());
                }
                fields.set_maps(k, encoded.into_iter());
            }
        }
        Ok(())
    }
}

/// Checks fields against a schema: required fields present, each known field of its type and
/// within its limits. Unknown keys are allowed (they belong to newer versions).
pub fn validate_fields(fields: &Fields, schema: &[FieldSpec]) -> Result<(), FieldError> {
    for spec in schema {
        let err = |problem: String| FieldError::new(spec.key, spec.name, problem);
        let with_name = |mut e: FieldError| {
            e.name = spec.name;
            e
        };
        if !fields.contains(spec.key) {
            if spec.required {
                return Err(err("is required".into()));
            }
            continue;
        }
        let k = spec.key;
        match spec.ty {
            FieldType::Text { max_bytes } => {
                let text = fields.text(k).map_err(with_name)?.unwrap_or_default();
                if text.len() > max_bytes {
                    return Err(err(format!(
                        "is {} bytes, at most {max_bytes} allowed",
                        text.len()
                    )));
                }
            }
            FieldType::Uint { min, max } => {
                let n = fields.uint(k).map_err(with_name)?.unwrap_or_default();
                if n < min || n > max {
                    return Err(err(format!("{n} is outside {min}..={max}")));
                }
            }
            FieldType::Bool => {
                fields.bool(k).map_err(with_name)?;
            }
            FieldType::Choice(names) => {
                let n = fields.uint(k).map_err(with_name)?.unwrap_or_default();
                if n >= names.len() as u64 {
                    return Err(err(format!("{n} is not one of 0..{}", names.len())));
                }
            }
            FieldType::User => {
                let text = fields.text(k).map_err(with_name)?.unwrap_or_default();
                UserId::parse(text).map_err(|e| err(e.to_string()))?;
            }
            FieldType::Device => {
                let text = fields.text(k).map_err(with_name)?.unwrap_or_default();
                DeviceId::parse(text).map_err(|e| err(e.to_string()))?;
            }
            FieldType::Conv => {
                let text = fields.text(k).map_err(with_name)?.unwrap_or_default();
                ConversationRef::parse(text).map_err(|e| err(e.to_string()))?;
            }
            FieldType::Users { max_items } => {
                let items = fields.texts(k).map_err(with_name)?.unwrap_or_default();
                if items.len() > max_items {
                    return Err(err(format!(
                        "has {} items, at most {max_items} allowed",
                        items.len()
                    )));
                }
                for item in items {
                    UserId::parse(item).map_err(|e| err(e.to_string()))?;
                }
            }
            FieldType::Texts {
                max_items,
                max_bytes,
            } => {
                let items = fields.texts(k).map_err(with_name)?.unwrap_or_default();
                if items.len() > max_items {
                    return Err(err(format!(
                        "has {} items, at most {max_items} allowed",
                        items.len()
                    )));
                }
                if let Some(long) = items.iter().find(|t| t.len() > max_bytes) {
                    return Err(err(format!(
                        "has an item of {} bytes, at most {max_bytes} allowed",
                        long.len()
                    )));
                }
            }
            FieldType::Any => {}
            FieldType::Packet => {
                let raw = fields.raw(k).unwrap_or_default();
                Packet::decode(raw).map_err(|e| err(e.to_string()))?;
            }
            FieldType::Packets { max_items } => {
                let items = fields.maps(k).map_err(with_name)?.unwrap_or_default();
                if items.len() > max_items {
                    return Err(err(format!(
                        "has {} items, at most {max_items} allowed",
                        items.len()
                    )));
                }
                for raw in items {
                    Packet::decode(raw).map_err(|e| err(e.to_string()))?;
                }
            }
            FieldType::Maps { schema, max_items } => {
                let items = fields.maps(k).map_err(with_name)?.unwrap_or_default();
                if items.len() > max_items {
                    return Err(err(format!(
                        "has {} items, at most {max_items} allowed",
                        items.len()
                    )));
                }
                for raw in items {
                    let nested = Fields::decode(raw).map_err(|e| err(e.to_string()))?;
                    validate_fields(&nested, schema).map_err(|e| err(e.to_string()))?;
                }
            }
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}
