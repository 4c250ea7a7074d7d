//! Edges, node data, the edit log, following it, splices, and concurrent writers.

use super::*;

fn edge(verb: &str, n2: Buid) -> Edit {
    Edit::EdgeAdd {
        verb: verb.into(),
        n2,
    }
}

fn all_entries(layer: &Layer, offs: u64) -> Vec<LogEntry> {
    layer
        .edits_from(offs)
        .expect("log")
        .collect::<SynResult<_>>()
        .expect("entries")
}

#[test]
fn edges_are_indexed_both_ways_and_verbs_exactly() {
    let (_dir, layer) = fresh();
    let (a, b, c) = (ipv4_buid(1), ipv4_buid(2), ipv4_buid(3));
    let mut one = ipv4(1);
    one.edits.extend([
        edge("refs", c),
        edge("refs", b),
        edge("refsfoo", b),
        edge("seen", c),
    ]);
    let mut two = ipv4(2);
    two.edits.push(edge("refs", c));
    layer.store(&[one, two, ipv4(3)], &meta(1)).expect("store");
    let mut bc = [b, c];
    bc.sort();
    let reader = layer.reader().expect("reader");
    let n1 = reader.edges_n1(&a, Some("refs")).expect("n1");
    assert_eq!(
        n1,
        bc.iter()
            .map(|x| ("refs".to_string(), *x))
            .collect::<Vec<_>>()
    );
    let verbs: Vec<String> = reader
        .edges_n1(&a, None)
        .expect("n1")
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(verbs, ["refs", "refs", "refsfoo", "seen"]);
    let mut into_c = vec![("refs".to_string(), a), ("refs".to_string(), b)];
    into_c.sort();
    assert_eq!(reader.edges_n2(&c, Some("refs")).expect("n2"), into_c);
    assert_eq!(
        reader.edges_n2(&c, Some("seen")).expect("n2"),
        vec![("seen".to_string(), a)]
    );
    assert!(reader.has_edge(&a, "refsfoo", &b).expect("has"));
    assert!(!reader.has_edge(&b, "refsfoo", &a).expect("has"));
    drop(reader);
    // Adding an existing edge changes nothing.
    let again = on("inet:ipv4", &Value::from(1u64), vec![edge("refs", c)]);
    assert_eq!(layer.store(&[again], &meta(2)).expect("store").offset, None);
    // Deleting node 1 removes the edges it starts, in both indexes, and its node data.
    let data = on(
        "inet:ipv4",
        &Value::from(1u64),
        vec![Edit::NodeDataSet {
            name: "d".into(),
            valu: Value::from(1i64),
            oldv: Value::Nil,
        }],
    );
    layer.store(&[data], &meta(3)).expect("store");
    let del = on(
        "inet:ipv4",
        &Value::from(1u64),
        vec![Edit::NodeDel {
            valu: Value::from(1u64),
            stortype: st::U32,
        }],
    );
    layer.store(&[del], &meta(4)).expect("store");
    let reader = layer.reader().expect("reader");
    assert!(reader.edges_n1(&a, None).expect("n1").is_empty());
    assert_eq!(
        reader.edges_n2(&c, None).expect("n2"),
        vec![("refs".to_string(), b)]
    );
    assert!(reader.nodedata_all(&a).expect("data").is_empty());
}

#[test]
fn node_data_lives_beside_the_node() {
    let (_dir, layer) = fresh();
    let b = ipv4_buid(9);
    let set = |name: &str, valu: Value| Edit::NodeDataSet {
        name: name.into(),
        valu,
        oldv: Value::Nil,
    };
    let mut ne = ipv4(9);
    let big = Value::map([("k", Value::Array(vec![Value::from(1i64); 100]))]);
    ne.edits
        .extend([set("zeta", Value::from("z")), set("alpha", big.clone())]);
    layer.store(&[ne], &meta(1)).expect("store");
    let reader = layer.reader().expect("reader");
    assert_eq!(
        reader.nodedata(&b, "alpha").expect("get"),
        Some(big.clone())
    );
    assert_eq!(reader.nodedata(&b, "newp").expect("get"), None);
    assert_eq!(
        reader.nodedata_all(&b).expect("all"),
        vec![
            ("zeta".to_string(), Value::from("z")),
            ("alpha".to_string(), big)
        ]
    );
    drop(reader);
    // Node data alone keeps a storage node (with its form) alive.
    let only_data = on("test:str", &Value::from("x"), vec![set("n", Value::Nil)]);
    layer.store(&[only_data], &meta(2)).expect("store");
    let sode = layer
        .sode(&buid("test:str", &Value::from("x")))
        .expect("sode");
    assert_eq!(
        sode.map(|s| (s.form, s.valu)),
        Some(("test:str".into(), None))
    );
    let unset = on(
        "test:str",
        &Value::from("x"),
        vec![Edit::NodeDataDel {
            name: "n".into(),
            oldv: Value::Nil,
        }],
    );
    let stored = layer.store(&[unset], &meta(3)).expect("store");
    assert_eq!(
        stored.applied[0].edits,
        vec![Edit::NodeDataDel {
            name: "n".into(),
            oldv: Value::Nil
        }]
    );
    assert_eq!(
        layer
            .sode(&buid("test:str", &Value::from("x")))
            .expect("sode"),
        None
    );
}

#[test]
fn the_log_follows_the_changes() {
    let (_dir, layer) = fresh();
    let mut watch = layer.watch_offsets();
    assert_eq!(*watch.borrow_and_update(), 0);
    let mut stored = Vec::new();
    for n in 0..5u32 {
        stored.push(layer.store(&[ipv4(n)], &meta(i64::from(n))).expect("store"));
    }
    assert!(watch.has_changed().expect("sender alive"));
    assert_eq!(*watch.borrow_and_update(), 5);
    assert_eq!(layer.next_offset(), 5);
    let entries = all_entries(&layer, 0);
    assert_eq!(entries.len(), 5);
    for (n, (entry, st)) in entries.iter().zip(&stored).enumerate() {
        assert_eq!(entry.offset, n as u64);
        assert_eq!(Some(entry.offset), st.offset);
        assert_eq!(entry.edits, *st.applied);
        assert_eq!(entry.meta, meta(n as i64));
    }
    let tail = all_entries(&layer, 3);
    assert_eq!(
        tail.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert!(all_entries(&layer, 5).is_empty());
    assert!(all_entries(&layer, 99).is_empty());
    // The wire form is (offset, nodeedits with byte buids, meta).
    let wire = entries[0].to_value();
    assert_eq!(wire.as_array().map(<[Value]>::len), Some(3));
    assert_eq!(
        NodeEdit::from_value(
            &wire.as_array().expect("array")[1]
                .as_array()
                .expect("edits")[0]
        )
        .expect("nodeedit"),
        entries[0].edits[0]
    );
}

#[test]
fn segments_roll_over_and_are_read_across() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayerOptions {
        segment_size: 2048,
        ..LayerOptions::default()
    };
    let layer = Layer::open_with(dir.path(), "layr", opts.clone()).expect("open");
    for n in 0..60u32 {
        let batch: Vec<NodeEdit> = (0..5).map(|i| ipv4(n * 5 + i)).collect();
        layer.store(&batch, &meta(1)).expect("store");
    }
    drop(layer);
    let segments = log::list_segments(&dir.path().join(LOG_DIR)).expect("segments");
    assert!(segments.len() > 5, "{segments:?}");
    let layer = Layer::open_with(dir.path(), "layr", opts).expect("reopen");
    let offsets: Vec<u64> = all_entries(&layer, 17).iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (17..60).collect::<Vec<_>>());
    let all = layer.lift(|r| r.lift_form("inet:ipv4")).expect("lift");
    assert_eq!(all.len(), 300);
    assert_eq!(all[0], ipv4_buid(0));
    layer
        .store(&[ipv4(9999)], &meta(1))
        .expect("store after reopen");
    assert_eq!(all_entries(&layer, 59).len(), 2);
}

#[tokio::test]
async fn sync_edits_reads_the_past_then_follows() {
    let (_dir, layer) = fresh();
    for n in 0..3u32 {
        layer.store(&[ipv4(n)], &meta(1)).expect("store");
    }
    let mut rx = layer.sync_edits(1);
    for want in 1..3 {
        let entry = rx.recv().await.expect("entry").expect("ok");
        assert_eq!(entry.offset, want);
    }
    let writer = layer.clone();
    tokio::task::spawn_blocking(move || writer.store(&[ipv4(77)], &meta(2)))
        .await
        .expect("join")
        .expect("store");
    let live = rx.recv().await.expect("live entry").expect("ok");
    assert_eq!(live.offset, 3);
    assert_eq!(live.edits[0].buid, ipv4_buid(77));
    // Dropping the layer ends the stream.
    drop(layer);
    assert!(rx.recv().await.is_none());
}

#[test]
fn splices_flatten_the_log() {
    let (_dir, layer) = fresh();
    let ip = Value::from(1u64);
    let mut ne = ipv4(1);
    ne.edits.push(prop("asn", Value::from(5i64), st::I64));
    ne.edits.push(tag("foo", (None, None)));
    let user = Value::from("u".repeat(32));
    let m1 = Value::map([("time", Value::from(1000i64)), ("user", user.clone())]);
    layer.store(&[ne], &m1).expect("store");
    let m2 = Value::map([
        ("time", Value::from(2000i64)),
        ("user", user.clone()),
        ("prov", Value::from("ab".repeat(16))),
    ]);
    let later = on(
        "inet:ipv4",
        &ip,
        vec![
            Edit::NodeDataSet {
                name: "d".into(),
                valu: Value::from(1i64),
                oldv: Value::Nil,
            },
            Edit::TagDel {
                tag: "foo".into(),
                oldv: (None, None),
            },
        ],
    );
    layer.store(&[later], &m2).expect("store");
    let ndef = Value::Array(vec![Value::from("inet:ipv4"), ip.clone()]);
    let base = |time: i64| vec![("time", Value::from(time)), ("user", user.clone())];
    let with = |mut props: Vec<(&'static str, Value)>, extra: Vec<(&'static str, Value)>| {
        props.push(("ndef", ndef.clone()));
        props.extend(extra);
        Value::map(props)
    };
    let untimed = Value::Array(vec![Value::Nil, Value::Nil]);
    let all = layer.splices_from((0, 0, 0), None).expect("splices");
    let want = vec![
        (
            (0, 0, 0),
            ("node:add".to_string(), with(base(1000), vec![])),
        ),
        (
            (0, 0, 1),
            (
                "prop:set".to_string(),
                with(
                    base(1000),
                    vec![
                        ("prop", Value::from(".created")),
                        ("valu", Value::from(1000i64)),
                        ("oldv", Value::Nil),
                    ],
                ),
            ),
        ),
        (
            (0, 0, 2),
            (
                "prop:set".to_string(),
                with(
                    base(1000),
                    vec![
                        ("prop", Value::from("asn")),
                        ("valu", Value::from(5i64)),
                        ("oldv", Value::Nil),
                    ],
                ),
            ),
        ),
        (
            (0, 0, 3),
            (
                "tag:add".to_string(),
                with(
                    base(1000),
                    vec![
                        ("tag", Value::from("foo")),
                        ("valu", untimed.clone()),
                        ("oldv", Value::Nil),
                    ],
                ),
            ),
        ),
        (
            // The node data edit (1, 0, 0) makes no splice; prov follows user.
            (1, 0, 1),
            (
                "tag:del".to_string(),
                with(
                    [base(2000), vec![("prov", Value::from("ab".repeat(16)))]].concat(),
                    vec![("tag", Value::from("foo")), ("valu", untimed)],
                ),
            ),
        ),
    ];
    assert_eq!(all, want);
    let some = layer.splices_from((0, 0, 2), Some(2)).expect("splices");
    assert_eq!(some, want[2..4].to_vec());
    assert_eq!(
        layer.splices_from((1, 0, 0), None).expect("splices"),
        want[4..].to_vec()
    );
}

#[test]
fn concurrent_writers_share_commits_and_each_get_an_offset() {
    let (_dir, layer) = fresh();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let layer = layer.clone();
            std::thread::spawn(move || {
                (0..25u32)
                    .map(|i| {
                        let batch: Vec<NodeEdit> =
                            (0..10).map(|k| ipv4(t * 10_000 + i * 10 + k)).collect();
                        layer.store(&batch, &meta(1)).expect("store")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets = Vec::new();
    for handle in threads {
        for stored in handle.join().expect("thread") {
            assert_eq!(stored.applied.len(), 10);
            offsets.push(stored.offset.expect("logged"));
        }
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..100).collect::<Vec<_>>());
    let entries = all_entries(&layer, 0);
    assert_eq!(entries.len(), 100);
    assert_eq!(layer.form_counts().expect("counts")["inet:ipv4"], 1000);
    assert_eq!(
        collect(layer.reader().expect("reader").lift_form("inet:ipv4")).len(),
        1000
    );
}

#[test]
fn bad_input_fails_cleanly_and_changes_nothing() {
    let (_dir, layer) = fresh();
    let good = ipv4(1);
    let bad = node("inet:ipv4", Value::from("not an int"), st::U32, vec![]);
    let err = layer
        .store(&[good.clone(), bad], &meta(1))
        .expect_err("bad value");
    assert_eq!(err.name, "BadArg");
    assert!(err.mesg().contains("u32"), "{}", err.mesg());
    assert_eq!(layer.next_offset(), 0);
    assert_eq!(layer.sode(&ipv4_buid(1)).expect("sode"), None);
    let cases = [
        node("", Value::from(1u64), st::U32, vec![]),
        node("f", Value::from(1u64), 999, vec![]),
        node(
            "f",
            Value::from(1u64),
            st::U32,
            vec![prop("", Value::Nil, st::UTF8)],
        ),
        node(
            "f",
            Value::from(1u64),
            st::U32,
            vec![tag("a\0b", (None, None))],
        ),
        node(
            "f",
            Value::Array(vec![Value::from(1i64)]),
            st::ARRAY | st::UTF8,
            vec![],
        ),
    ];
    for case in cases {
        assert_eq!(
            layer.store(&[case], &meta(1)).expect_err("bad").name,
            "BadArg"
        );
    }
    assert_eq!(layer.next_offset(), 0);
    assert!(layer.form_counts().expect("counts").is_empty());
    layer.store(&[good], &meta(1)).expect("good alone");
    assert_eq!(layer.next_offset(), 1);
}

#[test]
fn form_counts_follow_adds_and_deletes() {
    let (_dir, layer) = fresh();
    let fq = node("inet:fqdn", Value::from("a.com"), st::FQDN, vec![]);
    layer
        .store(&[ipv4(1), ipv4(2), fq, ipv4(1)], &meta(1))
        .expect("store");
    let counts = layer.form_counts().expect("counts");
    assert_eq!(counts.get("inet:ipv4"), Some(&2));
    assert_eq!(counts.get("inet:fqdn"), Some(&1));
    let del = on(
        "inet:fqdn",
        &Value::from("a.com"),
        vec![Edit::NodeDel {
            valu: Value::from("a.com"),
            stortype: st::FQDN,
        }],
    );
    layer.store(&[del.clone(), del], &meta(2)).expect("store");
    let counts = layer.form_counts().expect("counts");
    assert_eq!(counts.get("inet:fqdn"), None);
    assert_eq!(counts.get("inet:ipv4"), Some(&2));
}
