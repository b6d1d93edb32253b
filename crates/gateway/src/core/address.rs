//! The gateway's own addresses as SIP writes them: its Via on the requests it sends, its
//! Record-Route on INVITEs, and the recognition of both (and of Route entries naming it) in
//! what comes back.

use std::net::SocketAddr;

use mqchat_sip::{Message, NameAddr, Transport, Uri, Via};

use super::Core;
use crate::remote::{Remote, SipTransport};

impl Core {
    fn local(&self, transport: SipTransport) -> SocketAddr {
        let (first, second) = match transport {
            SipTransport::Udp => (self.config.local_udp, self.config.local_tcp),
            SipTransport::Tcp => (self.config.local_tcp, self.config.local_udp),
        };
        first
            .or(second)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    pub(super) fn local_remote(&self, transport: SipTransport) -> Remote {
        Remote {
            transport,
            addr: self.local(transport),
        }
    }

    pub(super) fn own_via(&mut self, transport: SipTransport) -> Via {
        let local = self.local(transport);
        let t = match transport {
            SipTransport::Udp => Transport::Udp,
            SipTransport::Tcp => Transport::Tcp,
        };
        let mut via = Via::new(t, &host_text(local), Some(local.port()), &self.ids.branch());
        via.params.set("rport", None);
        via
    }

    pub(super) fn is_own_via(&self, via: Option<&Via>) -> bool {
        via.is_some_and(|v| self.is_own_address(&v.host, v.port))
    }

    fn is_own_address(&self, host: &str, port: Option<u16>) -> bool {
        [self.config.local_udp, self.config.local_tcp]
            .into_iter()
            .flatten()
            .any(|a| host_text(a).eq_ignore_ascii_case(host) && port.unwrap_or(5060) == a.port())
    }

    pub(super) fn record_route(&self, transport: SipTransport) -> NameAddr {
        let local = self.local(transport);
        let mut uri = Uri::sip(None, &host_text(local));
        uri.port = Some(local.port());
        if transport == SipTransport::Tcp {
            uri.params.set("transport", Some("tcp"));
        }
        uri.params.set("lr", None);
        NameAddr::new(uri)
    }

    /// Removes the Route entries on top that name this gateway (RFC 3261 16.4).
    pub(super) fn pop_own_routes(&self, request: &mut Message) {
        while let Some(route) = request.routes().into_iter().next() {
            if route.uri.user.is_none() && self.is_own_address(&route.uri.host, route.uri.port) {
                request.pop_route();
            } else {
                break;
            }
        }
    }
}

/// An IP address as a SIP host (IPv6 in brackets).
fn host_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}
