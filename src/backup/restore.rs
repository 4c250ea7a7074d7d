//! `syn restore BACKUPDIR SVCDIR`: verify the backup, move the service directory aside, and put
//! a copy of the backup in its place.
//!
//! The copy is written into `SVCDIR.restore.partial` (fsynced, checked against the manifest's
//! hashes again as it is read), and only then are the two renames done: `SVCDIR` to the old
//! path, the copy to `SVCDIR`. The backup itself is left as it was.

use super::fsutil::{
    DirLock, DirUse, HashingWriter, claim_service_dir, create_new, parent_of, remove_as_partial,
    sync_dir, with_suffix, write_failure,
};
use super::manifest::Manifest;
use super::report::{Progress, Reporter};
use super::verify::verify;
use super::{Exit, Failure, human_bytes};
use crate::clock::{now_ms, utc_stamp};
use serde_json::json;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What to restore where.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The backup.
    pub backup: PathBuf,
    /// The service directory to replace (or create).
    pub target: PathBuf,
    /// Where the current service directory goes (default `SVCDIR.pre-restore-<time>`).
    pub old: Option<PathBuf>,
}

/// A finished restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The service directory, now holding the backup.
    pub target: PathBuf,
    /// Where the previous directory went, if there was one.
    pub old: Option<PathBuf>,
}

/// Restore `opts.backup` into `opts.target`.
pub fn restore(
    opts: &RestoreOptions,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
) -> Result<Restored, Failure> {
    let backup = opts.backup.canonicalize().map_err(|e| {
        Failure::new(
            Exit::NoSuchSource,
            format!("{}: {e}", opts.backup.display()),
        )
    })?;
    let target = std::path::absolute(&opts.target)
        .map_err(|e| Failure::failed(format!("{}: {e}", opts.target.display())))?;
    let parent = parent_of(&target)
        .canonicalize()
        .map_err(|e| Failure::failed(format!("{}: {e}", parent_of(&target).display())))?;
    let name = target
        .file_name()
        .ok_or_else(|| Failure::failed(format!("{}: not a directory name", target.display())))?;
    let target = parent.join(name);
    if target.starts_with(&backup) || backup.starts_with(&target) {
        return Err(Failure::failed(format!(
            "{} and {} overlap",
            backup.display(),
            target.display()
        )));
    }

    let exists = fs::symlink_metadata(&target).is_ok();
    let _target_lock;
    let _guard;
    if exists {
        _target_lock = DirLock::try_take(&target)
            .map_err(|e| Failure::failed(format!("{}: cannot lock: {e}", target.display())))?
            .ok_or_else(|| {
                Failure::new(
                    Exit::Locked,
                    format!("a backup or restore of {} is running", target.display()),
                )
            })?;
        _guard = match claim_service_dir(&target, true)
            .map_err(|e| Failure::failed(format!("{}: {e}", target.display())))?
        {
            DirUse::Syn | DirUse::Foreign => {
                return Err(Failure::new(
                    Exit::Locked,
                    format!(
                        "a service is running on {}; stop it before restoring",
                        target.display()
                    ),
                ));
            }
            DirUse::Stopped(guard) => guard,
        };
    }
    let old = match (&opts.old, exists) {
        (_, false) => None,
        (Some(old), true) => Some(
            std::path::absolute(old)
                .map_err(|e| Failure::failed(format!("{}: {e}", old.display())))?,
        ),
        (None, true) => Some(with_suffix(
            &target,
            &format!(".pre-restore-{}", utc_stamp(now_ms())),
        )),
    };
    if let Some(old) = &old
        && fs::symlink_metadata(old).is_ok()
    {
        return Err(Failure::new(
            Exit::DestinationExists,
            format!("{} already exists; choose another --old", old.display()),
        ));
    }

    reporter.notice(&format!("verifying {}", backup.display()));
    verify(&backup, reporter, interrupted)?;
    let manifest = Manifest::read(&backup)?;

    let staging = with_suffix(&target, ".restore.partial");
    if fs::symlink_metadata(&staging).is_ok() {
        match DirLock::try_take(&staging) {
            Ok(Some(_)) => {
                reporter.notice(&format!(
                    "removing {}, left by a restore that did not finish",
                    staging.display()
                ));
                remove_as_partial(&staging)
                    .map_err(|e| Failure::failed(format!("{}: {e}", staging.display())))?;
            }
            _ => {
                return Err(Failure::new(
                    Exit::Locked,
                    format!("a restore into {} is running", target.display()),
                ));
            }
        }
    }
    fs::create_dir(&staging).map_err(|e| write_failure(&staging, "creating", e))?;
    let staging_lock = DirLock::try_take(&staging).ok().flatten();
    let copied = copy_backup(&backup, &staging, &manifest, reporter, interrupted);
    if let Err(f) = copied {
        drop(staging_lock);
        let _ = remove_as_partial(&staging);
        return Err(f);
    }
    drop(staging_lock);
    if let Some(old) = &old {
        fs::rename(&target, old).map_err(|e| {
            let _ = remove_as_partial(&staging);
            Failure::failed(format!(
                "cannot move {} to {}: {e}",
                target.display(),
                old.display()
            ))
        })?;
    }
    fs::rename(&staging, &target).map_err(|e| {
        Failure::failed(format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            target.display()
        ))
    })?;
    sync_dir(&parent).map_err(|e| write_failure(&parent, "syncing", e))?;

    let iden = manifest.service.iden.as_deref().unwrap_or("-");
    let aside = match &old {
        Some(old) => format!(
            "; the previous directory is now {} (remove it once the service runs well)",
            old.display()
        ),
        None => String::new(),
    };
    reporter.summary(
        &format!(
            "restored {} ({} {}, taken {}, {}) into {}{aside}",
            backup.display(),
            manifest.service.kind,
            iden,
            manifest.taken,
            human_bytes(manifest.total_bytes()),
            target.display()
        ),
        json!({
            "backup": backup,
            "target": target,
            "old": old,
            "service": manifest.service,
            "taken": manifest.taken,
            "bytes": manifest.total_bytes(),
        }),
    );
    Ok(Restored { target, old })
}

/// Copy every directory, file and link the manifest lists from `backup` into `staging`,
/// checking each file's hash again as it is read, and fsync it all.
fn copy_backup(
    backup: &Path,
    staging: &Path,
    manifest: &Manifest,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
) -> Result<(), Failure> {
    let mut dirs: Vec<&String> = manifest.dirs.iter().collect();
    dirs.extend(manifest.envs.iter().map(|e| &e.path));
    dirs.sort();
    dirs.dedup();
    for rel in &dirs {
        let dir = staging.join(rel);
        fs::create_dir_all(&dir).map_err(|e| write_failure(&dir, "creating directories", e))?;
        if let Ok(meta) = fs::metadata(backup.join(rel)) {
            let _ = fs::set_permissions(&dir, meta.permissions());
        }
    }
    for link in &manifest.symlinks {
        let at = staging.join(&link.path);
        std::os::unix::fs::symlink(&link.target, &at)
            .map_err(|e| write_failure(&at, "creating links", e))?;
    }
    let mut progress = Progress {
        bytes_done: 0,
        bytes_total: manifest.total_bytes(),
        envs_done: 0,
        envs_total: manifest.envs.len(),
    };
    reporter.start_progress("restore", progress);
    let mut buf = vec![0u8; 1 << 20];
    for file in &manifest.files {
        let src = backup.join(&file.path);
        let dst = staging.join(&file.path);
        let mut input =
            File::open(&src).map_err(|e| Failure::failed(format!("{}: {e}", src.display())))?;
        let mut out = HashingWriter::new(
            create_new(&dst).map_err(|e| write_failure(&dst, "restoring", e))?,
            manifest.hash_kind(),
        );
        loop {
            if interrupted.load(Ordering::SeqCst) {
                return Err(Failure::new(
                    Exit::Interrupted,
                    "interrupted; nothing was changed",
                ));
            }
            let n = input
                .read(&mut buf)
                .map_err(|e| Failure::failed(format!("{}: {e}", src.display())))?;
            if n == 0 {
                break;
            }
            out.write(&buf[..n])
                .map_err(|e| write_failure(&dst, "restoring", e))?;
            progress.bytes_done += n as u64;
            reporter.progress(progress);
        }
        if let Ok(meta) = input.metadata() {
            let _ = fs::set_permissions(&dst, meta.permissions());
        }
        let written = out
            .finish()
            .map_err(|e| write_failure(&dst, "syncing", e))?;
        if Some(&written.digest) != file.digest(manifest.hash_kind()).as_ref()
            || written.size != file.size
        {
            return Err(Failure::failed(format!(
                "{}: changed while it was restored; nothing was changed",
                src.display()
            )));
        }
    }
    reporter.finish_progress(progress);
    for rel in dirs.iter().rev() {
        let dir = staging.join(rel);
        sync_dir(&dir).map_err(|e| write_failure(&dir, "syncing", e))?;
    }
    sync_dir(staging).map_err(|e| write_failure(staging, "syncing", e))
}
