//! Input from the hub: its responses (through the server transaction of the peer's request,
//! or by the Via alone once that has ended), and its requests, sent to the peer it names in
//! a client transaction with the gateway's Via; its CANCEL becomes the gateway's own.

use std::net::SocketAddr;

use mqchat_proto::Moment;
use mqchat_proto::body::Sip;
use mqchat_sip::{
    ClientState, ClientTransaction, Message, Method, ServerEvent, SuccessRetransmission,
    TransactionKey, Transport, Via,
};

use super::{ClientEntry, Core, Output, send};
use crate::remote::{Remote, SipTransport};

impl Core {
    /// A `sip` packet from the hub (`{root}/gw/{gateway}/out`).
    pub fn on_hub(&mut self, sip: &Sip, now: Moment) -> Vec<Output> {
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

    fn hub_response(&mut self, response: Message, now: Moment, out: &mut Vec<Output>) {
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
                    let actions = entry
                        .tx
                        .handle(ServerEvent::Respond(response.clone()), now.since_origin());
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

    fn wait_for_ack(&mut self, response: Message, remote: Remote, now: Moment) {
        if let (Some(call_id), Some(cseq)) = (response.call_id(), response.cseq()) {
            let key = (call_id.to_owned(), cseq.seq);
            if !self.oks.contains_key(&key) {
                let r =
                    SuccessRetransmission::start(response, self.config.timing, now.since_origin());
                self.oks.insert(key, (r, remote));
            }
        }
    }

    fn hub_request(
        &mut self,
        mut request: Message,
        destination: Option<&str>,
        now: Moment,
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
        self.start_client(
            request,
            remote,
            peer,
            Some((hub_request, hub_branch)),
            now,
            out,
        );
    }

    /// The hub cancels an INVITE it sent through the gateway: 200 to the hub's CANCEL, and a
    /// CANCEL of the gateway's own INVITE while it has no final response (RFC 3261 16.10).
    fn hub_cancel(
        &mut self,
        cancel: Message,
        hub_branch: &str,
        now: Moment,
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
        self.start_client(own, remote, peer, None, now, out);
    }

    /// Sends `request` to `remote` in a new client transaction. `hub`: the request as the
    /// hub sent it and its branch, when it is the hub's (not one of the gateway's own
    /// CANCELs), so that the hub's CANCEL or failure ACK finds the transaction.
    fn start_client(
        &mut self,
        request: Message,
        remote: Remote,
        peer: String,
        hub: Option<(Message, String)>,
        now: Moment,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = TransactionKey::for_sent_request(&request) else {
            return;
        };
        let method = request.method().cloned();
        let reliable = remote.transport == SipTransport::Tcp;
        let (tx, actions) =
            ClientTransaction::start(request, reliable, self.config.timing, now.since_origin());
        let (hub_request, hub_branch) = match hub {
            Some((hub_request, hub_branch)) => {
                if let Some(method) = method {
                    self.by_hub_branch
                        .insert((hub_branch.clone(), method), key.clone());
                }
                (Some(hub_request), hub_branch)
            }
            None => (None, String::new()),
        };
        self.clients.insert(
            key.clone(),
            ClientEntry {
                tx,
                remote,
                peer,
                hub_request,
                hub_branch,
                cancel_deadline: None,
            },
        );
        self.client_actions(&key, actions, out);
    }

    /// A response the gateway makes up for the hub's request.
    pub(super) fn answer_hub(
        &mut self,
        request: &Message,
        code: u16,
        reason: &str,
        out: &mut Vec<Output>,
    ) {
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
