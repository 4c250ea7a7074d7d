//! `syn axon`: Synapse's AxonApi over telepath, side by side with a real Python Axon, across
//! restarts and a kill -9 in the middle of an upload, with Synapse's permissions, and through a
//! live backup.

mod common;

use common::{PyService, ROOT_PASSWD, SynService, run_py_timeout, syn2_python};
use nix::sys::signal::Signal;
use std::time::Duration;
use syn::msgpack::Value;
use syn::telepath::Proxy;
use syn::telepath::client::Answer;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn sha256(bytes: &[u8]) -> Value {
    Value::Bin(syn::guid::sha256(bytes).to_vec())
}

/// The bytes of a stored file, joined from its chunks.
async fn fetch(axon: &Proxy, bytes_of: &[u8]) -> Vec<u8> {
    let chunks = axon.call("get", vec![sha256(bytes_of)]).await.expect("get");
    chunks
        .as_array()
        .expect("chunks")
        .iter()
        .flat_map(|c| c.as_bin().expect("bytes").to_vec())
        .collect()
}

#[test]
fn matches_a_python_axon_side_by_side() {
    let Some(python) = syn2_python() else {
        return;
    };
    let Some(py) = PyService::axon() else {
        return;
    };
    let svc = SynService::start("axon", &[]);
    let session = |base: &str| -> Vec<String> {
        let base = base.trim_end_matches('/');
        let out = run_py_timeout(
            &python,
            "axon_compare.py",
            &[base],
            Duration::from_secs(300),
        );
        assert!(out.ok(), "{}", out.describe());
        out.stdout.lines().map(str::to_owned).collect()
    };
    let ours = session(&format!("tcp://root:{ROOT_PASSWD}@127.0.0.1:{}", svc.port));
    let theirs = session(&py.url());
    assert!(ours.len() > 40, "{ours:#?}");
    common::assert_same_session("axon", &ours, &theirs);
}

#[test]
fn files_survive_a_restart_and_a_kill_in_the_middle_of_an_upload_leaves_nothing() {
    let rt = rt();
    let mut svc = SynService::start("axon", &[]);
    let dir = svc.dir.clone();
    let big: Vec<u8> = (0..(17 * 1024 * 1024 + 3))
        .map(|i| (i % 251) as u8)
        .collect();
    rt.block_on(async {
        let axon = Proxy::open(&svc.url("axon")).await.expect("connect");
        axon.call("put", vec![Value::Bin(big.clone())])
            .await
            .expect("put");
        axon.call(
            "puts",
            vec![Value::Array(vec![Value::Bin(b"small".to_vec())])],
        )
        .await
        .expect("puts");
        // An upload left half-written when the service is killed.
        let Answer::Share(share, _) = axon
            .start(None, "upload", vec![], vec![])
            .await
            .expect("upload")
        else {
            panic!("upload is not a share");
        };
        axon.start(
            Some(&share),
            "write",
            vec![Value::Bin(b"never saved".to_vec())],
            vec![],
        )
        .await
        .expect("write");
    });
    svc.signal(Signal::SIGKILL);
    svc.wait_exit(Duration::from_secs(10)).expect("killed");
    let left: Vec<_> = std::fs::read_dir(dir.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "spooled uploads left behind: {left:?}");

    let svc = SynService::start_in("axon", &dir, &[], &[]).expect("restart");
    rt.block_on(async {
        let axon = Proxy::open(&svc.url("axon")).await.expect("connect");
        assert_eq!(fetch(&axon, &big).await, big);
        assert_eq!(fetch(&axon, b"small").await, b"small");
        let has = axon
            .call("has", vec![sha256(b"never saved")])
            .await
            .expect("has");
        assert_eq!(has, Value::Bool(false));
        let metrics = axon.call("metrics", vec![]).await.expect("metrics");
        assert_eq!(metrics.get("file:count"), Some(&Value::from(2i64)));
        assert_eq!(
            metrics.get("size:bytes"),
            Some(&Value::from(big.len() as i64 + 5))
        );
        // The hash log goes on from where it was.
        axon.call("put", vec![Value::Bin(b"third".to_vec())])
            .await
            .expect("put");
        let rows = axon
            .call("hashes", vec![0i64.into()])
            .await
            .expect("hashes");
        let offsets: Vec<i64> = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_array().expect("row")[0].as_i64().expect("indx"))
            .collect();
        assert_eq!(offsets, [0, 1, 2]);
    });
}

#[test]
fn permissions_are_synapses() {
    let rt = rt();
    let svc = SynService::start("axon", &[]);
    let port = svc.port;
    rt.block_on(async {
        let root = Proxy::open(&svc.url("")).await.expect("connect");
        root.call("addUser", vec!["visi".into(), "pw".into()])
            .await
            .expect("addUser");
        let visi = Proxy::open(&format!("tcp://visi:pw@127.0.0.1:{port}/axon"))
            .await
            .expect("visi");
        let hash = sha256(b"x");
        for (meth, args) in [
            ("put", vec![Value::Bin(b"x".to_vec())]),
            ("has", vec![hash.clone()]),
            ("get", vec![hash.clone()]),
            ("del_", vec![hash.clone()]),
            ("metrics", vec![]),
        ] {
            let e = visi.call(meth, args).await.unwrap_err();
            assert_eq!(e.name, "AuthDeny", "{meth}");
        }
        let user = root.call("getUserDefByName", vec!["visi".into()]).await;
        let iden = user.expect("user").get("iden").expect("iden").clone();
        for perm in ["upload", "get", "has"] {
            let rule = Value::Array(vec![
                Value::Bool(true),
                Value::Array(vec!["axon".into(), perm.into()]),
            ]);
            root.call("addUserRule", vec![iden.clone(), rule])
                .await
                .expect("addUserRule");
        }
        visi.call("put", vec![Value::Bin(b"x".to_vec())])
            .await
            .expect("put");
        assert_eq!(fetch(&visi, b"x").await, b"x");
        let has = visi.call("has", vec![hash.clone()]).await.expect("has");
        assert_eq!(has, Value::Bool(true));
        let e = visi.call("del_", vec![hash.clone()]).await.unwrap_err();
        assert_eq!(e.name, "AuthDeny", "deleting needs axon.del");
    });
}

#[test]
fn a_live_backup_of_an_axon_restores_to_a_working_service() {
    let rt = rt();
    let svc = SynService::start("axon", &[]);
    let files: Vec<Vec<u8>> = (0..50u32)
        .map(|i| format!("file {i}").into_bytes())
        .collect();
    rt.block_on(async {
        let axon = Proxy::open(&svc.url("axon")).await.expect("connect");
        let list = Value::Array(files.iter().map(|f| Value::Bin(f.clone())).collect());
        axon.call("puts", vec![list]).await.expect("puts");
    });
    let out_dir = tempfile::tempdir().expect("tempdir");
    let backup = out_dir.path().join("backup");
    let (src, dst) = (svc.dir.to_str().unwrap(), backup.to_str().unwrap());
    let out = common::syn(&["backup", src, dst]);
    assert!(out.ok(), "{}", out.describe());
    assert!(out.stdout.contains("(axon "), "{}", out.stdout);
    let verified = common::syn(&["backup", "verify", dst]);
    assert!(verified.ok(), "{}", verified.describe());
    drop(svc);

    let copy = SynService::start_in("axon", &backup, &[], &[]).expect("start on the copy");
    rt.block_on(async {
        let axon = Proxy::open(&copy.url("axon")).await.expect("connect");
        for f in &files {
            assert_eq!(&fetch(&axon, f).await, f);
        }
    });
}

/// `syn pushfile` and `syn pullfile` against `url`: files go in and come back whole, and a
/// missing file or hash is one line and status 1.
fn push_and_pull(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i % 253) as u8).collect();
    let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.txt"));
    std::fs::write(&a, &big).unwrap();
    std::fs::write(&b, b"hello\n").unwrap();
    let missing = dir.path().join("missing");
    let paths = [&a, &b, &missing].map(|p| p.to_str().unwrap().to_owned());
    let mut args = vec!["pushfile", url];
    args.extend(paths.iter().map(String::as_str));
    let out = common::syn(&args);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let hex = |bytes: &[u8]| {
        syn::guid::sha256(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let (ha, hb) = (hex(&big), hex(b"hello\n"));
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            format!("{ha} {} {}", big.len(), paths[0]),
            format!("{hb} 6 {}", paths[1])
        ]
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("No such file"), "{}", out.stderr);

    let got = dir.path().join("got");
    std::fs::create_dir(&got).unwrap();
    let unknown = "00".repeat(32);
    let got_s = got.to_str().unwrap();
    let out = common::syn(&["pullfile", url, "-o", got_s, &ha, &hb, &unknown]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("does not contain"), "{}", out.stderr);
    assert_eq!(std::fs::read(got.join(&ha)).unwrap(), big);
    assert_eq!(std::fs::read(got.join(&hb)).unwrap(), b"hello\n");
    let mut names: Vec<String> = std::fs::read_dir(&got)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = vec![ha.clone(), hb.clone()];
    want.sort();
    assert_eq!(names, want, "nothing else, no .partial file");
    let out = common::syn(&["pullfile", url, "nothex"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
}

#[test]
fn pushfile_and_pullfile_move_files_whole_to_syn_and_to_python() {
    let svc = SynService::start("axon", &[]);
    push_and_pull(&svc.url("axon"));
    if let Some(py) = PyService::axon() {
        push_and_pull(&format!("{}axon", py.url()));
    }
}

#[test]
fn max_count_and_max_bytes_refuse_new_files_with_hitlimit() {
    let rt = rt();
    let svc = SynService::start("axon", &["--max-count", "2"]);
    rt.block_on(async {
        let axon = Proxy::open(&svc.url("axon")).await.expect("connect");
        let put = |bytes: &'static [u8]| axon.call("put", vec![Value::Bin(bytes.to_vec())]);
        put(b"a").await.expect("first");
        put(b"b").await.expect("second");
        let e = put(b"c").await.unwrap_err();
        assert_eq!(e.name, "HitLimit");
        assert_eq!(e.mesg(), "Axon is at file:count limit: 2");
        put(b"a").await.expect("a stored file is not a new one");
        axon.call("del_", vec![sha256(b"a")]).await.expect("del");
        put(b"c").await.expect("room again after a delete");
    });
    drop(svc);
    let svc = SynService::start("axon", &["--max-bytes", "10"]);
    rt.block_on(async {
        let axon = Proxy::open(&svc.url("axon")).await.expect("connect");
        let put = |bytes: Vec<u8>| axon.call("puts", vec![Value::Array(vec![Value::Bin(bytes)])]);
        put(vec![1; 12])
            .await
            .expect("below the limit when it starts");
        let e = put(vec![2; 1]).await.unwrap_err();
        assert_eq!(e.mesg(), "Axon is at size:bytes limit: 10");
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let out = common::syn(&["axon", path.to_str().unwrap(), "--max-count", "0"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("max-count must be at least 1, not 0"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_waiting_hashes_follows_new_files_until_its_timeout() {
    let rt = rt();
    let svc = SynService::start("axon", &[]);
    rt.block_on(async {
        let axon = Proxy::open(&svc.url("axon")).await.expect("connect");
        axon.call("put", vec![Value::Bin(b"first".to_vec())])
            .await
            .expect("put");
        let watcher = Proxy::open(&svc.url("axon")).await.expect("connect");
        let mut follow = watcher
            .genr(
                "hashes",
                vec![0i64.into()],
                vec![("wait", Value::Bool(true)), ("timeout", Value::Float(2.0))],
            )
            .await
            .expect("hashes");
        let row = |indx: i64, bytes: &[u8]| {
            Value::Array(vec![
                indx.into(),
                Value::Array(vec![sha256(bytes), Value::from(bytes.len() as i64)]),
            ])
        };
        let first = follow.next().await.expect("a row").expect("ok");
        assert_eq!(first, row(0, b"first"));
        // Saved through another connection after the follower caught up.
        axon.call(
            "puts",
            vec![Value::Array(vec![Value::Bin(b"second".to_vec())])],
        )
        .await
        .expect("puts");
        let second = follow.next().await.expect("a row").expect("ok");
        assert_eq!(second, row(1, b"second"));
        let waited = std::time::Instant::now();
        assert!(follow.next().await.is_none());
        assert!(waited.elapsed() >= Duration::from_millis(1900));
    });
}
