//! The configured SIP peers: who may use the gateway (source addresses, digest credentials)
//! and where a destination the hub names belongs.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::config::{SipConfig, SipTransport, parse_ip_block, parse_sip_target};

/// A transport address: where a SIP message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Remote {
    pub(crate) transport: SipTransport,
    pub(crate) addr: SocketAddr,
}

impl Remote {
    pub(crate) fn parse(text: &str) -> Result<Remote, String> {
        let (transport, addr) = parse_sip_target(text)?;
        Ok(Remote { transport, addr })
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.transport {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
        };
        write!(f, "{t}:{}", self.addr)
    }
}

/// One configured peer.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) name: String,
    blocks: Vec<(IpAddr, u8)>,
    pub(crate) credentials: Option<(String, String)>,
    outbound: Option<Remote>,
}

impl Peer {
    fn contains(&self, ip: IpAddr) -> bool {
        self.blocks
            .iter()
            .any(|(net, prefix)| in_block(ip, *net, *prefix))
    }
}

/// True when `ip` is inside `net/prefix` (IPv4-mapped IPv6 addresses count as IPv4).
fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The peer table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peers {
    peers: Vec<Peer>,
}

impl Peers {
    /// Builds the table from checked settings ([`SipConfig::validate`]).
    pub(crate) fn new(config: &SipConfig) -> Result<Peers, String> {
        let mut peers = Vec::new();
        for p in &config.peers {
            let blocks = p
                .addresses
                .iter()
                .map(|a| parse_ip_block(a))
                .collect::<Result<Vec<_>, _>>()?;
            let outbound = p.outbound.as_deref().map(Remote::parse).transpose()?;
            let credentials = p.username.clone().zip(p.password.clone());
            peers.push(Peer {
                name: p.name.clone(),
                blocks,
                credentials,
                outbound,
            });
        }
        Ok(Peers { peers })
    }

    /// The peer a source address belongs to.
    pub(crate) fn by_source(&self, ip: IpAddr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.contains(ip))
    }

    /// Peers that authenticate from any address (credentials and no address list).
    pub(crate) fn roaming(&self) -> impl Iterator<Item = &Peer> {
        self.peers
            .iter()
            .filter(|p| p.blocks.is_empty() && p.credentials.is_some())
    }

    /// The peer a destination belongs to: its outbound address, or one of its addresses.
    pub(crate) fn by_destination(&self, remote: Remote) -> Option<&Peer> {
        self.peers
            .iter()
            .find(|p| p.outbound == Some(remote))
            .or_else(|| self.by_source(remote.addr.ip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipPeer;

    #[test]
    fn blocks_and_lookups() {
        let config = SipConfig {
            peers: vec![
                SipPeer {
                    name: "lan".into(),
                    addresses: vec!["10.1.0.0/16".into(), "::1".into()],
                    outbound: Some("udp:10.1.2.3:5060".into()),
                    ..SipPeer::default()
                },
                SipPeer {
                    name: "roamer".into(),
                    username: Some("u".into()),
                    password: Some("p".into()),
                    ..SipPeer::default()
                },
            ],
            ..SipConfig::default()
        };
        let peers = Peers::new(&config).expect("valid");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            peers.by_source(ip("10.1.200.4")).map(|p| p.name.as_str()),
            Some("lan")
        );
        assert_eq!(
            peers
                .by_source(ip("::ffff:10.1.0.9"))
                .map(|p| p.name.as_str()),
            Some("lan")
        );
        assert_eq!(
            peers.by_source(ip("::1")).map(|p| p.name.as_str()),
            Some("lan")
        );
        assert!(peers.by_source(ip("10.2.0.1")).is_none());
        assert!(peers.by_source(ip("::2")).is_none());
        assert_eq!(peers.roaming().count(), 1);
        let dest = Remote::parse("udp:10.1.2.3:5060").expect("valid");
        assert_eq!(dest.to_string(), "udp:10.1.2.3:5060");
        assert_eq!(
            peers.by_destination(dest).map(|p| p.name.as_str()),
            Some("lan")
        );
        assert!(in_block(ip("192.168.1.1"), ip("0.0.0.0"), 0));
    }
}
