//! TLS (issue 15): `listen_tls` and `listen_wss` with certificates of a test CA made at run
//! time, the SDK over `mqtts://` and `wss://` trusting that CA's file; certificates for
//! another host, expired ones, plain MQTT and TLS 1.1 refused; a reload that new
//! connections see while the connections already made stay up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mqchat_client::{Client, ClientConfig, Events};
use mqchat_proto::body::Message;
use mqchat_server::tls::TlsFiles;
use mqchat_testkit::{TestCa, TestServer};

use crate::common::{PASSWORD, WAIT, config_at, conv, expect_incoming};

/// The names the test certificates are for: what the clients connect to.
const HERE: &[&str] = &["localhost", "127.0.0.1"];

struct Setup {
    server: TestServer,
    dir: tempfile::TempDir,
    files: TlsFiles,
}

impl Setup {
    /// A server with MQTT/TLS and WSS listeners serving `cert`'s files (and the users alice
    /// and bob), its certificate files checked every second when `watch`.
    async fn start(
        ca: &TestCa,
        names: &[&str],
        expired: bool,
        watch: bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let cert = match expired {
            true => ca.issue_expired(names)?,
            false => ca.issue(names)?,
        };
        cert.write(&files)?;
        let tls_files = files.clone();
        let server = TestServer::start_with(move |c| {
            c.listen_tls = Some(([127, 0, 0, 1], 0).into());
            c.listen_wss = Some(([127, 0, 0, 1], 0).into());
            c.tls.cert = Some(tls_files.cert);
            c.tls.key = Some(tls_files.key);
            c.tls.reload_interval_secs = if watch { 1 } else { 0 };
        })
        .await?;
        for user in ["alice", "bob"] {
            server.add_user(user, PASSWORD)?;
        }
        Ok(Self { server, dir, files })
    }

    /// Writes `ca`'s certificate to a file of its own and returns its path.
    fn ca_file(&self, ca: &TestCa, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        ca.write(&path)?;
        Ok(path)
    }

    fn config(&self, url: &str, user: &str, device: &str, ca_file: &Path) -> ClientConfig {
        config_at(url, &self.server, user, device)
            .ca_file(ca_file)
            .connect_timeout(Duration::from_secs(5))
    }

    async fn connect(
        &self,
        url: &str,
        user: &str,
        device: &str,
        ca_file: &Path,
    ) -> Result<(Client, Events), mqchat_client::Error> {
        Client::connect(self.config(url, user, device, ca_file)).await
    }
}

/// Sends `text` from `from` to bob and waits until `events` (bob's) has it.
async fn exchange(from: &Client, bob: &mut Events, text: &str) -> anyhow::Result<()> {
    from.send(conv("bob"), Message::text(text)).await?;
    let (_, _, sender, got) = expect_incoming(bob).await;
    assert_eq!((sender.as_str(), got.as_str()), ("alice", text));
    Ok(())
}

/// The connection is refused for its certificate: an unreachable server, and a message
/// saying why (the TLS error is the SDK error's source, so the chain says it).
fn assert_refused(result: Result<(Client, Events), mqchat_client::Error>, why: &str) {
    match result {
        Ok(_) => panic!("connected, though {why}"),
        Err(e) => {
            let said = format!("{:#}", anyhow::Error::new(e.clone()));
            assert!(e.is_unreachable(), "{why}: {said}");
            assert!(
                said.to_lowercase().contains("certificate"),
                "{why}: the error does not say it is the certificate: {said}"
            );
        }
    }
}

#[tokio::test]
async fn mqtts_and_wss_with_a_ca_file_carry_messages() -> anyhow::Result<()> {
    let ca = TestCa::new("mqchat test CA")?;
    let setup = Setup::start(&ca, HERE, false, false).await?;
    let ca_file = setup.ca_file(&ca, "ca.pem")?;
    assert!(setup.server.mqtts_url().starts_with("mqtts://127.0.0.1:"));
    let (alice, _alice_events) = setup
        .connect(&setup.server.mqtts_url(), "alice", "phone", &ca_file)
        .await?;
    let (_bob, mut bob_events) = setup
        .connect(&setup.server.wss_url(), "bob", "web", &ca_file)
        .await?;
    exchange(&alice, &mut bob_events, "over mqtts, to wss").await?;
    // The host name in the certificate works as well as its address.
    let by_name = format!(
        "mqtts://localhost:{}",
        setup.server.server().tls_addr().expect("tls").port()
    );
    let (alice_too, _events) = setup.connect(&by_name, "alice", "laptop", &ca_file).await?;
    exchange(&alice_too, &mut bob_events, "by name").await?;
    setup.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() -> anyhow::Result<()> {
    let ca = TestCa::new("mqchat test CA")?;
    let setup = Setup::start(&ca, &["chat.example.org"], false, false).await?;
    let ca_file = setup.ca_file(&ca, "ca.pem")?;
    for url in [setup.server.mqtts_url(), setup.server.wss_url()] {
        assert_refused(
            setup.connect(&url, "alice", "phone", &ca_file).await,
            "the certificate is for chat.example.org",
        );
    }
    setup.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_expired_certificate_is_refused() -> anyhow::Result<()> {
    let ca = TestCa::new("mqchat test CA")?;
    let setup = Setup::start(&ca, HERE, true, false).await?;
    let ca_file = setup.ca_file(&ca, "ca.pem")?;
    for url in [setup.server.mqtts_url(), setup.server.wss_url()] {
        assert_refused(
            setup.connect(&url, "alice", "phone", &ca_file).await,
            "the certificate expired in 2021",
        );
    }
    setup.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let ca = TestCa::new("mqchat test CA")?;
    let stranger = TestCa::new("someone else's CA")?;
    let setup = Setup::start(&ca, HERE, false, false).await?;
    let other_file = setup.ca_file(&stranger, "other.pem")?;
    assert_refused(
        setup
            .connect(&setup.server.mqtts_url(), "alice", "phone", &other_file)
            .await,
        "the client trusts another CA",
    );
    // Nor do the system's roots know a CA made a moment ago.
    let system = config_at(&setup.server.mqtts_url(), &setup.server, "alice", "phone")
        .connect_timeout(Duration::from_secs(5));
    match Client::connect(system).await {
        Ok(_) => panic!("the system's roots trusted a test CA"),
        Err(e) => assert!(e.is_unreachable() || e.is_invalid(), "{e}"),
    }
    setup.server.stop().await;
    Ok(())
}

/// Reads what the server sends until it closes the connection (or `WAIT` passes).
fn read_to_close(stream: &mut std::net::TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Appends `items` as big-endian u16s after their length in bytes (a u16).
fn u16_list(out: &mut Vec<u8>, items: &[u16]) {
    out.extend_from_slice(&u16::try_from(items.len() * 2).expect("small").to_be_bytes());
    for item in items {
        out.extend_from_slice(&item.to_be_bytes());
    }
}

/// A TLS 1.1 ClientHello (version 3.2 and no supported_versions extension, so nothing
/// newer is offered). Everything else would suit the server (ECDHE with AES-GCM, P-256 and
/// x25519, ECDSA signatures), so the version alone is what it refuses.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    u16_list(&mut body, &[0xc02b, 0xc02f, 0xc013, 0x002f]);
    body.extend_from_slice(&[1, 0]);
    let mut extensions = Vec::new();
    for (kind, items) in [
        (0x000a_u16, &[0x001d_u16, 0x0017][..]),
        (0x000d, &[0x0403, 0x0804, 0x0401][..]),
    ] {
        let mut data = Vec::new();
        u16_list(&mut data, items);
        extensions.extend_from_slice(&kind.to_be_bytes());
        extensions.extend_from_slice(&u16::try_from(data.len()).expect("small").to_be_bytes());
        extensions.extend_from_slice(&data);
    }
    // ec_point_formats: uncompressed.
    extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    body.extend_from_slice(
        &u16::try_from(extensions.len())
            .expect("small")
            .to_be_bytes(),
    );
    body.extend_from_slice(&extensions);
    let len = u32::try_from(body.len()).expect("small").to_be_bytes();
    let mut handshake = vec![1, len[1], len[2], len[3]];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).expect("small").to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn plain_mqtt_and_tls_1_1_get_nothing_from_the_tls_ports() -> anyhow::Result<()> {
    let ca = TestCa::new("mqchat test CA")?;
    let setup = Setup::start(&ca, HERE, false, false).await?;
    let ports = [
        setup.server.server().tls_addr().expect("tls"),
        setup.server.server().wss_addr().expect("wss"),
    ];
    let mut checks = Vec::new();
    for addr in ports {
        checks.push(tokio::task::spawn_blocking(move || {
            // An MQTT 3.1.1 CONNECT in clear, client id "x": no CONNACK comes back.
            let mut plain = std::net::TcpStream::connect(addr).expect("connect");
            plain
                .write_all(&[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'x',
                ])
                .expect("write");
            let reply = read_to_close(&mut plain);
            assert!(
                reply.first() != Some(&0x20),
                "{addr}: a CONNACK in clear: {reply:?}"
            );
            // TLS 1.1: a fatal protocol_version alert (70), no ServerHello.
            let mut old = std::net::TcpStream::connect(addr).expect("connect");
            old.write_all(&tls11_client_hello()).expect("write");
            let reply = read_to_close(&mut old);
            assert_eq!(
                reply.first(),
                Some(&0x15),
                "{addr}: not an alert: {reply:?}"
            );
            assert_eq!(reply.get(5..7), Some(&[2, 70][..]), "{addr}: {reply:?}");
        }));
    }
    for check in checks {
        check.await?;
    }
    setup.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_reload_serves_new_connections_the_new_certificate_and_keeps_the_old_ones()
-> anyhow::Result<()> {
    let first = TestCa::new("first CA")?;
    let second = TestCa::new("second CA")?;
    let setup = Setup::start(&first, HERE, false, false).await?;
    let first_file = setup.ca_file(&first, "first.pem")?;
    let second_file = setup.ca_file(&second, "second.pem")?;
    let (alice, _alice_events) = setup
        .connect(&setup.server.mqtts_url(), "alice", "phone", &first_file)
        .await?;
    let (_bob, mut bob_events) = setup
        .connect(&setup.server.wss_url(), "bob", "web", &first_file)
        .await?;
    assert_refused(
        setup
            .connect(&setup.server.mqtts_url(), "alice", "tablet", &second_file)
            .await,
        "the server still has the first CA's certificate",
    );

    second.issue(HERE)?.write(&setup.files)?;
    setup
        .server
        .server()
        .reload_tls()
        .await
        .map_err(anyhow::Error::msg)?;

    for url in [setup.server.mqtts_url(), setup.server.wss_url()] {
        assert_refused(
            setup.connect(&url, "alice", "tablet", &first_file).await,
            "new connections get the second CA's certificate",
        );
        let (_client, _events) = setup.connect(&url, "alice", "tablet", &second_file).await?;
    }
    // The connections made before the reload are still up, both ways.
    exchange(&alice, &mut bob_events, "still connected").await?;

    // Files that do not make a certificate are refused, and the listeners keep the one
    // they have.
    std::fs::write(&setup.files.key, "not a key\n")?;
    let refused = setup.server.server().reload_tls().await;
    assert!(
        refused.is_err_and(|e| e.contains("key.pem")),
        "a bad key was taken"
    );
    let (_client, _events) = setup
        .connect(&setup.server.mqtts_url(), "alice", "tablet", &second_file)
        .await?;
    setup.server.stop().await;
    Ok(())
}

#[tokio::test]
async fn changed_files_are_reloaded_without_a_signal() -> anyhow::Result<()> {
    let first = TestCa::new("first CA")?;
    let second = TestCa::new("second CA")?;
    let setup = Setup::start(&first, HERE, false, true).await?;
    let second_file = setup.ca_file(&second, "second.pem")?;
    second.issue(HERE)?.write(&setup.files)?;
    // The watch looks every second: try new connections until one gets the new
    // certificate (each refused attempt ends at once).
    let deadline = Instant::now() + WAIT;
    loop {
        match setup
            .connect(&setup.server.mqtts_url(), "alice", "phone", &second_file)
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the changed files were not reloaded within {WAIT:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    setup.server.stop().await;
    Ok(())
}
