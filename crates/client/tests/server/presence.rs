//! Contacts, presence and profiles.

use mqchat_client::{Client, Event, Events, Presence};
use mqchat_proto::ErrorCode;
use mqchat_proto::body::{Availability, ContactAction, Profile};

use crate::common::*;

/// Alice asks bob to be contacts and bob accepts; both see each step.
async fn become_contacts(
    alice: &Client,
    alice_events: &mut Events,
    bob: &Client,
    bob_events: &mut Events,
) -> anyhow::Result<()> {
    let note = Some("It's Alice, from the conference".to_owned());
    let request = alice
        .contact(user("bob"), ContactAction::Request, note.clone())
        .await?;
    let seen = expect(bob_events, "the contact request", |e| match e {
        Event::Contact {
            conv,
            seq,
            from,
            own: false,
            contact,
        } => Some((conv, seq, from, contact.action, contact.note)),
        _ => None,
    })
    .await;
    assert_eq!(
        seen,
        (
            conv("alice"),
            request.seq,
            user("alice"),
            ContactAction::Request,
            note
        )
    );
    let accept = bob
        .contact(user("alice"), ContactAction::Accept, None)
        .await?;
    let seen = expect(alice_events, "the acceptance", |e| match e {
        Event::Contact {
            seq,
            from,
            own: false,
            contact,
            ..
        } => Some((seq, from, contact.action)),
        _ => None,
    })
    .await;
    assert_eq!(seen, (accept.seq, user("bob"), ContactAction::Accept));
    Ok(())
}

async fn expect_presence(events: &mut Events, who: &str) -> Option<Presence> {
    let who = user(who);
    expect(events, "a presence", |e| match e {
        Event::Presence { user, presence, .. } if user == who => Some(presence),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn contacts_see_presence_online_then_offline_on_abrupt_drop() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut alice_events) = connect(&server, "alice", "phone").await?;
    let bob_runtime = Abrupt::new()?;
    let (bob, mut bob_events) = bob_runtime.connect(config(&server, "bob", "phone")).await?;
    become_contacts(&alice, &mut alice_events, &bob, &mut bob_events).await?;

    alice.watch_presence(&user("bob")).await?;
    let online = expect_presence(&mut alice_events, "bob").await;
    assert_eq!(
        online.map(|p| p.availability),
        Some(Availability::Available)
    );

    bob_runtime.kill();
    let offline = expect_presence(&mut alice_events, "bob").await;
    assert_eq!(offline.map(|p| p.availability), Some(Availability::Offline));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_clean_close_publishes_offline_with_last_active() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut alice_events) = connect(&server, "alice", "phone").await?;
    let (bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    become_contacts(&alice, &mut alice_events, &bob, &mut bob_events).await?;
    alice.watch_presence(&user("bob")).await?;
    expect_presence(&mut alice_events, "bob").await;

    bob.close().await?;
    tokio::time::timeout(WAIT, async { while bob_events.next().await.is_some() {} }).await?;
    let offline = expect_presence(&mut alice_events, "bob")
        .await
        .expect("a presence, not a cleared one");
    assert_eq!(offline.availability, Availability::Offline);
    assert!(offline.last_active.is_some(), "{offline:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn presence_of_strangers_is_refused() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, mut alice_events) = connect(&server, "alice", "phone").await?;
    alice.watch_presence(&user("carol")).await?;
    let code = expect(&mut alice_events, "a refused subscription", |e| match e {
        Event::Error { code, detail, .. } => {
            assert!(detail.is_some_and(|d| d.contains("pr/carol")));
            Some(code)
        }
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::FORBIDDEN);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn declined_requests_are_seen() -> anyhow::Result<()> {
    let server = server().await?;
    let (carol, mut carol_events) = connect(&server, "carol", "phone").await?;
    let (bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    carol
        .contact(user("bob"), ContactAction::Request, None)
        .await?;
    expect(&mut bob_events, "the request", |e| {
        matches!(e, Event::Contact { own: false, .. }).then_some(())
    })
    .await;
    bob.contact(user("carol"), ContactAction::Decline, None)
        .await?;
    let action = expect(&mut carol_events, "the answer", |e| match e {
        Event::Contact {
            own: false,
            contact,
            ..
        } => Some(contact.action),
        _ => None,
    })
    .await;
    assert_eq!(action, ContactAction::Decline);
    // Accepting a declined request does not fit the state machine.
    let err = bob
        .contact(user("carol"), ContactAction::Accept, None)
        .await
        .expect_err("nothing to accept");
    assert_eq!(err.refused(), Some(ErrorCode::CONFLICT), "{err}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn profile_changes_are_seen() -> anyhow::Result<()> {
    let server = server().await?;
    let (alice, _alice_events) = connect(&server, "alice", "phone").await?;
    let (bob, mut bob_events) = connect(&server, "bob", "phone").await?;
    let version = alice
        .set_profile(Profile {
            name: Some("Alice Liddell".into()),
            ..Profile::default()
        })
        .await?;
    bob.watch_profile(&user("alice")).await?;
    let seen = expect(&mut bob_events, "alice's profile", |e| match e {
        Event::Profile {
            user,
            version,
            profile,
        } => Some((user, version, profile.name)),
        _ => None,
    })
    .await;
    assert_eq!(seen, (user("alice"), version, Some("Alice Liddell".into())));

    let next = alice
        .set_profile(Profile {
            status: Some("Down the rabbit hole".into()),
            ..Profile::default()
        })
        .await?;
    assert!(next > version);
    let seen = expect(&mut bob_events, "the changed profile", |e| match e {
        Event::Profile {
            version, profile, ..
        } => Some((version, profile)),
        _ => None,
    })
    .await;
    assert_eq!(seen.0, next);
    assert_eq!(seen.1.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(seen.1.status.as_deref(), Some("Down the rabbit hole"));
    server.stop().await;
    Ok(())
}
