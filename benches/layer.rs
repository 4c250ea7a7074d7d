//! Layer benchmark: durable ingest of `inet:ipv4` nodes with `:asn` and a tag, lifts by tag, and
//! how lift cost per node changes with the layer's size; then the same lifts through a view of
//! the layer alone and through a fork (a second layer on top, empty, then holding new `:asn`
//! values for a tenth of the nodes), to measure the cost of merging layers.
//!
//! `cargo bench --bench layer` runs the ingest and lift measurements on 50,000 nodes;
//! `cargo bench --bench layer -- --scale 10000,100000,1000000` adds the size sweep. Other
//! options: `--nodes N`, `--batch N` (nodes per `store` call, 1000), `--flush-ms N` (the
//! background LMDB flush interval, 1000). Each run writes real files in a temporary directory
//! on the current file system (set `TMPDIR` to measure another disk). Wall time includes
//! waiting for other processes on a shared machine; the CPU time line does not.

use std::time::{Duration, Instant};
use syn::cortex::edits::{Buid, Edit, NodeEdit, stortype};
use syn::cortex::layer::{Cmp, Layer, LayerOptions};
use syn::cortex::model::Model;
use syn::cortex::view::View;
use syn::guid::buid_of;
use syn::msgpack::Value;

const TAG: &str = "bench.tag";

fn buid(form: &str, valu: &Value) -> Buid {
    buid_of(&Value::Array(vec![Value::from(form), valu.clone()]))
}

fn add(form: &str, valu: Value, stortype: u16, mut edits: Vec<Edit>) -> NodeEdit {
    edits.insert(
        0,
        Edit::NodeAdd {
            valu: valu.clone(),
            stortype,
        },
    );
    NodeEdit {
        buid: buid(form, &valu),
        form: form.into(),
        edits,
    }
}

/// One `store` call's nodeedits: `size` ipv4 nodes from `first`, each with `:asn` and `#bench.tag`,
/// plus the inet:asn and syn:tag nodes a cortex would add with them (one asn per 10 ipv4s).
fn batch(first: u32, size: u32) -> Vec<NodeEdit> {
    let mut out = Vec::with_capacity(size as usize * 11 / 10 + 2);
    for tag in ["bench", TAG] {
        out.push(add("syn:tag", Value::from(tag), stortype::UTF8, vec![]));
    }
    for n in first..first + size {
        let asn = i64::from(n / 10);
        if n % 10 == 0 {
            out.push(add("inet:asn", Value::from(asn), stortype::I64, vec![]));
        }
        out.push(add(
            "inet:ipv4",
            Value::from(u64::from(n)),
            stortype::U32,
            vec![
                Edit::PropSet {
                    prop: "asn".into(),
                    valu: Value::from(asn),
                    oldv: Value::Nil,
                    stortype: stortype::I64,
                },
                Edit::TagSet {
                    tag: "bench".into(),
                    valu: (None, None),
                    oldv: None,
                },
                Edit::TagSet {
                    tag: TAG.into(),
                    valu: (None, None),
                    oldv: None,
                },
            ],
        ));
    }
    out
}

fn meta() -> Value {
    Value::map([
        ("time", Value::from(1_700_000_000_000i64)),
        ("user", Value::from("a".repeat(32))),
    ])
}

fn rate(count: usize, took: Duration) -> String {
    format!("{:.0}/s", count as f64 / took.as_secs_f64())
}

/// Store `nodes` ipv4 nodes in calls of `size`; returns the time the calls took.
fn ingest(layer: &Layer, nodes: u32, size: u32) -> (Duration, usize) {
    let meta = meta();
    let mut took = Duration::ZERO;
    let mut nodeedits = 0;
    let mut first = 0;
    while first < nodes {
        let edits = batch(first, size.min(nodes - first));
        nodeedits += edits.len();
        let start = Instant::now();
        layer.store(&edits, &meta).expect("store");
        took += start.elapsed();
        first += size;
    }
    (took, nodeedits)
}

/// CPU time (user + system) this process has used so far; on a shared machine, wall time
/// includes waiting for other processes, CPU time does not.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn lifts(layer: &Layer, nodes: u32) {
    let reader = layer.reader().expect("reader");
    let (count, took) = time(|| reader.lift_tag(TAG, None).expect("lift").count());
    assert_eq!(count, nodes as usize);
    println!(
        "  lift #{TAG}: {count} buids in {took:.2?} = {} nodes",
        rate(count, took)
    );
    let (count, took) = time(|| {
        let mut n = 0;
        for buid in reader.lift_tag(TAG, Some("inet:ipv4")).expect("lift") {
            let sode = reader.sode(&buid.expect("buid")).expect("sode");
            n += usize::from(sode.is_some());
        }
        n
    });
    println!(
        "  lift inet:ipv4#{TAG} + read each node: {count} in {took:.2?} = {} nodes",
        rate(count, took)
    );
    let (count, took) = time(|| reader.lift_form("inet:ipv4").expect("lift").count());
    println!(
        "  lift inet:ipv4 (by value): {count} in {took:.2?} = {} nodes",
        rate(count, took)
    );
    let probes = 10_000u32.min(nodes);
    let (found, took) = time(|| {
        (0..probes)
            .map(|i| {
                let n = (u64::from(i) * 7919) % u64::from(nodes);
                let cmp = Cmp::Eq(Value::from(n));
                reader
                    .lift_prop("inet:ipv4", None, stortype::U32, &cmp)
                    .expect("lift")
                    .count()
            })
            .sum::<usize>()
    });
    assert_eq!(found, probes as usize);
    println!(
        "  inet:ipv4=<n> point lifts: {probes} in {took:.2?} = {:.2} us each",
        took.as_secs_f64() * 1e6 / f64::from(probes)
    );
}

/// `:asn` set again in a fork's layer for every tenth node (storage nodes without a value).
fn overrides(top: &Layer, nodes: u32) {
    let edits: Vec<NodeEdit> = (0..nodes)
        .step_by(10)
        .map(|n| {
            let valu = Value::from(u64::from(n));
            NodeEdit {
                buid: buid("inet:ipv4", &valu),
                form: "inet:ipv4".into(),
                edits: vec![Edit::PropSet {
                    prop: "asn".into(),
                    valu: Value::from(i64::from(n / 10) + 1_000_000),
                    oldv: Value::Nil,
                    stortype: stortype::I64,
                }],
            }
        })
        .collect();
    top.store(&edits, &meta()).expect("store overrides");
}

/// One timed lift: how many buids it gave.
type LiftRun<'v> = Box<dyn Fn() -> usize + 'v>;

/// The same lifts through a view: buids of `#tag` on one form, of the form, and of `:asn`
/// (whose entries a fork's layer can hide).
fn view_lifts(label: &str, view: &View, nodes: u32) {
    let asn = view.prop_ref("inet:ipv4:asn").expect("prop");
    let runs: [(&str, LiftRun<'_>); 3] = [
        (
            "inet:ipv4#bench.tag",
            Box::new(|| view.lift_tag(TAG, Some("inet:ipv4")).expect("lift").len()),
        ),
        (
            "inet:ipv4",
            Box::new(|| view.lift_form("inet:ipv4").expect("lift").len()),
        ),
        (
            "inet:ipv4:asn",
            Box::new(|| view.lift_prop(&asn).expect("lift").len()),
        ),
    ];
    for (what, run) in runs {
        let (count, took) = time(run);
        assert_eq!(count, nodes as usize, "{label} {what}");
        println!(
            "  {label}: lift {what}: {count} buids in {took:.2?} = {} nodes",
            rate(count, took)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let nodes: u32 = arg("--nodes").map_or(50_000, |n| n.parse().expect("--nodes N"));
    let size: u32 = arg("--batch").map_or(1_000, |n| n.parse().expect("--batch N"));

    let flush_ms: u64 = arg("--flush-ms").map_or(1000, |n| n.parse().expect("--flush-ms N"));
    let opts = LayerOptions {
        sync_interval: Duration::from_millis(flush_ms),
        ..LayerOptions::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open_with(dir.path(), "bench", opts).expect("open");
    let cpu = cpu_time();
    let (took, nodeedits) = ingest(&layer, nodes, size);
    let cpu = cpu_time() - cpu;
    println!(
        "ingest: {nodes} inet:ipv4 nodes (+ asn/tag nodes, {nodeedits} nodeedits) in store() calls of {size}: {took:.2?} = {} ipv4 nodes, {} nodeedits",
        rate(nodes as usize, took),
        rate(nodeedits, took)
    );
    println!(
        "  CPU time {cpu:.2?} (all threads) = {} ipv4 nodes per CPU-second",
        rate(nodes as usize, cpu)
    );
    let (_, took) = time(|| layer.store(&batch(0, size), &meta()).expect("store"));
    println!("  re-storing {size} unchanged nodes: {took:.2?} (nothing logged)");
    lifts(&layer, nodes);

    let model = Model::shared().expect("model");
    let topdir = tempfile::tempdir().expect("tempdir");
    let top = Layer::open(topdir.path(), "top").expect("open top");
    view_lifts("one layer", &View::new(layer.clone(), model.clone()), nodes);
    let fork = View::stack(vec![top.clone(), layer.clone()], model).expect("fork");
    view_lifts("fork, empty top", &fork, nodes);
    overrides(&top, nodes);
    view_lifts("fork, top sets 10% :asn", &fork, nodes);
    drop((fork, top));

    let (_, took) = time(|| layer.close().expect("close"));
    println!("  close (LMDB flush): {took:.2?}");
    let (layer, took) = time(|| Layer::open(dir.path(), "bench").expect("reopen"));
    println!("  reopen: {took:.2?}");
    drop(layer);

    if let Some(scales) = arg("--scale") {
        println!("size sweep (calls of {size}):");
        for scale in scales.split(',') {
            let n: u32 = scale.parse().expect("--scale N,N,...");
            let dir = tempfile::tempdir().expect("tempdir");
            let layer = Layer::open(dir.path(), "bench").expect("open");
            let (took, _) = ingest(&layer, n, size);
            println!(
                "{n} nodes: ingest {took:.2?} = {} ipv4 nodes",
                rate(n as usize, took)
            );
            lifts(&layer, n);
        }
    }
}
