//! The gateway's logic without IO: SIP from peers and from the hub in, datagrams, stream
//! writes and hub packets out, on the caller's clock. Transactions (RFC 3261 17) absorb
//! retransmissions and retransmit over UDP; the gateway adds `received`/`rport` to what it
//! forwards (RFC 3581), its own Via to requests it sends (so responses come back to it), its
//! Record-Route to INVITEs (so in-dialog requests do too), authorizes peers, and resends a 2xx
//! to an INVITE over UDP until the ACK.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use mqchat_proto::body::{SIP_MESSAGE_BYTES, Sip};
use mqchat_sip::{
    Action, ClientEvent, ClientState, ClientTransaction, IdGen, Limits, Message, Method, NameAddr,
    ParseError, Retransmit, ServerEvent, ServerState, ServerTransaction, SuccessRetransmission,
    Timing, TransactionKey, Transport, Uri, Via,
};

use super::digest::{Credentials, Nonces, Verdict};
use super::peers::{Peers, Remote};
use crate::config::SipTransport;

/// What the gateway asks its IO shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Send bytes to a peer (a datagram, or a write on the stream to that address).
    Send { to: Remote, bytes: Vec<u8> },
    /// Publish a `sip` packet to the hub (`{root}/gw/{gateway}/in`).
    ToHub(Sip),
}

/// The gateway's settings, with its bound addresses.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// The realm of digest challenges (the SIP domain).
    pub(crate) realm: String,
    pub(crate) timing: Timing,
    pub(crate) local_udp: Option<SocketAddr>,
    pub(crate) local_tcp: Option<SocketAddr>,
}

/// How long the hub may take to answer a request from a peer before the gateway answers it
/// with 500 itself (the hub's own limits, such as the ringing timeout, are far shorter).
const HUB_ANSWER_LIMIT: Duration = Duration::from_secs(300);

struct ServerEntry {
    tx: ServerTransaction,
    remote: Remote,
    /// When the gateway answers for a silent hub (while no final response was sent).
    hub_deadline: Option<Duration>,
}

struct ClientEntry {
    tx: ClientTransaction,
    remote: Remote,
    peer: String,
    /// The request as the hub sent it (for the 408/503 the gateway makes up), or `None` for
    /// the gateway's own CANCELs, whose responses stay here.
    hub_request: Option<Message>,
    /// The hub's branch of the request, to find this transaction from the hub's CANCEL or
    /// failure ACK.
    hub_branch: String,
    /// For a cancelled INVITE: when to give up waiting for its final response (64*T1 after
    /// the CANCEL, RFC 3261 9.1) and answer the hub 487 itself.
    cancel_deadline: Option<Duration>,
}

/// The gateway's state.
pub(crate) struct Core {
    config: CoreConfig,
    peers: Peers,
    nonces: Nonces,
    ids: IdGen,
    limits: Limits,
    servers: HashMap<TransactionKey, ServerEntry>,
    clients: HashMap<TransactionKey, ClientEntry>,
    by_hub_branch: HashMap<(String, Method), TransactionKey>,
    /// 2xx responses to INVITEs sent over UDP, resent until their ACK: by (Call-ID, CSeq).
    oks: HashMap<(String, u32), (SuccessRetransmission, Remote)>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("servers", &self.servers.len())
            .field("clients", &self.clients.len())
            .field("oks", &self.oks.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(config: CoreConfig, peers: Peers, seed: u64, secret: String) -> Core {
        Core {
            config,
            peers,
            nonces: Nonces::new(secret),
            ids: IdGen::new(seed),
            limits: Limits {
                max_message_bytes: SIP_MESSAGE_BYTES,
                max_headers: 200,
            },
            servers: HashMap::new(),
            clients: HashMap::new(),
            by_hub_branch: HashMap::new(),
            oks: HashMap::new(),
        }
    }

    /// When [`Core::tick`] must be called next.
    pub(crate) fn next_timeout(&self) -> Option<Duration> {
        let servers = self
            .servers
            .values()
            .flat_map(|e| [e.tx.next_timeout(), e.hub_deadline])
            .flatten();
        let clients = self
            .clients
            .values()
            .flat_map(|e| [e.tx.next_timeout(), e.cancel_deadline])
            .flatten();
        let oks = self.oks.values().filter_map(|(r, _)| r.next_timeout());
        servers.chain(clients).chain(oks).min()
    }

    /// Number of live transactions (for tests and logs).
    #[cfg(test)]
    pub(crate) fn n_transactions(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    // ----- from peers -----

    /// A datagram or a framed stream message from a peer.
    pub(crate) fn on_peer(&mut self, from: Remote, bytes: &[u8], now: Duration) -> Vec<Output> {
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
        now: Duration,
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
            let actions = entry.tx.handle(ServerEvent::Request(request), now);
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
        now: Duration,
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
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let key = TransactionKey::for_response(&response);
        if let Some(key) = key.filter(|k| self.clients.contains_key(k)) {
            if let Some(entry) = self.clients.get_mut(&key) {
                let actions = entry.tx.handle(ClientEvent::Response(response), now);
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

    fn forward_to_hub(&self, from: Remote, peer: &str, message: Message, out: &mut Vec<Output>) {
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

    // ----- from the hub -----

    /// A `sip` packet from the hub (`{root}/gw/{gateway}/out`).
    pub(crate) fn on_hub(&mut self, sip: &Sip, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        let message = match Message::parse(sip.message.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "SIP: unparsable message from the hub dropped");
                return out;
            }
        };
        if message.is_request() {
            self.hub_request(message, sip.destination.as_deref(), now, &mut out);
        } else {
            self.hub_response(message, now, &mut out);
        }
        out
    }

    fn hub_response(&mut self, response: Message, now: Duration, out: &mut Vec<Output>) {
        let Some(via) = response.top_via() else {
            return;
        };
        let key = response.cseq().and_then(|cseq| {
            Some(TransactionKey {
                branch: via.branch()?.to_owned(),
                sent_by: format!(
                    "{}:{}",
                    via.host.to_ascii_lowercase(),
                    via.port.map(|p| p.to_string()).unwrap_or_default()
                ),
                method: cseq.method,
            })
        });
        let invite_ok = response.code().is_some_and(|c| (200..300).contains(&c))
            && response.cseq().is_some_and(|c| c.method == Method::Invite);
        match key.filter(|k| self.servers.contains_key(k)) {
            Some(key) => {
                let remote = self.servers.get(&key).map(|e| e.remote);
                if let Some(entry) = self.servers.get_mut(&key) {
                    let actions = entry.tx.handle(ServerEvent::Respond(response.clone()), now);
                    self.server_actions(&key, actions, out);
                }
                if let Some(remote) =
                    remote.filter(|r| invite_ok && r.transport == SipTransport::Udp)
                {
                    self.wait_for_ack(response, remote, now);
                }
            }
            None => {
                // No transaction (it ended, or the hub answers late): by the Via alone.
                match via_destination(&via) {
                    Some(remote) => {
                        if invite_ok && remote.transport == SipTransport::Udp {
                            self.wait_for_ack(response.clone(), remote, now);
                        }
                        out.push(send(remote, &response));
                    }
                    None => tracing::info!("SIP: response from the hub with no usable Via dropped"),
                }
            }
        }
    }

    fn wait_for_ack(&mut self, response: Message, remote: Remote, now: Duration) {
        if let (Some(call_id), Some(cseq)) = (response.call_id(), response.cseq()) {
            let key = (call_id.to_owned(), cseq.seq);
            if !self.oks.contains_key(&key) {
                let r = SuccessRetransmission::start(response, self.config.timing, now);
                self.oks.insert(key, (r, remote));
            }
        }
    }

    fn hub_request(
        &mut self,
        mut request: Message,
        destination: Option<&str>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let method = request.method().cloned().unwrap_or(Method::Ack);
        let hub_branch = request
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        // The hub's ACK of a failure: the client transaction sent its own already.
        if method == Method::Ack
            && self
                .by_hub_branch
                .contains_key(&(hub_branch.clone(), Method::Invite))
        {
            return;
        }
        if method == Method::Cancel {
            self.hub_cancel(request, &hub_branch, now, out);
            return;
        }
        let remote = match destination.map(Remote::parse) {
            Some(Ok(remote)) => remote,
            other => {
                tracing::warn!(
                    ?other,
                    "SIP: request from the hub without a usable destination"
                );
                if method != Method::Ack {
                    self.answer_hub(&request, 502, "Bad Gateway (no destination)", out);
                }
                return;
            }
        };
        let Some(peer) = self.peers.by_destination(remote).map(|p| p.name.clone()) else {
            tracing::warn!(%remote, "SIP: the hub named a destination that is no configured peer");
            if method != Method::Ack {
                self.answer_hub(&request, 403, "Forbidden (not a configured peer)", out);
            }
            return;
        };
        let hub_request = request.clone();
        self.pop_own_routes(&mut request);
        let via = self.own_via(remote.transport);
        request.push_via(&via);
        if method == Method::Invite {
            let rr = self.record_route(remote.transport);
            request.push_record_route(&rr);
        }
        if method == Method::Ack {
            out.push(send(remote, &request));
            return;
        }
        let Some(key) = TransactionKey::for_sent_request(&request) else {
            return;
        };
        let reliable = remote.transport == SipTransport::Tcp;
        let (tx, actions) = ClientTransaction::start(request, reliable, self.config.timing, now);
        self.by_hub_branch
            .insert((hub_branch.clone(), method), key.clone());
        self.clients.insert(
            key.clone(),
            ClientEntry {
                tx,
                remote,
                peer,
                hub_request: Some(hub_request),
                hub_branch,
                cancel_deadline: None,
            },
        );
        self.client_actions(&key, actions, out);
    }

    /// The hub cancels an INVITE it sent through the gateway: 200 to the hub's CANCEL, and a
    /// CANCEL of the gateway's own INVITE while it has no final response (RFC 3261 16.10).
    fn hub_cancel(
        &mut self,
        cancel: Message,
        hub_branch: &str,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(invite_key) = self
            .by_hub_branch
            .get(&(hub_branch.to_owned(), Method::Invite))
            .cloned()
        else {
            self.answer_hub(&cancel, 481, "", out);
            return;
        };
        self.answer_hub(&cancel, 200, "", out);
        let Some(entry) = self.clients.get(&invite_key) else {
            return;
        };
        if !matches!(
            entry.tx.state(),
            ClientState::Calling | ClientState::Proceeding
        ) {
            return;
        }
        let remote = entry.remote;
        let peer = entry.peer.clone();
        let own = Message::cancel_for(entry.tx.request());
        if let Some(entry) = self.clients.get_mut(&invite_key) {
            entry.cancel_deadline = Some(now + self.config.timing.timeout());
        }
        let Some(key) = TransactionKey::for_sent_request(&own) else {
            return;
        };
        let reliable = remote.transport == SipTransport::Tcp;
        let (tx, actions) = ClientTransaction::start(own, reliable, self.config.timing, now);
        self.clients.insert(
            key.clone(),
            ClientEntry {
                tx,
                remote,
                peer,
                hub_request: None,
                hub_branch: String::new(),
                cancel_deadline: None,
            },
        );
        self.client_actions(&key, actions, out);
    }

    /// A response the gateway makes up for the hub's request.
    fn answer_hub(&mut self, request: &Message, code: u16, reason: &str, out: &mut Vec<Output>) {
        let mut response = Message::response(request, code, reason);
        if code > 100 && request.to().is_some_and(|t| t.tag().is_none()) {
            response.set_to_tag(&self.ids.tag());
        }
        out.push(Output::ToHub(Sip {
            message: String::from_utf8_lossy(&response.to_bytes()).into_owned(),
            peer: Some("gateway".to_owned()),
            source: Some(self.local_remote(SipTransport::Udp).to_string()),
            destination: None,
        }));
    }

    // ----- timers -----

    /// Fires every timer due at `now`.
    pub(crate) fn tick(&mut self, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        let due = |t: Option<Duration>| t.is_some_and(|t| t <= now);
        let servers: Vec<_> = self
            .servers
            .iter()
            .filter(|(_, e)| due(e.tx.next_timeout()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in servers {
            if let Some(entry) = self.servers.get_mut(&key) {
                let actions = entry.tx.handle(ServerEvent::Timer, now);
                self.server_actions(&key, actions, &mut out);
            }
        }
        let clients: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, e)| due(e.tx.next_timeout()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in clients {
            if let Some(entry) = self.clients.get_mut(&key) {
                let actions = entry.tx.handle(ClientEvent::Timer, now);
                self.client_actions(&key, actions, &mut out);
            }
        }
        self.expire(now, &mut out);
        let mut finished = Vec::new();
        for (key, (retransmission, remote)) in &mut self.oks {
            match retransmission.poll(now) {
                Retransmit::Send(response) => out.push(send(*remote, &response)),
                Retransmit::GaveUp => {
                    tracing::info!(call_id = %key.0, "SIP: no ACK for a 2xx to INVITE within 64*T1");
                    finished.push(key.clone());
                }
                Retransmit::Done => finished.push(key.clone()),
                Retransmit::Wait => {}
            }
        }
        for key in finished {
            self.oks.remove(&key);
        }
        out
    }

    /// Answers the peer for a hub that never answered, and gives up on a cancelled INVITE
    /// whose peer never sent its final response.
    fn expire(&mut self, now: Duration, out: &mut Vec<Output>) {
        let due = |t: Option<Duration>| t.is_some_and(|t| t <= now);
        let silent: Vec<_> = self
            .servers
            .iter()
            .filter(|(_, e)| due(e.hub_deadline))
            .map(|(k, _)| k.clone())
            .collect();
        for key in silent {
            let tag = self.ids.tag();
            let Some(entry) = self.servers.get_mut(&key) else {
                continue;
            };
            entry.hub_deadline = None;
            if !matches!(
                entry.tx.state(),
                ServerState::Trying | ServerState::Proceeding
            ) {
                continue;
            }
            tracing::warn!(remote = %entry.remote, "SIP: the hub did not answer a request; 500");
            let mut response =
                Message::response(entry.tx.request(), 500, "Server Internal Error (no answer)");
            response.set_to_tag(&tag);
            let actions = entry.tx.handle(ServerEvent::Respond(response), now);
            self.server_actions(&key, actions, out);
        }
        let abandoned: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, e)| due(e.cancel_deadline))
            .map(|(k, _)| k.clone())
            .collect();
        for key in abandoned {
            let Some(entry) = self.clients.remove(&key) else {
                continue;
            };
            tracing::info!(remote = %entry.remote, "SIP: no final response after CANCEL; giving up");
            self.by_hub_branch
                .remove(&(entry.hub_branch.clone(), key.method.clone()));
            if let Some(request) = &entry.hub_request {
                self.answer_hub(request, 487, "", out);
            }
        }
    }

    // ----- transaction actions -----

    fn server_actions(
        &mut self,
        key: &TransactionKey,
        actions: Vec<Action>,
        out: &mut Vec<Output>,
    ) {
        let Some(remote) = self.servers.get(key).map(|e| e.remote) else {
            return;
        };
        for action in actions {
            match action {
                Action::Send(m) => out.push(send(remote, &m)),
                Action::Deliver(ack) => {
                    let peer = self
                        .peers
                        .by_source(remote.addr.ip())
                        .map(|p| p.name.clone())
                        .unwrap_or_default();
                    self.forward_to_hub(remote, &peer, ack, out);
                }
                Action::TimedOut => {
                    tracing::info!(%remote, branch = %key.branch, "SIP: no ACK for a final response (Timer H)");
                }
                Action::TransportFailed => tracing::info!(%remote, "SIP: cannot send a response"),
                Action::Terminated => {
                    self.servers.remove(key);
                }
            }
        }
    }

    fn client_actions(
        &mut self,
        key: &TransactionKey,
        actions: Vec<Action>,
        out: &mut Vec<Output>,
    ) {
        let Some((remote, peer, hub_request)) = self
            .clients
            .get(key)
            .map(|e| (e.remote, e.peer.clone(), e.hub_request.clone()))
        else {
            return;
        };
        for action in actions {
            match action {
                Action::Send(m) => out.push(send(remote, &m)),
                Action::Deliver(mut response) => {
                    if hub_request.is_some() {
                        response.pop_via();
                        self.forward_to_hub(remote, &peer, response, out);
                    }
                }
                Action::TimedOut => {
                    if let Some(request) = &hub_request {
                        tracing::info!(%remote, "SIP: no response from the peer (Timer B/F): 408");
                        self.answer_hub(request, 408, "", out);
                    }
                }
                Action::TransportFailed => {
                    if let Some(request) = &hub_request {
                        tracing::info!(%remote, "SIP: cannot reach the peer: 503");
                        self.answer_hub(
                            request,
                            503,
                            "Service Unavailable (peer unreachable)",
                            out,
                        );
                    }
                }
                Action::Terminated => {
                    if let Some(entry) = self.clients.remove(key) {
                        let method = key.method.clone();
                        if self
                            .by_hub_branch
                            .get(&(entry.hub_branch.clone(), method.clone()))
                            == Some(key)
                        {
                            self.by_hub_branch.remove(&(entry.hub_branch, method));
                        }
                    }
                }
            }
        }
    }

    /// A transport failure towards `to` (a stream that could not connect or broke): every
    /// client transaction towards it fails.
    pub(crate) fn transport_failed(&mut self, to: Remote, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        let keys: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, e)| e.remote == to)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(entry) = self.clients.get_mut(&key) {
                let actions = entry.tx.handle(ClientEvent::TransportError, now);
                self.client_actions(&key, actions, &mut out);
            }
        }
        out
    }

    // ----- addresses -----

    fn local(&self, transport: SipTransport) -> SocketAddr {
        let (first, second) = match transport {
            SipTransport::Udp => (self.config.local_udp, self.config.local_tcp),
            SipTransport::Tcp => (self.config.local_tcp, self.config.local_udp),
        };
        first
            .or(second)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    fn local_remote(&self, transport: SipTransport) -> Remote {
        Remote {
            transport,
            addr: self.local(transport),
        }
    }

    fn own_via(&mut self, transport: SipTransport) -> Via {
        let local = self.local(transport);
        let t = match transport {
            SipTransport::Udp => Transport::Udp,
            SipTransport::Tcp => Transport::Tcp,
        };
        let mut via = Via::new(t, &host_text(local), Some(local.port()), &self.ids.branch());
        via.params.set("rport", None);
        via
    }

    fn is_own_via(&self, via: Option<&Via>) -> bool {
        via.is_some_and(|v| self.is_own_address(&v.host, v.port))
    }

    fn is_own_address(&self, host: &str, port: Option<u16>) -> bool {
        [self.config.local_udp, self.config.local_tcp]
            .into_iter()
            .flatten()
            .any(|a| host_text(a).eq_ignore_ascii_case(host) && port.unwrap_or(5060) == a.port())
    }

    fn record_route(&self, transport: SipTransport) -> NameAddr {
        let local = self.local(transport);
        let mut uri = Uri::sip(None, &host_text(local));
        uri.port = Some(local.port());
        if transport == SipTransport::Tcp {
            uri.params.set("transport", Some("tcp"));
        }
        uri.params.set("lr", None);
        NameAddr::new(uri)
    }

    /// Removes the Route entries on top that name this gateway (RFC 3261 16.4).
    fn pop_own_routes(&self, request: &mut Message) {
        while let Some(route) = request.routes().into_iter().next() {
            if route.uri.user.is_none() && self.is_own_address(&route.uri.host, route.uri.port) {
                request.pop_route();
            } else {
                break;
            }
        }
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

/// An IP address as a SIP host (IPv6 in brackets).
fn host_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// Where a response goes by its top Via (RFC 3261 18.2.2, RFC 3581 4): `received` (or
/// sent-by) and `rport` (or the sent-by port, or 5060).
fn via_destination(via: &Via) -> Option<Remote> {
    let transport = match via.transport {
        Transport::Udp => SipTransport::Udp,
        Transport::Tcp => SipTransport::Tcp,
        _ => return None,
    };
    let host = via.received().unwrap_or(&via.host);
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = via.rport().flatten().or(via.port).unwrap_or(5060);
    Some(Remote {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

fn send(to: Remote, message: &Message) -> Output {
    Output::Send {
        to,
        bytes: message.to_bytes(),
    }
}

/// A reason phrase without control characters (error texts go into it).
fn sanitize(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect()
}
