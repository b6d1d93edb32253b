//! Rate limits on what devices send upstream (spec 14, `rate-limited`): packets per device
//! and per user, contact requests and group invitations per user per hour.
//!
//! Each limit is a bucket that holds `burst` and refills at `rate`, kept as one number per
//! key (the generic cell rate algorithm: the time at which the bucket would be full again),
//! so a key at rest costs nothing and is forgotten. Sans-IO: times are arguments, on the
//! driver's monotonic clock ([`Moment`]), so a wall clock that steps does not move a bucket.

use std::collections::HashMap;
use std::hash::Hash;

use mqchat_proto::{DeviceIdentity, Moment, UserId};

/// The rate limits. A rate of 0 turns that limit off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Upstream packets per device per second, sustained.
    pub device_per_sec: u32,
    /// Upstream packets a device may send at once.
    pub device_burst: u32,
    /// Upstream packets per user (all devices) per second, sustained.
    pub user_per_sec: u32,
    /// Upstream packets a user's devices may send at once.
    pub user_burst: u32,
    /// Contact requests per user per hour (all at once, at most).
    pub contact_requests_per_hour: u32,
    /// Group invitations per user per hour (all at once, at most).
    pub group_invitations_per_hour: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            device_per_sec: 50,
            device_burst: 1_000,
            user_per_sec: 100,
            user_burst: 2_000,
            contact_requests_per_hour: 60,
            group_invitations_per_hour: 300,
        }
    }
}

/// One kind of limit: `burst` at once, refilled at one per `interval_us`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    interval_us: u64,
    burst: u64,
}

impl Bucket {
    fn new(per: u64, count: u32, burst: u32) -> Option<Self> {
        (count > 0).then(|| Self {
            interval_us: (per / u64::from(count)).max(1),
            burst: u64::from(burst.max(1)),
        })
    }
}

/// Buckets of one kind, by key.
#[derive(Debug)]
struct Buckets<K> {
    bucket: Option<Bucket>,
    /// When each key's bucket is full again (µs); keys whose time has passed are at rest.
    full_at: HashMap<K, u64>,
    calls: u32,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(bucket: Option<Bucket>) -> Self {
        Self {
            bucket,
            full_at: HashMap::new(),
            calls: 0,
        }
    }

    /// Whether `n` more fit now; if they do, they are taken.
    fn take(&mut self, key: &K, n: u64, now_us: u64) -> bool {
        let Some(bucket) = self.bucket else {
            return true;
        };
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(4096) {
            self.full_at.retain(|_, full| *full > now_us);
        }
        let full = self.full_at.get(key).copied().unwrap_or(0).max(now_us);
        let after = full.saturating_add(n.saturating_mul(bucket.interval_us));
        if after - now_us > bucket.burst.saturating_mul(bucket.interval_us) {
            return false;
        }
        self.full_at.insert(key.clone(), after);
        true
    }

    /// Gives back `n` taken by a call that then did not happen.
    fn give_back(&mut self, key: &K, n: u64) {
        if let (Some(bucket), Some(full)) = (self.bucket, self.full_at.get_mut(key)) {
            *full = full.saturating_sub(n.saturating_mul(bucket.interval_us));
        }
    }
}

/// What was over its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// The device's packets.
    Device,
    /// The user's packets (all devices).
    User,
    /// Contact requests this hour.
    ContactRequests,
    /// Group invitations this hour.
    GroupInvitations,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Device => "too many packets from this device; retry later",
            Self::User => "too many packets from this user's devices; retry later",
            Self::ContactRequests => "too many contact requests this hour; retry later",
            Self::GroupInvitations => "too many group invitations this hour; retry later",
        })
    }
}

/// The rate limits' state.
#[derive(Debug)]
pub struct RateLimits {
    devices: Buckets<DeviceIdentity>,
    users: Buckets<UserId>,
    contact_requests: Buckets<UserId>,
    invitations: Buckets<UserId>,
    /// Devices refused since their last accepted packet, with how many refusals: the log
    /// says when a device goes over and when it comes back, not every refusal (a flood of
    /// log lines would be a flood of the disk).
    limited: HashMap<DeviceIdentity, u64>,
}

const SECOND_US: u64 = 1_000_000;
const HOUR_US: u64 = 3_600 * SECOND_US;

/// A moment in whole microseconds since the origin, as the buckets count time.
fn micros(at: Moment) -> u64 {
    u64::try_from(at.since_origin().as_micros()).unwrap_or(u64::MAX)
}

impl RateLimits {
    /// Limits with nothing used yet.
    pub fn new(config: &RateConfig) -> Self {
        let hourly = |n| Bucket::new(HOUR_US, n, n);
        Self {
            devices: Buckets::new(Bucket::new(
                SECOND_US,
                config.device_per_sec,
                config.device_burst,
            )),
            users: Buckets::new(Bucket::new(
                SECOND_US,
                config.user_per_sec,
                config.user_burst,
            )),
            contact_requests: Buckets::new(hourly(config.contact_requests_per_hour)),
            invitations: Buckets::new(hourly(config.group_invitations_per_hour)),
            limited: HashMap::new(),
        }
    }

    /// Counts one upstream packet of `device` at `now`; `Err` if it is over a limit (then it
    /// is not counted).
    pub fn packet(&mut self, device: &DeviceIdentity, now: Moment) -> Result<(), Exceeded> {
        let now_us = micros(now);
        let result = if !self.devices.take(device, 1, now_us) {
            Err(Exceeded::Device)
        } else if !self.users.take(&device.user, 1, now_us) {
            self.devices.give_back(device, 1);
            Err(Exceeded::User)
        } else {
            Ok(())
        };
        match result {
            Ok(()) => {
                if let Some(refused) = self.limited.remove(device) {
                    tracing::info!(device = %device, refused, "device back under its packet rate");
                }
            }
            Err(exceeded) => {
                let refused = self.limited.entry(device.clone()).or_insert(0);
                if *refused == 0 {
                    tracing::warn!(device = %device, limit = ?exceeded, "device over its packet rate: its packets are refused (rate-limited) until it slows down");
                }
                *refused += 1;
                if self.limited.len() > 10_000 {
                    // Devices that went quiet while limited: forget them without a line.
                    let devices = &self.devices;
                    self.limited
                        .retain(|d, _| devices.full_at.get(d).is_some_and(|f| *f > now_us));
                }
            }
        }
        result
    }

    /// Counts a contact request by `user`.
    pub fn contact_request(&mut self, user: &UserId, now: Moment) -> Result<(), Exceeded> {
        self.contact_requests
            .take(user, 1, micros(now))
            .then_some(())
            .ok_or(Exceeded::ContactRequests)
    }

    /// Counts `n` group invitations by `user`.
    pub fn invitations(&mut self, user: &UserId, n: usize, now: Moment) -> Result<(), Exceeded> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.invitations
            .take(user, n, micros(now))
            .then_some(())
            .ok_or(Exceeded::GroupInvitations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(s: &str) -> DeviceIdentity {
        let (user, device) = s.split_once(':').expect("user:device");
        DeviceIdentity::from_connect(user, s).unwrap_or_else(|e| panic!("{user} {device}: {e}"))
    }

    fn config() -> RateConfig {
        RateConfig {
            device_per_sec: 10,
            device_burst: 5,
            user_per_sec: 15,
            user_burst: 8,
            contact_requests_per_hour: 3,
            group_invitations_per_hour: 10,
        }
    }

    /// Sends packets in order on fresh limits of [`config`], each step `(device, packets,
    /// at ms, how many pass, what refuses the others)`.
    fn check(steps: &[(&str, u32, u64, u32, Option<Exceeded>)]) {
        let mut limits = RateLimits::new(&config());
        for (i, &(who, n, at, passes, refused)) in steps.iter().enumerate() {
            let who = device(who);
            let results: Vec<_> = (0..n)
                .map(|_| limits.packet(&who, Moment::from_millis(at)))
                .collect();
            let expected: Vec<_> = (0..n)
                .map(|k| match refused {
                    Some(limit) if k >= passes => Err(limit),
                    _ => Ok(()),
                })
                .collect();
            assert_eq!(results, expected, "step {i}: {n} from {who} at {at} ms");
        }
    }

    #[test]
    fn a_device_gets_its_burst_then_its_rate() {
        let device = Some(Exceeded::Device);
        check(&[
            ("alice:phone", 20, 0, 5, device),
            // One per 100 ms.
            ("alice:phone", 20, 100, 1, device),
            // Full again after a rest.
            ("alice:phone", 20, 1_100, 5, device),
        ]);
    }

    #[test]
    fn a_users_devices_share_the_user_limit() {
        check(&[
            ("alice:phone", 5, 0, 5, None),
            ("alice:laptop", 5, 0, 3, Some(Exceeded::User)),
            // Others are not affected.
            ("bob:phone", 5, 0, 5, None),
        ]);
    }

    #[test]
    fn a_refusal_by_the_user_limit_does_not_use_the_devices_allowance() {
        check(&[
            ("alice:laptop", 8, 0, 5, Some(Exceeded::Device)),
            ("alice:phone", 10, 0, 3, Some(Exceeded::User)),
            // 400 ms later: the user has 6 more (15/s); the phone's bucket is full again
            // (the 2 it had left and 4 more at 10/s, held to its burst of 5).
            ("alice:phone", 10, 400, 5, Some(Exceeded::Device)),
        ]);
    }

    #[test]
    fn hourly_limits_allow_the_hour_at_once_then_refill() {
        let mut limits = RateLimits::new(&config());
        let alice = UserId::parse("alice").expect("user");
        let at = Moment::from_millis;
        for _ in 0..3 {
            assert_eq!(limits.contact_request(&alice, at(0)), Ok(()));
        }
        assert_eq!(
            limits.contact_request(&alice, at(0)),
            Err(Exceeded::ContactRequests)
        );
        assert_eq!(limits.contact_request(&alice, at(20 * 60_000)), Ok(()));
        assert_eq!(limits.invitations(&alice, 10, at(0)), Ok(()));
        assert_eq!(
            limits.invitations(&alice, 1, at(0)),
            Err(Exceeded::GroupInvitations)
        );
        assert_eq!(
            limits.invitations(&alice, 11, at(10 * 3_600_000)),
            Err(Exceeded::GroupInvitations),
            "more than an hour's worth never fits"
        );
    }

    #[test]
    fn a_rate_of_zero_is_no_limit_and_rested_keys_are_forgotten() {
        let mut limits = RateLimits::new(&RateConfig {
            device_per_sec: 0,
            ..config()
        });
        let phone = device("alice:phone");
        assert!(limits.devices.take(&phone, 1_000_000, 0));
        for i in 0..5_000u64 {
            let who = device(&format!("u{i}:d"));
            let _ = limits.packet(&who, Moment::from_millis(i * 10_000));
        }
        assert!(limits.users.full_at.len() < 5_000, "rested users forgotten");
    }
}
