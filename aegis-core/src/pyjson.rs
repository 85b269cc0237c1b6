//! JSON text exactly as Python's `json.dumps(value)` writes it with default arguments.
//!
//! A `dict` task reaches the model as the text AutoGen users get from `json.dumps`: `", "`
//! between items, `": "` after keys, key order kept, and every non-ASCII character escaped as
//! `\uXXXX` (surrogate pairs above U+FFFF). Matching it byte for byte keeps prompts, token
//! counts and cached completions the same as in a Python deployment.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

/// Serialises `value` the way Python's `json.dumps` does.
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising a `serde_json::Value` or plain data into memory cannot fail.
    if value.serialize(&mut serializer).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (index, character) in fragment.char_indices() {
            if character.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..index])?;
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = index + character.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        // Python writes control characters as `\u00XX` in lower case, like serde_json, and
        // uses the short forms for the same five characters.
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(writer, "\\u{byte:04x}"),
            _ => return serde_json::ser::CompactFormatter.write_char_escape(writer, escape),
        };
        writer.write_all(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_order_match_python() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"question": "A", "b": [1, 2.5, true, null], "a": {}}"#).unwrap();
        assert_eq!(dumps(&value), r#"{"question": "A", "b": [1, 2.5, true, null], "a": {}}"#);
    }

    #[test]
    fn non_ascii_is_escaped_like_python() {
        assert_eq!(dumps(&json!("café 😀")), r#""caf\u00e9 \ud83d\ude00""#);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(dumps(&json!("a\nb\u{1}\"")), r#""a\nb\u0001\"""#);
    }
}
