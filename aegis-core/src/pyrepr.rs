//! Python's `repr()`, `str()` and `str.format()` for the values AgentChat renders as text.
//!
//! AgentChat builds several user-visible strings with Python formatting: the text a
//! termination condition searches (`str()` of a list of `FunctionCall`s), stop reasons
//! (`Timeout of 0.0 seconds reached`), StructuredMessage `format_string`s (`true` renders as
//! `True`) and tool call summaries. Clients match on those strings, so Aegis reproduces the
//! Python spelling instead of Rust's or JSON's.

use serde_json::Value;

/// Returns Python's `repr()` of a string: single quotes unless the text contains a single
/// quote and no double quote, with Python's escapes.
pub fn repr_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Returns Python's `repr()` of a float (`0.0`, `60.0`, `1e-05`, `1e+16`).
pub fn repr_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf".to_owned() } else { "-inf".to_owned() };
    }

    // Python switches to exponent notation below 1e-4 and from 1e16 on.
    let magnitude = value.abs();
    if value == 0.0 || (1e-4..1e16).contains(&magnitude) {
        let text = format!("{value}");
        return if text.contains('.') { text } else { format!("{text}.0") };
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text.as_str(), "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Returns Python's `repr()` of a JSON value as the equivalent Python object
/// (`True`, `None`, `{'a': 1}`).
pub fn repr_value(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(int), _, _) => int.to_string(),
            (_, Some(int), _) => int.to_string(),
            (_, _, Some(float)) => repr_float(float),
            _ => number.to_string(),
        },
        Value::String(text) => repr_str(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(repr_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> =
                map.iter().map(|(key, item)| format!("{}: {}", repr_str(key), repr_value(item))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Returns Python's `str()` of a JSON value: strings as they are, everything else as
/// [`repr_value`].
pub fn str_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => repr_value(other),
    }
}

/// Returns the `repr()` of a pydantic model with `fields` in order, such as
/// `FunctionCall(id='call_1', arguments='{}', name='lookup')`.
pub fn repr_model(class: &str, fields: &[(&str, &Value)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(name, value)| format!("{name}={}", repr_value(value))).collect();
    format!("{class}({})", fields.join(", "))
}

/// An error of [`format_named`], worded as the Python exception it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    /// Python's exception class, such as `KeyError`.
    pub error_type: &'static str,
    /// The exception's message.
    pub message: String,
}

/// Formats `template` like Python's `template.format(**fields)`.
///
/// Supports `{name}` replacement fields, the `!s` and `!r` conversions and `{{`/`}}`
/// escapes. A field the template names but `fields` lacks is a `KeyError`, as in Python.
///
/// NOTE: format specs (`{score:>3}`) and attribute or index access (`{a.b}`, `{a[0]}`) are
/// rejected as unsupported; AgentChat's defaults and the dumped components use plain fields.
pub fn format_named(template: &str, fields: &[(&str, &Value)]) -> Result<String, FormatError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => {
                return Err(FormatError {
                    error_type: "ValueError",
                    message: "Single '}' encountered in format string".to_owned(),
                });
            }
            '{' => {
                let mut field = String::new();
                let mut closed = false;
                for inner in chars.by_ref() {
                    if inner == '}' {
                        closed = true;
                        break;
                    }
                    field.push(inner);
                }
                if !closed {
                    return Err(FormatError {
                        error_type: "ValueError",
                        message: "expected '}' before end of string".to_owned(),
                    });
                }
                out.push_str(&render_field(&field, fields)?);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn render_field(field: &str, fields: &[(&str, &Value)]) -> Result<String, FormatError> {
    let (name, conversion) = match field.split_once('!') {
        Some((name, conversion)) => (name, Some(conversion)),
        None => (field, None),
    };
    if name.contains([':', '.', '[']) || conversion.is_some_and(|conversion| conversion.contains(':')) {
        return Err(FormatError {
            error_type: "ValueError",
            message: format!(
                "unsupported replacement field '{{{field}}}': only plain names with !s or !r are supported"
            ),
        });
    }
    let Some((_, value)) = fields.iter().find(|(candidate, _)| *candidate == name) else {
        return Err(FormatError { error_type: "KeyError", message: repr_str(name) });
    };
    match conversion {
        None | Some("s") => Ok(str_value(value)),
        Some("r") => Ok(repr_value(value)),
        Some(other) => {
            Err(FormatError { error_type: "ValueError", message: format!("Unknown conversion specifier {other}") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repr_str_picks_python_quotes() {
        assert_eq!(repr_str("plain"), "'plain'");
        assert_eq!(repr_str("tool 'x' failed"), "\"tool 'x' failed\"");
        assert_eq!(repr_str("both ' and \""), "'both \\' and \"'");
        assert_eq!(repr_str("a\nb"), "'a\\nb'");
    }

    #[test]
    fn repr_float_matches_python() {
        assert_eq!(repr_float(0.0), "0.0");
        assert_eq!(repr_float(60.0), "60.0");
        assert_eq!(repr_float(0.5), "0.5");
        assert_eq!(repr_float(1e-5), "1e-05");
        assert_eq!(repr_float(1e16), "1e+16");
        assert_eq!(repr_float(2.5e20), "2.5e+20");
    }

    #[test]
    fn repr_value_renders_python_literals() {
        let value = json!({"ok": true, "none": null, "items": [1, 2.5, "x"]});
        assert_eq!(repr_value(&value), "{'ok': True, 'none': None, 'items': [1, 2.5, 'x']}");
    }

    #[test]
    fn format_named_substitutes_fields() {
        let satisfactory = json!(true);
        let text = format_named("Satisfactory: {satisfactory} {{x}}", &[("satisfactory", &satisfactory)]).unwrap();
        assert_eq!(text, "Satisfactory: True {x}");
    }

    #[test]
    fn format_named_reports_missing_field() {
        let error = format_named("{missing}", &[]).unwrap_err();
        assert_eq!(error.error_type, "KeyError");
        assert_eq!(error.message, "'missing'");
    }
}
