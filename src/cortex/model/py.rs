//! Python's string and number rules that Synapse's normalizers lean on: `str.strip()`,
//! `str.split()`, `int(text, 0)`, `repr(str)`, `str(float)`. Norms must agree with Python
//! Synapse byte for byte, so these follow CPython's definitions rather than Rust's.

/// Python's `str.isspace()`: Unicode White_Space plus the four ASCII separators U+001C..U+001F.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `str.split()` with no argument: runs of whitespace separate, empty parts dropped.
pub fn split_ws(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|p| !p.is_empty())
}

/// `' '.join(text.split())`: whitespace runs become one space, the ends are trimmed.
pub fn onespace(s: &str) -> String {
    split_ws(s).collect::<Vec<_>>().join(" ")
}

/// Python's `str.isprintable()` for one character, as used by `synapse.lib.chop.printables`:
/// false for controls, format characters, separators other than the ASCII space, surrogates,
/// private-use and unassigned code points. Rust has no Unicode category tables, so this covers
/// the categories by their well-known ranges (Cc, Zl, Zp, Zs, the common Cf).
pub fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let u = c as u32;
    let control = u < 0x20 || (0x7f..0xa0).contains(&u);
    let format = matches!(
        u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
            | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
            | 0xe0001 | 0xe0020..=0xe007f
    );
    let private = (0xe000..=0xf8ff).contains(&u) || u >= 0xf0000;
    !(control || format || private || is_space(c))
}

/// Python's `repr()` of a str: single quotes unless the text holds `'` and no `"`, with
/// backslash escapes for the quote, `\\`, `\t`, `\n`, `\r` and other non-printables.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c != ' ' && (!is_printable(c) || (c as u32) < 0x7f && c.is_ascii_control()) => {
                let u = c as u32;
                if u < 0x100 {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u < 0x10000 {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// An integer parsed the way Python would, which may be larger than `i128` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PyInt {
    /// Fits an `i128`.
    Small(i128),
    /// Too large in magnitude; `true` when positive.
    Huge(bool),
}

/// Python's `int(text, base)` for base 0 (prefix decides, `0x`/`0o`/`0b`, no leading zeros
/// on decimals) or base 10 (leading zeros allowed). Surrounding whitespace, a sign and single
/// underscores between digits are accepted. The error is Python's ValueError message.
pub fn parse_int(text: &str, base: u32) -> Result<PyInt, String> {
    let err = || {
        format!(
            "invalid literal for int() with base {base}: {}",
            repr_str(text)
        )
    };
    let s = strip(text);
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = s.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits, prefixed) = match (base, lower.as_deref()) {
        (0, Some("0x")) => (16, &s[2..], true),
        (0, Some("0o")) => (8, &s[2..], true),
        (0, Some("0b")) => (2, &s[2..], true),
        (0, _) => (10, s, false),
        (b, _) => (b, s, false),
    };
    // After a prefix one underscore may come first: 0x_ff.
    let digits = if prefixed {
        digits.strip_prefix('_').unwrap_or(digits)
    } else {
        digits
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(err());
    }
    let mut value: i128 = 0;
    let mut huge = false;
    let mut all_zero = true;
    for c in digits.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix).ok_or_else(err)?;
        all_zero &= d == 0;
        match value
            .checked_mul(radix as i128)
            .and_then(|v| v.checked_add(d as i128))
        {
            Some(v) => value = v,
            None => huge = true,
        }
    }
    // Base 0 refuses "010" (an old octal spelling) but accepts "000".
    if base == 0 && radix == 10 && digits.starts_with('0') && !all_zero {
        return Err(err());
    }
    if huge {
        return Ok(PyInt::Huge(!neg));
    }
    Ok(PyInt::Small(if neg { -value } else { value }))
}

/// Python's `int(float)`: truncation toward zero, with CPython's errors for NaN and infinity.
pub fn float_to_int(f: f64) -> Result<i128, (&'static str, String)> {
    if f.is_nan() {
        return Err((
            "ValueError",
            "cannot convert float NaN to integer".to_string(),
        ));
    }
    if f.is_infinite() {
        return Err((
            "OverflowError",
            "cannot convert float infinity to integer".to_string(),
        ));
    }
    Ok(f.trunc() as i128)
}

/// `format(Decimal(str(f)), 'f')`: a float as Synapse's str type writes it, in positional
/// notation with Python's shortest digits (`1.0`, `0.0000001`, `100000000000000000000`).
pub fn float_str(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let text = format!("{f}");
    // Python's repr keeps ".0" on integral values below 1e16; above that it switches to an
    // exponent, which Decimal then writes out without a fraction.
    if f.fract() == 0.0 && f.abs() < 1e16 && !text.contains('.') {
        format!("{text}.0")
    } else {
        text
    }
}

/// Python's `repr(float)` (also `str(float)`): the shortest round-trip digits, positional
/// when the decimal point falls within 16 digits, else `1e+16` / `1.5e-05` style.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let decpt = exp + 1;
    let body = if -4 < decpt && decpt <= 16 {
        let n = digits.len() as i32;
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{first}{frac}e{sign}{:02}", exp.abs())
    };
    if neg { format!("-{body}") } else { body }
}

/// The digits of `text` (Python's `str.isdigit()` limited to ASCII digits).
pub fn ascii_digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_follow_python() {
        assert_eq!(parse_int(" 42 ", 0), Ok(PyInt::Small(42)));
        assert_eq!(parse_int("0x10", 0), Ok(PyInt::Small(16)));
        assert_eq!(parse_int("0o10", 0), Ok(PyInt::Small(8)));
        assert_eq!(parse_int("-0b101", 0), Ok(PyInt::Small(-5)));
        assert_eq!(parse_int("1_000", 0), Ok(PyInt::Small(1000)));
        assert_eq!(parse_int("000", 0), Ok(PyInt::Small(0)));
        assert_eq!(parse_int("010", 10), Ok(PyInt::Small(10)));
        assert_eq!(
            parse_int("010", 0),
            Err("invalid literal for int() with base 0: '010'".into())
        );
        assert_eq!(
            parse_int("1e3", 0),
            Err("invalid literal for int() with base 0: '1e3'".into())
        );
        assert!(parse_int("", 0).is_err());
        assert!(parse_int("1__0", 0).is_err());
        assert_eq!(
            parse_int(&"9".repeat(50), 0),
            Ok(PyInt::Huge(true)),
            "beyond i128"
        );
    }

    #[test]
    fn reprs_follow_python() {
        assert_eq!(repr_str("abc"), "'abc'");
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(repr_str("a'\"b"), "'a\\'\"b'");
        assert_eq!(repr_str("a\nb\x01"), "'a\\nb\\x01'");
        assert_eq!(repr_str("é"), "'é'");
    }

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float_str(1.5), "1.5");
        assert_eq!(float_str(1.0), "1.0");
        assert_eq!(float_str(-0.0), "-0.0");
        assert_eq!(float_str(1e20), "100000000000000000000");
        assert_eq!(float_str(1e-7), "0.0000001");
        assert_eq!(float_repr(-90.0), "-90.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(123.456), "123.456");
    }

    #[test]
    fn whitespace_is_pythons() {
        assert_eq!(strip("\u{1c} a \u{a0}"), "a");
        assert_eq!(onespace("  a \t b  "), "a b");
        assert!(!is_printable('\u{200b}'));
        assert!(is_printable('é'));
    }
}
