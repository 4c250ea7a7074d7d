//! PKCS#12 (RFC 7292) files as Synapse HEAD writes them: the certificate, its issuing CA
//! and the key in the clear, under an integrity MAC keyed with the empty password
//! (HMAC-SHA-256, PKCS#12 key derivation). The file itself is created 0600.

use super::der;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};

const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 1];
const CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
const X509_CERT: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
const LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];
const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const MAC_ITERATIONS: u64 = 2048;

/// Build a PKCS#12 file holding `cert` (DER), `chain` (issuing CAs, DER) and `key_pkcs8`,
/// with `friendly_name` on the certificate and the key.
pub(crate) fn build(
    friendly_name: &str,
    cert: &[u8],
    chain: &[&[u8]],
    key_pkcs8: &[u8],
) -> Vec<u8> {
    let key_id = digest::digest(&digest::SHA256, cert);
    let attrs = der::set(&[
        &der::seq(&[
            &der::oid(FRIENDLY_NAME),
            &der::set(&[&der::bmp(friendly_name)]),
        ]),
        &der::seq(&[
            &der::oid(LOCAL_KEY_ID),
            &der::set(&[&der::octets(key_id.as_ref())]),
        ]),
    ]);
    let cert_bag = |der_cert: &[u8], attrs: Option<&[u8]>| {
        let value = der::seq(&[
            &der::oid(X509_CERT),
            &der::explicit(0, &der::octets(der_cert)),
        ]);
        let mut parts = vec![der::oid(CERT_BAG), der::explicit(0, &value)];
        parts.extend(attrs.map(<[u8]>::to_vec));
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        der::seq(&refs)
    };
    let mut cert_bags = vec![cert_bag(cert, Some(&attrs))];
    cert_bags.extend(chain.iter().map(|c| cert_bag(c, None)));
    let refs: Vec<&[u8]> = cert_bags.iter().map(Vec::as_slice).collect();
    let certs = der::seq(&refs);
    let key_bag = der::seq(&[&der::oid(KEY_BAG), &der::explicit(0, key_pkcs8), &attrs]);
    let keys = der::seq(&[&key_bag]);

    let data_info =
        |content: &[u8]| der::seq(&[&der::oid(DATA), &der::explicit(0, &der::octets(content))]);
    let auth_safe = der::seq(&[&data_info(&certs), &data_info(&keys)]);

    let mut salt = [0u8; 16];
    // SystemRandom only fails when the kernel has no entropy source at all.
    SystemRandom::new().fill(&mut salt).expect("system random");
    let mac_key = kdf_sha256(&[0, 0], &salt, 3, MAC_ITERATIONS);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key), &auth_safe);
    let mac_data = der::seq(&[
        &der::seq(&[
            &der::seq(&[&der::oid(SHA256), &der::null()]),
            &der::octets(tag.as_ref()),
        ]),
        &der::octets(&salt),
        &der::uint(MAC_ITERATIONS),
    ]);
    der::seq(&[&der::uint(3), &data_info(&auth_safe), &mac_data])
}

/// RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64), for an output of one hash length,
/// which is all a MAC key needs. `password` is the BMPString with its two-byte terminator.
fn kdf_sha256(password: &[u8], salt: &[u8], id: u8, iterations: u64) -> [u8; 32] {
    const V: usize = 64;
    let stretch = |s: &[u8]| -> Vec<u8> {
        if s.is_empty() {
            return Vec::new();
        }
        let len = V * s.len().div_ceil(V);
        s.iter().cycle().take(len).copied().collect()
    };
    let mut input = vec![id; V];
    input.extend(stretch(salt));
    input.extend(stretch(password));
    let mut a = digest::digest(&digest::SHA256, &input);
    for _ in 1..iterations {
        a = digest::digest(&digest::SHA256, a.as_ref());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(a.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_is_version_3_with_a_sha256_mac() {
        let p12 = build("me", &[0x30, 0x00], &[], &[0x30, 0x00]);
        let (tag, body, rest) = der::read(&p12).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let kids = der::children(body).unwrap();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[0], (0x02, &[3u8][..]));
        let mac = der::children(kids[2].1).unwrap();
        assert_eq!(mac[2], (0x02, &[0x08u8, 0x00][..]));
        assert_eq!(mac[1].1.len(), 16);
    }

    #[test]
    fn kdf_depends_on_every_input() {
        let base = kdf_sha256(&[0, 0], b"salt", 3, 2);
        assert_ne!(base, kdf_sha256(&[0, 0], b"salt", 1, 2));
        assert_ne!(base, kdf_sha256(&[0, 0], b"sal7", 3, 2));
        assert_ne!(base, kdf_sha256(&[0, 0], b"salt", 3, 3));
        assert_ne!(base, kdf_sha256(&[0, 0x61, 0, 0], b"salt", 3, 2));
    }
}
