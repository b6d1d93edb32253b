//! Calls (spec section 19): forking an INVITE to every connected device of the callee (and
//! to devices that connect while it rings), the first 2xx winning, cancelling the other
//! branches, the best final response, the caller's CANCEL, the ringing timeout, and the
//! `call` record (spec 7.14) appended to the conversation of caller and callee.

use std::time::Duration;

use mqchat_proto::body::{Body, Call, CallOutcome, MAX_MEDIA};
use mqchat_proto::{ConversationRef, DeviceId, Moment, PacketKind, SipAddress, UserId};
use mqchat_sip::{Message, Method, StartLine, Uri};
use mqchat_store::{Author, CallRow, StoreError, Tx};

use super::{Hop, Local};
use crate::engine::{Engine, Output, Turn};
use crate::push::Push;

/// How long an answered call may last without a BYE passing the hub before it is recorded
/// anyway (a device that vanished mid-call).
const MAX_CALL: Duration = Duration::from_secs(24 * 3600);
/// How long the hub remembers the branches of a finished call, to absorb late answers.
const LINGER: Duration = Duration::from_secs(32);

/// One fork of a call.
#[derive(Debug)]
pub(crate) struct Branch {
    /// The hub's branch id (its Via branch on the forwarded INVITE).
    id: String,
    /// Where the INVITE went.
    hop: Hop,
    /// The callee's device, for a user of the domain.
    device: Option<DeviceId>,
    /// The INVITE as forwarded (for its CANCEL and ACKs).
    request: Message,
    state: BranchState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BranchState {
    Calling,
    Ringing,
    Answered,
    Failed,
    Cancelled,
}

impl BranchState {
    fn pending(self) -> bool {
        matches!(self, Self::Calling | Self::Ringing)
    }
}

/// Who is called.
#[derive(Clone, Debug)]
enum Callee {
    /// A user of the domain (restricted to one device when the Request-URI was a GRUU).
    User(UserId, Option<DeviceId>),
    /// Someone outside, through the gateway to this destination.
    Outside(String),
}

/// A call in progress.
#[derive(Debug)]
pub(crate) struct CallState {
    row: CallRow,
    /// The INVITE as received (after the hub's edits of Max-Forwards and Route).
    invite: Message,
    /// Where the caller is.
    caller: Hop,
    callee: Callee,
    branches: Vec<Branch>,
    /// Devices woken by push that have no branch yet.
    woken: Vec<DeviceId>,
    /// When it stops ringing.
    deadline: Moment,
    /// When it was answered (`row.answered` is the wall clock's stamp of the same).
    answered_at: Option<Moment>,
    /// A final response went to the caller.
    final_sent: bool,
    /// The best failure so far (the hub's Via removed).
    best: Option<Message>,
}

impl CallState {
    /// Where in-dialog requests to the outside party of this call go.
    pub(crate) fn outside_destination(&self) -> Option<String> {
        match (&self.caller, &self.callee) {
            (Hop::Gateway(Some(source)), _) => Some(source.clone()),
            (_, Callee::Outside(destination)) => Some(destination.clone()),
            _ => None,
        }
    }
}

/// The rank of a failure for the best-response choice (lower is better).
fn rank(code: u16) -> (u8, u8) {
    match code {
        600..=699 => (0, 0),
        486 => (1, 0),
        300..=399 => (2, 0),
        408 => (3, 1),
        400..=499 => (3, 0),
        _ => (4, 0),
    }
}

fn outcome_of(code: u16) -> CallOutcome {
    match code {
        486 | 600 => CallOutcome::Busy,
        603 => CallOutcome::Declined,
        408 | 480 | 487 => CallOutcome::Missed,
        _ => CallOutcome::Failed,
    }
}

/// The media kinds of an SDP offer (`m=audio ...` → `audio`).
fn sdp_media(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut kinds: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(kind) = line
            .strip_prefix("m=")
            .and_then(|rest| rest.split_whitespace().next())
            && (1..=32).contains(&kind.len())
            && !kinds.iter().any(|k| k == kind)
            && kinds.len() < MAX_MEDIA
        {
            kinds.push(kind.to_owned());
        }
    }
    kinds
}

/// The `Reason` of the CANCELs that stop a call's other devices once one answered (RFC
/// 3326, RFC 3261 errata).
const ANSWERED_ELSEWHERE: &str = "SIP ;cause=200 ;text=\"Call completed elsewhere\"";

/// A request the hub makes for a branch (CANCEL, or the ACK of a failure): the branch's
/// Via, From, Call-ID and CSeq number, To from `to` (the response's, for an ACK).
fn branch_request(branch: &Message, method: Method, to: Option<&str>) -> Option<Message> {
    let uri = branch.uri()?.clone();
    let cseq = branch.cseq()?;
    let mut request = Message::request(method.clone(), uri);
    request.headers.push("Via", branch.headers.get("Via")?);
    request.headers.push("Max-Forwards", "70");
    request.headers.push("From", branch.headers.get("From")?);
    request
        .headers
        .push("To", to.or_else(|| branch.headers.get("To"))?);
    request.headers.push("Call-ID", branch.call_id()?);
    request
        .headers
        .push("CSeq", &format!("{} {}", cseq.seq, method.as_str()));
    Some(request)
}

impl Engine {
    /// A new INVITE (no To tag).
    pub(super) fn invite_in(
        &mut self,
        turn: &mut Turn<'_, '_>,
        invite: Message,
        from: Hop,
    ) -> Result<(), StoreError> {
        let (tx, now, out) = (&mut *turn.tx, turn.now, &mut *turn.out);
        let Some(sip) = self.sip() else {
            return Ok(());
        };
        let (Some(call_id), Some(uri)) =
            (invite.call_id().map(str::to_owned), invite.uri().cloned())
        else {
            return Ok(());
        };
        if let Some(call) = self.proxy.calls.get(&call_id) {
            let same = call
                .invite
                .top_via()
                .and_then(|v| v.branch().map(str::to_owned))
                == invite.top_via().and_then(|v| v.branch().map(str::to_owned));
            if !same {
                self.respond(&invite, 482, out);
            }
            return Ok(());
        }
        if tx.call(&call_id)?.is_some() {
            self.respond(&invite, 482, out);
            return Ok(());
        }
        let (caller, caller_device) = match &from {
            Hop::Device(device) => (Author::User(device.user.clone()), device.device.to_string()),
            Hop::Gateway(_) => {
                let address = invite.from().and_then(|f| canonical(&f.uri));
                let Some(address) = address else {
                    self.respond(&invite, 400, out);
                    return Ok(());
                };
                let gateway = sip
                    .gateway
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                (Author::Sip(address), gateway)
            }
        };
        let (callee, callee_author) = match self.local(&sip, &uri) {
            Some(Local::User(user, device)) if tx.user_exists(&user, true)? => {
                (Callee::User(user.clone(), device), Author::User(user))
            }
            Some(_) => {
                self.respond(&invite, 404, out);
                return Ok(());
            }
            None => {
                let route = match from {
                    Hop::Device(_) => self.peer_for(&sip, &uri).zip(canonical(&uri)),
                    Hop::Gateway(_) => None,
                };
                let Some((destination, address)) = route else {
                    self.respond(&invite, 404, out);
                    return Ok(());
                };
                (Callee::Outside(destination), Author::Sip(address))
            }
        };
        let row = CallRow {
            call_id: call_id.clone(),
            caller,
            caller_device,
            callee: callee_author,
            branches: Vec::new(),
            media: sdp_media(&invite.body),
            rang: false,
            started: now.wall.unix_ms(),
            answered: None,
            answered_by: None,
            ended: None,
            outcome: None,
        };
        if !tx.insert_call(&row)? {
            self.respond(&invite, 482, out);
            return Ok(());
        }
        tracing::info!(
            call_id,
            caller = row.caller.as_str(),
            callee = row.callee.as_str(),
            "call"
        );
        let mut call = CallState {
            row,
            invite,
            caller: from,
            callee: callee.clone(),
            branches: Vec::new(),
            woken: Vec::new(),
            deadline: now.at + Duration::from_millis(sip.ring_timeout_ms),
            answered_at: None,
            final_sent: false,
            best: None,
        };
        match &callee {
            Callee::Outside(destination) => {
                let hop = Hop::Gateway(Some(destination.clone()));
                self.fork(&mut call, hop, None, uri);
            }
            Callee::User(user, only) => {
                let caller = call.caller.clone();
                let wanted = |d: &DeviceId| {
                    only.as_ref().is_none_or(|o| o == d)
                        && !matches!(&caller, Hop::Device(c) if c.user == *user && c.device == *d)
                };
                let connected: Vec<DeviceId> = tx
                    .connected_devices(user)?
                    .into_iter()
                    .filter(|d| wanted(d))
                    .collect();
                for device in &connected {
                    let hop = Hop::Device(mqchat_proto::DeviceIdentity::new(
                        user.clone(),
                        device.clone(),
                    ));
                    let gruu = self.gruu(&sip, user, device);
                    self.fork(&mut call, hop, Some(device.clone()), gruu);
                }
                let asleep: Vec<_> = tx
                    .push_devices(user)?
                    .into_iter()
                    .filter(|d| !d.connected && wanted(&d.device) && !connected.contains(&d.device))
                    .collect();
                if !asleep.is_empty() {
                    let (name, seq) = self.call_conversation(tx, &call.row, user)?;
                    for device in asleep {
                        call.woken.push(device.device.clone());
                        out.pushes.push(Push {
                            user: user.clone(),
                            device: device.device,
                            target: device.target,
                            conversation: name.clone(),
                            seq,
                            preview: None,
                            call: true,
                        });
                    }
                    call.row.rang = true;
                }
            }
        }
        call.row.branches = call
            .branches
            .iter()
            .filter_map(|b| b.device.as_ref().map(ToString::to_string))
            .chain(call.woken.iter().map(ToString::to_string))
            .collect();
        if call.branches.is_empty() && call.woken.is_empty() {
            let invite = call.invite.clone();
            self.respond(&invite, 480, out);
            return self.record(turn, &mut call.row, CallOutcome::Missed);
        }
        tx.update_call(&call.row)?;
        for branch in &call.branches {
            self.emit(&branch.hop, &branch.request, out);
        }
        self.proxy.calls.insert(call_id, call);
        Ok(())
    }

    /// Starts one branch of `call` (the INVITE is emitted by the caller of this).
    fn fork(&mut self, call: &mut CallState, hop: Hop, device: Option<DeviceId>, uri: Uri) {
        let Some(sip) = self.sip() else {
            return;
        };
        let mut request = call.invite.clone();
        if let StartLine::Request { uri: target, .. } = &mut request.start {
            *target = uri;
        }
        let via = self.hub_via(&sip);
        let id = via.branch().unwrap_or_default().to_owned();
        request.push_via(&via);
        self.proxy
            .branches
            .insert(id.clone(), call.row.call_id.clone());
        call.branches.push(Branch {
            id,
            hop,
            device,
            request,
            state: BranchState::Calling,
        });
    }

    /// The conversation of a call as `reader` names it, and its last sequence number
    /// (created if needed: a push points the app at it).
    fn call_conversation(
        &self,
        tx: &Tx<'_>,
        row: &CallRow,
        reader: &UserId,
    ) -> Result<(ConversationRef, u64), StoreError> {
        let other = if row.caller.user() == Some(reader) {
            &row.callee
        } else {
            &row.caller
        };
        let (name, conv) = match other {
            Author::User(user) => (
                ConversationRef::Direct(user.clone()),
                tx.direct(reader, user, true)?,
            ),
            Author::Sip(address) => (
                ConversationRef::Sip(address.clone()),
                tx.sip_conversation(reader, address, true)?,
            ),
        };
        Ok((name, conv.map_or(0, |c| c.last_seq)))
    }

    /// A response on one of a call's branches (the hub's Via still on top).
    pub(super) fn branch_response(
        &mut self,
        turn: &mut Turn<'_, '_>,
        call_id: &str,
        branch_id: &str,
        mut response: Message,
    ) -> Result<(), StoreError> {
        let code = response.code().unwrap_or(0);
        let method = response.cseq().map(|c| c.method);
        let Some(mut call) = self.proxy.calls.remove(call_id) else {
            // A finished call: acknowledge a late failure, drop the rest.
            if let Some((request, hop @ Hop::Device(_), _)) = self.proxy.ended.get(branch_id)
                && method == Some(Method::Invite)
                && code >= 300
                && let Some(ack) = branch_request(request, Method::Ack, response.headers.get("To"))
            {
                self.emit(hop, &ack, turn.out);
            }
            return Ok(());
        };
        let result =
            self.on_branch_response(turn, &mut call, branch_id, code, method, &mut response);
        if call.row.ended.is_none() {
            self.proxy.calls.insert(call_id.to_owned(), call);
        } else {
            self.forget(call, turn.now.at);
        }
        result
    }

    fn on_branch_response(
        &self,
        turn: &mut Turn<'_, '_>,
        call: &mut CallState,
        branch_id: &str,
        code: u16,
        method: Option<Method>,
        response: &mut Message,
    ) -> Result<(), StoreError> {
        let (tx, now, out) = (&mut *turn.tx, turn.now, &mut *turn.out);
        let Some(index) = call.branches.iter().position(|b| b.id == branch_id) else {
            return Ok(());
        };
        if method != Some(Method::Invite) {
            // The answer to the hub's CANCEL: nothing to pass on.
            return Ok(());
        }
        response.pop_via();
        match code {
            100 => {}
            101..=199 => {
                if call.branches[index].state == BranchState::Calling {
                    call.branches[index].state = BranchState::Ringing;
                }
                if matches!(code, 180 | 183) && !call.row.rang {
                    call.row.rang = true;
                    tx.update_call(&call.row)?;
                }
                if !call.final_sent {
                    self.route_response(response, out);
                }
            }
            200..=299 => {
                call.branches[index].state = BranchState::Answered;
                if call.row.answered.is_none() {
                    call.row.answered = Some(now.wall.unix_ms());
                    call.answered_at = Some(now.at);
                    call.row.answered_by = call.branches[index]
                        .device
                        .as_ref()
                        .map(ToString::to_string);
                    call.final_sent = true;
                    call.woken.clear();
                    tx.update_call(&call.row)?;
                    self.cancel_pending(call, Some(ANSWERED_ELSEWHERE), out);
                }
                // Every 2xx goes to the caller (RFC 3261 16.7): it acknowledges each and ends
                // the extra dialogs with BYE.
                self.route_response(response, out);
            }
            _ => {
                // A device has no transaction layer under the hub: the hub acknowledges its
                // failure (RFC 3261 17.1.1.3). The gateway's client transaction does that
                // itself for its peers.
                if let Hop::Device(_) = call.branches[index].hop
                    && let Some(ack) = branch_request(
                        &call.branches[index].request,
                        Method::Ack,
                        response.headers.get("To"),
                    )
                {
                    self.emit(&call.branches[index].hop, &ack, out);
                }
                if call.branches[index].state != BranchState::Cancelled {
                    call.branches[index].state = BranchState::Failed;
                }
                if call.final_sent {
                    return Ok(());
                }
                let better = call
                    .best
                    .as_ref()
                    .and_then(Message::code)
                    .is_none_or(|best| rank(code) < rank(best));
                if better {
                    call.best = Some(response.clone());
                }
                let global = (600..700).contains(&code);
                let done =
                    call.branches.iter().all(|b| !b.state.pending()) && call.woken.is_empty();
                if global || done {
                    // A 6xx from one device ends the call everywhere (RFC 3326 tells
                    // the other devices why).
                    let reason = global.then(|| {
                        let phrase = mqchat_sip::reason_phrase(code);
                        format!("SIP ;cause={code} ;text=\"{phrase}\"")
                    });
                    self.cancel_pending(call, reason.as_deref(), out);
                    let Some(best) = call.best.clone() else {
                        return Ok(());
                    };
                    call.final_sent = true;
                    self.route_response(&best, out);
                    let outcome = outcome_of(best.code().unwrap_or(500));
                    self.record(turn, &mut call.row, outcome)?;
                }
            }
        }
        Ok(())
    }

    /// Sends CANCEL on every branch still ringing, with a `Reason` (RFC 3326) when the
    /// call ended elsewhere: devices tell "answered on another device" from the caller
    /// giving up.
    fn cancel_pending(&self, call: &mut CallState, reason: Option<&str>, out: &mut Output) {
        for branch in &mut call.branches {
            if branch.state.pending() {
                if let Some(mut cancel) = branch_request(&branch.request, Method::Cancel, None) {
                    if let Some(reason) = reason {
                        cancel.headers.push("Reason", reason);
                    }
                    self.emit(&branch.hop, &cancel, out);
                }
                branch.state = BranchState::Cancelled;
            }
        }
        call.woken.clear();
    }

    /// A CANCEL (RFC 3261 9.2, 16.10).
    pub(super) fn cancel_in(
        &mut self,
        turn: &mut Turn<'_, '_>,
        cancel: &Message,
    ) -> Result<(), StoreError> {
        let out = &mut *turn.out;
        let branch_of = |m: &Message| m.top_via().and_then(|v| v.branch().map(str::to_owned));
        let call_id = cancel.call_id().unwrap_or_default().to_owned();
        let matches = self
            .proxy
            .calls
            .get(&call_id)
            .is_some_and(|c| branch_of(&c.invite) == branch_of(cancel));
        if !matches {
            self.respond(cancel, 481, out);
            return Ok(());
        }
        self.respond(cancel, 200, out);
        let Some(mut call) = self.proxy.calls.remove(&call_id) else {
            return Ok(());
        };
        if call.final_sent {
            self.proxy.calls.insert(call_id, call);
            return Ok(());
        }
        self.cancel_pending(&mut call, None, out);
        call.final_sent = true;
        let invite = call.invite.clone();
        self.respond(&invite, 487, out);
        let outcome = if call.row.rang {
            CallOutcome::Missed
        } else {
            CallOutcome::Cancelled
        };
        self.record(turn, &mut call.row, outcome)?;
        self.forget(call, turn.now.at);
        Ok(())
    }

    /// A BYE passing the hub ends an answered call.
    pub(super) fn bye_seen(
        &mut self,
        turn: &mut Turn<'_, '_>,
        bye: &Message,
    ) -> Result<(), StoreError> {
        let call_id = bye.call_id().unwrap_or_default().to_owned();
        let answered = self
            .proxy
            .calls
            .get(&call_id)
            .is_some_and(|c| c.row.answered.is_some());
        if !answered {
            return Ok(());
        }
        if let Some(mut call) = self.proxy.calls.remove(&call_id) {
            self.record(turn, &mut call.row, CallOutcome::Answered)?;
            self.forget(call, turn.now.at);
        }
        Ok(())
    }

    /// Drops a finished call, keeping its branches a while to absorb late answers.
    fn forget(&mut self, call: CallState, now: Moment) {
        for branch in call.branches {
            self.proxy.branches.remove(&branch.id);
            self.proxy
                .ended
                .insert(branch.id, (branch.request, branch.hop, now + LINGER));
        }
    }

    /// Ringing timeouts, late forks, calls without BYE for too long, and old branches.
    pub(super) fn tick_calls(&mut self, turn: &mut Turn<'_, '_>) -> Result<(), StoreError> {
        let now = turn.now.at;
        self.proxy.ended.retain(|_, (_, _, until)| *until > now);
        let ids: Vec<String> = self.proxy.calls.keys().cloned().collect();
        for call_id in ids {
            let Some(mut call) = self.proxy.calls.remove(&call_id) else {
                continue;
            };
            if !call.final_sent && now >= call.deadline {
                tracing::info!(call_id, "call rang out");
                self.cancel_pending(&mut call, None, turn.out);
                call.final_sent = true;
                let invite = call.invite.clone();
                self.respond(&invite, 480, turn.out);
                self.record(turn, &mut call.row, CallOutcome::Missed)?;
            } else if call.answered_at.is_some_and(|t| now >= t + MAX_CALL) {
                self.record(turn, &mut call.row, CallOutcome::Answered)?;
            } else if !call.woken.is_empty()
                && let Callee::User(user, _) = call.callee.clone()
            {
                let connected = turn.tx.connected_devices(&user)?;
                let (awake, asleep): (Vec<DeviceId>, Vec<DeviceId>) =
                    call.woken.drain(..).partition(|d| connected.contains(d));
                call.woken = asleep;
                for device in awake {
                    if let Some(sip) = self.sip() {
                        let hop = Hop::Device(mqchat_proto::DeviceIdentity::new(
                            user.clone(),
                            device.clone(),
                        ));
                        let gruu = self.gruu(&sip, &user, &device);
                        self.fork(&mut call, hop, Some(device), gruu);
                        if let Some(branch) = call.branches.last() {
                            self.emit(&branch.hop, &branch.request, turn.out);
                        }
                    }
                }
            }
            if call.row.ended.is_none() {
                self.proxy.calls.insert(call_id, call);
            } else {
                self.forget(call, now);
            }
        }
        Ok(())
    }

    /// Records the calls a previous run left unfinished (spec 19, Dialogs).
    pub(super) fn recover_calls(&self, turn: &mut Turn<'_, '_>) -> Result<(), StoreError> {
        for mut row in turn.tx.unfinished_calls()? {
            if self.proxy.calls.contains_key(&row.call_id) {
                continue;
            }
            let outcome = if row.answered.is_some() {
                CallOutcome::Answered
            } else {
                CallOutcome::Missed
            };
            tracing::info!(
                call_id = row.call_id,
                "recording a call interrupted by a restart"
            );
            self.record(turn, &mut row, outcome)?;
        }
        Ok(())
    }

    /// Appends the `call` event to the conversation of caller and callee and delivers it.
    pub(super) fn record(
        &self,
        turn: &mut Turn<'_, '_>,
        row: &mut CallRow,
        outcome: CallOutcome,
    ) -> Result<(), StoreError> {
        let (tx, now) = (&mut *turn.tx, turn.now.wall.unix_ms());
        row.ended = Some(now);
        row.outcome = Some(outcome as u8);
        tx.update_call(row)?;
        let conv = match (&row.caller, &row.callee) {
            (Author::User(a), Author::User(b)) => tx.direct(a, b, true)?,
            (Author::User(user), Author::Sip(address))
            | (Author::Sip(address), Author::User(user)) => {
                tx.sip_conversation(user, address, true)?
            }
            (Author::Sip(_), Author::Sip(_)) => None,
        };
        let Some(conv) = conv else {
            return Ok(());
        };
        let answered = if outcome == CallOutcome::Answered {
            row.answered
        } else {
            None
        };
        let record = Call {
            call_id: {
                let mut id = row.call_id.clone();
                id.truncate(id.floor_char_boundary(mqchat_proto::body::CALL_ID_BYTES));
                id
            },
            outcome,
            started: row.started,
            answered,
            ended: now,
            duration: answered.map(|t| now.saturating_sub(t)),
            answered_by: answered
                .and(row.answered_by.as_deref())
                .and_then(|d| DeviceId::parse(d).ok()),
            media: row.media.clone(),
        };
        let device = DeviceId::parse(&row.caller_device)
            .or_else(|_| DeviceId::parse("hub"))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let seq = tx.append_by(
            conv.id,
            now,
            &row.caller,
            &device,
            None,
            PacketKind::CALL,
            &record.to_packet().encode(),
            outcome != CallOutcome::Missed,
        )?;
        tracing::info!(
            call_id = row.call_id,
            outcome = outcome.name(),
            "call recorded"
        );
        self.deliver(tx, conv.id, seq, None, turn.out)
    }
}

/// The canonical SIP address of a URI (spec section 2), if it has one.
pub(crate) fn canonical(uri: &Uri) -> Option<SipAddress> {
    let mut text = uri.address();
    if let Some(port) = uri.port.filter(|p| *p != 5060) {
        text.push_str(&format!(":{port}"));
    }
    SipAddress::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_response_ranking() {
        let best = |codes: &[u16]| {
            let mut best: Option<u16> = None;
            for &c in codes {
                if best.is_none_or(|b| rank(c) < rank(b)) {
                    best = Some(c);
                }
            }
            best
        };
        assert_eq!(best(&[480, 603, 486]), Some(603));
        assert_eq!(best(&[480, 486]), Some(486));
        assert_eq!(best(&[408, 480]), Some(480));
        assert_eq!(best(&[500, 404]), Some(404));
        assert_eq!(best(&[404, 480]), Some(404));
        assert_eq!(best(&[503]), Some(503));
    }

    #[test]
    fn media_kinds() {
        let sdp = b"v=0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\nm=audio 1 x\r\n";
        assert_eq!(sdp_media(sdp), vec!["audio", "video"]);
        assert!(sdp_media(b"").is_empty());
    }

    #[test]
    fn canonical_addresses() {
        let check = |uri: &str, expected: Option<&str>| {
            let uri = Uri::parse(uri).expect("uri");
            assert_eq!(canonical(&uri).map(|a| a.to_string()).as_deref(), expected);
        };
        check(
            "sip:carol@Example.NET;transport=udp",
            Some("sip:carol@example.net"),
        );
        check("sip:carol@192.0.2.1:5060", Some("sip:carol@192.0.2.1"));
        check("sip:carol@192.0.2.1:5070", Some("sip:carol@192.0.2.1:5070"));
        check("sip:example.net", None);
    }
}
