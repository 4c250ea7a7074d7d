//! Proves the peer harness: a real Python Synapse 2.256 cortex answers `tests/py/tele.py`.
//! Skips (passing, with a SKIP line on stderr) when the Python peer cannot be installed.

mod common;

use common::{PyService, is_hex32};

/// The buid of `inet:ipv4=1.2.3.4` as Synapse 2.x computes it.
const IPV4_1234_IDEN: &str = "20153b758f9d5eaaa38e4f4a65c36da797c3e59e549620fa7c4895e1a920991f";

#[test]
fn python_cortex_answers_tele() {
    let Some(core) = PyService::cortex() else {
        return;
    };
    assert!(core.url().starts_with("tcp://root:secret@127.0.0.1:"));
    assert!(core.dir().is_dir());
    // Only the loopback telepath port listens.
    assert!(
        core.log().contains("API (https): disabled"),
        "{}",
        core.log()
    );

    // call: the cell iden is a guid.
    let out = core.tele(&["call", "getCellIden"]);
    assert!(out.ok(), "getCellIden failed:\n{}", out.describe());
    let iden = out.json();
    let iden = iden.as_str().expect("the iden is a JSON string");
    assert!(is_hex32(iden), "not a guid: {iden}");

    // storm: one node message for the new node, with the known iden.
    let out = core.tele(&["storm", "[inet:ipv4=1.2.3.4]"]);
    assert!(out.ok(), "storm failed:\n{}", out.describe());
    let mesgs = out.json_lines();
    assert_eq!(
        mesgs.first().and_then(|m| m[0].as_str()),
        Some("init"),
        "{}",
        out.stdout
    );
    assert_eq!(
        mesgs.last().and_then(|m| m[0].as_str()),
        Some("fini"),
        "{}",
        out.stdout
    );
    let nodes: Vec<_> = mesgs.iter().filter(|m| m[0] == "node").collect();
    assert_eq!(nodes.len(), 1, "{}", out.stdout);
    let node = &nodes[0][1];
    assert_eq!(node[0][0], "inet:ipv4");
    assert_eq!(node[0][1], 0x01020304);
    assert_eq!(node[1]["iden"], IPV4_1234_IDEN);

    // storm --opts, and genr: lift it back with the repr.
    let out = core.tele(&["storm", "inet:ipv4", "--opts", r#"{"repr": true}"#]);
    assert!(out.ok(), "{}", out.describe());
    let reprs: Vec<_> = out
        .json_lines()
        .into_iter()
        .filter(|m| m[0] == "node")
        .map(|m| m[1][1]["repr"].clone())
        .collect();
    assert_eq!(reprs, vec![serde_json::json!("1.2.3.4")]);

    let out = core.tele(&["call", "count", "inet:ipv4"]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json(), serde_json::json!(1));

    // An unknown method: the server's NoSuchMeth, as JSON, exit 2.
    let out = core.tele(&["call", "noSuchMethodHere", "1"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    let err = out.json();
    assert_eq!(err["err"], "NoSuchMeth", "{}", out.describe());
    assert!(
        err["mesg"]
            .as_str()
            .is_some_and(|m| m.contains("noSuchMethodHere")),
        "{err}"
    );

    // A wrong password: AuthDeny.
    let bad = core.url().replace(":secret@", ":wrong@");
    let out = common::run_py(core.python(), "tele.py", &[&bad, "call", "getCellIden"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(out.json()["err"], "AuthDeny", "{}", out.describe());

    // dump_model.py over telepath: the model without its doc strings.
    let out = common::run_py(
        core.python(),
        "dump_model.py",
        &["--url", &core.url(), "--indent", "0"],
    );
    assert!(out.ok(), "{}", out.describe());
    let dump = out.json();
    assert_eq!(dump["synapse"], "2.256.0");
    let mdef = &dump["modeldefs"][0][1];
    let types = mdef["types"].as_array().expect("types");
    assert!(types.len() > 100, "{} types", types.len());
    assert!(
        types
            .iter()
            .all(|t| t[2].get("doc").is_none() && t[2].get("stortype").is_some())
    );
    let forms = mdef["forms"].as_array().expect("forms");
    let ipv4 = forms
        .iter()
        .find(|f| f[0] == "inet:ipv4")
        .expect("inet:ipv4 form");
    let asn = ipv4[2]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "asn")
        .expect(":asn");
    assert_eq!(asn[1][0], "inet:asn");
    assert!(asn[2].get("doc").is_none(), "{asn}");

    // The benchmark script runs and reports a rate.
    let out = common::run_py(core.python(), "bench_calls.py", &[&core.url(), "200"]);
    assert!(out.ok(), "{}", out.describe());
    let rate = out.json();
    assert_eq!(rate["calls"], 200);
    assert!(
        rate["calls_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{rate}"
    );
}

#[test]
fn free_ports_are_fresh() {
    let a = common::free_port();
    let b = common::free_port();
    assert!(a != 0 && b != 0 && a != b, "{a} {b}");
}

#[test]
fn daemon_guard_kills_its_group_on_drop() {
    // A shell that leaves a grandchild; both must be gone after the guard drops.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "sleep 300 & echo $!; wait"]);
    let mut d = common::Daemon::spawn("sleeper", cmd).expect("spawn sh");
    d.set_grace(std::time::Duration::from_secs(2));
    let pid = d.pid().expect("running") as i32;
    let t0 = std::time::Instant::now();
    let grandchild = loop {
        let text = d.stdout_log();
        if let Some(p) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            break p;
        }
        assert!(
            t0.elapsed().as_secs() < 10,
            "the shell did not start its child"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(d.exited().is_none());
    drop(d);
    // Alive: signalable and not a zombie waiting for its reaper.
    let alive = |p: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
            && std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| !r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
    };
    assert!(!alive(pid), "the shell survived");
    // The grandchild was reparented (to init/subreaper), which reaps it soon after SIGTERM.
    let t0 = std::time::Instant::now();
    while alive(grandchild) && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!alive(grandchild), "the grandchild survived");
}

/// The legacy peers (pyenv's CPython 3.7) install and import; slow only on first use.
#[test]
fn legacy_peers_import() {
    for (python, want) in [
        (common::syn01_python(), "0.1.58"),
        (common::syn200_python(), "2.0.0"),
    ] {
        let Some(python) = python else {
            continue;
        };
        let mut cmd = std::process::Command::new(&python);
        cmd.args([
            "-c",
            "import synapse.lib.version as v, synapse.cortex, synapse.telepath; print(v.verstring)",
        ]);
        let out = common::run_bounded(cmd, std::time::Duration::from_secs(120)).expect("spawn");
        assert!(out.ok(), "{}", out.describe());
        assert_eq!(out.stdout.trim(), want);
    }
}
