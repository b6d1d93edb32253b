//! Fault tolerance, end to end (issue 5): a real broker and a real database, devices on the
//! SDK, and faults of the network, the broker, the hub process and the devices themselves.
//! Every scenario ends by checking the final view of every device against what the hub
//! accepted: each conversation complete, each message once, in sequence order.
//!
//! Waits are for events, with a timeout; nothing sleeps to synchronise. The suite lives with
//! the `mqchat` crate because the crash scenario runs the binary cargo builds for its tests.

mod process;
mod proxy;
mod view;

mod crash;
mod csi;
mod devices;
mod disconnect;
mod offline;
