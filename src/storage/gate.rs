//! The process-wide write gate and the registry of append-only logs.
//!
//! Every durable write of a service holds the gate shared: [`super::Slab::write`] does so by
//! itself, and any other durable write path (an append-only log, say) takes
//! [`WriteGate::enter`] around its write and the update of its durable length. A backup takes
//! the gate exclusively ([`WriteGate::hold`]) for the instant it needs one snapshot point that
//! is consistent across every environment and log of the process: while the hold lasts no
//! write is half done and none begins.
//!
//! Entering is re-entrant on one thread (a write closure that writes to a second slab does not
//! deadlock against a pending hold), but a writer must not wait for another thread's write while
//! it holds the gate.
//!
//! A write begun on one thread and finished on another (a cortex layer logs a record on the
//! caller's thread and applies it to LMDB on its applier thread) carries a [`HandedShare`]
//! from one to the other: a hold waits for it, and the finishing thread
//! [`adopts`](HandedShare::adopt) it to write without waiting for a pending hold.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The gate shared by every write of this process; see [`write_gate`].
pub struct WriteGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HoldState {
    Free,
    /// A hold waits for the writers inside to finish; no new writer gets in.
    Pending,
    Held,
}

struct GateState {
    writers: usize,
    hold: HoldState,
}

static GATE: WriteGate = WriteGate {
    state: Mutex::new(GateState {
        writers: 0,
        hold: HoldState::Free,
    }),
    changed: Condvar::new(),
};

thread_local! {
    /// How many shares the current thread holds (re-entrant entries).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// The process's write gate.
pub fn write_gate() -> &'static WriteGate {
    &GATE
}

/// Why a hold could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoldError {
    /// Writes in progress (or another hold) did not end in time.
    #[error("writes in progress did not pause within {}ms", .0.as_millis())]
    TimedOut(Duration),
    /// The calling thread is inside a write itself and would wait for itself.
    #[error("cannot hold the write gate from inside a write")]
    InsideWrite,
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enter as a writer; waits while a hold is taken or pending. Keep the share for exactly
    /// one durable write (or one group of writes that must be seen together).
    pub fn enter(&'static self) -> WriteShare {
        let depth = DEPTH.get();
        if depth == 0 {
            let mut state = self.lock();
            while state.hold != HoldState::Free {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.writers += 1;
        }
        DEPTH.set(depth + 1);
        WriteShare {
            gate: self,
            adopted: false,
            _not_send: PhantomData,
        }
    }

    /// A further share for work this thread begins inside its write and another thread
    /// finishes (a record logged now and applied to LMDB later): a hold waits for it as for
    /// a write in progress. Returns `None` when the calling thread holds no share.
    pub fn hand_over(&'static self) -> Option<HandedShare> {
        if DEPTH.get() == 0 {
            return None;
        }
        self.lock().writers += 1;
        Some(HandedShare { gate: self })
    }

    /// Take the gate exclusively: new writers wait, writers inside finish first. Gives up after
    /// `timeout` (and lets writers in again). The hold lasts until the [`WriteHold`] drops.
    pub fn hold(&'static self, timeout: Duration) -> Result<WriteHold, HoldError> {
        if DEPTH.get() > 0 {
            return Err(HoldError::InsideWrite);
        }
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.hold != HoldState::Free {
            state = self.wait_until(state, deadline, timeout)?;
        }
        state.hold = HoldState::Pending;
        while state.writers > 0 {
            match self.wait_until(state, deadline, timeout) {
                Ok(s) => state = s,
                Err(e) => {
                    let mut state = self.lock();
                    state.hold = HoldState::Free;
                    self.changed.notify_all();
                    return Err(e);
                }
            }
        }
        state.hold = HoldState::Held;
        Ok(WriteHold { gate: self })
    }

    fn wait_until<'a>(
        &self,
        state: MutexGuard<'a, GateState>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<MutexGuard<'a, GateState>, HoldError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(HoldError::TimedOut(timeout));
        }
        let (state, _) = self
            .changed
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner);
        Ok(state)
    }
}

/// A writer's share of the gate; dropping it leaves. Not `Send`: it belongs to its thread.
pub struct WriteShare {
    gate: &'static WriteGate,
    /// Entered through a [`HandedShare`], which counts the writer.
    adopted: bool,
    _not_send: PhantomData<*const ()>,
}

impl Drop for WriteShare {
    fn drop(&mut self) {
        let depth = DEPTH.get() - 1;
        DEPTH.set(depth);
        if depth == 0 && !self.adopted {
            self.gate.leave();
        }
    }
}

impl WriteGate {
    /// One writer fewer.
    fn leave(&self) {
        let mut state = self.lock();
        state.writers -= 1;
        // Only a pending hold waits for the last writer; a notify costs a system call even
        // when nobody waits, and shares come and go with every write.
        if state.writers == 0 && state.hold == HoldState::Pending {
            self.changed.notify_all();
        }
    }
}

/// A share handed from one thread to another ([`WriteGate::hand_over`]); `Send`. Dropping it
/// leaves.
pub struct HandedShare {
    gate: &'static WriteGate,
}

impl HandedShare {
    /// Write on this thread under the handed share: the returned share lets the thread in
    /// without waiting for a pending hold (which waits for this work). Keep the handed share
    /// alive until the returned one drops.
    pub fn adopt(&self) -> WriteShare {
        let depth = DEPTH.get();
        DEPTH.set(depth + 1);
        WriteShare {
            gate: self.gate,
            adopted: depth == 0,
            _not_send: PhantomData,
        }
    }
}

impl Drop for HandedShare {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

/// The gate held exclusively: no write runs while this lives. `Send`, so it can be kept by a
/// thread of its own.
pub struct WriteHold {
    gate: &'static WriteGate,
}

impl WriteHold {
    /// What a backup must copy to capture this moment: every environment this process has open
    /// for writing and the durable length of every registered append-only log.
    pub fn snapshot_point(&self) -> SnapshotPoint {
        let logs = lock_logs()
            .values()
            .map(|log| LogCut {
                path: log.path.clone(),
                length: (log.durable_len)(),
            })
            .collect();
        SnapshotPoint {
            envs: super::slab::writable_paths(),
            logs,
        }
    }
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.hold = HoldState::Free;
        self.gate.changed.notify_all();
    }
}

/// One consistent moment of a process's durable state, taken under a [`WriteHold`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPoint {
    /// Environments open for writing (canonical paths, sorted).
    pub envs: Vec<PathBuf>,
    /// Registered append-only logs and how many bytes of each are durable.
    pub logs: Vec<LogCut>,
}

/// An append-only file cut at a snapshot point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCut {
    /// The file (canonical directory, then the file name).
    pub path: PathBuf,
    /// The durable length in bytes: a copy of this prefix is the log at the snapshot point.
    pub length: u64,
}

type DurableLen = Arc<dyn Fn() -> u64 + Send + Sync>;

struct RegisteredLog {
    path: PathBuf,
    durable_len: DurableLen,
}

static LOGS: LazyLock<Mutex<BTreeMap<u64, RegisteredLog>>> = LazyLock::new(Mutex::default);
static NEXT_LOG: Mutex<u64> = Mutex::new(0);

fn lock_logs() -> MutexGuard<'static, BTreeMap<u64, RegisteredLog>> {
    LOGS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Register an append-only file whose writer keeps `durable_len` current (updated while it
/// holds a [`WriteShare`]), so a backup copies exactly the prefix that existed at its snapshot
/// point. The registration ends when the returned handle drops.
pub fn register_append_log(
    path: &Path,
    durable_len: impl Fn() -> u64 + Send + Sync + 'static,
) -> std::io::Result<AppendLogRegistration> {
    let canon = canonical_file_path(path)?;
    let id = {
        let mut next = NEXT_LOG.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        *next
    };
    lock_logs().insert(
        id,
        RegisteredLog {
            path: canon,
            durable_len: Arc::new(durable_len),
        },
    );
    Ok(AppendLogRegistration { id })
}

/// The path with its directory resolved, so it matches what a backup finds on disk.
fn canonical_file_path(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a log needs a file name")
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.canonicalize()?,
        _ => std::env::current_dir()?,
    };
    Ok(parent.join(name))
}

/// Keeps an append-only log registered; dropping it unregisters the log.
pub struct AppendLogRegistration {
    id: u64,
}

impl Drop for AppendLogRegistration {
    fn drop(&mut self) {
        lock_logs().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::thread;

    /// A hold waits for a writer inside, and a writer arriving during the hold waits for it.
    #[test]
    fn hold_excludes_writers_both_ways() {
        let gate = write_gate();
        let (inside_tx, inside_rx) = mpsc::channel();
        let (leave_tx, leave_rx) = mpsc::channel::<()>();
        let writer = thread::spawn(move || {
            let _share = gate.enter();
            inside_tx.send(()).unwrap();
            leave_rx.recv().unwrap();
        });
        inside_rx.recv().unwrap();
        // The writer is inside and stays: the hold cannot be had.
        assert!(matches!(
            gate.hold(Duration::from_millis(50)),
            Err(HoldError::TimedOut(_))
        ));
        leave_tx.send(()).unwrap();
        writer.join().unwrap();

        let hold = gate.hold(Duration::from_secs(30)).expect("hold");
        let entered = Arc::new(AtomicU64::new(0));
        let late = {
            let entered = entered.clone();
            thread::spawn(move || {
                let _share = gate.enter();
                entered.store(1, Ordering::SeqCst);
            })
        };
        // The late writer can only have entered after the hold is dropped.
        thread::sleep(Duration::from_millis(20));
        let seen_during_hold = entered.load(Ordering::SeqCst);
        drop(hold);
        late.join().unwrap();
        assert_eq!(seen_during_hold, 0);
        assert_eq!(entered.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn entering_is_reentrant_and_a_writer_cannot_hold() {
        let gate = write_gate();
        let outer = gate.enter();
        let inner = gate.enter();
        assert_eq!(
            gate.hold(Duration::from_millis(10)).err(),
            Some(HoldError::InsideWrite)
        );
        drop(inner);
        drop(outer);
        drop(
            gate.hold(Duration::from_secs(30))
                .expect("hold after leaving"),
        );
    }

    #[test]
    fn snapshot_point_cuts_registered_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edits.log");
        std::fs::write(&path, b"0123456789").unwrap();
        let durable = Arc::new(AtomicU64::new(7));
        let reg = {
            let durable = durable.clone();
            register_append_log(&path, move || durable.load(Ordering::SeqCst)).unwrap()
        };
        let canon = dir.path().canonicalize().unwrap().join("edits.log");
        let cut = |point: &SnapshotPoint| point.logs.iter().find(|l| l.path == canon).cloned();
        let point = write_gate()
            .hold(Duration::from_secs(30))
            .unwrap()
            .snapshot_point();
        assert_eq!(cut(&point).map(|l| l.length), Some(7));
        drop(reg);
        let point = write_gate()
            .hold(Duration::from_secs(30))
            .unwrap()
            .snapshot_point();
        assert_eq!(cut(&point), None);
    }
}
