//! The header section: fields kept in their order, names compared case-insensitively with the
//! compact forms (RFC 3261 7.3.3) expanded, list headers split one value per field.

use crate::scan::split_list;

/// One header field as it will be printed: its name as received and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The full name of a header given by any spelling (compact forms expanded), for
/// comparisons. Unknown names are returned unchanged.
pub fn full_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        b'b' => "Referred-By",
        _ => name,
    }
}

/// True when two header names name the same header.
pub fn same_name(a: &str, b: &str) -> bool {
    full_name(a).eq_ignore_ascii_case(full_name(b))
}

/// Headers whose comma-separated values are split into one field each on the way in, so that
/// each value can be edited (pushed, popped) on its own (RFC 3261 7.3.1 makes both forms
/// equivalent).
fn is_split_list(name: &str) -> bool {
    ["Via", "Route", "Record-Route", "Contact"]
        .iter()
        .any(|n| same_name(n, name))
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the first field of that name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| same_name(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// The values of every field of that name, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| same_name(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// True when a field of that name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field (list headers split into one field per value).
    pub fn push(&mut self, name: &str, value: &str) {
        let at = self.0.len();
        self.insert_at(at, name, value);
    }

    /// Inserts a field before the first field of the same name (or appends it when there is
    /// none): the place for a new top Via or Record-Route.
    pub fn push_front(&mut self, name: &str, value: &str) {
        let at = self
            .0
            .iter()
            .position(|h| same_name(&h.name, name))
            .unwrap_or(self.0.len());
        self.insert_at(at, name, value);
    }

    fn insert_at(&mut self, at: usize, name: &str, value: &str) {
        let values = if is_split_list(name) && value.trim() != "*" {
            split_list(value)
        } else {
            vec![value.trim()]
        };
        for (i, v) in values.into_iter().enumerate() {
            self.0.insert(
                at + i,
                Header {
                    name: name.to_string(),
                    value: v.to_string(),
                },
            );
        }
    }

    /// Replaces every field of that name with one field (at the place of the first one).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter().position(|h| same_name(&h.name, name)) {
            Some(at) => {
                self.remove(name);
                self.insert_at(at, name, value);
            }
            None => self.push(name, value),
        }
    }

    /// Removes and returns the first field of that name.
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|h| same_name(&h.name, name))?;
        Some(self.0.remove(at).value)
    }

    /// Removes every field of that name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|h| !same_name(&h.name, name));
        before - self.0.len()
    }

    /// The first field of that name, to edit in place.
    pub(crate) fn first_mut(&mut self, name: &str) -> Option<&mut Header> {
        self.0.iter_mut().find(|h| same_name(&h.name, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_and_case() {
        let mut h = Headers::new();
        h.push(
            "v",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push("CALL-ID", "x@y");
        h.push("Contact", "*");
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("via"), Some("SIP/2.0/UDP a;branch=z9hG4bK1"));
        assert_eq!(h.get_all("Via").count(), 2);
        assert_eq!(h.get("i"), Some("x@y"));
        assert_eq!(h.get("m"), Some("*"));
        h.push_front("Via", "SIP/2.0/TCP c;branch=z9hG4bK3");
        assert_eq!(h.get("Via"), Some("SIP/2.0/TCP c;branch=z9hG4bK3"));
        assert_eq!(
            h.remove_first("via").as_deref(),
            Some("SIP/2.0/TCP c;branch=z9hG4bK3")
        );
        h.set("Call-ID", "z@y");
        assert_eq!(h.get("call-id"), Some("z@y"));
        assert_eq!(h.remove("V"), 2);
        assert!(!h.contains("Via"));
    }
}
