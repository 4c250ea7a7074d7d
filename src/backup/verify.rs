//! `syn backup verify DIR`: re-hash every file, walk every database, compare with the manifest.

use super::fsutil::hash_file;
use super::manifest::{Manifest, Verification, manifest_hash, record_verification};
use super::report::{Progress, Reporter};
use super::{Exit, Failure, MANIFEST_FILE, VERIFIED_FILE, human_bytes};
use crate::clock::now_ms;
use crate::storage::Slab;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a successful verification checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Files re-hashed.
    pub files: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Environments whose databases were walked.
    pub envs: usize,
    /// Entries walked.
    pub entries: u64,
}

/// Verify the backup in `dir` against its manifest and record the outcome beside it. Every
/// difference is reported as a `problem` record naming the file or database; any difference
/// is a failure (exit code 1).
pub fn verify(
    dir: &Path,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
) -> Result<Checked, Failure> {
    if !dir.is_dir() {
        return Err(Failure::new(
            Exit::NoSuchSource,
            format!("{}: no such backup", dir.display()),
        ));
    }
    let manifest = Manifest::read(dir)?;
    let mut problems = Vec::new();
    let checked = check(dir, &manifest, reporter, interrupted, &mut problems)?;
    let record = Verification {
        manifest_sha256: manifest_hash(dir)
            .map_err(|e| Failure::failed(format!("{}: {e}", dir.join(MANIFEST_FILE).display())))?,
        verified_ms: now_ms(),
        ok: problems.is_empty(),
        problems: problems.clone(),
    };
    if let Err(f) = record_verification(dir, &record) {
        reporter.notice(&format!("the outcome could not be recorded: {f}"));
    }
    for problem in &problems {
        reporter.record(
            "problem",
            &format!("{}: {problem}", dir.display()),
            json!({ "backup": dir, "problem": problem }),
        );
    }
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(Failure::failed(format!(
            "{} failed verification: {first}{more}",
            dir.display()
        )));
    }
    Ok(checked)
}

/// [`verify`], then a summary line.
pub fn verify_and_report(
    dir: &Path,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
) -> Result<Checked, Failure> {
    let checked = verify(dir, reporter, interrupted)?;
    reporter.summary(
        &format!(
            "verified {}: {} ({}) match their hashes, {} with {} match their counts",
            dir.display(),
            super::count(checked.files, "file"),
            human_bytes(checked.bytes),
            super::count(checked.envs, "environment"),
            match checked.entries {
                1 => "1 entry".to_owned(),
                n => format!("{n} entries"),
            }
        ),
        json!({
            "backup": dir,
            "files": checked.files,
            "bytes": checked.bytes,
            "envs": checked.envs,
            "entries": checked.entries,
            "ok": true,
        }),
    );
    Ok(checked)
}

fn check(
    dir: &Path,
    manifest: &Manifest,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
    problems: &mut Vec<String>,
) -> Result<Checked, Failure> {
    let mut checked = Checked {
        files: 0,
        bytes: 0,
        envs: 0,
        entries: 0,
    };
    if let Some(first) = manifest.unreadable.first() {
        problems.push(format!(
            "incomplete: {} source files could not be read when it was taken (first: {}: {})",
            manifest.unreadable.len(),
            first.path,
            first.error
        ));
    }
    let on_disk = list_files(dir, problems);
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for extra in on_disk.iter().filter(|p| !listed.contains(p.as_str())) {
        problems.push(format!("{extra}: not in the manifest"));
    }
    for d in &manifest.dirs {
        if !dir.join(d).is_dir() {
            problems.push(format!("{d}/: directory missing"));
        }
    }
    for link in &manifest.symlinks {
        match fs::read_link(dir.join(&link.path)) {
            Ok(t) if t == Path::new(&link.target) => {}
            Ok(t) => problems.push(format!(
                "{}: link points to {}, the manifest says {}",
                link.path,
                t.display(),
                link.target
            )),
            Err(_) => problems.push(format!("{}: link missing", link.path)),
        }
    }

    let mut progress = Progress {
        bytes_done: 0,
        bytes_total: manifest.total_bytes(),
        envs_done: 0,
        envs_total: manifest.envs.len(),
    };
    reporter.start_progress("verify", progress);
    let mut intact = BTreeSet::new();
    let kind = manifest.hash_kind();
    for file in &manifest.files {
        if interrupted.load(Ordering::SeqCst) {
            return Err(Failure::new(Exit::Interrupted, "interrupted"));
        }
        let path = dir.join(&file.path);
        let Some(expected) = file.digest(kind) else {
            problems.push(format!(
                "{}: the manifest records no {} digest",
                file.path,
                kind.name()
            ));
            continue;
        };
        let hashed = hash_file(&path, kind, &mut |n| {
            progress.bytes_done += n;
            reporter.progress(progress);
        });
        match hashed {
            Err(e) => problems.push(format!("{}: cannot read: {e}", file.path)),
            Ok(w) if w.size != file.size => problems.push(format!(
                "{}: {} bytes, the manifest says {}",
                file.path, w.size, file.size
            )),
            Ok(w) if w.digest != expected => problems.push(format!(
                "{}: content differs from the manifest ({} {}, expected {})",
                file.path,
                kind.name(),
                w.digest.hex,
                expected.hex
            )),
            Ok(w) => {
                checked.files += 1;
                checked.bytes += w.size;
                intact.insert(file.path.as_str());
            }
        }
    }
    for env in &manifest.envs {
        if interrupted.load(Ordering::SeqCst) {
            return Err(Failure::new(Exit::Interrupted, "interrupted"));
        }
        // A damaged data file is not opened: LMDB trusts its pages.
        if !intact.contains(format!("{}/data.mdb", env.path).as_str()) {
            problems.push(format!(
                "{}: not opened, its data file is damaged",
                env.path
            ));
            continue;
        }
        match walk_env(&dir.join(&env.path)) {
            Err(e) => problems.push(format!("{}: {e}", env.path)),
            Ok(counts) => {
                let expected: BTreeMap<&str, (bool, u64)> = env
                    .dbs
                    .iter()
                    .map(|d| (d.name.as_str(), (d.dupsort, d.entries)))
                    .collect();
                for (name, (dupsort, entries)) in &counts {
                    match expected.get(name.as_str()) {
                        None => problems.push(format!(
                            "{}: database {name} is not in the manifest",
                            env.path
                        )),
                        Some(&(d, e)) if d != *dupsort || e != *entries => problems.push(format!(
                            "{}: database {name} has {entries} entries (dupsort {dupsort}), \
                                 the manifest says {e} (dupsort {d})",
                            env.path
                        )),
                        Some(_) => checked.entries += entries,
                    }
                }
                for name in expected.keys().filter(|n| !counts.contains_key(**n)) {
                    problems.push(format!("{}: database {name} is missing", env.path));
                }
                checked.envs += 1;
            }
        }
        progress.envs_done += 1;
        reporter.progress(progress);
    }
    reporter.finish_progress(progress);
    Ok(checked)
}

/// Every database of the environment and the entries found by walking it.
fn walk_env(path: &Path) -> Result<BTreeMap<String, (bool, u64)>, String> {
    let slab = Slab::open_snapshot(path).map_err(|e| e.to_string())?;
    let mut counts = BTreeMap::new();
    for listed in slab.stats().map_err(|e| e.to_string())?.dbs {
        let db = slab
            .db(&listed.name, listed.dupsort)
            .map_err(|e| e.to_string())?;
        let walked = slab
            .read(|txn| {
                let mut n = 0u64;
                for entry in db.iter(txn)? {
                    entry?;
                    n += 1;
                }
                Ok(n)
            })
            .map_err(|e| e.to_string())?;
        counts.insert(listed.name, (listed.dupsort, walked));
    }
    Ok(counts)
}

/// Relative paths of the regular files under `dir`, leaving out the manifest and its record.
fn list_files(dir: &Path, problems: &mut Vec<String>) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel_dir) = pending.pop() {
        let entries = match fs::read_dir(dir.join(&rel_dir)) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{}/: cannot list: {e}", rel_dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let rel = rel_dir.join(entry.file_name());
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(rel);
            } else if kind.is_file() {
                let rel = rel.to_string_lossy().into_owned();
                // The record of a verification (or of one that was interrupted) is not data.
                let record = rel == VERIFIED_FILE || rel == format!("{VERIFIED_FILE}.tmp");
                if rel != MANIFEST_FILE && !record {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    found
}
