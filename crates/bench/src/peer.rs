//! The peers: Mosquitto and the embedded rmqtt alone (plain MQTT, no archive: the floor),
//! Prosody and ejabberd (XMPP with the message archive on SQLite). Each is started by the
//! harness on a loopback port chosen at run time, with its own configuration and data under
//! a temporary directory, as its own system user, and stopped when dropped.
//!
//! The Debian packages (`mosquitto`, `prosody`, `lua-dbi-sqlite3`, `ejabberd`,
//! `erlang-p1-sqlite3`) are installed by `scripts/bench`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::process::{self, Guard};

/// The XMPP domain of both XMPP peers.
pub const XMPP_DOMAIN: &str = "localhost";

/// Which peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Mosquitto (Debian), QoS 1, no persistence.
    Mosquitto,
    /// rmqtt as embedded in mqchat, alone: no hub, no store, every client allowed.
    Rmqtt,
    /// Prosody (Debian) with mod_mam on SQLite.
    Prosody,
    /// ejabberd (Debian) with mod_mam on SQLite.
    Ejabberd,
}

impl Kind {
    /// Whether the peer speaks XMPP (else plain MQTT).
    pub fn is_xmpp(self) -> bool {
        matches!(self, Self::Prosody | Self::Ejabberd)
    }
}

/// A running peer.
#[derive(Debug)]
pub struct Peer {
    /// Name and version, for the report.
    pub name: String,
    /// What it stores, for the report ("no archive", "MAM on SQLite, synchronous=FULL").
    pub storage: String,
    /// Where clients connect.
    pub addr: SocketAddr,
    guard: Guard,
    dir: tempfile::TempDir,
}

impl Peer {
    /// The server's process id (its process tree is measured).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Fails if the peer has exited (crashed during a run).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.guard.check_running()
    }

    /// Stops the peer and removes its directory.
    pub fn stop(mut self) {
        self.guard.stop(Duration::from_secs(20));
        drop(self.dir);
    }
}

/// Starts a peer.
pub fn start(kind: Kind) -> anyhow::Result<Peer> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mqchat-bench-{kind:?}-").to_lowercase())
        .tempdir()?;
    let peer = match kind {
        Kind::Mosquitto => mosquitto(dir)?,
        Kind::Rmqtt => rmqtt(dir)?,
        Kind::Prosody => prosody(dir)?,
        Kind::Ejabberd => ejabberd(dir)?,
    };
    eprintln!(
        "started {} on {} (pid {})",
        peer.name,
        peer.addr,
        peer.pid()
    );
    Ok(peer)
}

fn debian_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "?".to_owned())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(name))?)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn mosquitto(dir: tempfile::TempDir) -> anyhow::Result<Peer> {
    let port = process::free_port()?;
    let config = dir.path().join("mosquitto.conf");
    // Started as root, Mosquitto drops to its own user after reading this file.
    std::fs::write(
        &config,
        format!(
            "# written by mqchat-bench\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             set_tcp_nodelay true\n\
             max_queued_messages 1000\n\
             user mosquitto\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n"
        ),
    )?;
    let mut command = Guard::command("mosquitto", None);
    command
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log_file(dir.path(), "mosquitto.log")?);
    let guard = Guard::spawn("mosquitto", command)?;
    process::wait_for_port(loopback(port), Duration::from_secs(20))?;
    Ok(Peer {
        name: format!("Mosquitto {}", debian_version("mosquitto")),
        storage: "no archive, no persistence".to_owned(),
        addr: loopback(port),
        guard,
        dir,
    })
}

fn rmqtt(dir: tempfile::TempDir) -> anyhow::Result<Peer> {
    let mut command = Guard::command(std::env::current_exe()?, None);
    command
        .arg("rmqtt-alone")
        .stdout(Stdio::piped())
        .stderr(log_file(dir.path(), "rmqtt.log")?);
    let mut guard = Guard::spawn("rmqtt alone", command)?;
    let stdout = guard.take_stdout().context("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mqtt://"))
        .with_context(|| format!("unexpected first line {line:?}"))?
        .parse()?;
    Ok(Peer {
        name: "rmqtt 0.24 (mqchat's embedded broker, alone)".to_owned(),
        storage: "no archive, sessions in memory".to_owned(),
        addr,
        guard,
        dir,
    })
}

fn prosody(dir: tempfile::TempDir) -> anyhow::Result<Peer> {
    let port = process::free_port()?;
    let d = dir.path().display();
    std::fs::create_dir(dir.path().join("data"))?;
    let config = dir.path().join("prosody.cfg.lua");
    std::fs::write(
        &config,
        format!(
            r#"-- written by mqchat-bench
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{d}/prosody.log" }} }}
admins = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "register"; "mam" }}
modules_disabled = {{ "s2s"; "offline" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
allow_registration = true
storage = "sql"
sql = {{ driver = "SQLite3", database = "prosody.sqlite" }}
-- Every message and receipt is archived; the default per-user limit would start deleting.
storage_archive_item_limit = 100000000
archive_expires_after = "never"
default_archive_policy = true
VirtualHost "{XMPP_DOMAIN}"
"#
        ),
    )?;
    process::chown_tree(dir.path(), "prosody")?;
    let mut command = Guard::command("prosody", Some("prosody"));
    command
        .args(["-F", "--config"])
        .arg(&config)
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .stdout(log_file(dir.path(), "stdout.log")?)
        .stderr(log_file(dir.path(), "stderr.log")?);
    let guard = Guard::spawn("prosody", command)?;
    process::wait_for_port(loopback(port), Duration::from_secs(30))?;
    Ok(Peer {
        name: format!("Prosody {}", debian_version("prosody")),
        storage: "mod_mam on SQLite (LuaDBI), each insert its own synced transaction".to_owned(),
        addr: loopback(port),
        guard,
        dir,
    })
}

fn ejabberd(dir: tempfile::TempDir) -> anyhow::Result<Peer> {
    let port = process::free_port()?;
    let dist_port = process::free_port()?;
    let d = dir.path().display();
    std::fs::create_dir(dir.path().join("spool"))?;
    std::fs::create_dir(dir.path().join("logs"))?;
    std::fs::copy("/etc/ejabberd/inetrc", dir.path().join("inetrc"))?;
    std::fs::write(
        dir.path().join("ejabberdctl.cfg"),
        // A fixed distribution port on loopback and no epmd at all.
        format!(
            "ERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n\
             EJABBERD_PID_PATH={d}/ejabberd.pid\n\
             ERL_DIST_PORT={dist_port}\n\
             INET_DIST_INTERFACE=127.0.0.1\n\
             ERL_EPMD_ADDRESS=127.0.0.1\n\
             ERLANG_NODE=bench@localhost\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("ejabberd.yml"),
        format!(
            r#"# written by mqchat-bench
hosts:
  - {XMPP_DOMAIN}
loglevel: warning
log_rotate_count: 0
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls_required: false
auth_method: internal
auth_password_format: plain
default_db: sql
sql_type: sqlite
sql_database: "{d}/ejabberd.db"
registration_timeout: infinity
acl:
  loopback:
    ip: 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  max_user_sessions: 10
  c2s_shaper: none
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_register:
    ip_access: all
    access: register
  mod_mam:
    default: always
"#
        ),
    )?;
    process::chown_tree(dir.path(), "ejabberd")?;
    let mut command = Guard::command("/usr/sbin/ejabberdctl", Some("ejabberd"));
    command
        .arg("--config-dir")
        .arg(dir.path())
        .arg("--ctl-config")
        .arg(dir.path().join("ejabberdctl.cfg"))
        .arg("--config")
        .arg(dir.path().join("ejabberd.yml"))
        .arg("--logs")
        .arg(dir.path().join("logs"))
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .arg("foreground")
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .stdout(log_file(dir.path(), "stdout.log")?)
        .stderr(log_file(dir.path(), "stderr.log")?);
    let guard = Guard::spawn("ejabberd", command)?;
    process::wait_for_port(loopback(port), Duration::from_secs(90))?;
    Ok(Peer {
        name: format!("ejabberd {}", debian_version("ejabberd")),
        storage: "mod_mam on SQLite (p1_sqlite3), each insert its own synced transaction"
            .to_owned(),
        addr: loopback(port),
        guard,
        dir,
    })
}

/// `mqchat-bench rmqtt-alone`: the embedded broker with no hub and no store, allowing every
/// client; prints `rmqtt listening: mqtt://ADDR` and runs until SIGTERM.
pub async fn run_rmqtt_alone() -> anyhow::Result<()> {
    use std::io::Write;
    let broker = mqchat_broker::Broker::start(
        mqchat_broker::BrokerConfig {
            tcp: Some(loopback(0)),
            ws: None,
            ..mqchat_broker::BrokerConfig::default()
        },
        std::sync::Arc::new(AllowAll),
        None,
    )
    .await?;
    let addr = broker.tcp_addr().context("no TCP listener")?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "rmqtt listening: mqtt://{addr}")?;
    stdout.flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    broker.stop_accepting().await;
    Ok(())
}

/// Lets everyone in and everywhere: the floor measures the broker, not access control.
struct AllowAll;

#[async_trait::async_trait]
impl mqchat_broker::Gatekeeper for AllowAll {
    async fn authenticate(&self, _connect: mqchat_broker::Connect<'_>) -> mqchat_broker::Admission {
        mqchat_broker::Admission::Allow { superuser: false }
    }

    async fn may_publish(
        &self,
        _client_id: &str,
        _username: Option<&str>,
        _topic: &str,
        _retain: bool,
        _payload: &[u8],
    ) -> bool {
        true
    }

    async fn may_subscribe(
        &self,
        _client_id: &str,
        _username: Option<&str>,
        _filter: &str,
    ) -> bool {
        true
    }
}
