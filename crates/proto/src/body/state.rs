//! Presence (per device, retained, written by the device) and profile (per user, retained,
//! written by the hub on the user's request).

use super::{Body, choice, limits, required};
use crate::error::FieldError;
use crate::packet::{Fields, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const AVAILABILITY: &[&str] = &["offline", "available", "away", "busy"];

const PRESENCE_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(8, "availability", FieldType::Choice(AVAILABILITY)),
    FieldSpec::optional(
        9,
        "status",
        FieldType::Text {
            max_bytes: limits::STATUS_BYTES,
        },
    ),
    FieldSpec::optional(
        10,
        "last-active",
        FieldType::Uint {
            min: 0,
            max: limits::MAX_SAFE,
        },
    ),
];

pub(super) const PRESENCE: SchemaProvider = SchemaProvider {
    kind: PacketKind::PRESENCE,
    name: "presence",
    routing: Routing::Presence,
    schema: PRESENCE_SCHEMA,
    check: None,
};

/// How available a device's user is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Availability {
    /// Not connected.
    Offline = 0,
    /// Connected and available.
    Available = 1,
    /// Connected, not at the device.
    Away = 2,
    /// Connected, do not disturb.
    Busy = 3,
}

const ALL_AVAILABILITY: [Availability; 4] = [
    Availability::Offline,
    Availability::Available,
    Availability::Away,
    Availability::Busy,
];

/// One device's presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// Availability.
    pub availability: Availability,
    /// A short status text ("In a meeting").
    pub status: Option<String>,
    /// When the user was last active on this device, ms since the Unix epoch.
    pub last_active: Option<u64>,
}

impl Presence {
    /// A presence with only an availability.
    pub fn new(availability: Availability) -> Self {
        Self {
            availability,
            status: None,
            last_active: None,
        }
    }
}

impl Body for Presence {
    const KIND: PacketKind = PacketKind::PRESENCE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let index = required(
            choice(f, 8, "availability", AVAILABILITY.len()),
            8,
            "availability",
        )?;
        Ok(Self {
            availability: ALL_AVAILABILITY[index],
            status: f.text(9)?.map(str::to_owned),
            last_active: f.uint(10)?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.availability as u64);
        if let Some(status) = &self.status {
            f.set_text(9, status);
        }
        if let Some(t) = self.last_active {
            f.set_uint(10, t);
        }
        f
    }
}

const PROFILE_SCHEMA: &[FieldSpec] = &[
    FieldSpec::optional(
        8,
        "name",
        FieldType::Text {
            max_bytes: limits::NAME_BYTES,
        },
    ),
    FieldSpec::optional(
        9,
        "avatar",
        FieldType::Text {
            max_bytes: limits::AVATAR_BYTES,
        },
    ),
    FieldSpec::optional(
        10,
        "status",
        FieldType::Text {
            max_bytes: limits::STATUS_BYTES,
        },
    ),
];

pub(super) const PROFILE: SchemaProvider = SchemaProvider {
    kind: PacketKind::PROFILE,
    name: "profile",
    routing: Routing::Request,
    schema: PROFILE_SCHEMA,
    check: None,
};

/// A user's profile. Upstream, an absent field is left unchanged and an empty text clears
/// it; on the profile topic the hub publishes the whole profile.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Profile {
    /// Display name.
    pub name: Option<String>,
    /// Avatar reference (a URI).
    pub avatar: Option<String>,
    /// Status text ("Hey there!").
    pub status: Option<String>,
}

impl Body for Profile {
    const KIND: PacketKind = PacketKind::PROFILE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            name: f.text(8)?.map(str::to_owned),
            avatar: f.text(9)?.map(str::to_owned),
            status: f.text(10)?.map(str::to_owned),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        for (key, value) in [(8, &self.name), (9, &self.avatar), (10, &self.status)] {
            if let Some(v) = value {
                f.set_text(key, v);
            }
        }
        f
    }
}
