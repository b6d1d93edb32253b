//! The SIP gateway's logic without IO (spec section 19): SIP from peers and `sip` packets
//! from the hub go in, datagrams, stream writes and packets for the hub come out.
//!
//! This crate never reads a clock, draws OS randomness, opens a socket or a file, and has no
//! async runtime: time, the seed of its tags and branches and the secret of its nonces are
//! arguments (see `clippy.toml`). The server's `sip_gateway` module owns the sockets and the
//! MQTT client, and drives [`Core`] with them.

mod core;
mod digest;
mod peers;
mod remote;

pub use crate::core::{Core, CoreConfig, Output};
pub use peers::{Peers, SipPeer, parse_ip_block};
pub use remote::{Remote, SipTransport, parse_sip_target};
