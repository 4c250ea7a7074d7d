//! `syn cryotank`: Synapse's CryoApi and TankApi over telepath, side by side with a real
//! Python CryoCell, across restarts, following new items, and with Synapse's permissions.

mod common;

use common::{PyService, ROOT_PASSWD, SynService, run_py_timeout, syn2_python};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use syn::msgpack::Value;
use syn::telepath::Proxy;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn strs(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

/// Every `(indx, item)` a generator call yields.
async fn pairs(proxy: &Proxy, meth: &str, args: Vec<Value>) -> Vec<(i64, Value)> {
    let items = proxy.call(meth, args).await.expect(meth);
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            let p = p.as_array().expect("a pair");
            (p[0].as_i64().expect("indx"), p[1].clone())
        })
        .collect()
}

/// The session of `tests/py/cryo_compare.py` through Synapse's client, with what differs
/// between two services (idens, times) masked.
fn python_session(python: &std::path::Path, base: &str) -> Vec<String> {
    let out = run_py_timeout(python, "cryo_compare.py", &[base], Duration::from_secs(120));
    assert!(out.ok(), "{}", out.describe());
    let iden = regex_like_iden();
    out.stdout
        .lines()
        .map(|line| {
            let mut j: serde_json::Value = serde_json::from_str(line).expect("json line");
            mask(&mut j, &iden);
            j.to_string()
        })
        .collect()
}

fn regex_like_iden() -> impl Fn(&str) -> bool {
    |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn mask(j: &mut serde_json::Value, is_iden: &impl Fn(&str) -> bool) {
    match j {
        serde_json::Value::String(s) if is_iden(s) => *s = "<iden>".into(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask(v, is_iden)),
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "time" || k == "took" {
                    *v = serde_json::json!("<masked>");
                } else {
                    mask(v, is_iden);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn matches_a_python_cryocell_side_by_side() {
    let Some(python) = syn2_python() else {
        return;
    };
    let Some(py) = PyService::cryotank() else {
        return;
    };
    let svc = SynService::start("cryotank", &[]);
    let ours = python_session(
        &python,
        &format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}", svc.port),
    );
    let theirs = python_session(&python, &py.url());
    common::assert_same_session("cryotank", &ours, &theirs);
}

#[test]
fn tanks_and_their_items_survive_a_restart() {
    let rt = rt();
    let mut svc = SynService::start("cryotank", &[]);
    let dir = svc.dir.clone();
    rt.block_on(async {
        let cryo = Proxy::open(&svc.url("cryotank")).await.expect("connect");
        for name in ["zeta", "alpha"] {
            cryo.call("init", vec![name.into()]).await.expect("init");
        }
        let added = cryo
            .call("puts", vec!["zeta".into(), strs(&["a", "b", "c"])])
            .await
            .expect("puts");
        assert_eq!(added, Value::from(3i64));
        // Listed in the order they were made.
        let names: Vec<String> = list_names(&cryo).await;
        assert_eq!(names, ["zeta", "alpha"]);
    });
    svc.signal(Signal::SIGTERM);
    assert!(
        svc.wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        svc.daemon.stderr_log()
    );
    let svc = SynService::start_in("cryotank", &dir, &[], &[]).expect("restart");
    rt.block_on(async {
        let cryo = Proxy::open(&svc.url("cryotank")).await.expect("connect");
        // After a restart, in name order (as Synapse lists them after its own restart).
        assert_eq!(list_names(&cryo).await, ["alpha", "zeta"]);
        let items = pairs(&cryo, "slice", vec!["zeta".into(), 0i64.into()]).await;
        assert_eq!(
            items,
            [
                (0, Value::from("a")),
                (1, Value::from("b")),
                (2, Value::from("c"))
            ]
        );
        // New items continue the offsets; the metrics log has a record per write.
        cryo.call("puts", vec!["zeta".into(), strs(&["d"])])
            .await
            .expect("puts");
        let last = cryo.call("last", vec!["zeta".into()]).await.expect("last");
        assert_eq!(last, Value::Array(vec![3i64.into(), "d".into()]));
        let metrics = pairs(&cryo, "metrics", vec!["zeta".into(), 0i64.into()]).await;
        let orig: Vec<Option<i64>> = metrics
            .iter()
            .map(|(_, m)| m.get("orig").and_then(Value::as_i64))
            .collect();
        assert_eq!(orig, [Some(0), Some(3)]);
    });
}

async fn list_names(cryo: &Proxy) -> Vec<String> {
    let list = cryo.call("list", vec![]).await.expect("list");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|t| {
            t.as_array().expect("(name, info)")[0]
                .as_str()
                .expect("name")
                .to_owned()
        })
        .collect()
}

#[test]
fn a_waiting_slice_follows_new_items_until_its_timeout() {
    let rt = rt();
    let svc = SynService::start("cryotank", &[]);
    rt.block_on(async {
        let cryo = Proxy::open(&svc.url("cryotank")).await.expect("connect");
        cryo.call("puts", vec!["log".into(), strs(&["first"])])
            .await
            .expect("puts");
        let tank = Proxy::open(&svc.url("cryotank/log")).await.expect("tank");
        let mut follow = tank
            .genr(
                "slice",
                vec![0i64.into()],
                vec![("wait", Value::Bool(true)), ("timeout", Value::Float(2.0))],
            )
            .await
            .expect("slice");
        let first = follow.next().await.expect("an item").expect("ok");
        assert_eq!(first, Value::Array(vec![0i64.into(), "first".into()]));
        // Written by another connection after the follower caught up.
        cryo.call("puts", vec!["log".into(), strs(&["second", "third"])])
            .await
            .expect("puts");
        for (indx, text) in [(1i64, "second"), (2, "third")] {
            let item = follow.next().await.expect("an item").expect("ok");
            assert_eq!(item, Value::Array(vec![indx.into(), text.into()]));
        }
        // Nothing more: the generator ends once a wait passes its timeout.
        let waited = Instant::now();
        assert!(follow.next().await.is_none());
        assert!(waited.elapsed() >= Duration::from_millis(1900));
    });
}

#[test]
fn permissions_are_synapses() {
    let rt = rt();
    let svc = SynService::start("cryotank", &[]);
    let port = svc.port;
    rt.block_on(async {
        let root = Proxy::open(&svc.url("")).await.expect("connect");
        for name in ["visi", "bob"] {
            root.call("addUser", vec![name.into(), "pw".into()])
                .await
                .expect("addUser");
        }
        let as_user = |name: &str| format!("tcp://{name}:pw@127.0.0.1:{port}/cryotank");
        let visi = Proxy::open(&as_user("visi")).await.expect("visi");
        let denied = visi.call("init", vec!["visi0".into()]).await.unwrap_err();
        assert_eq!(denied.name, "AuthDeny");

        // cryo.tank.add on the gate "cryo" lets a user make tanks, and makes it their admin.
        let add = Value::Array(vec![
            Value::Bool(true),
            Value::Array(vec!["cryo".into(), "tank".into(), "add".into()]),
        ]);
        for name in ["visi", "bob"] {
            let user = root.call("getUserDefByName", vec![name.into()]).await;
            let iden = user.expect("user").get("iden").expect("iden").clone();
            root.call_kw(
                "addUserRule",
                vec![iden, add.clone()],
                vec![("gateiden", "cryo".into())],
            )
            .await
            .expect("addUserRule");
        }
        visi.call("init", vec!["visi0".into()]).await.expect("init");
        visi.call("puts", vec!["visi0".into(), strs(&["mine"])])
            .await
            .expect("visi puts in its own tank");
        let mine = pairs(&visi, "slice", vec!["visi0".into(), 0i64.into()]).await;
        assert_eq!(mine, [(0, Value::from("mine"))]);

        // Another user sees neither its items nor its name, and cannot write to it.
        let bob = Proxy::open(&as_user("bob")).await.expect("bob");
        let e = bob
            .call("slice", vec!["visi0".into(), 0i64.into()])
            .await
            .unwrap_err();
        assert_eq!(e.name, "AuthDeny");
        let e = bob
            .call("puts", vec!["visi0".into(), strs(&["theirs"])])
            .await
            .unwrap_err();
        assert_eq!(e.name, "AuthDeny");
        let e = Proxy::open(&format!("tcp://bob:pw@127.0.0.1:{port}/cryotank/visi0"))
            .await
            .expect("bob's tank api");
        let e = e.call("slice", vec![0i64.into()]).await.unwrap_err();
        assert_eq!(e.name, "AuthDeny");
        assert!(list_names(&bob).await.is_empty());
        assert_eq!(list_names(&visi).await, ["visi0"]);

        // Deleting a tank is for admins only.
        let e = visi.call("delete", vec!["visi0".into()]).await.unwrap_err();
        assert_eq!(e.name, "AuthDeny");
        let cryo = Proxy::open(&svc.url("cryotank")).await.expect("root");
        let deleted = cryo.call("delete", vec!["visi0".into()]).await;
        assert_eq!(deleted.expect("delete"), Value::Bool(true));
        assert!(list_names(&cryo).await.is_empty());
        assert!(
            std::fs::read_dir(svc.dir.join("tanks"))
                .expect("tanks dir")
                .next()
                .is_none(),
            "the tank's directory is removed"
        );
    });
}

#[test]
fn a_live_backup_of_a_cryotank_restores_to_a_working_service() {
    let rt = rt();
    let svc = SynService::start("cryotank", &[]);
    let items: Vec<Value> = (0..2000i64).map(Value::from).collect();
    rt.block_on(async {
        let cryo = Proxy::open(&svc.url("cryotank")).await.expect("connect");
        let added = cryo
            .call("puts", vec!["feed".into(), Value::Array(items.clone())])
            .await
            .expect("puts");
        assert_eq!(added, Value::from(2000i64));
    });
    let out_dir = tempfile::tempdir().expect("tempdir");
    let backup = out_dir.path().join("backup");
    let src = svc.dir.to_str().expect("utf-8 path");
    let dst = backup.to_str().expect("utf-8 path");
    let out = common::syn(&["backup", src, dst]);
    assert!(out.ok(), "{}", out.describe());
    assert!(out.stdout.contains("(cryotank "), "{}", out.stdout);
    let verified = common::syn(&["backup", "verify", dst]);
    assert!(verified.ok(), "{}", verified.describe());
    drop(svc);

    let copy = SynService::start_in("cryotank", &backup, &[], &[]).expect("start on the copy");
    rt.block_on(async {
        let cryo = Proxy::open(&copy.url("cryotank")).await.expect("connect");
        let got = pairs(&cryo, "slice", vec!["feed".into(), 0i64.into()]).await;
        let values: Vec<Value> = got.into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, items);
    });
}

#[test]
fn a_deleted_tank_refuses_later_calls_and_ends_its_followers() {
    let rt = rt();
    let svc = SynService::start("cryotank", &[]);
    rt.block_on(async {
        let tank = Proxy::open(&svc.url("cryotank/gone")).await.expect("tank");
        tank.call("puts", vec![strs(&["kept until deleted"])])
            .await
            .expect("puts");
        let mut follow = tank
            .genr(
                "slice",
                vec![1i64.into()],
                vec![("wait", Value::Bool(true))],
            )
            .await
            .expect("slice");
        let cryo = Proxy::open(&svc.url("cryotank")).await.expect("cryo");
        // Let the follower catch up and wait (it has no timeout).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let deleted = cryo.call("delete", vec!["gone".into()]).await;
        assert_eq!(deleted.expect("delete"), Value::Bool(true));
        let ended = tokio::time::timeout(Duration::from_secs(5), follow.next())
            .await
            .expect("the follower ends");
        let err = ended.expect("an error item").unwrap_err();
        assert_eq!(err.name, "IsFini");
        // A session opened before the delete cannot write into the deleted tank.
        let err = tank.call("puts", vec![strs(&["lost?"])]).await.unwrap_err();
        assert_eq!(err.name, "IsFini");
    });
}
