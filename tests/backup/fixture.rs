//! A small service for the backup tests and benchmark: the real cell runtime (directory lock,
//! unix socket, Cell API with `backupHold`) with two LMDB environments and an append-only log
//! that every `put` writes together, under the process's write gate, so a consistent backup
//! holds a write in all three or in none.
//!
//! A test or bench binary runs it in a child process of its own ([`serve`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use syn::cell::api::{CellApi, cell_methods};
use syn::cell::{self, Cell, Service, ServiceKind};
use syn::error::{SynErr, SynResult};
use syn::msgpack::Value;
use syn::storage::{AppendLogRegistration, Db, Slab, SlabOptions, register_append_log, write_gate};
use syn::telepath::{Api, HasMethods, Methods};

/// The log every `put` appends its sequence number to (8 bytes, big-endian).
pub const LOG_FILE: &str = "edits.log";
/// The environments every `put` writes (`slabs/<name>.lmdb`, database `items`).
pub const ENVS: [&str; 2] = ["alpha", "beta"];
/// Keys of filler records start with this (sequence keys are 8 bytes long).
pub const FILL_PREFIX: &[u8] = b"fill";

/// The fixture service.
pub struct Fixture {
    envs: Vec<(Slab, Db)>,
    log: Mutex<LogState>,
    durable: Arc<AtomicU64>,
    _registration: AppendLogRegistration,
}

struct LogState {
    next: u64,
    file: File,
}

/// `fixture DIR [options]`.
pub const KIND: ServiceKind<Fixture> = ServiceKind {
    name: "fixture",
    about: "A test service: two environments and a log written together",
    options: Vec::new,
    open: Fixture::open,
};

fn err(e: impl std::fmt::Display) -> SynErr {
    SynErr::new("SynErr", e.to_string())
}

impl Fixture {
    fn open(cell: Arc<Cell>) -> anyhow::Result<Arc<Fixture>> {
        let mut envs = Vec::new();
        for name in ENVS {
            let slab = Slab::open(cell.dir().slab_path(name), SlabOptions::default())?;
            let db = slab.db("items", false)?;
            envs.push((slab, db));
        }
        let path = cell.path().join(LOG_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        let durable = Arc::new(AtomicU64::new(len));
        let registration = {
            let durable = durable.clone();
            register_append_log(&path, move || durable.load(Ordering::SeqCst))?
        };
        Ok(Arc::new(Fixture {
            envs,
            log: Mutex::new(LogState {
                next: len / 8,
                file,
            }),
            durable,
            _registration: registration,
        }))
    }

    /// Write the next sequence number to both environments and the log; returns it.
    fn put(&self) -> SynResult<u64> {
        let _share = write_gate().enter();
        let mut log = self.log.lock().map_err(err)?;
        let seq = log.next;
        let key = seq.to_be_bytes();
        for (slab, db) in &self.envs {
            slab.write(|w| db.put(w, &key, b"acknowledged"))?;
        }
        log.file.write_all(&key).map_err(err)?;
        log.file.sync_data().map_err(err)?;
        self.durable.store((seq + 1) * 8, Ordering::SeqCst);
        log.next = seq + 1;
        Ok(seq)
    }

    /// Add `count` filler records of `size` bytes to both environments.
    fn fill(&self, count: u64, size: usize) -> SynResult<()> {
        let value = vec![0x5au8; size];
        for (slab, db) in &self.envs {
            let start = slab.read(|r| db.len(r))?;
            for chunk in (0..count).collect::<Vec<_>>().chunks(10_000) {
                slab.write(|w| {
                    for i in chunk {
                        let mut key = FILL_PREFIX.to_vec();
                        key.extend_from_slice(&(start + i).to_be_bytes());
                        db.put(w, &key, &value)?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// Delete every filler record but one in `keep_every`: a fragmented environment.
    fn trim(&self, keep_every: u64) -> SynResult<()> {
        for (slab, db) in &self.envs {
            let keys: Vec<Vec<u8>> = slab.read(|r| {
                let mut keys = Vec::new();
                for (i, entry) in db.prefix(r, FILL_PREFIX)?.enumerate() {
                    let (key, _) = entry?;
                    if !(i as u64).is_multiple_of(keep_every) {
                        keys.push(key.to_vec());
                    }
                }
                Ok(keys)
            })?;
            for chunk in keys.chunks(10_000) {
                slab.write(|w| {
                    for key in chunk {
                        db.delete(w, key)?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }
}

impl Service for Fixture {
    fn api(self: Arc<Self>, session: Arc<CellApi>, _path: &[String]) -> SynResult<Arc<dyn Api>> {
        Ok(Arc::new(FixtureApi {
            session,
            fixture: self,
        }))
    }
}

/// A session with the fixture: its own methods and the Cell API.
pub struct FixtureApi {
    session: Arc<CellApi>,
    fixture: Arc<Fixture>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SynResult<T> + Send + 'static,
) -> SynResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(err)?
}

static METHODS: LazyLock<Methods<FixtureApi>> = LazyLock::new(|| {
    Methods::<FixtureApi>::new("syn.tests.FixtureApi")
        .call("put", |api, args| async move {
            args.done()?;
            let fixture = api.fixture.clone();
            Ok(Value::from(blocking(move || fixture.put()).await? as i64))
        })
        .call("fill", |api, mut args| async move {
            let count: i64 = args.req(0, "count")?;
            let size: i64 = args.req(1, "size")?;
            args.done()?;
            let fixture = api.fixture.clone();
            blocking(move || fixture.fill(count as u64, size as usize)).await?;
            Ok(Value::Nil)
        })
        .call("trim", |api, mut args| async move {
            let keep_every: i64 = args.req(0, "keep_every")?;
            args.done()?;
            let fixture = api.fixture.clone();
            blocking(move || fixture.trim(keep_every.max(1) as u64)).await?;
            Ok(Value::Nil)
        })
        .call("count", |api, args| async move {
            args.done()?;
            let next = api.fixture.log.lock().map_err(err)?.next;
            Ok(Value::from(next as i64))
        })
        .inherit(cell_methods(), |api: &FixtureApi| api.session.clone())
        .build()
});

impl HasMethods for FixtureApi {
    fn methods() -> &'static Methods<Self> {
        &METHODS
    }
}

/// Run the fixture service with `args` (`DIR --telepath ... --auth-passwd ...`) until it is
/// told to stop; returns the exit code.
pub fn serve(args: Vec<String>) -> i32 {
    let argv = std::iter::once("fixture".to_owned()).chain(args);
    match KIND.command().try_get_matches_from(argv) {
        Ok(m) => cell::run(&KIND, &m),
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}
