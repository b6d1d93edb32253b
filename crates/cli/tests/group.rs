//! `mqchat group` as a user runs it: create a group with invitations, accept them, chat in
//! it with `send`, `listen` and `history`, list members and groups, and a refused action.

mod common;

use common::{User, server_with};

fn ok(result: (i32, String, String)) -> String {
    let (code, out, err) = result;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn create_invite_chat_and_list_members() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url) = server_with(&dir, &["alice", "bob", "carol"]);

    let (alice, bob, carol) = (
        User::at(&url, "alice"),
        User::at(&url, "bob"),
        User::at(&url, "carol"),
    );
    let bob_listens = bob.spawn("listen", &["--json", "--count", "1"]);
    bob_listens.line_with("\"connected\"");

    let created = ok(alice.run(
        "group create",
        &["Crew", "--invite", "bob", "carol", "--json"],
    ));
    let created: serde_json::Value = serde_json::from_str(created.trim()).expect("JSON");
    let group = created["conv"].as_str().expect("the group").to_owned();
    assert!(group.starts_with('#'), "{group}");

    let invitation = bob_listens.line_with("\"invitation\"");
    let invitation: serde_json::Value = serde_json::from_str(&invitation).expect("JSON");
    assert_eq!(
        (
            invitation["conv"].as_str(),
            invitation["by"].as_str(),
            invitation["name"].as_str()
        ),
        (Some(group.as_str()), Some("alice"), Some("Crew"))
    );

    let out = ok(bob.run("group accept", &[&group]));
    assert_eq!(out.trim(), format!("joined {group}"));
    // The group may be named without its #.
    ok(carol.run("group accept", &[&group[1..]]));
    let out = ok(alice.run("group promote", &[&group, "bob"]));
    assert_eq!(out.trim(), format!("promoted bob in {group}"));
    ok(bob.run("group rename", &[&group, "Climbing crew"]));

    let out = ok(alice.run("send", &[&group, "hello", "crew"]));
    assert!(out.starts_with(&format!("sent to {group} as #")), "{out}");
    let message = bob_listens.line_with("\"message\"");
    let message: serde_json::Value = serde_json::from_str(&message).expect("JSON");
    assert_eq!(
        (
            message["conv"].as_str(),
            message["from"].as_str(),
            message["text"].as_str()
        ),
        (Some(group.as_str()), Some("alice"), Some("hello crew"))
    );
    assert_eq!(bob_listens.wait().code(), Some(0));

    let members = ok(carol.run("group members", &[&group]));
    assert_eq!(
        members.lines().collect::<Vec<_>>(),
        [
            format!("{group} Climbing crew (3 members)").as_str(),
            "alice owner",
            "bob admin",
            "carol member"
        ]
    );
    let list = ok(bob.run("group list", &[]));
    assert_eq!(list.trim(), format!("{group} Climbing crew (3 members)"));

    // carol's history starts at her joining.
    let history = ok(carol.run("history", &[&group]));
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].ends_with("(carol joined)"), "{history}");
    assert!(
        lines.iter().any(|l| l.ends_with("(alice made bob admin)")),
        "{history}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("(bob renamed the group to \"Climbing crew\")")),
        "{history}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("alice: hello crew")),
        "{history}"
    );

    // A member may not remove anyone: exit code 5, one line saying why.
    let (code, _, err) = carol.run("group kick", &[&group, "bob"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("forbidden"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
