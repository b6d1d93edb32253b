//! The `mqchat` binary as a user runs it: `serve` on port 0, `user add`, `listen --json`,
//! `send`, `history`, error exits, and a clean exit on SIGTERM. Waits for printed lines,
//! never for time to pass.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mqchat");
const WAIT: Duration = Duration::from_secs(20);

/// A child process whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env("MQCHAT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mqchat");
        let stdout: ChildStdout = child.stdout.take().expect("piped");
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
    fn line_with(&self, needle: &str) -> String {
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

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Running {
    /// A failing test must not leave servers behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("MQCHAT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mqchat");
    if let Some(input) = stdin {
        use std::io::Write;
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

#[test]
fn two_users_chat_through_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    assert_eq!(
        run(
            &[
                "user",
                "add",
                "alice",
                "--password-stdin",
                "--data-dir",
                data
            ],
            Some("secret-a\n")
        )
        .0,
        0
    );
    assert_eq!(
        run(
            &["user", "add", "bob", "--password-stdin", "--data-dir", data],
            Some("secret-b\n")
        )
        .0,
        0
    );
    let (code, out, _) = run(&["user", "list", "--json", "--data-dir", data], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");

    let server = Running::spawn(&[
        "serve",
        "--data-dir",
        data,
        "--listen-tcp",
        "127.0.0.1:0",
        "--listen-ws",
        "127.0.0.1:0",
    ]);
    let banner = server.line_with("mqchat listening:");
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://"))
        .expect("tcp url")
        .to_owned();

    let listener = Running::spawn(&[
        "listen", "--server", &url, "-u", "bob", "-p", "secret-b", "--json", "--count", "1",
    ]);
    listener.line_with("\"connected\"");

    let (code, out, err) = run(
        &[
            "send", "--server", &url, "-u", "alice", "-p", "secret-a", "bob", "Hello", "Bob",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "sent to bob as #1");

    let line = listener.line_with("\"message\"");
    let event: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(event["text"], "Hello Bob");
    assert_eq!(event["from"], "alice");
    assert_eq!(event["seq"], 1);

    let (code, out, _) = run(
        &[
            "history", "--server", &url, "-u", "bob", "-p", "secret-b", "alice",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "#1 alice: Hello Bob");

    // Errors: one line, and an exit code that says which.
    let (code, _, err) = run(
        &[
            "send", "--server", &url, "-u", "alice", "-p", "wrong", "bob", "x",
        ],
        None,
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = run(
        &[
            "send", "--server", &url, "-u", "alice", "-p", "secret-a", "nobody", "x",
        ],
        None,
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("no-such-user"), "{err}");

    assert!(server.terminate().success(), "serve exits 0 on SIGTERM");
    let (code, _, err) = run(
        &[
            "send", "--server", &url, "-u", "alice", "-p", "secret-a", "bob", "x",
        ],
        None,
    );
    assert_eq!(code, 4, "server unreachable: {err}");
}

#[test]
fn a_user_lists_and_revokes_devices() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let (code, _, err) = run(
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--data-dir",
            data,
        ],
        Some("secret-a\n"),
    );
    assert_eq!(code, 0, "{err}");
    let server = Running::spawn(&[
        "serve",
        "--data-dir",
        data,
        "--listen-tcp",
        "127.0.0.1:0",
        "--listen-ws",
        "off",
    ]);
    let banner = server.line_with("mqchat listening:");
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://"))
        .expect("tcp url")
        .to_owned();
    let login = ["--server", &url, "-u", "alice", "-p", "secret-a"];
    // The old laptop signed in once.
    let (code, _, err) = run(
        &[
            &["send"][..],
            &login,
            &["--device", "laptop", "alice", "note to self"],
        ]
        .concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(
        &[&["devices"][..], &login, &["--device", "phone"]].concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let listed: Vec<&str> = out.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(listed, ["laptop", "phone"], "{out}");
    let (code, out, err) = run(
        &[
            &["devices"][..],
            &login,
            &["--device", "phone", "--revoke", "laptop"],
        ]
        .concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("revoked laptop\nphone\t"), "{out}");
    // The laptop cannot sign in any more (exit code 3: refused credentials).
    let (code, _, err) = run(
        &[&["send"][..], &login, &["--device", "laptop", "alice", "x"]].concat(),
        None,
    );
    assert_eq!(code, 3, "{err}");
    assert!(server.terminate().success());
}
