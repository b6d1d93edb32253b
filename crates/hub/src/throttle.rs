//! Failed logins, remembered per source address and per user: after a few failures each
//! further attempt must wait, and the wait doubles with every failure, so that guessing
//! passwords gets slower and slower while a right password (or a device token) from
//! elsewhere still gets in at once.
//!
//! Sans-IO: the caller passes the time in, on its monotonic clock ([`Moment`]), so a wall
//! clock that steps neither lifts nor lengthens a wait. Memory is bounded: at most
//! [`ThrottleConfig::max_entries`] sources and as many users are remembered, the
//! least recently failed forgotten first, and a key is forgotten once it has been quiet
//! for [`ThrottleConfig::forget_after_ms`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use mqchat_proto::{Moment, UserId};

/// Limits on failed logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures after which a source address's attempts must wait.
    pub source_failures: u32,
    /// Failures on one user id (from anywhere) after which password attempts on it must
    /// wait.
    pub user_failures: u32,
    /// The first wait, in milliseconds; it doubles with each further failure.
    pub first_delay_ms: u64,
    /// The longest wait, in milliseconds.
    pub max_delay_ms: u64,
    /// A key's failures are forgotten after this long without a new one.
    pub forget_after_ms: u64,
    /// Sources (and, separately, users) remembered at most.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            source_failures: 10,
            user_failures: 5,
            first_delay_ms: 1_000,
            max_delay_ms: 60_000,
            forget_after_ms: 15 * 60_000,
            max_entries: 100_000,
        }
    }
}

/// Where login attempts come from, as far as throttling is concerned: an IPv4 address, or
/// the /64 network of an IPv6 address (one host usually holds a whole /64). `None` when the
/// broker does not say (some external brokers' HTTP auth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(Option<IpAddr>);

impl Source {
    /// The source of an attempt from `addr`.
    pub fn of(addr: Option<IpAddr>) -> Self {
        Self(addr.map(|addr| match addr {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(segments.into())
                }
            },
        }))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Some(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            None => f.write_str("an unknown address"),
        }
    }
}

/// Why an attempt may not be checked now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Its source failed too often; it may try again at this time.
    Source(Moment),
    /// Its user id had too many failures; password attempts may resume at this time.
    User(Moment),
}

#[derive(Clone, Debug, Default)]
struct Failures {
    /// Failures since the key was last quiet.
    count: u32,
    /// When the last one happened.
    last: Moment,
    /// Attempts refused without a check since the burst began (for the log).
    refused: u64,
    /// Attempts may be checked again from this time.
    until: Moment,
}

impl ThrottleConfig {
    /// Whether a key whose last failure was at `last` is quiet at `now`.
    fn quiet(&self, last: Moment, now: Moment) -> bool {
        now.saturating_since(last) >= Duration::from_millis(self.forget_after_ms)
    }
}

impl Failures {
    fn fail(&mut self, config: &ThrottleConfig, free: u32, now: Moment) -> bool {
        if config.quiet(self.last, now) {
            *self = Self::default();
        }
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count < free {
            return false;
        }
        let over = self.count - free + 1;
        let delay = config
            .first_delay_ms
            .saturating_mul(1u64 << (over - 1).min(32))
            .min(config.max_delay_ms);
        self.until = now + Duration::from_millis(delay);
        true
    }
}

/// A key that starts to wait, or waits longer: what the log says about it.
struct Waiting {
    failures: u32,
    refused: u64,
    millis: u128,
}

/// A table of failures by key, bounded in size.
#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Failures>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn waiting(&mut self, key: &K, now: Moment) -> Option<Moment> {
        let entry = self.entries.get_mut(key)?;
        if now < entry.until {
            entry.refused = entry.refused.saturating_add(1);
            Some(entry.until)
        } else {
            None
        }
    }

    fn entry(&mut self, key: &K, config: &ThrottleConfig, now: Moment) -> &mut Failures {
        if !self.entries.contains_key(key) && self.entries.len() >= config.max_entries {
            self.make_room(config, now);
        }
        self.entries.entry(key.clone()).or_default()
    }

    /// Forgets the quiet keys; if none is quiet, those that are not waiting; if all wait,
    /// the older half. An attacker who fills the table with addresses of their own makes it
    /// forget their other addresses first, not the ones already waiting.
    fn make_room(&mut self, config: &ThrottleConfig, now: Moment) {
        let max = config.max_entries;
        self.entries
            .retain(|_, f| !config.quiet(f.last, now) || now < f.until);
        if self.entries.len() < max {
            return;
        }
        self.entries.retain(|_, f| now < f.until);
        if self.entries.len() < max {
            return;
        }
        let mut lasts: Vec<Moment> = self.entries.values().map(|f| f.last).collect();
        let middle = lasts.len() / 2;
        let (_, median, _) = lasts.select_nth_unstable(middle);
        let median = *median;
        self.entries.retain(|_, f| f.last > median);
    }

    /// Records a failure of `key`, free for its first `free` failures; when it starts a
    /// wait or doubles it, what to log about it (the attempts refused meanwhile start again
    /// from zero).
    fn fail(
        &mut self,
        key: &K,
        config: &ThrottleConfig,
        free: u32,
        now: Moment,
    ) -> Option<Waiting> {
        let entry = self.entry(key, config, now);
        if !entry.fail(config, free, now) {
            return None;
        }
        let waiting = Waiting {
            failures: entry.count,
            refused: entry.refused,
            millis: entry.until.saturating_since(now).as_millis(),
        };
        entry.refused = 0;
        Some(waiting)
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// Failed logins by source and by user.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    sources: Table<Source>,
    users: Table<UserId>,
}

impl Throttle {
    /// A throttle with no failures yet.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            sources: Table::new(),
            users: Table::new(),
        }
    }

    /// Whether an attempt from `source` may be checked now. Only password attempts wait
    /// (`password`): a device token has 256 bits and costs one SHA-256 to check, so
    /// guessing tokens is hopeless and checking them is cheap, and a phone behind the same
    /// address as an attacker, or whose user's password is being guessed, keeps
    /// reconnecting with its token at once.
    pub fn admit(
        &mut self,
        source: Source,
        user: Option<&UserId>,
        password: bool,
        now: Moment,
    ) -> Result<(), Wait> {
        if !password {
            return Ok(());
        }
        if let Some(until) = self.sources.waiting(&source, now) {
            return Err(Wait::Source(until));
        }
        if let Some(user) = user
            && let Some(until) = self.users.waiting(user, now)
        {
            return Err(Wait::User(until));
        }
        Ok(())
    }

    /// Records a failed attempt (wrong secret, unknown user). Logs once when a source or
    /// user starts waiting, and again each time its wait doubles, with the attempts
    /// refused meanwhile; not once per attempt.
    pub fn failed(&mut self, source: Source, user: Option<&UserId>, now: Moment) {
        let config = &self.config;
        if let Some(wait) = self
            .sources
            .fail(&source, config, config.source_failures, now)
        {
            tracing::warn!(source = %source, failures = wait.failures, refused_meanwhile = wait.refused, wait_ms = wait.millis, "failed logins: attempts from this address wait");
        }
        if let Some(user) = user
            && let Some(wait) = self.users.fail(user, config, config.user_failures, now)
        {
            tracing::warn!(user = %user, failures = wait.failures, refused_meanwhile = wait.refused, wait_ms = wait.millis, "failed logins: password attempts on this user wait");
        }
    }

    /// Records a successful login: the user's failures are forgotten (not the source's: an
    /// attacker's own account must not clear their address).
    pub fn succeeded(&mut self, user: &UserId) {
        self.users.forget(user);
    }

    /// The sources and users remembered (for tests and metrics).
    pub fn len(&self) -> (usize, usize) {
        (self.sources.entries.len(), self.users.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Source {
        Source::of(Some(s.parse().expect("address")))
    }

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("user")
    }

    fn at(millis: u64) -> Moment {
        Moment::from_millis(millis)
    }

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            source_failures: 3,
            user_failures: 2,
            first_delay_ms: 1_000,
            max_delay_ms: 8_000,
            forget_after_ms: 60_000,
            max_entries: 4,
        }
    }

    #[test]
    fn a_source_waits_after_its_free_failures_and_the_wait_doubles_to_the_cap() {
        let mut t = Throttle::new(config());
        let a = ip("192.0.2.1");
        let mut now = Moment::ZERO;
        for _ in 0..3 {
            assert_eq!(t.admit(a, None, true, now), Ok(()));
            t.failed(a, None, now);
        }
        assert_eq!(t.admit(a, None, true, now), Err(Wait::Source(at(1_000))));
        assert_eq!(
            t.admit(ip("192.0.2.2"), None, true, now),
            Ok(()),
            "others go on"
        );
        let mut waits = Vec::new();
        for _ in 0..5 {
            let Err(Wait::Source(until)) = t.admit(a, None, true, now) else {
                panic!("waiting");
            };
            waits.push(until.saturating_since(now).as_millis());
            now = until;
            assert_eq!(t.admit(a, None, true, now), Ok(()));
            t.failed(a, None, now);
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000]);
    }

    #[test]
    fn a_user_holds_back_password_attempts_only() {
        let mut t = Throttle::new(config());
        let alice = user("alice");
        t.failed(ip("192.0.2.1"), Some(&alice), at(0));
        t.failed(ip("192.0.2.2"), Some(&alice), at(0));
        let elsewhere = ip("198.51.100.7");
        assert_eq!(
            t.admit(elsewhere, Some(&alice), true, at(10)),
            Err(Wait::User(at(1_000)))
        );
        assert_eq!(
            t.admit(elsewhere, Some(&alice), false, at(10)),
            Ok(()),
            "tokens"
        );
        assert_eq!(t.admit(elsewhere, Some(&user("bob")), true, at(10)), Ok(()));
        assert_eq!(t.admit(elsewhere, Some(&alice), true, at(1_000)), Ok(()));
        t.succeeded(&alice);
        t.failed(elsewhere, Some(&alice), at(1_001));
        assert_eq!(t.admit(elsewhere, Some(&alice), true, at(1_002)), Ok(()));
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_time() {
        let mut t = Throttle::new(config());
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            t.failed(a, None, at(0));
        }
        t.failed(a, None, at(60_000));
        assert_eq!(
            t.admit(a, None, true, at(60_000)),
            Ok(()),
            "a new burst starts free"
        );
    }

    #[test]
    fn ipv6_sources_are_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(ip("2001:db8:1:2:3:4:5:6"), ip("2001:db8:1:2:ffff::1"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8:1:2:3:4:5:6").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn the_tables_stay_bounded_and_keep_the_waiting_sources() {
        let mut t = Throttle::new(config());
        let attacker = ip("192.0.2.1");
        for _ in 0..6 {
            t.failed(attacker, None, at(0));
        }
        for i in 0..1_000u32 {
            let other = Source::of(Some(IpAddr::from([10, 0, (i >> 8) as u8, i as u8])));
            t.failed(other, None, at(1 + u64::from(i)));
            assert!(t.len().0 <= 4, "{} entries", t.len().0);
        }
        assert!(
            matches!(
                t.admit(attacker, None, true, at(1_500)),
                Err(Wait::Source(_))
            ),
            "a waiting source is not pushed out by new ones while it waits"
        );
    }
}
