//! A device's presence as the application sets and sees it (spec sections 7.5 and 10), with
//! the last-active time typed where the `presence` packet carries a number.

use mqchat_proto::Timestamp;
use mqchat_proto::body::{self, Availability};

/// One device's presence: set with [`Client::set_presence`](crate::Client::set_presence)
/// or [`ClientConfig::presence`](crate::ClientConfig::presence), told by
/// [`Event::Presence`](crate::Event::Presence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// Available, away, busy or offline.
    pub availability: Availability,
    /// A short status text ("In a meeting").
    pub status: Option<String>,
    /// When the user was last active on the device (the SDK sets it when it goes offline).
    pub last_active: Option<Timestamp>,
}

impl Presence {
    /// A presence with only an availability.
    pub fn new(availability: Availability) -> Self {
        body::Presence::new(availability).into()
    }
}

impl From<body::Presence> for Presence {
    fn from(presence: body::Presence) -> Self {
        Self {
            availability: presence.availability,
            status: presence.status,
            last_active: presence.last_active.map(Timestamp::from_unix_ms),
        }
    }
}

impl From<Presence> for body::Presence {
    fn from(presence: Presence) -> Self {
        Self {
            availability: presence.availability,
            status: presence.status,
            last_active: presence.last_active.map(Timestamp::unix_ms),
        }
    }
}
