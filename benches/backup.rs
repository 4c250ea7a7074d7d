//! `syn backup` side by side with `mdb_copy -c` (Debian's lmdb-utils) and Python Synapse's
//! backup tool, and the write rate of a `syn cortex` under load with and without live backups.
//!
//! Run: `cargo bench --bench backup`. Environment: `SYN_BENCH_BACKUP_MB` (size of the single
//! fragmented environment before deletion, default 1100), `SYN_BENCH_BACKUP_DIR` (work
//! directory, default a temporary one under target/), `SYN_BENCH_LOAD_SECS` (each write-rate
//! window, default 15), `SYN_BENCH_CORTEX_NODES` (nodes in the cortex before the write-rate
//! windows, default 300,000), `SYN_BENCH_LOAD_ROUNDS` (rounds of a window without and one with
//! backups, default 5, the first of which only warms up), `SYN_BENCH_LIVE_DST` (where the live
//! backups go, default the work directory), `SYN_BENCH_BACKUP_ARGS` (more arguments for each
//! live `syn backup`, e.g. `--limit-rate 50M`), `SYN_BENCH_PIN_ONLY=1` (instead of backups,
//! hold a read transaction on every environment: what the snapshot alone costs),
//! `SYN_BENCH_ONLY=load` or `=copies` (one half only). Peers that are missing are skipped with
//! a note. Results are printed as markdown rows for
//! docs/benchmarks.md.

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator of the `syn` binary, so the in-process syn client runs as `syn` itself does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{CortexWrite, SynService, syn_bin};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use syn::storage::{Slab, SlabOptions};

const MIB: u64 = 1 << 20;
const ROUNDS: usize = 9;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Fill an environment with `mb` MiB of 1000-byte records in several databases, then delete
/// all but one record in `keep_every` (fragmented: the file keeps its size).
fn make_env(path: &Path, mb: u64, keep_every: u64) {
    let slab = Slab::open(path, SlabOptions::default()).expect("open");
    let dbs: Vec<_> = (0..4)
        .map(|i| slab.db(&format!("db{i}"), false).expect("db"))
        .collect();
    let value = vec![0xa5u8; 1000];
    let records = mb * MIB / 1050;
    let mut i = 0u64;
    while i < records {
        let end = (i + 20_000).min(records);
        slab.write(|w| {
            for n in i..end {
                // Keys spread like hashes, so deletions leave holes everywhere.
                let key = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes();
                dbs[(n % 4) as usize].put(w, &key, &value)?;
            }
            Ok(())
        })
        .expect("fill");
        i = end;
    }
    i = 0;
    while i < records {
        let end = (i + 50_000).min(records);
        slab.write(|w| {
            for n in (i..end).filter(|n| !n.is_multiple_of(keep_every)) {
                let key = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes();
                dbs[(n % 4) as usize].delete(w, &key)?;
            }
            Ok(())
        })
        .expect("delete");
        i = end;
    }
    slab.sync().expect("sync");
}

/// Total size of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().expect("stat");
            if meta.is_dir() {
                pending.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// fsync every file and directory under `dir`, so every tool's output is durable.
fn sync_tree(dir: &Path) {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().expect("type").is_dir() {
                pending.push(e.path());
            } else if let Ok(f) = fs::File::open(e.path()) {
                f.sync_all().expect("fsync");
            }
        }
        fs::File::open(&d)
            .expect("dir")
            .sync_all()
            .expect("fsync dir");
    }
}

/// Run `cmd` (which writes `dst`), then make `dst` durable; the wall time of both.
fn timed(mut cmd: Command, dst: &Path) -> Duration {
    let t0 = Instant::now();
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    sync_tree(dst);
    t0.elapsed()
}

/// The tools compared, each turning a source directory into a destination.
struct Tools {
    mdb_copy: Option<PathBuf>,
    python: Option<PathBuf>,
}

impl Tools {
    fn find() -> Tools {
        let mdb_copy = Command::new("which")
            .arg("mdb_copy")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if mdb_copy.is_none() {
            eprintln!("note: no mdb_copy (apt-get install lmdb-utils); its column is skipped");
        }
        Tools {
            mdb_copy,
            python: common::syn2_python(),
        }
    }

    /// `syn backup` with `extra` arguments.
    fn syn(&self, src: &Path, dst: &Path, extra: &[&str]) -> Duration {
        let mut cmd = Command::new(syn_bin());
        cmd.args(["backup", s(src), s(dst)]).args(extra);
        timed(cmd, dst)
    }

    /// `mdb_copy -c` of every environment, one after another, as a shell loop would.
    fn mdb_copy(&self, src: &Path, dst: &Path, envs: &[String]) -> Option<Duration> {
        let bin = self.mdb_copy.as_ref()?;
        let t0 = Instant::now();
        for env in envs {
            let out = dst.join(env);
            fs::create_dir_all(&out).expect("mkdir");
            let mut cmd = Command::new(bin);
            cmd.arg("-c").arg(src.join(env)).arg(&out);
            let o = cmd.output().expect("mdb_copy");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        sync_tree(dst);
        Some(t0.elapsed())
    }

    fn python(&self, src: &Path, dst: &Path) -> Option<Duration> {
        let py = self.python.as_ref()?;
        let mut cmd = Command::new(py);
        cmd.args(["-m", "synapse.tools.service.backup", s(src), s(dst)]);
        Some(timed(cmd, dst))
    }
}

struct Row {
    tool: &'static str,
    time: Duration,
    size: u64,
}

/// Back up `src` with each tool (and `syn backup --rebuild`) `ROUNDS` times, alternating;
/// keep each tool's median. Each round starts with the next tool (no tool always follows the
/// same one), and every output is deleted and the deletion flushed (`sync`) before the next
/// tool starts, so no tool's fsyncs pay for another's cleanup.
fn compare(tools: &Tools, src: &Path, envs: &[String], work: &Path) -> Vec<Row> {
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut sizes = [0u64; 4];
    for round in 0..ROUNDS {
        for tool in (0..4).map(|k| (round + k) % 4) {
            let dst = work.join(format!("out-{tool}-{round}"));
            let took = match tool {
                0 => Some(tools.syn(src, &dst, &[])),
                1 => tools.mdb_copy(src, &dst, envs),
                2 => tools.python(src, &dst),
                _ => Some(tools.syn(src, &dst, &["--rebuild"])),
            };
            if let Some(t) = took {
                times[tool].push(t);
                sizes[tool] = envs
                    .iter()
                    .map(|e| fs::metadata(dst.join(e).join("data.mdb")).map_or(0, |m| m.len()))
                    .sum();
            }
            let _ = fs::remove_dir_all(&dst);
            nix::unistd::sync();
        }
    }
    let names = [
        "syn backup",
        "mdb_copy -c",
        "python -m synapse.tools.service.backup",
        "syn backup --rebuild",
    ];
    let mut rows = Vec::new();
    for (i, t) in times.into_iter().enumerate() {
        if !t.is_empty() {
            rows.push(Row {
                tool: names[i],
                time: common::median(t),
                size: sizes[i],
            });
        }
    }
    rows
}

fn print_rows(title: &str, source: u64, rows: &[Row]) {
    println!(
        "\n{title} (source {:.0} MiB on disk; median of {ROUNDS})\n",
        source as f64 / MIB as f64
    );
    println!("| tool | time | vs mdb_copy -c | LMDB output |");
    println!("|---|---|---|---|");
    let reference = rows
        .iter()
        .find(|r| r.tool == "mdb_copy -c")
        .map(|r| r.time);
    for r in rows {
        let ratio = reference
            .map(|m| format!("{:.2}x", m.as_secs_f64() / r.time.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {:.2} s | {ratio} | {:.1} MiB |",
            r.tool,
            r.time.as_secs_f64(),
            r.size as f64 / MIB as f64
        );
    }
}

/// Writes acknowledged per second by one client per entry of `clients` over `window`, while
/// `during` runs on another thread (it gets a flag that says when the window is over). Every
/// write adds a new node: its number comes from `next`.
fn write_rate(
    svc: &SynService,
    clients: &[CortexWrite],
    next: &Arc<AtomicU32>,
    window: Duration,
    during: impl FnOnce(Arc<AtomicBool>) -> u64 + Send + 'static,
) -> (f64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicU64::new(0));
    let over = Arc::new(AtomicBool::new(false));
    let side = {
        let over = over.clone();
        std::thread::spawn(move || during(over))
    };
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for kind in clients {
            let (kind, url) = (*kind, svc.url(kind.share()));
            let (done, over, next) = (done.clone(), over.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let proxy = syn::telepath::Proxy::open(&url).await.expect("connect");
                while !over.load(Ordering::SeqCst) {
                    kind.write(&proxy, next.fetch_add(1, Ordering::SeqCst))
                        .await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        tokio::time::sleep(window).await;
        over.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("client");
        }
    });
    let rate = done.load(Ordering::SeqCst) as f64 / t0.elapsed().as_secs_f64();
    (rate, side.join().expect("side thread"))
}

/// A read transaction on every LMDB environment under `dir`, as a live backup's copies hold.
fn pin_snapshots(dir: &Path) -> Vec<syn::storage::ReadTxn> {
    let mut txns = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.join("data.mdb").is_file() {
                let slab = Slab::open_readonly(&path).expect("open");
                txns.push(slab.read_txn().expect("read transaction"));
            } else if path.is_dir() {
                pending.push(path);
            }
        }
    }
    txns
}

/// Fill a cortex with `nodes` `inet:ipv4` nodes, 1,000 nodeedits a call.
fn fill_cortex(svc: &SynService, nodes: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let layer = syn::telepath::Proxy::open(&svc.url("cortex/layer"))
            .await
            .expect("connect");
        for first in (0..nodes).step_by(1000) {
            let edits: Vec<_> = (first..(first + 1000).min(nodes))
                .map(common::ipv4_nodeedit)
                .collect();
            layer
                .call("storNodeEditsNoLift", vec![edits.into()])
                .await
                .expect("fill");
        }
    });
}

/// The write rate of a `syn cortex` under a storm and nodeedit load, in windows without and
/// with `syn backup` of the running cortex back to back.
fn write_rate_under_backups(work: &Path, load_secs: u64, nodes: u32, rounds: usize) {
    let dir = work.join("cortex");
    let svc = SynService::start_in("cortex", &dir, &[], &[]).expect("syn cortex starts");
    eprintln!("filling the cortex with {nodes} nodes ...");
    fill_cortex(&svc, nodes);
    let clients = [
        CortexWrite::Storm,
        CortexWrite::Storm,
        CortexWrite::NodeEdit,
        CortexWrite::NodeEdit,
    ];
    let next = Arc::new(AtomicU32::new(nodes));
    // Windows without and with backups alternate, so drift in the machine's other load
    // falls on both alike.
    let window = Duration::from_secs(load_secs);
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    // How long each backup held the cortex's writes and took, in milliseconds, and its bytes.
    let taken = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64, u64)>::new()));
    let live_dst = std::env::var_os("SYN_BENCH_LIVE_DST").map_or(work.to_path_buf(), PathBuf::from);
    let extra: Vec<String> = std::env::var("SYN_BENCH_BACKUP_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pin_only = std::env::var_os("SYN_BENCH_PIN_ONLY").is_some();
    for round in 0..rounds {
        idle.push(write_rate(&svc, &clients, &next, window, |_| 0).0);
        let (src, out) = (dir.clone(), live_dst.join(format!("live{round}")));
        let extra = extra.clone();
        let taken = taken.clone();
        fs::create_dir_all(&out).expect("live backups dir");
        let (rate, _) = write_rate(&svc, &clients, &next, window, move |over| {
            if pin_only {
                // What a backup's snapshot alone costs: its read transactions, no copy.
                let pinned = pin_snapshots(&src);
                while !over.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                drop(pinned);
                return 0;
            }
            let mut n = 0;
            while !over.load(Ordering::SeqCst) {
                let dst = out.join(format!("b{n}"));
                let o = Command::new(syn_bin())
                    .args(["backup", s(&src), s(&dst), "--json"])
                    .args(&extra)
                    .output()
                    .expect("syn backup");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let stdout = String::from_utf8_lossy(&o.stdout);
                let summary: serde_json::Value =
                    serde_json::from_str(stdout.lines().last().expect("a summary")).expect("json");
                let ms = |key: &str| summary[key].as_u64().expect(key);
                taken
                    .lock()
                    .unwrap()
                    .push((ms("held_ms"), ms("duration_ms"), ms("bytes")));
                n += 1;
            }
            n
        });
        busy.push(rate);
        // The backups are deleted between the windows, and the deletion made durable: on a
        // file system mounted with `discard`, deleting files is disk work of its own that
        // would fall on the service's fsyncs (it is prune's cost, not the backup's).
        let _ = fs::remove_dir_all(live_dst.join(format!("live{round}")));
        nix::unistd::sync();
    }
    let taken = taken.lock().unwrap().clone();
    let what = if pin_only {
        "snapshots held (no copy)".to_owned()
    } else {
        format!("live backups back to back ({} taken)", taken.len())
    };
    let middle = |mut v: Vec<u64>| {
        v.sort_unstable();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // The first round warms up: before the cortex's first held snapshot its LMDB file has
    // not grown yet, and its first window runs faster than any later one, with or without
    // backups. It is shown but not counted.
    let (idle_rate, busy_rate) = (mean(&idle[1..]), mean(&busy[1..]));
    let windows = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\nWrite rate of a syn cortex ({} MiB on disk after {nodes} nodes; clients: {clients:?}, \
         each write one new inet:ipv4 node; {rounds} rounds of a {load_secs} s window without and \
         one with backups{}, the first not counted; load average {})\n",
        du(&dir) / MIB,
        if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(" "))
        },
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );
    println!("| | writes/s |");
    println!("|---|---|");
    println!(
        "| no backup | {idle_rate:.0} (windows: {}) |",
        windows(&idle)
    );
    println!(
        "| {what} | {busy_rate:.0} ({:+.1}%; windows: {}) |",
        (busy_rate / idle_rate - 1.0) * 100.0,
        windows(&busy)
    );
    if taken.is_empty() {
        return;
    }
    let (held_median, held_max) = middle(taken.iter().map(|t| t.0).collect());
    let (took_median, _) = middle(taken.iter().map(|t| t.1).collect());
    let (bytes_median, _) = middle(taken.iter().map(|t| t.2).collect());
    println!(
        "\nEach backup ({} MiB) took {took_median} ms (median); it held the cortex's writes for \
         {held_median} ms (median), at most {held_max} ms.",
        bytes_median / MIB
    );
}

/// The side-by-side copies: one fragmented environment, then a directory of several.
fn copies(tools: &Tools, work: &Path, mb: u64) {
    // One fragmented environment of at least 1 GB.
    let single = work.join("single");
    let env = "big.lmdb".to_owned();
    eprintln!("building a {mb} MiB environment, then deleting 9 records in 10 ...");
    make_env(&single.join(&env), mb, 10);
    let rows = compare(tools, &single, std::slice::from_ref(&env), work);
    print_rows(
        "One fragmented environment (90% of its records deleted)",
        du(&single),
        &rows,
    );

    // A service directory with several environments.
    let multi = work.join("multi");
    let envs: Vec<String> = [
        "slabs/cell.lmdb",
        "slabs/queues.lmdb",
        "layers/a/layer_v2.lmdb",
        "layers/a/nodedata.lmdb",
        "layers/b/layer_v2.lmdb",
        "layers/b/nodedata.lmdb",
        "layers/c/layer_v2.lmdb",
        "layers/c/nodeedits.lmdb",
    ]
    .iter()
    .map(|e| (*e).to_owned())
    .collect();
    eprintln!("building a directory of {} environments ...", envs.len());
    for (i, e) in envs.iter().enumerate() {
        make_env(&multi.join(e), mb / 8, if i % 2 == 0 { 4 } else { 1 });
    }
    fs::write(multi.join("cell.guid"), "0123456789abcdef0123456789abcdef").expect("guid");
    let rows = compare(tools, &multi, &envs, work);
    print_rows(
        "A service directory of 8 environments (half of them fragmented)",
        du(&multi),
        &rows,
    );
}

fn main() {
    let mb = common::env_or::<u64>("SYN_BENCH_BACKUP_MB", 1100);
    let load_secs = common::env_or::<u64>("SYN_BENCH_LOAD_SECS", 15);
    let nodes = common::env_or::<u32>("SYN_BENCH_CORTEX_NODES", 300_000);
    let _tmp;
    let work = match std::env::var_os("SYN_BENCH_BACKUP_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let base = common::repo_root().join("target");
            _tmp = tempfile::Builder::new()
                .prefix("bench-backup-")
                .tempdir_in(&base)
                .expect("work dir");
            _tmp.path().to_path_buf()
        }
    };
    fs::create_dir_all(&work).expect("work dir");
    let tools = Tools::find();
    let load = || fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the start: {}", load().trim());
    let only = std::env::var("SYN_BENCH_ONLY").unwrap_or_default();
    if only != "load" {
        copies(&tools, &work, mb);
        println!("load average after the copies: {}", load().trim());
    }
    if only != "copies" {
        let rounds = common::env_or::<usize>("SYN_BENCH_LOAD_ROUNDS", 5).max(2);
        write_rate_under_backups(&work, load_secs, nodes, rounds);
        println!("load average at the end: {}", load().trim());
    }
}
