//! Character classes and small scanners of the RFC 3261 section 25 grammar shared by the
//! header and URI parsers.

/// `token` characters (RFC 3261 25.1).
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// A non-empty string of token characters.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Characters allowed in a `word` (used by Call-ID).
pub(crate) fn is_word_char(c: char) -> bool {
    is_token_char(c) || "()<>:\\\"/[]?{}".contains(c)
}

/// Splits a header value into its comma-separated elements, ignoring commas inside quoted
/// strings and angle brackets. Elements are trimmed; empty elements are dropped.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Splits `s` at every `sep` outside quoted strings.
pub(crate) fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + sep.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Parses a quoted string at the start of `s` (which must begin with `"`), returning the
/// unescaped content and the rest after the closing quote.
pub(crate) fn quoted_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, &s[i + 1..]));
        } else {
            out.push(c);
        }
    }
    None
}

/// Renders `s` as a quoted string, escaping `"` and `\`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// True when `s` contains a control character other than horizontal tab.
pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        let check = |input: &str, expected: &[&str]| assert_eq!(split_list(input), expected);
        check("a, b ,c", &["a", "b", "c"]);
        check(
            "\"x, y\" <sip:a@b>, <sip:c@d;p=1,2>",
            &["\"x, y\" <sip:a@b>", "<sip:c@d;p=1,2>"],
        );
        check("\"a\\\",b\" <sip:x@y>", &["\"a\\\",b\" <sip:x@y>"]);
        check(" , ,", &[]);
    }

    #[test]
    fn quoted_strings_unescape() {
        assert_eq!(
            quoted_string("\"a\\\"b\" rest"),
            Some(("a\"b".to_string(), " rest"))
        );
        assert_eq!(quoted_string("\"open"), None);
        assert_eq!(quote("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
