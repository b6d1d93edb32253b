//! The mqchat SDK: chat from Rust over MQTT (tokio and rumqttc's MQTT 5 client).
//!
//! ```no_run
//! use mqchat_client::body::Message;
//! use mqchat_client::{Client, ClientConfig, ConversationRef, DeviceId, Event, UserId};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClientConfig::new(
//!     "mqtt://127.0.0.1:1883",
//!     UserId::parse("alice")?,
//!     DeviceId::parse("phone")?,
//!     "secret",
//! )?;
//! let (client, mut events) = Client::connect(config).await?;
//! let sent = client
//!     .send(ConversationRef::parse("bob")?, Message::text("Hi"))
//!     .await?;
//! println!("stored as #{} of the conversation", sent.seq);
//! while let Some(event) = events.next().await {
//!     if let Event::Message { from, message, .. } = event {
//!         println!("{from}: {}", message.text);
//!     }
//! }
//! client.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Groups (spec section 7.11): [`Client::create_group`] makes one, and [`Client::group`]'s
//! handle ([`GroupHandle`]) invites, renames, accepts, leaves and the rest; each change
//! resolves with the event it made; [`Event::Invitation`] and [`Event::Group`]
//! tell of invitations and of every membership and profile change; messages and chat
//! states in a group are the ordinary ones with the conversation `#id`; and
//! [`Client::receipt`] says who received and read a message sent there ("read by 3 of 5").
//!
//! Calls (spec section 7.14): [`Client::call`] places one, [`Event::IncomingCall`] tells
//! of one, [`Client::answer`], [`Client::reject`] and [`Client::hangup`] do the rest, and
//! [`Event::CallRinging`], [`Event::CallAnswered`] and [`Event::CallEnded`] follow it. The
//! SDK is a SIP user agent on the device's MQTT connection; it hands SDP offers and
//! answers to the application, whose business the media is. Each call's record arrives
//! as [`Event::CallRecord`] in the conversation with the other party.
//!
//! The protocol is `docs/PROTOCOL.md`; the types of its packets come from `mqchat-proto`,
//! whose [`Registry`](mqchat_proto::Registry) is how this crate decodes what arrives: an
//! application registers its own packet types there and receives them as [`Event::Other`].
//!
//! An application with storage keeps the [`SyncState`] that [`Client::close`] returns and
//! passes it to [`ClientConfig::resume`] next time: the device then catches up from where
//! it stood, whatever the broker kept or lost meanwhile. Without it, a device's first
//! connection is its starting point, and earlier events are history
//! ([`Client::history`], [`Client::sync`]).
//!
//! Inside, the protocol logic is a sans-IO state machine (`session`): pending requests and
//! their answers, deduplication and gap filling by sequence number, markers owed,
//! subscriptions. Two tasks drive it: one owns rumqttc's event loop and only polls it
//! (`connection`), the other feeds the session commands, network events and timers
//! (`driver`).

#![deny(missing_docs)]

mod backoff;
mod call;
mod client;
mod config;
mod connection;
mod device;
mod driver;
mod error;
mod event;
mod group;
mod history;
mod presence;
mod session;
mod state;
mod sync;
mod tls;
mod ua;

pub use call::{Call, CallRecord, CallTarget, EndReason, Rejection};
pub use client::{Client, Events};
pub use config::ClientConfig;
pub use device::Device;
pub use error::Error;
pub use event::{Created, Event, Party, Sent};
pub use group::{Group, GroupHandle, GroupUpdate, Member, MemberReceipt, Receipt};
pub use history::{HistoryPage, HistoryQuery};
pub use presence::Presence;
pub use state::SyncState;
pub use sync::{Conversation, SyncPage};

/// The protocol crate, whole: every type the SDK's API takes or returns is in it, so an app
/// needs no dependency of its own on `mqchat-proto` (and no version of it to keep in step).
pub use mqchat_proto as proto;
/// The packet bodies (spec 7): `Message`, `State`, `Presence`, `Profile`, `GroupCreate`...
pub use mqchat_proto::body;
/// The identifiers and names an app uses with nearly every call.
pub use mqchat_proto::{
    ConversationRef, DeviceId, ErrorCode, GroupId, MessageId, Seq, SipAddress, Timestamp,
    TopicRoot, UserId,
};
