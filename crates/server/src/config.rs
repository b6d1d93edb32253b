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
    /// Archive retention: remove events older than this many days (absent: keep).
    pub retention_days: Option<u64>,
    /// Archive retention: keep at most this many of the newest events per conversation
    /// (absent: keep all).
    pub retention_max_events: Option<u64>,
    /// How often the hub applies retention, in seconds (also once at start).
    pub retention_interval_secs: u64,
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
            retention_days: None,
            retention_max_events: None,
            retention_interval_secs: 3600,
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

    /// The archive retention policy these settings ask for.
    pub fn retention(&self) -> Result<mqchat_store::RetentionPolicy, String> {
        if self.retention_days == Some(0) {
            return Err(
                "retention_days must be at least 1 (leave it out to keep everything)".into(),
            );
        }
        if self.retention_max_events == Some(0) {
            return Err(
                "retention_max_events must be at least 1 (leave it out to keep everything)".into(),
            );
        }
        if self.retention_interval_secs == 0 {
            return Err("retention_interval_secs must be at least 1".into());
        }
        Ok(mqchat_store::RetentionPolicy {
            max_age_ms: self.retention_days.map(|d| d.saturating_mul(86_400_000)),
            max_events: self.retention_max_events,
        })
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

    #[test]
    fn retention_settings() {
        let none = ServerConfig::default().retention().expect("valid");
        assert!(!none.is_active());
        let c = ServerConfig::from_toml("retention_days = 30\nretention_max_events = 1000")
            .expect("valid");
        let policy = c.retention().expect("valid");
        assert_eq!(policy.max_age_ms, Some(30 * 86_400_000));
        assert_eq!(policy.max_events, Some(1000));
        let zero = ServerConfig::from_toml("retention_days = 0").expect("parses");
        assert!(zero.retention().is_err());
    }
}
