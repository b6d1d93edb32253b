//! `mqchat broker-config mosquitto --out DIR`: Mosquitto's password file, ACL file and
//! configuration, and the `mqchat hub` settings to go with them, from the users in the
//! store.
//!
//! The store keeps only argon2id hashes of passwords and SHA-256 hashes of device tokens,
//! which Mosquitto cannot check. So the command issues each user a broker password of its
//! own (random, printed once on stdout as `user<TAB>password`, kept only as a PBKDF2-SHA512
//! hash in the password file, Mosquitto's `$7$` format). Running it again keeps the
//! passwords already issued, issues passwords to new users, drops disabled and deleted
//! users, and reissues on request (`--reissue alice`); Mosquitto rereads both files on
//! SIGHUP. docs/BROKERS.md explains the choice against the HTTP route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mqchat_proto::acl::static_rules;
use mqchat_proto::{TopicRoot, UserId};
use mqchat_store::{Durability, Store};

use crate::serve::listen;

/// The hub's username at the broker (user ids cannot start with `_`).
const HUB_USERNAME: &str = "_hub";

/// PBKDF2 rounds. The passwords are 192 random bits, so their strength does not come from
/// the rounds; a tenth of what mosquitto_passwd's default would cost ten times less per
/// login is not worth saving either, so this is ten times its default.
const ROUNDS: u32 = 1010;

#[derive(clap::Args, Debug)]
pub(crate) struct BrokerConfigArgs {
    #[command(subcommand)]
    broker: Broker,
}

#[derive(clap::Subcommand, Debug)]
enum Broker {
    /// Mosquitto 2: password file, `%u` pattern ACL, listeners, persistence, and hub.toml.
    Mosquitto(MosquittoArgs),
}

#[derive(clap::Args, Debug)]
struct MosquittoArgs {
    /// The server's data directory (the users come from its database).
    #[arg(long, env = "MQCHAT_DATA_DIR", default_value = "mqchat-data")]
    data_dir: PathBuf,
    /// Where to write mosquitto.conf, passwd, acl and hub.toml (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Mosquitto's MQTT/TCP listener.
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: String,
    /// Mosquitto's MQTT/WebSocket listener, or `off`.
    #[arg(long, default_value = "off")]
    listen_ws: String,
    /// The topic root.
    #[arg(long, env = "MQCHAT_ROOT", default_value = TopicRoot::DEFAULT)]
    root: String,
    /// The system user Mosquitto drops to when started as root (it must be able to read
    /// the files and write the persistence directory).
    #[arg(long)]
    run_as: Option<String>,
    /// Issue a new broker password to this user (repeatable); the old one stops working
    /// when Mosquitto reloads.
    #[arg(long)]
    reissue: Vec<String>,
}

pub(crate) fn run(args: BrokerConfigArgs) -> anyhow::Result<()> {
    match args.broker {
        Broker::Mosquitto(args) => mosquitto(args),
    }
}

fn mosquitto(args: MosquittoArgs) -> anyhow::Result<()> {
    let root = TopicRoot::parse(&args.root).context("--root")?;
    let tcp = listen(&args.listen)?.context(
        "--listen cannot be off: Mosquitto refuses a configuration with only a WebSocket listener",
    )?;
    let ws = listen(&args.listen_ws)?;
    let reissue: Vec<UserId> = args
        .reissue
        .iter()
        .map(|u| UserId::parse(u).with_context(|| format!("--reissue {u:?}")))
        .collect::<Result<_, _>>()?;

    let database = args.data_dir.join("mqchat.db");
    anyhow::ensure!(
        database.exists(),
        "no database at {} (create users first, or pass --data-dir)",
        database.display()
    );
    let store = Store::open(&database, Durability::Full)?;
    let users = store.users()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;

    let passwd_path = out.join("passwd");
    let old = match std::fs::read_to_string(&passwd_path) {
        Ok(text) => parse_passwd(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", passwd_path.display())),
    };
    let hub_path = out.join("hub.toml");
    let old_hub_secret = std::fs::read_to_string(&hub_path)
        .ok()
        .and_then(|text| hub_secret(&text));

    let mut entries = BTreeMap::new();
    let mut issued = Vec::new();
    let hub_secret = match (old_hub_secret, old.get(HUB_USERNAME)) {
        (Some(secret), Some(hash)) => {
            entries.insert(HUB_USERNAME.to_owned(), hash.clone());
            secret
        }
        _ => {
            let secret = new_password();
            entries.insert(HUB_USERNAME.to_owned(), hash_password(&secret, &salt()));
            secret
        }
    };
    let (mut kept, mut dropped) = (0, 0);
    for user in &users {
        let name = user.id.as_str();
        if user.disabled {
            dropped += usize::from(old.contains_key(name));
            continue;
        }
        match old.get(name) {
            Some(hash) if !reissue.contains(&user.id) => {
                entries.insert(name.to_owned(), hash.clone());
                kept += 1;
            }
            _ => {
                let password = new_password();
                entries.insert(name.to_owned(), hash_password(&password, &salt()));
                issued.push((name.to_owned(), password));
            }
        }
    }
    dropped += old
        .keys()
        .filter(|name| *name != HUB_USERNAME && !users.iter().any(|u| u.id.as_str() == *name))
        .count();
    for user in &reissue {
        anyhow::ensure!(
            users.iter().any(|u| u.id == *user && !u.disabled),
            "--reissue {user}: no such active user"
        );
    }

    let mut passwd = String::new();
    for (name, hash) in &entries {
        writeln!(passwd, "{name}:{hash}")?;
    }
    write_private(&passwd_path, &passwd)?;
    std::fs::write(out.join("acl"), acl(&root))?;
    let persistence = out.join("data");
    std::fs::create_dir_all(&persistence)?;
    std::fs::write(
        out.join("mosquitto.conf"),
        mosquitto_conf(&out, tcp, ws, args.run_as.as_deref()),
    )?;
    write_private(&hub_path, &hub_toml(tcp, &hub_secret, &data_dir, &root))?;

    let mut stdout = std::io::stdout().lock();
    for (name, password) in &issued {
        writeln!(stdout, "{name}\t{password}")?;
    }
    stdout.flush()?;
    eprintln!(
        "wrote {}: {} new broker password(s) above (shown once), {kept} kept, {dropped} removed; \
         start `mosquitto -c {}` and `mqchat hub --config {}`, or send a running Mosquitto SIGHUP",
        out.display(),
        issued.len(),
        out.join("mosquitto.conf").display(),
        hub_path.display(),
    );
    Ok(())
}

/// A file only its owner reads (Mosquitto warns about world-readable password files).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    // An existing file keeps its mode through `open`: set it.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// A broker password: 24 random bytes, URL-safe base64 (32 characters).
fn new_password() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("mqb_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn salt() -> [u8; 12] {
    rand::random()
}

/// Mosquitto 2's `$7$` password hash: PBKDF2-HMAC-SHA512, `$7$rounds$salt$hash` in base64.
fn hash_password(password: &str, salt: &[u8]) -> String {
    hash_with(password, salt, ROUNDS)
}

fn hash_with(password: &str, salt: &[u8], rounds: u32) -> String {
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, rounds, &mut hash);
    format!(
        "$7${rounds}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// `name:hash` lines; blank lines and `#` comments skipped.
fn parse_passwd(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, hash)| (name.to_owned(), hash.to_owned()))
        .collect()
}

/// The hub's password from a hub.toml this command wrote.
fn hub_secret(text: &str) -> Option<String> {
    let config = mqchat_server::HubProcessConfig::from_toml(text).ok()?;
    config.broker_password.filter(|p| !p.is_empty())
}

/// The ACL: the hub reads and writes the whole tree; devices get the `%u` patterns of
/// [`static_rules`].
fn acl(root: &TopicRoot) -> String {
    let mut text = format!(
        "# Written by `mqchat broker-config mosquitto`: mqchat's access rules as `%u` patterns.\n\
         # They do not tell a user's devices apart, and let every user read every presence\n\
         # (docs/BROKERS.md). Mosquitto rereads this file on SIGHUP.\n\n\
         # The hub\n\
         user {HUB_USERNAME}\n\
         topic readwrite {root}/#\n\n\
         # Every device, by its username\n"
    );
    for rule in static_rules(root) {
        let access = if rule.write { "write" } else { "read" };
        let _ = writeln!(text, "pattern {access} {}", rule.pattern);
    }
    text
}

fn listener(addr: SocketAddr) -> String {
    format!("listener {} {}\n", addr.port(), addr.ip())
}

fn mosquitto_conf(
    out: &Path,
    tcp: SocketAddr,
    ws: Option<SocketAddr>,
    run_as: Option<&str>,
) -> String {
    let mut text = format!(
        "# Written by `mqchat broker-config mosquitto` for Mosquitto 2.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         # The hub's persistent session keeps upstream packets while the hub restarts, and\n\
         # persistence keeps them (and devices' sessions) across a restart of Mosquitto.\n\
         persistence true\n\
         persistence_location {data}/\n\
         autosave_interval 60\n\
         persistent_client_expiration 7d\n\
         # The hub's queue must hold what devices send while it is away (default 1000).\n\
         max_queued_messages 100000\n\
         set_tcp_nodelay true\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\n",
        passwd = out.join("passwd").display(),
        acl = out.join("acl").display(),
        data = out.join("data").display(),
    );
    if let Some(user) = run_as {
        let _ = writeln!(text, "user {user}\n");
    }
    text.push_str(&listener(tcp));
    if let Some(ws) = ws {
        text.push_str(&listener(ws));
        text.push_str("protocol websockets\n");
        // Without it, a WebSocket listener binds every interface whatever its address.
        let domain = if ws.is_ipv4() { "ipv4" } else { "ipv6" };
        let _ = writeln!(text, "socket_domain {domain}");
    }
    text
}

fn hub_toml(tcp: SocketAddr, secret: &str, data_dir: &Path, root: &TopicRoot) -> String {
    let host = match tcp.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let quoted = |s: &str| toml_string(s);
    format!(
        "# Written by `mqchat broker-config mosquitto`: `mqchat hub --config` this file.\n\
         data_dir = {data}\n\
         root = {root}\n\
         broker = {broker}\n\
         broker_username = {user}\n\
         broker_password = {secret}\n\
         # Mosquitto 2.0 does not restore shared subscriptions from its persistence file: after\n\
         # a restart, upstream packets published before the hub subscribes again would find no\n\
         # subscriber. A plain subscription comes back with the hub's session (one hub only).\n\
         shared_subscription = false\n\
         # Mosquitto checks passwords and ACLs from its files: no HTTP endpoint needed.\n\
         http_listen = \"\"\n",
        data = quoted(&data_dir.display().to_string()),
        root = quoted(&root.to_string()),
        broker = quoted(&format!("mqtt://{host}:{}", tcp.port())),
        user = quoted(HUB_USERNAME),
        secret = quoted(secret),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line written by `mosquitto_passwd -b` 2.0.11: the same salt gives the same hash.
    #[test]
    fn hash_matches_mosquitto_passwd() {
        let line = "alice:$7$101$MGM+MmAL40ch1bAl$Z4oNOaAB30HH5STuenAcRP7HiHyIJ/FVD8himsuX/co4rn0Lmli+eHYisEnGa0zYDRqfa6kXEV2k7o2i9UTv8w==";
        let entries = parse_passwd(line);
        let hash = &entries["alice"];
        let salt_b64 = hash.split('$').nth(3).expect("salt");
        let salt = STANDARD.decode(salt_b64).expect("base64");
        assert_eq!(&hash_with("correct horse", &salt, 101), hash);
        assert_ne!(&hash_with("wrong horse", &salt, 101), hash);
    }

    #[test]
    fn passwords_are_long_and_distinct() {
        let (a, b) = (new_password(), new_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
    }

    #[test]
    fn acl_has_the_hub_and_the_patterns() {
        let text = acl(&TopicRoot::default());
        assert!(text.contains("user _hub\ntopic readwrite mq/#\n"), "{text}");
        assert!(text.contains("pattern write mq/up/%u/+\n"), "{text}");
        assert!(text.contains("pattern read mq/in/%u/#\n"), "{text}");
        assert!(!text.contains("pattern write mq/in/"), "{text}");
    }

    #[test]
    fn websocket_listener_is_pinned_to_its_address_family() {
        let conf = mosquitto_conf(
            Path::new("/x"),
            "127.0.0.1:1883".parse().expect("addr"),
            Some("127.0.0.1:8083".parse().expect("addr")),
            None,
        );
        assert!(conf.contains("listener 1883 127.0.0.1\n"), "{conf}");
        assert!(
            conf.contains("listener 8083 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n"),
            "{conf}"
        );
        assert!(conf.contains("allow_anonymous false"), "{conf}");
    }

    #[test]
    fn hub_toml_reads_back() {
        let text = hub_toml(
            "0.0.0.0:1999".parse().expect("addr"),
            "s\"e\\cret",
            Path::new("/data dir"),
            &TopicRoot::default(),
        );
        let config = mqchat_server::HubProcessConfig::from_toml(&text).expect("valid TOML");
        assert_eq!(config.broker, "mqtt://127.0.0.1:1999");
        assert_eq!(config.broker_password.as_deref(), Some("s\"e\\cret"));
        assert_eq!(config.data_dir, Path::new("/data dir"));
        assert_eq!(config.http_listen, None);
        assert_eq!(hub_secret(&text).as_deref(), Some("s\"e\\cret"));
    }
}
