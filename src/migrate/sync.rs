//! `syn sync-200`: carry the splices a running Synapse 0.1.x cortex writes after its
//! migration into the 2.x cortex (syn, or Python Synapse 2.x) until the cut-over, as Synapse
//! 2.0's `sync_200` did (spec §8).
//!
//! For each layer named in `lyroffs.yaml` (written by `syn migrate-200`), a task reads the
//! 0.1.x LayerApi at `SRC/cortex/layer/<iden>` with `splices(offs, size)` in batches, groups
//! consecutive splices of one node and one provenance into one nodeedit (spec §8.3), and
//! stores it with `storNodeEditsNoLift([nodeedit], {time, user, prov})` on the 2.x LayerApi
//! at `DEST/cortex/layer/<iden>`. Stortypes come from the destination's `getModelDict()`.
//! Once a layer has caught up it polls every `--poll` seconds.
//!
//! Where each layer has got to is saved in a state file (JSON) every second and at the end;
//! a restart goes on from there. After a `kill -9` up to a second of splices is stored again:
//! each edit sets or deletes an absolute value, so storing a suffix of the log twice leaves
//! the same nodes. A splice that cannot be translated, or a group the destination refuses, is
//! recorded in the state file, counted and skipped; `--err-lim` errors stop the run. A lost
//! connection is retried with a growing pause (1 s up to a minute) and migration mode is
//! switched on again after each reconnect, since the destination forgets it on restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::telepath::{ClientOptions, Proxy, TeleUrl};

/// The state file's name beside `lyroffs.yaml` when `--state` is not given.
pub const STATE_FILE: &str = "sync200.json";

/// Errors kept in the state file; later ones are only counted.
const KEPT_ERRORS: usize = 1000;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What `syn sync-200` was asked to do.
#[derive(Clone)]
pub struct Options {
    /// The 0.1.x cortex's telepath URL (its base: `tcp://user:passwd@host:port/`).
    pub src: String,
    /// The 2.x cortex's telepath URL (its base).
    pub dest: String,
    /// `lyroffs.yaml`: each layer's first 0.1.x splice offset not migrated.
    pub offsfile: PathBuf,
    /// Where progress is saved (default: `sync200.json` beside the offsfile).
    pub state: PathBuf,
    /// Start every layer at the offsfile's offset even when saved state exists.
    pub from_file: bool,
    /// Splices asked for per pull.
    pub batch: u64,
    /// The pause between pulls once a layer has caught up.
    pub poll: Duration,
    /// Stop after this many errors (`None`: never).
    pub err_lim: Option<u64>,
    /// Stop once every layer has caught up, instead of following.
    pub until_caught_up: bool,
    /// Leave migration mode on at the end (it is switched on at the start either way).
    pub keep_migration_mode: bool,
    /// How often a progress line is printed.
    pub status_every: Duration,
    /// TLS settings and the connect limit for `src`.
    pub src_client: ClientOptions,
    /// TLS settings and the connect limit for `dest`.
    pub dest_client: ClientOptions,
}

/// One layer's saved progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerState {
    /// The next 0.1.x splice offset to read.
    pub nextoffs: u64,
    /// Splices carried over by every run so far.
    pub splices: u64,
    /// Nodeedits stored by every run so far.
    pub nodeedits: u64,
    /// Errors recorded for this layer.
    pub errors: u64,
    /// Whether the last pull found nothing more to read (for the status lines; not saved).
    #[serde(skip)]
    pub caught_up: bool,
}

/// One splice or group that was skipped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SyncError {
    /// The layer's iden.
    pub layer: String,
    /// The splice's 0.1.x offset (the group's first for a refused store).
    pub offs: u64,
    /// The splice as JSON.
    pub splice: serde_json::Value,
    /// Why.
    pub mesg: String,
}

/// The state file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The source URL, without its password.
    pub src: String,
    /// The destination URL, without its password.
    pub dest: String,
    /// Epoch milliseconds of the last save.
    pub saved: i64,
    /// Each layer's progress, by iden.
    pub layers: BTreeMap<String, LayerState>,
    /// The first errors recorded (at most 1,000).
    pub errors: Vec<SyncError>,
}

impl State {
    /// Read `path`; `None` when it does not exist.
    pub fn load(path: &Path) -> SynResult<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad_state(format!("cannot read {}: {e}", path.display()))),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            bad_state(format!(
                "{} is not a sync-200 state file: {e}",
                path.display()
            ))
        })
    }

    /// Write `path` durably (a temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> SynResult<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| bad_state(format!("cannot encode the state: {e}")))?;
        super::write_durably(path, format!("{text}\n").as_bytes())
            .map_err(|e| bad_state(format!("cannot write {}: {e}", path.display())))
    }
}

fn bad_state(mesg: impl Into<String>) -> SynErr {
    SynErr::new("BadSyncState", mesg)
}

/// Each layer's start offset from `lyroffs.yaml` as `syn migrate-200` and Synapse's
/// `migrate_200` write it: a map of layer iden to `{nextoffs, created}`.
pub fn read_offsfile(path: &Path) -> SynResult<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_state(format!("cannot read {}: {e}", path.display())))?;
    parse_offsfile(&text).map_err(|why| bad_state(format!("{}: {why}", path.display())))
}

fn parse_offsfile(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut layers: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (num, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed.trim_start().is_empty() || trimmed.trim_start().starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}", num + 1);
        if !line.starts_with([' ', '\t']) {
            let key = trimmed
                .strip_suffix(':')
                .ok_or_else(|| bad("expected `<layer iden>:`"))?;
            let iden = key.trim().trim_matches(['\'', '"']).to_owned();
            if iden.len() != 32 || !iden.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(&format!("{iden:?} is not a layer iden")));
            }
            layers.insert(iden.clone(), None);
            current = Some(iden);
            continue;
        }
        let Some(iden) = &current else {
            return Err(bad("an indented line before any layer"));
        };
        let (key, valu) = trimmed
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected `key: value`"))?;
        if key.trim() == "nextoffs" {
            let offs = valu
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("nextoffs {:?} is not an offset", valu.trim())))?;
            layers.insert(iden.clone(), Some(offs));
        }
    }
    if layers.is_empty() {
        return Err("names no layer".into());
    }
    layers
        .into_iter()
        .map(|(iden, offs)| {
            offs.map(|o| (iden.clone(), o))
                .ok_or(format!("layer {iden} has no nextoffs"))
        })
        .collect()
}

/// The stortypes of the destination's model, from its `getModelDict()`.
#[derive(Debug, Default)]
pub struct Stortypes {
    forms: BTreeMap<String, (i64, BTreeMap<String, i64>)>,
    univs: BTreeMap<String, i64>,
    tagprops: BTreeMap<String, i64>,
}

impl Stortypes {
    /// Read them from a `getModelDict()` answer.
    pub fn from_model_dict(model: &Value) -> Stortypes {
        let stortype = |info: &Value| info.get("stortype").and_then(Value::as_i64);
        let named = |section: &str| -> Vec<(String, &Value)> {
            model
                .get(section)
                .and_then(Value::as_map)
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
                .collect()
        };
        let mut out = Stortypes::default();
        for (name, info) in named("forms") {
            let Some(st) = stortype(info) else { continue };
            let props = info
                .get("props")
                .and_then(Value::as_map)
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), stortype(v)?)))
                .collect();
            out.forms.insert(name, (st, props));
        }
        for (section, map) in [("univs", &mut out.univs), ("tagprops", &mut out.tagprops)] {
            for (name, info) in named(section) {
                if let Some(st) = stortype(info) {
                    map.insert(name, st);
                }
            }
        }
        out
    }

    fn form(&self, form: &str) -> Result<i64, String> {
        self.forms
            .get(form)
            .map(|f| f.0)
            .ok_or_else(|| format!("Unable to determine stortype type for form {form}"))
    }

    fn prop(&self, form: &str, prop: &str) -> Result<i64, String> {
        let of_form = self.forms.get(form).and_then(|f| f.1.get(prop)).copied();
        let univ = || {
            prop.starts_with('.')
                .then(|| self.univs.get(prop).copied())
                .flatten()
        };
        of_form
            .or_else(univ)
            .ok_or_else(|| format!("Unable to determine stortype type for prop {form}:{prop}"))
    }

    fn tagprop(&self, prop: &str) -> Result<i64, String> {
        self.tagprops
            .get(prop)
            .copied()
            .ok_or_else(|| format!("Unable to determine stortype type for tag prop {prop}"))
    }
}

/// One 0.1.x splice with its offset in the layer's splice log.
#[derive(Clone, Debug, PartialEq)]
pub struct Splice {
    /// The offset.
    pub offs: u64,
    /// `node:add`, `prop:set`, ...
    pub name: String,
    /// The splice's fields (`ndef`, `time`, `user`, `prov`, ...).
    pub info: Value,
}

impl Splice {
    /// Read `(name, info)` as `splices()` yields it.
    pub fn from_value(offs: u64, item: &Value) -> Splice {
        let parts = item.as_array().unwrap_or_default();
        Splice {
            offs,
            name: parts
                .first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            info: parts.get(1).cloned().unwrap_or(Value::Nil),
        }
    }

    fn ndef(&self) -> Option<&Value> {
        self.info.get("ndef")
    }

    fn field(&self, key: &str) -> Value {
        self.info.get(key).cloned().unwrap_or(Value::Nil)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!([self.name, self.info.to_json()])
    }
}

/// Split splices into runs of one node and one provenance, in order (spec §8.3).
pub fn groups(splices: &[Splice]) -> Vec<&[Splice]> {
    splices
        .chunk_by(|a, b| a.ndef() == b.ndef() && a.info.get("prov") == b.info.get("prov"))
        .collect()
}

/// The 2.x edit for one splice (spec §8.3's table).
pub fn edit_of(splice: &Splice, form: &str, types: &Stortypes) -> Result<Value, String> {
    let edit = |kind: i64, args: Vec<Value>| {
        Value::Array(vec![
            kind.into(),
            Value::Array(args),
            Value::Array(Vec::new()),
        ])
    };
    let fval = || {
        splice
            .ndef()
            .and_then(Value::as_array)
            .and_then(|n| n.get(1))
            .cloned()
            .unwrap_or(Value::Nil)
    };
    let prop = || splice.field("prop");
    let prop_name = || {
        splice
            .info
            .get("prop")
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let prop_st = || types.prop(form, prop_name());
    let tagprop_st = || types.tagprop(prop_name());
    let valu = || splice.field("valu");
    let tag = || splice.field("tag");
    Ok(match splice.name.as_str() {
        "node:add" => edit(0, vec![fval(), types.form(form)?.into()]),
        "node:del" => edit(1, vec![fval(), types.form(form)?.into()]),
        "prop:set" => edit(2, vec![prop(), valu(), Value::Nil, prop_st()?.into()]),
        "prop:del" => edit(3, vec![prop(), valu(), prop_st()?.into()]),
        "tag:add" => edit(4, vec![tag(), valu(), splice.field("oldv")]),
        "tag:del" => edit(5, vec![tag(), valu()]),
        "tag:prop:set" => edit(
            6,
            vec![
                tag(),
                prop(),
                valu(),
                splice.field("curv"),
                tagprop_st()?.into(),
            ],
        ),
        "tag:prop:del" => edit(7, vec![tag(), prop(), valu(), tagprop_st()?.into()]),
        other => return Err(format!("Unrecognized splice edit: {other}")),
    })
}

/// A group translated: the nodeedit, its meta, and the splices that could not be translated.
pub struct Translated {
    /// `(buid, form, edits)`, or `None` when no splice of the group translated.
    pub nodeedit: Option<Value>,
    /// `{time, user, prov}` of the group's first splice.
    pub meta: Value,
    /// `(splice, why)` for each splice left out.
    pub failed: Vec<(Splice, String)>,
}

/// Translate one group (splices of one node) into one nodeedit.
pub fn translate(group: &[Splice], types: &Stortypes) -> Translated {
    let first = &group[0];
    let meta = Value::Map(
        ["time", "user", "prov"]
            .into_iter()
            .filter_map(|k| Some((Value::from(k), first.info.get(k)?.clone())))
            .collect(),
    );
    let ndef = first.ndef().and_then(Value::as_array).unwrap_or_default();
    let (Some(form), Some(fval)) = (ndef.first().and_then(Value::as_str), ndef.get(1)) else {
        let failed = group
            .iter()
            .map(|s| (s.clone(), "the splice has no ndef (form, valu)".to_owned()))
            .collect();
        return Translated {
            nodeedit: None,
            meta,
            failed,
        };
    };
    let mut edits = Vec::with_capacity(group.len());
    let mut failed = Vec::new();
    for splice in group {
        match edit_of(splice, form, types) {
            Ok(e) => edits.push(e),
            Err(why) => failed.push((splice.clone(), why)),
        }
    }
    let nodeedit = (!edits.is_empty()).then(|| {
        Value::Array(vec![
            Value::Bin(crate::cortex::model::buid(form, fval).to_vec()),
            Value::from(form),
            Value::Array(edits),
        ])
    });
    Translated {
        nodeedit,
        meta,
        failed,
    }
}

/// A failure that ends the whole run.
fn fatal(mesg: impl Into<String>) -> SynErr {
    SynErr::new("SyncFailed", mesg)
}

/// What the layer tasks share.
struct Run {
    opts: Options,
    src: TeleUrl,
    dest: TeleUrl,
    types: Stortypes,
    state: Mutex<State>,
    /// Errors recorded in this run.
    errors: std::sync::atomic::AtomicU64,
    /// Set when the run must end (signal, error limit).
    stop: watch::Sender<bool>,
    /// Why the run failed, when it did.
    failure: Mutex<Option<String>>,
}

impl Run {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep for `pause`, or less when the run is stopped meanwhile.
    async fn pause(&self, pause: Duration) {
        let mut rx = self.stop.subscribe();
        if *rx.borrow() {
            return;
        }
        let _ = tokio::time::timeout(pause, rx.wait_for(|s| *s)).await;
    }

    fn fail(&self, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(why);
        self.stop.send_replace(true);
    }

    fn record(&self, layer: &str, splice: &Splice, mesg: String) {
        eprintln!(
            "syn sync-200: layer {layer}: splice {} ({}) skipped: {mesg}",
            splice.offs, splice.name
        );
        let count = self
            .errors
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.layers.entry(layer.to_owned()).or_default().errors += 1;
            if state.errors.len() < KEPT_ERRORS {
                state.errors.push(SyncError {
                    layer: layer.to_owned(),
                    offs: splice.offs,
                    splice: splice.to_json(),
                    mesg,
                });
            }
        }
        if let Some(lim) = self.opts.err_lim
            && count >= lim
        {
            self.fail(format!(
                "error limit reached ({count} errors, listed in {}): correct them or raise --err-lim to go on",
                self.opts.state.display()
            ));
        }
    }

    /// Change `layer`'s progress under the state's lock.
    fn update(&self, layer: &str, change: impl FnOnce(&mut LayerState)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(state.layers.entry(layer.to_owned()).or_default());
    }

    fn save(&self) -> SynResult<()> {
        let snapshot = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.saved = now_ms();
            state.clone()
        };
        snapshot.save(&self.opts.state)
    }

    /// Connect to `url`, retrying while the run goes on; `None` once it is stopped.
    async fn connect(&self, url: &TeleUrl, client: &ClientOptions, what: &str) -> Option<Proxy> {
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.stopped() {
                return None;
            }
            match Proxy::open_with(url, client.clone()).await {
                Ok(p) => return Some(p),
                Err(e) if !e.is_link_error() => {
                    // A refusal (no such layer, a wrong password) does not mend by waiting.
                    self.fail(format!("the {what} refused {}: {e}", url.redacted()));
                    return None;
                }
                Err(e) => {
                    eprintln!(
                        "syn sync-200: cannot reach the {what} ({}); trying again in {} s",
                        e.mesg(),
                        backoff.as_secs()
                    );
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Switch migration mode on at the destination (cron and triggers do not run).
    async fn migration_mode(&self, on: bool) -> SynResult<()> {
        let core =
            Proxy::open_with(&self.dest.with_share("*"), self.opts.dest_client.clone()).await?;
        let meth = if on {
            "enableMigrationMode"
        } else {
            "disableMigrationMode"
        };
        core.call(meth, Vec::new()).await.map(|_| ())
    }
}

/// Follow one layer until the run stops (or, with `--until-caught-up`, until it caught up).
async fn follow(run: Arc<Run>, iden: String, mut offs: u64) {
    let src_url = run.src.with_share(&format!("cortex/layer/{iden}"));
    let dest_url = run.dest.with_share(&format!("cortex/layer/{iden}"));
    let mut src: Option<Proxy> = None;
    let mut dest: Option<Proxy> = None;
    // The run switched migration mode on at its start; after a reconnection the destination
    // may have restarted and forgotten it.
    let mut reconnecting = false;
    while !run.stopped() {
        if src.is_none() {
            src = run
                .connect(&src_url, &run.opts.src_client, "0.1.x cortex")
                .await;
            continue;
        }
        if dest.is_none() {
            dest = run
                .connect(&dest_url, &run.opts.dest_client, "2.x cortex")
                .await;
            if dest.is_some()
                && std::mem::replace(&mut reconnecting, true)
                && let Err(e) = run.migration_mode(true).await
            {
                eprintln!(
                    "syn sync-200: cannot switch migration mode on: {}",
                    e.mesg()
                );
            }
            continue;
        }
        let (Some(s), Some(d)) = (&src, &dest) else {
            continue;
        };
        let items = match s
            .call(
                "splices",
                vec![Value::from(offs), Value::from(run.opts.batch)],
            )
            .await
        {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                run.fail(format!(
                    "layer {iden}: splices() answered a {}, not a list",
                    other.type_name()
                ));
                return;
            }
            Err(e) if e.is_link_error() => {
                eprintln!(
                    "syn sync-200: layer {iden}: lost the 0.1.x cortex: {}",
                    e.mesg()
                );
                src = None;
                continue;
            }
            Err(e) => {
                run.fail(format!(
                    "layer {iden}: the 0.1.x cortex refused splices(): {e}"
                ));
                return;
            }
        };
        let splices: Vec<Splice> = items
            .iter()
            .zip(offs..)
            .map(|(item, o)| Splice::from_value(o, item))
            .collect();
        for group in groups(&splices) {
            if run.stopped() {
                break;
            }
            let translated = translate(group, &run.types);
            for (splice, why) in translated.failed {
                run.record(&iden, &splice, why);
            }
            let mut stored = false;
            if let Some(nodeedit) = translated.nodeedit {
                let args = vec![Value::Array(vec![nodeedit]), translated.meta];
                match d.call("storNodeEditsNoLift", args).await {
                    Ok(_) => stored = true,
                    Err(e) if e.is_link_error() => {
                        eprintln!(
                            "syn sync-200: layer {iden}: lost the 2.x cortex: {}",
                            e.mesg()
                        );
                        dest = None;
                        break;
                    }
                    Err(e) => {
                        run.record(&iden, &group[0], format!("the 2.x cortex refused it: {e}"))
                    }
                }
            }
            offs = group[group.len() - 1].offs + 1;
            run.update(&iden, |l| {
                l.nextoffs = offs;
                l.splices += group.len() as u64;
                l.nodeedits += u64::from(stored);
            });
        }
        if dest.is_none() || run.stopped() {
            continue;
        }
        let caught_up = (items.len() as u64) < run.opts.batch;
        run.update(&iden, |l| l.caught_up = caught_up);
        if caught_up {
            if run.opts.until_caught_up {
                return;
            }
            run.pause(run.opts.poll).await;
        }
    }
}

/// Run `syn sync-200` until every layer caught up (`--until-caught-up`) or SIGINT/SIGTERM;
/// the number of errors recorded (their splices skipped) in this run.
pub fn run(opts: Options) -> SynResult<u64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fatal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_async(opts))
}

async fn run_async(opts: Options) -> SynResult<u64> {
    let src = TeleUrl::parse(&opts.src)?;
    let dest = TeleUrl::parse(&opts.dest)?;
    let starts = read_offsfile(&opts.offsfile)?;
    let saved = if opts.from_file {
        None
    } else {
        State::load(&opts.state)?
    };
    // The destination first: its model says how to store what is read.
    let core = Proxy::open_with(&dest.with_share("*"), opts.dest_client.clone())
        .await
        .map_err(|e| fatal(format!("cannot reach the 2.x cortex: {}", e.mesg())))?;
    let model = core
        .call("getModelDict", Vec::new())
        .await
        .map_err(|e| fatal(format!("the 2.x cortex did not give its model: {e}")))?;
    let types = Stortypes::from_model_dict(&model);
    Proxy::open_with(&src.with_share("*"), opts.src_client.clone())
        .await
        .map_err(|e| fatal(format!("cannot reach the 0.1.x cortex: {}", e.mesg())))?;

    let mut state = saved.clone().unwrap_or_default();
    state.src = src.redacted();
    state.dest = dest.redacted();
    let mut plan = Vec::new();
    for (iden, file_offs) in &starts {
        let resumed = saved
            .as_ref()
            .and_then(|s| s.layers.get(iden))
            .map(|l| l.nextoffs);
        let offs = resumed.unwrap_or(*file_offs);
        state.layers.entry(iden.clone()).or_default().nextoffs = offs;
        let from = if resumed.is_some() {
            "saved state"
        } else {
            "lyroffs.yaml"
        };
        eprintln!("syn sync-200: layer {iden}: from splice {offs} ({from})");
        plan.push((iden.clone(), offs));
    }
    let (stop, _) = watch::channel(false);
    let run = Arc::new(Run {
        opts: opts.clone(),
        src,
        dest,
        types,
        state: Mutex::new(state),
        errors: std::sync::atomic::AtomicU64::new(0),
        stop,
        failure: Mutex::new(None),
    });
    run.save()?;
    match run.migration_mode(true).await {
        Ok(()) => {}
        Err(e) if e.name == "NoSuchMeth" => eprintln!(
            "syn sync-200: the 2.x cortex has no migration mode; its cron jobs and triggers may fire"
        ),
        Err(e) => {
            return Err(fatal(format!(
                "cannot switch migration mode on: {}",
                e.mesg()
            )));
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    // Where each layer was at the last status line, for its rate.
    let mut last: Vec<(String, u64)> = plan.clone();
    for (iden, offs) in plan {
        tasks.spawn(follow(run.clone(), iden, offs));
    }
    crate::cell::notify::ready("following the 0.1.x cortex");
    watch_signals(run.clone());

    let started = Instant::now();
    let mut save_tick = tokio::time::interval(Duration::from_secs(1));
    let mut status_tick = tokio::time::interval(opts.status_every);
    status_tick.tick().await;
    loop {
        tokio::select! {
            done = tasks.join_next() => {
                match done {
                    None => break,
                    Some(Err(e)) => run.fail(format!("a layer task failed: {e}")),
                    Some(Ok(())) => {}
                }
            }
            _ = save_tick.tick() => {
                if let Err(e) = run.save() {
                    run.fail(e.mesg().to_owned());
                }
            }
            _ = status_tick.tick() => {
                let mut lines = Vec::new();
                let state = run.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for (iden, prev) in &mut last {
                    let l = state.layers.get(iden.as_str()).cloned().unwrap_or_default();
                    let rate = l.nextoffs.saturating_sub(*prev) as f64 / opts.status_every.as_secs_f64();
                    *prev = l.nextoffs;
                    let how = if l.caught_up { "caught up" } else { "catching up" };
                    lines.push(format!("layer {}: at {} ({rate:.0} splices/s), {how}", &iden[..8], l.nextoffs));
                }
                let line = lines.join("; ");
                eprintln!("syn sync-200: {line}");
                crate::cell::notify::status(&line);
            }
        }
    }
    crate::cell::notify::stopping("saving the sync state");
    run.save()?;
    if !opts.keep_migration_mode
        && let Err(e) = run.migration_mode(false).await
    {
        eprintln!(
            "syn sync-200: cannot switch migration mode off: {}",
            e.mesg()
        );
    }
    if let Some(why) = run.failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(fatal(why));
    }
    let state = run.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (iden, layer) in &state.layers {
        eprintln!(
            "syn sync-200: layer {iden}: next splice {} ({} splices, {} nodeedits, {} errors in all runs)",
            layer.nextoffs, layer.splices, layer.nodeedits, layer.errors
        );
    }
    eprintln!(
        "syn sync-200: stopped after {:.1} s; state in {}",
        started.elapsed().as_secs_f64(),
        opts.state.display()
    );
    Ok(run.errors.load(std::sync::atomic::Ordering::SeqCst))
}

/// SIGINT and SIGTERM stop the run after the nodeedit being stored.
fn watch_signals(run: Arc<Run>) {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let run = run.clone();
        if let Ok(mut sig) = signal(kind) {
            tokio::spawn(async move {
                if sig.recv().await.is_some() {
                    eprintln!("syn sync-200: stopping (signal)");
                    run.stop.send_replace(true);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(offs: u64, name: &str, ndef: (&str, Value), fields: Vec<(&str, Value)>) -> Splice {
        let mut info = vec![
            ("ndef", Value::Array(vec![ndef.0.into(), ndef.1])),
            ("time", Value::from(1_600_000_000_000i64)),
            ("user", Value::from("u1")),
            ("prov", Value::from("p1")),
        ];
        info.extend(fields);
        Splice {
            offs,
            name: name.into(),
            info: Value::map(info),
        }
    }

    fn types() -> Stortypes {
        let prop = |st: i64| Value::map([("stortype", Value::from(st))]);
        Stortypes::from_model_dict(&Value::map([
            (
                "forms",
                Value::map([(
                    "inet:ipv4",
                    Value::map([
                        ("stortype", Value::from(4i64)),
                        ("props", Value::map([("asn", prop(9))])),
                    ]),
                )]),
            ),
            ("univs", Value::map([(".seen", prop(12))])),
            ("tagprops", Value::map([("score", prop(9))])),
        ]))
    }

    fn ip() -> (&'static str, Value) {
        ("inet:ipv4", Value::from(16909060i64))
    }

    #[test]
    fn every_splice_kind_becomes_its_edit() {
        let t = types();
        let ival = Value::Array(vec![Value::from(1i64), Value::from(2i64)]);
        let cases = [
            (splice(0, "node:add", ip(), vec![]), "[0,[16909060,4],[]]"),
            (splice(0, "node:del", ip(), vec![]), "[1,[16909060,4],[]]"),
            (
                splice(
                    0,
                    "prop:set",
                    ip(),
                    vec![
                        ("prop", "asn".into()),
                        ("valu", 10i64.into()),
                        ("oldv", 9i64.into()),
                    ],
                ),
                "[2,[\"asn\",10,null,9],[]]",
            ),
            (
                splice(
                    0,
                    "prop:set",
                    ip(),
                    vec![("prop", ".seen".into()), ("valu", ival.clone())],
                ),
                "[2,[\".seen\",[1,2],null,12],[]]",
            ),
            (
                splice(
                    0,
                    "prop:del",
                    ip(),
                    vec![("prop", "asn".into()), ("valu", 10i64.into())],
                ),
                "[3,[\"asn\",10,9],[]]",
            ),
            (
                splice(
                    0,
                    "tag:add",
                    ip(),
                    vec![
                        ("tag", "a.b".into()),
                        ("valu", ival.clone()),
                        ("oldv", Value::Nil),
                    ],
                ),
                "[4,[\"a.b\",[1,2],null],[]]",
            ),
            (
                splice(
                    0,
                    "tag:del",
                    ip(),
                    vec![("tag", "a.b".into()), ("valu", ival)],
                ),
                "[5,[\"a.b\",[1,2]],[]]",
            ),
            (
                splice(
                    0,
                    "tag:prop:set",
                    ip(),
                    vec![
                        ("tag", "rep".into()),
                        ("prop", "score".into()),
                        ("valu", 7i64.into()),
                        ("curv", 5i64.into()),
                    ],
                ),
                "[6,[\"rep\",\"score\",7,5,9],[]]",
            ),
            (
                splice(
                    0,
                    "tag:prop:del",
                    ip(),
                    vec![
                        ("tag", "rep".into()),
                        ("prop", "score".into()),
                        ("valu", 7i64.into()),
                    ],
                ),
                "[7,[\"rep\",\"score\",7,9],[]]",
            ),
        ];
        for (s, want) in cases {
            let got = edit_of(&s, "inet:ipv4", &t).expect(&s.name);
            assert_eq!(got.to_json().to_string(), want, "{}", s.name);
        }
    }

    #[test]
    fn what_the_model_lacks_is_an_error_naming_it() {
        let t = types();
        let fqdn = ("inet:fqdn", Value::from("a.com"));
        let err = edit_of(&splice(0, "node:add", fqdn, vec![]), "inet:fqdn", &t).unwrap_err();
        assert_eq!(err, "Unable to determine stortype type for form inet:fqdn");
        let s = splice(
            0,
            "prop:set",
            ip(),
            vec![("prop", "nope".into()), ("valu", 1i64.into())],
        );
        let err = edit_of(&s, "inet:ipv4", &t).unwrap_err();
        assert_eq!(
            err,
            "Unable to determine stortype type for prop inet:ipv4:nope"
        );
        let s = splice(0, "tag:prop:set", ip(), vec![("prop", "nope".into())]);
        assert!(
            edit_of(&s, "inet:ipv4", &t)
                .unwrap_err()
                .contains("tag prop nope")
        );
        let err = edit_of(&splice(0, "node:frob", ip(), vec![]), "inet:ipv4", &t).unwrap_err();
        assert_eq!(err, "Unrecognized splice edit: node:frob");
    }

    #[test]
    fn groups_split_at_a_new_node_or_a_new_provenance() {
        let other = ("inet:ipv4", Value::from(1i64));
        let mut s = vec![
            splice(5, "node:add", ip(), vec![]),
            splice(
                6,
                "prop:set",
                ip(),
                vec![("prop", "asn".into()), ("valu", 1i64.into())],
            ),
            splice(7, "node:add", other, vec![]),
            splice(
                8,
                "tag:add",
                ip(),
                vec![
                    ("tag", "t".into()),
                    ("valu", Value::Array(vec![Value::Nil, Value::Nil])),
                ],
            ),
            splice(9, "tag:del", ip(), vec![("tag", "t".into())]),
        ];
        s[4].info = Value::map(
            s[4].info
                .as_map()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let v = if k.as_str() == Some("prov") {
                        "p2".into()
                    } else {
                        v.clone()
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect::<Vec<_>>(),
        );
        let offs: Vec<Vec<u64>> = groups(&s)
            .iter()
            .map(|g| g.iter().map(|x| x.offs).collect())
            .collect();
        assert_eq!(offs, [vec![5, 6], vec![7], vec![8], vec![9]]);
    }

    #[test]
    fn a_group_is_one_nodeedit_with_its_first_splices_meta() {
        let t = types();
        let s = vec![
            splice(1, "node:add", ip(), vec![]),
            splice(
                2,
                "prop:set",
                ip(),
                vec![("prop", "bad".into()), ("valu", 1i64.into())],
            ),
            splice(
                3,
                "prop:set",
                ip(),
                vec![("prop", "asn".into()), ("valu", 1i64.into())],
            ),
        ];
        let out = translate(&s, &t);
        let ne = out.nodeedit.expect("a nodeedit");
        let ne = ne.as_array().unwrap();
        assert_eq!(
            ne[0].as_bin().unwrap(),
            crate::cortex::model::buid("inet:ipv4", &Value::from(16909060i64))
        );
        assert_eq!(ne[1].as_str(), Some("inet:ipv4"));
        assert_eq!(
            ne[2].as_array().unwrap().len(),
            2,
            "the bad splice is left out"
        );
        assert_eq!(
            out.meta.to_json(),
            serde_json::json!({"time": 1_600_000_000_000i64, "user": "u1", "prov": "p1"})
        );
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].0.offs, 2);

        let no_ndef = Splice::from_value(
            4,
            &Value::Array(vec![
                "node:add".into(),
                Value::map([("time", Value::from(1i64))]),
            ]),
        );
        let out = translate(&[no_ndef], &t);
        assert!(out.nodeedit.is_none());
        assert_eq!(out.failed.len(), 1);
    }

    #[test]
    fn offsfiles_of_both_migrators_are_read_and_bad_ones_named() {
        let ours = "5f11615dec983dff9ea0fe6bf8860756:\n  nextoffs: 51\n  created: 1796643054945\nfae94d338b3089351036762f47bf5023:\n  nextoffs: 14766\n  created: 1\n";
        let got = parse_offsfile(ours).unwrap();
        assert_eq!(got["5f11615dec983dff9ea0fe6bf8860756"], 51);
        assert_eq!(got["fae94d338b3089351036762f47bf5023"], 14766);
        // PyYAML's safe_dump sorts keys (created first) and may quote.
        let python = "# made by migrate_200\n'fae94d338b3089351036762f47bf5023':\n    created: 1\n    nextoffs: 7\n";
        assert_eq!(
            parse_offsfile(python).unwrap()["fae94d338b3089351036762f47bf5023"],
            7
        );
        for (bad, why) in [
            ("", "names no layer"),
            ("abc:\n  nextoffs: 1\n", "is not a layer iden"),
            (
                "fae94d338b3089351036762f47bf5023:\n  created: 1\n",
                "has no nextoffs",
            ),
            (
                "fae94d338b3089351036762f47bf5023:\n  nextoffs: -4\n",
                "is not an offset",
            ),
            ("  nextoffs: 1\n", "before any layer"),
            (
                "fae94d338b3089351036762f47bf5023\n",
                "expected `<layer iden>:`",
            ),
        ] {
            let err = parse_offsfile(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_state_file_round_trips_and_a_torn_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert_eq!(State::load(&path).unwrap(), None);
        let mut state = State {
            src: "tcp://root:****@h:1/".into(),
            ..State::default()
        };
        state.layers.insert(
            "fae94d338b3089351036762f47bf5023".into(),
            LayerState {
                nextoffs: 9,
                splices: 3,
                nodeedits: 1,
                errors: 1,
                caught_up: false,
            },
        );
        state.errors.push(SyncError {
            layer: "fae94d338b3089351036762f47bf5023".into(),
            offs: 8,
            splice: serde_json::json!(["node:frob", {}]),
            mesg: "Unrecognized splice edit: node:frob".into(),
        });
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(state));
        std::fs::write(&path, "{\"src\": ").unwrap();
        let err = State::load(&path).unwrap_err();
        assert!(err.mesg().contains("is not a sync-200 state file"), "{err}");
    }
}
