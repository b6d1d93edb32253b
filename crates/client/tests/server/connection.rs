//! Connecting: credentials, transports, closing.

use mqchat_client::{Client, ClientConfig, Event};
use mqchat_proto::body::Message;
use mqchat_proto::{DeviceId, TopicRoot};

use crate::common::*;

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() -> anyhow::Result<()> {
    let server = server().await?;
    let config = ClientConfig::new(
        &server.mqtt_url(),
        user("alice"),
        DeviceId::parse("phone")?,
        "wrong",
    )?
    .root(server.root().clone());
    let err = Client::connect(config).await.expect_err("wrong password");
    assert!(err.is_auth(), "{err}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_server_is_reported() -> anyhow::Result<()> {
    let server = server().await?;
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = config_at(
        &format!("mqtt://127.0.0.1:{port}"),
        &server,
        "alice",
        "phone",
    );
    let err = Client::connect(config).await.expect_err("nothing listens");
    assert!(err.is_unreachable(), "{err}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_topic_root_is_reported() -> anyhow::Result<()> {
    let server = server().await?;
    // The SDK's will (its presence topic, spec section 3) is outside what alice may publish
    // to, so the broker refuses the connection, as Mosquitto and EMQX do.
    let config = config(&server, "alice", "phone").root(TopicRoot::parse("elsewhere")?);
    let err = Client::connect(config)
        .await
        .expect_err("the will is outside the topic tree");
    assert!(err.is_auth(), "{err}");
    assert!(err.to_string().contains("wrong topic root"), "{err}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn websocket_works() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _alice_events) =
        Client::connect(config_at(&server.ws_url(), &server, "alice", "web")).await?;
    let (bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    let sent = alice
        .send(conv("bob"), Message::text("over WebSocket"))
        .await?;
    let got = expect_incoming(&mut bob_events).await;
    assert_eq!(
        got,
        (
            conv("alice"),
            sent.seq,
            user("alice"),
            "over WebSocket".into()
        )
    );
    bob.send(conv("alice"), Message::text("over TCP")).await?;
    alice.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn close_ends_the_events_and_later_calls_fail() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut events) = connect(&server, "alice", "phone").await?;
    let other = alice.clone();
    alice.close().await?;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            assert!(
                !matches!(event, Event::Disconnected { .. }),
                "a close is not a drop"
            );
        }
    })
    .await;
    assert!(ended.is_ok(), "the events did not end");
    let err = other
        .send(conv("bob"), Message::text("too late"))
        .await
        .expect_err("closed");
    assert!(err.is_closed(), "{err}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn dropping_every_handle_closes() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut events) = connect(&server, "alice", "phone").await?;
    drop(alice);
    let ended = tokio::time::timeout(WAIT, async { while events.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the events did not end");
    // The same device can connect again at once.
    let (alice, _events) = connect(&server, "alice", "phone").await?;
    alice.close().await?;
    server.stop().await;
    Ok(())
}
