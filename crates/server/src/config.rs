//! Server settings: what `mqchat serve` reads from its TOML file, environment and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Everything `mqchat serve` can be told. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// The topic root.
    pub root: String,
    /// MQTT over TCP for devices; empty to disable.
    pub listen_tcp: Option<SocketAddr>,
    /// MQTT over WebSocket for devices; empty to disable.
    pub listen_ws: Option<SocketAddr>,
    /// The largest upstream payload the hub accepts, in bytes.
    pub max_payload: usize,
    /// Messages the broker queues for one offline session.
    pub max_queue: usize,
    /// How long the broker keeps a disconnected device's session, in seconds.
    pub session_expiry_secs: u64,
    /// `full` (every commit synced to disk) or `normal` (survives a process crash only).
    pub durability: Durability,
    /// The most members (and invited users) of one group.
    pub max_group_members: usize,
}

/// The store's durability setting.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Synced before acknowledged.
    #[default]
    Full,
    /// Survives a process crash, not a power loss.
    Normal,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("mqchat-data"),
            root: mqchat_proto::TopicRoot::DEFAULT.to_owned(),
            listen_tcp: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            listen_ws: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            max_payload: 65_536,
            max_queue: 1000,
            session_expiry_secs: 7 * 24 * 3600,
            durability: Durability::Full,
            max_group_members: 1000,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; keys not given keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, toml_error::Error> {
        toml_error::parse(text)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("mqchat.db")
    }
}

/// TOML parsing, kept behind a small module so the error type stays ours.
pub mod toml_error {
    /// A configuration file that does not parse.
    #[derive(Debug, thiserror::Error)]
    #[error("configuration: {0}")]
    pub struct Error(String);

    pub(super) fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
        toml::from_str(text).map_err(|e| Error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let c = ServerConfig::from_toml(
            "root = \"acme\"\nlisten_ws = \"127.0.0.1:0\"\ndurability = \"normal\"",
        )
        .expect("valid");
        assert_eq!(c.root, "acme");
        assert_eq!(c.listen_ws, Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.max_payload, 65_536);
        assert!(ServerConfig::from_toml("nonsense = 1").is_err());
    }
}
