//! The SIP gateway's transport work through real sockets (UDP and TCP on port 0): peers
//! outside the table get 403, malformed requests 400 or nothing, an INVITE gets 100 Trying at
//! once, its retransmission is absorbed by the transaction (answered with the last
//! response, never passed to the hub again), and the server keeps working throughout. Whole
//! calls with SIPp are in crates/cli/tests/sipp.rs.

use std::net::SocketAddr;

use mqchat_server::config::SipPeer;
use mqchat_sip::Message;
use mqchat_testkit::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn server(peer_addresses: &[&str]) -> TestServer {
    let addresses = peer_addresses.iter().map(|a| a.to_string()).collect();
    TestServer::start_with(|c| {
        c.sip.enabled = true;
        c.sip.listen_udp = Some(([127, 0, 0, 1], 0).into());
        c.sip.listen_tcp = Some(([127, 0, 0, 1], 0).into());
        c.sip.peers = vec![SipPeer {
            name: "pbx".into(),
            addresses,
            domains: vec!["example.net".into()],
            ..SipPeer::default()
        }];
    })
    .await
    .expect("server starts")
}

fn invite(local: SocketAddr, transport: &str, branch: &str) -> String {
    format!(
        "INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:carol@example.net>;tag=c1\r\nTo: <sip:bob@localhost>\r\nCall-ID: {branch}@example.net\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn receive(socket: &UdpSocket) -> Message {
    let mut buffer = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
        .await
        .expect("a response in time")
        .expect("receive");
    Message::parse_syntax(&buffer[..n], &mqchat_sip::Limits::default()).expect("SIP")
}

#[tokio::test]
async fn unknown_peers_are_refused_with_403() {
    let server = server(&["10.0.0.0/8"]).await;
    let gateway = server.sip_udp_addr().expect("udp listener");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let local = socket.local_addr().expect("addr");
    socket
        .send_to(invite(local, "UDP", "z9hG4bKu1").as_bytes(), gateway)
        .await
        .expect("send");
    let response = receive(&socket).await;
    assert_eq!(response.code(), Some(403));
    assert!(
        response
            .to()
            .and_then(|t| t.tag().map(str::to_owned))
            .is_some()
    );
    server.stop().await;
}

#[tokio::test]
async fn udp_invite_gets_one_trying_per_transmission_and_bad_input_is_handled() {
    let server = server(&["127.0.0.1"]).await;
    let gateway = server.sip_udp_addr().expect("udp listener");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let local = socket.local_addr().expect("addr");

    // Junk is dropped (nothing comes back), a malformed request is answered 400.
    socket
        .send_to(b"\x16\x03\x01 not SIP at all", gateway)
        .await
        .expect("send");
    let bad = invite(local, "UDP", "z9hG4bKm1").replace("CSeq: 1 INVITE", "CSeq: x INVITE");
    socket.send_to(bad.as_bytes(), gateway).await.expect("send");
    let response = receive(&socket).await;
    assert_eq!(
        response.code(),
        Some(400),
        "the junk got no answer, the bad CSeq a 400"
    );

    // The INVITE and its retransmission: a 100 each, from the one transaction.
    let request = invite(local, "UDP", "z9hG4bKr1");
    for _ in 0..2 {
        socket
            .send_to(request.as_bytes(), gateway)
            .await
            .expect("send");
        let trying = receive(&socket).await;
        assert_eq!(trying.code(), Some(100));
        let via = trying.top_via().expect("via");
        assert_eq!(via.branch(), Some("z9hG4bKr1"));
        assert_eq!(via.rport(), Some(Some(local.port())));
        assert_eq!(via.received(), Some("127.0.0.1"));
    }
    server.stop().await;
}

#[tokio::test]
async fn tcp_framing_and_keepalives() {
    let server = server(&["127.0.0.1"]).await;
    let gateway = server.sip_tcp_addr().expect("tcp listener");
    let mut stream = TcpStream::connect(gateway).await.expect("connect");
    let local = stream.local_addr().expect("addr");
    // A keep-alive, then an INVITE written in two pieces.
    let request = invite(local, "TCP", "z9hG4bKt1");
    let (a, b) = request.as_bytes().split_at(40);
    stream.write_all(b"\r\n\r\n").await.expect("write");
    stream.write_all(a).await.expect("write");
    stream.flush().await.expect("flush");
    stream.write_all(b).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 4096];
    let trying = loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the gateway closed the connection");
        received.extend_from_slice(&buffer[..n]);
        let mut framer = mqchat_sip::Framer::default();
        framer.push(&received);
        if let Ok(Some(frame)) = framer.next_message() {
            break Message::parse(&frame).expect("SIP");
        }
    };
    assert!(
        received.starts_with(b"\r\n"),
        "the keep-alive is answered with CRLF"
    );
    assert_eq!(trying.code(), Some(100));
    server.stop().await;
}
