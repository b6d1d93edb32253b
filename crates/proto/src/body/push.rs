//! Client state and push (types 67–70): a device tells the hub whether its app is in the
//! foreground, registers where it can be woken when it is not, and its user mutes
//! conversations.

use super::{Body, choice, limits, required};
use crate::error::FieldError;
use crate::packet::{Fields, Packet, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const PROVIDERS: &[&str] = &["fcm", "apns", "web-push", "unified-push"];

/// The longest token or endpoint URL accepted.
pub const MAX_ADDRESS_BYTES: usize = 4096;

/// `muted-until` meaning "until unmuted".
pub const MUTED_FOREVER: u64 = limits::MAX_SAFE;

pub(super) const CLIENT_STATE: SchemaProvider = SchemaProvider {
    kind: PacketKind::CLIENT_STATE,
    name: "client-state",
    routing: Routing::Request,
    schema: &[FieldSpec::required(8, "active", FieldType::Bool)],
    check: None,
};

const PUSH_REGISTER_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(8, "provider", FieldType::Choice(PROVIDERS)),
    FieldSpec::required(
        9,
        "address",
        FieldType::Text {
            max_bytes: MAX_ADDRESS_BYTES,
        },
    ),
    FieldSpec::optional(10, "topic", FieldType::Text { max_bytes: 256 }),
    FieldSpec::optional(11, "sandbox", FieldType::Bool),
    FieldSpec::optional(12, "p256dh", FieldType::Text { max_bytes: 128 }),
    FieldSpec::optional(13, "auth", FieldType::Text { max_bytes: 64 }),
    FieldSpec::optional(14, "preview", FieldType::Bool),
];

pub(super) const PUSH_REGISTER: SchemaProvider = SchemaProvider {
    kind: PacketKind::PUSH_REGISTER,
    name: "push-register",
    routing: Routing::Request,
    schema: PUSH_REGISTER_SCHEMA,
    check: Some(check_register),
};

pub(super) const PUSH_UNREGISTER: SchemaProvider = SchemaProvider {
    kind: PacketKind::PUSH_UNREGISTER,
    name: "push-unregister",
    routing: Routing::Request,
    schema: &[],
    check: None,
};

pub(super) const MUTE: SchemaProvider = SchemaProvider {
    kind: PacketKind::MUTE,
    name: "mute",
    routing: Routing::Request,
    schema: &[FieldSpec::required(
        8,
        "until",
        FieldType::Uint {
            min: 0,
            max: limits::MAX_SAFE,
        },
    )],
    check: Some(needs_conv),
};

fn needs_conv(packet: &Packet) -> Result<(), FieldError> {
    if packet.conv.is_none() {
        return Err(FieldError::new(2, "conv", "is required"));
    }
    Ok(())
}

/// Whether `text` is base64url (padding allowed) of exactly `bytes` bytes.
fn is_base64url_of(text: &str, bytes: usize) -> bool {
    let unpadded = text.trim_end_matches('=');
    unpadded.len() == (bytes * 4).div_ceil(3)
        && unpadded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_register(packet: &Packet) -> Result<(), FieldError> {
    let register = PushRegister::from_fields(packet.body())?;
    let https = |address: &str| {
        address
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    };
    match &register.target {
        PushTarget::Fcm { token } | PushTarget::Apns { token, .. } => {
            if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
                return Err(FieldError::new(
                    9,
                    "address",
                    "must be a token without spaces",
                ));
            }
        }
        PushTarget::WebPush {
            endpoint,
            p256dh,
            auth,
        } => {
            if !https(endpoint) {
                return Err(FieldError::new(9, "address", "must be an https URL"));
            }
            if !is_base64url_of(p256dh, 65) {
                return Err(FieldError::new(
                    12,
                    "p256dh",
                    "must be a P-256 public key (65 bytes, base64url)",
                ));
            }
            if !is_base64url_of(auth, 16) {
                return Err(FieldError::new(
                    13,
                    "auth",
                    "must be a 16-byte secret (base64url)",
                ));
            }
        }
        PushTarget::UnifiedPush { endpoint } => {
            // A distributor on a trusted network may be plain http; the server decides.
            let plain = endpoint
                .strip_prefix("http://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !https(endpoint) && !plain {
                return Err(FieldError::new(9, "address", "must be an http(s) URL"));
            }
        }
    }
    let body = packet.body();
    let apns = matches!(register.target, PushTarget::Apns { .. });
    let web = matches!(register.target, PushTarget::WebPush { .. });
    for (key, name, allowed) in [
        (10, "topic", apns),
        (11, "sandbox", apns),
        (12, "p256dh", web),
        (13, "auth", web),
    ] {
        if !allowed && body.contains(key) {
            return Err(FieldError::new(
                key,
                name,
                format!(
                    "does not apply to {}",
                    PROVIDERS[register.target.provider()]
                ),
            ));
        }
    }
    Ok(())
}

/// The app went to the background (`active` false) or came back: the hub pushes to an
/// inactive device as if it were offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientState {
    /// The app is in the foreground.
    pub active: bool,
}

impl Body for ClientState {
    const KIND: PacketKind = PacketKind::CLIENT_STATE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            active: required(f.bool(8), 8, "active")?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_bool(8, self.active);
        f
    }
}

/// Where a device is woken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushTarget {
    /// Firebase Cloud Messaging registration token.
    Fcm {
        /// The token.
        token: String,
    },
    /// Apple Push Notification service device token.
    Apns {
        /// The device token (hex).
        token: String,
        /// The app's bundle id, when not the server's configured one.
        topic: Option<String>,
        /// A development build's token (APNs sandbox).
        sandbox: bool,
    },
    /// A Web Push subscription (RFC 8030, RFC 8291).
    WebPush {
        /// The push service's URL.
        endpoint: String,
        /// The subscription's public key, base64url.
        p256dh: String,
        /// The subscription's authentication secret, base64url.
        auth: String,
    },
    /// A UnifiedPush endpoint.
    UnifiedPush {
        /// The distributor's URL for this app instance.
        endpoint: String,
    },
}

impl PushTarget {
    /// The provider's wire number (0 fcm, 1 apns, 2 web-push, 3 unified-push).
    pub fn provider(&self) -> usize {
        match self {
            Self::Fcm { .. } => 0,
            Self::Apns { .. } => 1,
            Self::WebPush { .. } => 2,
            Self::UnifiedPush { .. } => 3,
        }
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        PROVIDERS[self.provider()]
    }
}

/// Registers (or replaces) the sending device's push target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRegister {
    /// Where to push.
    pub target: PushTarget,
    /// Show message text in notifications (off by default: the push only wakes the app).
    pub preview: bool,
}

impl Body for PushRegister {
    const KIND: PacketKind = PacketKind::PUSH_REGISTER;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let provider = required(choice(f, 8, "provider", PROVIDERS.len()), 8, "provider")?;
        let address = required(f.text(9), 9, "address")?.to_owned();
        let text = |key, name| -> Result<String, FieldError> {
            Ok(required(f.text(key), key, name)?.to_owned())
        };
        let target = match provider {
            0 => PushTarget::Fcm { token: address },
            1 => PushTarget::Apns {
                token: address,
                topic: f.text(10)?.map(str::to_owned),
                sandbox: f.bool(11)?.unwrap_or(false),
            },
            2 => PushTarget::WebPush {
                endpoint: address,
                p256dh: text(12, "p256dh")?,
                auth: text(13, "auth")?,
            },
            _ => PushTarget::UnifiedPush { endpoint: address },
        };
        Ok(Self {
            target,
            preview: f.bool(14)?.unwrap_or(false),
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.target.provider() as u64);
        match &self.target {
            PushTarget::Fcm { token } => f.set_text(9, token),
            PushTarget::Apns {
                token,
                topic,
                sandbox,
            } => {
                f.set_text(9, token);
                if let Some(topic) = topic {
                    f.set_text(10, topic);
                }
                if *sandbox {
                    f.set_bool(11, true);
                }
            }
            PushTarget::WebPush {
                endpoint,
                p256dh,
                auth,
            } => {
                f.set_text(9, endpoint);
                f.set_text(12, p256dh);
                f.set_text(13, auth);
            }
            PushTarget::UnifiedPush { endpoint } => f.set_text(9, endpoint),
        }
        if self.preview {
            f.set_bool(14, true);
        }
        f
    }
}

/// Removes the sending device's push target (empty body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PushUnregister;

impl Body for PushUnregister {
    const KIND: PacketKind = PacketKind::PUSH_UNREGISTER;

    fn from_fields(_: &Fields) -> Result<Self, FieldError> {
        Ok(Self)
    }

    fn to_fields(&self) -> Fields {
        Fields::new()
    }
}

/// Mutes the envelope's conversation for the user (all devices) until a time: no pushes
/// for it before then. 0 unmutes; [`MUTED_FOREVER`] mutes until unmuted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mute {
    /// Until when (ms since the Unix epoch).
    pub until: u64,
}

impl Body for Mute {
    const KIND: PacketKind = PacketKind::MUTE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            until: required(f.uint(8), 8, "until")?,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.until);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    const P256DH: &str =
        "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
    const AUTH: &str = "tBHItJI5svbpez7KI4CCXg";

    fn round_trip(register: PushRegister) {
        let registry = Registry::with_core();
        let mut packet = register.to_packet();
        packet.id = Some(crate::MessageId::new(1).expect("id"));
        let decoded = registry.decode(&packet.encode()).expect("valid");
        assert_eq!(
            PushRegister::from_packet(&decoded).expect("typed"),
            register
        );
    }

    #[test]
    fn every_provider_round_trips() {
        round_trip(PushRegister {
            target: PushTarget::Fcm {
                token: "fcm-token:APA91b".into(),
            },
            preview: false,
        });
        round_trip(PushRegister {
            target: PushTarget::Apns {
                token: "a1b2c3".into(),
                topic: Some("org.example.chat".into()),
                sandbox: true,
            },
            preview: true,
        });
        round_trip(PushRegister {
            target: PushTarget::WebPush {
                endpoint: "https://push.example.net/wpush/v2/abc".into(),
                p256dh: P256DH.into(),
                auth: AUTH.into(),
            },
            preview: false,
        });
        round_trip(PushRegister {
            target: PushTarget::UnifiedPush {
                endpoint: "https://ntfy.example.org/upAbc?up=1".into(),
            },
            preview: false,
        });
    }

    fn refused(f: Fields) -> String {
        let packet = Packet::with_body(PacketKind::PUSH_REGISTER, f).expect("body keys");
        Registry::with_core()
            .decode(&packet.encode())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn bad_registrations_are_refused() {
        let mut f = Fields::new();
        f.set_uint(8, 2);
        f.set_text(9, "http://10.0.0.1/hook");
        f.set_text(12, P256DH);
        f.set_text(13, AUTH);
        assert!(refused(f).contains("https"));

        let mut f = Fields::new();
        f.set_uint(8, 3);
        f.set_text(9, "ftp://10.0.0.1/hook");
        assert!(refused(f).contains("http"));

        let mut f = Fields::new();
        f.set_uint(8, 2);
        f.set_text(9, "https://push.example.net/x");
        f.set_text(12, "short");
        f.set_text(13, AUTH);
        assert!(refused(f).contains("p256dh"));

        let mut f = Fields::new();
        f.set_uint(8, 0);
        f.set_text(9, "token");
        f.set_bool(11, true);
        assert!(refused(f).contains("sandbox"));

        let mut f = Fields::new();
        f.set_uint(8, 1);
        f.set_text(9, "two words");
        assert!(refused(f).contains("address"));
    }

    #[test]
    fn base64url_lengths() {
        assert!(is_base64url_of(P256DH, 65));
        assert!(is_base64url_of(AUTH, 16));
        assert!(is_base64url_of("tBHItJI5svbpez7KI4CCXg==", 16));
        assert!(!is_base64url_of("tBHItJI5svbpez7KI4CCX+", 16));
    }
}
