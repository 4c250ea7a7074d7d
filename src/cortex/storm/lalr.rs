//! LALR(1) parse tables for the Storm grammar, built once on first use.
//!
//! The construction is the one lark uses: LR(0) item sets, then DeRemer & Pennello's lookahead
//! sets (reads, includes and lookback relations), shift/reduce conflicts resolved as shifts.
//! Each state also gets its contextual lexer: the terminals it has an action for.

use super::grammar::{self, Grammar, STARTS, Sym};
use super::lexer::{StateLexer, TERM_COUNT, Term, TermSet};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// What the parser does with a terminal in a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Push the token and go to the state.
    Shift(u32),
    /// Reduce by the production.
    Reduce(u32),
}

/// One production as the parser needs it.
#[derive(Debug)]
pub struct Prod {
    /// The rule it reduces to.
    pub lhs: usize,
    /// How many symbols it pops.
    pub len: usize,
    /// The name of the node it builds.
    pub name: String,
}

/// The parse tables.
pub struct Tables {
    /// Rule names, by index.
    pub rule_names: Vec<String>,
    /// Productions, by index.
    pub prods: Vec<Prod>,
    actions: Vec<[Option<Action>; TERM_COUNT]>,
    gotos: Vec<HashMap<usize, u32>>,
    lexers: Vec<Arc<StateLexer>>,
    /// `(start state, end state)` per start symbol, in [`STARTS`] order.
    starts: Vec<(u32, u32)>,
}

impl Tables {
    /// The tables, built on first use.
    pub fn get() -> &'static Tables {
        static TABLES: OnceLock<Tables> = OnceLock::new();
        TABLES.get_or_init(|| build(&grammar::build()))
    }

    /// The action for `term` in `state`.
    pub fn action(&self, state: u32, term: Term) -> Option<Action> {
        self.actions[state as usize][term as usize]
    }

    /// The terminals `state` has an action for.
    pub fn expected(&self, state: u32) -> TermSet {
        self.actions[state as usize]
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some())
            .map(|(i, _)| super::lexer::ALL_TERMS[i])
            .collect()
    }

    /// The state after reducing to `rule` in `state`.
    pub fn goto(&self, state: u32, rule: usize) -> Option<u32> {
        self.gotos[state as usize].get(&rule).copied()
    }

    /// The lexer of `state`.
    pub fn lexer(&self, state: u32) -> &StateLexer {
        &self.lexers[state as usize]
    }

    /// The start and end states of start symbol `start`.
    pub fn start(&self, start: &str) -> (u32, u32) {
        let i = STARTS.iter().position(|s| *s == start).unwrap_or(0);
        self.starts[i]
    }

    /// The number of states.
    pub fn state_count(&self) -> usize {
        self.actions.len()
    }
}

/// An LR(0) item: production and dot position.
type Item = (u32, u32);

struct Builder<'g> {
    g: &'g Grammar,
    /// All productions, the root ones (`$root_<start> -> start`) last.
    rhs: Vec<Vec<Sym>>,
    lhs: Vec<usize>,
    by_lhs: Vec<Vec<u32>>,
    nullable: Vec<bool>,
    kernels: Vec<Vec<Item>>,
    kernel_index: HashMap<Vec<Item>, u32>,
    closures: Vec<Vec<Item>>,
    trans: Vec<HashMap<Sym, u32>>,
}

fn build(g: &Grammar) -> Tables {
    let rule_count = g.names.len() + STARTS.len();
    let mut rhs: Vec<Vec<Sym>> = g.productions.iter().map(|p| p.rhs.clone()).collect();
    let mut lhs: Vec<usize> = g.productions.iter().map(|p| p.lhs).collect();
    let mut root_prods = Vec::new();
    for (i, start) in STARTS.iter().enumerate() {
        let rule = g
            .rule(start)
            .unwrap_or_else(|| panic!("no start rule {start}"));
        root_prods.push(rhs.len() as u32);
        rhs.push(vec![Sym::N(rule)]);
        lhs.push(g.names.len() + i);
    }
    let mut by_lhs = vec![Vec::new(); rule_count];
    for (i, l) in lhs.iter().enumerate() {
        by_lhs[*l].push(i as u32);
    }
    let mut nullable = vec![false; rule_count];
    loop {
        let mut changed = false;
        for (i, r) in rhs.iter().enumerate() {
            if !nullable[lhs[i]] && r.iter().all(|s| matches!(s, Sym::N(n) if nullable[*n])) {
                nullable[lhs[i]] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut b = Builder {
        g,
        rhs,
        lhs,
        by_lhs,
        nullable,
        kernels: Vec::new(),
        kernel_index: HashMap::new(),
        closures: Vec::new(),
        trans: Vec::new(),
    };
    let start_states: Vec<u32> = root_prods.iter().map(|p| b.state(vec![(*p, 0)])).collect();
    let mut next = 0;
    while next < b.kernels.len() {
        b.expand(next as u32);
        next += 1;
    }
    let lookaheads = b.lookaheads(&start_states, &root_prods);
    b.tables(start_states, &root_prods, lookaheads)
}

impl Builder<'_> {
    /// The state with this kernel, made if new.
    fn state(&mut self, mut kernel: Vec<Item>) -> u32 {
        kernel.sort_unstable();
        if let Some(&i) = self.kernel_index.get(&kernel) {
            return i;
        }
        let mut closure = kernel.clone();
        let mut i = 0;
        while i < closure.len() {
            let (p, dot) = closure[i];
            if let Some(Sym::N(n)) = self.rhs[p as usize].get(dot as usize) {
                for &q in &self.by_lhs[*n] {
                    if !closure.contains(&(q, 0)) {
                        closure.push((q, 0));
                    }
                }
            }
            i += 1;
        }
        self.kernel_index
            .insert(kernel.clone(), self.kernels.len() as u32);
        self.kernels.push(kernel);
        self.closures.push(closure);
        self.trans.push(HashMap::new());
        (self.kernels.len() - 1) as u32
    }

    /// Make the transitions of `state`.
    fn expand(&mut self, state: u32) {
        let mut by_sym: Vec<(Sym, Vec<Item>)> = Vec::new();
        for &(p, dot) in &self.closures[state as usize] {
            if let Some(sym) = self.rhs[p as usize].get(dot as usize) {
                match by_sym.iter_mut().find(|(s, _)| s == sym) {
                    Some((_, items)) => items.push((p, dot + 1)),
                    None => by_sym.push((*sym, vec![(p, dot + 1)])),
                }
            }
        }
        for (sym, kernel) in by_sym {
            let target = self.state(kernel);
            self.trans[state as usize].insert(sym, target);
        }
    }

    fn next_sym(&self, (p, dot): Item) -> Option<Sym> {
        self.rhs[p as usize].get(dot as usize).copied()
    }

    /// LALR(1) lookaheads: for every state, the terminals on which each complete production
    /// reduces.
    fn lookaheads(&self, start_states: &[u32], root_prods: &[u32]) -> Vec<Vec<(u32, TermSet)>> {
        // Nonterminal transitions (state, rule) and their directly-read terminals.
        let mut nts: Vec<(u32, usize)> = Vec::new();
        let mut nt_index: HashMap<(u32, usize), usize> = HashMap::new();
        let mut dr: Vec<TermSet> = Vec::new();
        let mut reads: Vec<Vec<usize>> = Vec::new();
        let mut reads_pending: Vec<(usize, (u32, usize))> = Vec::new();
        for (state, closure) in self.closures.iter().enumerate() {
            for &item in closure {
                let Some(Sym::N(n)) = self.next_sym(item) else {
                    continue;
                };
                let key = (state as u32, n);
                if nt_index.contains_key(&key) {
                    continue;
                }
                let idx = nts.len();
                nts.push(key);
                nt_index.insert(key, idx);
                let mut set = TermSet::EMPTY;
                let target = self.trans[state][&Sym::N(n)];
                for &item2 in &self.closures[target as usize] {
                    match self.next_sym(item2) {
                        Some(Sym::T(t)) => set.insert(t),
                        Some(Sym::N(n2)) if self.nullable[n2] => {
                            reads_pending.push((idx, (target, n2)))
                        }
                        _ => {}
                    }
                }
                dr.push(set);
                reads.push(Vec::new());
            }
        }
        for (start, prod) in start_states.iter().zip(root_prods) {
            if let Some(Sym::N(n)) = self.rhs[*prod as usize].first()
                && let Some(&idx) = nt_index.get(&(*start, *n))
            {
                dr[idx].insert(Term::End);
            }
        }
        for (idx, key) in reads_pending {
            if let Some(&j) = nt_index.get(&key) {
                reads[idx].push(j);
            }
        }
        // includes and lookback, walked as lark walks them.
        let mut includes: Vec<Vec<usize>> = vec![Vec::new(); nts.len()];
        let mut lookback: Vec<Vec<(u32, u32)>> = vec![Vec::new(); nts.len()];
        for (idx, &(state, rule)) in nts.iter().enumerate() {
            for &(p, dot) in &self.closures[state as usize] {
                if self.lhs[p as usize] != rule {
                    continue;
                }
                let rhs = &self.rhs[p as usize];
                let mut s2 = state;
                for i in dot as usize..rhs.len() {
                    let sym = rhs[i];
                    let here = s2;
                    s2 = self.trans[s2 as usize][&sym];
                    if let Sym::N(n) = sym
                        && let Some(&j) = nt_index.get(&(here, n))
                        && rhs[i + 1..]
                            .iter()
                            .all(|s| matches!(s, Sym::N(m) if self.nullable[*m]))
                    {
                        includes[j].push(idx);
                    }
                }
                if dot == 0 {
                    lookback[idx].push((s2, p));
                }
            }
        }
        let read = fixpoint(&dr, &reads);
        let follow = fixpoint(&read, &includes);
        let mut la: Vec<Vec<(u32, TermSet)>> = vec![Vec::new(); self.kernels.len()];
        for (idx, backs) in lookback.iter().enumerate() {
            for &(state, prod) in backs {
                let list = &mut la[state as usize];
                match list.iter_mut().find(|(p, _)| *p == prod) {
                    Some((_, set)) => set.union_with(follow[idx]),
                    None => list.push((prod, follow[idx])),
                }
            }
        }
        la
    }

    fn tables(
        &self,
        start_states: Vec<u32>,
        root_prods: &[u32],
        lookaheads: Vec<Vec<(u32, TermSet)>>,
    ) -> Tables {
        let n = self.kernels.len();
        let mut actions = vec![[None; TERM_COUNT]; n];
        let mut gotos = vec![HashMap::new(); n];
        for state in 0..n {
            for (sym, target) in &self.trans[state] {
                match sym {
                    Sym::T(t) => actions[state][*t as usize] = Some(Action::Shift(*target)),
                    Sym::N(r) => {
                        gotos[state].insert(*r, *target);
                    }
                }
            }
            for (prod, set) in &lookaheads[state] {
                for t in set.iter() {
                    let slot = &mut actions[state][t as usize];
                    match slot {
                        None => *slot = Some(Action::Reduce(*prod)),
                        Some(Action::Shift(_)) => {}
                        Some(Action::Reduce(other)) if other != prod => panic!(
                            "storm grammar: reduce/reduce conflict on {} between {} and {}",
                            t.name(),
                            self.g.productions[*other as usize].name,
                            self.g.productions[*prod as usize].name
                        ),
                        Some(Action::Reduce(_)) => {}
                    }
                }
            }
        }
        let mut lexer_cache: HashMap<TermSet, Arc<StateLexer>> = HashMap::new();
        let lexers = actions
            .iter()
            .map(|row| {
                let set: TermSet = row
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.is_some())
                    .map(|(i, _)| super::lexer::ALL_TERMS[i])
                    .collect();
                lexer_cache
                    .entry(set)
                    .or_insert_with(|| Arc::new(StateLexer::new(set)))
                    .clone()
            })
            .collect();
        let starts = start_states
            .iter()
            .zip(root_prods)
            .map(|(s, p)| {
                let Some(Sym::N(rule)) = self.rhs[*p as usize].first() else {
                    unreachable!("root productions derive their start rule")
                };
                (*s, self.trans[*s as usize][&Sym::N(*rule)])
            })
            .collect();
        let mut rule_names = self.g.names.clone();
        rule_names.extend(STARTS.iter().map(|s| format!("$root_{s}")));
        let prods = (0..self.rhs.len())
            .map(|i| Prod {
                lhs: self.lhs[i],
                len: self.rhs[i].len(),
                name: self
                    .g
                    .productions
                    .get(i)
                    .map_or_else(|| rule_names[self.lhs[i]].clone(), |p| p.name.clone()),
            })
            .collect();
        Tables {
            rule_names,
            prods,
            actions,
            gotos,
            lexers,
            starts,
        }
    }
}

/// The least solution of `F(x) = base(x) ∪ ⋃ { F(y) | y ∈ edges(x) }`.
fn fixpoint(base: &[TermSet], edges: &[Vec<usize>]) -> Vec<TermSet> {
    let mut f = base.to_vec();
    loop {
        let mut changed = false;
        for x in 0..f.len() {
            let mut acc = f[x];
            for &y in &edges[x] {
                acc.union_with(f[y]);
            }
            if acc != f[x] {
                f[x] = acc;
                changed = true;
            }
        }
        if !changed {
            return f;
        }
    }
}
