//! The application's handle on a connection ([`Client`]) and its stream of events
//! ([`Events`]).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mqchat_proto::body::{
    Body, Contact, ContactAction, History, HistoryResult, Message, Presence, Profile, State, Sync,
    SyncResult,
};
use mqchat_proto::{ConversationRef, DeviceId, DeviceIdentity, Packet, UserId};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClientConfig;
use crate::driver::{self, Command, FinalState, Reply};
use crate::error::Error;
use crate::event::{Event, Sent};
use crate::session::Answer;
use crate::state::SyncState;

/// A connected device. Cheap to clone; every clone talks over the same connection.
///
/// The connection lives until [`Client::close`] is called or every clone is dropped; either
/// way it says goodbye properly (presence offline, then MQTT DISCONNECT). While it is down the
/// client reconnects by itself, and events sent meanwhile go out on the next connection.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    identity: DeviceIdentity,
    final_state: FinalState,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("identity", &self.shared.identity)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects. The first connection must succeed: a refused login fails with
    /// [`Error::is_auth`], a broker that cannot be reached with [`Error::is_unreachable`].
    /// Returns once the device is subscribed and its presence published; later drops are
    /// reconnected with backoff.
    ///
    /// Must be called within a tokio runtime: the client runs two tasks on it.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), Error> {
        let identity = config.identity.clone();
        let final_state = Arc::new(Mutex::new(None));
        let (commands, events) = driver::start(config, final_state.clone()).await?;
        let client = Client {
            shared: Arc::new(Shared {
                commands,
                identity,
                final_state,
            }),
        };
        Ok((client, Events { events }))
    }

    /// The user this device belongs to.
    pub fn user(&self) -> &UserId {
        &self.shared.identity.user
    }

    /// This device.
    pub fn device(&self) -> &DeviceId {
        &self.shared.identity.device
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(command(reply))
            .map_err(|_| Error::closed())?;
        answer.await.map_err(|_| Error::closed())?
    }

    async fn answer(
        &self,
        command: impl FnOnce(Reply<Answer>) -> Command,
    ) -> Result<Answer, Error> {
        self.call(command).await
    }

    /// Sends a text message. Resolves when the hub has stored it (the "sent" receipt), with
    /// its sequence number; fails if the hub refuses it ([`Error::refused`]). While offline
    /// it waits for the connection; wrap it in a timeout to wait less (the message is still
    /// sent when the connection returns).
    pub async fn send(&self, conv: ConversationRef, message: Message) -> Result<Sent, Error> {
        let mut packet = message.to_packet();
        packet.conv = Some(conv);
        self.send_packet(packet).await
    }

    /// Sends any conversation event: a core type, or an extension type (which the hub
    /// stores and delivers even if it does not know it). The packet needs `conv`; it gets an
    /// id if it has none, and keeping an id on a resend lets the hub deduplicate it.
    pub async fn send_packet(&self, packet: Packet) -> Result<Sent, Error> {
        match self.answer(|reply| Command::Send(packet, reply)).await? {
            Answer::Sent(sent) => Ok(sent),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends an ephemeral packet of an extension type (with `ephemeral` set): forwarded to
    /// the participants who are online, never stored. Dropped while offline.
    pub async fn send_signal(&self, packet: Packet) -> Result<(), Error> {
        self.call(|reply| Command::Signal(packet, reply)).await
    }

    /// Tells the participants of `conv` this user's chat state (typing and so on). Sent at
    /// most once (QoS 0), and dropped while offline.
    pub async fn chat_state(&self, conv: ConversationRef, state: State) -> Result<(), Error> {
        self.call(|reply| Command::ChatState(conv, state, reply))
            .await
    }

    /// Marks `conv` delivered up to sequence number `up_to`. The client does this by itself
    /// unless [`ClientConfig::auto_delivered`] is off.
    pub async fn mark_delivered(&self, conv: ConversationRef, up_to: u64) -> Result<(), Error> {
        self.call(|reply| Command::MarkDelivered(conv, up_to, reply))
            .await
    }

    /// Marks `conv` read up to sequence number `up_to`, on every device of this user and,
    /// unless `private`, for the other participants.
    pub async fn mark_read(
        &self,
        conv: ConversationRef,
        up_to: u64,
        private: bool,
    ) -> Result<(), Error> {
        self.call(|reply| Command::MarkRead(conv, up_to, private, reply))
            .await
    }

    /// Sets this device's presence: published now (retained) and after every reconnect.
    pub async fn set_presence(&self, presence: Presence) -> Result<(), Error> {
        self.call(|reply| Command::SetPresence(presence, reply))
            .await
    }

    /// Changes the user's profile: fields set replace the stored ones, an empty text clears
    /// a field, fields left `None` stay. Resolves with the profile's new version.
    pub async fn set_profile(&self, profile: Profile) -> Result<u64, Error> {
        match self
            .answer(|reply| Command::SetProfile(profile, reply))
            .await?
        {
            Answer::Version(version) => Ok(version),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a contact request or answer to `peer` (spec section 7.4). Resolves when the
    /// hub stored it; a step outside the contact state machine is refused with `conflict`.
    pub async fn contact(
        &self,
        peer: UserId,
        action: ContactAction,
        note: Option<String>,
    ) -> Result<Sent, Error> {
        let mut packet = Contact { action, note }.to_packet();
        packet.conv = Some(ConversationRef::Direct(peer));
        self.send_packet(packet).await
    }

    /// Watches the presence of every device of `user` (needs to be this user or an
    /// accepted contact): their current presence arrives at once as [`Event::Presence`],
    /// then every change, while the client is active. A refused subscription arrives as
    /// [`Event::Error`].
    pub async fn watch_presence(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.call(|reply| Command::WatchPresence(user, true, reply))
            .await
    }

    /// Stops watching `user`'s presence.
    pub async fn unwatch_presence(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.call(|reply| Command::WatchPresence(user, false, reply))
            .await
    }

    /// Watches `user`'s profile: the current one arrives at once as [`Event::Profile`],
    /// then every change.
    pub async fn watch_profile(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.call(|reply| Command::WatchProfile(user, true, reply))
            .await
    }

    /// Stops watching `user`'s profile.
    pub async fn unwatch_profile(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.call(|reply| Command::WatchProfile(user, false, reply))
            .await
    }

    /// Asks the hub for a page of `conv`'s events (spec section 11).
    pub async fn history(
        &self,
        conv: ConversationRef,
        query: History,
    ) -> Result<HistoryResult, Error> {
        match self
            .answer(|reply| Command::History(conv, query, reply))
            .await?
        {
            Answer::History(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks the hub which conversations changed (spec section 11).
    pub async fn sync(&self, query: Sync) -> Result<SyncResult, Error> {
        match self.answer(|reply| Command::Sync(query, reply)).await? {
            Answer::Sync(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// Client state indication (spec section 12): an inactive client (an app in the
    /// background) stops receiving chat states and presence, which are then dropped rather
    /// than queued; durable events keep coming. Going active again brings the current
    /// presence of watched users and catches up with the hub.
    pub async fn set_active(&self, active: bool) -> Result<(), Error> {
        self.call(|reply| Command::SetActive(active, reply)).await
    }

    /// Where this device stands with the hub, for an application with storage to keep
    /// and pass to [`ClientConfig::resume`] after a restart. It covers every event already
    /// queued on [`Events`] when it returns: save it once those are handled (for instance,
    /// read [`Events::try_next`] until it returns `None`, then save). [`Client::close`]
    /// returns the final one.
    pub async fn sync_state(&self) -> Result<SyncState, Error> {
        self.call(Command::State).await
    }

    /// Closes the connection properly: publishes this device's presence as offline (with
    /// its last-active time), sends DISCONNECT and drops the connection once it is written.
    /// Calls still waiting fail with [`Error::is_closed`] (events sent and not yet
    /// confirmed may be stored or not: send them again with the same id to be sure). Other
    /// clones of this client are closed too.
    ///
    /// Returns where the device stood, covering exactly the events delivered on
    /// [`Events`] before it ends: keep it for [`ClientConfig::resume`].
    pub async fn close(self) -> Result<SyncState, Error> {
        match self.call(Command::Close).await {
            Ok(()) => {}
            Err(e) if e.is_closed() => {}
            Err(e) => return Err(e),
        }
        let state = self
            .shared
            .final_state
            .lock()
            .ok()
            .and_then(|slot| slot.clone());
        Ok(state.unwrap_or_default())
    }
}

fn unexpected(answer: &Answer) -> Error {
    Error::protocol(format!("unexpected answer {answer:?}"))
}

/// The events of a client, in the order they happened. Read them, or drop this: events
/// are queued without bound until read.
pub struct Events {
    events: mpsc::UnboundedReceiver<Event>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.events.len())
            .finish()
    }
}

impl Events {
    /// The next event; `None` once the client is closed and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_between_tasks() {
        fn send_sync<T: Send + std::marker::Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Client>();
        send::<Events>();
        send_sync::<Error>();
    }
}
