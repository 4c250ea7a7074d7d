//! Storm's `$lib.view` and `$lib.layer`, and the `view` and `layer` objects they give, as
//! Synapse 2.256 has them: an object holds its packed definition (`view.pack()`,
//! `layer.pack()`), so `$view.iden`, `$view.parent`, `$view.get(name)` and `$view.pack()` read
//! it, `$view.layers` gives the layer objects (write layer first) and `$view.fork(name=None)`
//! makes a fork through the cortex's [`crate::cortex::view::ViewCatalog`].
//!
//! Not here: changing views or layers (`set`, `merge`, `wipe`, `delete`, `addNode` and the
//! rest of Synapse's view and layer methods), triggers (always an empty list).

use std::rc::Rc;
use std::sync::Arc;

use super::expr::Args;
use super::value::Val;
use super::{Flow, Res, Runt};
use crate::cortex::model::py;
use crate::cortex::view::ViewCatalog;
use crate::error::SynErr;
use crate::msgpack::Value;

/// The `$lib` names this module answers.
pub(super) const LIB_NAMES: &[&str] = &[
    "view",
    "view.get",
    "view.list",
    "layer",
    "layer.get",
    "layer.list",
];

/// The catalog of the query's cortex.
fn catalog(rt: &Runt<'_>) -> Res<Arc<dyn ViewCatalog>> {
    rt.view.catalog().ok_or_else(|| {
        Flow::Err(SynErr::new(
            "StormRuntimeError",
            "this view belongs to no cortex: $lib.view and $lib.layer are not available",
        ))
    })
}

/// `$lib.view.*` and `$lib.layer.*`; `None` for any other library function.
pub(super) fn call_lib(rt: &Runt<'_>, name: &str, a: &mut Args) -> Option<Res<Val>> {
    let result = match name {
        "view.get" => view_get(rt, a),
        "view.list" => view_list(rt, a),
        "layer.get" => layer_get(rt, a),
        "layer.list" => catalog(rt).and_then(|c| {
            Ok(Val::List(
                c.layer_defs()?
                    .into_iter()
                    .map(|d| Val::Layer(Rc::new(d)))
                    .collect(),
            ))
        }),
        _ => return None,
    };
    Some(result)
}

fn view_get(rt: &Runt<'_>, a: &mut Args) -> Res<Val> {
    let catalog = catalog(rt)?;
    let iden = match a.get(0, "iden") {
        None | Some(Val::Null) => rt.view.iden().unwrap_or_default().to_string(),
        Some(v) => v.to_str(),
    };
    match catalog.view_def(&iden)? {
        Some(def) => Ok(Val::View(Rc::new(def))),
        None => Err(Flow::Err(
            SynErr::new(
                "NoSuchView",
                format!("No view with iden={}", py::repr_str(&iden)),
            )
            .with("iden", iden.as_str()),
        )),
    }
}

/// `$lib.view.list(deporder=False)`: every view; with `deporder`, parents before their forks
/// (by depth below the root view, then number of layers, as Synapse sorts).
fn view_list(rt: &Runt<'_>, a: &mut Args) -> Res<Val> {
    let deporder = a.get(0, "deporder").is_some_and(|v| v.truthy());
    let mut defs = catalog(rt)?.view_defs()?;
    if deporder {
        let depth = |def: &Value| {
            let mut depth = 0usize;
            let mut at = Some(def);
            while let Some(view) = at {
                depth += 1;
                at = view.get("parent").and_then(Value::as_str).and_then(|p| {
                    defs.iter()
                        .find(|d| d.get("iden").and_then(Value::as_str) == Some(p))
                });
                if depth > defs.len() {
                    break;
                }
            }
            let layers = def
                .get("layers")
                .and_then(Value::as_array)
                .map_or(0, |l| l.len());
            (depth, layers)
        };
        let keys: Vec<(usize, usize)> = defs.iter().map(depth).collect();
        let mut keyed: Vec<((usize, usize), Value)> = keys.into_iter().zip(defs).collect();
        keyed.sort_by_key(|(k, _)| *k);
        defs = keyed.into_iter().map(|(_, d)| d).collect();
    }
    Ok(Val::List(
        defs.into_iter().map(|d| Val::View(Rc::new(d))).collect(),
    ))
}

fn layer_get(rt: &Runt<'_>, a: &mut Args) -> Res<Val> {
    let catalog = catalog(rt)?;
    let iden = match a.get(0, "iden") {
        None | Some(Val::Null) => rt.view.write_layer().iden().to_string(),
        Some(v) => v.to_str(),
    };
    match catalog.layer_def(&iden)? {
        Some(def) => Ok(Val::Layer(Rc::new(def))),
        None => Err(Flow::Err(SynErr::new(
            "NoSuchIden",
            format!("No layer with iden: {iden}"),
        ))),
    }
}

fn field(def: &Value, key: &str) -> Val {
    def.get(key).map_or(Val::Null, Val::from)
}

/// `$view.name`: the view's attributes and methods.
pub(super) fn deref_view(def: &Rc<Value>, key: &str) -> Res<Val> {
    match key {
        "iden" | "parent" => Ok(field(def, key)),
        "layers" => Ok(Val::List(
            def.get("layers")
                .and_then(Value::as_array)
                .unwrap_or_default()
                .iter()
                .map(|l| Val::Layer(Rc::new(l.clone())))
                .collect(),
        )),
        "triggers" => Ok(Val::List(Vec::new())),
        "get" | "pack" | "fork" => Ok(Val::Method(
            Box::new(Val::View(def.clone())),
            key.to_string(),
        )),
        _ => Err(Flow::Err(no_such_name(key, "view"))),
    }
}

/// `$layer.name`: the layer's attributes and methods.
pub(super) fn deref_layer(def: &Rc<Value>, key: &str) -> Res<Val> {
    match key {
        "iden" | "name" => Ok(field(def, key)),
        "get" | "pack" => Ok(Val::Method(
            Box::new(Val::Layer(def.clone())),
            key.to_string(),
        )),
        _ => Err(Flow::Err(no_such_name(key, "layer"))),
    }
}

fn no_such_name(key: &str, typ: &str) -> SynErr {
    SynErr::new("NoSuchName", format!("Cannot find name [{key}]"))
        .with("name", key)
        .with("type", typ)
}

/// `get(name, defv=None)` of a packed definition (a view's `nomerge` is its `protected`).
fn def_get(def: &Value, a: &mut Args, view: bool) -> Res<Val> {
    let mut name = a.req(0, "name")?.to_str();
    if view && name == "nomerge" {
        name = "protected".into();
    }
    let defv = a.get(1, "defv").unwrap_or(Val::Null);
    Ok(def.get(&name).map_or(defv, Val::from))
}

/// A method of a view object.
pub(super) fn view_method(rt: &Runt<'_>, def: &Rc<Value>, name: &str, a: &mut Args) -> Res<Val> {
    match name {
        "get" => def_get(def, a, true),
        "pack" => Ok(Val::from(def.as_ref())),
        "fork" => {
            let forkname = match a.get(0, "name") {
                None | Some(Val::Null) => None,
                Some(v) => Some(v.to_str()),
            };
            let iden = def.get("iden").and_then(Value::as_str).unwrap_or_default();
            let made = catalog(rt)?.fork(iden, rt.editor.user(), forkname)?;
            Ok(Val::View(Rc::new(made)))
        }
        _ => Err(Flow::Err(no_such_name(name, "view"))),
    }
}

/// A method of a layer object.
pub(super) fn layer_method(def: &Rc<Value>, name: &str, a: &mut Args) -> Res<Val> {
    match name {
        "get" => def_get(def, a, false),
        "pack" => Ok(Val::from(def.as_ref())),
        _ => Err(Flow::Err(no_such_name(name, "layer"))),
    }
}
