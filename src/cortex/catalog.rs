//! The running cortex's views and layers: a [`View`] for every view of the topology (see
//! [`crate::cortex::topology`]), the layers they share, and forks made while it runs.
//!
//! The [`Catalog`] opens every layer the topology names (`layers/<iden>/`), builds each view
//! over its stack of layers (the write layer first), and answers storm's `$lib.view` and
//! `$lib.layer` through [`ViewCatalog`]. A fork ([`Catalog::fork`]) makes a new layer directory,
//! opens it, and stores the new topology with [`Topology::save`] before the view is used, so
//! a fork that was acknowledged is found again after a restart. A crash between making the
//! directory and saving leaves an empty directory that no view names, and nothing else.
//!
//! Permissions follow Synapse 2.256 as far as views go: forking view `V` needs `view.add`,
//! and `view.read` and `view.fork` on `V`'s gate; the fork's creator becomes admin of the new
//! view's and layer's gates; running storm in a view other than the default needs `view.read`
//! on its gate ([`Catalog::view_for`]). Synapse lets every user read the default view through
//! a rule of its `all` role; here the default view is open to every user who may call storm.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use super::editor::{Durability, Editor};
use super::edits::{Buid, Edit, NodeEdit};
use super::layer::{Layer, LayerReader, Sode};
use super::model::py;
use super::model::{MODEL_REVISION, Model};
use super::topology::{LayerDef, Topology, ViewDef};
use super::view::{View, ViewCatalog};
use crate::cell::auth::Auth;
use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::Slab;

/// Synapse's error for a view iden that no view has, as `storm`, `callStorm` and `count` raise
/// it for `opts={'view': iden}`.
pub fn no_such_view(iden: &str) -> SynErr {
    SynErr::new("NoSuchView", format!("No such view iden={iden}")).with("iden", iden)
}

/// The views and layers of a running cortex.
pub struct Catalog {
    /// The cell slab, where the topology is stored.
    slab: Slab,
    /// Where layer directories are made (`<cell>/layers`).
    layers_dir: PathBuf,
    /// The model every view is built over (replaced by [`Catalog::set_model`]).
    model: RwLock<Arc<Model>>,
    /// The cell's users, roles and rules.
    auth: Arc<Auth>,
    state: RwLock<State>,
    /// Why views, layers and the model may not change, while they may not (a mirror).
    read_only: crate::cell::ReadOnly,
    /// This catalog, for the views to reach it without keeping it alive.
    me: Weak<Catalog>,
}

/// What a fork changes, under one lock.
struct State {
    topology: Topology,
    layers: HashMap<String, Layer>,
    views: HashMap<String, Arc<View>>,
}

impl Catalog {
    /// Open the topology stored in `slab` (made on first start, owned by `creator`), every
    /// layer it names under `layers_dir`, and a view for each of its views; `auth` decides
    /// who may use and fork them.
    pub fn open(
        slab: Slab,
        layers_dir: PathBuf,
        model: Arc<Model>,
        auth: Arc<Auth>,
        creator: &str,
    ) -> SynResult<Arc<Catalog>> {
        let topology = Topology::load_or_create(&slab, creator)?;
        let mut layers = HashMap::new();
        for def in &topology.layers {
            let dir = layers_dir.join(&def.iden);
            let layer = Layer::open(&dir, &def.iden).map_err(|e| {
                SynErr::new(
                    e.name.clone(),
                    format!("opening layer {}: {}", dir.display(), e.mesg()),
                )
            })?;
            layers.insert(def.iden.clone(), layer);
        }
        Ok(Arc::new_cyclic(|me: &Weak<Catalog>| {
            let mut state = State {
                topology,
                layers,
                views: HashMap::new(),
            };
            let defs = state.topology.views.clone();
            for def in &defs {
                let view = build_view(&state.layers, def, &model, me.clone());
                state.views.insert(def.iden.clone(), Arc::new(view));
            }
            Catalog {
                slab,
                layers_dir,
                model: RwLock::new(model),
                auth,
                state: RwLock::new(state),
                read_only: crate::cell::ReadOnly::default(),
                me: me.clone(),
            }
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuse every change with `IsReadOnly` and `why` (`None`: take changes again): edits to
    /// every layer, forks, merges, view deletions, users and roles, and (through
    /// [`Catalog::req_writable`]) the model.
    pub fn set_read_only(&self, why: Option<String>) {
        for layer in self.layers() {
            layer.set_read_only(why.clone());
        }
        self.auth.set_read_only(why.clone());
        self.read_only.set(why);
    }

    /// `IsReadOnly` while [`Catalog::set_read_only`] holds.
    pub fn req_writable(&self) -> SynResult<()> {
        self.read_only.check()
    }

    /// The view with iden `iden`, or the default view for `None`.
    pub fn view(&self, iden: Option<&str>) -> SynResult<Arc<View>> {
        let state = self.read();
        let iden = iden.unwrap_or(&state.topology.default_view);
        state
            .views
            .get(iden)
            .cloned()
            .ok_or_else(|| no_such_view(iden))
    }

    /// The view storm runs in for `user`: `iden`, or the default view for `None`. A view other
    /// than the default needs `view.read` on its gate.
    pub fn view_for(&self, iden: Option<&str>, user: &str) -> SynResult<Arc<View>> {
        let view = self.view(iden)?;
        if let Some(iden) = iden
            && iden != self.read().topology.default_view
        {
            self.confirm(user, &["view", "read"], Some(iden))?;
        }
        Ok(view)
    }

    /// Fail with Synapse's `AuthDeny` unless `user` has `perm` (on the gate of view `gate`).
    fn confirm(&self, user: &str, perm: &[&str], gate: Option<&str>) -> SynResult<()> {
        let path: Vec<String> = perm.iter().map(|p| (*p).to_string()).collect();
        if self.auth.allowed(user, &path, None, gate) == Some(true) {
            return Ok(());
        }
        Err(self.auth.deny(user, &path, gate.map(|g| (g, "view"))))
    }

    /// Rebuild every view over `model` (after the extended model changed); storm runs already
    /// under way keep the views they started with.
    pub fn set_model(&self, model: Arc<Model>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        *self.model.write().unwrap_or_else(PoisonError::into_inner) = model.clone();
        let defs = state.topology.views.clone();
        for def in &defs {
            let view = build_view(&state.layers, def, &model, self.me.clone());
            state.views.insert(def.iden.clone(), Arc::new(view));
        }
    }

    /// The default view's iden.
    pub fn default_view_iden(&self) -> String {
        self.read().topology.default_view.clone()
    }

    /// The layer with iden `iden`.
    pub fn layer(&self, iden: &str) -> Option<Layer> {
        self.read().layers.get(iden).cloned()
    }

    /// Every open layer.
    pub fn layers(&self) -> Vec<Layer> {
        self.read().layers.values().cloned().collect()
    }

    /// A copy of the topology as it is now.
    pub fn topology(&self) -> Topology {
        self.read().topology.clone()
    }

    /// Fork view `iden`: a new layer `layers/<new iden>/` on top of the view's layers, in a new
    /// view whose parent is `iden`, both made by `user`, who must have `view.add`, and
    /// `view.read` and `view.fork` on `iden`, and becomes admin of both. The topology is saved
    /// before this returns.
    pub fn fork(&self, iden: &str, user: &str, name: Option<String>) -> SynResult<ViewDef> {
        self.req_writable()?;
        self.confirm(user, &["view", "add"], None)?;
        self.confirm(user, &["view", "read"], Some(iden))?;
        self.confirm(user, &["view", "fork"], Some(iden))?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let parent = state
            .topology
            .view(iden)
            .cloned()
            .ok_or_else(|| no_such_view(iden))?;
        let layer_iden = crate::guid::guid();
        let dir = self.layers_dir.join(&layer_iden);
        let layer = Layer::open(&dir, &layer_iden)?;
        let mut stack = vec![layer_iden.clone()];
        stack.extend(parent.layers.iter().cloned());
        let def = ViewDef {
            iden: crate::guid::guid(),
            name,
            creator: user.to_string(),
            layers: stack,
            parent: Some(parent.iden.clone()),
            created: now_ms(),
        };
        let mut topology = state.topology.clone();
        topology.layers.push(LayerDef {
            iden: layer_iden.clone(),
            name: None,
            creator: user.to_string(),
            created: def.created,
        });
        topology.views.push(def.clone());
        topology.save(&self.slab)?;
        state.topology = topology;
        // Synapse makes the creator admin of the new view's and layer's auth gates.
        let gates = [def.iden.clone(), layer_iden.clone()];
        self.auth.update_user(user, |u| {
            for gate in gates {
                u.gates.entry(gate).or_default().admin = true;
            }
            Ok(())
        })?;
        state.layers.insert(layer_iden, layer);
        let model = self
            .model
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let view = build_view(&state.layers, &def, &model, self.me.clone());
        state.views.insert(def.iden.clone(), Arc::new(view));
        Ok(def)
    }

    /// Merge view `iden` into its parent as Synapse's `view.merge()` does: every storage node
    /// of the view's write layer, with its node data and edges, becomes one nodeedit of the
    /// current values (a node add if the layer holds the value, prop, tag and tag prop sets,
    /// data sets, edge adds) applied to the parent view's write layer through the editor, in
    /// batches. The fork stays as it is. Refused for a view without a parent or with forks of
    /// its own (`CantMergeView`), and for a user who is neither an admin nor admin of the
    /// parent's write layer (Synapse would check each edit's permission instead).
    pub fn merge(&self, iden: &str, user: &str) -> SynResult<()> {
        self.req_writable()?;
        let (fork, parent) = {
            let state = self.read();
            let def = state
                .topology
                .view(iden)
                .ok_or_else(|| no_such_view(iden))?;
            let Some(parent) = &def.parent else {
                return Err(SynErr::new(
                    "CantMergeView",
                    format!("Cannot merge view ({iden}) that has not been forked."),
                ));
            };
            if state
                .topology
                .views
                .iter()
                .any(|v| v.parent.as_deref() == Some(iden))
            {
                return Err(SynErr::new(
                    "CantMergeView",
                    "Cannot merge a view that has children itself",
                ));
            }
            (state.views[iden].clone(), state.views[parent].clone())
        };
        let target = parent.write_layer().iden().to_string();
        let admin = self
            .auth
            .user(user)
            .is_some_and(|u| u.admin && !u.locked || u.gates.get(&target).is_some_and(|g| g.admin));
        if !admin {
            let name = self.auth.user(user).map(|u| u.name).unwrap_or_default();
            return Err(SynErr::auth_deny(format!(
                "User ({name}) must be an admin of layer {target} to merge view {iden} into it"
            ))
            .with("user", user)
            .with("username", name.as_str()));
        }
        let reader = fork.write_layer().reader()?;
        let editor = Editor::new(&parent, user, Durability::Sync, &());
        let mut batch = Vec::new();
        for entry in reader.sodes()? {
            let (buid, sode) = entry?;
            batch.push(current_edits(&reader, buid, sode)?);
            if batch.len() == MERGE_BATCH {
                editor.apply(&std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            editor.apply(&batch)?;
        }
        Ok(())
    }

    /// Delete view `iden` as Synapse's `delView` does: its layers stay. `user` needs
    /// `view.del` on the view; the default view and a view with forks cannot be deleted.
    pub fn del_view(&self, iden: &str, user: &str) -> SynResult<()> {
        self.req_writable()?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.topology.view(iden).is_none() {
            return Err(SynErr::new(
                "NoSuchView",
                format!("No such view iden={}", py::repr_str(iden)),
            )
            .with("iden", iden));
        }
        self.confirm(user, &["view", "del"], Some(iden))?;
        if iden == state.topology.default_view {
            return Err(SynErr::new("SynErr", "Cannot delete the main view"));
        }
        if state
            .topology
            .views
            .iter()
            .any(|v| v.parent.as_deref() == Some(iden))
        {
            return Err(SynErr::new(
                "SynErr",
                "Cannot delete a view that has children",
            ));
        }
        let mut topology = state.topology.clone();
        topology.views.retain(|v| v.iden != iden);
        topology.save(&self.slab)?;
        state.topology = topology;
        state.views.remove(iden);
        Ok(())
    }

    /// Synapse's `layer.pack()` for a layer of the topology.
    fn pack_layer(state: &State, def: &LayerDef) -> Value {
        let layer = state.layers.get(&def.iden);
        let mut info = vec![
            ("created", Value::from(def.created)),
            ("creator", Value::from(def.creator.as_str())),
            ("iden", Value::from(def.iden.as_str())),
            ("lockmemory", Value::Bool(false)),
            ("logedits", Value::Bool(true)),
            ("model:version", model_version()),
        ];
        if let Some(name) = &def.name {
            info.push(("name", Value::from(name.as_str())));
        }
        info.push(("offset", Value::from(layer.map_or(0, Layer::next_offset))));
        info.push(("readonly", Value::Bool(false)));
        info.push(("totalsize", Value::from(layer.map_or(0, Layer::disk_size))));
        Value::map(info)
    }

    /// Synapse's `view.pack()`: the view's definition with its layers packed, top first.
    fn pack_view(state: &State, def: &ViewDef) -> Value {
        let layers = def
            .layers
            .iter()
            .filter_map(|l| state.topology.layers.iter().find(|d| d.iden == *l))
            .map(|d| Catalog::pack_layer(state, d))
            .collect();
        let mut info = vec![
            ("created", Value::from(def.created)),
            ("creator", Value::from(def.creator.as_str())),
            ("iden", Value::from(def.iden.as_str())),
            ("layers", Value::Array(layers)),
        ];
        if let Some(name) = &def.name {
            info.push(("name", Value::from(name.as_str())));
        }
        info.push((
            "parent",
            def.parent.as_deref().map_or(Value::Nil, Value::from),
        ));
        info.push(("protected", Value::Bool(false)));
        info.push(("triggers", Value::Array(Vec::new())));
        Value::map(info)
    }
}

/// [`MODEL_REVISION`] as the tuple Synapse packs.
fn model_version() -> Value {
    Value::Array(MODEL_REVISION.iter().map(|&v| Value::from(v)).collect())
}

/// How many nodeedits a merge applies at once.
const MERGE_BATCH: usize = 1000;

/// One storage node as the nodeedit that sets what it holds (Synapse's `iterLayerNodeEdits`).
fn current_edits(reader: &LayerReader, buid: Buid, sode: Sode) -> SynResult<NodeEdit> {
    let mut edits = Vec::new();
    if let Some((valu, stortype)) = sode.valu {
        edits.push(Edit::NodeAdd { valu, stortype });
    }
    for (prop, valu, stortype) in sode.props {
        edits.push(Edit::PropSet {
            prop,
            valu,
            oldv: Value::Nil,
            stortype,
        });
    }
    for (tag, valu) in sode.tags {
        edits.push(Edit::TagSet {
            tag,
            valu,
            oldv: None,
        });
    }
    for (tag, prop, valu, stortype) in sode.tagprops {
        edits.push(Edit::TagPropSet {
            tag,
            prop,
            valu,
            oldv: Value::Nil,
            stortype,
        });
    }
    for (name, valu) in reader.nodedata_all(&buid)? {
        edits.push(Edit::NodeDataSet {
            name,
            valu,
            oldv: Value::Nil,
        });
    }
    for (verb, n2) in reader.edges_n1(&buid, None)? {
        edits.push(Edit::EdgeAdd { verb, n2 });
    }
    Ok(NodeEdit {
        buid,
        form: sode.form,
        edits,
    })
}

/// A view over the layers a definition names (a checked topology names only open layers).
fn build_view(
    layers: &HashMap<String, Layer>,
    def: &ViewDef,
    model: &Arc<Model>,
    catalog: Weak<Catalog>,
) -> View {
    let stack = def.layers.iter().map(|l| layers[l].clone()).collect();
    let catalog: Weak<dyn ViewCatalog> = catalog;
    View::stack(stack, model.clone())
        .expect("a checked topology has no empty view")
        .in_catalog(def.iden.clone(), catalog)
}

impl ViewCatalog for Catalog {
    fn view_def(&self, iden: &str) -> SynResult<Option<Value>> {
        let state = self.read();
        Ok(state
            .topology
            .view(iden)
            .map(|def| Catalog::pack_view(&state, def)))
    }

    fn view_defs(&self) -> SynResult<Vec<Value>> {
        let state = self.read();
        Ok(state
            .topology
            .views
            .iter()
            .map(|def| Catalog::pack_view(&state, def))
            .collect())
    }

    fn layer_def(&self, iden: &str) -> SynResult<Option<Value>> {
        let state = self.read();
        Ok(state
            .topology
            .layers
            .iter()
            .find(|d| d.iden == iden)
            .map(|def| Catalog::pack_layer(&state, def)))
    }

    fn layer_defs(&self) -> SynResult<Vec<Value>> {
        let state = self.read();
        Ok(state
            .topology
            .layers
            .iter()
            .map(|def| Catalog::pack_layer(&state, def))
            .collect())
    }

    fn fork(&self, iden: &str, user: &str, name: Option<String>) -> SynResult<Value> {
        let def = Catalog::fork(self, iden, user, name)?;
        let state = self.read();
        Ok(Catalog::pack_view(&state, &def))
    }

    fn merge(&self, iden: &str, user: &str) -> SynResult<()> {
        Catalog::merge(self, iden, user)
    }

    fn del_view(&self, iden: &str, user: &str) -> SynResult<()> {
        Catalog::del_view(self, iden, user)
    }
}
