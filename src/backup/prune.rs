//! `syn backup list ROOT` and `syn backup prune ROOT --keep-...`: the backups kept under one
//! directory, their states, and a retention policy in the manner of restic's `forget`.
//!
//! Only complete, verified backups count toward what a policy keeps. A backup that is not
//! verified (never, or it failed) is deleted only when it is older than the newest backup the
//! policy keeps, so a fresh backup that has not been verified yet is never lost to a prune. A
//! `.partial` that no running backup holds is a leftover and is deleted.

use super::fsutil::{DirLock, remove_as_partial};
use super::manifest::{Manifest, State, state_of};
use super::report::Reporter;
use super::{Exit, Failure, MANIFEST_FILE, PARTIAL_SUFFIX, human_bytes};
use crate::clock::{utc, utc_string};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What a directory under the backup root is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A backup with its manifest.
    Backup {
        /// Its state.
        state: State,
        /// The snapshot moment, epoch milliseconds.
        snapshot_ms: i64,
        /// The total size of its files.
        bytes: u64,
        /// Service type and iden.
        service: String,
    },
    /// A backup being written (`running`) or left by one that did not finish.
    Partial {
        /// Whether a backup holds it now.
        running: bool,
    },
}

/// One directory under the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// What it is.
    pub entry: Entry,
}

impl Listed {
    fn state_word(&self) -> &'static str {
        match &self.entry {
            Entry::Backup { state, .. } => state.as_str(),
            Entry::Partial { running: true } => "running",
            Entry::Partial { running: false } => "partial",
        }
    }
}

/// The backups and partial backups directly under `root`, oldest first.
pub fn catalog(root: &Path) -> Result<Vec<Listed>, Failure> {
    let entries = fs::read_dir(root).map_err(|e| {
        let exit = if e.kind() == std::io::ErrorKind::NotFound {
            Exit::NoSuchSource
        } else {
            Exit::Failed
        };
        Failure::new(exit, format!("{}: {e}", root.display()))
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(PARTIAL_SUFFIX) {
            let running = matches!(DirLock::try_take(&path), Ok(None));
            found.push(Listed {
                name,
                path,
                entry: Entry::Partial { running },
            });
        } else if path.join(MANIFEST_FILE).is_file() {
            let entry = match Manifest::read(&path) {
                Ok(m) => Entry::Backup {
                    state: state_of(&path, &m),
                    snapshot_ms: m.snapshot_ms,
                    bytes: m.total_bytes(),
                    service: format!(
                        "{} {}",
                        m.service.kind,
                        m.service.iden.as_deref().unwrap_or("-")
                    ),
                },
                // An unreadable manifest: the backup cannot be trusted.
                Err(_) => Entry::Backup {
                    state: State::Damaged,
                    snapshot_ms: 0,
                    bytes: 0,
                    service: "?".into(),
                },
            };
            found.push(Listed { name, path, entry });
        }
    }
    found.sort_by_key(|l| match &l.entry {
        Entry::Backup { snapshot_ms, .. } => (0, *snapshot_ms, l.name.clone()),
        Entry::Partial { .. } => (1, 0, l.name.clone()),
    });
    Ok(found)
}

/// `syn backup list ROOT`: print every backup with its state. Returns how many there are.
pub fn list(root: &Path, reporter: &mut Reporter) -> Result<usize, Failure> {
    let found = catalog(root)?;
    if !reporter.is_json() {
        println!(
            "{:<32} {:<10} {:<24} {:>10}  SERVICE",
            "NAME", "STATE", "TAKEN (UTC)", "SIZE"
        );
    }
    for l in &found {
        let (taken, size, service) = match &l.entry {
            Entry::Backup {
                snapshot_ms,
                bytes,
                service,
                ..
            } => (
                utc_string(*snapshot_ms),
                human_bytes(*bytes),
                service.clone(),
            ),
            Entry::Partial { .. } => ("-".into(), "-".into(), "-".into()),
        };
        let line = format!(
            "{:<32} {:<10} {:<24} {:>10}  {service}",
            l.name,
            l.state_word(),
            taken,
            size
        );
        reporter.record(
            "backup",
            &line,
            json!({
                "name": l.name,
                "path": l.path,
                "state": l.state_word(),
                "taken": taken,
                "bytes": match &l.entry { Entry::Backup { bytes, .. } => Some(*bytes), _ => None },
                "service": service,
            }),
        );
    }
    Ok(found.len())
}

/// How many verified backups to keep, by recency and by calendar period (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest N.
    pub last: usize,
    /// The newest of each of the last N days that have one.
    pub daily: usize,
    /// The newest of each of the last N ISO weeks that have one.
    pub weekly: usize,
    /// The newest of each of the last N months that have one.
    pub monthly: usize,
}

impl KeepPolicy {
    /// Whether the policy keeps anything at all.
    pub fn is_empty(&self) -> bool {
        self.last + self.daily + self.weekly + self.monthly == 0
    }
}

/// What prune does with one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Kept, for these reasons (`last`, `daily 2025-01-31`, ...).
    Keep(Vec<String>),
    /// Left alone, for this reason.
    Leave(String),
    /// Deleted.
    Delete,
}

/// Decide for each verified backup (name, snapshot time) which the policy keeps; returns the
/// reasons for each kept name.
fn keep_reasons(verified: &[(String, i64)], policy: &KeepPolicy) -> BTreeMap<String, Vec<String>> {
    let mut newest_first: Vec<&(String, i64)> = verified.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, _) in newest_first.iter().take(policy.last) {
        reasons.entry(name.clone()).or_default().push("last".into());
    }
    type Bucket = fn(i64) -> String;
    let periods: [(&str, usize, Bucket); 3] = [
        ("daily", policy.daily, |ms| {
            let t = utc(ms);
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        }),
        ("weekly", policy.weekly, |ms| {
            let (year, week, _) = utc(ms).to_iso_week_date();
            format!("{year:04}-W{week:02}")
        }),
        ("monthly", policy.monthly, |ms| {
            let t = utc(ms);
            format!("{:04}-{:02}", t.year(), u8::from(t.month()))
        }),
    ];
    for (label, count, bucket) in periods {
        let mut seen = BTreeSet::new();
        for (name, ms) in &newest_first {
            if seen.len() >= count {
                break;
            }
            let b = bucket(*ms);
            if seen.insert(b.clone()) {
                reasons
                    .entry(name.clone())
                    .or_default()
                    .push(format!("{label} {b}"));
            }
        }
    }
    reasons
}

/// The action for every listed directory under `policy`.
pub fn plan_prune(found: &[Listed], policy: &KeepPolicy) -> Vec<(Listed, Action)> {
    let verified: Vec<(String, i64)> = found
        .iter()
        .filter_map(|l| match &l.entry {
            Entry::Backup {
                state: State::Verified,
                snapshot_ms,
                ..
            } => Some((l.name.clone(), *snapshot_ms)),
            _ => None,
        })
        .collect();
    let kept = keep_reasons(&verified, policy);
    let newest_kept = verified
        .iter()
        .filter(|(n, _)| kept.contains_key(n))
        .map(|(_, ms)| *ms)
        .max();
    found
        .iter()
        .map(|l| {
            let action = match &l.entry {
                Entry::Partial { running: true } => Action::Leave("a backup is writing it".into()),
                Entry::Partial { running: false } => Action::Delete,
                Entry::Backup {
                    state: State::Verified,
                    ..
                } => match kept.get(&l.name) {
                    Some(r) => Action::Keep(r.clone()),
                    None => Action::Delete,
                },
                Entry::Backup {
                    state, snapshot_ms, ..
                } => match newest_kept {
                    Some(newest) if *snapshot_ms <= newest => Action::Delete,
                    _ => Action::Leave(format!(
                        "{}: does not count, but is newer than every kept backup",
                        state.as_str()
                    )),
                },
            };
            (l.clone(), action)
        })
        .collect()
}

/// `syn backup prune ROOT`: apply `policy`; with `dry_run`, only say what would happen.
/// Returns how many directories were (or would be) deleted.
pub fn prune(
    root: &Path,
    policy: &KeepPolicy,
    dry_run: bool,
    reporter: &mut Reporter,
) -> Result<usize, Failure> {
    if policy.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly",
        ));
    }
    let found = catalog(root)?;
    let mut deleted = 0;
    let mut kept = 0;
    for (l, action) in plan_prune(&found, policy) {
        let (word, why) = match &action {
            Action::Keep(reasons) => ("keep", reasons.join(", ")),
            Action::Leave(reason) => ("leave", reason.clone()),
            Action::Delete => (
                if dry_run { "would delete" } else { "delete" },
                String::new(),
            ),
        };
        if action == Action::Delete {
            if !dry_run {
                remove_as_partial(&l.path)
                    .map_err(|e| Failure::failed(format!("{}: {e}", l.path.display())))?;
            }
            deleted += 1;
        } else if matches!(action, Action::Keep(_)) {
            kept += 1;
        }
        let line = if why.is_empty() {
            format!("{word} {} ({})", l.name, l.state_word())
        } else {
            format!("{word} {} ({}): {why}", l.name, l.state_word())
        };
        reporter.record(
            "prune",
            &line,
            json!({
                "name": l.name,
                "state": l.state_word(),
                "action": word,
                "reason": why,
            }),
        );
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    reporter.summary(
        &format!(
            "pruned {}: kept {kept} verified backups, {verb} {deleted}",
            root.display()
        ),
        json!({ "root": root, "kept": kept, "deleted": deleted, "dry_run": dry_run }),
    );
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn backup(name: &str, state: State, ms: i64) -> Listed {
        Listed {
            name: name.into(),
            path: PathBuf::from(name),
            entry: Entry::Backup {
                state,
                snapshot_ms: ms,
                bytes: 1,
                service: "cell -".into(),
            },
        }
    }

    fn actions(found: &[Listed], policy: KeepPolicy) -> Vec<(String, &'static str)> {
        plan_prune(found, &policy)
            .into_iter()
            .map(|(l, a)| {
                let word = match a {
                    Action::Keep(_) => "keep",
                    Action::Leave(_) => "leave",
                    Action::Delete => "delete",
                };
                (l.name, word)
            })
            .collect()
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_ignores_unverified() {
        let t0 = 20_000 * DAY; // a midnight, UTC
        let found = vec![
            backup("d1-early", State::Verified, t0 + 1000),
            backup("d1-late", State::Verified, t0 + 5000),
            backup("d2", State::Complete, t0 + DAY + 10),
            backup("d3", State::Verified, t0 + 2 * DAY + 10),
            backup("d4-damaged", State::Damaged, t0 + 3 * DAY),
            backup("d5-new", State::Complete, t0 + 4 * DAY),
            Listed {
                name: "x.partial".into(),
                path: PathBuf::from("x.partial"),
                entry: Entry::Partial { running: false },
            },
            Listed {
                name: "y.partial".into(),
                path: PathBuf::from("y.partial"),
                entry: Entry::Partial { running: true },
            },
        ];
        let got = actions(
            &found,
            KeepPolicy {
                daily: 2,
                ..KeepPolicy::default()
            },
        );
        assert_eq!(
            got,
            vec![
                ("d1-early".into(), "delete"),
                ("d1-late".into(), "keep"),
                ("d2".into(), "delete"),
                ("d3".into(), "keep"),
                ("d4-damaged".into(), "leave"),
                ("d5-new".into(), "leave"),
                ("x.partial".into(), "delete"),
                ("y.partial".into(), "leave"),
            ]
        );
    }

    #[test]
    fn policies_combine_and_nothing_unverified_goes_when_nothing_is_kept() {
        let found: Vec<Listed> = (0..10)
            .map(|i| backup(&format!("b{i}"), State::Verified, i * 7 * DAY))
            .collect();
        let got = actions(
            &found,
            KeepPolicy {
                last: 2,
                weekly: 4,
                ..KeepPolicy::default()
            },
        );
        let kept: Vec<String> = got
            .iter()
            .filter(|(_, a)| *a == "keep")
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(kept, vec!["b6", "b7", "b8", "b9"]);

        let unverified = vec![backup("only", State::Complete, DAY)];
        assert_eq!(
            actions(
                &unverified,
                KeepPolicy {
                    last: 1,
                    ..KeepPolicy::default()
                }
            ),
            vec![("only".into(), "leave")]
        );
    }
}
