//! `mqchat call` between two users through `mqchat serve` with SIP on: bob's `listen`
//! answers (or refuses) the call, alice's `call` follows it to its end, and both see the
//! call's record.

mod common;

use common::{User, server_with_config};
use mqchat_testkit::Process;

/// A server with SIP on (no gateway listeners) and these users (password `{user}-pw`), and
/// its `mqtt://` URL.
fn sip_server(dir: &tempfile::TempDir, users: &[&str]) -> (Process, String) {
    let toml = "[sip]\nenabled = true\nlisten_udp = \"off\"\nlisten_tcp = \"off\"\n";
    server_with_config(dir, users, Some(toml))
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn alice_calls_bob_who_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url) = sip_server(&dir, &["alice", "bob"]);
    let bob =
        User::at(&url, "bob").spawn("listen", &["--json", "--answer-calls", "-", "--calls", "1"]);
    bob.line_with("\"connected\"");

    let (code, out, err) =
        User::at(&url, "alice").run("call", &["bob", "--duration", "1", "--json"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let lines: Vec<serde_json::Value> = out.lines().map(json).collect();
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        ["calling", "call-ringing", "call-answered", "call-ended"],
        "{out}"
    );
    assert!(
        lines[2]["sdp"]
            .as_str()
            .is_some_and(|s| s.starts_with("v=0"))
    );
    assert_eq!(lines[3]["reason"], "hung-up");
    assert_eq!(lines[3]["local"], true);
    let call_id = lines[0]["call-id"].as_str().expect("a call id").to_owned();

    let incoming = json(&bob.line_with("\"incoming-call\""));
    assert_eq!(incoming["from"], "sip:alice@localhost");
    assert_eq!(incoming["call-id"], call_id.as_str());
    let ended = json(&bob.line_with("\"call-ended\""));
    assert_eq!(
        (ended["reason"].as_str(), ended["local"].as_bool()),
        (Some("hung-up"), Some(false))
    );
    assert_eq!(bob.wait().code(), Some(0), "listen stops after one call");

    let (code, out, err) = User::at(&url, "alice").run("history", &["bob"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(you called bob: answered on cli, 0:0"),
        "{out}"
    );
    let (_, out, _) = User::at(&url, "bob").run("history", &["alice"]);
    assert!(out.contains("(call from alice: answered on cli"), "{out}");
    // The conversation list shows the call as the last event.
    let (_, out, _) = User::at(&url, "bob").run("conversations", &[]);
    assert!(
        out.contains("alice: (call from alice: answered on cli"),
        "{out}"
    );
}

#[test]
fn a_busy_callee_fails_the_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url) = sip_server(&dir, &["alice", "bob"]);
    let bob = User::at(&url, "bob").spawn("listen", &["--reject-calls", "busy", "--calls", "1"]);
    bob.line_with("connected");
    let (code, out, err) = User::at(&url, "alice").run("call", &["bob"]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("calling bob"), "{out}");
    assert!(err.contains("the call was not answered: busy"), "{err}");
    bob.line_with("incoming call from sip:alice@localhost");
    bob.line_with("call ended: rejected as busy");
    assert_eq!(bob.wait().code(), Some(0));
}
