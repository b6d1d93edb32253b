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

/// A user of a server, as a client command names them: `--server URL -u NAME -p PASSWORD`
/// after the command's words (`"send"`, `"group create"`).
#[allow(dead_code)] // Not every test binary uses it.
pub struct User<'a> {
    url: &'a str,
    name: &'a str,
    password: String,
}

#[allow(dead_code)] // Not every test binary uses every method.
impl<'a> User<'a> {
    /// `name` (password `{name}-pw`, as [`server_with`] makes it) on the server at `url`.
    pub fn at(url: &'a str, name: &'a str) -> Self {
        Self {
            url,
            name,
            password: format!("{name}-pw"),
        }
    }

    /// `name` with this password on the server at `url`.
    pub fn with_password(url: &'a str, name: &'a str, password: &str) -> Self {
        Self {
            url,
            name,
            password: password.to_owned(),
        }
    }

    /// The arguments of `command` (one or more words) run as this user, followed by `args`.
    pub fn args<'s>(&'s self, command: &'s str, args: &[&'s str]) -> Vec<&'s str> {
        let mut all: Vec<&str> = command.split_whitespace().collect();
        all.extend(["--server", self.url, "-u", self.name, "-p", &self.password]);
        all.extend_from_slice(args);
        all
    }

    /// Runs `command` as this user to its end: (exit code, stdout, stderr).
    pub fn run(&self, command: &str, args: &[&str]) -> (i32, String, String) {
        MQCHAT.run(&self.args(command, args), None)
    }

    /// Runs `command` as this user, as [`User::run`], with `stdin` as its input.
    pub fn run_with_input(
        &self,
        command: &str,
        args: &[&str],
        stdin: &str,
    ) -> (i32, String, String) {
        MQCHAT.run(&self.args(command, args), Some(stdin))
    }

    /// Starts `command` as this user.
    pub fn spawn(&self, command: &str, args: &[&str]) -> Process {
        MQCHAT.spawn(&self.args(command, args))
    }
}
