//! `syn-backup.json`: what a backup holds, written last, and the record of its verification.

use super::fsutil::{hash_file, write_atomic, write_synced};
use super::{Failure, MANIFEST_FILE, VERIFIED_FILE};
use crate::storage::DbStats;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest's format version: 2 records a BLAKE3 digest of every file (the default).
pub const FORMAT: u32 = 2;
/// The format whose files carry SHA-256 digests: the first one syn wrote, and what
/// `syn backup --digest sha256` writes.
pub const FORMAT_SHA256: u32 = 1;

/// The format of a manifest whose files are digested with `kind`.
pub fn format_of(kind: HashKind) -> u32 {
    match kind {
        HashKind::Blake3 => FORMAT,
        HashKind::Sha256 => FORMAT_SHA256,
    }
}

/// Everything a backup holds and how it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`], or [`FORMAT_SHA256`] when the files carry SHA-256 digests.
    pub format: u32,
    /// The version of syn that wrote it.
    pub syn_version: String,
    /// The source directory (absolute).
    pub source: String,
    /// `live` (taken through the running service's hold) or `offline`.
    pub mode: String,
    /// The service the directory belongs to.
    pub service: Service,
    /// When the run started, epoch milliseconds.
    pub started_ms: i64,
    /// The moment the backup captures, epoch milliseconds (the hold, or the start offline).
    pub snapshot_ms: i64,
    /// When the copy ended, epoch milliseconds.
    pub finished_ms: i64,
    /// The snapshot moment in UTC, for people (`2025-01-31T02:00:00.000Z`).
    pub taken: String,
    /// How long the service's writes were held, in milliseconds (live backups only).
    pub held_ms: Option<u64>,
    /// Bytes in the source's files when the run started.
    pub source_bytes: u64,
    /// How much the source grew while it was copied (a long read transaction makes LMDB
    /// files grow).
    pub source_growth: u64,
    /// Directories, relative, parents first.
    pub dirs: Vec<String>,
    /// Every file of the backup but this manifest, sorted by path.
    pub files: Vec<FileEntry>,
    /// Every LMDB environment and its databases' entry counts.
    pub envs: Vec<EnvEntry>,
    /// Append-only logs cut at the snapshot point.
    pub logs: Vec<LogEntry>,
    /// Symbolic links, as they were.
    pub symlinks: Vec<SymlinkEntry>,
    /// Source files that could not be read: a backup with any is incomplete.
    pub unreadable: Vec<Unreadable>,
}

/// The service a backup belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// `cortex`, `axon`, `cryotank`, `cell`; told by the service when live, read from the
    /// directory's layout when offline.
    #[serde(rename = "type")]
    pub kind: String,
    /// The iden in `cell.guid`, if there is one.
    pub iden: Option<String>,
}

/// One copied file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3, lower-case hex (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// SHA-256, lower-case hex (format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl FileEntry {
    /// The entry of a file of `size` bytes with `digest`.
    pub fn new(path: String, size: u64, digest: Digest) -> FileEntry {
        let (mut blake3, mut sha256) = (None, None);
        match digest.kind {
            HashKind::Blake3 => blake3 = Some(digest.hex),
            HashKind::Sha256 => sha256 = Some(digest.hex),
        }
        FileEntry {
            path,
            size,
            blake3,
            sha256,
        }
    }

    /// The digest the manifest records for the file, of the kind its format names.
    pub fn digest(&self, kind: HashKind) -> Option<Digest> {
        let hex = match kind {
            HashKind::Blake3 => self.blake3.as_ref(),
            HashKind::Sha256 => self.sha256.as_ref(),
        }?;
        Some(Digest {
            kind,
            hex: hex.clone(),
        })
    }
}

/// How the files of a backup are hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// BLAKE3 (format 2): about a third of SHA-256's CPU time per byte here.
    Blake3,
    /// SHA-256 (format 1).
    Sha256,
}

impl HashKind {
    /// The name operators know it by (`BLAKE3`, `SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Blake3 => "BLAKE3",
            HashKind::Sha256 => "SHA-256",
        }
    }
}

/// A file's digest: its kind and lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// Which hash.
    pub kind: HashKind,
    /// The digest in lower-case hex.
    pub hex: String,
}

/// One LMDB environment (its `data.mdb` is also in [`Manifest::files`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEntry {
    /// Relative path of the environment directory.
    pub path: String,
    /// Every named database with its entry count, sorted by name.
    pub dbs: Vec<DbStats>,
}

/// An append-only log copied up to its durable length at the snapshot point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Relative path.
    pub path: String,
    /// Bytes copied.
    pub length: u64,
}

/// A symbolic link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymlinkEntry {
    /// Relative path of the link.
    pub path: String,
    /// What it points to.
    pub target: String,
}

/// A source file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// Relative path.
    pub path: String,
    /// The error.
    pub error: String,
}

impl Manifest {
    /// Read `DIR/syn-backup.json`.
    pub fn read(dir: &Path) -> Result<Manifest, Failure> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::failed(format!(
                    "{}: no {MANIFEST_FILE}: not a complete syn backup",
                    dir.display()
                ))
            } else {
                Failure::failed(format!("{}: {e}", path.display()))
            }
        })?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
            Failure::failed(format!("{}: unreadable manifest: {e}", path.display()))
        })?;
        if manifest.format != FORMAT && manifest.format != FORMAT_SHA256 {
            return Err(Failure::failed(format!(
                "{}: manifest format {} (this syn reads {FORMAT_SHA256} and {FORMAT})",
                path.display(),
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// How this manifest's file digests were computed (by its format; see [`format_of`]).
    pub fn hash_kind(&self) -> HashKind {
        if self.format == FORMAT_SHA256 {
            HashKind::Sha256
        } else {
            HashKind::Blake3
        }
    }

    /// Write the new file `DIR/syn-backup.json` and fsync it; the caller fsyncs `DIR` (a
    /// backup writes its manifest into its `.partial` directory, renamed only after that).
    pub fn write(&self, dir: &Path) -> Result<(), Failure> {
        let path = dir.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Failure::failed(format!("cannot encode the manifest: {e}")))?;
        bytes.push(b'\n');
        write_synced(&path, &bytes)
            .map_err(|e| super::fsutil::write_failure(&path, "writing the manifest", e))
    }

    /// The total size of the backup's files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The outcome of the last `syn backup verify`, kept beside the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// SHA-256 of the manifest that was verified (a changed manifest voids the record).
    pub manifest_sha256: String,
    /// When, epoch milliseconds.
    pub verified_ms: i64,
    /// Whether everything matched.
    pub ok: bool,
    /// What differed.
    pub problems: Vec<String>,
}

/// What a backup directory's records say about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Written whole, never verified (or the manifest changed since).
    Complete,
    /// Written whole and verified since.
    Verified,
    /// The last verification found differences.
    Damaged,
    /// Written, but some source files could not be read.
    Incomplete,
}

impl State {
    /// The word `list` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Complete => "complete",
            State::Verified => "verified",
            State::Damaged => "damaged",
            State::Incomplete => "incomplete",
        }
    }
}

/// SHA-256 of a backup's manifest file.
pub fn manifest_hash(dir: &Path) -> std::io::Result<String> {
    Ok(
        hash_file(&dir.join(MANIFEST_FILE), HashKind::Sha256, &mut |_| {})?
            .digest
            .hex,
    )
}

/// Record a verification of the backup in `dir`.
pub fn record_verification(dir: &Path, record: &Verification) -> Result<(), Failure> {
    let path = dir.join(VERIFIED_FILE);
    let mut bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| Failure::failed(format!("cannot encode the verification: {e}")))?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes)
        .map_err(|e| super::fsutil::write_failure(&path, "recording the verification", e))
}

/// The state of the backup in `dir`, whose manifest is `manifest`.
pub fn state_of(dir: &Path, manifest: &Manifest) -> State {
    let record: Option<Verification> = std::fs::read(dir.join(VERIFIED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let current = record.filter(|r| manifest_hash(dir).is_ok_and(|h| h == r.manifest_sha256));
    match current {
        Some(r) if !r.ok => State::Damaged,
        _ if !manifest.unreadable.is_empty() => State::Incomplete,
        Some(_) => State::Verified,
        None => State::Complete,
    }
}
