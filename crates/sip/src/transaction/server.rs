//! Server transactions: INVITE (RFC 3261 17.2.1 with RFC 6026's Accepted state) and
//! non-INVITE (17.2.2).

use std::time::Duration;

use super::Action;
use super::timers::{Running, Timer, Timing};
use crate::message::Message;
use crate::method::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE only: no response sent yet.
    Trying,
    Proceeding,
    /// INVITE only: a 2xx was sent (RFC 6026).
    Accepted,
    Completed,
    /// INVITE only: the ACK of a failure response arrived.
    Confirmed,
    Terminated,
}

/// What happens to a server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The request arrived again (a retransmission), or an ACK matched the transaction.
    Request(Message),
    /// The transaction user answers.
    Respond(Message),
    /// The time given by [`ServerTransaction::next_timeout`] has come.
    Timer,
    /// The transport could not send a response.
    TransportError,
}

/// A server transaction: absorbs retransmitted requests (answering them with the last
/// response), retransmits failure responses to INVITE until the ACK, and times out.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    request: Message,
    invite: bool,
    reliable: bool,
    timing: Timing,
    state: ServerState,
    timers: Running,
    last_response: Option<Message>,
}

impl ServerTransaction {
    /// Creates the transaction for a new request. An INVITE is answered with 100 Trying at
    /// once (RFC 3261 17.2.1 allows the user 200 ms; answering at once stops the client's
    /// retransmissions early).
    pub fn start(
        request: Message,
        reliable: bool,
        timing: Timing,
    ) -> (ServerTransaction, Vec<Action>) {
        let invite = request.method() == Some(&Method::Invite);
        let mut actions = Vec::new();
        let mut t = ServerTransaction {
            request,
            invite,
            reliable,
            timing,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            timers: Running::default(),
            last_response: None,
        };
        if invite {
            let trying = Message::response(&t.request, 100, "Trying");
            actions.push(Action::Send(trying.clone()));
            t.last_response = Some(trying);
        }
        (t, actions)
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn request(&self) -> &Message {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// When the owner must hand the machine [`ServerEvent::Timer`].
    pub fn next_timeout(&self) -> Option<Duration> {
        self.timers.next_deadline()
    }

    pub fn handle(&mut self, event: ServerEvent, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            ServerEvent::Request(request) => self.on_request(request, now, &mut actions),
            ServerEvent::Respond(response) => self.on_respond(response, now, &mut actions),
            ServerEvent::Timer => {
                while let Some((timer, interval)) = self.timers.pop_due(now) {
                    self.on_timer(timer, interval, now, &mut actions);
                }
            }
            ServerEvent::TransportError => {
                if self.state != ServerState::Terminated {
                    actions.push(Action::TransportFailed);
                    self.terminate(&mut actions);
                }
            }
        }
        actions
    }

    fn on_request(&mut self, request: Message, now: Duration, actions: &mut Vec<Action>) {
        let is_ack = request.method() == Some(&Method::Ack);
        match self.state {
            ServerState::Completed if self.invite && is_ack => {
                self.timers.clear();
                self.state = ServerState::Confirmed;
                if self.reliable {
                    self.terminate(actions);
                } else {
                    self.timers.start(Timer::I, now, self.timing.t4);
                }
            }
            // The ACK of a 2xx matched by branch (a peer reusing the INVITE's branch): the
            // user's (RFC 6026 7.1).
            ServerState::Accepted if is_ack => actions.push(Action::Deliver(request)),
            ServerState::Proceeding | ServerState::Completed if !is_ack => {
                if let Some(last) = &self.last_response {
                    actions.push(Action::Send(last.clone()));
                }
            }
            // Trying (no response yet), Accepted (the user retransmits its 2xx), Confirmed
            // and Terminated absorb everything.
            _ => {}
        }
    }

    fn on_respond(&mut self, response: Message, now: Duration, actions: &mut Vec<Action>) {
        let Some(code) = response.code() else {
            return;
        };
        match (self.state, code) {
            (ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                self.state = ServerState::Proceeding;
                self.last_response = Some(response.clone());
                actions.push(Action::Send(response));
            }
            (ServerState::Proceeding, 200..=299) if self.invite => {
                self.state = ServerState::Accepted;
                self.last_response = Some(response.clone());
                actions.push(Action::Send(response));
                self.timers.start(Timer::L, now, self.timing.timeout());
            }
            (ServerState::Accepted, 200..=299) => {
                // The user's own 2xx retransmissions (RFC 3261 13.3.1.4).
                actions.push(Action::Send(response));
            }
            (ServerState::Proceeding, 300..=699) if self.invite => {
                self.state = ServerState::Completed;
                self.last_response = Some(response.clone());
                actions.push(Action::Send(response));
                if !self.reliable {
                    self.timers.start(Timer::G, now, self.timing.t1);
                }
                self.timers.start(Timer::H, now, self.timing.timeout());
            }
            (ServerState::Trying | ServerState::Proceeding, 200..=699) => {
                self.state = ServerState::Completed;
                self.last_response = Some(response.clone());
                actions.push(Action::Send(response));
                if self.reliable {
                    self.terminate(actions);
                } else {
                    self.timers.start(Timer::J, now, self.timing.timeout());
                }
            }
            // A response after the final one is a user error: ignored.
            _ => {}
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
            Timer::G if self.state == ServerState::Completed => {
                if let Some(last) = &self.last_response {
                    actions.push(Action::Send(last.clone()));
                }
                self.timers
                    .start(Timer::G, now, (interval * 2).min(self.timing.t2));
            }
            Timer::H => {
                actions.push(Action::TimedOut);
                self.terminate(actions);
            }
            Timer::I | Timer::J | Timer::L => self.terminate(actions),
            _ => {}
        }
    }

    fn terminate(&mut self, actions: &mut Vec<Action>) {
        self.timers.clear();
        self.state = ServerState::Terminated;
        actions.push(Action::Terminated);
    }

    #[cfg(test)]
    pub(crate) fn timer_running(&self, timer: Timer) -> bool {
        self.timers.is_running(timer)
    }
}
