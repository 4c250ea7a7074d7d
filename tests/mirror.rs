//! `syn cortex --mirror URL`: a mirror made from a backup of its leader follows the leader's
//! edit log record for record, refuses changes, survives kill -9 and a restarting leader,
//! refuses a leader of another cell, and is promoted by removing the option and reloading.

mod common;

use common::{SynService, syn};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use syn::msgpack::Value;
use syn::telepath::Proxy;

/// A live backup of `leader` restored as `tmp/follower`.
fn follower_dir(leader: &SynService, tmp: &Path) -> PathBuf {
    let backup = tmp.join("backup");
    let follower = tmp.join("follower");
    let out = syn(&[
        "backup",
        leader.dir.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(out.ok(), "{}", out.describe());
    let out = syn(&[
        "restore",
        backup.to_str().unwrap(),
        follower.to_str().unwrap(),
    ]);
    assert!(out.ok(), "{}", out.describe());
    follower
}

/// Start a mirror of `leader` on `dir`.
fn start_mirror(leader: &SynService, dir: &Path) -> SynService {
    SynService::start_in("cortex", dir, &["--mirror", &leader.url("")], &[])
        .expect("the mirror starts")
}

/// Run `query`; its messages, none of them an error.
async fn storm(core: &Proxy, query: &str) -> Vec<Value> {
    let msgs = core.call("storm", vec![query.into()]).await.unwrap();
    let msgs = msgs.as_array().unwrap().to_vec();
    for m in &msgs {
        let m = m.as_array().unwrap();
        assert_ne!(m[0], Value::from("err"), "{query}: {:?}", m[1]);
    }
    msgs
}

/// The first `err` message of `query`, as (name, message).
async fn storm_err(core: &Proxy, query: &str) -> (String, String) {
    let msgs = core.call("storm", vec![query.into()]).await.unwrap();
    for m in msgs.as_array().unwrap() {
        let m = m.as_array().unwrap();
        if m[0] == Value::from("err") {
            let err = m[1].as_array().unwrap();
            let name = err[0].as_str().unwrap().to_owned();
            let mesg = err[1].get("mesg").and_then(Value::as_str).unwrap_or("");
            return (name, mesg.to_owned());
        }
    }
    panic!("{query}: no err message in {msgs:?}");
}

/// The default layer's whole edit log as `syncNodeEdits2` gives it: (offset, edits, meta).
async fn whole_log(svc: &SynService) -> Vec<Value> {
    let layer = Proxy::open(&svc.url("cortex/layer")).await.unwrap();
    let log = layer
        .call_kw(
            "syncNodeEdits2",
            vec![0i64.into()],
            vec![("wait", false.into())],
        )
        .await
        .unwrap();
    log.as_array().unwrap().to_vec()
}

async fn next_offset(svc: &SynService) -> i64 {
    let layer = Proxy::open(&svc.url("cortex/layer")).await.unwrap();
    layer
        .call("getEditIndx", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap()
}

/// Wait until the mirror's log is as long as the leader's, then check they are the same
/// record for record, and that both answer the same nodes.
async fn assert_mirrored(leader: &SynService, mirror: &SynService) {
    let want = next_offset(leader).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = next_offset(mirror).await;
        if have == want {
            break;
        }
        assert!(have < want, "the mirror is ahead: {have} > {want}");
        assert!(
            Instant::now() < deadline,
            "the mirror stayed at {have} of {want}; its log: {}",
            mirror.daemon.stderr_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ours, theirs) = (whole_log(leader).await, whole_log(mirror).await);
    assert_eq!(ours.len() as i64, want);
    assert!(ours == theirs, "the logs differ");
    let all = ".created | limit 100000";
    let nodes = |msgs: Vec<Value>| -> Vec<Value> {
        let mut nodes: Vec<Value> = msgs
            .into_iter()
            .filter(|m| m.as_array().unwrap()[0] == Value::from("node"))
            .map(|m| {
                let node = m.as_array().unwrap()[1].as_array().unwrap();
                let info = &node[1];
                Value::Array(vec![
                    node[0].clone(),
                    info.get("props").cloned().unwrap_or(Value::Nil),
                    info.get("tags").cloned().unwrap_or(Value::Nil),
                ])
            })
            .collect();
        nodes.sort_by_key(|n| format!("{n:?}"));
        nodes
    };
    let leader_core = Proxy::open(&leader.url("cortex")).await.unwrap();
    let mirror_core = Proxy::open(&mirror.url("cortex")).await.unwrap();
    let (a, b) = (
        nodes(storm(&leader_core, all).await),
        nodes(storm(&mirror_core, all).await),
    );
    assert!(!a.is_empty());
    assert!(a == b, "the nodes differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_follows_every_kind_of_edit_record_for_record() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    storm(
        &core,
        "[inet:ipv4=1.2.3.4 :asn=10 +#a.b=(2019, 2020) +#old]",
    )
    .await;
    storm(&core, "[inet:fqdn=vertex.link +#x]").await;
    let mirror = start_mirror(&leader, &follower_dir(&leader, tmp.path()));
    mirror
        .notify
        .wait_for("1 of 1 layers caught up", Duration::from_secs(30))
        .unwrap();
    // Every kind of edit after the backup: adds, prop sets and deletions, tags with and
    // without intervals and their deletion, universal props, node deletion.
    storm(&core, "[inet:ipv4=5.6.7.8 :asn=20 +#c .seen=2021]").await;
    storm(
        &core,
        "inet:ipv4=1.2.3.4 [ -:asn -#old +#a.b=(2018, 2021) ]",
    )
    .await;
    storm(&core, "inet:fqdn=vertex.link | delnode").await;
    storm(
        &core,
        "for $i in $lib.range(200) { [ inet:ipv4=$i :asn=$i +#bulk ] }",
    )
    .await;
    assert_mirrored(&leader, &mirror).await;
    let mirror_core = Proxy::open(&mirror.url("cortex")).await.unwrap();
    let status = mirror_core.call("getMirrorStatus", vec![]).await.unwrap();
    let layers = status.get("layers").and_then(Value::as_map).unwrap();
    assert_eq!(layers.len(), 1, "{status:?}");
    let layer = &layers[0].1;
    assert_eq!(
        layer.get("offs").and_then(Value::as_i64),
        Some(next_offset(&leader).await)
    );
    assert_eq!(layer.get("caughtup"), Some(&Value::from(true)));
    assert!(
        status
            .get("leader")
            .and_then(Value::as_str)
            .is_some_and(|l| l.starts_with("tcp://root:****@"))
    );
    let leader_core = Proxy::open(&leader.url("cortex")).await.unwrap();
    assert_eq!(
        leader_core.call("getMirrorStatus", vec![]).await.unwrap(),
        Value::Nil
    );
    let count = mirror_core
        .call("count", vec!["inet:fqdn=vertex.link".into()])
        .await
        .unwrap();
    assert_eq!(count, Value::Int(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_refuses_changes_and_answers_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    storm(&core, "[inet:ipv4=1.2.3.4 +#seen]").await;
    let mirror = start_mirror(&leader, &follower_dir(&leader, tmp.path()));
    let mcore = Proxy::open(&mirror.url("cortex")).await.unwrap();
    let (name, mesg) = storm_err(&mcore, "[inet:ipv4=9.9.9.9]").await;
    assert_eq!(name, "IsReadOnly");
    assert!(mesg.contains("mirrors tcp://root:****@127.0.0.1"), "{mesg}");
    let (name, _) = storm_err(&mcore, "inet:ipv4=1.2.3.4 [ +#more ]").await;
    assert_eq!(name, "IsReadOnly");
    let (name, _) = storm_err(&mcore, "$lib.view.get().fork()").await;
    assert_eq!(name, "IsReadOnly");
    let layer = Proxy::open(&mirror.url("cortex/layer")).await.unwrap();
    let err = layer
        .call(
            "storNodeEdits",
            vec![Value::Array(vec![common::ipv4_nodeedit(7)])],
        )
        .await
        .unwrap_err();
    assert_eq!(err.name, "IsReadOnly");
    let err = mcore
        .call(
            "addForm",
            vec![
                "_x:thing".into(),
                "str".into(),
                Value::map::<&str>([]),
                Value::map::<&str>([]),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.name, "IsReadOnly");
    // Reads answer from the copy.
    let n = mcore
        .call("count", vec!["inet:ipv4#seen".into()])
        .await
        .unwrap();
    assert_eq!(n, Value::Int(1));
    assert_eq!(next_offset(&mirror).await, next_offset(&leader).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_mirror_resumes_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    storm(&core, "[inet:ipv4=1.1.1.1]").await;
    let dir = follower_dir(&leader, tmp.path());
    let backed_up = next_offset(&leader).await;
    // A backlog for the mirror to catch up on.
    for q in 0..20 {
        storm(
            &core,
            &format!(
                "for $i in $lib.range(500) {{ [ inet:ipv4=$($i + {}) :asn=$i +#q{q} ] }}",
                q * 1000
            ),
        )
        .await;
    }
    let mut mirror = start_mirror(&leader, &dir);
    // Killed as soon as it has appended something.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = backed_up;
    while seen == backed_up {
        assert!(Instant::now() < deadline, "the mirror appended nothing");
        tokio::time::sleep(Duration::from_millis(2)).await;
        seen = next_offset(&mirror).await;
    }
    mirror.signal(Signal::SIGKILL);
    mirror.wait_exit(Duration::from_secs(10)).unwrap();
    let backlog = next_offset(&leader).await;
    assert!(
        seen < backlog,
        "killed after catching up ({seen} of {backlog})"
    );
    let again = start_mirror(&leader, &dir);
    storm(&core, "[inet:ipv4=2.2.2.2 +#after]").await;
    assert_mirrored(&leader, &again).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_follows_a_leader_that_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let leader_dir = tmp.path().join("leader");
    let mut leader = SynService::start_in("cortex", &leader_dir, &[], &[]).unwrap();
    let port = leader.port;
    let mirror = start_mirror(&leader, &follower_dir(&leader, tmp.path()));
    leader.daemon.stop();
    let leader = SynService::start_on("cortex", &leader_dir, port, &[], &[]).unwrap();
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    storm(&core, "[inet:ipv4=3.3.3.3 +#back]").await;
    assert_mirrored(&leader, &mirror).await;
}

#[test]
fn a_mirror_of_another_cell_stops_with_one_line() {
    let leader = SynService::start("cortex", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let last = mirror_stops(&tmp.path().join("other"), &leader.url(""));
    assert!(
        last.starts_with("syn cortex: mirror of tcp://root:****@127.0.0.1")
            && last.contains("a mirror starts from a backup of its leader"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_option_and_reloading_promotes_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    storm(&core, "[inet:ipv4=1.2.3.4]").await;
    let dir = follower_dir(&leader, tmp.path());
    let conf = dir.join("cell.toml");
    let kept = std::fs::read_to_string(&conf).unwrap_or_default();
    std::fs::write(&conf, format!("{kept}\nmirror = \"{}\"\n", leader.url(""))).unwrap();
    let mut mirror = SynService::start_in("cortex", &dir, &[], &[]).unwrap();
    mirror
        .notify
        .wait_for("1 of 1 layers caught up", Duration::from_secs(30))
        .unwrap();
    storm(&core, "[inet:ipv4=5.5.5.5]").await;
    assert_mirrored(&leader, &mirror).await;

    std::fs::write(&conf, kept).unwrap();
    mirror.signal(Signal::SIGHUP);
    mirror
        .notify
        .wait_for("READY=1", Duration::from_secs(10))
        .unwrap();
    let mcore = Proxy::open(&mirror.url("cortex")).await.unwrap();
    storm(&mcore, "[inet:ipv4=6.6.6.6 +#promoted]").await;
    // The leader's later writes no longer arrive.
    storm(&core, "[inet:ipv4=7.7.7.7]").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = |q: &'static str| mcore.call("count", vec![q.into()]);
    assert_eq!(count("inet:ipv4=7.7.7.7").await.unwrap(), Value::Int(0));
    assert_eq!(count("inet:ipv4#promoted").await.unwrap(), Value::Int(1));

    // Written to since, it cannot mirror that leader again.
    mirror.daemon.stop();
    let last = mirror_stops(&dir, &leader.url(""));
    assert!(
        last.contains("MirrorDesync") && last.contains("new backup of the leader"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_logs_in_to_its_leader_with_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let certdir = tmp.path().join("certs");
    let certs = certdir.to_str().unwrap();
    for args in [
        vec!["easycert", "--certdir", certs, "--ca", "testca"],
        vec![
            "easycert",
            "--certdir",
            certs,
            "--server",
            "leader.example.test",
            "--signas",
            "testca",
        ],
        vec!["easycert", "--certdir", certs, "--signas", "testca", "root"],
    ] {
        let out = syn(&args);
        assert!(out.ok(), "{}", out.describe());
    }
    let ssl_port = common::free_port();
    let listen = format!("ssl://127.0.0.1:{ssl_port}/?hostname=leader.example.test&ca=testca");
    let leader = SynService::start_in(
        "cortex",
        &tmp.path().join("leader"),
        &["--telepath", &listen, "--certdir", certs],
        &[],
    )
    .unwrap();
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    storm(&core, "[inet:ipv4=1.2.3.4]").await;
    let dir = follower_dir(&leader, tmp.path());
    // No password anywhere: the certificate `users/root.crt` logs the mirror in as root.
    let leader_url =
        format!("ssl://127.0.0.1:{ssl_port}/?hostname=leader.example.test&certname=root");
    let mirror = SynService::start_in(
        "cortex",
        &dir,
        &["--mirror", &leader_url, "--certdir", certs],
        &[],
    )
    .unwrap();
    storm(&core, "[inet:ipv4=5.6.7.8 +#tls]").await;
    assert_mirrored(&leader, &mirror).await;
}

/// Start a mirror of `leader_url` on `dir` and expect it to stop by itself; its last line.
fn mirror_stops(dir: &Path, leader_url: &str) -> String {
    let listen = format!("tcp://127.0.0.1:{}/", common::free_port());
    let out = syn(&[
        "cortex",
        dir.to_str().unwrap(),
        "--telepath",
        &listen,
        "--mirror",
        leader_url,
    ]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    if let Some(passwd) = syn::telepath::TeleUrl::parse(leader_url).unwrap().passwd {
        assert!(!out.stderr.contains(&passwd), "{}", out.stderr);
    }
    out.stderr.lines().last().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_the_leader_lacks_stops_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let dir = follower_dir(&leader, tmp.path());
    // A fork made on the copy before it became a mirror: a layer the leader does not have.
    {
        let mut copy = SynService::start_in("cortex", &dir, &[], &[]).unwrap();
        let core = Proxy::open(&copy.url("cortex")).await.unwrap();
        storm(&core, "$lib.view.get().fork()").await;
        copy.daemon.stop();
    }
    let last = mirror_stops(&dir, &leader.url(""));
    assert!(
        last.starts_with("syn cortex: mirror of tcp://root:****@") && last.contains("NoSuchLayer"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_user_who_may_not_read_the_log_stops_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let root = Proxy::open(&leader.url("")).await.unwrap();
    // A password no temporary path or iden can contain by chance: the test looks for it in stderr.
    root.call("addUser", vec!["reader".into(), "Secret-Of-Reader".into()])
        .await
        .unwrap();
    let dir = follower_dir(&leader, tmp.path());
    let url = format!("tcp://reader:Secret-Of-Reader@127.0.0.1:{}/", leader.port);
    let last = mirror_stops(&dir, &url);
    assert!(
        last.starts_with("syn cortex: mirror of tcp://reader:****@") && last.contains("AuthDeny"),
        "{last}"
    );
}

/// Whether `user:passwd` can log in to `svc`.
async fn logs_in(svc: &SynService, user: &str, passwd: &str) -> bool {
    let url = format!("tcp://{user}:{passwd}@127.0.0.1:{}/", svc.port);
    Proxy::open(&url).await.is_ok()
}

/// Wait until `check` holds, for up to 30 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_roles_and_passwords_follow_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let mirror = start_mirror(&leader, &follower_dir(&leader, tmp.path()));
    let root = Proxy::open(&leader.url("")).await.unwrap();
    let visi = root
        .call("addUser", vec!["visi".into(), "first".into()])
        .await
        .unwrap();
    let visi = visi.get("iden").and_then(Value::as_str).unwrap().to_owned();
    let role = root.call("addRole", vec!["analysts".into()]).await.unwrap();
    let role = role.get("iden").and_then(Value::as_str).unwrap().to_owned();
    root.call(
        "addUserRole",
        vec![visi.as_str().into(), role.as_str().into()],
    )
    .await
    .unwrap();
    eventually("visi logs in to the mirror", || {
        logs_in(&mirror, "visi", "first")
    })
    .await;
    let mroot = Proxy::open(&mirror.url("")).await.unwrap();
    let def = mroot
        .call("getUserDefByName", vec!["visi".into()])
        .await
        .unwrap();
    let roles = def.get("roles").and_then(Value::as_array).unwrap().to_vec();
    assert!(
        roles
            .iter()
            .any(|r| r.get("iden").and_then(Value::as_str) == Some(role.as_str())),
        "{def:?}"
    );

    root.call("setUserPasswd", vec![visi.as_str().into(), "second".into()])
        .await
        .unwrap();
    eventually("the new password works", || {
        logs_in(&mirror, "visi", "second")
    })
    .await;
    assert!(!logs_in(&mirror, "visi", "first").await);
    root.call("delUser", vec![visi.as_str().into()])
        .await
        .unwrap();
    eventually("the deleted user is gone", || async {
        !logs_in(&mirror, "visi", "second").await
    })
    .await;
    // Changes on the mirror itself are refused like every other change.
    assert!(
        mroot
            .call("addUser", vec!["eve".into(), "x".into()])
            .await
            .is_err_and(|e| e.name == "IsReadOnly")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_made_on_the_leader_after_the_backup_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = SynService::start_in("cortex", &tmp.path().join("leader"), &[], &[]).unwrap();
    let dir = follower_dir(&leader, tmp.path());
    let core = Proxy::open(&leader.url("cortex")).await.unwrap();
    let fork = core
        .call("callStorm", vec!["return($lib.view.get().fork())".into()])
        .await
        .unwrap();
    let layers = fork.get("layers").and_then(Value::as_array).unwrap();
    let new_layer = layers[0]
        .get("iden")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let mirror = start_mirror(&leader, &dir);
    let mcore = Proxy::open(&mirror.url("cortex")).await.unwrap();
    eventually("the new layer is reported", || async {
        let status = mcore.call("getMirrorStatus", vec![]).await.unwrap();
        status.get("unmirrored") == Some(&Value::Array(vec![new_layer.as_str().into()]))
    })
    .await;
    assert!(
        mirror
            .daemon
            .stderr_log()
            .contains("the leader has a layer this cortex does not"),
        "{}",
        mirror.daemon.stderr_log()
    );
    // The layers it has are still mirrored.
    storm(&core, "[inet:ipv4=4.4.4.4]").await;
    assert_mirrored(&leader, &mirror).await;
}
