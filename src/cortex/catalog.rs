//! The running cortex's views and layers: a [`View`] for every view of the topology (see
//! [`crate::cortex::topology`]), the layers they share, and forks made while it runs.
//!
//! The [`Catalog`] opens every layer the topology names (`layers/<iden>/`), builds each view
//! over its stack of layers (the write layer first), and answers storm's `$lib.view` and
//! `$lib.layer` through [`ViewCatalog`]. A fork ([`Catalog::fork`]) makes a new layer directory,
//! opens it, and stores the new topology with [`Topology::save`] before the view is used, so
//! a fork that was acknowledged is found again after a restart. A crash between making the
//! directory and saving leaves an empty directory that no view names, and nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use super::layer::Layer;
use super::model::Model;
use super::topology::{LayerDef, Topology, ViewDef};
use super::view::{View, ViewCatalog};
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
    state: RwLock<State>,
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
    /// layer it names under `layers_dir`, and a view for each of its views.
    pub fn open(
        slab: Slab,
        layers_dir: PathBuf,
        model: Arc<Model>,
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
                state: RwLock::new(state),
                me: me.clone(),
            }
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
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
    /// view whose parent is `iden`, both made by `user`. The topology is saved before this
    /// returns.
    pub fn fork(&self, iden: &str, user: &str, name: Option<String>) -> SynResult<ViewDef> {
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
        };
        let mut topology = state.topology.clone();
        topology.layers.push(LayerDef {
            iden: layer_iden.clone(),
            name: None,
            creator: user.to_string(),
        });
        topology.views.push(def.clone());
        topology.save(&self.slab)?;
        state.topology = topology;
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

    /// Synapse's `layer.pack()` for a layer of the topology.
    fn pack_layer(state: &State, def: &LayerDef) -> Value {
        let mut info = vec![("iden", Value::from(def.iden.as_str()))];
        if let Some(name) = &def.name {
            info.push(("name", Value::from(name.as_str())));
        }
        info.push(("creator", Value::from(def.creator.as_str())));
        info.push(("lockmemory", Value::Bool(false)));
        info.push(("logedits", Value::Bool(true)));
        info.push(("readonly", Value::Bool(false)));
        let offset = state.layers.get(&def.iden).map_or(0, Layer::next_offset);
        info.push(("offset", Value::from(offset)));
        Value::map(info)
    }

    /// Synapse's `view.pack()`: the view's definition with its layers packed, top first.
    fn pack_view(state: &State, def: &ViewDef) -> Value {
        let mut info = vec![("iden", Value::from(def.iden.as_str()))];
        if let Some(name) = &def.name {
            info.push(("name", Value::from(name.as_str())));
        }
        info.push(("creator", Value::from(def.creator.as_str())));
        info.push((
            "parent",
            def.parent.as_deref().map_or(Value::Nil, Value::from),
        ));
        let layers = def
            .layers
            .iter()
            .filter_map(|l| state.topology.layers.iter().find(|d| d.iden == *l))
            .map(|d| Catalog::pack_layer(state, d))
            .collect();
        info.push(("layers", Value::Array(layers)));
        info.push(("protected", Value::Bool(false)));
        info.push(("triggers", Value::Array(Vec::new())));
        Value::map(info)
    }
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
}
