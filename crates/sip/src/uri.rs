//! SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966): user, password, host (names, IPv4, IPv6
//! references), port, parameters and headers, parsed and printed.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::params::{Param, Params};

/// The URI schemes mqchat understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// A SIP, SIPS or tel URI. For tel URIs the number is in `user` and `host` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    /// The user part as received (escapes kept).
    pub user: Option<String>,
    pub password: Option<String>,
    /// A host name, an IPv4 address, or an IPv6 reference in brackets (`[::1]`).
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    /// URI headers (`?subject=x&priority=urgent`), as received.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// A `sip:` URI with a user and a host.
    pub fn sip(user: Option<&str>, host: &str) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host: host.to_string(),
            port: None,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    /// Parses a URI.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':').ok_or(ParseError::BadUri("no scheme"))?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else if !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(ParseError::UnsupportedScheme(scheme.to_string()));
        } else {
            return Err(ParseError::BadUri("bad scheme"));
        };
        if rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
        {
            return Err(ParseError::BadUri("forbidden character"));
        }
        if scheme == Scheme::Tel {
            return parse_tel(rest);
        }
        // Neither parameters nor headers may contain '@', so the first '@' ends the userinfo
        // (whose user part may contain ';' and '?').
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, password) = match u.split_once(':') {
                    Some((user, pw)) => (user, Some(pw)),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err(ParseError::BadUri("empty user"));
                }
                if !user.chars().all(user_char) || !password.unwrap_or("").chars().all(user_char) {
                    return Err(ParseError::BadUri("bad character in user"));
                }
                (Some(user.to_string()), password.map(str::to_string))
            }
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (hostpart, None),
        };
        let (hostport, params) = match hostpart.find(';') {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, ""),
        };
        let (host, port) = parse_hostport(hostport)?;
        let params = parse_uri_params(params)?;
        let headers = match headers {
            None => Vec::new(),
            Some(q) => parse_uri_headers(q)?,
        };
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The `user@host` address without port, parameters or headers (host in lower case),
    /// e.g. to name a conversation with a SIP address.
    pub fn address(&self) -> String {
        match &self.user {
            Some(u) => format!(
                "{}:{}@{}",
                self.scheme.as_str(),
                u,
                self.host.to_ascii_lowercase()
            ),
            None => format!(
                "{}:{}",
                self.scheme.as_str(),
                self.host.to_ascii_lowercase()
            ),
        }
    }

    /// The value of a URI parameter (`gr`, `transport`, `maddr`...).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// True when the URI has the `lr` parameter (a loose router, RFC 3261 16.12).
    pub fn is_loose_router(&self) -> bool {
        self.params.has("lr")
    }

    /// The transport the URI asks for (`transport` parameter), lower case.
    pub fn transport(&self) -> Option<String> {
        self.param("transport").map(str::to_ascii_lowercase)
    }
}

/// Characters of the user and password parts: unreserved, escaped and user-unreserved.
fn user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
}

fn parse_tel(rest: &str) -> Result<Uri, ParseError> {
    let (number, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if number.is_empty()
        || !number
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "+-.()*#pPwW".contains(c))
    {
        return Err(ParseError::BadUri("bad telephone number"));
    }
    Ok(Uri {
        scheme: Scheme::Tel,
        user: Some(number.to_string()),
        password: None,
        host: String::new(),
        port: None,
        params: parse_uri_params(params)?,
        headers: Vec::new(),
    })
}

/// Parses `host[:port]` where host is a name, an IPv4 address or an IPv6 reference.
pub(crate) fn parse_hostport(s: &str) -> Result<(String, Option<u16>), ParseError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or(ParseError::BadUri("unclosed IPv6 reference"))?;
        let addr = &v6[..end];
        if addr.is_empty()
            || !addr.contains(':')
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            || addr.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(ParseError::BadUri("bad IPv6 reference"));
        }
        let after = &v6[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or(ParseError::BadUri("junk after IPv6 reference"))?,
            ),
        };
        (&s[..end + 2], port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(ParseError::BadUri("empty host"));
    }
    if !host.starts_with('[') && !valid_hostname(host) {
        return Err(ParseError::BadUri("bad host"));
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()) {
                return Err(ParseError::BadUri("bad port"));
            }
            Some(
                p.parse::<u16>()
                    .map_err(|_| ParseError::BadUri("port out of range"))?,
            )
        }
    };
    Ok((host.to_string(), port))
}

/// A host name (labels of alphanumerics and hyphens, separated by dots) or an IPv4 address.
fn valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn parse_uri_params(s: &str) -> Result<Params, ParseError> {
    let mut params = Vec::new();
    if s.is_empty() {
        return Ok(Params(params));
    }
    let rest = s
        .strip_prefix(';')
        .ok_or(ParseError::BadUri("bad parameters"))?;
    for part in rest.split(';') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        if name.is_empty() || !name.chars().all(param_char) {
            return Err(ParseError::BadUri("bad parameter name"));
        }
        if let Some(v) = value
            && (v.is_empty() || !v.chars().all(param_char))
        {
            return Err(ParseError::BadUri("bad parameter value"));
        }
        params.push(Param {
            name: name.to_string(),
            value: value.map(str::to_string),
        });
    }
    Ok(Params(params))
}

fn param_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%[]/:&+$".contains(c)
}

fn parse_uri_headers(q: &str) -> Result<Vec<(String, String)>, ParseError> {
    q.split('&')
        .map(|h| {
            let (n, v) = h
                .split_once('=')
                .ok_or(ParseError::BadUri("bad URI header"))?;
            let ok = |s: &str, empty_ok: bool| {
                (empty_ok || !s.is_empty())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()%[]/?:+$".contains(c))
            };
            if !ok(n, false) || !ok(v, true) {
                return Err(ParseError::BadUri("bad URI header"));
            }
            Ok((n.to_string(), v.to_string()))
        })
        .collect()
}

impl FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Uri, ParseError> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if self.scheme == Scheme::Tel {
            write!(f, "{}", self.user.as_deref().unwrap_or(""))?;
        } else {
            if let Some(user) = &self.user {
                write!(f, "{user}")?;
                if let Some(pw) = &self.password {
                    write!(f, ":{pw}")?;
                }
                write!(f, "@")?;
            }
            write!(f, "{}", self.host)?;
            if let Some(port) = self.port {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, printed: &str) {
        let uri = Uri::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(uri.to_string(), printed);
        assert_eq!(Uri::parse(printed).as_ref(), Ok(&uri));
    }

    #[test]
    fn valid_uris() {
        check("sip:bob@localhost", "sip:bob@localhost");
        check("SIP:bob@Example.COM:5070", "sip:bob@Example.COM:5070");
        check(
            "sips:alice:secret@10.0.0.1;transport=tcp",
            "sips:alice:secret@10.0.0.1;transport=tcp",
        );
        check("sip:[2001:db8::10]:5060;lr", "sip:[2001:db8::10]:5060;lr");
        check("sip:bob@localhost;gr=phone", "sip:bob@localhost;gr=phone");
        check(
            "sip:carol@example.net?subject=hi&priority=urgent",
            "sip:carol@example.net?subject=hi&priority=urgent",
        );
        check(
            "sip:user;par=u%40example.net@example.com",
            "sip:user;par=u%40example.net@example.com",
        );
        check("sip:example.com", "sip:example.com");
        check(
            "tel:+1-201-555-0123;phone-context=example.com",
            "tel:+1-201-555-0123;phone-context=example.com",
        );
        check(
            "sip:%61lice@atlanta.com;maddr=[::1]",
            "sip:%61lice@atlanta.com;maddr=[::1]",
        );
    }

    #[test]
    fn accessors() {
        let uri = Uri::parse("sip:bob@LocalHost:5061;gr=phone;LR;transport=TCP").expect("valid");
        assert_eq!(uri.param("GR"), Some("phone"));
        assert!(uri.is_loose_router());
        assert_eq!(uri.transport().as_deref(), Some("tcp"));
        assert_eq!(uri.address(), "sip:bob@localhost");
    }

    #[test]
    fn invalid_uris() {
        for bad in [
            "bob@localhost",
            "sip:",
            "sip:@host",
            "sip:bob@",
            "sip:bob@host:",
            "sip:bob@host:99999",
            "sip:bob@host:5o60",
            "sip:bob@[::1",
            "sip:bob@[zz::1]",
            "sip:bob@[::1]x",
            "sip:bob@ho st",
            "sip:bob@host;=x",
            "sip:bob@host;a=",
            "sip:bob@host?x",
            "sip:b<ob@host",
            "sip:bob@-host",
            "tel:",
            "tel:xyz",
            "1sip:x@y",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} must not parse");
        }
        assert_eq!(
            Uri::parse("http://example.com"),
            Err(ParseError::UnsupportedScheme("http".to_string()))
        );
    }
}
