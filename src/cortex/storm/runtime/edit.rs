//! Edit blocks (`[ ... ]`): each edit as an operation of the pipeline, in the shapes of
//! Synapse's `ast.py` edit classes.
//!
//! Synapse writes every edit of a block on its own. Here a run of prop and tag edits whose
//! names and values come only from literals and runtime variables ([`Staged::is_pure`]) is
//! staged for each node in one batch and written once, with the node add before it when the
//! block adds the node: `[ inet:ipv4=$ip :asn=$asn +#$tag ]` is one write per node instead of
//! three. The result is the same, since such edits read nothing the edits before them changed;
//! their `node:edits` arrive as one batch instead of several (clients concatenate them). So
//! that the edits and messages stay Synapse's too, a run holds no two edits of one prop or tag,
//! a deprecated prop's set (which warns) starts a new write, and nodes of forms whose model
//! hooks edit them ([`Editor::hooked`]) get their edits one at a time. When an edit of a run
//! fails, the edits before it are written together and the rest one at a time, so what stays
//! written, and the error, are what they would have been.
//!
//! [`Editor::hooked`]: crate::cortex::editor::Editor::hooked

use std::rc::Rc;

use super::exec::{
    Genr, fail, is_ndef, name_span, name_text, no_such_prop, node_prop_name, none, one, per_node,
    run_sub, tag_text, tag_texts,
};
use super::expr;
use super::{Flow, Item, Res, Runt};
use crate::cortex::editor::{EditBatch, deprecated};
use crate::cortex::model::Form;
use crate::cortex::storm::ast::{
    self, EditKind, Name, NodeProp, SetOper, TagName, TagNameKind, TagPart,
};
use crate::cortex::view::Node;
use crate::error::SynErr;
use crate::msgpack::Value;

/// The operations of the edits of a block (or of a parenthesized add), in order, over `input`.
pub(super) fn edit_opers<'g>(
    rt: &'g Runt<'g>,
    edits: &'g [ast::Edit],
    input: Genr<'g>,
) -> Genr<'g> {
    let mut genr = input;
    let mut rest = edits;
    while let Some(first) = rest.first() {
        if let Err(e) = rt.req_writable(first.span) {
            return fail(e);
        }
        let adds = match &first.kind {
            EditKind::NodeAdd { form, value, .. } => add_is_safe(rt, form, value),
            _ => false,
        };
        let from = usize::from(adds);
        let mut run: Vec<Staged<'g>> = Vec::new();
        for edit in &rest[from..] {
            match Staged::of(&edit.kind) {
                Some(s) if s.is_pure(rt) && !run.iter().any(|e| e.same_target(&s)) => run.push(s),
                _ => break,
            }
        }
        if run.is_empty() {
            genr = edit_oper(rt, first, genr);
            rest = &rest[1..];
            continue;
        }
        rest = &rest[from + run.len()..];
        let run: Rc<[Staged<'g>]> = run.into();
        let edited = {
            let run = run.clone();
            per_node(
                genr,
                move |item| match edit_node(rt, Start::Node(item), &run) {
                    Ok(Some(item)) => one(item),
                    Ok(None) => none(),
                    Err(e) => fail(e),
                },
                None,
            )
        };
        genr = match &first.kind {
            EditKind::NodeAdd { form, oper, value } if adds => {
                let oper = *oper;
                let added = std::iter::once_with(move || {
                    match add_from(rt, form, oper, value, None, run) {
                        Ok(added) => added,
                        Err(e) => fail(e),
                    }
                })
                .flatten();
                Box::new(edited.chain(added))
            }
            _ => edited,
        };
    }
    genr
}

/// A prop or tag edit of one node, which a batch can stage with others.
#[derive(Clone, Copy)]
enum Staged<'g> {
    /// `:asn=10`, `.seen=2020`, `:names+=x`.
    Prop {
        prop: &'g NodeProp,
        oper: SetOper,
        value: &'g ast::Value,
    },
    /// `:asn*unset=10`.
    PropIf {
        prop: &'g ast::RelProp,
        cond: &'g ast::SetCond,
        try_set: bool,
        value: &'g ast::Value,
    },
    /// `+#tag`, `+#tag=(2020, 2021)`.
    Tag {
        tag: &'g TagName,
        try_name: bool,
        value: Option<&'g (bool, ast::Value)>,
    },
}

impl<'g> Staged<'g> {
    /// The staged form of an edit, if it is a prop set or a tag add.
    fn of(kind: &'g EditKind) -> Option<Staged<'g>> {
        Some(match kind {
            EditKind::PropSet { prop, oper, value } => Staged::Prop {
                prop,
                oper: *oper,
                value,
            },
            EditKind::PropSetIf {
                prop,
                cond,
                try_set,
                value,
            } => Staged::PropIf {
                prop,
                cond,
                try_set: *try_set,
                value,
            },
            EditKind::TagAdd {
                tag,
                try_name,
                value,
            } => Staged::Tag {
                tag,
                try_name: *try_name,
                value: value.as_ref(),
            },
            _ => return None,
        })
    }

    /// The prop's name as written, if it is written out.
    fn prop_name(&self) -> Option<&'g str> {
        let name = match *self {
            Staged::Prop {
                prop: NodeProp::Rel(r),
                ..
            }
            | Staged::PropIf { prop: r, .. } => &r.name,
            Staged::Prop {
                prop: NodeProp::Univ(u),
                ..
            } => &u.name,
            Staged::Tag { .. } => return None,
        };
        match name {
            Name::Lit(id) => Some(&id.name),
            Name::Expr(_) => None,
        }
    }

    /// Whether both edits change the same thing as written (`asn`, `.seen`, `#foo.$x`; a tag
    /// from an expression matches none). A run holds no two edits of one thing: Synapse logs
    /// both, staged together they would be one edit.
    fn same_target(&self, other: &Staged<'_>) -> bool {
        match (self, other) {
            (Staged::Tag { tag: a, .. }, Staged::Tag { tag: b, .. }) => match (&a.kind, &b.kind) {
                (TagNameKind::Parts(a), TagNameKind::Parts(b)) => {
                    a.len() == b.len()
                        && a.iter().zip(b).all(|pair| match pair {
                            (TagPart::Lit(x), TagPart::Lit(y))
                            | (TagPart::Var(x), TagPart::Var(y)) => x.name == y.name,
                            _ => false,
                        })
                }
                _ => false,
            },
            (Staged::Tag { .. }, _) | (_, Staged::Tag { .. }) => false,
            _ => self.prop_name().is_some() && self.prop_name() == other.prop_name(),
        }
    }

    /// Whether the edit can be staged after other edits of the node, not yet written: its
    /// prop is written out, and its other names and values come only from literals and
    /// runtime variables, so it reads neither the node nor the graph and has no side effects.
    fn is_pure(&self, rt: &Runt<'_>) -> bool {
        match self {
            Staged::Prop { value, .. } => self.prop_name().is_some() && expr::is_pure(rt, value),
            Staged::PropIf { cond, value, .. } => {
                let cond = match cond {
                    ast::SetCond::Unset => true,
                    ast::SetCond::Expr(v) => expr::is_pure(rt, v),
                };
                self.prop_name().is_some() && cond && expr::is_pure(rt, value)
            }
            Staged::Tag { tag, value, .. } => {
                let named = match &tag.kind {
                    TagNameKind::Parts(parts) => parts.iter().all(|p| match p {
                        TagPart::Lit(_) => true,
                        TagPart::Var(id) => rt.is_runtvar(&id.name),
                    }),
                    TagNameKind::Expr(v) => expr::is_pure(rt, v),
                };
                named && value.is_none_or(|(_, v)| expr::is_pure(rt, v))
            }
        }
    }

    /// Whether setting the edit's prop on a node of `form` warns that it is deprecated: such
    /// an edit is written after the edits before it, as its warning follows theirs in Synapse.
    fn warns(&self, form: &Form) -> bool {
        self.prop_name()
            .and_then(|name| form.prop(name))
            .is_some_and(|prop| deprecated(prop))
    }

    /// Stage the edit on the node at `at` of `batch`; `item` is the node and path its values
    /// are computed for (None for pure edits, which need neither).
    fn stage(
        &self,
        rt: &Runt<'_>,
        batch: &mut EditBatch<'_, '_>,
        at: usize,
        item: Option<&Item>,
    ) -> Res<()> {
        match *self {
            Staged::Prop { prop, oper, value } => {
                stage_prop_set(rt, batch, at, prop, oper, value, item)
            }
            Staged::PropIf {
                prop,
                cond,
                try_set,
                value,
            } => stage_prop_set_if(rt, batch, at, prop, cond, try_set, value, item),
            Staged::Tag {
                tag,
                try_name,
                value,
            } => stage_tag_add(rt, batch, at, tag, try_name, value, item),
        }
    }

    /// Whether an error staging the edit only skips it: `?=` and a bad value, the value's
    /// computation included.
    fn skips(&self, err: &SynErr) -> bool {
        let try_set = match *self {
            Staged::Prop { oper, .. } => matches!(
                oper,
                SetOper::TrySet | SetOper::TryAppend | SetOper::TryRemove
            ),
            // These skip their bad values while staging.
            Staged::PropIf { .. } | Staged::Tag { .. } => false,
        };
        try_set && err.name == "BadTypeValu"
    }
}

/// Where the staged edits of a node start: a node that came in, or one the block adds.
enum Start<'g> {
    /// An inbound node.
    Node(Item),
    /// A node the block adds (as `[ form=valu ]`), with how its value is set.
    Add {
        form: &'g Form,
        oper: SetOper,
        valu: Value,
    },
}

impl Start<'_> {
    /// Stage the node in `batch`: its index there, None when `?=` skips a bad value.
    fn stage(&self, rt: &Runt<'_>, batch: &mut EditBatch<'_, '_>) -> Res<Option<usize>> {
        match self {
            Start::Node((node, _)) => Ok(Some(batch.load(node)?)),
            Start::Add { form, oper, valu } => {
                rt.editor.confirm(&["node", "add", &form.name])?;
                match batch.add_node(&form.name, valu) {
                    Ok(at) => Ok(Some(at)),
                    Err(e) if e.name == "BadTypeValu" && *oper == SetOper::TrySet => Ok(None),
                    Err(e) => Err(Flow::Err(e)),
                }
            }
        }
    }

    /// The form of the node.
    fn form(&self) -> &str {
        match self {
            Start::Node((node, _)) => &node.form,
            Start::Add { form, .. } => &form.name,
        }
    }
}

/// The staged edits `run` of one node as one write (see the module's doc); the node after
/// them, None when a `?=` add skipped a bad value.
fn edit_node(rt: &Runt<'_>, start: Start<'_>, run: &[Staged<'_>]) -> Res<Option<Item>> {
    let upto = if rt.editor.hooked(start.form()) {
        0
    } else {
        run.len()
    };
    let Some((mut batch, mut at, mut staged)) = stage_node(rt, &start, &run[..upto])? else {
        return Ok(None);
    };
    if staged < upto {
        // An edit failed, perhaps half staged: stage again just the ones before it.
        let Some(again) = stage_node(rt, &start, &run[..staged])? else {
            return Ok(None);
        };
        (batch, at, staged) = again;
    }
    let buid = batch.buid(at);
    let applied = batch.flush()?;
    let mut item = match start {
        Start::Node(item) if applied.is_empty() => item,
        Start::Node((node, path)) => (rt.reload(&node)?, path),
        Start::Add { .. } => (rt.edited(rt.editor.require(&buid)?), rt.init_path()),
    };
    for edit in &run[staged..] {
        item = edit_one(rt, *edit, item)?;
    }
    Ok(Some(item))
}

/// A batch with the node of `start` and as many of `edits` as stage without an error: the
/// batch, the node's index in it and how many edits it holds; None when `?=` skipped the add.
fn stage_node<'e, 'a>(
    rt: &'e Runt<'a>,
    start: &Start<'_>,
    edits: &[Staged<'_>],
) -> Res<Option<(EditBatch<'e, 'a>, usize, usize)>> {
    let mut batch = rt.editor.batch();
    let Some(at) = start.stage(rt, &mut batch)? else {
        return Ok(None);
    };
    let staged = edits
        .iter()
        .take_while(|edit| {
            !edit.warns(batch.form(at)) && edit.stage(rt, &mut batch, at, None).is_ok()
        })
        .count();
    Ok(Some((batch, at, staged)))
}

/// One staged edit of one node, written on its own.
fn edit_one(rt: &Runt<'_>, edit: Staged<'_>, item: Item) -> Res<Item> {
    let mut batch = rt.editor.batch();
    let at = batch.load(&item.0)?;
    match edit.stage(rt, &mut batch, at, Some(&item)) {
        Ok(()) => {}
        Err(Flow::Err(e)) if edit.skips(&e) => return Ok(item),
        Err(e) => return Err(e),
    }
    if batch.flush()?.is_empty() {
        return Ok(item);
    }
    Ok((rt.reload(&item.0)?, item.1))
}

/// One edit as an operation on the items of `input`.
fn edit_oper<'g>(rt: &'g Runt<'g>, edit: &'g ast::Edit, input: Genr<'g>) -> Genr<'g> {
    if let Err(e) = rt.req_writable(edit.span) {
        return fail(e);
    }
    match &edit.kind {
        EditKind::NodeAdd { form, oper, value } => node_add_oper(rt, form, *oper, value, input),
        EditKind::Parens { add, edits } => {
            let EditKind::NodeAdd { form, oper, value } = &add.kind else {
                return input;
            };
            let safe = matches!(form, Name::Lit(_)) && expr::is_safe(rt, value);
            if safe {
                let rest = std::iter::once_with(move || {
                    edit_opers(rt, edits, node_add_oper(rt, form, *oper, value, none()))
                })
                .flatten();
                return Box::new(input.chain(rest));
            }
            per_node(
                input,
                move |item| {
                    let added = match add_from(rt, form, *oper, value, Some(&item), Rc::from([])) {
                        Ok(added) => added,
                        Err(e) => return fail(e),
                    };
                    Box::new(std::iter::once(Ok(item)).chain(edit_opers(rt, edits, added)))
                },
                None,
            )
        }
        EditKind::PropSet { .. } | EditKind::PropSetIf { .. } | EditKind::TagAdd { .. } => {
            match Staged::of(&edit.kind) {
                Some(staged) => one_at_a_time(rt, staged, input),
                None => input,
            }
        }
        EditKind::PropDel(prop) => per_node(
            input,
            move |item| match prop_del(rt, prop, item) {
                Ok(item) => one(item),
                Err(e) => fail(e),
            },
            None,
        ),
        EditKind::TagDel(tag) => per_node(
            input,
            move |(node, path)| {
                let item = (node.clone(), path);
                let names = match tag_texts(rt, tag, Some(&item)) {
                    Ok(names) => names,
                    Err(Flow::Err(e)) if e.name == "BadTypeValu" => Vec::new(),
                    Err(e) => return fail(e),
                };
                let mut node = node;
                for name in names {
                    let name = name.to_lowercase();
                    if let Err(e) = rt.editor.del_tag(&node, &name) {
                        return fail(e);
                    }
                    node = match rt.reload(&node) {
                        Ok(n) => n,
                        Err(e) => return fail(e),
                    };
                }
                one((node, item.1))
            },
            None,
        ),
        EditKind::TagPropSet {
            tag,
            prop,
            oper,
            value,
        } => each_node(input, move |item| {
            let tagname = tag_text(rt, tag, Some(item))?;
            let propname = name_text(rt, prop, Some(item))?;
            let valu = expr::compute(rt, value, Some(item))?.to_stor(false);
            match rt.editor.set_tagprop(&item.0, &tagname, &propname, &valu) {
                Ok(()) => {}
                Err(e) if e.name == "BadTypeValu" && *oper == SetOper::TrySet => {}
                Err(e) => return Err(Flow::Err(e)),
            }
            rt.reload(&item.0)
        }),
        EditKind::TagPropDel { tag, prop } => each_node(input, move |item| {
            let tagname = tag_text(rt, tag, Some(item))?;
            let propname = name_text(rt, prop, Some(item))?;
            rt.editor.del_tagprop(&item.0, &tagname, &propname)?;
            rt.reload(&item.0)
        }),
        EditKind::Edge {
            del,
            dir,
            verb,
            target,
        } => each_node(input, move |item| {
            let verb = expr::compute(rt, verb, Some(item))?.to_str();
            let action = if *del { "del" } else { "add" };
            rt.editor.confirm(&["node", "edge", action, &verb])?;
            let others = edge_targets(rt, target, item)?;
            match dir {
                ast::EdgeDir::Out => {
                    let mut batch = rt.editor.batch();
                    let at = batch.load(&item.0)?;
                    for other in &others {
                        if *del {
                            batch.del_edge(at, &verb, &other.buid)?;
                        } else {
                            batch.add_edge(at, &verb, &other.buid)?;
                        }
                    }
                    batch.flush()?;
                }
                ast::EdgeDir::In => {
                    for other in &others {
                        rt.editor.edge(other, &verb, &item.0.buid, *del)?;
                    }
                }
            }
            rt.reload(&item.0)
        }),
    }
}

/// An edit on each node of `input`: `edit` returns the node as it is after it.
fn each_node<'g>(input: Genr<'g>, edit: impl Fn(&Item) -> Res<Rc<Node>> + 'g) -> Genr<'g> {
    per_node(
        input,
        move |item| match edit(&item) {
            Ok(node) => one((node, item.1)),
            Err(e) => fail(e),
        },
        None,
    )
}

fn edge_targets(rt: &Runt<'_>, target: &ast::Value, item: &Item) -> Res<Vec<Rc<Node>>> {
    if let ast::ValueKind::SubQuery(sub) = &target.kind {
        // Synapse runs the subquery in a sub-runtime without input nodes.
        let mut out = Vec::new();
        for x in run_sub(rt, &sub.query, None) {
            out.push(x?.0);
        }
        return Ok(out);
    }
    let valu = expr::compute(rt, target, Some(item))?;
    expr::nodes_from(rt, &valu, target.span)
}

/// The form and the values of `[ form=value ]`: one, or the addresses of an inet:ipv4 range.
fn add_values<'g>(
    rt: &'g Runt<'g>,
    form: &Name,
    value: &ast::Value,
    item: Option<&Item>,
) -> Res<(&'g Form, Vec<Value>)> {
    let formname = name_text(rt, form, item)?;
    let Some(formobj) = rt.model.form(&formname) else {
        return Err(Flow::Err(
            rt.at(
                name_span(form),
                SynErr::new("NoSuchForm", format!("No form named {formname}."))
                    .with("name", formname.as_str()),
            ),
        ));
    };
    let valu = expr::compute(rt, value, item)?.to_stor(false);
    Ok((formobj, type_vals(rt, formobj, &valu)))
}

/// Add nodes from a form and value, as `[ form=valu ]` does, one value at a time as the
/// stream is pulled, each with the staged edits `run`; `?=` skips bad values.
fn add_from<'g>(
    rt: &'g Runt<'g>,
    form: &Name,
    oper: SetOper,
    value: &ast::Value,
    item: Option<&Item>,
    run: Rc<[Staged<'g>]>,
) -> Res<Genr<'g>> {
    let (form, vals) = add_values(rt, form, value, item)?;
    Ok(Box::new(vals.into_iter().filter_map(move |valu| {
        edit_node(rt, Start::Add { form, oper, valu }, &run).transpose()
    })))
}

/// Whether `[ form=value ]` adds the same nodes whatever node came in (Synapse adds those
/// once, after the inbound nodes).
fn add_is_safe(rt: &Runt<'_>, form: &Name, value: &ast::Value) -> bool {
    let form = match form {
        Name::Lit(_) => true,
        Name::Expr(v) => expr::is_safe(rt, v),
    };
    form && expr::is_safe(rt, value)
}

/// Synapse's `Type.getTypeVals`: the values one written value stands for (one, except a
/// CIDR or range of inet:ipv4).
fn type_vals(rt: &Runt<'_>, form: &Form, valu: &Value) -> Vec<Value> {
    if form.name == "inet:ipv4"
        && let Value::Str(text) = valu
        && (text.contains('/') || text.contains('-'))
        && let Ok(cmprs) = form.typ.stor_cmprs(rt.model, "=", valu)
        && let [sc] = cmprs.as_slice()
        && let Some([Value::Int(lo), Value::Int(hi)]) = sc.valu.as_array()
        && hi - lo < 1 << 16
    {
        return (*lo..=*hi).map(Value::Int).collect();
    }
    vec![valu.clone()]
}

fn node_add_oper<'g>(
    rt: &'g Runt<'g>,
    form: &'g Name,
    oper: SetOper,
    value: &'g ast::Value,
    input: Genr<'g>,
) -> Genr<'g> {
    if add_is_safe(rt, form, value) {
        let added = std::iter::once_with(move || {
            match add_from(rt, form, oper, value, None, Rc::from([])) {
                Ok(added) => added,
                Err(e) => fail(e),
            }
        })
        .flatten();
        return Box::new(input.chain(added));
    }
    per_node(
        input,
        move |item| match add_from(rt, form, oper, value, Some(&item), Rc::from([])) {
            Ok(added) => Box::new(added.chain(std::iter::once(Ok(item)))),
            Err(e) => fail(e),
        },
        None,
    )
}

/// Edits written one at a time on each node of `input`.
fn one_at_a_time<'g>(rt: &'g Runt<'g>, edit: Staged<'g>, input: Genr<'g>) -> Genr<'g> {
    per_node(
        input,
        move |item| match edit_one(rt, edit, item) {
            Ok(item) => one(item),
            Err(e) => fail(e),
        },
        None,
    )
}

/// Stage `:prop=value` (and `+=`, `-=`, `++=`, `--=`), reading the prop's current value from
/// the batch.
fn stage_prop_set(
    rt: &Runt<'_>,
    batch: &mut EditBatch<'_, '_>,
    at: usize,
    prop: &NodeProp,
    oper: SetOper,
    value: &ast::Value,
    item: Option<&Item>,
) -> Res<()> {
    let (name, span) = match prop {
        NodeProp::Rel(r) => (name_text(rt, &r.name, item)?, r.span),
        NodeProp::Univ(u) => (node_prop_name(rt, prop, item)?, u.span),
    };
    let form = batch.form(at).clone();
    let Some(propobj) = form.prop(&name).cloned() else {
        return Err(Flow::Err(
            rt.at(span, no_such_prop(&name).with("form", form.name.as_str())),
        ));
    };
    {
        let isndef = is_ndef(&propobj.typ);
        let mut valu = match &value.kind {
            ast::ValueKind::SubQuery(sub) if propobj.typ.is_array() => {
                let mut vals = Vec::new();
                for x in run_sub(rt, &sub.query, None) {
                    let (n, _) = x?;
                    vals.push(if isndef { n.ndef() } else { n.valu.clone() });
                }
                Value::Array(vals)
            }
            _ => expr::compute(rt, value, item)?.to_stor(isndef),
        };
        let append = matches!(oper, SetOper::Append | SetOper::TryAppend);
        let remove = matches!(oper, SetOper::Remove | SetOper::TryRemove);
        if append || remove {
            let Some(elem) = propobj.typ.array_elem(rt.model) else {
                return Err(Flow::Err(rt.at(
                    span,
                    SynErr::new(
                        "StormRuntimeError",
                        format!(
                            "Property set using ({}) is only valid on arrays.",
                            if append { "+=" } else { "-=" }
                        ),
                    ),
                )));
            };
            let mut arry: Vec<Value> = batch
                .get(at, &name)
                .and_then(Value::as_array)
                .map(<[Value]>::to_vec)
                .unwrap_or_default();
            if append {
                arry.push(valu);
            } else {
                let norm = elem.norm(rt.model, &valu)?.valu;
                if let Some(at) = arry.iter().position(|v| *v == norm) {
                    arry.remove(at);
                }
            }
            valu = Value::Array(arry);
        } else if matches!(
            oper,
            SetOper::AppendAll | SetOper::RemoveAll | SetOper::TryAppendAll | SetOper::TryRemoveAll
        ) {
            let Some(elem) = propobj.typ.array_elem(rt.model) else {
                return Err(Flow::Err(rt.at(
                    span,
                    SynErr::new(
                        "StormRuntimeError",
                        "Property set using (++=) is only valid on arrays.",
                    ),
                )));
            };
            let add = matches!(oper, SetOper::AppendAll | SetOper::TryAppendAll);
            let skip_bad = matches!(oper, SetOper::TryAppendAll | SetOper::TryRemoveAll);
            let mut arry: Vec<Value> = batch
                .get(at, &name)
                .and_then(Value::as_array)
                .map(<[Value]>::to_vec)
                .unwrap_or_default();
            for v in valu.as_array().unwrap_or(&[]) {
                let norm = match elem.norm(rt.model, v) {
                    Ok(n) => n.valu,
                    Err(_) if skip_bad => continue,
                    Err(e) => return Err(Flow::Err(e)),
                };
                if add {
                    arry.push(norm);
                } else if let Some(at) = arry.iter().position(|x| *x == norm) {
                    arry.remove(at);
                }
            }
            valu = Value::Array(arry);
        }
        if propobj.typ.name == "ival"
            && let Some(old) = batch.get(at, &name)
        {
            let new = propobj.typ.norm(rt.model, &valu)?.valu;
            valu = merge_ival_values(old, &new);
        }
        rt.editor.confirm_prop("set", &form.name, &name)?;
        batch.set(at, &name, &valu, None)?;
    }
    Ok(())
}

fn merge_ival_values(old: &Value, new: &Value) -> Value {
    let ints = |v: &Value| -> Vec<i128> {
        v.as_array()
            .unwrap_or(&[])
            .iter()
            .filter_map(|x| match x {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect()
    };
    let mut all = ints(old);
    all.extend(ints(new));
    match (all.iter().min(), all.iter().max()) {
        (Some(lo), Some(hi)) => Value::Array(vec![Value::Int(*lo), Value::Int(*hi)]),
        _ => new.clone(),
    }
}

/// Stage `:prop*mode=value`: `unset` sets only an unset prop (as the batch holds it).
#[allow(clippy::too_many_arguments)]
fn stage_prop_set_if(
    rt: &Runt<'_>,
    batch: &mut EditBatch<'_, '_>,
    at: usize,
    prop: &ast::RelProp,
    cond: &ast::SetCond,
    try_set: bool,
    value: &ast::Value,
    item: Option<&Item>,
) -> Res<()> {
    let name = name_text(rt, &prop.name, item)?;
    let form = batch.form(at).clone();
    if form.prop(&name).is_none() {
        return Err(Flow::Err(
            rt.at(prop.span, no_such_prop(&format!("{}:{name}", form.name))),
        ));
    }
    let mode = match cond {
        ast::SetCond::Unset => "unset".to_string(),
        ast::SetCond::Expr(v) => expr::compute(rt, v, item)?.to_str(),
    };
    let set = match mode.as_str() {
        "always" => true,
        "never" => false,
        "unset" => batch.get(at, &name).is_none(),
        other => {
            return Err(Flow::Err(SynErr::new(
                "StormRuntimeError",
                format!("Invalid conditional set operator ({other})."),
            )));
        }
    };
    if set {
        let valu = expr::compute(rt, value, item)?.to_stor(false);
        rt.editor.confirm_prop("set", &form.name, &name)?;
        match batch.set(at, &name, &valu, None) {
            Ok(_) => {}
            Err(e) if try_set && e.name == "BadTypeValu" => {}
            Err(e) => return Err(Flow::Err(e)),
        }
    }
    Ok(())
}

fn prop_del(rt: &Runt<'_>, prop: &NodeProp, item: Item) -> Res<Item> {
    let (node, path) = item;
    let ctx = (node.clone(), path);
    match prop {
        NodeProp::Rel(r) => {
            let name = name_text(rt, &r.name, Some(&ctx))?;
            let form = rt.model.req_form(&node.form)?;
            if form.prop(&name).is_none() {
                return Err(Flow::Err(
                    rt.at(r.span, no_such_prop(&name).with("form", node.form.as_str())),
                ));
            }
            rt.editor.pop_prop(&node, &name, false)?;
        }
        NodeProp::Univ(u) => {
            let name = node_prop_name(rt, prop, Some(&ctx))?;
            if rt.model.prop(&name).is_none() {
                return Err(Flow::Err(rt.at(u.span, no_such_prop(&name))));
            }
            rt.editor.pop_prop(&node, &name, false)?;
        }
    }
    Ok((rt.reload(&node)?, ctx.1))
}

/// Stage `+#tag` (or each tag of a list), with its interval; `+?#` skips bad names.
fn stage_tag_add(
    rt: &Runt<'_>,
    batch: &mut EditBatch<'_, '_>,
    at: usize,
    tag: &TagName,
    try_name: bool,
    value: Option<&(bool, ast::Value)>,
    item: Option<&Item>,
) -> Res<()> {
    let names = match tag_texts(rt, tag, item) {
        Ok(names) => names,
        Err(Flow::Err(e)) if try_name && e.name == "BadTypeValu" => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut valu = None;
    if let Some((try_valu, v)) = value {
        let raw = expr::compute(rt, v, item)?.to_prim();
        if *try_valu {
            let ival = rt
                .model
                .typ("ival")
                .ok_or_else(|| SynErr::new("NoSuchType", "No type named ival."))?;
            valu = ival.norm(rt.model, &raw).ok().map(|n| n.valu);
        } else {
            valu = Some(raw);
        }
    }
    let valu = valu.filter(|v| !matches!(v.as_array(), Some([Value::Nil, Value::Nil])));
    for name in &names {
        rt.editor.confirm_tag("add", name)?;
    }
    for name in &names {
        match batch.add_tag(at, name, valu.as_ref()) {
            Ok(_) => {}
            Err(e) if try_name && e.name == "BadTypeValu" => {}
            Err(e) => return Err(Flow::Err(e)),
        }
    }
    Ok(())
}
