//! Device management and push settings through the SDK (spec 7.12, 7.13).

use mqchat_client::{Client, Event};
use mqchat_proto::DeviceId;
use mqchat_proto::body::{Message, PushRegister, PushTarget, Sync};

use crate::common::*;

#[tokio::test]
async fn a_user_lists_devices_and_revokes_a_lost_one() -> anyhow::Result<()> {
    let server = server().await?;
    let (phone, _phone_events) = connect(&server, "alice", "phone").await?;
    let (laptop, mut laptop_events) = connect(&server, "alice", "laptop").await?;
    let ids: Vec<String> = phone
        .devices()
        .await?
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids, ["laptop", "phone"]);

    phone.revoke_device(&DeviceId::parse("laptop")?).await?;
    // The laptop loses its connection and is refused when it tries again.
    expect(&mut laptop_events, "the laptop refused", |e| match e {
        Event::Refused { .. } => Some(()),
        _ => None,
    })
    .await;
    // Its application closes it (messages it would send wait for a connection that the
    // broker refuses).
    let _ = laptop.close().await;
    let ids: Vec<String> = phone
        .devices()
        .await?
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids, ["phone"]);
    // Revoking it again, or a device that never existed, is refused.
    for name in ["laptop", "tablet"] {
        let err = phone
            .revoke_device(&DeviceId::parse(name)?)
            .await
            .expect_err("not found");
        assert_eq!(
            err.refused(),
            Some(mqchat_proto::ErrorCode::NOT_FOUND),
            "{name}"
        );
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn push_registration_and_mutes_reach_the_hub() -> anyhow::Result<()> {
    let server = server().await?;
    let (phone, _phone_events) = connect(&server, "alice", "phone").await?;
    let (tablet, _tablet_events) = connect(&server, "alice", "tablet").await?;
    phone
        .register_push(PushRegister {
            target: PushTarget::Fcm {
                token: "fcm-token-1".into(),
            },
            preview: false,
        })
        .await?;
    // The hub validates what it stores.
    let err = phone
        .register_push(PushRegister {
            target: PushTarget::WebPush {
                endpoint: "http://insecure.example/x".into(),
                p256dh: "x".into(),
                auth: "y".into(),
            },
            preview: false,
        })
        .await
        .expect_err("refused");
    assert!(err.is_invalid() || err.refused().is_some(), "{err}");
    phone.set_active(false).await?;
    phone.set_active(true).await?;
    phone.unregister_push().await?;

    // A mute set on the phone shows on the tablet's sync; unmuting clears it.
    phone.send(conv("bob"), Message::text("hi")).await?;
    phone.mute(conv("bob"), Some(Client::MUTED_FOREVER)).await?;
    let entries = tablet.sync(Sync::default()).await?.conversations;
    let bob = entries
        .iter()
        .find(|e| e.conv == conv("bob"))
        .expect("the conversation");
    assert_eq!(bob.muted_until, Some(Client::MUTED_FOREVER));
    phone.mute(conv("bob"), None).await?;
    let entries = tablet.sync(Sync::default()).await?.conversations;
    let bob = entries
        .iter()
        .find(|e| e.conv == conv("bob"))
        .expect("the conversation");
    assert_eq!(bob.muted_until, None);
    server.stop().await;
    Ok(())
}
