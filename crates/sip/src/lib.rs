//! SIP for mqchat: messages (RFC 3261 section 7 and the section 25 grammar), URIs, the
//! headers a stateful proxy works with, a stream framer, identifier makers and the
//! transaction state machines (section 17). Sans-IO: no sockets, no clock, no OS randomness;
//! time and random values are arguments, the caller owns all IO.
//!
//! Messages keep their header fields in order and as received (names compared
//! case-insensitively, compact forms understood), so a proxy forwards what it does not
//! understand unchanged. List headers (Via, Route, Record-Route, Contact) are split into one
//! field per value so each can be pushed or popped on its own.

mod address;
mod error;
mod framer;
mod headers;
mod ids;
mod message;
mod method;
mod params;
mod scan;
mod transaction;
mod uri;
mod via;

pub use address::NameAddr;
pub use error::ParseError;
pub use framer::Framer;
pub use headers::{Header, Headers, full_name, same_name};
pub use ids::{IdGen, branch_from, call_id_from, tag_from};
pub use message::{Limits, Message, StartLine, reason_phrase};
pub use method::{CSeq, Method};
pub use params::{Param, Params};
pub use transaction::{
    Action, ClientEvent, ClientState, ClientTransaction, Retransmit, ServerEvent, ServerState,
    ServerTransaction, SuccessRetransmission, Timing, TransactionKey,
};
pub use uri::{Scheme, Uri};
pub use via::{BRANCH_MAGIC, Transport, Via};
