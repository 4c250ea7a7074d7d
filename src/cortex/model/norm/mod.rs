//! Normalizers, keyed by ctor (the Python class of a type). [`Impl::build`] reads a type's
//! options once; [`norm`], [`repr`] and [`stor_cmprs`] dispatch on the result. Each family
//! lives in its own file: [`basic`] (int, float, bool, str, hex, guid, loc, tags, taxonomies),
//! [`time`] (time, ival, duration), [`compound`] (comp, array, ndef, edges, range, data),
//! [`inet`], [`files`] and [`misc`] (phones, IMEI/IMSI, lat/long, semver).

pub(crate) mod basic;
pub(crate) mod compound;
pub(crate) mod files;
pub(crate) mod inet;
pub(crate) mod misc;
pub(crate) mod time;

use super::Model;
use super::py;
use super::types::{Norm, StorCmpr, Type, TypeRef};
use crate::cortex::edits::stortype as st;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// The ctors with a normalizer here.
pub(crate) const IMPLEMENTED: &[&str] = &[
    "synapse.lib.types.Int",
    "synapse.lib.types.Float",
    "synapse.lib.types.Str",
    "synapse.lib.types.Hex",
    "synapse.lib.types.Bool",
    "synapse.lib.types.Time",
    "synapse.lib.types.Duration",
    "synapse.lib.types.Ival",
    "synapse.lib.types.Guid",
    "synapse.lib.types.TagPart",
    "synapse.lib.types.Tag",
    "synapse.lib.types.Comp",
    "synapse.lib.types.Loc",
    "synapse.lib.types.Ndef",
    "synapse.lib.types.Array",
    "synapse.lib.types.Edge",
    "synapse.lib.types.TimeEdge",
    "synapse.lib.types.Data",
    "synapse.lib.types.NodeProp",
    "synapse.lib.types.Range",
    "synapse.lib.types.Taxon",
    "synapse.lib.types.Taxonomy",
    "synapse.lib.types.Velocity",
    "synapse.models.files.FileBytes",
    "synapse.models.files.FileBase",
    "synapse.models.files.FilePath",
    "synapse.models.geospace.LatLong",
    "synapse.models.telco.Imei",
    "synapse.models.telco.Imsi",
    "synapse.models.telco.Phone",
    "synapse.models.inet.Addr",
    "synapse.models.inet.Cidr4",
    "synapse.models.inet.Cidr6",
    "synapse.models.inet.Email",
    "synapse.models.inet.Fqdn",
    "synapse.models.inet.IPv4",
    "synapse.models.inet.IPv4Range",
    "synapse.models.inet.IPv6",
    "synapse.models.inet.IPv6Range",
    "synapse.models.inet.Url",
    "synapse.models.inet.HttpCookie",
];

/// Options of Synapse's int types.
#[derive(Debug)]
pub(crate) struct IntSpec {
    pub size: u32,
    pub signed: bool,
    pub min: i128,
    pub max: i128,
    /// `(value, name)` pairs.
    pub enums: Vec<(i128, String)>,
    pub enums_strict: bool,
}

/// Options of Synapse's str type.
#[derive(Debug)]
pub(crate) struct StrSpec {
    pub lower: bool,
    pub strip: bool,
    pub onespace: bool,
    pub replace: Vec<(String, String)>,
    pub enums: Option<Vec<String>>,
    pub regex: Option<basic::PyRegex>,
}

/// An array's element type and options.
#[derive(Debug)]
pub(crate) struct ArraySpec {
    pub elem: TypeRef,
    pub uniq: bool,
    pub sorted: bool,
    pub split: Option<String>,
}

/// The normalizer a ctor selects, with its options read.
#[derive(Debug)]
pub(crate) enum Impl {
    Int(IntSpec),
    Float {
        min: Option<f64>,
        max: Option<f64>,
        min_valid: bool,
        max_valid: bool,
    },
    Bool,
    Str(StrSpec),
    Hex {
        size: usize,
        zeropad: usize,
    },
    Guid,
    Loc,
    Tag,
    TagPart,
    Taxon,
    Taxonomy,
    Time {
        ismin: bool,
        ismax: bool,
    },
    Ival,
    Duration,
    Velocity {
        relative: bool,
    },
    Comp {
        fields: Vec<(String, TypeRef)>,
        sepr: Option<String>,
    },
    Array(ArraySpec),
    Ndef {
        forms: Option<Vec<String>>,
        ifaces: Option<Vec<String>>,
    },
    Edge {
        n1forms: Option<Vec<String>>,
        n2forms: Option<Vec<String>>,
        timed: bool,
    },
    Data,
    NodeProp,
    Range(TypeRef),
    Ipv4,
    Ipv6,
    Cidr4,
    Cidr6,
    Fqdn,
    Email,
    Url,
    Addr {
        defport: Option<i128>,
        defproto: String,
    },
    HttpCookie,
    Ipv4Range,
    Ipv6Range,
    FileBytes,
    FileBase,
    FilePath,
    Phone,
    Imei(IntSpec),
    Imsi(IntSpec),
    LatLong,
    /// A ctor without a normalizer here; norming it is a `NoSuchImpl` error.
    Unsupported,
}

/// An option that is set (present and not None).
fn opt<'a>(opts: &'a Value, key: &str) -> Option<&'a Value> {
    opts.get(key).filter(|v| !v.is_nil())
}

fn opt_bool(opts: &Value, key: &str, default: bool) -> bool {
    match opt(opts, key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Int(i)) => *i != 0,
        _ => default,
    }
}

fn opt_int(opts: &Value, key: &str) -> Option<i128> {
    match opt(opts, key)? {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i128),
        _ => None,
    }
}

fn opt_float(opts: &Value, key: &str) -> Option<f64> {
    match opt(opts, key)? {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn opt_str(opts: &Value, key: &str) -> Option<String> {
    opt(opts, key).and_then(Value::as_str).map(str::to_string)
}

fn opt_strs(opts: &Value, key: &str) -> Option<Vec<String>> {
    let items = opt(opts, key)?.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

fn bad_def(name: &str, mesg: impl Into<String>) -> SynErr {
    SynErr::new("BadTypeDef", mesg).with("name", name)
}

impl IntSpec {
    fn build(name: &str, opts: &Value, force_u64: bool) -> SynResult<IntSpec> {
        let (size, signed) = if force_u64 {
            (8, false)
        } else {
            (
                opt_int(opts, "size").unwrap_or(8) as u32,
                opt_bool(opts, "signed", true),
            )
        };
        if ![1, 2, 4, 8, 16].contains(&size) {
            return Err(bad_def(name, format!("Invalid integer size ({size})")));
        }
        let bits = size * 8;
        let (minmin, maxmax) = if signed {
            (-(1i128 << (bits - 1)), ((1u128 << (bits - 1)) - 1) as i128)
        } else {
            (
                0,
                if bits == 128 {
                    i128::MAX
                } else {
                    (1i128 << bits) - 1
                },
            )
        };
        let min = opt_int(opts, "min").unwrap_or(minmin);
        let max = opt_int(opts, "max").unwrap_or(maxmax);
        if min < minmin || max > maxmax || max < min {
            return Err(bad_def(name, format!("bad int bounds for {name}")));
        }
        let mut enums = Vec::new();
        for pair in opt(opts, "enums").and_then(Value::as_array).unwrap_or(&[]) {
            match pair.as_array() {
                Some([Value::Int(v), Value::Str(n)]) => enums.push((*v, n.clone())),
                _ => return Err(bad_def(name, format!("bad enum {pair}"))),
            }
        }
        Ok(IntSpec {
            size,
            signed,
            min,
            max,
            enums,
            enums_strict: opt_bool(opts, "enums:strict", true),
        })
    }

    fn stortype(&self) -> u16 {
        match (self.size, self.signed) {
            (1, true) => st::I8,
            (2, true) => st::I16,
            (4, true) => st::I32,
            (8, true) => st::I64,
            (16, true) => st::I128,
            (1, false) => st::U8,
            (2, false) => st::U16,
            (4, false) => st::U32,
            (16, false) => st::U128,
            _ => st::U64,
        }
    }
}

impl StrSpec {
    fn build(name: &str, opts: &Value) -> SynResult<StrSpec> {
        let mut replace = Vec::new();
        for pair in opt(opts, "replace")
            .and_then(Value::as_array)
            .unwrap_or(&[])
        {
            match pair.as_array() {
                Some([Value::Str(a), Value::Str(b)]) => replace.push((a.clone(), b.clone())),
                _ => return Err(bad_def(name, format!("bad replace option {pair}"))),
            }
        }
        Ok(StrSpec {
            lower: opt_bool(opts, "lower", false),
            strip: opt_bool(opts, "strip", false),
            onespace: opt_bool(opts, "onespace", false),
            replace,
            enums: opt_str(opts, "enums").map(|e| e.split(',').map(str::to_string).collect()),
            regex: opt_str(opts, "regex").map(basic::PyRegex::new),
        })
    }
}

impl Impl {
    /// Read the options of a type implemented by `ctor`.
    pub(crate) fn build(name: &str, ctor: &str, opts: &Value) -> SynResult<Impl> {
        let short = ctor.rsplit('.').next().unwrap_or(ctor);
        let module = ctor.rsplit_once('.').map(|x| x.0).unwrap_or("");
        let imp = match (module, short) {
            ("synapse.lib.types", "Int") => Impl::Int(IntSpec::build(name, opts, false)?),
            ("synapse.lib.types", "Float") => Impl::Float {
                min: opt_float(opts, "min"),
                max: opt_float(opts, "max"),
                min_valid: opt_bool(opts, "minisvalid", true),
                max_valid: opt_bool(opts, "maxisvalid", true),
            },
            ("synapse.lib.types", "Bool") => Impl::Bool,
            ("synapse.lib.types", "Str") => Impl::Str(StrSpec::build(name, opts)?),
            ("synapse.lib.types", "Hex") => {
                let size = opt_int(opts, "size").unwrap_or(0);
                let zeropad = match opt(opts, "zeropad") {
                    Some(Value::Bool(true)) => size,
                    _ => opt_int(opts, "zeropad").unwrap_or(0),
                };
                if size < 0 || size % 2 != 0 || zeropad < 0 || zeropad % 2 != 0 {
                    return Err(bad_def(name, "Hex size and zeropad must be even and >= 0"));
                }
                let zeropad = if size > 0 { zeropad.min(size) } else { zeropad };
                Impl::Hex {
                    size: size as usize,
                    zeropad: zeropad as usize,
                }
            }
            ("synapse.lib.types", "Guid") => Impl::Guid,
            ("synapse.lib.types", "Loc") => Impl::Loc,
            ("synapse.lib.types", "Tag") => Impl::Tag,
            ("synapse.lib.types", "TagPart") => Impl::TagPart,
            ("synapse.lib.types", "Taxon") => Impl::Taxon,
            ("synapse.lib.types", "Taxonomy") => Impl::Taxonomy,
            ("synapse.lib.types", "Time") => Impl::Time {
                ismin: opt_bool(opts, "ismin", false),
                ismax: opt_bool(opts, "ismax", false),
            },
            ("synapse.lib.types", "Ival") => Impl::Ival,
            ("synapse.lib.types", "Duration") => Impl::Duration,
            ("synapse.lib.types", "Velocity") => Impl::Velocity {
                relative: opt_bool(opts, "relative", false),
            },
            ("synapse.lib.types", "Comp") => {
                let mut fields = Vec::new();
                for f in opt(opts, "fields").and_then(Value::as_array).unwrap_or(&[]) {
                    match f.as_array() {
                        Some([Value::Str(fname), tref]) => {
                            fields.push((fname.clone(), TypeRef::from_value(tref)?))
                        }
                        _ => return Err(bad_def(name, format!("bad comp field {f}"))),
                    }
                }
                Impl::Comp {
                    fields,
                    sepr: opt_str(opts, "sepr"),
                }
            }
            ("synapse.lib.types", "Array") => {
                let elem = opt_str(opts, "type")
                    .ok_or_else(|| bad_def(name, "Array type requires type= option."))?;
                let typeopts = opt(opts, "typeopts")
                    .cloned()
                    .unwrap_or(Value::Map(Vec::new()));
                Impl::Array(ArraySpec {
                    elem: TypeRef::new(&elem, typeopts),
                    uniq: opt_bool(opts, "uniq", false),
                    sorted: opt_bool(opts, "sorted", false),
                    split: opt_str(opts, "split"),
                })
            }
            ("synapse.lib.types", "Ndef") => Impl::Ndef {
                forms: opt_strs(opts, "forms"),
                ifaces: opt_strs(opts, "interfaces"),
            },
            ("synapse.lib.types", "Edge") | ("synapse.lib.types", "TimeEdge") => Impl::Edge {
                n1forms: opt_strs(opts, "n1:forms"),
                n2forms: opt_strs(opts, "n2:forms"),
                timed: short == "TimeEdge",
            },
            ("synapse.lib.types", "Data") => Impl::Data,
            ("synapse.lib.types", "NodeProp") => Impl::NodeProp,
            ("synapse.lib.types", "Range") => match opt(opts, "type") {
                Some(t) => Impl::Range(TypeRef::from_value(t)?),
                None => return Err(bad_def(name, "Range type requires type= option.")),
            },
            ("synapse.models.inet", "IPv4") => Impl::Ipv4,
            ("synapse.models.inet", "IPv6") => Impl::Ipv6,
            ("synapse.models.inet", "Cidr4") => Impl::Cidr4,
            ("synapse.models.inet", "Cidr6") => Impl::Cidr6,
            ("synapse.models.inet", "Fqdn") => Impl::Fqdn,
            ("synapse.models.inet", "Email") => Impl::Email,
            ("synapse.models.inet", "Url") => Impl::Url,
            ("synapse.models.inet", "Addr") => Impl::Addr {
                defport: opt_int(opts, "defport"),
                defproto: opt_str(opts, "defproto").unwrap_or_else(|| "tcp".into()),
            },
            ("synapse.models.inet", "HttpCookie") => Impl::HttpCookie,
            ("synapse.models.inet", "IPv4Range") => Impl::Ipv4Range,
            ("synapse.models.inet", "IPv6Range") => Impl::Ipv6Range,
            ("synapse.models.files", "FileBytes") => Impl::FileBytes,
            ("synapse.models.files", "FileBase") => Impl::FileBase,
            ("synapse.models.files", "FilePath") => Impl::FilePath,
            ("synapse.models.telco", "Phone") => Impl::Phone,
            ("synapse.models.telco", "Imei") => Impl::Imei(IntSpec::build(name, opts, true)?),
            ("synapse.models.telco", "Imsi") => Impl::Imsi(IntSpec::build(name, opts, true)?),
            ("synapse.models.geospace", "LatLong") => Impl::LatLong,
            _ => Impl::Unsupported,
        };
        Ok(imp)
    }

    /// The stortype of values of this type (arrays and unsupported ctors are decided by
    /// [`Type::new`]).
    pub(crate) fn stortype(&self) -> u16 {
        match self {
            Impl::Int(s) | Impl::Imei(s) | Impl::Imsi(s) => s.stortype(),
            Impl::Float { .. } => st::FLOAT64,
            Impl::Bool => st::U8,
            Impl::Guid => st::GUID,
            Impl::Loc => st::LOC,
            Impl::Time { ismin: true, .. } => st::MINTIME,
            Impl::Time { ismax: true, .. } => st::MAXTIME,
            Impl::Time { .. } => st::TIME,
            Impl::Ival => st::IVAL,
            Impl::Duration => st::U64,
            Impl::Velocity { .. } => st::I64,
            Impl::Comp { .. }
            | Impl::Edge { .. }
            | Impl::Data
            | Impl::NodeProp
            | Impl::Range(_)
            | Impl::Ipv4Range
            | Impl::Ipv6Range => st::MSGP,
            Impl::Array(_) => st::ARRAY,
            Impl::Ndef { .. } => st::NDEF,
            Impl::Ipv4 => st::U32,
            Impl::Ipv6 => st::IPV6,
            Impl::Fqdn => st::FQDN,
            Impl::LatLong => st::LATLONG,
            _ => st::UTF8,
        }
    }
}

/// The stortypes of the ctors without a normalizer here (their Python classes' `stortype`).
pub(crate) fn unsupported_stortype(ctor: &str) -> Option<u16> {
    Some(match ctor.rsplit('.').next()? {
        "HugeNum" => st::HUGENUM,
        "Dist" | "Area" => st::I64,
        "SynUser" | "SynRole" => st::GUID,
        "DnsName" | "CvssV2" | "CvssV3" | "Cpe23Str" | "Cpe22Str" | "Rfc2822Addr" => st::UTF8,
        "SemVer" => st::I64,
        _ => return None,
    })
}

/// Str's `_opt_defs`.
fn str_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("enums", Value::Nil),
        ("regex", Value::Nil),
        ("lower", Value::Bool(false)),
        ("strip", Value::Bool(false)),
        ("replace", Value::Array(Vec::new())),
        ("onespace", Value::Bool(false)),
        ("globsuffix", Value::Bool(false)),
    ]
}

/// Int's `_opt_defs`.
fn int_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("size", Value::Int(8)),
        ("signed", Value::Bool(true)),
        ("enums:strict", Value::Bool(true)),
        ("fmt", Value::from("%d")),
        ("min", Value::Nil),
        ("max", Value::Nil),
        ("ismin", Value::Bool(false)),
        ("ismax", Value::Bool(false)),
    ]
}

/// The complete options of a ctor type: its Python class's defaults (`_opt_defs`), the
/// declared options over them, and what the class's init sets regardless.
pub(crate) fn ctor_opts(ctor: &str, declared: &Value) -> Value {
    let class = ctor.rsplit('.').next().unwrap_or(ctor);
    let module = ctor.rsplit_once('.').map(|x| x.0).unwrap_or("");
    let strish = matches!(
        class,
        "Str"
            | "Taxon"
            | "Taxonomy"
            | "Tag"
            | "TagPart"
            | "Addr"
            | "Cidr4"
            | "Cidr6"
            | "Email"
            | "Url"
            | "HttpCookie"
            | "Rfc2822Addr"
            | "FileBytes"
            | "FileBase"
            | "FilePath"
            | "Phone"
            | "DnsName"
            | "CvssV2"
            | "CvssV3"
            | "Cpe23Str"
            | "Cpe22Str"
    );
    let intish = matches!(class, "Int" | "Imei" | "Imsi" | "SemVer" | "Dist" | "Area");
    let defaults: Vec<(&str, Value)> = if strish {
        str_defaults()
    } else if intish {
        int_defaults()
    } else {
        match (module, class) {
            (_, "Float") => vec![
                ("fmt", Value::from("%f")),
                ("min", Value::Nil),
                ("minisvalid", Value::Bool(true)),
                ("max", Value::Nil),
                ("maxisvalid", Value::Bool(true)),
            ],
            (_, "Hex") => vec![("size", Value::Int(0)), ("zeropad", Value::Int(0))],
            (_, "Time") => vec![("ismin", Value::Bool(false)), ("ismax", Value::Bool(false))],
            (_, "Duration") => vec![("signed", Value::Bool(false))],
            (_, "Velocity") => vec![("relative", Value::Bool(false))],
            (_, "HugeNum") => vec![("units", Value::Nil), ("modulo", Value::Nil)],
            (_, "Range") | (_, "IPv4Range") | (_, "IPv6Range") => vec![("type", Value::Nil)],
            _ => Vec::new(),
        }
    };
    let mut opts = super::types::merge_opts(&Value::map(defaults), declared);
    let forced: Vec<(&str, Value)> = match class {
        "Phone" => vec![("globsuffix", Value::Bool(true))],
        "Imei" | "Imsi" => vec![("size", Value::Int(8)), ("signed", Value::Bool(false))],
        "IPv4Range" => vec![(
            "type",
            Value::Array(vec!["inet:ipv4".into(), Value::Map(Vec::new())]),
        )],
        "IPv6Range" => vec![(
            "type",
            Value::Array(vec!["inet:ipv6".into(), Value::Map(Vec::new())]),
        )],
        _ => Vec::new(),
    };
    if !forced.is_empty() {
        opts = super::types::merge_opts(&opts, &Value::map(forced));
    }
    opts
}

/// Python's type name of a value, for `no norm for type: <class '...'>.`.
pub(crate) fn py_type_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        other => other.type_name(),
    }
}

/// `BadTypeValu: no norm for type: <class 'dict'>.`
pub(crate) fn no_norm(t: &Type, v: &Value) -> SynErr {
    t.bad(format!("no norm for type: <class '{}'>.", py_type_name(v)))
}

/// What a Str subclass norms for int, bool and float input: `str(valu)` (bools lowered).
pub(crate) fn str_input(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_string()),
        Value::Float(f) => Some(py::float_str(*f)),
        _ => None,
    }
}

/// Python's `str(SynErr)`: `Name: key=repr(value) ...` with the keys sorted, as messages of
/// types that wrap another type's error show it.
pub(crate) fn py_err_str(e: &SynErr) -> String {
    let mut items: Vec<&(String, Value)> = e.info.iter().collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let shown: Vec<String> = items
        .iter()
        .map(|(k, v)| format!("{k}={}", py_value_repr(v)))
        .collect();
    format!("{}: {}", e.name, shown.join(" "))
}

/// Python's `repr()` of a value (arrays show as lists, as storm passes them).
pub(crate) fn py_value_repr(v: &Value) -> String {
    match v {
        Value::Str(s) => py::repr_str(s),
        Value::Nil => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Float(f) => py::float_repr(*f),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_value_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Map(pairs) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", py_value_repr(k), py_value_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Int(i) => i.to_string(),
        Value::Bin(b) => format!(
            "b'{}'",
            b.iter().map(|c| format!("\\x{c:02x}")).collect::<String>()
        ),
        other => other.to_string(),
    }
}

fn unsupported(t: &Type) -> SynErr {
    SynErr::new(
        "NoSuchImpl",
        format!(
            "No normalizer for type {} (ctor {}) in this cortex.",
            t.name, t.ctor
        ),
    )
    .with("name", t.name.as_str())
    .with("ctor", t.ctor.as_str())
}

/// Normalize `v` as type `t`.
pub(crate) fn norm(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    match &t.imp {
        Impl::Int(s) => basic::norm_int(t, s, v),
        Impl::Float {
            min,
            max,
            min_valid,
            max_valid,
        } => basic::norm_float(t, (*min, *min_valid), (*max, *max_valid), v),
        Impl::Bool => basic::norm_bool(t, v),
        Impl::Str(s) => basic::norm_str(t, s, v),
        Impl::Hex { size, zeropad } => basic::norm_hex(t, *size, *zeropad, v),
        Impl::Guid => basic::norm_guid(t, v),
        Impl::Loc => basic::norm_loc(t, v),
        Impl::Tag => basic::norm_tag(t, v),
        Impl::TagPart => basic::norm_tagpart(t, v).map(Norm::plain),
        Impl::Taxon => basic::norm_taxon(t, v).map(Norm::plain),
        Impl::Taxonomy => basic::norm_taxonomy(t, v),
        Impl::Time { .. } => time::norm_time(t, v),
        Impl::Ival => time::norm_ival(t, v),
        Impl::Duration => time::norm_duration(t, v),
        Impl::Velocity { relative } => misc::norm_velocity(t, *relative, v),
        Impl::Comp { fields, sepr } => compound::norm_comp(t, m, fields, sepr.as_deref(), v),
        Impl::Array(a) => compound::norm_array(t, m, a, v),
        Impl::Ndef { forms, ifaces } => compound::norm_ndef(t, m, forms, ifaces, v),
        Impl::Edge {
            n1forms,
            n2forms,
            timed,
        } => compound::norm_edge(t, m, n1forms, n2forms, *timed, v),
        Impl::Data => compound::norm_data(t, v),
        Impl::NodeProp => compound::norm_nodeprop(t, m, v),
        Impl::Range(sub) => compound::norm_range(t, m, sub, v),
        Impl::Ipv4 => inet::norm_ipv4(t, v),
        Impl::Ipv6 => inet::norm_ipv6(t, v),
        Impl::Cidr4 => inet::norm_cidr4(t, m, v),
        Impl::Cidr6 => inet::norm_cidr6(t, v),
        Impl::Fqdn => inet::norm_fqdn(t, v),
        Impl::Email => inet::norm_email(t, m, v),
        Impl::Url => inet::norm_url(t, m, v),
        Impl::Addr { defport, defproto } => inet::norm_addr(t, m, *defport, defproto, v),
        Impl::HttpCookie => inet::norm_http_cookie(t, v),
        Impl::Ipv4Range => inet::norm_ipv4_range(t, m, v),
        Impl::Ipv6Range => inet::norm_ipv6_range(t, m, v),
        Impl::FileBytes => files::norm_file_bytes(t, v),
        Impl::FileBase => files::norm_file_base(t, v),
        Impl::FilePath => files::norm_file_path(t, v),
        Impl::Phone => misc::norm_phone(t, v),
        Impl::Imei(s) => misc::norm_imei(t, s, v),
        Impl::Imsi(s) => misc::norm_imsi(t, s, v),
        Impl::LatLong => misc::norm_latlong(t, m, v),
        Impl::Unsupported => Err(unsupported(t)),
    }
}

/// The display form of a normalized value of type `t`.
pub(crate) fn repr(t: &Type, m: &Model, v: &Value) -> SynResult<Value> {
    let text = |s: String| Ok(Value::Str(s));
    match (&t.imp, v) {
        (Impl::Int(s), Value::Int(i)) => match s.enums.iter().find(|(n, _)| n == i) {
            Some((_, name)) => text(name.clone()),
            None => text(i.to_string()),
        },
        (Impl::Bool, Value::Int(i)) => text(if *i != 0 { "true" } else { "false" }.into()),
        (Impl::Float { .. }, Value::Float(f)) => text(py::float_repr(*f)),
        (Impl::Time { .. }, Value::Int(i)) => text(time::repr_time(*i)),
        (Impl::Ival, Value::Array(a)) => match a.as_slice() {
            [Value::Int(lo), Value::Int(hi)] => Ok(Value::Array(vec![
                Value::Str(time::repr_time(*lo)),
                Value::Str(time::repr_time(*hi)),
            ])),
            _ => Err(t.bad(format!("bad ival {v}"))),
        },
        (Impl::Duration, Value::Int(i)) => text(time::repr_duration(*i)),
        (Impl::Taxonomy, Value::Str(s)) => text(s.trim_end_matches('.').to_string()),
        (Impl::Comp { fields, sepr }, Value::Array(items)) => {
            compound::repr_comp(m, fields, sepr.as_deref(), items)
        }
        (Impl::Array(a), Value::Array(items)) => compound::repr_array(m, a, items),
        (Impl::Ndef { .. }, _) => compound::repr_ndef(m, v),
        (Impl::Edge { .. }, Value::Array(items)) => compound::repr_edge(m, items),
        (Impl::Range(sub), Value::Array(items)) => compound::repr_range(m, sub, items),
        (Impl::Ipv4, Value::Int(i)) => text(inet::ipv4_repr(*i)),
        (Impl::Ipv4Range, Value::Array(items)) | (Impl::Ipv6Range, Value::Array(items)) => {
            let sub = if matches!(t.imp, Impl::Ipv4Range) {
                "inet:ipv4"
            } else {
                "inet:ipv6"
            };
            compound::repr_range(m, &TypeRef::new(sub, Value::Map(Vec::new())), items)
        }
        (Impl::Fqdn, Value::Str(s)) => text(inet::fqdn_repr(s)),
        (Impl::Phone, Value::Str(s)) => text(misc::phone_repr(s)),
        (Impl::LatLong, Value::Array(a)) => match a.as_slice() {
            [Value::Float(lat), Value::Float(lon)] => {
                text(format!("{},{}", py::float_repr(*lat), py::float_repr(*lon)))
            }
            _ => Err(t.bad(format!("bad latlong {v}"))),
        },
        (Impl::Unsupported, _) => Err(unsupported(t)),
        (_, Value::Str(s)) => text(s.clone()),
        (_, Value::Int(i)) => text(i.to_string()),
        (_, other) => Ok(other.clone()),
    }
}

/// The index operations for lifting by `cmpr valu` (Synapse's `Type.getStorCmprs`).
pub(crate) fn stor_cmprs(t: &Type, m: &Model, cmpr: &str, v: &Value) -> SynResult<Vec<StorCmpr>> {
    let one = |cmpr: &str, valu: Value| {
        Ok(vec![StorCmpr {
            cmpr: cmpr.to_string(),
            valu,
            stortype: t.stortype,
        }])
    };
    let no_cmpr = || {
        Err(SynErr::new(
            "NoSuchCmpr",
            format!("Type ({}) has no cmpr: \"{cmpr}\".", t.name),
        )
        .with("cmpr", cmpr)
        .with("name", t.name.as_str()))
    };
    let ordered = matches!(
        t.imp,
        Impl::Int(_)
            | Impl::Float { .. }
            | Impl::Time { .. }
            | Impl::Duration
            | Impl::Velocity { .. }
            | Impl::Ipv4
            | Impl::Ipv6
            | Impl::Imei(_)
            | Impl::Imsi(_)
    );
    let strlike = matches!(
        t.imp,
        Impl::Str(_) | Impl::Taxonomy | Impl::Taxon | Impl::Tag | Impl::TagPart
    ) || (t.stortype == st::UTF8
        && !matches!(t.imp, Impl::Hex { .. } | Impl::Unsupported));
    match cmpr {
        "=" => special_eq(t, m, v).unwrap_or_else(|| one("=", t.norm(m, v)?.valu)),
        "?=" => Ok(stor_cmprs(t, m, "=", v).unwrap_or_default()),
        "~=" => one("~=", v.clone()),
        "in=" => {
            let items = v
                .as_array()
                .ok_or_else(|| t.bad(format!("in= needs a list, got {v}")))?;
            let mut out = Vec::new();
            for item in items {
                out.extend(stor_cmprs(t, m, "=", item)?);
            }
            Ok(out)
        }
        "range=" => range_cmpr(t, m, v),
        "<" | ">" | "<=" | ">=" if ordered => {
            if let (Impl::Time { .. }, Value::Str(s), "<" | "<=") = (&t.imp, v, cmpr) {
                let text = py::strip(s);
                if let Some(stem) = text.strip_suffix('*') {
                    let (_, tock) = time::wildrange(stem)?;
                    return one(cmpr, Value::Int(tock as i128));
                }
            }
            one(cmpr, t.norm(m, v)?.valu)
        }
        "^=" => match &t.imp {
            Impl::Guid => {
                let text = v.as_str().unwrap_or_default();
                let bytes = hex::decode(text).map_err(|_| {
                    SynErr::new(
                        "BadTypeValu",
                        format!("Invalid GUID prefix ({text}). Must be even number of hex chars."),
                    )
                })?;
                one("^=", Value::Bin(bytes))
            }
            Impl::Hex { .. } => match v {
                Value::Str(s) => one("^=", Value::Str(basic::prenorm_hex(s))),
                other => Err(t.bad(format!(
                    "Hex prefix lift values must be str, not {}.",
                    py_type_name(other)
                ))),
            },
            Impl::Loc => one("^=", t.norm(m, v)?.valu),
            Impl::Taxonomy => one("^=", Value::Str(basic::taxonomy_lift_prefix(t, v)?)),
            _ if strlike => {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| str_input(v))
                    .unwrap_or_default();
                one("^=", Value::Str(basic::norm_for_lift(&t.opts, &text)))
            }
            _ => no_cmpr(),
        },
        "@=" => match &t.imp {
            Impl::Time { .. } | Impl::Ival => match v {
                Value::Array(pair) => {
                    let (tick, tock) = time::tick_tock(t, pair)?;
                    one(
                        "@=",
                        Value::Array(vec![Value::Int(tick as i128), Value::Int(tock as i128)]),
                    )
                }
                _ if matches!(t.imp, Impl::Time { .. }) => one("=", t.norm(m, v)?.valu),
                _ => one("@=", t.norm(m, v)?.valu),
            },
            _ => no_cmpr(),
        },
        _ => no_cmpr(),
    }
}

/// `=` lifts that are not a plain norm: CIDRs and ranges of IPs, fqdn wildcards, time and
/// hex and str prefixes, loc subtrees.
fn special_eq(t: &Type, m: &Model, v: &Value) -> Option<SynResult<Vec<StorCmpr>>> {
    let text = v.as_str()?;
    let mk = |cmpr: &str, valu: Value| {
        vec![StorCmpr {
            cmpr: cmpr.to_string(),
            valu,
            stortype: t.stortype,
        }]
    };
    match &t.imp {
        Impl::Ipv4 if text.contains('/') || text.contains('-') => Some(
            inet::ipv4_lift_range(t, text)
                .map(|(lo, hi)| mk("range=", Value::Array(vec![Value::Int(lo), Value::Int(hi)]))),
        ),
        Impl::Ipv6 if text.contains('/') || text.contains('-') => Some(
            inet::ipv6_lift_range(t, text)
                .map(|(lo, hi)| mk("range=", Value::Array(vec![Value::Str(lo), Value::Str(hi)]))),
        ),
        Impl::Fqdn => inet::fqdn_lift(t, text).map(|r| r.map(|s| mk("=", Value::Str(s)))),
        Impl::Time { .. } if py::strip(text).ends_with('*') => {
            let stem = py::strip(text).trim_end_matches('*').to_string();
            Some(time::wildrange(&stem).map(|(a, b)| {
                mk(
                    "range=",
                    Value::Array(vec![Value::Int(a as i128), Value::Int(b as i128)]),
                )
            }))
        }
        Impl::Hex { .. } => {
            let pre = basic::prenorm_hex(text);
            pre.strip_suffix('*')
                .map(|p| Ok(mk("^=", Value::Str(p.to_string()))))
        }
        Impl::Loc if text.ends_with(".*") => Some(
            t.norm(m, &Value::Str(text[..text.len() - 2].to_string()))
                .map(|n| mk("^=", n.valu)),
        ),
        _ if opt_bool(&t.opts, "globsuffix", false) || matches!(t.imp, Impl::Phone) => text
            .strip_suffix('*')
            .map(|p| Ok(mk("^=", Value::Str(p.to_string())))),
        _ => None,
    }
}

fn range_cmpr(t: &Type, m: &Model, v: &Value) -> SynResult<Vec<StorCmpr>> {
    let pair = match v.as_array() {
        Some(p) if p.len() == 2 => p,
        _ if matches!(t.imp, Impl::Time { .. }) => {
            return Err(t.bad(format!("Range value must be a list: {v}")));
        }
        _ => {
            return Err(
                SynErr::new("BadCmprValu", format!("range= needs (min, max), got {v}"))
                    .with("name", t.name.as_str())
                    .with("cmpr", "range="),
            );
        }
    };
    let valu = match &t.imp {
        Impl::Time { .. } | Impl::Ival => {
            let (tick, tock) = time::tick_tock(t, pair)?;
            Value::Array(vec![Value::Int(tick as i128), Value::Int(tock as i128)])
        }
        Impl::Str(_) | Impl::Taxon | Impl::Taxonomy => Value::Array(vec![
            Value::Str(basic::norm_for_lift(
                &t.opts,
                pair[0].as_str().unwrap_or_default(),
            )),
            Value::Str(basic::norm_for_lift(
                &t.opts,
                pair[1].as_str().unwrap_or_default(),
            )),
        ]),
        _ => Value::Array(vec![t.norm(m, &pair[0])?.valu, t.norm(m, &pair[1])?.valu]),
    };
    Ok(vec![StorCmpr {
        cmpr: "range=".into(),
        valu,
        stortype: t.stortype,
    }])
}

#[cfg(test)]
mod tests;
