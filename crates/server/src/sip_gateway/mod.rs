//! The SIP gateway (spec section 19): UDP and TCP listeners for configured SIP peers, and an
//! MQTT client of the broker (with the hub's credentials) that exchanges `sip` packets with
//! the hub on `{root}/gw/{gateway}/in` and `/out`.
//!
//! ```text
//! peers ─UDP/TCP─► reader tasks ─┐                       ┌─► UDP socket / TCP writers
//!                                ├─► gateway task (Core) ┤
//! hub ─{root}/gw/{gw}/out─► MQTT ┘        ▲ timers       └─► {root}/gw/{gw}/in ─► hub
//! ```
//!
//! All SIP logic is in [`mqchat_gateway::Core`], which does no IO and is tested on its own;
//! this module moves bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqchat_gateway::{Core, CoreConfig, Output, Peers, Remote, SipTransport};
use mqchat_hub::HubCredentials;
use mqchat_proto::body::Sip;
use mqchat_proto::{Body, GatewayDirection, GatewayName, Moment, Packet, Topic, TopicRoot};
use mqchat_sip::{Framer, Limits, Timing};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::SipConfig;

/// How the gateway reaches the broker.
#[derive(Clone, Debug)]
pub(crate) struct GatewayLink {
    /// The broker: host, port, and TLS settings for `mqtts://`.
    pub(crate) broker: crate::tls::BrokerTarget,
    pub(crate) credentials: HubCredentials,
    pub(crate) root: TopicRoot,
    /// Keep trying to connect at start (an external broker may come up later).
    pub(crate) wait_for_broker: bool,
}

/// Something for the gateway task.
enum Input {
    Datagram(SocketAddr, Vec<u8>),
    Stream(SocketAddr, Vec<u8>),
    StreamFailed(SocketAddr),
    Hub(Sip),
}

/// The TCP connections by peer address: a channel to each one's writer.
type Writers = Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>>;

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    client: AsyncClient,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Binds the listeners, connects to the broker and subscribes to the gateway's out topic;
    /// returns once SIP can flow.
    pub(crate) async fn start(config: &SipConfig, link: GatewayLink) -> Result<Gateway, String> {
        config.validate()?;
        let name = GatewayName::parse(&config.gateway_name).map_err(|e| e.to_string())?;
        let peers = Peers::new(&config.peers)?;
        let udp = match config.listen_udp {
            Some(addr) => Some(Arc::new(
                UdpSocket::bind(addr)
                    .await
                    .map_err(|e| format!("SIP UDP listener {addr}: {e}"))?,
            )),
            None => None,
        };
        let tcp = match config.listen_tcp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("SIP TCP listener {addr}: {e}"))?,
            ),
            None => None,
        };
        let udp_addr = udp.as_ref().and_then(|s| s.local_addr().ok());
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());

        let topic_in = link.root.topic(&Topic::Gateway {
            gateway: name.clone(),
            direction: GatewayDirection::In,
        });
        let topic_out = link.root.topic(&Topic::Gateway {
            gateway: name,
            direction: GatewayDirection::Out,
        });

        let mut options = link.broker.options(&format!(
            "{}-gw-{}",
            link.credentials.username, config.gateway_name
        ));
        options
            .set_credentials(&link.credentials.username, &link.credentials.secret)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(1024 * 1024))
            .set_request_channel_capacity(1024);
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut tasks = vec![tokio::spawn(run_mqtt(
            eventloop,
            client.clone(),
            topic_out,
            input_tx.clone(),
            link.wait_for_broker,
            ready_tx,
        ))];
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("SIP gateway link: {e}")),
            Err(_) => return Err("SIP gateway link stopped before subscribing".into()),
        }

        let writers: Writers = Arc::default();
        if let Some(udp) = &udp {
            tasks.push(tokio::spawn(run_udp(udp.clone(), input_tx.clone())));
        }
        if let Some(tcp) = tcp {
            tasks.push(tokio::spawn(run_accept(
                tcp,
                writers.clone(),
                input_tx.clone(),
            )));
        }
        let timing = Timing {
            t1: Duration::from_millis(config.t1_ms),
            t2: Duration::from_millis(config.t2_ms),
            t4: Duration::from_millis(config.t4_ms),
        };
        let secret: [u8; 16] = rand::random();
        let core = Core::new(
            CoreConfig {
                realm: config.domain.clone(),
                timing,
                local_udp: udp_addr,
                local_tcp: tcp_addr,
            },
            peers,
            rand::random(),
            secret.iter().map(|b| format!("{b:02x}")).collect(),
        );
        tasks.push(tokio::spawn(run_core(
            core,
            Shell {
                udp,
                writers,
                input: input_tx,
                client: client.clone(),
                topic_in,
            },
            input_rx,
            stop_rx,
        )));
        tracing::info!(udp = ?udp_addr, tcp = ?tcp_addr, gateway = %config.gateway_name, "SIP gateway listening");
        Ok(Gateway {
            udp_addr,
            tcp_addr,
            client,
            stop: stop_tx,
            tasks,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Stops the listeners and disconnects from the broker.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.client.disconnect().await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The gateway task's handles on the outside world.
struct Shell {
    udp: Option<Arc<UdpSocket>>,
    writers: Writers,
    input: mpsc::UnboundedSender<Input>,
    client: AsyncClient,
    topic_in: String,
}

impl Shell {
    async fn perform(&self, output: Output) -> Option<Remote> {
        match output {
            Output::Send { to, bytes } => match to.transport {
                SipTransport::Udp => match &self.udp {
                    Some(socket) => {
                        if let Err(e) = socket.send_to(&bytes, to.addr).await {
                            tracing::info!(%to, error = %e, "SIP: UDP send failed");
                            return Some(to);
                        }
                    }
                    None => {
                        tracing::info!(%to, "SIP: UDP is off (sip.listen_udp)");
                        return Some(to);
                    }
                },
                SipTransport::Tcp => self.send_tcp(to.addr, bytes),
            },
            Output::ToHub(sip) => {
                let payload = sip.to_packet().encode();
                if let Err(e) = self
                    .client
                    .publish(self.topic_in.clone(), QoS::AtLeastOnce, false, payload)
                    .await
                {
                    tracing::error!(error = %e, "SIP gateway cannot publish to the hub");
                }
            }
        }
        None
    }

    /// Writes on the connection to `addr`, opening one when there is none.
    fn send_tcp(&self, addr: SocketAddr, bytes: Vec<u8>) {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = writers.get(&addr)
            && writer.send(bytes.clone()).is_ok()
        {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(bytes);
        writers.insert(addr, tx.clone());
        let writers = self.writers.clone();
        let input = self.input.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => serve_stream(stream, addr, tx, rx, writers, input).await,
                _ => {
                    tracing::info!(%addr, "SIP: cannot connect over TCP");
                    forget(&writers, addr);
                    let _ = input.send(Input::StreamFailed(addr));
                }
            }
        });
    }
}

fn forget(writers: &Writers, addr: SocketAddr) {
    writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&addr);
}

async fn run_core(
    mut core: Core,
    shell: Shell,
    mut input: mpsc::UnboundedReceiver<Input>,
    mut stop: watch::Receiver<bool>,
) {
    // The core's monotonic clock, on tokio's time (the time the sleeps below wait on).
    let epoch = tokio::time::Instant::now();
    let at = || Moment::from_origin(epoch.elapsed());
    loop {
        let wake = core
            .next_timeout()
            .map(|t| epoch + t.since_origin())
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let outputs = tokio::select! {
            _ = stop.changed() => return,
            next = input.recv() => {
                let Some(next) = next else { return };
                let now = at();
                match next {
                    Input::Datagram(from, bytes) => core.on_peer(
                        Remote { transport: SipTransport::Udp, addr: from }, &bytes, now),
                    Input::Stream(from, bytes) => core.on_peer(
                        Remote { transport: SipTransport::Tcp, addr: from }, &bytes, now),
                    Input::StreamFailed(addr) => core.transport_failed(
                        Remote { transport: SipTransport::Tcp, addr }, now),
                    Input::Hub(sip) => core.on_hub(&sip, now),
                }
            }
            _ = tokio::time::sleep_until(wake) => core.tick(at()),
        };
        for output in outputs {
            if let Some(failed) = shell.perform(output).await {
                for more in core.transport_failed(failed, at()) {
                    let _ = shell.perform(more).await;
                }
            }
        }
    }
}

async fn run_udp(socket: Arc<UdpSocket>, input: mpsc::UnboundedSender<Input>) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((n, from)) => {
                // Keep-alive datagrams (CRLF, RFC 5626) carry no message.
                if buffer[..n].iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                    continue;
                }
                if input
                    .send(Input::Datagram(from, buffer[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            // ICMP port-unreachable surfaces here on some systems: not fatal.
            Err(e) => tracing::debug!(error = %e, "SIP: UDP receive error"),
        }
    }
}

async fn run_accept(listener: TcpListener, writers: Writers, input: mpsc::UnboundedSender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let (tx, rx) = mpsc::unbounded_channel();
                writers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(addr, tx.clone());
                tokio::spawn(serve_stream(
                    stream,
                    addr,
                    tx,
                    rx,
                    writers.clone(),
                    input.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIP: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads framed messages from a connection and writes what the gateway sends on it, until
/// either side closes it or its framing breaks.
async fn serve_stream(
    stream: TcpStream,
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    writers: Writers,
    input: mpsc::UnboundedSender<Input>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut framer = Framer::new(Limits {
        max_message_bytes: mqchat_proto::body::SIP_MESSAGE_BYTES,
        max_headers: 200,
    });
    let mut buffer = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buffer[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(frame)) => {
                    if input.send(Input::Stream(addr, frame)).is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%addr, error = %e, "SIP: broken TCP framing, closing");
                    break 'read;
                }
            }
        }
        for _ in 0..framer.take_pings() {
            let _ = tx.send(b"\r\n".to_vec());
        }
    }
    forget(&writers, addr);
    drop(tx);
    write.abort();
}

/// Polls the gateway's MQTT connection: subscribes to the out topic after every CONNACK and
/// hands the hub's `sip` packets to the gateway task.
async fn run_mqtt(
    mut eventloop: EventLoop,
    client: AsyncClient,
    topic_out: String,
    input: mpsc::UnboundedSender<Input>,
    wait_for_broker: bool,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                let client = client.clone();
                let topic = topic_out.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.subscribe(topic, QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, "SIP gateway could not subscribe");
                    }
                });
            }
            Ok(Event::Incoming(Incoming::SubAck(suback))) => {
                let refused = suback.return_codes.iter().any(|c| {
                    !matches!(
                        c,
                        rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                    )
                });
                if let Some(ready) = ready.take() {
                    let _ = ready.send(if refused {
                        Err("the broker refused the gateway's subscription".into())
                    } else {
                        Ok(())
                    });
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                match Packet::decode(&publish.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|p| Sip::from_packet(&p).map_err(|e| e.to_string()))
                {
                    Ok(sip) => {
                        if input.send(Input::Hub(sip)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SIP gateway: bad packet from the hub dropped")
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if !wait_for_broker && let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                tracing::warn!(error = %e, "SIP gateway link to the broker failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
