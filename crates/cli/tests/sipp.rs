//! The SIP gateway against a real SIP user agent: SIPp (Debian package `sip-tester`) runs the
//! scenarios of crates/server/tests/sipp/ against `mqchat serve` with `[sip]` enabled on
//! ports the server binds (port 0), while mqchat users take part through the CLI (the SDK):
//! MESSAGE both ways (over UDP and TCP), a call from a SIP peer answered by bob and one from bob answered by a
//! SIP peer (both in history), cancel (487), busy (486), unknown user (404), nobody reachable
//! (480), a retransmitted INVITE ringing once, an unknown peer (403), digest credentials
//! (407, then 200), and malformed input (400 or dropped) with the server still working.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{MQCHAT, User};
use mqchat_sip::Message;
use mqchat_testkit::{Process, WAIT, until, until_seen};

/// A running `mqchat serve` with SIP on.
struct SipServer {
    _server: Process,
    /// `mqtt://127.0.0.1:PORT`.
    url: String,
    /// The gateway's UDP address, `127.0.0.1:PORT`.
    udp: String,
    /// The gateway's TCP address.
    tcp: String,
    dir: tempfile::TempDir,
    /// The peer's outbound address when no SIPp plays it: a socket held, never answering.
    _silent_peer: Option<UdpSocket>,
}

fn sipp_binary() -> &'static str {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "sipp is missing: install the Debian package sip-tester (scripts/test does)"
    );
    "sipp"
}

/// The test's directory: the server's data and configuration, and SIPp's screens.
fn test_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Starts the server in `dir` with the users (password `{user}-pw`) and a peer `sipp` at
/// 127.0.0.1 serving the domain `127.0.0.1`, reached at `udp:127.0.0.1:{uas_port}` (a SIPp
/// UAS the test started, [`Sipp::sip_port`]) or at a socket that never answers; `extra` is
/// appended to the configuration.
fn start(dir: tempfile::TempDir, users: &[&str], uas_port: Option<u16>, extra: &str) -> SipServer {
    MQCHAT.add_users(dir.path(), users);
    let (silent_peer, peer_port) = match uas_port {
        Some(port) => (None, port),
        None => {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let port = socket.local_addr().expect("addr").port();
            (Some(socket), port)
        }
    };
    let toml = format!(
        "[sip]\nenabled = true\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = \"127.0.0.1:0\"\n\n\
         [[sip.peers]]\nname = \"sipp\"\naddresses = [\"127.0.0.1\"]\ndomains = [\"127.0.0.1\"]\n\
         outbound = \"udp:127.0.0.1:{peer_port}\"\n{extra}"
    );
    let config = dir.path().join("mqchat.toml");
    std::fs::write(&config, toml).expect("write the configuration");
    let config = config.to_str().expect("utf-8 path");
    let (server, banner) = MQCHAT.serve(dir.path(), &["--config", config]);
    SipServer {
        url: banner.url("mqtt://"),
        udp: banner.addr("sip+udp://"),
        tcp: banner.addr("sip+tcp://"),
        _server: server,
        dir,
        _silent_peer: silent_peer,
    }
}

/// How a SIPp instance takes part.
enum Role<'a> {
    /// A client of the gateway at this address, on a port SIPp picks.
    Client(&'a str),
    /// A server, on a port SIPp picks ([`Sipp::sip_port`] finds it).
    Server,
}

/// A SIPp process; its screen goes to a file shown when it fails.
struct Sipp {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Sipp {
    /// Runs `scenario` (a file of crates/server/tests/sipp/) for one call, in `role`, its
    /// screen in `dir`.
    fn start(dir: &Path, scenario: &str, role: Role, args: &[&str]) -> Sipp {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "{}/../server/tests/sipp/{scenario}",
            env!("CARGO_MANIFEST_DIR")
        );
        let log = dir.join(format!("sipp-{n}-{scenario}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut command = Command::new(sipp_binary());
        command
            .args(["-sf", &path, "-m", "1", "-nostdin"])
            .args(["-timeout", "30s", "-timeout_error"])
            .args(args);
        if !args.contains(&"-i") {
            command.args(["-i", "127.0.0.1"]);
        }
        match role {
            Role::Client(remote) => command.arg(remote),
            // Without `-p`, SIPp binds the first free port from 5060 up (port 0 after
            // 5119). Its media and control sockets (UDP too) go to another address, so its
            // one UDP socket on 127.0.0.1 is the SIP one (`sip_port`).
            Role::Server => command.args(["-mi", OTHER_LOOPBACK, "-ci", OTHER_LOOPBACK]),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start sipp");
        Sipp {
            child,
            log,
            what: format!("{scenario} {}", args.join(" ")),
        }
    }

    /// The UDP port the SIPp server bound on 127.0.0.1 for SIP, once it has. The server's
    /// configuration needs it, and SIPp reports it only on its final screen: it is read
    /// from /proc, the process's one UDP socket on 127.0.0.1 ([`Role::Server`]).
    fn sip_port(&mut self) -> u16 {
        let pid = self.child.id();
        until_seen(&format!("sipp {} bound to a port", self.what), || {
            if let Some(status) = self.child.try_wait().expect("sipp status") {
                let screen = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("sipp {} ended ({status}):\n{screen}", self.what);
            }
            match udp_ports(pid, Ipv4Addr::LOCALHOST).as_slice() {
                [port] => Ok(*port),
                ports => Err(format!("UDP ports on 127.0.0.1: {ports:?}")),
            }
        })
    }

    /// Waits for the scenario's end and checks that it passed.
    fn passes(mut self) {
        // Twice the test kit's wait: a scenario runs its own timers of up to 30 s.
        let deadline = Instant::now() + 2 * WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("sipp status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sipp {} did not finish",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let screen = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            status.success(),
            "sipp {} failed ({status}):\n{screen}",
            self.what
        );
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address where a SIPp server's media and control sockets go, away from its
/// SIP socket on 127.0.0.1.
const OTHER_LOOPBACK: &str = "127.0.0.2";

/// The UDP ports process `pid` has bound on `ip`: the `socket:[INODE]` links among its file
/// descriptors, looked up in the kernel's UDP table (/proc/net/udp).
fn udp_ports(pid: u32, ip: Ipv4Addr) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
    // `sl local_address rem_address st ... uid timeout inode ...`; the address is the
    // 32-bit word in hex as it lies in memory (network order), the port in hex.
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = fields.get(1)?.split_once(':')?;
            let addr = Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.to_ne_bytes());
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode = fields.get(9)?;
            (addr == ip && inodes.iter().any(|i| i == inode)).then_some(port)
        })
        .collect()
}

/// A SIPp client call from 127.0.0.1 to the gateway, for the user `to`.
fn uac(server: &SipServer, scenario: &str, to: &str) -> Sipp {
    Sipp::start(
        server.dir.path(),
        scenario,
        Role::Client(&server.udp),
        &["-s", to],
    )
}

/// A SIPp server playing the peer `sipp`, started before the server (whose configuration
/// needs its port), and that port.
fn uas(dir: &Path, scenario: &str) -> (Sipp, u16) {
    let mut uas = Sipp::start(dir, scenario, Role::Server, &[]);
    let port = uas.sip_port();
    (uas, port)
}

/// `mqchat listen` for `user` with JSON lines and `args`, once it is connected.
fn listen(server: &SipServer, user: &str, args: &[&str]) -> Process {
    let mut all = vec!["--json"];
    all.extend(args);
    let running = User::at(&server.url, user).spawn("listen", &all);
    running.line_with("\"connected\"");
    wait_reachable(server, user);
    running
}

/// Waits until the hub counts a device of `user` as connected (it learns that from the
/// device's presence, which may reach it after the device's CLI printed "connected"): asks
/// with OPTIONS through the gateway, which the hub answers 200 then, 480 before.
fn wait_reachable(server: &SipServer, user: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let local = socket.local_addr().expect("addr");
    let mut attempt = 0;
    until(&format!("{user} reachable"), || {
        attempt += 1;
        let options = format!(
            "OPTIONS sip:{user}@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{attempt};rport\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{attempt}\r\nTo: <sip:{user}@localhost>\r\nCall-ID: probe-{attempt}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        socket
            .send_to(options.as_bytes(), &server.udp)
            .expect("send");
        let mut buffer = [0u8; 4096];
        let (n, _) = socket.recv_from(&mut buffer).expect("an answer to OPTIONS");
        let answer = Message::parse(&buffer[..n]).expect("SIP");
        match answer.code() {
            Some(200) => Some(()),
            // The hub has not seen the device's presence yet: ask again.
            Some(480) => None,
            other => panic!("{user} not reachable: {other:?}"),
        }
    });
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn history(server: &SipServer, user: &str, conv: &str) -> String {
    let (code, out, err) = User::at(&server.url, user).run("history", &[conv]);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn messages_both_ways() {
    // The peer's UAS waits for bob's answer from the start: the server needs its port.
    let dir = test_dir();
    let (uas, uas_port) = uas(dir.path(), "uas_message.xml");
    let server = start(dir, &["bob"], Some(uas_port), "");
    uac(&server, "uac_message.xml", "bob").passes();
    // The same over TCP (Content-Length framing): retransmissions are TCP's business, so
    // the two MESSAGEs are two messages.
    Sipp::start(
        server.dir.path(),
        "uac_message.xml",
        Role::Client(&server.tcp),
        &["-s", "bob", "-t", "t1"],
    )
    .passes();
    let out = history(&server, "bob", "sip:sipp@127.0.0.1");
    assert_eq!(out.matches("hello from SIPp").count(), 2, "{out}");

    // bob's answer reaches the peer's UAS as a MESSAGE.
    let (code, out, err) =
        User::at(&server.url, "bob").run("send", &["sip:sipp@127.0.0.1", "hi back"]);
    assert_eq!(code, 0, "{out}{err}");
    uas.passes();
    let out = history(&server, "bob", "sip:sipp@127.0.0.1");
    assert!(out.contains("hi back"), "{out}");
}

#[test]
fn a_sip_peer_calls_bob_who_answers() {
    let server = start(test_dir(), &["bob"], None, "");
    let bob = listen(&server, "bob", &["--answer-calls", "-", "--calls", "1"]);
    uac(&server, "uac_invite.xml", "bob").passes();
    let incoming = json(&bob.line_with("\"incoming-call\""));
    assert_eq!(incoming["from"], "sip:sipp@127.0.0.1");
    assert!(
        incoming["sdp"]
            .as_str()
            .is_some_and(|s| s.contains("m=audio"))
    );
    let record = json(&bob.line_with("\"call-record\""));
    assert_eq!(record["outcome"], "answered");
    assert_eq!(record["conv"], "sip:sipp@127.0.0.1");
    assert!(
        record["duration"].as_u64().is_some_and(|d| d >= 900),
        "{record}"
    );
    let ended = json(&bob.line_with("\"call-ended\""));
    assert_eq!(ended["local"], false);
    assert_eq!(bob.wait().code(), Some(0));
    let out = history(&server, "bob", "sip:sipp@127.0.0.1");
    assert!(out.contains("answered"), "{out}");
}

#[test]
fn bob_calls_a_sip_peer() {
    let dir = test_dir();
    let (uas, uas_port) = uas(dir.path(), "uas_invite.xml");
    let server = start(dir, &["bob"], Some(uas_port), "");
    let (code, out, err) = User::at(&server.url, "bob")
        .run("call", &["sip:uas@127.0.0.1", "--duration", "1", "--json"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let events: Vec<String> = out
        .lines()
        .map(|l| json(l)["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        events,
        ["calling", "call-ringing", "call-answered", "call-ended"],
        "{out}"
    );
    assert!(
        out.contains("o=sippuas"),
        "the answer is the peer's SDP: {out}"
    );
    uas.passes();
    let out = history(&server, "bob", "sip:uas@127.0.0.1");
    assert!(out.contains("answered"), "{out}");
}

#[test]
fn cancelled_busy_unknown_and_unreachable() {
    let server = start(test_dir(), &["bob", "carol"], None, "");
    // bob's device rings and nobody answers: the peer cancels (200, 487, ACK).
    let bob = listen(&server, "bob", &[]);
    uac(&server, "uac_cancel.xml", "bob").passes();
    let incoming = json(&bob.line_with("\"incoming-call\""));
    assert_eq!(incoming["from"], "sip:sipp@127.0.0.1");
    let ended = json(&bob.line_with("\"call-ended\""));
    assert_eq!(ended["reason"], "cancelled", "{ended}");
    drop(bob);
    // bob is busy.
    let bob = listen(&server, "bob", &["--reject-calls", "busy", "--calls", "1"]);
    uac(&server, "uac_invite_486.xml", "bob").passes();
    assert_eq!(bob.wait().code(), Some(0));
    // Nobody by that name; carol has no device to ring.
    uac(&server, "uac_invite_404.xml", "nobody").passes();
    uac(&server, "uac_invite_480.xml", "carol").passes();
}

#[test]
fn unknown_peers_digest_peers_and_malformed_input() {
    let extra = "\n[[sip.peers]]\nname = \"roamer\"\naddresses = [\"127.0.0.3\"]\nusername = \"roamer\"\npassword = \"secret\"\n";
    let server = start(test_dir(), &["bob"], None, extra);
    // 127.0.0.2 is no peer's address.
    Sipp::start(
        server.dir.path(),
        "uac_message_403.xml",
        Role::Client(&server.udp),
        &["-s", "bob", "-i", "127.0.0.2"],
    )
    .passes();
    // 127.0.0.3 must authenticate.
    Sipp::start(
        server.dir.path(),
        "uac_message_auth.xml",
        Role::Client(&server.udp),
        &[
            "-s",
            "bob",
            "-i",
            "127.0.0.3",
            "-au",
            "roamer",
            "-ap",
            "secret",
        ],
    )
    .passes();
    let out = history(&server, "bob", "sip:sipp@127.0.0.3");
    assert!(out.contains("hello with credentials"), "{out}");

    // Junk is dropped, a request with a bad header gets 400, and the gateway still works.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let local = socket.local_addr().expect("addr");
    socket
        .send_to(b"\x00\x01 this is not SIP", &server.udp)
        .expect("send");
    let bad = format!(
        "MESSAGE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: bad1\r\nCSeq: many MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(bad.as_bytes(), &server.udp).expect("send");
    let mut buffer = [0u8; 4096];
    let (n, _) = socket
        .recv_from(&mut buffer)
        .expect("an answer to the bad request");
    let answer = Message::parse_syntax(&buffer[..n], &mqchat_sip::Limits::default()).expect("SIP");
    assert_eq!(
        answer.code(),
        Some(400),
        "the junk got nothing, the bad CSeq a 400"
    );
    uac(&server, "uac_message.xml", "bob").passes();
}

#[test]
fn a_retransmitted_invite_rings_once() {
    let server = start(test_dir(), &["bob"], None, "");
    let bob = listen(&server, "bob", &["--answer-calls", "-", "--calls", "1"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let local = socket.local_addr().expect("addr");
    let sdp = "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKretrans1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:raw@127.0.0.1>;tag=r1\r\nTo: <sip:bob@localhost>\r\nCall-ID: retrans-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let receive = || {
        let mut buffer = [0u8; 8192];
        let (n, _) = socket.recv_from(&mut buffer).expect("a response in time");
        Message::parse(&buffer[..n]).expect("valid SIP")
    };
    socket
        .send_to(invite.as_bytes(), &server.udp)
        .expect("send");
    assert_eq!(receive().code(), Some(100));
    // The INVITE again, as a UDP client does when its 100 is lost.
    socket
        .send_to(invite.as_bytes(), &server.udp)
        .expect("send");
    let ok = loop {
        let response = receive();
        match response.code() {
            Some(100 | 180 | 183) => continue,
            Some(200) => break response,
            other => panic!("unexpected {other:?}"),
        }
    };
    let request = Message::parse(invite.as_bytes()).expect("valid");
    let to = ok.headers.get("To").expect("To").to_owned();
    let target = ok.contact().expect("a Contact").uri.to_string();
    let routes: Vec<String> = ok
        .headers
        .get_all("Record-Route")
        .map(str::to_owned)
        .collect();
    let in_dialog = |method: &str, seq: u32, branch: &str| {
        let mut m = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:raw@127.0.0.1>;tag=r1\r\nTo: {to}\r\nCall-ID: retrans-1@127.0.0.1\r\nCSeq: {seq} {method}\r\n"
        );
        for r in &routes {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        m
    };
    socket
        .send_to(
            in_dialog("ACK", 1, "z9hG4bKretrans2").as_bytes(),
            &server.udp,
        )
        .expect("send");
    socket
        .send_to(
            in_dialog("BYE", 2, "z9hG4bKretrans3").as_bytes(),
            &server.udp,
        )
        .expect("send");
    loop {
        let response = receive();
        if response
            .cseq()
            .is_some_and(|c| c.method == mqchat_sip::Method::Bye)
        {
            assert_eq!(response.code(), Some(200));
            break;
        }
        // 2xx retransmissions of the INVITE sent before the ACK arrived.
        assert_eq!(response.code(), Some(200));
        assert_eq!(response.call_id(), request.call_id());
    }
    // bob's device saw one incoming call, and it ended with the BYE.
    let mut incoming = 0;
    loop {
        let line = json(&bob.line_with("\"event\""));
        match line["event"].as_str() {
            Some("incoming-call") => incoming += 1,
            Some("call-ended") => break,
            _ => {}
        }
    }
    assert_eq!(incoming, 1, "the retransmitted INVITE rang a second time");
    assert_eq!(bob.wait().code(), Some(0));
}
