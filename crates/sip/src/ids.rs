//! Identifiers a SIP element makes up: Via branches (with the RFC 3261 magic cookie), From/To
//! tags and Call-IDs. The randomness comes from the caller, directly or through [`IdGen`].

use crate::via::BRANCH_MAGIC;

/// A branch for a new client transaction from 128 random bits.
pub fn branch_from(random: u128) -> String {
    format!("{BRANCH_MAGIC}{random:032x}")
}

/// A From or To tag from 64 random bits.
pub fn tag_from(random: u64) -> String {
    format!("{random:016x}")
}

/// A Call-ID from 128 random bits, `{hex}@{host}`.
pub fn call_id_from(random: u128, host: &str) -> String {
    format!("{random:032x}@{host}")
}

/// A small deterministic generator (SplitMix64) seeded by the caller, e.g. once from the OS
/// at start-up. Identifiers need uniqueness, not secrecy.
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// A new branch (`z9hG4bK...`).
    pub fn branch(&mut self) -> String {
        branch_from(self.next_u128())
    }

    /// A new tag.
    pub fn tag(&mut self) -> String {
        tag_from(self.next_u64())
    }

    /// A new Call-ID at `host`.
    pub fn call_id(&mut self, host: &str) -> String {
        call_id_from(self.next_u128(), host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::via::{Transport, Via};

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let mut g = IdGen::new(7);
        let (a, b) = (g.branch(), g.branch());
        assert_ne!(a, b);
        assert!(a.starts_with("z9hG4bK"));
        assert!(Via::new(Transport::Udp, "h", None, &a).is_rfc3261_branch());
        assert_eq!(g.tag().len(), 16);
        assert!(g.call_id("example.com").ends_with("@example.com"));
        assert_eq!(branch_from(1), "z9hG4bK00000000000000000000000000000001");
    }
}
