//! What the hub's integration tests share: an engine over a fresh store, driven on virtual
//! time (the monotonic clock from its origin, the wall clock from a chosen stamp, both one
//! second further at each batch), and packets in their JSON form.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

use mqchat_hub::{Engine, HubConfig, Output, Upstream};
use mqchat_proto::{Moment, Now, Registry, Timestamp, UserId};
use mqchat_store::{Durability, Store};
use serde_json::Value;

/// A reading of the clocks at the monotonic origin, with the wall clock at `wall_ms`.
pub fn wall(wall_ms: u64) -> Now {
    Now {
        at: Moment::ZERO,
        wall: Timestamp::from_unix_ms(wall_ms),
    }
}

/// An engine and its store.
pub struct Hub {
    _dir: tempfile::TempDir,
    pub store: Store,
    pub engine: Engine,
    pub registry: Registry,
    /// The time of the last batch or tick.
    pub now: Now,
}

impl Hub {
    /// An engine with `config` over a store holding `users` (password `pw`); its clocks
    /// read the monotonic origin and `wall_ms` on the wall.
    pub fn with(users: &[&str], config: HubConfig, wall_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&dir.path().join("hub.db"), Durability::Normal).expect("store");
        for name in users {
            store
                .add_user(&UserId::parse(name).expect("valid"), Some("pw"), 1)
                .expect("add");
        }
        Self {
            _dir: dir,
            store,
            engine: Engine::new(config),
            registry: Registry::with_core(),
            now: wall(wall_ms),
        }
    }

    /// The CBOR of `packet` (JSON).
    pub fn encoded(&self, packet: &Value) -> Vec<u8> {
        self.registry
            .from_json(packet)
            .expect("test packet")
            .encode()
    }

    /// A PUBLISH of `packet` (JSON) on `topic`.
    pub fn upstream(&self, topic: impl Into<String>, packet: &Value) -> Upstream {
        Upstream {
            topic: topic.into(),
            payload: self.encoded(packet),
        }
    }

    /// Processes a batch a second after the last, leaving its deliveries in the outbox.
    pub fn process_unconfirmed(&mut self, batch: &[Upstream]) -> Output {
        self.now = self.now.advanced(Duration::from_secs(1));
        self.engine.process(&mut self.store, self.now, batch)
    }

    /// Processes a batch a second after the last; its deliveries are confirmed.
    pub fn process(&mut self, batch: &[Upstream]) -> Output {
        let output = self.process_unconfirmed(batch);
        self.confirmed(output)
    }

    /// Runs the engine's clock `advance` after the last reading; its deliveries are
    /// confirmed.
    pub fn tick_after(&mut self, advance: Duration) -> Output {
        self.now = self.now.advanced(advance);
        let output = self.engine.tick(&mut self.store, self.now);
        self.confirmed(output)
    }

    /// Steps the wall clock back by `by` (as an administrator or NTP may); the monotonic
    /// clock goes on.
    pub fn step_wall_back(&mut self, by: Duration) {
        let by = u64::try_from(by.as_millis()).expect("a short step");
        self.now.wall = Timestamp::from_unix_ms(self.now.wall.unix_ms() - by);
    }

    fn confirmed(&mut self, output: Output) -> Output {
        self.engine
            .confirm(&mut self.store, &output.delivered)
            .expect("confirm");
        output
    }
}
