//! The operations API a runbook calls: every function registered into the engine.
//!
//! Each call that reads or changes something is one audited step. In a dry run the steps
//! that change something are described instead of taken and return stand-ins (the path a
//! backup would get, zero counts); see docs/runbooks.md for the reference.

use super::audit::Level;
use super::service::{Backend, Service};
use super::{Runner, STATE_ROOT};
use crate::backup::{
    self, BackupOptions, Entry, Exit, KeepPolicy, Output, Reporter, RestoreOptions,
};
use crate::certs::{CertDir, CertKind, IssueOptions, San};
use crate::clock::{now_ms, utc_stamp, utc_string};
use crate::msgpack::Value;
use crate::telepath::Proxy;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// How long `wait_ready()` and `restart()` wait when no time is given.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The most node idens `idens()` returns.
const MAX_IDENS: usize = 10_000;
/// Limit on a telepath call from a runbook.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Register the whole API, every function sharing `runner`.
pub fn register(engine: &mut Engine, runner: Arc<Runner>) {
    register_basics(engine, &runner);
    register_services(engine, &runner);
    register_backups(engine, &runner);
    register_certs(engine, &runner);
}

impl Runner {
    /// A step that only reads: always taken, said and audited.
    fn read<T>(
        &self,
        op: &str,
        target: &str,
        f: impl FnOnce() -> Result<(T, String), String>,
    ) -> RhaiResult<T> {
        self.check_interrupted()
            .map_err(|e| rhai_err(op, target, &e))?;
        let started = Instant::now();
        let result = f();
        let said = result
            .as_ref()
            .map(|(_, d)| d.clone())
            .map_err(Clone::clone);
        self.record_step(op, target, &said, started.elapsed().as_millis());
        result.map(|(v, _)| v).map_err(|e| rhai_err(op, target, &e))
    }

    /// A step that changes something: taken, or in a dry run described (`would` gives the
    /// stand-in result and what would happen).
    fn change<T>(
        &self,
        op: &str,
        target: &str,
        would: impl FnOnce() -> (T, String),
        f: impl FnOnce() -> Result<(T, String), String>,
    ) -> RhaiResult<T> {
        if self.dry_run {
            let (value, detail) = would();
            self.record_dry(op, target, &detail);
            return Ok(value);
        }
        self.read(op, target, f)
    }

    fn block_on<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a runtime: {e}"))?;
        rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await })
            .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))
    }

    /// Whether `path` is inside a scratch directory of this run.
    fn in_scratch(&self, path: &Path) -> bool {
        let path = normalize(path);
        self.made().scratch.iter().any(|s| path.starts_with(s))
    }

    /// A reporter for the backup steps: a progress bar on a terminal, else summary lines.
    fn reporter(&self) -> Reporter {
        Reporter::new(Output::detect(false), "runbook")
    }
}

fn rhai_err(op: &str, target: &str, e: &str) -> Box<EvalAltResult> {
    format!("{op} {target}: {e}").into()
}

/// An absolute path with `.` and `..` resolved as far as the path exists.
fn normalize(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            normalize(parent).join(name)
        }
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
    }
}

fn seconds(secs: i64) -> RhaiResult<Duration> {
    if secs <= 0 {
        return Err(format!("a time in seconds must be more than 0, got {secs}").into());
    }
    Ok(Duration::from_secs(secs.unsigned_abs()))
}

// ---- parameters, logging, failing, scratch space ----

fn register_basics(engine: &mut Engine, runner: &Arc<Runner>) {
    let r = runner.clone();
    engine.register_fn("param", move |name: &str| -> RhaiResult<String> {
        r.params
            .get(name)
            .cloned()
            .ok_or_else(|| format!("this runbook needs --set {name}=VALUE").into())
    });
    let r = runner.clone();
    engine.register_fn("param", move |name: &str, default: &str| -> String {
        r.params
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    });
    let r = runner.clone();
    engine.register_fn("log", move |message: &str| r.log(Level::Info, message));
    let r = runner.clone();
    engine.register_fn("warn", move |message: &str| r.log(Level::Warn, message));
    let r = runner.clone();
    engine.on_print(move |message| r.log(Level::Info, message));
    let r = runner.clone();
    engine.on_debug(move |message, _, _| r.log(Level::Info, message));
    engine.register_fn("fail", |message: &str| -> RhaiResult<()> {
        Err(message.into())
    });
    engine.register_fn("dry_run", {
        let r = runner.clone();
        move || r.dry_run
    });

    let r = runner.clone();
    engine.register_fn("scratch_dir", move || -> RhaiResult<String> {
        let base = r
            .params
            .get("scratch")
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = normalize(&base).join(format!(
            "syn-runbook-{}-{}",
            std::process::id(),
            &crate::guid::guid()[..8]
        ));
        let shown = dir.display().to_string();
        r.made().scratch.push(dir.clone());
        r.change(
            "make scratch directory",
            &shown,
            || (shown.clone(), String::new()),
            || {
                fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                Ok((shown.clone(), String::new()))
            },
        )
    });

    let r = runner.clone();
    engine.register_fn("remove_dir", move |path: &str| -> RhaiResult<()> {
        let target = normalize(Path::new(path));
        let allowed = {
            let made = r.made();
            made.scratch.iter().any(|s| target.starts_with(s)) || made.moved_aside.contains(&target)
        };
        if !allowed {
            return Err(format!(
                "remove_dir {path}: forbidden: a runbook removes only directories it made \
                 (scratch directories, directories a restore or put_back moved aside)"
            )
            .into());
        }
        r.change(
            "remove",
            path,
            || ((), String::new()),
            || match fs::remove_dir_all(&target) {
                Ok(()) => Ok(((), String::new())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(((), "was not there".into()))
                }
                Err(e) => Err(e.to_string()),
            },
        )
    });
}

// ---- services ----

fn register_services(engine: &mut Engine, runner: &Arc<Runner>) {
    engine.register_type_with_name::<Service>("Service");
    engine.register_get("kind", |s: &mut Service| s.kind().to_owned());
    engine.register_get("instance", |s: &mut Service| s.instance().to_owned());
    engine.register_get("dir", |s: &mut Service| s.dir().display().to_string());
    engine.register_get("backups", |s: &mut Service| {
        s.backups().display().to_string()
    });
    engine.register_get("backend", |s: &mut Service| s.backend().name().to_owned());
    engine.register_fn("to_string", |s: &mut Service| s.describe());

    let r = runner.clone();
    engine.register_fn("service", move || -> RhaiResult<Service> {
        r.target.clone().ok_or_else(|| {
            "no service named: run with --set instance=NAME (or --set dir=DIR)".into()
        })
    });

    let r = runner.clone();
    engine.register_fn(
        "scratch_service",
        move |kind: &str, dir: &str| -> RhaiResult<Service> {
            if !r.in_scratch(Path::new(dir)) {
                return Err(format!(
                    "scratch_service {dir}: forbidden: a scratch service runs only in a \
                     directory inside scratch_dir()"
                )
                .into());
            }
            if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(format!("scratch_service: {kind:?} is not a service kind").into());
            }
            let port = free_loopback_port().map_err(|e| format!("a free port: {e}"))?;
            let svc = Service::new(
                kind,
                "scratch",
                normalize(Path::new(dir)),
                PathBuf::new(),
                Backend::Direct,
                vec!["--telepath".into(), format!("tcp://127.0.0.1:{port}")],
            );
            r.made().scratch_services.push(svc.clone());
            Ok(svc)
        },
    );

    let r = runner.clone();
    engine.register_fn("status", move |s: &mut Service| -> RhaiResult<String> {
        r.read("status", &s.describe(), || {
            s.status().map(|st| (st.clone(), st))
        })
    });
    let r = runner.clone();
    engine.register_fn("start", move |s: &mut Service| -> RhaiResult<()> {
        r.change(
            "start",
            &s.describe(),
            || {
                s.simulate("running");
                ((), String::new())
            },
            || s.start().map(|d| ((), d)),
        )
    });
    let r = runner.clone();
    engine.register_fn("stop", move |s: &mut Service| -> RhaiResult<()> {
        r.change(
            "stop",
            &s.describe(),
            || {
                s.simulate("stopped");
                ((), String::new())
            },
            || s.stop().map(|d| ((), d)),
        )
    });
    let restart = |r: Arc<Runner>| {
        move |s: &mut Service, timeout: Duration| -> RhaiResult<()> {
            r.change(
                "restart",
                &s.describe(),
                || {
                    s.simulate("running");
                    ((), String::new())
                },
                || s.restart(timeout).map(|d| ((), d)),
            )
        }
    };
    let f = restart(runner.clone());
    engine.register_fn("restart", move |s: &mut Service| {
        f(s, DEFAULT_READY_TIMEOUT)
    });
    let f = restart(runner.clone());
    engine.register_fn("restart", move |s: &mut Service, secs: i64| {
        f(s, seconds(secs)?)
    });
    let wait = |r: Arc<Runner>| {
        move |s: &mut Service, timeout: Duration| -> RhaiResult<()> {
            if s.simulated().is_some() {
                r.record_dry("wait until ready", &s.describe(), "");
                return Ok(());
            }
            r.read("wait until ready", &s.describe(), || {
                s.wait_ready(timeout).map(|d| ((), d))
            })
        }
    };
    let f = wait(runner.clone());
    engine.register_fn("wait_ready", move |s: &mut Service| {
        f(s, DEFAULT_READY_TIMEOUT)
    });
    let f = wait(runner.clone());
    engine.register_fn("wait_ready", move |s: &mut Service, secs: i64| {
        f(s, seconds(secs)?)
    });

    let r = runner.clone();
    engine.register_fn(
        "count",
        move |s: &mut Service, query: &str| -> RhaiResult<i64> {
            let what = format!("{} nodes of {query:?}", s.describe());
            if s.simulated().is_some() {
                let n = s.remembered_count(query);
                r.record_dry(
                    "count",
                    &what,
                    &format!("{n} (as counted earlier) stands in"),
                );
                return Ok(n);
            }
            r.read("count", &what, || {
                let url = s.local_url(s.kind());
                let n = r
                    .block_on(async {
                        let proxy = Proxy::open(&url).await?;
                        proxy
                            .call(
                                "count",
                                vec![query.into(), Value::map([("repr", false.into())])],
                            )
                            .await
                    })?
                    .map_err(|e| e.to_string())?;
                let n = n.as_i64().ok_or("count: not a number")?;
                s.remember_count(query, n);
                Ok((n, n.to_string()))
            })
        },
    );

    let r = runner.clone();
    engine.register_fn(
        "idens",
        move |s: &mut Service, query: &str| -> RhaiResult<Array> {
            let what = format!("{} nodes of {query:?}", s.describe());
            if s.simulated().is_some() {
                let idens = s.remembered_idens(query);
                let detail = format!("the {} nodes it named earlier stand in", idens.len());
                r.record_dry("list node idens", &what, &detail);
                return Ok(idens.into_iter().map(Dynamic::from).collect());
            }
            r.read("list node idens", &what, || {
                let url = s.local_url(s.kind());
                let idens = r.block_on(storm_idens(&url, query))??;
                s.remember_idens(&idens);
                let n = idens.len();
                Ok((
                    idens.into_iter().map(Dynamic::from).collect(),
                    format!("{n} nodes"),
                ))
            })
        },
    );
}

/// The idens of the nodes `query` yields (at most [`MAX_IDENS`]); an `err` message fails.
async fn storm_idens(url: &str, query: &str) -> Result<Vec<String>, String> {
    let proxy = Proxy::open(url).await.map_err(|e| e.to_string())?;
    let mut msgs = proxy
        .genr("storm", vec![query.into(), Value::Nil], vec![])
        .await
        .map_err(|e| e.to_string())?;
    let mut idens = Vec::new();
    while let Some(msg) = msgs.next().await {
        let msg = msg.map_err(|e| e.to_string())?;
        let Some([Value::Str(kind), info]) = msg.as_array() else {
            continue;
        };
        match kind.as_str() {
            "node" => {
                let iden = info
                    .as_array()
                    .and_then(|a| a.get(1))
                    .and_then(|meta| meta.get("iden"))
                    .and_then(Value::as_str)
                    .ok_or("a node without an iden")?;
                if idens.len() >= MAX_IDENS {
                    return Err(format!("more than {MAX_IDENS} nodes; narrow the query"));
                }
                idens.push(iden.to_owned());
            }
            "err" => return Err(crate::error::SynErr::from_value(info).to_string()),
            _ => {}
        }
    }
    Ok(idens)
}

fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// ---- backups ----

fn register_backups(engine: &mut Engine, runner: &Arc<Runner>) {
    let r = runner.clone();
    engine.register_fn("backup", move |s: Service| -> RhaiResult<String> {
        let dst = next_backup_path(s.backups());
        let shown = dst.display().to_string();
        r.change(
            "back up",
            &s.describe(),
            || (shown.clone(), format!("into {shown}")),
            || {
                fs::create_dir_all(s.backups())
                    .map_err(|e| format!("{}: {e}", s.backups().display()))?;
                let opts = BackupOptions {
                    src: s.dir().to_owned(),
                    dst: dst.clone(),
                    max_duration: None,
                    hold_timeout: crate::cell::api::BACKUP_HOLD_DEFAULT,
                    parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
                    verify: false,
                    limit_rate: backup::limit::limit_rate_from_env()?,
                    digest: backup::manifest::HashKind::Blake3,
                    rebuild: backup::rebuild_from_env()?,
                };
                let outcome = backup::backup(&opts, &mut r.reporter(), &r.interrupted)
                    .map_err(|f| f.message)?;
                if outcome.exit == Exit::PartlyUnreadable {
                    return Err(format!(
                        "{shown} is incomplete: some source files could not be read"
                    ));
                }
                let mut detail = format!("into {shown}");
                if std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == FLIP_AFTER_BACKUP) {
                    detail.push_str(&format!(
                        "; {FAILPOINT_ENV}={FLIP_AFTER_BACKUP}: {}",
                        flip_a_byte(&dst)?
                    ));
                }
                Ok((shown.clone(), detail))
            },
        )
    });

    let r = runner.clone();
    engine.register_fn("verify", move |path: &str| -> RhaiResult<Map> {
        r.change(
            "verify backup",
            path,
            || (Map::new(), String::new()),
            || {
                let c = backup::verify(Path::new(path), &mut r.reporter(), &r.interrupted)
                    .map_err(|f| f.message)?;
                let mut m = Map::new();
                m.insert("files".into(), (c.files as i64).into());
                m.insert("bytes".into(), (c.bytes as i64).into());
                m.insert("envs".into(), (c.envs as i64).into());
                m.insert("entries".into(), (c.entries as i64).into());
                Ok((
                    m,
                    format!(
                        "{} files, {} environments, {} entries match",
                        c.files, c.envs, c.entries
                    ),
                ))
            },
        )
    });

    let r = runner.clone();
    engine.register_fn(
        "restore",
        move |backup_dir: &str, s: Service| -> RhaiResult<Map> {
            restore_into(&r, backup_dir, s.dir(), &s.describe())
        },
    );
    let r = runner.clone();
    engine.register_fn(
        "restore",
        move |backup_dir: &str, target: &str| -> RhaiResult<Map> {
            if !r.in_scratch(Path::new(target)) {
                return Err(format!(
                    "restore into {target}: forbidden: restore into a service (restore(b, \
                     service())) or into a directory inside scratch_dir()"
                )
                .into());
            }
            restore_into(&r, backup_dir, Path::new(target), target)
        },
    );

    let r = runner.clone();
    engine.register_fn(
        "put_back",
        move |s: Service, old: &str| -> RhaiResult<String> {
            let old = normalize(Path::new(old));
            if !r.made().moved_aside.contains(&old) {
                return Err(format!(
                    "put_back {}: forbidden: only a directory a restore of this run moved aside",
                    old.display()
                )
                .into());
            }
            let failed = aside_path(s.dir(), "failed-restore");
            let shown = failed.display().to_string();
            r.made().moved_aside.push(normalize(&failed));
            r.change(
                "put back the original directory of",
                &s.describe(),
                || (shown.clone(), format!("from {}", old.display())),
                || {
                    let status = s.status()?;
                    if status != "stopped" && status != "failed" {
                        return Err(format!("the service is {status}; stop it first"));
                    }
                    if fs::symlink_metadata(s.dir()).is_ok() {
                        fs::rename(s.dir(), &failed)
                            .map_err(|e| format!("moving {} aside: {e}", s.dir().display()))?;
                    }
                    fs::rename(&old, s.dir())
                        .map_err(|e| format!("moving {} back: {e}", old.display()))?;
                    Ok((
                        shown.clone(),
                        format!("{} is back; the restored copy is in {shown}", old.display()),
                    ))
                },
            )
        },
    );

    let r = runner.clone();
    engine.register_fn("list_backups", move |s: Service| -> RhaiResult<Array> {
        let root = s.backups().to_owned();
        r.read("list backups of", &s.describe(), || {
            let listed = list(&root)?;
            let n = listed.len();
            Ok((listed, format!("{n} found in {}", root.display())))
        })
    });

    let r = runner.clone();
    engine.register_fn("latest_backup", move |s: Service| -> RhaiResult<String> {
        let root = s.backups().to_owned();
        r.read("find the latest backup of", &s.describe(), || {
            let found = backup::catalog(&root).map_err(|f| f.message)?;
            let latest = found
                .iter()
                .rev()
                .find(|l| {
                    matches!(&l.entry, Entry::Backup { state, .. }
                        if matches!(state.as_str(), "verified" | "complete"))
                })
                .ok_or_else(|| format!("no complete backup in {}", root.display()))?;
            let shown = latest.path.display().to_string();
            Ok((shown.clone(), shown))
        })
    });

    let r = runner.clone();
    engine.register_fn(
        "prune_backups",
        move |s: Service, keep: Map| -> RhaiResult<i64> {
            let policy = keep_policy(&keep)?;
            let root = s.backups().to_owned();
            // A dry run asks prune what it would delete; it deletes nothing.
            let prune = |dry_run: bool| {
                backup::prune(&root, &policy, dry_run, &mut r.reporter())
                    .map(|n| (n as i64, format!("{n} deleted")))
                    .map_err(|f| f.message)
            };
            if r.dry_run {
                if !root.exists() {
                    // The first dry run: the backup it would have taken is not there either.
                    let why = format!("none yet in {}", root.display());
                    r.record_dry("prune backups of", &s.describe(), &why);
                    return Ok(0);
                }
                let (n, _) = prune(true).map_err(|e| rhai_err("prune", &s.describe(), &e))?;
                r.record_dry("prune backups of", &s.describe(), &format!("{n} to delete"));
                return Ok(n);
            }
            r.read("prune backups of", &s.describe(), || prune(false))
        },
    );
}

/// The environment variable of the rehearsal failpoint: with the value
/// [`FLIP_AFTER_BACKUP`], every backup a runbook takes gets one byte of its largest file
/// flipped, so verifying it fails as a damaged backup would (the failure paths of the
/// shipped runbooks are tested this way).
pub const FAILPOINT_ENV: &str = "SYN_RUNBOOK_FAILPOINT";
/// See [`FAILPOINT_ENV`].
pub const FLIP_AFTER_BACKUP: &str = "flip-byte-after-backup";

/// Flip one byte in the middle of the largest file under `dir`; says which.
fn flip_a_byte(dir: &Path) -> Result<String, String> {
    fn largest(dir: &Path, best: &mut Option<(u64, PathBuf)>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                largest(&entry.path(), best)?;
            } else if meta.is_file() && best.as_ref().is_none_or(|(n, _)| meta.len() > *n) {
                *best = Some((meta.len(), entry.path()));
            }
        }
        Ok(())
    }
    let mut best = None;
    largest(dir, &mut best).map_err(|e| format!("{}: {e}", dir.display()))?;
    let Some((len, path)) = best.filter(|(n, _)| *n > 0) else {
        return Err(format!("{}: no file to damage", dir.display()));
    };
    let mut bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = usize::try_from(len / 2).unwrap_or(0);
    bytes[at] ^= 0x01;
    fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("flipped the byte at {at} of {}", path.display()))
}

/// `<root>/<UTC time>`, with `-2`, `-3`, ... when that exists.
fn next_backup_path(root: &Path) -> PathBuf {
    let stamp = utc_stamp(now_ms());
    let mut path = root.join(&stamp);
    let mut n = 2;
    while fs::symlink_metadata(&path).is_ok() {
        path = root.join(format!("{stamp}-{n}"));
        n += 1;
    }
    path
}

/// `DIR.<what>-<UTC time>` beside `dir`.
fn aside_path(dir: &Path, what: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{what}-{}", utc_stamp(now_ms())));
    normalize(&dir.with_file_name(name))
}

fn restore_into(
    r: &Arc<Runner>,
    backup_dir: &str,
    target: &Path,
    shown_target: &str,
) -> RhaiResult<Map> {
    let old = aside_path(target, "pre-restore");
    let result = |old: Option<PathBuf>| {
        let mut m = Map::new();
        m.insert("target".into(), target.display().to_string().into());
        m.insert(
            "old".into(),
            old.map_or(Dynamic::UNIT, |o| o.display().to_string().into()),
        );
        m
    };
    if r.dry_run {
        r.made().moved_aside.push(old.clone());
        r.record_dry(
            "restore",
            shown_target,
            &format!(
                "from {backup_dir}; the current directory would go to {}",
                old.display()
            ),
        );
        return Ok(result(Some(old)));
    }
    let owner = fs::metadata(target).ok().map(|m| (m.uid(), m.gid()));
    r.read("restore", shown_target, || {
        let opts = RestoreOptions {
            backup: PathBuf::from(backup_dir),
            target: target.to_owned(),
            old: Some(old.clone()),
        };
        let restored =
            backup::restore(&opts, &mut r.reporter(), &r.interrupted).map_err(|f| f.message)?;
        if let Some((uid, gid)) = owner {
            give_to(&restored.target, uid, gid)?;
        }
        let detail = match &restored.old {
            Some(o) => format!(
                "from {backup_dir}; the previous directory is {}",
                o.display()
            ),
            None => format!("from {backup_dir}"),
        };
        if let Some(o) = &restored.old {
            r.made().moved_aside.push(normalize(o));
        }
        Ok((result(restored.old), detail))
    })
}

/// When run as root, hand a restored tree to the owner of the directory it replaced (the
/// service's user), so the service can open it.
fn give_to(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        for entry in fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            give_to(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn list(root: &Path) -> Result<Array, String> {
    let found = backup::catalog(root).map_err(|f| f.message)?;
    Ok(found
        .into_iter()
        .map(|l| {
            let mut m = Map::new();
            m.insert("name".into(), l.name.clone().into());
            m.insert("path".into(), l.path.display().to_string().into());
            match &l.entry {
                Entry::Backup {
                    state,
                    snapshot_ms,
                    bytes,
                    ..
                } => {
                    m.insert("state".into(), state.as_str().into());
                    m.insert("taken".into(), utc_string(*snapshot_ms).into());
                    m.insert("bytes".into(), (*bytes as i64).into());
                }
                Entry::Partial { running } => {
                    let state = if *running { "running" } else { "partial" };
                    m.insert("state".into(), state.into());
                }
            }
            Dynamic::from_map(m)
        })
        .collect())
}

/// `#{last: 3, daily: 7, weekly: 4, monthly: 6}` into a policy.
fn keep_policy(keep: &Map) -> RhaiResult<KeepPolicy> {
    let mut policy = KeepPolicy::default();
    for (key, value) in keep {
        let n = value
            .as_int()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("prune_backups: {key} must be a count, got {value}"))?;
        match key.as_str() {
            "last" => policy.last = n,
            "daily" => policy.daily = n,
            "weekly" => policy.weekly = n,
            "monthly" => policy.monthly = n,
            other => {
                return Err(format!(
                    "prune_backups: unknown key {other:?}: use last, daily, weekly, monthly"
                )
                .into());
            }
        }
    }
    if policy.is_empty() {
        return Err(
            "prune_backups: keep at least one backup (last, daily, weekly, monthly)".into(),
        );
    }
    Ok(policy)
}

// ---- certificates ----

fn register_certs(engine: &mut Engine, runner: &Arc<Runner>) {
    let r = runner.clone();
    engine.register_fn("certdir", move || -> RhaiResult<String> {
        if let Some(dir) = r.params.get("certdir") {
            return Ok(dir.clone());
        }
        let service_dir = r.target.as_ref().map(|t| t.dir().to_owned());
        let dir =
            service_dir.map_or_else(|| Path::new(STATE_ROOT).join("certs"), |d| d.join("certs"));
        Ok(dir.display().to_string())
    });

    let r = runner.clone();
    engine.register_fn("cert_expiry", move |certdir: &str| -> RhaiResult<Array> {
        r.read("check certificates in", certdir, || {
            let dir = CertDir::open(certdir).map_err(|e| e.to_string())?;
            let listing = dir.list().map_err(|e| e.to_string())?;
            if let Some(e) = listing.errors.first() {
                return Err(e.to_string());
            }
            let now = time::OffsetDateTime::now_utc();
            let found: Array = listing
                .certs
                .iter()
                .map(|c| {
                    let mut m = Map::new();
                    m.insert("kind".into(), kind_name(c.kind).into());
                    m.insert("name".into(), c.name.clone().into());
                    m.insert("path".into(), c.path.display().to_string().into());
                    m.insert("days_left".into(), c.info.days_left(now).into());
                    m.insert(
                        "not_after".into(),
                        utc_string(c.info.not_after.unix_timestamp() * 1000).into(),
                    );
                    m.insert("subject".into(), c.info.subject.clone().into());
                    Dynamic::from_map(m)
                })
                .collect();
            let n = found.len();
            Ok((found, format!("{n} certificates")))
        })
    });

    let r = runner.clone();
    engine.register_fn(
        "renew_host_cert",
        move |certdir: &str, name: &str, days: i64| -> RhaiResult<String> {
            let days = u32::try_from(days)
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| format!("renew_host_cert: days must be more than 0, got {days}"))?;
            let what = format!("host certificate {name} in {certdir}");
            r.change(
                "renew",
                &what,
                || (String::new(), format!("for {days} days")),
                || renew_host(Path::new(certdir), name, days).map(|d| (d.clone(), d)),
            )
        },
    );
}

fn kind_name(kind: CertKind) -> &'static str {
    match kind {
        CertKind::Ca => "ca",
        CertKind::Host => "host",
        CertKind::User => "user",
    }
}

/// Replace `hosts/<name>.crt` and `.key` with a new key and certificate for the same names,
/// signed by the CA that signed the old one (or self-signed, as the old one was). The old
/// files are kept as `<name>.crt.replaced-<time>` and `<name>.key.replaced-<time>`.
fn renew_host(certdir: &Path, name: &str, days: u32) -> Result<String, String> {
    let dir = CertDir::open(certdir).map_err(|e| e.to_string())?;
    let listing = dir.list().map_err(|e| e.to_string())?;
    let old = listing
        .certs
        .iter()
        .find(|c| c.kind == CertKind::Host && c.name == name)
        .ok_or_else(|| format!("no host certificate {name}"))?;
    let signas = if old.info.self_issued {
        None
    } else {
        let ca = listing
            .certs
            .iter()
            .find(|c| c.kind == CertKind::Ca && c.info.subject == old.info.issuer)
            .ok_or_else(|| {
                format!(
                    "its CA ({}) is not in {}/cas: renew it where the CA key is",
                    old.info.issuer,
                    certdir.display()
                )
            })?;
        Some(ca.name.clone())
    };
    let default_san = San::for_host(name);
    let opts = IssueOptions {
        signas: signas.clone(),
        days: Some(days),
        sans: old
            .info
            .sans
            .iter()
            .filter(|s| **s != default_san)
            .cloned()
            .collect(),
        ..IssueOptions::default()
    };
    let stamp = utc_stamp(now_ms());
    let files: Vec<(PathBuf, PathBuf)> = ["crt", "key"]
        .iter()
        .map(|ext| {
            let path = dir.file(CertKind::Host, name, ext);
            let aside = path.with_file_name(format!("{name}.{ext}.replaced-{stamp}"));
            (path, aside)
        })
        .filter(|(path, _)| path.exists())
        .collect();
    for (path, aside) in &files {
        fs::rename(path, aside).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Err(e) = dir.issue(CertKind::Host, name, &opts) {
        for (path, aside) in &files {
            let _ = fs::remove_file(path);
            let _ = fs::rename(aside, path);
        }
        return Err(e.to_string());
    }
    Ok(format!(
        "renewed for {days} days, signed by {}; the old files end in .replaced-{stamp}",
        signas.as_deref().unwrap_or("itself")
    ))
}
