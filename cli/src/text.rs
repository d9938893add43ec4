//! What comes from the server is printed only once it cannot drive the terminal: a hostile
//! server (or a job's error message) could otherwise send escape sequences that rewrite the
//! screen, hide lines, set the window title or, on some terminals, write to files.

use serde_json::Value;

/// `s` with every control character (C0, DEL, C1: ESC, CSI, BEL, CR...) and every bidirectional
/// override replaced by `?`, for a line meant for people.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if is_unsafe(c) { '?' } else { c }).collect()
}

/// A JSON value as one line in which no control character appears raw: serde_json escapes the
/// C0 ones; DEL, C1 and the bidirectional overrides are written as `\uXXXX` too (the same
/// string to any JSON reader).
pub fn json_line(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_never_reach_the_terminal() {
        assert_eq!(clean("ok\u{1b}]0;pwned\u{7}\r\u{9b}2J\u{202e}gnp"), "ok?]0;pwned???2J?gnp");
        assert_eq!(clean("café ✓"), "café ✓");
        let v = serde_json::json!({ "m": "a\u{1b}[2J\u{9b}b\u{7f}\u{2066}" });
        let line = json_line(&v);
        assert!(!line.chars().any(is_unsafe), "{line}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), v);
    }
}
