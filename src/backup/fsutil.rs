//! File-system pieces: directory locks, keeping services off a directory, free space, durable
//! writes and hashing copies.

use super::manifest::{Digest, HashKind};
use super::{Exit, Failure};
use crate::cell::dir::{GUID_FILE, is_locked};
use nix::fcntl::{Flock, FlockArg};
use ring::digest;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An exclusive `flock` on a directory: one backup or restore of it at a time. The kernel
/// drops it when the process ends, however it ends.
pub(super) struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    /// Take the lock without waiting; `None` while another process holds it.
    pub(super) fn try_take(dir: &Path) -> io::Result<Option<DirLock>> {
        let file = File::open(dir)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(DirLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(errno.into()),
        }
    }
}

/// Keeps services off a stopped service directory while it lives: a shared `flock` on
/// `cell.guid` (what a syn service takes exclusively) and an open-file-description read lock
/// (which conflicts with the `lockf` Python Synapse takes).
pub(super) struct ServiceGuard {
    _lock: Flock<File>,
}

/// Who is using a service directory.
pub(super) enum DirUse {
    /// A syn service runs on it (its lock on `cell.guid` is held).
    Syn,
    /// Some other process (Python Synapse) holds a POSIX lock on `cell.guid`.
    Foreign,
    /// Nobody; the guard (absent when there is no `cell.guid`) keeps it that way.
    Stopped(Option<ServiceGuard>),
}

/// Find out who uses `dir`, and if nobody does, keep it so. With `exclusive`, the guard also
/// keeps readers (a backup) away.
pub(super) fn claim_service_dir(dir: &Path, exclusive: bool) -> io::Result<DirUse> {
    if is_locked(dir) {
        return Ok(DirUse::Syn);
    }
    let guid = dir.join(GUID_FILE);
    let file = match OpenOptions::new().read(true).write(exclusive).open(&guid) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirUse::Stopped(None)),
        Err(e) => return Err(e),
    };
    let lock_type = if exclusive {
        nix::libc::F_WRLCK
    } else {
        nix::libc::F_RDLCK
    };
    // SAFETY: flock is a plain C struct; all-zero is valid (whole file from offset 0).
    let mut range: nix::libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = lock_type as nix::libc::c_short;
    range.l_whence = nix::libc::SEEK_SET as nix::libc::c_short;
    match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_SETLK(&range)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => return Ok(DirUse::Foreign),
        Err(e) => return Err(e.into()),
    }
    let how = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    match Flock::lock(file, how) {
        Ok(lock) => Ok(DirUse::Stopped(Some(ServiceGuard { _lock: lock }))),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(DirUse::Syn),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// Bytes available to unprivileged writers on the file system holding `path`.
pub(super) fn free_space(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path)?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// fsync a directory, so the names in it are durable.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
pub(super) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` with `suffix` appended to its last component (`DSTDIR` -> `DSTDIR.partial`).
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Create a new file (never an existing one) for writing and reading back, readable only by
/// its owner until its final mode is set.
pub(super) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Size and digest of what was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Written {
    pub size: u64,
    pub digest: Digest,
}

/// A running hash of one of the kinds a manifest records.
pub(super) enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Box<digest::Context>),
}

impl Hasher {
    pub(super) fn new(kind: HashKind) -> Hasher {
        match kind {
            HashKind::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            HashKind::Sha256 => Hasher::Sha256(Box::new(digest::Context::new(&digest::SHA256))),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    pub(super) fn finish(self) -> Digest {
        match self {
            Hasher::Blake3(h) => Digest {
                kind: HashKind::Blake3,
                hex: h.finalize().to_hex().to_string(),
            },
            Hasher::Sha256(h) => Digest {
                kind: HashKind::Sha256,
                hex: hex::encode(h.finish().as_ref()),
            },
        }
    }
}

/// The chunk copies are read and written in.
pub(super) const CHUNK: usize = 1 << 20;
/// The alignment of O_DIRECT buffers, lengths and offsets.
pub(super) const DIRECT_ALIGN: usize = 4096;

/// Turn O_DIRECT on or off for `file`; false where the file system does not support it.
pub(super) fn set_direct(file: &File, on: bool) -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let Ok(flags) = fcntl(file, FcntlArg::F_GETFL) else {
        return false;
    };
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_DIRECT, on);
    fcntl(file, FcntlArg::F_SETFL(flags)).is_ok()
}

/// A [`CHUNK`]-sized buffer aligned for O_DIRECT.
pub(super) struct Aligned {
    storage: Vec<u8>,
    start: usize,
}

impl Aligned {
    pub(super) fn new() -> Aligned {
        let storage = vec![0u8; CHUNK + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        Aligned { storage, start }
    }

    pub(super) fn get(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + CHUNK]
    }
}

/// How much a [`HashingWriter`] writes through the page cache before it starts writing it
/// back to disk.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Streams bytes into a file while hashing them. Whole aligned blocks (from an [`Aligned`]
/// buffer) go to the disk with O_DIRECT where the file system allows it: a backup neither
/// fills the page cache nor leaves the running service's `fsync`s a pile of dirty pages to
/// wait behind. The first write that is not whole blocks (the end of a file) turns O_DIRECT
/// off; through the page cache, write-back starts as it goes so the final fsync has little
/// left to do.
pub(super) struct HashingWriter {
    file: File,
    direct: bool,
    hash: Hasher,
    size: u64,
    written_back: u64,
}

impl HashingWriter {
    pub(super) fn new(file: File, kind: HashKind) -> HashingWriter {
        let direct = set_direct(&file, true);
        HashingWriter {
            file,
            direct,
            hash: Hasher::new(kind),
            size: 0,
            written_back: 0,
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let whole_blocks = bytes.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
            && bytes.len().is_multiple_of(DIRECT_ALIGN);
        if self.direct && !whole_blocks {
            set_direct(&self.file, false);
            self.direct = false;
        }
        self.file.write_all(bytes)?;
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
        if self.direct {
            self.written_back = self.size;
        } else if self.size - self.written_back >= WRITEBACK_EVERY {
            // Only a hint to start writing; durability comes from the fsync in `finish`.
            // SAFETY: a plain system call on an open descriptor.
            unsafe {
                nix::libc::sync_file_range(
                    std::os::fd::AsRawFd::as_raw_fd(&self.file),
                    self.written_back as i64,
                    (self.size - self.written_back) as i64,
                    nix::libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.written_back = self.size;
        }
        Ok(())
    }

    /// fsync and close; the file's size and digest.
    pub(super) fn finish(self) -> io::Result<Written> {
        self.file.sync_all()?;
        Ok(Written {
            size: self.size,
            digest: self.hash.finish(),
        })
    }
}

/// Size and digest of a file, reading it once; `progress` gets each chunk's length.
pub(super) fn hash_file(
    path: &Path,
    kind: HashKind,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Written> {
    let mut file = File::open(path)?;
    let mut hash = Hasher::new(kind);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        size += n as u64;
        progress(n as u64);
    }
    Ok(Written {
        size,
        digest: hash.finish(),
    })
}

/// Write `bytes` to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let _ = fs::remove_file(&tmp);
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    sync_dir(&parent_of(path))
}

/// Write `bytes` into the new file `path` (mode 0644) and fsync it; its name is not synced.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.sync_all()
}

/// Whether an I/O error means the file system is full.
pub(super) fn is_no_space(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)
    )
}

/// A write error at `path` as a failure: a full file system gets its own exit code.
pub(super) fn write_failure(path: &Path, what: &str, err: io::Error) -> Failure {
    if is_no_space(&err) {
        Failure::new(
            Exit::NoSpace,
            format!(
                "not enough space: {} filled up while {what}",
                parent_of(path).display()
            ),
        )
    } else {
        Failure::failed(format!("{}: {what}: {err}", path.display()))
    }
}

/// Remove a directory tree the way a deletion must look if it is interrupted: first renamed
/// to `NAME.partial` (so it can never pass for a whole backup), then removed, under its lock
/// (a `.partial` that a running backup holds is refused).
pub(super) fn remove_as_partial(dir: &Path) -> io::Result<()> {
    let busy = |path: &Path| {
        io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("{} is being written", path.display()),
        )
    };
    let doomed = if dir
        .as_os_str()
        .to_string_lossy()
        .ends_with(super::PARTIAL_SUFFIX)
    {
        dir.to_path_buf()
    } else {
        let doomed = with_suffix(dir, super::PARTIAL_SUFFIX);
        if fs::symlink_metadata(&doomed).is_ok() {
            // A leftover may go; one that a running backup writes may not.
            let _lock = DirLock::try_take(&doomed)?.ok_or_else(|| busy(&doomed))?;
            fs::remove_dir_all(&doomed)?;
        }
        fs::rename(dir, &doomed)?;
        sync_dir(&parent_of(dir))?;
        doomed
    };
    let _lock = DirLock::try_take(&doomed)?.ok_or_else(|| busy(&doomed))?;
    fs::remove_dir_all(&doomed)?;
    sync_dir(&parent_of(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_lock_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DirLock::try_take(tmp.path()).unwrap().expect("free");
        assert!(DirLock::try_take(tmp.path()).unwrap().is_none());
        drop(first);
        assert!(DirLock::try_take(tmp.path()).unwrap().is_some());
    }

    #[test]
    fn a_guard_keeps_a_syn_service_out() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join(GUID_FILE),
            "0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let DirUse::Stopped(Some(guard)) = claim_service_dir(tmp.path(), false).unwrap() else {
            panic!("an unused directory is stopped");
        };
        let err = crate::cell::dir::CellDir::open(tmp.path())
            .err()
            .expect("refused");
        assert!(
            matches!(err, crate::cell::dir::DirError::Locked(_)),
            "{err}"
        );
        drop(guard);
        let cell = crate::cell::dir::CellDir::open(tmp.path()).expect("free again");
        assert!(matches!(
            claim_service_dir(tmp.path(), false).unwrap(),
            DirUse::Syn
        ));
        drop(cell);
    }

    #[test]
    fn hashing_writer_matches_hash_file() {
        let tmp = tempfile::tempdir().unwrap();
        // Known answers: `sha256sum` and `b3sum` of "hello world".
        let known = [
            (
                HashKind::Sha256,
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            ),
            (
                HashKind::Blake3,
                "d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24",
            ),
        ];
        for (kind, hex) in known {
            let path = tmp.path().join(kind.name());
            let mut w = HashingWriter::new(create_new(&path).unwrap(), kind);
            w.write(b"hello ").unwrap();
            w.write(b"world").unwrap();
            let written = w.finish().unwrap();
            assert_eq!(written.size, 11);
            assert_eq!(
                written.digest,
                Digest {
                    kind,
                    hex: hex.into()
                }
            );
            let mut seen = 0;
            assert_eq!(hash_file(&path, kind, &mut |n| seen += n).unwrap(), written);
            assert_eq!(seen, 11);
            assert!(create_new(&path).is_err(), "never overwrites");
        }
    }

    #[test]
    fn removal_goes_through_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b1");
        fs::create_dir_all(dir.join("x")).unwrap();
        fs::write(dir.join("x/f"), b"1").unwrap();
        remove_as_partial(&dir).unwrap();
        assert!(!dir.exists());
        assert!(!with_suffix(&dir, ".partial").exists());
        // One that a running backup holds is left alone.
        let running = tmp.path().join("b2.partial");
        fs::create_dir(&running).unwrap();
        let held = DirLock::try_take(&running).unwrap().unwrap();
        assert!(remove_as_partial(&running).is_err());
        assert!(running.exists());
        drop(held);
        remove_as_partial(&running).unwrap();
        assert!(!running.exists());
    }
}
