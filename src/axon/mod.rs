//! `syn axon DIR`: Synapse's Axon, a store of files addressed by their SHA-256, spoken to with
//! Synapse 2.x's `AxonApi` (share `*` or `axon`).
//!
//! Files go in with `put`, `puts` or an upload share (`upload()`: `write(bytes)` any number of
//! times, then `save()`, reusable), come out in chunks with `get` (whole, or a byte range), and
//! are listed in the order they were added (`hashes`, which can wait for new ones) or by time
//! (`history`). Permissions are Synapse's: `axon.get`, `axon.has`, `axon.upload`, `axon.del`.
//! Uploads are spooled to an unlinked file in `DIR/tmp/` and hashed as they arrive; storage is
//! in [`store`].

pub mod client;
pub mod store;
mod text;

use crate::cell::api::{CellApi, blocking, cell_methods, timeout_arg, wait_for_more};
use crate::cell::config::{Config, Kind, Opt};
use crate::cell::{Cell, Service, ServiceKind};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::{Api, Args, Genr, HasMethods, Methods};
use std::io::{Seek, SeekFrom, Write};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;
use store::{Sha256, Store, sha256_arg};
use tokio::sync::mpsc;

/// Rows read from LMDB per step of `hashes` and `history`.
const READ_STEP: usize = 256;

/// A running axon.
pub struct AxonCell {
    cell: Arc<Cell>,
    store: Arc<Store>,
}

/// `syn axon`.
pub const AXON: ServiceKind<AxonCell> = ServiceKind {
    name: "axon",
    about: "Run a Synapse axon: files stored and fetched by SHA-256 over telepath",
    options: axon_options,
    open: AxonCell::open,
};

fn axon_options() -> Vec<Opt> {
    let limit = |key, help| Opt {
        key,
        kind: Kind::Int,
        default: None,
        help,
    };
    vec![
        limit(
            "max-bytes",
            "refuse new files (HitLimit) once the stored files hold this many bytes (Synapse's max:bytes)",
        ),
        limit(
            "max-count",
            "refuse new files (HitLimit) once this many files are stored (Synapse's max:count)",
        ),
    ]
}

/// The limits the configuration sets; each must be at least 1.
fn configured_limits(conf: &Config) -> anyhow::Result<store::Limits> {
    let positive = |key: &str| match conf.int(key) {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n as u64)),
        Some(n) => Err(anyhow::anyhow!("{key} must be at least 1, not {n}")),
    };
    Ok(store::Limits {
        max_bytes: positive("max-bytes")?,
        max_count: positive("max-count")?,
    })
}

impl AxonCell {
    fn open(cell: Arc<Cell>) -> anyhow::Result<Arc<AxonCell>> {
        let store = Store::open(cell.path()).map_err(|e| anyhow::anyhow!("{}", e.mesg()))?;
        store.set_limits(configured_limits(&cell.conf())?);
        Ok(Arc::new(AxonCell {
            cell,
            store: Arc::new(store),
        }))
    }
}

impl Service for AxonCell {
    fn api(self: Arc<Self>, session: Arc<CellApi>, path: &[String]) -> SynResult<Arc<dyn Api>> {
        match path {
            [] => Ok(Arc::new(AxonApi {
                cell: session,
                axon: self,
            })),
            _ => Err(crate::cell::no_such_path(path)),
        }
    }

    fn share_names(&self) -> &'static [&'static str] {
        &["axon"]
    }

    fn reload(&self, conf: &Config) {
        match configured_limits(conf) {
            Ok(limits) => self.store.set_limits(limits),
            Err(e) => tracing::warn!(error = %e, "the limits are kept as they were"),
        }
    }
}

/// The arguments of `readlines` and `jsonlines`: the file's SHA-256 (hex, as Synapse takes it
/// there, or bytes) and `errors` (default `ignore`).
fn text_args(mut args: Args) -> SynResult<(Vec<u8>, text::Errors)> {
    let sha256 = sha256_of(args.req::<Value>(0, "sha256")?)?;
    let errors = args.opt::<String>(1, "errors")?;
    args.done()?;
    Ok((
        sha256,
        text::Errors::parse(errors.as_deref().unwrap_or("ignore"))?,
    ))
}

/// A file's SHA-256 given as bytes or as a hex string.
fn sha256_of(value: Value) -> SynResult<Vec<u8>> {
    match value {
        Value::Str(hex) => hex::decode(&hex).map_err(|_| {
            SynErr::bad_arg("sha256 must be a hex string").with("sha256", hex.as_str())
        }),
        other => sha256_arg(&other),
    }
}

/// The format parameters of `csvrows` that Python's `csv.reader` takes as keywords, over the
/// dialect's: `delimiter`, `quotechar`, `escapechar` (one character each; the last two may be
/// None), `doublequote`, `skipinitialspace`, `strict` and `quoting` (0 or 1; 3, no quoting).
fn csv_params(args: &mut Args, format: &mut text::CsvFormat) -> SynResult<()> {
    // Keywords only: no position holds them.
    const KW: usize = usize::MAX;
    let one_char = |name: &str, text: String| -> SynResult<char> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(SynErr::bad_arg(format!(
                "\"{name}\" must be a 1-character string"
            ))),
        }
    };
    if let Some(text) = args.opt::<String>(KW, "delimiter")? {
        format.delimiter = one_char("delimiter", text)?;
    }
    for (name, slot) in [
        ("quotechar", &mut format.quotechar),
        ("escapechar", &mut format.escapechar),
    ] {
        match args.take(KW, name) {
            None => {}
            Some(Value::Nil) => *slot = None,
            Some(Value::Str(text)) => *slot = Some(one_char(name, text)?),
            Some(_) => {
                return Err(SynErr::bad_arg(format!(
                    "\"{name}\" must be a 1-character string or None"
                )));
            }
        }
    }
    for (name, slot) in [
        ("doublequote", &mut format.doublequote),
        ("skipinitialspace", &mut format.skipinitialspace),
        ("strict", &mut format.strict),
    ] {
        if let Some(flag) = args.opt::<bool>(KW, name)? {
            *slot = flag;
        }
    }
    match args.opt::<i64>(KW, "quoting")? {
        None | Some(0 | 1) => {}
        Some(3) => format.quotechar = None,
        Some(other) => {
            return Err(SynErr::bad_arg(format!(
                "quoting {other} is not read here (0, 1 and 3 are)"
            )));
        }
    }
    Ok(())
}

fn no_such_file(sha256: &[u8]) -> SynErr {
    SynErr::new("NoSuchFile", "Axon does not contain the requested file.")
        .with("sha256", hex::encode(sha256))
}

/// Bytes being uploaded: spooled to an unlinked file, hashed as they come.
struct Spool {
    file: std::fs::File,
    size: u64,
    hash: ring::digest::Context,
}

impl Spool {
    fn new(cell: &Cell) -> SynResult<Spool> {
        let dir = cell.path().join("tmp");
        let fail = |e: std::io::Error| {
            SynErr::new(
                "AxonErr",
                format!("cannot spool an upload in {}: {e}", dir.display()),
            )
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let path = dir.join(format!("upload-{}", crate::guid::guid()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(fail)?;
        // Unlinked at once: nothing is left behind however the process ends.
        std::fs::remove_file(&path).map_err(fail)?;
        Ok(Spool {
            file,
            size: 0,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> SynResult<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| SynErr::new("AxonErr", format!("cannot spool an upload: {e}")))?;
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Store what was written; `(size, sha256)`. The spool is empty again afterwards.
    fn save(&mut self, store: &Store) -> SynResult<Value> {
        let hash = std::mem::replace(
            &mut self.hash,
            ring::digest::Context::new(&ring::digest::SHA256),
        );
        let sha256: Sha256 = hash
            .finish()
            .as_ref()
            .try_into()
            .map_err(|_| SynErr::new("AxonErr", "a SHA-256 digest is 32 bytes"))?;
        let size = std::mem::take(&mut self.size);
        let saved = store.save(&sha256, &mut self.file, size);
        let reset = self
            .file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()));
        saved?;
        reset.map_err(|e| SynErr::new("AxonErr", format!("cannot reset an upload: {e}")))?;
        Ok(saved_pair(size, &sha256))
    }
}

/// `(size, sha256)`, as a save answers.
fn saved_pair(size: u64, sha256: &Sha256) -> Value {
    Value::Array(vec![Value::from(size), Value::Bin(sha256.to_vec())])
}

/// Store files held in memory; `(size, sha256)` of each.
fn put_all(store: &Store, files: &[&[u8]]) -> SynResult<Vec<Value>> {
    let hashed: Vec<(Sha256, &[u8])> = files
        .iter()
        .map(|bytes| (crate::guid::sha256(bytes), *bytes))
        .collect();
    store.save_bytes(&hashed)?;
    Ok(hashed
        .iter()
        .map(|(sha256, bytes)| saved_pair(bytes.len() as u64, sha256))
        .collect())
}

/// Read off the reactor what a stream needs next; `None` once the reader has been told why
/// there is nothing (the error, or NoSuchFile for a file deleted while it was read).
async fn read_next<T: Send + 'static>(
    tx: &mpsc::Sender<SynResult<Value>>,
    sha256: &Sha256,
    read: impl FnOnce() -> SynResult<Option<T>> + Send + 'static,
) -> Option<T> {
    let failure = match blocking(read).await {
        Ok(Some(found)) => return Some(found),
        Ok(None) => SynErr::new("NoSuchFile", "The file was deleted while it was read.")
            .with("sha256", hex::encode(sha256)),
        Err(e) => e,
    };
    let _ = tx.send(Err(failure)).await;
    None
}

/// Stream `len` bytes of `sha256` from byte `offs`, chunk by chunk. A file deleted while it
/// is read ends the stream with NoSuchFile rather than short.
fn chunks(store: Arc<Store>, sha256: Sha256, offs: u64, len: u64) -> Genr {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        if len == 0 {
            return;
        }
        let reader = store.clone();
        let Some(start) = read_next(&tx, &sha256, move || reader.chunk_at(&sha256, offs)).await
        else {
            return;
        };
        let (mut indx, mut skip) = (start.0, (offs - start.1) as usize);
        let mut left = len;
        while left > 0 {
            let reader = store.clone();
            let Some(chunk) = read_next(&tx, &sha256, move || reader.chunk(&sha256, indx)).await
            else {
                return;
            };
            let mut piece = if skip > 0 {
                chunk[skip.min(chunk.len())..].to_vec()
            } else {
                chunk
            };
            skip = 0;
            piece.truncate(left.min(piece.len() as u64) as usize);
            left -= piece.len() as u64;
            if tx.send(Ok(Value::Bin(piece))).await.is_err() {
                return;
            }
            indx += 1;
        }
    });
    rx
}

/// Stream `axonseqn` from `offs`; with `wait`, then follow new files (each wait at most
/// `timeout`).
fn follow_hashes(store: Arc<Store>, offs: u64, wait: bool, timeout: Option<Duration>) -> Genr {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut next = offs;
        let mut added = store.watch_next();
        loop {
            let reader = store.clone();
            let (rows, after) = match blocking(move || reader.hashes(next, READ_STEP)).await {
                Ok(read) => read,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let empty = after == next;
            next = after;
            for row in rows {
                if tx.send(Ok(row)).await.is_err() {
                    return;
                }
            }
            if !empty {
                continue;
            }
            if !wait {
                return;
            }
            if !wait_for_more(&mut added, |end| *end > next, timeout, &tx).await {
                return;
            }
        }
    });
    rx
}

/// Stream `history` rows from `tick` to `tock`.
fn follow_history(store: Arc<Store>, tick: u64, tock: Option<u64>) -> Genr {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let reader = store.clone();
            let read = blocking(move || reader.history(tick, tock, after, READ_STEP)).await;
            let (rows, last) = match read {
                Ok(read) => read,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let done = rows.len() < READ_STEP;
            for row in rows {
                if tx.send(Ok(row)).await.is_err() {
                    return;
                }
            }
            if done {
                return;
            }
            after = last;
        }
    });
    rx
}

/// An optional non-negative integer argument.
fn opt_u64(args: &mut Args, at: usize, name: &str) -> SynResult<Option<i64>> {
    match args.opt::<Value>(at, name)? {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| SynErr::bad_arg(format!("{name} must be an integer"))),
    }
}

/// A session's AxonApi.
pub struct AxonApi {
    cell: Arc<CellApi>,
    axon: Arc<AxonCell>,
}

impl AxonApi {
    fn req(&self, perm: &str) -> SynResult<()> {
        self.cell.req_allowed(&["axon", perm], None)
    }

    fn store(&self) -> Arc<Store> {
        self.axon.store.clone()
    }

    /// The stored file `sha256` and its size, or NoSuchFile.
    async fn req_has(&self, sha256: Vec<u8>) -> SynResult<(Sha256, u64)> {
        let store = self.store();
        let key = sha256.clone();
        let size = blocking(move || store.size(&key)).await?;
        match (Sha256::try_from(sha256.as_slice()), size) {
            (Ok(sha256), Some(size)) => Ok((sha256, size)),
            _ => Err(no_such_file(&sha256)),
        }
    }
}

static AXON_METHODS: LazyLock<Methods<AxonApi>> = LazyLock::new(|| {
    Methods::<AxonApi>::new("synapse.axon.AxonApi")
        .genr("get", |api, mut args| async move {
            let sha256 = sha256_arg(&args.req::<Value>(0, "sha256")?)?;
            let offs = opt_u64(&mut args, 1, "offs")?;
            let size = opt_u64(&mut args, 2, "size")?;
            args.done()?;
            api.req("get")?;
            let (sha256, fsize) = api.req_has(sha256).await?;
            if offs.is_none() && size.is_none() {
                return Ok(chunks(api.store(), sha256, 0, fsize));
            }
            let offs = offs.unwrap_or(0);
            if offs < 0 {
                return Err(SynErr::bad_arg("Offs must be >= 0").with("offs", offs));
            }
            let size = size.unwrap_or(i64::MAX);
            if size < 1 {
                return Err(SynErr::bad_arg("Size must be >= 1").with("size", size));
            }
            if offs as u64 >= fsize {
                // Past the end: one empty chunk, as Synapse answers.
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.send(Ok(Value::Bin(Vec::new()))).await;
                return Ok(rx);
            }
            let offs = offs as u64;
            Ok(chunks(
                api.store(),
                sha256,
                offs,
                (size as u64).min(fsize - offs),
            ))
        })
        .genr("readlines", |api, args| async move {
            let (sha256, errors) = text_args(args)?;
            api.req("get")?;
            let (sha256, size) = api.req_has(sha256).await?;
            Ok(text::lines(chunks(api.store(), sha256, 0, size), errors))
        })
        .genr("jsonlines", |api, args| async move {
            let (sha256, errors) = text_args(args)?;
            api.req("get")?;
            let (sha256, size) = api.req_has(sha256).await?;
            let bytes = chunks(api.store(), sha256, 0, size);
            Ok(text::json_lines(bytes, errors, hex::encode(sha256)))
        })
        .genr("csvrows", |api, mut args| async move {
            let sha256 = sha256_of(args.req::<Value>(0, "sha256")?)?;
            let dialect = args.opt::<String>(1, "dialect")?;
            let errors = args.opt::<String>(2, "errors")?;
            let mut format = text::CsvFormat::dialect(dialect.as_deref().unwrap_or("excel"))?;
            csv_params(&mut args, &mut format)?;
            args.done()?;
            let errors = text::Errors::parse(errors.as_deref().unwrap_or("ignore"))?;
            api.req("get")?;
            let (sha256, size) = api.req_has(sha256).await?;
            Ok(text::csv_rows(
                chunks(api.store(), sha256, 0, size),
                errors,
                format,
            ))
        })
        .call("has", |api, mut args| async move {
            let sha256 = sha256_arg(&args.req::<Value>(0, "sha256")?)?;
            args.done()?;
            api.req("has")?;
            let store = api.store();
            Ok(Value::from(
                blocking(move || store.size(&sha256)).await?.is_some(),
            ))
        })
        .call("size", |api, mut args| async move {
            let sha256 = sha256_arg(&args.req::<Value>(0, "sha256")?)?;
            args.done()?;
            api.req("has")?;
            let store = api.store();
            Ok(blocking(move || store.size(&sha256))
                .await?
                .map_or(Value::Nil, Value::from))
        })
        .call("hashset", |api, mut args| async move {
            let sha256 = sha256_arg(&args.req::<Value>(0, "sha256")?)?;
            args.done()?;
            api.req("has")?;
            let (sha256, _) = api.req_has(sha256).await?;
            let store = api.store();
            blocking(move || hashset(&store, &sha256)).await
        })
        .genr("hashes", |api, mut args| async move {
            let offs: i64 = args.req(0, "offs")?;
            let offs =
                u64::try_from(offs).map_err(|_| SynErr::bad_arg("offs must not be negative"))?;
            let wait = args.opt::<bool>(1, "wait")?.unwrap_or(false);
            let timeout = timeout_arg(&mut args, 2)?;
            args.done()?;
            api.req("has")?;
            Ok(follow_hashes(api.store(), offs, wait, timeout))
        })
        .genr("history", |api, mut args| async move {
            let tick: i64 = args.req(0, "tick")?;
            let tock = opt_u64(&mut args, 1, "tock")?;
            args.done()?;
            api.req("has")?;
            let (tick, tock) = (tick.max(0) as u64, tock.map(|t| t.max(0) as u64));
            Ok(follow_history(api.store(), tick, tock))
        })
        .call("wants", |api, mut args| async move {
            let hashes: Vec<Value> = args.req(0, "sha256s")?;
            args.done()?;
            api.req("has")?;
            let store = api.store();
            blocking(move || {
                let mut out = Vec::new();
                for v in hashes {
                    if store.size(&sha256_arg(&v)?)?.is_none() {
                        out.push(v);
                    }
                }
                Ok(Value::Array(out))
            })
            .await
        })
        .call("put", |api, mut args| async move {
            let bytes = args.req::<Value>(0, "byts")?;
            args.done()?;
            api.req("upload")?;
            let bytes = bytes
                .as_bin()
                .ok_or_else(|| SynErr::bad_arg("byts must be bytes"))?
                .to_vec();
            let store = api.store();
            blocking(move || Ok(put_all(&store, &[&bytes])?.remove(0))).await
        })
        .call("puts", |api, mut args| async move {
            let files: Vec<Value> = args.req(0, "files")?;
            args.done()?;
            api.req("upload")?;
            let store = api.store();
            blocking(move || {
                let bytes = files
                    .iter()
                    .map(|f| {
                        f.as_bin()
                            .ok_or_else(|| SynErr::bad_arg("files must be a list of bytes"))
                    })
                    .collect::<SynResult<Vec<&[u8]>>>()?;
                Ok(Value::Array(put_all(&store, &bytes)?))
            })
            .await
        })
        .share("upload", |api, args| async move {
            args.done()?;
            api.req("upload")?;
            let cell = api.axon.cell.clone();
            let spool = blocking(move || Spool::new(&cell)).await?;
            let share: Arc<dyn Api> = Arc::new(UploadApi {
                store: api.store(),
                spool: Arc::new(Mutex::new(spool)),
            });
            Ok(share)
        })
        .call("del_", |api, mut args| async move {
            let sha256 = sha256_arg(&args.req::<Value>(0, "sha256")?)?;
            args.done()?;
            api.req("del")?;
            let store = api.store();
            Ok(Value::from(blocking(move || store.delete(&sha256)).await?))
        })
        .call("dels", |api, mut args| async move {
            let hashes: Vec<Value> = args.req(0, "sha256s")?;
            args.done()?;
            api.req("del")?;
            let store = api.store();
            blocking(move || {
                let mut out = Vec::with_capacity(hashes.len());
                for v in hashes {
                    out.push(Value::from(store.delete(&sha256_arg(&v)?)?));
                }
                Ok(Value::Array(out))
            })
            .await
        })
        .call("metrics", |api, args| async move {
            args.done()?;
            api.req("has")?;
            let store = api.store();
            blocking(move || store.metrics()).await
        })
        .inherit(cell_methods(), |a: &AxonApi| a.cell.clone())
        .build()
});

impl HasMethods for AxonApi {
    fn methods() -> &'static Methods<Self> {
        &AXON_METHODS
    }
}

/// `{md5, sha1, sha256, sha512}` of a stored file, in hex.
fn hashset(store: &Store, sha256: &Sha256) -> SynResult<Value> {
    use md5::Digest as _;
    let mut md5 = md5::Md5::new();
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut sha2 = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sha5 = ring::digest::Context::new(&ring::digest::SHA512);
    let mut indx = 0;
    while let Some(chunk) = store.chunk(sha256, indx)? {
        md5.update(&chunk);
        sha1.update(&chunk);
        sha2.update(&chunk);
        sha5.update(&chunk);
        indx += 1;
    }
    Ok(Value::map([
        ("md5", Value::from(hex::encode(md5.finalize()))),
        ("sha1", Value::from(hex::encode(sha1.finish()))),
        ("sha256", Value::from(hex::encode(sha2.finish()))),
        ("sha512", Value::from(hex::encode(sha5.finish()))),
    ]))
}

/// An upload share: `write(byts)` then `save()`, any number of times.
pub struct UploadApi {
    store: Arc<Store>,
    spool: Arc<Mutex<Spool>>,
}

static UPLOAD_METHODS: LazyLock<Methods<UploadApi>> = LazyLock::new(|| {
    Methods::<UploadApi>::new("synapse.axon.UpLoadShare")
        .call("write", |api, mut args| async move {
            let bytes = args.req::<Value>(0, "byts")?;
            args.done()?;
            let bytes = bytes
                .as_bin()
                .ok_or_else(|| SynErr::bad_arg("byts must be bytes"))?
                .to_vec();
            let spool = api.spool.clone();
            blocking(move || {
                spool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write(&bytes)
            })
            .await?;
            Ok(Value::Nil)
        })
        .call("save", |api, args| async move {
            args.done()?;
            let (spool, store) = (api.spool.clone(), api.store.clone());
            blocking(move || {
                spool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .save(&store)
            })
            .await
        })
        .build()
});

impl HasMethods for UploadApi {
    fn methods() -> &'static Methods<Self> {
        &UPLOAD_METHODS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_deleted_while_it_is_read_ends_the_stream_with_nosuchfile() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let sha256 = crate::guid::sha256(b"abc");
        store.save_bytes(&[(sha256, b"abc")]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut whole = chunks(store.clone(), sha256, 1, 2);
            let got = whole.recv().await.unwrap().unwrap();
            assert_eq!(got, Value::Bin(b"bc".to_vec()));
            assert!(whole.recv().await.is_none());

            store.delete(&sha256).unwrap();
            let mut gone = chunks(store.clone(), sha256, 0, 3);
            let err = gone.recv().await.unwrap().unwrap_err();
            assert_eq!(err.name, "NoSuchFile");
            assert!(gone.recv().await.is_none());
        });
    }
}
