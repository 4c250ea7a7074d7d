//! time (epoch milliseconds, UTC), ival (`(min, max)`, max exclusive) and duration.
//!
//! Time strings follow `synapse.lib.time`: the text is lowercased and stripped, a timezone
//! is cut off, a relative part (`-1 day`) is applied, and otherwise only the digits are kept,
//! their count choosing the format (`%Y`, `%Y%m`, `%Y%m%d`, ... up to `%f`). Each format is
//! matched with the patterns of Python's `strptime` so that partial and bad digits fail or
//! succeed as they do there, and the milliseconds are computed with Python's float steps.

use std::sync::OnceLock;

use regex::Regex;

use super::no_norm;
use crate::clock::now_ms;
use crate::cortex::model::py;
use crate::cortex::model::types::{Norm, Type};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// The "unknown future" marker `?`.
pub(crate) const FUTSIZE: i64 = i64::MAX;
/// 9999/12/31 23:59:59.999, the largest real time.
pub(crate) const MAXSIZE: i64 = 253402300799999;

const ONESEC: i64 = 1000;
const ONEMIN: i64 = 60_000;
const ONEHOUR: i64 = 3_600_000;
const ONEDAY: i64 = 86_400_000;

/// Relative time units (`synapse.lib.time.timeunits`), longest names first as Synapse's
/// timezone regex lists them.
const UNITS: &[(&str, i64)] = &[
    ("seconds", ONESEC),
    ("minutes", ONEMIN),
    ("minute", ONEMIN),
    ("hours", ONEHOUR),
    ("secs", ONESEC),
    ("mins", ONEMIN),
    ("hour", ONEHOUR),
    ("days", ONEDAY),
    ("sec", ONESEC),
    ("min", ONEMIN),
    ("day", ONEDAY),
];

/// RFC 822 timezone names and their UTC offsets in ms (`synapse.lookup.timezones`), longest
/// first.
const TIMEZONES: &[(&str, i64)] = &[
    ("cdt", -5 * ONEHOUR),
    ("cst", -6 * ONEHOUR),
    ("edt", -4 * ONEHOUR),
    ("est", -5 * ONEHOUR),
    ("gmt", 0),
    ("mdt", -6 * ONEHOUR),
    ("mst", -7 * ONEHOUR),
    ("pdt", -7 * ONEHOUR),
    ("pst", -8 * ONEHOUR),
    ("utc", 0),
    ("ut", 0),
    ("a", -ONEHOUR),
    ("m", -12 * ONEHOUR),
    ("n", ONEHOUR),
    ("y", 12 * ONEHOUR),
    ("z", 0),
];

fn bad(mesg: impl Into<String>) -> SynErr {
    SynErr::new("BadTypeValu", mesg).with("name", "time")
}

fn tz_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let names: Vec<&str> = TIMEZONES.iter().map(|(n, _)| *n).collect();
        let units: Vec<&str> = UNITS.iter().map(|(n, _)| *n).collect();
        let pat = format!(
            r"(?i)\d(?P<tzstr>\s?(?:(?P<tzname>{})|(?:(?P<tzrel>\-|\+)(?P<tzhr>\d{{1,2}}):?(?P<tzmin>\d{{2}}))))(?:[\-|\+]\d+(?:{}))?$",
            names.join("|"),
            units.join("|")
        );
        Regex::new(&pat).expect("a constant regex")
    })
}

/// `synapse.lib.time.parsetz`: cut a timezone off the text; the offset to add, in ms.
fn parsetz(text: &str) -> SynResult<(String, i64)> {
    let Some(caps) = tz_regex().captures(text) else {
        return Ok((text.to_string(), 0));
    };
    let tzstr = caps.name("tzstr").map_or("", |m| m.as_str());
    let base = if let Some(rel) = caps.name("tzrel") {
        let hr: i64 = caps
            .name("tzhr")
            .and_then(|m| m.as_str().parse().ok())
            .unwrap_or(0);
        let min: i64 = caps
            .name("tzmin")
            .and_then(|m| m.as_str().parse().ok())
            .unwrap_or(0);
        let mut base = ONEHOUR * hr + ONEMIN * min;
        if rel.as_str() == "+" {
            base = -base;
        }
        if base.abs() >= ONEDAY {
            return Err(bad(format!(
                "Timezone offset must be between +/- 24 hours for {text}"
            )));
        }
        base
    } else {
        let name = caps
            .name("tzname")
            .map_or("", |m| m.as_str())
            .to_lowercase();
        let offset = TIMEZONES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| *o)
            .ok_or_else(|| bad(format!("Unknown timezone for {text}")))?;
        -offset
    };
    Ok((text.replacen(tzstr, "", 1), base))
}

/// `synapse.lib.time.delta`: `-1 day` → -86400000. A missing or malformed number is
/// Python's ValueError, as in Synapse.
pub(crate) fn delta(text: &str) -> SynResult<i64> {
    let low = py::strip(text).to_lowercase();
    let ws = |s: &str| s.trim_start_matches([' ', '\t', '\r', '\n']).to_string();
    let mut rest = ws(&low);
    let mut sign = '+';
    if let Some(c) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        sign = c;
        rest = ws(&rest[1..]);
    }
    let ndig = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (num, after) = rest.split_at(ndig);
    let unit = ws(after);
    let size = match py::parse_int(num, 0).map_err(|e| SynErr::new("ValueError", e))? {
        py::PyInt::Small(i) => i64::try_from(i).map_err(|_| bad("time delta too large"))?,
        py::PyInt::Huge(_) => return Err(bad("time delta too large")),
    };
    let size = if sign == '-' { -size } else { size };
    let base = UNITS
        .iter()
        .find(|(n, _)| *n == unit)
        .map(|(_, b)| *b)
        .ok_or_else(|| bad(format!("unknown time delta units: {unit} for {text}")))?;
    size.checked_mul(base)
        .ok_or_else(|| bad("time delta too large"))
}

/// A broken-down UTC time, as `strptime` leaves it.
#[derive(Clone, Copy, Debug, Default)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micro: i64,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day number from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The patterns `strptime` uses for the directives Synapse's formats need.
fn directive(d: char) -> &'static str {
    match d {
        'Y' => r"(?P<Y>[0-9][0-9][0-9][0-9])",
        'm' => r"(?P<m>1[0-2]|0[1-9]|[1-9])",
        'd' => r"(?P<d>3[01]|[12][0-9]|0[1-9]|[1-9]| [1-9])",
        'H' => r"(?P<H>2[0-3]|[0-1][0-9]|[0-9])",
        'M' => r"(?P<M>[0-5][0-9]|[0-9])",
        'S' => r"(?P<S>6[0-1]|[0-5][0-9]|[0-9])",
        'f' => r"(?P<f>[0-9]{1,6})",
        'b' => r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
        _ => "",
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Python's `datetime.strptime(text, fmt)` for formats of `%Y %m %d %H %M %S %f %b` and
/// literal characters, with its ValueError messages.
fn strptime(text: &str, fmt: &str) -> Result<Civil, String> {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let re = {
        let mut map = cache
            .lock()
            .map_err(|_| "time format cache poisoned".to_string())?;
        if let Some(re) = map.get(fmt) {
            re.clone()
        } else {
            let mut pat = String::from(r"(?i)\A");
            let mut chars = fmt.chars();
            while let Some(c) = chars.next() {
                if c == '%' {
                    pat.push_str(directive(chars.next().unwrap_or('%')));
                } else {
                    pat.push_str(&regex::escape(&c.to_string()));
                }
            }
            let re = Regex::new(&pat).map_err(|e| e.to_string())?;
            map.insert(fmt.to_string(), re.clone());
            re
        }
    };
    let caps = re.captures(text).ok_or_else(|| {
        format!(
            "time data {} does not match format {}",
            py::repr_str(text),
            py::repr_str(fmt)
        )
    })?;
    let end = caps.get(0).map_or(0, |m| m.end());
    if end != text.len() {
        return Err(format!("unconverted data remains: {}", &text[end..]));
    }
    let num = |k: &str, default: i64| {
        caps.name(k)
            .and_then(|m| py::strip(m.as_str()).parse::<i64>().ok())
            .unwrap_or(default)
    };
    let month = match caps.name("b") {
        Some(b) => {
            let low = b.as_str().to_lowercase();
            MONTHS
                .iter()
                .position(|m| *m == low)
                .map_or(1, |i| i as i64 + 1)
        }
        None => num("m", 1),
    };
    let micro = caps.name("f").map_or(0, |m| {
        let s = format!("{:0<6}", m.as_str());
        s.parse::<i64>().unwrap_or(0)
    });
    let civil = Civil {
        year: num("Y", 1900),
        month,
        day: num("d", 1),
        hour: num("H", 0),
        minute: num("M", 0),
        second: num("S", 0),
        micro,
    };
    if civil.year < 1 {
        return Err(format!("year {} is out of range", civil.year));
    }
    if civil.day > days_in_month(civil.year, civil.month) {
        return Err("day is out of range for month".into());
    }
    if civil.second > 59 {
        return Err("second must be in 0..59".into());
    }
    Ok(civil)
}

/// Python's `int(a / b)` for ints: the correctly rounded float quotient.
fn true_div(n: i128, d: i128) -> f64 {
    let approx = n as f64 / d as f64;
    if n.unsigned_abs() < (1u128 << 53) {
        return approx;
    }
    // Pick the float nearest to n/d among the approximation and its neighbours.
    let err = |c: f64| -> Option<u128> {
        let bits = c.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = (bits & ((1u64 << 52) - 1)) as i128;
        let (mant, e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1i128 << 52), exp - 1075)
        };
        let mant = if c < 0.0 { -mant } else { mant };
        if e >= 0 {
            let lhs = mant
                .checked_mul(d)?
                .checked_mul(1i128.checked_shl(e as u32)?)?;
            Some(lhs.checked_sub(n)?.unsigned_abs())
        } else {
            let rhs = n.checked_mul(1i128.checked_shl((-e) as u32)?)?;
            Some(mant.checked_mul(d)?.checked_sub(rhs)?.unsigned_abs())
        }
    };
    let up = f64::from_bits(approx.to_bits() + 1);
    let down = f64::from_bits(approx.to_bits() - 1);
    let mut best = approx;
    let mut best_err = err(approx);
    for c in [up, down] {
        if let (Some(e), Some(b)) = (err(c), best_err)
            && e < b
        {
            best = c;
            best_err = Some(e);
        }
    }
    best
}

/// `int((dt - EPOCH).total_seconds() * 1000 + base)`, float steps included.
fn epoch_ms(c: &Civil, base: i64) -> i64 {
    let days = days_from_civil(c.year, c.month, c.day) as i128;
    let secs = days * 86400 + (c.hour * 3600 + c.minute * 60 + c.second) as i128;
    let micros = secs * 1_000_000 + c.micro as i128;
    let total = true_div(micros, 1_000_000);
    (total * 1000.0 + base as f64).trunc() as i64
}

/// `synapse.lib.time._rawparse`: the parsed time, the timezone offset and the digit count.
fn rawparse(otext: &str, base: Option<i64>, chop: bool) -> SynResult<(Civil, i64, usize)> {
    let mut text = py::strip(otext).to_lowercase().replace(' ', "");
    let (base, parsed_tz) = match base {
        Some(b) => (b, false),
        None => {
            let (t, b) = parsetz(&text)?;
            text = t;
            (b, b != 0)
        }
    };
    static RFC822: OnceLock<Regex> = OnceLock::new();
    let rfc822 = RFC822.get_or_init(|| {
        Regex::new(&format!(
            r"\A((?:mon|tue|wed|thu|fri|sat|sun),)?[0-9]{{1,2}}(?:{})[0-9]{{4}}[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}",
            MONTHS.join("|")
        ))
        .expect("a constant regex")
    });
    if let Some(caps) = rfc822.captures(&text) {
        if let Some(day) = caps.get(1) {
            text = text.replacen(day.as_str(), "", 1);
        }
        let civil = strptime(&text, "%d%b%Y%H:%M:%S")
            .map_err(|e| bad(format!("Error parsing time as RFC822 \"{otext}\"; {e}")))?;
        return Ok((civil, base, text.chars().count()));
    }
    let mut digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if chop {
        digits.truncate(17);
    }
    let tlen = digits.len();
    let fmt = match tlen {
        4 => "%Y",
        6 => "%Y%m",
        8 => "%Y%m%d",
        10 => "%Y%m%d%H",
        12 => "%Y%m%d%H%M",
        14 => "%Y%m%d%H%M%S",
        15..=20 => "%Y%m%d%H%M%S%f",
        _ => return Err(bad(format!("Unknown time format for {otext}"))),
    };
    if parsed_tz && tlen <= 10 {
        return Err(bad(format!(
            "Not enough information to parse timezone properly for {otext}."
        )));
    }
    let civil =
        strptime(&digits, fmt).map_err(|e| bad(format!("Error parsing time \"{otext}\"; {e}")))?;
    Ok((civil, base, tlen))
}

/// `synapse.lib.time.wildrange`: the `[tick, tock)` a truncated time (`2021/10*`) covers.
pub(crate) fn wildrange(text: &str) -> SynResult<(i64, i64)> {
    let (tick, base, tlen) = rawparse(text, None, false)?;
    let mut tock = tick;
    match tlen {
        4 => {
            tock.year += 1;
            tock.day = tock.day.min(days_in_month(tock.year, tock.month));
        }
        6 => {
            tock.month += 1;
            if tock.month > 12 {
                tock.month = 1;
                tock.year += 1;
            }
            tock.day = tock.day.min(days_in_month(tock.year, tock.month));
        }
        8 | 10 | 12 | 14 => {
            let step = match tlen {
                8 => ONEDAY,
                10 => ONEHOUR,
                12 => ONEMIN,
                _ => ONESEC,
            };
            return Ok((epoch_ms(&tick, base), epoch_ms(&tick, base) + step));
        }
        _ => {
            return Err(bad(format!(
                "Time wild card position not supported for {text}"
            )));
        }
    }
    Ok((epoch_ms(&tick, base), epoch_ms(&tock, base)))
}

/// Time's `_normPyInt`: anything up to 9999-12-31, or the `?` marker.
fn check_time(t: &Type, ms: i128) -> SynResult<i64> {
    if ms > MAXSIZE as i128 && ms != FUTSIZE as i128 {
        return Err(t.bad(format!(
            "Time exceeds max size [{MAXSIZE}] allowed for a non-future marker, got {ms}"
        )));
    }
    i64::try_from(ms).map_err(|_| t.bad(format!("time value out of range: {ms}")))
}

/// Time's `_normPyStr`.
fn time_from_str(t: &Type, text: &str) -> SynResult<i64> {
    let valu = py::strip(text).to_lowercase();
    if valu == "now" {
        return Ok(now_ms());
    }
    if valu == "?" {
        return Ok(FUTSIZE);
    }
    let (valu, base) = parsetz(&valu)?;
    let has_unit = UNITS.iter().any(|(u, _)| valu.contains(u));
    if has_unit && (valu.contains('-') || valu.contains('+')) {
        let splitter = if valu.contains('-') { '-' } else { '+' };
        let (bgn, end) = valu.split_once(splitter).unwrap_or((&valu, ""));
        let delt = delta(&format!("{splitter}{end}"))?;
        let bgn = if bgn.is_empty() {
            now_ms()
        } else {
            time_from_str(t, bgn)? + base
        };
        return check_time(t, delt as i128 + bgn as i128);
    }
    let (civil, base, _) = rawparse(&valu, Some(base), true)?;
    check_time(t, epoch_ms(&civil, base) as i128)
}

/// synapse.lib.types.Time
pub(crate) fn norm_time(t: &Type, v: &Value) -> SynResult<Norm> {
    let ms = match v {
        Value::Str(s) => time_from_str(t, s)?,
        Value::Int(i) => check_time(t, *i)?,
        other => return Err(no_norm(t, other)),
    };
    Ok(Norm::plain(Value::Int(ms as i128)))
}

/// Time's `_getLiftValu`: `now`, `+1 day` relative to `relto`, or a norm.
fn lift_valu(t: &Type, v: &Value, relto: Option<i64>) -> SynResult<i64> {
    if let Value::Str(s) = v {
        let low = py::strip(s).to_lowercase();
        if low.is_empty() {
            return Err(t.bad(format!("Invalid time provided, got [{s}]")));
        }
        if low == "now" {
            return Ok(now_ms());
        }
        if low.starts_with('-') || low.starts_with('+') {
            let delt = delta(&low)?;
            return check_time(t, delt as i128 + relto.unwrap_or_else(now_ms) as i128);
        }
    }
    match v {
        Value::Str(s) => time_from_str(t, s),
        Value::Int(i) => check_time(t, *i),
        other => Err(no_norm(t, other)),
    }
}

/// Time's `getTickTock`: an ordered `(tick, tock)` from a pair, the second item possibly
/// relative to the first (`+1 day`, `-1 day`, `+-1 day`).
pub(crate) fn tick_tock(t: &Type, pair: &[Value]) -> SynResult<(i64, i64)> {
    let [val0, val1] = pair else {
        return Err(SynErr::new(
            "BadTypeValu",
            format!(
                "Time range must have a length of 2: {}",
                Value::Array(pair.to_vec())
            ),
        ));
    };
    let mut tick = lift_valu(t, val0, None).map_err(|e| {
        if e.name == "ValueError" {
            t.bad(format!(
                "Unable to process the value for val0 in _getLiftValu, got {}",
                val0.as_str()
                    .map_or_else(|| val0.to_string(), str::to_string)
            ))
        } else {
            e
        }
    })?;
    let mut sortval = false;
    let tock = match val1 {
        Value::Str(s) if s.starts_with("+-") || s.starts_with("-+") => {
            sortval = true;
            let delt = delta(&s[2..])?;
            let tock = tick + delt;
            tick -= delt;
            tock
        }
        Value::Str(s) if s.starts_with('-') => {
            sortval = true;
            lift_valu(t, val1, Some(tick))?
        }
        _ => lift_valu(t, val1, Some(tick))?,
    };
    if sortval && tick >= tock {
        return Ok((tick.min(tock), tick.max(tock)));
    }
    Ok((tick, tock))
}

fn ival(lo: i64, hi: i64) -> Norm {
    Norm::plain(Value::Array(vec![
        Value::Int(lo as i128),
        Value::Int(hi as i128),
    ]))
}

/// synapse.lib.types.Ival
pub(crate) fn norm_ival(t: &Type, v: &Value) -> SynResult<Norm> {
    match v {
        Value::Int(i) => {
            let lo = check_time(t, *i)?;
            let hi = check_time(t, lo as i128 + 1)?;
            Ok(ival(lo, hi))
        }
        Value::Str(s) => {
            let low = py::strip(s).to_lowercase();
            if low == "?" {
                return Err(t.bad("interval requires begin time"));
            }
            if let Some((a, b)) = low.split_once(',') {
                let (lo, hi) = tick_tock(t, &[Value::from(a), Value::from(b)])?;
                return Ok(ival(check_time(t, lo as i128)?, check_time(t, hi as i128)?));
            }
            let lo = time_from_str(t, &low)?;
            let hi = check_time(t, lo as i128 + 1)?;
            Ok(ival(lo, hi))
        }
        Value::Array(items) => {
            if items.len() != 2 {
                return Err(t.bad("Ival _normPyIter requires 2 items"));
            }
            let (lo, hi) = tick_tock(t, items)?;
            let lo = check_time(t, lo as i128)?;
            let mut hi = check_time(t, hi as i128)? as i128;
            if lo as i128 == hi {
                hi += 1;
            }
            if lo as i128 > hi {
                return Err(t.bad("Ival range must in (min, max) format"));
            }
            if hi > FUTSIZE as i128 {
                return Err(t.bad("Ival upper range cannot exceed future size marker"));
            }
            Ok(ival(lo, hi as i64))
        }
        other => Err(no_norm(t, other)),
    }
}

/// `synapse.lib.time.repr`: `YYYY/MM/DD hh:mm:ss.mmm` in UTC, or `?`.
pub(crate) fn repr_time(ms: i128) -> String {
    if ms == FUTSIZE as i128 {
        return "?".into();
    }
    let ms = ms as i64;
    let days = ms.div_euclid(ONEDAY);
    let rem = ms.rem_euclid(ONEDAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / ONEHOUR,
        rem % ONEHOUR / ONEMIN,
        rem % ONEMIN / ONESEC,
        rem % ONESEC
    )
}

/// synapse.lib.types.Duration: `1D 02:03:04.5`, `02:03`, `90` (seconds), or ms as an int.
pub(crate) fn norm_duration(t: &Type, v: &Value) -> SynResult<Norm> {
    let text = match v {
        Value::Int(i) => return Ok(Norm::plain(Value::Int(*i))),
        Value::Str(s) => py::strip(s).to_string(),
        other => return Err(no_norm(t, other)),
    };
    if text.is_empty() {
        return Err(t.bad("Duration string must have non-zero length."));
    }
    let bad_num = || t.bad(format!("Invalid numeric value in duration: {text}."));
    let int_of = |s: &str, base: u32| match py::parse_int(s, base) {
        Ok(py::PyInt::Small(i)) => Ok(i),
        _ => Err(bad_num()),
    };
    let float_of = |s: &str| py::strip(s).parse::<f64>().map_err(|_| bad_num());
    let mut dura: i128 = 0;
    let mut rest = text.clone();
    if let Some((days, after)) = rest.clone().split_once('D') {
        dura += int_of(py::strip(days), 0)? * ONEDAY as i128;
        rest = py::strip(after).to_string();
    }
    if !rest.is_empty() {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [secs] => dura += (float_of(secs)? * ONESEC as f64) as i128,
            [m, s] => {
                dura += int_of(py::strip(m), 10)? * ONEMIN as i128;
                dura += (float_of(s)? * ONESEC as f64) as i128;
            }
            [h, m, s] => {
                dura += int_of(py::strip(h), 10)? * ONEHOUR as i128;
                dura += int_of(py::strip(m), 10)? * ONEMIN as i128;
                dura += (float_of(s)? * ONESEC as f64) as i128;
            }
            _ => return Err(t.bad("Invalid number of : characters for duration.")),
        }
    }
    Ok(Norm::plain(Value::Int(dura)))
}

/// Duration's repr: `[ND ]HH:MM:SS.mmm`.
pub(crate) fn repr_duration(ms: i128) -> String {
    let day = ONEDAY as i128;
    let (days, rem) = (ms.div_euclid(day), ms.rem_euclid(day));
    let (hours, rem) = (rem / ONEHOUR as i128, rem % ONEHOUR as i128);
    let (mins, rem) = (rem / ONEMIN as i128, rem % ONEMIN as i128);
    let (secs, millis) = (rem / ONESEC as i128, rem % ONESEC as i128);
    let lead = if days != 0 {
        format!("{days}D ")
    } else {
        String::new()
    };
    format!("{lead}{hours:02}:{mins:02}:{secs:02}.{millis:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        for days in [-719162, -1, 0, 1, 18262, 2932896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2020, 1, 1), 18262);
    }

    #[test]
    fn division_is_correctly_rounded() {
        assert_eq!(
            true_div(1_577_934_245_678_000, 1_000_000),
            1_577_934_245.678
        );
        assert_eq!(
            true_div(253_402_300_799_999_000, 1_000_000),
            253_402_300_799.999
        );
    }

    #[test]
    fn strptime_like_python() {
        assert_eq!(
            strptime("20201301", "%Y%m%d").unwrap_err(),
            "unconverted data remains: 1"
        );
        assert_eq!(
            strptime("20200230", "%Y%m%d").unwrap_err(),
            "day is out of range for month"
        );
        assert!(strptime("2020", "%Y").is_ok());
    }

    #[test]
    fn deltas() {
        assert_eq!(delta("-1 day").unwrap(), -ONEDAY);
        assert_eq!(delta("+2 hours").unwrap(), 2 * ONEHOUR);
        assert_eq!(delta("-01-01 +1 day").unwrap_err().name, "ValueError");
        assert_eq!(delta("3 weeks").unwrap_err().name, "BadTypeValu");
    }
}
