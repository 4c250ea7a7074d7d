//! Named databases of raw bytes, with msgpack and serde helpers.

use super::slab::{ReadTxn, SlabInner, WriteTxn};
use super::{Result, StorageError};
use crate::msgpack::{self, Value};
use heed::types::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// A read or write transaction; every read method of [`Db`] takes either.
pub trait Txn: sealed::Sealed {}

mod sealed {
    use super::SlabInner;
    use std::sync::Arc;

    /// Keeps [`super::Txn`] implemented only by this module's transaction types.
    pub trait Sealed {
        /// The heed transaction to read through.
        fn heed(&self) -> &heed::RoTxn<'_>;
        /// The slab the transaction belongs to.
        fn slab(&self) -> &Arc<SlabInner>;
    }
}

impl Txn for ReadTxn {}

impl sealed::Sealed for ReadTxn {
    fn heed(&self) -> &heed::RoTxn<'_> {
        &self.txn
    }

    fn slab(&self) -> &Arc<SlabInner> {
        self.ticket.slab()
    }
}

impl Txn for WriteTxn<'_> {}

impl sealed::Sealed for WriteTxn<'_> {
    fn heed(&self) -> &heed::RoTxn<'_> {
        &self.txn
    }

    fn slab(&self) -> &Arc<SlabInner> {
        self.ticket.slab()
    }
}

/// LMDB's statistics of one database's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeStat {
    /// The page size in bytes.
    pub page_size: u32,
    /// The depth of the B-tree.
    pub depth: u32,
    /// Internal (branch) pages.
    pub branch_pages: u64,
    /// Leaf pages.
    pub leaf_pages: u64,
    /// Overflow pages (values too large for a leaf).
    pub overflow_pages: u64,
    /// Entries (every duplicate counts).
    pub entries: u64,
}

/// A named database of byte keys and byte values; cheap to clone, keeps its slab open.
///
/// Keys sort bytewise. In a dupsort database one key holds several sorted values: `get`
/// returns the first, iteration yields every pair, `delete` removes them all.
#[derive(Clone)]
pub struct Db {
    slab: Arc<SlabInner>,
    db: heed::Database<'static, Bytes, Bytes>,
    name: Arc<str>,
    dupsort: bool,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.slab.path)
            .field("name", &self.name)
            .field("dupsort", &self.dupsort)
            .finish()
    }
}

impl Db {
    pub(super) fn new(
        slab: Arc<SlabInner>,
        db: heed::Database<'static, Bytes, Bytes>,
        name: &str,
        dupsort: bool,
    ) -> Db {
        Db {
            slab,
            db,
            name: name.into(),
            dupsort,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the database holds sorted duplicate values per key.
    pub fn is_dupsort(&self) -> bool {
        self.dupsort
    }

    /// The value at `key` (the first one in a dupsort database).
    pub fn get<'t>(&self, txn: &'t impl Txn, key: &[u8]) -> Result<Option<&'t [u8]>> {
        let txn = self.check(txn)?;
        self.db.get(txn, key).map_err(|e| self.lmdb("get", e))
    }

    /// Store `value` at `key` (replacing it, or adding a duplicate in a dupsort database).
    pub fn put(&self, wtxn: &mut WriteTxn<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        self.check(wtxn)?;
        let res = self.db.put(&mut wtxn.txn, key, value);
        wtxn.track(res).map_err(|e| self.lmdb("put", e))
    }

    /// Store `value` at `key`, which must sort after every existing key (faster than `put`,
    /// and it leaves full pages behind). Fails with `MDB_KEYEXIST` if `key` does not.
    pub fn append(&self, wtxn: &mut WriteTxn<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        self.check(wtxn)?;
        let res = self
            .db
            .put_with_flags(&mut wtxn.txn, heed::PutFlags::APPEND, key, value);
        wtxn.track(res).map_err(|e| self.lmdb("append", e))
    }

    /// Add `value` to the existing `key` of a dupsort database, where it must sort after every
    /// value already there (the sorted-input twin of [`Db::append`] for duplicates). Fails
    /// with `MDB_KEYEXIST` if it does not.
    pub fn append_dup(&self, wtxn: &mut WriteTxn<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        self.check(wtxn)?;
        let res = self
            .db
            .put_with_flags(&mut wtxn.txn, heed::PutFlags::APPEND_DUP, key, value);
        wtxn.track(res)
            .map_err(|e| self.lmdb("append duplicate", e))
    }

    /// Remove every entry (the database itself stays).
    pub fn clear(&self, wtxn: &mut WriteTxn<'_>) -> Result<()> {
        self.check(wtxn)?;
        let res = self.db.clear(&mut wtxn.txn);
        wtxn.track(res).map_err(|e| self.lmdb("clear", e))
    }

    /// Remove `key` (with all its values); false if it was absent.
    pub fn delete(&self, wtxn: &mut WriteTxn<'_>, key: &[u8]) -> Result<bool> {
        self.check(wtxn)?;
        let res = self.db.delete(&mut wtxn.txn, key);
        wtxn.track(res).map_err(|e| self.lmdb("delete", e))
    }

    /// Remove one `value` of `key` in a dupsort database; false if that pair was absent.
    pub fn delete_dup(&self, wtxn: &mut WriteTxn<'_>, key: &[u8], value: &[u8]) -> Result<bool> {
        self.check(wtxn)?;
        if !self.dupsort {
            return Err(StorageError::NotDupsort {
                path: self.slab.path.clone(),
                db: self.name.to_string(),
            });
        }
        let res = self.db.delete_one_duplicate(&mut wtxn.txn, key, value);
        wtxn.track(res)
            .map_err(|e| self.lmdb("delete duplicate", e))
    }

    /// Number of entries (every duplicate counts).
    pub fn len(&self, txn: &impl Txn) -> Result<u64> {
        let txn = self.check(txn)?;
        self.db.len(txn).map_err(|e| self.lmdb("count", e))
    }

    /// LMDB's statistics of the database's tree (pages by kind, depth, entries).
    pub(super) fn heed_stat(&self, txn: &impl Txn) -> Result<heed::DatabaseStat> {
        let txn = self.check(txn)?;
        self.db.stat(txn).map_err(|e| self.lmdb("stat", e))
    }

    /// The shape of the database's B-tree, as LMDB's `mdb_stat` reports it.
    pub fn tree_stat(&self, txn: &impl Txn) -> Result<TreeStat> {
        let stat = self.heed_stat(txn)?;
        Ok(TreeStat {
            page_size: stat.page_size,
            depth: stat.depth,
            branch_pages: stat.branch_pages as u64,
            leaf_pages: stat.leaf_pages as u64,
            overflow_pages: stat.overflow_pages as u64,
            entries: stat.entries as u64,
        })
    }

    /// The last entry in key order.
    pub fn last<'t>(&self, txn: &'t impl Txn) -> Result<Option<(&'t [u8], &'t [u8])>> {
        let txn = self.check(txn)?;
        self.db.last(txn).map_err(|e| self.lmdb("last", e))
    }

    /// Every entry in key order.
    pub fn iter<'t>(&self, txn: &'t impl Txn) -> Result<Entries<'t>> {
        self.range(txn, Bound::Unbounded, Bound::Unbounded)
    }

    /// Entries from `key` (inclusive) onwards.
    pub fn iter_from<'t>(&self, txn: &'t impl Txn, key: &[u8]) -> Result<Entries<'t>> {
        self.range(txn, Bound::Included(key), Bound::Unbounded)
    }

    /// Entries whose keys lie between `start` and `end`.
    pub fn range<'t>(
        &self,
        txn: &'t impl Txn,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Entries<'t>> {
        let txn = self.check(txn)?;
        let iter = self
            .db
            .range(txn, &(start, end))
            .map_err(|e| self.lmdb("range", e))?;
        Ok(self.entries(iter))
    }

    /// Entries whose keys start with `prefix`.
    pub fn prefix<'t>(&self, txn: &'t impl Txn, prefix: &[u8]) -> Result<Entries<'t>> {
        let txn = self.check(txn)?;
        let iter = self
            .db
            .prefix_iter(txn, prefix)
            .map_err(|e| self.lmdb("prefix scan", e))?;
        Ok(self.entries(iter))
    }

    /// Every value of `key` (one at most unless dupsort), as `(key, value)` pairs.
    pub fn dups<'t>(&self, txn: &'t impl Txn, key: &[u8]) -> Result<Entries<'t>> {
        let txn = self.check(txn)?;
        let iter = self
            .db
            .get_duplicates(txn, key)
            .map_err(|e| self.lmdb("get duplicates", e))?;
        Ok(match iter {
            Some(iter) => self.entries(iter),
            None => self.entries(std::iter::empty()),
        })
    }

    /// Store a msgpack value (Synapse's encoding) at `key`.
    pub fn put_value(&self, wtxn: &mut WriteTxn<'_>, key: &[u8], value: &Value) -> Result<()> {
        self.put(wtxn, key, &value.to_bytes())
    }

    /// The msgpack value at `key`.
    pub fn get_value(&self, txn: &impl Txn, key: &[u8]) -> Result<Option<Value>> {
        match self.get(txn, key)? {
            None => Ok(None),
            Some(bytes) => msgpack::decode_exact(bytes)
                .map(Some)
                .map_err(|e| self.decode_error(key, e.to_string())),
        }
    }

    /// Store a serde record at `key`, as a msgpack map with field names (`rmp_serde::to_vec_named`).
    ///
    /// Mark byte fields `#[serde(with = "serde_bytes")]` so they are stored as bin.
    pub fn put_serde<S: Serialize + ?Sized>(
        &self,
        wtxn: &mut WriteTxn<'_>,
        key: &[u8],
        record: &S,
    ) -> Result<()> {
        let bytes = rmp_serde::to_vec_named(record).map_err(|e| StorageError::Encode {
            path: self.slab.path.clone(),
            db: self.name.to_string(),
            reason: e.to_string(),
        })?;
        self.put(wtxn, key, &bytes)
    }

    /// The serde record at `key`.
    pub fn get_serde<D: DeserializeOwned>(&self, txn: &impl Txn, key: &[u8]) -> Result<Option<D>> {
        match self.get(txn, key)? {
            None => Ok(None),
            Some(bytes) => rmp_serde::from_slice(bytes)
                .map(Some)
                .map_err(|e| self.decode_error(key, e.to_string())),
        }
    }

    /// The heed transaction of `txn`, if it belongs to this database's slab.
    fn check<'t, T: Txn>(&self, txn: &'t T) -> Result<&'t heed::RoTxn<'t>> {
        if !Arc::ptr_eq(txn.slab(), &self.slab) {
            return Err(StorageError::WrongEnv {
                path: self.slab.path.clone(),
                db: self.name.to_string(),
                other: txn.slab().path.clone(),
            });
        }
        Ok(txn.heed())
    }

    fn entries<'t>(&self, iter: impl Iterator<Item = RawEntry<'t>> + 't) -> Entries<'t> {
        Entries {
            inner: Box::new(iter),
            db: self.clone(),
        }
    }

    pub(super) fn decode_error(&self, key: &[u8], reason: String) -> StorageError {
        StorageError::Decode {
            path: self.slab.path.clone(),
            db: self.name.to_string(),
            key: key.to_vec(),
            reason,
        }
    }

    fn lmdb(&self, op: &'static str, source: heed::Error) -> StorageError {
        StorageError::Lmdb {
            path: self.slab.path.clone(),
            db: Some(self.name.to_string()),
            op,
            source,
        }
    }
}

/// heed's `(key, value)` items, borrowed from a transaction for `'t`.
type RawEntry<'t> = heed::Result<(&'t [u8], &'t [u8])>;

/// Entries of a [`Db`] in key order, borrowed from the transaction.
pub struct Entries<'t> {
    inner: Box<dyn Iterator<Item = RawEntry<'t>> + 't>,
    db: Db,
}

impl Entries<'_> {
    /// The database being iterated.
    pub(super) fn db(&self) -> &Db {
        &self.db
    }
}

impl<'t> Iterator for Entries<'t> {
    type Item = Result<(&'t [u8], &'t [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.inner.next()?;
        Some(next.map_err(|e| self.db.lmdb("iterate", e)))
    }
}
