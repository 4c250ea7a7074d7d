//! The model's data files, read into [`Value`]s with their key order kept: `model.json` (the
//! types, forms, props, univs, tag props, interfaces and edges of Synapse 2.256, without doc
//! strings) and `lookups.json` (phone number prefixes and IANA service ports). Both are made by
//! `tests/py/make_model_data.py` from a real Synapse; see the module doc of [`super`].

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// The model definition of Synapse 2.256.
pub(crate) const MODEL_JSON: &str = include_str!("model.json");

/// Lookup tables that norms read.
const LOOKUPS_JSON: &str = include_str!("lookups.json");

/// A serde document (JSON, or msgpack through rmp-serde) as a [`Value`], maps in document
/// order.
pub(crate) struct Ordered(pub(crate) Value);

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

/// Parse JSON text into a [`Value`], keeping map key order.
pub(crate) fn parse_json(text: &str) -> SynResult<Value> {
    serde_json::from_str::<Ordered>(text)
        .map(|o| o.0)
        .map_err(|e| SynErr::new("BadJsonText", format!("bad model data: {e}")))
}

/// The lookup tables.
pub(crate) struct Lookups {
    /// Phone number prefix → ISO country code (the longest matching prefix wins).
    pub phone_prefixes: HashMap<String, String>,
    /// The longest phone prefix, to bound the search.
    pub phone_prefix_max: usize,
    /// URL scheme → default port.
    pub iana_services: HashMap<String, i128>,
}

/// The lookup tables, read on first use.
pub(crate) fn lookups() -> &'static Lookups {
    static CELL: OnceLock<Lookups> = OnceLock::new();
    CELL.get_or_init(|| {
        // The file is part of the source tree and checked by the tests; an unreadable table
        // leaves the lookups empty rather than failing norms.
        let data = parse_json(LOOKUPS_JSON).unwrap_or(Value::Nil);
        let mut phone_prefixes = HashMap::new();
        for pair in data
            .get("phone_prefixes")
            .and_then(Value::as_array)
            .unwrap_or(&[])
        {
            if let Some([Value::Str(p), Value::Str(cc)]) = pair.as_array() {
                phone_prefixes.insert(p.clone(), cc.clone());
            }
        }
        let phone_prefix_max = phone_prefixes.keys().map(String::len).max().unwrap_or(0);
        let iana_services = data
            .get("iana_services")
            .and_then(Value::as_map)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Int(p)) => Some((k.clone(), *p)),
                _ => None,
            })
            .collect();
        Lookups {
            phone_prefixes,
            phone_prefix_max,
            iana_services,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_key_order() {
        let v = parse_json(r#"{"b": 1, "a": [true, null, 1.5, "x"]}"#).unwrap();
        let keys: Vec<_> = v.as_map().unwrap().iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![Value::from("b"), Value::from("a")]);
        assert!(parse_json("{").is_err());
    }

    #[test]
    fn lookups_load() {
        let l = lookups();
        assert_eq!(l.phone_prefixes.get("1").map(String::as_str), Some("us"));
        assert_eq!(l.iana_services.get("https"), Some(&443));
        assert!(l.phone_prefix_max >= 4);
    }
}
