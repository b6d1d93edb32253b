//! Addresses of From, To, Contact, Route and Record-Route (RFC 3261 20.10): an optional
//! display name, a URI and header parameters such as `tag`.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::params::Params;
use crate::scan::{is_token_char, quote, quoted_string};
use crate::uri::Uri;

/// `[display-name] <uri> *(;param)`, or an addr-spec with parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (after the URI): `tag`, `expires`, `q`...
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    /// Parses a value; `what` names the header for errors.
    pub fn parse_as(s: &str, what: &'static str) -> Result<NameAddr, ParseError> {
        let bad = |r: &str| ParseError::header(what, r.to_string());
        let s = s.trim();
        let (display, after_display) = if s.starts_with('"') {
            let (name, rest) = quoted_string(s).ok_or_else(|| bad("unclosed quoted string"))?;
            let rest = rest.trim_start();
            if !rest.starts_with('<') {
                return Err(bad("a display name must be followed by <uri>"));
            }
            (Some(name), rest)
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim();
            if !name
                .chars()
                .all(|c| is_token_char(c) || c == ' ' || c == '\t' || !c.is_ascii())
            {
                return Err(bad("bad display name"));
            }
            ((!name.is_empty()).then(|| name.to_string()), &s[lt..])
        } else {
            (None, s)
        };
        let (uri, params) = if let Some(inner) = after_display.strip_prefix('<') {
            let gt = inner.find('>').ok_or_else(|| bad("unclosed <"))?;
            (&inner[..gt], &inner[gt + 1..])
        } else {
            // An addr-spec cannot contain ';', ',' or '?' (RFC 3261 20.10): parameters after
            // it belong to the header.
            match after_display.find(';') {
                Some(i) => (&after_display[..i], &after_display[i..]),
                None => (after_display, ""),
            }
        };
        let uri = Uri::parse(uri).map_err(|e| bad(&e.to_string()))?;
        let params = Params::parse(params, what)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// The `tag` parameter (From and To).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag")
    }

    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }
}

impl FromStr for NameAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<NameAddr, ParseError> {
        NameAddr::parse_as(s, "address")
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, printed: &str) {
        let a = NameAddr::parse_as(input, "To").unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(a.to_string(), printed);
        assert_eq!(NameAddr::parse_as(printed, "To").as_ref(), Ok(&a));
    }

    #[test]
    fn forms() {
        check("<sip:bob@localhost>", "<sip:bob@localhost>");
        check(
            "Bob <sip:bob@localhost>;tag=abc",
            "\"Bob\" <sip:bob@localhost>;tag=abc",
        );
        check(
            "\"Bob \\\"B\\\" Smith\"<sip:bob@x>",
            "\"Bob \\\"B\\\" Smith\" <sip:bob@x>",
        );
        check("sip:bob@localhost;tag=1", "<sip:bob@localhost>;tag=1");
        check(
            "<sip:bob@localhost;gr=phone>;expires=60",
            "<sip:bob@localhost;gr=phone>;expires=60",
        );
        check(
            "  The Operator   <tel:+15550100>",
            "\"The Operator\" <tel:+15550100>",
        );
        let a = NameAddr::parse_as("<sip:a@b>;TAG=x1", "From").expect("valid");
        assert_eq!(a.tag(), Some("x1"));
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "<sip:a@b",
            "\"x <sip:a@b>",
            "\"x\" sip:a@b",
            "x@y",
            "<sip:a@b>;=1",
            "a<b <sip:x@y>",
            "<http://x>",
        ] {
            assert!(
                NameAddr::parse_as(bad, "To").is_err(),
                "{bad:?} must not parse"
            );
        }
    }
}
