//! `syn migrate-200` on a large genuine Synapse 0.1.58 cortex, side by side with Synapse
//! 2.0.0's own `migrate_200` on the same cortex: nodes per second, peak memory (max RSS from
//! `/usr/bin/time`), with and without `--safety-off`, and the cost per node as the node count
//! grows (`--nodelim`).
//!
//! Run: `cargo bench --bench migrate`. Environment: `SYN_BENCH_MIGRATE_SRC` (a 0.1.x cortex to
//! use; default: one made here by the fixture's `make_fixture.py` under the 0.1.58 peer),
//! `SYN_BENCH_MIGRATE_COUNT` (`--count` for that, default 200000), `SYN_BENCH_MIGRATE_DIR`
//! (work directory, default target/bench-migrate). Peers that are missing are skipped with a
//! note. Results are printed as markdown rows for docs/benchmarks.md.

#[path = "../tests/common/mod.rs"]
mod common;

use common::syn_bin;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Wall seconds and max RSS (KiB) of a command run under `/usr/bin/time`.
fn timed(name: &str, cmd: Command) -> Option<(f64, u64, common::RunOut)> {
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("SYNBENCH %e %M")
        .arg(prog)
        .args(args)
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        );
    let out = common::run_bounded(wrapped, Duration::from_secs(3600)).expect("run");
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("SYNBENCH "))?
        .to_owned();
    let mut parts = line.split_whitespace().skip(1);
    let secs: f64 = parts.next()?.parse().ok()?;
    let kib: u64 = parts.next()?.parse().ok()?;
    if !out.ok() {
        eprintln!("{name} failed: {}", out.describe());
        return None;
    }
    Some((secs, kib, out))
}

/// The total nodes read from a syn summary.
fn nodes_read(out: &common::RunOut) -> u64 {
    out.stdout
        .lines()
        .find(|l| l.starts_with("total: "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn source(work: &Path) -> Option<PathBuf> {
    if let Some(src) = std::env::var_os("SYN_BENCH_MIGRATE_SRC") {
        return Some(PathBuf::from(src));
    }
    let count = std::env::var("SYN_BENCH_MIGRATE_COUNT").unwrap_or_else(|_| "200000".into());
    let out_dir = work.join(format!("fixture-{count}"));
    let src = out_dir.join("core01x");
    if src.join("cell.guid").exists() {
        return Some(src);
    }
    let py = common::syn01_python()?;
    let script = common::repo_root()
        .join("..")
        .join("shared")
        .join("fixtures")
        .join("synapse-0.1.58")
        .join("make_fixture.py");
    std::fs::create_dir_all(&out_dir).unwrap();
    eprintln!("building a 0.1.58 cortex with --count {count} (takes minutes)");
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .args(["--outdir", s(&out_dir), "--count", &count]);
    let out = common::run_bounded(cmd, Duration::from_secs(7200)).unwrap();
    assert!(out.ok(), "make_fixture: {}", out.describe());
    Some(src)
}

fn main() {
    let work = std::env::var_os("SYN_BENCH_MIGRATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target").join("bench-migrate"));
    std::fs::create_dir_all(&work).unwrap();
    let Some(src) = source(&work) else {
        eprintln!("no 0.1.x cortex to migrate (the 0.1.58 peer is missing): nothing measured");
        return;
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "source: {} ; load average at start: {}",
        src.display(),
        load.trim()
    );
    println!();
    println!("| tool | options | nodes | seconds | nodes/s | µs/node | max RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    let row = |tool: &str, opts: &str, nodes: u64, secs: f64, kib: u64| {
        println!(
            "| {tool} | {opts} | {nodes} | {secs:.2} | {:.0} | {:.2} | {:.0} |",
            nodes as f64 / secs,
            secs * 1e6 / nodes as f64,
            kib as f64 / 1024.0
        );
    };
    let syn_run = |name: &str, extra: &[&str]| {
        let dest = work.join(format!("dest-{name}"));
        let _ = std::fs::remove_dir_all(&dest);
        let mut cmd = Command::new(syn_bin());
        cmd.args(["migrate-200", "--src", s(&src), "--dest", s(&dest)])
            .args(extra)
            .args(["--progress-every", "100000000"]);
        let r = timed(name, cmd);
        let _ = std::fs::remove_dir_all(&dest);
        r
    };
    for limit in ["10000", "100000"] {
        if let Some((secs, kib, out)) = syn_run(&format!("lim{limit}"), &["--nodelim", limit]) {
            row(
                "syn",
                &format!("--nodelim {limit}"),
                nodes_read(&out),
                secs,
                kib,
            );
        }
    }
    for (name, extra) in [("safe", &[][..]), ("unsafe", &["--safety-off"][..])] {
        if let Some((secs, kib, out)) = syn_run(name, extra) {
            let opts = if extra.is_empty() {
                "(safety on)"
            } else {
                "--safety-off"
            };
            row("syn", opts, nodes_read(&out), secs, kib);
        }
    }

    // Synapse 2.0.0's migrate_200 stops on a layer without a model version; one open and
    // close by 0.1.58 stamps it (as peers.md says), on a copy.
    let (Some(py01), Some(py200)) = (common::syn01_python(), common::syn200_python()) else {
        eprintln!("Synapse peers missing: Synapse 2.0.0's migrate_200 not measured");
        return;
    };
    let stamped = work.join("stamped");
    if !stamped.join("cell.guid").exists() {
        let _ = std::fs::remove_dir_all(&stamped);
        common::copy_tree(&src, &stamped).unwrap();
        let script = "import asyncio, sys\nimport synapse.cortex as s_cortex\n\
                      async def main():\n    core = await s_cortex.Cortex.anit(sys.argv[1])\n    await core.fini()\n\
                      if __name__ == '__main__':\n    asyncio.run(main())\n";
        let mut cmd = Command::new(&py01);
        cmd.args(["-c", script, s(&stamped)]);
        let out = common::run_bounded(cmd, Duration::from_secs(600)).unwrap();
        assert!(out.ok(), "stamping with 0.1.58: {}", out.describe());
    }
    let total = {
        let src = syn::migrate::source::SrcCortex::open(&stamped).unwrap();
        src.layers
            .iter()
            .map(|l| l.form_counts().unwrap().values().sum::<u64>())
            .sum::<u64>()
    };
    for (name, extra) in [("py-safe", &[][..]), ("py-unsafe", &["--safety-off"][..])] {
        let dest = work.join(format!("dest-{name}"));
        let _ = std::fs::remove_dir_all(&dest);
        let mut cmd = Command::new(&py200);
        cmd.args([
            "-m",
            "synapse.tools.migrate_200",
            "--src",
            s(&stamped),
            "--dest",
            s(&dest),
        ])
        .args(extra);
        if let Some((secs, kib, _)) = timed(name, cmd) {
            let opts = if extra.is_empty() {
                "(safety on)"
            } else {
                "--safety-off"
            };
            row("Synapse 2.0.0 migrate_200", opts, total, secs, kib);
        }
        let _ = std::fs::remove_dir_all(&dest);
    }
}
