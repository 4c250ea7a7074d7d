//! Storm runtime values and Synapse's conversions between them (`toprim`, `tostr`, `toint`,
//! `tobool`, `torepr`).

use std::rc::Rc;

use super::number::Dec;
use crate::cortex::model::py;
use crate::cortex::view::Node;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// A value in a running storm query.
#[derive(Clone, Debug)]
pub enum Val {
    /// `$lib.null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A Python float (from stored data).
    Float(f64),
    /// A storm `Number`: an exact decimal (`(1.5)`).
    Num(Dec),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A storm list (`(1, 2)`, `$lib.list()`, `$s.split()`): prints as `['1', 2]`.
    List(Vec<Val>),
    /// A plain tuple from stored or normalized data (props, tag intervals, ndefs, packed
    /// nodes, opts vars): prints as Python shows it, `(None, 1)`.
    Tuple(Vec<Val>),
    /// A dict, in insertion order.
    Dict(Vec<(Val, Val)>),
    /// A node of the view.
    Node(Rc<Node>),
    /// A storm query object (`${ ... }`): its text.
    Query(String),
    /// `$lib` or one of its libraries: the path below `$lib`.
    Lib(Vec<String>),
    /// A method bound to a value: `$node.value`, `$lib.print`.
    Method(Box<Val>, String),
    /// A storm function defined in the query (its index in the query's definitions).
    Func(usize),
    /// The node data of a node (`$node.data`).
    NodeData(Rc<Node>),
    /// A node's path (`$path`) and the node's iden.
    Path(Rc<super::Path>, String),
    /// A view of the cortex (`$lib.view.get()`): its packed definition.
    View(Rc<Value>),
    /// A layer of the cortex (`$lib.layer.get()`): its packed definition.
    Layer(Rc<Value>),
}

impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Bool(a), Val::Int(b)) | (Val::Int(b), Val::Bool(a)) => i128::from(*a) == *b,
            (Val::Float(a), Val::Float(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Num(a), Val::Int(b)) | (Val::Int(b), Val::Num(a)) => *a == Dec::from_int(*b),
            (Val::Num(a), Val::Float(b)) | (Val::Float(b), Val::Num(a)) => {
                Dec::from_f64(*b).is_some_and(|b| *a == b)
            }
            (Val::Float(a), Val::Int(b)) | (Val::Int(b), Val::Float(a)) => *a == *b as f64,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Bytes(a), Val::Bytes(b)) => a == b,
            (Val::List(a), Val::List(b)) | (Val::Tuple(a), Val::Tuple(b)) => a == b,
            (Val::Dict(a), Val::Dict(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
            }
            (Val::Node(a), Val::Node(b)) => a.buid == b.buid,
            (Val::Query(a), Val::Query(b)) => a == b,
            (Val::Lib(a), Val::Lib(b)) => a == b,
            (Val::Func(a), Val::Func(b)) => a == b,
            (Val::View(a), Val::View(b)) | (Val::Layer(a), Val::Layer(b)) => a == b,
            _ => false,
        }
    }
}

impl From<&Value> for Val {
    fn from(v: &Value) -> Val {
        match v {
            Value::Nil => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Int(i) => Val::Int(*i),
            Value::Float(f) => Val::Float(*f),
            Value::Str(s) => Val::Str(s.clone()),
            Value::RawStr(b) => Val::Str(String::from_utf8_lossy(b).into_owned()),
            Value::Bin(b) => Val::Bytes(b.clone()),
            Value::Array(items) => Val::Tuple(items.iter().map(Val::from).collect()),
            Value::Map(pairs) => Val::Dict(
                pairs
                    .iter()
                    .map(|(k, v)| (Val::from(k), Val::from(v)))
                    .collect(),
            ),
            Value::Ext(..) => Val::Null,
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Str(s.to_string())
    }
}

/// `BadCast` with a message.
pub fn bad_cast(mesg: impl Into<String>) -> SynErr {
    SynErr::new("BadCast", mesg)
}

impl Val {
    /// Storm's type name (`$lib.vars.type`, error messages).
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Num(_) => "number",
            Val::Str(_) => "str",
            Val::Bytes(_) => "bytes",
            Val::List(_) | Val::Tuple(_) => "list",
            Val::Dict(_) => "dict",
            Val::Node(_) => "node",
            Val::Query(_) => "storm:query",
            Val::Lib(_) => "lib",
            Val::Method(..) | Val::Func(_) => "function",
            Val::NodeData(_) => "node:data",
            Val::Path(..) => "node:path",
            Val::View(_) => "view",
            Val::Layer(_) => "layer",
        }
    }

    /// Synapse's `toprim`: the plain value (a node is its primary value).
    pub fn to_prim(&self) -> Value {
        match self {
            Val::Null => Value::Nil,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => Value::Int(*i),
            Val::Float(f) => Value::Float(*f),
            Val::Num(d) => Value::Float(d.to_f64()),
            Val::Str(s) => Value::Str(s.clone()),
            Val::Bytes(b) => Value::Bin(b.clone()),
            Val::List(items) | Val::Tuple(items) => {
                Value::Array(items.iter().map(Val::to_prim).collect())
            }
            Val::Dict(pairs) => Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_prim(), v.to_prim()))
                    .collect(),
            ),
            Val::Node(n) => n.valu.clone(),
            Val::Query(text) => Value::Str(text.clone()),
            Val::View(def) | Val::Layer(def) => def.as_ref().clone(),
            Val::Lib(_) | Val::Method(..) | Val::Func(_) | Val::NodeData(_) | Val::Path(..) => {
                Value::Nil
            }
        }
    }

    /// Synapse's `tostor`: as [`Val::to_prim`], but a number becomes its string, and with
    /// `ndef` a node becomes its `(form, valu)`.
    pub fn to_stor(&self, ndef: bool) -> Value {
        match self {
            Val::Float(f) => Value::Str(py::float_repr(*f)),
            Val::Num(d) => Value::Str(d.to_str()),
            Val::List(items) | Val::Tuple(items) => {
                Value::Array(items.iter().map(|v| v.to_stor(ndef)).collect())
            }
            Val::Dict(pairs) => Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_prim(), v.to_stor(ndef)))
                    .collect(),
            ),
            Val::Node(n) if ndef => n.ndef(),
            other => other.to_prim(),
        }
    }

    /// Synapse's `tostr`: Python's `str()` (a node gives its primary repr, computed by the
    /// caller; here its value).
    pub fn to_str(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Null => "None".into(),
            Val::Bool(b) => if *b { "True" } else { "False" }.into(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => py::float_repr(*f),
            Val::Num(d) => d.to_str(),
            Val::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Val::Query(text) => text.clone(),
            Val::Node(n) => match &n.valu {
                Value::Str(s) => s.clone(),
                other => py_repr(other),
            },
            Val::Tuple(_) => py_repr(&self.to_prim()),
            other => self.to_repr_inner(other),
        }
    }

    fn to_repr_inner(&self, v: &Val) -> String {
        match v {
            Val::List(items) => {
                let inner: Vec<String> = items.iter().map(Val::repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Val::Dict(pairs) => {
                let inner: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.repr(), v.repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            Val::Lib(path) => {
                let mut parts = vec!["lib".to_string()];
                parts.extend(path.iter().cloned());
                format!("Library ${}", parts.join("."))
            }
            Val::Method(_, name) => format!("function {name}"),
            Val::Func(_) => "function".into(),
            Val::NodeData(_) => "node:data".into(),
            Val::Path(..) => "node:path".into(),
            Val::View(def) | Val::Layer(def) => py_repr(def),
            other => other.to_str(),
        }
    }

    /// Python's `str()` of the plain value (tuples and `None` as Python writes them), as a
    /// top-level `return` reports it.
    pub fn py_str(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::List(_) | Val::Tuple(_) | Val::Dict(_) | Val::Null | Val::Bool(_) => {
                py_repr(&self.to_prim())
            }
            other => other.to_str(),
        }
    }

    /// Synapse's `torepr`: how `$lib.print($x)` shows a value: `$lib.null`, `true`, a list as
    /// `['a', 1]`, a node as `Node{...}`.
    pub fn repr(&self) -> String {
        match self {
            Val::Null => "$lib.null".into(),
            Val::Bool(b) => if *b { "true" } else { "false" }.into(),
            Val::Str(s) => py::repr_str(s),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => py::float_repr(*f),
            Val::Num(d) => d.to_str(),
            Val::Bytes(b) => py_repr(&Value::Bin(b.clone())),
            Val::Node(n) => {
                let pack = n.pack_plain();
                format!("Node{{{}}}", py_repr(&pack))
            }
            Val::Query(text) => format!("storm:query: \"{text}\""),
            Val::Tuple(_) => py_repr(&self.to_prim()),
            other => self.to_repr_inner(other),
        }
    }

    /// `torepr(valu, usestr=True)`: as [`Val::repr`] but strings as they are (how format
    /// arguments show).
    pub fn repr_str(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => py::float_repr(*f),
            Val::Num(d) => d.to_str(),
            other => other.repr(),
        }
    }

    /// Synapse's `tobool` / Python truth.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Num(d) => !d.is_zero(),
            Val::Str(s) => !s.is_empty(),
            Val::Bytes(b) => !b.is_empty(),
            Val::List(items) | Val::Tuple(items) => !items.is_empty(),
            Val::Dict(pairs) => !pairs.is_empty(),
            _ => true,
        }
    }

    /// Synapse's `toint`.
    pub fn to_int(&self) -> SynResult<i128> {
        let fail = || {
            bad_cast(format!(
                "Failed to make an integer from {}.",
                py_repr(&self.to_prim())
            ))
        };
        match self {
            Val::Int(i) => Ok(*i),
            Val::Bool(b) => Ok(i128::from(*b)),
            Val::Float(f) => py::float_to_int(*f).map_err(|_| fail()),
            Val::Num(d) => d.trunc().ok_or_else(fail),
            Val::Str(s) => match py::parse_int(s, 0) {
                Ok(py::PyInt::Small(i)) => Ok(i),
                _ => Err(fail()),
            },
            Val::Node(n) => match &n.valu {
                Value::Int(i) => Ok(*i),
                _ => Err(fail()),
            },
            _ => Err(fail()),
        }
    }

    /// Synapse's `intify` (min/max commands and subquery counts): `'true'`/`'false'` as 1/0.
    pub fn intify(&self) -> SynResult<i128> {
        if let Val::Str(s) = self {
            match s.to_lowercase().as_str() {
                "true" => return Ok(1),
                "false" => return Ok(0),
                _ => {}
            }
            return match py::parse_int(&s.to_lowercase(), 0) {
                Ok(py::PyInt::Small(i)) => Ok(i),
                _ => Err(bad_cast(format!(
                    "Failed to make an integer from \"{}\".",
                    s.to_lowercase()
                ))),
            };
        }
        self.to_int().map_err(|_| {
            bad_cast(format!(
                "Failed to make an integer from \"{}\".",
                self.to_str()
            ))
        })
    }

    /// The items of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Val]> {
        match self {
            Val::List(items) | Val::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The items of an iterable value (lists, dict items, a string's characters).
    pub fn items(&self) -> SynResult<Vec<Val>> {
        match self {
            Val::Null => Ok(Vec::new()),
            Val::List(items) | Val::Tuple(items) => Ok(items.clone()),
            Val::Dict(pairs) => Ok(pairs
                .iter()
                .map(|(k, v)| Val::Tuple(vec![k.clone(), v.clone()]))
                .collect()),
            Val::Str(s) => Ok(s.chars().map(|c| Val::Str(c.to_string())).collect()),
            Val::Bytes(b) => Ok(b.iter().map(|c| Val::Int(i128::from(*c))).collect()),
            other => Err(SynErr::new(
                "StormRuntimeError",
                format!(
                    "'{}' object is not iterable: {}",
                    other.type_name(),
                    other.repr()
                ),
            )
            .with("type", other.type_name())),
        }
    }
}

impl Node {
    /// The packed node without repr or path, as `$node.pack()` and `Node{...}` show it.
    pub fn pack_plain(&self) -> Value {
        let tags = Value::map(self.tags.iter().map(|(t, i)| {
            (
                t.clone(),
                Value::Array(vec![Value::from(i.0), Value::from(i.1)]),
            )
        }));
        let props = Value::map(self.props.iter().map(|(n, v)| (n.clone(), v.clone())));
        let tagprops = Value::map(self.tagprops.iter().map(|(t, ps)| {
            (
                t.clone(),
                Value::map(ps.iter().map(|(p, v)| (p.clone(), v.clone()))),
            )
        }));
        Value::Array(vec![
            self.ndef(),
            Value::map([
                ("iden", Value::from(self.iden())),
                ("tags", tags),
                ("props", props),
                ("tagprops", tagprops),
                ("nodedata", Value::Map(Vec::new())),
            ]),
        ])
    }
}

/// Python's `repr()` of a plain value, with arrays as tuples.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Nil => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => py::float_repr(*f),
        Value::Str(s) => py::repr_str(s),
        Value::RawStr(b) => py::repr_str(&String::from_utf8_lossy(b)),
        Value::Bin(b) => {
            let mut out = String::from("b'");
            for c in b {
                match c {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    b'\t' => out.push_str("\\t"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    0x20..=0x7e => out.push(*c as char),
                    _ => out.push_str(&format!("\\x{c:02x}")),
                }
            }
            out.push('\'');
            out
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            if items.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
        Value::Map(pairs) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Ext(..) => "<ext>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs_follow_storm_print() {
        assert_eq!(Val::Null.repr(), "$lib.null");
        assert_eq!(Val::Bool(true).repr(), "true");
        assert_eq!(
            Val::List(vec![Val::from("1"), Val::Int(2), Val::from("a")]).repr(),
            "['1', 2, 'a']"
        );
        assert_eq!(
            Val::Dict(vec![(
                Val::from("a"),
                Val::List(vec![Val::Int(1), Val::Int(2)])
            )])
            .repr(),
            "{'a': [1, 2]}"
        );
        assert_eq!(Val::from("x").repr_str(), "x");
        assert_eq!(
            py_repr(&Value::Array(vec![Value::from("a"), Value::Int(1)])),
            "('a', 1)"
        );
        assert_eq!(py_repr(&Value::Array(vec![Value::Int(1)])), "(1,)");
    }

    #[test]
    fn ints_truth_and_iteration() {
        assert_eq!(Val::from("0x10").to_int().unwrap(), 16);
        assert_eq!(Val::from(" 42 ").to_int().unwrap(), 42);
        let err = Val::from("a").to_int().unwrap_err();
        assert_eq!(err.name, "BadCast");
        assert_eq!(err.mesg(), "Failed to make an integer from 'a'.");
        assert_eq!(Val::from("TRUE").intify().unwrap(), 1);
        assert!(!Val::from("").truthy());
        assert!(Val::List(vec![Val::Null]).truthy());
        assert_eq!(
            Val::Dict(vec![(Val::from("k"), Val::Int(1))])
                .items()
                .unwrap(),
            vec![Val::Tuple(vec![Val::from("k"), Val::Int(1)])]
        );
        assert_eq!(Val::Int(5).items().unwrap_err().name, "StormRuntimeError");
        // Stored data are tuples and print as Python shows them.
        let ival = Val::from(&Value::Array(vec![Value::Nil, Value::Nil]));
        assert_eq!(ival.repr(), "(None, None)");
        assert_eq!(Val::List(vec![Val::Null]).repr(), "[$lib.null]");
    }
}
