//! A service directory: everything a service is lives here, and one daemon owns it at a time.
//!
//! Layout: `cell.guid` (the stable iden), `cell.toml` (optional configuration), `slabs/` (LMDB
//! environments, `slabs/cell.lmdb` for users, roles and service state), `sock` (the unix
//! socket; whoever reaches it is root). The daemon holds an exclusive `flock` on `cell.guid`
//! for its whole life; the kernel drops it when the process dies, so a crash never leaves a
//! stale lock, and a second daemon (or a restore) on the same directory is refused.

use crate::guid;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The file holding the service's iden; also the lock's target.
pub const GUID_FILE: &str = "cell.guid";
/// The unix socket every service serves.
pub const SOCK_FILE: &str = "sock";
/// The folder of LMDB environments.
pub const SLABS_DIR: &str = "slabs";

/// Why a directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Another process holds the directory's lock.
    #[error("{0} is in use by another running service (its lock on cell.guid is held)")]
    Locked(PathBuf),
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: std::io::Error,
    },
    /// `cell.guid` holds something that is not a guid.
    #[error("{0}: not a valid cell iden (expected 32 hex characters)")]
    BadGuid(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open, locked service directory.
pub struct CellDir {
    path: PathBuf,
    iden: String,
    _lock: Flock<File>,
}

impl CellDir {
    /// Open (creating on first start) and lock the service directory at `path`.
    pub fn open(path: &Path) -> Result<CellDir, DirError> {
        std::fs::create_dir_all(path).map_err(io_err(path))?;
        let path = path.canonicalize().map_err(io_err(path))?;
        let guid_path = path.join(GUID_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&guid_path)
            .map_err(io_err(&guid_path))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(DirError::Locked(path)),
            Err((_, errno)) => {
                return Err(DirError::Io {
                    path: guid_path,
                    source: errno.into(),
                });
            }
        };
        let mut text = String::new();
        lock.read_to_string(&mut text).map_err(io_err(&guid_path))?;
        let iden = match text.trim() {
            "" => {
                // First start (or a start killed before the iden was written): make one.
                let iden = guid::guid();
                lock.seek(SeekFrom::Start(0)).map_err(io_err(&guid_path))?;
                lock.set_len(0).map_err(io_err(&guid_path))?;
                lock.write_all(iden.as_bytes())
                    .map_err(io_err(&guid_path))?;
                lock.sync_all().map_err(io_err(&guid_path))?;
                iden
            }
            t if guid::is_guid(t) => t.to_owned(),
            _ => return Err(DirError::BadGuid(guid_path)),
        };
        let slabs = path.join(SLABS_DIR);
        std::fs::create_dir_all(&slabs).map_err(io_err(&slabs))?;
        Ok(CellDir {
            path,
            iden,
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The service's iden from `cell.guid`.
    pub fn iden(&self) -> &str {
        &self.iden
    }

    /// The path of the LMDB environment `name` (`slabs/<name>.lmdb`).
    pub fn slab_path(&self, name: &str) -> PathBuf {
        self.path.join(SLABS_DIR).join(format!("{name}.lmdb"))
    }

    /// The unix socket's path.
    pub fn sock_path(&self) -> PathBuf {
        self.path.join(SOCK_FILE)
    }
}

/// Whether a running service holds the lock of the directory at `path` (without taking it).
pub fn is_locked(path: &Path) -> bool {
    let Ok(file) = File::open(path.join(GUID_FILE)) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_keeps_iden_and_locks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("svc");
        let first = CellDir::open(&dir).unwrap();
        let iden = first.iden().to_owned();
        assert!(guid::is_guid(&iden));
        assert!(dir.join(SLABS_DIR).is_dir());
        assert!(is_locked(&dir));
        assert!(matches!(CellDir::open(&dir), Err(DirError::Locked(_))));
        drop(first);
        assert!(!is_locked(&dir));
        assert_eq!(CellDir::open(&dir).unwrap().iden(), iden);
    }

    #[test]
    fn a_bad_guid_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(GUID_FILE), "not a guid\n").unwrap();
        assert!(matches!(
            CellDir::open(tmp.path()),
            Err(DirError::BadGuid(_))
        ));
    }
}
