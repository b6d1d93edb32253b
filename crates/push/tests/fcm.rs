//! FCM HTTP v1 against a local OAuth token endpoint and send endpoint that check what Google
//! documents: the RS256 assertion (signature with the service account's public key, claims),
//! then the bearer token, path and message schema.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Captured, Reply, TestServer, open_jwt, unix_now};
use mqchat_push::{FcmConfig, Notification, Outcome, PushConfig, Senders, Target};
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use serde_json::{Value, json};

const EMAIL: &str = "push@demo-project.iam.gserviceaccount.com";
const PROJECT: &str = "demo-project";

/// The test service account's key: a committed test-only key (see `fixtures/README.md`),
/// since generating RSA keys is slow in test builds.
fn key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::DecodePrivateKey as _;
        let pem = include_str!("fixtures/test-only-fcm-service-account-key.pem");
        rsa::PrivateKey::from_pkcs8_pem(pem).unwrap()
    })
}

/// What Google's two endpoints know and count.
struct Google {
    public_key: Vec<u8>,
    /// Seconds the token endpoint grants.
    expires_in: u64,
    token_uri: OnceLock<String>,
    n_token_requests: AtomicU64,
    issued: Mutex<Vec<String>>,
    revoked: Mutex<Vec<String>>,
}

impl Google {
    fn answer(&self, request: &Captured) -> Reply {
        match request.uri.path() {
            "/token" => self.token(request),
            path if path == format!("/v1/projects/{PROJECT}/messages:send") => self.send(request),
            other => Reply::new(404, format!("no route {other}")),
        }
    }

    fn token(&self, request: &Captured) -> Reply {
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = std::str::from_utf8(&request.body).unwrap();
        let fields: Vec<(&str, &str)> = form
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        assert_eq!(
            fields[0],
            (
                "grant_type",
                "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
            )
        );
        assert_eq!(fields[1].0, "assertion");
        let public_key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key,
        );
        let (header, claims) = open_jwt(fields[1].1, |input, signature| {
            public_key.verify(input, signature).is_ok()
        });
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], EMAIL);
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/firebase.messaging"
        );
        assert_eq!(
            claims["aud"].as_str(),
            self.token_uri.get().map(String::as_str)
        );
        let iat = claims["iat"].as_u64().unwrap();
        let exp = claims["exp"].as_u64().unwrap();
        assert!(iat.abs_diff(unix_now()) < 60 && exp > iat && exp - iat <= 3600);

        let n = self.n_token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("ya29.test-{n}");
        self.issued.lock().unwrap().push(token.clone());
        Reply::new(
            200,
            json!({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})
                .to_string(),
        )
    }

    fn send(&self, request: &Captured) -> Reply {
        let bearer = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let valid = self.issued.lock().unwrap().contains(&bearer)
            && !self.revoked.lock().unwrap().contains(&bearer);
        if !valid {
            return error(401, "UNAUTHENTICATED", None);
        }
        let body = request.json();
        let message = &body["message"];
        check_schema(message);
        match message["token"].as_str().unwrap() {
            "ok" => Reply::new(
                200,
                json!({"name": format!("projects/{PROJECT}/messages/0:1")}).to_string(),
            ),
            "gone" => error(404, "NOT_FOUND", Some("UNREGISTERED")),
            "bad" => error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT")),
            "quota" => {
                error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED")).header("retry-after", "30")
            }
            "down" => error(503, "UNAVAILABLE", Some("UNAVAILABLE")),
            "revoke" => {
                self.revoked.lock().unwrap().push(bearer);
                error(401, "UNAUTHENTICATED", None)
            }
            other => panic!("unexpected token {other}"),
        }
    }
}

/// The v1 `Message` fields the sender uses, as the API reference types them.
fn check_schema(message: &Value) {
    assert!(message["token"].is_string());
    let data = message["data"].as_object().unwrap();
    assert!(
        data.values().all(Value::is_string),
        "data values are strings"
    );
    assert!(data.contains_key("conversation") && data.contains_key("seq"));
    assert!(message.get("notification").is_none(), "data-only");
    assert_eq!(message["android"]["priority"], "high");
    let ttl = message["android"]["ttl"].as_str().unwrap();
    assert!(ttl.ends_with('s') && ttl[..ttl.len() - 1].parse::<u64>().is_ok());
    let headers = message["apns"]["headers"].as_object().unwrap();
    assert!(headers.values().all(Value::is_string));
    assert!(message["apns"]["payload"]["aps"].is_object());
    let allowed = ["token", "data", "android", "apns"];
    assert!(
        message
            .as_object()
            .unwrap()
            .keys()
            .all(|k| allowed.contains(&k.as_str()))
    );
}

fn error(code: u16, status: &str, fcm_code: Option<&str>) -> Reply {
    let mut error = json!({"code": code, "message": format!("test {status}"), "status": status});
    if let Some(fcm_code) = fcm_code {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": fcm_code,
        }]);
    }
    Reply::new(code, json!({"error": error}).to_string())
}

struct Setup {
    server: TestServer,
    google: Arc<Google>,
    senders: Senders,
    _dir: tempfile::TempDir,
}

async fn setup(expires_in: u64) -> Setup {
    let google = Arc::new(Google {
        public_key: key().to_public_key().to_pkcs1_der().unwrap().into_vec(),
        expires_in,
        token_uri: OnceLock::new(),
        n_token_requests: AtomicU64::new(0),
        issued: Mutex::new(Vec::new()),
        revoked: Mutex::new(Vec::new()),
    });
    let handler = google.clone();
    let server = TestServer::start(move |request| handler.answer(request)).await;
    let token_uri = server.url("/token");
    google.token_uri.set(token_uri.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("service-account.json");
    let pem = key().to_pkcs8_pem(LineEnding::LF).unwrap();
    std::fs::write(
        &account,
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123abcd",
            "private_key": pem.as_str(),
            "client_email": EMAIL,
            "client_id": "1234567890",
            "token_uri": token_uri,
        })
        .to_string(),
    )
    .unwrap();
    let config = PushConfig {
        fcm: Some(FcmConfig {
            service_account: account,
            project_id: None,
            base_url: server.origin(),
            token_uri: None,
        }),
        extra_ca_file: Some(server.ca_file.clone()),
        ..PushConfig::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    Setup {
        server,
        google,
        senders,
        _dir: dir,
    }
}

async fn send(senders: &Senders, token: &str) -> Outcome {
    let target = Target::Fcm {
        token: token.into(),
    };
    senders
        .send(&target, false, &Notification::new("alice", 12))
        .await
}

#[tokio::test]
async fn one_token_for_many_sends_and_documented_errors() {
    let mut setup = setup(3600).await;
    assert_eq!(send(&setup.senders, "ok").await, Outcome::Delivered);
    assert_eq!(send(&setup.senders, "ok").await, Outcome::Delivered);
    match send(&setup.senders, "gone").await {
        Outcome::Invalid { reason } => assert!(reason.contains("UNREGISTERED"), "{reason}"),
        other => panic!("UNREGISTERED gave {other:?}"),
    }
    match send(&setup.senders, "bad").await {
        Outcome::Failed { reason } => assert!(reason.contains("INVALID_ARGUMENT"), "{reason}"),
        other => panic!("INVALID_ARGUMENT gave {other:?}"),
    }
    match send(&setup.senders, "quota").await {
        Outcome::Retry { after, reason } => {
            assert_eq!(after, Some(Duration::from_secs(30)));
            assert!(reason.contains("QUOTA_EXCEEDED"));
        }
        other => panic!("QUOTA_EXCEEDED gave {other:?}"),
    }
    assert!(matches!(
        send(&setup.senders, "down").await,
        Outcome::Retry { after: None, .. }
    ));
    assert_eq!(
        setup.google.n_token_requests.load(Ordering::SeqCst),
        1,
        "the access token is cached"
    );
    // Token request first, then the six sends.
    let requests = setup.server.drain();
    assert_eq!(requests.len(), 7);
    assert_eq!(requests[0].uri.path(), "/token");

    // A revoked token: the send is retried later and a new token fetched for it.
    assert!(matches!(
        send(&setup.senders, "revoke").await,
        Outcome::Retry { .. }
    ));
    assert_eq!(send(&setup.senders, "ok").await, Outcome::Delivered);
    assert_eq!(setup.google.n_token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_share_one_token_request() {
    let setup = setup(3600).await;
    let senders = &setup.senders;
    let outcomes = tokio::join!(
        send(senders, "ok"),
        send(senders, "ok"),
        send(senders, "ok"),
        send(senders, "ok"),
    );
    assert_eq!(
        [outcomes.0, outcomes.1, outcomes.2, outcomes.3],
        [(); 4].map(|_| Outcome::Delivered)
    );
    assert_eq!(setup.google.n_token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_token_is_replaced() {
    // A token that expires at once is never reused.
    let setup = setup(0).await;
    for _ in 0..3 {
        assert_eq!(send(&setup.senders, "ok").await, Outcome::Delivered);
    }
    assert_eq!(setup.google.n_token_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_preview_reaches_ios_as_an_alert() {
    let mut setup = setup(3600).await;
    let target = Target::Fcm { token: "ok".into() };
    let notification = Notification::new("alice", 2).with_preview("lunch?");
    assert_eq!(
        setup.senders.send(&target, true, &notification).await,
        Outcome::Delivered
    );
    let requests = setup.server.drain();
    let message = &requests.last().unwrap().json()["message"];
    assert_eq!(message["data"]["preview"], "lunch?");
    assert_eq!(message["apns"]["headers"]["apns-push-type"], "alert");
    assert_eq!(message["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(message["apns"]["payload"]["aps"]["alert"]["body"], "lunch?");
}

#[tokio::test]
async fn a_bad_key_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("sa.json");
    std::fs::write(
        &account,
        r#"{"client_email":"x","private_key":"nope","token_uri":"https://t"}"#,
    )
    .unwrap();
    let config = PushConfig {
        fcm: Some(FcmConfig {
            service_account: account,
            project_id: Some("p".into()),
            base_url: "https://fcm.googleapis.com".into(),
            token_uri: None,
        }),
        ..PushConfig::default()
    };
    let error = Senders::from_config(&config).unwrap_err();
    assert!(error.to_string().contains("private_key"), "{error}");
}
