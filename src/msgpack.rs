//! Synapse's msgpack dialect: the value model and codec shared by telepath and storage.
//!
//! Python Synapse packs with `use_bin_type=True` and `unicode_errors='surrogatepass'` and
//! unpacks with `raw=False, use_list=False, strict_map_key=False`. That means:
//! str and bin are distinct; strings may hold UTF-8-encoded lone surrogates (kept here as
//! [`Value::RawStr`] so they round-trip byte for byte); map keys may be any value and keep their
//! order; ints always take the smallest encoding; floats are always float64. Hashes (buids,
//! guids, password shadows) are computed over these exact bytes, so [`encode`] must match
//! msgpack-python's output.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Deepest nesting of arrays and maps the decoder accepts.
pub const MAX_DEPTH: usize = 512;

/// One msgpack value as Synapse sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// `None`.
    #[default]
    Nil,
    /// `True` / `False`.
    Bool(bool),
    /// Any integer from -2^63 to 2^64-1.
    Int(i128),
    /// A float (always written as float64).
    Float(f64),
    /// A valid UTF-8 string.
    Str(String),
    /// A str whose bytes are not valid UTF-8 (Python's surrogatepass strings), kept verbatim.
    RawStr(Vec<u8>),
    /// Bytes.
    Bin(Vec<u8>),
    /// A list or tuple.
    Array(Vec<Value>),
    /// A dict, in insertion order, with keys of any type.
    Map(Vec<(Value, Value)>),
    /// An extension type (Synapse HEAD uses 0 and 1 for big integers).
    Ext(i8, Vec<u8>),
}

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends inside a value; more bytes may complete it.
    #[error("incomplete msgpack value")]
    Incomplete,
    /// The bytes can never be a valid value.
    #[error("invalid msgpack: {0}")]
    Invalid(&'static str),
}

impl Value {
    /// Build a map from `(str key, value)` pairs, keeping their order.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v))
                .collect(),
        )
    }

    /// The string, if this is a valid UTF-8 str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an int that fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The boolean, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes, if this is bin.
    pub fn as_bin(&self) -> Option<&[u8]> {
        match self {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The pairs, if this is a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Whether this is `None`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Look up a string key in a map (the first match); `None` for other types.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Take the value of a string key out of a map (the first match), leaving `None` in its
    /// place; `None` when absent or for other types.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        match self {
            Value::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| std::mem::take(v)),
            _ => None,
        }
    }

    /// The Python type name of this value, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) | Value::RawStr(_) => "str",
            Value::Bin(_) => "bytes",
            Value::Array(_) => "tuple",
            Value::Map(_) => "dict",
            Value::Ext(..) => "ext",
        }
    }

    /// Encode to a new byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        encode(self, &mut out);
        out
    }

    /// Parse JSON text, keeping each object's keys in the text's order (as Python's `json`
    /// does).
    pub fn from_json_text(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str::<Ordered>(text).map(|o| o.0)
    }

    /// Convert JSON to a value: integers stay ints, objects become str-keyed maps.
    pub fn from_json(json: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match json {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Value::Int(i.into()),
                (None, Some(u)) => Value::Int(u.into()),
                _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (Value::Str(k.clone()), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Convert to JSON for people and scripts: bytes become hex strings, non-string map keys
    /// their JSON text, and out-of-range ints decimal strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    J::String(i.to_string())
                }
            }
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::RawStr(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Value::Bin(b) => J::String(hex::encode(b)),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Value::Str(s) => s.clone(),
                            other => other.to_json().to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
            Value::Ext(t, b) => J::Array(vec![J::from(*t), J::String(hex::encode(b))]),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i.into())
    }
}
impl From<u64> for Value {
    fn from(i: u64) -> Self {
        Value::Int(i.into())
    }
}
impl From<usize> for Value {
    fn from(i: usize) -> Self {
        Value::Int(i as i128)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Nil, Into::into)
    }
}

/// Encode `value` onto `out` exactly as msgpack-python with Synapse's options would.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Int(i) => encode_int(*i, out),
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => encode_str(s.as_bytes(), out),
        Value::RawStr(b) => encode_str(b, out),
        Value::Bin(b) => encode_bin(b, out),
        Value::Array(items) => {
            encode_len(items.len(), 0x90, 0xdc, out);
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(pairs) => {
            encode_len(pairs.len(), 0x80, 0xde, out);
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::Ext(t, data) => encode_ext(*t, data, out),
    }
}

/// Write the header of an array of `len` items; the items follow. With [`write_str`],
/// [`write_bin`] and [`write_int`] this builds large records without a [`Value`] tree; the bytes
/// are those [`encode`] would give for the same value.
pub fn write_array_len(len: usize, out: &mut Vec<u8>) {
    encode_len(len, 0x90, 0xdc, out);
}

/// Write the header of a map of `len` pairs; each key and its value follow.
pub fn write_map_len(len: usize, out: &mut Vec<u8>) {
    encode_len(len, 0x80, 0xde, out);
}

/// Write a str.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    encode_str(s.as_bytes(), out);
}

/// Write bytes as bin.
pub fn write_bin(b: &[u8], out: &mut Vec<u8>) {
    encode_bin(b, out);
}

/// Write an int.
pub fn write_int(i: i128, out: &mut Vec<u8>) {
    encode_int(i, out);
}

fn encode_int(i: i128, out: &mut Vec<u8>) {
    if (0..=0x7f).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else if i >= 0 {
        if i <= u8::MAX as i128 {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= u16::MAX as i128 {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= u32::MAX as i128 {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else if i <= u64::MAX as i128 {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        } else {
            // Synapse HEAD: ext 0 holds the unsigned big-endian magnitude.
            let bytes = i.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            encode_ext(0, &bytes[skip..], out);
        }
    } else if i >= i8::MIN as i128 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i128 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i128 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else if i >= i64::MIN as i128 {
        out.push(0xd3);
        out.extend_from_slice(&(i as i64).to_be_bytes());
    } else {
        // Synapse HEAD: ext 1 holds signed two's-complement big-endian bytes.
        let bytes = i.to_be_bytes();
        let skip = bytes
            .windows(2)
            .take_while(|w| w[0] == 0xff && w[1] & 0x80 != 0)
            .count();
        encode_ext(1, &bytes[skip..], out);
    }
}

fn encode_str(b: &[u8], out: &mut Vec<u8>) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn encode_bin(b: &[u8], out: &mut Vec<u8>) {
    let n = b.len();
    if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xc4, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn encode_len(n: usize, fix: u8, marker16: u8, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(marker16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(marker16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_ext(t: i8, data: &[u8], out: &mut Vec<u8>) {
    let n = data.len();
    match n {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        _ if n <= u8::MAX as usize => out.extend_from_slice(&[0xc7, n as u8]),
        _ if n <= u16::MAX as usize => {
            out.push(0xc8);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc9);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.push(t as u8);
    out.extend_from_slice(data);
}

/// Decode one value from the front of `buf`, returning it and the number of bytes it used.
pub fn decode(buf: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut rd = Reader { buf, pos: 0 };
    let value = rd.value(0)?;
    Ok((value, rd.pos))
}

/// Decode a buffer that must hold exactly one value.
pub fn decode_exact(buf: &[u8]) -> Result<Value, DecodeError> {
    match decode(buf)? {
        (value, used) if used == buf.len() => Ok(value),
        _ => Err(DecodeError::Invalid("trailing bytes after value")),
    }
}

/// The length of the first complete value in `buf` without building it, so a stream reader
/// can tell whether a whole message has arrived.
pub fn measure(buf: &[u8]) -> Result<usize, DecodeError> {
    let mut rd = Reader { buf, pos: 0 };
    rd.skip(0)?;
    Ok(rd.pos)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Incomplete)?;
        if end > self.buf.len() {
            return Err(DecodeError::Incomplete);
        }
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| acc << 8 | *b as u64))
    }

    /// Reads the marker and returns what follows it.
    fn head(&mut self) -> Result<Head, DecodeError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Head::Int(m as i128),
            0x80..=0x8f => Head::Map((m & 0x0f) as usize),
            0x90..=0x9f => Head::Array((m & 0x0f) as usize),
            0xa0..=0xbf => Head::Str((m & 0x1f) as usize),
            0xc0 => Head::Nil,
            0xc1 => return Err(DecodeError::Invalid("reserved marker 0xc1")),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => Head::Bin(self.be(1)? as usize),
            0xc5 => Head::Bin(self.be(2)? as usize),
            0xc6 => Head::Bin(self.be(4)? as usize),
            0xc7 => Head::Ext(self.be(1)? as usize),
            0xc8 => Head::Ext(self.be(2)? as usize),
            0xc9 => Head::Ext(self.be(4)? as usize),
            0xca => Head::Float(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => Head::Float(f64::from_bits(self.be(8)?)),
            0xcc => Head::Int(self.be(1)? as i128),
            0xcd => Head::Int(self.be(2)? as i128),
            0xce => Head::Int(self.be(4)? as i128),
            0xcf => Head::Int(self.be(8)? as i128),
            0xd0 => Head::Int(self.be(1)? as u8 as i8 as i128),
            0xd1 => Head::Int(self.be(2)? as u16 as i16 as i128),
            0xd2 => Head::Int(self.be(4)? as u32 as i32 as i128),
            0xd3 => Head::Int(self.be(8)? as i64 as i128),
            0xd4 => Head::Ext(1),
            0xd5 => Head::Ext(2),
            0xd6 => Head::Ext(4),
            0xd7 => Head::Ext(8),
            0xd8 => Head::Ext(16),
            0xd9 => Head::Str(self.be(1)? as usize),
            0xda => Head::Str(self.be(2)? as usize),
            0xdb => Head::Str(self.be(4)? as usize),
            0xdc => Head::Array(self.be(2)? as usize),
            0xdd => Head::Array(self.be(4)? as usize),
            0xde => Head::Map(self.be(2)? as usize),
            0xdf => Head::Map(self.be(4)? as usize),
            0xe0..=0xff => Head::Int(m as i8 as i128),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Invalid("nesting too deep"));
        }
        Ok(match self.head()? {
            Head::Nil => Value::Nil,
            Head::Bool(b) => Value::Bool(b),
            Head::Int(i) => Value::Int(i),
            Head::Float(f) => Value::Float(f),
            Head::Str(n) => {
                let b = self.take(n)?;
                match std::str::from_utf8(b) {
                    Ok(s) => Value::Str(s.to_owned()),
                    Err(_) => Value::RawStr(b.to_vec()),
                }
            }
            Head::Bin(n) => Value::Bin(self.take(n)?.to_vec()),
            Head::Ext(n) => {
                let t = self.byte()? as i8;
                let data = self.take(n)?;
                decode_ext(t, data)
            }
            Head::Array(n) => {
                // Every element takes at least one byte: never trust a declared length further.
                let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            Head::Map(n) => {
                let mut pairs = Vec::with_capacity(n.min((self.buf.len() - self.pos) / 2));
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            }
        })
    }

    fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Invalid("nesting too deep"));
        }
        match self.head()? {
            Head::Str(n) | Head::Bin(n) => {
                self.take(n)?;
            }
            Head::Ext(n) => {
                self.take(n + 1)?;
            }
            Head::Array(n) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            Head::Map(n) => {
                for _ in 0..n.saturating_mul(2) {
                    self.skip(depth + 1)?;
                }
            }
            Head::Nil | Head::Bool(_) | Head::Int(_) | Head::Float(_) => {}
        }
        Ok(())
    }
}

/// Big integers from Synapse HEAD come back as ints; other extension types stay as they are.
fn decode_ext(t: i8, data: &[u8]) -> Value {
    match t {
        // A magnitude that fits an i128 (up to 16 bytes with the top bit clear).
        0 if data.len() < 16 || (data.len() == 16 && data[0] & 0x80 == 0) => {
            Value::Int(data.iter().fold(0i128, |a, b| a << 8 | *b as i128))
        }
        1 if !data.is_empty() && data.len() <= 16 => {
            let fill = if data[0] & 0x80 != 0 { 0xff } else { 0 };
            let mut bytes = [fill; 16];
            bytes[16 - data.len()..].copy_from_slice(data);
            Value::Int(i128::from_be_bytes(bytes))
        }
        _ => Value::Ext(t, data.to_vec()),
    }
}

enum Head {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(usize),
    Bin(usize),
    Ext(usize),
    Array(usize),
    Map(usize),
}

/// A serde document (JSON, or msgpack through rmp-serde) as a [`Value`], maps in document
/// order.
pub struct Ordered(pub Value);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor).map(Ordered)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i.into()))
    }
    fn visit_u64<E>(self, i: u64) -> Result<Value, E> {
        Ok(Value::Int(i.into()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(b.to_vec()))
    }
    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(b))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Ordered(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((Ordered(k), Ordered(v))) = map.next_entry::<Ordered, Ordered>()? {
            pairs.push((k, v));
        }
        Ok(Value::Map(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(v: &Value) -> String {
        hex::encode(v.to_bytes())
    }

    #[test]
    fn ints_take_the_smallest_encoding() {
        let cases: &[(i128, &str)] = &[
            (0, "00"),
            (127, "7f"),
            (128, "cc80"),
            (255, "ccff"),
            (256, "cd0100"),
            (65536, "ce00010000"),
            (1 << 32, "cf0000000100000000"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0df"),
            (-129, "d1ff7f"),
            (-32769, "d2ffff7fff"),
            (i64::MIN as i128, "d38000000000000000"),
        ];
        for (i, want) in cases {
            assert_eq!(hex_of(&Value::Int(*i)), *want, "int {i}");
            assert_eq!(
                decode_exact(&Value::Int(*i).to_bytes()).unwrap(),
                Value::Int(*i)
            );
        }
    }

    #[test]
    fn big_ints_use_synapse_ext_types() {
        let big = u64::MAX as i128 + 1;
        assert_eq!(hex_of(&Value::Int(big)), "c70900010000000000000000");
        assert_eq!(
            decode_exact(&Value::Int(big).to_bytes()).unwrap(),
            Value::Int(big)
        );
        let small = i64::MIN as i128 - 1;
        assert_eq!(
            decode_exact(&Value::Int(small).to_bytes()).unwrap(),
            Value::Int(small)
        );
        for extreme in [i128::MAX, i128::MIN, 1 << 120, -(1 << 120)] {
            let v = Value::Int(extreme);
            assert_eq!(decode_exact(&v.to_bytes()).unwrap(), v, "{extreme}");
        }
        // Found by the fuzzer: a 16-byte ext 1 holding a positive number re-encodes as ext 0.
        let mut fuzzed = vec![0xd8, 0x01];
        fuzzed.extend_from_slice(&[0x38; 13]);
        fuzzed.extend_from_slice(&[0x00, 0x38, 0x38]);
        let v = decode_exact(&fuzzed).unwrap();
        assert_eq!(decode_exact(&v.to_bytes()).unwrap(), v);
    }

    #[test]
    fn handshake_bytes_match_python() {
        // ('tele:syn', {'auth': ('visi', {'passwd': 'secret'}), 'vers': (3, 0), 'name': 'cortex'})
        let mesg = Value::Array(vec![
            "tele:syn".into(),
            Value::map([
                (
                    "auth",
                    Value::Array(vec![
                        "visi".into(),
                        Value::map([("passwd", "secret".into())]),
                    ]),
                ),
                ("vers", Value::Array(vec![3i64.into(), 0i64.into()])),
                ("name", "cortex".into()),
            ]),
        ]);
        let want = "92a874656c653a73796e83a46175746892a47669736981a6706173737764a6736563726574\
                    a4766572739203 00a46e616d65a6636f72746578"
            .replace(' ', "");
        assert_eq!(hex_of(&mesg), want);
    }

    #[test]
    fn strings_bins_and_surrogates_round_trip() {
        let guid = "a".repeat(32);
        assert!(hex_of(&Value::Str(guid)).starts_with("d920"));
        assert_eq!(hex_of(&Value::Bin(vec![1, 2])), "c4020102");
        // A lone surrogate U+D800 as Python's surrogatepass writes it.
        let raw = vec![0xa3, 0xed, 0xa0, 0x80];
        let v = decode_exact(&raw).unwrap();
        assert_eq!(v, Value::RawStr(vec![0xed, 0xa0, 0x80]));
        assert_eq!(v.to_bytes(), raw);
    }

    #[test]
    fn floats_are_float64_and_float32_is_read() {
        assert_eq!(hex_of(&Value::Float(1.5)), "cb3ff8000000000000");
        assert_eq!(
            decode_exact(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap(),
            Value::Float(1.5)
        );
    }

    #[test]
    fn maps_keep_order_and_non_string_keys() {
        let m = Value::Map(vec![
            (Value::Int(2), "b".into()),
            (Value::Array(vec!["x".into(), "y".into()]), Value::Nil),
            ("a".into(), Value::Bool(true)),
        ]);
        assert_eq!(decode_exact(&m.to_bytes()).unwrap(), m);
        assert_eq!(m.get("a"), Some(&Value::Bool(true)));
    }

    #[test]
    fn long_collections_use_16_and_32_bit_lengths() {
        let a = Value::Array((0..70000).map(|i| Value::Int(i % 100)).collect());
        let bytes = a.to_bytes();
        assert_eq!(bytes[0], 0xdd);
        assert_eq!(decode_exact(&bytes).unwrap(), a);
        let s = Value::Str("x".repeat(300));
        assert_eq!(&s.to_bytes()[..3], &[0xda, 0x01, 0x2c]);
    }

    #[test]
    fn incomplete_and_invalid_are_told_apart() {
        let bytes = Value::Array(vec!["hello".into(), Value::Int(1000)]).to_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Err(DecodeError::Incomplete));
            assert_eq!(measure(&bytes[..cut]), Err(DecodeError::Incomplete));
        }
        assert_eq!(measure(&bytes), Ok(bytes.len()));
        assert!(matches!(decode(&[0xc1]), Err(DecodeError::Invalid(_))));
        // A declared length far beyond the data must not allocate it.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Incomplete)
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = vec![0x91u8; MAX_DEPTH + 10];
        assert!(matches!(decode(&deep), Err(DecodeError::Invalid(_))));
        assert!(matches!(measure(&deep), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn json_conversion() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"a": [1, -2, 1.5, "x", null, true]}"#).unwrap();
        let v = Value::from_json(&j);
        assert_eq!(v.to_json(), j);
        assert_eq!(Value::Bin(vec![0xab]).to_json(), serde_json::json!("ab"));
    }
}
