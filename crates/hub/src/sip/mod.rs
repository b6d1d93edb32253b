//! The hub's SIP proxy (spec section 19): a stateful forking proxy, registrar and location
//! service for the server's SIP domain, whose transport to devices is their MQTT connection
//! (`sip` packets, spec 7.14) and whose way to the outside world is the SIP gateway's topics.
//!
//! Sans-IO like the rest of the engine: `sip` packets come in through [`Engine::process`]
//! (from devices' upstream topics and the gateway's `in` topic) and time through
//! [`Engine::tick`]; ringing timeouts and other deadlines run on the monotonic part of the
//! [`Now`] passed in, call records are stamped with its wall part; everything goes out as [`Outbound`] publishes. Calls, branches and
//! transactions live in memory ([`Proxy`]); each call's record fields live in the store so
//! that a restart still records it. `call.rs` forks, cancels, times out and records calls;
//! `chat.rs` turns SIP MESSAGE into chat messages and back.

mod call;
mod chat;

use std::collections::HashMap;
use std::time::Duration;

use mqchat_proto::body::{Body, Sip};
use mqchat_proto::upstream::{Inbound, accept_gateway_payload};
use mqchat_proto::{
    DeviceId, DeviceIdentity, ErrorCode, GatewayDirection, GatewayName, InboxBranch, Moment, Now,
    Topic, UserId,
};
use mqchat_sip::{IdGen, Message, Method, Transport, Uri, Via};
use mqchat_store::{StoreError, Tx};

use crate::engine::{Engine, Failure, Output, Turn, Upstream, refuse};
use crate::{Outbound, Qos};

pub(crate) use call::CallState;
pub(crate) use chat::PendingMessage;

/// The SIP settings of the hub (the `[sip]` section of the server's configuration).
#[derive(Clone, Debug)]
pub struct SipConfig {
    /// The SIP domain: user `bob` is `sip:bob@{domain}`. Lower case.
    pub domain: String,
    /// The gateway, if one runs: its name (a topic level) and the peers it reaches.
    pub gateway: Option<GatewayName>,
    /// How long an unanswered call rings before the hub gives up (ms).
    pub ring_timeout_ms: u64,
    /// The SIP peers requests to outside addresses may go to, by domain.
    pub peers: Vec<SipPeerRoute>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            gateway: None,
            ring_timeout_ms: 60_000,
            peers: Vec::new(),
        }
    }
}

/// Where requests for some SIP domains go through the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipPeerRoute {
    /// The peer's configured name.
    pub name: String,
    /// The SIP domains (hosts of Request-URIs) routed to it, lower case; `*` routes all.
    pub domains: Vec<String>,
    /// Where the gateway sends requests for it: `udp:ip:port` or `tcp:ip:port`.
    pub outbound: String,
}

/// How long a SIP MESSAGE sent to the outside waits for its final answer (64 × T1).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(32);

/// Where a SIP message goes: a device's reply topic, or the gateway (with the destination
/// of a request; responses are routed by the gateway from their Via).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    Device(DeviceIdentity),
    Gateway(Option<String>),
}

/// The proxy's memory: calls in progress and SIP MESSAGEs waiting for their answer.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// Calls by Call-ID.
    pub(crate) calls: HashMap<String, CallState>,
    /// The hub's INVITE branches: branch id → Call-ID.
    pub(crate) branches: HashMap<String, String>,
    /// Branches of finished calls, kept a while to absorb late answers: the forwarded
    /// INVITE, where it went, and until when.
    pub(crate) ended: HashMap<String, (Message, Hop, Moment)>,
    /// SIP MESSAGEs sent for chat messages, by the hub's branch id.
    pub(crate) messages: HashMap<String, PendingMessage>,
    /// Identifiers (branches, tags, Call-IDs).
    pub(crate) ids: IdGen,
    /// Whether unfinished calls from a previous run were recorded.
    pub(crate) recovered: bool,
}

impl Proxy {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            calls: HashMap::new(),
            branches: HashMap::new(),
            ended: HashMap::new(),
            messages: HashMap::new(),
            ids: IdGen::new(seed),
            recovered: false,
        }
    }
}

/// A 63-bit FNV-1a hash, never 0: a stable id made from SIP identifiers.
pub(crate) fn hash63(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h >> 1).max(1)
}

/// The device a Via of the MQTT transport names (`{device}.{user}.invalid`).
pub(crate) fn device_of_via(via: &Via) -> Option<DeviceIdentity> {
    if via.transport != Transport::Mqtt {
        return None;
    }
    let rest = via.host.strip_suffix(".invalid")?;
    let (device, user) = rest.split_once('.')?;
    Some(DeviceIdentity::new(
        UserId::parse(user).ok()?,
        DeviceId::parse(device).ok()?,
    ))
}

/// What the hub's domain part of a URI designates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Local {
    /// A user (address of record), or one of their devices (a GRUU).
    User(UserId, Option<DeviceId>),
    /// The domain's, but naming no possible user or device.
    Nobody,
}

impl Engine {
    fn hub_host(&self, sip: &SipConfig) -> String {
        format!("hub.{}", sip.domain)
    }

    /// A user's address of record.
    pub(crate) fn aor(&self, sip: &SipConfig, user: &UserId) -> Uri {
        Uri::sip(Some(user.as_str()), &sip.domain)
    }

    /// A device's GRUU.
    pub(crate) fn gruu(&self, sip: &SipConfig, user: &UserId, device: &DeviceId) -> Uri {
        let mut uri = self.aor(sip, user);
        uri.params.set("gr", Some(device.as_str()));
        uri
    }

    /// Whether `uri` is in the hub's domain, and whom it names.
    pub(crate) fn local(&self, sip: &SipConfig, uri: &Uri) -> Option<Local> {
        if !uri.host.eq_ignore_ascii_case(&sip.domain)
            && !uri.host.eq_ignore_ascii_case(&self.hub_host(sip))
        {
            return None;
        }
        let Some(user) = uri.user.as_deref().and_then(|u| UserId::parse(u).ok()) else {
            return Some(Local::Nobody);
        };
        match uri.param("gr") {
            None => Some(Local::User(user, None)),
            Some(device) => match DeviceId::parse(device) {
                Ok(device) => Some(Local::User(user, Some(device))),
                Err(_) => Some(Local::Nobody),
            },
        }
    }

    /// The gateway peer that requests to `uri` go to, if any.
    pub(crate) fn peer_for(&self, sip: &SipConfig, uri: &Uri) -> Option<String> {
        sip.gateway.as_ref()?;
        let host = uri.host.to_ascii_lowercase();
        sip.peers
            .iter()
            .find(|p| p.domains.iter().any(|d| *d == host || d == "*"))
            .map(|p| p.outbound.clone())
    }

    /// A new Via of the hub with a fresh branch.
    pub(crate) fn hub_via(&mut self, sip: &SipConfig) -> Via {
        Via::new(
            Transport::Mqtt,
            &self.hub_host(sip),
            None,
            &self.proxy.ids.branch(),
        )
    }

    /// Whether `via` is one of the hub's.
    pub(crate) fn is_hub_via(&self, sip: &SipConfig, via: &Via) -> bool {
        via.transport == Transport::Mqtt && via.host.eq_ignore_ascii_case(&self.hub_host(sip))
    }

    /// The publish that carries `message` to `hop`.
    pub(crate) fn emit(&self, hop: &Hop, message: &Message, out: &mut Output) {
        let text = String::from_utf8_lossy(&message.to_bytes()).into_owned();
        let (topic, body) = match hop {
            Hop::Device(device) => (
                self.config().root.topic(&Topic::Inbox {
                    user: device.user.clone(),
                    branch: InboxBranch::Device(device.device.clone()),
                }),
                Sip::new(text),
            ),
            Hop::Gateway(destination) => {
                let Some(gateway) = self.sip().and_then(|s| s.gateway.clone()) else {
                    tracing::warn!("SIP message for the gateway, but none is configured; dropped");
                    return;
                };
                let mut body = Sip::new(text);
                body.destination = destination.clone();
                (
                    self.config().root.topic(&Topic::Gateway {
                        gateway,
                        direction: GatewayDirection::Out,
                    }),
                    body,
                )
            }
        };
        out.publishes.push(Outbound {
            topic,
            payload: body.to_packet().encode(),
            qos: Qos::AtLeastOnce,
            retain: false,
        });
    }

    /// Sends a response back along its Via: the top one names a device, or a peer behind
    /// the gateway.
    pub(crate) fn route_response(&self, response: &Message, out: &mut Output) {
        let hop = match response.top_via() {
            Some(via) => match device_of_via(&via) {
                Some(device) => Hop::Device(device),
                None if via.transport == Transport::Mqtt => {
                    tracing::warn!(via = %via, "SIP response with no one to route it to; dropped");
                    return;
                }
                None => Hop::Gateway(None),
            },
            None => {
                tracing::warn!("SIP response without Via; dropped");
                return;
            }
        };
        self.emit(&hop, response, out);
    }

    /// Answers `request` with `code` (adding a To tag where the request had none).
    pub(crate) fn respond(&mut self, request: &Message, code: u16, out: &mut Output) {
        if request.method() == Some(&Method::Ack) {
            return;
        }
        let mut response = Message::response(request, code, "");
        if code > 100 && request.to().is_some_and(|to| to.tag().is_none()) {
            response.set_to_tag(&self.proxy.ids.tag());
        }
        tracing::debug!(
            code,
            call_id = request.call_id(),
            "SIP response from the hub"
        );
        self.route_response(&response, out);
    }

    /// A `sip` packet from a device's upstream topic.
    pub(crate) fn sip_from_device(
        &mut self,
        turn: &mut Turn<'_, '_>,
        inbound: &Inbound,
    ) -> Result<(), Failure> {
        let Some(sip) = self.sip() else {
            return Err(refuse(
                inbound,
                ErrorCode::UNSUPPORTED,
                "this hub has no SIP proxy (spec 7.14)",
            ));
        };
        let body = crate::engine::body::<Sip>(inbound)?;
        let message = Message::parse(body.message.as_bytes()).map_err(|e| {
            refuse(
                inbound,
                ErrorCode::INVALID,
                format!("not a SIP message: {e}"),
            )
        })?;
        let sender = &inbound.sender;
        if !message.is_request() {
            // A device's response: the hub's Via must be on top.
            return self.response_in(turn, message).map_err(Failure::Store);
        }
        let top = message.top_via();
        if top.as_ref().and_then(device_of_via).as_ref() != Some(sender) {
            tracing::info!(%sender, "SIP request whose top Via does not name the sending device");
            let mut response = Message::response(&message, 400, "Via Must Name The Sending Device");
            response.set_to_tag(&self.proxy.ids.tag());
            self.emit(&Hop::Device(sender.clone()), &response, turn.out);
            return Ok(());
        }
        // The sender's address of record, or its own GRUU: a callee's requests inside a
        // call carry the To of the INVITE as From (RFC 3261 12.2.1.1), the GRUU when the
        // caller called that device.
        let from_ok = message.from().is_some_and(|from| {
            matches!(
                self.local(&sip, &from.uri),
                Some(Local::User(user, device))
                    if user == sender.user && device.as_ref().is_none_or(|d| *d == sender.device)
            )
        });
        if !from_ok && message.method() != Some(&Method::Ack) {
            tracing::info!(%sender, "SIP request whose From is not the sender's address");
            self.respond(&message, 403, turn.out);
            return Ok(());
        }
        self.request_in(turn, message, Hop::Device(sender.clone()))
            .map_err(Failure::Store)
    }

    /// A PUBLISH on a topic of `gateway`, which must be its `in` topic. Refusals have no one
    /// to answer: they are logged.
    pub(crate) fn sip_from_gateway(
        &mut self,
        turn: &mut Turn<'_, '_>,
        input: &Upstream,
        gateway: &GatewayName,
        direction: GatewayDirection,
    ) -> Result<(), StoreError> {
        let topic = input.topic.as_str();
        let Some(sip) = self.sip() else {
            tracing::warn!(topic, "gateway packet, but SIP is off; dropped");
            return Ok(());
        };
        let accepted = match direction {
            GatewayDirection::In => accept_gateway_payload(
                &self.config().registry,
                gateway.clone(),
                &input.payload,
                self.config().max_payload,
            ),
            GatewayDirection::Out => Err(format!("{topic:?} is not a gateway's in topic")),
        };
        let inbound = match accepted {
            Ok(inbound) => inbound,
            Err(reason) => {
                tracing::warn!(topic, %reason, "refused a gateway packet");
                return Ok(());
            }
        };
        if sip.gateway.as_ref() != Some(&inbound.gateway) {
            tracing::warn!(
                topic,
                "packet from a gateway this hub does not run; dropped"
            );
            return Ok(());
        }
        let message = match Message::parse(inbound.sip.message.as_bytes()) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(topic, error = %e, "the gateway passed a message that does not parse; dropped");
                return Ok(());
            }
        };
        if message.is_request() {
            let source = inbound.sip.source.unwrap_or_default();
            self.request_in(turn, message, Hop::Gateway(Some(source)))
        } else {
            self.response_in(turn, message)
        }
    }

    /// Routes a request (spec 19, "Routing a request").
    fn request_in(
        &mut self,
        turn: &mut Turn<'_, '_>,
        mut request: Message,
        from: Hop,
    ) -> Result<(), StoreError> {
        let out = &mut *turn.out;
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        let (Some(method), Some(uri)) = (request.method().cloned(), request.uri().cloned()) else {
            return Ok(());
        };
        // Loops and hops.
        // The hub's Via in a request reaching the hub: it went round (RFC 3261 16.3).
        if request.vias().iter().any(|v| self.is_hub_via(&sip, v)) {
            self.respond(&request, 482, out);
            return Ok(());
        }
        let hops = request.max_forwards().unwrap_or(70);
        if hops == 0 && method != Method::Ack {
            self.respond(&request, 483, out);
            return Ok(());
        }
        request.set_max_forwards(hops.saturating_sub(1));
        // Routes naming this hub are consumed (RFC 3261 16.4).
        while request
            .routes()
            .first()
            .is_some_and(|r| self.local(&sip, &r.uri).is_some() && r.uri.user.is_none())
        {
            request.pop_route();
        }
        let in_dialog = request.to().is_some_and(|to| to.tag().is_some());
        match method {
            Method::Cancel => return self.cancel_in(turn, &request),
            Method::Invite if !in_dialog => return self.invite_in(turn, request, from),
            _ => {}
        }
        match self.local(&sip, &uri) {
            Some(Local::User(user, Some(device))) => {
                if method == Method::Bye {
                    self.bye_seen(turn, &request)?;
                }
                self.forward_to_device(turn.tx, &user, &device, request, turn.out)
            }
            Some(Local::User(_, None)) if method == Method::Ack => Ok(()), // our failure's ACK
            Some(Local::User(user, None)) if !in_dialog => match method {
                Method::Options => {
                    let code = if !turn.tx.user_exists(&user, true)? {
                        404
                    } else if turn.tx.connected_devices(&user)?.is_empty() {
                        480
                    } else {
                        200
                    };
                    self.respond(&request, code, turn.out);
                    Ok(())
                }
                Method::Message if matches!(from, Hop::Gateway(_)) => {
                    self.message_in(turn, &user, &request)
                }
                _ => {
                    self.respond(&request, 405, turn.out);
                    Ok(())
                }
            },
            Some(_) => {
                self.respond(&request, 404, turn.out);
                Ok(())
            }
            None => {
                // Outside the domain: through the gateway, never from it (no open relay).
                if matches!(from, Hop::Gateway(_)) {
                    self.respond(&request, 404, turn.out);
                    return Ok(());
                }
                let destination = match request.call_id().and_then(|c| self.proxy.calls.get(c)) {
                    Some(call) => call.outside_destination(),
                    None if in_dialog => None,
                    None => self.peer_for(&sip, &uri),
                };
                let Some(destination) = destination else {
                    let code = if in_dialog { 481 } else { 404 };
                    self.respond(&request, code, turn.out);
                    return Ok(());
                };
                if method == Method::Bye {
                    self.bye_seen(turn, &request)?;
                }
                self.forward_stateless(&sip, &mut request);
                self.emit(&Hop::Gateway(Some(destination)), &request, turn.out);
                Ok(())
            }
        }
    }

    /// Forwards a request to one device, if it is connected.
    fn forward_to_device(
        &mut self,
        tx: &Tx<'_>,
        user: &UserId,
        device: &DeviceId,
        mut request: Message,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        if !tx.user_exists(user, true)? {
            self.respond(&request, 404, out);
            return Ok(());
        }
        if !tx.connected_devices(user)?.contains(device) {
            self.respond(&request, 480, out);
            return Ok(());
        }
        self.forward_stateless(&sip, &mut request);
        self.emit(
            &Hop::Device(DeviceIdentity::new(user.clone(), device.clone())),
            &request,
            out,
        );
        Ok(())
    }

    /// Adds the hub's Via with a branch derived from the request's own (RFC 3261 16.11), so
    /// that a retransmission or the ACK of a 2xx gets the same one.
    fn forward_stateless(&self, sip: &SipConfig, request: &mut Message) {
        let incoming = request
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let method = request
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let key = hash63(&[&incoming, request.call_id().unwrap_or(""), &method]);
        let via = Via::new(
            Transport::Mqtt,
            &self.hub_host(sip),
            None,
            &format!("{}s{key:016x}", mqchat_sip::BRANCH_MAGIC),
        );
        request.push_via(&via);
    }

    /// A response arriving from a device or the gateway: the hub's Via must be on top.
    fn response_in(
        &mut self,
        turn: &mut Turn<'_, '_>,
        mut response: Message,
    ) -> Result<(), StoreError> {
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        let Some(top) = response.top_via().filter(|v| self.is_hub_via(&sip, v)) else {
            tracing::info!(
                call_id = response.call_id(),
                "SIP response without the hub's Via on top; dropped"
            );
            return Ok(());
        };
        let branch = top.branch().unwrap_or_default().to_owned();
        if self.proxy.messages.contains_key(&branch) {
            return self.message_answered(turn, &branch, &response);
        }
        if let Some(call_id) = self.proxy.branches.get(&branch).cloned() {
            return self.branch_response(turn, &call_id, &branch, response);
        }
        response.pop_via();
        self.route_response(&response, turn.out);
        Ok(())
    }

    /// The clock: ringing timeouts, late forks to devices that connected, SIP MESSAGEs
    /// that got no answer, and (once) recording calls a previous run left unfinished. The
    /// server calls it at least once a second.
    pub fn tick(&mut self, store: &mut mqchat_store::Store, now: Now) -> Output {
        let mut out = Output::default();
        if self.sip().is_none() {
            return out;
        }
        let proxy = &self.proxy;
        if proxy.recovered
            && proxy.calls.is_empty()
            && proxy.messages.is_empty()
            && proxy.ended.is_empty()
        {
            // Nothing waits on the clock: spare the store its write lock.
            return out;
        }
        let result = (|| -> Result<(), StoreError> {
            let mut tx = store.transaction()?;
            let now = self.stamp_time(&tx, now)?;
            let mut turn = Turn {
                tx: &mut tx,
                now,
                out: &mut out,
            };
            if !self.proxy.recovered {
                self.recover_calls(&mut turn)?;
                self.proxy.recovered = true;
            }
            self.tick_calls(&mut turn)?;
            self.tick_messages(now.at, &mut out);
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::debug!(error = %e, "SIP tick failed");
            return Output {
                store_failure: Some(e.to_string()),
                ..Output::default()
            };
        }
        out
    }
}
