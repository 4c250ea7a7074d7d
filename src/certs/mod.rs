//! Certificates: the Synapse certdir (`cas/`, `hosts/`, `users/`), `syn easycert`, and what
//! the TLS code loads from it.
//!
//! Layout and file names follow Synapse v2.0.0's `CertDir`: `cas/<name>.crt|.key`,
//! `hosts/<fqdn>.crt|.key|.csr|.p12`, `users/<name>.crt|.key|.csr|.p12`, all PEM except
//! `.p12`. Files made by Python Synapse (RSA keys, PKCS#1 or PKCS#8) load and sign.
//! New keys are ECDSA P-256 by default, or RSA 4096 (`--key-type rsa4096`, Synapse's own
//! choice): ring makes the ECDSA keys, the `rsa` crate the RSA ones, and ring signs with both.

mod cli;
mod der;
mod error;
mod files;
mod info;
mod issue;
mod keys;
mod p12;

pub use cli::{EasycertArgs, run};
pub use error::{CertError, EXIT_EXISTS, EXIT_EXPIRING, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
pub use files::{load_certs, load_csr, load_key};
pub use info::{CertInfo, San, fingerprint_sha256};
pub use issue::{ImportInto, IssueOptions, Outcome, Saved};
pub use keys::KeyType;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The rustls crypto provider this project uses everywhere: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The three kinds of certificate a certdir holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertKind {
    /// A certificate authority, in `cas/`.
    Ca,
    /// A TLS server, in `hosts/`.
    Host,
    /// A TLS client (a user logging in), in `users/`.
    User,
}

impl CertKind {
    /// All kinds, in listing order.
    pub const ALL: [CertKind; 3] = [CertKind::Ca, CertKind::Host, CertKind::User];

    /// The subdirectory: `cas`, `hosts` or `users`.
    pub fn dir(self) -> &'static str {
        match self {
            CertKind::Ca => "cas",
            CertKind::Host => "hosts",
            CertKind::User => "users",
        }
    }

    /// A word for messages: `CA`, `host`, `user`.
    pub fn label(self) -> &'static str {
        match self {
            CertKind::Ca => "CA",
            CertKind::Host => "host",
            CertKind::User => "user",
        }
    }

    /// Default validity in days: 10 years for a CA, 2 years otherwise.
    pub fn default_days(self) -> u32 {
        match self {
            CertKind::Ca => 3650,
            CertKind::Host | CertKind::User => 730,
        }
    }
}

/// A certificate chain (leaf first) and its private key, ready for rustls.
#[derive(Debug)]
pub struct CertKey {
    /// The leaf certificate followed by any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// One certificate found by [`CertDir::list`].
#[derive(Clone, Debug)]
pub struct ListedCert {
    /// Which subdirectory it is in.
    pub kind: CertKind,
    /// Its file name without `.crt`.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// What it says.
    pub info: CertInfo,
}

/// Everything [`CertDir::list`] read, and what it could not.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable certificates: CAs, then hosts, then users, each by name.
    pub certs: Vec<ListedCert>,
    /// One error per unreadable `.crt` file.
    pub errors: Vec<CertError>,
}

/// `$SYN_CERTDIR`, else Synapse's `$SYN_CERT_DIR`, else `~/.syn/certs`.
pub fn default_certdir() -> PathBuf {
    env_certdir().unwrap_or_else(|| home_dir().join(".syn").join("certs"))
}

fn env_certdir() -> Option<PathBuf> {
    ["SYN_CERTDIR", "SYN_CERT_DIR"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(|v| expand_home(Path::new(&v)))
}

/// Where to look for a certdir, in order: `explicit`, `$SYN_CERTDIR` (or `$SYN_CERT_DIR`),
/// a service's `service_dir/certs`, then `~/.syn/certs`. Pass the result to [`CertDir::find`].
pub fn candidate_dirs(explicit: Option<&Path>, service_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    out.extend(explicit.map(expand_home));
    out.extend(env_certdir());
    out.extend(service_dir.map(|d| d.join("certs")));
    out.push(home_dir().join(".syn").join("certs"));
    out
}

fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `~` or `~/...` expanded to the home directory; other paths unchanged.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home_dir().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// Check a certificate name before it becomes a file name: 1–64 bytes of UTF-8 (Synapse's
/// limit), no `/`, no control characters, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), CertError> {
    let why = if name.is_empty() || name.len() > 64 {
        "must be 1 to 64 bytes"
    } else if name.contains('/') {
        "must not contain '/'"
    } else if name.starts_with('.') {
        "must not start with '.'"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(CertError::Invalid(format!(
        "bad certificate name `{name}`: {why}"
    )))
}

/// A certdir on disk.
#[derive(Clone, Debug)]
pub struct CertDir {
    root: PathBuf,
}

impl CertDir {
    /// Open an existing certdir (its subdirectories may be missing: they read as empty).
    pub fn open(path: impl AsRef<Path>) -> Result<CertDir, CertError> {
        let root = std::path::absolute(expand_home(path.as_ref()))
            .map_err(|e| CertError::io(path.as_ref(), e))?;
        if !root.is_dir() {
            return Err(CertError::NoCertDir(vec![root]));
        }
        Ok(CertDir { root })
    }

    /// Open a certdir, creating it and `cas/`, `hosts/`, `users/` as needed (as Synapse does).
    pub fn create(path: impl AsRef<Path>) -> Result<CertDir, CertError> {
        let root = std::path::absolute(expand_home(path.as_ref()))
            .map_err(|e| CertError::io(path.as_ref(), e))?;
        for kind in CertKind::ALL {
            let dir = root.join(kind.dir());
            fs::create_dir_all(&dir).map_err(|e| CertError::io(&dir, e))?;
        }
        Ok(CertDir { root })
    }

    /// The certdir a TLS listener or client uses: `explicit` if given (it must exist), else the
    /// first existing one of `$SYN_CERTDIR`, `service_dir/certs` and `~/.syn/certs`.
    pub fn locate(
        explicit: Option<&Path>,
        service_dir: Option<&Path>,
    ) -> Result<CertDir, CertError> {
        match explicit {
            Some(path) => CertDir::open(path),
            None => CertDir::find(&candidate_dirs(None, service_dir)),
        }
    }

    /// The first candidate that is an existing directory (see [`candidate_dirs`]).
    pub fn find(candidates: &[PathBuf]) -> Result<CertDir, CertError> {
        candidates
            .iter()
            .find(|p| p.is_dir())
            .map(CertDir::open)
            .unwrap_or_else(|| Err(CertError::NoCertDir(candidates.to_vec())))
    }

    /// The certdir's absolute path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `ROOT/<kind dir>/<name>.<ext>`.
    pub fn file(&self, kind: CertKind, name: &str, ext: &str) -> PathBuf {
        self.root.join(kind.dir()).join(format!("{name}.{ext}"))
    }

    /// The certificate of CA `name` (`cas/<name>.crt`).
    pub fn ca_cert(&self, name: &str) -> Result<CertificateDer<'static>, CertError> {
        check_name(name)?;
        let mut certs = load_certs(&self.file(CertKind::Ca, name, "crt"))?;
        Ok(certs.remove(0))
    }

    /// Every `cas/*.crt` as a trust anchor.
    pub fn ca_roots(&self) -> Result<RootCertStore, CertError> {
        let mut roots = RootCertStore::empty();
        for path in self.crt_files(CertKind::Ca)? {
            let certs = load_certs(&path)?;
            roots
                .add(certs[0].clone())
                .map_err(|e| CertError::bad(&path, format!("unusable as a trust anchor: {e}")))?;
        }
        Ok(roots)
    }

    /// `hosts/<name>.crt` (plus intermediates) and `hosts/<name>.key`, checked to match.
    pub fn host_cert(&self, name: &str) -> Result<CertKey, CertError> {
        self.cert_key(CertKind::Host, name)
    }

    /// `users/<name>.crt` (plus intermediates) and `users/<name>.key`, checked to match.
    pub fn user_cert(&self, name: &str) -> Result<CertKey, CertError> {
        self.cert_key(CertKind::User, name)
    }

    /// The user cert to present to `host` as `user`: the first of `user@a.b.c`,
    /// `user@b.c`, `user@c` that exists in `users/` (Synapse's `getUserForHost`).
    pub fn user_for_host(&self, user: &str, host: &str) -> Option<String> {
        let labels: Vec<&str> = host.split('.').collect();
        (0..labels.len())
            .map(|i| format!("{user}@{}", labels[i..].join(".")))
            .find(|name| {
                check_name(name).is_ok() && self.file(CertKind::User, name, "crt").is_file()
            })
    }

    fn cert_key(&self, kind: CertKind, name: &str) -> Result<CertKey, CertError> {
        check_name(name)?;
        let crt = self.file(kind, name, "crt");
        let key_path = self.file(kind, name, "key");
        let chain = self.chain(&crt)?;
        let key = load_key(&key_path)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::bad(&key_path, format!("unusable private key: {e}")))?;
        let leaf = info::parse(&chain[0]).map_err(|e| e.in_file(&crt))?;
        if signer.public_key().as_deref() != Some(leaf.public_key().raw) {
            return Err(CertError::KeyMismatch {
                key: key_path,
                cert: crt,
            });
        }
        Ok(CertKey { chain, key })
    }

    /// The certificates in `crt`, followed (when the file holds only the leaf) by the
    /// intermediate CAs from `cas/` that issued it, up to a self-issued root (not included).
    fn chain(&self, crt: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
        let mut chain = load_certs(crt)?;
        if chain.len() > 1 {
            return Ok(chain);
        }
        for _ in 0..8 {
            let last = chain.last().expect("chain is never empty");
            let Some((_, ca)) = self.find_issuer(last)? else {
                break;
            };
            let ca_info = info::parse(&ca)?;
            if ca_info.subject().as_raw() == ca_info.issuer().as_raw() || chain.contains(&ca) {
                break;
            }
            chain.push(ca);
        }
        Ok(chain)
    }

    /// The CA in `cas/` whose subject is `cert`'s issuer and whose key signed it.
    pub(crate) fn find_issuer(
        &self,
        cert: &CertificateDer<'_>,
    ) -> Result<Option<(PathBuf, CertificateDer<'static>)>, CertError> {
        let parsed = info::parse(cert)?;
        for path in self.crt_files(CertKind::Ca)? {
            let Ok(mut certs) = load_certs(&path) else {
                continue;
            };
            let ca = certs.remove(0);
            let Ok(ca_parsed) = info::parse(&ca) else {
                continue;
            };
            if ca_parsed.subject().as_raw() == parsed.issuer().as_raw()
                && parsed
                    .verify_signature(Some(ca_parsed.public_key()))
                    .is_ok()
            {
                return Ok(Some((path, ca)));
            }
        }
        Ok(None)
    }

    /// The `.crt` files in one subdirectory, sorted; none if it does not exist.
    fn crt_files(&self, kind: CertKind) -> Result<Vec<PathBuf>, CertError> {
        let dir = self.root.join(kind.dir());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CertError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| CertError::io(&dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.ends_with(".crt") && !n.starts_with('.')) && path.is_file() {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every certificate in `cas/`, `hosts/` and `users/`.
    pub fn list(&self) -> Result<Listing, CertError> {
        let mut listing = Listing::default();
        for kind in CertKind::ALL {
            for path in self.crt_files(kind)? {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let read = load_certs(&path)
                    .and_then(|c| CertInfo::from_der(&c[0]).map_err(|e| e.in_file(&path)));
                match read {
                    Ok(info) => listing.certs.push(ListedCert {
                        kind,
                        name,
                        path,
                        info,
                    }),
                    Err(e) => listing.errors.push(e),
                }
            }
        }
        Ok(listing)
    }

    /// Check `hosts/<name>.crt` with rustls's webpki verifier: it chains to a CA in `cas/`,
    /// is in its validity period, and is valid for TLS server `server_name`.
    pub fn verify_host(&self, name: &str, server_name: &str) -> Result<(), CertError> {
        check_name(name)?;
        let crt = self.file(CertKind::Host, name, "crt");
        let chain = self.chain(&crt)?;
        let server = ServerName::try_from(server_name.to_string())
            .map_err(|_| CertError::Usage(format!("bad server name `{server_name}`")))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(self.roots_for(&crt)?, crypto_provider())
                .build()
                .map_err(|e| CertError::Untrusted {
                    path: crt.clone(),
                    reason: e.to_string(),
                })?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| self.untrusted(&crt, &e, Some(server_name)))
    }

    /// Check `users/<name>.crt` with rustls's webpki client verifier: it chains to a CA in
    /// `cas/`, is in its validity period, and may be used for TLS client authentication.
    pub fn verify_user(&self, name: &str) -> Result<(), CertError> {
        check_name(name)?;
        let crt = self.file(CertKind::User, name, "crt");
        let chain = self.chain(&crt)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots_for(&crt)?, crypto_provider())
                .build()
                .map_err(|e| CertError::Untrusted {
                    path: crt.clone(),
                    reason: e.to_string(),
                })?;
        verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map(|_| ())
            .map_err(|e| self.untrusted(&crt, &e, None))
    }

    fn roots_for(&self, crt: &Path) -> Result<Arc<RootCertStore>, CertError> {
        let roots = self.ca_roots()?;
        if roots.is_empty() {
            return Err(CertError::Untrusted {
                path: crt.to_path_buf(),
                reason: format!("no CA certificates in {}", self.root.join("cas").display()),
            });
        }
        Ok(Arc::new(roots))
    }

    fn untrusted(&self, crt: &Path, e: &rustls::Error, server_name: Option<&str>) -> CertError {
        use rustls::CertificateError as C;
        let reason = match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!(
                "not issued by any CA in {}",
                self.root.join("cas").display()
            ),
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => {
                format!("not valid for name {}", server_name.unwrap_or("?"))
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                "expired".into()
            }
            rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                "not valid yet".into()
            }
            other => other.to_string(),
        };
        CertError::Untrusted {
            path: crt.to_path_buf(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_come_in_the_documented_order() {
        let got = candidate_dirs(Some(Path::new("/explicit")), Some(Path::new("/srv/cortex")));
        assert_eq!(
            got.first().map(PathBuf::as_path),
            Some(Path::new("/explicit"))
        );
        let service = got
            .iter()
            .position(|p| p == Path::new("/srv/cortex/certs"))
            .unwrap();
        assert_eq!(service, got.len() - 2, "then ~/.syn/certs");
        assert!(got.last().unwrap().ends_with(".syn/certs"));
        assert!(
            candidate_dirs(None, None)
                .last()
                .unwrap()
                .ends_with(".syn/certs")
        );
    }

    #[test]
    fn names_that_would_leave_the_certdir_are_refused() {
        for bad in ["", "a/b", "..", ".hidden", "tab\there", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "vertex",
            "visi@vertex.link",
            "cortex.vertex.link",
            "10.0.0.1",
            "ünï",
        ] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn user_for_host_walks_up_the_fqdn() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertDir::create(tmp.path()).unwrap();
        fs::write(dir.file(CertKind::User, "visi@vertex.link", "crt"), "").unwrap();
        assert_eq!(
            dir.user_for_host("visi", "cortex.vertex.link").as_deref(),
            Some("visi@vertex.link")
        );
        assert_eq!(dir.user_for_host("root", "cortex.vertex.link"), None);
    }
}
