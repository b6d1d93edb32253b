//! Calls in the session (spec 7.14): the application's call commands go to the SIP user
//! agent ([`crate::ua`]), whose messages travel as `sip` packets: upstream to the hub, and
//! back on the device's reply topic.

use mqchat_proto::Body;
use mqchat_proto::body::Sip;

use super::{Now, Output, Qos, Session};
use crate::call::{Call, CallTarget, Rejection};
use crate::error::Error;
use crate::ua::UaOutput;

impl Session {
    /// Places a call to `target` (a user id or a `sip:` URI) with the SDP offer `sdp`.
    pub fn call(&mut self, target: &CallTarget, sdp: &str, now: Now) -> Result<Call, Error> {
        self.check_open()?;
        let call = self.calls.call(target, sdp, now.at);
        self.pump_calls();
        call
    }

    /// Answers an incoming call with the SDP answer `sdp`.
    pub fn answer_call(&mut self, call: &Call, sdp: &str, now: Now) -> Result<(), Error> {
        self.check_open()?;
        let done = self.calls.answer(call, sdp, now.at);
        self.pump_calls();
        done
    }

    /// Refuses an incoming call.
    pub fn reject_call(&mut self, call: &Call, why: Rejection, now: Now) -> Result<(), Error> {
        self.check_open()?;
        let done = self.calls.reject(call, why, now.at);
        self.pump_calls();
        done
    }

    /// Hangs up a call.
    pub fn hangup(&mut self, call: &Call, now: Now) -> Result<(), Error> {
        self.check_open()?;
        let done = self.calls.hangup(call, now.at);
        self.pump_calls();
        done
    }

    /// The calls under way.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.live_calls()
    }

    /// A `sip` packet from the hub, on the reply topic.
    pub(super) fn on_sip(&mut self, packet: &mqchat_proto::Packet, now: Now) {
        match Sip::from_packet(packet) {
            Ok(sip) => self.calls.handle(&sip.message, now.at),
            Err(e) => tracing::warn!("skipping a sip packet that does not fit its type: {e}"),
        }
        self.pump_calls();
    }

    /// Moves what the user agent produced out: its messages upstream (while offline they
    /// are dropped: the user agent sends again what matters after the reconnect), its
    /// events to the application.
    pub(super) fn pump_calls(&mut self) {
        while let Some(output) = self.calls.poll() {
            match output {
                UaOutput::Send(text) => {
                    if self.connected {
                        let payload = Sip::new(text).to_packet().encode();
                        self.publish_upstream(payload, Qos::AtLeastOnce);
                    }
                }
                UaOutput::Event(event) => self.out.push_back(Output::Event(*event)),
            }
        }
    }
}
