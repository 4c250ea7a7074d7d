//! Filter comparisons (`+:asn=10`, `+:name^=vis`, `+.seen@=2020`): Synapse's
//! `Type.getCmprCtor`, evaluated on stored values.
//!
//! The operand is normalized with the type's lift operations ([`Type::stor_cmprs`]), which
//! already know CIDRs, fqdn wildcards, time prefixes and intervals; `!=`, `^=` and `~=` follow
//! Synapse's filter-only rules (`^=` and `~=` look at the repr of the value).

use std::cmp::Ordering;

use super::{Flow, Res, Runt};
use crate::cortex::edits::stortype as st;
use crate::cortex::model::{StorCmpr, Type};
use crate::cortex::storm::ast;
use crate::error::SynErr;
use crate::msgpack::Value;

/// `NoSuchCmpr` as filters raise it (without a message).
fn no_cmpr(cmpr: &str, typ: &Type) -> SynErr {
    SynErr {
        name: "NoSuchCmpr".into(),
        info: vec![
            ("cmpr".into(), Value::from(cmpr)),
            ("name".into(), Value::from(typ.name.as_str())),
        ],
    }
}

/// Python's ordering of two normalized values of one type.
pub(super) fn py_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                match py_cmp(i, j)? {
                    Ordering::Equal => continue,
                    other => return Some(other),
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => None,
    }
}

fn ord(a: &Value, b: &Value, want: impl Fn(Ordering) -> bool) -> bool {
    py_cmp(a, b).is_some_and(want)
}

/// The text of a value's repr, as `^=` and `~=` filters see it.
fn repr_text(rt: &Runt<'_>, typ: &Type, valu: &Value) -> String {
    match typ.repr(rt.model, valu) {
        Ok(Value::Str(s)) => s,
        Ok(other) => super::value::py_repr(&other),
        Err(_) => super::value::py_repr(valu),
    }
}

fn operand_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => super::value::py_repr(other),
    }
}

fn is_time(typ: &Type) -> bool {
    matches!(typ.stortype, st::TIME | st::MINTIME | st::MAXTIME)
}

/// Whether one lift operation matches a stored value.
fn stor_match(typ: &Type, sc: &StorCmpr, valu: &Value) -> bool {
    let pair = || match sc.valu.as_array() {
        Some([a, b]) => Some((a.clone(), b.clone())),
        _ => None,
    };
    match sc.cmpr.as_str() {
        "=" => {
            if typ.stortype == st::FQDN
                && let (Some(pattern), Some(text)) = (sc.valu.as_str(), valu.as_str())
                && let Some(suffix) = pattern.strip_prefix('*')
            {
                return text.ends_with(suffix);
            }
            py_cmp(&sc.valu, valu) == Some(Ordering::Equal) || sc.valu == *valu
        }
        "range=" => match pair() {
            // A time prefix (`=2020*`) is a half-open range.
            Some((lo, hi)) if is_time(typ) => {
                ord(valu, &lo, |o| o != Ordering::Less) && ord(valu, &hi, |o| o == Ordering::Less)
            }
            Some((lo, hi)) => {
                ord(valu, &lo, |o| o != Ordering::Less)
                    && ord(valu, &hi, |o| o != Ordering::Greater)
            }
            None => false,
        },
        "^=" => match (valu, &sc.valu) {
            (Value::Str(v), Value::Str(p)) => {
                if matches!(typ.stortype, st::LOC | st::TAG) {
                    v == p || v.starts_with(&format!("{p}."))
                } else {
                    v.starts_with(p.as_str())
                }
            }
            _ => false,
        },
        "<" => ord(valu, &sc.valu, |o| o == Ordering::Less),
        "<=" => ord(valu, &sc.valu, |o| o != Ordering::Greater),
        ">" => ord(valu, &sc.valu, |o| o == Ordering::Greater),
        ">=" => ord(valu, &sc.valu, |o| o != Ordering::Less),
        "@=" => match (pair(), valu.as_array()) {
            (Some((lo, hi)), Some([a, b])) => {
                ord(a, &hi, |o| o == Ordering::Less) && ord(b, &lo, |o| o == Ordering::Greater)
            }
            (Some((lo, hi)), None) => {
                ord(valu, &lo, |o| o != Ordering::Less) && ord(valu, &hi, |o| o == Ordering::Less)
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether a stored value of type `typ` satisfies `cmpr other` (the operand as the query gave
/// it). Errors: `NoSuchCmpr` (highlighted on the comparator) and the type's normalization
/// errors.
pub(super) fn matches(
    rt: &Runt<'_>,
    typ: &Type,
    cmpr: &ast::Cmpr,
    other: &Value,
    valu: &Value,
) -> Res<bool> {
    let model = rt.model;
    let name = cmpr.name.as_str();
    let cmprs = |c: &str, v: &Value| -> Res<Vec<StorCmpr>> {
        typ.stor_cmprs(model, c, v).map_err(|e| {
            if e.name == "NoSuchCmpr" {
                Flow::Err(rt.at(cmpr.span, no_cmpr(name, typ)))
            } else {
                Flow::Err(e)
            }
        })
    };
    Ok(match name {
        "=" => {
            if typ.stortype == st::FQDN && other.as_str() == Some("") {
                return Ok(false);
            }
            cmprs("=", other)?
                .iter()
                .any(|sc| stor_match(typ, sc, valu))
        }
        "!=" => typ.norm(model, other)?.valu != *valu,
        "~=" => {
            let pattern = operand_text(other);
            let re = regex::RegexBuilder::new(&pattern)
                .case_insensitive(true)
                .build()
                .map_err(|e| {
                    SynErr::new("BadSyntax", format!("Invalid regular expression: {e}"))
                })?;
            re.is_match(&repr_text(rt, typ, valu))
        }
        "^=" => match typ.stor_cmprs(model, "^=", other) {
            Ok(scs)
                if matches!(typ.stortype, st::LOC | st::TAG) || typ.ctor.ends_with("Taxonomy") =>
            {
                scs.iter().any(|sc| stor_match(typ, sc, valu))
            }
            _ => repr_text(rt, typ, valu).starts_with(&operand_text(other)),
        },
        "in=" => {
            let Some(items) = other.as_array() else {
                return Ok(cmprs("=", other)?
                    .iter()
                    .any(|sc| stor_match(typ, sc, valu)));
            };
            let mut hit = false;
            for item in items {
                if typ.norm(model, item)?.valu == *valu {
                    hit = true;
                }
            }
            hit
        }
        "range=" if !is_time(typ) && !matches!(other.as_array(), Some([_, _])) => {
            return Err(Flow::Err(SynErr {
                name: "BadCmprValu".into(),
                info: vec![
                    ("name".into(), Value::from(typ.name.as_str())),
                    ("valu".into(), other.clone()),
                    ("cmpr".into(), Value::from("range=")),
                ],
            }));
        }
        "range=" | "<" | "<=" | ">" | ">=" | "@=" => cmprs(name, other)?
            .iter()
            .any(|sc| stor_match(typ, sc, valu)),
        _ => return Err(Flow::Err(rt.at(cmpr.span, no_cmpr(name, typ)))),
    })
}
