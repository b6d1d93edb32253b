//! The two sides every scenario compares: what the hub accepted (the [`Archive`] of `Sent`
//! confirmations) and what each device showed its application (its [`View`], the events it
//! emitted, across every connection and restart of that device).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mqchat_client::{Client, ClientConfig, Event, Events, Sent, SyncState};
use mqchat_proto::body::{Availability, Message};
use tokio::sync::watch;

use mqchat_testkit::sdk::conv;

/// How long a scenario waits for a device to reach the view it expects.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Every message the hub accepted (its sender had the `Sent` confirmation), per
/// conversation (an unordered pair of users) and sequence number.
#[derive(Debug, Default)]
pub struct Archive {
    convs: Mutex<Conversations>,
    /// Confirmations of resends: the hub had stored the message already.
    resent: std::sync::atomic::AtomicUsize,
}

/// Per pair of users, per sequence number: the sender and the text.
type Conversations = BTreeMap<(String, String), BTreeMap<u64, (String, String)>>;

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl Archive {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Conversations> {
        self.convs
            .lock()
            .expect("no test thread panicked holding it")
    }

    /// `from` sent `text` to `to` and the hub confirmed it as `sent`.
    pub fn accepted(&self, from: &str, to: &str, text: &str, sent: &Sent) {
        let mut convs = self.lock();
        let events = convs.entry(pair(from, to)).or_default();
        if let Some((other_from, other)) = events.get(&sent.seq.get()) {
            assert_eq!(
                (other_from.as_str(), other.as_str()),
                (from, text),
                "two messages confirmed with the same sequence number {}",
                sent.seq
            );
        }
        events.insert(sent.seq.get(), (from.to_owned(), text.to_owned()));
        if sent.duplicate {
            self.resent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Messages confirmed by a duplicate `ack`: resent after a fault, stored before it.
    pub fn resent(&self) -> usize {
        self.resent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Messages accepted between `a` and `b`.
    pub fn count(&self, a: &str, b: &str) -> usize {
        self.lock().get(&pair(a, b)).map_or(0, BTreeMap::len)
    }

    /// The conversation between `a` and `b` as (seq, sender, text), in sequence order.
    pub fn conversation(&self, a: &str, b: &str) -> Vec<(u64, String, String)> {
        self.lock()
            .get(&pair(a, b))
            .map(|events| {
                events
                    .iter()
                    .map(|(seq, (from, text))| (*seq, from.clone(), text.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sends `n` messages from `client` to `to`, one after the other, recording each
/// confirmation. Texts are `"{prefix} {i}"`.
pub async fn send_many(
    client: &Client,
    archive: &Archive,
    to: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<()> {
    for i in 0..n {
        let text = format!("{prefix} {i}");
        let sent = client.send(conv(to), Message::text(&text)).await?;
        archive.accepted(client.user().as_str(), to, &text, &sent);
    }
    Ok(())
}

/// A message as a device showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub seq: u64,
    pub from: String,
    pub text: String,
    pub own: bool,
}

/// What one device showed its application, in the order it did.
#[derive(Debug, Default)]
pub struct View {
    /// Messages per conversation (named from the device's side), in arrival order.
    pub messages: BTreeMap<String, Vec<Seen>>,
    /// Read markers: (conversation, by, up to, own).
    pub reads: Vec<(String, String, u64, bool)>,
    /// Delivered markers: (conversation, by, up to).
    pub delivered: Vec<(String, String, u64)>,
    /// Chat states received.
    pub chat_states: usize,
    /// Presence changes: (user, device, availability).
    pub presence: Vec<(String, String, Option<Availability>)>,
    pub connections: usize,
    pub disconnections: usize,
}

impl View {
    /// Messages held in `conv`.
    pub fn count(&self, conv: &str) -> usize {
        self.messages.get(conv).map_or(0, Vec::len)
    }

    /// The highest read marker told for `conv` by `by`.
    pub fn read_by(&self, conv: &str, by: &str) -> Option<u64> {
        self.reads
            .iter()
            .filter(|(c, b, _, _)| c == conv && b == by)
            .map(|(_, _, up_to, _)| *up_to)
            .max()
    }

    fn record(&mut self, event: Event) {
        match event {
            Event::Message {
                conv,
                seq,
                from,
                own,
                message,
                ..
            } => self
                .messages
                .entry(conv.to_string())
                .or_default()
                .push(Seen {
                    seq: seq.get(),
                    from: from.to_string(),
                    text: message.text,
                    own,
                }),
            Event::Read {
                conv,
                by,
                up_to,
                own,
            } => self
                .reads
                .push((conv.to_string(), by.to_string(), up_to.get(), own)),
            Event::Delivered { conv, by, up_to } => {
                self.delivered
                    .push((conv.to_string(), by.to_string(), up_to.get()));
            }
            Event::ChatState { .. } => self.chat_states += 1,
            Event::Presence {
                user,
                device,
                presence,
            } => self.presence.push((
                user.to_string(),
                device.to_string(),
                presence.map(|p| p.availability),
            )),
            Event::Connected { .. } => self.connections += 1,
            Event::Disconnected { .. } => self.disconnections += 1,
            _ => {}
        }
    }
}

/// A device: its current client (replaced when the device restarts) and its view, which
/// spans all of its clients.
pub struct Device {
    pub name: String,
    pub user: String,
    pub device: String,
    client: Option<Client>,
    /// Records the current client's events in the view.
    recorder: Option<tokio::task::JoinHandle<()>>,
    view: Arc<Mutex<View>>,
    changed: watch::Sender<u64>,
}

impl Device {
    /// Connects a device with `config`.
    pub async fn connect(config: ClientConfig) -> anyhow::Result<Self> {
        let (client, events) = Client::connect(config).await?;
        let mut device = Self {
            name: format!("{}:{}", client.user(), client.device()),
            user: client.user().to_string(),
            device: client.device().to_string(),
            client: None,
            recorder: None,
            view: Arc::default(),
            changed: watch::channel(0).0,
        };
        device.attach(client, events);
        Ok(device)
    }

    fn attach(&mut self, client: Client, mut events: Events) {
        let view = self.view.clone();
        let changed = self.changed.clone();
        self.recorder = Some(tokio::spawn(async move {
            while let Some(event) = events.next().await {
                view.lock()
                    .expect("no test thread panicked holding it")
                    .record(event);
                changed.send_modify(|n| *n += 1);
            }
        }));
        self.client = Some(client);
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the device is running")
    }

    /// The view so far.
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .expect("no test thread panicked holding it")
    }

    /// Closes the client (DISCONNECT) and returns where it stood. Its events are all in
    /// the view once this returns.
    pub async fn close(&mut self) -> anyhow::Result<SyncState> {
        let client = self.client.take().expect("the device is running");
        let state = client.close().await?;
        // The stream ends after the last event the state covers.
        if let Some(recorder) = self.recorder.take() {
            recorder.await?;
        }
        Ok(state)
    }

    /// Starts the device again with `config` (typically resuming a saved state).
    pub async fn restart(&mut self, config: ClientConfig) -> anyhow::Result<()> {
        assert!(self.client.is_none(), "close the device first");
        let (client, events) = Client::connect(config).await?;
        self.attach(client, events);
        Ok(())
    }

    /// Waits until the view satisfies `done`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&View) -> bool) {
        self.wait_for_within(what, SETTLE, done).await;
    }

    pub async fn wait_for_within(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&View) -> bool,
    ) {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if done(&self.view()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let view = self.view();
                let counts: Vec<String> = view
                    .messages
                    .iter()
                    .map(|(conv, m)| format!("{conv}: {}", m.len()))
                    .collect();
                panic!(
                    "{}: no {what} within {within:?} (messages {counts:?}, {} reads, {} connections)",
                    self.name,
                    view.reads.len(),
                    view.connections
                );
            }
        }
    }

    /// Waits until the device holds as many messages with each peer as the archive does.
    pub async fn wait_complete(&self, archive: &Archive, peers: &[&str]) {
        self.wait_for("its complete view", |view| {
            peers
                .iter()
                .all(|peer| view.count(peer) >= archive.count(&self.user, peer))
        })
        .await;
    }

    /// Checks the view against the archive: for each peer, exactly the accepted messages,
    /// each once, in sequence order from the first, with the right sender; and no other
    /// conversation.
    pub fn assert_complete(&self, archive: &Archive, peers: &[&str]) {
        let view = self.view();
        let mut convs: Vec<&str> = view.messages.keys().map(String::as_str).collect();
        convs.sort_unstable();
        let mut expected_convs = peers.to_vec();
        expected_convs.sort_unstable();
        assert_eq!(convs, expected_convs, "{}: conversations", self.name);
        for peer in peers {
            let expected: Vec<Seen> = archive
                .conversation(&self.user, peer)
                .into_iter()
                .map(|(seq, from, text)| Seen {
                    seq,
                    own: from == self.user,
                    from,
                    text,
                })
                .collect();
            let got = view.messages.get(*peer).cloned().unwrap_or_default();
            if got == expected {
                continue;
            }
            panic!(
                "{}: conversation {peer}: {}",
                self.name,
                diff(&got, &expected)
            );
        }
    }
}

/// What is wrong with a conversation's view, in a line.
fn diff(got: &[Seen], expected: &[Seen]) -> String {
    let mut seqs: Vec<u64> = got.iter().map(|s| s.seq).collect();
    let in_order = seqs.windows(2).all(|w| w[0] < w[1]);
    seqs.sort_unstable();
    let duplicates: Vec<u64> = seqs
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    let missing: Vec<u64> = expected
        .iter()
        .map(|s| s.seq)
        .filter(|seq| seqs.binary_search(seq).is_err())
        .collect();
    let first_difference = got
        .iter()
        .zip(expected)
        .find(|(g, e)| g != e)
        .map(|(g, e)| format!("{g:?} where {e:?} was expected"));
    format!(
        "{} messages, {} expected; in order: {in_order}; duplicates {duplicates:?}; missing {missing:?}; first difference: {first_difference:?}",
        got.len(),
        expected.len()
    )
}
