//! UnifiedPush against a local distributor endpoint.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use mqchat_push::{Notification, Outcome, PushConfig, Senders, Target, UnifiedPushConfig};

async fn setup() -> (TestServer, Senders) {
    let server = TestServer::start(common::status_from_path).await;
    let config = PushConfig {
        unified_push: UnifiedPushConfig {
            enabled: true,
            allow_plain_http: false,
        },
        ttl_secs: 600,
        // The test servers are on loopback.
        allow_private_endpoints: true,
        extra_ca_file: Some(server.ca_file.clone()),
        ..PushConfig::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    (server, senders)
}

#[tokio::test]
async fn the_payload_is_posted_as_json() {
    let (mut server, senders) = setup().await;
    let target = Target::UnifiedPush {
        endpoint: server.url("/up/AbC123?up=1"),
    };
    let notification = Notification::new("bob", 9).with_preview("hello");
    assert_eq!(
        senders.send(&target, false, &notification).await,
        Outcome::Delivered
    );
    let request = server.next_request().await;
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.uri.path(), "/up/AbC123");
    assert_eq!(request.uri.query(), Some("up=1"));
    assert_eq!(request.header("ttl"), Some("600"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        serde_json::json!({"conversation": "bob", "seq": 9, "count": 1})
    );

    assert_eq!(
        senders.send(&target, true, &notification).await,
        Outcome::Delivered
    );
    assert_eq!(server.next_request().await.json()["preview"], "hello");
}

#[tokio::test]
async fn gone_endpoints_are_invalid() {
    let (mut server, senders) = setup().await;
    let notification = Notification::new("bob", 1);
    let send = |path: &str| {
        let target = Target::UnifiedPush {
            endpoint: server.url(path),
        };
        let senders = &senders;
        let notification = &notification;
        async move { senders.send(&target, false, notification).await }
    };
    assert!(matches!(send("/up/404").await, Outcome::Invalid { .. }));
    assert!(matches!(send("/up/410").await, Outcome::Invalid { .. }));
    assert!(matches!(send("/up/429").await, Outcome::Retry { .. }));
    assert!(matches!(send("/up/502").await, Outcome::Retry { .. }));
    assert!(matches!(send("/up/413").await, Outcome::Failed { .. }));
    assert_eq!(server.drain().len(), 5);
    // Plain http is refused unless the operator allowed it.
    let outcome = senders
        .send(
            &Target::UnifiedPush {
                endpoint: format!("http://127.0.0.1:{}/up/x", server.addr.port()),
            },
            false,
            &notification,
        )
        .await;
    assert!(matches!(outcome, Outcome::Invalid { .. }));
}

#[tokio::test]
async fn a_long_answer_is_judged_by_its_status() {
    let mut server = TestServer::start(|request| {
        let status = if request.uri.path() == "/up/gone" {
            410
        } else {
            201
        };
        common::Reply::new(status, "x".repeat(200_000))
    })
    .await;
    let config = PushConfig {
        unified_push: UnifiedPushConfig {
            enabled: true,
            allow_plain_http: false,
        },
        allow_private_endpoints: true,
        extra_ca_file: Some(server.ca_file.clone()),
        ..PushConfig::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    let send = |path: &str| {
        let target = Target::UnifiedPush {
            endpoint: server.url(path),
        };
        let senders = &senders;
        async move {
            senders
                .send(&target, false, &Notification::new("a", 1))
                .await
        }
    };
    assert_eq!(send("/up/ok").await, Outcome::Delivered);
    assert!(matches!(send("/up/gone").await, Outcome::Invalid { .. }));
    assert_eq!(server.drain().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retried_later() {
    // Bind, learn the port, close: nothing listens there any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (_server, senders) = setup().await;
    let outcome = senders
        .send(
            &Target::UnifiedPush {
                endpoint: format!("https://127.0.0.1:{port}/up/x"),
            },
            false,
            &Notification::new("bob", 1),
        )
        .await;
    assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");
}

#[tokio::test]
async fn endpoints_on_the_servers_own_network_are_refused_by_default() {
    let (mut server, _) = setup().await;
    let config = PushConfig {
        unified_push: UnifiedPushConfig {
            enabled: true,
            allow_plain_http: false,
        },
        extra_ca_file: Some(server.ca_file.clone()),
        ..PushConfig::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    let port = server.addr.port();
    for endpoint in [
        format!("https://127.0.0.1:{port}/up/x"),
        format!("https://[::1]:{port}/up/x"),
        // A name is checked after resolution.
        format!("https://localhost:{port}/up/x"),
    ] {
        let target = Target::UnifiedPush { endpoint };
        let outcome = senders
            .send(&target, false, &Notification::new("bob", 1))
            .await;
        match outcome {
            Outcome::Invalid { reason } => assert!(reason.contains("public"), "{reason}"),
            other => panic!("{target:?} gave {other:?}"),
        }
    }
    assert!(server.drain().is_empty(), "nothing reached the server");
}
