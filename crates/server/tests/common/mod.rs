//! A plain MQTT device (rumqttc used directly, not the SDK) for the server's tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use mqchat_proto::{Packet, Registry};
use mqchat_testkit::TestServer;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use mqchat_testkit::WAIT;

pub struct Device {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    pub registry: Registry,
    /// Publishes that arrived while waiting for an acknowledgement, kept for `receive`.
    held: VecDeque<Publish>,
}

impl Device {
    pub fn options(server: &TestServer, user: &str, device: &str, password: &str) -> MqttOptions {
        let addr = server.tcp_addr();
        let mut options = MqttOptions::new(
            format!("{user}:{device}"),
            addr.ip().to_string(),
            addr.port(),
        );
        options
            .set_credentials(user, password)
            .set_max_packet_size(Some(1 << 20));
        options
    }

    /// Connects and waits for the CONNACK.
    pub async fn connect(options: MqttOptions) -> Result<Self, ConnectionError> {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        loop {
            match tokio::time::timeout(WAIT, eventloop.poll())
                .await
                .expect("connect timed out")?
            {
                Event::Incoming(Incoming::ConnAck(_)) => break,
                _ => continue,
            }
        }
        Ok(Self {
            client,
            eventloop,
            registry: Registry::with_core(),
            held: VecDeque::new(),
        })
    }

    pub async fn login(server: &TestServer, user: &str, device: &str) -> Self {
        Self::connect(Self::options(server, user, device, "pw"))
            .await
            .expect("login")
    }

    /// Subscribes and returns whether the broker allowed it.
    pub async fn subscribe(&mut self, filter: &str) -> bool {
        matches!(self.suback(filter).await, SubscribeReasonCode::Success(_))
    }

    /// Unsubscribes and returns whether the broker acknowledged it.
    pub async fn unsubscribe(&mut self, filter: &str) -> bool {
        self.client
            .unsubscribe(filter)
            .await
            .expect("queue unsubscribe");
        loop {
            match self.next_incoming().await {
                Incoming::UnsubAck(_) => return true,
                Incoming::Publish(p) => self.held.push_back(p),
                _ => {}
            }
        }
    }

    /// Subscribes and returns the SUBACK's reason code.
    pub async fn suback(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        loop {
            match self.next_incoming().await {
                Incoming::SubAck(ack) => {
                    return ack.return_codes.first().copied().expect("one reason code");
                }
                Incoming::Publish(p) => self.held.push_back(p),
                _ => {}
            }
        }
    }

    pub async fn inbox(&mut self, user: &str, device: &str) {
        for filter in [
            format!("mq/in/{user}/d"),
            format!("mq/in/{user}/e"),
            format!("mq/in/{user}/r/{device}"),
        ] {
            assert!(self.subscribe(&filter).await, "own inbox {filter}");
        }
    }

    /// Publishes at QoS 1 and returns whether the broker accepted it (PUBACK success).
    pub async fn publish_raw(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("queue publish");
        loop {
            match self.next_incoming().await {
                Incoming::PubAck(ack) => {
                    return matches!(
                        ack.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    );
                }
                Incoming::Publish(p) => self.held.push_back(p),
                _ => {}
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, packet: Value) -> bool {
        let payload = self
            .registry
            .from_json(&packet)
            .expect("test packet")
            .encode();
        self.publish_raw(topic, payload, false).await
    }

    pub async fn next_incoming(&mut self) -> Incoming {
        loop {
            match tokio::time::timeout(WAIT, self.eventloop.poll())
                .await
                .expect("nothing arrived in time")
            {
                Ok(Event::Incoming(incoming)) => return incoming,
                Ok(Event::Outgoing(_)) => continue,
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    }

    /// The next packet published to this device: (topic, JSON rendering).
    pub async fn receive(&mut self) -> (String, Value) {
        let p = match self.held.pop_front() {
            Some(p) => p,
            None => loop {
                if let Incoming::Publish(p) = self.next_incoming().await {
                    break p;
                }
            },
        };
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let json = match Packet::decode(&p.payload) {
            Ok(packet) => self.registry.to_json(&packet),
            Err(_) => json!({"raw": p.payload.len()}),
        };
        (topic, json)
    }
}

/// An MQTT 3.1.1 CONNECT from the local address `from`, by hand: returns the CONNACK's
/// return code.
pub async fn raw_connect(from: IpAddr, to: SocketAddr, user: &str, device: &str, pw: &str) -> u8 {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut stream = socket.connect(to).await.expect("connect");
    let field = |s: &str| {
        let mut out = (s.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    };
    let mut body = field("MQTT");
    body.extend_from_slice(&[4, 0xC2, 0, 60]);
    body.extend(field(&format!("{user}:{device}")));
    body.extend(field(user));
    body.extend(field(pw));
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    stream.write_all(&packet).await.expect("write");
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(connack[0], 0x20, "a CONNACK");
    connack[3]
}

/// One connection attempt with rumqttc: `Ok` when accepted, the refusal's code otherwise.
pub async fn attempt(
    server: &TestServer,
    user: &str,
    device: &str,
    pw: &str,
) -> Result<(), ConnectReturnCode> {
    match Device::connect(Device::options(server, user, device, pw)).await {
        Ok(_) => Ok(()),
        Err(ConnectionError::ConnectionRefused(code)) => Err(code),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// A server with the users alice, bob, carol and mallory (password `pw`), its settings
/// adjusted by `adjust`.
pub async fn server_with(adjust: impl FnOnce(&mut mqchat_server::ServerConfig)) -> TestServer {
    let server = TestServer::start_with(adjust).await.expect("server");
    for user in ["alice", "bob", "carol", "mallory"] {
        server.add_user(user, "pw").expect("user");
    }
    server
}
