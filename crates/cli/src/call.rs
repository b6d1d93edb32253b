//! `mqchat call`: place a call and follow it (ringing, answered, ended); and how `listen`
//! answers or refuses incoming calls for scripts, and shows calls and their records.
//!
//! The command line carries the signalling only: the SDP it offers or answers (a file, or a
//! minimal audio description by default) is handed over as it is, and no media flows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use mqchat_client::{
    Call, CallRecord, CallTarget, Client, EndReason, Event, Presence, Rejection, Timestamp,
};
use mqchat_proto::body::{Availability, CallOutcome};
use mqchat_proto::{Body, ConversationRef, Packet, PacketKind};
use serde_json::{Value, json};

use crate::client::ConnectArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Whom to call: a user id (every device of theirs rings) or a sip: URI.
    to: String,
    /// The SDP offer, from a file (default: a minimal audio offer; no media flows).
    #[arg(long, value_name = "FILE")]
    sdp: Option<PathBuf>,
    /// Hang up this many seconds after the answer (default: when the other side hangs up,
    /// or on Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Give up when nobody answers within this many seconds (default: the server's ringing
    /// timeout).
    #[arg(long, value_name = "SECS")]
    ring_timeout: Option<f64>,
}

/// A minimal SDP: one audio stream on the discard port, for a call that carries no media.
pub(crate) fn default_sdp(user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "v=0\r\no={user} {now} 1 IN IP4 127.0.0.1\r\ns=mqchat\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// Reads an SDP file, with its lines ended by CRLF as SDP wants.
pub(crate) fn read_sdp(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the SDP file {}", path.display()))?;
    Ok(text.lines().map(|line| format!("{line}\r\n")).collect())
}

fn seconds(secs: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{what}: {secs} is not a duration"))
}

pub(crate) async fn run(args: CallArgs) -> anyhow::Result<()> {
    // A bad target fails here, before connecting.
    let target = CallTarget::parse(&args.to)?;
    let sdp = match &args.sdp {
        Some(path) => read_sdp(path)?,
        None => default_sdp(args.connect.user()),
    };
    let duration = args
        .duration
        .map(|s| seconds(s, "--duration"))
        .transpose()?;
    let ring_timeout = args
        .ring_timeout
        .map(|s| seconds(s, "--ring-timeout"))
        .transpose()?;
    let (client, mut events) = args
        .connect
        .connect_device("cli-call", true, Presence::new(Availability::Busy))
        .await?;
    let json = args.connect.json();
    let call = match client.call(&target, &sdp).await {
        Ok(call) => call,
        Err(e) => {
            let _ = client.close().await;
            return Err(e.into());
        }
    };
    if json {
        println!(
            "{}",
            json!({"event": "calling", "to": args.to, "call-id": call.call_id()})
        );
    } else {
        println!("calling {}…", args.to);
    }
    let started = Instant::now();
    let mut answered_at: Option<Instant> = None;
    let mut hangup_at = ring_timeout.map(|t| started + t);
    let ended = loop {
        let deadline = hangup_at.map(tokio::time::Instant::from_std);
        let event = tokio::select! {
            event = events.next() => event,
            _ = tokio::signal::ctrl_c() => {
                hang_up(&client, &call).await;
                continue;
            }
            () = sleep_until(deadline) => {
                hangup_at = None;
                hang_up(&client, &call).await;
                continue;
            }
        };
        let Some(event) = event else {
            break None;
        };
        let ours = match &event {
            Event::CallRinging { call: c }
            | Event::CallAnswered { call: c, .. }
            | Event::CallEnded { call: c, .. } => *c == call,
            _ => false,
        };
        if !ours {
            continue;
        }
        print_event(&event, json);
        match event {
            Event::CallAnswered { .. } => {
                answered_at = Some(Instant::now());
                hangup_at = duration.map(|d| Instant::now() + d);
            }
            Event::CallEnded { reason, .. } => break Some(reason),
            _ => {}
        }
    };
    let _ = client.close().await;
    match (ended, answered_at) {
        (Some(_), Some(at)) => {
            if !json {
                println!("the call lasted {:.1} s", at.elapsed().as_secs_f64());
            }
            Ok(())
        }
        (Some(reason), None) => anyhow::bail!("the call was not answered: {reason}"),
        (None, _) => anyhow::bail!("the connection closed during the call"),
    }
}

async fn hang_up(client: &Client, call: &Call) {
    if let Err(e) = client.hangup(call).await {
        tracing::debug!("hanging up: {e}");
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn print_event(event: &Event, json: bool) {
    if json {
        if let Some(line) = output::event_json(event) {
            println!("{line}");
        }
    } else if let Some(line) = output::event_text(event) {
        println!("{line}");
    }
}

/// What `listen` does with incoming calls.
#[derive(Debug, Clone)]
pub(crate) enum Policy {
    /// Let them ring (they end when the caller gives up or the server's timeout passes).
    Ring,
    /// Answer every call with this SDP.
    Answer(String),
    /// Refuse every call.
    Reject(Rejection),
}

impl Policy {
    pub(crate) fn from_args(answer: Option<&Path>, reject: Option<&str>) -> anyhow::Result<Self> {
        Ok(match (answer, reject) {
            (Some(path), _) if path == Path::new("-") => Self::Answer(default_sdp("mqchat")),
            (Some(path), _) => Self::Answer(read_sdp(path)?),
            (None, Some("busy")) => Self::Reject(Rejection::Busy),
            (None, Some("decline")) => Self::Reject(Rejection::Decline),
            (None, Some(other)) => {
                anyhow::bail!("--reject-calls {other:?}: use busy or decline")
            }
            (None, None) => Self::Ring,
        })
    }

    /// Applies the policy to an incoming call.
    pub(crate) async fn apply(&self, client: &Client, call: &Call) -> anyhow::Result<()> {
        match self {
            Self::Ring => {}
            Self::Answer(sdp) => client.answer(call, sdp).await?,
            Self::Reject(why) => client.reject(call, *why).await?,
        }
        Ok(())
    }
}

fn reason_json(reason: &EndReason) -> Value {
    let (name, local, code) = match reason {
        EndReason::HungUp { local } => ("hung-up", Some(*local), None),
        EndReason::Cancelled { local } => ("cancelled", Some(*local), None),
        EndReason::Busy { local } => ("busy", Some(*local), None),
        EndReason::Declined { local } => ("declined", Some(*local), None),
        EndReason::AnsweredElsewhere => ("answered-elsewhere", None, None),
        EndReason::Failed { code, .. } => ("failed", None, Some(*code)),
        _ => ("other", None, None),
    };
    json!({"reason": name, "local": local, "code": code, "text": reason.to_string()})
}

/// `--json` lines for call events.
pub(crate) fn event_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::IncomingCall {
            call,
            from,
            name,
            conv,
            sdp,
        } => json!({
            "event": "incoming-call", "call-id": call.call_id(), "from": from, "name": name,
            "conv": conv.as_ref().map(ToString::to_string), "sdp": sdp,
        }),
        Event::CallRinging { call } => json!({"event": "call-ringing", "call-id": call.call_id()}),
        Event::CallAnswered { call, sdp } => {
            json!({"event": "call-answered", "call-id": call.call_id(), "sdp": sdp})
        }
        Event::CallEnded { call, reason } => {
            let mut value = reason_json(reason);
            value["event"] = "call-ended".into();
            value["call-id"] = call.call_id().into();
            value
        }
        Event::CallRecord {
            conv,
            seq,
            ts,
            own,
            record,
        } => {
            let mut value = record_json(record);
            value["event"] = "call-record".into();
            value["conv"] = conv.to_string().into();
            value["seq"] = seq.get().into();
            value["ts"] = ts.unix_ms().into();
            value["own"] = (*own).into();
            value
        }
        _ => return None,
    })
}

fn record_json(record: &CallRecord) -> Value {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "call-id": record.call_id, "outcome": record.outcome.name(), "started": record.started.unix_ms(),
        "answered": record.answered.map(Timestamp::unix_ms), "ended": record.ended.unix_ms(),
        "duration": record.duration.map(millis),
        "answered-by": record.answered_by.as_ref().map(|d| d.to_string()), "media": record.media,
    })
}

/// Text lines for call events.
pub(crate) fn event_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::IncomingCall {
            call, from, name, ..
        } => {
            let who = name
                .as_deref()
                .map_or_else(|| from.clone(), |n| format!("{n} <{from}>"));
            format!("incoming call from {who} (call {call})")
        }
        Event::CallRinging { .. } => "ringing".into(),
        Event::CallAnswered { sdp, .. } => {
            let media: Vec<&str> = sdp.lines().filter_map(|l| l.strip_prefix("m=")).collect();
            format!("answered ({})", media.join("; "))
        }
        Event::CallEnded { reason, .. } => format!("call ended: {reason}"),
        Event::CallRecord {
            conv,
            seq,
            own,
            record,
            ..
        } => format!("[{conv} #{seq}] {}", record_text(conv, *own, record)),
        _ => return None,
    })
}

/// A call record in words: who called, the outcome and the duration.
pub(crate) fn record_text(conv: &ConversationRef, own: bool, record: &CallRecord) -> String {
    let who = if own {
        format!("you called {conv}")
    } else {
        format!("call from {conv}")
    };
    let outcome = match record.outcome {
        CallOutcome::Answered => {
            let secs = record.duration.map_or(0, |d| d.as_secs());
            let by = record
                .answered_by
                .as_ref()
                .map(|d| format!(" on {d}"))
                .unwrap_or_default();
            format!("answered{by}, {}:{:02}", secs / 60, secs % 60)
        }
        other => other.name().to_owned(),
    };
    format!("{who}: {outcome}")
}

/// A call record as `history` shows it, if `packet` is one.
pub(crate) fn packet_text(packet: &Packet, conv: &ConversationRef, me: &str) -> Option<String> {
    if packet.kind != PacketKind::CALL {
        return None;
    }
    let record = CallRecord::from(mqchat_proto::body::Call::from_packet(packet).ok()?);
    let own = packet.from.as_ref().is_some_and(|f| f.as_str() == me);
    Some(format!("({})", record_text(conv, own, &record)))
}
