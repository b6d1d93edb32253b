//! The one-shot and listening client commands, on the SDK.

use std::time::Duration;

use anyhow::Context;
use mqchat_client::{Client, ClientConfig, Event, Events, HistoryQuery, Presence, Seq, Timestamp};
use mqchat_proto::body::{Availability, ContactAction, Message, Profile, Sync};
use mqchat_proto::{ConversationRef, DeviceId, TopicRoot, UserId};
use serde_json::json;

use crate::output::{availability_name, event_json, event_text};

/// How to reach the server and as whom.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ConnectArgs {
    /// The server: mqtt://host:port or ws://host:port/mqtt, or over TLS mqtts://host:port or
    /// wss://host:port/mqtt.
    #[arg(long, env = "MQCHAT_SERVER", default_value = "mqtt://127.0.0.1:1883")]
    server: String,
    /// For mqtts:// and wss://: the CA certificates (PEM) to trust instead of the system's.
    #[arg(long, env = "MQCHAT_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Your user id.
    #[arg(long, short, env = "MQCHAT_USER")]
    user: String,
    /// Your password, or a device token.
    #[arg(long, short, env = "MQCHAT_PASSWORD", hide_env_values = true)]
    password: String,
    /// This device's id (default: `cli` for listen and chat, `cli-once` for one-shot commands).
    #[arg(long, short, env = "MQCHAT_DEVICE")]
    device: Option<String>,
    /// The server's topic root.
    #[arg(long, env = "MQCHAT_ROOT", default_value = "mq")]
    root: String,
    /// The server's SIP domain (its `[sip] domain`), for calls.
    #[arg(long, env = "MQCHAT_SIP_DOMAIN", default_value = "localhost")]
    sip_domain: String,
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl ConnectArgs {
    /// Connects: persistent for long-running commands, a clean session for one-shot ones
    /// (so the broker does not keep a queue for a device that will not come back).
    pub(crate) async fn connect(
        &self,
        long_running: bool,
        presence: Presence,
    ) -> anyhow::Result<(Client, Events)> {
        let device = if long_running { "cli" } else { "cli-once" };
        self.connect_device(device, long_running, presence).await
    }

    /// [`ConnectArgs::connect`] with `device` as the device id unless `--device` names one.
    pub(crate) async fn connect_device(
        &self,
        device: &str,
        long_running: bool,
        presence: Presence,
    ) -> anyhow::Result<(Client, Events)> {
        let device = self.device.clone().unwrap_or_else(|| device.to_owned());
        let mut config = ClientConfig::new(
            &self.server,
            UserId::parse(&self.user)?,
            DeviceId::parse(&device)?,
            &self.password,
        )?
        .root(TopicRoot::parse(&self.root)?)
        .clean_start(!long_running)
        .catch_up(long_running)
        .auto_delivered(long_running)
        .sip_domain(&self.sip_domain)
        .presence(presence);
        if let Some(path) = &self.ca_file {
            config = config.ca_file(path);
        }
        Ok(Client::connect(config).await?)
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    pub(crate) fn user(&self) -> &str {
        &self.user
    }
}

fn conv(text: &str) -> anyhow::Result<ConversationRef> {
    ConversationRef::parse(text).with_context(|| format!("conversation {text:?}"))
}

fn availability(text: &str) -> anyhow::Result<Availability> {
    Ok(match text {
        "available" | "online" => Availability::Available,
        "away" => Availability::Away,
        "busy" | "dnd" => Availability::Busy,
        other => anyhow::bail!("availability {other:?}: use available, away or busy"),
    })
}

#[derive(clap::Args, Debug)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// To whom: a user id (or #group).
    to: String,
    /// The text; several words are joined with spaces.
    #[arg(required = true)]
    text: Vec<String>,
}

pub(crate) async fn send(args: SendArgs) -> anyhow::Result<()> {
    let (client, _events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let sent = client
        .send(conv(&args.to)?, Message::text(args.text.join(" ")))
        .await;
    let _ = client.close().await;
    let sent = sent?;
    if args.connect.json() {
        println!(
            "{}",
            json!({"conv": sent.conv.to_string(), "seq": sent.seq.get(), "id": sent.id.to_string(), "ts": sent.ts.unix_ms(), "duplicate": sent.duplicate})
        );
    } else {
        println!("sent to {} as #{}", sent.conv, sent.seq);
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Also show these users' presence (they must have accepted you as a contact).
    #[arg(long = "watch", value_name = "USER")]
    watch: Vec<String>,
    /// Your availability while listening: available, away or busy.
    #[arg(long, default_value = "available")]
    presence: String,
    /// A status text shown with your presence.
    #[arg(long)]
    status: Option<String>,
    /// Stop after this many message events (for scripts).
    #[arg(long)]
    count: Option<usize>,
    /// Answer every incoming call with the SDP in this file (`-`: a minimal audio SDP; no
    /// media flows).
    #[arg(long, value_name = "SDPFILE", conflicts_with = "reject_calls")]
    answer_calls: Option<std::path::PathBuf>,
    /// Refuse every incoming call: busy or decline.
    #[arg(long, value_name = "HOW")]
    reject_calls: Option<String>,
    /// Hang up answered calls after this many seconds.
    #[arg(long, value_name = "SECS", requires = "answer_calls")]
    hangup_after: Option<f64>,
    /// Stop after this many calls have ended (for scripts).
    #[arg(long, value_name = "N")]
    calls: Option<usize>,
}

pub(crate) async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let presence = Presence {
        status: args.status.clone(),
        ..Presence::new(availability(&args.presence)?)
    };
    let policy =
        crate::call::Policy::from_args(args.answer_calls.as_deref(), args.reject_calls.as_deref())?;
    let hangup_after = args
        .hangup_after
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow::anyhow!("--hangup-after: {s} is not a duration"))
        })
        .transpose()?;
    let (client, mut events) = args.connect.connect(true, presence).await?;
    for user in &args.watch {
        client.watch_presence(&UserId::parse(user)?).await?;
    }
    let mut messages = 0;
    let mut calls_ended = 0;
    // Answered calls to hang up, and when.
    let mut hangups: Vec<(tokio::time::Instant, mqchat_client::Call)> = Vec::new();
    loop {
        let next_hangup = hangups.iter().map(|(at, _)| *at).min();
        let event = tokio::select! {
            event = events.next() => event,
            _ = tokio::signal::ctrl_c() => None,
            () = async {
                match next_hangup {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = tokio::time::Instant::now();
                for (_, call) in hangups.extract_if(.., |(at, _)| *at <= now) {
                    if let Err(e) = client.hangup(&call).await {
                        tracing::debug!("hanging up {call}: {e}");
                    }
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        if args.connect.json() {
            if let Some(line) = event_json(&event) {
                println!("{line}");
            }
        } else if let Some(line) = event_text(&event) {
            println!("{line}");
        }
        match &event {
            Event::Message { .. } => {
                messages += 1;
                if args.count.is_some_and(|n| messages >= n) {
                    break;
                }
            }
            Event::IncomingCall { call, .. } => {
                if let Err(e) = policy.apply(&client, call).await {
                    eprintln!("error: call {call}: {e}");
                }
            }
            Event::CallAnswered { call, .. } | Event::CallEnded { call, .. }
                if hangups.iter().any(|(_, c)| c == call) =>
            {
                hangups.retain(|(_, c)| c != call);
            }
            _ => {}
        }
        if let (Event::IncomingCall { call, .. }, Some(after), crate::call::Policy::Answer(_)) =
            (&event, hangup_after, &policy)
        {
            hangups.push((tokio::time::Instant::now() + after, call.clone()));
        }
        if matches!(event, Event::CallEnded { .. }) {
            calls_ended += 1;
            if args.calls.is_some_and(|n| calls_ended >= n) {
                break;
            }
        }
    }
    client.close().await?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The conversation: a user id (or #group).
    conv: String,
    /// How many events (newest last).
    #[arg(long, default_value_t = 20)]
    limit: u64,
    /// Only events before this sequence number.
    #[arg(long)]
    before: Option<u64>,
    /// Only events after this sequence number.
    #[arg(long, conflicts_with = "before")]
    after: Option<u64>,
}

pub(crate) async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let (client, _events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let query = HistoryQuery {
        after: args.after.map(Seq::new),
        before: args.before.map(Seq::new),
        limit: Some(args.limit),
        since: None,
    };
    let result = client.history(conv(&args.conv)?, query).await;
    let _ = client.close().await;
    let result = result?;
    let registry = mqchat_proto::Registry::with_core();
    for packet in &result.events {
        if args.connect.json() {
            println!("{}", registry.to_json(packet));
        } else if let Some(change) = crate::group::packet_text(packet) {
            println!("#{} {change}", packet.seq.unwrap_or(0));
        } else if let Some(call) =
            crate::call::packet_text(packet, &conv(&args.conv)?, &args.connect.user)
        {
            println!("#{} {call}", packet.seq.unwrap_or(0));
        } else {
            let who = packet.from.as_ref().map_or_else(
                || args.conv.clone(),
                |f| {
                    if f.as_str() == args.connect.user {
                        "you".to_owned()
                    } else {
                        f.to_string()
                    }
                },
            );
            let text = message_text(packet).unwrap_or_else(|| {
                format!(
                    "({})",
                    registry
                        .provider(packet.kind)
                        .map_or("unknown", |p| p.name())
                )
            });
            println!("#{} {who}: {text}", packet.seq.unwrap_or(0));
        }
    }
    if !args.connect.json() && result.more {
        println!(
            "(more before; use --before {})",
            result.events.first().and_then(|p| p.seq).unwrap_or(0)
        );
    }
    Ok(())
}

/// The text of a message packet, for listings.
pub(crate) fn message_text(packet: &mqchat_proto::Packet) -> Option<String> {
    use mqchat_proto::Body;
    Message::from_packet(packet).ok().map(|m| m.text)
}

#[derive(clap::Args, Debug)]
pub(crate) struct ConversationsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// How many conversations (most recent first).
    #[arg(long, default_value_t = 50)]
    limit: u64,
}

pub(crate) async fn conversations(args: ConversationsArgs) -> anyhow::Result<()> {
    let (client, _events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let result = client
        .sync(Sync {
            limit: Some(args.limit),
            newest_first: true,
            ..Sync::default()
        })
        .await;
    let _ = client.close().await;
    for entry in result?.conversations {
        let last = entry
            .last
            .as_ref()
            .and_then(|last| {
                message_text(last)
                    .or_else(|| crate::call::packet_text(last, &entry.conv, &args.connect.user))
            })
            .unwrap_or_default();
        if args.connect.json() {
            println!(
                "{}",
                json!({"conv": entry.conv.to_string(), "last-seq": entry.last_seq.get(), "unread": entry.unread, "read": entry.read.get(), "peer-read": entry.peer_read.get(), "last": last})
            );
        } else {
            let unread = if entry.unread > 0 {
                format!(" ({} unread)", entry.unread)
            } else {
                String::new()
            };
            println!("{}{unread}: {last}", entry.conv);
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct PresenceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Whose presence to show (they must have accepted you as a contact).
    #[arg(required = true)]
    users: Vec<String>,
}

/// Shows the current presence of users: their devices' retained presence arrives at once.
pub(crate) async fn presence(args: PresenceArgs) -> anyhow::Result<()> {
    let (client, mut events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    for user in &args.users {
        client.watch_presence(&UserId::parse(user)?).await?;
    }
    // Retained presences arrive right after the subscription; a short quiet period ends
    // the listing (a user with no device ever connected has none).
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), events.next()).await
    {
        if let Event::Presence {
            user,
            device,
            presence: Some(p),
        } = &event
        {
            if args.connect.json() {
                if let Some(line) = event_json(&event) {
                    println!("{line}");
                }
            } else {
                let seen = p
                    .last_active
                    .map(|t| format!(", last active {t}"))
                    .unwrap_or_default();
                println!(
                    "{user} ({device}): {}{seen}",
                    availability_name(p.availability)
                );
            }
        }
    }
    client.close().await?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct DevicesArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Revoke this device of yours (a lost phone): it is disconnected and cannot sign in again.
    #[arg(long, value_name = "DEVICE")]
    revoke: Option<String>,
}

/// `mqchat devices`: your devices, as the server knows them; `--revoke` one.
pub(crate) async fn devices(args: DevicesArgs) -> anyhow::Result<()> {
    let revoke = args
        .revoke
        .as_deref()
        .map(DeviceId::parse)
        .transpose()
        .context("--revoke")?;
    let (client, _events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let result = async {
        if let Some(device) = &revoke {
            client.revoke_device(device).await?;
        }
        client.devices().await
    }
    .await;
    let _ = client.close().await;
    let devices = result?;
    if let Some(device) = revoke
        && !args.connect.json()
    {
        println!("revoked {device}");
    }
    for d in devices {
        if args.connect.json() {
            println!(
                "{}",
                json!({"device": d.id.to_string(), "created": d.created.unix_ms(), "last-login": d.last_login.map(Timestamp::unix_ms), "token": d.token})
            );
        } else {
            let login = d.last_login.map_or_else(
                || "never".to_owned(),
                |t| format!("last login {}", t.unix_ms()),
            );
            let token = if d.token { ", device token" } else { "" };
            println!("{}\t{login}{token}", d.id);
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct ProfileArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Your display name ("" clears it).
    #[arg(long)]
    name: Option<String>,
    /// Your avatar URI ("" clears it).
    #[arg(long)]
    avatar: Option<String>,
    /// Your status text ("" clears it).
    #[arg(long)]
    status: Option<String>,
}

pub(crate) async fn profile(args: ProfileArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.name.is_some() || args.avatar.is_some() || args.status.is_some(),
        "give --name, --avatar or --status"
    );
    let (client, _events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let version = client
        .set_profile(Profile {
            name: args.name,
            avatar: args.avatar,
            status: args.status,
        })
        .await;
    let _ = client.close().await;
    let version = version?;
    if args.connect.json() {
        println!("{}", json!({"version": version}));
    } else {
        println!("profile updated (version {version})");
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct ContactArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// request, accept, decline, cancel or remove.
    action: String,
    /// The other user.
    peer: String,
    /// A note to go with a request.
    #[arg(long)]
    note: Option<String>,
}

pub(crate) async fn contact(args: ContactArgs) -> anyhow::Result<()> {
    let action = match args.action.as_str() {
        "request" | "invite" => ContactAction::Request,
        "accept" => ContactAction::Accept,
        "decline" => ContactAction::Decline,
        "cancel" => ContactAction::Cancel,
        "remove" => ContactAction::Remove,
        other => anyhow::bail!(
            "contact action {other:?}: use request, accept, decline, cancel or remove"
        ),
    };
    let (client, _events) = args
        .connect
        .connect(false, Presence::new(Availability::Available))
        .await?;
    let sent = client
        .contact(UserId::parse(&args.peer)?, action, args.note)
        .await;
    let _ = client.close().await;
    let sent = sent?;
    if args.connect.json() {
        println!(
            "{}",
            json!({"conv": sent.conv.to_string(), "seq": sent.seq.get(), "action": args.action})
        );
    } else {
        println!("{} sent to {}", args.action, args.peer);
    }
    Ok(())
}
