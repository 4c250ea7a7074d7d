//! `syn easycert` end to end: the built binary on temporary certdirs, plus the library API
//! the TLS code will use (webpki chain checks, a mutual-TLS handshake, Python interop).

use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use syn::certs::{self, CertDir, CertError, CertInfo, San};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::FromDer;

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run_env(args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syn"));
    cmd.arg("easycert")
        .args(args)
        .env_remove("SYN_CERTDIR")
        .env_remove("SYN_CERT_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run syn");
    Run {
        code: out.status.code().expect("exit code"),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `syn easycert --certdir DIR ARGS...`, which must succeed.
fn ok(dir: &Path, args: &[&str]) -> String {
    let r = easycert(dir, args);
    assert_eq!(r.code, 0, "easycert {args:?} failed: {}{}", r.out, r.err);
    r.out
}

fn easycert(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--certdir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run_env(&all, &[])
}

fn info(path: &Path) -> CertInfo {
    CertInfo::from_der(&certs::load_certs(path).unwrap()[0]).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A certdir with CA `vertex`, host `cortex.vertex.link` and user `visi@vertex`.
fn standard_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--ca", "vertex"]);
    ok(
        d,
        &[
            "--server",
            "cortex.vertex.link",
            "--signas",
            "vertex",
            "--server-sans",
            "IP:127.0.0.1,DNS:localhost",
        ],
    );
    ok(d, &["--signas", "vertex", "visi@vertex"]);
    tmp
}

fn days_between(i: &CertInfo) -> i64 {
    (i.not_after - i.not_before).whole_days()
}

#[test]
fn ca_host_and_user_print_synapse_lines_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = |rel: &str| d.join(rel).display().to_string();

    assert_eq!(
        ok(d, &["--ca", "vertex"]),
        format!(
            "key saved: {}\ncert saved: {}\n",
            p("cas/vertex.key"),
            p("cas/vertex.crt")
        )
    );
    assert_eq!(
        ok(d, &["--server", "cortex.vertex.link", "--signas", "vertex"]),
        format!(
            "key saved: {}\ncert saved: {}\n",
            p("hosts/cortex.vertex.link.key"),
            p("hosts/cortex.vertex.link.crt")
        )
    );
    // Synapse prints a user's cert before its key.
    assert_eq!(
        ok(d, &["visi@vertex", "--signas", "vertex"]),
        format!(
            "cert saved: {}\nkey saved: {}\n",
            p("users/visi@vertex.crt"),
            p("users/visi@vertex.key")
        )
    );

    for key in [
        "cas/vertex.key",
        "hosts/cortex.vertex.link.key",
        "users/visi@vertex.key",
    ] {
        assert_eq!(mode(&d.join(key)), 0o600, "{key}");
        assert!(
            fs::read_to_string(d.join(key))
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }
    for crt in [
        "cas/vertex.crt",
        "hosts/cortex.vertex.link.crt",
        "users/visi@vertex.crt",
    ] {
        assert_eq!(
            mode(&d.join(crt)) & 0o133,
            0,
            "{crt} must not be writable by others"
        );
    }

    let ca = info(&d.join("cas/vertex.crt"));
    assert!(ca.is_ca && ca.self_issued);
    assert_eq!(ca.subject, "CN=vertex");
    let host = info(&d.join("hosts/cortex.vertex.link.crt"));
    assert_eq!(host.issuer, "CN=vertex");
    assert_eq!(host.subject, "CN=cortex.vertex.link");
    assert!(host.server_auth && !host.client_auth && !host.is_ca);
    assert_eq!(host.sans, vec![San::Dns("cortex.vertex.link".into())]);
    let user = info(&d.join("users/visi@vertex.crt"));
    assert_eq!(user.issuer, "CN=vertex");
    assert!(user.client_auth && !user.server_auth && !user.is_ca);
    assert!(user.sans.is_empty());
    assert_eq!(user.serial.len(), 32, "a 128-bit serial");
    assert_ne!(user.serial, host.serial);
}

#[test]
fn without_signas_certificates_are_self_signed_as_in_synapse() {
    let tmp = tempfile::tempdir().unwrap();
    ok(tmp.path(), &["--server", "solo.example"]);
    ok(tmp.path(), &["solo@example"]);
    let host = info(&tmp.path().join("hosts/solo.example.crt"));
    assert!(host.self_issued && !host.is_ca && host.server_auth);
    assert_eq!(host.issuer, "CN=solo.example");
    let user = info(&tmp.path().join("users/solo@example.crt"));
    assert!(user.self_issued && user.client_auth);
}

#[test]
fn the_default_certdir_is_syn_certdir_then_home() {
    let home = tempfile::tempdir().unwrap();
    let r = run_env(&["--ca", "homeca"], &[("HOME", home.path())]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(home.path().join(".syn/certs/cas/homeca.crt").is_file());
    for sub in ["cas", "hosts", "users"] {
        assert!(home.path().join(".syn/certs").join(sub).is_dir());
    }
    let other = tempfile::tempdir().unwrap();
    let r = run_env(
        &["--ca", "envca"],
        &[("HOME", home.path()), ("SYN_CERTDIR", other.path())],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(other.path().join("cas/envca.crt").is_file());
    assert!(!home.path().join(".syn/certs/cas/envca.crt").exists());
}

#[test]
fn existing_files_are_never_overwritten_and_nothing_is_left_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--ca", "vertex"]);
    let before = fs::read(d.join("cas/vertex.key")).unwrap();
    let r = easycert(d, &["--ca", "vertex"]);
    assert_eq!(r.code, 3);
    assert_eq!(
        r.err,
        format!(
            "syn easycert: file exists: {}\n",
            d.join("cas/vertex.key").display()
        )
    );
    assert_eq!(r.out, "");
    assert_eq!(fs::read(d.join("cas/vertex.key")).unwrap(), before);

    // The cert's name is taken: the key must not be written either.
    fs::write(d.join("hosts/h.example.crt"), "placeholder").unwrap();
    let r = easycert(d, &["--server", "h.example", "--signas", "vertex"]);
    assert_eq!(r.code, 3, "{}", r.err);
    assert!(r.err.contains("file exists: ") && r.err.contains("hosts/h.example.crt"));
    assert_eq!(file_names(&d.join("hosts")), vec!["h.example.crt"]);
    assert_eq!(
        fs::read_to_string(d.join("hosts/h.example.crt")).unwrap(),
        "placeholder"
    );

    // A failed signing step (unknown CA) writes nothing.
    let r = easycert(d, &["--server", "h2.example", "--signas", "nosuchca"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!(
            "syn easycert: certificate not found: {}\n",
            d.join("cas/nosuchca.crt").display()
        )
    );
    assert_eq!(file_names(&d.join("hosts")), vec!["h.example.crt"]);
}

#[test]
fn server_sans_take_synapse_syntax_and_plain_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--ca", "vertex"]);
    ok(
        d,
        &[
            "--server",
            "a.example",
            "--signas",
            "vertex",
            "--server-sans",
            "DNS:b.example,IP:10.1.2.3",
        ],
    );
    ok(
        d,
        &[
            "--server",
            "c.example",
            "--signas",
            "vertex",
            "--server-sans",
            "d.example, 192.0.2.7,::1",
        ],
    );
    ok(d, &["--server", "127.0.0.2", "--signas", "vertex"]);
    let ip = |s: &str| San::Ip(s.parse().unwrap());
    let dns = |s: &str| San::Dns(s.into());
    assert_eq!(
        info(&d.join("hosts/a.example.crt")).sans,
        vec![dns("a.example"), dns("b.example"), ip("10.1.2.3")]
    );
    assert_eq!(
        info(&d.join("hosts/c.example.crt")).sans,
        vec![
            dns("c.example"),
            dns("d.example"),
            ip("192.0.2.7"),
            ip("::1")
        ]
    );
    assert_eq!(
        info(&d.join("hosts/127.0.0.2.crt")).sans,
        vec![ip("127.0.0.2")]
    );

    let r = easycert(
        d,
        &["--server", "e.example", "--server-sans", "IP:999.1.1.1"],
    );
    assert_eq!(
        (r.code, r.err.as_str()),
        (2, "syn easycert: bad IP address in SANs: 999.1.1.1\n")
    );
    let r = easycert(d, &["user@x", "--server-sans", "a.example"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (2, "syn easycert: --server-sans only applies to --server\n")
    );
}

#[test]
fn days_set_validity_with_kind_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--ca", "vertex"]);
    ok(d, &["--server", "h.example", "--signas", "vertex"]);
    ok(d, &["u@x", "--signas", "vertex", "--days", "30"]);
    assert_eq!(days_between(&info(&d.join("cas/vertex.crt"))), 3650);
    assert_eq!(days_between(&info(&d.join("hosts/h.example.crt"))), 730);
    let user = info(&d.join("users/u@x.crt"));
    assert_eq!(days_between(&user), 30);
    let now = time::OffsetDateTime::now_utc();
    assert!(
        (user.not_before - now).whole_seconds().abs() < 120,
        "starts now"
    );
    let r = easycert(d, &["v@x", "--days", "0"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (2, "syn easycert: --days must be at least 1\n")
    );
}

/// The modulus size of the RSA public key in a certificate (panics on any other key).
fn rsa_bits(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> usize {
    match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(k) => {
            assert_eq!(k.try_exponent().unwrap(), 65537);
            k.key_size()
        }
        other => panic!("not an RSA key: {other:?}"),
    }
}

fn cert_rsa_bits(path: &Path) -> usize {
    let der = certs::load_certs(path).unwrap().remove(0);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    rsa_bits(cert.public_key())
}

const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

#[tokio::test]
async fn rsa4096_keys_are_real_sign_serve_and_load_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--key-type", "rsa4096", "--ca", "rsaca"]);
    ok(
        d,
        &[
            "--key-type",
            "rsa4096",
            "--server",
            "rsa.example.test",
            "--signas",
            "rsaca",
            "--server-sans",
            "IP:127.0.0.1",
        ],
    );
    // An ECDSA user under the RSA CA.
    ok(d, &["rsauser@example", "--signas", "rsaca"]);
    for name in ["cas/rsaca", "hosts/rsa.example.test"] {
        let crt = d.join(format!("{name}.crt"));
        let key = d.join(format!("{name}.key"));
        assert_eq!(cert_rsa_bits(&crt), 4096, "{name}");
        assert_eq!(mode(&key), 0o600, "{name}");
        assert!(matches!(
            certs::load_key(&key).unwrap(),
            rustls_pki_types::PrivateKeyDer::Pkcs8(_)
        ));
        let der = certs::load_certs(&crt).unwrap().remove(0);
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            SHA256_WITH_RSA,
            "{name} is signed by the RSA CA"
        );
        if name.starts_with("hosts/") {
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature() && ku.key_encipherment(), "{ku:?}");
        }
    }
    let dir = CertDir::open(d).unwrap();
    dir.verify_host("rsa.example.test", "rsa.example.test")
        .unwrap();
    dir.verify_host("rsa.example.test", "127.0.0.1").unwrap();
    dir.verify_user("rsauser@example").unwrap();

    // rustls (ring) serves with the RSA host key on loopback.
    let (server, client) = handshake(
        &dir,
        "rsa.example.test",
        &dir,
        "rsauser@example",
        "rsa.example.test",
    )
    .await;
    assert_eq!(server.unwrap(), "rsauser@example");
    assert_eq!(client.unwrap(), "hello rsauser@example");

    // Never overwritten.
    let before = fs::read(d.join("cas/rsaca.key")).unwrap();
    let r = easycert(d, &["--key-type", "rsa4096", "--ca", "rsaca"]);
    assert_eq!(r.code, 3, "{}", r.err);
    assert_eq!(fs::read(d.join("cas/rsaca.key")).unwrap(), before);
    assert_eq!(file_names(&d.join("cas")), vec!["rsaca.crt", "rsaca.key"]);

    // A CSR with an RSA 4096 key, self-signed with SHA-256.
    ok(
        d,
        &["--csr", "--key-type", "rsa4096", "--server", "ext.example"],
    );
    assert_eq!(mode(&d.join("hosts/ext.example.key")), 0o600);
    let der = certs::load_csr(&d.join("hosts/ext.example.csr")).unwrap();
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    csr.verify_signature().unwrap();
    assert_eq!(rsa_bits(&csr.certification_request_info.subject_pki), 4096);
    assert_eq!(
        csr.signature_algorithm.algorithm.to_id_string(),
        SHA256_WITH_RSA
    );
    // The default and the explicit ECDSA choice still make EC keys.
    ok(d, &["--key-type", "ecdsa-p256", "--ca", "ecca"]);
    ok(d, &["--ca", "ecca2"]);
    for name in ["ecca", "ecca2"] {
        let der = certs::load_certs(&d.join(format!("cas/{name}.crt")))
            .unwrap()
            .remove(0);
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        assert!(matches!(
            cert.public_key().parsed().unwrap(),
            x509_parser::public_key::PublicKey::EC(_)
        ));
    }
}

#[test]
fn csr_mode_writes_a_key_and_a_csr() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = ok(
        d,
        &[
            "--csr",
            "--server",
            "ext.example",
            "--server-sans",
            "IP:10.0.0.5",
        ],
    );
    assert_eq!(
        out,
        format!(
            "key saved: {}\ncsr saved: {}\n",
            d.join("hosts/ext.example.key").display(),
            d.join("hosts/ext.example.csr").display()
        )
    );
    assert_eq!(mode(&d.join("hosts/ext.example.key")), 0o600);
    let der = certs::load_csr(&d.join("hosts/ext.example.csr")).unwrap();
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    csr.verify_signature().unwrap();
    assert_eq!(
        csr.certification_request_info.subject.to_string(),
        "CN=ext.example"
    );

    ok(d, &["--csr", "someone@example"]);
    assert!(d.join("users/someone@example.csr").is_file());
    let r = easycert(d, &["--csr", "--ca", "x"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (
            2,
            "syn easycert: a CSR for a CA certificate is not supported\n"
        )
    );
}

/// A CSR, made elsewhere, that asks for far more than it should get.
fn greedy_csr(dir: &Path, cn: &str) -> PathBuf {
    let mut p = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let path = dir.join(format!("{cn}.csr"));
    fs::write(&path, p.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
    path
}

#[test]
fn signing_a_csr_that_asks_to_be_a_ca_gives_a_plain_cert_with_our_validity() {
    let tmp = standard_dir();
    let d = tmp.path();
    let outside = tempfile::tempdir().unwrap();
    let csr = greedy_csr(outside.path(), "greedy@vertex");

    let r = easycert(
        d,
        &["--sign-csr", csr.to_str().unwrap(), "--signas", "vertex"],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        format!(
            "cert saved: {}\n",
            d.join("users/greedy@vertex.crt").display()
        )
    );
    assert!(r.err.contains(&format!(
        "syn easycert: warning: {}: the CSR asks to be a CA; signing it as a user certificate that is not a CA",
        csr.display()
    )), "{}", r.err);
    assert!(r.err.contains(&format!(
        "syn easycert: warning: {}: ignoring what the CSR asks for (keyUsage, names DNS:evil.example, extendedKeyUsage); \
         the user certificate gets syn's usages, names and validity",
        csr.display()
    )), "{}", r.err);
    assert_eq!(r.err.lines().count(), 2, "{}", r.err);
    let user = info(&d.join("users/greedy@vertex.crt"));
    assert!(!user.is_ca && user.client_auth && !user.server_auth);
    assert!(user.sans.is_empty());
    assert_eq!(user.issuer, "CN=vertex");
    assert_eq!(days_between(&user), 730);
    assert_eq!(user.serial.len(), 32);
    assert!(
        !d.join("users/greedy@vertex.key").exists(),
        "signing a CSR writes no key"
    );
    // rcgen would have copied CA:TRUE; webpki must accept it as a client cert of vertex.
    CertDir::open(d)
        .unwrap()
        .verify_user("greedy@vertex")
        .unwrap();
    let der = certs::load_certs(&d.join("users/greedy@vertex.crt")).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
    let bc = parsed
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(!bc.value.ca);

    // Synapse's form: --sign-csr as a flag and the CSR as NAME; --server makes a host cert.
    let csr2 = greedy_csr(outside.path(), "svc.vertex.link");
    let r = easycert(
        d,
        &[
            "--sign-csr",
            "--signas",
            "vertex",
            "--server",
            "--days",
            "90",
            csr2.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let host = info(&d.join("hosts/svc.vertex.link.crt"));
    assert!(!host.is_ca && host.server_auth && !host.client_auth);
    assert_eq!(host.sans, vec![San::Dns("svc.vertex.link".into())]);
    assert_eq!(days_between(&host), 90);
    CertDir::open(d)
        .unwrap()
        .verify_host("svc.vertex.link", "svc.vertex.link")
        .unwrap();

    let r = easycert(d, &["--sign-csr", csr.to_str().unwrap()]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (2, "syn easycert: --sign-csr requires --signas\n")
    );
    let missing = outside.path().join("nope.csr");
    let r = easycert(
        d,
        &[
            "--sign-csr",
            missing.to_str().unwrap(),
            "--signas",
            "vertex",
        ],
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!("syn easycert: csr not found: {}\n", missing.display())
    );
}

#[test]
fn list_and_json_show_names_dates_and_days_left() {
    let tmp = standard_dir();
    let d = tmp.path();
    let out = ok(d, &["--list"]);
    let host = info(&d.join("hosts/cortex.vertex.link.crt"));
    let left = host.days_left(time::OffsetDateTime::now_utc());
    assert!((729..=730).contains(&left));
    let expected_host = format!(
        "hosts/cortex.vertex.link.crt (host)\n  subject:   CN=cortex.vertex.link\n  issuer:    CN=vertex\n  \
         names:     DNS:cortex.vertex.link, IP:127.0.0.1, DNS:localhost\n  not after: {} ({left} days left)\n  sha256:    {}\n",
        json_date(&host),
        host.sha256
    );
    assert!(out.contains(&expected_host), "{out}");
    assert!(
        out.starts_with(
            "cas/vertex.crt (CA)\n  subject:   CN=vertex\n  issuer:    CN=vertex (self-signed)\n"
        ),
        "{out}"
    );
    assert!(out.contains("users/visi@vertex.crt (user)\n  subject:   CN=visi@vertex\n  issuer:    CN=vertex\n  names:     -\n"), "{out}");

    let json: serde_json::Value = serde_json::from_str(&ok(d, &["--list", "--json"])).unwrap();
    let list = json["certs"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(json["errors"].as_array().unwrap().len(), 0);
    let h = list.iter().find(|c| c["kind"] == "hosts").unwrap();
    assert_eq!(h["name"], "cortex.vertex.link");
    assert_eq!(h["subject"], "CN=cortex.vertex.link");
    assert_eq!(h["issuer"], "CN=vertex");
    assert_eq!(
        h["sans"],
        serde_json::json!(["DNS:cortex.vertex.link", "IP:127.0.0.1", "DNS:localhost"])
    );
    assert_eq!(h["not_after"], json_date(&host));
    assert_eq!(h["days_left"], left);
    assert_eq!(h["is_ca"], false);
    assert_eq!(h["sha256"], host.sha256);
    let ca = list.iter().find(|c| c["kind"] == "cas").unwrap();
    assert_eq!(
        (ca["is_ca"].as_bool(), ca["self_signed"].as_bool()),
        (Some(true), Some(true))
    );

    // A damaged certificate is named, the rest still listed, and the exit status says so.
    let full = fs::read_to_string(d.join("users/visi@vertex.crt")).unwrap();
    fs::write(d.join("users/visi@vertex.crt"), &full[..full.len() / 2]).unwrap();
    let r = easycert(d, &["--list"]);
    assert_eq!(r.code, 1);
    assert!(r.out.contains("hosts/cortex.vertex.link.crt (host)"));
    assert_eq!(
        r.err,
        format!(
            "syn easycert: {}: bad PEM: no -----END CERTIFICATE----- line (truncated file?)\n\
             syn easycert: 1 certificate file(s) could not be read\n",
            d.join("users/visi@vertex.crt").display()
        )
    );

    let missing = d.join("nowhere");
    let r = easycert(&missing, &["--list"]);
    assert_eq!(
        (r.code, r.err),
        (
            1,
            format!("syn easycert: certdir not found: {}\n", missing.display())
        )
    );
}

fn json_date(i: &CertInfo) -> String {
    let t = i.not_after;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[test]
fn check_expiry_names_expired_and_expiring_certs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--ca", "vertex"]);
    ok(
        d,
        &[
            "--server",
            "h.example",
            "--signas",
            "vertex",
            "--days",
            "20",
        ],
    );
    let r = easycert(d, &["--check-expiry", "10"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        format!(
            "ok: none of the 2 certificates in {} expires within 10 days\n",
            d.display()
        )
    );

    let r = easycert(d, &["--check-expiry", "30"]);
    assert_eq!(r.code, 4);
    assert!(
        r.out
            .starts_with("expires in 19 days: hosts/h.example.crt (CN=h.example, not after ")
            || r.out
                .starts_with("expires in 20 days: hosts/h.example.crt (CN=h.example, not after "),
        "{}",
        r.out
    );
    assert_eq!(
        r.err,
        "syn easycert: 1 certificate(s) expire within 30 days\n"
    );

    // Already expired, made with the hidden --valid-from.
    ok(
        d,
        &[
            "old@vertex",
            "--signas",
            "vertex",
            "--valid-from",
            "2020-01-01",
            "--days",
            "30",
        ],
    );
    let old = info(&d.join("users/old@vertex.crt"));
    assert_eq!(json_date(&old), "2020-01-31T00:00:00Z");
    let r = easycert(d, &["--check-expiry", "10"]);
    assert_eq!(r.code, 4);
    let ago = -old.days_left(time::OffsetDateTime::now_utc());
    assert_eq!(
        r.out,
        format!(
            "expired {ago} days ago: users/old@vertex.crt (CN=old@vertex, not after 2020-01-31T00:00:00Z)\n"
        )
    );
    assert_eq!(
        r.err,
        "syn easycert: 1 certificate(s) expire within 10 days\n"
    );
    assert!(ok(d, &["--list"]).contains(&format!(
        "not after: 2020-01-31T00:00:00Z (EXPIRED {ago} days ago)"
    )));
    // webpki agrees that it is expired.
    let err = CertDir::open(d)
        .unwrap()
        .verify_user("old@vertex")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not trusted: expired",
            d.join("users/old@vertex.crt").display()
        )
    );
}

#[test]
fn p12_bundles_cert_key_and_ca() {
    let tmp = standard_dir();
    let d = tmp.path();
    let p12 = d.join("users/visi@vertex.p12");
    assert_eq!(
        ok(d, &["--p12", "visi@vertex"]),
        format!("client cert saved: {}\n", p12.display())
    );
    assert_eq!(mode(&p12), 0o600);
    let out = ok(d, &["--p12", "--server", "cortex.vertex.link"]);
    assert_eq!(
        out,
        format!(
            "client cert saved: {}\n",
            d.join("hosts/cortex.vertex.link.p12").display()
        )
    );
    let r = easycert(d, &["--p12", "nobody@vertex"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!(
            "syn easycert: certificate not found: {}\n",
            d.join("users/nobody@vertex.crt").display()
        )
    );

    // Open it with an independent PKCS#12 reader: Python's cryptography, else openssl.
    let script = format!(
        "from cryptography.hazmat.primitives.serialization import pkcs12\n\
         p = pkcs12.load_pkcs12(open({:?}, 'rb').read(), None)\n\
         print(p.cert.friendly_name.decode(), p.cert.certificate.subject.rfc4514_string(),\n\
               [c.certificate.subject.rfc4514_string() for c in p.additional_certs], p.key.key_size)\n",
        p12.display().to_string()
    );
    if let Ok(out) = Command::new("python3").arg("-c").arg(&script).output()
        && out.status.success()
    {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "visi@vertex CN=visi@vertex ['CN=vertex'] 256\n"
        );
        return;
    }
    match Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            p12.to_str().unwrap(),
            "-passin",
            "pass:",
            "-nodes",
        ])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("friendlyName: visi@vertex"), "{text}");
            assert!(
                text.contains("subject=CN=vertex") || text.contains("subject=CN = vertex"),
                "{text}"
            );
            assert!(text.contains("BEGIN PRIVATE KEY"), "{text}");
        }
        Err(_) => eprintln!(
            "SKIPPED the PKCS#12 reader check: neither python3 cryptography nor openssl is available"
        ),
    }
}

#[test]
fn importfile_puts_each_file_where_it_belongs() {
    let src = standard_dir();
    let s = src.path();
    ok(s, &["--csr", "--server", "ext.example"]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let outside = tempfile::tempdir().unwrap();
    let stage = |rel: &str, as_name: &str| {
        let to = outside.path().join(as_name);
        fs::copy(s.join(rel), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
        to
    };
    let cases = [
        ("cas/vertex.crt", "vertex.pem", "cas/vertex.crt"),
        (
            "hosts/cortex.vertex.link.crt",
            "cortex.vertex.link.crt",
            "hosts/cortex.vertex.link.crt",
        ),
        (
            "hosts/cortex.vertex.link.key",
            "cortex.vertex.link.key",
            "hosts/cortex.vertex.link.key",
        ),
        (
            "users/visi@vertex.crt",
            "visi@vertex.crt",
            "users/visi@vertex.crt",
        ),
        (
            "hosts/ext.example.csr",
            "ext.example.csr",
            "hosts/ext.example.csr",
        ),
    ];
    for (rel, as_name, dest) in cases {
        let file = stage(rel, as_name);
        let out = ok(d, &["--importfile", file.to_str().unwrap()]);
        assert_eq!(
            out,
            format!("copied {} to {}\n", file.display(), d.join(dest).display())
        );
        assert_eq!(
            fs::read(d.join(dest)).unwrap(),
            fs::read(s.join(rel)).unwrap()
        );
    }
    assert_eq!(
        mode(&d.join("hosts/cortex.vertex.link.key")),
        0o600,
        "keys land 0600 whatever the source"
    );
    // The imported pieces work together.
    let dir = CertDir::open(d).unwrap();
    dir.host_cert("cortex.vertex.link").unwrap();
    dir.verify_host("cortex.vertex.link", "cortex.vertex.link")
        .unwrap();

    // The answer to a CSR made here goes next to its key, whatever its usages say.
    ok(d, &["--csr", "--server", "ext2.example"]);
    let ext_ca = tempfile::tempdir().unwrap();
    ok(ext_ca.path(), &["--ca", "extca"]);
    let r = easycert(
        ext_ca.path(),
        &[
            "--sign-csr",
            d.join("hosts/ext2.example.csr").to_str().unwrap(),
            "--signas",
            "extca",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let answer = outside.path().join("ext2.example.crt");
    fs::copy(ext_ca.path().join("users/ext2.example.crt"), &answer).unwrap();
    assert!(
        info(&answer).client_auth,
        "signed as a user cert by the outside CA"
    );
    ok(d, &["--importfile", answer.to_str().unwrap()]);
    assert!(d.join("hosts/ext2.example.crt").is_file());
    dir.host_cert("ext2.example").unwrap();

    // A key with no certificate yet goes where --server says, else users/.
    let key = stage("users/visi@vertex.key", "lonely.key");
    ok(d, &["--importfile", key.to_str().unwrap(), "--server"]);
    assert_eq!(mode(&d.join("hosts/lonely.key")), 0o600);
    // Synapse's form: --importfile DIR FILE keeps the file name.
    let key = stage("users/visi@vertex.key", "visi@vertex.key");
    let out = ok(d, &["--importfile", "users", key.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "copied {} to {}\n",
            key.display(),
            d.join("users/visi@vertex.key").display()
        )
    );
    dir.user_cert("visi@vertex").unwrap();

    // A PKCS#12 bundle keeps its name and lands 0600.
    ok(s, &["--p12", "visi@vertex"]);
    let p12 = stage("users/visi@vertex.p12", "visi@vertex.p12");
    let out = ok(d, &["--importfile", p12.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "copied {} to {}\n",
            p12.display(),
            d.join("users/visi@vertex.p12").display()
        )
    );
    assert_eq!(mode(&d.join("users/visi@vertex.p12")), 0o600);

    let r = easycert(d, &["--importfile", key.to_str().unwrap()]);
    assert_eq!(
        (r.code, r.err),
        (
            3,
            format!(
                "syn easycert: file exists: {}\n",
                d.join("users/visi@vertex.key").display()
            )
        )
    );
    let mislabeled = stage("users/visi@vertex.crt", "mislabeled.key");
    let r = easycert(d, &["--importfile", "users", mislabeled.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!(
            "syn easycert: {}: holds a certificate, not a .key\n",
            mislabeled.display()
        )
    );
    let txt = outside.path().join("x.txt");
    fs::copy(s.join("cas/vertex.crt"), &txt).unwrap();
    let r = easycert(d, &["--importfile", "users", txt.to_str().unwrap()]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (
            2,
            "syn easycert: --importfile only supports .crt, .key, .csr and .p12 files\n"
        )
    );
    let bad = outside.path().join("cut.crt");
    let full = fs::read_to_string(s.join("cas/vertex.crt")).unwrap();
    fs::write(&bad, &full[..full.len() - 30]).unwrap();
    let r = easycert(d, &["--importfile", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!(
            "syn easycert: {}: bad PEM: no -----END CERTIFICATE----- line (truncated file?)\n",
            bad.display()
        )
    );
}

#[test]
fn webpki_accepts_the_chain_for_its_name_only() {
    let tmp = standard_dir();
    let dir = CertDir::open(tmp.path()).unwrap();
    let host = dir.host_cert("cortex.vertex.link").unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(dir.ca_roots().unwrap()),
        certs::crypto_provider(),
    )
    .build()
    .unwrap();
    let check = |name: &str| {
        verifier.verify_server_cert(
            &host.chain[0],
            &host.chain[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
    };
    check("cortex.vertex.link").unwrap();
    check("localhost").unwrap();
    check("127.0.0.1").unwrap();
    let err = check("other.example").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );

    dir.verify_host("cortex.vertex.link", "cortex.vertex.link")
        .unwrap();
    let err = dir
        .verify_host("cortex.vertex.link", "other.example")
        .unwrap_err();
    let crt = tmp.path().join("hosts/cortex.vertex.link.crt");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not trusted: not valid for name other.example",
            crt.display()
        )
    );
    dir.verify_user("visi@vertex").unwrap();
}

#[test]
fn intermediate_cas_chain_up_to_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["--ca", "root"]);
    ok(d, &["--ca", "mid", "--signas", "root"]);
    ok(d, &["--server", "deep.example", "--signas", "mid"]);
    let mid = info(&d.join("cas/mid.crt"));
    assert!(mid.is_ca && !mid.self_issued && mid.issuer == "CN=root");
    let dir = CertDir::open(d).unwrap();
    let host = dir.host_cert("deep.example").unwrap();
    assert_eq!(
        host.chain.len(),
        2,
        "leaf plus the intermediate, not the root"
    );
    assert_eq!(host.chain[1], dir.ca_cert("mid").unwrap());
    // Trusting only the root, the sent chain verifies.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(dir.ca_cert("root").unwrap()).unwrap();
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        certs::crypto_provider(),
    )
    .build()
    .unwrap()
    .verify_server_cert(
        &host.chain[0],
        &host.chain[1..],
        &ServerName::try_from("deep.example").unwrap(),
        &[],
        UnixTime::now(),
    )
    .unwrap();
}

#[test]
fn bad_input_is_one_clear_line_naming_the_file() {
    let tmp = standard_dir();
    let d = tmp.path();
    let dir = CertDir::open(d).unwrap();
    let one_line = |e: &CertError| {
        let s = e.to_string();
        assert_eq!(s.lines().count(), 1, "{s}");
        s
    };

    // A key that is not the certificate's.
    ok(d, &["other@vertex", "--signas", "vertex"]);
    fs::remove_file(d.join("users/visi@vertex.key")).unwrap();
    fs::copy(
        d.join("users/other@vertex.key"),
        d.join("users/visi@vertex.key"),
    )
    .unwrap();
    let err = dir.user_cert("visi@vertex").unwrap_err();
    assert_eq!(
        one_line(&err),
        format!(
            "{}: key does not match certificate {}",
            d.join("users/visi@vertex.key").display(),
            d.join("users/visi@vertex.crt").display()
        )
    );
    let r = easycert(d, &["--p12", "visi@vertex"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.contains("key does not match certificate"),
        "{}",
        r.err
    );

    // A truncated certificate.
    let crt = d.join("hosts/cortex.vertex.link.crt");
    let full = fs::read(&crt).unwrap();
    fs::write(&crt, &full[..full.len() - 40]).unwrap();
    let err = dir.host_cert("cortex.vertex.link").unwrap_err();
    assert_eq!(
        one_line(&err),
        format!(
            "{}: bad PEM: no -----END CERTIFICATE----- line (truncated file?)",
            crt.display()
        )
    );
    fs::write(&crt, &full).unwrap();
    // A truncated key.
    let key = d.join("hosts/cortex.vertex.link.key");
    let full_key = fs::read(&key).unwrap();
    fs::write(&key, &full_key[..60]).unwrap();
    let err = dir.host_cert("cortex.vertex.link").unwrap_err();
    assert!(
        one_line(&err).starts_with(&format!("{}: bad PEM", key.display())),
        "{err}"
    );

    // Missing certdirs.
    let gone = d.join("gone");
    assert_eq!(
        one_line(&CertDir::open(&gone).unwrap_err()),
        format!("certdir not found: {}", gone.display())
    );
    let err = CertDir::find(&[gone.clone(), d.join("also-gone")]).unwrap_err();
    assert_eq!(
        one_line(&err),
        format!(
            "certdir not found: {}, {}",
            gone.display(),
            d.join("also-gone").display()
        )
    );
    assert_eq!(CertDir::find(&[gone, d.to_path_buf()]).unwrap().path(), d);

    // A user certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["--ca", "otherca"]);
    ok(other.path(), &["mallory@vertex", "--signas", "otherca"]);
    fs::copy(
        other.path().join("users/mallory@vertex.crt"),
        d.join("users/mallory@vertex.crt"),
    )
    .unwrap();
    let err = dir.verify_user("mallory@vertex").unwrap_err();
    assert_eq!(
        one_line(&err),
        format!(
            "{}: not trusted: not issued by any CA in {}",
            d.join("users/mallory@vertex.crt").display(),
            d.join("cas").display()
        )
    );
    // Names that would escape the certdir are refused.
    let r = easycert(d, &["../escape"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (
            1,
            "syn easycert: bad certificate name `../escape`: must not contain '/'\n"
        )
    );
}

type Handshake = (Result<String, String>, Result<String, String>);

/// One TLS connection on loopback: the server presents `host` from `server_dir` and
/// requires a client cert from its CAs; the client trusts `client_dir`'s CAs and presents
/// `user`. Returns what each side saw.
async fn handshake(
    server_dir: &CertDir,
    host: &str,
    client_dir: &CertDir,
    user: &str,
    name: &str,
) -> Handshake {
    let provider = certs::crypto_provider();
    let server_key = server_dir.host_cert(host).unwrap();
    let client_verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(server_dir.ca_roots().unwrap()),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server_key.chain, server_key.key)
        .unwrap();
    let client_key = client_dir.user_cert(user).unwrap();
    let client_cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(client_dir.ca_roots().unwrap())
        .with_client_auth_cert(client_key.chain, client_key.key)
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer: CertificateDer<'static> = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let cn = CertInfo::from_der(&peer).unwrap().common_name.unwrap();
        tls.write_all(format!("hello {cn}").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<String, String>(cn)
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let client = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        tls.read_to_string(&mut text)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<String, String>(text)
    }
    .await;
    let server = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server finished")
        .unwrap();
    (server, client)
}

#[tokio::test]
async fn mutual_tls_handshake_with_our_host_and_user_certs() {
    let tmp = standard_dir();
    let dir = CertDir::open(tmp.path()).unwrap();
    let (server, client) = handshake(
        &dir,
        "cortex.vertex.link",
        &dir,
        "visi@vertex",
        "cortex.vertex.link",
    )
    .await;
    assert_eq!(server.unwrap(), "visi@vertex");
    assert_eq!(client.unwrap(), "hello visi@vertex");

    // A client cert from another CA is refused by the server.
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["--ca", "otherca"]);
    ok(other.path(), &["mallory@vertex", "--signas", "otherca"]);
    fs::copy(
        tmp.path().join("cas/vertex.crt"),
        other.path().join("cas/vertex.crt"),
    )
    .unwrap();
    let other_dir = CertDir::open(other.path()).unwrap();
    let (server, client) = handshake(
        &dir,
        "cortex.vertex.link",
        &other_dir,
        "mallory@vertex",
        "cortex.vertex.link",
    )
    .await;
    let server_err = server.unwrap_err();
    assert!(server_err.contains("UnknownIssuer"), "{server_err}");
    assert!(client.is_err(), "{client:?}");
}

fn python3() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: python3 is not installed");
    }
    found
}

#[test]
fn python_ssl_uses_our_host_cert_as_server_and_user_cert_as_client() {
    if !python3() {
        return;
    }
    let tmp = standard_dir();
    let d = tmp.path();
    let script = r#"
import socket, ssl, sys, threading
d = sys.argv[1]
srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
srv.load_cert_chain(d + '/hosts/cortex.vertex.link.crt', d + '/hosts/cortex.vertex.link.key')
srv.load_verify_locations(d + '/cas/vertex.crt')
srv.verify_mode = ssl.CERT_REQUIRED
cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
cli.load_verify_locations(d + '/cas/vertex.crt')
cli.load_cert_chain(d + '/users/visi@vertex.crt', d + '/users/visi@vertex.key')
lsock = socket.socket(); lsock.bind(('127.0.0.1', 0)); lsock.listen(1)
seen = {}
def serve():
    conn, _ = lsock.accept()
    with srv.wrap_socket(conn, server_side=True) as s:
        subject = dict(x[0] for x in s.getpeercert()['subject'])
        seen['peer'] = subject['commonName']
        s.sendall(b'hi ' + seen['peer'].encode())
t = threading.Thread(target=serve); t.start()
with socket.create_connection(lsock.getsockname()) as raw:
    with cli.wrap_socket(raw, server_hostname='cortex.vertex.link') as s:
        got = s.recv(100).decode()
t.join()
print(seen['peer'], got)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python ssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "visi@vertex hi visi@vertex\n"
    );
}

/// A copy of the certdir Python Synapse v2.0.0 made (RSA 4096, PKCS#1 and PKCS#8 keys).
fn synapse_dir() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/certs/testdata/synapse-2.0.0");
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["cas", "hosts", "users"] {
        fs::create_dir(tmp.path().join(sub)).unwrap();
        for e in fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), tmp.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    tmp
}

#[tokio::test]
async fn python_synapse_certdirs_load_sign_and_serve() {
    let tmp = synapse_dir();
    let d = tmp.path();
    let dir = CertDir::open(d).unwrap();
    assert_eq!(dir.ca_roots().unwrap().len(), 1);
    let host = dir.host_cert("py.example.test").unwrap();
    assert!(matches!(
        host.key,
        rustls_pki_types::PrivateKeyDer::Pkcs1(_)
    ));
    let user = dir.user_cert("pyuser@example").unwrap();
    assert!(matches!(
        user.key,
        rustls_pki_types::PrivateKeyDer::Pkcs8(_)
    ));
    dir.verify_host("py.example.test", "py.example.test")
        .unwrap();
    dir.verify_host("py.example.test", "127.0.0.1").unwrap();
    dir.verify_user("pyuser@example").unwrap();
    let info = CertInfo::from_der(&host.chain[0]).unwrap();
    assert_eq!(info.issuer, "CN=pyca");
    assert_eq!(info.sans.len(), 3);

    // Its RSA CA (PKCS#1 key, no subjectKeyIdentifier) signs our ECDSA certs.
    ok(d, &["--server", "new.example.test", "--signas", "pyca"]);
    ok(d, &["newuser@example", "--signas", "pyca"]);
    dir.verify_host("new.example.test", "new.example.test")
        .unwrap();
    dir.verify_user("newuser@example").unwrap();
    let listed = ok(d, &["--list"]);
    assert!(listed.contains("hosts/py.example.test.crt (host)\n  subject:   CN=py.example.test\n  issuer:    CN=pyca\n  names:     DNS:localhost, DNS:py.example.test, IP:127.0.0.1\n"), "{listed}");
    ok(d, &["--p12", "pyuser@example"]);

    // rustls serves with the Python RSA host key and accepts the Python client cert...
    let (server, client) = handshake(
        &dir,
        "py.example.test",
        &dir,
        "pyuser@example",
        "py.example.test",
    )
    .await;
    assert_eq!(server.unwrap(), "pyuser@example");
    assert_eq!(client.unwrap(), "hello pyuser@example");
    // ... and mixes them with ours.
    let (server, client) = handshake(
        &dir,
        "new.example.test",
        &dir,
        "pyuser@example",
        "new.example.test",
    )
    .await;
    assert_eq!(server.unwrap(), "pyuser@example");
    assert_eq!(client.unwrap(), "hello pyuser@example");
}
