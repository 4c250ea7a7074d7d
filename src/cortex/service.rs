//! The cortex service: a cell that holds the data model, its views and their layers, and
//! answers Synapse's CoreApi (`cortex` share) and LayerApi (`cortex/layer/<iden>`).
//!
//! Directory layout (beside the cell's): `layers/<iden>/` for each layer (see
//! [`crate::cortex::layer`]). Which views and layers exist is the cell slab's topology record
//! ([`crate::cortex::topology`]), made on first start; the [`Catalog`] opens every layer and
//! builds every view. Storm runs in the view `opts={'view': iden}` names, or the default view.
//!
//! The data model is the built-in one plus the cortex's extended model
//! ([`crate::cortex::model::ext`]), stored in the cell slab and changed by the CoreApi's
//! `addForm`/`addFormProp`/`addUnivProp`/`addTagProp` (and their `del` twins); the
//! `ext-model` option names a JSON file of items added at start. A change builds a new model
//! and rebuilds the views over it; storm runs already under way keep the model they started
//! with.

use super::catalog::{Catalog, no_such_view};
use super::editor::{Durability, EditSink, Editor};
use super::layer::Layer;
use super::mirror::{MIRROR_OPT, Mirror};
use super::model::Model;
use super::model::ext::{ExtForm, ExtFormProp, ExtModel, ExtPropDef};
use super::storm::runtime::{StormUser, call_storm, count_storm, run_storm};
use super::view::{View, ViewCatalog};
use crate::cell::api::{CellApi, blocking, cell_methods};
use crate::cell::auth::Auth;
use crate::cell::config::{Kind, Opt};
use crate::cell::{Cell, Service, ServiceKind};
use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::{Api, Args, Genr, HasMethods, Methods, Stream, Yield};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use tokio::sync::mpsc;

/// The directory of the cortex's layers, inside the service directory.
pub const LAYERS_DIR: &str = "layers";

/// A running cortex.
pub struct Cortex {
    /// The cell slab, which holds the extended model.
    slab: crate::storage::Slab,
    /// The built-in model with the extended model applied.
    model: RwLock<Arc<Model>>,
    /// The extended model as stored; its lock also orders model changes.
    ext: Mutex<ExtModel>,
    /// Every view and layer.
    catalog: Arc<Catalog>,
    migration_mode: AtomicBool,
    /// The mirror following a leader, while this cortex is one.
    mirror: Mutex<Option<Arc<Mirror>>>,
}

/// `syn cortex`.
pub const CORTEX: ServiceKind<Cortex> = ServiceKind {
    name: "cortex",
    about: "Run a Synapse cortex: the hypergraph database, its data model and layer over telepath",
    options: cortex_options,
    open: Cortex::open,
};

/// The option naming a JSON file of extended model items to add at start.
const EXT_MODEL_OPT: &str = "ext-model";

fn cortex_options() -> Vec<Opt> {
    vec![
        Opt {
            key: MIRROR_OPT,
            kind: Kind::Secret,
            default: None,
            help: "telepath URL of the leader cortex this one mirrors (start it from a backup of the leader); while set, changes are refused; remove it and reload to promote",
        },
        Opt {
            key: EXT_MODEL_OPT,
            kind: Kind::Str,
            default: None,
            help: "JSON file of extended model items added at start if missing: {\"forms\": [{formname, basetype, typeopts, typeinfo}], \"formprops\": [{form, prop, tdef, info}], \"univprops\": [{name, tdef, info}], \"tagprops\": [{name, tdef, info}]}",
        },
    ]
}

/// Read the `ext-model` file named by the configuration, if any.
fn configured_ext_model(cell: &Cell) -> anyhow::Result<Option<ExtModel>> {
    let Some(path) = cell.conf().str(EXT_MODEL_OPT).map(str::to_owned) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {EXT_MODEL_OPT} file {path}: {e}"))?;
    let ext = ExtModel::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{EXT_MODEL_OPT} file {path}: {}", e.mesg()))?;
    Ok(Some(ext))
}

impl Cortex {
    fn open(cell: Arc<Cell>) -> anyhow::Result<Arc<Cortex>> {
        let base = Model::shared().map_err(|e| anyhow::anyhow!("loading the data model: {e}"))?;
        let ext = ExtModel::load(&cell.slab)
            .map_err(|e| anyhow::anyhow!("reading the extended model: {e}"))?;
        let mut model = Model::clone(&base);
        for (item, err) in ext.apply(&mut model) {
            tracing::warn!(error = %err, "extended model: {item} is skipped");
        }
        let root = cell
            .auth
            .user_by_name(crate::cell::auth::ROOT_USER)
            .map(|u| u.iden.clone())
            .unwrap_or_default();
        let model = Arc::new(model);
        let catalog = Catalog::open(
            cell.slab.clone(),
            cell.path().join(LAYERS_DIR),
            model.clone(),
            cell.auth.clone(),
            &root,
        )
        .map_err(|e| anyhow::anyhow!("opening the cortex's views and layers: {e}"))?;
        let core = Arc::new(Cortex {
            slab: cell.slab.clone(),
            model: RwLock::new(model),
            ext: Mutex::new(ext),
            catalog,
            migration_mode: AtomicBool::new(false),
            mirror: Mutex::new(None),
        });
        if let Some(wanted) = configured_ext_model(&cell)? {
            core.add_configured(&wanted)
                .map_err(|e| anyhow::anyhow!("{EXT_MODEL_OPT}: {e}"))?;
        }
        *core.mirror.lock().unwrap_or_else(PoisonError::into_inner) =
            Mirror::configured(&cell, core.catalog.clone())?;
        Ok(core)
    }

    /// The data model now (built-in plus extended).
    pub fn model(&self) -> Arc<Model> {
        self.model
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The extended model now.
    pub fn ext_model(&self) -> ExtModel {
        self.ext
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Change the extended model: `change` edits a copy of the model and of the record; if it
    /// succeeds the record is stored and the new model (and views over it) take over.
    fn change_model(
        &self,
        change: impl FnOnce(&mut Model, &mut ExtModel) -> SynResult<()>,
    ) -> SynResult<()> {
        self.catalog.req_writable()?;
        let mut ext = self.ext.lock().unwrap_or_else(PoisonError::into_inner);
        let mut model = Model::clone(&self.model());
        let mut next = ext.clone();
        change(&mut model, &mut next)?;
        next.save(&self.slab)?;
        *ext = next;
        let model = Arc::new(model);
        self.catalog.set_model(model.clone());
        *self.model.write().unwrap_or_else(PoisonError::into_inner) = model;
        Ok(())
    }

    /// Add the items of `wanted` that are not in the extended model yet; an item that is
    /// there already must be declared the same way.
    fn add_configured(&self, wanted: &ExtModel) -> SynResult<()> {
        let have = self.ext_model();
        let differs = |what: String| {
            Err(SynErr::new(
                "BadConfValu",
                format!("{what} is already in the extended model with another definition"),
            ))
        };
        for f in &wanted.forms {
            match have.form(&f.formname) {
                Some(h) if h == f => {}
                Some(_) => return differs(format!("form {}", f.formname)),
                None => self.add_form(f.clone())?,
            }
        }
        for p in &wanted.formprops {
            match have.formprop(&p.form, &p.prop) {
                Some(h) if h == p => {}
                Some(_) => return differs(format!("form prop {}:{}", p.form, p.prop)),
                None => self.add_form_prop(p.clone())?,
            }
        }
        for u in &wanted.univprops {
            match have.univprop(&u.name) {
                Some(h) if h == u => {}
                Some(_) => return differs(format!("universal prop {}", u.name)),
                None => self.add_univ_prop(u.clone())?,
            }
        }
        for t in &wanted.tagprops {
            match have.tagprop(&t.name) {
                Some(h) if h == t => {}
                Some(_) => return differs(format!("tag prop {}", t.name)),
                None => self.add_tag_prop(t.clone())?,
            }
        }
        Ok(())
    }

    /// Synapse's `addForm`.
    pub fn add_form(&self, def: ExtForm) -> SynResult<()> {
        self.change_model(|model, ext| {
            model.add_form(&def.formname, &def.basetype, &def.typeopts, &def.typeinfo)?;
            ext.forms.push(def);
            Ok(())
        })
    }

    /// Synapse's `delForm`: refused while any layer has nodes of the form.
    pub fn del_form(&self, formname: &str) -> SynResult<()> {
        if !formname.starts_with('_') {
            return Err(
                SynErr::new("BadFormDef", "Extended form must begin with \"_\"")
                    .with("form", formname),
            );
        }
        self.model().req_form(formname)?;
        self.change_model(|model, ext| {
            self.refuse_in_use(
                |r| Ok(r.lift_form(formname)?.next().is_some()),
                |iden| {
                    SynErr::new(
                        "CantDelForm",
                        format!("Nodes still exist with form: {formname} in layer {iden}"),
                    )
                },
            )?;
            model.del_form(formname)?;
            ext.forms.retain(|f| f.formname != formname);
            Ok(())
        })
    }

    /// Synapse's `addFormProp`.
    pub fn add_form_prop(&self, def: ExtFormProp) -> SynResult<()> {
        self.change_model(|model, ext| {
            model.add_form_prop(&def.form, &def.prop, &def.tdef, &def.info)?;
            ext.formprops.push(def);
            Ok(())
        })
    }

    /// Synapse's `delFormProp`: only an extended prop, refused while any node has it.
    pub fn del_form_prop(&self, form: &str, prop: &str) -> SynResult<()> {
        self.change_model(|model, ext| {
            let full = format!("{form}:{prop}");
            if ext.formprop(form, prop).is_none() {
                return Err(
                    SynErr::new("NoSuchProp", format!("No ext prop named {full}"))
                        .with("form", form)
                        .with("prop", prop),
                );
            }
            if let Some(p) = model.prop(&full) {
                let stortype = p.stortype;
                self.refuse_in_use(
                    |r| {
                        Ok(
                            r.lift_prop(form, Some(prop), stortype, &super::layer::Cmp::Any)?
                                .next()
                                .is_some(),
                        )
                    },
                    |iden| {
                        SynErr::new(
                            "CantDelProp",
                            format!("Nodes still exist with prop: {full} in layer {iden}"),
                        )
                    },
                )?;
                model.del_form_prop(form, prop)?;
            }
            ext.formprops
                .retain(|p| !(p.form == form && p.prop == prop));
            Ok(())
        })
    }

    /// Synapse's `addUnivProp`.
    pub fn add_univ_prop(&self, def: ExtPropDef) -> SynResult<()> {
        self.change_model(|model, ext| {
            model.add_univ_prop(&def.name, &def.tdef, &def.info)?;
            ext.univprops.push(def);
            Ok(())
        })
    }

    /// Synapse's `delUnivProp`: only an extended one, refused while any node has it.
    pub fn del_univ_prop(&self, name: &str) -> SynResult<()> {
        self.change_model(|model, ext| {
            if ext.univprop(name).is_none() {
                return Err(
                    SynErr::new("NoSuchUniv", format!("No ext univ named {name}"))
                        .with("name", name),
                );
            }
            let univ = format!(".{name}");
            if let Some(p) = model.univ(&univ) {
                let stortype = p.stortype;
                self.refuse_in_use(
                    |r| {
                        Ok(r.lift_univ(&univ, None, stortype, &super::layer::Cmp::Any)?
                            .next()
                            .is_some())
                    },
                    |iden| {
                        SynErr::new(
                            "CantDelUniv",
                            format!(
                                "Nodes still exist with universal prop: {name} in layer {iden}"
                            ),
                        )
                    },
                )?;
                model.del_univ_prop(name)?;
            }
            ext.univprops.retain(|u| u.name != name);
            Ok(())
        })
    }

    /// Synapse's `addTagProp`.
    pub fn add_tag_prop(&self, def: ExtPropDef) -> SynResult<()> {
        self.change_model(|model, ext| {
            if ext.tagprop(&def.name).is_some() {
                // Synapse raises this one without a message.
                return Err(SynErr {
                    name: "DupPropName".into(),
                    info: vec![("name".into(), Value::from(def.name.as_str()))],
                });
            }
            model.add_tag_prop(&def.name, &def.tdef, &def.info)?;
            ext.tagprops.push(def);
            Ok(())
        })
    }

    /// Synapse's `delTagProp`: refused while any node has it.
    pub fn del_tag_prop(&self, name: &str) -> SynResult<()> {
        self.change_model(|model, ext| {
            if ext.tagprop(name).is_none() {
                return Err(
                    SynErr::new("NoSuchTagProp", format!("No tag prop named {name}"))
                        .with("name", name),
                );
            }
            if let Some(tp) = model.tagprop(name) {
                let stortype = tp.stortype;
                self.refuse_in_use(
                    |r| r.has_tagprop(name, stortype),
                    |iden| {
                        SynErr::new(
                            "CantDelProp",
                            format!("Nodes still exist with tagprop: {name} in layer {iden}"),
                        )
                    },
                )?;
                model.del_tag_prop(name)?;
            }
            ext.tagprops.retain(|t| t.name != name);
            Ok(())
        })
    }

    /// Fail with `err(layer iden)` if `in_use` holds for any layer.
    fn refuse_in_use(
        &self,
        in_use: impl Fn(&super::layer::LayerReader) -> SynResult<bool>,
        err: impl Fn(&str) -> SynErr,
    ) -> SynResult<()> {
        let mut layers = self.catalog.layers();
        layers.sort_by(|a, b| a.iden().cmp(b.iden()));
        for layer in layers {
            if in_use(&layer.reader()?)? {
                return Err(err(layer.iden()));
            }
        }
        Ok(())
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
            _ => Err(crate::cell::no_such_path(path)),
        }
    }

    fn share_names(&self) -> &'static [&'static str] {
        &["cortex"]
    }

    fn start(self: Arc<Self>) -> Option<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let mirror = self
            .mirror
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        Some(tokio::spawn(mirror.run()))
    }

    /// A mirror whose `mirror` option is gone is promoted: it stops following and takes
    /// changes. Starting to mirror, or another leader, needs a restart.
    fn reload(&self, conf: &crate::cell::config::Config) {
        let mut mirror = self.mirror.lock().unwrap_or_else(PoisonError::into_inner);
        match (mirror.as_ref(), conf.str(MIRROR_OPT)) {
            (Some(running), None) => {
                running.stop();
                tracing::info!(
                    "promoted: no longer mirroring {}; taking changes",
                    running.leader()
                );
                *mirror = None;
            }
            (None, Some(_)) => {
                tracing::warn!("{MIRROR_OPT} was set: restart the service to start mirroring")
            }
            (Some(running), Some(url)) => {
                let same = crate::telepath::TeleUrl::parse(url)
                    .is_ok_and(|u| u.redacted() == running.leader());
                if !same {
                    tracing::warn!(
                        "{MIRROR_OPT} changed: restart the service to follow another leader"
                    );
                }
            }
            (None, None) => {}
        }
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

/// The session user running storm, with the auth that checks their edits.
fn storm_user<'a>(iden: &'a str, auth: &'a Auth) -> StormUser<'a> {
    StormUser {
        iden,
        auth: Some(auth),
    }
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

/// The one feed function: packed nodes.
const FEED_SYN_NODES: &str = "syn.nodes";

/// Where a feed's warnings go: Synapse fires them at a snap nobody listens to; syn logs them
/// at debug level.
struct FeedWarnings;

impl EditSink for FeedWarnings {
    fn node_edits(&self, _edits: &std::sync::Arc<Vec<super::edits::NodeEdit>>) {}
    fn warn(&self, mesg: &str) {
        tracing::debug!("addFeedData: {mesg}");
    }
}

/// Synapse's check of a new prop name (`isBasePropNoPivprop`): `BadPropDef` `Invalid prop
/// name x` unless it is `[a-z_][a-z0-9_]*` parts joined by `:` or `.`.
fn req_prop_name(name: &str, key: &str) -> SynResult<()> {
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
    };
    if name.split([':', '.']).all(part_ok) {
        return Ok(());
    }
    Err(SynErr::new("BadPropDef", format!("Invalid prop name {name}")).with(key, name))
}

/// The `(name, tdef, info)` arguments of addUnivProp and addTagProp, the name checked.
fn propdef_args(mut args: Args) -> SynResult<ExtPropDef> {
    let name: String = args.req(0, "name")?;
    let tdef: Value = args.req(1, "tdef")?;
    let info: Value = args.req(2, "info")?;
    args.done()?;
    req_prop_name(&name, "name")?;
    Ok(ExtPropDef { name, tdef, info })
}

static CORE_METHODS: LazyLock<Methods<CoreApi>> = LazyLock::new(|| {
    Methods::<CoreApi>::new("synapse.cortex.CoreApi")
        .stream("storm", |api, args| async move {
            let (text, opts, user) = storm_args(&api, args)?;
            let view = api.core.opts_view(&opts, &user)?;
            // Room for what a fast query makes while the link collects a batch.
            let (tx, rx): (mpsc::Sender<SynResult<Yield>>, Stream) = mpsc::channel(1024);
            let auth = api.cell.cell.auth.clone();
            tokio::task::spawn_blocking(move || {
                // Options refused before any message end the generator with that error.
                let user = storm_user(&user, &auth);
                if let Err(e) = run_storm(&view, &text, &opts, user, &tx) {
                    let _ = tx.blocking_send(Err(e));
                }
            });
            Ok(rx)
        })
        .call("callStorm", |api, args| async move {
            let (text, opts, user) = storm_args(&api, args)?;
            let view = api.core.opts_view(&opts, &user)?;
            let auth = api.cell.cell.auth.clone();
            blocking(move || call_storm(&view, &text, &opts, storm_user(&user, &auth))).await
        })
        .call("count", |api, args| async move {
            let (text, opts, user) = storm_args(&api, args)?;
            let view = api.core.opts_view(&opts, &user)?;
            let auth = api.cell.cell.auth.clone();
            blocking(move || {
                count_storm(&view, &text, &opts, storm_user(&user, &auth)).map(Value::from)
            })
            .await
        })
        .call("getModelDict", |api, args| async move {
            args.done()?;
            Ok(api.core.model().model_dict())
        })
        .call("getModelDefs", |api, args| async move {
            args.done()?;
            Ok(api.core.model().model_defs())
        })
        .call("getFeedFuncs", |_api, args| async move {
            args.done()?;
            Ok(Value::Array(vec![Value::map([
                ("name", FEED_SYN_NODES.into()),
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
        .call("addForm", |api, mut args| async move {
            let formname: String = args.req(0, "formname")?;
            let basetype: String = args.req(1, "basetype")?;
            let typeopts: Value = args.req(2, "typeopts")?;
            let typeinfo: Value = args.req(3, "typeinfo")?;
            args.done()?;
            api.cell
                .req_allowed(&["model", "form", "add", &formname], None)?;
            let def = ExtForm {
                formname,
                basetype,
                typeopts,
                typeinfo,
            };
            let core = api.core.clone();
            blocking(move || core.add_form(def)).await?;
            Ok(Value::Nil)
        })
        .call("delForm", |api, mut args| async move {
            let formname: String = args.req(0, "formname")?;
            args.done()?;
            api.cell
                .req_allowed(&["model", "form", "del", &formname], None)?;
            let core = api.core.clone();
            blocking(move || core.del_form(&formname)).await?;
            Ok(Value::Nil)
        })
        .call("addFormProp", |api, mut args| async move {
            let form: String = args.req(0, "form")?;
            let prop: String = args.req(1, "prop")?;
            let tdef: Value = args.req(2, "tdef")?;
            let info: Value = args.req(3, "info")?;
            args.done()?;
            api.cell
                .req_allowed(&["model", "prop", "add", &form], None)?;
            req_prop_name(&prop, "prop")?;
            let def = ExtFormProp {
                form,
                prop,
                tdef,
                info,
            };
            let core = api.core.clone();
            blocking(move || core.add_form_prop(def)).await?;
            Ok(Value::Nil)
        })
        .call("delFormProp", |api, mut args| async move {
            let form: String = args.req(0, "form")?;
            let prop: String = args.req(1, "name")?;
            args.done()?;
            api.cell
                .req_allowed(&["model", "prop", "del", &form], None)?;
            let core = api.core.clone();
            blocking(move || core.del_form_prop(&form, &prop)).await?;
            Ok(Value::Nil)
        })
        .call("addUnivProp", |api, args| async move {
            api.cell.req_allowed(&["model", "univ", "add"], None)?;
            let def = propdef_args(args)?;
            let core = api.core.clone();
            blocking(move || core.add_univ_prop(def)).await?;
            Ok(Value::Nil)
        })
        .call("delUnivProp", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            args.done()?;
            api.cell.req_allowed(&["model", "univ", "del"], None)?;
            let core = api.core.clone();
            blocking(move || core.del_univ_prop(&name)).await?;
            Ok(Value::Nil)
        })
        .call("addTagProp", |api, args| async move {
            api.cell.req_allowed(&["model", "tagprop", "add"], None)?;
            let def = propdef_args(args)?;
            let core = api.core.clone();
            blocking(move || core.add_tag_prop(def)).await?;
            Ok(Value::Nil)
        })
        .call("delTagProp", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            args.done()?;
            api.cell.req_allowed(&["model", "tagprop", "del"], None)?;
            let core = api.core.clone();
            blocking(move || core.del_tag_prop(&name)).await?;
            Ok(Value::Nil)
        })
        .call("addFeedData", |api, mut args| async move {
            let name: String = args.req(0, "name")?;
            let items: Vec<Value> = args.req(1, "items")?;
            // Keyword-only in Synapse.
            let viewiden = match args.take(usize::MAX, "viewiden") {
                None | Some(Value::Nil) => None,
                Some(Value::Str(iden)) => Some(iden),
                Some(other) => return Err(no_such_view(&other.to_string())),
            };
            args.done()?;
            let view = api.core.view(viewiden.as_deref(), &api.cell.user_iden())?;
            let mut perm = vec!["feed:data"];
            perm.extend(name.split('.'));
            api.cell
                .req_allowed(&perm, Some(view.write_layer().iden()))?;
            if name != FEED_SYN_NODES {
                // Synapse raises this one without a message.
                return Err(SynErr {
                    name: "NoSuchName".into(),
                    info: vec![("name".into(), Value::from(name))],
                });
            }
            let user = api.cell.user_iden();
            blocking(move || {
                let sink = FeedWarnings;
                let editor = Editor::new(&view, &user, Durability::Deferred, &sink);
                editor.add_feed_nodes(&items)
            })
            .await?;
            Ok(Value::Nil)
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
        .call("getMirrorStatus", |api, args| async move {
            args.done()?;
            api.cell.req_admin()?;
            let mirror = api
                .core
                .mirror
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            Ok(mirror.map_or(Value::Nil, |m| m.status()))
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

impl LayerApi {
    /// `syncNodeEdits(offs, wait=True)` and `syncNodeEdits2`: the log's records from `offs`,
    /// each as `item` makes it, then (with `wait`) each new one as it lands.
    fn sync_edits(
        self: Arc<Self>,
        mut args: Args,
        item: fn(&super::layer::LogEntry) -> Value,
    ) -> SynResult<Genr> {
        let offs = offset_arg(&mut args, 0, "offs")?;
        let wait = args.opt::<bool>(1, "wait")?.unwrap_or(true);
        args.done()?;
        self.req_read()?;
        let (tx, rx): (mpsc::Sender<SynResult<Value>>, Genr) = mpsc::channel(64);
        if wait {
            let mut entries = self.layer.sync_edits(offs);
            tokio::spawn(async move {
                while let Some(entry) = entries.recv().await {
                    if tx.send(entry.map(|e| item(&e))).await.is_err() {
                        return;
                    }
                }
            });
        } else {
            // Only what is in the log now.
            let layer = self.layer.clone();
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
                    if tx.blocking_send(entry.map(|e| item(&e))).is_err() || failed {
                        return;
                    }
                }
            });
        }
        Ok(rx)
    }
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
                for ne in stored.applied.iter() {
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
        .genr("syncNodeEdits", |api, args| async move {
            api.sync_edits(args, log_item)
        })
        .genr("syncNodeEdits2", |api, args| async move {
            api.sync_edits(args, super::layer::LogEntry::to_value)
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
