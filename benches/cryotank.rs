//! Cryotank writes and reads, `syn cryotank` beside the real Python Synapse 2.256 CryoCell,
//! both driven by Synapse's own telepath client (`tests/py/bench_cryo.py`).
//!
//! Run: `cargo bench --bench cryotank` (needs the Python peer; it installs into target/peers
//! on first use). `SYN_BENCH_ITEMS` (default 200,000) items, `SYN_BENCH_BATCH` (default
//! 1,000) per `puts` call, are written into a new tank and read back with one `slice`; each
//! service runs three times in turn and the median is kept. The Python client is the
//! bottleneck of both, so syn is also driven by its own client (`syn::telepath::Proxy`).
//! Prints Markdown rows for docs/benchmarks.md.

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

/// One run of the Python script against `base`: (puts seconds, slice seconds).
fn run(python: &std::path::Path, base: &str, items: usize, batch: usize) -> (f64, f64) {
    let (items_s, batch_s) = (items.to_string(), batch.to_string());
    let out = run_py_timeout(
        python,
        "bench_cryo.py",
        &[base, &items_s, &batch_s],
        Duration::from_secs(3600),
    );
    assert!(out.ok(), "{}", out.describe());
    let j = out.json();
    assert_eq!(
        j["items"].as_u64(),
        Some(items as u64),
        "every item read back"
    );
    (
        j["puts_secs"].as_f64().expect("puts_secs"),
        j["slice_secs"].as_f64().expect("slice_secs"),
    )
}

/// The same with syn's own client against `url` (the `cryotank` share).
async fn run_syn_client(url: &str, items: usize, batch: usize) -> (f64, f64) {
    let cryo = Proxy::open(url).await.expect("connect");
    cryo.call("init", vec!["bench".into()]).await.expect("init");
    let t0 = Instant::now();
    for start in (0..items).step_by(batch) {
        let chunk = (start..(start + batch).min(items))
            .map(|i| {
                Value::map([
                    ("indx", Value::from(i)),
                    ("fqdn", Value::from(format!("host{i}.vertex.link"))),
                    ("seen", Value::from(1_600_000_000_000i64 + i as i64)),
                ])
            })
            .collect();
        cryo.call("puts", vec!["bench".into(), Value::Array(chunk)])
            .await
            .expect("puts");
    }
    let puts = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut genr = cryo
        .genr("slice", vec!["bench".into(), 0i64.into()], vec![])
        .await
        .expect("slice");
    let mut read = 0;
    while let Some(item) = genr.next().await {
        item.expect("item");
        read += 1;
    }
    assert_eq!(read, items, "every item read back");
    (puts, t0.elapsed().as_secs_f64())
}

fn main() {
    let Some(python) = syn2_python() else {
        eprintln!("no Python peer: nothing to compare");
        return;
    };
    let items = common::env_or::<usize>("SYN_BENCH_ITEMS", 200_000);
    let batch = common::env_or::<usize>("SYN_BENCH_BATCH", 1_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut times: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    for _ in 0..ROUNDS {
        // A fresh service per run, alternating.
        let svc = SynService::start("cryotank", &[]);
        let base = format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}", svc.port);
        let (p, s) = run(&python, &base, items, batch);
        times[0].0.push(p);
        times[0].1.push(s);
        drop(svc);
        let py = PyService::cryotank().expect("the Python cryotank starts");
        let (p, s) = run(&python, &py.url(), items, batch);
        times[1].0.push(p);
        times[1].1.push(s);
        drop(py);
        let svc = SynService::start("cryotank", &[]);
        let (p, s) = rt.block_on(run_syn_client(&svc.url("cryotank"), items, batch));
        times[2].0.push(p);
        times[2].1.push(s);
    }
    let rate = |secs: f64| format!("{:.0} items/s", items as f64 / secs);
    println!("\n| {items} items, {batch} per `puts` | puts | slice (all back) |\n|---|---|---|");
    let names = [
        "Python client → syn cryotank",
        "Python client → Python CryoCell 2.256",
        "syn client → syn cryotank",
    ];
    let mut rows = Vec::new();
    for (name, (puts, slice)) in names.iter().zip(times) {
        let (p, s) = (common::median(puts), common::median(slice));
        println!("| {name} | {} | {} |", rate(p), rate(s));
        rows.push((p, s));
    }
    println!(
        "| syn ÷ Python, same client | {:.1}× | {:.1}× |",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1
    );
    println!(
        "| syn (syn client) ÷ Python (Python client) | {:.1}× | {:.1}× |",
        rows[1].0 / rows[2].0,
        rows[1].1 / rows[2].1
    );
}
