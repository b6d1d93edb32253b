//! A TCP proxy between devices and the broker that plays the network (the test kit's relay:
//! it can go down, every connection closed and new ones refused, and up again), and counts
//! the MQTT packets the broker sends to the device, by kind and topic, for measurements.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mqchat_testkit::Relay;

/// What the broker sent through the proxy, from the MQTT framing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// MQTT packets of every kind (PUBLISH, PUBACK, SUBACK, PINGRESP...).
    pub packets: u64,
    /// Their bytes, headers included.
    pub bytes: u64,
    /// PUBLISH packets and their bytes per topic kind: `d`, `e`, `r` (the device's inbox
    /// branches), `pr` (presence), `pf` (profiles).
    pub publishes: BTreeMap<&'static str, (u64, u64)>,
}

impl Traffic {
    /// PUBLISH packets on topics of `kind`.
    pub fn publishes(&self, kind: &str) -> u64 {
        self.publishes.get(kind).map_or(0, |(n, _)| *n)
    }

    /// What was sent after `earlier` was taken.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        let mut publishes = self.publishes.clone();
        for (kind, (n, bytes)) in &earlier.publishes {
            if let Some(entry) = publishes.get_mut(kind) {
                entry.0 -= n;
                entry.1 -= bytes;
            }
        }
        Traffic {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
            publishes,
        }
    }

    fn record(&mut self, kind: u8, topic: Option<&[u8]>, size: usize) {
        let size = size as u64;
        self.packets += 1;
        self.bytes += size;
        if kind == PUBLISH {
            let class = topic.map_or("?", classify);
            let entry = self.publishes.entry(class).or_default();
            entry.0 += 1;
            entry.1 += size;
        }
    }
}

const PUBLISH: u8 = 3;

/// The kind of a topic of the tree: `{root}/in/{user}/d` is `d`, and so on.
fn classify(topic: &[u8]) -> &'static str {
    let topic = String::from_utf8_lossy(topic);
    let levels: Vec<&str> = topic.split('/').collect();
    match levels.as_slice() {
        [_, "in", _, "d"] => "d",
        [_, "in", _, "e"] => "e",
        [_, "in", _, "r", _] => "r",
        [_, "pr", _, _] => "pr",
        [_, "pf", _] => "pf",
        // An empty topic: a topic alias.
        [""] => "alias",
        _ => "other",
    }
}

/// Splits MQTT packets out of a byte stream (MQTT 5, as the SDK speaks it), resolving the
/// broker's topic aliases.
#[derive(Default)]
struct Framer {
    buffer: Vec<u8>,
    aliases: std::collections::HashMap<u16, Vec<u8>>,
}

impl Framer {
    /// Adds bytes; reports each whole packet: its kind, its topic if a PUBLISH, its size.
    fn push(&mut self, bytes: &[u8], mut packet: impl FnMut(u8, Option<&[u8]>, usize)) {
        self.buffer.extend_from_slice(bytes);
        loop {
            let Some((remaining, header)) = remaining_length(&self.buffer) else {
                return;
            };
            let size = header + remaining;
            if self.buffer.len() < size {
                return;
            }
            let kind = self.buffer[0] >> 4;
            let topic = if kind == PUBLISH {
                self.publish_topic(header, size)
            } else {
                None
            };
            packet(kind, topic.as_deref(), size);
            self.buffer.drain(..size);
        }
    }
}

impl Framer {
    /// The topic of the PUBLISH at the start of the buffer (`size` bytes, fixed header of
    /// `header` bytes): its own, recorded under its Topic Alias property if it has one, or
    /// the one its alias stands for.
    fn publish_topic(&mut self, header: usize, size: usize) -> Option<Vec<u8>> {
        let packet = &self.buffer[..size];
        let len = usize::from(u16::from_be_bytes([
            *packet.get(header)?,
            *packet.get(header + 1)?,
        ]));
        let topic = packet.get(header + 2..header + 2 + len)?.to_vec();
        let qos = (packet[0] >> 1) & 3;
        let properties = header + 2 + len + if qos > 0 { 2 } else { 0 };
        let alias = topic_alias(packet.get(properties..)?);
        match alias {
            Some(alias) if topic.is_empty() => self.aliases.get(&alias).cloned(),
            Some(alias) => {
                self.aliases.insert(alias, topic.clone());
                Some(topic)
            }
            None => Some(topic),
        }
    }
}

/// The Topic Alias among MQTT 5 PUBLISH properties (`bytes` starts at their length).
fn topic_alias(bytes: &[u8]) -> Option<u16> {
    let (len, at) = varint(bytes)?;
    let mut properties = bytes.get(at..at + len)?;
    while let Some((&id, rest)) = properties.split_first() {
        let two = |r: &[u8]| Some(usize::from(u16::from_be_bytes([*r.first()?, *r.get(1)?])));
        let skip = match id {
            0x01 => 1,                                     // payload format indicator
            0x02 => 4,                                     // message expiry interval
            0x23 => return u16::try_from(two(rest)?).ok(), // topic alias
            0x03 | 0x08 | 0x09 => 2 + two(rest)?,          // content type, response topic, data
            0x26 => {
                // user property: two strings
                let first = 2 + two(rest)?;
                first + 2 + two(rest.get(first..)?)?
            }
            0x0b => varint(rest)?.1, // subscription identifier
            _ => return None,
        };
        properties = rest.get(skip..)?;
    }
    None
}

/// A variable byte integer at the start of `bytes`: its value and its length.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The remaining length of the packet at the start of `buffer` and the size of its fixed
/// header, once enough bytes are there.
fn remaining_length(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in buffer.iter().skip(1).take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 2));
        }
    }
    None
}

/// A relay to one broker address that counts what the broker sends through it.
pub struct Proxy {
    relay: Relay,
    traffic: Arc<Mutex<Traffic>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let counted = traffic.clone();
        let relay = Relay::start_with_tap(target, move || {
            let traffic = counted.clone();
            let mut framer = Framer::default();
            Box::new(move |bytes: &[u8]| {
                let mut traffic = traffic.lock().expect("no test thread panicked holding it");
                framer.push(bytes, |kind, topic, size| traffic.record(kind, topic, size));
            })
        })
        .await?;
        Ok(Self { relay, traffic })
    }

    pub fn url(&self) -> String {
        self.relay.url()
    }

    /// The network goes down: every connection is closed, new ones are refused.
    pub fn down(&self) {
        self.relay.down();
    }

    /// The network is back.
    pub fn up(&self) {
        self.relay.up();
    }

    /// What the broker sent to devices through this proxy so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
            .lock()
            .expect("no test thread panicked holding it")
            .clone()
    }
}

#[test]
fn framing() {
    let mut framer = Framer::default();
    let mut seen = Vec::new();
    // A PUBLISH on "mq/in/bob/d" with a 2-byte payload, split in two, then a PUBACK.
    let topic = b"mq/in/bob/d";
    let mut publish = vec![0x32, (2 + topic.len() + 2 + 2) as u8, 0, topic.len() as u8];
    publish.extend_from_slice(topic);
    publish.extend_from_slice(&[0, 1, 0xa0, 0x00]);
    let puback = [0x40, 2, 0, 1];
    framer.push(&publish[..5], |k, t, s| seen.push((k, t.map(classify), s)));
    assert!(seen.is_empty());
    let mut rest = publish[5..].to_vec();
    rest.extend_from_slice(&puback);
    framer.push(&rest, |k, t, s| seen.push((k, t.map(classify), s)));
    assert_eq!(seen, [(3, Some("d"), publish.len()), (4, None, 4)]);

    // MQTT 5 with a topic alias: set with the topic, then used alone.
    let mut seen = Vec::new();
    let mut aliased = vec![
        0x32,
        (2 + topic.len() + 2 + 4 + 2) as u8,
        0,
        topic.len() as u8,
    ];
    aliased.extend_from_slice(topic);
    aliased.extend_from_slice(&[0, 2, 3, 0x23, 0, 7, 0xa0, 0x00]);
    let alone = [0x32, 2 + 2 + 4 + 2, 0, 0, 0, 3, 3, 0x23, 0, 7, 0xa0, 0x00];
    framer.push(&aliased, |k, t, s| seen.push((k, t.map(classify), s)));
    framer.push(&alone, |k, t, s| seen.push((k, t.map(classify), s)));
    assert_eq!(
        seen,
        [(3, Some("d"), aliased.len()), (3, Some("d"), alone.len())]
    );
}
