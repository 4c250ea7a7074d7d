//! int, float, bool, str, hex, guid, loc, syn:tag, taxon and taxonomy.

use std::sync::OnceLock;

use regex::Regex;

use super::{IntSpec, StrSpec, no_norm, str_input};
use crate::cortex::model::py::{self, PyInt};
use crate::cortex::model::types::{Norm, Type};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// A Python regex pattern compiled for Rust on first use, matched like Python's
/// `pattern.match(text)` (anchored at the start only; `$` also matches before a final `\n`).
#[derive(Debug)]
pub(crate) struct PyRegex {
    /// The pattern as Synapse writes it.
    pub pattern: String,
    compiled: OnceLock<Result<Regex, String>>,
}

impl PyRegex {
    pub(crate) fn new(pattern: String) -> PyRegex {
        PyRegex {
            pattern,
            compiled: OnceLock::new(),
        }
    }

    fn regex(&self) -> Result<&Regex, String> {
        self.compiled
            .get_or_init(|| {
                Regex::new(&format!(r"\A(?:{})", translate_dollars(&self.pattern)))
                    .map_err(|e| format!("cannot compile regex {}: {e}", self.pattern))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The named groups of a match at the start of `text` (None for groups that did not
    /// take part), or None when it does not match.
    pub(crate) fn match_groups(&self, text: &str) -> Result<Option<Vec<(String, Value)>>, String> {
        let re = self.regex()?;
        Ok(re.captures(text).map(|caps| {
            re.capture_names()
                .flatten()
                .map(|name| {
                    let v = caps
                        .name(name)
                        .map_or(Value::Nil, |m| Value::Str(m.as_str().to_string()));
                    (name.to_string(), v)
                })
                .collect()
        }))
    }
}

/// Python's `$` (no MULTILINE) matches at the end or before a final newline; Rust's only at
/// the end. Rewrite each unescaped `$` outside a character class.
fn translate_dollars(pat: &str) -> String {
    let mut out = String::with_capacity(pat.len() + 8);
    let mut chars = pat.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class => out.push_str(r"(?:\n?\z)"),
            c => out.push(c),
        }
    }
    out
}

/// `value is above max=...` and friends: the range and enum checks of Int._normPyInt.
pub(crate) fn check_int(t: &Type, s: &IntSpec, v: PyInt) -> SynResult<i128> {
    let i = match v {
        PyInt::Small(i) if i < s.min => return Err(t.bad(format!("value is below min={}", s.min))),
        PyInt::Small(i) if i > s.max => return Err(t.bad(format!("value is above max={}", s.max))),
        PyInt::Small(i) => i,
        PyInt::Huge(true) => return Err(t.bad(format!("value is above max={}", s.max))),
        PyInt::Huge(false) => return Err(t.bad(format!("value is below min={}", s.min))),
    };
    if !s.enums.is_empty() && s.enums_strict && !s.enums.iter().any(|(e, _)| *e == i) {
        return Err(t.bad("Value is not a valid enum value."));
    }
    Ok(i)
}

/// Python's `int(text, 0)` as a BadTypeValu on failure.
pub(crate) fn parse_int0(t: &Type, text: &str) -> SynResult<PyInt> {
    py::parse_int(text, 0).map_err(|e| t.bad(e))
}

/// Python's `int(f)` for a float, with its exceptions.
pub(crate) fn float_int(f: f64) -> SynResult<i128> {
    py::float_to_int(f).map_err(|(name, mesg)| SynErr::new(name, mesg))
}

/// The int an int-family type reads before its own checks: str via enums or `int(s, 0)`,
/// bools and floats via `int()`.
pub(crate) fn int_input(t: &Type, s: &IntSpec, v: &Value) -> SynResult<PyInt> {
    match v {
        Value::Str(text) => {
            if !s.enums.is_empty() {
                let low = text.to_lowercase();
                if let Some((i, _)) = s.enums.iter().find(|(_, n)| n.to_lowercase() == low) {
                    return Ok(PyInt::Small(*i));
                }
            }
            parse_int0(t, text)
        }
        Value::Int(i) => Ok(PyInt::Small(*i)),
        Value::Bool(b) => Ok(PyInt::Small(*b as i128)),
        Value::Float(f) => Ok(PyInt::Small(float_int(*f)?)),
        other => Err(no_norm(t, other)),
    }
}

/// synapse.lib.types.Int
pub(crate) fn norm_int(t: &Type, s: &IntSpec, v: &Value) -> SynResult<Norm> {
    let i = check_int(t, s, int_input(t, s, v)?)?;
    Ok(Norm::plain(Value::Int(i)))
}

/// Python's `float(text)`: whitespace, underscores between digits, inf/nan spellings.
fn parse_float(text: &str) -> Option<f64> {
    let s = py::strip(text);
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let ok = i > 0
                && i + 1 < bytes.len()
                && bytes[i - 1].is_ascii_digit()
                && bytes[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
        }
    }
    let clean: String = s.chars().filter(|c| *c != '_').collect();
    let low = clean.to_ascii_lowercase();
    let body = low.trim_start_matches(['+', '-']);
    if !matches!(body, "inf" | "infinity" | "nan")
        && !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    clean.parse::<f64>().ok()
}

/// synapse.lib.types.Float
pub(crate) fn norm_float(
    t: &Type,
    (min, min_valid): (Option<f64>, bool),
    (max, max_valid): (Option<f64>, bool),
    v: &Value,
) -> SynResult<Norm> {
    let f = match v {
        Value::Str(s) => parse_float(s).ok_or_else(|| {
            t.bad(format!(
                "could not convert string to float: {}",
                py::repr_str(s)
            ))
        })?,
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        other => return Err(no_norm(t, other)),
    };
    if let Some(min) = min {
        let ok = if min_valid { f >= min } else { f > min };
        if !ok {
            return Err(t
                .bad(format!("value is below min={}", py::float_repr(min)))
                .with("valu", Value::Float(f)));
        }
    }
    if let Some(max) = max {
        let ok = if max_valid { f <= max } else { f < max };
        if !ok {
            return Err(t
                .bad(format!("value is above max={}", py::float_repr(max)))
                .with("valu", Value::Float(f)));
        }
    }
    Ok(Norm::plain(Value::Float(f)))
}

/// synapse.lib.types.Bool
pub(crate) fn norm_bool(t: &Type, v: &Value) -> SynResult<Norm> {
    let b = match v {
        Value::Str(s) => match py::parse_int(s, 0) {
            Ok(PyInt::Small(i)) => i != 0,
            Ok(PyInt::Huge(_)) => true,
            Err(_) => match py::strip(&s.to_lowercase()) {
                "true" | "t" | "y" | "yes" | "on" => true,
                "false" | "f" | "n" | "no" | "off" => false,
                _ => return Err(t.bad("Failed to norm bool")),
            },
        },
        Value::Int(i) => *i != 0,
        Value::Bool(b) => *b,
        other => return Err(no_norm(t, other)),
    };
    Ok(Norm::plain(Value::Int(b as i128)))
}

/// synapse.lib.types.Str: lower, replace, strip, onespace, enums, regex, in that order.
pub(crate) fn norm_str(t: &Type, s: &StrSpec, v: &Value) -> SynResult<Norm> {
    let orig = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let mut norm = if s.lower {
        orig.to_lowercase()
    } else {
        orig.clone()
    };
    for (look, repl) in &s.replace {
        norm = norm.replace(look.as_str(), repl);
    }
    if s.strip {
        norm = py::strip(&norm).to_string();
    }
    if s.onespace {
        norm = py::onespace(&norm);
    }
    if let Some(enums) = &s.enums
        && !enums.contains(&norm)
    {
        return Err(t.bad("Value not in enums"));
    }
    let mut subs = Vec::new();
    if let Some(re) = &s.regex {
        match re
            .match_groups(&norm)
            .map_err(|e| SynErr::new("BadTypeDef", e))?
        {
            Some(groups) => subs = groups,
            None => {
                return Err(t.bad(format!("[{orig}] does not match [{}]", re.pattern)));
            }
        }
    }
    Ok(Norm::with_subs(Value::Str(norm), subs))
}

/// `strip().lower()`, `0x` removed, spaces and colons removed.
pub(crate) fn prenorm_hex(text: &str) -> String {
    let low = py::strip(text).to_lowercase();
    let low = low.strip_prefix("0x").unwrap_or(&low);
    low.replace([' ', ':'], "")
}

/// `binascii.unhexlify` with its error messages.
pub(crate) fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.is_ascii() {
        return Err("string argument should contain only ASCII characters".into());
    }
    if !text.len().is_multiple_of(2) {
        return Err("Odd-length string".into());
    }
    hex::decode(text).map_err(|_| "Non-hexadecimal digit found".into())
}

/// synapse.lib.types.Hex
pub(crate) fn norm_hex(t: &Type, size: usize, zeropad: usize, v: &Value) -> SynResult<Norm> {
    let text = match v {
        Value::Str(s) => s.clone(),
        Value::Bin(b) => hex::encode(b),
        Value::Int(i) => return hex_of_int(t, size, zeropad, *i),
        other => return Err(no_norm(t, other)),
    };
    let mut valu = prenorm_hex(&text);
    if !valu.chars().count().is_multiple_of(2) {
        valu.insert(0, '0');
    }
    if valu.is_empty() {
        return Err(t.bad("No string left after stripping."));
    }
    if zeropad > 0 && valu.len() < zeropad {
        valu = format!("{}{valu}", "0".repeat(zeropad - valu.len()));
    }
    unhex(&valu).map_err(|e| SynErr::new("BadTypeValu", e).with("name", "hex"))?;
    if size > 0 && valu.len() != size {
        return Err(t.bad("Invalid width."));
    }
    Ok(Norm::plain(Value::Str(valu)))
}

fn hex_of_int(t: &Type, size: usize, zeropad: usize, i: i128) -> SynResult<Norm> {
    let bits = 128
        - if i < 0 {
            (!i).leading_zeros()
        } else {
            i.leading_zeros()
        } as usize;
    let extra = if i < 0 { 8 } else { 7 };
    let len = ((bits + extra) / 8).max(zeropad / 2);
    let full = i.to_be_bytes();
    let bytes: Vec<u8> = if len <= 16 {
        full[16 - len..].to_vec()
    } else {
        let fill = if i < 0 { 0xff } else { 0 };
        std::iter::repeat_n(fill, len - 16).chain(full).collect()
    };
    let text = hex::encode(bytes);
    if size > 0 && text.len() != size {
        return Err(t.bad("Invalid width."));
    }
    Ok(Norm::plain(Value::Str(text)))
}

/// synapse.lib.types.Guid
pub(crate) fn norm_guid(t: &Type, v: &Value) -> SynResult<Norm> {
    match v {
        Value::Str(s) if s == "*" => Ok(Norm::plain(crate::guid::guid())),
        Value::Str(s) => {
            let low = s.to_lowercase().replace('-', "");
            if is_guid_text(&low) {
                Ok(Norm::plain(low))
            } else {
                Err(t.bad("valu is not a guid."))
            }
        }
        Value::Array(items) if items.is_empty() => Err(t.bad("Guid list values cannot be empty.")),
        Value::Array(_) => Ok(Norm::plain(crate::guid::guid_of(v))),
        other => Err(no_norm(t, other)),
    }
}

/// Synapse's `isguid`: 32 lowercase hex digits (Python's `$` also lets a final `\n` through).
pub(crate) fn is_guid_text(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    crate::guid::is_guid(body)
}

/// synapse.lib.types.Loc
pub(crate) fn norm_loc(t: &Type, v: &Value) -> SynResult<Norm> {
    let Value::Str(s) = v else {
        return Err(no_norm(t, v));
    };
    let low = s.to_lowercase();
    let parts: Vec<String> = py::strip(&low).split('.').map(py::onespace).collect();
    Ok(Norm::plain(parts.join(".")))
}

/// Runs of `\w` in lowercased, stripped text, joined with `_`.
fn word_runs(text: &str) -> String {
    static WORDS: OnceLock<Regex> = OnceLock::new();
    let re = WORDS.get_or_init(|| Regex::new(r"\w+").expect("a constant regex"));
    let low = text.to_lowercase();
    re.find_iter(py::strip(&low))
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join("_")
}

/// synapse.lib.types.TagPart: one tag segment.
pub(crate) fn norm_tagpart(t: &Type, v: &Value) -> SynResult<String> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let part = word_runs(&text);
    if part.is_empty() {
        return Err(SynErr::new(
            "BadTypeValu",
            "Each tag part must be non-zero length.",
        ));
    }
    Ok(part)
}

/// synapse.lib.types.Tag: `#Foo.Bar` → `foo.bar` with subs base, depth, up.
pub(crate) fn norm_tag(t: &Type, v: &Value) -> SynResult<Norm> {
    let parts: Vec<Value> = match v {
        Value::Str(s) => s.trim_matches('#').split('.').map(Value::from).collect(),
        Value::Array(items) => items.clone(),
        other => match str_input(other) {
            Some(s) => s.trim_matches('#').split('.').map(Value::from).collect(),
            None => return Err(no_norm(t, other)),
        },
    };
    let toks = parts
        .iter()
        .map(|p| norm_tagpart(t, p))
        .collect::<SynResult<Vec<_>>>()?;
    let Some(base) = toks.last().cloned() else {
        return Err(t.bad("Tag must have at least one part."));
    };
    let mut subs = vec![
        ("base".to_string(), Value::Str(base)),
        ("depth".to_string(), Value::Int(toks.len() as i128 - 1)),
    ];
    if toks.len() > 1 {
        subs.push(("up".into(), Value::Str(toks[..toks.len() - 1].join("."))));
    }
    Ok(Norm::with_subs(Value::Str(toks.join(".")), subs))
}

/// synapse.lib.types.Taxon: one taxonomy segment.
pub(crate) fn norm_taxon(t: &Type, v: &Value) -> SynResult<String> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let part = word_runs(&text);
    if part.is_empty() {
        return Err(SynErr::new(
            "BadTypeValu",
            "Each taxon must be non-zero length.",
        ));
    }
    Ok(part)
}

/// synapse.lib.types.Taxonomy: `a.b.c.` with subs base, depth, parent.
pub(crate) fn norm_taxonomy(t: &Type, v: &Value) -> SynResult<Norm> {
    let parts: Vec<Value> = match v {
        Value::Array(items) => items.clone(),
        other => {
            let text = str_input(other).ok_or_else(|| no_norm(t, other))?;
            py::strip(&text)
                .trim_matches('.')
                .split('.')
                .map(Value::from)
                .collect()
        }
    };
    let toks = parts
        .iter()
        .map(|p| norm_taxon(t, p))
        .collect::<SynResult<Vec<_>>>()?;
    let Some(base) = toks.last().cloned() else {
        return Err(SynErr::new("IndexError", "list index out of range"));
    };
    let mut subs = vec![
        ("base".to_string(), Value::Str(base)),
        ("depth".to_string(), Value::Int(toks.len() as i128 - 1)),
    ];
    if toks.len() > 1 {
        subs.push((
            "parent".into(),
            Value::Str(format!("{}.", toks[..toks.len() - 1].join("."))),
        ));
    }
    Ok(Norm::with_subs(
        Value::Str(format!("{}.", toks.join("."))),
        subs,
    ))
}

/// The prefix a taxonomy `^=` lift scans: the norm, without its final `.` unless asked for.
pub(crate) fn taxonomy_lift_prefix(t: &Type, v: &Value) -> SynResult<String> {
    let norm = norm_taxonomy(t, v)?;
    let text = norm.valu.as_str().unwrap_or_default().to_string();
    match v {
        Value::Str(s) if !py::strip(s).ends_with('.') => Ok(text.trim_end_matches('.').to_string()),
        _ => Ok(text),
    }
}

/// Str's `_normForLift`: what a `^=` or `range=` lift compares (lower/replace/lstrip/onespace).
pub(crate) fn norm_for_lift(opts: &Value, text: &str) -> String {
    let flag = |k: &str| opts.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut valu = if flag("lower") {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    for pair in opts.get("replace").and_then(Value::as_array).unwrap_or(&[]) {
        if let Some([Value::Str(a), Value::Str(b)]) = pair.as_array() {
            valu = valu.replace(a.as_str(), b);
        }
    }
    if flag("strip") {
        valu = valu.trim_start_matches(py::is_space).to_string();
    }
    if flag("onespace") {
        valu = py::onespace(&valu);
    }
    valu
}
