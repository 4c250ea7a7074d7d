//! Storm commands: `count`, `limit`, `uniq`, `delnode`, `spin`, `min`, `max`, `sleep`, `iden`,
//! `tee`, `tree`.
//!
//! Arguments are computed per node when they depend on it (`max :asn` gets each node's
//! `:asn`), as Synapse's `CmdOper` does, then parsed the way each command's argument parser
//! would.

use std::collections::HashSet;
use std::rc::Rc;

use super::exec::{Genr, fail, none, one, per_node, run_query};
use super::expr;
use super::value::Val;
use super::{Flow, Item, Res, Runt};
use crate::cortex::storm::ast;
use crate::error::SynErr;
use crate::msgpack::Value;

/// The most nodes `min`/`max` keep.
const MINMAX_SIZE_MAX: i128 = 100;

/// Parsed command arguments.
#[derive(Default)]
struct Argv {
    /// Positional arguments.
    args: Vec<Val>,
    /// Options: `--name` with its value (`Bool(true)` for a flag).
    opts: Vec<(String, Val)>,
}

impl Argv {
    fn opt(&self, name: &str) -> Option<&Val> {
        self.opts.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn flag(&self, name: &str) -> bool {
        self.opt(name).is_some_and(Val::truthy)
    }
}

/// Which options of a command take a value.
fn valued_opts(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "min" | "max" => &["--size"],
        _ => &[],
    }
}

/// The flags a command knows.
fn flag_opts(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "count" => &["--yield"],
        "delnode" => &["--force", "--delbytes", "--deledges"],
        "tee" => &["--join", "-j", "--parallel", "-p"],
        _ => &[],
    }
}

fn bad_arg(mesg: impl Into<String>) -> Flow {
    Flow::Err(SynErr::bad_arg(mesg))
}

fn parse_argv(rt: &Runt<'_>, cmd: &ast::Command, item: Option<&Item>) -> Res<Argv> {
    let name = cmd.name.name.as_str();
    let mut argv = Argv::default();
    let mut args = cmd.args.iter().peekable();
    while let Some(arg) = args.next() {
        match arg {
            ast::CmdArg::Opt(id) => {
                let (opt, inline) = match id.name.split_once('=') {
                    Some((o, v)) => (o.to_string(), Some(Val::Str(v.to_string()))),
                    None => (id.name.clone(), None),
                };
                if valued_opts(name).contains(&opt.as_str()) {
                    let valu = match inline {
                        Some(v) => v,
                        None => match args.next() {
                            Some(ast::CmdArg::Value(v)) => expr::compute(rt, v, item)?,
                            _ => {
                                return Err(bad_arg(format!("An argument is required for {opt}.")));
                            }
                        },
                    };
                    argv.opts.push((opt, valu));
                } else if flag_opts(name).contains(&opt.as_str()) {
                    argv.opts.push((opt, Val::Bool(true)));
                } else {
                    return Err(bad_arg(format!(
                        "Expected 0 positional arguments. Got 1: ['{opt}']"
                    )));
                }
            }
            ast::CmdArg::Query(q) => argv
                .args
                .push(Val::Query(q.query.span.text(rt.text).to_string())),
            ast::CmdArg::Value(v) => argv.args.push(expr::compute(rt, v, item)?),
        }
    }
    Ok(argv)
}

fn args_safe(rt: &Runt<'_>, cmd: &ast::Command) -> bool {
    cmd.args.iter().all(|a| match a {
        ast::CmdArg::Value(v) => expr::is_safe(rt, v),
        _ => true,
    })
}

/// Run a command over the pipeline.
pub(super) fn run<'g>(rt: &'g Runt<'g>, cmd: &'g ast::Command, input: Genr<'g>) -> Genr<'g> {
    let name = cmd.name.name.as_str();
    let known = [
        "count", "limit", "uniq", "delnode", "spin", "min", "max", "sleep", "iden", "tee", "tree",
    ];
    if !known.contains(&name) {
        return fail(
            rt.at(
                cmd.name.span,
                SynErr::new("NoSuchName", format!("Storm command ({name}) not found."))
                    .with("name", name),
            ),
        );
    }
    let safe = args_safe(rt, cmd);
    let fixed = if safe {
        match parse_argv(rt, cmd, None) {
            Ok(argv) => Some(Rc::new(argv)),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let tee_argv = fixed.clone();
    let argv_for = move |item: &Item| -> Res<Rc<Argv>> {
        match &fixed {
            Some(argv) => Ok(argv.clone()),
            None => parse_argv(rt, cmd, Some(item)).map(Rc::new),
        }
    };
    match name {
        "count" => {
            let mut count = 0u64;
            let mut input = input;
            let mut done = false;
            Box::new(std::iter::from_fn(move || {
                if done {
                    return None;
                }
                loop {
                    match input.next() {
                        Some(Ok(item)) => {
                            let argv = match argv_for(&item) {
                                Ok(a) => a,
                                Err(e) => {
                                    done = true;
                                    return Some(Err(e));
                                }
                            };
                            count += 1;
                            if argv.flag("--yield") {
                                return Some(Ok(item));
                            }
                        }
                        Some(Err(e)) => {
                            done = true;
                            return Some(Err(e));
                        }
                        None => {
                            done = true;
                            rt.print(&format!("Counted {count} nodes."));
                            return None;
                        }
                    }
                }
            }))
        }
        "limit" => {
            let mut seen: i128 = 0;
            let mut input = input;
            let mut done = false;
            Box::new(std::iter::from_fn(move || {
                if done {
                    return None;
                }
                match input.next() {
                    Some(Ok(item)) => {
                        let limit = match argv_for(&item).and_then(|a| limit_count(&a)) {
                            Ok(n) => n,
                            Err(e) => {
                                done = true;
                                return Some(Err(e));
                            }
                        };
                        seen += 1;
                        if seen >= limit {
                            done = true;
                        }
                        Some(Ok(item))
                    }
                    other => {
                        done = true;
                        other
                    }
                }
            }))
        }
        "uniq" => {
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            Box::new(input.filter_map(move |item| {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => return Some(Err(e)),
                };
                let argv = match argv_for(&item) {
                    Ok(a) => a,
                    Err(e) => return Some(Err(e)),
                };
                let key = match argv.args.first() {
                    // Synapse hashes a missing value to a random guid: never a duplicate.
                    Some(Val::Null) => return Some(Ok(item)),
                    Some(v) => v.to_prim().to_bytes(),
                    None => item.0.buid.to_vec(),
                };
                seen.insert(key).then_some(Ok(item))
            }))
        }
        "spin" => Box::new(input.filter_map(|item| item.err().map(Err))),
        "delnode" => Box::new(input.filter_map(move |item| {
            let item = match item {
                Ok(item) => item,
                Err(e) => return Some(Err(e)),
            };
            let run = || -> Res<()> {
                let argv = argv_for(&item)?;
                let node = &item.0;
                if argv.flag("--deledges") {
                    for (verb, n1) in rt.view.edges_n2(&node.buid, None)? {
                        if let Some(n1) = rt.view.node(&n1)? {
                            rt.editor.edge(&n1, &verb, &node.buid, true)?;
                        }
                    }
                }
                let node = rt.reload(node)?;
                rt.editor.delete_node(&node, argv.flag("--force"))?;
                Ok(())
            };
            run().err().map(Err)
        })),
        "min" | "max" => {
            let max = name == "max";
            let mut input = Some(input);
            let mut out: Option<std::vec::IntoIter<Item>> = None;
            Box::new(std::iter::from_fn(move || {
                if let Some(out) = &mut out {
                    return out.next().map(Ok);
                }
                let input = input.take()?;
                match min_max(rt, input, &argv_for, max) {
                    Ok(items) => {
                        let mut items = items.into_iter();
                        let first = items.next();
                        out = Some(items);
                        first.map(Ok)
                    }
                    Err(e) => Some(Err(e)),
                }
            }))
        }
        "sleep" => Box::new(input.map(move |item| {
            let item = item?;
            let argv = argv_for(&item)?;
            let secs = match argv.args.first() {
                Some(v) => v.to_str().trim().parse::<f64>().map_err(|_| {
                    bad_arg(format!("Invalid value for type (float): {}", v.to_str()))
                })?,
                None => return Err(bad_arg("The argument <delay> is required.")),
            };
            // At most a minute; a NaN delay sleeps not at all.
            let secs = if secs.is_nan() {
                0.0
            } else {
                secs.clamp(0.0, 60.0)
            };
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            Ok(item)
        })),
        "tee" => tee(rt, cmd, tee_argv, input),
        "tree" => {
            if !safe {
                return fail(SynErr::new(
                    "StormRuntimeError",
                    "tree query must be runtsafe.",
                ));
            }
            let query = cmd.args.iter().find_map(|a| match a {
                ast::CmdArg::Query(q) => Some(&q.query),
                _ => None,
            });
            let Some(query) = query else {
                return fail(bad_arg("The argument <query> is required."));
            };
            Box::new(TreeIter {
                rt,
                query,
                input,
                stack: Vec::new(),
            })
        }
        "iden" => {
            let lifted = std::iter::once_with(move || -> Genr<'g> {
                let argv = match parse_argv(rt, cmd, None) {
                    Ok(a) => a,
                    Err(e) => return fail(e),
                };
                let mut out = Vec::new();
                for arg in &argv.args {
                    let text = arg.to_str();
                    let Some(buid) = hex::decode(&text)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    else {
                        rt.warn(&format!("Failed to decode iden: [{text}]"));
                        continue;
                    };
                    match rt.view.node(&buid) {
                        Ok(Some(n)) => out.push(Ok((Rc::new(n), rt.init_path()))),
                        Ok(None) => {}
                        Err(e) => out.push(Err(Flow::Err(e))),
                    }
                }
                Box::new(out.into_iter())
            })
            .flatten();
            Box::new(input.chain(lifted))
        }
        _ => none(),
    }
}

/// `tee`: each query runs on each inbound node (or once without any), their outputs
/// concatenated; `--join` yields the inbound node after them. Queries run in order
/// (`--parallel` too).
fn tee<'g>(
    rt: &'g Runt<'g>,
    cmd: &'g ast::Command,
    fixed: Option<Rc<Argv>>,
    input: Genr<'g>,
) -> Genr<'g> {
    let Some(argv) = fixed else {
        return fail(SynErr::new(
            "StormRuntimeError",
            "tee arguments must be runtsafe.",
        ));
    };
    let queries: Vec<&'g ast::Query> = cmd
        .args
        .iter()
        .filter_map(|a| match a {
            ast::CmdArg::Query(q) => Some(&q.query),
            _ => None,
        })
        .collect();
    if queries.is_empty() {
        return fail(
            SynErr::new(
                "StormRuntimeError",
                "Tee command must take at least one query as input.",
            )
            .with("name", "tee"),
        );
    }
    let join = argv.flag("--join") || argv.flag("-j");
    let per_queries = queries.clone();
    per_node(
        input,
        move |item| {
            let mut out: Genr<'g> = none();
            for query in &per_queries {
                out = Box::new(out.chain(run_arg_query(rt, query, one(item.clone()))));
            }
            if join {
                out = Box::new(out.chain(std::iter::once(Ok(item))));
            }
            out
        },
        Some(Box::new(move |seen| {
            if seen {
                return none();
            }
            let mut out: Genr<'g> = none();
            for query in queries {
                out = Box::new(out.chain(run_arg_query(rt, query, none())));
            }
            out
        })),
    )
}

/// Run a command's query argument. Synapse runs it from its own text, so error highlights
/// refer to that text: rebase them.
fn run_arg_query<'g>(rt: &'g Runt<'g>, query: &'g ast::Query, input: Genr<'g>) -> Genr<'g> {
    Box::new(run_query(rt, query, input).map(move |x| x.map_err(|f| rebase(rt, query, f))))
}

/// Move an error's highlight from the whole query's text to a subquery's own text.
fn rebase(rt: &Runt<'_>, query: &ast::Query, flow: Flow) -> Flow {
    let Flow::Err(mut err) = flow else {
        return flow;
    };
    let Some(offsets) = err
        .field("highlight")
        .and_then(|h| h.get("offsets"))
        .and_then(Value::as_array)
        .map(|o| o.iter().filter_map(Value::as_i64).collect::<Vec<_>>())
    else {
        return Flow::Err(err);
    };
    let byte_at = |chars: i64| -> Option<usize> {
        let chars = usize::try_from(chars).ok()?;
        rt.text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(rt.text.len()))
            .nth(chars)
    };
    let (Some(&a), Some(&b)) = (offsets.first(), offsets.get(1)) else {
        return Flow::Err(err);
    };
    let (Some(a), Some(b)) = (byte_at(a), byte_at(b)) else {
        return Flow::Err(err);
    };
    let span = query.span;
    if a < span.start || b > span.end {
        return Flow::Err(err);
    }
    let sub = span.text(rt.text);
    let rebased =
        crate::cortex::storm::highlight(sub, ast::Span::new(a - span.start, b - span.start));
    if let Some(slot) = err.info.iter_mut().find(|(k, _)| k == "highlight") {
        slot.1 = rebased;
    }
    Flow::Err(err)
}

/// The deepest `tree` recursion.
const TREE_MAX_DEPTH: usize = 512;

/// `tree { query }`: each node, then depth first what the query finds from it, and so on.
/// The recursion is a stack of iterators, not of calls.
struct TreeIter<'g> {
    rt: &'g Runt<'g>,
    query: &'g ast::Query,
    input: Genr<'g>,
    stack: Vec<Genr<'g>>,
}

impl Iterator for TreeIter<'_> {
    type Item = Res<Item>;

    fn next(&mut self) -> Option<Res<Item>> {
        let next = loop {
            match self.stack.last_mut() {
                Some(top) => match top.next() {
                    Some(x) => break x,
                    None => {
                        self.stack.pop();
                    }
                },
                None => break self.input.next()?,
            }
        };
        let item = match next {
            Ok(item) => item,
            Err(e) => {
                self.stack.clear();
                return Some(Err(e));
            }
        };
        if self.stack.len() >= TREE_MAX_DEPTH {
            self.stack.clear();
            return Some(Err(Flow::Err(SynErr::new(
                "StormRuntimeError",
                "tree command exceeded maximum depth",
            ))));
        }
        self.stack
            .push(run_arg_query(self.rt, self.query, one(item.clone())));
        Some(Ok(item))
    }
}

fn limit_count(argv: &Argv) -> Res<i128> {
    match argv.args.first() {
        Some(v) => v
            .to_int()
            .map_err(|_| bad_arg(format!("Invalid value for type (int): {}", v.to_str()))),
        None => Err(bad_arg("The argument <count> is required.")),
    }
}

/// Python's `heapq` on `(key, counter)` pairs, so that ties come out in Synapse's order.
struct PyHeap<T> {
    items: Vec<((i128, usize), T)>,
}

impl<T> PyHeap<T> {
    fn sift_down(&mut self, start: usize, mut pos: usize) {
        while pos > start {
            let parent = (pos - 1) >> 1;
            if self.items[pos].0 < self.items[parent].0 {
                self.items.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
    }

    fn sift_up(&mut self, mut pos: usize) {
        let end = self.items.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && self.items[child].0 >= self.items[right].0 {
                child = right;
            }
            self.items.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_down(start, pos);
    }

    fn push(&mut self, key: (i128, usize), item: T) {
        self.items.push((key, item));
        let last = self.items.len() - 1;
        self.sift_down(0, last);
    }

    fn replace(&mut self, key: (i128, usize), item: T) {
        self.items[0] = (key, item);
        self.sift_up(0);
    }
}

/// Synapse's `min`/`max`: the `--size` nodes with the smallest or largest value, skipping
/// nodes without one; intervals compare by their start (`min`) or end (`max`). A heap keeps
/// the best so far and its list is then sorted stably by value, as in Synapse.
fn min_max(
    rt: &Runt<'_>,
    input: Genr<'_>,
    argv_for: &dyn Fn(&Item) -> Res<Rc<Argv>>,
    max: bool,
) -> Res<Vec<Item>> {
    let mut heap: PyHeap<Item> = PyHeap { items: Vec::new() };
    let mut counter = 0usize;
    for item in input {
        let item = item?;
        let argv = argv_for(&item)?;
        let size = match argv.opt("--size") {
            Some(v) => v.to_int()?,
            None => 1,
        };
        if size < 1 {
            return Err(bad_arg(format!(
                "Specified size ({size}) is below the minimum (1)."
            )));
        }
        if size > MINMAX_SIZE_MAX {
            return Err(bad_arg(format!(
                "Specified size ({size}) is above the maximum ({MINMAX_SIZE_MAX})."
            )));
        }
        let Some(valu) = argv.args.first() else {
            return Err(bad_arg("The argument <valu> is required."));
        };
        let valu = match valu {
            Val::Null => continue,
            Val::List(items) | Val::Tuple(items) => {
                if items.iter().all(|v| matches!(v, Val::Null)) {
                    continue;
                }
                let ival = rt
                    .model
                    .typ("ival")
                    .ok_or_else(|| SynErr::new("NoSuchType", "No type named ival."))?;
                let norm = ival.norm(rt.model, &Val::List(items.clone()).to_prim())?;
                let bound = norm
                    .valu
                    .as_array()
                    .and_then(|a| a.get(usize::from(max)).cloned());
                Val::from(&bound.unwrap_or(Value::Nil))
            }
            other => other.clone(),
        };
        let valu = valu.intify()?;
        // max keeps a min-heap of values; min a min-heap of negated values.
        let key = if max { valu } else { -valu };
        if heap.items.len() < size as usize {
            heap.push((key, counter), item);
        } else if key > heap.items[0].0.0 {
            heap.replace((key, counter), item);
        }
        counter += 1;
    }
    let mut items = heap.items;
    // sorted(heap, key=x[0], reverse=True): stable, so ties keep their heap order.
    items.sort_by_key(|b| std::cmp::Reverse(b.0.0));
    Ok(items.into_iter().map(|(_, item)| item).collect())
}
