//! A layer whose indexes were deferred and then built in bulk holds exactly what the same
//! writes through `store` would have left: the same storage nodes, index entries, counts,
//! abbreviations and log.

use super::random::{Rng, check_indexes, random_call};
use super::*;

/// The `(key, value)` entries of one database, in order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of every database of a layer, by database name.
pub(super) fn dump(layer: &Layer) -> Vec<(String, Entries)> {
    let d = &layer.inner.dbs;
    let dbs = [
        &d.bybuid,
        &d.byprop,
        &d.byarray,
        &d.bytag,
        &d.bytagprop,
        &d.edgesn1,
        &d.edgesn2,
        &d.nodedata,
        &d.abrv,
        &d.abrvrev,
        &d.counts,
        &d.meta,
        &d.logpos,
    ];
    layer
        .inner
        .slab
        .read(|r| {
            let mut out = Vec::new();
            for db in dbs {
                let mut entries = Vec::new();
                for entry in db.iter(r)? {
                    let (k, v) = entry?;
                    entries.push((k.to_vec(), v.to_vec()));
                }
                out.push((db.name().to_owned(), entries));
            }
            Ok(out)
        })
        .expect("dump")
}

/// The log's records, as read back.
pub(super) fn log_of(layer: &Layer) -> Vec<LogEntry> {
    layer
        .edits_from(0)
        .expect("log")
        .collect::<SynResult<_>>()
        .expect("records")
}

/// Many nodes that share prop values, tags and tag props (repeated keys), arrays with
/// repeated items, universal props and node data, in calls of 40 nodes; then random edits,
/// deletes and changes among them on a few more nodes.
pub(super) fn calls() -> Vec<Vec<NodeEdit>> {
    let mut rng = Rng(0xb01c_0000_5eed_0007);
    let mut out = Vec::new();
    let words = ["apple", "apricot", "banana", "cherry"];
    for chunk in 0..10u32 {
        let mut call = Vec::new();
        for n in chunk * 40..chunk * 40 + 40 {
            let mut edits = vec![
                prop("asn", Value::from(u64::from(n % 7)), st::U32),
                prop(
                    ".seen",
                    Value::from(vec![Value::from(10i64), Value::from(20i64)]),
                    st::IVAL,
                ),
                tag("rep.mal", (None, None)),
            ];
            if n % 3 == 0 {
                let items = (0..rng.below(4))
                    .map(|_| Value::from(words[rng.below(4) as usize]))
                    .collect();
                edits.push(prop("names", Value::Array(items), st::ARRAY | st::UTF8));
                edits.push(Edit::TagPropSet {
                    tag: "rep.mal".into(),
                    prop: "score".into(),
                    valu: Value::from(u64::from(n % 5)),
                    oldv: Value::Nil,
                    stortype: st::I64,
                });
            }
            if n % 5 == 0 {
                edits.push(tag("cno.c2", (Some(i64::from(n)), Some(i64::from(n) + 9))));
                edits.push(Edit::NodeDataSet {
                    name: "enrich".into(),
                    valu: Value::from(u64::from(n)),
                    oldv: Value::Nil,
                });
            }
            call.push(node("inet:ipv4", Value::from(u64::from(n)), st::U32, edits));
        }
        out.push(call);
    }
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    out.extend((0..200).map(|_| random_call(&mut rng)));
    out
}

/// Store `calls`, the first at time `start` (ms), the next one later, and so on.
pub(super) fn store_from(layer: &Layer, calls: &[Vec<NodeEdit>], start: usize) {
    for (n, call) in calls.iter().enumerate() {
        layer.store(call, &meta((start + n) as i64)).expect("store");
    }
}

#[test]
fn a_bulk_built_layer_equals_a_store_built_one() {
    let calls = calls();
    let (_d1, stored) = fresh();
    store_from(&stored, &calls, 0);
    check_indexes(&stored);
    let want = dump(&stored);
    let want_log = log_of(&stored);

    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayerOptions {
        defer_indexes: true,
        ..LayerOptions::default()
    };
    let bulk = Layer::open_with(dir.path(), "layr", opts.clone()).expect("open");
    store_from(&bulk, &calls, 0);
    assert!(
        bulk.lift(|r| r.lift_tag("rep.mal", None))
            .expect("lift")
            .is_empty(),
        "indexes are deferred"
    );
    assert_ne!(dump(&bulk), want);
    bulk.build_indexes().expect("build");
    assert!(!dir.path().join("index-build").exists(), "runs removed");
    assert_eq!(dump(&bulk), want);
    assert_eq!(log_of(&bulk), want_log);
    check_indexes(&bulk);
    assert_eq!(
        bulk.lift(|r| r.lift_tag("rep.mal", None))
            .expect("lift")
            .len(),
        400
    );

    // Written on after the build, the layer indexes as usual.
    let more = random_call(&mut Rng(99));
    bulk.store(&more, &meta(1000)).expect("store");
    stored.store(&more, &meta(1000)).expect("store");
    assert_eq!(dump(&bulk), dump(&stored));
}

#[test]
fn a_stopped_bulk_load_is_indexed_when_next_opened() {
    let calls = calls();
    let (_d1, stored) = fresh();
    let (first, rest) = calls.split_at(6);
    store_from(&stored, first, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayerOptions {
        defer_indexes: true,
        ..LayerOptions::default()
    };
    // Indexed writes first, then a load deferring them, stopped before its build; a bulk
    // reopen keeps deferring, and a plain open builds them.
    let layer = Layer::open(dir.path(), "layr").expect("open");
    store_from(&layer, &first[..3], 0);
    drop(layer);
    let layer = Layer::open_with(dir.path(), "layr", opts.clone()).expect("open");
    store_from(&layer, &first[3..], 3);
    drop(layer);
    let layer = Layer::open_with(dir.path(), "layr", opts).expect("open");
    store_from(&layer, rest, first.len());
    store_from(&stored, rest, first.len());
    drop(layer);
    let layer = Layer::open(dir.path(), "layr").expect("open builds the indexes");
    assert_eq!(dump(&layer), dump(&stored));
    check_indexes(&layer);
}
