//! The MQTT connection: one task that owns rumqttc's `EventLoop` and does nothing but poll it.
//!
//! rumqttc makes no progress unless its event loop is polled, and `poll` is not safe to
//! cancel mid-way (a half-written packet), so it runs alone in this task and is never raced
//! against other work. What it sees goes to the session task as [`NetEvent`]s. After a
//! connection error it waits a backoff delay and polls again, which reconnects. Once it has
//! written a DISCONNECT it returns at once, dropping the event loop: nothing more is read or
//! acknowledged on that socket (a broker that keeps delivering after DISCONNECT would
//! otherwise have its messages acknowledged and lost, see `REFERENCE.md`).

use std::sync::Arc;

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
    let mut aliases = TopicAliases::default();
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
                aliases.clear();
                NetEvent::Connected {
                    session_present: ack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
                let Some(topic) = aliases.resolve(publish.topic, alias) else {
                    // rumqttc reports the protocol error and reconnects.
                    tracing::warn!(alias, "the broker used a topic alias it never set");
                    continue;
                };
                NetEvent::Publish {
                    topic,
                    payload: publish.payload,
                }
            }
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
                let error = classify(e);
                let reason = error.explain();
                let _ = events.send(NetEvent::Lost { error, first });
                if first {
                    break;
                }
                let delay = backoff.next(rand::random());
                tracing::debug!(?delay, "reconnecting after: {reason}");
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

/// The broker's MQTT 5 topic aliases on the current connection (spec section 3). rumqttc
/// reports an incoming PUBLISH before it resolves its alias, so the SDK keeps its own map.
#[derive(Debug, Default)]
struct TopicAliases(std::collections::HashMap<u16, bytes::Bytes>);

impl TopicAliases {
    /// Forgets every alias (a new connection starts without any).
    fn clear(&mut self) {
        self.0.clear();
    }

    /// The topic of a PUBLISH: its own, recorded under its alias if it has one, or the one
    /// its alias stands for. `None` for an alias never set on this connection.
    fn resolve(&mut self, topic: bytes::Bytes, alias: Option<u16>) -> Option<bytes::Bytes> {
        match alias {
            None => Some(topic),
            Some(alias) if topic.is_empty() => self.0.get(&alias).cloned(),
            Some(alias) => {
                // A copy: the topic is a slice of the read buffer, which it would keep alive.
                self.0.insert(alias, bytes::Bytes::copy_from_slice(&topic));
                Some(topic)
            }
        }
    }
}

/// What a connection error means for the application.
fn classify(error: ConnectionError) -> Error {
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
            let mut reason = format!("the broker refused the connection: {code:?}");
            if code == ConnectReturnCode::NotAuthorized {
                // The password was right, something else was not (spec section 3).
                reason.push_str(
                    " (a client id other than {user}:{device}, a disabled account, a revoked \
                     device, a new device beyond the user's limit, too many failed logins \
                     from this address or on this user (wait a minute), or a will outside the \
                     device's topics: a wrong topic root?)",
                );
            }
            if auth {
                Error::new(Kind::Auth(reason))
            } else {
                Error::unreachable(Some(reason), None)
            }
        }
        other => Error::unreachable(None, Some(Arc::new(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified() {
        let refused = |code| classify(ConnectionError::ConnectionRefused(code));
        assert!(refused(ConnectReturnCode::BadUserNamePassword).is_auth());
        assert!(refused(ConnectReturnCode::NotAuthorized).is_auth());
        assert!(refused(ConnectReturnCode::ServerUnavailable).is_unreachable());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(classify(ConnectionError::Io(io)).is_unreachable());
    }

    #[test]
    fn topic_aliases_are_set_used_replaced_and_forgotten() {
        let mut aliases = TopicAliases::default();
        let topic = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());
        assert_eq!(
            aliases.resolve(topic("mq/in/bob/d"), None),
            Some(topic("mq/in/bob/d"))
        );
        assert_eq!(aliases.resolve(topic(""), Some(1)), None, "never set");
        assert_eq!(
            aliases.resolve(topic("mq/in/bob/d"), Some(1)),
            Some(topic("mq/in/bob/d"))
        );
        assert_eq!(
            aliases.resolve(topic(""), Some(1)),
            Some(topic("mq/in/bob/d"))
        );
        aliases.resolve(topic("mq/pr/alice/phone"), Some(1));
        assert_eq!(
            aliases.resolve(topic(""), Some(1)),
            Some(topic("mq/pr/alice/phone"))
        );
        aliases.clear();
        assert_eq!(
            aliases.resolve(topic(""), Some(1)),
            None,
            "a new connection"
        );
    }
}
