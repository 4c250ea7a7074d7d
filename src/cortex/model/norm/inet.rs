//! inet: ipv4 (glibc `inet_aton` rules), ipv6 (Python `ipaddress` rules and messages),
//! cidr4/cidr6, fqdn (NFKC, IDNA), email, url, server/client addresses, http cookies and
//! ip ranges.

use std::sync::Arc;

use icu_normalizer::ComposingNormalizerBorrowed;

use super::{no_norm, py_err_str, str_input};
use crate::cortex::model::Model;
use crate::cortex::model::data::lookups;
use crate::cortex::model::py;
use crate::cortex::model::types::{Norm, Type};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// A type of the model by name (the inet norms call each other through the model, as
/// Synapse does, so errors carry the inner type's name).
fn mtype<'m>(m: &'m Model, name: &str) -> SynResult<&'m Arc<Type>> {
    m.typ(name).ok_or_else(|| {
        SynErr::new("NoSuchType", format!("No type named {name}.")).with("name", name)
    })
}

// ---------------------------------------------------------------------------------------------
// IPv4

const IPV4_ERR: &str = "illegal IP address string passed to inet_aton";

/// glibc's `inet_aton`: 1 to 4 parts, each decimal, `0x` hex or `0` octal; the last part
/// fills the remaining bytes; trailing whitespace (and anything after it) is ignored.
pub(crate) fn inet_aton(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    loop {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        // strtoul(cp, &end, 0)
        let (radix, mut j) = if b[i] == b'0'
            && matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            (16, i + 2)
        } else if b[i] == b'0' {
            (8, i)
        } else {
            (10, i)
        };
        let mut val: u64 = 0;
        while let Some(d) = b.get(j).and_then(|c| (*c as char).to_digit(radix)) {
            val = val.saturating_mul(radix as u64).saturating_add(d as u64);
            j += 1;
        }
        if val > 0xffff_ffff {
            return None;
        }
        i = j;
        match b.get(i) {
            Some(b'.') => {
                if parts.len() > 2 || val > 0xff {
                    return None;
                }
                parts.push(val);
                i += 1;
            }
            _ => {
                parts.push(val);
                break;
            }
        }
    }
    if let Some(c) = b.get(i)
        && !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
    {
        return None;
    }
    let last = *parts.last()?;
    let max = [0xffff_ffffu64, 0xff_ffff, 0xffff, 0xff][parts.len() - 1];
    if last > max {
        return None;
    }
    let mut out: u64 = 0;
    for (k, p) in parts[..parts.len() - 1].iter().enumerate() {
        out |= p << (24 - 8 * k);
    }
    Some((out | last) as u32)
}

/// `synapse.models.inet.getAddrType` for an IPv4 address.
fn ipv4_type(ip: u32) -> &'static str {
    let inn = |net: u32, bits: u32| bits == 0 || ip >> (32 - bits) == net >> (32 - bits);
    if inn(0xe000_0000, 4) {
        return "multicast";
    }
    if inn(0x7f00_0000, 8) {
        return "loopback";
    }
    if inn(0xa9fe_0000, 16) {
        return "linklocal";
    }
    if ipv4_private(ip) {
        return "private";
    }
    if inn(0xf000_0000, 4) {
        return "reserved";
    }
    if inn(0x6440_0000, 10) {
        return "shared";
    }
    "unicast"
}

/// Python `ipaddress`'s `IPv4Address.is_private` (Synapse's vendored copy).
fn ipv4_private(ip: u32) -> bool {
    const NETS: &[(u32, u32)] = &[
        (0x0000_0000, 8),
        (0x0a00_0000, 8),
        (0x7f00_0000, 8),
        (0xa9fe_0000, 16),
        (0xac10_0000, 12),
        (0xc000_0000, 24),
        (0xc000_00aa, 31),
        (0xc000_0200, 24),
        (0xc0a8_0000, 16),
        (0xc612_0000, 15),
        (0xc633_6400, 24),
        (0xcb00_7100, 24),
        (0xf000_0000, 4),
        (0xffff_ffff, 32),
    ];
    const EXCEPT: &[u32] = &[0xc000_0009, 0xc000_000a];
    NETS.iter()
        .any(|(net, bits)| ip >> (32 - bits) == net >> (32 - bits))
        && !EXCEPT.contains(&ip)
}

/// inet:ipv4's repr: dotted quad.
pub(crate) fn ipv4_repr(i: i128) -> String {
    let v = i as u32;
    format!(
        "{}.{}.{}.{}",
        v >> 24,
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff
    )
}

fn ipv4_from_int(t: &Type, i: i128) -> SynResult<Norm> {
    if !(0..=0xffff_ffff).contains(&i) {
        return Err(t.bad("Value outside of IPv4 range"));
    }
    Ok(Norm::with_subs(
        Value::Int(i),
        vec![("type".into(), Value::from(ipv4_type(i as u32)))],
    ))
}

/// synapse.models.inet.IPv4
pub(crate) fn norm_ipv4(t: &Type, v: &Value) -> SynResult<Norm> {
    match v {
        Value::Str(s) => {
            let text: String = s
                .replace("[.]", ".")
                .replace("(.)", ".")
                .chars()
                .filter(|c| py::is_printable(*c))
                .collect();
            let ip = inet_aton(&text).ok_or_else(|| t.bad(IPV4_ERR).with("valu", text.as_str()))?;
            ipv4_from_int(t, ip as i128)
        }
        Value::Int(i) => ipv4_from_int(t, *i),
        other => Err(no_norm(t, other)),
    }
}

/// `=` lifts of `a.b.c.d/n` and `a-b`: the inclusive range.
pub(crate) fn ipv4_lift_range(t: &Type, text: &str) -> SynResult<(i128, i128)> {
    let ipnorm =
        |s: &str| norm_ipv4(t, &Value::from(s)).map(|n| n.valu.as_i64().unwrap_or(0) as i128);
    if let Some((addr, mask)) = text.split_once('/') {
        let ip = ipnorm(addr)?;
        let bits = match py::parse_int(mask, 10) {
            Ok(py::PyInt::Small(b)) if (0..=32).contains(&b) => b as u32,
            _ => return Err(t.bad(format!("Invalid CIDR Mask \"{text}\""))),
        };
        let size: i128 = 1 << (32 - bits);
        let lo = ip & !(size - 1);
        return Ok((lo, lo + size - 1));
    }
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    Ok((ipnorm(a)?, ipnorm(b)?))
}

// ---------------------------------------------------------------------------------------------
// IPv6

/// Python's `IPv4Address(text)` parse (strict dotted quad).
fn parse_v4_strict(text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("Address cannot be empty".into());
    }
    let octets: Vec<&str> = text.split('.').collect();
    if octets.len() != 4 {
        return Err(format!("Expected 4 octets in {}", py::repr_str(text)));
    }
    let mut out: u32 = 0;
    for o in octets {
        let v = parse_octet(o).map_err(|e| format!("{e} in {}", py::repr_str(text)))?;
        out = (out << 8) | v;
    }
    Ok(out)
}

fn parse_octet(o: &str) -> Result<u32, String> {
    if o.is_empty() {
        return Err("Empty octet not permitted".into());
    }
    if !o.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "Only decimal digits permitted in {}",
            py::repr_str(o)
        ));
    }
    if o.len() > 3 {
        return Err(format!(
            "At most 3 characters permitted in {}",
            py::repr_str(o)
        ));
    }
    if o != "0" && o.starts_with('0') {
        return Err(format!(
            "Leading zeros are not permitted in {}",
            py::repr_str(o)
        ));
    }
    let v: u32 = o.parse().unwrap_or(0);
    if v > 255 {
        return Err(format!("Octet {v} (> 255) not permitted"));
    }
    Ok(v)
}

/// Python's `IPv6Address._ip_int_from_string`.
fn parse_v6_int(ip: &str) -> Result<u128, String> {
    if ip.is_empty() {
        return Err("Address cannot be empty".into());
    }
    let r = py::repr_str(ip);
    let mut parts: Vec<String> = ip.split(':').map(str::to_string).collect();
    if parts.len() < 3 {
        return Err(format!("At least 3 parts expected in {r}"));
    }
    if parts.last().is_some_and(|p| p.contains('.')) {
        let last = parts.pop().unwrap_or_default();
        let v4 = parse_v4_strict(&last).map_err(|e| format!("{e} in {r}"))?;
        parts.push(format!("{:x}", v4 >> 16));
        parts.push(format!("{:x}", v4 & 0xffff));
    }
    if parts.len() > 9 {
        return Err(format!("At most 8 colons permitted in {r}"));
    }
    let mut skip = None;
    for (i, p) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
        if p.is_empty() {
            if skip.is_some() {
                return Err(format!("At most one '::' permitted in {r}"));
            }
            skip = Some(i);
        }
    }
    let n = parts.len();
    let (hi, lo, skipped) = match skip {
        Some(s) => {
            let mut hi = s;
            let mut lo = n - s - 1;
            if parts[0].is_empty() {
                hi -= 1;
                if hi > 0 {
                    return Err(format!("Leading ':' only permitted as part of '::' in {r}"));
                }
            }
            if parts[n - 1].is_empty() {
                lo -= 1;
                if lo > 0 {
                    return Err(format!(
                        "Trailing ':' only permitted as part of '::' in {r}"
                    ));
                }
            }
            let skipped = 8i64 - (hi + lo) as i64;
            if skipped < 1 {
                return Err(format!("Expected at most 7 other parts with '::' in {r}"));
            }
            (hi, lo, skipped as usize)
        }
        None => {
            if n != 8 {
                return Err(format!("Exactly 8 parts expected without '::' in {r}"));
            }
            if parts[0].is_empty() {
                return Err(format!("Leading ':' only permitted as part of '::' in {r}"));
            }
            if parts[n - 1].is_empty() {
                return Err(format!(
                    "Trailing ':' only permitted as part of '::' in {r}"
                ));
            }
            (n, 0, 0)
        }
    };
    let hextet = |h: &str| -> Result<u128, String> {
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "Only hex digits permitted in {} in {r}",
                py::repr_str(h)
            ));
        }
        if h.len() > 4 {
            return Err(format!(
                "At most 4 characters permitted in {} in {r}",
                py::repr_str(h)
            ));
        }
        u128::from_str_radix(h, 16).map_err(|_| {
            format!(
                "invalid literal for int() with base 16: {} in {r}",
                py::repr_str(h)
            )
        })
    };
    let mut out: u128 = 0;
    for p in &parts[..hi] {
        out = (out << 16) | hextet(p)?;
    }
    out = out.checked_shl(16 * skipped as u32).unwrap_or(0);
    for p in &parts[n - lo..] {
        out = (out << 16) | hextet(p)?;
    }
    Ok(out)
}

/// Python's `IPv6Address(text)`: the address and its scope id.
fn parse_v6(text: &str) -> Result<(u128, Option<String>), String> {
    if text.contains('/') {
        return Err(format!("Unexpected '/' in {}", py::repr_str(text)));
    }
    let (addr, scope) = match text.split_once('%') {
        None => (text, None),
        Some((a, s)) if !s.is_empty() && !s.contains('%') => (a, Some(s.to_string())),
        Some(_) => {
            return Err(format!("Invalid IPv6 address: \"{}\"", py::repr_str(text)));
        }
    };
    Ok((parse_v6_int(addr)?, scope))
}

/// `IPv6Address.compressed`.
fn v6_compress(ip: u128) -> String {
    let hextets: Vec<String> = (0..8)
        .map(|i| format!("{:x}", (ip >> (112 - 16 * i)) & 0xffff))
        .collect();
    let (mut best_start, mut best_len, mut start, mut len) = (0usize, 0usize, 0usize, 0usize);
    for (i, h) in hextets.iter().enumerate() {
        if h == "0" {
            if len == 0 {
                start = i;
            }
            len += 1;
            if len > best_len {
                best_len = len;
                best_start = start;
            }
        } else {
            len = 0;
        }
    }
    if best_len > 1 {
        let head = hextets[..best_start].join(":");
        let tail = hextets[best_start + best_len..].join(":");
        format!("{head}::{tail}")
    } else {
        hextets.join(":")
    }
}

fn v6_in(ip: u128, net: u128, bits: u32) -> bool {
    bits == 0 || ip >> (128 - bits) == net >> (128 - bits)
}

fn v6_private(ip: u128) -> bool {
    if ip >> 32 == 0xffff {
        return ipv4_private(ip as u32);
    }
    const NETS: &[(u128, u32)] = &[
        (1, 128),
        (0, 128),
        (0xffff_0000_0000, 96),
        (0x0064_ff9b_0001 << 80, 48),
        (0x0100 << 112, 64),
        (0x2001 << 112, 23),
        (0x2001_0db8 << 96, 32),
        (0x2002 << 112, 16),
        (0xfc00 << 112, 7),
        (0xfe80 << 112, 10),
    ];
    const EXCEPT: &[(u128, u32)] = &[
        ((0x2001_0001 << 96) | 1, 128),
        ((0x2001_0001 << 96) | 2, 128),
        (0x2001_0003 << 96, 32),
        (0x2001_0004_0112 << 80, 48),
        (0x2001_0020 << 96, 28),
        (0x2001_0030 << 96, 28),
    ];
    NETS.iter().any(|(n, b)| v6_in(ip, *n, *b)) && !EXCEPT.iter().any(|(n, b)| v6_in(ip, *n, *b))
}

fn v6_type(ip: u128) -> &'static str {
    const RESERVED: &[(u128, u32)] = &[
        (0, 8),
        (0x0100 << 112, 8),
        (0x0200 << 112, 7),
        (0x0400 << 112, 6),
        (0x0800 << 112, 5),
        (0x1000 << 112, 4),
        (0x4000 << 112, 3),
        (0x6000 << 112, 3),
        (0x8000 << 112, 3),
        (0xa000 << 112, 3),
        (0xc000 << 112, 3),
        (0xe000 << 112, 4),
        (0xf000 << 112, 5),
        (0xf800 << 112, 6),
        (0xfe00 << 112, 9),
    ];
    if v6_in(ip, 0xff00 << 112, 8) {
        "multicast"
    } else if ip == 1 {
        "loopback"
    } else if v6_in(ip, 0xfe80 << 112, 10) {
        "linklocal"
    } else if v6_private(ip) {
        "private"
    } else if RESERVED.iter().any(|(n, b)| v6_in(ip, *n, *b)) {
        "reserved"
    } else {
        "unicast"
    }
}

fn v6_scope(ip: u128, compressed: &str) -> &'static str {
    if ip == 1 || v6_in(ip, 0xfe80 << 112, 10) {
        return "link-local";
    }
    if v6_in(ip, 0xff00 << 112, 8) {
        return match compressed.get(..5) {
            Some("ff00:") | Some("ff0f:") => "reserved",
            Some("ff01:") => "interface-local",
            Some("ff02:") => "link-local",
            Some("ff03:") => "realm-local",
            Some("ff04:") => "admin-local",
            Some("ff05:") => "site-local",
            Some("ff08:") => "organization-local",
            Some("ff0e:") => "global",
            _ => "unassigned",
        };
    }
    "global"
}

/// inet:ipv6 norm from an address; the text form, the int, and subs.
fn ipv6_norm_parts(t: &Type, v: &Value) -> SynResult<Norm> {
    let (ip, scope) = match v {
        Value::Int(i) => {
            if *i < 0 {
                return Err(t.bad(format!("{i} (< 0) is not permitted as an IPv6 address")));
            }
            (*i as u128, None)
        }
        Value::Str(s) => {
            let mut text: String = s.chars().filter(|c| py::is_printable(*c)).collect();
            if !text.contains(':') {
                text = format!("::ffff:{text}");
            }
            parse_v6(&text).map_err(|e| t.bad(e))?
        }
        other => return Err(no_norm(t, other)),
    };
    let compressed = v6_compress(ip);
    let mut subs = vec![
        ("type".to_string(), Value::from(v6_type(ip))),
        ("scope".to_string(), Value::from(v6_scope(ip, &compressed))),
    ];
    if ip >> 32 == 0xffff {
        let v4 = ip as u32;
        subs.push(("ipv4".into(), Value::Int(v4 as i128)));
        return Ok(Norm::with_subs(
            format!("::ffff:{}", ipv4_repr(v4 as i128)),
            subs,
        ));
    }
    let text = match scope {
        Some(s) => format!("{compressed}%{s}"),
        None => compressed,
    };
    Ok(Norm::with_subs(text, subs))
}

/// synapse.models.inet.IPv6
pub(crate) fn norm_ipv6(t: &Type, v: &Value) -> SynResult<Norm> {
    ipv6_norm_parts(t, v)
}

/// `=` lifts of `addr/n` and `a-b` for IPv6: the inclusive range, compressed.
pub(crate) fn ipv6_lift_range(t: &Type, text: &str) -> SynResult<(String, String)> {
    if text.contains('/') {
        let (ip, bits) = parse_v6_network(text, false).map_err(|e| t.bad(e))?;
        let host = if bits == 128 { 0 } else { u128::MAX >> bits };
        return Ok((v6_compress(ip), v6_compress(ip | host)));
    }
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let lo = parse_v6(a).map_err(|e| t.bad(e))?.0;
    let hi = parse_v6(b).map_err(|e| t.bad(e))?.0;
    Ok((v6_compress(lo), v6_compress(hi)))
}

/// Python's `IPv6Network(text, strict)`: the network address and prefix length.
fn parse_v6_network(text: &str, strict: bool) -> Result<(u128, u32), String> {
    let parts: Vec<&str> = text.split('/').collect();
    if parts.len() > 2 {
        return Err(format!("Only one '/' permitted in {}", py::repr_str(text)));
    }
    let (ip, _) = parse_v6(parts[0])?;
    let bits = match parts.get(1) {
        None => 128,
        Some(m) => {
            let ok = !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit());
            match m.parse::<u32>() {
                Ok(b) if ok && b <= 128 => b,
                _ => return Err(format!("{} is not a valid netmask", py::repr_str(m))),
            }
        }
    };
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    if ip & mask != ip {
        if strict {
            return Err(format!("{}/{bits} has host bits set", v6_compress(ip)));
        }
        return Ok((ip & mask, bits));
    }
    Ok((ip, bits))
}

// ---------------------------------------------------------------------------------------------
// CIDRs

/// synapse.models.inet.Cidr4
pub(crate) fn norm_cidr4(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let (ip, mask) = text
        .split_once('/')
        .ok_or_else(|| t.bad("Invalid/Missing CIDR Mask"))?;
    let mask = match py::parse_int(mask, 10) {
        Ok(py::PyInt::Small(b)) => b,
        Ok(py::PyInt::Huge(_)) => i128::MAX,
        Err(_) => return Err(t.bad("Invalid/Missing CIDR Mask")),
    };
    if !(0..=32).contains(&mask) {
        return Err(t.bad("Invalid CIDR Mask"));
    }
    let ip = mtype(m, "inet:ipv4")?
        .norm(m, &Value::from(ip))?
        .valu
        .as_i64()
        .unwrap_or(0) as i128;
    let size: i128 = 1 << (32 - mask);
    let network = ip & !(size - 1);
    let broadcast = network + size - 1;
    Ok(Norm::with_subs(
        format!("{}/{mask}", ipv4_repr(network)),
        vec![
            ("broadcast".into(), Value::Int(broadcast)),
            ("mask".into(), Value::Int(mask)),
            ("network".into(), Value::Int(network)),
        ],
    ))
}

/// synapse.models.inet.Cidr6
pub(crate) fn norm_cidr6(t: &Type, v: &Value) -> SynResult<Norm> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    if !text.contains('/') {
        return Err(t.bad("Invalid/Missing CIDR Mask"));
    }
    let (ip, bits) = parse_v6_network(&text, true).map_err(|e| t.bad(e))?;
    let host = if bits == 128 { 0 } else { u128::MAX >> bits };
    Ok(Norm::with_subs(
        format!("{}/{bits}", v6_compress(ip)),
        vec![
            ("broadcast".into(), Value::Str(v6_compress(ip | host))),
            ("mask".into(), Value::Int(bits as i128)),
            ("network".into(), Value::Str(v6_compress(ip))),
        ],
    ))
}

// ---------------------------------------------------------------------------------------------
// FQDN

const FQDN_RE_ERR: &str = "FQDN failed to match fqdnre [^[\\w._-]+$]";

/// IDNA-encode like Synapse: the `idna` package's UTS 46 encoding, else Python's IDNA 2003
/// codec, lowercased; `None` when both fail. ASCII names get the exact checks of both paths
/// (labels non-empty and at most 63 characters); other names go through UTS 46.
fn idna_encode(text: &str) -> Option<String> {
    let low = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_cow(text.as_bytes(), idna::AsciiDenyList::EMPTY)
            .ok()?
            .into_owned()
    };
    if low.is_empty() {
        return Some(low);
    }
    let labels: Vec<&str> = low.split('.').collect();
    let (last, init) = labels.split_last()?;
    if init.iter().any(|l| l.is_empty() || l.len() > 63) || last.len() > 63 {
        return None;
    }
    Some(low)
}

/// glibc's `inet_pton(AF_INET)`: exactly four decimal octets without leading zeros.
fn is_inet_pton4(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && !(p.len() > 1 && p.starts_with('0'))
                && p.parse::<u32>().is_ok_and(|v| v <= 255)
        })
}

fn is_fqdn_chars(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-') || is_word_mark(c))
}

/// Word characters beyond alphanumerics that Python's `\w` accepts (combining marks,
/// connector punctuation).
fn is_word_mark(c: char) -> bool {
    let mut buf = [0u8; 4];
    regex_word().is_match(c.encode_utf8(&mut buf))
}

fn regex_word() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^\w$").expect("a constant regex"))
}

/// synapse.models.inet.Fqdn
pub(crate) fn norm_fqdn(t: &Type, v: &Value) -> SynResult<Norm> {
    let Value::Str(s) = v else {
        return Err(no_norm(t, v));
    };
    let nfkc = ComposingNormalizerBorrowed::new_nfkc().normalize(s);
    let dotted: String = nfkc
        .chars()
        .map(|c| {
            if matches!(c, '\u{3002}' | '\u{ff0e}' | '\u{ff61}') {
                '.'
            } else {
                c
            }
        })
        .collect();
    let dotted = dotted.replace("[.]", ".").replace("(.)", ".");
    let valu = py::strip(&dotted).trim_matches('.').to_string();
    let enc = idna_encode(&valu).ok_or_else(|| {
        t.bad("Failed to encode/decode the value with idna/utf8.")
            .with("valu", valu.as_str())
    })?;
    if !is_fqdn_chars(&enc) {
        return Err(t.bad(FQDN_RE_ERR).with("valu", enc.as_str()));
    }
    if is_inet_pton4(&enc) {
        return Err(t
            .bad("FQDN Got an IP address instead")
            .with("valu", enc.as_str()));
    }
    let subs = match enc.split_once('.') {
        Some((host, domain)) => vec![
            ("host".to_string(), Value::from(host)),
            ("domain".to_string(), Value::from(domain)),
        ],
        None => vec![
            ("host".to_string(), Value::from(enc.as_str())),
            ("issuffix".to_string(), Value::Int(1)),
        ],
    };
    Ok(Norm::with_subs(enc, subs))
}

/// inet:fqdn's repr: IDNA-decoded (`xn--bcher-kva.example` → `bücher.example`).
pub(crate) fn fqdn_repr(valu: &str) -> String {
    let (text, res) = idna::domain_to_unicode(valu);
    if res.is_ok() { text } else { valu.to_string() }
}

/// `=` lifts with wildcards: `*`, `*.suffix`, `*suffix`; `*` elsewhere is an error.
pub(crate) fn fqdn_lift(t: &Type, text: &str) -> Option<SynResult<String>> {
    if text.is_empty() {
        return Some(Err(SynErr::new(
            "BadLiftValu",
            "Cannot generate fqdn index bytes for a empty string.",
        )
        .with("name", t.name.as_str())));
    }
    if text == "*" {
        return Some(Ok("*".into()));
    }
    if let Some(rest) = text.strip_prefix("*.") {
        return Some(
            norm_fqdn(t, &Value::from(rest))
                .map(|n| format!("*.{}", n.valu.as_str().unwrap_or(""))),
        );
    }
    if let Some(rest) = text.strip_prefix('*') {
        return Some(
            norm_fqdn(t, &Value::from(rest)).map(|n| format!("*{}", n.valu.as_str().unwrap_or(""))),
        );
    }
    if text.contains('*') {
        return Some(Err(SynErr::new(
            "BadLiftValu",
            "Wild card may only appear at the beginning.",
        )
        .with("name", t.name.as_str())
        .with("valu", text)));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// email, url, addr, cookies, ranges

/// synapse.models.inet.Email
pub(crate) fn norm_email(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let (user, fqdn) = text.split_once('@').ok_or_else(|| {
        t.bad(format!(
            "Email address expected in <user>@<fqdn> format, got \"{text}\""
        ))
    })?;
    let plus = user
        .split_once('+')
        .map(|(base, plus)| (base.to_string(), py::strip(plus).to_lowercase()));
    let wrap = |e: SynErr| t.bad(py_err_str(&e));
    let fqdnnorm = mtype(m, "inet:fqdn")?
        .norm(m, &Value::from(fqdn))
        .map_err(wrap)?
        .valu;
    let usernorm = mtype(m, "inet:user")?
        .norm(m, &Value::from(user))
        .map_err(wrap)?
        .valu;
    let (f, u) = (
        fqdnnorm.as_str().unwrap_or(""),
        usernorm.as_str().unwrap_or(""),
    );
    let mut subs = vec![
        ("fqdn".to_string(), fqdnnorm.clone()),
        ("user".to_string(), usernorm.clone()),
    ];
    if let Some((base, plus)) = plus {
        subs.push(("plus".into(), Value::Str(plus)));
        subs.push(("base".into(), Value::Str(format!("{base}@{f}"))));
    }
    Ok(Norm::with_subs(format!("{u}@{f}"), subs))
}

/// Python's `urllib.parse.unquote` (invalid UTF-8 becomes U+FFFD).
fn unquote(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn is_drive(s: &str) -> bool {
    let mut chars = s.chars();
    matches!((chars.next(), chars.next()), (Some(c), Some(':' | '|')) if c.is_alphanumeric() || c == '_')
}

/// `^\[([a-f0-9\.:]+)\](?::(\d+))?$`, case-insensitive.
fn split_v6_port(valu: &str) -> Option<(String, Option<String>)> {
    let inner = valu.strip_prefix('[')?;
    let (addr, rest) = inner.split_once(']')?;
    if addr.is_empty()
        || !addr
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
    {
        return None;
    }
    let rest = rest.strip_suffix('\n').unwrap_or(rest);
    if rest.is_empty() {
        return Some((addr.to_string(), None));
    }
    let port = rest.strip_prefix(':')?;
    if port.is_empty() || !port.chars().all(|c| c.is_numeric()) {
        return None;
    }
    Some((addr.to_string(), Some(port.to_string())))
}

/// synapse.models.inet.Url
pub(crate) fn norm_url(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    let orig = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let missing = || {
        t.bad("Invalid/Missing protocol")
            .with("valu", orig.as_str())
    };
    let mut proto = String::new();
    let mut valu = String::new();
    let mut local = false;
    let mut unc = false;
    for splitter in ["://///", ":////"] {
        if let Some((p, rest)) = orig.split_once(splitter)
            && p.to_lowercase() == "file"
        {
            proto = "file".into();
            valu = rest.to_string();
            unc = true;
            break;
        }
    }
    if proto.is_empty()
        && let Some((p, rest)) = orig.split_once("://")
    {
        proto = p.to_lowercase();
        valu = rest.to_string();
    }
    if proto.is_empty()
        && let Some((p, rest)) = orig.split_once(':')
        && p.to_lowercase() == "file"
        && !rest.is_empty()
    {
        proto = "file".into();
        valu = rest.to_string();
        local = true;
    }
    if proto.is_empty() || valu.is_empty() {
        return Err(missing());
    }
    let mut subs: Vec<(String, Value)> = vec![("proto".into(), Value::Str(proto.clone()))];
    let mut queryrem = String::new();
    if let Some((a, q)) = valu.clone().split_once('?') {
        valu = a.to_string();
        queryrem = q.to_string();
    }
    let mut pathpart = String::new();
    let mut path_sub = String::new();
    if let Some((host, path)) = valu.clone().split_once('/') {
        valu = host.to_string();
        let mut path = path.to_string();
        if local && is_drive(&valu) {
            path = format!("{valu}/{path}");
            valu.clear();
        }
        if proto == "file" && is_drive(&path) {
            path_sub = path.clone();
            pathpart = format!("/{path}");
        } else {
            pathpart = format!("/{path}");
            path_sub = pathpart.clone();
        }
    }
    subs.push(("path".into(), Value::Str(path_sub)));
    let parampart = if queryrem.is_empty() {
        String::new()
    } else {
        format!("?{queryrem}")
    };
    subs.push(("params".into(), Value::Str(parampart.clone())));

    let mut authparts: Option<String> = None;
    if let Some((auth, host)) = valu.clone().rsplit_once('@') {
        authparts = Some(auth.to_string());
        valu = host.to_string();
        match auth.split_once(':') {
            Some((u, p)) => {
                subs.push(("user".into(), Value::Str(unquote(u))));
                subs.push(("passwd".into(), Value::Str(unquote(p))));
            }
            None => subs.push(("user".into(), Value::Str(unquote(auth)))),
        }
    }

    let mut host: Option<String> = None;
    let port: Option<String>;
    if valu.starts_with('[') || valu.matches(':').count() >= 2 {
        let mut addr = valu.clone();
        let mut v6port = None;
        if let Some((a, p)) = split_v6_port(&valu) {
            addr = a;
            v6port = p;
        }
        port = v6port;
        if let Ok(n) = mtype(m, "inet:ipv6")?.norm(m, &Value::Str(addr)) {
            subs.push(("ipv6".into(), n.valu.clone()));
            if let Some(v4) = n.sub("ipv4") {
                subs.push(("ipv4".into(), v4.clone()));
            }
            host = Some(format!("[{}]", n.valu.as_str().unwrap_or("")));
        }
    } else {
        let (part, p) = match valu.split_once(':') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (valu.clone(), None),
        };
        port = p;
        if let Ok(n) = mtype(m, "inet:ipv4")?.norm(m, &Value::Str(part.clone())) {
            let ip = n.valu.as_i64().unwrap_or(0) as i128;
            host = Some(ipv4_repr(ip));
            subs.push(("ipv4".into(), Value::Int(ip)));
        }
        if host.is_none()
            && let Ok(n) = mtype(m, "inet:fqdn")?.norm(m, &Value::Str(part.clone()))
        {
            host = n.valu.as_str().map(str::to_string);
            subs.push(("fqdn".into(), n.valu));
        }
        if host.is_none() && part == "+" {
            host = Some("+".into());
        }
    }
    if host.is_some() && local {
        return Err(t
            .bad("Host specified on local-only file URI")
            .with("valu", orig.as_str()));
    }
    let porttype = mtype(m, "inet:port")?;
    let portnorm = match &port {
        Some(p) => {
            let n = porttype.norm(m, &Value::Str(p.clone()))?.valu;
            subs.push(("port".into(), n.clone()));
            Some(n)
        }
        None => {
            if let Some(defport) = lookups().iana_services.get(&proto) {
                let n = porttype.norm(m, &Value::Int(*defport))?.valu;
                subs.push(("port".into(), n));
            }
            None
        }
    };
    let mut hostparts = String::new();
    if unc {
        hostparts.push_str("//");
    }
    if let Some(auth) = authparts.as_deref().filter(|a| !a.is_empty()) {
        hostparts = format!("{auth}@");
    }
    if let Some(h) = &host {
        hostparts.push_str(h);
        if let Some(p) = &portnorm {
            hostparts.push_str(&format!(":{p}"));
        }
    }
    if proto != "file" && host.is_none() {
        return Err(t.bad("Missing address/url").with("valu", orig.as_str()));
    }
    if hostparts.is_empty() && pathpart.is_empty() {
        return Err(t.bad("Missing address/url").with("valu", orig.as_str()));
    }
    let base = format!("{proto}://{hostparts}{pathpart}");
    subs.push(("base".into(), Value::Str(base.clone())));
    Ok(Norm::with_subs(format!("{base}{parampart}"), subs))
}

const ADDR_PROTOS: &[&str] = &["tcp", "udp", "icmp", "host", "gre"];

/// synapse.models.inet.Addr (inet:server, inet:client): `proto://host[:port]`.
pub(crate) fn norm_addr(
    t: &Type,
    m: &Model,
    defport: Option<i128>,
    defproto: &str,
    v: &Value,
) -> SynResult<Norm> {
    let orig = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let low = orig.to_lowercase();
    let (proto, rest) = match low.split_once("://") {
        Some((p, r)) => (p.to_string(), r.to_string()),
        None => (defproto.to_string(), low.clone()),
    };
    if !ADDR_PROTOS.contains(&proto.as_str()) {
        return Err(t.bad(format!(
            "inet:addr protocol must be one of: {}",
            ADDR_PROTOS.join(",")
        )));
    }
    let mut subs = vec![("proto".to_string(), Value::Str(proto.clone()))];
    let valu = py::strip(&rest).trim_matches('/').to_string();
    let porttype = mtype(m, "inet:port")?;
    let get_port = |valu: &str| -> SynResult<(String, Option<i128>, String)> {
        if let Some((host, port)) = valu.split_once(':') {
            let p = porttype
                .norm(m, &Value::from(port))?
                .valu
                .as_i64()
                .unwrap_or(0) as i128;
            return Ok((host.to_string(), Some(p), format!(":{p}")));
        }
        match defport {
            Some(p) if p != 0 => Ok((valu.to_string(), Some(p), format!(":{p}"))),
            _ => Ok((valu.to_string(), None, String::new())),
        }
    };
    let noports = |port: Option<i128>| -> SynResult<()> {
        if port.is_some_and(|p| p != 0) && proto == "gre" {
            return Err(SynErr::new(
                "BadTypeValu",
                format!("Protocol {proto} does not allow specifying ports."),
            ));
        }
        Ok(())
    };
    if proto == "host" {
        let (host, port, pstr) = get_port(&valu)?;
        if let Some(p) = port.filter(|p| *p != 0) {
            subs.push(("port".into(), Value::Int(p)));
        }
        let guid = crate::guid::guid_of(&Value::Str(host));
        subs.push(("host".into(), Value::Str(guid.clone())));
        return Ok(Norm::with_subs(format!("host://{guid}{pstr}"), subs));
    }
    let v6type = mtype(m, "inet:ipv6")?;
    if valu.starts_with('[') {
        let Some((addr, port)) = split_v6_port(&valu) else {
            return Err(t.bad(format!("Invalid IPv6 w/port ({orig})")));
        };
        let n = v6type.norm(m, &Value::Str(addr))?;
        if let Some(v4) = n.sub("ipv4") {
            subs.push(("ipv4".into(), v4.clone()));
        }
        subs.push(("ipv6".into(), n.valu.clone()));
        let mut portstr = String::new();
        let mut portval = None;
        if let Some(p) = port {
            let p = porttype.norm(m, &Value::Str(p))?.valu.as_i64().unwrap_or(0) as i128;
            subs.push(("port".into(), Value::Int(p)));
            portstr = format!(":{p}");
            portval = Some(p);
        }
        noports(portval)?;
        return Ok(Norm::with_subs(
            format!("{proto}://[{}]{portstr}", n.valu.as_str().unwrap_or("")),
            subs,
        ));
    }
    if valu.matches(':').count() >= 2 {
        let n = v6type.norm(m, &Value::Str(valu.clone()))?;
        if let Some(v4) = n.sub("ipv4") {
            subs.push(("ipv4".into(), v4.clone()));
        }
        subs.push(("ipv6".into(), n.valu.clone()));
        return Ok(Norm::with_subs(
            format!("{proto}://[{}]", n.valu.as_str().unwrap_or("")),
            subs,
        ));
    }
    let (host, port, pstr) = get_port(&valu)?;
    if let Some(p) = port.filter(|p| *p != 0) {
        subs.push(("port".into(), Value::Int(p)));
    }
    noports(port)?;
    let ip = mtype(m, "inet:ipv4")?
        .norm(m, &Value::Str(host))?
        .valu
        .as_i64()
        .unwrap_or(0) as i128;
    subs.push(("ipv4".into(), Value::Int(ip)));
    Ok(Norm::with_subs(
        format!("{proto}://{}{pstr}", ipv4_repr(ip)),
        subs,
    ))
}

/// synapse.models.inet.HttpCookie: `name=value` with subs name and value.
pub(crate) fn norm_http_cookie(t: &Type, v: &Value) -> SynResult<Norm> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let text = py::strip(&text).to_string();
    let (first, rest) = match text.split_once('=') {
        Some((a, b)) => (a, Some(b)),
        None => (text.as_str(), None),
    };
    let name = py::strip(first.split(';').next().unwrap_or("")).to_string();
    let mut subs = vec![("name".to_string(), Value::Str(name))];
    if let Some(rest) = rest {
        let valu = py::strip(rest.split(';').next().unwrap_or("")).to_string();
        subs.push(("value".into(), Value::Str(valu)));
    }
    Ok(Norm::with_subs(text.clone(), subs))
}

fn ip_range(t: &Type, m: &Model, sub: &str, v: &Value, v6: bool) -> SynResult<Norm> {
    let subref = crate::cortex::model::TypeRef::new(sub, Value::Map(Vec::new()));
    match v {
        Value::Str(s) if !s.contains('-') => {
            let (lo, hi) = if v6 {
                let n = norm_cidr6(t, v)?;
                (n.sub("network").cloned(), n.sub("broadcast").cloned())
            } else {
                let n = norm_cidr4(t, m, v)?;
                (n.sub("network").cloned(), n.sub("broadcast").cloned())
            };
            let parts = [lo.unwrap_or(Value::Nil), hi.unwrap_or(Value::Nil)];
            range_checked(t, m, &subref, &parts, v, v6)
        }
        Value::Str(s) => {
            let parts: Vec<Value> = s.splitn(2, '-').map(Value::from).collect();
            range_checked(t, m, &subref, &parts, v, v6)
        }
        Value::Array(items) => range_checked(t, m, &subref, items, v, v6),
        other => Err(no_norm(t, other)),
    }
}

fn range_checked(
    t: &Type,
    m: &Model,
    sub: &crate::cortex::model::TypeRef,
    parts: &[Value],
    orig: &Value,
    v6: bool,
) -> SynResult<Norm> {
    if !v6 {
        return super::compound::range_of(t, m, sub, parts, orig);
    }
    let [lo, hi] = parts else {
        return Err(t.bad(format!("Must be a 2-tuple of type inet:ipv6: {orig}")));
    };
    let subtype = sub.get(m)?;
    let lo = subtype.norm(m, lo)?.valu;
    let hi = subtype.norm(m, hi)?.valu;
    let num = |v: &Value| parse_v6(v.as_str().unwrap_or("")).map(|p| p.0).unwrap_or(0);
    if num(&lo) > num(&hi) {
        return Err(t.bad("minval cannot be greater than maxval"));
    }
    Ok(Norm::with_subs(
        Value::Array(vec![lo.clone(), hi.clone()]),
        vec![("min".into(), lo), ("max".into(), hi)],
    ))
}

/// synapse.models.inet.IPv4Range: `a-b`, a CIDR, or `(a, b)`.
pub(crate) fn norm_ipv4_range(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    ip_range(t, m, "inet:ipv4", v, false)
}

/// synapse.models.inet.IPv6Range: `a-b`, a CIDR, or `(a, b)`.
pub(crate) fn norm_ipv6_range(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    ip_range(t, m, "inet:ipv6", v, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aton_follows_glibc() {
        assert_eq!(inet_aton("1.2.3.4"), Some(0x01020304));
        assert_eq!(inet_aton("1.2.3"), Some(0x01020003));
        assert_eq!(inet_aton("010.1.1.1"), Some(0x08010101));
        assert_eq!(inet_aton("0x01020304"), Some(0x01020304));
        assert_eq!(inet_aton("1"), Some(1));
        assert_eq!(inet_aton("1.2.3.4 junk"), Some(0x01020304));
        assert_eq!(inet_aton(" 1.2.3.4"), None);
        assert_eq!(inet_aton("256.1.1.1"), None);
        assert_eq!(inet_aton("1.2.3.4.5"), None);
        assert_eq!(inet_aton("08.1.1.1"), None);
        assert_eq!(inet_aton(""), None);
    }

    #[test]
    fn v6_like_python() {
        assert_eq!(
            v6_compress(
                parse_v6("2001:0db8:0000:0000:0000:0000:0000:0001")
                    .unwrap()
                    .0
            ),
            "2001:db8::1"
        );
        assert_eq!(v6_compress(1), "::1");
        assert_eq!(v6_compress(0), "::");
        assert_eq!(
            parse_v6("::ffff:newp").unwrap_err(),
            "Only hex digits permitted in 'newp' in '::ffff:newp'"
        );
        assert_eq!(
            parse_v6("2001:db8::1/64").unwrap_err(),
            "Unexpected '/' in '2001:db8::1/64'"
        );
        assert_eq!(
            parse_v6_network("2001:db8::1/64", true).unwrap_err(),
            "2001:db8::1/64 has host bits set"
        );
        assert_eq!(
            parse_v6_network("2001:db8::/129", true).unwrap_err(),
            "'129' is not a valid netmask"
        );
    }
}
