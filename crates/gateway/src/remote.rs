//! Transport addresses: where a SIP message came from or goes to, and the `udp:ip:port` /
//! `tcp:ip:port` text that configuration and the hub's `destination` use for them.

use std::fmt;
use std::net::SocketAddr;

/// The transport of a SIP target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SipTransport {
    /// Datagrams: the gateway retransmits.
    Udp,
    /// A stream (one per peer address): reliable, no retransmissions.
    Tcp,
}

/// A transport address: where a SIP message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Remote {
    /// UDP or TCP.
    pub transport: SipTransport,
    /// The peer's IP address and port.
    pub addr: SocketAddr,
}

impl Remote {
    /// Parses `udp:ip:port` or `tcp:ip:port`, the form [`Remote`] displays as.
    pub fn parse(text: &str) -> Result<Remote, String> {
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

/// Parses `udp:ip:port` or `tcp:ip:port` (IPv6 in brackets).
pub fn parse_sip_target(text: &str) -> Result<(SipTransport, SocketAddr), String> {
    let (transport, addr) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected udp:ip:port or tcp:ip:port"))?;
    let transport = match transport {
        "udp" => SipTransport::Udp,
        "tcp" => SipTransport::Tcp,
        other => return Err(format!("{text:?}: transport {other:?} (use udp or tcp)")),
    };
    let addr = addr
        .parse()
        .map_err(|_| format!("{text:?}: expected udp:ip:port or tcp:ip:port"))?;
    Ok((transport, addr))
}
