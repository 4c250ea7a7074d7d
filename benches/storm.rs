//! Storm ingest and lift, `syn cortex` beside the real Python Synapse 2.256 cortex.
//!
//! Run: `cargo bench --bench storm` (needs the Python peer; it installs into target/peers on
//! first use). Prints Markdown for docs/benchmarks.md and writes it to
//! `target/storm-bench.md`. Measures, in one run:
//!
//! * ingest: `inet:ipv4` nodes each with `:asn` and a tag, added by the storm query
//!   `for ($ip, $asn) in $rows { [ inet:ipv4=$ip :asn=$asn +#$tag ] }` with 1,000 rows per
//!   query passed as the var `$rows`; syn client → syn, Python client → syn, Python client →
//!   Python, taking turns of a fifth of the nodes each (the ratio of each turn is printed
//!   too: this machine's speed drifts over minutes, and turns keep the sides in step);
//! * lift: the same nodes back by tag (`#tag`), every node message read by the client;
//! * for the syn client: the server's and the client's CPU time per node of both;
//! * the curve: syn cortexes of 10^4, 10^5 and 10^6 nodes side by side; in each the lift cost
//!   per node of the same fixed 10^4-node tag (the median wall time of [`PROBE_LIFTS`] lifts
//!   that take turns among the cortexes, and the CPU time of its server and of the client,
//!   which the machine's load moves much less) and of everything else by its tag.
//!
//! `SYN_BENCH_NODES` (default 50,000) sets the side-by-side size, `SYN_BENCH_CURVE_MAX`
//! (default 1,000,000) the largest cortex of the curve, and `SYN_BENCH_SYN_ONLY=1` skips the
//! Python rows. The load average is printed before and after.

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator of the `syn` binary, so the in-process syn client runs as `syn` itself does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{PyService, SynService, run_py_timeout, syn2_python};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use syn::msgpack::Value;
use syn::telepath::Proxy;

const BATCH: u32 = 1_000;
const INGEST: &str = "for ($ip, $asn) in $rows { [ inet:ipv4=$ip :asn=$asn +#$tag ] }";
/// The first address used; the bench counts up from here.
const FIRST_IP: u32 = 0x0a00_0000;
/// Lifts of the fixed tag in each cortex of the curve: the wall time is their median, the CPU
/// time their sum (the CPU clock of `/proc` ticks in 10 ms, so it takes many to read well).
const PROBE_LIFTS: usize = 21;
/// Turns the side-by-side ingest takes: this machine's speed drifts up to 2-4x over minutes,
/// and short turns keep syn and Python in the same phase.
const TURNS: u32 = 5;

/// CPU time (user + system) of process `pid` so far, threads that have ended included (they
/// run storm queries and come and go), from `/proc/<pid>/stat` in clock ticks of 10 ms.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

/// Microseconds of CPU per node since `before`.
fn cpu_us(pid: u32, before: Duration, nodes: usize) -> f64 {
    (cpu_time(pid) - before).as_secs_f64() * 1e6 / nodes as f64
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Run a storm query on the syn client; the number of node messages. Panics on `err`.
async fn storm(core: &Proxy, text: &str, opts: Value) -> usize {
    let mut genr = core
        .genr("storm", vec![text.into(), opts], vec![])
        .await
        .expect("storm starts");
    let mut nodes = 0;
    while let Some(mesg) = genr.next().await {
        let mesg = mesg.expect("storm message");
        let kind = mesg
            .as_array()
            .and_then(|m| m.first())
            .and_then(Value::as_str);
        match kind {
            Some("node") => nodes += 1,
            Some("err") => panic!("storm error: {mesg}"),
            _ => {}
        }
    }
    nodes
}

/// Add `count` nodes from address `first` with tag `tag`, 1,000 per query; the time taken.
async fn syn_ingest(core: &Proxy, first: u32, count: u32, tag: &str) -> Duration {
    let start = Instant::now();
    let mut at = first;
    while at < first + count {
        let end = (at + BATCH).min(first + count);
        let rows = (at..end)
            .map(|ip| {
                Value::Array(vec![
                    Value::from(ip as i64),
                    Value::from((ip % 65536) as i64),
                ])
            })
            .collect();
        let opts = Value::map([(
            "vars",
            Value::map([("rows", Value::Array(rows)), ("tag", Value::from(tag))]),
        )]);
        let added = storm(core, INGEST, opts).await;
        assert_eq!(added, (end - at) as usize, "every row gives a node");
        at = end;
    }
    start.elapsed()
}

/// Lift `query` on the syn client: (nodes, time).
async fn syn_lift(core: &Proxy, query: &str) -> (usize, Duration) {
    let start = Instant::now();
    let nodes = storm(core, query, Value::Nil).await;
    (nodes, start.elapsed())
}

/// The same with the Python client (tests/py/bench_storm.py): (nodes, seconds).
fn py_run(python: &std::path::Path, args: &[&str]) -> (usize, f64) {
    let out = run_py_timeout(python, "bench_storm.py", args, Duration::from_secs(3600));
    assert!(out.ok(), "{}", out.describe());
    let j = out.json();
    (
        j["nodes"].as_u64().expect("nodes") as usize,
        j["secs"].as_f64().expect("secs"),
    )
}

fn py_ingest(python: &std::path::Path, url: &str, first: u32, count: u32, tag: &str) -> f64 {
    let (first, count, batch) = (first.to_string(), count.to_string(), BATCH.to_string());
    let (nodes, secs) = py_run(python, &[url, "ingest", &first, &count, &batch, tag]);
    assert_eq!(nodes, count.parse::<usize>().unwrap());
    secs
}

fn per_sec(nodes: usize, secs: f64) -> String {
    format!("{:.0} nodes/s", nodes as f64 / secs)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let nodes = common::env_or::<u32>("SYN_BENCH_NODES", 50_000);
    let curve_max = common::env_or::<u32>("SYN_BENCH_CURVE_MAX", 1_000_000);
    let syn_only = std::env::var_os("SYN_BENCH_SYN_ONLY").is_some();
    let mut out = String::new();
    let _ = writeln!(out, "Load average at start: {}\n", loadavg());
    let _ = writeln!(
        out,
        "| {nodes} `inet:ipv4` nodes | ingest (storm `for`, 1,000 rows a query) | lift by tag |"
    );
    let _ = writeln!(out, "|---|---|---|");

    // Side by side: syn client → syn, Python client → syn and Python client → Python take
    // turns, a fifth of the nodes each, so that all three see the machine in the same phase.
    let python = if syn_only { None } else { syn2_python() };
    let svc = SynService::start("cortex", &[]);
    let server = svc.daemon.pid().expect("server pid");
    let client = std::process::id();
    let pysvc = python.as_ref().map(|_| SynService::start("cortex", &[]));
    let pycore = python
        .as_ref()
        .map(|_| PyService::cortex().expect("the Python cortex starts"));
    let core = rt
        .block_on(Proxy::open(&svc.url("cortex")))
        .expect("connect");
    let mut syn_ingest_secs = 0.0;
    let mut ingest_cpu = (0.0, 0.0);
    let (mut pysyn_secs, mut py_secs) = (0.0, 0.0);
    let mut turns = Vec::new();
    let chunk = nodes.div_ceil(TURNS);
    for turn in 0..TURNS {
        let first = FIRST_IP + turn * chunk;
        // Fewer nodes than turns leave the last turns empty.
        let count = chunk.min(nodes.saturating_sub(turn * chunk));
        if count == 0 {
            break;
        }
        let before = (cpu_time(server), cpu_time(client));
        let secs = rt
            .block_on(syn_ingest(&core, first, count, "bench"))
            .as_secs_f64();
        syn_ingest_secs += secs;
        ingest_cpu.0 += cpu_us(server, before.0, nodes as usize);
        ingest_cpu.1 += cpu_us(client, before.1, nodes as usize);
        if let (Some(python), Some(pysvc), Some(pycore)) = (&python, &pysvc, &pycore) {
            pysyn_secs += py_ingest(python, &pysvc.url("cortex"), first, count, "bench");
            let py = py_ingest(python, &pycore.url(), first, count, "bench");
            py_secs += py;
            turns.push(format!("{:.1}×", py / secs));
        }
    }
    let (lift, lift_cpu) = rt.block_on(async {
        let before = (cpu_time(server), cpu_time(client));
        let (lifted, lift) = syn_lift(&core, "#bench").await;
        assert_eq!(lifted, nodes as usize);
        let n = nodes as usize;
        let lift_cpu = (cpu_us(server, before.0, n), cpu_us(client, before.1, n));
        (lift, lift_cpu)
    });
    drop(core);
    drop(svc);
    let syn_rates = (
        nodes as f64 / syn_ingest_secs,
        nodes as f64 / lift.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "| syn client → syn | {} | {} |",
        per_sec(nodes as usize, syn_ingest_secs),
        per_sec(nodes as usize, lift.as_secs_f64())
    );
    let _ = writeln!(
        out,
        "| … `syn cortex` CPU per node | {:.1} µs | {:.1} µs |",
        ingest_cpu.0, lift_cpu.0
    );
    let _ = writeln!(
        out,
        "| … syn client CPU per node | {:.1} µs | {:.1} µs |",
        ingest_cpu.1, lift_cpu.1
    );
    eprint!("{out}");

    if let (Some(python), Some(pysvc), Some(pycore)) = (&python, pysvc, pycore) {
        let (lifted, lift) = py_run(python, &[&pysvc.url("cortex"), "lift", "#bench"]);
        assert_eq!(lifted, nodes as usize);
        drop(pysvc);
        let row = format!(
            "| Python client → syn | {} | {} |",
            per_sec(nodes as usize, pysyn_secs),
            per_sec(nodes as usize, lift)
        );
        eprintln!("{row}");
        let _ = writeln!(out, "{row}");

        let (lifted, lift) = py_run(python, &[&pycore.url(), "lift", "#bench"]);
        assert_eq!(lifted, nodes as usize);
        drop(pycore);
        let py_rates = (nodes as f64 / py_secs, nodes as f64 / lift);
        let row = format!(
            "| Python client → Python Synapse 2.256 | {} | {} |",
            per_sec(nodes as usize, py_secs),
            per_sec(nodes as usize, lift)
        );
        eprintln!("{row}");
        let _ = writeln!(out, "{row}");
        let _ = writeln!(
            out,
            "| syn (syn client) ÷ Python (Python client) | {:.1}× | {:.1}× |",
            syn_rates.0 / py_rates.0,
            syn_rates.1 / py_rates.1
        );
        let _ = writeln!(
            out,
            "\nIngest ratio of each turn (syn client → syn ÷ Python → Python): {}",
            turns.join(", ")
        );
    }

    // The curve: one cortex for each size, each with the same fixed 10^4-node tag and the rest
    // under another; the lifts take turns among the cortexes, so that the machine's drifting
    // speed falls on every size alike, and each cortex's CPU time is its own process's.
    let _ = writeln!(out, "\nLoad average before the curve: {}\n", loadavg());
    let _ = writeln!(
        out,
        "| nodes in the cortex | its ingest | lift `#probe` (10,000 nodes): wall, median of {PROBE_LIFTS} | … CPU server / client | lift `#grow` (the rest): wall | … CPU server / client |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let probe = 10_000u32;
    let sizes: Vec<u32> = std::iter::successors(Some(probe), |s| s.checked_mul(10))
        .take_while(|s| *s <= curve_max)
        .collect();
    let client = std::process::id();
    let per_node = |d: Duration, n: usize| {
        if n == 0 {
            "–".to_string()
        } else {
            format!("{:.2} µs/node", d.as_secs_f64() * 1e6 / n as f64)
        }
    };
    rt.block_on(async {
        // Each cortex: its service, client, ingest rate of the nodes past the probe, and the
        // probe lifts' wall times and CPU time (server, client).
        let mut cortexes = Vec::new();
        for &size in &sizes {
            let svc = SynService::start("cortex", &[]);
            let core = Proxy::open(&svc.url("cortex")).await.expect("connect");
            syn_ingest(&core, FIRST_IP, probe, "probe").await;
            let took = syn_ingest(&core, FIRST_IP + probe, size - probe, "grow").await;
            let ingest = if size > probe {
                per_sec((size - probe) as usize, took.as_secs_f64())
            } else {
                "–".into()
            };
            cortexes.push((
                svc,
                core,
                ingest,
                Vec::new(),
                (Duration::ZERO, Duration::ZERO),
            ));
        }
        // The ingests' last writes are applied and flushed before the lifts are timed: a lift
        // waits for the applier, the background flush runs every second.
        for (_, core, ..) in &cortexes {
            syn_lift(core, "#probe").await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..PROBE_LIFTS {
            for (svc, core, _, walls, cpu) in &mut cortexes {
                let server = svc.daemon.pid().expect("server pid");
                let before = (cpu_time(server), cpu_time(client));
                let (n, t) = syn_lift(core, "#probe").await;
                assert_eq!(n, probe as usize);
                walls.push(t);
                cpu.0 += cpu_time(server) - before.0;
                cpu.1 += cpu_time(client) - before.1;
            }
        }
        for (&size, (svc, core, ingest, walls, cpu)) in sizes.iter().zip(&mut cortexes) {
            let server = svc.daemon.pid().expect("server pid");
            walls.sort();
            let lifted = (PROBE_LIFTS * probe as usize) as f64;
            let probe_cpu = format!(
                "{:.2} / {:.2} µs/node",
                cpu.0.as_secs_f64() * 1e6 / lifted,
                cpu.1.as_secs_f64() * 1e6 / lifted
            );
            let before = (cpu_time(server), cpu_time(client));
            let (rest, rest_t) = syn_lift(core, "#grow").await;
            assert_eq!(rest, (size - probe) as usize);
            let rest_cpu = if rest > 0 {
                format!(
                    "{:.2} / {:.2} µs/node",
                    cpu_us(server, before.0, rest),
                    cpu_us(client, before.1, rest)
                )
            } else {
                "–".into()
            };
            let row = format!(
                "| {size} | {ingest} | {} | {probe_cpu} | {} | {rest_cpu} |",
                per_node(walls[PROBE_LIFTS / 2], probe as usize),
                per_node(rest_t, rest)
            );
            eprintln!("{row}");
            let _ = writeln!(out, "{row}");
        }
    });
    let _ = writeln!(out, "\nLoad average at the end: {}", loadavg());
    println!("{out}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::write(target.join("storm-bench.md"), &out);
}
