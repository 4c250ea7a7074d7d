//! `syn-backup.json`: what a backup holds, written last, and the record of its verification.

use super::fsutil::{hash_file, write_atomic};
use super::{Failure, MANIFEST_FILE, VERIFIED_FILE};
use crate::storage::DbStats;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The manifest's format version.
pub const FORMAT: u32 = 1;

/// Everything a backup holds and how it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
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
    /// SHA-256, lower-case hex.
    pub sha256: String,
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
        if manifest.format != FORMAT {
            return Err(Failure::failed(format!(
                "{}: manifest format {} (this syn reads {FORMAT})",
                path.display(),
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Write `DIR/syn-backup.json` durably.
    pub fn write(&self, dir: &Path) -> Result<(), Failure> {
        let path = dir.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Failure::failed(format!("cannot encode the manifest: {e}")))?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes)
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
    Ok(hash_file(&dir.join(MANIFEST_FILE), &mut |_| {})?.sha256)
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

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Epoch milliseconds as UTC date and time, `2025-01-31T02:00:00.000Z`.
pub fn utc_string(ms: i64) -> String {
    let t = utc(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Epoch milliseconds as a compact UTC stamp for file names, `20250131T020000Z`.
pub fn utc_stamp(ms: i64) -> String {
    let t = utc(ms);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Epoch milliseconds as a UTC date and time.
pub fn utc(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_string(1_738_288_800_123), "2025-01-31T02:00:00.123Z");
        assert_eq!(utc_stamp(1_738_288_800_123), "20250131T020000Z");
    }
}
