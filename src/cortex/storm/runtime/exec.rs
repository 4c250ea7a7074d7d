//! The pipeline: each storm operation as an iterator over the items of the one before it.
//!
//! The shapes follow Synapse's `ast.py` operation by operation: which operations pass their
//! inbound nodes on, which run once when no node arrived ("runtime safe" ones), and the order
//! in which they yield.

use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use super::cmds;
use super::cmpr;
use super::edit;
use super::expr;
use super::value::Val;
use super::{Flow, Item, Path, Res, Runt, TAG_NORMS_KEPT};
use crate::cortex::editor::with_valu;
use crate::cortex::edits::Buid;
use crate::cortex::model::{Form, StorCmpr};
use crate::cortex::storm::ast::{
    self, CondKind, LiftKind, Name, NodeProp, OperKind, PivotKind, TagName, TagNameKind, TagPart,
    WalkTarget,
};
use crate::cortex::view::{Node, PropRef};
use crate::error::SynErr;
use crate::msgpack::Value;

/// A stream of pipeline items.
pub(super) type Genr<'g> = Box<dyn Iterator<Item = Res<Item>> + 'g>;

/// An empty stream.
pub(super) fn none<'g>() -> Genr<'g> {
    Box::new(std::iter::empty())
}

/// A stream of one item.
pub(super) fn one<'g>(item: Item) -> Genr<'g> {
    Box::new(std::iter::once(Ok(item)))
}

/// A stream that fails.
pub(super) fn fail<'g>(flow: impl Into<Flow>) -> Genr<'g> {
    Box::new(std::iter::once(Err(flow.into())))
}

/// Runs a function per inbound item, streaming what it returns, then (once the input is
/// done) `after` with whether any item arrived.
struct PerNode<'g> {
    input: Option<Genr<'g>>,
    seen: bool,
    per: Box<dyn FnMut(Item) -> Genr<'g> + 'g>,
    after: Option<Box<dyn FnOnce(bool) -> Genr<'g> + 'g>>,
    current: Option<Genr<'g>>,
}

impl Iterator for PerNode<'_> {
    type Item = Res<Item>;

    fn next(&mut self) -> Option<Res<Item>> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next() {
                    Some(x) => return Some(x),
                    None => self.current = None,
                }
            }
            if let Some(input) = &mut self.input {
                match input.next() {
                    Some(Ok(item)) => {
                        self.seen = true;
                        self.current = Some((self.per)(item));
                        continue;
                    }
                    Some(Err(flow)) => return Some(Err(flow)),
                    None => self.input = None,
                }
            }
            let after = self.after.take()?;
            self.current = Some(after(self.seen));
        }
    }
}

pub(super) fn per_node<'g>(
    input: Genr<'g>,
    per: impl FnMut(Item) -> Genr<'g> + 'g,
    after: Option<Box<dyn FnOnce(bool) -> Genr<'g> + 'g>>,
) -> Genr<'g> {
    Box::new(PerNode {
        input: Some(input),
        seen: false,
        per: Box::new(per),
        after,
        current: None,
    })
}

/// Nodes read lazily from buids, each with a fresh path (or a fork of `path`). While the
/// query edits nothing, [`READ_AHEAD`] nodes are read at a time from one snapshot; an edit makes
/// what was read ahead stale, and the rest are then read one at a time as they are pulled.
fn nodes_of<'g>(rt: &'g Runt<'g>, buids: Vec<Buid>, path: Option<Path>) -> Genr<'g> {
    let mut pending = VecDeque::from(buids);
    // Nodes read ahead (`None`: gone since the index named it), and the query's edit count
    // when they were read.
    let mut ahead: VecDeque<(Buid, Option<Node>)> = VecDeque::new();
    let mut read_at = rt.edit_count();
    // Once the query edits during the lift, nodes are read one at a time as they are pulled.
    let mut edits_seen = false;
    Box::new(std::iter::from_fn(move || {
        loop {
            // A client that went away stops long lifts even when nothing is sent.
            if rt.cancelled() {
                return None;
            }
            if rt.edit_count() != read_at {
                // The query edited since: what was read ahead may be stale; read it again.
                edits_seen = true;
                read_at = rt.edit_count();
                for (buid, _) in ahead.drain(..).rev() {
                    pending.push_front(buid);
                }
            }
            if ahead.is_empty() {
                let want = if edits_seen { 1 } else { READ_AHEAD };
                let chunk: Vec<Buid> = pending.drain(..want.min(pending.len())).collect();
                if chunk.is_empty() {
                    return None;
                }
                match rt.view.nodes(&chunk) {
                    Ok(nodes) => ahead.extend(chunk.into_iter().zip(nodes)),
                    Err(e) => return Some(Err(Flow::Err(e))),
                }
            }
            if let Some((_, Some(node))) = ahead.pop_front() {
                let path = path.clone().unwrap_or_else(|| rt.init_path());
                return Some(Ok((Rc::new(node), path)));
            }
        }
    }))
}

/// How many of a lift's nodes are read from one snapshot while the query edits nothing.
const READ_AHEAD: usize = 64;

/// Every function definition of a query (subqueries included), in order.
pub(super) fn collect_functions<'a>(opers: &'a [ast::Oper], out: &mut Vec<&'a ast::Function>) {
    for oper in opers {
        if let OperKind::Function(f) = &oper.kind {
            out.push(f);
        }
        for sub in sub_queries(oper) {
            collect_functions(&sub.opers, out);
        }
    }
}

/// Whether a function body emits values (an `emit` outside nested function definitions).
pub(super) fn has_emit(opers: &[ast::Oper]) -> bool {
    opers.iter().any(|oper| match &oper.kind {
        OperKind::Emit(_) => true,
        OperKind::Function(_) => false,
        _ => sub_queries(oper).iter().any(|q| has_emit(&q.opers)),
    })
}

/// The queries nested in an operation (bodies of loops, branches, subqueries).
fn sub_queries(oper: &ast::Oper) -> Vec<&ast::Query> {
    match &oper.kind {
        OperKind::SubQuery { query, .. } => vec![&query.query],
        OperKind::For { body, .. } | OperKind::While { body, .. } => vec![&body.query],
        OperKind::If {
            branches,
            otherwise,
        } => branches
            .iter()
            .map(|(_, q)| &q.query)
            .chain(otherwise.iter().map(|q| &q.query))
            .collect(),
        OperKind::Switch { cases, .. } => cases.iter().map(|c| &c.body.query).collect(),
        OperKind::Try { body, catches } => std::iter::once(&body.query)
            .chain(catches.iter().map(|c| &c.body.query))
            .collect(),
        OperKind::Init(q) | OperKind::Fini(q) | OperKind::Empty(q) => vec![&q.query],
        OperKind::Function(f) => vec![&f.body.query],
        _ => Vec::new(),
    }
}

/// Synapse's `_loadRuntVars`: which variables get the same value for every node.
pub(super) fn load_runtvars(rt: &Runt<'_>, opers: &[ast::Oper]) {
    let note = |name: &str, safe: bool| {
        let mut vars = rt.runtvars.borrow_mut();
        if !vars.get(name).copied().unwrap_or(false) {
            vars.insert(name.to_string(), safe);
        }
    };
    for oper in opers {
        match &oper.kind {
            OperKind::SetVar { name, value } => {
                let safe = expr::is_safe(rt, value);
                note(&name.name, safe);
            }
            OperKind::SetVars { names, value } => {
                let safe = expr::is_safe(rt, value);
                for name in names {
                    note(&name.name, safe);
                }
            }
            OperKind::For {
                vars, iter, body, ..
            } => {
                let safe = expr::is_safe(rt, iter);
                for var in vars {
                    note(&var.name, safe);
                }
                load_runtvars(rt, &body.query.opers);
            }
            OperKind::Function(f) => note(&f.name.name, true),
            OperKind::Try { body, catches } => {
                load_runtvars(rt, &body.query.opers);
                for catch in catches {
                    note(&catch.var.name, true);
                    load_runtvars(rt, &catch.body.query.opers);
                }
            }
            _ => {
                for sub in sub_queries(oper) {
                    load_runtvars(rt, &sub.opers);
                }
            }
        }
    }
}

/// Run a query over an input stream.
pub(super) fn run_query<'g>(rt: &'g Runt<'g>, query: &'g ast::Query, input: Genr<'g>) -> Genr<'g> {
    if let Err(e) = validate_vars(rt, &query.opers) {
        return fail(e);
    }
    let mut genr = input;
    for (i, oper) in query.opers.iter().enumerate() {
        genr = run_oper(rt, oper, &query.opers[i + 1..], genr);
    }
    genr
}

/// Synapse's validation pass: a variable used but never set anywhere is `NoSuchVar`
/// before anything runs.
fn validate_vars(rt: &Runt<'_>, opers: &[ast::Oper]) -> Result<(), SynErr> {
    let mut used = Vec::new();
    for oper in opers {
        expr::vars_used_by_oper(oper, &mut used);
    }
    for (name, span) in used {
        if rt.runtvars.borrow().get(&name).is_none() && rt.get_var(&name).is_none() {
            return Err(rt.at(
                span,
                SynErr::new("NoSuchVar", format!("Missing variable: {name}")).with("name", name),
            ));
        }
    }
    Ok(())
}

fn run_oper<'g>(
    rt: &'g Runt<'g>,
    oper: &'g ast::Oper,
    right: &'g [ast::Oper],
    input: Genr<'g>,
) -> Genr<'g> {
    match &oper.kind {
        OperKind::Lift(lift) => lift_oper(rt, oper, lift, right, input),
        OperKind::Filter { keep, cond } => filter_oper(rt, *keep, cond, input),
        OperKind::Pivot(pivot) => pivot_oper(rt, oper, pivot, input),
        OperKind::Edits(edits) => edit::edit_opers(rt, edits, input),
        OperKind::Command(cmd) => cmds::run(rt, cmd, input),
        OperKind::SubQuery { query, yields } => subquery_oper(rt, query, *yields, input),
        OperKind::SetVar { name, value } => set_var_oper(rt, &name.name, value, input),
        OperKind::SetVars { names, value } => set_vars_oper(rt, names, value, input),
        OperKind::SetItem { target, key, value } => set_item_oper(rt, target, key, value, input),
        OperKind::Eval(value) => eval_oper(rt, value, input),
        OperKind::For {
            vars,
            unpack,
            iter,
            body,
        } => for_oper(rt, vars, *unpack, iter, body, input),
        OperKind::While { cond, body } => while_oper(rt, cond, body, input),
        OperKind::If {
            branches,
            otherwise,
        } => if_oper(rt, branches, otherwise.as_ref(), input),
        OperKind::Switch { subject, cases } => switch_oper(rt, subject, cases, input),
        OperKind::Try { body, catches } => try_oper(rt, body, catches, input),
        OperKind::Init(body) => {
            let mut ran = false;
            per_node(
                input,
                move |item| {
                    if ran {
                        return one(item);
                    }
                    ran = true;
                    Box::new(run_query(rt, &body.query, none()).chain(std::iter::once(Ok(item))))
                },
                Some(Box::new(move |seen| {
                    if seen {
                        none()
                    } else {
                        run_query(rt, &body.query, none())
                    }
                })),
            )
        }
        OperKind::Fini(body) => per_node(
            input,
            one,
            Some(Box::new(move |_| run_query(rt, &body.query, none()))),
        ),
        OperKind::Empty(body) => per_node(
            input,
            one,
            Some(Box::new(move |seen| {
                if seen {
                    none()
                } else {
                    run_query(rt, &body.query, none())
                }
            })),
        ),
        OperKind::Function(func) => {
            let index = rt
                .funcs
                .iter()
                .position(|f| std::ptr::eq(*f, func))
                .unwrap_or(0);
            let name = func.name.name.as_str();
            per_node(
                input,
                move |item| {
                    rt.set_var(name, Val::Func(index));
                    one(item)
                },
                Some(Box::new(move |_| {
                    rt.set_var(name, Val::Func(index));
                    none()
                })),
            )
        }
        OperKind::Return(value) => per_node(
            input,
            move |item| {
                let valu = match value {
                    Some(v) => match expr::compute(rt, v, Some(&item)) {
                        Ok(v) => v,
                        Err(e) => return fail(e),
                    },
                    None => Val::Null,
                };
                fail(Flow::Return(valu))
            },
            Some(Box::new(move |seen| {
                if seen || value.as_ref().is_some_and(|v| !expr::is_safe(rt, v)) {
                    return none();
                }
                match value {
                    Some(v) => match expr::compute(rt, v, None) {
                        Ok(v) => fail(Flow::Return(v)),
                        Err(e) => fail(e),
                    },
                    None => fail(Flow::Return(Val::Null)),
                }
            })),
        ),
        OperKind::Emit(value) => {
            let span = oper.span;
            let emit = move |item: Option<&Item>| -> Res<()> {
                let valu = expr::compute(rt, value, item)?;
                match rt.emits.borrow_mut().last_mut() {
                    Some(out) => {
                        out.push(valu);
                        Ok(())
                    }
                    None => Err(Flow::Err(rt.at(
                        span,
                        SynErr::new(
                            "StormRuntimeError",
                            "Cannot emit from outside of an emitter function",
                        ),
                    ))),
                }
            };
            per_node(
                input,
                move |item| match emit(Some(&item)) {
                    Ok(()) => one(item),
                    Err(e) => fail(e),
                },
                Some(Box::new(move |seen| {
                    if seen || !expr::is_safe(rt, value) {
                        return none();
                    }
                    match emit(None) {
                        Ok(()) => none(),
                        Err(e) => fail(e),
                    }
                })),
            )
        }
        OperKind::Yield(value) => yield_oper(rt, value, input),
        OperKind::Stop => {
            let span = oper.span;
            per_node(
                input,
                move |_| fail(Flow::Stop(span)),
                Some(Box::new(move |_| fail(Flow::Stop(span)))),
            )
        }
        OperKind::Break | OperKind::Continue => {
            let span = oper.span;
            let brk = matches!(oper.kind, OperKind::Break);
            let flow = move |item: Option<Item>| {
                let item = item.map(Box::new);
                if brk {
                    Flow::Break(item, span)
                } else {
                    Flow::Continue(item, span)
                }
            };
            per_node(
                input,
                move |item| fail(flow(Some(item))),
                Some(Box::new(move |_| fail(flow(None)))),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Variables and values

fn set_var_oper<'g>(
    rt: &'g Runt<'g>,
    name: &'g str,
    value: &'g ast::Value,
    input: Genr<'g>,
) -> Genr<'g> {
    per_node(
        input,
        move |(node, mut path)| {
            let ctx = (node.clone(), path.clone());
            match expr::compute(rt, value, Some(&ctx)) {
                Ok(v) => {
                    rt.set_var(name, v.clone());
                    path.vars.insert(name.to_string(), v);
                    one((node, path))
                }
                Err(e) => fail(e),
            }
        },
        Some(Box::new(move |seen| {
            if !seen && expr::is_safe(rt, value) {
                match expr::compute(rt, value, None) {
                    Ok(v) => rt.set_var(name, v),
                    Err(e) => return fail(e),
                }
            }
            none()
        })),
    )
}

fn unpack(names: &[ast::Ident], valu: &Val, span: ast::Span, rt: &Runt<'_>) -> Res<Vec<Val>> {
    let items = valu.items()?;
    if items.len() < names.len() {
        return Err(Flow::Err(
            rt.at(
                span,
                SynErr::new(
                    "StormVarListError",
                    format!(
                        "Attempting to assign more items than we have variables to assign to: {}",
                        valu.repr()
                    ),
                )
                .with(
                    "names",
                    Value::Array(names.iter().map(|n| Value::from(n.name.as_str())).collect()),
                )
                .with("numitems", Value::from(items.len())),
            ),
        ));
    }
    Ok(items)
}

fn set_vars_oper<'g>(
    rt: &'g Runt<'g>,
    names: &'g [ast::Ident],
    value: &'g ast::Value,
    input: Genr<'g>,
) -> Genr<'g> {
    // Synapse highlights the whole `($a, $b)`.
    let span = match (names.first(), names.last()) {
        (Some(first), Some(last)) => {
            let start = rt.text[..first.span.start]
                .rfind('(')
                .unwrap_or(first.span.start);
            let end = rt.text[last.span.end..]
                .find(')')
                .map_or(last.span.end, |i| last.span.end + i + 1);
            ast::Span::new(start, end)
        }
        _ => value.span,
    };
    per_node(
        input,
        move |(node, mut path)| {
            let ctx = (node.clone(), path.clone());
            let valu = match expr::compute(rt, value, Some(&ctx)) {
                Ok(v) => v,
                Err(e) => return fail(e),
            };
            let items = match unpack(names, &valu, span, rt) {
                Ok(items) => items,
                Err(e) => return fail(e),
            };
            for (name, v) in names.iter().zip(items) {
                rt.set_var(&name.name, v.clone());
                path.vars.insert(name.name.clone(), v);
            }
            one((node, path))
        },
        Some(Box::new(move |seen| {
            if !seen && expr::is_safe(rt, value) {
                let valu = match expr::compute(rt, value, None) {
                    Ok(v) => v,
                    Err(e) => return fail(e),
                };
                match unpack(names, &valu, span, rt) {
                    Ok(items) => {
                        for (name, v) in names.iter().zip(items) {
                            rt.set_var(&name.name, v);
                        }
                    }
                    Err(e) => return fail(e),
                }
            }
            none()
        })),
    )
}

fn set_item_oper<'g>(
    rt: &'g Runt<'g>,
    target: &'g ast::Value,
    key: &'g ast::Value,
    value: &'g ast::Value,
    input: Genr<'g>,
) -> Genr<'g> {
    let safe = expr::is_safe(rt, target) && expr::is_safe(rt, key) && expr::is_safe(rt, value);
    per_node(
        input,
        move |mut item| {
            if let Err(e) = expr::set_item(rt, target, key, value, Some(&mut item)) {
                return fail(e);
            }
            one(item)
        },
        Some(Box::new(move |seen| {
            if !seen
                && safe
                && let Err(e) = expr::set_item(rt, target, key, value, None)
            {
                return fail(e);
            }
            none()
        })),
    )
}

fn eval_oper<'g>(rt: &'g Runt<'g>, value: &'g ast::Value, input: Genr<'g>) -> Genr<'g> {
    per_node(
        input,
        move |mut item| match expr::compute(rt, value, Some(&item)) {
            Ok(_) => {
                rt.take_mutated(&mut item.1);
                one(item)
            }
            Err(e) => fail(e),
        },
        Some(Box::new(move |seen| {
            if !seen
                && expr::is_safe(rt, value)
                && let Err(e) = expr::compute(rt, value, None)
            {
                return fail(e);
            }
            rt.mutated.borrow_mut().clear();
            none()
        })),
    )
}

fn yield_oper<'g>(rt: &'g Runt<'g>, value: &'g ast::Value, input: Genr<'g>) -> Genr<'g> {
    per_node(
        input,
        move |item| {
            let nodes = match expr::compute(rt, value, Some(&item))
                .and_then(|v| expr::nodes_from(rt, &v, value.span))
            {
                Ok(nodes) => nodes,
                Err(e) => return fail(e),
            };
            let lifted: Vec<Res<Item>> =
                nodes.into_iter().map(|n| Ok((n, rt.init_path()))).collect();
            Box::new(lifted.into_iter().chain(std::iter::once(Ok(item))))
        },
        Some(Box::new(move |seen| {
            if seen || !expr::is_safe(rt, value) {
                return none();
            }
            match expr::compute(rt, value, None).and_then(|v| expr::nodes_from(rt, &v, value.span))
            {
                Ok(nodes) => Box::new(
                    nodes
                        .into_iter()
                        .map(move |n| Ok((n, rt.init_path())))
                        .collect::<Vec<_>>()
                        .into_iter(),
                ),
                Err(e) => fail(e),
            }
        })),
    )
}

// ---------------------------------------------------------------------------------------------
// Control flow

fn subquery_oper<'g>(
    rt: &'g Runt<'g>,
    query: &'g ast::SubQuery,
    yields: bool,
    input: Genr<'g>,
) -> Genr<'g> {
    per_node(
        input,
        move |(node, mut path)| {
            let sub = run_query(rt, &query.query, one((node.clone(), path.clone())));
            if yields {
                let mut out: Vec<Res<Item>> = Vec::new();
                let mut last_vars = None;
                for x in sub {
                    match x {
                        Ok(item) => {
                            last_vars = Some(item.1.vars.clone());
                            out.push(Ok(item));
                        }
                        Err(e) => {
                            out.push(Err(e));
                            return Box::new(out.into_iter());
                        }
                    }
                }
                if let Some(vars) = last_vars {
                    path.vars.extend(vars);
                }
                // The subquery may have edited the node.
                match rt.reload(&node) {
                    Ok(node) => out.push(Ok((node, path))),
                    Err(e) => out.push(Err(e)),
                }
                return Box::new(out.into_iter());
            }
            let mut last_vars = None;
            for x in sub {
                match x {
                    Ok(item) => last_vars = Some(item.1.vars),
                    Err(e) => return fail(e),
                }
            }
            if let Some(vars) = last_vars {
                path.vars.extend(vars);
            }
            // The subquery may have edited the node.
            match rt.reload(&node) {
                Ok(node) => one((node, path)),
                Err(e) => fail(e),
            }
        },
        None,
    )
}

/// The next result of a loop's running body, if one runs: `(out, stop)`, where `out` is what
/// the loop yields now (nothing when the round ended without an item) and `stop` says that
/// `break` or an error ends the loop. The end of a round, `continue` and `break` (each of
/// which may carry the inbound item) clear `current`.
fn loop_body_next(current: &mut Option<Genr<'_>>) -> Option<(Option<Res<Item>>, bool)> {
    let (out, stop) = match current.as_mut()?.next() {
        Some(Ok(x)) => return Some((Some(Ok(x)), false)),
        Some(Err(Flow::Break(item, _))) => (item.map(|i| Ok(*i)), true),
        Some(Err(Flow::Continue(item, _))) => (item.map(|i| Ok(*i)), false),
        Some(Err(e)) => (Some(Err(e)), true),
        None => (None, false),
    };
    *current = None;
    Some((out, stop))
}

/// A `for` loop over the items of one value, for one inbound node (or none).
struct ForIter<'g> {
    rt: &'g Runt<'g>,
    vars: &'g [ast::Ident],
    unpack: bool,
    span: ast::Span,
    body: &'g ast::SubQuery,
    items: VecDeque<Val>,
    item: Option<Item>,
    current: Option<Genr<'g>>,
}

impl Iterator for ForIter<'_> {
    type Item = Res<Item>;

    fn next(&mut self) -> Option<Res<Item>> {
        loop {
            if let Some((out, stop)) = loop_body_next(&mut self.current) {
                if stop {
                    self.items.clear();
                }
                if out.is_some() {
                    return out;
                }
                continue;
            }
            if self.rt.cancelled() {
                return None;
            }
            let valu = self.items.pop_front()?;
            let mut assigned = Vec::new();
            if self.vars.len() > 1 || self.unpack {
                let items = match valu.items() {
                    Ok(items) => items,
                    Err(_) => {
                        return Some(Err(self.unpack_error(&valu, None)));
                    }
                };
                if items.len() != self.vars.len() {
                    return Some(Err(self.unpack_error(&valu, Some(items.len()))));
                }
                assigned.extend(self.vars.iter().map(|v| v.name.clone()).zip(items));
            } else if let Some(var) = self.vars.first() {
                assigned.push((var.name.clone(), valu));
            }
            for (name, v) in assigned {
                self.rt.set_var(&name, v.clone());
                if let Some((_, path)) = &mut self.item {
                    path.vars.insert(name, v);
                }
            }
            // The body gets a copy of the path: items may multiply.
            let input = match &self.item {
                Some(item) => one(item.clone()),
                None => none(),
            };
            self.current = Some(run_query(self.rt, &self.body.query, input));
        }
    }
}

impl ForIter<'_> {
    fn unpack_error(&self, valu: &Val, numitems: Option<usize>) -> Flow {
        let names = Value::Array(
            self.vars
                .iter()
                .map(|v| Value::from(v.name.as_str()))
                .collect(),
        );
        let mut err = SynErr::new(
            "StormVarListError",
            format!(
                "Number of items to unpack does not match the number of variables: {}",
                value_py_repr(valu)
            ),
        )
        .with("names", names);
        if let Some(n) = numitems {
            err = err.with("numitems", Value::from(n));
        }
        Flow::Err(self.rt.at(self.span, err))
    }
}

/// Python's `repr()` of a value as storm holds it (lists as lists).
fn value_py_repr(v: &Val) -> String {
    match v {
        Val::Str(_) | Val::List(_) | Val::Tuple(_) | Val::Dict(_) => v.repr(),
        other => other.to_str(),
    }
}

fn for_oper<'g>(
    rt: &'g Runt<'g>,
    vars: &'g [ast::Ident],
    unpack: bool,
    iter: &'g ast::Value,
    body: &'g ast::SubQuery,
    input: Genr<'g>,
) -> Genr<'g> {
    let looper = move |item: Option<Item>| -> Genr<'g> {
        let valu = match expr::compute(rt, iter, item.as_ref()) {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        // A query object iterates over the nodes it yields.
        let valu = match valu {
            Val::Query(text) => match expr::query_nodes(rt, &text) {
                Ok(nodes) => Val::List(nodes),
                Err(e) => return fail(e),
            },
            other => other,
        };
        let items = match valu.items() {
            Ok(items) => items,
            Err(e) => return fail(rt.at(iter.span, e)),
        };
        Box::new(ForIter {
            rt,
            vars,
            unpack,
            span: iter.span,
            body,
            items: items.into(),
            item,
            current: None,
        })
    };
    loop_per_node(rt, iter, input, looper)
}

/// Run a loop (`looper`) for each inbound node, or once without one when nothing came in
/// and the loop's `guard` expression needs no node (a loop at the start of a query).
fn loop_per_node<'g>(
    rt: &'g Runt<'g>,
    guard: &'g ast::Value,
    input: Genr<'g>,
    looper: impl Fn(Option<Item>) -> Genr<'g> + Copy + 'g,
) -> Genr<'g> {
    per_node(
        input,
        move |item| looper(Some(item)),
        Some(Box::new(move |seen| {
            if seen || !expr::is_safe(rt, guard) {
                return none();
            }
            looper(None)
        })),
    )
}

/// A `while` loop for one inbound node (or none).
struct WhileIter<'g> {
    rt: &'g Runt<'g>,
    cond: &'g ast::Value,
    body: &'g ast::SubQuery,
    item: Option<Item>,
    current: Option<Genr<'g>>,
    done: bool,
}

impl Iterator for WhileIter<'_> {
    type Item = Res<Item>;

    fn next(&mut self) -> Option<Res<Item>> {
        loop {
            if self.done {
                return None;
            }
            if let Some((out, stop)) = loop_body_next(&mut self.current) {
                self.done |= stop;
                if out.is_some() {
                    return out;
                }
                continue;
            }
            if self.rt.cancelled() {
                return None;
            }
            match expr::compute(self.rt, self.cond, self.item.as_ref()) {
                Ok(v) if v.truthy() => {}
                Ok(_) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            let input = match &self.item {
                Some(item) => one(item.clone()),
                None => none(),
            };
            self.current = Some(run_query(self.rt, &self.body.query, input));
        }
    }
}

fn while_oper<'g>(
    rt: &'g Runt<'g>,
    cond: &'g ast::Value,
    body: &'g ast::SubQuery,
    input: Genr<'g>,
) -> Genr<'g> {
    let looper = move |item: Option<Item>| -> Genr<'g> {
        Box::new(WhileIter {
            rt,
            cond,
            body,
            item,
            current: None,
            done: false,
        })
    };
    loop_per_node(rt, cond, input, looper)
}

/// `try { } catch Name as err { }` for one inbound node (or none): the body's items stream
/// until a Synapse error, which the first matching catch block handles with `$err` set to
/// `{name, mesg, info}`.
struct TryIter<'g> {
    rt: &'g Runt<'g>,
    catches: &'g [ast::Catch],
    item: Option<Item>,
    current: Genr<'g>,
    caught: bool,
}

impl Iterator for TryIter<'_> {
    type Item = Res<Item>;

    fn next(&mut self) -> Option<Res<Item>> {
        loop {
            match self.current.next() {
                Some(Err(Flow::Err(e))) if !self.caught => {
                    let block = match catch_block(self.rt, self.catches, &e, self.item.as_ref()) {
                        Ok(Some(block)) => block,
                        Ok(None) => return Some(Err(Flow::Err(e))),
                        Err(flow) => return Some(Err(flow)),
                    };
                    self.caught = true;
                    let errvalu = error_value(&e);
                    let input = match &mut self.item {
                        Some(item) => {
                            item.1.vars.insert(block.var.name.clone(), errvalu);
                            one(item.clone())
                        }
                        None => {
                            self.rt.set_var(&block.var.name, errvalu);
                            none()
                        }
                    };
                    self.current = run_query(self.rt, &block.body.query, input);
                }
                other => return other,
            }
        }
    }
}

/// Python exceptions that are not Synapse errors: `catch` does not see them.
const PYTHON_ERRORS: &[&str] = &["TypeError", "AttributeError", "ValueError", "KeyError"];

fn catch_block<'g>(
    rt: &Runt<'_>,
    catches: &'g [ast::Catch],
    err: &SynErr,
    item: Option<&Item>,
) -> Res<Option<&'g ast::Catch>> {
    if PYTHON_ERRORS.contains(&err.name.as_str()) {
        return Ok(None);
    }
    let name = catch_name(err);
    for catch in catches {
        let names = expr::compute(rt, &catch.names, item)?;
        let hit = match &names {
            Val::Str(s) => s == "*" || *s == name,
            other => match other.as_seq() {
                Some(items) => items.iter().any(|n| n.to_str() == name),
                None => {
                    return Err(Flow::Err(
                        rt.at(
                            catch.names.span,
                            SynErr::new(
                                "StormRuntimeError",
                                format!(
                                    "catch block must be a str or list object. {} not allowed.",
                                    other.type_name()
                                ),
                            )
                            .with("type", other.type_name()),
                        ),
                    ));
                }
            },
        };
        if hit {
            return Ok(Some(catch));
        }
    }
    Ok(None)
}

/// The name a catch block matches: a `$lib.raise()` error goes by the name it was given.
fn catch_name(err: &SynErr) -> &str {
    if err.name == "StormRaise"
        && let Some(name) = err.field("errname").and_then(Value::as_str)
    {
        return name;
    }
    &err.name
}

/// `$err` in a catch block: `{name, mesg, info}`.
fn error_value(err: &SynErr) -> Val {
    let info = err
        .info
        .iter()
        .filter(|(k, _)| k != "mesg")
        .map(|(k, v)| (Val::from(k.as_str()), Val::from(v)))
        .collect();
    Val::Dict(vec![
        (Val::from("name"), Val::from(catch_name(err))),
        (Val::from("mesg"), Val::from(err.mesg())),
        (Val::from("info"), Val::Dict(info)),
    ])
}

fn try_oper<'g>(
    rt: &'g Runt<'g>,
    body: &'g ast::SubQuery,
    catches: &'g [ast::Catch],
    input: Genr<'g>,
) -> Genr<'g> {
    per_node(
        input,
        move |item| {
            Box::new(TryIter {
                rt,
                catches,
                current: run_query(rt, &body.query, one(item.clone())),
                item: Some(item),
                caught: false,
            })
        },
        Some(Box::new(move |seen| {
            if seen {
                return none();
            }
            Box::new(TryIter {
                rt,
                catches,
                current: run_query(rt, &body.query, none()),
                item: None,
                caught: false,
            })
        })),
    )
}

fn if_oper<'g>(
    rt: &'g Runt<'g>,
    branches: &'g [(ast::Value, ast::SubQuery)],
    otherwise: Option<&'g ast::SubQuery>,
    input: Genr<'g>,
) -> Genr<'g> {
    let choose = move |item: Option<&Item>| -> Res<Option<&'g ast::SubQuery>> {
        for (cond, body) in branches {
            if expr::compute(rt, cond, item)?.truthy() {
                return Ok(Some(body));
            }
        }
        Ok(otherwise)
    };
    run_chosen(rt, input, choose, move || {
        branches.iter().all(|(c, _)| expr::is_safe(rt, c))
    })
}

fn switch_oper<'g>(
    rt: &'g Runt<'g>,
    subject: &'g ast::Value,
    cases: &'g [ast::Case],
    input: Genr<'g>,
) -> Genr<'g> {
    let choose = move |item: Option<&Item>| -> Res<Option<&'g ast::SubQuery>> {
        let text = expr::compute(rt, subject, item)?.to_str();
        let mut default = None;
        for case in cases {
            if case.values.is_empty() {
                default = Some(&case.body);
            } else if case.values.iter().any(|v| v.name == text) {
                return Ok(Some(&case.body));
            }
        }
        Ok(default)
    };
    run_chosen(rt, input, choose, move || expr::is_safe(rt, subject))
}

/// The body of `if` and `switch`: each node runs through the subquery `choose` picks for it
/// (or passes on when none is picked); when no node came and the choice can be made without
/// one (`safe`), the picked subquery runs once with no input.
fn run_chosen<'g>(
    rt: &'g Runt<'g>,
    input: Genr<'g>,
    choose: impl Fn(Option<&Item>) -> Res<Option<&'g ast::SubQuery>> + Copy + 'g,
    safe: impl FnOnce() -> bool + 'g,
) -> Genr<'g> {
    per_node(
        input,
        move |item| match choose(Some(&item)) {
            Ok(Some(body)) => run_query(rt, &body.query, one(item)),
            Ok(None) => one(item),
            Err(e) => fail(e),
        },
        Some(Box::new(move |seen| {
            if seen || !safe() {
                return none();
            }
            match choose(None) {
                Ok(Some(body)) => run_query(rt, &body.query, none()),
                Ok(None) => none(),
                Err(e) => fail(e),
            }
        })),
    )
}

// ---------------------------------------------------------------------------------------------
// Lifts

/// A name written out or computed (`*$form`, `:$prop`).
pub(super) fn name_text(rt: &Runt<'_>, name: &Name, item: Option<&Item>) -> Res<String> {
    match name {
        Name::Lit(id) => Ok(id.name.clone()),
        Name::Expr(v) => {
            let valu = expr::compute(rt, v, item)?;
            match valu {
                Val::Str(s) => Ok(s),
                other => Err(Flow::Err(
                    rt.at(
                        v.span,
                        SynErr::new(
                            "StormRuntimeError",
                            format!(
                                "Expected value of type 'str', got '{}' with value {}.",
                                other.type_name(),
                                other.to_str()
                            ),
                        )
                        .with("name", other.to_prim())
                        .with("type", other.type_name()),
                    ),
                )),
            }
        }
    }
}

pub(super) fn name_span(name: &Name) -> ast::Span {
    match name {
        Name::Lit(id) => id.span,
        Name::Expr(v) => v.span,
    }
}

/// A tag name as edits and lifts use it: written parts joined as they are, `$var` parts and
/// `#$tag` normalized as syn:tag.
pub(super) fn tag_text(rt: &Runt<'_>, tag: &TagName, item: Option<&Item>) -> Res<String> {
    match &tag.kind {
        TagNameKind::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    TagPart::Lit(id) => out.push(id.name.clone()),
                    TagPart::Var(id) => {
                        let valu = expr::var(rt, &id.name, id.span, item)?;
                        if matches!(valu, Val::Null) {
                            return Err(Flow::Err(rt.at(
                                id.span,
                                SynErr::new(
                                    "BadTypeValu",
                                    format!(
                                        "Null value from var ${} is not allowed in tag names.",
                                        id.name
                                    ),
                                ),
                            )));
                        }
                        out.push(norm_tag(rt, &valu.to_str())?);
                    }
                }
            }
            Ok(out.join("."))
        }
        TagNameKind::Expr(v) => {
            let valu = expr::compute(rt, v, item)?;
            match valu {
                Val::Str(s) => norm_tag(rt, &s),
                _ => Err(Flow::Err(SynErr::new(
                    "BadTypeValu",
                    "Invalid value type for tag name, tag names must be strings.",
                ))),
            }
        }
    }
}

/// A tag match as filters and pivots use it: globs allowed, nothing normalized.
pub(super) fn tag_match_text(rt: &Runt<'_>, tag: &TagName, item: Option<&Item>) -> Res<String> {
    match &tag.kind {
        TagNameKind::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    TagPart::Lit(id) => out.push(id.name.clone()),
                    TagPart::Var(id) => {
                        let valu = expr::var(rt, &id.name, id.span, item)?;
                        if matches!(valu, Val::Null) {
                            return Err(Flow::Err(SynErr::new(
                                "BadTypeValu",
                                format!(
                                    "Null value from var ${} is not allowed in tag names.",
                                    id.name
                                ),
                            )));
                        }
                        out.push(valu.to_str());
                    }
                }
            }
            Ok(out.join("."))
        }
        TagNameKind::Expr(v) => match expr::compute(rt, v, item)? {
            Val::Str(s) => Ok(s),
            _ => Err(Flow::Err(SynErr::new(
                "BadTypeValu",
                "Invalid value type for tag name, tag names must be strings.",
            ))),
        },
    }
}

/// The tag names an edit applies to: one, or each of a list in `#$tags`.
pub(super) fn tag_texts(rt: &Runt<'_>, tag: &TagName, item: Option<&Item>) -> Res<Vec<String>> {
    if let TagNameKind::Expr(v) = &tag.kind {
        let valu = expr::compute(rt, v, item)?;
        let vals = match valu {
            Val::List(items) | Val::Tuple(items) => items,
            other => vec![other],
        };
        let mut out = Vec::new();
        for v in vals {
            match v {
                Val::Str(s) => out.push(norm_tag(rt, &s)?),
                _ => {
                    return Err(Flow::Err(SynErr::new(
                        "BadTypeValu",
                        "Invalid value type for tag name, tag names must be strings.",
                    )));
                }
            }
        }
        return Ok(out);
    }
    Ok(vec![tag_text(rt, tag, item)?])
}

fn norm_tag(rt: &Runt<'_>, text: &str) -> Res<String> {
    if let Some(norm) = rt.tag_norms.borrow().get(text) {
        return Ok(norm.clone());
    }
    let tagtype = rt
        .model
        .typ("syn:tag")
        .ok_or_else(|| SynErr::new("NoSuchType", "No type named syn:tag."))?;
    let norm = tagtype.norm(rt.model, &Value::from(text))?;
    let norm = norm.valu.as_str().unwrap_or_default().to_string();
    let mut kept = rt.tag_norms.borrow_mut();
    if kept.len() >= TAG_NORMS_KEPT {
        kept.clear();
    }
    kept.insert(text.to_owned(), norm.clone());
    Ok(norm)
}

fn is_tag_const(tag: &TagName) -> bool {
    match &tag.kind {
        TagNameKind::Parts(parts) => parts.iter().all(|p| matches!(p, TagPart::Lit(_))),
        TagNameKind::Expr(_) => false,
    }
}

fn lift_is_safe(rt: &Runt<'_>, lift: &ast::Lift) -> bool {
    let name_safe = |n: &Name| match n {
        Name::Lit(_) => true,
        Name::Expr(v) => expr::is_safe(rt, v),
    };
    let tag_safe = |t: &TagName| match &t.kind {
        TagNameKind::Parts(parts) => parts.iter().all(|p| match p {
            TagPart::Lit(_) => true,
            TagPart::Var(id) => rt.is_runtvar(&id.name),
        }),
        TagNameKind::Expr(v) => expr::is_safe(rt, v),
    };
    let cmp_safe =
        |c: &Option<ast::Comparison>| c.as_ref().is_none_or(|c| expr::is_safe(rt, &c.value));
    match &lift.kind {
        LiftKind::Prop { prop, cmp } => name_safe(prop) && cmp_safe(cmp),
        LiftKind::Array { prop, cmp } => name_safe(prop) && expr::is_safe(rt, &cmp.value),
        LiftKind::Tag { tag, cmp } | LiftKind::TagTag { tag, cmp } => {
            tag_safe(tag) && cmp_safe(cmp)
        }
        LiftKind::FormTag { form, tag, cmp } => name_safe(form) && tag_safe(tag) && cmp_safe(cmp),
        LiftKind::TagProp {
            form,
            tag,
            prop,
            cmp,
        } => {
            form.as_ref().is_none_or(name_safe) && tag_safe(tag) && name_safe(prop) && cmp_safe(cmp)
        }
    }
}

fn lift_oper<'g>(
    rt: &'g Runt<'g>,
    oper: &'g ast::Oper,
    lift: &'g ast::Lift,
    right: &'g [ast::Oper],
    input: Genr<'g>,
) -> Genr<'g> {
    if lift_is_safe(rt, lift) {
        return Box::new(
            input.chain(
                std::iter::once_with(move || match lift_buids(rt, oper, lift, right, None) {
                    Ok(buids) => nodes_of(rt, buids, None),
                    Err(e) => fail(e),
                })
                .flatten(),
            ),
        );
    }
    per_node(
        input,
        move |(node, path)| {
            let item = (node, path);
            match lift_buids(rt, oper, lift, right, Some(&item)) {
                Ok(buids) => {
                    let hits = linked(buids, &Value::map([("type", Value::from("runtime"))]));
                    let src = item.clone();
                    Box::new(std::iter::once(Ok(item)).chain(nodes_linked(rt, hits, src)))
                }
                Err(e) => fail(e),
            }
        },
        None,
    )
}

/// The props a lift name means: a form or prop, `inet:*` (forms by prefix), or an
/// interface's forms.
fn props_by_look(rt: &Runt<'_>, name: &str, span: ast::Span) -> Res<Vec<PropRef>> {
    if let Some(p) = rt.view.prop_ref(name) {
        return Ok(vec![p]);
    }
    if let Some(prefix) = name.strip_suffix('*') {
        let forms: Vec<PropRef> = forms_with_prefix(rt, prefix)
            .into_iter()
            .filter_map(|f| rt.model.form(&f).cloned().map(PropRef::Form))
            .collect();
        if forms.is_empty() {
            return Err(Flow::Err(
                rt.at(
                    span,
                    SynErr::new("NoSuchForm", format!("No forms match prefix {prefix}."))
                        .with("name", prefix),
                ),
            ));
        }
        return Ok(forms);
    }
    let iface: Vec<PropRef> = rt
        .model
        .form_names()
        .iter()
        .filter_map(|f| rt.model.form(f))
        .filter(|f| {
            f.typ
                .info
                .get("interfaces")
                .and_then(Value::as_array)
                .is_some_and(|i| i.iter().any(|x| x.as_str() == Some(name)))
        })
        .map(|f| PropRef::Form(f.clone()))
        .collect();
    if !iface.is_empty() {
        return Ok(iface);
    }
    Err(Flow::Err(rt.at(span, no_such_prop(name))))
}

/// The forms whose names start with `prefix`, sorted by name (Synapse's `getFormsByPrefix`).
fn forms_with_prefix(rt: &Runt<'_>, prefix: &str) -> Vec<String> {
    let mut forms: Vec<String> = rt
        .model
        .form_names()
        .iter()
        .filter(|f| f.starts_with(prefix))
        .cloned()
        .collect();
    forms.sort();
    forms
}

pub(super) fn no_such_prop(name: &str) -> SynErr {
    SynErr::new("NoSuchProp", format!("No property named {name}.")).with("name", name)
}

/// The forms a form name means: one form, or `inet:*` by prefix.
fn forms_by_look(rt: &Runt<'_>, name: &str, span: ast::Span) -> Res<Vec<std::sync::Arc<Form>>> {
    if let Some(f) = rt.model.form(name) {
        return Ok(vec![f.clone()]);
    }
    if let Some(prefix) = name.strip_suffix('*') {
        let forms: Vec<_> = forms_with_prefix(rt, prefix)
            .into_iter()
            .filter_map(|f| rt.model.form(&f).cloned())
            .collect();
        if !forms.is_empty() {
            return Ok(forms);
        }
        return Err(Flow::Err(
            rt.at(
                span,
                SynErr::new("NoSuchForm", format!("No forms match prefix {prefix}."))
                    .with("name", prefix),
            ),
        ));
    }
    Err(Flow::Err(rt.at(
        span,
        SynErr::new("NoSuchForm", format!("No form named {name}.")).with("name", name),
    )))
}

/// The lift operations of `cmpr valu` on a prop's type; a `BadTypeValu` is highlighted on
/// the value, other errors on the whole lift.
fn lift_cmprs(
    rt: &Runt<'_>,
    typ: &crate::cortex::model::Type,
    cmpr: &ast::Cmpr,
    valu: &Value,
    value_span: ast::Span,
    oper_span: ast::Span,
) -> Res<Vec<StorCmpr>> {
    if cmpr.name == "range=" && typ.stortype != crate::cortex::edits::stortype::TIME {
        // Synapse indexes the value: an int cannot be.
        if let Value::Int(_) = valu {
            return Err(Flow::Err(SynErr::new(
                "TypeError",
                "'int' object is not subscriptable",
            )));
        }
    }
    typ.stor_cmprs(rt.model, &cmpr.name, valu).map_err(|e| {
        if e.name == "NoSuchCmpr" {
            // Synapse's getStorCmprs raises it with a message only.
            return Flow::Err(rt.at(oper_span, SynErr::new("NoSuchCmpr", e.mesg())));
        }
        let span = if e.name == "BadTypeValu" {
            value_span
        } else {
            oper_span
        };
        Flow::Err(rt.at(span, with_valu(e, valu)))
    })
}

fn lift_buids(
    rt: &Runt<'_>,
    oper: &ast::Oper,
    lift: &ast::Lift,
    right: &[ast::Oper],
    item: Option<&Item>,
) -> Res<Vec<Buid>> {
    let view = rt.view;
    let mut buids = match &lift.kind {
        LiftKind::Prop { prop, cmp: None } => {
            let name = name_text(rt, prop, item)?;
            let props = props_by_look(rt, &name, name_span(prop))?;
            let mut out = Vec::new();
            for p in &props {
                out.extend(prop_lift(rt, p, right, item)?);
            }
            out
        }
        LiftKind::Prop {
            prop,
            cmp: Some(cmp),
        } => {
            let name = name_text(rt, prop, item)?;
            let p = rt
                .view
                .prop_ref(&name)
                .ok_or_else(|| Flow::Err(rt.at(name_span(prop), no_such_prop(&name))))?;
            let valu = expr::compute(rt, &cmp.value, item)?.to_stor(false);
            let cmprs = lift_cmprs(rt, p.typ(), &cmp.cmpr, &valu, cmp.value.span, oper.span)?;
            view.lift_prop_valu(&p, &cmprs)
                .map_err(|e| Flow::Err(rt.at(oper.span, e)))?
        }
        LiftKind::Array { prop, cmp } => {
            let name = name_text(rt, prop, item)?;
            let Some(PropRef::Prop(p)) = rt.view.prop_ref(&name) else {
                return Err(Flow::Err(rt.at(name_span(prop), no_such_prop(&name))));
            };
            let Some(elem) = p.typ.array_elem(rt.model) else {
                return Err(Flow::Err(rt.at(
                    oper.span,
                    SynErr::new(
                        "BadTypeValu",
                        format!("Array syntax is invalid on non array type: {}.", p.typ.name),
                    ),
                )));
            };
            let valu = expr::compute(rt, &cmp.value, item)?.to_stor(false);
            let cmprs = lift_cmprs(rt, &elem, &cmp.cmpr, &valu, cmp.value.span, oper.span)?;
            view.lift_prop_array(&p, &cmprs)?
        }
        LiftKind::Tag { tag, cmp } => {
            let name = tag_text(rt, tag, item)?;
            tag_lift(rt, &name, None, cmp.as_ref(), item)?
        }
        LiftKind::FormTag { form, tag, cmp } => {
            let formname = name_text(rt, form, item)?;
            let forms = forms_by_look(rt, &formname, name_span(form))?;
            let name = tag_text(rt, tag, item)?;
            let mut out = Vec::new();
            for f in forms {
                out.extend(tag_lift(rt, &name, Some(&f.name), cmp.as_ref(), item)?);
            }
            out
        }
        LiftKind::TagProp {
            form,
            tag,
            prop,
            cmp,
        } => {
            let name = tag_text(rt, tag, item)?;
            let propname = name_text(rt, prop, item)?;
            let tp = rt.model.tagprop(&propname).ok_or_else(|| {
                SynErr::new("NoSuchTagProp", format!("No tag property named {propname}"))
                    .with("name", propname.as_str())
            })?;
            let cmprs = match cmp {
                Some(cmp) => {
                    let valu = expr::compute(rt, &cmp.value, item)?.to_stor(false);
                    Some(lift_cmprs(
                        rt,
                        &tp.typ,
                        &cmp.cmpr,
                        &valu,
                        cmp.value.span,
                        oper.span,
                    )?)
                }
                None => None,
            };
            match form {
                None => view.lift_tagprop(None, &name, &propname, tp.stortype, cmprs.as_deref())?,
                Some(form) => {
                    let formname = name_text(rt, form, item)?;
                    let mut out = Vec::new();
                    for f in forms_by_look(rt, &formname, name_span(form))? {
                        out.extend(view.lift_tagprop(
                            Some(&f.name),
                            &name,
                            &propname,
                            tp.stortype,
                            cmprs.as_deref(),
                        )?);
                    }
                    out
                }
            }
        }
        LiftKind::TagTag { tag, cmp } => {
            let name = tag_text(rt, tag, item)?;
            tag_tag_lift(rt, &name, cmp.as_ref(), item)?
        }
    };
    if lift.reverse {
        buids.reverse();
    }
    Ok(buids)
}

fn tag_lift(
    rt: &Runt<'_>,
    tag: &str,
    form: Option<&str>,
    cmp: Option<&ast::Comparison>,
    item: Option<&Item>,
) -> Res<Vec<Buid>> {
    let Some(cmp) = cmp else {
        return Ok(rt.view.lift_tag(tag, form)?);
    };
    let valu = expr::compute(rt, &cmp.value, item)?.to_prim();
    let ivaltype = rt
        .model
        .typ("ival")
        .ok_or_else(|| SynErr::new("NoSuchType", "No type named ival."))?;
    let norm = ivaltype.norm(rt.model, &valu)?;
    Ok(rt
        .view
        .lift_tag_valu(tag, form, &cmp.cmpr.name, &norm.valu)?)
}

fn tag_tag_lift(
    rt: &Runt<'_>,
    tag: &str,
    cmp: Option<&ast::Comparison>,
    item: Option<&Item>,
) -> Res<Vec<Buid>> {
    if rt
        .view
        .node_by_ndef("syn:tag", &Value::from(tag))?
        .is_none()
    {
        return Ok(Vec::new());
    }
    let first = tag_lift(rt, tag, None, cmp, item)?;
    let mut done: HashSet<String> = HashSet::from([tag.to_string()]);
    let mut todo = VecDeque::from([first]);
    let mut out = Vec::new();
    while let Some(buids) = todo.pop_front() {
        for b in buids {
            let Some(node) = rt.view.node(&b)? else {
                continue;
            };
            if node.form == "syn:tag" {
                if let Some(name) = node.valu.as_str()
                    && done.insert(name.to_string())
                {
                    todo.push_back(rt.view.lift_tag(name, None)?);
                }
                continue;
            }
            out.push(b);
        }
    }
    Ok(out)
}

/// A prop lift, using the first lift hint of the filters to its right as Synapse does: a form
/// lift followed by `+#tag` lifts by the tag, by `+:prop` or `+:prop=x` lifts by the prop.
fn prop_lift(
    rt: &Runt<'_>,
    prop: &PropRef,
    right: &[ast::Oper],
    item: Option<&Item>,
) -> Res<Vec<Buid>> {
    let PropRef::Form(form) = prop else {
        return Ok(rt.view.lift_prop(prop)?);
    };
    if let Some(hint) = first_hint(rt, right, item)? {
        match hint {
            Hint::Tag(tag) => return Ok(rt.view.lift_tag(&tag, Some(&form.name))?),
            Hint::Prop { name, univ, cmp } => {
                let full = if univ {
                    format!("{}{}", form.name, name)
                } else {
                    format!("{}:{}", form.name, name)
                };
                let Some(p) = rt.view.prop_ref(&full) else {
                    return Ok(Vec::new());
                };
                if let Some((cmpr, valu)) = cmp
                    && let Ok(cmprs) = p.typ().stor_cmprs(rt.model, &cmpr, &valu)
                    && let Ok(buids) = rt.view.lift_prop_valu(&p, &cmprs)
                {
                    return Ok(buids);
                }
                return Ok(rt.view.lift_prop(&p)?);
            }
        }
    }
    Ok(rt.view.lift_prop(prop)?)
}

/// A lift hint from a filter.
enum Hint {
    Tag(String),
    Prop {
        name: String,
        univ: bool,
        cmp: Option<(String, Value)>,
    },
}

fn first_hint(rt: &Runt<'_>, right: &[ast::Oper], item: Option<&Item>) -> Res<Option<Hint>> {
    for oper in right {
        match &oper.kind {
            OperKind::Lift(_) => continue,
            OperKind::Filter { keep, cond } => {
                if !keep {
                    continue;
                }
                if let Some(hint) = cond_hint(rt, cond, item)? {
                    return Ok(Some(hint));
                }
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

fn cond_hint(rt: &Runt<'_>, cond: &ast::Cond, item: Option<&Item>) -> Res<Option<Hint>> {
    let node_prop = |p: &NodeProp| -> Res<(String, bool)> {
        match p {
            NodeProp::Rel(r) => Ok((name_text(rt, &r.name, item)?, false)),
            NodeProp::Univ(u) => {
                let name = name_text(rt, &u.name, item)?;
                let name = if name.starts_with('.') {
                    name
                } else {
                    format!(".{name}")
                };
                Ok((name, true))
            }
        }
    };
    Ok(match &cond.kind {
        CondKind::Tag(tag) => {
            if is_tag_const(tag) {
                let name = tag_match_text(rt, tag, None)?;
                (!name.contains('*')).then_some(Hint::Tag(name))
            } else {
                None
            }
        }
        CondKind::HasProp(p) => {
            let (name, univ) = node_prop(p)?;
            Some(Hint::Prop {
                name: name.split("::").next().unwrap_or_default().to_string(),
                univ,
                cmp: None,
            })
        }
        CondKind::PropCmp { prop, cmp } => {
            let (name, univ) = node_prop(prop)?;
            if name.contains("::") {
                Some(Hint::Prop {
                    name: name.split("::").next().unwrap_or_default().to_string(),
                    univ,
                    cmp: None,
                })
            } else {
                let valu = if expr::is_safe(rt, &cmp.value) {
                    Some(expr::compute(rt, &cmp.value, item)?.to_prim())
                } else {
                    None
                };
                Some(Hint::Prop {
                    name,
                    univ,
                    cmp: valu.map(|v| (cmp.cmpr.name.clone(), v)),
                })
            }
        }
        CondKind::And(a, _) => cond_hint(rt, a, item)?,
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Filters

fn filter_oper<'g>(rt: &'g Runt<'g>, keep: bool, cond: &'g ast::Cond, input: Genr<'g>) -> Genr<'g> {
    Box::new(input.filter_map(move |item| match item {
        Ok(mut item) => match eval_cond(rt, cond, &mut item) {
            Ok(answer) if answer == keep => Some(Ok(item)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        },
        Err(e) => Some(Err(e)),
    }))
}

/// Whether a glob of tag segments (`foo.*`, `f*`, `**`) matches a tag.
pub(super) fn tag_glob_match(glob: &str, tag: &str) -> bool {
    let mut pattern = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                pattern.push_str(".*");
            }
            '*' => pattern.push_str("[^.]*"),
            other => pattern.push_str(&regex::escape(&other.to_string())),
        }
    }
    pattern.push('$');
    regex::Regex::new(&pattern).is_ok_and(|r| r.is_match(tag))
}

fn eval_cond(rt: &Runt<'_>, cond: &ast::Cond, item: &mut Item) -> Res<bool> {
    let node = item.0.clone();
    Ok(match &cond.kind {
        CondKind::Not(c) => !eval_cond(rt, c, item)?,
        CondKind::And(a, b) => eval_cond(rt, a, item)? && eval_cond(rt, b, item)?,
        CondKind::Or(a, b) => eval_cond(rt, a, item)? || eval_cond(rt, b, item)?,
        CondKind::HasProp(p) => {
            let name = node_prop_name(rt, p, Some(item))?;
            node.get(&name).is_some()
        }
        CondKind::PropCmp { prop, cmp } => {
            let (span, name) = match prop {
                NodeProp::Rel(r) => (r.span, node_prop_name(rt, prop, Some(item))?),
                NodeProp::Univ(u) => (u.span, node_prop_name(rt, prop, Some(item))?),
            };
            let form = rt.model.req_form(&node.form)?;
            let Some(propobj) = form.prop(&name) else {
                return Err(Flow::Err(
                    rt.at(span, no_such_prop(&name).with("form", node.form.as_str())),
                ));
            };
            let Some(valu) = node.get(&name) else {
                return Ok(false);
            };
            let other = expr::compute(rt, &cmp.value, Some(item))?;
            if matches!(other, Val::Null) {
                return Ok(false);
            }
            let other = other.to_stor(false);
            cmpr::matches(rt, &propobj.typ, &cmp.cmpr, &other, valu)?
        }
        CondKind::HasAbsProp(id) => {
            let name = &id.name;
            match rt.view.prop_ref(name) {
                Some(PropRef::Form(f)) => node.form == f.name,
                Some(PropRef::Prop(p)) => match &p.form {
                    Some(form) => node.form == *form && node.get(&p.name).is_some(),
                    None => node.get(&p.name).is_some(),
                },
                None => {
                    let forms = forms_by_look(rt, name, id.span)
                        .map_err(|_| Flow::Err(rt.at(id.span, no_such_prop(name))))?;
                    forms.iter().any(|f| f.name == node.form)
                }
            }
        }
        CondKind::AbsPropCmp { prop, cmp } => {
            let Some(p) = rt.view.prop_ref(&prop.name) else {
                return Err(Flow::Err(rt.at(prop.span, no_such_prop(&prop.name))));
            };
            let valu = match &p {
                PropRef::Form(f) => {
                    if node.form != f.name {
                        return Ok(false);
                    }
                    node.valu.clone()
                }
                PropRef::Prop(pr) => {
                    if pr.form.as_deref() != Some(node.form.as_str()) {
                        return Ok(false);
                    }
                    match node.get(&pr.name) {
                        Some(v) => v.clone(),
                        None => return Ok(false),
                    }
                }
            };
            let other = expr::compute(rt, &cmp.value, Some(item))?.to_stor(false);
            cmpr::matches(rt, p.typ(), &cmp.cmpr, &other, &valu)?
        }
        CondKind::Tag(tag) => {
            let name = tag_match_text(rt, tag, Some(item))?;
            if name == "*" {
                !node.tags.is_empty()
            } else if name.contains('*') {
                node.tags.iter().any(|(t, _)| tag_glob_match(&name, t))
            } else {
                node.tag(&name).is_some()
            }
        }
        CondKind::TagCmp { tag, cmp } => {
            let name = tag_match_text(rt, tag, Some(item))?;
            if name.contains('*') {
                return Err(Flow::Err(rt.at(
                    cond.span,
                    SynErr::new(
                        "StormRuntimeError",
                        format!("Wildcard tag names may not be used in conjunction with tag value comparison: {name}"),
                    )
                    .with("name", name.as_str()),
                )));
            }
            let ival = rt
                .model
                .typ("ival")
                .ok_or_else(|| SynErr::new("NoSuchType", "No type named ival."))?;
            let Some((lo, hi)) = node.tag(&name) else {
                return Ok(false);
            };
            let valu = Value::Array(vec![Value::from(lo), Value::from(hi)]);
            if lo.is_none() {
                return Ok(false);
            }
            let other = expr::compute(rt, &cmp.value, Some(item))?.to_prim();
            cmpr::matches(rt, ival, &cmp.cmpr, &other, &valu)?
        }
        CondKind::HasTagProp { tag, prop } => {
            let tagname = tag_match_text(rt, tag, Some(item))?;
            let propname = name_text(rt, prop, Some(item))?;
            node.tagprops.iter().any(|(t, props)| {
                (tagname == "*" || t == &tagname || tag_glob_match(&tagname, t))
                    && props.iter().any(|(p, _)| *p == propname)
            })
        }
        CondKind::TagPropCmp { tag, prop, cmp } => {
            let tagname = tag_match_text(rt, tag, Some(item))?;
            let propname = name_text(rt, prop, Some(item))?;
            let tp = rt.model.tagprop(&propname).ok_or_else(|| {
                SynErr::new("NoSuchTagProp", format!("No such tag property: {propname}"))
                    .with("name", propname.as_str())
            })?;
            let Some(valu) = node.tagprop(&tagname, &propname) else {
                return Ok(false);
            };
            let other = expr::compute(rt, &cmp.value, Some(item))?.to_stor(false);
            cmpr::matches(rt, &tp.typ, &cmp.cmpr, &other, valu)?
        }
        CondKind::SubQuery { query, cmp } => subquery_cond(rt, query, cmp.as_ref(), item)?,
        CondKind::Array { prop, cmp } => {
            let name = name_text(rt, &prop.name, Some(item))?;
            let form = rt.model.req_form(&node.form)?;
            let Some(p) = form.prop(&name) else {
                return Err(Flow::Err(rt.at(prop.span, no_such_prop(&name))));
            };
            let Some(elem) = p.typ.array_elem(rt.model) else {
                return Err(Flow::Err(rt.at(
                    cmp.cmpr.span,
                    SynErr::new(
                        "BadCmprType",
                        format!("Array filter syntax is invalid for non-array prop {name}."),
                    ),
                )));
            };
            let Some(items) = node.get(&name).and_then(Value::as_array) else {
                return Ok(false);
            };
            let other = expr::compute(rt, &cmp.value, Some(item))?.to_stor(false);
            for v in items {
                if cmpr::matches(rt, &elem, &cmp.cmpr, &other, v)? {
                    return Ok(true);
                }
            }
            false
        }
        CondKind::Value(v) => expr::compute(rt, v, Some(item))?.truthy(),
    })
}

pub(super) fn node_prop_name(rt: &Runt<'_>, p: &NodeProp, item: Option<&Item>) -> Res<String> {
    match p {
        NodeProp::Rel(r) => name_text(rt, &r.name, item),
        NodeProp::Univ(u) => {
            let name = name_text(rt, &u.name, item)?;
            Ok(if name.starts_with('.') {
                name
            } else {
                format!(".{name}")
            })
        }
    }
}

fn subquery_cond(
    rt: &Runt<'_>,
    query: &ast::SubQuery,
    cmp: Option<&ast::Comparison>,
    item: &mut Item,
) -> Res<bool> {
    let want = match cmp {
        Some(c) => {
            let n = expr::compute(rt, &c.value, Some(item))?.intify()?;
            if !["=", "!=", ">", "<", ">=", "<="].contains(&c.cmpr.name.as_str()) {
                return Err(Flow::Err(rt.at(
                    c.cmpr.span,
                    SynErr {
                        name: "NoSuchCmpr".into(),
                        info: vec![
                            ("cmpr".into(), Value::from(c.cmpr.name.as_str())),
                            ("type".into(), Value::from("subquery")),
                        ],
                    },
                )));
            }
            Some((c.cmpr.name.as_str(), n))
        }
        None => None,
    };
    let mut size: i128 = 0;
    let mut last_vars = None;
    let mut decided = None;
    for x in run_query_ref(rt, &query.query, item.clone()) {
        let (_, path) = x?;
        size += 1;
        last_vars = Some(path.vars);
        // Synapse stops pulling as soon as the answer is known.
        decided = match want {
            None => Some(true),
            Some(("=", n)) | Some(("<=", n)) if size > n => Some(false),
            Some(("!=", n)) | Some((">", n)) if size > n => Some(true),
            Some(("<", n)) if size >= n => Some(false),
            Some((">=", n)) if size >= n => Some(true),
            _ => None,
        };
        if decided.is_some() {
            break;
        }
    }
    if let Some(vars) = last_vars {
        item.1.vars.extend(vars);
    }
    // The subquery may have edited the node.
    item.0 = rt.reload(&item.0)?;
    if let Some(answer) = decided {
        return Ok(answer);
    }
    Ok(match want {
        None => false,
        Some(("=", n)) => size == n,
        Some(("!=", n)) => size != n,
        Some((">", _)) | Some((">=", _)) => false,
        _ => true,
    })
}

/// Run a subquery with a runtime borrowed for less than the query's lifetime (the runtime is
/// covariant, so this only shortens lifetimes).
pub(super) fn run_sub<'g>(
    rt: &'g Runt<'_>,
    query: &'g ast::Query,
    input: Option<Item>,
) -> Genr<'g> {
    let rt: &'g Runt<'g> = rt;
    match input {
        Some(item) => run_query(rt, query, one(item)),
        None => run_query(rt, query, none()),
    }
}

fn run_query_ref<'g>(rt: &'g Runt<'_>, query: &'g ast::Query, item: Item) -> Genr<'g> {
    run_sub(rt, query, Some(item))
}

// ---------------------------------------------------------------------------------------------
// Pivots

fn pivot_oper<'g>(
    rt: &'g Runt<'g>,
    oper: &'g ast::Oper,
    pivot: &'g ast::Pivot,
    input: Genr<'g>,
) -> Genr<'g> {
    let join = pivot.join;
    let mut warned = false;
    per_node(
        input,
        move |item| {
            let found = match pivot_buids(rt, oper, &pivot.kind, &item, &mut warned) {
                Ok(found) => found,
                Err(e) => return fail(e),
            };
            let src = item.clone();
            let head: Genr<'g> = if join { one(item) } else { none() };
            Box::new(head.chain(nodes_linked(rt, found, src)))
        },
        None,
    )
}

/// A pivot result: the node found and the link that led there (Nil for none).
type Hit = (Buid, Value);

/// A packed node's link info: `{'type': kind, key: name}`, with `'reverse': True`.
fn link(kind: &str, key: &str, name: &str, reverse: bool) -> Value {
    let mut info = vec![("type", Value::from(kind)), (key, Value::from(name))];
    if reverse {
        info.push(("reverse", Value::Bool(true)));
    }
    Value::map(info)
}

/// Buids found by one kind of link.
fn linked(buids: Vec<Buid>, link: &Value) -> Vec<Hit> {
    buids.into_iter().map(|b| (b, link.clone())).collect()
}

/// Pivot results read lazily, each with its source's path plus the link (Synapse's
/// `path.fork`).
fn nodes_linked<'g>(rt: &'g Runt<'g>, hits: Vec<Hit>, src: Item) -> Genr<'g> {
    let iden = src.0.iden();
    Box::new(
        hits.into_iter()
            .filter_map(move |(b, link)| match rt.view.node(&b) {
                Ok(Some(node)) => {
                    let mut path = src.1.clone();
                    if !link.is_nil() {
                        path.links.push((iden.clone(), link));
                    }
                    Some(Ok((Rc::new(node), path)))
                }
                Ok(None) => None,
                Err(e) => Some(Err(Flow::Err(e))),
            }),
    )
}

/// Nodes of form `form` whose primary value is `valu` (already normalized).
fn by_ndef(rt: &Runt<'_>, form: &str, valu: &Value) -> Res<Vec<Buid>> {
    Ok(match rt.view.node_by_ndef(form, valu)? {
        Some(n) => vec![n.buid],
        None => Vec::new(),
    })
}

/// Lift `prop = valu` with or without normalizing `valu` first.
fn lift_eq(rt: &Runt<'_>, prop: &PropRef, valu: &Value, norm: bool) -> Res<Vec<Buid>> {
    let cmprs = if norm {
        prop.typ().stor_cmprs(rt.model, "=", valu)?
    } else {
        vec![StorCmpr {
            cmpr: "=".into(),
            valu: valu.clone(),
            stortype: prop.typ().stortype,
        }]
    };
    Ok(rt.view.lift_prop_valu(prop, &cmprs)?)
}

fn lift_array_eq(rt: &Runt<'_>, prop: &crate::cortex::model::Prop, valu: &Value) -> Res<Vec<Buid>> {
    let Some(elem) = prop.typ.array_elem(rt.model) else {
        return Ok(Vec::new());
    };
    let cmprs = vec![StorCmpr {
        cmpr: "=".into(),
        valu: valu.clone(),
        stortype: elem.stortype,
    }];
    Ok(rt.view.lift_prop_array(prop, &cmprs)?)
}

pub(super) fn is_ndef(typ: &crate::cortex::model::Type) -> bool {
    typ.name == "ndef"
        || typ
            .info
            .get("bases")
            .and_then(Value::as_array)
            .is_some_and(|b| b.iter().any(|x| x.as_str() == Some("ndef")))
}

fn pivot_buids(
    rt: &Runt<'_>,
    oper: &ast::Oper,
    kind: &PivotKind,
    item: &Item,
    warned: &mut bool,
) -> Res<Vec<Hit>> {
    let node = &item.0;
    match kind {
        PivotKind::Out => pivot_out(rt, node),
        PivotKind::In => pivot_in(rt, node),
        PivotKind::To(target) => {
            let names = pivot_targets(rt, target, item)?;
            match names {
                Targets::One(name) => {
                    let prop = rt
                        .view
                        .prop_ref(&name)
                        .ok_or_else(|| Flow::Err(rt.at(target.span, no_such_prop(&name))))?;
                    form_pivot(rt, oper, node, &prop, true, warned)
                }
                Targets::Many(names) => {
                    let mut out = Vec::new();
                    for name in names {
                        let prop = rt
                            .view
                            .prop_ref(&name)
                            .ok_or_else(|| Flow::Err(rt.at(target.span, no_such_prop(&name))))?;
                        out.extend(form_pivot(rt, oper, node, &prop, false, warned)?);
                    }
                    Ok(out)
                }
            }
        }
        PivotKind::InFrom(_) => Err(Flow::Err(
            rt.at(
                oper.span,
                SynErr::new(
                    "StormRuntimeError",
                    format!(
                        "Pivot in from a specific form cannot be used with nodes of type {}",
                        node.form
                    ),
                )
                .with("name", node.form.as_str()),
            ),
        )),
        PivotKind::Tags(tag) => {
            let (leaf, glob) = match tag {
                None => (true, None),
                Some(t) => (false, Some(tag_match_text(rt, t, Some(item))?)),
            };
            let mut out = Vec::new();
            for name in node.tag_names(leaf) {
                let keep = match &glob {
                    None => true,
                    Some(g) if g.contains('*') => tag_glob_match(g, &name),
                    Some(g) => *g == name,
                };
                if keep {
                    let hit = link("tag", "tag", &name, false);
                    out.extend(linked(by_ndef(rt, "syn:tag", &Value::from(name))?, &hit));
                }
            }
            Ok(out)
        }
        PivotKind::PropOut(relprop) => {
            let name = name_text(rt, &relprop.name, Some(item))?;
            let form = rt.model.req_form(&node.form)?;
            let (Some(prop), Some(valu)) = (form.prop(&name), node.get(&name)) else {
                return Ok(Vec::new());
            };
            let hit = link("prop", "prop", &prop.name, false);
            if let Some(elem) = prop.typ.array_elem(rt.model) {
                if is_ndef(&elem) {
                    let mut out = Vec::new();
                    for v in valu.as_array().unwrap_or(&[]) {
                        if let Some([Value::Str(f), v]) = v.as_array() {
                            out.extend(by_ndef(rt, f, v)?);
                        }
                    }
                    return Ok(linked(out, &hit));
                }
                if rt.model.form(&elem.name).is_none() {
                    if !*warned {
                        rt.warn(&format!("The source property \"{name}\" array type \"{}\" is not a form. Cannot pivot.", elem.name));
                        *warned = true;
                    }
                    return Ok(Vec::new());
                }
                let target = PropRef::Form(rt.model.req_form(&elem.name)?.clone());
                let mut out = Vec::new();
                for v in valu.as_array().unwrap_or(&[]) {
                    out.extend(lift_eq(rt, &target, v, false)?);
                }
                return Ok(linked(out, &hit));
            }
            if is_ndef(&prop.typ) {
                if let Some([Value::Str(f), v]) = valu.as_array() {
                    return Ok(linked(by_ndef(rt, f, v)?, &hit));
                }
                return Ok(Vec::new());
            }
            if rt.model.form(&prop.typ.name).is_none() {
                if !*warned {
                    rt.warn(&format!(
                        "The source property \"{name}\" type \"{}\" is not a form. Cannot pivot.",
                        prop.typ.name
                    ));
                    *warned = true;
                }
                return Ok(Vec::new());
            }
            Ok(linked(by_ndef(rt, &prop.typ.name, valu)?, &hit))
        }
        PivotKind::Prop { prop, target } => {
            let name = name_text(rt, &prop.name, Some(item))?;
            let form = rt.model.req_form(&node.form)?;
            let Some(srcprop) = form.prop(&name) else {
                return Err(Flow::Err(rt.at(
                    prop.span,
                    no_such_prop(&name).with("form", node.form.as_str()),
                )));
            };
            let Some(valu) = node.get(&name) else {
                return Ok(Vec::new());
            };
            let names = match pivot_targets(rt, target, item)? {
                Targets::One(n) => vec![n],
                Targets::Many(ns) => ns,
            };
            let mut out = Vec::new();
            for tname in names {
                let dest = rt
                    .view
                    .prop_ref(&tname)
                    .ok_or_else(|| Flow::Err(rt.at(target.span, no_such_prop(&tname))))?;
                // Synapse's link names the source prop, and the destination unless a form.
                let mut info = vec![
                    ("type", Value::from("prop")),
                    ("prop", Value::from(srcprop.name.as_str())),
                ];
                if let PropRef::Prop(p) = &dest {
                    info.push(("dest", Value::from(p.full.as_str())));
                }
                let hit = Value::map(info);
                match prop_pivot(rt, srcprop, valu, &dest) {
                    Ok(found) => out.extend(linked(found, &hit)),
                    Err(Flow::Err(e))
                        if matches!(e.name.as_str(), "BadTypeValu" | "BadLiftValu") =>
                    {
                        warn_pivot(rt, &e, valu);
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
        PivotKind::Raw(query) => {
            // Synapse runs the subquery in a sub-runtime without input nodes.
            let sub = run_sub(rt, &query.query, None);
            let mut out = Vec::new();
            for x in sub {
                out.push((x?.0.buid, Value::Nil));
            }
            Ok(out)
        }
        PivotKind::Walk {
            dir,
            verb,
            target,
            cmp,
        } => {
            let verbs: Vec<String> = match expr::compute(rt, verb, Some(item))? {
                Val::List(items) | Val::Tuple(items) => items.iter().map(Val::to_str).collect(),
                other => vec![other.to_str()],
            };
            let forms: Option<Vec<String>> = match target {
                WalkTarget::Any => None,
                WalkTarget::Forms(v) => Some(match expr::compute(rt, v, Some(item))? {
                    Val::List(items) | Val::Tuple(items) => items.iter().map(Val::to_str).collect(),
                    other => vec![other.to_str()],
                }),
            };
            let mut out = Vec::new();
            for verb in verbs {
                let v = (verb != "*").then_some(verb.as_str());
                let edges = match dir {
                    ast::EdgeDir::Out => rt.view.edges_n1(&node.buid, v)?,
                    ast::EdgeDir::In => rt.view.edges_n2(&node.buid, v)?,
                };
                for (edgeverb, other) in edges {
                    let Some(n) = rt.view.node(&other)? else {
                        continue;
                    };
                    if let Some(forms) = &forms
                        && !forms.iter().any(|f| f == "*" || *f == n.form)
                    {
                        continue;
                    }
                    if let Some(cmp) = cmp {
                        let form = rt.model.req_form(&n.form)?;
                        let other = expr::compute(rt, &cmp.value, Some(item))?.to_stor(false);
                        if !cmpr::matches(rt, &form.typ, &cmp.cmpr, &other, &n.valu)? {
                            continue;
                        }
                    }
                    let reverse = matches!(dir, ast::EdgeDir::In);
                    out.push((n.buid, link("edge", "verb", &edgeverb, reverse)));
                }
            }
            Ok(out)
        }
        PivotKind::WalkAll(dir) => {
            let mut out = match dir {
                ast::EdgeDir::Out => pivot_out(rt, node)?,
                ast::EdgeDir::In => pivot_in(rt, node)?,
            };
            let edges = match dir {
                ast::EdgeDir::Out => rt.view.edges_n1(&node.buid, None)?,
                ast::EdgeDir::In => rt.view.edges_n2(&node.buid, None)?,
            };
            let reverse = matches!(dir, ast::EdgeDir::In);
            for (verb, other) in edges {
                if rt.view.node(&other)?.is_some() {
                    out.push((other, link("edge", "verb", &verb, reverse)));
                }
            }
            Ok(out)
        }
    }
}

fn warn_pivot(rt: &Runt<'_>, e: &SynErr, valu: &Value) {
    let mesg = format!(
        "{} [{}] during pivot: {}",
        e.name,
        super::value::py_repr(valu),
        e.mesg()
    );
    let mut info = vec![("mesg".to_string(), Value::from(mesg))];
    info.extend(e.info.iter().filter(|(k, _)| k != "mesg").cloned());
    rt.sink.send(
        "warn",
        Value::Map(info.into_iter().map(|(k, v)| (Value::from(k), v)).collect()),
    );
}

enum Targets {
    One(String),
    Many(Vec<String>),
}

fn pivot_targets(rt: &Runt<'_>, target: &ast::Value, item: &Item) -> Res<Targets> {
    Ok(match expr::compute(rt, target, Some(item))? {
        Val::List(items) | Val::Tuple(items) => {
            Targets::Many(items.iter().map(Val::to_str).collect())
        }
        Val::Str(s) if s.ends_with('*') && rt.view.prop_ref(&s).is_none() => {
            let prefix = &s[..s.len() - 1];
            let forms = forms_with_prefix(rt, prefix);
            if forms.is_empty() {
                return Err(Flow::Err(
                    rt.at(
                        target.span,
                        SynErr::new("NoSuchForm", format!("No forms match prefix {prefix}."))
                            .with("name", prefix),
                    ),
                ));
            }
            Targets::Many(forms)
        }
        other => Targets::One(other.to_str()),
    })
}

/// `-> *`: the nodes the node's form-typed props point to.
fn pivot_out(rt: &Runt<'_>, node: &Node) -> Res<Vec<Hit>> {
    if node.form == "syn:tag" {
        if let Some(tag) = node.valu.as_str() {
            return Ok(linked(
                rt.view.lift_tag(tag, None)?,
                &link("tag", "tag", tag, true),
            ));
        }
        return Ok(Vec::new());
    }
    let form = rt.model.req_form(&node.form)?;
    let mut all = Vec::new();
    for prop in form.props() {
        let Some(valu) = node.get(&prop.name) else {
            continue;
        };
        let hit = link("prop", "prop", &prop.name, false);
        let mut out = Vec::new();
        if is_ndef(&prop.typ) {
            if let Some([Value::Str(f), v]) = valu.as_array() {
                out.extend(by_ndef(rt, f, v)?);
            }
        } else {
            if let Some(elem) = prop.typ.array_elem(rt.model) {
                if is_ndef(&elem) {
                    for v in valu.as_array().unwrap_or(&[]) {
                        if let Some([Value::Str(f), v]) = v.as_array() {
                            out.extend(by_ndef(rt, f, v)?);
                        }
                    }
                } else if let Some(f) = rt.model.form(&elem.name) {
                    let target = PropRef::Form(f.clone());
                    for v in valu.as_array().unwrap_or(&[]) {
                        out.extend(lift_eq(rt, &target, v, false)?);
                    }
                }
            }
            if rt.model.form(&prop.typ.name).is_some()
                && let Some(pivo) = rt.view.node_by_ndef(&prop.typ.name, valu)?
                && pivo.buid != node.buid
            {
                out.push(pivo.buid);
            }
        }
        all.extend(linked(out, &hit));
    }
    Ok(all)
}

/// `<- *`: the nodes whose props point to the node.
fn pivot_in(rt: &Runt<'_>, node: &Node) -> Res<Vec<Hit>> {
    let mut out = Vec::new();
    for prop in rt.view.props_of_type(&node.form) {
        let hit = link("prop", "prop", &prop.name, true);
        let found = lift_eq(rt, &PropRef::Prop(prop.clone()), &node.valu, false)?;
        out.extend(linked(found, &hit));
    }
    for prop in rt.view.array_props_of_type(&node.form) {
        let hit = link("prop", "prop", &prop.name, true);
        out.extend(linked(lift_array_eq(rt, prop, &node.valu)?, &hit));
    }
    let ndef = node.ndef();
    for prop in rt.view.props_of_type("ndef") {
        let hit = link("prop", "prop", &prop.name, true);
        let found = lift_eq(rt, &PropRef::Prop(prop.clone()), &ndef, false)?;
        out.extend(linked(found, &hit));
    }
    Ok(out)
}

/// `-> form` / `-> form:prop` (Synapse's `FormPivot`).
fn form_pivot(
    rt: &Runt<'_>,
    oper: &ast::Oper,
    node: &Node,
    dest: &PropRef,
    strict: bool,
    warned: &mut bool,
) -> Res<Vec<Hit>> {
    let destform = match dest {
        PropRef::Prop(p) => {
            let hit = link("prop", "prop", &p.name, true);
            // -> form:prop: nodes whose prop equals the source value.
            if is_ndef(&p.typ) {
                return Ok(linked(lift_eq(rt, dest, &node.ndef(), false)?, &hit));
            }
            if let Some(elem) = p.typ.array_elem(rt.model) {
                if is_ndef(&elem) {
                    return Ok(linked(lift_array_eq(rt, p, &node.ndef())?, &hit));
                }
                return Ok(linked(lift_array_eq(rt, p, &node.valu)?, &hit));
            }
            let norm = p.typ.name != node.form;
            return match lift_eq(rt, dest, &node.valu, norm) {
                Ok(found) => Ok(linked(found, &hit)),
                Err(Flow::Err(e)) if matches!(e.name.as_str(), "BadTypeValu" | "BadLiftValu") => {
                    if !*warned {
                        *warned = true;
                    }
                    warn_pivot(rt, &e, &node.valu);
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            };
        }
        PropRef::Form(f) => f.clone(),
    };
    if node.form == "syn:tag" {
        if let Some(tag) = node.valu.as_str() {
            return Ok(linked(
                rt.view.lift_tag(tag, Some(&destform.name))?,
                &link("tag", "tag", tag, true),
            ));
        }
        return Ok(Vec::new());
    }
    let srcform = rt.model.req_form(&node.form)?;
    let mut found = false;
    let mut out = Vec::new();
    // Props of the source typed as the destination form.
    for prop in srcform.props() {
        let fwd = link("prop", "prop", &prop.name, false);
        if let Some(elem) = prop.typ.array_elem(rt.model) {
            if is_ndef(&elem) {
                found = true;
                for v in node
                    .get(&prop.name)
                    .and_then(Value::as_array)
                    .unwrap_or(&[])
                {
                    if let Some([Value::Str(f), v]) = v.as_array()
                        && *f == destform.name
                    {
                        out.extend(linked(by_ndef(rt, f, v)?, &fwd));
                    }
                }
            } else if elem.name == destform.name {
                found = true;
                for v in node
                    .get(&prop.name)
                    .and_then(Value::as_array)
                    .unwrap_or(&[])
                {
                    let found = lift_eq(rt, &PropRef::Form(destform.clone()), v, false)?;
                    out.extend(linked(found, &fwd));
                }
            }
        } else if is_ndef(&prop.typ) {
            found = true;
            if let Some(Value::Array(nd)) = node.get(&prop.name)
                && let [Value::Str(f), v] = nd.as_slice()
                && *f == destform.name
            {
                out.extend(linked(by_ndef(rt, f, v)?, &fwd));
            }
        } else if prop.typ.name == destform.name && rt.model.form(&prop.typ.name).is_some() {
            found = true;
            if let Some(v) = node.get(&prop.name) {
                let found = lift_eq(rt, &PropRef::Form(destform.clone()), v, false)?;
                out.extend(linked(found, &fwd));
            }
        }
    }
    // Props of the destination typed as the source form.
    for prop in destform.props() {
        let rev = link("prop", "prop", &prop.name, true);
        if let Some(elem) = prop.typ.array_elem(rt.model) {
            if is_ndef(&elem) {
                found = true;
                out.extend(linked(lift_array_eq(rt, prop, &node.ndef())?, &rev));
            } else if elem.name == node.form {
                found = true;
                out.extend(linked(lift_array_eq(rt, prop, &node.valu)?, &rev));
            }
        } else if is_ndef(&prop.typ) {
            found = true;
            let hits = lift_eq(rt, &PropRef::Prop(prop.clone()), &node.ndef(), false)?;
            out.extend(linked(hits, &rev));
        } else if prop.typ.name == node.form {
            found = true;
            let hits = lift_eq(rt, &PropRef::Prop(prop.clone()), &node.valu, false)?;
            out.extend(linked(hits, &rev));
        }
    }
    if strict && !found {
        return Err(Flow::Err(
            rt.at(
                oper.span,
                SynErr::new(
                    "NoSuchPivot",
                    format!("No pivot found for {} -> {}.", node.form, destform.name),
                )
                .with("n1", node.form.as_str())
                .with("n2", destform.name.as_str()),
            ),
        ));
    }
    Ok(out)
}

/// `:prop -> dest` (Synapse's `PropPivot`).
fn prop_pivot(
    rt: &Runt<'_>,
    srcprop: &crate::cortex::model::Prop,
    valu: &Value,
    dest: &PropRef,
) -> Res<Vec<Buid>> {
    let src_elem = srcprop.typ.array_elem(rt.model);
    let dest_is_array = dest.typ().is_array();
    if let Some(elem) = &src_elem
        && !dest_is_array
    {
        if is_ndef(elem)
            && let PropRef::Form(f) = dest
        {
            let mut out = Vec::new();
            for v in valu.as_array().unwrap_or(&[]) {
                if let Some([Value::Str(form), v]) = v.as_array()
                    && *form == f.name
                {
                    out.extend(by_ndef(rt, form, v)?);
                }
            }
            return Ok(out);
        }
        let norm = elem.name != dest.typ().name;
        let mut out = Vec::new();
        for v in valu.as_array().unwrap_or(&[]) {
            out.extend(lift_eq(rt, dest, v, norm)?);
        }
        return Ok(out);
    }
    if is_ndef(&srcprop.typ)
        && let PropRef::Form(f) = dest
    {
        if let Some([Value::Str(form), v]) = valu.as_array()
            && *form == f.name
        {
            return by_ndef(rt, form, v);
        }
        return Ok(Vec::new());
    }
    if let PropRef::Prop(p) = dest
        && dest_is_array
        && src_elem.is_none()
    {
        let Some(elem) = p.typ.array_elem(rt.model) else {
            return Ok(Vec::new());
        };
        let valu = if elem.name != srcprop.typ.name {
            elem.norm(rt.model, valu)?.valu
        } else {
            valu.clone()
        };
        return lift_array_eq(rt, p, &valu);
    }
    let norm = dest.typ().name != srcprop.typ.name;
    lift_eq(rt, dest, valu, norm)
}
