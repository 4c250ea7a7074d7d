//! Backups an operator can trust: `syn backup`, `syn backup verify|list|prune` and `syn restore`.
//!
//! A backup is a copy of a whole service directory in which every LMDB environment is a
//! compacted copy (free pages left out, pages renumbered: a defragmented copy; with
//! `--rebuild`, its records written again into full pages) and every other
//! file is copied as it is; `tmp/` directories, the top-level `backups/` directory, sockets and
//! LMDB lock files are left out. Beside the data, `syn-backup.json` (the [`manifest`]) records
//! every file's size and BLAKE3 digest (SHA-256 in format 1 manifests, which are still read),
//! every environment's entry counts, the service and when the backup was taken.
//!
//! Guarantees:
//! * **One moment.** On a running syn service (its lock on `cell.guid` is held) the backup asks
//!   the service, through `SRCDIR/sock`, for a backup hold (`backupHold` of the Cell API): the
//!   service pauses writes, the backup begins one read transaction per environment, and writes
//!   resume; only then is anything copied. Every environment and registered append-only log is
//!   captured at the same instant. A stopped service's directory is copied directly, with the
//!   service kept from starting meanwhile.
//! * **Never a half backup that looks whole.** Everything is written into `DSTDIR.partial`,
//!   fsynced, the manifest is written last and the directory is renamed to `DSTDIR`. A killed
//!   or failed run leaves no `DSTDIR`; its `.partial` is removed by the next run.
//! * **One backup of a directory at a time**, by `flock` on the source directory (and on the
//!   `.partial` being written), which the kernel releases when the process dies: no stale locks.
//!
//! Exit codes (see [`Exit`]) follow restic's where they overlap.

pub mod cli;
mod copy;
mod fsutil;
pub mod limit;
mod live;
pub mod manifest;
mod plan;
mod prune;
mod report;
mod restore;
mod verify;

pub use copy::{BackupOptions, Outcome, REBUILD_ENV, backup, rebuild_from_env};
pub use prune::{Action, Entry, KeepPolicy, Listed, catalog, list, plan_prune, prune};
pub use report::{Output, Progress, Reporter};
pub use restore::{RestoreOptions, Restored, restore};
pub use verify::{Checked, verify, verify_and_report};

use std::fmt;

/// The manifest's file name inside a backup.
pub const MANIFEST_FILE: &str = "syn-backup.json";
/// The record of the last verification, beside the manifest.
pub const VERIFIED_FILE: &str = "syn-backup.verified.json";
/// The suffix of a backup being written (`DSTDIR.partial`).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The documented exit codes of `syn backup` and `syn restore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: failed (the message says why); for `verify`, the backup differs from its manifest.
    Failed = 1,
    /// 2: bad command line.
    Usage = 2,
    /// 3: the backup was written, but some source files could not be read (they are listed
    /// in the manifest and the backup counts as incomplete).
    PartlyUnreadable = 3,
    /// 10: no such source directory or backup.
    NoSuchSource = 10,
    /// 11: locked: another backup or restore of the directory runs, or a service runs where a
    /// restore would go (or one that is not syn holds the source).
    Locked = 11,
    /// 12: the destination already exists.
    DestinationExists = 12,
    /// 13: not enough space at the destination.
    NoSpace = 13,
    /// 14: the backup ran longer than `--max-duration` and was stopped.
    TooLong = 14,
    /// 130: interrupted by SIGINT, SIGTERM or SIGHUP.
    Interrupted = 130,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Why a backup command stopped: its exit code and one line for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The exit code this failure means.
    pub exit: Exit,
    /// What happened, on one line.
    pub message: String,
}

impl Failure {
    /// A failure with exit code `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        let message: String = message.into();
        // One line, whatever the underlying error said.
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        Failure { exit, message }
    }

    /// A plain failure (exit code 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Failed, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::storage::StorageError> for Failure {
    fn from(err: crate::storage::StorageError) -> Failure {
        Failure::failed(err.to_string())
    }
}

/// `1 environment`, `3 environments`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A byte count for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_one_line() {
        let f = Failure::failed("a\nb  c\n");
        assert_eq!(f.message, "a b c");
        assert_eq!(f.exit.code(), 1);
        assert_eq!(Exit::Interrupted.code(), 130);
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(2, "file"), "2 files");
    }
}
