//! Telepath over TLS with real handshakes on loopback: the listener and client in-process
//! (SNI, client certificates, pinning, reload, bad files), `syn cell` and `syn call` as
//! processes (logins, startup errors, SIGHUP), and interop with the real Python Synapse 2.256.

mod common;

use common::{PyService, SynService, run_py, syn, syn_bin, syn2_python};
use nix::sys::signal::Signal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use syn::certs::{CertDir, CertKind, IssueOptions, San, crypto_provider, fingerprint_sha256};
use syn::error::{SynErr, SynResult};
use syn::msgpack::Value;
use syn::telepath::api::BoxFut;
use syn::telepath::{
    Api, ClientOptions, Daemon, HasMethods, Hello, Methods, Peer, Proxy, Shared, TeleUrl,
    TlsServer, client_options,
};
use tokio::io::AsyncReadExt;

const HOST: &str = "cortex.example.test";
const HOST2: &str = "axon.example.test";

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certdir in a temporary directory.
struct Pki {
    tmp: tempfile::TempDir,
    dir: CertDir,
}

impl Pki {
    /// CA `ca`; hosts `cortex.example.test` (also `IP:127.0.0.1`) and `axon.example.test`;
    /// users `visi@example.test` and `root`, all signed by the CA.
    fn new(ca: &str) -> Pki {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertDir::create(tmp.path().join("certs")).unwrap();
        let pki = Pki { tmp, dir };
        pki.issue(CertKind::Ca, ca, None);
        pki.host(HOST, ca);
        pki.issue(CertKind::Host, HOST2, Some(ca));
        pki.issue(CertKind::User, "visi@example.test", Some(ca));
        pki.issue(CertKind::User, "root", Some(ca));
        pki
    }

    /// A copy of Python Synapse 2.0.0's easycert output (CA `pyca`, host `py.example.test`
    /// with `IP:127.0.0.1`, user `pyuser@example`; RSA keys).
    fn python_made() -> Pki {
        let tmp = tempfile::tempdir().unwrap();
        let fixture = common::repo_root().join("src/certs/testdata/synapse-2.0.0");
        common::copy_tree(&fixture, &tmp.path().join("certs")).unwrap();
        let dir = CertDir::open(tmp.path().join("certs")).unwrap();
        Pki { tmp, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn issue(&self, kind: CertKind, name: &str, signas: Option<&str>) {
        let opts = IssueOptions {
            signas: signas.map(str::to_owned),
            ..IssueOptions::default()
        };
        self.dir.issue(kind, name, &opts).unwrap();
    }

    /// A host certificate that also names 127.0.0.1.
    fn host(&self, name: &str, ca: &str) {
        let opts = IssueOptions {
            signas: Some(ca.to_owned()),
            sans: vec![San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
            ..IssueOptions::default()
        };
        self.dir.issue(CertKind::Host, name, &opts).unwrap();
    }

    /// A certificate valid for 30 days from 2020-01-01: long expired.
    fn expired(&self, kind: CertKind, name: &str, ca: &str) {
        let opts = IssueOptions {
            signas: Some(ca.to_owned()),
            days: Some(30),
            valid_from: Some(
                time::Date::from_calendar_date(2020, time::Month::January, 1)
                    .unwrap()
                    .midnight()
                    .assume_utc(),
            ),
            ..IssueOptions::default()
        };
        self.dir.issue(kind, name, &opts).unwrap();
    }

    /// Replace host `name`'s key and certificate with new ones signed by `ca`.
    fn reissue_host(&self, name: &str, ca: &str) {
        for ext in ["crt", "key"] {
            std::fs::remove_file(self.dir.file(CertKind::Host, name, ext)).unwrap();
        }
        self.host(name, ca);
    }

    fn file(&self, kind: CertKind, name: &str, ext: &str) -> PathBuf {
        self.dir.file(kind, name, ext)
    }

    /// SHA-256 of host `name`'s certificate, as `?certhash=` wants it.
    fn host_hash(&self, name: &str) -> String {
        fingerprint_sha256(&self.dir.host_cert(name).unwrap().chain[0])
    }
}

/// Cut a PEM file in half, as an interrupted copy would.
fn truncate(path: &Path) {
    let text = std::fs::read(path).unwrap();
    std::fs::write(path, &text[..text.len() / 2]).unwrap();
}

// ---------------------------------------------------------------------------------------------
// An in-process listener that reports who connected

struct Whoami {
    peer: Peer,
}

static WHOAMI: LazyLock<Methods<Whoami>> = LazyLock::new(|| {
    Methods::<Whoami>::new("test.Whoami")
        .call("certcn", |api, args| async move {
            args.done()?;
            Ok(match &api.peer {
                Peer::Tls { cert_cn, .. } => Value::from(cert_cn.clone()),
                _ => Value::from("not TLS"),
            })
        })
        .build()
});

impl HasMethods for Whoami {
    fn methods() -> &'static Methods<Self> {
        &WHOAMI
    }
}

struct WhoamiShare;

impl Shared for WhoamiShare {
    fn open(&self, hello: Hello) -> BoxFut<SynResult<Arc<dyn Api>>> {
        Box::pin(async move {
            let api: Arc<dyn Api> = Arc::new(Whoami { peer: hello.peer });
            Ok(api)
        })
    }
}

/// A daemon serving `ssl://127.0.0.1:0/?QUERY` from `pki`: its port and its TLS listener.
async fn serve(pki: &Pki, query: &str) -> (Daemon, u16, Arc<TlsServer>) {
    let url = TeleUrl::parse(&format!("ssl://127.0.0.1:0/?{query}")).unwrap();
    let tls = Arc::new(TlsServer::load(&url, &pki.dir).unwrap());
    let daemon = Daemon::new();
    daemon.share("*", Arc::new(WhoamiShare));
    let addr = daemon.listen_tls(&url, tls.clone()).await.unwrap();
    let port = addr
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (daemon, port, tls)
}

/// Open `ssl://USERINFO127.0.0.1:PORT/?QUERY` with the certdir `certdir`.
async fn open(port: u16, userinfo: &str, query: &str, certdir: Option<&Path>) -> SynResult<Proxy> {
    let url = TeleUrl::parse(&format!("ssl://{userinfo}127.0.0.1:{port}/?{query}"))?;
    let opts = client_options(&url, certdir)?;
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(20),
        ..opts
    };
    Proxy::open_with(&url, opts).await
}

/// The CN the listener saw, through a fresh proxy.
async fn certcn(
    port: u16,
    userinfo: &str,
    query: &str,
    certdir: Option<&Path>,
) -> SynResult<Value> {
    open(port, userinfo, query, certdir)
        .await?
        .call("certcn", vec![])
        .await
}

/// The one-line error of a connection that must be refused.
async fn refusal(port: u16, userinfo: &str, query: &str, certdir: Option<&Path>) -> String {
    let err = certcn(port, userinfo, query, certdir)
        .await
        .expect_err("the connection must be refused");
    one_line(&err)
}

fn one_line(e: &SynErr) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    text
}

// ---------------------------------------------------------------------------------------------
// In-process: listener and client

#[tokio::test]
async fn client_certificates_reach_the_service_as_the_peer_cn() {
    let pki = Pki::new("vertex");
    let (_daemon, port, _tls) = serve(&pki, &format!("hostname={HOST}")).await;
    let certdir = Some(pki.path());
    let q = format!("hostname={HOST}");

    let none = certcn(port, "", &q, certdir).await.unwrap();
    assert_eq!(none, Value::Nil, "no client certificate, no CN");

    let visi = format!("{q}&certname=visi@example.test");
    assert_eq!(
        certcn(port, "", &visi, certdir).await.unwrap(),
        Value::from("visi@example.test")
    );
    let root = format!("{q}&certname=root");
    assert_eq!(
        certcn(port, "", &root, certdir).await.unwrap(),
        Value::from("root")
    );
    // A user without a password presents user@HOSTNAME, found as Synapse finds it:
    // visi@cortex.example.test, then visi@example.test.
    assert_eq!(
        certcn(port, "visi@", &q, certdir).await.unwrap(),
        Value::from("visi@example.test")
    );
    let text = refusal(port, "nobody@", &q, certdir).await;
    assert!(
        text.contains("user certificate not found") && text.contains("nobody@cortex.example.test"),
        "{text}"
    );
}

#[tokio::test]
async fn sni_picks_the_host_certificate_and_clients_without_sni_get_the_first() {
    let pki = Pki::new("vertex");
    let (_daemon, port, tls) = serve(&pki, &format!("hostname={HOST},{HOST2}")).await;
    assert_eq!(tls.hostnames(), [HOST, HOST2]);
    let certdir = Some(pki.path());
    let (fp1, fp2) = (pki.host_hash(HOST), pki.host_hash(HOST2));

    // Each name verifies only against its own certificate, so these prove the choice.
    for name in [HOST, HOST2] {
        certcn(port, "", &format!("hostname={name}"), certdir)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    certcn(port, "", &format!("hostname={HOST2}&certhash={fp2}"), None)
        .await
        .unwrap();

    // By IP address rustls sends no SNI: the first name's certificate (which names the IP).
    certcn(port, "", "", certdir).await.unwrap();
    certcn(port, "", &format!("certhash={fp1}"), None)
        .await
        .unwrap();
    let text = refusal(port, "", &format!("certhash={fp2}"), None).await;
    assert!(text.contains("not the pinned certhash"), "{text}");
    // A name the listener does not serve also gets the first.
    certcn(
        port,
        "",
        &format!("hostname=other.example.test&certhash={fp1}"),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_server_certificate_is_checked_with_one_line_errors() {
    let pki = Pki::new("vertex");
    let (_daemon, port, _tls) = serve(&pki, &format!("hostname={HOST}")).await;

    // A certdir whose CA has another name.
    let acme = Pki::new("acme");
    let text = refusal(port, "", &format!("hostname={HOST}"), Some(acme.path())).await;
    assert!(
        text.contains("the server's certificate is not signed by any CA in")
            && text.contains(&acme.path().join("cas").display().to_string()),
        "{text}"
    );
    // A certdir whose CA has the same name but another key.
    let evil = Pki::new("vertex");
    let text = refusal(port, "", &format!("hostname={HOST}"), Some(evil.path())).await;
    assert!(
        text.contains("is not signed by") && text.contains("same name"),
        "{text}"
    );

    // A certificate for another host.
    let text = refusal(port, "", &format!("hostname={HOST2}"), Some(pki.path())).await;
    assert!(
        text.contains(&format!(
            "is not valid for {HOST2} (it names DNS:{HOST}, IP:127.0.0.1)"
        )),
        "{text}"
    );

    // Pinning skips the CA check but nothing gets past a wrong hash.
    let good = pki.host_hash(HOST);
    certcn(port, "", &format!("certhash={}", good.to_uppercase()), None)
        .await
        .unwrap();
    let wrong = "ab".repeat(32);
    let text = refusal(port, "", &format!("certhash={wrong}"), None).await;
    assert!(
        text.contains(&format!(
            "has SHA-256 {good}, not the pinned certhash {wrong}"
        )),
        "{text}"
    );

    // ssl:// to a plain TCP listener.
    let plain = Daemon::new();
    plain.share("*", Arc::new(WhoamiShare));
    let addr = plain
        .listen(&TeleUrl::parse("tcp://127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let plain_port: u16 = addr
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let text = refusal(plain_port, "", "", Some(pki.path())).await;
    assert!(text.contains("does it speak TLS"), "{text}");
}

#[tokio::test]
async fn a_server_certificate_without_subject_alt_names_passes_on_an_exact_common_name() {
    // As Synapse's client checks it: made here with rcgen, as easycert always adds names.
    let pki = Pki::new("vertex");
    let ca_pem = std::fs::read_to_string(pki.file(CertKind::Ca, "vertex", "crt")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(pki.file(CertKind::Ca, "vertex", "key")).unwrap(),
    )
    .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "legacy.example.test");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(
        pki.file(CertKind::Host, "legacy.example.test", "crt"),
        cert.pem(),
    )
    .unwrap();
    std::fs::write(
        pki.file(CertKind::Host, "legacy.example.test", "key"),
        key.serialize_pem(),
    )
    .unwrap();

    let (_daemon, port, _) = serve(&pki, "hostname=legacy.example.test").await;
    certcn(port, "", "hostname=legacy.example.test", Some(pki.path()))
        .await
        .unwrap();
    let text = refusal(port, "", "hostname=other.example.test", Some(pki.path())).await;
    assert!(
        text.contains("is not valid for other.example.test (it names nothing)"),
        "{text}"
    );
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    // Our listener refuses to load an expired certificate, so serve it with bare rustls.
    let pki = Pki::new("vertex");
    pki.expired(CertKind::Host, "old.example.test", "vertex");
    let pair = pki.dir.host_cert("old.example.test").unwrap();
    let config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pair.chain, pair.key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let _ = acceptor.accept(sock).await;
        }
    });
    let text = refusal(port, "", "hostname=old.example.test", Some(pki.path())).await;
    assert!(
        text.contains("the server's certificate expired on 2020-01-31T00:00:00Z"),
        "{text}"
    );
}

#[tokio::test]
async fn client_certificates_are_verified_and_ca_makes_them_required() {
    let pki = Pki::new("vertex");
    // A second trusted CA in the same certdir, and a user it signed.
    pki.issue(CertKind::Ca, "acme", None);
    pki.issue(CertKind::User, "acmeuser", Some("acme"));
    let certdir = Some(pki.path());

    // Without ca=: optional, but verified when presented.
    let (_d1, open_port, _) = serve(&pki, &format!("hostname={HOST}")).await;
    let q = format!("hostname={HOST}");
    assert_eq!(
        certcn(open_port, "", &format!("{q}&certname=acmeuser"), certdir)
            .await
            .unwrap(),
        Value::from("acmeuser")
    );
    // A client certificate from a CA the server does not have.
    let evil = Pki::new("vertex");
    std::fs::copy(
        pki.file(CertKind::Ca, "vertex", "crt"),
        evil.file(CertKind::Ca, "real", "crt"),
    )
    .unwrap();
    let text = refusal(
        open_port,
        "",
        &format!("{q}&certname=root"),
        Some(evil.path()),
    )
    .await;
    assert!(
        text.contains("the server refused our certificate"),
        "{text}"
    );
    // The listener keeps serving everyone else.
    certcn(open_port, "", &q, certdir).await.unwrap();

    // With ca=vertex: required, and only from that CA.
    let (_d2, strict_port, _) = serve(&pki, &format!("hostname={HOST}&ca=vertex")).await;
    let text = refusal(strict_port, "", &q, certdir).await;
    assert!(
        text.contains("the server requires a client certificate"),
        "{text}"
    );
    let text = refusal(strict_port, "", &format!("{q}&certname=acmeuser"), certdir).await;
    assert!(text.contains("refused our certificate"), "{text}");
    assert_eq!(
        certcn(
            strict_port,
            "",
            &format!("{q}&certname=visi@example.test"),
            certdir
        )
        .await
        .unwrap(),
        Value::from("visi@example.test")
    );
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_by_both_sides() {
    let pki = Pki::new("vertex");
    pki.expired(CertKind::User, "old@example.test", "vertex");
    let (_daemon, port, _) = serve(&pki, &format!("hostname={HOST}")).await;

    // Our client will not present it.
    let q = format!("hostname={HOST}&certname=old@example.test");
    let text = refusal(port, "", &q, Some(pki.path())).await;
    let crt = pki.file(CertKind::User, "old@example.test", "crt");
    assert!(
        text.contains(&format!(
            "{}: not trusted: expired on 2020-01-31T00:00:00Z",
            crt.display()
        )),
        "{text}"
    );

    // A client that does present it (bare rustls) is refused by the listener.
    let pair = pki.dir.user_cert("old@example.test").unwrap();
    let roots = Arc::new(pki.dir.ca_roots().unwrap());
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(pair.chain, pair.key)
        .unwrap();
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let refused = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, sock)
            .await?;
        // In TLS 1.3 the server's verdict arrives after the client's handshake.
        let mut byte = [0u8; 1];
        tls.read(&mut byte).await
    };
    let err = refused
        .await
        .expect_err("an expired client certificate is refused");
    assert!(err.to_string().contains("CertificateExpired"), "{err}");
    certcn(port, "", &format!("hostname={HOST}"), Some(pki.path()))
        .await
        .unwrap();
}

#[tokio::test]
async fn reload_swaps_certificates_for_new_connections_only() {
    let pki = Pki::new("vertex");
    let (_daemon, port, tls) = serve(&pki, &format!("hostname={HOST}")).await;
    let old = pki.host_hash(HOST);
    let before = open(port, "", &format!("certhash={old}"), None)
        .await
        .unwrap();
    before.call("certcn", vec![]).await.unwrap();

    pki.reissue_host(HOST, "vertex");
    let new = pki.host_hash(HOST);
    assert_ne!(old, new);
    // Until reloaded, the old certificate is served.
    certcn(port, "", &format!("certhash={old}"), None)
        .await
        .unwrap();
    tls.reload(&pki.dir).unwrap();
    certcn(port, "", &format!("certhash={new}"), None)
        .await
        .unwrap();
    let text = refusal(port, "", &format!("certhash={old}"), None).await;
    assert!(text.contains("not the pinned certhash"), "{text}");
    // The connection made before the reload carries on.
    before.call("certcn", vec![]).await.unwrap();

    // A broken certificate is refused and the one in use stays.
    let crt = pki.file(CertKind::Host, HOST, "crt");
    truncate(&crt);
    let err = tls.reload(&pki.dir).unwrap_err().to_string();
    assert!(
        err.starts_with(&crt.display().to_string()) && err.contains("truncated"),
        "{err}"
    );
    certcn(port, "", &format!("certhash={new}"), None)
        .await
        .unwrap();
}

#[test]
fn bad_files_and_urls_are_one_line_errors_naming_what_and_where() {
    let pki = Pki::new("vertex");
    let load = |query: &str| {
        let url = TeleUrl::parse(&format!("ssl://127.0.0.1:0/?{query}")).unwrap();
        let e = TlsServer::load(&url, &pki.dir)
            .err()
            .expect("refused")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let host_crt = |name: &str| pki.file(CertKind::Host, name, "crt").display().to_string();

    let e = load("hostname=nope.example.test");
    assert_eq!(
        e,
        format!("certificate not found: {}", host_crt("nope.example.test"))
    );
    let e = load("hostname=");
    assert!(e.contains("hostname= names no host"), "{e}");
    let e = load(&format!("hostname={HOST}&ca=nope"));
    assert!(
        e.contains(&pki.file(CertKind::Ca, "nope", "crt").display().to_string()),
        "{e}"
    );

    pki.expired(CertKind::Host, "old.example.test", "vertex");
    let e = load("hostname=old.example.test");
    assert_eq!(
        e,
        format!(
            "{}: not trusted: expired on 2020-01-31T00:00:00Z",
            host_crt("old.example.test")
        )
    );

    // A key that does not belong to its certificate.
    std::fs::copy(
        pki.file(CertKind::Host, HOST2, "key"),
        pki.file(CertKind::Host, HOST, "key"),
    )
    .unwrap();
    let e = load(&format!("hostname={HOST}"));
    assert!(
        e.contains(&pki.file(CertKind::Host, HOST, "key").display().to_string())
            && e.contains("key does not match certificate"),
        "{e}"
    );
    truncate(&pki.file(CertKind::Host, HOST2, "crt"));
    let e = load(&format!("hostname={HOST2}"));
    assert!(
        e.starts_with(&host_crt(HOST2)) && e.contains("truncated"),
        "{e}"
    );

    // The client side.
    let client = |url: &str, certdir: Option<&Path>| {
        let url = TeleUrl::parse(url).unwrap();
        let e = client_options(&url, certdir)
            .err()
            .expect("refused")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let missing = pki.tmp.path().join("missing");
    let e = client("ssl://127.0.0.1:1/", Some(&missing));
    assert_eq!(e, format!("certdir not found: {}", missing.display()));
    let e = client("ssl://127.0.0.1:1/?certname=ghost", Some(pki.path()));
    assert_eq!(
        e,
        format!(
            "certificate not found: {}",
            pki.file(CertKind::User, "ghost", "crt").display()
        )
    );
    truncate(&pki.file(CertKind::User, "root", "key"));
    let e = client("ssl://127.0.0.1:1/?certname=root", Some(pki.path()));
    assert!(
        e.starts_with(
            &pki.file(CertKind::User, "root", "key")
                .display()
                .to_string()
        ),
        "{e}"
    );
    let e = client("ssl://127.0.0.1:1/?certhash=12", None);
    assert!(e.contains("certhash must be the 64 hex digits"), "{e}");
    let e = client("ssl://127.0.0.1:1/?hostname=bad_name!", Some(pki.path()));
    assert!(e.contains("neither a DNS name nor an IP address"), "{e}");
    let empty = CertDir::create(pki.tmp.path().join("empty")).unwrap();
    let e = client("ssl://127.0.0.1:1/", Some(empty.path()));
    assert!(e.starts_with("no CA certificates in"), "{e}");
}

#[tokio::test]
async fn certificates_made_by_python_easycert_serve_and_log_in() {
    let pki = Pki::python_made();
    let (_daemon, port, _) = serve(&pki, "hostname=py.example.test").await;
    let certdir = Some(pki.path());
    for query in [
        "hostname=py.example.test&certname=pyuser@example",
        "hostname=localhost&certname=pyuser@example",
        "certname=pyuser@example",
    ] {
        assert_eq!(
            certcn(port, "", query, certdir)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}")),
            Value::from("pyuser@example"),
            "{query}"
        );
    }
}

#[tokio::test]
async fn tls_1_2_is_accepted_and_1_3_preferred() {
    let pki = Pki::new("vertex");
    let (_daemon, port, _) = serve(&pki, &format!("hostname={HOST}")).await;
    let roots = Arc::new(pki.dir.ca_roots().unwrap());
    for (versions, want) in [
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &[&rustls::version::TLS13, &rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, sock)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: syn cell and syn call

/// `syn cell` in a new directory serving `ssl://127.0.0.1:PORT/?QUERY` from `certdir`.
fn ssl_cell(query: &str, certdir: &Path) -> (SynService, u16, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let listen = format!("ssl://127.0.0.1:{port}/?{query}");
    let svc = SynService::start_in(
        "cell",
        &tmp.path().join("cell"),
        &[
            "--telepath",
            &listen,
            "--certdir",
            certdir.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    (svc, port, tmp)
}

/// `syn call --certdir DIR URL METHOD ARGS...`.
fn call(certdir: &Path, url: &str, meth: &str, args: &[&str]) -> common::RunOut {
    let mut all = vec!["call", "--certdir", certdir.to_str().unwrap(), url, meth];
    all.extend_from_slice(args);
    syn(&all)
}

/// The single line of a failed command's stderr.
fn failure_line(out: &common::RunOut) -> String {
    assert!(!out.ok(), "should fail: {}", out.describe());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", out.describe());
    lines[0].to_owned()
}

#[test]
fn syn_cell_logs_in_by_password_and_by_client_certificate() {
    let pki = Pki::new("vertex");
    pki.issue(CertKind::User, "nobody@example.test", Some("vertex"));
    let (svc, port, _tmp) = ssl_cell(&format!("hostname={HOST}"), pki.path());
    let out = syn(&["call", &svc.url(""), "addUser", "visi", "pw"]);
    assert!(out.ok(), "{}", out.describe());
    let visi_iden = out.json()["iden"].as_str().unwrap().to_owned();

    let base = format!("127.0.0.1:{port}/?hostname={HOST}");
    let user_of = |url: &str| {
        let out = call(pki.path(), url, "getCellUser", &[]);
        assert!(out.ok(), "{url}: {}", out.describe());
        out.json()["name"].as_str().unwrap().to_owned()
    };
    assert_eq!(user_of(&format!("ssl://root:secret@{base}")), "root");
    assert_eq!(user_of(&format!("ssl://visi:pw@{base}")), "visi");
    // Client certificates: CN `root`, and `visi@example.test` for the user `visi`.
    assert_eq!(user_of(&format!("ssl://{base}&certname=root")), "root");
    assert_eq!(
        user_of(&format!("ssl://{base}&certname=visi@example.test")),
        "visi"
    );
    assert_eq!(user_of(&format!("ssl://visi@{base}")), "visi");

    // A wrong password over TLS is still refused.
    let line = failure_line(&call(
        pki.path(),
        &format!("ssl://visi:nope@{base}"),
        "getCellUser",
        &[],
    ));
    assert!(line.contains("AuthDeny"), "{line}");
    // A certificate for a user the cell does not have.
    let line = failure_line(&call(
        pki.path(),
        &format!("ssl://{base}&certname=nobody@example.test"),
        "getCellUser",
        &[],
    ));
    assert!(
        line.contains("AuthDeny")
            && line.contains("TLS client cert user not found: nobody@example.test"),
        "{line}"
    );
    // A locked user.
    let out = syn(&["call", &svc.url(""), "setUserLocked", &visi_iden, "true"]);
    assert!(out.ok(), "{}", out.describe());
    let line = failure_line(&call(
        pki.path(),
        &format!("ssl://{base}&certname=visi@example.test"),
        "getCellUser",
        &[],
    ));
    assert!(
        line.contains("AuthDeny") && line.contains("(visi) is locked"),
        "{line}"
    );

    // A client certificate from another CA: refused in one line on both sides, and the
    // server keeps serving.
    let evil = Pki::new("acme");
    std::fs::copy(
        pki.file(CertKind::Ca, "vertex", "crt"),
        evil.file(CertKind::Ca, "vertex", "crt"),
    )
    .unwrap();
    let line = failure_line(&call(
        evil.path(),
        &format!("ssl://{base}&certname=root"),
        "getCellUser",
        &[],
    ));
    assert!(
        line.contains("the server refused our certificate"),
        "{line}"
    );
    let cas = pki.path().join("cas");
    let logged = format!(
        "the client's certificate is not signed by any CA in {}",
        cas.display()
    );
    wait_log(&svc, &logged);
    assert_eq!(user_of(&format!("ssl://root:secret@{base}")), "root");
}

/// Wait (bounded) until the service's log contains `needle`.
fn wait_log(svc: &SynService, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !svc.daemon.stderr_log().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            svc.daemon.stderr_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn syn_call_says_what_is_wrong_in_one_line() {
    let pki = Pki::new("vertex");
    let (_svc, port, _tmp) = ssl_cell(&format!("hostname={HOST}"), pki.path());
    let acme = Pki::new("acme");
    let cases: [(&Path, String, &str); 4] = [
        (
            acme.path(),
            format!("ssl://root:secret@127.0.0.1:{port}/?hostname={HOST}"),
            "the server's certificate is not signed by any CA in",
        ),
        (
            pki.path(),
            format!("ssl://root:secret@127.0.0.1:{port}/?hostname={HOST2}"),
            "is not valid for axon.example.test",
        ),
        (
            Path::new("/nonexistent/certs"),
            format!("ssl://root:secret@127.0.0.1:{port}/"),
            "certdir not found: /nonexistent/certs",
        ),
        (
            pki.path(),
            format!(
                "ssl://root:secret@127.0.0.1:{port}/?certhash={}",
                "0".repeat(64)
            ),
            "not the pinned certhash",
        ),
    ];
    for (certdir, url, want) in cases {
        let out = call(certdir, &url, "getCellIden", &[]);
        assert_eq!(out.code(), Some(1), "{}", out.describe());
        let line = failure_line(&out);
        assert!(
            line.starts_with("syn call: ") && line.contains(want),
            "{url}: {line}"
        );
    }
}

#[test]
fn startup_refuses_bad_certificates_in_one_line() {
    let pki = Pki::new("vertex");
    pki.expired(CertKind::Host, "old.example.test", "vertex");
    pki.issue(CertKind::Host, "cut.example.test", Some("vertex"));
    truncate(&pki.file(CertKind::Host, "cut.example.test", "crt"));
    pki.issue(CertKind::Host, "swap.example.test", Some("vertex"));
    std::fs::copy(
        pki.file(CertKind::Host, HOST2, "key"),
        pki.file(CertKind::Host, "swap.example.test", "key"),
    )
    .unwrap();
    let crt = |name: &str| pki.file(CertKind::Host, name, "crt").display().to_string();
    let cases = [
        (
            "hostname=old.example.test".to_owned(),
            pki.path().to_path_buf(),
            format!(
                "{}: not trusted: expired on 2020-01-31T00:00:00Z",
                crt("old.example.test")
            ),
        ),
        (
            "hostname=gone.example.test".to_owned(),
            pki.path().to_path_buf(),
            format!("certificate not found: {}", crt("gone.example.test")),
        ),
        (
            "hostname=cut.example.test".to_owned(),
            pki.path().to_path_buf(),
            format!("{}: bad PEM", crt("cut.example.test")),
        ),
        (
            "hostname=swap.example.test".to_owned(),
            pki.path().to_path_buf(),
            "key does not match certificate".to_owned(),
        ),
        (
            format!("hostname={HOST}&ca=nope"),
            pki.path().to_path_buf(),
            pki.file(CertKind::Ca, "nope", "crt").display().to_string(),
        ),
        (
            format!("hostname={HOST}"),
            pki.tmp.path().join("missing"),
            format!(
                "certdir not found: {}",
                pki.tmp.path().join("missing").display()
            ),
        ),
    ];
    for (query, certdir, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let out = syn(&[
            "cell",
            tmp.path().join("cell").to_str().unwrap(),
            "--telepath",
            &format!("ssl://127.0.0.1:0/?{query}"),
            "--certdir",
            certdir.to_str().unwrap(),
        ]);
        assert_eq!(out.code(), Some(1), "{query}: {}", out.describe());
        let line = failure_line(&out);
        assert!(
            line.starts_with("syn cell: serving ssl://127.0.0.1:0/") && line.contains(&want),
            "{query}: {line}"
        );
    }
}

#[test]
fn the_certdir_comes_from_syn_certdir_then_the_service_dir() {
    let pki = Pki::new("vertex");
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();
    // A cell on `dir` with `env` serves TLS with the certificate it found.
    let serves = |dir: &Path, env: &[(&str, &str)]| {
        let port = common::free_port();
        let listen = format!("ssl://127.0.0.1:{port}/?hostname={HOST}");
        let svc = SynService::start_in("cell", dir, &["--telepath", &listen], env).unwrap();
        let out = call(
            pki.path(),
            &format!("ssl://root:secret@127.0.0.1:{port}/?hostname={HOST}"),
            "getCellIden",
            &[],
        );
        assert!(out.ok(), "{}", out.describe());
        drop(svc);
    };
    // $SYN_CERTDIR.
    let tmp = tempfile::tempdir().unwrap();
    serves(
        &tmp.path().join("cell"),
        &[("SYN_CERTDIR", pki.path_str()), ("HOME", home_str)],
    );

    // DIR/certs.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cell");
    common::copy_tree(pki.path(), &dir.join("certs")).unwrap();
    serves(&dir, &[("HOME", home_str)]);

    // Neither: every place looked is named.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cell");
    let mut cmd = std::process::Command::new(syn_bin());
    cmd.args([
        "cell",
        dir.to_str().unwrap(),
        "--telepath",
        "ssl://127.0.0.1:0/",
    ])
    .env("HOME", home_str)
    .env_remove("SYN_CERTDIR")
    .env_remove("SYN_CERT_DIR");
    let out = common::run_bounded(cmd, Duration::from_secs(60)).unwrap();
    let line = failure_line(&out);
    assert!(
        line.contains(&format!(
            "certdir not found: {}, {}",
            dir.join("certs").display(),
            home.path().join(".syn/certs").display()
        )),
        "{line}"
    );
}

#[test]
fn sighup_reloads_certificates_without_dropping_connections() {
    let pki = Pki::new("vertex");
    let (svc, port, _tmp) = ssl_cell(&format!("hostname={HOST}"), pki.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let old = pki.host_hash(HOST);
    let before = rt
        .block_on(open(port, "root:secret@", &format!("certhash={old}"), None))
        .unwrap();
    let iden = rt.block_on(before.call("getCellIden", vec![])).unwrap();

    pki.reissue_host(HOST, "vertex");
    let new = pki.host_hash(HOST);
    svc.signal(Signal::SIGHUP);
    svc.notify
        .wait_for("serving (reloaded)", Duration::from_secs(30))
        .unwrap();
    wait_log(&svc, "TLS certificates reloaded");

    let pinned = |hash: &str| {
        call(
            pki.path(),
            &format!("ssl://root:secret@127.0.0.1:{port}/?certhash={hash}"),
            "getCellIden",
            &[],
        )
    };
    assert!(pinned(&new).ok(), "{}", pinned(&new).describe());
    assert!(failure_line(&pinned(&old)).contains("not the pinned certhash"));
    assert_eq!(
        rt.block_on(before.call("getCellIden", vec![])).unwrap(),
        iden
    );

    // A broken certificate at reload: logged, and the one in use stays.
    truncate(&pki.file(CertKind::Host, HOST, "crt"));
    svc.signal(Signal::SIGHUP);
    wait_log(&svc, "keeping the TLS certificates in use");
    assert!(pinned(&new).ok(), "{}", pinned(&new).describe());
    assert_eq!(
        rt.block_on(before.call("getCellIden", vec![])).unwrap(),
        iden
    );
}

// ---------------------------------------------------------------------------------------------
// Interop with the real Python Synapse 2.256

#[test]
fn python_client_reaches_syn_cell_over_ssl_by_password_and_certificate() {
    let Some(py) = syn2_python() else { return };
    let pki = Pki::new("vertex");
    let (svc, port, _tmp) = ssl_cell(&format!("hostname={HOST}"), pki.path());
    let out = syn(&["call", &svc.url(""), "addUser", "visi", "pw"]);
    assert!(out.ok(), "{}", out.describe());

    let base = format!("127.0.0.1:{port}/?hostname={HOST}");
    for (url, want) in [
        (format!("ssl://root:secret@{base}"), "root"),
        (format!("ssl://{base}&certname=visi@example.test"), "visi"),
        (format!("ssl://{base}&certname=root"), "root"),
        // Python's client picks visi@example.test for visi@cortex.example.test itself.
        (format!("ssl://visi@{base}"), "visi"),
    ] {
        let out = run_py(
            &py,
            "tele.py",
            &[&url, "call", "getCellUser", "--certdir", pki.path_str()],
        );
        assert!(out.ok(), "{url}: {}", out.describe());
        assert_eq!(out.json()["name"], serde_json::json!(want), "{url}");
    }
    // The Python client refuses a server its certdir's CAs did not sign.
    let acme = Pki::new("acme");
    let out = run_py(
        &py,
        "tele.py",
        &[
            &format!("ssl://root:secret@{base}"),
            "call",
            "getCellIden",
            "--certdir",
            acme.path_str(),
        ],
    );
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stdout.contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        out.describe()
    );
}

#[test]
fn syn_call_reaches_a_python_cortex_serving_ssl_with_a_syn_easycert_certificate() {
    let pki = Pki::new("vertex");
    let Some(core) = PyService::cortex_ssl(pki.path(), HOST) else {
        return;
    };
    let url = core.url();
    let out = call(pki.path(), &url, "getCellInfo", &[]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json()["cell"]["type"], serde_json::json!("cortex"));
    let iden = out.json()["cell"]["iden"].clone();

    // Pinned, with no CA at hand.
    let pinned = format!(
        "ssl://root:secret@127.0.0.1:{}/?certhash={}",
        core.port(),
        pki.host_hash(HOST)
    );
    let out = syn(&["call", &pinned, "getCellIden"]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json(), iden);

    // The wrong CA, and the wrong name.
    let acme = Pki::new("acme");
    let line = failure_line(&call(acme.path(), &url, "getCellIden", &[]));
    assert!(line.contains("is not signed by any CA in"), "{line}");
    let wrong = format!(
        "ssl://root:secret@127.0.0.1:{}/?hostname={HOST2}",
        core.port()
    );
    let line = failure_line(&call(pki.path(), &wrong, "getCellIden", &[]));
    assert!(
        line.contains("is not valid for axon.example.test"),
        "{line}"
    );

    // The Python client reaches it too, through the same certdir.
    let out = core.tele(&["call", "getCellIden"]);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(out.json(), iden);
}
