//! The Storm abstract syntax tree.
//!
//! Every node carries the [`Span`] (byte offsets into the query text) of the text it was parsed
//! from, so the runtime can report errors with Synapse's `highlight`
//! ([`super::parser::highlight`]). Unquoted words stay strings (`10` is `Str("10")`); only
//! expression literals (`$(10)`, `(10)`, `[1, 2]`) are numbers.

pub use super::parser::Span;

/// A query: operations run as a pipeline, left to right.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The query's own text (for subqueries, the text between the braces).
    pub span: Span,
    /// The operations, in order.
    pub opers: Vec<Oper>,
}

/// One pipeline operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Oper {
    /// Where it was written.
    pub span: Span,
    /// What it does.
    pub kind: OperKind,
}

/// The operations.
#[derive(Clone, Debug, PartialEq)]
pub enum OperKind {
    /// Lift nodes from the graph.
    Lift(Lift),
    /// Keep (`+`) or drop (`-`) nodes by a condition.
    Filter {
        /// `true` for `+cond` / `+(cond)`, `false` for `-cond` / `-(cond)`.
        keep: bool,
        /// The condition.
        cond: Cond,
    },
    /// Pivot, join or walk to other nodes.
    Pivot(Pivot),
    /// One `[ ... ]` edit block.
    Edits(Vec<Edit>),
    /// A storm command: `name args...`.
    Command(Command),
    /// `{ ... }` (runs per node, passes it on) or `yield { ... }` (also emits the subquery's
    /// nodes).
    SubQuery {
        /// The subquery.
        query: SubQuery,
        /// Written with `yield`.
        yields: bool,
    },
    /// `$name = value`.
    SetVar {
        /// The variable.
        name: Ident,
        /// The value.
        value: Value,
    },
    /// `$base.key = value`.
    SetItem {
        /// The object (`$x`, `$x.y`, `$f()`).
        target: Value,
        /// The key (a name, `$var`, a format string or an expression).
        key: Value,
        /// The value.
        value: Value,
    },
    /// `($a, $b) = value`.
    SetVars {
        /// The variables.
        names: Vec<Ident>,
        /// The value to unpack.
        value: Value,
    },
    /// A bare value evaluated for its effect (`$lib.print(x)`).
    Eval(Value),
    /// `for $x in value { ... }` / `for ($a, $b) in value { ... }`.
    For {
        /// The loop variables (one, or several to unpack each item into).
        vars: Vec<Ident>,
        /// Whether the variables were written as a `( ... )` list.
        unpack: bool,
        /// What to iterate.
        iter: Value,
        /// The body.
        body: SubQuery,
    },
    /// `while cond { ... }`.
    While {
        /// The condition.
        cond: Value,
        /// The body.
        body: SubQuery,
    },
    /// `if a { } elif b { } else { }`.
    If {
        /// The `if` and `elif` branches, in order.
        branches: Vec<(Value, SubQuery)>,
        /// The `else` body.
        otherwise: Option<SubQuery>,
    },
    /// `switch $x { case: { } ... }`.
    Switch {
        /// The switched-on value.
        subject: Value,
        /// The cases, in order.
        cases: Vec<Case>,
    },
    /// `try { } catch Name as err { }`.
    Try {
        /// The protected body.
        body: SubQuery,
        /// The handlers, in order.
        catches: Vec<Catch>,
    },
    /// `init { }`: runs once before the first node.
    Init(SubQuery),
    /// `fini { }`: runs once at the end.
    Fini(SubQuery),
    /// `empty { }`: runs if no node arrived.
    Empty(SubQuery),
    /// `function name(params) { }`.
    Function(Function),
    /// `return()` / `return(value)`.
    Return(Option<Value>),
    /// `emit value` (in a generator function).
    Emit(Value),
    /// `yield value`: emit the nodes a value (a function's generator, a node list) yields.
    Yield(Value),
    /// `stop`.
    Stop,
    /// `break`.
    Break,
    /// `continue`.
    Continue,
}

/// A name as written (a variable, property, command or function name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// Where it was written.
    pub span: Span,
    /// The name (quotes and escapes resolved).
    pub name: String,
}

/// A name that is either written out or computed from a value (`:$prop`, `*$form`, `.$univ`).
#[derive(Clone, Debug, PartialEq)]
pub enum Name {
    /// Written out.
    Lit(Ident),
    /// The value of an expression.
    Expr(Box<Value>),
}

/// A subquery in braces.
#[derive(Clone, Debug, PartialEq)]
pub struct SubQuery {
    /// Where it was written, braces included.
    pub span: Span,
    /// The query inside.
    pub query: Query,
}

/// `catch Name as var { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Catch {
    /// Where it was written.
    pub span: Span,
    /// The error names caught (`*` for all, a name, or a list).
    pub names: Value,
    /// The variable bound to the error.
    pub var: Ident,
    /// The handler.
    pub body: SubQuery,
}

/// One case of a `switch`.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Where it was written.
    pub span: Span,
    /// The values it matches; empty for the default case `*`.
    pub values: Vec<Ident>,
    /// The body.
    pub body: SubQuery,
}

/// `function name(params) { body }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// The function's name.
    pub name: Ident,
    /// The parameters, positional ones first.
    pub params: Vec<Param>,
    /// The body.
    pub body: SubQuery,
}

/// One function parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The name.
    pub name: Ident,
    /// The default, for keyword parameters.
    pub default: Option<Value>,
}

/// A storm command invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The command name.
    pub name: Ident,
    /// The arguments, in order.
    pub args: Vec<CmdArg>,
}

/// One command argument.
#[derive(Clone, Debug, PartialEq)]
pub enum CmdArg {
    /// An option name as written: `-x`, `--name` (the value, if any, is the next argument).
    Opt(Ident),
    /// A `{ query }` argument, passed as its text.
    Query(SubQuery),
    /// Any other value.
    Value(Value),
}

/// A lift.
#[derive(Clone, Debug, PartialEq)]
pub struct Lift {
    /// What to lift.
    pub kind: LiftKind,
    /// `reverse( ... )`: in descending index order.
    pub reverse: bool,
}

/// The kinds of lift.
#[derive(Clone, Debug, PartialEq)]
pub enum LiftKind {
    /// `inet:ipv4`, `inet:*`, `.created`, `*$form`, optionally compared: `inet:ipv4=1.2.3.4`.
    Prop {
        /// The form or property.
        prop: Name,
        /// The comparison, if any.
        cmp: Option<Comparison>,
    },
    /// `ps:contact:names*[=alice]`: array props with an element matching.
    Array {
        /// The array property.
        prop: Name,
        /// The element comparison.
        cmp: Comparison,
    },
    /// `#foo.bar`, `#foo=(2020, 2021)`.
    Tag {
        /// The tag.
        tag: TagName,
        /// A comparison on the tag's interval.
        cmp: Option<Comparison>,
    },
    /// `##meta`: nodes with a tag whose syn:tag node has the tag.
    TagTag {
        /// The tag on the syn:tag nodes.
        tag: TagName,
        /// A comparison on the tag's interval.
        cmp: Option<Comparison>,
    },
    /// `inet:ipv4#foo`.
    FormTag {
        /// The form.
        form: Name,
        /// The tag.
        tag: TagName,
        /// A comparison on the tag's interval.
        cmp: Option<Comparison>,
    },
    /// `#foo:score>3` / `inet:ipv4#foo:score=2`.
    TagProp {
        /// The form, for `form#tag:prop`.
        form: Option<Name>,
        /// The tag.
        tag: TagName,
        /// The tag property.
        prop: Name,
        /// The comparison.
        cmp: Option<Comparison>,
    },
}

/// A comparator and the value compared against.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The comparator.
    pub cmpr: Cmpr,
    /// The value.
    pub value: Value,
}

/// A comparator as Synapse names it: `=`, `<=`, `~=`, `@=`, `?=`, and named ones without their
/// star: `*range=` is `range=`, `*in=` is `in=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmpr {
    /// Where it was written (star included).
    pub span: Span,
    /// The comparator's name.
    pub name: String,
}

/// A tag name: `#foo.bar`, `#foo.$x`, `#$tag`; in filters and pivots also globs (`#foo.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct TagName {
    /// Where it was written, `#` included.
    pub span: Span,
    /// The name.
    pub kind: TagNameKind,
}

/// How a tag name is made.
#[derive(Clone, Debug, PartialEq)]
pub enum TagNameKind {
    /// Dot-separated segments.
    Parts(Vec<TagPart>),
    /// The whole name from a value (`#$tag`, `#$lib.foo()`).
    Expr(Box<Value>),
}

/// One segment of a tag name.
#[derive(Clone, Debug, PartialEq)]
pub enum TagPart {
    /// Written out (may hold `*` globs where globs are allowed).
    Lit(Ident),
    /// `$var`.
    Var(Ident),
}

/// A relative property, `:asn` or `:$name`.
#[derive(Clone, Debug, PartialEq)]
pub struct RelProp {
    /// Where it was written.
    pub span: Span,
    /// The property name without the leading `:`.
    pub name: Name,
}

/// A universal property, `.seen` or `.$name`.
#[derive(Clone, Debug, PartialEq)]
pub struct UnivProp {
    /// Where it was written.
    pub span: Span,
    /// The name as written, with its leading `.`; for `.$var` the value names the property
    /// without the dot.
    pub name: Name,
}

/// A property of the current node: relative or universal.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeProp {
    /// `:asn`.
    Rel(RelProp),
    /// `.seen`.
    Univ(UnivProp),
}

/// A filter condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    /// Where it was written.
    pub span: Span,
    /// The condition.
    pub kind: CondKind,
}

/// The conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum CondKind {
    /// `not cond`.
    Not(Box<Cond>),
    /// `a and b` (`and`/`or` have equal precedence and group left).
    And(Box<Cond>, Box<Cond>),
    /// `a or b`.
    Or(Box<Cond>, Box<Cond>),
    /// `+:asn`, `+.seen`: the node has the property.
    HasProp(NodeProp),
    /// `+:asn=10`.
    PropCmp {
        /// The property.
        prop: NodeProp,
        /// The comparison.
        cmp: Comparison,
    },
    /// `+inet:fqdn`, `+inet:*`, `+inet:fqdn:zone`: the node is of the form / has the prop.
    HasAbsProp(Ident),
    /// `+inet:fqdn:zone=vertex.link`.
    AbsPropCmp {
        /// The full property.
        prop: Ident,
        /// The comparison.
        cmp: Comparison,
    },
    /// `+#foo`, `+#foo.*`.
    Tag(TagName),
    /// `+#foo@=2020`.
    TagCmp {
        /// The tag (glob).
        tag: TagName,
        /// The comparison on its interval.
        cmp: Comparison,
    },
    /// `+#foo:score`.
    HasTagProp {
        /// The tag (glob).
        tag: TagName,
        /// The tag property.
        prop: Name,
    },
    /// `+#foo:score>3`.
    TagPropCmp {
        /// The tag (glob).
        tag: TagName,
        /// The tag property.
        prop: Name,
        /// The comparison.
        cmp: Comparison,
    },
    /// `+{ query }` (at least one result) or `+{ query } = 2` (a result count).
    SubQuery {
        /// The subquery.
        query: SubQuery,
        /// The comparison on the count.
        cmp: Option<Comparison>,
    },
    /// `+:names*[=bob]`.
    Array {
        /// The array property.
        prop: RelProp,
        /// The element comparison.
        cmp: Comparison,
    },
    /// `+$x`, `+$(expr)`: the value's truth.
    Value(Value),
}

/// A pivot, join or walk.
#[derive(Clone, Debug, PartialEq)]
pub struct Pivot {
    /// Where to go.
    pub kind: PivotKind,
    /// A join (`-+>`, `<+-`, `-(v)+>`, ...): the inbound node is yielded too.
    pub join: bool,
}

/// The kinds of pivot.
#[derive(Clone, Debug, PartialEq)]
pub enum PivotKind {
    /// `-> *`: every node the node's props point to.
    Out,
    /// `<- *`: every node whose props point to the node.
    In,
    /// `-> form` / `-> (a, b)` / `-> $forms` / `-> form:prop`.
    To(Value),
    /// `<- form`: nodes of the form whose props point to the node.
    InFrom(Ident),
    /// `-> #`, `-> #foo.*`: syn:tag nodes; `None` means the leaf tags.
    Tags(Option<TagName>),
    /// `:prop -> *`.
    PropOut(RelProp),
    /// `:prop -> target`.
    Prop {
        /// The source property.
        prop: RelProp,
        /// The target form(s) or property.
        target: Value,
    },
    /// `-> { query }`.
    Raw(SubQuery),
    /// `-(verb)> target`, `<(verb)- target` (optionally compared: `-(v)> inet:ipv4 = 1.2.3.4`).
    Walk {
        /// Out to n2 nodes, or in from n1 nodes.
        dir: EdgeDir,
        /// The verb(s).
        verb: Value,
        /// The target forms.
        target: WalkTarget,
        /// A comparison on the target nodes' values.
        cmp: Option<Comparison>,
    },
    /// `--> *` / `<-- *`: all prop pivots and all edges.
    WalkAll(EdgeDir),
}

/// The direction of a light edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeDir {
    /// From the node (n1) to others.
    Out,
    /// From others to the node (n2).
    In,
}

/// Which nodes a walk goes to.
#[derive(Clone, Debug, PartialEq)]
pub enum WalkTarget {
    /// `*`.
    Any,
    /// Forms: a name, a list or a value.
    Forms(Value),
}

/// One edit in an edit block.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    /// Where it was written.
    pub span: Span,
    /// The edit.
    pub kind: EditKind,
}

/// How a value is assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOper {
    /// `=`.
    Set,
    /// `?=`: bad values are skipped.
    TrySet,
    /// `+=`: add to an array.
    Append,
    /// `-=`: remove from an array.
    Remove,
    /// `?+=`.
    TryAppend,
    /// `?-=`.
    TryRemove,
    /// `++=`: add several.
    AppendAll,
    /// `--=`: remove several.
    RemoveAll,
    /// `?++=`.
    TryAppendAll,
    /// `?--=`.
    TryRemoveAll,
}

/// The condition of a conditional property set.
#[derive(Clone, Debug, PartialEq)]
pub enum SetCond {
    /// `*unset=`: only if the property is unset.
    Unset,
    /// `*$var=`: the mode comes from a value.
    Expr(Value),
}

/// The edits.
#[derive(Clone, Debug, PartialEq)]
pub enum EditKind {
    /// `inet:ipv4=1.2.3.4`: add (or lift) a node, then edit it and the inbound nodes.
    NodeAdd {
        /// The form.
        form: Name,
        /// How the value is set (`=`, `?=`, ...).
        oper: SetOper,
        /// The value.
        value: Value,
    },
    /// `:asn=10`, `.seen=2020`, `:names+=x`.
    PropSet {
        /// The property.
        prop: NodeProp,
        /// How.
        oper: SetOper,
        /// The value.
        value: Value,
    },
    /// `:asn*unset=10`, `:asn*$mode?=10`.
    PropSetIf {
        /// The property.
        prop: RelProp,
        /// When to set.
        cond: SetCond,
        /// Whether bad values are skipped (`?=`).
        try_set: bool,
        /// The value.
        value: Value,
    },
    /// `-:asn`, `-.seen`.
    PropDel(NodeProp),
    /// `+#tag`, `+#tag=(2020, 2021)`, `+?#tag`, `+#tag?=x`.
    TagAdd {
        /// The tag.
        tag: TagName,
        /// `+?#tag`: bad tag names are skipped.
        try_name: bool,
        /// The interval, with whether bad intervals are skipped (`?=`).
        value: Option<(bool, Value)>,
    },
    /// `-#tag`.
    TagDel(TagName),
    /// `+#tag:prop=value`.
    TagPropSet {
        /// The tag.
        tag: TagName,
        /// The tag property.
        prop: Name,
        /// How.
        oper: SetOper,
        /// The value.
        value: Value,
    },
    /// `-#tag:prop`.
    TagPropDel {
        /// The tag.
        tag: TagName,
        /// The tag property.
        prop: Name,
    },
    /// `+(verb)> {q}` / `<(verb)+ {q}`, and with `del` `-(verb)> {q}` / `<(verb)- {q}`.
    Edge {
        /// Add or delete.
        del: bool,
        /// Out from the node, or in to it.
        dir: EdgeDir,
        /// The verb.
        verb: Value,
        /// The other nodes: a subquery or a value (`$node`, a list).
        target: Value,
    },
    /// `( inet:ipv4=1.2.3.4 :asn=1 )`: edits on the added node only.
    Parens {
        /// The node add.
        add: Box<Edit>,
        /// The edits applied to it.
        edits: Vec<Edit>,
    },
}

/// A value.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Where it was written.
    pub span: Span,
    /// The value.
    pub kind: ValueKind,
}

/// Binary operators of `$( ... )` expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `or`.
    Or,
    /// `and`.
    And,
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `~=` (regex search).
    Regex,
    /// `^=` (prefix).
    Prefix,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (floors for integers).
    Div,
    /// `%`.
    Mod,
    /// `**`.
    Pow,
}

/// The values.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A string: unquoted words, quoted strings.
    Str(String),
    /// An integer literal of an expression.
    Int(i128),
    /// A decimal literal of an expression (`1.5`), kept as written (Synapse uses `Decimal`).
    Decimal(String),
    /// A float (an unquoted `1e3`-style number in a `[...]`/`{...}` literal).
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `(a, b)` / `[a, b]`.
    List(Vec<Value>),
    /// `{"a": 1}`.
    Dict(Vec<(Value, Value)>),
    /// `` `text {expr}` ``: the parts, texts as `Str`.
    Format(Vec<Value>),
    /// `$name`.
    Var(String),
    /// `base.key`: `$x.y`, `$x.$y`, `$x.(expr)`.
    Deref {
        /// The object.
        base: Box<Value>,
        /// The key.
        key: Box<Value>,
    },
    /// `func(args, name=value)`.
    Call {
        /// The called value.
        func: Box<Value>,
        /// Positional arguments.
        args: Vec<Value>,
        /// Keyword arguments.
        kwargs: Vec<(Ident, Value)>,
    },
    /// The current node's relative property value, `:asn`.
    RelProp(RelProp),
    /// The current node's universal property value, `.seen`.
    UnivProp(UnivProp),
    /// The current node's tag interval, `#foo`.
    Tag(TagName),
    /// The current node's tag property value, `#foo:score`.
    TagProp {
        /// The tag.
        tag: TagName,
        /// The property.
        prop: Name,
    },
    /// `{ query }` as a value.
    SubQuery(Box<SubQuery>),
    /// `${ query }`: a query object; `text` is the text between the braces.
    EmbedQuery {
        /// The query's text.
        text: String,
        /// The parsed query.
        query: Box<Query>,
    },
    /// `$( expr )` / `( expr )`: a parenthesized expression.
    Expr(Box<Value>),
    /// `left op right`.
    Binary {
        /// The operator.
        op: BinOp,
        /// The left operand.
        left: Box<Value>,
        /// The right operand.
        right: Box<Value>,
    },
    /// `not x`.
    Not(Box<Value>),
    /// `-x`.
    Neg(Box<Value>),
}

/// `lookup`/`search` mode input: the words to look up, then an optional query.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    /// The words (quoted ones unquoted).
    pub terms: Vec<Ident>,
    /// The query after `|`.
    pub query: Option<Query>,
}
