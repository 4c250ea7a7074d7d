//! The migration's own records in `DEST/migration/migr.lmdb` (database `migr`, keys
//! `op \0 logtyp \0 key` as Synapse's tool keeps them, spec §7.5): checkpoints, per-layer
//! statistics, node errors, the 0.1.x splice offsets captured before each layer's copy, and
//! the time stamped on the migrated edits.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::cortex::edits::Buid;
use crate::error::SynResult;
use crate::msgpack::Value;
use crate::storage::{Db, Slab};

/// What one layer's node pass did so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Nodes read from the source.
    pub read: u64,
    /// Nodes written to the destination.
    pub migrated: u64,
    /// Nodes skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// `bybuid` rows read (progress).
    pub rows: u64,
    /// Seconds spent in the node pass (over all runs).
    pub seconds: f64,
}

impl LayerStats {
    /// Add `other`'s counts and seconds to these.
    pub fn add(&mut self, other: &LayerStats) {
        self.read += other.read;
        self.migrated += other.migrated;
        self.rows += other.rows;
        self.seconds += other.seconds;
        for (reason, n) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_insert(0) += n;
        }
    }

    /// All skipped nodes.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Where a layer's node pass stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last node done (written or recorded as an error); resuming starts after it.
    #[serde(with = "serde_bytes")]
    pub buid: Vec<u8>,
    /// Nodes done.
    pub count: u64,
    /// When it was written (epoch ms).
    pub time: i64,
}

/// One skipped node.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRecord {
    /// The layer.
    pub layer: String,
    /// The node.
    pub buid: Buid,
    /// The reason (for counting).
    pub reason: String,
    /// The message.
    pub mesg: String,
}

impl ErrorRecord {
    /// The record as a msgpack map `{mesg, reason, layer, buid}` (buid as hex).
    pub fn to_value(&self) -> Value {
        Value::map([
            ("mesg", Value::from(self.mesg.as_str())),
            ("reason", Value::from(self.reason.as_str())),
            ("layer", Value::from(self.layer.as_str())),
            ("buid", Value::from(hex::encode(self.buid).as_str())),
        ])
    }
}

/// `DEST/migration/migr.lmdb`.
pub struct MigrState {
    slab: Slab,
    db: Db,
}

fn key(op: &str, logtyp: &str, key: &str) -> Vec<u8> {
    format!("{op}\0{logtyp}\0{key}").into_bytes()
}

impl MigrState {
    /// Open (creating) the state in `dir`.
    pub fn open(dir: &Path) -> SynResult<MigrState> {
        let slab = Slab::open(dir.join("migr.lmdb"), Default::default())?;
        let db = slab.db("migr", false)?;
        Ok(MigrState { slab, db })
    }

    /// Open the state in `dir` only if it exists.
    pub fn open_existing(dir: &Path) -> SynResult<Option<MigrState>> {
        if dir.join("migr.lmdb").join("data.mdb").is_file() {
            MigrState::open(dir).map(Some)
        } else {
            Ok(None)
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> SynResult<Option<T>> {
        Ok(self.slab.read(|txn| self.db.get_serde(txn, k))?)
    }

    fn put<T: Serialize>(&self, k: &[u8], v: &T) -> SynResult<()> {
        Ok(self.slab.write(|txn| self.db.put_serde(txn, k, v))?)
    }

    /// The time the migrated edits carry: the first run's start, kept across resumes.
    pub fn edit_time(&self, now: i64) -> SynResult<i64> {
        let k = key("migr", "conf", "time");
        match self.get::<i64>(&k)? {
            Some(t) => Ok(t),
            None => {
                self.put(&k, &now)?;
                Ok(now)
            }
        }
    }

    /// The 0.1.x splice offset of `layer` captured before its first node pass, capturing
    /// `current` if none was.
    pub fn next_offset(&self, layer: &str, current: u64) -> SynResult<(u64, i64)> {
        let k = key("nodes", "nextoffs", layer);
        match self.get::<(u64, i64)>(&k)? {
            Some(v) => Ok(v),
            None => {
                let v = (current, now_ms());
                self.put(&k, &v)?;
                Ok(v)
            }
        }
    }

    /// The checkpoint and statistics of `layer` in step `op`, if its pass started.
    pub fn checkpoint(&self, op: &str, layer: &str) -> SynResult<Option<(Checkpoint, LayerStats)>> {
        let chk = self.get::<Checkpoint>(&key(op, "chkpnt", layer))?;
        let stats = self.get::<LayerStats>(&key(op, "stat", layer))?;
        Ok(chk.zip(stats))
    }

    /// Whether `layer`'s pass of step `op` finished.
    pub fn layer_done(&self, op: &str, layer: &str) -> SynResult<bool> {
        Ok(self.get::<i64>(&key(op, "prog", layer))?.is_some())
    }

    /// Save a checkpoint of step `op` (`nodes`, or `nodedata` alone), its statistics and the
    /// errors since the last one in one commit; `done` marks the layer's pass finished.
    pub fn save_checkpoint(
        &self,
        op: &str,
        layer: &str,
        chk: &Checkpoint,
        stats: &LayerStats,
        errors: &[ErrorRecord],
        done: bool,
    ) -> SynResult<()> {
        self.slab.write(|txn| {
            self.db
                .put_serde(txn, &key("nodes", "chkpnt", layer), chk)?;
            self.db
                .put_serde(txn, &key("nodes", "stat", layer), stats)?;
            for e in errors {
                let k = key(
                    "nodes",
                    "error",
                    &format!("{layer}:{}", hex::encode(e.buid)),
                );
                self.db.put_value(txn, &k, &e.to_value())?;
            }
            if done {
                self.db.put_serde(txn, &key(op, "prog", layer), &now_ms())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Every recorded node error, in key order (layer, then buid).
    pub fn errors(&self) -> SynResult<Vec<Value>> {
        let prefix = key("nodes", "error", "");
        Ok(self.slab.read(|txn| {
            let mut out = Vec::new();
            for row in self.db.prefix(txn, &prefix)? {
                let (_, v) = row?;
                if let Ok(v) = crate::msgpack::decode_exact(v) {
                    out.push(v);
                }
            }
            Ok(out)
        })?)
    }

    /// Mark step `op` finished.
    pub fn step_done(&self, op: &str) -> SynResult<()> {
        self.put(&key(op, "prog", ""), &now_ms())
    }
}
