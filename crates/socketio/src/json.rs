//! Lenient JSON for client payloads: [`from_str`] and [`from_slice`] accept what
//! `JSON.stringify` produces, including strings cut in the middle of a surrogate pair.
//!
//! `JSON.stringify('Song 😀'.slice(0, 6))` gives `"Song \ud83d"`: valid JSON whose `\u` escape
//! is a lone UTF-16 surrogate, which serde_json refuses. Here each lone surrogate escape is
//! replaced by `\uFFFD` (U+FFFD REPLACEMENT CHARACTER) and the text parsed again; valid pairs
//! and everything else are untouched. Valid input costs one serde_json parse, as before.

use serde::de::DeserializeOwned;

/// Parses `text` like [`serde_json::from_str`], accepting lone surrogate escapes (read as U+FFFD).
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    from_slice(text.as_bytes())
}

/// Parses `bytes` like [`serde_json::from_slice`], accepting lone surrogate escapes (read as
/// U+FFFD).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(e) => match replace_lone_surrogates(bytes) {
            Some(fixed) => serde_json::from_slice(&fixed),
            None => Err(e),
        },
    }
}

/// A copy of `text` with every lone surrogate escape inside strings replaced by `\uFFFD`
/// (the same length), or `None` if there is none.
fn replace_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' if text.get(i + 1) == Some(&b'u') => match hex4(text, i + 2) {
                Some(0xD800..=0xDBFF) => {
                    let paired = text.get(i + 6) == Some(&b'\\')
                        && text.get(i + 7) == Some(&b'u')
                        && matches!(hex4(text, i + 8), Some(0xDC00..=0xDFFF));
                    if paired {
                        i += 12;
                    } else {
                        replace_at(text, &mut out, i);
                        i += 6;
                    }
                }
                Some(0xDC00..=0xDFFF) => {
                    replace_at(text, &mut out, i);
                    i += 6;
                }
                Some(_) => i += 6,
                None => i += 2, // a malformed escape: serde_json reports it
            },
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    out
}

fn replace_at(text: &[u8], out: &mut Option<Vec<u8>>, at: usize) {
    let buf = out.get_or_insert_with(|| text.to_vec());
    if let Some(slot) = buf.get_mut(at..at + 6) {
        slot.copy_from_slice(b"\\uFFFD");
    }
}

fn hex4(text: &[u8], at: usize) -> Option<u32> {
    let digits = text.get(at..at + 4)?;
    let mut n = 0u32;
    for &d in digits {
        n = n * 16 + char::from(d).to_digit(16)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn valid_json_is_parsed_as_serde_json_does() {
        let v: Value = from_str(r#"{"a":[1,"x\u00e9",null],"b":"\ud83d\ude00"}"#).unwrap();
        assert_eq!(v, json!({"a": [1, "xé", null], "b": "😀"}));
    }

    #[test]
    fn a_lone_leading_surrogate_becomes_the_replacement_character() {
        // JSON.stringify('Song 😀'.slice(0, 6))
        let v: Value = from_str(r#"{"title":"Song \ud83d"}"#).unwrap();
        assert_eq!(v, json!({"title": "Song \u{FFFD}"}));
        assert!(serde_json::from_str::<Value>(r#""Song \ud83d""#).is_err());
    }

    #[test]
    fn lone_trailing_and_unpaired_surrogates_are_replaced() {
        let v: Value = from_str(r#"["\ude00x", "\ud83d\u0041", "\uD83D\uD83D\uDE00"]"#).unwrap();
        assert_eq!(v, json!(["\u{FFFD}x", "\u{FFFD}A", "\u{FFFD}😀"]));
    }

    #[test]
    fn escaped_backslashes_are_not_escapes() {
        let v: Value = from_str(r#"["\\ud83d", "\\\ud83d"]"#).unwrap();
        assert_eq!(v, json!(["\\ud83d", "\\\u{FFFD}"]));
    }

    #[test]
    fn invalid_json_stays_invalid() {
        assert!(from_str::<Value>(r#"{"a":"\ud83d"#).is_err());
        assert!(from_str::<Value>(r#"["\ud83d",]"#).is_err());
        assert!(from_str::<Value>(r#"["\uZZZZ"]"#).is_err());
        assert!(from_str::<Value>("").is_err());
        assert!(from_slice::<Value>(b"\"\xff\"").is_err());
    }

    #[test]
    fn surrogates_outside_strings_are_left_alone() {
        assert!(from_str::<Value>(r#"\ud83d"#).is_err());
    }

    #[test]
    fn typed_targets_work() {
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Track {
            title: String,
        }
        let t: Track = from_slice(br#"{"title":"\ud83d"}"#).unwrap();
        assert_eq!(t.title, "\u{FFFD}");
    }
}
