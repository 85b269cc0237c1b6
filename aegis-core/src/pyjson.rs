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

/// Returns the message of the `json.JSONDecodeError` Python's `json.loads(text)` raises, or
/// `None` when `text` is valid JSON.
///
/// AgentChat reports malformed tool arguments with this message (`Expecting value: line 1
/// column 1 (char 0)`), and the model reads it, so Aegis words it the same way. The scanner
/// follows CPython's for the common errors; the position is in characters, as Python counts.
pub fn decode_error(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut scanner = Scanner { chars: &chars, pos: 0 };
    let result = scanner.value().and_then(|()| {
        scanner.skip_whitespace();
        if scanner.pos < chars.len() { Err(("Extra data", scanner.pos)) } else { Ok(()) }
    });
    let (message, pos) = result.err()?;
    let line = chars[..pos].iter().filter(|c| **c == '\n').count() + 1;
    let column = match chars[..pos].iter().rposition(|c| *c == '\n') {
        Some(newline) => pos - newline,
        None => pos + 1,
    };
    Some(format!("{message}: line {line} column {column} (char {pos})"))
}

type ScanResult = Result<(), (&'static str, usize)>;

struct Scanner<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        let end = self.pos + word.chars().count();
        let matches = self.chars.get(self.pos..end).is_some_and(|slice| slice.iter().copied().eq(word.chars()));
        if matches {
            self.pos = end;
        }
        matches
    }

    fn value(&mut self) -> ScanResult {
        self.skip_whitespace();
        let start = self.pos;
        match self.peek() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => self.string(),
            Some('-' | '0'..='9') => self.number(),
            _ if self.literal("true") || self.literal("false") || self.literal("null") => Ok(()),
            _ if self.literal("NaN") || self.literal("Infinity") || self.literal("-Infinity") => Ok(()),
            _ => Err(("Expecting value", start)),
        }
    }

    fn object(&mut self) -> ScanResult {
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some('}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some('"') {
                return Err(("Expecting property name enclosed in double quotes", self.pos));
            }
            self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(':') {
                return Err(("Expecting ':' delimiter", self.pos));
            }
            self.pos += 1;
            self.value()?;
            self.skip_whitespace();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                _ => return Err(("Expecting ',' delimiter", self.pos)),
            }
        }
    }

    fn array(&mut self) -> ScanResult {
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.skip_whitespace();
            match self.peek() {
                Some(']') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(',') => self.pos += 1,
                _ => return Err(("Expecting ',' delimiter", self.pos)),
            }
        }
    }

    fn string(&mut self) -> ScanResult {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(("Unterminated string starting at", start)),
                Some('"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => {
                    let escape = self.pos;
                    match self.chars.get(self.pos + 1) {
                        Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => self.pos += 2,
                        Some('u') => {
                            let hex = self.chars.get(self.pos + 2..self.pos + 6);
                            if !hex.is_some_and(|digits| digits.iter().all(char::is_ascii_hexdigit)) {
                                return Err(("Invalid \\uXXXX escape", escape + 1));
                            }
                            self.pos += 6;
                        }
                        None => return Err(("Unterminated string starting at", start)),
                        Some(_) => return Err(("Invalid \\escape", escape)),
                    }
                }
                Some(c) if (c as u32) < 0x20 => return Err(("Invalid control character at", self.pos)),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn number(&mut self) -> ScanResult {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == digits_start {
            return Err(("Expecting value", start));
        }
        if self.peek() == Some('.') && self.chars.get(self.pos + 1).is_some_and(char::is_ascii_digit) {
            self.pos += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mut next = self.pos + 1;
            if matches!(self.chars.get(next), Some('+' | '-')) {
                next += 1;
            }
            if self.chars.get(next).is_some_and(char::is_ascii_digit) {
                self.pos = next;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
        }
        Ok(())
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

    #[test]
    fn decode_error_matches_python() {
        assert_eq!(decode_error("{\"a\": 1}"), None);
        assert_eq!(decode_error("not json").as_deref(), Some("Expecting value: line 1 column 1 (char 0)"));
        assert_eq!(decode_error("").as_deref(), Some("Expecting value: line 1 column 1 (char 0)"));
        assert_eq!(decode_error("{\"a\" 1}").as_deref(), Some("Expecting ':' delimiter: line 1 column 6 (char 5)"));
        assert_eq!(decode_error("{\"a\": 1}\n x").as_deref(), Some("Extra data: line 2 column 2 (char 10)"));
        assert_eq!(
            decode_error("{'a': 1}").as_deref(),
            Some("Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
        );
    }
}
