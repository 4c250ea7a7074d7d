//! From the concrete syntax tree to the typed [`ast`](super::ast), with the checks Synapse makes
//! after parsing (duplicate parameters and keyword arguments, switch cases, JSON literals,
//! string escapes).

use super::ast::*;
use super::lexer::{Term, Token};
use super::parser::{Cst, Kid, semantic_error};
use super::strings::{format_unescape, python_int, string_error, trim_text, unescape};
use crate::error::SynErr;

/// How deeply constructs may nest (subqueries in subqueries, expressions in expressions, ...).
pub const MAX_NESTING: usize = 64;

type R<T> = Result<T, SynErr>;

/// Converts one parsed text.
pub struct Converter<'a> {
    text: &'a str,
    cst: &'a Cst,
    depth: usize,
}

/// A cursor over a node's children, with `_`-prefixed (inlined) rules spliced in.
struct Kids {
    kids: Vec<Kid>,
    i: usize,
}

impl Kids {
    fn peek(&self) -> Option<Kid> {
        self.kids.get(self.i).copied()
    }

    fn peek_term(&self) -> Option<Term> {
        match self.peek()? {
            Kid::Tok(t) => Some(t.term),
            Kid::Node(_) => None,
        }
    }

    fn next(&mut self) -> Option<Kid> {
        let k = self.peek();
        self.i += 1;
        k
    }

    fn eat(&mut self, terms: &[Term]) -> Option<Token> {
        match self.peek()? {
            Kid::Tok(t) if terms.contains(&t.term) => {
                self.i += 1;
                Some(t)
            }
            _ => None,
        }
    }

    fn done(&self) -> bool {
        self.i >= self.kids.len()
    }
}

const SET_OPERS: [Term; 7] = [
    Term::EqSpace,
    Term::EqNoSpace,
    Term::ModSet,
    Term::TrySet,
    Term::TryModSet,
    Term::ModSetMulti,
    Term::TryModSetMulti,
];

const CMPRS: [Term; 7] = [
    Term::ExprTimes,
    Term::ByName,
    Term::Cmpr,
    Term::CmprOther,
    Term::EqSpace,
    Term::EqNoSpace,
    Term::TrySet,
];

impl<'a> Converter<'a> {
    /// A converter for `cst`, parsed from `text`.
    pub fn new(text: &'a str, cst: &'a Cst) -> Converter<'a> {
        Converter {
            text,
            cst,
            depth: 0,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Entry points

    /// The root as a query.
    pub fn query_root(&mut self) -> R<Query> {
        let root = self.cst.root();
        self.query(root, 0)
    }

    /// The root as a lookup (`lookup`/`search` start).
    pub fn lookup_root(&mut self) -> R<Lookup> {
        let mut k = self.kids(self.cst.root());
        let mut terms = Vec::new();
        let mut query = None;
        while let Some(kid) = k.next() {
            match kid {
                Kid::Node(n) if self.name(n) == "looklist" => {
                    for word in self.kids(n).kids {
                        let Kid::Tok(t) = word else { continue };
                        let raw = self.tok(t);
                        let name = match t.term {
                            Term::DoubleQuoted => self.dq(t)?,
                            Term::SingleQuoted => raw[1..raw.len() - 1].to_string(),
                            _ => raw.to_string(),
                        };
                        terms.push(Ident {
                            span: span(t),
                            name,
                        });
                    }
                }
                Kid::Node(n) => query = Some(self.query(n, t_end(&terms))?),
                Kid::Tok(_) => {}
            }
        }
        Ok(Lookup { terms, query })
    }

    /// The root as a single value (`evalvalu` start).
    pub fn value_root(&mut self) -> R<Value> {
        let mut k = self.kids(self.cst.root());
        self.value(&mut k)
    }

    // -----------------------------------------------------------------------------------------
    // Tree access

    fn tok(&self, t: Token) -> &'a str {
        &self.text[t.start..t.end]
    }

    fn name(&self, n: u32) -> &'static str {
        self.cst.node(n).name
    }

    fn node_span(&self, n: u32, fallback: usize) -> Span {
        self.cst
            .node(n)
            .span
            .unwrap_or(Span::new(fallback, fallback))
    }

    fn kid_span(&self, k: Kid) -> Span {
        match k {
            Kid::Tok(t) => span(t),
            Kid::Node(n) => self.node_span(n, 0),
        }
    }

    /// The children of `n`, with inlined rules (`_name`, repetition helpers) spliced in. Edit
    /// blocks stay nodes so each keeps its edits together.
    fn kids(&self, n: u32) -> Kids {
        let mut out = Vec::new();
        let mut stack: Vec<Kid> = self.cst.node(n).kids.iter().rev().copied().collect();
        while let Some(k) = stack.pop() {
            match k {
                Kid::Node(c) if self.name(c).starts_with('_') && self.name(c) != "_editblock" => {
                    stack.extend(self.cst.node(c).kids.iter().rev().copied());
                }
                _ => out.push(k),
            }
        }
        Kids { kids: out, i: 0 }
    }

    fn nest<T>(&mut self, at: Span, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if self.depth >= MAX_NESTING {
            return Err(semantic_error(
                self.text,
                at,
                format!("Storm query nests too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn unexpected(&self, k: Option<Kid>, what: &str) -> SynErr {
        let at = k.map_or(Span::new(self.text.len(), self.text.len()), |k| {
            self.kid_span(k)
        });
        semantic_error(
            self.text,
            at,
            format!("internal parser error: unexpected {what}"),
        )
    }

    fn ident(&self, t: Token) -> Ident {
        Ident {
            span: span(t),
            name: self.tok(t).to_string(),
        }
    }

    /// A `VARTOKN`-style name: a word, or a quoted string.
    fn var_name(&self, t: Token) -> R<Ident> {
        let raw = self.tok(t);
        let name = if raw.starts_with('\'') {
            raw[1..raw.len() - 1].to_string()
        } else if raw.starts_with('"') {
            self.dq(t)?
        } else {
            raw.to_string()
        };
        Ok(Ident {
            span: span(t),
            name,
        })
    }

    fn dq(&self, t: Token) -> R<String> {
        let raw = self.tok(t);
        unescape(&raw[1..raw.len() - 1]).map_err(|why| string_error(self.text, raw, &why))
    }

    // -----------------------------------------------------------------------------------------
    // Queries and operations

    fn query(&mut self, n: u32, fallback: usize) -> R<Query> {
        let qspan = self.node_span(n, fallback);
        self.nest(qspan, |c| {
            let mut k = c.kids(n);
            let mut opers = Vec::new();
            while let Some(kid) = k.next() {
                match kid {
                    Kid::Tok(t) if t.term == Term::VBar => {}
                    Kid::Tok(t) if t.term == Term::Break => opers.push(Oper {
                        span: span(t),
                        kind: OperKind::Break,
                    }),
                    Kid::Tok(t) if t.term == Term::Continue => opers.push(Oper {
                        span: span(t),
                        kind: OperKind::Continue,
                    }),
                    Kid::Node(o) => opers.push(c.oper(o)?),
                    other => return Err(c.unexpected(Some(other), "token in a query")),
                }
            }
            Ok(Query { span: qspan, opers })
        })
    }

    /// `{ query }` from a cursor positioned at the `{`.
    fn braces(&mut self, k: &mut Kids) -> R<SubQuery> {
        let open = k
            .eat(&[Term::LBrace, Term::EmbedQueryStart])
            .ok_or_else(|| self.unexpected(k.peek(), "subquery"))?;
        let inner = match k.next() {
            Some(Kid::Node(q)) => q,
            other => return Err(self.unexpected(other, "subquery body")),
        };
        let close = k
            .eat(&[Term::RBrace])
            .ok_or_else(|| self.unexpected(k.peek(), "subquery end"))?;
        let query = self.query(inner, open.end)?;
        Ok(SubQuery {
            span: Span::new(open.start, close.end),
            query,
        })
    }

    /// A `baresubquery`-like node (`{ query }`).
    fn subquery_node(&mut self, n: u32) -> R<SubQuery> {
        let mut k = self.kids(n);
        self.braces(&mut k)
    }

    fn subquery_kid(&mut self, k: &mut Kids) -> R<SubQuery> {
        match k.next() {
            Some(Kid::Node(n)) => self.subquery_node(n),
            other => Err(self.unexpected(other, "subquery")),
        }
    }

    fn oper(&mut self, n: u32) -> R<Oper> {
        let ospan = self.node_span(n, 0);
        let kind = self.nest(ospan, |c| c.oper_kind(n))?;
        Ok(Oper { span: ospan, kind })
    }

    fn oper_kind(&mut self, n: u32) -> R<OperKind> {
        let name = self.name(n);
        let mut k = self.kids(n);
        let pivot = |kind, join| Ok(OperKind::Pivot(Pivot { kind, join }));
        match name {
            "_editblock" => {
                let mut edits = Vec::new();
                while let Some(kid) = k.next() {
                    if let Kid::Node(e) = kid {
                        edits.push(self.edit(e)?);
                    }
                }
                Ok(OperKind::Edits(edits))
            }
            "stormcmd" => self.command(&mut k),
            "initblock" | "emptyblock" | "finiblock" => {
                k.next();
                let body = self.braces(&mut k)?;
                Ok(match name {
                    "initblock" => OperKind::Init(body),
                    "emptyblock" => OperKind::Empty(body),
                    _ => OperKind::Fini(body),
                })
            }
            "trycatch" => {
                k.next();
                let body = self.braces(&mut k)?;
                let mut catches = Vec::new();
                while let Some(Kid::Node(cb)) = k.next() {
                    catches.push(self.catch(cb)?);
                }
                Ok(OperKind::Try { body, catches })
            }
            "subquery" => {
                let yields = k.eat(&[Term::Yield]).is_some();
                let query = self.subquery_kid(&mut k)?;
                Ok(OperKind::SubQuery { query, yields })
            }
            "formpivot_pivottotags" | "formpivot_jointags" => {
                k.next();
                let tag = match k.next() {
                    Some(Kid::Node(t)) => Some(self.tag_name(t)?),
                    _ => None,
                };
                pivot(PivotKind::Tags(tag), name == "formpivot_jointags")
            }
            "formpivot_pivotout" | "formjoin_pivotout" => {
                pivot(PivotKind::Out, name == "formjoin_pivotout")
            }
            "formpivot_" | "formjoin_formpivot" => {
                k.next();
                let target = self.value(&mut k)?;
                pivot(PivotKind::To(target), name == "formjoin_formpivot")
            }
            "formpivotin_" | "formjoinin_pivotin" => {
                pivot(PivotKind::In, name == "formjoinin_pivotin")
            }
            "formpivotin_pivotinfrom" | "formjoinin_pivotinfrom" => {
                k.next();
                let form = match k.next() {
                    Some(Kid::Tok(t)) => self.ident(t),
                    other => return Err(self.unexpected(other, "pivot form")),
                };
                pivot(PivotKind::InFrom(form), name == "formjoinin_pivotinfrom")
            }
            "operrelprop_pivot" | "operrelprop_join" => {
                let prop = self.rel_prop_kid(&mut k)?;
                k.next();
                let join = name == "operrelprop_join";
                if k.eat(&[Term::ExprTimes]).is_some() {
                    return pivot(PivotKind::PropOut(prop), join);
                }
                let target = self.value(&mut k)?;
                pivot(PivotKind::Prop { prop, target }, join)
            }
            "rawpivot" => {
                k.next();
                pivot(PivotKind::Raw(self.braces(&mut k)?), false)
            }
            "n1walk" | "n1join" | "n2walk" | "n2join" => {
                k.next();
                let verb = self.value(&mut k)?;
                k.next();
                let target = if k.eat(&[Term::Wildcard]).is_some() {
                    WalkTarget::Any
                } else {
                    WalkTarget::Forms(self.value(&mut k)?)
                };
                let cmp = self.opt_comparison(&mut k)?;
                let dir = if name.starts_with("n1") {
                    EdgeDir::Out
                } else {
                    EdgeDir::In
                };
                let kind = PivotKind::Walk {
                    dir,
                    verb,
                    target,
                    cmp,
                };
                pivot(kind, name.ends_with("join"))
            }
            "n1walknpivo" | "n2walknpivo" | "n1walknjoin" | "n2walknjoin" => {
                let dir = if name.starts_with("n1") {
                    EdgeDir::Out
                } else {
                    EdgeDir::In
                };
                pivot(PivotKind::WalkAll(dir), name.ends_with("join"))
            }
            "opervarlist" => {
                let names = match k.next() {
                    Some(Kid::Node(v)) => self.var_list(v)?,
                    other => return Err(self.unexpected(other, "variable list")),
                };
                k.next();
                Ok(OperKind::SetVars {
                    names,
                    value: self.value(&mut k)?,
                })
            }
            "setitem" => {
                let target = self.value(&mut k)?;
                k.next();
                let key = self.value(&mut k)?;
                k.next();
                let value = self.value(&mut k)?;
                Ok(OperKind::SetItem { target, key, value })
            }
            "setvar" => {
                k.next();
                let name = match k.next() {
                    Some(Kid::Tok(t)) => self.var_name(t)?,
                    other => return Err(self.unexpected(other, "variable name")),
                };
                k.next();
                Ok(OperKind::SetVar {
                    name,
                    value: self.value(&mut k)?,
                })
            }
            "vareval" => Ok(OperKind::Eval(self.value(&mut k)?)),
            "filtoper" | "filtopermust" | "filtopernot" => {
                let sign = k.next();
                let keep = matches!(sign, Some(Kid::Tok(t)) if matches!(t.term, Term::ExprPlus | Term::EdgeAddN1Init));
                let cond = self.cond(&mut k)?;
                Ok(OperKind::Filter { keep, cond })
            }
            "forloop" => {
                k.next();
                let (vars, unpack) = if k.eat(&[Term::Dollar]).is_some() {
                    match k.next() {
                        Some(Kid::Tok(t)) => (vec![self.var_name(t)?], false),
                        other => return Err(self.unexpected(other, "loop variable")),
                    }
                } else {
                    match k.next() {
                        Some(Kid::Node(v)) => (self.var_list(v)?, true),
                        other => return Err(self.unexpected(other, "loop variables")),
                    }
                };
                k.next();
                let iter = self.value(&mut k)?;
                let body = self.subquery_kid(&mut k)?;
                Ok(OperKind::For {
                    vars,
                    unpack,
                    iter,
                    body,
                })
            }
            "whileloop" => {
                k.next();
                let cond = self.value(&mut k)?;
                let body = self.subquery_kid(&mut k)?;
                Ok(OperKind::While { cond, body })
            }
            "switchcase" => self.switch(n, &mut k),
            "return" => {
                k.next();
                k.next();
                let value = if k.peek_term() == Some(Term::RPar) {
                    None
                } else {
                    Some(self.value(&mut k)?)
                };
                Ok(OperKind::Return(value))
            }
            "emit" => {
                k.next();
                Ok(OperKind::Emit(self.value(&mut k)?))
            }
            "stop" => Ok(OperKind::Stop),
            "ifstmt" => {
                let mut branches = Vec::new();
                let mut otherwise = None;
                while let Some(kid) = k.next() {
                    match kid {
                        Kid::Node(c) if self.name(c) == "ifclause" => {
                            let mut ck = self.kids(c);
                            let cond = self.value(&mut ck)?;
                            branches.push((cond, self.subquery_kid(&mut ck)?));
                        }
                        Kid::Node(c) => otherwise = Some(self.subquery_node(c)?),
                        Kid::Tok(_) => {}
                    }
                }
                Ok(OperKind::If {
                    branches,
                    otherwise,
                })
            }
            "yieldvalu" => {
                k.next();
                Ok(OperKind::Yield(self.value(&mut k)?))
            }
            "stormfunc" => self.function(&mut k),
            _ => Ok(OperKind::Lift(self.lift(n)?)),
        }
    }

    fn catch(&mut self, n: u32) -> R<Catch> {
        let mut k = self.kids(n);
        k.next();
        let names = self.value(&mut k)?;
        k.next();
        let var = match k.next() {
            Some(Kid::Tok(t)) => self.var_name(t)?,
            other => return Err(self.unexpected(other, "catch variable")),
        };
        let body = self.braces(&mut k)?;
        Ok(Catch {
            span: self.node_span(n, 0),
            names,
            var,
            body,
        })
    }

    fn var_list(&mut self, n: u32) -> R<Vec<Ident>> {
        let mut k = self.kids(n);
        let mut names = Vec::new();
        while let Some(kid) = k.next() {
            if let Kid::Tok(t) = kid
                && t.term == Term::VarTokn
            {
                names.push(self.var_name(t)?);
            }
        }
        Ok(names)
    }

    fn command(&mut self, k: &mut Kids) -> R<OperKind> {
        let name = match k.next() {
            Some(Kid::Tok(t)) => self.ident(t),
            other => return Err(self.unexpected(other, "command name")),
        };
        let mut args = Vec::new();
        if let Some(Kid::Node(a)) = k.next() {
            let mut ak = self.kids(a);
            while let Some(kid) = ak.peek() {
                match kid {
                    Kid::Tok(t) if t.term == Term::CmdOpt => {
                        ak.next();
                        args.push(CmdArg::Opt(self.ident(t)));
                    }
                    Kid::Tok(t) if t.term == Term::EqNoSpace => {
                        ak.next();
                    }
                    Kid::Node(q) if self.name(q) == "argvquery" => {
                        ak.next();
                        args.push(CmdArg::Query(self.subquery_node(q)?));
                    }
                    Kid::Node(w) if self.name(w) == "wordtokn" => {
                        ak.next();
                        args.push(CmdArg::Value(self.word(w)));
                    }
                    _ => args.push(CmdArg::Value(self.value(&mut ak)?)),
                }
            }
        }
        Ok(OperKind::Command(Command { name, args }))
    }

    /// An unquoted command argument: the text of its tokens, joined.
    fn word(&self, n: u32) -> Value {
        let mut toks = Vec::new();
        let mut stack = vec![Kid::Node(n)];
        while let Some(k) = stack.pop() {
            match k {
                Kid::Tok(t) => toks.push(t),
                Kid::Node(c) => stack.extend(self.cst.node(c).kids.iter().rev().copied()),
            }
        }
        let name = toks.iter().map(|t| self.tok(*t)).collect::<String>();
        Value {
            span: self.node_span(n, 0),
            kind: ValueKind::Str(name),
        }
    }

    fn function(&mut self, k: &mut Kids) -> R<OperKind> {
        k.next();
        let name = match k.next() {
            Some(Kid::Tok(t)) => self.var_name(t)?,
            other => return Err(self.unexpected(other, "function name")),
        };
        let Some(Kid::Node(args)) = k.next() else {
            return Err(self.unexpected(k.peek(), "function parameters"));
        };
        let args_span = self.node_span(args, 0);
        let mut ak = self.kids(args);
        let mut params: Vec<Param> = Vec::new();
        let mut keyword_seen = false;
        while let Some(kid) = ak.next() {
            let Kid::Tok(t) = kid else { continue };
            if t.term != Term::VarTokn {
                continue;
            }
            let pname = self.var_name(t)?;
            if params.iter().any(|p| p.name.name == pname.name) {
                let mesg = format!(
                    "Duplicate parameter \"{}\" in function definition",
                    pname.name
                );
                return Err(semantic_error(self.text, pname.span, mesg));
            }
            let default = if ak.eat(&[Term::EqNoSpace]).is_some() {
                keyword_seen = true;
                Some(self.value(&mut ak)?)
            } else {
                if keyword_seen {
                    let mesg = format!(
                        "Positional parameter \"{}\" follows keyword parameter in definition",
                        pname.name
                    );
                    return Err(semantic_error(self.text, args_span, mesg));
                }
                None
            };
            params.push(Param {
                name: pname,
                default,
            });
        }
        let body = self.braces(k)?;
        Ok(OperKind::Function(Function { name, params, body }))
    }

    fn switch(&mut self, n: u32, k: &mut Kids) -> R<OperKind> {
        k.next();
        let subject = self.value(k)?;
        let mut cases: Vec<Case> = Vec::new();
        let whole = self.node_span(n, 0);
        let mut defaults = 0;
        while let Some(kid) = k.next() {
            let Kid::Node(c) = kid else { continue };
            let mut ck = self.kids(c);
            let mut values = Vec::new();
            while let Some(Kid::Tok(t)) = ck.peek() {
                ck.next();
                match t.term {
                    Term::DefaultCase => defaults += 1,
                    Term::DoubleQuoted => values.push(Ident {
                        span: span(t),
                        name: self.dq(t)?,
                    }),
                    Term::SingleQuoted => {
                        let raw = self.tok(t);
                        values.push(Ident {
                            span: span(t),
                            name: raw[1..raw.len() - 1].to_string(),
                        })
                    }
                    Term::CaseBare | Term::MCaseBare => values.push(self.ident(t)),
                    _ => {}
                }
            }
            if defaults > 1 {
                let mesg = format!(
                    "Switch statements cannot have more than one default case. Found {defaults}."
                );
                return Err(semantic_error(self.text, whole, mesg));
            }
            for v in &values {
                if cases
                    .iter()
                    .flat_map(|c| &c.values)
                    .any(|o| o.name == v.name)
                    || values.iter().filter(|o| o.name == v.name).count() > 1
                {
                    let mesg = format!(
                        "Switch statements cannot have duplicate switch cases: {}",
                        trim_text(&v.name)
                    );
                    return Err(semantic_error(self.text, whole, mesg));
                }
            }
            let body = self.subquery_kid(&mut ck)?;
            cases.push(Case {
                span: self.node_span(c, 0),
                values,
                body,
            });
        }
        Ok(OperKind::Switch { subject, cases })
    }

    // -----------------------------------------------------------------------------------------
    // Lifts

    fn lift(&mut self, n: u32) -> R<Lift> {
        let name = self.name(n);
        if name == "liftreverse" {
            let inner = self
                .kids(n)
                .kids
                .into_iter()
                .find_map(|k| match k {
                    Kid::Node(i) => Some(i),
                    Kid::Tok(_) => None,
                })
                .ok_or_else(|| self.unexpected(None, "reversed lift"))?;
            let mut lift = self.lift(inner)?;
            lift.reverse = true;
            return Ok(lift);
        }
        let mut k = self.kids(n);
        let kind = match name {
            "liftprop" => LiftKind::Prop {
                prop: self.form_name(&mut k)?,
                cmp: None,
            },
            "liftpropby" => {
                let prop = self.form_name(&mut k)?;
                LiftKind::Prop {
                    prop,
                    cmp: Some(self.comparison(&mut k)?),
                }
            }
            "liftformtag" => {
                let form = self.form_name(&mut k)?;
                let tag = self.tag_kid(&mut k)?;
                LiftKind::FormTag {
                    form,
                    tag,
                    cmp: self.opt_comparison(&mut k)?,
                }
            }
            "liftbyarray" => {
                let prop = self.form_name(&mut k)?;
                k.next();
                let cmp = self.comparison(&mut k)?;
                LiftKind::Array { prop, cmp }
            }
            "lifttagtag" => {
                k.next();
                let tag = self.tag_kid(&mut k)?;
                LiftKind::TagTag {
                    tag,
                    cmp: self.opt_comparison(&mut k)?,
                }
            }
            "liftbytag" => {
                let tag = self.tag_kid(&mut k)?;
                LiftKind::Tag {
                    tag,
                    cmp: self.opt_comparison(&mut k)?,
                }
            }
            "liftbytagprop" | "liftbyformtagprop" => {
                let Some(Kid::Node(tp)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "tag property"));
                };
                let mut tk = self.kids(tp);
                let form = if name == "liftbyformtagprop" {
                    Some(self.form_name(&mut tk)?)
                } else {
                    None
                };
                let (tag, prop) = self.tag_prop(&mut tk)?;
                LiftKind::TagProp {
                    form,
                    tag,
                    prop,
                    cmp: self.opt_comparison(&mut k)?,
                }
            }
            other => return Err(self.unexpected(Some(Kid::Node(n)), other)),
        };
        Ok(Lift {
            kind,
            reverse: false,
        })
    }

    /// A full property or form name (`PROPS`, `UNIVNAME`, ...) or `*$var`.
    fn form_name(&mut self, k: &mut Kids) -> R<Name> {
        match k.next() {
            Some(Kid::Tok(t)) => Ok(Name::Lit(self.ident(t))),
            Some(Kid::Node(d)) => {
                let mut dk = self.kids(d);
                if self.name(d) == "derefprops" {
                    dk.next();
                    Ok(Name::Expr(Box::new(self.value(&mut dk)?)))
                } else {
                    // formname: PROPS | derefprops
                    self.form_name(&mut dk)
                }
            }
            None => Err(self.unexpected(None, "form name")),
        }
    }

    /// `tagname ":" prop` (a tag property).
    fn tag_prop(&mut self, k: &mut Kids) -> R<(TagName, Name)> {
        let tag = self.tag_kid(k)?;
        k.next();
        let prop = self.prop_name(k)?;
        Ok((tag, prop))
    }

    /// `BASEPROP` or `$var`.
    fn prop_name(&mut self, k: &mut Kids) -> R<Name> {
        if let Some(t) = k.eat(&[Term::BaseProp]) {
            return Ok(Name::Lit(self.ident(t)));
        }
        Ok(Name::Expr(Box::new(self.value(k)?)))
    }

    fn tag_kid(&mut self, k: &mut Kids) -> R<TagName> {
        match k.next() {
            Some(Kid::Node(t)) => self.tag_name(t),
            other => Err(self.unexpected(other, "tag")),
        }
    }

    fn tag_name(&mut self, n: u32) -> R<TagName> {
        let tspan = self.node_span(n, 0);
        let mut k = self.kids(n);
        k.next();
        if k.peek_term() == Some(Term::Dollar) {
            let value = self.value(&mut k)?;
            return Ok(TagName {
                span: tspan,
                kind: TagNameKind::Expr(Box::new(value)),
            });
        }
        let mut parts = Vec::new();
        while let Some(kid) = k.next() {
            match kid {
                Kid::Tok(t)
                    if matches!(t.term, Term::TagSeg | Term::ExprTagSeg | Term::WildTagSeg) =>
                {
                    parts.push(TagPart::Lit(self.ident(t)))
                }
                Kid::Node(v) => {
                    let var = self
                        .kids(v)
                        .kids
                        .first()
                        .copied()
                        .and_then(|k| match k {
                            Kid::Tok(t) => Some(t),
                            Kid::Node(_) => None,
                        })
                        .ok_or_else(|| self.unexpected(Some(Kid::Node(v)), "tag variable"))?;
                    parts.push(TagPart::Var(self.var_name(var)?));
                }
                Kid::Tok(_) => {}
            }
        }
        Ok(TagName {
            span: tspan,
            kind: TagNameKind::Parts(parts),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Comparisons and conditions

    fn opt_comparison(&mut self, k: &mut Kids) -> R<Option<Comparison>> {
        if k.done() {
            return Ok(None);
        }
        match k.peek_term() {
            Some(t) if CMPRS.contains(&t) || t == Term::SetTagOper => Ok(Some(self.comparison(k)?)),
            _ => Ok(None),
        }
    }

    fn comparison(&mut self, k: &mut Kids) -> R<Comparison> {
        let first = k
            .eat(&[
                Term::ExprTimes,
                Term::ByName,
                Term::Cmpr,
                Term::CmprOther,
                Term::EqSpace,
                Term::EqNoSpace,
                Term::TrySet,
                Term::SetTagOper,
            ])
            .ok_or_else(|| self.unexpected(k.peek(), "comparator"))?;
        let cmpr = if first.term == Term::ExprTimes {
            let by = k
                .eat(&[Term::ByName])
                .ok_or_else(|| self.unexpected(k.peek(), "comparator name"))?;
            Cmpr {
                span: Span::new(first.start, by.end),
                name: self.tok(by).to_string(),
            }
        } else {
            let name = match first.term {
                Term::EqSpace | Term::EqNoSpace => "=".to_string(),
                _ => self.tok(first).to_string(),
            };
            Cmpr {
                span: span(first),
                name,
            }
        };
        Ok(Comparison {
            cmpr,
            value: self.value(k)?,
        })
    }

    /// A condition from the cursor (after a filter's sign, or inside parentheses).
    fn cond(&mut self, k: &mut Kids) -> R<Cond> {
        match k.peek() {
            Some(Kid::Tok(t))
                if matches!(t.term, Term::LPar | Term::EdgeAddN1Init | Term::EdgeN1Init) =>
            {
                k.next();
                // A parenthesized condition: what is inside, up to the closing `)`.
                let inner = self.cond(k)?;
                k.eat(&[Term::RPar]);
                Ok(inner)
            }
            Some(Kid::Tok(t)) if t.term == Term::Dollar => {
                let value = self.value(k)?;
                Ok(Cond {
                    span: value.span,
                    kind: CondKind::Value(value),
                })
            }
            Some(Kid::Node(n)) => {
                k.next();
                let cspan = self.node_span(n, 0);
                let kind = self.nest(cspan, |c| c.cond_kind(n))?;
                Ok(Cond { span: cspan, kind })
            }
            other => Err(self.unexpected(other, "condition")),
        }
    }

    fn cond_kind(&mut self, n: u32) -> R<CondKind> {
        let mut k = self.kids(n);
        Ok(match self.name(n) {
            "notcond" => {
                k.next();
                CondKind::Not(Box::new(self.cond(&mut k)?))
            }
            "orexpr" | "andexpr" => {
                let left = Box::new(self.cond(&mut k)?);
                k.next();
                let right = Box::new(self.cond(&mut k)?);
                if self.name(n) == "orexpr" {
                    CondKind::Or(left, right)
                } else {
                    CondKind::And(left, right)
                }
            }
            "hasrelpropcond" => CondKind::HasProp(self.node_prop(&mut k)?),
            "relpropcond" => {
                let Some(Kid::Node(p)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "property"));
                };
                let prop = self.node_prop(&mut self.kids(p))?;
                CondKind::PropCmp {
                    prop,
                    cmp: self.comparison(&mut k)?,
                }
            }
            "abspropcond" | "hasabspropcond" => {
                let prop = match k.next() {
                    Some(Kid::Tok(t)) => self.ident(t),
                    other => return Err(self.unexpected(other, "property")),
                };
                if k.done() {
                    CondKind::HasAbsProp(prop)
                } else {
                    CondKind::AbsPropCmp {
                        prop,
                        cmp: self.comparison(&mut k)?,
                    }
                }
            }
            "tagcond" => CondKind::Tag(self.tag_kid(&mut k)?),
            "tagvalucond" => {
                let tag = self.tag_kid(&mut k)?;
                CondKind::TagCmp {
                    tag,
                    cmp: self.comparison(&mut k)?,
                }
            }
            "hastagpropcond" => {
                let (tag, prop) = self.tag_prop(&mut k)?;
                CondKind::HasTagProp { tag, prop }
            }
            "tagpropcond" => {
                let (tag, prop) = self.tag_prop(&mut k)?;
                CondKind::TagPropCmp {
                    tag,
                    prop,
                    cmp: self.comparison(&mut k)?,
                }
            }
            "condsubq" => {
                let query = self.braces(&mut k)?;
                CondKind::SubQuery {
                    query,
                    cmp: self.opt_comparison(&mut k)?,
                }
            }
            "arraycond" => {
                let prop = self.rel_prop_kid(&mut k)?;
                k.next();
                CondKind::Array {
                    prop,
                    cmp: self.comparison(&mut k)?,
                }
            }
            other => return Err(self.unexpected(Some(Kid::Node(n)), other)),
        })
    }

    /// A `relprop` or `univprop` node from the cursor.
    fn node_prop(&mut self, k: &mut Kids) -> R<NodeProp> {
        match k.next() {
            Some(Kid::Node(p)) if self.name(p) == "relprop" => Ok(NodeProp::Rel(self.rel_prop(p)?)),
            Some(Kid::Node(p)) => Ok(NodeProp::Univ(self.univ_prop(p)?)),
            other => Err(self.unexpected(other, "property")),
        }
    }

    fn rel_prop_kid(&mut self, k: &mut Kids) -> R<RelProp> {
        match k.next() {
            Some(Kid::Node(p)) => self.rel_prop(p),
            other => Err(self.unexpected(other, "relative property")),
        }
    }

    /// `:name` or `:$var` (`relprop` / `relpropvalu`).
    fn rel_prop(&mut self, n: u32) -> R<RelProp> {
        let pspan = self.node_span(n, 0);
        let mut k = self.kids(n);
        let name = match k.next() {
            Some(Kid::Tok(t)) if matches!(t.term, Term::RelName | Term::ExprRelName) => {
                Name::Lit(Ident {
                    span: span(t),
                    name: self.tok(t).trim_start_matches(':').to_string(),
                })
            }
            _ => Name::Expr(Box::new(self.value(&mut k)?)),
        };
        Ok(RelProp { span: pspan, name })
    }

    /// `.name` or `.$var` (`univprop`).
    fn univ_prop(&mut self, n: u32) -> R<UnivProp> {
        let pspan = self.node_span(n, 0);
        let mut k = self.kids(n);
        let name = match k.next() {
            Some(Kid::Tok(t)) if matches!(t.term, Term::UnivName | Term::ExprUnivName) => {
                Name::Lit(self.ident(t))
            }
            Some(Kid::Node(u)) => return self.univ_prop(u),
            _ => Name::Expr(Box::new(self.value(&mut k)?)),
        };
        Ok(UnivProp { span: pspan, name })
    }

    // -----------------------------------------------------------------------------------------
    // Edits

    fn edit(&mut self, n: u32) -> R<Edit> {
        let espan = self.node_span(n, 0);
        let kind = self.nest(espan, |c| c.edit_kind(n))?;
        Ok(Edit { span: espan, kind })
    }

    fn set_oper(&self, k: &mut Kids) -> R<SetOper> {
        let t = k
            .eat(&SET_OPERS)
            .ok_or_else(|| self.unexpected(k.peek(), "assignment"))?;
        Ok(match (t.term, self.tok(t)) {
            (Term::TrySet, _) => SetOper::TrySet,
            (_, "+=") => SetOper::Append,
            (_, "-=") => SetOper::Remove,
            (_, "?+=") => SetOper::TryAppend,
            (_, "?-=") => SetOper::TryRemove,
            (_, "++=") => SetOper::AppendAll,
            (_, "--=") => SetOper::RemoveAll,
            (_, "?++=") => SetOper::TryAppendAll,
            (_, "?--=") => SetOper::TryRemoveAll,
            _ => SetOper::Set,
        })
    }

    fn edit_kind(&mut self, n: u32) -> R<EditKind> {
        let name = self.name(n);
        let mut k = self.kids(n);
        Ok(match name {
            "editnodeadd" => {
                let Some(Kid::Node(f)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "form"));
                };
                let form = self.form_name(&mut self.kids(f))?;
                let oper = self.set_oper(&mut k)?;
                EditKind::NodeAdd {
                    form,
                    oper,
                    value: self.value(&mut k)?,
                }
            }
            "editpropset" | "editunivset" | "editpropsetmulti" => {
                let prop = self.node_prop(&mut k)?;
                let oper = self.set_oper(&mut k)?;
                EditKind::PropSet {
                    prop,
                    oper,
                    value: self.value(&mut k)?,
                }
            }
            "editcondpropset" => {
                let prop = self.rel_prop_kid(&mut k)?;
                let Some(Kid::Node(c)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "conditional set"));
                };
                let try_set = self.name(c) == "condtrysetoper";
                let mut ck = self.kids(c);
                let cond = if ck.eat(&[Term::ExprTimes]).is_some() {
                    SetCond::Unset
                } else {
                    ck.next();
                    SetCond::Expr(self.value(&mut ck)?)
                };
                EditKind::PropSetIf {
                    prop,
                    cond,
                    try_set,
                    value: self.value(&mut k)?,
                }
            }
            "editpropdel" | "editunivdel" => {
                k.next();
                EditKind::PropDel(self.node_prop(&mut k)?)
            }
            "edittagadd" => {
                k.next();
                let try_name = k.eat(&[Term::SetTagOper]).is_some();
                let tag = self.tag_kid(&mut k)?;
                let value = match k.eat(&[Term::EqSpace, Term::EqNoSpace, Term::TrySet]) {
                    Some(t) => Some((t.term == Term::TrySet, self.value(&mut k)?)),
                    None => None,
                };
                EditKind::TagAdd {
                    tag,
                    try_name,
                    value,
                }
            }
            "edittagdel" => {
                k.next();
                EditKind::TagDel(self.tag_kid(&mut k)?)
            }
            "edittagpropset" => {
                k.next();
                let Some(Kid::Node(tp)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "tag property"));
                };
                let (tag, prop) = self.tag_prop(&mut self.kids(tp))?;
                let oper = self.set_oper(&mut k)?;
                EditKind::TagPropSet {
                    tag,
                    prop,
                    oper,
                    value: self.value(&mut k)?,
                }
            }
            "edittagpropdel" => {
                k.next();
                let Some(Kid::Node(tp)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "tag property"));
                };
                let (tag, prop) = self.tag_prop(&mut self.kids(tp))?;
                EditKind::TagPropDel { tag, prop }
            }
            "edgeaddn1" | "edgedeln1" | "edgeaddn2" | "edgedeln2" => {
                k.next();
                let verb = self.value(&mut k)?;
                k.next();
                EditKind::Edge {
                    del: name.starts_with("edgedel"),
                    dir: if name.ends_with("n1") {
                        EdgeDir::Out
                    } else {
                        EdgeDir::In
                    },
                    verb,
                    target: self.value(&mut k)?,
                }
            }
            "editparens" => {
                k.next();
                let mut edits = Vec::new();
                while let Some(kid) = k.next() {
                    if let Kid::Node(e) = kid {
                        edits.push(self.edit(e)?);
                    }
                }
                if edits.is_empty() {
                    return Err(self.unexpected(None, "edit group"));
                }
                let add = Box::new(edits.remove(0));
                EditKind::Parens { add, edits }
            }
            other => return Err(self.unexpected(Some(Kid::Node(n)), other)),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Values

    /// One value from the cursor: a token, a node, or `$` and the variable that follows.
    fn value(&mut self, k: &mut Kids) -> R<Value> {
        let kid = k
            .next()
            .ok_or_else(|| self.unexpected(None, "end of value"))?;
        match kid {
            Kid::Tok(t) if t.term == Term::Dollar => match k.next() {
                Some(Kid::Tok(v)) if matches!(v.term, Term::VarTokn | Term::ExprVarTokn) => {
                    let name = self.var_name(v)?;
                    Ok(Value {
                        span: Span::new(t.start, v.end),
                        kind: ValueKind::Var(name.name),
                    })
                }
                Some(Kid::Node(n)) => self.node_value(n),
                other => Err(self.unexpected(other, "variable")),
            },
            Kid::Tok(t) => self.token_value(t),
            Kid::Node(n) => self.node_value(n),
        }
    }

    fn token_value(&self, t: Token) -> R<Value> {
        let raw = self.tok(t);
        let kind = match t.term {
            Term::DoubleQuoted => ValueKind::Str(self.dq(t)?),
            Term::SingleQuoted => ValueKind::Str(raw[1..raw.len() - 1].to_string()),
            Term::TripleQuoted => ValueKind::Str(raw[3..raw.len() - 3].to_string()),
            Term::VarTokn | Term::ExprVarTokn => ValueKind::Str(self.var_name(t)?.name),
            Term::FormatText => ValueKind::Str(
                format_unescape(raw).map_err(|why| string_error(self.text, raw, &why))?,
            ),
            Term::Number | Term::HexNumber | Term::OctNumber => {
                if raw.contains('.') {
                    ValueKind::Decimal(raw.to_string())
                } else {
                    ValueKind::Int(python_int(raw).ok_or_else(|| {
                        semantic_error(self.text, span(t), "Integer literal out of range")
                    })?)
                }
            }
            Term::Bool => ValueKind::Bool(raw == "true"),
            Term::Null => ValueKind::Null,
            _ => ValueKind::Str(raw.to_string()),
        };
        Ok(Value {
            span: span(t),
            kind,
        })
    }

    /// A `[...]` / `{...}` literal's bare word: a number, else an error.
    fn json_token(&self, t: Token) -> R<Value> {
        let raw = self.tok(t);
        if t.term != Term::VarTokn || raw.starts_with(['"', '\'']) {
            return self.token_value(t);
        }
        let kind = python_int(raw).map(ValueKind::Int).ok_or_else(|| {
            semantic_error(
                self.text,
                span(t),
                "Unexpected unquoted string in JSON expression",
            )
        })?;
        Ok(Value {
            span: span(t),
            kind,
        })
    }

    fn node_value(&mut self, mut n: u32) -> R<Value> {
        // Follow one-child links (the expression precedence chain, `$`-less wrappers) without
        // spending nesting depth on them.
        while PASS_THROUGH.contains(&self.name(n)) && self.cst.node(n).kids.len() == 1 {
            match self.kids(n).kids[..] {
                [Kid::Node(c)] => n = c,
                _ => break,
            }
        }
        let vspan = self.node_span(n, 0);
        let kind = self.nest(vspan, |c| c.node_value_kind(n))?;
        Ok(Value { span: vspan, kind })
    }

    fn node_value_kind(&mut self, n: u32) -> R<ValueKind> {
        let name = self.name(n);
        let mut k = self.kids(n);
        Ok(match name {
            "varvalue" => match k.next() {
                Some(Kid::Tok(t)) => ValueKind::Var(self.var_name(t)?.name),
                other => return Err(self.unexpected(other, "variable")),
            },
            "varderef" => self.deref(&mut k)?,
            "funccall" => self.call(&mut k)?,
            "dollarexpr" => {
                k.next();
                ValueKind::Expr(Box::new(self.value(&mut k)?))
            }
            "valulist" | "formatstring" | "exprlist" | "exprdict" => {
                self.collection(name, &mut k)?
            }
            "listvalu" | "evalvalu" | "dollaroper" | "innerdollaroper" => self.value(&mut k)?.kind,
            "univpropvalu" => match k.next() {
                Some(Kid::Node(u)) => ValueKind::UnivProp(self.univ_prop(u)?),
                _ => ValueKind::UnivProp(self.univ_prop(n)?),
            },
            "tagvalu" => ValueKind::Tag(self.tag_kid(&mut k)?),
            "tagpropvalu" => {
                let Some(Kid::Node(tp)) = k.next() else {
                    return Err(self.unexpected(k.peek(), "tag property"));
                };
                let (tag, prop) = self.tag_prop(&mut self.kids(tp))?;
                ValueKind::TagProp { tag, prop }
            }
            "varlist" => ValueKind::List(
                self.var_list(n)?
                    .into_iter()
                    .map(|i| Value {
                        span: i.span,
                        kind: ValueKind::Str(i.name),
                    })
                    .collect(),
            ),
            "relpropvalu" => ValueKind::RelProp(self.rel_prop(n)?),
            "embedquery" => {
                let q = self.braces(&mut k)?;
                let inner = Span::new(q.span.start + 2, q.span.end - 1);
                ValueKind::EmbedQuery {
                    text: inner.text(self.text).to_string(),
                    query: Box::new(q.query),
                }
            }
            "baresubquery" | "argvquery" => ValueKind::SubQuery(Box::new(self.braces(&mut k)?)),
            "expror" | "exprand" | "exprcmp" | "exprsum" | "exprproduct" | "exprpow" => {
                if self.cst.node(n).kids.len() == 1 {
                    return Ok(self.value(&mut k)?.kind);
                }
                let left = Box::new(self.value(&mut k)?);
                let op = match k.next() {
                    Some(Kid::Tok(t)) => binop(self.tok(t)),
                    other => return Err(self.unexpected(other, "operator")),
                }
                .ok_or_else(|| self.unexpected(None, "operator"))?;
                let right = Box::new(self.value(&mut k)?);
                ValueKind::Binary { op, left, right }
            }
            "exprnot" | "exprunary" => {
                if self.cst.node(n).kids.len() == 1 {
                    return Ok(self.value(&mut k)?.kind);
                }
                let op = k.next();
                let operand = Box::new(self.value(&mut k)?);
                match op {
                    Some(Kid::Tok(t)) if t.term == Term::NotOp => ValueKind::Not(operand),
                    _ => ValueKind::Neg(operand),
                }
            }
            other => return Err(self.unexpected(Some(Kid::Node(n)), other)),
        })
    }

    /// `$x.key` (`varderef`).
    fn deref(&mut self, k: &mut Kids) -> R<ValueKind> {
        let base = Box::new(self.value(k)?);
        k.next();
        let key = if k.peek_term() == Some(Term::Dollar) {
            k.next();
            match k.next() {
                Some(Kid::Tok(t)) => Value {
                    span: span(t),
                    kind: ValueKind::Var(self.var_name(t)?.name),
                },
                Some(Kid::Node(d)) => self.node_value(d)?,
                None => return Err(self.unexpected(None, "key")),
            }
        } else {
            self.value(k)?
        };
        Ok(ValueKind::Deref {
            base,
            key: Box::new(key),
        })
    }

    /// The bracketed literals: `(a, b)`, `` `…` ``, `[a, b]`, `{k: v}`.
    fn collection(&mut self, name: &str, k: &mut Kids) -> R<ValueKind> {
        Ok(match name {
            "valulist" => {
                let mut items = Vec::new();
                while let Some(kid) = k.peek() {
                    match kid {
                        Kid::Tok(t) if matches!(t.term, Term::LPar | Term::RPar | Term::Comma) => {
                            k.next();
                        }
                        _ => items.push(self.value(k)?),
                    }
                }
                ValueKind::List(items)
            }
            "formatstring" => {
                let mut parts = Vec::new();
                while let Some(kid) = k.peek() {
                    match kid {
                        Kid::Tok(t)
                            if matches!(t.term, Term::Backquote | Term::LBrace | Term::RBrace) =>
                        {
                            k.next();
                        }
                        _ => parts.push(self.value(k)?),
                    }
                }
                ValueKind::Format(parts)
            }
            _ => {
                let mut items = Vec::new();
                while let Some(kid) = k.peek() {
                    match kid {
                        Kid::Tok(t)
                            if matches!(
                                t.term,
                                Term::LSqb
                                    | Term::RSqb
                                    | Term::LBrace
                                    | Term::RBrace
                                    | Term::Comma
                                    | Term::Colon
                                    | Term::ExprColonNoSpace
                            ) =>
                        {
                            k.next();
                        }
                        Kid::Tok(t) if t.term == Term::VarTokn => {
                            k.next();
                            items.push(self.json_token(t)?);
                        }
                        _ => items.push(self.value(k)?),
                    }
                }
                if name == "exprlist" {
                    ValueKind::List(items)
                } else {
                    let mut pairs = Vec::new();
                    let mut it = items.into_iter();
                    while let (Some(key), Some(val)) = (it.next(), it.next()) {
                        pairs.push((key, val));
                    }
                    ValueKind::Dict(pairs)
                }
            }
        })
    }

    fn call(&mut self, k: &mut Kids) -> R<ValueKind> {
        let func = Box::new(self.value(k)?);
        let mut args = Vec::new();
        let mut kwargs: Vec<(Ident, Value)> = Vec::new();
        while let Some(kid) = k.peek() {
            if let Kid::Tok(t) = kid
                && matches!(t.term, Term::LParNoSpace | Term::RPar | Term::Comma)
            {
                k.next();
                continue;
            }
            let is_kw = matches!(kid, Kid::Tok(t) if matches!(t.term, Term::VarTokn | Term::NonQuoteWord))
                && matches!(k.kids.get(k.i + 1), Some(Kid::Tok(e)) if matches!(e.term, Term::EqSpace | Term::EqNoSpace));
            if is_kw {
                let Kid::Tok(t) = kid else { continue };
                k.next();
                k.next();
                let kname = self.var_name(t)?;
                if kwargs.iter().any(|(n, _)| n.name == kname.name) {
                    let mesg = format!(
                        "Duplicate keyword argument \"{}\" in function call",
                        kname.name
                    );
                    return Err(semantic_error(self.text, kname.span, mesg));
                }
                let value = self.value(k)?;
                kwargs.push((kname, value));
                continue;
            }
            let value = self.value(k)?;
            if !kwargs.is_empty() {
                return Err(semantic_error(
                    self.text,
                    value.span,
                    "Positional argument follows keyword argument in function call",
                ));
            }
            args.push(value);
        }
        Ok(ValueKind::Call { func, args, kwargs })
    }
}

/// Rules that only pass their single child on when they have one.
const PASS_THROUGH: [&str; 14] = [
    "expror",
    "exprand",
    "exprnot",
    "exprcmp",
    "exprsum",
    "exprproduct",
    "exprunary",
    "exprpow",
    "dollaroper",
    "innerdollaroper",
    "listvalu",
    "evalvalu",
    "relpropvalue",
    "formname",
];

fn span(t: Token) -> Span {
    Span::new(t.start, t.end)
}

fn t_end(terms: &[Ident]) -> usize {
    terms.last().map_or(0, |t| t.span.end)
}

fn binop(s: &str) -> Option<BinOp> {
    Some(match s {
        "or" => BinOp::Or,
        "and" => BinOp::And,
        "=" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        ">=" => BinOp::Ge,
        "~=" => BinOp::Regex,
        "^=" => BinOp::Prefix,
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "**" => BinOp::Pow,
        _ => return None,
    })
}
