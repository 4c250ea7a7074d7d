//! Types made of other values: comp, array, ndef, edge/timeedge, nodeprop, range, data.

use super::{ArraySpec, no_norm};
use crate::cortex::model::types::{Norm, Type, TypeRef};
use crate::cortex::model::{Model, no_such_form};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// `trimText(repr(valu))`: Python's repr of a value, cut at 256 characters.
fn short_repr(v: &Value) -> String {
    let text = super::py_value_repr(v);
    if text.chars().count() > 256 {
        format!("{}...", text.chars().take(253).collect::<String>())
    } else {
        text
    }
}

/// synapse.lib.types.Comp: a tuple of field norms; subs are the fields and their subs
/// (`fqdn:host`), adds are the fields whose types are forms, and their adds.
pub(crate) fn norm_comp(
    t: &Type,
    m: &Model,
    fields: &[(String, TypeRef)],
    sepr: Option<&str>,
    v: &Value,
) -> SynResult<Norm> {
    let split: Vec<Value>;
    let items: &[Value] = match (v, sepr) {
        (Value::Array(items), _) => items,
        (Value::Str(s), Some(sepr)) => {
            split = s.split(sepr).map(Value::from).collect();
            &split
        }
        (other, _) => return Err(no_norm(t, other)),
    };
    if items.len() != fields.len() {
        return Err(t.bad(format!(
            "invalid number of fields given for norming: {}",
            short_repr(&Value::Array(items.to_vec()))
        )));
    }
    let mut norms = Vec::with_capacity(items.len());
    let mut subs = Vec::new();
    let mut adds = Vec::new();
    for ((fname, fref), item) in fields.iter().zip(items) {
        let ftype = fref.get(m)?;
        let fnorm = ftype.norm(m, item)?;
        subs.push((fname.clone(), fnorm.valu.clone()));
        for (k, sv) in &fnorm.subs {
            subs.push((format!("{fname}:{k}"), sv.clone()));
        }
        norms.push(fnorm.valu.clone());
        let nested = fnorm.adds.clone();
        if m.form(&ftype.name).is_some() {
            adds.push((ftype.name.clone(), fnorm));
        }
        adds.extend(nested);
    }
    Ok(Norm {
        valu: Value::Array(norms),
        subs,
        adds,
    })
}

/// Comp's repr: the fields' reprs, joined by `sepr` if it has one.
pub(crate) fn repr_comp(
    m: &Model,
    fields: &[(String, TypeRef)],
    sepr: Option<&str>,
    items: &[Value],
) -> SynResult<Value> {
    let mut reprs = Vec::with_capacity(items.len());
    for ((_, fref), item) in fields.iter().zip(items) {
        reprs.push(fref.get(m)?.repr(m, item)?);
    }
    match sepr {
        Some(sepr) => Ok(Value::Str(
            reprs
                .iter()
                .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(sepr),
        )),
        None => Ok(Value::Array(reprs)),
    }
}

/// Python's ordering of two norms, for `sorted()` (ints, floats, strs, tuples).
fn py_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)).unwrap_or(Ordering::Equal),
        (Value::Str(x), Value::Str(y)) => x.chars().cmp(y.chars()),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                let o = py_cmp(i, j);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => Ordering::Equal,
    }
}

/// synapse.lib.types.Array: each item normed; `uniq` drops repeats, `sorted` sorts; items
/// whose type is a form are added.
pub(crate) fn norm_array(t: &Type, m: &Model, a: &ArraySpec, v: &Value) -> SynResult<Norm> {
    let split: Vec<Value>;
    let items: &[Value] = match v {
        Value::Array(items) => items,
        Value::Str(s) => match &a.split {
            Some(sep) => {
                split = s
                    .split(sep.as_str())
                    .map(|p| Value::from(crate::cortex::model::py::strip(p)))
                    .collect();
                &split
            }
            None => return Err(t.bad(format!("{} type has no split-char defined.", t.name))),
        },
        other => return Err(no_norm(t, other)),
    };
    let elem = a.elem.get(m)?;
    let isform = m.form(&elem.name).is_some();
    let mut norms: Vec<Value> = Vec::with_capacity(items.len());
    let mut adds = Vec::new();
    for item in items {
        let n = elem.norm(m, item)?;
        adds.extend(n.adds.iter().cloned());
        norms.push(n.valu.clone());
        if isform {
            adds.push((elem.name.clone(), n));
        }
    }
    if a.uniq {
        let mut seen: Vec<Value> = Vec::with_capacity(norms.len());
        for n in norms {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        norms = seen;
    }
    if a.sorted {
        norms.sort_by(py_cmp);
    }
    Ok(Norm {
        valu: Value::Array(norms),
        subs: Vec::new(),
        adds,
    })
}

/// Array's repr: a list of item reprs (joined by the split char if the type has one).
pub(crate) fn repr_array(m: &Model, a: &ArraySpec, items: &[Value]) -> SynResult<Value> {
    let elem = a.elem.get(m)?;
    let reprs = items
        .iter()
        .map(|i| elem.repr(m, i))
        .collect::<SynResult<Vec<_>>>()?;
    match &a.split {
        Some(sep) => Ok(Value::Str(
            reprs
                .iter()
                .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(sep),
        )),
        None => Ok(Value::Array(reprs)),
    }
}

/// synapse.lib.types.Ndef: `(form, valu)` with the value normed by the form; the node is added.
pub(crate) fn norm_ndef(
    t: &Type,
    m: &Model,
    forms: &Option<Vec<String>>,
    ifaces: &Option<Vec<String>>,
    v: &Value,
) -> SynResult<Norm> {
    let Value::Array(items) = v else {
        return Err(no_norm(t, v));
    };
    let (formname, formvalu) = match items.as_slice() {
        [a, b] => (a, b),
        _ => {
            let mesg = if items.len() > 2 {
                "too many values to unpack (expected 2)".to_string()
            } else {
                format!(
                    "not enough values to unpack (expected 2, got {})",
                    items.len()
                )
            };
            return Err(t.bad(mesg));
        }
    };
    let fname = formname.as_str().unwrap_or_default();
    let form = m.form(fname).ok_or_else(|| {
        no_such_form(
            &formname
                .as_str()
                .map_or_else(|| formname.to_string(), str::to_string),
        )
    })?;
    if forms.is_some() || ifaces.is_some() {
        let by_form = forms.as_ref().is_some_and(|f| f.iter().any(|n| n == fname));
        let form_ifaces = form
            .typ
            .info
            .get("interfaces")
            .and_then(Value::as_array)
            .unwrap_or(&[]);
        let by_iface = ifaces.as_ref().is_some_and(|want| {
            form_ifaces
                .iter()
                .filter_map(Value::as_str)
                .any(|i| want.iter().any(|w| w == i))
        });
        if !by_form && !by_iface {
            let mut mesg = format!(
                "Ndef of form {fname} is not allowed as a value for {} with form filter",
                t.name
            );
            if let Some(f) = forms {
                mesg.push_str(&format!(" forms={}", py_list(f)));
            }
            if let Some(i) = ifaces {
                mesg.push_str(&format!(" interfaces={}", py_list(i)));
            }
            return Err(t.bad(mesg));
        }
    }
    let fnorm = form.typ.norm(m, formvalu)?;
    Ok(Norm {
        valu: Value::Array(vec![Value::from(fname), fnorm.valu.clone()]),
        subs: vec![("form".into(), Value::from(fname))],
        adds: vec![(fname.to_string(), fnorm)],
    })
}

fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| crate::cortex::model::py::repr_str(s))
        .collect();
    format!("({},)", inner.join(", ")).replace(",,)", ",)")
}

/// Ndef's repr: `(form, repr of the value)`.
pub(crate) fn repr_ndef(m: &Model, v: &Value) -> SynResult<Value> {
    match v.as_array() {
        Some([Value::Str(f), valu]) => {
            let form = m.req_form(f)?;
            Ok(Value::Array(vec![
                Value::Str(f.clone()),
                form.typ.repr(m, valu)?,
            ]))
        }
        _ => Err(SynErr::new("BadTypeValu", format!("bad ndef {v}"))),
    }
}

/// synapse.lib.types.Edge / TimeEdge (deprecated): `(ndef, ndef[, time])` with subs n1,
/// n1:form, n2, n2:form (and time).
pub(crate) fn norm_edge(
    t: &Type,
    m: &Model,
    n1forms: &Option<Vec<String>>,
    n2forms: &Option<Vec<String>>,
    timed: bool,
    v: &Value,
) -> SynResult<Norm> {
    let Value::Array(items) = v else {
        return Err(no_norm(t, v));
    };
    let want = if timed { 3 } else { 2 };
    if items.len() != want {
        return Err(t.bad(if timed {
            format!(
                "timeedge requires (ndef, ndef, time), got {}",
                short_repr(v)
            )
        } else {
            "edge requires (ndef, ndef)".to_string()
        }));
    }
    let tick = if timed {
        let ttype = m
            .typ("time")
            .ok_or_else(|| SynErr::new("NoSuchType", "No type named time."))?;
        Some(ttype.norm(m, &items[2])?.valu)
    } else {
        None
    };
    let ndef = m
        .typ("ndef")
        .ok_or_else(|| SynErr::new("NoSuchType", "No type named ndef."))?;
    let n1 = ndef.norm(m, &items[0])?.valu;
    let n1form = n1
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Nil);
    if let Some(allowed) = n1forms
        && !allowed.iter().any(|f| Some(f.as_str()) == n1form.as_str())
    {
        return Err(t.bad("Invalid source node for edge type"));
    }
    let n2 = ndef.norm(m, &items[1])?.valu;
    let n2form = n2
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Nil);
    if let Some(allowed) = n2forms
        && !allowed.iter().any(|f| Some(f.as_str()) == n2form.as_str())
    {
        return Err(t.bad("Invalid dest node for edge type"));
    }
    let mut subs = vec![
        ("n1".to_string(), n1.clone()),
        ("n1:form".to_string(), n1form),
        ("n2".to_string(), n2.clone()),
        ("n2:form".to_string(), n2form),
    ];
    let mut valu = vec![n1, n2];
    if let Some(tick) = tick {
        subs.push(("time".into(), tick.clone()));
        valu.push(tick);
    }
    Ok(Norm::with_subs(Value::Array(valu), subs))
}

/// Edge's repr: the ndef reprs (and the time's).
pub(crate) fn repr_edge(m: &Model, items: &[Value]) -> SynResult<Value> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if i < 2 {
            out.push(repr_ndef(m, item)?);
        } else {
            out.push(Value::Str(super::time::repr_time(
                item.as_i64().unwrap_or(0) as i128,
            )));
        }
    }
    Ok(Value::Array(out))
}

/// Whether a value survives a JSON round trip (Synapse's `reqjsonsafe`).
fn json_safe(v: &Value) -> Result<(), String> {
    match v {
        Value::Nil | Value::Bool(_) | Value::Str(_) => Ok(()),
        Value::Int(_) => Ok(()),
        Value::Float(f) if f.is_finite() => Ok(()),
        Value::Array(items) => items.iter().try_for_each(json_safe),
        Value::Map(pairs) => pairs.iter().try_for_each(|(k, v)| match k {
            Value::Str(_) => json_safe(v),
            other => Err(format!("Non-string keys are not valid json: {other}")),
        }),
        other => Err(format!(
            "Object of type {} is not JSON serializable",
            other.type_name()
        )),
    }
}

/// synapse.lib.types.Data: any JSON-safe value, kept as is.
pub(crate) fn norm_data(t: &Type, v: &Value) -> SynResult<Norm> {
    json_safe(v).map_err(|e| t.bad(format!("{e}: {}", short_repr(v))))?;
    Ok(Norm::plain(v.clone()))
}

/// synapse.lib.types.NodeProp: `(prop full name, value)` or `"prop=value"`.
pub(crate) fn norm_nodeprop(t: &Type, m: &Model, v: &Value) -> SynResult<Norm> {
    let parts: Vec<Value> = match v {
        Value::Str(s) => s.splitn(2, '=').map(Value::from).collect(),
        Value::Array(items) => items.clone(),
        other => return Err(no_norm(t, other)),
    };
    let [name, valu] = parts.as_slice() else {
        return Err(t.bad(format!("Must be a 2-tuple: {}", short_repr(v))));
    };
    let pname = name.as_str().unwrap_or_default();
    let prop = m.prop(pname).ok_or_else(|| {
        SynErr::new("NoSuchProp", format!("No prop {pname}"))
            .with("name", t.name.as_str())
            .with("prop", pname)
    })?;
    let pnorm = prop.typ.norm(m, valu)?;
    Ok(Norm::with_subs(
        Value::Array(vec![Value::Str(prop.full.clone()), pnorm.valu]),
        vec![("prop".into(), Value::Str(prop.full.clone()))],
    ))
}

/// synapse.lib.types.Range: `(min, max)` of a subtype, or `"min-max"`.
pub(crate) fn norm_range(t: &Type, m: &Model, sub: &TypeRef, v: &Value) -> SynResult<Norm> {
    let parts: Vec<Value> = match v {
        Value::Str(s) => s.splitn(2, '-').map(Value::from).collect(),
        Value::Array(items) => items.clone(),
        other => return Err(no_norm(t, other)),
    };
    range_of(t, m, sub, &parts, v)
}

pub(crate) fn range_of(
    t: &Type,
    m: &Model,
    sub: &TypeRef,
    parts: &[Value],
    orig: &Value,
) -> SynResult<Norm> {
    let subtype = sub.get(m)?;
    let [lo, hi] = parts else {
        return Err(t.bad(format!(
            "Must be a 2-tuple of type {}: {}",
            subtype.name,
            short_repr(orig)
        )));
    };
    let lo = subtype.norm(m, lo)?.valu;
    let hi = subtype.norm(m, hi)?.valu;
    if py_cmp(&lo, &hi) == std::cmp::Ordering::Greater {
        return Err(t.bad("minval cannot be greater than maxval"));
    }
    Ok(Norm::with_subs(
        Value::Array(vec![lo.clone(), hi.clone()]),
        vec![("min".into(), lo), ("max".into(), hi)],
    ))
}

/// Range's repr: both ends' reprs.
pub(crate) fn repr_range(m: &Model, sub: &TypeRef, items: &[Value]) -> SynResult<Value> {
    let subtype = sub.get(m)?;
    let out = items
        .iter()
        .map(|i| subtype.repr(m, i))
        .collect::<SynResult<Vec<_>>>()?;
    Ok(Value::Array(out))
}
