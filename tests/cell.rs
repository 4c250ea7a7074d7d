//! `syn cell` as a real process: directory layout, the lock, configuration, systemd notify,
//! signals, `syn call`, and users, roles and rules over telepath.

mod common;

use common::{NotifySocket, SynService, syn, syn_bin};
use nix::sys::signal::Signal;
use std::process::Command;
use std::time::Duration;
use syn::msgpack::Value;
use syn::telepath::Proxy;

#[test]
fn first_start_lays_out_the_directory_and_a_second_daemon_is_refused() {
    let svc = SynService::start("cell", &[]);
    let iden = std::fs::read_to_string(svc.dir.join("cell.guid")).unwrap();
    assert!(common::is_hex32(iden.trim()), "{iden:?}");
    assert!(svc.dir.join("slabs/cell.lmdb/data.mdb").is_file());
    assert!(svc.dir.join("sock").exists());

    let second = syn(&[
        "cell",
        svc.dir.to_str().unwrap(),
        "--telepath",
        "tcp://127.0.0.1:0",
    ]);
    assert_eq!(second.code(), Some(11), "{}", second.describe());
    let lines: Vec<&str> = second.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(
        lines[0].contains("in use by another running service"),
        "{lines:?}"
    );

    // syn call over the unix socket needs no password and reaches the same cell.
    let out = syn(&[
        "call",
        &format!("cell://{}", svc.dir.display()),
        "getCellIden",
    ]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json(), serde_json::json!(iden.trim()));
}

#[test]
fn the_lock_dies_with_the_process() {
    let mut svc = SynService::start("cell", &[]);
    let iden = std::fs::read_to_string(svc.dir.join("cell.guid")).unwrap();
    svc.signal(Signal::SIGKILL);
    svc.wait_exit(Duration::from_secs(10)).expect("killed");
    let again = SynService::start_in("cell", &svc.dir, &[], &[]).expect("restarts after kill -9");
    assert_eq!(
        std::fs::read_to_string(again.dir.join("cell.guid")).unwrap(),
        iden
    );
}

#[test]
fn notify_ready_status_watchdog_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new();
    let port = common::free_port();
    let mut cmd = Command::new(syn_bin());
    cmd.args(["cell", tmp.path().join("c").to_str().unwrap()])
        .args(["--telepath", &format!("tcp://127.0.0.1:{port}")])
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", "200000");
    // WATCHDOG_PID must name the service itself; spawn first, then it is unknown... so leave
    // WATCHDOG_PID unset, which sd-notify treats as "for us".
    let mut daemon = common::Daemon::spawn("cell", cmd).unwrap();
    let ready = notify.wait_for("READY=1", Duration::from_secs(30)).unwrap();
    assert!(ready.contains("STATUS=serving cell"), "{ready}");
    notify
        .wait_for("WATCHDOG=1", Duration::from_secs(30))
        .unwrap();
    notify
        .wait_for("WATCHDOG=1", Duration::from_secs(30))
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(daemon.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    notify
        .wait_for("STOPPING=1", Duration::from_secs(30))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = daemon.exited() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        !tmp.path().join("c/sock").exists(),
        "socket removed at exit"
    );
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_running_config() {
    let svc = SynService::start("cell", &[]);
    std::fs::write(svc.dir.join("cell.toml"), "log-level = \"debug\"\n").unwrap();
    svc.signal(Signal::SIGHUP);
    svc.notify
        .wait_for("RELOADING=1", Duration::from_secs(30))
        .unwrap();
    svc.notify
        .wait_for("READY=1", Duration::from_secs(30))
        .unwrap();
    std::fs::write(svc.dir.join("cell.toml"), "log-level = 5\n").unwrap();
    svc.signal(Signal::SIGHUP);
    svc.notify
        .wait_for("READY=1", Duration::from_secs(30))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log = svc.daemon.stderr_log();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("reload refused"), "{log}");
    // Still serving.
    let out = syn(&["call", &svc.url(""), "getCellType"]);
    assert_eq!(out.json(), serde_json::json!("cell"), "{}", out.describe());
}

#[test]
fn check_config_validates_and_names_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("cell.toml"),
        "telepath = [\"tcp://127.0.0.1:1\"]\nbogus = 1\n",
    )
    .unwrap();
    let out = syn(&["cell", dir.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("line 2, column 1") && out.stderr.contains("bogus"),
        "{}",
        out.stderr
    );
    std::fs::write(
        dir.join("cell.toml"),
        "telepath = [\"tcp://127.0.0.1:1\"]\n",
    )
    .unwrap();
    let out = Command::new(syn_bin())
        .args([
            "cell",
            dir.to_str().unwrap(),
            "--check-config",
            "--log-level",
            "debug",
        ])
        .env("SYN_CELL_AUTH_PASSWD", "hunter2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("telepath = tcp://127.0.0.1:1  (cell.toml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("log-level = debug  (--log-level)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("auth-passwd = (set, hidden)  (SYN_CELL_AUTH_PASSWD)"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
    assert!(
        !dir.join("cell.guid").exists(),
        "--check-config must not create state"
    );
    let out = syn(&[
        "cell",
        dir.to_str().unwrap(),
        "--check-config",
        "--telepath",
        "http://x",
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("unsupported scheme"), "{}", out.stderr);
}

#[test]
fn syn_call_errors_are_one_line_and_nonzero() {
    let svc = SynService::start("cell", &[]);
    let bad = format!("tcp://root:wrong@127.0.0.1:{}/", svc.port);
    for (args, want) in [
        (vec!["call", bad.as_str(), "getCellInfo"], "AuthDeny"),
        (
            vec!["call", "tcp://127.0.0.1:1/", "getCellInfo"],
            "cannot connect",
        ),
        (vec!["call", "nope://x", "getCellInfo"], "bad telepath URL"),
    ] {
        let out = syn(&args);
        assert!(!out.ok(), "{}", out.describe());
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(want), "{}", out.stderr);
    }
    let url = svc.url("");
    let out = syn(&["call", &url, "noSuchMethod"]);
    assert!(
        !out.ok() && out.stderr.contains("NoSuchMeth"),
        "{}",
        out.describe()
    );
    let out = syn(&["call", &url, "getUserDefs"]);
    assert!(out.ok(), "{}", out.describe());
    let names: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["root"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_roles_rules_and_passwords() {
    let svc = SynService::start("cell", &[]);
    let root = Proxy::open(&svc.url("")).await.unwrap();
    let visi = root
        .call("addUser", vec!["visi".into(), "s3cret".into()])
        .await
        .unwrap();
    let visi_iden = visi.get("iden").unwrap().as_str().unwrap().to_owned();
    assert_eq!(visi.get("admin"), Some(&Value::Bool(false)));
    let dup = root.call("addUser", vec!["visi".into()]).await.unwrap_err();
    assert_eq!(dup.name, "DupUserName");

    let port = svc.port;
    let as_visi = Proxy::open(&format!("tcp://visi:s3cret@127.0.0.1:{port}/"))
        .await
        .unwrap();
    let me = as_visi.call("getCellUser", vec![]).await.unwrap();
    assert_eq!(me.get("name"), Some(&Value::from("visi")));
    // Not an admin: management is refused.
    let e = as_visi
        .call("addUser", vec!["eve".into()])
        .await
        .unwrap_err();
    assert_eq!(e.name, "AuthDeny");
    let perm = Value::Array(vec!["node".into(), "add".into()]);
    assert_eq!(
        as_visi.call("allowed", vec![perm.clone()]).await.unwrap(),
        Value::Nil
    );

    // A role with an allow rule, granted to visi; a user-level deny wins over it.
    let role = root.call("addRole", vec!["ninjas".into()]).await.unwrap();
    let role_iden = role.get("iden").unwrap().clone();
    let allow = Value::Array(vec![Value::Bool(true), perm.clone()]);
    root.call("addRoleRule", vec![role_iden.clone(), allow])
        .await
        .unwrap();
    root.call(
        "addUserRole",
        vec![visi_iden.as_str().into(), role_iden.clone()],
    )
    .await
    .unwrap();
    assert_eq!(
        as_visi.call("allowed", vec![perm.clone()]).await.unwrap(),
        Value::Bool(true)
    );
    let deny = Value::Array(vec![
        Value::Bool(false),
        Value::Array(vec!["node".into(), "add".into(), "inet:ipv4".into()]),
    ]);
    root.call("addUserRule", vec![visi_iden.as_str().into(), deny])
        .await
        .unwrap();
    let ipv4 = Value::Array(vec!["node".into(), "add".into(), "inet:ipv4".into()]);
    let fqdn = Value::Array(vec!["node".into(), "add".into(), "inet:fqdn".into()]);
    assert_eq!(
        as_visi.call("allowed", vec![ipv4.clone()]).await.unwrap(),
        Value::Bool(false)
    );
    assert_eq!(
        as_visi.call("allowed", vec![fqdn]).await.unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        root.call("isUserAllowed", vec![visi_iden.as_str().into(), ipv4])
            .await
            .unwrap(),
        Value::Bool(false)
    );

    // visi may change its own password; the old one stops working.
    as_visi
        .call(
            "setUserPasswd",
            vec![visi_iden.as_str().into(), "n3w".into()],
        )
        .await
        .unwrap();
    let e = Proxy::open(&format!("tcp://visi:s3cret@127.0.0.1:{port}/"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.name, "AuthDeny");
    Proxy::open(&format!("tcp://visi:n3w@127.0.0.1:{port}/"))
        .await
        .unwrap();

    // Locked users cannot log in; unknown users get the same answer as a bad password.
    root.call(
        "setUserLocked",
        vec![visi_iden.as_str().into(), Value::Bool(true)],
    )
    .await
    .unwrap();
    let e = Proxy::open(&format!("tcp://visi:n3w@127.0.0.1:{port}/"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.name, "AuthDeny");
    let e = Proxy::open(&format!("tcp://ghost:x@127.0.0.1:{port}/"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (e.name.as_str(), e.mesg()),
        ("AuthDeny", "Invalid password")
    );
    // TCP without credentials is refused; the unix socket is root.
    let e = Proxy::open(&format!("tcp://127.0.0.1:{port}/"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.name, "AuthDeny");

    // Root cannot be deleted or demoted; role `all` cannot be deleted.
    let root_def = root.call("getCellUser", vec![]).await.unwrap();
    let root_iden = root_def.get("iden").unwrap().clone();
    assert_eq!(
        root.call("delUser", vec![root_iden.clone()])
            .await
            .unwrap_err()
            .name,
        "CantDelRootUser"
    );
    assert!(
        root.call("setUserAdmin", vec![root_iden, Value::Bool(false)])
            .await
            .is_err()
    );
    let all = root
        .call("getRoleDefByName", vec!["all".into()])
        .await
        .unwrap();
    assert!(
        root.call("delRole", vec![all.get("iden").unwrap().clone()])
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_and_passwords_survive_a_restart() {
    let mut svc = SynService::start("cell", &[]);
    {
        let root = Proxy::open(&svc.url("")).await.unwrap();
        root.call("addUser", vec!["kept".into(), "pw1".into()])
            .await
            .unwrap();
    }
    let dir = svc.dir.clone();
    svc.signal(Signal::SIGKILL);
    svc.wait_exit(Duration::from_secs(10)).unwrap();
    let again = SynService::start_in("cell", &dir, &[], &[]).unwrap();
    Proxy::open(&format!("tcp://kept:pw1@127.0.0.1:{}/", again.port))
        .await
        .unwrap();
}
