//! The node editor: turns "add this node, set this prop, add this tag" into nodeedits for the
//! write layer, with Synapse's automatic consequences.
//!
//! An [`EditBatch`] stages changes to proto nodes, as Synapse's `SnapEditor`/`ProtoNode` do,
//! and [`EditBatch::flush`] applies them as one batch of nodeedits (one per node, in the order
//! the nodes were first touched). Staging does what Synapse does:
//! * a node add normalizes the value and sets each norm `sub` whose prop exists on the form
//!   (recursively, breadth first), then adds the norm's `adds` (comp fields, array items, ndef
//!   targets);
//! * a prop whose type is a form adds that node; its norm's subs and adds follow;
//! * a tag adds its `syn:tag` node (and those of its parents) and its parent tags untimed;
//!   tag intervals merge with the current one;
//! * nothing is written when an error is raised while staging.
//!
//! [`Editor::apply`] stores nodeedits in the write layer and then runs the model's hooks on
//! what changed (fqdn `zone`/`iszone`/`issuffix`, inet:passwd hashes, it:dev:str and friends)
//! before telling the [`EditSink`], so hook edits reach the sink first, as Synapse fires
//! `node:edits` after its callbacks. With [`Durability::Deferred`] the layer logs without
//! `fdatasync` and the caller makes it durable once ([`Editor::make_durable`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::cell::auth::Auth;
use crate::clock::now_ms;
use crate::cortex::NameMap;
use crate::cortex::edits::{Buid, BuidMap, Edit, Ival, NodeEdit, iden, ival_from_value};
use crate::cortex::layer::{Absent, Sode, Stored};
use crate::cortex::model::{Form, Model, Norm, Prop, buid, norm::py_value_repr};
use crate::cortex::view::{Node, PropRef, View};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;

/// Where applied edits and warnings go (a storm runtime turns them into messages).
pub trait EditSink {
    /// A batch of nodeedits was applied (only the edits that changed something).
    fn node_edits(&self, edits: &Arc<Vec<NodeEdit>>);
    /// A warning for the user (non-strict edits that were skipped).
    fn warn(&self, mesg: &str);
}

/// A sink that drops everything.
impl EditSink for () {
    fn node_edits(&self, _edits: &Arc<Vec<NodeEdit>>) {}
    fn warn(&self, _mesg: &str) {}
}

/// When applied edits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every apply is flushed before it returns.
    Sync,
    /// Applies are logged without a flush; call [`Editor::make_durable`] before acknowledging.
    Deferred,
}

/// Applies edits to a view's write layer for one user.
pub struct Editor<'a> {
    view: &'a View,
    user: String,
    durability: Durability,
    sink: &'a dyn EditSink,
    /// Warnings already given (Synapse's `warnonce`): deprecation warnings go out once.
    warned: RefCell<HashSet<String>>,
    /// Checks the user's permissions on the write layer's gate before an edit (`None`: every
    /// edit is allowed, as for an admin or the cortex itself).
    auth: Option<&'a Auth>,
    /// `syn:tag` nodes this editor found in the view, by the tag text it was given: the
    /// normalized tag and its `up` (Synapse's snap keeps such a cache too). Deleting a
    /// `syn:tag` node through the editor empties it.
    tag_nodes: RefCell<NameMap<(String, Option<String>)>>,
    /// The nodes this editor's last write left (one-layer views only): reading a node just
    /// edited needs no trip to LMDB.
    written: RefCell<Option<Written>>,
}

/// The most nodes of one write an editor keeps for [`Editor::node`]: an edit block writes a
/// node and the few it points to.
const WRITTEN_KEPT: usize = 64;

/// The nodes one write left, and the write layer's version right after it.
struct Written {
    version: u64,
    sodes: Vec<(Buid, Option<Sode>)>,
}

impl<'a> Editor<'a> {
    /// An editor of `view` acting as the user with iden `user`.
    pub fn new(view: &'a View, user: &str, durability: Durability, sink: &'a dyn EditSink) -> Self {
        Editor {
            view,
            user: user.to_string(),
            durability,
            sink,
            warned: RefCell::default(),
            auth: None,
            tag_nodes: RefCell::default(),
            written: RefCell::default(),
        }
    }

    /// Check the user's permissions (`node.add.<form>`, `node.tag.add.<tag parts>`, ...) on
    /// the write layer's gate before each edit, as Storm does for a non-admin user.
    pub fn checked(mut self, auth: &'a Auth) -> Self {
        if !auth.user(&self.user).is_some_and(|u| u.admin) {
            self.auth = Some(auth);
        }
        self
    }

    /// Fail with Synapse's `AuthDeny` unless the user has `perm` on the write layer (Synapse's
    /// `layerConfirm`). Always passes for an unchecked editor.
    pub fn confirm(&self, perm: &[&str]) -> SynResult<()> {
        let Some(auth) = self.auth else {
            return Ok(());
        };
        let path: Vec<String> = perm.iter().map(|p| (*p).to_string()).collect();
        let layer = self.view.write_layer().iden();
        if auth.allowed(&self.user, &path, None, Some(layer)) == Some(true) {
            return Ok(());
        }
        Err(auth.deny(&self.user, &path, Some((layer, "layer"))))
    }

    /// Confirm `node.tag.<verb>` followed by the parts of a dotted tag.
    pub fn confirm_tag(&self, verb: &str, tag: &str) -> SynResult<()> {
        let mut perm = vec!["node", "tag", verb];
        perm.extend(tag.split('.'));
        self.confirm(&perm)
    }

    /// Synapse's `confirmPropSet`/`confirmPropDel`: `node.prop.<verb>.<form>.<prop>` or
    /// `node.prop.<verb>.<full prop>`; when the two disagree the longer rule wins (the
    /// form-and-prop rule on a tie when it allows). A denial names the form-and-prop one.
    pub fn confirm_prop(&self, verb: &str, form: &str, name: &str) -> SynResult<()> {
        let Some(auth) = self.auth else {
            return Ok(());
        };
        let full = self
            .model()
            .form(form)
            .and_then(|f| f.prop(name))
            .map(|p| p.full.clone())
            .unwrap_or_else(|| format!("{form}:{name}"));
        let by_full: Vec<String> = ["node", "prop", verb, &full].map(String::from).into();
        let by_form: Vec<String> = ["node", "prop", verb, form, name].map(String::from).into();
        let layer = self.view.write_layer().iden();
        let reason0 = auth.allowed_reason(&self.user, &by_form, Some(layer));
        if reason0.is_some_and(|r| r.admin) {
            return Ok(());
        }
        let reason1 = auth.allowed_reason(&self.user, &by_full, Some(layer));
        let len = |r: Option<crate::cell::auth::Reason>| r.map_or(0, |r| r.rule_len);
        let allowed = match (reason0.map(|r| r.allow), reason1.map(|r| r.allow)) {
            (Some(true), Some(false)) => len(reason0) >= len(reason1),
            (Some(true), _) => true,
            (None, Some(true)) => true,
            (Some(false), Some(true)) => len(reason1) > len(reason0),
            _ => false,
        };
        if allowed {
            return Ok(());
        }
        Err(auth.deny(&self.user, &by_form, Some((layer, "layer"))))
    }

    /// Send a warning unless it was sent before.
    fn warn_once(&self, mesg: String) {
        if self.warned.borrow_mut().insert(mesg.clone()) {
            self.sink.warn(&mesg);
        }
    }

    /// Never warn that this prop is deprecated (Synapse skips the warning for props set as
    /// norm subs).
    fn skip_prop_warning(&self, full: &str) {
        self.warned.borrow_mut().insert(prop_deprecated(full));
    }

    /// The iden of the user the editor acts as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The view edited.
    pub fn view(&self) -> &'a View {
        self.view
    }

    fn model(&self) -> &'a Model {
        self.view.model()
    }

    /// A new, empty batch.
    pub fn batch(&self) -> EditBatch<'_, 'a> {
        EditBatch {
            editor: self,
            protos: Vec::new(),
            index: HashMap::default(),
            absent: Absent::default(),
        }
    }

    /// Store nodeedits in the write layer, run the hooks of what changed, then pass the
    /// changes to the sink. Returns the applied edits.
    pub fn apply(&self, nodeedits: &[NodeEdit]) -> SynResult<Arc<Vec<NodeEdit>>> {
        self.apply_knowing(nodeedits, &Absent::default())
    }

    /// [`Editor::apply`] of edits to nodes some of which were looked up and found missing.
    fn apply_knowing(
        &self,
        nodeedits: &[NodeEdit],
        absent: &Absent,
    ) -> SynResult<Arc<Vec<NodeEdit>>> {
        if nodeedits.is_empty() {
            return Ok(Arc::default());
        }
        let meta = Value::map([
            ("time", Value::from(now_ms())),
            ("user", Value::from(self.user.as_str())),
        ]);
        let layer = self.view.write_layer();
        let sync = self.durability == Durability::Sync;
        let stored = layer.store_knowing(nodeedits, &meta, sync, absent)?;
        let Stored {
            applied,
            sodes,
            version,
            ..
        } = stored;
        self.remember(sodes, version);
        let mut hooks = Vec::new();
        for ne in applied.iter() {
            for edit in &ne.edits {
                match edit {
                    Edit::NodeAdd { .. } => hooks.push(Hook::Added(&ne.buid, &ne.form)),
                    Edit::NodeDel { .. } if ne.form == "syn:tag" => {
                        self.tag_nodes.borrow_mut().clear();
                    }
                    Edit::PropSet { prop, .. } => {
                        hooks.push(Hook::Set(&ne.buid, &ne.form, prop.as_str()))
                    }
                    _ => {}
                }
            }
        }
        for hook in hooks {
            self.run_hook(hook)?;
        }
        if !applied.is_empty() {
            self.sink.node_edits(&applied);
        }
        Ok(applied)
    }

    /// Keep the storage nodes a write left, when they are the whole node (a one-layer view)
    /// and few (they are looked up one by one); each becomes a node only if it is read.
    fn remember(&self, sodes: Vec<(Buid, Option<Sode>)>, version: u64) {
        let keep = self.view.layers().len() == 1 && sodes.len() <= WRITTEN_KEPT;
        *self.written.borrow_mut() = keep.then_some(Written { version, sodes });
    }

    /// The node of a buid as the view holds it: from this editor's last write while the write
    /// layer has not changed since, read from the view otherwise.
    pub fn node(&self, buid: &Buid) -> SynResult<Option<Node>> {
        self.node_and_stored(buid).map(|(node, _)| node)
    }

    /// [`Editor::node`], and whether the write layer holds a storage node of the buid.
    fn node_and_stored(&self, buid: &Buid) -> SynResult<(Option<Node>, bool)> {
        if let Some(written) = &*self.written.borrow()
            && written.version == self.view.write_layer().next_offset()
            && let Some((_, sode)) = written.sodes.iter().find(|(b, _)| b == buid)
            && let Some(node) = self.view.node_from_written(buid, sode.clone())
        {
            return Ok((node, sode.is_some()));
        }
        self.view.node_and_stored(buid)
    }

    /// Flush everything applied so far to disk (for [`Durability::Deferred`]).
    pub fn make_durable(&self) -> SynResult<()> {
        self.view.write_layer().make_durable()
    }

    /// Add a node (or find it) by form and value: Synapse's `snap.addNode`.
    pub fn add_node(&self, form: &str, valu: &Value) -> SynResult<Node> {
        self.confirm(&["node", "add", form])?;
        let mut batch = self.batch();
        let at = batch.add_node(form, valu)?;
        let buid = batch.protos[at].buid;
        batch.flush()?;
        self.require(&buid)
    }

    /// Set a prop of a node: Synapse's `node.set(name, valu)`. Returns whether it changed.
    pub fn set_prop(&self, node: &Node, name: &str, valu: &Value) -> SynResult<bool> {
        self.confirm_prop("set", &node.form, name)?;
        let mut batch = self.batch();
        let at = batch.load(node)?;
        let changed = batch.set(at, name, valu, None)?;
        batch.flush()?;
        Ok(changed)
    }

    /// Delete a prop of a node: Synapse's `node.pop(name)`; read-only props only with `init`.
    pub fn pop_prop(&self, node: &Node, name: &str, init: bool) -> SynResult<bool> {
        if name.starts_with('.') {
            self.confirm(&["node", "prop", "del", name])?;
        } else {
            self.confirm_prop("del", &node.form, name)?;
        }
        let form = self.model().req_form(&node.form)?;
        let prop = form.prop(name).ok_or_else(|| {
            SynErr::new("NoSuchProp", format!("No property named {name}."))
                .with("name", name)
                .with("form", node.form.as_str())
        })?;
        if !init && prop.ro {
            // Synapse raises this one without a message.
            return Err(SynErr {
                name: "ReadOnlyProp".into(),
                info: vec![("name".into(), Value::from(name))],
            });
        }
        if node.get(name).is_none() {
            return Ok(false);
        }
        let edit = Edit::PropDel {
            prop: name.to_string(),
            oldv: Value::Nil,
            stortype: prop.stortype,
        };
        self.apply(&[on_node(node, vec![edit])])?;
        Ok(true)
    }

    /// Delete a tag, the tags below it and their tag props from a node.
    pub fn del_tag(&self, node: &Node, tag: &str) -> SynResult<()> {
        self.confirm_tag("del", tag)?;
        let edits = self.tag_del_edits(node, tag);
        if !edits.is_empty() {
            self.apply(&[on_node(node, edits)])?;
        }
        Ok(())
    }

    /// Set a tag prop (adding the tag).
    pub fn set_tagprop(&self, node: &Node, tag: &str, prop: &str, valu: &Value) -> SynResult<()> {
        self.confirm_tag("add", tag)?;
        let mut batch = self.batch();
        let at = batch.load(node)?;
        batch.set_tagprop(at, tag, prop, valu)?;
        batch.flush()?;
        Ok(())
    }

    /// Delete a tag prop.
    pub fn del_tagprop(&self, node: &Node, tag: &str, prop: &str) -> SynResult<bool> {
        self.confirm_tag("del", tag)?;
        let tp = self
            .model()
            .tagprop(prop)
            .ok_or_else(|| no_such_tagprop(prop))?;
        if node.tagprop(tag, prop).is_none() {
            return Ok(false);
        }
        let edit = Edit::TagPropDel {
            tag: tag.to_string(),
            prop: prop.to_string(),
            oldv: Value::Nil,
            stortype: tp.stortype,
        };
        self.apply(&[on_node(node, vec![edit])])?;
        Ok(true)
    }

    /// Set node data.
    pub fn set_data(&self, node: &Node, name: &str, valu: &Value) -> SynResult<()> {
        self.confirm(&["node", "data", "set", name])?;
        let mut batch = self.batch();
        let at = batch.load(node)?;
        batch.set_data(at, name, valu)?;
        batch.flush()?;
        Ok(())
    }

    /// Remove node data; returns the old value (Nil if there was none).
    pub fn pop_data(&self, node: &Node, name: &str) -> SynResult<Value> {
        self.confirm(&["node", "data", "pop", name])?;
        let old = self.view.nodedata(&node.buid, name)?.unwrap_or(Value::Nil);
        let edit = Edit::NodeDataDel {
            name: name.to_string(),
            oldv: Value::Nil,
        };
        self.apply(&[on_node(node, vec![edit])])?;
        Ok(old)
    }

    /// Add (or with `del` remove) the light edge `n1 -(verb)> n2`.
    pub fn edge(&self, n1: &Node, verb: &str, n2: &Buid, del: bool) -> SynResult<()> {
        self.confirm(&["node", "edge", if del { "del" } else { "add" }, verb])?;
        let mut batch = self.batch();
        let at = batch.load(n1)?;
        if del {
            batch.del_edge(at, verb, n2)?;
        } else {
            batch.add_edge(at, verb, n2)?;
        }
        batch.flush()?;
        Ok(())
    }

    /// Delete a node: refused (`CantDelNode`) while other nodes refer to it, have light edges
    /// to it, or (for a syn:tag) carry the tag, unless `force`. Deletes its tags (children
    /// first), props and value.
    pub fn delete_node(&self, node: &Node, force: bool) -> SynResult<()> {
        let model = self.model();
        let form = model.req_form(&node.form)?;
        if form.runt {
            return Err(SynErr::new("IsRuntForm", "Cannot delete runt nodes")
                .with("form", node.form.as_str())
                .with("valu", node.valu.clone()));
        }
        for (tag, _) in &node.tags {
            self.confirm_tag("del", tag)?;
        }
        self.confirm(&["node", "del", &node.form])?;
        let cant = |mesg: &str| {
            SynErr::new("CantDelNode", mesg)
                .with("form", node.form.as_str())
                .with("iden", node.iden())
        };
        if !force {
            if node.form == "syn:tag"
                && let Some(tag) = node.valu.as_str()
                && !self.view.lift_tag(tag, None)?.is_empty()
            {
                return Err(cant("Nodes still have this tag."));
            }
            for refr in self.refs_to(&node.form, &node.valu)? {
                if refr != node.buid {
                    return Err(cant("Other nodes still refer to this node."));
                }
            }
            for (_, n1) in self.view.edges_n2(&node.buid, None)? {
                if n1 != node.buid {
                    return Err(cant("Other nodes still have light edges to this node."));
                }
            }
        }
        let mut edits = Vec::new();
        for (tag, _) in &node.tags {
            if !tag.contains('.') {
                edits.extend(self.tag_del_edits(node, tag));
            }
        }
        for (name, _) in &node.props {
            if let Some(prop) = form.prop(name) {
                edits.push(Edit::PropDel {
                    prop: name.clone(),
                    oldv: Value::Nil,
                    stortype: prop.stortype,
                });
            }
        }
        edits.push(Edit::NodeDel {
            valu: node.valu.clone(),
            stortype: form.stortype(),
        });
        self.apply(&[on_node(node, edits)])?;
        Ok(())
    }

    /// Buids of nodes whose props (or array props) of the form's type hold `valu`.
    fn refs_to(&self, form: &str, valu: &Value) -> SynResult<Vec<Buid>> {
        let model = self.model();
        let mut out = Vec::new();
        for prop in self.view.props_of_type(form) {
            let cmprs = prop.typ.stor_cmprs(model, "=", valu)?;
            out.extend(
                self.view
                    .lift_prop_valu(&PropRef::Prop(prop.clone()), &cmprs)?,
            );
        }
        for prop in self.view.array_props_of_type(form) {
            if let Some(elem) = prop.typ.array_elem(model) {
                let cmprs = elem.stor_cmprs(model, "=", valu)?;
                out.extend(self.view.lift_prop_array(prop, &cmprs)?);
            }
        }
        Ok(out)
    }

    /// Synapse's `_getTagDelEdits`: the tags below `tag` (longest first) with their tag
    /// props, then `tag`'s tag props and `tag` itself.
    fn tag_del_edits(&self, node: &Node, tag: &str) -> Vec<Edit> {
        let pref = format!("{tag}.");
        let mut below: Vec<&String> = node
            .tags
            .iter()
            .map(|(t, _)| t)
            .filter(|t| t.starts_with(&pref))
            .collect();
        below.sort_by(|a, b| (b.len(), b.as_str()).cmp(&(a.len(), a.as_str())));
        let mut edits = Vec::new();
        for sub in below {
            edits.extend(self.tagprop_del_edits(node, sub));
            edits.push(Edit::TagDel {
                tag: sub.clone(),
                oldv: (None, None),
            });
        }
        edits.extend(self.tagprop_del_edits(node, tag));
        if node.tag(tag).is_some() {
            edits.push(Edit::TagDel {
                tag: tag.to_string(),
                oldv: (None, None),
            });
        }
        edits
    }

    fn tagprop_del_edits(&self, node: &Node, tag: &str) -> Vec<Edit> {
        let Some((_, props)) = node.tagprops.iter().find(|(t, _)| t == tag) else {
            return Vec::new();
        };
        props
            .iter()
            .filter_map(|(name, _)| {
                let tp = self.model().tagprop(name)?;
                Some(Edit::TagPropDel {
                    tag: tag.to_string(),
                    prop: name.clone(),
                    oldv: Value::Nil,
                    stortype: tp.stortype,
                })
            })
            .collect()
    }

    /// Add a node from a packed node `((form, valu), {props, tags, tagprops, nodedata,
    /// edges})` as `addFeedData('syn.nodes', ...)` does: `.created` is ignored, and a bad
    /// prop, tag or tag prop is skipped with a warning rather than failing the node.
    pub fn add_packed_node(&self, pode: &Value) -> SynResult<Option<Node>> {
        let failed = |err: &dyn std::fmt::Display| {
            self.sink.warn(&format!(
                "addNodes failed on {}: {}",
                py_value_repr(pode),
                err
            ));
            Ok(None)
        };
        let (form, valu, info) = match pode.as_array() {
            Some([ndef, info]) => match ndef.as_array() {
                Some([Value::Str(form), valu]) => (form, valu, info),
                _ => return failed(&"not a (form, valu) pair"),
            },
            _ => return failed(&"not a packed node"),
        };
        let mut batch = self.batch();
        let at = match batch.add_node(form, valu) {
            Ok(at) => at,
            Err(err) => return failed(&err),
        };
        let pairs = |key: &str| -> Vec<(Value, Value)> {
            info.get(key)
                .and_then(Value::as_map)
                .map(<[_]>::to_vec)
                .unwrap_or_default()
        };
        for (name, valu) in pairs("props") {
            let Some(name) = name.as_str() else { continue };
            if name == ".created" {
                continue;
            }
            if let Err(err) = batch.set(at, name, &valu, None) {
                self.sink.warn(&err.to_string());
            }
        }
        for (tag, ival) in pairs("tags") {
            let Some(tag) = tag.as_str() else { continue };
            let ival = (!is_untimed(&ival)).then_some(&ival);
            if let Err(err) = batch.add_tag(at, tag, ival) {
                self.sink.warn(&err.to_string());
            }
        }
        for (name, data) in pairs("nodedata") {
            let Some(name) = name.as_str() else { continue };
            if let Err(err) = batch.set_data(at, name, &data) {
                self.sink.warn(&err.to_string());
            }
        }
        for (tag, props) in pairs("tagprops") {
            let Some(tag) = tag.as_str() else { continue };
            for (name, valu) in props.as_map().unwrap_or(&[]) {
                let Some(name) = name.as_str() else { continue };
                if let Err(err) = batch.set_tagprop(at, tag, name, valu) {
                    self.sink.warn(&err.to_string());
                }
            }
        }
        for edge in info.get("edges").and_then(Value::as_array).unwrap_or(&[]) {
            let Some([Value::Str(verb), target]) = edge.as_array() else {
                continue;
            };
            let n2 = match target {
                Value::Str(iden) => parse_iden(iden),
                Value::Array(n2def) => match n2def.as_slice() {
                    [Value::Str(f), v] => match batch.add_node(f, v) {
                        Ok(n2at) => Some(batch.protos[n2at].buid),
                        Err(err) => {
                            self.sink.warn(&err.to_string());
                            None
                        }
                    },
                    _ => None,
                },
                _ => None,
            };
            match n2 {
                Some(n2) => batch.add_edge(at, verb, &n2)?,
                None => self
                    .sink
                    .warn(&format!("addEdge() got an invalid node iden: {target}")),
            }
        }
        let buid = batch.protos[at].buid;
        batch.flush()?;
        self.view.node(&buid)
    }

    /// Synapse's `syn.nodes` feed: add each packed node of `items` (see
    /// [`Editor::add_packed_node`]), then make the edits durable. Returns how many nodes were
    /// added or merged.
    pub fn add_feed_nodes(&self, items: &[Value]) -> SynResult<usize> {
        let mut added = 0;
        for item in items {
            if self.add_packed_node(item)?.is_some() {
                added += 1;
            }
        }
        self.make_durable()?;
        Ok(added)
    }

    /// The node of a buid just written (see [`Editor::node`]); an error if it is gone.
    pub fn require(&self, buid: &Buid) -> SynResult<Node> {
        self.node(buid)?.ok_or_else(|| {
            SynErr::new(
                "NoSuchIden",
                format!("node {} vanished while editing", iden(buid)),
            )
        })
    }

    // -----------------------------------------------------------------------------------------
    // Hooks: Synapse's form onAdd and prop onSet callbacks of the data model.

    /// Whether the model has hooks on nodes of `form`, which may edit a node of it after any
    /// write of its edits.
    pub fn hooked(&self, form: &str) -> bool {
        HOOKS.iter().any(|(f, _)| *f == form)
    }

    fn run_hook(&self, hook: Hook<'_>) -> SynResult<()> {
        let (buid, form, prop) = match hook {
            Hook::Added(b, f) => (b, f, None),
            Hook::Set(b, f, p) => (b, f, Some(p)),
        };
        // Deprecated forms and props warn first (their callbacks come first in Synapse).
        if let Some(formobj) = self.model().form(form) {
            match prop.and_then(|p| formobj.prop(p)) {
                Some(p) if deprecated(p) => self.warn_once(prop_deprecated(&p.full)),
                None if prop.is_none() && formobj.typ.deprecated() => self.warn_once(format!(
                    "The form {form} is deprecated or using a deprecated type and will be removed in 3.0.0"
                )),
                _ => {}
            }
        }
        if !HOOKS.contains(&(form, prop)) {
            return Ok(());
        }
        let Some(node) = self.view.node(buid)? else {
            return Ok(());
        };
        match (form, prop) {
            ("inet:fqdn", None) => self.fqdn_added(&node),
            ("inet:fqdn", Some("issuffix")) => self.fqdn_issuffix_set(&node),
            ("inet:fqdn", Some("iszone")) => self.fqdn_iszone_set(&node),
            ("inet:fqdn", Some("zone")) => self.fqdn_zone_set(&node),
            ("inet:passwd", None) => self.passwd_added(&node),
            ("it:dev:str", None) => self.set_prop(&node, "norm", &node.valu).map(drop),
            ("it:dev:pipe" | "it:dev:mutex" | "it:dev:regkey", None) => {
                self.add_node("it:dev:str", &node.valu).map(drop)
            }
            ("it:prod:softver", Some("arch")) => match node.get("arch") {
                Some(arch) if truthy(arch) => self.add_node("it:dev:str", arch).map(drop),
                _ => Ok(()),
            },
            ("it:prod:softver", Some("vers")) => self.softver_vers_set(&node),
            ("file:bytes", Some("mime")) => match node.get("mime") {
                Some(Value::Str(mime)) if mime != "??" => {
                    let pair = Value::Array(vec![node.valu.clone(), Value::from(mime.as_str())]);
                    self.add_node("file:ismime", &pair).map(drop)
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn lift_fqdn_children(&self, fqdn: &Value) -> SynResult<Vec<Node>> {
        let model = self.model();
        let Some(PropRef::Prop(domain)) = self.view.prop_ref("inet:fqdn:domain") else {
            return Ok(Vec::new());
        };
        let cmprs = domain.typ.stor_cmprs(model, "=", fqdn)?;
        let mut out = Vec::new();
        for b in self
            .view
            .lift_prop_valu(&PropRef::Prop(domain.clone()), &cmprs)?
        {
            if let Some(n) = self.view.node(&b)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn fqdn_added(&self, node: &Node) -> SynResult<()> {
        let mut batch = self.batch();
        let at = batch.load(node)?;
        let Some(domain) = node.get("domain").cloned() else {
            batch.set(at, "iszone", &Value::Bool(false), None)?;
            batch.set(at, "issuffix", &Value::Bool(true), None)?;
            batch.flush()?;
            return Ok(());
        };
        if batch.get(at, "issuffix").is_none() {
            batch.set(at, "issuffix", &Value::Bool(false), None)?;
        }
        let parent = match self.view.node_by_ndef("inet:fqdn", &domain)? {
            Some(parent) => batch.load(&parent)?,
            None => batch.add_node("inet:fqdn", &domain)?,
        };
        if batch.get(parent, "issuffix").is_some_and(truthy) {
            batch.set(at, "iszone", &Value::Bool(true), None)?;
            batch.set(at, "zone", &node.valu, None)?;
        } else {
            batch.set(at, "iszone", &Value::Bool(false), None)?;
            if batch.get(parent, "iszone").is_some_and(truthy) {
                batch.set(at, "zone", &domain, None)?;
            } else if let Some(zone) = batch.get(parent, "zone").cloned() {
                batch.set(at, "zone", &zone, None)?;
            }
        }
        batch.flush()?;
        Ok(())
    }

    fn fqdn_issuffix_set(&self, node: &Node) -> SynResult<()> {
        let issuffix = node.get("issuffix").cloned().unwrap_or(Value::Nil);
        let mut batch = self.batch();
        for child in self.lift_fqdn_children(&node.valu)? {
            if child.get("iszone").cloned().unwrap_or(Value::Nil) == issuffix {
                continue;
            }
            let at = batch.load(&child)?;
            batch.set(at, "iszone", &issuffix, None)?;
        }
        batch.flush()?;
        Ok(())
    }

    fn fqdn_iszone_set(&self, node: &Node) -> SynResult<()> {
        if node.get("iszone").is_some_and(truthy) {
            self.set_prop(node, "zone", &node.valu)?;
            return Ok(());
        }
        let domain = match node.get("domain") {
            Some(d) if truthy(d) => d.clone(),
            _ => {
                self.pop_prop(node, "zone", false)?;
                return Ok(());
            }
        };
        let parent = self.add_node("inet:fqdn", &domain)?;
        let node = self.require(&node.buid)?;
        match parent.get("zone") {
            None => self.pop_prop(&node, "zone", false).map(drop),
            Some(zone) => self.set_prop(&node, "zone", zone).map(drop),
        }
    }

    fn fqdn_zone_set(&self, node: &Node) -> SynResult<()> {
        let zone = node.get("zone").cloned().unwrap_or(Value::Nil);
        let mut todo = vec![node.valu.clone()];
        let mut batch = self.batch();
        while let Some(fqdn) = todo.pop() {
            for child in self.lift_fqdn_children(&fqdn)? {
                if child.get("iszone").is_some_and(truthy)
                    || child.get("zone").cloned().unwrap_or(Value::Nil) == zone
                {
                    continue;
                }
                let at = batch.load(&child)?;
                batch.set(at, "zone", &zone, None)?;
                todo.push(child.valu.clone());
            }
        }
        batch.flush()?;
        Ok(())
    }

    fn passwd_added(&self, node: &Node) -> SynResult<()> {
        use md5::Digest;
        let Some(text) = node.valu.as_str() else {
            return Ok(());
        };
        let bytes = text.as_bytes();
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
        let hashes = [
            ("md5", hex::encode(md5::Md5::digest(bytes))),
            ("sha1", hex::encode(sha1.as_ref())),
            ("sha256", hex::encode(crate::guid::sha256(bytes))),
        ];
        for (name, hash) in hashes {
            let current = self.require(&node.buid)?;
            self.set_prop(&current, name, &Value::from(hash))?;
        }
        Ok(())
    }

    fn softver_vers_set(&self, node: &Node) -> SynResult<()> {
        let vers = match node.get("vers") {
            Some(v) if truthy(v) => v.clone(),
            _ => return Ok(()),
        };
        self.set_prop(node, "vers:norm", &vers)?;
        self.add_node("it:dev:str", &vers)?;
        let Some(semver) = self.model().typ("it:semver") else {
            return Ok(());
        };
        let Ok(norm) = semver.norm(self.model(), &vers) else {
            return Ok(());
        };
        let current = self.require(&node.buid)?;
        self.set_prop(&current, "semver", &norm.valu)?;
        for (sub, valu) in &norm.subs {
            let current = self.require(&node.buid)?;
            self.set_prop(&current, &format!("semver:{sub}"), valu)?;
        }
        Ok(())
    }
}

/// A model callback to run after a batch is stored.
enum Hook<'e> {
    /// A node of the form was added.
    Added(&'e Buid, &'e str),
    /// A prop of a node of the form was set.
    Set(&'e Buid, &'e str, &'e str),
}

/// Whether the model marks a prop, or its type, deprecated (it warns when set).
pub fn deprecated(prop: &Prop) -> bool {
    deprecated_itself(prop) || prop.typ.deprecated()
}

/// Whether the model marks the prop itself deprecated (set as a norm sub, it never warns).
fn deprecated_itself(prop: &Prop) -> bool {
    prop.info
        .get("deprecated")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Python's `repr()` of a value that came from storm or msgpack (arrays are tuples).
fn tuple_repr(v: &Value) -> String {
    match v {
        Value::Array(items) if items.len() == 1 => format!("({},)", tuple_repr(&items[0])),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(tuple_repr).collect();
            format!("({})", inner.join(", "))
        }
        other => py_value_repr(other),
    }
}

/// Synapse's warning for a deprecated prop.
fn prop_deprecated(full: &str) -> String {
    format!(
        "The property {full} is deprecated or using a deprecated type and will be removed in 3.0.0"
    )
}

fn on_node(node: &Node, edits: Vec<Edit>) -> NodeEdit {
    NodeEdit {
        buid: node.buid,
        form: node.form.clone(),
        edits,
    }
}

/// Python truth of a stored value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Map(m) => !m.is_empty(),
        _ => true,
    }
}

fn is_untimed(v: &Value) -> bool {
    matches!(v.as_array(), Some([Value::Nil, Value::Nil])) || v.is_nil()
}

fn parse_iden(iden: &str) -> Option<Buid> {
    hex::decode(iden).ok()?.try_into().ok()
}

/// Synapse's normalizers name the bad value in their `BadTypeValu`; add it where the model's
/// error left it out (not to "no norm for type" errors, which Synapse raises without it).
///
/// Values that reach the editor come from storm or msgpack, where Synapse sees arrays as
/// tuples: its messages say `tuple` where the model's say `list`.
pub fn with_valu(err: SynErr, valu: &Value) -> SynErr {
    let mut err = err;
    if matches!(valu, Value::Array(_))
        && let Some(slot) = err.info.iter_mut().find(|(k, _)| k == "mesg")
        && let Some(text) = slot.1.as_str()
    {
        slot.1 = Value::from(text.replace("<class 'list'>", "<class 'tuple'>"));
    }
    if err.name != "BadTypeValu"
        || err.field("valu").is_some()
        || err.mesg().starts_with("no norm for type")
    {
        return err;
    }
    err.with("valu", valu.clone())
}

fn no_such_tagprop(name: &str) -> SynErr {
    SynErr::new(
        "NoSuchTagProp",
        format!("Tagprop {name} does not exist in this Cortex."),
    )
}

/// The hooks of the data model: a form's node add (None) or a prop's set.
const HOOKS: &[(&str, Option<&str>)] = &[
    ("inet:fqdn", None),
    ("inet:fqdn", Some("zone")),
    ("inet:fqdn", Some("iszone")),
    ("inet:fqdn", Some("issuffix")),
    ("inet:passwd", None),
    ("it:dev:str", None),
    ("it:dev:pipe", None),
    ("it:dev:mutex", None),
    ("it:dev:regkey", None),
    ("it:prod:softver", Some("arch")),
    ("it:prod:softver", Some("vers")),
    ("file:bytes", Some("mime")),
];

/// A node being edited in a batch.
struct Proto {
    buid: Buid,
    form: Arc<Form>,
    valu: Value,
    /// The node as stored, unless the batch adds it.
    node: Option<Node>,
    props: Vec<(String, Value)>,
    tags: Vec<(String, Ival)>,
    tagprops: Vec<((String, String), Value)>,
    nodedata: Vec<(String, Value)>,
    edges: Vec<(String, Buid)>,
    edgedels: Vec<(String, Buid)>,
}

impl Proto {
    /// A node to stage: `node` is the stored one, if any.
    fn new(buid: Buid, form: Arc<Form>, valu: Value, node: Option<Node>) -> Proto {
        Proto {
            buid,
            form,
            valu,
            node,
            props: Vec::new(),
            tags: Vec::new(),
            tagprops: Vec::new(),
            nodedata: Vec::new(),
            edges: Vec::new(),
            edgedels: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .or_else(|| self.node.as_ref().and_then(|n| n.get(name)))
    }

    fn tag(&self, tag: &str) -> Option<Ival> {
        self.tags
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, i)| *i)
            .or_else(|| self.node.as_ref().and_then(|n| n.tag(tag)))
    }

    fn put<K: PartialEq, V>(list: &mut Vec<(K, V)>, key: K, valu: V) {
        match list.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = valu,
            None => list.push((key, valu)),
        }
    }

    /// Synapse's `ProtoNode.getNodeEdit`: add, props, tags, edges, edge deletions, tag
    /// props, node data.
    fn nodeedit(&self, model: &Model) -> Option<NodeEdit> {
        let mut edits = Vec::new();
        if self.node.is_none() {
            edits.push(Edit::NodeAdd {
                valu: self.valu.clone(),
                stortype: self.form.stortype(),
            });
        }
        for (name, valu) in &self.props {
            if let Some(prop) = self.form.prop(name) {
                edits.push(Edit::PropSet {
                    prop: name.clone(),
                    valu: valu.clone(),
                    oldv: Value::Nil,
                    stortype: prop.stortype,
                });
            }
        }
        for (tag, ival) in &self.tags {
            edits.push(Edit::TagSet {
                tag: tag.clone(),
                valu: *ival,
                oldv: None,
            });
        }
        for (verb, n2) in &self.edges {
            edits.push(Edit::EdgeAdd {
                verb: verb.clone(),
                n2: *n2,
            });
        }
        for (verb, n2) in &self.edgedels {
            edits.push(Edit::EdgeDel {
                verb: verb.clone(),
                n2: *n2,
            });
        }
        for ((tag, prop), valu) in &self.tagprops {
            if let Some(tp) = model.tagprop(prop) {
                edits.push(Edit::TagPropSet {
                    tag: tag.clone(),
                    prop: prop.clone(),
                    valu: valu.clone(),
                    oldv: Value::Nil,
                    stortype: tp.stortype,
                });
            }
        }
        for (name, valu) in &self.nodedata {
            edits.push(Edit::NodeDataSet {
                name: name.clone(),
                valu: valu.clone(),
                oldv: Value::Nil,
            });
        }
        (!edits.is_empty()).then(|| NodeEdit {
            buid: self.buid,
            form: self.form.name.clone(),
            edits,
        })
    }
}

/// A staged change waiting its turn in a breadth-first node add.
enum Op {
    /// Set a norm sub (`getSetSubOps`).
    SetSub {
        proto: usize,
        name: String,
        valu: Value,
        norm: Option<Norm>,
    },
    /// Add a node unless it exists (`getAddNodeOps`).
    AddNode {
        form: String,
        valu: Value,
        norm: Option<Norm>,
    },
}

impl Op {
    /// Set each norm sub of the node staged at `proto`.
    fn set_subs(proto: usize, subs: Vec<(String, Value)>) -> impl Iterator<Item = Op> {
        subs.into_iter().map(move |(name, valu)| Op::SetSub {
            proto,
            name,
            valu,
            norm: None,
        })
    }

    /// Add each node a norm points to, already normalized.
    fn add_nodes(adds: Vec<(String, Norm)>) -> impl Iterator<Item = Op> {
        adds.into_iter().map(|(form, n)| Op::AddNode {
            form,
            valu: n.valu.clone(),
            norm: Some(n),
        })
    }
}

/// Staged edits of several nodes, applied together by [`EditBatch::flush`] (Synapse's
/// `SnapEditor`). Nodes are addressed by the index [`EditBatch::add_node`] or
/// [`EditBatch::load`] returned.
pub struct EditBatch<'e, 'a> {
    editor: &'e Editor<'a>,
    protos: Vec<Proto>,
    index: BuidMap<usize>,
    /// The staged nodes that were found missing, for the write.
    absent: Absent,
}

impl EditBatch<'_, '_> {
    fn model(&self) -> &Model {
        self.editor.model()
    }

    /// The buid of a staged node.
    pub fn buid(&self, at: usize) -> Buid {
        self.protos[at].buid
    }

    /// The form of a staged node.
    pub fn form(&self, at: usize) -> &Arc<Form> {
        &self.protos[at].form
    }

    /// The current value of a staged node's prop (staged or stored).
    pub fn get(&self, at: usize, name: &str) -> Option<&Value> {
        self.protos[at].get(name)
    }

    /// Stage edits to a stored node.
    pub fn load(&mut self, node: &Node) -> SynResult<usize> {
        if let Some(&at) = self.index.get(&node.buid) {
            return Ok(at);
        }
        let form = self.model().req_form(&node.form)?.clone();
        Ok(self.push(Proto::new(
            node.buid,
            form,
            node.valu.clone(),
            Some(node.clone()),
        )))
    }

    fn push(&mut self, proto: Proto) -> usize {
        let at = self.protos.len();
        self.index.insert(proto.buid, at);
        self.protos.push(proto);
        at
    }

    /// Add a node by form and value (normalized here), with its subs and adds.
    pub fn add_node(&mut self, form: &str, valu: &Value) -> SynResult<usize> {
        let model = self.editor.model();
        let formobj = form_to_add(model, form, valu)?;
        let norm = formobj
            .norm(model, valu)
            .map_err(|e| with_valu(e, valu).with("form", form))?;
        self.add_normed(formobj.clone(), norm)
    }

    /// Synapse's `_initProtoNode`: the node of a normalized value, with its subs set and its
    /// adds added breadth first.
    fn add_normed(&mut self, form: Arc<Form>, norm: Norm) -> SynResult<usize> {
        let buid = buid(&form.name, &norm.valu);
        if let Some(&at) = self.index.get(&buid) {
            return Ok(at);
        }
        let version = self.editor.view.write_layer().next_offset();
        let (node, stored) = self.editor.node_and_stored(&buid)?;
        if !stored {
            self.absent.note(version, buid);
        }
        let at = self.push(Proto::new(buid, form, norm.valu.clone(), node));
        let mut ops: VecDeque<Op> = Op::set_subs(at, norm.subs).collect();
        self.drain(&mut ops)?;
        ops.extend(Op::add_nodes(norm.adds));
        self.drain(&mut ops)?;
        Ok(at)
    }

    fn drain(&mut self, ops: &mut VecDeque<Op>) -> SynResult<()> {
        while let Some(op) = ops.pop_front() {
            let more = match op {
                Op::SetSub {
                    proto,
                    name,
                    valu,
                    norm,
                } => self.set_sub_ops(proto, &name, &valu, norm)?,
                Op::AddNode { form, valu, norm } => self.add_node_ops(&form, &valu, norm)?,
            };
            ops.extend(more);
        }
        Ok(())
    }

    /// Synapse's `getSetSubOps`.
    fn set_sub_ops(
        &mut self,
        at: usize,
        name: &str,
        valu: &Value,
        norm: Option<Norm>,
    ) -> SynResult<Vec<Op>> {
        let Some(prop) = self.protos[at].form.prop(name).cloned() else {
            return Ok(Vec::new());
        };
        if deprecated_itself(&prop) {
            self.editor.skip_prop_warning(&prop.full);
        }
        let Some(norm) = self.set_one(at, &prop, valu, norm)? else {
            return Ok(Vec::new());
        };
        let mut ops = Vec::new();
        if self.model().form(&prop.typ.name).is_some() {
            ops.push(Op::AddNode {
                form: prop.typ.name.clone(),
                valu: norm.valu.clone(),
                norm: Some(norm.clone()),
            });
        }
        for (sub, subv) in norm.subs {
            ops.push(Op::SetSub {
                proto: at,
                name: format!("{name}:{sub}"),
                valu: subv,
                norm: None,
            });
        }
        for (form, n) in norm.adds {
            ops.push(Op::AddNode {
                form,
                valu: n.valu.clone(),
                norm: Some(n),
            });
        }
        Ok(ops)
    }

    /// Synapse's `getAddNodeOps`: add a node unless it is staged or stored already.
    fn add_node_ops(&mut self, form: &str, valu: &Value, norm: Option<Norm>) -> SynResult<Vec<Op>> {
        let model = self.editor.model();
        let formobj = form_to_add(model, form, valu)?;
        let norm = match norm {
            Some(n) => n,
            None => formobj
                .norm(model, valu)
                .map_err(|e| e.with("form", form))?,
        };
        let buid = buid(form, &norm.valu);
        if self.index.contains_key(&buid) || self.editor.view.node(&buid)?.is_some() {
            return Ok(Vec::new());
        }
        let at = self.push(Proto::new(buid, formobj.clone(), norm.valu.clone(), None));
        Ok(Op::set_subs(at, norm.subs)
            .chain(Op::add_nodes(norm.adds))
            .collect())
    }

    /// Synapse's `ProtoNode._set`: normalize, skip an unchanged value, refuse to change a
    /// read-only prop, stage. Returns the norm when the prop changed.
    fn set_one(
        &mut self,
        at: usize,
        prop: &Arc<Prop>,
        valu: &Value,
        norm: Option<Norm>,
    ) -> SynResult<Option<Norm>> {
        let model = self.editor.model();
        let norm = match norm {
            Some(n) => n,
            None => prop.typ.norm(model, valu).map_err(|e| {
                if e.name != "BadTypeValu" || e.field("prop").is_some() {
                    return e;
                }
                let e = with_valu(e, valu);
                let mesg = format!(
                    "Bad prop value {}={} : {}",
                    prop.full,
                    tuple_repr(valu),
                    e.mesg()
                );
                let form = prop.form.clone().unwrap_or_default();
                let mut e = with_valu(e, valu)
                    .with("prop", prop.name.as_str())
                    .with("form", form);
                if let Some(slot) = e.info.iter_mut().find(|(k, _)| k == "mesg") {
                    slot.1 = Value::from(mesg);
                }
                e
            })?,
        };
        let proto = &mut self.protos[at];
        let curv = proto.get(&prop.name);
        if curv == Some(&norm.valu) {
            return Ok(None);
        }
        if prop.ro && curv.is_some() {
            return Err(SynErr::new(
                "ReadOnlyProp",
                format!("Property is read only: {}.", prop.full),
            ));
        }
        Proto::put(&mut proto.props, prop.name.clone(), norm.valu.clone());
        Ok(Some(norm))
    }

    /// Set a prop (Synapse's `ProtoNode.set`): the prop, then the node its value is (if its
    /// type is a form), its subs (depth first) and its adds. Returns whether it changed;
    /// unknown props change nothing.
    pub fn set(
        &mut self,
        at: usize,
        name: &str,
        valu: &Value,
        norm: Option<Norm>,
    ) -> SynResult<bool> {
        let Some(prop) = self.protos[at].form.prop(name).cloned() else {
            return Ok(false);
        };
        let Some(norm) = self.set_one(at, &prop, valu, norm)? else {
            return Ok(false);
        };
        if let Some(form) = self.model().form(&prop.typ.name).cloned() {
            if form.runt {
                return Err(SynErr::new(
                    "IsRuntForm",
                    format!("Cannot make runt nodes: {}.", form.name),
                ));
            }
            self.add_normed(form, norm.clone())?;
        }
        for (sub, subv) in &norm.subs {
            let full = format!("{name}:{sub}");
            if let Some(subprop) = self.protos[at].form.prop(&full).cloned() {
                if deprecated_itself(&subprop) {
                    self.editor.skip_prop_warning(&subprop.full);
                }
                self.set(at, &full, subv, None)?;
            }
        }
        for (form, n) in norm.adds {
            let form = self.model().req_form(&form)?.clone();
            self.add_normed(form, n)?;
        }
        Ok(true)
    }

    /// Add a tag with an optional interval (Synapse's `ProtoNode.addTag`): its syn:tag nodes,
    /// its parent tags (untimed), then the tag, merging the interval with the current one.
    /// Returns the normalized tag name.
    pub fn add_tag(&mut self, at: usize, tag: &str, valu: Option<&Value>) -> SynResult<String> {
        let model = self.editor.model();
        let known = self.editor.tag_nodes.borrow().get(tag).cloned();
        let (name, up) = match known {
            Some(known) => known,
            None => {
                let tagtype = model
                    .typ("syn:tag")
                    .ok_or_else(|| SynErr::new("NoSuchType", "No type named syn:tag."))?
                    .clone();
                let norm = tagtype.norm(model, &Value::from(tag))?;
                let name = norm.valu.as_str().unwrap_or_default().to_string();
                match self.editor.view.node_by_ndef("syn:tag", &norm.valu)? {
                    Some(node) => {
                        let up = node.get("up").and_then(Value::as_str).map(str::to_string);
                        let found = (name, up);
                        self.editor
                            .tag_nodes
                            .borrow_mut()
                            .insert(tag.to_string(), found.clone());
                        found
                    }
                    None => {
                        let form = model.req_form("syn:tag")?.clone();
                        let tagat = self.add_normed(form, norm)?;
                        let up = self.protos[tagat]
                            .get("up")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        (name, up)
                    }
                }
            }
        };
        let mut ival: Ival = (None, None);
        if let Some(valu) = valu {
            let ivaltype = model
                .typ("ival")
                .ok_or_else(|| SynErr::new("NoSuchType", "No type named ival."))?;
            let normed = ivaltype
                .norm(model, valu)
                .map_err(|e| with_valu(e, valu).with("tag", name.as_str()))?;
            ival = ival_from_value(&normed.valu)?;
        }
        if let Some(up) = up.filter(|u| !u.is_empty()) {
            self.add_tag(at, &up, None)?;
        }
        let proto = &mut self.protos[at];
        let curv = proto.tag(&name);
        let newv = match curv {
            Some(curv) if curv == ival => return Ok(name),
            None => ival,
            Some(_) if ival == (None, None) => return Ok(name),
            Some(curv) => merge_ival(curv, ival),
        };
        Proto::put(&mut proto.tags, name.clone(), newv);
        Ok(name)
    }

    /// Set a tag prop, adding the tag.
    pub fn set_tagprop(&mut self, at: usize, tag: &str, prop: &str, valu: &Value) -> SynResult<()> {
        let tagname = self.add_tag(at, tag, None)?;
        let model = self.editor.model();
        let tp = model.tagprop(prop).ok_or_else(|| no_such_tagprop(prop))?;
        let norm = tp.typ.norm(model, valu).map_err(|e| with_valu(e, valu))?;
        let proto = &mut self.protos[at];
        let key = (tagname.clone(), prop.to_string());
        let curv = proto
            .tagprops
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .or_else(|| proto.node.as_ref().and_then(|n| n.tagprop(&tagname, prop)));
        if curv == Some(&norm.valu) {
            return Ok(());
        }
        Proto::put(&mut proto.tagprops, key, norm.valu);
        Ok(())
    }

    /// Set node data (unchanged values are skipped).
    pub fn set_data(&mut self, at: usize, name: &str, valu: &Value) -> SynResult<()> {
        let proto = &self.protos[at];
        let staged = proto
            .nodedata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone());
        let curv = match staged {
            Some(v) => Some(v),
            None if proto.node.is_some() => self.editor.view.nodedata(&proto.buid, name)?,
            None => None,
        };
        if curv.as_ref() == Some(valu) {
            return Ok(());
        }
        Proto::put(
            &mut self.protos[at].nodedata,
            name.to_string(),
            valu.clone(),
        );
        Ok(())
    }

    /// Add the light edge `node -(verb)> n2` unless it exists.
    pub fn add_edge(&mut self, at: usize, verb: &str, n2: &Buid) -> SynResult<()> {
        self.stage_edge(at, verb, n2, true)
    }

    /// Remove the light edge `node -(verb)> n2` if it exists.
    pub fn del_edge(&mut self, at: usize, verb: &str, n2: &Buid) -> SynResult<()> {
        self.stage_edge(at, verb, n2, false)
    }

    /// Stage adding (`add`) or removing a light edge: nothing if already staged, undo the
    /// opposite staged change, else stage it when the stored graph differs.
    fn stage_edge(&mut self, at: usize, verb: &str, n2: &Buid, add: bool) -> SynResult<()> {
        let key = (verb.to_string(), *n2);
        let proto = &mut self.protos[at];
        let (wanted, opposite) = if add {
            (&proto.edges, &mut proto.edgedels)
        } else {
            (&proto.edgedels, &mut proto.edges)
        };
        if wanted.contains(&key) {
            return Ok(());
        }
        if let Some(i) = opposite.iter().position(|e| *e == key) {
            opposite.remove(i);
            return Ok(());
        }
        let buid = proto.buid;
        if self.editor.view.has_edge(&buid, verb, n2)? != add {
            let proto = &mut self.protos[at];
            let staged = if add {
                &mut proto.edges
            } else {
                &mut proto.edgedels
            };
            staged.push(key);
        }
        Ok(())
    }

    /// The staged nodeedits, one per touched node in the order first touched.
    pub fn nodeedits(&self) -> Vec<NodeEdit> {
        let model = self.model();
        self.protos
            .iter()
            .filter_map(|p| p.nodeedit(model))
            .collect()
    }

    /// Apply the staged edits (see [`Editor::apply`]); returns the applied edits.
    pub fn flush(self) -> SynResult<Arc<Vec<NodeEdit>>> {
        let nodeedits = self.nodeedits();
        self.editor.apply_knowing(&nodeedits, &self.absent)
    }
}

/// Synapse's `s_time.ival(*a, *b)`: the smallest start and the largest end.
fn merge_ival(a: Ival, b: Ival) -> Ival {
    let times: Vec<i64> = [a.0, a.1, b.0, b.1].into_iter().flatten().collect();
    (times.iter().min().copied(), times.iter().max().copied())
}

/// The form a node of `valu` is added as: `NoSuchForm` for an unknown form, `IsRuntForm` for a
/// runt form, with Synapse's messages.
fn form_to_add<'m>(model: &'m Model, form: &str, valu: &Value) -> SynResult<&'m Arc<Form>> {
    let formobj = model.form(form).ok_or_else(|| {
        SynErr::new(
            "NoSuchForm",
            format!("No form named {form} for valu={}.", py_value_repr(valu)),
        )
    })?;
    if formobj.runt {
        return Err(SynErr::new(
            "IsRuntForm",
            format!("Cannot make runt nodes: {form}."),
        ));
    }
    Ok(formobj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cortex::layer::Layer;
    use std::cell::RefCell;

    /// Records the batches an editor applies.
    #[derive(Default)]
    struct Record {
        batches: RefCell<Vec<Vec<NodeEdit>>>,
        warnings: RefCell<Vec<String>>,
    }

    impl EditSink for Record {
        fn node_edits(&self, edits: &Arc<Vec<NodeEdit>>) {
            self.batches.borrow_mut().push(edits.to_vec());
        }
        fn warn(&self, mesg: &str) {
            self.warnings.borrow_mut().push(mesg.to_string());
        }
    }

    fn view() -> (tempfile::TempDir, View) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = Layer::open(dir.path(), "layr").expect("layer");
        let model = Model::shared().expect("model");
        (dir, View::new(layer, model))
    }

    fn kinds(ne: &NodeEdit) -> Vec<i64> {
        ne.edits.iter().map(Edit::kind).collect()
    }

    #[test]
    fn node_add_sets_subs_and_adds_referenced_nodes() {
        let (_dir, view) = view();
        let sink = Record::default();
        let editor = Editor::new(&view, "root", Durability::Sync, &sink);
        let node = editor
            .add_node(
                "inet:dns:a",
                &Value::from(vec![Value::from("WWW.vertex.link"), Value::from("1.2.3.4")]),
            )
            .expect("add");
        assert_eq!(node.get("fqdn"), Some(&Value::from("www.vertex.link")));
        assert_eq!(node.get("ipv4"), Some(&Value::Int(0x01020304)));
        for (form, valu) in [
            ("inet:fqdn", Value::from("www.vertex.link")),
            ("inet:fqdn", Value::from("vertex.link")),
            ("inet:fqdn", Value::from("link")),
            ("inet:ipv4", Value::Int(0x01020304)),
        ] {
            assert!(
                view.node_by_ndef(form, &valu).expect("read").is_some(),
                "{form}={valu}"
            );
        }
        let ipv4 = view
            .node_by_ndef("inet:ipv4", &Value::Int(0x01020304))
            .expect("read")
            .expect("ipv4");
        assert_eq!(ipv4.get("type"), Some(&Value::from("unicast")));
        // The fqdn hooks ran: zones and suffixes.
        let www = view
            .node_by_ndef("inet:fqdn", &Value::from("www.vertex.link"))
            .expect("read")
            .expect("www");
        assert_eq!(www.get("zone"), Some(&Value::from("vertex.link")));
        assert_eq!(www.get("iszone"), Some(&Value::Int(0)));
        let link = view
            .node_by_ndef("inet:fqdn", &Value::from("link"))
            .expect("read")
            .expect("link");
        assert_eq!(link.get("issuffix"), Some(&Value::Int(1)));
        // The main batch comes last: its hooks' batches are sent first.
        let batches = sink.batches.borrow();
        let last = batches.last().expect("a batch");
        assert_eq!(last[0].form, "inet:dns:a");
        assert_eq!(kinds(&last[0])[..2], [0, 2]);
        assert!(batches.len() > 1);
    }

    #[test]
    fn fqdn_hooks_send_four_batches_before_the_add() {
        let (_dir, view) = view();
        let sink = Record::default();
        let editor = Editor::new(&view, "root", Durability::Sync, &sink);
        editor
            .add_node("inet:fqdn", &Value::from("WWW.Vertex.Link"))
            .expect("add");
        let batches = sink.batches.borrow();
        let shape: Vec<Vec<(String, Vec<i64>)>> = batches
            .iter()
            .map(|b| b.iter().map(|ne| (ne.form.clone(), kinds(ne))).collect())
            .collect();
        assert_eq!(shape.len(), 5, "{shape:?}");
        // www: issuffix+iszone; www: zone; vertex.link: issuffix+iszone+zone; link: iszone.
        assert_eq!(shape[0][0].1, vec![2, 2]);
        assert_eq!(shape[1][0].1, vec![2]);
        assert_eq!(shape[2][0].1, vec![2, 2, 2]);
        assert_eq!(shape[3][0].1, vec![2]);
        assert_eq!(shape[4].len(), 3);
        assert!(shape[4].iter().all(|(_, k)| k[0] == 0));
    }

    /// Add a tag to a stored node in a batch of its own.
    fn add_tag(editor: &Editor, node: &Node, tag: &str, valu: Option<&Value>) {
        let mut batch = editor.batch();
        let at = batch.load(node).expect("load");
        batch.add_tag(at, tag, valu).expect("tag");
        batch.flush().expect("flush");
    }

    #[test]
    fn tags_add_parents_and_syn_tag_nodes_and_merge_intervals() {
        let (_dir, view) = view();
        let editor = Editor::new(&view, "root", Durability::Sync, &());
        let node = editor
            .add_node("inet:ipv4", &Value::from("1.2.3.4"))
            .expect("add");
        let ival = |a: &str, b: &str| Value::from(vec![Value::from(a), Value::from(b)]);
        add_tag(&editor, &node, "Foo.Bar", Some(&ival("2020", "2021")));
        let node = view.node(&node.buid).expect("read").expect("node");
        add_tag(&editor, &node, "foo.bar", Some(&ival("2019-06", "2020-06")));
        let node = view.node(&node.buid).expect("read").expect("node");
        assert_eq!(node.tag("foo"), Some((None, None)));
        assert_eq!(
            node.tag("foo.bar"),
            Some((Some(1559347200000), Some(1609459200000)))
        );
        for tag in ["foo", "foo.bar"] {
            assert!(
                view.node_by_ndef("syn:tag", &Value::from(tag))
                    .expect("read")
                    .is_some()
            );
        }
        // An untimed add leaves the interval alone.
        add_tag(&editor, &node, "foo.bar", None);
        let node = view.node(&node.buid).expect("read").expect("node");
        assert_eq!(
            node.tag("foo.bar"),
            Some((Some(1559347200000), Some(1609459200000)))
        );
        editor.del_tag(&node, "foo").expect("del");
        let node = view.node(&node.buid).expect("read").expect("node");
        assert!(node.tags.is_empty());
    }

    #[test]
    fn bad_values_write_nothing_and_name_the_value() {
        let (_dir, view) = view();
        let sink = Record::default();
        let editor = Editor::new(&view, "root", Durability::Sync, &sink);
        let err = editor
            .add_node("inet:ipv4", &Value::from("300.1.1.1"))
            .expect_err("bad ipv4");
        assert_eq!(err.name, "BadTypeValu");
        assert_eq!(err.field("form"), Some(&Value::from("inet:ipv4")));
        let node = editor
            .add_node("inet:ipv4", &Value::from("1.2.3.4"))
            .expect("add");
        let before = sink.batches.borrow().len();
        let err = editor
            .set_prop(&node, "asn", &Value::from("abc"))
            .expect_err("bad asn");
        assert_eq!(err.name, "BadTypeValu");
        assert_eq!(
            err.mesg(),
            "Bad prop value inet:ipv4:asn='abc' : invalid literal for int() with base 0: 'abc'"
        );
        assert_eq!(err.field("prop"), Some(&Value::from("asn")));
        assert_eq!(sink.batches.borrow().len(), before);
        // .created is read only once set.
        let err = editor
            .set_prop(&node, ".created", &Value::from("2020"))
            .expect_err("ro");
        assert_eq!(err.name, "ReadOnlyProp");
        assert_eq!(err.mesg(), "Property is read only: inet:ipv4.created.");
    }

    #[test]
    fn delete_refuses_referenced_nodes_then_removes_everything() {
        let (_dir, view) = view();
        let editor = Editor::new(&view, "root", Durability::Sync, &());
        let node = editor
            .add_node("inet:ipv4", &Value::from("1.2.3.4"))
            .expect("add");
        editor
            .set_prop(&node, "asn", &Value::from("10"))
            .expect("asn");
        let asn = view
            .node_by_ndef("inet:asn", &Value::Int(10))
            .expect("read")
            .expect("asn node");
        let err = editor.delete_node(&asn, false).expect_err("referenced");
        assert_eq!(err.name, "CantDelNode");
        assert_eq!(err.mesg(), "Other nodes still refer to this node.");
        let node = view.node(&node.buid).expect("read").expect("node");
        add_tag(&editor, &node, "a.b", None);
        let node = view.node(&node.buid).expect("read").expect("node");
        editor.delete_node(&node, false).expect("delete");
        assert_eq!(view.node(&node.buid).expect("read"), None);
        assert_eq!(view.write_layer().sode(&node.buid).expect("sode"), None);
        editor.delete_node(&asn, false).expect("now free");
    }

    #[test]
    fn packed_nodes_add_props_tags_and_data_skipping_bad_parts() {
        let (_dir, view) = view();
        let sink = Record::default();
        let editor = Editor::new(&view, "root", Durability::Deferred, &sink);
        let pode = Value::from(vec![
            Value::from(vec![Value::from("inet:ipv4"), Value::from("5.6.7.8")]),
            Value::map([
                (
                    "props",
                    Value::map([
                        ("asn", Value::Int(7)),
                        ("loc", Value::from("US.VA")),
                        (".created", Value::Int(1)),
                        ("newp", Value::Int(1)),
                        ("latlong", Value::from("newp")),
                    ]),
                ),
                (
                    "tags",
                    Value::map([
                        ("x.y", Value::from(vec![Value::Nil, Value::Nil])),
                        ("bad..tag", Value::from(vec![Value::Nil, Value::Nil])),
                    ]),
                ),
                ("nodedata", Value::map([("d", Value::from("v"))])),
            ]),
        ]);
        let node = editor.add_packed_node(&pode).expect("add").expect("node");
        editor.make_durable().expect("durable");
        assert_eq!(node.get("asn"), Some(&Value::Int(7)));
        assert_eq!(node.get("loc"), Some(&Value::from("us.va")));
        assert_eq!(node.get("latlong"), None);
        assert_ne!(node.get(".created"), Some(&Value::Int(1)));
        assert_eq!(node.tag_names(false), vec!["x", "x.y"]);
        assert_eq!(
            view.nodedata(&node.buid, "d").expect("data"),
            Some(Value::from("v"))
        );
        assert_eq!(
            sink.warnings.borrow().len(),
            2,
            "{:?}",
            sink.warnings.borrow()
        );
    }

    #[test]
    fn nodes_an_editor_just_wrote_equal_the_view_and_follow_later_writes() {
        let (_dir, view) = view();
        let editor = Editor::new(&view, "root", Durability::Sync, &());
        let held = |buid: &Buid| {
            editor
                .written
                .borrow()
                .as_ref()
                .is_some_and(|w| w.sodes.iter().any(|(b, _)| b == buid))
        };
        let same = |buid: &Buid| {
            assert!(held(buid), "the editor keeps what it wrote");
            let kept = editor.node(buid).expect("editor");
            assert_eq!(kept, view.node(buid).expect("view"));
            kept
        };
        let node = editor
            .add_node("inet:ipv4", &Value::from("1.2.3.4"))
            .expect("add");
        let ipv4 = node.buid;
        let node = same(&ipv4).expect("node");
        editor.set_prop(&node, "asn", &Value::Int(10)).expect("set");
        let node = same(&ipv4).expect("node");
        let asn = buid("inet:asn", &Value::Int(10));
        assert_eq!(same(&asn).expect("asn node").valu, Value::Int(10));
        add_tag(
            &editor,
            &node,
            "foo.bar",
            Some(&Value::from(vec![Value::from("2019"), Value::from("2020")])),
        );
        let node = same(&ipv4).expect("node");
        editor
            .set_prop(&node, ".seen", &Value::from("2021"))
            .expect("seen");
        let node = same(&ipv4).expect("node");
        editor.del_tag(&node, "foo.bar").expect("untag");
        let node = same(&ipv4).expect("node");
        assert_eq!(node.tag_names(false), vec!["foo"]);
        editor.pop_prop(&node, "asn", false).expect("pop");
        let node = same(&ipv4).expect("node");
        assert_eq!(node.get("asn"), None);
        editor.delete_node(&node, true).expect("delete");
        assert_eq!(same(&ipv4), None);

        // A write by someone else moves the layer on: the editor reads the view again.
        let node = editor
            .add_node("inet:ipv4", &Value::from("5.6.7.8"))
            .expect("add");
        assert!(held(&node.buid));
        let other = Editor::new(&view, "root", Durability::Sync, &());
        other
            .set_prop(&node, "asn", &Value::Int(20))
            .expect("other set");
        let seen = editor.node(&node.buid).expect("read").expect("node");
        assert_eq!(seen.get("asn"), Some(&Value::Int(20)));

        // A write of many nodes is not kept (the nodes are looked up one by one).
        let mut batch = editor.batch();
        for n in 0..=WRITTEN_KEPT as i128 {
            batch.add_node("inet:ipv4", &Value::Int(n)).expect("stage");
        }
        batch.flush().expect("flush");
        assert!(editor.written.borrow().is_none());
    }

    #[test]
    fn an_editor_of_a_view_of_several_layers_reads_what_it_wrote_from_the_view() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |name: &str| Layer::open(&dir.path().join(name), name).expect("layer");
        let (top, bottom) = (open("top"), open("bottom"));
        let model = Model::shared().expect("model");
        let base = View::new(bottom.clone(), model.clone());
        let lower = Editor::new(&base, "root", Durability::Sync, &());
        let node = lower
            .add_node("inet:ipv4", &Value::from("1.2.3.4"))
            .expect("add below");
        lower
            .set_prop(&node, "asn", &Value::Int(10))
            .expect("set below");
        let fork = View::stack(vec![top, bottom], model).expect("fork");
        let editor = Editor::new(&fork, "root", Durability::Sync, &());
        let node = editor.node(&node.buid).expect("read").expect("node");
        add_tag(&editor, &node, "t", None);
        assert!(editor.written.borrow().is_none());
        let node = editor.node(&node.buid).expect("read").expect("node");
        assert_eq!(
            node.get("asn"),
            Some(&Value::Int(10)),
            "the lower layer's prop"
        );
        assert_eq!(node.tag_names(false), vec!["t"]);
    }
}
