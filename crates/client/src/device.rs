//! The user's devices as the application sees them (spec 7.12): what [`Client::devices`]
//! lists.
//!
//! [`Client::devices`]: crate::Client::devices

use mqchat_proto::body::DeviceEntry;
use mqchat_proto::{DeviceId, Timestamp};

/// One device of the user that may connect, as the hub knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// The device.
    pub id: DeviceId,
    /// When it was registered (its first login, or its token issued).
    pub created: Timestamp,
    /// When it last logged in.
    pub last_login: Option<Timestamp>,
    /// It logs in with a device token (rather than the user's password).
    pub token: bool,
}

impl From<DeviceEntry> for Device {
    fn from(entry: DeviceEntry) -> Self {
        Self {
            id: entry.device,
            created: Timestamp::from_unix_ms(entry.created),
            last_login: entry.last_login.map(Timestamp::from_unix_ms),
            token: entry.token,
        }
    }
}
