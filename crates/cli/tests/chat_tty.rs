//! `mqchat chat` in a real terminal (tmux), as a person uses it: typing is announced to the
//! peer, the sent message gets its tick, the peer's receipt and reply appear on screen.
//!
//! tmux has no event API, so the screen is polled (every 20 ms, up to a deadline) until the
//! expected text appears.

mod common;

use std::process::Command;

use common::{MQCHAT, User};
use mqchat_testkit::until_seen;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux must be installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screen_until(session: &str, needle: &str) -> String {
    until_seen(&format!("{needle:?} on the screen"), || {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if screen.contains(needle) {
            Ok(screen)
        } else {
            Err(screen)
        }
    })
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
        let (code, _, err) = MQCHAT.run(
            &["user", "add", user, "--password", pw, "--data-dir", &data],
            None,
        );
        assert_eq!(code, 0, "{err}");
    }
    let (server, banner) = MQCHAT.serve(dir.path(), &[]);
    let url = banner.url("mqtt://");
    let bob_as = User::with_password(&url, "bob", "pb");

    // Bob listens (JSON lines).
    let bob = bob_as.spawn("listen", &["--json"]);
    let bob_sees = |needle: &str| bob.line_with(needle);
    bob_sees("\"connected\"");

    // Typing notifications go only to people one has a conversation with: bob starts it.
    let (code, _, err) = bob_as.run("send", &["--device", "phone", "alice", "Are you there?"]);
    assert_eq!(code, 0, "{err}");
    bob_sees("Are you there?");

    let session = Session(format!("mqchat-test-{}", std::process::id()));
    let command = format!("{} chat --server {url} -u alice -p pa bob", MQCHAT.path());
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

    let (code, _, err) = bob_as.run("send", &["--device", "phone", "alice", "Hi Alice"]);
    assert_eq!(code, 0, "{err}");
    screen_until(&session.0, "bob: Hi Alice");
    // Alice's chat is open, so it marks the reply read: bob's listener sees it.
    let read = bob_sees("\"up-to\":3");
    assert!(read.contains("\"read\""), "{read}");

    tmux(&["send-keys", "-t", &session.0, "C-c"]);
    assert!(server.terminate().success(), "serve exits 0 on SIGTERM");
}
