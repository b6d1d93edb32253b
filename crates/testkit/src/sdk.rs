//! The SDK in tests: a test server with users, their clients' settings, and waiting for
//! the events they expect.

use std::time::Duration;

use mqchat_client::{Client, ClientConfig, Event, Events};
use mqchat_proto::{ConversationRef, DeviceId, Seq, UserId};
use mqchat_server::ServerConfig;

use crate::{TestServer, within};

/// The password of the users of [`server`].
pub const PASSWORD: &str = "correct horse";

/// A server with the users alice, bob and carol. Logs go to the test's output, filtered
/// by `RUST_LOG`.
pub async fn server() -> anyhow::Result<TestServer> {
    server_with(|_| {}).await
}

/// [`server`] with its settings adjusted by `adjust` (SIP on, say).
pub async fn server_with(adjust: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<TestServer> {
    crate::logs();
    let server = TestServer::start_with(adjust).await?;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, PASSWORD)?;
    }
    Ok(server)
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).expect("a valid user id")
}

pub fn conv(name: &str) -> ConversationRef {
    ConversationRef::parse(name).expect("a valid conversation")
}

/// The settings for `user`'s `device` on `server`, over TCP.
pub fn config(server: &TestServer, user_name: &str, device: &str) -> ClientConfig {
    config_at(&server.mqtt_url(), server, user_name, device)
}

/// The settings for `user`'s `device` of `server`, reached at `url` (a relay, TLS).
pub fn config_at(url: &str, server: &TestServer, user_name: &str, device: &str) -> ClientConfig {
    device_config(url, user_name, device, PASSWORD).root(server.root().clone())
}

/// The settings for `user`'s `device` at `url` with `password`, reconnecting quickly (a
/// test's server comes back within moments).
pub fn device_config(url: &str, user_name: &str, device: &str, password: &str) -> ClientConfig {
    let device = DeviceId::parse(device).expect("a valid device id");
    ClientConfig::new(url, user(user_name), device, password)
        .expect("a valid URL")
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

pub async fn connect(
    server: &TestServer,
    user_name: &str,
    device: &str,
) -> anyhow::Result<(Client, Events)> {
    Ok(Client::connect(config(server, user_name, device)).await?)
}

/// Waits for the first event that `pick` accepts, skipping the others.
pub async fn expect<T>(
    events: &mut Events,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let found = within(what, async {
        while let Some(event) = events.next().await {
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    })
    .await;
    found.unwrap_or_else(|| panic!("the events ended before {what}"))
}

/// Waits for a message; returns (conversation, seq, from, own, text).
pub async fn expect_message(events: &mut Events) -> (ConversationRef, Seq, UserId, bool, String) {
    expect(events, "message", |e| match e {
        Event::Message {
            conv,
            seq,
            from,
            own,
            message,
            ..
        } => Some((conv, seq, from.user()?.clone(), own, message.text)),
        _ => None,
    })
    .await
}

/// Waits for a message from someone else.
pub async fn expect_incoming(events: &mut Events) -> (ConversationRef, Seq, UserId, String) {
    loop {
        let (conv, seq, from, own, text) = expect_message(events).await;
        if !own {
            return (conv, seq, from, text);
        }
    }
}
