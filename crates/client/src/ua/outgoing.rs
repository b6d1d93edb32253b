//! A call this device places: the INVITE client transaction and the UAC core (RFC 3261
//! sections 13.2, 17.1.1, 9.1), with the forks of a call to a user with several devices:
//! the first 2xx makes the call, a 2xx from another fork is acknowledged and hung up
//! (13.2.2.4).

use std::collections::HashMap;

use mqchat_proto::Moment;
use mqchat_sip::{IdGen, Message, Method};

use super::dialog::{self, Dialog, Local};
use super::{DialogRequest, LINGER, RING_LIMIT, TRANSACTION_TIMEOUT};
use crate::call::{Call, EndReason};
use crate::error::Error;
use crate::event::Event;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The INVITE is out; no provisional response yet.
    Calling,
    /// A provisional response came (the hub's 100, a device's 180).
    Ringing,
    /// A 2xx came and was acknowledged: the call is on.
    Answered,
    /// This side cancelled (or gave up); waiting for the INVITE's final response.
    Cancelled,
    /// Over; remembered for a while to absorb retransmissions.
    Ended,
}

/// What a response to the INVITE makes this side do.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Messages to send (ACKs).
    pub send: Vec<Message>,
    /// Requests to send and wait for (a BYE to an extra fork).
    pub requests: Vec<Message>,
    /// Events for the application.
    pub events: Vec<Event>,
}

/// What a deadline that passed means.
#[derive(Debug)]
pub(super) enum Timeout {
    /// Nothing.
    Nothing,
    /// The call is over and may be forgotten.
    Forget,
    /// No answer in time: the call is given up with this CANCEL.
    GiveUp { call: Call, cancel: Box<Message> },
}

/// One call placed by this device.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub call: Call,
    invite: Message,
    pub branch: String,
    phase: Phase,
    pub deadline: Option<Moment>,
    responded: bool,
    told_ringing: bool,
    dialog: Option<Dialog>,
    ack: Option<Message>,
    answered_at: Option<Moment>,
    /// 2xx answers of other forks, acknowledged and hung up, by To tag: the ACK to send
    /// again if one comes again.
    others: HashMap<String, Message>,
}

impl Outgoing {
    pub fn new(call: Call, invite: Message, branch: String, now: Moment) -> Self {
        Self {
            call,
            invite,
            branch,
            phase: Phase::Calling,
            deadline: Some(now + TRANSACTION_TIMEOUT),
            responded: false,
            told_ringing: false,
            dialog: None,
            ack: None,
            answered_at: None,
            others: HashMap::new(),
        }
    }

    /// The INVITE as sent.
    #[cfg(test)]
    pub fn invite(&self) -> &Message {
        &self.invite
    }

    /// Not ended as far as the application knows.
    pub fn is_live(&self) -> bool {
        matches!(
            self.phase,
            Phase::Calling | Phase::Ringing | Phase::Answered
        )
    }

    fn linger(&mut self, now: Moment) {
        self.phase = Phase::Ended;
        self.deadline = Some(now + LINGER);
    }

    /// The application hangs up: CANCEL before the answer, BYE after.
    pub fn hangup(
        &mut self,
        me: &Local,
        ids: &mut IdGen,
        now: Moment,
    ) -> Result<(Message, EndReason), Error> {
        match self.phase {
            Phase::Calling | Phase::Ringing => {
                self.phase = Phase::Cancelled;
                self.deadline = Some(now + TRANSACTION_TIMEOUT);
                Ok((
                    dialog::cancel(&self.invite),
                    EndReason::Cancelled { local: true },
                ))
            }
            Phase::Answered => {
                let Some(dialog) = self.dialog.as_mut() else {
                    return Err(Error::invalid("the call has no dialog"));
                };
                let bye = dialog.request(Method::Bye, me, &ids.branch());
                self.linger(now);
                Ok((bye, EndReason::HungUp { local: true }))
            }
            Phase::Cancelled | Phase::Ended => {
                Err(Error::invalid(format!("call {} has ended", self.call)))
            }
        }
    }

    /// A response to the INVITE.
    pub fn response(
        &mut self,
        response: &Message,
        me: &Local,
        ids: &mut IdGen,
        now: Moment,
    ) -> Effects {
        let mut effects = Effects::default();
        let Some(code) = response.code() else {
            return effects;
        };
        self.responded = true;
        match code {
            100..=199 => {
                if matches!(self.phase, Phase::Calling | Phase::Ringing) {
                    self.phase = Phase::Ringing;
                    self.deadline = Some(now + RING_LIMIT);
                    if code != 100 && !self.told_ringing {
                        self.told_ringing = true;
                        effects.events.push(Event::CallRinging {
                            call: self.call.clone(),
                        });
                    }
                }
            }
            200..=299 => self.answered(response, me, ids, now, &mut effects),
            _ => {
                effects
                    .send
                    .push(dialog::ack_failure(&self.invite, response));
                match self.phase {
                    Phase::Calling | Phase::Ringing => {
                        self.linger(now);
                        let reason = match code {
                            486 | 600 => EndReason::Busy { local: false },
                            603 => EndReason::Declined { local: false },
                            _ => EndReason::Failed {
                                code,
                                reason: reason_of(response),
                            },
                        };
                        effects.events.push(Event::CallEnded {
                            call: self.call.clone(),
                            reason,
                        });
                    }
                    Phase::Cancelled => self.linger(now),
                    Phase::Answered | Phase::Ended => {}
                }
            }
        }
        effects
    }

    fn answered(
        &mut self,
        response: &Message,
        me: &Local,
        ids: &mut IdGen,
        now: Moment,
        effects: &mut Effects,
    ) {
        let Some(tag) = response.to().and_then(|to| to.tag().map(str::to_owned)) else {
            tracing::warn!(call = %self.call, "dropping a 2xx without a To tag");
            return;
        };
        // A retransmission of a 2xx already acknowledged gets the same ACK.
        if self.dialog.as_ref().is_some_and(|d| d.remote_tag() == tag) {
            effects.send.extend(self.ack.clone());
            return;
        }
        if let Some(ack) = self.others.get(&tag) {
            effects.send.push(ack.clone());
            return;
        }
        let Some(mut dialog) = Dialog::from_answer(&self.invite, response) else {
            tracing::warn!(call = %self.call, "dropping a 2xx that makes no dialog");
            return;
        };
        let invite_seq = self.invite.cseq().map_or(1, |c| c.seq);
        let ack = dialog.ack(invite_seq, me, &ids.branch());
        effects.send.push(ack.clone());
        let sdp = (response.content_type().as_deref() == Some("application/sdp"))
            .then(|| String::from_utf8(response.body.clone()).ok())
            .flatten()
            .filter(|sdp| !sdp.trim().is_empty());
        match sdp {
            Some(sdp) if matches!(self.phase, Phase::Calling | Phase::Ringing) => {
                self.phase = Phase::Answered;
                self.deadline = None;
                self.answered_at = Some(now);
                self.dialog = Some(dialog);
                self.ack = Some(ack);
                effects.events.push(Event::CallAnswered {
                    call: self.call.clone(),
                    sdp,
                });
            }
            sdp => {
                // Another fork answered too, or this side had given up, or the answer has
                // no SDP for the offer: acknowledge, then hang up that dialog.
                effects
                    .requests
                    .push(dialog.request(Method::Bye, me, &ids.branch()));
                self.others.insert(tag, ack);
                if sdp.is_none() && matches!(self.phase, Phase::Calling | Phase::Ringing) {
                    self.linger(now);
                    effects.events.push(Event::CallEnded {
                        call: self.call.clone(),
                        reason: EndReason::Failed {
                            code: 488,
                            reason: "the answer carried no SDP".into(),
                        },
                    });
                }
            }
        }
    }

    /// An OPTIONS inside the call, if it is on.
    pub fn probe(&mut self, me: &Local, ids: &mut IdGen) -> Option<(Call, Message)> {
        if self.phase != Phase::Answered {
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
    ) -> Option<DialogRequest> {
        let dialog = self.dialog.as_mut()?;
        if dialog.local_tag() != local_tag || dialog.remote_tag() != remote_tag {
            return None;
        }
        // An ended call's dialog is gone for everything but a BYE that crossed this side's.
        if self.phase == Phase::Ended && *method != Method::Bye {
            return None;
        }
        if dialog.remote_cseq.is_some_and(|last| seq <= last) {
            return Some(DialogRequest::OutOfOrder);
        }
        dialog.remote_cseq = Some(seq);
        let mut ended = None;
        if *method == Method::Bye && self.phase == Phase::Answered {
            ended = Some(EndReason::HungUp { local: false });
            self.phase = Phase::Ended;
        }
        Some(DialogRequest::Accepted {
            call: self.call.clone(),
            ended,
            terminated: None,
        })
    }

    /// A deadline passed.
    pub fn timeout(&mut self, now: Moment) -> Timeout {
        match self.phase {
            Phase::Calling | Phase::Ringing => {
                // No final answer in time: cancel, in case the hub has the INVITE.
                self.phase = Phase::Cancelled;
                self.deadline = Some(now + TRANSACTION_TIMEOUT);
                Timeout::GiveUp {
                    call: self.call.clone(),
                    cancel: Box::new(dialog::cancel(&self.invite)),
                }
            }
            Phase::Cancelled | Phase::Ended => Timeout::Forget,
            Phase::Answered => {
                self.deadline = None;
                Timeout::Nothing
            }
        }
    }

    /// What to send again after a reconnect: the INVITE if nothing answered it, the ACK of
    /// a recent answer.
    pub fn unconfirmed(&self, now: Moment) -> Vec<Message> {
        match self.phase {
            Phase::Calling if !self.responded => vec![self.invite.clone()],
            Phase::Answered
                if self
                    .answered_at
                    .is_some_and(|at| now < at + TRANSACTION_TIMEOUT) =>
            {
                self.ack.iter().cloned().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The reason phrase of a response.
pub(super) fn reason_of(response: &Message) -> String {
    match &response.start {
        mqchat_sip::StartLine::Response { reason, .. } => reason.clone(),
        mqchat_sip::StartLine::Request { .. } => String::new(),
    }
}
