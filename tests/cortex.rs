//! `syn cortex` as a real process: layout, the model calls, the LayerApi (nodeedits in, the
//! edit log and splices out), durability across kill -9 (nodeedits and storm), and the Python client's view of it.

mod common;

use common::{SynService, run_py, syn2_python};
use nix::sys::signal::Signal;
use std::time::Duration;
use syn::cortex::edits::{Edit, NodeEdit, stortype};
use syn::cortex::model::buid;
use syn::msgpack::Value;
use syn::telepath::Proxy;

fn ipv4_add(ip: u32, asn: i64) -> Value {
    let valu = Value::Int(ip as i128);
    NodeEdit {
        buid: buid("inet:ipv4", &valu),
        form: "inet:ipv4".into(),
        edits: vec![
            Edit::NodeAdd {
                valu,
                stortype: stortype::U32,
            },
            Edit::PropSet {
                prop: "asn".into(),
                valu: Value::Int(asn as i128),
                oldv: Value::Nil,
                stortype: stortype::U32,
            },
        ],
    }
    .to_value()
}

/// The layer's edit log from `offs`, as it is now (`syncNodeEdits(offs, wait=False)`).
async fn log_from(layer: &Proxy, offs: i64) -> Value {
    layer
        .call_kw(
            "syncNodeEdits",
            vec![offs.into()],
            vec![("wait", false.into())],
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn model_calls_and_the_layer_api() {
    let svc = SynService::start("cortex", &[]);
    let core = Proxy::open(&svc.url("cortex")).await.unwrap();
    assert_eq!(
        core.call("getCellType", vec![]).await.unwrap(),
        Value::from("cortex")
    );
    let defs = core.call("getModelDefs", vec![]).await.unwrap();
    let forms = defs.as_array().unwrap()[0].as_array().unwrap()[1]
        .get("forms")
        .unwrap();
    assert!(forms.as_array().unwrap().len() >= 595);
    let dict = core.call("getModelDict", vec![]).await.unwrap();
    assert!(dict.get("forms").unwrap().get("inet:ipv4").is_some());

    let layer = Proxy::open(&svc.url("cortex/layer")).await.unwrap();
    let iden = layer.call("getIden", vec![]).await.unwrap();
    assert!(svc.dir.join("layers").join(iden.as_str().unwrap()).is_dir());
    assert_eq!(
        layer.call("getEditIndx", vec![]).await.unwrap(),
        Value::from(0i64)
    );

    let sodes = layer
        .call(
            "storNodeEdits",
            vec![Value::Array(vec![ipv4_add(0x01020304, 10)])],
        )
        .await
        .unwrap();
    let sode = &sodes.as_array().unwrap()[0].as_array().unwrap()[1];
    assert_eq!(sode.get("form"), Some(&Value::from("inet:ipv4")));
    assert_eq!(
        sode.get("props").unwrap().get("asn"),
        Some(&Value::Array(vec![
            Value::Int(10),
            Value::Int(stortype::U32 as i128)
        ]))
    );
    // The same edits again change nothing and log nothing.
    layer
        .call(
            "storNodeEditsNoLift",
            vec![Value::Array(vec![ipv4_add(0x01020304, 10)])],
        )
        .await
        .unwrap();
    assert_eq!(
        layer.call("getEditIndx", vec![]).await.unwrap(),
        Value::from(1i64)
    );

    let log = log_from(&layer, 0).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 1);
    let entry = log[0].as_array().unwrap();
    assert_eq!(entry[0], Value::from(0i64));
    let ne = NodeEdit::from_value(&entry[1].as_array().unwrap()[0]).unwrap();
    assert_eq!(
        hex::encode(ne.buid),
        "20153b758f9d5eaaa38e4f4a65c36da797c3e59e549620fa7c4895e1a920991f"
    );

    let splices = layer.call("splices", vec![]).await.unwrap();
    let names: Vec<&str> = splices
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array().unwrap()[1].as_array().unwrap()[0]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names.first(), Some(&"node:add"), "{names:?}");
    assert!(names.contains(&"prop:set"), "{names:?}");

    // A following syncNodeEdits sees a write made after it started.
    let mut follow = layer
        .genr("syncNodeEdits", vec![1i64.into()], vec![])
        .await
        .unwrap();
    layer
        .call(
            "storNodeEdits",
            vec![Value::Array(vec![ipv4_add(0x05050505, 20)])],
        )
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), follow.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.as_array().unwrap()[0], Value::from(1i64));

    let e = core.call("nosuch", vec![]).await.unwrap_err();
    assert_eq!(e.name, "NoSuchMeth");
    let e = Proxy::open(&svc.url("cortex/layer/ffffffffffffffffffffffffffffffff"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.name, "NoSuchLayer");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_nodeedits_survive_kill_9() {
    let mut svc = SynService::start("cortex", &[]);
    let layer = Proxy::open(&svc.url("cortex/layer")).await.unwrap();
    for i in 0..50u32 {
        layer
            .call(
                "storNodeEditsNoLift",
                vec![Value::Array(vec![ipv4_add(0x0a000000 + i, i as i64)])],
            )
            .await
            .unwrap();
    }
    svc.signal(Signal::SIGKILL);
    svc.wait_exit(Duration::from_secs(10)).unwrap();
    let again = SynService::start_in("cortex", &svc.dir, &[], &[]).unwrap();
    let layer = Proxy::open(&again.url("cortex/layer")).await.unwrap();
    assert_eq!(
        layer.call("getEditIndx", vec![]).await.unwrap(),
        Value::from(50i64)
    );
    let log = log_from(&layer, 49).await;
    assert_eq!(log.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn storm_writes_acknowledged_survive_kill_9() {
    let mut svc = SynService::start("cortex", &[]);
    let core = Proxy::open(&svc.url("cortex")).await.unwrap();
    // 40 storm queries of 5 nodes each; each reply (through fini) is the acknowledgement.
    for q in 0..40u32 {
        let adds: Vec<String> = (0..5u32)
            .map(|i| format!("[inet:ipv4=10.1.{q}.{i} :asn={q} +#acked]"))
            .collect();
        let msgs = core
            .call("storm", vec![adds.join(" ").into()])
            .await
            .unwrap();
        let msgs = msgs.as_array().unwrap();
        let last = msgs.last().unwrap().as_array().unwrap();
        assert_eq!(last[0], Value::from("fini"));
        assert!(
            msgs.iter()
                .all(|m| m.as_array().unwrap()[0] != Value::from("err"))
        );
    }
    svc.signal(Signal::SIGKILL);
    svc.wait_exit(Duration::from_secs(10)).unwrap();

    let again = SynService::start_in("cortex", &svc.dir, &[], &[]).unwrap();
    let core = Proxy::open(&again.url("cortex")).await.unwrap();
    let count = |q: &'static str| core.call("count", vec![q.into()]);
    assert_eq!(count("inet:ipv4").await.unwrap(), Value::Int(200));
    assert_eq!(count("inet:ipv4#acked").await.unwrap(), Value::Int(200));
    assert_eq!(count("inet:asn").await.unwrap(), Value::Int(40));

    // The edit log: offsets 0..next, each record present once, and every node's add in it.
    let layer = Proxy::open(&again.url("cortex/layer")).await.unwrap();
    let next = layer.call("getEditIndx", vec![]).await.unwrap();
    let log = log_from(&layer, 0).await;
    let log = log.as_array().unwrap();
    assert_eq!(Value::Int(log.len() as i128), next);
    let mut added = std::collections::HashSet::new();
    for (i, entry) in log.iter().enumerate() {
        let entry = entry.as_array().unwrap();
        assert_eq!(entry[0], Value::Int(i as i128));
        for ne in entry[1].as_array().unwrap() {
            let ne = NodeEdit::from_value(ne).unwrap();
            if ne.form == "inet:ipv4" && ne.edits.iter().any(|e| matches!(e, Edit::NodeAdd { .. }))
            {
                added.insert(ne.buid);
            }
        }
    }
    assert_eq!(added.len(), 200);
    // New writes continue the log where it ended.
    core.call("callStorm", vec!["[inet:ipv4=10.2.0.1]".into()])
        .await
        .unwrap();
    let after = layer.call("getEditIndx", vec![]).await.unwrap();
    assert!(after.as_i64().unwrap() > next.as_i64().unwrap());
}

#[test]
fn python_client_uses_the_layer_api() {
    let Some(py) = syn2_python() else { return };
    let svc = SynService::start("cortex", &[]);
    let url = svc.url("cortex/layer");
    let out = run_py(&py, "tele.py", &[&url, "call", "getEditIndx"]);
    assert_eq!(out.json(), serde_json::json!(0), "{}", out.describe());
    let out = run_py(
        &py,
        "tele.py",
        &[&svc.url("cortex"), "call", "getModelDict"],
    );
    assert!(out.ok(), "{}", out.describe());
    assert!(out.json()["forms"]["inet:fqdn"]["props"]["zone"].is_object());
    let out = run_py(
        &py,
        "tele.py",
        &[
            &url,
            "genr",
            "syncNodeEdits",
            "0",
            "--kwargs",
            "{\"wait\": false}",
        ],
    );
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "");
    // syncNodeEdits2: (offs, nodeedits, meta), as Synapse's client reads it.
    let out = run_py(
        &py,
        "tele.py",
        &[
            &svc.url("cortex"),
            "call",
            "callStorm",
            "[inet:ipv4=1.2.3.4]",
        ],
    );
    assert!(out.ok(), "{}", out.describe());
    let out = run_py(
        &py,
        "tele.py",
        &[
            &url,
            "genr",
            "syncNodeEdits2",
            "0",
            "--kwargs",
            "{\"wait\": false}",
        ],
    );
    let items = out.json_lines();
    assert!(!items.is_empty(), "{}", out.describe());
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item[0], serde_json::json!(i), "{item}");
        assert!(item[1].as_array().is_some_and(|e| !e.is_empty()), "{item}");
        assert!(
            item[2]["time"].is_i64() && item[2]["user"].is_string(),
            "{item}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn storm_callstorm_and_count_over_telepath() {
    let svc = SynService::start("cortex", &[]);
    let core = Proxy::open(&svc.url("cortex")).await.unwrap();
    assert!(core.is_genr("storm"));
    let msgs = core
        .call(
            "storm",
            vec!["[inet:ipv4=1.2.3.4 :asn=10 +#foo.bar]".into()],
        )
        .await
        .unwrap();
    let msgs = msgs.as_array().unwrap();
    let kinds: Vec<&str> = msgs
        .iter()
        .map(|m| m.as_array().unwrap()[0].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"init"));
    assert_eq!(kinds.last(), Some(&"fini"));
    let node = msgs
        .iter()
        .find(|m| m.as_array().unwrap()[0].as_str() == Some("node"))
        .expect("a node message");
    let info = &node.as_array().unwrap()[1].as_array().unwrap()[1];
    assert_eq!(
        info.get("iden"),
        Some(&Value::from(
            "20153b758f9d5eaaa38e4f4a65c36da797c3e59e549620fa7c4895e1a920991f"
        ))
    );
    assert_eq!(info.get("props").unwrap().get("asn"), Some(&Value::Int(10)));
    assert!(info.get("tags").unwrap().get("foo.bar").is_some());

    // The auto-added nodes are there; count and callStorm see them.
    assert_eq!(
        core.call("count", vec!["inet:asn=10".into()])
            .await
            .unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        core.call("count", vec!["syn:tag".into()]).await.unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        core.call(
            "callStorm",
            vec!["inet:ipv4=1.2.3.4 return($node.value())".into()]
        )
        .await
        .unwrap(),
        Value::Int(0x01020304)
    );
    // Errors: a syntax error ends the stream with err then fini; callStorm raises it.
    let msgs = core
        .call("storm", vec!["inet:ipv4=(".into()])
        .await
        .unwrap();
    let msgs = msgs.as_array().unwrap();
    let err = msgs
        .iter()
        .find(|m| m.as_array().unwrap()[0].as_str() == Some("err"))
        .unwrap();
    assert_eq!(
        err.as_array().unwrap()[1].as_array().unwrap()[0],
        Value::from("BadSyntax")
    );
    let e = core
        .call("callStorm", vec!["[inet:ipv4=300.1.1.1]".into()])
        .await
        .unwrap_err();
    assert_eq!(e.name, "BadTypeValu");
    let e = core.call("storm", vec![Value::Int(5)]).await.unwrap_err();
    assert_eq!(e.name, "BadArg");
}

#[test]
fn python_client_runs_storm() {
    let Some(py) = syn2_python() else { return };
    let svc = SynService::start("cortex", &[]);
    let url = svc.url("cortex");
    let out = run_py(
        &py,
        "tele.py",
        &[&url, "storm", "[inet:fqdn=www.vertex.link +#hello]"],
    );
    assert!(out.ok(), "{}", out.describe());
    let msgs = out.json_lines();
    let nodes: Vec<&serde_json::Value> = msgs.iter().filter(|m| m[0] == "node").collect();
    assert_eq!(nodes.len(), 1, "{}", out.stdout);
    assert_eq!(
        nodes[0][1][0],
        serde_json::json!(["inet:fqdn", "www.vertex.link"])
    );
    let out = run_py(&py, "tele.py", &[&url, "call", "count", "inet:fqdn"]);
    assert_eq!(out.json(), serde_json::json!(3), "{}", out.describe());
}

#[test]
fn syn_storm_prints_nodes_for_people_and_json_for_scripts() {
    let svc = SynService::start("cortex", &[]);
    let url = svc.url("cortex");
    let out = common::syn(&[
        "storm",
        &url,
        "[inet:ipv4=1.2.3.4 :asn=10 +#foo.bar] $lib.print(done)",
    ]);
    assert!(out.ok(), "{}", out.describe());
    assert!(out.stdout.contains("inet:ipv4=1.2.3.4\n"), "{}", out.stdout);
    assert!(out.stdout.contains(":asn = 10"), "{}", out.stdout);
    assert!(out.stdout.contains("#foo.bar"), "{}", out.stdout);
    assert!(out.stdout.contains("done\n"), "{}", out.stdout);
    assert!(out.stdout.contains("complete. 1 nodes"), "{}", out.stdout);
    let out = common::syn(&["storm", &url, "[inet:ipv4=300.1.1.1]"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("ERROR: BadTypeValu"), "{}", out.stderr);
    let out = common::syn(&["storm", "--json", &url, "inet:asn"]);
    let lines = out.json_lines();
    assert_eq!(lines.first().unwrap()[0], "init");
    assert_eq!(lines[1][1][0], serde_json::json!(["inet:asn", 10]));
    assert_eq!(lines.last().unwrap()[0], "fini");
}

/// The Storm edit-permission scenario of tests/py/storm_perms.py with the outcome syn and
/// Synapse 2.256 give for each step (USER and LAYER stand for visi's iden and the layer's).
fn storm_perm_steps() -> Vec<(serde_json::Value, serde_json::Value)> {
    use serde_json::json;
    let ok = json!({"ok": null});
    let deny = |perm: &str| {
        json!({"err": "AuthDeny", "mesg": format!(
            "User 'visi' (USER) must have permission {perm} on object LAYER (layer)."
        )})
    };
    let storm = |q: &str| json!(["storm", q]);
    let count = |q: &str| json!(["count", q]);
    let rule = |allow: bool, perm: &str, layer: bool| json!(["rule", allow, perm, layer]);
    vec![
        (storm("[inet:ipv4=1.2.3.4]"), deny("node.add.inet:ipv4")),
        (count("inet:ipv4"), json!({"ok": 0})),
        (rule(true, "node.add.inet:ipv4", false), ok.clone()),
        (storm("[inet:ipv4=1.2.3.4]"), ok.clone()),
        (count("inet:ipv4"), json!({"ok": 1})),
        (
            storm("inet:ipv4 [:asn=10]"),
            deny("node.prop.set.inet:ipv4.asn"),
        ),
        // The full prop name works as well; a longer deny rule wins over it.
        (
            rule(false, "node.prop.set.inet:ipv4.asn", false),
            ok.clone(),
        ),
        (rule(true, "node.prop.set.inet:ipv4:asn", false), ok.clone()),
        (
            storm("inet:ipv4 [:asn=10]"),
            deny("node.prop.set.inet:ipv4.asn"),
        ),
        (rule(true, "node.prop.set.inet:ipv4.asn", true), ok.clone()),
        // The implied inet:asn node needs no permission of its own.
        (storm("inet:ipv4 [:asn=10]"), ok.clone()),
        (count("inet:ipv4:asn=10"), json!({"ok": 1})),
        (count("inet:asn=10"), json!({"ok": 1})),
        (storm("inet:ipv4 [+#foo.bar]"), deny("node.tag.add.foo.bar")),
        // A deny on the layer's gate wins over an allow among the user's own rules.
        (rule(false, "node.tag.add.foo.bar", true), ok.clone()),
        (rule(true, "node.tag.add", false), ok.clone()),
        (storm("inet:ipv4 [+#foo.bar]"), deny("node.tag.add.foo.bar")),
        (storm("inet:ipv4 [+#foo.baz]"), ok.clone()),
        (count("#foo"), json!({"ok": 1})),
        (count("#foo.bar"), json!({"ok": 0})),
        (storm("inet:ipv4 [-#foo.baz]"), deny("node.tag.del.foo.baz")),
        (
            storm("inet:ipv4 [-:asn]"),
            deny("node.prop.del.inet:ipv4.asn"),
        ),
        (
            storm("inet:ipv4 $node.data.set(x, 1)"),
            deny("node.data.set.x"),
        ),
        (
            storm("inet:ipv4 [+(refs)> {inet:asn}]"),
            deny("node.edge.add.refs"),
        ),
        (storm("inet:ipv4 | delnode"), deny("node.tag.del.foo")),
        (rule(true, "node.tag.del", false), ok.clone()),
        (storm("inet:ipv4 | delnode"), deny("node.del.inet:ipv4")),
        (count("inet:ipv4#foo"), json!({"ok": 1})),
        (rule(true, "node.del.inet:ipv4", false), ok.clone()),
        (storm("inet:ipv4 | delnode"), ok),
        (count("inet:ipv4"), json!({"ok": 0})),
    ]
}

/// Run the permission steps with tests/py/storm_perms.py against the cortex at `url`.
fn run_perm_steps(
    py: &std::path::Path,
    url: &str,
    steps: &serde_json::Value,
) -> Vec<serde_json::Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), steps.to_string()).unwrap();
    let out = run_py(py, "storm_perms.py", &[url, file.path().to_str().unwrap()]);
    assert!(out.ok(), "{}", out.describe());
    out.json_lines()
}

#[test]
fn storm_checks_edit_permissions_of_non_admin_users() {
    let Some(py) = syn2_python() else {
        eprintln!("skipping: the Synapse 2.256 Python peer is not installed");
        return;
    };
    let (steps, want): (Vec<_>, Vec<_>) = storm_perm_steps().into_iter().unzip();
    let steps = serde_json::Value::Array(steps);
    let svc = SynService::start("cortex", &[]);
    let got = run_perm_steps(&py, &svc.url("cortex"), &steps);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "syn, step {i}: {}", steps[i]);
    }
    // The same steps against a Python Synapse 2.256 cortex give the same outcomes.
    let Some(pycore) = common::PyService::cortex() else {
        eprintln!("skipping the Python comparison: no Python cortex");
        return;
    };
    let theirs = run_perm_steps(&py, &pycore.url(), &steps);
    for (i, (t, w)) in theirs.iter().zip(&want).enumerate() {
        assert_eq!(t, w, "python, step {i}: {}", steps[i]);
    }
}
