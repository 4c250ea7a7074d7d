use super::*;
use crate::msgpack::Value;
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

fn small(map_size: usize) -> SlabOptions {
    SlabOptions {
        map_size,
        ..SlabOptions::default()
    }
}

fn collect(entries: Entries<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_>>()
        .expect("iterate")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn named_dbs_and_dupsort() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path().join("cell.lmdb"), SlabOptions::default())?;
    let plain = slab.db("plain", false)?;
    let dups = slab.db("dups", true)?;
    assert!(dups.is_dupsort() && !plain.is_dupsort());

    slab.write(|w| {
        for (k, v) in [("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4")] {
            plain.put(w, k.as_bytes(), v.as_bytes())?;
        }
        plain.put(w, b"b", b"5")?; // replaces
        for v in ["z", "x", "y"] {
            dups.put(w, b"k", v.as_bytes())?;
        }
        dups.put(w, b"m", b"1")?;
        Ok(())
    })?;

    slab.read(|r| {
        assert_eq!(plain.get(r, b"b")?, Some(&b"5"[..]));
        assert_eq!(plain.get(r, b"nope")?, None);
        assert_eq!(plain.len(r)?, 4);
        assert_eq!(dups.len(r)?, 4);
        assert_eq!(dups.get(r, b"k")?, Some(&b"x"[..]));
        assert_eq!(
            collect(dups.dups(r, b"k")?),
            pairs(&[("k", "x"), ("k", "y"), ("k", "z")])
        );
        assert_eq!(collect(dups.dups(r, b"q")?), vec![]);
        assert_eq!(
            collect(plain.prefix(r, b"ab")?),
            pairs(&[("ab", "2"), ("abc", "3")])
        );
        assert_eq!(
            collect(plain.iter_from(r, b"abc")?),
            pairs(&[("abc", "3"), ("b", "5")])
        );
        assert_eq!(
            collect(plain.range(r, Bound::Excluded(b"a"), Bound::Excluded(b"b"))?),
            pairs(&[("ab", "2"), ("abc", "3")])
        );
        assert_eq!(collect(plain.iter(r)?).len(), 4);
        assert_eq!(plain.last(r)?, Some((&b"b"[..], &b"5"[..])));
        Ok(())
    })?;

    slab.write(|w| {
        assert!(dups.delete_dup(w, b"k", b"y")?);
        assert!(!dups.delete_dup(w, b"k", b"nope")?);
        assert!(plain.delete(w, b"a")?);
        assert!(!plain.delete(w, b"a")?);
        // LMDB would delete the whole key here; the wrapper refuses instead.
        let err = plain.delete_dup(w, b"ab", b"other").unwrap_err();
        assert!(matches!(err, StorageError::NotDupsort { .. }), "{err}");
        Ok(())
    })?;
    slab.read(|r| {
        assert_eq!(
            collect(dups.dups(r, b"k")?),
            pairs(&[("k", "x"), ("k", "z")])
        );
        assert_eq!(plain.get(r, b"ab")?, Some(&b"2"[..]));
        assert_eq!(plain.get(r, b"a")?, None);
        Ok(())
    })?;

    // The stored flag wins in LMDB, so a mismatch is an error rather than a silent surprise.
    let err = slab.db("dups", false).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::DupsortMismatch {
                stored: true,
                requested: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        slab.db("bad\0name", false),
        Err(StorageError::BadDbName { .. })
    ));
    assert_eq!(slab.db_names()?, vec!["dups", "plain"]);
    Ok(())
}

#[test]
fn aborted_write_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path(), SlabOptions::default())?;
    let db = slab.db("d", false)?;
    let err = slab
        .write(|w| {
            db.put(w, b"k", b"v")?;
            Err::<(), _>(w.abort_with("changed my mind"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("changed my mind"), "{err}");
    slab.read(|r| {
        assert_eq!(db.get(r, b"k")?, None);
        Ok(())
    })
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    size: u64,
    #[serde(with = "serde_bytes")]
    sha256: Vec<u8>,
    tags: Vec<String>,
}

#[test]
fn msgpack_and_serde_round_trips() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path(), SlabOptions::default())?;
    let db = slab.db("vals", false)?;
    let value = Value::map([
        ("int", Value::Int(-5)),
        ("big", Value::Int(u64::MAX.into())),
        ("bin", Value::Bin(vec![0, 1, 2])),
        ("list", Value::Array(vec![Value::Nil, Value::Bool(true)])),
        ("str", Value::Str("hehe".into())),
    ]);
    let record = Record {
        name: "blob".into(),
        size: 1 << 40,
        sha256: vec![0xab; 32],
        tags: vec!["a".into(), "b".into()],
    };
    slab.write(|w| {
        db.put_value(w, b"v", &value)?;
        db.put_serde(w, b"r", &record)?;
        db.put(w, b"junk", &[0xc1])?; // 0xc1 is never valid msgpack
        Ok(())
    })?;
    slab.read(|r| {
        assert_eq!(db.get_value(r, b"v")?, Some(value.clone()));
        assert_eq!(db.get(r, b"v")?, Some(&value.to_bytes()[..]));
        assert_eq!(db.get_serde::<Record>(r, b"r")?, Some(record_copy()));
        // Named encoding: a map whose keys are the field names, bytes as bin.
        let stored = db.get_value(r, b"r")?.expect("stored");
        assert_eq!(stored.get("name"), Some(&Value::Str("blob".into())));
        assert_eq!(stored.get("sha256"), Some(&Value::Bin(vec![0xab; 32])));
        assert_eq!(db.get_serde::<Record>(r, b"missing")?, None);
        let err = db.get_value(r, b"junk").unwrap_err();
        assert!(matches!(err, StorageError::Decode { .. }));
        assert!(err.to_string().contains("db vals"), "{err}");
        assert!(db.get_serde::<Record>(r, b"v").is_err());
        Ok(())
    })
}

fn record_copy() -> Record {
    Record {
        name: "blob".into(),
        size: 1 << 40,
        sha256: vec![0xab; 32],
        tags: vec!["a".into(), "b".into()],
    }
}

#[test]
fn seqn_offsets_are_dense_and_iterate_from_an_offset() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nodeedits.lmdb");
    {
        let slab = Slab::open(&path, SlabOptions::default())?;
        let seqn = Seqn::open(&slab, "nodeedits")?;
        assert_eq!(slab.read(|r| seqn.next_offset(r))?, 0);
        assert_eq!(slab.read(|r| seqn.last(r))?, None);
        let first = slab.write(|w| {
            let a = seqn.append(w, &Value::Str("zero".into()))?;
            let b = seqn.append(w, &Value::Int(1))?;
            Ok((a, b))
        })?;
        assert_eq!(first, (0, 1));
        let items: Vec<Value> = (2..6).map(Value::Int).collect();
        // Each small int is one msgpack byte.
        assert_eq!(
            slab.write(|w| seqn.append_many(w, &items))?,
            crate::storage::Appended {
                offsets: 2..6,
                bytes: 4
            }
        );
        assert_eq!(
            slab.write(|w| seqn.append_many(w, &[]))?,
            crate::storage::Appended {
                offsets: 6..6,
                bytes: 0
            }
        );
    }
    // Reopen: the next offset comes from the data, not from memory.
    let slab = Slab::open(&path, SlabOptions::default())?;
    let seqn = Seqn::open(&slab, "nodeedits")?;
    assert_eq!(slab.write(|w| seqn.append(w, &Value::Nil))?, 6);
    slab.read(|r| {
        assert_eq!(seqn.next_offset(r)?, 7);
        assert_eq!(seqn.get(r, 0)?, Some(Value::Str("zero".into())));
        assert_eq!(seqn.get(r, 4)?, Some(Value::Int(4)));
        assert_eq!(seqn.get(r, 7)?, None);
        assert_eq!(seqn.last(r)?, Some((6, Value::Nil)));
        let from3: Vec<(u64, Value)> = seqn.iter_from(r, 3)?.collect::<Result<_>>()?;
        let want: Vec<(u64, Value)> = vec![
            (3, Value::Int(3)),
            (4, Value::Int(4)),
            (5, Value::Int(5)),
            (6, Value::Nil),
        ];
        assert_eq!(from3, want);
        assert_eq!(seqn.iter_from(r, 100)?.count(), 0);
        // Keys are Synapse's int64en: 8 bytes, big-endian.
        let keys: Vec<Vec<u8>> = collect(seqn.db().iter(r)?)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys[1], vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(keys.len(), 7);
        Ok(())
    })?;
    assert_eq!(int64en(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(int64un(&int64en(u64::MAX - 7)), u64::MAX - 7);
    assert_eq!(int64un(&[1, 0]), 256);
    Ok(())
}

fn value_for(i: u32) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 3000];
    v[..4].copy_from_slice(&i.to_be_bytes());
    v
}

#[test]
fn map_grows_past_a_tiny_start() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grow.lmdb");
    let count = 4000u32; // about 12 MB of values into a 1 MiB map
    {
        let slab = Slab::open(&path, small(1 << 20))?;
        assert_eq!(slab.stats()?.map_size, 1 << 20);
        let db = slab.db("blobs", false)?;
        // Many small transactions, then one that alone is bigger than the starting map.
        for chunk in (0..count / 2).collect::<Vec<_>>().chunks(100) {
            slab.write(|w| {
                for &i in chunk {
                    db.put(w, &i.to_be_bytes(), &value_for(i))?;
                }
                Ok(())
            })?;
        }
        let mut runs = 0;
        slab.write(|w| {
            runs += 1;
            for i in count / 2..count {
                db.put(w, &i.to_be_bytes(), &value_for(i))?;
            }
            Ok(())
        })?;
        assert!(
            runs > 1,
            "the big transaction should have hit MapFull and re-run"
        );
        assert!(slab.stats()?.map_size >= 16 << 20);
    }
    // Reopen with the same tiny option: the map starts at least as big as the file.
    let slab = Slab::open(&path, small(1 << 20))?;
    let file_len = std::fs::metadata(path.join("data.mdb"))
        .expect("stat")
        .len();
    assert!(slab.stats()?.map_size >= file_len);
    let db = slab.db("blobs", false)?;
    slab.read(|r| {
        assert_eq!(db.len(r)?, u64::from(count));
        for i in [0, 1, count / 2 - 1, count / 2, count - 1] {
            assert_eq!(db.get(r, &i.to_be_bytes())?, Some(&value_for(i)[..]));
        }
        Ok(())
    })
}

#[test]
fn growth_waits_for_a_reader_on_another_thread() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path(), small(1 << 20))?;
    let db = slab.db("d", false)?;
    slab.write(|w| db.put(w, b"first", b"1"))?;
    let rtxn = slab.read_txn()?;
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let seen = db.get(&rtxn, b"first").map(|v| v.map(<[u8]>::to_vec));
            drop(rtxn);
            seen
        })
    };
    slab.write(|w| {
        for i in 0..1000u32 {
            db.put(w, &i.to_be_bytes(), &value_for(i))?;
        }
        Ok(())
    })?;
    let seen = reader.join().expect("reader thread")?;
    assert_eq!(seen, Some(b"1".to_vec()));
    slab.read(|r| {
        assert_eq!(db.len(r)?, 1001);
        Ok(())
    })
}

#[test]
fn growth_gives_up_while_this_thread_holds_a_reader() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SlabOptions {
        map_size: 1 << 20,
        resize_timeout: Duration::from_millis(200),
        ..SlabOptions::default()
    };
    let slab = Slab::open(dir.path(), opts)?;
    let db = slab.db("d", false)?;
    let held = slab.read_txn()?;
    let err = slab
        .write(|w| {
            for i in 0..1000u32 {
                db.put(w, &i.to_be_bytes(), &value_for(i))?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, StorageError::ResizeTimeout { .. }), "{err}");
    drop(held);
    // Once the reader is gone, the same write succeeds.
    slab.write(|w| db.put(w, b"k", &value_for(7)))?;
    Ok(())
}

#[test]
fn same_path_twice_in_one_process() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cell.lmdb");
    let one = Slab::open(&path, SlabOptions::default())?;
    let two = Slab::open(dir.path().join(".").join("cell.lmdb"), small(1 << 20))?;
    assert_eq!(one.path(), two.path());
    let db1 = one.db("hive", false)?;
    let db2 = two.db("hive", false)?;
    one.write(|w| db1.put(w, b"k", b"v"))?;
    two.read(|r| {
        assert_eq!(db2.get(r, b"k")?, Some(&b"v"[..]));
        Ok(())
    })?;
    // A handle of one is usable with a transaction of the other: same environment.
    two.read(|r| {
        assert_eq!(db1.get(r, b"k")?, Some(&b"v"[..]));
        Ok(())
    })?;

    // A read-only handle shares the environment but refuses writes.
    let ro = Slab::open_readonly(&path)?;
    assert!(ro.is_readonly());
    let err = ro.write(|_| Ok(())).unwrap_err();
    assert!(matches!(err, StorageError::ReadOnly { .. }), "{err}");
    assert_eq!(ro.db_names()?, vec!["hive"]);

    // A Db of another slab is refused rather than panicking inside heed.
    let other = Slab::open(dir.path().join("other.lmdb"), SlabOptions::default())?;
    let err = other.read(|r| db1.get(r, b"k").map(|_| ())).unwrap_err();
    assert!(matches!(err, StorageError::WrongEnv { .. }), "{err}");

    drop((one, two, ro, db1, db2));
    // After every handle is gone the environment closes and can be reopened.
    let again = Slab::open(&path, SlabOptions::default())?;
    let db = again.db("hive", false)?;
    again.read(|r| {
        assert_eq!(db.get(r, b"k")?, Some(&b"v"[..]));
        Ok(())
    })
}

#[test]
fn handles_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<Slab>();
    send_sync::<Db>();
    send_sync::<Seqn>();
    send::<ReadTxn>();
    send::<StorageError>();
}

#[test]
fn read_txn_moves_to_another_thread() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path(), SlabOptions::default())?;
    let db = slab.db("d", false)?;
    slab.write(|w| db.put(w, b"k", b"before"))?;
    let rtxn = slab.read_txn()?;
    slab.write(|w| db.put(w, b"k", b"after"))?;
    let handle = std::thread::spawn(move || -> Result<Vec<u8>> {
        let value = db.get(&rtxn, b"k")?.unwrap_or_default().to_vec();
        Ok(value)
    });
    // The snapshot was taken before the second write.
    assert_eq!(handle.join().expect("thread")?, b"before");
    Ok(())
}

fn touch_env(path: &Path) -> Result<()> {
    let slab = Slab::open(path, small(1 << 20))?;
    let db = slab.db("x", false)?;
    slab.write(|w| db.put(w, b"k", b"v"))
}

#[test]
fn find_environments_recurses_and_skips_tmp() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for rel in [
        "slabs/cell.lmdb",
        "layers/abc/nodeedits.lmdb",
        "axon/slabs/cell.lmdb",
        "axon.lmdb",
        "tmp/restore.lmdb",
        "layers/tmp/x.lmdb",
    ] {
        touch_env(&root.join(rel))?;
    }
    std::fs::create_dir_all(root.join("layers/empty")).expect("mkdir");
    std::fs::write(root.join("cell.guid"), "x").expect("write");
    let found: Vec<PathBuf> = find_environments(root)?
        .into_iter()
        .map(|p| p.strip_prefix(root).expect("under root").to_path_buf())
        .collect();
    // Sorted by path components, so `axon/...` comes before `axon.lmdb`.
    let want: Vec<PathBuf> = [
        "axon/slabs/cell.lmdb",
        "axon.lmdb",
        "layers/abc/nodeedits.lmdb",
        "slabs/cell.lmdb",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(found, want);
    assert!(find_environments(&root.join("missing")).is_err());
    Ok(())
}

#[test]
fn compacted_copy_is_smaller_and_complete() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.lmdb");
    let slab = Slab::open(&src, SlabOptions::default())?;
    let db = slab.db("items", false)?;
    let dups = slab.db("index", true)?;
    slab.write(|w| {
        for i in 0..5000u32 {
            db.put(w, &i.to_be_bytes(), &[7u8; 400])?;
            dups.put(w, &(i % 10).to_be_bytes(), &i.to_be_bytes())?;
        }
        Ok(())
    })?;
    slab.write(|w| {
        for i in (0..5000u32).filter(|i| i % 10 != 0) {
            db.delete(w, &i.to_be_bytes())?;
        }
        Ok(())
    })?;
    let dst = dir.path().join("backup/src.lmdb");
    let size = slab.copy_compacted_to(&dst)?;
    let src_size = std::fs::metadata(src.join("data.mdb")).expect("stat").len();
    assert_eq!(
        size,
        std::fs::metadata(dst.join("data.mdb")).expect("stat").len()
    );
    assert!(size * 3 < src_size, "copy {size} vs source {src_size}");
    // The estimate a backup makes before copying: every tree's pages. LMDB does not count the
    // sub-trees of large duplicate sets ("index" has 500 values a key), so it is a little low.
    let estimate = slab.stats()?;
    let estimated = estimate.used_pages * u64::from(estimate.page_size);
    assert!(
        estimated <= size && estimated * 10 > size * 8,
        "{estimated} vs {size}"
    );
    assert!(!dst.join("data.mdb.tmp").exists());

    let copy = Slab::open_readonly(&dst)?;
    let src_stats = slab.stats()?;
    let copy_stats = copy.stats()?;
    assert_eq!(copy_stats.dbs, src_stats.dbs);
    assert_eq!(
        copy_stats.dbs,
        vec![
            DbStats {
                name: "index".into(),
                dupsort: true,
                entries: 5000
            },
            DbStats {
                name: "items".into(),
                dupsort: false,
                entries: 500
            },
        ]
    );
    let copied = copy.db("items", false)?;
    copy.read(|r| {
        assert_eq!(copied.get(r, &10u32.to_be_bytes())?, Some(&[7u8; 400][..]));
        assert_eq!(copied.get(r, &11u32.to_be_bytes())?, None);
        Ok(())
    })?;
    // An existing copy is never overwritten.
    let err = slab.copy_compacted_to(&dst).unwrap_err();
    assert!(matches!(err, StorageError::Exists { .. }), "{err}");
    slab.sync()
}

#[test]
fn readonly_open_lists_dbs_and_counts() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("axon.lmdb");
    {
        let slab = Slab::open(&path, SlabOptions::default())?;
        let sizes = slab.db("sizes", false)?;
        let history = slab.db("history", true)?;
        let seqn = Seqn::open(&slab, "axonseqn")?;
        slab.write(|w| {
            for i in 0..3u8 {
                sizes.put(w, &[i], &[i])?;
            }
            for i in 0..5u8 {
                history.put(w, b"t", &[i])?;
            }
            seqn.append_many(w, &[Value::Int(1), Value::Int(2)])?;
            Ok(())
        })?;
    }
    let ro = Slab::open_readonly(&path)?;
    assert_eq!(ro.db_names()?, vec!["axonseqn", "history", "sizes"]);
    let stats = ro.stats()?;
    let counts: Vec<(&str, bool, u64)> = stats
        .dbs
        .iter()
        .map(|d| (d.name.as_str(), d.dupsort, d.entries))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("axonseqn", false, 2),
            ("history", true, 5),
            ("sizes", false, 3)
        ]
    );
    assert!(stats.page_size >= 4096 && stats.last_page > 0);
    let err = ro.db("missing", false).unwrap_err();
    assert!(matches!(err, StorageError::NoSuchDb { .. }), "{err}");
    let seqn = Seqn::open(&ro, "axonseqn")?;
    assert_eq!(ro.read(|r| seqn.last(r))?, Some((1, Value::Int(2))));
    // Opening read-only first, then for writing, is refused while the read-only one is open.
    let err = Slab::open(&path, SlabOptions::default()).unwrap_err();
    assert!(matches!(err, StorageError::OpenConflict { .. }), "{err}");
    let err = Slab::open_readonly(dir.path().join("nothing")).unwrap_err();
    assert!(matches!(err, StorageError::NotAnEnv { .. }), "{err}");
    Ok(())
}

#[test]
fn db_names_skips_plain_keys_in_the_main_db() -> Result<()> {
    use heed::types::Bytes;
    let dir = tempfile::tempdir().expect("tempdir");
    // Write a plain key into the main database directly, as another LMDB user might.
    {
        let mut o = heed::EnvOpenOptions::new().read_txn_without_tls();
        o.max_dbs(4);
        let env = unsafe { o.open(dir.path()) }.expect("open");
        let wtxn = env.write_txn().expect("txn");
        env.create_databases_and_commit(wtxn, |opener, wtxn| {
            let main = opener.create_database::<Bytes, Bytes>(wtxn, None)?;
            main.put(wtxn, &b"plain-key"[..], &[0u8; 48][..])?;
            main.put(wtxn, &b"short"[..], &b"v"[..])?;
            opener.create_database::<Bytes, Bytes>(wtxn, Some("real"))?;
            Ok::<_, heed::Error>(heed::CommitOrAbort::<_, ()>::Commit(()))
        })
        .expect("create");
        env.prepare_for_closing().wait();
    }
    let ro = Slab::open_readonly(dir.path())?;
    assert_eq!(ro.db_names()?, vec!["real"]);
    let err = ro.db("plain-key", false).unwrap_err();
    assert!(matches!(err, StorageError::NoSuchDb { .. }), "{err}");
    Ok(())
}

#[test]
fn errors_name_the_environment_and_become_synerr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nothing.lmdb");
    let err = Slab::open_readonly(&path).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("nothing.lmdb"), "{text}");
    assert_eq!(err.path(), path);
    let syn: crate::error::SynErr = err.into();
    assert_eq!(syn.name, "StorageError");
    assert_eq!(syn.mesg(), text);
    assert_eq!(
        syn.field("path").and_then(Value::as_str),
        Some(path.to_str().expect("utf8"))
    );
}

const CHILD_ENV: &str = "SYN_STORAGE_TEST_GROW_PATH";

/// Run by `another_process_grows_the_map` in a child process; does nothing on its own.
#[test]
#[ignore = "helper: runs only as a child of another test"]
fn child_grows_map() -> Result<()> {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let slab = Slab::open(PathBuf::from(path), small(1 << 20))?;
    let db = slab.db("d", false)?;
    slab.write(|w| {
        for i in 0..3000u32 {
            db.put(w, &i.to_be_bytes(), &value_for(i))?;
        }
        Ok(())
    })
}

#[test]
fn another_process_grows_the_map() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path(), small(1 << 20))?;
    let db = slab.db("d", false)?;
    slab.write(|w| db.put(w, b"mine", b"1"))?;
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "storage::tests::child_grows_map", "--ignored"])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("spawn child");
    assert!(status.success());
    // This process's map is still 1 MiB; its next transaction sees MDB_MAP_RESIZED and adopts.
    slab.read(|r| {
        assert_eq!(db.len(r)?, 3001);
        assert_eq!(
            db.get(r, &2999u32.to_be_bytes())?,
            Some(&value_for(2999)[..])
        );
        Ok(())
    })?;
    assert!(slab.stats()?.map_size > 1 << 20);
    slab.write(|w| db.put(w, b"mine", b"2"))
}

/// Every database of the environment at `path`, as heed sees it: name, stored flags, records.
type Dump = Vec<(String, u32, Vec<(Vec<u8>, Vec<u8>)>)>;

fn dump(path: &Path) -> Dump {
    let (dump, only_named) = dump_named(&Slab::open_snapshot(path).expect("open"));
    assert!(only_named);
    dump
}

/// Every record of every named database with its flags, and whether the main database holds
/// only named databases.
fn dump_named(slab: &Slab) -> (Dump, bool) {
    let (named, only_named) = slab.named_dbs().expect("list");
    let dump = named
        .into_iter()
        .map(|named| {
            let records = slab
                .read(|r| {
                    Ok(named
                        .db
                        .iter(&r.txn)
                        .expect("iter")
                        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("entry"))
                        .collect())
                })
                .expect("read");
            (named.name, u32::from(named.flags), records)
        })
        .collect();
    (dump, only_named)
}

/// An environment made with heed directly: databases with every kind of flag, filled in
/// random order and then mostly deleted.
// The integer flags themselves are what the rebuild must keep, so they are set as flags.
#[allow(deprecated)]
fn heed_env(path: &Path) {
    use heed::{DatabaseFlags as F, EnvOpenOptions};
    std::fs::create_dir_all(path).expect("mkdir");
    let mut o = EnvOpenOptions::new().read_txn_without_tls();
    o.map_size(64 << 20).max_dbs(8);
    // SAFETY: a new environment that only this test opens.
    let env = unsafe { o.open(path) }.expect("open");
    let kinds = [
        ("plain", F::empty()),
        ("dups", F::DUP_SORT),
        ("intkeys", F::INTEGER_KEY),
        ("fixed", F::DUP_SORT | F::DUP_FIXED | F::INTEGER_DUP),
        ("reversed", F::REVERSE_KEY | F::DUP_SORT | F::REVERSE_DUP),
    ];
    for (name, flags) in kinds {
        let db = create_db(&env, Some(name), flags);
        let mut w = env.write_txn().expect("write");
        for i in 0..4000u64 {
            let n = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            let key = if name == "intkeys" {
                n.to_ne_bytes().to_vec()
            } else if flags.contains(F::DUP_SORT) {
                format!("k{}", n % 700).into_bytes()
            } else {
                format!("k{n}").into_bytes()
            };
            let value = if name == "fixed" {
                n.to_ne_bytes().to_vec()
            } else {
                vec![(n % 251) as u8; 100 + (n % 50) as usize]
            };
            db.put(&mut w, &key, &value).expect("put");
        }
        let doomed: Vec<(Vec<u8>, Vec<u8>)> = db
            .iter(&w)
            .expect("iter")
            .enumerate()
            .filter(|(i, _)| i % 4 != 0)
            .map(|(_, e)| e.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("entry"))
            .collect();
        for (k, v) in doomed {
            db.delete_one_duplicate(&mut w, &k, &v).expect("delete");
        }
        w.commit().expect("commit");
    }
}

fn create_db<'e>(
    env: &'e heed::Env<heed::WithoutTls>,
    name: Option<&str>,
    flags: heed::DatabaseFlags,
) -> heed::Database<'e, heed::types::Bytes, heed::types::Bytes> {
    let w = env.write_txn().expect("write");
    env.create_databases_and_commit(w, |opener, w| {
        let mut options = opener.database_options().types();
        options.flags(flags);
        if let Some(name) = name {
            options.name(name);
        }
        options
            .create(w)
            .map(heed::CommitOrAbort::<_, std::convert::Infallible>::Commit)
    })
    .expect("create")
    .unwrap_commit()
}

#[test]
fn a_rebuilt_copy_holds_every_record_and_flag_in_full_pages() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.lmdb");
    heed_env(&src);
    let slab = Slab::open_readonly(&src)?;
    let rebuilt = dir.path().join("rebuilt");
    std::fs::create_dir(&rebuilt).expect("mkdir");
    let mut told = 0;
    slab.rebuild_snapshot()?
        .expect("only named databases")
        .write_to(&rebuilt, &mut |bytes| {
            told += bytes;
            true
        })?;
    // Only the data file: no lock file beside it.
    let names: Vec<_> = std::fs::read_dir(&rebuilt)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["data.mdb"]);
    let original = dump(&src);
    assert_eq!(original.len(), 5);
    assert!(original.iter().all(|(_, _, records)| records.len() > 400));
    assert_eq!(dump(&rebuilt), original);
    // Written in many small transactions, each ending between two keys, the copy is the same.
    let small = dir.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    let mut snapshot = slab.rebuild_snapshot()?.expect("snapshot");
    snapshot.commit_bytes = 2000;
    let mut commits = 0;
    snapshot.write_to(&small, &mut |_| {
        commits += 1;
        true
    })?;
    assert!(commits > 50, "{commits} commits");
    assert_eq!(dump(&small), original);
    let records: u64 = original
        .iter()
        .flat_map(|(_, _, r)| r.iter().map(|(k, v)| (k.len() + v.len()) as u64))
        .sum();
    assert_eq!(told, records);

    // Smaller than LMDB's compacting copy, which keeps each page as full as it was.
    let compacted = dir.path().join("compacted");
    let compacted_size = slab.copy_compacted_to(&compacted)?;
    let rebuilt_size = std::fs::metadata(rebuilt.join("data.mdb"))
        .expect("stat")
        .len();
    assert!(
        rebuilt_size * 3 < compacted_size * 2,
        "rebuilt {rebuilt_size} vs compacted {compacted_size}"
    );
    // An existing copy is never overwritten.
    let err = slab
        .rebuild_snapshot()?
        .expect("snapshot")
        .write_to(&rebuilt, &mut |_| true)
        .unwrap_err();
    assert!(matches!(err, StorageError::Exists { .. }), "{err}");
    Ok(())
}

/// Write a 1000-byte record at each key of `keys` (big-endian), in one transaction.
fn put_kilobytes(slab: &Slab, db: &Db, keys: std::ops::Range<u32>) -> Result<()> {
    slab.write(|w| {
        for i in keys.clone() {
            db.put(w, &i.to_be_bytes(), &[1u8; 1000])?;
        }
        Ok(())
    })
}

#[test]
fn a_rebuild_holds_its_snapshot_and_stops_when_told() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path().join("src.lmdb"), SlabOptions::default())?;
    let db = slab.db("items", false)?;
    let put = |from: u32, to: u32| put_kilobytes(&slab, &db, from..to);
    put(0, 100)?;
    let snapshot = slab.rebuild_snapshot()?.expect("snapshot");
    put(100, 200)?;
    let first = dir.path().join("first");
    std::fs::create_dir(&first).expect("mkdir");
    snapshot.write_to(&first, &mut |_| true)?;
    let copy = Slab::open_snapshot(&first)?;
    assert_eq!(copy.stats()?.dbs[0].entries, 100);
    drop(copy);

    // Told to stop (at its first commit, after 16 MiB), the copy ends with an error.
    put(200, 20_000)?;
    let stopped = dir.path().join("stopped");
    std::fs::create_dir(&stopped).expect("mkdir");
    let err = slab
        .rebuild_snapshot()?
        .expect("snapshot")
        .write_to(&stopped, &mut |_| false)
        .unwrap_err();
    assert!(matches!(err, StorageError::Aborted { .. }), "{err}");
    Ok(())
}

#[test]
fn an_environment_with_plain_keys_in_its_main_database_is_not_rebuilt() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.lmdb");
    std::fs::create_dir_all(&path).expect("mkdir");
    {
        let mut o = heed::EnvOpenOptions::new().read_txn_without_tls();
        o.max_dbs(4);
        // SAFETY: a new environment that only this test opens.
        let env = unsafe { o.open(&path) }.expect("open");
        let main = create_db(&env, None, heed::DatabaseFlags::empty());
        let mut w = env.write_txn().expect("write");
        main.put(&mut w, b"layer:model:version", b"\x01")
            .expect("put");
        w.commit().expect("commit");
    }
    let slab = Slab::open_readonly(&path)?;
    assert!(slab.rebuild_snapshot()?.is_none());
    Ok(())
}

/// A [`CopySink`] that keeps the copy in memory, in buffers of `pages` pages filled with a
/// marker byte, so that any byte the copy leaves unwritten shows.
struct MemorySink {
    buffer_len: usize,
    copy: Vec<u8>,
    buffers: usize,
    stop_after: usize,
}

impl MemorySink {
    fn new(buffer_len: usize) -> MemorySink {
        MemorySink {
            buffer_len,
            copy: Vec::new(),
            buffers: 0,
            stop_after: usize::MAX,
        }
    }
}

impl CopySink for MemorySink {
    type Buffer = Vec<u8>;

    fn empty(&mut self) -> Option<Vec<u8>> {
        (self.buffers < self.stop_after).then(|| vec![0xfb; self.buffer_len])
    }

    fn filled(&mut self, buffer: Vec<u8>, len: usize) -> bool {
        self.buffers += 1;
        self.copy.extend_from_slice(&buffer[..len]);
        true
    }
}

/// `heed_env`'s databases, plus values on overflow pages (one and several pages), a key with
/// thousands of duplicates (a tree of its own, of packed fixed-size keys in "fixed"), and a
/// plain record with a large value in the main database; a quarter of the big values deleted.
#[allow(deprecated)]
fn varied_env(path: &Path) {
    use heed::DatabaseFlags as F;
    heed_env(path);
    let mut o = heed::EnvOpenOptions::new().read_txn_without_tls();
    o.map_size(64 << 20).max_dbs(8);
    // SAFETY: an environment that only this test opens.
    let env = unsafe { o.open(path) }.expect("open");
    let main = create_db(&env, None, F::empty());
    let big = create_db(&env, Some("big"), F::empty());
    let dups = create_db(&env, Some("dups"), F::DUP_SORT);
    let fixed = create_db(
        &env,
        Some("fixed"),
        F::DUP_SORT | F::DUP_FIXED | F::INTEGER_DUP,
    );
    let mut w = env.write_txn().expect("write");
    for i in 0..60u32 {
        let len = [3000, 4100, 9000, 30_000][i as usize % 4] + i as usize;
        big.put(&mut w, &i.to_be_bytes(), &vec![i as u8; len])
            .expect("put");
    }
    for i in (0..60u32).step_by(4) {
        big.delete(&mut w, &i.to_be_bytes()).expect("delete");
    }
    for i in 0..3000u64 {
        dups.put(&mut w, b"many", format!("v{i:06}").as_bytes())
            .expect("put");
        fixed.put(&mut w, b"many", &i.to_ne_bytes()).expect("put");
    }
    main.put(&mut w, b"record", &[9u8; 10_000]).expect("put");
    w.commit().expect("commit");
}

/// Every record of every named database, and the main database's plain record.
fn varied_dump(path: &Path) -> (Dump, Option<Vec<u8>>) {
    let slab = Slab::open_snapshot(path).expect("open");
    let record = slab
        .read(|r| {
            Ok(slab
                .main_db()?
                .get(&r.txn, b"record")
                .expect("get")
                .map(<[u8]>::to_vec))
        })
        .expect("read");
    (dump_named(&slab).0, record)
}

/// Whether two compacted copies hold the same pages, each page's unused middle aside.
fn same_pages(a: &[u8], b: &[u8], page: usize) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut n = 2;
    while n * page < a.len() {
        let (x, y) = (&a[n * page..(n + 1) * page], &b[n * page..(n + 1) * page]);
        let flags = u16::from_le_bytes([x[10], x[11]]);
        if flags & 0x04 != 0 {
            // An overflow run: its pages whole.
            let pages = u32::from_le_bytes([x[12], x[13], x[14], x[15]]) as usize;
            let end = ((n + pages) * page).min(a.len());
            if a[n * page..end] != b[n * page..end] {
                return false;
            }
            n += pages;
            continue;
        }
        let lower = usize::from(u16::from_le_bytes([x[12], x[13]]));
        let upper = usize::from(u16::from_le_bytes([x[14], x[15]]));
        let used = if flags & 0x20 != 0 {
            [0..page - (upper - lower), page..page]
        } else {
            [0..lower, upper..page]
        };
        if used.into_iter().any(|r| x[r.clone()] != y[r]) {
            return false;
        }
        n += 1;
    }
    true
}

#[test]
fn a_compacted_copy_is_lmdbs_page_for_page() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.lmdb");
    varied_env(&src);
    // The source out of the page cache first: the copy reads the disk, reading ahead.
    let data = std::fs::File::open(src.join("data.mdb")).expect("open");
    data.sync_all().expect("fsync");
    nix::fcntl::posix_fadvise(
        &data,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .expect("fadvise");
    let slab = Slab::open_readonly(&src)?;
    let page = 4096;

    // Buffers of three pages: overflow runs and the meta pages cross buffer ends.
    let mut snapshot = slab.compact_snapshot()?;
    let told = snapshot.bytes()?;
    let mut sink = MemorySink::new(3 * page);
    snapshot.write_to(&mut sink)?;
    let reference = dir.path().join("reference");
    let reference_size = slab.copy_compacted_to(&reference)?;
    let lmdb = std::fs::read(reference.join("data.mdb")).expect("read");
    assert_eq!(sink.copy.len() as u64, reference_size);
    assert_eq!(told, reference_size);
    assert!(sink.buffers > 10, "{} buffers", sink.buffers);
    assert!(same_pages(&sink.copy, &lmdb, page));
    // Nothing left unwritten, and the same bytes every time, whatever the buffers.
    assert!(!sink.copy.windows(64).any(|w| w.iter().all(|&b| b == 0xfb)));
    let mut again = MemorySink::new(256 * page);
    slab.compact_snapshot()?.write_to(&mut again)?;
    assert_eq!(again.copy, sink.copy);

    // LMDB opens it and finds every record.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    std::fs::write(copy.join("data.mdb"), &sink.copy).expect("write");
    let original = varied_dump(&src);
    assert_eq!(original.0.len(), 6);
    assert_eq!(original.1.as_deref(), Some(&[9u8; 10_000][..]));
    assert_eq!(varied_dump(&copy), original);
    assert_eq!(varied_dump(&reference), original);
    Ok(())
}

#[test]
fn a_compacted_copy_is_its_snapshots_moment_and_stops_when_told() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let slab = Slab::open(dir.path().join("src.lmdb"), SlabOptions::default())?;
    let db = slab.db("items", false)?;
    let put = |from: u32, to: u32| put_kilobytes(&slab, &db, from..to);
    // An environment without databases: the two meta pages, which LMDB opens.
    let bare = Slab::open(dir.path().join("bare.lmdb"), SlabOptions::default())?;
    let mut empty = MemorySink::new(1 << 20);
    bare.compact_snapshot()?.write_to(&mut empty)?;
    assert_eq!(empty.copy.len(), 2 * 4096);
    let bare_copy = dir.path().join("bare-copy");
    std::fs::create_dir(&bare_copy).expect("mkdir");
    std::fs::write(bare_copy.join("data.mdb"), &empty.copy).expect("write");
    assert!(Slab::open_snapshot(&bare_copy)?.stats()?.dbs.is_empty());

    put(0, 100)?;
    let snapshot = slab.compact_snapshot()?;
    // Written on, and freed pages reused, after the snapshot began.
    put(100, 2000)?;
    slab.write(|w| {
        for i in 0..50u32 {
            db.delete(w, &i.to_be_bytes())?;
        }
        Ok(())
    })?;
    put(2000, 3000)?;
    let mut sink = MemorySink::new(1 << 20);
    snapshot.write_to(&mut sink)?;
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    std::fs::write(copy.join("data.mdb"), &sink.copy).expect("write");
    let dumped = dump(&copy);
    assert_eq!(dumped.len(), 1);
    let keys: Vec<u32> = dumped[0]
        .2
        .iter()
        .map(|(k, _)| u32::from_be_bytes(k[..4].try_into().expect("key")))
        .collect();
    assert_eq!(keys, (0..100).collect::<Vec<_>>());

    // Told to stop, the copy ends with an error.
    let mut stopping = MemorySink::new(4096);
    stopping.stop_after = 3;
    let err = slab
        .compact_snapshot()?
        .write_to(&mut stopping)
        .unwrap_err();
    assert!(matches!(err, StorageError::Aborted { .. }), "{err}");
    Ok(())
}

#[test]
fn a_damaged_environment_fails_its_compacted_copy_with_a_reason() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.lmdb");
    varied_env(&src);
    let data = src.join("data.mdb");
    let pristine = std::fs::read(&data).expect("read");
    let page = 4096;
    // Pages in turn, their headers and first node pointers overwritten: each copy fails with
    // a reason or (where the page is free or a value's) succeeds, never a panic.
    let mut damaged = 0;
    for (n, fill) in (2..pristine.len() / page)
        .step_by(7)
        .zip([0xffu8, 0x00, 0x02].iter().cycle())
    {
        let mut bytes = pristine.clone();
        bytes[n * page + 8..n * page + 64].fill(*fill);
        std::fs::write(&data, &bytes).expect("write");
        let slab = Slab::open_snapshot(&src)?;
        let mut sink = MemorySink::new(1 << 20);
        match slab.compact_snapshot().and_then(|s| s.write_to(&mut sink)) {
            Err(StorageError::Damaged { reason, .. }) => {
                assert!(!reason.is_empty());
                damaged += 1;
            }
            Err(other) => panic!("page {n}: {other}"),
            Ok(()) => {}
        }
    }
    assert!(damaged > 10, "{damaged} damaged copies");
    // Page counts of the free-page tree in both meta pages that no file could hold (LMDB
    // itself opens the environment as before): refused, not added up past their range.
    let mut bytes = pristine;
    for meta in [0, page] {
        bytes[meta + 48..meta + 64].fill(0xff);
    }
    std::fs::write(&data, &bytes).expect("write");
    let slab = Slab::open_snapshot(&src)?;
    let err = slab
        .compact_snapshot()
        .and_then(|s| s.write_to(&mut MemorySink::new(1 << 20)))
        .unwrap_err();
    assert!(matches!(err, StorageError::Damaged { .. }), "{err}");
    Ok(())
}
