//! The `syn backup` and `syn restore` commands: arguments, signals, exit codes.

use super::copy::{BackupOptions, REBUILD_ENV, backup, rebuild_from_env};
use super::limit::{LIMIT_RATE_ENV, limit_rate_from_env, parse_rate};
use super::manifest::HashKind;
use super::prune::{KeepPolicy, list, prune};
use super::report::{Output, Reporter};
use super::restore::{RestoreOptions, restore};
use super::verify::verify_and_report;
use super::{Exit, Failure};
use crate::cell::api::{BACKUP_HOLD_DEFAULT, BACKUP_HOLD_MAX};
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use nix::sys::signal::{SigSet, Signal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const EXIT_CODES: &str = "Exit codes: 0 ok; 1 failed (verify: the backup differs from its \
    manifest); 2 bad arguments; 3 written, but some source files were unreadable (the backup is \
    incomplete); 10 no such source or backup; 11 locked (another backup or restore of the \
    directory runs, or a service runs where a restore would go); 12 the destination exists; \
    13 not enough space; 14 longer than --max-duration; 130 interrupted.";

fn json_arg() -> Arg {
    Arg::new("json")
        .long("json")
        .action(ArgAction::SetTrue)
        .help("print JSON lines (progress, notice, summary, error, ...) on stdout")
}

fn dir_arg(name: &'static str, value_name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .value_name(value_name)
        .required(true)
        .value_parser(value_parser!(PathBuf))
        .help(help)
}

fn keep_arg(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .value_name("N")
        .value_parser(value_parser!(usize))
        .default_value("0")
        .help(help)
}

/// `syn backup`: back up, verify, list and prune.
pub fn backup_command() -> Command {
    Command::new("backup")
        .about("Back up a service directory: one consistent, compacted, verified copy")
        .long_about(format!(
            "Copy the service directory SRCDIR to DSTDIR: every LMDB environment as a compacted \
             (defragmented) copy, every other file as it is; tmp/, backups/, sockets and lock \
             files are left out. On a running syn service the backup asks the service (through \
             SRCDIR/sock) to hold writes for the instant it takes every environment's snapshot, \
             so all of them are captured at one moment; a stopped directory (also a Python \
             Synapse 2.x one) is copied directly. The copy is written to DSTDIR.partial, fsynced, \
             described by DSTDIR/syn-backup.json and renamed to DSTDIR last.\n\n{EXIT_CODES}"
        ))
        .args_conflicts_with_subcommands(true)
        .subcommand_negates_reqs(true)
        .arg(dir_arg(
            "srcdir",
            "SRCDIR",
            "the service directory to back up",
        ))
        .arg(dir_arg(
            "dstdir",
            "DSTDIR",
            "where the backup goes (must not exist)",
        ))
        .arg(
            Arg::new("max-duration")
                .long("max-duration")
                .value_name("TIME")
                .value_parser(parse_duration)
                .help("stop (keeping nothing) if the backup takes longer: 90s, 30m, 2h"),
        )
        .arg(
            Arg::new("hold-timeout")
                .long("hold-timeout")
                .value_name("SECONDS")
                .value_parser(parse_hold_timeout)
                .help(format!(
                    "the longest a running service may hold writes for the snapshot point \
                     (default {}, at most {})",
                    BACKUP_HOLD_DEFAULT.as_secs(),
                    BACKUP_HOLD_MAX.as_secs()
                )),
        )
        .arg(
            Arg::new("parallel")
                .long("parallel")
                .value_name("N")
                .value_parser(value_parser!(usize))
                .help("files and environments copied at once (default: the number of CPUs)"),
        )
        .arg(
            Arg::new("limit-rate")
                .long("limit-rate")
                .value_name("RATE")
                .value_parser(parse_rate)
                .help(format!(
                    "copy at most RATE bytes a second, all copies together (50M, 1.5G, 800K; \
                     powers of 1024), so that a live backup leaves the disk to the service; \
                     default: ${LIMIT_RATE_ENV}, else no limit"
                )),
        )
        .arg(
            Arg::new("digest")
                .long("digest")
                .value_name("HASH")
                .value_parser(["blake3", "sha256"])
                .default_value("blake3")
                .help(
                    "how the manifest digests each file: blake3 (about a third of SHA-256's \
                     CPU time) or sha256 (for tools that check backups with sha256sum); \
                     verify and restore read either",
                ),
        )
        .arg(
            Arg::new("rebuild")
                .long("rebuild")
                .action(ArgAction::SetTrue)
                .help(format!(
                    "write every environment's records again in key order instead of LMDB's \
                     compacting copy: every page comes out full, so the backup is smaller \
                     (by a quarter to two thirds after many deletions or random inserts), at \
                     the cost of more CPU time (about 4x the time for small records; see \
                     docs/backups.md); default: ${REBUILD_ENV} (1 or 0), else off"
                )),
        )
        .arg(
            Arg::new("verify")
                .long("verify")
                .action(ArgAction::SetTrue)
                .help("verify the backup after writing it"),
        )
        .arg(json_arg())
        .subcommand(
            Command::new("verify")
                .about(
                    "Re-hash every file and walk every database of a backup against its manifest",
                )
                .long_about(format!(
                    "Re-hash every file of the backup against its manifest, open every \
                     environment read-only, walk every database and compare entry counts. \
                     Each difference is named; the outcome is recorded beside the manifest \
                     (see `syn backup list`).\n\n{EXIT_CODES}"
                ))
                .arg(dir_arg("dir", "DIR", "the backup"))
                .arg(json_arg()),
        )
        .subcommand(
            Command::new("list")
                .about("List the backups under ROOT with their states")
                .long_about(
                    "List the backups directly under ROOT, oldest first, with their state: \
                     verified (verified since it was written), complete (not verified yet), \
                     damaged (its last verification failed), incomplete (some source files \
                     were unreadable), partial (left by a backup that did not finish) or \
                     running (being written).",
                )
                .arg(dir_arg("root", "ROOT", "the directory holding the backups"))
                .arg(json_arg()),
        )
        .subcommand(
            Command::new("prune")
                .about("Delete the backups under ROOT that a retention policy does not keep")
                .long_about(
                    "Keep the backups the policy names and delete the rest. Only complete, \
                     verified backups count toward what is kept; one that is not verified is \
                     deleted only if it is older than the newest kept backup, and a partial \
                     one only if no backup is writing it. Days, weeks and months are UTC.",
                )
                .arg(dir_arg("root", "ROOT", "the directory holding the backups"))
                .arg(keep_arg("keep-last", "keep the newest N"))
                .arg(keep_arg(
                    "keep-daily",
                    "keep the newest of each of the last N days",
                ))
                .arg(keep_arg(
                    "keep-weekly",
                    "keep the newest of each of the last N weeks",
                ))
                .arg(keep_arg(
                    "keep-monthly",
                    "keep the newest of each of the last N months",
                ))
                .arg(
                    Arg::new("dry-run")
                        .long("dry-run")
                        .action(ArgAction::SetTrue)
                        .help("only say what would be deleted"),
                )
                .arg(json_arg()),
        )
}

/// `syn restore`.
pub fn restore_command() -> Command {
    Command::new("restore")
        .about("Restore a backup into a service directory (the old one is moved aside)")
        .long_about(format!(
            "Verify BACKUPDIR, refuse while a service runs on SVCDIR, move SVCDIR aside to \
             SVCDIR.pre-restore-<UTC time> (or --old PATH), and put a copy of the backup in \
             its place. The backup itself is not changed. Restoring a cold backup of a stopped \
             service in place defragments it.\n\n{EXIT_CODES}"
        ))
        .arg(dir_arg("backupdir", "BACKUPDIR", "the backup to restore"))
        .arg(dir_arg(
            "svcdir",
            "SVCDIR",
            "the service directory to replace",
        ))
        .arg(
            Arg::new("old")
                .long("old")
                .value_name("PATH")
                .value_parser(value_parser!(PathBuf))
                .help("where the current service directory goes"),
        )
        .arg(json_arg())
}

/// Seconds, or a number with `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text.trim()[..i], c),
        _ => (text.trim(), 's'),
    };
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        _ => return Err(format!("unknown unit {unit:?}: use s, m or h")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 90s, 30m, 2h)"))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err("must be more than 0".into());
    }
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("too long: {text:?}"))
}

fn parse_hold_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > BACKUP_HOLD_MAX {
        return Err(format!("at most {} seconds", BACKUP_HOLD_MAX.as_secs()));
    }
    Ok(d)
}

/// Block SIGINT, SIGTERM and SIGHUP in every thread (call before any thread starts) and let
/// one thread turn them into a flag. A second signal ends the process at once (exit 130); a
/// `.partial` left then is removed by the next run.
pub fn watch_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    if set.thread_block().is_err() {
        return flag;
    }
    let seen = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(_signal) = set.wait() {
                if seen.swap(true, Ordering::SeqCst) {
                    std::process::exit(Exit::Interrupted.code());
                }
            }
        });
    if spawned.is_err() {
        let _ = SigSet::empty().thread_set_mask();
    }
    flag
}

fn finish<T>(reporter: &mut Reporter, result: Result<T, Failure>, ok: impl Fn(&T) -> Exit) -> i32 {
    match result {
        Ok(value) => ok(&value).code(),
        Err(failure) => {
            reporter.error(&failure);
            failure.exit.code()
        }
    }
}

fn dir(m: &ArgMatches, name: &str) -> PathBuf {
    m.get_one::<PathBuf>(name).cloned().unwrap_or_default()
}

/// `syn backup ...`: returns the exit code.
pub fn run_backup(m: &ArgMatches) -> i32 {
    match m.subcommand() {
        Some(("verify", sub)) => {
            let interrupted = watch_signals();
            let mut reporter = Reporter::new(Output::detect(sub.get_flag("json")), "backup verify");
            let result = verify_and_report(&dir(sub, "dir"), &mut reporter, &interrupted);
            finish(&mut reporter, result, |_| Exit::Ok)
        }
        Some(("list", sub)) => {
            let mut reporter = Reporter::new(Output::detect(sub.get_flag("json")), "backup list");
            let result = list(&dir(sub, "root"), &mut reporter);
            finish(&mut reporter, result, |_| Exit::Ok)
        }
        Some(("prune", sub)) => {
            let mut reporter = Reporter::new(Output::detect(sub.get_flag("json")), "backup prune");
            let keep = |name: &str| sub.get_one::<usize>(name).copied().unwrap_or(0);
            let policy = KeepPolicy {
                last: keep("keep-last"),
                daily: keep("keep-daily"),
                weekly: keep("keep-weekly"),
                monthly: keep("keep-monthly"),
            };
            let result = prune(
                &dir(sub, "root"),
                &policy,
                sub.get_flag("dry-run"),
                &mut reporter,
            );
            finish(&mut reporter, result, |_| Exit::Ok)
        }
        _ => {
            let interrupted = watch_signals();
            let mut reporter = Reporter::new(Output::detect(m.get_flag("json")), "backup");
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            let limit_rate = match m.get_one::<u64>("limit-rate") {
                Some(rate) => Some(*rate),
                None => match limit_rate_from_env() {
                    Ok(rate) => rate,
                    Err(e) => {
                        reporter.error(&Failure::new(Exit::Usage, e));
                        return Exit::Usage.code();
                    }
                },
            };
            let rebuild = match rebuild_from_env() {
                Ok(from_env) => m.get_flag("rebuild") || from_env,
                Err(e) => {
                    reporter.error(&Failure::new(Exit::Usage, e));
                    return Exit::Usage.code();
                }
            };
            let opts = BackupOptions {
                src: dir(m, "srcdir"),
                dst: dir(m, "dstdir"),
                max_duration: m.get_one::<Duration>("max-duration").copied(),
                hold_timeout: m
                    .get_one::<Duration>("hold-timeout")
                    .copied()
                    .unwrap_or(BACKUP_HOLD_DEFAULT),
                parallel: m.get_one::<usize>("parallel").copied().unwrap_or(cpus),
                verify: m.get_flag("verify"),
                limit_rate,
                digest: match m.get_one::<String>("digest").map(String::as_str) {
                    Some("sha256") => HashKind::Sha256,
                    _ => HashKind::Blake3,
                },
                rebuild,
            };
            let result = backup(&opts, &mut reporter, &interrupted);
            finish(&mut reporter, result, |outcome| outcome.exit)
        }
    }
}

/// `syn restore BACKUPDIR SVCDIR`: returns the exit code.
pub fn run_restore(m: &ArgMatches) -> i32 {
    let interrupted = watch_signals();
    let mut reporter = Reporter::new(Output::detect(m.get_flag("json")), "restore");
    let opts = RestoreOptions {
        backup: dir(m, "backupdir"),
        target: dir(m, "svcdir"),
        old: m.get_one::<PathBuf>("old").cloned(),
    };
    let result = restore(&opts, &mut reporter, &interrupted);
    finish(&mut reporter, result, |_| Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e300h").is_err());
        assert!(parse_duration("inf").is_err());
        assert!(parse_hold_timeout("61").is_err());
    }

    #[test]
    fn the_command_tree_parses() {
        let m = backup_command()
            .try_get_matches_from(["backup", "a", "b", "--max-duration", "30m", "--json"])
            .unwrap();
        assert_eq!(m.get_one::<PathBuf>("srcdir"), Some(&PathBuf::from("a")));
        assert!(m.get_flag("json"));
        let m = backup_command()
            .try_get_matches_from(["backup", "prune", "r", "--keep-daily", "7"])
            .unwrap();
        let (name, sub) = m.subcommand().unwrap();
        assert_eq!(name, "prune");
        assert_eq!(sub.get_one::<usize>("keep-daily"), Some(&7));
        assert!(
            backup_command()
                .try_get_matches_from(["backup", "a"])
                .is_err()
        );
        backup_command().debug_assert();
        restore_command().debug_assert();
    }
}
