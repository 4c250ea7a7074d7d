//! Building the index databases from the storage nodes in one sorted pass, for bulk loads
//! (see [`LayerOptions::defer_indexes`](super::LayerOptions)).
//!
//! Written one put at a time, index keys land at random places in large B-trees: each put
//! descends from the root and copies the pages it touches. A bulk load instead leaves the
//! indexes alone while it writes the storage nodes (with [`DEFERRED_KEY`] in `meta` saying so),
//! and [`build`] then clears the four index databases and writes them again from the storage
//! nodes: it collects every node's entries (the ones [`Apply::index_sode`] queues, which are
//! the ones its edits queued), sorts them (on a second thread) in runs of [`RUN_BYTES`]
//! spilled to files in `DIR/index-build/`, merges the runs and appends the entries in key
//! order, a transaction every [`WRITE_CHUNK`] entries. The marker goes away in the last
//! transaction; a build that dies before it is simply done again by the next one.

use super::apply::{Apply, Index, IndexOp, op_order};
use super::sode::Sode;
use super::{Layer, Writer, io_err, write_txn};
use crate::cortex::edits::Buid;
use crate::error::{SynErr, SynResult};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// `meta` key present while the index databases lag behind the storage nodes.
pub(super) const DEFERRED_KEY: &[u8] = b"indexes:deferred";
// The tests use small sizes, so that their builds read, spill and write in many pieces.
/// Storage nodes read per transaction while collecting entries.
const READ_CHUNK: usize = if cfg!(test) { 7 } else { 4096 };
/// Sorted entries appended per write transaction.
const WRITE_CHUNK: usize = if cfg!(test) { 50 } else { 1 << 18 };
/// Memory for entries (and their bookkeeping) before a sorted run is spilled to a file; two
/// such buffers are in use, one filling while the other is sorted.
const RUN_BYTES: usize = if cfg!(test) { 4096 } else { 24 << 20 };
/// The directory of spilled runs inside the layer directory, removed after the build.
const RUNS_DIR: &str = "index-build";
/// Buffer of each run file's reader and writer.
const FILE_BUFFER: usize = 256 << 10;

/// Rebuild the four index databases of `layer` from its storage nodes and clear
/// [`DEFERRED_KEY`]; the caller holds the writer.
pub(super) fn build(layer: &Layer, writer: &mut Writer) -> SynResult<()> {
    let inner = &layer.inner;
    let dir = inner.dir.join(RUNS_DIR);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, "remove", e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create directory", e))?;
    let runs = collect_runs(layer, writer, &dir)?;
    layer.mark_dirty(writer)?;
    let mut merge = Merge::open(&runs)?;
    let mut prev: Option<(Index, Vec<u8>)> = None;
    let mut first = true;
    loop {
        let (ops, bytes) = merge.take(WRITE_CHUNK)?;
        let last = ops.len() < WRITE_CHUNK;
        write_txn(&inner.slab, |wtxn| {
            if first {
                for index in Index::ALL {
                    index.db(&inner.dbs).clear(wtxn)?;
                }
            }
            let mut prev = prev.as_ref().map(|(i, k)| (*i, k.as_slice()));
            for op in &ops {
                let key = &bytes[op.key.clone()];
                let db = op.index.db(&inner.dbs);
                if prev == Some((op.index, key)) {
                    db.append_dup(wtxn, key, &op.buid)?;
                } else {
                    db.append(wtxn, key, &op.buid)?;
                }
                prev = Some((op.index, key));
            }
            if last {
                inner.dbs.meta.delete(wtxn, DEFERRED_KEY)?;
            }
            Ok(())
        })?;
        inner.pipeline.count_commit();
        first = false;
        if let Some(op) = ops.last() {
            prev = Some((op.index, bytes[op.key.clone()].to_vec()));
        }
        if last {
            break;
        }
    }
    drop(merge);
    fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, "remove", e))
}

/// The entries of one run: their changes and the bytes their keys lie in.
struct RunBuffer {
    ops: Vec<IndexOp>,
    bytes: Vec<u8>,
}

impl RunBuffer {
    /// Room for a whole run, so it is never copied to grow (only what is used is resident).
    fn new() -> RunBuffer {
        RunBuffer {
            ops: Vec::with_capacity(RUN_BYTES / std::mem::size_of::<IndexOp>()),
            bytes: Vec::with_capacity(RUN_BYTES),
        }
    }

    fn is_full(&self) -> bool {
        self.ops.len() * std::mem::size_of::<IndexOp>() + self.bytes.len() >= RUN_BYTES
    }
}

/// Read every storage node, queue its index entries, and spill them as sorted runs. A second
/// thread sorts and writes each full run while this one fills the next (two run buffers).
fn collect_runs(layer: &Layer, writer: &mut Writer, dir: &Path) -> SynResult<Vec<PathBuf>> {
    std::thread::scope(|scope| {
        let (to_sort, full) = mpsc::sync_channel::<(PathBuf, RunBuffer)>(0);
        let (to_fill, emptied) = mpsc::channel::<RunBuffer>();
        let sorter = scope.spawn(move || -> SynResult<()> {
            for (path, mut run) in full {
                write_run(&path, &mut run.ops, &run.bytes)?;
                run.ops.clear();
                run.bytes.clear();
                if to_fill.send(run).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let collected = fill_runs(layer, writer, dir, &to_sort, &emptied);
        drop(to_sort);
        let sorted = sorter
            .join()
            .map_err(|_| SynErr::new("StorageError", "the index sort thread panicked"))?;
        // The sorter's error is the cause when both failed.
        sorted?;
        collected
    })
}

/// The filling half of [`collect_runs`]: hand each full run to the sorter; the runs' paths.
fn fill_runs(
    layer: &Layer,
    writer: &mut Writer,
    dir: &Path,
    to_sort: &mpsc::SyncSender<(PathBuf, RunBuffer)>,
    emptied: &mpsc::Receiver<RunBuffer>,
) -> SynResult<Vec<PathBuf>> {
    let inner = &layer.inner;
    let sorter_gone = || SynErr::new("StorageError", "the index sort thread stopped");
    let mut runs = Vec::new();
    let mut run = RunBuffer::new();
    let mut spare = Some(RunBuffer::new());
    let mut after: Option<Buid> = None;
    loop {
        let (chunk_ops, chunk_bytes, last, (abrvs, created)) = write_txn(&inner.slab, |wtxn| {
            let start = match &after {
                Some(b) => Bound::Excluded(&b[..]),
                None => Bound::Unbounded,
            };
            let mut sodes: Vec<(Buid, Sode)> = Vec::with_capacity(READ_CHUNK);
            for row in inner.dbs.bybuid.range(wtxn, start, Bound::Unbounded)? {
                let (key, val) = row?;
                let buid: Buid = key
                    .try_into()
                    .map_err(|_| SynErr::new("StorageError", "a stored node key is not a buid"))?;
                sodes.push((buid, Sode::decode(val)?));
                if sodes.len() == READ_CHUNK {
                    break;
                }
            }
            let mut apply = Apply::new(&inner.dbs, wtxn, &inner.abrvs, false);
            for (buid, sode) in &sodes {
                apply.index_sode(buid, sode)?;
            }
            let (ops, bytes) = apply.take_index_ops();
            let abrvs = apply.take_abrvs();
            Ok((ops, bytes, sodes.last().map(|(b, _)| *b), abrvs))
        })?;
        if created {
            // Only a name whose abbreviation was lost gets one here: a write.
            inner.pipeline.count_commit();
        }
        if !abrvs.is_empty() {
            let learned = super::Learned {
                indexed: Vec::new(),
                abrvs,
            };
            layer.learn(learned, writer);
        }
        let base = run.bytes.len();
        run.bytes.extend_from_slice(&chunk_bytes);
        run.ops.extend(chunk_ops.into_iter().map(|mut op| {
            op.key = op.key.start + base..op.key.end + base;
            op
        }));
        if (run.is_full() || last.is_none()) && !run.ops.is_empty() {
            let path = dir.join(format!("run-{}", runs.len()));
            let next = match spare.take() {
                Some(spare) => spare,
                None => emptied.recv().map_err(|_| sorter_gone())?,
            };
            to_sort
                .send((path.clone(), std::mem::replace(&mut run, next)))
                .map_err(|_| sorter_gone())?;
            runs.push(path);
        }
        match last {
            Some(b) => after = Some(b),
            None => return Ok(runs),
        }
    }
}

/// Sort `ops` and write them to `path` as records `index, key length (u16 LE), key, buid`.
fn write_run(path: &Path, ops: &mut [IndexOp], bytes: &[u8]) -> SynResult<()> {
    ops.sort_unstable_by(|a, b| op_order(bytes, a, b));
    let file = File::create(path).map_err(|e| io_err(path, "create", e))?;
    let mut out = BufWriter::with_capacity(FILE_BUFFER, file);
    let mut write = || -> std::io::Result<()> {
        for op in ops.iter() {
            let key = &bytes[op.key.clone()];
            let len = u16::try_from(key.len()).map_err(std::io::Error::other)?;
            out.write_all(&[op.index as u8])?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(key)?;
            out.write_all(&op.buid)?;
        }
        out.flush()
    };
    write().map_err(|e| io_err(path, "write", e))
}

/// One entry at the head of a run.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    index: Index,
    key: Vec<u8>,
    buid: Buid,
    run: usize,
}

/// A sorted run being read back.
struct Run {
    path: PathBuf,
    file: BufReader<File>,
}

impl Run {
    /// Read the next entry into `head` (reusing its key buffer); false at the end.
    fn next(&mut self, head: &mut Head) -> SynResult<bool> {
        let mut tag = [0u8; 3];
        match self.file.read_exact(&mut tag[..1]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(io_err(&self.path, "read", e)),
        }
        let mut read = || -> std::io::Result<()> {
            self.file.read_exact(&mut tag[1..])?;
            let len = usize::from(u16::from_le_bytes([tag[1], tag[2]]));
            head.key.resize(len, 0);
            self.file.read_exact(&mut head.key)?;
            self.file.read_exact(&mut head.buid)
        };
        read().map_err(|e| io_err(&self.path, "read", e))?;
        head.index = *Index::ALL.get(usize::from(tag[0])).ok_or_else(|| {
            SynErr::new(
                "StorageError",
                format!("{}: bad index entry", self.path.display()),
            )
        })?;
        Ok(true)
    }
}

/// The sorted runs merged into one stream without repeats.
struct Merge {
    runs: Vec<Run>,
    heap: BinaryHeap<Reverse<Head>>,
    /// The last entry given out.
    last: Option<(Index, Vec<u8>, Buid)>,
}

impl Merge {
    fn open(paths: &[PathBuf]) -> SynResult<Merge> {
        let mut merge = Merge {
            runs: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::with_capacity(paths.len()),
            last: None,
        };
        for (run, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| io_err(path, "open", e))?;
            merge.runs.push(Run {
                path: path.clone(),
                file: BufReader::with_capacity(FILE_BUFFER, file),
            });
            let mut head = Head {
                index: Index::Prop,
                key: Vec::new(),
                buid: [0u8; 32],
                run,
            };
            if merge.runs[run].next(&mut head)? {
                merge.heap.push(Reverse(head));
            }
        }
        Ok(merge)
    }

    /// The next `limit` entries in order (fewer at the end), as index changes and the bytes
    /// their keys lie in.
    fn take(&mut self, limit: usize) -> SynResult<(Vec<IndexOp>, Vec<u8>)> {
        let mut ops: Vec<IndexOp> = Vec::with_capacity(limit.min(1 << 16));
        let mut bytes = Vec::new();
        while ops.len() < limit {
            let Some(Reverse(mut head)) = self.heap.pop() else {
                break;
            };
            let repeat = match ops.last() {
                Some(op) => {
                    op.index == head.index
                        && op.buid == head.buid
                        && bytes[op.key.clone()] == head.key
                }
                None => self.last.as_ref().is_some_and(|(index, key, buid)| {
                    *index == head.index && *buid == head.buid && *key == head.key
                }),
            };
            if !repeat {
                let start = bytes.len();
                bytes.extend_from_slice(&head.key);
                ops.push(IndexOp {
                    index: head.index,
                    key: start..bytes.len(),
                    buid: head.buid,
                    put: true,
                });
            }
            if self.runs[head.run].next(&mut head)? {
                self.heap.push(Reverse(head));
            }
        }
        if let Some(op) = ops.last() {
            self.last = Some((op.index, bytes[op.key.clone()].to_vec(), op.buid));
        }
        Ok((ops, bytes))
    }
}
