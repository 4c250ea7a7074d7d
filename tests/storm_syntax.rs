//! The Storm parser: what must parse (and into what), what must fail and where, agreement with
//! Synapse 2.256's own parser, and robustness against arbitrary input.

mod common;

use syn::cortex::storm::ast::*;
use syn::cortex::storm::{parse_eval, parse_lookup, parse_query, parse_search};
use syn::error::SynErr;
use syn::msgpack::Value as Mp;

/// Queries real users write, covering every construct; each must parse.
const VALID: &[&str] = &[
    // lifts
    "inet:ipv4",
    "inet:ipv4=1.2.3.4",
    "inet:ipv4:asn=10",
    "inet:user^=vi",
    "inet:fqdn=*.vertex.link",
    "#foo.bar",
    "inet:fqdn#foo",
    ".created>=2020",
    "inet:ipv4*range=(1.0.0.0, 1.0.0.255)",
    "inet:fqdn~=\"vert\"",
    "inet:asn*in=(10, 20)",
    "#foo:score>3",
    "inet:ipv4#foo:score=2",
    "$f=inet:ipv4 *$f=1.2.3.4",
    "inet:ipv4=$ip",
    "inet:*",
    "inet:ipv4.created>2020",
    ".seen@=(2019, 2020)",
    "#foo.bar=(2020, 2021)",
    "#foo.bar@=2020",
    "##meta",
    "reverse(inet:ipv4)",
    "ps:contact:names*[=alice]",
    "inet:url=\"http://x.com/a?b=c\"",
    "inet:url=http://x.com/a?b",
    // filters
    "inet:ipv4 +#tag",
    "inet:ipv4 +#tag=(2019,2020)",
    "inet:ipv4 +#tag@=2020",
    "inet:ipv4 +:asn",
    "inet:ipv4 +:asn=10",
    "inet:ipv4 +:asn!=10",
    "inet:fqdn +inet:fqdn",
    "inet:fqdn +inet:fqdn:zone=vertex.link",
    "inet:ipv4 +.seen",
    "inet:ipv4 +{ -> inet:asn }",
    "inet:ipv4 +{ -> inet:dns:a } = 1",
    "inet:ipv4 +$x",
    "inet:ipv4 +$(:asn > 10)",
    "inet:ipv4 +(#foo and not #baz)",
    "inet:ipv4 +not #baz",
    "inet:ipv4 +(:asn=1 or :asn=2 and :asn=3)",
    "inet:ipv4 -#foo.*",
    "inet:ipv4 +#*",
    "inet:ipv4 +#foo:score>3",
    "inet:ipv4 +:names*[=bob]",
    "inet:ipv4 -(#foo or #bar)",
    "inet:ipv4 +:foo:bar",
    // pivots, joins, walks
    "inet:ipv4 -> inet:asn",
    "inet:ipv4 :asn -> inet:asn",
    "inet:ipv4 :asn -> *",
    "inet:ipv4 -> *",
    "inet:asn <- *",
    "inet:asn <- inet:ipv4",
    "inet:ipv4 -+> inet:asn",
    "inet:ipv4 <+- *",
    "inet:ipv4 -(refs)> *",
    "inet:ipv4 <(refs)- *",
    "inet:ipv4 -(refs)+> inet:fqdn",
    "inet:ipv4 <+(refs)- *",
    "inet:ipv4 -((refs, seen))> *",
    "inet:ipv4 -> #",
    "inet:ipv4 -> #foo.*",
    "inet:ipv4 -> #foo.bar",
    "inet:ipv4 --> *",
    "inet:ipv4 <-- *",
    "inet:ipv4 -> (inet:asn, inet:fqdn)",
    "inet:ipv4 -> { inet:fqdn }",
    "inet:fqdn=x -> inet:dns:a:fqdn",
    // edits
    "[ inet:ipv4=1.2.3.4 :asn=10 +#foo=(2019,2020) -#bar -:asn .seen=2020 +#foo:score=5 -#foo:score +(refs)> {inet:fqdn=x} ]",
    "inet:ipv4 [ +#tag ]",
    "[ ps:contact=* ]",
    "[ inet:ipv4?=newp ]",
    "[ inet:ipv4=1.2.3.4 :asn?=newp ]",
    "inet:ipv4 [ :names+=c :names-=a :names?+=d ]",
    "inet:ipv4 [ :names++=(d, e) :names--=(b,) ]",
    "inet:ipv4 [ :asn*unset=99 :asn*$mode?=5 ]",
    "[ (inet:ipv4=3.3.3.3 :asn=1) (inet:ipv4=4.4.4.4 :asn=2) ]",
    "inet:ipv4 [ <(refs)+ { inet:fqdn } <(refs)- { inet:fqdn } -(refs)> $n ]",
    "inet:ipv4 [ +?#t=bad +#t?=bad -.seen ]",
    "inet:ipv4 [ :$v=5 ]",
    "[ inet:ipv4=1.2.3.4 +#$tags ]",
    "inet:ipv4 [ +#foo.$bar ]",
    // commands
    "inet:ipv4 | count",
    "inet:ipv4 | limit 10",
    "inet:ipv4 | uniq",
    "inet:ipv4 | delnode --force",
    "inet:ipv4 | spin",
    "inet:ipv4 | min :asn",
    "inet:ipv4 | max .seen",
    "inet:ipv4 | tee --join { -> * } { <- * }",
    "inet:ipv4 | foo.bar --opt val arg \"quoted arg\" 'single' --flag=5",
    "inet:ipv4 | graph --degrees 2 --refs",
    "| inet:ipv4",
    "inet:ipv4 | limit 10 | count",
    // variables and calls
    "$lib.print(\"hi {x}\", x=$y)",
    "$lib.print(hello)",
    "$x = 5",
    "$x = $lib.foo()",
    "inet:ipv4 $node.value()",
    "inet:ipv4 $path.meta.foo = bar",
    "$x.y = 5",
    "$x.$y = 5",
    "($a, $b) = $lib.foo()",
    "$x = $y.$z",
    "$x = $y.(1)",
    "$x = $y.`a{$b}`",
    "$x = $lib.dict(a=1, b=(2))",
    "$x=$lib.time.format(1577934245678, \"%Y\")",
    "inet:ipv4 $x = :asn",
    "inet:ipv4 $x = #foo",
    "inet:ipv4 $x = #foo:score",
    "inet:ipv4 $x = .seen",
    // control flow and functions
    "for ($a, $b) in $rows { [ inet:ipv4=$a :asn=$b ] }",
    "for $x in $y { $lib.print($x) }",
    "while $x { break }",
    "while (true) { continue }",
    "if $x { [+#foo] } elif $y { [+#bar] } else { [+#baz] }",
    "switch $x { foo: {} \"a b\": {} (bar, baz): {} *: {} }",
    "function name(a, b=1) { return(($a + $b)) }",
    "function gen() { emit $x }",
    "stop",
    "break ",
    "return((1))",
    "return()",
    "{ inet:ipv4 }",
    "yield { inet:ipv4 }",
    "yield $lib.foo()",
    "try { $lib.raise(Foo, bar) } catch Foo as err { $lib.print($err.mesg) }",
    "init { $x = 1 } fini { $lib.print($x) } empty { $lib.print(none) }",
    // values and expressions
    "$q = ${ inet:ipv4 }",
    "$x = $(1 + 2 * 3 - 4 / 5 % 6 ** 2)",
    "$x = $(1 < 2 and 3 >= 4 or not 5 = 5)",
    "$x = $(-$y)",
    "$x = $(0x10 + 0o7)",
    "$x = $(:asn)",
    "$x = \"a\\tb\\u00e9\\x41\"",
    "$x = 'raw\\n'",
    "$x = '''multi\nline'''",
    "$x = `a {$y} b`",
    "$x = (1, 2)",
    "$x = ([1,2])",
    "$x = ({\"a\": 1})",
    "$x = $({\"foo\": 1})",
    // comments and whitespace
    "inet:ipv4 // comment",
    "inet:ipv4 /* block */ | count",
    "inet:ipv4\n| limit 10\n",
    "",
    "   ",
];

/// Invalid queries and where Synapse 2.256 reports them: `(query, at, line, column, token)`.
const INVALID: &[(&str, i64, i64, i64, &str)] = &[
    ("inet:ipv4=(", 10, 1, 11, ""),
    ("[inet:ipv4=1.2.3.4", 11, 1, 12, ""),
    ("inet:ipv4 +:asn=10 or", 19, 1, 20, "or"),
    ("inet:ipv4\n  | limit (", 20, 2, 11, ""),
    ("#foo.*", 5, 1, 6, "*"),
    ("break", 0, 1, 1, "break"),
    ("inet:ipv4 +:asn=10 or :asn=20", 19, 1, 20, "or"),
    ("inet:url=http://x.com/a?b=c", 25, 1, 26, "="),
    ("+#\"Hello.World\"", 2, 1, 3, "\"Hello.World\""),
    ("inet:ipv4 || count", 11, 1, 12, "|"),
    ("inet:ipv4 |", 10, 1, 11, ""),
    ("[ inet:ipv4 ]", 12, 1, 13, "]"),
    ("$x = $(1e3)", 7, 1, 8, "1e3"),
    ("inet:ipv4 }", 10, 1, 11, "}"),
    ("{ inet:ipv4", 2, 1, 3, ""),
    ("éé inet:ipv4=(", 0, 1, 1, "éé inet:ipv4=("),
];

fn parse_ok(q: &str) -> Query {
    parse_query(q).unwrap_or_else(|e| panic!("{q:?} should parse: {e}"))
}

fn int(e: &SynErr, key: &str) -> i64 {
    e.field(key).and_then(Mp::as_i64).unwrap_or(-1)
}

fn only_oper(q: &str) -> OperKind {
    let mut query = parse_ok(q);
    assert_eq!(query.opers.len(), 1, "{q:?}: {query:?}");
    query.opers.remove(0).kind
}

fn str_value(v: &Value) -> &str {
    match &v.kind {
        ValueKind::Str(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[test]
fn valid_queries_parse() {
    for q in VALID {
        parse_ok(q);
    }
}

#[test]
fn lifts_and_comparisons() {
    let OperKind::Lift(lift) = only_oper("inet:ipv4=1.2.3.4") else {
        panic!()
    };
    let LiftKind::Prop {
        prop: Name::Lit(prop),
        cmp: Some(cmp),
    } = lift.kind
    else {
        panic!("{lift:?}")
    };
    assert_eq!(prop.name, "inet:ipv4");
    assert_eq!((prop.span.start, prop.span.end), (0, 9));
    assert_eq!(cmp.cmpr.name, "=");
    // Unquoted numbers stay strings.
    assert_eq!(str_value(&cmp.value), "1.2.3.4");

    let OperKind::Lift(lift) = only_oper("inet:ipv4*range=(1.0.0.0, 1.0.0.255)") else {
        panic!()
    };
    let LiftKind::Prop { cmp: Some(cmp), .. } = lift.kind else {
        panic!()
    };
    assert_eq!(cmp.cmpr.name, "range=");
    let ValueKind::List(items) = &cmp.value.kind else {
        panic!("{cmp:?}")
    };
    assert_eq!(
        items.iter().map(str_value).collect::<Vec<_>>(),
        ["1.0.0.0", "1.0.0.255"]
    );

    let OperKind::Lift(lift) = only_oper("reverse(#foo:score>3)") else {
        panic!()
    };
    assert!(lift.reverse);
    let LiftKind::TagProp {
        form: None,
        tag,
        prop: Name::Lit(prop),
        cmp: Some(cmp),
    } = lift.kind
    else {
        panic!()
    };
    let TagNameKind::Parts(parts) = tag.kind else {
        panic!()
    };
    assert!(matches!(&parts[..], [TagPart::Lit(p)] if p.name == "foo"));
    assert_eq!((prop.name.as_str(), cmp.cmpr.name.as_str()), ("score", ">"));

    let OperKind::Lift(lift) = only_oper("$f=inet:ipv4 *$f=1.2.3.4".split_once(' ').unwrap().1)
    else {
        panic!()
    };
    assert!(matches!(
        lift.kind,
        LiftKind::Prop {
            prop: Name::Expr(_),
            ..
        }
    ));
}

#[test]
fn filters_group_left_with_equal_precedence() {
    let OperKind::Filter { keep, cond } = only_oper("+(:asn=1 or :asn=2 and :asn=3)") else {
        panic!()
    };
    assert!(keep);
    let CondKind::And(left, right) = cond.kind else {
        panic!("{cond:?}")
    };
    assert!(matches!(left.kind, CondKind::Or(..)));
    assert!(matches!(right.kind, CondKind::PropCmp { .. }));

    let OperKind::Filter { keep, cond } = only_oper("-#foo.*") else {
        panic!()
    };
    assert!(!keep);
    let CondKind::Tag(tag) = cond.kind else {
        panic!()
    };
    let TagNameKind::Parts(parts) = tag.kind else {
        panic!()
    };
    assert!(
        matches!(&parts[..], [TagPart::Lit(a), TagPart::Lit(b)] if a.name == "foo" && b.name == "*")
    );

    let OperKind::Filter { cond, .. } = only_oper("+{ -> inet:dns:a } = 1") else {
        panic!()
    };
    let CondKind::SubQuery {
        query,
        cmp: Some(cmp),
    } = cond.kind
    else {
        panic!()
    };
    assert_eq!(query.query.opers.len(), 1);
    assert_eq!(str_value(&cmp.value), "1");
}

#[test]
fn pivots_and_walks() {
    let OperKind::Pivot(p) = only_oper(":asn -+> inet:asn") else {
        panic!()
    };
    assert!(p.join);
    let PivotKind::Prop { prop, target } = p.kind else {
        panic!()
    };
    assert!(matches!(prop.name, Name::Lit(ref n) if n.name == "asn"));
    assert_eq!(str_value(&target), "inet:asn");

    let OperKind::Pivot(p) = only_oper("<(refs)- *") else {
        panic!()
    };
    let PivotKind::Walk {
        dir: EdgeDir::In,
        verb,
        target: WalkTarget::Any,
        cmp: None,
    } = p.kind
    else {
        panic!()
    };
    assert_eq!(str_value(&verb), "refs");
    assert!(matches!(
        only_oper("-> #"),
        OperKind::Pivot(Pivot {
            kind: PivotKind::Tags(None),
            ..
        })
    ));
    assert!(matches!(
        only_oper("--> *"),
        OperKind::Pivot(Pivot {
            kind: PivotKind::WalkAll(EdgeDir::Out),
            join: false
        })
    ));
}

#[test]
fn edit_blocks() {
    let q = "[ inet:ipv4=1.2.3.4 :asn=10 +#foo=(2019,2020) -#bar -:asn .seen=2020 +#foo:score=5 -#foo:score +(refs)> {inet:fqdn=x} ]";
    let OperKind::Edits(edits) = only_oper(q) else {
        panic!()
    };
    let kinds: Vec<&str> = edits
        .iter()
        .map(|e| match &e.kind {
            EditKind::NodeAdd { .. } => "add",
            EditKind::PropSet {
                prop: NodeProp::Rel(_),
                ..
            } => "propset",
            EditKind::PropSet {
                prop: NodeProp::Univ(_),
                ..
            } => "univset",
            EditKind::TagAdd { value: Some(_), .. } => "tagadd-ival",
            EditKind::TagDel(_) => "tagdel",
            EditKind::PropDel(_) => "propdel",
            EditKind::TagPropSet { .. } => "tagpropset",
            EditKind::TagPropDel { .. } => "tagpropdel",
            EditKind::Edge {
                del: false,
                dir: EdgeDir::Out,
                ..
            } => "edge",
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "add",
            "propset",
            "tagadd-ival",
            "tagdel",
            "propdel",
            "univset",
            "tagpropset",
            "tagpropdel",
            "edge"
        ]
    );
    assert_eq!(&q[edits[1].span.start..edits[1].span.end], ":asn=10");

    let OperKind::Edits(edits) = only_oper("[ ps:contact=* :names++=(a, b) :asn*unset=5 +?#t?=x ]")
    else {
        panic!()
    };
    assert!(
        matches!(&edits[0].kind, EditKind::NodeAdd { oper: SetOper::Set, value, .. } if str_value(value) == "*")
    );
    assert!(matches!(
        &edits[1].kind,
        EditKind::PropSet {
            oper: SetOper::AppendAll,
            ..
        }
    ));
    assert!(matches!(
        &edits[2].kind,
        EditKind::PropSetIf {
            cond: SetCond::Unset,
            try_set: false,
            ..
        }
    ));
    assert!(matches!(
        &edits[3].kind,
        EditKind::TagAdd {
            try_name: true,
            value: Some((true, _)),
            ..
        }
    ));

    let OperKind::Edits(edits) = only_oper("[ (inet:ipv4=3.3.3.3 :asn=1) ]") else {
        panic!()
    };
    assert!(matches!(&edits[0].kind, EditKind::Parens { edits, .. } if edits.len() == 1));
}

#[test]
fn commands() {
    let q = "inet:ipv4 | foo.bar --opt val arg \"quoted arg\" --flag=5 { -> * }";
    let query = parse_ok(q);
    let OperKind::Command(cmd) = &query.opers[1].kind else {
        panic!()
    };
    assert_eq!(cmd.name.name, "foo.bar");
    let args: Vec<String> = cmd
        .args
        .iter()
        .map(|a| match a {
            CmdArg::Opt(o) => format!("opt:{}", o.name),
            CmdArg::Value(v) => format!("val:{}", str_value(v)),
            CmdArg::Query(sq) => format!("query:{}", &q[sq.span.start..sq.span.end]),
        })
        .collect();
    assert_eq!(
        args,
        [
            "opt:--opt",
            "val:val",
            "val:arg",
            "val:quoted arg",
            "opt:--flag",
            "val:5",
            "query:{ -> * }"
        ]
    );
    assert_eq!(
        &q[query.opers[1].span.start..query.opers[1].span.end],
        &q[12..]
    );
}

#[test]
fn variables_calls_and_control_flow() {
    let OperKind::Eval(v) = only_oper("$lib.print(\"hi {x}\", x=$y)") else {
        panic!()
    };
    let ValueKind::Call { func, args, kwargs } = v.kind else {
        panic!()
    };
    let ValueKind::Deref { base, key } = func.kind else {
        panic!()
    };
    assert_eq!(base.kind, ValueKind::Var("lib".into()));
    assert_eq!(str_value(&key), "print");
    assert_eq!(str_value(&args[0]), "hi {x}");
    assert_eq!(kwargs[0].0.name, "x");
    assert_eq!(kwargs[0].1.kind, ValueKind::Var("y".into()));

    let OperKind::For {
        vars, unpack, body, ..
    } = only_oper("for ($a, $b) in $rows { [ inet:ipv4=$a :asn=$b ] }")
    else {
        panic!()
    };
    assert!(unpack);
    assert_eq!(
        vars.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(matches!(&body.query.opers[0].kind, OperKind::Edits(e) if e.len() == 2));

    let OperKind::Function(f) = only_oper("function name(a, b=1) { return(($a + $b)) }") else {
        panic!()
    };
    assert_eq!(f.name.name, "name");
    assert!(f.params[0].default.is_none());
    assert_eq!(str_value(f.params[1].default.as_ref().unwrap()), "1");
    let OperKind::Return(Some(ret)) = &f.body.query.opers[0].kind else {
        panic!()
    };
    let ValueKind::Expr(inner) = &ret.kind else {
        panic!("{ret:?}")
    };
    assert!(matches!(
        inner.kind,
        ValueKind::Binary { op: BinOp::Add, .. }
    ));

    let OperKind::If {
        branches,
        otherwise,
    } = only_oper("if $x { } elif $y { } else { }")
    else {
        panic!()
    };
    assert_eq!((branches.len(), otherwise.is_some()), (2, true));

    let OperKind::Switch { cases, .. } =
        only_oper("switch $x { foo: {} \"a b\": {} (bar, baz): {} *: {} }")
    else {
        panic!()
    };
    let values: Vec<Vec<&str>> = cases
        .iter()
        .map(|c| c.values.iter().map(|v| v.name.as_str()).collect())
        .collect();
    assert_eq!(
        values,
        [vec!["foo"], vec!["a b"], vec!["bar", "baz"], vec![]]
    );
}

#[test]
fn expressions_and_literals() {
    let value = |q: &str| -> ValueKind {
        let OperKind::SetVar { value, .. } = only_oper(q) else {
            panic!()
        };
        value.kind
    };
    // `*` binds tighter than `+`; `**` tighter than `*`.
    let ValueKind::Expr(e) = value("$x = $(1 + 2 * 3 ** 2)") else {
        panic!()
    };
    let ValueKind::Binary {
        op: BinOp::Add,
        right,
        ..
    } = e.kind
    else {
        panic!()
    };
    let ValueKind::Binary {
        op: BinOp::Mul,
        right,
        ..
    } = right.kind
    else {
        panic!()
    };
    assert!(matches!(
        right.kind,
        ValueKind::Binary { op: BinOp::Pow, .. }
    ));
    assert_eq!(value("$x = 10"), ValueKind::Str("10".into()));
    let ValueKind::Expr(e) = value("$x = (10)") else {
        panic!()
    };
    assert_eq!(e.kind, ValueKind::Int(10));
    let ValueKind::Expr(e) = value("$x = $(1.50)") else {
        panic!()
    };
    assert_eq!(e.kind, ValueKind::Decimal("1.50".into()));
    assert!(matches!(value("$x = (1, 2)"), ValueKind::List(v) if v.len() == 2));
    assert_eq!(
        value("$x = \"a\\tb\\u00e9\\x41\""),
        ValueKind::Str("a\tbéA".into())
    );
    assert_eq!(value("$x = 'raw\\n'"), ValueKind::Str("raw\\n".into()));
    let ValueKind::Format(parts) = value("$x = `a\\` {$y} b`") else {
        panic!()
    };
    assert_eq!(parts.len(), 3);
    assert_eq!(str_value(&parts[0]), "a` ");
    let ValueKind::EmbedQuery { text, query } = value("$q = ${ inet:ipv4 }") else {
        panic!()
    };
    assert_eq!((text.as_str(), query.opers.len()), (" inet:ipv4 ", 1));
    let ValueKind::Expr(e) = value("$x = ({\"a\": 1, \"b\": [2, 0x10]})") else {
        panic!()
    };
    assert!(matches!(&e.kind, ValueKind::Dict(p) if p.len() == 2));
}

#[test]
fn other_modes() {
    let look = parse_lookup("1.2.3.4 \"foo bar\" | [ +#x ]").unwrap();
    assert_eq!(
        look.terms
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["1.2.3.4", "foo bar"]
    );
    assert!(look.query.is_some());
    assert!(parse_search("hello world").unwrap().query.is_none());
    assert_eq!(
        parse_eval("(1)").unwrap().kind,
        ValueKind::Expr(Box::new(Value {
            span: Span::new(1, 2),
            kind: ValueKind::Int(1)
        }))
    );
}

#[test]
fn invalid_queries_fail_at_the_right_place() {
    for (q, at, line, column, token) in INVALID {
        let e = parse_query(q).expect_err(q);
        assert_eq!(e.name, "BadSyntax", "{q:?}");
        assert_eq!(
            (int(&e, "at"), int(&e, "line"), int(&e, "column")),
            (*at, *line, *column),
            "{q:?}: {e}"
        );
        assert_eq!(e.field("token").and_then(Mp::as_str), Some(*token), "{q:?}");
        assert!(e.mesg().starts_with("Unexpected token '"), "{q:?}: {e}");
        assert_eq!(e.field("text").and_then(Mp::as_str), Some(*q));
    }
}

#[test]
fn checks_after_parsing_are_bad_syntax_too() {
    let cases: &[(&str, &str, i64)] = &[
        (
            "function f(a, a) {}",
            "Duplicate parameter \"a\" in function definition",
            14,
        ),
        (
            "function f(a=1, b) {}",
            "Positional parameter \"b\" follows keyword parameter in definition",
            10,
        ),
        (
            "$lib.foo(a=1, 2)",
            "Positional argument follows keyword argument in function call",
            14,
        ),
        (
            "$lib.foo(a=1, a=2)",
            "Duplicate keyword argument \"a\" in function call",
            14,
        ),
        (
            "switch $x { a: {} a: {} }",
            "Switch statements cannot have duplicate switch cases: a",
            0,
        ),
        (
            "switch $x { *: {} *: {} }",
            "Switch statements cannot have more than one default case. Found 2.",
            0,
        ),
        (
            "$x = $([1e3])",
            "Unexpected unquoted string in JSON expression",
            8,
        ),
    ];
    for (q, mesg, at) in cases {
        let e = parse_query(q).expect_err(q);
        assert_eq!((e.name.as_str(), e.mesg()), ("BadSyntax", *mesg), "{q:?}");
        assert_eq!(int(&e, "at"), *at, "{q:?}");
        assert!(e.field("highlight").is_some());
    }
    let e = parse_query("$x = \"\\x4\"").expect_err("bad escape");
    assert!(
        e.mesg()
            .starts_with("Invalid character in string '\"\\\\x4\"'"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Agreement with Synapse's own parser

/// Invalid queries for the comparison with Python: syntax errors in every kind of construct.
const COMPARE_INVALID: &[&str] = &[
    "inet:ipv4=(",
    "[inet:ipv4=1.2.3.4",
    "inet:ipv4 +:asn=10 or",
    "inet:ipv4\n  | limit (",
    "#foo.*",
    "break",
    "inet:url=http://x.com/a?b=c",
    "+#\"Hello.World\"",
    "inet:ipv4 || count",
    "inet:ipv4 |",
    "[ inet:ipv4 ]",
    "$x = $(1e3)",
    "inet:ipv4 }",
    "{ inet:ipv4",
    "for $x in { }",
    "for ($a, $b in $x { }",
    "while { }",
    "if $x { } elif { }",
    "switch $x { foo }",
    "function f(a b) { }",
    "function (a) { }",
    "return(1, 2)",
    "$lib.print(\"a\" \"b\")",
    "$x = (1, 2",
    "$x = ([1, 2)",
    "$x = ({\"a\" 1})",
    "$x = $(1 +)",
    "$x = `abc",
    "inet:ipv4 -> ",
    "inet:ipv4 -(refs)>",
    "inet:ipv4 <(refs)+ *",
    "inet:ipv4 +(#foo and)",
    "inet:ipv4 +not",
    "inet:ipv4 [ +#foo= ]",
    "inet:ipv4 [ :asn ]",
    "inet:ipv4 [ -#foo=(1,2) ]",
    "#foo:",
    "inet:ipv4*range=",
    "try { } catch { }",
    "éé [ :asn=\n (",
    "inet:ipv4 | limit 10 |",
    "$x = ${ inet:ipv4",
    "reverse inet:ipv4",
    "inet:ipv4 /* unterminated",
];

#[test]
fn matches_python_parser() {
    let Some(python) = common::syn2_python() else {
        return;
    };
    let mut texts: Vec<&str> = COMPARE_INVALID.to_vec();
    texts.extend(VALID.iter().copied());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queries.json");
    std::fs::write(&path, serde_json::to_string(&texts).expect("json")).expect("write");
    let out = common::run_py(&python, "storm_syntax.py", &[path.to_str().expect("path")]);
    assert!(out.ok(), "{}", out.describe());
    let results = out.json();
    let results = results.as_array().expect("a list of outcomes");
    assert_eq!(results.len(), texts.len());
    let mut agree = 0;
    let mut disagree = Vec::new();
    for (text, py) in texts.iter().zip(results) {
        let ours = parse_query(text);
        let same = match (&ours, py["ok"].as_bool() == Some(true)) {
            (Ok(_), true) => true,
            (Err(e), false) => {
                let info = &py["info"];
                e.name == py["name"].as_str().unwrap_or_default()
                    && ["at", "line", "column"]
                        .iter()
                        .all(|k| Some(int(e, k)) == info[k].as_i64())
                    && e.field("token").and_then(Mp::as_str) == info["token"].as_str()
            }
            _ => false,
        };
        if same {
            agree += 1;
        } else {
            disagree.push(format!("{text:?}: ours {ours:?}\n  python {py}"));
        }
    }
    common::say(&format!(
        "storm syntax: {agree}/{} queries agree with Synapse 2.256 ({} invalid ones compared)",
        texts.len(),
        COMPARE_INVALID.len()
    ));
    assert!(
        disagree.is_empty(),
        "disagreements:\n{}",
        disagree.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// A small deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SOUP: &[&str] = &[
    "inet:ipv4",
    "=",
    "1.2.3.4",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "$x",
    "|",
    "#foo",
    ":asn",
    ".seen",
    "->",
    "<-",
    "-+>",
    "+",
    "-",
    "*",
    "for",
    "in",
    "if",
    "elif",
    "else",
    "and",
    "or",
    "not",
    ",",
    "\"s\"",
    "'s'",
    "'''t'''",
    "`f{$x}`",
    "10",
    "-5",
    "1.5",
    "0x1f",
    "limit",
    "--opt",
    "-(refs)>",
    "<(refs)-",
    "$lib.print(",
    "break",
    "continue",
    "stop",
    "return(",
    "emit",
    "switch",
    ":",
    "?=",
    "*in=",
    "*range=",
    "@=",
    "~=",
    "^=",
    "\n",
    "//c\n",
    "/*c*/",
    "yield",
    "function",
    "init",
    "fini",
    "empty",
    "try",
    "catch",
    "as",
    "${",
    "$(",
    "+(",
    "-(",
    "**",
    "true",
    "null",
    "#",
    "##",
    "*$",
    ":$",
    "é",
    "\\",
    "\"",
    "'",
    "`",
    "<(",
    ")-",
    ")>",
    "*[",
    "-->",
];

fn check_no_panic(text: &str) {
    match std::panic::catch_unwind(|| parse_query(text)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert_eq!(e.name, "BadSyntax", "{text:?}: {e}"),
        Err(_) => panic!("the parser panicked on {text:?}"),
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    for _ in 0..3000 {
        let len = rng.below(40);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check_no_panic(&String::from_utf8_lossy(&bytes));
        let ascii: String = (0..len)
            .map(|_| (b' ' + (rng.next() % 95) as u8) as char)
            .collect();
        check_no_panic(&ascii);
        let n = 1 + rng.below(12);
        let sep = if rng.below(3) == 0 { "" } else { " " };
        let soup: Vec<&str> = (0..n).map(|_| SOUP[rng.below(SOUP.len())]).collect();
        check_no_panic(&soup.join(sep));
    }
}

#[test]
fn deep_nesting_is_refused_not_fatal() {
    let deep = [
        format!("$x = {}1{}", "(".repeat(5000), ")".repeat(5000)),
        format!("$x = $({}1{})", "(".repeat(3000), ")".repeat(3000)),
        "{ ".repeat(3000) + "} ".repeat(3000).as_str(),
        format!("$x = $y{}", ".a".repeat(5000)),
        format!("$x = $(1{})", " + 1".repeat(5000)),
        "[".repeat(10000),
        "inet:ipv4 ".repeat(20000),
    ];
    for text in &deep {
        check_no_panic(text);
    }
    // Long flat pipelines are fine.
    assert_eq!(parse_ok(&"inet:ipv4 ".repeat(20000)).opers.len(), 20000);
}
