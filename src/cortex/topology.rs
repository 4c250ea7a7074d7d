//! Which views and layers a cortex has: each layer's iden, each view's stack of layers (the
//! write layer first), and which view is the default.
//!
//! The topology is a record in the cell slab (database `cortex:meta`, key `topology`), so a
//! tool that builds a cortex directory offline (`syn migrate-200`) writes it with
//! [`Topology::save`] and `syn cortex` opens exactly what it says. Each layer's data lives in
//! `layers/<iden>/` ([`crate::cortex::service::LAYERS_DIR`]).
//!
//! Cortexes made before this record existed kept two keys, `defaultview` and `defaultlayer`;
//! [`Topology::load_or_create`] turns them into a one-view topology on first start.

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::storage::Slab;

/// The database of the cell slab that holds the cortex's own records.
pub const META_DB: &str = "cortex:meta";
const TOPOLOGY_KEY: &[u8] = b"topology";

/// One layer: a directory of nodes and its edit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDef {
    /// The layer's iden (32 hex digits).
    pub iden: String,
    /// A name for people, if one was given.
    pub name: Option<String>,
    /// The iden of the user who made it.
    pub creator: String,
    /// When it was made, in epoch ms (0 in records written before syn kept it; the cortex
    /// fills that in on its next start).
    #[serde(default)]
    pub created: i64,
}

/// One view: the layers it reads as one graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The view's iden (32 hex digits).
    pub iden: String,
    /// A name for people, if one was given.
    pub name: Option<String>,
    /// The iden of the user who made it.
    pub creator: String,
    /// The layers it reads, the write layer first, as Synapse orders them.
    pub layers: Vec<String>,
    /// The view it was forked from, if any.
    pub parent: Option<String>,
    /// When it was made, in epoch ms (0 in records written before syn kept it; the cortex
    /// fills that in on its next start).
    #[serde(default)]
    pub created: i64,
}

/// The views and layers of a cortex.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The iden of the view that storm uses when no view is named.
    pub default_view: String,
    /// Every view.
    pub views: Vec<ViewDef>,
    /// Every layer.
    pub layers: Vec<LayerDef>,
}

impl Topology {
    /// A topology of one view over one layer, both made by `creator` now, with the given
    /// idens.
    pub fn single(view_iden: String, layer_iden: String, creator: &str) -> Topology {
        let created = now_ms();
        Topology {
            default_view: view_iden.clone(),
            views: vec![ViewDef {
                iden: view_iden,
                name: Some("default".into()),
                creator: creator.into(),
                layers: vec![layer_iden.clone()],
                parent: None,
                created,
            }],
            layers: vec![LayerDef {
                iden: layer_iden,
                name: Some("default".into()),
                creator: creator.into(),
                created,
            }],
        }
    }

    /// The topology stored in `slab`, if any.
    pub fn load(slab: &Slab) -> SynResult<Option<Topology>> {
        let meta = slab.db(META_DB, false)?;
        let topo: Option<Topology> = slab.read(|txn| meta.get_serde(txn, TOPOLOGY_KEY))?;
        if let Some(topo) = &topo {
            topo.check()?;
        }
        Ok(topo)
    }

    /// The topology stored in `slab`; on first start, one made from the older `defaultview`
    /// and `defaultlayer` keys or, lacking those, a fresh view and layer owned by `creator`.
    /// Views and layers stored without a creation time are given this moment's, and saved.
    pub fn load_or_create(slab: &Slab, creator: &str) -> SynResult<Topology> {
        if let Some(mut topo) = Topology::load(slab)? {
            if topo.stamp_created(now_ms()) {
                topo.save(slab)?;
            }
            return Ok(topo);
        }
        let meta = slab.db(META_DB, false)?;
        let older = |key: &[u8]| -> SynResult<String> {
            let found = slab.read(|txn| {
                Ok(meta
                    .get(txn, key)?
                    .map(|v| String::from_utf8_lossy(v).into_owned()))
            })?;
            Ok(found.unwrap_or_else(crate::guid::guid))
        };
        let topo = Topology::single(older(b"defaultview")?, older(b"defaultlayer")?, creator);
        topo.save(slab)?;
        Ok(topo)
    }

    /// Store this topology in `slab`, replacing the one there, after checking it is whole.
    pub fn save(&self, slab: &Slab) -> SynResult<()> {
        self.check()?;
        let meta = slab.db(META_DB, false)?;
        slab.write(|txn| meta.put_serde(txn, TOPOLOGY_KEY, self))?;
        Ok(())
    }

    /// Give `now` as creation time to every view and layer that has none; whether any had none.
    fn stamp_created(&mut self, now: i64) -> bool {
        let unset = self
            .views
            .iter_mut()
            .map(|v| &mut v.created)
            .chain(self.layers.iter_mut().map(|l| &mut l.created))
            .filter(|c| **c == 0);
        let mut stamped = false;
        for created in unset {
            *created = now;
            stamped = true;
        }
        stamped
    }

    /// The view with iden `iden`.
    pub fn view(&self, iden: &str) -> Option<&ViewDef> {
        self.views.iter().find(|v| v.iden == iden)
    }

    /// The default view.
    pub fn default_view(&self) -> &ViewDef {
        self.view(&self.default_view)
            .expect("a checked topology has its default view")
    }

    /// Every view names known layers and a known parent, the default view exists, no iden
    /// repeats, and no view is empty.
    fn check(&self) -> SynResult<()> {
        let bad = |why: String| {
            Err(SynErr::new(
                "BadConfValu",
                format!("cortex topology: {why}"),
            ))
        };
        let mut seen = std::collections::HashSet::new();
        for layer in &self.layers {
            if !seen.insert(layer.iden.as_str()) {
                return bad(format!("layer {} is listed twice", layer.iden));
            }
        }
        for view in &self.views {
            if !seen.insert(view.iden.as_str()) {
                return bad(format!("iden {} is listed twice", view.iden));
            }
            if view.layers.is_empty() {
                return bad(format!("view {} has no layers", view.iden));
            }
            if let Some(layer) = view
                .layers
                .iter()
                .find(|l| !self.layers.iter().any(|d| &d.iden == *l))
            {
                return bad(format!("view {} names unknown layer {layer}", view.iden));
            }
            if let Some(parent) = &view.parent
                && self.view(parent).is_none()
            {
                return bad(format!("view {} names unknown parent {parent}", view.iden));
            }
        }
        if self.view(&self.default_view).is_none() {
            return bad(format!("default view {} is not listed", self.default_view));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SlabOptions;

    fn slab(dir: &std::path::Path) -> Slab {
        Slab::open(dir.join("cell.lmdb"), SlabOptions::default()).unwrap()
    }

    #[test]
    fn older_keys_become_a_single_view() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = slab(tmp.path());
        let meta = slab.db(META_DB, false).unwrap();
        slab.write(|txn| {
            meta.put(txn, b"defaultview", b"aa".repeat(16).as_slice())?;
            meta.put(txn, b"defaultlayer", b"bb".repeat(16).as_slice())
        })
        .unwrap();
        let topo = Topology::load_or_create(&slab, "root").unwrap();
        assert_eq!(topo.default_view, "aa".repeat(16));
        assert_eq!(topo.default_view().layers, vec!["bb".repeat(16)]);
        assert_eq!(Topology::load(&slab).unwrap(), Some(topo));
    }

    #[test]
    fn a_fork_round_trips_and_bad_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = slab(tmp.path());
        let mut topo = Topology::single("v1".into(), "l1".into(), "root");
        topo.layers.push(LayerDef {
            iden: "l2".into(),
            name: None,
            creator: "root".into(),
            created: 5,
        });
        topo.views.push(ViewDef {
            iden: "v2".into(),
            name: Some("fork".into()),
            creator: "root".into(),
            layers: vec!["l2".into(), "l1".into()],
            parent: Some("v1".into()),
            created: 6,
        });
        topo.save(&slab).unwrap();
        assert_eq!(Topology::load(&slab).unwrap().as_ref(), Some(&topo));

        let mut unknown = topo.clone();
        unknown.views[1].layers.push("l9".into());
        let err = unknown.save(&slab).unwrap_err();
        assert!(err.to_string().contains("unknown layer l9"), "{err}");
        let mut orphan = topo.clone();
        orphan.views[1].parent = Some("v9".into());
        assert!(orphan.save(&slab).is_err());
        assert_eq!(Topology::load(&slab).unwrap(), Some(topo));
    }

    #[test]
    fn records_without_creation_times_get_them_once() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = slab(tmp.path());
        let meta = slab.db(META_DB, false).unwrap();
        let older = serde_json::json!({
            "default_view": "v1",
            "views": [{"iden": "v1", "name": null, "creator": "root", "layers": ["l1"], "parent": null}],
            "layers": [{"iden": "l1", "name": null, "creator": "root"}],
        });
        let bytes = rmp_serde::to_vec_named(&older).unwrap();
        slab.write(|txn| meta.put(txn, TOPOLOGY_KEY, &bytes))
            .unwrap();
        assert_eq!(Topology::load(&slab).unwrap().unwrap().views[0].created, 0);

        let before = now_ms();
        let topo = Topology::load_or_create(&slab, "root").unwrap();
        assert!(topo.views[0].created >= before && topo.layers[0].created >= before);
        assert_eq!(Topology::load(&slab).unwrap().as_ref(), Some(&topo));
        assert_eq!(Topology::load_or_create(&slab, "root").unwrap(), topo);
    }
}
