//! The application's handle on a connection ([`Client`]) and its stream of events
//! ([`Events`]).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mqchat_proto::body::{
    Body, Contact, ContactAction, DeviceRevoke, GroupCreate, Message, Mute, Profile, PushRegister,
    PushUnregister, State, Sync,
};
use mqchat_proto::{
    ConversationRef, DeviceId, DeviceIdentity, ErrorCode, GroupId, Packet, Seq, Timestamp, UserId,
};
use tokio::sync::{mpsc, oneshot};

use crate::call::{Call, CallTarget, Rejection};
use crate::config::ClientConfig;
use crate::device::Device;
use crate::driver::{self, Command, FinalState, Reply};
use crate::error::{Error, Kind};
use crate::event::{Created, Event, Sent};
use crate::group::{Group, GroupHandle, Receipt};
use crate::history::{HistoryPage, HistoryQuery};
use crate::presence::Presence;
use crate::session::Answer;
use crate::state::SyncState;
use crate::sync::SyncPage;

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
    /// The end of a mute that never ends ([`Client::mute`]).
    pub const MUTED_FOREVER: Timestamp = Timestamp::from_unix_ms(mqchat_proto::body::MUTED_FOREVER);

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

    pub(crate) async fn command<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(command(reply))
            .map_err(|_| Error::closed())?;
        answer.await.map_err(|_| Error::closed())?
    }

    pub(crate) async fn ask(
        &self,
        command: impl FnOnce(Reply<Answer>) -> Command,
    ) -> Result<Answer, Error> {
        self.command(command).await
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
        match self.ask(|reply| Command::Send(packet, reply)).await? {
            Answer::Sent(sent) => Ok(sent),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends an ephemeral packet of an extension type (with `ephemeral` set): forwarded to
    /// the participants who are online, never stored. Dropped while offline.
    pub async fn send_signal(&self, packet: Packet) -> Result<(), Error> {
        self.command(|reply| Command::Signal(packet, reply)).await
    }

    /// Tells the participants of `conv` this user's chat state (typing and so on). Sent at
    /// most once (QoS 0), and dropped while offline.
    pub async fn chat_state(&self, conv: ConversationRef, state: State) -> Result<(), Error> {
        self.command(|reply| Command::ChatState(conv, state, reply))
            .await
    }

    /// Marks `conv` delivered up to sequence number `up_to`. The client does this by itself
    /// unless [`ClientConfig::auto_delivered`] is off.
    pub async fn mark_delivered(&self, conv: ConversationRef, up_to: Seq) -> Result<(), Error> {
        self.command(|reply| Command::MarkDelivered(conv, up_to, reply))
            .await
    }

    /// Marks `conv` read up to sequence number `up_to`, on every device of this user and,
    /// unless `private`, for the other participants.
    pub async fn mark_read(
        &self,
        conv: ConversationRef,
        up_to: Seq,
        private: bool,
    ) -> Result<(), Error> {
        self.command(|reply| Command::MarkRead(conv, up_to, private, reply))
            .await
    }

    /// Sets this device's presence: published now (retained) and after every reconnect.
    pub async fn set_presence(&self, presence: Presence) -> Result<(), Error> {
        self.command(|reply| Command::SetPresence(presence.into(), reply))
            .await
    }

    /// The user's devices that may connect (spec 7.12).
    pub async fn devices(&self) -> Result<Vec<Device>, Error> {
        match self.ask(Command::Devices).await? {
            Answer::Devices(devices) => Ok(devices.into_iter().map(Device::from).collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// Revokes one of the user's devices (a lost phone, a sold laptop): its credentials stop
    /// working and its broker session is removed (spec 7.12). Unknown or already revoked
    /// devices are refused with `not-found`. Revoking this device signs it out for good.
    pub async fn revoke_device(&self, device: &DeviceId) -> Result<(), Error> {
        let packet = DeviceRevoke {
            device: device.clone(),
        }
        .to_packet();
        self.done(packet).await
    }

    /// Registers (or replaces) where this device is woken while it is away or in the
    /// background (spec 7.13).
    pub async fn register_push(&self, register: PushRegister) -> Result<(), Error> {
        self.done(register.to_packet()).await
    }

    /// Removes this device's push target: no more pushes to it.
    pub async fn unregister_push(&self) -> Result<(), Error> {
        self.done(PushUnregister.to_packet()).await
    }

    /// Mutes `conv` for the user (every device) until `until` ([`Client::MUTED_FOREVER`]
    /// for good), or unmutes it with `None`: no pushes for it meanwhile. The other devices
    /// see it in their sync entries (`muted_until`).
    pub async fn mute(&self, conv: ConversationRef, until: Option<Timestamp>) -> Result<(), Error> {
        let mut packet = Mute {
            until: until.map_or(0, Timestamp::unix_ms),
        }
        .to_packet();
        packet.conv = Some(conv);
        self.done(packet).await
    }

    async fn done(&self, packet: Packet) -> Result<(), Error> {
        match self.ask(|reply| Command::Request(packet, reply)).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes the user's profile: fields set replace the stored ones, an empty text clears
    /// a field, fields left `None` stay. Resolves with the profile's new version.
    pub async fn set_profile(&self, profile: Profile) -> Result<u64, Error> {
        match self
            .ask(|reply| Command::SetProfile(profile, reply))
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
        self.command(|reply| Command::WatchPresence(user, true, reply))
            .await
    }

    /// Stops watching `user`'s presence.
    pub async fn unwatch_presence(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.command(|reply| Command::WatchPresence(user, false, reply))
            .await
    }

    /// Watches `user`'s profile: the current one arrives at once as [`Event::Profile`],
    /// then every change.
    pub async fn watch_profile(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.command(|reply| Command::WatchProfile(user, true, reply))
            .await
    }

    /// Stops watching `user`'s profile.
    pub async fn unwatch_profile(&self, user: &UserId) -> Result<(), Error> {
        let user = user.clone();
        self.command(|reply| Command::WatchProfile(user, false, reply))
            .await
    }

    /// Asks the hub for a page of `conv`'s events (spec section 11).
    pub async fn history(
        &self,
        conv: ConversationRef,
        query: HistoryQuery,
    ) -> Result<HistoryPage, Error> {
        match self
            .ask(|reply| Command::History(conv, query.into(), reply))
            .await?
        {
            Answer::History(result) => Ok(result.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks the hub which conversations changed (spec section 11).
    pub async fn sync(&self, query: Sync) -> Result<SyncPage, Error> {
        match self.ask(|reply| Command::Sync(query, reply)).await? {
            Answer::Sync(result) => Ok(result.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a group (spec section 7.11) with this user as its owner, and invites
    /// `create.invite` at once. Resolves with the `created` event: [`Sent::group`] is the new
    /// group's id. An invitee who does not exist fails it with `no-such-user`, too many with
    /// `group-full`.
    pub async fn create_group(&self, create: GroupCreate) -> Result<Created, Error> {
        let sent = self.group_change(create.to_packet()).await?;
        match sent.group() {
            Some(group) => Ok(Created {
                group: group.clone(),
                sent,
            }),
            None => Err(Error::new(Kind::Protocol(format!(
                "a group creation was acknowledged in {}, not in a group",
                sent.conv
            )))),
        }
    }

    /// The group `group`, to change, read or leave: `client.group(&id).invite(&bob)`.
    /// Nothing is asked of the hub until a method of the handle is called.
    pub fn group(&self, group: &GroupId) -> GroupHandle<'_> {
        GroupHandle::new(self, group.clone())
    }

    /// Sends a group request that changes a group and waits for the event it made. Like
    /// [`Client::send`], it waits for the connection while offline and is resent with the
    /// same id after a reconnect (the hub applies it once).
    pub(crate) async fn group_change(&self, packet: Packet) -> Result<Sent, Error> {
        match self
            .ask(|reply| Command::GroupChange(packet, reply))
            .await?
        {
            Answer::Sent(sent) => Ok(sent),
            other => Err(unexpected(&other)),
        }
    }

    /// The groups this user is a member of or invited to, most recently active first
    /// (from a sync of every conversation, then a group-info request for each group).
    pub async fn groups(&self) -> Result<Vec<Group>, Error> {
        let mut ids = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .sync(Sync {
                    before,
                    limit: Some(500),
                    newest_first: true,
                    ..Sync::default()
                })
                .await?;
            for entry in &page.conversations {
                if let ConversationRef::Group(group) = &entry.conv {
                    ids.push(group.clone());
                }
            }
            match page.conversations.last() {
                Some(last) if page.more => before = Some(last.change),
                _ => break,
            }
        }
        // Every request goes out before the first answer is awaited.
        let mut answers = Vec::with_capacity(ids.len());
        for group in ids {
            let (reply, answer) = oneshot::channel();
            self.shared
                .commands
                .send(Command::GroupInfo(group, reply))
                .map_err(|_| Error::closed())?;
            answers.push(answer);
        }
        let mut groups = Vec::new();
        for answer in answers {
            match answer.await.map_err(|_| Error::closed())? {
                Ok(Answer::Group(group)) => groups.push(group),
                Ok(other) => return Err(unexpected(&other)),
                // Groups this user left, was removed from or that were deleted.
                Err(e)
                    if matches!(
                        e.refused(),
                        Some(ErrorCode::FORBIDDEN | ErrorCode::NOT_FOUND)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(groups)
    }

    /// Who received and who read this user's message `seq` in `conv`, from the markers
    /// the hub delivered (spec section 9): each member, and the counts for "read by 3 of
    /// 5". For a group the client keeps the roster current from the group's events, asking
    /// the hub for it once when it has none.
    pub async fn receipt(&self, conv: ConversationRef, seq: Seq) -> Result<Receipt, Error> {
        match self.ask(|reply| Command::Receipt(conv, seq, reply)).await? {
            Answer::Receipt(receipt) => Ok(receipt),
            other => Err(unexpected(&other)),
        }
    }

    /// Client state indication (spec section 12): an inactive client (an app in the
    /// background) stops receiving chat states and presence, which are then dropped rather
    /// than queued; durable events keep coming. Going active again brings the current
    /// presence of watched users and catches up with the hub.
    pub async fn set_active(&self, active: bool) -> Result<(), Error> {
        self.command(|reply| Command::SetActive(active, reply))
            .await
    }

    /// Calls `target` (spec 7.14): a user of this server (every device of that user
    /// rings) or a `sip:` URI (a user's device by its GRUU, or an address outside mqchat,
    /// reached through the server's SIP gateway), offering the SDP `sdp`. Returns the
    /// call at once; [`Event::CallRinging`](crate::Event::CallRinging),
    /// [`Event::CallAnswered`](crate::Event::CallAnswered) (with the SDP answer) and
    /// [`Event::CallEnded`](crate::Event::CallEnded) follow. A call placed while offline
    /// goes out after the reconnect, if that comes within 32 seconds.
    pub async fn call(&self, target: &CallTarget, sdp: &str) -> Result<Call, Error> {
        let (target, sdp) = (target.clone(), sdp.to_owned());
        self.command(|reply| Command::Call(target, sdp, reply))
            .await
    }

    /// Answers an incoming call ([`Event::IncomingCall`](crate::Event::IncomingCall)) with
    /// the SDP answer `sdp`. The caller's acknowledgement confirms the call; the user's
    /// other devices stop ringing.
    pub async fn answer(&self, call: &Call, sdp: &str) -> Result<(), Error> {
        let (call, sdp) = (call.clone(), sdp.to_owned());
        self.command(|reply| Command::Answer(call, sdp, reply))
            .await
    }

    /// Refuses an incoming call that is ringing: [`Rejection::Busy`] (the user's other
    /// devices keep ringing) or [`Rejection::Decline`].
    pub async fn reject(&self, call: &Call, why: Rejection) -> Result<(), Error> {
        let call = call.clone();
        self.command(|reply| Command::Reject(call, why, reply))
            .await
    }

    /// Hangs up `call`: an outgoing call is cancelled before the answer and ended with BYE
    /// after it; an incoming call still ringing is declined. The call ends at once
    /// ([`Event::CallEnded`](crate::Event::CallEnded) with `local` set). Calls that have
    /// ended already fail with [`Error::is_invalid`].
    pub async fn hangup(&self, call: &Call) -> Result<(), Error> {
        let call = call.clone();
        self.command(|reply| Command::Hangup(call, reply)).await
    }

    /// The calls of this device that are ringing or on.
    pub async fn calls(&self) -> Result<Vec<Call>, Error> {
        self.command(Command::Calls).await
    }

    /// Where this device stands with the hub, for an application with storage to keep
    /// and pass to [`ClientConfig::resume`] after a restart. It covers every event already
    /// queued on [`Events`] when it returns: save it once those are handled (for instance,
    /// read [`Events::try_next`] until it returns `None`, then save). [`Client::close`]
    /// returns the final one.
    pub async fn sync_state(&self) -> Result<SyncState, Error> {
        self.command(Command::State).await
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
        match self.command(Command::Close).await {
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

pub(crate) fn unexpected(answer: &Answer) -> Error {
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
