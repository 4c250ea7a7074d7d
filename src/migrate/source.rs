//! The Synapse 0.1.x cortex that `syn migrate-200` reads: its hive, its layers' `bybuid` rows
//! grouped into nodes, node data, splice log offsets, queues and triggers.
//!
//! Every environment is opened with [`Slab::open_snapshot`] (`MDB_RDONLY | MDB_NOLOCK`), so
//! the source directory is never written, not even a lock file: it must be a copy (a backup)
//! that nothing else writes while the migration runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cortex::edits::Buid;
use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};
use crate::storage::{Db, Slab};

/// The only layer model version migrate-200 takes (0.1.58's `maxvers`).
pub const LAYER_MODEL_VERSION: [i64; 3] = [0, 1, 3];

/// A stop before anything is written: the source is not something this tool migrates.
pub fn bad_source(mesg: impl Into<String>) -> SynErr {
    SynErr::new("BadSource", mesg)
}

fn storage(e: crate::storage::StorageError) -> SynErr {
    SynErr::from(e)
}

/// The 0.1.x hive: `path -> value`, the path split at NUL bytes.
#[derive(Debug, Default)]
pub struct Hive {
    entries: BTreeMap<Vec<String>, Value>,
}

impl Hive {
    /// The value at `path`.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.entries.get(&key)
    }

    /// The names of the children of `path`, in key order, without repeats.
    pub fn children(&self, path: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for key in self.entries.keys() {
            if key.len() > path.len()
                && key.iter().zip(path).all(|(a, b)| a == b)
                && out.last() != Some(&key[path.len()])
            {
                out.push(key[path.len()].clone());
            }
        }
        out
    }
}

/// One node as the 0.1.x layer holds it: the `bybuid` rows of one buid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SrcNode {
    /// The node's buid.
    pub buid: Buid,
    /// The `*<form>` row: form name and primary value (absent for a partial node, whose form
    /// row lives in another layer).
    pub ndef: Option<(String, Value)>,
    /// Secondary and universal props (`asn`, `.created`), in row order.
    pub props: Vec<(String, Value)>,
    /// Tags without `#`, with their intervals.
    pub tags: Vec<(String, Value)>,
    /// Tag props: tag (without `#`), prop, value.
    pub tagprops: Vec<(String, String, Value)>,
    /// Node data from `nodedata.lmdb`: name and item.
    pub data: Vec<(String, Value)>,
    /// How many rows this node had (for progress).
    pub rows: u64,
}

/// The open environments of one layer (mapped while held).
#[derive(Clone)]
struct LayerEnv {
    slab: Slab,
    bybuid: Db,
    nodedata: Option<(Slab, Db)>,
}

impl LayerEnv {
    fn open(dir: &Path) -> SynResult<LayerEnv> {
        let lmdb = dir.join("layer.lmdb");
        if !lmdb.join("data.mdb").is_file() {
            if dir.join("layer_v2.lmdb").exists() {
                return Err(bad_source(format!(
                    "{} is a Synapse 2.x layer, not a 0.1.x one: the source is already migrated",
                    dir.display()
                )));
            }
            return Err(bad_source(format!(
                "{} has no layer.lmdb: not a Synapse 0.1.x layer",
                dir.display()
            )));
        }
        let slab = Slab::open_snapshot(&lmdb)
            .map_err(|e| bad_source(format!("cannot read {}: {e}", lmdb.display())))?;
        let bybuid = slab.db("bybuid", false).map_err(|e| {
            bad_source(format!(
                "{} has no 0.1.x bybuid database: {e}",
                lmdb.display()
            ))
        })?;
        let nd = dir.join("nodedata.lmdb");
        let nodedata = if nd.join("data.mdb").is_file() {
            let slab = Slab::open_snapshot(&nd).map_err(storage)?;
            let db = slab.db("bybuid", false).map_err(storage)?;
            Some((slab, db))
        } else {
            None
        };
        Ok(LayerEnv {
            slab,
            bybuid,
            nodedata,
        })
    }
}

/// One 0.1.x layer. Its environments are mapped on first use and unmapped by
/// [`SrcLayer::release`], so a long scan can drop the pages it has read from its resident set.
pub struct SrcLayer {
    /// The layer's iden.
    pub iden: String,
    /// `layers/<iden>/`.
    pub dir: PathBuf,
    env: std::sync::Mutex<Option<LayerEnv>>,
    /// The `layer:model:version` key, if the layer has one.
    pub model_version: Option<Value>,
}

impl SrcLayer {
    fn open(dir: &Path, iden: &str) -> SynResult<SrcLayer> {
        let env = LayerEnv::open(dir)?;
        let lmdb = dir.join("layer.lmdb");
        let model_version = match env.slab.main_get(b"layer:model:version").map_err(storage)? {
            None => None,
            Some(bytes) => Some(msgpack::decode_exact(&bytes).map_err(|e| {
                bad_source(format!(
                    "{}: layer:model:version is not msgpack: {e}",
                    lmdb.display()
                ))
            })?),
        };
        Ok(SrcLayer {
            iden: iden.to_owned(),
            dir: dir.to_path_buf(),
            env: std::sync::Mutex::new(Some(env)),
            model_version,
        })
    }

    /// The layer's environments, mapping them again if they were released.
    fn env(&self) -> SynResult<LayerEnv> {
        let mut env = self
            .env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if env.is_none() {
            *env = Some(LayerEnv::open(&self.dir)?);
        }
        Ok(env.clone().expect("just opened"))
    }

    /// Unmap the layer's environments (once no scan holds them); the next use maps them
    /// again.
    pub fn release(&self) {
        *self
            .env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The model version as a list of ints, if the key is there and has that shape.
    pub fn version_tuple(&self) -> Option<Vec<i64>> {
        self.model_version
            .as_ref()?
            .as_array()?
            .iter()
            .map(Value::as_i64)
            .collect()
    }

    /// The number of `bybuid` rows (an estimate of the work, for progress and ETA).
    pub fn row_count(&self) -> SynResult<u64> {
        let env = self.env()?;
        env.slab.read(|txn| env.bybuid.len(txn)).map_err(storage)
    }

    /// The next index of the layer's 0.1.x splice log (where sync-200 starts).
    pub fn splice_next_offset(&self) -> SynResult<u64> {
        let env = self.dir.join("splices.lmdb");
        if !env.join("data.mdb").is_file() {
            return Ok(0);
        }
        let slab = Slab::open_snapshot(&env).map_err(storage)?;
        let Ok(db) = slab.db("splices", false) else {
            return Ok(0);
        };
        slab.read(|txn| {
            Ok(db
                .last(txn)?
                .map_or(0, |(k, _)| crate::storage::int64un(k) + 1))
        })
        .map_err(storage)
    }

    /// Scan the layer's nodes in buid order from `start` (inclusive), calling `each` with
    /// every node; `each` returns false to stop.
    pub fn scan(
        &self,
        start: Option<&Buid>,
        mut each: impl FnMut(SrcNode) -> SynResult<bool>,
    ) -> SynResult<()> {
        let env = self.env()?;
        let txn = env.slab.read_txn().map_err(storage)?;
        let nd_txn = match &env.nodedata {
            Some((slab, _)) => Some(slab.read_txn().map_err(storage)?),
            None => None,
        };
        let rows = match start {
            Some(b) => env.bybuid.iter_from(&txn, b),
            None => env.bybuid.iter(&txn),
        }
        .map_err(storage)?;
        let mut node = SrcNode::default();
        let mut open = false;
        for row in rows {
            let (key, val) = row.map_err(storage)?;
            if key.len() < 33 {
                return Err(bad_source(format!(
                    "layer {}: a bybuid key of {} bytes is too short for buid + name",
                    self.iden,
                    key.len()
                )));
            }
            if !open || key[..32] != node.buid {
                if open {
                    self.attach_data(&env, &mut node, nd_txn.as_ref())?;
                    if !each(std::mem::take(&mut node))? {
                        return Ok(());
                    }
                }
                node.buid.copy_from_slice(&key[..32]);
                open = true;
            }
            self.add_row(&mut node, &key[32..], val)?;
        }
        if open {
            self.attach_data(&env, &mut node, nd_txn.as_ref())?;
            each(node)?;
        }
        Ok(())
    }

    fn add_row(&self, node: &mut SrcNode, name: &[u8], val: &[u8]) -> SynResult<()> {
        let name = std::str::from_utf8(name).map_err(|_| {
            bad_source(format!(
                "layer {}: a bybuid row of {} has a name that is not UTF-8",
                self.iden,
                hex::encode(node.buid)
            ))
        })?;
        let valu = row_value(val).ok_or_else(|| {
            bad_source(format!(
                "layer {}: the {name} row of {} is not msgpack (valu, indx)",
                self.iden,
                hex::encode(node.buid)
            ))
        })?;
        node.rows += 1;
        if let Some(form) = name.strip_prefix('*') {
            node.ndef = Some((form.to_owned(), valu));
        } else if let Some(tag) = name.strip_prefix('#') {
            match tag.split_once(':') {
                Some((tag, prop)) => node.tagprops.push((tag.into(), prop.into(), valu)),
                None => node.tags.push((tag.into(), valu)),
            }
        } else {
            node.props.push((name.to_owned(), valu));
        }
        Ok(())
    }

    fn attach_data(
        &self,
        env: &LayerEnv,
        node: &mut SrcNode,
        txn: Option<&crate::storage::ReadTxn>,
    ) -> SynResult<()> {
        let (Some((_, db)), Some(txn)) = (&env.nodedata, txn) else {
            return Ok(());
        };
        for row in db.prefix(txn, &node.buid).map_err(storage)? {
            let (key, val) = row.map_err(storage)?;
            let name = String::from_utf8_lossy(&key[32..]).into_owned();
            let item = msgpack::decode_exact(val).map_err(|e| {
                bad_source(format!(
                    "layer {}: node data {name} of {} is not msgpack: {e}",
                    self.iden,
                    hex::encode(node.buid)
                ))
            })?;
            node.data.push((name, item));
        }
        Ok(())
    }

    /// The form of `buid` if this layer holds its `*form` row.
    pub fn form_of(&self, buid: &Buid) -> SynResult<Option<String>> {
        let mut prefix = buid.to_vec();
        prefix.push(b'*');
        let env = self.env()?;
        env.slab
            .read(|txn| {
                Ok(env
                    .bybuid
                    .prefix(txn, &prefix)?
                    .next()
                    .transpose()?
                    .map(|(k, _)| String::from_utf8_lossy(&k[33..]).into_owned()))
            })
            .map_err(storage)
    }

    /// Count nodes by form from the `*form` rows (for `--form-counts`).
    pub fn form_counts(&self) -> SynResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        let env = self.env()?;
        env.slab
            .read(|txn| {
                for row in env.bybuid.iter(txn)? {
                    let (key, _) = row?;
                    if key.len() > 33 && key[32] == b'*' {
                        let form = String::from_utf8_lossy(&key[33..]).into_owned();
                        *counts.entry(form).or_insert(0u64) += 1;
                    }
                }
                Ok(())
            })
            .map_err(storage)?;
        Ok(counts)
    }
}

/// The `valu` of a row's msgpack `(valu, indx)`.
pub fn row_value(val: &[u8]) -> Option<Value> {
    match msgpack::decode_exact(val).ok()? {
        Value::Array(mut pair) if pair.len() == 2 => {
            pair.truncate(1);
            pair.pop()
        }
        _ => None,
    }
}

/// A whole 0.1.x cortex directory.
pub struct SrcCortex {
    /// The directory.
    pub dir: PathBuf,
    /// `cell.guid`.
    pub iden: String,
    /// The hive of `slabs/cell.lmdb`.
    pub hive: Hive,
    /// `slabs/cell.lmdb`.
    pub cell: Slab,
    /// The layers, in the hive's order.
    pub layers: Vec<SrcLayer>,
}

impl SrcCortex {
    /// Open `dir` read-only and check it is a Synapse 0.1.x cortex; any problem is one line.
    pub fn open(dir: &Path) -> SynResult<SrcCortex> {
        if !dir.is_dir() {
            return Err(bad_source(format!("{} is not a directory", dir.display())));
        }
        let guid_path = dir.join("cell.guid");
        let iden = std::fs::read_to_string(&guid_path)
            .map_err(|_| {
                bad_source(format!(
                    "{} is not a Synapse cortex directory: it has no cell.guid",
                    dir.display()
                ))
            })?
            .trim()
            .to_owned();
        if !crate::guid::is_guid(&iden) {
            return Err(bad_source(format!(
                "{} does not hold a cell iden",
                guid_path.display()
            )));
        }
        let cell_path = dir.join("slabs").join("cell.lmdb");
        let cell = Slab::open_snapshot(&cell_path).map_err(|_| {
            bad_source(format!(
                "{} is not a Synapse 0.1.x cortex: it has no readable slabs/cell.lmdb",
                dir.display()
            ))
        })?;
        let hive = read_hive(&cell).map_err(|e| {
            bad_source(format!(
                "{} is not a Synapse 0.1.x cortex: {}",
                dir.display(),
                e.mesg()
            ))
        })?;
        match hive
            .get(&["cellinfo", "cortex:version"])
            .and_then(Value::as_array)
        {
            Some([major, ..]) if major.as_i64() != Some(0) => {
                return Err(bad_source(format!(
                    "{} is a Synapse cortex of version {}, not 0.1.x",
                    dir.display(),
                    hive.get(&["cellinfo", "cortex:version"])
                        .cloned()
                        .unwrap_or(Value::Nil)
                )));
            }
            _ => {}
        }
        let layer_idens = hive.children(&["cortex", "layers"]);
        if layer_idens.is_empty() {
            return Err(bad_source(format!(
                "{} is not a Synapse 0.1.x cortex: its hive names no layers",
                dir.display()
            )));
        }
        for iden in &layer_idens {
            if hive
                .get(&["cortex", "layers", iden, "type"])
                .and_then(Value::as_str)
                == Some("remote")
            {
                return Err(bad_source(format!(
                    "{iden} is a remote layer - it must be unconfigured to proceed with migration"
                )));
            }
        }
        let mut layers = Vec::new();
        for iden in &layer_idens {
            layers.push(SrcLayer::open(&dir.join("layers").join(iden), iden)?);
        }
        Ok(SrcCortex {
            dir: dir.to_path_buf(),
            iden,
            hive,
            cell,
            layers,
        })
    }

    /// The 0.1.x `triggers` database: `(iden, rule dict)`.
    pub fn triggers(&self) -> SynResult<Vec<(String, Value)>> {
        let Ok(db) = self.cell.db("triggers", false) else {
            return Ok(Vec::new());
        };
        self.cell
            .read(|txn| {
                let mut out = Vec::new();
                for row in db.iter(txn)? {
                    let (k, v) = row?;
                    if let Ok(v) = msgpack::decode_exact(v) {
                        out.push((String::from_utf8_lossy(k).into_owned(), v));
                    }
                }
                Ok(out)
            })
            .map_err(storage)
    }

    /// The queues of `slabs/queues.lmdb` (a MultiQueue `cortex:queue`): name, info (with its
    /// `meta`) and items in order.
    pub fn queues(&self) -> SynResult<Vec<(String, Value, Vec<Value>)>> {
        let path = self.dir.join("slabs").join("queues.lmdb");
        if !path.join("data.mdb").is_file() {
            return Ok(Vec::new());
        }
        let slab = Slab::open_snapshot(&path).map_err(storage)?;
        let (Ok(meta), Ok(abrvs), Ok(data)) = (
            slab.db("cortex:queue:meta", false),
            slab.db("cortex:queue:abrv:name2abrv", false),
            slab.db("cortex:queue:qdata", false),
        ) else {
            return Ok(Vec::new());
        };
        slab.read(|txn| {
            let mut out = Vec::new();
            for row in meta.iter(txn)? {
                let (k, v) = row?;
                let name = String::from_utf8_lossy(k).into_owned();
                let info = msgpack::decode_exact(v).unwrap_or(Value::Nil);
                let mut items = Vec::new();
                if let Some(abrv) = abrvs.get(txn, k)? {
                    for item in data.prefix(txn, abrv)? {
                        let (_, v) = item?;
                        items.push(msgpack::decode_exact(v).unwrap_or(Value::Nil));
                    }
                }
                out.push((name, info, items));
            }
            Ok(out)
        })
        .map_err(storage)
    }
}

fn read_hive(slab: &Slab) -> SynResult<Hive> {
    let db = slab
        .db("hive", false)
        .map_err(|_| bad_source("its cell.lmdb has no hive database"))?;
    let mut hive = Hive::default();
    slab.read(|txn| {
        for row in db.iter(txn)? {
            let (k, v) = row?;
            let path = k
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if let Ok(v) = msgpack::decode_exact(v) {
                hive.entries.insert(path, v);
            }
        }
        Ok(())
    })
    .map_err(storage)?;
    Ok(hive)
}
