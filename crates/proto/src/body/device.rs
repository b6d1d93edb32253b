//! Device management by the user (types 64–66): list one's own devices, revoke one.

use super::{Body, limits, required};
use crate::error::FieldError;
use crate::identity::DeviceId;
use crate::packet::{Fields, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

/// The most devices one user may have listed in a result.
pub const MAX_DEVICES: usize = 256;

const TIME: FieldType = FieldType::Uint {
    min: 0,
    max: limits::MAX_SAFE,
};

pub(super) const DEVICE_LIST: SchemaProvider = SchemaProvider {
    kind: PacketKind::DEVICE_LIST,
    name: "device-list",
    routing: Routing::Request,
    schema: &[],
    check: None,
};

const DEVICE_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(8, "device-id", FieldType::Device),
    FieldSpec::required(9, "created", TIME),
    FieldSpec::optional(10, "last-login", TIME),
    FieldSpec::optional(11, "token", FieldType::Bool),
];

pub(super) const DEVICE_LIST_RESULT: SchemaProvider = SchemaProvider {
    kind: PacketKind::DEVICE_LIST_RESULT,
    name: "device-list-result",
    routing: Routing::Reply,
    schema: &[FieldSpec::required(
        8,
        "devices",
        FieldType::Maps {
            schema: DEVICE_SCHEMA,
            max_items: MAX_DEVICES,
        },
    )],
    check: None,
};

pub(super) const DEVICE_REVOKE: SchemaProvider = SchemaProvider {
    kind: PacketKind::DEVICE_REVOKE,
    name: "device-revoke",
    routing: Routing::Request,
    schema: &[FieldSpec::required(8, "device-id", FieldType::Device)],
    check: None,
};

fn device_of(f: &Fields, key: u32, name: &'static str) -> Result<DeviceId, FieldError> {
    let text = required(f.text(key), key, name)?;
    DeviceId::parse(text).map_err(|e| FieldError::new(key, name, e.to_string()))
}

/// A request for the list of the sender's own devices (empty body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceList;

impl Body for DeviceList {
    const KIND: PacketKind = PacketKind::DEVICE_LIST;

    fn from_fields(_: &Fields) -> Result<Self, FieldError> {
        Ok(Self)
    }

    fn to_fields(&self) -> Fields {
        Fields::new()
    }
}

/// One device of the user, as the hub knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device id.
    pub device: DeviceId,
    /// When it was registered (first login or token issued), ms since the Unix epoch.
    pub created: u64,
    /// When it last logged in.
    pub last_login: Option<u64>,
    /// Whether it logs in with a device token (rather than the user's password).
    pub token: bool,
}

/// The user's devices that may connect (revoked ones are not listed), by device id.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeviceListResult {
    /// The devices.
    pub devices: Vec<DeviceEntry>,
}

impl Body for DeviceListResult {
    const KIND: PacketKind = PacketKind::DEVICE_LIST_RESULT;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let devices = required(f.maps(8), 8, "devices")?
            .into_iter()
            .map(|raw| {
                let d = Fields::decode(raw)
                    .map_err(|e| FieldError::new(8, "devices", e.to_string()))?;
                Ok(DeviceEntry {
                    device: device_of(&d, 8, "device-id")?,
                    created: required(d.uint(9), 9, "created")?,
                    last_login: d.uint(10)?,
                    token: d.bool(11)?.unwrap_or(false),
                })
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(Self { devices })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        let devices = self.devices.iter().map(|d| {
            let mut e = Fields::new();
            e.set_text(8, d.device.as_str());
            e.set_uint(9, d.created);
            if let Some(t) = d.last_login {
                e.set_uint(10, t);
            }
            if d.token {
                e.set_bool(11, true);
            }
            e.encode()
        });
        f.set_maps(8, devices.collect::<Vec<_>>().into_iter());
        f
    }
}

/// Revokes one of the sender's devices: its credentials stop working and the broker's
/// session for it is removed. A device may revoke itself (signing out for good).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRevoke {
    /// The device to revoke.
    pub device: DeviceId,
}

impl Body for DeviceRevoke {
    const KIND: PacketKind = PacketKind::DEVICE_REVOKE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            device: device_of(f, 8, "device-id")?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(8, self.device.as_str());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    fn device(s: &str) -> DeviceId {
        DeviceId::parse(s).expect("valid device id")
    }

    #[test]
    fn result_round_trips_through_the_registry() {
        let result = DeviceListResult {
            devices: vec![
                DeviceEntry {
                    device: device("laptop"),
                    created: 1_789_000_000_000,
                    last_login: Some(1_790_000_000_000),
                    token: true,
                },
                DeviceEntry {
                    device: device("phone"),
                    created: 1_789_000_000_001,
                    last_login: None,
                    token: false,
                },
            ],
        };
        let registry = Registry::with_core();
        let bytes = result.to_packet().encode();
        let packet = registry.decode(&bytes).expect("valid");
        assert_eq!(
            DeviceListResult::from_packet(&packet).expect("typed"),
            result
        );
    }

    #[test]
    fn revoke_refuses_a_bad_device_id() {
        let registry = Registry::with_core();
        let mut f = Fields::new();
        f.set_text(8, "Not/A:Device");
        let packet = crate::Packet::with_body(PacketKind::DEVICE_REVOKE, f).expect("body keys");
        let err = registry.decode(&packet.encode()).expect_err("refused");
        assert!(err.to_string().contains("device"), "{err}");
    }

    #[test]
    fn body_keys_start_at_eight() {
        let revoke = DeviceRevoke {
            device: device("phone"),
        };
        assert!(revoke.to_fields().iter().all(|(k, _)| k >= 8));
        let list = DeviceListResult::default().to_fields();
        assert!(list.iter().all(|(k, _)| k >= 8));
    }
}
