//! Synapse's identifiers: random guids, guids and buids derived from values.
//!
//! A guid is 32 lowercase hex characters: 16 random bytes, or `md5(msgpack(value))` when derived
//! from a value. A buid is 32 raw bytes: `sha256(msgpack(value))` when derived. Both hash the
//! exact msgpack bytes of [`crate::msgpack`].

use crate::msgpack::Value;
use md5::Digest;
use ring::rand::{SecureRandom, SystemRandom};

/// `n` random bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system generator only fails if the kernel cannot give randomness at all, in which case
    // nothing secure can continue.
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random generator failed");
    out
}

/// A new random guid.
pub fn guid() -> String {
    hex::encode(random_bytes::<16>())
}

/// The guid of a value: `md5(msgpack(value))` in hex.
pub fn guid_of(value: &Value) -> String {
    hex::encode(md5::Md5::digest(value.to_bytes()))
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The buid of a value: `sha256(msgpack(value))`.
pub fn buid_of(value: &Value) -> [u8; 32] {
    sha256(&value.to_bytes())
}

/// Whether `s` looks like a guid (32 lowercase hex characters).
pub fn is_guid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buid_matches_synapse() {
        // inet:ipv4=1.2.3.4 is stored as the int 0x01020304.
        let ndef = Value::Array(vec!["inet:ipv4".into(), Value::Int(0x01020304)]);
        assert_eq!(
            hex::encode(buid_of(&ndef)),
            "20153b758f9d5eaaa38e4f4a65c36da797c3e59e549620fa7c4895e1a920991f"
        );
    }

    #[test]
    fn random_guids_are_guids() {
        let (a, b) = (guid(), guid());
        assert!(is_guid(&a) && is_guid(&b));
        assert_ne!(a, b);
        assert!(!is_guid("ABC"));
        assert_eq!(guid_of(&Value::Nil).len(), 32);
    }
}
