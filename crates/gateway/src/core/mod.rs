//! The gateway's logic without IO: SIP from peers and from the hub in, datagrams, stream
//! writes and hub packets out, on the caller's clock: every call takes a [`Moment`] (the
//! driver's monotonic clock) and the core reads none; `mqchat-sip`'s transactions, which know
//! no mqchat type, get it as the time since the driver's origin. Transactions (RFC 3261 17) absorb
//! retransmissions and retransmit over UDP; the gateway adds `received`/`rport` to what it
//! forwards (RFC 3581), its own Via to requests it sends (so responses come back to it), its
//! Record-Route to INVITEs (so in-dialog requests do too), authorizes peers, and resends a 2xx
//! to an INVITE over UDP until the ACK.
//!
//! [`Core`] is one state machine; its `impl` is split by where input comes from: `peer.rs`
//! (datagrams and stream messages from peers), `hub.rs` (`sip` packets from the hub), and
//! this file (timers and what the transactions ask for), with `address.rs` for the
//! gateway's own addresses in Via, Record-Route and Route.

mod address;
mod hub;
mod peer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use mqchat_proto::Moment;
use mqchat_proto::body::{SIP_MESSAGE_BYTES, Sip};
use mqchat_sip::{
    Action, ClientEvent, ClientTransaction, IdGen, Limits, Message, Method, Retransmit,
    ServerEvent, ServerState, ServerTransaction, SuccessRetransmission, Timing, TransactionKey,
};

use crate::digest::Nonces;
use crate::peers::Peers;
use crate::remote::Remote;

/// What the gateway asks its IO shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes to a peer (a datagram, or a write on the stream to that address).
    Send { to: Remote, bytes: Vec<u8> },
    /// Publish a `sip` packet to the hub (`{root}/gw/{gateway}/in`).
    ToHub(Sip),
}

/// The gateway's settings, with its bound addresses.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The realm of digest challenges (the SIP domain).
    pub realm: String,
    /// The RFC 3261 timers T1, T2 and T4.
    pub timing: Timing,
    /// The bound UDP listener, if any: the gateway's address in Via and Record-Route.
    pub local_udp: Option<SocketAddr>,
    /// The bound TCP listener, if any.
    pub local_tcp: Option<SocketAddr>,
}

/// How long the hub may take to answer a request from a peer before the gateway answers it
/// with 500 itself (the hub's own limits, such as the ringing timeout, are far shorter).
const HUB_ANSWER_LIMIT: Duration = Duration::from_secs(300);

struct ServerEntry {
    tx: ServerTransaction,
    remote: Remote,
    /// When the gateway answers for a silent hub (while no final response was sent).
    hub_deadline: Option<Moment>,
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
    cancel_deadline: Option<Moment>,
}

/// The gateway's state.
pub struct Core {
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
    /// A gateway with no transactions. `seed` seeds the tags and branches it makes;
    /// `secret` keys its digest nonces (both drawn by the caller, so a run follows from its
    /// inputs).
    pub fn new(config: CoreConfig, peers: Peers, seed: u64, secret: String) -> Core {
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
    pub fn next_timeout(&self) -> Option<Moment> {
        let servers = self
            .servers
            .values()
            .flat_map(|e| [e.tx.next_timeout().map(Moment::from_origin), e.hub_deadline])
            .flatten();
        let clients = self
            .clients
            .values()
            .flat_map(|e| {
                [
                    e.tx.next_timeout().map(Moment::from_origin),
                    e.cancel_deadline,
                ]
            })
            .flatten();
        let oks = self
            .oks
            .values()
            .filter_map(|(r, _)| r.next_timeout().map(Moment::from_origin));
        servers.chain(clients).chain(oks).min()
    }

    /// Number of live transactions (for tests and logs).
    #[cfg(test)]
    pub(crate) fn n_transactions(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: Moment) -> Vec<Output> {
        let mut out = Vec::new();
        let due = |t: Option<Moment>| t.is_some_and(|t| t <= now);
        let servers: Vec<_> = self
            .servers
            .iter()
            .filter(|(_, e)| due(e.tx.next_timeout().map(Moment::from_origin)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in servers {
            if let Some(entry) = self.servers.get_mut(&key) {
                let actions = entry.tx.handle(ServerEvent::Timer, now.since_origin());
                self.server_actions(&key, actions, &mut out);
            }
        }
        let clients: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, e)| due(e.tx.next_timeout().map(Moment::from_origin)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in clients {
            if let Some(entry) = self.clients.get_mut(&key) {
                let actions = entry.tx.handle(ClientEvent::Timer, now.since_origin());
                self.client_actions(&key, actions, &mut out);
            }
        }
        self.expire(now, &mut out);
        let mut finished = Vec::new();
        for (key, (retransmission, remote)) in &mut self.oks {
            match retransmission.poll(now.since_origin()) {
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
    fn expire(&mut self, now: Moment, out: &mut Vec<Output>) {
        let due = |t: Option<Moment>| t.is_some_and(|t| t <= now);
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
            let actions = entry
                .tx
                .handle(ServerEvent::Respond(response), now.since_origin());
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
    pub fn transport_failed(&mut self, to: Remote, now: Moment) -> Vec<Output> {
        let mut out = Vec::new();
        let keys: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, e)| e.remote == to)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(entry) = self.clients.get_mut(&key) {
                let actions = entry
                    .tx
                    .handle(ClientEvent::TransportError, now.since_origin());
                self.client_actions(&key, actions, &mut out);
            }
        }
        out
    }
}

fn send(to: Remote, message: &Message) -> Output {
    Output::Send {
        to,
        bytes: message.to_bytes(),
    }
}

#[cfg(test)]
mod tests;
