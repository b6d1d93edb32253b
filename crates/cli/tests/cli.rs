//! The `mqchat` binary as a user runs it: `serve` on port 0, `user add`, `listen --json`,
//! `send`, `history`, error exits, and a clean exit on SIGTERM. Waits for printed lines,
//! never for time to pass.

mod common;

use common::{MQCHAT, User};
use mqchat_testkit::{Process, Stderr};

#[test]
fn two_users_chat_through_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    assert_eq!(
        MQCHAT
            .run(
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
        MQCHAT
            .run(
                &["user", "add", "bob", "--password-stdin", "--data-dir", data],
                Some("secret-b\n")
            )
            .0,
        0
    );
    let (code, out, _) = MQCHAT.run(&["user", "list", "--json", "--data-dir", data], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");

    let serve = MQCHAT.command(&[
        "serve",
        "--data-dir",
        data,
        "--listen-tcp",
        "127.0.0.1:0",
        "--listen-ws",
        "127.0.0.1:0",
    ]);
    let (server, banner) = MQCHAT.serve_as(serve, Stderr::Inherit);
    let url = banner.url("mqtt://");
    let alice = User::with_password(&url, "alice", "secret-a");
    let bob = User::with_password(&url, "bob", "secret-b");

    let listener = bob.spawn("listen", &["--json", "--count", "1"]);
    listener.line_with("\"connected\"");

    let (code, out, err) = alice.run("send", &["bob", "Hello", "Bob"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "sent to bob as #1");

    let line = listener.line_with("\"message\"");
    let event: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(event["text"], "Hello Bob");
    assert_eq!(event["from"], "alice");
    assert_eq!(event["seq"], 1);

    let (code, out, _) = bob.run("history", &["alice"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "#1 alice: Hello Bob");

    // Errors: one line, and an exit code that says which.
    let (code, _, err) = User::with_password(&url, "alice", "wrong").run("send", &["bob", "x"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = alice.run("send", &["nobody", "x"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("no-such-user"), "{err}");

    assert!(server.terminate().success(), "serve exits 0 on SIGTERM");
    let (code, _, err) = alice.run("send", &["bob", "x"]);
    assert_eq!(code, 4, "server unreachable: {err}");
}

#[test]
fn a_user_lists_and_revokes_devices() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let (code, _, err) = MQCHAT.run(
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
    let (server, banner) = MQCHAT.serve(dir.path(), &[]);
    let url = banner.url("mqtt://");
    let alice = User::with_password(&url, "alice", "secret-a");
    // The old laptop signed in once.
    let (code, _, err) = alice.run("send", &["--device", "laptop", "alice", "note to self"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = alice.run("devices", &["--device", "phone"]);
    assert_eq!(code, 0, "{err}");
    let listed: Vec<&str> = out.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(listed, ["laptop", "phone"], "{out}");
    let (code, out, err) = alice.run("devices", &["--device", "phone", "--revoke", "laptop"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("revoked laptop\nphone\t"), "{out}");
    // The laptop cannot sign in any more (exit code 3: refused credentials).
    let (code, _, err) = alice.run("send", &["--device", "laptop", "alice", "x"]);
    assert_eq!(code, 3, "{err}");
    assert!(server.terminate().success());
}

#[test]
fn a_second_server_on_one_data_directory_is_refused_and_admin_commands_still_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let (server, _banner) = MQCHAT.serve(dir.path(), &[]);

    let (error, err) = refused_start(dir.path());
    assert!(
        error.contains("in use by another mqchat server")
            && error.contains(&format!("mqchat serve, process {}", server.id())),
        "{err}"
    );
    let mut hub = MQCHAT.command(&["hub", "--data-dir", data, "--broker", "mqtt://127.0.0.1:1"]);
    hub.env("MQCHAT_BROKER_PASSWORD", "a hub secret");
    let (code, _, err) = mqchat_testkit::output(hub, None);
    assert_ne!(code, 0);
    assert!(err.contains("in use by another mqchat server"), "{err}");

    // Admin commands write beside the running server.
    MQCHAT.add_users(dir.path(), &["dora"]);
    assert!(server.terminate().success());
    // Once it is gone, the directory is free again.
    let (server, _banner) = MQCHAT.serve(dir.path(), &[]);
    assert!(server.terminate().success());
}

/// Runs `mqchat serve` on `dir`, which must refuse to start: (its one `error:` line, all of
/// its stderr).
fn refused_start(dir: &std::path::Path) -> (String, String) {
    let (code, out, err) = mqchat_testkit::output(MQCHAT.serve_command(dir, &[]), None);
    assert_ne!(code, 0, "{out}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one line: {err}");
    (errors[0].to_owned(), err)
}

/// `mqchat serve` on `dir` at log level info, its log lines read by the test.
fn serve_logged(dir: &std::path::Path) -> Process {
    let mut command = MQCHAT.serve_command(dir, &[]);
    command.env("MQCHAT_LOG", "info");
    Process::start("mqchat serve", command, Stderr::Lines)
}

#[test]
fn after_a_crash_the_database_is_checked_and_a_damaged_one_refused() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    MQCHAT.add_users(dir.path(), &["alice", "bob"]);

    // Killed: the next start checks the database, finds it sound and serves.
    let mut server = serve_logged(dir.path());
    server.line_with("mqchat listening:");
    server.kill();
    let mut server = serve_logged(dir.path());
    server.line_with("did not stop cleanly: checking the database");
    server.line_with("the database is sound");
    server.line_with("mqchat listening:");
    server.kill();

    // Killed again, and pages of the database overwritten: refused, in one line.
    let path = dir.path().join("mqchat.db");
    let size = std::fs::metadata(&path).expect("size").len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.seek(SeekFrom::Start(4096)).expect("seek");
    let garbage = vec![0xA5; usize::try_from(size - 4096).expect("size")];
    file.write_all(&garbage).expect("overwrite");
    drop(file);
    let (error, err) = refused_start(dir.path());
    assert!(
        error.contains("mqchat.db is damaged") && error.contains("backup"),
        "{err}"
    );
    assert_eq!(error.matches("is damaged").count(), 1, "said once: {err}");
}

#[test]
fn a_database_that_lost_stored_events_is_refused_until_the_loss_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    MQCHAT.add_users(dir.path(), &["alice", "bob"]);
    let send = |url: &str, text: &str| {
        let (code, out, err) = User::at(url, "alice").run("send", &["bob", text]);
        assert_eq!(code, 0, "{err}");
        out.trim().to_owned()
    };
    let (server, banner) = MQCHAT.serve(dir.path(), &[]);
    for n in 1..=3 {
        assert_eq!(
            send(&banner.url("mqtt://"), "early"),
            format!("sent to bob as #{n}")
        );
    }
    assert!(server.terminate().success());
    let db = dir.path().join("mqchat.db");
    let older = std::fs::read(&db).expect("an older copy");
    let (server, banner) = MQCHAT.serve(dir.path(), &[]);
    for n in 4..=5 {
        assert_eq!(
            send(&banner.url("mqtt://"), "later"),
            format!("sent to bob as #{n}")
        );
    }
    assert!(server.terminate().success());

    // The older copy put back: #4 and #5 are gone, and would be numbered again.
    std::fs::write(&db, older).expect("put the older copy back");
    let (error, err) = refused_start(dir.path());
    assert!(
        error.contains("lacks the last 2 events") && error.contains("accept-loss"),
        "{err}"
    );

    let (code, out, err) = MQCHAT.run(&["store", "accept-loss", "--data-dir", data], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accepted the loss of 2 events"), "{out}");
    let (server, banner) = MQCHAT.serve(dir.path(), &[]);
    assert_eq!(send(&banner.url("mqtt://"), "after"), "sent to bob as #6");
    assert!(server.terminate().success());
}
