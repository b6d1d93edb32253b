//! SIP messages (RFC 3261 section 7): parsing with limits, printing, typed accessors for the
//! headers a proxy uses, edits, and responses built from requests (8.2.6).

use std::fmt::Write as _;

use crate::address::NameAddr;
use crate::error::ParseError;
use crate::headers::{Headers, same_name};
use crate::method::{CSeq, Method};
use crate::scan::{has_control, is_token, is_word_char};
use crate::uri::Uri;
use crate::via::Via;

/// Size limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message (start line, headers and body) accepted.
    pub max_message_bytes: usize,
    /// The most header fields accepted (after splitting list headers).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 64 * 1024,
            max_headers: 200,
        }
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Uri },
    Response { code: u16, reason: String },
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Message {
    /// A request with no headers and no body.
    pub fn request(method: Method, uri: Uri) -> Message {
        Message {
            start: StartLine::Request { method, uri },
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Parses a whole message (one datagram, one framed stream message, or one mqchat `sip`
    /// packet) with the default limits, checking the headers every request and response
    /// must have (Via, From, To, Call-ID, CSeq) and the syntax of the headers this crate
    /// gives typed access to.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        Message::parse_with(bytes, &Limits::default())
    }

    /// [`Message::parse`] with explicit limits.
    pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Message, ParseError> {
        let message = Message::parse_syntax(bytes, limits)?;
        message.validate()?;
        Ok(message)
    }

    /// Parses the framing only (start line, header lines, Content-Length) without checking
    /// header values: a server uses it to answer 400 to a request whose headers are invalid.
    pub fn parse_syntax(bytes: &[u8], limits: &Limits) -> Result<Message, ParseError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(ParseError::TooLarge {
                limit: limits.max_message_bytes,
            });
        }
        // Empty lines before the start line are ignored (RFC 3261 7.5).
        let start = bytes
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(bytes.len());
        let bytes = &bytes[start..];
        let (head_len, body_start) = header_end(bytes).ok_or(ParseError::Incomplete)?;
        let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start_line = parse_start_line(lines.next().unwrap_or(""))?;

        let mut headers = Headers::new();
        let mut current: Option<(String, String, usize)> = None;
        let finish = |current: Option<(String, String, usize)>,
                      headers: &mut Headers|
         -> Result<(), ParseError> {
            if let Some((name, value, line)) = current {
                if has_control(&value) {
                    return Err(ParseError::BadHeaderLine {
                        line,
                        reason: "control character in value",
                    });
                }
                headers.push(&name, &value);
                if headers.len() > limits.max_headers {
                    return Err(ParseError::TooManyHeaders {
                        limit: limits.max_headers,
                    });
                }
            }
            Ok(())
        };
        for (i, line) in lines.enumerate() {
            let line_no = i + 2;
            if line.starts_with([' ', '\t']) {
                // A folded continuation (RFC 3261 7.3.1): joined with one space.
                let Some((_, value, _)) = current.as_mut() else {
                    return Err(ParseError::BadHeaderLine {
                        line: line_no,
                        reason: "continuation line without a header",
                    });
                };
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            finish(current.take(), &mut headers)?;
            let (name, value) = line.split_once(':').ok_or(ParseError::BadHeaderLine {
                line: line_no,
                reason: "no colon",
            })?;
            let name = name.trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(ParseError::BadHeaderLine {
                    line: line_no,
                    reason: "bad header name",
                });
            }
            current = Some((name.to_string(), value.trim().to_string(), line_no));
        }
        finish(current.take(), &mut headers)?;

        let rest = &bytes[body_start..];
        let body = match content_length(&headers)? {
            Some(declared) if declared > rest.len() => {
                return Err(ParseError::BodyTruncated {
                    declared,
                    available: rest.len(),
                });
            }
            // Bytes after the declared body are discarded (RFC 3261 18.3).
            Some(declared) => rest[..declared].to_vec(),
            None => rest.to_vec(),
        };
        Ok(Message {
            start: start_line,
            headers,
            body,
        })
    }

    /// Checks the mandatory headers and the syntax of the typed ones.
    pub fn validate(&self) -> Result<(), ParseError> {
        let vias: Vec<&str> = self.headers.get_all("Via").collect();
        if vias.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        for v in vias {
            Via::parse(v)?;
        }
        for (name, what) in [("From", "From"), ("To", "To")] {
            let value = self
                .headers
                .get(name)
                .ok_or(ParseError::MissingHeader(what))?;
            NameAddr::parse_as(value, what)?;
        }
        let call_id = self
            .headers
            .get("Call-ID")
            .ok_or(ParseError::MissingHeader("Call-ID"))?;
        if !valid_call_id(call_id) {
            return Err(ParseError::header("Call-ID", "bad Call-ID"));
        }
        let cseq = CSeq::parse(
            self.headers
                .get("CSeq")
                .ok_or(ParseError::MissingHeader("CSeq"))?,
        )?;
        if let StartLine::Request { method, .. } = &self.start
            && *method != cseq.method
        {
            return Err(ParseError::header(
                "CSeq",
                "method differs from the request line",
            ));
        }
        if let Some(mf) = self.headers.get("Max-Forwards") {
            parse_max_forwards(mf)?;
        }
        for (name, what) in [("Route", "Route"), ("Record-Route", "Record-Route")] {
            for v in self.headers.get_all(name) {
                NameAddr::parse_as(v, what)?;
            }
        }
        for v in self.headers.get_all("Contact") {
            if v != "*" {
                NameAddr::parse_as(v, "Contact")?;
            }
        }
        if let Some(ct) = self.headers.get("Content-Type")
            && !valid_media_type(ct)
        {
            return Err(ParseError::header("Content-Type", "bad media type"));
        }
        Ok(())
    }

    /// Prints the message. Content-Length always states the body's length (the first
    /// Content-Length field is rewritten, others dropped; one is appended when missing).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + 64 * self.headers.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        let mut length_written = false;
        for h in self.headers.iter() {
            if same_name(&h.name, "Content-Length") {
                if !length_written {
                    let _ = write!(out, "{}: {}\r\n", h.name, self.body.len());
                    length_written = true;
                }
                continue;
            }
            let _ = write!(out, "{}: {}\r\n", h.name, h.value);
        }
        if !length_written {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    // ----- what kind of message -----

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method (`None` for a response; see [`Message::cseq`]).
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI.
    pub fn uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    // ----- typed accessors (None when absent or invalid) -----

    pub fn vias(&self) -> Vec<Via> {
        self.headers
            .get_all("Via")
            .filter_map(|v| Via::parse(v).ok())
            .collect()
    }

    pub fn top_via(&self) -> Option<Via> {
        self.headers.get("Via").and_then(|v| Via::parse(v).ok())
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers.get("Call-ID")
    }

    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok())
    }

    pub fn from(&self) -> Option<NameAddr> {
        self.headers
            .get("From")
            .and_then(|v| NameAddr::parse_as(v, "From").ok())
    }

    pub fn to(&self) -> Option<NameAddr> {
        self.headers
            .get("To")
            .and_then(|v| NameAddr::parse_as(v, "To").ok())
    }

    /// The first Contact (None for `*`).
    pub fn contact(&self) -> Option<NameAddr> {
        self.contacts().into_iter().next()
    }

    pub fn contacts(&self) -> Vec<NameAddr> {
        self.addresses("Contact")
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.headers
            .get("Max-Forwards")
            .and_then(|v| parse_max_forwards(v).ok())
    }

    pub fn routes(&self) -> Vec<NameAddr> {
        self.addresses("Route")
    }

    pub fn record_routes(&self) -> Vec<NameAddr> {
        self.addresses("Record-Route")
    }

    /// The media type, lower case, without parameters (`application/sdp`).
    pub fn content_type(&self) -> Option<String> {
        self.headers.get("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    fn addresses(&self, name: &'static str) -> Vec<NameAddr> {
        self.headers
            .get_all(name)
            .filter(|v| *v != "*")
            .filter_map(|v| NameAddr::parse_as(v, name).ok())
            .collect()
    }

    // ----- edits -----

    /// Adds a Via on top.
    pub fn push_via(&mut self, via: &Via) {
        self.headers.push_front("Via", &via.to_string());
    }

    /// Removes the top Via (a response on its way back).
    pub fn pop_via(&mut self) -> Option<Via> {
        self.headers
            .remove_first("Via")
            .and_then(|v| Via::parse(&v).ok())
    }

    /// Replaces the top Via (e.g. after [`Via::set_received`]).
    pub fn set_top_via(&mut self, via: &Via) {
        match self.headers.first_mut("Via") {
            Some(h) => h.value = via.to_string(),
            None => self.push_via(via),
        }
    }

    /// Sets the To tag (a UAS answering a request outside a dialog).
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(mut to) = self.to() {
            to.set_tag(tag);
            if let Some(h) = self.headers.first_mut("To") {
                h.value = to.to_string();
            }
        }
    }

    /// Adds a Record-Route on top (a proxy staying on the path).
    pub fn push_record_route(&mut self, route: &NameAddr) {
        self.headers.push_front("Record-Route", &route.to_string());
    }

    /// Removes the top Route (a proxy that the Route named, RFC 3261 16.4).
    pub fn pop_route(&mut self) -> Option<NameAddr> {
        self.headers
            .remove_first("Route")
            .and_then(|v| NameAddr::parse_as(&v, "Route").ok())
    }

    /// Appends a header field.
    pub fn insert_header(&mut self, name: &str, value: &str) {
        self.headers.push(name, value);
    }

    /// Removes every field of that name; returns how many were removed.
    pub fn remove_header(&mut self, name: &str) -> usize {
        self.headers.remove(name)
    }

    /// Sets Max-Forwards.
    pub fn set_max_forwards(&mut self, n: u32) {
        self.headers.set("Max-Forwards", &n.to_string());
    }

    /// Replaces the body and its Content-Type.
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        self.headers.set("Content-Type", content_type);
        self.body = body;
    }

    /// A response to `request` (RFC 3261 8.2.6): the Vias, From, To, Call-ID and CSeq
    /// copied, and the Record-Routes for a dialog-creating answer (12.1.1). An empty
    /// `reason` takes the standard phrase. The caller adds the To tag
    /// ([`Message::set_to_tag`]) where one is needed (every response but 100 to a request
    /// without one).
    pub fn response(request: &Message, code: u16, reason: &str) -> Message {
        let mut headers = Headers::new();
        for v in request.headers.get_all("Via") {
            headers.push("Via", v);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = request.headers.get(name) {
                headers.push(name, v);
            }
        }
        let creates_dialog = matches!(request.method(), Some(Method::Invite | Method::Subscribe));
        if creates_dialog && (101..300).contains(&code) {
            for v in request.headers.get_all("Record-Route") {
                headers.push("Record-Route", v);
            }
        }
        let reason = if reason.is_empty() {
            reason_phrase(code).to_string()
        } else {
            reason.to_string()
        };
        Message {
            start: StartLine::Response { code, reason },
            headers,
            body: Vec::new(),
        }
    }
}

impl Message {
    /// The ACK of a failure response to `invite` (RFC 3261 17.1.1.3): same Request-URI,
    /// top Via, From, Call-ID and CSeq number, the response's To (with its tag), the
    /// INVITE's Routes.
    pub fn ack_for(invite: &Message, response: &Message) -> Message {
        let mut ack = Message::in_transaction(invite, Method::Ack);
        if let Some(to) = response.headers.get("To") {
            ack.headers.set("To", to);
        }
        ack
    }

    /// The CANCEL of `invite` (RFC 3261 9.1): same Request-URI, top Via, From, To, Call-ID
    /// and CSeq number, the INVITE's Routes.
    pub fn cancel_for(invite: &Message) -> Message {
        Message::in_transaction(invite, Method::Cancel)
    }

    fn in_transaction(invite: &Message, method: Method) -> Message {
        let uri = invite
            .uri()
            .cloned()
            .unwrap_or_else(|| Uri::sip(None, "invalid"));
        let mut m = Message::request(method.clone(), uri);
        if let Some(via) = invite.headers.get("Via") {
            m.headers.push("Via", via);
        }
        m.headers.push("Max-Forwards", "70");
        for name in ["From", "To", "Call-ID"] {
            if let Some(v) = invite.headers.get(name) {
                m.headers.push(name, v);
            }
        }
        let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
        m.headers.push("CSeq", &CSeq { seq, method }.to_string());
        for r in invite.headers.get_all("Route") {
            m.headers.push("Route", r);
        }
        m
    }
}

/// Where the header section ends: (length of the header lines, start of the body). Accepts
/// CRLF CRLF and, leniently, LF LF.
fn header_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            // Line ends at i; is the next line empty?
            let next = i + 1;
            if bytes.get(next) == Some(&b'\n') {
                return Some((i, next + 1));
            }
            if bytes.get(next) == Some(&b'\r') && bytes.get(next + 1) == Some(&b'\n') {
                let head_len = if i > 0 && bytes[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return Some((head_len, next + 2));
            }
        }
        i += 1;
    }
    None
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if line.is_empty() {
        return Err(ParseError::BadStartLine("empty start line"));
    }
    if starts_with_sip_slash(line) {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        check_version(version)?;
        let code = parts
            .next()
            .ok_or(ParseError::BadStartLine("no status code"))?;
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::BadStartLine("bad status code"));
        }
        let code: u16 = code
            .parse()
            .map_err(|_| ParseError::BadStartLine("bad status code"))?;
        if !(100..700).contains(&code) {
            return Err(ParseError::BadStartLine("status code out of range"));
        }
        let reason = parts.next().unwrap_or("").to_string();
        if has_control(&reason) {
            return Err(ParseError::BadStartLine(
                "control character in reason phrase",
            ));
        }
        return Ok(StartLine::Response { code, reason });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine(
            "a request line is: method SP uri SP version",
        ));
    };
    let method = Method::parse(method)?;
    check_version(version)?;
    let uri = Uri::parse(uri)?;
    Ok(StartLine::Request { method, uri })
}

fn starts_with_sip_slash(s: &str) -> bool {
    s.as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else if starts_with_sip_slash(v) && !has_control(v) && v.len() <= 16 {
        Err(ParseError::BadVersion(v.to_string()))
    } else {
        Err(ParseError::BadStartLine("bad protocol version"))
    }
}

fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for v in headers.get_all("Content-Length") {
        if v.is_empty() || v.len() > 9 || !v.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::header("Content-Length", "not a number"));
        }
        let n: usize = v
            .parse()
            .map_err(|_| ParseError::header("Content-Length", "not a number"))?;
        if found.is_some_and(|f| f != n) {
            return Err(ParseError::header("Content-Length", "conflicting values"));
        }
        found = Some(n);
    }
    Ok(found)
}

fn parse_max_forwards(v: &str) -> Result<u32, ParseError> {
    if v.is_empty() || v.len() > 9 || !v.chars().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::header("Max-Forwards", "not a number"));
    }
    v.parse()
        .map_err(|_| ParseError::header("Max-Forwards", "not a number"))
}

fn valid_call_id(v: &str) -> bool {
    let (a, b) = match v.split_once('@') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let word = |w: &str| !w.is_empty() && w.chars().all(is_word_char);
    word(a) && b.is_none_or(word)
}

fn valid_media_type(v: &str) -> bool {
    let mut parts = v.splitn(2, ';');
    let media = parts.next().unwrap_or("").trim();
    let Some((t, s)) = media.split_once('/') else {
        return false;
    };
    is_token(t.trim()) && is_token(s.trim())
}

/// The standard reason phrase of a status code (RFC 3261 21 and common extensions).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}
