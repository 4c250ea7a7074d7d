//! Storm's grammar as data: the rules of Synapse 2.256's Storm language, and their expansion
//! from EBNF into the plain productions the LALR table generator takes.
//!
//! The rules keep Synapse's rule and terminal names so that the generated tables (and with them
//! which tokens each parser state lexes, and where a syntax error is reported) match Synapse's.
//! For the same reason the EBNF expansion follows lark's: `x?` and `[x]` become two alternatives
//! in place, groups are multiplied out, and `x*` / `x+` become one left-recursive helper rule per
//! distinct repeated expression, shared by every rule that repeats the same expression.
//!
//! Notation: lowercase names (optionally `_`-prefixed) are rules, uppercase names terminals,
//! `"…"` literal terminals, `-> name` at the end of an alternative names that alternative.

use super::lexer::Term;
use std::collections::HashMap;

/// The start symbols, each a separate entry point of the parser.
pub const STARTS: [&str; 5] = ["query", "lookup", "search", "cmdrargs", "evalvalu"];

/// Storm's rules, in the order of Synapse's grammar file.
const RULES: &[(&str, &str)] = &[
    ("query", r#" "|"? _querystart? "#),
    ("lookup", r#" looklist [ "|" query ] "#),
    ("search", r#" looklist [ "|" query ] "#),
    (
        "_querystart",
        r#" _querystart "|"? (stormcmd | _oper | _editblock) | stormcmd | _oper | _editblock "#,
    ),
    ("_editblock", r#" "[" _editoper* "]" "#),
    (
        "_editoper",
        r#" editnodeadd | editpropset | editunivset | edittagpropset | edittagadd | editcondpropset
        | editpropsetmulti | editpropdel | editunivdel | edittagpropdel | edittagdel
        | editparens | edgeaddn1 | edgedeln1 | edgeaddn2 | edgedeln2 "#,
    ),
    ("editparens", r#" "(" editnodeadd _editoper* ")" "#),
    (
        "edittagadd",
        r#" "+" [SETTAGOPER] tagname [(EQSPACE | EQNOSPACE | TRYSET) _valu] "#,
    ),
    ("editunivdel", r#" EXPRMINUS univprop "#),
    ("edittagdel", r#" EXPRMINUS tagname "#),
    (
        "editpropset",
        r#" relprop (EQSPACE | EQNOSPACE | MODSET | TRYSET | TRYMODSET) _valu "#,
    ),
    ("editcondpropset", r#" relprop condsetoper _valu "#),
    (
        "editpropsetmulti",
        r#" relprop (MODSETMULTI | TRYMODSETMULTI) _valu "#,
    ),
    ("editpropdel", r#" EXPRMINUS relprop "#),
    (
        "editunivset",
        r#" univprop (EQSPACE | EQNOSPACE | MODSET | TRYSET | TRYMODSET) _valu "#,
    ),
    (
        "editnodeadd",
        r#" formname (EQSPACE | EQNOSPACE | MODSET | TRYSET | TRYMODSET) _valu "#,
    ),
    (
        "edittagpropset",
        r#" "+" tagprop (EQSPACE | EQNOSPACE | MODSET | TRYSET | TRYMODSET) _valu "#,
    ),
    ("edittagpropdel", r#" EXPRMINUS tagprop "#),
    (
        "condsetoper",
        r#" ("*" UNSET | _DEREF "$" _condvarvaluatom) "="
        | ("*" UNSET | _DEREF "$" _condvarvaluatom) "?=" -> condtrysetoper "#,
    ),
    (
        "_condvarvaluatom",
        r#" condvarvalue | condvarderef | condfunccall "#,
    ),
    ("condvarvalue", r#" VARTOKN -> varvalue "#),
    (
        "condvarderef",
        r#" _condvarvaluatom "." (VARTOKN | "$" VARTOKN | _condderefexpr) -> varderef "#,
    ),
    ("_condderefexpr", r#" "$"? conddollarexpr "#),
    ("conddollarexpr", r#" "(" expror ")" -> dollarexpr "#),
    (
        "condfunccall",
        r#" _condvarvaluatom _condcallargs -> funccall "#,
    ),
    (
        "_condcallargs",
        r#" _LPARNOSPACE [(_valu | VARTOKN | (VARTOKN | NONQUOTEWORD) (EQSPACE | EQNOSPACE) _valu) ("," (_valu | VARTOKN | (VARTOKN | NONQUOTEWORD) (EQSPACE | EQNOSPACE) _valu))*] ","? ")" "#,
    ),
    (
        "_oper",
        r#" stormfunc | initblock | emptyblock | finiblock | trycatch | subquery | _formpivot | formjoin
        | formpivotin | formjoinin | opervarlist | setitem | setvar | vareval | filtoper
        | operrelprop | forloop | whileloop | switchcase | BREAK | CONTINUE | return | emit | stop
        | _liftprop | ifstmt | yieldvalu | n1walk | n2walk | n1join | n2join | n1walknpivo | n2walknpivo
        | n1walknjoin | n2walknjoin | rawpivot "#,
    ),
    (
        "catchblock",
        r#" "catch" _valu "as" VARTOKN "{" query "}" "#,
    ),
    ("trycatch", r#" "try" "{" query "}" catchblock* "#),
    ("stop", r#" _STOP "#),
    ("return", r#" _RETURN "(" [ _valu ] ")" "#),
    ("emit", r#" _EMIT _valu "#),
    ("vareval", r#" _varvalu "#),
    ("setvar", r#" "$" VARTOKN "=" _valu "#),
    (
        "setitem",
        r#" "$" _varvaluatom "." (VARTOKN | "$" varvalue | formatstring | _derefexpr) (EQSPACE | EQNOSPACE) _valu "#,
    ),
    (
        "forloop",
        r#" "for" ("$" VARTOKN | varlist) "in" _valu baresubquery "#,
    ),
    ("whileloop", r#" "while" _valu baresubquery "#),
    ("subquery", r#" [YIELD] baresubquery "#),
    ("argvquery", r#" "{" query "}" "#),
    ("baresubquery", r#" "{" query "}" "#),
    ("casesubquery", r#" "{" query "}" -> baresubquery "#),
    (
        "_caseentry",
        r#" DOUBLEQUOTEDSTRING | SINGLEQUOTEDSTRING | CASEBARE "#,
    ),
    (
        "_mcaseentry",
        r#" DOUBLEQUOTEDSTRING | SINGLEQUOTEDSTRING | MCASEBARE "#,
    ),
    (
        "caseentry",
        r#" (DEFAULTCASE | _caseentry | "(" _mcaseentry ("," _mcaseentry)+ ")") ":" casesubquery "#,
    ),
    ("switchcase", r#" "switch" _varvalu "{" caseentry* "}" "#),
    ("yieldvalu", r#" YIELD _argvalu "#),
    ("initblock", r#" _INIT "{" query "}" "#),
    ("emptyblock", r#" _EMPTY "{" query "}" "#),
    ("finiblock", r#" _FINI "{" query "}" "#),
    (
        "ifstmt",
        r#" "if" ifclause ("elif" ifclause)* [_ELSE baresubquery] "#,
    ),
    ("ifclause", r#" _valu baresubquery "#),
    (
        "varlist",
        r#" "(" ["$" VARTOKN ("," "$" VARTOKN)*] ","? ")" "#,
    ),
    ("opervarlist", r#" varlist "=" _valu "#),
    (
        "_formpivot",
        r#" formpivot_pivottotags | formpivot_jointags | formpivot_pivotout | formpivot_ "#,
    ),
    (
        "formpivot_pivottotags",
        r#" _RIGHTPIVOT (ALLTAGS | tagmatch) "#,
    ),
    ("formpivot_jointags", r#" _RIGHTJOIN (ALLTAGS | tagmatch) "#),
    ("formpivot_pivotout", r#" _RIGHTPIVOT "*" "#),
    (
        "formpivot_",
        r#" _RIGHTPIVOT (PROPS | UNIVNAME | WILDPROPS | valulist | _varvalu) "#,
    ),
    (
        "formjoin",
        r#" _RIGHTJOIN "*" -> formjoin_pivotout
        | _RIGHTJOIN (PROPS | UNIVNAME | WILDPROPS | valulist | _varvalu) -> formjoin_formpivot "#,
    ),
    (
        "formpivotin",
        r#" _LEFTPIVOT "*" -> formpivotin_
        | _LEFTPIVOT (PROPS | UNIVNAME) -> formpivotin_pivotinfrom "#,
    ),
    (
        "formjoinin",
        r#" _LEFTJOIN "*" -> formjoinin_pivotin
        | _LEFTJOIN (PROPS | UNIVNAME) -> formjoinin_pivotinfrom "#,
    ),
    (
        "operrelprop",
        r#" relprop _RIGHTPIVOT ("*" | PROPS | UNIVNAME | valulist | _varvalu) -> operrelprop_pivot
        | relprop _RIGHTJOIN ("*" | PROPS | UNIVNAME | valulist | _varvalu) -> operrelprop_join "#,
    ),
    ("rawpivot", r#" _RIGHTPIVOT "{" query "}" "#),
    (
        "_liftprop",
        r#" liftformtag | liftpropby | liftprop | liftbyarray
        | liftbytagprop | liftbyformtagprop | liftbytag | lifttagtag | liftreverse "#,
    ),
    (
        "_wildprops",
        r#" WILDCARD | PROPS | WILDPROPS | valulist | _varvalu "#,
    ),
    (
        "n1walk",
        r#" _EDGEN1INIT (walklist | varlist | _varvalu | relpropvalu | univpropvalu | tagvalu | tagpropvalu | TRIPLEQUOTEDSTRING | formatstring | VARTOKN | embedquery | baresubquery | NONQUOTEWORD | PROPS) _EDGEN1FINI _wildprops [ _cmpr _valu ] "#,
    ),
    (
        "n2walk",
        r#" _EDGEN2INIT _valu _EDGEN2FINI _wildprops [ _cmpr _valu ] "#,
    ),
    (
        "n1join",
        r#" _EDGEN1INIT (walklist | varlist | _varvalu | relpropvalu | univpropvalu | tagvalu | tagpropvalu | TRIPLEQUOTEDSTRING | formatstring | VARTOKN | embedquery | baresubquery | NONQUOTEWORD | PROPS) _EDGEN1JOINFINI _wildprops [ _cmpr _valu ] "#,
    ),
    (
        "n2join",
        r#" _EDGEN2JOININIT _valu _EDGEN2FINI _wildprops [ _cmpr _valu ] "#,
    ),
    (
        "walklist",
        r#" ("(" (_varvalu | relpropvalu | univpropvalu | tagvalu | tagpropvalu | TRIPLEQUOTEDSTRING | formatstring | VARTOKN | NONQUOTEWORD | PROPS) ((",")|("," (_varvalu | relpropvalu | univpropvalu | tagvalu | tagpropvalu | TRIPLEQUOTEDSTRING | formatstring | VARTOKN | NONQUOTEWORD | PROPS))+ ","?) ")") -> valulist "#,
    ),
    ("n1walknpivo", r#" _WALKNPIVON1 "*" "#),
    ("n2walknpivo", r#" _WALKNPIVON2 "*" "#),
    ("n1walknjoin", r#" _WALKNJOINN1 "*" "#),
    ("n2walknjoin", r#" _WALKNJOINN2 "*" "#),
    (
        "edgeaddn1",
        r#" _EDGEADDN1INIT _valu _EDGEN1FINI (baresubquery | _varvalu) "#,
    ),
    (
        "edgedeln1",
        r#" _EDGEN1INIT _valu _EDGEN1FINI (baresubquery | _varvalu) "#,
    ),
    (
        "edgeaddn2",
        r#" _EDGEN2INIT _valu _EDGEADDN2FINI (baresubquery | _varvalu) "#,
    ),
    (
        "edgedeln2",
        r#" _EDGEN2INIT _valu _EDGEN2FINI (baresubquery | _varvalu) "#,
    ),
    (
        "liftreverse",
        r#" _REVERSE "(" (liftformtag | liftpropby | liftprop | liftbyarray | lifttagtag | liftbytag | liftbytagprop | liftbyformtagprop) ")" "#,
    ),
    (
        "liftformtag",
        r#" (PROPS | UNIVNAME | WILDPROPS | derefprops) tagname [_cmpr _valu] "#,
    ),
    (
        "liftpropby",
        r#" (PROPS | EMBEDPROPS | UNIVNAME | derefprops) _cmpr _valu "#,
    ),
    (
        "liftprop",
        r#" (PROPS | UNIVNAME | WILDPROPS | derefprops) "#,
    ),
    (
        "liftbyarray",
        r#" (PROPS | EMBEDPROPS | UNIVNAME | derefprops) "*[" _safe_cmpr _valu "]" "#,
    ),
    (
        "lifttagtag",
        r#" (_HASH | _HASHSPACE) tagname [_cmpr _valu] "#,
    ),
    (
        "liftbytag",
        r#" (tagname | tagnamewithspace) [_cmpr _valu] "#,
    ),
    (
        "liftbytagprop",
        r#" (tagprop | tagpropwithspace) [_cmpr _valu] "#,
    ),
    ("liftbyformtagprop", r#" formtagprop [_cmpr _valu] "#),
    (
        "tagprop",
        r#" tagname _COLONNOSPACE (BASEPROP | _varvalu) "#,
    ),
    (
        "tagpropwithspace",
        r#" tagnamewithspace _COLONNOSPACE (BASEPROP | _varvalu) -> tagprop "#,
    ),
    (
        "formtagprop",
        r#" (PROPS | UNIVNAME | WILDPROPS | derefprops) tagname _COLONNOSPACE (BASEPROP | _varvalu) "#,
    ),
    ("_funcarg", r#" (VARTOKN [EQNOSPACE _valu]) "#),
    ("funcargs", r#" "(" (_funcarg ("," _funcarg)* )? ")" "#),
    (
        "stormfunc",
        r#" "function" VARTOKN funcargs "{" query "}" "#,
    ),
    ("stormcmd", r#" CMDNAME stormcmdargs? "#),
    ("stormcmdargs", r#" _stormcmdarg "#),
    (
        "_stormcmdarg",
        r#" _stormcmdarg? ((CMDOPT (EQNOSPACE (argvquery | _argvalu | wordtokn))?) | argvquery | _argvalu | wordtokn) "#,
    ),
    (
        "wordtokn",
        r#" wordtokn (COMMANOSPACE | EQNOSPACE | RSQBNOSPACE) (NONQUOTEWORD | PROPS | CMDNAME | (EXPRPLUS | EXPRMINUS | CMPR | "[" | "." | _RIGHTPIVOT)+ (NONQUOTEWORD | CMDNAME | COMMASPACE)?)
        | (EXPRPLUS | EXPRMINUS | CMPR | "[" | "." | _RIGHTPIVOT)+ (NONQUOTEWORD | CMDNAME | COMMASPACE)?
        | NONQUOTEWORD COMMASPACE? | CMDNAME | PROPS "#,
    ),
    ("cmdrargs", r#" _cmdrargv (EQNOSPACE? _cmdrargv)* "#),
    (
        "_cmdrargv",
        r#" baresubquery | DOUBLEQUOTEDSTRING | SINGLEQUOTEDSTRING | CMDRTOKN | CMDOPT (EQNOSPACE (CMDRTOKN | SINGLEQUOTEDSTRING | DOUBLEQUOTEDSTRING | baresubquery))? "#,
    ),
    ("tagname", r#" _HASH (_varvalu | _tagsegs) "#),
    (
        "tagnamewithspace",
        r#" _HASHSPACE (_varvalu | _tagsegs) -> tagname "#,
    ),
    (
        "_tagsegs",
        r#" TAGSEGNOVAR ( "." (TAGSEGNOVAR | "$" varvalue))* "#,
    ),
    (
        "tagmatch",
        r#" _MATCHHASH (_varvalu | _tagsegs) | _MATCHHASHWILD _wildtagsegs "#,
    ),
    (
        "_wildtagsegs",
        r#" WILDTAGSEGNOVAR ( "." (WILDTAGSEGNOVAR | "$" varvalue))* "#,
    ),
    (
        "_cmpr",
        r#" "*" BYNAME | CMPR | CMPROTHER | EQSPACE | EQNOSPACE | TRYSET | SETTAGOPER "#,
    ),
    (
        "_safe_cmpr",
        r#" BYNAME | CMPR | CMPROTHER | EQSPACE | EQNOSPACE | TRYSET | SETTAGOPER "#,
    ),
    (
        "_rootvalu",
        r#" _varvalu | relpropvalu | univpropvalu | tagvalu | tagpropvalu | TRIPLEQUOTEDSTRING
        | DOUBLEQUOTEDSTRING | SINGLEQUOTEDSTRING | formatstring | _dollarexprs "#,
    ),
    ("_argvalu", r#" _rootvalu | valulist | embedquery "#),
    ("_basevalu", r#" _argvalu | baresubquery "#),
    ("_valu", r#" _basevalu | NONQUOTEWORD "#),
    ("evalvalu", r#" _valu "#),
    (
        "exprdict",
        r#" "{" ((_exprvalu | VARTOKN) (":" | _EXPRCOLONNOSPACE) (_exprvalu | VARTOKN) ("," (_exprvalu | VARTOKN) (":" | _EXPRCOLONNOSPACE) (_exprvalu | VARTOKN))* ","? )? "}" "#,
    ),
    (
        "exprlist",
        r#" "[" ((_exprvalu | VARTOKN) ("," (_exprvalu | VARTOKN))* ","? )? "]" "#,
    ),
    (
        "_exprvalu",
        r#" NUMBER | HEXNUMBER | OCTNUMBER | BOOL | NULL | exprlist | exprdict | _exprvarvalu | exprrelpropvalu
        | exprunivpropvalu | exprtagvalu | exprtagpropvalu | TRIPLEQUOTEDSTRING | DOUBLEQUOTEDSTRING
        | SINGLEQUOTEDSTRING | formatstring | _innerdollarexprs | embedquery "#,
    ),
    ("_innerdollarexprs", r#" "$"? innerdollaroper "#),
    (
        "innerdollaroper",
        r#" innerdollarexpr
        | innerdollaroper _exprcallargs -> funccall
        | innerdollaroper "." (EXPRVARTOKN | "$" EXPRVARTOKN | formatstring | _innerderefexpr) -> varderef "#,
    ),
    ("_innerderefexpr", r#" "$"? innerdollarexpr "#),
    ("innerdollarexpr", r#" "(" expror ")" -> dollarexpr "#),
    (
        "exprrelpropvalu",
        r#" EXPRRELNAME -> relpropvalu | _COLONDOLLAR _exprvarvaluatom -> relpropvalu "#,
    ),
    (
        "exprunivpropvalu",
        r#" EXPRUNIVNAME -> univpropvalu | "." _exprvarvalu -> univpropvalu "#,
    ),
    (
        "exprtagvalu",
        r#" exprtagname -> tagvalu | exprtagnamewithspace -> tagvalu "#,
    ),
    (
        "exprtagname",
        r#" _HASH (_exprvarvalu | _exprtagsegs) -> tagname "#,
    ),
    (
        "exprtagnamewithspace",
        r#" _HASHSPACE (_exprvarvalu | _exprtagsegs) -> tagname "#,
    ),
    (
        "_exprtagsegs",
        r#" EXPRTAGSEGNOVAR ( "." (EXPRTAGSEGNOVAR | "$" exprvarvalue))* "#,
    ),
    (
        "exprtagpropvalu",
        r#" exprtagprop -> tagpropvalu | exprtagpropwithspace -> tagpropvalu "#,
    ),
    (
        "exprtagprop",
        r#" exprtagname _EXPRCOLONNOSPACE (BASEPROP | _exprvarvalu) -> tagprop "#,
    ),
    (
        "exprtagpropwithspace",
        r#" exprtagnamewithspace _EXPRCOLONNOSPACE (BASEPROP | _exprvarvalu) -> tagprop "#,
    ),
    ("_exprvarvalu", r#" "$" _exprvarvaluatom "#),
    (
        "_exprvarvaluatom",
        r#" exprvarvalue | exprvarderef | exprfunccall "#,
    ),
    ("exprvarvalue", r#" EXPRVARTOKN -> varvalue "#),
    (
        "exprvarderef",
        r#" _exprvarvaluatom "." (VARTOKN | "$" VARTOKN | formatstring | _derefexpr) -> varderef "#,
    ),
    (
        "exprfunccall",
        r#" _exprvarvaluatom _exprcallargs -> funccall "#,
    ),
    (
        "_exprcallargs",
        r#" _LPARNOSPACE [(_valu | VARTOKN | (VARTOKN | NONQUOTEWORD) (EQSPACE | EQNOSPACE) _valu) ("," (_valu | VARTOKN | (VARTOKN | NONQUOTEWORD) (EQSPACE | EQNOSPACE) _valu))*] ","? ")" "#,
    ),
    (
        "listvalu",
        r#" LISTTOKN | _exprvarvalu | exprrelpropvalu
        | exprunivpropvalu | exprtagvalu | exprtagpropvalu
        | baresubquery | valulist | embedquery | TRIPLEQUOTEDSTRING
        | DOUBLEQUOTEDSTRING | SINGLEQUOTEDSTRING | formatstring | _innerdollarexprs "#,
    ),
    (
        "_lookvalu",
        r#" DOUBLEQUOTEDSTRING | SINGLEQUOTEDSTRING | WHITETOKN "#,
    ),
    ("looklist", r#" _lookvalu* "#),
    (
        "valulist",
        r#" "(" [listvalu ((",")|("," listvalu)+ ","?)] ")" "#,
    ),
    ("tagvalu", r#" tagname | tagnamewithspace "#),
    ("tagpropvalu", r#" tagprop | tagpropwithspace "#),
    ("relpropvalu", r#" RELNAME | _COLONDOLLAR _varvaluatom "#),
    ("univpropvalu", r#" univprop "#),
    ("embedquery", r#" _EMBEDQUERYSTART query "}" "#),
    ("_varvalu", r#" "$" _varvaluatom "#),
    ("_varvaluatom", r#" varvalue | varderef | funccall "#),
    ("varvalue", r#" VARTOKN "#),
    (
        "varderef",
        r#" _varvaluatom "." (VARTOKN | "$" VARTOKN | formatstring | _derefexpr) "#,
    ),
    ("funccall", r#" _varvaluatom _callargs "#),
    (
        "_callargs",
        r#" _LPARNOSPACE [(_valu | VARTOKN | (VARTOKN | NONQUOTEWORD) (EQSPACE | EQNOSPACE) _valu) ("," (_valu | VARTOKN | (VARTOKN | NONQUOTEWORD) (EQSPACE | EQNOSPACE) _valu))*] ","? ")" "#,
    ),
    (
        "filtoper",
        r#" (EXPRPLUS | EXPRMINUS) _cond
        | _EDGEADDN1INIT _condexpr ")" -> filtopermust
        | _EDGEN1INIT _condexpr ")" -> filtopernot "#,
    ),
    (
        "_cond",
        r#" notcond | "(" _condexpr ")"
        | hasrelpropcond | relpropcond
        | abspropcond | hasabspropcond
        | tagpropcond | hastagpropcond
        | tagcond | tagvalucond
        | condsubq | arraycond
        | _varvalu | _reqdollarexprs "#,
    ),
    ("notcond", r#" _NOT _cond "#),
    ("hasrelpropcond", r#" relprop | univprop "#),
    ("relpropcond", r#" relpropvalue _cmpr _valu "#),
    ("relpropvalue", r#" relprop | univprop "#),
    ("abspropcond", r#" PROPS _cmpr _valu "#),
    ("hasabspropcond", r#" (PROPS | WILDPROPS) "#),
    (
        "tagpropcond",
        r#" tagmatch _COLONNOSPACE (BASEPROP | _varvalu)  _cmpr _valu "#,
    ),
    (
        "hastagpropcond",
        r#" tagmatch _COLONNOSPACE (BASEPROP | _varvalu) "#,
    ),
    ("tagvalucond", r#" tagmatch _cmpr _valu "#),
    ("tagcond", r#" tagmatch "#),
    ("condsubq", r#" "{" query "}" [ _cmpr _valu] "#),
    (
        "arraycond",
        r#" relprop _ARRAYCONDSTART _safe_cmpr _valu "]" "#,
    ),
    ("_condexpr", r#" _cond | orexpr | andexpr "#),
    ("orexpr", r#" _condexpr "or" _cond "#),
    ("andexpr", r#" _condexpr "and" _cond "#),
    ("_formatexpr", r#" "{" expror "}" "#),
    ("formatstring", r#" "`" (_formatexpr | FORMATTEXT)* "`" "#),
    ("univprop", r#" UNIVNAME | "." _varvalu "#),
    ("formname", r#" PROPS | derefprops "#),
    ("relprop", r#" RELNAME | _COLONDOLLAR _varvaluatom "#),
    ("derefprops", r#" _DEREF _varvalu "#),
    ("_dollarexprs", r#" "$"? dollaroper "#),
    (
        "dollaroper",
        r#" dollarexpr
        | dollaroper _callargs -> funccall
        | dollaroper "." (VARTOKN | "$" VARTOKN | formatstring | _derefexpr) -> varderef "#,
    ),
    ("_derefexpr", r#" "$"? dollarexpr "#),
    ("dollarexpr", r#" "(" expror ")" "#),
    ("_reqdollarexprs", r#" "$" dollaroper "#),
    ("expror", r#" exprand | expror OR exprand "#),
    ("exprand", r#" exprnot | exprand AND exprnot "#),
    ("exprnot", r#" exprcmp | NOTOP exprcmp "#),
    (
        "exprcmp",
        r#" exprsum | exprcmp (CMPR | EQSPACE | EQNOSPACE) exprsum "#,
    ),
    (
        "exprsum",
        r#" exprproduct | exprsum (EXPRPLUS | EXPRMINUS) exprproduct "#,
    ),
    (
        "exprproduct",
        r#" exprunary | exprproduct (EXPRTIMES | EXPRDIVIDE | EXPRMODULO) exprunary "#,
    ),
    ("exprunary", r#" exprpow | EXPRNEG exprunary "#),
    ("exprpow", r#" _expratom | exprpow EXPRPOW _expratom "#),
    ("_expratom", r#" _exprvalu "#),
];

/// A grammar symbol after expansion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sym {
    /// A terminal.
    T(Term),
    /// A rule, by index into [`Grammar::names`].
    N(usize),
}

/// One plain production: `lhs -> rhs`, built with `name` (the rule's or its alternative's).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Production {
    /// The rule this production belongs to.
    pub lhs: usize,
    /// Its symbols.
    pub rhs: Vec<Sym>,
    /// The name of the tree node it builds: the alternative's alias, else the rule's name.
    pub name: String,
}

/// The expanded grammar.
#[derive(Debug)]
pub struct Grammar {
    /// Rule names; helper rules for repetitions are named `__<rule>_star_<n>` / `_plus_<n>`.
    pub names: Vec<String>,
    /// Every production.
    pub productions: Vec<Production>,
}

impl Grammar {
    /// The rule index of `name`.
    pub fn rule(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// An EBNF expression tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Ebnf {
    Sym(Sym),
    /// Alternatives.
    Alts(Vec<Ebnf>),
    /// A sequence.
    Seq(Vec<Ebnf>),
    Opt(Box<Ebnf>),
    Star(Box<Ebnf>),
    Plus(Box<Ebnf>),
}

/// Build the expanded grammar. Panics only if [`RULES`] itself is malformed (a unit test
/// builds it).
pub fn build() -> Grammar {
    let mut names: Vec<String> = RULES.iter().map(|(n, _)| n.to_string()).collect();
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let mut expander = Expander {
        names: &mut names,
        helpers: HashMap::new(),
        counter: 0,
        productions: Vec::new(),
    };
    for (i, (name, text)) in RULES.iter().enumerate() {
        let alts =
            parse_rule(text, &index).unwrap_or_else(|e| panic!("storm grammar rule {name}: {e}"));
        expander.add_rule(i, name, alts);
    }
    let productions = expander.productions;
    Grammar { names, productions }
}

struct Expander<'a> {
    names: &'a mut Vec<String>,
    helpers: HashMap<Ebnf, usize>,
    counter: usize,
    productions: Vec<Production>,
}

impl Expander<'_> {
    /// Expand the rule's alternatives (each with an optional alias) into productions.
    fn add_rule(&mut self, lhs: usize, name: &str, alts: Vec<(Ebnf, Option<String>)>) {
        let mut seen = Vec::new();
        for (alt, alias) in alts {
            let alt = self.lower(name, alt);
            for rhs in flatten(&alt) {
                if !seen.contains(&rhs) {
                    seen.push(rhs.clone());
                    let name = alias.clone().unwrap_or_else(|| name.to_string());
                    self.productions.push(Production { lhs, rhs, name });
                }
            }
        }
    }

    /// Replace repetitions by helper rules, bottom-up (as lark's EBNF-to-BNF pass does).
    fn lower(&mut self, rule: &str, e: Ebnf) -> Ebnf {
        match e {
            Ebnf::Sym(_) => e,
            Ebnf::Alts(v) => Ebnf::Alts(v.into_iter().map(|x| self.lower(rule, x)).collect()),
            Ebnf::Seq(v) => Ebnf::Seq(v.into_iter().map(|x| self.lower(rule, x)).collect()),
            Ebnf::Opt(x) => Ebnf::Alts(vec![self.lower(rule, *x), Ebnf::Seq(vec![])]),
            Ebnf::Star(x) => {
                let inner = self.lower(rule, *x);
                let helper = self.helper(rule, false, inner);
                Ebnf::Alts(vec![Ebnf::Sym(Sym::N(helper)), Ebnf::Seq(vec![])])
            }
            Ebnf::Plus(x) => {
                let inner = self.lower(rule, *x);
                Ebnf::Sym(Sym::N(self.helper(rule, true, inner)))
            }
        }
    }

    /// The helper rule `h: x | h x` for the repeated expression `x`.
    fn helper(&mut self, rule: &str, plus: bool, x: Ebnf) -> usize {
        // Lark shares one helper per distinct expression, whichever of `*`/`+` created it.
        if let Some(&h) = self.helpers.get(&x) {
            return h;
        }
        let kind = if plus { "plus" } else { "star" };
        let name = format!("__{rule}_{kind}_{}", self.counter);
        self.counter += 1;
        let h = self.names.len();
        self.names.push(name.clone());
        self.helpers.insert(x.clone(), h);
        for rhs in flatten(&Ebnf::Alts(vec![
            x.clone(),
            Ebnf::Seq(vec![Ebnf::Sym(Sym::N(h)), x]),
        ])) {
            self.productions.push(Production {
                lhs: h,
                rhs,
                name: name.clone(),
            });
        }
        h
    }
}

/// Multiply out alternatives: every plain symbol sequence the (repetition-free) tree stands for,
/// without duplicates, in order.
fn flatten(e: &Ebnf) -> Vec<Vec<Sym>> {
    let mut out: Vec<Vec<Sym>> = Vec::new();
    let push = |seq: Vec<Sym>, out: &mut Vec<Vec<Sym>>| {
        if !out.contains(&seq) {
            out.push(seq);
        }
    };
    match e {
        Ebnf::Sym(s) => push(vec![*s], &mut out),
        Ebnf::Alts(v) => {
            for alt in v {
                for seq in flatten(alt) {
                    push(seq, &mut out);
                }
            }
        }
        Ebnf::Seq(items) => {
            let mut acc: Vec<Vec<Sym>> = vec![vec![]];
            for item in items {
                let options = flatten(item);
                acc = acc
                    .iter()
                    .flat_map(|prefix| {
                        options.iter().map(move |o| {
                            let mut p = prefix.clone();
                            p.extend_from_slice(o);
                            p
                        })
                    })
                    .collect();
            }
            for seq in acc {
                push(seq, &mut out);
            }
        }
        Ebnf::Opt(_) | Ebnf::Star(_) | Ebnf::Plus(_) => {
            unreachable!("repetitions are lowered before flattening")
        }
    }
    out
}

/// Parse one rule's EBNF text into its alternatives, each with an optional alias.
fn parse_rule(
    text: &str,
    rules: &HashMap<String, usize>,
) -> Result<Vec<(Ebnf, Option<String>)>, String> {
    let toks = tokenize(text)?;
    let mut p = EbnfParser {
        toks: &toks,
        pos: 0,
        rules,
    };
    let mut alts = Vec::new();
    loop {
        let seq = p.seq()?;
        let alias = if p.peek() == Some("->") {
            p.pos += 1;
            Some(p.next().ok_or("alias name expected")?.to_string())
        } else {
            None
        };
        alts.push((seq, alias));
        match p.next() {
            None => return Ok(alts),
            Some("|") => continue,
            Some(t) => return Err(format!("unexpected {t}")),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<&str>, String> {
    let mut toks = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let len = if let Some(body) = rest.strip_prefix('"') {
            body.find('"').ok_or("unterminated literal")? + 2
        } else if rest.starts_with("->") {
            2
        } else if rest.starts_with(|c: char| "|()[]?*+".contains(c)) {
            1
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
                .max(1)
        };
        toks.push(&rest[..len]);
        rest = rest[len..].trim_start();
    }
    Ok(toks)
}

struct EbnfParser<'a> {
    toks: &'a [&'a str],
    pos: usize,
    rules: &'a HashMap<String, usize>,
}

impl<'a> EbnfParser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.pos += 1;
        t
    }

    /// `alt ("|" alt)*` inside brackets.
    fn alts(&mut self) -> Result<Ebnf, String> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some("|") {
            self.pos += 1;
            alts.push(self.seq()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Ebnf::Seq(vec![]))
        } else {
            Ebnf::Alts(alts)
        })
    }

    fn seq(&mut self) -> Result<Ebnf, String> {
        let mut items = Vec::new();
        while let Some(t) = self.peek() {
            if matches!(t, "|" | ")" | "]" | "->") {
                break;
            }
            let mut item = self.atom()?;
            loop {
                item = match self.peek() {
                    Some("?") => Ebnf::Opt(Box::new(item)),
                    Some("*") => Ebnf::Star(Box::new(item)),
                    Some("+") => Ebnf::Plus(Box::new(item)),
                    _ => break,
                };
                self.pos += 1;
            }
            items.push(item);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Ebnf::Seq(vec![]))
        } else {
            Ebnf::Seq(items)
        })
    }

    fn atom(&mut self) -> Result<Ebnf, String> {
        let t = self.next().ok_or("unexpected end")?;
        match t {
            "(" => {
                let inner = self.alts()?;
                self.expect(")")?;
                Ok(inner)
            }
            "[" => {
                let inner = self.alts()?;
                self.expect("]")?;
                Ok(Ebnf::Opt(Box::new(inner)))
            }
            lit if lit.starts_with('"') => {
                let lit = &lit[1..lit.len() - 1];
                literal_term(lit)
                    .map(|t| Ebnf::Sym(Sym::T(t)))
                    .ok_or_else(|| format!("no terminal for literal {lit:?}"))
            }
            name => {
                if let Some(&i) = self.rules.get(name) {
                    Ok(Ebnf::Sym(Sym::N(i)))
                } else {
                    Term::from_name(name)
                        .map(|t| Ebnf::Sym(Sym::T(t)))
                        .ok_or_else(|| format!("unknown symbol {name}"))
                }
            }
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == tok => Ok(()),
            other => Err(format!("expected {tok}, got {other:?}")),
        }
    }
}

/// The terminal a literal in a rule stands for (lark reuses the last terminal defined with that
/// exact text: `"*"` is `EXPRTIMES`).
fn literal_term(lit: &str) -> Option<Term> {
    if lit == "*" {
        return Some(Term::ExprTimes);
    }
    super::lexer::ALL_TERMS
        .iter()
        .copied()
        .find(|t| t.match_literal(lit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_lark() {
        let g = build();
        // Lark expands Synapse 2.256's grammar into 893 productions.
        assert_eq!(g.productions.len(), 893);
        let shared = g
            .productions
            .iter()
            .filter(|p| p.name == "___condcallargs_star_1")
            .count();
        assert_eq!(shared, 12);
        let q = g.rule("query").unwrap();
        assert_eq!(g.productions.iter().filter(|p| p.lhs == q).count(), 4);
    }
}
