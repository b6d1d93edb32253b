//! The dispatcher against local UnifiedPush endpoints: coalescing, retries with backoff,
//! invalid-target reports, overflow, and an outage that never blocks enqueuing.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Reply, TestServer};
use mqchat_push::{
    Device, Dispatcher, Enqueued, Notification, PushConfig, Senders, Stats, Target,
    UnifiedPushConfig,
};
use tokio::time::Instant;

fn config(server_ca: &std::path::Path) -> PushConfig {
    PushConfig {
        unified_push: UnifiedPushConfig {
            enabled: true,
            allow_plain_http: false,
        },
        // The test servers are on loopback.
        allow_private_endpoints: true,
        extra_ca_file: Some(server_ca.to_owned()),
        coalesce_window_ms: 400,
        initial_backoff_ms: 50,
        max_backoff_ms: 2_000,
        ..PushConfig::default()
    }
}

fn device(key: &str, endpoint: String) -> Device {
    Device {
        key: key.into(),
        target: Target::UnifiedPush { endpoint },
        preview: false,
    }
}

/// Waits until the dispatcher's counters satisfy `done`, up to ten seconds.
async fn wait_for(dispatcher: &Dispatcher, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = dispatcher.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "timed out; stats: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn notifications_within_the_window_become_one_push_with_their_count() {
    let mut server = TestServer::start(common::status_from_path).await;
    let config = config(&server.ca_file);
    let senders = Senders::from_config(&config).unwrap();
    let (dispatcher, _invalid) = Dispatcher::start(senders, &config);
    let phone = device("alice:phone", server.url("/up/phone"));

    let started = Instant::now();
    assert_eq!(
        dispatcher.push(phone.clone(), Notification::new("bob", 1)),
        Enqueued::Queued
    );
    let first = server.next_request().await;
    assert_eq!(first.json()["count"], 1, "the first push leaves at once");

    // Four more within the window: one push, later, with their count and the newest event.
    for seq in 2..=5 {
        let result = dispatcher.push(phone.clone(), Notification::new("bob", seq));
        let expected = if seq == 2 {
            Enqueued::Queued
        } else {
            Enqueued::Coalesced
        };
        assert_eq!(result, expected);
    }
    // Another device is not held back by this one.
    dispatcher.push(
        device("alice:tablet", server.url("/up/tablet")),
        Notification::new("bob", 5),
    );
    let tablet = server.next_request().await;
    assert_eq!(tablet.uri.path(), "/up/tablet");

    let second = server.next_request().await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "held for the window"
    );
    assert_eq!(second.uri.path(), "/up/phone");
    assert_eq!(
        second.json(),
        serde_json::json!({"conversation": "bob", "seq": 5, "count": 4})
    );
    let stats = wait_for(&dispatcher, |stats| stats.sent == 3).await;
    assert_eq!(stats.coalesced, 3);
    assert_eq!(stats.enqueued, 6);
    assert_eq!((stats.queued, stats.failed), (0, 0));
}

#[tokio::test]
async fn after_shutdown_pushes_are_refused() {
    let server = TestServer::start(common::status_from_path).await;
    let config = config(&server.ca_file);
    let (dispatcher, _invalid) = Dispatcher::start(Senders::from_config(&config).unwrap(), &config);
    let (other, _) = Dispatcher::start(Senders::from_config(&config).unwrap(), &config);
    tokio::time::timeout(Duration::from_secs(10), other.shutdown())
        .await
        .expect("shutdown returns while idle");
    let phone = device("a:b", server.url("/up/phone"));
    dispatcher.push(phone.clone(), Notification::new("x", 1));
    wait_for(&dispatcher, |stats| stats.sent == 1).await;
    // The coalescing window holds this one; shutting down drops it.
    assert_eq!(
        dispatcher.push(phone.clone(), Notification::new("x", 2)),
        Enqueued::Queued
    );
    tokio::time::timeout(Duration::from_secs(10), dispatcher.shutdown())
        .await
        .expect("shutdown does not wait for the window");
    assert_eq!(
        dispatcher.push(phone, Notification::new("x", 3)),
        Enqueued::Closed
    );
    assert_eq!(dispatcher.stats().sent, 1);
}

#[tokio::test]
async fn unavailable_then_success_with_backoff_and_retry_after() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let mut server = TestServer::start(move |_| match counted.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::new(503, "down"),
        1 => Reply::new(503, "still down").header("retry-after", "1"),
        _ => Reply::new(201, ""),
    })
    .await;
    let config = config(&server.ca_file);
    let (dispatcher, _invalid) = Dispatcher::start(Senders::from_config(&config).unwrap(), &config);
    dispatcher.push(
        device("bob:phone", server.url("/up/b")),
        Notification::new("alice", 7),
    );

    let first = Instant::now();
    server.next_request().await;
    server.next_request().await;
    let second = Instant::now();
    assert!(second - first >= Duration::from_millis(50), "backed off");
    server.next_request().await;
    assert!(
        second.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 honoured ({:?})",
        second.elapsed()
    );
    let stats = wait_for(&dispatcher, |stats| stats.sent == 1).await;
    assert_eq!((stats.retried, stats.failed), (2, 0));
}

#[tokio::test]
async fn retries_end_and_invalid_targets_are_reported() {
    let mut server = TestServer::start(common::status_from_path).await;
    let config = PushConfig {
        max_attempts: 3,
        ..config(&server.ca_file)
    };
    let (dispatcher, mut invalid) =
        Dispatcher::start(Senders::from_config(&config).unwrap(), &config);
    let gone = device("carol:old-phone", server.url("/up/410"));
    dispatcher.push(gone.clone(), Notification::new("dave", 1));
    dispatcher.push(
        device("carol:laptop", server.url("/up/500")),
        Notification::new("dave", 1),
    );
    let report = tokio::time::timeout(Duration::from_secs(10), invalid.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.device, "carol:old-phone");
    assert_eq!(report.target, gone.target);
    assert!(report.reason.contains("410"), "{}", report.reason);

    let stats = wait_for(&dispatcher, |stats| stats.failed == 1).await;
    assert_eq!(stats.invalid, 1);
    assert_eq!(stats.retried, 2, "three tries in all");
    assert_eq!(server.drain().len(), 4);
}

#[tokio::test]
async fn an_outage_never_blocks_enqueuing_and_overflow_is_counted() {
    // A push service that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let ca = TestServer::start(common::status_from_path).await;
    let config = PushConfig {
        queue_size: 50,
        workers: 2,
        request_timeout_ms: 60_000,
        ..config(&ca.ca_file)
    };
    let (dispatcher, _invalid) = Dispatcher::start(Senders::from_config(&config).unwrap(), &config);

    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for n in 0..1000 {
        let device = device(
            &format!("user{n}:phone"),
            format!("https://127.0.0.1:{port}/up/{n}"),
        );
        results.push(dispatcher.push(device, Notification::new("x", 1)));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "1000 pushes took {elapsed:?}"
    );
    assert!(results.contains(&Enqueued::DroppedOldest));

    // Both workers stuck on the silent service, at most fifty waiting, the rest dropped.
    let stats = wait_for(&dispatcher, |stats| stats.in_flight == 2).await;
    assert!((48..=50).contains(&stats.queued), "{stats:?}");
    assert_eq!(stats.dropped + stats.queued as u64 + 2, 1000);
    // Still no waiting while the workers hang.
    let started = std::time::Instant::now();
    for n in 0..100 {
        let device = device(
            &format!("late{n}:phone"),
            format!("https://127.0.0.1:{port}/"),
        );
        dispatcher.push(device, Notification::new("x", 1));
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(stats.sent, 0);
    holder.abort();
}
