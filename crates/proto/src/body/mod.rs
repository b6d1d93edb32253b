//! The core packet types: their schemas (registered as providers) and typed views.
//!
//! Each type has a schema constant, a provider registered by [`register_core`] through the
//! public [`Registry::register`], and a struct implementing [`Body`] for code that wants a
//! typed value rather than raw fields.

mod call;
mod contact;
mod device;
mod group;
mod marker;
mod message;
mod push;
mod reply;
mod state;
mod sync;

pub use call::{CALL_ID_BYTES, Call, CallOutcome, GATEWAY_KEYS, MAX_MEDIA, SIP_MESSAGE_BYTES, Sip};
pub use contact::{Contact, ContactAction, ContactState};
pub use device::{DeviceEntry, DeviceList, DeviceListResult, DeviceRevoke, MAX_DEVICES};
pub use group::{
    AdminAction, GroupAction, GroupAdmin, GroupCreate, GroupEvent, GroupInfo, GroupInfoResult,
    GroupJoin, HistoryVisibility, JoinAction, Member, Role,
};
pub use marker::{Delivered, Read};
pub use message::{ChatState, Message, State};
pub use push::{
    ClientState, MAX_ADDRESS_BYTES, MUTED_FOREVER, Mute, PushRegister, PushTarget, PushUnregister,
};
pub use reply::{Ack, ErrorReply};
pub use state::{Availability, Presence, Profile};
pub use sync::{ConversationEntry, History, HistoryResult, Sync, SyncResult};

use crate::error::{DecodeError, FieldError};
use crate::packet::{Fields, Packet, PacketKind};
use crate::provider::Registry;

/// Protocol limits on field sizes. A hub may be configured tighter, never looser.
pub mod limits {
    /// Message text, in bytes of UTF-8.
    pub const TEXT_BYTES: usize = 16 * 1024;
    /// Mentions in one message.
    pub const MENTIONS: usize = 64;
    /// The note on a contact request, in bytes.
    pub const NOTE_BYTES: usize = 512;
    /// Presence status and profile status texts, in bytes.
    pub const STATUS_BYTES: usize = 256;
    /// Display names, in bytes.
    pub const NAME_BYTES: usize = 128;
    /// Avatar references (URIs), in bytes.
    pub const AVATAR_BYTES: usize = 512;
    /// Error details, in bytes.
    pub const DETAIL_BYTES: usize = 512;
    /// Items in one sync or history page.
    pub const PAGE_ITEMS: usize = 500;
    /// The largest integer the spec allows in counts and sequence numbers (2^53 - 1, so that
    /// JavaScript numbers hold them exactly).
    pub const MAX_SAFE: u64 = (1 << 53) - 1;
}

/// A typed view of a packet body.
pub trait Body: Sized {
    /// The packet type this body belongs to.
    const KIND: PacketKind;
    /// Reads the typed value from body fields (which the registry has validated, though this
    /// checks types again and never panics).
    fn from_fields(fields: &Fields) -> Result<Self, FieldError>;
    /// Writes the body fields.
    fn to_fields(&self) -> Fields;

    /// A packet of this type with this body and an empty envelope.
    fn to_packet(&self) -> Packet {
        // `to_fields` of a `Body` only writes body keys (8 and up); the unit tests of every
        // core type check it.
        Packet::with_body(Self::KIND, self.to_fields()).unwrap_or_else(|_| Packet::new(Self::KIND))
    }

    /// Reads the typed body of `packet`, checking its type.
    fn from_packet(packet: &Packet) -> Result<Self, DecodeError> {
        if packet.kind != Self::KIND {
            return Err(DecodeError::Kind {
                expected: Self::KIND.0,
                actual: packet.kind.0,
            });
        }
        Ok(Self::from_fields(packet.body())?)
    }
}

/// Registers the core packet types of the spec.
pub fn register_core(registry: &mut Registry) {
    for provider in [
        message::MESSAGE,
        message::CHAT_STATE,
        marker::DELIVERED,
        marker::READ,
        contact::CONTACT,
        state::PRESENCE,
        state::PROFILE,
        reply::ACK,
        reply::ERROR,
        sync::SYNC,
        sync::SYNC_RESULT,
        sync::HISTORY,
        sync::HISTORY_RESULT,
        group::GROUP_CREATE,
        group::GROUP_EVENT,
        group::GROUP_ADMIN,
        group::GROUP_JOIN,
        group::GROUP_INFO,
        group::GROUP_INFO_RESULT,
        device::DEVICE_LIST,
        device::DEVICE_LIST_RESULT,
        device::DEVICE_REVOKE,
        push::CLIENT_STATE,
        push::PUSH_REGISTER,
        push::PUSH_UNREGISTER,
        push::MUTE,
        call::SIP,
        call::CALL,
    ] {
        // The core schemas are constants checked by `core_registers` below: registering them
        // into an empty registry cannot fail.
        let _ = registry.register(provider);
    }
}

/// Reads a required field, turning absence into an error.
pub(crate) fn required<T>(
    value: Result<Option<T>, FieldError>,
    key: u32,
    name: &'static str,
) -> Result<T, FieldError> {
    value?.ok_or_else(|| FieldError::new(key, name, "is required"))
}

/// Reads a choice field as its index.
pub(crate) fn choice(
    fields: &Fields,
    key: u32,
    name: &'static str,
    n: usize,
) -> Result<Option<usize>, FieldError> {
    match fields.uint(key)? {
        None => Ok(None),
        Some(v) if v < n as u64 => Ok(Some(v as usize)),
        Some(v) => Err(FieldError::new(
            key,
            name,
            format!("{v} is not a known choice"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::key;

    #[test]
    fn core_registers() {
        let mut registry = Registry::new();
        register_core(&mut registry);
        assert_eq!(registry.providers().count(), 28);
        for n in (1..=13).chain(32..=37).chain(64..=70).chain(80..=81) {
            assert!(registry.provider(PacketKind(n)).is_some(), "type {n}");
        }
        // Registering again is refused, by number.
        assert!(registry.register(message::MESSAGE).is_err());
        for p in registry.providers() {
            assert!(
                p.schema().iter().all(|s| s.key >= key::BODY_START),
                "{}",
                p.name()
            );
        }
    }
}
