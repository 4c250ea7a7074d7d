//! Tests of the layer, on real LMDB files and logs in temporary directories.

mod bulk;
mod durability;
mod history;
mod pipeline;
mod random;
mod replicate;

use super::*;
use crate::cortex::edits::{Buid, Edit, Ival, NodeEdit, stortype as st};
use crate::guid::buid_of;
use tempfile::TempDir;

fn buid(form: &str, valu: &Value) -> Buid {
    buid_of(&Value::Array(vec![Value::from(form), valu.clone()]))
}

fn meta(time: i64) -> Value {
    Value::map([
        ("time", Value::from(time)),
        ("user", Value::from("a".repeat(32))),
    ])
}

fn node(form: &str, valu: Value, stortype: u16, mut edits: Vec<Edit>) -> NodeEdit {
    edits.insert(
        0,
        Edit::NodeAdd {
            valu: valu.clone(),
            stortype,
        },
    );
    on(form, &valu, edits)
}

fn on(form: &str, valu: &Value, edits: Vec<Edit>) -> NodeEdit {
    NodeEdit {
        buid: buid(form, valu),
        form: form.into(),
        edits,
    }
}

/// Store edits of the node `(form, valu)` at time `time` (ms).
fn store_on(layer: &Layer, form: &str, valu: &Value, edits: Vec<Edit>, time: i64) -> Stored {
    layer
        .store(&[on(form, valu, edits)], &meta(time))
        .expect("store")
}

fn prop(name: &str, valu: Value, stortype: u16) -> Edit {
    Edit::PropSet {
        prop: name.into(),
        valu,
        oldv: Value::Nil,
        stortype,
    }
}

fn tag(name: &str, ival: Ival) -> Edit {
    Edit::TagSet {
        tag: name.into(),
        valu: ival,
        oldv: None,
    }
}

fn fresh() -> (TempDir, Layer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open(dir.path(), "layr").expect("open layer");
    (dir, layer)
}

fn ipv4(n: u32) -> NodeEdit {
    node("inet:ipv4", Value::from(u64::from(n)), st::U32, vec![])
}

fn ipv4_buid(n: u32) -> Buid {
    buid("inet:ipv4", &Value::from(u64::from(n)))
}

fn collect(lift: SynResult<Lift<'_>>) -> Vec<Buid> {
    lift.expect("lift")
        .collect::<SynResult<Vec<_>>>()
        .expect("lift items")
}

fn created(layer: &Layer, b: &Buid) -> Option<i64> {
    let sode = layer.sode(b).expect("sode")?;
    sode.prop(".created").and_then(|(v, _)| v.as_i64())
}

#[test]
fn every_edit_type_applies_and_reads_back() {
    let (_dir, layer) = fresh();
    let fqdn = Value::from("vertex.link");
    let n2 = buid("inet:fqdn", &fqdn);
    let ip = Value::from(0x01020304u64);
    let stored = layer
        .store(
            &[node(
                "inet:ipv4",
                ip.clone(),
                st::U32,
                vec![
                    prop("asn", Value::from(10i64), st::I64),
                    tag("foo", (None, None)),
                    tag("foo.bar", (Some(1000), Some(2000))),
                    Edit::TagPropSet {
                        tag: "foo".into(),
                        prop: "score".into(),
                        valu: Value::from(5i64),
                        oldv: Value::Nil,
                        stortype: st::I64,
                    },
                    Edit::NodeDataSet {
                        name: "notes".into(),
                        valu: Value::from("hi"),
                        oldv: Value::Nil,
                    },
                    Edit::EdgeAdd {
                        verb: "refs".into(),
                        n2,
                    },
                ],
            )],
            &meta(1234),
        )
        .expect("store");
    assert_eq!(stored.offset, Some(0));
    let b = buid("inet:ipv4", &ip);
    let [applied] = stored.applied.as_slice() else {
        panic!("one nodeedit: {:?}", stored.applied);
    };
    let kinds: Vec<i64> = applied.edits.iter().map(Edit::kind).collect();
    // NODE_ADD is followed by the layer's own `.created` PROP_SET.
    assert_eq!(kinds, vec![0, 2, 2, 4, 4, 6, 8, 10]);
    assert_eq!(
        applied.edits[1],
        Edit::PropSet {
            prop: ".created".into(),
            valu: Value::from(1234i64),
            oldv: Value::Nil,
            stortype: st::MINTIME
        }
    );

    let sode = layer.sode(&b).expect("sode").expect("node exists");
    assert_eq!(sode.form, "inet:ipv4");
    assert_eq!(sode.valu, Some((ip.clone(), st::U32)));
    assert_eq!(sode.prop("asn"), Some((&Value::from(10i64), st::I64)));
    assert_eq!(sode.tag("foo"), Some((None, None)));
    assert_eq!(sode.tag("foo.bar"), Some((Some(1000), Some(2000))));
    assert_eq!(
        sode.tagprop("foo", "score"),
        Some((&Value::from(5i64), st::I64))
    );
    let reader = layer.reader().expect("reader");
    assert_eq!(
        reader.nodedata(&b, "notes").expect("data"),
        Some(Value::from("hi"))
    );
    assert_eq!(
        reader.edges_n1(&b, None).expect("n1"),
        vec![("refs".into(), n2)]
    );
    drop(reader);

    // Changing values reports the old ones.
    let stored = store_on(
        &layer,
        "inet:ipv4",
        &ip,
        vec![
            prop("asn", Value::from(20i64), st::I64),
            Edit::NodeDataSet {
                name: "notes".into(),
                valu: Value::from("bye"),
                oldv: Value::Nil,
            },
        ],
        2000,
    );
    assert_eq!(
        stored.applied[0].edits,
        vec![
            Edit::PropSet {
                prop: "asn".into(),
                valu: Value::from(20i64),
                oldv: Value::from(10i64),
                stortype: st::I64
            },
            Edit::NodeDataSet {
                name: "notes".into(),
                valu: Value::from("bye"),
                oldv: Value::from("hi")
            }
        ]
    );

    // Every delete edit, each reporting what it removed.
    let stored = store_on(
        &layer,
        "inet:ipv4",
        &ip,
        vec![
            Edit::PropDel {
                prop: "asn".into(),
                oldv: Value::Nil,
                stortype: st::I64,
            },
            Edit::TagPropDel {
                tag: "foo".into(),
                prop: "score".into(),
                oldv: Value::Nil,
                stortype: st::I64,
            },
            Edit::TagDel {
                tag: "foo.bar".into(),
                oldv: (None, None),
            },
            Edit::NodeDataDel {
                name: "notes".into(),
                oldv: Value::Nil,
            },
            Edit::EdgeDel {
                verb: "refs".into(),
                n2,
            },
        ],
        3000,
    );
    assert_eq!(
        stored.applied[0].edits,
        vec![
            Edit::PropDel {
                prop: "asn".into(),
                oldv: Value::from(20i64),
                stortype: st::I64
            },
            Edit::TagPropDel {
                tag: "foo".into(),
                prop: "score".into(),
                oldv: Value::from(5i64),
                stortype: st::I64
            },
            Edit::TagDel {
                tag: "foo.bar".into(),
                oldv: (Some(1000), Some(2000))
            },
            Edit::NodeDataDel {
                name: "notes".into(),
                oldv: Value::from("bye")
            },
            Edit::EdgeDel {
                verb: "refs".into(),
                n2
            },
        ]
    );
    let sode = layer.sode(&b).expect("sode").expect("node still exists");
    assert_eq!(sode.prop("asn"), None);
    assert_eq!(sode.tag("foo.bar"), None);
    assert_eq!(sode.tag("foo"), Some((None, None)));
    assert!(sode.tagprops.is_empty());
    let reader = layer.reader().expect("reader");
    assert_eq!(reader.nodedata(&b, "notes").expect("data"), None);
    assert!(reader.edges_n1(&b, None).expect("n1").is_empty());
    assert!(reader.edges_n2(&n2, None).expect("n2").is_empty());
    drop(reader);

    // Deleting the node, then its last tag and prop, removes the storage node entirely.
    let stored = store_on(
        &layer,
        "inet:ipv4",
        &ip,
        vec![
            Edit::TagDel {
                tag: "foo".into(),
                oldv: (None, None),
            },
            Edit::PropDel {
                prop: ".created".into(),
                oldv: Value::Nil,
                stortype: st::MINTIME,
            },
            Edit::NodeDel {
                valu: ip.clone(),
                stortype: st::U32,
            },
        ],
        4000,
    );
    assert_eq!(stored.applied[0].edits.len(), 3);
    assert_eq!(
        stored.applied[0].edits[2],
        Edit::NodeDel {
            valu: ip.clone(),
            stortype: st::U32
        }
    );
    assert_eq!(layer.sode(&b).expect("sode"), None);
    assert_eq!(layer.next_offset(), 4);
}

#[test]
fn only_changed_edits_are_logged() {
    let (_dir, layer) = fresh();
    let edits = [node(
        "inet:ipv4",
        Value::from(1u64),
        st::U32,
        vec![tag("t", (None, None))],
    )];
    let first = layer.store(&edits, &meta(10)).expect("store");
    assert_eq!(first.offset, Some(0));
    let again = layer.store(&edits, &meta(20)).expect("store again");
    assert_eq!(again.offset, None);
    assert_eq!(*again.applied, vec![]);
    assert_eq!(again.sodes, vec![]);
    assert_eq!(again.version, 1);
    assert_eq!(layer.next_offset(), 1);

    // A re-add with one new tag logs only the tag.
    let mut more = edits[0].clone();
    more.edits.push(tag("u", (None, None)));
    let stored = layer.store(&[more], &meta(30)).expect("store");
    assert_eq!(stored.offset, Some(1));
    assert_eq!(
        stored.applied[0].edits,
        vec![Edit::TagSet {
            tag: "u".into(),
            valu: (None, None),
            oldv: None
        }]
    );
    let logged: Vec<LogEntry> = layer
        .edits_from(0)
        .expect("log")
        .collect::<SynResult<_>>()
        .expect("entries");
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[1].edits, *stored.applied);
    assert_eq!(logged[1].meta, meta(30));
}

#[test]
fn created_keeps_the_smaller_time() {
    let (_dir, layer) = fresh();
    let b = ipv4_buid(7);
    layer.store(&[ipv4(7)], &meta(2000)).expect("store");
    assert_eq!(created(&layer, &b), Some(2000));
    let older = on(
        "inet:ipv4",
        &Value::from(7u64),
        vec![prop(".created", Value::from(1000i64), st::MINTIME)],
    );
    let stored = layer.store(&[older], &meta(5000)).expect("store");
    assert_eq!(
        stored.applied[0].edits,
        vec![Edit::PropSet {
            prop: ".created".into(),
            valu: Value::from(1000i64),
            oldv: Value::from(2000i64),
            stortype: st::MINTIME
        }]
    );
    let newer = on(
        "inet:ipv4",
        &Value::from(7u64),
        vec![prop(".created", Value::from(3000i64), st::MINTIME)],
    );
    let stored = layer.store(&[newer], &meta(5000)).expect("store");
    assert_eq!(stored.offset, None);
    assert_eq!(created(&layer, &b), Some(1000));
    // Re-adding an existing node changes nothing, `.created` included.
    assert_eq!(
        layer.store(&[ipv4(7)], &meta(10)).expect("store").offset,
        None
    );
    assert_eq!(created(&layer, &b), Some(1000));
    // Without a time in the meta, `.created` is now.
    let before = now_ms();
    layer
        .store(&[ipv4(8)], &Value::map([("user", Value::from("u"))]))
        .expect("store");
    let tick = created(&layer, &ipv4_buid(8)).expect(".created");
    assert!(tick >= before && tick <= now_ms(), "{tick}");
}

#[test]
fn int_lifts_follow_value_order() {
    let (_dir, layer) = fresh();
    let values = [-5i64, 300, 0, -1, 42, i64::MAX, 7, -9_000_000_000];
    let edits: Vec<NodeEdit> = values
        .iter()
        .map(|v| node("test:int", Value::from(*v), st::I64, vec![]))
        .collect();
    layer.store(&edits, &meta(1)).expect("store");
    let ids = |vals: &[i64]| -> Vec<Buid> {
        vals.iter()
            .map(|v| buid("test:int", &Value::from(*v)))
            .collect()
    };
    let reader = layer.reader().expect("reader");
    let lift = |cmp: Cmp| collect(reader.lift_prop("test:int", None, st::I64, &cmp));
    assert_eq!(
        collect(reader.lift_form("test:int")),
        ids(&[-9_000_000_000, -5, -1, 0, 7, 42, 300, i64::MAX])
    );
    assert_eq!(lift(Cmp::Eq(Value::from(42i64))), ids(&[42]));
    assert_eq!(
        lift(Cmp::Lt(Value::from(0i64))),
        ids(&[-9_000_000_000, -5, -1])
    );
    assert_eq!(
        lift(Cmp::Le(Value::from(0i64))),
        ids(&[-9_000_000_000, -5, -1, 0])
    );
    assert_eq!(lift(Cmp::Gt(Value::from(42i64))), ids(&[300, i64::MAX]));
    assert_eq!(lift(Cmp::Ge(Value::from(42i64))), ids(&[42, 300, i64::MAX]));
    assert_eq!(
        lift(Cmp::Range(Value::from(-5i64), Value::from(7i64))),
        ids(&[-5, -1, 0, 7])
    );
    assert!(lift(Cmp::Range(Value::from(8i64), Value::from(1i64))).is_empty());
    // Values outside the stortype match nothing rather than failing.
    assert!(lift(Cmp::Lt(Value::Int(i128::from(i64::MIN) - 10))).is_empty());
    assert!(lift(Cmp::Gt(Value::Int(1i128 << 70))).is_empty());
    assert!(
        reader
            .lift_prop("test:int", None, st::I64, &Cmp::Prefix("1".into()))
            .is_err()
    );
    assert!(
        reader
            .lift_prop("test:int", None, st::I64, &Cmp::Eq(Value::from("x")))
            .is_err()
    );
    // Unknown forms and props lift nothing.
    assert!(collect(reader.lift_form("newp:form")).is_empty());
}

#[test]
fn int_keys_use_synapse_offsets() {
    // Signed: big-endian of valu + 2^(bits-1) - 1; unsigned: the value itself.
    assert_eq!(
        index_key(&Value::from(-1i64), st::I64).expect("key"),
        vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
    );
    assert_eq!(
        index_key(&Value::from(0x01020304u64), st::U32).expect("key"),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        index_key(&Value::from(5i64), st::I8).expect("key"),
        vec![127 + 5]
    );
    assert!(index_key(&Value::from(-128i64), st::I8).is_err());
    assert!(index_key(&Value::from(256u64), st::U8).is_err());
    assert_eq!(
        index_key(&Value::from(1i64), st::I128).expect("key"),
        (1u128 << 127).to_be_bytes().to_vec()
    );
    assert_eq!(
        index_key(&Value::from("us.va"), st::LOC).expect("key"),
        b"us.va.".to_vec()
    );
    assert_eq!(
        index_key(&Value::from("vertex.link"), st::FQDN).expect("key"),
        b"knil.xetrev".to_vec()
    );
    let long = "x".repeat(300);
    let key = index_key(&Value::from(long.as_str()), st::UTF8).expect("key");
    assert_eq!(key.len(), 256);
    assert_eq!(&key[..248], "x".repeat(248).as_bytes());
    assert!(index_key(&Value::from(1.5), st::U32).is_err());
    assert!(index_key(&Value::from("abc"), st::GUID).is_err());
    assert!(index_key(&Value::from("1"), st::HUGENUM).is_err());
}

#[test]
fn string_lifts_follow_utf8_byte_order() {
    let (_dir, layer) = fresh();
    let long_a = format!("{}a", "p".repeat(300));
    let long_b = format!("{}b", "p".repeat(300));
    let words = [
        "zz",
        "b",
        "é",
        "A",
        "aa",
        "a",
        "Hello World",
        &long_b,
        &long_a,
    ];
    let edits: Vec<NodeEdit> = words
        .iter()
        .map(|w| node("test:str", Value::from(*w), st::UTF8, vec![]))
        .collect();
    layer.store(&edits, &meta(1)).expect("store");
    let id = |w: &str| buid("test:str", &Value::from(w));
    let reader = layer.reader().expect("reader");
    let lift = |cmp: Cmp| collect(reader.lift_prop("test:str", None, st::UTF8, &cmp));
    let order = collect(reader.lift_form("test:str"));
    let expect_prefix: Vec<Buid> = ["A", "Hello World", "a", "aa", "b"].map(id).to_vec();
    assert_eq!(order[..5], expect_prefix[..]);
    // The two long strings share 248 bytes and sort by their hashes, then zz, then é.
    assert_eq!(order[7..], [id("zz"), id("é")]);
    let mut longs = order[5..7].to_vec();
    longs.sort();
    let mut want = vec![id(&long_a), id(&long_b)];
    want.sort();
    assert_eq!(longs, want);

    assert_eq!(lift(Cmp::Eq(Value::from("aa"))), vec![id("aa")]);
    assert_eq!(
        lift(Cmp::Eq(Value::from(long_a.as_str()))),
        vec![id(&long_a)]
    );
    assert_eq!(lift(Cmp::Prefix("a".into())), vec![id("a"), id("aa")]);
    assert_eq!(
        lift(Cmp::Prefix(format!("{}b", "p".repeat(300)))),
        vec![id(&long_b)]
    );
    assert_eq!(lift(Cmp::Prefix("p".repeat(250))).len(), 2);
    assert_eq!(
        lift(Cmp::Range(Value::from("a"), Value::from("b"))),
        vec![id("a"), id("aa"), id("b")]
    );
    assert_eq!(
        lift(Cmp::Lt(Value::from("a"))),
        vec![id("A"), id("Hello World")]
    );
    assert_eq!(lift(Cmp::Gt(Value::from("zz"))), vec![id("é")]);
    // `~=` is case-insensitive and unanchored, and reads long values from their nodes.
    assert_eq!(
        lift(Cmp::Regex("^a".into())),
        vec![id("A"), id("a"), id("aa")]
    );
    assert_eq!(lift(Cmp::Regex("WORLD".into())), vec![id("Hello World")]);
    assert_eq!(lift(Cmp::Regex("pb$".into())), vec![id(&long_b)]);
    let bad = reader.lift_prop("test:str", None, st::UTF8, &Cmp::Regex("(".into()));
    assert_eq!(bad.err().map(|e| e.name), Some("BadArg".to_string()));
}

#[test]
fn fqdn_lifts_follow_the_reversed_name() {
    let (_dir, layer) = fresh();
    let names = [
        "vertex.link",
        "b.com",
        "com",
        "a.com",
        "www.vertex.link",
        "link",
    ];
    let edits: Vec<NodeEdit> = names
        .iter()
        .map(|n| node("inet:fqdn", Value::from(*n), st::FQDN, vec![]))
        .collect();
    layer.store(&edits, &meta(1)).expect("store");
    let id = |n: &str| buid("inet:fqdn", &Value::from(n));
    let reader = layer.reader().expect("reader");
    let lift = |cmp: Cmp| collect(reader.lift_prop("inet:fqdn", None, st::FQDN, &cmp));
    assert_eq!(
        collect(reader.lift_form("inet:fqdn")),
        // Reversed: "knil" < "knil.xetrev" < ... < "moc" < "moc.a" < "moc.b".
        [
            "link",
            "vertex.link",
            "www.vertex.link",
            "com",
            "a.com",
            "b.com"
        ]
        .map(id)
    );
    assert_eq!(
        lift(Cmp::Eq(Value::from("vertex.link"))),
        vec![id("vertex.link")]
    );
    assert_eq!(
        lift(Cmp::Eq(Value::from("*.vertex.link"))),
        vec![id("www.vertex.link")]
    );
    assert_eq!(
        lift(Cmp::Eq(Value::from("*com"))),
        ["com", "a.com", "b.com"].map(id)
    );
    assert_eq!(lift(Cmp::Regex("^v".into())), vec![id("vertex.link")]);
    assert!(
        reader
            .lift_prop("inet:fqdn", None, st::FQDN, &Cmp::Prefix("a".into()))
            .is_err()
    );
}

#[test]
fn ival_time_guid_loc_float_ipv6_and_latlong_lifts() {
    let (_dir, layer) = fresh();
    let ival = |a: i64, b: i64| Value::Array(vec![Value::from(a), Value::from(b)]);
    let guids = [
        "ff000000000000000000000000000000",
        "0a000000000000000000000000000000",
        "0b100000000000000000000000000000",
    ];
    let floats = [2.5, -1.0, 0.0, -0.5, 100.0];
    let addrs = ["::1", "2001:db8::1", "::ffff:1.2.3.4"];
    let mut edits = Vec::new();
    for (i, g) in guids.iter().enumerate() {
        let props = vec![
            prop(".seen", ival(100 * i as i64, 100 * i as i64 + 50), st::IVAL),
            prop("time", Value::from(1000 * i as i64), st::TIME),
            prop("loc", Value::from(["us", "us.va", "usa"][i]), st::LOC),
            prop("ratio", Value::from(floats[i]), st::FLOAT64),
            prop("addr", Value::from(addrs[i]), st::IPV6),
            prop(
                "latlong",
                Value::Array(vec![Value::from(i as f64), Value::from(-(i as f64))]),
                st::LATLONG,
            ),
        ];
        edits.push(node("test:guid", Value::from(*g), st::GUID, props));
    }
    layer.store(&edits, &meta(1)).expect("store");
    let id = |i: usize| buid("test:guid", &Value::from(guids[i]));
    let reader = layer.reader().expect("reader");
    let lift =
        |p: Option<&str>, t: u16, cmp: Cmp| collect(reader.lift_prop("test:guid", p, t, &cmp));
    // GUIDs by raw bytes; `^=` by hex digits, odd counts too.
    assert_eq!(
        collect(reader.lift_form("test:guid")),
        vec![id(1), id(2), id(0)]
    );
    assert_eq!(
        lift(None, st::GUID, Cmp::Prefix("0".into())),
        vec![id(1), id(2)]
    );
    assert_eq!(lift(None, st::GUID, Cmp::Prefix("0b1".into())), vec![id(2)]);
    assert!(lift(None, st::GUID, Cmp::Prefix("0b2".into())).is_empty());
    assert_eq!(
        lift(None, st::GUID, Cmp::Eq(Value::from(guids[0]))),
        vec![id(0)]
    );
    // Intervals: exact and overlapping.
    assert_eq!(
        lift(Some(".seen"), st::IVAL, Cmp::Eq(ival(100, 150))),
        vec![id(1)]
    );
    assert_eq!(
        lift(Some(".seen"), st::IVAL, Cmp::Overlaps(ival(40, 120))),
        vec![id(0), id(1)]
    );
    assert!(lift(Some(".seen"), st::IVAL, Cmp::Overlaps(ival(50, 100))).is_empty());
    // Times inside [min, max).
    assert_eq!(
        lift(Some("time"), st::TIME, Cmp::Overlaps(ival(0, 2000))),
        vec![id(0), id(1)]
    );
    // LOC prefixes match whole segments.
    assert_eq!(
        lift(Some("loc"), st::LOC, Cmp::Prefix("us".into())),
        vec![id(0), id(1)]
    );
    assert_eq!(
        lift(Some("loc"), st::LOC, Cmp::Eq(Value::from("usa"))),
        vec![id(2)]
    );
    // Floats in numeric order, negatives included.
    assert_eq!(
        lift(Some("ratio"), st::FLOAT64, Cmp::Any),
        vec![id(1), id(2), id(0)]
    );
    assert_eq!(
        lift(Some("ratio"), st::FLOAT64, Cmp::Lt(Value::from(0.0))),
        vec![id(1)]
    );
    assert_eq!(
        lift(
            Some("ratio"),
            st::FLOAT64,
            Cmp::Range(Value::from(-1.0), Value::from(0.0))
        ),
        vec![id(1), id(2)]
    );
    assert!(
        reader
            .lift_prop(
                "test:guid",
                Some("ratio"),
                st::FLOAT64,
                &Cmp::Ge(Value::from(f64::NAN))
            )
            .is_err()
    );
    // IPv6 by address bytes.
    assert_eq!(
        lift(Some("addr"), st::IPV6, Cmp::Any),
        vec![id(0), id(2), id(1)]
    );
    assert_eq!(
        lift(Some("addr"), st::IPV6, Cmp::Gt(Value::from("::1"))),
        vec![id(2), id(1)]
    );
    let latlong = Value::Array(vec![Value::from(1.0), Value::from(-1.0)]);
    assert_eq!(
        lift(Some("latlong"), st::LATLONG, Cmp::Eq(latlong)),
        vec![id(1)]
    );
}

#[test]
fn array_items_are_indexed_one_by_one() {
    let (_dir, layer) = fresh();
    let arr = |items: &[&str]| Value::Array(items.iter().map(|s| Value::from(*s)).collect());
    let names = st::ARRAY | st::UTF8;
    let c1 = "c1".repeat(16);
    let c2 = "c2".repeat(16);
    layer
        .store(
            &[
                node(
                    "ps:contact",
                    Value::from(c1.as_str()),
                    st::GUID,
                    vec![prop("names", arr(&["alice", "bob"]), names)],
                ),
                node(
                    "ps:contact",
                    Value::from(c2.as_str()),
                    st::GUID,
                    vec![prop("names", arr(&["carol", "alicia"]), names)],
                ),
            ],
            &meta(1),
        )
        .expect("store");
    let (a, b) = (
        buid("ps:contact", &Value::from(c1.as_str())),
        buid("ps:contact", &Value::from(c2.as_str())),
    );
    let reader = layer.reader().expect("reader");
    let items = |cmp: Cmp| collect(reader.lift_prop_array("ps:contact", "names", names, &cmp));
    assert_eq!(items(Cmp::Eq(Value::from("bob"))), vec![a]);
    assert_eq!(items(Cmp::Prefix("ali".into())), vec![a, b]);
    assert_eq!(items(Cmp::Regex("^car".into())), vec![b]);
    assert_eq!(items(Cmp::Any), vec![a, b, a, b]);
    assert_eq!(
        collect(reader.lift_prop(
            "ps:contact",
            Some("names"),
            names,
            &Cmp::Eq(arr(&["carol", "alicia"]))
        )),
        vec![b]
    );
    drop(reader);
    // Replacing the array drops the old items from the index.
    layer
        .store(
            &[on(
                "ps:contact",
                &Value::from(c1.as_str()),
                vec![prop("names", arr(&["dave"]), names)],
            )],
            &meta(2),
        )
        .expect("store");
    let reader = layer.reader().expect("reader");
    let items = |cmp: Cmp| collect(reader.lift_prop_array("ps:contact", "names", names, &cmp));
    assert!(items(Cmp::Eq(Value::from("bob"))).is_empty());
    assert_eq!(items(Cmp::Eq(Value::from("dave"))), vec![a]);
}

#[test]
fn tag_lifts_group_forms_in_first_written_order() {
    let (_dir, layer) = fresh();
    let fqdns = ["b.com", "a.com"];
    let mut edits: Vec<NodeEdit> = fqdns
        .iter()
        .map(|n| {
            node(
                "inet:fqdn",
                Value::from(*n),
                st::FQDN,
                vec![tag("t", (None, None))],
            )
        })
        .collect();
    for n in [3u32, 1, 2] {
        let mut ne = ipv4(n);
        ne.edits
            .push(tag("t", (Some(n as i64 * 10), Some(n as i64 * 10 + 5))));
        edits.push(ne);
    }
    layer.store(&edits, &meta(1)).expect("store");
    let mut fq: Vec<Buid> = fqdns
        .iter()
        .map(|n| buid("inet:fqdn", &Value::from(*n)))
        .collect();
    fq.sort();
    let mut ips: Vec<Buid> = [3, 1, 2].map(ipv4_buid).to_vec();
    ips.sort();
    let reader = layer.reader().expect("reader");
    // inet:fqdn was written first, so its nodes come first; within a form, by buid.
    let all = collect(reader.lift_tag("t", None));
    assert_eq!(all, [fq.clone(), ips.clone()].concat());
    assert_eq!(collect(reader.lift_tag("t", Some("inet:ipv4"))), ips);
    assert!(collect(reader.lift_tag("t", Some("newp:form"))).is_empty());
    assert!(collect(reader.lift_tag("newp", None)).is_empty());
    let ival = |a: i64, b: i64| Value::Array(vec![Value::from(a), Value::from(b)]);
    assert_eq!(
        collect(reader.lift_tag_valu("t", None, &Cmp::Eq(ival(20, 25)))),
        vec![ipv4_buid(2)]
    );
    let mut overlap = vec![ipv4_buid(2), ipv4_buid(3)];
    overlap.sort();
    assert_eq!(
        collect(reader.lift_tag_valu("t", Some("inet:ipv4"), &Cmp::Overlaps(ival(24, 31)))),
        overlap
    );
    drop(reader);
    // A deleted tag leaves its index.
    layer
        .store(
            &[on(
                "inet:ipv4",
                &Value::from(1u64),
                vec![Edit::TagDel {
                    tag: "t".into(),
                    oldv: (None, None),
                }],
            )],
            &meta(2),
        )
        .expect("store");
    let reader = layer.reader().expect("reader");
    assert!(!collect(reader.lift_tag("t", None)).contains(&ipv4_buid(1)));
}

#[test]
fn universal_and_tag_prop_lifts() {
    let (_dir, layer) = fresh();
    let scored = |n: u32, score: i64| {
        let mut ne = ipv4(n);
        ne.edits.push(Edit::TagPropSet {
            tag: "rep".into(),
            prop: "score".into(),
            valu: Value::from(score),
            oldv: Value::Nil,
            stortype: st::I64,
        });
        ne
    };
    layer
        .store(&[scored(1, 50), scored(2, 10)], &meta(100))
        .expect("store");
    layer
        .store(
            &[node("inet:fqdn", Value::from("x.com"), st::FQDN, vec![])],
            &meta(300),
        )
        .expect("store");
    layer.store(&[scored(3, 30)], &meta(200)).expect("store");
    let fq = buid("inet:fqdn", &Value::from("x.com"));
    let reader = layer.reader().expect("reader");
    let univ = |form: Option<&str>, cmp: Cmp| {
        collect(reader.lift_univ(".created", form, st::MINTIME, &cmp))
    };
    let mut first = vec![ipv4_buid(1), ipv4_buid(2)];
    first.sort();
    assert_eq!(
        univ(None, Cmp::Ge(Value::from(150i64))),
        vec![ipv4_buid(3), fq]
    );
    assert_eq!(
        univ(None, Cmp::Any),
        [first.clone(), vec![ipv4_buid(3), fq]].concat()
    );
    assert_eq!(
        univ(Some("inet:ipv4"), Cmp::Gt(Value::from(100i64))),
        vec![ipv4_buid(3)]
    );
    let tp = |form: Option<&str>, cmp: Cmp| {
        collect(reader.lift_tagprop("rep", "score", form, st::I64, &cmp))
    };
    assert_eq!(
        tp(None, Cmp::Any),
        vec![ipv4_buid(2), ipv4_buid(3), ipv4_buid(1)]
    );
    assert_eq!(
        tp(Some("inet:ipv4"), Cmp::Ge(Value::from(30i64))),
        vec![ipv4_buid(3), ipv4_buid(1)]
    );
    assert!(tp(Some("inet:fqdn"), Cmp::Any).is_empty());
}

#[test]
fn deletes_and_changes_remove_index_entries() {
    let (_dir, layer) = fresh();
    let mut ne = ipv4(5);
    ne.edits.push(prop("asn", Value::from(10i64), st::I64));
    layer.store(&[ne, ipv4(6)], &meta(1)).expect("store");
    assert_eq!(layer.form_counts().expect("counts")["inet:ipv4"], 2);
    layer
        .store(
            &[on(
                "inet:ipv4",
                &Value::from(5u64),
                vec![prop("asn", Value::from(20i64), st::I64)],
            )],
            &meta(2),
        )
        .expect("store");
    let asn = |layer: &Layer, v: i64| {
        collect(layer.reader().expect("reader").lift_prop(
            "inet:ipv4",
            Some("asn"),
            st::I64,
            &Cmp::Eq(Value::from(v)),
        ))
    };
    assert!(asn(&layer, 10).is_empty());
    assert_eq!(asn(&layer, 20), vec![ipv4_buid(5)]);
    let del = on(
        "inet:ipv4",
        &Value::from(5u64),
        vec![
            Edit::PropDel {
                prop: "asn".into(),
                oldv: Value::Nil,
                stortype: st::I64,
            },
            Edit::NodeDel {
                valu: Value::from(5u64),
                stortype: st::U32,
            },
        ],
    );
    layer.store(&[del], &meta(3)).expect("store");
    assert!(asn(&layer, 20).is_empty());
    let reader = layer.reader().expect("reader");
    assert_eq!(collect(reader.lift_form("inet:ipv4")), vec![ipv4_buid(6)]);
    // The node delete leaves `.created` (Synapse's node deletion sends its own PROP_DELs).
    let mut both = vec![ipv4_buid(5), ipv4_buid(6)];
    both.sort();
    assert_eq!(
        collect(reader.lift_univ(".created", None, st::MINTIME, &Cmp::Any)),
        both
    );
    assert_eq!(layer.form_counts().expect("counts")["inet:ipv4"], 1);
}

#[test]
fn comp_values_lift_by_hash_and_regex() {
    let (_dir, layer) = fresh();
    let comp = |fqdn: &str, ip: u64| Value::Array(vec![Value::from(fqdn), Value::from(ip)]);
    let values = [comp("www.vertex.link", 1), comp("woot.com", 2)];
    let edits: Vec<NodeEdit> = values
        .iter()
        .map(|v| node("inet:dns:a", v.clone(), st::MSGP, vec![]))
        .collect();
    layer.store(&edits, &meta(1)).expect("store");
    let id = |v: &Value| buid("inet:dns:a", v);
    let lift = |cmp: Cmp| {
        layer
            .lift(|r| r.lift_prop("inet:dns:a", None, st::MSGP, &cmp))
            .expect("lift")
    };
    assert_eq!(lift(Cmp::Eq(values[1].clone())), vec![id(&values[1])]);
    // `~=` searches the strings inside the stored value.
    assert_eq!(lift(Cmp::Regex("VERTEX".into())), vec![id(&values[0])]);
    assert!(lift(Cmp::Regex("^1$".into())).is_empty());
    // Comp forms lift in the order of their hashes, as in Synapse.
    let mut by_hash: Vec<(Vec<u8>, Buid)> = values
        .iter()
        .map(|v| (index_key(v, st::MSGP).expect("key"), id(v)))
        .collect();
    by_hash.sort();
    assert_eq!(
        lift(Cmp::Any),
        by_hash.into_iter().map(|(_, b)| b).collect::<Vec<_>>()
    );
}

/// Add the `inet:ipv4` node `valu` with the tag `name` at time 10.
fn add_tagged_ipv4(layer: &Layer, valu: &Value, name: &str) -> Stored {
    let edits = vec![tag(name, (None, None))];
    layer
        .store(
            &[node("inet:ipv4", valu.clone(), st::U32, edits)],
            &meta(10),
        )
        .expect("store")
}

#[test]
fn a_store_returns_the_storage_nodes_it_left_and_the_version_after_it() {
    let (_dir, layer) = fresh();
    let one = Value::from(1u64);
    let stored = add_tagged_ipv4(&layer, &one, "t");
    let b = buid("inet:ipv4", &one);
    assert_eq!(stored.version, layer.next_offset());
    assert_eq!(stored.sodes, vec![(b, layer.sode(&b).expect("sode"))]);
    assert!(stored.sodes[0].1.is_some());

    let gone = store_on(
        &layer,
        "inet:ipv4",
        &one,
        vec![
            Edit::TagDel {
                tag: "t".into(),
                oldv: (None, None),
            },
            Edit::PropDel {
                prop: ".created".into(),
                oldv: Value::Int(10),
                stortype: st::MINTIME,
            },
            Edit::NodeDel {
                valu: one.clone(),
                stortype: st::U32,
            },
        ],
        20,
    );
    assert_eq!(gone.sodes, vec![(b, None)]);
    assert_eq!(layer.sode(&b).expect("sode"), None);
    assert_eq!(gone.version, 2);
}

#[test]
fn each_call_of_a_batch_gets_the_storage_nodes_of_the_buids_it_changed() {
    let sode = |form: &str| Sode {
        form: form.into(),
        ..Sode::default()
    };
    let call = |buids: &[Buid]| Stored {
        offset: Some(0),
        applied: Arc::new(
            buids
                .iter()
                .map(|b| NodeEdit {
                    buid: *b,
                    form: "f".into(),
                    edits: vec![tag("t", (None, None))],
                })
                .collect(),
        ),
        sodes: Vec::new(),
        version: 0,
    };
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let mut stored = vec![call(&[a]), Stored::nothing(0), call(&[b, a])];
    let written = vec![(a, Some(sode("fa"))), (b, None)];
    hand_out(&mut stored, written.clone(), 7);
    assert_eq!(stored[0].sodes, vec![(a, Some(sode("fa")))]);
    assert_eq!(stored[1].sodes, vec![]);
    assert_eq!(stored[2].sodes, vec![(b, None), (a, Some(sode("fa")))]);
    assert!(stored.iter().all(|s| s.version == 7));

    let mut alone = vec![Stored::nothing(0), call(&[a, b])];
    hand_out(&mut alone, written.clone(), 8);
    assert_eq!(alone[1].sodes, written);
}

#[test]
fn a_failed_write_leaves_nothing_of_itself_for_the_next_write() {
    let (_dir, layer) = fresh();
    let one = Value::from(1u64);
    let b = buid("inet:ipv4", &one);
    add_tagged_ipv4(&layer, &one, "t");
    // The tag is staged on the node the last write left, then a bad prop fails the write.
    let bad = on(
        "inet:ipv4",
        &one,
        vec![
            tag("u", (None, None)),
            prop("asn", Value::from("x"), st::U32),
        ],
    );
    assert!(layer.store(&[bad], &meta(20)).is_err());
    let stored = store_on(&layer, "inet:ipv4", &one, vec![tag("v", (None, None))], 30);
    let sode = layer.sode(&b).expect("sode").expect("node");
    let tags: Vec<&str> = sode.tags.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, ["t", "v"]);
    assert_eq!(stored.sodes, vec![(b, Some(sode))]);
    layer.inner.pipeline.wait_applied().expect("applied");
    assert_eq!(layer.inner.pipeline.take_recent().len(), 1);

    // A bulk batch is not kept for the next write.
    let many: Vec<NodeEdit> = (10..10 + RECENT_KEPT as u64 + 1)
        .map(|n| node("inet:ipv4", Value::from(n), st::U32, vec![]))
        .collect();
    let stored = layer.store(&many, &meta(40)).expect("store many");
    assert_eq!(stored.sodes.len(), many.len());
    layer.inner.pipeline.wait_applied().expect("applied");
    assert!(layer.inner.pipeline.take_recent().is_empty());
}
