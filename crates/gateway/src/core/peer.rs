//! Input from peers: requests (authorized, then each in a server transaction, forwarded to
//! the hub with `received`/`rport` and the gateway's Record-Route), responses to the
//! gateway's client transactions, and the answers to malformed messages.

use mqchat_proto::Moment;
use mqchat_proto::body::Sip;
use mqchat_sip::{
    ClientEvent, Limits, Message, Method, ParseError, ServerEvent, ServerTransaction,
    TransactionKey,
};

use super::{Core, HUB_ANSWER_LIMIT, Output, ServerEntry, send};
use crate::digest::{Credentials, Verdict};
use crate::remote::{Remote, SipTransport};

impl Core {
    /// A datagram or a framed stream message from a peer.
    pub fn on_peer(&mut self, from: Remote, bytes: &[u8], now: Moment) -> Vec<Output> {
        let mut out = Vec::new();
        match Message::parse_with(bytes, &self.limits) {
            Ok(message) if message.is_request() => self.peer_request(from, message, now, &mut out),
            Ok(message) => self.peer_response(from, message, now, &mut out),
            Err(error) => self.malformed(from, bytes, &error, &mut out),
        }
        out
    }

    /// Answers a malformed request when enough of it parses to build a response (RFC 3261
    /// 8.2 / 21.4), else drops it with a log line.
    fn malformed(&mut self, from: Remote, bytes: &[u8], error: &ParseError, out: &mut Vec<Output>) {
        let (code, reason) = match error {
            ParseError::BadVersion(_) => (505, "Version Not Supported".to_owned()),
            ParseError::UnsupportedScheme(_) => (416, "Unsupported URI Scheme".to_owned()),
            ParseError::TooLarge { .. } => (513, "Message Too Large".to_owned()),
            other => (400, format!("Bad Request ({other})")),
        };
        // A request line with another version or URI scheme still names a request that
        // deserves its 505 or 416: the response is built from a copy with those mended
        // (responses do not carry the request line).
        let mended = mend_request_line(bytes, error);
        let answerable =
            Message::parse_syntax(mended.as_deref().unwrap_or(bytes), &Limits::default())
                .ok()
                .filter(|m| {
                    m.is_request()
                        && m.method() != Some(&Method::Ack)
                        && ["Via", "From", "To", "Call-ID", "CSeq"]
                            .iter()
                            .all(|h| m.headers.contains(h))
                });
        match answerable {
            Some(request) => {
                tracing::info!(%from, %error, code, "SIP: malformed request answered");
                let mut response = Message::response(&request, code, &sanitize(&reason));
                response.set_to_tag(&self.ids.tag());
                out.push(send(from, &response));
            }
            None => tracing::warn!(%from, %error, "SIP: malformed message dropped"),
        }
    }

    fn peer_request(
        &mut self,
        from: Remote,
        mut request: Message,
        now: Moment,
        out: &mut Vec<Output>,
    ) {
        let method = request.method().cloned().unwrap_or(Method::Ack);
        let Some(key) = TransactionKey::for_request(&request) else {
            if method != Method::Ack {
                let r = Message::response(
                    &request,
                    400,
                    "Bad Request (Via branch must start with z9hG4bK)",
                );
                out.push(send(from, &r));
            }
            return;
        };
        // A retransmission, or the ACK of a failure response: the transaction's business.
        if let Some(entry) = self.servers.get_mut(&key) {
            let actions = entry
                .tx
                .handle(ServerEvent::Request(request), now.since_origin());
            self.server_actions(&key, actions, out);
            return;
        }
        if method == Method::Ack {
            // The ACK of a 2xx (a new branch): stops the 2xx retransmission and goes on to
            // the hub if the sender is allowed to talk to it.
            let waiting = request
                .call_id()
                .zip(request.cseq())
                .map(|(c, s)| (c.to_owned(), s.seq));
            let known_dialog = waiting.as_ref().and_then(|k| self.oks.remove(k)).is_some();
            let peer = self.peers.by_source(from.addr.ip()).map(|p| p.name.clone());
            match peer {
                Some(peer) => self.forward_to_hub(from, &peer, request, out),
                None if known_dialog => self.forward_to_hub(from, "", request, out),
                None => tracing::info!(%from, "SIP: ACK from an unknown peer dropped"),
            }
            return;
        }
        // A CANCEL cannot be challenged: it is admitted when it cancels an INVITE the same
        // source was admitted for.
        let cancels_admitted = method == Method::Cancel
            && self
                .servers
                .get(&TransactionKey {
                    method: Method::Invite,
                    ..key.clone()
                })
                .is_some_and(|e| e.remote == from);
        let authorized = if cancels_admitted {
            Ok(self
                .peers
                .by_source(from.addr.ip())
                .map(|p| p.name.clone())
                .unwrap_or_default())
        } else {
            self.authorize(from, &request, now)
        };
        let peer = match authorized {
            Ok(peer) => peer,
            Err(response) => {
                out.push(send(from, &response));
                return;
            }
        };
        let reliable = from.transport == SipTransport::Tcp;
        // received / rport on the top Via (RFC 3261 18.2.1, RFC 3581).
        if let Some(mut via) = request.top_via() {
            via.set_received(&from.addr.ip().to_string(), from.addr.port());
            request.set_top_via(&via);
        }
        self.pop_own_routes(&mut request);
        if method == Method::Invite {
            let rr = self.record_route(from.transport);
            request.push_record_route(&rr);
        }
        let (tx, actions) = ServerTransaction::start(request.clone(), reliable, self.config.timing);
        self.servers.insert(
            key.clone(),
            ServerEntry {
                tx,
                remote: from,
                hub_deadline: Some(now + HUB_ANSWER_LIMIT),
            },
        );
        self.server_actions(&key, actions, out);
        self.forward_to_hub(from, &peer, request, out);
    }

    /// The peer a request comes from, or the response refusing it (403, or a 407 challenge).
    fn authorize(
        &mut self,
        from: Remote,
        request: &Message,
        now: Moment,
    ) -> Result<String, Box<Message>> {
        let tag = self.ids.tag();
        let realm = self.config.realm.as_str();
        let candidates: Vec<_> = match self.peers.by_source(from.addr.ip()) {
            Some(peer) if peer.credentials.is_none() => return Ok(peer.name.clone()),
            Some(peer) => vec![peer],
            None => self.peers.roaming().collect(),
        };
        if candidates.is_empty() {
            tracing::info!(%from, "SIP: request from an unknown peer refused (403)");
            let mut refusal = Message::response(request, 403, "Forbidden (not a configured peer)");
            refusal.set_to_tag(&tag);
            return Err(Box::new(refusal));
        }
        let method = request
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        // CANCEL cannot be challenged (RFC 3261 22.1): it must belong to a transaction the
        // peer was admitted for (checked by the caller through the transaction table).
        let credentials = request
            .headers
            .get("Proxy-Authorization")
            .or_else(|| request.headers.get("Authorization"))
            .and_then(Credentials::parse);
        let mut stale = false;
        if let Some(c) = &credentials {
            for peer in &candidates {
                if let Some((user, password)) = &peer.credentials {
                    match self.nonces.check(c, &method, realm, user, password, now) {
                        Verdict::Valid => return Ok(peer.name.clone()),
                        Verdict::Stale => stale = true,
                        Verdict::Invalid => {}
                    }
                }
            }
            if !stale {
                tracing::info!(%from, user = %c.username, "SIP: wrong digest credentials");
            }
        }
        if request.method() == Some(&Method::Cancel) {
            return Err(Box::new(Message::response(request, 481, "")));
        }
        let mut challenge = Message::response(request, 407, "");
        challenge.set_to_tag(&tag);
        challenge.insert_header(
            "Proxy-Authenticate",
            &self.nonces.challenge(realm, now, stale),
        );
        Err(Box::new(challenge))
    }

    fn peer_response(
        &mut self,
        from: Remote,
        response: Message,
        now: Moment,
        out: &mut Vec<Output>,
    ) {
        let key = TransactionKey::for_response(&response);
        if let Some(key) = key.filter(|k| self.clients.contains_key(k)) {
            if let Some(entry) = self.clients.get_mut(&key) {
                let actions = entry
                    .tx
                    .handle(ClientEvent::Response(response), now.since_origin());
                self.client_actions(&key, actions, out);
            }
            return;
        }
        // A 2xx retransmitted after its transaction ended (RFC 6026 lets it through):
        // forwarded statelessly if it carries our Via.
        let is_ok = response.code().is_some_and(|c| (200..300).contains(&c));
        if is_ok && self.is_own_via(response.top_via().as_ref()) {
            let mut response = response;
            response.pop_via();
            let peer = self
                .peers
                .by_source(from.addr.ip())
                .map(|p| p.name.clone())
                .unwrap_or_default();
            self.forward_to_hub(from, &peer, response, out);
        } else {
            tracing::debug!(%from, "SIP: response matching no transaction dropped");
        }
    }

    pub(super) fn forward_to_hub(
        &self,
        from: Remote,
        peer: &str,
        message: Message,
        out: &mut Vec<Output>,
    ) {
        let Ok(text) = String::from_utf8(message.to_bytes()) else {
            tracing::info!(%from, "SIP: message with a body that is not text dropped");
            return;
        };
        out.push(Output::ToHub(Sip {
            message: text,
            // The hub needs a peer name; an in-dialog message from an address outside the
            // table (a dialog the gateway admitted) is named by its address.
            peer: Some(if peer.is_empty() {
                from.to_string()
            } else {
                peer.to_owned()
            }),
            source: Some(from.to_string()),
            destination: None,
        }));
    }
}

/// The message with its request line's version replaced by SIP/2.0 (for a
/// [`ParseError::BadVersion`]) or its Request-URI by `sip:invalid` (for a
/// [`ParseError::UnsupportedScheme`]).
fn mend_request_line(bytes: &[u8], error: &ParseError) -> Option<Vec<u8>> {
    if !matches!(
        error,
        ParseError::BadVersion(_) | ParseError::UnsupportedScheme(_)
    ) {
        return None;
    }
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end])
        .ok()?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    let line = match error {
        ParseError::BadVersion(_) => format!("{method} {uri} SIP/2.0\r"),
        _ => format!("{method} sip:invalid {version}\r"),
    };
    let mut mended = line.into_bytes();
    mended.extend_from_slice(&bytes[end..]);
    Some(mended)
}

/// A reason phrase without control characters (error texts go into it).
fn sanitize(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect()
}
