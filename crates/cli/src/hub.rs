//! `mqchat hub`: the hub alone, as an MQTT client of an external broker, with the HTTP
//! endpoint brokers ask for authentication and authorization. Settings from a TOML file,
//! then the environment, then flags; runs until SIGINT or SIGTERM (SIGHUP reloads the HTTP
//! endpoint's TLS certificate).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use mqchat_server::{Hub, HubProcessConfig};

use crate::serve::{Signals, listen};

#[derive(clap::Args, Debug)]
pub(crate) struct HubArgs {
    /// A TOML configuration file (keys: data_dir, root, broker, broker_username,
    /// broker_password, broker_password_file, broker_ca_file, client_id, shared_subscription,
    /// broker_session_expiry_secs, http_listen, [tls] cert, key, reload_interval_secs,
    /// max_payload, durability, max_group_members, retention_days, retention_max_events,
    /// retention_interval_secs).
    #[arg(long, env = "MQCHAT_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory (the database lives there).
    #[arg(long, env = "MQCHAT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The broker, `mqtt://host:port` or `mqtts://host:port` (TLS).
    #[arg(long, env = "MQCHAT_BROKER")]
    broker: Option<String>,
    /// For a mqtts:// broker: the CA certificates (PEM) to trust instead of the system's.
    #[arg(long, env = "MQCHAT_BROKER_CA_FILE")]
    broker_ca_file: Option<PathBuf>,
    /// The hub's MQTT username at the broker (starts with `_`).
    #[arg(long, env = "MQCHAT_BROKER_USERNAME")]
    broker_username: Option<String>,
    /// A file whose first line is the hub's MQTT password (or set MQCHAT_BROKER_PASSWORD).
    #[arg(long, env = "MQCHAT_BROKER_PASSWORD_FILE")]
    broker_password_file: Option<PathBuf>,
    /// The hub's MQTT client id (starts with the username; one per hub of a cluster).
    #[arg(long, env = "MQCHAT_HUB_CLIENT_ID")]
    client_id: Option<String>,
    /// `on`: consume upstream topics through `$share/mqchat/` (default); `off` for a broker
    /// without shared subscriptions.
    #[arg(long, env = "MQCHAT_SHARED_SUBSCRIPTION")]
    shared_subscription: Option<String>,
    /// The HTTP auth endpoint's address (port 0: any free port), or `off`.
    #[arg(long, env = "MQCHAT_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// The HTTP endpoint's TLS certificate chain (PEM): it then speaks HTTPS.
    #[arg(long, env = "MQCHAT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The HTTP endpoint's TLS private key (PEM).
    #[arg(long, env = "MQCHAT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The topic root.
    #[arg(long, env = "MQCHAT_ROOT")]
    root: Option<String>,
    /// `full` (each commit synced to disk) or `normal` (survives a crash of the process only).
    #[arg(long, env = "MQCHAT_DURABILITY")]
    durability: Option<String>,
}

fn config(args: HubArgs) -> anyhow::Result<HubProcessConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            HubProcessConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => HubProcessConfig::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(broker) = args.broker {
        config.broker = broker;
    }
    if let Some(path) = args.broker_ca_file {
        config.broker_ca_file = Some(path);
    }
    if let Some(path) = args.tls_cert {
        config.tls.cert = Some(path);
    }
    if let Some(path) = args.tls_key {
        config.tls.key = Some(path);
    }
    if let Some(username) = args.broker_username {
        config.broker_username = username;
    }
    if let Ok(password) = std::env::var("MQCHAT_BROKER_PASSWORD") {
        config.broker_password = Some(password);
        config.broker_password_file = None;
    }
    if let Some(path) = args.broker_password_file {
        config.broker_password_file = Some(path);
        config.broker_password = None;
    }
    if let Some(id) = args.client_id {
        config.client_id = id;
    }
    if let Some(shared) = args.shared_subscription {
        config.shared_subscription = match shared.as_str() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => anyhow::bail!("shared subscription {other:?}: use on or off"),
        };
    }
    if let Some(addr) = args.http_listen {
        config.http_listen = listen(&addr)?;
    }
    if let Some(root) = args.root {
        config.root = root;
    }
    if let Some(durability) = args.durability {
        config.durability = durability.parse().map_err(anyhow::Error::msg)?;
    }
    Ok(config)
}

pub(crate) async fn run(args: HubArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let mut signals = Signals::new()?;
    // The broker may come up after the hub: the start waits for it, and a signal ends the
    // wait.
    let hub = tokio::select! {
        hub = Hub::start(&config) => hub?,
        signal = signals.stopped() => {
            tracing::info!(signal, "stopped before the broker was reached");
            return Ok(());
        }
    };
    // One line on stdout once the hub is subscribed, for people and scripts.
    let mut line = format!("mqchat hub running: broker {}", config.broker);
    if let Some(addr) = hub.http_addr() {
        let scheme = if hub.http_tls() { "https" } else { "http" };
        line.push_str(&format!(" {scheme}://{addr}"));
    }
    if let Some(addr) = hub.sip_udp_addr() {
        line.push_str(&format!(" sip+udp://{addr}"));
    }
    if let Some(addr) = hub.sip_tcp_addr() {
        line.push_str(&format!(" sip+tcp://{addr}"));
    }
    line.push_str(&format!(
        " root={} data={}",
        hub.root(),
        config.data_dir.display()
    ));
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    // A failed reload is logged by the hub, which keeps its certificate.
    let signal = signals
        .run_until_stopped(|| {
            let _ = hub.reload_tls();
            std::future::ready(())
        })
        .await;
    tracing::info!(signal, "stopping");
    hub.shutdown().await;
    Ok(())
}
