//! `;name=value` parameter lists of URIs and header values, in order, names case-insensitive.

use std::fmt;

use crate::error::ParseError;
use crate::scan::{has_control, is_token, split_outside_quotes};

/// One parameter: a name and an optional value (kept as received, quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// An ordered list of parameters. Lookups ignore the case of names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// Parses `;a=1;b;c="x;y"` (the leading `;` included). `what` names the caller for
    /// errors.
    pub(crate) fn parse(s: &str, what: &'static str) -> Result<Params, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Params::default());
        }
        let Some(rest) = s.strip_prefix(';') else {
            return Err(ParseError::header(what, "parameters must start with ';'"));
        };
        let mut params = Vec::new();
        for part in split_outside_quotes(rest, ';') {
            let part = part.trim();
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (part, None),
            };
            if !is_token(name) {
                return Err(ParseError::header(
                    what,
                    format!("bad parameter name {name:?}"),
                ));
            }
            if let Some(v) = value
                && !valid_value(v)
            {
                return Err(ParseError::header(
                    what,
                    format!("bad value of parameter {name:?}"),
                ));
            }
            params.push(Param {
                name: name.to_string(),
                value: value.map(str::to_string),
            });
        }
        Ok(Params(params))
    }

    /// The parameter's value; `None` when absent or present without a value. Quotes around a
    /// quoted value are removed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).and_then(|p| p.value.as_deref()).map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    }

    /// True when the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Sets the parameter (replacing the first one of that name, or appending it).
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: name.to_string(),
                value,
            }),
        }
    }

    /// Removes every parameter of that name; true when one was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
        self.0.len() != before
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A parameter value: a token-like word (IPv6 references and the characters URIs allow
/// included) or a complete quoted string.
fn valid_value(v: &str) -> bool {
    if v.starts_with('"') {
        return v.len() >= 2 && v.ends_with('"') && !has_control(v);
    }
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~[]/:&$".contains(c) || !c.is_ascii())
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match &p.value {
                Some(v) => write!(f, ";{}={v}", p.name)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_get_set_print() {
        let mut p = Params::parse(";Branch=z9hG4bK1;rport;q=\"a;b\"", "Via").expect("valid");
        assert_eq!(p.get("branch"), Some("z9hG4bK1"));
        assert!(p.has("RPORT"));
        assert_eq!(p.get("rport"), None);
        assert_eq!(p.get("q"), Some("a;b"));
        p.set("rport", Some("5060"));
        p.set("received", Some("10.0.0.1"));
        assert!(p.remove("q"));
        assert_eq!(
            p.to_string(),
            ";Branch=z9hG4bK1;rport=5060;received=10.0.0.1"
        );
        assert!(Params::parse(";=x", "Via").is_err());
        assert!(Params::parse(";a=", "Via").is_err());
        assert!(Params::parse(";a=b c", "Via").is_err());
        assert!(Params::parse("a", "Via").is_err());
    }
}
