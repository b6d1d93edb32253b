//! Delivered and read markers: cumulative, one small packet covers every earlier event.

use super::{Body, limits, required};
use crate::error::FieldError;
use crate::packet::{Fields, Packet, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const DELIVERED_SCHEMA: &[FieldSpec] = &[FieldSpec::required(
    8,
    "up-to",
    FieldType::Uint {
        min: 1,
        max: limits::MAX_SAFE,
    },
)];

const READ_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(
        8,
        "up-to",
        FieldType::Uint {
            min: 1,
            max: limits::MAX_SAFE,
        },
    ),
    FieldSpec::optional(9, "private", FieldType::Bool),
];

fn needs_conv(packet: &Packet) -> Result<(), FieldError> {
    match packet.conv {
        Some(_) => Ok(()),
        None => Err(FieldError::new(2, "conv", "a marker needs a conversation")),
    }
}

pub(super) const DELIVERED: SchemaProvider = SchemaProvider {
    kind: PacketKind::DELIVERED,
    name: "delivered",
    routing: Routing::Marker,
    schema: DELIVERED_SCHEMA,
    check: Some(needs_conv),
};

pub(super) const READ: SchemaProvider = SchemaProvider {
    kind: PacketKind::READ,
    name: "read",
    routing: Routing::Marker,
    schema: READ_SCHEMA,
    check: Some(needs_conv),
};

/// A device of the user received every event of the conversation up to `up_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Everything up to and including this sequence number.
    pub up_to: u64,
}

impl Body for Delivered {
    const KIND: PacketKind = PacketKind::DELIVERED;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            up_to: required(f.uint(8), 8, "up-to")?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.up_to);
        f
    }
}

/// The user read every event of the conversation up to `up_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// Everything up to and including this sequence number.
    pub up_to: u64,
    /// Sync to the reader's own devices only; the other participants are not told.
    pub private: bool,
}

impl Body for Read {
    const KIND: PacketKind = PacketKind::READ;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            up_to: required(f.uint(8), 8, "up-to")?,
            private: f.bool(9)?.unwrap_or(false),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.up_to);
        if self.private {
            f.set_bool(9, true);
        }
        f
    }
}
