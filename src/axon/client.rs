//! Moving files in and out of an axon (syn's or Synapse's) over telepath: what `syn pushfile`
//! and `syn pullfile` do, as Synapse's `pushfile` and `pullfile` tools do.

use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::Proxy;
use crate::telepath::client::Answer;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes sent per `write` of an upload.
const PIECE: usize = 8 * 1024 * 1024;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> SynErr {
    SynErr::new("AxonErr", format!("cannot {what} {}: {e}", path.display()))
}

/// Upload the file at `path` through an upload share; `(size, sha256)` as the axon saved it,
/// checked against the SHA-256 of what was read. `sent` is told the bytes sent so far.
pub async fn push(
    axon: &Proxy,
    path: &Path,
    sent: &mut dyn FnMut(u64),
) -> SynResult<(u64, [u8; 32])> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err("open", path, e))?;
    let Answer::Share(share, _) = axon.start(None, "upload", Vec::new(), Vec::new()).await? else {
        return Err(SynErr::new(
            "AxonErr",
            "upload() did not give an upload object",
        ));
    };
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; PIECE];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        axon.start(
            Some(&share),
            "write",
            vec![Value::Bin(buf[..n].to_vec())],
            Vec::new(),
        )
        .await?;
        total += n as u64;
        sent(total);
    }
    let saved = match axon
        .start(Some(&share), "save", Vec::new(), Vec::new())
        .await?
    {
        Answer::Value(v) => v,
        _ => {
            return Err(SynErr::new(
                "AxonErr",
                "save() did not answer (size, sha256)",
            ));
        }
    };
    let _ = axon.fini_share(&share).await;
    let pair = saved.as_array().unwrap_or_default();
    let size = pair.first().and_then(Value::as_i64).unwrap_or(-1);
    let sha256 = pair.get(1).and_then(Value::as_bin).unwrap_or_default();
    let ours = hash.finish();
    if size != total as i64 || sha256 != ours.as_ref() {
        return Err(SynErr::new(
            "AxonErr",
            format!(
                "{}: the axon saved {size} bytes with SHA-256 {}, but {total} bytes with SHA-256 {} were sent",
                path.display(),
                hex::encode(sha256),
                hex::encode(ours)
            ),
        ));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ours.as_ref());
    Ok((total, out))
}

/// Download the file `sha256` into `dest`: written to `dest.partial`, checked against its
/// SHA-256, synced and renamed, so `dest` is whole or absent. The number of bytes.
pub async fn pull(
    axon: &Proxy,
    sha256: &[u8; 32],
    dest: &Path,
    got: &mut dyn FnMut(u64),
) -> SynResult<u64> {
    let partial = PathBuf::from(format!("{}.partial", dest.display()));
    let result = pull_into(axon, sha256, &partial, got).await;
    let done = result.and_then(|size| {
        std::fs::rename(&partial, dest).map_err(|e| io_err("rename into", dest, e))?;
        Ok(size)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    done
}

async fn pull_into(
    axon: &Proxy,
    sha256: &[u8; 32],
    path: &Path,
    got: &mut dyn FnMut(u64),
) -> SynResult<u64> {
    let mut file = std::fs::File::create(path).map_err(|e| io_err("create", path, e))?;
    let mut chunks = axon
        .genr("get", vec![Value::Bin(sha256.to_vec())], Vec::new())
        .await?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut total = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let bytes = chunk
            .as_bin()
            .ok_or_else(|| SynErr::new("AxonErr", "get() yielded something that is not bytes"))?;
        file.write_all(bytes)
            .map_err(|e| io_err("write", path, e))?;
        hash.update(bytes);
        total += bytes.len() as u64;
        got(total);
    }
    if hash.finish().as_ref() != sha256 {
        return Err(SynErr::new(
            "AxonErr",
            format!(
                "the bytes received for {} have another SHA-256",
                hex::encode(sha256)
            ),
        ));
    }
    file.sync_all().map_err(|e| io_err("sync", path, e))?;
    Ok(total)
}
