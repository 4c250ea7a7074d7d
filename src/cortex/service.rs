//! The cortex service: a cell that holds the data model, its views and their layers, and
//! answers Synapse's CoreApi (`cortex` share) and LayerApi (`cortex/layer/<iden>`).
//!
//! Directory layout (beside the cell's): `layers/<iden>/` for each layer (see
//! [`crate::cortex::layer`]). Which views and layers exist is the cell slab's topology record
//! ([`crate::cortex::topology`]), made on first start; the [`Catalog`] opens every layer and
//! builds every view. Storm runs in the view `opts={'view': iden}` names, or the default view.

use super::catalog::{Catalog, no_such_view};
use super::layer::Layer;
use super::model::Model;
use super::storm::runtime::{call_storm, count_storm, run_storm};
use super::view::{View, ViewCatalog};
use crate::cell::api::{CellApi, cell_methods};
use crate::cell::config::Opt;
use crate::cell::{Cell, Service, ServiceKind};
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::{Api, Args, Genr, HasMethods, Methods};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::mpsc;

/// The directory of the cortex's layers, inside the service directory.
pub const LAYERS_DIR: &str = "layers";

/// A running cortex.
pub struct Cortex {
    model: Arc<Model>,
    /// Every view and layer.
    catalog: Arc<Catalog>,
    migration_mode: AtomicBool,
}

/// `syn cortex`.
pub const CORTEX: ServiceKind<Cortex> = ServiceKind {
    name: "cortex",
    about: "Run a Synapse cortex: the hypergraph database, its data model and layer over telepath",
    options: cortex_options,
    open: Cortex::open,
};

fn cortex_options() -> Vec<Opt> {
    Vec::new()
}

impl Cortex {
    fn open(cell: Arc<Cell>) -> anyhow::Result<Arc<Cortex>> {
        let model = Model::shared().map_err(|e| anyhow::anyhow!("loading the data model: {e}"))?;
        let root = cell
            .auth
            .user_by_name(crate::cell::auth::ROOT_USER)
            .map(|u| u.iden.clone())
            .unwrap_or_default();
        let catalog = Catalog::open(
            cell.slab.clone(),
            cell.path().join(LAYERS_DIR),
            model.clone(),
            cell.auth.clone(),
            &root,
        )
        .map_err(|e| anyhow::anyhow!("opening the cortex's views and layers: {e}"))?;
        Ok(Arc::new(Cortex {
            model,
            catalog,
            migration_mode: AtomicBool::new(false),
        }))
    }

    /// The default view's iden.
    pub fn view_iden(&self) -> String {
        self.catalog.default_view_iden()
    }

    /// View `iden` (the default view for `None`) as user `user` may use it: `NoSuchView`
    /// (`No such view iden=...`) if there is none, `AuthDeny` without `view.read` on a view
    /// other than the default.
    pub fn view(&self, iden: Option<&str>, user: &str) -> SynResult<Arc<View>> {
        self.catalog.view_for(iden, user)
    }

    /// The view storm opts name (`opts={'view': iden}`), or the default view, if `user` may
    /// read it.
    fn opts_view(&self, opts: &Value, user: &str) -> SynResult<Arc<View>> {
        match opts.get("view") {
            None | Some(Value::Nil) => self.view(None, user),
            Some(Value::Str(iden)) => self.view(Some(iden), user),
            Some(other) => Err(no_such_view(&other.to_string())),
        }
    }

    /// The layer with iden `iden`.
    fn layer(&self, iden: &str) -> SynResult<Layer> {
        self.catalog.layer(iden).ok_or_else(|| {
            SynErr::new("NoSuchLayer", format!("No layer with iden {iden}")).with("iden", iden)
        })
    }
}

impl Service for Cortex {
    fn api(self: Arc<Self>, session: Arc<CellApi>, path: &[String]) -> SynResult<Arc<dyn Api>> {
        match path {
            [] => Ok(Arc::new(CoreApi {
                cell: session,
                core: self,
            })),
            [l] if l == "layer" => {
                let layer = self.catalog.view(None)?.write_layer().clone();
                Ok(Arc::new(LayerApi {
                    cell: session,
                    layer,
                }))
            }
            [l, iden] if l == "layer" => {
                let layer = self.layer(iden)?;
                Ok(Arc::new(LayerApi {
                    cell: session,
                    layer,
                }))
            }
            _ => Err(
                SynErr::new("NoSuchPath", format!("no such path: {}", path.join("/"))).with(
                    "path",
                    Value::Array(path.iter().map(|p| p.as_str().into()).collect()),
                ),
            ),
        }
    }

    fn share_names(&self) -> &'static [&'static str] {
        &["cortex"]
    }

    fn close(&self) {
        for layer in self.catalog.layers() {
            if let Err(e) = layer.sync() {
                tracing::warn!(error = %e, layer = layer.iden(), "flushing a layer at shutdown failed");
            }
        }
    }
}

/// A session's CoreApi: the Cell API plus the cortex's own methods.
pub struct CoreApi {
    cell: Arc<CellApi>,
    core: Arc<Cortex>,
}

/// The `(text, opts)` arguments of the storm calls, with the session user.
fn storm_args(api: &CoreApi, mut args: Args) -> SynResult<(String, Value, String)> {
    let text = match args.take(0, "text") {
        Some(Value::Str(t)) => t,
        _ => return Err(SynErr::bad_arg("Storm query text must be a string")),
    };
    let opts = args.opt::<Value>(1, "opts")?.unwrap_or(Value::Nil);
    args.done()?;
    let mut user = api.cell.user_iden();
    if let Some(Value::Str(other)) = opts.get("user")
        && *other != user
    {
        api.cell.req_allowed(&["impersonate"], None)?;
        user = other.clone();
    }
    Ok((text, opts, user))
}

/// Run blocking Storm work off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SynResult<T> + Send + 'static,
) -> SynResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SynErr::new("SynErr", format!("storm task failed: {e}")))?
}

static CORE_METHODS: LazyLock<Methods<CoreApi>> = LazyLock::new(|| {
    Methods::<CoreApi>::new("synapse.cortex.CoreApi")
        .genr("storm", |api, args| async move {
            let (text, opts, user) = storm_args(&api, args)?;
            let view = api.core.opts_view(&opts, &user)?;
            let (msgs_tx, mut msgs) = mpsc::channel::<Value>(256);
            let (tx, rx): (mpsc::Sender<SynResult<Value>>, Genr) = mpsc::channel(256);
            let refused = tx.clone();
            tokio::task::spawn_blocking(move || {
                // Options refused before any message end the generator with that error.
                if let Err(e) = run_storm(&view, &text, &opts, &user, &msgs_tx) {
                    let _ = refused.blocking_send(Err(e));
                }
            });
            tokio::spawn(async move {
                while let Some(m) = msgs.recv().await {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(rx)
        })
        .call("callStorm", |api, args| async move {
            let (text, opts, user) = storm_args(&api, args)?;
            let view = api.core.opts_view(&opts, &user)?;
            blocking(move || call_storm(&view, &text, &opts, &user)).await
        })
        .call("count", |api, args| async move {
            let (text, opts, user) = storm_args(&api, args)?;
            let view = api.core.opts_view(&opts, &user)?;
            blocking(move || count_storm(&view, &text, &opts, &user).map(Value::from)).await
        })
        .call("getModelDict", |api, args| async move {
            args.done()?;
            Ok(api.core.model.model_dict())
        })
        .call("getModelDefs", |api, args| async move {
            args.done()?;
            Ok(api.core.model.model_defs())
        })
        .call("getFeedFuncs", |_api, args| async move {
            args.done()?;
            Ok(Value::Array(vec![Value::map([
                ("name", "syn.nodes".into()),
                (
                    "desc",
                    "Add nodes to the Cortex via the packed node format.".into(),
                ),
                (
                    "fulldoc",
                    "Add nodes to the Cortex via the packed node format.".into(),
                ),
            ])]))
        })
        .call("enableMigrationMode", |api, args| async move {
            args.done()?;
            api.cell.req_admin()?;
            api.core.migration_mode.store(true, Ordering::SeqCst);
            Ok(Value::Nil)
        })
        .call("disableMigrationMode", |api, args| async move {
            args.done()?;
            api.cell.req_admin()?;
            api.core.migration_mode.store(false, Ordering::SeqCst);
            Ok(Value::Nil)
        })
        .call("getViewIden", |api, args| async move {
            args.done()?;
            Ok(Value::from(api.core.view_iden()))
        })
        .call("getViewDef", |api, mut args| async move {
            let iden: Option<String> = args.opt(0, "iden")?;
            args.done()?;
            let iden = iden.unwrap_or_else(|| api.core.view_iden());
            Ok(api.core.catalog.view_def(&iden)?.unwrap_or(Value::Nil))
        })
        .inherit(cell_methods(), |c: &CoreApi| c.cell.clone())
        .build()
});

impl HasMethods for CoreApi {
    fn methods() -> &'static Methods<Self> {
        &CORE_METHODS
    }
}

/// A session's LayerApi for one layer: its edit log and direct nodeedits.
pub struct LayerApi {
    cell: Arc<CellApi>,
    layer: Layer,
}

impl LayerApi {
    fn perm(&self, what: &str) -> [String; 3] {
        ["layer".into(), what.into(), self.layer.iden().to_owned()]
    }

    /// Reading the log needs `layer.lift.<iden>` or `layer.read.<iden>`.
    fn req_read(&self) -> SynResult<()> {
        let lift = self.perm("lift");
        let lift: Vec<&str> = lift.iter().map(String::as_str).collect();
        if self.cell.req_allowed(&lift, None).is_ok() {
            return Ok(());
        }
        let read = self.perm("read");
        let read: Vec<&str> = read.iter().map(String::as_str).collect();
        self.cell.req_allowed(&read, None)
    }

    fn req_write(&self) -> SynResult<()> {
        let perm = self.perm("write");
        let perm: Vec<&str> = perm.iter().map(String::as_str).collect();
        self.cell.req_allowed(&perm, None)
    }

    /// Store nodeedits from the wire with `meta` (default: now and the session user).
    async fn store(self: &Arc<Self>, mut args: Args) -> SynResult<super::layer::Stored> {
        self.req_write()?;
        let edits: Vec<Value> = args.req(0, "nodeedits")?;
        let meta: Option<Value> = args.opt(1, "meta")?;
        args.done()?;
        let edits = edits
            .iter()
            .map(super::edits::NodeEdit::from_value)
            .collect::<SynResult<Vec<_>>>()?;
        let meta = meta.unwrap_or_else(|| {
            Value::map([
                ("time", Value::from(now_ms())),
                ("user", Value::from(self.cell.user_iden())),
            ])
        });
        let layer = self.layer.clone();
        tokio::task::spawn_blocking(move || layer.store(&edits, &meta))
            .await
            .map_err(|e| SynErr::new("SynErr", format!("store failed: {e}")))?
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A log record as `syncNodeEdits` yields it: `(offset, nodeedits)`.
fn log_item(entry: &super::layer::LogEntry) -> Value {
    let edits = entry.edits.iter().map(|ne| ne.to_value()).collect();
    Value::Array(vec![Value::from(entry.offset), Value::Array(edits)])
}

fn offset_arg(args: &mut Args, idx: usize, name: &str) -> SynResult<u64> {
    let offs: i64 = args.req(idx, name)?;
    u64::try_from(offs).map_err(|_| SynErr::bad_arg(format!("{name} must not be negative")))
}

static LAYER_METHODS: LazyLock<Methods<LayerApi>> = LazyLock::new(|| {
    Methods::<LayerApi>::new("synapse.lib.layer.LayerApi")
        .call("getIden", |api, args| async move {
            args.done()?;
            api.req_read()?;
            Ok(Value::from(api.layer.iden()))
        })
        .call("getEditIndx", |api, args| async move {
            args.done()?;
            api.req_read()?;
            Ok(Value::from(api.layer.next_offset()))
        })
        .call("getEditSize", |api, args| async move {
            args.done()?;
            api.req_read()?;
            Ok(Value::from(api.layer.next_offset()))
        })
        .call("storNodeEdits", |api, args| async move {
            let stored = api.store(args).await?;
            let layer = api.layer.clone();
            let sodes = tokio::task::spawn_blocking(move || -> SynResult<Vec<Value>> {
                let reader = layer.reader()?;
                let mut out = Vec::new();
                for ne in &stored.applied {
                    if let Some(sode) = reader.sode(&ne.buid)? {
                        out.push(Value::Array(vec![
                            Value::Bin(ne.buid.to_vec()),
                            sode.to_value(),
                        ]));
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| SynErr::new("SynErr", format!("reading stored nodes failed: {e}")))??;
            Ok(Value::Array(sodes))
        })
        .call("storNodeEditsNoLift", |api, args| async move {
            api.store(args).await?;
            Ok(Value::Nil)
        })
        .genr("syncNodeEdits", |api, mut args| async move {
            let offs = offset_arg(&mut args, 0, "offs")?;
            let wait = args.opt::<bool>(1, "wait")?.unwrap_or(true);
            args.done()?;
            api.req_read()?;
            let (tx, rx): (mpsc::Sender<SynResult<Value>>, Genr) = mpsc::channel(64);
            if wait {
                // Everything from offs, then each new record as it lands.
                let mut entries = api.layer.sync_edits(offs);
                tokio::spawn(async move {
                    while let Some(entry) = entries.recv().await {
                        if tx.send(entry.map(|e| log_item(&e))).await.is_err() {
                            return;
                        }
                    }
                });
            } else {
                // Only what is in the log now.
                let layer = api.layer.clone();
                tokio::task::spawn_blocking(move || {
                    let entries = match layer.edits_from(offs) {
                        Ok(entries) => entries,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    };
                    for entry in entries {
                        let failed = entry.is_err();
                        if tx.blocking_send(entry.map(|e| log_item(&e))).is_err() || failed {
                            return;
                        }
                    }
                });
            }
            Ok(rx)
        })
        .genr("splices", |api, mut args| async move {
            let offs = match args.opt::<Vec<Value>>(0, "offs")? {
                None => (0, 0, 0),
                Some(o) => match o.as_slice() {
                    [a, b, c] => (
                        a.as_i64().unwrap_or(0).max(0) as u64,
                        b.as_i64().unwrap_or(0).max(0) as u64,
                        c.as_i64().unwrap_or(0).max(0) as u64,
                    ),
                    _ => return Err(SynErr::bad_arg("offs must be (offs, nodeoffs, editoffs)")),
                },
            };
            let size = args
                .opt::<i64>(1, "size")?
                .filter(|s| *s > 0)
                .map(|s| s as usize);
            args.done()?;
            api.req_read()?;
            let layer = api.layer.clone();
            let splices = tokio::task::spawn_blocking(move || layer.splices_from(offs, size))
                .await
                .map_err(|e| SynErr::new("SynErr", format!("reading splices failed: {e}")))??;
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                for ((o, n, e), (name, info)) in splices {
                    let offs = Value::Array(vec![o.into(), n.into(), e.into()]);
                    let item = Value::Array(vec![offs, Value::Array(vec![name.into(), info])]);
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(rx)
        })
        .inherit(cell_methods(), |l: &LayerApi| l.cell.clone())
        .build()
});

impl HasMethods for LayerApi {
    fn methods() -> &'static Methods<Self> {
        &LAYER_METHODS
    }
}
