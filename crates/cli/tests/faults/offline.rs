//! A recipient's devices away for longer than the broker's session queue lasts.

use mqchat_testkit::TestServer;

use crate::proxy::Proxy;
use crate::view::{Archive, Device, send_many};
use mqchat_testkit::sdk::{PASSWORD, config, config_at};

/// The broker's session queue in this scenario (the server's default is 1000).
const QUEUE: usize = 50;

/// Bob's phone and laptop lose the network while the app runs; his tablet's app is closed
/// (it keeps its state). Meanwhile alice sends six times what the broker queues for a
/// session, and carol, whom bob never talked to, starts a conversation of more than two
/// history pages. When bob's devices are back, each shows both conversations complete.
#[tokio::test]
async fn more_than_the_broker_queues_arrives_after_a_long_absence() -> anyhow::Result<()> {
    let server = TestServer::start_with(|config| config.max_queue = QUEUE).await?;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, PASSWORD)?;
    }
    let archive = Archive::new();
    let alice = Device::connect(config(&server, "alice", "phone")).await?;
    let carol = Device::connect(config(&server, "carol", "phone")).await?;
    let phone_network = Proxy::start(server.tcp_addr()).await?;
    let laptop_network = Proxy::start(server.tcp_addr()).await?;
    let phone = Device::connect(config_at(&phone_network.url(), &server, "bob", "phone")).await?;
    let laptop =
        Device::connect(config_at(&laptop_network.url(), &server, "bob", "laptop")).await?;
    let mut tablet = Device::connect(config(&server, "bob", "tablet")).await?;

    send_many(alice.client(), &archive, "bob", "before", 1).await?;
    for device in [&phone, &laptop, &tablet] {
        device.wait_complete(&archive, &["alice"]).await;
    }

    // Away: two devices without a network, one closed.
    let tablet_state = tablet.close().await?;
    phone_network.down();
    laptop_network.down();
    for device in [&phone, &laptop] {
        device
            .wait_for("the disconnection", |v| v.disconnections > 0)
            .await;
    }
    let during = phone_network.traffic();
    send_many(alice.client(), &archive, "bob", "while away", 6 * QUEUE).await?;
    send_many(carol.client(), &archive, "bob", "hello from carol", 120).await?;

    // Back.
    phone_network.up();
    laptop_network.up();
    tablet
        .restart(config(&server, "bob", "tablet").resume(tablet_state))
        .await?;
    for device in [&phone, &laptop, &tablet] {
        device.wait_complete(&archive, &["alice", "carol"]).await;
    }
    alice.wait_complete(&archive, &["bob"]).await;
    carol.wait_complete(&archive, &["bob"]).await;
    for device in [&phone, &laptop, &tablet] {
        device.assert_complete(&archive, &["alice", "carol"]);
    }
    alice.assert_complete(&archive, &["bob"]);
    carol.assert_complete(&archive, &["bob"]);

    // The broker delivered at most its queue live; the rest came as history replies.
    let after = phone_network.traffic().since(&during);
    let missed = (6 * QUEUE + 120) as u64;
    assert!(
        after.publishes("d") < missed,
        "the broker should have dropped some: {after:?}"
    );
    println!(
        "bob's phone after its absence: {} events missed, {} live publishes on its inbox, {} replies",
        missed,
        after.publishes("d"),
        after.publishes("r")
    );
    server.stop().await;
    Ok(())
}
