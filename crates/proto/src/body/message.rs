//! Text messages and chat states.

use super::{Body, choice, limits, required};
use crate::error::FieldError;
use crate::identity::UserId;
use crate::packet::{Fields, PacketKind};
use crate::provider::{FieldSpec, FieldType, Routing, SchemaProvider};

const MESSAGE_SCHEMA: &[FieldSpec] = &[
    FieldSpec::required(
        8,
        "text",
        FieldType::Text {
            max_bytes: limits::TEXT_BYTES,
        },
    ),
    FieldSpec::optional(
        9,
        "reply-to",
        FieldType::Uint {
            min: 1,
            max: limits::MAX_SAFE,
        },
    ),
    FieldSpec::optional(
        10,
        "mentions",
        FieldType::Users {
            max_items: limits::MENTIONS,
        },
    ),
];

pub(super) const MESSAGE: SchemaProvider = SchemaProvider {
    kind: PacketKind::MESSAGE,
    name: "message",
    routing: Routing::Event,
    schema: MESSAGE_SCHEMA,
    check: None,
};

/// A text message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    /// The text (UTF-8, at most 16 KiB).
    pub text: String,
    /// The sequence number of the message this one replies to, in the same conversation.
    pub reply_to: Option<u64>,
    /// Users mentioned in the text.
    pub mentions: Vec<UserId>,
}

impl Message {
    /// A plain text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

impl Body for Message {
    const KIND: PacketKind = PacketKind::MESSAGE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let mentions = f
            .texts(10)?
            .unwrap_or_default()
            .into_iter()
            .map(|u| UserId::parse(u).map_err(|e| FieldError::new(10, "mentions", e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: required(f.text(8), 8, "text")?.to_owned(),
            reply_to: f.uint(9)?,
            mentions,
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_text(8, &self.text);
        if let Some(seq) = self.reply_to {
            f.set_uint(9, seq);
        }
        if !self.mentions.is_empty() {
            f.set_texts(10, &self.mentions);
        }
        f
    }
}

const STATES: &[&str] = &["active", "composing", "paused", "inactive", "gone"];

const CHAT_STATE_SCHEMA: &[FieldSpec] =
    &[FieldSpec::required(8, "state", FieldType::Choice(STATES))];

pub(super) const CHAT_STATE: SchemaProvider = SchemaProvider {
    kind: PacketKind::CHAT_STATE,
    name: "chat-state",
    routing: Routing::Signal,
    schema: CHAT_STATE_SCHEMA,
    check: None,
};

/// A participant's activity in a conversation (XEP-0085's states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Paying attention to the conversation.
    Active = 0,
    /// Typing.
    Composing = 1,
    /// Stopped typing for a while.
    Paused = 2,
    /// Not paying attention.
    Inactive = 3,
    /// Left the conversation (closed the window).
    Gone = 4,
}

const ALL_STATES: [State; 5] = [
    State::Active,
    State::Composing,
    State::Paused,
    State::Inactive,
    State::Gone,
];

/// A chat state notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatState {
    /// The state.
    pub state: State,
}

impl Body for ChatState {
    const KIND: PacketKind = PacketKind::CHAT_STATE;

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let index = required(choice(f, 8, "state", STATES.len()), 8, "state")?;
        Ok(Self {
            state: ALL_STATES[index],
        })
    }

    fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.set_uint(8, self.state as u64);
        f
    }
}
