//! The hub's HTTP auth endpoint answering recorded requests of EMQX 5, rmqtt-auth-http,
//! mosquitto-go-auth and VerneMQ (`tests/auth_http/*.json`, see its README) over a real
//! store, and the same endpoint on a real socket, in clear and over TLS.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mqchat_hub::{Engine, Gate, HubConfig, HubCredentials, LoginLimits, Upstream};
use mqchat_proto::{DeviceId, Moment, Now, Registry, Timestamp, TopicRoot, UserId};
use mqchat_server::login::{LoginConfig, Logins};
use mqchat_store::{Durability, Store};
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    gate: Arc<Logins>,
    alice_token: String,
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid user id")
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mqchat.db");
    let mut store = Store::open(&path, Durability::Normal).expect("store");
    for name in ["alice", "bob", "carol", "dave"] {
        store
            .add_user(&user(name), Some(&format!("{name}-secret")), 1)
            .expect("add user");
    }
    store.set_disabled(&user("dave"), true, 1).expect("disable");
    let alice_token = store
        .add_device(&user("alice"), &DeviceId::parse("phone").expect("valid"), 1)
        .expect("device");
    // alice asks bob to be contacts, bob accepts: alice may read bob's presence.
    let mut engine = Engine::new(HubConfig::default());
    let registry = Registry::with_core();
    let up = |user: &str, packet: Value| Upstream {
        topic: format!("mq/up/{user}/phone"),
        payload: registry.from_json(&packet).expect("packet").encode(),
    };
    for batch in [
        up(
            "alice",
            json!({"type": "contact", "id": "0a03zkqvpmqg1", "conv": "bob", "action": "request"}),
        ),
        up(
            "bob",
            json!({"type": "contact", "id": "0a03zkqvpmqg2", "conv": "alice", "action": "accept"}),
        ),
    ] {
        let now = Now {
            at: Moment::ZERO,
            wall: Timestamp::from_unix_ms(2_000),
        };
        engine.process(&mut store, now, &[batch]);
    }
    assert!(
        store
            .may_see_presence(&user("alice"), &user("bob"))
            .expect("query")
    );
    let gate = Gate::open(
        &path,
        TopicRoot::default(),
        HubCredentials {
            username: "_hub".into(),
            secret: "hub-secret".into(),
        },
        LoginLimits::default(),
    )
    .expect("gate");
    let logins = Logins::start(Arc::new(gate), &LoginConfig::default()).expect("login threads");
    Fixture {
        _dir: dir,
        gate: Arc::new(logins),
        alice_token,
    }
}

fn form(fields: &Value) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields.as_object().expect("form fields are an object") {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.append_pair(k, &v);
    }
    out.finish()
}

async fn replay(file: &str) {
    let fixture = fixture();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/auth_http")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("fixture file");
    let text = text.replace("{{ALICE_TOKEN}}", &fixture.alice_token);
    let recorded: Value = serde_json::from_str(&text).expect("fixture JSON");
    assert!(recorded["source"].as_str().is_some_and(|s| !s.is_empty()));
    let cases = recorded["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let method = case["method"].as_str().unwrap_or("POST");
        let mut uri = case["path"].as_str().expect("path").to_owned();
        if let Some(query) = case["query"].as_str() {
            uri = format!("{uri}?{query}");
        }
        let mut request = Request::builder().method(method).uri(uri);
        let body = match &case["body"] {
            Value::Null => String::new(),
            Value::String(raw) => {
                request = request.header("content-type", "application/json");
                raw.clone()
            }
            fields if case["form"] == true => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
                form(fields)
            }
            fields => {
                request = request.header("content-type", "application/json");
                fields.to_string()
            }
        };
        if let Some(hook) = case["hook"].as_str() {
            request = request.header("vernemq-hook", hook);
        }
        let request = request.body(Body::from(body)).expect("request");
        let response = mqchat_server::auth_http::router(fixture.gate.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes);
        let context = format!("{file}: {name}: got {status} {text}");
        assert_eq!(
            status.as_u16(),
            case["status"].as_u64().expect("status") as u16,
            "{context}"
        );
        if let Some(expected) = case["text"].as_str() {
            assert_eq!(text, expected, "{context}");
        } else {
            let got: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
            match &case["json"] {
                // Some error: only its presence is checked (parser messages vary).
                Value::Null => assert!(got["error"].as_str().is_some(), "{context}"),
                expected => assert_eq!(&got, expected, "{context}"),
            }
        }
        for (name, value) in case["headers"].as_object().into_iter().flatten() {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                value.as_str(),
                "{context}: header {name}"
            );
        }
        if case["headers"].is_null() {
            assert!(
                headers.get("x-superuser").is_none(),
                "{context}: only the hub is a superuser"
            );
        }
    }
}

#[tokio::test]
async fn emqx5() {
    replay("emqx5.json").await;
}

#[tokio::test]
async fn rmqtt_auth_http() {
    replay("rmqtt.json").await;
}

#[tokio::test]
async fn mosquitto_go_auth() {
    replay("mosquitto-go-auth.json").await;
}

#[tokio::test]
async fn vernemq_webhooks() {
    replay("vernemq.json").await;
}

/// The endpoint on a socket: a raw HTTP/1.1 request, as a broker's client sends it.
#[tokio::test]
async fn serves_on_a_socket() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = fixture();
    let server = mqchat_server::auth_http::AuthHttp::start(
        ([127, 0, 0, 1], 0).into(),
        fixture.gate.clone(),
        None,
    )
    .await
    .expect("bind");
    let body = json!({"username": "alice", "password": "alice-secret", "clientid": "alice:phone"})
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let request = format!(
        "POST /emqx/authn HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(mqchat_testkit::WAIT, stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(r#"{"result":"allow","is_superuser":false}"#),
        "{answer}"
    );
    server.stop().await;
}

/// `POST /emqx/authn` for alice over TLS, trusting only the CA certificate `ca_pem`.
async fn https_authn(addr: std::net::SocketAddr, ca_pem: &str) -> std::io::Result<String> {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let body = json!({"username": "alice", "password": "alice-secret", "clientid": "alice:phone"})
        .to_string();
    let request = format!(
        "POST /emqx/authn HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    // A TLS peer that closes without close_notify is an error to rustls; the answer is
    // complete by then (connection: close).
    let _ = tokio::time::timeout(mqchat_testkit::WAIT, stream.read_to_string(&mut answer)).await;
    Ok(answer)
}

/// The endpoint over TLS (the hub's `[tls]`), and a certificate reloaded without a restart.
#[tokio::test]
async fn serves_over_tls_and_reloads_its_certificate() {
    use mqchat_testkit::TestCa;
    let fixture = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let files = mqchat_server::tls::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let first = TestCa::new("first CA").expect("CA");
    let second = TestCa::new("second CA").expect("CA");
    first
        .issue(&["localhost"])
        .expect("cert")
        .write(&files)
        .expect("write");
    let certificate = mqchat_server::tls::Certificate::load(files.clone()).expect("loads");
    let server = mqchat_server::auth_http::AuthHttp::start(
        ([127, 0, 0, 1], 0).into(),
        fixture.gate.clone(),
        Some(certificate.clone()),
    )
    .await
    .expect("bind");
    let allowed = r#"{"result":"allow","is_superuser":false}"#;
    let answer = https_authn(server.addr(), first.pem()).await.expect("TLS");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with(allowed),
        "{answer}"
    );
    assert!(
        https_authn(server.addr(), second.pem()).await.is_err(),
        "a certificate from a CA the client does not trust"
    );

    // In clear on the TLS port: no HTTP answer.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut plain = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("connect");
        plain
            .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(mqchat_testkit::WAIT, plain.read_to_end(&mut answer))
            .await
            .expect("closed in time");
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }

    second
        .issue(&["localhost"])
        .expect("cert")
        .write(&files)
        .expect("write");
    certificate.reload().expect("reloads");
    let answer = https_authn(server.addr(), second.pem()).await.expect("TLS");
    assert!(answer.ends_with(allowed), "{answer}");
    assert!(https_authn(server.addr(), first.pem()).await.is_err());
    // Broken files are refused; the certificate stays.
    std::fs::write(&files.cert, "nothing\n").expect("write");
    assert!(certificate.reload().is_err());
    let answer = https_authn(server.addr(), second.pem()).await.expect("TLS");
    assert!(answer.ends_with(allowed), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let fixture = fixture();
    let response = mqchat_server::auth_http::router(fixture.gate.clone())
        .oneshot(
            Request::builder()
                .uri("/mqtt/auth")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
