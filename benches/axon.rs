//! Axon writes and reads, `syn axon` beside the real Python Synapse 2.256 Axon, both driven by
//! Synapse's own telepath client (`tests/py/bench_axon.py`), and syn's own client
//! (`syn::axon::client`, what `syn pushfile`/`pullfile` use) against syn.
//!
//! Run: `cargo bench --bench axon` (needs the Python peer; it installs into target/peers on
//! first use). `SYN_BENCH_FILES` (default 5,000) distinct 4 KiB files go in with `puts`, 100
//! a call; one `SYN_BENCH_MIB` (default 256) MiB file goes in through an upload object in
//! 8 MiB writes and comes back with `get`. Each service runs three times in turn on fresh
//! directories and the median is kept. Prints Markdown rows for docs/benchmarks.md.

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator of the `syn` binary, so the in-process syn client runs as `syn` itself does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{PyService, ROOT_PASSWD, SynService, run_py_timeout, syn2_python};
use std::time::{Duration, Instant};
use syn::msgpack::Value;
use syn::telepath::Proxy;

const ROUNDS: usize = 3;

/// Seconds of (puts, upload, get).
type Times = (f64, f64, f64);

fn run(python: &std::path::Path, base: &str, files: usize, mib: usize) -> Times {
    let (files_s, mib_s) = (files.to_string(), mib.to_string());
    let out = run_py_timeout(
        python,
        "bench_axon.py",
        &[base, &files_s, &mib_s],
        Duration::from_secs(3600),
    );
    assert!(out.ok(), "{}", out.describe());
    let j = out.json();
    assert_eq!(j["files"].as_u64(), Some(files as u64));
    assert_eq!(j["bytes"].as_u64(), Some((mib << 20) as u64));
    let secs = |k: &str| j[k].as_f64().expect(k);
    (secs("puts_secs"), secs("upload_secs"), secs("get_secs"))
}

async fn run_syn_client(url: &str, files: usize, mib: usize) -> Times {
    let axon = Proxy::open(url).await.expect("connect");
    let small = |i: usize| -> Value { Value::Bin((i as u64).to_be_bytes().repeat(512)) };
    let t0 = Instant::now();
    for start in (0..files).step_by(100) {
        let batch = (start..(start + 100).min(files)).map(small).collect();
        axon.call("puts", vec![Value::Array(batch)])
            .await
            .expect("puts");
    }
    let puts = t0.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big");
    let piece: Vec<u8> = (0..8usize << 20).map(|i| (i % 256) as u8).collect();
    let mut big = Vec::with_capacity(mib << 20);
    for i in 0..(mib << 20) / piece.len() {
        big.extend_from_slice(&(i as u64).to_be_bytes());
        big.extend_from_slice(&piece[8..]);
    }
    std::fs::write(&path, &big).expect("write the file");
    drop(big);
    let t0 = Instant::now();
    let (_, sha256) = syn::axon::client::push(&axon, &path, &mut |_| {})
        .await
        .expect("push");
    let upload = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let got = syn::axon::client::pull(&axon, &sha256, &dir.path().join("back"), &mut |_| {})
        .await
        .expect("pull");
    assert_eq!(got, (mib << 20) as u64);
    (puts, upload, t0.elapsed().as_secs_f64())
}

fn main() {
    let Some(python) = syn2_python() else {
        eprintln!("no Python peer: nothing to compare");
        return;
    };
    let files = common::env_or::<usize>("SYN_BENCH_FILES", 5_000);
    let mib = common::env_or::<usize>("SYN_BENCH_MIB", 256);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut times: [Vec<Times>; 3] = Default::default();
    for _ in 0..ROUNDS {
        let svc = SynService::start("axon", &[]);
        let base = format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}", svc.port);
        times[0].push(run(&python, &base, files, mib));
        drop(svc);
        let py = PyService::axon().expect("the Python axon starts");
        times[1].push(run(&python, &py.url(), files, mib));
        drop(py);
        let svc = SynService::start("axon", &[]);
        times[2].push(rt.block_on(run_syn_client(&svc.url("axon"), files, mib)));
    }
    let names = [
        "Python client → syn axon",
        "Python client → Python Axon 2.256",
        "syn client → syn axon (pushfile/pullfile code)",
    ];
    println!(
        "\n| {files} files of 4 KiB (100 per `puts`); one {mib} MiB file | puts | upload | get |\n|---|---|---|---|"
    );
    let mut rows = Vec::new();
    for (name, runs) in names.iter().zip(times) {
        let m = (
            common::median(runs.iter().map(|t| t.0).collect()),
            common::median(runs.iter().map(|t| t.1).collect()),
            common::median(runs.iter().map(|t| t.2).collect()),
        );
        println!(
            "| {name} | {:.0} files/s | {:.0} MiB/s | {:.0} MiB/s |",
            files as f64 / m.0,
            mib as f64 / m.1,
            mib as f64 / m.2
        );
        rows.push(m);
    }
    println!(
        "| syn ÷ Python, same client | {:.1}× | {:.1}× | {:.1}× |",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1,
        rows[1].2 / rows[0].2
    );
}
