//! Digest authentication of SIP peers (RFC 2617 / RFC 7616 with MD5, RFC 3261 22): nonces
//! the gateway can check without keeping state, challenges, and the check of a peer's
//! `Proxy-Authorization`.

use std::time::Duration;

use md5::{Digest as _, Md5};
use mqchat_proto::Moment;

/// How long a nonce stays valid; an older one gets a new challenge with `stale=true`.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The verdict on a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The credentials are right.
    Valid,
    /// Right credentials with an expired nonce: challenge again with `stale=true`.
    Stale,
    /// Missing or wrong: challenge.
    Invalid,
}

/// The fields of a `Digest` credentials header.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    realm: String,
    nonce: String,
    uri: String,
    response: String,
    algorithm: Option<String>,
    qop: Option<String>,
    nc: Option<String>,
    cnonce: Option<String>,
}

impl Credentials {
    /// Parses `Digest username="...", realm="...", ...`.
    pub(crate) fn parse(value: &str) -> Option<Credentials> {
        let rest = value.trim();
        let (scheme, params) = rest.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials::default();
        for part in split_params(params) {
            let (name, value) = part.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
                .to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "username" => c.username = value,
                "realm" => c.realm = value,
                "nonce" => c.nonce = value,
                "uri" => c.uri = value,
                "response" => c.response = value.to_ascii_lowercase(),
                "algorithm" => c.algorithm = Some(value),
                "qop" => c.qop = Some(value),
                "nc" => c.nc = Some(value),
                "cnonce" => c.cnonce = Some(value),
                _ => {}
            }
        }
        (!c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty()).then_some(c)
    }
}

/// Splits on commas outside quoted strings.
fn split_params(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Makes and checks nonces: `{time}.{md5(secret:time)}`, so no nonce table is kept.
#[derive(Debug, Clone)]
pub(crate) struct Nonces {
    secret: String,
}

impl Nonces {
    pub(crate) fn new(secret: String) -> Nonces {
        Nonces { secret }
    }

    fn make(&self, now: Moment) -> String {
        let t = now.since_origin().as_secs();
        format!("{t:x}.{}", md5_hex(&format!("{}:{t:x}", self.secret)))
    }

    /// `Some(true)` for a nonce this gateway made that is still fresh, `Some(false)` for one
    /// it made that expired, `None` for anything else.
    fn fresh(&self, nonce: &str, now: Moment) -> Option<bool> {
        let (t, mac) = nonce.split_once('.')?;
        if md5_hex(&format!("{}:{t}", self.secret)) != mac {
            return None;
        }
        let t = u64::from_str_radix(t, 16).ok()?;
        Some(now.since_origin().as_secs().saturating_sub(t) <= NONCE_LIFETIME.as_secs())
    }

    /// The value of a `Proxy-Authenticate` header.
    pub(crate) fn challenge(&self, realm: &str, now: Moment, stale: bool) -> String {
        format!(
            "Digest realm=\"{realm}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{}",
            self.make(now),
            if stale { ", stale=true" } else { "" }
        )
    }

    /// Checks credentials for `method` against the expected username and password.
    pub(crate) fn check(
        &self,
        credentials: &Credentials,
        method: &str,
        realm: &str,
        username: &str,
        password: &str,
        now: Moment,
    ) -> Verdict {
        if credentials.username != username
            || credentials.realm != realm
            || credentials
                .algorithm
                .as_deref()
                .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        {
            return Verdict::Invalid;
        }
        let Some(fresh) = self.fresh(&credentials.nonce, now) else {
            return Verdict::Invalid;
        };
        let ha1 = md5_hex(&format!("{username}:{realm}:{password}"));
        let ha2 = md5_hex(&format!("{method}:{}", credentials.uri));
        let expected = match (&credentials.qop, &credentials.nc, &credentials.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => md5_hex(
                &format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", credentials.nonce),
            ),
            (None, _, _) => md5_hex(&format!("{ha1}:{}:{ha2}", credentials.nonce)),
            _ => return Verdict::Invalid,
        };
        match (expected == credentials.response, fresh) {
            (true, true) => Verdict::Valid,
            (true, false) => Verdict::Stale,
            (false, _) => Verdict::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(nonce: &str, qop: bool) -> String {
        let ha1 = md5_hex("pbx:localhost:secret");
        let ha2 = md5_hex("INVITE:sip:bob@localhost");
        if qop {
            let r = md5_hex(&format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
            format!(
                "Digest username=\"pbx\", realm=\"localhost\", nonce=\"{nonce}\", uri=\"sip:bob@localhost\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\""
            )
        } else {
            let r = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Digest username=\"pbx\",realm=\"localhost\",nonce=\"{nonce}\",uri=\"sip:bob@localhost\",response=\"{r}\""
            )
        }
    }

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn challenge_and_check() {
        let nonces = Nonces::new("s3cret".into());
        let now = Moment::from_millis(1_000_000);
        let challenge = nonces.challenge("localhost", now, false);
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a nonce");
        for qop in [true, false] {
            let c = Credentials::parse(&answer(nonce, qop)).expect("parses");
            let check = |password: &str, at: u64, method: &str| {
                nonces.check(
                    &c,
                    method,
                    "localhost",
                    "pbx",
                    password,
                    Moment::from_origin(Duration::from_secs(at)),
                )
            };
            assert_eq!(check("secret", 1000, "INVITE"), Verdict::Valid);
            assert_eq!(check("wrong", 1000, "INVITE"), Verdict::Invalid);
            assert_eq!(check("secret", 1000, "MESSAGE"), Verdict::Invalid);
            assert_eq!(check("secret", 1000 + 301, "INVITE"), Verdict::Stale);
        }
        // A nonce this gateway did not make.
        let c = Credentials::parse(&answer("1.deadbeef", false)).expect("parses");
        assert_eq!(
            nonces.check(&c, "INVITE", "localhost", "pbx", "secret", now),
            Verdict::Invalid
        );
        assert_eq!(Credentials::parse("Basic abc"), None);
        assert_eq!(Credentials::parse("Digest username=\"x\""), None);
    }
}
