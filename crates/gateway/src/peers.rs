//! The configured SIP peers: who may use the gateway (source addresses, digest credentials)
//! and where a destination the hub names belongs.

use std::net::IpAddr;

use serde::Deserialize;

use crate::remote::Remote;

/// One SIP peer (a PBX, a SIP provider, a phone): who may send through the gateway, and
/// where requests for its domains go.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SipPeer {
    /// The peer's name (in logs and in the gateway's packets to the hub).
    pub name: String,
    /// Source addresses allowed, as IP addresses or CIDR blocks (`10.0.0.0/8`). Empty: any
    /// source that authenticates with `username` and `password`.
    pub addresses: Vec<String>,
    /// Digest credentials (RFC 7616, MD5) the peer must answer challenges with.
    pub username: Option<String>,
    pub password: Option<String>,
    /// SIP domains routed to this peer (`example.net`).
    pub domains: Vec<String>,
    /// Where requests to this peer go: `udp:ip:port` or `tcp:ip:port`.
    pub outbound: Option<String>,
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
pub struct Peers {
    peers: Vec<Peer>,
}

impl Peers {
    /// Builds the table from the configured peers (a bad address or outbound target is an
    /// error).
    pub fn new(configured: &[SipPeer]) -> Result<Peers, String> {
        let mut peers = Vec::new();
        for p in configured {
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

/// Parses an IP address or a CIDR block into (network, prefix length).
pub fn parse_ip_block(text: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: bad prefix length"))?,
    };
    Ok((ip, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_lookups() {
        let config = [
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
        ];
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
