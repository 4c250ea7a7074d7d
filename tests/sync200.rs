//! `syn sync-200` between real processes: the fixture's backup is migrated with `syn
//! migrate-200` and served by `syn cortex`; the fixture's live copy (96 splices past the
//! backup) is served by Synapse 0.1.58's own code on loopback (tests/py/serve01.py), and
//! edited through 0.1.58's own client (tests/py/storm01.py). Skipped, with a line saying why,
//! where the 0.1.58 peer cannot be installed.

mod common;

use common::{Daemon, NotifySocket, RunOut, SynService, run_py, syn};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MAIN_LAYER: &str = "fae94d338b3089351036762f47bf5023";
const FORK_LAYER: &str = "5f11615dec983dff9ea0fe6bf8860756";

/// The 0.1.58 cortex on the live copy, and `syn cortex` on the migrated backup.
/// Fields drop in order: both services stop before their directories go.
struct Pair {
    python: PathBuf,
    /// The 0.1.58 process, stopped when the pair is dropped.
    _old: Daemon,
    old_port: u16,
    new: SynService,
    tmp: tempfile::TempDir,
}

impl Pair {
    fn new() -> Option<Pair> {
        let fixture = common::fixture_01x();
        if !fixture.join("core01x-live").is_dir() {
            common::skip(&format!("no fixture at {}", fixture.display()));
            return None;
        }
        let python = common::syn01_python()?;
        let tmp = tempfile::tempdir().unwrap();
        for name in ["core01x", "core01x-live"] {
            common::copy_tree(&fixture.join(name), &tmp.path().join(name)).unwrap();
        }
        let dest = tmp.path().join("dest");
        migrate(&tmp.path().join("core01x"), &dest);

        let old_port = common::free_port();
        let mut cmd = Command::new(&python);
        cmd.arg(common::py_script("serve01.py"))
            .arg(tmp.path().join("core01x-live"))
            .arg(old_port.to_string());
        let mut old = Daemon::spawn("synapse 0.1.58 cortex", cmd).unwrap();
        if let Err(e) = old.wait_port(old_port, Duration::from_secs(90)) {
            panic!("{e}: {}", old.stderr_log());
        }
        let new = SynService::start_in("cortex", &dest, &[], &[]).expect("syn cortex starts");
        Some(Pair {
            tmp,
            python,
            _old: old,
            old_port,
            new,
        })
    }

    fn src_url(&self) -> String {
        format!("tcp://root:secret@127.0.0.1:{}/", self.old_port)
    }

    fn dest_url(&self) -> String {
        format!("tcp://root:secret@127.0.0.1:{}/", self.new.port)
    }

    fn offsfile(&self) -> PathBuf {
        self.tmp.path().join("dest/migration/lyroffs.yaml")
    }

    fn state(&self) -> Json {
        let path = self.tmp.path().join("dest/migration/sync200.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("state file")).unwrap()
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "sync-200".into(),
            "--src".into(),
            self.src_url(),
            "--dest".into(),
            self.dest_url(),
            "--offsfile".into(),
            self.offsfile().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `syn sync-200 --until-caught-up`, to the end; it must succeed and say that the main
    /// layer started at splice `offs` taken from `whence`.
    fn catch_up(&self, offs: u64, whence: &str) -> RunOut {
        let mut args = self.args(&[]);
        args.push("--until-caught-up".into());
        let out = syn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.ok(), "{}", out.describe());
        let said = format!("layer {MAIN_LAYER}: from splice {offs} ({whence})");
        assert!(out.stderr.contains(&said), "{}", out.stderr);
        out
    }

    /// `syn sync-200` following, in the background, telling `notify` how it goes.
    fn follow(&self, extra: &[&str], notify: &NotifySocket) -> Daemon {
        let mut cmd = Command::new(common::syn_bin());
        cmd.args(self.args(extra))
            .env_remove("RUST_LOG")
            .env("NOTIFY_SOCKET", notify.path());
        Daemon::spawn("syn sync-200", cmd).unwrap()
    }

    /// Edit the 0.1.58 cortex with its own client.
    fn old_storm(&self, queries: &[&str]) {
        let mut args = vec![self.src_url()];
        args.extend(queries.iter().map(|q| q.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_py(&self.python, "storm01.py", &args);
        assert!(out.ok(), "{}", out.describe());
    }

    /// The 0.1.58 cortex's nodes for `query`, as `[ndef, props, tags]` JSON lines.
    fn old_nodes(&self, query: &str) -> BTreeMap<String, Json> {
        let out = run_py(
            &self.python,
            "storm01.py",
            &["--nodes", &self.src_url(), query],
        );
        assert!(out.ok(), "{}", out.describe());
        out.json_lines()
            .into_iter()
            .map(|row| (row[0].to_string(), row))
            .collect()
    }

    fn new_nodes(&self, query: &str) -> BTreeMap<String, Json> {
        nodes(&self.new.url("cortex"), query)
    }
}

/// `syn migrate-200 --src SRC --dest DEST`, which must succeed.
fn migrate(src: &Path, dest: &Path) {
    let out = syn(&[
        "migrate-200",
        "--src",
        src.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ]);
    assert!(out.ok(), "{}", out.describe());
}

/// `syn storm` nodes for `query` as `[ndef, props, tags]`, by ndef.
fn nodes(url: &str, query: &str) -> BTreeMap<String, Json> {
    let out = syn(&["storm", "--json", url, query]);
    assert!(out.ok(), "{}", out.describe());
    out.json_lines()
        .into_iter()
        .filter(|m| m[0] == "node")
        .map(|m| {
            let (ndef, info) = (&m[1][0], &m[1][1]);
            (
                ndef.to_string(),
                serde_json::json!([ndef, info["props"], info["tags"]]),
            )
        })
        .collect()
}

/// Wait until `check` holds (checked every 200 ms, at most 30 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{what}: not within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn layer(state: &Json, iden: &str) -> (u64, u64, u64) {
    let l = &state["layers"][iden];
    (
        l["nextoffs"].as_u64().unwrap(),
        l["splices"].as_u64().unwrap(),
        l["errors"].as_u64().unwrap(),
    )
}

#[test]
fn catching_up_gives_the_nodes_a_migration_of_the_live_cortex_gives() {
    let Some(pair) = Pair::new() else { return };
    pair.catch_up(14766, "lyroffs.yaml");
    let state = pair.state();
    assert_eq!(layer(&state, MAIN_LAYER), (14862, 96, 0));
    assert_eq!(layer(&state, FORK_LAYER), (51, 0, 0));
    assert_eq!(state["errors"], serde_json::json!([]));
    assert!(!state["src"].as_str().unwrap().contains("secret"));

    // What a migration of the live copy (taken after the 96 splices) holds, node for node.
    let live = pair.tmp.path().join("live-again");
    common::copy_tree(&common::fixture_01x().join("core01x-live"), &live).unwrap();
    let dest2 = pair.tmp.path().join("dest2");
    migrate(&live, &dest2);
    let migrated = SynService::start_in("cortex", &dest2, &[], &[]).unwrap();
    let want = nodes(&migrated.url("cortex"), ".created");
    let got = pair.new_nodes(".created");
    assert!(want.len() > 2900, "{}", want.len());
    for (ndef, node) in &want {
        assert_eq!(got.get(ndef), Some(node), "{ndef}");
    }
    assert_eq!(got.len(), want.len());
    // Spot checks of what the splices did: a new node with a tag, a deleted node, a removed prop.
    assert!(got[r#"["inet:ipv4",16909060]"#][2]["post.backup"].is_array());
    assert!(pair.new_nodes(r#"it:dev:str="hello world""#).is_empty());
    assert!(got[r#"["inet:asn",20]"#][1].get("name").is_none());

    // A second run starts where the first stopped and finds nothing new.
    pair.catch_up(14862, "saved state");
    assert_eq!(layer(&pair.state(), MAIN_LAYER), (14862, 96, 0));
}

#[test]
fn follows_new_splices_and_goes_on_after_a_stop_or_a_kill() {
    let Some(pair) = Pair::new() else { return };
    let notify = NotifySocket::new();
    let mut follower = pair.follow(&["--poll", "0.2", "--status-every", "1"], &notify);
    let wait = Duration::from_secs(30);
    notify.wait_for("READY=1", wait).expect("ready");
    let status = notify.wait_for("STATUS=", wait).expect("a status line");
    assert!(
        status.contains(&format!("layer {}: at ", &MAIN_LAYER[..8])),
        "{status}"
    );
    notify.wait_for("caught up", wait).expect("caught up");
    pair.old_storm(&["[ inet:ipv4=9.9.9.9 :asn=99 +#live.one=(2021, 2022) ]"]);
    eventually("the new node reaches syn", || {
        pair.new_nodes("inet:ipv4=9.9.9.9")
            .values()
            .any(|n| n[2]["live.one"].is_array() && n[1]["asn"] == 99)
    });
    let status = follower.stop().expect("exit status");
    assert!(status.success(), "{status}: {}", follower.stderr_log());
    assert!(follower.stderr_log().contains("stopping (signal)"));

    // Edits while nothing follows, then a backlog large enough to be cut by a kill -9.
    pair.old_storm(&["[ inet:fqdn=while.down.example.com +#down ]"]);
    let bulk: Vec<String> = (0..4)
        .map(|q| {
            let nodes: Vec<String> = (0..50)
                .map(|i| format!("inet:ipv4=10.0.{q}.{i} :asn={}", q * 50 + i))
                .collect();
            format!("[ {} +#bulk ]", nodes.join(" "))
        })
        .collect();
    pair.old_storm(&bulk.iter().map(String::as_str).collect::<Vec<_>>());
    let mut killed = pair.follow(&["--batch", "20"], &NotifySocket::new());
    std::thread::sleep(Duration::from_millis(700));
    if let Some(pid) = killed.pid() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = killed.stop();
    let before = layer(&pair.state(), MAIN_LAYER).0;

    pair.catch_up(before, "saved state");
    for query in ["#bulk", "#down", "#live"] {
        let want = pair.old_nodes(query);
        assert!(!want.is_empty(), "{query}");
        assert_eq!(pair.new_nodes(query), want, "{query}");
    }
}

#[test]
fn bad_input_and_unreachable_cortexes_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let offsfile = dir.path().join("lyroffs.yaml");
    std::fs::write(&offsfile, format!("{MAIN_LAYER}:\n  nextoffs: 0\n")).unwrap();
    let closed = format!("tcp://root:secret@127.0.0.1:{}/", common::free_port());
    let offs = offsfile.to_str().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "not yaml at all\n").unwrap();
    let cases: [(&str, &str, &[&str], i32, &str); 6] = [
        (
            &closed,
            bad.to_str().unwrap(),
            &[],
            1,
            "line 1: expected `<layer iden>:`",
        ),
        (&closed, offs, &[], 1, "cannot reach the 2.x cortex"),
        (
            &closed,
            "/nonexistent/lyroffs.yaml",
            &[],
            1,
            "cannot read /nonexistent/lyroffs.yaml",
        ),
        ("nope", offs, &[], 2, "bad telepath URL"),
        (
            &closed,
            offs,
            &["--poll=-1"],
            2,
            "must be more than 0 seconds",
        ),
        (&closed, offs, &["--err-lim", "-2"], 2, "-2 is not in"),
    ];
    for (src, offsfile, extra, code, says) in cases {
        let mut full = vec![
            "sync-200",
            "--src",
            src,
            "--dest",
            &closed,
            "--offsfile",
            offsfile,
        ];
        full.extend_from_slice(extra);
        let out = syn(&full);
        assert_eq!(out.code(), Some(code), "{full:?}: {}", out.describe());
        assert!(out.stderr.contains(says), "{full:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let cortex = SynService::start("cortex", &[]);
    let dest = format!("tcp://root:secret@127.0.0.1:{}/", cortex.port);
    let out = syn(&[
        "sync-200",
        "--src",
        &closed,
        "--dest",
        &dest,
        "--offsfile",
        offs,
    ]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("cannot reach the 0.1.x cortex"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    // A layer the cortex does not have is a failure, not something to wait for.
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "00000000000000000000000000000000:\n  nextoffs: 0\n",
    )
    .unwrap();
    let out = syn(&[
        "sync-200",
        "--src",
        &dest,
        "--dest",
        &dest,
        "--offsfile",
        unknown.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    assert!(out.stderr.contains("NoSuchLayer"), "{}", out.stderr);
}
