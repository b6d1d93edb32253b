//! A server for tests: embedded broker, hub and SQLite in a temporary directory, listeners
//! on 127.0.0.1 port 0, started in the test's process through `Server::start`.

use std::time::{SystemTime, UNIX_EPOCH};

use mqchat_proto::{DeviceId, TopicRoot, UserId};
use mqchat_server::Server;
use mqchat_server::config::{self, ServerConfig};
use mqchat_store::{Durability, Store};

/// The current time in milliseconds since the Unix epoch, as the server stamps its writes.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A running test server. Stop it with [`TestServer::stop`]; dropping it leaves the tasks
/// to end with the test's runtime.
#[derive(Debug)]
pub struct TestServer {
    server: Server,
    config: ServerConfig,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on fresh storage.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on the storage in `dir` (to test restarts).
    pub async fn start_in(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        Self::start_in_with(dir, |_| {}).await
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn mqtt_url(&self) -> String {
        self.server
            .tcp_addr()
            .map(|a| format!("mqtt://{a}"))
            .unwrap_or_default()
    }

    /// `mqtts://127.0.0.1:PORT` (with `listen_tls` set).
    pub fn mqtts_url(&self) -> String {
        self.server
            .tls_addr()
            .map(|a| format!("mqtts://{a}"))
            .unwrap_or_default()
    }

    /// `wss://127.0.0.1:PORT/mqtt` (with `listen_wss` set).
    pub fn wss_url(&self) -> String {
        self.server
            .wss_addr()
            .map(|a| format!("wss://{a}/mqtt"))
            .unwrap_or_default()
    }

    /// The server (for what the test server does not wrap: a TLS reload, say).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// `ws://127.0.0.1:PORT/mqtt`.
    pub fn ws_url(&self) -> String {
        self.server
            .ws_addr()
            .map(|a| format!("ws://{a}/mqtt"))
            .unwrap_or_default()
    }

    /// The TCP address.
    pub fn tcp_addr(&self) -> std::net::SocketAddr {
        self.server
            .tcp_addr()
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into())
    }

    /// The topic root.
    pub fn root(&self) -> &TopicRoot {
        self.server.root()
    }

    /// The SIP gateway's UDP address (when `[sip]` is enabled).
    pub fn sip_udp_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.sip_udp_addr()
    }

    /// The SIP gateway's TCP address (when `[sip]` is enabled).
    pub fn sip_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.sip_tcp_addr()
    }

    fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.config.database(), Durability::Normal)?)
    }

    /// Creates a user with a password.
    pub fn add_user(&self, user: &str, password: &str) -> anyhow::Result<()> {
        self.store()?
            .add_user(&UserId::parse(user)?, Some(password), now_ms())?;
        Ok(())
    }

    /// Registers a device and returns its token.
    pub fn add_device_token(&self, user: &str, device: &str) -> anyhow::Result<String> {
        Ok(self
            .store()?
            .add_device(&UserId::parse(user)?, &DeviceId::parse(device)?, now_ms())?)
    }

    /// How many passwords the server has verified.
    pub fn password_checks(&self) -> u64 {
        self.server.password_checks()
    }

    /// The loopback listener for the server's own clients.
    pub fn internal_addr(&self) -> std::net::SocketAddr {
        self.server.internal_addr()
    }

    /// What `mqchat user disable` does: through its own connection to the store, as the
    /// CLI in another process would.
    pub fn disable_user(&self, user: &str) -> anyhow::Result<()> {
        self.store()?
            .set_disabled(&UserId::parse(user)?, true, now_ms())?;
        Ok(())
    }

    /// What `mqchat user delete` does.
    pub fn delete_user(&self, user: &str) -> anyhow::Result<()> {
        self.store()?.delete_user(&UserId::parse(user)?, now_ms())?;
        Ok(())
    }

    /// What `mqchat user passwd` does.
    pub fn set_password(&self, user: &str, password: &str) -> anyhow::Result<()> {
        self.store()?
            .set_password(&UserId::parse(user)?, Some(password), now_ms())?;
        Ok(())
    }

    /// What `mqchat device revoke` does (the server learns of it from the store).
    pub fn revoke_device_in_store(&self, user: &str, device: &str) -> anyhow::Result<()> {
        self.store()?
            .revoke_device(&UserId::parse(user)?, &DeviceId::parse(device)?, now_ms())?;
        Ok(())
    }

    /// Revokes a device and closes its connection.
    pub async fn revoke_device(&self, user: &str, device: &str) -> anyhow::Result<()> {
        self.store()?
            .revoke_device(&UserId::parse(user)?, &DeviceId::parse(device)?, now_ms())?;
        self.server.kick(&format!("{user}:{device}")).await;
        Ok(())
    }

    /// Stops the server, keeping its storage for [`TestServer::start_in`].
    pub async fn stop_keep(self) -> tempfile::TempDir {
        self.server.shutdown().await;
        self._dir
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }

    /// Starts a server on fresh storage with settings adjusted by `adjust` (a small broker
    /// queue, say); the storage and listeners are the test server's whatever it sets.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Self> {
        Self::start_in_with(tempfile::tempdir()?, adjust).await
    }

    /// [`TestServer::start_with`] on the storage in `dir` (to test restarts).
    pub async fn start_in_with(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> anyhow::Result<Self> {
        let mut config = ServerConfig::default();
        adjust(&mut config);
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            listen_tcp: Some(([127, 0, 0, 1], 0).into()),
            listen_ws: Some(([127, 0, 0, 1], 0).into()),
            durability: config::Durability::Normal,
            ..config
        };
        let server = Server::start(&config).await?;
        Ok(Self {
            server,
            config,
            _dir: dir,
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
}
