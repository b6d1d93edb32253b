//! Web Push against a local push service that checks VAPID (RFC 8292) and decrypts the
//! `aes128gcm` body (RFC 8291) with the subscription's private key and auth secret.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Captured, TestServer, b64url, b64url_decode, es256_verifies, open_jwt, unix_now};
use mqchat_push::{Notification, Outcome, PushConfig, Senders, Target, WebPushConfig};
use p256::elliptic_curve::Generate as _;
use p256::{PublicKey, SecretKey};

/// A browser's subscription: its key pair and auth secret.
struct Browser {
    secret: SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        Browser {
            secret: SecretKey::try_generate().unwrap(),
            auth: rand::random(),
        }
    }

    fn target(&self, endpoint: String) -> Target {
        Target::WebPush {
            endpoint,
            p256dh: b64url(&self.secret.public_key().to_sec1_bytes()),
            auth: b64url(&self.auth),
        }
    }

    /// What the browser does with a push message: RFC 8291 decryption, with ring's HKDF and
    /// AES-GCM.
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        use ring::{aead, hkdf};
        let salt = &body[..16];
        let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap());
        let id_len = body[20] as usize;
        assert_eq!(
            id_len, 65,
            "the key id is the sender's uncompressed public key"
        );
        let as_public = &body[21..21 + id_len];
        let ciphertext = &body[21 + id_len..];
        assert!(ciphertext.len() <= record_size as usize, "one record");

        let shared = self
            .secret
            .diffie_hellman(&PublicKey::from_sec1_bytes(as_public).unwrap());
        let ua_public = self.secret.public_key().to_sec1_bytes();
        let expand = |salt: &[u8], ikm: &[u8], info: &[u8], len: usize| -> Vec<u8> {
            struct Len(usize);
            impl hkdf::KeyType for Len {
                fn len(&self) -> usize {
                    self.0
                }
            }
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
            let info = [info];
            let okm = prk.expand(&info, Len(len)).unwrap();
            let mut out = vec![0; len];
            okm.fill(&mut out).unwrap();
            out
        };
        let key_info = [b"WebPush: info\0".as_slice(), &ua_public, as_public].concat();
        let ikm = expand(&self.auth, shared.raw_secret_bytes(), &key_info, 32);
        let cek = expand(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16);
        let nonce = expand(salt, &ikm, b"Content-Encoding: nonce\0", 12);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
        let mut record = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                aead::Aad::empty(),
                &mut record,
            )
            .expect("the record decrypts with the subscription's keys");
        // Strip the zero padding, then the last-record delimiter.
        let end = plain.iter().rposition(|&b| b != 0).unwrap();
        assert_eq!(plain[end], 2, "last-record delimiter");
        plain[..end].to_vec()
    }
}

struct Setup {
    server: TestServer,
    senders: Senders,
    vapid_public: Vec<u8>,
}

async fn setup() -> Setup {
    let server = TestServer::start(common::status_from_path).await;
    let vapid = SecretKey::try_generate().unwrap();
    let config = PushConfig {
        web_push: Some(WebPushConfig {
            vapid_private_key: b64url(&vapid.to_bytes()),
            subject: "mailto:ops@example.com".into(),
        }),
        // The test servers are on loopback.
        allow_private_endpoints: true,
        extra_ca_file: Some(server.ca_file.clone()),
        ..PushConfig::default()
    };
    let senders = Senders::from_config(&config).unwrap();
    let vapid_public = vapid.public_key().to_sec1_bytes().to_vec();
    assert_eq!(
        senders.web_push().unwrap().public_key(),
        b64url(&vapid_public)
    );
    Setup {
        server,
        senders,
        vapid_public,
    }
}

/// Checks the VAPID header as a push service does: signature with `k`, audience, expiry.
fn check_vapid(request: &Captured, origin: &str, vapid_public: &[u8]) -> String {
    let authorization = request.header("authorization").unwrap();
    let rest = authorization.strip_prefix("vapid ").expect("vapid scheme");
    let (token, key) = rest.split_once(", ").unwrap();
    let token = token.strip_prefix("t=").unwrap();
    let key = b64url_decode(key.strip_prefix("k=").unwrap());
    assert_eq!(key, vapid_public, "k is the application server key");
    let (header, claims) = open_jwt(token, |input, signature| {
        es256_verifies(&key, input, signature)
    });
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["aud"], origin);
    assert_eq!(claims["sub"], "mailto:ops@example.com");
    let exp = claims["exp"].as_u64().unwrap();
    let now = unix_now();
    assert!(
        exp > now && exp <= now + 24 * 3600,
        "exp within 24 h: {exp}"
    );
    token.to_owned()
}

#[tokio::test]
async fn a_push_decrypts_to_the_exact_payload() {
    let mut setup = setup().await;
    let browser = Browser::new();
    let target = browser.target(setup.server.url("/wpush/v2/abc"));
    let notification = Notification::new("alice", 42).with_preview("see you at 8");

    let outcome = setup.senders.send(&target, false, &notification).await;
    assert_eq!(outcome, Outcome::Delivered);
    let request = setup.server.next_request().await;
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.uri.path(), "/wpush/v2/abc");
    let first_token = check_vapid(&request, &setup.server.origin(), &setup.vapid_public);
    assert_eq!(request.header("content-encoding"), Some("aes128gcm"));
    assert_eq!(request.header("ttl"), Some("86400"));
    assert_eq!(request.header("urgency"), Some("normal"));
    assert_eq!(request.header("topic"), Some("alice"));
    assert_eq!(
        browser.decrypt(&request.body),
        br#"{"conversation":"alice","seq":42,"count":1}"#,
        "no message text without the device's opt-in"
    );

    // With the opt-in, the preview is there and the push is urgent.
    let outcome = setup.senders.send(&target, true, &notification).await;
    assert_eq!(outcome, Outcome::Delivered);
    let request = setup.server.next_request().await;
    let second_token = check_vapid(&request, &setup.server.origin(), &setup.vapid_public);
    assert_eq!(first_token, second_token, "the VAPID token is reused");
    assert_eq!(request.header("urgency"), Some("high"));
    assert_eq!(
        browser.decrypt(&request.body),
        r#"{"conversation":"alice","seq":42,"count":1,"preview":"see you at 8"}"#.as_bytes()
    );
}

#[tokio::test]
async fn answers_are_sorted() {
    let mut setup = setup().await;
    let browser = Browser::new();
    let notification = Notification::new("g:team", 3);
    let send = |path: &str| {
        let target = browser.target(setup.server.url(path));
        let senders = &setup.senders;
        let notification = &notification;
        async move { senders.send(&target, false, notification).await }
    };
    assert_eq!(send("/s/201").await, Outcome::Delivered);
    assert!(matches!(send("/s/404").await, Outcome::Invalid { .. }));
    assert!(matches!(send("/s/410").await, Outcome::Invalid { .. }));
    match send("/s/429").await {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(std::time::Duration::from_secs(7))),
        other => panic!("429 gave {other:?}"),
    }
    assert!(matches!(
        send("/s/503").await,
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(send("/s/400").await, Outcome::Failed { .. }));
    assert_eq!(setup.server.drain().len(), 6);
}

#[tokio::test]
async fn bad_subscriptions_are_invalid_without_a_request() {
    let mut setup = setup().await;
    let notification = Notification::new("alice", 1);
    let browser = Browser::new();
    let cases = [
        browser.target("http://127.0.0.1:9/plain".into()),
        browser.target("not a url".into()),
        Target::WebPush {
            endpoint: setup.server.url("/x"),
            p256dh: "AAAA".into(),
            auth: b64url(&[0; 16]),
        },
        Target::WebPush {
            endpoint: setup.server.url("/x"),
            p256dh: b64url(&browser.secret.public_key().to_sec1_bytes()),
            auth: "!!".into(),
        },
    ];
    for target in cases {
        let outcome = setup.senders.send(&target, false, &notification).await;
        assert!(
            matches!(outcome, Outcome::Invalid { .. }),
            "{target:?}: {outcome:?}"
        );
    }
    assert!(setup.server.drain().is_empty());
}

#[tokio::test]
async fn an_unconfigured_provider_is_a_failure() {
    let senders = Senders::from_config(&PushConfig::default()).unwrap();
    let outcome = senders
        .send(
            &Target::Fcm {
                token: "abc".into(),
            },
            false,
            &Notification::new("alice", 1),
        )
        .await;
    assert!(matches!(outcome, Outcome::Failed { .. }));
}
