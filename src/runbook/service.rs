//! Services a runbook operates on, and the two ways of running them.
//!
//! * **systemd**: the unit `syn-<kind>@<instance>.service`, driven with `systemctl`
//!   (`start` and `restart` return once a `Type=notify` service said it is ready).
//! * **direct**: the runbook spawns `syn <kind> DIR` itself, in its own process group with its
//!   output appended to `DIR.log`, and records the pid in `DIR.pid` so later runs (and people)
//!   find it; the service outlives the runbook. Readiness is the service's own `READY=1`,
//!   received on a private `NOTIFY_SOCKET`; a service this run did not start counts as ready
//!   once it answers on `DIR/sock`. Stopping sends SIGTERM and waits for the process to end
//!   (SIGKILL after [`STOP_GRACE`]).

use crate::telepath::{ClientOptions, Proxy, TeleUrl};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a stopping service may take before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(60);
/// How often states are polled while waiting.
const POLL: Duration = Duration::from_millis(100);
/// Limit on one telepath connection attempt to `DIR/sock`.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Log lines quoted when a direct service fails to start.
const LOG_TAIL_LINES: usize = 5;

/// How services are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Through systemctl and the `syn-<kind>@.service` templates.
    Systemd,
    /// As child processes of the runbook.
    Direct,
}

impl Backend {
    /// `systemd`, `direct`, or `auto` (systemd when this machine was booted with it).
    pub fn parse(text: &str) -> Result<Backend, String> {
        match text {
            "systemd" => Ok(Backend::Systemd),
            "direct" => Ok(Backend::Direct),
            "auto" if Path::new("/run/systemd/system").is_dir() => Ok(Backend::Systemd),
            "auto" => Ok(Backend::Direct),
            other => Err(format!(
                "unknown backend {other:?}: use auto, systemd or direct"
            )),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Systemd => "systemd",
            Backend::Direct => "direct",
        }
    }
}

/// A service as a runbook sees it: cheap to clone, every clone the same service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    kind: String,
    instance: String,
    dir: PathBuf,
    backups: PathBuf,
    backend: Backend,
    /// Extra arguments for a direct start (a scratch service's loopback port).
    extra_args: Vec<String>,
    state: Mutex<State>,
}

/// What a direct backend knows about the process it started, and what a dry run pretends.
#[derive(Default)]
struct State {
    child: Option<Child>,
    notify: Option<NotifyListener>,
    /// In a dry run: the state the simulated steps left the service in.
    simulated: Option<&'static str>,
    /// Node counts read in this run, by query (a dry run's stand-ins).
    counts: HashMap<String, i64>,
    /// Node idens read in this run (a dry run's stand-ins).
    idens: Vec<String>,
}

/// A private `NOTIFY_SOCKET` in its own directory, removed when dropped.
struct NotifyListener {
    sock: UnixDatagram,
    dir: PathBuf,
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Service {
    /// A service of `kind` (`cortex`, `cell`) named `instance`, its state in `dir` and its
    /// backups under `backups`.
    pub fn new(
        kind: &str,
        instance: &str,
        dir: PathBuf,
        backups: PathBuf,
        backend: Backend,
        extra_args: Vec<String>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                kind: kind.to_owned(),
                instance: instance.to_owned(),
                dir,
                backups,
                backend,
                extra_args,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// `cortex`, `cell`, ...
    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The service directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where its backups go.
    pub fn backups(&self) -> &Path {
        &self.inner.backups
    }

    /// How it is run.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// `cortex main (systemd unit syn-cortex@main.service)`, for messages.
    pub fn describe(&self) -> String {
        match self.inner.backend {
            Backend::Systemd => format!(
                "{} {} (systemd unit {})",
                self.inner.kind,
                self.inner.instance,
                self.unit()
            ),
            Backend::Direct => format!(
                "{} {} ({})",
                self.inner.kind,
                self.inner.instance,
                self.inner.dir.display()
            ),
        }
    }

    fn unit(&self) -> String {
        format!("syn-{}@{}.service", self.inner.kind, self.inner.instance)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// In a dry run: the state a simulated step left, if any.
    pub fn simulated(&self) -> Option<&'static str> {
        self.state().simulated
    }

    /// In a dry run: record the state a simulated step would leave.
    pub fn simulate(&self, state: &'static str) {
        self.state().simulated = Some(state);
    }

    /// Remember a count read from the service.
    pub fn remember_count(&self, query: &str, n: i64) {
        self.state().counts.insert(query.to_owned(), n);
    }

    /// Remember node idens read from the service.
    pub fn remember_idens(&self, idens: &[String]) {
        self.state().idens.extend(idens.iter().cloned());
    }

    /// A dry run's stand-in for a count on a service a simulated step changed: what the same
    /// query counted earlier in the run (the service is assumed to hold what it held), else 0.
    pub fn remembered_count(&self, query: &str) -> i64 {
        self.state().counts.get(query).copied().unwrap_or(0)
    }

    /// A dry run's stand-in for the idens a query yields: the idens read earlier in the run
    /// that the query names.
    pub fn remembered_idens(&self, query: &str) -> Vec<String> {
        let state = self.state();
        let mut named: Vec<String> = state
            .idens
            .iter()
            .filter(|i| query.contains(i.as_str()))
            .cloned()
            .collect();
        named.dedup();
        named
    }

    /// `running`, `stopped`, `failed`, `starting` or `stopping`.
    pub fn status(&self) -> Result<String, String> {
        if let Some(s) = self.simulated() {
            return Ok(s.to_owned());
        }
        match self.inner.backend {
            Backend::Systemd => self.systemd_state(),
            Backend::Direct => Ok(if self.direct_pid().is_some() || self.answers() {
                "running".into()
            } else {
                "stopped".into()
            }),
        }
    }

    /// Start the service (systemd: returns once it is ready; direct: once it is spawned).
    pub fn start(&self) -> Result<String, String> {
        match self.inner.backend {
            Backend::Systemd => self.systemctl("start").map(|()| "started".into()),
            Backend::Direct => self.direct_start(),
        }
    }

    /// Stop the service and wait until it has ended.
    pub fn stop(&self) -> Result<String, String> {
        match self.inner.backend {
            Backend::Systemd => self.systemctl("stop").map(|()| "stopped".into()),
            Backend::Direct => self.direct_stop(),
        }
    }

    /// Stop, start, and wait until ready (at most `timeout`).
    pub fn restart(&self, timeout: Duration) -> Result<String, String> {
        match self.inner.backend {
            Backend::Systemd => self.systemctl("restart")?,
            Backend::Direct => {
                self.direct_stop()?;
                self.direct_start()?;
            }
        }
        self.wait_ready(timeout)
    }

    /// Wait until the service is ready: its `READY=1` (direct, started by this run), or
    /// systemd calling it active, and then it answers on `DIR/sock`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        match self.inner.backend {
            Backend::Systemd => loop {
                match self.systemd_state()?.as_str() {
                    "running" => break,
                    "starting" => {}
                    other => return Err(format!("{} is {other}", self.unit())),
                }
                if Instant::now() >= deadline {
                    return Err(format!("{} not active within {timeout:?}", self.unit()));
                }
                std::thread::sleep(POLL);
            },
            Backend::Direct => {
                if self.direct_wait_notify(deadline, timeout)? {
                    return Ok("ready".into());
                }
            }
        }
        while !self.answers() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} does not answer on {} within {timeout:?}",
                    self.describe(),
                    self.sock().display()
                ));
            }
            std::thread::sleep(POLL);
        }
        Ok("ready".into())
    }

    /// The telepath URL of the service's share over its unix socket.
    pub fn local_url(&self, share: &str) -> String {
        format!("cell://{}:{share}", self.abs_dir().display())
    }

    fn abs_dir(&self) -> PathBuf {
        std::path::absolute(&self.inner.dir).unwrap_or_else(|_| self.inner.dir.clone())
    }

    fn sock(&self) -> PathBuf {
        self.inner.dir.join(crate::cell::dir::SOCK_FILE)
    }

    /// Whether something answers a telepath handshake on `DIR/sock`.
    fn answers(&self) -> bool {
        if !self.sock().exists() {
            return false;
        }
        let Ok(url) = TeleUrl::parse(&self.local_url("*")) else {
            return false;
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        let opts = ClientOptions {
            connect_timeout: PING_TIMEOUT,
            ..ClientOptions::default()
        };
        rt.block_on(Proxy::open_with(&url, opts)).is_ok()
    }

    // ---- systemd ----

    fn systemctl(&self, verb: &str) -> Result<(), String> {
        let out = Command::new("systemctl")
            .arg(verb)
            .arg(self.unit())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("systemctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let said = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "systemctl {verb} {}: {}",
                self.unit(),
                said.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        }
    }

    fn systemd_state(&self) -> Result<String, String> {
        let out = Command::new("systemctl")
            .arg("is-active")
            .arg(self.unit())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("systemctl: {e}"))?;
        // is-active exits non-zero for every state but active; the word is what counts.
        let word = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(match word.as_str() {
            "active" | "reloading" | "refreshing" => "running".into(),
            "inactive" => "stopped".into(),
            "activating" => "starting".into(),
            "deactivating" => "stopping".into(),
            "" => return Err(format!("systemctl is-active {}: no answer", self.unit())),
            other => other.to_owned(),
        })
    }

    // ---- direct ----

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.inner.dir.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        self.inner.dir.with_file_name(name)
    }

    /// `DIR.pid`: the pid of the service a direct backend started.
    pub fn pid_file(&self) -> PathBuf {
        self.sibling(".pid")
    }

    /// `DIR.log`: the output of the service a direct backend started.
    pub fn log_file(&self) -> PathBuf {
        self.sibling(".log")
    }

    /// The pid of the running service this backend started (now or in an earlier run).
    fn direct_pid(&self) -> Option<Pid> {
        let mut state = self.state();
        if let Some(child) = state.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Some(Pid::from_raw(child.id() as i32));
            }
            state.child = None;
            state.notify = None;
            return None;
        }
        drop(state);
        let pid: i32 = fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // A pid file outlives its process and pids are reused: the process must still be
        // `syn KIND DIR`.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let dir = self.abs_dir();
        let is_ours = args.iter().any(|a| *a == self.inner.kind.as_bytes())
            && args
                .iter()
                .any(|a| Path::new(std::ffi::OsStr::from_bytes(a)) == dir);
        is_ours.then(|| Pid::from_raw(pid))
    }

    fn direct_start(&self) -> Result<String, String> {
        if self.direct_pid().is_some() || self.answers() {
            return Err(format!("{} is already running", self.describe()));
        }
        let dir = self.abs_dir();
        let exe = std::env::current_exe().map_err(|e| format!("finding the syn binary: {e}"))?;
        let notify_dir = std::env::temp_dir().join(format!(
            "syn-runbook-notify-{}-{}",
            std::process::id(),
            crate::guid::guid()
        ));
        fs::create_dir(&notify_dir).map_err(|e| format!("{}: {e}", notify_dir.display()))?;
        let listener = NotifyListener {
            sock: UnixDatagram::bind(notify_dir.join("notify"))
                .map_err(|e| format!("{}: {e}", notify_dir.display()))?,
            dir: notify_dir,
        };
        let log_path = self.log_file();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = Command::new(exe);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // pthread_sigmask, which is async-signal-safe.
        unsafe {
            // `syn runbook` blocks SIGTERM and friends in every thread to turn them into a
            // flag; the service must get them.
            cmd.pre_exec(|| {
                SigSet::empty()
                    .thread_set_mask()
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .arg(&self.inner.kind)
            .arg(&dir)
            .args(&self.inner.extra_args)
            .env("NOTIFY_SOCKET", listener.dir.join("notify"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C meant for the runbook does not stop it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting syn {} {}: {e}", self.inner.kind, dir.display()))?;
        let pid = child.id();
        let mut state = self.state();
        state.child = Some(child);
        state.notify = Some(listener);
        drop(state);
        fs::write(self.pid_file(), format!("{pid}\n"))
            .map_err(|e| format!("{}: {e}", self.pid_file().display()))?;
        Ok(format!("pid {pid}, output in {}", log_path.display()))
    }

    /// Wait for `READY=1` from a service this run started; `Ok(false)` when this run did not
    /// start it (no notify socket to wait on).
    fn direct_wait_notify(&self, deadline: Instant, timeout: Duration) -> Result<bool, String> {
        let mut buf = [0u8; 4096];
        loop {
            let mut state = self.state();
            let State { child, notify, .. } = &mut *state;
            let (Some(child), Some(notify)) = (child.as_mut(), notify.as_ref()) else {
                return Ok(false);
            };
            if let Ok(Some(status)) = child.try_wait() {
                state.child = None;
                state.notify = None;
                let _ = fs::remove_file(self.pid_file());
                return Err(format!(
                    "{} exited ({status}) before it was ready; last lines of {}: {}",
                    self.describe(),
                    self.log_file().display(),
                    self.log_tail()
                ));
            }
            let _ = notify.sock.set_read_timeout(Some(POLL));
            if let Ok(n) = notify.sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(true);
            }
            drop(state);
            if Instant::now() >= deadline {
                return Err(format!("{} not ready within {timeout:?}", self.describe()));
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" | ")
    }

    fn direct_stop(&self) -> Result<String, String> {
        let Some(pid) = self.direct_pid() else {
            if self.answers() {
                return Err(format!(
                    "a service answers on {} but was not started by a runbook (no {}); stop it \
                     the way it was started",
                    self.sock().display(),
                    self.pid_file().display()
                ));
            }
            let _ = fs::remove_file(self.pid_file());
            return Ok("was not running".into());
        };
        kill(pid, Signal::SIGTERM).map_err(|e| format!("signalling pid {pid}: {e}"))?;
        let ended = |grace: Duration| {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.direct_pid().is_none() {
                    return true;
                }
                std::thread::sleep(POLL);
            }
            false
        };
        let how = if ended(STOP_GRACE) {
            "stopped"
        } else {
            let _ = kill(pid, Signal::SIGKILL);
            if !ended(Duration::from_secs(10)) {
                return Err(format!("pid {pid} did not end, even after SIGKILL"));
            }
            "killed after it did not stop within the grace time"
        };
        let mut state = self.state();
        state.child = None;
        state.notify = None;
        drop(state);
        let _ = fs::remove_file(self.pid_file());
        Ok(format!("{how} (pid {pid})"))
    }
}
