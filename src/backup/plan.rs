//! What a backup of a directory copies: its environments, files, links and directories.

use super::Failure;
use super::manifest::{SymlinkEntry, Unreadable};
use crate::storage::find_environments;
use std::fs;
use std::path::{Path, PathBuf};

/// Directories left out at any depth (scratch space).
const SKIP_ANYWHERE: &str = "tmp";
/// Directory left out at the top (where Synapse keeps backups inside a service directory).
const SKIP_AT_TOP: &str = "backups";
/// Files of an environment that are not copied as files: the data (copied compacted) and the
/// lock file (never copied).
const ENV_DATA: &str = "data.mdb";
const ENV_LOCK: &str = "lock.mdb";

/// The source directory's contents, as a backup copies them.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Directories, relative, parents first.
    pub dirs: Vec<String>,
    /// LMDB environments, relative.
    pub envs: Vec<String>,
    /// Regular files with their sizes when listed, sorted.
    pub files: Vec<(String, u64)>,
    /// Symbolic links.
    pub symlinks: Vec<SymlinkEntry>,
    /// What could not be listed.
    pub unreadable: Vec<Unreadable>,
}

/// Whether `rel` (relative to the source) lies in a part of it that backups leave out.
pub(super) fn is_skipped(rel: &Path) -> bool {
    let mut parts = rel.components().map(|c| c.as_os_str());
    let first = parts.next();
    first == Some(SKIP_AT_TOP.as_ref())
        || first == Some(SKIP_ANYWHERE.as_ref())
        || parts.any(|p| p == SKIP_ANYWHERE)
}

fn rel_string(rel: &Path) -> Option<String> {
    rel.to_str().map(str::to_owned)
}

impl Plan {
    /// List `root` (a canonical directory).
    pub(super) fn of(root: &Path) -> Result<Plan, Failure> {
        let mut plan = Plan::default();
        for env in find_environments(root)? {
            let rel = env.strip_prefix(root).unwrap_or(&env);
            if is_skipped(rel) {
                continue;
            }
            match rel_string(rel) {
                Some(r) => plan.envs.push(r),
                None => plan.not_utf8(rel),
            }
        }
        let mut pending = vec![PathBuf::new()];
        while let Some(rel_dir) = pending.pop() {
            let dir = root.join(&rel_dir);
            let is_env = plan.envs.iter().any(|e| Path::new(e) == rel_dir);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    plan.unreadable(&rel_dir, &e);
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        plan.unreadable(&rel_dir, &e);
                        continue;
                    }
                };
                let rel = rel_dir.join(entry.file_name());
                if is_skipped(&rel) {
                    continue;
                }
                let Some(rel_str) = rel_string(&rel) else {
                    plan.not_utf8(&rel);
                    continue;
                };
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        plan.unreadable(&rel, &e);
                        continue;
                    }
                };
                let kind = meta.file_type();
                if kind.is_dir() {
                    plan.dirs.push(rel_str);
                    pending.push(rel);
                } else if kind.is_symlink() {
                    match fs::read_link(entry.path()) {
                        Ok(target) => plan.symlinks.push(SymlinkEntry {
                            path: rel_str,
                            target: target.to_string_lossy().into_owned(),
                        }),
                        Err(e) => plan.unreadable(&rel, &e),
                    }
                } else if kind.is_file() {
                    let name = entry.file_name();
                    if is_env && (name == ENV_DATA || name == ENV_LOCK) {
                        continue;
                    }
                    plan.files.push((rel_str, meta.len()));
                }
                // Sockets, fifos and devices are not part of a service's state.
            }
        }
        plan.dirs.sort();
        plan.files.sort();
        plan.symlinks.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(plan)
    }

    fn unreadable(&mut self, rel: &Path, err: &std::io::Error) {
        self.unreadable.push(Unreadable {
            path: rel.to_string_lossy().into_owned(),
            error: err.to_string(),
        });
    }

    fn not_utf8(&mut self, rel: &Path) {
        self.unreadable.push(Unreadable {
            path: rel.to_string_lossy().into_owned(),
            error: "the name is not UTF-8".into(),
        });
    }

    /// Bytes in the source's files now: the listed files and the environments' data files.
    pub(super) fn source_bytes(&self, root: &Path) -> u64 {
        let size = |rel: &Path| fs::metadata(root.join(rel)).map_or(0, |m| m.len());
        let files: u64 = self.files.iter().map(|(f, _)| size(Path::new(f))).sum();
        let envs: u64 = self
            .envs
            .iter()
            .map(|e| size(&Path::new(e).join(ENV_DATA)))
            .sum();
        files + envs
    }
}

/// The service type a stopped directory's layout shows (Synapse's layout, which syn keeps).
pub(super) fn layout_kind(root: &Path) -> &'static str {
    let has = |rel: &str| root.join(rel).exists();
    if has("layers") {
        "cortex"
    } else if has("tanks") {
        "cryotank"
    } else if has("axon.lmdb") || has("blob.lmdb") || has("slabs/axon.lmdb") {
        "axon"
    } else {
        "cell"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Slab, SlabOptions};

    #[test]
    fn lists_what_a_backup_copies() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        Slab::open(root.join("slabs/cell.lmdb"), SlabOptions::default()).unwrap();
        Slab::open(root.join("tmp/scratch.lmdb"), SlabOptions::default()).unwrap();
        fs::create_dir_all(root.join("backups/old")).unwrap();
        fs::write(root.join("backups/old/x"), b"x").unwrap();
        fs::create_dir_all(root.join("layers/a/tmp")).unwrap();
        fs::write(root.join("layers/a/tmp/junk"), b"j").unwrap();
        fs::write(root.join("cell.guid"), b"0123").unwrap();
        fs::write(root.join("slabs/cell.opts.yaml"), b"{}\n").unwrap();
        std::os::unix::fs::symlink("cell.guid", root.join("link")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();

        let plan = Plan::of(&root).unwrap();
        assert_eq!(plan.envs, vec!["slabs/cell.lmdb"]);
        assert_eq!(
            plan.dirs,
            vec!["layers", "layers/a", "slabs", "slabs/cell.lmdb"]
        );
        assert_eq!(
            plan.files,
            vec![
                ("cell.guid".to_owned(), 4),
                ("slabs/cell.opts.yaml".to_owned(), 3)
            ]
        );
        assert_eq!(plan.symlinks.len(), 1);
        assert!(plan.unreadable.is_empty());
        assert!(plan.source_bytes(&root) > 4096);
        assert_eq!(layout_kind(&root), "cortex");
        assert!(is_skipped(Path::new("backups/x")) && !is_skipped(Path::new("a/backups")));
    }
}
