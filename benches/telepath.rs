//! Telepath call throughput and service start-up, syn beside the real Python Synapse.
//!
//! Run: `cargo bench --bench telepath` (needs the Python peer; it installs into target/peers on
//! first use). Prints a Markdown table for docs/benchmarks.md. Measures, in one run:
//! `getCellIden` round trips per second for syn client → syn server (sequential over tcp and
//! unix, and 8 concurrent callers on one proxy; for sequential tcp also the CPU time and context
//! switches per call on each side), Python client → syn server, Python client →
//! Python server, syn client → Python server; the time from spawning `syn cell` to its
//! `READY=1`; and its resident memory when idle.

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator of the `syn` binary, so the in-process syn client runs as `syn` itself does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{NotifySocket, PyService, run_py_timeout, syn_bin};
use std::process::Command;
use std::time::{Duration, Instant};
use syn::telepath::Proxy;

const SYN_CALLS: usize = 100_000;
const PY_CALLS: usize = 20_000;

fn main() {
    // `cargo bench` passes --bench; nothing else is configurable.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<(String, String)> = Vec::new();

    let (ready_ms, rss_kb, svc) = start_syn_cell();
    rows.push((
        "`syn cell` spawn → READY=1 (median of 5 starts)".into(),
        format!("{ready_ms:.1} ms"),
    ));
    rows.push((
        "`syn cell` resident memory, idle after start".into(),
        format!("{:.1} MB", rss_kb as f64 / 1024.0),
    ));

    let tcp_url = svc.url("");
    let unix_url = format!("unix://{}:*", svc.dir.join("sock").display());
    let server_pid = svc.daemon.pid().unwrap();
    let before = (CpuUse::of(std::process::id()), CpuUse::of(server_pid));
    let seq_tcp = rt.block_on(syn_sequential(&tcp_url, SYN_CALLS));
    let after = (CpuUse::of(std::process::id()), CpuUse::of(server_pid));
    rows.push((
        "syn client → syn server, tcp, sequential".into(),
        rate(seq_tcp),
    ));
    rows.push((
        "… CPU per call, client / server (tcp, sequential)".into(),
        format!(
            "{:.1} µs / {:.1} µs",
            after.0.cpu_us_since(&before.0, SYN_CALLS),
            after.1.cpu_us_since(&before.1, SYN_CALLS)
        ),
    ));
    rows.push((
        "… context switches per call, client / server (tcp, sequential)".into(),
        format!(
            "{:.2} / {:.2}",
            after.0.switches_since(&before.0, SYN_CALLS),
            after.1.switches_since(&before.1, SYN_CALLS)
        ),
    ));
    let seq_unix = rt.block_on(syn_sequential(&unix_url, SYN_CALLS));
    rows.push((
        "syn client → syn server, unix socket, sequential".into(),
        rate(seq_unix),
    ));
    let conc = rt.block_on(syn_concurrent(&tcp_url, 8, SYN_CALLS));
    rows.push((
        "syn client → syn server, tcp, 8 concurrent callers".into(),
        rate(conc),
    ));

    // SYN_BENCH_SYN_ONLY=1 measures only syn's side (for quick comparisons while tuning).
    let syn_only = std::env::var_os("SYN_BENCH_SYN_ONLY").is_some();
    let python = if syn_only {
        None
    } else {
        common::syn2_python()
    };
    match &python {
        Some(py) => {
            let r = python_calls(py, &tcp_url);
            rows.push(("Python client → syn server, tcp".into(), rate(r)));
        }
        None => rows.push((
            "Python client → syn server".into(),
            "skipped (no Python peer)".into(),
        )),
    }
    drop(svc);

    if syn_only {
        rows.push(("Python rows".into(), "skipped (SYN_BENCH_SYN_ONLY)".into()));
    } else if let Some(core) = PyService::cortex() {
        let py = core.python().to_owned();
        let r = python_calls(&py, &core.url());
        rows.push((
            "Python client → Python Synapse 2.256 cortex, tcp".into(),
            rate(r),
        ));
        let r = rt.block_on(syn_sequential(&core.url(), PY_CALLS));
        rows.push((
            "syn client → Python Synapse 2.256 cortex, tcp".into(),
            rate(r),
        ));
    } else {
        rows.push((
            "Python server rows".into(),
            "skipped (no Python peer)".into(),
        ));
    }

    println!("\n| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}

/// CPU time and context switches of every thread of a process, from `/proc`; divided by the
/// calls made in between, they say what a call costs regardless of how busy the machine is.
struct CpuUse {
    /// Nanoseconds on a CPU (`schedstat`'s first field), summed over threads.
    cpu_ns: u64,
    /// Voluntary plus involuntary context switches, summed over threads.
    switches: u64,
}

impl CpuUse {
    fn of(pid: u32) -> CpuUse {
        let mut total = CpuUse {
            cpu_ns: 0,
            switches: 0,
        };
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
        for task in tasks.flatten() {
            let dir = task.path();
            let sched = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            total.cpu_ns += sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            total.switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        total
    }

    fn cpu_us_since(&self, before: &CpuUse, calls: usize) -> f64 {
        (self.cpu_ns - before.cpu_ns) as f64 / 1000.0 / calls as f64
    }

    fn switches_since(&self, before: &CpuUse, calls: usize) -> f64 {
        (self.switches - before.switches) as f64 / calls as f64
    }
}

fn rate(calls_per_sec: f64) -> String {
    format!("{calls_per_sec:.0} calls/s")
}

/// Start `syn cell` five times to time readiness; keep the last one running.
fn start_syn_cell() -> (f64, u64, common::SynService) {
    let mut times = Vec::new();
    for _ in 0..4 {
        let tmp = tempfile::tempdir().unwrap();
        let notify = NotifySocket::new();
        let t0 = Instant::now();
        let mut cmd = Command::new(syn_bin());
        cmd.arg("cell")
            .arg(tmp.path().join("c"))
            .args([
                "--telepath",
                &format!("tcp://127.0.0.1:{}", common::free_port()),
            ])
            .env("NOTIFY_SOCKET", notify.path());
        let _d = common::Daemon::spawn("cell", cmd).unwrap();
        notify.wait_for("READY=1", Duration::from_secs(30)).unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let t0 = Instant::now();
    let svc = common::SynService::start("cell", &[]);
    times.push(t0.elapsed().as_secs_f64() * 1000.0);
    times.sort_by(f64::total_cmp);
    std::thread::sleep(Duration::from_secs(1));
    let pid = svc.daemon.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (times[times.len() / 2], rss_kb, svc)
}

async fn syn_sequential(url: &str, calls: usize) -> f64 {
    let proxy = Proxy::open(url).await.unwrap();
    proxy.call("getCellIden", vec![]).await.unwrap();
    let t0 = Instant::now();
    for _ in 0..calls {
        proxy.call("getCellIden", vec![]).await.unwrap();
    }
    calls as f64 / t0.elapsed().as_secs_f64()
}

async fn syn_concurrent(url: &str, tasks: usize, calls: usize) -> f64 {
    let proxy = Proxy::open(url).await.unwrap();
    proxy.call("getCellIden", vec![]).await.unwrap();
    let per = calls / tasks;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let p = proxy.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    p.call("getCellIden", vec![]).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    (per * tasks) as f64 / t0.elapsed().as_secs_f64()
}

fn python_calls(python: &std::path::Path, url: &str) -> f64 {
    let out = run_py_timeout(
        python,
        "bench_calls.py",
        &[url, &PY_CALLS.to_string()],
        Duration::from_secs(600),
    );
    assert!(out.ok(), "{}", out.describe());
    out.json()["calls_per_sec"].as_f64().unwrap()
}
