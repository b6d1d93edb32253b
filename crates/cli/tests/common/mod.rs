//! What the CLI's tests share beyond the test kit: the binary cargo built for them, and a
//! server of it with users.

use mqchat_testkit::{Mqchat, Process};

/// The `mqchat` binary of the current code (cargo builds it before this crate's tests).
pub const MQCHAT: Mqchat = Mqchat::at(env!("CARGO_BIN_EXE_mqchat"));

/// A server on a fresh data directory with these users (password: `{user}-pw`), and its
/// `mqtt://` URL.
#[allow(dead_code)] // Not every test binary uses both.
pub fn server_with(dir: &tempfile::TempDir, users: &[&str]) -> (Process, String) {
    server_with_config(dir, users, None)
}

/// [`server_with`], with `toml` as its configuration file when given.
#[allow(dead_code)] // Not every test binary uses both.
pub fn server_with_config(
    dir: &tempfile::TempDir,
    users: &[&str],
    toml: Option<&str>,
) -> (Process, String) {
    MQCHAT.add_users(dir.path(), users);
    let config = dir.path().join("mqchat.toml");
    let config = config.to_str().expect("utf-8 path");
    let mut args = Vec::new();
    if let Some(toml) = toml {
        std::fs::write(config, toml).expect("write the configuration");
        args.extend(["--config", config]);
    }
    let (server, banner) = MQCHAT.serve(dir.path(), &args);
    (server, banner.url("mqtt://"))
}
