//! What TLS costs telepath: handshakes per second, and `getCellIden` round trips over ssl://
//! against tcp://, for syn's server beside the real Python Synapse 2.256 cortex.
//!
//! Run: `cargo bench --bench tls` (needs the Python peer; it installs into target/peers on first
//! use). Prints a Markdown table for docs/benchmarks.md. Measures, in one run, on loopback:
//! full TLS handshakes per second (one client, sequential, no session resumption, rustls client)
//! against `syn cell` with an ECDSA P-256 and an RSA 4096 host certificate and against the
//! Python cortex with the same ECDSA certificate; sequential `getCellIden` round trips on one
//! proxy over tcp:// and ssl:// with syn's client and with Python's, against both servers.

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator of the `syn` binary, so the in-process syn client runs as `syn` itself does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{PyService, SynService, run_py_timeout};
use rustls::RootCertStore;
use rustls::client::Resumption;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syn::certs::{CertDir, CertKind, IssueOptions, San, crypto_provider};
use syn::telepath::{Proxy, TeleUrl, client_options};
use tokio::io::AsyncWriteExt;

const HANDSHAKES: usize = 2_000;
const SYN_CALLS: usize = 50_000;
const PY_CALLS: usize = 10_000;
/// The ECDSA P-256 host certificate's name.
const HOST: &str = "cortex.example.test";
/// The RSA 4096 host certificate made by Python Synapse 2.0.0's easycert (a test fixture).
const RSA_HOST: &str = "py.example.test";

fn main() {
    // `cargo bench` passes --bench; nothing else is configurable.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certdir(&tmp.path().join("certs"));
    let roots = Arc::new(certs.ca_roots().unwrap());
    let mut rows: Vec<(String, String)> = Vec::new();

    let (ssl_port, rsa_port) = (common::free_port(), common::free_port());
    let svc = SynService::start_in(
        "cell",
        &tmp.path().join("cell"),
        &[
            "--telepath",
            &format!("ssl://127.0.0.1:{ssl_port}/?hostname={HOST}"),
            "--telepath",
            &format!("ssl://127.0.0.1:{rsa_port}/?hostname={RSA_HOST}"),
            "--certdir",
            certs.path().to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    let hs = rt.block_on(handshakes(ssl_port, HOST, &roots));
    rows.push((
        "TLS handshakes, syn server, ECDSA P-256 certificate".into(),
        per_sec(hs, "handshakes"),
    ));
    let hs = rt.block_on(handshakes(rsa_port, RSA_HOST, &roots));
    rows.push((
        "TLS handshakes, syn server, RSA 4096 certificate".into(),
        per_sec(hs, "handshakes"),
    ));
    let tcp_url = svc.url("");
    let ssl_url = format!(
        "ssl://root:{}@127.0.0.1:{ssl_port}/?hostname={HOST}",
        common::ROOT_PASSWD
    );
    let tcp = rt.block_on(syn_sequential(&tcp_url, certs.path(), SYN_CALLS));
    let ssl = rt.block_on(syn_sequential(&ssl_url, certs.path(), SYN_CALLS));
    push_pair(&mut rows, "syn client → syn server", tcp, ssl);

    let python = common::syn2_python();
    match &python {
        Some(py) => {
            let tcp = python_calls(py, &tcp_url, None);
            let ssl = python_calls(py, &ssl_url, Some(certs.path()));
            push_pair(&mut rows, "Python client → syn server", tcp, ssl);
        }
        None => rows.push((
            "Python client rows".into(),
            "skipped (no Python peer)".into(),
        )),
    }
    drop(svc);

    if let (Some(tcp_core), Some(ssl_core)) = (
        PyService::cortex(),
        PyService::cortex_ssl(certs.path(), HOST),
    ) {
        let hs = rt.block_on(handshakes(ssl_core.port(), HOST, &roots));
        rows.push((
            "TLS handshakes, Python Synapse 2.256 cortex, ECDSA P-256 certificate".into(),
            per_sec(hs, "handshakes"),
        ));
        let tcp = rt.block_on(syn_sequential(&tcp_core.url(), certs.path(), PY_CALLS));
        let ssl = rt.block_on(syn_sequential(&ssl_core.url(), certs.path(), PY_CALLS));
        push_pair(&mut rows, "syn client → Python cortex", tcp, ssl);
        let py = tcp_core.python().to_owned();
        let tcp = python_calls(&py, &tcp_core.url(), None);
        let ssl = python_calls(&py, &ssl_core.url(), Some(certs.path()));
        push_pair(&mut rows, "Python client → Python cortex", tcp, ssl);
    } else {
        rows.push((
            "Python server rows".into(),
            "skipped (no Python peer)".into(),
        ));
    }

    println!("\n| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}

/// A certdir with CA `bench`, host `cortex.example.test` (ECDSA P-256, also IP 127.0.0.1)
/// signed by it, and Python Synapse's RSA fixture (CA `pyca`, host `py.example.test`).
fn make_certdir(path: &Path) -> CertDir {
    let dir = CertDir::create(path).unwrap();
    dir.issue(CertKind::Ca, "bench", &IssueOptions::default())
        .unwrap();
    let host = IssueOptions {
        signas: Some("bench".into()),
        sans: vec![San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        ..IssueOptions::default()
    };
    dir.issue(CertKind::Host, HOST, &host).unwrap();
    let fixture = common::repo_root().join("src/certs/testdata/synapse-2.0.0");
    for (kind, name, ext) in [
        (CertKind::Ca, "pyca", "crt"),
        (CertKind::Host, RSA_HOST, "crt"),
        (CertKind::Host, RSA_HOST, "key"),
    ] {
        let file = format!("{}/{name}.{ext}", kind.dir());
        std::fs::copy(fixture.join(&file), path.join(&file)).unwrap();
    }
    dir
}

fn per_sec(rate: f64, what: &str) -> String {
    format!("{rate:.0} {what}/s")
}

/// Calls per second over tcp:// and ssl://, and what TLS costs.
fn push_pair(rows: &mut Vec<(String, String)>, who: &str, tcp: f64, ssl: f64) {
    rows.push((format!("{who}, tcp://, sequential"), per_sec(tcp, "calls")));
    rows.push((format!("{who}, ssl://, sequential"), per_sec(ssl, "calls")));
    rows.push((
        format!("{who}, ssl:// throughput as a share of tcp://"),
        format!("{:.0} %", 100.0 * ssl / tcp),
    ));
}

/// Full handshakes per second: connect, handshake (no resumption), close, one at a time.
async fn handshakes(port: u16, name: &str, roots: &Arc<RootCertStore>) -> f64 {
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let one = || async {
        let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut tls = connector.connect(server_name.clone(), sock).await.unwrap();
        let _ = tls.shutdown().await;
    };
    one().await;
    let t0 = Instant::now();
    for _ in 0..HANDSHAKES {
        one().await;
    }
    HANDSHAKES as f64 / t0.elapsed().as_secs_f64()
}

async fn syn_sequential(url: &str, certdir: &Path, calls: usize) -> f64 {
    let url = TeleUrl::parse(url).unwrap();
    let opts = client_options(&url, Some(certdir)).unwrap();
    let proxy = Proxy::open_with(&url, opts).await.unwrap();
    proxy.call("getCellIden", vec![]).await.unwrap();
    let t0 = Instant::now();
    for _ in 0..calls {
        proxy.call("getCellIden", vec![]).await.unwrap();
    }
    calls as f64 / t0.elapsed().as_secs_f64()
}

fn python_calls(python: &Path, url: &str, certdir: Option<&Path>) -> f64 {
    let count = PY_CALLS.to_string();
    let mut args = vec![url, count.as_str()];
    let certdir = certdir.map(|d| d.display().to_string());
    args.extend(certdir.as_deref());
    let out = run_py_timeout(python, "bench_calls.py", &args, Duration::from_secs(600));
    assert!(out.ok(), "{}", out.describe());
    out.json()["calls_per_sec"].as_f64().unwrap()
}
