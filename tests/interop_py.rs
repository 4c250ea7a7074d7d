//! Interop with the real Python Synapse 2.256 from PyPI: its telepath client against
//! `syn cell`, and `syn call` against a real Python cortex. Skips, saying why, where the
//! Python peer cannot be installed.

mod common;

use common::{PyService, SynService, run_py, syn, syn2_python};

#[test]
fn python_client_reaches_syn_cell_over_tcp_and_unix() {
    let Some(py) = syn2_python() else { return };
    let svc = SynService::start("cell", &[]);
    let iden = std::fs::read_to_string(svc.dir.join("cell.guid")).unwrap();
    let unix = format!("unix://{}:*", svc.dir.join("sock").display());
    for url in [svc.url(""), unix] {
        let out = run_py(&py, "tele.py", &[&url, "call", "getCellInfo"]);
        assert!(out.ok(), "{url}: {}", out.describe());
        let info = out.json();
        assert_eq!(
            info["cell"]["iden"],
            serde_json::json!(iden.trim()),
            "{url}"
        );
        assert_eq!(info["cell"]["type"], serde_json::json!("cell"));

        let out = run_py(&py, "tele.py", &[&url, "call", "getCellIden"]);
        assert_eq!(
            out.json(),
            serde_json::json!(iden.trim()),
            "{}",
            out.describe()
        );
    }
    // A generator: the Python client sees `watch` flagged as genr, consumes part of it and
    // abandons the rest (closing its link); the server carries on.
    let out = run_py(
        &py,
        "tele.py",
        &[&svc.url(""), "genr", "watch", "5", "--limit", "3"],
    );
    assert!(out.ok(), "{}", out.describe());
    let items = out.json_lines();
    assert_eq!(items.len(), 3, "{}", out.stdout);
    assert!(
        items
            .iter()
            .all(|i| i["level"].is_string() && i["message"].is_string())
    );

    // Users made by the Python client log in through it.
    let out = run_py(
        &py,
        "tele.py",
        &[&svc.url(""), "call", "addUser", "visi", "pw"],
    );
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json()["name"], serde_json::json!("visi"));
    let visi = format!("tcp://visi:pw@127.0.0.1:{}/", svc.port);
    let out = run_py(&py, "tele.py", &[&visi, "call", "getCellUser"]);
    assert_eq!(
        out.json()["name"],
        serde_json::json!("visi"),
        "{}",
        out.describe()
    );

    let bad = format!("tcp://root:wrong@127.0.0.1:{}/", svc.port);
    let out = run_py(&py, "tele.py", &[&bad, "call", "getCellInfo"]);
    assert_eq!(out.code(), Some(2));
    assert_eq!(
        out.json()["err"],
        serde_json::json!("AuthDeny"),
        "{}",
        out.describe()
    );

    let out = run_py(&py, "tele.py", &[&svc.url(""), "call", "noSuchThing"]);
    assert_eq!(
        out.json()["err"],
        serde_json::json!("NoSuchMeth"),
        "{}",
        out.describe()
    );
    let out = run_py(&py, "tele.py", &[&visi, "call", "addUser", "eve"]);
    assert_eq!(
        out.json()["err"],
        serde_json::json!("AuthDeny"),
        "{}",
        out.describe()
    );
}

#[test]
fn syn_call_reaches_a_python_cortex() {
    if syn2_python().is_none() {
        return;
    }
    let Some(core) = PyService::cortex() else {
        return;
    };
    let iden = std::fs::read_to_string(core.dir().join("cell.guid")).unwrap();
    let out = syn(&["call", &core.url(), "getCellIden"]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json(), serde_json::json!(iden.trim()));
    let out = syn(&["call", &core.url(), "getCellInfo"]);
    assert_eq!(
        out.json()["cell"]["type"],
        serde_json::json!("cortex"),
        "{}",
        out.describe()
    );
    // A generator streamed from Python: one JSON value per line.
    let out = syn(&["call", &core.url(), "storm", "[inet:ipv4=1.2.3.4]"]);
    assert!(out.ok(), "{}", out.describe());
    let mesgs: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(mesgs.first().unwrap()[0], serde_json::json!("init"));
    assert_eq!(mesgs.last().unwrap()[0], serde_json::json!("fini"));
    let node = mesgs
        .iter()
        .find(|m| m[0] == "node")
        .expect("a node message");
    assert_eq!(
        node[1][1]["iden"],
        serde_json::json!("20153b758f9d5eaaa38e4f4a65c36da797c3e59e549620fa7c4895e1a920991f")
    );
    let bad = core.url().replace(":secret@", ":wrong@");
    let out = syn(&["call", &bad, "getCellIden"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("AuthDeny"), "{}", out.stderr);
}
