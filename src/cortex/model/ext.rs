//! Synapse's extended model: forms, form props, universal props and tag props a cortex adds to
//! the built-in model, kept in the cell slab and applied at every start.
//!
//! Each item keeps the arguments of the CoreApi call that made it, in Synapse's shapes:
//! `addForm(formname, basetype, typeopts, typeinfo)`, `addFormProp(form, prop, (type, opts),
//! info)`, `addUnivProp(name, (type, opts), info)` and `addTagProp(name, (type, opts), info)`.
//! Extended forms, form props and universal props are named with a leading `_` (or, for a
//! form prop, belong to an extended form), as Synapse requires; tag props may have any name.
//!
//! The record is database `cortex:meta` ([`crate::cortex::topology::META_DB`]), key
//! `model:ext`, so an offline tool (`syn migrate-200`) can write one with [`ExtModel::save`]
//! and `syn cortex` loads it with [`ExtModel::load`].

use serde::{Deserialize, Serialize};

use super::Model;
use crate::cortex::topology::META_DB;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::Slab;

/// The key of the record in [`META_DB`].
pub const EXT_MODEL_KEY: &[u8] = b"model:ext";

/// An extended form: `addForm(formname, basetype, typeopts, typeinfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtForm {
    /// The form (and type) name, `_` first: `_foo:bar`.
    pub formname: String,
    /// The type it extends: `str`, `int`, ...
    pub basetype: String,
    /// Options for the base type (a dict).
    #[serde(with = "value_serde")]
    pub typeopts: Value,
    /// Type info (a dict; `interfaces` gives the form interface props).
    #[serde(with = "value_serde")]
    pub typeinfo: Value,
}

/// An extended form prop: `addFormProp(form, prop, (type, opts), info)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtFormProp {
    /// The form it belongs to: `inet:ipv4`.
    pub form: String,
    /// The prop's relative name: `_note`.
    pub prop: String,
    /// `(type, opts)`.
    #[serde(with = "value_serde")]
    pub tdef: Value,
    /// Prop info (a dict: `doc`, `ro`, ...).
    #[serde(with = "value_serde")]
    pub info: Value,
}

/// An extended universal prop or a tag prop: `addUnivProp(name, (type, opts), info)`,
/// `addTagProp(name, (type, opts), info)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtPropDef {
    /// The name, without the leading `.` of a universal prop: `_risk`, `score`.
    pub name: String,
    /// `(type, opts)`.
    #[serde(with = "value_serde")]
    pub tdef: Value,
    /// Prop info (a dict).
    #[serde(with = "value_serde")]
    pub info: Value,
}

/// Everything a cortex adds to the built-in model, in the order it was added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtModel {
    /// Extended forms.
    #[serde(default)]
    pub forms: Vec<ExtForm>,
    /// Extended props of forms.
    #[serde(default)]
    pub formprops: Vec<ExtFormProp>,
    /// Extended universal props.
    #[serde(default)]
    pub univprops: Vec<ExtPropDef>,
    /// Tag props.
    #[serde(default)]
    pub tagprops: Vec<ExtPropDef>,
}

impl ExtModel {
    /// The extended model stored in `slab` (empty if none was ever stored).
    pub fn load(slab: &Slab) -> SynResult<ExtModel> {
        let meta = slab.db(META_DB, false)?;
        let ext: Option<ExtModel> = slab.read(|txn| meta.get_serde(txn, EXT_MODEL_KEY))?;
        Ok(ext.unwrap_or_default())
    }

    /// Store this extended model in `slab`, replacing the one there.
    pub fn save(&self, slab: &Slab) -> SynResult<()> {
        let meta = slab.db(META_DB, false)?;
        slab.write(|txn| meta.put_serde(txn, EXT_MODEL_KEY, self))?;
        Ok(())
    }

    /// Read an extended model from JSON text in this struct's shape: `{"forms": [{"formname",
    /// "basetype", "typeopts", "typeinfo"}], "formprops": [{"form", "prop", "tdef", "info"}],
    /// "univprops": [{"name", "tdef", "info"}], "tagprops": [{"name", "tdef", "info"}]}`.
    pub fn from_json(text: &str) -> SynResult<ExtModel> {
        serde_json::from_str(text)
            .map_err(|e| SynErr::new("BadConfValu", format!("bad extended model: {e}")))
    }

    /// Add every item to `model`: forms, then form props, universal props and tag props, as
    /// Synapse loads them. An item that no longer fits the model is skipped and returned with
    /// its error (Synapse logs a warning and goes on).
    pub fn apply(&self, model: &mut Model) -> Vec<(String, SynErr)> {
        let mut skipped = Vec::new();
        for f in &self.forms {
            if let Err(e) = model.add_form(&f.formname, &f.basetype, &f.typeopts, &f.typeinfo) {
                skipped.push((format!("form {}", f.formname), e));
            }
        }
        for p in &self.formprops {
            if let Err(e) = model.add_form_prop(&p.form, &p.prop, &p.tdef, &p.info) {
                skipped.push((format!("form prop {}:{}", p.form, p.prop), e));
            }
        }
        for u in &self.univprops {
            if let Err(e) = model.add_univ_prop(&u.name, &u.tdef, &u.info) {
                skipped.push((format!("universal prop .{}", u.name), e));
            }
        }
        for t in &self.tagprops {
            if let Err(e) = model.add_tag_prop(&t.name, &t.tdef, &t.info) {
                skipped.push((format!("tag prop {}", t.name), e));
            }
        }
        skipped
    }

    /// The extended form named `name`.
    pub fn form(&self, name: &str) -> Option<&ExtForm> {
        self.forms.iter().find(|f| f.formname == name)
    }

    /// The extended prop `prop` of `form`.
    pub fn formprop(&self, form: &str, prop: &str) -> Option<&ExtFormProp> {
        self.formprops
            .iter()
            .find(|p| p.form == form && p.prop == prop)
    }

    /// The extended universal prop `name` (no leading `.`).
    pub fn univprop(&self, name: &str) -> Option<&ExtPropDef> {
        self.univprops.iter().find(|u| u.name == name)
    }

    /// The tag prop `name`.
    pub fn tagprop(&self, name: &str) -> Option<&ExtPropDef> {
        self.tagprops.iter().find(|t| t.name == name)
    }
}

/// Serde for [`Value`] fields: maps, lists, strings, numbers, bytes, booleans and nil, so the
/// record reads back exactly from msgpack and can be written by hand in JSON.
mod value_serde {
    use serde::ser::{SerializeMap, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::msgpack::{Ordered, Value};

    struct Ser<'a>(&'a Value);

    impl Serialize for Ser<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Value::Nil => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                    (Ok(i), _) => s.serialize_i64(i),
                    (_, Ok(u)) => s.serialize_u64(u),
                    _ => Err(serde::ser::Error::custom("integer out of range")),
                },
                Value::Float(f) => s.serialize_f64(*f),
                Value::Str(t) => s.serialize_str(t),
                Value::RawStr(b) | Value::Bin(b) | Value::Ext(_, b) => s.serialize_bytes(b),
                Value::Array(items) => {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for item in items {
                        seq.serialize_element(&Ser(item))?;
                    }
                    seq.end()
                }
                Value::Map(pairs) => {
                    let mut map = s.serialize_map(Some(pairs.len()))?;
                    for (k, v) in pairs {
                        map.serialize_entry(&Ser(k), &Ser(v))?;
                    }
                    map.end()
                }
            }
        }
    }

    pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
        Ser(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        Ordered::deserialize(d).map(|o| o.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SlabOptions;

    fn str_tdef() -> Value {
        Value::Array(vec![
            Value::from("str"),
            Value::map([("lower", Value::Bool(true))]),
        ])
    }

    fn sample() -> ExtModel {
        ExtModel {
            forms: vec![ExtForm {
                formname: "_test:thing".into(),
                basetype: "str".into(),
                typeopts: Value::map([("lower", Value::Bool(true))]),
                typeinfo: Value::Map(Vec::new()),
            }],
            formprops: vec![ExtFormProp {
                form: "inet:ipv4".into(),
                prop: "_note".into(),
                tdef: str_tdef(),
                info: Value::map([("doc", Value::from("a note"))]),
            }],
            univprops: vec![ExtPropDef {
                name: "_risk".into(),
                tdef: Value::Array(vec![Value::from("int"), Value::Map(Vec::new())]),
                info: Value::Map(Vec::new()),
            }],
            tagprops: vec![ExtPropDef {
                name: "score".into(),
                tdef: Value::Array(vec![Value::from("int"), Value::Map(Vec::new())]),
                info: Value::Map(Vec::new()),
            }],
        }
    }

    #[test]
    fn round_trips_through_the_slab_and_json() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = Slab::open(tmp.path().join("cell.lmdb"), SlabOptions::default()).unwrap();
        assert_eq!(ExtModel::load(&slab).unwrap(), ExtModel::default());
        let ext = sample();
        ext.save(&slab).unwrap();
        assert_eq!(ExtModel::load(&slab).unwrap(), ext);

        let json = r#"{"formprops": [{"form": "inet:ipv4", "prop": "_note",
            "tdef": ["str", {"lower": true}], "info": {"doc": "a note"}}]}"#;
        let parsed = ExtModel::from_json(json).unwrap();
        assert_eq!(parsed.formprops, ext.formprops);
        assert!(parsed.forms.is_empty());
        assert!(ExtModel::from_json(r#"{"forms": 3}"#).is_err());
    }

    #[test]
    fn applies_to_a_model() {
        let mut model = Model::shared().unwrap().as_ref().clone();
        let skipped = sample().apply(&mut model);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert!(model.form("_test:thing").is_some());
        assert!(model.prop("inet:ipv4:_note").is_some());
        assert!(model.prop("inet:ipv4._risk").is_some());
        assert!(model.prop("._risk").is_some());
        assert!(model.tagprop("score").is_some());

        // A prop of a form that is gone is skipped, not fatal.
        let mut ext = sample();
        ext.formprops[0].form = "no:such".into();
        let mut model = Model::shared().unwrap().as_ref().clone();
        let skipped = ext.apply(&mut model);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].1.name, "NoSuchForm");
    }
}
