//! Client transactions: INVITE (RFC 3261 17.1.1 with RFC 6026's Accepted state) and
//! non-INVITE (17.1.2).

use std::time::Duration;

use super::Action;
use super::timers::{Running, Timer, Timing};
use crate::message::Message;
use crate::method::Method;

/// The states of both client machines (Calling is INVITE-only, Trying non-INVITE-only,
/// Accepted INVITE-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// What happens to a client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response matched to this transaction arrived.
    Response(Message),
    /// The time given by [`ClientTransaction::next_timeout`] has come.
    Timer,
    /// The transport could not send the request.
    TransportError,
}

/// A client transaction: sends a request, retransmits it over unreliable transports, and
/// passes the responses up.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    request: Message,
    invite: bool,
    reliable: bool,
    timing: Timing,
    state: ClientState,
    timers: Running,
    /// The ACK sent for a failure response, resent when the response is retransmitted.
    ack: Option<Message>,
}

impl ClientTransaction {
    /// Starts the transaction for `request`: the first action sends it. `reliable` is true
    /// for TCP, TLS and MQTT (no retransmissions).
    pub fn start(
        request: Message,
        reliable: bool,
        timing: Timing,
        now: Duration,
    ) -> (ClientTransaction, Vec<Action>) {
        let invite = request.method() == Some(&Method::Invite);
        let mut timers = Running::default();
        if invite {
            if !reliable {
                timers.start(Timer::A, now, timing.t1);
            }
            timers.start(Timer::B, now, timing.timeout());
        } else {
            if !reliable {
                timers.start(Timer::E, now, timing.t1);
            }
            timers.start(Timer::F, now, timing.timeout());
        }
        let actions = vec![Action::Send(request.clone())];
        let t = ClientTransaction {
            request,
            invite,
            reliable,
            timing,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            timers,
            ack: None,
        };
        (t, actions)
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn request(&self) -> &Message {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// When the owner must hand the machine [`ClientEvent::Timer`].
    pub fn next_timeout(&self) -> Option<Duration> {
        self.timers.next_deadline()
    }

    pub fn handle(&mut self, event: ClientEvent, now: Duration) -> Vec<Action> {
        match event {
            ClientEvent::Response(r) => self.on_response(r, now),
            ClientEvent::Timer => {
                let mut actions = Vec::new();
                while let Some((timer, interval)) = self.timers.pop_due(now) {
                    self.on_timer(timer, interval, now, &mut actions);
                }
                actions
            }
            ClientEvent::TransportError => match self.state {
                ClientState::Calling | ClientState::Trying | ClientState::Proceeding => {
                    let mut actions = vec![Action::TransportFailed];
                    self.terminate(&mut actions);
                    actions
                }
                _ => Vec::new(),
            },
        }
    }

    fn on_response(&mut self, response: Message, now: Duration) -> Vec<Action> {
        let Some(code) = response.code() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        match (self.state, code) {
            (ClientState::Calling | ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.timers.stop(Timer::A);
                if self.invite {
                    // Once a provisional arrives the INVITE waits for the final response as
                    // long as the user wants (RFC 3261 17.1.1.2): no Timer B.
                    self.timers.stop(Timer::B);
                } else if self.state == ClientState::Trying && !self.reliable {
                    // Proceeding retransmits every T2 (17.1.2.2).
                    self.timers.start(Timer::E, now, self.timing.t2);
                }
                self.state = ClientState::Proceeding;
                actions.push(Action::Deliver(response));
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) if self.invite => {
                self.timers.clear();
                self.state = ClientState::Accepted;
                self.timers.start(Timer::M, now, self.timing.timeout());
                actions.push(Action::Deliver(response));
            }
            (ClientState::Accepted, 200..=299) => {
                // Further 2xx (retransmitted or from another fork) go to the user, which
                // acknowledges each (RFC 6026).
                actions.push(Action::Deliver(response));
            }
            (ClientState::Calling | ClientState::Proceeding, 300..=699) if self.invite => {
                self.timers.clear();
                let ack = Message::ack_for(&self.request, &response);
                actions.push(Action::Send(ack.clone()));
                self.ack = Some(ack);
                actions.push(Action::Deliver(response));
                self.state = ClientState::Completed;
                self.start_or_fire(Timer::D, Duration::from_secs(32), now, &mut actions);
            }
            (ClientState::Completed, 300..=699) if self.invite => {
                if let Some(ack) = &self.ack {
                    actions.push(Action::Send(ack.clone()));
                }
            }
            (ClientState::Trying | ClientState::Proceeding, 200..=699) => {
                self.timers.clear();
                self.state = ClientState::Completed;
                actions.push(Action::Deliver(response));
                self.start_or_fire(Timer::K, self.timing.t4, now, &mut actions);
            }
            // Retransmitted responses in Completed (non-INVITE) and anything late is
            // absorbed.
            _ => {}
        }
        actions
    }

    /// Starts a wait timer, or ends the transaction at once over a reliable transport (whose
    /// wait is zero).
    fn start_or_fire(
        &mut self,
        timer: Timer,
        unreliable_wait: Duration,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        if self.reliable {
            self.terminate(actions);
        } else {
            self.timers.start(timer, now, unreliable_wait);
        }
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        interval: Duration,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        match timer {
            Timer::A if self.state == ClientState::Calling => {
                actions.push(Action::Send(self.request.clone()));
                self.timers.start(Timer::A, now, interval * 2);
            }
            Timer::E if matches!(self.state, ClientState::Trying | ClientState::Proceeding) => {
                actions.push(Action::Send(self.request.clone()));
                let next = if self.state == ClientState::Trying {
                    (interval * 2).min(self.timing.t2)
                } else {
                    self.timing.t2
                };
                self.timers.start(Timer::E, now, next);
            }
            Timer::B | Timer::F => {
                actions.push(Action::TimedOut);
                self.terminate(actions);
            }
            Timer::D | Timer::K | Timer::M => self.terminate(actions),
            _ => {}
        }
    }

    fn terminate(&mut self, actions: &mut Vec<Action>) {
        self.timers.clear();
        self.state = ClientState::Terminated;
        actions.push(Action::Terminated);
    }

    #[cfg(test)]
    pub(crate) fn timer_running(&self, timer: Timer) -> bool {
        self.timers.is_running(timer)
    }
}
