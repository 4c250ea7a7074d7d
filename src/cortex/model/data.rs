//! The model's data files, read into [`Value`]s with their key order kept: `model.json` (the
//! types, forms, props, univs, tag props, interfaces and edges of Synapse 2.256, without doc
//! strings) and `lookups.json` (phone number prefixes and IANA service ports). Both are made by
//! `tests/py/make_model_data.py` from a real Synapse; see the module doc of [`super`].

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// The model definition of Synapse 2.256.
pub(crate) const MODEL_JSON: &str = include_str!("model.json");

/// Lookup tables that norms read.
const LOOKUPS_JSON: &str = include_str!("lookups.json");

/// Parse JSON text into a [`Value`], keeping map key order.
pub(crate) fn parse_json(text: &str) -> SynResult<Value> {
    Value::from_json_text(text)
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
