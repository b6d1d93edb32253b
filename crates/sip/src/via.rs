//! The Via header (RFC 3261 20.42): sent-protocol with its transport (`MQTT` for mqchat's
//! devices and hub), sent-by, and the branch / received / rport parameters.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::params::Params;
use crate::scan::is_token;
use crate::uri::parse_hostport;

/// The transport token of a Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    /// mqchat's MQTT connection between a device and the hub.
    Mqtt,
    Other(String),
}

impl Transport {
    pub fn parse(s: &str) -> Transport {
        match s.to_ascii_uppercase().as_str() {
            "UDP" => Transport::Udp,
            "TCP" => Transport::Tcp,
            "TLS" => Transport::Tls,
            "SCTP" => Transport::Sctp,
            "WS" => Transport::Ws,
            "WSS" => Transport::Wss,
            "MQTT" => Transport::Mqtt,
            _ => Transport::Other(s.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Mqtt => "MQTT",
            Transport::Other(t) => t,
        }
    }

    /// True for transports that retransmit themselves (no SIP retransmissions over them).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The RFC 3261 magic cookie that starts every compliant branch.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The protocol name and version (`SIP/2.0`).
    pub protocol: String,
    pub transport: Transport,
    /// The sent-by host (name, IPv4 address or IPv6 reference).
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    /// A `SIP/2.0/{transport} host[:port];branch=...` value.
    pub fn new(transport: Transport, host: &str, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::default();
        params.set("branch", Some(branch));
        Via {
            protocol: "SIP/2.0".to_string(),
            transport,
            host: host.to_string(),
            port,
            params,
        }
    }

    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let bad = |r: &str| ParseError::header("Via", r.to_string());
        // sent-protocol: name SLASH version SLASH transport, with optional LWS around slashes.
        let mut rest = s.trim();
        let mut fields = Vec::with_capacity(3);
        for i in 0..3 {
            let end = if i < 2 {
                rest.find('/').ok_or_else(|| bad("bad sent-protocol"))?
            } else {
                rest.find(char::is_whitespace)
                    .ok_or_else(|| bad("no sent-by"))?
            };
            let field = rest[..end].trim();
            if !is_token(field) {
                return Err(bad("bad sent-protocol"));
            }
            fields.push(field);
            rest = rest[end + usize::from(i < 2)..].trim_start();
        }
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        // LWS is allowed around the colon of sent-by.
        let sent_by: String = sent_by.chars().filter(|c| !c.is_whitespace()).collect();
        let transport = Transport::parse(fields[2]);
        let (host, port) = match parse_hostport(&sent_by) {
            Ok(hostport) => hostport,
            Err(_) if transport == Transport::Mqtt => {
                mqtt_sent_by(&sent_by).ok_or_else(|| bad("bad sent-by"))?
            }
            Err(_) => return Err(bad("bad sent-by")),
        };
        let params = Params::parse(params, "Via")?;
        Ok(Via {
            protocol: format!("{}/{}", fields[0], fields[1]),
            transport,
            host,
            port,
            params,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch")
    }

    /// The `received` parameter (the source address a server saw).
    pub fn received(&self) -> Option<&str> {
        self.params.get("received")
    }

    /// The `rport` parameter: `Some(None)` when requested without a value (RFC 3581),
    /// `Some(Some(port))` when filled in by a server.
    pub fn rport(&self) -> Option<Option<u16>> {
        if !self.params.has("rport") {
            return None;
        }
        Some(self.params.get("rport").and_then(|p| p.parse().ok()))
    }

    /// Records the source address a request came from (RFC 3261 18.2.1, RFC 3581 4):
    /// `received` when it differs from sent-by (always when rport was requested), and the
    /// `rport` value when rport was requested.
    pub fn set_received(&mut self, ip: &str, port: u16) {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip_bare = ip.trim_start_matches('[').trim_end_matches(']');
        let rport_asked = self.params.has("rport");
        if rport_asked || !host.eq_ignore_ascii_case(ip_bare) {
            self.params.set("received", Some(ip_bare));
        }
        if rport_asked {
            self.params.set("rport", Some(&port.to_string()));
        }
    }

    /// True when the branch starts with the RFC 3261 magic cookie.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(BRANCH_MAGIC))
    }
}

/// The sent-by of the MQTT transport, `{device}.{user}.invalid` (mqchat spec section 19),
/// when it is not a host name: it is built from mqchat's identifiers, not from DNS labels (a
/// user id may hold `..` or end in `-`), so any non-empty run of `[A-Za-z0-9._-]` is
/// accepted as its host, with an optional port.
fn mqtt_sent_by(sent_by: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match sent_by.rsplit_once(':') {
        Some((host, port)) => {
            let valid = !port.is_empty() && port.len() <= 5;
            (host, Some(port.parse::<u16>().ok().filter(|_| valid)?))
        }
        None => (sent_by, None),
    };
    let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    (!host.is_empty() && host.chars().all(id_char)).then(|| (host.to_string(), port))
}

impl FromStr for Via {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Via, ParseError> {
        Via::parse(s)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let via = Via::parse("SIP / 2.0 / udp  host.example.com : 5070 ;branch=z9hG4bK77;rport")
            .expect("valid");
        assert_eq!(via.transport, Transport::Udp);
        assert_eq!(via.host, "host.example.com");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.branch(), Some("z9hG4bK77"));
        assert_eq!(via.rport(), Some(None));
        assert!(via.is_rfc3261_branch());
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bK77;rport"
        );

        let via = Via::parse("SIP/2.0/MQTT phone.bob.invalid;branch=z9hG4bKx").expect("valid");
        assert_eq!(via.transport, Transport::Mqtt);
        assert!(via.transport.is_reliable());
        // mqchat ids need not be DNS labels: user `a..b-`, device `tab-`.
        let via = Via::parse("SIP/2.0/MQTT tab-.a..b-.invalid;branch=z9hG4bKz").expect("valid");
        assert_eq!(via.host, "tab-.a..b-.invalid");
        assert_eq!(
            via.to_string(),
            "SIP/2.0/MQTT tab-.a..b-.invalid;branch=z9hG4bKz"
        );
        assert!(Via::parse("SIP/2.0/MQTT a/b.invalid;branch=z9hG4bKz").is_err());
        assert!(Via::parse("SIP/2.0/UDP a..b.invalid;branch=z9hG4bKz").is_err());
        let via = Via::parse("SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKy").expect("valid");
        assert_eq!(via.host, "[2001:db8::9]");
    }

    #[test]
    fn received_and_rport() {
        let mut via = Via::parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1").expect("valid");
        via.set_received("10.0.0.1", 5060);
        assert_eq!(via.received(), None);
        via.set_received("192.0.2.4", 5060);
        assert_eq!(via.received(), Some("192.0.2.4"));
        let mut via = Via::parse("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1").expect("valid");
        via.set_received("10.0.0.1", 40000);
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP 10.0.0.1;rport=40000;branch=z9hG4bK1;received=10.0.0.1"
        );
        assert_eq!(via.rport(), Some(Some(40000)));
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP ;branch=x",
            "SIP/2.0/U<P host",
            "SIP/2.0/UDP host;=1",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }
}
