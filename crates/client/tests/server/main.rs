//! The SDK against the real server (embedded broker, hub and SQLite, on port 0), one server
//! per test. Waits are for events, with a timeout; nothing sleeps to synchronise.

mod calls;
mod common;
mod connection;
mod devices;
mod groups;
mod messaging;
mod presence;
mod tls;
