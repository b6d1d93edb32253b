//! SIP transactions (RFC 3261 section 17, with RFC 6026's Accepted state): the four state
//! machines, driven by `(event, now) -> actions`, and the keys that match messages to them.
//!
//! Time is a [`Duration`] since an epoch of the caller's choosing (a monotonic clock read by
//! the caller); a machine asks to be woken at [`ClientTransaction::next_timeout`] /
//! [`ServerTransaction::next_timeout`] and is then handed [`ClientEvent::Timer`] /
//! [`ServerEvent::Timer`]. Retransmissions and timeouts come out as [`Action`]s.

mod client;
mod key;
mod server;
mod timers;
mod uas;

pub use client::{ClientEvent, ClientState, ClientTransaction};
pub use key::TransactionKey;
pub use server::{ServerEvent, ServerState, ServerTransaction};
pub use timers::Timing;
pub use uas::{Retransmit, SuccessRetransmission};

use crate::message::Message;

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message to the transaction's peer (a first transmission or a
    /// retransmission).
    Send(Message),
    /// Hand this message to the transaction user: a response (client transactions) or the
    /// ACK of a 2xx (server INVITE transactions, RFC 6026).
    Deliver(Message),
    /// The transaction timed out (Timer B or F: the user acts as if a 408 had arrived; Timer
    /// H: the ACK never came).
    TimedOut,
    /// The transport reported a failure; the transaction is over.
    TransportFailed,
    /// The transaction is over: forget it.
    Terminated,
}

#[cfg(test)]
mod tests;
