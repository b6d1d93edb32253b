//! What mqchat's tests share, and only tests use (a dev-dependency, never published): a
//! server in the test's process ([`TestServer`]), the `mqchat` binary as a child process
//! ([`Mqchat`], [`Process`]), a TCP relay the test holds the address of ([`Relay`]), a port
//! held for a server that cannot bind port 0 ([`ReservedPort`]), test certificates
//! ([`TestCa`]), the SDK helpers ([`sdk`]), and waiting for an event with one deadline,
//! [`WAIT`].
//!
//! Nothing here picks a port and releases it for another process: servers bind port 0 and
//! report the port they got, a restarted server is reached through a [`Relay`] that keeps
//! its address, and a server that cannot bind port 0 binds a [`ReservedPort`] the test
//! holds.

mod ca;
mod port;
mod process;
mod relay;
pub mod sdk;
mod server;

use std::future::Future;
use std::time::{Duration, Instant};

pub use ca::{TestCa, TestCert};
pub use port::ReservedPort;
pub use process::{Banner, Mqchat, Process, Stderr, output};
pub use relay::Relay;
pub use server::TestServer;

/// How long a test waits for anything it expects (a line, an event, a packet, a process's
/// end) before it fails. Generous, because two cores run many test binaries at once; a
/// passing test never waits it out.
pub const WAIT: Duration = Duration::from_secs(20);

/// Sends the logs of what runs in the test's process to the test's output, filtered by
/// `RUST_LOG` (nothing without it). Once per process; later calls do nothing.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Awaits `future` for at most [`WAIT`]; panics naming `what` when the time is up.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(found) => found,
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

/// Asks `poll` until it returns something, for at most [`WAIT`]; panics naming `what` when
/// the time is up. For what has no event to wait on (a terminal's screen, a process that
/// has not exited, a port that does not listen yet): it asks every 20 ms.
pub fn until<T>(what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
    until_seen(what, || poll().ok_or_else(String::new))
}

/// [`until`], where `poll` tells what it saw instead; the failure shows the last of it.
pub fn until_seen<T>(what: &str, mut poll: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match poll() {
            Ok(found) => return found,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "no {what} within {WAIT:?}; last seen:\n{seen}"
            ),
        }
        // Polling, not a synchronisation: the next ask decides.
        std::thread::sleep(Duration::from_millis(20));
    }
}
