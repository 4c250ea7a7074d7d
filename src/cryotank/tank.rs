//! One cryotank: an append-only log of msgpack items, with a metrics record per write.

use crate::clock::now_ms;
use crate::error::{SynErr, SynResult};
use crate::msgpack::Value;
use crate::storage::{Seqn, Slab, SlabOptions, int64en, int64un};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::watch;

/// The file of a tank's LMDB environment inside its directory (as Synapse names it).
pub const TANK_LMDB: &str = "tank.lmdb";

/// Items written in one transaction, with one metrics record each (Synapse's chunk size).
pub const PUT_CHUNK: usize = 1000;

/// A tank: the `items` and `metrics` logs of `tank.lmdb`, and the next item offset.
pub struct Tank {
    iden: String,
    slab: Slab,
    items: Seqn,
    metrics: Seqn,
    /// The offset the next item gets, published after each commit (followers wait on it).
    next: watch::Sender<u64>,
    /// Puts one at a time, so that each chunk's offsets follow the last.
    writer: Mutex<()>,
    /// Deleted: every later call fails (sessions may still hold the tank).
    deleted: AtomicBool,
}

impl Tank {
    /// Open (or create) the tank in directory `dir`.
    pub fn open(dir: &Path, iden: &str) -> SynResult<Tank> {
        std::fs::create_dir_all(dir).map_err(|e| {
            crate::error::SynErr::new(
                "StorageError",
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let slab = Slab::open(dir.join(TANK_LMDB), SlabOptions::default())?;
        let items = Seqn::open(&slab, "items")?;
        let metrics = Seqn::open(&slab, "metrics")?;
        let next = slab.read(|rtxn| items.next_offset(rtxn))?;
        Ok(Tank {
            iden: iden.to_owned(),
            slab,
            items,
            metrics,
            next: watch::Sender::new(next),
            writer: Mutex::new(()),
            deleted: AtomicBool::new(false),
        })
    }

    /// The tank's iden (its directory name and auth gate).
    pub fn iden(&self) -> &str {
        &self.iden
    }

    /// Append `items` in chunks of [`PUT_CHUNK`], each chunk one durable transaction with its
    /// metrics record; the number of items added.
    pub fn puts(&self, items: &[Value]) -> SynResult<usize> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.req_present()?;
        for chunk in items.chunks(PUT_CHUNK) {
            let tick = now_ms();
            let started = Instant::now();
            let next = self.slab.write(|wtxn| {
                let appended = self.items.append_many(wtxn, chunk)?;
                let took = started.elapsed().as_millis() as i64;
                let record = Value::map([
                    ("indx", Value::from(appended.offsets.end)),
                    ("size", Value::from(appended.bytes)),
                    ("count", Value::from(chunk.len())),
                    ("time", Value::from(tick)),
                    ("took", Value::from(took)),
                    ("orig", Value::from(appended.offsets.start)),
                ]);
                self.metrics.append(wtxn, &record)?;
                Ok(appended.offsets.end)
            })?;
            self.next.send_replace(next);
        }
        Ok(items.len())
    }

    /// The last item and its offset.
    pub fn last(&self) -> SynResult<Option<(u64, Value)>> {
        self.req_present()?;
        Ok(self.slab.read(|rtxn| self.items.last(rtxn))?)
    }

    /// Up to `max` items from offset `offs`.
    pub fn items(&self, offs: u64, max: usize) -> SynResult<Vec<(u64, Value)>> {
        self.req_present()?;
        read_seqn(&self.slab, &self.items, offs, max)
    }

    /// Up to `max` items from offset `offs`, as their stored msgpack bytes.
    pub fn rows(&self, offs: u64, max: usize) -> SynResult<Vec<(u64, Vec<u8>)>> {
        self.req_present()?;
        Ok(self.slab.read(|rtxn| {
            self.items
                .db()
                .iter_from(rtxn, &int64en(offs))?
                .take(max)
                .map(|entry| entry.map(|(k, v)| (int64un(k), v.to_vec())))
                .collect()
        })?)
    }

    /// Up to `max` metrics records from offset `offs`.
    pub fn metrics(&self, offs: u64, max: usize) -> SynResult<Vec<(u64, Value)>> {
        self.req_present()?;
        read_seqn(&self.slab, &self.metrics, offs, max)
    }

    /// Watch the next item offset (it changes after every committed chunk, and wakes the
    /// watchers when the tank is deleted).
    pub fn watch_next(&self) -> watch::Receiver<u64> {
        self.next.subscribe()
    }

    /// Mark the tank deleted once the put in progress (if any) is done: later calls fail with
    /// `IsFini`, and waiting followers wake.
    pub fn mark_deleted(&self) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.deleted.store(true, Ordering::SeqCst);
        self.next.send_modify(|_| {});
    }

    /// Fail with `IsFini` if the tank was deleted.
    pub fn req_present(&self) -> SynResult<()> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(SynErr::new(
                "IsFini",
                format!("the tank {} was deleted", self.iden),
            ));
        }
        Ok(())
    }

    /// Synapse's tank info: `{iden, indx, metrics, stat}`, `stat` being LMDB's statistics of
    /// the `items` database.
    pub fn info(&self) -> SynResult<Value> {
        Ok(self.slab.read(|rtxn| {
            let stat = self.items.db().tree_stat(rtxn)?;
            Ok(Value::map([
                ("iden", Value::from(self.iden.as_str())),
                ("indx", Value::from(self.items.next_offset(rtxn)?)),
                ("metrics", Value::from(self.metrics.next_offset(rtxn)?)),
                (
                    "stat",
                    Value::map([
                        ("psize", Value::from(u64::from(stat.page_size))),
                        ("depth", Value::from(u64::from(stat.depth))),
                        ("branch_pages", Value::from(stat.branch_pages)),
                        ("leaf_pages", Value::from(stat.leaf_pages)),
                        ("overflow_pages", Value::from(stat.overflow_pages)),
                        ("entries", Value::from(stat.entries)),
                    ]),
                ),
            ]))
        })?)
    }
}

/// Up to `max` entries of `seqn` from offset `offs`.
fn read_seqn(slab: &Slab, seqn: &Seqn, offs: u64, max: usize) -> SynResult<Vec<(u64, Value)>> {
    Ok(slab.read(|rtxn| seqn.iter_from(rtxn, offs)?.take(max).collect())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_append_in_order_with_a_metrics_record_per_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tank = Tank::open(dir.path(), "t0").expect("open");
        assert_eq!(tank.last().expect("last"), None);
        let items: Vec<Value> = (0..2500)
            .map(|i| Value::from(format!("item {i}")))
            .collect();
        assert_eq!(tank.puts(&items).expect("puts"), 2500);
        assert_eq!(*tank.watch_next().borrow(), 2500);
        assert_eq!(
            tank.last().expect("last"),
            Some((2499, Value::from("item 2499")))
        );
        let got = tank.items(998, 3).expect("items");
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [998, 999, 1000]);
        assert_eq!(got[2].1, Value::from("item 1000"));
        // Rows are the stored msgpack of the same items.
        let rows = tank.rows(1000, 1).expect("rows");
        assert_eq!(rows, [(1000, Value::from("item 1000").to_bytes())]);
        // One metrics record per chunk of 1,000: the next offset, first offset and count.
        let metrics = tank.metrics(0, 10).expect("metrics");
        assert_eq!(metrics.len(), 3);
        let fields = |m: &Value| {
            (
                m.get("orig").and_then(Value::as_i64),
                m.get("indx").and_then(Value::as_i64),
                m.get("count").and_then(Value::as_i64),
            )
        };
        assert_eq!(fields(&metrics[0].1), (Some(0), Some(1000), Some(1000)));
        assert_eq!(fields(&metrics[2].1), (Some(2000), Some(2500), Some(500)));
        let size: i64 = items[2000..]
            .iter()
            .map(|v| v.to_bytes().len() as i64)
            .sum();
        assert_eq!(metrics[2].1.get("size").and_then(Value::as_i64), Some(size));
        let info = tank.info().expect("info");
        assert_eq!(info.get("indx").and_then(Value::as_i64), Some(2500));
        assert_eq!(info.get("metrics").and_then(Value::as_i64), Some(3));
        let entries = info.get("stat").and_then(|s| s.get("entries"));
        assert_eq!(entries.and_then(Value::as_i64), Some(2500));
    }

    #[test]
    fn a_reopened_tank_continues_where_it_ended() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let tank = Tank::open(dir.path(), "t0").expect("open");
            tank.puts(&[Value::Int(1), Value::Int(2)]).expect("puts");
        }
        let tank = Tank::open(dir.path(), "t0").expect("reopen");
        assert_eq!(*tank.watch_next().borrow(), 2);
        tank.puts(&[Value::Int(3)]).expect("puts");
        let items = tank.items(0, 10).expect("items");
        assert_eq!(
            items,
            [(0, Value::Int(1)), (1, Value::Int(2)), (2, Value::Int(3))]
        );
    }
}
