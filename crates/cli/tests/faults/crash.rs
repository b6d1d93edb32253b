//! The server process killed mid-stream. The embedded broker runs in the same process, so
//! this is also the broker restarting while clients keep sending: every session and
//! retained message it held in memory is gone, and only the store survives.

use std::sync::Arc;
use std::time::Duration;

use mqchat_testkit::TestServer;
use mqchat_testkit::sdk::{PASSWORD, device_config};

use crate::process::ServerProcess;
use crate::view::{Archive, Device, send_many};

/// Messages each sender sends.
const N: usize = 150;

/// Alice and bob, two devices each, send to each other from one device each. The server
/// is SIGKILLed twice while they do, and restarted on the same data directory, reached at
/// the same address.
/// Every message confirmed to its sender is on all four devices exactly once and in
/// order; nothing else is.
#[tokio::test]
async fn nothing_accepted_is_lost_when_the_server_is_killed() -> anyhow::Result<()> {
    // Users are made by a test server on the directory the real binary then serves.
    let setup = TestServer::start().await?;
    setup.add_user("alice", PASSWORD)?;
    setup.add_user("bob", PASSWORD)?;
    let dir = setup.stop_keep().await;
    let mut server = ServerProcess::start(dir.path()).await?;
    let url = server.url();

    let began = std::time::Instant::now();
    let archive = Archive::new();
    let alice_phone = Device::connect(device_config(&url, "alice", "phone", PASSWORD)).await?;
    let alice_laptop = Device::connect(device_config(&url, "alice", "laptop", PASSWORD)).await?;
    let bob_phone = Device::connect(device_config(&url, "bob", "phone", PASSWORD)).await?;
    let bob_laptop = Device::connect(device_config(&url, "bob", "laptop", PASSWORD)).await?;

    let streams = [
        (alice_phone.client().clone(), "bob", "from alice"),
        (bob_laptop.client().clone(), "alice", "from bob"),
    ]
    .map(|(client, to, prefix)| {
        let archive = Arc::clone(&archive);
        tokio::spawn(async move { send_many(&client, &archive, to, prefix, N).await })
    });

    for (kill, at) in [(1, N / 2), (2, N)] {
        alice_phone
            .wait_for(&format!("{at} messages before kill {kill}"), |v| {
                v.count("bob") >= at
            })
            .await;
        server.kill();
        assert!(archive.count("alice", "bob") < 2 * N, "killed mid-stream");
        let waited = server.restart().await?;
        println!(
            "kill {kill} at {:?}: the server listened again after {waited:?}",
            began.elapsed()
        );
    }
    for stream in streams {
        tokio::time::timeout(Duration::from_secs(120), stream).await???;
    }
    assert_eq!(archive.count("alice", "bob"), 2 * N);
    println!(
        "every message confirmed at {:?}; {} confirmed as resends of messages stored before a kill",
        began.elapsed(),
        archive.resent()
    );

    let devices = [
        (&alice_phone, "bob"),
        (&alice_laptop, "bob"),
        (&bob_phone, "alice"),
        (&bob_laptop, "alice"),
    ];
    for (device, peer) in devices {
        device.wait_complete(&archive, &[peer]).await;
    }
    for (device, peer) in devices {
        device.assert_complete(&archive, &[peer]);
    }
    Ok(())
}
