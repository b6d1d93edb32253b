//! The hub: mqchat's server-side logic, without MQTT or sockets.
//!
//! The runtime (crate `mqchat-server`) feeds the [`Engine`] batches of PUBLISHes received on
//! upstream and presence topics and sends out the [`Outbound`] publishes it returns; the
//! broker's hooks ask the [`Gate`] who may connect, publish and subscribe. Both work on the
//! store synchronously: callers run them on blocking threads. Neither reads a clock: each
//! call takes a [`mqchat_proto::Now`] (see the engine's module documentation).

pub mod access;
mod device;
pub mod engine;
mod group;
mod push;
pub mod rate;
mod render;
pub mod sip;
pub mod throttle;

pub use access::{
    Admission, Attempt, Door, Gate, HubCredentials, Login, LoginLimits, PasswordCheck,
};
pub use engine::{ConversationKey, Engine, HubConfig, Output, Upstream};
pub use push::Push;
pub use rate::RateConfig;
pub use sip::{SipConfig, SipPeerRoute};

/// The delivery guarantee of an outbound publish: the protocol's, re-exported because it is
/// part of [`Outbound`].
pub use mqchat_proto::Qos;

/// A PUBLISH the hub wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The topic.
    pub topic: String,
    /// The CBOR payload (empty: clears a retained message).
    pub payload: Vec<u8>,
    /// Delivery guarantee.
    pub qos: Qos,
    /// The retain flag.
    pub retain: bool,
}
