//! The hub's engine: the upstream pipeline of spec section 8, a module per route, each an
//! `impl Engine` block. The pipeline (`pipeline.rs`) checks each packet and hands it to its
//! route: events (`event.rs`), markers (`marker.rs`), signals (`signal.rs`), requests
//! (`request.rs`, and the crate's `group`, `device` and `push`), or the SIP proxy (`sip`);
//! presence (`presence.rs`) comes on topics of its own. `target.rs` resolves the
//! conversation a packet names.
//!
//! The engine never reads a clock: each call takes a [`Now`], one reading of the driver's
//! clocks. What is stamped, stored or shown (an event's `ts`, a revocation, a presence's
//! `last-active`) comes from its wall clock (`now.wall`); every rate, throttle, timer and
//! deadline runs on its monotonic clock (`now.at`), so a wall clock that steps disturbs none
//! of them.

mod event;
mod marker;
mod pipeline;
mod presence;
mod request;
mod signal;
mod target;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use mqchat_proto::upstream::Inbound;
use mqchat_proto::{
    DeviceIdentity, ErrorCode, InboxBranch, Now, Packet, Registry, Timestamp, Topic, TopicRoot,
    UserId,
};
use mqchat_store::{ConvId, StoreError, Tx};

use crate::push::Push;
use crate::rate::{Exceeded, RateConfig, RateLimits};
use crate::sip::{Proxy, SipConfig};
use crate::{Outbound, Qos};

pub(crate) use pipeline::{Failure, body, refuse};
pub(crate) use target::{Target, conv_name, window};

/// The hub's settings.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The topic root.
    pub root: TopicRoot,
    /// The packet types the hub validates (others pass through by envelope).
    pub registry: Registry,
    /// The largest upstream payload accepted, in bytes.
    pub max_payload: usize,
    /// The largest reply (history and sync results) the hub builds, in bytes.
    pub max_reply_bytes: usize,
    /// The most members (and invited users) a group may have.
    pub max_group_members: usize,
    /// The SIP proxy's settings; `None`: no SIP (spec 19).
    pub sip: Option<SipConfig>,
    /// Rate limits on what devices send.
    pub rates: RateConfig,
    /// The seed of the engine's randomness (group ids; SIP branches, tags and Call-IDs).
    /// A server draws it from OS randomness at every start: these must not repeat across
    /// restarts. The default, 0, makes a test's run reproducible.
    pub seed: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            root: TopicRoot::default(),
            registry: Registry::with_core(),
            max_payload: 65_536,
            max_reply_bytes: 256 * 1024,
            max_group_members: 1000,
            sip: None,
            rates: RateConfig::default(),
            seed: 0,
        }
    }
}

/// One PUBLISH received by the hub.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A stored conversation, as the hub's output names it: the store's key, which callers only
/// hand back (to [`Engine::confirm`] and [`Engine::process_and_confirm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey(ConvId);

/// The store's form of deliveries the broker has taken.
fn outbox_entries(delivered: &[(ConversationKey, u64)]) -> Vec<(ConvId, u64)> {
    delivered
        .iter()
        .map(|(ConversationKey(conv), seq)| (*conv, *seq))
        .collect()
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Publishes to send, in order.
    pub publishes: Vec<Outbound>,
    /// Stored events whose delivery is among `publishes`: confirm them with
    /// [`Engine::confirm`] once the broker has them, so they leave the outbox.
    pub delivered: Vec<(ConversationKey, u64)>,
    /// Devices revoked by this batch: their broker sessions must be removed (spec 7.12).
    pub evict: Vec<DeviceIdentity>,
    /// Devices to wake through their push service (spec 7.13), once `publishes` are out.
    pub pushes: Vec<Push>,
    /// (reader, owner): the reader is no longer the owner's contact, so the reader's
    /// subscriptions to the owner's presence must end (spec 4, 16).
    pub presence_ended: Vec<(UserId, UserId)>,
    /// The store failed in this batch (the last error): the packets it concerned were
    /// answered `internal`. The driver reports it, with what it knows of the disk, once in a
    /// while rather than per packet.
    pub store_failure: Option<String>,
}

/// One packet's turn in a batch, as every route's handler takes it (with the packet): the
/// batch's transaction (inside the packet's savepoint), the time the batch is handled at,
/// and the output the packet adds to.
pub(crate) struct Turn<'a, 'tx> {
    pub(crate) tx: &'a mut Tx<'tx>,
    pub(crate) now: Now,
    pub(crate) out: &'a mut Output,
}

/// The hub's logic. Holds configuration, the SIP proxy's transactions and the rate limits'
/// buckets; everything else is in the store. One thread owns it (the server's worker), so
/// what changes that memory takes `&mut self` and nothing is locked.
#[derive(Debug)]
pub struct Engine {
    config: HubConfig,
    /// `config.sip`, shared: a SIP handler holds it while it changes `proxy`.
    sip: Option<Arc<SipConfig>>,
    /// The SIP proxy's memory. A field the `sip` module reaches directly, so that a handler
    /// can change it while it calls the engine's `&self` helpers.
    pub(crate) proxy: Proxy,
    rates: RateLimits,
    /// All of the engine's randomness, from `config.seed`: the hub draws none of its own.
    rng: StdRng,
    /// The newest wall time this hub stamped, read from the store at the first batch.
    last_stamp: Option<Timestamp>,
    /// Whether the wall clock is more than a second behind `last_stamp` (it stepped back).
    behind: bool,
}

impl Engine {
    /// An engine with this configuration.
    pub fn new(config: HubConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        Self {
            sip: config.sip.clone().map(Arc::new),
            rates: RateLimits::new(&config.rates),
            proxy: Proxy::new(rng.random()),
            rng,
            config,
            last_stamp: None,
            behind: false,
        }
    }

    /// `now` with a wall time that never goes back: the newer of the reading and the last
    /// time this hub stamped (at first, the newest stored event's). Events get it as their
    /// time, so that `history` `since` (spec 11) misses nothing when the machine's clock steps
    /// back: stamps then hold still until the clock catches up.
    pub(crate) fn stamp_time(&mut self, tx: &Tx<'_>, now: Now) -> Result<Now, StoreError> {
        let last = match self.last_stamp {
            Some(last) => last,
            None => Timestamp::from_unix_ms(tx.newest_event_time()?),
        };
        // Said once when the clock falls behind and once when it catches up, not per batch
        // (a millisecond behind is ordinary between batches of one millisecond).
        let behind = last.saturating_since(now.wall) > std::time::Duration::from_secs(1);
        if behind && !self.behind {
            tracing::warn!(
                behind_ms = last.saturating_since(now.wall).as_millis(),
                "the wall clock is behind the newest stamp: events keep that time until it catches up"
            );
        } else if !behind && self.behind {
            tracing::info!("the wall clock caught up with the stamps");
        }
        self.behind = behind;
        let wall = now.wall.max(last);
        self.last_stamp = Some(wall);
        Ok(Now { wall, ..now })
    }

    /// Charges the rate limits; a packet over one is refused with `rate-limited`.
    pub(crate) fn charge(
        &mut self,
        inbound: &Inbound,
        charge: impl FnOnce(&mut RateLimits) -> Result<(), Exceeded>,
    ) -> Result<(), Failure> {
        charge(&mut self.rates)
            .map_err(|exceeded| refuse(inbound, ErrorCode::RATE_LIMITED, exceeded.to_string()))
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The engine's random numbers.
    pub(crate) fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// The SIP settings, if SIP is on.
    pub(crate) fn sip(&self) -> Option<Arc<SipConfig>> {
        self.sip.clone()
    }

    pub(crate) fn inbox(&self, user: &UserId, branch: InboxBranch) -> String {
        self.config.root.topic(&Topic::Inbox {
            user: user.clone(),
            branch,
        })
    }

    pub(crate) fn durable(&self, user: &UserId, packet: &Packet) -> Outbound {
        Outbound {
            topic: self.inbox(user, InboxBranch::Durable),
            payload: packet.encode(),
            qos: Qos::AtLeastOnce,
            retain: false,
        }
    }
}
