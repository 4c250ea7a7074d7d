//! Storm's terminals and the contextual lexer.
//!
//! Synapse lexes Storm with lark's *contextual* lexer: in each parser state only the terminals
//! that state can accept (plus whitespace and comments) are tried, in one fixed order (priority,
//! then maximum width, then pattern length, then name), and the first that matches wins. A
//! string terminal that a same-priority regex terminal of the same state also matches in full
//! (`in` and `VARTOKN`) is not tried on its own: the regex match is re-typed when its text equals
//! the string. Every terminal here is a hand-written matcher with the exact greedy/lazy and
//! look-around behaviour of the regex it stands for, so the same text splits into the same
//! tokens in the same states.
//!
//! Positions are byte offsets into the query text.

use std::sync::OnceLock;

/// Declares the terminals in lark's global lexing order, with their lark names, the English
/// names Synapse prints in syntax errors, and their priorities.
macro_rules! terminals {
    ($($var:ident $name:literal $english:literal $prio:literal;)*) => {
        /// A Storm terminal (token type). The declaration order is lark's lexing order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Term { $($var,)* }

        /// Every terminal, in lexing order.
        pub const ALL_TERMS: &[Term] = &[$(Term::$var,)*];

        impl Term {
            /// The terminal's name in Synapse's grammar (`PROPS`, `_RIGHTPIVOT`, `$END`).
            pub fn name(self) -> &'static str {
                match self { $(Term::$var => $name,)* }
            }

            /// The English name Synapse uses for it in `BadSyntax` messages.
            pub fn english(self) -> &'static str {
                match self { $(Term::$var => $english,)* }
            }

            fn priority(self) -> i8 {
                match self { $(Term::$var => $prio,)* }
            }
        }
    };
}

terminals! {
    CmdOpt "CMDOPT" "command line option" 4;
    Continue "CONTINUE" "continue" 4;
    Return "_RETURN" "return" 4;
    Break "BREAK" "break" 4;
    Stop "_STOP" "stop" 4;
    Emit "_EMIT" "emit" 4;
    WalkJoinN1 "_WALKNJOINN1" "--+>" 4;
    WalkJoinN2 "_WALKNJOINN2" "<+--" 4;
    ModSetMulti "MODSETMULTI" "++= or --=" 4;
    LeftPivot "_LEFTPIVOT" "<-" 4;
    LeftJoin "_LEFTJOIN" "<+-" 4;
    RightJoin "_RIGHTJOIN" "-+>" 4;
    WalkPivotN1 "_WALKNPIVON1" "-->" 4;
    WalkPivotN2 "_WALKNPIVON2" "<--" 4;
    ModSet "MODSET" "+= or -=" 4;
    RightPivot "_RIGHTPIVOT" "->" 4;
    MatchHashWild "_MATCHHASHWILD" "#" 3;
    WildProps "WILDPROPS" "property name potentially with wildcards" 3;
    Props "PROPS" "absolute property name" 3;
    ArrayCondStart "_ARRAYCONDSTART" "*[" 3;
    AllTags "ALLTAGS" "#" 3;
    Deref "_DEREF" "*" 3;
    MatchHash "_MATCHHASH" "#" 3;
    CaseBare "CASEBARE" "case value" 2;
    MCaseBare "MCASEBARE" "case multi-value" 2;
    ExprNeg "EXPRNEG" "-" 2;
    CmdName "CMDNAME" "command name" 2;
    EmbedProps "EMBEDPROPS" "absolute property name with embed properties" 2;
    ExprUnivName "EXPRUNIVNAME" "universal property" 2;
    UnivName "UNIVNAME" "universal property" 2;
    CComment "CCOMMENT" "C comment" 2;
    ByName "BYNAME" "named comparison operator" 2;
    CppComment "CPPCOMMENT" "c++ comment" 2;
    Bool "BOOL" "boolean" 2;
    EmptyKw "_EMPTY" "empty" 2;
    Null "NULL" "null" 2;
    Else "_ELSE" "else" 2;
    Fini "_FINI" "fini" 2;
    Init "_INIT" "init" 2;
    NotOp "NOTOP" "not" 2;
    And "AND" "and" 2;
    ExprPow "EXPRPOW" "**" 2;
    Or "OR" "or" 2;
    EdgeAddN1Init "_EDGEADDN1INIT" "+(" 2;
    EdgeN1Init "_EDGEN1INIT" "-(" 2;
    LParNoSpace "_LPARNOSPACE" "(" 2;
    ColonNoSpace "_COLONNOSPACE" ":" 2;
    ExprColonNoSpace "_EXPRCOLONNOSPACE" ":" 2;
    Hash "_HASH" "#" 2;
    HashSpace "_HASHSPACE" "#" 2;
    ExprMinus "EXPRMINUS" "-" 2;
    DefaultCase "DEFAULTCASE" "default case" 2;
    ExprDivide "EXPRDIVIDE" "/" 2;
    ExprModulo "EXPRMODULO" "%" 2;
    ExprPlus "EXPRPLUS" "+" 2;
    ExprTimes "EXPRTIMES" "*" 2;
    Number "NUMBER" "number" 1;
    OctNumber "OCTNUMBER" "number" 1;
    HexNumber "HEXNUMBER" "number" 1;
    ListTokn "LISTTOKN" "unquoted list value" 1;
    Yield "YIELD" "yield" 1;
    TryModSetMulti "TRYMODSETMULTI" "?++= or ?--=" 1;
    TryModSet "TRYMODSET" "?+= or ?-=" 1;
    TrySet "TRYSET" "?=" 1;
    EdgeN2Init "_EDGEN2INIT" "<(" 0;
    CmprOther "CMPROTHER" "comparison operator" 0;
    ExprRelName "EXPRRELNAME" "relative property name" 0;
    RelName "RELNAME" "relative property name" 0;
    NonQuoteWord "NONQUOTEWORD" "unquoted value" 0;
    BaseProp "BASEPROP" "base property name" 0;
    ExprVarTokn "EXPRVARTOKN" "variable" 0;
    VarTokn "VARTOKN" "variable" 0;
    DoubleQuoted "DOUBLEQUOTEDSTRING" "double-quoted string" 0;
    SingleQuoted "SINGLEQUOTEDSTRING" "single-quoted string" 0;
    TripleQuoted "TRIPLEQUOTEDSTRING" "triple-quoted string" 0;
    WildTagSeg "WILDTAGSEGNOVAR" "tag segment potentially with asterisks" 0;
    ExprTagSeg "EXPRTAGSEGNOVAR" "non-variable tag segment" 0;
    TagSeg "TAGSEGNOVAR" "non-variable tag segment" 0;
    Function "FUNCTION" "function" 0;
    Reverse "_REVERSE" "reverse" 0;
    Switch "SWITCH" "switch" 0;
    Catch "CATCH" "catch" 0;
    Unset "UNSET" "unset" 0;
    While "WHILE" "while" 0;
    Elif "ELIF" "elif" 0;
    For "FOR" "for" 0;
    Try "TRY" "try" 0;
    EdgeN1JoinFini "_EDGEN1JOINFINI" ")+>" 0;
    EdgeN2JoinInit "_EDGEN2JOININIT" "<+(" 0;
    Not "_NOT" "not" 0;
    Cmpr "CMPR" "comparison operator" 0;
    ColonDollar "_COLONDOLLAR" ":$" 0;
    As "AS" "as" 0;
    CommaSpace "COMMASPACE" "," 0;
    If "IF" "if" 0;
    In "IN" "in" 0;
    EdgeAddN2Fini "_EDGEADDN2FINI" ")+" 0;
    EdgeN1Fini "_EDGEN1FINI" ")>" 0;
    EdgeN2Fini "_EDGEN2FINI" ")-" 0;
    EmbedQueryStart "_EMBEDQUERYSTART" "${" 0;
    EqSpace "EQSPACE" "=" 0;
    RSqbNoSpace "RSQBNOSPACE" "]" 0;
    CommaNoSpace "COMMANOSPACE" "," 0;
    EqNoSpace "EQNOSPACE" "=" 0;
    Backquote "BACKQUOTE" "`" 0;
    Colon "COLON" ":" 0;
    Comma "COMMA" "," 0;
    Dollar "DOLLAR" "$" 0;
    Dot "DOT" "." 0;
    Equal "EQUAL" "=" 0;
    LBrace "LBRACE" "{" 0;
    LPar "LPAR" "(" 0;
    LSqb "LSQB" "[" 0;
    RBrace "RBRACE" "}" 0;
    RPar "RPAR" ")" 0;
    RSqb "RSQB" "]" 0;
    SetTagOper "SETTAGOPER" "?" 0;
    VBar "VBAR" "|" 0;
    Wildcard "WILDCARD" "*" 0;
    FormatText "FORMATTEXT" "text within a format string" -1;
    CmdrTokn "CMDRTOKN" "An unquoted string parsed as a cmdr arg" -1;
    Ws "WS" "whitespace" -1;
    WhiteTokn "WHITETOKN" "An unquoted string terminated by whitespace" -1;
    End "$END" "end of input" -1;
}

/// The number of terminals, `$END` included.
pub const TERM_COUNT: usize = ALL_TERMS.len();

/// The terminals skipped between tokens.
const IGNORED: [Term; 3] = [Term::Ws, Term::CComment, Term::CppComment];

impl Term {
    /// The terminal with lark name `name`.
    pub fn from_name(name: &str) -> Option<Term> {
        ALL_TERMS.iter().copied().find(|t| t.name() == name)
    }

    /// The fixed text of a string terminal; `None` for pattern terminals.
    fn literal(self) -> Option<&'static str> {
        use Term::*;
        Some(match self {
            WalkJoinN1 => "--+>",
            WalkJoinN2 => "<+--",
            LeftJoin => "<+-",
            RightJoin => "-+>",
            WalkPivotN1 => "-->",
            WalkPivotN2 => "<--",
            RightPivot => "->",
            ArrayCondStart => "*[",
            And => "and",
            ExprPow => "**",
            Or => "or",
            EdgeAddN1Init => "+(",
            EdgeN1Init => "-(",
            DefaultCase | ExprTimes | Wildcard => "*",
            ExprDivide => "/",
            ExprModulo => "%",
            ExprPlus => "+",
            TrySet => "?=",
            Function => "function",
            Switch => "switch",
            Catch => "catch",
            Unset => "unset",
            While => "while",
            Elif => "elif",
            For => "for",
            Try => "try",
            EdgeN1JoinFini => ")+>",
            EdgeN2JoinInit => "<+(",
            Not => "not",
            As => "as",
            CommaSpace => ", ",
            If => "if",
            In => "in",
            EdgeAddN2Fini => ")+",
            EdgeN1Fini => ")>",
            EdgeN2Fini => ")-",
            EmbedQueryStart => "${",
            Backquote => "`",
            Colon => ":",
            Comma => ",",
            Dollar => "$",
            Dot => ".",
            Equal => "=",
            LBrace => "{",
            LPar => "(",
            LSqb => "[",
            RBrace => "}",
            RPar => ")",
            RSqb => "]",
            SetTagOper => "?",
            VBar => "|",
            _ => return None,
        })
    }

    /// Whether this is the string terminal for exactly `lit`.
    pub fn match_literal(self, lit: &str) -> bool {
        self.literal() == Some(lit)
    }

    /// Where this terminal's match starting at `pos` ends, if it matches there.
    pub fn match_at(self, text: &str, pos: usize) -> Option<usize> {
        if let Some(lit) = self.literal() {
            return text[pos..].starts_with(lit).then_some(pos + lit.len());
        }
        let end = pattern_match(self, &Scan { text }, pos)?;
        // Lark rejects zero-width terminals, so no pattern may match empty.
        (end > pos).then_some(end)
    }
}

/// A set of terminals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TermSet(u128);

impl TermSet {
    /// The empty set.
    pub const EMPTY: TermSet = TermSet(0);

    /// Add `term`.
    pub fn insert(&mut self, term: Term) {
        self.0 |= 1 << term as u8;
    }

    /// Add every member of `other`.
    pub fn union_with(&mut self, other: TermSet) {
        self.0 |= other.0;
    }

    /// Whether `term` is in the set.
    pub fn contains(self, term: Term) -> bool {
        self.0 & (1 << term as u8) != 0
    }

    /// The members, in lexing order.
    pub fn iter(self) -> impl Iterator<Item = Term> {
        ALL_TERMS.iter().copied().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<Term> for TermSet {
    fn from_iter<I: IntoIterator<Item = Term>>(iter: I) -> Self {
        let mut set = TermSet::EMPTY;
        for t in iter {
            set.insert(t);
        }
        set
    }
}

/// One token: its terminal and its byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// The terminal.
    pub term: Term,
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
}

/// Lexing failed at `pos`: no terminal of the state matches there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMatch {
    /// Where the unmatched text starts.
    pub pos: usize,
}

/// The lexer of one parser state: which terminals it tries, in order, and which string
/// terminals its regex terminals absorb.
#[derive(Clone, Debug)]
pub struct StateLexer {
    order: Vec<Term>,
    absorbed: TermSet,
}

impl StateLexer {
    /// The lexer for a state that accepts `accepts` (whitespace and comments are added).
    pub fn new(accepts: TermSet) -> StateLexer {
        let mut all = accepts;
        for t in IGNORED {
            all.insert(t);
        }
        all.0 &= !(1 << Term::End as u8);
        let absorbed: TermSet = all
            .iter()
            .filter(|s| all.iter().any(|r| absorbs(r, *s)))
            .collect();
        let order = all.iter().filter(|t| !absorbed.contains(*t)).collect();
        StateLexer { order, absorbed }
    }

    /// The terminals this lexer reports as expected when nothing matches (lark's `allowed`).
    pub fn allowed(&self) -> TermSet {
        self.order
            .iter()
            .copied()
            .filter(|t| !IGNORED.contains(t))
            .collect()
    }

    /// The next token at or after `pos`, skipping whitespace and comments; `Ok(None)` at the end.
    pub fn next(&self, text: &str, mut pos: usize) -> Result<Option<Token>, NoMatch> {
        while pos < text.len() {
            let Some((term, end)) = self
                .order
                .iter()
                .find_map(|t| t.match_at(text, pos).map(|end| (*t, end)))
            else {
                return Err(NoMatch { pos });
            };
            if IGNORED.contains(&term) {
                pos = end;
                continue;
            }
            let term = self.retype(term, &text[pos..end]);
            return Ok(Some(Token {
                term,
                start: pos,
                end,
            }));
        }
        Ok(None)
    }

    /// A regex match whose text equals an absorbed string terminal becomes that terminal.
    fn retype(&self, term: Term, value: &str) -> Term {
        self.absorbed
            .iter()
            .find(|s| s.literal() == Some(value) && absorbs(term, *s))
            .unwrap_or(term)
    }
}

/// The lexer over every terminal, used to name the offending token in a syntax error.
pub fn root_lexer() -> &'static StateLexer {
    static ROOT: OnceLock<StateLexer> = OnceLock::new();
    ROOT.get_or_init(|| StateLexer::new(ALL_TERMS.iter().copied().collect()))
}

/// Whether regex terminal `re` absorbs string terminal `s`: same priority, and `re` matches
/// all of `s`'s text on its own.
fn absorbs(re: Term, s: Term) -> bool {
    static TABLE: OnceLock<Vec<(Term, Term)>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let mut pairs = Vec::new();
            for &r in ALL_TERMS.iter().filter(|t| t.literal().is_none()) {
                for &s in ALL_TERMS {
                    if let Some(lit) = s.literal()
                        && r.priority() == s.priority()
                        && pattern_match(r, &Scan { text: lit }, 0) == Some(lit.len())
                    {
                        pairs.push((r, s));
                    }
                }
            }
            pairs
        })
        .contains(&(re, s))
}

// ---------------------------------------------------------------------------------------------
// Pattern matchers

/// Character-level helpers over the query text (Python `regex` semantics for `\w`, `\s`, `$`).
struct Scan<'a> {
    text: &'a str,
}

impl Scan<'_> {
    fn at(&self, pos: usize) -> Option<char> {
        self.text.get(pos..)?.chars().next()
    }

    fn before(&self, pos: usize) -> Option<char> {
        self.text.get(..pos)?.chars().next_back()
    }

    fn is(&self, pos: usize, pred: impl Fn(char) -> bool) -> bool {
        self.at(pos).is_some_and(pred)
    }

    fn after_is(&self, pos: usize, pred: impl Fn(char) -> bool) -> bool {
        self.before(pos).is_some_and(pred)
    }

    fn starts(&self, pos: usize, s: &str) -> bool {
        self.text.get(pos..).is_some_and(|rest| rest.starts_with(s))
    }

    /// The end of the longest run of chars satisfying `pred` from `pos` (`pos` itself when
    /// `pos` is past the end or inside a char).
    fn run(&self, pos: usize, pred: impl Fn(char) -> bool) -> usize {
        let rest = self.text.get(pos..).unwrap_or("");
        pos + rest.find(|c: char| !pred(c)).unwrap_or(rest.len())
    }

    /// Python's `$` without MULTILINE: the end, or just before a final newline.
    fn at_dollar(&self, pos: usize) -> bool {
        pos == self.text.len() || (pos + 1 == self.text.len() && self.text.ends_with('\n'))
    }
}

/// Python `regex`'s `\w`.
fn word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python `regex`'s `\s`.
fn space(c: char) -> bool {
    c.is_whitespace()
}

fn lower_word(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

fn name_start(c: char) -> bool {
    c.is_ascii_lowercase() || c == '_'
}

fn cmpr_char(c: char) -> bool {
    "@?!<>^~=".contains(c)
}

fn pattern_match(term: Term, s: &Scan, pos: usize) -> Option<usize> {
    use Term::*;
    let kw = |word: &str, follow: &dyn Fn(&Scan, usize) -> bool| -> Option<usize> {
        let end = pos + word.len();
        (s.starts(pos, word) && follow(s, end)).then_some(end)
    };
    let ws_or =
        |chars: &'static str| move |s: &Scan, p: usize| s.is(p, |c| space(c) || chars.contains(c));
    match term {
        CmdOpt => cmd_opt(s, pos),
        Continue => kw("continue", &ws_or("}")),
        Return => kw("return", &ws_or("(")),
        Break => kw("break", &ws_or("}")),
        Stop => kw("stop", &|s, p| {
            s.at_dollar(p) || s.is(p, |c| space(c) || c == '}')
        }),
        Emit => kw("emit", &ws_or("")),
        ModSetMulti => ["++=", "--="]
            .iter()
            .find(|l| s.starts(pos, l))
            .map(|l| pos + l.len()),
        LeftPivot => (s.starts(pos, "<-") && s.is(pos + 2, |c| !c.is_ascii_digit())).then(|| {
            let third = s.at(pos + 2).map_or(0, char::len_utf8);
            pos + 2 + third
        }),
        ModSet => ["+=", "-="]
            .iter()
            .find(|l| s.starts(pos, l))
            .map(|l| pos + l.len()),
        MatchHashWild => match_hash_wild(s, pos),
        WildProps => wild_props(s, pos),
        Props => full_prop(s, pos, false),
        EmbedProps => full_prop(s, pos, true),
        AllTags => (s.starts(pos, "#")
            && (s.starts(pos + 1, "//")
                || s.starts(pos + 1, "/*")
                || s.is(pos + 1, space)
                || s.at_dollar(pos + 1)
                || s.starts(pos + 1, "}")))
        .then_some(pos + 1),
        Deref => (s.starts(pos, "*") && s.starts(pos + 1, "$")).then_some(pos + 1),
        MatchHash => s.starts(pos, "#").then_some(pos + 1),
        CaseBare => case_bare(s, pos),
        MCaseBare => multi_case_bare(s, pos),
        ExprNeg => expr_neg(s, pos),
        CmdName => cmd_name(s, pos),
        ExprUnivName | UnivName => univ_name(s, pos),
        CComment => c_comment(s, pos),
        ByName => by_name(s, pos),
        CppComment => s.starts(pos, "//").then(|| s.run(pos + 2, |c| c != '\n')),
        Bool => ["true", "false"].iter().find_map(|w| kw(w, &value_end)),
        EmptyKw => kw("empty", &ws_or("{")),
        Null => kw("null", &value_end),
        Else => kw("else", &ws_or("{")),
        Fini => kw("fini", &ws_or("{")),
        Init => kw("init", &ws_or("{")),
        NotOp => kw("not", &ws_or("($")),
        LParNoSpace => (s.starts(pos, "(") && !s.after_is(pos, space)).then_some(pos + 1),
        ColonNoSpace | ExprColonNoSpace => {
            (s.starts(pos, ":") && !s.after_is(pos, space)).then_some(pos + 1)
        }
        Hash => (s.starts(pos, "#") && !s.after_is(pos, space)).then_some(pos + 1),
        HashSpace => (s.starts(pos, "#") && s.after_is(pos, space)).then_some(pos + 1),
        ExprMinus => (s.starts(pos, "-") && !s.after_is(pos, |c| c == '-')).then_some(pos + 1),
        Number => number(s, pos),
        OctNumber => radix_number(s, pos, "0o", |c| ('0'..='7').contains(&c)),
        HexNumber => radix_number(s, pos, "0x", |c| c.is_ascii_hexdigit()),
        ListTokn => list_tokn(s, pos),
        Yield => kw("yield", &ws_or("{")),
        TryModSetMulti => ["?++=", "?--="]
            .iter()
            .find(|l| s.starts(pos, l))
            .map(|l| pos + l.len()),
        TryModSet => ["?+=", "?-="]
            .iter()
            .find(|l| s.starts(pos, l))
            .map(|l| pos + l.len()),
        EdgeN2Init => (s.starts(pos, "<(")
            && edge_close_follows(s, pos + 2, |c| c == '-' || c == '+'))
        .then_some(pos + 2),
        CmprOther => cmpr_other(s, pos),
        ExprRelName | RelName => rel_name(s, pos),
        NonQuoteWord => non_quote_word(s, pos),
        BaseProp => base_prop(s, pos),
        ExprVarTokn | VarTokn => double_quoted(s, pos)
            .or_else(|| single_quoted(s, pos))
            .or_else(|| Some(s.run(pos, word))),
        DoubleQuoted => double_quoted(s, pos),
        SingleQuoted => single_quoted(s, pos),
        TripleQuoted => triple_quoted(s, pos, true),
        WildTagSeg => Some(s.run(pos, |c| word(c) || c == '*')),
        ExprTagSeg | TagSeg => Some(s.run(pos, word)),
        Reverse => kw("reverse", &ws_or("(")),
        Cmpr => ["<=", ">=", "!=", "~=", "^=", ">", "<"]
            .iter()
            .find(|l| s.starts(pos, l))
            .map(|l| pos + l.len()),
        ColonDollar => (s.starts(pos, ":$")
            && !s.after_is(pos, |c| word(c) || c == '\'' || c == '"'))
        .then_some(pos + 2),
        EqSpace => (s.starts(pos, "=") && (s.after_is(pos, space) || s.is(pos + 1, space)))
            .then_some(pos + 1),
        RSqbNoSpace => no_space_around(s, pos, "]"),
        CommaNoSpace => no_space_around(s, pos, ","),
        EqNoSpace => no_space_around(s, pos, "="),
        FormatText => format_text(s, pos),
        CmdrTokn => s
            .is(pos, |c| !space(c) && !"=\"'{}".contains(c))
            .then(|| s.run(pos, |c| !space(c) && c != '{' && c != '}')),
        Ws => Some(s.run(pos, space)),
        WhiteTokn => Some(s.run(pos, |c| !space(c) && c != '|')),
        _ => None,
    }
}

/// The look-ahead after `true`, `false` and `null`: the end, whitespace, or `),]}|=`.
fn value_end(s: &Scan, p: usize) -> bool {
    s.at_dollar(p) || s.is(p, |c| space(c) || "),]}|=".contains(c))
}

fn no_space_around(s: &Scan, pos: usize, ch: &str) -> Option<usize> {
    (s.starts(pos, ch) && !s.after_is(pos, space) && !s.is(pos + 1, space)).then_some(pos + 1)
}

/// `-name` after whitespace, not followed by `:`, `<`, `>` (which would make it something else).
fn cmd_opt(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, "-") || !s.after_is(pos, space) {
        return None;
    }
    let end = s.run(pos + 1, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    });
    (end > pos + 1 && !s.is(end, |c| ":<>".contains(c))).then_some(end)
}

const CMD_KEYWORDS: [&str; 23] = [
    "init", "empty", "fini", "function", "return", "emit", "stop", "yield", "break", "continue",
    "for", "while", "switch", "else", "elif", "if", "not", "or", "and", "try", "catch", "as",
    "reverse",
];

/// A command name: lowercase, at least two chars, not a keyword, followed by whitespace, `|`,
/// `}` or the end.
fn cmd_name(s: &Scan, pos: usize) -> Option<usize> {
    let keyword = CMD_KEYWORDS
        .iter()
        .any(|k| s.starts(pos, k) && !s.is(pos + k.len(), word));
    if keyword || !s.is(pos, |c| c.is_ascii_lowercase()) {
        return None;
    }
    let end = s.run(pos + 1, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.'
    });
    (end >= pos + 2 && (s.at_dollar(end) || s.is(end, |c| space(c) || c == '|' || c == '}')))
        .then_some(end)
}

/// The end of `name(SEP name)*` from `pos`, where `first` is the name's first-char class, `rest`
/// its other chars and `seps` the separators tried in order (the longest first).
fn dotted(
    s: &Scan,
    pos: usize,
    first: fn(char) -> bool,
    seps: &[&str],
    segfirst: fn(char) -> bool,
) -> Option<usize> {
    if !s.is(pos, first) {
        return None;
    }
    let mut end = s.run(pos + 1, lower_word);
    'more: loop {
        for sep in seps {
            let at = end + sep.len();
            if s.starts(end, sep) && s.is(at, segfirst) {
                end = s.run(at + 1, lower_word);
                continue 'more;
            }
        }
        return Some(end);
    }
}

/// `PROPS` (`[a-z_]\w*(:\w+)+([:.]\w+)*`) or, with `embeds`, `EMBEDPROPS` (`::` also separates);
/// neither may be followed by `:`, `.`, a name char or `-`.
fn full_prop(s: &Scan, pos: usize, embeds: bool) -> Option<usize> {
    if !s.is(pos, name_start) {
        return None;
    }
    let head = s.run(pos + 1, lower_word);
    if !(s.starts(head, ":") && s.is(head + 1, lower_word)) {
        return None;
    }
    let seps: &[&str] = if embeds {
        &["::", ":", "."]
    } else {
        &[":", "."]
    };
    let end = dotted(s, head + 1, lower_word, seps, lower_word)?;
    (!s.is(end, |c| lower_word(c) || ":.-".contains(c))).then_some(end)
}

/// `WILDPROPS`: `inet:*`, `inet:dns*`, `inet:dns:*`.
fn wild_props(s: &Scan, pos: usize) -> Option<usize> {
    if !s.is(pos, name_start) {
        return None;
    }
    let head = s.run(pos + 1, lower_word);
    let not_after = |e: usize| !s.is(e, |c| lower_word(c) || ":.-[".contains(c));
    if s.starts(head, ":*") {
        return not_after(head + 2).then_some(head + 2);
    }
    if !(s.starts(head, ":") && s.is(head + 1, lower_word)) {
        return None;
    }
    let mut end = dotted(s, head + 1, lower_word, &[":", "."], lower_word)?;
    if s.starts(end, ":*") {
        end += 1;
    }
    (s.starts(end, "*") && not_after(end + 1)).then_some(end + 1)
}

/// `UNIVNAME`: `.name([:.]name)*` after the start, whitespace or one of `|{([+=-`.
fn univ_name(s: &Scan, pos: usize) -> Option<usize> {
    let ok_before = pos == 0 || s.after_is(pos, |c| space(c) || "|{([+=-".contains(c));
    if !ok_before || !s.starts(pos, ".") {
        return None;
    }
    dotted(s, pos + 1, name_start, &[":", "."], lower_word)
}

/// `RELNAME`: `:` (not after a word char), an optional `.`, then names joined by `::`, `:`, `.`.
fn rel_name(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, ":") || s.after_is(pos, word) {
        return None;
    }
    let start = if s.starts(pos + 1, ".") {
        pos + 2
    } else {
        pos + 1
    };
    dotted(s, start, name_start, &["::", ":", "."], name_start)
}

/// `BASEPROP`: a name with `::`, `:` or `.` joined parts.
fn base_prop(s: &Scan, pos: usize) -> Option<usize> {
    dotted(s, pos, name_start, &["::", ":", "."], name_start)
}

/// `BYNAME`: word chars, then comparator chars of which the last is `<`, `>` or `=`.
fn by_name(s: &Scan, pos: usize) -> Option<usize> {
    let w = s.run(pos, word);
    if w == pos {
        return None;
    }
    let run = s.run(w, cmpr_char);
    s.text[w..run]
        .rfind(|c| "<>=".contains(c))
        .map(|i| w + i + 1)
}

/// `CMPROTHER`: a run of comparator chars that is not one of the plain `CMPR` operators.
fn cmpr_other(s: &Scan, pos: usize) -> Option<usize> {
    let excluded = ["<=", ">=", "<", ">", "!=", "~=", "^=", "?"]
        .iter()
        .any(|p| s.starts(pos, p))
        || (s.starts(pos, "=") && !s.is(pos + 1, cmpr_char));
    if excluded || !s.is(pos, cmpr_char) {
        return None;
    }
    let run = s.run(pos + 1, |c| "@!<>^~=".contains(c));
    // Give back chars until the next one may follow (only `!` may).
    (pos + 1..=run)
        .rev()
        .find(|&e| !s.is(e, |c| "@?<>^~=".contains(c)))
}

/// `NONQUOTEWORD`: an unquoted value, up to whitespace or one of `(),=]}|$`.
fn non_quote_word(s: &Scan, pos: usize) -> Option<usize> {
    if s.starts(pos, "//") || !s.is(pos, |c| word(c) || "-+?*/\\".contains(c)) {
        return None;
    }
    let first = s.at(pos).map_or(1, char::len_utf8);
    Some(s.run(pos + first, |c| !space(c) && !"(),=]}|$".contains(c)))
}

/// `LISTTOKN`: an unquoted list item, up to the next `,` or `)`, less trailing whitespace.
fn list_tokn(s: &Scan, pos: usize) -> Option<usize> {
    if !s.is(pos, |c| word(c) || "+-?*/\\".contains(c)) {
        return None;
    }
    let first = pos + s.at(pos).map_or(1, char::len_utf8);
    let stop = s.run(first, |c| c != ',' && c != ')');
    Some(first + s.text[first..stop].trim_end_matches(space).len())
}

/// `"…"`: up to the first `"` preceded by an even run of backslashes, on one line.
fn double_quoted(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, "\"") {
        return None;
    }
    let mut slashes = 0;
    for (i, c) in s.text[pos + 1..].char_indices() {
        match c {
            '\n' => return None,
            '"' if slashes % 2 == 0 => return Some(pos + 1 + i + 1),
            '\\' => slashes += 1,
            _ => slashes = 0,
        }
    }
    None
}

/// `'…'` (raw, may span lines), not followed by another `'`.
fn single_quoted(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, "'") {
        return None;
    }
    let close = pos + 1 + s.text[pos + 1..].find('\'')?;
    (!s.starts(close + 1, "'")).then_some(close + 1)
}

/// `'''…'''`, lazily; `dotall` lets it span lines.
fn triple_quoted(s: &Scan, pos: usize, dotall: bool) -> Option<usize> {
    if !s.starts(pos, "'''") {
        return None;
    }
    let close = pos + 3 + s.text[pos + 3..].find("'''")?;
    (dotall || !s.text[pos + 3..close].contains('\n')).then_some(close + 3)
}

/// A backtick string inside the look-ahead scanners: `` `(?:[^`\\]|\\.)*` ``.
fn backtick_quoted(s: &Scan, pos: usize) -> Option<usize> {
    escaped_until(s, pos, '`')
}

/// A `"…"` inside the look-ahead scanners: `"(?:[^"\\]|\\.)*"` (may span lines; an escaped
/// newline fails).
fn dq_escaped(s: &Scan, pos: usize) -> Option<usize> {
    escaped_until(s, pos, '"')
}

fn escaped_until(s: &Scan, pos: usize, quote: char) -> Option<usize> {
    if !s.is(pos, |c| c == quote) {
        return None;
    }
    let mut chars = s.text[pos + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some(pos + 1 + i + 1);
        }
        if c == '\\' {
            match chars.next() {
                Some((_, '\n')) | None => return None,
                Some(_) => {}
            }
        }
    }
    None
}

/// One balanced `( … )` group of the look-ahead scanners, with quoted strings inside.
fn paren_group(s: &Scan, pos: usize, depth: usize) -> Option<usize> {
    if !s.starts(pos, "(") || depth > 200 {
        return None;
    }
    let mut p = pos + 1;
    loop {
        let next = s.at(p)?;
        if next == ')' {
            return Some(p + 1);
        }
        let item = if !"()\"'`".contains(next) {
            Some(s.run(p, |c| !"()\"'`".contains(c)))
        } else if next == '(' {
            paren_group(s, p, depth + 1)
        } else if next == '`' {
            backtick_quoted(s, p)
        } else if next == '"' {
            dq_escaped(s, p)
        } else {
            triple_quoted(s, p, false).or_else(|| single_quoted(s, p))
        };
        p = item?;
    }
}

/// The end of the item sequence the look-ahead scanners skip: balanced groups, strings, and any
/// other char except those in `stops`.
fn skip_items(s: &Scan, mut p: usize, stops: &str) -> usize {
    while let Some(c) = s.at(p) {
        let item = match c {
            '(' => paren_group(s, p, 0),
            '\'' => triple_quoted(s, p, false).or_else(|| single_quoted(s, p)),
            '`' => backtick_quoted(s, p),
            '"' => dq_escaped(s, p),
            _ => None,
        };
        match item {
            Some(end) => p = end,
            None if stops.contains(c) => return p,
            None => p += c.len_utf8(),
        }
    }
    p
}

/// Whether a `)` followed by a char satisfying `after` closes the edge verb opened at `pos`.
fn edge_close_follows(s: &Scan, pos: usize, after: fn(char) -> bool) -> bool {
    let end = skip_items(s, pos, ")");
    s.starts(end, ")") && s.is(end + 1, after)
}

/// `EXPRNEG`: a unary minus, only before `$ : . # ( -` and not inside a comma-separated list.
fn expr_neg(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, "-") {
        return None;
    }
    if s.is(pos + 1, |c| !"$:.#(-".contains(c)) {
        return None;
    }
    let end = skip_items(s, pos + 1, ",)}");
    (!s.starts(end, ",")).then_some(pos + 1)
}

/// The look-ahead shared by the number terminals: the number is not followed by a char other
/// than whitespace, `})*/%+-=><!~`, nor (before any `,)}`) by a comma.
fn number_ends_here(s: &Scan, end: usize) -> bool {
    if s.is(end, |c| !space(c) && !"})*/%+-=><!~".contains(c)) {
        return false;
    }
    !s.starts(skip_items(s, end, ",)}"), ",")
}

/// `NUMBER`: an optionally negative decimal with an optional fraction.
fn number(s: &Scan, pos: usize) -> Option<usize> {
    let neg = s.starts(pos, "-");
    let signs: &[usize] = if neg { &[1, 0] } else { &[0] };
    for &sign in signs {
        let p = pos + sign;
        let digits = s.run(p, |c| c.is_ascii_digit());
        let mut cores = Vec::new();
        if s.starts(p, "0") && s.starts(digits, ".") {
            cores.push(digits);
        }
        if s.is(p, |c| ('1'..='9').contains(&c)) && !s.after_is(p, |c| c.is_ascii_digit()) {
            cores.extend((p + 1..=digits).rev());
        }
        let zeros = s.run(p, |c| c == '0');
        cores.extend(
            (p + 1..=zeros)
                .rev()
                .filter(|&e| !s.is(e, |c| ('1'..='9').contains(&c) || c == '.')),
        );
        for core in cores {
            let mut ends = Vec::new();
            if s.starts(core, ".") {
                let frac = s.run(core + 1, |c| c.is_ascii_digit());
                ends.extend((core + 1..=frac).rev());
            }
            ends.push(core);
            if let Some(end) = ends.into_iter().find(|&e| number_ends_here(s, e)) {
                return Some(end);
            }
        }
    }
    None
}

/// `HEXNUMBER` / `OCTNUMBER`: an optionally negative `0x…` / `0o…`.
fn radix_number(s: &Scan, pos: usize, prefix: &str, digit: fn(char) -> bool) -> Option<usize> {
    let p = if s.starts(pos, "-") { pos + 1 } else { pos };
    if !s.starts(p, prefix) {
        return None;
    }
    let end = s.run(p + 2, digit);
    (end > p + 2 && number_ends_here(s, end)).then_some(end)
}

/// `CCOMMENT`: `/* … */`.
fn c_comment(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, "/*") {
        return None;
    }
    // The first `*/` whose `*` is not the opening star.
    let close = pos + 2 + s.text[pos + 2..].find("*/")?;
    Some(close + 2)
}

/// `FORMATTEXT`: text of a backtick string up to an unescaped `` ` `` or `{`.
fn format_text(s: &Scan, pos: usize) -> Option<usize> {
    let mut p = pos;
    while let Some(c) = s.at(p) {
        if c == '\\' && !s.after_is(p, |b| b == '\\') {
            let run = s.run(p, |b| b == '\\');
            if (run - p) % 2 == 1 && s.is(run, |b| b == '`' || b == '{') {
                p = run + 1;
                continue;
            }
        }
        if c == '`' || c == '{' {
            break;
        }
        p += c.len_utf8();
    }
    Some(p)
}

/// `CASEBARE`: an unquoted switch case, after whitespace or `{`, before `: {`.
fn case_bare(s: &Scan, pos: usize) -> Option<usize> {
    if !s.after_is(pos, |c| space(c) || c == '{') || s.starts(pos, "*") {
        return None;
    }
    let end = s.run(pos, |c| !space(c) && !":\"'()".contains(c));
    let colon = s.run(end, space);
    let brace = s.run(colon + 1, space);
    (end > pos && s.starts(colon, ":") && s.starts(brace, "{")).then_some(end)
}

/// `MCASEBARE`: one unquoted value of a `(a, b):` switch case.
fn multi_case_bare(s: &Scan, pos: usize) -> Option<usize> {
    if !s.after_is(pos, |c| space(c) || c == '(' || c == ',') {
        return None;
    }
    let end = s.run(pos, |c| !space(c) && !":\"'(),".contains(c));
    let next = s.run(end, space);
    let ok = s.starts(next, ",") || (s.starts(next, ")") && s.starts(s.run(next + 1, space), ":"));
    (end > pos && ok).then_some(end)
}

/// `_MATCHHASHWILD`: a `#` opening a tag glob (a `*` follows in the tag) that no comparator
/// follows.
fn match_hash_wild(s: &Scan, pos: usize) -> Option<usize> {
    if !s.starts(pos, "#") {
        return None;
    }
    let parts = tag_parts(s, pos + 1, false);
    if !s.starts(parts, "*") {
        return None;
    }
    let rest = tag_parts(s, parts + 1, true);
    let q = s.run(rest, space);
    let cmpr_follows = s.is(q, cmpr_char) && !pivot_or_walk_at(s, q);
    (!cmpr_follows).then_some(pos + 1)
}

/// The end of a run of tag-name parts (word chars, `.`, `$`, quoted strings; with `more`
/// also `*` and `:`).
fn tag_parts(s: &Scan, mut p: usize, more: bool) -> usize {
    loop {
        let unit = match s.at(p) {
            Some(c) if word(c) || c == '.' || c == '$' => Some(p + c.len_utf8()),
            Some(c) if more && (c == '*' || c == ':') => Some(p + 1),
            Some('"') => dq_escaped(s, p),
            Some('\'') => single_quoted(s, p),
            _ => None,
        };
        match unit {
            Some(end) => p = end,
            None => return p,
        }
    }
}

/// Whether `<(…)-`, `<+` or `<-x` (a walk, join or pivot, not a comparator) starts at `q`.
fn pivot_or_walk_at(s: &Scan, q: usize) -> bool {
    (s.starts(q, "<(") && edge_close_follows(s, q + 2, |c| c == '-'))
        || s.starts(q, "<+")
        || (s.starts(q, "<-") && s.is(q + 2, |c| !c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex1(term: Term, text: &str) -> Option<&str> {
        term.match_at(text, 0).map(|e| &text[..e])
    }

    #[test]
    fn numbers_stop_where_the_regex_does() {
        assert_eq!(lex1(Term::Number, "10 "), Some("10"));
        assert_eq!(lex1(Term::Number, "1.5)"), Some("1.5"));
        assert_eq!(lex1(Term::Number, "-3"), Some("-3"));
        assert_eq!(lex1(Term::Number, "1e3"), None);
        assert_eq!(lex1(Term::Number, "007"), None);
        assert_eq!(lex1(Term::Number, "0.5"), Some("0.5"));
        // A number followed (before any `)`) by a comma is a list item, not a number.
        assert_eq!(lex1(Term::Number, "1, 2)"), None);
        assert_eq!(lex1(Term::Number, "1)"), Some("1"));
        assert_eq!(lex1(Term::HexNumber, "0x1f "), Some("0x1f"));
    }

    #[test]
    fn words_and_names() {
        assert_eq!(lex1(Term::NonQuoteWord, "1.2.3.4 "), Some("1.2.3.4"));
        assert_eq!(
            lex1(Term::NonQuoteWord, "http://x.com/a?b=c"),
            Some("http://x.com/a?b")
        );
        assert_eq!(lex1(Term::NonQuoteWord, "//x"), None);
        assert_eq!(lex1(Term::Props, "inet:ipv4 "), Some("inet:ipv4"));
        assert_eq!(lex1(Term::Props, "inet:ipv4-x"), None);
        assert_eq!(lex1(Term::WildProps, "inet:* "), Some("inet:*"));
        assert_eq!(lex1(Term::WildProps, "inet:dns:* "), Some("inet:dns:*"));
        assert_eq!(lex1(Term::CmdName, "limit 10"), Some("limit"));
        assert_eq!(lex1(Term::CmdName, "for "), None);
        assert_eq!(lex1(Term::CmdName, "format "), Some("format"));
        assert_eq!(lex1(Term::ListTokn, "foo bar , x"), Some("foo bar"));
        assert_eq!(lex1(Term::ByName, "range=("), Some("range="));
        assert_eq!(lex1(Term::CmprOther, "@=!?"), Some("@="));
        assert_eq!(lex1(Term::CmprOther, "<="), None);
        assert_eq!(lex1(Term::DoubleQuoted, r#""a\"b" c"#), Some(r#""a\"b""#));
        assert_eq!(lex1(Term::DoubleQuoted, r#""a\\" c"#), Some(r#""a\\""#));
        assert_eq!(lex1(Term::LeftPivot, "<- *"), Some("<- "));
        assert_eq!(lex1(Term::LeftPivot, "<-1"), None);
    }

    #[test]
    fn lookarounds_see_the_whole_text() {
        assert_eq!(Term::HashSpace.match_at("a #b", 2), Some(3));
        assert_eq!(Term::Hash.match_at("a #b", 2), None);
        assert_eq!(Term::UnivName.match_at("x .seen", 2), Some(7));
        assert_eq!(Term::UnivName.match_at("x.seen", 1), None);
        assert_eq!(Term::EdgeN2Init.match_at("<(refs)- *", 0), Some(2));
        assert_eq!(Term::EdgeN2Init.match_at("<(2)", 0), None);
        assert_eq!(Term::MatchHashWild.match_at("#foo.*", 0), Some(1));
        assert_eq!(Term::MatchHashWild.match_at("#foo.*=2020", 0), None);
        assert_eq!(Term::MatchHashWild.match_at("#foo", 0), None);
        assert_eq!(Term::ExprNeg.match_at("-$x", 0), Some(1));
        assert_eq!(Term::ExprNeg.match_at("-1", 0), None);
    }

    #[test]
    fn keywords_are_absorbed_by_same_priority_patterns() {
        assert!(absorbs(Term::VarTokn, Term::In));
        assert!(absorbs(Term::NonQuoteWord, Term::Wildcard));
        assert!(!absorbs(Term::NonQuoteWord, Term::ExprTimes));
        let lexer = StateLexer::new([Term::VarTokn, Term::In].into_iter().collect());
        let tok = lexer.next("in", 0).unwrap().unwrap();
        assert_eq!(tok.term, Term::In);
        let tok = lexer.next("  inx", 0).unwrap().unwrap();
        assert_eq!((tok.term, tok.start, tok.end), (Term::VarTokn, 2, 5));
    }
}
