//! Writes planned on the caller's thread and applied to LMDB by the applier thread.

use super::*;
use std::sync::mpsc;
use std::thread;

/// Hold LMDB's write lock on another thread until the returned sender sends (or drops): the
/// applier cannot commit meanwhile. It holds no share of the process's write gate, which
/// other tests take holds of.
fn block_lmdb_writes(layer: &Layer) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let slab = layer.inner.slab.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        slab.stall_writes(|| {
            started_tx.send(()).expect("started");
            let _ = release_rx.recv();
        })
        .expect("stalled write");
    });
    started_rx.recv().expect("the blocking write started");
    (release_tx, handle)
}

/// The log offset LMDB has applied up to, from a fresh snapshot.
fn lmdb_applied(layer: &Layer) -> u64 {
    let inner = &layer.inner;
    inner
        .slab
        .read(|r| inner.dbs.applied(r))
        .expect("read applied")
}

#[test]
fn planned_writes_are_read_before_lmdb_has_them_and_lifts_wait_for_them() {
    let (_dir, layer) = fresh();
    let one = Value::from(1u64);
    let b = buid("inet:ipv4", &one);
    // Inside the process's write gate while LMDB stalls: a backup hold taken meanwhile by
    // another test waits for this one instead of stopping its writes halfway.
    let inside = crate::storage::write_gate().enter();
    let (release, blocker) = block_lmdb_writes(&layer);

    // The write returns while LMDB cannot take it: logged, not applied.
    let stored = add_tagged_ipv4(&layer, &one, "t");
    assert_eq!(stored.offset, Some(0));
    assert_eq!(layer.next_offset(), 1);
    assert_eq!(lmdb_applied(&layer), 0);
    let sode = layer.sode(&b).expect("sode").expect("the planned node");
    assert_eq!(sode.tag("t"), Some((None, None)));
    let early = layer.node_reader().expect("node reader");

    // A second write is worked out against the first: the node exists, only the tag is new.
    let stored = store_on(&layer, "inet:ipv4", &one, vec![tag("u", (None, None))], 20);
    let edits = &stored.applied[0].edits;
    assert_eq!(
        edits,
        &vec![Edit::TagSet {
            tag: "u".into(),
            valu: (None, None),
            oldv: None
        }]
    );
    assert_eq!(lmdb_applied(&layer), 0);

    // A lift waits for the writes made before it.
    let (tx, rx) = mpsc::channel();
    let lifting = layer.clone();
    let lifter = thread::spawn(move || {
        let reader = lifting.reader().expect("reader");
        tx.send(collect(reader.lift_tag("u", None))).expect("send");
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a lift ran before the writes it follows were in LMDB"
    );
    release.send(()).expect("release");
    blocker.join().expect("blocker");
    drop(inside);
    assert_eq!(rx.recv().expect("lifted"), vec![b]);
    lifter.join().expect("lifter");
    assert_eq!(lmdb_applied(&layer), 2);

    // A reader opened between the writes shows the node as the newest write left it, now
    // from LMDB (its own snapshot predates the commit); so does a new one.
    let tags = |s: Sode| s.tags.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
    let seen = early.sode(&b).expect("sode").expect("node");
    assert_eq!(tags(seen), ["t", "u"]);
    let now = layer.node_reader().expect("reader").sode(&b).expect("sode");
    assert_eq!(tags(now.expect("node")), ["t", "u"]);
}

#[test]
fn a_reader_whose_snapshot_predates_a_commit_still_sees_the_committed_write() {
    let (_dir, layer) = fresh();
    let one = Value::from(1u64);
    let b = buid("inet:ipv4", &one);
    let inside = crate::storage::write_gate().enter();
    let (release, blocker) = block_lmdb_writes(&layer);
    // Opened before the write: its LMDB snapshot will never hold the node.
    let early = layer.node_reader().expect("node reader");
    add_tagged_ipv4(&layer, &one, "t");
    assert!(
        early.sode(&b).expect("sode").is_some(),
        "read from the queue"
    );
    release.send(()).expect("release");
    blocker.join().expect("blocker");
    drop(inside);
    // The applier commits the write and lets go of its storage node.
    layer.reader().expect("wait for the applier");
    assert_eq!(lmdb_applied(&layer), 1);
    let seen = early.sode(&b).expect("sode");
    assert_eq!(
        seen.expect("the committed node").tag("t"),
        Some((None, None))
    );
    let other = buid("inet:ipv4", &Value::from(2u64));
    assert_eq!(early.sode(&other).expect("sode"), None);
}

#[test]
fn a_backup_snapshot_point_never_falls_between_a_record_logged_and_applied() {
    let (_dir, layer) = fresh();
    let writing = layer.clone();
    let writer = thread::spawn(move || {
        for n in 0..3000u32 {
            writing
                .store_deferred(&[ipv4(n)], &meta(10))
                .expect("store");
        }
    });
    let mut holds = 0;
    while !writer.is_finished() {
        let hold = crate::storage::write_gate()
            .hold(Duration::from_secs(10))
            .expect("hold");
        assert_eq!(lmdb_applied(&layer), layer.next_offset());
        drop(hold);
        holds += 1;
        thread::sleep(Duration::from_millis(2));
    }
    writer.join().expect("writer");
    assert!(holds > 0);
    layer.reader().expect("reader");
    assert_eq!(lmdb_applied(&layer), 3000);
}

#[test]
fn writes_that_need_lmdb_wait_for_the_planned_ones() {
    let (_dir, layer) = fresh();
    let (release, blocker) = block_lmdb_writes(&layer);
    let one = Value::from(1u64);
    let b = buid("inet:ipv4", &one);
    add_tagged_ipv4(&layer, &one, "t");
    // Node data reads and writes LMDB: it waits for the planned add, then for the lock.
    let (tx, rx) = mpsc::channel();
    let writing = layer.clone();
    let data = thread::spawn(move || {
        let set = Edit::NodeDataSet {
            name: "d".into(),
            valu: Value::from(5u64),
            oldv: Value::Nil,
        };
        let stored = writing
            .store(&[on("inet:ipv4", &Value::from(1u64), vec![set])], &meta(30))
            .expect("store");
        tx.send(stored.offset).expect("send");
    });
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    release.send(()).expect("release");
    blocker.join().expect("blocker");
    assert_eq!(rx.recv().expect("stored"), Some(1));
    data.join().expect("data");
    // Deleting the node (a write that needs LMDB too) sees both.
    let del = Edit::NodeDel {
        valu: one.clone(),
        stortype: st::U32,
    };
    let stored = store_on(&layer, "inet:ipv4", &one, vec![del], 40);
    assert_eq!(stored.offset, Some(2));
    let sode = layer.sode(&b).expect("sode").expect("its tag is left");
    assert_eq!(sode.valu, None);
    let reader = layer.reader().expect("reader");
    assert_eq!(reader.nodedata(&b, "d").expect("data"), None);
}

#[test]
fn a_node_found_missing_is_looked_up_again_once_the_layer_was_written() {
    let (_dir, layer) = fresh();
    let one = Value::from(1u64);
    let b = ipv4_buid(1);
    let mut absent = Absent::default();
    absent.note(layer.next_offset(), b);
    // Found missing, then added by another write before this one is planned.
    add_tagged_ipv4(&layer, &one, "t");
    let edits = [node(
        "inet:ipv4",
        one.clone(),
        st::U32,
        vec![tag("u", (None, None))],
    )];
    let stored = layer
        .store_knowing(&edits, &meta(30), false, &absent)
        .expect("store");
    assert_eq!(
        stored.applied[0].edits,
        vec![tag("u", (None, None))],
        "the node exists: only the new tag changed something"
    );
    let sode = layer.sode(&b).expect("sode").expect("node");
    assert!(sode.tag("t").is_some() && sode.tag("u").is_some());

    // At the layer's current offset the note is the caller's word, not checked: planning
    // does not look the node up (so a false note adds an existing node again).
    let two = Value::from(2u64);
    let mut absent = Absent::default();
    absent.note(layer.next_offset(), ipv4_buid(2));
    let stored = layer
        .store_knowing(&[ipv4(2)], &meta(40), false, &absent)
        .expect("store");
    assert!(matches!(stored.applied[0].edits[0], Edit::NodeAdd { .. }));
    let mut absent = Absent::default();
    absent.note(layer.next_offset(), ipv4_buid(2));
    let again = [node("inet:ipv4", two, st::U32, vec![])];
    let stored = layer
        .store_knowing(&again, &meta(50), false, &absent)
        .expect("store");
    assert!(
        matches!(
            stored.applied.first().map(|ne| &ne.edits[0]),
            Some(Edit::NodeAdd { .. })
        ),
        "a note at the current offset is believed"
    );
}
