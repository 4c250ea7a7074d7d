//! Shared harness for integration tests and benchmarks: installs and runs the real Python
//! Synapse peers (2.256.0, and the legacy 0.1.58 / 2.0.0 on pyenv's CPython 3.7) and guards
//! child processes.
//!
//! Peers are installed on first use into `target/peers/<name>` under the crate root, each behind
//! a file lock (`target/peers/<name>.lock`) and marked complete by `target/peers/<name>/.syn-peer`
//! only after a verified install, so parallel test processes install once. A test that cannot get
//! its peer (no python, no PyPI, ...) gets `None` after a `[peers] SKIP` line on stderr (written
//! past the test harness's capture) and should return.
//!
//! Environment: `SYN_SKIP_PEERS=1` skips every peer test without trying; `SYN_PEER_START_SECS`
//! bounds a [`PyService`] start (default 120).
//!
//! Everything listens on 127.0.0.1 only (the Python cortex runs with HTTPS disabled).

// Each integration test compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The root password of every [`PyService`].
pub const ROOT_PASSWD: &str = "secret";

/// How long a [`PyService`] may take to answer telepath (override: `SYN_PEER_START_SECS`).
/// It starts in 11-17 s on an idle 2-core machine, but took 38 s beside parallel builds.
const PEER_START_SECS: u64 = 120;

/// Default bound on a [`run_py`] script.
const RUN_PY_SECS: u64 = 300;

// ---------------------------------------------------------------------------------------------
// Messages

/// Writes one `[peers]` line straight to the process's stderr. Unlike `eprintln!` this is not
/// captured by the test harness, so install progress and SKIP reasons show in `cargo test`.
pub fn say(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "[peers] {msg}");
}

/// Announces that the calling test skips, and why.
pub fn skip(why: &str) {
    let test = thread::current().name().unwrap_or("?").to_string();
    say(&format!("SKIP {test}: {why}"));
}

// ---------------------------------------------------------------------------------------------
// Paths

/// The crate root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The genuine Synapse 0.1.58 cortex fixture (`../shared/fixtures/synapse-0.1.58`).
pub fn fixture_01x() -> PathBuf {
    repo_root()
        .join("..")
        .join("shared")
        .join("fixtures")
        .join("synapse-0.1.58")
}

/// Where peers are installed: `target/peers` under the crate root.
pub fn peers_dir() -> PathBuf {
    repo_root().join("target").join("peers")
}

/// A script in `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    repo_root().join("tests").join("py").join(name)
}

// ---------------------------------------------------------------------------------------------
// Running commands with a bound

/// What a finished (or timed-out and killed) command left behind.
#[derive(Debug)]
pub struct RunOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command ran past its bound and was killed.
    pub timed_out: bool,
}

impl RunOut {
    /// Exit status 0 and no timeout.
    pub fn ok(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// The exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", self.describe()))
    }

    /// Stdout parsed as JSON, one value per non-empty line.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", self.describe()))
            })
            .collect()
    }

    /// A readable account for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            if self.timed_out { " (timed out)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` to completion with stdin closed and output collected, in its own process group;
/// after `timeout` the whole group is killed and `timed_out` is set. Spawn failures are `Err`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<RunOut> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            signal_group(&child, Signal::SIGKILL);
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Descendants left in the group would keep the pipes open.
    signal_group(&child, Signal::SIGKILL);
    Ok(RunOut {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    })
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn signal_group(child: &Child, sig: Signal) {
    // The child leads its own group (process_group(0)), so its pid is the group id.
    let _ = killpg(Pid::from_raw(child.id() as i32), sig);
}

/// Runs `tests/py/<script>` with `python` and `args`, bounded by 5 minutes.
pub fn run_py(python: &Path, script: &str, args: &[&str]) -> RunOut {
    run_py_timeout(python, script, args, Duration::from_secs(RUN_PY_SECS))
}

/// [`run_py`] with an explicit bound. Panics only if the interpreter cannot be spawned.
pub fn run_py_timeout(python: &Path, script: &str, args: &[&str], timeout: Duration) -> RunOut {
    let path = py_script(script);
    let mut cmd = Command::new(python);
    cmd.arg(&path).args(args).env("PYTHONUNBUFFERED", "1");
    run_bounded(cmd, timeout)
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), path.display()))
}

/// Runs `tests/py/storm_compare.py` on a fresh real Python cortex with `cases` (each a JSON
/// `[query, opts, mode]`) and returns its results, one per case.
pub fn python_storm_results(python: &Path, cases: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    fs::write(file.path(), serde_json::to_string(cases).expect("json")).expect("write");
    let out = run_py(
        python,
        "storm_compare.py",
        &[file.path().to_str().expect("path")],
    );
    assert!(out.ok(), "{}", out.describe());
    let serde_json::Value::Array(results) = out.json() else {
        panic!("not a list: {}", out.stdout);
    };
    assert_eq!(results.len(), cases.len());
    results
}

/// A bench's size knob: the number in the environment variable `name`, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle of the values (the upper middle of an even count), as benches report runs.
pub fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Assert that a side-by-side session gave the same lines from syn (`ours`) and from Python
/// Synapse (`theirs`), showing every line that differs; then say how many agreed.
pub fn assert_same_session(what: &str, ours: &[String], theirs: &[String]) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "ours: {ours:#?}\ntheirs: {theirs:#?}"
    );
    let differ: Vec<String> = ours
        .iter()
        .zip(theirs)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("syn:    {a}\npython: {b}"))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    say(&format!(
        "{what}: {} steps agree with Python Synapse 2.256's",
        ours.len()
    ));
}

// ---------------------------------------------------------------------------------------------
// Peer installs

#[derive(Clone, Copy)]
enum BasePython {
    /// `python3` from PATH.
    Python3,
    /// `$(pyenv root)/versions/3.7.16/bin/python3.7`.
    Pyenv37,
}

struct Peer {
    /// Directory name under `target/peers`.
    name: &'static str,
    base: BasePython,
    /// What `synapse.lib.version.verstring` must say after the install.
    version: &'static str,
    pkgs: &'static [&'static str],
}

const SYN2: Peer = Peer {
    name: "syn2",
    base: BasePython::Python3,
    version: "2.256.0",
    pkgs: &["synapse==2.256.0"],
};

const SYN01: Peer = Peer {
    name: "syn01",
    base: BasePython::Pyenv37,
    version: "0.1.58",
    pkgs: &["synapse==0.1.58", "cryptography==3.3.2"],
};

const SYN200: Peer = Peer {
    name: "syn200",
    base: BasePython::Pyenv37,
    version: "2.0.0",
    pkgs: &["synapse==2.0.0", "cryptography==3.3.2"],
};

/// The venv python with `synapse==2.256.0`, installed on first use (about a minute).
/// `None`, after a SKIP line saying why, when that cannot be done.
pub fn syn2_python() -> Option<PathBuf> {
    static CELL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    peer_python(&SYN2, &CELL)
}

/// The venv python (pyenv's CPython 3.7.16) with `synapse==0.1.58` and `cryptography==3.3.2`.
pub fn syn01_python() -> Option<PathBuf> {
    static CELL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    peer_python(&SYN01, &CELL)
}

/// The venv python (pyenv's CPython 3.7.16) with `synapse==2.0.0` and `cryptography==3.3.2`.
pub fn syn200_python() -> Option<PathBuf> {
    static CELL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    peer_python(&SYN200, &CELL)
}

fn peer_python(peer: &Peer, cell: &OnceLock<Result<PathBuf, String>>) -> Option<PathBuf> {
    // OnceLock: threads of one test binary wait for a single attempt; the file lock does the
    // same across test binaries.
    match cell.get_or_init(|| ensure_peer(peer)) {
        Ok(py) => Some(py.clone()),
        Err(why) => {
            skip(&format!(
                "Python Synapse {} peer unavailable: {why}",
                peer.version
            ));
            None
        }
    }
}

fn marker_text(peer: &Peer) -> String {
    format!("{}\n", peer.pkgs.join(" "))
}

fn installed(peer: &Peer, dir: &Path) -> bool {
    let python = dir.join("bin").join("python");
    let marker = fs::read_to_string(dir.join(".syn-peer")).unwrap_or_default();
    python.exists() && marker == marker_text(peer)
}

fn ensure_peer(peer: &Peer) -> Result<PathBuf, String> {
    if std::env::var_os("SYN_SKIP_PEERS").is_some_and(|v| !v.is_empty() && v != "0") {
        return Err("SYN_SKIP_PEERS is set".into());
    }
    let root = peers_dir();
    let dir = root.join(peer.name);
    let python = dir.join("bin").join("python");
    if installed(peer, &dir) {
        return Ok(python);
    }

    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let lock_path = root.join(format!("{}.lock", peer.name));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    say(&format!("taking the install lock {}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have finished the install while we waited.
    if installed(peer, &dir) {
        return Ok(python);
    }

    let base = base_python(peer.base)?;
    if dir.exists() {
        say(&format!(
            "removing the incomplete install in {}",
            dir.display()
        ));
        fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    let t0 = Instant::now();
    say(&format!(
        "installing {} into {} with {} (one time; about a minute or more)",
        peer.pkgs.join(" "),
        dir.display(),
        base.display()
    ));

    let mut venv = Command::new(&base);
    venv.arg("-m").arg("venv").arg(&dir);
    step(venv, Duration::from_secs(300), "python -m venv")?;

    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(["--retries", "2", "--timeout", "30"])
        .args(peer.pkgs)
        .env("PIP_NO_INPUT", "1");
    step(pip, Duration::from_secs(1200), "pip install")?;

    let mut check = Command::new(&python);
    check.args([
        "-c",
        "import synapse.lib.version as v, synapse.telepath; print(v.verstring)",
    ]);
    let out = step(check, Duration::from_secs(120), "import synapse")?;
    let got = out.stdout.trim();
    if got != peer.version {
        return Err(format!(
            "installed synapse says version {got:?}, wanted {}",
            peer.version
        ));
    }

    fs::write(dir.join(".syn-peer"), marker_text(peer))
        .map_err(|e| format!("cannot write the install marker: {e}"))?;
    say(&format!(
        "installed synapse {} in {:.1} s: {}",
        peer.version,
        t0.elapsed().as_secs_f64(),
        python.display()
    ));
    Ok(python)
}

/// Runs one install step; an error carries the tail of its output.
fn step(cmd: Command, timeout: Duration, what: &str) -> Result<RunOut, String> {
    let out = run_bounded(cmd, timeout).map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.ok() {
        return Ok(out);
    }
    let text = format!("{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Err(format!(
        "{what} failed ({}{}):\n{tail}",
        out.status,
        if out.timed_out { ", timed out" } else { "" }
    ))
}

fn base_python(base: BasePython) -> Result<PathBuf, String> {
    match base {
        BasePython::Python3 => {
            let out = run_bounded(
                {
                    let mut c = Command::new("python3");
                    c.arg("--version");
                    c
                },
                Duration::from_secs(60),
            )
            .map_err(|e| format!("no python3 on PATH: {e}"))?;
            if !out.ok() {
                return Err(format!("python3 --version failed: {}", out.describe()));
            }
            Ok(PathBuf::from("python3"))
        }
        BasePython::Pyenv37 => {
            let root = pyenv_root()?;
            let py = root
                .join("versions")
                .join("3.7.16")
                .join("bin")
                .join("python3.7");
            if py.exists() {
                Ok(py)
            } else {
                Err(format!(
                    "no CPython 3.7.16 in pyenv ({} is missing)",
                    py.display()
                ))
            }
        }
    }
}

fn pyenv_root() -> Result<PathBuf, String> {
    let mut cmd = Command::new("pyenv");
    cmd.arg("root");
    match run_bounded(cmd, Duration::from_secs(60)) {
        Ok(out) if out.ok() && !out.stdout.trim().is_empty() => {
            Ok(PathBuf::from(out.stdout.trim()))
        }
        Ok(out) => Err(format!("`pyenv root` failed: {}", out.describe())),
        Err(e) => match std::env::var_os("PYENV_ROOT") {
            Some(r) if !r.is_empty() => Ok(PathBuf::from(r)),
            _ => Err(format!("no pyenv on PATH ({e}) and no PYENV_ROOT")),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Ports and child guards

/// A loopback port that was free a moment ago (bind 127.0.0.1:0, read it, release it).
/// Never hands out the same port twice in one process (the kernel readily gives a just-released
/// port to the next `bind(0)`, which would make parallel tests collide).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    // Hold every candidate until one is new, so the kernel cannot offer the same one again.
    let mut held = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
        held.push(l);
        assert!(held.len() < 1000, "no fresh loopback port");
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A child process (ours or a peer's) that is stopped with its whole process group on drop:
/// SIGTERM, a grace period, then SIGKILL.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    /// Holds `stdout.log` / `stderr.log` when the daemon's output goes to files.
    logs: Option<tempfile::TempDir>,
    grace: Duration,
}

impl Daemon {
    /// Spawns `cmd` in its own process group with stdin closed and stdout/stderr written to log
    /// files (read them with [`Daemon::stdout_log`] / [`Daemon::stderr_log`]).
    pub fn spawn(name: &str, mut cmd: Command) -> io::Result<Daemon> {
        let logs = tempfile::Builder::new().prefix("syn-daemon-").tempdir()?;
        let out = File::create(logs.path().join("stdout.log"))?;
        let err = File::create(logs.path().join("stderr.log"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        Self::start(name, cmd, Some(logs))
    }

    /// Spawns `cmd` in its own process group with stdio as the caller set it up
    /// (take pipes with [`Daemon::child_mut`]).
    pub fn spawn_with_stdio(name: &str, cmd: Command) -> io::Result<Daemon> {
        Self::start(name, cmd, None)
    }

    fn start(name: &str, mut cmd: Command, logs: Option<tempfile::TempDir>) -> io::Result<Daemon> {
        cmd.process_group(0);
        let child = cmd.spawn()?;
        Ok(Daemon {
            name: name.to_string(),
            child: Some(child),
            logs,
            grace: Duration::from_secs(10),
        })
    }

    /// How long [`Daemon::stop`] (and drop) waits after SIGTERM before SIGKILL.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// `Some(status)` once the process has exited (it is then reaped); `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        // An error means the child cannot be waited for any more: report it gone, with code 255.
        child
            .try_wait()
            .unwrap_or(Some(ExitStatus::from_raw(0xff00)))
    }

    pub fn stdout_log(&self) -> String {
        self.log("stdout.log")
    }

    pub fn stderr_log(&self) -> String {
        self.log("stderr.log")
    }

    fn log(&self, file: &str) -> String {
        self.logs
            .as_ref()
            .and_then(|d| fs::read(d.path().join(file)).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until 127.0.0.1:`port` accepts connections; `Err` if the process exits first or the
    /// time runs out.
    pub fn wait_port(&mut self, port: u16, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                return Err(format!(
                    "{} exited ({st}) before listening on {port}",
                    self.name
                ));
            }
            if port_open(port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not listen on {port} within {timeout:?}",
                    self.name
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the process group (SIGTERM, grace, SIGKILL) and returns the leader's exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            signal_group(&child, Signal::SIGKILL);
            return Some(st);
        }
        signal_group(&child, Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    signal_group(&child, Signal::SIGKILL);
                    break child.wait().ok();
                }
            }
        };
        // Whatever is left of the group (workers the leader did not take down).
        signal_group(&child, Signal::SIGKILL);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// A real Python service

/// A real Python Synapse 2.256 service (a Cortex or a CryoCell) on a free loopback port, root
/// password `secret`, HTTPS disabled. The process group is stopped on drop; a service made in a
/// temporary directory lives as long as it.
pub struct PyService {
    // Field order: the daemon is stopped before the directory is removed.
    daemon: Daemon,
    python: PathBuf,
    port: u16,
    dir: PathBuf,
    tls: Option<PyTls>,
    _tmp: Option<tempfile::TempDir>,
}

/// A [`PyService`] that listens on `ssl://` instead of `tcp://`.
#[derive(Clone)]
pub struct PyTls {
    /// The `hostname=` it serves (`DIR/certs/hosts/<hostname>.crt`).
    pub hostname: String,
    /// Its certdir, `DIR/certs` (also `SYN_CERT_DIR`, so `~/.syn/certs` is never read).
    pub certdir: PathBuf,
}

impl PyService {
    /// A fresh cortex in a temporary directory. `None` (after a SKIP line) without the peer;
    /// panics with the cortex's log if the peer is there but the cortex does not come up.
    pub fn cortex() -> Option<PyService> {
        Self::fresh("cortex")
    }

    /// A fresh CryoCell (`synapse.servers.cryotank`), as [`PyService::cortex`].
    pub fn cryotank() -> Option<PyService> {
        Self::fresh("cryotank")
    }

    /// A fresh Axon (`synapse.servers.axon`), as [`PyService::cortex`].
    pub fn axon() -> Option<PyService> {
        Self::fresh("axon")
    }

    fn fresh(kind: &'static str) -> Option<PyService> {
        let python = syn2_python()?;
        let tmp = tempfile::Builder::new()
            .prefix("syn-pyservice-")
            .tempdir()
            .expect("cannot make a temporary directory");
        let dir = tmp.path().join(kind);
        Some(Self::launch(kind, python, dir, Some(tmp), None))
    }

    /// A fresh cortex serving `ssl://127.0.0.1:PORT/?hostname=HOSTNAME` with a copy of the
    /// certdir `certs` (which must hold `hosts/HOSTNAME.crt` and `.key`) as its `DIR/certs`.
    pub fn cortex_ssl(certs: &Path, hostname: &str) -> Option<PyService> {
        let python = syn2_python()?;
        let tmp = tempfile::Builder::new()
            .prefix("syn-pyservice-")
            .tempdir()
            .expect("cannot make a temporary directory");
        let dir = tmp.path().join("cortex");
        let certdir = dir.join("certs");
        copy_tree(certs, &certdir).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} to {}: {e}",
                certs.display(),
                certdir.display()
            )
        });
        let tls = PyTls {
            hostname: hostname.to_owned(),
            certdir,
        };
        Some(Self::launch("cortex", python, dir, Some(tmp), Some(tls)))
    }

    /// Serves an existing cortex directory (made by Python Synapse 2.x, e.g. a backup copy).
    pub fn serve_cortex(dir: &Path) -> Option<PyService> {
        let python = syn2_python()?;
        Some(Self::launch(
            "cortex",
            python,
            dir.to_path_buf(),
            None,
            None,
        ))
    }

    /// Start `python -m synapse.servers.KIND DIR`.
    fn launch(
        kind: &'static str,
        python: PathBuf,
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        tls: Option<PyTls>,
    ) -> PyService {
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let secs = std::env::var("SYN_PEER_START_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(PEER_START_SECS);
        let t0 = Instant::now();
        let mut last_err = String::new();
        // A free port can be taken by someone else before the service binds it: try a few.
        for _attempt in 0..3 {
            let port = free_port();
            let listen = match &tls {
                None => format!("tcp://127.0.0.1:{port}"),
                Some(t) => format!("ssl://127.0.0.1:{port}/?hostname={}", t.hostname),
            };
            let mut cmd = Command::new(&python);
            if let Some(t) = &tls {
                cmd.env("SYN_CERT_DIR", &t.certdir);
            }
            cmd.args(["-m", &format!("synapse.servers.{kind}")])
                .arg("--telepath")
                .arg(listen)
                .args(["--https", "0", "--auth-passwd", ROOT_PASSWD])
                .args(["--health-sysctl-checks", "False"])
                .arg(&dir)
                // `--https 0` alone binds a random HTTPS port on all addresses; a null
                // `https:port` from the environment (which wins over cell.yaml) turns HTTPS off,
                // so only the loopback telepath port listens.
                .env(
                    format!("SYN_{}_HTTPS_PORT", kind.to_ascii_uppercase()),
                    "null",
                )
                .env("PYTHONUNBUFFERED", "1");
            let name = format!("python {kind}");
            let daemon = Daemon::spawn(&name, cmd)
                .unwrap_or_else(|e| panic!("cannot spawn the {name}: {e}"));
            let mut svc = PyService {
                daemon,
                python: python.clone(),
                port,
                dir: dir.clone(),
                tls: tls.clone(),
                _tmp: None,
            };
            match svc.wait_ready(Duration::from_secs(secs)) {
                Ok(()) => {
                    say(&format!(
                        "{name} up on 127.0.0.1:{port} in {:.1} s ({})",
                        t0.elapsed().as_secs_f64(),
                        dir.display()
                    ));
                    svc._tmp = tmp;
                    return svc;
                }
                Err(e) => {
                    let log = svc.daemon.stderr_log();
                    let clash = log.contains("Address already in use");
                    last_err = format!(
                        "{e}\n--- {name} stdout ---\n{}\n--- {name} stderr ---\n{log}",
                        svc.daemon.stdout_log()
                    );
                    drop(svc);
                    if !clash {
                        break;
                    }
                }
            }
        }
        panic!("the python {kind} did not come up:\n{last_err}");
    }

    /// Bounded: the port must accept and a real `getCellIden()` over telepath must answer.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        self.daemon.wait_port(self.port, timeout)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no telepath answer within {timeout:?}"));
            }
            let argv = self.tele_argv(&["call", "getCellIden"]);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = run_py_timeout(&self.python, "tele.py", &argv, left);
            if out.ok() && is_hex32(out.stdout.trim().trim_matches('"')) {
                return Ok(());
            }
            if let Some(st) = self.daemon.exited() {
                return Err(format!(
                    "the service exited ({st}); last probe:\n{}",
                    out.describe()
                ));
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// `tcp://root:secret@127.0.0.1:PORT/`, or for [`PyService::cortex_ssl`]
    /// `ssl://root:secret@127.0.0.1:PORT/?hostname=HOSTNAME`.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}/", self.port),
            Some(t) => format!(
                "ssl://root:{ROOT_PASSWD}@127.0.0.1:{}/?hostname={}",
                self.port, t.hostname
            ),
        }
    }

    /// Its TLS listener, for a cortex made by [`PyService::cortex_ssl`].
    pub fn tls(&self) -> Option<&PyTls> {
        self.tls.as_ref()
    }

    /// `tele.py` arguments reaching this service: the URL, `args`, then `--certdir` for TLS.
    fn tele_argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec![self.url()];
        argv.extend(args.iter().map(|a| a.to_string()));
        if let Some(t) = &self.tls {
            argv.push("--certdir".into());
            argv.push(t.certdir.display().to_string());
        }
        argv
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The service directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The peer python that runs it (also fit for the `tests/py` scripts).
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        format!("{}{}", self.daemon.stdout_log(), self.daemon.stderr_log())
    }

    /// `tele.py <url> ARGS...` against this service.
    pub fn tele(&self, args: &[&str]) -> RunOut {
        let argv = self.tele_argv(args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        run_py(&self.python, "tele.py", &argv)
    }

    /// Stops the service now (gracefully, so its LMDB files are closed) and keeps the directory
    /// for as long as `self` lives.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.daemon.stop()
    }
}

/// Copies the directory tree `from` to `to` (files and directories only).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// 32 lowercase hex digits (a Synapse guid).
pub fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Our own services

/// The `syn` binary under test.
pub fn syn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_syn"))
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
pub struct NotifySocket {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    /// Bind a fresh socket in a temporary directory.
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            sock,
            path,
            _dir: dir,
        }
    }

    /// The socket's path, for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait for a datagram containing `needle`; every datagram seen is returned on failure.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no {needle:?} within {timeout:?}; saw {seen:?}"));
            }
            self.sock.set_read_timeout(Some(left)).ok();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.contains(needle) {
                        return Ok(text);
                    }
                    seen.push(text);
                }
                Err(_) => return Err(format!("no {needle:?} within {timeout:?}; saw {seen:?}")),
            }
        }
    }
}

/// A `syn` service process on a directory, listening on a free loopback port with root's
/// password `secret`, started under a stand-in `NOTIFY_SOCKET` and ready once it said `READY=1`.
pub struct SynService {
    // The daemon is stopped before the directory goes away.
    pub daemon: Daemon,
    pub notify: NotifySocket,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl SynService {
    /// Start `syn KIND` in a new temporary directory.
    pub fn start(kind: &str, extra: &[&str]) -> SynService {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(kind);
        let mut svc = Self::start_in(kind, &dir, extra, &[]).expect("service starts");
        svc._tmp = Some(tmp);
        svc
    }

    /// Start `syn KIND DIR` with extra arguments and environment; `Err` with its stderr if it
    /// exits or does not become ready within 30 s.
    pub fn start_in(
        kind: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<SynService, String> {
        Self::start_on(kind, dir, free_port(), extra, env)
    }

    /// [`SynService::start_in`] listening on `port` (to start a service again where its
    /// clients look for it).
    pub fn start_on(
        kind: &str,
        dir: &Path,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<SynService, String> {
        let notify = NotifySocket::new();
        let mut cmd = Command::new(syn_bin());
        cmd.arg(kind)
            .arg(dir)
            .arg("--telepath")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--auth-passwd")
            .arg(ROOT_PASSWD)
            .args(extra)
            .env("NOTIFY_SOCKET", notify.path())
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut daemon = Daemon::spawn(kind, cmd).map_err(|e| e.to_string())?;
        daemon.set_grace(Duration::from_secs(20));
        if let Err(e) = notify.wait_for("READY=1", Duration::from_secs(30)) {
            let status = daemon.exited();
            return Err(format!(
                "{e}; exited: {status:?}; stderr: {}",
                daemon.stderr_log()
            ));
        }
        Ok(SynService {
            daemon,
            notify,
            port,
            dir: dir.to_owned(),
            _tmp: None,
        })
    }

    /// `tcp://root:secret@127.0.0.1:PORT/` plus `share`.
    pub fn url(&self, share: &str) -> String {
        format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}/{share}", self.port)
    }

    /// Send a signal to the service process.
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.daemon.pid() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
        }
    }

    /// Wait for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.daemon.exited() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Run `syn ARGS...` to completion (bounded at 60 s).
pub fn syn(args: &[&str]) -> RunOut {
    syn_env(args, &[])
}

/// Run `syn ARGS...` with the environment variables `vars` set, to completion (bounded at
/// 60 s).
pub fn syn_env(args: &[&str], vars: &[(&str, &str)]) -> RunOut {
    let mut cmd = Command::new(syn_bin());
    cmd.args(args).env_remove("RUST_LOG");
    cmd.envs(vars.iter().copied());
    run_bounded(cmd, Duration::from_secs(60)).expect("run syn")
}

/// The nodeedit that adds the node `inet:ipv4=ip`, in wire form (`storNodeEdits` takes a list
/// of these).
pub fn ipv4_nodeedit(ip: u32) -> syn::msgpack::Value {
    use syn::cortex::edits::{Edit, NodeEdit, stortype};
    let valu = syn::msgpack::Value::Int(ip.into());
    NodeEdit {
        buid: syn::cortex::model::buid("inet:ipv4", &valu),
        form: "inet:ipv4".into(),
        edits: vec![Edit::NodeAdd {
            valu,
            stortype: stortype::U32,
        }],
    }
    .to_value()
}

/// One kind of acknowledged write to a running `syn cortex`, for loads beside other work.
#[derive(Clone, Copy, Debug)]
pub enum CortexWrite {
    /// The storm query `[inet:ipv4=N]` by `callStorm` on the `cortex` share.
    Storm,
    /// The nodeedit adding `inet:ipv4=N` by `storNodeEditsNoLift` on `cortex/layer`.
    NodeEdit,
}

impl CortexWrite {
    /// The telepath share this write goes to.
    pub fn share(self) -> &'static str {
        match self {
            CortexWrite::Storm => "cortex",
            CortexWrite::NodeEdit => "cortex/layer",
        }
    }

    /// Add `inet:ipv4=n` through `proxy` (opened on [`CortexWrite::share`]); returns once the
    /// cortex acknowledged it.
    pub async fn write(self, proxy: &syn::telepath::Proxy, n: u32) {
        match self {
            CortexWrite::Storm => {
                let query = format!("[inet:ipv4={n}]");
                proxy
                    .call("callStorm", vec![query.into()])
                    .await
                    .expect("storm");
            }
            CortexWrite::NodeEdit => {
                let edits = vec![ipv4_nodeedit(n)];
                proxy
                    .call("storNodeEditsNoLift", vec![edits.into()])
                    .await
                    .expect("nodeedits");
            }
        }
    }
}
