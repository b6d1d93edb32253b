//! The hub's replies to one device: acknowledgements and errors.

use super::{Body, limits, required};
use crate::error::{ErrorCode, FieldError};
use crate::packet::{Fields, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const ACK_SCHEMA: &[FieldSpec] = &[FieldSpec::optional(8, "duplicate", FieldType::Bool)];

pub(super) const ACK: SchemaProvider = SchemaProvider {
    kind: PacketKind::ACK,
    name: "ack",
    routing: Routing::Reply,
    schema: ACK_SCHEMA,
    check: None,
};

/// The hub accepted the request with the envelope's `id`. For an event it carries `conv`,
/// `seq` and `ts` of the stored event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    /// The request had been accepted before: this is a resend, nothing new was stored.
    pub duplicate: bool,
}

impl Body for Ack {
    const KIND: PacketKind = PacketKind::ACK;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            duplicate: f.bool(8)?.unwrap_or(false),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        if self.duplicate {
            f.set_bool(8, true);
        }
        f
    }
}

const ERROR_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(8, "code", FieldType::Uint { min: 1, max: 65535 }),
    FieldSpec::optional(
        9,
        "detail",
        FieldType::Text {
            max_bytes: limits::DETAIL_BYTES,
        },
    ),
    FieldSpec::optional(
        10,
        "about",
        FieldType::Uint {
            min: 0,
            max: u32::MAX as u64,
        },
    ),
];

pub(super) const ERROR: SchemaProvider = SchemaProvider {
    kind: PacketKind::ERROR,
    name: "error",
    routing: Routing::Reply,
    schema: ERROR_SCHEMA,
    check: None,
};

/// The hub refused a packet. The envelope's `id` and `conv` are those of the refused packet
/// when it had them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    /// What went wrong.
    pub code: ErrorCode,
    /// A human-readable explanation (English, for logs; not for display to end users).
    pub detail: Option<String>,
    /// The packet type of the refused packet, when it could be read.
    pub about: Option<u32>,
}

impl Body for ErrorReply {
    const KIND: PacketKind = PacketKind::ERROR;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let code = required(f.uint(8), 8, "code")?;
        let code =
            u16::try_from(code).map_err(|_| FieldError::new(8, "code", "must be below 65536"))?;
        let about = f.uint(10)?.map(|a| u32::try_from(a).unwrap_or(u32::MAX));
        Ok(Self {
            code: ErrorCode(code),
            detail: f.text(9)?.map(str::to_owned),
            about,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, u64::from(self.code.0));
        if let Some(detail) = &self.detail {
            let mut detail = detail.clone();
            detail.truncate(detail.floor_char_boundary(limits::DETAIL_BYTES));
            f.set_text(9, &detail);
        }
        if let Some(about) = self.about {
            f.set_uint(10, u64::from(about));
        }
        f
    }
}
