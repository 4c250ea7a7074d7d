//! A view: the layers a cortex reads as one graph, with the data model that gives their
//! stored values meaning.
//!
//! A [`View`] reads nodes ([`Node`]: form, value, props, tags, tag props) by joining the
//! storage nodes of its layers top-down, packs them as Synapse does ([`Node::pack`],
//! [`View::pack_node`]), and lifts buids by prop, value, tag or tag prop in index order
//! ([`View::lift_prop_valu`] and friends). Edits go through an [`crate::cortex::editor::Editor`]
//! to the top layer, the only one written.
//!
//! A view reads a stack of layers ([`View::stack`], the write layer first; [`View::new`] for
//! one). The join of storage nodes lets the highest layer win for a value, prop, tag or tag
//! prop. Lifts merge the layers' index orders as Synapse 2.x does (see `View::merged_lift`):
//! one ordered stream by `(index key, buid)`, a node given by several layers once, and an entry
//! of a lower layer dropped when a higher layer stores the same prop, tag or tag prop (the
//! higher value is the node's). Synapse 2.x has no tombstones: deleting in the write layer a
//! prop that a lower layer holds changes nothing, here as there. Edges are merged by
//! `(verb, node)` without repeats; node data comes from the highest layer that holds a name.
//!
//! Everything here reads LMDB synchronously: async callers use `spawn_blocking` (see the
//! layer's documentation). Each call opens its own read snapshot.

use std::sync::{Arc, OnceLock, Weak};

use crate::cortex::NameMap;
use crate::cortex::edits::{Buid, Ival, ival_to_value};
use crate::cortex::layer::{Cmp, Layer, LayerReader, Lift, LiftEntry, Sode};
use crate::cortex::model::{Form, Model, Prop, StorCmpr, Type};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// A form or a property, as storm names them: `inet:ipv4`, `inet:ipv4:asn`, `.seen`,
/// `inet:ipv4.seen`.
#[derive(Clone, Debug)]
pub enum PropRef {
    /// A form: its primary value.
    Form(Arc<Form>),
    /// A secondary prop, a form's universal prop, or a universal prop of all forms.
    Prop(Arc<Prop>),
}

impl PropRef {
    /// The full name.
    pub fn full(&self) -> &str {
        match self {
            PropRef::Form(f) => &f.name,
            PropRef::Prop(p) => &p.full,
        }
    }

    /// The type of the values.
    pub fn typ(&self) -> &Arc<Type> {
        match self {
            PropRef::Form(f) => &f.typ,
            PropRef::Prop(p) => &p.typ,
        }
    }

    /// Whether this is a form.
    pub fn is_form(&self) -> bool {
        matches!(self, PropRef::Form(_))
    }
}

/// A node as a view sees it: the join of its storage nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's buid.
    pub buid: Buid,
    /// The form name.
    pub form: String,
    /// The primary value.
    pub valu: Value,
    /// Secondary and universal props in the order they were first set.
    pub props: Vec<(String, Value)>,
    /// Tags with their intervals.
    pub tags: Vec<(String, Ival)>,
    /// Tag props: `(tag, [(prop, value)])`, grouped by tag.
    pub tagprops: Vec<(String, Vec<(String, Value)>)>,
}

impl Node {
    /// The hex iden.
    pub fn iden(&self) -> String {
        crate::cortex::edits::iden(&self.buid)
    }

    /// `(form, valu)`.
    pub fn ndef(&self) -> Value {
        Value::Array(vec![Value::from(self.form.as_str()), self.valu.clone()])
    }

    /// A prop value by relative name (`asn`, `.created`).
    pub fn get(&self, prop: &str) -> Option<&Value> {
        self.props.iter().find(|(n, _)| n == prop).map(|(_, v)| v)
    }

    /// A tag's interval.
    pub fn tag(&self, tag: &str) -> Option<Ival> {
        self.tags.iter().find(|(n, _)| n == tag).map(|(_, i)| *i)
    }

    /// A tag prop value.
    pub fn tagprop(&self, tag: &str, prop: &str) -> Option<&Value> {
        self.tagprops
            .iter()
            .find(|(t, _)| t == tag)
            .and_then(|(_, props)| props.iter().find(|(p, _)| p == prop))
            .map(|(_, v)| v)
    }

    /// The tags, or only the leaf tags (no other tag of the node below them), longest first
    /// as Synapse's `getTags(leaf=True)` gives them.
    pub fn tag_names(&self, leaf: bool) -> Vec<String> {
        if !leaf {
            return self.tags.iter().map(|(t, _)| t.clone()).collect();
        }
        let mut sorted: Vec<&String> = self.tags.iter().map(|(t, _)| t).collect();
        sorted.sort_by(|a, b| (b.len(), b.as_str()).cmp(&(a.len(), a.as_str())));
        let mut out: Vec<String> = Vec::new();
        for tag in sorted {
            let look = format!("{tag}.");
            if out.iter().any(|t| t.starts_with(&look)) {
                continue;
            }
            out.push(tag.clone());
        }
        out
    }

    /// Synapse's packed node without `path`: `((form, valu), {iden, tags, props, tagprops,
    /// nodedata})`, plus `repr`, `reprs` and `tagpropreprs` when `repr` is set. `nodedata` is
    /// what the caller loaded (usually nothing).
    pub fn pack(&self, model: &Model, repr: bool, nodedata: &[(String, Value)]) -> Value {
        let mut info = vec![
            ("iden", Value::from(self.iden())),
            ("tags", self.tags_value()),
            (
                "props",
                Value::map(self.props.iter().map(|(n, v)| (n.clone(), v.clone()))),
            ),
            ("tagprops", self.tagprops_value()),
            (
                "nodedata",
                Value::map(nodedata.iter().map(|(n, v)| (n.clone(), v.clone()))),
            ),
        ];
        if repr {
            let form = model.form(&self.form);
            if let Some(rval) = form.and_then(|f| f.typ.repr(model, &self.valu).ok())
                && rval != self.valu
            {
                info.push(("repr", rval));
            }
            info.push(("reprs", self.reprs(model)));
            info.push(("tagpropreprs", self.tagpropreprs(model)));
        }
        Value::Array(vec![self.ndef(), Value::map(info)])
    }

    fn tags_value(&self) -> Value {
        Value::map(self.tags.iter().map(|(t, i)| (t.clone(), ival_to_value(i))))
    }

    fn tagprops_value(&self) -> Value {
        Value::map(self.tagprops.iter().map(|(tag, props)| {
            (
                tag.clone(),
                Value::map(props.iter().map(|(p, v)| (p.clone(), v.clone()))),
            )
        }))
    }

    /// `{prop: repr}` for the props whose repr differs from the value (arrays always: their
    /// repr is a list where the value is a tuple).
    fn reprs(&self, model: &Model) -> Value {
        let Some(form) = model.form(&self.form) else {
            return Value::Map(Vec::new());
        };
        let mut out = Vec::new();
        for (name, valu) in &self.props {
            let Some(prop) = form.prop(name) else {
                continue;
            };
            let Ok(rval) = prop.typ.repr(model, valu) else {
                continue;
            };
            if rval.is_nil() || (rval == *valu && !prop.typ.is_array()) {
                continue;
            }
            out.push((name.clone(), rval));
        }
        Value::map(out)
    }

    fn tagpropreprs(&self, model: &Model) -> Value {
        let mut out = Vec::new();
        for (tag, props) in &self.tagprops {
            let mut reps = Vec::new();
            for (name, valu) in props {
                let Some(tp) = model.tagprop(name) else {
                    continue;
                };
                if let Ok(rval) = tp.typ.repr(model, valu)
                    && !rval.is_nil()
                    && rval != *valu
                {
                    reps.push((name.clone(), rval));
                }
            }
            if !reps.is_empty() {
                out.push((tag.clone(), Value::map(reps)));
            }
        }
        Value::map(out)
    }
}

/// The node `buid` as the layers of `readers` (top first) show it.
fn node_in(readers: &[LayerReader], buid: &Buid) -> SynResult<Option<Node>> {
    node_and_top(readers, buid).map(|(node, _)| node)
}

/// [`node_in`], and whether the top layer holds a storage node of the buid.
fn node_and_top(readers: &[LayerReader], buid: &Buid) -> SynResult<(Option<Node>, bool)> {
    let mut sodes = Vec::with_capacity(readers.len());
    let mut in_top = false;
    for (at, reader) in readers.iter().enumerate() {
        if let Some(sode) = reader.sode(buid)? {
            in_top |= at == 0;
            sodes.push(sode);
        }
    }
    Ok((join_sodes(buid, sodes), in_top))
}

/// Join storage nodes, top layer first: the node exists if some layer holds its value.
/// Higher layers overwrite lower ones; the values are moved, not copied.
fn join_sodes(buid: &Buid, sodes: Vec<Sode>) -> Option<Node> {
    if sodes.iter().all(|sode| sode.valu.is_none()) {
        return None;
    }
    let mut node = Node {
        buid: *buid,
        form: String::new(),
        valu: Value::Nil,
        props: Vec::new(),
        tags: Vec::new(),
        tagprops: Vec::new(),
    };
    for sode in sodes.into_iter().rev() {
        if let Some((valu, _)) = sode.valu {
            node.form = sode.form;
            node.valu = valu;
        }
        for (name, valu, _) in sode.props {
            match node.props.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = valu,
                None => node.props.push((name, valu)),
            }
        }
        for (tag, ival) in sode.tags {
            match node.tags.iter_mut().find(|(t, _)| *t == tag) {
                Some(slot) => slot.1 = ival,
                None => node.tags.push((tag, ival)),
            }
        }
        for (tag, prop, valu, _) in sode.tagprops {
            let at = match node.tagprops.iter().position(|(t, _)| *t == tag) {
                Some(at) => at,
                None => {
                    node.tagprops.push((tag, Vec::new()));
                    node.tagprops.len() - 1
                }
            };
            let props = &mut node.tagprops[at].1;
            match props.iter_mut().find(|(p, _)| *p == prop) {
                Some(slot) => slot.1 = valu,
                None => props.push((prop, valu)),
            }
        }
    }
    Some(node)
}

/// The layer comparison for one of a type's lift operations.
pub fn stor_cmp(sc: &StorCmpr) -> SynResult<Cmp> {
    let pair = || match sc.valu.as_array() {
        Some([a, b]) => Ok((a.clone(), b.clone())),
        _ => Err(SynErr::bad_arg(format!(
            "{} needs two values, got {}",
            sc.cmpr, sc.valu
        ))),
    };
    let text = || match &sc.valu {
        Value::Str(s) => s.clone(),
        Value::Bin(b) => hex::encode(b),
        other => other.to_string(),
    };
    Ok(match sc.cmpr.as_str() {
        "=" => Cmp::Eq(sc.valu.clone()),
        "<" => Cmp::Lt(sc.valu.clone()),
        "<=" => Cmp::Le(sc.valu.clone()),
        ">" => Cmp::Gt(sc.valu.clone()),
        ">=" => Cmp::Ge(sc.valu.clone()),
        "range=" => {
            let (a, b) = pair()?;
            Cmp::Range(a, b)
        }
        "^=" => Cmp::Prefix(text()),
        "~=" => Cmp::Regex(text()),
        "@=" => Cmp::Overlaps(sc.valu.clone()),
        other => {
            return Err(SynErr::new(
                "NoSuchCmpr",
                format!("No such comparator for lifts: {other}"),
            )
            .with("cmpr", other));
        }
    })
}

/// Props by the name of their type, in model order (Synapse's `propsbytype`).
#[derive(Debug, Default)]
struct TypeIndex {
    /// Props of forms whose type is the named type.
    props: NameMap<Vec<Arc<Prop>>>,
    /// Array props of forms whose items are of the named type.
    arrays: NameMap<Vec<Arc<Prop>>>,
}

impl TypeIndex {
    fn build(model: &Model) -> TypeIndex {
        let mut index = TypeIndex::default();
        for name in model.form_names() {
            let Some(form) = model.form(name) else {
                continue;
            };
            for prop in form.props() {
                index
                    .props
                    .entry(prop.typ.name.clone())
                    .or_default()
                    .push(prop.clone());
                if let Some(elem) = prop.typ.array_elem(model) {
                    index
                        .arrays
                        .entry(elem.name.clone())
                        .or_default()
                        .push(prop.clone());
                }
            }
        }
        index
    }
}

/// The cortex's views and layers as a running query reaches them (storm's `$lib.view` and
/// `$lib.layer`). Views, layers and forks are given as Synapse packs them (`view.pack()`,
/// `layer.pack()`).
pub trait ViewCatalog: Send + Sync {
    /// The definition of view `iden`, if it exists.
    fn view_def(&self, iden: &str) -> SynResult<Option<Value>>;
    /// Every view's definition, in the order the views were made.
    fn view_defs(&self) -> SynResult<Vec<Value>>;
    /// The definition of layer `iden`, if it exists.
    fn layer_def(&self, iden: &str) -> SynResult<Option<Value>>;
    /// Every layer's definition, in the order the layers were made.
    fn layer_defs(&self) -> SynResult<Vec<Value>>;
    /// Fork view `iden` for user `user`: a new view over a new, empty write layer on top of
    /// the view's layers; returns the new view's definition.
    fn fork(&self, iden: &str, user: &str, name: Option<String>) -> SynResult<Value>;
    /// Merge view `iden` into its parent for user `user`: everything its write layer holds is
    /// applied to the parent's write layer.
    fn merge(&self, iden: &str, user: &str) -> SynResult<()>;
    /// Delete view `iden` (not its layers) for user `user`.
    fn del_view(&self, iden: &str, user: &str) -> SynResult<()>;
}

/// The layers a cortex reads as one graph, and its data model.
#[derive(Clone)]
pub struct View {
    /// Top (write) layer first.
    layers: Vec<Layer>,
    model: Arc<Model>,
    bytype: Arc<OnceLock<TypeIndex>>,
    /// The view's iden and its cortex's catalog, for a view that belongs to a cortex.
    place: Option<(String, Weak<dyn ViewCatalog>)>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("iden", &self.iden())
            .field("layers", &self.layers)
            .finish()
    }
}

impl View {
    /// A view of one layer, which it also writes.
    pub fn new(layer: Layer, model: Arc<Model>) -> View {
        View {
            layers: vec![layer],
            model,
            bytype: Arc::default(),
            place: None,
        }
    }

    /// A view of a stack of layers, the write layer first (as Synapse lists a view's layers).
    pub fn stack(layers: Vec<Layer>, model: Arc<Model>) -> SynResult<View> {
        if layers.is_empty() {
            return Err(SynErr::bad_arg("a view needs at least one layer"));
        }
        Ok(View {
            layers,
            model,
            bytype: Arc::default(),
            place: None,
        })
    }

    /// This view as view `iden` of the cortex whose views `catalog` lists.
    pub fn in_catalog(mut self, iden: String, catalog: Weak<dyn ViewCatalog>) -> View {
        self.place = Some((iden, catalog));
        self
    }

    /// The view's iden, if it belongs to a cortex.
    pub fn iden(&self) -> Option<&str> {
        self.place.as_ref().map(|(iden, _)| iden.as_str())
    }

    /// The catalog of the cortex this view belongs to, while that cortex runs.
    pub fn catalog(&self) -> Option<Arc<dyn ViewCatalog>> {
        self.place.as_ref().and_then(|(_, c)| c.upgrade())
    }

    fn bytype(&self) -> &TypeIndex {
        self.bytype.get_or_init(|| TypeIndex::build(&self.model))
    }

    /// The form props whose type is `typename` (`inet:ipv4:asn` for `inet:asn`), in model
    /// order.
    pub fn props_of_type(&self, typename: &str) -> &[Arc<Prop>] {
        self.bytype().props.get(typename).map_or(&[], Vec::as_slice)
    }

    /// The array props whose items are of type `typename`, in model order.
    pub fn array_props_of_type(&self, typename: &str) -> &[Arc<Prop>] {
        self.bytype()
            .arrays
            .get(typename)
            .map_or(&[], Vec::as_slice)
    }

    /// The data model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The layer edits go to.
    pub fn write_layer(&self) -> &Layer {
        &self.layers[0]
    }

    /// The layers, top first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// A form or prop by full name (`inet:ipv4`, `inet:ipv4:asn`, `.seen`).
    pub fn prop_ref(&self, name: &str) -> Option<PropRef> {
        if let Some(form) = self.model.form(name) {
            return Some(PropRef::Form(form.clone()));
        }
        self.model.prop(name).map(|p| PropRef::Prop(p.clone()))
    }

    /// The node of a buid, if some layer holds its value.
    pub fn node(&self, buid: &Buid) -> SynResult<Option<Node>> {
        node_in(&self.readers()?, buid)
    }

    /// [`View::node`], and whether the write layer holds a storage node of the buid (it may
    /// without the node existing: edits of a node never added).
    pub fn node_and_stored(&self, buid: &Buid) -> SynResult<(Option<Node>, bool)> {
        node_and_top(&self.readers()?, buid)
    }

    /// The node a write left in a one-layer view, from the write layer's storage node as
    /// written (`sode`; `None` if it was removed). `None` for a view of several layers, whose
    /// lower layers may hold more of the node.
    pub fn node_from_written(&self, buid: &Buid, sode: Option<Sode>) -> Option<Option<Node>> {
        (self.layers.len() == 1).then(|| join_sodes(buid, sode.into_iter().collect()))
    }

    /// Several nodes, each layer read from one snapshot for all of them (one read transaction
    /// a layer instead of one a node), in the order of `buids`.
    pub fn nodes(&self, buids: &[Buid]) -> SynResult<Vec<Option<Node>>> {
        let readers = self.readers()?;
        buids.iter().map(|buid| node_in(&readers, buid)).collect()
    }

    /// A reader of each layer for nodes by buid, top first.
    fn readers(&self) -> SynResult<Vec<LayerReader>> {
        self.layers.iter().map(Layer::node_reader).collect()
    }

    /// The node `(form, norm)` (the value must be normalized).
    pub fn node_by_ndef(&self, form: &str, norm: &Value) -> SynResult<Option<Node>> {
        self.node(&crate::cortex::model::buid(form, norm))
    }

    /// Pack a node as a storm `node` message carries it (§1.3 of the storm spec): `((form,
    /// norm), {iden, tags, props, tagprops, nodedata, [repr, reprs, tagpropreprs], path})`;
    /// `opts` is the storm opts map (`repr` adds the reprs; may be Nil).
    pub fn pack_node(&self, buid: &Buid, opts: &Value) -> SynResult<Option<Value>> {
        let repr = opts.get("repr").is_some_and(truthy);
        let Some(node) = self.node(buid)? else {
            return Ok(None);
        };
        let mut packed = node.pack(&self.model, repr, &[]);
        if let Value::Array(parts) = &mut packed
            && let Some(Value::Map(info)) = parts.get_mut(1)
        {
            info.push((Value::from("path"), Value::Map(Vec::new())));
        }
        Ok(Some(packed))
    }

    /// Every node of a form, in index order.
    pub fn lift_form(&self, form: &str) -> SynResult<Vec<Buid>> {
        // A form's value never changes, so no layer hides another's entry.
        self.merged_lift(Shadow::Nothing, &|r| r.lift_form(form))
    }

    /// Nodes that have a prop (or, for a form, every node of it), in index order.
    pub fn lift_prop(&self, prop: &PropRef) -> SynResult<Vec<Buid>> {
        match prop {
            PropRef::Form(f) => self.lift_form(&f.name),
            PropRef::Prop(p) => {
                let shadow = Shadow::Prop(&p.name);
                match &p.form {
                    None => self.merged_lift(shadow, &|r| {
                        r.lift_univ(&p.name, None, p.stortype, &Cmp::Any)
                    }),
                    Some(form) => self.merged_lift(shadow, &|r| {
                        r.lift_prop(form, Some(&p.name), p.stortype, &Cmp::Any)
                    }),
                }
            }
        }
    }

    /// Nodes whose prop (or primary value) matches any of the lift operations, in order of
    /// the operations, then index order (Synapse's `nodesByPropValu` after `getStorCmprs`).
    pub fn lift_prop_valu(&self, prop: &PropRef, cmprs: &[StorCmpr]) -> SynResult<Vec<Buid>> {
        let mut out = Vec::new();
        for sc in cmprs {
            let cmp = stor_cmp(sc)?;
            let found = match prop {
                PropRef::Form(f) => self.merged_lift(Shadow::Nothing, &|r| {
                    r.lift_prop(&f.name, None, sc.stortype, &cmp)
                }),
                PropRef::Prop(p) => {
                    let shadow = Shadow::Prop(&p.name);
                    match &p.form {
                        None => self.merged_lift(shadow, &|r| {
                            r.lift_univ(&p.name, None, sc.stortype, &cmp)
                        }),
                        Some(form) => self.merged_lift(shadow, &|r| {
                            r.lift_prop(form, Some(&p.name), sc.stortype, &cmp)
                        }),
                    }
                }
            }?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Nodes with an array prop holding an item that matches any of the operations (one entry
    /// per matching item).
    pub fn lift_prop_array(&self, prop: &Prop, cmprs: &[StorCmpr]) -> SynResult<Vec<Buid>> {
        let Some(form) = &prop.form else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for sc in cmprs {
            let cmp = stor_cmp(sc)?;
            out.extend(self.merged_lift(Shadow::Prop(&prop.name), &|r| {
                r.lift_prop_array(form, &prop.name, prop.stortype, &cmp)
            })?);
        }
        Ok(out)
    }

    /// Nodes with a tag (of one form or all).
    pub fn lift_tag(&self, tag: &str, form: Option<&str>) -> SynResult<Vec<Buid>> {
        // With a form, every layer's entries are in buid order and a node's entries meet in
        // the merge; across forms they need not, so a higher layer's tag hides a lower one's.
        let shadow = match form {
            Some(_) => Shadow::Nothing,
            None => Shadow::Tag(tag),
        };
        self.merged_lift(shadow, &|r| r.lift_tag(tag, form))
    }

    /// Nodes whose tag interval equals (`=`) or overlaps (`@=`) a normalized interval.
    pub fn lift_tag_valu(
        &self,
        tag: &str,
        form: Option<&str>,
        cmpr: &str,
        ival: &Value,
    ) -> SynResult<Vec<Buid>> {
        let cmp = match cmpr {
            "=" => Cmp::Eq(ival.clone()),
            "@=" => Cmp::Overlaps(ival.clone()),
            other => {
                return Err(SynErr::new(
                    "NoSuchCmpr",
                    format!("Type (ival) has no cmpr: \"{other}\"."),
                )
                .with("cmpr", other)
                .with("name", "ival"));
            }
        };
        self.merged_lift(Shadow::Tag(tag), &|r| r.lift_tag_valu(tag, form, &cmp))
    }

    /// Nodes (of one form or all) with a tag prop, optionally matching lift operations.
    pub fn lift_tagprop(
        &self,
        form: Option<&str>,
        tag: &str,
        prop: &str,
        stortype: u16,
        cmprs: Option<&[StorCmpr]>,
    ) -> SynResult<Vec<Buid>> {
        let shadow = Shadow::TagProp(tag, prop);
        let Some(cmprs) = cmprs else {
            return self.merged_lift(shadow, &|r| {
                r.lift_tagprop(tag, prop, form, stortype, &Cmp::Any)
            });
        };
        let mut out = Vec::new();
        for sc in cmprs {
            let cmp = stor_cmp(sc)?;
            out.extend(self.merged_lift(shadow, &|r| {
                r.lift_tagprop(tag, prop, form, sc.stortype, &cmp)
            })?);
        }
        Ok(out)
    }

    /// One lift run in every layer, merged as Synapse's `_mergeSodes` does: the layers' index
    /// entries are merged by `(key, buid)` (the lower layer first when both are equal), one
    /// after another entries of the same buid from different layers count once, and an entry
    /// is dropped when a layer above every layer that gave it stores what `shadow` names (that
    /// layer's value is the node's; its own entry, if it matches, gives the node).
    ///
    /// A k-way merge of the layers' lazy index scans: nothing is collected per layer, and only
    /// shadow checks read storage nodes. A buid may belong to a node whose primary value no
    /// layer holds (props only); [`View::node`] gives `None` for it.
    fn merged_lift(
        &self,
        shadow: Shadow<'_>,
        lift: &dyn Fn(&LayerReader) -> SynResult<Lift<'_>>,
    ) -> SynResult<Vec<Buid>> {
        if let [layer] = self.layers.as_slice() {
            let reader = layer.reader()?;
            return lift(&reader)?.collect();
        }
        let readers = self
            .layers
            .iter()
            .map(Layer::reader)
            .collect::<SynResult<Vec<_>>>()?;
        let mut lifts = readers.iter().map(lift).collect::<SynResult<Vec<_>>>()?;
        let mut merge = LayerMerge::new(&mut lifts)?;
        let mut out = Vec::new();
        // The buid being gathered and which layers (top first) gave it.
        let mut group: Option<Buid> = None;
        let mut from = vec![false; readers.len()];
        while let Some((layer, buid)) = merge.next_entry()? {
            if group == Some(buid) && !from[layer] {
                from[layer] = true;
                continue;
            }
            if let Some(gbuid) = group.replace(buid) {
                if !shadowed(&readers, shadow, &gbuid, &from)? {
                    out.push(gbuid);
                }
                from.fill(false);
            }
            from[layer] = true;
        }
        if let Some(gbuid) = group
            && !shadowed(&readers, shadow, &gbuid, &from)?
        {
            out.push(gbuid);
        }
        Ok(out)
    }

    /// Light edges from a node: `(verb, n2)`, only `verb` if given, by verb then n2 across
    /// the layers, each edge once.
    pub fn edges_n1(&self, buid: &Buid, verb: Option<&str>) -> SynResult<Vec<(String, Buid)>> {
        self.merged_edges(|r| r.edges_n1(buid, verb))
    }

    /// Light edges to a node: `(verb, n1)`, only `verb` if given, by verb then n1 across the
    /// layers, each edge once.
    pub fn edges_n2(&self, buid: &Buid, verb: Option<&str>) -> SynResult<Vec<(String, Buid)>> {
        self.merged_edges(|r| r.edges_n2(buid, verb))
    }

    /// Every layer's sorted edges as one sorted list without repeats (Synapse merges the
    /// layers' edge scans and skips an edge equal to the one before).
    fn merged_edges(
        &self,
        edges: impl Fn(&LayerReader) -> SynResult<Vec<(String, Buid)>>,
    ) -> SynResult<Vec<(String, Buid)>> {
        let mut out = Vec::new();
        for layer in &self.layers {
            out.extend(edges(&layer.reader()?)?);
        }
        if self.layers.len() > 1 {
            out.sort();
            out.dedup();
        }
        Ok(out)
    }

    /// Whether the light edge `n1 -(verb)> n2` exists in some layer.
    pub fn has_edge(&self, n1: &Buid, verb: &str, n2: &Buid) -> SynResult<bool> {
        for layer in &self.layers {
            if layer.reader()?.has_edge(n1, verb, n2)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A node data value, from the highest layer that holds it.
    pub fn nodedata(&self, buid: &Buid, name: &str) -> SynResult<Option<Value>> {
        for layer in &self.layers {
            if let Some(valu) = layer.reader()?.nodedata(buid, name)? {
                return Ok(Some(valu));
            }
        }
        Ok(None)
    }

    /// All node data of a node: the highest layer's value of each name, names in the order
    /// the layers give them from the top.
    pub fn nodedata_all(&self, buid: &Buid) -> SynResult<Vec<(String, Value)>> {
        let mut out: Vec<(String, Value)> = Vec::new();
        for layer in &self.layers {
            for (name, valu) in layer.reader()?.nodedata_all(buid)? {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, valu));
                }
            }
        }
        Ok(out)
    }
}

/// What a higher layer may store that makes a lower layer's lift entry stale (Synapse's
/// `filtercmpr`).
#[derive(Clone, Copy, Debug)]
enum Shadow<'a> {
    /// Nothing: every entry stands (form values, tag lifts of one form).
    Nothing,
    /// A secondary or universal prop.
    Prop(&'a str),
    /// A tag.
    Tag(&'a str),
    /// A tag prop: `(tag, prop)`.
    TagProp(&'a str, &'a str),
}

impl Shadow<'_> {
    fn hides(self, sode: &Sode) -> bool {
        match self {
            Shadow::Nothing => false,
            Shadow::Prop(prop) => sode.prop(prop).is_some(),
            Shadow::Tag(tag) => sode.tag(tag).is_some(),
            Shadow::TagProp(tag, prop) => sode.tagprop(tag, prop).is_some(),
        }
    }
}

/// Whether a layer above the highest one in `from` (readers and flags top first) stores what
/// `shadow` names for `buid`.
fn shadowed(
    readers: &[LayerReader],
    shadow: Shadow<'_>,
    buid: &Buid,
    from: &[bool],
) -> SynResult<bool> {
    if matches!(shadow, Shadow::Nothing) {
        return Ok(false);
    }
    for (reader, gave) in readers.iter().zip(from) {
        if *gave {
            return Ok(false);
        }
        if reader.sode(buid)?.is_some_and(|s| shadow.hides(&s)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A k-way merge of the layers' lifts (top layer first) by `(key, buid)`; of equal entries the
/// lower layer's comes first, as Synapse's `merggenr2` orders its heap by `(key, layer)` with
/// the bottom layer first. It takes the least of the layers' current entries each time, which
/// is also what Synapse's heap gives when a layer's entries are not sorted by the merge key
/// (a `#tag` lift across forms).
struct LayerMerge<'l, 'r> {
    lifts: &'l mut [Lift<'r>],
    heads: Vec<Option<LiftEntry>>,
}

impl<'l, 'r> LayerMerge<'l, 'r> {
    fn new(lifts: &'l mut [Lift<'r>]) -> SynResult<LayerMerge<'l, 'r>> {
        let heads = lifts
            .iter_mut()
            .map(|l| l.next_entry().transpose())
            .collect::<SynResult<Vec<_>>>()?;
        Ok(LayerMerge { lifts, heads })
    }

    /// The next entry's layer index (top first) and buid.
    fn next_entry(&mut self) -> SynResult<Option<(usize, Buid)>> {
        let mut least: Option<usize> = None;
        for (at, head) in self.heads.iter().enumerate() {
            let Some(head) = head else {
                continue;
            };
            // `<=`: of equal entries the later (lower) layer wins.
            if least.is_none_or(|l| self.heads[l].as_ref().is_some_and(|best| head <= best)) {
                least = Some(at);
            }
        }
        let Some(at) = least else {
            return Ok(None);
        };
        let next = self.lifts[at].next_entry().transpose()?;
        let (_, buid) = std::mem::replace(&mut self.heads[at], next).expect("a head was chosen");
        Ok(Some((at, buid)))
    }
}

/// Python truth of an option value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Str(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Map(m) => !m.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sode(form: &str, valu: Option<i64>, props: &[(&str, i64)], tags: &[&str]) -> Sode {
        Sode {
            form: form.into(),
            valu: valu.map(|v| (Value::from(v), 4)),
            props: props
                .iter()
                .map(|(n, v)| (n.to_string(), Value::from(*v), 9))
                .collect(),
            tags: tags.iter().map(|t| (t.to_string(), (None, None))).collect(),
            tagprops: vec![("t".into(), "score".into(), Value::from(1i64), 9)],
        }
    }

    #[test]
    fn sodes_join_with_the_top_layer_winning() {
        let buid = [1u8; 32];
        let top = sode("inet:ipv4", None, &[("asn", 20)], &["b"]);
        let bottom = sode("inet:ipv4", Some(5), &[("asn", 10), ("loc", 1)], &["a"]);
        let node = join_sodes(&buid, vec![top.clone(), bottom]).expect("node");
        assert_eq!(node.valu, Value::from(5i64));
        assert_eq!(
            node.props,
            vec![
                ("asn".to_string(), Value::from(20i64)),
                ("loc".to_string(), Value::from(1i64))
            ]
        );
        assert_eq!(node.tag_names(false), vec!["a", "b"]);
        assert_eq!(node.tagprop("t", "score"), Some(&Value::from(1i64)));
        // Props or tags alone are no node.
        assert_eq!(join_sodes(&buid, vec![top]), None);
    }

    use crate::cortex::edits::{Edit, NodeEdit, stortype};

    fn ipv4(n: i64) -> (Buid, Value) {
        let valu = Value::from(n);
        (crate::cortex::model::buid("inet:ipv4", &valu), valu)
    }

    /// Store an ipv4 node in `layer`: its value (unless `partial`), `:asn` and tags.
    fn put(layer: &Layer, n: i64, partial: bool, asn: Option<i64>, tags: &[&str]) {
        let (buid, valu) = ipv4(n);
        let mut edits = Vec::new();
        if !partial {
            edits.push(Edit::NodeAdd {
                valu,
                stortype: stortype::U32,
            });
        }
        if let Some(asn) = asn {
            edits.push(Edit::PropSet {
                prop: "asn".into(),
                valu: Value::from(asn),
                oldv: Value::Nil,
                stortype: stortype::U32,
            });
        }
        for tag in tags {
            edits.push(Edit::TagSet {
                tag: tag.to_string(),
                valu: (None, None),
                oldv: None,
            });
        }
        let ne = NodeEdit {
            buid,
            form: "inet:ipv4".into(),
            edits,
        };
        layer.store(&[ne], &Value::Map(Vec::new())).unwrap();
    }

    fn sorted(mut buids: Vec<Buid>) -> Vec<Buid> {
        buids.sort();
        buids
    }

    #[test]
    fn merged_lifts_order_by_key_then_buid_and_give_each_node_once() {
        let tmp = tempfile::tempdir().unwrap();
        let open = |name: &str| Layer::open(&tmp.path().join(name), name).unwrap();
        let (bottom, top, third) = (open("bottom"), open("top"), open("third"));
        put(&bottom, 1, false, Some(5), &["t"]);
        put(&bottom, 2, false, Some(5), &["t"]);
        put(&bottom, 3, false, Some(7), &[]);
        put(&top, 4, false, Some(5), &["t"]);
        // Only props and tags in the top layer; the same value, a new value.
        put(&top, 2, true, Some(5), &["t"]);
        put(&top, 3, true, Some(6), &["t"]);
        let model = Model::shared().unwrap();
        let fork = View::stack(vec![top.clone(), bottom.clone()], model.clone()).unwrap();
        let b = |n| ipv4(n).0;
        let asn = fork.prop_ref("inet:ipv4:asn").unwrap();

        assert_eq!(
            fork.lift_form("inet:ipv4").unwrap(),
            [b(1), b(2), b(3), b(4)]
        );
        // asn 5: nodes 1, 2 (in both layers, once) and 4 by buid; then 6; node 3's 7 is
        // hidden by the top layer's 6.
        let mut want = sorted(vec![b(1), b(2), b(4)]);
        want.push(b(3));
        assert_eq!(fork.lift_prop(&asn).unwrap(), want);
        // One form's tag: by buid, each once.
        assert_eq!(
            fork.lift_tag("t", Some("inet:ipv4")).unwrap(),
            sorted(vec![b(1), b(2), b(3), b(4)])
        );
        assert_eq!(
            sorted(fork.lift_tag("t", None).unwrap()),
            sorted(vec![b(1), b(2), b(3), b(4)])
        );
        // The partial node joins with its value from below.
        let node = fork.node(&b(3)).unwrap().unwrap();
        assert_eq!(node.get("asn"), Some(&Value::from(6i64)));
        assert_eq!(node.tag_names(false), ["t"]);
        // The bottom alone is unchanged.
        let base = View::new(bottom.clone(), model.clone());
        assert_eq!(base.lift_prop(&asn).unwrap().len(), 3);
        assert!(base.node(&b(4)).unwrap().is_none());

        // A third layer wins over both.
        put(&third, 2, true, Some(9), &[]);
        let fork2 = View::stack(vec![third, top, bottom], model).unwrap();
        let mut want = sorted(vec![b(1), b(4)]);
        want.extend([b(3), b(2)]);
        assert_eq!(fork2.lift_prop(&asn).unwrap(), want);
        assert_eq!(fork2.lift_form("inet:ipv4").unwrap().len(), 4);
    }

    #[test]
    fn views_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<View>();
        send_sync::<Node>();
    }

    #[test]
    fn leaf_tags_are_longest_first() {
        let node = Node {
            buid: [0; 32],
            form: "inet:ipv4".into(),
            valu: Value::from(1i64),
            props: vec![],
            tags: ["a", "a.b", "a.b.c", "a.d", "e"]
                .iter()
                .map(|t| (t.to_string(), (None, None)))
                .collect(),
            tagprops: vec![],
        };
        assert_eq!(node.tag_names(true), vec!["a.b.c", "a.d", "e"]);
    }
}
