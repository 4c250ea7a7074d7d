//! Types: a name, the Python class that implements it (its *ctor*), options from the model
//! data, and the normalizer that the ctor selects.
//!
//! [`Type::norm`] returns what Python Synapse's `Type.norm()` returns: the normalized value and
//! the info dict's `subs` (secondary props to set) and `adds` (nodes to create, each with its own
//! norm info). [`Type::repr`] is `Type.repr()`. [`Type::stor_cmprs`] is `Type.getStorCmprs()`:
//! how a lift by comparison turns into index operations.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::Model;
use super::norm;
use crate::cortex::edits::stortype;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// Types by name.
pub type TypeMap = HashMap<String, Arc<Type>>;

/// The result of normalizing a value: Synapse's `(norm, info)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Norm {
    /// The normalized value, as stored.
    pub valu: Value,
    /// `info['subs']`: relative prop name → value, in Synapse's order.
    pub subs: Vec<(String, Value)>,
    /// `info['adds']`: nodes to add along with this value: form name and that node's norm.
    pub adds: Vec<(String, Norm)>,
}

impl Norm {
    /// A norm with no subs and no adds.
    pub fn plain(valu: impl Into<Value>) -> Norm {
        Norm {
            valu: valu.into(),
            subs: Vec::new(),
            adds: Vec::new(),
        }
    }

    /// A norm with subs.
    pub fn with_subs(valu: impl Into<Value>, subs: Vec<(String, Value)>) -> Norm {
        Norm {
            valu: valu.into(),
            subs,
            adds: Vec::new(),
        }
    }

    /// A sub by name.
    pub fn sub(&self, name: &str) -> Option<&Value> {
        self.subs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// One index operation of a lift, Synapse's `(cmpr, valu, stortype)`: `('=', norm, st)`,
/// `('range=', (min, max), st)` (inclusive), `('^=', prefix, st)`, `('~=', regex, st)`,
/// `('@=', (tick, tock), st)`, `('<', norm, st)` and friends; inet:fqdn also has
/// `('=', '*.suffix', st)`, `('=', '*suffix', st)` and `('=', '*', st)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorCmpr {
    /// The comparator the layer applies.
    pub cmpr: String,
    /// Its normalized operand.
    pub valu: Value,
    /// The stortype of the index to scan.
    pub stortype: u16,
}

/// A reference to a type with extra options, as props and comp fields declare them:
/// `('inet:fqdn', {})` or `('str', {'lower': True})`. Resolved on first use.
#[derive(Debug)]
pub struct TypeRef {
    /// The named type.
    pub name: String,
    /// Options layered over the named type's (an empty map for none).
    pub opts: Value,
    resolved: OnceLock<Arc<Type>>,
}

impl Clone for TypeRef {
    fn clone(&self) -> Self {
        TypeRef::new(&self.name, self.opts.clone())
    }
}

impl TypeRef {
    /// A reference to `name` with `opts`.
    pub fn new(name: &str, opts: Value) -> TypeRef {
        TypeRef {
            name: name.to_string(),
            opts,
            resolved: OnceLock::new(),
        }
    }

    /// Read `name` or `(name, opts)` from model data.
    pub fn from_value(v: &Value) -> SynResult<TypeRef> {
        match v {
            Value::Str(name) => Ok(TypeRef::new(name, Value::Map(Vec::new()))),
            Value::Array(pair) => match pair.as_slice() {
                [Value::Str(name), opts @ Value::Map(_)] => Ok(TypeRef::new(name, opts.clone())),
                [Value::Str(name), Value::Nil] => Ok(TypeRef::new(name, Value::Map(Vec::new()))),
                [Value::Str(name), Value::Array(a)] if a.is_empty() => {
                    Ok(TypeRef::new(name, Value::Map(Vec::new())))
                }
                _ => Err(SynErr::new(
                    "BadTypeDef",
                    format!("bad type reference: {v}"),
                )),
            },
            _ => Err(SynErr::new(
                "BadTypeDef",
                format!("bad type reference: {v}"),
            )),
        }
    }

    /// `(name, opts)` as the model data writes it.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![Value::Str(self.name.clone()), self.opts.clone()])
    }

    /// The type this refers to, with its options applied.
    pub fn get(&self, model: &Model) -> SynResult<&Arc<Type>> {
        if let Some(t) = self.resolved.get() {
            return Ok(t);
        }
        let base = model.typ(&self.name).ok_or_else(|| {
            SynErr::new("NoSuchType", format!("No type named {}.", self.name))
                .with("name", self.name.as_str())
        })?;
        let typ = if is_empty_map(&self.opts) {
            base.clone()
        } else {
            Arc::new(base.clone_with(&self.opts, model.types())?)
        };
        Ok(self.resolved.get_or_init(|| typ))
    }
}

fn is_empty_map(v: &Value) -> bool {
    match v {
        Value::Map(m) => m.is_empty(),
        Value::Nil => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `dict(a); d.update(b)`: options layered in Python's dict order.
pub(crate) fn merge_opts(base: &Value, over: &Value) -> Value {
    let mut out: Vec<(Value, Value)> = base.as_map().map(<[_]>::to_vec).unwrap_or_default();
    for (k, v) in over.as_map().unwrap_or(&[]) {
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    Value::Map(out)
}

/// A type of the data model.
#[derive(Debug)]
pub struct Type {
    /// The type name (`inet:ipv4`, `inet:asn`, `int`).
    pub name: String,
    /// The Python class that implements it (`synapse.lib.types.Int`).
    pub ctor: String,
    /// The full options (the ctor's defaults with every extension's options layered on).
    pub opts: Value,
    /// Type info without doc strings: `bases`, `interfaces`, `template`, ...
    pub info: Value,
    /// The index layout of its values.
    pub stortype: u16,
    pub(crate) imp: norm::Impl,
}

impl Type {
    /// Build a type from its parts; `ctor` picks the normalizer, `opts` (complete, defaults
    /// included) configure it. `types` are the model's types so far, for an array's element.
    pub fn new(
        name: &str,
        ctor: &str,
        opts: Value,
        info: Value,
        types: &TypeMap,
    ) -> SynResult<Type> {
        let imp = norm::Impl::build(name, ctor, &opts)?;
        let stortype = match &imp {
            norm::Impl::Array(spec) => {
                let elem = types.get(&spec.elem.name).ok_or_else(|| {
                    SynErr::new(
                        "BadTypeDef",
                        format!(
                            "Array type ({name}) based on unknown type: {}.",
                            spec.elem.name
                        ),
                    )
                })?;
                let elem_st = if is_empty_map(&spec.elem.opts) {
                    elem.stortype
                } else {
                    elem.clone_with(&spec.elem.opts, types)?.stortype
                };
                if elem_st & stortype::ARRAY != 0 {
                    return Err(SynErr::new(
                        "BadTypeDef",
                        "Array type of array values is not (yet) supported.",
                    ));
                }
                stortype::ARRAY | elem_st
            }
            norm::Impl::Unsupported => norm::unsupported_stortype(ctor)
                .or_else(|| {
                    info.get("stortype")
                        .and_then(Value::as_i64)
                        .map(|s| s as u16)
                })
                .unwrap_or(0),
            other => other.stortype(),
        };
        Ok(Type {
            name: name.to_string(),
            ctor: ctor.to_string(),
            opts,
            info,
            stortype,
            imp,
        })
    }

    /// This type with more options (Python's `Type.clone(opts)`), as a prop declares it.
    pub fn clone_with(&self, opts: &Value, types: &TypeMap) -> SynResult<Type> {
        Type::new(
            &self.name,
            &self.ctor,
            merge_opts(&self.opts, opts),
            self.info.clone(),
            types,
        )
    }

    /// A new type `name` extending this one (Python's `Type.extend`): options layered on, info
    /// inherited with this type appended to `bases`.
    pub fn extend(
        &self,
        name: &str,
        opts: &Value,
        info: &Value,
        types: &TypeMap,
    ) -> SynResult<Type> {
        let mut bases: Vec<Value> = self
            .info
            .get("bases")
            .and_then(Value::as_array)
            .map(<[Value]>::to_vec)
            .unwrap_or_else(|| vec![Value::from("base")]);
        bases.push(Value::Str(self.name.clone()));
        let mut newinfo = merge_opts(&self.info, info);
        if let Value::Map(m) = &mut newinfo {
            match m.iter_mut().find(|(k, _)| k.as_str() == Some("bases")) {
                Some(slot) => slot.1 = Value::Array(bases),
                None => m.push((Value::from("bases"), Value::Array(bases))),
            }
        }
        Type::new(
            name,
            &self.ctor,
            merge_opts(&self.opts, opts),
            newinfo,
            types,
        )
    }

    /// The index layout of this type's values.
    pub fn stortype(&self) -> u16 {
        self.stortype
    }

    /// Whether this is an array type.
    pub fn is_array(&self) -> bool {
        self.stortype & stortype::ARRAY != 0
    }

    /// The element type of an array type.
    pub fn array_elem(&self, model: &Model) -> Option<Arc<Type>> {
        match &self.imp {
            norm::Impl::Array(a) => a.elem.get(model).ok().cloned(),
            _ => None,
        }
    }

    /// The name of the last of this type's bases (`int` for inet:asn), as getModelDefs shows it.
    pub fn base_name(&self) -> String {
        self.info
            .get("bases")
            .and_then(Value::as_array)
            .and_then(|b| b.last())
            .and_then(Value::as_str)
            .unwrap_or("base")
            .to_string()
    }

    /// Whether the model marks this type deprecated.
    pub fn deprecated(&self) -> bool {
        self.info
            .get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Normalize a value: Python Synapse's `Type.norm(valu)`.
    pub fn norm(&self, model: &Model, valu: &Value) -> SynResult<Norm> {
        norm::norm(self, model, valu)
    }

    /// The display form of a normalized value: Python Synapse's `Type.repr(norm)`.
    pub fn repr(&self, model: &Model, norm: &Value) -> SynResult<Value> {
        norm::repr(self, model, norm)
    }

    /// The index operations for lifting by `cmpr valu`: Python Synapse's `getStorCmprs`.
    /// `!=` and comparators a type lacks give `NoSuchCmpr`.
    pub fn stor_cmprs(&self, model: &Model, cmpr: &str, valu: &Value) -> SynResult<Vec<StorCmpr>> {
        norm::stor_cmprs(self, model, cmpr, valu)
    }

    /// `getModelDict()['types'][name]`: `{info, opts, stortype}`.
    pub fn pack(&self) -> Value {
        Value::map([
            ("info", self.info.clone()),
            ("opts", self.opts.clone()),
            ("stortype", Value::from(self.stortype as i64)),
        ])
    }

    /// `(name, (base, opts), info)` with `info['stortype']`, as getModelDefs lists types.
    pub fn typedef(&self) -> Value {
        let info = merge_opts(
            &self.info,
            &Value::map([("stortype", Value::from(self.stortype as i64))]),
        );
        Value::Array(vec![
            Value::Str(self.name.clone()),
            Value::Array(vec![Value::Str(self.base_name()), self.opts.clone()]),
            info,
        ])
    }

    /// `(name, ctor, opts, info)`, as getModelDefs lists ctors.
    pub fn ctordef(&self) -> Value {
        Value::Array(vec![
            Value::Str(self.name.clone()),
            Value::Str(self.ctor.clone()),
            self.opts.clone(),
            self.info.clone(),
        ])
    }

    /// A `BadTypeValu` naming this type.
    pub(crate) fn bad(&self, mesg: impl Into<String>) -> SynErr {
        SynErr::new("BadTypeValu", mesg).with("name", self.name.as_str())
    }
}

/// The ctors that this crate implements; the model's others still load (see the module doc).
pub fn implemented_ctors() -> Vec<&'static str> {
    norm::IMPLEMENTED.to_vec()
}

/// Resolve the ctor of each type by walking its `bases` to a ctor name.
pub(crate) fn ctor_of(info: &Value, ctors: &HashMap<String, String>) -> Option<String> {
    info.get("bases")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_str)
        .find_map(|b| ctors.get(b).cloned())
}
