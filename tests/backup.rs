//! `syn backup` and `syn restore` on real processes and real LMDB files.
//!
//! Most tests run the fixture service (tests/backup/fixture.rs): the real cell runtime with two
//! environments and an append-only log that each `put` writes together. It runs in a child
//! process made from this test binary ([`fixture_service_entry`]).

mod common;
#[path = "backup/fixture.rs"]
mod fixture;

use common::{
    CortexWrite, Daemon, NotifySocket, PyService, ROOT_PASSWD, RunOut, SynService, free_port, syn,
    syn_bin, syn_env,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syn::storage::Slab;
use syn::telepath::Proxy;

/// The variable that turns this test binary into the fixture service.
const FIXTURE_ENV: &str = "SYN_BACKUP_FIXTURE_ARGS";

/// Not a test: the entry point of the fixture service when the backup tests run this binary
/// as one (they set `SYN_BACKUP_FIXTURE_ARGS`).
#[test]
#[ignore = "the fixture service's entry point, run by the other tests"]
fn fixture_service_entry() {
    let Ok(args) = std::env::var(FIXTURE_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("fixture args");
    std::process::exit(fixture::serve(args));
}

/// The fixture service running on a directory.
struct FixtureProc {
    daemon: Daemon,
    _notify: NotifySocket,
    port: u16,
}

impl FixtureProc {
    fn start(dir: &Path) -> FixtureProc {
        let notify = NotifySocket::new();
        let port = free_port();
        let args = serde_json::json!([
            dir,
            "--telepath",
            format!("tcp://127.0.0.1:{port}"),
            "--auth-passwd",
            ROOT_PASSWD
        ]);
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "fixture_service_entry",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(FIXTURE_ENV, args.to_string())
        .env("NOTIFY_SOCKET", notify.path())
        .env_remove("RUST_LOG");
        let mut daemon = Daemon::spawn("fixture", cmd).expect("spawn the fixture");
        daemon.set_grace(Duration::from_secs(20));
        if let Err(e) = notify.wait_for("READY=1", Duration::from_secs(60)) {
            panic!("the fixture did not start: {e}\n{}", daemon.stderr_log());
        }
        FixtureProc {
            daemon,
            _notify: notify,
            port,
        }
    }

    fn url(&self) -> String {
        format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}/", self.port)
    }

    fn stop(mut self) {
        let status = self.daemon.stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "the fixture stopped with {status:?}:\n{}",
            self.daemon.stderr_log()
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Call `meth` on the service and return the result as an integer (or 0 for none).
fn call(
    rt: &tokio::runtime::Runtime,
    url: &str,
    meth: &str,
    args: Vec<syn::msgpack::Value>,
) -> i64 {
    rt.block_on(async {
        let proxy = Proxy::open(url).await.expect("connect");
        let v = proxy.call(meth, args).await.expect(meth);
        v.as_i64().unwrap_or(0)
    })
}

/// The sequence numbers stored in one environment of a backup (or a stopped service).
fn seqs_in(env: &Path) -> BTreeSet<u64> {
    let slab = Slab::open_snapshot(env).expect("open the copy");
    let db = slab.db("items", false).expect("items");
    slab.read(|r| {
        let mut out = BTreeSet::new();
        for entry in db.iter(r)? {
            let (k, _) = entry?;
            if k.len() == 8 {
                out.insert(u64::from_be_bytes(k.try_into().expect("8 bytes")));
            }
        }
        Ok(out)
    })
    .expect("read the copy")
}

fn manifest(dir: &Path) -> Json {
    let text = fs::read(dir.join("syn-backup.json")).expect("manifest");
    serde_json::from_slice(&text).expect("manifest json")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The fixture service running on `dir` with filler data (`count` records of `size` bytes in
/// each environment), and a runtime to call it from.
fn filled_fixture(dir: &Path, count: i64, size: i64) -> (FixtureProc, tokio::runtime::Runtime) {
    let svc = FixtureProc::start(dir);
    let rt = runtime();
    call(&rt, &svc.url(), "fill", vec![count.into(), size.into()]);
    (svc, rt)
}

/// A fixture service on `dir` with `count` filler records of `size` bytes in each
/// environment, all but one in `keep_every` deleted again (a fragmented environment), then
/// `puts` sequence writes.
fn fragmented_fixture(
    dir: &Path,
    count: i64,
    size: i64,
    keep_every: i64,
    puts: usize,
) -> (FixtureProc, tokio::runtime::Runtime) {
    let (svc, rt) = filled_fixture(dir, count, size);
    call(&rt, &svc.url(), "trim", vec![keep_every.into()]);
    for _ in 0..puts {
        call(&rt, &svc.url(), "put", vec![]);
    }
    (svc, rt)
}

/// A stopped fixture service directory `svc` in a new temporary directory, with filler data
/// (`count` records of `size` bytes in each environment) and `puts` sequence writes.
fn stopped_fixture(count: i64, size: i64, puts: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let (svc, rt) = filled_fixture(&dir, count, size);
    for _ in 0..puts {
        call(&rt, &svc.url(), "put", vec![]);
    }
    svc.stop();
    (tmp, dir)
}

/// What a client writes while a live backup runs; each write is acknowledged with a number.
#[derive(Clone, Copy)]
enum Load {
    /// The fixture's `put`: acknowledged with its sequence number.
    FixturePut,
    /// A cortex write adding `inet:ipv4=N`: acknowledged with N.
    Cortex(CortexWrite),
}

impl Load {
    async fn write(self, proxy: &Proxy, n: u64) -> u64 {
        match self {
            Load::FixturePut => {
                let seq = proxy.call("put", vec![]).await.expect("put");
                seq.as_i64().unwrap() as u64
            }
            Load::Cortex(kind) => {
                kind.write(proxy, n as u32).await;
                n
            }
        }
    }
}

/// What [`live_backup_under_load`] saw.
struct LiveRun {
    /// Writes acknowledged before the backup was started.
    acked_before: Vec<u64>,
    /// A write acknowledged while the backup was stopped right after its snapshot point.
    during: u64,
}

/// Take a live backup of `dir` into `dst` while clients (one per `(url, load)`) keep writing.
/// Once the backup reports its snapshot point it is stopped (SIGSTOP) and one more write
/// (the first client's kind) must be acknowledged meanwhile: the hold is over.
fn live_backup_under_load(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    dst: &Path,
    clients: &[(String, Load)],
    extra_args: &[&str],
) -> LiveRun {
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Storm and nodeedit clients write numbers nobody else writes.
    let next = Arc::new(AtomicU64::new(1));
    let writers: Vec<_> = clients
        .iter()
        .map(|(url, load)| {
            let (url, load) = (url.clone(), *load);
            let (acked, stop, next) = (acked.clone(), stop.clone(), next.clone());
            rt.spawn(async move {
                let proxy = Proxy::open(&url).await.expect("connect");
                while !stop.load(Ordering::SeqCst) {
                    let n = load
                        .write(&proxy, next.fetch_add(1, Ordering::SeqCst))
                        .await;
                    acked.lock().unwrap().push(n);
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 30 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let acked_before: Vec<u64> = acked.lock().unwrap().clone();

    let mut backup = Command::new(syn_bin())
        .args(["backup", s(dir), s(dst), "--json", "--hold-timeout", "60"])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syn backup");
    let mut lines = BufReader::new(backup.stdout.take().unwrap()).lines();
    let mut snapshot = None;
    for line in lines.by_ref() {
        let line: Json = serde_json::from_str(&line.unwrap()).unwrap();
        if line["type"] == "snapshot" {
            snapshot = Some(line);
            break;
        }
    }
    let snapshot = snapshot.expect("a snapshot event");
    assert_eq!(snapshot["mode"], "live");
    // Frozen after its snapshot point, the backup must not keep the service's writes held:
    // a write now is acknowledged (and is not in the backup).
    kill(Pid::from_raw(backup.id() as i32), Signal::SIGSTOP).unwrap();
    let (url, load) = clients[0].clone();
    let n = next.fetch_add(1, Ordering::SeqCst);
    let during = rt.block_on(async {
        let proxy = Proxy::open(&url).await.expect("connect");
        tokio::time::timeout(Duration::from_secs(30), load.write(&proxy, n))
            .await
            .expect("a write is acknowledged while the backup copies")
    });
    kill(Pid::from_raw(backup.id() as i32), Signal::SIGCONT).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = backup.wait().unwrap();
    assert!(
        status.success(),
        "syn backup: {status}\n{}",
        rest.join("\n")
    );
    let summary: Json = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["mode"], "live");

    stop.store(true, Ordering::SeqCst);
    for w in writers {
        rt.block_on(w).unwrap();
    }
    LiveRun {
        acked_before,
        during,
    }
}

#[test]
fn live_backup_holds_exactly_the_writes_acknowledged_before_its_snapshot() {
    live_backup_holds_exactly_the_acknowledged_writes(&[]);
}

#[test]
fn a_rebuilding_live_backup_holds_exactly_the_writes_acknowledged_before_its_snapshot() {
    live_backup_holds_exactly_the_acknowledged_writes(&["--rebuild"]);
}

/// A live backup (`syn backup` with `extra_args`) of a service under load holds the writes
/// acknowledged before its snapshot point and none after, in every environment and its log;
/// it verifies, restores, and the service starts on it.
fn live_backup_holds_exactly_the_acknowledged_writes(extra_args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let dst = tmp.path().join("b1");
    // Enough data that the copy takes a while after the snapshot point.
    let (svc, rt) = filled_fixture(&dir, 30_000, 1000);
    let url = svc.url();
    let clients = vec![(url.clone(), Load::FixturePut); 3];
    let LiveRun {
        acked_before,
        during,
    } = live_backup_under_load(&rt, &dir, &dst, &clients, extra_args);
    let total = call(&rt, &url, "count", vec![]) as u64;

    // The log's cut says how many writes the snapshot holds: exactly those, everywhere.
    let m = manifest(&dst);
    let logs = m["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{m}");
    assert_eq!(logs[0]["path"], fixture::LOG_FILE);
    let cut = logs[0]["length"].as_u64().unwrap() / 8;
    let log = fs::read(dst.join(fixture::LOG_FILE)).unwrap();
    assert_eq!(log.len() as u64, cut * 8);
    let logged: Vec<u64> = log
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(logged, (0..cut).collect::<Vec<_>>());
    let expected: BTreeSet<u64> = (0..cut).collect();
    for env in fixture::ENVS {
        let got = seqs_in(&dst.join(format!("slabs/{env}.lmdb")));
        assert_eq!(got, expected, "{env} holds other writes than the log's cut");
    }
    assert!(
        acked_before.iter().all(|s| *s < cut),
        "a write acknowledged before the backup is missing"
    );
    assert!(
        during >= cut,
        "a write acknowledged after the snapshot is in the backup"
    );
    assert!(total > cut, "writes went on after the snapshot point");
    assert_eq!(m["mode"], "live");
    assert_eq!(m["service"]["type"], "fixture");
    assert!(m["held_ms"].as_u64().is_some());

    // The backup verifies, restores, and the service starts on it with exactly that state.
    let out = syn(&["backup", "verify", s(&dst)]);
    assert!(out.ok(), "{}", out.describe());
    svc.stop();
    let restored = tmp.path().join("restored");
    let out = syn(&["restore", s(&dst), s(&restored)]);
    assert!(out.ok(), "{}", out.describe());
    assert!(!restored.join("syn-backup.json").exists());
    let again = FixtureProc::start(&restored);
    assert_eq!(call(&rt, &again.url(), "count", vec![]) as u64, cut);
    assert_eq!(call(&rt, &again.url(), "put", vec![]) as u64, cut);
    again.stop();
}

/// The `inet:ipv4` values of a running cortex: the nodes its LMDB layer holds, and those its
/// edit log's records add.
fn cortex_ipv4s(rt: &tokio::runtime::Runtime, svc: &SynService) -> (BTreeSet<u64>, BTreeSet<u64>) {
    use syn::msgpack::Value;
    let int = |v: &Value| v.as_i64().expect("an integer") as u64;
    rt.block_on(async {
        let core = Proxy::open(&svc.url("cortex")).await.expect("connect");
        let msgs = core.call("storm", vec!["inet:ipv4".into()]).await.unwrap();
        let mut nodes = BTreeSet::new();
        for m in msgs.as_array().unwrap() {
            let m = m.as_array().unwrap();
            if m[0].as_str() == Some("node") {
                // ("node", ((form, valu), info))
                nodes.insert(int(&m[1].as_array().unwrap()[0].as_array().unwrap()[1]));
            }
        }
        let layer = Proxy::open(&svc.url("cortex/layer"))
            .await
            .expect("connect");
        let log = layer
            .call_kw(
                "syncNodeEdits",
                vec![0i64.into()],
                vec![("wait", false.into())],
            )
            .await
            .unwrap();
        let mut logged = BTreeSet::new();
        // (offset, [(buid, form, [(kind, info, nexts)])]); kind 0 adds the node, info[0] is it.
        for record in log.as_array().unwrap() {
            for ne in record.as_array().unwrap()[1].as_array().unwrap() {
                let ne = ne.as_array().unwrap();
                if ne[1].as_str() != Some("inet:ipv4") {
                    continue;
                }
                for edit in ne[2].as_array().unwrap() {
                    let edit = edit.as_array().unwrap();
                    if edit[0].as_i64() == Some(0) {
                        logged.insert(int(&edit[1].as_array().unwrap()[0]));
                    }
                }
            }
        }
        (nodes, logged)
    })
}

#[test]
fn live_backup_of_a_cortex_under_storm_and_nodeedit_writes_holds_one_moment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cortex");
    let dst = tmp.path().join("b1");
    let svc = SynService::start_in("cortex", &dir, &[], &[]).expect("syn cortex starts");
    let rt = runtime();
    let clients: Vec<(String, Load)> = [
        CortexWrite::NodeEdit,
        CortexWrite::Storm,
        CortexWrite::Storm,
        CortexWrite::NodeEdit,
    ]
    .into_iter()
    .map(|kind| (svc.url(kind.share()), Load::Cortex(kind)))
    .collect();
    let LiveRun {
        acked_before,
        during,
    } = live_backup_under_load(&rt, &dir, &dst, &clients, &[]);

    // The layer's edit log is cut at the snapshot point, not copied as it was later.
    let m = manifest(&dst);
    assert_eq!(m["service"]["type"], "cortex");
    let logs = m["logs"].as_array().unwrap();
    assert!(!logs.is_empty(), "the edit log was not cut: {m}");
    for log in logs {
        let path = log["path"].as_str().unwrap();
        assert!(
            path.starts_with("layers/") && path.contains("/nodeedits/") && path.ends_with(".seg"),
            "{path}"
        );
    }
    let out = syn(&["backup", "verify", s(&dst)]);
    assert!(out.ok(), "{}", out.describe());
    drop(svc);

    // A cortex started on the restored copy holds every write acknowledged before the backup
    // and not the one acknowledged after its snapshot point; its LMDB layer and its edit log
    // hold the same records: nothing to replay when it opens (a log copied later than LMDB's
    // snapshot would hold more, and the cortex would replay them into LMDB).
    let restored = tmp.path().join("restored");
    let out = syn(&["restore", s(&dst), s(&restored)]);
    assert!(out.ok(), "{}", out.describe());
    let again = SynService::start_in("cortex", &restored, &[], &[("RUST_LOG", "info")])
        .expect("the copy starts");
    let log = again.daemon.stderr_log();
    assert!(log.contains("serving cortex"), "{log}");
    assert!(
        !log.contains("replaying the edit log"),
        "the backup's edit log holds records its LMDB layer lacks:\n{log}"
    );
    let (nodes, logged) = cortex_ipv4s(&rt, &again);
    assert_eq!(nodes, logged, "LMDB and the edit log disagree");
    let missing: Vec<&u64> = acked_before.iter().filter(|n| !nodes.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing: {missing:?}"
    );
    assert!(
        !nodes.contains(&during),
        "a write acknowledged after the snapshot point is in the backup"
    );
}

/// A live backup killed with SIGKILL inside its copy leaves its read transactions in the
/// cortex's LMDB lock files; the cortex frees them, or LMDB could never again reuse a page
/// freed after that snapshot. `--limit-rate` keeps the backup inside its copy: its first
/// chunk goes at once, the next one would wait about 17 minutes.
#[test]
fn the_cortex_frees_the_readers_of_a_live_backup_killed_in_its_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cortex");
    let svc = SynService::start_in("cortex", &dir, &[], &[("RUST_LOG", "info")])
        .expect("syn cortex starts");
    let rt = runtime();
    // More than one chunk (1 MiB) of layer, so that its copy is still running.
    for first in (0..20_000).step_by(1000) {
        let edits: Vec<_> = (first..first + 1000).map(common::ipv4_nodeedit).collect();
        call(
            &rt,
            &svc.url("cortex/layer"),
            "storNodeEditsNoLift",
            vec![edits.into()],
        );
    }
    let dst = tmp.path().join("b1");
    let mut child = Command::new(syn_bin())
        .args(["backup", s(&dir), s(&dst), "--json", "--limit-rate", "1K"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let snapshot = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("\"snapshot\""));
    assert!(snapshot.is_some(), "the backup took no snapshot");
    child.kill().unwrap();
    child.wait().unwrap();
    let freed = "freed the LMDB reader slots of processes that died in a read transaction";
    let mut waited = 0;
    while !svc.daemon.stderr_log().contains(freed) && waited < 600 {
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let log = svc.daemon.stderr_log();
    assert!(log.contains(freed), "{log}");
    // The cortex writes on.
    let out = syn(&["backup", s(&dir), s(&tmp.path().join("b2"))]);
    assert!(out.ok(), "{}", out.describe());
}

#[test]
fn kill_9_at_any_moment_never_leaves_a_backup_that_looks_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let (svc, rt) = filled_fixture(&dir, 40_000, 1000);
    call(&rt, &svc.url(), "put", vec![]);
    // How long one whole backup takes here, to spread the kills over it.
    let t0 = std::time::Instant::now();
    let out = syn(&["backup", s(&dir), s(&tmp.path().join("whole"))]);
    assert!(out.ok(), "{}", out.describe());
    let whole = t0.elapsed().as_millis() as u64;

    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut outcomes = [0usize; 3]; // nothing left, a partial left, whole
    for round in 0..8 {
        let dst = tmp.path().join(format!("k{round}"));
        let mut child = Command::new(syn_bin())
            .args(["backup", s(&dir), s(&dst)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % (whole + 20)));
        child.kill().unwrap();
        child.wait().unwrap();
        let partial = tmp.path().join(format!("k{round}.partial"));
        outcomes[if dst.exists() {
            2
        } else if partial.exists() {
            1
        } else {
            0
        }] += 1;
        if dst.exists() {
            // Killed after the rename: then it is whole.
            let out = syn(&["backup", "verify", s(&dst)]);
            assert!(out.ok(), "round {round}: {}", out.describe());
        }
        // The next run reports and removes what the killed one left, and succeeds.
        if partial.exists() {
            assert!(!dst.exists());
            let out = syn(&["backup", s(&dir), s(&dst), "--verify"]);
            assert!(out.ok(), "round {round}: {}", out.describe());
            assert!(
                out.stderr.contains("left by a backup that did not finish"),
                "{}",
                out.describe()
            );
            assert!(!partial.exists());
        }
    }
    common::say(&format!(
        "kill -9 over a {whole}ms backup: {} left nothing, {} a partial, {} a whole backup",
        outcomes[0], outcomes[1], outcomes[2]
    ));
    // The service never stayed held: it still takes writes.
    call(&rt, &svc.url(), "put", vec![]);
    svc.stop();
}

/// Unmounts a test's tmpfs when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mount a tmpfs of `bytes` at `at`; `None` (after a SKIP line) where that cannot be done.
fn small_tmpfs(at: &Path, bytes: u64) -> Option<Mounted> {
    fs::create_dir_all(at).unwrap();
    let size = format!("size={}k", bytes.div_ceil(4096) * 4);
    match Command::new("mount")
        .args(["-t", "tmpfs", "-o", &size, "tmpfs", s(at)])
        .output()
    {
        Ok(o) if o.status.success() => Some(Mounted(at.to_path_buf())),
        Ok(o) => {
            common::skip(&format!(
                "cannot mount a small tmpfs: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            None
        }
        Err(e) => {
            common::skip(&format!("cannot run mount: {e}"));
            None
        }
    }
}

#[test]
fn a_destination_that_fills_up_during_the_copy_gives_the_space_error_and_leaves_nothing() {
    // Large duplicate sets live in sub-trees that LMDB's page counts leave out, so the
    // estimate runs low: a destination with room for the estimate fills up during the copy.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let env = src.join("dups.lmdb");
    {
        let slab = Slab::open(&env, syn::storage::SlabOptions::default()).unwrap();
        let db = slab.db("index", true).unwrap();
        slab.write(|w| {
            for k in 0..400u32 {
                for v in 0..2000u32 {
                    db.put(w, &k.to_be_bytes(), &v.to_be_bytes())?;
                }
            }
            Ok(())
        })
        .unwrap();
    }
    let source = Slab::open_readonly(&env).unwrap();
    let stats = source.stats().unwrap();
    let estimate = stats.used_pages * u64::from(stats.page_size);
    let probe = source.copy_compacted_to(tmp.path().join("probe")).unwrap();
    drop(source);
    let need = estimate + estimate / 20;
    assert!(
        probe > need + 64 * 1024,
        "estimate {estimate}, copy {probe}: no room to test"
    );
    let small = tmp.path().join("small");
    let Some(_mounted) = small_tmpfs(&small, need + (probe - need) / 2) else {
        return;
    };
    let out = syn(&["backup", s(&src), s(&small.join("b1"))]);
    assert_eq!(out.code(), Some(13), "{}", out.describe());
    assert!(out.stderr.contains("filled up"), "{}", out.describe());
    assert_eq!(
        fs::read_dir(&small).unwrap().count(),
        0,
        "something was left"
    );
}

#[test]
fn a_destination_too_small_gives_the_space_error_and_leaves_nothing() {
    let (tmp, dir) = stopped_fixture(8_000, 1000, 3);
    let small = tmp.path().join("small");
    let Some(_mounted) = small_tmpfs(&small, 2 << 20) else {
        return;
    };
    let out = syn(&["backup", s(&dir), s(&small.join("b1"))]);
    assert_eq!(out.code(), Some(13), "{}", out.describe());
    assert!(
        out.stderr.contains("not enough space"),
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.describe());
    assert_eq!(
        fs::read_dir(&small).unwrap().count(),
        0,
        "something was left"
    );
    let out = syn(&["backup", s(&dir), s(&small.join("b1")), "--json"]);
    assert_eq!(out.code(), Some(13));
    let lines = out.json_lines();
    assert_eq!(lines.last().unwrap()["type"], "error");
    assert_eq!(lines.last().unwrap()["code"], 13);
}

/// Flip the lowest bit of the byte at `at(length)` of `file`.
fn flip_a_bit(file: &Path, at: impl FnOnce(usize) -> usize) {
    let mut bytes = fs::read(file).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x01;
    fs::write(file, &bytes).unwrap();
}

/// `syn backup verify` fails on the backup `dst`, naming `file` and saying `why`.
fn verify_fails_naming(dst: &Path, file: &str, why: &str) {
    let out = syn(&["backup", "verify", s(dst)]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(file) && out.stderr.contains(why),
        "{}",
        out.describe()
    );
}

#[test]
fn one_flipped_byte_fails_verify_and_names_the_file() {
    let (tmp, dir) = stopped_fixture(2_000, 500, 5);
    let dst = tmp.path().join("b1");
    let out = syn(&["backup", s(&dir), s(&dst), "--verify"]);
    assert!(out.ok(), "{}", out.describe());
    let m = manifest(&dst);
    assert_eq!(m["mode"], "offline");
    assert_eq!(m["service"]["type"], "cell");
    let alpha = m["envs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "slabs/alpha.lmdb")
        .unwrap();
    assert_eq!(alpha["dbs"][0]["name"], "items");
    assert_eq!(alpha["dbs"][0]["entries"], 2_005);

    flip_a_bit(&dst.join("slabs/alpha.lmdb/data.mdb"), |len| len / 2 + 123);
    verify_fails_naming(&dst, "slabs/alpha.lmdb/data.mdb", "differs");
    let list = syn(&["backup", "list", s(tmp.path()), "--json"]);
    let b1 = list
        .json_lines()
        .into_iter()
        .find(|l| l["name"] == "b1")
        .unwrap();
    assert_eq!(b1["state"], "damaged");
    // Restore refuses a damaged backup and changes nothing.
    let out = syn(&["restore", s(&dst), s(&dir)]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(dir.join("slabs/alpha.lmdb/data.mdb").exists());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
}

#[test]
fn sha256_digests_on_request_match_every_file_and_verify_and_restore() {
    let (tmp, dir) = stopped_fixture(2_000, 500, 5);
    let blake = tmp.path().join("b0");
    let out = syn(&["backup", s(&dir), s(&blake)]);
    assert!(out.ok(), "{}", out.describe());
    let m = manifest(&blake);
    assert_eq!(m["format"], 2);
    assert!(m["files"][0]["blake3"].is_string(), "{m}");

    // Format 1: every file's SHA-256, as sha256sum would print it.
    let dst = tmp.path().join("b1");
    let out = syn(&["backup", s(&dir), s(&dst), "--digest", "sha256"]);
    assert!(out.ok(), "{}", out.describe());
    let m = manifest(&dst);
    assert_eq!(m["format"], 1);
    let files = m["files"].as_array().unwrap();
    assert!(files.len() >= 3, "{m}");
    for file in files {
        let bytes = fs::read(dst.join(file["path"].as_str().unwrap())).unwrap();
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        assert_eq!(file["sha256"], sha256.as_str(), "{file}");
        assert!(file.get("blake3").is_none(), "{file}");
    }
    let out = syn(&["backup", "verify", s(&dst)]);
    assert!(out.ok(), "{}", out.describe());
    let restored = tmp.path().join("restored");
    let out = syn(&["restore", s(&dst), s(&restored)]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(seqs_in(&restored.join("slabs/beta.lmdb")), (0..5).collect());

    // And a changed file still fails it, by its SHA-256.
    flip_a_bit(&dst.join("slabs/beta.lmdb/data.mdb"), |len| len - 1);
    verify_fails_naming(&dst, "slabs/beta.lmdb/data.mdb", "SHA-256");
}

#[test]
fn prune_keeps_the_right_verified_backups_and_never_counts_others() {
    let (tmp, dir) = stopped_fixture(10, 10, 1);
    let root = tmp.path().join("backups");
    fs::create_dir(&root).unwrap();
    let b = |n: &str| root.join(n);
    for name in ["b1", "b2", "b3", "b4", "b5", "b6"] {
        let out = syn(&["backup", s(&dir), s(&b(name))]);
        assert!(out.ok(), "{}", out.describe());
    }
    for name in ["b1", "b2", "b4", "b5"] {
        assert!(syn(&["backup", "verify", s(&b(name))]).ok());
    }
    // b5 was verified, then damaged; b3 and b6 were never verified; a run left x.partial.
    fs::write(b("b5").join("cell.guid"), b"tampered").unwrap();
    assert_eq!(syn(&["backup", "verify", s(&b("b5"))]).code(), Some(1));
    fs::create_dir(b("x.partial")).unwrap();
    fs::write(b("x.partial/cell.guid"), b"half").unwrap();

    let states: Vec<(String, String)> = syn(&["backup", "list", s(&root), "--json"])
        .json_lines()
        .into_iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().into(),
                l["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        states,
        want(&[
            ("b1", "verified"),
            ("b2", "verified"),
            ("b3", "complete"),
            ("b4", "verified"),
            ("b5", "damaged"),
            ("b6", "complete"),
            ("x.partial", "partial"),
        ])
    );
    let dry = syn(&["backup", "prune", s(&root), "--keep-last", "2", "--dry-run"]);
    assert!(dry.ok(), "{}", dry.describe());
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        7,
        "a dry run deleted something"
    );

    let out = syn(&["backup", "prune", s(&root), "--keep-last", "2", "--json"]);
    assert!(out.ok(), "{}", out.describe());
    let mut left: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // The two newest verified (b2, b4) count; the damaged b5 and the unverified b6 are newer
    // than both and stay uncounted; the older unverified b3, b1 and the leftover partial go.
    assert_eq!(left, vec!["b2", "b4", "b5", "b6"]);
    let out = syn(&["backup", "prune", s(&root)]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
}

#[test]
fn a_cold_backup_restored_in_place_defragments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let (svc, rt) = fragmented_fixture(&dir, 20_000, 1000, 20, 7);
    // A restore onto a running service is refused.
    let dst = tmp.path().join("svc.compact");
    let out = syn(&["backup", s(&dir), s(&dst)]);
    assert!(out.ok(), "{}", out.describe());
    let out = syn(&["restore", s(&dst), s(&dir)]);
    assert_eq!(out.code(), Some(11), "{}", out.describe());
    svc.stop();

    // The recipe: stop, back up, restore in place, start.
    let before = fs::metadata(dir.join("slabs/alpha.lmdb/data.mdb"))
        .unwrap()
        .len();
    fs::remove_dir_all(&dst).unwrap();
    let out = syn(&["backup", s(&dir), s(&dst)]);
    assert!(out.ok(), "{}", out.describe());
    let old = tmp.path().join("svc.old");
    let out = syn(&["restore", s(&dst), s(&dir), "--old", s(&old)]);
    assert!(out.ok(), "{}", out.describe());
    assert!(out.stdout.contains(s(&old)), "{}", out.describe());
    let after = fs::metadata(dir.join("slabs/alpha.lmdb/data.mdb"))
        .unwrap()
        .len();
    assert!(after * 4 < before, "not defragmented: {before} -> {after}");
    assert_eq!(seqs_in(&dir.join("slabs/beta.lmdb")), (0..7).collect());
    let again = FixtureProc::start(&dir);
    assert_eq!(call(&rt, &again.url(), "count", vec![]), 7);
    again.stop();
}

#[test]
fn refusals_and_stops_have_their_own_exit_codes() {
    let (tmp, dir) = stopped_fixture(60_000, 1000, 1);
    let t = |n: &str| tmp.path().join(n);

    let out = syn(&["backup", s(&t("missing")), s(&t("x"))]);
    assert_eq!(out.code(), Some(10), "{}", out.describe());
    fs::create_dir(t("exists")).unwrap();
    let out = syn(&["backup", s(&dir), s(&t("exists"))]);
    assert_eq!(out.code(), Some(12), "{}", out.describe());
    let out = syn(&["backup", "verify", s(&t("missing"))]);
    assert_eq!(out.code(), Some(10), "{}", out.describe());
    let out = syn(&["backup", s(&dir), s(&dir.join("inside"))]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());

    // One backup of a directory at a time.
    let held = fs::File::open(&dir).unwrap();
    let lock = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = syn(&["backup", s(&dir), s(&t("y"))]);
    assert_eq!(out.code(), Some(11), "{}", out.describe());
    drop(lock);

    // A rate that is not one, on the command line or in the environment.
    let out = syn(&["backup", s(&dir), s(&t("r")), "--limit-rate", "fast"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    let out = syn_env(
        &["backup", s(&dir), s(&t("r"))],
        &[("SYN_BACKUP_LIMIT_RATE", "fast")],
    );
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("SYN_BACKUP_LIMIT_RATE"),
        "{}",
        out.describe()
    );
    assert!(!t("r").exists() && !t("r.partial").exists());

    // Too long, and interrupted: nothing is kept.
    let out = syn(&["backup", s(&dir), s(&t("slow")), "--max-duration", "0.001s"]);
    assert_eq!(out.code(), Some(14), "{}", out.describe());
    assert!(!t("slow").exists() && !t("slow.partial").exists());
    let mut child = Command::new(syn_bin())
        .args(["backup", s(&dir), s(&t("int")), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Interrupt once the copy is under way.
    for line in lines.by_ref() {
        if line.unwrap().contains("\"snapshot\"") {
            break;
        }
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    if status.code() == Some(0) {
        // It finished before the signal arrived; then it is whole.
        assert!(syn(&["backup", "verify", s(&t("int"))]).ok());
    } else {
        assert_eq!(status.code(), Some(130), "{rest:?}");
        assert!(rest.last().unwrap().contains("\"error\""), "{rest:?}");
        assert!(!t("int").exists() && !t("int.partial").exists());
    }
}

/// `syn backup SRC DST` with `SYN_BACKUP_REBUILD` set to `value`.
fn backup_with_rebuild_env(src: &Path, dst: &Path, value: &str) -> RunOut {
    syn_env(
        &["backup", s(src), s(dst)],
        &[("SYN_BACKUP_REBUILD", value)],
    )
}

#[test]
fn syn_backup_rebuild_from_the_environment_makes_a_smaller_backup() {
    // Deleting every other record leaves the pages half empty.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let (svc, _rt) = fragmented_fixture(&dir, 3000, 500, 2, 3);
    svc.stop();
    let env = "slabs/alpha.lmdb/data.mdb";
    let size = |dst: &Path| fs::metadata(dst.join(env)).unwrap().len();
    let compacted = tmp.path().join("compacted");
    let out = backup_with_rebuild_env(&dir, &compacted, "0");
    assert!(out.ok(), "{}", out.describe());
    let rebuilt = tmp.path().join("rebuilt");
    let out = backup_with_rebuild_env(&dir, &rebuilt, "yes");
    assert!(out.ok(), "{}", out.describe());
    assert!(
        size(&rebuilt) * 10 < size(&compacted) * 9,
        "rebuilt {} vs compacted {}",
        size(&rebuilt),
        size(&compacted)
    );
    let out = syn(&["backup", "verify", s(&rebuilt)]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(
        seqs_in(&rebuilt.join("slabs/alpha.lmdb")),
        seqs_in(&dir.join("slabs/alpha.lmdb"))
    );

    // A value that is neither on nor off is a usage error, and nothing is written.
    let refused = tmp.path().join("refused");
    let out = backup_with_rebuild_env(&dir, &refused, "maybe");
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("SYN_BACKUP_REBUILD"),
        "{}",
        out.describe()
    );
    assert!(!refused.exists());
}

#[test]
fn a_python_synapse_cortex_directory_backs_up_and_python_serves_the_copy() {
    let Some(mut core) = PyService::cortex() else {
        return;
    };
    let out = core.tele(&["storm", "for $i in $lib.range(300) { [ inet:ipv4=$i ] }"]);
    assert!(out.ok(), "{}", out.describe());
    let count = core.tele(&["call", "count", "inet:ipv4"]);
    assert_eq!(count.stdout.trim(), "300", "{}", count.describe());
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("pycopy");
    // While Python runs, its directory is not ours to read.
    let out = syn(&["backup", s(core.dir()), s(&dst)]);
    assert_eq!(out.code(), Some(11), "{}", out.describe());
    assert!(!dst.exists());

    core.stop();
    let out = syn(&["backup", s(core.dir()), s(&dst), "--verify", "--json"]);
    assert!(out.ok(), "{}", out.describe());
    let m = manifest(&dst);
    assert_eq!(m["mode"], "offline");
    assert_eq!(m["service"]["type"], "cortex");
    assert!(m["envs"].as_array().unwrap().len() >= 3, "{m}");
    assert!(!dst.join("sock").exists());

    let copy = PyService::serve_cortex(&dst).expect("the peer is installed");
    let count = copy.tele(&["call", "count", "inet:ipv4"]);
    assert_eq!(
        count.stdout.trim(),
        "300",
        "{}\n{}",
        count.describe(),
        copy.log()
    );
    drop(copy);

    // Rebuilt, every environment is written anew; Python opens it with its own flags.
    let rebuilt = tmp.path().join("pyrebuilt");
    let out = syn(&[
        "backup",
        s(core.dir()),
        s(&rebuilt),
        "--rebuild",
        "--verify",
    ]);
    assert!(out.ok(), "{}", out.describe());
    // No environment is larger than its compacting copy, and the layer (filled in random
    // order) is smaller.
    let sizes = |dir: &Path| -> BTreeMap<String, u64> {
        manifest(dir)["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"].as_str().unwrap().ends_with("data.mdb"))
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (compacted, smaller) = (sizes(&dst), sizes(&rebuilt));
    assert_eq!(
        compacted.keys().collect::<Vec<_>>(),
        smaller.keys().collect::<Vec<_>>()
    );
    assert!(
        compacted.iter().all(|(path, size)| smaller[path] <= *size),
        "{compacted:?} {smaller:?}"
    );
    assert!(
        smaller.values().sum::<u64>() < compacted.values().sum::<u64>(),
        "{compacted:?} {smaller:?}"
    );
    let copy = PyService::serve_cortex(&rebuilt).expect("the peer is installed");
    let lifted = copy.tele(&["storm", "inet:ipv4=0.0.1.1 inet:ipv4>=0.0.1.40"]);
    assert!(lifted.ok(), "{}\n{}", lifted.describe(), copy.log());
    assert_eq!(
        lifted
            .stdout
            .lines()
            .filter(|l| l.starts_with("[\"node\""))
            .count(),
        5,
        "{}\n{}",
        lifted.describe(),
        copy.log()
    );
    let count = copy.tele(&["call", "count", "inet:ipv4"]);
    assert_eq!(count.stdout.trim(), "300", "{}", count.describe());
}

#[test]
fn an_unreadable_source_file_gives_exit_3_and_an_incomplete_backup() {
    if !nix::unistd::Uid::effective().is_root() {
        common::skip("needs root, to run the backup as another user");
        return;
    }
    let (tmp, dir) = stopped_fixture(10, 10, 2);
    fs::write(dir.join("secret.txt"), b"root only").unwrap();
    let out_root = tmp.path().join("out");
    fs::create_dir(&out_root).unwrap();
    // Everything belongs to `nobody` but one root-only file; the backup runs as `nobody`.
    let nobody = nix::unistd::Uid::from_raw(65534);
    let nogroup = nix::unistd::Gid::from_raw(65534);
    let mut pending = vec![dir.clone(), out_root.clone()];
    while let Some(p) = pending.pop() {
        nix::unistd::chown(&p, Some(nobody), Some(nogroup)).unwrap();
        if p.is_dir() {
            pending.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    nix::unistd::chown(
        &dir.join("secret.txt"),
        Some(nix::unistd::Uid::from_raw(0)),
        None,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("secret.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();

    let dst = out_root.join("b1");
    let mut cmd = Command::new(syn_bin());
    {
        use std::os::unix::process::CommandExt;
        cmd.args(["backup", s(&dir), s(&dst)]).uid(65534).gid(65534);
    }
    let out = common::run_bounded(cmd, Duration::from_secs(60)).unwrap();
    if out.stderr.contains("Permission denied") && !dst.exists() {
        common::skip(&format!(
            "nobody cannot run the syn binary here: {}",
            out.stderr.trim()
        ));
        return;
    }
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert!(out.stdout.contains("INCOMPLETE"), "{}", out.describe());
    let m = manifest(&dst);
    assert_eq!(m["unreadable"][0]["path"], "secret.txt", "{m}");
    let listed = syn(&["backup", "list", s(&out_root), "--json"]).json_lines();
    assert_eq!(listed[0]["state"], "incomplete");
    let out = syn(&["backup", "verify", s(&dst)]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("incomplete"), "{}", out.describe());
    let listed = syn(&["backup", "list", s(&out_root), "--json"]).json_lines();
    assert_eq!(listed[0]["state"], "damaged");
}
