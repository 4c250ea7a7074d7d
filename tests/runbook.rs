//! `syn runbook`: the shipped runbooks end to end on real `syn cortex` processes (started and
//! stopped by the runbooks' direct backend) and real LMDB, their failure path, dry runs, the
//! audit trail, and the sandbox.

mod common;

use common::{RunOut, free_port, run_bounded, syn};
use serde_json::Value as Json;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A shipped runbook.
fn shipped(name: &str) -> PathBuf {
    common::repo_root().join("scripts").join(name)
}

/// A cortex directory managed by runbooks through the direct backend, with its backups
/// beside it. Dropping it stops the service the runbooks left running.
struct Site {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    backups: PathBuf,
}

impl Site {
    /// A new cortex directory listening on a free loopback port (its `cell.toml`).
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cortex").join("main");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("cell.toml"),
            format!("telepath = \"tcp://127.0.0.1:{}\"\n", free_port()),
        )
        .unwrap();
        let backups = tmp.path().join("backups");
        Site { tmp, dir, backups }
    }

    /// `syn runbook FILE --backend direct --set dir=... --set backups=... EXTRA...`.
    fn runbook(&self, file: &Path, extra: &[&str]) -> RunOut {
        self.runbook_env(file, extra, &[])
    }

    fn runbook_env(&self, file: &Path, extra: &[&str], env: &[(&str, &str)]) -> RunOut {
        let mut cmd = Command::new(common::syn_bin());
        cmd.arg("runbook")
            .arg(file)
            .args(["--backend", "direct", "--set"])
            .arg(format!("dir={}", s(&self.dir)))
            .arg("--set")
            .arg(format!("backups={}", s(&self.backups)))
            .arg("--set")
            .arg(format!("scratch={}", s(self.tmp.path())))
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("SYN_RUNBOOK_FAILPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_bounded(cmd, Duration::from_secs(300)).expect("run syn runbook")
    }

    /// An inline runbook (a file in the site's temporary directory).
    fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// Start the cortex through a runbook and fill it with a few nodes.
    fn start_with_nodes(&self) {
        let start = self.script(
            "start.rhai",
            "let svc = service(); svc.start(); svc.wait_ready(60);",
        );
        let out = self.runbook(&start, &[]);
        assert!(out.ok(), "{}", out.describe());
        let out = syn(&[
            "storm",
            &self.url(),
            "[inet:ipv4=1.2.3.4 inet:ipv4=5.6.7.8 inet:fqdn=vertex.link +#seen]",
        ]);
        assert!(out.ok(), "{}", out.describe());
    }

    fn url(&self) -> String {
        format!("cell://{}:cortex", s(&self.dir))
    }

    /// The pid the direct backend recorded.
    fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.with_file_name("main.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// The nodes of the cortex as `form=value` lines, sorted.
    fn nodes(&self) -> Vec<String> {
        let out = syn(&["storm", &self.url(), "inet:ipv4 inet:fqdn"]);
        assert!(out.ok(), "{}", out.describe());
        let mut nodes: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("inet:"))
            .map(str::to_owned)
            .collect();
        nodes.sort();
        nodes
    }

    /// The names of the backups and their states.
    fn backups(&self) -> Vec<(String, String)> {
        let out = syn(&["backup", "list", s(&self.backups), "--json"]);
        assert!(out.ok(), "{}", out.describe());
        out.json_lines()
            .into_iter()
            .filter(|l| l["name"].is_string())
            .map(|l| {
                (
                    l["name"].as_str().unwrap().to_owned(),
                    l["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The audit records of one runbook.
    fn audit(&self, runbook: &str) -> Vec<Json> {
        let path = self
            .dir
            .with_file_name(format!("main.{runbook}.audit.jsonl"));
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Directories beside the service directory (moved-aside copies would show here).
    fn siblings(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..200 {
                if nix::sys::signal::kill(pid, None).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The records of the last run in an audit trail: start, steps, end.
fn last_run(records: &[Json]) -> Vec<Json> {
    let run = records.last().unwrap()["run"].clone();
    records
        .iter()
        .filter(|r| r["run"] == run)
        .cloned()
        .collect()
}

fn steps<'a>(run: &'a [Json], op: &str) -> Vec<&'a Json> {
    run.iter()
        .filter(|r| r["event"] == "step" && r["op"] == op)
        .collect()
}

#[test]
fn the_shipped_runbooks_back_up_test_restore_and_compact_a_running_cortex() {
    let site = Site::new();
    site.start_with_nodes();
    let nodes = site.nodes();
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    let all = syn(&["call", &site.url(), "count", "\".created\""]);
    assert!(all.ok(), "{}", all.describe());
    let all = all.stdout.trim().to_owned();
    let pid = site.pid().expect("pid file");

    // Nightly: a live backup, verified, the policy applied.
    let out = site.runbook(&shipped("nightly-live-backup.rhai"), &[]);
    assert!(out.ok(), "{}", out.describe());
    let backups = site.backups();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].1, "verified");
    assert_eq!(
        site.pid(),
        Some(pid),
        "the nightly backup left the service alone"
    );
    let run = last_run(&site.audit("nightly-live-backup"));
    assert_eq!(run.first().unwrap()["event"], "start");
    assert_eq!(run.last().unwrap()["event"], "end");
    assert_eq!(run.last().unwrap()["outcome"], "ok");
    for op in ["back up", "verify backup", "prune backups of"] {
        assert_eq!(steps(&run, op).len(), 1, "{op}: {run:?}");
        assert_eq!(steps(&run, op)[0]["outcome"], "ok");
    }

    // The restore test: a second cortex on a scratch copy serves the nodes; nothing is left.
    let out = site.runbook(
        &shipped("verify-latest-backup.rhai"),
        &["--set", "min_nodes=4"],
    );
    assert!(out.ok(), "{}", out.describe());
    let run = last_run(&site.audit("verify-latest-backup"));
    let counted = steps(&run, "count");
    assert_eq!(counted.len(), 1);
    assert!(
        counted[0]["target"].as_str().unwrap().contains("scratch"),
        "{counted:?}"
    );
    assert_eq!(counted[0]["detail"].as_str(), Some(all.as_str()));
    let leftovers: Vec<_> = fs::read_dir(site.tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("syn-runbook-"))
        .collect();
    assert!(leftovers.is_empty(), "scratch left: {leftovers:?}");
    assert_eq!(site.pid(), Some(pid));
    // Asking for more nodes than the backup holds fails the restore test.
    let out = site.runbook(
        &shipped("verify-latest-backup.rhai"),
        &["--set", "min_nodes=1000"],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("fewer than min_nodes=1000"),
        "{}",
        out.describe()
    );

    // A dry run of the maintenance window changes nothing.
    let ino = fs::metadata(&site.dir).unwrap().ino();
    let out = site.runbook(&shipped("restore-from-cold-backup.rhai"), &["--dry-run"]);
    assert!(out.ok(), "{}", out.describe());
    assert!(
        out.stderr.contains("dry run: would stop"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("dry run: would restore"),
        "{}",
        out.describe()
    );
    assert_eq!(site.pid(), Some(pid));
    assert_eq!(fs::metadata(&site.dir).unwrap().ino(), ino);
    assert_eq!(site.backups().len(), 1, "the dry run took no backup");
    let run = last_run(&site.audit("restore-from-cold-backup"));
    assert_eq!(run[0]["dry_run"], true);
    assert_eq!(steps(&run, "stop")[0]["outcome"], "dry-run");

    // The maintenance window: stopped, cold backup, compacted copy in place, started, checked.
    let out = site.runbook(&shipped("restore-from-cold-backup.rhai"), &[]);
    assert!(out.ok(), "{}", out.describe());
    let new_pid = site.pid().expect("running again");
    assert_ne!(new_pid, pid, "the service was restarted");
    assert_ne!(
        fs::metadata(&site.dir).unwrap().ino(),
        ino,
        "the copy is in place"
    );
    assert_eq!(site.nodes(), nodes);
    assert_eq!(
        site.siblings(),
        ["main"],
        "the original directory is removed"
    );
    let backups = site.backups();
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(
        backups.iter().all(|(_, state)| state == "verified"),
        "{backups:?}"
    );
    let run = last_run(&site.audit("restore-from-cold-backup"));
    assert_eq!(run.last().unwrap()["outcome"], "ok");
    let ops: Vec<&str> = run
        .iter()
        .filter(|r| r["event"] == "step")
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "status",
            "count",
            "list node idens",
            "stop",
            "back up",
            "verify backup",
            "restore",
            "start",
            "wait until ready",
            "count",
            "list node idens",
            "remove"
        ]
    );
}

#[test]
fn a_cold_backup_that_fails_verification_leaves_the_original_directory_running_with_its_data() {
    let site = Site::new();
    site.start_with_nodes();
    let nodes = site.nodes();
    let ino = fs::metadata(&site.dir).unwrap().ino();

    let out = site.runbook_env(
        &shipped("restore-from-cold-backup.rhai"),
        &[],
        &[("SYN_RUNBOOK_FAILPOINT", "flip-byte-after-backup")],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let last = out.stderr.trim().lines().last().unwrap();
    assert!(
        last.contains("maintenance window failed and was undone")
            && last.contains("failed verification"),
        "{}",
        out.describe()
    );
    // The original directory, running, with every node.
    assert_eq!(fs::metadata(&site.dir).unwrap().ino(), ino);
    assert!(site.pid().is_some());
    assert_eq!(site.nodes(), nodes);
    assert_eq!(site.siblings(), ["main"]);
    // The damaged backup is listed as such; prune will not count it.
    let backups = site.backups();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].1, "damaged");
    let run = last_run(&site.audit("restore-from-cold-backup"));
    assert_eq!(run.last().unwrap()["outcome"], "failed");
    assert_eq!(steps(&run, "verify backup")[0]["outcome"], "failed");
    assert!(steps(&run, "restore").is_empty(), "nothing was restored");
}

#[test]
fn put_back_returns_the_original_directory_after_a_restore() {
    let site = Site::new();
    site.start_with_nodes();
    let nodes = site.nodes();
    let ino = fs::metadata(&site.dir).unwrap().ino();
    // The steps of the maintenance window's failure path, after its restore.
    let script = site.script(
        "undo.rhai",
        r#"
        let svc = service();
        svc.stop();
        let cold = backup(svc);
        let restored = restore(cold, svc);
        let failed_copy = put_back(svc, restored.old);
        remove_dir(failed_copy);
        svc.start();
        svc.wait_ready(60);
        "#,
    );
    let out = site.runbook(
        &script,
        &["--audit", s(&site.tmp.path().join("undo.jsonl"))],
    );
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(fs::metadata(&site.dir).unwrap().ino(), ino);
    assert_eq!(site.nodes(), nodes);
    assert_eq!(site.siblings(), ["main"]);
}

#[test]
fn the_sandbox_stops_endless_loops_and_forbidden_operations_with_clear_messages() {
    let site = Site::new();
    let audit = site.tmp.path().join("sandbox.jsonl");
    let run = |name: &str, text: &str| {
        let file = site.script(name, text);
        site.runbook(&file, &["--audit", s(&audit)])
    };

    let out = run(
        "loop.rhai",
        "log(\"going round\");\nlet n = 0;\nloop { n += 1; }\n",
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("loop.rhai:3: stopped by the sandbox")
            && out.stderr.contains("an endless loop?"),
        "{}",
        out.describe()
    );

    let out = run("eval.rhai", "eval(\"1 + 1\");\n");
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("eval is not allowed"),
        "{}",
        out.describe()
    );

    let out = run("import.rhai", "import \"os\" as os;\n");
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("import is not allowed"),
        "{}",
        out.describe()
    );

    let out = run("rm.rhai", "remove_dir(\"/etc\");\n");
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("remove_dir /etc: forbidden"),
        "{}",
        out.describe()
    );
    assert!(Path::new("/etc").is_dir());

    let elsewhere = site.tmp.path().join("elsewhere");
    let out = run(
        "restore.rhai",
        &format!(
            "restore(\"{}\", \"{}\");\n",
            s(&site.backups),
            s(&elsewhere)
        ),
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("forbidden"), "{}", out.describe());
    assert!(!elsewhere.exists());

    // The wall-clock limit: a loop of API calls runs out of time long before operations.
    let file = site.script(
        "poll.rhai",
        "let svc = service();\nwhile true { svc.status(); }\n",
    );
    let out = site.runbook(&file, &["--audit", s(&audit), "--time-limit", "2s"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(
            "poll.rhai:2: stopped by the sandbox: the run took longer than its limit of 2s"
        ),
        "{}",
        out.describe()
    );

    // Every run that started is in the audit trail with its outcome.
    let records: Vec<Json> = fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ends: Vec<&Json> = records.iter().filter(|r| r["event"] == "end").collect();
    assert_eq!(ends.len(), 5, "{records:?}");
    assert!(ends.iter().all(|r| r["outcome"] == "failed"));
}

#[test]
fn a_dry_run_of_the_nightly_backup_before_any_backup_changes_nothing() {
    let site = Site::new();
    site.start_with_nodes();
    let out = site.runbook(&shipped("nightly-live-backup.rhai"), &["--dry-run"]);
    assert!(out.ok(), "{}", out.describe());
    assert!(
        out.stderr.contains("dry run: would back up"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("dry run: would prune backups of"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("nothing was backed up"),
        "{}",
        out.stderr
    );
    assert!(!site.backups.exists(), "the dry run made the backup root");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let out = syn(&["runbook", "/nonexistent.rhai", "--audit", "/tmp/x.jsonl"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.describe());
    let out = syn(&["runbook", "x.rhai", "--set", "novalue"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("KEY=VALUE"), "{}", out.describe());
    let out = syn(&["runbook", "x.rhai", "--backend", "chroot"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    // A runbook that needs a parameter says which.
    let site = Site::new();
    let file = site.script("needs.rhai", "let k = param(\"keep\");\n");
    let out = site.runbook(&file, &[]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("--set keep=VALUE"),
        "{}",
        out.describe()
    );
}

#[test]
fn renew_certs_reports_and_renews_host_certificates_near_expiry() {
    let site = Site::new();
    let certdir = site.tmp.path().join("certs");
    let easycert = |args: &[&str]| {
        let mut all = vec!["easycert", "--certdir", s(&certdir)];
        all.extend_from_slice(args);
        let out = syn(&all);
        assert!(out.ok(), "{}", out.describe());
    };
    easycert(&["--ca", "ops"]);
    easycert(&[
        "--server",
        "cortex.example",
        "--signas",
        "ops",
        "--days",
        "10",
    ]);
    easycert(&[
        "--server",
        "axon.example",
        "--signas",
        "ops",
        "--days",
        "400",
    ]);
    let set = format!("certdir={}", s(&certdir));

    // Report only: fails loudly, names the certificate, changes nothing.
    let before = fs::read(certdir.join("hosts/cortex.example.crt")).unwrap();
    let out = site.runbook(&shipped("renew-certs.rhai"), &["--set", &set]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("cortex.example ("),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("axon.example ("), "{}", out.describe());
    assert_eq!(
        fs::read(certdir.join("hosts/cortex.example.crt")).unwrap(),
        before
    );

    // Renew: a new certificate signed by the same CA, the old one kept aside.
    let out = site.runbook(
        &shipped("renew-certs.rhai"),
        &["--set", &set, "--set", "renew=yes", "--set", "restart=no"],
    );
    assert!(out.ok(), "{}", out.describe());
    assert_ne!(
        fs::read(certdir.join("hosts/cortex.example.crt")).unwrap(),
        before
    );
    let out = syn(&["easycert", "--certdir", s(&certdir), "--list", "--json"]);
    assert!(out.ok(), "{}", out.describe());
    let text = out.stdout;
    assert!(text.contains("cortex.example"), "{text}");
    let out = site.runbook(&shipped("renew-certs.rhai"), &["--set", &set]);
    assert!(
        out.ok(),
        "after renewal nothing is near expiry: {}",
        out.describe()
    );
    let aside = fs::read_dir(certdir.join("hosts"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".replaced-"))
        .count();
    assert_eq!(aside, 2, "the old key and certificate are kept");
}
