//! file:bytes (`sha256:<hex>`, `guid:<hex>`, or hashed from `hex:`/`base64:` bytes),
//! file:base and file:path.

use md5::Digest;

use super::basic::{is_guid_text, unhex};
use super::{no_norm, str_input};
use crate::cortex::model::py;
use crate::cortex::model::types::{Norm, Type};
use crate::error::SynResult;
use crate::msgpack::Value;

fn bytes_norm(bytes: &[u8]) -> Norm {
    let digest =
        |alg: &'static ring::digest::Algorithm| hex::encode(ring::digest::digest(alg, bytes));
    let sha256 = hex::encode(crate::guid::sha256(bytes));
    Norm::with_subs(
        format!("sha256:{sha256}"),
        vec![
            (
                "md5".into(),
                Value::Str(hex::encode(md5::Md5::digest(bytes))),
            ),
            (
                "sha1".into(),
                Value::Str(digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY)),
            ),
            ("sha256".into(), Value::Str(sha256)),
            ("sha512".into(), Value::Str(digest(&ring::digest::SHA512))),
            ("size".into(), Value::Int(bytes.len() as i128)),
        ],
    )
}

/// Python's non-strict `base64.b64decode` (binascii's decoder): characters outside the
/// alphabet are skipped, and a complete padding ends the input.
fn b64decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut quad, mut pads, mut left) = (0u8, 0u8, 0u8);
    for c in text.bytes() {
        if c == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        pads = 0;
        match quad {
            0 => {
                quad = 1;
                left = v;
            }
            1 => {
                quad = 2;
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                quad = 3;
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => {
                quad = 0;
                out.push((left << 6) | v);
                left = 0;
            }
        }
    }
    match quad {
        0 => Ok(out),
        1 => Err(format!(
            "Invalid base64-encoded string: number of data characters ({}) cannot be 1 more than a multiple of 4",
            out.len() / 3 * 4 + 1
        )),
        _ => Err("Incorrect padding".into()),
    }
}

/// synapse.models.files.FileBytes
pub(crate) fn norm_file_bytes(t: &Type, v: &Value) -> SynResult<Norm> {
    let valu = match v {
        Value::Bin(b) => return Ok(bytes_norm(b)),
        Value::Array(_) => {
            return super::basic::norm_guid(t, v)
                .map(|n| Norm::plain(format!("guid:{}", n.valu.as_str().unwrap_or_default())));
        }
        other => str_input(other).ok_or_else(|| no_norm(t, other))?,
    };
    if valu == "*" {
        return Ok(Norm::plain(format!("guid:{}", crate::guid::guid())));
    }
    let Some((kind, kval)) = valu.split_once(':') else {
        if valu.chars().count() == 64 {
            return match unhex(&valu) {
                Ok(_) => {
                    let low = valu.to_lowercase();
                    Ok(Norm::with_subs(
                        format!("sha256:{low}"),
                        vec![("sha256".into(), Value::Str(low))],
                    ))
                }
                Err(e) => Err(t.bad(format!(
                    "invalid unadorned file:bytes value: {e} - valu={valu}"
                ))),
            };
        }
        return Err(t.bad(format!(
            "unadorned file:bytes value is not a sha256 - valu={valu}"
        )));
    };
    if kind == "base64" {
        return b64decode(kval).map(|b| bytes_norm(&b)).map_err(|e| {
            t.bad(format!(
                "invalid file:bytes base64 value: {e} - valu={kval}"
            ))
        });
    }
    let kval = kval.to_lowercase();
    match kind {
        "hex" => unhex(&kval)
            .map(|b| bytes_norm(&b))
            .map_err(|e| t.bad(format!("invalid file:bytes hex value: {e} - valu={kval}"))),
        "guid" => {
            if is_guid_text(&kval) {
                Ok(Norm::plain(format!("guid:{kval}")))
            } else {
                Err(t.bad(format!("guid is not a guid - valu={kval}")))
            }
        }
        "sha256" => {
            if kval.chars().count() != 64 {
                return Err(t.bad(format!("invalid length for sha256 value - valu={kval}")));
            }
            unhex(&kval).map_err(|e| {
                t.bad(format!(
                    "invalid file:bytes sha256 value: {e} - valu={kval}"
                ))
            })?;
            Ok(Norm::with_subs(
                format!("sha256:{kval}"),
                vec![("sha256".into(), Value::Str(kval))],
            ))
        }
        _ => Err(t.bad(format!("unable to norm as file:bytes - valu={valu}"))),
    }
}

/// synapse.models.files.FileBase: a file name, lowercased, no `/`; sub `ext`.
pub(crate) fn norm_file_base(t: &Type, v: &Value) -> SynResult<Norm> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    let norm = py::strip(&text).to_lowercase().replace('\\', "/");
    if norm.contains('/') {
        return Err(t.bad("file:base may not contain /"));
    }
    let subs = match norm.rsplit_once('.') {
        Some((_, ext)) => vec![("ext".to_string(), Value::from(ext))],
        None => Vec::new(),
    };
    Ok(Norm::with_subs(norm, subs))
}

/// synapse.models.files.FilePath: lowercased, `/`-separated, `.` and `..` resolved; subs
/// `base`, `ext`, `dir`.
pub(crate) fn norm_file_path(t: &Type, v: &Value) -> SynResult<Norm> {
    let text = str_input(v).ok_or_else(|| no_norm(t, v))?;
    if text.is_empty() {
        return Ok(Norm::plain(""));
    }
    let lead = if text.starts_with('/') { "/" } else { "" };
    let valu = py::strip(&text).to_lowercase().replace('\\', "/");
    let valu = valu.trim_matches('/');
    if valu.is_empty() {
        return Ok(Norm::plain(""));
    }
    if valu == "." || valu == ".." {
        return Err(t.bad("Cannot norm a bare relative path."));
    }
    let mut path: Vec<&str> = Vec::new();
    for part in valu.split('/').filter(|p| !p.is_empty()) {
        match part {
            "." => {}
            ".." => {
                path.pop();
            }
            p => path.push(p),
        }
    }
    let Some(base) = path.last() else {
        return Ok(Norm::plain(""));
    };
    let mut subs = vec![("base".to_string(), Value::from(*base))];
    if let Some((_, ext)) = base.rsplit_once('.') {
        subs.push(("ext".into(), Value::from(ext)));
    }
    if path.len() > 1 {
        subs.push((
            "dir".into(),
            Value::Str(format!("{lead}{}", path[..path.len() - 1].join("/"))),
        ));
    }
    Ok(Norm::with_subs(format!("{lead}{}", path.join("/")), subs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_python() {
        assert_eq!(b64decode("QUJD").unwrap(), b"ABC");
        assert_eq!(b64decode("QUI=").unwrap(), b"AB");
        assert_eq!(b64decode("QQ==").unwrap(), b"A");
        assert_eq!(b64decode("QUJ").unwrap_err(), "Incorrect padding");
        assert!(
            b64decode("QUJDR")
                .unwrap_err()
                .contains("(5) cannot be 1 more")
        );
        assert_eq!(b64decode("QQ==QQ==").unwrap(), b"A");
        assert_eq!(b64decode("QQ=").unwrap_err(), "Incorrect padding");
    }
}
