//! Values and expressions: variables, node props, `$( ... )` arithmetic and comparisons,
//! method calls on storm values, storm functions, and the `$lib` functions implemented here.

use std::rc::Rc;

use super::exec::{self, no_such_prop, run_query};
use super::number::Dec;
use super::value::{Val, bad_cast};
use super::{Flow, Item, Res, Runt, views};
use crate::cortex::model::py;
use crate::cortex::storm::ast::{self, BinOp, Name, OperKind, TagNameKind, TagPart, ValueKind};
use crate::cortex::view::Node;
use crate::error::SynErr;
use crate::msgpack::Value;

/// The node and path a value is computed for (None when runtime safe).
pub(super) type Ctx<'c> = Option<&'c Item>;

fn rt_err(mesg: impl Into<String>) -> SynErr {
    SynErr::new("StormRuntimeError", mesg)
}

fn no_such_name(name: &str) -> SynErr {
    SynErr::new("NoSuchName", format!("Cannot find name [{name}]")).with("name", name)
}

/// Whether a value is the same for every node (Synapse's `isRuntSafe`).
pub(super) fn is_safe(rt: &Runt<'_>, v: &ast::Value) -> bool {
    node_free(rt, v, true)
}

/// Whether a value comes only from literals and runtime variables: runtime safe, and without
/// queries or calls, so computing it reads nothing of the graph and has no side effects.
pub(super) fn is_pure(rt: &Runt<'_>, v: &ast::Value) -> bool {
    node_free(rt, v, false)
}

/// Whether a value reads nothing of the node it is computed for; queries and calls count as
/// such only with `with_queries`.
fn node_free(rt: &Runt<'_>, v: &ast::Value, with_queries: bool) -> bool {
    let free = |x: &ast::Value| node_free(rt, x, with_queries);
    match &v.kind {
        ValueKind::Var(name) => rt.is_runtvar(name),
        ValueKind::RelProp(_)
        | ValueKind::UnivProp(_)
        | ValueKind::Tag(_)
        | ValueKind::TagProp { .. } => false,
        ValueKind::SubQuery(_) | ValueKind::EmbedQuery { .. } => with_queries,
        ValueKind::List(items) | ValueKind::Format(items) => items.iter().all(free),
        ValueKind::Dict(pairs) => pairs.iter().all(|(k, v)| free(k) && free(v)),
        ValueKind::Deref { base, key } => free(base) && free(key),
        ValueKind::Call { func, args, kwargs } => {
            with_queries
                && free(func)
                && args.iter().all(free)
                && kwargs.iter().all(|(_, a)| free(a))
        }
        ValueKind::Expr(inner) | ValueKind::Not(inner) | ValueKind::Neg(inner) => free(inner),
        ValueKind::Binary { left, right, .. } => free(left) && free(right),
        ValueKind::Str(_)
        | ValueKind::Int(_)
        | ValueKind::Decimal(_)
        | ValueKind::Float(_)
        | ValueKind::Bool(_)
        | ValueKind::Null => true,
    }
}

/// Collect the variables a value reads, with where they were written.
fn vars_in_value(v: &ast::Value, out: &mut Vec<(String, ast::Span)>) {
    match &v.kind {
        ValueKind::Var(name) => out.push((name.clone(), v.span)),
        ValueKind::List(items) | ValueKind::Format(items) => {
            items.iter().for_each(|i| vars_in_value(i, out))
        }
        ValueKind::Dict(pairs) => pairs.iter().for_each(|(k, v)| {
            vars_in_value(k, out);
            vars_in_value(v, out);
        }),
        ValueKind::Deref { base, key } => {
            vars_in_value(base, out);
            vars_in_value(key, out);
        }
        ValueKind::Call { func, args, kwargs } => {
            vars_in_value(func, out);
            args.iter().for_each(|a| vars_in_value(a, out));
            kwargs.iter().for_each(|(_, a)| vars_in_value(a, out));
        }
        ValueKind::Expr(inner) | ValueKind::Not(inner) | ValueKind::Neg(inner) => {
            vars_in_value(inner, out)
        }
        ValueKind::Binary { left, right, .. } => {
            vars_in_value(left, out);
            vars_in_value(right, out);
        }
        ValueKind::RelProp(r) => vars_in_name(&r.name, out),
        ValueKind::UnivProp(u) => vars_in_name(&u.name, out),
        ValueKind::Tag(t) => vars_in_tag(t, out),
        ValueKind::TagProp { tag, prop } => {
            vars_in_tag(tag, out);
            vars_in_name(prop, out);
        }
        ValueKind::SubQuery(sub) => {
            for oper in &sub.query.opers {
                vars_used_by_oper(oper, out);
            }
        }
        _ => {}
    }
}

fn vars_in_name(n: &Name, out: &mut Vec<(String, ast::Span)>) {
    if let Name::Expr(v) = n {
        vars_in_value(v, out);
    }
}

fn vars_in_tag(t: &ast::TagName, out: &mut Vec<(String, ast::Span)>) {
    match &t.kind {
        TagNameKind::Parts(parts) => {
            for p in parts {
                if let TagPart::Var(id) = p {
                    out.push((id.name.clone(), id.span));
                }
            }
        }
        TagNameKind::Expr(v) => vars_in_value(v, out),
    }
}

fn vars_in_cmp(c: &Option<ast::Comparison>, out: &mut Vec<(String, ast::Span)>) {
    if let Some(c) = c {
        vars_in_value(&c.value, out);
    }
}

fn vars_in_nodeprop(p: &ast::NodeProp, out: &mut Vec<(String, ast::Span)>) {
    match p {
        ast::NodeProp::Rel(r) => vars_in_name(&r.name, out),
        ast::NodeProp::Univ(u) => vars_in_name(&u.name, out),
    }
}

fn vars_in_cond(c: &ast::Cond, out: &mut Vec<(String, ast::Span)>) {
    use ast::CondKind::*;
    match &c.kind {
        Not(a) => vars_in_cond(a, out),
        And(a, b) | Or(a, b) => {
            vars_in_cond(a, out);
            vars_in_cond(b, out);
        }
        HasProp(p) => vars_in_nodeprop(p, out),
        PropCmp { prop, cmp } => {
            vars_in_nodeprop(prop, out);
            vars_in_value(&cmp.value, out);
        }
        HasAbsProp(_) => {}
        AbsPropCmp { cmp, .. } => vars_in_value(&cmp.value, out),
        Tag(t) => vars_in_tag(t, out),
        TagCmp { tag, cmp } => {
            vars_in_tag(tag, out);
            vars_in_value(&cmp.value, out);
        }
        HasTagProp { tag, prop } => {
            vars_in_tag(tag, out);
            vars_in_name(prop, out);
        }
        TagPropCmp { tag, prop, cmp } => {
            vars_in_tag(tag, out);
            vars_in_name(prop, out);
            vars_in_value(&cmp.value, out);
        }
        SubQuery { query, cmp } => {
            for oper in &query.query.opers {
                vars_used_by_oper(oper, out);
            }
            vars_in_cmp(cmp, out);
        }
        Array { prop, cmp } => {
            vars_in_name(&prop.name, out);
            vars_in_value(&cmp.value, out);
        }
        Value(v) => vars_in_value(v, out),
    }
}

fn vars_in_edit(e: &ast::Edit, out: &mut Vec<(String, ast::Span)>) {
    use ast::EditKind::*;
    match &e.kind {
        NodeAdd { form, value, .. } => {
            vars_in_name(form, out);
            vars_in_value(value, out);
        }
        PropSet { prop, value, .. } => {
            vars_in_nodeprop(prop, out);
            vars_in_value(value, out);
        }
        PropSetIf {
            prop, cond, value, ..
        } => {
            vars_in_name(&prop.name, out);
            if let ast::SetCond::Expr(v) = cond {
                vars_in_value(v, out);
            }
            vars_in_value(value, out);
        }
        PropDel(p) => vars_in_nodeprop(p, out),
        TagAdd { tag, value, .. } => {
            vars_in_tag(tag, out);
            if let Some((_, v)) = value {
                vars_in_value(v, out);
            }
        }
        TagDel(t) => vars_in_tag(t, out),
        TagPropSet {
            tag, prop, value, ..
        } => {
            vars_in_tag(tag, out);
            vars_in_name(prop, out);
            vars_in_value(value, out);
        }
        TagPropDel { tag, prop } => {
            vars_in_tag(tag, out);
            vars_in_name(prop, out);
        }
        Edge { verb, target, .. } => {
            vars_in_value(verb, out);
            vars_in_value(target, out);
        }
        Parens { add, edits } => {
            vars_in_edit(add, out);
            edits.iter().for_each(|e| vars_in_edit(e, out));
        }
    }
}

/// Collect the variables an operation reads (Synapse validates them before running).
pub(super) fn vars_used_by_oper(oper: &ast::Oper, out: &mut Vec<(String, ast::Span)>) {
    use ast::LiftKind;
    let subq = |q: &ast::SubQuery, out: &mut Vec<(String, ast::Span)>| {
        for o in &q.query.opers {
            vars_used_by_oper(o, out);
        }
    };
    match &oper.kind {
        OperKind::Lift(lift) => match &lift.kind {
            LiftKind::Prop { prop, cmp } => {
                vars_in_name(prop, out);
                vars_in_cmp(cmp, out);
            }
            LiftKind::Array { prop, cmp } => {
                vars_in_name(prop, out);
                vars_in_value(&cmp.value, out);
            }
            LiftKind::Tag { tag, cmp } | LiftKind::TagTag { tag, cmp } => {
                vars_in_tag(tag, out);
                vars_in_cmp(cmp, out);
            }
            LiftKind::FormTag { form, tag, cmp } => {
                vars_in_name(form, out);
                vars_in_tag(tag, out);
                vars_in_cmp(cmp, out);
            }
            LiftKind::TagProp {
                form,
                tag,
                prop,
                cmp,
            } => {
                if let Some(f) = form {
                    vars_in_name(f, out);
                }
                vars_in_tag(tag, out);
                vars_in_name(prop, out);
                vars_in_cmp(cmp, out);
            }
        },
        OperKind::Filter { cond, .. } => vars_in_cond(cond, out),
        OperKind::Pivot(p) => match &p.kind {
            ast::PivotKind::To(v) => vars_in_value(v, out),
            ast::PivotKind::Tags(Some(t)) => vars_in_tag(t, out),
            ast::PivotKind::PropOut(r) => vars_in_name(&r.name, out),
            ast::PivotKind::Prop { prop, target } => {
                vars_in_name(&prop.name, out);
                vars_in_value(target, out);
            }
            ast::PivotKind::Raw(q) => subq(q, out),
            ast::PivotKind::Walk {
                verb, target, cmp, ..
            } => {
                vars_in_value(verb, out);
                if let ast::WalkTarget::Forms(v) = target {
                    vars_in_value(v, out);
                }
                vars_in_cmp(cmp, out);
            }
            _ => {}
        },
        OperKind::Edits(edits) => edits.iter().for_each(|e| vars_in_edit(e, out)),
        OperKind::Command(cmd) => {
            for arg in &cmd.args {
                if let ast::CmdArg::Value(v) = arg {
                    vars_in_value(v, out);
                }
            }
        }
        OperKind::SubQuery { query, .. } => subq(query, out),
        OperKind::SetVar { value, .. } | OperKind::SetVars { value, .. } => {
            vars_in_value(value, out)
        }
        OperKind::SetItem { target, key, value } => {
            vars_in_value(target, out);
            vars_in_value(key, out);
            vars_in_value(value, out);
        }
        OperKind::Eval(v) | OperKind::Emit(v) | OperKind::Yield(v) => vars_in_value(v, out),
        OperKind::For { iter, body, .. } => {
            vars_in_value(iter, out);
            subq(body, out);
        }
        OperKind::While { cond, body } => {
            vars_in_value(cond, out);
            subq(body, out);
        }
        OperKind::If {
            branches,
            otherwise,
        } => {
            for (c, b) in branches {
                vars_in_value(c, out);
                subq(b, out);
            }
            if let Some(b) = otherwise {
                subq(b, out);
            }
        }
        OperKind::Switch { subject, cases } => {
            vars_in_value(subject, out);
            cases.iter().for_each(|c| subq(&c.body, out));
        }
        OperKind::Try { body, catches } => {
            subq(body, out);
            catches.iter().for_each(|c| subq(&c.body, out));
        }
        OperKind::Init(q) | OperKind::Fini(q) | OperKind::Empty(q) => subq(q, out),
        OperKind::Return(Some(v)) => vars_in_value(v, out),
        OperKind::Return(None)
        | OperKind::Function(_)
        | OperKind::Stop
        | OperKind::Break
        | OperKind::Continue => {}
    }
}

/// A variable: the node's path first, then the runtime's frames.
pub(super) fn var(rt: &Runt<'_>, name: &str, span: ast::Span, item: Ctx<'_>) -> Res<Val> {
    if let Some((node, path)) = item {
        if name == "node" {
            return Ok(Val::Node(node.clone()));
        }
        if name == "path" {
            return Ok(Val::Path(Rc::new(path.clone()), node.iden()));
        }
        if let Some(v) = path.vars.get(name) {
            return Ok(v.clone());
        }
    }
    if name == "lib" {
        return Ok(Val::Lib(Vec::new()));
    }
    if let Some(v) = rt.get_var(name) {
        return Ok(v);
    }
    let safe = rt.is_runtvar(name);
    let mesg = if safe {
        format!("Runtsafe variable used before assignment: {name}")
    } else {
        format!("Non-runtsafe variable used before assignment: {name}")
    };
    Err(Flow::Err(
        rt.at(
            span,
            SynErr::new("NoSuchVar", mesg)
                .with("name", name)
                .with("runtsafe", safe),
        ),
    ))
}

fn need_node<'c>(rt: &Runt<'_>, item: Ctx<'c>, span: ast::Span) -> Res<&'c Rc<Node>> {
    item.map(|(n, _)| n).ok_or_else(|| {
        Flow::Err(rt.at(
            span,
            rt_err("A node property was used where there is no node."),
        ))
    })
}

/// Compute a value.
pub(super) fn compute(rt: &Runt<'_>, v: &ast::Value, item: Ctx<'_>) -> Res<Val> {
    Ok(match &v.kind {
        ValueKind::Str(s) => Val::Str(s.clone()),
        ValueKind::Int(i) => Val::Int(*i),
        ValueKind::Decimal(s) => Val::Num(Dec::parse(s).ok_or_else(|| {
            rt.at(
                v.span,
                bad_cast(format!("Failed to make a number from {s}")),
            )
        })?),
        ValueKind::Float(f) => Val::Float(*f),
        ValueKind::Bool(b) => Val::Bool(*b),
        ValueKind::Null => Val::Null,
        ValueKind::List(items) => Val::List(
            items
                .iter()
                .map(|i| compute(rt, i, item))
                .collect::<Res<_>>()?,
        ),
        ValueKind::Dict(pairs) => {
            let mut out = Vec::new();
            for (k, val) in pairs {
                let key = compute(rt, k, item)?;
                let val = compute(rt, val, item)?;
                match out.iter_mut().find(|(ok, _): &&mut (Val, Val)| *ok == key) {
                    Some(slot) => slot.1 = val,
                    None => out.push((key, val)),
                }
            }
            Val::Dict(out)
        }
        ValueKind::Format(parts) => {
            let mut text = String::new();
            for p in parts {
                let val = compute(rt, p, item)?;
                text.push_str(&val.repr_str());
            }
            Val::Str(text)
        }
        ValueKind::Var(name) => var(rt, name, v.span, item)?,
        ValueKind::Deref { base, key } => {
            let base = compute(rt, base, item)?;
            if matches!(base, Val::Null) {
                return Ok(Val::Null);
            }
            let name = compute(rt, key, item)?.to_str();
            deref(rt, base, &name).map_err(|e| match e {
                // Converting a plain int fails before Synapse's deref adds a highlight.
                Flow::Err(e) if e.name == "NoSuchType" => Flow::Err(e),
                Flow::Err(e) => Flow::Err(rt.at(key.span, e)),
                other => other,
            })?
        }
        ValueKind::Call { func, args, kwargs } => {
            if let Some(result) = mutate_list_var(rt, func, args, item) {
                return result;
            }
            let f = compute(rt, func, item)?;
            let args: Vec<Val> = args
                .iter()
                .map(|a| compute(rt, a, item))
                .collect::<Res<_>>()?;
            let kwargs: Vec<(String, Val)> = kwargs
                .iter()
                .map(|(k, a)| Ok((k.name.clone(), compute(rt, a, item)?)))
                .collect::<Res<_>>()?;
            call(rt, &f, args, kwargs, v.span).map_err(|e| match e {
                Flow::Err(e) => Flow::Err(rt.at(v.span, e)),
                other => other,
            })?
        }
        ValueKind::RelProp(r) => {
            let node = need_node(rt, item, r.span)?;
            let name = exec::name_text(rt, &r.name, item)?;
            prop_value(rt, node, &name, r.span)?
        }
        ValueKind::UnivProp(u) => {
            let node = need_node(rt, item, u.span)?;
            let name = exec::name_text(rt, &u.name, item)?;
            let name = if name.starts_with('.') {
                name
            } else {
                format!(".{name}")
            };
            prop_value(rt, node, &name, u.span)?
        }
        ValueKind::Tag(t) => {
            let node = need_node(rt, item, t.span)?;
            let name = exec::tag_text(rt, t, item)?;
            match node.tag(&name) {
                Some((a, b)) => Val::Tuple(vec![
                    a.map_or(Val::Null, |x| Val::Int(x.into())),
                    b.map_or(Val::Null, |x| Val::Int(x.into())),
                ]),
                None => Val::Null,
            }
        }
        ValueKind::TagProp { tag, prop } => {
            let node = need_node(rt, item, tag.span)?;
            let name = exec::tag_text(rt, tag, item)?;
            let propname = exec::name_text(rt, prop, item)?;
            node.tagprop(&name, &propname).map_or(Val::Null, Val::from)
        }
        ValueKind::SubQuery(sub) => {
            let mut found = Vec::new();
            for x in run_query(rt, &sub.query, exec::none()) {
                match x {
                    Ok((node, _)) => {
                        found.push(node);
                        if found.len() > 1 {
                            let text = sub.query.span.text(rt.text).to_string();
                            return Err(Flow::Err(rt.at(
                                v.span,
                                SynErr::new(
                                    "BadTypeValu",
                                    format!("Subquery used as a value yielded too many (>1) nodes. {text}"),
                                )
                                .with("text", text.as_str()),
                            )));
                        }
                    }
                    Err(Flow::Return(val)) => return Ok(val),
                    Err(e) => return Err(e),
                }
            }
            found.pop().map_or(Val::Null, Val::Node)
        }
        ValueKind::EmbedQuery { text, .. } => Val::Query(text.clone()),
        ValueKind::Expr(inner) => compute(rt, inner, item)?,
        ValueKind::Not(inner) => Val::Bool(!compute(rt, inner, item)?.truthy()),
        ValueKind::Neg(inner) => match to_number(compute(rt, inner, item)?)? {
            Val::Int(i) => Val::Int(
                i.checked_neg()
                    .ok_or_else(|| rt_err("Integer overflow in storm expression."))?,
            ),
            Val::Float(f) => Val::Float(-f),
            Val::Num(d) => Val::Num(Dec::from_int(0).sub(d)?),
            other => other,
        },
        ValueKind::Binary { op, left, right } => {
            let l = compute(rt, left, item)?;
            match op {
                BinOp::Or => {
                    if l.truthy() {
                        return Ok(Val::Bool(true));
                    }
                    return Ok(Val::Bool(compute(rt, right, item)?.truthy()));
                }
                BinOp::And => {
                    if !l.truthy() {
                        return Ok(Val::Bool(false));
                    }
                    return Ok(Val::Bool(compute(rt, right, item)?.truthy()));
                }
                _ => {}
            }
            let r = compute(rt, right, item)?;
            // Synapse highlights only a division by zero (on the divisor).
            binary(*op, l, r).map_err(|e| {
                if e.mesg() == "Cannot divide by zero" {
                    Flow::Err(rt.at(right.span, e))
                } else {
                    Flow::Err(e)
                }
            })?
        }
    })
}

/// A node's prop value, `NoSuchProp` if the form has no such prop.
fn prop_value(rt: &Runt<'_>, node: &Node, name: &str, span: ast::Span) -> Res<Val> {
    let form = rt.model.req_form(&node.form)?;
    if form.prop(name).is_none() {
        return Err(Flow::Err(
            rt.at(span, no_such_prop(name).with("form", node.form.as_str())),
        ));
    }
    Ok(node.get(name).map_or(Val::Null, Val::from))
}

/// Synapse's `tonumber`: ints stay ints; floats, decimals and strings with a `.` are Numbers.
fn to_number(v: Val) -> Result<Val, SynErr> {
    match v {
        Val::Int(_) | Val::Num(_) => Ok(v),
        Val::Float(f) => Dec::from_f64(f)
            .map(Val::Num)
            .ok_or_else(|| bad_cast(format!("Failed to make number from {}", py::float_repr(f)))),
        Val::Bool(b) => Ok(Val::Int(i128::from(b))),
        Val::Str(ref s) if s.contains('.') => Dec::parse(s)
            .map(Val::Num)
            .ok_or_else(|| bad_cast(format!("Failed to make number from {}", py::repr_str(s)))),
        other => Ok(Val::Int(other.to_int()?)),
    }
}

/// A number as a decimal (after [`to_number`]).
fn as_dec(v: &Val) -> Dec {
    match v {
        Val::Num(d) => *d,
        Val::Int(i) => Dec::from_int(*i),
        _ => Dec::from_int(0),
    }
}

fn binary(op: BinOp, l: Val, r: Val) -> Result<Val, SynErr> {
    match op {
        BinOp::Eq => return Ok(Val::Bool(cmp_prim(&l) == cmp_prim(&r))),
        BinOp::Ne => return Ok(Val::Bool(cmp_prim(&l) != cmp_prim(&r))),
        BinOp::Prefix => return Ok(Val::Bool(l.to_str().starts_with(&r.to_str()))),
        BinOp::Regex => {
            let re = regex::RegexBuilder::new(&r.to_str())
                .case_insensitive(true)
                .build()
                .map_err(|e| rt_err(format!("Invalid regex: {e}")))?;
            return Ok(Val::Bool(re.is_match(&l.to_str())));
        }
        BinOp::And | BinOp::Or => {
            // `and`/`or` short-circuit in `compute` and never get here.
            return Ok(Val::Bool(match op {
                BinOp::And => l.truthy() && r.truthy(),
                _ => l.truthy() || r.truthy(),
            }));
        }
        _ => {}
    }
    let l = to_number(l)?;
    let r = to_number(r)?;
    match (&l, &r) {
        (Val::Int(a), Val::Int(b)) => int_binary(op, *a, *b),
        _ => dec_binary(op, as_dec(&l), as_dec(&r)),
    }
}

fn int_binary(op: BinOp, a: i128, b: i128) -> Result<Val, SynErr> {
    let overflow = || rt_err("Integer overflow in storm expression.");
    Ok(match op {
        BinOp::Add => Val::Int(a.checked_add(b).ok_or_else(overflow)?),
        BinOp::Sub => Val::Int(a.checked_sub(b).ok_or_else(overflow)?),
        BinOp::Mul => Val::Int(a.checked_mul(b).ok_or_else(overflow)?),
        BinOp::Div | BinOp::Mod => {
            if b == 0 {
                return Err(rt_err("Cannot divide by zero"));
            }
            // Python floors the quotient; the remainder takes the divisor's sign.
            let trunc = a.checked_div(b).ok_or_else(overflow)?;
            let inexact = a.checked_rem(b).ok_or_else(overflow)? != 0;
            let q = if inexact && ((a < 0) != (b < 0)) {
                trunc - 1
            } else {
                trunc
            };
            if op == BinOp::Div {
                Val::Int(q)
            } else {
                Val::Int(
                    q.checked_mul(b)
                        .and_then(|qb| a.checked_sub(qb))
                        .ok_or_else(overflow)?,
                )
            }
        }
        BinOp::Pow if b >= 0 => Val::Int(
            u32::try_from(b)
                .ok()
                .and_then(|b| a.checked_pow(b))
                .ok_or_else(overflow)?,
        ),
        BinOp::Pow => Val::Float((a as f64).powf(b as f64)),
        BinOp::Lt => Val::Bool(a < b),
        BinOp::Le => Val::Bool(a <= b),
        BinOp::Gt => Val::Bool(a > b),
        BinOp::Ge => Val::Bool(a >= b),
        BinOp::And | BinOp::Or | BinOp::Eq | BinOp::Ne | BinOp::Prefix | BinOp::Regex => {
            return Err(rt_err("Unsupported operator in this position."));
        }
    })
}

/// Number arithmetic (Python's `Decimal`; `%` truncates as Decimal's does).
fn dec_binary(op: BinOp, a: Dec, b: Dec) -> Result<Val, SynErr> {
    Ok(match op {
        BinOp::Add => Val::Num(a.add(b)?),
        BinOp::Sub => Val::Num(a.sub(b)?),
        BinOp::Mul => Val::Num(a.mul(b)?),
        BinOp::Div => Val::Num(a.div(b)?),
        BinOp::Mod => {
            if b.is_zero() {
                return Err(rt_err("Cannot divide by zero"));
            }
            let quot = a
                .div(b)?
                .trunc()
                .ok_or_else(|| rt_err("Invalid operation on a Number"))?;
            Val::Num(a.sub(b.mul(Dec::from_int(quot))?)?)
        }
        BinOp::Pow => match b.trunc() {
            Some(n) if Dec::from_int(n) == b && (0..=64).contains(&n) => {
                let mut out = Dec::from_int(1);
                for _ in 0..n {
                    out = out.mul(a)?;
                }
                Val::Num(out)
            }
            _ => Val::Float(a.to_f64().powf(b.to_f64())),
        },
        BinOp::Lt => Val::Bool(a < b),
        BinOp::Le => Val::Bool(a <= b),
        BinOp::Gt => Val::Bool(a > b),
        BinOp::Ge => Val::Bool(a >= b),
        BinOp::And | BinOp::Or | BinOp::Eq | BinOp::Ne | BinOp::Prefix | BinOp::Regex => {
            return Err(rt_err("Unsupported operator in this position."));
        }
    })
}

/// Synapse's `tocmprvalu`: what `=` compares (a node as its value).
fn cmp_prim(v: &Val) -> Val {
    match v {
        Val::Node(n) => Val::from(&n.valu),
        other => other.clone(),
    }
}

/// `base.key`.
fn deref(rt: &Runt<'_>, base: Val, key: &str) -> Res<Val> {
    match base {
        Val::Lib(path) => {
            let mut full = path.clone();
            full.push(key.to_string());
            let dotted = full.join(".");
            match dotted.as_str() {
                "null" => Ok(Val::Null),
                // Python's `regex.IGNORECASE` and `regex.MULTILINE`.
                "regex.flags" => Ok(Val::Dict(vec![
                    (Val::from("i"), Val::Int(2)),
                    (Val::from("m"), Val::Int(8)),
                ])),
                "true" => Ok(Val::Bool(true)),
                "false" => Ok(Val::Bool(false)),
                _ if LIB_NAMES.contains(&dotted.as_str())
                    || views::LIB_NAMES.contains(&dotted.as_str()) =>
                {
                    Ok(Val::Lib(full))
                }
                _ => Err(Flow::Err(no_such_name(key))),
            }
        }
        Val::Dict(pairs) => Ok(pairs
            .iter()
            .find(|(k, _)| k.to_str() == key)
            .map_or(Val::Null, |(_, v)| v.clone())),
        Val::Path(path, _) if key == "meta" => Ok(Val::Dict(
            path.meta
                .iter()
                .map(|(k, v)| (Val::from(k.as_str()), v.clone()))
                .collect(),
        )),
        Val::Path(path, _) if key == "vars" => Ok(Val::Dict(
            path.vars
                .iter()
                .map(|(k, v)| (Val::from(k.as_str()), v.clone()))
                .collect(),
        )),
        base @ Val::Path(..) if ["idens", "links", "listvars"].contains(&key) => {
            Ok(Val::Method(Box::new(base), key.to_string()))
        }
        Val::View(def) => views::deref_view(&def, key),
        Val::Layer(def) => views::deref_layer(&def, key),
        Val::Node(n) if key == "data" => Ok(Val::NodeData(n)),
        Val::Node(n) if key == "props" => Ok(Val::Dict(
            n.props
                .iter()
                .map(|(k, v)| (Val::from(k.as_str()), Val::from(v)))
                .collect(),
        )),
        Val::Tuple(items) => deref(rt, Val::List(items), key),
        Val::Int(_) | Val::Float(_) => {
            let pytype = if matches!(base, Val::Int(_)) {
                "int"
            } else {
                "float"
            };
            // Raised before Synapse's deref adds a highlight.
            Err(Flow::Err(
                SynErr::new(
                    "NoSuchType",
                    format!("Unable to convert python primitive to StormType ( {pytype} )"),
                )
                .with("python_type", pytype),
            ))
        }
        base @ (Val::Node(_) | Val::NodeData(_) | Val::Str(_) | Val::List(_) | Val::Query(_)) => {
            let known = match &base {
                Val::Node(_) => NODE_METHODS.contains(&key),
                Val::NodeData(_) => ["get", "set", "pop", "list", "load", "has"].contains(&key),
                Val::Str(_) => STR_METHODS.contains(&key),
                Val::List(_) => LIST_METHODS.contains(&key),
                _ => ["exec", "size"].contains(&key),
            };
            if !known {
                // A list's other names are indexes (`$list.0`), as Synapse's `_derefGet`.
                if let Val::List(items) = &base {
                    let mut index = Args {
                        func: "index".into(),
                        args: vec![Val::from(key)],
                        kwargs: Vec::new(),
                    };
                    return list_method(items, "index", &mut index);
                }
                return Err(Flow::Err(no_such_name(key)));
            }
            Ok(Val::Method(Box::new(base), key.to_string()))
        }
        other => {
            let _ = rt;
            Err(Flow::Err(no_such_name(key).with("type", other.type_name())))
        }
    }
}

const LIB_NAMES: &[&str] = &[
    "regex",
    "regex.search",
    "regex.matches",
    "regex.replace",
    "regex.findall",
    "regex.escape",
    "dict.keys",
    "dict.values",
    "dict.has",
    "dict.fromlist",
    "json",
    "json.save",
    "json.load",
    "print",
    "warn",
    "len",
    "cast",
    "trycast",
    "repr",
    "guid",
    "exit",
    "raise",
    "range",
    "min",
    "max",
    "fire",
    "list",
    "dict",
    "set",
    "str",
    "str.join",
    "str.concat",
    "str.format",
    "time",
    "time.now",
    "time.format",
    "time.parse",
    "vars",
    "vars.type",
    "debug",
];
const NODE_METHODS: &[&str] = &[
    "value", "form", "iden", "ndef", "pack", "repr", "tags", "isform", "globtags",
];
const STR_METHODS: &[&str] = &[
    "lower",
    "upper",
    "strip",
    "lstrip",
    "rstrip",
    "split",
    "rsplit",
    "replace",
    "startswith",
    "endswith",
    "find",
    "size",
    "join",
    "title",
    "format",
    "slice",
    "ljust",
    "rjust",
    "reverse",
];
const LIST_METHODS: &[&str] = &[
    "size", "length", "has", "index", "slice", "append", "extend", "pop", "reverse", "sort",
    "unique", "rem",
];

/// Arguments by position or keyword, checked against a signature.
pub(super) struct Args {
    func: String,
    args: Vec<Val>,
    kwargs: Vec<(String, Val)>,
}

impl Args {
    pub(super) fn get(&mut self, pos: usize, name: &str) -> Option<Val> {
        if let Some(at) = self.kwargs.iter().position(|(k, _)| k == name) {
            return Some(self.kwargs.remove(at).1);
        }
        self.args.get(pos).cloned()
    }

    pub(super) fn req(&mut self, pos: usize, name: &str) -> Res<Val> {
        self.get(pos, name).ok_or_else(|| {
            Flow::Err(rt_err(format!(
                "{}() missing 1 required positional argument: '{name}'",
                self.func
            )))
        })
    }
}

/// Call a callable value.
pub(super) fn call(
    rt: &Runt<'_>,
    func: &Val,
    args: Vec<Val>,
    kwargs: Vec<(String, Val)>,
    span: ast::Span,
) -> Res<Val> {
    match func {
        Val::Lib(path) => call_lib(rt, &path.join("."), args, kwargs),
        Val::Method(base, name) => call_method(rt, base, name, args, kwargs),
        Val::Func(index) => call_func(rt, *index, args, kwargs, span),
        other => Err(Flow::Err(rt_err(format!(
            "'{}' object is not callable: {}",
            other.type_name(),
            span.text(rt.text)
        )))),
    }
}

/// `$lib.print`'s message: a string formatted with `{name}` keyword arguments, or the repr of
/// anything else.
fn format_mesg(mesg: &Val, kwargs: &[(String, Val)]) -> String {
    match mesg {
        Val::Str(s) => {
            let mut text = s.clone();
            for (k, v) in kwargs {
                text = text.replace(&format!("{{{k}}}"), &v.repr_str());
            }
            text
        }
        other => other.repr(),
    }
}

fn call_lib(rt: &Runt<'_>, name: &str, args: Vec<Val>, kwargs: Vec<(String, Val)>) -> Res<Val> {
    let mut a = Args {
        func: format!("$lib.{name}"),
        args,
        kwargs,
    };
    if let Some(result) = views::call_lib(rt, name, &mut a) {
        return result;
    }
    match name {
        "print" | "warn" => {
            let mesg = a.req(0, "mesg")?;
            let text = format_mesg(&mesg, &a.kwargs);
            if name == "print" {
                rt.print(&text);
            } else {
                rt.warn(&text);
            }
            Ok(Val::Null)
        }
        "len" => {
            let item = a.req(0, "item")?;
            Ok(Val::Int(match &item {
                Val::Str(s) => s.chars().count() as i128,
                Val::Bytes(b) => b.len() as i128,
                Val::List(l) | Val::Tuple(l) => l.len() as i128,
                Val::Dict(d) => d.len() as i128,
                other => {
                    return Err(Flow::Err(rt_err(format!(
                        "Object {} does not have a length.",
                        other.type_name()
                    ))));
                }
            }))
        }
        "cast" | "trycast" | "repr" => {
            let typename = a.req(0, "name")?.to_str();
            let valu = a.req(1, "valu")?.to_prim();
            // Synapse's `_reqTypeByName`: a type, or the type of a prop.
            let typ = rt
                .model
                .typ(&typename)
                .or_else(|| rt.model.prop(&typename).map(|p| &p.typ))
                .ok_or_else(|| {
                    SynErr::new(
                        "NoSuchType",
                        format!("No type or prop found for name {typename}."),
                    )
                })?;
            match name {
                "cast" => Ok(cast_result(&typ.norm(rt.model, &valu)?.valu)),
                "trycast" => Ok(match typ.norm(rt.model, &valu) {
                    Ok(n) => Val::Tuple(vec![Val::Bool(true), cast_result(&n.valu)]),
                    Err(e) if e.name == "BadTypeValu" => {
                        Val::Tuple(vec![Val::Bool(false), Val::Null])
                    }
                    Err(e) => return Err(Flow::Err(e)),
                }),
                _ => Ok(Val::from(&typ.repr(rt.model, &valu)?)),
            }
        }
        "guid" => {
            if a.args.is_empty() {
                return Ok(Val::Str(crate::guid::guid()));
            }
            let items = Value::Array(a.args.iter().map(Val::to_prim).collect());
            Ok(Val::Str(crate::guid::guid_of(&items)))
        }
        "list" => {
            rt.warn("$lib.list() is deprecated. Use ([]) instead.");
            Ok(Val::List(a.args))
        }
        "dict" => Ok(Val::Dict(
            a.kwargs
                .into_iter()
                .map(|(k, v)| (Val::Str(k), v))
                .collect(),
        )),
        "range" => {
            // Synapse's argument order: `$lib.range(stop, start=None, step=None)`.
            let stop = a.req(0, "stop")?.to_int()?;
            let start = a
                .get(1, "start")
                .map(|v| v.to_int())
                .transpose()?
                .unwrap_or(0);
            let step = a
                .get(2, "step")
                .map(|v| v.to_int())
                .transpose()?
                .unwrap_or(1);
            if step == 0 {
                return Err(Flow::Err(rt_err("range() arg 3 must not be zero")));
            }
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i < stop) || (step < 0 && i > stop) {
                out.push(Val::Int(i));
                i += step;
                if out.len() > 1_000_000 {
                    return Err(Flow::Err(rt_err("range() is too long")));
                }
            }
            Ok(Val::List(out))
        }
        "min" | "max" => {
            let items = if a.args.len() == 1 {
                a.args[0].items()?
            } else {
                a.args.clone()
            };
            let mut best: Option<i128> = None;
            for it in &items {
                let v = it.to_int()?;
                best = Some(match best {
                    None => v,
                    Some(b) if name == "min" => b.min(v),
                    Some(b) => b.max(v),
                });
            }
            Ok(best.map_or(Val::Null, Val::Int))
        }
        "raise" => {
            let errname = a.req(0, "name")?.to_str();
            let mesg = a.req(1, "mesg")?.to_str();
            let mut err = SynErr {
                name: "StormRaise".into(),
                info: Vec::new(),
            };
            for (k, v) in &a.kwargs {
                err.info.push((k.clone(), Value::from(v.to_str())));
            }
            err.info.push(("mesg".into(), Value::from(mesg)));
            err.info.push(("errname".into(), Value::from(errname)));
            Err(Flow::Err(err))
        }
        "fire" => {
            let typ = a.req(0, "name")?.to_str();
            let data = Value::Map(
                a.kwargs
                    .iter()
                    .map(|(k, v)| (Value::from(k.as_str()), v.to_prim()))
                    .collect(),
            );
            rt.sink.send(
                "storm:fire",
                Value::map([("type", Value::from(typ)), ("data", data)]),
            );
            Ok(Val::Null)
        }
        "str.join" => {
            let sep = a.req(0, "sepr")?.to_str();
            let items = a.req(1, "items")?.items()?;
            Ok(Val::Str(
                items.iter().map(Val::to_str).collect::<Vec<_>>().join(&sep),
            ))
        }
        "str.concat" => Ok(Val::Str(a.args.iter().map(Val::to_str).collect())),
        "str.format" => {
            let text = a.req(0, "text")?.to_str();
            Ok(Val::Str(format_mesg(&Val::Str(text), &a.kwargs)))
        }
        "time.now" => Ok(Val::Int(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i128),
        )),
        "time.format" => {
            let valu = a.req(0, "valu")?;
            let fmt = a.req(1, "format")?.to_str();
            let timetype = rt
                .model
                .typ("time")
                .ok_or_else(|| SynErr::new("NoSuchType", "No type named time."))?;
            let prim = valu.to_prim();
            let ms = match timetype.norm(rt.model, &prim) {
                Ok(n) => n.valu.as_i64().map_or(0, i128::from),
                Err(e) => {
                    let e = crate::cortex::editor::with_valu(e, &prim);
                    return Err(Flow::Err(
                        rt_err(format!(
                            "Failed to norm a time value prior to formatting - {}",
                            crate::cortex::model::norm::py_err_str(&e)
                        ))
                        .with("valu", prim)
                        .with("format", fmt.as_str()),
                    ));
                }
            };
            Ok(Val::Str(strftime(ms, &fmt)?))
        }
        "time.parse" => {
            let text = a.req(0, "valu")?.to_str();
            let fmt = a.req(1, "format")?.to_str();
            let errok = a.get(2, "errok").is_some_and(|v| v.truthy());
            match strptime(&text, &fmt) {
                Some(ms) => Ok(Val::Int(ms)),
                None if errok => Ok(Val::Null),
                None => Err(Flow::Err(
                    SynErr::bad_arg(format!(
                        "Error during time parsing - time data {} does not match format {}",
                        py::repr_str(&text),
                        py::repr_str(&fmt)
                    ))
                    .with("valu", text.as_str())
                    .with("format", fmt.as_str()),
                )),
            }
        }
        "vars.type" => Ok(Val::Str(a.req(0, "valu")?.type_name().to_string())),
        "regex.search" | "regex.matches" | "regex.findall" => {
            let pattern = a.req(0, "pattern")?.to_str();
            let text = a.req(1, "text")?.to_str();
            let flags = a
                .get(2, "flags")
                .map(|v| v.to_int())
                .transpose()?
                .unwrap_or(0);
            let re = storm_regex(&pattern, flags)?;
            Ok(match name {
                "regex.matches" => Val::Bool(re.find(&text).is_some_and(|m| m.start() == 0)),
                "regex.search" => match re.captures(&text) {
                    None => Val::Null,
                    Some(caps) => Val::Tuple(
                        caps.iter()
                            .skip(1)
                            .map(|g| g.map_or(Val::Null, |g| Val::from(g.as_str())))
                            .collect(),
                    ),
                },
                _ => {
                    let groups = re.captures_len() - 1;
                    Val::List(
                        re.captures_iter(&text)
                            .map(|caps| match groups {
                                0 => Val::from(caps.get(0).map_or("", |m| m.as_str())),
                                1 => Val::from(caps.get(1).map_or("", |m| m.as_str())),
                                _ => Val::Tuple(
                                    (1..=groups)
                                        .map(|i| Val::from(caps.get(i).map_or("", |m| m.as_str())))
                                        .collect(),
                                ),
                            })
                            .collect(),
                    )
                }
            })
        }
        "regex.replace" => {
            let pattern = a.req(0, "pattern")?.to_str();
            let replace = a.req(1, "replace")?.to_str();
            let text = a.req(2, "text")?.to_str();
            let flags = a
                .get(3, "flags")
                .map(|v| v.to_int())
                .transpose()?
                .unwrap_or(0);
            let re = storm_regex(&pattern, flags)?;
            Ok(Val::Str(
                re.replace_all(&text, python_replacement(&replace))
                    .into_owned(),
            ))
        }
        "regex.escape" => {
            let text = a.req(0, "text")?.to_str();
            Ok(Val::Str(regex::escape(&text)))
        }
        "dict.keys" | "dict.values" | "dict.has" => {
            let valu = a.req(0, "valu")?;
            let Val::Dict(pairs) = &valu else {
                return Err(Flow::Err(bad_arg_type(name, &valu)));
            };
            Ok(match name {
                "dict.keys" => Val::List(pairs.iter().map(|(k, _)| k.clone()).collect()),
                "dict.values" => Val::List(pairs.iter().map(|(_, v)| v.clone()).collect()),
                _ => {
                    let key = a.req(1, "key")?;
                    Val::Bool(pairs.iter().any(|(k, _)| *k == key))
                }
            })
        }
        "dict.fromlist" => {
            let items = a.req(0, "valu")?.items()?;
            let mut out: Vec<(Val, Val)> = Vec::new();
            for item in items {
                match item.as_seq() {
                    Some([k, v]) => match out.iter_mut().find(|(ok, _)| ok == k) {
                        Some(slot) => slot.1 = v.clone(),
                        None => out.push((k.clone(), v.clone())),
                    },
                    _ => {
                        return Err(Flow::Err(SynErr::bad_arg(
                            "dict.fromlist() needs (key, value) pairs",
                        )));
                    }
                }
            }
            Ok(Val::Dict(out))
        }
        "json.save" => {
            let valu = a.req(0, "valu")?.to_prim();
            Ok(Val::Str(python_json(&valu)))
        }
        "json.load" => {
            let text = a.req(0, "text")?.to_str();
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                SynErr::bad_arg(format!("Text is not valid JSON: {e}")).with("text", text.as_str())
            })?;
            Ok(json_val(&json))
        }
        "exit" => Err(Flow::Err(SynErr::new(
            "StormRuntimeError",
            "$lib.exit() is not supported by this runtime",
        ))),
        other => Err(Flow::Err(rt_err(format!(
            "Library ${} cannot be called here.",
            if other.is_empty() {
                "lib".to_string()
            } else {
                format!("lib.{other}")
            }
        )))),
    }
}

/// A regex with Synapse's flag bits (2 ignore case, 8 multi-line).
fn storm_regex(pattern: &str, flags: i128) -> Res<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(flags & 2 != 0)
        .multi_line(flags & 8 != 0)
        .build()
        .map_err(|e| Flow::Err(SynErr::bad_arg(format!("Invalid regex pattern: {e}"))))
}

/// A Python replacement string (`\1`, `\g<name>`) in the regex crate's syntax (`${1}`).
fn python_replacement(repl: &str) -> String {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut num = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        num.push(*d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{num}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// Synapse's JSON text of a plain value: compact (`{"a":1,"b":[1,2]}`).
fn python_json(v: &Value) -> String {
    match v {
        Value::Nil => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => py::float_repr(*f),
        Value::Str(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(python_json).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Map(pairs) => {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        other => python_json(other),
                    };
                    format!(
                        "{}:{}",
                        serde_json::to_string(&key).unwrap_or_default(),
                        python_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        other => serde_json::to_string(&other.to_json()).unwrap_or_default(),
    }
}

/// A JSON value as storm sees `$lib.json.load()`'s result.
fn json_val(j: &serde_json::Value) -> Val {
    use serde_json::Value as J;
    match j {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i.into()),
            None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Val::Str(s.clone()),
        J::Array(items) => Val::List(items.iter().map(json_val).collect()),
        J::Object(map) => Val::Dict(
            map.iter()
                .map(|(k, v)| (Val::Str(k.clone()), json_val(v)))
                .collect(),
        ),
    }
}

fn bad_arg_type(func: &str, valu: &Val) -> SynErr {
    SynErr::bad_arg(format!(
        "$lib.{func}() expects a dict, got {}",
        valu.type_name()
    ))
}

/// `fromprim(norm, basetypes=False)`: a normalized tuple becomes a storm list.
fn cast_result(norm: &Value) -> Val {
    match Val::from(norm) {
        Val::Tuple(items) => Val::List(items),
        other => other,
    }
}

/// `strptime` in UTC for `%Y %m %d %H %M %S %f` and literal text: epoch milliseconds.
fn strptime(text: &str, fmt: &str) -> Option<i128> {
    let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut micros) =
        (1900i32, 1u8, 1u8, 0u8, 0u8, 0u8, 0u32);
    let mut rest = text;
    let mut chars = fmt.chars();
    let take_num = |rest: &mut &str, max: usize| -> Option<u32> {
        let digits: String = rest
            .chars()
            .take(max)
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            return None;
        }
        *rest = &rest[digits.len()..];
        digits.parse().ok()
    };
    while let Some(c) = chars.next() {
        if c != '%' {
            rest = rest.strip_prefix(c)?;
            continue;
        }
        match chars.next()? {
            'Y' => year = take_num(&mut rest, 4)? as i32,
            'm' => month = take_num(&mut rest, 2)? as u8,
            'd' => day = take_num(&mut rest, 2)? as u8,
            'H' => hour = take_num(&mut rest, 2)? as u8,
            'M' => minute = take_num(&mut rest, 2)? as u8,
            'S' => second = take_num(&mut rest, 2)? as u8,
            'f' => {
                let digits: String = rest
                    .chars()
                    .take(6)
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.is_empty() {
                    return None;
                }
                rest = &rest[digits.len()..];
                micros = format!("{digits:0<6}").parse().ok()?;
            }
            '%' => rest = rest.strip_prefix('%')?,
            _ => return None,
        }
    }
    if !rest.is_empty() {
        return None;
    }
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let t = time::Time::from_hms_micro(hour, minute, second, micros).ok()?;
    let dt = time::PrimitiveDateTime::new(date, t).assume_utc();
    Some(dt.unix_timestamp() as i128 * 1000 + i128::from(micros / 1000))
}

/// `strftime` of epoch milliseconds (UTC) for the common directives.
fn strftime(ms: i128, fmt: &str) -> Result<String, SynErr> {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .map_err(|e| SynErr::new("BadArg", format!("Bad time {ms}: {e}")))?;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{:04}", dt.year())),
            Some('m') => out.push_str(&format!("{:02}", u8::from(dt.month()))),
            Some('d') => out.push_str(&format!("{:02}", dt.day())),
            Some('H') => out.push_str(&format!("{:02}", dt.hour())),
            Some('M') => out.push_str(&format!("{:02}", dt.minute())),
            Some('S') => out.push_str(&format!("{:02}", dt.second())),
            Some('f') => out.push_str(&format!("{:06}", millis * 1000)),
            Some('j') => out.push_str(&format!("{:03}", dt.ordinal())),
            Some('y') => out.push_str(&format!("{:02}", dt.year() % 100)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    Ok(out)
}

fn call_method(
    rt: &Runt<'_>,
    base: &Val,
    name: &str,
    args: Vec<Val>,
    kwargs: Vec<(String, Val)>,
) -> Res<Val> {
    let mut a = Args {
        func: name.to_string(),
        args,
        kwargs,
    };
    match base {
        Val::Node(node) => node_method(rt, node, name, &mut a),
        Val::NodeData(node) => nodedata_method(rt, node, name, &mut a),
        Val::View(def) => views::view_method(rt, def, name, &mut a),
        Val::Layer(def) => views::layer_method(def, name, &mut a),
        Val::Str(s) => str_method(s, name, &mut a),
        Val::List(items) => list_method(items, name, &mut a),
        Val::Path(path, iden) => Ok(match name {
            "idens" => {
                let mut idens: Vec<Val> = path
                    .links
                    .iter()
                    .map(|(src, _)| Val::Str(src.clone()))
                    .collect();
                idens.push(Val::Str(iden.clone()));
                Val::List(idens)
            }
            "links" => Val::List(
                path.links
                    .iter()
                    .map(|(src, info)| Val::Tuple(vec![Val::Str(src.clone()), Val::from(info)]))
                    .collect(),
            ),
            _ => {
                let mut vars: Vec<(&String, &Val)> = path.vars.iter().collect();
                vars.sort_by(|a, b| a.0.cmp(b.0));
                Val::List(
                    vars.into_iter()
                        .map(|(k, v)| Val::Tuple(vec![Val::Str(k.clone()), v.clone()]))
                        .collect(),
                )
            }
        }),
        Val::Query(text) => match name {
            "size" => Ok(Val::Int(text.chars().count() as i128)),
            _ => Err(Flow::Err(rt_err(format!(
                "storm:query method {name}() is not supported by this runtime"
            )))),
        },
        other => Err(Flow::Err(
            no_such_name(name).with("type", other.type_name()),
        )),
    }
}

fn node_method(rt: &Runt<'_>, node: &Rc<Node>, name: &str, a: &mut Args) -> Res<Val> {
    Ok(match name {
        "value" => Val::from(&node.valu),
        "form" => Val::Str(node.form.clone()),
        "iden" => Val::Str(node.iden()),
        "ndef" => Val::from(&node.ndef()),
        "isform" => Val::Bool(a.req(0, "name")?.to_str() == node.form),
        "pack" => {
            let repr = a.get(0, "dorepr").is_some_and(|v| v.truthy());
            let loaded = rt.loaded.borrow();
            let data = loaded.get(&node.buid).map_or(&[][..], Vec::as_slice);
            Val::from(&node.pack(rt.model, repr, data))
        }
        "repr" => {
            let form = rt.model.req_form(&node.form)?;
            match a.get(0, "name") {
                None | Some(Val::Null) => Val::from(&form.typ.repr(rt.model, &node.valu)?),
                Some(propval) => {
                    let prop = propval.to_str();
                    let p = form.prop(&prop).ok_or_else(|| {
                        SynErr::new("NoSuchProp", format!("No property named {prop}."))
                            .with("form", node.form.as_str())
                            .with("prop", propval.to_prim())
                    })?;
                    match node.get(&prop) {
                        Some(v) => Val::from(&p.typ.repr(rt.model, v)?),
                        None => a.get(1, "defv").unwrap_or(Val::Null),
                    }
                }
            }
        }
        "tags" | "globtags" => {
            let glob = a.get(0, "glob").map(|g| g.to_str());
            Val::List(
                node.tag_names(false)
                    .into_iter()
                    .filter(|t| glob.as_ref().is_none_or(|g| exec::tag_glob_match(g, t)))
                    .map(Val::Str)
                    .collect(),
            )
        }
        other => return Err(Flow::Err(no_such_name(other))),
    })
}

fn nodedata_method(rt: &Runt<'_>, node: &Rc<Node>, name: &str, a: &mut Args) -> Res<Val> {
    match name {
        "get" => {
            let key = a.req(0, "name")?.to_str();
            Ok(rt
                .view
                .nodedata(&node.buid, &key)?
                .map_or(Val::Null, |v| Val::from(&v)))
        }
        "has" => {
            let key = a.req(0, "name")?.to_str();
            Ok(Val::Bool(rt.view.nodedata(&node.buid, &key)?.is_some()))
        }
        "set" => {
            let key = a.req(0, "name")?.to_str();
            let valu = a.req(1, "valu")?.to_prim();
            rt.editor.set_data(node, &key, &valu)?;
            // Synapse's node keeps data it set, so the packed node shows it.
            rt.keep_data(node, &key, Some(valu));
            Ok(Val::Null)
        }
        "pop" => {
            let key = a.req(0, "name")?.to_str();
            let old = rt.editor.pop_data(node, &key)?;
            rt.keep_data(node, &key, None);
            Ok(Val::from(&old))
        }
        "list" => Ok(Val::List(
            rt.view
                .nodedata_all(&node.buid)?
                .into_iter()
                .map(|(k, v)| Val::Tuple(vec![Val::Str(k), Val::from(&v)]))
                .collect(),
        )),
        "load" => {
            let key = a.req(0, "name")?.to_str();
            let valu = rt.view.nodedata(&node.buid, &key)?;
            if valu.is_some() {
                rt.keep_data(node, &key, valu);
            }
            Ok(Val::Null)
        }
        other => Err(Flow::Err(no_such_name(other))),
    }
}

fn str_method(s: &str, name: &str, a: &mut Args) -> Res<Val> {
    Ok(match name {
        "lower" => Val::Str(s.to_lowercase()),
        "upper" => Val::Str(s.to_uppercase()),
        "title" => Val::Str(
            s.split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(f) => {
                            f.to_uppercase().collect::<String>()
                                + c.as_str().to_lowercase().as_str()
                        }
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "strip" | "lstrip" | "rstrip" => {
            let chars = a.get(0, "chars").map(|c| c.to_str());
            let pred = |c: char| match &chars {
                Some(set) => set.contains(c),
                None => py::is_space(c),
            };
            Val::Str(
                match name {
                    "strip" => s.trim_matches(pred),
                    "lstrip" => s.trim_start_matches(pred),
                    _ => s.trim_end_matches(pred),
                }
                .to_string(),
            )
        }
        "split" | "rsplit" => {
            let sep = a.req(0, "text")?.to_str();
            let max = a.get(1, "maxsplit").map(|v| v.to_int()).transpose()?;
            let parts: Vec<Val> = match (name, max) {
                ("split", Some(n)) if n >= 0 => s
                    .splitn(n as usize + 1, sep.as_str())
                    .map(Val::from)
                    .collect(),
                ("rsplit", Some(n)) if n >= 0 => {
                    let mut p: Vec<Val> = s
                        .rsplitn(n as usize + 1, sep.as_str())
                        .map(Val::from)
                        .collect();
                    p.reverse();
                    p
                }
                _ => s.split(sep.as_str()).map(Val::from).collect(),
            };
            Val::List(parts)
        }
        "replace" => {
            let old = a.req(0, "oldv")?.to_str();
            let new = a.req(1, "newv")?.to_str();
            match a.get(2, "maxv") {
                Some(n) => Val::Str(s.replacen(&old, &new, n.to_int()?.max(0) as usize)),
                None => Val::Str(s.replace(&old, &new)),
            }
        }
        "startswith" => Val::Bool(s.starts_with(&a.req(0, "text")?.to_str())),
        "endswith" => Val::Bool(s.ends_with(&a.req(0, "text")?.to_str())),
        "find" => {
            let needle = a.req(0, "valu")?.to_str();
            Val::Int(
                s.find(&needle)
                    .map_or(-1, |byte| s[..byte].chars().count() as i128),
            )
        }
        "size" => Val::Int(s.chars().count() as i128),
        "reverse" => Val::Str(s.chars().rev().collect()),
        "join" => {
            let items = a.req(0, "items")?.items()?;
            Val::Str(items.iter().map(Val::to_str).collect::<Vec<_>>().join(s))
        }
        "format" => Val::Str(format_mesg(&Val::Str(s.to_string()), &a.kwargs)),
        "slice" | "ljust" | "rjust" => {
            return Err(Flow::Err(rt_err(format!(
                "str.{name}() is not supported by this runtime"
            ))));
        }
        other => return Err(Flow::Err(no_such_name(other))),
    })
}

/// The list methods that change the list.
const LIST_MUTATORS: &[&str] = &["append", "extend", "pop", "reverse", "sort", "rem"];

/// `$var.append(x)` and the other list mutators on a variable: the variable gets the changed
/// list (Synapse's lists are shared objects; here the variable is updated, and
/// [`Runt::take_mutated`] tells the operation to update the node's path too). None when the
/// call is not such a mutation.
fn mutate_list_var(
    rt: &Runt<'_>,
    func: &ast::Value,
    args: &[ast::Value],
    item: Ctx<'_>,
) -> Option<Res<Val>> {
    let ValueKind::Deref { base, key } = &func.kind else {
        return None;
    };
    let (ValueKind::Var(name), ValueKind::Str(method)) = (&base.kind, &key.kind) else {
        return None;
    };
    if !LIST_MUTATORS.contains(&method.as_str()) {
        return None;
    }
    let current = var(rt, name, base.span, item).ok()?;
    let mut items = current.as_seq()?.to_vec();
    let mut run = || -> Res<Val> {
        let args: Vec<Val> = args
            .iter()
            .map(|a| compute(rt, a, item))
            .collect::<Res<_>>()?;
        let arg = |i: usize| args.get(i).cloned();
        let retn = match method.as_str() {
            "append" => {
                items.push(arg(0).ok_or_else(|| missing(method, "valu"))?);
                Val::Null
            }
            "extend" => {
                items.extend(arg(0).ok_or_else(|| missing(method, "valu"))?.items()?);
                Val::Null
            }
            "pop" => {
                let len = items.len() as i128;
                let at = arg(0).map(|v| v.to_int()).transpose()?.unwrap_or(-1);
                let at = if at < 0 { len + at } else { at };
                if items.is_empty() || at < 0 || at >= len {
                    return Err(Flow::Err(SynErr::new(
                        "StormRuntimeError",
                        "pop index out of range",
                    )));
                }
                items.remove(at as usize)
            }
            "reverse" => {
                items.reverse();
                Val::Null
            }
            "sort" => {
                let reverse = arg(0).is_some_and(|v| v.truthy());
                let mut keyed: Vec<(Value, Val)> =
                    items.drain(..).map(|v| (v.to_prim(), v)).collect();
                let mut failed = false;
                keyed.sort_by(|a, b| {
                    super::cmpr::py_cmp(&a.0, &b.0).unwrap_or_else(|| {
                        failed = true;
                        std::cmp::Ordering::Equal
                    })
                });
                if failed {
                    return Err(Flow::Err(SynErr::new(
                        "StormRuntimeError",
                        "Unable to sort the list: its values cannot be compared.",
                    )));
                }
                if reverse {
                    keyed.reverse();
                }
                items = keyed.into_iter().map(|(_, v)| v).collect();
                Val::Null
            }
            _ => {
                let target = arg(0).ok_or_else(|| missing(method, "item"))?;
                let all = arg(1).is_some_and(|v| v.truthy());
                let before = items.len();
                if all {
                    items.retain(|v| *v != target);
                } else if let Some(at) = items.iter().position(|v| *v == target) {
                    items.remove(at);
                }
                Val::Bool(items.len() != before)
            }
        };
        rt.set_var(name, Val::List(items.clone()));
        rt.note_mutated(name);
        Ok(retn)
    };
    Some(run().map_err(|e| match e {
        Flow::Err(e) => Flow::Err(rt.at(func.span, e)),
        other => other,
    }))
}

fn missing(method: &str, arg: &str) -> Flow {
    Flow::Err(rt_err(format!(
        "{method}() missing 1 required positional argument: '{arg}'"
    )))
}

fn list_method(items: &[Val], name: &str, a: &mut Args) -> Res<Val> {
    Ok(match name {
        "size" | "length" => Val::Int(items.len() as i128),
        "has" => {
            let v = a.req(0, "valu")?;
            Val::Bool(items.contains(&v))
        }
        "index" => {
            let i = a.req(0, "valu")?.to_int()?;
            let len = items.len() as i128;
            let at = if i < 0 { len + i } else { i };
            if at < 0 || at >= len {
                return Err(Flow::Err(SynErr::new(
                    "StormRuntimeError",
                    format!("list index out of range: {i}"),
                )));
            }
            items[at as usize].clone()
        }
        "unique" => {
            let mut out: Vec<Val> = Vec::new();
            for v in items {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Val::List(out)
        }
        "slice" => {
            let len = items.len() as i128;
            let clamp = |i: i128| -> usize {
                let i = if i < 0 { len + i } else { i };
                i.clamp(0, len) as usize
            };
            let start = clamp(a.req(0, "start")?.to_int()?);
            let end = match a.get(1, "end") {
                None | Some(Val::Null) => len as usize,
                Some(v) => clamp(v.to_int()?),
            };
            Val::List(items.get(start..end.max(start)).unwrap_or(&[]).to_vec())
        }
        "append" | "extend" | "pop" | "sort" | "rem" | "reverse" => {
            return Err(Flow::Err(rt_err(format!(
                "list.{name}() changes its list: call it on a variable ($x.{name}(...))"
            ))));
        }
        other => return Err(Flow::Err(no_such_name(other))),
    })
}

/// Call a storm function defined in the query: its body runs in a new variable frame with
/// the arguments; its value is what it `return`s. Functions that yield nodes have their
/// nodes collected into a list.
fn call_func(
    rt: &Runt<'_>,
    index: usize,
    args: Vec<Val>,
    kwargs: Vec<(String, Val)>,
    span: ast::Span,
) -> Res<Val> {
    let Some(func) = rt.funcs.get(index).copied() else {
        return Err(Flow::Err(rt_err("unknown function")));
    };
    let name = &func.name.name;
    let total = func.params.len();
    // Synapse highlights argument errors on the definition's parameter list.
    let params = params_span(rt.text, func);
    let _ = span;
    if args.len() + kwargs.len() > total {
        return Err(Flow::Err(rt.at(
            params,
            rt_err(format!(
                "{name}() takes {total} arguments but {} were provided",
                args.len() + kwargs.len()
            )),
        )));
    }
    let mut frame = crate::cortex::NameMap::default();
    let mut kwargs = kwargs;
    for (i, param) in func.params.iter().enumerate() {
        let valu = if let Some(v) = args.get(i) {
            v.clone()
        } else if let Some(at) = kwargs.iter().position(|(k, _)| *k == param.name.name) {
            kwargs.remove(at).1
        } else if let Some(default) = &param.default {
            compute(rt, default, None)?
        } else {
            return Err(Flow::Err(rt.at(
                params,
                rt_err(format!(
                    "{name}() missing required argument {}",
                    param.name.name
                )),
            )));
        };
        frame.insert(param.name.name.clone(), valu);
    }
    if let Some((k, _)) = kwargs.first() {
        return Err(Flow::Err(rt.at(
            params,
            rt_err(format!("{name}() got unexpected keyword argument: {k}")),
        )));
    }
    // Parameters are runtime safe inside the body.
    for param in &func.params {
        rt.runtvars
            .borrow_mut()
            .insert(param.name.name.clone(), true);
    }
    if rt.stack_base.saturating_sub(super::stack_position()) > super::STACK_BUDGET {
        return Err(Flow::Err(
            SynErr::new(
                "RecursionLimitHit",
                "Maximum Storm pipeline depth exceeded.",
            )
            .with("query", rt.text),
        ));
    }
    super::exec::load_runtvars(rt, &func.body.query.opers);
    // An emitter's values are collected (Synapse streams them lazily).
    let emitter = exec::has_emit(&func.body.query.opers);
    if emitter {
        rt.emits.borrow_mut().push(Vec::new());
    }
    rt.frames.borrow_mut().push(frame);
    let mut nodes = Vec::new();
    let mut result = Ok(Val::Null);
    for x in run_query(rt, &func.body.query, exec::none()) {
        match x {
            Ok((node, _)) => nodes.push(Val::Node(node)),
            Err(Flow::Return(v)) => {
                result = Ok(v);
                break;
            }
            Err(Flow::Stop(_)) => break,
            Err(Flow::Break(_, s)) | Err(Flow::Continue(_, s)) => {
                result = Err(Flow::Err(
                    rt.at(
                        s,
                        rt_err(format!(
                            "function {name} - Loop control statement used outside of a loop."
                        ))
                        .with("function", name.as_str()),
                    ),
                ));
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    rt.frames.borrow_mut().pop();
    let emitted = if emitter {
        rt.emits.borrow_mut().pop()
    } else {
        None
    };
    let retn = result?;
    if let Some(emitted) = emitted {
        return Ok(Val::List(emitted));
    }
    if !nodes.is_empty() && matches!(retn, Val::Null) {
        return Ok(Val::List(nodes));
    }
    Ok(retn)
}

/// The span of a function definition's `(params)`.
fn params_span(text: &str, func: &ast::Function) -> ast::Span {
    let from = func.name.span.end;
    let Some(open) = text[from..].find('(').map(|i| from + i) else {
        return func.name.span;
    };
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return ast::Span::new(open, open + i + 1);
                }
            }
            _ => {}
        }
    }
    func.name.span
}

/// Run a query object's text and collect its nodes (iterating `${ ... }`).
pub(super) fn query_nodes(rt: &Runt<'_>, text: &str) -> Res<Vec<Val>> {
    let query = crate::cortex::storm::parse_query(text)?;
    let mut out = Vec::new();
    for item in exec::run_sub(rt, &query, None) {
        out.push(Val::Node(item?.0));
    }
    Ok(out)
}

/// Assign `target.key = value`.
pub(super) fn set_item(
    rt: &Runt<'_>,
    target: &ast::Value,
    key: &ast::Value,
    value: &ast::Value,
    item: Option<&mut Item>,
) -> Res<()> {
    let ctx = item.as_deref().cloned();
    let key_text = compute(rt, key, ctx.as_ref())?.to_str();
    let valu = compute(rt, value, ctx.as_ref())?;
    // `$path.meta.x = v` and `$path.vars.x = v` change the node's path.
    if let ValueKind::Deref { base, key: part } = &target.kind
        && let (ValueKind::Var(var), ValueKind::Str(part)) = (&base.kind, &part.kind)
        && var == "path"
        && matches!(part.as_str(), "meta" | "vars")
    {
        let Some(item) = item else {
            return Err(Flow::Err(
                rt.at(
                    target.span,
                    SynErr::new(
                        "NoSuchVar",
                        "Non-runtsafe variable used before assignment: path",
                    )
                    .with("name", "path")
                    .with("runtsafe", false),
                ),
            ));
        };
        if part == "vars" {
            rt.set_var(&key_text, valu.clone());
            item.1.vars.insert(key_text, valu);
        } else {
            match item.1.meta.iter_mut().find(|(k, _)| *k == key_text) {
                Some(slot) => slot.1 = valu,
                None => item.1.meta.push((key_text, valu)),
            }
        }
        return Ok(());
    }
    let ValueKind::Var(name) = &target.kind else {
        return Err(Flow::Err(rt.at(
            target.span,
            rt_err("Only variables may have items set in this runtime."),
        )));
    };
    let mut base = var(rt, name, target.span, ctx.as_ref())?;
    match &mut base {
        Val::Dict(pairs) => match pairs.iter_mut().find(|(k, _)| k.to_str() == key_text) {
            Some(slot) => slot.1 = valu,
            None => pairs.push((Val::Str(key_text), valu)),
        },
        other => {
            let pytype = match other {
                Val::Int(_) => "int",
                Val::Float(_) => "float",
                Val::Str(_) => "str",
                Val::Null => "NoneType",
                Val::Bool(_) => "bool",
                _ => {
                    return Err(Flow::Err(rt.at(
                        target.span,
                        rt_err(format!(
                            "{} does not support item assignment",
                            other.type_name()
                        )),
                    )));
                }
            };
            return Err(Flow::Err(SynErr::new(
                "AttributeError",
                format!("'{pytype}' object has no attribute 'setitem'"),
            )));
        }
    }
    if let Some(item) = item
        && item.1.vars.contains_key(name)
    {
        item.1.vars.insert(name.clone(), base.clone());
    }
    rt.set_var(name, base);
    Ok(())
}

/// The nodes a value stands for (Synapse's `yieldFromValu`): nodes, idens, lists of them.
pub(super) fn nodes_from(rt: &Runt<'_>, valu: &Val, span: ast::Span) -> Res<Vec<Rc<Node>>> {
    let mut out = Vec::new();
    match valu {
        Val::Null => {}
        Val::Node(n) => out.push(n.clone()),
        Val::Str(iden) => {
            let buid = hex::decode(iden)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Flow::Err(rt.at(
                        span,
                        SynErr::new(
                            "BadLiftValu",
                            format!(
                                "Yield string must be iden in hexdecimal. Got: {}",
                                py::repr_str(iden)
                            ),
                        ),
                    ))
                })?;
            if let Some(n) = rt.view.node(&buid)? {
                out.push(Rc::new(n));
            }
        }
        Val::Bytes(b) => {
            if let Ok(buid) = <[u8; 32]>::try_from(b.as_slice())
                && let Some(n) = rt.view.node(&buid)?
            {
                out.push(Rc::new(n));
            }
        }
        Val::List(items) | Val::Tuple(items) => {
            for i in items {
                out.extend(nodes_from(rt, i, span)?);
            }
        }
        other => {
            return Err(Flow::Err(rt.at(
                span,
                rt_err(format!("Cannot yield nodes from a {}", other.type_name())),
            )));
        }
    }
    Ok(out)
}
