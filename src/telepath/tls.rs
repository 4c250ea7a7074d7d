//! Telepath over TLS (`ssl://`): the listener side ([`TlsServer`]) and the client side
//! ([`TlsClient`]), both loading their certificates from a certdir.
//!
//! Listen URLs: `ssl://HOST:PORT/?hostname=NAME[,NAME2...]&ca=CA`. Each name serves
//! `hosts/NAME.crt`/`.key`, picked by the SNI the client sends; a client that sends none (it
//! connected by IP address) or an unknown one gets the first name. Without `hostname` the URL's
//! host is the name. With `ca`, every client must present a certificate signed by
//! `cas/CA.crt`; without it, a client certificate is optional but, when presented, must chain
//! to one of the certdir's CAs. The verified certificate's common name goes to the service as
//! [`Peer::Tls`](super::Peer::Tls) `cert_cn`, which logs that user in.
//!
//! Client URLs: `ssl://[user[:passwd]@]HOST:PORT/[share]?hostname=NAME&certname=NAME&certhash=HEX`.
//! The server must chain to a CA in the certdir's `cas/` and be valid for `hostname` (default:
//! the URL's host) by its subjectAltName or, as Synapse checks, by an exact common name.
//! `certname` presents `users/<certname>.crt`; a user without a password presents the user
//! certificate for `user@hostname` (found as Synapse does, walking up the domain). `certhash`
//! pins the server certificate by the SHA-256 of its DER and skips every other check of it,
//! as Synapse does.
//!
//! TLS 1.2 is the minimum. Errors are one line that says what is wrong and where.

use super::api::BoxFut;
use super::client::{ClientOptions, TlsConnect};
use super::link::BoxStream;
use super::server::TlsAccept;
use super::url::{Endpoint, TeleUrl};
use crate::certs::{CertDir, CertError, CertInfo, CertKey, CertKind, crypto_provider};
use crate::clock::rfc3339;
use crate::error::SynErr;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The TLS versions offered and accepted: 1.3 and 1.2, nothing older.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Why TLS could not be set up. `Display` is one line naming the file or URL at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or certdir is missing or unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The URL asks for something impossible.
    #[error("{0}")]
    Url(String),
    /// The TLS configuration cannot be built: rustls refused it, or there is no CA to verify with.
    #[error("{0}")]
    Config(String),
}

impl From<TlsError> for SynErr {
    fn from(e: TlsError) -> Self {
        let name = match &e {
            TlsError::Url(_) => "BadUrl",
            TlsError::Cert(CertError::NotFound { .. } | CertError::NoCertDir(_)) => "NoSuchCert",
            TlsError::Cert(CertError::Untrusted { .. }) => "BadCertVerify",
            TlsError::Cert(_) | TlsError::Config(_) => "BadCertBytes",
        };
        SynErr::new(name, e.to_string())
    }
}

/// Client options for `url`: TLS from the certdir (`certdir`, else `$SYN_CERTDIR`, else
/// `~/.syn/certs`) for an `ssl://` URL, plain defaults for the others.
pub fn client_options(url: &TeleUrl, certdir: Option<&Path>) -> Result<ClientOptions, TlsError> {
    let tls: Option<Arc<dyn TlsConnect>> = match url.endpoint {
        Endpoint::Ssl { .. } => Some(Arc::new(TlsClient::for_url(url, certdir)?)),
        _ => None,
    };
    Ok(ClientOptions {
        tls,
        ..ClientOptions::default()
    })
}

// ---------------------------------------------------------------------------------------------
// The listener side

/// A TLS listener's certificates and client-certificate policy, swapped whole on reload.
pub struct TlsServer {
    url: String,
    hostnames: Vec<String>,
    ca: Option<String>,
    loaded: RwLock<Arc<Loaded>>,
}

/// What a listener has read from its certdir.
struct Loaded {
    config: Arc<ServerConfig>,
    /// What client certificates must be signed by, for messages.
    trusted: String,
}

impl TlsServer {
    /// Load what the `ssl://` listen `url` asks for from `certdir`, checking every certificate
    /// (present, matching its key, in its validity period) and the `ca`.
    pub fn load(url: &TeleUrl, certdir: &CertDir) -> Result<TlsServer, TlsError> {
        let Endpoint::Ssl { host, .. } = &url.endpoint else {
            return Err(TlsError::Url(format!(
                "{} is not an ssl:// URL",
                url.redacted()
            )));
        };
        let hostnames: Vec<String> = match url.param("hostname") {
            Some(names) => names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec![host.clone()],
        };
        if hostnames.is_empty() {
            return Err(TlsError::Url(format!(
                "{}: hostname= names no host",
                url.redacted()
            )));
        }
        let ca = url.param("ca").map(str::to_owned);
        let loaded = load_server(&hostnames, ca.as_deref(), certdir)?;
        Ok(TlsServer {
            url: url.redacted(),
            hostnames,
            ca,
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Re-read the certificates from `certdir`. New connections get them; open ones keep what
    /// they have. On error nothing changes.
    pub fn reload(&self, certdir: &CertDir) -> Result<(), TlsError> {
        let loaded = load_server(&self.hostnames, self.ca.as_deref(), certdir)?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// The listen URL (password hidden), for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host names served, the default (for clients without SNI) first.
    pub fn hostnames(&self) -> &[String] {
        &self.hostnames
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl TlsAccept for TlsServer {
    fn accept(&self, sock: TcpStream) -> BoxFut<io::Result<(BoxStream, Option<String>)>> {
        let loaded = self.current();
        let acceptor = tokio_rustls::TlsAcceptor::from(loaded.config.clone());
        let blame = Blame {
            whose: "the client's certificate",
            peer: "client",
            trusted: loaded.trusted.clone(),
            required: self.ca.clone(),
            presents: true,
        };
        Box::pin(async move {
            let stream = acceptor.accept(sock).await.map_err(|e| blame.explain(e))?;
            let cert_cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| CertInfo::from_der(leaf).ok())
                .and_then(|info| info.common_name);
            let stream: BoxStream = Box::new(stream);
            Ok((stream, cert_cn))
        })
    }
}

fn load_server(
    hostnames: &[String],
    ca: Option<&str>,
    certdir: &CertDir,
) -> Result<Loaded, TlsError> {
    let provider = crypto_provider();
    let mut certs = Vec::with_capacity(hostnames.len());
    for name in hostnames {
        let pair = certdir.host_cert(name)?;
        check_validity(certdir, CertKind::Host, name, &pair)?;
        let crt = certdir.file(CertKind::Host, name, "crt");
        let key = CertifiedKey::from_der(pair.chain, pair.key, &provider)
            .map_err(|e| TlsError::Config(format!("{}: {e}", crt.display())))?;
        certs.push((name.to_ascii_lowercase(), Arc::new(key)));
    }
    let resolver = SniResolver::new(certs)
        .ok_or_else(|| TlsError::Config("an ssl:// listener needs a host name".into()))?;
    let verifier = match ca {
        Some(name) => {
            let mut roots = RootCertStore::empty();
            let crt = certdir.file(CertKind::Ca, name, "crt");
            roots.add(certdir.ca_cert(name)?).map_err(|e| {
                TlsError::Config(format!("{}: unusable as a CA: {e}", crt.display()))
            })?;
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(format!("{}: {e}", crt.display())))?
        }
        None => {
            let roots = certdir.ca_roots()?;
            if roots.is_empty() {
                WebPkiClientVerifier::no_client_auth()
            } else {
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| {
                        TlsError::Config(format!("{}: {e}", certdir.path().join("cas").display()))
                    })?
            }
        }
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    let trusted = match ca {
        Some(name) => format!(
            "CA {name} ({})",
            certdir.file(CertKind::Ca, name, "crt").display()
        ),
        None => format!("any CA in {}", certdir.path().join("cas").display()),
    };
    Ok(Loaded {
        config: Arc::new(config),
        trusted,
    })
}

/// Picks the host certificate by SNI; the first name serves clients that send no SNI or a
/// name not served here (rustls's own SNI resolver refuses those).
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    /// `None` without any certificate.
    fn new(by_name: Vec<(String, Arc<CertifiedKey>)>) -> Option<SniResolver> {
        let default = by_name.first()?.1.clone();
        Some(SniResolver { default, by_name })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asked = hello.server_name();
        let found = asked.and_then(|asked| {
            self.by_name
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(asked))
        });
        Some(found.map_or(&self.default, |(_, key)| key).clone())
    }
}

/// A certificate outside its validity period is refused when it is loaded, naming the file.
fn check_validity(
    certdir: &CertDir,
    kind: CertKind,
    name: &str,
    pair: &CertKey,
) -> Result<(), TlsError> {
    let crt = certdir.file(kind, name, "crt");
    let info = CertInfo::from_der(&pair.chain[0]).map_err(|e| match e {
        CertError::Invalid(reason) => CertError::BadFile {
            path: crt.clone(),
            reason,
        },
        other => other,
    })?;
    let now = OffsetDateTime::now_utc();
    let reason = if now > info.not_after {
        format!("expired on {}", rfc3339(info.not_after))
    } else if now < info.not_before {
        format!("not valid until {}", rfc3339(info.not_before))
    } else {
        return Ok(());
    };
    Err(CertError::Untrusted { path: crt, reason }.into())
}

// ---------------------------------------------------------------------------------------------
// The client side

/// How a client connects to one `ssl://` URL: its verifier, its client certificate (if any)
/// and the name it expects. Shared by every link of a proxy, so they resume TLS sessions.
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    blame: Arc<Blame>,
}

impl TlsClient {
    /// Set up TLS for the `ssl://` client `url`. The certdir is `certdir` if given (it must
    /// exist), else `$SYN_CERTDIR`, else `~/.syn/certs`; a URL with `certhash` and no client
    /// certificate needs none.
    pub fn for_url(url: &TeleUrl, certdir: Option<&Path>) -> Result<TlsClient, TlsError> {
        let Endpoint::Ssl { host, .. } = &url.endpoint else {
            return Err(TlsError::Url(format!(
                "{} is not an ssl:// URL",
                url.redacted()
            )));
        };
        let expected = url.param("hostname").unwrap_or(host);
        let server_name = ServerName::try_from(expected.to_owned()).map_err(|_| {
            TlsError::Url(format!(
                "{}: hostname {expected:?} is neither a DNS name nor an IP address",
                url.redacted()
            ))
        })?;
        let pinned = url
            .param("certhash")
            .map(|hash| parse_certhash(url, hash))
            .transpose()?;
        let certname = match (url.param("certname"), &url.user, &url.passwd) {
            (Some(name), _, _) => Some(name.to_owned()),
            (None, Some(user), None) => Some(format!("{user}@{expected}")),
            _ => None,
        };
        let provider = crypto_provider();
        let (verifier, blame, cas_dir) = match pinned {
            Some(sha256) => (
                ServerVerifier::Pinned {
                    sha256,
                    provider: provider.clone(),
                },
                Blame {
                    whose: "the server's certificate",
                    peer: "server",
                    trusted: "the pinned certhash".into(),
                    required: None,
                    presents: certname.is_some(),
                },
                None,
            ),
            None => {
                let dir = CertDir::locate(certdir, None)?;
                let cas = dir.path().join("cas");
                let roots = dir.ca_roots()?;
                if roots.is_empty() {
                    return Err(TlsError::Config(format!(
                        "no CA certificates in {} to verify {} with (add its CA, or pin it with ?certhash=)",
                        cas.display(),
                        url.redacted()
                    )));
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Config(format!("{}: {e}", cas.display())))?;
                let blame = Blame {
                    whose: "the server's certificate",
                    peer: "server",
                    trusted: format!("any CA in {}", cas.display()),
                    required: None,
                    presents: certname.is_some(),
                };
                (ServerVerifier::Chain(webpki), blame, Some(dir))
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match certname {
            None => builder.with_no_client_auth(),
            Some(asked) => {
                let dir = match cas_dir {
                    Some(dir) => dir,
                    None => CertDir::locate(certdir, None)?,
                };
                let name = user_cert_name(&dir, &asked)?;
                let pair = dir.user_cert(&name)?;
                check_validity(&dir, CertKind::User, &name, &pair)?;
                let crt = dir.file(CertKind::User, &name, "crt");
                builder
                    .with_client_auth_cert(pair.chain, pair.key)
                    .map_err(|e| TlsError::Config(format!("{}: {e}", crt.display())))?
            }
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            blame: Arc::new(blame),
        })
    }
}

impl TlsConnect for TlsClient {
    fn connect(&self, sock: TcpStream) -> BoxFut<io::Result<BoxStream>> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let name = self.server_name.clone();
        let blame = self.blame.clone();
        Box::pin(async move {
            let stream = connector
                .connect(name, sock)
                .await
                .map_err(|e| blame.explain(e))?;
            let stream: BoxStream = Box::new(Explained {
                inner: stream,
                blame,
            });
            Ok(stream)
        })
    }
}

/// The user certificate to present for `asked`: `user@host` is looked up as Synapse does
/// (`user@a.b.c`, then `user@b.c`, ...); any other name is taken as it is.
fn user_cert_name(dir: &CertDir, asked: &str) -> Result<String, TlsError> {
    let Some((user, host)) = asked.split_once('@') else {
        return Ok(asked.to_owned());
    };
    dir.user_for_host(user, host).ok_or_else(|| {
        CertError::NotFound {
            what: "user certificate",
            path: dir.file(CertKind::User, asked, "crt"),
        }
        .into()
    })
}

fn parse_certhash(url: &TeleUrl, hash: &str) -> Result<String, TlsError> {
    let hash = hash.to_ascii_lowercase();
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hash)
    } else {
        Err(TlsError::Url(format!(
            "{}: certhash must be the 64 hex digits of a SHA-256",
            url.redacted()
        )))
    }
}

/// Checks the server's certificate: against the certdir's CAs and the expected name, or
/// against a pinned SHA-256 only.
#[derive(Debug)]
enum ServerVerifier {
    /// webpki's chain and name checks, with Synapse's exact-CN match as a fallback for names.
    Chain(Arc<WebPkiServerVerifier>),
    /// The leaf's SHA-256 must be this (lowercase hex); nothing else is checked.
    Pinned {
        sha256: String,
        provider: Arc<CryptoProvider>,
    },
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self {
            ServerVerifier::Chain(webpki) => {
                let checked = webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                );
                match checked {
                    // webpki checks the name only once the chain and dates are good.
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    )) if common_name_is(end_entity, server_name) => {
                        Ok(ServerCertVerified::assertion())
                    }
                    other => other,
                }
            }
            ServerVerifier::Pinned { sha256, .. } => {
                let got = crate::certs::fingerprint_sha256(end_entity);
                if &got == sha256 {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                        rustls::OtherError(Arc::new(PinMismatch {
                            got,
                            want: sha256.clone(),
                        })),
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self {
            ServerVerifier::Chain(webpki) => webpki.verify_tls12_signature(message, cert, dss),
            ServerVerifier::Pinned { provider, .. } => rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &provider.signature_verification_algorithms,
            ),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self {
            ServerVerifier::Chain(webpki) => webpki.verify_tls13_signature(message, cert, dss),
            ServerVerifier::Pinned { provider, .. } => rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &provider.signature_verification_algorithms,
            ),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match self {
            ServerVerifier::Chain(webpki) => webpki.supported_verify_schemes(),
            ServerVerifier::Pinned { provider, .. } => provider
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }
}

/// The certificate's subject CN is exactly the expected name (Synapse's host check).
fn common_name_is(cert: &CertificateDer<'_>, expected: &ServerName<'_>) -> bool {
    let Ok(info) = CertInfo::from_der(cert) else {
        return false;
    };
    info.common_name
        .is_some_and(|cn| cn.eq_ignore_ascii_case(&expected.to_str()))
}

#[derive(Debug)]
struct PinMismatch {
    got: String,
    want: String,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "has SHA-256 {}, not the pinned certhash {}",
            self.got, self.want
        )
    }
}

impl std::error::Error for PinMismatch {}

// ---------------------------------------------------------------------------------------------
// Saying what went wrong

/// Who is checked, by what, for turning rustls errors into one plain line.
#[derive(Debug)]
struct Blame {
    /// "the server's certificate" or "the client's certificate".
    whose: &'static str,
    /// The other side: "server" or "client".
    peer: &'static str,
    /// What the certificate must be signed by, for messages.
    trusted: String,
    /// The CA a listener requires client certificates from.
    required: Option<String>,
    /// This side presents a certificate (a server always does; a client with `certname`).
    presents: bool,
}

impl Blame {
    /// The same error, its rustls cause told in words.
    fn explain(&self, err: io::Error) -> io::Error {
        if err.kind() == io::ErrorKind::UnexpectedEof
            && err.get_ref().is_none_or(|e| !e.is::<rustls::Error>())
        {
            return io::Error::new(
                err.kind(),
                format!(
                    "the {} closed the connection during the TLS handshake (does it speak TLS on this port?)",
                    self.peer
                ),
            );
        }
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return err;
        };
        io::Error::new(err.kind(), self.describe(tls))
    }

    fn describe(&self, err: &rustls::Error) -> String {
        use CertificateError as C;
        let whose = self.whose;
        match err {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => format!("{whose} is not signed by {}", self.trusted),
                // The issuer's name matches a trusted CA, but that CA's key did not sign it.
                C::BadSignature => format!(
                    "{whose} is not signed by {} (another CA of the same name signed it)",
                    self.trusted
                ),
                C::ExpiredContext { not_after, .. } => {
                    format!("{whose} expired on {}", unix_rfc3339(not_after))
                }
                C::Expired => format!("{whose} has expired"),
                C::NotValidYetContext { not_before, .. } => {
                    format!("{whose} is not valid until {}", unix_rfc3339(not_before))
                }
                C::NotValidYet => format!("{whose} is not valid yet"),
                C::NotValidForNameContext {
                    expected,
                    presented,
                } => format!(
                    "{whose} is not valid for {} (it names {})",
                    expected.to_str(),
                    if presented.is_empty() {
                        "nothing".to_owned()
                    } else {
                        presented
                            .iter()
                            .map(|name| plain_name(name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                C::NotValidForName => format!("{whose} is not valid for the name asked"),
                C::Other(other) => format!("{whose} {other}"),
                other => format!("{whose} is not acceptable: {other}"),
            },
            rustls::Error::NoCertificatesPresented => match &self.required {
                Some(ca) => format!(
                    "the client presented no certificate; this listener requires one signed by CA {ca}"
                ),
                None => format!("the {} presented no certificate", self.peer),
            },
            rustls::Error::AlertReceived(alert) => self.describe_alert(*alert),
            other => format!("TLS handshake with the {} failed: {other}", self.peer),
        }
    }

    fn describe_alert(&self, alert: AlertDescription) -> String {
        use AlertDescription as A;
        let peer = self.peer;
        match alert {
            A::CertificateRequired => {
                format!("the {peer} requires a client certificate (name one with ?certname=)")
            }
            A::UnknownCA
            | A::BadCertificate
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::AccessDenied => {
                format!("the {peer} refused our certificate (TLS alert {alert:?})")
            }
            // A signature that does not verify: in the client's case, most likely its
            // certificate's, issued by another CA of the same name.
            A::DecryptError if self.presents => {
                format!("the {peer} refused our certificate (TLS alert {alert:?})")
            }
            A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => format!(
                "the {peer} refused the TLS handshake (alert {alert:?}: no TLS version or cipher in common?)"
            ),
            other => format!("the {peer} ended the TLS handshake (alert {other:?})"),
        }
    }
}

/// `DNS:name` or `IP:addr` for rustls's `DnsName("name")` / `IpAddress(addr)`.
fn plain_name(presented: &str) -> String {
    let inner = |prefix: &str| {
        presented
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(|v| v.trim_matches('"').to_owned())
    };
    match (inner("DnsName("), inner("IpAddress(")) {
        (Some(dns), _) => format!("DNS:{dns}"),
        (_, Some(ip)) => format!("IP:{ip}"),
        _ => presented.to_owned(),
    }
}

fn unix_rfc3339(t: &UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| format!("{} (UNIX)", t.as_secs()), rfc3339)
}

/// A client TLS stream whose read errors say what the server's TLS alert means: in TLS 1.3 a
/// server refuses a client certificate only after the client's handshake has finished.
struct Explained<S> {
    inner: S,
    blame: Arc<Blame>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Explained<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(me.blame.explain(e))),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Explained<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
