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

    /// Read stored bytes back.
    pub(super) fn decode(bytes: &[u8]) -> SynResult<Sode> {
        let bad = |why: &str| SynErr::new("StorageError", format!("bad stored node: {why}"));
        let value = msgpack::decode_exact(bytes).map_err(|e| bad(&e.to_string()))?;
        let Some(
            [
                format,
                Value::Str(form),
                valu,
                stortype,
                Value::Array(props),
                Value::Array(tags),
                Value::Array(tagprops),
            ],
        ) = value.as_array()
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
        let text = |v: &Value| v.as_str().map(str::to_owned).ok_or_else(|| bad("bad name"));
        let bound = |v: &Value| match v {
            Value::Nil => Ok(None),
            other => other.as_i64().map(Some).ok_or_else(|| bad("bad interval")),
        };
        let valu = match (valu, stortype) {
            (Value::Nil, Value::Nil) => None,
            (v, t) => Some((v.clone(), st(t)?)),
        };
        let mut sode = Sode {
            form: form.clone(),
            valu,
            ..Sode::default()
        };
        for chunk in exact_chunks(props, 3).ok_or_else(|| bad("bad props"))? {
            sode.props
                .push((text(&chunk[0])?, chunk[1].clone(), st(&chunk[2])?));
        }
        for chunk in exact_chunks(tags, 3).ok_or_else(|| bad("bad tags"))? {
            sode.tags
                .push((text(&chunk[0])?, (bound(&chunk[1])?, bound(&chunk[2])?)));
        }
        for chunk in exact_chunks(tagprops, 4).ok_or_else(|| bad("bad tag props"))? {
            sode.tagprops.push((
                text(&chunk[0])?,
                text(&chunk[1])?,
                chunk[2].clone(),
                st(&chunk[3])?,
            ));
        }
        Ok(sode)
    }
}

fn exact_chunks(items: &[Value], size: usize) -> Option<std::slice::ChunksExact<'_, Value>> {
    items
        .len()
        .is_multiple_of(size)
        .then(|| items.chunks_exact(size))
}
