//! Storage nodes: what one layer holds about one buid.

use crate::cortex::edits::{Ival, ival_to_value};
use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};

/// Version tag of the stored encoding, the first item of every stored sode.
const SODE_FORMAT: i64 = 1;

/// A storage node: the form, primary value, props, tags and tag props one layer holds for a
/// buid. Lists keep the order in which entries were first set, as Synapse's dicts do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sode {
    /// The form name.
    pub form: String,
    /// The primary value and its stortype, unless only props, tags, data or edges are here.
    pub valu: Option<(Value, u16)>,
    /// Secondary and universal props: `(name, value, stortype)`.
    pub props: Vec<(String, Value, u16)>,
    /// Tags with their intervals.
    pub tags: Vec<(String, Ival)>,
    /// Tag props: `(tag, prop, value, stortype)`.
    pub tagprops: Vec<(String, String, Value, u16)>,
}

impl Sode {
    /// The value and stortype of a prop.
    pub fn prop(&self, name: &str) -> Option<(&Value, u16)> {
        self.props
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, t)| (v, *t))
    }

    /// The interval of a tag.
    pub fn tag(&self, name: &str) -> Option<Ival> {
        self.tags.iter().find(|(n, _)| n == name).map(|(_, i)| *i)
    }

    /// The value and stortype of a tag prop.
    pub fn tagprop(&self, tag: &str, prop: &str) -> Option<(&Value, u16)> {
        self.tagprops
            .iter()
            .find(|(t, p, _, _)| t == tag && p == prop)
            .map(|(_, _, v, st)| (v, *st))
    }

    /// Synapse's storage dict: `{'form', 'valu': (valu, stortype), 'props': {p: (v, st)},
    /// 'tags': {t: ival}, 'tagprops': {t: {p: (v, st)}}}` (`valu` only when set).
    pub fn to_value(&self) -> Value {
        let pair = |v: &Value, t: u16| Value::Array(vec![v.clone(), Value::from(i64::from(t))]);
        let mut out = vec![("form", Value::from(self.form.as_str()))];
        if let Some((v, t)) = &self.valu {
            out.push(("valu", pair(v, *t)));
        }
        let props = self
            .props
            .iter()
            .map(|(n, v, t)| (Value::from(n.as_str()), pair(v, *t)))
            .collect();
        out.push(("props", Value::Map(props)));
        let tags = self
            .tags
            .iter()
            .map(|(n, i)| (Value::from(n.as_str()), ival_to_value(i)))
            .collect();
        out.push(("tags", Value::Map(tags)));
        let mut tagprops: Vec<(Value, Value)> = Vec::new();
        for (tag, prop, v, t) in &self.tagprops {
            let entry = (Value::from(prop.as_str()), pair(v, *t));
            match tagprops.iter_mut().find(|(k, _)| k.as_str() == Some(tag)) {
                Some((_, Value::Map(props))) => props.push(entry),
                _ => tagprops.push((Value::from(tag.as_str()), Value::Map(vec![entry]))),
            }
        }
        out.push(("tagprops", Value::Map(tagprops)));
        Value::map(out)
    }

    /// Whether nothing but the form is left (node data and edges are stored elsewhere).
    pub(super) fn is_bare(&self) -> bool {
        self.valu.is_none()
            && self.props.is_empty()
            && self.tags.is_empty()
            && self.tagprops.is_empty()
    }

    /// The stored bytes: msgpack `(1, form, valu, stortype, (name, valu, st)*, (tag, min,
    /// max)*, (tag, prop, valu, st)*)` with each list flattened.
    pub(super) fn encode(&self) -> Vec<u8> {
        use msgpack::{encode, write_array_len as array, write_int as int, write_str as text};
        let mut out = Vec::with_capacity(128);
        array(7, &mut out);
        int(SODE_FORMAT.into(), &mut out);
        text(&self.form, &mut out);
        match &self.valu {
            Some((v, t)) => {
                encode(v, &mut out);
                int((*t).into(), &mut out);
            }
            None => {
                encode(&Value::Nil, &mut out);
                encode(&Value::Nil, &mut out);
            }
        }
        array(self.props.len() * 3, &mut out);
        for (name, v, t) in &self.props {
            text(name, &mut out);
            encode(v, &mut out);
            int((*t).into(), &mut out);
        }
        array(self.tags.len() * 3, &mut out);
        for (name, (min, max)) in &self.tags {
            text(name, &mut out);
            encode(&Value::from(*min), &mut out);
            encode(&Value::from(*max), &mut out);
        }
        array(self.tagprops.len() * 4, &mut out);
        for (tag, prop, v, t) in &self.tagprops {
            text(tag, &mut out);
            text(prop, &mut out);
            encode(v, &mut out);
            int((*t).into(), &mut out);
        }
        out
    }

    /// Read stored bytes back (moving the decoded values into place, not copying them).
    pub(super) fn decode(bytes: &[u8]) -> SynResult<Sode> {
        let bad = |why: &str| SynErr::new("StorageError", format!("bad stored node: {why}"));
        let value = msgpack::decode_exact(bytes).map_err(|e| bad(&e.to_string()))?;
        let Value::Array(items) = value else {
            return Err(bad("not a sode record"));
        };
        let Ok(
            [
                format,
                Value::Str(form),
                valu,
                stortype,
                Value::Array(props),
                Value::Array(tags),
                Value::Array(tagprops),
            ],
        ) = <[Value; 7]>::try_from(items)
        else {
            return Err(bad("not a sode record"));
        };
        if format.as_i64() != Some(SODE_FORMAT) {
            return Err(bad(&format!("unknown format {format}")));
        }
        let st = |v: &Value| {
            v.as_i64()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| bad("bad stortype"))
        };
        let text = |v: Value| match v {
            Value::Str(s) => Ok(s),
            _ => Err(bad("bad name")),
        };
        let bound = |v: &Value| match v {
            Value::Nil => Ok(None),
            other => other.as_i64().map(Some).ok_or_else(|| bad("bad interval")),
        };
        let valu = match (valu, stortype) {
            (Value::Nil, Value::Nil) => None,
            (v, t) => Some((v, st(&t)?)),
        };
        let mut sode = Sode {
            form,
            valu,
            ..Sode::default()
        };
        let mut props = whole_tuples(props, 3).ok_or_else(|| bad("bad props"))?;
        while let (Some(name), Some(v), Some(t)) = (props.next(), props.next(), props.next()) {
            sode.props.push((text(name)?, v, st(&t)?));
        }
        let mut tags = whole_tuples(tags, 3).ok_or_else(|| bad("bad tags"))?;
        while let (Some(name), Some(min), Some(max)) = (tags.next(), tags.next(), tags.next()) {
            sode.tags.push((text(name)?, (bound(&min)?, bound(&max)?)));
        }
        let mut tagprops = whole_tuples(tagprops, 4).ok_or_else(|| bad("bad tag props"))?;
        while let (Some(tag), Some(prop), Some(v), Some(t)) = (
            tagprops.next(),
            tagprops.next(),
            tagprops.next(),
            tagprops.next(),
        ) {
            sode.tagprops.push((text(tag)?, text(prop)?, v, st(&t)?));
        }
        Ok(sode)
    }
}

/// The items of a flattened list of `size`-tuples, one after another, if it has whole tuples.
fn whole_tuples(items: Vec<Value>, size: usize) -> Option<std::vec::IntoIter<Value>> {
    items.len().is_multiple_of(size).then(|| items.into_iter())
}
