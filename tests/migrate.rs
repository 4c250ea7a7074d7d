//! `syn migrate-200` on the genuine Synapse 0.1.58 cortex in the shared fixtures: every test
//! copies the fixture into a temporary directory, migrates the copy, looks at the result the
//! way a user does (a `syn cortex` on it, storm over telepath) and checks that neither the
//! fixture nor the copy changed.

mod common;

use common::{SynService, syn, syn_bin};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use syn::cortex::layer::Layer;
use syn::migrate::source::SrcCortex;

const MAIN_VIEW: &str = "37b5c0e1752b17290756471b3f6bafc8";
const FORK_VIEW: &str = "efc6f35ab1a22d038f1ff9b3a2154b41";
const MAIN_LAYER: &str = "fae94d338b3089351036762f47bf5023";
const FORK_LAYER: &str = "5f11615dec983dff9ea0fe6bf8860756";

fn manifest() -> Json {
    let text = std::fs::read_to_string(common::fixture_01x().join("core01x.manifest.json"))
        .expect("the fixture's manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// sha256 of every file under `dir` by relative path.
fn tree_hash(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, syn::guid::sha256(&std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// A copy of the fixture's `core01x` in a temporary directory; on drop, checks that neither
/// the fixture nor the copy changed.
struct Fixture {
    tmp: tempfile::TempDir,
    original: BTreeMap<String, [u8; 32]>,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let src = common::fixture_01x().join("core01x");
        if !src.is_dir() {
            common::skip(&format!("no fixture at {}", src.display()));
            return None;
        }
        let original = tree_hash(&src);
        let tmp = tempfile::tempdir().unwrap();
        common::copy_tree(&src, &tmp.path().join("src")).unwrap();
        assert_eq!(tree_hash(&tmp.path().join("src")), original);
        Some(Fixture { tmp, original })
    }

    fn src(&self) -> PathBuf {
        self.tmp.path().join("src")
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn migrate(&self, dest: &str, extra: &[&str]) -> common::RunOut {
        let src = self.src();
        let dest = self.dest(dest);
        let mut args = vec![
            "migrate-200",
            "--src",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        syn(&args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            tree_hash(&common::fixture_01x().join("core01x")),
            self.original,
            "the shared fixture changed"
        );
        assert_eq!(
            tree_hash(&self.src()),
            self.original,
            "the source copy changed"
        );
    }
}

/// Run storm with `opts` over telepath and return the packed nodes by iden.
fn storm_nodes(url: &str, query: &str, opts: Option<&str>) -> HashMap<String, Json> {
    let mut args = vec!["storm", "--json"];
    if let Some(o) = opts {
        args.extend_from_slice(&["--opts", o]);
    }
    args.extend_from_slice(&[url, query]);
    let out = syn(&args);
    assert!(out.ok(), "storm failed: {}", out.describe());
    let mut nodes = HashMap::new();
    for msg in out.json_lines() {
        match msg[0].as_str() {
            Some("node") => {
                let iden = msg[1][1]["iden"].as_str().unwrap().to_owned();
                nodes.insert(iden, msg[1].clone());
            }
            Some("err") => panic!("storm error: {msg}"),
            _ => {}
        }
    }
    nodes
}

fn storm_prints(url: &str, query: &str) -> Vec<String> {
    let out = syn(&["storm", "--json", url, query]);
    out.json_lines()
        .into_iter()
        .filter(|m| m[0] == "print")
        .map(|m| m[1]["mesg"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn start_cortex(dir: &Path) -> SynService {
    SynService::start_in("cortex", dir, &[], &[])
        .expect("syn cortex starts on the migrated directory")
}

#[test]
fn migrated_fixture_has_every_sample_count_and_tag_of_the_manifest() {
    let Some(fx) = Fixture::new() else { return };
    let out = fx.migrate("dest", &[]);
    assert!(out.ok(), "{}", out.describe());
    let summary = out.stdout.clone();
    assert!(summary.contains("total: 2969 nodes read"), "{summary}");
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains(&format!("layer {FORK_LAYER} has no layer:model:version"))
            && stderr.contains("none of those migrations changes anything"),
        "{stderr}"
    );
    let dest = fx.dest("dest");
    let m = manifest();
    assert_eq!(
        std::fs::read_to_string(dest.join("cell.guid")).unwrap(),
        m["cell_iden"].as_str().unwrap()
    );
    let lyroffs = std::fs::read_to_string(dest.join("migration/lyroffs.yaml")).unwrap();
    assert!(
        lyroffs.contains(&format!(
            "{MAIN_LAYER}:\n  nextoffs: {}\n",
            m["splice_offset_at_backup"]
        )),
        "{lyroffs}"
    );
    let readme = std::fs::read_to_string(dest.join("migration/README.txt")).unwrap();
    assert!(readme.contains("delete this directory"), "{readme}");

    let svc = start_cortex(&dest);
    let url = svc.url("cortex");
    let forms: Vec<&str> = m["form_counts"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let nodes = storm_nodes(&url, &forms.join(" "), None);

    // Per-form counts: what the model lacks is an error in the summary; here nothing is.
    let skipped_forms: Vec<&str> = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for node in nodes.values() {
        *counts
            .entry(node[0][0].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (form, want) in m["form_counts"].as_object().unwrap() {
        if skipped_forms.contains(&form.as_str()) {
            continue;
        }
        assert_eq!(
            counts.get(form).copied().unwrap_or(0),
            want.as_u64().unwrap(),
            "{form}"
        );
    }
    assert_eq!(
        nodes.len() as u64,
        m["total_nodes_main_view"].as_u64().unwrap()
    );

    // Every sample node with its value, props, tags and tag props.
    for sample in m["samples"].as_array().unwrap() {
        let iden = sample["iden"].as_str().unwrap();
        let node = nodes
            .get(iden)
            .unwrap_or_else(|| panic!("sample {iden} missing"));
        assert_eq!(node[0][0], sample["form"], "{iden}");
        assert_eq!(node[0][1], sample["valu"], "{iden}");
        assert_eq!(node[1]["props"], sample["props"], "{iden}");
        assert_eq!(node[1]["tags"], sample["tags"], "{iden}");
        assert_eq!(node[1]["tagprops"], sample["tagprops"], "{iden}");
    }

    // Tags: nodes per tag and tags with an interval.
    let mut tag_counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut with_ival = 0;
    for node in nodes.values() {
        for (tag, ival) in node[1]["tags"].as_object().unwrap() {
            *tag_counts.entry(tag.clone()).or_default() += 1;
            if !ival[0].is_null() {
                with_ival += 1;
            }
        }
    }
    for (tag, want) in m["tag_counts"].as_object().unwrap() {
        assert_eq!(
            tag_counts.get(tag).copied().unwrap_or(0),
            want.as_u64().unwrap(),
            "#{tag}"
        );
    }
    assert_eq!(with_ival, m["tags_with_interval"].as_u64().unwrap());

    // A tag prop and an extended prop, as the fixture's layout shows them, and lifts by them
    // (the cortex loads the migrated extended model).
    let tp_iden = "60351202c58381690e1dfea48877b2f9cfddeac3421b140644532f98e531a15e";
    let tp = &nodes[tp_iden];
    assert_eq!(tp[1]["tagprops"]["rep.vt"]["score"], 17);
    assert_eq!(tp[1]["props"]["_note"], "note 190");
    let by_note = storm_nodes(&url, "inet:ipv4:_note=\"note 190\"", None);
    assert!(by_note.contains_key(tp_iden), "{by_note:?}");
    let by_score = storm_nodes(&url, "#rep.vt:score=17", None);
    assert!(by_score.contains_key(tp_iden), "{by_score:?}");

    // Node data, read through storm.
    for sample in m["nodedata_samples"].as_array().unwrap() {
        let valu = match &sample["valu"] {
            Json::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        for item in sample["data"].as_array().unwrap() {
            let name = item[0].as_str().unwrap();
            let q = format!(
                "{}={valu} $lib.print($lib.json.save($node.data.get({name})))",
                sample["form"].as_str().unwrap()
            );
            let prints = storm_prints(&url, &q);
            assert_eq!(prints.len(), 1, "{q}: {prints:?}");
            let got: Json = serde_json::from_str(&prints[0]).unwrap();
            assert_eq!(got, item[1], "{q}");
        }
    }
}

#[test]
fn users_log_in_with_their_old_passwords_and_their_rules_apply() {
    let Some(fx) = Fixture::new() else { return };
    assert!(fx.migrate("dest", &[]).ok());
    let svc = start_cortex(&fx.dest("dest"));
    let url = |user: &str| format!("tcp://{user}:secret@127.0.0.1:{}/cortex", svc.port);
    for user in ["root", "visi", "analyst1"] {
        let out = syn(&["call", &url(user), "getCellUser"]);
        assert!(out.ok(), "{user}: {}", out.describe());
        assert!(out.stdout.contains(user));
    }
    let wrong = syn(&[
        "call",
        &format!("tcp://analyst1:nope@127.0.0.1:{}/cortex", svc.port),
        "getCellUser",
    ]);
    assert!(!wrong.ok(), "a wrong password is refused");
    let locked = syn(&["call", &url("lockedout"), "getCellUser"]);
    assert!(!locked.ok(), "a locked user cannot log in");

    // The rules, as the cortex checks them (`allowed` over telepath, as each user): user
    // rule ('cron', 'add'); role `analysts` rules 'node:add', 'prop:set', ('tag:add', 'rep')
    // allowed and 'node:del' denied, translated to 2.x paths; `readers`' ('storm', 'node',
    // 'data', 'get') became ('node', 'data', 'get').
    let allowed = |user: &str, perm: &str| -> Json {
        let out = syn(&["call", &url(user), "allowed", perm, "false"]);
        assert!(out.ok(), "{user} {perm}: {}", out.describe());
        serde_json::from_str(out.stdout.trim()).unwrap()
    };
    for (perm, want) in [
        (r#"["cron", "add"]"#, true),
        (r#"["node", "add", "inet:fqdn"]"#, true),
        (r#"["node", "prop", "set", "inet:fqdn:zone"]"#, true),
        (r#"["node", "tag", "add", "rep", "mal"]"#, true),
        (r#"["node", "tag", "add", "cno"]"#, false),
        (r#"["node", "del", "inet:fqdn"]"#, false),
        (r#"["node", "data", "get"]"#, false),
    ] {
        assert_eq!(
            allowed("analyst1", perm),
            Json::Bool(want),
            "analyst1 {perm}"
        );
    }
    assert_eq!(
        allowed("visi", r#"["node", "del", "inet:fqdn"]"#),
        Json::Bool(true)
    );
    // Role `all` reads the default view, as Synapse 2.0's migration grants it.
    let out = syn(&[
        "call",
        &url("root"),
        "isUserAllowed",
        "986e8ee477e4b89d5b85c74192dae00d",
        r#"["view", "read"]"#,
        MAIN_VIEW,
    ]);
    assert_eq!(out.stdout.trim(), "true", "{}", out.describe());
}

/// Every node of every source layer, as each destination holds it.
fn layer_contents(dest: &Path, src: &Path) -> Vec<String> {
    let source = SrcCortex::open(src).unwrap();
    let mut out = Vec::new();
    for layer in &source.layers {
        let dl = Layer::open(&dest.join("layers").join(&layer.iden), &layer.iden).unwrap();
        let reader = dl.reader().unwrap();
        layer
            .scan(None, |node| {
                let sode = reader.sode(&node.buid)?;
                let data = reader.nodedata_all(&node.buid)?;
                out.push(format!("{} {:?} {:?}", layer.iden, sode, data));
                Ok(true)
            })
            .unwrap();
        drop(reader);
        dl.close().unwrap();
    }
    out
}

#[test]
fn a_killed_run_resumed_with_from_last_equals_an_uninterrupted_one() {
    let Some(fx) = Fixture::new() else { return };
    assert!(fx.migrate("whole", &[]).ok());
    let whole = layer_contents(&fx.dest("whole"), &fx.src());
    assert_eq!(whole.len(), 2969);

    // Stopped by --nodelim (a checkpoint), then resumed.
    let first = fx.migrate("limited", &["--nodelim", "1000"]);
    assert!(first.ok(), "{}", first.describe());
    assert!(
        first
            .stderr
            .contains("Stopping node migration due to reaching nodelim 1000")
    );
    let again = fx.migrate("limited", &[]);
    assert!(!again.ok(), "a used DEST needs --from-last");
    assert!(again.stderr.contains("--from-last"));
    let resumed = fx.migrate("limited", &["--from-last"]);
    assert!(resumed.ok(), "{}", resumed.describe());
    assert!(resumed.stderr.contains("resuming after node"));
    assert_eq!(layer_contents(&fx.dest("limited"), &fx.src()), whole);

    // Killed at a random moment, then resumed.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let delay = Duration::from_millis(20 + u64::from(nanos % 400));
    let src = fx.src();
    let dest = fx.dest("killed");
    let mut child = Command::new(syn_bin())
        .args([
            "migrate-200",
            "--src",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    common::say(&format!(
        "killed the first run after {delay:?} ({})",
        if dest.join("migration/lyroffs.yaml").exists() {
            "it had finished"
        } else {
            "mid-run"
        }
    ));
    let resumed = fx.migrate("killed", &["--from-last"]);
    assert!(resumed.ok(), "{}", resumed.describe());
    assert_eq!(layer_contents(&dest, &fx.src()), whole);
}

#[test]
fn form_counts_and_dump_errors() {
    let Some(fx) = Fixture::new() else { return };
    let counts = |dest: &str| {
        let out = fx.migrate(dest, &["--form-counts"]);
        assert!(out.ok(), "{}", out.describe());
        out.stdout.clone()
    };
    let before = counts("dest");
    assert!(!fx.dest("dest").exists(), "--form-counts migrates nothing");
    let main = before
        .split("layer ")
        .find(|s| s.starts_with(MAIN_LAYER))
        .unwrap();
    assert!(
        main.contains("FORM")
            && main.contains("SRC_CNT")
            && main.contains("DEST_CNT")
            && main.contains("DIFF")
    );
    let row = |text: &str, form: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(form))
            .unwrap_or_else(|| panic!("no {form} row in {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row(main, "inet:fqdn"), ["inet:fqdn", "426", "0", "426"]);
    assert_eq!(row(main, "TOTAL"), ["TOTAL", "2961", "0", "2961"]);

    // Make genuine errors in a second copy: rows of a form syn's model lacks, a value that is
    // not normalized and a buid that is not its value's.
    let bad_src = fx.dest("badsrc");
    common::copy_tree(&fx.src(), &bad_src).unwrap();
    {
        use syn::msgpack::Value;
        let slab = syn::storage::Slab::open(
            bad_src.join("layers").join(MAIN_LAYER).join("layer.lmdb"),
            Default::default(),
        )
        .unwrap();
        let db = slab.db("bybuid", false).unwrap();
        let row = |v: Value| Value::Array(vec![v, Value::Bin(vec![0])]);
        let put = |buid: [u8; 32], name: &str, v: Value| {
            let mut key = buid.to_vec();
            key.extend_from_slice(name.as_bytes());
            slab.write(|txn| db.put_value(txn, &key, &row(v.clone())))
                .unwrap();
        };
        let nosuch = syn::cortex::model::buid("zz:nosuch", &Value::from("x"));
        put(nosuch, "*zz:nosuch", Value::from("x"));
        let upper = syn::cortex::model::buid("inet:fqdn", &Value::from("UPPER.Example.COM"));
        put(upper, "*inet:fqdn", Value::from("UPPER.Example.COM"));
        put(
            [7u8; 32],
            "*inet:fqdn",
            Value::from("wrong-buid.example.com"),
        );
        slab.sync().unwrap();
    }
    let out = syn(&[
        "migrate-200",
        "--src",
        bad_src.to_str().unwrap(),
        "--dest",
        fx.dest("errs").to_str().unwrap(),
    ]);
    assert!(out.ok(), "{}", out.describe());
    let summary = out.stdout.clone();
    assert!(
        summary.contains("total: 2972 nodes read, 2969 migrated, 3 skipped"),
        "{summary}"
    );
    for reason in [
        "Unable to determine stortype: 1",
        "Normed form val does not match inbound: 1",
        "Calculated buid does not match inbound: 1",
    ] {
        assert!(summary.contains(reason), "{reason} in {summary}");
    }
    let dump = syn(&[
        "migrate-200",
        "--src",
        bad_src.to_str().unwrap(),
        "--dest",
        fx.dest("errs").to_str().unwrap(),
        "--dump-errors",
    ]);
    assert!(dump.ok(), "{}", dump.describe());
    let line = dump.stdout.clone();
    let path = line
        .trim()
        .strip_prefix("Dump file located at ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        path.contains("/migration/migrerrors_") && path.ends_with(".mpk"),
        "{path}"
    );
    let errs = syn::msgpack::decode_exact(&std::fs::read(path).unwrap()).unwrap();
    let mesgs: Vec<String> = errs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.get("mesg").and_then(|m| m.as_str()).unwrap().to_owned())
        .collect();
    assert_eq!(mesgs.len(), 3, "{mesgs:?}");
    assert!(
        mesgs
            .iter()
            .any(|m| m.starts_with("Unable to determine stortype for zz:nosuch: NoSuchForm")),
        "{mesgs:?}"
    );
    assert!(
        mesgs.iter().any(|m| m.starts_with(
            "Normed form val does not match inbound inet:fqdn, UPPER.Example.COM, upper.example.com"
        )),
        "{mesgs:?}"
    );
    assert!(
        mesgs.iter().any(|m| m.starts_with(&format!(
            "Calculated buid does not match inbound {}",
            hex::encode([7u8; 32])
        ))),
        "{mesgs:?}"
    );

    // After the migration, the counts agree.
    assert!(fx.migrate("dest", &[]).ok());
    let after = counts("dest");
    let main = after
        .split("layer ")
        .find(|s| s.starts_with(MAIN_LAYER))
        .unwrap();
    assert_eq!(row(main, "TOTAL"), ["TOTAL", "2961", "2961", "0"]);
    let fork = after
        .split("layer ")
        .find(|s| s.starts_with(FORK_LAYER))
        .unwrap();
    assert_eq!(row(fork, "inet:fqdn"), ["inet:fqdn", "2", "2", "0"]);
}

/// Change the `layer:model:version` value (0, 1, 3) of a copy's layer in place, in the page
/// of LMDB's main database that holds it (LMDB pages carry no checksum; the value follows its
/// key in the leaf node).
fn set_model_version(layer_env: &Path, last: u8) {
    let path = layer_env.join("data.mdb");
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"layer:model:version\x93\x00\x01\x03";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the layer's version row");
    bytes[at + needle.len() - 1] = last;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_wrong_version_corrupt_or_foreign_source_stops_before_writing() {
    let Some(fx) = Fixture::new() else { return };
    let stops = |src: &Path, want: &str| {
        let dest = fx.dest("never");
        let out = syn(&[
            "migrate-200",
            "--src",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ]);
        assert_eq!(out.code(), Some(1), "{}", out.describe());
        let stderr = out.stderr.clone();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(want), "{want} in {stderr}");
        assert!(!dest.exists(), "nothing written");
    };
    // A layer at another model version.
    let old = fx.dest("oldvers");
    common::copy_tree(&fx.src(), &old).unwrap();
    use syn::msgpack::Value;
    set_model_version(&old.join("layers").join(MAIN_LAYER).join("layer.lmdb"), 2);
    stops(
        &old,
        &format!(
            "Layer {MAIN_LAYER} model version must be at latest 01x vers: (0, 1, 2) != (0, 1, 3)"
        ),
    );
    // A truncated layer file.
    let corrupt = fx.dest("corrupt");
    common::copy_tree(&fx.src(), &corrupt).unwrap();
    let data = corrupt
        .join("layers")
        .join(MAIN_LAYER)
        .join("layer.lmdb")
        .join("data.mdb");
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(4096).unwrap();
    stops(&corrupt, "layer.lmdb");
    // Not a cortex, and a syn (2.x) cortex.
    let empty = fx.dest("empty");
    std::fs::create_dir_all(&empty).unwrap();
    stops(
        &empty,
        "is not a Synapse cortex directory: it has no cell.guid",
    );
    assert!(fx.migrate("dest", &[]).ok());
    stops(&fx.dest("dest"), "is not a Synapse 0.1.x cortex");
    // A remote layer.
    let remote = fx.dest("remote");
    common::copy_tree(&fx.src(), &remote).unwrap();
    {
        let slab =
            syn::storage::Slab::open(remote.join("slabs").join("cell.lmdb"), Default::default())
                .unwrap();
        let hive = slab.db("hive", false).unwrap();
        let key = format!("cortex\0layers\0{FORK_LAYER}\0type");
        slab.write(|txn| hive.put_value(txn, key.as_bytes(), &Value::from("remote")))
            .unwrap();
        slab.sync().unwrap();
    }
    stops(
        &remote,
        &format!(
            "{FORK_LAYER} is a remote layer - it must be unconfigured to proceed with migration"
        ),
    );
}

#[test]
fn src_dedicated_locks_memory_or_names_the_limit() {
    let Some(fx) = Fixture::new() else { return };
    let out = fx.migrate("dest", &["--src-dedicated"]);
    assert!(out.ok(), "{}", out.describe());
    assert!(out.stderr.contains("MiB of source memory"));
    // Without CAP_IPC_LOCK and with no lock allowance, one line names both remedies.
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        common::skip("setpriv is not installed: the low-limit case is not checked");
        return;
    }
    let src = fx.src();
    let dest = fx.dest("low");
    let script = format!(
        "ulimit -l 0 && exec {} migrate-200 --src {} --dest {} --src-dedicated",
        syn_bin().display(),
        src.display(),
        dest.display()
    );
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--bounding-set",
        "-ipc_lock",
        "--inh-caps",
        "-ipc_lock",
        "sh",
        "-c",
        &script,
    ]);
    let out = common::run_bounded(cmd, Duration::from_secs(60)).unwrap();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let stderr = out.stderr.clone();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("LimitMEMLOCK") && stderr.contains("CAP_IPC_LOCK"),
        "{stderr}"
    );
}

#[test]
fn views_layers_automation_and_the_extended_model_are_carried_over() {
    let Some(fx) = Fixture::new() else { return };
    assert!(fx.migrate("dest", &[]).ok());
    let dest = fx.dest("dest");
    let slab =
        syn::storage::Slab::open(dest.join("slabs").join("cell.lmdb"), Default::default()).unwrap();
    let topo = syn::cortex::topology::Topology::load(&slab)
        .unwrap()
        .unwrap();
    assert_eq!(topo.default_view, MAIN_VIEW);
    let fork = topo.view(FORK_VIEW).unwrap();
    assert_eq!(fork.layers, [FORK_LAYER, MAIN_LAYER]);
    assert_eq!(fork.parent.as_deref(), Some(MAIN_VIEW));
    assert_eq!(topo.layers.len(), 2);

    let db = slab.db(syn::migrate::cell::AUTOMATION_DB, false).unwrap();
    let get = |k: &str| {
        slab.read(|txn| db.get_value(txn, k.as_bytes()))
            .unwrap()
            .unwrap()
    };
    let m = manifest();
    let triggers = get("triggers");
    assert_eq!(
        triggers.as_array().unwrap().len(),
        m["automation"]["triggers"].as_array().unwrap().len()
    );
    for t in triggers.as_array().unwrap() {
        let rule = &t.as_array().unwrap()[1];
        assert!(rule.get("viewiden").is_none() && rule.get("useriden").is_none());
        assert_eq!(
            rule.get("user").and_then(|u| u.as_str()),
            Some("e93fe39b436874a724761301668f5e7a")
        );
        assert!(rule.get("tag").is_none_or(|t| !t.is_nil()));
    }
    let cron = get("cron");
    let cron_idens: Vec<&str> = cron
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.get("iden").unwrap().as_str().unwrap())
        .collect();
    for c in m["automation"]["cron"].as_array().unwrap() {
        assert!(cron_idens.contains(&c["iden"].as_str().unwrap()));
    }
    let queues = get("queues");
    let q = &queues.as_array().unwrap()[0];
    assert_eq!(q.get("name").unwrap().as_str(), Some("fixq"));
    assert_eq!(q.get("items").unwrap().as_array().unwrap().len(), 3);

    let ext = syn::cortex::model::ext::ExtModel::load(&slab).unwrap();
    assert_eq!(ext.formprops.len(), 1);
    assert_eq!(
        (
            ext.formprops[0].form.as_str(),
            ext.formprops[0].prop.as_str()
        ),
        ("inet:ipv4", "_note")
    );
    assert_eq!(ext.univprops[0].name, "_risk");
    assert_eq!(ext.tagprops[0].name, "score");
    drop(slab);

    // The partial node in the fork layer: its props and tags, with its form from the parent.
    let layer = Layer::open(&dest.join("layers").join(FORK_LAYER), FORK_LAYER).unwrap();
    let buid: [u8; 32] =
        hex::decode("102d9c87d8ca5157e310229e1bd69a2187b7e4892b017704efd7936558df11dc")
            .unwrap()
            .try_into()
            .unwrap();
    let sode = layer.sode(&buid).unwrap().unwrap();
    assert_eq!(sode.form, "inet:asn");
    assert!(sode.valu.is_none());
    assert_eq!(
        sode.prop("name").map(|(v, _)| v.clone()),
        Some(syn::msgpack::Value::from("renamed in fork"))
    );
    assert!(sode.tags.iter().any(|(t, _)| t == "fork.touched"));
}

#[test]
fn progress_lines_without_a_terminal_and_status_under_systemd() {
    let Some(fx) = Fixture::new() else { return };
    let out = fx.migrate("lines", &["--progress-every", "1000"]);
    assert!(out.ok(), "{}", out.describe());
    for n in ["1000", "2000"] {
        assert!(
            out.stderr
                .contains(&format!("layer {MAIN_LAYER}: {n} nodes, ")),
            "{}",
            out.stderr
        );
    }
    let notify = common::NotifySocket::new();
    let mut cmd = Command::new(syn_bin());
    cmd.args([
        "migrate-200",
        "--src",
        fx.src().to_str().unwrap(),
        "--dest",
        fx.dest("systemd").to_str().unwrap(),
    ])
    .env("NOTIFY_SOCKET", notify.path());
    let out = common::run_bounded(cmd, Duration::from_secs(60)).unwrap();
    assert!(out.ok(), "{}", out.describe());
    let status = notify
        .wait_for(
            &format!("STATUS=migrating layer {MAIN_LAYER}"),
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(status.contains("nodes/s"), "{status}");
    assert!(
        !out.stderr.contains(" nodes, "),
        "no progress lines under systemd"
    );
}

#[test]
fn migr_ops_split_into_steps_give_the_same_cortex() {
    let Some(fx) = Fixture::new() else { return };
    assert!(fx.migrate("whole", &[]).ok());
    let whole = layer_contents(&fx.dest("whole"), &fx.src());

    let bad = fx.migrate("bad", &["--migr-ops", "nodes", "bogus"]);
    assert_eq!(bad.code(), Some(1), "{}", bad.describe());
    assert!(
        bad.stderr.contains("unknown migration step \"bogus\""),
        "{}",
        bad.stderr
    );
    assert!(!fx.dest("bad").exists());

    let nodes = fx.migrate(
        "steps",
        &[
            "--migr-ops",
            "dirn",
            "hiveauth",
            "hivelyr",
            "dmodel",
            "nodes",
        ],
    );
    assert!(nodes.ok(), "{}", nodes.describe());
    let without_data = layer_contents(&fx.dest("steps"), &fx.src());
    assert_ne!(without_data, whole, "no node data yet");
    let data = fx.migrate("steps", &["--from-last", "--migr-ops", "nodedata"]);
    assert!(data.ok(), "{}", data.describe());
    assert!(
        data.stdout
            .contains(&format!("layer {MAIN_LAYER}: 2961 nodes read, 39 migrated")),
        "{}",
        data.stdout
    );
    assert_eq!(layer_contents(&fx.dest("steps"), &fx.src()), whole);
}

#[test]
fn the_forked_view_shows_the_forks_own_edits() {
    let Some(fx) = Fixture::new() else { return };
    let out = fx.migrate("dest", &["--map-partial"]);
    assert!(out.ok(), "{}", out.describe());
    assert!(
        out.stderr
            .contains("--map-partial: partial nodes are resolved"),
        "{}",
        out.stderr
    );
    let svc = start_cortex(&fx.dest("dest"));
    let url = svc.url("cortex");
    let fork_opts = format!(r#"{{"view": "{FORK_VIEW}"}}"#);
    let asn20 = "102d9c87d8ca5157e310229e1bd69a2187b7e4892b017704efd7936558df11dc";

    // The partial node: its form row is in the parent layer, its fork edits in the fork's.
    let main = storm_nodes(&url, "inet:asn=20", None);
    assert_eq!(main[asn20][1]["props"]["name"], "vertex asn");
    assert!(main[asn20][1]["tags"].get("fork.touched").is_none());
    let fork = storm_nodes(&url, "inet:asn=20", Some(&fork_opts));
    let node = &fork[asn20][1];
    assert_eq!(node["props"]["name"], "renamed in fork");
    assert!(node["tags"].get("fork.touched").is_some(), "{node}");
    assert!(
        node["tags"].get("rep.storm").is_some(),
        "the parent's tags show too: {node}"
    );

    // Nodes made in the fork exist only there; the fork sees the parent's nodes too.
    let q = "inet:fqdn=forked.example.org";
    assert!(storm_nodes(&url, q, None).is_empty());
    let forked = storm_nodes(&url, q, Some(&fork_opts));
    assert_eq!(forked.len(), 1);
    assert!(
        forked.values().next().unwrap()[1]["tags"]
            .get("fork.only")
            .is_some()
    );
    let m = manifest();
    let in_fork = storm_nodes(&url, "#fork", Some(&fork_opts));
    assert_eq!(in_fork.len(), 3, "{:?}", in_fork.keys());
    let all_fqdn = storm_nodes(&url, "inet:fqdn", Some(&fork_opts));
    assert_eq!(
        all_fqdn.len() as u64,
        m["form_counts"]["inet:fqdn"].as_u64().unwrap() + 2,
        "the parent's fqdns and the fork's two"
    );
}
