//! Reading PEM files with one-line errors, and writing new files without ever
//! overwriting, exposing a secret, or leaving half a result behind.

use super::error::CertError;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Read a whole file; a missing file is `NotFound { what }`.
pub(crate) fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => CertError::NotFound {
            what,
            path: path.to_path_buf(),
        },
        _ => CertError::io(path, e),
    })
}

/// Every PEM section in `bytes`, with its label.
pub(crate) fn pem_sections(bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, CertError> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        out.push(item.map_err(|e| CertError::Invalid(describe_pem_error(&e)))?);
    }
    if out.is_empty() {
        return Err(CertError::Invalid("no PEM data found".into()));
    }
    Ok(out)
}

fn describe_pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "bad PEM: no -----END {}----- line (truncated file?)",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => "bad PEM: malformed BEGIN line".into(),
        pem::Error::Base64Decode(_) => "bad PEM: damaged base64 (truncated file?)".into(),
        other => format!("bad PEM: {other}"),
    }
}

/// Check that `der` is one complete X.509 certificate.
pub(crate) fn check_cert_der(der: &[u8]) -> Result<(), CertError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(CertError::Invalid(
            "bad certificate: trailing data after the certificate".into(),
        )),
        Err(e) => Err(CertError::Invalid(format!("bad certificate: {e}"))),
    }
}

/// All certificates in a PEM file, first one first; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_file(path, "certificate")?;
    certs_from_pem(&bytes).map_err(|e| e.in_file(path))
}

/// All certificates in PEM text; at least one, each complete.
pub(crate) fn certs_from_pem(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut certs = Vec::new();
    for (kind, der) in pem_sections(bytes)? {
        if kind == SectionKind::Certificate {
            check_cert_der(&der)?;
            certs.push(CertificateDer::from(der));
        }
    }
    if certs.is_empty() {
        return Err(CertError::Invalid("no CERTIFICATE in PEM".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or
/// SEC1 `EC PRIVATE KEY`, checked to be usable by rustls's ring provider.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read_file(path, "key")?;
    key_from_pem(&bytes).map_err(|e| e.in_file(path))
}

/// The single private key in PEM text.
pub(crate) fn key_from_pem(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    let mut keys = Vec::new();
    for (kind, der) in pem_sections(bytes)? {
        if let Some(key) = PrivateKeyDer::from_pem(kind, der) {
            keys.push(key);
        }
    }
    if keys.len() != 1 {
        return Err(CertError::Invalid(format!(
            "expected one private key in PEM, found {}",
            keys.len()
        )));
    }
    let key = keys.remove(0);
    rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Invalid(format!("unusable private key: {e}")))?;
    Ok(key)
}

/// The certificate signing request in a PEM file.
pub fn load_csr(path: &Path) -> Result<CertificateSigningRequestDer<'static>, CertError> {
    let bytes = read_file(path, "csr")?;
    csr_from_pem(&bytes).map_err(|e| e.in_file(path))
}

/// The single CSR in PEM text.
pub(crate) fn csr_from_pem(
    bytes: &[u8],
) -> Result<CertificateSigningRequestDer<'static>, CertError> {
    pem_sections(bytes)?
        .into_iter()
        .find(|(kind, _)| *kind == SectionKind::Csr)
        .map(|(_, der)| CertificateSigningRequestDer::from(der))
        .ok_or_else(|| CertError::Invalid("no CERTIFICATE REQUEST in PEM".into()))
}

/// One file for [`write_new_files`].
pub(crate) struct NewFile {
    /// Final path.
    pub path: PathBuf,
    /// Whole content.
    pub data: Vec<u8>,
    /// Private key material: created 0600 (otherwise 0644, less the umask).
    pub secret: bool,
}

/// Write every file or none of them. Each is written to a temporary file in its own
/// directory (already with its final mode), synced, then linked into place, which fails
/// rather than replace an existing file. On any failure the files this call already put
/// in place are removed again.
pub(crate) fn write_new_files(files: &[NewFile]) -> Result<(), CertError> {
    for f in files {
        if fs::symlink_metadata(&f.path).is_ok() {
            return Err(CertError::FileExists(f.path.clone()));
        }
    }
    let mut done: Vec<&Path> = Vec::new();
    for f in files {
        if let Err(e) = write_new(f) {
            for path in done {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        done.push(&f.path);
    }
    Ok(())
}

fn write_new(f: &NewFile) -> Result<(), CertError> {
    let dir = f.path.parent().unwrap_or(Path::new("."));
    let file_name = f
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        nonce()
    ));
    let mode = if f.secret { 0o600 } else { 0o644 };
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| CertError::io(&tmp, e))?;
        out.write_all(&f.data).map_err(|e| CertError::io(&tmp, e))?;
        out.sync_all().map_err(|e| CertError::io(&tmp, e))?;
        drop(out);
        match fs::hard_link(&tmp, &f.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(CertError::FileExists(f.path.clone()));
            }
            // Filesystems without hard links: fall back to a rename after a last check.
            Err(_) => {
                if fs::symlink_metadata(&f.path).is_ok() {
                    return Err(CertError::FileExists(f.path.clone()));
                }
                fs::rename(&tmp, &f.path).map_err(|e| CertError::io(&f.path, e))?;
            }
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn nonce() -> String {
    let mut bytes = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_with_modes_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("a.key");
        let crt = tmp.path().join("a.crt");
        write_new_files(&[
            NewFile {
                path: key.clone(),
                data: b"k".to_vec(),
                secret: true,
            },
            NewFile {
                path: crt.clone(),
                data: b"c".to_vec(),
                secret: false,
            },
        ])
        .unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // 0644 less the umask: never writable or executable by others.
        assert_eq!(fs::metadata(&crt).unwrap().permissions().mode() & 0o7133, 0);
        let err = write_new_files(&[NewFile {
            path: crt.clone(),
            data: b"x".to_vec(),
            secret: false,
        }])
        .unwrap_err();
        assert_eq!(err.to_string(), format!("file exists: {}", crt.display()));
        assert_eq!(fs::read(&crt).unwrap(), b"c");
        assert_eq!(names(tmp.path()), vec!["a.crt", "a.key"]);
    }

    #[test]
    fn removes_what_it_wrote_when_a_later_file_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("b.key");
        let crt = tmp.path().join("missing-dir").join("b.crt");
        let err = write_new_files(&[
            NewFile {
                path: key.clone(),
                data: b"k".to_vec(),
                secret: true,
            },
            NewFile {
                path: crt,
                data: b"c".to_vec(),
                secret: false,
            },
        ])
        .unwrap_err();
        assert!(matches!(err, CertError::Io { .. }), "{err}");
        assert!(
            names(tmp.path()).is_empty(),
            "left behind: {:?}",
            names(tmp.path())
        );
    }

    #[test]
    fn pem_errors_are_one_clear_line() {
        let der = rcgen::generate_simple_self_signed(vec!["x.test".into()])
            .unwrap()
            .cert
            .pem();
        let cut = &der.as_bytes()[..der.len() / 2];
        let err = certs_from_pem(cut)
            .unwrap_err()
            .in_file(Path::new("/d/x.crt"));
        assert_eq!(
            err.to_string(),
            "/d/x.crt: bad PEM: no -----END CERTIFICATE----- line (truncated file?)"
        );
        let err = certs_from_pem(b"hello").unwrap_err();
        assert_eq!(err.to_string(), "no PEM data found");
        let err = key_from_pem(der.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "expected one private key in PEM, found 0");
    }
}
