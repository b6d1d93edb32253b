//! The mqchat protocol, without IO: identities, the topic tree and its ACL rules, message
//! ids, packets and their CBOR encoding, providers, and the MQTT framing arithmetic used to
//! report wire sizes.
//!
//! This crate never reads a clock, draws OS randomness, opens a socket or a file: time and
//! random numbers are arguments (see `clippy.toml`). The specification it implements is
//! `docs/PROTOCOL.md` at the root of the repository.

pub mod acl;
pub mod body;
pub mod encoding;
pub mod error;
pub mod id;
pub mod identity;
pub mod packet;
pub mod provider;
pub mod time;
pub mod topic;
pub mod upstream;
pub mod wire;

pub use acl::{Access, Decision, Denial, Principal, authorize};
pub use body::Body;
pub use error::{DecodeError, ErrorCode, FieldError};
pub use id::{IdGenerator, MessageId, Seq};
pub use identity::{
    ConversationRef, DeviceId, DeviceIdentity, GatewayName, GroupId, IdentityError, SipAddress,
    UserId,
};
pub use packet::{Fields, Packet, PacketKind};
pub use provider::{FieldSpec, FieldType, Provider, Registry, Routing, SchemaProvider};
pub use time::{Cadence, Moment, Now, Timestamp};
pub use topic::{GatewayDirection, InboxBranch, Topic, TopicError, TopicRoot};
pub use wire::Qos;
