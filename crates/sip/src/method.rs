//! Request methods (case-sensitive tokens, RFC 3261 7.1) and the CSeq header.

use std::fmt;

use crate::error::ParseError;
use crate::scan::is_token;

/// A SIP method. Unknown methods are kept as extension methods.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Message,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Publish,
    Extension(String),
}

impl Method {
    /// Parses a method token (case-sensitive: `invite` is an extension method).
    pub fn parse(s: &str) -> Result<Method, ParseError> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other if is_token(other) => Method::Extension(other.to_string()),
            _ => return Err(ParseError::BadStartLine("bad method")),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Extension(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CSeq header: a sequence number and the request's method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let mut parts = s.split_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::header("CSeq", "expected a number and a method"));
        };
        if seq.is_empty() || seq.len() > 10 || !seq.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::header("CSeq", "bad sequence number"));
        }
        let seq = seq
            .parse::<u32>()
            .map_err(|_| ParseError::header("CSeq", "sequence number out of range"))?;
        let method = Method::parse(method).map_err(|_| ParseError::header("CSeq", "bad method"))?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_cseq() {
        assert_eq!(Method::parse("INVITE"), Ok(Method::Invite));
        assert_eq!(
            Method::parse("invite"),
            Ok(Method::Extension("invite".into()))
        );
        assert!(Method::parse("IN VITE").is_err());
        assert!(Method::parse("").is_err());
        let c = CSeq::parse("  4711   INVITE ").expect("valid");
        assert_eq!(
            c,
            CSeq {
                seq: 4711,
                method: Method::Invite
            }
        );
        assert_eq!(c.to_string(), "4711 INVITE");
        assert!(CSeq::parse("4294967296 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
        assert!(CSeq::parse("1 IN<VITE").is_err());
    }
}
