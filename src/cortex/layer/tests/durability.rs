//! Crashes: SIGKILL after acknowledged writes, torn log records, LMDB behind the log, and a
//! machine that went down with unflushed LMDB pages.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "SYN_LAYER_TEST_KILL_DIR";
/// Nodes per acknowledged batch in the child.
const CHILD_BATCH: u32 = 200;

fn child_batch(n: u32) -> Vec<NodeEdit> {
    (0..CHILD_BATCH)
        .map(|i| {
            let mut ne = ipv4(n * CHILD_BATCH + i);
            ne.edits
                .push(prop("asn", Value::from(i64::from(n)), st::I64));
            ne.edits.push(tag("batch", (None, None)));
            ne
        })
        .collect()
}

/// Run by `kill_9_loses_no_acknowledged_write` in a child process; does nothing on its own.
/// Stores batches forever, printing `ack N` after each `store` returns.
#[test]
#[ignore = "helper: runs only as a child of another test"]
fn child_writes_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let layer = Layer::open(std::path::Path::new(&dir), "layr").expect("open in child");
    let mut out = std::io::stdout().lock();
    for n in 0.. {
        layer
            .store(&child_batch(n), &meta(1))
            .expect("store in child");
        writeln!(out, "ack {n}").expect("write ack");
        out.flush().expect("flush ack");
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked: Vec<u32> = Vec::new();
    // Each round kills the writer mid-stream after some acknowledgements, then checks all.
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "cortex::layer::tests::durability::child_writes_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = 0;
        while seen < 5 + round * 3 {
            let line = lines.next().expect("child output").expect("read line");
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse().expect("ack number"));
                seen += 1;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Acknowledgements already printed before the kill count too.
        for line in lines {
            let line = line.expect("read line");
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse().expect("ack number"));
            }
        }
        let layer = Layer::open(dir.path(), "layr").expect("reopen after kill");
        let reader = layer.reader().expect("reader");
        for &n in &acked {
            for i in [0, CHILD_BATCH / 2, CHILD_BATCH - 1] {
                let b = ipv4_buid(n * CHILD_BATCH + i);
                let sode = reader.sode(&b).expect("sode").unwrap_or_else(|| {
                    panic!("round {round}: acknowledged batch {n} lost node {i}")
                });
                assert_eq!(
                    sode.prop("asn"),
                    Some((&Value::from(i64::from(n)), st::I64))
                );
                assert_eq!(sode.tag("batch"), Some((None, None)));
            }
        }
        // The log, the indexes and the counts agree with each other.
        let entries: Vec<LogEntry> = layer
            .edits_from(0)
            .expect("log")
            .collect::<SynResult<_>>()
            .expect("log reads back");
        assert_eq!(entries.len() as u64, layer.next_offset());
        let nodes = collect(reader.lift_tag("batch", Some("inet:ipv4"))).len();
        assert_eq!(nodes, entries.len() * CHILD_BATCH as usize);
        assert_eq!(
            layer.form_counts().expect("counts")["inet:ipv4"],
            nodes as u64
        );
        // The child restarts from batch 0, which is all there already: its next batch adds
        // nothing new until it passes the highest one, so offsets stay dense.
        acked.sort_unstable();
        acked.dedup();
    }
}

#[test]
fn a_torn_last_record_is_cut_off_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open(dir.path(), "layr").expect("open");
    layer.store(&[ipv4(1)], &meta(1)).expect("store");
    layer.store(&[ipv4(2)], &meta(1)).expect("store");
    drop(layer);
    let seg = log::segment_path(&dir.path().join(LOG_DIR), 0);
    let good_len = std::fs::metadata(&seg).expect("stat").len();
    // A record whose write never finished: a header promising more bytes than exist.
    let mut torn = Vec::new();
    log::frame_record(2, &[ipv4(3)], &meta(1), &mut torn).expect("frame");
    torn.truncate(torn.len() / 2);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    file.write_all(&torn).expect("append torn record");
    drop(file);
    let layer = Layer::open(dir.path(), "layr").expect("reopen");
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), good_len);
    assert_eq!(layer.next_offset(), 2);
    assert_eq!(layer.sode(&ipv4_buid(3)).expect("sode"), None);
    layer
        .store(&[ipv4(3)], &meta(1))
        .expect("store after repair");
    assert_eq!(layer.edits_from(0).expect("log").count(), 3);
    drop(layer);

    // A whole final record with a bad checksum (power loss can leave blocks of garbage) that
    // LMDB never applied is torn too.
    let len = std::fs::metadata(&seg).expect("stat").len();
    let mut garbled = Vec::new();
    log::frame_record(3, &[ipv4(4)], &meta(1), &mut garbled).expect("frame");
    let last = garbled.len() - 2;
    garbled[last] ^= 0xff;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    file.write_all(&garbled).expect("append garbled record");
    drop(file);
    let layer = Layer::open(dir.path(), "layr").expect("reopen");
    assert_eq!(layer.next_offset(), 3);
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), len);
    drop(layer);

    // Damage to a record LMDB has applied is not a torn write: the layer refuses to open and
    // leaves the file alone; so does damage followed by good records.
    let good = std::fs::read(&seg).expect("read");
    for at in [good.len() - 3, 20] {
        let mut bytes = good.clone();
        bytes[at] ^= 0xff;
        std::fs::write(&seg, &bytes).expect("write");
        let err = Layer::open(dir.path(), "layr").expect_err("damaged log");
        assert_eq!(err.name, "StorageError");
        assert_eq!(std::fs::read(&seg).expect("read"), bytes);
    }
}

#[test]
fn lmdb_behind_the_log_is_caught_up_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open(dir.path(), "layr").expect("open");
    layer.store(&[ipv4(1)], &meta(1)).expect("store");
    drop(layer);
    // Keep LMDB as it was after the first record ...
    let lmdb = dir.path().join(LMDB_DIR);
    let saved = dir.path().join("saved.lmdb");
    std::fs::create_dir(&saved).expect("mkdir");
    for file in ["data.mdb", "lock.mdb"] {
        std::fs::copy(lmdb.join(file), saved.join(file)).expect("copy");
    }
    let layer = Layer::open(dir.path(), "layr").expect("open");
    let mut two = ipv4(2);
    two.edits.push(tag("t", (Some(5), Some(6))));
    let mut one = on(
        "inet:ipv4",
        &Value::from(1u64),
        vec![prop("asn", Value::from(3i64), st::I64)],
    );
    one.edits.push(Edit::EdgeAdd {
        verb: "refs".into(),
        n2: ipv4_buid(2),
    });
    layer.store(&[two, one], &meta(2)).expect("store");
    let before = (
        layer.sode(&ipv4_buid(1)).expect("sode"),
        layer.sode(&ipv4_buid(2)).expect("sode"),
    );
    drop(layer);
    // ... as if the process died after the log write but before the LMDB commit.
    for file in ["data.mdb", "lock.mdb"] {
        std::fs::copy(saved.join(file), lmdb.join(file)).expect("restore");
    }
    let layer = Layer::open(dir.path(), "layr").expect("reopen replays");
    let after = (
        layer.sode(&ipv4_buid(1)).expect("sode"),
        layer.sode(&ipv4_buid(2)).expect("sode"),
    );
    assert_eq!(after, before);
    let reader = layer.reader().expect("reader");
    assert_eq!(collect(reader.lift_tag("t", None)), vec![ipv4_buid(2)]);
    assert_eq!(
        reader.edges_n2(&ipv4_buid(2), None).expect("n2"),
        vec![("refs".to_string(), ipv4_buid(1))]
    );
    assert_eq!(layer.form_counts().expect("counts")["inet:ipv4"], 2);
    assert_eq!(layer.next_offset(), 2);
}

#[test]
fn unflushed_lmdb_from_another_boot_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open(dir.path(), "layr").expect("open");
    let mut one = ipv4(1);
    one.edits.push(tag("t", (None, None)));
    layer.store(&[one, ipv4(2)], &meta(1)).expect("store");
    layer
        .store(
            &[on(
                "inet:ipv4",
                &Value::from(2u64),
                vec![Edit::NodeDel {
                    valu: Value::from(2u64),
                    stortype: st::U32,
                }],
            )],
            &meta(2),
        )
        .expect("store");
    let sode = layer.sode(&ipv4_buid(1)).expect("sode");
    drop(layer);
    // Closing flushed LMDB and removed the marker.
    assert!(!dir.path().join(DIRTY_FILE).exists());
    // Pretend the machine went down with LMDB pages unflushed: the marker names another boot,
    // and LMDB holds garbage.
    std::fs::write(dir.path().join(DIRTY_FILE), "another-boot").expect("marker");
    std::fs::write(dir.path().join(LMDB_DIR).join("data.mdb"), b"garbage").expect("clobber");
    let layer = Layer::open(dir.path(), "layr").expect("rebuild");
    assert_eq!(layer.sode(&ipv4_buid(1)).expect("sode"), sode);
    assert_eq!(
        layer
            .sode(&ipv4_buid(2))
            .expect("sode")
            .and_then(|s| s.valu),
        None
    );
    assert_eq!(layer.form_counts().expect("counts")["inet:ipv4"], 1);
    assert_eq!(layer.next_offset(), 2);
    assert_eq!(layer.edits_from(1).expect("log").count(), 1);
}

#[test]
fn a_layer_is_open_once_and_keeps_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No background flush during the test, so the marker's state is ours to check.
    let opts = LayerOptions {
        sync_interval: Duration::from_secs(3600),
        ..LayerOptions::default()
    };
    let layer = Layer::open_with(dir.path(), "layr", opts).expect("open");
    let err = Layer::open(dir.path(), "layr").expect_err("second open");
    assert!(err.mesg().contains("already open"), "{}", err.mesg());
    layer.store(&[ipv4(1)], &meta(1)).expect("store");
    layer.sync().expect("sync");
    assert!(!dir.path().join(DIRTY_FILE).exists());
    layer.store(&[ipv4(2)], &meta(1)).expect("store");
    assert!(dir.path().join(DIRTY_FILE).exists());
    layer.close().expect("close");
    let layer = Layer::open(dir.path(), "layr").expect("reopen");
    assert_eq!(layer.next_offset(), 2);
    assert_eq!(
        collect(layer.reader().expect("reader").lift_form("inet:ipv4")).len(),
        2
    );
    // Abbreviations made before the reopen are found and extended after it.
    let mut three = ipv4(3);
    three.edits.push(tag("new", (None, None)));
    layer.store(&[three], &meta(1)).expect("store");
    assert_eq!(
        collect(
            layer
                .reader()
                .expect("reader")
                .lift_tag("new", Some("inet:ipv4"))
        ),
        vec![ipv4_buid(3)]
    );
}

#[test]
fn reopening_right_after_close_finds_the_layer_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A busy flush thread must not keep a closed layer open.
    let opts = LayerOptions {
        sync_interval: Duration::from_millis(1),
        ..LayerOptions::default()
    };
    for n in 0..30u32 {
        let layer = Layer::open_with(dir.path(), "layr", opts.clone()).expect("open");
        layer.store(&[ipv4(n)], &meta(1)).expect("store");
        layer.close().expect("close");
    }
    let layer = Layer::open(dir.path(), "layr").expect("open");
    assert_eq!(layer.next_offset(), 30);
}

#[test]
fn a_segment_cut_short_while_being_created_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::open(dir.path(), "layr").expect("open");
    layer.store(&[ipv4(1)], &meta(1)).expect("store");
    drop(layer);
    // The next segment was created but its header never reached the disk.
    let log_dir = dir.path().join(LOG_DIR);
    std::fs::write(log::segment_path(&log_dir, 1), b"SYN").expect("short segment");
    let layer = Layer::open(dir.path(), "layr").expect("reopen");
    assert_eq!(log::list_segments(&log_dir).expect("segments"), vec![0]);
    layer.store(&[ipv4(2)], &meta(1)).expect("store");
    assert_eq!(layer.edits_from(0).expect("log").count(), 2);
}

#[test]
fn layers_and_readers_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Layer>();
    send::<LayerReader>();
    send::<EditIter>();
}

#[test]
fn the_map_grows_under_writes_and_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayerOptions {
        map_size: 1 << 20,
        ..LayerOptions::default()
    };
    let layer = Layer::open_with(dir.path(), "layr", opts.clone()).expect("open");
    for n in 0..20u32 {
        let batch: Vec<NodeEdit> = (0..500).map(|i| ipv4(n * 500 + i)).collect();
        layer.store(&batch, &meta(1)).expect("store grows the map");
        // A reader taken between writes sees everything so far.
        let seen = layer
            .lift(|r| r.lift_form("inet:ipv4"))
            .expect("lift")
            .len();
        assert_eq!(seen, (n as usize + 1) * 500);
    }
    drop(layer);
    let layer = Layer::open_with(dir.path(), "layr", opts).expect("reopen");
    assert_eq!(layer.form_counts().expect("counts")["inet:ipv4"], 10_000);
}

/// Copy a layer directory as a crashed machine would leave it (the lock file aside).
fn copy_layer_dir(from: &std::path::Path, to: &std::path::Path) {
    for sub in [LMDB_DIR, LOG_DIR] {
        std::fs::create_dir_all(to.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(from.join(sub)).expect("read dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(sub).join(entry.file_name())).expect("copy");
        }
    }
    if from.join(DIRTY_FILE).exists() {
        std::fs::copy(from.join(DIRTY_FILE), to.join(DIRTY_FILE)).expect("copy marker");
    }
}

#[test]
fn deferred_stores_flush_once_when_made_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayerOptions {
        sync_interval: Duration::from_secs(3600),
        ..LayerOptions::default()
    };
    let layer = Layer::open_with(dir.path(), "layr", opts).expect("open");
    let before = layer.log_syncs();
    for n in 0..20 {
        let stored = layer
            .store_deferred(&[ipv4(n)], &meta(1))
            .expect("deferred store");
        assert_eq!(stored.offset, Some(u64::from(n)));
    }
    // Applied and readable at once, but not flushed.
    assert_eq!(layer.log_syncs(), before);
    assert!(layer.sode(&ipv4_buid(19)).expect("sode").is_some());
    layer.make_durable().expect("make durable");
    assert_eq!(layer.log_syncs(), before + 1);
    // Nothing pending: no second flush.
    layer.make_durable().expect("make durable again");
    assert_eq!(layer.log_syncs(), before + 1);
    // A synced store flushes as before.
    layer.store(&[ipv4(100)], &meta(1)).expect("store");
    assert_eq!(layer.log_syncs(), before + 2);
}

#[test]
fn unsynced_records_lost_with_the_machine_end_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LayerOptions {
        sync_interval: Duration::from_secs(3600),
        ..LayerOptions::default()
    };
    let layer = Layer::open_with(dir.path(), "layr", opts).expect("open");
    layer
        .store(&[ipv4(1)], &meta(1))
        .expect("acknowledged store");
    layer
        .store_deferred(&[ipv4(2)], &meta(1))
        .expect("deferred");
    layer
        .store_deferred(&[ipv4(3)], &meta(1))
        .expect("deferred");
    let marker = std::fs::read_to_string(dir.path().join(DIRTY_FILE)).expect("marker");
    assert_eq!(
        marker.lines().nth(1),
        Some(format!("0 {SEGMENT_START}").as_str())
    );

    // The machine goes down: record 2's page never reached the disk (zeros), record 3's did.
    let crashed = tempfile::tempdir().expect("tempdir");
    copy_layer_dir(dir.path(), crashed.path());
    let seg = log::segment_path(&crashed.path().join(LOG_DIR), 0);
    let mut bytes = std::fs::read(&seg).expect("read segment");
    let first_len = u32::from_le_bytes(bytes[8..12].try_into().expect("len")) as usize;
    let second = 8 + 8 + first_len;
    let second_len = u32::from_le_bytes(bytes[second..second + 4].try_into().expect("len"));
    let second_end = second + 8 + second_len as usize;
    bytes[second..second_end].fill(0);
    std::fs::write(&seg, &bytes).expect("write segment");

    // Same boot (only the process died): a bad record before good ones is corruption.
    let same_boot = tempfile::tempdir().expect("tempdir");
    copy_layer_dir(crashed.path(), same_boot.path());
    let err = Layer::open(same_boot.path(), "layr").expect_err("damaged log");
    assert_eq!(err.name, "StorageError");

    // Another boot: the unsynced tail from the bad record on is dropped.
    let marker = marker.replacen(&boot_id(), "another-boot", 1);
    std::fs::write(crashed.path().join(DIRTY_FILE), marker).expect("marker");
    let recovered = Layer::open(crashed.path(), "layr").expect("recover");
    assert_eq!(recovered.next_offset(), 1);
    assert!(recovered.sode(&ipv4_buid(1)).expect("sode").is_some());
    assert_eq!(recovered.sode(&ipv4_buid(3)).expect("sode"), None);
    assert_eq!(std::fs::metadata(&seg).expect("stat").len(), second as u64);
    recovered
        .store(&[ipv4(4)], &meta(1))
        .expect("store after recovery");
    assert_eq!(recovered.edits_from(0).expect("log").count(), 2);

    // Made durable first, the same crash keeps everything.
    layer.make_durable().expect("make durable");
    let durable = tempfile::tempdir().expect("tempdir");
    copy_layer_dir(dir.path(), durable.path());
    let marker = std::fs::read_to_string(dir.path().join(DIRTY_FILE)).expect("marker");
    std::fs::write(
        durable.path().join(DIRTY_FILE),
        marker.replacen(&boot_id(), "another-boot", 1),
    )
    .expect("marker");
    let reopened = Layer::open(durable.path(), "layr").expect("rebuild");
    assert_eq!(reopened.next_offset(), 3);
    assert!(reopened.sode(&ipv4_buid(3)).expect("sode").is_some());
}
