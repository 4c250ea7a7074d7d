//! The extended model of `syn cortex` (addForm, addFormProp, addUnivProp, addTagProp and
//! their `del` twins, the `ext-model` option) and addFeedData, each compared step by step
//! with a real Python cortex given the same calls by Synapse's own client.

mod common;

use common::{PyService, SynService, run_py, syn2_python};
use nix::sys::signal::Signal;
use serde_json::{Value as J, json};
use std::time::Duration;
use syn::msgpack::Value;
use syn::telepath::Proxy;

/// Run `steps` (see tests/py/steps.py) against `url`; one JSON value per step.
fn run_steps(py: &std::path::Path, url: &str, steps: &J) -> Vec<J> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), steps.to_string()).unwrap();
    let out = run_py(py, "steps.py", &[url, file.path().to_str().unwrap()]);
    assert!(out.ok(), "{}", out.describe());
    out.json_lines()
}

/// Give the same steps to syn and to a Python cortex; every step's result must agree.
fn agree(steps: &J) -> Option<Vec<J>> {
    let py = syn2_python()?;
    let pycore = PyService::cortex()?;
    let svc = SynService::start("cortex", &[]);
    let want = run_steps(&py, &pycore.url(), steps);
    let got = run_steps(&py, &svc.url("cortex"), steps);
    let list = steps.as_array().unwrap();
    assert_eq!(want.len(), list.len());
    assert_eq!(got.len(), list.len());
    for (i, step) in list.iter().enumerate() {
        if step.as_array().unwrap().len() == 5 {
            // Model parts: syn's built-in model data has no doc strings (see the model module).
            assert_eq!(
                without_docs(&got[i]),
                without_docs(&want[i]),
                "step {i}: {step}"
            );
        } else {
            assert_eq!(
                mask_idens(&got[i]),
                mask_idens(&want[i]),
                "step {i}: {step}"
            );
        }
    }
    Some(got)
}

/// `line` with each 32-hex-digit word of its error message (a layer iden) as `IDEN`.
fn mask_idens(line: &J) -> J {
    let mut line = line.clone();
    if let Some(J::String(mesg)) = line.get_mut("mesg") {
        let words: Vec<String> = mesg
            .split(' ')
            .map(|w| {
                let hex = w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit());
                if hex { "IDEN".to_owned() } else { w.to_owned() }
            })
            .collect();
        *mesg = words.join(" ");
    }
    line
}

/// `v` without the `doc` keys of its maps.
fn without_docs(v: &J) -> J {
    match v {
        J::Object(m) => J::Object(
            m.iter()
                .filter(|(k, _)| *k != "doc")
                .map(|(k, x)| (k.clone(), without_docs(x)))
                .collect(),
        ),
        J::Array(a) => J::Array(a.iter().map(without_docs).collect()),
        other => other.clone(),
    }
}

fn call(method: &str, args: J) -> J {
    json!(["call", method, args])
}

/// The parts of the model that the extended model touches, from getModelDict and
/// getModelDefs.
fn model_parts() -> [J; 2] {
    let dict_paths = json!([
        ["forms", "inet:ipv4", "props", "_note"],
        ["forms", "inet:ipv4", "props", "._risk"],
        ["forms", "_test:thing"],
        ["univs", "._risk"],
        ["tagprops", "score"],
        ["types", "_test:thing"],
    ]);
    let defs_paths = json!([
        ["0", "1", "forms", "=_test:thing"],
        ["0", "1", "forms", "=inet:ipv4", "2", "=_note"],
        ["0", "1", "univs", "=._risk"],
        ["0", "1", "tagprops"],
        ["0", "1", "types", "=_test:thing"],
    ]);
    [
        json!(["call", "getModelDict", [], {}, dict_paths]),
        json!(["call", "getModelDefs", [], {}, defs_paths]),
    ]
}

fn nodes(query: &str) -> J {
    json!(["nodes", query])
}

fn ext_model_steps() -> J {
    let int = json!(["int", {}]);
    let string = json!(["str", {}]);
    let parts = model_parts();
    json!([
        call(
            "addFormProp",
            json!(["inet:ipv4", "_note", string, {"doc": "a note"}])
        ),
        call("addFormProp", json!(["inet:ipv4", "_note", string, {}])),
        call("addFormProp", json!(["inet:ipv4", "note", string, {}])),
        call("addFormProp", json!(["inet:ipv4", "_x", string, "nodict"])),
        call("addFormProp", json!(["no:such", "_x", string, {}])),
        call(
            "addFormProp",
            json!(["inet:ipv4", "_bad", ["newp", {}], {}])
        ),
        call("addFormProp", json!(["inet:ipv4", "Bad-Name", string, {}])),
        call("addUnivProp", json!(["_risk", int, {}])),
        call("addUnivProp", json!(["_risk", int, {}])),
        call("addUnivProp", json!(["risk", int, {}])),
        call("addTagProp", json!(["score", int, {}])),
        call("addTagProp", json!(["score", int, {}])),
        call("addTagProp", json!(["_bad", ["newp", {}], {}])),
        call(
            "addForm",
            json!(["_test:thing", "str", {"lower": true}, {}])
        ),
        call("addForm", json!(["_test:thing", "str", {}, {}])),
        call("addForm", json!(["test:thing", "str", {}, {}])),
        call("addForm", json!(["_test:other", "newp", {}, {}])),
        call("addForm", json!(["_test:other", "str", [], {}])),
        call("addFormProp", json!(["_test:thing", "size", int, {}])),
        nodes("[inet:ipv4=1.2.3.4 :_note=Hello ._risk=5 +#foo:score=10]"),
        nodes("inet:ipv4:_note=Hello"),
        nodes("inet:ipv4._risk>3"),
        nodes("._risk=5"),
        nodes("#foo:score=10"),
        nodes("#foo:score>20"),
        nodes("inet:ipv4 +:_note^=Hel"),
        nodes("inet:ipv4 +#foo:score<=10"),
        nodes("[_test:thing=ABC :size=3]"),
        nodes("_test:thing:size=3"),
        nodes("[inet:ipv4=1.2.3.4 :_note=(5)]"),
        nodes("[inet:ipv4=1.2.3.4 +#foo:score=high]"),
        parts[0].clone(),
        parts[1].clone(),
        call("delFormProp", json!(["inet:ipv4", "_note"])),
        call("delUnivProp", json!(["_risk"])),
        call("delTagProp", json!(["score"])),
        call("delForm", json!(["_test:thing"])),
        nodes("inet:ipv4 [-:_note -._risk -#foo:score]"),
        nodes("_test:thing | delnode"),
        call("delFormProp", json!(["inet:ipv4", "_note"])),
        call("delFormProp", json!(["inet:ipv4", "_note"])),
        call("delFormProp", json!(["inet:ipv4", "asn"])),
        call("delUnivProp", json!(["_risk"])),
        call("delUnivProp", json!(["_risk"])),
        call("delTagProp", json!(["score"])),
        call("delTagProp", json!(["score"])),
        call("delForm", json!(["_test:thing"])),
        call("delFormProp", json!(["_test:thing", "size"])),
        call("delForm", json!(["_test:thing"])),
        call("delForm", json!(["_test:thing"])),
        call("delForm", json!(["inet:ipv4"])),
        nodes("inet:ipv4:_note"),
        // Python's getModelDefs still lists a deleted form's type here; its getModelDict
        // does not, and syn's agrees with that.
        parts[0].clone(),
    ])
}

#[test]
fn ext_model_calls_agree_with_python() {
    let Some(got) = agree(&ext_model_steps()) else {
        return;
    };
    // The doc an extended prop was given is kept.
    let parts = got.iter().find(|l| l["ok"][0]["full"] == "inet:ipv4:_note");
    assert_eq!(parts.unwrap()["ok"][0]["doc"], "a note");
}

/// The forms, form props, univ props and tag props of the 0.1.58 fixture's migrated model.
fn fixture_ext_json() -> &'static str {
    r#"{"formprops": [{"form": "inet:ipv4", "prop": "_note", "tdef": ["str", {}], "info": {}}],
        "univprops": [{"name": "_risk", "tdef": ["int", {}], "info": {}}],
        "tagprops": [{"name": "score", "tdef": ["int", {}], "info": {}}]}"#
}

#[tokio::test(flavor = "multi_thread")]
async fn ext_model_survives_restart_and_comes_from_config() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("ext.json");
    std::fs::write(&conf, fixture_ext_json()).unwrap();
    let dir = tmp.path().join("cortex");
    let conf_arg = conf.to_str().unwrap();
    let mut svc = SynService::start_in("cortex", &dir, &["--ext-model", conf_arg], &[]).unwrap();
    let core = Proxy::open(&svc.url("cortex")).await.unwrap();
    let add = "[inet:ipv4=1.2.3.4 :_note=hi ._risk=3 +#foo:score=7]";
    core.call("callStorm", vec![add.into()]).await.unwrap();
    let added = [
        Value::from("_extra"),
        Value::Array(vec!["int".into(), Value::Map(vec![])]),
        Value::Map(vec![]),
    ];
    core.call("addUnivProp", added.to_vec()).await.unwrap();
    drop(core);
    svc.signal(Signal::SIGTERM);
    svc.wait_exit(Duration::from_secs(20))
        .expect("stops on SIGTERM");

    // Started again without the option: everything is still there, data and model.
    let svc = SynService::start_in("cortex", &dir, &[], &[]).unwrap();
    let core = Proxy::open(&svc.url("cortex")).await.unwrap();
    let count = |q: &str| core.call("count", vec![q.into()]);
    assert_eq!(count("inet:ipv4:_note=hi").await.unwrap(), Value::Int(1));
    assert_eq!(count("#foo:score=7").await.unwrap(), Value::Int(1));
    assert_eq!(count("inet:ipv4._risk=3").await.unwrap(), Value::Int(1));
    let dict = core.call("getModelDict", vec![]).await.unwrap();
    let univs = dict.get("univs").unwrap();
    assert!(univs.get("._risk").is_some() && univs.get("._extra").is_some());
    drop(core);
    drop(svc);

    // A config item that contradicts the stored one refuses to start, with one line.
    std::fs::write(
        &conf,
        r#"{"tagprops": [{"name": "score", "tdef": ["str", {}], "info": {}}]}"#,
    )
    .unwrap();
    let err = SynService::start_in("cortex", &dir, &["--ext-model", conf_arg], &[])
        .err()
        .expect("a contradicting ext-model refuses to start");
    assert!(err.contains("tag prop score"), "{err}");
    std::fs::write(&conf, "{not json").unwrap();
    let err = SynService::start_in("cortex", &dir, &["--ext-model", conf_arg], &[])
        .err()
        .expect("bad JSON refuses to start");
    assert!(err.contains("ext-model"), "{err}");
}

fn feed(items: J) -> J {
    json!(["call", "addFeedData", ["syn.nodes", items]])
}

fn feed_steps() -> J {
    let fqdn_iden = "2f3a8d9e3c1c0e5b8f7e0e7b1a2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4";
    json!([
        call("addTagProp", json!(["score", ["int", {}], {}])),
        feed(json!([
            [["inet:ipv4", "1.2.3.4"], {
                "props": {"asn": 10, "loc": "US.VA", ".created": 5, "newp": 1, "latlong": "newp"},
                "tags": {"foo.bar": [null, null], "baz": ["2020", "2021"], "bad..tag": [null, null]},
                "tagprops": {"foo": {"score": "20", "newp": 1}, "baz": {"score": "nope"}},
                "nodedata": {"hehe": {"haha": [1, 2]}, "5": "x"},
                "edges": [["refs", ["inet:fqdn", "WWW.Vertex.LINK"]], ["refs", ["inet:fqdn", "..."]],
                          ["seen", fqdn_iden], ["seen", "newp"]],
            }],
            [["inet:ipv4", "300.1.1.1"], {"props": {"asn": 5}}],
            [["newp:form", "x"], {}],
            "not a node",
            [["inet:ipv4"], {}],
            [["inet:fqdn", "vertex.link"], {"tags": {"foo": [1577836800000i64, 1609459200000i64]}}],
            [["inet:ipv4", 0x05060708], {"props": {"asn": "20"}, "tags": {"foo.bar": [null, null]}}],
            [["inet:ipv4", "1.2.3.4"], {"props": {"asn": 11}, "tags": {"foo.bar": ["2019", "2019"]}}],
        ])),
        nodes("inet:ipv4"),
        nodes("inet:fqdn"),
        nodes("syn:tag"),
        nodes("inet:asn"),
        nodes("inet:ipv4=1.2.3.4 -(*)> *"),
        call(
            "callStorm",
            json!(["inet:ipv4=1.2.3.4 return(($node.data.get(hehe), $node.data.get(\"5\")))"])
        ),
        call("addFeedData", json!(["newp.feed", []])),
        json!(["call", "addFeedData", ["syn.nodes", []], {"viewiden": "ff".repeat(16)}]),
        call("getFeedFuncs", json!([])),
    ])
}

#[test]
fn feed_data_agrees_with_python() {
    let Some(got) = agree(&feed_steps()) else {
        return;
    };
    // The feed really stored the nodes: two good ipv4s, the second merge of 1.2.3.4 won.
    let ipv4s = got[2]["ok"]["nodes"].as_array().unwrap();
    assert_eq!(ipv4s.len(), 2, "{ipv4s:?}");
    let node = ipv4s.iter().find(|n| n[0][1] == 0x01020304).unwrap();
    assert_eq!(node[1]["asn"], 11);
    assert_eq!(node[3]["foo"]["score"], 20);
    assert!(node[2]["foo.bar"].is_array());
    assert_eq!(got[7]["ok"][0]["haha"], json!([1, 2]), "{}", got[7]);
}
