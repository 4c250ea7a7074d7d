//! Private keys: generating them, and turning whatever PEM flavour a file holds
//! (PKCS#8, PKCS#1 from Python Synapse, SEC1 from `openssl ecparam`) into PKCS#8,
//! which is all rcgen can sign with when it runs on ring.

use super::der;
use super::error::CertError;
use rcgen::KeyPair;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const P384: &[u64] = &[1, 3, 132, 0, 34];

/// The kind of key `syn easycert` makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256, signing with SHA-256.
    #[default]
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 4096, as Python Synapse makes: refused by this build (ring cannot generate RSA keys).
    #[value(name = "rsa4096")]
    Rsa4096,
}

impl KeyType {
    /// A fresh key pair. RSA is refused: the ring backend (the only one this project
    /// allows) cannot generate RSA keys, though it signs with existing ones.
    pub fn generate(self) -> Result<KeyPair, CertError> {
        match self {
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| CertError::Invalid(format!("cannot generate a key: {e}"))),
            KeyType::Rsa4096 => Err(CertError::Unsupported(
                "--key-type rsa4096: this build cannot generate RSA keys (its ring crypto backend \
                 has no RSA key generation); use ecdsa-p256, or make the RSA key and a CSR with \
                 openssl and sign the CSR with --sign-csr"
                    .into(),
            )),
        }
    }
}

/// The key as PKCS#8 DER, converting PKCS#1 and SEC1 keys.
pub(crate) fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, CertError> {
    match key {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => {
            let alg = der::seq(&[&der::oid(RSA_ENCRYPTION), &der::null()]);
            Ok(wrap(&alg, k.secret_pkcs1_der()))
        }
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der()),
        _ => Err(CertError::Invalid("unsupported private key format".into())),
    }
}

fn wrap(alg: &[u8], inner: &[u8]) -> Vec<u8> {
    der::seq(&[&der::uint(0), alg, &der::octets(inner)])
}

/// SEC1 `ECPrivateKey` to PKCS#8: the curve moves from the key's `[0]` parameters to the
/// algorithm identifier (ring refuses keys that carry both), trying P-256 then P-384 when
/// the key does not name its curve.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, CertError> {
    let bad = || CertError::Invalid("malformed EC PRIVATE KEY".into());
    let (tag, content, _) = der::read(sec1).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let mut curve = None;
    let mut kept = Vec::new();
    for (tag, value) in der::children(content).ok_or_else(bad)? {
        if tag == 0xa0 {
            curve = Some(value.to_vec());
        } else {
            kept.push(der::tlv(tag, value));
        }
    }
    let parts: Vec<&[u8]> = kept.iter().map(Vec::as_slice).collect();
    let inner = der::seq(&parts);
    let curves = match curve {
        Some(c) => vec![c],
        None => vec![der::oid(P256), der::oid(P384)],
    };
    for c in curves {
        let alg = der::seq(&[&der::oid(EC_PUBLIC_KEY), &c]);
        let pkcs8 = wrap(&alg, &inner);
        if KeyPair::try_from(&PrivatePkcs8KeyDer::from(pkcs8.as_slice())).is_ok() {
            return Ok(pkcs8);
        }
    }
    Err(CertError::Invalid(
        "EC PRIVATE KEY on an unsupported curve (P-256 and P-384 only)".into(),
    ))
}

/// An rcgen signing key from any supported private key.
pub(crate) fn signing_key(key: &PrivateKeyDer<'_>) -> Result<KeyPair, CertError> {
    let pkcs8 = to_pkcs8(key)?;
    KeyPair::try_from(&PrivatePkcs8KeyDer::from(pkcs8.as_slice()))
        .map_err(|e| CertError::Invalid(format!("unusable private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;
    use rustls_pki_types::PrivateSec1KeyDer;

    #[test]
    fn sec1_with_curve_parameters_converts() {
        let key = KeyType::EcdsaP256.generate().unwrap();
        // ring's PKCS#8 holds ECPrivateKey {1, d, [1] Q}; add [0] P-256 as openssl does.
        let (_, body, _) = der::read(key.serialized_der()).unwrap();
        let kids = der::children(body).unwrap();
        let (_, inner) = kids[2];
        let (_, ec, _) = der::read(inner).unwrap();
        let mut parts: Vec<Vec<u8>> = der::children(ec)
            .unwrap()
            .into_iter()
            .map(|(t, v)| der::tlv(t, v))
            .collect();
        parts.insert(2, der::explicit(0, &der::oid(P256)));
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let sec1 = der::seq(&refs);
        let back = signing_key(&PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(sec1))).unwrap();
        assert_eq!(
            back.subject_public_key_info(),
            key.subject_public_key_info()
        );
        // ... and without the curve named.
        parts.remove(2);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let bare = der::seq(&refs);
        let back = signing_key(&PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(bare))).unwrap();
        assert_eq!(
            back.subject_public_key_info(),
            key.subject_public_key_info()
        );
    }

    #[test]
    fn rsa_generation_is_refused_with_a_reason() {
        let err = KeyType::Rsa4096.generate().unwrap_err();
        assert!(
            err.to_string().contains("cannot generate RSA keys"),
            "{err}"
        );
        assert_eq!(err.exit_code(), super::super::error::EXIT_USAGE);
    }
}
