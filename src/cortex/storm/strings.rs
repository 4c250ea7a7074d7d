//! Literal decoding as Synapse does it with Python: backslash escapes of quoted and format
//! strings (`ast.literal_eval`), and integers (`int(text, 0)`).

use crate::error::SynErr;

/// Decode Python string-literal escapes in `body` (the text between the quotes).
///
/// Not supported (reported as errors): `\N{name}` escapes and escapes of lone surrogates,
/// which Rust strings cannot hold.
pub fn unescape(body: &str) -> Result<String, String> {
    if body.contains('\0') {
        return Err("source code string cannot contain null bytes".into());
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            '\n' => {}
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut code = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            code = code * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(code).ok_or("illegal Unicode character")?);
            }
            'x' | 'u' | 'U' => {
                let (width, name) = match e {
                    'x' => (2, "\\xXX"),
                    'u' => (4, "\\uXXXX"),
                    _ => (8, "\\UXXXXXXXX"),
                };
                let mut code = 0u32;
                for _ in 0..width {
                    let d = chars
                        .next_if(char::is_ascii_hexdigit)
                        .and_then(|d| d.to_digit(16))
                        .ok_or_else(|| format!("truncated {name} escape"))?;
                    code = code * 16 + d;
                }
                let ch = char::from_u32(code).ok_or(if (0xd800..0xe000).contains(&code) {
                    "unsupported surrogate escape"
                } else {
                    "illegal Unicode character"
                })?;
                out.push(ch);
            }
            'N' => return Err("unsupported \\N{...} escape (named characters)".into()),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Decode the text of a backtick format string: `` \` `` and `\{` are the characters, then
/// Python escapes apply.
pub fn format_unescape(raw: &str) -> Result<String, String> {
    unescape(&raw.replace("\\`", "`").replace("\\{", "{"))
}

/// The `BadSyntax` Synapse raises for a string literal it cannot decode: `mesg` and `valu`.
pub fn string_error(text: &str, raw: &str, why: &str) -> SynErr {
    let shown = python_repr(raw);
    SynErr::new(
        "BadSyntax",
        format!("Invalid character in string {shown}: {why}"),
    )
    .with("valu", shown.as_str())
    .with("text", text)
}

/// Python's `repr()` of a string.
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `int(text, 0)`: decimal (no leading zeros), `0x`, `0o`, `0b`, an optional sign and
/// `_` between digits. `None` if it is not one, or does not fit an `i128`.
pub fn python_int(text: &str) -> Option<i128> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = match lower.get(..2) {
        Some("0x") => (16, &lower[2..]),
        Some("0o") => (8, &lower[2..]),
        Some("0b") => (2, &lower[2..]),
        _ => (10, lower.as_str()),
    };
    let digits = if radix != 10 {
        digits.strip_prefix('_').unwrap_or(digits)
    } else {
        digits
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if radix == 10 && clean.len() > 1 && clean.starts_with('0') && clean.chars().any(|c| c != '0') {
        return None;
    }
    let value = i128::from_str_radix(&clean, radix).ok()?;
    Some(if neg { -value } else { value })
}

/// Synapse's `trimText`: at most 256 characters, longer text cut and ended with `...`.
pub fn trim_text(text: &str) -> String {
    if text.chars().count() <= 256 {
        return text.to_string();
    }
    let head: String = text.chars().take(253).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_like_python() {
        assert_eq!(unescape(r"a\tb\u00e9\x41\101\777").unwrap(), "a\tbéAAǿ");
        assert_eq!(unescape(r"a\qb").unwrap(), r"a\qb");
        assert_eq!(unescape(r"\u12").unwrap_err(), "truncated \\uXXXX escape");
        assert_eq!(unescape(r"\x4g").unwrap_err(), "truncated \\xXX escape");
        assert_eq!(
            unescape(r"\U00110000").unwrap_err(),
            "illegal Unicode character"
        );
        assert_eq!(format_unescape(r"a \` \{ \n").unwrap(), "a ` { \n");
    }

    #[test]
    fn ints_parse_like_python() {
        assert_eq!(python_int("10"), Some(10));
        assert_eq!(python_int("-0x1f"), Some(-31));
        assert_eq!(python_int("0o17"), Some(15));
        assert_eq!(python_int("1_000"), Some(1000));
        assert_eq!(python_int("00"), Some(0));
        assert_eq!(python_int("007"), None);
        assert_eq!(python_int("1e3"), None);
        assert_eq!(python_int("foo"), None);
    }

    #[test]
    fn repr_and_trim() {
        assert_eq!(python_repr("\"a\\u12\""), "'\"a\\\\u12\"'");
        assert_eq!(trim_text(&"x".repeat(300)).len(), 256);
    }
}
