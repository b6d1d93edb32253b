//! `mqchat chat <peer>`: an interactive conversation in the terminal, with typing
//! notifications both ways and receipt ticks.
//!
//! On a terminal, keys are read in raw mode so that typing can be announced (`composing` at
//! the first key, `paused` after 5 s without one). When standard input is not a terminal,
//! each line is a message (for scripts).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal;
use mqchat_client::{Client, Event, HistoryQuery, Presence, Seq};
use mqchat_proto::body::{Availability, Message, State};
use mqchat_proto::{ConversationRef, UserId};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::client::{ConnectArgs, message_text};
use crate::output::event_text;

#[derive(clap::Args, Debug)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Whom to chat with: a user id, or #group.
    peer: String,
}

const PAUSED_AFTER: Duration = Duration::from_secs(5);

/// Whether an event belongs on this chat's screen.
fn concerns(event: &Event, conv: &ConversationRef) -> bool {
    match event {
        Event::Message { conv: c, .. }
        | Event::ChatState { conv: c, .. }
        | Event::Delivered { conv: c, .. }
        | Event::Read { conv: c, .. }
        | Event::Contact { conv: c, .. } => c == conv,
        Event::Group { group, .. } => *conv == ConversationRef::Group(group.clone()),
        Event::Presence { user, .. } => Some(user) == conv.peer(),
        Event::Error { .. } | Event::Disconnected { .. } => true,
        _ => false,
    }
}

pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let conv =
        ConversationRef::parse(&args.peer).with_context(|| format!("peer {:?}", args.peer))?;
    let (client, mut events) = args
        .connect
        .connect(true, Presence::new(Availability::Available))
        .await?;
    if let Some(peer) = conv.peer() {
        // Only accepted contacts may see presence; without it the chat still works.
        let _ = client.watch_presence(peer).await;
    }
    let me = UserId::parse(args.connect.user())?;
    let recent = client
        .history(
            conv.clone(),
            HistoryQuery {
                limit: Some(10),
                ..HistoryQuery::default()
            },
        )
        .await?;
    let mut last_seen = 0;
    for packet in &recent.events {
        let who = match &packet.from {
            Some(from) if *from == me => "you".to_owned(),
            // In a group every event names its sender.
            Some(from) => from.to_string(),
            None => args.peer.clone(),
        };
        let text = message_text(packet)
            .or_else(|| crate::group::packet_text(packet))
            .or_else(|| crate::call::packet_text(packet, &conv, me.as_str()))
            .unwrap_or_default();
        println!("#{} {who}: {text}", packet.seq.unwrap_or(0));
        last_seen = last_seen.max(packet.seq.unwrap_or(0));
    }
    if last_seen > 0 {
        client
            .mark_read(conv.clone(), Seq::new(last_seen), false)
            .await?;
    }
    let interactive = crossterm::tty::IsTty::is_tty(&std::io::stdin());
    let result = if interactive {
        run_terminal(&client, &mut events, &conv, last_seen > 0).await
    } else {
        run_lines(&client, &mut events, &conv).await
    };
    client.close().await?;
    result
}

/// Reads terminal key events on a thread of their own (crossterm's reads block).
fn spawn_key_reader() -> mpsc::UnboundedReceiver<KeyEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            if let TermEvent::Key(key) = event
                && key.kind != KeyEventKind::Release
                && tx.send(key).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Restores the terminal however the chat ends.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        terminal::enable_raw_mode()?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
    }
}

fn redraw(line: &str) {
    let mut out = std::io::stdout();
    let _ = write!(out, "\r\x1b[2K> {line}");
    let _ = out.flush();
}

fn print_above(text: &str, line: &str) {
    let mut out = std::io::stdout();
    let _ = write!(out, "\r\x1b[2K{text}\r\n");
    redraw(line);
}

/// `started`: whether the conversation exists; the hub refuses typing notifications to
/// someone one has never written to, so they are sent only once it does.
async fn run_terminal(
    client: &Client,
    events: &mut mqchat_client::Events,
    conv: &ConversationRef,
    mut started: bool,
) -> anyhow::Result<()> {
    let _raw = RawMode::enable()?;
    let mut keys = spawn_key_reader();
    let mut line = String::new();
    let mut typing = false;
    let pause = tokio::time::sleep(PAUSED_AFTER);
    tokio::pin!(pause);
    print_above("(Enter sends, Ctrl-C or Ctrl-D quits)", &line);
    loop {
        tokio::select! {
            key = keys.recv() => {
                let Some(key) = key else { break };
                let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                match key.code {
                    KeyCode::Char('c' | 'd') if ctrl => break,
                    KeyCode::Enter => {
                        let text = std::mem::take(&mut line);
                        typing = false;
                        if !text.trim().is_empty() {
                            match client.send(conv.clone(), Message::text(text.clone())).await {
                                Ok(sent) => {
                                    started = true;
                                    print_above(&format!("#{} you: {text}  ✓", sent.seq), &line);
                                }
                                Err(e) => print_above(&format!("not sent: {e}"), &line),
                            }
                        }
                    }
                    KeyCode::Backspace => {
                        line.pop();
                        redraw(&line);
                    }
                    KeyCode::Char(c) => {
                        line.push(c);
                        redraw(&line);
                        if !typing && started {
                            typing = true;
                            let _ = client.chat_state(conv.clone(), State::Composing).await;
                        }
                        pause.as_mut().reset(tokio::time::Instant::now() + PAUSED_AFTER);
                    }
                    _ => {}
                }
            }
            () = &mut pause, if typing => {
                typing = false;
                let _ = client.chat_state(conv.clone(), State::Paused).await;
            }
            event = events.next() => {
                let Some(event) = event else { break };
                if !concerns(&event, conv) {
                    continue;
                }
                if let Event::Message { seq, own: false, .. } = &event {
                    started = true;
                    let _ = client.mark_read(conv.clone(), *seq, false).await;
                }
                if let Event::Message { own: true, .. } = &event {
                    continue; // shown when sent
                }
                if let Some(text) = event_text(&event) {
                    print_above(&text, &line);
                }
            }
        }
    }
    let _ = client.chat_state(conv.clone(), State::Gone).await;
    print_above("bye", "");
    println!();
    Ok(())
}

async fn run_lines(
    client: &Client,
    events: &mut mqchat_client::Events,
    conv: &ConversationRef,
) -> anyhow::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    while input_open {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(text) if !text.trim().is_empty() => {
                    let sent = client.send(conv.clone(), Message::text(text.clone())).await?;
                    println!("#{} you: {text}  ✓", sent.seq);
                }
                Some(_) => {}
                None => input_open = false,
            },
            event = events.next() => {
                let Some(event) = event else { break };
                if concerns(&event, conv) && !matches!(event, Event::Message { own: true, .. }) {
                    if let Event::Message { seq, .. } = &event {
                        client.mark_read(conv.clone(), *seq, false).await?;
                    }
                    if let Some(text) = event_text(&event) {
                        println!("{text}");
                    }
                }
            }
        }
    }
    Ok(())
}
