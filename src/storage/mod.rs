//! LMDB storage shared by every service: slabs (environments), named databases of raw bytes,
//! msgpack/serde values, and Synapse's `SlabSeqn` log.
//!
//! A [`Slab`] is one LMDB environment directory such as `DIR/slabs/cell.lmdb` (holding
//! `data.mdb` and `lock.mdb`). Work happens in closures: [`Slab::read`] and [`Slab::write`].
//! The write closure may run more than once: when the map is full the transaction is aborted,
//! the map doubles, and the closure runs again, so it must not have side effects outside the
//! transaction. Commits are durable (LMDB's default sync) unless the slab is opened with
//! `SlabOptions::sync_commits` off, for callers that keep their own write-ahead log.
//!
//! Rules for callers:
//! * Keep transactions short, and never open a second transaction on the same slab while one
//!   is open on the same thread: growing the map waits until no transaction of this process is
//!   open, and gives up with [`StorageError::ResizeTimeout`] after `SlabOptions::resize_timeout`.
//! * Run LMDB work on blocking threads (`tokio::task::spawn_blocking`); [`ReadTxn`] is `Send`.
//! * Open each [`Db`] once and keep the handle; it is cheap to clone.
//! * Every write holds the process's [`WriteGate`] shared ([`Slab::write`] takes it itself);
//!   other durable writes (append-only logs) take it with [`write_gate`] and register their
//!   files with [`register_append_log`], so a backup can cut one consistent moment.

mod compact;
mod db;
mod gate;
mod rebuild;
mod seqn;
mod slab;
#[cfg(test)]
mod tests;

pub use compact::{CompactSnapshot, CopySink};
pub use db::{Db, Entries, TreeStat, Txn};
pub use gate::{
    AppendLogRegistration, HandedShare, HoldError, LogCut, SnapshotPoint, WriteGate, WriteHold,
    WriteShare, register_append_log, write_gate,
};
pub use rebuild::RebuildSnapshot;
pub use seqn::{Appended, Seqn, SeqnIter};
pub use slab::{DbStats, ReadTxn, Slab, SlabOptions, SlabStats, WriteTxn, clear_stale_readers};

use crate::error::SynErr;
use std::fs;
use std::path::{Path, PathBuf};

/// Results of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Why a storage operation failed; every message names the environment path.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system operation failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// LMDB (through heed) returned an error.
    #[error("{}: {op}: {source}", place(path, db.as_deref()))]
    Lmdb {
        /// The environment directory.
        path: PathBuf,
        /// The named database, if the operation was on one.
        db: Option<String>,
        /// What was being done.
        op: &'static str,
        /// heed's error.
        source: heed::Error,
    },
    /// The directory holds no `data.mdb`.
    #[error("{}: not an LMDB environment (no data.mdb)", path.display())]
    NotAnEnv {
        /// The directory.
        path: PathBuf,
    },
    /// A write was attempted through a read-only handle.
    #[error("{}: opened read-only", path.display())]
    ReadOnly {
        /// The environment directory.
        path: PathBuf,
    },
    /// The environment is already open read-only in this process and cannot also be written.
    #[error("{}: already open read-only in this process; cannot open it for writing", path.display())]
    OpenConflict {
        /// The environment directory.
        path: PathBuf,
    },
    /// A database name that LMDB cannot take.
    #[error("{}: invalid database name {name:?} (must be non-empty and without NUL)", path.display())]
    BadDbName {
        /// The environment directory.
        path: PathBuf,
        /// The rejected name.
        name: String,
    },
    /// No named database by that name (on a read-only slab, or the key is not a database).
    #[error("{}: no database named {name:?}", path.display())]
    NoSuchDb {
        /// The environment directory.
        path: PathBuf,
        /// The requested name.
        name: String,
    },
    /// The database exists with the other DUPSORT setting (LMDB would silently use the stored one).
    #[error(
        "{}: stored with dupsort={stored}, opened with dupsort={requested}",
        place(path, Some(db))
    )]
    DupsortMismatch {
        /// The environment directory.
        path: PathBuf,
        /// The database name.
        db: String,
        /// The flag stored in the environment.
        stored: bool,
        /// The flag the caller asked for.
        requested: bool,
    },
    /// `delete_dup` on a database without DUPSORT (LMDB would delete the whole key).
    #[error("{}: delete_dup needs a dupsort database", place(path, Some(db)))]
    NotDupsort {
        /// The environment directory.
        path: PathBuf,
        /// The database name.
        db: String,
    },
    /// A `Db` was used with a transaction of another slab.
    #[error("{}: used with a transaction on {}", place(path, Some(db)), other.display())]
    WrongEnv {
        /// The environment the database belongs to.
        path: PathBuf,
        /// The database name.
        db: String,
        /// The environment of the transaction.
        other: PathBuf,
    },
    /// A stored key or value is not what its reader expects.
    #[error(
        "{}: bad entry at key {}: {reason}",
        place(path, Some(db)),
        hex::encode(key)
    )]
    Decode {
        /// The environment directory.
        path: PathBuf,
        /// The database name.
        db: String,
        /// The key of the entry.
        key: Vec<u8>,
        /// What is wrong with it.
        reason: String,
    },
    /// A value could not be encoded for storage.
    #[error("{}: cannot encode value: {reason}", place(path, Some(db)))]
    Encode {
        /// The environment directory.
        path: PathBuf,
        /// The database name.
        db: String,
        /// The encoder's message.
        reason: String,
    },
    /// The map is full and could not grow because transactions of this process stayed open.
    #[error("{}: map is full and could not grow: transactions stayed open for {}s", path.display(), waited.as_secs())]
    ResizeTimeout {
        /// The environment directory.
        path: PathBuf,
        /// How long the resize waited.
        waited: std::time::Duration,
    },
    /// The caller aborted a write transaction (see [`WriteTxn::abort_with`]) or a copy.
    #[error("{}: transaction aborted: {reason}", path.display())]
    Aborted {
        /// The environment directory.
        path: PathBuf,
        /// The caller's reason.
        reason: String,
    },
    /// An environment's pages are not what LMDB writes (found by a compacting copy).
    #[error("{}: damaged environment: {reason}", path.display())]
    Damaged {
        /// The environment directory.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// A destination that must not exist yet already exists.
    #[error("{}: already exists", path.display())]
    Exists {
        /// The existing path.
        path: PathBuf,
    },
}

fn place(path: &Path, db: Option<&str>) -> String {
    match db {
        Some(db) => format!("{} db {db}", path.display()),
        None => path.display().to_string(),
    }
}

impl StorageError {
    /// The environment (or file) the error is about.
    pub fn path(&self) -> &Path {
        match self {
            StorageError::Io { path, .. }
            | StorageError::Lmdb { path, .. }
            | StorageError::NotAnEnv { path }
            | StorageError::ReadOnly { path }
            | StorageError::OpenConflict { path }
            | StorageError::BadDbName { path, .. }
            | StorageError::NoSuchDb { path, .. }
            | StorageError::DupsortMismatch { path, .. }
            | StorageError::NotDupsort { path, .. }
            | StorageError::WrongEnv { path, .. }
            | StorageError::Decode { path, .. }
            | StorageError::Encode { path, .. }
            | StorageError::ResizeTimeout { path, .. }
            | StorageError::Aborted { path, .. }
            | StorageError::Damaged { path, .. }
            | StorageError::Exists { path } => path,
        }
    }

    fn io(path: &Path, op: &'static str, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

impl From<StorageError> for SynErr {
    fn from(err: StorageError) -> SynErr {
        let path = err.path().display().to_string();
        SynErr::new("StorageError", err.to_string()).with("path", path)
    }
}

/// Encode an offset or counter as Synapse does: 8 bytes, big-endian, so keys sort numerically.
pub fn int64en(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decode a big-endian unsigned integer (the inverse of [`int64en`] for 8-byte input).
///
/// Like Synapse's `int.from_bytes(byts, 'big')` for up to 8 bytes; longer input keeps only its
/// last 8 bytes. Check the length first where a wrong length means corruption.
pub fn int64un(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Every LMDB environment (a directory holding `data.mdb`) under `service_dir`, sorted.
///
/// Directories named `tmp` are skipped, environments are not searched further, and symbolic
/// links are not followed.
pub fn find_environments(service_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![service_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if dir.join("data.mdb").is_file() {
            found.push(dir);
            continue;
        }
        let entries =
            fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, "read directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&dir, "read directory", e))?;
            let kind = entry
                .file_type()
                .map_err(|e| StorageError::io(&entry.path(), "stat", e))?;
            if kind.is_dir() && entry.file_name() != "tmp" {
                pending.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}
