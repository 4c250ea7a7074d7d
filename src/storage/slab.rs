//! Environments: opening (once per process), the resize gate, transactions, map growth,
//! statistics and compacted copies.

use super::db::Db;
use super::gate::write_gate;
use super::{Result, StorageError};
use heed::types::Bytes;
use heed::{
    CommitOrAbort, CompactionOption, DatabaseFlags, Env, EnvFlags, EnvOpenOptions, MdbError, RoTxn,
    RwTxn, WithoutTls,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Named databases a read-only open can hold: enough for any service's environment (Synapse's
/// own backup tool allows thousands), without making every transaction's tables large.
const READONLY_MAX_DBS: u32 = 1024;

/// Size of the `MDB_db` record that LMDB stores in the main database for each named database.
const DB_RECORD_LEN: usize = 48;

/// How long a resize holds new transactions back before letting them in and trying again.
const RESIZE_SLICE: Duration = Duration::from_millis(50);

/// How long an open waits for another thread to finish closing the same environment.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Every environment open in this process, by canonical path, so a second open shares it
/// (heed refuses to open a path twice).
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<SlabInner>>>> = LazyLock::new(Mutex::default);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How to open a writable slab.
#[derive(Clone, Debug)]
pub struct SlabOptions {
    /// Starting map size in bytes (rounded up to MiB; never less than the existing `data.mdb`).
    pub map_size: usize,
    /// Most named databases the environment can hold open.
    pub max_dbs: u32,
    /// Most concurrent read transactions (each [`ReadTxn`] takes a slot).
    pub max_readers: u32,
    /// How long growing the map waits for open transactions before failing.
    pub resize_timeout: Duration,
    /// Whether each commit is flushed to disk (LMDB's default). With `false` the environment
    /// is opened with `MDB_NOSYNC | MDB_WRITEMAP`: commits write into the map and the kernel
    /// writes the pages back when it likes, so they survive a crash of the process but not of
    /// the machine until [`Slab::sync`] runs. The caller must make its writes durable some
    /// other way (the cortex layer's edit log does). `data.mdb` then has the map's size
    /// (sparse).
    pub sync_commits: bool,
}

impl Default for SlabOptions {
    fn default() -> Self {
        SlabOptions {
            map_size: 64 * MIB,
            max_dbs: 128,
            max_readers: 512,
            resize_timeout: Duration::from_secs(60),
            sync_commits: true,
        }
    }
}

/// Entry counts and environment info, for backup manifests and verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlabStats {
    /// Current map size in bytes.
    pub map_size: u64,
    /// Number of the last page in use.
    pub last_page: u64,
    /// LMDB page size in bytes.
    pub page_size: u32,
    /// Pages in use (the meta pages and every database's tree, no free pages): about what a
    /// compacted copy writes. LMDB does not count the sub-trees of large duplicate sets, so a
    /// copy of an environment with many of them is somewhat larger.
    pub used_pages: u64,
    /// Every named database, sorted by name.
    pub dbs: Vec<DbStats>,
}

/// One named database in [`SlabStats`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStats {
    /// The database name.
    pub name: String,
    /// Whether it was created with DUPSORT.
    pub dupsort: bool,
    /// Number of entries (every duplicate counts).
    pub entries: u64,
}

/// One LMDB environment directory; clones share it.
#[derive(Clone)]
pub struct Slab {
    inner: Arc<SlabInner>,
    readonly: bool,
}

/// The shared state behind every handle of one environment.
pub struct SlabInner {
    pub(super) env: Env<WithoutTls>,
    pub(super) path: PathBuf,
    readonly: bool,
    gate: Gate,
    resize_timeout: Duration,
}

impl fmt::Debug for Slab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slab")
            .field("path", &self.inner.path)
            .field("readonly", &self.readonly)
            .finish()
    }
}

impl Slab {
    /// Open (creating the directory if needed) a writable environment at `path`.
    ///
    /// If it is already open in this process, the existing environment is shared and `opts`
    /// are ignored.
    pub fn open(path: impl AsRef<Path>, opts: SlabOptions) -> Result<Slab> {
        let path = path.as_ref();
        fs::create_dir_all(path).map_err(|e| StorageError::io(path, "create directory", e))?;
        Slab::registered(path, false, opts.resize_timeout, |dir| {
            let existing = match fs::metadata(dir.join("data.mdb")) {
                Ok(meta) => usize::try_from(meta.len()).unwrap_or(usize::MAX),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(heed::Error::Io(e)),
            };
            let mut o = EnvOpenOptions::new().read_txn_without_tls();
            o.map_size(round_up_mib(opts.map_size.max(existing)))
                .max_dbs(opts.max_dbs)
                .max_readers(opts.max_readers);
            // SAFETY: data.mdb is only changed through LMDB, whose lock file keeps other
            // processes consistent, and the registry keeps one Env per path in this process.
            // MDB_NOSYNC only skips the flush at commit; `Slab::sync` still flushes.
            // MDB_WRITEMAP spares each commit a copy of every dirty page (about 15% of the
            // layer's ingest time).
            unsafe {
                if !opts.sync_commits {
                    o.flags(EnvFlags::NO_SYNC | EnvFlags::WRITE_MAP);
                }
                o.open(dir)
            }
        })
    }

    /// Open an existing environment for reading only; the map size comes from the file.
    ///
    /// Readers register in the environment's lock file, so this is safe beside a writer in
    /// another process (one built on heed's LMDB: see the storage notes on lock formats).
    pub fn open_readonly(path: impl AsRef<Path>) -> Result<Slab> {
        Slab::open_existing_readonly(path.as_ref(), EnvFlags::READ_ONLY)
    }

    /// Open a copy that nothing writes (a backup) for reading, without using or creating its
    /// lock file, so the copy stays exactly as it was written.
    pub fn open_snapshot(path: impl AsRef<Path>) -> Result<Slab> {
        Slab::open_existing_readonly(path.as_ref(), EnvFlags::READ_ONLY | EnvFlags::NO_LOCK)
    }

    fn open_existing_readonly(path: &Path, flags: EnvFlags) -> Result<Slab> {
        if !path.join("data.mdb").is_file() {
            return Err(StorageError::NotAnEnv {
                path: path.to_path_buf(),
            });
        }
        let opts = SlabOptions::default();
        Slab::registered(path, true, opts.resize_timeout, |dir| {
            let mut o = EnvOpenOptions::new().read_txn_without_tls();
            o.max_dbs(READONLY_MAX_DBS).max_readers(opts.max_readers);
            // SAFETY: as in `open`; READ_ONLY never writes data.mdb, and NO_LOCK is only asked
            // for on copies that no process writes.
            unsafe {
                o.flags(flags);
                o.open(dir)
            }
        })
    }

    fn registered(
        path: &Path,
        readonly: bool,
        resize_timeout: Duration,
        open: impl FnOnce(&Path) -> heed::Result<Env<WithoutTls>>,
    ) -> Result<Slab> {
        let canon = path
            .canonicalize()
            .map_err(|e| StorageError::io(path, "resolve path", e))?;
        let mut registry = lock(&REGISTRY);
        if let Some(inner) = registry.get(&canon).and_then(Weak::upgrade) {
            if inner.readonly && !readonly {
                return Err(StorageError::OpenConflict { path: canon });
            }
            return Ok(Slab { inner, readonly });
        }
        // The last handle may be closing on another thread right now.
        if let Some(closing) = heed::env_closing_event(&canon) {
            closing.wait_timeout(CLOSE_WAIT);
        }
        let env = open(&canon).map_err(|source| StorageError::Lmdb {
            path: canon.clone(),
            db: None,
            op: "open",
            source,
        })?;
        let inner = Arc::new(SlabInner {
            env,
            path: canon.clone(),
            readonly,
            gate: Gate::default(),
            resize_timeout,
        });
        registry.retain(|_, slab| slab.strong_count() > 0);
        registry.insert(canon, Arc::downgrade(&inner));
        Ok(Slab { inner, readonly })
    }

    /// The environment directory (canonical).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this handle refuses writes.
    pub fn is_readonly(&self) -> bool {
        self.readonly
    }

    /// Open the named database `name`, creating it (on a writable slab) if missing.
    ///
    /// An existing database must have been created with the same `dupsort` setting.
    pub fn db(&self, name: &str, dupsort: bool) -> Result<Db> {
        if name.is_empty() || name.contains('\0') {
            return Err(StorageError::BadDbName {
                path: self.inner.path.clone(),
                name: name.to_owned(),
            });
        }
        let stored = match self.stored_dupsort(name)? {
            Some(stored) => stored,
            None if self.readonly => return Err(self.no_such_db(name)),
            None => {
                self.create_db(name, dupsort)?;
                self.stored_dupsort(name)?
                    .ok_or_else(|| self.no_such_db(name))?
            }
        };
        if stored != dupsort {
            return Err(StorageError::DupsortMismatch {
                path: self.inner.path.clone(),
                db: name.to_owned(),
                stored,
                requested: dupsort,
            });
        }
        match self.open_existing(Some(name)) {
            Ok(Some(db)) => Ok(Db::new(self.inner.clone(), db, name, dupsort)),
            Ok(None) => Err(self.no_such_db(name)),
            Err(e) if is_incompatible(&e) => Err(self.no_such_db(name)),
            Err(e) => Err(e),
        }
    }

    /// The value of a plain key in the unnamed (main) database, which some writers (Synapse
    /// 0.1.x's `layer:model:version`) keep beside the named databases' records.
    pub fn main_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let main = self.main_db()?;
        self.read(|rtxn| {
            main.get(&rtxn.txn, key)
                .map(|v| v.map(<[u8]>::to_vec))
                .map_err(|e| self.lmdb(None, "get", e))
        })
    }

    /// The names of all named databases, sorted.
    pub fn db_names(&self) -> Result<Vec<String>> {
        Ok(self.db_list()?.into_iter().map(|(name, _)| name).collect())
    }

    /// The named databases (sorted by name) with their stored flags and handles, and whether
    /// the unnamed (main) database holds nothing else. Named databases are keys of the main
    /// database whose value is an MDB_db record; a plain key that merely looks like one fails
    /// to open with MDB_INCOMPATIBLE.
    pub(super) fn named_dbs(&self) -> Result<(Vec<NamedDb>, bool)> {
        let main = self.main_db()?;
        let keys = self.read(|rtxn| {
            let iter = main
                .iter(&rtxn.txn)
                .map_err(|e| self.lmdb(None, "list databases", e))?;
            let mut out = Vec::new();
            for entry in iter {
                let (key, value) = entry.map_err(|e| self.lmdb(None, "list databases", e))?;
                out.push((key.to_vec(), record_flags(value)));
            }
            Ok(out)
        })?;
        let mut only_named = true;
        let mut named = Vec::with_capacity(keys.len());
        for (key, flags) in keys {
            let candidate = String::from_utf8(key)
                .ok()
                .filter(|name| !name.is_empty() && !name.contains('\0'))
                .zip(flags);
            let Some((name, flags)) = candidate else {
                only_named = false;
                continue;
            };
            match self.open_existing(Some(&name)) {
                Ok(Some(db)) => named.push(NamedDb { name, flags, db }),
                Ok(None) => only_named = false,
                Err(e) if is_incompatible(&e) => only_named = false,
                Err(e) => return Err(e),
            }
        }
        Ok((named, only_named))
    }

    /// Each named database with its stored DUPSORT flag, sorted by name.
    fn db_list(&self) -> Result<Vec<(String, bool)>> {
        let (named, _) = self.named_dbs()?;
        Ok(named
            .into_iter()
            .map(|db| (db.name, is_dupsort(db.flags)))
            .collect())
    }

    /// Run `f` in a read transaction (a consistent snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&ReadTxn) -> Result<T>) -> Result<T> {
        let rtxn = self.read_txn()?;
        f(&rtxn)
    }

    /// Begin a read transaction that can move between threads; drop it soon, since the map
    /// cannot grow while it is open.
    pub fn read_txn(&self) -> Result<ReadTxn> {
        loop {
            let ticket = Ticket::new(&self.inner);
            match self.inner.env.clone().static_read_txn() {
                Ok(txn) => return Ok(ReadTxn { txn, ticket }),
                Err(e) if is_mdb(&e, MdbError::MapResized) => {
                    drop(ticket);
                    self.adopt_map_size()?;
                }
                Err(e) => return Err(self.lmdb(None, "begin read transaction", e)),
            }
        }
    }

    /// Run `f` in a write transaction and commit it (durably, unless the slab was opened with
    /// `sync_commits: false`).
    ///
    /// If the map fills up, the transaction is aborted, the map doubles and `f` runs again
    /// from scratch. Any error from `f` aborts the transaction.
    pub fn write<T>(&self, mut f: impl FnMut(&mut WriteTxn<'_>) -> Result<T>) -> Result<T> {
        // The write gate first, the resize ticket second: a backup hold must never wait for a
        // thread that holds a ticket while it waits for the gate.
        let _share = write_gate().enter();
        loop {
            let (mut wtxn, observed) = self.begin_write()?;
            let out = f(&mut wtxn);
            let WriteTxn {
                txn,
                ticket,
                map_full,
            } = wtxn;
            // After MDB_MAP_FULL the transaction is dead, whatever `f` made of the error.
            if !map_full {
                let value = match out {
                    Ok(value) => value,
                    Err(e) => {
                        txn.abort();
                        return Err(e);
                    }
                };
                match txn.commit() {
                    Ok(()) => return Ok(value),
                    Err(e) if !is_mdb(&e, MdbError::MapFull) => {
                        return Err(self.lmdb(None, "commit", e));
                    }
                    Err(_) => {}
                }
            } else {
                txn.abort();
            }
            drop(ticket);
            self.grow(observed)?;
        }
    }

    /// Hold LMDB's write lock, outside the write gate, until `until` returns: a stalled
    /// writer for tests of the writers that wait behind it.
    #[cfg(test)]
    pub(crate) fn stall_writes(&self, until: impl FnOnce()) -> Result<()> {
        let txn = self
            .inner
            .env
            .write_txn()
            .map_err(|e| self.lmdb(None, "begin a write", e))?;
        until();
        txn.abort();
        Ok(())
    }

    /// Begin a write transaction; also returns the map size it started with.
    fn begin_write(&self) -> Result<(WriteTxn<'_>, usize)> {
        if self.readonly {
            return Err(StorageError::ReadOnly {
                path: self.inner.path.clone(),
            });
        }
        loop {
            let ticket = Ticket::new(&self.inner);
            let observed = self.inner.env.info().map_size;
            match self.inner.env.write_txn() {
                Ok(txn) => {
                    let wtxn = WriteTxn {
                        txn,
                        ticket,
                        map_full: false,
                    };
                    return Ok((wtxn, observed));
                }
                Err(e) if is_mdb(&e, MdbError::MapResized) => {
                    drop(ticket);
                    self.adopt_map_size()?;
                }
                Err(e) => return Err(self.lmdb(None, "begin write transaction", e)),
            }
        }
    }

    fn create_db(&self, name: &str, dupsort: bool) -> Result<()> {
        let _share = write_gate().enter();
        loop {
            let (wtxn, observed) = self.begin_write()?;
            let WriteTxn { txn, ticket, .. } = wtxn;
            let created = self
                .inner
                .env
                .create_databases_and_commit(txn, |opener, txn| {
                    let mut options = opener.database_options().types::<Bytes, Bytes>();
                    options.name(name);
                    if dupsort {
                        options.flags(DatabaseFlags::DUP_SORT);
                    }
                    options
                        .create(txn)
                        .map(|_| CommitOrAbort::<(), Infallible>::Commit(()))
                });
            match created {
                Ok(_) => return Ok(()),
                Err(e) if is_mdb(&e, MdbError::MapFull) => {
                    drop(ticket);
                    self.grow(observed)?;
                }
                Err(e) => return Err(self.lmdb(Some(name), "create database", e)),
            }
        }
    }

    /// Open a database (the main one for `None`) without creating it.
    fn open_existing(
        &self,
        name: Option<&str>,
    ) -> Result<Option<heed::Database<'static, Bytes, Bytes>>> {
        let ReadTxn { txn, ticket } = self.read_txn()?;
        let opened = self
            .inner
            .env
            .open_databases_and_commit(txn, |opener, txn| {
                opener
                    .open_database::<Bytes, Bytes>(txn, name)
                    .map(CommitOrAbort::<_, Infallible>::Commit)
            });
        drop(ticket);
        match opened {
            Ok(CommitOrAbort::Commit(db)) => Ok(db),
            Ok(CommitOrAbort::Abort(never)) => match never {},
            Err(e) => Err(self.lmdb(name, "open database", e)),
        }
    }

    pub(super) fn main_db(&self) -> Result<heed::Database<'static, Bytes, Bytes>> {
        self.open_existing(None)?
            .ok_or_else(|| self.no_such_db("(main)"))
    }

    /// The DUPSORT flag stored for `name`, or `None` if there is no such key.
    fn stored_dupsort(&self, name: &str) -> Result<Option<bool>> {
        let main = self.main_db()?;
        self.read(|rtxn| {
            let value = main
                .get(&rtxn.txn, name.as_bytes())
                .map_err(|e| self.lmdb(Some(name), "look up database", e))?;
            match value {
                None => Ok(None),
                Some(value) => record_dupsort(value)
                    .map(Some)
                    .ok_or_else(|| self.no_such_db(name)),
            }
        })
    }

    /// The size of the environment's map (what a copy keeps as its own).
    pub(super) fn map_size(&self) -> Result<usize> {
        // env.info() reads the meta pages in the map, so it needs an open transaction's gate.
        self.read(|_| Ok(self.inner.env.info().map_size))
    }

    /// Entry counts of every named database and the environment's map info.
    pub fn stats(&self) -> Result<SlabStats> {
        let dbs = self
            .db_list()?
            .into_iter()
            .map(|(name, dupsort)| self.db(&name, dupsort))
            .collect::<Result<Vec<_>>>()?;
        self.read(|rtxn| {
            // env.info() reads the meta pages in the map, so it needs an open transaction's gate.
            let info = self.inner.env.info();
            let main = self.inner.env.unnamed_database_stat();
            let mut used_pages = META_PAGES + tree_pages(&main);
            let mut stats = Vec::with_capacity(dbs.len());
            for db in &dbs {
                used_pages += tree_pages(&db.heed_stat(rtxn)?);
                stats.push(DbStats {
                    name: db.name().to_owned(),
                    dupsort: db.is_dupsort(),
                    entries: db.len(rtxn)?,
                });
            }
            Ok(SlabStats {
                map_size: info.map_size as u64,
                last_page: info.last_page_number as u64,
                page_size: main.page_size,
                used_pages,
                dbs: stats,
            })
        })
    }

    /// Write LMDB's own compacted copy of the environment (`mdb_env_copyfd2`, what
    /// `mdb_copy -c` writes) to `dst_dir/data.mdb` (a consistent snapshot, fsynced, renamed
    /// into place) and return its size. `dst_dir/data.mdb` must not exist. Backups use
    /// [`Slab::compact_snapshot`]; this is the reference it is checked against.
    ///
    /// Other writers keep going during the copy, but the map cannot grow until it ends.
    pub fn copy_compacted_to(&self, dst_dir: impl AsRef<Path>) -> Result<u64> {
        let dst_dir = dst_dir.as_ref();
        fs::create_dir_all(dst_dir)
            .map_err(|e| StorageError::io(dst_dir, "create directory", e))?;
        let dst = dst_dir.join("data.mdb");
        if dst.exists() {
            return Err(StorageError::Exists { path: dst });
        }
        let tmp = dst_dir.join("data.mdb.tmp");
        let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, "create", e))?;
        if let Err(e) = self.copy_compacted_to_fd(file.as_fd()) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        file.sync_all()
            .map_err(|e| StorageError::io(&tmp, "fsync", e))?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io(&tmp, "stat", e))?
            .len();
        fs::rename(&tmp, &dst).map_err(|e| StorageError::io(&dst, "rename", e))?;
        File::open(dst_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| StorageError::io(dst_dir, "fsync directory", e))?;
        Ok(size)
    }

    /// Write LMDB's compacted copy of the environment, sequentially, to `fd`. The copy is the
    /// snapshot of one read transaction, which begins before the first byte is written and
    /// ends when the copy does. Nothing is synced.
    fn copy_compacted_to_fd(&self, fd: BorrowedFd<'_>) -> Result<()> {
        loop {
            // The copy reads through the map under its own read transaction.
            let ticket = Ticket::new(&self.inner);
            // SAFETY: `fd` is open for the whole call (it is borrowed), and LMDB only writes it.
            let copied = unsafe {
                self.inner
                    .env
                    .copy_to_fd(fd.as_raw_fd(), CompactionOption::Enabled)
            };
            match copied {
                Ok(()) => return Ok(()),
                // Refused before the transaction began, so nothing was written yet.
                Err(e) if is_mdb(&e, MdbError::MapResized) => {
                    drop(ticket);
                    self.adopt_map_size()?;
                }
                Err(e) => return Err(self.lmdb(None, "compacted copy", e)),
            }
        }
    }

    /// Drop the environment's pages from this process's resident set (`MADV_DONTNEED` on
    /// the map). The map is shared with the file, so nothing is lost: committed pages stay in
    /// the page cache (and on disk once flushed) and are faulted back in when read again. For
    /// bulk passes over large environments, whose touched pages would otherwise all stay
    /// resident.
    pub fn release_resident(&self) {
        let _ticket = Ticket::new(&self.inner);
        // LMDB reports no map address unless MDB_FIXEDMAP: find the mapping of data.mdb.
        let file = self.inner.path.join("data.mdb");
        let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(path)) = (fields.next(), fields.nth(4)) else {
                continue;
            };
            if Path::new(path) != file {
                continue;
            }
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
                continue;
            };
            // SAFETY: the range is this environment's shared file mapping, kept from being
            // remapped by the ticket; MADV_DONTNEED on a shared mapping only drops page-table
            // entries, and later accesses read the file's current contents.
            if let Err(e) = unsafe {
                nix::sys::mman::madvise(
                    addr,
                    end.saturating_sub(start),
                    nix::sys::mman::MmapAdvise::MADV_DONTNEED,
                )
            } {
                tracing::debug!(error = %e, path = %file.display(), "madvise failed");
            }
        }
    }

    /// Free the reader slots that processes which died inside a read transaction (a live
    /// backup killed with SIGKILL, say) left in the lock file; how many were freed. Until they
    /// are freed, LMDB cannot reuse any page freed after their snapshot, so every commit takes
    /// new pages and the file grows without end.
    fn clear_stale_readers(&self) -> Result<usize> {
        let _ticket = Ticket::new(&self.inner);
        self.inner
            .env
            .clear_stale_readers()
            .map_err(|e| self.lmdb(None, "clear stale readers", e))
    }

    /// Flush everything committed to disk.
    pub fn sync(&self) -> Result<()> {
        let _ticket = Ticket::new(&self.inner);
        self.inner
            .env
            .force_sync()
            .map_err(|e| self.lmdb(None, "sync", e))
    }

    /// Double the map, unless another thread already grew it past `observed`.
    fn grow(&self, observed: usize) -> Result<()> {
        let env = &self.inner.env;
        let resized = self.inner.gate.exclusive(self.inner.resize_timeout, || {
            let current = env.info().map_size;
            if current > observed {
                return Ok(None);
            }
            let new = round_up_mib(current.saturating_mul(2));
            // SAFETY: the gate guarantees that no transaction of this process is open.
            unsafe { env.resize(new) }.map(|()| Some((current, new)))
        });
        match resized {
            None => Err(self.resize_timeout()),
            Some(Err(e)) => Err(self.lmdb(None, "grow map", e)),
            Some(Ok(grown)) => {
                if let Some((old, new)) = grown {
                    tracing::info!(path = %self.inner.path.display(), old, new, "grew LMDB map");
                }
                Ok(())
            }
        }
    }

    /// Take the map size another process stored after growing the map.
    fn adopt_map_size(&self) -> Result<()> {
        let env = &self.inner.env;
        // SAFETY: the gate guarantees that no transaction of this process is open.
        match self
            .inner
            .gate
            .exclusive(self.inner.resize_timeout, || unsafe { env.resize(0) })
        {
            None => Err(self.resize_timeout()),
            Some(res) => res.map_err(|e| self.lmdb(None, "adopt map size", e)),
        }
    }

    fn resize_timeout(&self) -> StorageError {
        StorageError::ResizeTimeout {
            path: self.inner.path.clone(),
            waited: self.inner.resize_timeout,
        }
    }

    fn no_such_db(&self, name: &str) -> StorageError {
        StorageError::NoSuchDb {
            path: self.inner.path.clone(),
            name: name.to_owned(),
        }
    }

    pub(super) fn lmdb(
        &self,
        db: Option<&str>,
        op: &'static str,
        source: heed::Error,
    ) -> StorageError {
        StorageError::Lmdb {
            path: self.inner.path.clone(),
            db: db.map(str::to_owned),
            op,
            source,
        }
    }
}

fn is_mdb(err: &heed::Error, which: MdbError) -> bool {
    matches!(err, heed::Error::Mdb(e) if std::mem::discriminant(e) == std::mem::discriminant(&which))
}

fn is_incompatible(err: &StorageError) -> bool {
    matches!(err, StorageError::Lmdb { source, .. } if is_mdb(source, MdbError::Incompatible))
}

/// LMDB's two meta pages at the start of every data file.
const META_PAGES: u64 = 2;

/// Pages of one database's B-tree.
fn tree_pages(stat: &heed::DatabaseStat) -> u64 {
    (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64
}

/// In every environment this process has open for writing, free the reader slots of
/// processes that died inside a read transaction, logging where any were freed. A service
/// calls this periodically, so that a live backup killed during its copy cannot keep LMDB from
/// reusing freed pages (see [`Slab::clear_stale_readers`]).
pub fn clear_stale_readers() {
    let open: Vec<Arc<SlabInner>> = lock(&REGISTRY)
        .values()
        .filter_map(Weak::upgrade)
        .filter(|inner| !inner.readonly)
        .collect();
    for inner in open {
        let slab = Slab {
            inner,
            readonly: false,
        };
        let path = slab.inner.path.display();
        match slab.clear_stale_readers() {
            Ok(0) => {}
            Ok(readers) => tracing::info!(
                %path,
                readers,
                "freed the LMDB reader slots of processes that died in a read transaction"
            ),
            Err(err) => tracing::warn!(%path, %err, "clearing stale LMDB readers failed"),
        }
    }
}

/// Every environment of this process that is open for writing, sorted.
pub(super) fn writable_paths() -> Vec<PathBuf> {
    let registry = lock(&REGISTRY);
    let mut paths: Vec<PathBuf> = registry
        .iter()
        .filter(|(_, slab)| slab.upgrade().is_some_and(|inner| !inner.readonly))
        .map(|(path, _)| path.clone())
        .collect();
    paths.sort();
    paths
}

fn round_up_mib(size: usize) -> usize {
    size.max(MIB).div_ceil(MIB).saturating_mul(MIB)
}

/// The DUPSORT flag of an `MDB_db` record, or `None` if `value` is not shaped like one.
fn record_dupsort(value: &[u8]) -> Option<bool> {
    record_flags(value).map(is_dupsort)
}

/// The flags of an `MDB_db` record (`md_flags` is the native-endian u16 at offset 4), or
/// `None` if `value` is not shaped like one.
fn record_flags(value: &[u8]) -> Option<u16> {
    if value.len() != DB_RECORD_LEN {
        return None;
    }
    Some(u16::from_ne_bytes([value[4], value[5]]))
}

/// Whether database flags include DUPSORT.
fn is_dupsort(flags: u16) -> bool {
    u32::from(flags) & DatabaseFlags::DUP_SORT.bits() != 0
}

/// A named database of an environment: its name, stored flags and handle.
pub(super) struct NamedDb {
    pub(super) name: String,
    pub(super) flags: u16,
    pub(super) db: heed::Database<'static, Bytes, Bytes>,
}

/// Keeps map resizes away from live transactions: LMDB may only remap while no transaction of
/// this process is open. Transactions hold a [`Ticket`]; a resize waits until none is out.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    active: usize,
    resizing: bool,
}

impl Gate {
    fn wait<'a>(&self, state: MutexGuard<'a, GateState>) -> MutexGuard<'a, GateState> {
        self.changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self) {
        let mut state = lock(&self.state);
        while state.resizing {
            state = self.wait(state);
        }
        state.active += 1;
    }

    fn leave(&self) {
        let mut state = lock(&self.state);
        state.active -= 1;
        // Only a resize waits for the last ticket; a notify costs a system call even when
        // nobody waits, and tickets come and go with every transaction.
        if state.active == 0 && state.resizing {
            self.changed.notify_all();
        }
    }

    /// Run `f` while no ticket is out, or give up after `timeout`.
    ///
    /// New tickets are held back in slices of [`RESIZE_SLICE`], then let in briefly, so a
    /// thread that holds a ticket and asks for another cannot deadlock with the resize.
    fn exclusive<R>(&self, timeout: Duration, mut f: impl FnMut() -> R) -> Option<R> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut state = lock(&self.state);
            while state.resizing {
                state = self.wait(state);
            }
            state.resizing = true;
            let slice_end = (Instant::now() + RESIZE_SLICE).min(deadline);
            while state.active > 0 {
                let now = Instant::now();
                if now >= slice_end {
                    break;
                }
                state = self
                    .changed
                    .wait_timeout(state, slice_end - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let out = (state.active == 0).then(&mut f);
            state.resizing = false;
            self.changed.notify_all();
            drop(state);
            if out.is_some() || Instant::now() >= deadline {
                return out;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Proof that a transaction is registered with its slab's [`Gate`]; also keeps the slab open.
pub(super) struct Ticket(Arc<SlabInner>);

impl Ticket {
    fn new(inner: &Arc<SlabInner>) -> Ticket {
        inner.gate.enter();
        Ticket(inner.clone())
    }

    pub(super) fn slab(&self) -> &Arc<SlabInner> {
        &self.0
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.gate.leave();
    }
}

/// A read-only snapshot; `Send`, so it can move into `spawn_blocking`.
pub struct ReadTxn {
    // Field order matters: the transaction must end before its ticket is returned.
    pub(super) txn: RoTxn<'static, WithoutTls>,
    pub(super) ticket: Ticket,
}

/// A write transaction, handed to the closure of [`Slab::write`].
pub struct WriteTxn<'s> {
    // Field order matters: the transaction must end before its ticket is returned.
    pub(super) txn: RwTxn<'s>,
    pub(super) ticket: Ticket,
    map_full: bool,
}

impl WriteTxn<'_> {
    /// Note a failed write: after `MDB_MAP_FULL` the transaction is dead and must be retried.
    pub(super) fn track<T>(&mut self, res: heed::Result<T>) -> heed::Result<T> {
        if let Err(e) = &res
            && is_mdb(e, MdbError::MapFull)
        {
            self.map_full = true;
        }
        res
    }

    /// An error that, returned from the write closure, aborts the transaction with `reason`.
    pub fn abort_with(&self, reason: impl Into<String>) -> StorageError {
        StorageError::Aborted {
            path: self.ticket.slab().path.clone(),
            reason: reason.into(),
        }
    }
}
