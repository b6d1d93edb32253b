//! The MQTT connection: one task that owns rumqttc's `EventLoop` and does nothing but poll it.
//!
//! rumqttc makes no progress unless its event loop is polled, and `poll` is not safe to
//! cancel mid-way (a half-written packet), so it runs alone in this task and is never raced
//! against other work. What it sees goes to the session task as [`NetEvent`]s. After a
//! connection error it waits a backoff delay and polls again, which reconnects. Once it has
//! written a DISCONNECT it returns at once, dropping the event loop: nothing more is read or
//! acknowledged on that socket (a broker that keeps delivering after DISCONNECT would
//! otherwise have its messages acknowledged and lost, see `REFERENCE.md`).

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{ConnectionError, Event, EventLoop};
use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;
use crate::error::{Error, Kind};

/// What happened on the connection.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// The broker accepted the connection.
    Connected {
        /// It kept the device's session.
        session_present: bool,
    },
    /// The connection failed or dropped; `first` when no connection ever succeeded (the
    /// task has stopped then).
    Lost {
        /// Why.
        error: Error,
        /// No connection had succeeded yet.
        first: bool,
    },
    /// A PUBLISH arrived.
    Publish {
        /// Its topic.
        topic: bytes::Bytes,
        /// Its payload.
        payload: bytes::Bytes,
    },
    /// A SUBSCRIBE went out with this packet id.
    SubscribeSent(u16),
    /// The broker answered a SUBSCRIBE.
    SubAck {
        /// The SUBSCRIBE's packet id.
        pkid: u16,
        /// Whether each filter was granted, in order.
        granted: Vec<bool>,
    },
    /// The DISCONNECT was written; the event loop is dropped.
    DisconnectSent,
}

/// Polls `eventloop` until told to stop, the DISCONNECT is written, or the first connection
/// fails.
pub(crate) async fn run(
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<NetEvent>,
    mut stop: oneshot::Receiver<()>,
    mut backoff: Backoff,
) {
    let mut connected_once = false;
    loop {
        let polled = tokio::select! {
            biased;
            _ = &mut stop => break,
            polled = eventloop.poll() => polled,
        };
        let event = match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected_once = true;
                backoff.reset();
                NetEvent::Connected {
                    session_present: ack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => NetEvent::Publish {
                topic: publish.topic,
                payload: publish.payload,
            },
            Ok(Event::Incoming(Packet::SubAck(ack))) => NetEvent::SubAck {
                pkid: ack.pkid,
                granted: ack
                    .return_codes
                    .iter()
                    .map(|code| matches!(code, SubscribeReasonCode::Success(_)))
                    .collect(),
            },
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if !matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ) {
                    tracing::warn!(reason = ?ack.reason, "the broker refused a publish");
                }
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => NetEvent::SubscribeSent(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = events.send(NetEvent::DisconnectSent);
                break;
            }
            Ok(_) => continue,
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                let first = !connected_once;
                let _ = events.send(NetEvent::Lost {
                    error: classify(&e),
                    first,
                });
                if first {
                    break;
                }
                let delay = backoff.next(rand::random());
                tracing::debug!(?delay, "reconnecting after: {e}");
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        if events.send(event).is_err() {
            break;
        }
    }
    // The event loop is dropped here, closing the socket.
}

/// What a connection error means for the application.
fn classify(error: &ConnectionError) -> Error {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            let auth = matches!(
                code,
                ConnectReturnCode::BadUserNamePassword
                    | ConnectReturnCode::NotAuthorized
                    | ConnectReturnCode::BadClientId
                    | ConnectReturnCode::ClientIdentifierNotValid
                    | ConnectReturnCode::Banned
                    | ConnectReturnCode::BadAuthenticationMethod
            );
            let reason = format!("the broker refused the connection: {code:?}");
            Error::new(if auth {
                Kind::Auth(reason)
            } else {
                Kind::Unreachable(reason)
            })
        }
        other => Error::new(Kind::Unreachable(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified() {
        let refused = |code| classify(&ConnectionError::ConnectionRefused(code));
        assert!(refused(ConnectReturnCode::BadUserNamePassword).is_auth());
        assert!(refused(ConnectReturnCode::NotAuthorized).is_auth());
        assert!(refused(ConnectReturnCode::ServerUnavailable).is_unreachable());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(classify(&ConnectionError::Io(io)).is_unreachable());
    }
}
