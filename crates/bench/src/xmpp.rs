//! A small XMPP client on raw XML over TCP, as light as the MQTT side: stream setup,
//! in-band registration (XEP-0077), SASL PLAIN, resource binding, initial presence; then the
//! one-to-one workload with a delivery receipt per message (XEP-0184).
//!
//! The framer splits the stream into top-level elements by counting tags, without building
//! a tree; the workload reads only the attributes and the body it needs. Pair i is
//! `a{i}@domain` (sender) and `b{i}@domain` (recipient), as on the MQTT side.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;

use crate::load::{Meter, Pacer, parse_stamp, stamp_text};
use crate::mqchat::pair_users;

/// The password of every benchmark account.
const PASSWORD: &str = "bench-secret";

/// One piece of the XML stream.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// `<?xml ...?>`.
    Prolog,
    /// `<stream:stream ...>` (never closed until the end).
    StreamOpen,
    /// `</stream:stream>`.
    StreamClose,
    /// A complete top-level element.
    Element,
}

/// Finds the end of the tag starting at `from` (the index of its `<`): the index of its
/// `>`, skipping quoted attribute values.
fn tag_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in buf.iter().enumerate().skip(from + 1) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The first complete frame in `buf` and the bytes it spans (leading whitespace included),
/// or `None` if more input is needed.
fn frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &buf[start..];
    if rest.starts_with(b"<?") {
        let end = rest.windows(2).position(|w| w == b"?>")?;
        return Some((Frame::Prolog, start + end + 2));
    }
    if rest.starts_with(b"<stream:stream") {
        return Some((Frame::StreamOpen, tag_end(buf, start)? + 1));
    }
    if rest.starts_with(b"</stream:stream") {
        return Some((Frame::StreamClose, tag_end(buf, start)? + 1));
    }
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let open = i + buf[i..].iter().position(|&b| b == b'<')?;
        let close = tag_end(buf, open)?;
        match buf.get(open + 1) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b'!' | b'?') => {}
            _ if buf[close - 1] == b'/' => {}
            _ => depth += 1,
        }
        i = close + 1;
        if depth == 0 {
            return Some((Frame::Element, i));
        }
    }
}

/// The value of attribute `name` in the element's start tag.
pub fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let head = &element[..element.find('>')?];
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(at) = head.find(&key) {
            let value = &head[at + key.len()..];
            return value.find(quote).map(|end| &value[..end]);
        }
    }
    None
}

/// The text of the first `<name>` child (no attributes on it, as servers relay bodies).
fn child_text<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let at = element.find(&open)? + open.len();
    let end = element[at..].find(&format!("</{name}>"))?;
    Some(&element[at..at + end])
}

/// The reading half of a stream: a buffer and the framer.
#[derive(Debug)]
pub struct Reader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// The next top-level element as text, skipping prologs and stream headers.
    pub async fn element(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some((kind, len)) = frame(&self.buf) {
                let bytes: Vec<u8> = self.buf.drain(..len).collect();
                match kind {
                    Frame::Element => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
                    Frame::StreamClose => bail!("the server closed the stream"),
                    Frame::Prolog | Frame::StreamOpen => continue,
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.half.read(&mut chunk).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads elements until one satisfies `want`, failing on a stream error.
    async fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        loop {
            let e = self.element().await?;
            if e.starts_with("<stream:error") {
                bail!("stream error while waiting for {what}: {e}");
            }
            if want(&e) {
                return Ok(e);
            }
        }
    }
}

/// A logged-in XMPP session: the reader and the writer.
#[derive(Debug)]
pub struct Session {
    /// Incoming elements.
    pub reader: Reader,
    /// Outgoing bytes.
    pub writer: OwnedWriteHalf,
}

fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

/// Connects, optionally registers the account in-band, authenticates with SASL PLAIN,
/// binds `resource`, and sends initial presence.
pub async fn login(
    addr: SocketAddr,
    domain: &str,
    user: &str,
    resource: &str,
    register: bool,
) -> anyhow::Result<Session> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (half, mut writer) = stream.into_split();
    let mut reader = Reader {
        half,
        buf: Vec::with_capacity(16 * 1024),
    };
    writer.write_all(stream_header(domain).as_bytes()).await?;
    reader
        .until("features", |e| e.starts_with("<stream:features"))
        .await?;
    if register {
        writer
            .write_all(
                format!(
                    "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>\
                     <username>{user}</username><password>{PASSWORD}</password></query></iq>"
                )
                .as_bytes(),
            )
            .await?;
        let reply = reader
            .until("registration", |e| attr(e, "id") == Some("reg1"))
            .await?;
        if attr(&reply, "type") != Some("result") && !reply.contains("<conflict") {
            bail!("registering {user}: {reply}");
        }
    }
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    writer
        .write_all(
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
            )
            .as_bytes(),
        )
        .await?;
    let outcome = reader
        .until("SASL outcome", |e| {
            e.starts_with("<success") || e.starts_with("<failure")
        })
        .await?;
    if outcome.starts_with("<failure") {
        bail!("authentication of {user} failed: {outcome}");
    }
    writer.write_all(stream_header(domain).as_bytes()).await?;
    let features = reader
        .until("features", |e| e.starts_with("<stream:features"))
        .await?;
    writer
        .write_all(
            format!(
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{resource}</resource></bind></iq>"
            )
            .as_bytes(),
        )
        .await?;
    let bound = reader
        .until("bind", |e| attr(e, "id") == Some("bind1"))
        .await?;
    if attr(&bound, "type") != Some("result") {
        bail!("bind of {user}: {bound}");
    }
    // Old servers need a session; RFC 6121 made it optional ("<optional/>").
    if features.contains("urn:ietf:params:xml:ns:xmpp-session") && !features.contains("<optional") {
        writer
            .write_all(
                b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
            )
            .await?;
        reader
            .until("session", |e| attr(e, "id") == Some("sess1"))
            .await?;
    }
    writer.write_all(b"<presence/>").await?;
    Ok(Session { reader, writer })
}

/// Registers (if needed) and connects the meter's pairs on `domain`, and starts their tasks.
pub async fn start_pairs(
    addr: SocketAddr,
    domain: &str,
    meter: &Arc<Meter>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    for i in 0..meter.pairs() {
        let (a, b) = pair_users(i);
        let recipient = login(addr, domain, &b, "phone", true).await?;
        let sender = login(addr, domain, &a, "phone", true).await?;
        tasks.spawn(recipient_loop(recipient, i, meter.clone()));
        let Session { reader, writer, .. } = sender;
        tasks.spawn(receipt_loop(reader, i, meter.clone()));
        let to = format!("{b}@{domain}");
        tasks.spawn(sender_loop(writer, to, meter.pacer(i), meter.clone()));
    }
    Ok(())
}

async fn sender_loop(mut writer: OwnedWriteHalf, to: String, mut pacer: Pacer, meter: Arc<Meter>) {
    let mut n = 0u64;
    while let Some(stamp) = pacer.next().await {
        n += 1;
        let stanza = format!(
            "<message to='{to}' id='m{n}' type='chat'><body>{}</body>\
             <request xmlns='urn:xmpp:receipts'/></message>",
            stamp_text(stamp)
        );
        if writer.write_all(stanza.as_bytes()).await.is_err() {
            meter.error();
            return;
        }
        pacer.sent(stamp);
    }
}

async fn recipient_loop(mut session: Session, index: usize, meter: Arc<Meter>) {
    let mut n = 0u64;
    loop {
        let element = match session.reader.element().await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("mqchat-bench: xmpp recipient {index}: {e:#}");
                meter.error();
                return;
            }
        };
        if !element.starts_with("<message") {
            continue;
        }
        if attr(&element, "type") == Some("error") {
            meter.error();
            continue;
        }
        let Some(stamp) = child_text(&element, "body").and_then(parse_stamp) else {
            continue;
        };
        meter.delivered(index, stamp);
        let (Some(from), Some(id)) = (attr(&element, "from"), attr(&element, "id")) else {
            continue;
        };
        n += 1;
        let receipt = format!(
            "<message to='{from}' id='r{n}'><received xmlns='urn:xmpp:receipts' id='{id}'/></message>"
        );
        if session.writer.write_all(receipt.as_bytes()).await.is_err() {
            meter.error();
            return;
        }
    }
}

async fn receipt_loop(mut reader: Reader, index: usize, meter: Arc<Meter>) {
    loop {
        let element = match reader.element().await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("mqchat-bench: xmpp sender {index}: {e:#}");
                meter.error();
                return;
            }
        };
        if !element.starts_with("<message") {
            continue;
        }
        if attr(&element, "type") == Some("error") {
            meter.error();
        } else if element.contains("<received") {
            meter.receipts(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &str) -> Vec<(Frame, String)> {
        let mut buf = input.as_bytes().to_vec();
        let mut out = Vec::new();
        while let Some((kind, len)) = frame(&buf) {
            let bytes: Vec<u8> = buf.drain(..len).collect();
            out.push((kind, String::from_utf8_lossy(&bytes).trim().to_owned()));
        }
        out
    }

    #[test]
    fn splits_a_stream_into_elements() {
        let got = frames(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='x>y'>\
             <stream:features><bind xmlns='b'/></stream:features>\
             <message to='a' id='1'><body>1 > 0</body><request xmlns='r'/></message>\n\
             <success xmlns='s'/><presence/></stream:stream>",
        );
        let kinds: Vec<&Frame> = got.iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            [
                &Frame::Prolog,
                &Frame::StreamOpen,
                &Frame::Element,
                &Frame::Element,
                &Frame::Element,
                &Frame::Element,
                &Frame::StreamClose
            ]
        );
        assert_eq!(
            got[3].1,
            "<message to='a' id='1'><body>1 > 0</body><request xmlns='r'/></message>"
        );
    }

    #[test]
    fn waits_for_the_rest_of_an_element() {
        assert_eq!(frame(b"<message to='a'><body>hi</bo"), None);
        assert_eq!(frame(b"<message to='a"), None);
        assert_eq!(frame(b"  "), None);
    }

    #[test]
    fn reads_attributes_and_children() {
        let e = "<message from=\"b@x/phone\" id='m7' type='chat'><body>0000000abc</body></message>";
        assert_eq!(attr(e, "from"), Some("b@x/phone"));
        assert_eq!(attr(e, "id"), Some("m7"));
        assert_eq!(attr(e, "to"), None);
        assert_eq!(child_text(e, "body"), Some("0000000abc"));
    }
}
