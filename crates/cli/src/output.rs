//! How the CLI reports: one-line errors with meaningful exit codes, and events as text or
//! JSON lines.

use mqchat_client::{Event, Timestamp};
use mqchat_proto::body::{Availability, State};
use serde_json::{Value, json};

/// The error's message chain on one line. A cause whose text its error already ends with
/// (rumqttc's errors repeat their source's, as `I/O: {source}`) is not repeated.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for link in e.chain().map(ToString::to_string) {
        if line.is_empty() {
            line = link;
        } else if !line.ends_with(&link) {
            line.push_str(": ");
            line.push_str(&link);
        }
    }
    line
}

/// The exit code for an error (see the crate docs).
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<mqchat_client::Error>() {
        Some(e) if e.is_auth() => 3,
        Some(e) if e.is_unreachable() => 4,
        Some(e) if e.refused().is_some() => 5,
        _ => 1,
    }
}

pub(crate) fn state_name(state: State) -> &'static str {
    match state {
        State::Active => "active",
        State::Composing => "composing",
        State::Paused => "paused",
        State::Inactive => "inactive",
        State::Gone => "gone",
    }
}

pub(crate) fn availability_name(a: Availability) -> &'static str {
    match a {
        Availability::Offline => "offline",
        Availability::Available => "available",
        Availability::Away => "away",
        Availability::Busy => "busy",
    }
}

/// An event as a JSON object (`listen --json`), or `None` for events not worth a line.
pub(crate) fn event_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::Connected { session_present } => {
            json!({"event": "connected", "session-present": session_present})
        }
        Event::Disconnected { reason } => json!({"event": "disconnected", "reason": reason}),
        Event::Refused { reason } => json!({"event": "refused", "reason": reason}),
        Event::Message {
            conv,
            seq,
            ts,
            from,
            own,
            message,
            ..
        } => json!({
            "event": "message", "conv": conv.to_string(), "seq": seq.get(), "ts": ts.unix_ms(), "from": from.as_str(),
            "own": own, "text": message.text,
        }),
        Event::ChatState { conv, from, state } => {
            json!({"event": "chat-state", "conv": conv.to_string(), "from": from.as_str(), "state": state_name(*state)})
        }
        Event::Delivered { conv, by, up_to } => {
            json!({"event": "delivered", "conv": conv.to_string(), "by": by.as_str(), "up-to": up_to.get()})
        }
        Event::Read {
            conv,
            by,
            up_to,
            own,
        } => {
            json!({"event": "read", "conv": conv.to_string(), "by": by.as_str(), "up-to": up_to.get(), "own": own})
        }
        Event::Contact {
            conv,
            seq,
            from,
            own,
            contact,
        } => json!({
            "event": "contact", "conv": conv.to_string(), "seq": seq.get(), "from": from.as_str(), "own": own,
            "action": format!("{:?}", contact.action).to_lowercase(), "note": contact.note,
        }),
        Event::Presence {
            user,
            device,
            presence,
        } => json!({
            "event": "presence", "user": user.as_str(), "device": device.as_str(),
            "availability": presence.as_ref().map(|p| availability_name(p.availability)),
            "status": presence.as_ref().and_then(|p| p.status.clone()),
            "last-active": presence.as_ref().and_then(|p| p.last_active).map(Timestamp::unix_ms),
        }),
        Event::Profile {
            user,
            version,
            profile,
        } => json!({
            "event": "profile", "user": user.as_str(), "version": version, "name": profile.name,
            "avatar": profile.avatar, "status": profile.status,
        }),
        Event::Error { id, code, detail } => json!({
            "event": "error", "id": id.map(|i| i.to_string()), "code": code.0, "name": code.to_string(), "detail": detail,
        }),
        Event::Other { packet } => {
            json!({"event": "other", "type": packet.kind.0, "conv": packet.conv.as_ref().map(ToString::to_string)})
        }
        _ => return crate::group::event_json(event).or_else(|| crate::call::event_json(event)),
    })
}

/// An event as a line of text for people.
pub(crate) fn event_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Connected { .. } => "connected".into(),
        Event::Disconnected { reason } => format!("disconnected: {reason}"),
        Event::Refused { reason } => {
            format!("refused: {reason} (revoked device, changed password or disabled account?)")
        }
        Event::Message {
            conv,
            seq,
            from,
            own,
            message,
            ..
        } => {
            if *own {
                format!("[{conv} #{seq}] you: {}", message.text)
            } else {
                format!("[{conv} #{seq}] {from}: {}", message.text)
            }
        }
        Event::ChatState { conv, from, state } => match state {
            State::Composing => format!("[{conv}] {from} is typing…"),
            other => format!("[{conv}] {from} is {}", state_name(*other)),
        },
        Event::Delivered { conv, by, up_to } => format!("[{conv}] ✓✓ {by} received up to #{up_to}"),
        Event::Read {
            conv,
            by,
            up_to,
            own: false,
        } => format!("[{conv}] ✓✓ {by} read up to #{up_to}"),
        Event::Read {
            conv,
            up_to,
            own: true,
            ..
        } => format!("[{conv}] you read up to #{up_to} (on another device)"),
        Event::Contact {
            conv,
            from,
            contact,
            ..
        } => {
            let note = contact
                .note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            format!("[{conv}] {from}: contact {:?}{note}", contact.action).to_lowercase()
        }
        Event::Presence {
            user,
            device,
            presence: Some(p),
        } => {
            let status = p
                .status
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            format!(
                "{user} ({device}) is {}{status}",
                availability_name(p.availability)
            )
        }
        Event::Presence {
            user,
            device,
            presence: None,
        } => format!("{user} ({device}) removed"),
        Event::Profile { user, profile, .. } => {
            format!(
                "{user}'s profile: {}",
                profile.name.as_deref().unwrap_or("(no name)")
            )
        }
        Event::Error { code, detail, .. } => format!(
            "error from the server: {code} {}",
            detail.as_deref().unwrap_or("")
        ),
        Event::Other { packet } => format!("packet of type {}", packet.kind.0),
        _ => return crate::group::event_text(event).or_else(|| crate::call::event_text(event)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_one_line_without_repeats() {
        let io = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(io).context("I/O: connection refused");
        let e = e.context("cannot connect to the server");
        assert_eq!(
            one_line(&e),
            "cannot connect to the server: I/O: connection refused"
        );
        let e = anyhow::anyhow!("no-such-user").context("send");
        assert_eq!(one_line(&e), "send: no-such-user");
    }
}
