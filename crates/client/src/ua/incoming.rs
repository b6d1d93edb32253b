//! A call to this device: the INVITE server transaction and the UAS core (RFC 3261
//! sections 13.3, 17.2.1, 9.2, 15.1.2). The device rings (180), then answers (200 with the
//! application's SDP), refuses (486, 603) or is cancelled (487).

use std::time::Duration;

use mqchat_proto::Moment;
use mqchat_sip::{IdGen, Message, Method};

use super::dialog::{self, Dialog, Local};
use super::{DialogRequest, LINGER, MAX_MESSAGE, RING_LIMIT, TRANSACTION_TIMEOUT, caller};
use crate::call::{Call, EndReason};
use crate::error::Error;
use crate::event::Event;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// 180 sent; the application decides.
    Ringing,
    /// 200 sent; waiting for the ACK.
    Answered,
    /// The ACK came: the call is on.
    Confirmed,
    /// A final failure response was sent (refused, cancelled, expired).
    Refused,
    /// Over; remembered for a while to absorb retransmissions.
    Ended,
}

/// What a deadline that passed means.
#[derive(Debug)]
pub(super) enum Timeout {
    /// Nothing.
    Nothing,
    /// The call is over and may be forgotten.
    Forget,
    /// It rang too long: this final response turns it away.
    Expired { call: Call, response: Message },
    /// The caller never acknowledged the answer: the call ends with this BYE (RFC 3261
    /// 13.3.1.4). `told`: the application already heard that it ended.
    NoAck {
        call: Call,
        bye: Message,
        told: bool,
    },
}

/// One call to this device.
#[derive(Debug)]
pub(super) struct Incoming {
    pub call: Call,
    invite: Message,
    branch: String,
    pub(super) tag: String,
    phase: Phase,
    pub deadline: Option<Moment>,
    /// The INVITE's `Expires` set the deadline (then 487 ends it, else 480).
    expires: bool,
    /// The last response to the INVITE, sent again for a retransmitted INVITE.
    last: Message,
    /// The ACK of a final failure response came.
    acked: bool,
    pub(super) dialog: Option<Dialog>,
    remote_cseq: u32,
    /// The application hung up before the ACK: BYE once it comes (RFC 3261 15).
    bye_after_ack: bool,
}

impl Incoming {
    /// A new INVITE: the call rings (with the 180 to send and the event to tell), or is
    /// refused at once with the returned response.
    pub fn new(
        me: &Local,
        call_id: &str,
        invite: &Message,
        tag: String,
        now: Moment,
    ) -> Result<(Self, Message, Event), Box<Message>> {
        let refuse = |code: u16, warning: Option<&str>| {
            let mut response = Message::response(invite, code, "");
            response.set_to_tag(&tag);
            if let Some(text) = warning {
                response.insert_header("Warning", &format!("399 {} \"{text}\"", me.via_host()));
            }
            response
        };
        let required: Vec<&str> = invite.headers.get_all("Require").collect();
        if !required.is_empty() {
            let mut response = refuse(420, None);
            response.insert_header("Unsupported", &required.join(", "));
            return Err(Box::new(response));
        }
        let sdp = (invite.content_type().as_deref() == Some("application/sdp"))
            .then(|| String::from_utf8(invite.body.clone()).ok())
            .flatten()
            .filter(|sdp| sdp.trim_start().starts_with("v="));
        let Some(sdp) = sdp else {
            return Err(Box::new(refuse(
                488,
                Some("an INVITE must carry an SDP offer"),
            )));
        };
        let (Some(via), Some(cseq)) = (invite.top_via(), invite.cseq()) else {
            return Err(Box::new(refuse(400, None)));
        };
        let mut ringing = Message::response(invite, 180, "");
        ringing.set_to_tag(&tag);
        ringing.insert_header("Contact", &me.contact());
        let expires = invite
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .filter(|e| *e < RING_LIMIT);
        let call = Call::new(call_id, false);
        let (from, name, conv) = caller(me, invite);
        let event = Event::IncomingCall {
            call: call.clone(),
            from,
            name,
            conv,
            sdp,
        };
        let incoming = Self {
            call,
            invite: invite.clone(),
            branch: via.branch().unwrap_or("").to_owned(),
            tag,
            phase: Phase::Ringing,
            deadline: Some(now + expires.unwrap_or(RING_LIMIT)),
            expires: expires.is_some(),
            last: ringing.clone(),
            acked: false,
            dialog: None,
            remote_cseq: cseq.seq,
            bye_after_ack: false,
        };
        Ok((incoming, ringing, event))
    }

    pub fn is_ringing(&self) -> bool {
        self.phase == Phase::Ringing
    }

    /// Not ended as far as the application knows.
    pub fn is_live(&self) -> bool {
        match self.phase {
            Phase::Ringing | Phase::Confirmed => true,
            Phase::Answered => !self.bye_after_ack,
            Phase::Refused | Phase::Ended => false,
        }
    }

    /// The same INVITE again (the same branch).
    pub fn is_retransmission(&self, invite: &Message) -> bool {
        invite
            .top_via()
            .is_some_and(|v| v.branch() == Some(self.branch.as_str()))
    }

    pub fn last_response(&self) -> Message {
        self.last.clone()
    }

    fn linger(&mut self, now: Moment) {
        self.phase = Phase::Ended;
        self.deadline = Some(now + LINGER);
    }

    /// The application answers with `sdp`: the 200 to send.
    pub fn answer(&mut self, me: &Local, sdp: &str, now: Moment) -> Result<Message, Error> {
        let dialog = Dialog::from_invite(&self.invite, &self.tag)
            .ok_or_else(|| Error::invalid("the INVITE makes no dialog"))?;
        let mut ok = Message::response(&self.invite, 200, "");
        ok.set_to_tag(&self.tag);
        ok.insert_header("Contact", &me.contact());
        ok.insert_header("Allow", dialog::ALLOW);
        ok.insert_header("User-Agent", dialog::USER_AGENT);
        ok.set_body("application/sdp", sdp.as_bytes().to_vec());
        if ok.to_bytes().len() > MAX_MESSAGE {
            return Err(Error::invalid(format!(
                "the answer would exceed {MAX_MESSAGE} bytes: the SDP is too large"
            )));
        }
        self.dialog = Some(dialog);
        self.phase = Phase::Answered;
        self.deadline = Some(now + TRANSACTION_TIMEOUT);
        self.last = ok.clone();
        Ok(ok)
    }

    /// The application (or the device signing off) refuses with `code`: the response to
    /// send.
    pub fn refuse(&mut self, code: u16, now: Moment) -> Message {
        let mut response = Message::response(&self.invite, code, "");
        response.set_to_tag(&self.tag);
        response.insert_header("User-Agent", dialog::USER_AGENT);
        self.phase = Phase::Refused;
        self.deadline = Some(now + LINGER);
        self.last = response.clone();
        response
    }

    /// The application hangs up after answering: the BYE to send, or none yet when the
    /// ACK has not come (it goes once it does).
    pub fn hangup(
        &mut self,
        me: &Local,
        ids: &mut IdGen,
        now: Moment,
    ) -> Result<Option<Message>, Error> {
        match self.phase {
            Phase::Answered if !self.bye_after_ack => {
                self.bye_after_ack = true;
                Ok(None)
            }
            Phase::Confirmed => {
                let bye = self.bye(me, ids);
                self.linger(now);
                Ok(bye)
            }
            _ => Err(Error::invalid(format!("call {} has ended", self.call))),
        }
    }

    fn bye(&mut self, me: &Local, ids: &mut IdGen) -> Option<Message> {
        let dialog = self.dialog.as_mut()?;
        Some(dialog.request(Method::Bye, me, &ids.branch()))
    }

    /// An ACK for this call: the BYE to send when the application hung up meanwhile.
    pub fn acknowledged(
        &mut self,
        ack: &Message,
        me: &Local,
        ids: &mut IdGen,
        now: Moment,
    ) -> Option<Message> {
        match self.phase {
            Phase::Answered => {
                let invite_seq = self.invite.cseq().map(|c| c.seq);
                if ack.cseq().map(|c| c.seq) != invite_seq {
                    return None;
                }
                self.phase = Phase::Confirmed;
                self.deadline = None;
                if self.bye_after_ack {
                    let bye = self.bye(me, ids);
                    self.linger(now);
                    return bye;
                }
                None
            }
            Phase::Refused => {
                self.acked = true;
                None
            }
            _ => None,
        }
    }

    /// Whether `cancel` cancels this call's INVITE (RFC 3261 9.2: the same branch).
    pub fn is_cancelled_by(&self, cancel: &Message) -> bool {
        let same_branch = cancel
            .top_via()
            .is_some_and(|v| v.branch() == Some(self.branch.as_str()));
        let same_seq = cancel.cseq().map(|c| c.seq) == self.invite.cseq().map(|c| c.seq);
        same_branch && same_seq
    }

    /// The 200 to a CANCEL, with the tag of the INVITE's responses.
    pub fn cancel_ok(&self, cancel: &Message) -> Message {
        let mut ok = Message::response(cancel, 200, "");
        if cancel.to().is_some_and(|to| to.tag().is_none()) {
            ok.set_to_tag(&self.tag);
        }
        ok
    }

    /// Cancelled: the 487 to send when the call was still ringing.
    pub fn cancelled(&mut self, now: Moment) -> Option<Message> {
        if self.phase != Phase::Ringing {
            return None;
        }
        let mut terminated = Message::response(&self.invite, 487, "");
        terminated.set_to_tag(&self.tag);
        self.phase = Phase::Refused;
        self.deadline = Some(now + LINGER);
        self.last = terminated.clone();
        Some(terminated)
    }

    /// An OPTIONS inside the call, if it is on.
    pub fn probe(&mut self, me: &Local, ids: &mut IdGen) -> Option<(Call, Message)> {
        if self.phase != Phase::Confirmed {
            return None;
        }
        let dialog = self.dialog.as_mut()?;
        Some((
            self.call.clone(),
            dialog.request(Method::Options, me, &ids.branch()),
        ))
    }

    /// The other side no longer has the call: true if it was on.
    pub fn gone(&mut self, now: Moment) -> bool {
        let live = self.is_live();
        if live {
            self.linger(now);
        }
        live
    }

    /// A request inside the call's dialog (`None`: not this call's dialog).
    pub fn dialog_request(
        &mut self,
        local_tag: &str,
        remote_tag: &str,
        seq: u32,
        method: &Method,
        now: Moment,
    ) -> Option<DialogRequest> {
        let invite_tag = self.invite.from().and_then(|f| f.tag().map(str::to_owned));
        if local_tag != self.tag || invite_tag.as_deref() != Some(remote_tag) {
            return None;
        }
        // An ended call's dialog is gone for everything but a BYE that crossed this side's.
        if matches!(self.phase, Phase::Refused | Phase::Ended) && *method != Method::Bye {
            return None;
        }
        if seq <= self.remote_cseq {
            return Some(DialogRequest::OutOfOrder);
        }
        self.remote_cseq = seq;
        let mut ended = None;
        let mut terminated = None;
        if *method == Method::Bye {
            match self.phase {
                // A BYE on the early dialog: the caller gave up (RFC 3261 15.1.2).
                Phase::Ringing => {
                    terminated = self.cancelled(now).map(Box::new);
                    ended = Some(EndReason::Cancelled { local: false });
                }
                Phase::Answered | Phase::Confirmed => {
                    if !self.bye_after_ack {
                        ended = Some(EndReason::HungUp { local: false });
                    }
                    self.linger(now);
                }
                Phase::Refused | Phase::Ended => {}
            }
        }
        Some(DialogRequest::Accepted {
            call: self.call.clone(),
            ended,
            terminated,
        })
    }

    /// A deadline passed.
    pub fn timeout(&mut self, me: &Local, ids: &mut IdGen, now: Moment) -> Timeout {
        match self.phase {
            Phase::Ringing => {
                let code = if self.expires { 487 } else { 480 };
                let response = self.refuse(code, now);
                Timeout::Expired {
                    call: self.call.clone(),
                    response,
                }
            }
            Phase::Answered => {
                let told = self.bye_after_ack;
                let bye = self.bye(me, ids);
                self.linger(now);
                match bye {
                    Some(bye) => Timeout::NoAck {
                        call: self.call.clone(),
                        bye,
                        told,
                    },
                    None => Timeout::Forget,
                }
            }
            Phase::Refused | Phase::Ended => Timeout::Forget,
            Phase::Confirmed => {
                self.deadline = None;
                Timeout::Nothing
            }
        }
    }

    /// What to send again after a reconnect: the INVITE's last response while it waits
    /// for the application or for an ACK.
    pub fn unconfirmed(&self) -> Vec<Message> {
        match self.phase {
            Phase::Ringing | Phase::Answered => vec![self.last.clone()],
            Phase::Refused if !self.acked => vec![self.last.clone()],
            _ => Vec::new(),
        }
    }
}
