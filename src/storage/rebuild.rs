//! A rebuilt copy of an environment: every database written again, in key order, into a new
//! environment.
//!
//! LMDB's compacting copy (`mdb_copy -c`) leaves out the free pages but keeps every page as
//! full as it was: after many deletions or random inserts, pages are a quarter to two thirds
//! full. Putting the records again in key order with `MDB_APPEND` fills every page, so the
//! rebuilt copy is smaller than the compacting copy (a fragmented environment by up to the
//! fill factor) and takes less writing. Keys, values, duplicates and each database's flags are
//! the same; only the page layout differs.
//!
//! Only environments that hold nothing but named databases are rebuilt (every syn slab and
//! every Python Synapse 2.x slab); keys and values are compared with LMDB's built-in
//! comparisons, as neither syn nor Synapse sets comparison functions of its own. Anything
//! else (plain keys in the unnamed database, as Synapse 0.1.x writes) gets LMDB's compacting
//! copy instead: [`Slab::rebuild_snapshot`] says which.

use super::slab::{NamedDb, ReadTxn};
use super::{Result, Slab, StorageError};
use heed::types::Bytes;
use heed::{CommitOrAbort, DatabaseFlags, EnvFlags, EnvOpenOptions, OnCommit, PutFlags};
use std::ops::Bound;
use std::path::Path;

/// Record bytes written between commits of the rebuilt copy: bounds its dirty pages in memory.
const COMMIT_BYTES: u64 = 16 << 20;

/// A consistent moment of an environment, ready to be written out as a rebuilt copy.
pub struct RebuildSnapshot {
    slab: Slab,
    /// Record bytes a transaction of the copy holds ([`COMMIT_BYTES`]; tests make it small).
    pub(super) commit_bytes: u64,
    map_size: usize,
    dbs: Vec<NamedDb>,
    txn: ReadTxn,
}

/// Where a fill goes on: the database (by position) and the last key it wrote there.
#[derive(Default)]
struct Resume {
    db: usize,
    after: Option<Vec<u8>>,
}

/// The databases created in the copy, handed over by heed once their transaction commits.
struct Created<D>(Vec<D>);

impl<D: OnCommit> OnCommit for Created<D> {
    type Committed = Vec<D::Committed>;

    fn on_commit(self, token: &heed::CommitToken) -> Self::Committed {
        self.0.into_iter().map(|db| db.on_commit(token)).collect()
    }
}

impl Slab {
    /// Begin a read snapshot of every named database for [`RebuildSnapshot::write_to`], or
    /// `None` when the environment holds anything besides named databases (copy it with
    /// [`Slab::compact_snapshot`] then). The snapshot is the moment of this call.
    pub fn rebuild_snapshot(&self) -> Result<Option<RebuildSnapshot>> {
        let (dbs, only_named) = self.named_dbs()?;
        if !only_named {
            return Ok(None);
        }
        // Handles opened after a read transaction began are not valid in it, so the snapshot
        // begins last; a database made in between is not in it, and then the copy is LMDB's.
        let map_size = self.map_size()?;
        let main = self.main_db()?;
        let txn = self.read_txn()?;
        let in_snapshot = main
            .len(&txn.txn)
            .map_err(|e| self.lmdb(None, "list databases", e))?;
        if in_snapshot != dbs.len() as u64 {
            return Ok(None);
        }
        Ok(Some(RebuildSnapshot {
            slab: self.clone(),
            commit_bytes: COMMIT_BYTES,
            map_size,
            dbs,
            txn,
        }))
    }
}

impl RebuildSnapshot {
    /// Write the snapshot into a new environment in `dst_dir` (which must exist and hold no
    /// `data.mdb`): `dst_dir/data.mdb` only, no lock file, nothing synced. `progress` is told
    /// how many record bytes were written since it was last called, after each commit, and
    /// says whether to go on: when it says no, the copy ends with [`StorageError::Aborted`].
    pub fn write_to(self, dst_dir: &Path, progress: &mut dyn FnMut(u64) -> bool) -> Result<()> {
        let data = dst_dir.join("data.mdb");
        if data.exists() {
            return Err(StorageError::Exists { path: data });
        }
        let map_size = self.map_size;
        let lmdb = |op, source| StorageError::Lmdb {
            path: data.clone(),
            db: None,
            op,
            source,
        };
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options
            .map_size(map_size)
            .max_dbs(u32::try_from(self.dbs.len() + 1).unwrap_or(u32::MAX));
        // SAFETY: the environment is new and this function its only user; without a lock file
        // and unsynced, as nothing else opens it before it is complete and fsynced by the
        // caller.
        let env = unsafe {
            options.flags(EnvFlags::NO_LOCK | EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC);
            options.open(dst_dir)
        }
        .map_err(|e| lmdb("open the copy", e))?;
        let written = self.fill(&env, progress, &lmdb);
        // The environment must be closed before its file is synced and read.
        env.prepare_for_closing().wait();
        written
    }

    /// Create the databases and write the first records in one transaction (a copy that fits
    /// in one leaves no freed pages behind), then the rest in further transactions.
    fn fill(
        &self,
        env: &heed::Env<heed::WithoutTls>,
        progress: &mut dyn FnMut(u64) -> bool,
        lmdb: &dyn Fn(&'static str, heed::Error) -> StorageError,
    ) -> Result<()> {
        let wtxn = env.write_txn().map_err(|e| lmdb("begin", e))?;
        let mut first = Ok((0, None));
        let outcome = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let mut made = Vec::with_capacity(self.dbs.len());
                for src in &self.dbs {
                    let mut options = opener.database_options().types::<Bytes, Bytes>();
                    options.name(&src.name).flags(flags_of(src));
                    made.push(options.create(wtxn)?);
                }
                first = self.fill_from(&made, wtxn, Resume::default(), lmdb);
                let commit = if first.is_ok() {
                    CommitOrAbort::Commit(Created(made))
                } else {
                    CommitOrAbort::Abort(())
                };
                Ok::<_, heed::Error>(commit)
            })
            .map_err(|e| lmdb("create databases", e))?;
        let targets = match outcome {
            CommitOrAbort::Commit(targets) => targets,
            // Aborted only when the first fill failed: `first` holds its error.
            CommitOrAbort::Abort(()) => Vec::new(),
        };
        let (mut written, mut resume) = first?;
        loop {
            if !progress(written) {
                return Err(self.stopped());
            }
            let Some(from) = resume else {
                return Ok(());
            };
            start_writeback(env);
            let mut wtxn = env.write_txn().map_err(|e| lmdb("begin", e))?;
            (written, resume) = self.fill_from(&targets, &mut wtxn, from, lmdb)?;
            wtxn.commit().map_err(|e| lmdb("commit", e))?;
        }
    }

    /// Append records from `from` on until about `commit_bytes` are written, stopping only
    /// between keys (so a key's values never span transactions). Returns the bytes written and
    /// where to go on, if anything is left.
    fn fill_from(
        &self,
        targets: &[heed::Database<'_, Bytes, Bytes>],
        wtxn: &mut heed::RwTxn<'_>,
        from: Resume,
        lmdb: &dyn Fn(&'static str, heed::Error) -> StorageError,
    ) -> Result<(u64, Option<Resume>)> {
        let mut written = 0u64;
        for (at, (src, dst)) in self.dbs.iter().zip(targets).enumerate().skip(from.db) {
            let read = |e| self.slab.lmdb(Some(&src.name), "read", e);
            let after = match (&from.after, at == from.db) {
                (Some(key), true) => Bound::Excluded(key.as_slice()),
                _ => Bound::Unbounded,
            };
            let dupsort = flags_of(src).contains(DatabaseFlags::DUP_SORT);
            let mut last_key: Option<&[u8]> = None;
            for entry in src
                .db
                .range(&self.txn.txn, &(after, Bound::Unbounded))
                .map_err(read)?
            {
                let (key, value) = entry.map_err(read)?;
                let same_key = last_key == Some(key);
                if !same_key && written >= self.commit_bytes {
                    let after = last_key.map(<[u8]>::to_vec);
                    return Ok((written, Some(Resume { db: at, after })));
                }
                // A further value of the same key goes after its others; a new key after all.
                let flags = if dupsort && same_key {
                    PutFlags::APPEND_DUP
                } else {
                    PutFlags::APPEND
                };
                dst.put_with_flags(wtxn, flags, key, value)
                    .map_err(|e| lmdb("write", e))?;
                last_key = Some(key);
                written += (key.len() + value.len()) as u64;
            }
        }
        Ok((written, None))
    }

    fn stopped(&self) -> StorageError {
        StorageError::Aborted {
            path: self.slab.path().to_path_buf(),
            reason: "the copy was stopped".into(),
        }
    }
}

/// A source database's stored flags, as heed takes them.
fn flags_of(db: &NamedDb) -> DatabaseFlags {
    DatabaseFlags::from_bits_truncate(u32::from(db.flags))
}

/// Ask the kernel to start writing the copy's dirty pages now, so that the disk works while
/// the copy goes on and the caller's final fsync has little left to wait for. Best effort.
fn start_writeback(env: &heed::Env<heed::WithoutTls>) {
    let Ok(file) = env.try_clone_inner_file() else {
        return;
    };
    // SAFETY: a plain system call on an open descriptor; it only starts write-back.
    unsafe {
        nix::libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
            0,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
