//! What every test needs: a server with users, connected clients, and waiting for events.

use std::time::Duration;

use mqchat_client::{Client, ClientConfig, Event, Events};
use mqchat_proto::{ConversationRef, DeviceId, UserId};
use mqchat_server::testing::TestServer;

/// How long a test waits for an event before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub const PASSWORD: &str = "correct horse";

/// A server with the users alice, bob and carol. Logs go to the test's output, filtered
/// by `RUST_LOG`.
pub async fn server() -> anyhow::Result<TestServer> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = TestServer::start().await?;
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

pub fn config_at(url: &str, server: &TestServer, user_name: &str, device: &str) -> ClientConfig {
    let device = DeviceId::parse(device).expect("a valid device id");
    ClientConfig::new(url, user(user_name), device, PASSWORD)
        .expect("a valid URL")
        .root(server.root().clone())
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
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        Ok(None) => panic!("the events ended before {what}"),
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

/// Waits for a message; returns (conversation, seq, from, own, text).
pub async fn expect_message(events: &mut Events) -> (ConversationRef, u64, UserId, bool, String) {
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
pub async fn expect_incoming(events: &mut Events) -> (ConversationRef, u64, UserId, String) {
    loop {
        let (conv, seq, from, own, text) = expect_message(events).await;
        if !own {
            return (conv, seq, from, text);
        }
    }
}

/// Runs a client on a runtime of its own, which the test can shut down to drop the
/// connection abruptly, as a crashed app or a lost network would.
pub struct Abrupt {
    runtime: tokio::runtime::Runtime,
}

impl Abrupt {
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        Ok(Self { runtime })
    }

    pub async fn connect(&self, config: ClientConfig) -> anyhow::Result<(Client, Events)> {
        Ok(self.runtime.spawn(Client::connect(config)).await??)
    }

    /// Stops the client's tasks without a DISCONNECT: the broker sees the socket close.
    pub fn kill(self) {
        self.runtime.shutdown_background();
    }
}

/// A TCP relay between clients and the server that the test can cut, as a network would:
/// every current connection is closed, new ones are accepted.
pub struct Relay {
    url: String,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    pub async fn start(server: &TestServer) -> anyhow::Result<Self> {
        let target = server.tcp_addr();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("mqtt://{}", listener.local_addr()?);
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                // Only cuts after this connection began close it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Ok(Self { url, cut })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection through the relay.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
