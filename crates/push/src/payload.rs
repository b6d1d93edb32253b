//! The data a device receives: enough to wake the app and sync, and the preview text only for
//! devices that opted in.

use serde_json::{Map, Value, json};

use crate::model::Notification;

/// Preview text is cut to this many characters: notifications show a line or two, and Web
/// Push bodies must stay under 4 KiB once encrypted.
pub const PREVIEW_MAX_CHARS: usize = 240;

/// What one device is told about one notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Payload {
    pub conversation: String,
    pub seq: u64,
    pub count: u32,
    /// Present only when the notification had text and the device opted in.
    pub preview: Option<String>,
    pub collapse_key: Option<String>,
    /// A ringing call: `"reason": "call"` in the data, and an alert on iOS.
    pub call: bool,
}

impl Payload {
    pub fn new(notification: &Notification, preview_allowed: bool) -> Self {
        let preview = if preview_allowed {
            notification.preview.as_deref().map(truncate)
        } else {
            None
        };
        Payload {
            conversation: notification.conversation.clone(),
            seq: notification.seq,
            count: notification.count,
            preview,
            collapse_key: notification.collapse_key.clone(),
            call: notification.call,
        }
    }

    /// The JSON object sent as the whole body (Web Push, UnifiedPush) or beside `aps` (APNs).
    pub fn json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("conversation".into(), json!(self.conversation));
        map.insert("seq".into(), json!(self.seq));
        map.insert("count".into(), json!(self.count));
        if let Some(text) = &self.preview {
            map.insert("preview".into(), json!(text));
        }
        if self.call {
            map.insert("reason".into(), json!("call"));
        }
        map
    }

    /// FCM's `data` map, whose values must all be strings.
    pub fn string_map(&self) -> Map<String, Value> {
        self.json()
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, Value::String(text))
            })
            .collect()
    }

    pub fn body(&self) -> Vec<u8> {
        Value::Object(self.json()).to_string().into_bytes()
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_only_when_allowed() {
        let notification = Notification::new("alice", 7).with_preview("hi");
        assert_eq!(Payload::new(&notification, false).preview, None);
        assert_eq!(
            Payload::new(&notification, true).preview.as_deref(),
            Some("hi")
        );
        let body = String::from_utf8(Payload::new(&notification, false).body()).unwrap_or_default();
        assert_eq!(body, r#"{"conversation":"alice","seq":7,"count":1}"#);
    }

    #[test]
    fn long_previews_are_cut_on_a_character() {
        let text = "é".repeat(PREVIEW_MAX_CHARS + 10);
        let cut = truncate(&text);
        assert_eq!(cut.chars().count(), PREVIEW_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn fcm_data_values_are_strings() {
        let map = Payload::new(&Notification::new("g:team", 42), true).string_map();
        assert_eq!(map["seq"], json!("42"));
        assert_eq!(map["count"], json!("1"));
        assert_eq!(map["conversation"], json!("g:team"));
    }
}
