//! The axon's storage: files by SHA-256 in LMDB.
//!
//! `axon.lmdb` holds the index: `sizes` (sha256 -> 8-byte big-endian size), `history`
//! (8-byte ms + sha256 -> size, in time order) and the log `axonseqn` of `(sha256, size)` in
//! the order files were added, with `metrics` (`file:count`, `size:bytes`). `blob.lmdb` holds
//! the bytes: `blobs` (sha256 + 8-byte chunk index -> chunk of at most [`CHUNK_SIZE`]) and
//! `offsets` (sha256 + 8-byte end offset of a chunk -> its chunk index), as Synapse 2.x lays
//! them out. A file's chunks are committed (without a sync each) and synced before its index
//! entries are committed durably, so a crash leaves either a whole file or one nobody can see,
//! whose chunks the next save of the same bytes overwrites.

use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::{Db, Seqn, Slab, SlabOptions};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use tokio::sync::watch;

/// The largest chunk stored under one key (Synapse's `CHUNK_SIZE`).
pub const CHUNK_SIZE: usize = 16 * 1024 * 1024;

/// A SHA-256 digest.
pub type Sha256 = [u8; 32];

/// The files of one axon.
pub struct Store {
    index: Slab,
    blob: Slab,
    sizes: Db,
    history: Db,
    seqn: Seqn,
    metrics: Db,
    blobs: Db,
    offsets: Db,
    /// The offset the next `axonseqn` entry gets (followers of `hashes` wait on it).
    next: watch::Sender<u64>,
    /// Saves and deletes one at a time.
    writer: Mutex<()>,
    /// `max-bytes` and `max-count`: no new file once the axon holds that many.
    limits: std::sync::RwLock<Limits>,
}

/// How much an axon may hold (Synapse's `max:bytes` and `max:count`): a new file is refused
/// with `HitLimit` once the stored bytes or files reach a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes stored.
    pub max_bytes: Option<u64>,
    /// Most files stored.
    pub max_count: Option<u64>,
}

/// A `sha256` argument: bytes of any length (as Synapse, bytes that are not a stored file's
/// SHA-256 are simply not found); anything else is a BadArg.
pub fn sha256_arg(v: &Value) -> SynResult<Vec<u8>> {
    v.as_bin()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| SynErr::bad_arg("sha256 must be bytes"))
}

fn key(sha256: &Sha256, n: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(sha256);
    k[32..].copy_from_slice(&n.to_be_bytes());
    k
}

fn u64_of(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn hash_row(sha256: &[u8], size: u64) -> Value {
    Value::Array(vec![Value::Bin(sha256.to_vec()), Value::from(size)])
}

impl Store {
    /// Open (or create) the axon's environments in `dir`.
    pub fn open(dir: &Path) -> SynResult<Store> {
        let index = Slab::open(dir.join("axon.lmdb"), SlabOptions::default())?;
        // The blobs are synced by hand, once per save, before the index entry that makes them
        // visible is committed (durably).
        let blob = Slab::open(
            dir.join("blob.lmdb"),
            SlabOptions {
                sync_commits: false,
                ..SlabOptions::default()
            },
        )?;
        let seqn = Seqn::open(&index, "axonseqn")?;
        let next = index.read(|rtxn| seqn.next_offset(rtxn))?;
        Ok(Store {
            sizes: index.db("sizes", false)?,
            history: index.db("history", false)?,
            metrics: index.db("metrics", false)?,
            blobs: blob.db("blobs", false)?,
            offsets: blob.db("offsets", false)?,
            seqn,
            index,
            blob,
            next: watch::Sender::new(next),
            writer: Mutex::new(()),
            limits: std::sync::RwLock::new(Limits::default()),
        })
    }

    /// The size of the file `sha256`, if stored.
    pub fn size(&self, sha256: &[u8]) -> SynResult<Option<u64>> {
        Ok(self
            .index
            .read(|rtxn| Ok(self.sizes.get(rtxn, sha256)?.map(u64_of)))?)
    }

    /// Set the limits (at start and on a configuration reload).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = limits;
    }

    /// `HitLimit` when a limit is reached (checked before a new file is written).
    fn req_below_limit(&self) -> SynResult<()> {
        let limits = *self.limits.read().unwrap_or_else(PoisonError::into_inner);
        if limits == Limits::default() {
            return Ok(());
        }
        let (bytes, count) = self.totals()?;
        let hit = |what: &str, max: u64| {
            SynErr::new("HitLimit", format!("Axon is at {what} limit: {max}"))
        };
        match (limits.max_bytes, limits.max_count) {
            (Some(max), _) if max <= bytes => Err(hit("size:bytes", max)),
            (_, Some(max)) if max <= count => Err(hit("file:count", max)),
            _ => Ok(()),
        }
    }

    /// Stored bytes and files.
    fn totals(&self) -> SynResult<(u64, u64)> {
        Ok(self.index.read(|rtxn| {
            let get = |name: &str| -> crate::storage::Result<u64> {
                Ok(self
                    .metrics
                    .get(rtxn, name.as_bytes())?
                    .map(u64_of)
                    .unwrap_or(0))
            };
            Ok((get("size:bytes")?, get("file:count")?))
        })?)
    }

    /// `{size:bytes, file:count}`.
    pub fn metrics(&self) -> SynResult<Value> {
        let (bytes, count) = self.totals()?;
        Ok(Value::map([
            ("size:bytes", Value::from(bytes)),
            ("file:count", Value::from(count)),
        ]))
    }

    /// Store `size` bytes read from `file` (from its start) as `sha256`, unless stored
    /// already; whether it was added. Each chunk is its own transaction; the blobs are synced
    /// once, before the index entry is committed.
    pub fn save(&self, sha256: &Sha256, file: &mut std::fs::File, size: u64) -> SynResult<bool> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.size(sha256)?.is_some() {
            return Ok(false);
        }
        self.req_below_limit()?;
        let unreadable = |source| crate::storage::StorageError::Io {
            path: self.blob.path().to_path_buf(),
            op: "reading an upload",
            source,
        };
        file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
        let mut chunk = vec![0u8; CHUNK_SIZE.min(size as usize)];
        let (mut indx, mut offs) = (0u64, 0u64);
        while offs < size {
            let len = CHUNK_SIZE.min((size - offs) as usize);
            file.read_exact(&mut chunk[..len]).map_err(unreadable)?;
            self.blob
                .write(|wtxn| self.put_chunk(wtxn, sha256, indx, offs, &chunk[..len]))?;
            offs += len as u64;
            indx += 1;
        }
        self.blob.sync()?;
        Ok(self.index_files(&[(*sha256, size)])?[0])
    }

    /// Store files held in memory (`put`, `puts`): every chunk in one transaction, one sync,
    /// then every index entry in one transaction. Whether each was added (false when stored
    /// already, or given twice).
    pub fn save_bytes(&self, files: &[(Sha256, &[u8])]) -> SynResult<Vec<bool>> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut new = Vec::new();
        for (sha256, bytes) in files {
            if self.size(sha256)?.is_none()
                && !new.iter().any(|(s, _): &(Sha256, &[u8])| s == sha256)
            {
                new.push((*sha256, *bytes));
            }
        }
        if !new.is_empty() {
            self.req_below_limit()?;
            self.blob.write(|wtxn| {
                for (sha256, bytes) in &new {
                    let mut offs = 0u64;
                    for (indx, piece) in bytes.chunks(CHUNK_SIZE).enumerate() {
                        self.put_chunk(wtxn, sha256, indx as u64, offs, piece)?;
                        offs += piece.len() as u64;
                    }
                }
                Ok(())
            })?;
            self.blob.sync()?;
        }
        let sizes: Vec<(Sha256, u64)> = new.iter().map(|(s, b)| (*s, b.len() as u64)).collect();
        let added = self.index_files(&sizes)?;
        Ok(files
            .iter()
            .map(|(sha256, _)| {
                sizes
                    .iter()
                    .position(|(s, _)| s == sha256)
                    .is_some_and(|i| added[i])
            })
            .collect())
    }

    /// Chunk `indx` of `sha256`, which starts at byte `offs` of the file.
    fn put_chunk(
        &self,
        wtxn: &mut crate::storage::WriteTxn<'_>,
        sha256: &Sha256,
        indx: u64,
        offs: u64,
        bytes: &[u8],
    ) -> crate::storage::Result<()> {
        self.blobs.put(wtxn, &key(sha256, indx), bytes)?;
        let end = offs + bytes.len() as u64;
        self.offsets
            .put(wtxn, &key(sha256, end), &indx.to_be_bytes())
    }

    /// Make files whose chunks are on disk visible, in one durable transaction: their sizes,
    /// history rows, `axonseqn` rows and the metrics. Whether each was added.
    fn index_files(&self, files: &[(Sha256, u64)]) -> SynResult<Vec<bool>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let tick = now_ms().max(0) as u64;
        let (added, next) = self.index.write(|wtxn| {
            let mut added = Vec::with_capacity(files.len());
            for (sha256, size) in files {
                if self.sizes.get(wtxn, sha256)?.is_some() {
                    added.push(false);
                    continue;
                }
                self.sizes.put(wtxn, sha256, &size.to_be_bytes())?;
                let mut hkey = [0u8; 40];
                hkey[..8].copy_from_slice(&tick.to_be_bytes());
                hkey[8..].copy_from_slice(sha256);
                self.history.put(wtxn, &hkey, &size.to_be_bytes())?;
                self.seqn.append(wtxn, &hash_row(sha256, *size))?;
                self.bump(wtxn, 1, *size as i128)?;
                added.push(true);
            }
            Ok((added, self.seqn.next_offset(wtxn)?))
        })?;
        self.next.send_replace(next);
        Ok(added)
    }

    fn bump(
        &self,
        wtxn: &mut crate::storage::WriteTxn<'_>,
        files: i128,
        bytes: i128,
    ) -> crate::storage::Result<()> {
        for (name, delta) in [("file:count", files), ("size:bytes", bytes)] {
            let now = self
                .metrics
                .get(wtxn, name.as_bytes())?
                .map(u64_of)
                .unwrap_or(0);
            let new = (now as i128 + delta).max(0) as u64;
            self.metrics
                .put(wtxn, name.as_bytes(), &new.to_be_bytes())?;
        }
        Ok(())
    }

    /// Delete the file `sha256`; whether it was stored.
    pub fn delete(&self, sha256: &[u8]) -> SynResult<bool> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(size) = self.size(sha256)? else {
            return Ok(false);
        };
        // The index first: a crash after it leaves unreachable chunks, never a file with holes.
        self.index.write(|wtxn| {
            self.sizes.delete(wtxn, sha256)?;
            self.bump(wtxn, -1, -(size as i128))
        })?;
        self.blob.write(|wtxn| {
            for db in [&self.blobs, &self.offsets] {
                let keys: Vec<Vec<u8>> = db
                    .prefix(wtxn, sha256)?
                    .map(|e| e.map(|(k, _)| k.to_vec()))
                    .collect::<crate::storage::Result<_>>()?;
                for k in keys {
                    db.delete(wtxn, &k)?;
                }
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Chunk `indx` of `sha256`, if there is one.
    pub fn chunk(&self, sha256: &Sha256, indx: u64) -> SynResult<Option<Vec<u8>>> {
        Ok(self.blob.read(|rtxn| {
            Ok(self
                .blobs
                .get(rtxn, &key(sha256, indx))?
                .map(<[u8]>::to_vec))
        })?)
    }

    /// The chunk holding byte `offs` of `sha256`: `(its index, the offset of its first byte)`.
    pub fn chunk_at(&self, sha256: &Sha256, offs: u64) -> SynResult<Option<(u64, u64)>> {
        Ok(self.blob.read(|rtxn| {
            // The first chunk whose end lies after offs.
            let start = key(sha256, offs + 1);
            let mut entries = self.offsets.range(
                rtxn,
                Bound::Included(&start[..]),
                Bound::Included(&key(sha256, u64::MAX)[..]),
            )?;
            let Some(entry) = entries.next() else {
                return Ok(None);
            };
            let (k, v) = entry?;
            let (end, indx) = (u64_of(&k[32..]), u64_of(v));
            let len = self
                .blobs
                .get(rtxn, &key(sha256, indx))?
                .map_or(0, <[u8]>::len);
            Ok(Some((indx, end - len as u64)))
        })?)
    }

    /// Up to `max` rows `(indx, (sha256, size))` of `axonseqn` from `offs`, skipping files
    /// deleted since; and the offset after the last row read.
    pub fn hashes(&self, offs: u64, max: usize) -> SynResult<(Vec<Value>, u64)> {
        Ok(self.index.read(|rtxn| {
            let mut out = Vec::new();
            let mut next = offs;
            for entry in self.seqn.iter_from(rtxn, offs)?.take(max) {
                let (indx, row) = entry?;
                next = indx + 1;
                let present = row
                    .as_array()
                    .and_then(|r| r.first())
                    .and_then(Value::as_bin)
                    .map(|s| self.sizes.get(rtxn, s).map(|v| v.is_some()))
                    .transpose()?
                    .unwrap_or(false);
                if present {
                    out.push(Value::Array(vec![Value::from(indx), row]));
                }
            }
            Ok((out, next))
        })?)
    }

    /// Rows `(ms, (sha256, size))` of files added from `tick` to `tock` (both included), in
    /// time order; at most `max`, starting after `after` (the last key read) when given.
    pub fn history(
        &self,
        tick: u64,
        tock: Option<u64>,
        after: Option<[u8; 40]>,
        max: usize,
    ) -> SynResult<(Vec<Value>, Option<[u8; 40]>)> {
        Ok(self.index.read(|rtxn| {
            let first = tick.to_be_bytes();
            let mut end = [0xffu8; 40];
            end[..8].copy_from_slice(&tock.unwrap_or(u64::MAX).to_be_bytes());
            let start = match &after {
                Some(k) => Bound::Excluded(&k[..]),
                None => Bound::Included(&first[..]),
            };
            let mut out = Vec::new();
            let mut last_key = None;
            for entry in self
                .history
                .range(rtxn, start, Bound::Included(&end[..]))?
                .take(max)
            {
                let (k, v) = entry?;
                let row = hash_row(&k[8..], u64_of(v));
                out.push(Value::Array(vec![Value::from(u64_of(k)), row]));
                last_key = <[u8; 40]>::try_from(k).ok();
            }
            Ok((out, last_key))
        })?)
    }

    /// A receiver of the next `axonseqn` offset, for waiting on new files.
    pub fn watch_next(&self) -> watch::Receiver<u64> {
        self.next.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn stored(store: &Store, bytes: &[u8]) -> Sha256 {
        let sha256 = crate::guid::sha256(bytes);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        assert!(store.save(&sha256, &mut file, bytes.len() as u64).unwrap());
        sha256
    }

    #[test]
    fn chunks_are_found_by_byte_offset_at_and_around_their_edges() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..CHUNK_SIZE * 2 + 10).map(|i| (i % 7) as u8).collect();
        let sha256 = stored(&store, &bytes);
        let c = CHUNK_SIZE as u64;
        for (offs, want) in [
            (0, Some((0, 0))),
            (c - 1, Some((0, 0))),
            (c, Some((1, c))),
            (2 * c + 9, Some((2, 2 * c))),
            (2 * c + 10, None),
        ] {
            assert_eq!(store.chunk_at(&sha256, offs).unwrap(), want, "offs {offs}");
        }
        assert_eq!(store.chunk(&sha256, 2).unwrap().map(|c| c.len()), Some(10));
    }

    #[test]
    fn a_delete_removes_the_bytes_and_the_count_but_not_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = stored(&store, b"aaa");
        let b = stored(&store, b"bb");
        assert!(
            !store
                .save(&a, &mut tempfile::tempfile().unwrap(), 3)
                .unwrap()
        );
        assert!(store.delete(&a).unwrap());
        assert!(!store.delete(&a).unwrap());
        assert_eq!(store.chunk(&a, 0).unwrap(), None);
        assert_eq!(store.chunk_at(&a, 0).unwrap(), None);
        assert_eq!(store.size(&b).unwrap(), Some(2));
        let metrics = store.metrics().unwrap();
        assert_eq!(metrics.get("file:count"), Some(&Value::from(1u64)));
        assert_eq!(metrics.get("size:bytes"), Some(&Value::from(2u64)));
        // The log keeps its offsets; a deleted file's row is skipped.
        let (rows, next) = store.hashes(0, 10).unwrap();
        assert_eq!(next, 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].as_array().unwrap()[0], Value::from(1u64));
        // History by time: everything from 0, nothing before 0 + 1 ms of the epoch.
        let (all, _) = store.history(0, None, None, 10).unwrap();
        assert_eq!(all.len(), 2);
        let (none, _) = store.history(0, Some(1), None, 10).unwrap();
        assert!(none.is_empty());
    }
}
