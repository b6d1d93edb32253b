//! Property tests: every encode/decode pair round-trips, and no input makes a decoder panic.

use mqchat_proto::body::{
    Ack, Availability, ChatState, Contact, ContactAction, ContactState, ConversationEntry,
    Delivered, ErrorReply, History, HistoryResult, Message, Presence, Profile, Read, State, Sync,
    SyncResult,
};
use mqchat_proto::{
    Access, Body, ConversationRef, Decision, DeviceId, DeviceIdentity, ErrorCode, Fields,
    IdGenerator, MessageId, Packet, PacketKind, Principal, Registry, TopicRoot, UserId, authorize,
    upstream,
};
use proptest::prelude::*;

fn user_id() -> impl Strategy<Value = UserId> {
    "[a-z0-9][a-z0-9._-]{0,31}".prop_map(|s| UserId::parse(&s).expect("regex matches the alphabet"))
}

fn device_id() -> impl Strategy<Value = DeviceId> {
    "[a-z0-9][a-z0-9_-]{0,15}"
        .prop_map(|s| DeviceId::parse(&s).expect("regex matches the alphabet"))
}

fn conv() -> impl Strategy<Value = ConversationRef> {
    prop_oneof![
        user_id().prop_map(ConversationRef::Direct),
        "[a-z0-9][a-z0-9._-]{0,31}"
            .prop_map(|g| ConversationRef::parse(&format!("#{g}")).expect("valid")),
        (
            "[A-Za-z0-9+._-]{1,20}",
            "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}",
            proptest::option::of(5061u16..6000)
        )
            .prop_map(|(user, host, port)| {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                ConversationRef::parse(&format!("sip:{user}@{host}{port}")).expect("canonical")
            }),
    ]
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (1u64..(1 << 63)).prop_map(|v| MessageId::new(v).expect("in range"))
}

/// Any CBOR item, as raw bytes, built from a small tree.
fn cbor_item() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| minicbor::to_vec(n).expect("vec")),
        any::<i64>().prop_map(|n| minicbor::to_vec(n).expect("vec")),
        ".{0,20}".prop_map(|s| minicbor::to_vec(s).expect("vec")),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| minicbor::to_vec(minicbor::bytes::ByteVec::from(b)).expect("vec")),
        any::<bool>().prop_map(|b| minicbor::to_vec(b).expect("vec")),
        Just(vec![0xf6]),
        any::<f64>().prop_map(|f| minicbor::to_vec(f).expect("vec")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        proptest::collection::vec(inner, 0..4).prop_map(|items| {
            let mut out = Vec::new();
            minicbor::Encoder::new(&mut out)
                .array(items.len() as u64)
                .expect("vec");
            for i in items {
                out.extend(i);
            }
            out
        })
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        1u32..5000,
        proptest::option::of(message_id()),
        proptest::option::of(conv()),
        proptest::option::of(1u64..u64::MAX),
        proptest::option::of(any::<u64>()),
        proptest::option::of(user_id()),
        proptest::option::of(device_id()),
        any::<bool>(),
        proptest::collection::btree_map(8u32..2000, cbor_item(), 0..6),
    )
        .prop_map(|(kind, id, conv, seq, ts, from, device, ephemeral, body)| {
            let mut fields = Fields::new();
            for (k, v) in body {
                fields.insert_raw(k, v).expect("one item");
            }
            let mut p = Packet::with_body(PacketKind(kind), fields).expect("body keys >= 8");
            (p.id, p.conv, p.seq, p.ts, p.from, p.device, p.ephemeral) =
                (id, conv, seq, ts, from, device, ephemeral);
            p
        })
}

fn round_trip<B: Body + PartialEq + std::fmt::Debug>(body: &B) {
    let registry = Registry::with_core();
    let packet = body.to_packet();
    let bytes = packet.encode();
    let decoded = Packet::decode(&bytes).expect("decodes");
    assert_eq!(&B::from_packet(&decoded).expect("typed"), body);
    // The JSON rendering round-trips too.
    let json = registry.to_json(&decoded);
    assert_eq!(
        registry.from_json(&json).expect("from json").encode(),
        bytes,
        "{json}"
    );
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{0,{}}}", max.min(64))).expect("regex")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn packets_round_trip(p in packet()) {
        let bytes = p.encode();
        prop_assert_eq!(Packet::decode(&bytes).expect("decodes"), p.clone());
        let registry = Registry::new();
        let json = registry.to_json(&p);
        prop_assert_eq!(registry.from_json(&json).expect("from json"), p);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let registry = Registry::with_core();
        if let Ok(p) = Packet::decode(&bytes) {
            let _ = registry.validate(&p);
            let _ = registry.to_json(&p);
        }
        let _ = upstream::accept(&registry, &TopicRoot::default(), "mq/up/a/b", &bytes, 1000);
    }

    #[test]
    fn decoding_mutated_packets_never_panics(p in packet(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = p.encode();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let registry = Registry::with_core();
        if let Ok(p) = registry.decode(&bytes) {
            let _ = registry.to_json(&p);
        }
        // Whatever decodes comes out in the deterministic encoding, which decodes to itself.
        if let Ok(p) = Packet::decode(&bytes) {
            let encoded = p.encode();
            let again = Packet::decode(&encoded).expect("an encoded packet decodes");
            prop_assert_eq!(&again, &p);
            prop_assert_eq!(again.encode(), encoded);
        }
    }

    #[test]
    fn messages(text in text(100), reply_to in proptest::option::of(1u64..1000), mentions in proptest::collection::vec(user_id(), 0..4)) {
        round_trip(&Message { text, reply_to, mentions });
    }

    #[test]
    fn small_bodies(state in 0usize..5, up_to in 1u64..(1 << 53), private in any::<bool>(), action in 0usize..5, note in proptest::option::of(text(50))) {
        let states = [State::Active, State::Composing, State::Paused, State::Inactive, State::Gone];
        round_trip(&ChatState { state: states[state] });
        round_trip(&Delivered { up_to });
        round_trip(&Read { up_to, private });
        let actions = [ContactAction::Request, ContactAction::Accept, ContactAction::Decline, ContactAction::Cancel, ContactAction::Remove];
        round_trip(&Contact { action: actions[action], note });
        round_trip(&Ack { duplicate: private });
    }

    #[test]
    fn state_bodies(avail in 0usize..4, status in proptest::option::of(text(40)), last in proptest::option::of(any::<u64>()), name in proptest::option::of(text(40))) {
        let all = [Availability::Offline, Availability::Available, Availability::Away, Availability::Busy];
        round_trip(&Presence { availability: all[avail], status: status.clone(), last_active: last });
        round_trip(&Profile { name, avatar: status.clone(), status });
        round_trip(&ErrorReply { code: ErrorCode(u16::try_from(avail).expect("small") + 1), detail: Some("x".into()), about: Some(1) });
    }

    #[test]
    fn sync_bodies(after in proptest::option::of(any::<u64>()), limit in proptest::option::of(1u64..500), entries in proptest::collection::vec((conv(), 1u64..1000, 0u64..1000, 0usize..4), 0..4)) {
        round_trip(&Sync { after, before: None, limit, newest_first: false });
        round_trip(&History { after, before: None, limit, since: None });
        let contact = [ContactState::None, ContactState::Outgoing, ContactState::Incoming, ContactState::Accepted];
        let conversations = entries.into_iter().map(|(conv, change, unread, c)| {
            let mut e = ConversationEntry::new(conv, change);
            e.unread = unread;
            e.contact = contact[c];
            e.last = Some(Message::text("x").to_packet());
            e
        }).collect();
        round_trip(&SyncResult { conversations, more: true, token: 5 });
        round_trip(&HistoryResult { events: vec![Message::text("a").to_packet()], more: false, first_seq: Some(1), last_seq: after, truncated: true });
    }

    #[test]
    fn group_bodies(name in "[a-zA-Z ]{1,40}", users in proptest::collection::vec(user_id(), 0..4), action in 0usize..7, role in 0usize..3, join in 0usize..3, all in any::<bool>()) {
        use mqchat_proto::body::{AdminAction, GroupAction, GroupAdmin, GroupCreate, GroupEvent, GroupInfoResult, GroupJoin, HistoryVisibility, JoinAction, Member, Role};
        let history = if all { HistoryVisibility::All } else { HistoryVisibility::Joined };
        let roles = [Role::Member, Role::Admin, Role::Owner];
        round_trip(&GroupCreate { name: name.clone(), avatar: None, description: Some("d".into()), invite: users.clone(), history });
        let event = GroupEvent { role: Some(roles[role]), name: Some(name.clone()), history: Some(history), ..GroupEvent::new(GroupAction::Invited, users.first().cloned()) };
        round_trip(&event);
        let actions = [AdminAction::Invite, AdminAction::Cancel, AdminAction::Remove, AdminAction::Role, AdminAction::Transfer, AdminAction::Update, AdminAction::Delete];
        round_trip(&GroupAdmin { action: actions[action], user: users.first().cloned(), role: Some(roles[role]), name: Some(name.clone()), avatar: None, description: None, history: None });
        round_trip(&GroupJoin { action: [JoinAction::Accept, JoinAction::Decline, JoinAction::Leave][join] });
        let members = users.iter().map(|u| Member { user: u.clone(), role: roles[role], invited: all, since: 3, delivered: 2, read: 1 }).collect();
        round_trip(&GroupInfoResult { name, avatar: Some("a".into()), description: None, history, members });
    }

    #[test]
    fn id_text_round_trips(id in message_id()) {
        let text = id.to_string();
        prop_assert_eq!(text.len(), 13);
        prop_assert_eq!(MessageId::parse(&text), Ok(id));
    }

    #[test]
    fn ids_are_monotonic(steps in proptest::collection::vec((0u64..10_000_000_000, any::<u32>()), 1..50)) {
        let mut generator = IdGenerator::new();
        let mut last = None;
        for (t, r) in steps {
            let id = generator.next(mqchat_proto::id::EPOCH_UNIX_MS + t, r);
            prop_assert!(last < Some(id));
            last = Some(id);
        }
    }

    #[test]
    fn a_device_never_reaches_another_users_topics(me in user_id(), my_device in device_id(), other in user_id(), device in device_id(), retain in any::<bool>()) {
        prop_assume!(me != other);
        let root = TopicRoot::default();
        let who = Principal::Device(DeviceIdentity::new(me.clone(), my_device));
        for topic in [format!("mq/up/{other}/{device}"), format!("mq/pr/{other}/{device}"), format!("mq/in/{other}/d"), format!("mq/pf/{other}"), format!("mq/pf/{me}"), format!("mq/in/{me}/d")] {
            prop_assert!(matches!(authorize(&root, &who, Access::Publish { retain }, &topic), Decision::Deny(_)), "publish {}", topic);
        }
        for filter in [format!("mq/in/{other}/d"), format!("mq/in/{other}/#"), "mq/in/+/d".to_owned(), "#".to_owned(), format!("mq/up/{me}/+")] {
            prop_assert!(matches!(authorize(&root, &who, Access::Subscribe, &filter), Decision::Deny(_)), "subscribe {}", filter);
        }
    }
}
