//! Index keys: how a value of each stortype is laid out so that LMDB's byte order is the lift
//! order, and which key ranges a comparison covers.
//!
//! The encodings are Synapse's (`synapse/lib/layer.py`, the `StorType*` classes) except for
//! FLOAT64, which Synapse packs as a raw big-endian double and scans in pieces; here a float is
//! stored sign-flipped so that one contiguous key range covers every comparison.

use super::Cmp;
use crate::cortex::edits::stortype as st;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use regex::Regex;
use std::net::Ipv6Addr;
use std::ops::Bound;

/// UTF-8 index keys longer than this are cut down to [`UTF8_KEEP`] bytes plus a hash.
const UTF8_MAX: usize = 256;
/// How many leading bytes a cut-down UTF-8 key keeps (then 8 bytes of `xxh64`).
const UTF8_KEEP: usize = 248;
/// LATLONG keys scale degrees by this and store them in 5 bytes each.
const LATLONG_SCALE: f64 = 1e8;
/// The separator appended to LOC and TAG values so that `^=` matches whole segments.
const HIER_SEP: char = '.';

/// A readable name for a stortype, for error messages.
pub fn stortype_name(stortype: u16) -> String {
    let base = match stortype & !st::ARRAY {
        st::UTF8 => "utf8",
        st::U8 => "u8",
        st::U16 => "u16",
        st::U32 => "u32",
        st::U64 => "u64",
        st::I8 => "i8",
        st::I16 => "i16",
        st::I32 => "i32",
        st::I64 => "i64",
        st::GUID => "guid",
        st::TIME => "time",
        st::IVAL => "ival",
        st::MSGP => "msgp",
        st::LATLONG => "latlong",
        st::LOC => "loc",
        st::TAG => "tag",
        st::FQDN => "fqdn",
        st::IPV6 => "ipv6",
        st::U128 => "u128",
        st::I128 => "i128",
        st::MINTIME => "mintime",
        st::FLOAT64 => "float64",
        st::HUGENUM => "hugenum",
        st::MAXTIME => "maxtime",
        st::NDEF => "ndef",
        other => return format!("unknown stortype {other}"),
    };
    if stortype & st::ARRAY != 0 {
        format!("array of {base}")
    } else {
        base.to_owned()
    }
}

/// Whether `stortype` marks an array.
pub(super) fn is_array(stortype: u16) -> bool {
    stortype & st::ARRAY != 0
}

/// The index keys of a value: one for a scalar, one per item for an array.
pub fn index_keys(valu: &Value, stortype: u16) -> SynResult<Vec<Vec<u8>>> {
    if !is_array(stortype) {
        return Ok(vec![index_key(valu, stortype)?]);
    }
    let base = stortype & !st::ARRAY;
    let items = valu.as_array().ok_or_else(|| bad_valu(valu, stortype))?;
    items.iter().map(|item| index_key(item, base)).collect()
}

/// The index key of a scalar value.
pub fn index_key(valu: &Value, stortype: u16) -> SynResult<Vec<u8>> {
    let mut key = Vec::with_capacity(16);
    write_index_key(valu, stortype, &mut key)?;
    Ok(key)
}

/// Append the index key of a scalar value to `out` (on error, `out` may hold part of it).
pub(super) fn write_index_key(valu: &Value, stortype: u16, out: &mut Vec<u8>) -> SynResult<()> {
    let bad = || bad_valu(valu, stortype);
    if let Some(spec) = IntSpec::of(stortype) {
        let int = match valu {
            Value::Int(i) => *i,
            _ => return Err(bad()),
        };
        if !spec.write_key(int, out) {
            return Err(SynErr::bad_arg(format!(
                "value {int} does not fit stortype {}",
                stortype_name(stortype)
            )));
        }
        return Ok(());
    }
    match stortype {
        st::UTF8 => write_utf8_key(str_bytes(valu).ok_or_else(bad)?, out),
        st::FQDN => {
            let text = valu.as_str().ok_or_else(bad)?;
            write_utf8_key(reversed(text).as_bytes(), out);
        }
        st::LOC | st::TAG => {
            out.extend(hier_key(valu.as_str().ok_or_else(bad)?));
        }
        st::GUID => out.extend(guid_bytes(valu.as_str().ok_or_else(bad)?).ok_or_else(bad)?),
        st::IVAL => {
            let (min, max) = ival_ints(valu).ok_or_else(bad)?;
            for time in [min, max] {
                if !IntSpec::TIME.write_key(time.into(), out) {
                    return Err(bad());
                }
            }
        }
        st::MSGP | st::NDEF => out.extend_from_slice(&crate::guid::buid_of(valu)),
        st::LATLONG => out.extend(latlong_key(valu).ok_or_else(bad)?),
        st::IPV6 => out.extend_from_slice(&ipv6_bytes(valu).ok_or_else(bad)?),
        st::FLOAT64 => out.extend_from_slice(&float_key(as_float(valu).ok_or_else(bad)?)),
        st::HUGENUM => {
            return Err(SynErr::bad_arg(
                "stortype hugenum is not supported by this layer",
            ));
        }
        _ => {
            return Err(SynErr::bad_arg(format!(
                "{} is not a scalar stortype",
                stortype_name(stortype)
            )));
        }
    }
    Ok(())
}

fn bad_valu(valu: &Value, stortype: u16) -> SynErr {
    SynErr::bad_arg(format!(
        "bad value for stortype {}: {valu}",
        stortype_name(stortype)
    ))
}

fn str_bytes(valu: &Value) -> Option<&[u8]> {
    match valu {
        Value::Str(s) => Some(s.as_bytes()),
        Value::RawStr(b) => Some(b),
        _ => None,
    }
}

/// Synapse's UTF-8 key: the bytes, or for more than 256 bytes the first 248 plus `xxh64`.
fn write_utf8_key(bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.len() <= UTF8_MAX {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend_from_slice(&bytes[..UTF8_KEEP]);
    out.extend_from_slice(&xxhash_rust::xxh64::xxh64(bytes, 0).to_be_bytes());
}

/// The text of a UTF-8 key, unless it was cut down (Synapse decodes keys under 256 bytes).
fn utf8_from_key(key: &[u8]) -> Option<String> {
    if key.len() >= UTF8_MAX {
        return None;
    }
    String::from_utf8(key.to_vec()).ok()
}

fn reversed(text: &str) -> String {
    text.chars().rev().collect()
}

fn hier_key(text: &str) -> Vec<u8> {
    let mut key = text.as_bytes().to_vec();
    key.push(HIER_SEP as u8);
    key
}

fn guid_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() != 32 {
        return None;
    }
    hex::decode(text).ok()
}

fn ival_ints(valu: &Value) -> Option<(i64, i64)> {
    match valu.as_array()? {
        [a, b] => Some((a.as_i64()?, b.as_i64()?)),
        _ => None,
    }
}

fn as_float(valu: &Value) -> Option<f64> {
    match valu {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}

/// A float as 8 bytes whose byte order is numeric order (-inf < ... < -0.0 < 0.0 < ... < inf).
fn float_key(f: f64) -> [u8; 8] {
    let bits = f.to_bits();
    let sortable = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    sortable.to_be_bytes()
}

fn ipv6_bytes(valu: &Value) -> Option<[u8; 16]> {
    let text = valu.as_str()?;
    // A zone (`fe80::1%eth0`) is not part of the address bytes.
    let addr = text.split('%').next()?;
    addr.parse::<Ipv6Addr>().ok().map(|a| a.octets())
}

/// Synapse's LATLONG key: longitude then latitude, each `round(deg * 1e8) + span` in 5 bytes.
fn latlong_key(valu: &Value) -> Option<Vec<u8>> {
    let [lat, lon] = valu.as_array()? else {
        return None;
    };
    let part = |deg: f64, span: f64| -> Option<[u8; 5]> {
        let scaled = (deg * LATLONG_SCALE).round_ties_even() + span * LATLONG_SCALE;
        if !(0.0..2f64.powi(40)).contains(&scaled) {
            return None;
        }
        let bytes = (scaled as u64).to_be_bytes();
        Some(bytes[3..].try_into().expect("5 bytes"))
    };
    let mut key = part(as_float(lon)?, 180.0)?.to_vec();
    key.extend(part(as_float(lat)?, 90.0)?);
    Some(key)
}

/// The layout of an integer stortype: `size` big-endian bytes of `valu + offset`, where the
/// offset is `2^(bits-1) - 1` for signed types (Synapse's choice, note the `- 1`).
#[derive(Clone, Copy)]
struct IntSpec {
    size: usize,
    signed: bool,
}

impl IntSpec {
    const TIME: IntSpec = IntSpec {
        size: 8,
        signed: true,
    };

    fn of(stortype: u16) -> Option<IntSpec> {
        let (size, signed) = match stortype {
            st::U8 => (1, false),
            st::U16 => (2, false),
            st::U32 => (4, false),
            st::U64 => (8, false),
            st::I8 => (1, true),
            st::I16 => (2, true),
            st::I32 => (4, true),
            st::I64 => (8, true),
            st::U128 => (16, false),
            st::I128 => (16, true),
            st::TIME | st::MINTIME | st::MAXTIME => (8, true),
            _ => return None,
        };
        Some(IntSpec { size, signed })
    }

    fn bits(self) -> u32 {
        self.size as u32 * 8
    }

    fn offset(self) -> u128 {
        if self.signed {
            (1u128 << (self.bits() - 1)) - 1
        } else {
            0
        }
    }

    /// The smallest and largest values that have a key (clipped to what an `i128` holds).
    fn bounds(self) -> (i128, i128) {
        let bits = self.bits();
        if self.signed && bits == 128 {
            // -(2^127 - 1) up to 2^127, of which an i128 holds up to 2^127 - 1.
            (-i128::MAX, i128::MAX)
        } else if self.signed {
            let half = 1i128 << (bits - 1);
            (1 - half, half)
        } else if bits == 128 {
            (0, i128::MAX)
        } else {
            (0, (1i128 << bits) - 1)
        }
    }

    fn key(self, valu: i128) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(self.size);
        self.write_key(valu, &mut key).then_some(key)
    }

    /// Append the key of `valu`; false if the value has none.
    fn write_key(self, valu: i128, out: &mut Vec<u8>) -> bool {
        let (min, max) = self.bounds();
        if valu < min || valu > max {
            return false;
        }
        let raw = (valu as u128).wrapping_add(self.offset()).to_be_bytes();
        out.extend_from_slice(&raw[16 - self.size..]);
        true
    }

    /// The key range of values in `[lo, hi]`, clipped to the encodable values.
    fn range(self, lo: Option<i128>, hi: Option<i128>) -> KeyRange {
        let (min, max) = self.bounds();
        let lo = lo.map_or(min, |v| v.max(min));
        let hi = hi.map_or(max, |v| v.min(max));
        if lo > hi {
            return KeyRange::Nothing;
        }
        match (self.key(lo), self.key(hi)) {
            (Some(lo), Some(hi)) => KeyRange::between(lo, hi),
            _ => KeyRange::Nothing,
        }
    }
}

/// Which index keys (after the abbreviation prefix) a comparison covers.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum KeyRange {
    /// No key can match.
    Nothing,
    /// Keys from `lo` to `hi`.
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

impl KeyRange {
    fn all() -> KeyRange {
        KeyRange::Range(Bound::Unbounded, Bound::Unbounded)
    }

    fn exact(key: Vec<u8>) -> KeyRange {
        KeyRange::Range(Bound::Included(key.clone()), Bound::Included(key))
    }

    fn between(lo: Vec<u8>, hi: Vec<u8>) -> KeyRange {
        KeyRange::Range(Bound::Included(lo), Bound::Included(hi))
    }

    fn prefix(prefix: Vec<u8>) -> KeyRange {
        let hi = match prefix_end(&prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        KeyRange::Range(Bound::Included(prefix), hi)
    }
}

/// The smallest key greater than every key that starts with `prefix`, if there is one.
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A test on each index entry that the key range alone cannot express.
pub(super) enum KeyFilter {
    /// `~=`: a case-insensitive, unanchored regex over the value's strings.
    Regex(Regex),
    /// `^=` with a prefix longer than a cut-down UTF-8 key keeps: compare the whole value.
    LongPrefix(Vec<u8>),
    /// `^=` on a guid with an odd number of hex digits.
    HexPrefix(String),
    /// `@=` on an interval: keep `[min, max)` intervals that overlap the keys' interval.
    IvalOverlap {
        /// The key of the query's start.
        min: Vec<u8>,
        /// The key of the query's end.
        max: Vec<u8>,
    },
}

/// How a lift finds its index entries: a key range and perhaps a filter.
pub(super) struct Scan {
    /// The keys to visit.
    pub(super) range: KeyRange,
    /// What each visited entry must also pass.
    pub(super) filter: Option<KeyFilter>,
}

impl Scan {
    fn keys(range: KeyRange) -> SynResult<Scan> {
        Ok(Scan {
            range,
            filter: None,
        })
    }
}

fn no_cmpr(cmp: &Cmp, stortype: u16) -> SynErr {
    SynErr::new(
        "NoSuchCmpr",
        format!(
            "stortype {} has no comparator {}",
            stortype_name(stortype),
            cmp.symbol()
        ),
    )
    .with("cmpr", cmp.symbol())
}

fn int_of(valu: &Value, stortype: u16) -> SynResult<i128> {
    match valu {
        Value::Int(i) => Ok(*i),
        _ => Err(bad_valu(valu, stortype)),
    }
}

fn regex_filter(pattern: &str) -> SynResult<KeyFilter> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map(KeyFilter::Regex)
        .map_err(|e| SynErr::bad_arg(format!("bad regex {pattern:?}: {e}")))
}

fn regex_scan(pattern: &str) -> SynResult<Scan> {
    Ok(Scan {
        range: KeyRange::all(),
        filter: Some(regex_filter(pattern)?),
    })
}

/// Plan the scan for `cmp` over the keys of a scalar stortype.
pub(super) fn plan(stortype: u16, cmp: &Cmp) -> SynResult<Scan> {
    if let Cmp::Any = cmp {
        return Scan::keys(KeyRange::all());
    }
    if let Some(spec) = IntSpec::of(stortype) {
        return plan_int(spec, stortype, cmp);
    }
    match stortype {
        st::UTF8 => plan_utf8(cmp, stortype),
        st::FQDN => match cmp {
            Cmp::Eq(valu) => {
                let text = valu.as_str().ok_or_else(|| bad_valu(valu, stortype))?;
                // Synapse: `*.vertex.link` lifts subdomains, `*com` any name ending in com.
                match text.strip_prefix('*') {
                    Some(suffix) => Scan::keys(KeyRange::prefix(reversed(suffix).into_bytes())),
                    None => Scan::keys(KeyRange::exact(index_key(valu, stortype)?)),
                }
            }
            Cmp::Regex(pattern) => regex_scan(pattern),
            _ => Err(no_cmpr(cmp, stortype)),
        },
        st::LOC | st::TAG => match cmp {
            Cmp::Eq(valu) => Scan::keys(KeyRange::exact(index_key(valu, stortype)?)),
            Cmp::Prefix(text) => Scan::keys(KeyRange::prefix(hier_key(text))),
            Cmp::Regex(pattern) => regex_scan(pattern),
            _ => Err(no_cmpr(cmp, stortype)),
        },
        st::GUID => match cmp {
            Cmp::Eq(valu) => Scan::keys(KeyRange::exact(index_key(valu, stortype)?)),
            Cmp::Prefix(text) => {
                let text = text.to_ascii_lowercase();
                let even = &text[..text.len() / 2 * 2];
                let bytes = hex::decode(even)
                    .map_err(|_| SynErr::bad_arg(format!("bad guid prefix {text:?}")))?;
                if text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SynErr::bad_arg(format!("bad guid prefix {text:?}")));
                }
                let filter = (text.len() % 2 == 1).then(|| KeyFilter::HexPrefix(text.clone()));
                Ok(Scan {
                    range: KeyRange::prefix(bytes),
                    filter,
                })
            }
            _ => Err(no_cmpr(cmp, stortype)),
        },
        st::IVAL => match cmp {
            Cmp::Eq(valu) => Scan::keys(KeyRange::exact(index_key(valu, stortype)?)),
            Cmp::Overlaps(valu) => {
                let (min, max) = ival_ints(valu).ok_or_else(|| bad_valu(valu, stortype))?;
                let time = IntSpec::TIME;
                let key = |v: i64| time.key(v.into()).ok_or_else(|| bad_valu(valu, stortype));
                Ok(Scan {
                    range: KeyRange::all(),
                    filter: Some(KeyFilter::IvalOverlap {
                        min: key(min)?,
                        max: key(max)?,
                    }),
                })
            }
            _ => Err(no_cmpr(cmp, stortype)),
        },
        st::MSGP | st::NDEF => match cmp {
            Cmp::Eq(valu) => Scan::keys(KeyRange::exact(index_key(valu, stortype)?)),
            Cmp::Regex(pattern) => regex_scan(pattern),
            _ => Err(no_cmpr(cmp, stortype)),
        },
        st::LATLONG => match cmp {
            Cmp::Eq(valu) => Scan::keys(KeyRange::exact(index_key(valu, stortype)?)),
            _ => Err(no_cmpr(cmp, stortype)),
        },
        st::IPV6 => plan_ordered(cmp, stortype, |v| {
            ipv6_bytes(v)
                .map(u128::from_be_bytes)
                .ok_or_else(|| bad_valu(v, stortype))
        }),
        st::FLOAT64 => plan_float(cmp, stortype),
        _ => Err(no_cmpr(cmp, stortype)),
    }
}

fn plan_int(spec: IntSpec, stortype: u16, cmp: &Cmp) -> SynResult<Scan> {
    let int = |v: &Value| int_of(v, stortype);
    let range = match cmp {
        Cmp::Eq(v) => match spec.key(int(v)?) {
            Some(key) => KeyRange::exact(key),
            None => KeyRange::Nothing,
        },
        Cmp::Lt(v) => match int(v)?.checked_sub(1) {
            Some(hi) => spec.range(None, Some(hi)),
            None => KeyRange::Nothing,
        },
        Cmp::Le(v) => spec.range(None, Some(int(v)?)),
        Cmp::Gt(v) => match int(v)?.checked_add(1) {
            Some(lo) => spec.range(Some(lo), None),
            None => KeyRange::Nothing,
        },
        Cmp::Ge(v) => spec.range(Some(int(v)?), None),
        Cmp::Range(lo, hi) => spec.range(Some(int(lo)?), Some(int(hi)?)),
        // `@=` on a time: the times inside `[min, max)`.
        Cmp::Overlaps(v) if matches!(stortype, st::TIME | st::MINTIME | st::MAXTIME) => {
            let (min, max) = ival_ints(v).ok_or_else(|| bad_valu(v, stortype))?;
            spec.range(Some(min.into()), Some(i128::from(max) - 1))
        }
        _ => return Err(no_cmpr(cmp, stortype)),
    };
    Scan::keys(range)
}

fn plan_utf8(cmp: &Cmp, stortype: u16) -> SynResult<Scan> {
    let key = |v: &Value| index_key(v, stortype);
    let range = match cmp {
        Cmp::Eq(v) => KeyRange::exact(key(v)?),
        Cmp::Lt(v) => KeyRange::Range(Bound::Unbounded, Bound::Excluded(key(v)?)),
        Cmp::Le(v) => KeyRange::Range(Bound::Unbounded, Bound::Included(key(v)?)),
        Cmp::Gt(v) => KeyRange::Range(Bound::Excluded(key(v)?), Bound::Unbounded),
        Cmp::Ge(v) => KeyRange::Range(Bound::Included(key(v)?), Bound::Unbounded),
        Cmp::Range(lo, hi) => KeyRange::between(key(lo)?, key(hi)?),
        Cmp::Prefix(text) => {
            let bytes = text.as_bytes();
            if bytes.len() <= UTF8_KEEP {
                KeyRange::prefix(bytes.to_vec())
            } else {
                // Cut-down keys keep 248 bytes: scan those, then compare whole values.
                return Ok(Scan {
                    range: KeyRange::prefix(bytes[..UTF8_KEEP].to_vec()),
                    filter: Some(KeyFilter::LongPrefix(bytes.to_vec())),
                });
            }
        }
        Cmp::Regex(pattern) => return regex_scan(pattern),
        _ => return Err(no_cmpr(cmp, stortype)),
    };
    Scan::keys(range)
}

/// Ordered stortypes whose keys are a big-endian u128 of the value (IPV6).
fn plan_ordered(
    cmp: &Cmp,
    stortype: u16,
    num: impl Fn(&Value) -> SynResult<u128>,
) -> SynResult<Scan> {
    let key = |n: u128| n.to_be_bytes().to_vec();
    let range = match cmp {
        Cmp::Eq(v) => KeyRange::exact(key(num(v)?)),
        Cmp::Lt(v) => match num(v)?.checked_sub(1) {
            Some(hi) => KeyRange::between(key(0), key(hi)),
            None => KeyRange::Nothing,
        },
        Cmp::Le(v) => KeyRange::between(key(0), key(num(v)?)),
        Cmp::Gt(v) => match num(v)?.checked_add(1) {
            Some(lo) => KeyRange::between(key(lo), key(u128::MAX)),
            None => KeyRange::Nothing,
        },
        Cmp::Ge(v) => KeyRange::between(key(num(v)?), key(u128::MAX)),
        Cmp::Range(lo, hi) => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                KeyRange::Nothing
            } else {
                KeyRange::between(key(lo), key(hi))
            }
        }
        _ => return Err(no_cmpr(cmp, stortype)),
    };
    Scan::keys(range)
}

fn plan_float(cmp: &Cmp, stortype: u16) -> SynResult<Scan> {
    let num = |v: &Value| -> SynResult<Vec<u8>> {
        let f = as_float(v).ok_or_else(|| bad_valu(v, stortype))?;
        if f.is_nan() {
            return Err(SynErr::new(
                "NotANumberCompared",
                "cannot compare with NaN in a lift",
            ));
        }
        Ok(float_key(f).to_vec())
    };
    // NaNs sort outside the numbers: keep the scans between -inf and inf.
    let (min, max) = (
        float_key(f64::NEG_INFINITY).to_vec(),
        float_key(f64::INFINITY).to_vec(),
    );
    let range = match cmp {
        Cmp::Eq(v) => KeyRange::exact(num(v)?),
        Cmp::Lt(v) => KeyRange::Range(Bound::Included(min), Bound::Excluded(num(v)?)),
        Cmp::Le(v) => KeyRange::between(min, num(v)?),
        Cmp::Gt(v) => KeyRange::Range(Bound::Excluded(num(v)?), Bound::Included(max)),
        Cmp::Ge(v) => KeyRange::between(num(v)?, max),
        Cmp::Range(lo, hi) => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                KeyRange::Nothing
            } else {
                KeyRange::between(lo, hi)
            }
        }
        _ => return Err(no_cmpr(cmp, stortype)),
    };
    Scan::keys(range)
}

/// The text a regex sees for an index key, when the key alone holds it.
pub(super) fn text_from_key(stortype: u16, key: &[u8]) -> Option<String> {
    match stortype {
        st::UTF8 => utf8_from_key(key),
        st::FQDN => utf8_from_key(key).map(|t| reversed(&t)),
        st::LOC | st::TAG => {
            let text = std::str::from_utf8(key).ok()?;
            text.strip_suffix(HIER_SEP).map(str::to_owned)
        }
        _ => None,
    }
}

/// Whether `regex` finds a match in any string inside `valu` (Synapse's `regexin`).
pub(super) fn regex_in(regex: &Regex, valu: &Value) -> bool {
    match valu {
        Value::Str(s) => regex.is_match(s),
        Value::Array(items) => items.iter().any(|item| regex_in(regex, item)),
        _ => false,
    }
}

/// Whether a stored value starts with `prefix` (for long UTF-8 prefixes).
pub(super) fn value_has_prefix(valu: &Value, prefix: &[u8]) -> bool {
    str_bytes(valu).is_some_and(|b| b.starts_with(prefix))
}
