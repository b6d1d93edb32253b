//! APNs against a local HTTP/2 server that checks the provider token (ES256 signature with
//! the team key's public key, `kid`, `iss`, `iat`), the required headers and the body, and
//! answers with each documented status.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Captured, Reply, TestServer, es256_verifies, open_jwt, unix_now};
use mqchat_push::{
    ApnsConfig, ApnsEnvironment, Notification, Outcome, PushConfig, Senders, Target,
};
use p256::SecretKey;
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
use serde_json::json;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "com.example.chat";

fn reason(status: u16, reason: &str) -> Reply {
    Reply::new(status, json!({"reason": reason}).to_string())
}

/// Answers by device token, as APNs would for each case.
fn answer(request: &Captured) -> Reply {
    let token = request.uri.path().rsplit('/').next().unwrap_or_default();
    match token {
        "aa01" => Reply::new(200, "").header("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E9B2F"),
        "aa02" => Reply::new(
            410,
            json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64}).to_string(),
        ),
        "aa03" => reason(400, "BadDeviceToken"),
        "aa04" => reason(429, "TooManyProviderTokenUpdates").header("retry-after", "12"),
        "aa05" => reason(500, "InternalServerError"),
        "aa06" => reason(503, "ServiceUnavailable"),
        "aa07" => reason(400, "TopicDisallowed"),
        "aa08" => reason(403, "ExpiredProviderToken"),
        "aa09" => reason(403, "InvalidProviderToken"),
        _ => reason(400, "BadPath"),
    }
}

struct Setup {
    server: TestServer,
    senders: Senders,
    public_key: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let server = TestServer::start(answer).await;
    let secret = SecretKey::try_generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(format!("AuthKey_{KEY_ID}.p8"));
    std::fs::write(
        &key,
        secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let port = server.addr.port();
    let config = PushConfig {
        apns: Some(ApnsConfig {
            key,
            key_id: KEY_ID.into(),
            team_id: TEAM_ID.into(),
            topic: TOPIC.into(),
            environment: ApnsEnvironment::Production,
            // Two names for the one server, to tell the environments apart.
            production_url: format!("https://127.0.0.1:{port}"),
            sandbox_url: format!("https://localhost:{port}/"),
        }),
        ttl_secs: 3600,
        extra_ca_file: Some(server.ca_file.clone()),
        ..PushConfig::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    Setup {
        server,
        senders,
        public_key: secret.public_key().to_sec1_bytes().to_vec(),
        _dir: dir,
    }
}

fn target(token: &str) -> Target {
    Target::Apns {
        token: token.into(),
        topic: None,
        environment: ApnsEnvironment::Production,
    }
}

/// Checks what every APNs request must carry; returns the provider token.
fn check_request(request: &Captured, public_key: &[u8]) -> String {
    assert_eq!(
        request.version,
        http::Version::HTTP_2,
        "APNs speaks HTTP/2 only"
    );
    assert_eq!(request.method, http::Method::POST);
    assert!(request.uri.path().starts_with("/3/device/"));
    let token = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("bearer "))
        .expect("bearer provider token")
        .to_owned();
    let (header, claims) = open_jwt(&token, |input, signature| {
        es256_verifies(public_key, input, signature)
    });
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], KEY_ID);
    assert_eq!(claims["iss"], TEAM_ID);
    assert!(claims["iat"].as_u64().unwrap().abs_diff(unix_now()) < 60);
    let expiration: u64 = request.header("apns-expiration").unwrap().parse().unwrap();
    assert!(expiration.abs_diff(unix_now() + 3600) < 60);
    assert!(request.json()["aps"].is_object());
    token
}

#[tokio::test]
async fn background_and_alert_pushes() {
    let mut setup = setup().await;
    let notification = Notification::new("alice", 8).with_preview("on my way");

    let outcome = setup
        .senders
        .send(&target("aa01"), false, &notification)
        .await;
    assert_eq!(outcome, Outcome::Delivered);
    let request = setup.server.next_request().await;
    let first = check_request(&request, &setup.public_key);
    assert_eq!(request.uri.path(), "/3/device/aa01");
    assert_eq!(request.header("apns-topic"), Some(TOPIC));
    assert_eq!(request.header("apns-push-type"), Some("background"));
    assert_eq!(request.header("apns-priority"), Some("5"));
    assert_eq!(request.header("apns-collapse-id"), Some("alice"));
    assert_eq!(
        request.json(),
        json!({"aps": {"content-available": 1}, "conversation": "alice", "seq": 8, "count": 1}),
        "no text without the opt-in"
    );

    let outcome = setup
        .senders
        .send(&target("aa01"), true, &notification)
        .await;
    assert_eq!(outcome, Outcome::Delivered);
    let request = setup.server.next_request().await;
    let second = check_request(&request, &setup.public_key);
    assert_eq!(first, second, "the provider token is reused");
    assert_eq!(request.header("apns-push-type"), Some("alert"));
    assert_eq!(request.header("apns-priority"), Some("10"));
    let body = request.json();
    assert_eq!(body["aps"]["alert"]["body"], "on my way");
    assert_eq!(body["aps"]["thread-id"], "alice");
}

#[tokio::test]
async fn topic_and_environment_per_target() {
    let mut setup = setup().await;
    let target = Target::Apns {
        token: "aa01".into(),
        topic: Some("com.example.chat.beta".into()),
        environment: ApnsEnvironment::Sandbox,
    };
    let outcome = setup
        .senders
        .send(&target, false, &Notification::new("bob", 1))
        .await;
    assert_eq!(outcome, Outcome::Delivered);
    let request = setup.server.next_request().await;
    check_request(&request, &setup.public_key);
    assert_eq!(request.header("apns-topic"), Some("com.example.chat.beta"));
    assert_eq!(request.uri.host(), Some("localhost"), "the sandbox host");
}

#[tokio::test]
async fn documented_errors() {
    let mut setup = setup().await;
    let notification = Notification::new("alice", 1);
    let mut outcomes = Vec::new();
    for token in [
        "aa02", "aa03", "aa04", "aa05", "aa06", "aa07", "aa08", "aa09",
    ] {
        outcomes.push(
            setup
                .senders
                .send(&target(token), false, &notification)
                .await,
        );
    }
    assert!(matches!(&outcomes[0], Outcome::Invalid { reason } if reason.contains("Unregistered")));
    assert!(
        matches!(&outcomes[1], Outcome::Invalid { reason } if reason.contains("BadDeviceToken"))
    );
    assert!(matches!(
        &outcomes[2],
        Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(12)
    ));
    assert!(matches!(&outcomes[3], Outcome::Retry { .. }));
    assert!(matches!(&outcomes[4], Outcome::Retry { .. }));
    assert!(
        matches!(&outcomes[5], Outcome::Failed { reason } if reason.contains("TopicDisallowed"))
    );
    assert!(matches!(&outcomes[6], Outcome::Retry { .. }));
    assert!(matches!(&outcomes[7], Outcome::Failed { .. }));
    for request in setup.server.drain() {
        check_request(&request, &setup.public_key);
    }
    // A token that is not hexadecimal never reaches Apple.
    let outcome = setup
        .senders
        .send(&target("not-hex"), false, &notification)
        .await;
    assert!(matches!(outcome, Outcome::Invalid { .. }));
    assert!(setup.server.drain().is_empty());
}

#[tokio::test]
async fn a_bad_key_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("AuthKey.p8");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = PushConfig {
        apns: Some(ApnsConfig {
            key,
            key_id: KEY_ID.into(),
            team_id: TEAM_ID.into(),
            topic: TOPIC.into(),
            environment: ApnsEnvironment::Production,
            production_url: "https://api.push.apple.com".into(),
            sandbox_url: "https://api.sandbox.push.apple.com".into(),
        }),
        ..PushConfig::default()
    };
    assert!(Senders::from_config(&config).is_err());
}
