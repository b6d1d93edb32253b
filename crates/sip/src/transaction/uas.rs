//! Retransmitting a 2xx to INVITE over an unreliable transport until the ACK arrives (RFC
//! 3261 13.3.1.4): the UAS core's job, done by the gateway for the devices behind it.

use std::time::Duration;

use super::Timing;
use crate::message::Message;

/// Resends a 2xx at T1, 2·T1, ... capped at T2, until [`SuccessRetransmission::ack`] or
/// 64·T1 (then the call should be ended with a BYE).
#[derive(Debug, Clone)]
pub struct SuccessRetransmission {
    response: Message,
    timing: Timing,
    interval: Duration,
    next: Duration,
    give_up: Duration,
    done: bool,
}

/// What [`SuccessRetransmission::poll`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retransmit {
    /// Nothing due yet.
    Wait,
    /// Send the 2xx again.
    Send(Message),
    /// No ACK within 64·T1: give up (and end the dialog).
    GaveUp,
    /// Already acknowledged or given up.
    Done,
}

impl SuccessRetransmission {
    /// Starts after the 2xx was first sent at `now`.
    pub fn start(response: Message, timing: Timing, now: Duration) -> SuccessRetransmission {
        SuccessRetransmission {
            response,
            timing,
            interval: timing.t1,
            next: now + timing.t1,
            give_up: now + timing.timeout(),
            done: false,
        }
    }

    /// When to call [`SuccessRetransmission::poll`] next.
    pub fn next_timeout(&self) -> Option<Duration> {
        (!self.done).then(|| self.next.min(self.give_up))
    }

    pub fn poll(&mut self, now: Duration) -> Retransmit {
        if self.done {
            return Retransmit::Done;
        }
        if now >= self.give_up {
            self.done = true;
            return Retransmit::GaveUp;
        }
        if now < self.next {
            return Retransmit::Wait;
        }
        self.interval = (self.interval * 2).min(self.timing.t2);
        self.next = now + self.interval;
        Retransmit::Send(self.response.clone())
    }

    /// The ACK arrived: stop.
    pub fn ack(&mut self) {
        self.done = true;
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn response(&self) -> &Message {
        &self.response
    }
}
