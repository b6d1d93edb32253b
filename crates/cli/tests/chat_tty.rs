//! `mqchat chat` in a real terminal (tmux), as a person uses it: typing is announced to the
//! peer, the sent message gets its tick, the peer's receipt and reply appear on screen.
//!
//! tmux has no event API, so the screen is polled (every 50 ms, up to a deadline) until the
//! expected text appears.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mqchat");
const WAIT: Duration = Duration::from_secs(20);

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux must be installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screen_until(session: &str, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if screen.contains(needle) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a child process when the test ends, passing or failing.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[test]
fn chat_in_a_terminal_shows_typing_ticks_and_replies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_owned();
    for (user, pw) in [("alice", "pa"), ("bob", "pb")] {
        let status = Command::new(BIN)
            .args(["user", "add", user, "--password", pw, "--data-dir", &data])
            .status()
            .expect("run");
        assert!(status.success());
    }
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            &data,
            "--listen-tcp",
            "127.0.0.1:0",
            "--listen-ws",
            "off",
        ])
        .env("MQCHAT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut banner = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut banner)
        .expect("banner");
    let mut server = Guard(server);
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://"))
        .expect("url")
        .to_owned();

    // Bob listens (JSON lines on a channel).
    let mut bob = Command::new(BIN)
        .args([
            "listen", "--server", &url, "-u", "bob", "-p", "pb", "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("listen");
    let (tx, bob_lines) = mpsc::channel();
    let stdout = bob.stdout.take().expect("piped");
    let _bob = Guard(bob);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let bob_sees = |needle: &str| loop {
        let line = bob_lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("bob never saw {needle}"));
        if line.contains(needle) {
            return line;
        }
    };
    bob_sees("\"connected\"");

    // Typing notifications go only to people one has a conversation with: bob starts it.
    let first = Command::new(BIN)
        .args([
            "send",
            "--server",
            &url,
            "-u",
            "bob",
            "-p",
            "pb",
            "--device",
            "phone",
            "alice",
            "Are you there?",
        ])
        .status()
        .expect("send");
    assert!(first.success());
    bob_sees("Are you there?");

    let session = Session(format!("mqchat-test-{}", std::process::id()));
    let command = format!("{BIN} chat --server {url} -u alice -p pa bob");
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "120",
        "-y",
        "30",
        &command,
    ]);
    screen_until(&session.0, "#1 bob: Are you there?");
    screen_until(&session.0, "Enter sends");

    tmux(&["send-keys", "-t", &session.0, "Hel"]);
    let typing = bob_sees("\"chat-state\"");
    assert!(typing.contains("composing"), "{typing}");
    tmux(&["send-keys", "-t", &session.0, "lo Bob", "Enter"]);
    let message = bob_sees("\"message\"");
    assert!(message.contains("Hello Bob"), "{message}");
    screen_until(&session.0, "#2 you: Hello Bob  ✓");
    // Bob's client acknowledged delivery on its own: the double tick appears.
    screen_until(&session.0, "✓✓ bob received up to #2");

    let reply = Command::new(BIN)
        .args([
            "send", "--server", &url, "-u", "bob", "-p", "pb", "--device", "phone", "alice",
            "Hi Alice",
        ])
        .status()
        .expect("send");
    assert!(reply.success());
    screen_until(&session.0, "bob: Hi Alice");
    // Alice's chat is open, so it marks the reply read: bob's listener sees it.
    let read = bob_sees("\"up-to\":3");
    assert!(read.contains("\"read\""), "{read}");

    tmux(&["send-keys", "-t", &session.0, "C-c"]);
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    assert!(
        server.0.wait().expect("wait").success(),
        "serve exits 0 on SIGTERM"
    );
}
