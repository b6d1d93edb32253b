//! `mqchat push test USER` against a local UnifiedPush distributor: each registered device's
//! provider answer is printed; a target the provider calls invalid is removed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use common::MQCHAT;
use mqchat_proto::body::PushTarget;
use mqchat_proto::{DeviceId, UserId};
use mqchat_store::{Durability, Store};

/// Answers HTTP requests with `status`, one per connection, sending (path, body) on.
fn distributor(status: u16) -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
            let _ = tx.send((path, String::from_utf8_lossy(&body).into_owned()));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (format!("http://{addr}"), rx)
}

fn setup(endpoint: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let status = MQCHAT
        .command(&[])
        .args(["user", "add", "alice", "--password", "pw", "--data-dir"])
        .arg(&data)
        .status()
        .expect("user add");
    assert!(status.success());
    let mut store = Store::open(&data.join("mqchat.db"), Durability::Normal).expect("store");
    let (alice, phone) = (
        UserId::parse("alice").expect("valid"),
        DeviceId::parse("phone").expect("valid"),
    );
    let tx = store.transaction().expect("tx");
    tx.set_push_target(
        &alice,
        &phone,
        &PushTarget::UnifiedPush {
            endpoint: format!("{endpoint}/up/alice-phone"),
        },
        false,
        1,
    )
    .expect("target");
    tx.commit().expect("commit");
    let config = dir.path().join("mqchat.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[push]\nallow_private_endpoints = true\n[push.unified_push]\nenabled = true\nallow_plain_http = true\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    (dir, config)
}

/// `mqchat push test alice` with this configuration file.
fn push_test(config: &std::path::Path) -> std::process::Output {
    MQCHAT
        .command(&["push", "test", "alice", "--config"])
        .arg(config)
        .output()
        .expect("run")
}

#[test]
fn push_test_reports_each_providers_answer() {
    let (endpoint, requests) = distributor(201);
    let (_dir, config) = setup(&endpoint);
    let out = push_test(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "alice:phone\tunified-push\tdelivered");
    let (path, body) = requests
        .recv_timeout(mqchat_testkit::WAIT)
        .expect("the push");
    assert_eq!(path, "/up/alice-phone");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["conversation"], "mqchat-test");
    assert!(
        body.get("preview").is_none(),
        "no text without opt-in: {body}"
    );
}

#[test]
fn push_test_removes_an_invalid_target_and_fails() {
    let (endpoint, _requests) = distributor(410);
    let (dir, config) = setup(&endpoint);
    let out = push_test(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("target invalid") && stdout.contains("removed"),
        "{stdout}"
    );
    let store = Store::open(&dir.path().join("data/mqchat.db"), Durability::Normal).expect("store");
    let target = store
        .push_target(
            &UserId::parse("alice").expect("valid"),
            &DeviceId::parse("phone").expect("valid"),
        )
        .expect("query");
    assert_eq!(target, None);
    // Nothing left to test: a clear error.
    let out = push_test(&config);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no device with a push target"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
