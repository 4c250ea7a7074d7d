//! Making things in a certdir: keys and certificates, CSRs, signing CSRs made elsewhere,
//! PKCS#12 bundles, and importing existing files.

use super::error::CertError;
use super::files::{self, NewFile};
use super::info::{self, CertInfo, San};
use super::keys::{self, KeyType};
use super::{CertDir, CertKind, check_name, p12};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

/// Netscape certificate type, which Synapse sets on host and user certificates.
const NS_CERT_TYPE: &[u64] = &[2, 16, 840, 1, 113730, 1, 1];
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// How to make a certificate.
#[derive(Clone, Debug, Default)]
pub struct IssueOptions {
    /// Sign with CA `cas/<signas>`; without it the certificate is self-signed (as Synapse).
    pub signas: Option<String>,
    /// Validity in days; default [`CertKind::default_days`].
    pub days: Option<u32>,
    /// Start of validity; default now. A date in the past makes already-expired
    /// certificates for tests.
    pub valid_from: Option<OffsetDateTime>,
    /// Kind of key to generate.
    pub key_type: KeyType,
    /// Extra subject alternative names (host certificates and host CSRs only).
    pub sans: Vec<San>,
}

/// One file written, printed as Synapse's easycert prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// `key saved: PATH`.
    Key(PathBuf),
    /// `cert saved: PATH`.
    Cert(PathBuf),
    /// `csr saved: PATH`.
    Csr(PathBuf),
    /// `client cert saved: PATH` (a PKCS#12 bundle).
    P12(PathBuf),
    /// `copied FROM to TO` (an imported file).
    Copied {
        /// The source as given.
        from: PathBuf,
        /// Where it now is.
        to: PathBuf,
    },
}

impl fmt::Display for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Saved::Key(p) => write!(f, "key saved: {}", p.display()),
            Saved::Cert(p) => write!(f, "cert saved: {}", p.display()),
            Saved::Csr(p) => write!(f, "csr saved: {}", p.display()),
            Saved::P12(p) => write!(f, "client cert saved: {}", p.display()),
            Saved::Copied { from, to } => {
                write!(f, "copied {} to {}", from.display(), to.display())
            }
        }
    }
}

/// What an operation wrote, in Synapse's order, and what it wants the operator to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files written.
    pub saved: Vec<Saved>,
    /// Warnings (one line each), e.g. a CSR that asked to be a CA.
    pub warnings: Vec<String>,
}

/// Where [`CertDir::import`] puts a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportInto {
    /// Into this subdirectory under the file's own name (Synapse's `--importfile cas|hosts|users`).
    Dir(CertKind),
    /// Decide from the content: basicConstraints, then the directory holding its key, then
    /// extendedKeyUsage and SANs for a certificate; the matching certificate for a key.
    /// `ca`/`server` force `cas/`/`hosts/`.
    Auto {
        /// `--ca` was given.
        ca: bool,
        /// `--server` was given.
        server: bool,
    },
}

/// A loaded signing CA.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    subject: Vec<u8>,
    has_ski: bool,
}

impl CertDir {
    /// Make a key and a certificate: `cas/`, `hosts/` or `users/<name>.key|.crt`.
    pub fn issue(
        &self,
        kind: CertKind,
        name: &str,
        opts: &IssueOptions,
    ) -> Result<Outcome, CertError> {
        check_name(name)?;
        if kind != CertKind::Host && !opts.sans.is_empty() {
            return Err(CertError::Usage(
                "--server-sans only applies to --server".into(),
            ));
        }
        // The CA first: an RSA key takes seconds to make, not worth it for a missing CA.
        let ca = opts
            .signas
            .as_deref()
            .map(|n| self.load_ca(n))
            .transpose()?;
        let key = opts.key_type.generate()?;
        let rsa = opts.key_type == KeyType::Rsa4096;
        let params = cert_params(kind, name, &opts.sans, validity(kind, opts)?, rsa)?;
        let signer = match &ca {
            Some(ca) => Signer::Ca(ca),
            None => Signer::Itself(&key),
        };
        let cert = sign(params, &key, signer)?;
        let key_file = NewFile {
            path: self.file(kind, name, "key"),
            data: key.serialize_pem().into_bytes(),
            secret: true,
        };
        let cert_file = NewFile {
            path: self.file(kind, name, "crt"),
            data: cert.pem().into_bytes(),
            secret: false,
        };
        // Synapse saves (and prints) a user's cert before its key, a CA's or host's key first.
        let order = match kind {
            CertKind::User => vec![cert_file, key_file],
            CertKind::Ca | CertKind::Host => vec![key_file, cert_file],
        };
        files::write_new_files(&order)?;
        Ok(Outcome {
            saved: order
                .into_iter()
                .map(|f| {
                    if f.secret {
                        Saved::Key(f.path)
                    } else {
                        Saved::Cert(f.path)
                    }
                })
                .collect(),
            warnings: Vec::new(),
        })
    }

    /// Make a key and a CSR (`<name>.key`, `<name>.csr`) for an external CA to sign.
    /// A host CSR asks for `DNS:<name>` plus `opts.sans`.
    pub fn make_csr(
        &self,
        kind: CertKind,
        name: &str,
        opts: &IssueOptions,
    ) -> Result<Outcome, CertError> {
        check_name(name)?;
        if kind == CertKind::Ca {
            return Err(CertError::Usage(
                "a CSR for a CA certificate is not supported".into(),
            ));
        }
        if kind != CertKind::Host && !opts.sans.is_empty() {
            return Err(CertError::Usage(
                "--server-sans only applies to --server".into(),
            ));
        }
        let key = opts.key_type.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(name);
        if kind == CertKind::Host {
            params.subject_alt_names = host_sans(name, &opts.sans)?;
        }
        let csr = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| CertError::Invalid(format!("cannot make CSR: {e}")))?;
        let out = [
            NewFile {
                path: self.file(kind, name, "key"),
                data: key.serialize_pem().into_bytes(),
                secret: true,
            },
            NewFile {
                path: self.file(kind, name, "csr"),
                data: csr.into_bytes(),
                secret: false,
            },
        ];
        files::write_new_files(&out)?;
        let [key_file, csr_file] = out;
        Ok(Outcome {
            saved: vec![Saved::Key(key_file.path), Saved::Csr(csr_file.path)],
            warnings: Vec::new(),
        })
    }

    /// Sign a CSR made elsewhere with CA `opts.signas`, writing `<CN>.crt` in `hosts/` or
    /// `users/`. This side decides what the certificate may do: never a CA, the usages of
    /// a host or user certificate, `DNS:<CN>` plus `opts.sans` for a host, our validity
    /// and a fresh serial. Whatever else the CSR asks for is ignored, with a warning.
    pub fn sign_csr(
        &self,
        csr_path: &Path,
        kind: CertKind,
        opts: &IssueOptions,
    ) -> Result<Outcome, CertError> {
        if kind == CertKind::Ca {
            return Err(CertError::Usage(
                "--sign-csr makes host or user certificates, not CAs".into(),
            ));
        }
        let Some(signas) = opts.signas.as_deref() else {
            return Err(CertError::Usage("--sign-csr requires --signas".into()));
        };
        if kind != CertKind::Host && !opts.sans.is_empty() {
            return Err(CertError::Usage(
                "--server-sans only applies to --server".into(),
            ));
        }
        let der = files::load_csr(csr_path)?;
        let csr = X509CertificationRequest::from_der(&der)
            .map(|(_, c)| c)
            .map_err(|e| CertError::bad(csr_path, format!("bad CSR: {e}")))?;
        csr.verify_signature()
            .map_err(|_| CertError::bad(csr_path, "CSR signature does not verify"))?;
        let info = &csr.certification_request_info;
        let name = info::common_name(&info.subject)
            .ok_or_else(|| CertError::bad(csr_path, "CSR has no CN"))?;
        check_name(&name).map_err(|e| e.in_file(csr_path))?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| CertError::bad(csr_path, format!("unsupported public key: {e}")))?;
        let rsa = info.subject_pki.algorithm.algorithm.to_id_string() == RSA_ENCRYPTION;

        let sans = if kind == CertKind::Host {
            host_sans_list(&name, &opts.sans)
        } else {
            Vec::new()
        };
        let warnings = csr_warnings(csr_path, &csr, kind, &sans);
        let ca = self.load_ca(signas)?;
        let params = cert_params(kind, &name, &opts.sans, validity(kind, opts)?, rsa)?;
        let cert = sign(params, &spki, Signer::Ca(&ca))?;
        let path = self.file(kind, &name, "crt");
        files::write_new_files(&[NewFile {
            path: path.clone(),
            data: cert.pem().into_bytes(),
            secret: false,
        }])?;
        Ok(Outcome {
            saved: vec![Saved::Cert(path)],
            warnings,
        })
    }

    /// Bundle `<name>.crt`, its key and its issuing CA (from `cas/`) as `<name>.p12`.
    pub fn make_p12(&self, kind: CertKind, name: &str) -> Result<Outcome, CertError> {
        check_name(name)?;
        if kind == CertKind::Ca {
            return Err(CertError::Usage(
                "--p12 bundles a host or user certificate".into(),
            ));
        }
        let crt = self.file(kind, name, "crt");
        let key_path = self.file(kind, name, "key");
        let certs = files::load_certs(&crt)?;
        let key = files::load_key(&key_path)?;
        let leaf = info::parse(&certs[0]).map_err(|e| e.in_file(&crt))?;
        if !key_matches(&key, &leaf) {
            return Err(CertError::KeyMismatch {
                key: key_path,
                cert: crt,
            });
        }
        let mut chain: Vec<CertificateDer<'static>> = certs[1..].to_vec();
        if leaf.subject().as_raw() != leaf.issuer().as_raw() {
            match self.find_issuer(&certs[0])? {
                Some((_, ca)) if !chain.contains(&ca) => chain.push(ca),
                Some(_) => {}
                None => {
                    let issuer = info::common_name(leaf.issuer()).unwrap_or_default();
                    return Err(CertError::NotFound {
                        what: "issuing CA certificate",
                        path: self.file(CertKind::Ca, &issuer, "crt"),
                    });
                }
            }
        }
        let pkcs8 = keys::to_pkcs8(&key).map_err(|e| e.in_file(&key_path))?;
        let chain_refs: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
        let path = self.file(kind, name, "p12");
        files::write_new_files(&[NewFile {
            path: path.clone(),
            data: p12::build(name, &certs[0], &chain_refs, &pkcs8),
            secret: true,
        }])?;
        Ok(Outcome {
            saved: vec![Saved::P12(path)],
            warnings: Vec::new(),
        })
    }

    /// Copy an existing PEM certificate, key or CSR (or a `.p12`) into the certdir, after
    /// checking it parses. Keys and bundles are written 0600 whatever the source's mode.
    pub fn import(&self, src: &Path, into: ImportInto) -> Result<Outcome, CertError> {
        let bytes = files::read_file(src, "file")?;
        let file_name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CertError::Usage(format!("not a file: {}", src.display())))?;
        let (stem, ext) = match file_name.rsplit_once('.') {
            Some((s, e)) => (s.to_string(), e.to_ascii_lowercase()),
            None => (file_name.clone(), String::new()),
        };
        let mut warnings = Vec::new();

        if ext == "p12" {
            let kind = match into {
                ImportInto::Dir(k) => k,
                ImportInto::Auto { server: true, .. } => CertKind::Host,
                ImportInto::Auto { ca: true, .. } => {
                    return Err(CertError::Usage("a .p12 bundle cannot go into cas/".into()));
                }
                ImportInto::Auto { .. } => CertKind::User,
            };
            if !matches!(super::der::read(&bytes), Some((0x30, _, rest)) if rest.is_empty()) {
                return Err(CertError::bad(src, "not a PKCS#12 (DER) file"));
            }
            check_name(&stem).map_err(|e| e.in_file(src))?;
            return self.copy_in(src, self.file(kind, &stem, "p12"), bytes, true, warnings);
        }

        let content = classify(&bytes).map_err(|e| e.in_file(src))?;
        let want_ext = content.ext();
        let (kind, name) = match into {
            ImportInto::Dir(kind) => {
                if !matches!(ext.as_str(), "crt" | "key" | "csr") {
                    return Err(CertError::Usage(
                        "--importfile only supports .crt, .key, .csr and .p12 files".into(),
                    ));
                }
                if ext != want_ext {
                    return Err(CertError::bad(
                        src,
                        format!("holds a {}, not a .{ext}", content.what()),
                    ));
                }
                (kind, stem)
            }
            ImportInto::Auto { ca, server } => {
                let name = match ext.as_str() {
                    "crt" | "cer" | "pem" | "key" | "csr" | "req" => stem,
                    _ => file_name.clone(),
                };
                let kind = self.place(src, &content, &name, ca, server, &mut warnings)?;
                (kind, name)
            }
        };
        check_name(&name).map_err(|e| e.in_file(src))?;
        let secret = matches!(content, Content::Key(_));
        self.copy_in(
            src,
            self.file(kind, &name, want_ext),
            bytes,
            secret,
            warnings,
        )
    }

    fn copy_in(
        &self,
        src: &Path,
        to: PathBuf,
        data: Vec<u8>,
        secret: bool,
        warnings: Vec<String>,
    ) -> Result<Outcome, CertError> {
        files::write_new_files(&[NewFile {
            path: to.clone(),
            data,
            secret,
        }])?;
        Ok(Outcome {
            saved: vec![Saved::Copied {
                from: src.to_path_buf(),
                to,
            }],
            warnings,
        })
    }

    /// Which subdirectory an imported file belongs in.
    fn place(
        &self,
        src: &Path,
        content: &Content,
        name: &str,
        ca: bool,
        server: bool,
        warnings: &mut Vec<String>,
    ) -> Result<CertKind, CertError> {
        Ok(match content {
            Content::Cert(der) => {
                let info = CertInfo::from_der(der).map_err(|e| e.in_file(src))?;
                if ca {
                    if !info.is_ca {
                        warnings.push(format!(
                            "{}: not marked as a CA (no basicConstraints CA:TRUE); importing into cas/ as asked",
                            src.display()
                        ));
                    }
                    CertKind::Ca
                } else if info.is_ca {
                    if server {
                        return Err(CertError::bad(
                            src,
                            "is a CA certificate, not a host certificate",
                        ));
                    }
                    CertKind::Ca
                } else if server {
                    CertKind::Host
                } else if let Some(kind) = self.dir_with_key_for(name, der) {
                    // The answer to a CSR made here: it goes next to its key.
                    kind
                } else if info.server_auth && !info.client_auth {
                    CertKind::Host
                } else if info.client_auth {
                    CertKind::User
                } else if !info.sans.is_empty() {
                    CertKind::Host
                } else {
                    CertKind::User
                }
            }
            Content::Key(key) => {
                if ca {
                    CertKind::Ca
                } else if server {
                    CertKind::Host
                } else {
                    CertKind::ALL
                        .into_iter()
                        .find(|kind| {
                            files::load_certs(&self.file(*kind, name, "crt")).is_ok_and(|certs| {
                                info::parse(&certs[0]).is_ok_and(|c| key_matches(key, &c))
                            })
                        })
                        .unwrap_or(CertKind::User)
                }
            }
            Content::Csr { server_like } => {
                if ca {
                    return Err(CertError::Usage(
                        "a CSR cannot be imported into cas/".into(),
                    ));
                }
                if server || *server_like {
                    CertKind::Host
                } else {
                    CertKind::User
                }
            }
        })
    }

    /// `hosts/` or `users/` if it holds `<name>.key` for this certificate.
    fn dir_with_key_for(&self, name: &str, cert: &CertificateDer<'_>) -> Option<CertKind> {
        let parsed = info::parse(cert).ok()?;
        [CertKind::Host, CertKind::User].into_iter().find(|kind| {
            files::load_key(&self.file(*kind, name, "key")).is_ok_and(|k| key_matches(&k, &parsed))
        })
    }

    /// CA `name`'s certificate and key, checked to be a CA and to match.
    fn load_ca(&self, name: &str) -> Result<Ca, CertError> {
        check_name(name)?;
        let crt = self.file(CertKind::Ca, name, "crt");
        let key_path = self.file(CertKind::Ca, name, "key");
        let der = files::load_certs(&crt)?.remove(0);
        let key = files::load_key(&key_path)?;
        let parsed = info::parse(&der).map_err(|e| e.in_file(&crt))?;
        if !info::is_ca(&parsed) {
            return Err(CertError::bad(
                &crt,
                "not a CA certificate (no basicConstraints CA:TRUE)",
            ));
        }
        if !key_matches(&key, &parsed) {
            return Err(CertError::KeyMismatch {
                key: key_path,
                cert: crt,
            });
        }
        let has_ski = parsed.iter_extensions().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectKeyIdentifier(_)
            )
        });
        let signing_key = keys::signing_key(&key).map_err(|e| e.in_file(&key_path))?;
        let issuer = Issuer::from_ca_cert_der(&der, signing_key)
            .map_err(|e| CertError::bad(&crt, format!("cannot sign with this CA: {e}")))?;
        Ok(Ca {
            issuer,
            subject: parsed.subject().as_raw().to_vec(),
            has_ski,
        })
    }
}

/// Does `key` belong to `cert`?
pub(crate) fn key_matches(
    key: &PrivateKeyDer<'_>,
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> bool {
    rustls::crypto::ring::sign::any_supported_type(key)
        .ok()
        .and_then(|k| {
            k.public_key()
                .map(|spki| spki.as_ref() == cert.public_key().raw)
        })
        .unwrap_or(false)
}

/// What a PEM file to import holds.
enum Content {
    Cert(CertificateDer<'static>),
    Key(PrivateKeyDer<'static>),
    Csr { server_like: bool },
}

impl Content {
    fn ext(&self) -> &'static str {
        match self {
            Content::Cert(_) => "crt",
            Content::Key(_) => "key",
            Content::Csr { .. } => "csr",
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Content::Cert(_) => "certificate",
            Content::Key(_) => "private key",
            Content::Csr { .. } => "CSR",
        }
    }
}

fn classify(bytes: &[u8]) -> Result<Content, CertError> {
    let sections = files::pem_sections(bytes)?;
    let has = |pred: fn(&SectionKind) -> bool| sections.iter().any(|(k, _)| pred(k));
    let certs = has(|k| *k == SectionKind::Certificate);
    let keys = has(|k| {
        matches!(
            k,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    });
    let csrs = has(|k| *k == SectionKind::Csr);
    match (certs, keys, csrs) {
        (true, false, false) => Ok(Content::Cert(files::certs_from_pem(bytes)?.remove(0))),
        (false, true, false) => Ok(Content::Key(files::key_from_pem(bytes)?)),
        (false, false, true) => {
            let der = files::csr_from_pem(bytes)?;
            let (_, csr) = X509CertificationRequest::from_der(&der)
                .map_err(|e| CertError::Invalid(format!("bad CSR: {e}")))?;
            let server_like = csr.requested_extensions().is_some_and(|mut exts| {
                exts.any(|e| match e {
                    ParsedExtension::ExtendedKeyUsage(eku) => eku.server_auth,
                    ParsedExtension::SubjectAlternativeName(_) => true,
                    _ => false,
                })
            });
            Ok(Content::Csr { server_like })
        }
        (false, false, false) => Err(CertError::Invalid("no certificate, private key or CSR in PEM".into())),
        _ => Err(CertError::Invalid(
            "holds more than one kind of PEM item (certificate, key, CSR); import them one file at a time".into(),
        )),
    }
}

/// What the CSR asked for that it will not get, as warnings.
fn csr_warnings(
    path: &Path,
    csr: &X509CertificationRequest<'_>,
    kind: CertKind,
    sans: &[San],
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut ignored = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::BasicConstraints(bc) if bc.ca => warnings.push(format!(
                "{}: the CSR asks to be a CA; signing it as a {} certificate that is not a CA",
                path.display(),
                kind.label()
            )),
            ParsedExtension::BasicConstraints(_) => {}
            ParsedExtension::KeyUsage(_) => ignored.push("keyUsage".to_string()),
            ParsedExtension::ExtendedKeyUsage(_) => ignored.push("extendedKeyUsage".to_string()),
            ParsedExtension::SubjectAlternativeName(san) => {
                let extra: Vec<String> = san
                    .general_names
                    .iter()
                    .map(|g| San::from_general(g).ok_or_else(|| g.to_string()))
                    .filter(|s| !matches!(s, Ok(s) if sans.contains(s)))
                    .map(|s| s.map_or_else(|other| other, |s| s.to_string()))
                    .collect();
                if !extra.is_empty() {
                    ignored.push(format!("names {}", extra.join(", ")));
                }
            }
            _ => ignored.push("other extensions".to_string()),
        }
    }
    ignored.dedup();
    if !ignored.is_empty() {
        warnings.push(format!(
            "{}: ignoring what the CSR asks for ({}); the {} certificate gets syn's usages, names and validity",
            path.display(),
            ignored.join(", "),
            kind.label()
        ));
    }
    warnings
}

/// Validity from the options, defaulting by kind.
fn validity(
    kind: CertKind,
    opts: &IssueOptions,
) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    let days = opts.days.unwrap_or(kind.default_days());
    if days == 0 {
        return Err(CertError::Usage("--days must be at least 1".into()));
    }
    let start = opts.valid_from.unwrap_or_else(|| {
        OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond")
    });
    Ok((start, start + Duration::days(i64::from(days))))
}

fn common_name_dn(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// `DNS:<name>` (or `IP:`) first, then the extras, without repeats.
fn host_sans_list(name: &str, extra: &[San]) -> Vec<San> {
    let mut all = vec![San::for_host(name)];
    for s in extra {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    all
}

fn host_sans(name: &str, extra: &[San]) -> Result<Vec<rcgen::SanType>, CertError> {
    host_sans_list(name, extra)
        .iter()
        .map(San::to_rcgen)
        .collect()
}

/// Everything a certificate of `kind` says, decided here and nowhere else.
fn cert_params(
    kind: CertKind,
    name: &str,
    sans: &[San],
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    rsa_key: bool,
) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = common_name_dn(name);
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(random_serial());
    match kind {
        CertKind::Ca => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
        CertKind::Host => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            if rsa_key {
                p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
            }
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.subject_alt_names = host_sans(name, sans)?;
            // nsCertType = SSL server (BIT STRING, bit 1).
            p.custom_extensions = vec![CustomExtension::from_oid_content(
                NS_CERT_TYPE,
                vec![0x03, 0x02, 0x06, 0x40],
            )];
        }
        CertKind::User => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            // nsCertType = SSL client (BIT STRING, bit 0).
            p.custom_extensions = vec![CustomExtension::from_oid_content(
                NS_CERT_TYPE,
                vec![0x03, 0x02, 0x07, 0x80],
            )];
        }
    }
    Ok(p)
}

/// A random positive 128-bit serial, as Synapse's `int(guid(), 16)`.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails when the kernel has no entropy source at all.
    SystemRandom::new().fill(&mut bytes).expect("system random");
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    SerialNumber::from_slice(&bytes)
}

/// Who signs a new certificate.
enum Signer<'a> {
    /// The subject's own key: self-signed.
    Itself(&'a KeyPair),
    /// A CA from `cas/`.
    Ca(&'a Ca),
}

/// Sign `params` for `subject`.
fn sign(
    mut params: CertificateParams,
    subject: &impl PublicKeyData,
    signer: Signer<'_>,
) -> Result<rcgen::Certificate, CertError> {
    let failed = |e: rcgen::Error| CertError::Invalid(format!("cannot sign certificate: {e}"));
    match signer {
        Signer::Ca(ca) => {
            params.use_authority_key_identifier_extension = ca.has_ski;
            let cert = params.signed_by(subject, &ca.issuer).map_err(failed)?;
            // The issuer name is re-encoded by rcgen; it must be byte-identical to the CA's
            // subject or no verifier will build the chain.
            let parsed = info::parse(cert.der())?;
            if parsed.issuer().as_raw() != ca.subject.as_slice() {
                return Err(CertError::Invalid(
                    "cannot sign certificate: the CA's subject name did not survive re-encoding"
                        .into(),
                ));
            }
            Ok(cert)
        }
        Signer::Itself(key) => params.self_signed(key).map_err(failed),
    }
}
