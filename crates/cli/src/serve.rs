//! `mqchat serve`: configuration from a TOML file, the environment and flags (in that order
//! of precedence, flags last), then run until SIGINT or SIGTERM; SIGHUP reloads the TLS
//! certificate.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use mqchat_server::{Server, ServerConfig};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (keys: data_dir, root, listen_tcp, listen_ws, listen_tls,
    /// listen_wss, [tls] cert, key, reload_interval_secs, max_payload, max_queue,
    /// session_expiry_secs, durability).
    #[arg(long, env = "MQCHAT_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory (the database lives there).
    #[arg(long, env = "MQCHAT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// MQTT over TCP listen address (port 0: any free port), or `off`.
    #[arg(long, env = "MQCHAT_LISTEN_TCP")]
    listen_tcp: Option<String>,
    /// MQTT over WebSocket listen address (port 0: any free port), or `off`.
    #[arg(long, env = "MQCHAT_LISTEN_WS")]
    listen_ws: Option<String>,
    /// MQTT over TLS listen address (port 0: any free port), or `off`. Needs --tls-cert and
    /// --tls-key.
    #[arg(long, env = "MQCHAT_LISTEN_TLS")]
    listen_tls: Option<String>,
    /// MQTT over WebSocket over TLS listen address (port 0: any free port), or `off`.
    #[arg(long, env = "MQCHAT_LISTEN_WSS")]
    listen_wss: Option<String>,
    /// The TLS certificate chain (PEM); reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "MQCHAT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, env = "MQCHAT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The topic root.
    #[arg(long, env = "MQCHAT_ROOT")]
    root: Option<String>,
    /// The largest upstream payload accepted, in bytes.
    #[arg(long, env = "MQCHAT_MAX_PAYLOAD")]
    max_payload: Option<usize>,
    /// `full` (each commit synced to disk) or `normal` (survives a crash of the process only).
    #[arg(long, env = "MQCHAT_DURABILITY")]
    durability: Option<String>,
}

pub(crate) fn listen(value: &str) -> anyhow::Result<Option<SocketAddr>> {
    if value == "off" {
        return Ok(None);
    }
    Ok(Some(
        value
            .parse()
            .with_context(|| format!("listen address {value:?}"))?,
    ))
}

/// The settings in a TOML file, or the defaults without one.
pub(crate) fn read_config(path: Option<&std::path::Path>) -> anyhow::Result<ServerConfig> {
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ServerConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => ServerConfig::default(),
    })
}

fn config(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = read_config(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(addr) = args.listen_tcp {
        config.listen_tcp = listen(&addr)?;
    }
    if let Some(addr) = args.listen_ws {
        config.listen_ws = listen(&addr)?;
    }
    if let Some(addr) = args.listen_tls {
        config.listen_tls = listen(&addr)?;
    }
    if let Some(addr) = args.listen_wss {
        config.listen_wss = listen(&addr)?;
    }
    if let Some(path) = args.tls_cert {
        config.tls.cert = Some(path);
    }
    if let Some(path) = args.tls_key {
        config.tls.key = Some(path);
    }
    if let Some(root) = args.root {
        config.root = root;
    }
    if let Some(max) = args.max_payload {
        config.max_payload = max;
    }
    if let Some(durability) = args.durability {
        config.durability = durability.parse().map_err(anyhow::Error::msg)?;
    }
    Ok(config)
}

/// The signals `serve` and `hub` answer: SIGINT and SIGTERM stop, SIGHUP reloads the TLS
/// certificate. Registered before the process says it is ready, so that a signal sent right
/// after the banner is handled, not the default action (ending the process at once).
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGINT or SIGTERM (SIGHUP is ignored meanwhile).
    pub(crate) async fn stopped(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    /// Waits for SIGINT or SIGTERM, calling `reload` at every SIGHUP meanwhile.
    pub(crate) async fn run_until_stopped<F: Future<Output = ()>>(
        mut self,
        mut reload: impl FnMut() -> F,
    ) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => return "SIGTERM",
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    reload().await;
                }
            }
        }
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let signals = Signals::new()?;
    let server = Server::start(&config).await?;
    // One line on stdout with the bound addresses, for people and for scripts (port 0).
    let mut line = String::from("mqchat listening:");
    if let Some(addr) = server.tcp_addr() {
        line.push_str(&format!(" mqtt://{addr}"));
    }
    if let Some(addr) = server.ws_addr() {
        line.push_str(&format!(" ws://{addr}/mqtt"));
    }
    if let Some(addr) = server.tls_addr() {
        line.push_str(&format!(" mqtts://{addr}"));
    }
    if let Some(addr) = server.wss_addr() {
        line.push_str(&format!(" wss://{addr}/mqtt"));
    }
    if let Some(addr) = server.sip_udp_addr() {
        line.push_str(&format!(" sip+udp://{addr}"));
    }
    if let Some(addr) = server.sip_tcp_addr() {
        line.push_str(&format!(" sip+tcp://{addr}"));
    }
    line.push_str(&format!(
        " root={} data={}",
        server.root(),
        config.data_dir.display()
    ));
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    // A failed reload is logged by the server, which keeps its certificate.
    let signal = signals
        .run_until_stopped(|| async {
            let _ = server.reload_tls().await;
        })
        .await;
    tracing::info!(signal, "stopping");
    server.shutdown().await;
    Ok(())
}
