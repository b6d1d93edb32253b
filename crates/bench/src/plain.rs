//! The floor: the same one-to-one pattern on a plain MQTT broker, with no hub, no archive
//! and no sequencing. The sender of pair i publishes the message (the very CBOR payload an
//! mqchat device sends) at QoS 1 straight to `mq/in/b{i}/d`; the recipient answers each with
//! a delivered marker at QoS 1 on `mq/in/a{i}/d`. Same client library, same options
//! (persistent sessions, TCP_NODELAY), same payloads as the mqchat pairs.

use std::net::SocketAddr;
use std::sync::Arc;

use mqchat_proto::body::{Body, Delivered, Message};
use mqchat_proto::{ConversationRef, Packet, PacketKind};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, Incoming};
use tokio::task::JoinSet;

use crate::load::{Meter, Pacer, parse_stamp, stamp_text};
use crate::mqchat::{self, Ids, inbox_topic, pair_users};
use crate::mqtt::{self, Connection, Login};

fn login(user: &str) -> Login {
    Login {
        client_id: format!("{user}:{}", mqchat::DEVICE),
        username: user.to_owned(),
        password: "bench".to_owned(),
        persistent: true,
        will: None,
    }
}

async fn connect(addr: SocketAddr, user: &str) -> anyhow::Result<Connection> {
    let mut conn = mqtt::connect(mqtt::options(addr, &login(user)), 4096).await?;
    conn.subscribe(&[(inbox_topic(user), QoS::AtLeastOnce)])
        .await?;
    Ok(conn)
}

/// Connects the meter's pairs to the broker at `addr` and starts their tasks.
pub async fn start_pairs(
    addr: SocketAddr,
    meter: &Arc<Meter>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    for i in 0..meter.pairs() {
        let (a, b) = pair_users(i);
        let recipient = connect(addr, &b).await?;
        let sender = connect(addr, &a).await?;
        let a_conv = ConversationRef::parse(&a)?;
        let b_conv = ConversationRef::parse(&b)?;
        tasks.spawn(recipient_loop(recipient, a, a_conv, i, meter.clone()));
        let Connection { client, events, .. } = sender;
        tasks.spawn(receipt_loop(events, i, meter.clone()));
        tasks.spawn(sender_loop(
            client,
            b,
            b_conv,
            meter.pacer(i),
            meter.clone(),
        ));
    }
    Ok(())
}

async fn sender_loop(
    client: AsyncClient,
    peer: String,
    peer_conv: ConversationRef,
    mut pacer: Pacer,
    meter: Arc<Meter>,
) {
    let topic = inbox_topic(&peer);
    let mut ids = Ids::new();
    while let Some(stamp) = pacer.next().await {
        let payload = mqchat::message(&mut ids, &peer_conv, stamp_text(stamp));
        if client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            meter.error();
            return;
        }
        pacer.sent(stamp);
    }
}

async fn recipient_loop(
    mut conn: Connection,
    peer: String,
    peer_conv: ConversationRef,
    index: usize,
    meter: Arc<Meter>,
) {
    let topic = inbox_topic(&peer);
    let mut count = 0;
    loop {
        let publish = match conn.events.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("mqchat-bench: recipient {index}: connection failed: {e}");
                meter.error();
                return;
            }
        };
        let Ok(packet) = Packet::decode(&publish.payload) else {
            continue;
        };
        let Some(stamp) = Message::from_packet(&packet)
            .ok()
            .and_then(|m| parse_stamp(&m.text))
        else {
            continue;
        };
        meter.delivered(index, stamp);
        // No hub numbers the messages: the recipient counts them for its marker.
        count += 1;
        let marker = mqchat::delivered(&peer_conv, count);
        if conn
            .client
            .try_publish(topic.as_str(), QoS::AtLeastOnce, false, marker)
            .is_err()
        {
            meter.error();
        }
    }
}

async fn receipt_loop(mut events: EventLoop, index: usize, meter: Arc<Meter>) {
    let mut receipted = 0;
    loop {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Incoming::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("mqchat-bench: sender {index}: connection failed: {e}");
                meter.error();
                return;
            }
        };
        if let Ok(packet) = Packet::decode(&publish.payload)
            && packet.kind == PacketKind::DELIVERED
            && let Ok(marker) = Delivered::from_packet(&packet)
            && marker.up_to > receipted
        {
            meter.receipts(marker.up_to - receipted);
            receipted = marker.up_to;
        }
    }
}
