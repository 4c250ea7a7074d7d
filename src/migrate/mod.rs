//! `syn migrate-200`: bring a Synapse 0.1.x cortex (a backup of one) into a syn cortex
//! directory, as Synapse 2.0's `migrate_200` does for Synapse 2.x (spec §7).
//!
//! # Steps
//! 1. Open the source read-only ([`source`]) and check it: a cortex of 0.1.x, no remote
//!    layers, every layer at model version (0, 1, 3). A layer without a version key (0.1.58
//!    stamps a layer it created only when it next opens it) is scanned for what 0.1.58's model
//!    migrations would change ([`legacy`]); nothing is written before these checks pass.
//! 2. `dirn`: make DEST with the source's `cell.guid` (the cell iden is kept) and
//!    `DEST/migration/` (state, notes).
//! 3. `hiveauth`: users, roles, rules (translated), gates and password shadows ([`cell`]).
//! 4. `hivelyr`/`cell`: the views and layers record; `dmodel`: the extended model;
//!    `triggers`, `cron`, `queues`: the automation definitions (stored, not run).
//! 5. `nodes` (and `nodedata`): each layer's nodes, in buid order, translated and checked
//!    ([`translate`]) on one thread and written on a second with the cortex's own [`Layer`]
//!    in large batches, opened with its indexes deferred and built in one sorted pass at the end
//!    ([`LayerOptions::defer_indexes`]); a checkpoint every [`CHECKPOINT_EVERY`] nodes, at
//!    `--nodelim` and at the end.
//! 6. `DEST/migration/lyroffs.yaml` (each layer's 0.1.x splice offset taken before its
//!    copy, for sync-200) and `migrvers.yaml`; then a summary.

pub mod cell;
pub mod legacy;
pub mod progress;
pub mod source;
pub mod state;
pub mod sync;
pub mod translate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use crate::clock::now_ms;
use crate::cortex::edits::{Buid, Edit, NodeEdit};
use crate::cortex::layer::{Layer, LayerOptions};
use crate::cortex::model::Model;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::Slab;
use progress::{Mode, Progress, notice};
use source::{SrcCortex, SrcLayer};
use state::{Checkpoint, ErrorRecord, LayerStats, MigrState};
use translate::{NodeError, Translator};

/// Nodes per layer write (one LMDB transaction and one log record).
pub const BATCH: usize = 4096;
/// Nodes between checkpoints (as Synapse's tool).
pub const CHECKPOINT_EVERY: u64 = 100_000;
/// Nodes between drops of the source's and destination's pages from the resident set, which
/// bounds the memory a migration holds whatever the size of the cortex. Each drop makes every
/// page touched afterwards fault in again: at 2,000 nodes the run spent twice the system time
/// and took about a quarter longer (docs/benchmarks.md).
pub const SEGMENT: u64 = 20_000;
/// The migration directory inside DEST.
pub const MIGRATION_DIR: &str = "migration";

/// Synapse's migration steps (`--migr-ops`).
pub const OPS: &[&str] = &[
    "dirn", "dmodel", "cell", "hiveauth", "hivestor", "hivelyr", "nodes", "nodedata", "cron",
    "triggers", "splices", "queues",
];

/// What to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The 0.1.x cortex directory (a backup; read only).
    pub src: PathBuf,
    /// The syn cortex directory to write.
    pub dest: PathBuf,
    /// Resume from the last checkpoint.
    pub from_last: bool,
    /// Skip normalizing primary values and checking buids.
    pub safety_off: bool,
    /// Lock the source's memory.
    pub src_dedicated: bool,
    /// Only print per-form counts.
    pub form_counts: bool,
    /// Only dump the recorded errors.
    pub dump_errors: bool,
    /// The steps to run (all when empty).
    pub ops: Vec<String>,
    /// Stop each layer's node pass after this many nodes.
    pub nodelim: Option<u64>,
    /// Accepted for Synapse's command line; partial nodes are always resolved.
    pub map_partial: bool,
    /// How progress is shown.
    pub progress: Mode,
}

impl Options {
    fn runs(&self, op: &str) -> bool {
        self.ops.is_empty() || self.ops.iter().any(|o| o == op)
    }
}

/// What a migration did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Per layer: iden and statistics.
    pub layers: Vec<(String, LayerStats)>,
    /// Wall time of this run in seconds.
    pub seconds: f64,
}

impl Summary {
    /// Statistics over all layers.
    pub fn total(&self) -> LayerStats {
        let mut t = LayerStats::default();
        for (_, s) in &self.layers {
            t.add(s);
        }
        t
    }

    /// The summary as lines for the operator.
    pub fn lines(&self) -> Vec<String> {
        let line = |what: &str, s: &LayerStats| {
            let skipped = if s.skipped.is_empty() {
                String::new()
            } else {
                let by: Vec<String> = s.skipped.iter().map(|(r, n)| format!("{r}: {n}")).collect();
                format!(" ({})", by.join(", "))
            };
            format!(
                "{what}: {} nodes read, {} migrated, {} skipped{skipped}, {:.2} s, {:.0} nodes/s",
                s.read,
                s.migrated,
                s.skipped_total(),
                s.seconds,
                s.read as f64 / s.seconds.max(1e-6)
            )
        };
        let mut out: Vec<String> = self
            .layers
            .iter()
            .map(|(iden, s)| line(&format!("layer {iden}"), s))
            .collect();
        out.push(line("total", &self.total()));
        out
    }
}

/// Write `bytes` to `path` through a temporary file, fsynced and renamed into place, so a
/// killed run never leaves half a file.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn bad_dest(mesg: impl Into<String>) -> SynErr {
    SynErr::new("BadDest", mesg)
}

/// Run the migration (or `--form-counts` / `--dump-errors`).
pub fn run(opts: &Options) -> SynResult<Summary> {
    if let Some(op) = opts.ops.iter().find(|o| !OPS.contains(&o.as_str())) {
        return Err(SynErr::bad_arg(format!(
            "unknown migration step {op:?}; the steps are {}",
            OPS.join(" ")
        )));
    }
    if opts.dump_errors {
        dump_errors(&opts.dest)?;
        return Ok(Summary::default());
    }
    let started = Instant::now();
    let src = SrcCortex::open(&opts.src)?;
    let _locked = if opts.src_dedicated {
        Some(lock_source(&src)?)
    } else {
        None
    };
    let base = Model::shared()?;
    let ext = cell::read_ext_model(&src.hive);
    let model = Arc::new(cell::extended_model(&base, &ext, &mut |w| notice(&w)));
    let fixups = check_layers(&src, &model)?;
    if opts.form_counts {
        print_form_counts(&src, &opts.dest)?;
        return Ok(Summary::default());
    }
    let migr_dir = prepare_dest(&src, opts)?;
    let state = MigrState::open(&migr_dir)?;
    let edit_time = state.edit_time(now_ms())?;
    let cell_slab = Slab::open(
        opts.dest.join("slabs").join("cell.lmdb"),
        Default::default(),
    )?;
    let automation = cell::Automation::read(&src, &root_iden(&src), &mut |w| notice(&w))?;
    let default_view = src
        .hive
        .get(&["cellinfo", "defaultview"])
        .and_then(Value::as_str)
        .map(str::to_owned);
    let auth = if opts.runs("hiveauth") {
        let auth = cell::import_auth(&cell_slab, &src.hive, &automation, default_view.as_deref())?;
        state.step_done("hiveauth")?;
        auth
    } else {
        crate::cell::auth::Auth::open(&cell_slab)?
    };
    let root = auth
        .user_by_name(crate::cell::auth::ROOT_USER)
        .map(|u| u.iden)
        .unwrap_or_default();
    if opts.runs("hivelyr") || opts.runs("cell") {
        cell::topology(&src, &auth, &root)?.save(&cell_slab)?;
        state.step_done("hivelyr")?;
    }
    if opts.runs("dmodel") {
        ext.save(&cell_slab)?;
        state.step_done("dmodel")?;
    }
    if opts.runs("triggers") || opts.runs("cron") || opts.runs("queues") {
        automation.save(&cell_slab)?;
        state.step_done("automation")?;
    }
    if opts.runs("splices") && !opts.ops.is_empty() {
        notice(
            "splices: not copied; each migrated layer's edit log starts with its migrated nodes, \
             and sync-200 carries later 0.1.x splices from migration/lyroffs.yaml",
        );
    }
    cell_slab.sync()?;
    let mut summary = Summary::default();
    if opts.runs("nodes") || opts.runs("nodedata") {
        let meta = Value::map([
            ("time", Value::from(edit_time)),
            ("user", Value::from(root.as_str())),
        ]);
        let mut translator = Translator::new(model.clone(), !opts.safety_off);
        if opts.safety_off {
            notice("Node value checking before addition has been disabled");
        }
        if opts.map_partial {
            notice("--map-partial: partial nodes are resolved from the other layers in any case");
        }
        for layer in &src.layers {
            let stats = migrate_layer(
                &src,
                layer,
                fixups.get(&layer.iden),
                &mut translator,
                &state,
                &meta,
                opts,
            )?;
            summary.layers.push((layer.iden.clone(), stats));
        }
        write_yaml_records(&src, &state, &migr_dir)?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The iden of the source's root user (the owner of anything without one).
fn root_iden(src: &SrcCortex) -> String {
    src.hive
        .children(&["auth", "users"])
        .into_iter()
        .find(|iden| {
            src.hive
                .get(&["auth", "users", iden])
                .and_then(Value::as_str)
                == Some(crate::cell::auth::ROOT_USER)
        })
        .unwrap_or_default()
}

/// Check every layer's model version; decide what a layer without one needs.
fn check_layers(src: &SrcCortex, model: &Model) -> SynResult<BTreeMap<String, legacy::Fixups>> {
    for layer in &src.layers {
        if let Some(vers) = &layer.model_version
            && layer.version_tuple().as_deref() != Some(&source::LAYER_MODEL_VERSION[..])
        {
            return Err(source::bad_source(format!(
                "Layer {} model version must be at latest 01x vers: {} != (0, 1, 3)",
                layer.iden,
                legacy::py_tuple(vers)
            )));
        }
    }
    let mut fixups = BTreeMap::new();
    for layer in src.layers.iter().filter(|l| l.model_version.is_none()) {
        let found = legacy::Fixups::scan(layer, model)?;
        notice(&found.describe(&layer.iden));
        fixups.insert(layer.iden.clone(), found);
    }
    Ok(fixups)
}

/// Make DEST (or, with `--from-last`, reuse it) with the source's cell iden and the
/// migration directory; returns the migration directory.
fn prepare_dest(src: &SrcCortex, opts: &Options) -> SynResult<PathBuf> {
    let dest = &opts.dest;
    let migr = dest.join(MIGRATION_DIR);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        bad_dest(format!("cannot {what} {}: {e}", p.display()))
    };
    let empty = match std::fs::read_dir(dest) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io("read", dest, e)),
    };
    if !empty && !opts.from_last {
        return Err(bad_dest(format!(
            "{} is not empty: give an empty or new directory, or --from-last to resume",
            dest.display()
        )));
    }
    let guid_path = dest.join("cell.guid");
    match std::fs::read_to_string(&guid_path) {
        Ok(guid) if guid.trim() != src.iden => {
            return Err(bad_dest(format!(
                "{} is not a migration of {} (its cell.guid differs); cannot resume there",
                dest.display(),
                src.dir.display()
            )));
        }
        Ok(_) => {}
        // A new DEST, or a run killed before it wrote the iden.
        Err(_) => {
            std::fs::create_dir_all(dest).map_err(|e| io("create", dest, e))?;
            write_durably(&guid_path, src.iden.as_bytes())
                .map_err(|e| io("write", &guid_path, e))?;
        }
    }
    for dir in [dest.join("slabs"), dest.join("layers"), migr.clone()] {
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    }
    let readme = migr.join("README.txt");
    std::fs::write(&readme, MIGRATION_README).map_err(|e| io("write", &readme, e))?;
    Ok(migr)
}

/// The notes left in `DEST/migration/`.
const MIGRATION_README: &str = "\
This directory was written by `syn migrate-200`.

  migr.lmdb       checkpoints, statistics and the errors of skipped nodes
                  (`syn migrate-200 --dump-errors` writes them to a msgpack file)
  lyroffs.yaml    for each layer, the 0.1.x splice offset at the time of the copy;
                  `syn sync-200` starts there
  migrvers.yaml   the versions migrated from and to
  README.txt      this file

Keep it until the cut-over to syn is done (a resumed run with --from-last and sync-200
need it). Once the cut-over is done, delete this directory: the cortex does not use it.
";

/// Write one layer's nodes; resumes from its checkpoint with `--from-last`.
fn migrate_layer(
    src: &SrcCortex,
    layer: &SrcLayer,
    fixups: Option<&legacy::Fixups>,
    translator: &mut Translator,
    state: &MigrState,
    meta: &Value,
    opts: &Options,
) -> SynResult<LayerStats> {
    let iden = &layer.iden;
    state.next_offset(iden, layer.splice_next_offset()?)?;
    // `--migr-ops nodedata` without `nodes`: only the node data of nodes already migrated.
    let only_data = !opts.runs("nodes");
    let op = if only_data { "nodedata" } else { "nodes" };
    let (chk, mut stats) = match state.checkpoint(op, iden)? {
        Some((chk, stats)) if opts.from_last => (Some(chk), stats),
        _ => (None, LayerStats::default()),
    };
    if opts.from_last && state.layer_done(op, iden)? {
        notice(&format!("layer {iden}: already migrated"));
        return Ok(stats);
    }
    let dest_dir = opts
        .dest
        .join(crate::cortex::service::LAYERS_DIR)
        .join(iden);
    let others: Vec<&SrcLayer> = src.layers.iter().filter(|l| l.iden != *iden).collect();
    let with_data = opts.runs("nodedata");
    let total_rows = layer.row_count()?;
    let mut progress = Progress::start(opts.progress, iden, total_rows, stats.rows);
    if let Some(c) = &chk {
        progress.notice(&format!(
            "layer {iden}: resuming after node {} ({} done)",
            hex::encode(&c.buid),
            c.count
        ));
    }
    let started = Instant::now();
    let seconds_before = stats.seconds;
    let mut batch: Vec<NodeEdit> = Vec::with_capacity(BATCH);
    let mut errors: Vec<ErrorRecord> = Vec::new();
    let mut this_run = 0u64;
    let mut stopped = false;
    // The last node done: each segment resumes after it.
    let mut last: Option<Buid> = chk
        .as_ref()
        .and_then(|c| <[u8; 32]>::try_from(c.buid.as_slice()).ok());
    // Segments of SEGMENT nodes, each ending with the pages read and written dropped from the
    // resident set; a checkpoint every CHECKPOINT_EVERY nodes and at the end. The node pass
    // leaves the indexes to one sorted build at its end (before the last checkpoint, so a
    // run killed during the build does it again when resumed).
    let dest = Layer::open_with(
        &dest_dir,
        iden,
        LayerOptions {
            defer_indexes: !only_data,
            ..LayerOptions::default()
        },
    )?;
    let mut since_chk = 0u64;
    loop {
        let from = last;
        let mut in_segment = 0u64;
        let mut more = false;
        // Two threads: this one reads and translates the source's nodes while a second
        // stores the batches it hands over, one batch at a time in flight.
        let (stored, refused) = thread::scope(|scope| {
            let (to_store, batches) = mpsc::sync_channel::<Vec<NodeEdit>>(1);
            let storer = scope.spawn(|| store_batches(&dest, batches, meta, iden));
            let scanned = layer.scan(from.as_ref(), |mut node| {
                if from.as_ref() == Some(&node.buid) {
                    return Ok(true);
                }
                if opts.nodelim.is_some_and(|n| this_run >= n) {
                    stopped = true;
                    return Ok(false);
                }
                if in_segment >= SEGMENT {
                    more = true;
                    return Ok(false);
                }
                in_segment += 1;
                this_run += 1;
                stats.read += 1;
                stats.rows += node.rows;
                if !with_data {
                    node.data.clear();
                }
                if let Some(f) = fixups {
                    f.apply(&mut node, translator.model());
                }
                let hint = match &node.ndef {
                    Some(_) => None,
                    None => partial_form(&others, &node.buid)?,
                };
                let (buid, rows) = (node.buid, node.rows);
                match translator.node(node, hint.as_deref()) {
                    Ok(mut ne) => {
                        if only_data {
                            ne.edits.retain(|e| matches!(e, Edit::NodeDataSet { .. }));
                        }
                        if !ne.edits.is_empty() {
                            batch.push(ne);
                        }
                    }
                    Err(e) => record(&mut stats, &mut errors, iden, &buid, e),
                }
                progress.advance(1, rows);
                last = Some(buid);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // A storer that stopped has failed: its error is the one returned.
                    return Ok(to_store.send(full).is_ok());
                }
                Ok(true)
            });
            if scanned.is_ok() && !batch.is_empty() {
                let _ = to_store.send(std::mem::take(&mut batch));
            }
            drop(to_store);
            let stored = storer
                .join()
                .map_err(|_| SynErr::new("MigrationError", "the store thread panicked"))?;
            let stored = stored?;
            scanned?;
            Ok::<_, SynErr>(stored)
        })?;
        stats.add(&stored);
        errors.extend(refused);
        dest.release_resident();
        layer.release();
        since_chk += in_segment;
        if more && since_chk < CHECKPOINT_EVERY {
            continue;
        }
        since_chk = 0;
        if !more {
            dest.build_indexes()?;
            dest.release_resident();
        }
        dest.make_durable()?;
        stats.seconds = seconds_before + started.elapsed().as_secs_f64();
        let c = Checkpoint {
            buid: last.unwrap_or([0u8; 32]).to_vec(),
            count: stats.read,
            time: now_ms(),
        };
        state.save_checkpoint(op, iden, &c, &stats, &errors, !more && !stopped)?;
        errors.clear();
        if !more {
            break;
        }
    }
    dest.close()?;
    progress.finish();
    if stopped {
        notice(&format!(
            "Stopping node migration due to reaching nodelim {}",
            opts.nodelim.unwrap_or_default()
        ));
    }
    Ok(stats)
}

/// The form of a partial node (its `*form` row is in another layer).
fn partial_form(others: &[&SrcLayer], buid: &Buid) -> SynResult<Option<String>> {
    for other in others {
        if let Some(form) = other.form_of(buid)? {
            return Ok(Some(form));
        }
    }
    Ok(None)
}

fn record(
    stats: &mut LayerStats,
    errors: &mut Vec<ErrorRecord>,
    layer: &str,
    buid: &Buid,
    e: NodeError,
) {
    *stats.skipped.entry(e.reason.to_owned()).or_insert(0) += 1;
    errors.push(ErrorRecord {
        layer: layer.to_owned(),
        buid: *buid,
        reason: e.reason.to_owned(),
        mesg: e.mesg,
    });
}

/// The store thread of a segment: write each batch as it comes; the counts of what was
/// written and refused, and the refused nodes.
fn store_batches(
    dest: &Layer,
    batches: mpsc::Receiver<Vec<NodeEdit>>,
    meta: &Value,
    layer: &str,
) -> SynResult<(LayerStats, Vec<ErrorRecord>)> {
    let mut stats = LayerStats::default();
    let mut errors = Vec::new();
    for mut batch in batches {
        store_batch(dest, &mut batch, meta, &mut stats, &mut errors, layer)?;
    }
    Ok((stats, errors))
}

/// Write a batch; when the layer refuses it, write node by node and record the refused ones.
fn store_batch(
    dest: &Layer,
    batch: &mut Vec<NodeEdit>,
    meta: &Value,
    stats: &mut LayerStats,
    errors: &mut Vec<ErrorRecord>,
    layer: &str,
) -> SynResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    if dest.store_deferred(batch, meta).is_ok() {
        stats.migrated += batch.len() as u64;
    } else {
        for ne in batch.iter() {
            match dest.store_deferred(std::slice::from_ref(ne), meta) {
                Ok(_) => stats.migrated += 1,
                Err(e) => record(
                    stats,
                    errors,
                    layer,
                    &ne.buid,
                    NodeError {
                        reason: translate::REASON_STORE,
                        mesg: format!("Unable to store nodeedits on {layer}: {e}"),
                    },
                ),
            }
        }
    }
    batch.clear();
    Ok(())
}

/// `lyroffs.yaml` and `migrvers.yaml`.
fn write_yaml_records(src: &SrcCortex, state: &MigrState, dir: &Path) -> SynResult<()> {
    let mut lyroffs = String::new();
    let mut models = String::new();
    for layer in &src.layers {
        let (next, created) = state.next_offset(&layer.iden, layer.splice_next_offset()?)?;
        lyroffs.push_str(&format!(
            "{}:\n  nextoffs: {next}\n  created: {created}\n",
            layer.iden
        ));
        let vers = layer
            .model_version
            .as_ref()
            .map(legacy::yaml_list)
            .unwrap_or_else(|| "null".into());
        models.push_str(&format!("  {}: {vers}\n", layer.iden));
    }
    let src_vers = src
        .hive
        .get(&["cellinfo", "cortex:version"])
        .map(legacy::yaml_list)
        .unwrap_or_else(|| "null".into());
    let migrvers = format!(
        "src:cortex: {src_vers}\nsrc:model:\n{models}dest:cortex: [{}]\n",
        crate::cell::SYN_VERSION.replace('.', ", ")
    );
    for (name, text) in [("lyroffs.yaml", lyroffs), ("migrvers.yaml", migrvers)] {
        let path = dir.join(name);
        write_durably(&path, text.as_bytes())
            .map_err(|e| bad_dest(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// `--form-counts`: per layer, a table of source and destination counts by form.
fn print_form_counts(src: &SrcCortex, dest: &Path) -> SynResult<()> {
    for layer in &src.layers {
        let srcc = layer.form_counts()?;
        let ldir = dest
            .join(crate::cortex::service::LAYERS_DIR)
            .join(&layer.iden);
        let destc = if ldir.join("layer.lmdb").exists() {
            let l = Layer::open(&ldir, &layer.iden)?;
            let c = l.form_counts()?;
            l.close()?;
            c
        } else {
            BTreeMap::new()
        };
        println!("layer {}", layer.iden);
        println!(
            "{:<32} {:>10} {:>10} {:>10}",
            "FORM", "SRC_CNT", "DEST_CNT", "DIFF"
        );
        let mut forms: Vec<&String> = srcc.keys().chain(destc.keys()).collect();
        forms.sort();
        forms.dedup();
        let (mut ts, mut td) = (0u64, 0u64);
        for form in forms {
            let s = srcc.get(form).copied().unwrap_or(0);
            let d = destc.get(form).copied().unwrap_or(0);
            ts += s;
            td += d;
            println!("{form:<32} {s:>10} {d:>10} {:>10}", s as i64 - d as i64);
        }
        println!(
            "{:<32} {ts:>10} {td:>10} {:>10}",
            "TOTAL",
            ts as i64 - td as i64
        );
    }
    Ok(())
}

/// `--dump-errors`: every recorded error into `migration/migrerrors_<ms>.mpk`.
fn dump_errors(dest: &Path) -> SynResult<()> {
    let dir = dest.join(MIGRATION_DIR);
    let state = MigrState::open_existing(&dir)?.ok_or_else(|| {
        bad_dest(format!(
            "{} holds no migration state (run a migration first)",
            dir.display()
        ))
    })?;
    let errors = state.errors()?;
    let path = dir.join(format!("migrerrors_{}.mpk", now_ms()));
    write_durably(&path, &Value::Array(errors).to_bytes())
        .map_err(|e| bad_dest(format!("cannot write {}: {e}", path.display())))?;
    println!("Dump file located at {}", path.display());
    Ok(())
}

/// Source memory locked with `mlock` until dropped.
pub struct LockedSource {
    maps: Vec<(std::ptr::NonNull<std::ffi::c_void>, usize)>,
}

impl Drop for LockedSource {
    fn drop(&mut self) {
        for (ptr, len) in self.maps.drain(..) {
            // SAFETY: each mapping was made by `lock_source` and is unmapped once.
            unsafe {
                let _ = nix::sys::mman::munmap(ptr, len);
            }
        }
    }
}

/// `--src-dedicated`: map every source layer file and lock it in memory, so the kernel keeps
/// the pages LMDB reads resident. Fails with one line when the lock limit is too low.
fn lock_source(src: &SrcCortex) -> SynResult<LockedSource> {
    use nix::sys::mman::{MapFlags, ProtFlags, mlock, mmap};
    let mut locked = LockedSource { maps: Vec::new() };
    let mut total = 0usize;
    for layer in &src.layers {
        for env in ["layer.lmdb", "nodedata.lmdb"] {
            let path = layer.dir.join(env).join("data.mdb");
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let len = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
            let Some(nz) = std::num::NonZeroUsize::new(len) else {
                continue;
            };
            // SAFETY: a read-only shared mapping of a file nothing writes (the source is a
            // copy); it is only locked, never read through.
            let ptr = unsafe {
                mmap(
                    None,
                    nz,
                    ProtFlags::PROT_READ,
                    MapFlags::MAP_SHARED,
                    &file,
                    0,
                )
            }
            .map_err(|e| SynErr::new("BadSource", format!("cannot map {}: {e}", path.display())))?;
            locked.maps.push((ptr, len));
            total += len;
            // SAFETY: the range is the mapping just made.
            if let Err(e) = unsafe { mlock(ptr, len) } {
                let limit =
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
                        .map(|(soft, _)| format!("{} KiB", soft / 1024))
                        .unwrap_or_else(|_| "unknown".into());
                return Err(SynErr::new(
                    "BadSource",
                    format!(
                        "--src-dedicated: cannot lock {} MiB of source memory ({e}); the memory lock \
                         limit is {limit}: raise LimitMEMLOCK= in the unit (or ulimit -l), or give \
                         the process CAP_IPC_LOCK",
                        total.div_ceil(1 << 20)
                    ),
                ));
            }
        }
    }
    notice(&format!(
        "locked {} MiB of source memory",
        total.div_ceil(1 << 20)
    ));
    Ok(locked)
}
