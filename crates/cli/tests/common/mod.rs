//! Running the built `mqchat` binary: one-shot commands, and long-running ones whose
//! output lines are read as they come.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_mqchat");
pub const WAIT: Duration = Duration::from_secs(20);

/// A child process whose stdout lines arrive on a channel; killed when dropped.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env("MQCHAT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mqchat");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line containing `needle`.
    pub fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no line with {needle:?} in time"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the process to end by itself; its exit code.
    #[allow(dead_code)] // Not every test binary waits for one to end.
    pub fn wait(mut self) -> i32 {
        self.child.wait().expect("wait").code().unwrap_or(-1)
    }
}

impl Drop for Running {
    /// A failing test must not leave processes behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mqchat args` to its end: (exit code, stdout, stderr).
pub fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("MQCHAT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mqchat");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("run mqchat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server on a fresh data directory with these users (password: `{user}-pw`), and its
/// `mqtt://` URL.
#[allow(dead_code)] // Not every test binary uses both.
pub fn server_with(dir: &tempfile::TempDir, users: &[&str]) -> (Running, String) {
    server_with_config(dir, users, None)
}

/// [`server_with`], with `toml` as its configuration file when given.
pub fn server_with_config(
    dir: &tempfile::TempDir,
    users: &[&str],
    toml: Option<&str>,
) -> (Running, String) {
    let data = dir.path().to_str().expect("utf-8 path");
    for user in users {
        let (code, _, err) = run(
            &["user", "add", user, "--password-stdin", "--data-dir", data],
            Some(&format!("{user}-pw\n")),
        );
        assert_eq!(code, 0, "{err}");
    }
    let config = dir.path().join("mqchat.toml");
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec![
        "serve",
        "--data-dir",
        data,
        "--listen-tcp",
        "127.0.0.1:0",
        "--listen-ws",
        "off",
    ];
    if let Some(toml) = toml {
        std::fs::write(config, toml).expect("write the configuration");
        args.extend(["--config", config]);
    }
    let server = Running::spawn(&args);
    let banner = server.line_with("mqchat listening:");
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://"))
        .expect("tcp url")
        .to_owned();
    (server, url)
}
