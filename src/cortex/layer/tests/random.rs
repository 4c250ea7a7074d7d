//! Random edits, then invariants: every index agrees with the storage nodes, and a layer
//! rebuilt from the log alone is the same layer.

use super::*;

/// A small deterministic generator (xorshift64*), so failures can be replayed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const NODES: i64 = 12;
const WORDS: [&str; 4] = ["apple", "apricot", "banana", "cherry"];
const TAGS: [&str; 3] = ["a", "a.b", "c"];
const ARRAY_UTF8: u16 = st::ARRAY | st::UTF8;

fn random_edit(rng: &mut Rng) -> Edit {
    let ival = |rng: &mut Rng| -> Ival {
        if rng.below(3) == 0 {
            (None, None)
        } else {
            let start = rng.below(100) as i64;
            (Some(start), Some(start + 1 + rng.below(50) as i64))
        }
    };
    let node = |rng: &mut Rng| buid("test:int", &Value::from(rng.below(NODES as u64) as i64));
    match rng.below(14) {
        0 => Edit::NodeDel {
            valu: Value::Nil,
            stortype: st::I64,
        },
        1 | 2 => prop("p", Value::from(rng.below(5) as i64), st::I64),
        3 => prop("s", Value::from(rng.pick(&WORDS)), st::UTF8),
        4 => {
            let items = (0..rng.below(4))
                .map(|_| Value::from(rng.pick(&WORDS)))
                .collect();
            prop("arr", Value::Array(items), ARRAY_UTF8)
        }
        5 => Edit::PropDel {
            prop: ["p", "s", "arr"][rng.below(3) as usize].into(),
            oldv: Value::Nil,
            stortype: st::I64,
        },
        6 | 7 => tag(rng.pick(&TAGS), ival(rng)),
        8 => Edit::TagDel {
            tag: rng.pick(&TAGS).into(),
            oldv: (None, None),
        },
        9 => Edit::TagPropSet {
            tag: "a".into(),
            prop: "score".into(),
            valu: Value::from(rng.below(4) as i64),
            oldv: Value::Nil,
            stortype: st::I64,
        },
        10 => Edit::TagPropDel {
            tag: "a".into(),
            prop: "score".into(),
            oldv: Value::Nil,
            stortype: st::I64,
        },
        11 => Edit::NodeDataSet {
            name: "d".into(),
            valu: Value::from(rng.below(3) as i64),
            oldv: Value::Nil,
        },
        12 => Edit::EdgeAdd {
            verb: "refs".into(),
            n2: node(rng),
        },
        _ => Edit::EdgeDel {
            verb: "refs".into(),
            n2: node(rng),
        },
    }
}

pub(super) fn random_call(rng: &mut Rng) -> Vec<NodeEdit> {
    (0..1 + rng.below(4))
        .map(|_| {
            let valu = Value::from(rng.below(NODES as u64) as i64);
            let mut edits: Vec<Edit> = (0..1 + rng.below(4)).map(|_| random_edit(rng)).collect();
            if rng.below(3) == 0 {
                edits.insert(
                    0,
                    Edit::NodeAdd {
                        valu: valu.clone(),
                        stortype: st::I64,
                    },
                );
            }
            on("test:int", &valu, edits)
        })
        .collect()
}

/// Everything a layer holds, read through its public API, for comparisons.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sodes: Vec<Option<Sode>>,
    data: Vec<Vec<(String, Value)>>,
    edges: Vec<Vec<(String, Buid)>>,
    counts: BTreeMap<String, u64>,
}

fn snapshot(layer: &Layer) -> Snapshot {
    let reader = layer.reader().expect("reader");
    let ids: Vec<Buid> = (0..NODES)
        .map(|n| buid("test:int", &Value::from(n)))
        .collect();
    Snapshot {
        sodes: ids.iter().map(|b| reader.sode(b).expect("sode")).collect(),
        data: ids
            .iter()
            .map(|b| reader.nodedata_all(b).expect("data"))
            .collect(),
        edges: ids
            .iter()
            .map(|b| reader.edges_n1(b, None).expect("edges"))
            .collect(),
        counts: reader.form_counts().expect("counts"),
    }
}

/// Check every index against the storage nodes.
pub(super) fn check_indexes(layer: &Layer) {
    let reader = layer.reader().expect("reader");
    let nodes: Vec<(Buid, Sode)> = (0..NODES)
        .filter_map(|n| {
            let b = buid("test:int", &Value::from(n));
            reader.sode(&b).expect("sode").map(|s| (b, s))
        })
        .collect();
    let sorted = |mut pairs: Vec<(Vec<u8>, Buid)>| -> Vec<Buid> {
        pairs.sort();
        pairs.into_iter().map(|(_, b)| b).collect()
    };
    let key = |v: &Value, t: u16| index_key(v, t).expect("key");
    let lift = |l: SynResult<Lift<'_>>| collect(l);

    let with_valu: Vec<_> = nodes
        .iter()
        .filter_map(|(b, s)| s.valu.as_ref().map(|(v, t)| (key(v, *t), *b)))
        .collect();
    assert_eq!(
        layer
            .form_counts()
            .expect("counts")
            .get("test:int")
            .copied()
            .unwrap_or(0),
        with_valu.len() as u64
    );
    assert_eq!(lift(reader.lift_form("test:int")), sorted(with_valu));

    for (prop, stortype) in [("p", st::I64), ("s", st::UTF8), (".created", st::MINTIME)] {
        let want: Vec<_> = nodes
            .iter()
            .filter_map(|(b, s)| s.prop(prop).map(|(v, t)| (key(v, t), *b)))
            .collect();
        let got = lift(reader.lift_prop("test:int", Some(prop), stortype, &Cmp::Any));
        assert_eq!(got, sorted(want), "prop {prop}");
    }
    let items: Vec<_> = nodes
        .iter()
        .filter_map(|(b, s)| s.prop("arr").map(|(v, _)| (v.clone(), *b)))
        .flat_map(|(v, b)| {
            v.as_array()
                .expect("array")
                .iter()
                .map(|item| (key(item, st::UTF8), b))
                .collect::<Vec<_>>()
        })
        .collect();
    // An item repeated in one array is one index entry.
    let mut items = items;
    items.sort();
    items.dedup();
    let got = lift(reader.lift_prop_array("test:int", "arr", ARRAY_UTF8, &Cmp::Any));
    assert_eq!(got, sorted(items), "array items");

    for tag in TAGS {
        let mut want: Vec<Buid> = nodes
            .iter()
            .filter(|(_, s)| s.tag(tag).is_some())
            .map(|(b, _)| *b)
            .collect();
        want.sort();
        assert_eq!(lift(reader.lift_tag(tag, None)), want, "tag {tag}");
    }
    let scores: Vec<_> = nodes
        .iter()
        .filter_map(|(b, s)| s.tagprop("a", "score").map(|(v, t)| (key(v, t), *b)))
        .collect();
    let got = lift(reader.lift_tagprop("a", "score", None, st::I64, &Cmp::Any));
    assert_eq!(got, sorted(scores), "tag prop");

    for (n1, _) in &nodes {
        for (verb, n2) in reader.edges_n1(n1, None).expect("n1") {
            let back = reader.edges_n2(&n2, Some(&verb)).expect("n2");
            assert!(back.contains(&(verb.clone(), *n1)), "edge mirror");
        }
    }
}

#[test]
fn random_edits_keep_indexes_consistent_and_the_log_rebuilds_the_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open(dir.path(), "layr").expect("open");
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let mut logged = 0;
    for call in 0..400 {
        let stored = layer
            .store(&random_call(&mut rng), &meta(call))
            .expect("store");
        if let Some(offs) = stored.offset {
            assert_eq!(offs, logged);
            logged += 1;
        }
        if call % 100 == 99 {
            check_indexes(&layer);
        }
    }
    assert_eq!(layer.next_offset(), logged);
    check_indexes(&layer);
    let before = snapshot(&layer);
    assert!(before.sodes.iter().filter(|s| s.is_some()).count() > NODES as usize / 2);
    drop(layer);

    // The log alone rebuilds the same layer.
    let copy = tempfile::tempdir().expect("tempdir");
    let log_copy = copy.path().join(LOG_DIR);
    std::fs::create_dir(&log_copy).expect("mkdir");
    for entry in std::fs::read_dir(dir.path().join(LOG_DIR)).expect("log dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), log_copy.join(entry.file_name())).expect("copy");
    }
    let rebuilt = Layer::open(copy.path(), "layr").expect("rebuild from the log");
    assert_eq!(snapshot(&rebuilt), before);
    check_indexes(&rebuilt);
}
