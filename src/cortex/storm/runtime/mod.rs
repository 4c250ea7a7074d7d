//! The Storm runtime: runs a parsed query against a [`View`], producing Synapse's message
//! stream.
//!
//! [`run_storm`] is what the cortex service calls for `storm()`: it sends `init`, then
//! `node`, `node:edits`, `print`, `warn` as they happen, at most one `err`, and `fini`
//! (storm.md §1). [`call_storm`] and [`count_storm`] are `callStorm()` and `count()`: the same
//! run without messages, giving the `return(...)` value or the number of nodes.
//!
//! # How a query runs
//!
//! Like Synapse's, the pipeline is lazy: each operation pulls `(node, path)` items from the
//! one before it, one at a time, so prints and node messages interleave as in Synapse
//! (`inet:ipv4 $lib.print(x)` sends print, node, print, node). Each operation is an iterator
//! over the previous one's (`exec`); values and expressions are in `expr`, filter comparisons
//! in `cmpr`, commands in `cmds`. Lifts read their buids first (a lift never holds an LMDB
//! read snapshot while the query writes), then their nodes: 64 at a time from one snapshot
//! while the query edits nothing, and one at a time, as they are pulled, once it edits.
//!
//! Edits go through an [`Editor`] with [`Durability::Deferred`]: the layer logs them without
//! `fdatasync`, and the runtime calls [`crate::cortex::layer::Layer::make_durable`] once before
//! `fini`, so `fini` acknowledges every edit of the query. If that flush fails, the query ends
//! with an `err` instead.
//!
//! # Agreement with Synapse
//!
//! `tests/storm_runtime.rs` sends about 500 queries (storm, callStorm and count; lifts,
//! filters, pivots, edits, model hooks, variables, control flow, commands, `$lib`, opts) to a
//! real Python Synapse 2.256 cortex and to this runtime, and compares the messages after
//! dropping times and masking `.created` (storm.md §8). Known differences are listed there with
//! their reasons.
//!
//! Not done yet (they raise `NoSuchName`/`StormRuntimeError` or are ignored): much of `$lib`
//! (present: print, warn, len, cast, trycast, repr, guid, list, dict, range, min, max, raise,
//! fire, str, time, vars.type, regex, dict, json), `opts.mode` other than `storm`,
//! `opts.scrub`/`path`, `graph` and most other commands, command usage text, permissions,
//! guid-by-dict values (`ps:contact={...}`), tag `:isnow` redirects and tag pruning. Storm
//! lists are values here: methods that change a list work on variables (`$x.append(y)`).
//! Storm `Number`s are exact to 38 digits (Synapse: 49). Emitter functions run to the end
//! before their values are used (Synapse interleaves them with the consumer). A lift reads
//! its buids before its nodes, so a huge lift holds 32 bytes per node.

mod cmds;
mod cmpr;
mod edit;
mod exec;
mod expr;
mod number;
mod value;
mod views;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::mpsc::Sender;

use crate::cell::auth::Auth;
use crate::clock::now_ms;
use crate::cortex::NameMap;
use crate::cortex::editor::{Durability, EditSink, Editor};
use crate::cortex::edits::{Buid, BuidForm, BuidMap, NodeEdit};
use crate::cortex::model::Model;
use crate::cortex::storm::{ast, parse_query, query_hash};
use crate::cortex::view::{Node, View};
use crate::error::{SynErr, SynResult};
use crate::msgpack::{self, Value};
use crate::telepath::{Packed, Yield};

use value::Val;

/// What a storm run hands back besides its messages.
struct Outcome {
    /// Nodes that left the pipeline.
    count: i64,
    /// How it ended: normally (with a `return` value, if any) or with an error.
    end: Result<Option<Val>, SynErr>,
}

/// `editformat`: how `node:edits` messages are sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EditFormat {
    NodeEdits,
    Count,
    Nothing,
}

/// Where [`run_storm`] sends its messages, from the blocking thread that runs the query.
pub trait MessageSender {
    /// Send one message, waiting while the receiver is full; `false` once it is gone.
    fn send_blocking(&self, mesg: Value) -> bool;

    /// Send `("node:edits", {"edits": ...})` for these applied edits (buids as idens).
    fn send_node_edits(&self, edits: &Arc<Vec<NodeEdit>>) -> bool {
        let edits = edits.iter().map(NodeEdit::to_value_hex).collect();
        self.send_blocking(Value::Array(vec![
            Value::from("node:edits"),
            Value::map([("edits", Value::Array(edits))]),
        ]))
    }

    /// Whether the receiver is gone.
    fn is_closed(&self) -> bool;
}

/// A telepath stream's channel: each message is one `Ok` item; `node:edits` messages are
/// encoded by the link's task, straight from the applied edits.
impl MessageSender for Sender<SynResult<Yield>> {
    fn send_blocking(&self, mesg: Value) -> bool {
        self.blocking_send(Ok(Yield::Value(mesg))).is_ok()
    }

    fn send_node_edits(&self, edits: &Arc<Vec<NodeEdit>>) -> bool {
        let mesg = NodeEditsMesg(Arc::clone(edits));
        self.blocking_send(Ok(Yield::Packed(Box::new(mesg))))
            .is_ok()
    }

    fn is_closed(&self) -> bool {
        Sender::is_closed(self)
    }
}

/// A `node:edits` message that encodes itself (what [`MessageSender::send_node_edits`] sends
/// as a value).
struct NodeEditsMesg(Arc<Vec<NodeEdit>>);

impl Packed for NodeEditsMesg {
    fn encode(&self, out: &mut Vec<u8>) {
        msgpack::write_array_len(2, out);
        msgpack::write_str("node:edits", out);
        msgpack::write_map_len(1, out);
        msgpack::write_str("edits", out);
        msgpack::write_array_len(self.0.len(), out);
        for ne in self.0.iter() {
            ne.encode(BuidForm::Iden, out);
        }
    }
}

impl MessageSender for Sender<Value> {
    fn send_blocking(&self, mesg: Value) -> bool {
        self.blocking_send(mesg).is_ok()
    }

    fn is_closed(&self) -> bool {
        Sender::is_closed(self)
    }
}

/// Where messages go: the client's channel (filtered by `show`), or nowhere.
pub(crate) struct Sink<'o> {
    out: Option<&'o dyn MessageSender>,
    show: Option<Vec<String>>,
    editformat: EditFormat,
    /// The receiver is gone: stop the query.
    closed: Cell<bool>,
    /// How many batches of edits the query has made so far.
    edits: Cell<u64>,
}

impl Sink<'_> {
    /// Whether messages of this type are forwarded.
    fn shows(&self, kind: &str) -> bool {
        match &self.show {
            None => true,
            Some(show) => matches!(kind, "init" | "fini" | "err") || show.iter().any(|s| s == kind),
        }
    }

    /// Send `(kind, info)` if it is shown.
    fn send(&self, kind: &str, info: Value) {
        self.deliver(kind, |out| {
            out.send_blocking(Value::Array(vec![Value::from(kind), info]))
        });
    }

    /// Hand a message of `kind` to `send` if it is shown and the receiver is there.
    fn deliver(&self, kind: &str, send: impl FnOnce(&dyn MessageSender) -> bool) {
        let Some(out) = self.out else {
            return;
        };
        if self.closed.get() || !self.shows(kind) {
            return;
        }
        if !send(out) {
            self.closed.set(true);
        }
    }
}

impl EditSink for Sink<'_> {
    fn node_edits(&self, edits: &Arc<Vec<NodeEdit>>) {
        self.edits.set(self.edits.get() + 1);
        match self.editformat {
            EditFormat::NodeEdits => {
                self.deliver("node:edits", |out| out.send_node_edits(edits));
            }
            EditFormat::Count => {
                let count: usize = edits.iter().map(|ne| ne.edits.len()).sum();
                self.send(
                    "node:edits:count",
                    Value::map([("count", Value::from(count))]),
                );
            }
            EditFormat::Nothing => {}
        }
    }

    fn warn(&self, mesg: &str) {
        self.send("warn", Value::map([("mesg", Value::from(mesg))]));
    }
}

/// Why a pipeline stopped early: an error, or storm control flow on its way to whatever
/// handles it (a loop, a function call, the top of the query).
#[derive(Debug)]
pub(crate) enum Flow {
    /// A Synapse error.
    Err(SynErr),
    /// `break`, with the node it was reached with (boxed: errors stay small).
    Break(Option<Box<Item>>, ast::Span),
    /// `continue`, with the node it was reached with.
    Continue(Option<Box<Item>>, ast::Span),
    /// `return(...)`.
    Return(Val),
    /// `stop`.
    Stop(ast::Span),
}

impl From<SynErr> for Flow {
    fn from(e: SynErr) -> Flow {
        Flow::Err(e)
    }
}

/// Results inside the runtime.
pub(crate) type Res<T> = Result<T, Flow>;

/// Per-node state that travels with a node: its variables.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path {
    /// Variables set while this node was in the pipeline.
    pub vars: NameMap<Val>,
    /// `$path.meta` values.
    pub meta: Vec<(String, Val)>,
    /// How the node was reached: `(source iden, link info)` per pivot.
    pub links: Vec<(String, Value)>,
}

/// One node in the pipeline with its path.
pub(crate) type Item = (Rc<Node>, Path);

/// A query being run.
pub(crate) struct Runt<'a> {
    pub view: &'a View,
    pub model: &'a Model,
    /// The whole query text (for highlights).
    pub text: &'a str,
    pub opts: &'a Value,
    pub sink: &'a Sink<'a>,
    pub editor: Editor<'a>,
    /// Variable frames: the query's, then one per function call.
    pub frames: RefCell<Vec<NameMap<Val>>>,
    /// Whether each known variable is runtime safe (the same for every node).
    pub runtvars: RefCell<NameMap<bool>>,
    /// The query's function definitions, by index ([`Val::Func`] names them).
    pub funcs: Vec<&'a ast::Function>,
    /// Node data loaded with `$node.data.load()`, to go into the packed nodes.
    pub loaded: RefCell<BuidMap<Vec<(String, Value)>>>,
    /// `opts.readonly`.
    pub readonly: bool,
    /// Where the stack was when the query started (an address), to bound recursion.
    pub stack_base: usize,
    /// Values emitted by the emitter functions being called, innermost last.
    pub emits: RefCell<Vec<Vec<Val>>>,
    /// Variables changed in place (`$list.append(x)`) since the last
    /// [`Runt::take_mutated`].
    pub mutated: RefCell<Vec<String>>,
    /// The node [`Runt::reload`] read last, with the edit count at that moment: packing it
    /// needs no fresh read while no edit came after.
    pub reloaded: RefCell<Option<(Rc<Node>, u64)>>,
    /// Tag texts this query normalized, with their norms (at most [`TAG_NORMS_KEPT`]): a
    /// loop tagging every row with `#$tag` normalizes it once.
    pub tag_norms: RefCell<NameMap<String>>,
}

/// How many tag norms a query keeps before it starts over.
pub(crate) const TAG_NORMS_KEPT: usize = 1024;

/// How much of the calling thread's stack storm function recursion may use. The service runs
/// queries on tokio's blocking threads (2 MiB stacks); the parser bounds syntactic nesting, so
/// only function calls recurse without a syntactic bound.
pub(crate) const STACK_BUDGET: usize = 1 << 20;

/// The current stack position (an address; the stack grows down on every supported target).
pub(crate) fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

fn monotonic_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64 + 1
}

/// Check the opts that Synapse refuses before sending any message.
fn check_opts(opts: &Value) -> SynResult<EditFormat> {
    if !matches!(opts, Value::Nil | Value::Map(_)) {
        return Err(SynErr::bad_arg("Storm opts must be a dict."));
    }
    let editformat = match opts.get("editformat") {
        None | Some(Value::Nil) => EditFormat::NodeEdits,
        Some(Value::Str(s)) if s == "nodeedits" => EditFormat::NodeEdits,
        Some(Value::Str(s)) if s == "count" => EditFormat::Count,
        Some(Value::Str(s)) if s == "none" => EditFormat::Nothing,
        Some(other) => {
            let shown = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            return Err(
                SynErr::new("BadConfValu", format!("invalid edit format, got {shown}"))
                    .with("name", "editformat")
                    .with("valu", other.clone()),
            );
        }
    };
    if let Some(keepalive) = opts.get("keepalive").and_then(Value::as_i64)
        && keepalive <= 0
    {
        return Err(SynErr::bad_arg(format!(
            "keepalive must be > 0; got {keepalive}"
        )));
    }
    if let Some(vars) = opts.get("vars").and_then(Value::as_map) {
        for (name, _) in vars {
            if name.as_str().is_none() {
                return Err(SynErr::bad_arg(format!(
                    "Storm var names must be strings (got {name} of type {})",
                    name.type_name()
                )));
            }
        }
    }
    Ok(editformat)
}

/// Run a storm query, sending Synapse's messages (`(type, info)` values: `init`, `node`,
/// `node:edits`, `print`, `warn`, `err`, `fini`) into the channel as they happen. Runs on the
/// calling (blocking) thread: the service calls it inside `spawn_blocking`. `opts` is the storm
/// opts map (may be Nil); `user` the user's iden.
///
/// Options Synapse refuses before sending anything (a bad `editformat` or `keepalive`, var
/// names that are not strings) are returned as an error and no message is sent; everything
/// else, parse errors included, ends the stream with `err` then `fini`. Every edit is durable
/// when `fini` is sent. If the receiver goes away the query stops at its next message.
pub fn run_storm<'u>(
    view: &View,
    text: &str,
    opts: &Value,
    user: impl Into<StormUser<'u>>,
    out: &dyn MessageSender,
) -> SynResult<()> {
    let editformat = check_opts(opts)?;
    let tick = now_ms();
    let abstick = monotonic_ms();
    let task = match opts.get("task").and_then(Value::as_str) {
        Some(task) => task.to_string(),
        None => crate::guid::guid(),
    };
    let show = opts.get("show").and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    });
    let sink = Sink {
        out: Some(out),
        show: show.filter(|s| !s.is_empty()),
        editformat,
        closed: Cell::new(false),
        edits: Cell::new(0),
    };
    sink.send(
        "init",
        Value::map([
            ("tick", Value::from(tick)),
            ("text", Value::from(text)),
            ("abstick", Value::from(abstick)),
            ("hash", Value::from(query_hash(text))),
            ("task", Value::from(task)),
        ]),
    );
    let outcome = execute(view, text, opts, user.into(), &sink, true);
    let err = match outcome.end {
        Ok(None) => None,
        Ok(Some(retn)) => Some(SynErr::new("StormReturn", retn.py_str())),
        Err(e) => Some(e),
    };
    if let Some(err) = err {
        let mut info = err.to_value();
        strip_internal(&mut info);
        sink.send("err", info);
    }
    let abstock = monotonic_ms();
    let took = abstock - abstick;
    sink.send(
        "fini",
        Value::map([
            ("tock", Value::from(tick + took)),
            ("abstock", Value::from(abstock)),
            ("took", Value::from(took)),
            ("count", Value::from(outcome.count)),
        ]),
    );
    Ok(())
}

/// Who runs a query: the user's iden and, to check their edit permissions on the write
/// layer, the cell's auth (`None`: edits are not checked, as for the cortex itself).
#[derive(Clone, Copy)]
pub struct StormUser<'a> {
    /// The user's iden.
    pub iden: &'a str,
    /// The auth whose rules decide the user's edits.
    pub auth: Option<&'a Auth>,
}

impl<'a> From<&'a str> for StormUser<'a> {
    fn from(iden: &'a str) -> Self {
        StormUser { iden, auth: None }
    }
}

impl<'a> From<&'a String> for StormUser<'a> {
    fn from(iden: &'a String) -> Self {
        StormUser::from(iden.as_str())
    }
}

/// Drop `esrc`/`ename` from an error tuple, as the storm stream does.
fn strip_internal(err: &mut Value) {
    if let Value::Array(parts) = err
        && let Some(Value::Map(info)) = parts.get_mut(1)
    {
        info.retain(|(k, _)| !matches!(k.as_str(), Some("esrc" | "ename")));
    }
}

/// Synapse's `callStorm()`: run the query to the end without messages and return the value
/// of its `return(...)` (Nil without one). Errors are returned as the `err` message would
/// carry them.
pub fn call_storm<'u>(
    view: &View,
    text: &str,
    opts: &Value,
    user: impl Into<StormUser<'u>>,
) -> SynResult<Value> {
    let outcome = execute_silently(view, text, opts, user.into())?;
    Ok(outcome.end?.map_or(Value::Nil, |v| v.to_prim()))
}

/// Synapse's `count()`: the number of nodes the query yields.
pub fn count_storm<'u>(
    view: &View,
    text: &str,
    opts: &Value,
    user: impl Into<StormUser<'u>>,
) -> SynResult<i64> {
    let outcome = execute_silently(view, text, opts, user.into())?;
    outcome.end?;
    Ok(outcome.count)
}

/// Run a query with no message stream (`callStorm`, `count`).
fn execute_silently(
    view: &View,
    text: &str,
    opts: &Value,
    user: StormUser<'_>,
) -> SynResult<Outcome> {
    let editformat = check_opts(opts)?;
    let sink = Sink {
        out: None,
        show: None,
        editformat,
        closed: Cell::new(false),
        edits: Cell::new(0),
    };
    Ok(execute(view, text, opts, user, &sink, false))
}

/// Parse and run a query; `send_nodes` packs and sends each node.
fn execute(
    view: &View,
    text: &str,
    opts: &Value,
    user: StormUser<'_>,
    sink: &Sink<'_>,
    send_nodes: bool,
) -> Outcome {
    let query = match parse_query(text) {
        Ok(q) => q,
        Err(e) => {
            return Outcome {
                count: 0,
                end: Err(e),
            };
        }
    };
    let rt = Runt::new(view, text, opts, user, sink, &query);
    let mut count = 0i64;
    let end = rt.drive(&query, |rt, node| {
        count += 1;
        if send_nodes && sink.shows("node") {
            sink.send("node", rt.pack(node, opts));
        }
        !sink.closed.get()
    });
    // Acknowledge the edits only once they are on disk.
    let end = end.and_then(|retn| {
        rt.editor.make_durable()?;
        Ok(retn)
    });
    Outcome { count, end }
}

impl<'a> Runt<'a> {
    fn new(
        view: &'a View,
        text: &'a str,
        opts: &'a Value,
        user: StormUser<'a>,
        sink: &'a Sink<'a>,
        query: &'a ast::Query,
    ) -> Runt<'a> {
        let mut globals = NameMap::default();
        let mut runtvars = NameMap::default();
        runtvars.insert("node".to_string(), false);
        runtvars.insert("path".to_string(), false);
        for (name, valu) in opts.get("vars").and_then(Value::as_map).unwrap_or(&[]) {
            if let Some(name) = name.as_str() {
                globals.insert(name.to_string(), Val::from(valu));
                runtvars.insert(name.to_string(), true);
            }
        }
        runtvars.insert("lib".to_string(), true);
        let mut funcs = Vec::new();
        exec::collect_functions(&query.opers, &mut funcs);
        let rt = Runt {
            view,
            model: view.model(),
            text,
            opts,
            sink,
            editor: match user.auth {
                Some(auth) => {
                    Editor::new(view, user.iden, Durability::Deferred, sink).checked(auth)
                }
                None => Editor::new(view, user.iden, Durability::Deferred, sink),
            },
            frames: RefCell::new(vec![globals]),
            runtvars: RefCell::new(runtvars),
            funcs,
            loaded: RefCell::default(),
            readonly: opts.get("readonly").is_some_and(|v| Val::from(v).truthy()),
            stack_base: stack_position(),
            mutated: RefCell::default(),
            reloaded: RefCell::default(),
            tag_norms: RefCell::default(),
            emits: RefCell::default(),
        };
        exec::load_runtvars(&rt, &query.opers);
        rt
    }

    /// Run the query, calling `on_node` for each node that leaves it (stop when it returns
    /// false), honoring `opts.limit`. Returns the `return(...)` value, if any.
    fn drive(
        &self,
        query: &'a ast::Query,
        mut on_node: impl FnMut(&Runt<'a>, &Item) -> bool,
    ) -> Result<Option<Val>, SynErr> {
        let limit = self.opts.get("limit").and_then(Value::as_i64);
        let input = self.input()?;
        let mut seen = 0i64;
        let genr = exec::run_query(self, query, Box::new(input.into_iter().map(Ok)));
        for item in genr {
            match item {
                Ok(item) => {
                    seen += 1;
                    if !on_node(self, &item) {
                        break;
                    }
                    if limit.is_some_and(|l| seen >= l) {
                        break;
                    }
                }
                Err(flow) => return self.top_flow(flow),
            }
        }
        Ok(None)
    }

    /// What control flow means at the top of the query.
    fn top_flow(&self, flow: Flow) -> Result<Option<Val>, SynErr> {
        match flow {
            Flow::Err(e) => Err(e),
            Flow::Return(v) => Ok(Some(v)),
            Flow::Break(_, span) | Flow::Continue(_, span) => {
                let statement = if matches!(flow, Flow::Break(..)) {
                    "break"
                } else {
                    "continue"
                };
                Err(SynErr::new(
                    "StormRuntimeError",
                    format!("Loop control statement \"{statement}\" used outside of a loop."),
                )
                .with("statement", statement)
                .with("highlight", self.highlight(span)))
            }
            Flow::Stop(span) => Err(SynErr::new(
                "StormRuntimeError",
                "Generator control statement \"stop\" used outside of a generator function.",
            )
            .with("statement", "stop")
            .with("highlight", self.highlight(span))),
        }
    }

    /// The input nodes: `opts.ndefs` then `opts.idens`.
    fn input(&self) -> SynResult<Vec<Item>> {
        let mut out = Vec::new();
        for ndef in self
            .opts
            .get("ndefs")
            .and_then(Value::as_array)
            .unwrap_or(&[])
        {
            if let Some([Value::Str(form), valu]) = ndef.as_array()
                && let Some(node) = self.view.node_by_ndef(form, valu)?
            {
                out.push((Rc::new(node), self.init_path()));
            }
        }
        for iden in self
            .opts
            .get("idens")
            .and_then(Value::as_array)
            .unwrap_or(&[])
        {
            let buid = iden
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .and_then(|b| <Buid>::try_from(b).ok())
                .ok_or_else(|| {
                    SynErr::new("NoSuchIden", "Iden must be 64 hex digits")
                        .with("iden", iden.clone())
                })?;
            if let Some(node) = self.view.node(&buid)? {
                out.push((Rc::new(node), self.init_path()));
            }
        }
        Ok(out)
    }

    /// A fresh path for a lifted node.
    pub(crate) fn init_path(&self) -> Path {
        Path::default()
    }

    /// Pack a node for a `node` message.
    fn pack(&self, item: &Item, opts: &Value) -> Value {
        let (node, path) = item;
        // Synapse packs its live node object: what later edits in the query changed shows.
        let unchanged =
            self.sink.edits.get() == 0
                || self.reloaded.borrow().as_ref().is_some_and(|(last, at)| {
                    Rc::ptr_eq(last, node) && *at == self.sink.edits.get()
                });
        let fresh = if unchanged {
            None
        } else {
            self.view.node(&node.buid).ok().flatten()
        };
        let node = fresh.as_ref().unwrap_or(node);
        let repr = opts.get("repr").is_some_and(|v| Val::from(v).truthy());
        let loaded = self.loaded.borrow();
        let data = loaded.get(&node.buid).map_or(&[][..], Vec::as_slice);
        let mut packed = node.pack(self.model, repr, data);
        if let Value::Array(parts) = &mut packed
            && let Some(Value::Map(info)) = parts.get_mut(1)
        {
            let meta = path
                .meta
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), v.to_prim()))
                .collect();
            info.push((Value::from("path"), Value::Map(meta)));
            if opts.get("links").is_some_and(|v| Val::from(v).truthy()) {
                let links = path
                    .links
                    .iter()
                    .map(|(iden, link)| {
                        Value::Array(vec![Value::from(iden.as_str()), link.clone()])
                    })
                    .collect();
                info.push((Value::from("links"), Value::Array(links)));
            }
            if opts
                .get("show:storage")
                .is_some_and(|v| Val::from(v).truthy())
            {
                info.push((Value::from("storage"), self.storage(node)));
            }
            if let Some(embeds) = opts
                .get("embeds")
                .and_then(|e| e.get(&node.form))
                .and_then(Value::as_map)
            {
                info.push((Value::from("embeds"), self.embeds(node, embeds)));
            }
        }
        packed
    }

    /// `show:storage`: each layer's storage node, `{valu, form, props, tags, tagprops}` with
    /// the parts it holds (Synapse also keeps a part emptied by deletes as `{}`).
    fn storage(&self, node: &Node) -> Value {
        let mut out = Vec::new();
        for layer in self.view.layers() {
            let Ok(Some(sode)) = layer.sode(&node.buid) else {
                out.push(Value::Map(Vec::new()));
                continue;
            };
            let full = sode.to_value();
            let mut info = Vec::new();
            for key in ["valu", "form", "props", "tags", "tagprops"] {
                match full.get(key) {
                    Some(Value::Map(m)) if m.is_empty() => {}
                    Some(v) => info.push((Value::from(key), v.clone())),
                    None => {}
                }
            }
            out.push(Value::Map(info));
        }
        Value::Array(out)
    }

    /// `embeds`: for each `prop::prop` path, the node it leads to (`*`, `$iden`, `$form`) and
    /// the asked-for props of that node.
    fn embeds(&self, node: &Node, embeds: &[(Value, Value)]) -> Value {
        let mut out: Vec<(Value, Value)> = Vec::new();
        for (nodepath, relprops) in embeds {
            let Some(nodepath) = nodepath.as_str() else {
                continue;
            };
            let mut step = Some(node.clone());
            for name in nodepath.split("::") {
                step = step.and_then(|n| self.embed_step(&n, name));
            }
            let Some(target) = step else {
                continue;
            };
            let iden = Value::from(target.iden());
            let mut embed = vec![
                (Value::from("*"), iden.clone()),
                (Value::from("$iden"), iden),
                (Value::from("$form"), Value::from(target.form.as_str())),
            ];
            for relp in relprops.as_array().unwrap_or(&[]) {
                let Some(relp) = relp.as_str() else {
                    continue;
                };
                embed.push((
                    Value::from(relp),
                    target.get(relp).cloned().unwrap_or(Value::Nil),
                ));
            }
            out.push((Value::from(nodepath), Value::Map(embed)));
        }
        Value::Map(out)
    }

    /// The node a prop of `node` points to (its type is a form, or it is an ndef).
    fn embed_step(&self, node: &Node, prop: &str) -> Option<Node> {
        let valu = node.get(prop)?;
        let form = self.model.form(&node.form)?;
        let propobj = form.prop(prop)?;
        let buid = if self.model.form(&propobj.typ.name).is_some() {
            crate::cortex::model::buid(&propobj.typ.name, valu)
        } else if let Some([Value::Str(f), v]) = valu.as_array() {
            crate::cortex::model::buid(f, v)
        } else {
            return None;
        };
        self.view.node(&buid).ok().flatten()
    }

    /// Synapse's `highlight` for a span of the query text.
    pub(crate) fn highlight(&self, span: ast::Span) -> Value {
        crate::cortex::storm::highlight(self.text, span)
    }

    /// Add a highlight to an error unless it has one.
    pub(crate) fn at(&self, span: ast::Span, err: SynErr) -> SynErr {
        if err.field("highlight").is_some() {
            return err;
        }
        err.with("highlight", self.highlight(span))
    }

    /// Send a `print` message.
    pub(crate) fn print(&self, mesg: &str) {
        self.sink
            .send("print", Value::map([("mesg", Value::from(mesg))]));
    }

    /// Send a `warn` message.
    pub(crate) fn warn(&self, mesg: &str) {
        self.sink.warn(mesg);
    }

    /// How many batches of edits the query has made so far.
    pub(crate) fn edit_count(&self) -> u64 {
        self.sink.edits.get()
    }

    /// Whether the client went away.
    pub(crate) fn cancelled(&self) -> bool {
        self.sink.closed.get() || self.sink.out.is_some_and(|out| out.is_closed())
    }

    /// A variable from the current frame (or the query's frame).
    pub(crate) fn get_var(&self, name: &str) -> Option<Val> {
        let frames = self.frames.borrow();
        if let Some(v) = frames.last().and_then(|f| f.get(name)) {
            return Some(v.clone());
        }
        frames.first().and_then(|f| f.get(name)).cloned()
    }

    /// Set a variable in the current frame.
    pub(crate) fn set_var(&self, name: &str, valu: Val) {
        if let Some(frame) = self.frames.borrow_mut().last_mut() {
            frame.insert(name.to_string(), valu);
        }
    }

    /// Note that a variable was changed in place.
    pub(crate) fn note_mutated(&self, name: &str) {
        self.mutated.borrow_mut().push(name.to_string());
    }

    /// Copy variables changed in place into a node's path (Synapse's path and runtime share
    /// the object).
    pub(crate) fn take_mutated(&self, path: &mut Path) {
        for name in self.mutated.borrow_mut().drain(..) {
            if path.vars.contains_key(&name)
                && let Some(v) = self.get_var(&name)
            {
                path.vars.insert(name, v);
            }
        }
    }

    /// Whether a variable is runtime safe.
    pub(crate) fn is_runtvar(&self, name: &str) -> bool {
        self.runtvars.borrow().get(name).copied().unwrap_or(false)
    }

    /// A node as it is after an edit: from the editor's last write, or read again.
    pub(crate) fn reload(&self, node: &Node) -> Res<Rc<Node>> {
        Ok(match self.editor.node(&node.buid)? {
            Some(n) => self.edited(n),
            None => Rc::new(node.clone()),
        })
    }

    /// A node read right after an edit, remembered so packing it does not read it again.
    pub(crate) fn edited(&self, node: Node) -> Rc<Node> {
        let fresh = Rc::new(node);
        *self.reloaded.borrow_mut() = Some((fresh.clone(), self.sink.edits.get()));
        fresh
    }

    /// Remember (or, with None, forget) node data the query loaded or set, for packing.
    pub(crate) fn keep_data(&self, node: &Node, name: &str, valu: Option<Value>) {
        let mut loaded = self.loaded.borrow_mut();
        let data = loaded.entry(node.buid).or_default();
        let at = data.iter().position(|(k, _)| k == name);
        match (at, valu) {
            (Some(at), Some(v)) => data[at].1 = v,
            (None, Some(v)) => data.push((name.to_string(), v)),
            (Some(at), None) => {
                data.remove(at);
            }
            (None, None) => {}
        }
    }

    /// Refuse edits in a read-only runtime.
    pub(crate) fn req_writable(&self, span: ast::Span) -> Res<()> {
        if self.readonly {
            return Err(Flow::Err(self.at(
                span,
                SynErr::new(
                    "IsReadOnly",
                    "Storm runtime is in readonly mode, cannot create or edit nodes and other graph data.",
                ),
            )));
        }
        Ok(())
    }
}
