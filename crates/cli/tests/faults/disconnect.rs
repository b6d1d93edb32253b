//! A device that says goodbye (MQTT DISCONNECT) and comes straight back: the rmqtt fault of
//! `REFERENCE.md` (the broker keeps delivering to a connection after its DISCONNECT, and a
//! message so delivered was lost) must be harmless.

use std::sync::Arc;

use mqchat_proto::body::Sync;

use mqchat_testkit::TestServer;

use crate::view::{Archive, Device, send_many};
use mqchat_testkit::sdk::{config, server};

/// Messages alice sends while bob's devices come and go.
const N: usize = 200;

/// Times each of bob's devices closes and reconnects.
const CYCLES: usize = 8;

/// While alice sends, bob's phone and tablet close and reconnect at once, again and again,
/// each time resuming the state the close returned. The phone keeps its broker session (the
/// broker queues for it in between); the tablet starts clean every time, so only sync
/// brings what it missed. Both end with every message once, in order.
#[tokio::test]
async fn disconnecting_and_reconnecting_at_once_loses_nothing() -> anyhow::Result<()> {
    let server = server().await?;
    let archive = Archive::new();
    let alice = Device::connect(config(&server, "alice", "phone")).await?;
    let mut phone = Device::connect(config(&server, "bob", "phone")).await?;
    let mut tablet = Device::connect(config(&server, "bob", "tablet").clean_start(true)).await?;
    // Answered after each device's first sync: they know where they start.
    for device in [&phone, &tablet] {
        device.client().sync(Sync::default()).await?;
    }

    let stream = {
        let client = alice.client().clone();
        let archive = Arc::clone(&archive);
        tokio::spawn(async move { send_many(&client, &archive, "bob", "hi", N).await })
    };
    let (phone_cycles, tablet_cycles) = tokio::join!(
        come_and_go(&server, &mut phone, false),
        come_and_go(&server, &mut tablet, true)
    );
    phone_cycles?;
    tablet_cycles?;
    stream.await??;

    for device in [&phone, &tablet] {
        device.wait_complete(&archive, &["alice"]).await;
        device.assert_complete(&archive, &["alice"]);
        assert_eq!(device.view().connections, CYCLES + 1, "{}", device.name);
    }
    alice.wait_complete(&archive, &["bob"]).await;
    alice.assert_complete(&archive, &["bob"]);
    server.stop().await;
    Ok(())
}

/// Closes `device` and restarts it from the state the close returned, [`CYCLES`] times,
/// each time once a few more messages arrived.
async fn come_and_go(
    server: &TestServer,
    device: &mut Device,
    clean_start: bool,
) -> anyhow::Result<()> {
    for cycle in 0..CYCLES {
        let seen = device.view().count("alice");
        // Connected each time before it closes: once alice's messages are all there, a
        // device may otherwise close before its CONNACK (and count one connection less).
        device
            .wait_for("its connection and more messages", |v| {
                v.connections > cycle && v.count("alice") >= (seen + 5).min(N)
            })
            .await;
        let state = device.close().await?;
        let name = device.device.clone();
        let config = config(server, "bob", &name)
            .clean_start(clean_start)
            .resume(state);
        device.restart(config).await?;
    }
    device
        .wait_for("its last connection", |v| v.connections > CYCLES)
        .await;
    Ok(())
}
