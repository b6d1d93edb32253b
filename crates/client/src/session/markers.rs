//! The markers the application has been told of (spec section 9): each participant's
//! `delivered` and `read` per conversation, from live markers and from sync results.
//!
//! Markers are cumulative, so a marker is told only when it moves past what was told; a
//! sync result after a reconnect thus surfaces the markers that moved while the device was
//! away, and a live marker the broker queued meanwhile is not told twice. A marker waits
//! while events of its conversation are being fetched, so that the application hears of
//! events before the markers that cover them, as a live device would.
//!
//! A `read` marker implies `delivered` up to the same point (the hub raises one with the
//! other), so telling a `read` also counts as telling that `delivered`.

use std::collections::HashMap;

use mqchat_proto::{ConversationRef, Seq, UserId};

use crate::event::{Event, Party};

/// Which marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Delivered,
    Read,
}

/// Markers told, and markers waiting for their conversation's events.
#[derive(Debug, Default)]
pub(crate) struct Markers {
    told: HashMap<(ConversationRef, Party, Kind), u64>,
    waiting: HashMap<ConversationRef, Vec<Event>>,
}

impl Markers {
    /// The event for `by`'s marker of `kind` at `up_to` in `conv`, if it moves past what
    /// was told. `me` is this device's user, for [`Event::Read`]'s `own`. Only users read:
    /// a `read` by an address outside mqchat is ignored.
    pub fn moved(
        &mut self,
        me: &UserId,
        conv: &ConversationRef,
        by: &Party,
        kind: Kind,
        up_to: u64,
    ) -> Option<Event> {
        if kind == Kind::Read && by.user().is_none() {
            return None;
        }
        let key = (conv.clone(), by.clone(), kind);
        let told = self.told.entry(key).or_default();
        if up_to <= *told {
            return None;
        }
        *told = up_to;
        let (conv, by) = (conv.clone(), by.clone());
        Some(match (kind, by) {
            (Kind::Delivered, by) => Event::Delivered {
                conv,
                by,
                up_to: Seq::new(up_to),
            },
            (Kind::Read, party) => {
                let delivered = self
                    .told
                    .entry((conv.clone(), party.clone(), Kind::Delivered))
                    .or_default();
                *delivered = (*delivered).max(up_to);
                let by = party.user().cloned()?;
                Event::Read {
                    own: by == *me,
                    conv,
                    by,
                    up_to: Seq::new(up_to),
                }
            }
        })
    }

    /// The highest marker of `kind` told for `by` in `conv` (0 if none); a `read` counts as
    /// `delivered` too.
    pub fn told(&self, conv: &ConversationRef, by: &UserId, kind: Kind) -> u64 {
        self.told
            .get(&(conv.clone(), Party::User(by.clone()), kind))
            .copied()
            .unwrap_or_default()
    }

    /// Holds a marker event until `conv`'s missing events are delivered.
    pub fn wait(&mut self, conv: &ConversationRef, event: Event) {
        self.waiting.entry(conv.clone()).or_default().push(event);
    }

    /// The marker events that waited for `conv`, in the order they came.
    pub fn release(&mut self, conv: &ConversationRef) -> Vec<Event> {
        self.waiting.remove(conv).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user")
    }

    fn conv(s: &str) -> ConversationRef {
        ConversationRef::parse(s).expect("valid conv")
    }

    /// Tells (`by`, kind, up_to) in order; returns what was told, in short.
    fn check(steps: &[(&str, Kind, u64)], expected: &[&str]) {
        let mut m = Markers::default();
        let got: Vec<String> = steps
            .iter()
            .filter_map(|&(by, kind, up_to)| {
                m.moved(
                    &user("alice"),
                    &conv("bob"),
                    &Party::User(user(by)),
                    kind,
                    up_to,
                )
            })
            .map(|e| match e {
                Event::Delivered { by, up_to, .. } => format!("d {by} {up_to}"),
                Event::Read { by, up_to, own, .. } => {
                    format!("r {by} {up_to}{}", if own { " own" } else { "" })
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, expected, "{steps:?}");
    }

    #[test]
    fn only_moves_are_told() {
        use Kind::*;
        check(
            &[
                ("bob", Delivered, 3),
                ("bob", Delivered, 3),
                ("bob", Delivered, 2),
            ],
            &["d bob 3"],
        );
        // A read covers delivered up to the same point.
        check(
            &[
                ("bob", Read, 5),
                ("bob", Delivered, 5),
                ("bob", Delivered, 6),
            ],
            &["r bob 5", "d bob 6"],
        );
        // Participants and kinds are independent.
        check(
            &[("alice", Read, 4), ("bob", Read, 4), ("alice", Read, 4)],
            &["r alice 4 own", "r bob 4"],
        );
    }

    #[test]
    fn waiting_markers_keep_their_order() {
        let mut m = Markers::default();
        let me = user("alice");
        for up_to in [3, 5] {
            let event = m
                .moved(
                    &me,
                    &conv("bob"),
                    &Party::User(user("bob")),
                    Kind::Read,
                    up_to,
                )
                .expect("moved");
            m.wait(&conv("bob"), event);
        }
        assert!(m.release(&conv("carol")).is_empty());
        let released: Vec<u64> = m
            .release(&conv("bob"))
            .into_iter()
            .filter_map(|e| match e {
                Event::Read { up_to, .. } => Some(up_to.get()),
                _ => None,
            })
            .collect();
        assert_eq!(released, [3, 5]);
        assert!(m.release(&conv("bob")).is_empty());
    }
}
