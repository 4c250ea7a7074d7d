//! The cortex layer: nodes in LMDB with the indexes lifts need, node data, light edges, and the
//! edit log.
//!
//! # What a layer holds
//!
//! A layer directory `DIR` holds:
//! * `layer.lmdb`: one LMDB environment with the storage nodes ([`Sode`], by buid), the value
//!   indexes (`byprop`, `byarray`, `bytag`, `bytagprop`, all dupsort `abrv + key -> buid`),
//!   light edges both ways (`edgesn1`: `n1 + verb + 0 + n2`, `edgesn2`: `n2 + verb + 0 + n1`),
//!   node data (`buid + abrv(name) -> msgpack`), per-form counts, name abbreviations, a sparse
//!   index of log positions, and the offset of the next log record not yet applied.
//! * `nodeedits/*.seg`: the edit log (see [`log`]): every `store` call that changed something
//!   appends one record `(offset, nodeedits, meta)` with Synapse's nodeedit tuples and edit
//!   numbers, holding only the edits that changed something (old values filled in).
//! * `layer.lock`: an exclusive `flock` held while the layer is open.
//!
//! Index keys are built from `(value, stortype)` alone (see [`index_key`]); the layer knows
//! stortypes, not the data model. Names (forms, props, tags, tag props, node data names) are
//! abbreviated to 8-byte counters in first-written order, so a `#tag` lift over
//! `tagabrv + formabrv` keys yields forms in the order each was first written, then buids, as
//! Synapse does. Lifts give buids in index order: for equal keys, by buid.
//!
//! # Durability
//!
//! The edit log is the point of durability. A [`Layer::store`] call, under the single writer:
//! 1. checks every edit against its stortype (bad input fails before anything is written);
//! 2. applies the edits in one LMDB write transaction, keeping the ones that changed something;
//! 3. appends their record to the log and `fdatasync`s it;
//! 4. commits the LMDB transaction *without* syncing it (`MDB_NOSYNC`).
//!
//! When `store` returns, the record is on disk. If the process dies between 3 and 4, the next
//! open replays every record past the offset LMDB has applied (written in the same
//! transaction as the edits), so nothing acknowledged is lost and one call's edits are applied
//! all or not at all. If the LMDB commit fails after step 3, the record is cut off the log
//! again; if even that fails, the layer refuses further writes and the next open applies it.
//! A record torn by a crash during step 3 was never acknowledged: it fails its CRC and is cut
//! off on open. Calls that arrive while another is writing are merged: the next writer applies
//! all waiting calls in one transaction and one `fdatasync`, each call still getting its own
//! record and offset (group commit).
//!
//! Calls whose edits change storage nodes only (node adds, props, tags, tag props: the bulk
//! of ingest) take a faster path that leaves LMDB to a second thread. The caller works out
//! which edits change something against the storage nodes as the queued writes leave them
//! (else as LMDB holds them), appends the record to the log (step 3) and queues it; the
//! layer's applier thread (`syn-layer-apply`, see `pipeline.rs`) applies every queued record
//! in one write transaction, as a replay would, with the applied offset. Until then storage
//! nodes by buid are read from memory, each as the newest queued write left it
//! ([`Layer::node_reader`], [`Layer::sode`]), and
//! [`Layer::reader`] (lifts, edges, node data, counts) first waits for the writes queued
//! before it. Every other write (node deletions, node data, edges, a leader's records, bulk
//! loads) waits for the queue, then runs as above. Durability is the same: the record is in
//! the log before the call returns; if the applier fails, the layer refuses writes until it
//! is opened again, which applies the logged records.
//!
//! [`Layer::store_deferred`] is `store` without the `fdatasync` of step 3, for many small
//! writes acknowledged together (a storm query's edits): the caller acknowledges after one
//! [`Layer::make_durable`]. Until then its records survive the death of the process but not of
//! the machine; a record that was never flushed is never acknowledged. The background flush
//! (below) also flushes the log before it clears the dirty marker, so a missing marker still
//! means everything is on disk.
//!
//! LMDB runs with `MDB_NOSYNC | MDB_WRITEMAP` ([`SlabOptions::sync_commits`] off) and is
//! flushed by a background thread every [`LayerOptions::sync_interval`] and when the last
//! handle is dropped. Unsynced LMDB commits survive the death of the process (they are in
//! the page cache) but not of the machine: before the first unsynced commit the layer writes
//! `layer.lmdb.dirty` holding the kernel's boot id and where the log ended then, and removes it
//! after a flush that no commit raced. Opening a layer whose marker names another boot (the
//! machine went down with unflushed LMDB pages) discards `layer.lmdb` and rebuilds it from the
//! whole log, which is kept from offset 0. Past the marker's log position, unsynced records may
//! have reached the disk in any order, so there the first bad record ends the log even when
//! good ones follow (elsewhere that is corruption and the layer refuses to open); records
//! synced after the marker was written share that window.
//!
//! # Bulk loads
//!
//! A layer opened with [`LayerOptions::defer_indexes`] (as `syn migrate-200` opens the layers
//! it fills) applies and logs every write as above but leaves the four index databases alone,
//! with a `meta` marker saying so; [`Layer::build_indexes`] then clears them and writes them
//! again from the storage nodes in key order (`bulk.rs`), which costs a fraction of
//! maintaining them one random put at a time. The result is the layer `store` would have left,
//! entry for entry. Until the build, lifts miss what the load wrote; a layer opened without
//! the option while the marker is there builds its indexes before `open` returns, so a stopped
//! load never leaves a layer that lifts wrongly. Storage nodes whose buid sorts after every
//! stored one (any load in buid order) are appended, which leaves full pages.
//!
//! # Reading
//!
//! LMDB work is synchronous; async callers use `tokio::task::spawn_blocking`. Lifts, edges and
//! node data are read through a [`LayerReader`], a read snapshot that is `Send`;
//! [`Layer::lift`] runs one lift and collects its buids into a `Vec`. To stream a large lift,
//! open the reader inside `spawn_blocking` and send the buids of its lazy [`Lift`] iterator
//! through a bounded channel; keep a reader only as long as the scan, since the LMDB map cannot
//! grow while a read transaction is open (see [`crate::storage`]).
//!
//! The log is read with [`Layer::edits_from`]; [`Layer::watch_offsets`] tells when new records
//! land, and [`Layer::sync_edits`] combines the two into Synapse's `syncNodeEdits`.
//!
//! # Differences from Synapse's layer
//!
//! * A nodeedit whose edits all changed nothing is left out of the log and of
//!   [`Stored::applied`] (Synapse logs it with an empty edit list); re-setting an equal array
//!   prop changes nothing (Synapse re-indexes and logs it).
//! * FLOAT64 keys are sign-flipped so that byte order is numeric order.
//! * Not here yet: reverse-order lifts, HUGENUM values, LATLONG `near=`, Synapse's `byndef`
//!   and `dataname` indexes (lifts by ndef value or by node data name), and nodes that exist
//!   in this layer only through props or tags are not found by form lifts (those scan the
//!   primary value index).

mod apply;
mod bulk;
mod keys;
pub mod log;
mod pipeline;
mod reader;
mod sode;
mod splice;
#[cfg(test)]
mod tests;

pub use keys::{index_key, index_keys, stortype_name};
pub use log::{EditIter, LogEntry};
use reader::Snapshot;
pub use reader::{LayerReader, Lift, LiftEntry};
pub use sode::Sode;
pub use splice::{Splice, SpliceOffs};

use crate::clock::now_ms;
use crate::cortex::edits::{Buid, NodeEdit};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::{Db, Slab, SlabOptions, Txn, WriteTxn, int64en, int64un};
use apply::Apply;
use log::{EditIter as LogIter, Frame, LogWriter, SEGMENT_START, SegmentReader};
use nix::fcntl::{Flock, FlockArg};
use pipeline::{Pipeline, Planned};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// An 8-byte abbreviation of a name.
type Abrv = [u8; 8];

/// Abbreviations by the stored form of their name.
type Abrvs = HashMap<Vec<u8>, Abrv, ahash::RandomState>;

/// The LMDB environment's directory name inside the layer directory.
const LMDB_DIR: &str = "layer.lmdb";
/// The edit log's directory name.
const LOG_DIR: &str = "nodeedits";
/// The lock file.
const LOCK_FILE: &str = "layer.lock";
/// Present while LMDB has commits that are not flushed; holds the boot id.
const DIRTY_FILE: &str = "layer.lmdb.dirty";
/// Where Linux tells the current boot's id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// `meta` key of the next log offset not yet applied to LMDB.
const APPLIED_KEY: &[u8] = b"applied";
/// A log record gets an entry in the sparse position index at least this often (bytes).
const INDEX_STRIDE: u64 = 1 << 20;
/// Replay applies this many log records per LMDB transaction.
const REPLAY_BATCH: usize = 64;

/// A comparison for a lift; the values are normalized values of the lifted stortype.
#[derive(Clone, Debug, PartialEq)]
pub enum Cmp {
    /// Every entry.
    Any,
    /// `=`. On FQDN, a leading `*` matches by suffix as in Synapse (`*.vertex.link`).
    Eq(Value),
    /// `<`.
    Lt(Value),
    /// `<=`.
    Le(Value),
    /// `>`.
    Gt(Value),
    /// `>=`.
    Ge(Value),
    /// `*range=`: from the first to the second value, both included.
    Range(Value, Value),
    /// `^=`: UTF8 by bytes, LOC and TAG by whole dotted segments, GUID by hex digits.
    Prefix(String),
    /// `~=`: a case-insensitive regex search, as Synapse's.
    Regex(String),
    /// `@=`: TIME values inside, or IVAL values overlapping, the interval `(min, max)`.
    Overlaps(Value),
}

impl Cmp {
    /// The Storm comparator this stands for.
    pub fn symbol(&self) -> &'static str {
        match self {
            Cmp::Any => "*",
            Cmp::Eq(_) => "=",
            Cmp::Lt(_) => "<",
            Cmp::Le(_) => "<=",
            Cmp::Gt(_) => ">",
            Cmp::Ge(_) => ">=",
            Cmp::Range(..) => "range=",
            Cmp::Prefix(_) => "^=",
            Cmp::Regex(_) => "~=",
            Cmp::Overlaps(_) => "@=",
        }
    }
}

/// What a [`Layer::store`] call did.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The log offset of its record, or `None` when nothing changed.
    pub offset: Option<u64>,
    /// The edits that changed something, one nodeedit per buid, with old values (shared with
    /// the applier while it has not applied them).
    pub applied: Arc<Vec<NodeEdit>>,
    /// The storage nodes of `applied`'s buids as the write left them (`None`: removed).
    pub sodes: Vec<(Buid, Option<Sode>)>,
    /// [`Layer::next_offset`] right after the write: while the layer still says so, nothing
    /// has changed `sodes` since.
    pub version: u64,
}

impl Stored {
    /// A call that changed nothing, on a layer at `version`.
    fn nothing(version: u64) -> Stored {
        Stored {
            offset: None,
            applied: Arc::default(),
            sodes: Vec::new(),
            version,
        }
    }
}

/// Give each call of a batch the written sodes of the buids it changed (the state at the end
/// of the batch), and the batch's version `next`.
fn hand_out(stored: &mut [Stored], mut written: Vec<(Buid, Option<Sode>)>, next: u64) {
    let changers = stored.iter().filter(|s| !s.applied.is_empty()).count();
    for call in stored.iter_mut() {
        call.version = next;
        if call.applied.is_empty() {
            continue;
        }
        if changers == 1 {
            call.sodes = std::mem::take(&mut written);
            continue;
        }
        call.sodes = call
            .applied
            .iter()
            .filter_map(|ne| written.iter().find(|(buid, _)| *buid == ne.buid).cloned())
            .collect();
    }
}

/// Tuning for [`Layer::open_with`].
#[derive(Clone, Debug)]
pub struct LayerOptions {
    /// A log segment is closed once it grows past this many bytes.
    pub segment_size: u64,
    /// How often LMDB is flushed in the background.
    pub sync_interval: Duration,
    /// The LMDB map size to start with (it grows as needed).
    pub map_size: usize,
    /// Open for a bulk load: writes leave the index databases alone (lifts do not see what
    /// they add) until [`Layer::build_indexes`] rebuilds them from the storage nodes in one
    /// sorted pass. A layer left so (the load was stopped) builds them when next opened
    /// without this option.
    pub defer_indexes: bool,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            segment_size: 64 << 20,
            sync_interval: Duration::from_secs(1),
            map_size: 256 << 20,
            defer_indexes: false,
        }
    }
}

/// The named databases of `layer.lmdb`.
struct Dbs {
    bybuid: Db,
    byprop: Db,
    byarray: Db,
    bytag: Db,
    bytagprop: Db,
    edgesn1: Db,
    edgesn2: Db,
    nodedata: Db,
    abrv: Db,
    abrvrev: Db,
    counts: Db,
    meta: Db,
    logpos: Db,
}

/// The most storage nodes a commit keeps for the next to start from ([`kept_recent`]).
const RECENT_KEPT: usize = 64;

/// Most named databases the layer's environment holds: the 13 of [`Dbs`] and room for a few
/// more. LMDB zeroes a table of this size at every transaction's start, so it is kept small.
const MAX_DBS: u32 = 16;

impl Dbs {
    /// The offset of the first log record LMDB has not applied, as `txn` sees it.
    fn applied(&self, txn: &impl Txn) -> crate::storage::Result<u64> {
        Ok(self.meta.get(txn, APPLIED_KEY)?.map_or(0, int64un))
    }

    /// Note in `wtxn` new entries of the sparse log position index and that LMDB has applied
    /// the log up to `next`.
    fn note_applied(
        &self,
        wtxn: &mut WriteTxn<'_>,
        indexed: &[(u64, LogPos)],
        next: u64,
    ) -> crate::storage::Result<()> {
        for (offs, pos) in indexed {
            self.logpos.put(wtxn, &int64en(*offs), &pos.encode())?;
        }
        self.meta.put(wtxn, APPLIED_KEY, &int64en(next))
    }

    fn open(slab: &Slab) -> SynResult<Dbs> {
        Ok(Dbs {
            bybuid: slab.db("bybuid", false)?,
            byprop: slab.db("byprop", true)?,
            byarray: slab.db("byarray", true)?,
            bytag: slab.db("bytag", true)?,
            bytagprop: slab.db("bytagprop", true)?,
            edgesn1: slab.db("edgesn1", false)?,
            edgesn2: slab.db("edgesn2", false)?,
            nodedata: slab.db("nodedata", false)?,
            abrv: slab.db("abrv", false)?,
            abrvrev: slab.db("abrvrev", false)?,
            counts: slab.db("counts:forms", false)?,
            meta: slab.db("meta", false)?,
            logpos: slab.db("logpos", false)?,
        })
    }
}

/// A name that gets an abbreviation; each kind has its own key space.
#[derive(Clone, Copy)]
enum AbrvName<'a> {
    /// A form's primary value.
    Form(&'a str),
    /// A prop of a form (`form`, `prop`).
    Prop(&'a str, &'a str),
    /// A universal prop across forms.
    Univ(&'a str),
    /// A tag.
    Tag(&'a str),
    /// A tag prop, of one form or of all (`form`, `tag`, `prop`).
    TagProp(Option<&'a str>, &'a str, &'a str),
    /// A node data name.
    Data(&'a str),
}

impl AbrvName<'_> {
    /// The stored name: a kind byte, then the parts joined by NUL (names never hold NUL).
    fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(48);
        self.write_key(&mut key);
        key
    }

    /// [`AbrvName::key`] into `key`, which is cleared first.
    fn write_key(&self, key: &mut Vec<u8>) {
        key.clear();
        let mut put = |kind: u8, parts: &[&str]| {
            key.push(kind);
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    key.push(0);
                }
                key.extend_from_slice(part.as_bytes());
            }
        };
        match *self {
            AbrvName::Form(form) => put(b'f', &[form]),
            AbrvName::Prop(form, prop) => put(b'p', &[form, prop]),
            AbrvName::Univ(prop) => put(b'u', &[prop]),
            AbrvName::Tag(tag) => put(b't', &[tag]),
            AbrvName::TagProp(None, tag, prop) => put(b'h', &[tag, prop]),
            AbrvName::TagProp(Some(form), tag, prop) => put(b'g', &[form, tag, prop]),
            AbrvName::Data(name) => put(b'd', &[name]),
        }
    }
}

/// Where a log record starts.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LogPos {
    segment: u64,
    pos: u64,
}

impl LogPos {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&int64en(self.segment));
        out[8..].copy_from_slice(&int64en(self.pos));
        out
    }

    fn decode(bytes: &[u8]) -> SynResult<LogPos> {
        if bytes.len() != 16 {
            return Err(SynErr::new("StorageError", "bad stored log position"));
        }
        Ok(LogPos {
            segment: int64un(&bytes[..8]),
            pos: int64un(&bytes[8..]),
        })
    }
}

/// The single writer's state.
struct Writer {
    log: LogWriter,
    next_offset: u64,
    /// The last entry of the sparse position index.
    last_indexed: Option<LogPos>,
    /// Whether LMDB has commits not yet flushed (and the dirty marker exists).
    lmdb_dirty: bool,
    /// Set when the log could not be cut back after a failed commit.
    broken: Option<String>,
}

/// What a committed transaction created that the in-memory caches must learn.
struct Learned {
    /// New entries of the sparse log position index.
    indexed: Vec<(u64, LogPos)>,
    /// Abbreviations created or first read from LMDB.
    abrvs: Abrvs,
}

/// What a batch's transaction produced.
struct Batch {
    /// Each call's result.
    stored: Vec<Stored>,
    /// Bytes appended to the log.
    logged: u64,
    /// The next log offset.
    next: u64,
    learned: Learned,
    /// The storage nodes the batch wrote, for the next commit to start from.
    recent: Vec<(Buid, Option<Sode>)>,
}

/// One call as the writer sees it: edits, meta, where they come from, and whether to sync.
type StoreCall<'a> = (&'a [NodeEdit], &'a Value, Origin, bool);

/// Buids a writer looked up and found without a storage node while the layer's next offset
/// was `at` ([`Layer::store_knowing`]).
#[derive(Clone, Debug, Default)]
pub struct Absent {
    at: u64,
    buids: Vec<Buid>,
}

impl Absent {
    /// Note that `buid` had no storage node while the layer's next offset was `at` (what
    /// [`Layer::next_offset`] said before the lookup); notes made at another offset are
    /// dropped.
    pub fn note(&mut self, at: u64, buid: Buid) {
        if at != self.at {
            self.buids.clear();
            self.at = at;
        }
        self.buids.push(buid);
    }

    /// The buids still missing if the layer's next offset is `next` (none otherwise).
    fn still(&self, next: u64) -> &[Buid] {
        if self.at == next { &self.buids } else { &[] }
    }
}

/// Where a call's edits come from.
#[derive(Clone, Copy, Debug)]
enum Origin {
    /// Made here: added nodes get this `.created` tick, and only the edits that changed
    /// something are logged.
    Local(i64),
    /// A leader's log record at this offset, which must be this layer's next: applied as
    /// logged and logged as it was (see [`Layer::replicate`]).
    Leader(u64),
}

/// A `store` call waiting for the writer.
struct Request {
    edits: Vec<NodeEdit>,
    meta: Value,
    tick: i64,
    sync: bool,
    result: Mutex<Option<SynResult<Stored>>>,
}

/// Stops the background flusher.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

struct Inner {
    iden: String,
    dir: PathBuf,
    log_dir: PathBuf,
    slab: Slab,
    /// Shared with the applier thread, which must never hold the layer itself.
    dbs: Arc<Dbs>,
    abrvs: Arc<RwLock<Abrvs>>,
    /// Shared with the flush thread, which must never hold the layer itself.
    writer: Arc<Mutex<Writer>>,
    /// Planned writes on their way to LMDB (see [`pipeline`]).
    pipeline: Arc<Pipeline>,
    applier: Mutex<Option<JoinHandle<()>>>,
    queue: Mutex<Vec<Arc<Request>>>,
    positions: RwLock<BTreeMap<u64, LogPos>>,
    offsets: watch::Sender<u64>,
    segment_size: u64,
    /// Writes leave the index databases to [`Layer::build_indexes`].
    defer_indexes: AtomicBool,
    /// Why `store` refuses, while it does (a mirror takes its leader's records only).
    read_only: crate::cell::ReadOnly,
    stop: Arc<Stop>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    _lock: Flock<File>,
}

/// A cortex layer; clones share it. See the module documentation.
#[derive(Clone)]
pub struct Layer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("iden", &self.inner.iden)
            .field("dir", &self.inner.dir)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err(path: &Path, op: &str, err: std::io::Error) -> SynErr {
    log::io_err(path, op, err)
}

/// A leader's record that is not this layer's next: the two logs differ.
fn desync(iden: &str, at: u64, next: u64) -> SynErr {
    SynErr::new(
        "MirrorDesync",
        format!("layer {iden}: the leader's record {at} is not this layer's next ({next})"),
    )
}

/// A `store` call whose batch ended without a result for it (the writer panicked).
fn lost_result() -> SynErr {
    SynErr::new("StorageError", "store call lost its result")
}

fn boot_id() -> String {
    fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Layer {
    /// Open (creating if needed) the layer in `dir`, replaying the log's tail after a crash.
    pub fn open(dir: &Path, iden: &str) -> SynResult<Layer> {
        Layer::open_with(dir, iden, LayerOptions::default())
    }

    /// [`Layer::open`] with options.
    pub fn open_with(dir: &Path, iden: &str, opts: LayerOptions) -> SynResult<Layer> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, "create directory", e))?;
        let lock = lock_dir(dir)?;
        let dirty = dir.join(DIRTY_FILE);
        let lmdb = dir.join(LMDB_DIR);
        let mut unsynced_from = None;
        if let Ok(marked) = fs::read_to_string(&dirty)
            && marked.lines().next().unwrap_or("").trim() != boot_id()
        {
            unsynced_from = Some(parse_marker_position(&marked));
            tracing::warn!(
                dir = %dir.display(),
                "the machine stopped while LMDB had unflushed commits; rebuilding it from the edit log"
            );
            if lmdb.exists() {
                fs::remove_dir_all(&lmdb).map_err(|e| io_err(&lmdb, "remove", e))?;
            }
        }
        let slab = Slab::open(
            &lmdb,
            SlabOptions {
                map_size: opts.map_size,
                sync_commits: false,
                max_dbs: MAX_DBS,
                ..SlabOptions::default()
            },
        )?;
        let dbs = Dbs::open(&slab)?;
        let (applied, positions, deferred) = slab.read(|r| {
            let applied = dbs.applied(r)?;
            let mut positions = Vec::new();
            for entry in dbs.logpos.iter(r)? {
                let (key, val) = entry?;
                positions.push((int64un(key), val.to_vec()));
            }
            let deferred = dbs.meta.get(r, bulk::DEFERRED_KEY)?.is_some();
            Ok((applied, positions, deferred))
        })?;
        let positions = positions
            .into_iter()
            .map(|(offs, pos)| Ok((offs, LogPos::decode(&pos)?)))
            .collect::<SynResult<BTreeMap<_, _>>>()?;
        let log_dir = dir.join(LOG_DIR);
        fs::create_dir_all(&log_dir).map_err(|e| io_err(&log_dir, "create directory", e))?;
        let tail = find_log_end(&log_dir, &positions, unsynced_from)?;
        if applied > tail.next {
            return Err(SynErr::new(
                "StorageError",
                format!(
                    "{}: LMDB has applied {applied} log records but the edit log holds {}",
                    dir.display(),
                    tail.next
                ),
            ));
        }
        let log_next = tail.next;
        let log = match tail.segment {
            Some(segment) => LogWriter::resume(&log_dir, segment, tail.end)?,
            None => LogWriter::create(&log_dir, 0)?,
        };
        let last_indexed = positions.values().next_back().copied();
        let inner = Arc::new(Inner {
            iden: iden.to_owned(),
            dir: dir.to_path_buf(),
            log_dir,
            slab,
            dbs: Arc::new(dbs),
            abrvs: Arc::default(),
            writer: Arc::new(Mutex::new(Writer {
                log,
                next_offset: log_next,
                last_indexed,
                lmdb_dirty: dirty.exists(),
                broken: None,
            })),
            pipeline: Arc::default(),
            applier: Mutex::default(),
            queue: Mutex::default(),
            positions: RwLock::new(positions),
            offsets: watch::Sender::new(applied),
            segment_size: opts.segment_size,
            defer_indexes: AtomicBool::new(deferred),
            read_only: crate::cell::ReadOnly::default(),
            stop: Arc::default(),
            flusher: Mutex::default(),
            _lock: lock,
        });
        let layer = Layer { inner };
        layer.replay(applied, log_next)?;
        layer.inner.offsets.send_replace(log_next);
        if opts.defer_indexes {
            layer.defer_indexes()?;
        } else {
            layer.build_indexes()?;
        }
        layer.start_flusher(opts.sync_interval)?;
        layer.start_applier()?;
        Ok(layer)
    }

    /// Leave the index databases to [`Layer::build_indexes`] from now on, after marking so
    /// in LMDB (the marker is committed before any write that is not indexed).
    fn defer_indexes(&self) -> SynResult<()> {
        let inner = &self.inner;
        let mut writer = lock(&inner.writer);
        if inner.defer_indexes.load(Ordering::Acquire) {
            return Ok(());
        }
        inner.pipeline.wait_applied()?;
        self.mark_dirty(&mut writer)?;
        write_txn(&inner.slab, |wtxn| {
            Ok(inner.dbs.meta.put(wtxn, bulk::DEFERRED_KEY, &[])?)
        })?;
        inner.pipeline.count_commit();
        inner.defer_indexes.store(true, Ordering::Release);
        Ok(())
    }

    /// Bring the index databases up to date after writes that deferred them (a layer opened
    /// with [`LayerOptions::defer_indexes`], or one such load that was stopped): rebuild them
    /// from the storage nodes in one sorted pass, and index every write from then on. Nothing
    /// to do otherwise. Lifts see the indexes whole only once this returns.
    pub fn build_indexes(&self) -> SynResult<()> {
        let inner = &self.inner;
        let mut writer = lock(&inner.writer);
        if !inner.defer_indexes.load(Ordering::Acquire) {
            return Ok(());
        }
        inner.pipeline.wait_applied()?;
        bulk::build(self, &mut writer)?;
        inner.defer_indexes.store(false, Ordering::Release);
        Ok(())
    }

    /// The layer's iden.
    pub fn iden(&self) -> &str {
        &self.inner.iden
    }

    /// The layer's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The disk space its directory's files take, in bytes (allocated blocks, as Synapse's
    /// `getLayerSize` counts them).
    pub fn disk_size(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            use std::os::unix::fs::MetadataExt;
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                .map(|(path, meta)| match meta.is_dir() {
                    true => walk(&path),
                    false => meta.blocks() * 512,
                })
                .sum()
        }
        walk(&self.inner.dir)
    }

    /// Apply nodeedits; durable when this returns. Each edit is applied only if it changes
    /// something, the changed edits are logged as one record with `meta`, and the call's edits
    /// are applied all or not at all. A `NODE_ADD` also sets `.created` to `meta.time` (or
    /// now), keeping an older `.created`.
    pub fn store(&self, edits: &[NodeEdit], meta: &Value) -> SynResult<Stored> {
        self.store_knowing(edits, meta, true, &Absent::default())
    }

    /// [`Layer::store`] without waiting for the disk: the record is logged and applied (so
    /// readers and a process crash see it) but not flushed, and is durable only after the
    /// next [`Layer::make_durable`], synced `store`, or background flush. For many small
    /// writes acknowledged together, such as one storm query's edits.
    pub fn store_deferred(&self, edits: &[NodeEdit], meta: &Value) -> SynResult<Stored> {
        self.store_knowing(edits, meta, false, &Absent::default())
    }

    /// Flush every record logged so far to disk (one `fdatasync`, none if nothing is pending).
    /// After this returns, everything [`Layer::store_deferred`] wrote survives a machine crash.
    pub fn make_durable(&self) -> SynResult<()> {
        lock(&self.inner.writer).log.sync()
    }

    /// How many times the edit log was flushed to disk since the layer was opened (a
    /// diagnostic: bulk writes should flush once, not per record).
    pub fn log_syncs(&self) -> u64 {
        lock(&self.inner.writer).log.syncs()
    }

    /// Refuse [`Layer::store`] with `IsReadOnly` and `why` (or take stores again: `None`).
    /// [`Layer::replicate`] still writes.
    pub fn set_read_only(&self, why: Option<String>) {
        self.inner.read_only.set(why);
    }

    /// Append a leader's log records to this layer, which must hold exactly the leader's
    /// records before the first of them (a mirror started from a backup of the leader): each
    /// is applied as logged and logged unchanged at the same offset, in one transaction. A
    /// record whose offset is not this layer's next is refused with `MirrorDesync`, and
    /// nothing of the call is written. With `sync` false they are durable after the next
    /// [`Layer::make_durable`].
    pub fn replicate(&self, records: &[LogEntry], sync: bool) -> SynResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        for record in records {
            apply::validate(&record.edits)?;
        }
        let batch: Vec<StoreCall<'_>> = records
            .iter()
            .map(|r| (&r.edits[..], &r.meta, Origin::Leader(r.offset), sync))
            .collect();
        let mut writer = lock(&self.inner.writer);
        self.try_write_batch(&mut writer, &batch, &Absent::default())
            .map(|_| ())
    }

    /// [`Layer::store`] (`sync`) or [`Layer::store_deferred`] by a writer that looked up some
    /// of the nodes it edits and found them missing: planning does not look them up again
    /// while nothing was written since.
    pub fn store_knowing(
        &self,
        edits: &[NodeEdit],
        meta: &Value,
        sync: bool,
        absent: &Absent,
    ) -> SynResult<Stored> {
        self.inner.read_only.check()?;
        apply::validate(edits)?;
        if edits.iter().all(|ne| ne.edits.is_empty()) {
            return Ok(Stored::nothing(self.next_offset()));
        }
        let tick = meta
            .get("time")
            .and_then(Value::as_i64)
            .unwrap_or_else(now_ms);
        let inner = &self.inner;
        // Before the writer lock and the write gate: the applier may need the gate for room.
        inner.pipeline.wait_room();
        if let Ok(mut writer) = inner.writer.try_lock() {
            let queued = std::mem::take(&mut *lock(&inner.queue));
            let mut batch = vec![(edits, meta, Origin::Local(tick), sync)];
            batch.extend(
                queued
                    .iter()
                    .map(|r| (&r.edits[..], &r.meta, Origin::Local(r.tick), r.sync)),
            );
            let mut results = self.write_batch(&mut writer, &batch, absent).into_iter();
            let mine = results.next();
            for (req, res) in queued.iter().zip(results) {
                *lock(&req.result) = Some(res);
            }
            return mine.unwrap_or_else(|| Err(lost_result()));
        }
        let request = Arc::new(Request {
            edits: edits.to_vec(),
            meta: meta.clone(),
            tick,
            sync,
            result: Mutex::new(None),
        });
        lock(&inner.queue).push(request.clone());
        let mut writer = lock(&inner.writer);
        if let Some(res) = lock(&request.result).take() {
            return res;
        }
        let queued = std::mem::take(&mut *lock(&inner.queue));
        let batch: Vec<_> = queued
            .iter()
            .map(|r| (&r.edits[..], &r.meta, Origin::Local(r.tick), r.sync))
            .collect();
        let results = self.write_batch(&mut writer, &batch, &Absent::default());
        for (req, res) in queued.iter().zip(results) {
            *lock(&req.result) = Some(res);
        }
        drop(writer);
        lock(&request.result)
            .take()
            .unwrap_or_else(|| Err(lost_result()))
    }

    /// Apply a batch of calls in one transaction and one log write; `absent` holds buids that
    /// had no storage node when the layer's next offset was `absent.at`.
    fn write_batch(
        &self,
        writer: &mut Writer,
        batch: &[StoreCall<'_>],
        absent: &Absent,
    ) -> Vec<SynResult<Stored>> {
        match self.try_write_batch(writer, batch, absent) {
            Ok(stored) => stored.into_iter().map(Ok).collect(),
            Err(err) => vec![Err(err); batch.len()],
        }
    }

    fn try_write_batch(
        &self,
        writer: &mut Writer,
        batch: &[StoreCall<'_>],
        absent: &Absent,
    ) -> SynResult<Vec<Stored>> {
        let inner = &self.inner;
        if let Some(why) = writer.broken.clone().or_else(|| inner.pipeline.failed()) {
            return Err(SynErr::new(
                "StorageError",
                format!("layer {} refuses writes until reopened: {why}", inner.iden),
            ));
        }
        // One share of the write gate over the whole batch (the slab's write re-enters it;
        // a planned batch hands a share on to the applier): a backup's snapshot point never
        // falls between the LMDB commit and the log's end moving, nor inside a roll to a new
        // segment.
        let _share = crate::storage::write_gate().enter();
        writer
            .log
            .roll_if_full(writer.next_offset, inner.segment_size)?;
        self.mark_dirty(writer)?;
        let plannable = !inner.defer_indexes.load(Ordering::Acquire)
            && batch.iter().all(|(edits, _, origin, _)| {
                matches!(origin, Origin::Local(_)) && apply::plannable(edits)
            });
        if plannable {
            return self.plan_batch(writer, batch, absent);
        }
        // Everything planned before must be in LMDB before this transaction reads it.
        inner.pipeline.wait_applied()?;
        let first = writer.next_offset;
        let written = write_txn(&inner.slab, |wtxn| self.apply_batch(wtxn, writer, batch));
        let batch = match written {
            Ok(done) => done,
            Err(err) => {
                if let Err(cut) = writer.log.rollback() {
                    writer.broken = Some(cut.mesg().to_owned());
                }
                return Err(err);
            }
        };
        writer.log.advance(batch.logged);
        writer.next_offset = batch.next;
        inner.pipeline.committed(batch.recent);
        self.learn(batch.learned, writer);
        if batch.next > first {
            inner.offsets.send_replace(batch.next);
        }
        Ok(batch.stored)
    }

    /// Work out a batch of calls that change storage nodes only, log their records and queue
    /// them for the applier thread: the caller does not wait for LMDB. What they changed is
    /// worked out against the storage nodes as the queued writes leave them, else as LMDB
    /// holds them.
    fn plan_batch(
        &self,
        writer: &mut Writer,
        batch: &[StoreCall<'_>],
        absent: &Absent,
    ) -> SynResult<Vec<Stored>> {
        let inner = &self.inner;
        let first = writer.next_offset;
        let snap = Snapshot::new(self);
        let txn = || snap.txn(self);
        // Nothing was written since they were found missing: they still are (an earlier
        // call of the batch that adds one is seen by `apply` without reading).
        let absent = absent.still(first);
        let read = |buid: &Buid| match absent.contains(buid) {
            true => Ok(None),
            false => self.read_sode(&snap, buid),
        };
        let mut apply = Apply::plan(&inner.dbs, &txn, &read, &inner.abrvs);
        let mut stored = Vec::with_capacity(batch.len());
        let mut framed = Framed::new(writer.log.end());
        let mut records = Vec::new();
        let mut offs = first;
        let sync = batch.iter().any(|call| call.3);
        for (edits, meta, origin, _) in batch {
            let Origin::Local(tick) = *origin else {
                return Err(SynErr::new(
                    "StorageError",
                    "a leader's record cannot be planned",
                ));
            };
            let applied = apply.nodeedits(edits, tick, false)?;
            if applied.is_empty() {
                stored.push(Stored::nothing(first));
                continue;
            }
            let applied = Arc::new(applied);
            records.push(Arc::clone(&applied));
            stored.push(framed.record(offs, applied, meta)?);
            offs += 1;
        }
        let written = apply.planned()?;
        drop(apply);
        drop(snap);
        if offs == first {
            hand_out(&mut stored, written, offs);
            return Ok(stored);
        }
        let Framed {
            frames, positions, ..
        } = framed;
        let indexed = choose_indexed(writer.last_indexed, writer.log.segment(), &positions);
        if let Err(err) = writer.log.write(&frames, sync) {
            if let Err(cut) = writer.log.rollback() {
                writer.broken = Some(cut.mesg().to_owned());
            }
            return Err(err);
        }
        writer.log.advance(frames.len() as u64);
        writer.next_offset = offs;
        self.learn(
            Learned {
                indexed: indexed.clone(),
                abrvs: Abrvs::default(),
            },
            writer,
        );
        hand_out(&mut stored, written.clone(), offs);
        let job = Planned {
            records,
            indexed,
            next: offs,
            share: crate::storage::write_gate().hand_over(),
        };
        inner.pipeline.push(job, written);
        inner.offsets.send_replace(offs);
        Ok(stored)
    }

    /// The body of a batch's write transaction: apply every call, log the records that
    /// changed something (synced), and note the applied offset and log positions.
    fn apply_batch(
        &self,
        wtxn: &mut WriteTxn<'_>,
        writer: &mut Writer,
        batch: &[StoreCall<'_>],
    ) -> SynResult<Batch> {
        let inner = &self.inner;
        let first = writer.next_offset;
        let defer = inner.defer_indexes.load(Ordering::Acquire);
        let mut apply = Apply::new(&inner.dbs, wtxn, &inner.abrvs, defer);
        // Taken, not copied: a committed batch sets it anew, a failed one leaves it empty.
        apply.start_from(inner.pipeline.take_recent());
        let mut stored = Vec::with_capacity(batch.len());
        let mut framed = Framed::new(writer.log.end());
        let mut offs = first;
        let sync = batch.iter().any(|call| call.3);
        for (edits, meta, origin, _) in batch {
            let applied = match *origin {
                Origin::Local(tick) => apply.nodeedits(edits, tick, false)?,
                Origin::Leader(at) if at == offs => {
                    apply.nodeedits(edits, 0, true)?;
                    edits.to_vec()
                }
                Origin::Leader(at) => return Err(desync(&inner.iden, at, offs)),
            };
            // A leader's record keeps its offset even if it holds nothing.
            if applied.is_empty() && matches!(origin, Origin::Local(_)) {
                stored.push(Stored::nothing(first));
                continue;
            }
            stored.push(framed.record(offs, Arc::new(applied), meta)?);
            offs += 1;
        }
        let written = apply.finish()?;
        let recent = kept_recent(&written);
        hand_out(&mut stored, written, offs);
        let Framed {
            frames, positions, ..
        } = framed;
        let indexed = choose_indexed(writer.last_indexed, writer.log.segment(), &positions);
        // Without records there are no positions to index and the applied offset stays.
        if offs > first {
            inner.dbs.note_applied(apply.wtxn()?, &indexed, offs)?;
            writer.log.write(&frames, sync)?;
        }
        let (abrvs, _) = apply.take_abrvs();
        Ok(Batch {
            stored,
            logged: frames.len() as u64,
            next: offs,
            learned: Learned { indexed, abrvs },
            recent,
        })
    }

    /// Publish what a committed transaction created or found: abbreviations and log positions.
    fn learn(&self, learned: Learned, writer: &mut Writer) {
        let Learned { indexed, abrvs } = learned;
        if !abrvs.is_empty() {
            self.inner
                .abrvs
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(abrvs);
        }
        if let Some((_, last)) = indexed.last() {
            writer.last_indexed = Some(*last);
            let mut positions = self
                .inner
                .positions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            positions.extend(indexed);
        }
    }

    /// Write the dirty marker before the first unflushed commit: the boot id, then where the
    /// log ends (everything before it is on disk: the marker is only removed after the log
    /// and LMDB are flushed).
    fn mark_dirty(&self, writer: &mut Writer) -> SynResult<()> {
        if writer.lmdb_dirty {
            return Ok(());
        }
        let path = self.inner.dir.join(DIRTY_FILE);
        let text = format!(
            "{}\n{} {}\n",
            boot_id(),
            writer.log.segment(),
            writer.log.end()
        );
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&path)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| io_err(&path, "write", e))?;
        log::sync_dir(&self.inner.dir)?;
        writer.lmdb_dirty = true;
        Ok(())
    }

    /// Apply the logged records from `from` up to `to` that LMDB is missing.
    fn replay(&self, from: u64, to: u64) -> SynResult<()> {
        if from >= to {
            return Ok(());
        }
        tracing::info!(iden = %self.inner.iden, from, to, "replaying the edit log into LMDB");
        let inner = &self.inner;
        let mut writer = lock(&inner.writer);
        self.mark_dirty(&mut writer)?;
        let mut iter = self.log_iter(from, to)?;
        let mut offs = from;
        while offs < to {
            let mut chunk = Vec::with_capacity(REPLAY_BATCH);
            while chunk.len() < REPLAY_BATCH {
                match iter.next_positioned()? {
                    Some(item) => chunk.push(item),
                    None => break,
                }
            }
            let Some(last) = chunk.last() else {
                return Err(SynErr::new(
                    "StorageError",
                    format!("edit log ended at {offs} while replaying up to {to}"),
                ));
            };
            let next = last.1.offset + 1;
            let last_indexed = writer.last_indexed;
            let learned = write_txn(&inner.slab, |wtxn| {
                self.replay_chunk(wtxn, &chunk, last_indexed, next)
            })?;
            inner.pipeline.count_commit();
            self.learn(learned, &mut writer);
            offs = next;
        }
        Ok(())
    }

    /// One replay transaction: apply logged records as they are and note their positions.
    fn replay_chunk(
        &self,
        wtxn: &mut WriteTxn<'_>,
        chunk: &[(LogPos, LogEntry)],
        last_indexed: Option<LogPos>,
        next: u64,
    ) -> SynResult<Learned> {
        let mut indexed = Vec::new();
        let mut last = last_indexed;
        for (pos, entry) in chunk {
            let chosen = choose_indexed(last, pos.segment, &[(entry.offset, pos.pos)]);
            if let Some((_, p)) = chosen.last() {
                last = Some(*p);
            }
            indexed.extend(chosen);
        }
        let inner = &self.inner;
        let records = chunk.iter().map(|(_, entry)| &entry.edits[..]);
        let (_, abrvs) = apply_logged(
            &inner.dbs,
            &inner.abrvs,
            inner.defer_indexes.load(Ordering::Acquire),
            wtxn,
            Vec::new(),
            records,
            &indexed,
            next,
        )?;
        Ok(Learned { indexed, abrvs })
    }

    /// Start the thread that applies planned writes to LMDB.
    fn start_applier(&self) -> SynResult<()> {
        let inner = &self.inner;
        let (slab, dbs, abrvs) = (inner.slab.clone(), inner.dbs.clone(), inner.abrvs.clone());
        let apply = move |batch: &[Arc<Planned>], recent: pipeline::Sodes| {
            let Some(next) = batch.last().map(|job| job.next) else {
                return Ok(recent);
            };
            let mut recent = Some(recent);
            let indexed: Vec<(u64, LogPos)> =
                batch.iter().flat_map(|job| job.indexed.clone()).collect();
            let (written, learned) = write_txn(&slab, |wtxn| {
                let records = batch
                    .iter()
                    .flat_map(|job| job.records.iter().map(|edits| &edits[..]));
                let start = recent.take().unwrap_or_default();
                apply_logged(&dbs, &abrvs, false, wtxn, start, records, &indexed, next)
            })?;
            if !learned.is_empty() {
                abrvs
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(learned);
            }
            Ok(kept_recent(&written))
        };
        let handle = pipeline::spawn_applier(inner.pipeline.clone(), "syn-layer-apply", apply)
            .map_err(|e| io_err(&inner.dir, "start the applier thread", e))?;
        *lock(&inner.applier) = Some(handle);
        Ok(())
    }

    fn start_flusher(&self, every: Duration) -> SynResult<()> {
        let (slab, writer) = (self.inner.slab.clone(), self.inner.writer.clone());
        let pipeline = self.inner.pipeline.clone();
        let (dir, iden) = (self.inner.dir.clone(), self.inner.iden.clone());
        let stop = self.inner.stop.clone();
        let handle = std::thread::Builder::new()
            .name("syn-layer-sync".into())
            .spawn(move || {
                loop {
                    let stopped = lock(&stop.stopped);
                    let (stopped, _) = stop
                        .wake
                        .wait_timeout_while(stopped, every, |s| !*s)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    if let Err(err) = flush(&slab, &writer, &pipeline, &dir) {
                        tracing::warn!(%iden, %err, "flushing the layer's LMDB failed");
                    }
                }
            })
            .map_err(|e| io_err(&self.inner.dir, "start the flush thread", e))?;
        *lock(&self.inner.flusher) = Some(handle);
        Ok(())
    }

    /// Flush LMDB to disk now (it is also flushed every `sync_interval` and on close).
    pub fn sync(&self) -> SynResult<()> {
        self.inner.flush()
    }

    /// Drop the layer's LMDB pages from this process's resident set (see
    /// [`Slab::release_resident`]); for bulk writers such as `syn migrate-200`.
    pub fn release_resident(&self) {
        self.inner.slab.release_resident();
    }

    /// Flush and release this handle, reporting flush errors that dropping would only log.
    /// The layer closes (its lock is released) when the last handle and reader are gone.
    pub fn close(self) -> SynResult<()> {
        self.inner.flush()
    }

    /// The offset the next log record will get (Synapse's `getEditIndx`).
    pub fn next_offset(&self) -> u64 {
        *self.inner.offsets.borrow()
    }

    /// A receiver of [`Layer::next_offset`], updated after each write that logged a record.
    pub fn watch_offsets(&self) -> watch::Receiver<u64> {
        self.inner.offsets.subscribe()
    }

    /// The logged records from `offs` up to the current end, read lazily from the log files.
    pub fn edits_from(&self, offs: u64) -> SynResult<EditIter> {
        self.log_iter(offs, self.next_offset())
    }

    fn log_iter(&self, offs: u64, limit: u64) -> SynResult<LogIter> {
        let dir = &self.inner.log_dir;
        if offs >= limit {
            return LogIter::new(dir, 0, SEGMENT_START, limit, offs, limit);
        }
        let positions = self
            .inner
            .positions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match positions.range(..=offs).next_back() {
            Some((at, pos)) => LogIter::new(dir, pos.segment, pos.pos, *at, offs, limit),
            // Nothing indexed yet (LMDB is being rebuilt): read from the first segment.
            None => {
                let first = log::list_segments(dir)?.first().copied().unwrap_or(0);
                LogIter::new(dir, first, SEGMENT_START, first, offs, limit)
            }
        }
    }

    /// Follow the log from `offs`: every record, then each new one as it lands (Synapse's
    /// `syncNodeEdits`). Needs a tokio runtime; the stream ends when the receiver is dropped,
    /// the layer is dropped, or reading fails (after sending the error).
    pub fn sync_edits(&self, offs: u64) -> mpsc::Receiver<SynResult<LogEntry>> {
        let (tx, rx) = mpsc::channel(64);
        let weak = Arc::downgrade(&self.inner);
        let mut offsets = self.watch_offsets();
        tokio::spawn(async move {
            let mut next = offs;
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let layer = Layer { inner };
                let read = tokio::task::spawn_blocking(move || -> SynResult<Vec<LogEntry>> {
                    layer.edits_from(next)?.take(256).collect()
                })
                .await;
                let entries = match read {
                    Ok(Ok(entries)) => entries,
                    Ok(Err(err)) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                    Err(join) => {
                        let err = SynErr::new("StorageError", format!("log reader failed: {join}"));
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                if entries.is_empty() {
                    if offsets.wait_for(|n| *n > next).await.is_err() {
                        return;
                    }
                    continue;
                }
                for entry in entries {
                    next = entry.offset + 1;
                    if tx.send(Ok(entry)).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }

    /// Open a read snapshot for lifts and lookups, once every write so far is in LMDB.
    pub fn reader(&self) -> SynResult<LayerReader> {
        self.inner.pipeline.wait_applied()?;
        LayerReader::new(self.clone())
    }

    /// Open a read snapshot for storage nodes by buid ([`LayerReader::sode`]) without waiting
    /// for LMDB: nodes of writes not yet applied come from memory. Its lifts, edges and node
    /// data may miss the latest writes: use [`Layer::reader`] for those.
    pub fn node_reader(&self) -> SynResult<LayerReader> {
        LayerReader::new(self.clone())
    }

    /// Run one lift in a fresh snapshot and collect its buids, in index order:
    /// `layer.lift(|r| r.lift_tag("foo", None))`.
    pub fn lift(
        &self,
        lift: impl FnOnce(&LayerReader) -> SynResult<Lift<'_>>,
    ) -> SynResult<Vec<Buid>> {
        let reader = self.reader()?;
        lift(&reader)?.collect()
    }

    /// The storage node of a buid.
    pub fn sode(&self, buid: &Buid) -> SynResult<Option<Sode>> {
        self.node_reader()?.sode(buid)
    }

    /// The number of nodes of each form.
    pub fn form_counts(&self) -> SynResult<BTreeMap<String, u64>> {
        self.reader()?.form_counts()
    }

    /// Synapse's `splices(offs, size)`: the log flattened into splices from `offs`.
    pub fn splices_from(&self, offs: SpliceOffs, size: Option<usize>) -> SynResult<Vec<Splice>> {
        splice::splices(self, offs, size)
    }
}

/// [`Slab::write`] with a body that fails with any error: the transaction is aborted and the
/// body's own error returned.
fn write_txn<T>(
    slab: &Slab,
    mut body: impl FnMut(&mut WriteTxn<'_>) -> SynResult<T>,
) -> SynResult<T> {
    let mut failure: Option<SynErr> = None;
    slab.write(|wtxn| match body(wtxn) {
        Ok(done) => Ok(done),
        Err(err) => {
            let abort = wtxn.abort_with(err.mesg().to_owned());
            failure = Some(err);
            Err(abort)
        }
    })
    .map_err(|err| failure.unwrap_or_else(|| err.into()))
}

/// Records framed for one write to the log.
struct Framed {
    /// Where the log ends before them.
    end: u64,
    frames: Vec<u8>,
    /// Each record's `(offset, position in its segment)`.
    positions: Vec<(u64, u64)>,
}

impl Framed {
    fn new(end: u64) -> Framed {
        Framed {
            end,
            frames: Vec::new(),
            positions: Vec::new(),
        }
    }

    /// Frame the record of one call's applied edits at log offset `offs`; the call's result.
    fn record(
        &mut self,
        offs: u64,
        applied: Arc<Vec<NodeEdit>>,
        meta: &Value,
    ) -> SynResult<Stored> {
        let pos = self.end + self.frames.len() as u64;
        self.positions.push((offs, pos));
        log::frame_record(offs, &applied, meta, &mut self.frames)?;
        Ok(Stored {
            offset: Some(offs),
            applied,
            sodes: Vec::new(),
            version: 0,
        })
    }
}

/// The storage nodes a commit wrote, kept for the next to start from when they are few: an
/// edit block writes one or two, a bulk batch thousands that are not written again next.
fn kept_recent(written: &[(Buid, Option<Sode>)]) -> Vec<(Buid, Option<Sode>)> {
    if written.len() <= RECENT_KEPT {
        written.to_vec()
    } else {
        Vec::new()
    }
}

/// Apply logged records as they are in `wtxn` (a replay, or the applier's batch of planned
/// writes), starting from the storage nodes `recent` (what LMDB holds for their buids), with
/// their entries of the sparse position index and the applied offset `next`. The storage
/// nodes written, and the abbreviations read or made.
#[allow(clippy::too_many_arguments)]
fn apply_logged<'e>(
    dbs: &Dbs,
    abrvs: &RwLock<Abrvs>,
    defer: bool,
    wtxn: &mut WriteTxn<'_>,
    recent: Vec<(Buid, Option<Sode>)>,
    records: impl Iterator<Item = &'e [NodeEdit]>,
    indexed: &[(u64, LogPos)],
    next: u64,
) -> SynResult<(pipeline::Sodes, Abrvs)> {
    let mut apply = Apply::new(dbs, wtxn, abrvs, defer);
    apply.start_from(recent);
    for edits in records {
        apply.nodeedits(edits, 0, true)?;
    }
    let written = apply.finish()?;
    dbs.note_applied(apply.wtxn()?, indexed, next)?;
    let (learned, _) = apply.take_abrvs();
    Ok((written, learned))
}

/// Entries of the sparse position index for new records `(offset, position)` in `segment`:
/// the first record of each segment, then one every [`INDEX_STRIDE`] bytes.
fn choose_indexed(
    last: Option<LogPos>,
    segment: u64,
    records: &[(u64, u64)],
) -> Vec<(u64, LogPos)> {
    let mut last = last;
    let mut out = Vec::new();
    for &(offs, pos) in records {
        let due = match last {
            Some(l) if l.segment == segment => pos >= l.pos + INDEX_STRIDE,
            _ => true,
        };
        if due {
            let entry = LogPos { segment, pos };
            out.push((offs, entry));
            last = Some(entry);
        }
    }
    out
}

/// Where the log may hold unsynced records after the machine went down, from the dirty
/// marker's second line `segment pos`; a marker without one (or unreadable) covers all of it.
fn parse_marker_position(marker: &str) -> LogPos {
    let mut parts = marker.lines().nth(1).unwrap_or("").split_whitespace();
    let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok());
    match (num(), num()) {
        (Some(segment), Some(pos)) => LogPos { segment, pos },
        _ => LogPos {
            segment: 0,
            pos: SEGMENT_START,
        },
    }
}

/// Flush LMDB and the edit log, and clear the dirty marker in `dir` if no commit raced the
/// flush and no planned write is still on its way to LMDB.
fn flush(slab: &Slab, writer: &Mutex<Writer>, pipeline: &Pipeline, dir: &Path) -> SynResult<()> {
    let commits = {
        let writer = lock(writer);
        if !writer.lmdb_dirty {
            return Ok(());
        }
        pipeline.idle_commits().1
    };
    slab.sync()?;
    let mut writer = lock(writer);
    // Under the writer lock nothing new is planned: idle now means LMDB holds every record.
    if pipeline.idle_commits() == (true, commits) && writer.lmdb_dirty {
        writer.log.sync()?;
        let path = dir.join(DIRTY_FILE);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "remove", e)),
        }
        log::sync_dir(dir)?;
        writer.lmdb_dirty = false;
    }
    Ok(())
}

impl Inner {
    /// Wait for the applier (unless it failed), then flush.
    fn flush(&self) -> SynResult<()> {
        self.pipeline.wait_applied()?;
        flush(&self.slab, &self.writer, &self.pipeline, &self.dir)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        *lock(&self.stop.stopped) = true;
        self.stop.wake.notify_all();
        if let Some(handle) = lock(&self.flusher).take() {
            let _ = handle.join();
        }
        // The applier applies what is queued, then ends.
        self.pipeline.stop();
        if let Some(handle) = lock(&self.applier).take() {
            let _ = handle.join();
        }
        if let Err(err) = self.flush() {
            tracing::warn!(iden = %self.iden, %err, "flushing the layer's LMDB at close failed");
        }
    }
}

fn lock_dir(dir: &Path) -> SynResult<Flock<File>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(&path, "open", e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(SynErr::new(
            "StorageError",
            format!("{}: layer is already open", dir.display()),
        )),
        Err((_, errno)) => Err(io_err(&path, "lock", errno.into())),
    }
}

/// Where the good records of the log end.
struct LogEnd {
    /// The last segment, unless the log has none yet.
    segment: Option<u64>,
    /// The end of its last good record.
    end: u64,
    /// The offset the next record will get.
    next: u64,
}

/// Find the end of the log by checking the records of the last segment from its last known
/// position; a torn final record is left for [`LogWriter::resume`] to cut off. After the
/// machine went down, `unsynced_from` is where records written without a sync may start:
/// from there the first bad record ends the log even if good ones follow.
fn find_log_end(
    dir: &Path,
    positions: &BTreeMap<u64, LogPos>,
    unsynced_from: Option<LogPos>,
) -> SynResult<LogEnd> {
    let mut segments = log::list_segments(dir)?;
    // A segment shorter than its header was being created when the process died: it holds
    // no records.
    while let Some(&last) = segments.last() {
        let path = log::segment_path(dir, last);
        let len = fs::metadata(&path)
            .map_err(|e| io_err(&path, "stat", e))?
            .len();
        if len >= SEGMENT_START {
            break;
        }
        tracing::warn!(path = %path.display(), "removing an edit log segment that was never started");
        fs::remove_file(&path).map_err(|e| io_err(&path, "remove", e))?;
        log::sync_dir(dir)?;
        segments.pop();
    }
    let Some(&last) = segments.last() else {
        if positions.is_empty() {
            return Ok(LogEnd {
                segment: None,
                end: SEGMENT_START,
                next: 0,
            });
        }
        return Err(SynErr::new(
            "StorageError",
            format!("{}: the edit log is missing", dir.display()),
        ));
    };
    let (mut next, start) = positions
        .iter()
        .rev()
        .find(|(_, p)| p.segment == last)
        .map_or((last, SEGMENT_START), |(o, p)| (*o, p.pos));
    let mut reader = SegmentReader::open(dir, last, start)?;
    match unsynced_from {
        Some(from) if from.segment == last => reader.lenient_from(from.pos),
        Some(from) if from.segment < last => reader.lenient_from(SEGMENT_START),
        _ => {}
    }
    let end = loop {
        match reader.next_frame()? {
            Frame::Record { payload, pos } => {
                log::check_record_offset(reader.path(), pos, &payload, next)?;
                next += 1;
            }
            Frame::End => break reader.position(),
            Frame::Torn { pos } => break pos,
        }
    };
    Ok(LogEnd {
        segment: Some(last),
        end,
        next,
    })
}
