//! Message encryption for Web Push (RFC 8291): ECDH P-256 with the subscription's key, HKDF
//! with its auth secret, and one `aes128gcm` record (RFC 8188).

use aes_gcm::aead::{Aead as _, KeyInit as _};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::Generate as _;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The record size announced in the header. The whole message is one record, so this only
/// has to be at least the ciphertext's length.
const RECORD_SIZE: u32 = 4096;
/// Push services accept 4096 bytes of body: 86 of header, 16 of tag, 1 of delimiter.
pub(crate) const MAX_PLAINTEXT: usize = 4096 - 86 - 16 - 1;
/// Plaintexts are padded to a multiple of this, so lengths say less about the content.
const PAD_BLOCK: usize = 64;

/// Why a message could not be encrypted for a subscription.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum EceError {
    #[error("the subscription's p256dh is not a P-256 public key")]
    BadPublicKey,
    #[error("the subscription's auth secret is not 16 bytes")]
    BadAuthSecret,
    #[error("the payload has {0} bytes, more than Web Push carries")]
    TooLarge(usize),
    #[error("no randomness from the system")]
    Random,
}

/// The sender's side of one message: its ephemeral key and salt. Random in production; fixed
/// in the RFC's test vector.
pub(crate) struct Sender {
    secret: SecretKey,
    salt: [u8; 16],
}

impl Sender {
    pub fn random() -> Result<Self, EceError> {
        // A fresh key per message (RFC 8291 section 3.1); kept as a `SecretKey` so the test
        // vector's fixed key goes through the same code.
        let secret = SecretKey::try_generate().map_err(|_| EceError::Random)?;
        let salt: [u8; 16] = rand::random();
        Ok(Sender { secret, salt })
    }

    #[cfg(test)]
    fn fixed(secret: SecretKey, salt: [u8; 16]) -> Self {
        Sender { secret, salt }
    }
}

/// Encrypts `plaintext` for the subscription (`ua_public` uncompressed, `auth` 16 bytes),
/// returning the `aes128gcm` body: salt, record size, key id (the sender's public key) and
/// the single record.
pub(crate) fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    sender: Sender,
    pad: bool,
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLarge(plaintext.len()));
    }
    if auth.len() != 16 {
        return Err(EceError::BadAuthSecret);
    }
    let ua_key = PublicKey::from_sec1_bytes(ua_public).map_err(|_| EceError::BadPublicKey)?;
    // Only the uncompressed form is allowed in the key derivation (RFC 8291 section 3.1).
    if ua_public.len() != 65 {
        return Err(EceError::BadPublicKey);
    }
    let as_public = sender.secret.public_key().to_sec1_bytes();
    let shared = sender.secret.diffie_hellman(&ua_key);

    // RFC 8291 section 3.3: combine the shared secret with the auth secret.
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(&as_public);
    let mut ikm = [0u8; 32];
    expand(auth, shared.raw_secret_bytes(), &key_info, &mut ikm);

    // RFC 8188 section 2.2 and 2.3: content-encryption key and nonce from the salt.
    let mut cek = [0u8; 16];
    expand(
        &sender.salt,
        &ikm,
        b"Content-Encoding: aes128gcm\0",
        &mut cek,
    );
    let mut nonce = [0u8; 12];
    expand(&sender.salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce);

    // One record, so the last: the delimiter is 2, then zero padding.
    let mut record = Vec::with_capacity(plaintext.len() + PAD_BLOCK + 16);
    record.extend_from_slice(plaintext);
    record.push(2);
    if pad {
        let padded = (record.len().div_ceil(PAD_BLOCK) * PAD_BLOCK).min(MAX_PLAINTEXT + 1);
        record.resize(padded, 0);
    }
    let cipher = Aes128Gcm::new(&cek.into());
    // The sequence number of the first record is 0, so the nonce is used as derived.
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), record.as_slice())
        .map_err(|_| EceError::TooLarge(plaintext.len()))?;

    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + sealed.len());
    body.extend_from_slice(&sender.salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

fn expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), ikm);
    // Outputs of at most 32 bytes are always within HKDF-SHA-256's limit (255 × 32).
    if hkdf.expand(info, out).is_err() {
        unreachable!("HKDF output of {} bytes", out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{b64url, b64url_decode};

    fn decode(text: &str) -> Vec<u8> {
        b64url_decode(text).unwrap_or_default()
    }

    /// RFC 8291 Appendix A: the published message, byte for byte.
    #[test]
    fn rfc_8291_appendix_a() {
        let secret = SecretKey::from_slice(&decode("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
            .unwrap_or_else(|_| panic!("as_private"));
        let salt: [u8; 16] = decode("DGv6ra1nlYgDCS1FRnbzlw")
            .try_into()
            .unwrap_or_default();
        let body = encrypt(
            b"When I grow up, I want to be a watermelon",
            &decode(
                "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            ),
            &decode("BTBZMqHH6r4Tts7J_aSIgg"),
            Sender::fixed(secret, salt),
            false,
        );
        assert_eq!(
            body.map(|body| b64url(&body)),
            Ok(concat!(
                "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
                "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
                "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
            )
            .to_owned())
        );
    }

    #[test]
    fn bad_subscriptions_are_refused() {
        let ua = decode(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        );
        let sender = || Sender::random().unwrap_or_else(|_| panic!("random"));
        assert_eq!(
            encrypt(b"x", &ua[..64], &[0; 16], sender(), true),
            Err(EceError::BadPublicKey)
        );
        assert_eq!(
            encrypt(b"x", &ua, &[0; 15], sender(), true),
            Err(EceError::BadAuthSecret)
        );
        let big = vec![b'x'; MAX_PLAINTEXT + 1];
        assert_eq!(
            encrypt(&big, &ua, &[0; 16], sender(), true),
            Err(EceError::TooLarge(MAX_PLAINTEXT + 1))
        );
        let most = vec![b'x'; MAX_PLAINTEXT];
        let body = encrypt(&most, &ua, &[0; 16], sender(), true).unwrap_or_default();
        assert_eq!(body.len(), 4096);
    }
}
