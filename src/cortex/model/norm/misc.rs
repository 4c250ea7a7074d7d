//! tel:phone, tel:mob:imei, tel:mob:imsi, geo:latlong and velocities.

use super::basic::{float_int, int_input};
use super::{IntSpec, no_norm, py_err_str};
use crate::cortex::model::Model;
use crate::cortex::model::data::lookups;
use crate::cortex::model::py;
use crate::cortex::model::types::{Norm, Type};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// The country code of a phone number: the longest known prefix.
fn phone_cc(digits: &str) -> Option<&'static str> {
    let l = lookups();
    (1..=digits.len().min(l.phone_prefix_max))
        .rev()
        .find_map(|n| l.phone_prefixes.get(&digits[..n]).map(String::as_str))
}

/// synapse.models.telco.Phone: the digits, sub `loc` from the country prefix.
pub(crate) fn norm_phone(t: &Type, v: &Value) -> SynResult<Norm> {
    let text = match v {
        Value::Int(i) if *i < 1 => return Err(t.bad("phone int must be greater than 0")),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => s.clone(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
        Value::Float(f) => py::float_str(*f),
        other => return Err(no_norm(t, other)),
    };
    let digits = py::ascii_digits(&text);
    if digits.is_empty() {
        return Err(t.bad("requires a digit string"));
    }
    // Python looks the prefix up on int(digits), which drops leading zeros.
    let lookup = digits.trim_start_matches('0');
    let subs = match phone_cc(lookup) {
        Some(cc) => vec![("loc".to_string(), Value::from(cc))],
        None => Vec::new(),
    };
    Ok(Norm::with_subs(digits, subs))
}

/// tel:phone's repr: `+1 (703) 555-1212` for NANP numbers, else `+digits`.
pub(crate) fn phone_repr(valu: &str) -> String {
    if valu.len() == 11 && valu.starts_with('1') && valu.is_ascii() {
        return format!("+1 ({}) {}-{}", &valu[1..4], &valu[4..7], &valu[7..11]);
    }
    format!("+{valu}")
}

fn imei_check_digit(first14: &str) -> Option<u32> {
    let mut sum = 0;
    for (i, c) in first14.chars().take(14).enumerate() {
        let mut v = c.to_digit(10)?;
        if i % 2 == 1 {
            v *= 2;
        }
        sum += v / 10 + v % 10;
    }
    Some((10 - sum % 10) % 10)
}

/// synapse.models.telco.Imei: 14 digits get their check digit; 15 are verified.
pub(crate) fn norm_imei(t: &Type, s: &IntSpec, v: &Value) -> SynResult<Norm> {
    let i = match int_input(t, s, v)? {
        py::PyInt::Small(i) => i,
        py::PyInt::Huge(_) => return Err(t.bad("Failed to norm IMEI")),
    };
    let mut imei = i.to_string();
    match imei.len() {
        14 => {
            let cd = imei_check_digit(&imei).ok_or_else(|| t.bad("Failed to norm IMEI"))?;
            imei.push_str(&cd.to_string());
        }
        15 => {
            let cd = imei_check_digit(&imei).ok_or_else(|| t.bad("Failed to norm IMEI"))?;
            if imei[14..].parse::<u32>().ok() != Some(cd) {
                return Err(t.bad("invalid imei checksum byte"));
            }
        }
        _ => return Err(t.bad("Failed to norm IMEI")),
    }
    let num = |a: usize, b: usize| imei[a..b].parse::<i128>().unwrap_or(0);
    Ok(Norm::with_subs(
        Value::Int(num(0, 15)),
        vec![
            ("tac".into(), Value::Int(num(0, 8))),
            ("serial".into(), Value::Int(num(8, 14))),
            ("cd".into(), Value::Int(num(14, 15))),
        ],
    ))
}

/// synapse.models.telco.Imsi: up to 15 digits, sub `mcc` (the first three, as text).
pub(crate) fn norm_imsi(t: &Type, s: &IntSpec, v: &Value) -> SynResult<Norm> {
    let i = match int_input(t, s, v)? {
        py::PyInt::Small(i) => i,
        py::PyInt::Huge(_) => return Err(t.bad("invalid imsi len")),
    };
    let text = i.to_string();
    if text.len() > 15 {
        return Err(t.bad(format!("invalid imsi len: {}", text.len())));
    }
    let mcc: String = text.chars().take(3).collect();
    Ok(Norm::with_subs(
        Value::Int(i),
        vec![("mcc".into(), Value::Str(mcc))],
    ))
}

/// synapse.models.geospace.LatLong: `(lat, lon)` floats within range, subs lat and lon.
pub(crate) fn norm_latlong(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    let parts: Vec<Value> = match v {
        Value::Str(s) => py::strip(s).split(',').map(Value::from).collect(),
        Value::Array(items) => items.clone(),
        other => return Err(no_norm(t, other)),
    };
    let [lat, lon] = parts.as_slice() else {
        return Err(t.bad("Valu must contain valid latitude,longitude"));
    };
    let norm_of = |tname: &str, val: &Value| -> SynResult<Value> {
        let typ = m
            .typ(tname)
            .ok_or_else(|| SynErr::new("NoSuchType", format!("No type named {tname}.")))?;
        typ.norm(m, val).map(|n| n.valu).map_err(|e| {
            t.bad(if e.name == "BadTypeValu" {
                py_err_str(&e)
            } else {
                e.mesg().to_string()
            })
        })
    };
    let latv = norm_of("geo:latitude", lat)?;
    let lonv = norm_of("geo:longitude", lon)?;
    Ok(Norm::with_subs(
        Value::Array(vec![latv.clone(), lonv.clone()]),
        vec![("lat".into(), latv), ("lon".into(), lonv)],
    ))
}

const SPEED_DIST: &[(&str, f64)] = &[
    ("mm", 1.0),
    ("millimeters", 1.0),
    ("k", 1_000_000.0),
    ("km", 1_000_000.0),
    ("kilometers", 1_000_000.0),
    ("nmi", 1_852_000.0),
    ("in", 25.4),
    ("inches", 25.4),
    ("ft", 304.8),
    ("feet", 304.8),
    ("mi", 1_609_344.0),
    ("miles", 1_609_344.0),
];

const SPEED_DURA: &[(&str, f64)] = &[
    ("s", 1.0),
    ("sec", 1.0),
    ("min", 60.0),
    ("minute", 60.0),
    ("h", 3600.0),
    ("hr", 3600.0),
    ("hour", 3600.0),
];

/// synapse.lib.types.Velocity: mm/sec from `10 km/h`, `5 mph`, `3 knots`, `0.5c` or an int.
pub(crate) fn norm_velocity(t: &Type, relative: bool, v: &Value) -> SynResult<Norm> {
    let neg_err = || {
        SynErr::new(
            "BadTypeValu",
            "Non-relative velocities may not be negative.",
        )
    };
    let text = match v {
        Value::Int(i) if *i < 0 && !relative => return Err(neg_err()),
        Value::Int(i) => return Ok(Norm::plain(Value::Int(*i))),
        Value::Str(s) => py::strip(&s.to_lowercase()).to_string(),
        other => return Err(no_norm(t, other)),
    };
    if text.is_empty() {
        return Err(SynErr::new(
            "BadTypeValu",
            "Empty string is not a valid velocity.",
        ));
    }
    let nlen = text
        .chars()
        .take_while(|c| "-0123456789.".contains(*c))
        .map(char::len_utf8)
        .sum::<usize>();
    let nums = if nlen == 0 { "1" } else { &text[..nlen] };
    let base: f64 = nums.parse().map_err(|_| {
        SynErr::new(
            "ValueError",
            format!("could not convert string to float: {}", py::repr_str(nums)),
        )
    })?;
    if base < 0.0 && !relative {
        return Err(neg_err());
    }
    let unit = py::strip(&text[nlen..]);
    let done = |f: f64| float_int(f).map(|i| Norm::plain(Value::Int(i)));
    if unit.is_empty() {
        return done(base);
    }
    if let Some((dist, dura)) = unit.split_once('/') {
        let dm = SPEED_DIST
            .iter()
            .find(|(n, _)| *n == dist)
            .ok_or_else(|| {
                SynErr::new(
                    "BadTypeValu",
                    format!("Unrecognized distance type: {dist}."),
                )
            })?
            .1;
        let tm = SPEED_DURA
            .iter()
            .find(|(n, _)| *n == dura)
            .ok_or_else(|| {
                SynErr::new(
                    "BadTypeValu",
                    format!("Unrecognized duration type: {dura}."),
                )
            })?
            .1;
        return done((base * dm) / tm);
    }
    match unit {
        "mph" => done((base * 1_609_344.0) / 3600.0),
        "kph" => done((base * 1_000_000.0) / 3600.0),
        "knots" | "kts" => done((base * 1_852_000.0) / 3600.0),
        "c" => done(base * 299_792_458_000.0),
        _ => Err(SynErr::new(
            "BadTypeValu",
            format!("Unknown velocity unit: {unit}."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imei_check_digits() {
        assert_eq!(imei_check_digit("49015420323751"), Some(8));
    }

    #[test]
    fn phone_prefixes() {
        assert_eq!(phone_cc("17035551212"), Some("us"));
        assert_eq!(phone_cc("442071234567"), Some("gb"));
        assert_eq!(phone_repr("17035551212"), "+1 (703) 555-1212");
        assert_eq!(phone_repr("442071234567"), "+442071234567");
    }
}
