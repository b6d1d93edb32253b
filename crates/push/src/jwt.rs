//! Compact JWS signing for the three JWTs the providers want: RS256 (Google's OAuth assertion)
//! and ES256 (the APNs provider token and VAPID).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use serde_json::Value;

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding (subscriptions and keys come both ways).
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 section 3.3).
pub(crate) fn sign_rs256(
    key: &rsa::PrivateKey,
    header: &Value,
    claims: &Value,
) -> Result<String, rsa::Error> {
    let input = signing_input(header, claims);
    let signature = key.pkcs1v15_sign::<sha2::Sha256>(input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(&signature)))
}

/// ES256: ECDSA P-256 with SHA-256, the signature as r ‖ s (RFC 7518 section 3.4).
pub(crate) fn sign_es256(key: &p256::ecdsa::SigningKey, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature.to_bytes()))
}

/// Seconds since the Unix epoch, for `iat` and `exp`.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip_with_and_without_padding() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(b64url_decode("-_8="), Some(vec![0xfb, 0xff]));
        assert_eq!(b64url_decode("not base64!"), None);
    }
}
