//! Runbooks: operations procedures written as rhai scripts and run by `syn runbook FILE.rhai`.
//!
//! A runbook sees a sandboxed engine ([`sandbox`]) and an operations API ([`api`]): service
//! status, stop, start, restart and wait-until-ready (through systemctl, or a direct process
//! backend where there is no systemd: [`service`]), backup, verify, restore, list and prune
//! backups, certificate expiry and renewal, log and fail. Parameters come from
//! `--set KEY=VALUE`. The service a runbook is about is `service()`: kind `--set service=`
//! (default `cortex`), `--set instance=NAME`, its directory `--set dir=` (default
//! `/var/lib/syn/<service>/<instance>`) and its backups `--set backups=` (default
//! `/var/backups/syn/<service>/<instance>`).
//!
//! With `--dry-run` every step that would change something is printed (and audited) instead
//! of taken; steps that only read (status, node counts, listing backups) still run, except on
//! a service whose state a simulated step changed.
//!
//! Every run appends an audit trail ([`audit`]: start, each step, end) to a file beside the
//! service directory, `<dir>.<runbook>.audit.jsonl` (or `--audit FILE`), and says the same on
//! stderr (the journal under systemd).

pub mod api;
pub mod audit;
pub mod sandbox;
pub mod service;

use crate::clock::now_ms;
use audit::{Audit, Level};
use serde_json::json;
use service::{Backend, Service};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where service directories live under systemd: `<root>/<service>/<instance>`.
pub const STATE_ROOT: &str = "/var/lib/syn";
/// Where backups live: `<root>/<service>/<instance>/`.
pub const BACKUP_ROOT: &str = "/var/backups/syn";
/// The default limit on one run's wall-clock time.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// How to run a runbook.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `.rhai` file.
    pub file: PathBuf,
    /// Print the steps that would change something instead of taking them.
    pub dry_run: bool,
    /// `--set KEY=VALUE` parameters.
    pub params: BTreeMap<String, String>,
    /// How services are started and stopped.
    pub backend: Backend,
    /// The audit file (default: beside the service directory).
    pub audit: Option<PathBuf>,
    /// The run stops when it takes longer.
    pub time_limit: Duration,
}

/// Why a run did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError {
    /// The exit code: 1 the runbook failed, 2 it could not start (bad file or parameters).
    pub exit: i32,
    /// One line for the operator.
    pub message: String,
    /// Whether the run already said it (on stderr, with the journal's error level).
    pub said: bool,
}

impl RunError {
    fn usage(message: impl Into<String>) -> RunError {
        RunError {
            exit: 2,
            message: message.into(),
            said: false,
        }
    }
}

/// What one run made and may clean up or remove.
#[derive(Default)]
struct Made {
    /// Scratch directories (removed at the end of the run).
    scratch: Vec<PathBuf>,
    /// Directories a restore or put-back moved aside, which `remove_dir` may delete.
    moved_aside: Vec<PathBuf>,
    /// Scratch services (stopped at the end of the run).
    scratch_services: Vec<Service>,
}

/// The state of one run that every API function shares.
pub struct Runner {
    file: PathBuf,
    dry_run: bool,
    params: BTreeMap<String, String>,
    backend: Backend,
    audit: Audit,
    interrupted: Arc<AtomicBool>,
    target: Option<Service>,
    made: Mutex<Made>,
}

impl Runner {
    fn made(&self) -> MutexGuard<'_, Made> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_interrupted(&self) -> Result<(), String> {
        if self.interrupted.load(Ordering::SeqCst) {
            Err("interrupted".into())
        } else {
            Ok(())
        }
    }

    /// Say and audit one step that took place.
    fn record_step(&self, op: &str, target: &str, result: &Result<String, String>, ms: u128) {
        match result {
            Ok(detail) => {
                let line = if detail.is_empty() {
                    format!("{op} {target}: ok")
                } else {
                    format!("{op} {target}: {detail}")
                };
                self.audit.say(Level::Info, &line);
                self.audit.record(
                    "step",
                    json!({"op": op, "target": target, "outcome": "ok", "detail": detail, "ms": ms}),
                );
            }
            Err(e) => {
                self.audit
                    .say(Level::Error, &format!("{op} {target} failed: {e}"));
                self.audit.record(
                    "step",
                    json!({"op": op, "target": target, "outcome": "failed", "error": e, "ms": ms}),
                );
            }
        }
    }

    /// Say and audit a step a dry run only describes.
    fn record_dry(&self, op: &str, target: &str, detail: &str) {
        let line = if detail.is_empty() {
            format!("dry run: would {op} {target}")
        } else {
            format!("dry run: would {op} {target}: {detail}")
        };
        self.audit.say(Level::Info, &line);
        self.audit.record(
            "step",
            json!({"op": op, "target": target, "outcome": "dry-run", "detail": detail}),
        );
    }

    /// A log line from the runbook itself.
    fn log(&self, level: Level, message: &str) {
        self.audit.say(level, message);
        let level = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.audit
            .record("log", json!({"level": level, "message": message}));
    }

    /// Stop scratch services and remove scratch directories.
    fn clean_up(&self) {
        let (services, dirs) = {
            let mut made = self.made();
            (
                std::mem::take(&mut made.scratch_services),
                std::mem::take(&mut made.scratch),
            )
        };
        for svc in services {
            if svc.simulated().is_none() && svc.status().is_ok_and(|s| s == "running") {
                let started = Instant::now();
                let result = svc.stop();
                self.record_step(
                    "stop",
                    &svc.describe(),
                    &result,
                    started.elapsed().as_millis(),
                );
            }
        }
        for dir in dirs {
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                self.log(
                    Level::Warn,
                    &format!("scratch {} not removed: {e}", dir.display()),
                );
            }
        }
    }
}

/// `KEY=VALUE` into its two halves.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v))
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!(
            "--set needs KEY=VALUE (KEY of letters, digits, _ and -), got {text:?}"
        )),
    }
}

/// The service the parameters name, if they name one (`instance` or `dir`).
fn target_service(
    params: &BTreeMap<String, String>,
    backend: Backend,
) -> Result<Option<Service>, RunError> {
    let kind = params.get("service").map_or("cortex", String::as_str);
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(RunError::usage(format!(
            "--set service={kind}: a service kind such as cortex or cell"
        )));
    }
    let dir = params.get("dir").map(PathBuf::from);
    let instance = match (params.get("instance"), &dir) {
        (Some(i), _) => i.clone(),
        (None, Some(d)) => d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| RunError::usage(format!("--set dir={}: no name", d.display())))?,
        (None, None) => return Ok(None),
    };
    if instance.is_empty() || instance.contains('/') || instance.starts_with('.') {
        return Err(RunError::usage(format!(
            "--set instance={instance}: a plain name such as main"
        )));
    }
    let dir = dir.unwrap_or_else(|| Path::new(STATE_ROOT).join(kind).join(&instance));
    let backups = params.get("backups").map_or_else(
        || Path::new(BACKUP_ROOT).join(kind).join(&instance),
        PathBuf::from,
    );
    Ok(Some(Service::new(
        kind,
        &instance,
        dir,
        backups,
        backend,
        Vec::new(),
    )))
}

/// The default audit file: `<dir>.<runbook stem>.audit.jsonl`, beside the service directory.
fn default_audit_path(target: &Service, file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runbook".into());
    let mut name = target.dir().file_name().unwrap_or_default().to_owned();
    name.push(format!(".{stem}.audit.jsonl"));
    target.dir().with_file_name(name)
}

/// Run a runbook. `interrupted` is set by a signal handler; the run then stops at its next
/// step.
pub fn run(opts: &RunOptions, interrupted: Arc<AtomicBool>) -> Result<(), RunError> {
    let source = std::fs::read_to_string(&opts.file)
        .map_err(|e| RunError::usage(format!("{}: {e}", opts.file.display())))?;
    let deadline = Instant::now() + opts.time_limit;
    let mut engine = sandbox::engine(deadline, interrupted.clone());
    let ast = engine
        .compile(&source)
        .map_err(|e| RunError::usage(sandbox::parse_error(&opts.file, &e)))?;

    let target = target_service(&opts.params, opts.backend)?;
    let audit_path = match (&opts.audit, &target) {
        (Some(p), _) => p.clone(),
        (None, Some(t)) => default_audit_path(t, &opts.file),
        (None, None) => {
            return Err(RunError::usage(
                "no service named: give --set instance=NAME (or --set dir=DIR), or --audit FILE",
            ));
        }
    };
    let run_id = crate::guid::guid();
    let audit = Audit::open(&audit_path, &run_id, &opts.file.display().to_string())
        .map_err(|e| RunError::usage(format!("audit file {}: {e}", audit_path.display())))?;
    let runner = Arc::new(Runner {
        file: opts.file.clone(),
        dry_run: opts.dry_run,
        params: opts.params.clone(),
        backend: opts.backend,
        audit,
        interrupted,
        target,
        made: Mutex::new(Made::default()),
    });
    let started = now_ms();
    runner.audit.say(
        Level::Info,
        &format!(
            "{} {}{} (audit: {})",
            if opts.dry_run {
                "dry run of"
            } else {
                "running"
            },
            opts.file.display(),
            runner
                .target
                .as_ref()
                .map(|t| format!(" for {}", t.describe()))
                .unwrap_or_default(),
            runner.audit.path().display()
        ),
    );
    runner.audit.record(
        "start",
        json!({
            "params": runner.params,
            "dry_run": runner.dry_run,
            "backend": runner.backend.name(),
            "sha256": hex::encode(crate::guid::sha256(source.as_bytes())),
            "user": nix::unistd::geteuid().as_raw(),
        }),
    );

    api::register(&mut engine, runner.clone());
    let result = engine
        .run_ast(&ast)
        .map_err(|e| sandbox::eval_error(&runner.file, &e, opts.time_limit));
    runner.clean_up();
    let took_ms = now_ms() - started;
    match &result {
        Ok(()) => {
            runner.audit.say(
                Level::Info,
                &format!(
                    "{} {} in {:.1} s",
                    opts.file.display(),
                    if opts.dry_run {
                        "dry run done"
                    } else {
                        "succeeded"
                    },
                    took_ms as f64 / 1000.0
                ),
            );
            runner
                .audit
                .record("end", json!({"outcome": "ok", "ms": took_ms}));
        }
        Err(message) => {
            runner
                .audit
                .say(Level::Error, &format!("runbook failed: {message}"));
            runner.audit.record(
                "end",
                json!({"outcome": "failed", "error": message, "ms": took_ms}),
            );
        }
    }
    result.map_err(|message| RunError {
        exit: 1,
        message,
        said: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parameters_parse() {
        assert_eq!(
            parse_param("keep_daily=7"),
            Ok(("keep_daily".into(), "7".into()))
        );
        assert_eq!(parse_param("probe=a=b"), Ok(("probe".into(), "a=b".into())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
        assert!(parse_param("a b=x").is_err());
    }

    #[test]
    fn the_target_and_its_paths_follow_the_systemd_layout() {
        let svc = target_service(&params(&[("instance", "main")]), Backend::Systemd)
            .unwrap()
            .unwrap();
        assert_eq!(svc.kind(), "cortex");
        assert_eq!(svc.dir(), Path::new("/var/lib/syn/cortex/main"));
        assert_eq!(svc.backups(), Path::new("/var/backups/syn/cortex/main"));
        assert_eq!(
            default_audit_path(&svc, Path::new("/usr/share/syn/runbooks/x.rhai")),
            Path::new("/var/lib/syn/cortex/main.x.audit.jsonl")
        );
        let svc = target_service(
            &params(&[("service", "cell"), ("dir", "/srv/cells/blue")]),
            Backend::Direct,
        )
        .unwrap()
        .unwrap();
        assert_eq!(svc.instance(), "blue");
        assert_eq!(svc.backups(), Path::new("/var/backups/syn/cell/blue"));
        assert!(
            target_service(&params(&[]), Backend::Direct)
                .unwrap()
                .is_none()
        );
        assert!(target_service(&params(&[("instance", "../x")]), Backend::Direct).is_err());
        assert!(
            target_service(
                &params(&[("service", "Cortex"), ("instance", "a")]),
                Backend::Direct
            )
            .is_err()
        );
    }
}
