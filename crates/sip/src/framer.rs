//! Cuts a byte stream (SIP over TCP) into messages by the Content-Length header (RFC 3261
//! 18.3). CRLF keep-alives between messages (RFC 5626 4.4.1) are skipped.

use crate::error::ParseError;
use crate::message::Limits;

/// Buffers stream bytes and yields one complete message's bytes at a time, for
/// [`crate::Message::parse`]. A framing error (no header end within the size limit, a bad
/// Content-Length) means the stream cannot be resynchronised: close the connection.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    limits: Limits,
    /// Keep-alive pings (CRLF CRLF) seen since the last call of [`Framer::take_pings`].
    pings: usize,
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            buffer: Vec::new(),
            limits,
            pings: 0,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The number of double-CRLF keep-alives seen since the last call (each should be
    /// answered with a single CRLF).
    pub fn take_pings(&mut self) -> usize {
        std::mem::take(&mut self.pings)
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        // Skip keep-alives and stray line ends between messages.
        let mut skip = 0;
        while skip < self.buffer.len() && matches!(self.buffer[skip], b'\r' | b'\n') {
            if self.buffer[skip..].starts_with(b"\r\n\r\n") {
                self.pings += 1;
                skip += 4;
            } else {
                skip += 1;
            }
        }
        self.buffer.drain(..skip);
        let Some(head_end) = find(&self.buffer, b"\r\n\r\n") else {
            if self.buffer.len() > self.limits.max_message_bytes {
                return Err(ParseError::TooLarge {
                    limit: self.limits.max_message_bytes,
                });
            }
            return Ok(None);
        };
        let body_start = head_end + 4;
        let head =
            std::str::from_utf8(&self.buffer[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let mut length = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
                    let value = value.trim();
                    if value.is_empty()
                        || value.len() > 9
                        || !value.chars().all(|c| c.is_ascii_digit())
                    {
                        return Err(ParseError::header("Content-Length", "not a number"));
                    }
                    length = value.parse::<usize>().ok();
                }
            }
        }
        // A stream message must carry Content-Length; without one the body is taken as empty.
        let total = body_start + length.unwrap_or(0);
        if total > self.limits.max_message_bytes {
            return Err(ParseError::TooLarge {
                limit: self.limits.max_message_bytes,
            });
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let rest = self.buffer.split_off(total);
        Ok(Some(std::mem::replace(&mut self.buffer, rest)))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    const MSG: &str = "MESSAGE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn frames_split_anywhere() {
        let stream = format!("\r\n\r\n{MSG}{MSG}\r\n");
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut f = Framer::default();
            let mut out = Vec::new();
            f.push(&bytes[..cut]);
            while let Some(m) = f.next_message().expect("valid stream") {
                out.push(m);
            }
            f.push(&bytes[cut..]);
            while let Some(m) = f.next_message().expect("valid stream") {
                out.push(m);
            }
            assert_eq!(out.len(), 2, "cut at {cut}");
            for m in out {
                let m = Message::parse(&m).expect("a framed message parses");
                assert_eq!(m.body, b"hello");
            }
        }
    }

    #[test]
    fn framing_errors() {
        let mut f = Framer::default();
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n");
        assert!(f.next_message().is_err());
        let mut f = Framer::new(Limits {
            max_message_bytes: 100,
            max_headers: 10,
        });
        f.push(&[b'a'; 101]);
        assert!(f.next_message().is_err());
        let mut f = Framer::new(Limits {
            max_message_bytes: 100,
            max_headers: 10,
        });
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert!(f.next_message().is_err());
        let mut f = Framer::default();
        f.push(b"\r\n\r\n\r\n\r\n");
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.take_pings(), 2);
    }
}
