//! The device's SIP user agent (spec section 7.14): RFC 3261 UAC and UAS cores with their
//! dialogs, over the device's MQTT connection to the hub.
//!
//! Sans-IO like the session that owns it: SIP text comes in through
//! [`UserAgent::handle`], the application's calls through [`UserAgent::call`],
//! [`UserAgent::answer`], [`UserAgent::reject`] and [`UserAgent::hangup`], time through
//! [`UserAgent::handle_timeout`]; SIP text to send and events for the application come out
//! of [`UserAgent::poll`].
//!
//! The transport is reliable (MQTT QoS 1 to and from the hub, a stateful proxy), so there
//! are no retransmission timers (RFC 3261 17.1.1.2, 17.1.2.2 on reliable transports), only
//! the timeouts: no response to an INVITE (timer B), no ACK for a 2xx (13.3.1.4), and a
//! limit on ringing. What a lost connection may have swallowed is sent again by
//! [`UserAgent::resend`] after a reconnect: requests with no response yet, a 2xx not yet
//! acknowledged, the last response of an INVITE still ringing. Peers treat these as the
//! retransmissions they are.

mod dialog;
mod incoming;
mod outgoing;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use mqchat_proto::{ConversationRef, Moment};
use mqchat_sip::{IdGen, Message, Method};

use crate::call::{Call, CallTarget, EndReason, Rejection};
use crate::error::Error;
use crate::event::Event;
pub(crate) use dialog::Local;
use incoming::Incoming;
use outgoing::Outgoing;

/// 64 × T1: how long a transaction waits for an answer (timer B, F, H).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);

/// How long an INVITE may ring without a final answer before this side gives up (RFC
/// 3261's timer C for proxies, three minutes). The hub's own ring timeout is shorter.
const RING_LIMIT: Duration = Duration::from_secs(180);

/// How long an ended call is remembered, to absorb retransmissions and late answers.
const LINGER: Duration = Duration::from_secs(32);

/// The largest SIP message this side sends (a `sip` packet's limit).
const MAX_MESSAGE: usize = mqchat_proto::body::SIP_MESSAGE_BYTES;

/// What the user agent asks of its owner.
#[derive(Debug)]
pub(crate) enum UaOutput {
    /// Send this SIP message to the hub.
    Send(String),
    /// Tell the application.
    Event(Box<Event>),
}

/// A non-INVITE request this side sent (BYE, CANCEL), waiting for its final response.
#[derive(Debug)]
struct Request {
    message: Message,
    deadline: Moment,
    /// An OPTIONS asking, after a reconnect, whether this call is still on.
    probe: Option<Call>,
}

/// Every call of the device, and the transactions around them.
#[derive(Debug)]
pub(crate) struct UserAgent {
    me: Local,
    ids: IdGen,
    outgoing: HashMap<String, Outgoing>,
    incoming: HashMap<String, Incoming>,
    /// BYE and CANCEL requests waiting for their final response, by branch.
    requests: HashMap<String, Request>,
    /// Final responses to non-INVITE requests, by branch and method, until they expire: a
    /// retransmitted request gets the same answer again.
    answered: HashMap<(String, String), (String, Moment)>,
    out: VecDeque<UaOutput>,
}

impl UserAgent {
    /// A user agent for `me`; `seed` makes its Call-IDs, tags and branches unique.
    pub fn new(me: Local, seed: u64) -> Self {
        Self {
            me,
            ids: IdGen::new(seed),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            requests: HashMap::new(),
            answered: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The next thing to send or tell.
    pub fn poll(&mut self) -> Option<UaOutput> {
        self.out.pop_front()
    }

    /// When to call [`UserAgent::handle_timeout`] next.
    pub fn next_deadline(&self) -> Option<Moment> {
        let calls = self
            .outgoing
            .values()
            .filter_map(|c| c.deadline)
            .chain(self.incoming.values().filter_map(|c| c.deadline));
        let requests = self.requests.values().map(|r| r.deadline);
        let answered = self.answered.values().map(|(_, until)| *until);
        calls.chain(requests).chain(answered).min()
    }

    fn send(&mut self, message: &Message) {
        let text = String::from_utf8_lossy(&message.to_bytes()).into_owned();
        self.out.push_back(UaOutput::Send(text));
    }

    fn emit(&mut self, event: Event) {
        self.out.push_back(UaOutput::Event(Box::new(event)));
    }

    fn end(&mut self, call: &Call, reason: EndReason) {
        tracing::debug!(%call, %reason, "call ended");
        self.emit(Event::CallEnded {
            call: call.clone(),
            reason,
        });
    }

    /// Sends a BYE or CANCEL and waits for its final response.
    fn send_request(&mut self, message: Message, now: Moment) {
        self.track(message, None, now);
    }

    fn track(&mut self, message: Message, probe: Option<Call>, now: Moment) {
        self.send(&message);
        let branch = message
            .top_via()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        self.requests.insert(
            branch,
            Request {
                message,
                deadline: now + TRANSACTION_TIMEOUT,
                probe,
            },
        );
    }

    /// Sends a response and remembers it for retransmissions of a non-INVITE `request`.
    fn respond(&mut self, request: &Message, response: &Message, now: Moment) {
        self.send(response);
        if let (Some(via), Some(method)) = (request.top_via(), request.method())
            && *method != Method::Invite
            && let Some(branch) = via.branch()
        {
            let text = String::from_utf8_lossy(&response.to_bytes()).into_owned();
            self.answered.insert(
                (branch.to_owned(), method.to_string()),
                (text, now + TRANSACTION_TIMEOUT),
            );
        }
    }

    // ---- The application's calls ----

    /// Places a call to `target` (a user of this domain or a `sip:` URI) with the SDP
    /// offer `sdp`.
    pub fn call(&mut self, target: &CallTarget, sdp: &str, now: Moment) -> Result<Call, Error> {
        let uri = target.uri(&self.me.domain);
        check_sdp(sdp)?;
        let call_id = self.ids.call_id(&self.me.via_host());
        let tag = self.ids.tag();
        let branch = self.ids.branch();
        let invite = dialog::invite(&self.me, &uri, &call_id, &tag, &branch, sdp);
        if invite.to_bytes().len() > MAX_MESSAGE {
            return Err(Error::invalid(format!(
                "the INVITE would exceed {MAX_MESSAGE} bytes: the SDP is too large"
            )));
        }
        let call = Call::new(&call_id, true);
        self.send(&invite);
        self.outgoing
            .insert(call_id, Outgoing::new(call.clone(), invite, branch, now));
        Ok(call)
    }

    /// Answers the incoming `call` with the SDP answer `sdp`.
    pub fn answer(&mut self, call: &Call, sdp: &str, now: Moment) -> Result<(), Error> {
        check_sdp(sdp)?;
        let me = self.me.clone();
        let incoming = self.ringing(call)?;
        let response = incoming.answer(&me, sdp, now)?;
        self.send(&response);
        Ok(())
    }

    /// Refuses the incoming `call`.
    pub fn reject(&mut self, call: &Call, why: Rejection, now: Moment) -> Result<(), Error> {
        let incoming = self.ringing(call)?;
        let (code, reason) = match why {
            Rejection::Busy => (486, EndReason::Busy { local: true }),
            Rejection::Decline => (603, EndReason::Declined { local: true }),
        };
        let response = incoming.refuse(code, now);
        self.send(&response);
        self.end(call, reason);
        Ok(())
    }

    fn ringing(&mut self, call: &Call) -> Result<&mut Incoming, Error> {
        match self.incoming.get_mut(call.call_id()) {
            Some(incoming) if !call.is_outgoing() && incoming.is_ringing() => Ok(incoming),
            Some(_) if !call.is_outgoing() => {
                Err(Error::invalid(format!("call {call} is no longer ringing")))
            }
            _ => Err(Error::invalid(format!("no incoming call {call}"))),
        }
    }

    /// Hangs up `call`: cancels it before the answer, ends it with BYE after; an incoming
    /// call still ringing is declined.
    pub fn hangup(&mut self, call: &Call, now: Moment) -> Result<(), Error> {
        if call.is_outgoing() {
            let me = self.me.clone();
            let Some(outgoing) = self.outgoing.get_mut(call.call_id()) else {
                return Err(Error::invalid(format!("no call {call}")));
            };
            let (request, reason) = outgoing.hangup(&me, &mut self.ids, now)?;
            self.send_request(request, now);
            self.end(call, reason);
            return Ok(());
        }
        if self
            .incoming
            .get(call.call_id())
            .is_some_and(Incoming::is_ringing)
        {
            return self.reject(call, Rejection::Decline, now);
        }
        let me = self.me.clone();
        let Some(incoming) = self.incoming.get_mut(call.call_id()) else {
            return Err(Error::invalid(format!("no call {call}")));
        };
        let bye = incoming.hangup(&me, &mut self.ids, now)?;
        if let Some(bye) = bye {
            self.send_request(bye, now);
        }
        self.end(call, EndReason::HungUp { local: true });
        Ok(())
    }

    /// Ends every call, as when the device signs off: cancels or hangs up its own, turns
    /// away those ringing (480, so the user's other devices keep ringing).
    pub fn close(&mut self, now: Moment) {
        let outgoing: Vec<Call> = self
            .outgoing
            .values()
            .filter(|c| c.is_live())
            .map(|c| c.call.clone())
            .collect();
        for call in outgoing {
            let _ = self.hangup(&call, now);
        }
        let incoming: Vec<Call> = self
            .incoming
            .values()
            .filter(|c| c.is_live())
            .map(|c| c.call.clone())
            .collect();
        for call in incoming {
            let ringing = self
                .incoming
                .get(call.call_id())
                .is_some_and(Incoming::is_ringing);
            if ringing {
                if let Some(incoming) = self.incoming.get_mut(call.call_id()) {
                    let response = incoming.refuse(480, now);
                    self.send(&response);
                }
                self.end(
                    &call,
                    EndReason::Failed {
                        code: 480,
                        reason: "the device signed off".into(),
                    },
                );
            } else {
                let _ = self.hangup(&call, now);
            }
        }
    }

    // ---- The network ----

    /// A SIP message arrived from the hub.
    pub fn handle(&mut self, text: &str, now: Moment) {
        let message = match Message::parse(text.as_bytes()) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!("dropping a SIP message that does not parse: {e}");
                return;
            }
        };
        if message.is_request() {
            self.on_request(&message, now);
        } else {
            self.on_response(&message, now);
        }
    }

    fn on_request(&mut self, request: &Message, now: Moment) {
        let Some(method) = request.method().cloned() else {
            return;
        };
        let (Some(call_id), Some(via)) = (request.call_id(), request.top_via()) else {
            return;
        };
        let call_id = call_id.to_owned();
        if method == Method::Ack {
            self.on_ack(&call_id, request, now);
            return;
        }
        if method != Method::Invite
            && let Some(branch) = via.branch()
            && let Some((response, _)) = self.answered.get(&(branch.to_owned(), method.to_string()))
        {
            tracing::debug!(%method, "answering a retransmitted request again");
            self.out.push_back(UaOutput::Send(response.clone()));
            return;
        }
        let in_dialog = request.to().is_some_and(|to| to.tag().is_some());
        match method {
            Method::Cancel => self.on_cancel(&call_id, request, now),
            Method::Invite if !in_dialog => self.on_invite(call_id, request, now),
            _ if in_dialog => self.in_dialog(&call_id, &method, request, now),
            Method::Options => {
                let response = self.options(request);
                self.respond(request, &response, now);
            }
            Method::Bye => self.reply(request, 481, now),
            _ => self.not_allowed(&method, request, now),
        }
    }

    /// Answers `request` with a bare `code` (and a tag, as every response outside a dialog
    /// but 100 needs).
    fn reply(&mut self, request: &Message, code: u16, now: Moment) {
        let mut response = Message::response(request, code, "");
        if request.to().is_some_and(|to| to.tag().is_none()) {
            response.set_to_tag(&self.ids.tag());
        }
        self.respond(request, &response, now);
    }

    /// 405 for the methods this side knows but does not take here, 501 for the others.
    fn not_allowed(&mut self, method: &Method, request: &Message, now: Moment) {
        let code = if matches!(method, Method::Extension(_)) {
            501
        } else {
            405
        };
        let mut response = Message::response(request, code, "");
        if request.to().is_some_and(|to| to.tag().is_none()) {
            response.set_to_tag(&self.ids.tag());
        }
        response.insert_header("Allow", dialog::ALLOW);
        self.respond(request, &response, now);
    }

    /// 200 to OPTIONS: what this side takes.
    fn options(&mut self, request: &Message) -> Message {
        let mut response = Message::response(request, 200, "");
        if request.to().is_some_and(|to| to.tag().is_none()) {
            response.set_to_tag(&self.ids.tag());
        }
        response.insert_header("Allow", dialog::ALLOW);
        response.insert_header("Accept", "application/sdp");
        response.insert_header("User-Agent", dialog::USER_AGENT);
        response
    }

    fn on_invite(&mut self, call_id: String, invite: &Message, now: Moment) {
        if let Some(existing) = self.incoming.get(&call_id) {
            if existing.is_retransmission(invite) {
                let response = existing.last_response();
                self.send(&response);
            } else {
                tracing::warn!(call_id, "a second INVITE of one call reached this device");
                self.reply(invite, 482, now);
            }
            return;
        }
        if self.outgoing.contains_key(&call_id) {
            tracing::warn!(call_id, "this device's own call came back to it");
            self.reply(invite, 482, now);
            return;
        }
        let tag = self.ids.tag();
        match Incoming::new(&self.me, &call_id, invite, tag, now) {
            Ok((incoming, response, event)) => {
                self.send(&response);
                self.incoming.insert(call_id, incoming);
                self.emit(event);
            }
            Err(response) => self.respond(invite, &response, now),
        }
    }

    fn on_ack(&mut self, call_id: &str, ack: &Message, now: Moment) {
        let me = self.me.clone();
        let Some(incoming) = self.incoming.get_mut(call_id) else {
            tracing::debug!(call_id, "ignoring an ACK for no call");
            return;
        };
        if let Some(bye) = incoming.acknowledged(ack, &me, &mut self.ids, now) {
            self.send_request(bye, now);
        }
    }

    fn on_cancel(&mut self, call_id: &str, cancel: &Message, now: Moment) {
        let Some(incoming) = self
            .incoming
            .get_mut(call_id)
            .filter(|c| c.is_cancelled_by(cancel))
        else {
            self.reply(cancel, 481, now);
            return;
        };
        let call = incoming.call.clone();
        let ok = incoming.cancel_ok(cancel);
        let terminated = incoming.cancelled(now);
        self.respond(cancel, &ok, now);
        if let Some(terminated) = terminated {
            self.send(&terminated);
            let reason = match dialog::reason_cause(cancel) {
                Some(200) => EndReason::AnsweredElsewhere,
                Some(603) => EndReason::Declined { local: false },
                Some(486 | 600) => EndReason::Busy { local: false },
                _ => EndReason::Cancelled { local: false },
            };
            self.end(&call, reason);
        }
    }

    fn in_dialog(&mut self, call_id: &str, method: &Method, request: &Message, now: Moment) {
        let me = self.me.clone();
        let (Some(from), Some(to), Some(cseq)) = (request.from(), request.to(), request.cseq())
        else {
            return;
        };
        let (remote_tag, local_tag) = (from.tag().unwrap_or(""), to.tag().unwrap_or(""));
        // Which call, and whether the other side ended it now.
        let found = if let Some(c) = self.outgoing.get_mut(call_id) {
            c.dialog_request(local_tag, remote_tag, cseq.seq, method)
        } else if let Some(c) = self.incoming.get_mut(call_id) {
            c.dialog_request(local_tag, remote_tag, cseq.seq, method, now)
        } else {
            None
        };
        let Some(found) = found else {
            self.reply(request, 481, now);
            return;
        };
        match found {
            DialogRequest::OutOfOrder => self.reply(request, 500, now),
            DialogRequest::Accepted {
                call,
                ended,
                terminated,
            } => match method {
                Method::Bye => {
                    self.reply(request, 200, now);
                    if let Some(terminated) = terminated {
                        self.send(&terminated);
                    }
                    if let Some(reason) = ended {
                        self.end(&call, reason);
                    }
                }
                Method::Options => {
                    let response = self.options(request);
                    self.respond(request, &response, now);
                }
                Method::Invite => {
                    // A new offer inside the call (hold, a new stream): this side keeps the
                    // session as it is (RFC 3261 14.2).
                    let mut response = Message::response(request, 488, "");
                    response.insert_header(
                        "Warning",
                        &format!(
                            "399 {} \"changing a call's session is not supported\"",
                            me.via_host()
                        ),
                    );
                    self.send(&response);
                }
                other => self.not_allowed(other, request, now),
            },
        }
    }

    fn on_response(&mut self, response: &Message, now: Moment) {
        let (Some(cseq), Some(via), Some(call_id), Some(code)) = (
            response.cseq(),
            response.top_via(),
            response.call_id(),
            response.code(),
        ) else {
            return;
        };
        let branch = via.branch().unwrap_or("").to_owned();
        if cseq.method == Method::Invite {
            let me = self.me.clone();
            let Some(outgoing) = self
                .outgoing
                .get_mut(call_id)
                .filter(|c| c.branch == branch)
            else {
                tracing::debug!(
                    call_id,
                    code,
                    "dropping a response to no INVITE of this device"
                );
                return;
            };
            let effects = outgoing.response(response, &me, &mut self.ids, now);
            for message in effects.send {
                self.send(&message);
            }
            for request in effects.requests {
                self.send_request(request, now);
            }
            for event in effects.events {
                self.emit(event);
            }
            return;
        }
        match self.requests.get(&branch) {
            Some(request)
                if request
                    .message
                    .cseq()
                    .is_some_and(|c| c.method == cseq.method) =>
            {
                if code >= 200 {
                    if code >= 300 {
                        tracing::debug!(call_id, code, method = %cseq.method, "request refused");
                    }
                    let probe = self.requests.remove(&branch).and_then(|r| r.probe);
                    if let Some(call) = probe
                        && code == 481
                    {
                        self.gone(&call, now);
                    }
                }
            }
            _ => tracing::debug!(
                call_id,
                code,
                "dropping a response to no request of this device"
            ),
        }
    }

    /// The other side no longer knows `call` (481 to a probe): it ended while this device
    /// was away.
    fn gone(&mut self, call: &Call, now: Moment) {
        let ended = if call.is_outgoing() {
            self.outgoing
                .get_mut(call.call_id())
                .is_some_and(|c| c.gone(now))
        } else {
            self.incoming
                .get_mut(call.call_id())
                .is_some_and(|c| c.gone(now))
        };
        if ended {
            self.end(
                call,
                EndReason::Failed {
                    code: 481,
                    reason: "the call ended while this device was offline".into(),
                },
            );
        }
    }

    /// Time passed: timeouts of calls and transactions.
    pub fn handle_timeout(&mut self, now: Moment) {
        let me = self.me.clone();
        let due: Vec<String> = self
            .outgoing
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(outgoing) = self.outgoing.get_mut(&id) else {
                continue;
            };
            match outgoing.timeout(now) {
                outgoing::Timeout::Nothing => {}
                outgoing::Timeout::Forget => {
                    self.outgoing.remove(&id);
                }
                outgoing::Timeout::GiveUp { call, cancel } => {
                    self.send_request(*cancel, now);
                    self.end(
                        &call,
                        EndReason::Failed {
                            code: 408,
                            reason: "no answer in time".into(),
                        },
                    );
                }
            }
        }
        let due: Vec<String> = self
            .incoming
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(incoming) = self.incoming.get_mut(&id) else {
                continue;
            };
            match incoming.timeout(&me, &mut self.ids, now) {
                incoming::Timeout::Nothing => {}
                incoming::Timeout::Forget => {
                    self.incoming.remove(&id);
                }
                incoming::Timeout::Expired { call, response } => {
                    self.send(&response);
                    self.end(
                        &call,
                        EndReason::Failed {
                            code: 408,
                            reason: "not answered in time".into(),
                        },
                    );
                }
                incoming::Timeout::NoAck { call, bye, told } => {
                    self.send_request(bye, now);
                    if !told {
                        self.end(
                            &call,
                            EndReason::Failed {
                                code: 408,
                                reason: "the caller did not acknowledge the answer".into(),
                            },
                        );
                    }
                }
            }
        }
        self.requests.retain(|branch, request| {
            let keep = request.deadline > now;
            if !keep {
                tracing::debug!(branch, "no final response to a request in time");
            }
            keep
        });
        self.answered.retain(|_, (_, until)| *until > now);
    }

    /// After a reconnect: sends again what the lost connection may have swallowed.
    pub fn resend(&mut self, now: Moment) {
        let mut again = Vec::new();
        for outgoing in self.outgoing.values() {
            again.extend(outgoing.unconfirmed(now));
        }
        for incoming in self.incoming.values() {
            again.extend(incoming.unconfirmed());
        }
        again.extend(self.requests.values().map(|r| r.message.clone()));
        for message in again {
            self.send(&message);
        }
        // A call that is on may have ended meanwhile (a BYE the hub could not deliver while
        // this device was away): an OPTIONS inside it asks; 481 means it is gone.
        let me = self.me.clone();
        let mut probes = Vec::new();
        for outgoing in self.outgoing.values_mut() {
            probes.extend(outgoing.probe(&me, &mut self.ids));
        }
        for incoming in self.incoming.values_mut() {
            probes.extend(incoming.probe(&me, &mut self.ids));
        }
        for (call, options) in probes {
            self.track(options, Some(call), now);
        }
    }

    /// The INVITE of an outgoing call, as sent.
    #[cfg(test)]
    pub fn invite_of(&self, call: &Call) -> Option<&Message> {
        self.outgoing.get(call.call_id()).map(Outgoing::invite)
    }

    /// The calls under way (not ended), for the application.
    pub fn live_calls(&self) -> Vec<Call> {
        self.outgoing
            .values()
            .filter(|c| c.is_live())
            .map(|c| c.call.clone())
            .chain(
                self.incoming
                    .values()
                    .filter(|c| c.is_live())
                    .map(|c| c.call.clone()),
            )
            .collect()
    }
}

/// What a request inside a dialog means for its call.
#[derive(Debug)]
enum DialogRequest {
    /// The CSeq number went backwards (RFC 3261 12.2.2): 500.
    OutOfOrder,
    /// The request belongs to the call.
    Accepted {
        call: Call,
        /// It ended the call (a BYE), for this reason.
        ended: Option<EndReason>,
        /// The INVITE still ringing gets this final response (a BYE on an early dialog).
        terminated: Option<Box<Message>>,
    },
}

/// An SDP offer or answer must at least look like one (RFC 8866: it starts with `v=`).
fn check_sdp(sdp: &str) -> Result<(), Error> {
    if !sdp.trim_start().starts_with("v=") {
        return Err(Error::invalid("the SDP must start with \"v=\""));
    }
    Ok(())
}

/// Who called, for [`Event::IncomingCall`].
fn caller(me: &Local, invite: &Message) -> (String, Option<String>, Option<ConversationRef>) {
    match invite.from() {
        Some(from) => {
            let conv = me.conversation(&from.uri);
            let mut uri = from.uri;
            uri.params = Default::default();
            uri.headers.clear();
            (uri.to_string(), from.display, conv)
        }
        None => (String::new(), None, None),
    }
}
