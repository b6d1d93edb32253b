//! What the SDK's tests share: the test kit's, and a client on a runtime of its own.

use mqchat_client::{Client, ClientConfig, Events};
pub use mqchat_testkit::sdk::*;
pub use mqchat_testkit::{Relay, TestServer, WAIT};

/// Runs a client on a runtime of its own, which the test can shut down to drop the
/// connection abruptly, as a crashed app or a lost network would.
pub struct Abrupt {
    runtime: tokio::runtime::Runtime,
}

impl Abrupt {
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        Ok(Self { runtime })
    }

    pub async fn connect(&self, config: ClientConfig) -> anyhow::Result<(Client, Events)> {
        Ok(self.runtime.spawn(Client::connect(config)).await??)
    }

    /// Stops the client's tasks without a DISCONNECT: the broker sees the socket close.
    pub fn kill(self) {
        self.runtime.shutdown_background();
    }
}
