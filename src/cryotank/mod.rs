//! `syn cryotank DIR`: Synapse's CryoCell, a service of named append-only logs ("tanks") of
//! msgpack items, spoken to with Synapse's `CryoApi` and `TankApi`.
//!
//! Layout (beside the cell's): each tank lives in `tanks/<iden>/tank.lmdb` with the logs
//! `items` and `metrics` ([`tank`]); the cell slab's database `cryo:names` maps each tank name
//! to msgpack `(iden, conf)`. A tank is made by the first call that names it.
//!
//! Shares: `*` and `cryotank` give the `CryoApi` (every call names its tank);
//! `cryotank/<name>` gives that tank's `TankApi`. Permissions are Synapse's: `cryo.tank.add`
//! on the gate `cryo` to make a tank (its maker becomes admin of the tank's gate),
//! `cryo.tank.read` and `cryo.tank.put` on the tank's iden, and `delete` for admins only.
//! `conf` is stored as given and not otherwise used (Synapse passes it to LMDB; syn's
//! environments grow by themselves).

pub mod tank;

pub use tank::Tank;

use crate::cell::api::{CellApi, blocking, cell_methods, timeout_arg, wait_for_more};
use crate::cell::{Cell, Service, ServiceKind};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::Db;
use crate::telepath::{Api, Args, Genr, HasMethods, Methods};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The directory of the tanks, inside the service directory.
pub const TANKS_DIR: &str = "tanks";

/// The cell slab database of tank names.
const NAMES_DB: &str = "cryo:names";

/// The auth gate on which `cryo.tank.add` is checked.
const CRYO_GATE: &str = "cryo";

/// Items read from LMDB per step of a generator.
const READ_STEP: usize = 256;

/// A running cryotank service.
pub struct CryoCell {
    cell: Arc<Cell>,
    /// Tank name -> msgpack `(iden, conf)`.
    names: Db,
    /// The open tanks by name, in the order they were made (as Synapse lists them; after a
    /// restart, in name order).
    tanks: RwLock<Vec<(String, Arc<Tank>)>>,
    /// Making and deleting tanks, one at a time.
    changing: Mutex<()>,
}

/// `syn cryotank`.
pub const CRYOTANK: ServiceKind<CryoCell> = ServiceKind {
    name: "cryotank",
    about: "Run a Synapse cryotank: named append-only logs of msgpack items over telepath",
    options: Vec::new,
    open: CryoCell::open,
};

impl CryoCell {
    fn open(cell: Arc<Cell>) -> anyhow::Result<Arc<CryoCell>> {
        let names = cell.slab.db(NAMES_DB, false)?;
        let stored: Vec<(Vec<u8>, Vec<u8>)> = cell.slab.read(|rtxn| {
            names
                .iter(rtxn)?
                .map(|entry| entry.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect()
        })?;
        let svc = CryoCell {
            tanks: RwLock::new(Vec::new()),
            changing: Mutex::new(()),
            names,
            cell,
        };
        for (key, value) in stored {
            let name = String::from_utf8_lossy(&key).into_owned();
            let iden = crate::msgpack::decode_exact(&value)
                .ok()
                .and_then(|v| v.as_array()?.first()?.as_str().map(str::to_owned))
                .ok_or_else(|| {
                    anyhow::anyhow!("{NAMES_DB}: the record of tank {name} is not (iden, conf)")
                })?;
            let tank = Tank::open(&svc.tank_dir(&iden), &iden)
                .map_err(|e| anyhow::anyhow!("opening tank {name} ({iden}): {}", e.mesg()))?;
            tracing::info!(%name, %iden, "tank online");
            svc.write_tanks().push((name, Arc::new(tank)));
        }
        Ok(Arc::new(svc))
    }

    fn tank_dir(&self, iden: &str) -> PathBuf {
        self.cell.path().join(TANKS_DIR).join(iden)
    }

    fn write_tanks(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(String, Arc<Tank>)>> {
        self.tanks.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, name: &str) -> Option<Arc<Tank>> {
        let tanks = self.tanks.read().unwrap_or_else(PoisonError::into_inner);
        tanks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    /// The tank `name`, made for `session`'s user (who needs `cryo.tank.add` and becomes admin
    /// of the new tank's gate) if it does not exist.
    pub fn init(&self, name: &str, conf: Value, session: &CellApi) -> SynResult<Arc<Tank>> {
        if let Some(tank) = self.get(name) {
            return Ok(tank);
        }
        session.req_allowed(&["cryo", "tank", "add"], Some(CRYO_GATE))?;
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tank) = self.get(name) {
            return Ok(tank);
        }
        let iden = crate::guid::guid();
        let tank = Arc::new(Tank::open(&self.tank_dir(&iden), &iden)?);
        let record = Value::Array(vec![Value::from(iden.as_str()), conf]);
        self.cell
            .slab
            .write(|wtxn| self.names.put_value(wtxn, name.as_bytes(), &record))?;
        self.write_tanks().push((name.to_owned(), tank.clone()));
        self.cell.auth.update_user(&session.user_iden(), |user| {
            user.gates.entry(iden.clone()).or_default().admin = true;
            Ok(())
        })?;
        tracing::info!(%name, %iden, "tank made");
        Ok(tank)
    }

    /// Delete the tank `name` and its directory; whether it existed.
    pub fn delete(&self, name: &str) -> SynResult<bool> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tank) = self.get(name) else {
            return Ok(false);
        };
        // The record goes first: a failure leaves the tank as it was.
        self.cell
            .slab
            .write(|wtxn| self.names.delete(wtxn, name.as_bytes()))?;
        self.write_tanks().retain(|(n, _)| n != name);
        tank.mark_deleted();
        let dir = self.tank_dir(tank.iden());
        drop(tank);
        std::fs::remove_dir_all(&dir).map_err(|e| {
            SynErr::new(
                "StorageError",
                format!("tank {name} is deleted but {} remains: {e}", dir.display()),
            )
        })?;
        tracing::info!(%name, "tank deleted");
        Ok(true)
    }

    /// `(name, info)` of every tank `session`'s user may read.
    fn list(&self, session: &CellApi) -> SynResult<Value> {
        let tanks = self
            .tanks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = Vec::new();
        for (name, tank) in tanks {
            if session
                .req_allowed(&["cryo", "tank", "read"], Some(tank.iden()))
                .is_err()
            {
                continue;
            }
            out.push(Value::Array(vec![Value::from(name), tank.info()?]));
        }
        Ok(Value::Array(out))
    }
}

impl Service for CryoCell {
    fn api(self: Arc<Self>, session: Arc<CellApi>, path: &[String]) -> SynResult<Arc<dyn Api>> {
        match path {
            [] => Ok(Arc::new(CryoApi {
                cell: session,
                cryo: self,
            })),
            [name] => {
                let tank = self.init(name, Value::Nil, &session)?;
                Ok(Arc::new(TankApi {
                    cell: session,
                    tank,
                }))
            }
            _ => Err(crate::cell::no_such_path(path)),
        }
    }

    fn share_names(&self) -> &'static [&'static str] {
        &["cryotank"]
    }
}

/// What a tank generator reads.
#[derive(Clone, Copy)]
enum Log {
    /// `(indx, item)`.
    Items,
    /// `(indx, msgpack bytes)`.
    Rows,
    /// `(indx, metrics record)`.
    Metrics,
}

/// How far a tank generator reads.
struct Reach {
    offs: u64,
    size: Option<usize>,
    /// Once caught up, wait for new items (each wait at most `timeout`).
    wait: bool,
    timeout: Option<Duration>,
}

impl Reach {
    /// `offs` and `size` from positions `at` and `at + 1`.
    fn from_args(args: &mut Args, at: usize) -> SynResult<Reach> {
        let offs: i64 = args.req(at, "offs")?;
        let offs = u64::try_from(offs).map_err(|_| SynErr::bad_arg("offs must not be negative"))?;
        let size = match args.opt::<Value>(at + 1, "size")? {
            None | Some(Value::Nil) => None,
            Some(v) => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| SynErr::bad_arg("size must be an integer"))?;
                Some(usize::try_from(n).unwrap_or(0))
            }
        };
        Ok(Reach {
            offs,
            size,
            wait: false,
            timeout: None,
        })
    }

    /// Also `wait` and `timeout` from positions `at` and `at + 1`.
    fn waiting(mut self, args: &mut Args, at: usize) -> SynResult<Reach> {
        self.wait = args.opt::<bool>(at, "wait")?.unwrap_or(false);
        self.timeout = timeout_arg(args, at + 1)?;
        Ok(self)
    }
}

/// Read `log` of `tank` as `reach` says, as a telepath generator of `(indx, value)` pairs.
fn stream(tank: Arc<Tank>, log: Log, reach: Reach) -> Genr {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut next = reach.offs;
        let mut left = reach.size.unwrap_or(usize::MAX);
        let mut added = tank.watch_next();
        while left > 0 {
            let reader = tank.clone();
            let step = left.min(READ_STEP);
            let batch = match blocking(move || read_log(&reader, log, next, step)).await {
                Ok(batch) => batch,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if batch.is_empty() {
                if !reach.wait {
                    return;
                }
                let more = |end: &u64| *end > next || tank.req_present().is_err();
                if !wait_for_more(&mut added, more, reach.timeout, &tx).await {
                    return;
                }
                continue;
            }
            for (indx, value) in batch {
                next = indx + 1;
                left -= 1;
                let pair = Value::Array(vec![Value::from(indx), value]);
                if tx.send(Ok(pair)).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn read_log(tank: &Tank, log: Log, offs: u64, max: usize) -> SynResult<Vec<(u64, Value)>> {
    match log {
        Log::Items => tank.items(offs, max),
        Log::Metrics => tank.metrics(offs, max),
        Log::Rows => Ok(tank
            .rows(offs, max)?
            .into_iter()
            .map(|(indx, bytes)| (indx, Value::Bin(bytes)))
            .collect()),
    }
}

/// The items of a `puts` call.
fn items_arg(args: &mut Args, at: usize) -> SynResult<Vec<Value>> {
    args.req::<Vec<Value>>(at, "items")
}

/// Append `items` off the reactor; the number added.
async fn put_items(tank: Arc<Tank>, items: Vec<Value>) -> SynResult<Value> {
    blocking(move || tank.puts(&items).map(Value::from)).await
}

/// A session's CryoApi: every call names its tank.
pub struct CryoApi {
    cell: Arc<CellApi>,
    cryo: Arc<CryoCell>,
}

impl CryoApi {
    /// The tank `name`; a missing one is made off the reactor (with `conf`).
    async fn init(&self, name: String, conf: Value) -> SynResult<Arc<Tank>> {
        if let Some(tank) = self.cryo.get(&name) {
            return Ok(tank);
        }
        let (cryo, cell) = (self.cryo.clone(), self.cell.clone());
        blocking(move || cryo.init(&name, conf, &cell)).await
    }

    /// The tank `name` (made if missing), once the user may `cryo.tank.<perm>` on it.
    async fn tank(&self, name: String, perm: &str) -> SynResult<Arc<Tank>> {
        let tank = self.init(name, Value::Nil).await?;
        self.cell
            .req_allowed(&["cryo", "tank", perm], Some(tank.iden()))?;
        Ok(tank)
    }
}

static CRYO_METHODS: LazyLock<Methods<CryoApi>> = LazyLock::new(|| {
    Methods::<CryoApi>::new("synapse.cryotank.CryoApi")
        .call("init", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let conf = args.opt::<Value>(1, "conf")?.unwrap_or(Value::Nil);
            args.done()?;
            let tank = api.init(name, conf).await?;
            Ok(Value::from(tank.iden()))
        })
        .call("list", |api, args| async move {
            args.done()?;
            let (cryo, cell) = (api.cryo.clone(), api.cell.clone());
            blocking(move || cryo.list(&cell)).await
        })
        .call("last", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            args.done()?;
            let tank = api.tank(name, "read").await?;
            Ok(match blocking(move || tank.last()).await? {
                Some((indx, item)) => Value::Array(vec![Value::from(indx), item]),
                None => Value::Nil,
            })
        })
        .call("puts", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let items = items_arg(&mut args, 1)?;
            args.done()?;
            let tank = api.tank(name, "put").await?;
            put_items(tank, items).await
        })
        .genr("slice", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let reach = Reach::from_args(&mut args, 1)?.waiting(&mut args, 3)?;
            args.done()?;
            Ok(stream(api.tank(name, "read").await?, Log::Items, reach))
        })
        .genr("rows", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let reach = Reach::from_args(&mut args, 1)?;
            args.done()?;
            Ok(stream(api.tank(name, "read").await?, Log::Rows, reach))
        })
        .genr("metrics", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let reach = Reach::from_args(&mut args, 1)?;
            args.done()?;
            Ok(stream(api.tank(name, "read").await?, Log::Metrics, reach))
        })
        .call("delete", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            args.done()?;
            api.cell.req_admin()?;
            let cryo = api.cryo.clone();
            Ok(Value::from(blocking(move || cryo.delete(&name)).await?))
        })
        .inherit(cell_methods(), |c: &CryoApi| c.cell.clone())
        .build()
});

impl HasMethods for CryoApi {
    fn methods() -> &'static Methods<Self> {
        &CRYO_METHODS
    }
}

/// A session's TankApi for one tank (share `cryotank/<name>`).
pub struct TankApi {
    cell: Arc<CellApi>,
    tank: Arc<Tank>,
}

impl TankApi {
    fn req(&self, perm: &str) -> SynResult<()> {
        self.cell
            .req_allowed(&["cryo", "tank", perm], Some(self.tank.iden()))
    }
}

static TANK_METHODS: LazyLock<Methods<TankApi>> = LazyLock::new(|| {
    Methods::<TankApi>::new("synapse.cryotank.TankApi")
        .call("iden", |api, args| async move {
            args.done()?;
            Ok(Value::from(api.tank.iden()))
        })
        .call("puts", |api, mut args| async move {
            let items = items_arg(&mut args, 0)?;
            args.done()?;
            api.req("put")?;
            put_items(api.tank.clone(), items).await
        })
        .genr("slice", |api, mut args| async move {
            let reach = Reach::from_args(&mut args, 0)?.waiting(&mut args, 2)?;
            args.done()?;
            api.req("read")?;
            Ok(stream(api.tank.clone(), Log::Items, reach))
        })
        .genr("metrics", |api, mut args| async move {
            let reach = Reach::from_args(&mut args, 0)?;
            args.done()?;
            api.req("read")?;
            Ok(stream(api.tank.clone(), Log::Metrics, reach))
        })
        .inherit(cell_methods(), |t: &TankApi| t.cell.clone())
        .build()
});

impl HasMethods for TankApi {
    fn methods() -> &'static Methods<Self> {
        &TANK_METHODS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach_of(args: Vec<Value>) -> SynResult<Reach> {
        let mut args = Args::from_wire(args, Vec::new()).expect("args");
        Reach::from_args(&mut args, 0)?.waiting(&mut args, 2)
    }

    #[test]
    fn slice_arguments_are_checked_not_trusted() {
        let ok = reach_of(vec![
            3i64.into(),
            Value::Nil,
            true.into(),
            Value::Float(0.5),
        ]);
        let ok = ok.expect("valid");
        assert_eq!((ok.offs, ok.size, ok.wait), (3, None, true));
        assert_eq!(ok.timeout, Some(Duration::from_millis(500)));
        for bad in [
            vec![(-1i64).into()],
            vec![0i64.into(), "many".into()],
            vec![0i64.into(), Value::Nil, true.into(), Value::Float(-1.0)],
            vec![0i64.into(), Value::Nil, true.into(), Value::Float(f64::NAN)],
            vec![0i64.into(), Value::Nil, true.into(), Value::Float(1e300)],
        ] {
            let err = reach_of(bad.clone()).err();
            assert_eq!(err.map(|e| e.name), Some("BadArg".to_owned()), "{bad:?}");
        }
    }

    fn follow_all(tank: &Arc<Tank>, timeout: Option<Duration>) -> Genr {
        let reach = Reach {
            offs: 0,
            size: None,
            wait: true,
            timeout,
        };
        stream(tank.clone(), Log::Items, reach)
    }

    #[tokio::test]
    async fn a_follower_that_goes_away_while_waiting_lets_the_tank_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tank = Arc::new(Tank::open(dir.path(), "t0").expect("open"));
        tank.puts(&[Value::from("only")]).expect("puts");
        let mut follower = follow_all(&tank, None);
        let first = follower.recv().await.expect("an item").expect("ok");
        assert_eq!(first, Value::Array(vec![0i64.into(), "only".into()]));
        // Caught up and waiting (no timeout): the generator's task holds the tank.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(Arc::strong_count(&tank), 2);
        drop(follower);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&tank) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the waiting task outlived its reader"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_follower_gets_items_written_after_it_caught_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tank = Arc::new(Tank::open(dir.path(), "t0").expect("open"));
        let mut follower = follow_all(&tank, Some(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let writer = tank.clone();
        tokio::task::spawn_blocking(move || writer.puts(&[Value::from("late")]))
            .await
            .expect("join")
            .expect("puts");
        let item = follower.recv().await.expect("an item").expect("ok");
        assert_eq!(item, Value::Array(vec![0i64.into(), "late".into()]));
    }
}
