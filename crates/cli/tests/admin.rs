//! Administration while `mqchat serve` runs (issue 15): `mqchat user disable|passwd` and
//! `mqchat device revoke`, run as their own processes on the data directory, end the live
//! sessions they concern within moments; the devices' clients see the refusal when they
//! reconnect (`mqchat listen` reports it and keeps trying, as a phone would).

mod common;

use common::{MQCHAT, User, server_with};
use mqchat_testkit::Process;

/// Waits until `listener` reports that it lost its connection and that the server refused
/// it when it came back.
fn ended(listener: &Process) {
    listener.line_with("\"disconnected\"");
    listener.line_with("\"refused\"");
}

fn listen(url: &str, user: &str, device: &str, secret: &str) -> Process {
    let listener =
        User::with_password(url, user, secret).spawn("listen", &["--device", device, "--json"]);
    listener.line_with("\"connected\"");
    listener
}

#[test]
fn disable_passwd_and_revoke_end_live_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let (_server, url) = server_with(&dir, &["alice", "bob", "carol"]);

    // Disabling bob ends both of his sessions.
    let phone = listen(&url, "bob", "phone", "bob-pw");
    let laptop = listen(&url, "bob", "laptop", "bob-pw");
    let (code, _, err) = MQCHAT.run(&["user", "disable", "bob", "--data-dir", data], None);
    assert_eq!(code, 0, "{err}");
    ended(&phone);
    ended(&laptop);

    // A new password ends alice's password session; her tablet with its token stays.
    let (code, token, err) = MQCHAT.run(
        &["device", "add", "alice", "tablet", "--data-dir", data],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let token = token
        .split_whitespace()
        .find(|w| w.starts_with("mqt_"))
        .expect("a token")
        .to_owned();
    let with_password = listen(&url, "alice", "phone", "alice-pw");
    let with_token = listen(&url, "alice", "tablet", &token);
    let (code, _, err) = MQCHAT.run(
        &["user", "passwd", "alice", "--data-dir", data],
        Some("a new secret\n"),
    );
    assert_eq!(code, 0, "{err}");
    ended(&with_password);
    // The token session still receives: carol writes to alice.
    let (code, _, err) = User::at(&url, "carol").run("send", &["alice", "still", "here"]);
    assert_eq!(code, 0, "{err}");
    with_token.line_with("still here");

    // Revoking the tablet ends it.
    let (code, _, err) = MQCHAT.run(
        &["device", "revoke", "alice", "tablet", "--data-dir", data],
        None,
    );
    assert_eq!(code, 0, "{err}");
    ended(&with_token);
}
